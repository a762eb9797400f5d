"""Encoded CTR samples and the step raw table -> vocab ids.

Data flows one way: raw records (a pandas DataFrame) -> :func:`fit_vocabs` / :func:`encode_frame` ->
:class:`CTRData` (one int64 id array per field plus labels) -> :meth:`CTRData.batches` -> model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from saec.data.schema import Field, Schema
from saec.data.vocab import OOV_ID, PAD_ID, Vocabulary
from saec.errors import SaecError

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]


@dataclass
class CTRData:
    """Encoded samples: ``ids[field]`` is int64 of shape (N,) or (N, L) for a multi-valued field
    (padded with :data:`PAD_ID`; :data:`OOV_ID` marks unknown values); ``labels`` is float32 (N,)."""

    ids: dict[str, np.ndarray]
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.ascontiguousarray(self.labels, dtype=np.float32)
        if self.labels.ndim != 1:
            raise SaecError(f"labels must be 1-D, got shape {self.labels.shape}")
        n = len(self.labels)
        for name, a in self.ids.items():
            a = np.ascontiguousarray(a, dtype=np.int64)
            if a.ndim not in (1, 2) or a.shape[0] != n:
                raise SaecError(f"field {name!r}: ids of shape {a.shape} do not match {n} labels")
            if a.size and a.min() < PAD_ID:
                raise SaecError(f"field {name!r}: ids below {PAD_ID} are not valid")
            self.ids[name] = a

    def __len__(self) -> int:
        return len(self.labels)

    def check_both_classes(self, what: str) -> None:
        """Refuse data whose labels are all one class (or that is empty), naming it as ``what``: AUC, which
        early stopping and evaluation use, needs both. Run before training, not after it."""
        n, clicks = len(self), int(self.labels.sum())
        if 0 < clicks < n:
            return
        held = "no rows" if n == 0 else f"only label {int(self.labels[0])} in all {n:,} rows"
        raise SaecError(f"{what} has {held}: AUC needs both clicks (1) and non-clicks (0); check the label "
                        f"column or the split fractions")

    def take(self, index: np.ndarray | slice) -> "CTRData":
        """The samples at ``index`` (a slice, an index array or a boolean mask)."""
        return CTRData({k: v[index] for k, v in self.ids.items()}, self.labels[index])

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        """Yield ``(ids, labels)`` torch batches; a seeded permutation when ``shuffle``."""
        if batch_size < 1:
            raise SaecError(f"batch_size must be >= 1, got {batch_size}")
        ids = {k: torch.from_numpy(v) for k, v in self.ids.items()}
        labels = torch.from_numpy(self.labels)
        n = len(self)
        order = torch.from_numpy(np.random.default_rng(seed).permutation(n)) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                sl = slice(start, start + batch_size)
                yield {k: v[sl] for k, v in ids.items()}, labels[sl]
            else:
                idx = order[start : start + batch_size]
                yield {k: v.index_select(0, idx) for k, v in ids.items()}, labels.index_select(0, idx)


def is_list_column(col: pd.Series) -> bool:
    """Whether a column holds lists/arrays (e.g. a Parquet list column) rather than joined strings."""
    present = col.dropna()
    return len(present) > 0 and not isinstance(present.iloc[0], str) and hasattr(present.iloc[0], "__len__")


def _split_multi(col: pd.Series, f: Field) -> pd.Series:
    """One row per (sample, value) of a multi-valued column, index = sample position."""
    lists = col if is_list_column(col) else col.astype(object).str.split(f.sep, regex=False)
    out = lists.reset_index(drop=True).explode()
    return out[out.notna() & (out != "")]


def fit_vocabs(frame: pd.DataFrame, schema: Schema) -> dict[str, Vocabulary]:
    """Frequency-ranked vocabulary of every schema field, counted on ``frame``."""
    _check_columns(frame, schema)
    vocabs = {}
    for f in schema.fields:
        col = _split_multi(frame[f.name], f) if f.multi_valued else frame[f.name]
        vocabs[f.name] = Vocabulary.from_values(col, min_count=f.min_count)
    return vocabs


def encode_frame(frame: pd.DataFrame, schema: Schema, vocabs: dict[str, Vocabulary]) -> CTRData:
    """Encode raw columns to ids with ``vocabs`` (unknown values -> :data:`OOV_ID`)."""
    _check_columns(frame, schema, need_label=True)
    missing = [f.name for f in schema.fields if f.name not in vocabs]
    if missing:
        raise SaecError(f"no vocabulary for fields {missing}")
    ids = {}
    for f in schema.fields:
        if f.multi_valued:
            ids[f.name] = _encode_multi(frame[f.name], f, vocabs[f.name])
        else:
            ids[f.name] = vocabs[f.name].encode(frame[f.name])
    return CTRData(ids, _labels(frame[schema.label]))


def _encode_multi(col: pd.Series, f: Field, vocab: Vocabulary) -> np.ndarray:
    exploded = _split_multi(col, f)
    rows = exploded.index.to_numpy()
    pos = exploded.groupby(level=0).cumcount().to_numpy()
    keep = pos < f.max_len
    width = max(1, int(pos[keep].max()) + 1) if keep.any() else 1
    out = np.full((len(col), width), PAD_ID, dtype=np.int64)
    out[rows[keep], pos[keep]] = vocab.encode(exploded[keep])
    # A sample whose list is empty has no value: treat it like an unknown value, not like nothing.
    empty = (out == PAD_ID).all(axis=1)
    out[empty, 0] = OOV_ID
    return out


def _labels(col: pd.Series) -> np.ndarray:
    y = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SaecError(
            f"label column {col.name!r} must hold 0/1 values; row {first} has {col.iloc[first]!r} "
            f"({int(bad.sum())} bad rows)"
        )
    return y.astype(np.float32)


def _check_columns(frame: pd.DataFrame, schema: Schema, need_label: bool = False) -> None:
    want = schema.names + ([schema.label] if need_label else [])
    missing = [c for c in want if c not in frame.columns]
    if missing:
        raise SaecError(f"columns {missing} not in the data; it has {list(frame.columns)}")
