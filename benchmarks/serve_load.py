"""saec serve under load on loopback (bounded in requests and time), 1 and 2 workers, with a hot reload in the
middle: throughput, p50/p99 latency, errors (issue 11).

Logic in :mod:`saec.bench.load`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/serve_load.py
    python benchmarks/serve_load.py --from-json      # re-render docs/results/serve_load.md from its JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saec.bench.load import LoadConfig, render, run
from saec.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=LoadConfig.requests, help="requests per worker count")
    ap.add_argument("--clients", type=int, default=LoadConfig.clients, help="concurrent client threads")
    ap.add_argument("--out", type=Path, default=Path("docs/results/serve_load.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    if not args.from_json:
        command = ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/serve_load.py",
                   *[a for a in sys.argv[1:] if a != "--quiet"]]
        write_json(json_path, run(LoadConfig(requests=args.requests, clients=args.clients), command,
                                  progress=not args.quiet))
    record = json.loads(json_path.read_text())  # the page always comes from the JSON as stored
    render(record, args.out, png_path)
    print(f"wrote {args.out}, {png_path}" + ("" if args.from_json else f", {json_path}"))


if __name__ == "__main__":
    main()
