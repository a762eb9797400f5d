"""Resumable sweeps: a grid of cells (method x ratio x seed ...) whose raw record is written after every cell, so
that a later pass can continue it (``--resume``) or run chosen cells again (``--rerun``) without anyone editing
the JSON by hand.

A record holds its cells under one key (``rows``), the wall time of all its passes, the environment and peak RSS
of its last pass (the peak: the largest of any logged pass) and ``commands``, one per pass (``None`` for passes
made before passes were logged). A record continued from one written before records carried their environment
is marked ``predates_logging``: its pages keep the history of those earlier passes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from saec.bench.report import environment, peak_rss_mib, read_result
from saec.errors import SaecError
from saec.io import write_json

RERUN_HELP = ("run these cells again: METHOD (every ratio) or METHOD:RATIO[,RATIO...]; their rows are dropped from "
              "the stored record and run anew, the other rows kept (implies --resume; repeatable)")


def parse_rerun(spec: str) -> tuple[str, tuple[float, ...] | None]:
    """``"tt"`` -> ``("tt", None)`` (every ratio); ``"tt:2,4"`` -> ``("tt", (2.0, 4.0))``."""
    method, _, ratios = spec.partition(":")
    if not method:
        raise SaecError(f"--rerun must be METHOD or METHOD:RATIO[,RATIO...], got {spec!r}")
    if not ratios:
        return method, None
    try:
        return method, tuple(float(r) for r in ratios.split(","))
    except ValueError:
        raise SaecError(f"--rerun {spec!r}: the ratios after ':' must be numbers, e.g. {method}:2,4") from None


class Sweep:
    """The record of a sweep at ``path``: fresh, or (``resume``, or any ``rerun``) continued from the one stored
    there with the rows of the ``rerun`` cells (:func:`parse_rerun` pairs; ``method_key`` names the row's method
    field) dropped. :meth:`add` stores a row and writes the record; ``done`` holds what need not run again."""

    def __init__(self, path: str | Path, record: dict[str, Any], command: list[str], *, rows: str = "rows",
                 wall: str = "wall_s", method_key: str = "method", resume: bool = False,
                 rerun: Iterable[tuple[str, tuple[float, ...] | None]] = ()) -> None:
        self.path, self.rows_key, self.wall_key = Path(path), rows, wall
        rerun = list(rerun)
        self.record = {**record, rows: [], "commands": [command]}
        self.before_s, self.peak_before = 0.0, 0.0
        if (resume or rerun) and self.path.is_file():
            old = read_result(self.path)  # sweeps begun before records carried a checksum go on
            self.record[rows] = old[rows]
            self.record["commands"] = old.get("commands", [None] if old[rows] else []) + [command]
            self.before_s, self.peak_before = old.get(wall, 0.0), old.get("peak_rss_mib") or 0.0
            if old.get("predates_logging", "environment" not in old):  # its early passes' history is not logged
                self.record["predates_logging"] = True
        elif rerun:
            raise SaecError(f"--rerun needs the stored record {self.path}; it does not exist")
        matched = {m: False for m, _ in rerun}
        kept = []
        for row in self.record[rows]:
            hit = [m for m, ratios in rerun if row[method_key] == m and (ratios is None or row["ratio"] in ratios)]
            matched.update(dict.fromkeys(hit, True))
            if not hit:
                kept.append(row)
        missing = [m for m, hit in matched.items() if not hit]
        if missing:
            raise SaecError(f"--rerun {missing}: no such cells in {self.path}")
        self.record[rows] = kept
        self.start = time.perf_counter()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows so far."""
        return self.record[self.rows_key]

    def add(self, row: dict[str, Any]) -> None:
        """Keep ``row`` and write the record (so a cut-short pass keeps what it did)."""
        self.rows.append(row)
        self.save()

    def save(self) -> dict[str, Any]:
        """Write the record with the wall time, environment and peak RSS so far; returns it."""
        self.record[self.wall_key] = self.before_s + time.perf_counter() - self.start
        self.record["environment"] = environment()
        self.record["peak_rss_mib"] = max(self.peak_before, peak_rss_mib())
        write_json(self.path, self.record)
        return self.record


__all__ = ["RERUN_HELP", "Sweep", "parse_rerun"]
