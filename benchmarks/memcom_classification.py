"""MEmCom and the other embedding methods on MovieLens-1M CTR (MEmCom §5.1 shape, App. A.2 and A.4).

Logic in :mod:`saec.bench.memcom_classification`. Writes docs/results/memcom_classification.md, .png (accuracy
loss vs compression ratio), _precision.png (accuracy vs bits) and the raw record .json, which is written after
every cell. Run from the repository root, under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/memcom_classification.py
    python benchmarks/memcom_classification.py --resume             # continue a cut-short sweep
    python benchmarks/memcom_classification.py --rerun tt:2,4       # run those cells again, keep the others
    python benchmarks/memcom_classification.py --from-json          # re-render the page from its JSON

``--quick`` is a smoke run on MovieLens-100K (two methods, two ratios, one epoch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.memcom_classification import VARIANTS, ClassificationConfig, complete, render, run
from saec.bench.report import measure_and_render
from saec.bench.sweep import RERUN_HELP, parse_rerun
from saec.data import movielens

D = ClassificationConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: MovieLens-100K, 2 methods, 2 ratios, 1 epoch")
    ap.add_argument("--dataset", default=D.dataset, choices=sorted(movielens.SOURCES))
    ap.add_argument("--methods", default=",".join(D.methods), help=f"labels of {list(VARIANTS)}, full included")
    ap.add_argument("--ratios", default=",".join(f"{r:g}" for r in D.ratios))
    ap.add_argument("--seeds", type=int, default=D.seeds, help="seeds of the methods in --seeded")
    ap.add_argument("--seeded", default=",".join(D.seeded), help="methods run with --seeds seeds (others: one)")
    ap.add_argument("--dim", type=int, default=D.dim, help="embedding width of the large fields (user, item, zip)")
    ap.add_argument("--epochs", type=int, default=D.epochs)
    ap.add_argument("--patience", type=int, default=D.patience)
    ap.add_argument("--lr", type=float, default=D.lr)
    ap.add_argument("--batch-size", type=int, default=D.batch_size)
    ap.add_argument("--tt-max-rank", type=int, default=D.tt_max_rank, help="TT tables of higher rank are not trained")
    ap.add_argument("--all-scope-ratio", type=float, default=D.all_scope_ratio,
                    help="MEmCom ratio whose A.2 analysis also quantizes the dense layers")
    ap.add_argument("--out", type=Path, default=Path("docs/results/memcom_classification.md"))
    ap.add_argument("--resume", action="store_true", help="keep the cells already in the JSON record, run the others")
    ap.add_argument("--rerun", action="append", default=[], metavar="METHOD[:RATIO,...]", help=RERUN_HELP)
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from the JSON record")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.dataset, args.methods, args.ratios, args.epochs, args.seeds = "movielens-100k", "full,memcom,hashing", "1,8", 1, 1
        if args.out == ap.get_default("out"):
            args.out = Path("/tmp/memcom_classification_quick.md")
    json_path = args.out.with_suffix(".json")

    def measure(command, progress):
        cfg = ClassificationConfig(
            dataset=args.dataset, methods=tuple(args.methods.split(",")),
            ratios=tuple(float(r) for r in args.ratios.split(",")), seeds=args.seeds,
            seeded=tuple(args.seeded.split(",")), dim=args.dim, epochs=args.epochs, patience=args.patience,
            lr=args.lr, batch_size=args.batch_size, tt_max_rank=args.tt_max_rank, all_scope_ratio=args.all_scope_ratio)
        return run(cfg, command, json_path, args.resume, [parse_rerun(s) for s in args.rerun], progress)

    measure_and_render("benchmarks/memcom_classification.py", args.out, args.from_json, args.quiet, measure,
                       lambda record, md, png: render(complete(record), md, png), json_path)


if __name__ == "__main__":
    main()
