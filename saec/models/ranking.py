"""The ranking networks of MEmCom §5.2: a pointwise softmax ranker and its pairwise RankNet variant.

§5's network (Code 1, Keras) embeds the 128 input items, average-pools them, applies a Dense layer and
a softmax over the output vocabulary; for ranking "the Dense layer following the Average Pooling" is
removed (§5.2), leaving::

    u = mean of E[h] over the non-pad items h of the history         # (B, e)
    scores = u @ W + b                                               # (B, num_items), softmax for training

``E`` is any ``nn.Embedding``-like module (plain ``nn.Embedding`` for the uncompressed model, or a
compressed table from :func:`saec.nn.registry.make_embedding`); everything else is the same for every
method, so the methods differ only in the input table.

The pairwise variant (§5.2, RankNet, Burges et al. 2005) is the same network used as a siamese scorer:
given the history and two item ids it returns the two items' scores ``u . W[:, i] + b[i]``; training
pushes the first above the second with the RankNet loss (:func:`ranknet_loss`), and ranking uses the
scores of all items, as for the pointwise model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from saec.errors import SaecError, SaecTypeError


def _table_shape(embedding: nn.Module) -> tuple[int, int]:
    try:
        return int(embedding.num_embeddings), int(embedding.embedding_dim)
    except AttributeError as exc:
        raise SaecTypeError(f"embedding must be nn.Embedding-like (num_embeddings, embedding_dim), got "
                            f"{type(embedding).__name__}") from exc


class PointwiseRanker(nn.Module):
    """History -> average-pooled item embeddings -> scores of every item (MEmCom §5.2, pointwise).

    Args:
        embedding: the input table; ``num_embeddings`` must be ``num_items + 1`` (the last id pads).
        num_items: size of the output vocabulary (items ``0 .. num_items - 1``).
        seed: seeds the output layer's initialisation (the input table seeds itself).

    Parameter count: the input table's plus ``(e + 1) * num_items`` for the output layer.
    """

    def __init__(self, embedding: nn.Module, num_items: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise SaecError(f"num_items must be an integer >= 1, got {num_items!r}")
        rows, dim = _table_shape(embedding)
        if rows != num_items + 1:
            raise SaecError(f"the input table must have num_items + 1 = {num_items + 1} rows (the last one "
                            f"pads), got {rows}")
        self.num_items, self.pad_id = num_items, num_items
        self.embedding = embedding
        self.output = nn.Linear(dim, num_items)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # nn.Linear's default initialisation, drawn from our own generator
            bound = 1.0 / dim**0.5
            self.output.weight.uniform_(-bound, bound, generator=gen)
            self.output.bias.uniform_(-bound, bound, generator=gen)

    def user_vector(self, history: torch.Tensor) -> torch.Tensor:
        """(B, e) mean of the embeddings of each row's non-pad items (zeros for an all-pad row)."""
        if history.dim() != 2 or history.dtype != torch.int64:
            raise SaecError(f"history must be a (batch, length) int64 tensor, got {tuple(history.shape)} "
                            f"{history.dtype}")
        # embed each distinct id once: a batch of 256 x 128 ids holds at most num_items + 1 distinct ones,
        # which matters for tables that compute their rows (TT, factorized, mixed dimensions)
        distinct, inverse = torch.unique(history, return_inverse=True)
        present = (history != self.pad_id).float()
        weights = present / present.sum(1, keepdim=True).clamp(min=1.0)  # pads weigh 0: a mean over items
        return F.embedding_bag(inverse, self.embedding(distinct), per_sample_weights=weights, mode="sum")

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """(B, num_items) scores (softmax logits)."""
        return self.output(self.user_vector(history))

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """(B, num_items) ranking scores of every item."""
        return self(history)


class RankNet(PointwiseRanker):
    """The pairwise (siamese) variant: ``forward(history, first, second)`` -> the two items' scores.

    Same parameters as :class:`PointwiseRanker`; ``scores(history)`` ranks all items.
    """

    def item_scores(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` (B,) or (B, K) for each row's history."""
        if items.dtype != torch.int64 or items.dim() not in (1, 2) or items.shape[0] != history.shape[0]:
            raise SaecError(f"items must be an int64 tensor of shape (batch,) or (batch, K) with batch = "
                            f"{history.shape[0]}, got {tuple(items.shape)} {items.dtype}")
        u = self.user_vector(history)
        flat = items.reshape(len(items), -1)
        s = torch.einsum("be,bke->bk", u, F.embedding(flat, self.output.weight)) + self.output.bias[flat]
        return s.reshape(items.shape)

    def forward(self, history: torch.Tensor, first: torch.Tensor, second: torch.Tensor  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of ``first`` and ``second`` (each (B,) or (B, K))."""
        if first.shape != second.shape:
            raise SaecError(f"first and second must have the same shape, got {tuple(first.shape)} and "
                            f"{tuple(second.shape)}")
        both = self.item_scores(history, torch.stack([first, second], dim=-1).reshape(len(first), -1))
        both = both.reshape(*first.shape, 2)
        return both[..., 0], both[..., 1]

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        return self.output(self.user_vector(history))


def ranknet_loss(s_first: torch.Tensor, s_second: torch.Tensor) -> torch.Tensor:
    """RankNet's cross-entropy for pairs whose first item should rank higher (target probability 1):
    mean of ``-log sigmoid(s_first - s_second)``."""
    if s_first.shape != s_second.shape:
        raise SaecError(f"score shapes differ: {tuple(s_first.shape)} vs {tuple(s_second.shape)}")
    diff = s_first - s_second
    return F.binary_cross_entropy_with_logits(diff, torch.ones_like(diff))


__all__ = ["PointwiseRanker", "RankNet", "ranknet_loss"]
