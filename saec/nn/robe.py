"""ROBE: random offset block embedding (Desai et al. 2022; survey §4.1, "Hashing").

Every weight of the virtual ``v x e`` table lives in one shared circular array ``M`` of ``m`` floats. The survey's
description: ROBE "organizes M as a circular array and divides the flattened embedding table (i.e. concatenate all
rows) into blocks of size Z. The head of each block is mapped to M randomly and the following weights in the block
will be mapped to the position next to the head." So weight ``(i, j)`` has flat index ``f = i e + j``, block
``f // Z`` and offset ``f mod Z``, and reads ``M[(h(f // Z) + f mod Z) mod m]``.

Choices where the description leaves room: the block size defaults to the embedding dimension, so each row is
one block and every id reads ``e`` consecutive weights of ``M`` from a random head (the paper varies Z; larger
blocks read memory more contiguously). ``h`` is the seeded Carter-Wegman hash the other hashing methods use
(:func:`~saec.nn.base.universal_hash`), one independently drawn function per block position: with ``C = ceil(e /
Z)`` functions, block ``b`` reads ``h_{b mod C}(b // C)``, which for ``Z`` dividing ``e`` is ``h_t(i)`` for block
``t`` of row ``i``: the peer's ROBE (thomasahle/cce, ``cce/robe.py`` with ``n_chunks`` hashes of the id,
``cce/__init__.py``), and for ``Z >= e`` a single hash of the block. One linear hash of every block id would not
do: consecutive block ids get heads a fixed stride ``a`` apart (mod p), so two ids whose first blocks collide
collide in all their blocks, and a row of ``e / Z`` blocks acts as one block of ``e``. A random-like hash (a cubic
polynomial) decorrelates the blocks but loses what a linear one gives the ids of one block position: heads
evenly spread over ``M`` (consecutive ids a fixed stride apart), so fewer overlaps. On the peer's MovieLens-1M
task with ``Z = 8`` (seeds 0-2): one linear hash 0.70-0.74 AUC at ppd 256; a cubic 0.756-0.759 at ppd 256 and
0.800-0.819 at ppd 1024; one linear hash per position 0.751-0.765 and 0.817-0.821, as the peer publishes (0.761,
0.818). ``M`` is an ``(m, 1)`` embedding table, so its gradients can be sparse like every other table's.
"""

from __future__ import annotations

from typing import Any

import torch

from saec.errors import SaecError
from saec.nn.base import PRIME, CompressedEmbedding, check_bool, check_int, generator, hash_coefficients, \
    seeded_table, universal_hash


def hash_count(d: int, block: int) -> int:
    """Independent hash functions of a table of width ``d`` in blocks of ``block``: one per block position of a
    row, ``ceil(d / block)``."""
    return -(-d // block)


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

    Parameters: ``m``; a buffer of :func:`hash_count` pairs of int64 hash coefficients.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, memory_size: int, block: int | None = None, *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.memory_size, self.block = _check(self.num_embeddings, self.embedding_dim, memory_size, block)
        gen = generator(seed)
        self.memory = seeded_table(gen, self.memory_size, 1, init_std, check_bool("sparse", sparse))
        self.register_buffer("hash_coeffs", hash_coefficients(gen, hash_count(self.embedding_dim, self.block)))

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Where in ``M`` each weight of each id's row lives: shape ``(*ids.shape, e)``."""
        d, z, c = self.embedding_dim, self.block, len(self.hash_coeffs)
        start = ids * d  # flat index of each row's first weight
        first = torch.div(start, z, rounding_mode="floor")  # the block it falls in
        within = (start - first * z).unsqueeze(-1) + torch.arange(d, device=ids.device)  # from that block's start
        step = torch.div(within, z, rounding_mode="floor")  # which of the row's blocks each weight is in
        # hash the (at most `span`) blocks a row touches once each, not once per weight: int64 ops dominate
        span = (z + d - 2) // z + 1
        blocks = first.unsqueeze(-1) + torch.arange(span, device=ids.device)
        every = universal_hash(torch.div(blocks, c, rounding_mode="floor"), self.hash_coeffs, self.memory_size)
        heads = torch.gather(every, 0, (blocks % c).unsqueeze(0))[0]  # block b: hash number b mod c
        return (torch.gather(heads, -1, step) + within % z) % self.memory_size

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        positions = self.positions(ids)
        if self.memory.sparse:
            return self.memory(positions).squeeze(-1)
        # indexing M's single column backpropagates as one index_add: several times faster than the embedding
        # backward of as many one-float rows (MovieLens-1M batches of 4096 x 32), for the same gradient
        return self.memory.weight[:, 0][positions]

    @classmethod
    def _size(cls, v: int, d: int, *, memory_size: int, block: int | None = None, **_: Any) -> tuple[int, int]:
        m, z = _check(v, d, memory_size, block)
        return m, 16 * hash_count(d, z)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, memory_size={self.memory_size}, block={self.block}"


__all__ = ["RobeEmbedding", "hash_count"]
