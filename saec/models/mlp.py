"""A plain multi-layer perceptron used by the CTR models."""

from __future__ import annotations

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
