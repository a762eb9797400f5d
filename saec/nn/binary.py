"""Binary embeddings with a scale: ``E[i] = s_i sign(T[i])`` (survey §2.1 "Binarization"; L2Q-GCN, Chen et al.
2021b, and HashGNN's straight-through sign, Tan et al. 2020).

The survey's L2Q-GCN rule: ``b = sign_ste(e)``, ``ê = mean(|e|) · b``: a full-precision row ``e`` is binarised on
the fly and scaled by its mean magnitude; the sign's zero gradient is replaced by the straight-through estimator.
Training keeps the full-precision table (the survey's "indirect optimization", Figure 3(b)); after training only the
bits and the scale are kept, 1 bit per weight plus one scale per row.

Two tables, one method:

* :class:`BinarySTEEmbedding` (registered ``binary_ste``): the training form, a float table ``T`` whose lookup is
  ``mean(|T[i]|) · sign(T[i])`` with the straight-through gradient. Its bytes are a full table's: it is what is
  trained, not what is served.
* :class:`BinaryEmbedding` (registered ``binary``, post-training, ``trained_with="binary_ste"``): the stored form,
  ``ceil(e / 8)`` bytes of packed sign bits and a float16 scale per row (``ceil(e / 8) + 2`` bytes: 4 bytes at
  ``e = 16``, 1/16 of float32). Built from a trained ``binary_ste`` table it reproduces that table's lookups up to
  the scale's float16 rounding; built from a plain float table it is the two-stage binarisation of Liu et al. 2014
  (sign after training), which the survey says loses accuracy the end-to-end form keeps.

Choices where the papers leave room: ``sign(0) = +1`` (so every weight is one bit); the straight-through gradient is
the identity clipped to ``|T| <= 1`` (the hard-tanh STE of binarised networks; with the default init every weight is
inside); the scale's own gradient flows (``d mean|T| / dT = sign(T) / e``), as autograd gives it; the scale is
stored as float16 (a float32 scale would cost 2 more bytes per row, 1/16 would no longer fit at ``e = 16``). The
table has no budget knob: its size is fixed by ``e``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_bool, check_int, generator, seeded_table


def _signs(weight: torch.Tensor) -> torch.Tensor:
    """+1 where ``weight >= 0``, else -1 (sign with sign(0) = +1)."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


def binarize(weight: torch.Tensor) -> torch.Tensor:
    """``mean(|w|) · sign(w)`` of every row, with the straight-through gradient (clipped to ``|w| <= 1``)."""
    clipped = weight.clamp(-1.0, 1.0)
    signs = clipped + (_signs(weight) - clipped).detach()  # forward: sign(w); backward: 1 where |w| <= 1
    return weight.abs().mean(dim=-1, keepdim=True) * signs


class BinarySTEEmbedding(CompressedEmbedding):
    """The training form: a float table ``T`` looked up as ``mean(|T[i]|) · sign_ste(T[i])`` (module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        seed, init_std: ``T`` is drawn from N(0, init_std^2).
        sparse: sparse gradients for ``T``.

    Parameters: ``v e`` (a full table: this is what is trained; :class:`BinaryEmbedding` is what is stored).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, seed: int = 0, init_std: float = 0.01,
                 sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.T = seeded_table(generator(seed), self.num_embeddings, self.embedding_dim, init_std,
                              check_bool("sparse", sparse))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return binarize(self.T(ids))

    @classmethod
    def _size(cls, v: int, d: int, **_: Any) -> tuple[int, int]:
        return v * d, 0


class BinaryEmbedding(CompressedEmbedding):
    """The stored form: packed sign bits and a float16 scale per row, ``E[i] = scale[i] · (±1)^bits[i]``.

    Built with :meth:`from_float` from a trained :class:`BinarySTEEmbedding` (its own bits and scales) or from any
    float table (two-stage binarisation); the constructor gives the all-``+0`` table of the structure, which
    ``load_state_dict`` fills.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        seed: accepted as every table built by :func:`saec.nn.registry.make_embedding` is; unused.

    Buffers: ``bits`` (uint8, v x ceil(e / 8); bit ``j % 8`` of byte ``j // 8`` is 1 where weight ``j`` is
    positive) and ``scale`` (float16, v). No trainable parameters.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, seed: int = 0) -> None:
        super().__init__(num_embeddings, embedding_dim)
        check_int("seed", seed, 0)
        self.register_buffer("bits", torch.zeros(self.num_embeddings, -(-self.embedding_dim // 8), dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros(self.num_embeddings, dtype=torch.float16))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        # integer division and remainder on int32, not shifts on uint8 (which the ONNX exporter mixes with int8)
        place = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.int32, device=ids.device)
        bits = torch.div(self.bits[ids].to(torch.int32).unsqueeze(-1), place, rounding_mode="floor") % 2
        signs = bits.flatten(-2)[:, :self.embedding_dim].float() * 2 - 1
        return self.scale[ids].float().unsqueeze(-1) * signs

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None = None) -> "BinaryEmbedding":
        """Two-stage binarisation of a (v x e) float32 table: sign bits, ``mean |row|`` scales (``counts`` unused)."""
        return cls._packed(weight)

    @classmethod
    def _from_table(cls, table: CompressedEmbedding, *, counts: np.ndarray | None = None) -> "BinaryEmbedding":
        """A trained ``binary_ste`` table's bits and scales (any other table: its rows, binarised)."""
        if isinstance(table, BinarySTEEmbedding):
            return cls._packed(table.T.weight.detach().float())
        return super()._from_table(table, counts=counts)

    @classmethod
    def _packed(cls, weight: torch.Tensor) -> "BinaryEmbedding":
        v, d = weight.shape
        if not bool(torch.isfinite(weight).all()):
            row = int((~torch.isfinite(weight).all(dim=1)).nonzero()[0])
            raise SaecError(f"row {row} of the weight has NaN or infinite values; binarisation needs finite rows")
        table = cls(v, d)
        positive = np.zeros((v, table.bits.shape[1] * 8), dtype=bool)
        positive[:, :d] = (weight >= 0).numpy()
        table.bits = torch.from_numpy(np.packbits(positive, axis=1, bitorder="little"))
        table.scale = weight.abs().mean(dim=1).half()
        return table

    def config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _size(cls, v: int, d: int, **_: Any) -> tuple[int, int]:
        return 0, v * (-(-d // 8) + 2)


__all__ = ["BinaryEmbedding", "BinarySTEEmbedding", "binarize"]
