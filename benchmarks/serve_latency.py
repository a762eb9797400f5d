"""Inference latency (p50/p99, batch 1 and 256) and process memory of the uncompressed model, Saec, Saec+int8,
int8, MEmCom and Weinberger hashing in PyTorch and in ONNX Runtime: MEmCom Table 3's analogue (issue 11).

Logic in :mod:`saec.bench.latency`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/serve_latency.py
    python benchmarks/serve_latency.py --from-json      # re-render docs/results/serve_latency.md from its JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saec.bench.latency import LatencyConfig, render, run
from saec.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="movielens-1m")
    ap.add_argument("--calls", type=int, default=LatencyConfig.calls, help="timed calls per batch size")
    ap.add_argument("--out", type=Path, default=Path("docs/results/serve_latency.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    if not args.from_json:
        command = ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/serve_latency.py",
                   *[a for a in sys.argv[1:] if a != "--quiet"]]
        write_json(json_path, run(LatencyConfig(dataset=args.dataset, calls=args.calls), command,
                                  progress=not args.quiet))
    record = json.loads(json_path.read_text())  # the page always comes from the JSON as stored
    render(record, args.out, png_path)
    print(f"wrote {args.out}, {png_path}" + ("" if args.from_json else f", {json_path}"))


if __name__ == "__main__":
    main()
