"""Files on disk: atomic writes and the saved-model format.

A saved model is one file written by ``torch.save`` to a temporary name and renamed into place, so a
crash never leaves half a file. It holds plain data only (loadable with ``weights_only=True``): the
``build_model`` configuration, the schema, every field's vocabulary, the ``state_dict``, and for every
field whose table is not the default ``nn.Embedding`` what rebuilds it before the weights are loaded:

``{"kind": "method", "method", "features", "config"}`` for a table of any method in
:data:`saec.nn.registry.METHODS` (Saec's included), ``config`` being the table's
:meth:`~saec.nn.base.CompressedEmbedding.config`.

Files are written with the permissions a newly created file normally gets (``0o666`` less the umask).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from saec.errors import SaecError, SaecFileNotFoundError, SaecTypeError

if TYPE_CHECKING:  # torch is imported where models are written or read, so atomic writes need none of it
    from torch import nn

    from saec.data.schema import Schema
    from saec.data.vocab import Vocabulary

FORMAT = "saec-model"
VERSION = 1


def umask() -> int:
    """The process's file-creation mask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets ordinary permissions (``0o666 & ~umask``), not the private ``0o600`` of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_model(path: str | Path, model: nn.Module, vocabs: dict[str, Vocabulary],
               extra: dict[str, Any] | None = None) -> Path:
    """Write a trained CTR model (built by :func:`saec.models.build_model`) with its vocabularies."""
    import torch
    from torch import nn

    schema = model.embeddings.schema
    if set(vocabs) != set(schema.names):
        raise SaecError(f"vocabularies for {sorted(vocabs)} do not match the model's fields {schema.names}")
    compressed = {name: _describe(name, t) for name, t in model.embeddings.tables.items()
                  if type(t) is not nn.Embedding}
    payload = {
        "format": FORMAT, "version": VERSION, "config": model.config, "schema": schema.to_dict(),
        "tables": compressed,
        "vocabs": {n: v.to_dict() for n, v in vocabs.items()}, "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


def _describe(name: str, table: "nn.Module") -> dict[str, Any]:
    """What rebuilds field ``name``'s (non-default) table before its weights are loaded."""
    from saec.nn.base import CompressedEmbedding
    from saec.nn.registry import method_of

    if isinstance(table, CompressedEmbedding):
        return {"kind": "method", "method": method_of(table), "features": table.num_embeddings,
                "config": table.config()}
    raise SaecTypeError(f"field {name!r}: cannot save a table of type {type(table).__name__}; saved models hold "
                        f"nn.Embedding or a table of a method in saec.nn.registry.METHODS")


def _rebuild(path: Path, name: str, t: Any, schema: "Schema") -> "nn.Module":
    """An untrained table of the structure ``t`` (a :func:`_describe` record) describes."""
    from saec.nn.registry import METHODS

    if not isinstance(t, dict):
        raise SaecError(f"{path}: field {name!r} has a damaged table record {t!r}")
    if name not in schema.names:
        raise SaecError(f"{path}: table record for field {name!r}, which the schema does not have {schema.names}")
    dim = schema[name].dim
    try:
        if t.get("kind") == "method":
            method = t.get("method")
            if method not in METHODS:
                raise SaecError(f"unknown method {method!r}; methods are {list(METHODS)}")
            if not isinstance(t.get("config"), dict):
                raise SaecError(f"its config is {t.get('config')!r}, not a dict of hyperparameters")
            return METHODS[method].cls.from_config(t["features"], dim, t["config"])
    except (KeyError, TypeError, ValueError) as e:  # a damaged record; SaecError is a ValueError
        raise SaecError(f"{path}: field {name!r}: cannot rebuild its table from {t!r}: {e}") from None
    raise SaecError(f"{path}: field {name!r} has an unknown table kind {t.get('kind')!r}")


def load_model(path: str | Path) -> tuple["nn.Module", dict[str, "Vocabulary"], dict[str, Any]]:
    """Read a file written by :func:`save_model`: ``(model, vocabs, extra)``."""
    import torch

    from saec.data.schema import Schema
    from saec.data.vocab import Vocabulary
    from saec.models import build_model  # models import io-free modules only; keep io importable alone

    path = Path(path)
    if not path.is_file():
        raise SaecFileNotFoundError(f"no saved model at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise SaecError(f"{path} is not a readable saec model file (damaged or not written by saec: {type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SaecError(f"{path} is not a saec model file")
    if payload.get("version") != VERSION:
        raise SaecError(f"{path}: model file version {payload.get('version')} is not supported (want {VERSION})")
    cfg = dict(payload["config"])
    schema = Schema.from_dict(payload["schema"])
    tables = payload.get("tables", {})
    if not isinstance(tables, dict):
        raise SaecError(f"{path}: damaged table records (a {type(tables).__name__}, not a dict by field)")
    # non-default fields are rebuilt first and handed to the model, so no full table is allocated for them
    # (a compressed 1e8-feature field would otherwise cost its float32 table just to be thrown away)
    rebuilt = {name: _rebuild(path, name, t, schema) for name, t in tables.items()}
    try:
        model = build_model(cfg.pop("name"), schema, cfg.pop("num_embeddings"), **cfg, tables=rebuilt)
    except ValueError as e:
        raise SaecError(f"{path}: the model it describes cannot be built: {e}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise SaecError(f"{path}: weights do not fit the model they describe: {e}") from None
    vocabs = {n: Vocabulary.from_dict(d) for n, d in payload["vocabs"].items()}
    return model, vocabs, payload.get("extra", {})
