"""ROBE: random offset block embedding (Desai et al. 2022; survey §4.1, "Hashing").

Every weight of the virtual ``v x e`` table lives in one shared circular array ``M`` of ``m`` floats. The survey's
description: ROBE "organizes M as a circular array and divides the flattened embedding table (i.e. concatenate all
rows) into blocks of size Z. The head of each block is mapped to M randomly and the following weights in the block
will be mapped to the position next to the head." So weight ``(i, j)`` has flat index ``f = i e + j``, block
``f // Z`` and offset ``f mod Z``, and reads ``M[(h(f // Z) + f mod Z) mod m]``.

Choices where the description leaves room: ``h`` is the seeded Carter-Wegman hash the other hashing methods use
(:func:`~saec.nn.base.universal_hash`); the block size defaults to the embedding dimension, so each row is one
block and every id reads ``e`` consecutive weights of ``M`` from a random head (the paper varies Z; larger blocks
read memory more contiguously); ``M`` is an ``(m, 1)`` embedding table, so its gradients can be sparse like every
other table's.
"""

from __future__ import annotations

from typing import Any

import torch

from saec.errors import SaecError
from saec.nn.base import PRIME, CompressedEmbedding, check_bool, check_int, generator, hash_coefficients, \
    seeded_table, universal_hash


def _check(v: int, d: int, memory_size: Any, block: Any) -> tuple[int, int]:
    m = check_int("memory_size", memory_size, 1, v * d)
    z = d if block is None else check_int("block", block, 1, v * d)
    if -(-v * d // z) >= PRIME:  # universal_hash needs block ids below p (a * id < 2**62)
        raise SaecError(f"block={z}: {v} x {d} weights make {-(-v * d // z):,} blocks; at most {PRIME - 1:,} can be "
                        f"hashed: use a larger block")
    return m, z


class RobeEmbedding(CompressedEmbedding):
    """``E[i, j] = M[(h((i e + j) // Z) + (i e + j) mod Z) mod m]`` (module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        memory_size: floats in the shared array (m), 1 <= m <= v e.
        block: block size Z (None: the embedding dimension, one block per row).

    Parameters: ``m``; a buffer of two int64 hash coefficients.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, memory_size: int, block: int | None = None, *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.memory_size, self.block = _check(self.num_embeddings, self.embedding_dim, memory_size, block)
        gen = generator(seed)
        self.memory = seeded_table(gen, self.memory_size, 1, init_std, check_bool("sparse", sparse))
        self.register_buffer("hash_coeffs", hash_coefficients(gen, 1))

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Where in ``M`` each weight of each id's row lives: shape ``(*ids.shape, e)``."""
        flat = ids.unsqueeze(-1) * self.embedding_dim + torch.arange(self.embedding_dim, device=ids.device)
        head = universal_hash(torch.div(flat, self.block, rounding_mode="floor"), self.hash_coeffs,
                              self.memory_size)[0]
        return (head + flat % self.block) % self.memory_size

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.memory(self.positions(ids)).squeeze(-1)

    @classmethod
    def _size(cls, v: int, d: int, *, memory_size: int, block: int | None = None, **_: Any) -> tuple[int, int]:
        return _check(v, d, memory_size, block)[0], 16

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, memory_size={self.memory_size}, block={self.block}"


__all__ = ["RobeEmbedding"]
