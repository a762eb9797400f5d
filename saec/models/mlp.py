"""A plain multi-layer perceptron used by the CTR models, and the first layer over concatenated fields."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from saec.errors import SaecError


def mlp(in_dim: int, hidden: tuple[int, ...], dropout: float = 0.0, out_dim: int = 1) -> nn.Sequential:
    """``in_dim -> hidden... -> out_dim`` with ReLU (and optional dropout) between layers."""
    if in_dim < 1 or any(h < 1 for h in hidden):
        raise SaecError(f"layer widths must be positive, got in_dim={in_dim}, hidden={hidden}")
    if not 0.0 <= dropout < 1.0:
        raise SaecError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


@lru_cache(maxsize=64)
def split_columns(dims: tuple[int, ...], trained: tuple[bool, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of the concatenation that belong to frozen and to trained vectors."""
    cols: tuple[list[int], list[int]] = ([], [])
    start = 0
    for d, t in zip(dims, trained):
        cols[t].extend(range(start, start + d))
        start += d
    return torch.tensor(cols[0], dtype=torch.long), torch.tensor(cols[1], dtype=torch.long)


def concat_linear(vecs: list[torch.Tensor], *linears: nn.Linear) -> tuple[torch.Tensor, ...]:
    """``linear(torch.cat(vecs, 1))`` for each of ``linears``, with input gradients only where needed.

    Autograd through a concatenation computes the gradient of the whole (B, sum of dims) input as soon as
    one part needs it. When the retraining epoch freezes the fields the compression left full
    (:func:`saec.pipeline.flow.freeze_full_fields`), that is a (B x h) @ (h x sum of dims) product for
    columns nobody uses, a third of the first layer's backward. With some vectors frozen and some trained
    the layer is computed as two products, frozen columns and trained columns; outputs and weight gradients
    are the same up to float rounding (the sum is taken in another order). Otherwise it is the plain layer.
    """
    trained = tuple(v.requires_grad for v in vecs)
    if not torch.is_grad_enabled() or all(trained) or not any(trained):
        flat = torch.cat(vecs, dim=1)
        return tuple(lin(flat) for lin in linears)
    frozen_cols, trained_cols = split_columns(tuple(v.shape[1] for v in vecs), trained)
    x_frozen = torch.cat([v for v, t in zip(vecs, trained) if not t], dim=1)
    x_trained = torch.cat([v for v, t in zip(vecs, trained) if t], dim=1)
    out = []
    for lin in linears:
        w = lin.weight
        y = x_trained @ w.index_select(1, trained_cols).t()
        frozen = w.index_select(1, frozen_cols).t()
        out.append(y.addmm_(x_frozen, frozen) if lin.bias is None else torch.addmm(lin.bias, x_frozen, frozen) + y)
    return tuple(out)


def rest(layers: nn.Sequential, x: torch.Tensor, start: int = 1) -> torch.Tensor:
    """``layers[start:](x)`` without building a new ``Sequential`` on every call."""
    for layer in list(layers)[start:]:
        x = layer(x)
    return x
