"""How Saec's retraining epoch should work on the synthetic trace: targets, optimizer state, k.

Logic in :mod:`saec.bench.trace_retrain`. Run from the repository root under the benchmark lock (about 30
minutes on 2 cores; ``--quick`` for a smoke run), or re-render the page from the raw records of runs made apart:

    flock /tmp/saec-bench.lock python benchmarks/trace_retrain.py --json docs/results/trace_retrain.json
    python benchmarks/trace_retrain.py --from-json docs/results/trace_retrain_lr0.001.json docs/results/trace_retrain_lr0.01.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saec.bench.report import read_result
from saec.bench.trace_retrain import RetrainStudyConfig, merge, render, run
from saec.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=list(RetrainStudyConfig.lrs))
    ap.add_argument("--at", type=int, nargs="+", default=list(RetrainStudyConfig.at), help="hours compressed")
    ap.add_argument("--seeds", type=int, default=RetrainStudyConfig.seeds)
    ap.add_argument("--threads", type=int, default=RetrainStudyConfig.threads)
    ap.add_argument("--quick", action="store_true", help="tiny trace, for a smoke run")
    ap.add_argument("--out", type=Path, default=Path("docs/results/trace_retrain.md"))
    ap.add_argument("--json", type=Path, help="the raw record (default: beside --out, .json)")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None,
                    help="only render OUT from the raw records of earlier runs (e.g. one per learning rate, run in "
                         "parallel)")
    args = ap.parse_args()
    argv = ["python", "benchmarks/trace_retrain.py", *sys.argv[1:]]
    if args.from_json:
        record = merge([read_result(p) for p in args.from_json])
        render(record, args.out, argv)
        print(f"wrote {args.out}")
        return
    cfg = RetrainStudyConfig(lrs=tuple(args.lrs), at=tuple(args.at), seeds=args.seeds, threads=args.threads,
                             quick=args.quick)
    json_path = args.json or args.out.with_suffix(".json")
    record = run(cfg, ["flock", "/tmp/saec-bench.lock", *argv], checkpoint=lambda r: write_json(json_path, r))
    write_json(json_path, record)
    render(read_result(json_path), args.out)  # the page always comes from the JSON as stored
    print(f"wrote {args.out}, {json_path} in {record['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
