"""TT-Rec: tensor-train embedding tables (Yin et al., MLSys 2021; MEmCom §5; survey §4.3, Fig. 6).

The v x e table is read as a tensor of shape (n_1 e_1) x ... x (n_K e_K) with ``prod n_k >= v`` (rows
past v are never read) and ``prod e_k = e``, and stored as K TT-cores ``G_k`` of shape
(r_{k-1}, n_k, e_k, r_k), with TT-ranks ``r_0 = r_K = 1`` and ``r_k = rank`` between. Row ``i`` with
mixed-radix digits (i_1, ..., i_K), ``i = sum_k i_k prod_{l>k} n_l``, is the chain of matrix products::

    E[i] = reshape(G_1[:, i_1] G_2[:, i_2] ... G_K[:, i_K], e)     # (1, e_1, r_1) (r_1, e_2, r_2) ...

computed with one batched matmul per core, for the distinct prefixes (i_1, ..., i_k) of the batch's
distinct ids: the partial product up to core k is shared by every id with that prefix, so a middle core
contributes ``min(distinct ids, n_1 ... n_k) x r^2 e_k`` gathered numbers rather than one ``r^2 e_k``
block per lookup (on a 3,020-id table, all ids at rank 64: ~26x faster forward+backward than per
lookup, ~3x faster than per distinct id). Each core is stored
as an ``nn.Embedding`` of n_k rows of r_{k-1} e_k r_k numbers (so sparse gradients work as for any
table).

Factor shapes, unless given: row factors are near-equal with ``prod n_k >= v`` (n_k = ceil of the
K-th root of what is left), dimension factors the divisors of e closest to its K-th root (64 -> 4 x 4
x 4, 16 -> 2 x 2 x 4). Cores are drawn from N(0, s^2) with ``s = (init_std^2 / rank^(K-1))^(1/2K)``,
so rows start with about the spread of a full table drawn with ``init_std`` (a choice of this
implementation; TT-Rec compares several core initialisations).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from saec.nn.base import CompressedEmbedding, check_bool, check_float, check_int, generator, seeded_table


def _ceil_root(x: int, k: int) -> int:
    """Smallest integer r with r**k >= x."""
    r = max(1, round(x ** (1.0 / k)))
    while r**k < x:
        r += 1
    while r > 1 and (r - 1) ** k >= x:
        r -= 1
    return r


def row_factorization(v: int, num_cores: int) -> list[int]:
    """Near-equal n_1 >= ... with ``prod n_k >= v``."""
    factors, left = [], v
    for k in range(num_cores, 0, -1):
        n = _ceil_root(left, k)
        factors.append(n)
        left = -(-left // n)
    return factors


def dim_factorization(d: int, num_cores: int) -> list[int]:
    """``num_cores`` divisors with product exactly ``d``, each the divisor closest to the K-th root of the rest."""
    factors, left = [], d
    for k in range(num_cores, 1, -1):
        target = left ** (1.0 / k)
        f = min((f for f in range(1, left + 1) if left % f == 0), key=lambda f: (abs(f - target), f))
        factors.append(f)
        left //= f
    return factors + [left]


def tt_shapes(v: int, d: int, rank: int, num_cores: int, row_factors: Sequence[int] | None,
              dim_factors: Sequence[int] | None) -> tuple[list[int], list[int], list[int]]:
    """(row factors n_k, dimension factors e_k, ranks r_0..r_K), checked."""
    check_int("rank", rank, 1)
    K = check_int("num_cores", num_cores, 2)
    rows = row_factorization(v, K) if row_factors is None else _factors("row_factors", row_factors, K)
    dims = dim_factorization(d, K) if dim_factors is None else _factors("dim_factors", dim_factors, K)
    if math.prod(rows) < v:
        raise ValueError(f"row_factors {rows} multiply to {math.prod(rows)} < num_embeddings={v}")
    if math.prod(dims) != d:
        raise ValueError(f"dim_factors {dims} multiply to {math.prod(dims)}, not embedding_dim={d}")
    return rows, dims, [1] + [int(rank)] * (K - 1) + [1]


def _factors(name: str, factors: Sequence[int], K: int) -> list[int]:
    if isinstance(factors, (str, bytes)) or len(factors) != K:
        raise ValueError(f"{name} must be {K} positive integers (one per core, num_cores={K}), got {factors!r}")
    return [check_int(name, f, 1) for f in factors]


class TTEmbedding(CompressedEmbedding):
    """Tensor-train table: ``E[i] = G_1[:, i_1] ... G_K[:, i_K]`` reshaped to e.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        rank: inner TT-rank r (TT-Rec sweeps e.g. 8 to 64).
        num_cores: K >= 2 (TT-Rec uses 3).
        row_factors, dim_factors: explicit n_k (product >= v) and e_k (product = e), K each.

    Parameters: ``sum_k r_{k-1} * n_k * e_k * r_k``, i.e. ``r * (n_1 e_1 + n_K e_K) + r^2 * sum of the
    middle n_k e_k``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int = 8, num_cores: int = 3,
                 row_factors: Sequence[int] | None = None, dim_factors: Sequence[int] | None = None, *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.row_factors, self.dim_factors, self.ranks = tt_shapes(
            self.num_embeddings, self.embedding_dim, rank, num_cores, row_factors, dim_factors)
        self.rank, self.num_cores = int(rank), int(num_cores)
        K = self.num_cores
        std = (check_float("init_std", init_std, 0.0, math.inf) ** 2 / self.rank ** (K - 1)) ** (1.0 / (2 * K))
        sparse = check_bool("sparse", sparse)
        gen = generator(seed)
        self.cores = nn.ModuleList(
            seeded_table(gen, n, self.ranks[k] * e * self.ranks[k + 1], std, sparse)
            for k, (n, e) in enumerate(zip(self.row_factors, self.dim_factors)))
        self.strides = [math.prod(self.row_factors[k + 1:]) for k in range(K)]

    def digits(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Mixed-radix digits (i_1, ..., i_K) of every id."""
        return [torch.div(ids, s, rounding_mode="floor") % n for s, n in zip(self.strides, self.row_factors)]

    def core(self, k: int) -> torch.Tensor:
        """Core k as a (r_{k-1}, n_k, e_k, r_k) tensor."""
        n, e = self.row_factors[k], self.dim_factors[k]
        return self.cores[k].weight.view(n, self.ranks[k], e, self.ranks[k + 1]).transpose(0, 1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        # Work is shared at every level of the chain, not only per distinct id: the partial product
        # G_1[:, i_1] ... G_k[:, i_k] depends only on the prefix (i_1, ..., i_k), and a batch of distinct
        # ids has far fewer distinct prefixes than ids (at most n_1 ... n_k). So each level multiplies the
        # distinct prefixes of the level before by their next core once; the r^2-sized middle cores are
        # gathered once per distinct prefix instead of once per id. Autograd through the gathers sums
        # the gradients of repeated prefixes and ids, so gradients are those of the per-lookup product.
        unique, inverse = torch.unique(ids, return_inverse=True)
        return self._rows(unique)[inverse]

    def _rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of the sorted distinct ``ids`` (any 1-d ids give the same rows; duplicates cost more)."""
        out = torch.ones(1, 1, 1, dtype=self.cores[0].weight.dtype, device=ids.device)  # (prefixes, e_1.., r_{k-1})
        parents = None  # distinct prefixes (i_1, ..., i_{k-1}) as numbers, sorted
        width = 1
        for k, (stride, n) in enumerate(zip(self.strides, self.row_factors)):
            last = k == self.num_cores - 1
            prefixes = ids if last else torch.unique(torch.div(ids, stride, rounding_mode="floor"))
            if parents is None:
                parent = torch.zeros_like(prefixes)
            else:
                parent = torch.searchsorted(parents, torch.div(prefixes, n, rounding_mode="floor"))
            e, r = self.dim_factors[k], self.ranks[k + 1]
            g = self.cores[k](prefixes % n).view(len(prefixes), self.ranks[k], e * r)
            width *= e
            out = torch.bmm(out[parent], g).view(len(prefixes), width, r)
            parents = prefixes
        return out.view(len(ids), self.embedding_dim)

    @classmethod
    def _size(cls, v: int, d: int, *, rank: int = 8, num_cores: int = 3, row_factors: Sequence[int] | None = None,
              dim_factors: Sequence[int] | None = None, **_: Any) -> tuple[int, int]:
        rows, dims, ranks = tt_shapes(v, d, rank, num_cores, row_factors, dim_factors)
        return sum(ranks[k] * n * e * ranks[k + 1] for k, (n, e) in enumerate(zip(rows, dims))), 0

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}, row_factors={self.row_factors}, "
                f"dim_factors={self.dim_factors}")


__all__ = ["TTEmbedding", "dim_factorization", "row_factorization"]
