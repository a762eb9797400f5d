"""Simulated lower precision for accuracy studies (MEmCom §2.4 and App. A.2): float16 and row-wise integers.

:func:`simulate_quantization` answers "how accurate would this model be at ``bits`` of precision, and how
large would it then be?". It rounds every chosen parameter to the values that precision can hold and
writes those values back **as float32**: the returned model computes what a model reading the codes
would, but its tensors (and a file saved from it) are as large as before. The size it returns is what
packed storage would take. MEmCom App. A.2 quantizes every parameter, MEmCom's ``U``/``V`` and the dense
layers included, which this does (``scope="all"``) and packed tables, which replace whole embedding tables,
do not. For tables really stored packed (uint8 codes with a scale and bias per row), use
:class:`saec.nn.quantized.QuantizedEmbedding` or ``saec.compress(model, method="int8")``.

Integer quantization is torch's own row-wise affine scheme with float parameters
(``torch.per_channel_affine_float_qparams``, what ``torch.ao.nn.quantized.Embedding`` and TorchRec's
row-wise tables use): every row ``r`` of a matrix gets ``scale_r = (max_r - min_r) / (2^b - 1)`` and
``zero_point_r = -min_r / scale_r``, and stores ``q = round(x / scale_r + zero_point_r)`` in ``b`` bits
(``torch.quint8``, and ``quint4x2`` / ``quint2x4`` packing two / four codes per byte). A row's minimum
and maximum are therefore exact. Tensors with one column (MEmCom's ``V`` and ``W``, biases, OOV
vectors) are quantized as one row: one scale for the whole tensor, since a scale per single number
would cost more than the number. The returned model's weights hold the dequantized values
(``(q - zero_point) * scale``); the size counts those codes and their per-row scale and offset (float32
each).
"""

from __future__ import annotations

import copy
import warnings
from typing import NamedTuple

import torch
from torch import nn

BITS = (32, 16, 8, 4, 2)
"""Precisions :func:`simulate_quantization` offers: float32 (unchanged), float16, and 8, 4 or 2-bit integers."""
_QDTYPES = {8: torch.quint8, 4: torch.quint4x2, 2: torch.quint2x4}
SCOPES = ("embeddings", "all")


def quantize_rowwise(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` (n x d, d >= 2) as a torch quantized tensor with one (scale, zero point) per row.

    ``bits``: 8, 4 or 2. A constant row gets scale 1 (its value is then exact).
    """
    if bits not in _QDTYPES:
        raise ValueError(f"bits must be one of {sorted(_QDTYPES)} for integer quantization, got {bits!r}")
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a 2-D float tensor, got shape {tuple(weight.shape)} {weight.dtype}")
    w = weight.detach().float()
    lo, hi = w.aminmax(dim=1)
    scale = (hi - lo) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    with warnings.catch_warnings():  # torch marks quantized tensors deprecated; they still are its row-wise scheme
        warnings.simplefilter("ignore", UserWarning)
        return torch.quantize_per_channel(w, scale.double(), -lo / scale, 0, _QDTYPES[bits])


def quantized_nbytes(q: torch.Tensor) -> int:
    """Bytes of the packed codes plus a float32 scale and offset per row."""
    return q.untyped_storage().nbytes() + 8 * q.shape[0]


class QuantizedSize(NamedTuple):
    """Bytes a model would take at the simulated precision: all parameters and buffers, and those of the
    embedding collection."""

    nbytes: int
    embedding_nbytes: int


def simulate_quantization(model: nn.Module, bits: int,
                          scope: str = "embeddings") -> tuple[nn.Module, QuantizedSize]:
    """A float32 copy of ``model`` whose parameters hold the values ``bits`` of precision can represent,
    and the bytes the model would take stored at that precision.

    For accuracy studies: storage stays float32 (saving the copy takes as many bytes as the original);
    real packed tables are :class:`saec.nn.quantized.QuantizedEmbedding` (``saec.compress(model,
    method="int8")``).

    Args:
        model: a CTR model with an ``embeddings`` collection (:func:`saec.models.build_model`).
        bits: 32 (copy only), 16 (float16) or 8, 4, 2 (row-wise integers, see the module docstring).
        scope: ``"embeddings"`` quantizes the embedding collection (tables and OOV vectors) and keeps the
            dense layers in float32; ``"all"`` quantizes every parameter (dense weights per output row).
    """
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if not isinstance(getattr(model, "embeddings", None), nn.Module):
        raise TypeError(f"model must have an `embeddings` collection, got a {type(model).__name__}")
    out = copy.deepcopy(model)
    emb = {id(p) for p in out.embeddings.parameters()}
    total = emb_total = 0
    with torch.no_grad():
        for p in out.parameters():
            in_emb = id(p) in emb
            n = _quantize_(p, bits) if (in_emb or scope == "all") and p.is_floating_point() else _raw(p)
            total += n
            emb_total += n if in_emb else 0
        for b in out.buffers():
            total += _raw(b)
        emb_total += sum(_raw(b) for b in out.embeddings.buffers())
    return out, QuantizedSize(total, emb_total)


def _raw(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _quantize_(p: torch.Tensor, bits: int) -> int:
    """Replace ``p``'s values by their quantized-and-back values; return the quantized bytes."""
    if bits == 32 or p.numel() == 0:
        return _raw(p)
    if bits == 16:
        p.copy_(p.half().float())
        return 2 * p.numel()
    rows = p.reshape(p.shape[0], -1) if p.dim() >= 2 and p[0].numel() >= 2 else p.reshape(1, -1)
    q = quantize_rowwise(rows, bits)
    p.copy_(q.dequantize().reshape(p.shape))
    return quantized_nbytes(q)


__all__ = ["BITS", "QuantizedSize", "quantize_rowwise", "quantized_nbytes", "simulate_quantization"]
