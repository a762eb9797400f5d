"""Factorized embedding parameterization (ALBERT, Lan et al. 2019; MEmCom §2.2 and §5 (7)).

The v x e table is the product of a v x h table and an h x e projection, ``E = U V`` with h << e::

    E[i] = U[i] @ V

It keeps a unique vector per feature but ignores how often features occur (MEmCom §4's table: "unique
vector: yes, power-law: no"). ``U`` is drawn from N(0, init_std^2) and ``V`` from N(0, 1/h), so rows of
``E`` start with about the spread of a full table drawn with ``init_std``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from saec.nn.base import CompressedEmbedding, check_bool, check_int, generator, seeded_table


class FactorizedEmbedding(CompressedEmbedding):
    """Low-rank table ``E[i] = U[i] @ V`` with ``U`` (v x h) and ``V`` (h x e).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        hidden: inner dimension (h), >= 1 (the paper halves it from 128 down; h < e to compress).

    Parameters: ``v * h + h * e``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, hidden: int, *, seed: int = 0,
                 init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.hidden = check_int("hidden", hidden, 1)
        gen = generator(seed)
        self.U = seeded_table(gen, self.num_embeddings, self.hidden, init_std, check_bool("sparse", sparse))
        self.V = nn.Parameter(torch.randn(self.hidden, self.embedding_dim, generator=gen) / self.hidden**0.5)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.U(ids) @ self.V

    @classmethod
    def _size(cls, v: int, d: int, *, hidden: int, **_: Any) -> tuple[int, int]:
        h = check_int("hidden", hidden, 1)
        return v * h + h * d, 0

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, hidden={self.hidden}"


__all__ = ["FactorizedEmbedding"]
