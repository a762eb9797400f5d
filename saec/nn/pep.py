"""PEP: learnable-threshold pruning of the embedding table, stored sparse (Liu et al. 2021, "Learnable Embedding
Sizes for Recommender Systems"; survey §3.2 "Pruning").

PEP re-parameterises every weight as ``ê = sign(v) · ReLU(|v| - g(s))`` with ``g = sigmoid`` and a trainable
threshold ``s``: weights whose magnitude stays below the learnt threshold are exactly zero, so the table's "embedding
size" is learnt per feature. After that, PEP retrains the pruned table with its mask fixed (the lottery-ticket
step). What frees memory is only a storage format that drops the zeros, so the two forms here are:

* :class:`PEPTrainEmbedding` (registered ``pep_train``): the training form, ``v x e`` latent weights and a threshold
  per dimension (the paper's "dimension-wise" granularity, one of its four; ``s`` starts at ``init_threshold``,
  -15 by default, ``g(s) ~ 3e-7``, so nothing is pruned at first). Its bytes are a full table's plus ``e`` floats.
* :class:`PrunedEmbedding` (registered ``pep``, post-training, ``trained_with="pep_train"``): the stored form, the
  ``nnz`` largest-magnitude nonzero weights as sorted int32 positions into the flattened ``v x e`` table plus their
  float32 values (8 bytes per kept weight; nothing per row, so a row with no weight costs nothing and reads zeros).
  The budget sets ``nnz``. The values are trainable parameters at fixed positions: training the stored table is
  PEP's retraining with the mask fixed (a pruned weight has no storage, so it stays exactly zero). From a plain
  float table it is magnitude pruning.

Choices where the paper leaves room (or where saec departs from it): retraining continues from the trained values
at the kept positions rather than PEP's restart from the original initialisation (the benchmarks retrain as many
epochs as the training form had: :attr:`~saec.nn.registry.Method.retrain`); the threshold granularity (dimension-wise) and its init; ``nnz`` from the
byte budget rather than a target sparsity reached during training (the learnt threshold zeroes what it zeroes;
the budget then keeps the largest survivors, ties to the lower position); the COO-on-the-flattened-table format
(a CSR row pointer would cost 4 bytes per row, the whole 1/16 budget of a 16-dim table); a lookup finds a row's
entries with a branchless binary search (:func:`~saec.nn.base.count_below`, which ONNX can run).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_bool, check_float, check_int, count_below, generator, \
    seeded_table


def prune(weight: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``sign(w) · ReLU(|w| - sigmoid(s))`` (PEP's re-parameterisation), ``threshold`` broadcast over rows."""
    return torch.sign(weight) * torch.relu(weight.abs() - torch.sigmoid(threshold))


class PEPTrainEmbedding(CompressedEmbedding):
    """The training form: latent weights ``V`` and a per-dimension threshold ``s``, looked up as ``prune(V[i], s)``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        init_threshold: the thresholds' starting value ``s`` (``sigmoid(s)`` is the starting magnitude cut).
        seed, init_std: ``V`` is drawn from N(0, init_std^2).
        sparse: sparse gradients for ``V``.

    Parameters: ``v e + e``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, init_threshold: float = -15.0, *, seed: int = 0,
                 init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.init_threshold = check_float("init_threshold", init_threshold, -1e4, 1e4)
        self.V = seeded_table(generator(seed), self.num_embeddings, self.embedding_dim, init_std,
                              check_bool("sparse", sparse))
        self.s = nn.Parameter(torch.full((self.embedding_dim,), self.init_threshold))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return prune(self.V(ids), self.s)

    def pruned_weight(self) -> torch.Tensor:
        """The whole pruned (v x e) table (its zeros are exactly zero)."""
        with torch.no_grad():
            return prune(self.V.weight, self.s).float()

    @classmethod
    def _size(cls, v: int, d: int, **_: Any) -> tuple[int, int]:
        return v * d + d, 0

    def uses_sparse_gradients(self) -> bool:
        return self.V.sparse


class PrunedEmbedding(CompressedEmbedding):
    """The stored form: ``nnz`` weights at sorted positions of the flattened table, every other weight zero.

    Built with :meth:`from_float` (from a trained ``pep_train`` table, or magnitude pruning of a float one); the
    constructor gives the structure (positions ``0 .. nnz-1``, values drawn from N(0, init_std^2)), which ``load_state_dict`` fills.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        nnz: weights kept, 0 <= nnz <= v e.
        seed, init_std: the fresh table's values.

    Parameters: ``values`` (nnz float32); buffer: ``positions`` (nnz int32, ``row * e + column``, increasing).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, nnz: int, *, seed: int = 0,
                 init_std: float = 0.01) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.nnz = _check_nnz(self.num_embeddings, self.embedding_dim, nnz)
        std = check_float("init_std", init_std, 0.0, math.inf)
        self.values = nn.Parameter(torch.randn(self.nnz, generator=generator(seed)) * std)
        self.register_buffer("positions", torch.arange(self.nnz, dtype=torch.int32))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embedding_dim
        if self.nnz == 0:
            return self.values.new_zeros(len(ids), e)
        first = count_below(self.positions, ids * e)  # the row's entries are the next (at most e) positions
        idx = (first.unsqueeze(1) + torch.arange(e, device=ids.device)).clamp(max=self.nnz - 1)  # (N, e)
        pos = self.positions[idx].long()
        col = pos - ids.unsqueeze(1) * e
        inside = (col >= 0) & (col < e)  # entries of this row (a clamped repeat of the last is outside or a repeat)
        inside &= (first.unsqueeze(1) + torch.arange(e, device=ids.device)) < self.nnz
        # each kept entry adds its value at its column (an entry outside the row adds 0 at column 0): O(N e), where
        # comparing every entry with every column built an (N, e, e) tensor (minutes per epoch on a ranking task)
        vals = torch.where(inside, self.values[idx], self.values.new_zeros(()))
        return vals.new_zeros(len(ids), e).scatter_add(1, torch.where(inside, col, torch.zeros_like(col)), vals)

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None = None,
                     nnz: int | None = None) -> "PrunedEmbedding":
        """The ``nnz`` largest-magnitude nonzero weights of a (v x e) float32 table (``counts`` unused)."""
        v, d = weight.shape
        if nnz is None:
            raise SaecError("method 'pep' needs nnz= (weights kept) or a budget")
        nnz = _check_nnz(v, d, nnz)
        flat = weight.reshape(-1)
        if not bool(torch.isfinite(flat).all()):
            at = int((~torch.isfinite(flat)).nonzero()[0])
            raise SaecError(f"row {at // d} of the weight has NaN or infinite values; pruning needs finite rows")
        nonzero = torch.nonzero(flat).squeeze(1)
        if len(nonzero) > nnz:  # the largest magnitudes; equal ones: the lower position (a stable sort)
            order = torch.sort(flat[nonzero].abs(), descending=True, stable=True).indices[:nnz]
            nonzero = torch.sort(nonzero[order]).values
        table = cls(v, d, len(nonzero))
        table.positions = nonzero.to(torch.int32)
        table.values = nn.Parameter(flat[nonzero].clone())
        return table

    @classmethod
    def _from_table(cls, table: CompressedEmbedding, *, counts: np.ndarray | None = None,
                    nnz: int | None = None) -> "PrunedEmbedding":
        """A trained ``pep_train`` table's pruned weights (any other table: its rows), the ``nnz`` largest kept."""
        if isinstance(table, PEPTrainEmbedding):
            return cls._from_weight(table.pruned_weight(), nnz=nnz)
        return super()._from_table(table, counts=counts, nnz=nnz)

    def to_dense(self) -> torch.Tensor:
        """The (v x e) table this stands for (for inspection and tests)."""
        out = torch.zeros(self.num_embeddings * self.embedding_dim)
        out[self.positions.long()] = self.values.detach()
        return out.reshape(self.num_embeddings, self.embedding_dim)

    def config(self) -> dict[str, Any]:
        return {"nnz": self.nnz}

    def uses_sparse_gradients(self) -> bool:
        return False

    @classmethod
    def _size(cls, v: int, d: int, *, nnz: int, **_: Any) -> tuple[int, int]:
        n = _check_nnz(v, d, nnz)
        return n, 4 * n

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, nnz={self.nnz}"


def _check_nnz(v: int, d: int, nnz: Any) -> int:
    if v * d >= 2**31:
        raise SaecError(f"a {v} x {d} table has {v * d:,} weights; pep's int32 positions address at most 2**31 - 1")
    return check_int("nnz", nnz, 0, v * d)


__all__ = ["PEPTrainEmbedding", "PrunedEmbedding", "prune"]
