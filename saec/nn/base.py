"""What every compressed table in :mod:`saec.nn` shares: the :class:`CompressedEmbedding` contract
(a drop-in for ``nn.Embedding`` that knows its true size), the seeded universal hash, and argument checks.
"""

from __future__ import annotations

import abc
import inspect
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from saec.config import check_bool, check_choice, check_counts_array, check_float, check_int  # noqa: F401
from saec.errors import SaecError, SaecIndexError, SaecTypeError

PRIME = 2**31 - 1
"""Modulus of :func:`universal_hash` (a Mersenne prime: ``a * id`` stays below 2**62, inside int64)."""
MAX_EMBEDDINGS = PRIME
"""Largest ``num_embeddings`` a compressed table accepts (ids must stay below :data:`PRIME`)."""
MATERIALISE_ROWS = 2**16
"""Rows of a trained compressed table looked up at a time when a post-training method reads all of them."""


# -- argument checks (the shared ones live in saec.config) -----------------------------------
def check_counts(counts: Any, num_embeddings: int) -> np.ndarray | None:
    """Per-id observation counts as a float64 array of length ``num_embeddings`` (None passes through);
    NaN, infinite or negative counts are refused naming the first such id and its value."""
    if counts is None:
        return None
    arr = counts.detach().cpu().numpy() if isinstance(counts, torch.Tensor) else counts
    return check_counts_array("", arr, num_embeddings).astype(np.float64)


# -- shared building blocks -----------------------------------------------------------------------
def generator(seed: Any) -> torch.Generator:
    """A local generator, so building a table never touches the global RNG."""
    return torch.Generator().manual_seed(check_int("seed", seed, 0))


def seeded_table(gen: torch.Generator, rows: int, cols: int, std: float, sparse: bool) -> nn.Embedding:
    """A trainable ``rows x cols`` table drawn from N(0, std^2) with ``gen``."""
    std = check_float("init_std", std, 0.0, math.inf)
    return constant_table(torch.randn(rows, cols, generator=gen) * std, sparse)


def constant_table(weight: torch.Tensor, sparse: bool) -> nn.Embedding:
    """A trainable table starting at ``weight``."""
    return nn.Embedding.from_pretrained(weight, freeze=False, sparse=sparse)


def hash_coefficients(gen: torch.Generator, count: int, degree: int = 1) -> torch.Tensor:
    """``count`` seeded coefficient rows of a degree-``degree`` polynomial mod p, highest power first: a
    (count, degree + 1) int64 tensor, the leading coefficient in [1, p), the others in [0, p). Degree 1 gives the
    (a, b) pairs of ``a * id + b`` (drawn a first, then b)."""
    degree = check_int("degree", degree, 1)
    lead = torch.randint(1, PRIME, (count, 1), generator=gen, dtype=torch.int64)
    rest = torch.randint(0, PRIME, (count, degree), generator=gen, dtype=torch.int64)
    return torch.cat([lead, rest], dim=1)


def universal_hash(ids: torch.Tensor, coeffs: torch.Tensor, m: int) -> torch.Tensor:
    """``(poly(id) mod p) mod m`` for every coefficient row of ``coeffs`` (:func:`hash_coefficients`; with (a, b)
    rows ``poly(id) = a * id + b``): shape (len(coeffs), *ids.shape).

    Carter-Wegman universal hashing with p = 2**31 - 1; a row of k coefficients is a k-wise independent family
    (Wegman and Carter 1981). Evaluated by Horner's rule mod p, int64 throughout (each step ``h * id + c <
    2**62 + p``). Under degree 1, whether two ids collide depends only on their difference, so consecutive ids
    (saec's frequency-ranked ones) collide in a lattice, and how many of the most frequent ids share a bucket
    swings from seed to seed. Degree 2 breaks that (``h(x) - h(y) = (x - y)(a (x + y) + b)`` mod p).
    """
    shape = (-1, *([1] * ids.dim()))
    x = ids.unsqueeze(0)
    h = coeffs[:, 0].view(shape).expand(len(coeffs), *ids.shape)
    for j in range(1, coeffs.shape[1]):
        h = (h * x + coeffs[:, j].view(shape)) % PRIME
    return h % m


def count_below(sorted_ids: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``torch.searchsorted(sorted_ids, ids)`` (how many of the sorted, non-empty ``sorted_ids`` are below each
    id) as a branchless binary search: ceil(log2(n + 1)) gathers and comparisons, which ONNX has (it has no
    searchsorted)."""
    n = len(sorted_ids)
    below = torch.zeros_like(ids)
    step = 1 << (n.bit_length() - 1)
    while step:  # invariant: the first `below` entries are below the id; try to add `step` more
        more = below + step
        probe = sorted_ids[(more - 1).clamp(max=n - 1)].long()
        below = torch.where((more <= n) & (probe < ids), more, below)
        step >>= 1
    return below


def _plain(value: Any) -> Any:
    """``value`` as plain Python data (lists for sequences, Python scalars for numpy's)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def float_weight(module: nn.Module | torch.Tensor) -> torch.Tensor:
    """The (rows x dim) float32 weight of a trained table, detached (a view, not a copy, when already float32)."""
    from saec.nn.full import FullEmbedding

    if isinstance(module, torch.Tensor):
        weight = module
    elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        weight = module.weight
    elif isinstance(module, FullEmbedding):
        weight = module.T.weight
    else:
        raise SaecTypeError(f"from_float needs an nn.Embedding, nn.EmbeddingBag, FullEmbedding or a weight "
                            f"tensor, got a {type(module).__name__}")
    if weight.dim() != 2 or not weight.is_floating_point() or 0 in weight.shape:
        raise SaecError(f"the table's weight must be a non-empty 2-D float tensor, got shape {tuple(weight.shape)} "
                        f"{weight.dtype}")
    return weight.detach().float()


def param_count(module: nn.Module) -> int:
    """Number of parameters of ``module``, trainable or frozen (buffers such as hash coefficients or packed
    codes are not counted): what compression ratios "in parameters" count (MEmCom §5.1, "the number of
    parameters of all the layers")."""
    return sum(p.numel() for p in module.parameters())


class Footprint(NamedTuple):
    """What a table costs: trainable parameters, and bytes of parameters plus buffers."""

    params: int
    nbytes: int


class CompressedEmbedding(nn.Module, abc.ABC):
    """Base of the compressed drop-ins for ``nn.Embedding``: ``table(ids) -> (*ids.shape, embedding_dim)``.

    Subclasses implement :meth:`embed` (1-D ids, already checked to lie in ``[0, num_embeddings)``) and
    ``_size`` (the parameter count and buffer bytes a given set of hyperparameters gives, which
    :meth:`footprint` reports without building the table). Parameters are float32.

    Post-training methods (built from a trained float table: Saec, float16, row-wise integers) also
    implement ``_from_weight``, which :meth:`from_float` calls; the others are trained compressed from
    scratch and have only their constructor. ``name`` (set by :func:`saec.compress`, else None) is what
    error messages call the table.
    """

    name: str | None = None
    batch_invariant: bool = True
    """An id's vector is bit-for-bit the same in any batch. False for tables whose rows come out of matrix
    products over the batch (DHE's network), whose rounding depends on the batch's shape (within float32's)."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings = check_int("num_embeddings", num_embeddings, 1, MAX_EMBEDDINGS)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1)

    def label(self) -> str:
        """How messages name this table: its path in the model if known, else its kind and shape."""
        shape = f"{type(self).__name__}({self.num_embeddings} x {self.embedding_dim})"
        return f"table {self.name!r} ({shape})" if self.name else shape

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise as ``nn.Embedding`` would (but naming the table and the id) unless every id is valid."""
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
            kind = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise SaecTypeError(f"{self.label()}: ids must be an int64 or int32 tensor (as for nn.Embedding), got {kind}")
        if ids.numel():
            lo, hi = (int(x) for x in torch.aminmax(ids))
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise SaecIndexError(f"{self.label()}: id {bad} is out of range; ids must lie in "
                                     f"[0, {self.num_embeddings}) (got values in [{lo}, {hi}])")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        # contiguous: a column of a (N, fields) batch is a strided view, which some kernels (FBGEMM's) refuse
        return self.embed(ids.reshape(-1).long().contiguous()).reshape(*ids.shape, self.embedding_dim)

    @abc.abstractmethod
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, embedding_dim) vectors of N valid ids."""

    def param_count(self) -> int:
        """Number of parameters of the table (:func:`param_count`)."""
        return param_count(self)

    def nbytes(self) -> int:
        """True bytes of parameters and buffers (hash coefficients, id lists) together."""
        tensors = list(self.parameters()) + list(self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def uses_sparse_gradients(self) -> bool:
        """True if the table's lookups produce sparse gradients (it was built with ``sparse=True``)."""
        return any(isinstance(m, nn.Embedding) and m.sparse for m in self.modules())

    @classmethod
    def from_float(cls, module: nn.Module | torch.Tensor, *, budget: int | None = None, counts: Any = None,
                   **hyper: Any) -> "CompressedEmbedding":
        """This method's table built from a trained float table (post-training methods only).

        Args:
            module: an ``nn.Embedding``, ``nn.EmbeddingBag`` or :class:`~saec.nn.full.FullEmbedding`
                (its weight is read, never changed), or the (rows x dim) weight itself; or a trained table of
                another method (the method's training form, e.g. ``binary_ste`` for ``binary``: see
                ``_from_table``).
            budget: bytes the table may take; the method's size knob (Saec's ``k``) is set to the largest
                value that fits (see :mod:`saec.nn.registry`). Not together with that knob.
            counts: per-row frequencies (Saec clusters the most frequent rows); None means row order is
                frequency order (row 0 most frequent).
            **hyper: the method's hyperparameters.
        """
        if cls._from_weight.__func__ is CompressedEmbedding._from_weight.__func__:
            raise SaecTypeError(f"{cls.__name__} is trained compressed from scratch; it has no from_float "
                                f"(post-training methods: see saec.nn.registry.POST_TRAINING)")
        from saec.nn.full import FullEmbedding
        from saec.nn.registry import fit_for_class  # the registry knows every method's budget knob

        trained = isinstance(module, CompressedEmbedding) and not isinstance(module, FullEmbedding)
        if trained:  # a table trained in another method's form (binary_ste for binary, ...): _from_table reads it
            v, d = module.num_embeddings, module.embedding_dim
        else:
            weight = float_weight(module)
            v, d = weight.shape
        counts = check_counts(counts, v)
        if budget is not None:
            hyper = fit_for_class(cls, v, d, budget_bytes=budget, counts=counts, **hyper)
        if trained:
            return cls._from_table(module, counts=counts, **hyper)
        return cls._from_weight(weight, counts=counts, **hyper)

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None, **hyper: Any) -> "CompressedEmbedding":
        """(post-training methods) The table for a (v x d) float32 ``weight``; only overrides are called."""
        raise SaecTypeError(f"{cls.__name__} has no from_float")

    @classmethod
    def _from_table(cls, table: "CompressedEmbedding", *, counts: np.ndarray | None,
                    **hyper: Any) -> "CompressedEmbedding":
        """(post-training methods) The table for a trained compressed ``table`` of another method.

        By default its rows are materialised (:data:`MATERIALISE_ROWS` ids at a time, no gradients) and given to
        ``_from_weight``. A method whose training form is another table (:attr:`~saec.nn.registry.Method.trained_with`:
        ``binary`` of ``binary_ste``, ...) overrides this to read that form's own state.
        """
        with torch.no_grad():
            weight = torch.cat([table.embed(torch.arange(lo, min(lo + MATERIALISE_ROWS, table.num_embeddings)))
                                for lo in range(0, table.num_embeddings, MATERIALISE_ROWS)]).float()
        return cls._from_weight(weight, counts=counts, **hyper)

    def config(self) -> dict[str, Any]:
        """Plain keyword arguments (ints, floats, strings, bools, lists) from which :meth:`from_config`
        rebuilds a table of this structure; the weights are then loaded from a ``state_dict``.

        By default: every constructor argument except the ids and width (given apart), ``counts``, ``seed``
        and ``init_std`` (they only shape the initial weights), read from the attribute of the same name,
        plus ``sparse``. Tables whose structure depends on ``counts`` add what the counts decided.
        """
        skip = ("self", "num_embeddings", "embedding_dim", "counts", "seed", "init_std", "sparse")
        names = [n for n in inspect.signature(type(self)).parameters if n not in skip]
        out = {n: _plain(getattr(self, n)) for n in names}
        out["sparse"] = self.uses_sparse_gradients()
        return out

    @classmethod
    def from_config(cls, num_embeddings: int, embedding_dim: int, config: dict[str, Any]) -> "CompressedEmbedding":
        """A freshly initialised table with the structure :meth:`config` described."""
        return cls(num_embeddings, embedding_dim, **config)

    @classmethod
    def footprint(cls, num_embeddings: int, embedding_dim: int, **hyper: Any) -> Footprint:
        """(parameters, bytes) of the table these arguments build, without building it.

        Takes the constructor's keyword arguments; those that do not affect the size (``seed``,
        ``init_std``, ``sparse``) are ignored.
        """
        v = check_int("num_embeddings", num_embeddings, 1, MAX_EMBEDDINGS)
        d = check_int("embedding_dim", embedding_dim, 1)
        params, buffer_bytes = cls._size(v, d, **hyper)
        return Footprint(params, 4 * params + buffer_bytes)

    @classmethod
    @abc.abstractmethod
    def _size(cls, v: int, d: int, **hyper: Any) -> tuple[int, int]:
        """(parameter count, buffer bytes) for these hyperparameters."""


