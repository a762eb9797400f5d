"""Product quantization of a trained table (Jégou et al. 2011; survey §4.2, "Vector quantization").

Saec clusters whole rows into one codebook; product quantization splits every row into ``M`` contiguous
sub-vectors and clusters each subspace on its own (``2^bits`` centroids each), so a row is stored as ``M``
codes and ``E[i] = concat_m C_m[codes[i, m]]``: ``(2^bits)^M`` distinct rows from ``M 2^bits`` centroids. The
survey lists PQ among the vector-quantization methods (with its differentiable variants, DPQ and MGQE).

Choices where the method leaves room: the subspace codebooks are learnt by faiss's ``ProductQuantizer`` (k-means
per subspace, seeded, faiss sampling at most 256 rows per centroid) on every row of the trained table; a dimension
``M`` does not divide is zero-padded to the next multiple for training and the padding is dropped at lookup;
codes are one byte each (``bits`` <= 8, by default as many as leave 39 rows per centroid); the codebooks stay trainable parameters (dense gradients), so the table
can be retrained as Saec's is. A fresh table (the structure :meth:`~saec.nn.base.CompressedEmbedding.from_config`
rebuilds before weights are loaded) has random codebooks and codes ``(i + m) mod 2^bits``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_float, check_int, generator


MIN_ROWS_PER_CENTROID = 39  # faiss's k-means warns below this many training points per centroid


def default_bits(v: int) -> int:
    """Bits per code when none are given: the most (up to 8) that leave faiss 39 rows per centroid, at least 1."""
    return int(min(8, max(1, math.floor(math.log2(max(v / MIN_ROWS_PER_CENTROID, 1))))))


def _check(v: int, d: int, num_subspaces: Any, bits: Any) -> tuple[int, int, int]:
    m = check_int("num_subspaces", num_subspaces, 1, d)
    b = default_bits(v) if bits is None else check_int("bits", bits, 1, 8)
    return m, b, -(-d // m)


class ProductQuantizedEmbedding(CompressedEmbedding):
    """``E[i] = concat_m codebooks[m, codes[i, m]]`` (module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_subspaces: sub-vectors per row (M), 1 <= M <= e; each has ``ceil(e / M)`` coordinates.
        bits: bits per code (1 to 8): ``2^bits`` centroids per subspace (None: :func:`default_bits`, 8 from
            9,984 rows on).

    Parameters: ``M 2^bits ceil(e / M)`` (the codebooks); buffer: the codes, ``v M`` bytes.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_subspaces: int, bits: int | None = None, *,
                 seed: int = 0, init_std: float = 0.01) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_subspaces, self.bits, self.sub_dim = _check(self.num_embeddings, self.embedding_dim,
                                                             num_subspaces, bits)
        self.num_centroids = 2**self.bits
        std = check_float("init_std", init_std, 0.0, math.inf)
        self.codebooks = nn.Parameter(torch.randn(self.num_subspaces, self.num_centroids, self.sub_dim,
                                                  generator=generator(seed)) * std)
        codes = (torch.arange(self.num_embeddings).unsqueeze(1) + torch.arange(self.num_subspaces)) % self.num_centroids
        self.register_buffer("codes", codes.to(torch.uint8))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        flat = self.codes[ids].long() + torch.arange(self.num_subspaces, device=ids.device) * self.num_centroids
        rows = self.codebooks.reshape(-1, self.sub_dim)[flat]  # (*ids.shape, M, sub_dim)
        return rows.reshape(*ids.shape, self.num_subspaces * self.sub_dim)[..., :self.embedding_dim]

    def to_dense(self) -> torch.Tensor:
        """The (num_embeddings, dim) table this module stands for (materialises every row)."""
        with torch.no_grad():
            return self.embed(torch.arange(self.num_embeddings))

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None, num_subspaces: int = 4,
                     bits: int | None = None,
                     niter: int = 25, seed: int = 0) -> "ProductQuantizedEmbedding":
        """faiss's product quantizer trained on every row of a (v x e) float32 ``weight``; ``counts`` unused."""
        import faiss

        v, d = weight.shape
        m, b, sub = _check(v, d, num_subspaces, bits)
        if v < 2**b:
            raise SaecError(f"bits={b}: {2**b} centroids per subspace need at least as many rows; the table has {v}")
        padded = np.zeros((v, m * sub), dtype=np.float32)
        padded[:, :d] = weight.detach().numpy()
        pq = faiss.ProductQuantizer(m * sub, m, b)
        pq.cp.niter = check_int("niter", niter, 1)
        pq.cp.seed = check_int("seed", seed, 0)
        pq.train(padded)
        centroids = faiss.vector_to_array(pq.centroids).reshape(m, 2**b, sub)
        codes = np.empty((v, m), dtype=np.uint8)
        for j in range(m):  # each sub-vector's nearest centroid (faiss packs codes of fewer than 8 bits)
            index = faiss.IndexFlatL2(sub)
            index.add(np.ascontiguousarray(centroids[j]))
            codes[:, j] = index.search(np.ascontiguousarray(padded[:, j * sub:(j + 1) * sub]), 1)[1][:, 0]
        table = cls(v, d, m, b)
        table.codebooks = nn.Parameter(torch.from_numpy(centroids.copy()))
        table.codes = torch.from_numpy(codes)
        return table

    @classmethod
    def _size(cls, v: int, d: int, *, num_subspaces: int, bits: int | None = None, **_: Any) -> tuple[int, int]:
        m, b, sub = _check(v, d, num_subspaces, bits)
        return m * 2**b * sub, v * m

    def config(self) -> dict[str, Any]:
        return {"num_subspaces": self.num_subspaces, "bits": self.bits}

    def uses_sparse_gradients(self) -> bool:
        return False  # the codebooks are small and dense

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, num_subspaces={self.num_subspaces}, bits={self.bits}, "
                f"sub_dim={self.sub_dim}")


__all__ = ["ProductQuantizedEmbedding"]
