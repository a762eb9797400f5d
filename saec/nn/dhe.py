"""DHE: deep hash embedding, no table at all (Kang et al. 2021; survey §4.3, "Decomposition").

The survey: instead of learning and storing index vectors, DHE "develop[s] a hash encoder H: N -> R^m to map each
feature id into an index vector on the fly", ``H(x) = [h^1(x), ..., h^m(x)]`` for a group of hash functions, and
"decomposes the meta-table T into a multi-layer neural network". So ``E[i] = MLP(H(i))``: the parameters are the
network's, independent of the number of ids.

Choices where the description leaves room: the ``m`` hashes are the seeded Carter-Wegman family the other hashing
methods use (:func:`~saec.nn.base.universal_hash`) into ``[0, 10^6)`` (DHE's bucket count), each scaled to
``[-1, 1]`` (DHE's uniform encoding; it also offers a Gaussian one); the network has ``layers`` hidden layers of
``hidden`` units with Mish activations (DHE's choice) and a linear output, without DHE's batch normalisation (so
one id's vector does not depend on the rest of its batch, as with every other table here).

``activation="relu"`` is thomasahle/cce's ``DeepHashEmbedding`` ("The paper suggests using nn.Mish activation, but
in our experiments plain ReLU worked a lot better", cce/dhe.py). Without the batch normalisation the hidden
pre-activations start small (standard deviation about 1/3 here), where Mish is close to linear (slope 0.6 at 0),
so the network starts close to a linear map of the hash encoding; ReLU is piecewise linear at any scale.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from saec.nn.base import (CompressedEmbedding, check_choice, check_float, check_int, generator, hash_coefficients,
                          universal_hash)

BUCKETS = 10**6  # DHE's hash range
ACTIVATIONS = {"mish": nn.Mish, "relu": nn.ReLU}
"""Hidden-layer activations: DHE's Mish, or the ReLU of thomasahle/cce's DHE (module docstring)."""


def _check(d: int, num_hashes: Any, hidden: Any, layers: Any) -> tuple[int, int, int]:
    h = check_int("hidden", hidden, 1)
    return (h if num_hashes is None else check_int("num_hashes", num_hashes, 1), h, check_int("layers", layers, 1))


class DHEEmbedding(CompressedEmbedding):
    """``E[i] = MLP([h^1(i), ..., h^m(i)] scaled to [-1, 1])`` (module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        hidden: width of each hidden layer.
        num_hashes: hash functions, the encoding's width (m; None: the hidden width, so a budget grows both;
            DHE uses about 1,000). Each hash stores 16 bytes of coefficients.
        layers: hidden layers.
        activation: of the hidden layers, a key of :data:`ACTIVATIONS`.
        init_std: the output layer starts from N(0, init_std^2 / hidden) without bias, so initial vectors are of
            the size a table's ``init_std`` gives them.

    Parameters: ``m h + h + (layers - 1)(h^2 + h) + h e + e``; a buffer of ``2 m`` int64 hash coefficients.
    """

    batch_invariant = False  # the network's matrix products round differently for different batch shapes

    def __init__(self, num_embeddings: int, embedding_dim: int, hidden: int, num_hashes: int | None = None, layers: int = 1,
                 activation: str = "mish", *, seed: int = 0, init_std: float = 0.01) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.num_hashes, self.hidden, self.layers = _check(self.embedding_dim, num_hashes, hidden, layers)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        gen = generator(seed)
        self.register_buffer("hash_coeffs", hash_coefficients(gen, self.num_hashes))
        widths = [self.num_hashes] + [self.hidden] * self.layers
        blocks: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):  # skip_init: torch's own init would draw from the global RNG
            blocks += [nn.utils.skip_init(nn.Linear, a, b), ACTIVATIONS[self.activation]()]
        self.decoder = nn.Sequential(*blocks, nn.utils.skip_init(nn.Linear, widths[-1], self.embedding_dim))
        std = check_float("init_std", init_std, 0.0, math.inf)
        with torch.no_grad():  # hidden layers: torch's default init (uniform in +-1/sqrt(fan_in)), seeded from gen
            *hidden_layers, last = [m for m in self.decoder if isinstance(m, nn.Linear)]
            for layer in hidden_layers:
                bound = layer.in_features ** -0.5
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 2 * bound - bound)
            # the output layer N(0, init_std^2 / hidden), no bias: initial vectors of about a table's init_std
            last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * std / math.sqrt(self.hidden))
            last.bias.zero_()

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """The hash encoding of ids, ``(*ids.shape, m)`` in [-1, 1]: deterministic given the seed."""
        h = universal_hash(ids, self.hash_coeffs, BUCKETS)  # (m, *ids.shape)
        return (h.movedim(0, -1).float() / (BUCKETS - 1)) * 2 - 1

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(ids))

    @classmethod
    def _size(cls, v: int, d: int, *, hidden: int, num_hashes: int | None = None, layers: int = 1,
              activation: str = "mish", **_: Any) -> tuple[int, int]:
        m, h, n = _check(d, num_hashes, hidden, layers)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        return m * h + h + (n - 1) * (h * h + h) + h * d + d, 16 * m

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "num_hashes": self.num_hashes, "layers": self.layers, "activation": self.activation}

    def uses_sparse_gradients(self) -> bool:
        return False  # a dense network, no table to update sparsely

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, hidden={self.hidden}, num_hashes={self.num_hashes}, "
                f"layers={self.layers}, activation={self.activation}")


__all__ = ["ACTIVATIONS", "DHEEmbedding"]
