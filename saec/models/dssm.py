"""Embedding matrix + fully connected layers: the Saec paper's modified DSSM (§3.1).

The paper trains embeddings from scratch (no word2vec) and feeds them through "multiple fully-connected
layers"; Saec changes only the embeddings. Here: per-field vectors -> concatenation -> MLP -> logit.
"""

from __future__ import annotations

import torch
from torch import nn

from saec.data.dataset import CTRData
from saec.models.mlp import concat_linear, mlp, rest, split_columns
from saec.nn.collection import EmbeddingBagCollection


class DSSM(nn.Module):
    """CTR model: concatenated field embeddings through an MLP; ``forward`` returns logits (B,)."""

    def __init__(self, embeddings: EmbeddingBagCollection, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        super().__init__()
        self.embeddings = embeddings
        self.mlp = mlp(embeddings.output_dim, hidden, dropout)

    def forward(self, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embeddings(ids))

    def head(self, vecs: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B,) from the per-field vectors in schema order (what follows the lookups)."""
        (hidden,) = concat_linear(vecs, self.mlp[0])
        return rest(self.mlp, hidden).squeeze(1)


ROW = "__row__"
"""The id column :class:`FixedShare` reads: each sample's row in its precomputed share."""


class FixedShare(nn.Module):
    """``model`` for one retraining epoch in which the fields ``fixed`` and the first layer's weights that
    read them do not change: their share of the first layer, ``x_fixed @ W_fixed^T``, is computed once per
    sample (:func:`fixed_share`) and read by the sample's row (the :data:`ROW` column of the batch).

    Each step then looks up only the other fields and multiplies only their columns; the codebooks, the
    first layer's other columns and bias, and every layer above train as in ``model``, whose parameters
    these are (the fixed columns get a zero gradient, which leaves them unchanged under SGD and Adagrad).
    Not in the paper (see :data:`saec.pipeline.flow.RETRAIN_NETWORK`).
    """

    def __init__(self, model: DSSM, fixed: list[str], share: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        names = [f.name for f in model.embeddings.schema.fields]
        self.trained = [n for n in names if n not in set(fixed)]
        _, cols = split_columns(tuple(model.embeddings.schema[n].dim for n in names),
                                tuple(n in self.trained for n in names))
        self.register_buffer("cols", cols, persistent=False)
        self.register_buffer("share", share, persistent=False)

    def forward(self, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        first = self.model.mlp[0]
        x = torch.cat([self.model.embeddings.lookup(n, ids[n]) for n in self.trained], dim=1)
        h = torch.addmm(self.share.index_select(0, ids[ROW]), x, first.weight.index_select(1, self.cols).t())
        return rest(self.model.mlp, h + first.bias).squeeze(1)


@torch.no_grad()
def fixed_share(model: DSSM, data: CTRData, fixed: list[str], full: DSSM | None = None,
                batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per sample of ``data``, ``model``'s first-layer share from the fields ``fixed`` (N x hidden), and,
    given ``full`` (the model ``model`` was compressed from, its first layer and ``fixed`` tables equal to
    ``model``'s), ``full``'s click probabilities, from the same lookups."""
    model.eval()
    names = [f.name for f in model.embeddings.schema.fields]
    held = [n for n in names if n in set(fixed)]  # schema order, the order of the columns
    others = [n for n in names if n not in set(fixed)]
    fixed_cols, other_cols = split_columns(tuple(model.embeddings.schema[n].dim for n in names),
                                           tuple(n not in set(fixed) for n in names))
    w = model.mlp[0].weight
    w_fixed, w_other = w.index_select(1, fixed_cols).t(), None
    if full is not None:
        if not (torch.equal(full.mlp[0].weight, w) and torch.equal(full.mlp[0].bias, model.mlp[0].bias)):
            raise ValueError("fixed_share: full's first layer differs from model's; pass the model it was compressed from")
        full.eval()
        w_other = full.mlp[0].weight.index_select(1, other_cols).t()
    shares, probs = [], []
    for ids, _ in data.batches(batch_size):
        x = [model.embeddings.lookup(n, ids[n]) for n in held]
        share = torch.cat(x, dim=1) @ w_fixed
        shares.append(share)
        if full is not None:
            other = torch.cat([full.embeddings.lookup(n, ids[n]) for n in others], dim=1)
            h = torch.addmm(share, other, w_other) + full.mlp[0].bias
            probs.append(torch.sigmoid(rest(full.mlp, h).squeeze(1)))
    hidden = w.shape[0]
    share = torch.cat(shares) if shares else torch.zeros(0, hidden)
    return share, (torch.cat(probs) if probs else torch.zeros(0)) if full is not None else None
