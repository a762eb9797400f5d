"""Embedding matrix + fully connected layers: the Saec paper's modified DSSM (§3.1).

The paper trains embeddings from scratch (no word2vec) and feeds them through "multiple fully-connected
layers"; Saec changes only the embeddings. Here: per-field vectors -> concatenation -> MLP -> logit.
"""

from __future__ import annotations

import torch
from torch import nn

from saec.models.mlp import mlp
from saec.nn.collection import EmbeddingBagCollection


class DSSM(nn.Module):
    """CTR model: concatenated field embeddings through an MLP; ``forward`` returns logits (B,)."""

    def __init__(self, embeddings: EmbeddingBagCollection, hidden: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        super().__init__()
        self.embeddings = embeddings
        self.mlp = mlp(embeddings.output_dim, hidden, dropout)

    def forward(self, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp(torch.cat(self.embeddings(ids), dim=1)).squeeze(1)
