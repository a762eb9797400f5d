"""Truncate rare features (MEmCom §5, the "truncate rare" baseline: "drop the less popular apps").

The ``m`` most frequent features keep rows of their own; every other feature reads one shared row
(the last row, ``m``), so the table is (m + 1) x e.

Which ids are "most frequent": ids are frequency-ranked when the vocabulary is built
(:mod:`saec.data.vocab`), so without ``counts`` they are ids ``0 .. m-1`` and nothing is stored. With
``counts`` they are the top ``m`` by count; if those are not simply ``0 .. m-1`` (the vocabulary grew
since), their sorted ids are kept as an int32 buffer and looked up with ``searchsorted``. The same
helper gives frequency-based double hashing (:mod:`saec.nn.double_hashing`) its frequent features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saec.nn.base import CompressedEmbedding, check_bool, check_counts, check_int, generator, seeded_table


def top_ids(num_embeddings: int, k: int, counts: Any) -> torch.Tensor | None:
    """Sorted int32 ids of the ``k`` most frequent features, or None if they are ``0 .. k-1``.

    Ties are broken by the smaller id (a stable ranking).
    """
    counts = check_counts(counts, num_embeddings)
    if _top_is_prefix(counts, k):
        return None
    return torch.from_numpy(np.sort(np.argsort(-counts, kind="stable")[:k]).astype(np.int32))


def top_ids_bytes(num_embeddings: int, k: int, counts: Any) -> int:
    """Bytes of the :func:`top_ids` buffer (found without sorting)."""
    return 0 if _top_is_prefix(check_counts(counts, num_embeddings), k) else 4 * k


def _top_is_prefix(counts: np.ndarray | None, k: int) -> bool:
    # with ties going to the smaller id, ids 0..k-1 are the top k iff none of them is rarer than a later id
    return counts is None or k == 0 or k == len(counts) or counts[:k].min() >= counts[k:].max()


def indicator_counts(num_embeddings: int, ids: list[int] | None) -> np.ndarray | None:
    """Counts whose top ``len(ids)`` features are exactly ``ids`` (1 there, 0 elsewhere), or None for None.

    Rebuilds a table from its :meth:`~saec.nn.base.CompressedEmbedding.config` without the original counts.
    """
    if ids is None:
        return None
    counts = np.zeros(num_embeddings)
    counts[np.asarray(ids, dtype=np.int64)] = 1.0
    return counts


class ChosenIdsConfig(CompressedEmbedding):
    """Saving for tables whose structure depends on which ids ``counts`` chose to keep rows of their own.

    :meth:`config` adds the buffer named by ``chosen_ids`` (sorted ids, or None for ids 0..k-1) and
    :meth:`from_config` turns it back into counts that choose the same ids.
    """

    chosen_ids: str

    def config(self) -> dict[str, Any]:
        ids = getattr(self, self.chosen_ids)
        return {**super().config(), self.chosen_ids: None if ids is None else ids.tolist()}

    @classmethod
    def from_config(cls, num_embeddings: int, embedding_dim: int, config: dict[str, Any]) -> "ChosenIdsConfig":
        config = dict(config)
        counts = indicator_counts(num_embeddings, config.pop(cls.chosen_ids, None))
        return cls(num_embeddings, embedding_dim, **config, counts=counts)


def own_rows(ids: torch.Tensor, k: int, top: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(is one of the k frequent features, its row in ``[0, k)`` -- clamped, only meaningful where true)."""
    if top is None:
        return ids < k, ids.clamp(max=max(k - 1, 0))
    pos = torch.searchsorted(top, ids).clamp_(max=k - 1)
    return top[pos] == ids, pos


class TruncateEmbedding(ChosenIdsConfig):
    """The ``num_kept`` most frequent features own a row; the rest share row ``num_kept``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_kept: features with a row of their own (m), 0 <= m < v.
        counts: per-id counts (optional); see the module docstring.

    Parameters: ``(m + 1) * e``; plus ``4 * m`` buffer bytes when ``counts`` reorders the top ids.
    """

    chosen_ids = "kept_ids"  # what the counts decided, saved by config()

    def __init__(self, num_embeddings: int, embedding_dim: int, num_kept: int, *, counts: Any = None,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_kept = check_int("num_kept", num_kept, 0, self.num_embeddings - 1)
        self.register_buffer("kept_ids", top_ids(self.num_embeddings, self.num_kept, counts))
        self.T = seeded_table(generator(seed), self.num_kept + 1, self.embedding_dim, init_std,
                              check_bool("sparse", sparse))

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of ``T`` each id reads (``num_kept`` for the shared row)."""
        kept, row = own_rows(ids, self.num_kept, self.kept_ids)
        return torch.where(kept, row, self.num_kept)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.T(self.rows(ids))

    @classmethod
    def _size(cls, v: int, d: int, *, num_kept: int, counts: Any = None, **_: Any) -> tuple[int, int]:
        m = check_int("num_kept", num_kept, 0, v - 1)
        return (m + 1) * d, top_ids_bytes(v, m, counts)

    def extra_repr(self) -> str:
        order = "by counts" if self.kept_ids is not None else "ids 0..m-1"
        return f"{self.num_embeddings}, {self.embedding_dim}, num_kept={self.num_kept} ({order})"


__all__ = ["TruncateEmbedding", "indicator_counts", "own_rows", "top_ids", "top_ids_bytes"]
