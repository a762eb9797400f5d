"""Pooled and padded forms of any compressed table, so it can stand where ``nn.EmbeddingBag`` or an
``nn.Embedding`` with ``padding_idx`` stood (what :func:`saec.compress` puts in a user's model).

:class:`CompressedEmbeddingBag` takes exactly ``nn.EmbeddingBag``'s call: 2-D ``input`` (one bag per
row) or 1-D ``input`` with ``offsets``, ``per_sample_weights`` (mode ``"sum"`` only), modes sum / mean /
max, ``padding_idx`` (those entries are left out of their bag; a bag of nothing but padding is zeros),
``include_last_offset``. The table looks up each id once; pooling is torch's own ``F.embedding_bag``
over the looked-up rows, so gradients reach the table through its own rule (Saec's averaged gradient,
§2.3). A table with a fused pooled lookup (``pooled(ids, offsets, mode, per_sample_weights)``, e.g. the
row-wise integer tables over torch's quantized embedding-bag operators) is asked for it directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_int

MODES = ("sum", "mean", "max")


def _padding(table: CompressedEmbedding, padding_idx: int | None) -> int | None:
    if padding_idx is None:
        return None
    p = int(padding_idx)
    if p < 0:  # nn.Embedding's convention: a negative padding_idx counts from the end
        p += table.num_embeddings
    return check_int("padding_idx", p, 0, table.num_embeddings - 1)


class _TableForm(nn.Module):
    """A compressed ``table`` wrapped to take another module's calls; its ids and width are the table's."""

    def __init__(self, table: CompressedEmbedding, padding_idx: int | None) -> None:
        super().__init__()
        self.table = table
        self.padding_idx = _padding(table, padding_idx)

    @property
    def num_embeddings(self) -> int:
        return self.table.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.table.embedding_dim


class CompressedEmbeddingBag(_TableForm):
    """``nn.EmbeddingBag`` over a :class:`~saec.nn.base.CompressedEmbedding` ``table``.

    Args:
        table: the compressed table (its ``num_embeddings`` and ``embedding_dim`` are this bag's).
        mode: ``"sum"``, ``"mean"`` or ``"max"``.
        padding_idx: id left out of every bag (``None``: none).
        include_last_offset: ``offsets`` has one entry more than there are bags, as in ``nn.EmbeddingBag``.
    """

    def __init__(self, table: CompressedEmbedding, mode: str = "mean", padding_idx: int | None = None,
                 include_last_offset: bool = False) -> None:
        if mode not in MODES:
            raise SaecError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(table, padding_idx)
        self.mode = mode
        self.include_last_offset = bool(include_last_offset)

    def forward(self, input: torch.Tensor, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        label = self.table.label  # called only to word an error
        if input.dim() == 2:
            if offsets is not None:
                raise SaecError(f"{label()}: offsets must be None when input is 2-D (one bag per row), as for "
                                f"nn.EmbeddingBag")
            bags, length = input.shape
            flat = input.reshape(-1)
            starts = torch.arange(0, bags * length, length, dtype=torch.long) if length else torch.zeros(bags, dtype=torch.long)
        elif input.dim() == 1:
            if offsets is None or offsets.dim() != 1:
                raise SaecError(f"{label()}: 1-D input needs 1-D offsets (the start of every bag), as for nn.EmbeddingBag")
            flat, starts = input, offsets.long()
            if self.include_last_offset:
                starts = starts[:-1]
            if len(starts) and bool((starts[0] != 0) | (starts[-1] > len(flat)) | (starts[1:] < starts[:-1]).any()):
                raise SaecError(f"{label()}: offsets must start at 0, never decrease and stay within the "
                                f"{len(flat)} ids, got {offsets.tolist()[:10]}")
            bags = len(starts)
        else:
            raise SaecError(f"{label()}: input must be 1-D (with offsets) or 2-D, got shape {tuple(input.shape)}")
        weights = None
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise SaecError(f"{label()}: per_sample_weights are only supported for mode='sum', as for "
                                f"nn.EmbeddingBag (this bag's mode is {self.mode!r})")
            if per_sample_weights.shape != input.shape:
                raise SaecError(f"{label()}: per_sample_weights must have the input's shape {tuple(input.shape)}, "
                                f"got {tuple(per_sample_weights.shape)}")
            weights = per_sample_weights.reshape(-1)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            if not bool(keep.all()):  # drop padding entries; each bag now starts at its count of kept entries
                kept_before = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.long().cumsum(0)])
                starts = kept_before[starts]
                flat = flat[keep]
                weights = None if weights is None else weights[keep]
        if not len(flat) or not bags:
            return torch.zeros(bags, self.embedding_dim)
        pooled = getattr(self.table, "pooled", None)
        if pooled is not None:
            self.table.check_ids(flat)
            return pooled(flat, starts, self.mode, weights)
        rows = self.table(flat)
        return F.embedding_bag(torch.arange(len(flat)), rows, starts, mode=self.mode, per_sample_weights=weights)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, padding_idx={self.padding_idx}"


class PaddedEmbedding(_TableForm):
    """A compressed ``table`` in an ``nn.Embedding(padding_idx=p)``'s place: id ``p`` gives zeros.

    A full table's padding row is zeros and never trained; a compressed table would give it some
    shared vector (its cluster's centroid, a hash bucket), so the padding id is answered here.
    """

    def __init__(self, table: CompressedEmbedding, padding_idx: int) -> None:
        super().__init__(table, padding_idx)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.table(ids)
        pad = ids == self.padding_idx
        return out.masked_fill(pad.unsqueeze(-1), 0.0) if bool(pad.any()) else out

    def extra_repr(self) -> str:
        return f"padding_idx={self.padding_idx}"


__all__ = ["CompressedEmbeddingBag", "MODES", "PaddedEmbedding"]
