"""Statistics of the synthetic QQ-browser-like trace (saec.data.synthetic) and its scaling.

Logic in :mod:`saec.bench.trace_stats`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/trace_stats.py --preset medium
    python benchmarks/trace_stats.py --from-json     # re-render docs/results/synthetic_trace.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.report import measure_and_render
from saec.bench.trace_stats import TraceStatsConfig, render, run
from saec.data.synthetic import PRESETS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=TraceStatsConfig.preset, choices=sorted(PRESETS))
    p.add_argument("--out", type=Path, default=Path("docs/results/synthetic_trace.md"),
                   help="the page; its raw record (.json) and figure (.png) go beside it")
    p.add_argument("--scale-preset", default=TraceStatsConfig.scale_preset, choices=sorted(PRESETS),
                   help="a >=10^7-feature preset to time in a fresh process")
    p.add_argument("--scale-hours", type=int, default=TraceStatsConfig.scale_hours,
                   help="last hours of --scale-preset to generate")
    p.add_argument("--no-scale", action="store_true", help="skip the scaling measurements")
    p.add_argument("--no-paper-tables", action="store_true", help="skip streaming the 1.24e8-vector table")
    p.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    if args.scale_hours < 1:
        p.error("--scale-hours must be >= 1")
    cfg = TraceStatsConfig(preset=args.preset, scale=not args.no_scale, scale_preset=args.scale_preset,
                           scale_hours=args.scale_hours, paper_tables=not args.no_paper_tables)
    measure_and_render("benchmarks/trace_stats.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(cfg, command, progress), render)


if __name__ == "__main__":
    main()
