"""Saec on the synthetic production trace: the paper's Tables 1, 2 and 3 (Saec §3.2-§3.4).

Logic in :mod:`saec.bench.trace_saec`. Writes docs/results/trace_saec.md, trace_saec_hours.png, trace_saec_k.png
and the raw record .json. Run from the repository root, under the benchmark lock (~20-30 min on 2 cores):

    flock /tmp/saec-bench.lock python benchmarks/trace_saec.py
    python benchmarks/trace_saec.py --from-json      # re-render the page from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.report import measure_and_render
from saec.bench.trace_saec import TraceSaecConfig, render, run

D = TraceSaecConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--final-features", type=int, default=D.final_features)
    ap.add_argument("--samples-per-hour", type=int, default=D.samples_per_hour)
    ap.add_argument("--hours", type=int, default=D.hours, help="segments; hours 0..H-2 train, the last is only tested")
    ap.add_argument("--field-sigma", type=float, default=D.field_sigma)
    ap.add_argument("--n-fields", type=int, default=D.n_fields)
    ap.add_argument("--lrs", type=float, nargs="+", default=list(D.lrs))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(D.seeds),
                    help="compression seeds: one count, or one per --lrs value")
    ap.add_argument("--every", type=int, nargs="+", default=list(D.every),
                    help="periodic_saec compresses every N hours: one value, or one per --lrs value")
    ap.add_argument("--control-every", type=int, default=D.control_every,
                    help="give the full model Saec's extra epoch (control) every N hours, counted back from the last")
    ap.add_argument("--ks", type=int, nargs="+", default=list(D.ks), help="k of Table 3 (must include 100)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/trace_saec.md"))
    ap.add_argument("--json", type=Path, default=None, help="the raw record (default: OUT with .json)")
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from the raw record")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    n = len(args.lrs)

    def config() -> TraceSaecConfig:
        return TraceSaecConfig(
            final_features=args.final_features, samples_per_hour=args.samples_per_hour, hours=args.hours,
            field_sigma=args.field_sigma, n_fields=args.n_fields, lrs=tuple(args.lrs),
            seeds=tuple(args.seeds * n if len(args.seeds) == 1 else args.seeds),
            every=tuple(args.every * n if len(args.every) == 1 else args.every), control_every=args.control_every,
            ks=tuple(sorted(args.ks)))

    measure_and_render("benchmarks/trace_saec.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(config(), command, progress), render,
                       args.json or args.out.with_suffix(".json"))


if __name__ == "__main__":
    main()
