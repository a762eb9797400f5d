"""MEmCom: multi-embedding compression (Pansare et al., MLSys 2022, §4, Algorithms 2 and 3).

Two tables trained jointly: ``U`` (m x e) shared through hashing, and ``V`` (v x 1), one trainable
multiplier per feature, broadcast over ``U``'s row. With bias (Algorithm 3) a third table ``W`` (v x 1)
adds one trainable offset per feature::

    j = i mod m                       # ids are frequency-ranked, so the m most frequent ids own a row
    E[i] = U[j] * V[i]                # Algorithm 2 (no bias)
    E[i] = U[j] * V[i] + W[i]         # Algorithm 3 (with bias)

The paper's Algorithm 3 listing reads ``x_rem = U_i``; the hashed ``j`` is meant (Algorithm 2 and the
survey's §4.1 both index ``U`` by ``id % m``). Features sharing ``U[j]`` stay distinct through their own
``V[i]`` (the paper's App. A.4 finds them distinct in 99.98% of pairs).

``V`` starts at 1 and ``W`` at 0, so an untrained MEmCom table equals naive hashing (the paper does not
give an initialisation).
"""

from __future__ import annotations

from typing import Any

import torch

from saec.nn.base import CompressedEmbedding, check_bool, check_int, constant_table, generator, seeded_table


class MEmComEmbedding(CompressedEmbedding):
    """MEmCom table: ``E[i] = U[i mod m] * V[i] (+ W[i])``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_buckets: rows of ``U`` (m), 1 <= m <= v.
        bias: add the per-feature offset ``W`` (Algorithm 3).
        seed, init_std: ``U`` is drawn from N(0, init_std^2) with a generator seeded by ``seed``.
        sparse: sparse gradients for all three tables.

    Parameters: ``m * e + v`` (Algorithm 2), ``m * e + 2 * v`` (Algorithm 3).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_buckets: int, bias: bool = False, *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_buckets = check_int("num_buckets", num_buckets, 1, self.num_embeddings)
        self.bias = check_bool("bias", bias)
        sparse = check_bool("sparse", sparse)
        self.U = seeded_table(generator(seed), self.num_buckets, self.embedding_dim, init_std, sparse)
        self.V = constant_table(torch.ones(self.num_embeddings, 1), sparse)
        self.W = constant_table(torch.zeros(self.num_embeddings, 1), sparse) if self.bias else None

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x_rem, x_mult = self.U(ids % self.num_buckets), self.V(ids)
        out = x_rem * x_mult
        return out + self.W(ids) if self.W is not None else out

    @classmethod
    def _size(cls, v: int, d: int, *, num_buckets: int, bias: bool = False, **_: Any) -> tuple[int, int]:
        m = check_int("num_buckets", num_buckets, 1, v)
        return m * d + v * (2 if check_bool("bias", bias) else 1), 0

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, num_buckets={self.num_buckets}, bias={self.bias}"


__all__ = ["MEmComEmbedding"]
