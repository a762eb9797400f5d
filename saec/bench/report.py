"""What every file under docs/results/ states besides its numbers: command, versions, machine."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

import saec
from saec.bench.measure import peak_rss_mib  # noqa: F401  (where every benchmark has found it)


def cpu_model() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


ENVIRONMENT_KEYS = ("saec", "python", "torch", "numpy", "faiss", "torch threads", "machine", "date")


def environment() -> dict[str, str]:
    """Versions and machine facts (the keys of :data:`ENVIRONMENT_KEYS`, in that order)."""
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "saec": saec.__version__, "python": platform.python_version(), "torch": str(torch.__version__),
        "numpy": np.__version__, "faiss": faiss_version, "torch threads": str(torch.get_num_threads()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


NOT_RECORDED = "not recorded"
"""What a page says for a fact its raw record does not hold (records written before it was stored)."""


def recorded_environment(env: dict[str, str] | None, **facts: str) -> dict[str, str]:
    """The environment lines of a page: ``env`` as a raw record stored it (JSON keys come back sorted) in
    :func:`environment`'s order, other keys after, or ``{"environment": NOT_RECORDED}`` for a record that has none
    (never the rendering process's); then ``facts`` (peak RSS, wall time, ...)."""
    if not env:
        return {"environment": NOT_RECORDED, **facts}
    keys = [k for k in ENVIRONMENT_KEYS if k in env] + sorted(set(env) - set(ENVIRONMENT_KEYS))
    return {**{k: env[k] for k in keys}, **facts}


def recorded_run(record: dict, peak_label: str = "peak RSS") -> dict[str, str]:
    """The lines a page's header shows about the run that produced ``record``: its :func:`recorded_environment`,
    its peak RSS (``record["peak_rss_mib"]``, under ``peak_label``) and its wall time (``record["wall_s"]``), each
    ``not recorded`` if the record lacks it, never this process's."""
    peak, wall = record.get("peak_rss_mib"), record.get("wall_s")
    return {**recorded_environment(record.get("environment")),
            peak_label: peak_rss_text(peak),
            "wall time": NOT_RECORDED if wall is None else f"{wall / 60:.1f} min"}


NO_CHECKSUM = "not recorded (written before results carried one)"
"""A page's checksum line for a raw record without one (:func:`saec.io.read_json` with ``legacy_ok``)."""


def checksums(*records: dict) -> list[str | None]:
    """The verified checksums of the raw records a page is rendered from (``None`` for one written without), in
    order; a record merged from several lists theirs under ``checksums``."""
    from saec.io import CHECKSUM

    return [c for r in records for c in r.get("checksums", [r.get(CHECKSUM)])]


def checksum_text(sums: list[str | None]) -> str:
    """The page's ``checksum`` line for the raw records' :func:`checksums`."""
    if not any(sums):
        return NO_CHECKSUM
    return ", ".join(f"sha256 {c} (verified)" if c else NO_CHECKSUM for c in sums)


def read_result(path) -> dict:
    """A benchmark's raw record for its page: verified, or one written before results carried a checksum
    (:data:`NO_CHECKSUM`), which a benchmark's history keeps as it was."""
    from saec.io import read_json

    return read_json(path, legacy_ok=True)


def header(title: str, argv: list[str] | None = None, env: dict[str, str] | None = None,
           sums: list[str | None] | None = None) -> str:
    """Markdown heading with the exact command and the environment: ``env`` as recorded with the numbers
    (so that re-rendering from raw records does not restamp the date or versions; :data:`ENVIRONMENT_KEYS` first, in
    that order, then its other keys as given), else this one; then the
    ``checksum`` line of the raw records' :func:`checksums` ``sums``, if given."""
    cmd = " ".join(shlex.quote(a) for a in (argv if argv is not None else ["python", *sys.argv]))
    env = environment() if env is None else env
    # a fixed order whatever order the record's keys come back in (JSON files store them sorted)
    keys = [k for k in ENVIRONMENT_KEYS if k in env] + [k for k in env if k not in ENVIRONMENT_KEYS]
    lines = [f"# {title}", "", "Reproduce with:", "", "```", cmd, "```", ""]
    lines += [f"- {k}: {env[k]}" for k in keys]
    if sums is not None:
        lines.append(f"- checksum: {checksum_text(sums)}")
    return "\n".join(lines) + "\n"


def mean_std(xs, digits: int = 4, sign: bool = False) -> str:
    """``mean ± std`` (sample std, e.g. over seeds); just the value when there is one, ``n/a`` for none.
    ``sign``: the mean with its sign (``+0.0012 ± 0.0003``), for differences."""
    xs = np.asarray(xs, dtype=np.float64)
    if len(xs) == 0:
        return "n/a"
    fmt = f"{'+' if sign else ''}.{digits}f"
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(xs.mean(), fmt)} ± {xs.std(ddof=1):.{digits}f}"


def mean(xs) -> float:
    """The mean of ``xs`` as a float; NaN (without numpy's warning) when there are none."""
    return float(np.mean(xs)) if len(xs) else float("nan")


def relative_loss(x: float, ref: float) -> float:
    """How far ``x`` falls below ``ref``, in % of ``ref`` (negative: above it)."""
    return 100.0 * (ref - x) / ref


def select(rows, **match) -> list:
    """The rows (dicts) whose fields equal every ``match``."""
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def group_by(rows, *keys: str) -> dict:
    """Rows grouped by the values of ``keys`` (one key: its value; several: their tuple), in first-seen order."""
    out: dict = {}
    for r in rows:
        key = r[keys[0]] if len(keys) == 1 else tuple(r[k] for k in keys)
        out.setdefault(key, []).append(r)
    return out


def count_word(n: int) -> str:
    """``n`` in words up to twelve (prose reads "the five small fields"), digits above."""
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
    return words[n] if 0 <= n < len(words) else f"{n:,}"


def and_list(items) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    items = [str(x) for x in items]
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + f" and {items[-1]}"


def recorded_config(cls, values: dict):
    """The config dataclass ``cls`` as a raw record stores it (``asdict``, through JSON: lists for tuples); keys
    that are not its fields (e.g. command-line flags an older record kept with it) are ignored."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})


def log(msg: str) -> None:
    """A progress line on stderr, stamped with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_text(mib: float | None) -> str:
    """A recorded peak RSS for a page (``1,259 MiB``), :data:`NOT_RECORDED` when the record has none."""
    return NOT_RECORDED if mib is None else f"{mib:,.0f} MiB"


def sci(x: float) -> str:
    """A count in ``1.24e8`` style (three significant digits, trailing zeros dropped)."""
    m, e = f"{x:.2e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def span(xs, fmt: str = "{:.2f}") -> str:
    """``lo to hi`` of ``xs`` formatted by ``fmt`` (one value when both look the same; ``n/a`` for none)."""
    if len(xs) == 0:
        return "n/a"
    lo, hi = fmt.format(min(xs)), fmt.format(max(xs))
    return lo if lo == hi else f"{lo} to {hi}"


def markdown_table(rows: list[list[str]]) -> str:
    """First row is the header."""
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out) + "\n"


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as PNG atomically (temporary name, then rename) and close it."""
    import matplotlib.pyplot as plt

    from saec.io import atomic_write

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


def measure_and_render(script: str, out, from_json: bool, quiet: bool, measure, render, json_path=None,
                       figure: bool = True) -> None:
    """What a benchmark entry point does: unless ``from_json``, ``measure(command, progress)`` and store its
    record at ``json_path`` (default: beside ``out``, ``.json``); then render the page ``out`` and its ``.png``
    (``render(record, out, png)``; without a ``figure``, ``render(record, out)``) from the stored JSON alone.
    ``command`` is the flock'd command line that reproduces the record (``--quiet`` and ``--from-json`` left out)."""
    from pathlib import Path

    from saec.io import write_json

    out = Path(out)
    json_path, png_path = Path(json_path) if json_path else out.with_suffix(".json"), out.with_suffix(".png")
    if not from_json:
        command = ["flock", "/tmp/saec-bench.lock", "python", script,
                   *[a for a in sys.argv[1:] if a not in ("--quiet", "--from-json")]]
        write_json(json_path, measure(command, not quiet))
    record = read_result(json_path)  # the page always comes from the JSON as stored, verified
    if figure:
        render(record, out, png_path)
    else:
        render(record, out)
    print(f"wrote {out}" + (f", {png_path}" if figure else "") + ("" if from_json else f", {json_path}"))
