"""Damage saved artifacts at random and count what loading them does (issue 9; logic: :mod:`saec.bench.robustness`).

    python benchmarks/robustness.py                 # docs/results/robustness.md and its raw record .json
    python benchmarks/robustness.py --from-json     # re-render the page from the record only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saec.bench.report import read_result
from saec.bench.robustness import RobustnessConfig, render, run
from saec.io import write_json, write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=RobustnessConfig.cases, help="cases per artifact kind and mutation")
    ap.add_argument("--seed", type=int, default=RobustnessConfig.seed)
    ap.add_argument("--out", type=Path, default=Path("docs/results/robustness.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from the JSON record")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    json_path = args.out.with_suffix(".json")
    if args.from_json:
        record = read_result(json_path)
    else:
        record = run(RobustnessConfig(args.cases, args.seed), ["python", *sys.argv], progress=not args.quiet)
        record = read_result(write_json(json_path, record))  # the page always comes from the JSON as stored
    write_text(args.out, render(record))
    print(f"wrote {args.out}" + ("" if args.from_json else f" and {json_path}"))


if __name__ == "__main__":
    main()
