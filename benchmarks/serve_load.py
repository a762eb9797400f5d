"""saec serve under load on loopback (bounded in requests and time), 1 and 2 workers, with a hot reload in the
middle: throughput, p50/p99 latency, errors (issue 11).

Logic in :mod:`saec.bench.load`. Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/serve_load.py
    python benchmarks/serve_load.py --from-json      # re-render docs/results/serve_load.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.load import LoadConfig, render, run
from saec.bench.report import measure_and_render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=LoadConfig.requests, help="requests per worker count")
    ap.add_argument("--clients", type=int, default=LoadConfig.clients, help="concurrent client threads")
    ap.add_argument("--out", type=Path, default=Path("docs/results/serve_load.md"))
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    measure_and_render("benchmarks/serve_load.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(LoadConfig(requests=args.requests, clients=args.clients), command, progress), render)


if __name__ == "__main__":
    main()
