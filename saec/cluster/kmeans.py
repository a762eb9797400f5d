"""k-means with faiss, Saec's three initialisations (§2.2.2), and chunked nearest-centroid assignment.

* ``random``: k distinct vectors chosen uniformly (faiss's random init).
* ``kmeans++``: Arthur & Vassilvitskii's D^2 seeding (faiss's native implementation); Saec's default.
* ``topk``: the k most frequent features' vectors (Saec's proposal), given to faiss as initial centroids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import faiss
import numpy as np

from saec.errors import SaecError

INITS = ("random", "kmeans++", "topk")
_FAISS_INIT = {"random": faiss.ClusteringInitMethod_RANDOM, "kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS}
ASSIGN_CHUNK = 1 << 20  # rows per nearest-centroid search: bounds the temporary memory


@dataclass
class KMeansResult:
    """Learned state of one k-means run."""

    centroids: np.ndarray  # float32 (k, d)
    objective: float  # sum of squared distances of the training vectors to their centroids
    seconds: float


def kmeans(x: np.ndarray, k: int, init: str = "kmeans++", niter: int = 25, seed: int = 0,
           counts: np.ndarray | None = None, init_centroids: np.ndarray | None = None,
           objective: bool = True) -> KMeansResult:
    """Lloyd's k-means on the rows of ``x`` (float32, (n, d)), all rows used (no subsampling).

    ``init="topk"`` starts from the ``k`` most frequent rows: by ``counts`` if given, else the first
    ``k`` rows (rows already ordered by decreasing frequency, as vocabulary ids are). ``init_centroids``
    ((k, d) floats, e.g. the previous period's codebook: a warm start) replaces ``init``.
    ``objective=False`` skips the search that computes :attr:`KMeansResult.objective` (left NaN) for a
    caller that assigns the same rows anyway (:func:`assign_objective`).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise SaecError(f"k-means needs a 2-D array, got shape {x.shape}")
    n, d = x.shape
    if init not in INITS:
        raise SaecError(f"init must be one of {INITS}, got {init!r}")
    if not 1 <= k <= n:
        raise SaecError(f"k must be in [1, {n}] for {n} vectors, got {k}")
    if niter < 1:
        raise SaecError(f"niter must be >= 1, got {niter}")
    if init_centroids is not None:
        init_centroids = np.ascontiguousarray(init_centroids, dtype=np.float32)
        if init_centroids.shape != (k, d) or not np.isfinite(init_centroids).all():
            raise SaecError(f"init_centroids must be {k} x {d} finite floats (k x dim), got shape "
                            f"{init_centroids.shape}")
    kwargs = dict(niter=niter, seed=seed, verbose=False, spherical=False,
                  max_points_per_centroid=-(-n // k) + 1, min_points_per_centroid=1)
    if init != "topk":
        kwargs["init_method"] = _FAISS_INIT[init]
    km = faiss.Kmeans(d, k, **kwargs)
    start = time.perf_counter()
    start_centroids = init_centroids
    if init == "topk" and init_centroids is None:
        start_centroids = x[:k] if counts is None else x[top_indices(counts, k)]
    km.train(x, init_centroids=start_centroids)
    seconds = time.perf_counter() - start
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    if not objective:
        return KMeansResult(centroids, float("nan"), seconds)
    # faiss reports the objective of the last assignment, before the final centroid update: recompute
    # it for the centroids we return so that it means what it says.
    distances, _ = _index(centroids).search(x, 1)
    return KMeansResult(centroids, float(distances.sum(dtype=np.float64)), seconds)


def top_indices(counts: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest counts, most frequent first (ties: lower index first), in O(len).

    Any integer, unsigned or float dtype: the sort key reverses the order without negating (``-x`` of an
    unsigned count wraps around and would put the rarest first; ``~x`` is exact for every integer type).
    NaN counts have no rank and are refused.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.dtype.kind not in "biuf":
        raise SaecError(f"counts must be a 1-D array of numbers, got shape {counts.shape} of {counts.dtype}")
    if counts.dtype.kind == "f":
        if np.isnan(counts).any():
            raise SaecError(f"counts hold NaN (first at id {int(np.flatnonzero(np.isnan(counts))[0])})")
        key = -counts
    else:
        key = ~counts.astype(np.uint8) if counts.dtype.kind == "b" else ~counts
    n = max(int(n), 0)
    if n >= len(counts):
        return np.argsort(key, kind="stable")
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    # argpartition alone would pick any of the rows tied at the cut: keep those with the lowest indices
    cut = np.partition(key, n - 1)[n - 1]
    above = np.flatnonzero(key < cut)
    part = np.concatenate([above, np.flatnonzero(key == cut)[: n - len(above)]])
    return part[np.lexsort((part, key[part]))]


def _index(centroids: np.ndarray) -> faiss.IndexFlatL2:
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index


def assign(x: np.ndarray, centroids: np.ndarray, out: np.ndarray | None = None,
           chunk: int = ASSIGN_CHUNK, what: str = "vectors") -> np.ndarray:
    """Index of the nearest centroid (squared L2) of every row of ``x``, computed ``chunk`` rows at a time.

    ``x`` may be a memory-mapped array; ``out`` (any integer dtype that holds ``len(centroids) - 1``)
    receives the labels, so a caller can write straight into a compact mask. Rows with NaN or infinity
    raise ``ValueError`` naming ``what`` and the row.
    """
    return assign_objective(x, centroids, None, out, chunk, what)[0]


def assign_objective(x: np.ndarray, centroids: np.ndarray, rows: np.ndarray | None, out: np.ndarray | None = None,
                     chunk: int = ASSIGN_CHUNK, what: str = "vectors",
                     seconds: dict[str, float] | None = None) -> tuple[np.ndarray, float]:
    """:func:`assign`, and the sum of squared distances to their nearest centroid of the rows ``rows``
    (sorted row indices; ``None``: every row): the k-means objective of the rows k-means trained on,
    from the same search instead of a second one over those rows. ``seconds``, if given, gets the seconds
    spent in faiss's search added to its ``"search_s"`` (the rest is reading ``x`` and storing labels)."""
    if x.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise SaecError(f"vectors of shape {x.shape} do not match centroids of dim {centroids.shape[1]}")
    n = x.shape[0]
    if out is None:
        out = np.empty(n, dtype=np.int64)
    elif out.shape != (n,):
        raise SaecError(f"out has shape {out.shape}, expected ({n},)")
    index = _index(centroids)
    objective = 0.0
    for start in range(0, n, chunk):
        block = np.ascontiguousarray(x[start : start + chunk], dtype=np.float32)
        searched = time.perf_counter()
        distances, labels = index.search(block, 1)
        if seconds is not None:
            seconds["search_s"] = seconds.get("search_s", 0.0) + time.perf_counter() - searched
        # faiss leaves the label at -1 when no distance compares below its start value, which is what a
        # NaN or infinite row gives; checking labels is much cheaper than scanning the block for them
        if (labels < 0).any():
            bad = ~np.isfinite(block).all(axis=1) | (labels[:, 0] < 0)
            row = start + int(np.flatnonzero(bad)[0])
            raise SaecError(f"{what}: row {row} holds NaN or infinity (or values too large for float32 distances)")
        out[start : start + len(block)] = labels[:, 0]
        if rows is None:
            objective += float(distances.sum(dtype=np.float64))
        else:
            lo, hi = np.searchsorted(rows, [start, start + len(block)])
            objective += float(distances[rows[lo:hi] - start, 0].sum(dtype=np.float64))
    return out, objective
