"""Inference latency (p50/p99, batch 1 and 256) and process memory of the uncompressed model, Saec, Saec+int8,
int8, MEmCom and Weinberger hashing in PyTorch and in ONNX Runtime: MEmCom Table 3's analogue (issue 11).

Logic in :mod:`saec.bench.latency`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/serve_latency.py
    flock /tmp/saec-bench.lock python benchmarks/serve_latency.py --dataset paper --out docs/results/serve_latency_paper.md
    python benchmarks/serve_latency.py --from-json      # re-render docs/results/serve_latency.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.latency import LatencyConfig, render, run
from saec.bench.report import measure_and_render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="movielens-1m", help="movielens-1m, movielens-100k or paper (the synthetic "
                    "trace's last hour at 1.24e8 features)")
    ap.add_argument("--features", type=int, default=None, help="paper only: the trace's size instead of 1.24e8")
    ap.add_argument("--eligibility", type=float, default=None,
                    help="Saec clusters fields of at least this many times k rows (default: 10 on MovieLens, whose "
                         "largest field has 6,040 rows; 100, Saec's own default, on paper)")
    ap.add_argument("--calls", type=int, default=LatencyConfig.calls, help="timed calls per batch size")
    ap.add_argument("--warmup", type=int, default=LatencyConfig.warmup, help="untimed calls before them")
    ap.add_argument("--out", type=Path, default=Path("docs/results/serve_latency.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    measure_and_render("benchmarks/serve_latency.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(config(args), command, progress), render)


def config(args: argparse.Namespace) -> LatencyConfig:
    eligibility = args.eligibility if args.eligibility is not None else 100.0 if args.dataset == "paper" else 10.0
    return LatencyConfig(dataset=args.dataset, calls=args.calls, warmup=args.warmup, eligibility=eligibility,
                         features=args.features)


if __name__ == "__main__":
    main()
