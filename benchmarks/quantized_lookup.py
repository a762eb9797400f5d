"""Forward speed of packed fp16 / int8 / int4 / int2 tables against nn.EmbeddingBag at batch 4096 (issue 8).

Writes docs/results/quantized_lookup.md, .png and the raw record .json (logic: :mod:`saec.bench.lookup`).
Run from the repository root, under the benchmark lock so timed runs never overlap:

    flock /tmp/saec-bench.lock python benchmarks/quantized_lookup.py

``--from-json`` re-renders the page and plot from the JSON without measuring; ``--quick`` is a smoke run
(100,000 rows, 5 repeats) written to /tmp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saec.bench.lookup import LookupConfig, render, run
from saec.bench.report import read_result
from saec.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=LookupConfig.rows)
    ap.add_argument("--repeats", type=int, default=LookupConfig.repeats, help="timed rounds per cell")
    ap.add_argument("--out", type=Path, default=Path("docs/results/quantized_lookup.md"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 5 repeats, output in /tmp")
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from the JSON record")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.repeats = 100_000, 5
        if args.out == ap.get_default("out"):
            args.out = Path("/tmp/quantized_lookup_quick.md")
    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    if args.from_json:
        record = read_result(json_path)
    else:
        command = ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/quantized_lookup.py",
                   *[a for a in sys.argv[1:] if a not in ("--from-json", "--quiet")]]
        write_json(json_path, run(LookupConfig(rows=args.rows, repeats=args.repeats), command, progress=not args.quiet))
        record = read_result(json_path)  # the page always comes from the JSON as stored
    render(record, args.out, png_path)
    print(f"wrote {args.out}, {png_path}" + ("" if args.from_json else f", {json_path}"))


if __name__ == "__main__":
    main()
