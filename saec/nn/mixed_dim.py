"""Mixed dimension embeddings, popularity-based (Ginart et al., ISIT 2021; MEmCom §5; survey §3.1).

The frequency-ranked ids are cut into ``K`` blocks; block ``k`` is an ``n_k x d_k`` table whose vectors
are projected to the field dimension e by a learned ``d_k x e`` matrix (none when ``d_k = e``).
Popular blocks get wide vectors, rare ones narrow vectors, by the power-law rule of the MDE paper
(survey §3.1: "d_bar p_i^alpha / ||p||_inf^alpha")::

    d_k = round(base_dim * (p_k / max_k p_k) ** alpha),   clipped to [1, e]

with ``p_k`` the popularity of a feature in block ``k``: the mean count of its features when
``counts`` is given, else ``1 / n_k`` (the MDE rule for blocks whose features are equally popular).
``alpha = 0`` gives every block ``base_dim``; larger ``alpha`` shrinks rare blocks faster.

Block boundaries (a choice of this implementation; MDE leaves the blocking to the user) are geometric,
``round(v ** (k / K))`` for k = 1 .. K-1, so the head of a power-law is a small block and the tail a
large one (v = 10^6, K = 4: 32, 1000, 31623 boundaries). Ids are frequency-ranked
(:mod:`saec.data.vocab`), so the blocks are id ranges and nothing per id is stored.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from saec.nn.base import (CompressedEmbedding, check_bool, check_counts, check_float, check_int, generator,
                             seeded_table)


def block_plan(v: int, d: int, base_dim: int | None, num_blocks: int, alpha: float,
               counts: Any = None, dims: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """(offsets: K + 1 block boundaries from 0 to v, dims: K block dimensions) for these hyperparameters.

    Explicit ``dims`` (K widths in [1, d]) replace the popularity rule (then ``counts`` is not used).
    """
    base_dim = d if base_dim is None else check_int("base_dim", base_dim, 1, d)
    K = check_int("num_blocks", num_blocks, 1, v)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    counts = check_counts(counts, v)
    offsets = [0]
    for k in range(1, K):
        offsets.append(min(max(round(v ** (k / K)), offsets[-1] + 1), v - (K - k)))
    offsets.append(v)
    sizes = np.diff(offsets)
    if dims is not None:
        if isinstance(dims, (str, bytes)) or len(dims) != K:
            raise ValueError(f"dims must be {K} integers in [1, {d}] (one per block, num_blocks={K}), got {dims!r}")
        return offsets, [check_int("dims", x, 1, d) for x in dims]
    if counts is not None and counts.sum() > 0:
        p = np.add.reduceat(counts, offsets[:-1]) / sizes
    else:
        p = 1.0 / sizes
    dims = [min(d, max(1, math.floor(base_dim * (pk / p.max()) ** alpha + 0.5))) for pk in p]
    return offsets, dims


# -- blocks of rows projected to the field width (shared with saec.nn.freq_dim) ------------------------
def projected_blocks(gen: torch.Generator, shapes: Sequence[tuple[int, int]], e: int, init_std: float,
                     sparse: bool) -> tuple[nn.ModuleList, nn.ParameterDict]:
    """Block k of ``shapes`` (rows n_k, width d_k, 1 <= d_k <= e): an ``n_k x d_k`` table drawn from
    N(0, init_std^2) and, when ``d_k < e``, a bias-free ``d_k x e`` projection drawn from N(0, 1 / d_k) right
    after it (so a block's vectors start at the scale of a full-width row). Returns (the tables, the
    projections keyed by ``str(k)``; a full-width block has none)."""
    tables, projections = nn.ModuleList(), nn.ParameterDict()
    for k, (n_k, d_k) in enumerate(shapes):
        tables.append(seeded_table(gen, n_k, d_k, init_std, sparse))
        if d_k < e:
            projections[str(k)] = nn.Parameter(torch.randn(d_k, e, generator=gen) / d_k**0.5)
    return tables, projections


def block_vectors(tables: nn.ModuleList, projections: nn.ParameterDict, k: int, rows: torch.Tensor) -> torch.Tensor:
    """The e-wide vectors of ``rows`` of block ``k`` (its table's rows, projected if narrower than e)."""
    x = tables[k](rows)
    return x @ projections[str(k)] if str(k) in projections else x


def blocks_params(shapes: Sequence[tuple[int, int]], e: int) -> int:
    """Parameters of :func:`projected_blocks`: ``sum_k n_k d_k + sum_{k: d_k < e} d_k e``."""
    return sum(n * dk for n, dk in shapes) + sum(dk * e for _, dk in shapes if dk < e)


class MixedDimEmbedding(CompressedEmbedding):
    """Blocks of frequency-ranked ids with decreasing dimensions, each projected to e.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width the table gives (e).
        base_dim: dimension of the most popular block (d_bar), 1 <= d_bar <= e; default e.
        num_blocks: K, 1 <= K <= v (K = 1 is a single d_bar-wide table plus projection).
        alpha: temperature in [0, 1].
        counts: per-id counts (optional) for the block popularities.
        dims: explicit block dimensions (K integers in [1, e]) instead of the popularity rule; a saved
            table is rebuilt from them (:meth:`config`), since they depend on the ``counts`` it was built with.

    Parameters: ``sum_k n_k * d_k + sum_{k: d_k < e} d_k * e``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, base_dim: int | None = None, num_blocks: int = 4,
                 alpha: float = 0.5, dims: Sequence[int] | None = None, *, counts: Any = None, seed: int = 0, init_std: float = 0.01,
                 sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.offsets, self.dims = block_plan(self.num_embeddings, self.embedding_dim, base_dim, num_blocks,
                                             alpha, counts, dims)
        self.base_dim = self.embedding_dim if base_dim is None else int(base_dim)
        self.num_blocks, self.alpha = int(num_blocks), float(alpha)
        sparse = check_bool("sparse", sparse)
        shapes = list(zip(np.diff(self.offsets).tolist(), self.dims))
        self.tables, self.projections = projected_blocks(generator(seed), shapes, self.embedding_dim, init_std, sparse)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        positions, vectors = [], []
        for k in range(len(self.tables)):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            pos = ((ids >= lo) & (ids < hi)).nonzero().squeeze(1)
            positions.append(pos)
            vectors.append(block_vectors(self.tables, self.projections, k, ids[pos] - lo))
        out = torch.zeros(len(ids), self.embedding_dim, dtype=vectors[0].dtype, device=ids.device)
        return out.index_copy(0, torch.cat(positions), torch.cat(vectors))

    @classmethod
    def _size(cls, v: int, d: int, *, base_dim: int | None = None, num_blocks: int = 4, alpha: float = 0.5,
              dims: Sequence[int] | None = None, counts: Any = None, **_: Any) -> tuple[int, int]:
        offsets, dims = block_plan(v, d, base_dim, num_blocks, alpha, counts, dims)
        return blocks_params(list(zip(np.diff(offsets).tolist(), dims)), d), 0

    def extra_repr(self) -> str:
        blocks = ", ".join(f"{n}x{dk}" for n, dk in zip(np.diff(self.offsets).tolist(), self.dims))
        return f"{self.num_embeddings}, {self.embedding_dim}, alpha={self.alpha}, blocks=[{blocks}]"


__all__ = ["MixedDimEmbedding", "block_plan", "block_vectors", "blocks_params", "projected_blocks"]
