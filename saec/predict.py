"""Click probabilities from raw feature values: what a server (:mod:`saec.server`) runs per request.

A :class:`Predictor` holds one verified saved model (:func:`saec.io.load_model`: every checksum, shape and
range checked before use) with its vocabularies, and turns records, ``{"field": raw value, ...}`` as a
JSON object gives them, into probabilities the way training saw the data (:func:`saec.data.encode_frame`):

* a value the vocabulary does not hold, or ``null``, takes the field's out-of-vocabulary vector;
* a multi-valued field takes a list of values or one string split by the field's ``sep``; its first
  ``max_len`` values are kept, and an empty list is an unknown value;
* a value must have the type of the field's vocabulary (integers for integer values, strings for strings):
  a ``"7"`` sent for integer ids would otherwise be silently unknown, so it is refused.

Everything a request can get wrong (not a list of objects, a missing or unknown field, a wrong type, an
empty or too large batch) raises :class:`RequestError` naming the record, the field, the value and what was
expected, before any of the batch is predicted. :func:`resolve` finds the model to load in a model folder,
a ``serving/`` folder of published versions or a ``saec periodic`` run folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from saec.artifact import MANIFEST
from saec.errors import SaecError, SaecFileNotFoundError

MAX_RECORDS = 4096
"""Default largest batch one request may hold."""
CURRENT, SERVING = "current", "serving"


class RequestError(SaecError):
    """A request the model cannot answer: the message names the record, the field and the problem."""

    status = 422  # the HTTP status saec serve answers it with


class RequestTooLarge(RequestError):
    """A request over a configured limit (records per batch, bytes of body)."""

    status = 413


@dataclass(frozen=True)
class Source:
    """Where a served model comes from: ``folder`` the model folder loaded, ``version`` its name (the
    published version's folder name, or the model folder's own), ``watch`` the ``current`` link to follow
    (None for a plain model folder)."""

    folder: Path
    version: str
    watch: Path | None = None


def resolve(path: str | Path) -> Source:
    """The model to serve at ``path``: a saved model folder, a folder of published versions with a
    ``current`` link (``DIR/serving``), or a ``saec periodic`` run folder (its ``serving/current``)."""
    path = Path(path)
    if not path.exists():
        raise SaecFileNotFoundError(f"{path}: no such model folder")
    for link in (path / CURRENT, path / SERVING / CURRENT):
        if link.is_symlink():
            return current_of(link)
    if (path / MANIFEST).is_file():
        return Source(path, path.resolve().name)
    if (path / SERVING).is_dir() or path.name == SERVING:
        raise SaecFileNotFoundError(f"{path}: nothing is published yet (no {CURRENT} link); serving needs one "
                                    f"published version")
    raise SaecError(f"{path}: not a saved model folder (no {MANIFEST}), a serving folder or a saec periodic "
                    f"folder (no {CURRENT} link)")


def current_of(link: Path) -> Source:
    """The version a ``current`` link names now (one ``readlink``: the loop switches it by a rename)."""
    try:
        target = os.readlink(link)
    except OSError as e:
        raise SaecFileNotFoundError(f"{link}: cannot read the link ({e.strerror})") from None
    if "/" in target or target in ("", ".", ".."):
        raise SaecError(f"{link}: points to {target!r}; expected a version folder beside it")
    return Source(link.parent / target, target, link)


@dataclass
class Predictor:
    """One loaded model and its vocabularies; :meth:`predict` takes records of raw values."""

    model: Any
    vocabs: dict
    info: dict = field(default_factory=dict)
    version: str = ""
    max_records: int = MAX_RECORDS
    digest: str = ""  # the loaded folder's manifest_sha256, which covers every file

    def __post_init__(self) -> None:
        self.model.eval()
        self.schema = self.model.embeddings.schema
        self.fields = {f.name: f for f in self.schema.fields}
        # the type every value of a field must have, from its vocabulary's values (an empty one takes both)
        self.kinds = {n: _kind(v.head(1000)) for n, v in self.vocabs.items()}

    @classmethod
    def load(cls, path: str | Path, max_records: int = MAX_RECORDS) -> "Predictor":
        """Load (verifying every file) the model :func:`resolve` finds at ``path``."""
        source = resolve(path)
        return cls.from_folder(source.folder, source.version, max_records)

    @classmethod
    def from_folder(cls, folder: Path, version: str, max_records: int = MAX_RECORDS) -> "Predictor":
        """Load the saved model folder ``folder`` (every file verified) and warm it with one prediction."""
        from saec.artifact import read_manifest
        from saec.io import load_model

        model, vocabs, extra = load_model(folder)
        for name, v in vocabs.items():  # index every vocabulary now, not at the first request
            try:
                v.check()
            except SaecError as e:
                raise SaecError(f"{folder}: field {name!r}: {e}") from None
        p = cls(model, vocabs, extra, version, max_records, read_manifest(folder)["manifest_sha256"])
        p.predict([{n: None for n in p.fields}])  # every field unknown: runs each table once before a request
        return p

    # -- requests ---------------------------------------------------------------------------------
    def encode(self, records: Any) -> dict[str, np.ndarray]:
        """Ids per field of ``records`` (a list of objects), every record checked first."""
        from saec.data.vocab import OOV_ID, PAD_ID

        if not isinstance(records, list):
            raise RequestError(f"'records' must be a list of objects, got {type(records).__name__}")
        if not records:
            raise RequestError("'records' is empty; send at least one record")
        if len(records) > self.max_records:
            raise RequestTooLarge(f"{len(records)} records in one request; at most {self.max_records} are accepted")
        columns: dict[str, list] = {n: [] for n in self.fields}
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise RequestError(f"record {i}: must be an object of field: value, got {type(rec).__name__}")
            unknown = [k for k in rec if k not in self.fields]
            if unknown:
                raise RequestError(f"record {i}: unknown field {unknown[0]!r}; the model's fields are "
                                   f"{list(self.fields)}")
            for name, f in self.fields.items():
                if name not in rec:
                    raise RequestError(f"record {i}: field {name!r} is missing; every record needs all of "
                                       f"{list(self.fields)} (null for an unknown value)")
                columns[name].append(self._value(i, f, rec[name]))
        ids = {}
        for name, f in self.fields.items():
            if not f.multi_valued:
                ids[name] = self._encode(name, columns[name])
                continue
            lists = columns[name]
            width = max(1, max(len(v) for v in lists))
            out = np.full((len(lists), width), PAD_ID, dtype=np.int64)
            flat = [x for v in lists for x in v]
            codes = self._encode(name, flat) if flat else np.zeros(0, np.int64)
            at = 0
            for r, v in enumerate(lists):
                out[r, :len(v)] = codes[at:at + len(v)]
                at += len(v)
                if not v:
                    out[r, 0] = OOV_ID  # an empty list is an unknown value, as in training
            ids[name] = out
        return ids

    def predict(self, records: Any) -> np.ndarray:
        """Click probabilities (float64) of ``records``, in their order."""
        return self.forward(self.encode(records))

    def forward(self, ids: Mapping[str, np.ndarray]) -> np.ndarray:
        """Click probabilities (float64) of already encoded ids (:meth:`encode`)."""
        import torch

        with torch.inference_mode():
            logits = self.model({n: torch.from_numpy(a) for n, a in ids.items()})
            return torch.sigmoid(logits).double().numpy()

    def unknown(self, ids: Mapping[str, np.ndarray]) -> list[list[str]]:
        """Per record, the fields whose value (or every value of a multi-valued field) is unknown."""
        from saec.data.vocab import OOV_ID, PAD_ID

        n = len(next(iter(ids.values())))
        out: list[list[str]] = [[] for _ in range(n)]
        for name, a in ids.items():
            miss = (a == OOV_ID) if a.ndim == 1 else ((a == OOV_ID) | (a == PAD_ID)).all(axis=1)
            for r in np.flatnonzero(miss):
                out[r].append(name)
        return out

    def _encode(self, name: str, values: list[Any]) -> np.ndarray:
        """Ids of one field's checked values (None: unknown). Integer fields are looked up as an int64 array: pandas
        matches an object array against an integer index by converting the whole index, milliseconds per call."""
        from saec.data.vocab import OOV_ID

        vocab = self.vocabs[name]
        if self.kinds[name] != "int":
            return vocab.encode(_array(values))
        # null, and integers beyond int64 (which no int64 vocabulary holds), are unknown
        null = np.fromiter((v is None or not -2**63 <= v < 2**63 for v in values), dtype=bool, count=len(values))
        arr = np.array([0 if unknown else v for v, unknown in zip(values, null)], dtype=np.int64)
        ids = vocab.encode(arr)
        ids[null] = OOV_ID
        return ids

    def _value(self, i: int, f: Any, v: Any) -> Any:
        if f.multi_valued:
            if isinstance(v, str):
                v = [p for p in v.split(f.sep) if p != ""]
                if self.kinds[f.name] in ("int", "float"):  # numbers written as text, as a CSV column holds them
                    return [self._check(i, f, _number(i, f, p, self.kinds[f.name])) for p in v[:f.max_len]]
            elif v is None:
                return []
            elif not isinstance(v, list):
                raise RequestError(f"record {i}: field {f.name!r} is multi-valued; expected a list of values or a "
                                   f"string separated by {f.sep!r}, got {type(v).__name__} {v!r:.60}")
            # as training reads a list: missing and empty values dropped, then the first max_len kept
            return [self._check(i, f, x) for x in v if x is not None and x != ""][:f.max_len]
        return self._check(i, f, v)

    def _check(self, i: int, f: Any, v: Any) -> Any:
        kind = self.kinds[f.name]
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise RequestError(f"record {i}: field {f.name!r}: {type(v).__name__} {v!r:.60} is not a feature value; "
                               f"expected {_expected(kind)}")
        if kind == "int" and not isinstance(v, int):
            if isinstance(v, float) and math.isfinite(v) and v.is_integer():
                return int(v)
            raise RequestError(f"record {i}: field {f.name!r}: {v!r:.60} is not an integer; this field's values "
                               f"are integers")
        if kind == "str" and not isinstance(v, str):
            raise RequestError(f"record {i}: field {f.name!r}: {v!r:.60} is a number; this field's values are "
                               f"strings (send \"{v}\" if that is the value)")
        if kind == "float" and isinstance(v, str):
            raise RequestError(f"record {i}: field {f.name!r}: {v!r:.60} is a string; this field's values are "
                               f"numbers")
        return v


def _kind(values: Any) -> str:
    """'int', 'float', 'str' or 'any' (an empty vocabulary, or mixed values) for a vocabulary's values."""
    if len(values) == 0:
        return "any"
    k = values.dtype.kind
    if k in "iu":
        return "int"
    if k == "f":
        return "float"
    if all(isinstance(x, str) for x in values[:1000]):
        return "str"
    return "any"


def _expected(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string"}.get(kind, "a string or a number")


def _number(i: int, f: Any, part: str, kind: str) -> int | float:
    try:
        return int(part) if kind == "int" else float(part)
    except ValueError:
        raise RequestError(f"record {i}: field {f.name!r}: {part!r:.60} in its {f.sep!r}-separated string is not "
                           f"{_expected(kind)}; this field's values are {kind}s") from None


def _array(values: Sequence[Any]) -> np.ndarray:
    """Values as an array the vocabulary's index matches (object when some are null or types mix)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


__all__ = ["MAX_RECORDS", "Predictor", "RequestError", "RequestTooLarge", "Source", "current_of", "resolve"]
