"""Saec on MovieLens-1M CTR: test AUC / log loss vs compression ratio for a sweep of k.

Logic in :mod:`saec.bench.movielens_saec`. Writes docs/results/movielens_saec.md, .png and the raw record .json.
Run from the repository root, under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/movielens_saec.py
    python benchmarks/movielens_saec.py --from-json      # re-render the page from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.movielens_saec import MovielensSaecConfig, complete, render, run
from saec.bench.report import measure_and_render
from saec.data import movielens

SCRIPT = "benchmarks/movielens_saec.py"
D = MovielensSaecConfig


def _csv(values) -> str:
    return ",".join(map(str, values))


def parser() -> argparse.ArgumentParser:
    """The command line; also reads the commands stored in older records."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=D.dataset, choices=sorted(movielens.SOURCES))
    ap.add_argument("--models", default=_csv(D.models))
    ap.add_argument("--ks", default=_csv(D.ks))
    ap.add_argument("--deepfm-ks", default=_csv(D.deepfm_ks), help="DeepFM sweeps fewer k to keep the run short")
    ap.add_argument("--seeds", type=int, default=D.seeds)
    ap.add_argument("--grad-modes", default=_csv(D.grad_modes),
                    help="retraining rules: mean / sum gradient; +full = fit the full model's predictions")
    ap.add_argument("--deepfm-grad-modes", default=_csv(D.deepfm_grad_modes),
                    help="DeepFM retrains with fewer rules to keep the run short")
    ap.add_argument("--min-field", type=int, default=D.min_field,
                    help="eligibility = max(1, MIN_FIELD / k): fields with >= MIN_FIELD features are clustered")
    ap.add_argument("--epochs", type=int, default=D.epochs, help="cap of the full model's training (early stopping)")
    ap.add_argument("--patience", type=int, default=D.patience)
    ap.add_argument("--lr", type=float, default=D.lr)
    ap.add_argument("--batch-size", type=int, default=D.batch_size)
    ap.add_argument("--ablation-k", type=int, default=D.ablation_k, help="0 skips the per-field ablation")
    ap.add_argument("--ablation-fields", default=_csv(D.ablation_fields))
    ap.add_argument("--variant-ks", default=_csv(D.variant_ks), help="k of the retraining-recipe comparison ('' skips it)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/movielens_saec.md"))
    ap.add_argument("--json", type=Path, default=None, help="the raw record (default: OUT with .json)")
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from the raw record")
    ap.add_argument("--quiet", action="store_true")
    return ap


def config(args: argparse.Namespace) -> MovielensSaecConfig:
    """The run's settings from parsed options."""
    def ints(s: str) -> tuple[int, ...]:
        return tuple(int(x) for x in s.split(",") if x)

    return MovielensSaecConfig(
        dataset=args.dataset, models=tuple(args.models.split(",")), ks=ints(args.ks), deepfm_ks=ints(args.deepfm_ks),
        seeds=args.seeds, grad_modes=tuple(args.grad_modes.split(",")),
        deepfm_grad_modes=tuple(args.deepfm_grad_modes.split(",")), min_field=args.min_field, epochs=args.epochs,
        patience=args.patience, lr=args.lr, batch_size=args.batch_size, ablation_k=args.ablation_k,
        ablation_fields=tuple(args.ablation_fields.split(",")), variant_ks=ints(args.variant_ks))


def main() -> None:
    args = parser().parse_args()

    def render_record(record, md, png):  # a record without its config: as its stored command states it
        argv = record["argv"]
        render(complete(record, config(parser().parse_args(argv[argv.index(SCRIPT) + 1:]))), md, png)

    measure_and_render(SCRIPT, args.out, args.from_json, args.quiet,
                       lambda command, progress: run(config(args), command, progress), render_record,
                       args.json or args.out.with_suffix(".json"))


if __name__ == "__main__":
    main()
