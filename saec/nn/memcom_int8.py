"""MEmCom with an int8 ``U``: a hybrid of hashing and low precision (survey §5.2 "Hybrid approaches"; MEmCom,
Pansare et al. 2022, §4 and App. A.2).

MEmCom's table is ``E[i] = U[i mod m] * V[i] (+ W[i])`` (:mod:`saec.nn.memcom`). Its App. A.2 finds float16
lossless and 8-bit nearly lossless for a trained model; this is the stored form that keeps exactly that: ``U`` as
row-wise 8-bit codes with a float32 scale and bias per row (:class:`~saec.nn.quantized.QuantizedEmbedding`, torch's
fused layout, ``m (e + 8)`` bytes), the per-feature multiplier ``V`` and offset ``W`` as float16 (2 bytes per feature
each: float32 ``V`` alone would cost 4 bytes per feature, a whole 1/16 budget at ``e = 16``).

Built (post-training, ``trained_with="memcom"``) from a trained :class:`~saec.nn.memcom.MEmComEmbedding`, whose
``m`` and bias it keeps; or from a plain float table, which it fits: ``U[j]`` is the row of bucket ``j``'s most
frequent id (by ``counts``; without them the lowest id, ``j`` itself, as ids are frequency-ranked), and each
feature's ``V[i]`` (and ``W[i]``) the least-squares fit of its row on ``U[i mod m]`` (and the all-ones vector), so
the ``m`` representative rows come back exactly (up to the int8 and float16 rounding). The budget knob is ``m``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_bool, check_int
from saec.nn.memcom import MEmComEmbedding
from saec.nn.quantized import QuantizedEmbedding, row_bytes


class MEmComInt8Embedding(CompressedEmbedding):
    """``E[i] = U8[i mod m] * V[i] (+ W[i])``: ``U`` row-wise int8, ``V`` and ``W`` float16 (module docstring).

    The constructor gives the all-zero table of the structure, which ``load_state_dict`` fills.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_buckets: rows of ``U`` (m), 1 <= m <= v.
        bias: keep the per-feature offset ``W`` (MEmCom's Algorithm 3).
        seed: accepted as every table built by :func:`saec.nn.registry.make_embedding` is; unused.

    Buffers: ``U.packed`` (uint8, m x (e + 8)), ``V`` (float16, v) and, with bias, ``W`` (float16, v).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_buckets: int, bias: bool = False, *,
                 seed: int = 0) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_buckets = check_int("num_buckets", num_buckets, 1, self.num_embeddings)
        self.bias = check_bool("bias", bias)
        check_int("seed", seed, 0)
        self.U = QuantizedEmbedding(self.num_buckets, self.embedding_dim, bits=8)
        self.register_buffer("V", torch.zeros(self.num_embeddings, dtype=torch.float16))
        self.register_buffer("W", torch.zeros(self.num_embeddings if self.bias else 0, dtype=torch.float16))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.U.embed(ids % self.num_buckets) * self.V[ids].float().unsqueeze(-1)
        return out + self.W[ids].float().unsqueeze(-1) if self.bias else out

    @classmethod
    def _from_table(cls, table: CompressedEmbedding, *, counts: np.ndarray | None = None, num_buckets: int = 1000,
                    bias: bool | None = None) -> "MEmComInt8Embedding":
        """A trained MEmCom table's ``U`` in int8 and ``V``, ``W`` in float16 (any other table: its rows, fitted).

        ``num_buckets`` (from a budget, or given) must be at least the trained table's ``m``, which is kept.
        """
        if not isinstance(table, MEmComEmbedding):
            return super()._from_table(table, counts=counts, num_buckets=num_buckets, bias=bool(bias))
        m = table.num_buckets
        if check_int("num_buckets", num_buckets, 1) < m:
            raise SaecError(f"num_buckets={num_buckets} (or the budget that set it) is below the trained MEmCom "
                            f"table's {m} rows of U, which its int8 form keeps; it needs "
                            f"{cls.footprint(table.num_embeddings, table.embedding_dim, num_buckets=m, bias=table.bias).nbytes} bytes")
        if bias is not None and bool(bias) != table.bias:
            raise SaecError(f"bias={bias!r}, but the trained MEmCom table has bias={table.bias}")
        u = table.U.weight.detach().float()
        v = table.V.weight.detach().float()[:, 0]
        w = table.W.weight.detach().float()[:, 0] if table.W is not None else None
        return cls._stored(table.num_embeddings, u, v, w)

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None = None, num_buckets: int = 1000,
                     bias: bool = False) -> "MEmComInt8Embedding":
        """The least-squares MEmCom fit of a (v x e) float32 table (module docstring), then stored."""
        rows, d = weight.shape
        m = check_int("num_buckets", num_buckets, 1, rows)
        bias = check_bool("bias", bias)
        w = weight.double().numpy()
        if not np.isfinite(w).all():
            row = int(np.flatnonzero(~np.isfinite(w).all(axis=1))[0])
            raise SaecError(f"row {row} of the weight has NaN or infinite values; MEmCom's fit needs finite rows")
        bucket = np.arange(rows) % m
        if counts is None:
            rep = np.arange(m)  # the lowest id of each bucket: its most frequent in frequency-ranked ids
        else:  # each bucket's most frequent id (the lowest among equal counts)
            order = np.lexsort((np.arange(rows), -counts, bucket))
            rep = order[np.r_[0, np.flatnonzero(np.diff(bucket[order])) + 1]]
        u = w[rep][bucket]  # each row's U row
        uu, eu = (u * u).sum(1), (w * u).sum(1)
        if bias:  # E ≈ a U + b 1: the 2 x 2 normal equations per row
            su, se = u.sum(1), w.sum(1)
            det = uu * d - su * su
            ok = np.abs(det) > 1e-12 * np.maximum(uu * d, 1e-300)
            a = np.where(ok, (eu * d - su * se) / np.where(ok, det, 1), 0.0)
            b = np.where(ok, (uu * se - su * eu) / np.where(ok, det, 1), se / d)
            v_, w_ = a, b
        else:
            v_, w_ = np.where(uu > 0, eu / np.where(uu > 0, uu, 1), 0.0), None
        return cls._stored(rows, torch.from_numpy(w[rep]).float(), torch.from_numpy(v_).float(),
                           None if w_ is None else torch.from_numpy(w_).float())

    @classmethod
    def _stored(cls, rows: int, u: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None) -> "MEmComInt8Embedding":
        table = cls(rows, u.shape[1], u.shape[0], bias=w is not None)
        table.U = QuantizedEmbedding._from_weight(u, bits=8)
        table.V = _half("V", v)
        if w is not None:
            table.W = _half("W", w)
        return table

    def config(self) -> dict[str, Any]:
        return {"num_buckets": self.num_buckets, "bias": self.bias}

    @classmethod
    def _size(cls, v: int, d: int, *, num_buckets: int, bias: bool = False, **_: Any) -> tuple[int, int]:
        m = check_int("num_buckets", num_buckets, 1, v)
        return 0, m * row_bytes(d, 8) + 2 * v * (2 if check_bool("bias", bias) else 1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, num_buckets={self.num_buckets}, bias={self.bias}"


def _half(name: str, x: torch.Tensor) -> torch.Tensor:
    out = x.half()
    if not bool(torch.isfinite(out).all()):
        i = int((~torch.isfinite(out)).nonzero()[0])
        raise SaecError(f"{name}[{i}] = {float(x[i])!r} is beyond float16's range; MEmCom's int8 form stores {name} "
                        f"in float16")
    return out


__all__ = ["MEmComInt8Embedding"]
