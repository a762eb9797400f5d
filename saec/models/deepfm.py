"""DeepFM (Guo et al., 2017): a factorization machine and an MLP over shared field embeddings.

Two adaptations, so that a compression method still replaces exactly one table per field:

* the first-order term is a linear map of the concatenated field vectors (per feature this is
  ``w_f . e_x``, a factorised first-order weight) instead of a separate 1-wide table per field;
* fields may have different dimensions (Saec §1), so for the second-order term every field vector is
  linearly projected to a common ``fm_dim`` (identity when all fields already share it).
"""

from __future__ import annotations

import torch
from torch import nn

from saec.models.mlp import concat_linear, mlp, rest
from saec.nn.collection import EmbeddingBagCollection


class DeepFM(nn.Module):
    """CTR model: bias + first order + pairwise FM interactions + MLP; ``forward`` returns logits (B,)."""

    def __init__(
        self,
        embeddings: EmbeddingBagCollection,
        hidden: tuple[int, ...] = (256, 128),
        dropout: float = 0.0,
        fm_dim: int | None = None,
    ):
        super().__init__()
        self.embeddings = embeddings
        dims = [f.dim for f in embeddings.schema.fields]
        self.fm_dim = fm_dim or max(dims)
        self.same_dim = all(d == self.fm_dim for d in dims)
        self.project = nn.ModuleList(
            [nn.Identity() if self.same_dim else nn.Linear(d, self.fm_dim, bias=False) for d in dims]
        )
        self.first_order = nn.Linear(embeddings.output_dim, 1)
        self.deep = mlp(embeddings.output_dim, hidden, dropout)

    def forward(self, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.embeddings(ids))

    def head(self, vecs: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B,) from the per-field vectors in schema order (what follows the lookups)."""
        first, hidden = concat_linear(vecs, self.first_order, self.deep[0])
        v = torch.stack([p(x) for p, x in zip(self.project, vecs)], dim=1)  # (B, F, fm_dim)
        # FM identity: sum_{i<j} <v_i, v_j> = ((sum v)^2 - sum v^2) / 2
        fm = 0.5 * (v.sum(dim=1).pow(2) - v.pow(2).sum(dim=1)).sum(dim=1)
        return first.squeeze(1) + fm + rest(self.deep, hidden).squeeze(1)
