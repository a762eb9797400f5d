"""The uncompressed reference: one trainable row per feature, as ``nn.Embedding`` (MEmCom §5's baseline).

It lives behind the :class:`~saec.nn.base.CompressedEmbedding` contract so that a sweep, the factory and
saved models treat the reference exactly like every compressed method (same initialisation, same
size accounting).
"""

from __future__ import annotations

from typing import Any

import torch

from saec.nn.base import CompressedEmbedding, check_bool, generator, seeded_table


class FullEmbedding(CompressedEmbedding):
    """An uncompressed v x e table ``T``: ``E[i] = T[i]``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        seed, init_std: ``T`` is drawn from N(0, init_std^2) with a generator seeded by ``seed``.
        sparse: sparse gradients.

    Parameters: ``v * e``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, seed: int = 0, init_std: float = 0.01,
                 sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.T = seeded_table(generator(seed), self.num_embeddings, self.embedding_dim, init_std,
                              check_bool("sparse", sparse))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.T(ids)

    @classmethod
    def _size(cls, v: int, d: int, **_: Any) -> tuple[int, int]:
        return v * d, 0


__all__ = ["FullEmbedding"]
