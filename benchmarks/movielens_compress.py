"""Post-training methods of saec.compress (saec, saec_int8, fp16, int8, int4, int2) on the MovieLens-1M DSSM.

Writes docs/results/movielens_compress.md, .png and the raw record .json (logic:
:mod:`saec.bench.movielens_compress`). Run from the repository root, under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/movielens_compress.py

``--from-json`` re-renders the page and plot from the JSON record without training or compressing. The
script exits with an error (after writing the record and the page) if Saec through ``saec.compress``
differs from the flow's ``compress_model``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saec.bench.movielens_compress import CompressBenchConfig, flow_mismatches, render, run
from saec.bench.report import read_result
from saec.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=CompressBenchConfig.dataset, help="(movielens-1m)")
    ap.add_argument("--epochs", type=int, default=CompressBenchConfig.epochs,
                    help="most epochs of the full model's training, early stopping on valid AUC (10, as saec run)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/movielens_compress.md"))
    ap.add_argument("--from-json", type=Path, default=None, metavar="JSON",
                    help="only re-render the page from this raw record (e.g. docs/results/movielens_compress.json)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args()
    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    if args.from_json:
        record = read_result(args.from_json)
    else:
        command = ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/movielens_compress.py",
                   *[a for a in sys.argv[1:] if a != "--quiet"]]
        cfg = CompressBenchConfig(dataset=args.dataset, epochs=args.epochs)
        record = run(cfg, command, progress=not args.quiet)
        record = read_result(write_json(json_path, record))  # the page always comes from the JSON as stored
    render(record, args.out, png_path)
    print(f"wrote {args.out}, {png_path}" + ("" if args.from_json else f", {json_path}"))
    bad = flow_mismatches(record)
    if bad:
        raise SystemExit("saec.compress's Saec differs from the flow's compress_model: " + "; ".join(bad))


if __name__ == "__main__":
    main()
