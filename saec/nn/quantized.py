"""Low-precision tables that really are small: float16, and row-wise 8, 4 or 2-bit integers stored packed.

Post-training uniform quantization per row (the survey's §2.2 "Quantization": ``w_hat = rd((w - q0) / Δ)``,
dequantized as ``w_hat * Δ + q0``; MEmCom App. A.2 reports float16 and 8-bit as nearly lossless, 4 and 2
bits as not). Each row ``r`` keeps a scale ``Δ_r = (max_r - min_r) / (2^b - 1)`` and a bias ``q0_r = min_r``.

Storage is exactly the layout of torch's CPU quantized embedding-bag operators (FBGEMM's fused row-wise
format), one ``uint8`` row per id:

- 8 bits (``torch.ops.quantized.embedding_bag_byte_prepack``): ``d`` codes, float32 scale, float32 bias:
  ``d + 8`` bytes;
- 4 bits (``embedding_bag_4bit_prepack``): two codes per byte, float16 scale, float16 bias:
  ``d / 2 + 4`` bytes (``d`` even);
- 2 bits (``embedding_bag_2bit_prepack``): four codes per byte, float16 scale and bias: ``d / 4 + 4``
  bytes (``d`` a multiple of 4).

Lookups dequantize only the rows asked for (``embedding_bag_*_rowwise_offsets``), and a pooled lookup
(:class:`saec.nn.bag.CompressedEmbeddingBag`) runs the fused operator over the packed rows. float16 is a
plain half-precision copy.

Precision (what the operators do, checked in tests/test_quantized.py): 8-bit rows are within ``Δ_r / 2``
of the float row and a constant row comes back exactly; 4 and 2-bit rows round the bias (the row's
minimum) and the scale to float16 first, so they are within ``Δ_r / 2`` plus that rounding, and a
constant row is exact when its value is a float16 number, otherwise within float16's rounding of it
(FBGEMM folds the bias's rounding into the scale, so it is often much closer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_choice, check_int

BITS = (16, 8, 4, 2)
"""Precisions of :class:`QuantizedEmbedding`: float16, and 8, 4 or 2-bit row-wise integers."""
_OP = {8: "byte", 4: "4bit", 2: "2bit"}  # torch.ops.quantized.embedding_bag_{_OP[bits]}_*
_CODES_PER_BYTE = {8: 1, 4: 2, 2: 4}
_SCALE_BIAS = {8: (torch.float32, 8), 4: (torch.float16, 4), 2: (torch.float16, 4)}  # dtype, bytes per row
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def _op(bits: int, kind: str):
    return getattr(torch.ops.quantized, f"embedding_bag_{_OP[bits]}_{kind}")


def _check_dim(d: int, bits: int) -> None:
    per_byte = _CODES_PER_BYTE.get(bits, 1)
    if d % per_byte:
        raise SaecError(f"embedding_dim must be a multiple of {per_byte} for bits={bits} (torch's {bits}-bit "
                        f"row-wise format packs {per_byte} codes per byte), got embedding_dim={d}")


def row_bytes(embedding_dim: int, bits: int) -> int:
    """Bytes one row of a ``bits`` table of width ``embedding_dim`` takes (codes plus scale and bias)."""
    check_choice("bits", bits, BITS)
    _check_dim(embedding_dim, bits)
    if bits == 16:
        return 2 * embedding_dim
    return embedding_dim // _CODES_PER_BYTE[bits] + _SCALE_BIAS[bits][1]


class QuantizedEmbedding(CompressedEmbedding):
    """A trained table at ``bits`` of precision, stored packed (see the module docstring for the layout).

    Built from a trained float table with :meth:`from_float` (``QuantizedEmbedding.from_float(emb, bits=4)``);
    the constructor gives the all-zero table of that structure, which ``load_state_dict`` fills (what
    :meth:`from_config` is for). It has no trainable parameters, only buffers: ``weight`` (float16,
    v x d) for ``bits=16``, else ``packed`` (uint8, v x :func:`row_bytes`).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (d); even for 4 bits, a multiple of 4 for 2 bits.
        bits: 16, 8, 4 or 2.
        seed: accepted as every table built by :func:`saec.nn.registry.make_embedding` is; unused (nothing
            here is random).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, *, seed: int = 0) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.bits = check_choice("bits", bits, BITS)
        check_int("seed", seed, 0)
        width = row_bytes(self.embedding_dim, self.bits)
        if self.bits == 16:
            self.register_buffer("weight", torch.zeros(self.num_embeddings, self.embedding_dim, dtype=torch.float16))
        else:
            self.register_buffer("packed", torch.zeros(self.num_embeddings, width, dtype=torch.uint8))

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None = None,
                     bits: int = 8) -> "QuantizedEmbedding":
        """The table of a (v x d) float32 ``weight`` (``counts`` unused: every row is quantized alike)."""
        v, d = weight.shape
        table = cls(v, d, bits=bits)
        _check_rows(torch.isfinite(weight).all(dim=1), weight, "NaN or infinite values")
        with torch.no_grad():
            if table.bits == 16:
                table.weight = weight.half()
                _check_rows(torch.isfinite(table.weight).all(dim=1), weight,
                            f"values beyond float16's range (±{_FLOAT16_MAX:g})")
            else:
                table.packed = _op(table.bits, "prepack")(weight.contiguous())
                scale, bias = table.scale_bias()
                _check_rows(torch.isfinite(scale) & torch.isfinite(bias), weight,
                            f"a range (max - min) or minimum too large for the {_SCALE_BIAS[table.bits][0]} "
                            f"scale and bias of bits={table.bits}")
        return table

    def scale_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, bias) of every row as float32 (v,) tensors, read from the packed rows (integer tables)."""
        if self.bits == 16:
            raise SaecError("a float16 table has no scale and bias (bits=16)")
        dtype, nbytes = _SCALE_BIAS[self.bits]
        sb = self.packed[:, -nbytes:].contiguous().view(dtype).float()
        return sb[:, 0], sb[:, 1]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.bits == 16:
            return F.embedding(ids, self.weight).float()  # F.embedding gathers half rows ~5x faster than weight[ids]
        # every id is its own bag of one: the operator dequantizes just these rows
        return _op(self.bits, "rowwise_offsets")(self.packed, ids, torch.arange(len(ids)))

    def pooled(self, ids: torch.Tensor, offsets: torch.Tensor, mode: str,
               per_sample_weights: torch.Tensor | None) -> torch.Tensor:
        """(bags, d) pooled vectors of valid ``ids`` in bags starting at ``offsets`` (as ``F.embedding_bag``).

        Integer tables sum with the fused operator over the packed rows; ``mean`` divides that sum by the
        bag sizes (an empty bag gives zeros). The operators ignore their ``mode`` argument (torch 2.13
        returns sums for mean and max alike), so ``max`` and float16 tables pool the looked-up rows.
        """
        if per_sample_weights is not None:
            per_sample_weights = per_sample_weights.float()
        if self.bits == 16 or mode == "max":
            return F.embedding_bag(torch.arange(len(ids)), self.embed(ids), offsets, mode=mode,
                                   per_sample_weights=per_sample_weights)
        ids, offsets = ids.long(), offsets.long()
        out = _op(self.bits, "rowwise_offsets")(self.packed, ids, offsets, False, 0, False, per_sample_weights)
        if mode == "mean":
            sizes = torch.diff(offsets, append=offsets.new_tensor([len(ids)]))
            out = out / sizes.clamp(min=1).unsqueeze(1)
        return out

    def dequantize(self) -> torch.Tensor:
        """The whole (v x d) table as float32 (for inspection and tests; lookups never build it)."""
        if self.bits == 16:
            return self.weight.float()
        return _op(self.bits, "unpack")(self.packed)

    def config(self) -> dict[str, Any]:
        return {"bits": self.bits}

    @classmethod
    def _size(cls, v: int, d: int, *, bits: int = 8, **_: Any) -> tuple[int, int]:
        return 0, v * row_bytes(d, bits)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}"


def _check_rows(ok: torch.Tensor, weight: torch.Tensor, what: str) -> None:
    """SaecError naming the first row of ``weight`` that is not ``ok`` and what is wrong with it."""
    if not bool(ok.all()):
        row = int((~ok).nonzero()[0])
        raise SaecError(f"row {row} of the weight has {what} (first values {weight[row][:8].tolist()}); a "
                        f"quantized table needs finite rows within its format's range")


__all__ = ["BITS", "QuantizedEmbedding", "row_bytes"]
