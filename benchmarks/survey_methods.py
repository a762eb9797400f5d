"""Every registered method on MovieLens-1M at 1/16 of the embedding bytes: issue 12's sanity table.

Logic in :mod:`saec.bench.survey_methods`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/survey_methods.py
    python benchmarks/survey_methods.py --from-json      # re-render docs/results/survey_methods.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.report import measure_and_render
from saec.bench.survey_methods import SurveyConfig, render, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratio", type=float, default=SurveyConfig.ratio, help="large tables at most 1/RATIO of their bytes")
    ap.add_argument("--epochs", type=int, default=SurveyConfig.epochs)
    ap.add_argument("--out", type=Path, default=Path("docs/results/survey_methods.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    measure_and_render("benchmarks/survey_methods.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(SurveyConfig(ratio=args.ratio, epochs=args.epochs), command,
                                                     progress), render)


if __name__ == "__main__":
    main()
