"""One factory for every compressed table: :func:`make_embedding` by method name, and :func:`from_float`
for the post-training methods (:data:`POST_TRAINING`: Saec, float16, row-wise integers, Saec with an int8
codebook), which are built from a trained float table.

A method is built either from explicit hyperparameters or from a budget (``budget_params`` trainable
parameters, or ``budget_bytes`` bytes of parameters and buffers). For a budget, one size knob of the
method (:attr:`Method.knobs`, e.g. MEmCom's ``num_buckets``) is set to the value whose table is the
largest not exceeding the budget, the other hyperparameters staying as given (or at their defaults).
``"full"``, the uncompressed reference, has no knob: a budget only checks that it fits.
Sizes come from the classes' :meth:`~saec.nn.hashing.CompressedEmbedding.footprint`, so nothing is
allocated while searching.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import partial
from numbers import Real
from typing import Any, Callable, Mapping, Sequence

from saec.errors import SaecError, SaecTypeError
from saec.nn.binary import BinaryEmbedding, BinarySTEEmbedding
from saec.nn.cce import CCEEmbedding
from saec.nn.clustered import ClusteredEmbedding, QuantizedClusteredEmbedding
from saec.nn.dhe import DHEEmbedding
from saec.nn.double_hashing import DoubleHashEmbedding
from saec.nn.dpq import DPQEmbedding, DPQTrainEmbedding
from saec.nn.factorized import FactorizedEmbedding
from saec.nn.freq_dim import FrequencyGroupEmbedding
from saec.nn.full import FullEmbedding
from saec.nn.base import CompressedEmbedding, Footprint, check_int
from saec.nn.hashing import HashEmbedding
from saec.nn.low_dim import LowDimEmbedding
from saec.nn.lpt import ALPTEmbedding, LPTEmbedding
from saec.nn.memcom import MEmComEmbedding
from saec.nn.memcom_int8 import MEmComInt8Embedding
from saec.nn.mixed_dim import MixedDimEmbedding
from saec.nn.pep import PEPTrainEmbedding, PrunedEmbedding
from saec.nn.pq import ProductQuantizedEmbedding
from saec.nn.qr import QREmbedding
from saec.nn.quantized import QuantizedEmbedding
from saec.nn.robe import RobeEmbedding
from saec.nn.truncate import TruncateEmbedding
from saec.nn.tt import TTEmbedding

_OWN_ARGS = ("self", "num_embeddings", "embedding_dim", "counts", "seed")


@dataclass(frozen=True)
class Knob:
    """A hyperparameter a budget can set, with its candidate ``values(v, e)``.

    ``monotone``: the values are increasing and the table never shrinks as the value grows, so a binary
    search finds the best one; otherwise every value is tried.
    """

    name: str
    values: Callable[[int, int], Sequence[Any]]
    monotone: bool = True


@dataclass(frozen=True)
class Method:
    """How :func:`make_embedding` builds one method.

    Attributes:
        cls: the table class.
        knobs: what a budget sets: the first of these the caller did not give that can meet the
            budget (the others keep their given or default values).
        description: one line for listings.
        fixed: hyperparameters the method name pins (not accepted from the caller).
        tied: hyperparameters that default to the value of the first knob.
        post_training: built from a trained float table (:func:`from_float`); its ``from_float``-only
            settings (Saec's ``top_n``, ``init``, ...) are hyperparameters too, but :func:`make_embedding`
            builds a fresh table of the structure only.
        trained_with: (post-training methods) the method trained from scratch whose trained tables this one
            is the stored form of (``binary`` of ``binary_ste``): :func:`from_float` and :func:`saec.compress`
            take tables of that method as well as float ones, and benchmarks train that form first. None: the
            method compresses trained float tables.
        retrain: the method retrains the model after storing its tables (PEP's retraining with the pruning mask
            fixed); benchmarks do, for as many epochs as the training form had.
    """

    cls: type[CompressedEmbedding]
    knobs: tuple[Knob, ...]
    description: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    tied: tuple[str, ...] = ()
    post_training: bool = False
    trained_with: str | None = None
    retrain: bool = False

    def structure(self) -> list[str]:
        """Constructor hyperparameters: what :func:`make_embedding` accepts as ``**hyper``."""
        params = inspect.signature(self.cls).parameters
        return [n for n in params if n not in _OWN_ARGS and n not in self.fixed]

    def hyperparameters(self) -> list[str]:
        """Every setting of this method: the structure, plus for a post-training method how it is fitted."""
        names = self.structure()
        if self.post_training:
            fitted = inspect.signature(self.cls._from_weight).parameters
            names += [n for n in fitted if n not in ("weight", "counts") and n not in names and n not in self.fixed]
        return names

    def accepts_counts(self) -> bool:
        return "counts" in inspect.signature(self.cls).parameters


def _dims(v: int, d: int) -> range:
    return range(1, d + 1)


def _alphas(v: int, d: int) -> list[float]:
    return [a / 100 for a in range(101)]


_BUCKETS = Knob("num_buckets", lambda v, d: range(1, v + 1))

METHODS: dict[str, Method] = {
    "full": Method(FullEmbedding, (), "uncompressed v x e table, the reference (no knob)"),
    "saec": Method(ClusteredEmbedding, (Knob("k", lambda v, d: range(1, v + 1)),),
                   "k-means codebook + per-feature mask (Saec, Wu et al.); a budget sets k", post_training=True),
    "saec_int8": Method(QuantizedClusteredEmbedding, (Knob("k", lambda v, d: range(1, v + 1)),),
                        "Saec with a row-wise int8 codebook; a budget sets k", fixed={"bits": 8}, post_training=True),
    "pq": Method(ProductQuantizedEmbedding, (Knob("num_subspaces", _dims, monotone=False),),
                 "product quantization: each row as M codes into per-subspace codebooks (faiss; survey §4.2); a "
                 "budget sets M", post_training=True),
    "fp16": Method(QuantizedEmbedding, (), "float16 copy of a trained table (MEmCom A.2)", fixed={"bits": 16},
                   post_training=True),
    "int8": Method(QuantizedEmbedding, (), "row-wise 8-bit codes + float32 scale and bias per row (torch's "
                   "quantized embedding-bag layout)", fixed={"bits": 8}, post_training=True),
    "int4": Method(QuantizedEmbedding, (), "row-wise 4-bit codes + float16 scale and bias per row (even dim)",
                   fixed={"bits": 4}, post_training=True),
    "int2": Method(QuantizedEmbedding, (), "row-wise 2-bit codes + float16 scale and bias per row (dim % 4 == 0)",
                   fixed={"bits": 2}, post_training=True),
    "hashing": Method(HashEmbedding, (_BUCKETS,), "naive hashing, T[i mod m] (Weinberger et al.)"),
    "double_hashing": Method(DoubleHashEmbedding, (_BUCKETS,), "two universal hashes, concatenated (Zhang et al.)",
                             fixed={"num_frequent": 0}),
    "freq_double_hashing": Method(DoubleHashEmbedding, (_BUCKETS,),
                                  "the k most frequent features own a row, the rest are double-hashed "
                                  "(Zhang et al.); k defaults to num_buckets", tied=("num_frequent",)),
    # QR's size (m + ceil(v/m)) e is smallest near m = sqrt(v) and grows with m from there
    "qr": Method(QREmbedding, (Knob("num_buckets", lambda v, d: range(math.isqrt(v - 1) + 1, v + 1)),),
                 "quotient-remainder, U[i mod m] (op) V[i // m] (Shi et al.)"),
    "memcom": Method(MEmComEmbedding, (_BUCKETS,), "U[i mod m] * V[i] (+ W[i]) (Pansare et al., Algorithms 2, 3)"),
    "robe": Method(RobeEmbedding, (Knob("memory_size", lambda v, d: range(1, v * d + 1)),),
                   "every weight in one shared circular array, blocks at hashed offsets (ROBE, Desai et al.)"),
    "truncate": Method(TruncateEmbedding, (Knob("num_kept", lambda v, d: range(0, v)),),
                       "the m most frequent features own a row, the rest share one"),
    "low_dim": Method(LowDimEmbedding, (Knob("low_dim", _dims),),
                      "smaller dimension, projected (or zero-padded) to the field dimension"),
    "factorized": Method(FactorizedEmbedding, (Knob("hidden", _dims),), "low rank U (v x h) @ V (h x e) (ALBERT)"),
    "mixed_dim": Method(MixedDimEmbedding, (Knob("alpha", _alphas, monotone=False),
                                            Knob("base_dim", _dims, monotone=False)),
                        "popularity blocks of decreasing dimension, projected (Ginart et al.); a budget sets "
                        "alpha, or base_dim if alpha is given or cannot meet it"),
    "tt": Method(TTEmbedding, (Knob("rank", lambda v, d: range(1, 2**16 + 1)),),
                 "tensor-train cores (TT-Rec, Yin et al.)"),
    "dhe": Method(DHEEmbedding, (Knob("hidden", lambda v, d: range(1, 2**16 + 1)),),
                  "no table: an MLP of m hashes of the id (deep hash embedding, Kang et al.); a budget sets the width "
                  "(and m, which defaults to it)"),
    "dpq_train": Method(DPQTrainEmbedding, (), "the training form of dpq: a query table whose sub-vectors are looked "
                        "up as their nearest centroids (frequency groups limited to the first n_g), straight-through "
                        "(DPQ, MGQE; survey §4.2); the query table's and the codebooks' bytes"),
    "dpq": Method(DPQEmbedding, (Knob("num_subspaces", _dims, monotone=False),),
                  "differentiable product quantization stored: bit-packed codes (fewer bits for rarer groups, MGQE) + "
                  "per-subspace codebooks, from a trained dpq_train (or any float) table (survey §4.2); a budget sets M",
                  post_training=True, trained_with="dpq_train"),
    "binary_ste": Method(BinarySTEEmbedding, (), "the training form of binary: a float table looked up as mean|row| "
                         "* sign(row), straight-through gradient (L2Q-GCN; survey §2.1); a full table's bytes"),
    "binary": Method(BinaryEmbedding, (), "1 bit per weight + a float16 scale per row, from a trained binary_ste (or "
                     "any float) table (survey §2.1)", post_training=True, trained_with="binary_ste"),
    "memcom_int8": Method(MEmComInt8Embedding, (_BUCKETS,), "MEmCom with a row-wise int8 U and float16 V, W, from a "
                          "trained memcom (or any float) table (survey §5.2 hybrid; MEmCom App. A.2); a budget sets m",
                          post_training=True, trained_with="memcom"),
    "freq_dim": Method(FrequencyGroupEmbedding, (Knob("base_dim", _dims, monotone=False),),
                       "groups by cumulative frequency share, predefined widths base_dim * (1, 1/2, 1/4, 1/8) "
                       "projected (CpRec, Sun et al.); a width-0 group shares one row; a budget sets base_dim"),
    "cce": Method(CCEEmbedding, (Knob("k", lambda v, d: range(1, v + 1)),),
                  "clustered compositional embeddings: c columns, each a k-means codebook row (per-id index) plus a "
                  "hashed residual row, re-clustered during training (CCE, Tsang & Ahle); a budget sets k"),
    "lpt": Method(LPTEmbedding, (Knob("bits", lambda v, d: (2, 4, 8, 16)),),
                  "low-precision training: integer codes times a fixed step, updated inside backward with "
                  "stochastic rounding (Xu et al., Yang et al.; survey §2.2); a budget sets the bits"),
    "alpt": Method(ALPTEmbedding, (Knob("bits", lambda v, d: (2, 4, 8, 16)),),
                   "adaptive low-precision training: lpt with the step learnt by an LSQ-style gradient (ALPT, "
                   "Li et al.); a budget sets the bits"),
    "pep_train": Method(PEPTrainEmbedding, (), "the training form of pep: sign(v) * relu(|v| - sigmoid(s)), a "
                        "learnable threshold per dimension (PEP, Liu et al.; survey §3.2); a full table's bytes"),
    "pep": Method(PrunedEmbedding, (Knob("nnz", lambda v, d: range(0, v * d + 1)),),
                  "the nnz largest weights of a trained pep_train (or any float) table, stored sparse (int32 position + "
                  "float32 value each; retrainable with the mask fixed); a budget sets nnz",
                  post_training=True, trained_with="pep_train", retrain=True),
}
POST_TRAINING: tuple[str, ...] = tuple(name for name, spec in METHODS.items() if spec.post_training)
"""Methods built from a trained float table with :func:`from_float`."""
FROM_SCRATCH: tuple[str, ...] = tuple(name for name, spec in METHODS.items() if not spec.post_training)
"""Methods whose tables are trained compressed from the start (and ``"full"``, their reference)."""
TRAINING_FORMS: tuple[str, ...] = tuple(spec.trained_with for spec in METHODS.values() if spec.trained_with)
"""Methods trained from scratch whose tables a post-training method stores (``binary_ste`` for ``binary``)."""


# MEmCom's comparators (Pansare et al., §5): report label -> (method in METHODS, fixed hyperparameters); the
# benchmarks set the remaining knob from a budget. "Reduce embedding dim" is low_dim with zero padding: the
# network sees narrower vectors (a learned projection would make it the same model as "factorized").
PAPER_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "memcom": ("memcom", {"bias": False}),
    "memcom_bias": ("memcom", {"bias": True}),
    "hashing": ("hashing", {}),
    "double_hashing": ("double_hashing", {}),
    "freq_double_hashing": ("freq_double_hashing", {}),
    "qr_mult": ("qr", {"operation": "mult"}),
    "qr_concat": ("qr", {"operation": "concat"}),
    "truncate": ("truncate", {}),
    "low_dim": ("low_dim", {"projection": "pad"}),
    "factorized": ("factorized", {}),
    "mixed_dim": ("mixed_dim", {}),
    "tt": ("tt", {}),
}


def make_embedding(method: str, num_embeddings: int, dim: int, *, counts: Any = None, seed: int = 0,
                   budget_params: int | None = None, budget_bytes: int | None = None,
                   **hyper: Any) -> CompressedEmbedding:
    """Build a ``method`` table for ``num_embeddings`` ids and vectors of width ``dim``.

    Args:
        method: a name in :data:`METHODS`.
        counts: per-id counts, passed to the methods that use them (truncate, frequency-based double
            hashing, mixed dimensions, frequency groups) and ignored by the others.
        seed: seeds the table's initialisation (and hash functions).
        budget_params, budget_bytes: at most one; the method's knob is set to fit it (see the module
            docstring) and must not be given in ``hyper``.
        **hyper: the method's hyperparameters (:meth:`Method.hyperparameters`), plus ``init_std`` and
            ``sparse``.

    Raises:
        ValueError: unknown method or hyperparameter, bad values, both or neither of a knob and a
            budget, or a budget below the method's smallest table.
    """
    spec = _method(method)
    fitted_only = sorted(set(hyper) - set(spec.structure()) - set(spec.fixed) & set(spec.hyperparameters()))
    if fitted_only:
        raise SaecError(f"{fitted_only} of method {method!r} only apply when it is built from a trained table "
                        f"(saec.nn.registry.from_float or saec.compress); make_embedding builds a fresh one")
    hyper = fit_hyperparameters(method, num_embeddings, dim, counts=counts, budget_params=budget_params,
                                budget_bytes=budget_bytes, **hyper)
    extra = {"counts": counts} if spec.accepts_counts() else {}
    return spec.cls(num_embeddings, dim, **hyper, **extra, seed=seed)


def from_float(method: str, module: Any, *, budget: int | None = None, counts: Any = None,
               **hyper: Any) -> CompressedEmbedding:
    """A ``method`` table (one of :data:`POST_TRAINING`) built from the trained table ``module``.

    ``budget``: bytes the table may take (the method's knob, e.g. Saec's ``k``, is set to the largest value
    that fits; for float16 and the integer tables it is only checked). See
    :meth:`saec.nn.base.CompressedEmbedding.from_float`.
    """
    spec = _method(method)
    if not spec.post_training:
        raise SaecError(f"method {method!r} is trained compressed from scratch and cannot be built from a trained "
                        f"table; post-training methods are {list(POST_TRAINING)}")
    for name, value in spec.fixed.items():
        if hyper.get(name, value) != value:
            raise SaecError(f"method {method!r} pins {name}={value!r}, got {hyper[name]!r}")
    return spec.cls.from_float(module, budget=budget, counts=counts, **{**hyper, **spec.fixed})


def fit_for_class(cls: type, num_embeddings: int, dim: int, *, budget_bytes: int, counts: Any = None,
                  **hyper: Any) -> dict[str, Any]:
    """:func:`fit_hyperparameters` for the method whose class is ``cls`` (and whose pinned values ``hyper``
    holds); what a class's ``from_float(budget=...)`` uses."""
    for name, spec in METHODS.items():
        if spec.cls is cls and all(hyper.get(k, v) == v for k, v in spec.fixed.items()):
            return fit_hyperparameters(name, num_embeddings, dim, counts=counts, budget_bytes=budget_bytes, **hyper)
    raise SaecError(f"{cls.__name__} is not the class of any method in METHODS")


def fit_hyperparameters(method: str, num_embeddings: int, dim: int, *, counts: Any = None,
                        budget_params: int | None = None, budget_bytes: int | None = None,
                        **hyper: Any) -> dict[str, Any]:
    """The keyword arguments :func:`make_embedding` passes to the method's class (without building it)."""
    spec = _method(method)
    accepted = spec.hyperparameters()
    for name, value in hyper.items():
        if name in spec.fixed:  # a pinned value may be passed back (what this function returns), not changed
            if value != spec.fixed[name]:
                raise SaecError(f"method {method!r} pins {name}={spec.fixed[name]!r}, got {value!r}")
        elif name not in accepted:
            raise SaecError(f"method {method!r} has no hyperparameter {name!r}; it takes {accepted}")
    v = check_int("num_embeddings", num_embeddings, 1)
    d = check_int("dim", dim, 1)
    hyper = {**spec.fixed, **hyper}
    budgets = {name: b for name, b in (("budget_params", budget_params), ("budget_bytes", budget_bytes))
               if b is not None}
    if len(budgets) > 1:
        raise SaecError("give at most one of budget_params and budget_bytes")
    if not budgets and not spec.knobs:
        return dict(hyper)
    if not budgets:
        first = spec.knobs[0].name
        if first not in hyper and inspect.signature(spec.cls).parameters[first].default is inspect.Parameter.empty:
            raise SaecError(f"method {method!r} needs {first}= or a budget (budget_params= or budget_bytes=)")
        return _tie(spec, hyper)
    (budget_name, budget), = budgets.items()
    if isinstance(budget, bool) or not isinstance(budget, Real) or not 0 < budget < math.inf:
        raise SaecError(f"{budget_name} must be a positive number, got {budget!r}")
    extra = {"counts": counts} if spec.accepts_counts() else {}
    if not spec.knobs:  # nothing to turn: the one table either fits or not
        fp = spec.cls.footprint(v, d, **_structural(spec, hyper), **extra)
        got = fp.params if budget_name == "budget_params" else fp.nbytes
        if got > budget:
            unit = "parameters" if budget_name == "budget_params" else "bytes"
            raise SaecError(f"{budget_name}={budget} is too small for method {method!r}: its "
                             f"{num_embeddings} x {dim} table needs {got} {unit}")
        return dict(hyper)
    free = [k for k in spec.knobs if k.name not in hyper]
    if not free:
        names = " or ".join(f"{k.name}=" for k in spec.knobs)
        raise SaecError(f"give either {names} or {budget_name}= for method {method!r}, not both")

    def size(name: str, x: Any) -> int:
        fp = spec.cls.footprint(v, d, **_structural(spec, _tie(spec, {**hyper, name: x})), **extra)
        return fp.params if budget_name == "budget_params" else fp.nbytes

    for knob in free:  # the first knob that can meet the budget
        best = _largest_fitting(partial(size, knob.name), knob.values(v, d), budget, knob.monotone)
        if best is not None:
            return _tie(spec, {**hyper, knob.name: best})
    smallest = min(size(k.name, x) for k in free for x in (k.values(v, d)[:1] if k.monotone else k.values(v, d)))
    unit = "parameters" if budget_name == "budget_params" else "bytes"
    raise SaecError(f"{budget_name}={budget} is too small for method {method!r}: its smallest "
                     f"{num_embeddings} x {dim} table needs {smallest} {unit}")


def training_structure(method: str, num_embeddings: int, dim: int, *, budget_bytes: float, counts: Any = None,
                       **hyper: Any) -> dict[str, Any]:
    """The hyperparameters to train ``method``'s training form with (``dpq_train`` for ``dpq``) so that the trained
    table stores as the ``method`` table :func:`fit_hyperparameters` fits to ``budget_bytes`` (a trained table keeps
    its structure: the budget's knob, e.g. dpq's ``num_subspaces``, must be chosen before training).

    ``hyper``: the stored method's settings (those the training form also takes are passed on as well).
    """
    spec = _method(method)
    if not spec.trained_with:
        raise SaecError(f"method {method!r} has no training form; methods with one are "
                        f"{[n for n, s in METHODS.items() if s.trained_with]}")
    if not spec.knobs:  # a stored form of fixed size (binary): nothing to fit; it may not meet the budget (then it
        return {}        # is stored at its own size)
    fitted = fit_hyperparameters(method, num_embeddings, dim, counts=counts, budget_bytes=budget_bytes, **hyper)
    footprint(method, num_embeddings, dim, **fitted)  # the structure is valid
    form = METHODS[spec.trained_with].structure()
    return {name: value for name, value in fitted.items() if name in form}


def footprint(method: str, num_embeddings: int, dim: int, **hyper: Any) -> Footprint:
    """(parameters, bytes) of the ``method`` table these settings build, without building it (settings that
    do not shape the table, such as Saec's ``top_n``, are ignored); raises as the constructor would."""
    spec = _method(method)
    return spec.cls.footprint(num_embeddings, dim, **_structural(spec, {**spec.fixed, **hyper}))


def method_of(table: CompressedEmbedding) -> str:
    """The first :data:`METHODS` name whose class and pinned hyperparameters match ``table`` (double hashing
    without frequent rows is ``"double_hashing"``, with them ``"freq_double_hashing"``)."""
    for name, spec in METHODS.items():
        if type(table) is spec.cls and all(getattr(table, k, None) == v for k, v in spec.fixed.items()):
            return name
    raise SaecTypeError(f"a {type(table).__name__} is not a table of any method in METHODS")


def _method(method: str) -> Method:
    if method not in METHODS:
        raise SaecError(f"unknown method {method!r}; methods are {list(METHODS)}")
    return METHODS[method]


def _structural(spec: Method, hyper: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters that shape the table (what its size depends on)."""
    keep = set(spec.structure()) | set(spec.fixed) | {"init_std", "sparse"}
    return {k: v for k, v in hyper.items() if k in keep}


def _tie(spec: Method, hyper: dict[str, Any]) -> dict[str, Any]:
    knob = spec.knobs[0].name
    return {**{name: hyper[knob] for name in spec.tied if knob in hyper}, **hyper}


def _largest_fitting(size: Callable[[Any], int], values: Sequence[Any], budget: float, monotone: bool) -> Any:
    """The value whose size is largest without exceeding ``budget`` (ties: the later value); None if none fits."""
    if not monotone:
        fits = [(size(x), i) for i, x in enumerate(values)]
        fits = [f for f in fits if f[0] <= budget]
        return values[max(fits)[1]] if fits else None
    lo, hi = 0, len(values) - 1
    if size(values[lo]) > budget:
        return None
    if size(values[hi]) <= budget:
        return values[hi]
    while hi - lo > 1:  # invariant: size(values[lo]) <= budget < size(values[hi])
        mid = (lo + hi) // 2
        if size(values[mid]) <= budget:
            lo = mid
        else:
            hi = mid
    return values[lo]


__all__ = ["FROM_SCRATCH", "METHODS", "PAPER_VARIANTS", "POST_TRAINING", "TRAINING_FORMS", "Knob", "Method", "fit_for_class", "fit_hyperparameters",
           "footprint", "from_float", "make_embedding", "method_of", "training_structure"]
