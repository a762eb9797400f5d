"""Saec's production loop (``saec periodic``) on a stream, rendered as Table 1 / Fig. 5 / Fig. 6 of the paper.

Logic in :mod:`saec.bench.periodic`. Run from the repository root under the benchmark lock; everything after
``--`` is passed to ``saec periodic`` (the run folder is ``--run-dir``; re-running the same command resumes it):

    flock /tmp/saec-bench.lock python benchmarks/periodic.py --name periodic_large \\
        --run-dir /tmp/saec-periodic/large -- --preset large
    python benchmarks/periodic.py --name periodic_csv --trace-csv small --run-dir /tmp/saec-periodic/csv -- \\
        --folder /tmp/saec-periodic/csv-data --label label --fields f00,f01,...   (fields filled in for you)
    python benchmarks/periodic.py --from-json docs/results/periodic_large.json --name periodic_large
    python benchmarks/periodic.py --compare docs/results/A.json docs/results/B.json --name periodic_warm \\
        [--names "run A" "run B"] [--time-key retrain_s]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saec.bench.periodic import COMPARED_TIMES, render, render_compare, run, write_trace_csv
from saec.bench.report import read_result
from saec.io import write_json

RESULTS = Path("docs/results")


def main() -> None:
    argv = sys.argv[1:]
    passed = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="page name under docs/results/ (NAME.md, NAME.json, NAME_fig5.png)")
    ap.add_argument("--title", help="page title")
    ap.add_argument("--run-dir", type=Path, help="the saec periodic --out folder")
    ap.add_argument("--trace-csv", metavar="PRESET", help="first write this trace preset as CSV files into "
                    "RUN_DIR-data and run saec periodic on that folder")
    ap.add_argument("--from-json", type=Path, help="only re-render from this raw record")
    ap.add_argument("--compare", type=Path, nargs=2, metavar="JSON", help="render two records side by side")
    ap.add_argument("--names", nargs=2, default=["re-clustering", "warm start"], help="labels of --compare's runs")
    ap.add_argument("--time-key", default="cluster_s", choices=sorted(COMPARED_TIMES),
                    help="--compare: the part of the loop whose seconds are compared (cluster_s)")
    args = ap.parse_args(own)
    md = RESULTS / f"{args.name}.md"
    title = args.title or f"saec periodic: {args.name}"
    if args.compare:
        a, b = (read_result(p) for p in args.compare)
        render_compare(a, b, md, title, tuple(args.names), args.time_key, ["python", "benchmarks/periodic.py", *argv])
        print(f"wrote {md}")
        return
    if args.from_json:
        record = read_result(args.from_json)
    else:
        if args.run_dir is None:
            raise SystemExit("--run-dir is needed to run")
        if args.trace_csv:
            from saec.data.synthetic import SyntheticTrace, TraceConfig

            data = args.run_dir.with_name(args.run_dir.name + "-data")
            if not data.exists():
                write_trace_csv(args.trace_csv, data)
            names = SyntheticTrace(TraceConfig.preset(args.trace_csv)).names
            passed = ["--folder", str(data), "--label", "label", "--fields", ",".join(names), *passed]
        record = run(passed, args.run_dir, ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/periodic.py", *argv])
        record = read_result(write_json(md.with_suffix(".json"), record))  # the page comes from the JSON as stored
    render(record, md, title)
    print(f"wrote {md}, {md.stem}_fig5.png, {md.stem}_fig6.png" + ("" if args.from_json else f", {md.with_suffix('.json')}"))


if __name__ == "__main__":
    main()
