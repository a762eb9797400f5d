"""Frequency groups with predefined dimensions (CpRec, Sun et al., SIGIR 2020; survey §3.1 "Rule-based approaches").

The survey: CpRec "divides the items into several groups by frequency and assigns a predefined dimension to
each group according to the frequencies of owned features". The rule implemented here:

1. **Rank** the features by count, most frequent first (ties: the smaller id first, a stable ranking, as
   :func:`saec.nn.truncate.top_ids`). Without ``counts`` the ids are taken as frequency-ranked (id 0 the most
   frequent, as :mod:`saec.data.vocab` builds them) with Zipf's law counts ``1 / (rank + 1)`` for the shares.
2. **Group by cumulative share.** With ``shares = (s_1 < ... < s_{K-1})`` in (0, 1), the feature of rank j
   goes to group ``g_j = #{k : S_j >= s_k}``, where ``S_j`` is the share of all observations held by the
   features ranked before it. So group 1 (index 0) is the smallest set of top features holding at least s_1
   of the observations (the feature that crosses s_1 included), group 2 the next ones up to s_2, and so on;
   the last group is the rest. A group may be empty (one feature holding more than s_2 - s_1 on its own).
   All-zero counts are read as equal counts.
3. **Predefined dimensions.** Group k gets ``d_k = floor(base_dim * fractions[k])``, by default
   ``fractions = (1, 1/2, 1/4, ...)``: base_dim, base_dim/2, base_dim/4, base_dim/8 for four groups (CpRec's
   halving from block to block), or explicit ``dims`` (non-increasing, in [0, e]). Group k is an
   ``n_k x d_k`` table whose rows are projected to the field width e by a learned bias-free ``d_k x e``
   matrix (none when ``d_k = e``): :func:`saec.nn.mixed_dim.projected_blocks`, the blocks MDE uses too.
4. **Zero width.** A group whose width rounds to 0 keeps no row per feature: all its features share one
   learned e-wide vector (a 1 x e block, no projection), as truncation's rare features do
   (:mod:`saec.nn.truncate`); so a rare group still learns one "rare feature" vector, costing e floats
   (this implementation's choice; returning zeros would leave the network no signal for the group). An
   empty group has no parameters.

The budget knob is ``base_dim`` (1 .. e; the registry tries every value, since a block reaching the full
width loses its projection and sizes are not monotone there). ``base_dim = 1`` with four groups gives the head
group one float per feature and the other groups a shared row each, so a table of a few bytes per row
exists (1/16 of a 16-dim float32 table is 4 bytes per row, which :mod:`saec.nn.mixed_dim` cannot reach:
its blocks are at least 1 wide and cover every id).

How this differs from :mod:`saec.nn.mixed_dim` (MDE): there the blocks are fixed geometric id ranges and the
widths follow a power law of the blocks' popularities (``alpha``); here the groups are cut where the
cumulative frequency share crosses ``shares``, and the widths are the predefined ones.

Where a feature's row is: when every group is an id range (the ids are frequency-ranked, as the vocabulary
makes them, or ``counts`` is None) nothing is stored. Otherwise the ids of every group but the last are kept
sorted in one int32 buffer ``group_ids`` (group after group, 4 bytes per feature outside the last group): a
feature of group k < K-1 reads the row of its position among its group's ids, a feature of
the last group reads row ``id - #{head ids below id}`` (positions found by :func:`count_below`, a binary
search in gathers and comparisons). The lookup computes every group for every id and selects with
``torch.where``: no data-dependent shapes and no searchsorted, so it exports to ONNX as it is.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_bool, check_counts, check_float, check_int, count_below, generator
from saec.nn.mixed_dim import block_vectors, blocks_params, projected_blocks

DEFAULT_SHARES = (0.5, 0.8, 0.95)
"""Four groups: the features holding the top half of the observations, the next 30%, the next 15%, the rest."""


def _sequence(name: str, value: Any) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise SaecError(f"{name} must be a sequence of numbers, got {value!r}")
    return list(value)


def check_shares(shares: Any) -> list[float]:
    """Cumulative shares, strictly increasing in (0, 1) (none: a single group)."""
    out = [check_float("shares", s, 0.0, 1.0, lo_open=True, hi_open=True) for s in _sequence("shares", shares)]
    if any(b <= a for a, b in zip(out, out[1:])):
        raise SaecError(f"shares must be strictly increasing, got {shares!r}")
    return out


def group_dims(d: int, num_groups: int, base_dim: int | None, fractions: Sequence[float] | None,
               dims: Sequence[int] | None) -> list[int]:
    """The K group widths: explicit ``dims``, else ``floor(base_dim * fractions[k])`` (fractions default 2^-k)."""
    K = num_groups
    if dims is not None:
        dims = _sequence("dims", dims)
        if len(dims) != K:
            raise SaecError(f"dims must be {K} integers in [0, {d}] (one per group: len(shares) + 1), got {dims!r}")
        out = [check_int("dims", x, 0, d) for x in dims]
    else:
        base = d if base_dim is None else check_int("base_dim", base_dim, 1, d)
        fr = [2.0**-k for k in range(K)] if fractions is None else _sequence("fractions", fractions)
        if len(fr) != K:
            raise SaecError(f"fractions must be {K} numbers in [0, 1] (one per group: len(shares) + 1), got "
                            f"{fractions!r}")
        out = [math.floor(base * check_float("fractions", f, 0.0, 1.0) + 1e-9) for f in fr]
    if any(b > a for a, b in zip(out, out[1:])):
        raise SaecError(f"group dimensions must not increase from the most to the least frequent group, got {out} "
                        f"(dims or fractions)")
    return out


def group_plan(v: int, shares: Sequence[float], counts: Any = None,
               sizes: Sequence[int] | None = None) -> tuple[list[int], np.ndarray | None]:
    """(K group sizes, the sorted ids of each group but the last concatenated as int32, or None when every
    group is an id range) -- the module docstring's rule. Explicit ``sizes`` (K integers summing to v)
    replace the shares: the groups are then the next ``sizes[k]`` features of the ranking."""
    shares = check_shares(shares)
    K = len(shares) + 1
    counts = check_counts(counts, v)
    order = None if counts is None else np.argsort(-counts, kind="stable")
    if sizes is not None:
        sizes = _sequence("sizes", sizes)
        if len(sizes) != K or sum(check_int("sizes", n, 0, v) for n in sizes) != v:
            raise SaecError(f"sizes must be {K} non-negative integers summing to {v}, got {sizes!r}")
        sizes = [int(n) for n in sizes]
    else:
        w = 1.0 / np.arange(1, v + 1) if counts is None else counts[order]
        if w.sum() == 0:
            w = np.ones(v)
        before = np.concatenate([[0.0], np.cumsum(w)[:-1]])  # observations of the features ranked before
        groups = np.searchsorted(np.asarray(shares) * w.sum(), before, side="right")
        sizes = np.bincount(groups, minlength=K).tolist()
    ends = np.cumsum(sizes)[:-1]
    # every group is an id range iff the features ranked before each boundary are exactly the ids below it
    if order is None or all(n == 0 or order[:n].max() == n - 1 for n in ends):
        return sizes, None
    starts = np.concatenate([[0], ends])
    head = [np.sort(order[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    return sizes, np.concatenate(head).astype(np.int32) if head else np.zeros(0, np.int32)


def _block_shapes(sizes: Sequence[int], dims: Sequence[int], e: int) -> list[tuple[int, int]]:
    """One block per non-empty group: n_k x d_k, or a shared 1 x e row for a zero-width group."""
    return [(n, dk) if dk else (1, e) for n, dk in zip(sizes, dims) if n]


class FrequencyGroupEmbedding(CompressedEmbedding):
    """Features grouped by cumulative frequency share, each group a table of its predefined width projected to e.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width the table gives (e).
        base_dim: width of the most frequent group, 1 <= base_dim <= e (default e); the budget knob.
        shares: K - 1 cumulative observation shares cutting the ranking into K groups (default
            (0.5, 0.8, 0.95)).
        fractions: K widths relative to base_dim, non-increasing in [0, 1] (default 1, 1/2, 1/4, ...).
        dims: explicit K group widths in [0, e], non-increasing, instead of base_dim and fractions.
        sizes: explicit K group sizes instead of the shares (what :meth:`config` saves: the groups depend
            on the ``counts`` the table was built with).
        counts: per-id counts (optional); see the module docstring.

    Parameters: ``sum_k n_k d_k + sum_{k: 0 < d_k < e} d_k e + e * #{k: d_k = 0, n_k > 0}``; plus 4 bytes per
    feature outside the last group when the groups are not id ranges.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, base_dim: int | None = None,
                 shares: Sequence[float] = DEFAULT_SHARES, fractions: Sequence[float] | None = None,
                 dims: Sequence[int] | None = None, sizes: Sequence[int] | None = None, *, counts: Any = None,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.shares = check_shares(shares)
        K = len(self.shares) + 1
        self.dims = group_dims(self.embedding_dim, K, base_dim, fractions, dims)
        e = self.embedding_dim
        self.base_dim = e if base_dim is None else check_int("base_dim", base_dim, 1, e)
        self.fractions = None if fractions is None else [float(f) for f in fractions]
        self.sizes, head = group_plan(self.num_embeddings, self.shares, counts, sizes)
        self.register_buffer("group_ids", None if head is None else torch.from_numpy(head))
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).tolist()  # rank ranges of the groups
        shapes = _block_shapes(self.sizes, self.dims, self.embedding_dim)
        self.tables, self.projections = projected_blocks(generator(seed), shapes, self.embedding_dim, init_std,
                                                         check_bool("sparse", sparse))
        blocks = iter(range(len(shapes)))
        self.block_of = [next(blocks) if n else None for n in self.sizes]  # group -> its block (None: empty)

    def locate(self, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For every group, (is the id in it, its row in the group's table -- clamped, meaningful where true)."""
        K, out = len(self.sizes), []
        if self.group_ids is None:
            for k in range(K):
                lo, hi = self.offsets[k], self.offsets[k + 1]
                out.append(((ids >= lo) & (ids < hi), (ids - lo).clamp(0, max(hi - lo - 1, 0))))
            return out
        below = torch.zeros_like(ids)  # head ids smaller than the id
        outside = torch.ones_like(ids, dtype=torch.bool)
        for k in range(K - 1):
            seg = self.group_ids[self.offsets[k]:self.offsets[k + 1]]
            if len(seg) == 0:
                out.append((torch.zeros_like(outside), torch.zeros_like(ids)))
                continue
            pos = count_below(seg, ids)
            below = below + pos
            pos = pos.clamp(max=len(seg) - 1)
            inside = seg[pos].long() == ids
            outside = outside & ~inside
            out.append((inside, pos))
        out.append((outside, (ids - below).clamp(0, max(self.sizes[-1] - 1, 0))))
        return out

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        out = None
        for k, (inside, row) in enumerate(self.locate(ids)):
            b = self.block_of[k]
            if b is None:
                continue
            x = block_vectors(self.tables, self.projections, b, row if self.dims[k] else torch.zeros_like(row))
            out = x if out is None else torch.where(inside.unsqueeze(-1), x, out)
        return out

    def config(self) -> dict[str, Any]:
        ids = self.group_ids
        return {**super().config(), "group_ids": None if ids is None else ids.tolist()}

    @classmethod
    def from_config(cls, num_embeddings: int, embedding_dim: int, config: dict[str, Any]) -> "FrequencyGroupEmbedding":
        config = dict(config)
        ids, sizes = config.pop("group_ids", None), config.get("sizes")
        counts = None
        if ids is not None:  # counts ranking group 0's ids first, then group 1's, ..., the last group's at 0
            counts = np.zeros(num_embeddings)
            ends = np.cumsum(sizes)
            for k in range(len(sizes) - 1):
                counts[np.asarray(ids[ends[k] - sizes[k]:ends[k]], dtype=np.int64)] = len(sizes) - 1 - k
        return cls(num_embeddings, embedding_dim, **config, counts=counts)

    @classmethod
    def _size(cls, v: int, d: int, *, base_dim: int | None = None, shares: Sequence[float] = DEFAULT_SHARES,
              fractions: Sequence[float] | None = None, dims: Sequence[int] | None = None,
              sizes: Sequence[int] | None = None, counts: Any = None, **_: Any) -> tuple[int, int]:
        shares = check_shares(shares)
        dims = group_dims(d, len(shares) + 1, base_dim, fractions, dims)
        sizes, head = group_plan(v, shares, counts, sizes)
        return blocks_params(_block_shapes(sizes, dims, d), d), 0 if head is None else 4 * len(head)

    def extra_repr(self) -> str:
        groups = ", ".join(f"{n}x{dk}" for n, dk in zip(self.sizes, self.dims))
        order = "id ranges" if self.group_ids is None else "ids by counts"
        return f"{self.num_embeddings}, {self.embedding_dim}, shares={self.shares}, groups=[{groups}] ({order})"


__all__ = ["DEFAULT_SHARES", "FrequencyGroupEmbedding", "check_shares", "count_below", "group_dims", "group_plan"]
