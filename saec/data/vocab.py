"""Frequency-ranked vocabularies that grow.

Saec's fast clustering runs k-means on a field's ``top_n`` most frequent features (§2.4) and MEmCom
indexes ``U[i mod m]`` over frequency-sorted ids (Algorithm 2), so ids carry frequency rank: id 0 is the
most frequent value when the vocabulary is built. The vocabulary of a production model keeps growing
(Saec §1, Fig. 1): :meth:`Vocabulary.update` gives new values new ids after the existing ones and updates
counts, but never renumbers an existing id, so trained rows stay where they are. After growth the ids
are therefore ranked by frequency within each batch of arrivals; :attr:`Vocabulary.counts` always holds
the current counts for anyone who needs the true current order (``np.argsort(-counts)``).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from saec.config import check_int
from saec.errors import SaecError, SaecIndexError

OOV_ID = -1
"""Id of a value the vocabulary does not hold (unseen, or rarer than ``min_count``)."""
PAD_ID = -2
"""Id that pads a multi-valued field's id list; pooled as absent."""
SORTED_LOOKUP = 1 << 20
"""An integer vocabulary of at least this many values is written with its values sorted and their ids
(:meth:`Vocabulary.to_arrays`: ``sorted``, ``order``); read back, it looks values up by binary search in those
arrays, which can stay memory-mapped, instead of hashing every value (for 10^8 values, gigabytes of memory)."""


class Vocabulary:
    """Raw value -> id map for one field, ids in order of decreasing frequency.

    Args:
        min_count: a value is given an id only once it has been seen at least this many times; until
            then it encodes to :data:`OOV_ID` (its count is kept so it can be admitted later).
    """

    def __init__(self, min_count: int = 1) -> None:
        self.min_count = check_int("min_count", min_count, 1)  # True is no count
        self._indexed = pd.Index([])
        self._raw: Any = None  # values read from a file, not indexed yet (see from_dict)
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted values, their ids) of _raw
        self._checked = False  # _raw's lookup made and checked (check())
        self._counts = np.zeros(0, dtype=np.int64)
        self._pending: dict[Any, int] = {}

    @property
    def _index(self) -> pd.Index:
        """The values as a hashed index, built (and checked for repeats) at first use after :meth:`from_dict`."""
        if self._raw is not None:
            index = pd.Index(self._raw)
            if not index.is_unique:
                raise SaecError(f"corrupted vocabulary: repeated values, e.g. "
                                f"{_plain(index[index.duplicated()][0])!r}")
            self._indexed, self._raw = index, None
        return self._indexed

    @_index.setter
    def _index(self, index: pd.Index) -> None:
        self._indexed, self._raw, self._lookup, self._checked = index, None, None, False

    @property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(sorted values, their ids) while the vocabulary is as read and has them (read, or made by :meth:`check`)."""
        return self._lookup if self._raw is not None else None

    def check(self) -> "Vocabulary":
        """Make the vocabulary ready to look values up (a loaded one does at first use), refusing repeated values.

        Integer values read from a file are looked up by binary search: in the sorted values and ids read with
        them, checked here in chunks (strictly increasing, each the value of the id beside it), or else in ones
        sorted here (16 bytes a value, against a hash index's 30 or more, and no per-call conversion of the index).
        Other values get a hash index."""
        if self._raw is None or self._checked:
            return self
        if not (isinstance(self._raw, np.ndarray) and self._raw.dtype == np.int64):
            self._index  # noqa: B018  (the property builds it)
            return self
        n = len(self._raw)
        if self._lookup is None:
            order = np.argsort(self._raw, kind="stable")
            srt = self._raw[order]
            same = np.flatnonzero(srt[1:] == srt[:-1])
            if len(same):
                raise SaecError(f"corrupted vocabulary: repeated values, e.g. {_plain(srt[same[0]])!r}")
            self._lookup = (srt, order)
        else:
            srt, order = self._lookup
            step = 1 << 22
            for a in range(0, n, step):
                b = min(n, a + step)
                s, o = srt[a:b], order[a:b]
                if (s[1:] <= s[:-1]).any() or (b < n and srt[b - 1] >= srt[b]):
                    raise SaecError("corrupted vocabulary: its sorted values are not strictly increasing (repeated "
                                    "or out of order)")
                if o.min() < 0 or o.max() >= n or not np.array_equal(self._raw[o], s):
                    raise SaecError("corrupted vocabulary: its sorted values do not match its values")
        self._checked = True
        return self

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: Iterable[Any], min_count: int = 1) -> "Vocabulary":
        """Build a vocabulary from raw observations (one entry per occurrence)."""
        vocab = cls(min_count=min_count)
        vocab.update(values)
        return vocab

    def update(self, values: Iterable[Any]) -> int:
        """Count new observations; admit new values (ids appended, most frequent first).

        Missing values (None/NaN) are ignored. Returns the number of new ids.
        """
        observed = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values)
        vc = observed.value_counts(sort=False, dropna=True)  # first-appearance order
        if vc.empty:
            return 0
        pos = self._index.get_indexer(vc.index) if len(self._index) else np.full(len(vc), -1)
        known = pos >= 0
        if known.any():
            np.add.at(self._counts, pos[known], vc.to_numpy()[known])
        new_vals = vc.index[~known]
        new_cnts = vc.to_numpy()[~known].astype(np.int64)
        if self._pending:
            new_cnts = new_cnts + np.fromiter((self._pending.pop(v, 0) for v in new_vals), np.int64, len(new_vals))
        admit = new_cnts >= self.min_count
        for v, c in zip(new_vals[~admit], new_cnts[~admit]):
            self._pending[v] = int(c)
        if not admit.any():
            return 0
        order = np.argsort(-new_cnts[admit], kind="stable")  # ties keep first-appearance order
        self._index = self._index.append(pd.Index(new_vals[admit][order]))
        self._counts = np.concatenate([self._counts, new_cnts[admit][order]])
        return int(admit.sum())

    # -- lookup ----------------------------------------------------------------------------------
    def encode(self, values: Iterable[Any]) -> np.ndarray:
        """Ids (int64) of raw values; :data:`OOV_ID` for values without an id."""
        arr = values if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
        if len(self) == 0:
            return np.full(len(arr), OOV_ID, dtype=np.int64)
        if self._raw is not None and np.asarray(arr).dtype.kind in "iu":  # integers: binary search (check())
            self.check()
            if self._sorted is not None:
                srt, order = self._sorted
                x, ok = _as_int64(np.asarray(arr))
                pos = np.minimum(np.searchsorted(srt, x), len(srt) - 1)
                return np.where(ok & (srt[pos] == x), order[pos], OOV_ID).astype(np.int64, copy=False)
        # anything else (null, strings, floats: pandas matches those as it always has) through the hash index
        return self._index.get_indexer(arr).astype(np.int64, copy=False)

    def decode(self, ids: Iterable[int]) -> list[Any]:
        """Raw values of ids (``None`` for :data:`OOV_ID`)."""
        ids = np.asarray(ids, dtype=np.int64)
        bad = (ids < OOV_ID) | (ids >= len(self))
        if bad.any():
            raise SaecIndexError(f"ids out of range for a vocabulary of {len(self)}: {ids[bad][:5].tolist()}")
        values = self._raw if self._sorted is not None else self._index
        return [None if i == OOV_ID else _plain(values[i]) for i in ids]

    def head(self, n: int) -> Any:
        """The values of the first ``n`` ids (an array of the vocabulary's dtype), without indexing a read one."""
        return self._raw[:n] if isinstance(self._raw, np.ndarray) else self._index[:n]

    @property
    def counts(self) -> np.ndarray:
        """Observation count of every id (read-only view)."""
        view = self._counts.view()
        view.flags.writeable = False
        return view

    @property
    def values(self) -> pd.Index:
        """Raw values in id order."""
        return self._index

    @property
    def pending(self) -> dict[Any, int]:
        """Counts of values seen fewer than ``min_count`` times so far (no id yet); a copy."""
        return dict(self._pending)

    def __len__(self) -> int:
        return len(self._raw) if self._raw is not None else len(self._indexed)

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and -2**63 <= value < 2**63:
            return bool(self.encode(np.array([value], dtype=np.int64))[0] != OOV_ID)
        return value in self._index

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, min_count={self.min_count}, pending={len(self._pending)})"

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (values must be str or int): :meth:`to_arrays` with the arrays as lists."""
        meta, arrays = self.to_arrays()
        values = meta["values"] if meta["values"] is not None else arrays["values"].tolist()
        return {**meta, "values": values, "counts": arrays["counts"].tolist()}

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The state for files as ``(meta, arrays)``: ``arrays`` holds the counts and, when the values are
        integers, the values (int64; ``meta["values"]`` is then ``None``); ``meta`` the rest, JSON-serialisable.
        Millions of integer values are written as one array instead of a JSON list (:meth:`from_arrays`), and at
        least :data:`SORTED_LOOKUP` of them also sorted, with their ids (``sorted``, ``order``)."""
        arrays = {"counts": np.asarray(self._counts, dtype=np.int64)}
        if isinstance(self._raw, np.ndarray) and self._raw.dtype == np.int64:  # as read: no index needed to write it
            arrays["values"] = self._raw
            if self._sorted is not None and len(self._raw) >= SORTED_LOOKUP:
                arrays["sorted"], arrays["order"] = self._sorted
            numeric = True
        else:
            numeric = self._index.dtype.kind == "i" and len(self._index) > 0
            if numeric:
                arrays["values"] = np.asarray(self._index, dtype=np.int64)
        if numeric and len(arrays["values"]) >= SORTED_LOOKUP and "sorted" not in arrays:
            arrays["order"] = np.argsort(arrays["values"], kind="stable")
            arrays["sorted"] = arrays["values"][arrays["order"]]
        meta = {"min_count": self.min_count, "values": None if numeric else [_plain(v) for v in self._index],
                "pending": [[_plain(v), c] for v, c in self._pending.items()]}
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Vocabulary":
        """Inverse of :meth:`to_arrays` (``meta["values"]`` None: the values are ``arrays["values"]``)."""
        values = meta["values"] if meta.get("values") is not None else arrays["values"]
        vocab = cls.from_dict({**meta, "values": values, "counts": arrays["counts"]})
        if ("sorted" in arrays) != ("order" in arrays) or ("sorted" in arrays and (
                meta.get("values") is not None or len(arrays["sorted"]) != len(values)
                or len(arrays["order"]) != len(values))):
            raise SaecError(f"corrupted vocabulary: {len(values)} values, and sorted values and ids "
                            f"{[len(arrays[k]) if k in arrays else None for k in ('sorted', 'order')]}; expected "
                            f"both or neither, one per value")
        if "sorted" in arrays and vocab._raw is not None:
            vocab._lookup = (arrays["sorted"], arrays["order"])
        return vocab

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Vocabulary":
        """Inverse of :meth:`to_dict`. The values are indexed (and checked for repeats, :meth:`check`) at first
        use, not here: a memory-mapped vocabulary of 10^8 values costs no memory until it is looked up."""
        vocab = cls(min_count=d["min_count"])
        if len(d["values"]) != len(d["counts"]):
            raise SaecError(f"corrupted vocabulary: {len(d['values'])} values but {len(d['counts'])} counts")
        vocab._raw = d["values"] if len(d["values"]) else None
        vocab._counts = np.asarray(d["counts"], dtype=np.int64)
        vocab._pending = {v: int(c) for v, c in d.get("pending", [])}
        return vocab


def _as_int64(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, ok)``: integer values as int64, ``ok`` False for those beyond it (unsigned ones over 2^63 - 1)."""
    if arr.dtype.kind == "u":
        ok = arr <= np.iinfo(np.int64).max
        return np.where(ok, arr, 0).astype(np.int64), ok
    return arr.astype(np.int64, copy=False), np.ones(len(arr), dtype=bool)


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars so json can write them."""
    return v.item() if isinstance(v, np.generic) else v
