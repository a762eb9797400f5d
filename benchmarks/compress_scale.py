"""Saec compression at production scale: wall time, peak memory and where the time goes, 1e6 -> 1.24e8 vectors.

Logic in :mod:`saec.bench.compress_scale`. Dumps are cached in ``${SAEC_CACHE:-~/.cache/saec}/bench/dumps``
(outside git). Run from the repository root under the benchmark lock:

    flock /tmp/saec-bench.lock python benchmarks/compress_scale.py
    python benchmarks/compress_scale.py --from-json     # re-render docs/results/compress_scale.md from its JSON
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saec.bench.compress_scale import ScaleConfig, render, run
from saec.bench.report import measure_and_render


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(float(s)) for s in text.split(",") if s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, ScaleConfig.sizes)), help="comma-separated total vector counts")
    ap.add_argument("--k", type=int, default=ScaleConfig.k, help="clusters per field")
    ap.add_argument("--top-n", default=",".join(map(str, ScaleConfig.top_ns)),
                    help="comma-separated top_n values, each run at every size (100 x k and the literal 100k)")
    ap.add_argument("--cache", help="dump cache (default: ${SAEC_CACHE:-~/.cache/saec}/bench/dumps)")
    ap.add_argument("--repeats", type=int, default=ScaleConfig.repeats, help="runs per (size, top_n); the fastest is kept")
    ap.add_argument("--no-cli", action="store_true", help="skip timing `saec compress` itself at the largest size")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-page-cache run at the largest size")
    ap.add_argument("--out", type=Path, default=Path("docs/results/compress_scale.md"),
                    help="the page; its raw record (.json) and plot (.png) go beside it")
    ap.add_argument("--from-json", action="store_true", help="only re-render the page from its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    cfg = ScaleConfig(sizes=_ints(args.sizes), k=args.k, top_ns=_ints(args.top_n), repeats=args.repeats,
                      cli=not args.no_cli, cold=not args.no_cold, cache=args.cache)
    measure_and_render("benchmarks/compress_scale.py", args.out, args.from_json, args.quiet,
                       lambda command, progress: run(cfg, command, progress), render)


if __name__ == "__main__":
    main()
