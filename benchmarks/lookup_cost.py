"""Lookup cost of ClusteredEmbedding vs nn.Embedding: forward and forward+backward(+Adagrad) throughput.

Logic in :mod:`saec.bench.lookup_cost`. Run from the repository root under the benchmark lock (timed runs must
never overlap):

    flock /tmp/saec-bench.lock python benchmarks/lookup_cost.py
    python benchmarks/lookup_cost.py --from-json     # re-render docs/results/lookup_cost.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.lookup_cost import LookupCostConfig, render, run
from saec.bench.report import measure_and_render


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(float(s)) for s in text.split(",") if s)


def main() -> None:
    d = LookupCostConfig
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, d.sizes)), help="table rows, comma-separated")
    ap.add_argument("--dims", default=",".join(map(str, d.dims)))
    ap.add_argument("--ks", default=",".join(map(str, d.ks)))
    ap.add_argument("--dists", default=",".join(d.dists))
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--zipf-s", type=float, default=d.zipf_s, help="Zipf exponent (the synthetic trace's default)")
    ap.add_argument("--rounds", type=int, default=d.rounds)
    ap.add_argument("--dense-rounds", type=int, default=d.dense_rounds, help="rounds of the dense nn.Embedding's backward")
    ap.add_argument("--min-time", type=float, default=d.min_time, help="seconds per variant per round")
    ap.add_argument("--max-iters", type=int, default=d.max_iters)
    ap.add_argument("--no-dense-above", type=int, default=d.no_dense_above,
                    help="skip the dense nn.Embedding for tables larger than this")
    ap.add_argument("--out", type=Path, default=Path("docs/results/lookup_cost.md"),
                    help="the page; its raw record (.json) goes beside it")
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    cfg = LookupCostConfig(sizes=_ints(args.sizes), dims=_ints(args.dims), ks=_ints(args.ks),
                           dists=tuple(args.dists.split(",")), batch=args.batch, zipf_s=args.zipf_s,
                           rounds=args.rounds, dense_rounds=args.dense_rounds, min_time=args.min_time,
                           max_iters=args.max_iters, no_dense_above=args.no_dense_above)
    measure_and_render("benchmarks/lookup_cost.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(cfg, command, progress), render, figure=False)


if __name__ == "__main__":
    main()
