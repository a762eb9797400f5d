"""What every file under docs/results/ states besides its numbers: command, versions, machine."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shlex
import sys
from datetime import datetime, timezone

import numpy as np
import torch

import saec


def cpu_model() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, str]:
    """Versions and machine facts."""
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


def header(title: str, argv: list[str] | None = None, env: dict[str, str] | None = None) -> str:
    """Markdown heading with the exact command and the environment: ``env`` as recorded with the numbers
    (so that re-rendering from raw records does not restamp the date or versions), else this one."""
    cmd = " ".join(shlex.quote(a) for a in (argv if argv is not None else ["python", *sys.argv]))
    env = environment() if env is None else env
    lines = [f"# {title}", "", "Reproduce with:", "", "```", cmd, "```", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def mean_std(xs, digits: int = 4) -> str:
    """``mean ± std`` (sample std, e.g. over seeds); just the value when there is one, ``n/a`` for none."""
    xs = np.asarray(xs, dtype=np.float64)
    if len(xs) == 0:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{xs.mean():.{digits}f} ± {xs.std(ddof=1):.{digits}f}"


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


def measure_and_render(script: str, out, from_json: bool, quiet: bool, measure, render) -> None:
    """What a benchmark entry point does: unless ``from_json``, ``measure(command, progress)`` and store its
    record beside ``out`` (``.json``); then render the page ``out`` and its ``.png`` from the stored JSON alone.
    ``command`` is the flock'd command line that reproduces the record (``--quiet`` and ``--from-json`` left out)."""
    import json
    from pathlib import Path

    from saec.io import write_json

    out = Path(out)
    json_path, png_path = out.with_suffix(".json"), out.with_suffix(".png")
    if not from_json:
        command = ["flock", "/tmp/saec-bench.lock", "python", script,
                   *[a for a in sys.argv[1:] if a not in ("--quiet", "--from-json")]]
        write_json(json_path, measure(command, not quiet))
    render(json.loads(json_path.read_text()), out, png_path)  # the page always comes from the JSON as stored
    print(f"wrote {out}, {png_path}" + ("" if from_json else f", {json_path}"))
