"""Naive hashing (Weinberger et al. 2009; MEmCom §4 and §5 baseline (1)).

``HashEmbedding`` keeps ``m`` rows and looks feature ``i`` up at row ``i mod m`` (MEmCom §5: "naive hashing
performs the mod operation on the input feature before the embedding table lookup"; survey §4.1:
``e = onehot(id % m) x T``). Ids are frequency-ranked (:mod:`saec.data.vocab`), so ``i mod m`` gives the
``m`` most frequent features rows of their own and spreads the rest evenly; ``hash="universal"`` uses a
seeded linear universal hash instead (the classic random feature hashing) and ``hash="polynomial"`` one of degree
2 (:data:`DEGREES`), which frequency-ranked ids need to collide like random ones. ``hash="permutation"`` stores a
seeded random permutation of the ids and takes it mod ``m``: which ids share a row is random, as under a random
function, but every row holds ``floor(v / m)`` or ``ceil(v / m)`` of them (a random function's loads are Poisson,
so some rows hold many ids and some none). Its index array (4 bytes an id) counts in the table's bytes.
"""

from __future__ import annotations

from typing import Any

import torch

from saec.nn.base import (CompressedEmbedding, check_bool, check_choice, check_int, generator, hash_coefficients,
                          seeded_table, universal_hash)

HASHES = ("mod", "universal", "polynomial", "permutation")
DEGREES = {"universal": 1, "polynomial": 2}
"""Degree of each seeded hash's polynomial mod p. A linear hash of frequency-ranked ids collides in a lattice
(:func:`~saec.nn.base.universal_hash`): on MovieLens-1M GMF (the peer task, 5 seeds) degree 1 spread validation AUC
+-0.037 at ppd4096, degree 2 +-0.002, like a random function. ``"universal"`` stays linear so that tables saved
with it load as they were trained."""


def _index_dtype(v: int) -> torch.dtype:
    """The narrowest integer type holding ids below ``v``: int32, or int64 from 2**31."""
    return torch.int32 if v <= 2**31 else torch.int64


class HashEmbedding(CompressedEmbedding):
    """Naive hashing: ``E[i] = T[h(i)]`` with ``T`` of shape (num_buckets, dim).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_buckets: rows kept (m), 1 <= m <= v.
        hash: ``"mod"`` (``h(i) = i mod m``, the paper's naive hashing), ``"universal"`` (``(a i + b) mod p mod m``,
            seeded) or ``"polynomial"`` (``(a i^2 + b i + c) mod p mod m``, seeded); the int64 coefficients are a
            buffer. ``"permutation"``: ``perm[i] mod m`` for a seeded permutation ``perm`` of ``range(v)``, an int32
            buffer (int64 from 2**31 ids).

    Parameters: ``m * e``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_buckets: int, hash: str = "mod", *,
                 seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_buckets = check_int("num_buckets", num_buckets, 1, self.num_embeddings)
        self.hash = check_choice("hash", hash, HASHES)
        gen = generator(seed)
        self.T = seeded_table(gen, self.num_buckets, self.embedding_dim, init_std, check_bool("sparse", sparse))
        self.register_buffer("hash_coeffs", hash_coefficients(gen, 1, DEGREES[hash]) if hash in DEGREES else None)
        self.register_buffer("perm", torch.randperm(self.num_embeddings, generator=gen).to(_index_dtype(
            self.num_embeddings)) if hash == "permutation" else None)

    def buckets(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of ``T`` each id reads."""
        if self.perm is not None:
            return self.perm[ids].long() % self.num_buckets
        if self.hash_coeffs is None:
            return ids % self.num_buckets
        return universal_hash(ids, self.hash_coeffs, self.num_buckets)[0]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.T(self.buckets(ids))

    @classmethod
    def _size(cls, v: int, d: int, *, num_buckets: int, hash: str = "mod", **_: Any) -> tuple[int, int]:
        check_choice("hash", hash, HASHES)
        extra = 8 * (DEGREES[hash] + 1) if hash in DEGREES else \
            v * _index_dtype(v).itemsize if hash == "permutation" else 0
        return check_int("num_buckets", num_buckets, 1, v) * d, extra

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, num_buckets={self.num_buckets}, hash={self.hash}"


__all__ = ["DEGREES", "HashEmbedding", "universal_hash"]
