"""The peer task: thomasahle/cce's MovieLens-1M GMF table, built as its ``examples/movielens.py`` and
``examples/dataset.py`` build it, so that its published AUCs (:data:`PUBLISHED`) can stand beside ours.

- Data: MovieLens-1M ratings; ratings of 3 dropped; label = rating >= 4. Per user, ratings sorted by time; the last
  two validate, the rest train (a user with two or fewer ratings is all validation, as the peer's split does).
  The peer sorts with pandas' default (not stable) sort; ties in a user's timestamps are broken here by the
  ratings' order in the file (a stable sort), which can only move tied ratings between the splits.
- Ids: the peer compacts raw ids to ``0..n-1`` over both splits; saec numbers them by decreasing frequency in the
  training split (its vocabulary convention, :mod:`saec.data.vocab`; ties by raw id), which relabels the rows and
  changes nothing for a full table. Methods that read counts get the training counts.
- Model: GMF, ``sigmoid(sum(u * v))`` with a user and an item table of width 32 (:class:`GMF`).
- Training: AdamW at its defaults (lr 1e-3, weight decay 0.01), BCE, batch 4096, a fresh shuffle each epoch, up to
  10 epochs with the peer's early stop (validation loss up by 1% and AUC down by 1% from the best); the peer's
  ReduceLROnPlateau (patience 10) cannot act within 10 epochs and is left out. The number reported is the best
  validation AUC over the epochs run (the peer's protocol: selection and report on the same split).
- Init: the peer draws a full table from uniform(+-1/sqrt(32)); saec's tables draw N(0, init_std^2), and every
  method that takes ``init_std`` gets that uniform's standard deviation, 1/sqrt(3 * 32).
- Methods of the peer's names take the peer's form of them where saec's default differs (:data:`PEER_FORMS`):
  ``low_dim``'s projection has a bias, ``dhe``'s hidden layers use ReLU.
- Budget: "parameters per dimension" (ppd): each table holds at most ``ppd * 32`` parameters (the peer counts
  parameters; index arrays and hash coefficients are not parameters), or the benchmark's own byte ratios.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

DIM = 32
BATCH = 4096
EPOCHS = 10
INIT_STD = 1 / math.sqrt(3 * DIM)
"""Standard deviation of the peer's uniform(+-1/sqrt(32)) initialisation."""
PEER_CHUNKS = 4
"""The peer's ``--n-chunks`` default (``examples/movielens.py``), which its ``make_embedding`` (``cce/__init__.py``)
turns into CCE's columns (``n_chunks``, each ``DIM / 4`` wide) and ROBE's chunks (``n_chunks`` hashed heads of
``DIM / 4`` weights each). At ppd 256 it is worth +0.075 AUC to CCE (one column: 0.718) and +0.06 to ROBE (one block
per row: 0.700)."""

PUBLISHED: dict[str, dict[int, float]] = {
    "full table": {256: 0.863, 1024: 0.863, 4096: 0.863},
    "CCE": {256: 0.777, 1024: 0.823, 4096: 0.850},
    "DHE": {256: 0.799, 1024: 0.834, 4096: 0.857},
    "TT": {256: 0.789, 1024: 0.829, 4096: 0.853},
    "ROBE": {256: 0.761, 1024: 0.818, 4096: 0.843},
    "CE (compositional)": {256: 0.724, 1024: 0.806, 4096: 0.850},
    "hashing": {256: 0.620, 1024: 0.724, 4096: 0.781},
    "low dimension": {256: 0.830, 1024: 0.855, 4096: 0.858},
}
"""Validation AUC (means of 3 seeds) published by thomasahle/cce for its MovieLens-1M GMF task, by ppd, as quoted
in issue 13; ``PEER_NAMES`` maps them to saec's methods."""
PEER_NAMES = {"full table": "full", "CCE": "cce", "DHE": "dhe", "TT": "tt", "ROBE": "robe",
              "CE (compositional)": None, "hashing": "hashing:hash=permutation", "low dimension": "low_dim"}
"""The saec method (with settings) of the same name as each published row; None: saec has no such method. The
peer's hashing is a linear hash of its compact MovieLens ids (numbered in raw-id order, unrelated to frequency):
consecutive ids spread evenly over the rows, so every row holds about as many ids, and which ids share a row has
nothing to do with how often they occur. saec's ids are ranked by frequency, which a linear hash
(``hashing:hash=universal``) maps in a lattice (:data:`saec.nn.hashing.DEGREES`), and a degree-2 one
(``hashing:hash=polynomial``) spreads like a random function, whose row loads are uneven; the form with both of
the peer's properties is the seeded permutation (``hashing:hash=permutation``). All three are run; the page lists
them beside the row."""
PEER_FORMS: dict[str, dict[str, Any]] = {"low_dim": {"projection": "affine"}, "dhe": {"activation": "relu"},
                                         "cce": {"columns": PEER_CHUNKS}, "robe": {"block": DIM // PEER_CHUNKS}}
"""Settings :meth:`CceGmf.method_hyper` gives these methods on this task, the peer's forms of them:
``low_dim`` projects with a bias (the peer's ``LowDimensionalEmbedding`` upscales with ``nn.Linear(dim0, dim1,
bias=True)``), ``dhe`` uses ReLU (``cce/dhe.py``), CCE and ROBE split the 32 dimensions into :data:`PEER_CHUNKS`
chunks (CCE's columns, ROBE's blocks of 8)."""


class GMF(nn.Module):
    """Generalized matrix factorisation: ``sigmoid(sum(user(u) * item(i)))`` (returns the logit; the loss and the
    metrics apply the sigmoid)."""

    def __init__(self, user: nn.Module, item: nn.Module) -> None:
        super().__init__()
        self.user = user
        self.item = item

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``batch``: (N, 2) int64 rows of (user id, item id)."""
        return (self.user(batch[:, 0]) * self.item(batch[:, 1])).sum(-1)


@dataclass
class Split:
    """Encoded samples: ``x`` (N, 2) int64 (user id, item id), ``y`` (N,) float32 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def _sorted_codes(column: Any) -> np.ndarray:
    """Each value's index among the column's distinct values in sorted order (``np.unique``'s inverse, by hashing
    instead of sorting a million strings)."""
    import pandas as pd

    return pd.factorize(column, sort=True)[0].astype(np.int64)


def _frequency_ids(codes: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of ``codes`` (:func:`_sorted_codes`) numbered by decreasing count in the training rows (ties by raw
    value), and the counts."""
    counts = np.bincount(codes[train], minlength=int(codes.max()) + 1)
    order = np.lexsort((np.arange(len(counts)), -counts))  # most frequent first, then by raw value
    rank = np.empty(len(counts), dtype=np.int64)
    rank[order] = np.arange(len(counts))
    return rank[codes], counts[order].astype(np.float64)


def split_by_user(frame: Any) -> dict[str, Any]:
    """The peer's split (module docstring) of a ratings frame with columns user, item, rating, timestamp:
    ``train`` and ``valid`` :class:`Split`, and per table its ``rows`` and training ``counts``."""
    frame = frame[frame["rating"] != 3]
    user = _sorted_codes(frame["user"])
    item = _sorted_codes(frame["item"])
    label = (frame["rating"].to_numpy() >= 4).astype(np.float32)
    order = np.lexsort((frame["timestamp"].to_numpy(), user))  # by user, then time; stable for ties
    user, item, label = user[order], item[order], label[order]
    # position from the end within each user's run of rows: the last two validate
    starts = np.r_[0, np.flatnonzero(user[1:] != user[:-1]) + 1]
    ends = np.r_[starts[1:], len(user)]
    from_end = np.repeat(ends, ends - starts) - np.arange(len(user))  # 1 for a user's last row
    train = from_end > 2
    uid, ucounts = _frequency_ids(user, train)
    iid, icounts = _frequency_ids(item, train)
    x = torch.from_numpy(np.stack([uid, iid], axis=1))
    y = torch.from_numpy(label)
    tr, va = torch.from_numpy(train), torch.from_numpy(~train)
    return {"train": Split(x[tr], y[tr]), "valid": Split(x[va], y[va]),
            "tables": {"user": {"rows": len(ucounts), "counts": ucounts},
                       "item": {"rows": len(icounts), "counts": icounts}}}


def prepare(cache: Any = None) -> dict[str, Any]:
    """:func:`split_by_user` of MovieLens-1M's ratings (from saec's data cache)."""
    from saec.data.movielens import load_ratings

    return split_by_user(load_ratings("movielens-1m", cache))


def make_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    """AdamW (by default at its defaults) over the trainable parameters (as the peer), attached to tables that restart its
    state when they replace their values (CCE; :func:`saec.train.loop.make_optimizer`)."""
    from saec.train.loop import TrainConfig
    from saec.train.loop import make_optimizer as library_optimizer

    return library_optimizer(model, TrainConfig(optimizer="adamw", lr=lr))


def train_epoch(model: nn.Module, data: Split, optimizer: torch.optim.Optimizer, seed: int,
                batch: int = BATCH) -> float:
    """One shuffled pass in batches of ``batch``; returns the mean training loss."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()  # BCE of the sigmoid, as the peer's BCELoss on sigmoid outputs
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    total = 0.0
    for idx in perm.split(batch):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(data.x[idx]), data.y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / max(len(data), 1)


@torch.no_grad()
def evaluate(model: nn.Module, data: Split) -> dict[str, float]:
    """Validation AUC and log loss."""
    from saec.train.metrics import auc, log_loss

    model.eval()
    p = torch.cat([torch.sigmoid(model(x)) for x in data.x.split(65536)]).numpy()
    y = data.y.numpy()
    return {"auc": auc(y, p), "logloss": log_loss(y, p)}


def fit(model: nn.Module, data: dict[str, Any], seed: int, epochs: int = EPOCHS, batch: int = BATCH,
        lr: float = 1e-3) -> dict[str, Any]:
    """The peer's loop (module docstring): up to ``epochs`` epochs with its early stop; the model is left at the
    state of its best validation AUC. Returns per-epoch seconds and metrics and the best epoch's metrics."""
    optimizer = make_optimizer(model, lr)
    best, best_state, history = None, None, []
    best_loss, best_auc = math.inf, 0.0
    for epoch in range(epochs):
        t = time.perf_counter()
        loss = train_epoch(model, data["train"], optimizer, seed * 1000 + epoch, batch)
        seconds = time.perf_counter() - t
        m = evaluate(model, data["valid"])
        history.append({"epoch": epoch, "train_loss": loss, "seconds": seconds, **m})
        if best is None or m["auc"] > best["auc"]:
            best, best_state = history[-1], {k: v.clone() for k, v in model.state_dict().items()}
        if m["logloss"] > best_loss * 1.01 and m["auc"] * 1.01 < best_auc:
            break  # the peer's early stop
        best_loss, best_auc = min(best_loss, m["logloss"]), max(best_auc, m["auc"])
    from saec.bench.grid import training_state_bytes

    state_bytes = training_state_bytes(model, optimizer)
    model.load_state_dict(best_state)
    return {"history": history, "best": best, "state_bytes": state_bytes}


class CceGmf:
    """The peer task as a :mod:`saec.bench.grid` task (module docstring)."""

    name = "cce_gmf"
    metric = "auc"
    select_split = "valid"  # the peer's protocol: the best validation AUC over the states seen
    report_split = "valid"
    budgets = ("ppd16", "ppd64", "ppd256", "ppd1024", "ppd4096", "1/2", "1/4", "1/16", "1/64", "1/256", "1/1000")
    extra_methods = ("hashing:hash=universal", "hashing:hash=polynomial", "hashing:hash=permutation")  # seeded, not id mod m
    epochs = EPOCHS
    batch = BATCH
    lr = 1e-3

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": "movielens-1m", "model": "GMF", "dim": DIM, "batch": self.batch,
                "epochs": self.epochs, "optimizer": f"AdamW (lr {self.lr:g}, weight decay 0.01)", "init_std": INIT_STD,
                "metric": "validation AUC, best over the epochs run"}

    def prepare(self, cache: Any = None) -> dict[str, Any]:
        return prepare(cache)

    def tables(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {n: {"rows": t["rows"], "dim": DIM, "counts": t["counts"]} for n, t in data["tables"].items()}

    def method_hyper(self, method: str, data: dict[str, Any], table: str) -> dict[str, Any]:
        """What the task gives a method besides its budget: the peer's init scale to every method that takes
        ``init_std``; CCE re-clusters once per epoch for the first 75% of the epochs (the peer's schedule,
        ``--last-cluster`` at its default); the methods of the peer's names take the peer's forms of them
        (:data:`PEER_FORMS`)."""
        from saec.nn.registry import METHODS

        spec = METHODS[method]
        out = {"init_std": INIT_STD} if "init_std" in spec.structure() else {}
        if method == "cce":
            out.update(cluster_every=math.ceil(len(data["train"]) / self.batch), max_clusterings=int(0.75 * self.epochs))
        out.update(PEER_FORMS.get(method, {}))
        return out

    def model(self, data: dict[str, Any], seed: int, tables: dict[str, nn.Module]) -> GMF:
        return GMF(tables["user"], tables["item"])

    def get_table(self, model: GMF, name: str) -> nn.Module:
        return getattr(model, name)

    def set_table(self, model: GMF, name: str, table: nn.Module) -> None:
        setattr(model, name, table)

    def fit(self, model: GMF, data: dict[str, Any], seed: int) -> dict[str, Any]:
        return fit(model, data, seed, self.epochs, self.batch, self.lr)

    def retrain(self, model: GMF, data: dict[str, Any], seed: int) -> float:
        """One more epoch (a fresh AdamW); returns its seconds."""
        t = time.perf_counter()
        train_epoch(model, data["train"], make_optimizer(model, self.lr), seed * 1000 + 999, self.batch)
        return time.perf_counter() - t

    def evaluate(self, model: GMF, data: dict[str, Any]) -> dict[str, dict[str, float]]:
        return {"valid": evaluate(model, data["valid"])}

    def example(self, data: dict[str, Any], n: int) -> torch.Tensor:
        x = data["valid"].x
        return x[torch.arange(n) % len(x)]


__all__ = ["CceGmf", "BATCH", "DIM", "EPOCHS", "GMF", "INIT_STD", "PEER_CHUNKS", "PEER_FORMS", "PEER_NAMES", "PUBLISHED",
           "Split", "evaluate", "fit", "make_optimizer", "prepare", "split_by_user", "train_epoch"]
