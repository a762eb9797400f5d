"""Files on disk: atomic writes of single files, and the saved-model artifact.

A saved model is an artifact folder (:mod:`saec.artifact`: a ``manifest.json`` with the SHA-256 of every
file, written under a temporary name and renamed into place) holding

* ``tensors.safetensors``: the ``state_dict`` (keys ``state_dict/KEY``), each field's vocabulary counts
  (``vocab_counts/FIELD``, int64) and integer values (``vocab_values/FIELD``, int64), for a large integer
  vocabulary also sorted with their ids (``vocab_sorted/FIELD``, ``vocab_order/FIELD``: looked up memory-mapped);
* ``model.json``: the :func:`saec.models.build_model` configuration, the schema, ``extra``, and for every
  field whose table is not the default ``nn.Embedding`` what rebuilds it before the weights are loaded:
  ``{"kind": "method", "method", "features", "config"}`` for a table of any method in
  :data:`saec.nn.registry.METHODS` (Saec's included), ``config`` being the table's
  :meth:`~saec.nn.base.CompressedEmbedding.config`;
* ``vocabs.json``: each field's ``min_count``, pending values, and its values unless they are integers
  (``null`` then: they are in ``vocab_values/FIELD``); no pickle anywhere.

:func:`load_model` verifies every checksum first, then that the configuration rebuilds exactly the tensors'
keys, shapes and dtypes, that no float holds NaN, that masks and id buffers lie in range and that each
vocabulary has as many values and counts as its field's table has rows.

Files and folders are written with the permissions new ones normally get (``0o666`` / ``0o777`` less the umask).

A JSON file saec writes outside an artifact (a benchmark's raw record, a sweep's, a CLI's result) carries its own
checksum (:func:`write_json`, :func:`read_json`): the field :data:`CHECKSUM`, the SHA-256 of the rest of the object as
canonical JSON (:func:`json_digest`); a JSON-lines log carries one per line (:func:`write_jsonl`, :func:`read_jsonl`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from saec.artifact import json_bytes, read_artifact, umask, write_file, write_folder, write_tensors
from saec.errors import SaecError, SaecTypeError

if TYPE_CHECKING:  # torch is imported where models are written or read, so atomic writes need none of it
    from torch import nn

    from saec.export import OnnxGraph

    from saec.data.schema import Schema
    from saec.data.vocab import Vocabulary

FORMAT = "saec-model"
MODEL_FILES = ("model.json", "tensors.safetensors", "vocabs.json")
MMAP_BYTES = 256 << 20
"""A saved model's tensors file at least this large is memory-mapped by :func:`load_model`, not read into memory."""
ONNX_FILES = ("model.onnx", "onnx.json")  # (saec.onnx_model repeats the names: it imports no torch)
"""Optional files of a saved model, both or neither: its ONNX graph and what it takes (:mod:`saec.export`)."""
ONNX_DATA = "model.onnx.data"
"""The ONNX graph's tensors, beside it when they are too large for one ONNX file (:class:`saec.export.OnnxGraph`)."""


def atomic_write(path: str | Path, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets ordinary permissions (``0o666 & ~umask``), not the private ``0o600`` of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".saec-tmp")
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


CHECKSUM = "sha256"
"""The field of a checksummed JSON object that holds its :func:`json_digest`."""


def json_digest(obj: dict[str, Any]) -> str:
    """Hex SHA-256 of ``obj`` without its :data:`CHECKSUM` field, as canonical JSON (``json.dumps`` with sorted keys
    and its default separators: the scheme the benchmark grid's records have always used)."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def checksummed(path: str | Path, obj: Any) -> dict[str, Any]:
    """``obj`` (a dict of plain data) as JSON will give it back, with its :data:`CHECKSUM` (replacing any it had).

    The digest is taken of the object read back from its JSON, so that what JSON changes (tuples to lists, integer
    keys to strings, their order) cannot make a file fail its own check."""
    if not isinstance(obj, dict):
        raise SaecTypeError(f"{path}: saec writes a JSON object (a dict) here, got {type(obj).__name__}")
    try:
        plain = json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise SaecTypeError(f"{path}: cannot write {obj!r:.200} as JSON: {e}") from None
    return {**plain, CHECKSUM: json_digest(plain)}


def write_json(path: str | Path, obj: dict[str, Any]) -> Path:
    """Atomically write the dict ``obj`` as indented JSON with its checksum (:func:`checksummed`)."""
    return write_text(path, json.dumps(checksummed(path, obj), indent=2, sort_keys=True) + "\n")


def _verified(where: str, text: str, legacy_ok: bool) -> dict[str, Any]:
    """The JSON object in ``text`` (from ``where``), its checksum verified."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise SaecError(f"{where}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise SaecError(f"{where}: a JSON {type(obj).__name__}, not the object saec writes")
    if CHECKSUM not in obj:
        if legacy_ok:
            return obj
        raise SaecError(f"{where}: no {CHECKSUM!r} checksum: not a file saec wrote (or written before its files "
                        f"carried one)")
    if obj[CHECKSUM] != json_digest(obj):
        raise SaecError(f"{where}: checksum mismatch (changed after saec wrote it, or damaged)")
    return obj


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SaecError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def read_json(path: str | Path, legacy_ok: bool = False) -> dict[str, Any]:
    """The object :func:`write_json` wrote at ``path`` (its :data:`CHECKSUM` field included), verified: a file that
    cannot be read, is not a JSON object or fails its checksum raises :class:`~saec.errors.SaecError` naming it. One
    without a checksum is refused too, unless ``legacy_ok`` (benchmark pages rendered from raw records written before
    records carried one; such an object has no :data:`CHECKSUM` field)."""
    return _verified(str(path), _read(Path(path)), legacy_ok)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Atomically write ``rows`` (dicts of plain data) as JSON lines (sorted keys), each with its checksum."""
    return write_text(path, "".join(json.dumps(checksummed(path, r), sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows :func:`write_jsonl` wrote at ``path``, each verified (errors name the file and line), without their
    :data:`CHECKSUM` fields."""
    rows = [_verified(f"{path}, line {i + 1}", line, False) for i, line in enumerate(_read(Path(path)).splitlines())]
    return [{k: v for k, v in r.items() if k != CHECKSUM} for r in rows]


def save_model(path: str | Path, model: nn.Module, vocabs: dict[str, Vocabulary],
               extra: dict[str, Any] | None = None, *, overwrite: bool = False,
               inputs: Iterable[str | Path | None] = (), onnx: "OnnxGraph | None" = None) -> Path:
    """Write a trained CTR model (built by :func:`saec.models.build_model`) with its vocabularies as the
    artifact folder ``path``; an existing one is replaced only with ``overwrite`` and only if saec wrote it
    (:func:`saec.artifact.check_output`), never when it overlaps one of ``inputs``. ``onnx``: the model's
    ONNX graph (:func:`saec.export.to_onnx`), kept beside it as :data:`ONNX_FILES` (and :data:`ONNX_DATA`)."""
    from torch import nn

    schema = model.embeddings.schema
    if set(vocabs) != set(schema.names):
        raise SaecError(f"vocabularies for {sorted(vocabs)} do not match the model's fields {schema.names}")
    for name, v in vocabs.items():
        if len(v) != model.config["num_embeddings"][name]:
            raise SaecError(f"field {name!r}: the vocabulary has {len(v)} values but the model's table "
                            f"{model.config['num_embeddings'][name]} rows")
    compressed = {name: _describe(name, t) for name, t in model.embeddings.tables.items()
                  if type(t) is not nn.Embedding}
    info = {"config": model.config, "schema": schema.to_dict(), "tables": compressed, "extra": extra or {}}
    vocab_json, vocab_tensors = vocab_parts(vocabs)
    tensors = {**{f"state_dict/{k}": v for k, v in model.state_dict().items()}, **vocab_tensors}

    def fill(tmp: Path) -> None:
        write_file(tmp / "model.json", json_bytes(info))
        write_file(tmp / "vocabs.json", json_bytes(vocab_json))
        write_tensors(tmp / "tensors.safetensors", tensors)
        if onnx is not None:
            onnx.write(tmp)
            write_file(tmp / ONNX_FILES[1], json_bytes(onnx.description))

    return write_folder(path, FORMAT, fill, overwrite=overwrite, inputs=inputs)


VOCAB_LOOKUP = ("sorted", "order")
"""The tensors ``vocab_sorted/FIELD`` and ``vocab_order/FIELD`` of a large integer vocabulary: its values sorted
and their ids (:data:`saec.data.vocab.SORTED_LOOKUP`)."""


def vocab_parts(vocabs: dict[str, "Vocabulary"]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The vocabularies as ``(json, tensors)`` for an artifact: per field the JSON part of
    :meth:`~saec.data.vocab.Vocabulary.to_arrays`, and the tensors ``vocab_counts/FIELD`` and, for integer
    values, ``vocab_values/FIELD`` (int64)."""
    import torch

    meta, tensors = {}, {}
    for n, v in vocabs.items():
        meta[n], arrays = v.to_arrays()
        for key, array in arrays.items():
            tensors[f"vocab_{key}/{n}"] = torch.from_numpy(array)
    return meta, tensors


def read_vocabs(where: Path, tpath: Path, meta: Any, tensors: dict[str, Any],
                sizes: dict[str, int]) -> dict[str, "Vocabulary"]:
    """Inverse of :func:`vocab_parts`, checking every field's record against its table's ``sizes``
    (messages name ``where``, the JSON file, and ``tpath``, the tensors' file)."""
    import torch

    from saec.data.vocab import Vocabulary

    def part(key: str) -> dict[str, Any]:
        return {k[len(f"vocab_{key}/"):]: v for k, v in tensors.items() if k.startswith(f"vocab_{key}/")}

    counts, values, lookups = part("counts"), part("values"), {key: part(key) for key in VOCAB_LOOKUP}
    if (not isinstance(meta, dict) or set(meta) != set(sizes) or set(counts) != set(sizes) or set(values) - set(sizes)
            or any(set(d) - set(values) for d in lookups.values())):
        raise SaecError(f"{where}: vocabularies {sorted(meta) if isinstance(meta, dict) else meta!r:.100} and counts "
                        f"{sorted(counts)} do not match the fields {sorted(sizes)}")
    vocabs = {}
    for n, d in meta.items():
        c, vt = counts[n], values.get(n)
        if c.dtype != torch.int64 or c.dim() != 1 or (c.numel() and int(c.min()) < 0):
            raise SaecError(f"{tpath}: vocab_counts/{n} is {c.dtype} {tuple(c.shape)}; expected non-negative "
                            f"int64 counts")
        if vt is not None and (vt.dtype != torch.int64 or vt.dim() != 1):
            raise SaecError(f"{tpath}: vocab_values/{n} is {vt.dtype} {tuple(vt.shape)}; expected int64 values")
        listed = _field(where, d, "values", (list, type(None)))
        if (listed is None) == (vt is None):
            raise SaecError(f"{where}: field {n!r}: its values must be either listed or a vocab_values tensor, "
                            f"exactly one of the two")
        n_values = len(listed) if listed is not None else len(vt)
        if n_values != sizes[n] or len(c) != sizes[n]:
            raise SaecError(f"{where}: field {n!r} has {n_values} values and {len(c)} counts, but its table "
                            f"{sizes[n]} rows")
        arrays = {"counts": c.numpy(), **({"values": vt.numpy()} if vt is not None else {})}
        for key, got in lookups.items():
            if n in got:
                if got[n].dtype != torch.int64 or got[n].dim() != 1:
                    raise SaecError(f"{tpath}: vocab_{key}/{n} is {got[n].dtype} {tuple(got[n].shape)}; expected int64")
                arrays[key] = got[n].numpy()
        try:
            vocabs[n] = Vocabulary.from_arrays(d, arrays)
        except (KeyError, TypeError, ValueError) as e:
            raise SaecError(f"{where}: field {n!r}: damaged vocabulary ({type(e).__name__}: {e})") from None
    return vocabs


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


def _field(path: Path, d: Any, key: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise SaecError(f"{path}: field {key!r} is missing")
    if not isinstance(d[key], types):
        raise SaecError(f"{path}: field {key!r} is {d[key]!r:.100}, not of the expected type")
    return d[key]


def need_onnx(art: Any, files: tuple[str, ...]) -> None:
    """The artifact ``art`` must hold exactly ``files`` and, if any of them, :data:`ONNX_FILES`, with
    :data:`ONNX_DATA` only beside them."""
    onnx = any(n in art.names for n in ONNX_FILES + (ONNX_DATA,))
    art.need(files + (ONNX_FILES if onnx else ()) + ((ONNX_DATA,) if ONNX_DATA in art.names else ()))


def load_model(path: str | Path, mmap_bytes: int | None = MMAP_BYTES
               ) -> tuple["nn.Module", dict[str, "Vocabulary"], dict[str, Any]]:
    """Read a model folder written by :func:`save_model`: ``(model, vocabs, extra)``; every file is verified
    before it is used (see the module docstring).

    A ``tensors.safetensors`` of at least ``mmap_bytes`` (None: never) is hashed in chunks and then
    memory-mapped: the model's tensors are views of the file (copy on write), the full tables are never
    allocated, and pages are read when used, so a model larger than free memory loads and serves."""
    from saec.artifact import check_ranges, check_state
    from saec.data.schema import Schema
    from saec.models import build_model  # models import io-free modules only; keep io importable alone

    art = read_artifact(path, FORMAT, "saved model", map_over=mmap_bytes, mappable=["tensors.safetensors"],
                        unread=[ONNX_FILES[0], ONNX_DATA])
    need_onnx(art, MODEL_FILES)
    mapped = "tensors.safetensors" in art.mapped
    path, mpath, vpath, tpath = art.folder, *(art.path(n) for n in MODEL_FILES)
    info = art.json("model.json")
    cfg = dict(_field(mpath, info, "config", dict))
    schema_d = _field(mpath, info, "schema", dict)
    tables = _field(mpath, info, "tables", dict)
    extra = _field(mpath, info, "extra", dict)
    try:
        schema = Schema.from_dict(schema_d)
    except (TypeError, ValueError) as e:
        raise SaecError(f"{mpath}: damaged schema: {e}") from None
    name = _field(mpath, cfg, "name", str)
    sizes = _field(mpath, cfg, "num_embeddings", dict)
    if set(sizes) != set(schema.names) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                                   for n in sizes.values()):
        raise SaecError(f"{mpath}: num_embeddings {sizes!r:.200} does not give a positive row count for each of "
                        f"the schema's fields {schema.names}")
    tensors = art.tensors("tensors.safetensors")
    state = {k[len("state_dict/"):]: v for k, v in tensors.items() if k.startswith("state_dict/")}
    prefixes = ("state_dict/", *(f"vocab_{k}/" for k in ("counts", "values", *VOCAB_LOOKUP)))
    if any(not k.startswith(prefixes) for k in tensors):
        raise SaecError(f"{tpath}: holds tensors other than {', '.join(p + '*' for p in prefixes)}")
    vocabs = read_vocabs(vpath, tpath, art.json("vocabs.json"), tensors, sizes)
    # non-default fields are rebuilt first and handed to the model, so no full table is allocated for them
    # (a compressed 1e8-feature field would otherwise cost its float32 table just to be thrown away)
    rebuilt = {n: _rebuild(mpath, n, t, schema) for n, t in tables.items()}
    for n, t in rebuilt.items():
        if t.num_embeddings != sizes[n]:
            raise SaecError(f"{mpath}: field {n!r}: its table record has {t.num_embeddings} rows, num_embeddings "
                            f"says {sizes[n]}")
    cfg.pop("name"), cfg.pop("num_embeddings")
    if mapped:  # full tables left uninitialised (torch.empty: pages never touched are never resident); the
        import torch  # mapped file's tensors take their place below
        from torch import nn

        rebuilt.update({f.name: nn.Embedding(sizes[f.name], f.dim, sparse=bool(cfg.get("sparse", True)),
                                             _weight=torch.empty(sizes[f.name], f.dim))
                        for f in schema.fields if f.name not in rebuilt})
    try:
        model = build_model(name, schema, sizes, **cfg, tables=rebuilt)
    except (TypeError, ValueError) as e:
        raise SaecError(f"{mpath}: the model it describes cannot be built: {e}") from None
    check_state(tpath, state, model.state_dict(), "state_dict entry")
    model.load_state_dict(state, assign=mapped)  # check_state: the file holds every tensor the model has
    check_ranges(tpath, model)
    return model, vocabs, extra
