"""Low-precision training: the table is stored as integer codes while it trains (survey §2.2, "Quantization").

The survey: unlike quantization-aware training, which keeps full-precision weights and quantizes them in the
forward pass, in low-precision training (LPT; Xu et al. 2021, Yang et al. 2020) "the weights are stored in the
format of integers at training ... The model takes the de-quantized weights as input and will quantize the
weights back into integers after the backward propagation. Since the input one-hot vectors of DLRMs are highly
sparse, only extremely small part of the embeddings will be de-quantized into floating-point values". ALPT (Li et
al. 2023) "proposes an adaptive low-precision training scheme to learn the quantization step size".

Both tables here keep ``E[i] = c[i] * step`` with integer codes ``c[i, j]`` in ``[-2^(b-1), 2^(b-1) - 1]`` (the
survey's uniform quantizer with its zero point at 0): a lookup dequantizes only the rows asked for. Training
happens inside backward: a ``torch.autograd.Function`` takes the gradient of the looked-up rows, sums it over
repeated ids (``index_add``), forms the float update ``w' = c * step - lr * g`` of each distinct row (plain SGD,
or row-wise Adagrad), and writes back ``c = clamp(SR(w' / step))``, where ``SR(x) = floor(x + u)``,
``u ~ U[0, 1)`` is stochastic rounding (unbiased: ``E[SR(x)] = x``), drawn from the table's own seeded
generator. The main optimizer never sees the codes. The eval / ``no_grad`` path is the plain gather times the step
(what ONNX export runs).

- :class:`LPTEmbedding` (``"lpt"``): the step is fixed (a hyperparameter, recorded in :meth:`config`). Its rule
  when none is given: ``step = init_std`` for 2 bits and ``step = 8 init_std / 2^(b-1)`` otherwise, so the codes
  span ``±8 init_std`` (trained MovieLens tables reach ``±17 init_std`` with outliers, 99% of their weights
  within ``±9 init_std``); a 2-bit table has only 4 levels, ``[-2, 1] init_std`` (an untuned first choice:
  no sweep of the step or of ``lr`` has been run yet). The table has no float parameter: its one ``torch.nn.Parameter``
  is empty (zero elements, zero bytes), there only so that autograd calls the update (a Function's backward
  runs only if one of its inputs requires a gradient).
- :class:`ALPTEmbedding` (``"alpt"``): the step is learnt by the main optimizer with ALPT's LSQ-style gradient.
  ALPT's own code (Hetu) does a second forward pass with ``Q(w') = step * clamp(round(w' / step))`` to get the
  loss's gradient at the re-quantized rows; a table cannot re-run the model, so the gradient of this step's
  rows stands in for it: ``dL/dstep = gs * sum g * dQ/dstep``, ``dQ/dstep = round(x) - x`` inside the range and
  the range's bound outside it (``x = w' / step``), ``gs = 1 / sqrt(n Q_P)`` (LSQ's scale; ``n`` the looked-up
  weights, ``Q_P = 2^(b-1) - 1``). The parameter is ``log_step`` (the step is ``exp(log_step)``, gradient by the
  chain rule): the main loop's Adagrad moves a parameter by about its learning rate whatever the gradient's
  scale, which would flip a raw step of 1e-3 negative in one update, while in log space it changes the step by
  about 1% per update. The codes are written back with the step before the optimizer's update (ALPT writes them
  with the new step); one float32 per table (per-row steps are not offered).

Choices where the papers leave room: codes of 8 and 16 bits are ``int8`` / ``int16`` tensors; 4 and 2-bit codes
are packed two and four to a ``uint8`` (offset by ``2^(b-1)``, the lowest bits first, rows padded to whole bytes),
so the buffer's bytes are the real ones. The initial codes are ``SR(N(0, init_std^2) / step)``, clamped. The
optimizer of the codes is plain SGD by default with ``lr = 10`` (the main loop averages the loss over a batch of
1,024, which makes an embedding row's gradient about 1e-5 on MovieLens-1M; untuned); ``optimizer="adagrad"`` is
row-wise Adagrad, ``acc_r += mean_j g_rj^2``, ``w'_r = w_r - lr g_r / (sqrt(acc_r) + 1e-10)``, ``lr = 0.01``,
with its per-row float32 accumulator a buffer counted in the bytes. Updates happen only in training mode with
gradients enabled; a backward pass of a table looked up twice in one forward applies the two updates one after
the other.
"""

from __future__ import annotations

import abc

import math
from typing import Any

import torch
from torch import nn

from saec.errors import SaecError
from saec.nn.base import CompressedEmbedding, check_choice, check_float, check_int, generator

BITS = (2, 4, 8, 16)
"""Code widths: 2 and 4 bits packed into bytes, 8 and 16 bits as int8 / int16."""
OPTIMIZERS = ("sgd", "adagrad")
DEFAULT_LR = {"sgd": 10.0, "adagrad": 0.01}
CLIP_STD = 8.0
"""The codes of more than 2 bits span ``±CLIP_STD init_std`` when no step is given."""
_EPS = 1e-10
_DTYPE = {16: torch.int16, 8: torch.int8}


def code_range(bits: int) -> tuple[int, int]:
    """Smallest and largest code of a ``bits`` table: ``-2^(b-1)`` and ``2^(b-1) - 1``."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def per_byte(bits: int) -> int:
    """Codes in one stored element: 4 (2 bits) or 2 (4 bits) to a uint8, else 1."""
    return 8 // bits if bits < 8 else 1


def row_bytes(embedding_dim: int, bits: int) -> int:
    """Bytes of one row of codes."""
    if bits >= 8:
        return embedding_dim * bits // 8
    return -(-embedding_dim // per_byte(bits))


def default_step(bits: int, init_std: float) -> float:
    """The step when none is given (module docstring): ``init_std`` for 2 bits, else ``8 init_std / 2^(b-1)``."""
    return float(init_std) if bits == 2 else CLIP_STD * float(init_std) / 2 ** (bits - 1)


def _check(bits: Any, optimizer: Any, lr: Any) -> tuple[int, str, float]:
    b = check_choice("bits", bits, BITS)
    opt = check_choice("optimizer", optimizer, OPTIMIZERS)
    rate = DEFAULT_LR[opt] if lr is None else check_float("lr", lr, 0.0, math.inf, lo_open=True)
    return b, opt, rate


class _LowPrecisionTable(CompressedEmbedding):
    """Codes times a step, updated inside backward (module docstring); subclasses say where the step lives."""

    updates_in_backward = True
    """The table's weights are changed by its own backward pass, not by an optimizer's step on parameters."""

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int, optimizer: str, lr: float | None,
                 seed: int, init_std: float, step: float) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.bits, self.optimizer, self.lr = _check(bits, optimizer, lr)
        self.lo, self.hi = code_range(self.bits)
        self.per_byte = per_byte(self.bits)
        self.gen = generator(seed)
        std = check_float("init_std", init_std, 0.0, math.inf)
        v, d = self.num_embeddings, self.embedding_dim
        dtype = _DTYPE.get(self.bits, torch.uint8)
        self.register_buffer("codes", torch.zeros(v, row_bytes(d, self.bits) if self.bits < 8 else d, dtype=dtype))
        self.register_buffer("accumulator", torch.zeros(v) if self.optimizer == "adagrad" else None)
        with torch.no_grad():
            init = torch.randn(v, d, generator=self.gen) * std
            self.write(torch.arange(v), self.round(init / step))

    # -- storage ---------------------------------------------------------------------------------
    def read(self, rows: torch.Tensor) -> torch.Tensor:
        """The integer codes of ``rows`` as an int32 ``(len(rows), d)`` tensor (unpacked)."""
        stored = self.codes[rows]
        if self.bits >= 8:
            return stored.to(torch.int32)
        # integer division and remainder (not shifts and masks): what ONNX Runtime runs on these types
        parts = torch.div(stored.to(torch.int32).unsqueeze(-1), self._place(), rounding_mode="floor") % (1 << self.bits)
        return parts.flatten(-2)[..., :self.embedding_dim] + self.lo

    def write(self, rows: torch.Tensor, codes: torch.Tensor) -> None:
        """Store the int codes ``codes`` (``(len(rows), d)``, already within the code range) at distinct ``rows``."""
        if self.bits >= 8:
            self.codes[rows] = codes.to(self.codes.dtype)
            return
        u = (codes.to(torch.int32) - self.lo)
        pad = self.codes.shape[1] * self.per_byte - self.embedding_dim
        if pad:
            u = torch.cat([u, u.new_zeros(len(u), pad)], dim=1)
        self.codes[rows] = (u.view(len(u), -1, self.per_byte) * self._place()).sum(-1).to(torch.uint8)

    def _place(self) -> torch.Tensor:
        """Place value of each code within its byte (the lowest bits first)."""
        return 2 ** (torch.arange(self.per_byte, dtype=torch.int32) * self.bits)

    def round(self, x: torch.Tensor) -> torch.Tensor:
        """Stochastic rounding of ``x`` (in units of the step) into the code range, with the table's generator."""
        x = x.clamp(self.lo, self.hi)
        return torch.floor(x + torch.rand(x.shape, generator=self.gen)).clamp(self.lo, self.hi)

    def dequantize(self) -> torch.Tensor:
        """The whole (v x d) table as float32 (for inspection and tests; lookups never build it)."""
        return self.read(torch.arange(self.num_embeddings)).float() * self.step_value()

    # -- lookups and the update ----------------------------------------------------------------------
    @abc.abstractmethod
    def step_value(self) -> torch.Tensor | float:
        """The step (the value of one code unit): lpt's fixed one, alpt's learnt one."""

    @abc.abstractmethod
    def _gate(self) -> nn.Parameter:
        """The parameter the update Function takes, so that autograd runs its backward."""

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return _LowPrecisionUpdate.apply(ids, self._gate(), self)
        return self.read(ids).float() * self.step_value()

    def step_gradient(self, x: torch.Tensor, g: torch.Tensor, lookups: int) -> torch.Tensor | None:
        """The gradient the gate parameter gets from an update of rows ``x = w' / step`` with gradients ``g``."""
        return None

    @torch.no_grad()
    def update(self, ids: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
        """Train the rows of ``ids`` (1-D) whose vectors got gradient ``grad`` ((N, d)); the gate's gradient."""
        rows, inverse = torch.unique(ids, return_inverse=True)
        g = torch.zeros(len(rows), self.embedding_dim, dtype=grad.dtype).index_add_(0, inverse, grad)
        step = float(self.step_value())
        step = step if abs(step) > _EPS else _EPS
        w = self.read(rows).float() * step
        if self.optimizer == "adagrad":
            self.accumulator[rows] += g.pow(2).mean(dim=1)
            w = w - self.lr * g / (self.accumulator[rows].sqrt().unsqueeze(1) + _EPS)
        else:
            w = w - self.lr * g
        x = w / step
        out = self.step_gradient(x, g, len(ids))
        self.write(rows, self.round(x))
        return out

    def config(self) -> dict[str, Any]:
        return {"bits": self.bits, "optimizer": self.optimizer, "lr": self.lr}

    def uses_sparse_gradients(self) -> bool:
        return False  # no gradient ever reaches an optimizer for the codes

    @classmethod
    def _size(cls, v: int, d: int, *, bits: int = 8, optimizer: str = "sgd", lr: float | None = None,
              **_: Any) -> tuple[int, int]:
        b, opt, _ = _check(bits, optimizer, lr)
        return cls._params(), v * row_bytes(d, b) + (4 * v if opt == "adagrad" else 0)

    @classmethod
    @abc.abstractmethod
    def _params(cls) -> int:
        """Trainable parameters (lpt: none; alpt: its step)."""

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, optimizer={self.optimizer}, "
                f"lr={self.lr:g}")


class _LowPrecisionUpdate(torch.autograd.Function):
    """Forward: the looked-up rows, codes times the step. Backward: the table's update of those rows."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, gate: torch.Tensor, table: _LowPrecisionTable) -> torch.Tensor:
        ctx.table = table
        ctx.save_for_backward(ids)
        ctx.gate_shape = gate.shape
        return table.read(ids).float() * float(table.step_value())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        gate_grad = ctx.table.update(ids, grad)
        return None, torch.zeros(ctx.gate_shape) if gate_grad is None else gate_grad.reshape(ctx.gate_shape), None


class LPTEmbedding(_LowPrecisionTable):
    """``E[i] = codes[i] * step`` with a fixed step, trained in integers (module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (d).
        bits: code width, 2, 4, 8 or 16.
        step: the quantization step (None: :func:`default_step` of ``bits`` and ``init_std``).
        optimizer: ``"sgd"`` or ``"adagrad"`` (row-wise; a float32 accumulator per row).
        lr: the codes' learning rate (None: 10 for SGD, 0.01 for Adagrad).
        init_std: initial weights N(0, init_std^2), stochastically rounded; sets the default step.

    Parameters: none (one empty gate, module docstring); buffers: the codes, ``v ceil(d b / 8)`` bytes (whole bytes
    per row), and for Adagrad ``4 v`` bytes.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, step: float | None = None,
                 optimizer: str = "sgd", lr: float | None = None, *, seed: int = 0, init_std: float = 0.01) -> None:
        b = check_choice("bits", bits, BITS)
        std = check_float("init_std", init_std, 0.0, math.inf)
        value = default_step(b, std) if step is None else check_float("step", step, 0.0, math.inf, lo_open=True)
        if value <= 0:
            raise SaecError(f"step must be positive: init_std={init_std!r} gives step {value!r}; give step=")
        super().__init__(num_embeddings, embedding_dim, b, optimizer, lr, seed, std, value)
        self.step = value
        self.gate = nn.Parameter(torch.zeros(0))

    def step_value(self) -> float:
        return self.step

    def _gate(self) -> nn.Parameter:
        return self.gate

    def config(self) -> dict[str, Any]:
        return {**super().config(), "step": self.step}

    @classmethod
    def _params(cls) -> int:
        return 0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, step={self.step:g}"


class ALPTEmbedding(_LowPrecisionTable):
    """``E[i] = codes[i] * exp(log_step)`` trained in integers, the step learnt (ALPT; module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (d).
        bits: code width, 2, 4, 8 or 16.
        optimizer: the codes' optimizer, ``"sgd"`` or ``"adagrad"`` (row-wise; a float32 accumulator per row).
        lr: the codes' learning rate (None: 10 for SGD, 0.01 for Adagrad); the step's is the main optimizer's.
        init_std: initial weights N(0, init_std^2), stochastically rounded; the step starts at
            :func:`default_step`.

    Parameters: 1 (``log_step``); buffers: the codes, ``v ceil(d b / 8)`` bytes, and for Adagrad ``4 v`` bytes.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, optimizer: str = "sgd",
                 lr: float | None = None, *, seed: int = 0, init_std: float = 0.01) -> None:
        b = check_choice("bits", bits, BITS)
        std = check_float("init_std", init_std, 0.0, math.inf)
        step = default_step(b, std)
        if step <= 0:
            raise SaecError(f"init_std must be positive for alpt (it sets the initial step), got {init_std!r}")
        super().__init__(num_embeddings, embedding_dim, b, optimizer, lr, seed, std, step)
        self.log_step = nn.Parameter(torch.tensor(math.log(step)))

    def step_value(self) -> torch.Tensor:
        return self.log_step.exp()

    def _gate(self) -> nn.Parameter:
        return self.log_step

    def step_gradient(self, x: torch.Tensor, g: torch.Tensor, lookups: int) -> torch.Tensor:
        """ALPT's LSQ gradient of the step (module docstring), times ``step`` for ``log_step``."""
        dq = torch.where(x <= self.lo, float(self.lo), torch.where(x >= self.hi, float(self.hi), torch.round(x) - x))
        scale = 1.0 / math.sqrt(max(lookups * self.embedding_dim, 1) * max(self.hi, 1))
        return (g * dq).sum() * scale * self.log_step.detach().exp()

    @classmethod
    def _params(cls) -> int:
        return 1


__all__ = ["ALPTEmbedding", "BITS", "LPTEmbedding", "code_range", "default_step", "row_bytes"]
