"""ClusteredEmbedding: a codebook plus a per-feature mask (Saec §2.2.1, Fig. 3b; retraining §2.3), and
QuantizedClusteredEmbedding, the same with a row-wise int8 codebook.

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

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saec.cluster.kmeans import assign
from saec.cluster.saec import SaecConfig, compress_field, mask_dtype
from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_choice, check_float, check_int, generator
from saec.nn.quantized import QuantizedEmbedding

GRAD_MODES = ("mean", "sum")
FALLBACKS = ("largest",)


def _mask_tensor(mask: np.ndarray, k: int) -> torch.Tensor:
    """``mask`` as a tensor in the smallest integer type that holds ``k`` cluster indices."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(mask).astype(mask_dtype(k), copy=False)))


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


class ClusteredEmbedding(CompressedEmbedding):
    """Saec's table: ``forward(ids) -> (*ids.shape, dim)`` through ``codebook[mask[ids]]`` (registered as ``"saec"``).

    Built from a trained table with :meth:`from_float` (k-means, the paper's way), from a codebook and mask
    with :meth:`from_codebook`, or fresh from its constructor (a seeded random codebook and the mask
    ``id mod k``: the structure :meth:`from_config` rebuilds before a ``state_dict`` is loaded).

    Args:
        num_embeddings: features addressed (v).
        embedding_dim: vector width (d).
        k: clusters, i.e. codebook rows, 1 <= k <= v.
        grad_mode: ``"mean"`` (Saec's averaged gradient, §2.3) or ``"sum"``.
        seed, init_std: the fresh codebook is drawn from N(0, init_std^2) with a generator seeded by ``seed``.

    Parameters: ``k * d`` (the codebook); buffer: the mask, ``v`` entries of :func:`mask_dtype` ``(k)``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, k: int, grad_mode: str = "mean", *,
                 seed: int = 0, init_std: float = 0.01) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.k = check_int("k", k, 1, self.num_embeddings)
        self.grad_mode = check_choice("grad_mode", grad_mode, GRAD_MODES)
        std = check_float("init_std", init_std, 0.0, math.inf)
        self.codebook = nn.Parameter(torch.randn(self.k, self.embedding_dim, generator=generator(seed)) * std)
        self.register_buffer("mask", _mask_tensor(np.arange(self.num_embeddings) % self.k, self.k))
        self.fit_stats: dict = {}  # what from_float's clustering did (vectors trained on, objective, seconds)

    @classmethod
    def from_codebook(cls, codebook: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray,
                      grad_mode: str = "mean") -> "ClusteredEmbedding":
        """The table of a (k, d) ``codebook`` and a (v,) ``mask`` of cluster indices in ``[0, k)``."""
        codebook = torch.as_tensor(np.asarray(codebook) if isinstance(codebook, np.ndarray) else codebook)
        if codebook.dim() != 2 or not codebook.is_floating_point() or 0 in codebook.shape:
            raise SaecError(f"codebook must be a non-empty 2-D float tensor, got {tuple(codebook.shape)} {codebook.dtype}")
        mask_np = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if mask_np.ndim != 1 or not len(mask_np) or mask_np.dtype.kind not in "iu":
            raise SaecError(f"mask must be a non-empty 1-D integer array, got shape {mask_np.shape} {mask_np.dtype}")
        k = codebook.shape[0]
        if int(mask_np.min()) < 0 or int(mask_np.max()) >= k:
            raise SaecError(f"mask values must lie in [0, {k}) (the codebook's rows), got [{mask_np.min()}, {mask_np.max()}]")
        table = cls(len(mask_np), codebook.shape[1], k, grad_mode)
        table.codebook = nn.Parameter(codebook.detach().clone().float())
        table.mask = _mask_tensor(mask_np, k)
        return table

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None, k: int = 100, grad_mode: str = "mean",
                     top_n: int | None = None, fast: bool = True, init: str = "kmeans++", niter: int = 25,
                     seed: int = 0, init_codebook: np.ndarray | None = None) -> "ClusteredEmbedding":
        """Saec's k-means on a trained (v x d) table (§2.2, fast clustering §2.4): k-means on the ``top_n``
        most frequent rows by ``counts`` (default ``100 * k``; all rows if ``fast=False``), then every row
        goes to its nearest centroid. The field-size eligibility rule (cluster only fields of at least
        ``eligibility * k`` features) is the caller's (:func:`saec.compress`); here the table is clustered
        whatever its size. ``init_codebook`` ((k, d)) starts k-means from given centroids instead of
        ``init`` (the periodic loop's warm start from the previous period; not in the paper, which
        re-clusters from scratch every hour)."""
        v = weight.shape[0]
        k = check_int("k", k, 1)
        if k > v:
            raise SaecError(f"k={k} is larger than the table's {v} rows")
        check_choice("grad_mode", grad_mode, GRAD_MODES)
        cfg = SaecConfig(k=k, eligibility=1.0, top_n=top_n, fast=fast, init=init, niter=niter, seed=seed)
        result = compress_field("table", weight.numpy(), counts, cfg, init_codebook)
        table = cls.from_codebook(result.codebook, result.mask, grad_mode)
        table.fit_stats = {"trained_on": result.trained_on, "objective": result.objective,
                           "cluster_s": result.cluster_s, "assign_s": result.assign_s, "phases": result.phases}
        return table

    @classmethod
    def _size(cls, v: int, d: int, *, k: int, **_: Any) -> tuple[int, int]:
        k = check_int("k", k, 1, v)
        return k * d, v * mask_dtype(k).itemsize

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "grad_mode": self.grad_mode}

    def uses_sparse_gradients(self) -> bool:
        return False  # the codebook is small and dense: every step touches it as a whole

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        clusters = self.mask[ids].long()
        if self.grad_mode == "mean" and torch.is_grad_enabled() and self.codebook.requires_grad:
            return _MeanGradLookup.apply(self.codebook, clusters, ids)
        return F.embedding(clusters, self.codebook)

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
            raise SaecError(f"cannot shrink from {old} to {num_embeddings} features")
        if n_new == 0:
            return
        if vectors is not None:
            vec = np.asarray(vectors.detach() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float32)
            if vec.shape != (n_new, self.embedding_dim):
                raise SaecError(f"vectors of the {n_new} new features must have shape ({n_new}, "
                                 f"{self.embedding_dim}), got {vec.shape}")
            new = assign(vec, self.codebook.detach().numpy(), what="new feature vectors")
        else:
            if fallback not in FALLBACKS:
                raise SaecError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
            largest = int(torch.bincount(self.mask.long(), minlength=self.k).argmax())
            new = np.full(n_new, largest)
        added = torch.from_numpy(new.astype(self.mask.numpy().dtype))
        self.mask = torch.cat([self.mask, added])
        self.num_embeddings = num_embeddings

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, k={self.k}, mask={self.mask.dtype}, grad={self.grad_mode}"


class QuantizedClusteredEmbedding(CompressedEmbedding):
    """Saec with a row-wise integer codebook (registered as ``"saec_int8"``): the mask of
    :class:`ClusteredEmbedding`, and its k centroids stored as a :class:`~saec.nn.quantized.QuantizedEmbedding`.

    The two savings multiply where the codebook matters (small fields, large k); with the paper's k = 100
    the mask dominates and the codebook's 4x is a small gain. Serving only: nothing here is trainable.

    Args:
        num_embeddings, embedding_dim, k: as for :class:`ClusteredEmbedding`.
        bits: precision of the codebook (8 for ``"saec_int8"``).
        seed: unused (accepted as by every table :func:`saec.nn.registry.make_embedding` builds).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, k: int, bits: int = 8, *, seed: int = 0) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.k = check_int("k", k, 1, self.num_embeddings)
        self.codebook = QuantizedEmbedding(self.k, self.embedding_dim, bits)
        self.bits = self.codebook.bits
        self.register_buffer("mask", _mask_tensor(np.arange(self.num_embeddings) % self.k, self.k))
        self.fit_stats: dict = {}

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None, k: int = 100, bits: int = 8,
                     top_n: int | None = None, fast: bool = True, init: str = "kmeans++", niter: int = 25,
                     seed: int = 0) -> "QuantizedClusteredEmbedding":
        """Saec's clustering (:meth:`ClusteredEmbedding.from_float`), then the codebook quantized row-wise."""
        saec = ClusteredEmbedding._from_weight(weight, counts=counts, k=k, top_n=top_n, fast=fast, init=init,
                                               niter=niter, seed=seed)
        table = cls(weight.shape[0], weight.shape[1], saec.k, bits)
        table.codebook = QuantizedEmbedding.from_float(saec.codebook.detach(), bits=bits)
        table.mask = saec.mask
        table.fit_stats = saec.fit_stats
        return table

    @classmethod
    def _size(cls, v: int, d: int, *, k: int, bits: int = 8, **_: Any) -> tuple[int, int]:
        k = check_int("k", k, 1, v)
        return 0, QuantizedEmbedding.footprint(k, d, bits=bits).nbytes + v * mask_dtype(k).itemsize

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "bits": self.bits}

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codebook.embed(self.mask[ids].long())

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, k={self.k}, mask={self.mask.dtype}"
