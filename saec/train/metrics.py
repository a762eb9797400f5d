"""Evaluation metrics: AUC and log loss (Saec §3.1), the same by feature frequency, nDCG@k (MEmCom §5.2), and a
metric's share of the gap between a floor and a ceiling."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from saec.errors import SaecError


def _as_binary(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise SaecError(f"labels ({y.shape[0]}) and scores ({p.shape[0]}) differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise SaecError("labels must be 0 or 1")
    if not np.isfinite(p).all():
        raise SaecError("scores contain NaN or infinity")
    return y, p


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve, ties counted half (Mann-Whitney U over average ranks)."""
    y, p = _as_binary(y_true, y_score)
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise SaecError("AUC needs both positive and negative labels")
    ranks = rankdata(p)  # average ranks for ties
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray, eps: float | None = None) -> float:
    """Mean binary cross-entropy of probabilities clipped to ``[eps, 1 - eps]``.

    ``eps`` defaults to the machine epsilon of the scores' float type, as scikit-learn does.
    """
    arr = np.asarray(y_prob)
    eps = np.finfo(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64).eps if eps is None else eps
    y, p = _as_binary(y_true, y_prob)
    if ((p < 0) | (p > 1)).any():
        raise SaecError("probabilities must lie in [0, 1]")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def ndcg_at_k(relevance: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean nDCG@k over queries (rows): gain ``rel`` discounted by ``log2(rank + 2)``.

    ``relevance`` and ``scores`` are (n_queries, n_items). Queries with no relevant item count 0, as in
    scikit-learn's ``ndcg_score``.
    """
    rel = np.atleast_2d(np.asarray(relevance, dtype=np.float64))
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if rel.shape != s.shape:
        raise SaecError(f"relevance {rel.shape} and scores {s.shape} differ in shape")
    if k < 1:
        raise SaecError(f"k must be >= 1, got {k}")
    k = min(k, s.shape[1])
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(rel, top, axis=1) * discount).sum(axis=1)
    ideal = (-np.sort(-rel, axis=1)[:, :k] * discount).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(ideal > 0, dcg / ideal, 0.0)
    return float(out.mean())


def ndcg_from_rank(rank: np.ndarray, k: int) -> float:
    """Mean nDCG@k when each query has exactly one relevant item at 0-based ``rank``."""
    r = np.asarray(rank, dtype=np.float64)
    return float(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0).mean())


def gap_share(value: float, floor: float, ceiling: float) -> float:
    """``(value - floor) / (ceiling - floor)``: 0 at the floor (a baseline's score), 1 at the ceiling (the best
    reachable, e.g. the Bayes-optimal AUC of the synthetic trace); below 0 is worse than the baseline."""
    if not all(math.isfinite(x) for x in (value, floor, ceiling)):
        raise SaecError(f"gap_share needs finite numbers, got value {value}, floor {floor}, ceiling {ceiling}")
    if ceiling <= floor:
        raise SaecError(f"gap_share: the ceiling ({ceiling}) must lie above the floor ({floor})")
    return float((value - floor) / (ceiling - floor))


FREQUENCY_EDGES = (1, 10, 100, 1000)
"""Default bucket edges of :func:`frequency_buckets`: training counts 1-9, 10-99, 100-999, >= 1000."""
OOV_BUCKET = "OOV (unseen)"
"""The label of :func:`frequency_buckets`' first bucket: samples whose feature is out of the vocabulary."""


def frequency_bucket_labels(edges: Sequence[int] = FREQUENCY_EDGES) -> list[str]:
    """The labels of :func:`frequency_buckets`' rows: :data:`OOV_BUCKET`, then ``"1"`` / ``"2-9"`` / ...
    ``">= 1000"``."""
    edges = _check_edges(edges)
    out = [OOV_BUCKET]
    for lo, hi in zip(edges, edges[1:]):
        out.append(f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}")
    return out + [f">= {edges[-1]}"]


def frequency_buckets(y_true: np.ndarray, ids: np.ndarray, counts: np.ndarray,
                      predictions: Mapping[str, np.ndarray],
                      edges: Sequence[int] = FREQUENCY_EDGES) -> list[dict[str, Any]]:
    """Log loss and AUC of each of ``predictions`` (name -> probabilities) on the samples bucketed by how
    often their feature occurred in training (Saec §3.2: rare features are where clustering may help or hurt).

    ``ids``: each sample's feature id in one single-valued field (negative: out of the vocabulary);
    ``counts``: the training count of every id. Buckets, in order: OOV, then counts in ``[edges[i],
    edges[i+1])``, then ``>= edges[-1]``; a feature counted fewer than ``edges[0]`` times falls in none. One row
    per bucket, empty ones included: ``bucket`` (:func:`frequency_bucket_labels`), ``n``, ``share`` of all
    samples, ``ctr`` and, per prediction, ``{"logloss": ..., "auc": ...}`` (NaN where the bucket is empty, AUC
    NaN where it holds one class only).
    """
    labels = frequency_bucket_labels(edges)
    edges = _check_edges(edges)
    y = np.asarray(y_true, dtype=np.float64).ravel()
    ids = np.asarray(ids)
    counts = np.asarray(counts)
    if ids.ndim != 1 or len(ids) != len(y):
        raise SaecError(f"ids must hold one feature id per sample ({len(y)}), got shape {ids.shape}")
    if len(ids) and ids.max() >= len(counts):
        raise SaecError(f"ids must lie below len(counts) = {len(counts)}, got {ids.max()}")
    for name, p in predictions.items():
        if np.shape(p) != y.shape:
            raise SaecError(f"predictions[{name!r}] has shape {np.shape(p)}, expected one per sample {y.shape}")
    cnt = np.where(ids >= 0, counts[np.maximum(ids, 0)], -1)
    bounds = [*edges, np.inf]
    selections = [ids < 0] + [(ids >= 0) & (cnt >= lo) & (cnt < hi) for lo, hi in zip(bounds, bounds[1:])]
    rows = []
    for label, sel in zip(labels, selections):
        n = int(sel.sum())
        row: dict[str, Any] = {"bucket": label, "n": n, "share": n / len(y) if len(y) else float("nan"),
                               "ctr": float(y[sel].mean()) if n else float("nan")}
        for name, p in predictions.items():
            p = np.asarray(p)[sel]
            row[name] = {"logloss": log_loss(y[sel], p) if n else float("nan"),
                         "auc": auc(y[sel], p) if 0 < y[sel].sum() < n else float("nan")}
        rows.append(row)
    return rows


def _check_edges(edges: Sequence[int]) -> list[int]:
    out = [int(e) for e in edges]
    if not out or out[0] < 1 or any(b <= a for a, b in zip(out, out[1:])):
        raise SaecError(f"edges must be increasing training counts >= 1, got {list(edges)}")
    return out
