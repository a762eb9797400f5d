"""Baseline CTR models on MovieLens-1M: test AUC / log loss, training time and throughput.

Logic in :mod:`saec.bench.baseline`. Writes docs/results/baseline.md and its raw record .json. Run from the
repository root, under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/baseline.py
    python benchmarks/baseline.py --from-json      # re-render the page from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.baseline import BaselineConfig, render, run
from saec.bench.report import measure_and_render
from saec.data import movielens

D = BaselineConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=D.dataset, choices=sorted(movielens.SOURCES))
    ap.add_argument("--epochs", type=int, default=D.epochs)
    ap.add_argument("--patience", type=int, default=D.patience)
    ap.add_argument("--lr", type=float, default=D.lr)
    ap.add_argument("--batch-size", type=int, default=D.batch_size)
    ap.add_argument("--out", type=Path, default=Path("docs/results/baseline.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its raw record")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    cfg = BaselineConfig(dataset=args.dataset, epochs=args.epochs, patience=args.patience, lr=args.lr,
                         batch_size=args.batch_size)
    measure_and_render("benchmarks/baseline.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(cfg, command, progress), render, figure=False)


if __name__ == "__main__":
    main()
