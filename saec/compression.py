"""Post-training compression of any PyTorch model: :func:`compress` walks an ``nn.Module`` and swaps its
embedding tables for a post-training method's tables (TorchRec's ``quantize_embeddings`` shape: float model
in, a new model with compressed tables out, the original untouched).

* Every ``nn.Embedding`` and ``nn.EmbeddingBag`` with at least ``min_rows`` rows is replaced by the
  method's table (:data:`saec.nn.registry.POST_TRAINING`: ``saec``, ``fp16``, ``int8``, ``int4``, ``int2``,
  ``saec_int8``); an ``EmbeddingBag`` by its pooled form, an ``Embedding`` with ``padding_idx`` by its
  padded form (:mod:`saec.nn.bag`), so the model's ``forward`` runs unchanged.
* A table reachable from several places (one table shared by two features) is compressed once and stays
  shared. Tables inside an already compressed table are left alone.
* Saec also applies its eligibility rule (§2.2.1): a table is clustered only if it has at least
  ``eligibility * k`` rows (default 100 x k, the paper's).
* Frequencies (Saec clusters the most frequent rows, §2.4) come from ``counts`` by table path, e.g. from
  :func:`count_ids` over batches of the model's own inputs; without them row order is taken as frequency
  order (row 0 most frequent), which is how :class:`~saec.data.vocab.Vocabulary` numbers ids.

Only module calls are seen: a model that reads ``table.weight`` itself (``F.embedding(x, self.t.weight)``,
an output layer tied to an input table) is not compressed through that read.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import math
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from saec.cluster.saec import FieldCompression, FieldSize, SaecConfig
from saec.errors import SaecError, SaecKeyError, SaecTypeError
from saec.text import text_table
from saec.nn.bag import CompressedEmbeddingBag, PaddedEmbedding
from saec.nn.base import CompressedEmbedding, check_counts
from saec.nn.registry import METHODS, POST_TRAINING, fit_hyperparameters, footprint, from_float

TABLE_TYPES = (nn.Embedding, nn.EmbeddingBag)
"""What :func:`compress` replaces."""
_COMPRESSED = (CompressedEmbedding, CompressedEmbeddingBag, PaddedEmbedding)
CLUSTERING = ("saec", "saec_int8")
"""Methods that apply Saec's field-size eligibility rule."""
DEFAULT_ELIGIBILITY = 100.0


@dataclass
class TableReport:
    """What :func:`compress` did to one table.

    Attributes:
        path: the table's module path in the model (the first one, for a shared table).
        also_at: its other paths, for a table shared by several places.
        kind: ``"Embedding"`` or ``"EmbeddingBag"`` (with its mode).
        rows, dim: the table's shape.
        bytes_before: bytes of the float table.
        bytes_after: bytes of what replaced it (``bytes_before`` if it was left alone).
        method: the method that replaced it, or None.
        settings: the new table's :meth:`~saec.nn.base.CompressedEmbedding.config`.
        skipped: why the table was left alone ("" if it was compressed).
        stats: what fitting did (Saec: vectors k-means ran on, objective, seconds).
    """

    path: str
    also_at: list[str]
    kind: str
    rows: int
    dim: int
    bytes_before: int
    bytes_after: int
    method: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after


@dataclass
class CompressionReport:
    """Per-table reports of one :func:`compress` call, and their totals."""

    method: str
    tables: list[TableReport]

    @property
    def bytes_before(self) -> int:
        return sum(t.bytes_before for t in self.tables)

    @property
    def bytes_after(self) -> int:
        return sum(t.bytes_after for t in self.tables)

    @property
    def ratio(self) -> float:
        """Bytes of the tables before over after (tables left alone count on both sides)."""
        return self.bytes_before / self.bytes_after if self.tables else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "ratio": self.ratio, "tables": [asdict(t) for t in self.tables]}

    def __str__(self) -> str:
        return text_table(self.rows())

    def rows(self) -> list[list[str]]:
        """A printable table: header, one row per table, totals."""
        out = [["table", "kind", "rows", "dim", "method", "settings", "bytes before", "bytes after", "ratio"]]
        for t in self.tables:
            settings = ", ".join(f"{k}={v}" for k, v in t.settings.items()) if t.method else t.skipped
            out.append([t.path + (f" (= {', '.join(t.also_at)})" if t.also_at else ""), t.kind, f"{t.rows:,}",
                        str(t.dim), t.method or "-", settings, f"{t.bytes_before:,}", f"{t.bytes_after:,}",
                        f"{t.ratio:.1f}x"])
        out.append(["total", "", "", "", "", "", f"{self.bytes_before:,}", f"{self.bytes_after:,}",
                    f"{self.ratio:.1f}x"])
        return out


def find_tables(model: nn.Module, method: str | None = None) -> dict[str, list[str]]:
    """The ``nn.Embedding`` / ``nn.EmbeddingBag`` modules of ``model``: ``{first path: [every path]}``.

    Paths are ``named_modules`` names; a module reachable from several places is listed once with all of
    them. Already compressed tables are not looked into, except, for a ``method`` trained in another method's
    form (:attr:`~saec.nn.registry.Method.trained_with`, e.g. ``binary`` of ``binary_ste``), the tables of that
    form (bare or in their pooled or padded form), which are listed too.
    """
    paths: dict[int, list[str]] = {}
    first: dict[int, str] = {}
    trained = _trained_form(method)

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, TABLE_TYPES) or (trained is not None and isinstance(_inner(child), trained)):
                first.setdefault(id(child), path)
                paths.setdefault(id(child), []).append(path)
            elif not isinstance(child, _COMPRESSED):
                walk(child, path + ".")

    if isinstance(model, TABLE_TYPES):
        raise SaecTypeError("compress takes the model that holds the tables; for one table use "
                            "saec.nn.registry.from_float(method, table)")
    walk(model, "")
    return {first[i]: p for i, p in paths.items()}


def _trained_form(method: str | None) -> type | None:
    """The class of the tables ``method`` is the stored form of (None: it compresses float tables)."""
    spec = METHODS.get(method) if method is not None else None
    return METHODS[spec.trained_with].cls if spec is not None and spec.trained_with else None


def _inner(module: nn.Module) -> nn.Module:
    """The compressed table inside a pooled or padded form (any other module: itself)."""
    return module.table if isinstance(module, (CompressedEmbeddingBag, PaddedEmbedding)) else module


def _shape(module: nn.Module) -> tuple[int, int]:
    """(rows, dim) of a float table or of a trained compressed one."""
    if isinstance(module, TABLE_TYPES):
        return tuple(module.weight.shape)
    table = _inner(module)
    return table.num_embeddings, table.embedding_dim


def _nbytes(module: nn.Module) -> int:
    if isinstance(module, TABLE_TYPES):
        return module.weight.numel() * module.weight.element_size()
    return _inner(module).nbytes()


def _modules_by_path(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules(remove_duplicate=False))


def _check_settings(method: str, hyper: dict[str, Any], eligibility: float | None) -> None:
    """The settings' names, types and ranges, checked once before any table is looked at (so that a bad
    setting is reported even when every table would be left alone)."""
    spec = METHODS[method]
    unknown = sorted(set(hyper) - set(spec.hyperparameters()) - set(spec.fixed))
    if unknown:
        raise SaecError(f"method {method!r} has no hyperparameter {unknown[0]!r}; it takes {spec.hyperparameters()}")
    if method in CLUSTERING:  # the k-means settings, as SaecConfig checks them (k may come from a budget)
        SaecConfig(k=hyper.get("k", 1), eligibility=eligibility, top_n=hyper.get("top_n"), fast=hyper.get("fast", True),
                   init=hyper.get("init", "kmeans++"), niter=hyper.get("niter", 25), seed=hyper.get("seed", 0))


def _named_tables(names: Sequence[str], tables: dict[str, list[str]], modules: dict[str, nn.Module]) -> set[str]:
    """The first paths of the tables ``names`` names; a name that is no embedding table is an error."""
    if isinstance(names, str):
        names = [names]
    alias = {p: first for first, ps in tables.items() for p in ps}
    out = set()
    for name in names:
        if name in alias:
            out.add(alias[name])
        elif name in modules:
            raise SaecTypeError(f"table {name!r} is a {type(modules[name]).__name__}, not an nn.Embedding or "
                                f"nn.EmbeddingBag (or it lies inside an already compressed table)")
        else:
            raise SaecKeyError(f"tables names {name!r}, which is no module of the model; its embedding tables are "
                               f"{list(tables)}")
    return out


def _check_module(path: str, module: nn.Module) -> None:
    """Options of a table that no compressed form can honour."""
    if getattr(module, "max_norm", None) is not None:
        raise SaecError(f"table {path!r}: max_norm={module.max_norm} renormalises rows on lookup, which a "
                        f"compressed table cannot do; build the table without max_norm")
    if getattr(module, "scale_grad_by_freq", False):
        raise SaecError(f"table {path!r}: scale_grad_by_freq=True is not supported by compressed tables")


def _kind(module: nn.Module) -> str:
    if isinstance(module, TABLE_TYPES):
        return f"EmbeddingBag({module.mode})" if isinstance(module, nn.EmbeddingBag) else "Embedding"
    name = type(_inner(module)).__name__
    return f"{name} in EmbeddingBag({module.mode})" if isinstance(module, CompressedEmbeddingBag) else name


def _by_path(what: str, given: Any, tables: dict[str, list[str]]) -> dict[str, Any]:
    """A per-table argument keyed by the first path of each table it names (any of a table's paths works)."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise SaecTypeError(f"{what} must map table paths to values, got a {type(given).__name__}; "
                            f"the model's tables are {list(tables)}")
    alias = {p: first for first, ps in tables.items() for p in ps}
    unknown = [k for k in given if k not in alias]
    if unknown:
        raise SaecKeyError(f"{what} names {unknown}, which are not embedding tables of the model; its tables "
                           f"are {list(tables)}")
    return {alias[k]: v for k, v in given.items()}


def _budgets(budget: Any, ratio: Any, tables: dict[str, list[str]], modules: dict[str, nn.Module]) -> dict[str, float]:
    if budget is not None and ratio is not None:
        raise SaecError("give at most one of budget (bytes per table) and ratio")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, Real) or not ratio >= 1:
            raise SaecError(f"ratio must be a number >= 1 (the float table's bytes over the compressed table's), "
                            f"got {ratio!r}")
        return {p: math.prod(_shape(modules[p])) * 4 / float(ratio) for p in tables}
    if budget is None:
        return {}
    per = _by_path("budget", budget, tables) if isinstance(budget, Mapping) else {p: budget for p in tables}
    for p, b in per.items():
        if isinstance(b, bool) or not isinstance(b, Real) or not b > 0:
            raise SaecError(f"table {p!r}: budget must be a positive number of bytes, got {b!r}")
    return per


def compress(model: nn.Module, method: str = "saec", counts: Mapping[str, Any] | None = None,
             budget: int | Mapping[str, int] | None = None, min_rows: int = 1000, *, ratio: float | None = None,
             tables: Sequence[str] | None = None, table_hyper: Mapping[str, Mapping[str, Any]] | None = None,
             **hyper: Any) -> tuple[nn.Module, CompressionReport]:
    """A copy of ``model`` whose large embedding tables hold ``method``'s tables, and what was done.

    Args:
        model: any ``nn.Module``; it is not changed.
        method: a post-training method (:data:`~saec.nn.registry.POST_TRAINING`).
        counts: ``{table path: per-row frequencies}`` (:func:`count_ids` makes them); tables without
            counts take row order as frequency order.
        budget: bytes each table may take (one number for all, or ``{path: bytes}``); the method's knob
            (Saec's ``k``) is set to the largest value that fits. Or ``ratio``: each table at most its
            float32 bytes / ``ratio``.
        min_rows: smaller tables are left alone.
        tables: compress exactly these tables (module paths; any path of a shared table) instead of every
            table of at least ``min_rows`` rows; a named table that cannot be compressed as asked (not an
            embedding table, too small for Saec's eligibility rule) is an error, not left alone.
        table_hyper: ``{table path: settings}`` that add to or override ``hyper`` for one table (e.g. Saec's
            ``init_codebook``, a table's own starting centroids).
        **hyper: the method's settings (e.g. ``k=100, top_n=..., init="topk", grad_mode="mean"`` for Saec,
            whose ``eligibility`` (default 100) also applies: tables with fewer than ``eligibility * k``
            rows stay full).

    Every argument is checked for every table before any table is compressed.
    """
    if method not in METHODS:
        raise SaecKeyError(f"unknown method {method!r}; post-training methods are {list(POST_TRAINING)}")
    if method not in POST_TRAINING:
        raise SaecError(f"method {method!r} is trained compressed from scratch, not built from a trained table; "
                        f"post-training methods are {list(POST_TRAINING)} (build a model with "
                        f"saec.models.build_compressed_model for the others)")
    if isinstance(min_rows, bool) or not isinstance(min_rows, (int, np.integer)) or min_rows < 1:
        raise SaecError(f"min_rows must be a positive integer, got {min_rows!r}")
    eligibility = hyper.pop("eligibility", DEFAULT_ELIGIBILITY) if method in CLUSTERING else None
    if eligibility is not None and (isinstance(eligibility, bool) or not isinstance(eligibility, Real)
                                    or not eligibility >= 1):
        raise SaecError(f"eligibility must be a number >= 1 (tables need eligibility * k rows), got {eligibility!r}")
    _check_settings(method, hyper, eligibility)
    modules = _modules_by_path(model)
    all_tables = find_tables(model, method)
    named = None if tables is None else _named_tables(tables, all_tables, modules)
    tables = all_tables
    counts = _by_path("counts", counts, tables)
    budgets = _budgets(budget, ratio, tables, modules)
    table_hyper = _by_path("table_hyper", table_hyper, tables)
    for path, extra in table_hyper.items():
        if not isinstance(extra, Mapping):
            raise SaecError(f"table_hyper[{path!r}] must be a dict of settings, got {type(extra).__name__}")
        _check_settings(method, {**hyper, **extra}, eligibility)

    plans: dict[str, tuple[dict[str, Any], np.ndarray | None, str]] = {}  # path -> (settings, counts, skipped)
    for path in tables:
        module = modules[path]
        rows, dim = _shape(module)
        try:
            c = check_counts(counts.get(path), rows)
        except SaecError as e:
            raise SaecError(f"table {path!r}: {e}") from None
        if named is not None and path not in named:
            plans[path] = ({}, c, "not among the tables named")
            continue
        if named is None and rows < min_rows:
            plans[path] = ({}, c, f"rows < min_rows={min_rows}")
            continue
        _check_module(path, module)
        knobbed = _with_default_knob(method, {**hyper, **table_hyper.get(path, {})}, path in budgets, _inner(module))
        if eligibility and named is None and "k" in knobbed and rows < eligibility * knobbed["k"]:
            # Saec §2.2.1: only fields of >= eligibility * k features are clustered
            plans[path] = ({}, c, f"rows < eligibility x k = {eligibility:g} x {knobbed['k']}")
            continue
        try:
            settings = fit_hyperparameters(method, rows, dim, counts=c, budget_bytes=budgets.get(path), **knobbed)
            footprint(method, rows, dim, **settings)  # checks the structure (k <= rows, int4's even dim) up front
            start = settings.get("init_codebook")
            if start is not None and np.shape(start) != (settings["k"], dim):
                raise SaecError(f"init_codebook has shape {np.shape(start)}, expected (k, dim) = ({settings['k']}, {dim})")
            if eligibility and rows < eligibility * settings["k"]:
                if named is not None:
                    raise SaecError(f"Saec clusters tables of at least eligibility x k = {eligibility:g} x "
                                    f"{settings['k']} rows; lower eligibility or k")
                plans[path] = ({}, c, f"rows < eligibility x k = {eligibility:g} x {settings['k']}")
                continue
        except SaecError as e:
            raise SaecError(f"table {path!r} ({rows} x {dim}): {e}") from None
        plans[path] = (settings, c, "")

    replacements: dict[int, nn.Module] = {}
    reports = []
    for path, paths in tables.items():
        module = modules[path]
        settings, c, skipped = plans[path]
        rows, dim = _shape(module)
        before = _nbytes(module)
        report = TableReport(path, paths[1:], _kind(module), rows, dim, before, before, skipped=skipped)
        if not skipped:
            table = from_float(method, _inner(module), counts=c, **settings)
            table.name = path
            replacements[id(module)] = _drop_in(table, module)
            report.method, report.settings = method, table.config()
            report.bytes_after = table.nbytes()
            report.stats = dict(getattr(table, "fit_stats", {}))
        reports.append(report)
    # deepcopy's memo maps each replaced table to its replacement (at every place it is referenced), so the
    # big float tables are never copied and the original model is left as it was.
    return copy.deepcopy(model, dict(replacements)), CompressionReport(method, reports)


def _with_default_knob(method: str, hyper: dict[str, Any], budgeted: bool, module: nn.Module) -> dict[str, Any]:
    """``hyper`` with the method's size knob at its ``from_float`` default (Saec: k = 100) unless given or set
    by a budget; for a table trained in the method's training form that has the knob too (MEmCom's ``num_buckets``
    for ``memcom_int8``), that table's value."""
    spec = METHODS[method]
    if budgeted or not spec.knobs or spec.knobs[0].name in hyper:
        return hyper
    knob = spec.knobs[0].name
    own = module.config() if isinstance(module, CompressedEmbedding) else {}
    default = own[knob] if knob in own else inspect.signature(spec.cls._from_weight).parameters[knob].default
    return {knob: default, **hyper}


def _drop_in(table: CompressedEmbedding, module: nn.Module) -> nn.Module:
    """``table`` in the form that takes ``module``'s calls."""
    if isinstance(module, CompressedEmbeddingBag):
        return CompressedEmbeddingBag(table, module.mode, module.padding_idx, module.include_last_offset)
    if isinstance(module, PaddedEmbedding):
        return PaddedEmbedding(table, module.padding_idx)
    if isinstance(module, nn.EmbeddingBag):
        return CompressedEmbeddingBag(table, module.mode, module.padding_idx, module.include_last_offset)
    if getattr(module, "padding_idx", None) is not None:  # an nn.Embedding's (a bare compressed table has none)
        return PaddedEmbedding(table, module.padding_idx)
    return table


@torch.no_grad()
def count_ids(model: nn.Module, batches: Iterable[Any]) -> dict[str, np.ndarray]:
    """How often every row of every embedding table of ``model`` is looked up over ``batches``.

    Each batch is what the model is called with: a tuple or list (positional arguments), a dict (keyword
    arguments) or one tensor. Forward pre-hooks on the tables count their ids (``padding_idx`` and
    negative ids left out); the model runs without gradients, in eval mode, and is put back as it was.
    Returns ``{table path: int64 counts}``, keyed like :func:`compress`'s ``counts``.
    """
    tables = find_tables(model)
    modules = _modules_by_path(model)
    counts = {p: np.zeros(modules[p].weight.shape[0], dtype=np.int64) for p in tables}

    def hook(path: str):
        def count(module: nn.Module, args: tuple, kwargs: dict) -> None:
            ids = args[0] if args else kwargs.get("input")
            ids = ids.reshape(-1).long()
            ids = ids[(ids >= 0) & (ids < len(counts[path]))]
            if module.padding_idx is not None:
                ids = ids[ids != module.padding_idx]
            counts[path] += np.bincount(ids.numpy(), minlength=len(counts[path]))
        return count

    handles = [modules[p].register_forward_pre_hook(hook(p), with_kwargs=True) for p in tables]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for i, batch in enumerate(batches):
            if isinstance(batch, Mapping):
                model(**batch)
            elif isinstance(batch, (tuple, list)):
                model(*batch)
            elif isinstance(batch, torch.Tensor):
                model(batch)
            else:
                raise SaecTypeError(f"batch {i}: expected the model's inputs as a tuple, dict or tensor, got a "
                                    f"{type(batch).__name__}")
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.train(training)
    return counts


# -- a saved state_dict: the tables are named by the user ---------------------------------------
STATE_DICT_FORMAT = "saec-compressed-state-dict"
STATE_DICT_VERSION = 1


def table_keys(state: Mapping[str, torch.Tensor], names: Sequence[str]) -> list[str]:
    """The keys of ``state`` that match one of the glob ``names`` (e.g. ``"emb.*.weight"``); each must be a
    2-D float tensor (an embedding table's weight)."""
    if isinstance(names, str):
        names = [names]
    keys = [k for k in state if any(fnmatch.fnmatchcase(k, pattern) for pattern in names)]
    if not keys:
        raise SaecKeyError(f"no key of the state_dict matches {list(names)}; its keys are {list(state)[:20]}")
    for k in keys:
        t = state[k]
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            raise SaecError(f"state_dict key {k!r} matches {list(names)} but is not an embedding table's weight "
                            f"(a 2-D float tensor): got {getattr(t, 'dtype', type(t).__name__)} of shape "
                            f"{tuple(getattr(t, 'shape', ()))}")
    return keys


def compress_state_dict(state: Mapping[str, torch.Tensor], names: Sequence[str], method: str = "saec",
                        **kwargs: Any) -> tuple[dict[str, Any], CompressionReport]:
    """:func:`compress` on the tables of a saved ``state_dict`` (``torch.save(model.state_dict())``), named by
    the glob patterns ``names``: each matching ``PATH.weight`` is taken as an ``nn.Embedding`` at ``PATH``,
    and every table named is compressed (``tables=`` of :func:`compress`), or it is an error.

    Returns a record (plain data and tensors) that :func:`save_tables` writes as an artifact folder:
    ``state_dict`` holds the other entries unchanged and each table's compressed entries under its path
    (``PATH.codebook``, ``PATH.mask`` for Saec: what ``saec.compress(model).state_dict()`` holds for an
    ``nn.Embedding`` model), and ``tables`` what :func:`load_tables` rebuilds each table from. Row order is
    taken as frequency order unless ``counts`` (by path) are given.
    """
    keys = table_keys(state, names)
    holder = nn.Module()
    paths = {}
    for key in keys:
        path = key[: -len(".weight")] if key.endswith(".weight") else key
        parent = holder
        *parents, leaf = path.split(".")
        for part in parents:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        if hasattr(parent, leaf):
            raise SaecError(f"state_dict key {key!r}: its table path {path!r} is also a prefix of another table's")
        parent.add_module(leaf, nn.Embedding.from_pretrained(state[key].detach(), freeze=True))
        paths[path] = key
    compressed, report = compress(holder, method, tables=list(paths), **kwargs)
    out = {k: v for k, v in state.items() if k not in keys}
    tables = {}
    for t in report.tables:  # every table was named, so every one is compressed (or compress raised)
        module = compressed.get_submodule(t.path)
        out.update({f"{t.path}.{k}": v for k, v in module.state_dict().items()})
        tables[t.path] = {"method": t.method, "rows": t.rows, "dim": t.dim, "config": t.settings}
    record = {"format": STATE_DICT_FORMAT, "version": STATE_DICT_VERSION, "tables": tables, "state_dict": out,
              "report": report.to_dict()}
    return record, report


def save_tables(path: str | Path, record: Mapping[str, Any], *, overwrite: bool = False,
                inputs: Iterable[str | Path | None] = ()) -> Path:
    """Write a :func:`compress_state_dict` record as the artifact folder ``path`` (:mod:`saec.artifact`):
    ``state_dict.safetensors`` (the entries by key) and ``tables.json`` (the table records and the report),
    with the SHA-256 of each in ``manifest.json``. Replaces an existing folder only as
    :func:`saec.artifact.check_output` allows."""
    from saec.artifact import json_bytes, write_file, write_folder, write_tensors

    _check_record(record, "the record")
    info = {"tables": record["tables"], "report": record.get("report", {})}

    def fill(tmp: Path) -> None:
        write_file(tmp / "tables.json", json_bytes(info))
        write_tensors(tmp / "state_dict.safetensors", record["state_dict"])

    return write_folder(path, STATE_DICT_FORMAT, fill, {"record_version": STATE_DICT_VERSION},
                        overwrite=overwrite, inputs=inputs)


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, Mapping) or record.get("format") != STATE_DICT_FORMAT:
        raise SaecError(f"{where}: not a {STATE_DICT_FORMAT} record")
    if record.get("version") != STATE_DICT_VERSION:
        raise SaecError(f"{where}: {STATE_DICT_FORMAT} version {record.get('version')!r} is not supported "
                        f"(want {STATE_DICT_VERSION})")
    if not isinstance(record.get("tables"), Mapping) or not isinstance(record.get("state_dict"), Mapping):
        raise SaecError(f"{where}: 'tables' and 'state_dict' must be mappings")


def read_tables(path: str | Path) -> dict[str, Any]:
    """The :func:`compress_state_dict` record saved by :func:`save_tables` at ``path``, every file verified."""
    from saec.artifact import MANIFEST, read_artifact

    art = read_artifact(path, STATE_DICT_FORMAT, "compressed state_dict")
    art.need(["tables.json", "state_dict.safetensors"])
    if art.meta("record_version", int) != STATE_DICT_VERSION:
        raise SaecError(f"{art.path(MANIFEST)}: record_version {art.manifest['record_version']!r} is not "
                        f"supported (want {STATE_DICT_VERSION})")
    info = art.json("tables.json")
    if not isinstance(info, dict) or not isinstance(info.get("tables"), dict) or "report" not in info:
        raise SaecError(f"{art.path('tables.json')}: expected an object with 'tables' and 'report'")
    return {"format": STATE_DICT_FORMAT, "version": STATE_DICT_VERSION, "tables": info["tables"],
            "state_dict": art.tensors("state_dict.safetensors"), "report": info["report"], "_path": art.folder}


def load_tables(record: Mapping[str, Any] | str | Path) -> dict[str, CompressedEmbedding]:
    """The compressed tables of a :func:`compress_state_dict` record (or of the folder :func:`save_tables`
    wrote), by path, with their weights loaded: each table's entries must be exactly the keys, shapes and
    dtypes its record rebuilds, without NaN, its masks and id buffers in range."""
    from saec.artifact import check_ranges, check_state

    if isinstance(record, (str, Path)):
        record = read_tables(record)
    where = str(record.get("_path", "the record")) if isinstance(record, Mapping) else "the record"
    _check_record(record, where)
    out = {}
    state = record["state_dict"]
    for path, t in record["tables"].items():
        if not isinstance(t, Mapping) or t.get("method") not in METHODS:
            raise SaecError(f"{where}: table {path!r}: unknown method {t.get('method') if isinstance(t, Mapping) else t!r}")
        try:
            table = METHODS[t["method"]].cls.from_config(t["rows"], t["dim"], t["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise SaecError(f"{where}: table {path!r}: cannot rebuild it from {dict(t)!r:.200}: {e}") from None
        prefix = path + "."
        entries = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        check_state(where, entries, table.state_dict(), f"entry of {path!r}")
        table.load_state_dict(entries)
        check_ranges(where, table)
        table.name = path
        out[path] = table
    return out


# -- Saec on saec's own CTR models ----------------------------------------------------------------
def compress_model(model: nn.Module, counts: Mapping[str, np.ndarray] | None, cfg: SaecConfig,
                   grad_mode: str = "mean") -> tuple[nn.Module, dict[str, FieldCompression]]:
    """Saec on a CTR model with an ``embeddings`` collection (:func:`saec.models.build_model`): :func:`compress`
    with ``cfg``'s settings and counts by field name, and per-field results in the paper's accounting
    (§3.2; :class:`~saec.cluster.saec.FieldCompression`: size, codebook, mask, what k-means trained on)."""
    emb = getattr(model, "embeddings", None)
    names = list(getattr(getattr(emb, "schema", None), "names", []))
    if not names:
        raise SaecTypeError(f"compress_model takes a model with an embeddings collection (saec.models.build_model); "
                            f"for any other model use saec.compress")
    counts = dict(counts or {})
    unknown = sorted(set(counts) - set(names))
    if unknown:
        raise SaecKeyError(f"counts given for unknown fields {unknown}; the model has {names}")
    prefix = "embeddings.tables."
    full = [n for n in names if isinstance(emb.tables[n], nn.Embedding)]  # fields compressed by some method stay
    by_path = {prefix + n: counts[n] for n in full if n in counts}
    out, report = compress(model, "saec", counts=by_path, min_rows=cfg.min_features(), k=cfg.k, eligibility=cfg.eligibility,
                           top_n=cfg.top_n, fast=cfg.fast, init=cfg.init, niter=cfg.niter, seed=cfg.seed,
                           grad_mode=grad_mode)
    fields = {}
    for t in report.tables:
        if not t.path.startswith(prefix) or t.path[len(prefix):] not in full:
            continue
        name = t.path[len(prefix):]
        if t.method is None:
            fields[name] = FieldCompression(FieldSize(name, t.rows, t.dim))
            continue
        table = out.embeddings.tables[name]
        fields[name] = FieldCompression(FieldSize(name, t.rows, t.dim, table.k), table.codebook.detach().numpy(),
                                        table.mask.numpy(), **t.stats)
    return out, fields


__all__ = ["CLUSTERING", "CompressionReport", "TableReport", "compress", "compress_model", "compress_state_dict",
           "count_ids", "find_tables", "load_tables", "read_tables", "save_tables", "table_keys"]
