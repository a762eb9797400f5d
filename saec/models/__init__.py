"""CTR models over an :class:`~saec.nn.EmbeddingCollection`, built by name; the ranking networks of MEmCom §5.2."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from saec.data.schema import Schema
from saec.models.deepfm import DeepFM
from saec.models.dssm import DSSM
from saec.models.ranking import PointwiseRanker, RankNet
from saec.nn.collection import EmbeddingCollection

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
) -> nn.Module:
    """A freshly initialised CTR model (``"dssm"`` or ``"deepfm"``), seeded for reproducibility."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    torch.manual_seed(seed)
    emb = EmbeddingCollection(schema, num_embeddings, sparse=sparse, init_std=init_std)
    model = MODELS[name](emb, hidden=tuple(hidden), dropout=dropout)
    model.config = {  # enough to rebuild the same architecture when loading
        "name": name, "num_embeddings": dict(num_embeddings), "hidden": list(hidden), "dropout": dropout,
        "seed": seed, "init_std": init_std, "sparse": sparse,
    }
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``build_model`` arguments a model was made with."""
    return dict(model.config)


__all__ = ["DSSM", "DeepFM", "MODELS", "PointwiseRanker", "RankNet", "build_model", "model_config"]
