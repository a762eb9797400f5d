"""Inference latency (p50/p99, batch 1 and 256) and process memory of the uncompressed model, Saec, Saec+int8,
int8, MEmCom and Weinberger hashing in PyTorch and in ONNX Runtime: MEmCom Table 3's analogue (issue 11).

Logic in :mod:`saec.bench.latency`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/serve_latency.py
    python benchmarks/serve_latency.py --from-json      # re-render docs/results/serve_latency.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.latency import LatencyConfig, render, run
from saec.bench.report import measure_and_render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="movielens-1m")
    ap.add_argument("--calls", type=int, default=LatencyConfig.calls, help="timed calls per batch size")
    ap.add_argument("--out", type=Path, default=Path("docs/results/serve_latency.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    measure_and_render("benchmarks/serve_latency.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(LatencyConfig(dataset=args.dataset, calls=args.calls), command, progress), render)


if __name__ == "__main__":
    main()
