"""Segment sources: the ordered stream of periods the production loop trains on (Saec §2.1, §3.1).

Every period the loop trains on one segment and evaluates on the next. A :class:`SegmentSource` is the
one interface it reads, whatever the data:

* :class:`TraceSegments` -- the synthetic production trace, one segment per hour (with Bayes metrics);
* :class:`FileSegments` -- a folder of CSV/Parquet files, one segment per file in name order;
* :class:`TableWindows` -- one time-ordered table cut into windows of its time column (``"1h"``,
  ``"1d"``, ``"7d"``) or into blocks of ``rows`` rows;
* :class:`MovieLensWeeks` -- MovieLens by week of the rating's timestamp (label = rating >= 4).

A :class:`Segment` holds raw per-field values; :func:`encode` turns it into ids with growing
vocabularies (train with ``grow=True``, evaluate the next segment with ``grow=False``).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from saec.config import check_int
from saec.data import movielens
from saec.data.dataset import CTRData, _encode_multi, _labels, _split_multi, is_list_column
from saec.data.schema import Schema
from saec.data.synthetic import SyntheticTrace
from saec.data.tabular import SUFFIXES, TableSpec, _nested_columns, _time_values, read_table
from saec.data.vocab import Vocabulary
from saec.errors import SaecError, SaecFileNotFoundError

__all__ = ["FileSegments", "MovieLensWeeks", "Segment", "SegmentSource", "TableWindows", "TraceSegments",
           "as_source", "encode"]


@dataclass(frozen=True, eq=False)
class Segment:
    """One period of a stream.

    Attributes:
        name: what the period is, for logs (``"hour 3"``, ``"clicks-2024-01-02.csv"``, ``"week 5 (...)"``).
        raw: raw values of every sample per field name: a 1-D array or Series; a multi-valued field
            holds strings joined by its ``sep`` or lists.
        labels: 0/1 labels, float32.
        bayes_auc, bayes_logloss: the Bayes-optimal metrics where the source knows the true click
            probability (the synthetic trace), else None.
    """

    name: str
    raw: dict[str, Any]
    labels: np.ndarray
    bayes_auc: float | None = None
    bayes_logloss: float | None = None

    def __len__(self) -> int:
        return len(self.labels)


class SegmentSource(ABC):
    """An ordered, finite stream of :class:`Segment` objects over one :class:`Schema`.

    ``unit`` names the segments in messages (``"hours"``, ``"files"``, ``"windows"``, ``"weeks"``).
    """

    schema: Schema
    unit: str = "segments"

    @property
    def names(self) -> list[str]:
        """Field names in schema order."""
        return self.schema.names

    @abstractmethod
    def __len__(self) -> int:
        """Number of segments."""

    @abstractmethod
    def segment(self, i: int) -> Segment:
        """Segment ``i`` (0-based)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the stream is (JSON): a resumed run checks that it reads the same stream. Segments appended
        later (a new hourly file) do not change it; the names of segments already trained on are checked
        apart (:meth:`names_of`)."""

    def names_of(self, n: int) -> list[str]:
        """Names of the first ``n`` segments."""
        return [self.segment(i).name for i in range(n)]

    def _check_index(self, i: int) -> int:
        return check_int(f"segment index ({len(self)} {self.unit})", i, 0, len(self) - 1)


def encode(seg: Segment, schema: Schema, vocabs: dict[str, Vocabulary], grow: bool = False,
           min_count: int = 1) -> CTRData:
    """Encode ``seg`` into ids with per-field vocabularies.

    Streaming protocol (Saec §2.1): with ``grow=True`` each vocabulary first admits the segment's new
    values (missing vocabularies are created with the larger of ``min_count`` and the field's own
    ``min_count``); with ``grow=False`` unseen values encode to the OOV id. On the synthetic trace this is
    exactly :func:`saec.data.synthetic.encode_segment`.
    """
    if not grow:
        missing = [n for n in schema.names if n not in vocabs]
        if missing:
            raise SaecError(f"no vocabulary for fields {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    ids = {}
    for f in schema.fields:
        raw = seg.raw[f.name]
        if grow:
            vocabs.setdefault(f.name, Vocabulary(max(min_count, f.min_count)))
        vocab = vocabs[f.name]
        if f.multi_valued:
            col = raw if isinstance(raw, pd.Series) else pd.Series(raw)
            if grow:
                vocab.update(_split_multi(col, f))
            ids[f.name] = _encode_multi(col, f, vocab)
        else:
            if grow:
                vocab.update(raw)
            ids[f.name] = vocab.encode(raw)
    return CTRData(ids, seg.labels)


# -- the synthetic trace ---------------------------------------------------------------------------
class TraceSegments(SegmentSource):
    """The hours of a :class:`SyntheticTrace`, unchanged (same raw ids, labels and order)."""

    unit = "hours"

    def __init__(self, trace: SyntheticTrace) -> None:
        if not isinstance(trace, SyntheticTrace):
            raise SaecError(f"expected a SyntheticTrace, got {type(trace).__name__}")
        self.trace, self.schema = trace, trace.schema

    def __len__(self) -> int:
        return self.trace.config.hours

    def describe(self) -> dict[str, Any]:
        return {"source": "trace", "config": dataclasses.asdict(self.trace.config)}

    def names_of(self, n: int) -> list[str]:
        return [f"hour {i}" for i in range(n)]

    def segment(self, i: int) -> Segment:
        seg = self.trace.segment(self._check_index(i))
        return Segment(f"hour {seg.hour}", seg.raw, seg.labels, seg.bayes_auc, seg.bayes_logloss)


def as_source(source: SegmentSource | SyntheticTrace) -> SegmentSource:
    """``source`` itself, or a :class:`SyntheticTrace` wrapped as :class:`TraceSegments`."""
    if isinstance(source, SegmentSource):
        return source
    if isinstance(source, SyntheticTrace):
        return TraceSegments(source)
    raise SaecError(f"expected a SegmentSource or a SyntheticTrace, got {type(source).__name__}")


# -- tables ----------------------------------------------------------------------------------------
def _prepare(frame: pd.DataFrame, spec: TableSpec, where: str) -> pd.DataFrame:
    """Fields as text (lists stay lists) and labels as int8 0/1, as :func:`saec.data.tabular.tabular_ctr`
    reads them; a bad label is refused naming ``where``."""
    for f in spec.fields:
        col = frame[f.name]
        if not (f.multi_valued and is_list_column(col)):
            frame[f.name] = col.astype("string").astype(object).where(col.notna(), None)
    raw = frame[spec.label]
    raw = raw.astype("int8") if raw.dtype == bool else raw
    try:
        if spec.label_threshold is None:
            y = _labels(raw)
        else:
            num = pd.to_numeric(raw, errors="coerce")
            if num.isna().any():
                row = int(num.isna().to_numpy().argmax())
                raise SaecError(f"label column {spec.label!r} row {row} holds {raw.iloc[row]!r}; expected a number "
                                f"(it is compared with label_threshold)")
            y = (num >= spec.label_threshold).to_numpy()
    except SaecError as e:
        raise SaecError(f"{where}: {e}") from None
    frame[spec.label] = y.astype("int8")
    return frame


def _spec_dict(spec: TableSpec) -> dict[str, Any]:
    return {"label": spec.label, "label_threshold": spec.label_threshold, "time": spec.time,
            "schema": spec.schema.to_dict()}


def _segment_of(frame: pd.DataFrame, spec: TableSpec, name: str) -> Segment:
    if len(frame) == 0:
        raise SaecError(f"segment {name!r} has no rows; every segment needs samples to train or test on")
    return Segment(name, {f.name: frame[f.name].reset_index(drop=True) for f in spec.fields},
                   frame[spec.label].to_numpy(dtype=np.float32))


def _wanted(spec: TableSpec) -> list[str]:
    return list(dict.fromkeys(spec.schema.names + [spec.label] + ([spec.time] if spec.time else [])))


def _header(path: Path) -> list[str]:
    """Column names of a CSV/TSV/Parquet file without reading its rows."""
    sep = SUFFIXES[path.suffix.lower()]
    try:
        if sep is None:
            return list(pq.read_schema(path).names)
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f, delimiter=sep), [])
    except FileNotFoundError:
        raise SaecFileNotFoundError(f"no data file at {path}") from None
    except Exception as e:
        raise SaecError(f"{path}: could not read the header ({type(e).__name__}: {e})") from None


class FileSegments(SegmentSource):
    """A folder of CSV/TSV/Parquet files, one segment per file in name order.

    ``spec`` describes fields and label as for ``saec train --table`` (its ``path`` is the folder; its
    ``splits`` are not used). Every file must have the first file's columns; this is checked for all
    files at once, before any training.
    """

    unit = "files"

    def __init__(self, spec: TableSpec) -> None:
        self.spec, self.schema = spec, spec.schema
        folder = spec.path
        if not folder.is_dir():
            raise SaecFileNotFoundError(f"no folder of segment files at {folder}")
        self.files = sorted(p for p in folder.iterdir()
                            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES)
        if not self.files:
            raise SaecError(f"{folder}: no segment files; expected files ending in {sorted(SUFFIXES)}")
        first = _header(self.files[0])
        for p in self.files[1:]:
            cols = _header(p)
            if cols != first:
                diff = sorted(set(cols) ^ set(first))
                what = f"differs in {diff}" if diff else "has them in another order"
                raise SaecError(f"segment {p.name!r}: its columns {cols} differ from those of the first file "
                                f"{self.files[0].name!r} {first} ({what})")

    def __len__(self) -> int:
        return len(self.files)

    def describe(self) -> dict[str, Any]:
        return {"source": "files", "folder": str(self.spec.path.resolve()), **_spec_dict(self.spec)}

    def names_of(self, n: int) -> list[str]:
        return [p.name for p in self.files[:n]]

    def segment(self, i: int) -> Segment:
        path = self.files[self._check_index(i)]
        frame = read_table(path, columns=_wanted(self.spec))
        undeclared = _nested_columns(path, [f.name for f in self.schema.fields if not f.multi_valued])
        if undeclared:
            raise SaecError(f"{path}: column {undeclared[0]!r} holds lists but is not declared multi-valued")
        return _segment_of(_prepare(frame, self.spec, f"segment {path.name!r}"), self.spec, path.name)


_WINDOW = re.compile(r"(\d+)([hdw])")


def parse_window(window: str) -> pd.Timedelta:
    """``"1h"``, ``"1d"``, ``"7d"`` (or ``"2w"``...) as a Timedelta."""
    m = _WINDOW.fullmatch(window) if isinstance(window, str) else None
    if not m or int(m.group(1)) < 1:
        raise SaecError(f"window must be a positive number of hours, days or weeks such as '1h', '1d' or '7d', "
                        f"got {window!r}")
    return pd.Timedelta(**{{"h": "hours", "d": "days", "w": "weeks"}[m.group(2)]: int(m.group(1))})


class _FrameWindows(SegmentSource):
    """Consecutive windows of one prepared table (fields as text, labels 0/1, time as datetimes)."""

    unit = "windows"

    def __init__(self, frame: pd.DataFrame, spec: TableSpec, window: str | None, rows: int | None,
                 label: str) -> None:
        if (window is None) == (rows is None):
            raise SaecError(f"give either window (e.g. '1d') or rows, got window={window!r}, rows={rows!r}")
        self.spec, self.schema = spec, spec.schema
        if len(frame) == 0:
            raise SaecError(f"{label}: the table has no rows")
        if spec.time is not None:
            frame = frame.sort_values(spec.time, kind="stable")  # time order; ties keep the file's order
        if rows is not None:
            rows = check_int("rows", rows, 1)
            key = np.arange(len(frame)) // rows
            names = [f"{label} rows {k * rows}..{min((k + 1) * rows, len(frame)) - 1}" for k in np.unique(key)]
        else:
            if spec.time is None:
                raise SaecError(f"{label}: cutting into windows of {window!r} needs a time column")
            width = parse_window(window)
            t = frame[spec.time]
            if pd.api.types.is_numeric_dtype(t):  # numbers are Unix seconds (MovieLens' timestamps)
                t = pd.to_datetime(t, unit="s")
            start = t.iloc[0].floor("1h" if width < pd.Timedelta(days=1) else "1D")
            key = ((t - start) // width).to_numpy().astype(np.int64)
            fmt = "%Y-%m-%d %H:%M" if width < pd.Timedelta(days=1) else "%Y-%m-%d"
            # windows without rows are skipped: the names give each window's start, so a gap shows
            names = [self._window_name(label, int(k), (start + k * width).strftime(fmt)) for k in np.unique(key)]
        bounds = np.flatnonzero(np.diff(key)) + 1
        self._frame, self._starts = frame, np.concatenate([[0], bounds, [len(frame)]])
        self._names = names
        self._cut = {"window": window, "rows": rows}

    def describe(self) -> dict[str, Any]:
        return {"source": "table", "path": str(self.spec.path.resolve()), **self._cut, **_spec_dict(self.spec)}

    def names_of(self, n: int) -> list[str]:
        return self._names[:n]

    def _window_name(self, label: str, k: int, start: str) -> str:
        return f"{label} {start}"

    def __len__(self) -> int:
        return len(self._names)

    def segment(self, i: int) -> Segment:
        i = self._check_index(i)
        part = self._frame.iloc[self._starts[i]: self._starts[i + 1]]
        return _segment_of(part, self.spec, self._names[i])


class TableWindows(_FrameWindows):
    """One time-ordered CSV/Parquet table cut into windows of its time column (``window="1h"``, ``"1d"``,
    ``"7d"``; a numeric time is read as Unix seconds; windows without rows are skipped) or into blocks
    of ``rows`` rows. The table is read and its labels checked once, naming the file and row."""

    def __init__(self, spec: TableSpec, window: str | None = None, rows: int | None = None) -> None:
        frame = read_table(spec.path, columns=_wanted(spec))
        undeclared = _nested_columns(spec.path, [f.name for f in spec.schema.fields if not f.multi_valued])
        if undeclared:
            raise SaecError(f"{spec.path}: column {undeclared[0]!r} holds lists but is not declared multi-valued")
        frame = _prepare(frame, spec, str(spec.path))
        if spec.time is not None:
            frame[spec.time] = _time_values(frame[spec.time], spec)
        super().__init__(frame, spec, window, rows, spec.path.name)


class MovieLensWeeks(_FrameWindows):
    """MovieLens (``"movielens-1m"`` or ``"movielens-100k"``) by week of the rating's timestamp, label =
    rating >= 4 as in :func:`saec.data.movielens.movielens_ctr`; weeks count from the day of the first
    rating and weeks without ratings are skipped (their number is kept in the names)."""

    unit = "weeks"

    def __init__(self, name: str = "movielens-1m", cache: Path | None = None,
                 dims: dict[str, int] | None = None) -> None:
        frame = movielens.load_ratings(name, cache)
        frame["label"] = (frame["rating"] >= 4).astype("int8")
        schema = movielens.movielens_schema(dims)
        spec = TableSpec(Path(name), label=schema.label, fields=list(schema.fields), time=schema.time)
        super().__init__(frame, spec, "7d", None, name)

    def _window_name(self, label: str, k: int, start: str) -> str:
        return f"week {k} ({start})"

    def describe(self) -> dict[str, Any]:
        return {"source": "movielens-weeks", "name": str(self.spec.path), "schema": self.schema.to_dict()}
