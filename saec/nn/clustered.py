"""ClusteredEmbedding: a codebook plus a per-feature mask (Saec §2.2.1, Fig. 3b; retraining §2.3).

Lookup is two steps: ``mask[id]`` gives the feature's cluster, ``codebook[cluster]`` its vector. The
codebook is the only trainable parameter; the mask is a buffer in the smallest integer type that holds
k, so ``state_dict`` holds exactly what is served.

Retraining (§2.3): "each feature gets its own gradient. Saec then collects the gradients from features
in the same cluster according to their mask and average them as the gradient of the representative
embedding vector". With ``grad_mode="mean"`` (default) a centroid's gradient is the sum of its member
features' gradients in the batch divided by the number of *distinct* member features in the batch (a
feature's own gradient already sums over its occurrences, as in a plain embedding table).
``grad_mode="sum"`` is ordinary autograd through the lookup: the plain sum over members, which weights
a centroid's step by how many of its features the batch happens to hold.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saec.cluster.kmeans import assign
from saec.cluster.saec import SaecConfig, compress_field, mask_dtype

GRAD_MODES = ("mean", "sum")
FALLBACKS = ("largest",)


class _MeanGradLookup(torch.autograd.Function):
    """``codebook[clusters]`` whose backward averages over the distinct features of each cluster."""

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, clusters: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(clusters, features)
        ctx.k = codebook.shape[0]
        return codebook.index_select(0, clusters)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        clusters, features = ctx.saved_tensors
        summed = grad.new_zeros(ctx.k, grad.shape[1]).index_add_(0, clusters, grad)
        unique, inverse = torch.unique(features, return_inverse=True)
        cluster_of_unique = clusters.new_empty(len(unique)).scatter_(0, inverse, clusters)
        members = torch.bincount(cluster_of_unique, minlength=ctx.k).clamp_(min=1)
        return summed / members.unsqueeze(1).to(grad.dtype), None, None


class ClusteredEmbedding(nn.Module):
    """Drop-in for ``nn.Embedding``: ``forward(ids) -> (*ids.shape, dim)`` through ``codebook[mask[ids]]``.

    Args:
        codebook: (k, dim) float vectors, one per cluster (trainable).
        mask: (num_embeddings,) cluster index of every feature.
        grad_mode: ``"mean"`` (Saec's averaged gradient, §2.3) or ``"sum"``.
    """

    def __init__(self, codebook: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray,
                 grad_mode: str = "mean") -> None:
        super().__init__()
        if grad_mode not in GRAD_MODES:
            raise ValueError(f"grad_mode must be one of {GRAD_MODES}, got {grad_mode!r}")
        codebook = torch.as_tensor(np.asarray(codebook) if isinstance(codebook, np.ndarray) else codebook)
        if codebook.dim() != 2 or not codebook.is_floating_point():
            raise ValueError(f"codebook must be a 2-D float tensor, got {tuple(codebook.shape)} {codebook.dtype}")
        k = codebook.shape[0]
        mask_np = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if mask_np.ndim != 1:
            raise ValueError(f"mask must be 1-D, got shape {mask_np.shape}")
        if len(mask_np) and (int(mask_np.min()) < 0 or int(mask_np.max()) >= k):
            raise ValueError(f"mask values must lie in [0, {k}), got [{mask_np.min()}, {mask_np.max()}]")
        self.grad_mode = grad_mode
        self.codebook = nn.Parameter(codebook.detach().clone().float())
        self.register_buffer("mask", torch.from_numpy(np.ascontiguousarray(mask_np.astype(mask_dtype(k), copy=False))))

    @property
    def num_embeddings(self) -> int:
        """Number of features addressed."""
        return int(self.mask.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.codebook.shape[1])

    @property
    def k(self) -> int:
        """Number of clusters (codebook rows)."""
        return int(self.codebook.shape[0])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        clusters = self.mask[flat].long()
        if self.grad_mode == "mean" and torch.is_grad_enabled() and self.codebook.requires_grad:
            out = _MeanGradLookup.apply(self.codebook, clusters, flat)
        else:
            out = F.embedding(clusters, self.codebook)
        return out.reshape(*ids.shape, self.embedding_dim)

    def to_dense(self) -> torch.Tensor:
        """The (num_embeddings, dim) table this module stands for (materialises every row)."""
        return self.codebook.detach()[self.mask.long()]

    def grow(self, num_embeddings: int, vectors: torch.Tensor | np.ndarray | None = None,
             fallback: str = "largest") -> None:
        """Give ids ``old .. num_embeddings-1`` (features that arrived after compression) a cluster.

        A new feature with a trained vector (a row of ``vectors``) goes to its nearest centroid. One
        without goes to the ``fallback`` cluster: ``"largest"``, the cluster with the most members, whose
        centroid represents the typical (mostly rare, §2.4) feature best.
        """
        old = self.num_embeddings
        n_new = num_embeddings - old
        if n_new < 0:
            raise ValueError(f"cannot shrink from {old} to {num_embeddings} features")
        if n_new == 0:
            return
        if vectors is not None:
            vec = np.asarray(vectors.detach() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float32)
            if vec.shape != (n_new, self.embedding_dim):
                raise ValueError(f"vectors of the {n_new} new features must have shape ({n_new}, "
                                 f"{self.embedding_dim}), got {vec.shape}")
            new = assign(vec, self.codebook.detach().numpy(), what="new feature vectors")
        else:
            if fallback not in FALLBACKS:
                raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
            largest = int(torch.bincount(self.mask.long(), minlength=self.k).argmax())
            new = np.full(n_new, largest)
        added = torch.from_numpy(new.astype(self.mask.numpy().dtype))
        self.mask = torch.cat([self.mask, added])

    @classmethod
    def from_float(cls, module: nn.Embedding, k: int = 100, counts: np.ndarray | None = None,
                   config: SaecConfig | None = None, grad_mode: str = "mean") -> "ClusteredEmbedding":
        """Compress a trained ``nn.Embedding`` with Saec's k-means (fast clustering on the ``top_n``
        most frequent rows by ``counts``). The field-size eligibility rule is the container's business
        (:func:`saec.compress.compress_collection`); here the module is clustered whatever its size."""
        cfg = config if config is not None else SaecConfig(k=k)
        cfg = SaecConfig(**{**cfg.__dict__, "eligibility": 1.0})
        weight = module.weight.detach().numpy()
        if cfg.k > len(weight):
            raise ValueError(f"k={cfg.k} is larger than the table's {len(weight)} rows")
        result = compress_field("module", weight, counts, cfg)
        return cls(result.codebook, result.mask, grad_mode)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, k={self.k}, mask={self.mask.dtype}, grad={self.grad_mode}"
