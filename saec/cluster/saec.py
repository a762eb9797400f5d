"""Saec: field-aware k-means compression of embedding tables (Saec §2.2, §2.4, §3.2).

For every field separately (fields may differ in vector length, §2.2.1):

* a field is clustered only if it has at least ``eligibility * k`` features (the paper: 100 * k);
  smaller fields stay full;
* fast clustering (§2.4) runs k-means on the ``top_n`` most frequent features only (the paper: the
  "100k most frequent", i.e. 100 * k, which is why its clustering time grows with k, §3.4) and then
  assigns *every* feature of the field to its nearest centroid, chunk by chunk so memory stays bounded;
  ``fast=False`` is vanilla k-means over all features;
* the result is a codebook (k x d) and a mask: one centroid index per feature, stored in the smallest
  integer type that holds k (1 byte for k <= 256, as in the paper's 27.7x arithmetic, §3.2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from saec.cluster.kmeans import INITS, assign_objective, kmeans, top_indices
from saec.config import check_bool, check_choice, check_counts_array, check_float, check_int
from saec.errors import SaecError

FLOAT_BYTES = 4  # float32 tables and codebooks
# Where a clustered field's seconds go (FieldCompression.phases): clustering = selecting the top-n by count +
# gathering those rows (and checking them finite) + faiss k-means; assignment = faiss's nearest-centroid
# search + the rest (reading the possibly memory-mapped rows, storing the mask)
CLUSTER_PHASES = ("top_n_s", "gather_s", "kmeans_s")
ASSIGN_PHASES = ("search_s", "read_s")


def mask_dtype(k: int) -> np.dtype:
    """Smallest integer type that holds centroid indices ``0 .. k-1``."""
    if k < 1:
        raise SaecError(f"k must be >= 1, got {k}")
    if k <= 1 << 8:
        return np.dtype(np.uint8)
    if k <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


@dataclass(frozen=True)
class SaecConfig:
    """Hyperparameters of Saec compression.

    Attributes:
        k: clusters (codebook rows) per clustered field; the paper settles on 100 (§3.4).
        eligibility: a field is clustered if it has at least ``eligibility * k`` features (§2.2.1: 100).
        top_n: features k-means runs on in fast clustering; ``None`` means ``100 * k`` (§2.4, §3.4).
        fast: fast clustering (k-means on the top_n, the rest assigned); ``False`` clusters every feature.
        init: centroid initialisation, ``"kmeans++"`` (the paper's choice), ``"random"`` or ``"topk"``.
        niter: Lloyd iterations.
        seed: seed of the initialisation.
    """

    k: int = 100
    eligibility: float = 100.0
    top_n: int | None = None
    fast: bool = True
    init: str = "kmeans++"
    niter: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        # every field's type and range before any table is read (a float niter would fail inside faiss)
        k = check_int("SaecConfig.k", self.k, 1)
        checked = {
            "k": k,
            "eligibility": check_float("SaecConfig.eligibility", self.eligibility, 1.0),
            "top_n": None if self.top_n is None else check_int("SaecConfig.top_n (at least k)", self.top_n, k),
            "fast": check_bool("SaecConfig.fast", self.fast),
            "init": check_choice("SaecConfig.init", self.init, INITS),
            "niter": check_int("SaecConfig.niter", self.niter, 1),
            "seed": check_int("SaecConfig.seed", self.seed, 0),
        }
        for name, value in checked.items():  # plain Python values (np.int64 k -> int); frozen dataclass
            object.__setattr__(self, name, value)

    @property
    def train_size(self) -> int:
        """Number of most frequent features fast clustering trains on."""
        return self.top_n if self.top_n is not None else 100 * self.k

    def min_features(self) -> int:
        """Smallest field that gets clustered."""
        return int(np.ceil(self.eligibility * self.k))


@dataclass
class FieldSize:
    """Size of one field before and after compression, counted as the paper counts it (§3.2):
    float32 vectors, plus one mask entry per feature for a clustered field."""

    name: str
    features: int
    dim: int
    k: int | None = None  # None: the field was not clustered

    @property
    def clustered(self) -> bool:
        return self.k is not None

    @property
    def vectors_before(self) -> int:
        return self.features

    @property
    def vectors_after(self) -> int:
        return self.k if self.clustered else self.features

    @property
    def bytes_before(self) -> int:
        return self.features * self.dim * FLOAT_BYTES

    @property
    def bytes_after(self) -> int:
        if not self.clustered:
            return self.bytes_before
        return self.k * self.dim * FLOAT_BYTES + self.features * mask_dtype(self.k).itemsize


@dataclass
class SizeReport:
    """Per-field and total sizes; ``ratio`` is bytes before / bytes after (the paper's 27.7x)."""

    fields: list[FieldSize]

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.fields)

    @property
    def ratio(self) -> float:
        return self.total("bytes_before") / self.total("bytes_after")

    @property
    def vector_ratio(self) -> float:
        return self.total("vectors_before") / self.total("vectors_after")


@dataclass
class FieldCompression:
    """What Saec did to one field: its size, and for a clustered field the codebook and mask."""

    size: FieldSize
    codebook: np.ndarray | None = None  # float32 (k, dim)
    mask: np.ndarray | None = None  # (features,) in mask_dtype(k)
    trained_on: int = 0  # vectors k-means ran on
    objective: float | None = None  # k-means objective on those vectors
    cluster_s: float = 0.0  # the sum of phases' CLUSTER_PHASES
    assign_s: float = 0.0  # the sum of phases' ASSIGN_PHASES
    phases: dict[str, float] = field(default_factory=dict)  # seconds of each phase (CLUSTER_PHASES, ASSIGN_PHASES)
    stats: dict = field(default_factory=dict)


def _check_table(name: str, weight: np.ndarray, counts: np.ndarray | None) -> np.ndarray | None:
    """Refuse a table that is not a non-empty 2-D float array and counts that cannot rank its rows."""
    if not hasattr(weight, "ndim") or weight.ndim != 2:
        raise SaecError(f"field {name!r}: the table must be a 2-D array (features x dim), "
                        f"got shape {getattr(weight, 'shape', None)}")
    if weight.dtype.kind != "f":
        raise SaecError(f"field {name!r}: the table must hold floats, got {weight.dtype}")
    if 0 in weight.shape:  # k-means on dim 0 dies in faiss with a floating-point exception
        raise SaecError(f"field {name!r}: the table has shape {tuple(weight.shape)}; expected at least one "
                        f"feature and dim >= 1")
    if counts is None:
        return None
    return check_counts_array(f"field {name!r}", counts, weight.shape[0])


def compress_field(name: str, weight: np.ndarray, counts: np.ndarray | None, cfg: SaecConfig,
                   init_centroids: np.ndarray | None = None) -> FieldCompression:
    """Saec on one field's table ``weight`` (features x dim; may be memory-mapped).

    ``counts`` are the features' frequencies; without them, feature ids are taken as frequency ranks
    (id 0 most frequent), which is how :class:`~saec.data.vocab.Vocabulary` numbers them.
    ``init_centroids`` warm-starts k-means (:func:`~saec.cluster.kmeans.kmeans`), e.g. from the field's
    previous codebook in the periodic loop.
    """
    counts = _check_table(name, weight, counts)
    n, dim = weight.shape
    if n < cfg.min_features():
        return FieldCompression(FieldSize(name, n, dim))
    t0 = time.perf_counter()
    rows = None  # the rows k-means trains on (None: all), whose distances give its objective
    fast = cfg.fast and cfg.train_size < n
    if fast:
        top = np.arange(cfg.train_size) if counts is None else top_indices(counts, cfg.train_size)
    t1 = time.perf_counter()
    if fast:
        rows = np.sort(top)  # read rows in storage order (memory-mapped tables), keep frequency order
        train, train_counts = np.empty((len(top), dim), dtype=weight.dtype), None
        train[np.argsort(top)] = weight[rows]
    else:
        train, train_counts = np.asarray(weight), counts
    if not np.isfinite(train).all():
        raise SaecError(f"field {name!r}: the table holds NaN or infinity")
    t2 = time.perf_counter()
    # the objective comes from the assignment below, which searches the training rows anyway
    result = kmeans(train.astype(np.float32, copy=False), cfg.k, cfg.init, cfg.niter, cfg.seed, counts=train_counts,
                    init_centroids=init_centroids, objective=False)
    t3 = time.perf_counter()
    seconds = {"search_s": 0.0}
    mask, objective = assign_objective(weight, result.centroids, rows, out=np.empty(n, dtype=mask_dtype(cfg.k)),
                                       what=f"field {name!r}", seconds=seconds)
    t4 = time.perf_counter()
    phases = {"top_n_s": t1 - t0, "gather_s": t2 - t1, "kmeans_s": t3 - t2, "search_s": seconds["search_s"],
              "read_s": t4 - t3 - seconds["search_s"]}
    return FieldCompression(FieldSize(name, n, dim, cfg.k), result.centroids, mask, len(train), objective,
                            t3 - t0, t4 - t3, phases)


def compress_tables(tables: Mapping[str, np.ndarray], counts: Mapping[str, np.ndarray] | None, cfg: SaecConfig,
                    progress: bool = False) -> dict[str, FieldCompression]:
    """:func:`compress_field` over every field of a table set (e.g. a parameter-server dump)."""
    counts = counts or {}
    unknown = sorted(set(counts) - set(tables))
    if unknown:
        raise SaecError(f"counts given for fields {unknown} that have no table; tables: {sorted(tables)[:10]}")
    out = {}
    for name in tqdm(list(tables), desc="fields", disable=not progress, mininterval=1.0):
        out[name] = compress_field(name, tables[name], counts.get(name), cfg)
    return out


def size_report(items: Iterable[FieldCompression | FieldSize]) -> SizeReport:
    """Sizes of a compression result (or of bare :class:`FieldSize` descriptions)."""
    return SizeReport([i.size if isinstance(i, FieldCompression) else i for i in items])
