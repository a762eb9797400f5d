"""Quotient-remainder trick (Shi et al. 2019; MEmCom §2.3, §4 Algorithm 1, §5 (3); survey §4.1).

Feature ``i`` reads the remainder table ``U`` (m x e) at ``j = i mod m`` and the quotient table ``V``
(ceil(v/m) x e) at ``k = i // m``, and the two vectors are composed::

    E[i] = U[j] * V[k]          # "mult", Algorithm 1
    E[i] = U[j] + V[k]          # "add", the survey's QR in Algorithm 3
    E[i] = [U[j], V[k]]         # "concat": U and V have widths ceil(e/2), floor(e/2)

Every id has a distinct (j, k) pair, so no two features share their whole vector.

``U`` is drawn from N(0, init_std^2); for ``"mult"`` ``V`` starts at 1 and for ``"add"`` at 0, so an
untrained table is naive hashing ``U[i mod m]``; for ``"concat"`` both halves are drawn.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from saec.nn.double_hashing import half_dims
from saec.nn.base import (CompressedEmbedding, check_bool, check_choice, check_int, constant_table, generator,
                             seeded_table)

OPERATIONS = ("mult", "add", "concat")


def _widths(d: int, operation: str) -> tuple[int, int]:
    check_choice("operation", operation, OPERATIONS)
    return half_dims(d, "concat") if operation == "concat" else (d, d)


class QREmbedding(CompressedEmbedding):
    """Quotient-remainder table: ``E[i] = U[i mod m] (op) V[i // m]``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_buckets: rows of the remainder table ``U`` (m), 1 <= m <= v; ``V`` has ceil(v/m) rows.
        operation: ``"mult"`` (element-wise product, Algorithm 1), ``"add"`` or ``"concat"``.

    Parameters: ``(m + ceil(v/m)) * e`` for mult and add; ``m * ceil(e/2) + ceil(v/m) * floor(e/2)`` for
    concat. The size is smallest at m ~ sqrt(v) and grows with m from there.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_buckets: int, operation: str = "mult", *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_buckets = check_int("num_buckets", num_buckets, 1, self.num_embeddings)
        self.operation = operation
        e1, e2 = _widths(self.embedding_dim, operation)
        q = math.ceil(self.num_embeddings / self.num_buckets)
        sparse = check_bool("sparse", sparse)
        gen = generator(seed)
        self.U = seeded_table(gen, self.num_buckets, e1, init_std, sparse)
        if operation == "concat":
            self.V = seeded_table(gen, q, e2, init_std, sparse)
        else:
            self.V = constant_table(torch.full((q, e2), 1.0 if operation == "mult" else 0.0), sparse)

    def indices(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(remainder j, quotient k) of every id."""
        return ids % self.num_buckets, torch.div(ids, self.num_buckets, rounding_mode="floor")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        j, k = self.indices(ids)
        x_rem, x_quo = self.U(j), self.V(k)
        if self.operation == "mult":
            return x_rem * x_quo
        if self.operation == "add":
            return x_rem + x_quo
        return torch.cat([x_rem, x_quo], dim=-1)

    @classmethod
    def _size(cls, v: int, d: int, *, num_buckets: int, operation: str = "mult", **_: Any) -> tuple[int, int]:
        m = check_int("num_buckets", num_buckets, 1, v)
        e1, e2 = _widths(d, operation)
        return m * e1 + math.ceil(v / m) * e2, 0

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, num_buckets={self.num_buckets}, "
                f"quotient_rows={self.V.num_embeddings}, operation={self.operation}")


__all__ = ["QREmbedding"]
