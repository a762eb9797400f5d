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

import csv
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from saec.config import check_float, check_int, check_str, reject_unknown
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

    def __post_init__(self) -> None:
        # types and ranges before any file is read (the CLI, the TOML file and Python callers alike)
        if not isinstance(self.path, (str, Path)):
            raise SaecError(f"path must be a file name, got {self.path!r}")
        self.path = Path(self.path)
        check_str("label", self.label)
        if self.time is not None:
            check_str("time", self.time)
        if self.label_threshold is not None:
            self.label_threshold = check_float("label_threshold", self.label_threshold, -math.inf)
        s = self.splits
        fractions = [_fraction(x) for x in s] if isinstance(s, (list, tuple)) and len(s) == 3 else [None]
        if None in fractions or not math.isclose(sum(fractions), 1.0):
            raise SaecError(f"splits must be three non-negative numbers (train, valid, test) summing to 1, got {s!r}")
        self.splits = tuple(fractions)
        # building the schema now refuses doubled fields or a label that is also a field before any file is read
        Schema(tuple(self.fields), label=self.label, time=self.time)

    @property
    def schema(self) -> Schema:
        return Schema(tuple(self.fields), label=self.label, time=self.time)


def _fraction(x: Any) -> float | None:
    """``x`` as a finite non-negative float, else None."""
    try:
        return check_float("split", x, 0.0)
    except SaecError:
        return None


def parse_fields(names: list[str], dim: int = 16, multi: dict[str, str] | None = None,
                 dims: dict[str, int] | None = None, min_count: int = 1) -> list[Field]:
    """Fields from column names; ``multi`` maps multi-valued columns to their separator."""
    multi, dims = multi or {}, dims or {}
    unknown = sorted((set(multi) | set(dims)) - set(names))
    if unknown:
        raise SaecError(f"options given for {unknown}, which are not among the fields {names}")
    return [Field(n, dims.get(n, dim), multi_valued=n in multi, sep=multi.get(n, " "), min_count=min_count)
            for n in names]


SECTIONS = ("data", "fields")
DATA_KEYS = ("path", "label", "time", "label_threshold", "splits", "dim")
FIELD_KEYS = tuple(f.name for f in dataclasses.fields(Field))


def load_spec(config: str | Path) -> TableSpec:
    """Read a TOML data description (see the module docstring).

    Unknown sections and keys, and values of the wrong type or range, are refused naming the file, the
    key, the value and what was expected, before the data file is read.
    """
    config = Path(config)
    if config.is_dir():
        raise SaecError(f"{config} is a folder; expected a TOML file describing the data")
    try:
        doc = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SaecFileNotFoundError(f"no config file at {config}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SaecError(f"{config}: cannot read the file ({type(e).__name__}: {e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SaecError(f"{config}: not valid TOML: {e}") from None
    try:
        return spec_from_dict(doc, config.parent)
    except SaecError as e:
        raise SaecError(f"{config}: {e}") from None


def spec_from_dict(doc: dict[str, Any], base: Path = Path(".")) -> TableSpec:
    """A :class:`TableSpec` from a parsed TOML document (``{"data": {...}, "fields": [{...}, ...]}``);
    a relative ``path`` is taken relative to ``base``."""
    if not isinstance(doc, dict):
        raise SaecError(f"expected a [data] section and [[fields]] entries, got {doc!r}")
    reject_unknown("top level", doc, SECTIONS)
    data = doc.get("data")
    if not isinstance(data, dict) or "path" not in data or "label" not in data:
        raise SaecError("needs a [data] section with at least 'path' and 'label'")
    reject_unknown("[data]", data, DATA_KEYS)
    default_dim = check_int("[data] dim", data.get("dim", 16), 1)
    raw_fields = doc.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise SaecError("needs at least one [[fields]] entry with a 'name'")
    fields = []
    for i, f in enumerate(raw_fields, 1):
        if not isinstance(f, dict) or "name" not in f:
            raise SaecError(f"[[fields]] entry {i} must be a table with a 'name', got {f!r}")
        reject_unknown(f"[[fields]] entry {i} ({f['name']!r})", f, FIELD_KEYS)
        fields.append(Field(**{"dim": default_dim, **f}))
    path = Path(check_str("[data] path", data["path"]))
    return TableSpec(
        path=path if path.is_absolute() else base / path, label=data["label"], fields=fields,
        time=data.get("time"), label_threshold=data.get("label_threshold"), splits=data.get("splits", SPLITS),
    )


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A CSV/TSV/Parquet file as a DataFrame; categorical columns are read as text."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise SaecError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(SUFFIXES)}")
    if not path.is_file():
        raise SaecFileNotFoundError(f"no data file at {path}")
    sep = SUFFIXES[path.suffix.lower()]
    if sep is not None:
        _check_header(path, sep, columns)
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


def _check_header(path: Path, sep: str, columns: list[str] | None) -> None:
    """Refuse a CSV/TSV whose header names a wanted column twice (pandas would silently read the first
    and rename the second ``NAME.1``) or lacks one (named as the Parquet footer check names them)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=sep), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SaecError(f"{path}: could not read the header ({type(e).__name__}: {e})") from None
    seen, doubled = set(), []
    for name in header:
        if name in seen and name not in doubled and (columns is None or name in columns):
            doubled.append(name)
        seen.add(name)
    if doubled:
        raise SaecError(f"{path}: column {', '.join(repr(c) for c in doubled)} appears more than once in the "
                        f"header; rename the copies so that each column has one name")
    missing = [c for c in columns or () if c not in seen]
    if missing and header:  # (an empty file is reported by the reader)
        raise SaecError(f"{path}: columns {missing} not found; it has {header}")


def _nested_columns(path: Path, names: list[str]) -> list[str]:
    """Which of ``names`` a Parquet file stores as lists (or other nested types)."""
    if SUFFIXES[path.suffix.lower()] is not None:
        return []
    import pyarrow as pa

    schema = pq.read_schema(path)
    return [n for n in names if pa.types.is_nested(schema.field(n).type)]


def tabular_ctr(spec: TableSpec, vocabs: dict[str, Vocabulary] | None = None) -> CTRTask:
    """Read, label, split by time (or row order) and encode a user's click log."""
    schema = spec.schema
    wanted = schema.names + [spec.label] + ([spec.time] if spec.time else [])
    frame = read_table(spec.path, columns=list(dict.fromkeys(wanted)))
    undeclared = _nested_columns(spec.path, [f.name for f in schema.fields if not f.multi_valued])
    if undeclared:  # read as text they would become values like "['x' 'z']"
        raise SaecError(f"{spec.path}: column {undeclared[0]!r} holds lists but is not declared multi-valued; "
                        f"declare it (multi_valued = true in its [[fields]] entry, or --multi {undeclared[0]}:SEP)")
    for f in schema.fields:  # one spelling per value whatever the file's column types; lists stay lists
        col = frame[f.name]
        if not (f.multi_valued and is_list_column(col)):
            frame[f.name] = col.astype("string").astype(object).where(col.notna(), None)
    # labels are checked here, where row numbers are the file's (after the split they would be the split's)
    raw = frame[spec.label]
    y = pd.to_numeric(raw.astype("int8") if raw.dtype == bool else raw, errors="coerce")
    bad = (y.isna() if spec.label_threshold is not None else ~y.isin((0, 1))).to_numpy()
    if bad.any():
        row = int(bad.argmax())
        expected = "a number (it is compared with label_threshold)" if spec.label_threshold is not None \
            else "0/1 (or give label_threshold)"
        raise SaecError(f"{spec.path}: label column {spec.label!r} row {row} holds {raw.iloc[row]!r}; expected "
                        f"{expected} ({int(bad.sum())} such rows)")
    frame[spec.label] = (y >= spec.label_threshold if spec.label_threshold is not None else y).astype("int8")
    if spec.time:
        frame[spec.time] = _time_values(frame[spec.time], spec)
    return build_task(spec.path.name, frame, schema, spec.splits, vocabs)


def _time_values(col: pd.Series, spec: TableSpec) -> pd.Series:
    """A time column as numbers or datetimes, whichever it holds; a value that is neither (or missing) is
    reported with its row (0-based, as in the file's data rows) and the value itself."""
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
        bad = col.isna().to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise SaecError(f"{spec.path}: time column {spec.time!r} row {row} is missing")
        return col
    numeric = pd.to_numeric(col, errors="coerce")
    numeric_bad = numeric.isna().to_numpy()
    if not numeric_bad.any():
        return numeric
    if numeric_bad.mean() <= 0.5:
        # mostly numbers: a number column with bad values (parsing it as dates would read 1001 as a clock
        # time once one value looks like one, found by benchmarks/robustness.py)
        bad = numeric_bad
    else:
        parsed = pd.to_datetime(col, errors="coerce")
        bad = parsed.isna().to_numpy()
        if not bad.any():
            return parsed
    row = int(bad.argmax())
    value = col.iloc[row]
    held = "is empty" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) \
        else f"holds {value!r}, neither a number nor a date"
    raise SaecError(f"{spec.path}: time column {spec.time!r} row {row} {held} ({int(bad.sum())} such rows)")
