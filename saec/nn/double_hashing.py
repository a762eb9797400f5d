"""Double hashing and frequency-based double hashing (Zhang et al., RecSys 2020; MEmCom §2.3, §4, §5 (2);
survey §4.1, Algorithm 3 "FDH").

Double hashing looks feature ``i`` up in two tables with two independent hash functions and combines
the two vectors: "we use two hash functions (and embedding layers) instead of one and concatenate their
embeddings" (MEmCom §5). Two features collide only if both hashes agree, so the collision rate drops
from ``v/m - 1 + (1 - 1/m)^v`` to ``v/m^2 - 1 + (1 - 1/m^2)^v`` (MEmCom §4).

Frequency-based double hashing ("hybrid hashing") gives the ``k`` most frequent features rows of their
own and double-hashes only the rest (survey Algorithm 3: "frequent features have unique embeddings").
The frequent features are found as in :mod:`saec.nn.truncate` (ids ``0 .. k-1``, or the top ``k`` by
``counts``).

Hashes are universal, ``((a * i + b) mod p) mod m`` with two seeded (a, b) pairs stored as a (2, 2)
int64 buffer.
"""

from __future__ import annotations

from typing import Any

import torch

from saec.nn.base import (check_bool, check_choice, check_int, generator,
                             hash_coefficients, seeded_table, universal_hash)
from saec.nn.truncate import ChosenIdsConfig, own_rows, top_ids, top_ids_bytes

COMBINES = ("concat", "sum")


def half_dims(embedding_dim: int, combine: str) -> tuple[int, int]:
    """Widths of the two hashed tables: halves of e for ``"concat"``, e each for ``"sum"``."""
    check_choice("combine", combine, COMBINES)
    if combine == "sum":
        return embedding_dim, embedding_dim
    if embedding_dim < 2:
        raise ValueError(f"combine='concat' needs embedding_dim >= 2 to split in two, got {embedding_dim}")
    return (embedding_dim + 1) // 2, embedding_dim // 2


class DoubleHashEmbedding(ChosenIdsConfig):
    """``E[i] = F[i]`` for the ``num_frequent`` most frequent ids, else ``T1[h1(i)] (+) T2[h2(i)]``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_buckets: rows of each hashed table (m), 1 <= m <= v.
        combine: ``"concat"`` (T1, T2 of width ceil(e/2), floor(e/2)) or ``"sum"`` (both of width e).
        num_frequent: features with a row of their own in ``F`` (k), 0 <= k <= v; 0 is plain double
            hashing.
        counts: per-id counts (optional) to choose the frequent features; see :mod:`saec.nn.truncate`.

    Parameters: ``k * e + m * e`` (concat) or ``k * e + 2 * m * e`` (sum). Buffers: 32 bytes of hash
    coefficients, plus ``4 * k`` when ``counts`` reorders the top ids.
    """

    chosen_ids = "frequent_ids"  # what the counts decided, saved by config()

    def __init__(self, num_embeddings: int, embedding_dim: int, num_buckets: int, combine: str = "concat",
                 num_frequent: int = 0, *, counts: Any = None, seed: int = 0, init_std: float = 0.01,
                 sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_buckets = check_int("num_buckets", num_buckets, 1, self.num_embeddings)
        self.num_frequent = check_int("num_frequent", num_frequent, 0, self.num_embeddings)
        self.combine = combine
        e1, e2 = half_dims(self.embedding_dim, combine)
        sparse = check_bool("sparse", sparse)
        gen = generator(seed)
        self.register_buffer("hash_coeffs", hash_coefficients(gen, 2))
        self.T1 = seeded_table(gen, self.num_buckets, e1, init_std, sparse)
        self.T2 = seeded_table(gen, self.num_buckets, e2, init_std, sparse)
        self.F = seeded_table(gen, self.num_frequent, self.embedding_dim, init_std, sparse) if self.num_frequent else None
        self.register_buffer("frequent_ids", top_ids(self.num_embeddings, self.num_frequent, counts))

    def buckets(self, ids: torch.Tensor) -> torch.Tensor:
        """(2, N) rows of ``T1`` and ``T2`` each id reads."""
        return universal_hash(ids, self.hash_coeffs, self.num_buckets)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        h1, h2 = self.buckets(ids)
        a, b = self.T1(h1), self.T2(h2)
        out = torch.cat([a, b], dim=-1) if self.combine == "concat" else a + b
        if self.F is None:
            return out
        frequent, row = own_rows(ids, self.num_frequent, self.frequent_ids)
        return torch.where(frequent.unsqueeze(-1), self.F(row), out)

    @classmethod
    def _size(cls, v: int, d: int, *, num_buckets: int, combine: str = "concat", num_frequent: int = 0,
              counts: Any = None, **_: Any) -> tuple[int, int]:
        m = check_int("num_buckets", num_buckets, 1, v)
        k = check_int("num_frequent", num_frequent, 0, v)
        return k * d + m * sum(half_dims(d, combine)), 32 + top_ids_bytes(v, k, counts)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, num_buckets={self.num_buckets}, "
                f"combine={self.combine}, num_frequent={self.num_frequent}")


__all__ = ["DoubleHashEmbedding"]
