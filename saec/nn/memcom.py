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

from typing import Any, NamedTuple

import numpy as np
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


class Uniqueness(NamedTuple):
    """How many features of a MEmCom table that share a ``U`` row still get embeddings of their own (App. A.4).

    Attributes:
        pairs: pairs of features sharing a ``U`` row.
        distinct_pairs: those whose multipliers (``V``, and ``W`` with bias) differ by more than ``tol``.
        features: features sharing their ``U`` row with at least one other.
        unique_features: those whose multipliers differ by more than ``tol`` from every row-mate's.
    """

    pairs: int
    distinct_pairs: int
    features: int
    unique_features: int

    @property
    def pair_fraction(self) -> float:
        """Share of row-sharing pairs that differ (the paper's 99.98%); 1.0 if no row is shared."""
        return self.distinct_pairs / self.pairs if self.pairs else 1.0

    @property
    def feature_fraction(self) -> float:
        """Share of row-sharing features with a unique embedding; 1.0 if no row is shared."""
        return self.unique_features / self.features if self.features else 1.0


def unique_embeddings(table: MEmComEmbedding, tol: float = 1e-5, ids: Any = None,
                      chunk: int = 1 << 20) -> Uniqueness:
    """Count the features sharing a ``U`` row whose multipliers still differ (MEmCom App. A.4).

    Two features ``a, b`` with ``a mod m == b mod m`` differ if ``|V[a] - V[b]| > tol`` or, with bias,
    ``|W[a] - W[b]| > tol`` (the paper: "differed by greater than 0.00001"). Then their embeddings
    ``U[j] V[a] (+ W[a])`` differ unless ``U[j]`` is zero.

    Args:
        table: a (trained) MEmCom table.
        tol: the difference below which two multipliers count as equal.
        ids: the features to look at (e.g. those seen in training); default all.
        chunk: candidate pairs checked at once (bounds memory when many multipliers are equal).
    """
    if not isinstance(table, MEmComEmbedding):
        raise TypeError(f"table must be a MEmComEmbedding, got {type(table).__name__}")
    tol = float(tol)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    v = table.num_embeddings
    if ids is None:
        ids = np.arange(v)
    else:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(ids) and (ids[0] < 0 or ids[-1] >= v):
            raise ValueError(f"ids must lie in [0, {v}), got values in [{ids[0]}, {ids[-1]}]")
    mult = table.V.weight.detach().double().numpy()[ids, 0]
    bias = table.W.weight.detach().double().numpy()[ids, 0] if table.W is not None else None
    bucket = ids % table.num_buckets
    sizes = np.bincount(bucket, minlength=table.num_buckets)
    pairs = int((sizes * (sizes - 1) // 2).sum())
    features = int(sizes[sizes > 1].sum())
    if not len(ids):
        return Uniqueness(0, 0, 0, 0)
    # Sort by (row, multiplier) and put rows on disjoint stretches of one axis, so the row-mates within
    # tol of each feature's multiplier are the next few places: one searchsorted finds them all.
    order = np.lexsort((mult, bucket))
    b, x = bucket[order], mult[order]
    w = bias[order] if bias is not None else None
    span = float(x.max() - x.min()) + 2 * tol + 1.0
    key = np.unique(b, return_inverse=True)[1] * span + (x - x.min())
    hi = np.searchsorted(key, key + tol + 4 * np.spacing(key), side="right")  # candidates of i: i+1 .. hi[i]-1
    n_cand = hi - np.arange(len(key)) - 1
    shared = np.zeros(len(key), dtype=bool)  # has an equal row-mate
    equal_pairs = 0
    starts = np.flatnonzero(n_cand)
    for sel in np.array_split(starts, max(1, -(-int(n_cand.sum()) // chunk))):  # ~chunk candidate pairs each
        reps = n_cand[sel]
        first = np.repeat(sel, reps)
        second = first + 1 + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
        # the key's spacing is ~1e-16 relative: recheck tol on the multipliers themselves
        close = np.abs(x[second] - x[first]) <= tol
        if w is not None:
            close &= np.abs(w[second] - w[first]) <= tol
        equal_pairs += int(close.sum())
        shared[first[close]] = True
        shared[second[close]] = True
    return Uniqueness(pairs, pairs - equal_pairs, features, features - int(shared.sum()))


__all__ = ["MEmComEmbedding", "Uniqueness", "unique_embeddings"]
