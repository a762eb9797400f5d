"""MEmCom §5.2 on MovieLens-1M: relative nDCG@10 loss vs compression ratio for every embedding method.

Logic in :mod:`saec.bench.memcom_ranking`. Writes docs/results/memcom_ranking.md, .png and the raw record .json,
which is written after every cell. Run from the repository root, under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/memcom_ranking.py
    python benchmarks/memcom_ranking.py --resume --seeds 2        # continue: only the cells not in the JSON yet
    python benchmarks/memcom_ranking.py --rerun tt:2,4            # run those cells again, keep the others
    python benchmarks/memcom_ranking.py --from-json               # re-render the page from its JSON

``--quick`` is a smoke run (small dimension, three methods, two ratios, two epochs) that writes to
/tmp/saec-quick/ unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from saec.bench.memcom_ranking import VARIANTS, RankingConfig, complete, render, run
from saec.bench.report import measure_and_render
from saec.bench.sweep import RERUN_HELP, parse_rerun

SCRIPT = "benchmarks/memcom_ranking.py"
D = RankingConfig
PLAN = ("methods", "ranknet_methods", "ratios", "seeds", "extra_seeds", "extra_seed_methods")
"""What may differ between the passes of one record (which cells run); every other setting may not."""


def parser() -> argparse.ArgumentParser:
    """The command line; also reads the commands stored in older records."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (writes to /tmp/saec-quick/)")
    ap.add_argument("--dataset", default=D.dataset)
    ap.add_argument("--dim", type=int, default=D.dim)
    ap.add_argument("--min-count", type=int, default=D.min_count)
    ap.add_argument("--num-test", type=int, default=D.num_test, help="held-out test interactions per user")
    ap.add_argument("--ratios", default=",".join(map(str, D.ratios)))
    ap.add_argument("--methods", default=None, help="pointwise methods ('' for none; default all)")
    ap.add_argument("--ranknet-methods", default=None, help="RankNet methods ('' for none; default all)")
    ap.add_argument("--seeds", type=int, default=D.seeds)
    ap.add_argument("--extra-seeds", type=int, default=D.extra_seeds, help="seeds for the reference and --extra-seed-methods")
    ap.add_argument("--extra-seed-methods", default=",".join(D.extra_seed_methods))
    ap.add_argument("--lr", type=float, default=D.lr, help="Adagrad learning rate, pointwise")
    ap.add_argument("--ranknet-lr", type=float, default=D.ranknet_lr, help="Adagrad learning rate, RankNet")
    ap.add_argument("--tt-max-rank", type=int, default=D.tt_max_rank, help="skip TT where the budget needs a larger rank")
    ap.add_argument("--negatives", type=int, default=D.negatives, help="RankNet pairs per example")
    ap.add_argument("--batch-size", type=int, default=D.batch_size)
    ap.add_argument("--epochs", type=int, default=D.epochs)
    ap.add_argument("--patience", type=int, default=D.patience)
    ap.add_argument("--out", type=Path, default=None, help="default docs/results/memcom_ranking.md")
    ap.add_argument("--json", type=Path, default=None, help="the raw record (default: OUT with .json)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the cells already in the JSON record and run only the missing ones (e.g. after raising --seeds)")
    ap.add_argument("--rerun", action="append", default=[], metavar="METHOD[:RATIO,...]", help=RERUN_HELP)
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from the JSON record")
    ap.add_argument("--quiet", action="store_true")
    return ap


def config(args: argparse.Namespace) -> RankingConfig:
    """The run's settings from parsed options (``--quick`` shrinks them)."""
    dim, ratios, epochs, methods, ranknet = args.dim, args.ratios, args.epochs, args.methods, args.ranknet_methods
    if args.quick:
        dim, ratios, epochs = 16, "1,4", 2
        methods = "memcom,hashing,tt" if methods is None else methods
        ranknet = "memcom,hashing,tt" if ranknet is None else ranknet

    def names(s: str | None) -> tuple[str, ...]:
        return tuple(VARIANTS) if s is None else tuple(m for m in s.split(",") if m)

    return RankingConfig(dataset=args.dataset, dim=dim, min_count=args.min_count, num_test=args.num_test,
                         ratios=tuple(int(q) for q in ratios.split(",")), methods=names(methods),
                         ranknet_methods=names(ranknet), seeds=args.seeds, extra_seeds=args.extra_seeds,
                         extra_seed_methods=names(args.extra_seed_methods), lr=args.lr, ranknet_lr=args.ranknet_lr,
                         tt_max_rank=args.tt_max_rank, negatives=args.negatives, batch_size=args.batch_size,
                         epochs=epochs, patience=args.patience)


def commands_config(record: dict) -> RankingConfig:
    """The settings of a record without a stored config, as its passes' commands state them (they must agree on
    every setting but which cells to run)."""
    configs = []
    for command in record.get("commands") or [record["argv"]]:
        configs.append(config(parser().parse_args(command[command.index(SCRIPT) + 1:])))
    settings = [{k: v for k, v in asdict(c).items() if k not in PLAN} for c in configs]
    if any(s != settings[0] for s in settings):
        raise SystemExit(f"the record's passes ran with different settings: {settings}")
    return configs[0]


def main() -> None:
    args = parser().parse_args()
    out = args.out or Path("/tmp/saec-quick/memcom_ranking.md" if args.quick else "docs/results/memcom_ranking.md")
    json_path = args.json or out.with_suffix(".json")
    measure_and_render(
        SCRIPT, out, args.from_json, args.quiet,
        lambda command, progress: run(config(args), command, json_path, args.resume,
                                      [parse_rerun(s) for s in args.rerun], progress),
        lambda record, md, png: render(record if "config" in record else complete(record, commands_config(record)),
                                       md, png),
        json_path)


if __name__ == "__main__":
    main()
