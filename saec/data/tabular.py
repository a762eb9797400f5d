"""Bring your own data: a CSV or Parquet click log with a label column and named categorical columns.

No Python needed: the same description comes from command-line flags or from a small TOML file::

    [data]
    path = "clicks.csv"          # relative to this file; .csv, .tsv, .parquet or .pq
    label = "click"              # 0/1 (or give label_threshold: label = value >= threshold)
    time = "ts"                  # optional: split by this column instead of row order
    splits = [0.8, 0.1, 0.1]     # optional
    dim = 16                     # optional default embedding dimension

    [[fields]]
    name = "user"
    [[fields]]
    name = "tags"
    multi_valued = true
    sep = "|"
    dim = 8
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from saec.data.schema import Field, Schema
from saec.data.dataset import is_list_column
from saec.data.task import SPLITS, CTRTask, build_task
from saec.data.vocab import Vocabulary
from saec.errors import SaecError, SaecFileNotFoundError

SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}


@dataclass
class TableSpec:
    """Where a click log is and how to read it (the ``[data]`` section plus ``[[fields]]``)."""

    path: Path
    label: str
    fields: list[Field]
    time: str | None = None
    label_threshold: float | None = None
    splits: tuple[float, float, float] = SPLITS
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return Schema(tuple(self.fields), label=self.label, time=self.time)


def parse_fields(names: list[str], dim: int = 16, multi: dict[str, str] | None = None,
                 dims: dict[str, int] | None = None, min_count: int = 1) -> list[Field]:
    """Fields from column names; ``multi`` maps multi-valued columns to their separator."""
    multi, dims = multi or {}, dims or {}
    unknown = sorted((set(multi) | set(dims)) - set(names))
    if unknown:
        raise SaecError(f"options given for {unknown}, which are not among the fields {names}")
    return [Field(n, dims.get(n, dim), multi_valued=n in multi, sep=multi.get(n, " "), min_count=min_count)
            for n in names]


def load_spec(config: str | Path) -> TableSpec:
    """Read a TOML data description (see the module docstring)."""
    config = Path(config)
    try:
        doc = tomllib.loads(config.read_text())
    except FileNotFoundError:
        raise SaecFileNotFoundError(f"no config file at {config}") from None
    except tomllib.TOMLDecodeError as e:
        raise SaecError(f"{config}: not valid TOML: {e}") from None
    data = doc.get("data")
    if not isinstance(data, dict) or "path" not in data or "label" not in data:
        raise SaecError(f"{config}: needs a [data] section with at least 'path' and 'label'")
    raw_fields = doc.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise SaecError(f"{config}: needs at least one [[fields]] entry with a 'name'")
    default_dim = data.get("dim", 16)
    if isinstance(default_dim, bool) or not isinstance(default_dim, int) or default_dim < 1:
        raise SaecError(f"{config}: [data] dim must be a positive integer, got {default_dim!r}")
    fields = []
    for i, f in enumerate(raw_fields):
        if "name" not in f:
            raise SaecError(f"{config}: [[fields]] entry {i + 1} has no 'name'")
        try:
            fields.append(Field(**{"dim": default_dim, **f}))
        except TypeError as e:
            raise SaecError(f"{config}: field {f['name']!r}: {e}") from None
    known = {"path", "label", "time", "label_threshold", "splits", "dim"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SaecError(f"{config}: unknown keys {unknown} in [data]; known keys are {sorted(known)}")
    path = Path(data["path"])
    return TableSpec(
        path=path if path.is_absolute() else config.parent / path, label=data["label"], fields=fields,
        time=data.get("time"), label_threshold=data.get("label_threshold"),
        splits=tuple(data.get("splits", SPLITS)),
    )


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A CSV/TSV/Parquet file as a DataFrame; categorical columns are read as text."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise SaecError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(SUFFIXES)}")
    if not path.is_file():
        raise SaecFileNotFoundError(f"no data file at {path}")
    sep = SUFFIXES[path.suffix.lower()]
    if sep is None and columns is not None:  # name missing columns from the footer, before reading any data
        try:
            present = pq.read_schema(path).names
        except Exception as e:
            raise SaecError(f"{path}: could not read the file ({type(e).__name__}: {e})") from None
        missing = [c for c in columns if c not in present]
        if missing:
            raise SaecError(f"{path}: columns {missing} not found; it has {present}")
    try:
        if sep is None:
            frame = pd.read_parquet(path, columns=columns)
        else:
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                                usecols=columns)
    except Exception as e:  # a damaged file or missing columns: say which file and why
        raise SaecError(f"{path}: could not read the file ({type(e).__name__}: {e})") from None
    return frame


def tabular_ctr(spec: TableSpec, vocabs: dict[str, Vocabulary] | None = None) -> CTRTask:
    """Read, label, split by time (or row order) and encode a user's click log."""
    schema = spec.schema
    wanted = schema.names + [spec.label] + ([spec.time] if spec.time else [])
    frame = read_table(spec.path, columns=list(dict.fromkeys(wanted)))
    for f in schema.fields:  # one spelling per value whatever the file's column types; lists stay lists
        col = frame[f.name]
        if not (f.multi_valued and is_list_column(col)):
            frame[f.name] = col.astype("string").astype(object).where(col.notna(), None)
    if spec.label_threshold is not None:
        y = pd.to_numeric(frame[spec.label], errors="coerce")
        if y.isna().any():
            raise SaecError(f"{spec.path}: label column {spec.label!r} has non-numeric values "
                            f"(first at row {int(y.isna().to_numpy().argmax())})")
        frame[spec.label] = (y >= spec.label_threshold).astype("int8")
    elif frame[spec.label].dtype == bool:
        frame[spec.label] = frame[spec.label].astype("int8")
    if spec.time:
        frame[spec.time] = _time_values(frame[spec.time], spec)
    return build_task(spec.path.name, frame, schema, spec.splits, vocabs)


def _time_values(col: pd.Series, spec: TableSpec) -> pd.Series:
    """A time column as numbers or datetimes, whichever it holds."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        return col
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        return numeric
    parsed = pd.to_datetime(col, errors="coerce")
    if parsed.isna().any():
        row = int(parsed.isna().to_numpy().argmax())
        raise SaecError(f"{spec.path}: time column {spec.time!r} row {row} holds {col.iloc[row]!r}, "
                        "neither a number nor a date")
    return parsed
