"""CTR models over an :class:`~saec.nn.EmbeddingBagCollection`, built by name; the ranking networks of MEmCom §5.2."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Mapping

import torch
from torch import nn

from saec.data.schema import Schema
from saec.data.vocab import Vocabulary
from saec.errors import SaecError
from saec.models.deepfm import DeepFM
from saec.models.dssm import DSSM
from saec.models.ranking import PointwiseRanker, RankNet
from saec.nn.collection import EmbeddingBagCollection
from saec.nn.registry import FROM_SCRATCH, METHODS, POST_TRAINING, make_embedding, training_structure

SMALL_FIELD_ROWS = 1000
"""Fields with fewer features than this keep a full table in :func:`build_compressed_model`.

Such a table costs under 1000 x dim numbers -- on MovieLens-1M the five small fields (age, gender,
occupation, genres, year: 129 features) hold 0.4% of the embedding parameters -- while hashing it would
merge categories that are few and dense (the two genders). The MEmCom paper, too, compresses only the
large vocabularies (its inputs have 10K-480K ids).
"""

MODELS = {"dssm": DSSM, "deepfm": DeepFM}


def build_model(
    name: str,
    schema: Schema,
    num_embeddings: dict[str, int],
    hidden: tuple[int, ...] = (256, 128),
    dropout: float = 0.0,
    seed: int = 0,
    init_std: float = 0.01,
    sparse: bool = True,
    tables: Mapping[str, nn.Module] | None = None,
) -> nn.Module:
    """A freshly initialised CTR model (``"dssm"`` or ``"deepfm"``), seeded for reproducibility.

    The model is drawn from torch's global generator seeded with ``seed`` (the stream every committed
    result was made with), inside ``torch.random.fork_rng``: the caller's random state is left as it was.

    ``tables``: ready-made tables for some fields (see :class:`~saec.nn.collection.EmbeddingBagCollection`);
    not part of :attr:`config`. Skipping a field's full table changes the random stream the rest of the
    model is initialised from, which is harmless when weights are loaded afterwards (as :func:`saec.io.load_model` does).
    """
    if name not in MODELS:
        raise SaecError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    with torch.random.fork_rng(devices=[]):  # tables and layers are built on the CPU: its generator only
        torch.default_generator.manual_seed(seed)
        emb = EmbeddingBagCollection(schema, num_embeddings, sparse=sparse, init_std=init_std, tables=tables)
        model = MODELS[name](emb, hidden=tuple(hidden), dropout=dropout)
    model.config = {  # enough to rebuild the same architecture when loading
        "name": name, "num_embeddings": dict(num_embeddings), "hidden": list(hidden), "dropout": dropout,
        "seed": seed, "init_std": init_std, "sparse": sparse,
    }
    return model


def large_fields(schema: Schema, vocabs: Mapping[str, Vocabulary], min_rows: int = SMALL_FIELD_ROWS) -> list[str]:
    """Fields (schema order) with at least ``min_rows`` features: those :func:`build_compressed_model` compresses."""
    missing = [n for n in schema.names if n not in vocabs]
    if missing:
        raise SaecError(f"no vocabulary for fields {missing}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise SaecError(f"min_rows must be a positive integer, got {min_rows!r}")
    return [n for n in schema.names if len(vocabs[n]) >= min_rows]


def build_compressed_model(
    name: str,
    schema: Schema,
    vocabs: Mapping[str, Vocabulary],
    method: str,
    ratio: float | None,
    *,
    min_rows: int = SMALL_FIELD_ROWS,
    budget: str = "params",
    hyper: Mapping[str, Any] | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """A fresh CTR model whose large fields use ``method`` tables ``ratio`` times smaller than full ones.

    Every field with at least ``min_rows`` features (:func:`large_fields`) gets
    ``make_embedding(method, v, dim, counts=vocab.counts, budget_params=floor(v * dim / ratio), **hyper)``
    (``budget="bytes"``: ``budget_bytes=floor(4 v dim / ratio)``), i.e. the largest table of the method
    within that budget; the other fields keep the full ``nn.Embedding``. Tables are seeded with
    ``seed + position of the field in the schema`` and take the model's ``init_std`` and ``sparse``.

    Args:
        name, schema, model_kwargs: as for :func:`build_model` (``hidden``, ``dropout``, ``seed``, ...).
        vocabs: every field's vocabulary (sizes and frequency counts).
        method: a method trained compressed from scratch (:data:`saec.nn.registry.FROM_SCRATCH`); or a
            post-training method with a training form of its own (``binary``, ``memcom_int8``: see
            :attr:`saec.nn.registry.Method.trained_with`), for which the model holds that form (``binary_ste``,
            ``memcom``) sized so that :func:`saec.compress` of the trained model at the same ratio fits (only
            ``budget="bytes"``); the other post-training methods compress a trained model instead.
        ratio: target compression ratio of each large field's table, >= 1; None: no budget, every large field
            gets the method's table at its given (or default) hyperparameters.
        hyper: the method's other hyperparameters (not its budget knob).
    """
    stored = None  # a post-training method with a training form: the form is built, sized for the stored one
    if method in POST_TRAINING:
        if not METHODS[method].trained_with:
            raise SaecError(f"method {method!r} is built from a trained table: train a model with build_model, then "
                            f"compress it with saec.compress(model, {method!r}, ...); methods trained compressed from "
                            f"scratch are {list(FROM_SCRATCH)}")
        stored, method = method, METHODS[method].trained_with
        if ratio is not None and budget != "bytes":
            raise SaecError(f"method {stored!r} is sized by the bytes of what it stores: pass budget='bytes'")
    fields = large_fields(schema, vocabs, min_rows)
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, Real) or not 1 <= ratio < math.inf):
        raise SaecError(f"ratio must be a number >= 1, got {ratio!r}")
    if budget not in ("params", "bytes"):
        raise SaecError(f"budget must be 'params' or 'bytes', got {budget!r}")
    model = build_model(name, schema, {n: len(vocabs[n]) for n in schema.names}, **model_kwargs)
    cfg = model.config
    spec = METHODS.get(method)  # the model's sparse setting is for row tables (DHE has none)
    sparse = {"sparse": cfg["sparse"]} if spec is None or "sparse" in spec.structure() else {}
    for name_ in fields:
        v, dim = len(vocabs[name_]), schema[name_].dim
        size = v * dim * (1 if budget == "params" else 4)
        sizing = {} if ratio is None else {f"budget_{budget}": math.floor(size / ratio)}
        try:
            if stored is not None and sizing:  # the structure its stored form fits the ratio with (dpq's M, ...)
                accepted = METHODS[stored].hyperparameters()
                sizing = training_structure(stored, v, dim, counts=vocabs[name_].counts, budget_bytes=sizing["budget_bytes"],
                                            **{k: x for k, x in (hyper or {}).items() if k in accepted})
            table = make_embedding(method, v, dim, counts=vocabs[name_].counts,
                                   seed=cfg["seed"] + schema.names.index(name_),
                                   init_std=cfg["init_std"], **sparse, **{**(hyper or {}), **sizing})
        except ValueError as e:
            raise SaecError(f"field {name_!r} ({v} x {dim}): {e}") from None
        model.embeddings.replace(name_, table)
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``build_model`` arguments a model was made with."""
    return dict(model.config)


__all__ = ["DSSM", "DeepFM", "MODELS", "SMALL_FIELD_ROWS", "PointwiseRanker", "RankNet", "build_compressed_model",
           "build_model", "large_fields", "model_config"]
