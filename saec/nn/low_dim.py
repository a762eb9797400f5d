"""Reduced embedding dimension (MEmCom §2.2 "use lower embedding dimensions", §5 (6) "reduce embedding
dim": the dimension is halved, 128, 64, ... 4).

The table stores ``low_dim`` < e numbers per feature. The downstream model expects e, so the vector is
brought back up to the field's dimension:

* ``projection="linear"``: a learned low_dim x e matrix ``P`` (drawn from N(0, 1/low_dim)). This is
  the same family of tables as :mod:`saec.nn.factorized` (rank <= low_dim); the two differ only in
  which knob a sweep turns and in name.
* ``projection="affine"``: ``P`` and a learned bias ``b`` of width e (starting at zero), the
  ``nn.Linear(low_dim, e)`` "upscale" of thomasahle/cce's ``LowDimensionalEmbedding`` (its default
  ``bias=True``). In a dot-product model such as GMF, ``(x_u P + b) . (x_i Q + c)`` holds per-user and
  per-item linear terms ``x_u P c`` and ``b . x_i Q``, which a narrow table without the bias cannot spare
  dimensions for.
* ``projection="pad"``: zeros appended, no parameters. A downstream linear layer then sees exactly a
  ``low_dim``-wide embedding (its weights on the zero inputs are dead), which is the paper's baseline
  of simply training with a smaller dimension.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from saec.nn.base import CompressedEmbedding, check_bool, check_choice, check_int, generator, seeded_table

PROJECTIONS = ("linear", "affine", "pad")


class LowDimEmbedding(CompressedEmbedding):
    """A v x low_dim table whose vectors are projected (or zero-padded) to the field dimension e.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width the table gives (e).
        low_dim: stored dimension (r), 1 <= r <= e.
        projection: ``"linear"`` (learned r x e matrix), ``"affine"`` (that matrix and a bias of width e) or
            ``"pad"`` (zeros appended).

    Parameters: ``v * r + r * e`` (linear), ``v * r + r * e + e`` (affine) or ``v * r`` (pad).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, low_dim: int, projection: str = "linear", *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.low_dim = check_int("low_dim", low_dim, 1, self.embedding_dim)
        self.projection = check_choice("projection", projection, PROJECTIONS)
        gen = generator(seed)
        self.table = seeded_table(gen, self.num_embeddings, self.low_dim, init_std, check_bool("sparse", sparse))
        self.P = (nn.Parameter(torch.randn(self.low_dim, self.embedding_dim, generator=gen) / self.low_dim**0.5)
                  if projection != "pad" else None)
        # zero: the table starts as the linear projection's (the peer draws nn.Linear's default uniform bias)
        self.bias = nn.Parameter(torch.zeros(self.embedding_dim)) if projection == "affine" else None

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.table(ids)
        if self.P is None:
            return F.pad(x, (0, self.embedding_dim - self.low_dim))
        y = x @ self.P
        return y if self.bias is None else y + self.bias

    @classmethod
    def _size(cls, v: int, d: int, *, low_dim: int, projection: str = "linear", **_: Any) -> tuple[int, int]:
        r = check_int("low_dim", low_dim, 1, d)
        projected = {"linear": r * d, "affine": r * d + d, "pad": 0}[check_choice("projection", projection, PROJECTIONS)]
        return v * r + projected, 0

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, low_dim={self.low_dim}, projection={self.projection}"


__all__ = ["LowDimEmbedding"]
