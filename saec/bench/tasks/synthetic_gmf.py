"""A small synthetic GMF task (the peer's ``make_synthetic`` in miniature): users and items with random 8-dim
vectors, each user rating items drawn by the softmax of their inner products, labels Bernoulli(sigmoid(u . v)).
It runs every cell in seconds: the smoke test of the benchmark (and what its tests run), not a result."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saec.bench.tasks.cce_gmf import CceGmf, Split

USERS, ITEMS, PER_USER, TRUE_DIM = 300, 200, 60, 8


def prepare_synthetic(seed: int = 0) -> dict[str, Any]:
    """``train`` (all but each user's last two samples) and ``valid`` (those two); ids by decreasing frequency."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((USERS, TRUE_DIM)).astype(np.float32)
    items = rng.standard_normal((ITEMS, TRUE_DIM)).astype(np.float32)
    logits = users @ items.T / np.sqrt(TRUE_DIM)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    picks = np.stack([rng.choice(ITEMS, PER_USER, replace=False, p=p) for p in probs])
    uid = np.repeat(np.arange(USERS), PER_USER)
    iid = picks.reshape(-1)
    y = rng.random(len(uid)) < 1 / (1 + np.exp(-(users[uid] * items[iid]).sum(1)))
    valid = np.tile(np.arange(PER_USER) >= PER_USER - 2, USERS)
    tables = {}
    ids = []
    for name, raw, n in (("user", uid, USERS), ("item", iid, ITEMS)):
        counts = np.bincount(raw[~valid], minlength=n)
        order = np.lexsort((np.arange(n), -counts))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        ids.append(rank[raw])
        tables[name] = {"rows": n, "counts": counts[order].astype(np.float64)}
    x = torch.from_numpy(np.stack(ids, axis=1))
    yt = torch.from_numpy(y.astype(np.float32))
    tr, va = torch.from_numpy(~valid), torch.from_numpy(valid)
    return {"train": Split(x[tr], yt[tr]), "valid": Split(x[va], yt[va]), "tables": tables}


class SyntheticGMF(CceGmf):
    """The peer task's model and loop on :func:`prepare_synthetic` data: 4 epochs in batches of 256 at lr 0.01."""

    name = "synthetic_gmf"
    epochs = 4
    batch = 256
    lr = 0.01
    budgets = ("ppd16", "1/16")
    extra_methods = ()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.name, "dataset": f"synthetic ({USERS} users, {ITEMS} items)"}

    def prepare(self, cache: Any = None) -> dict[str, Any]:
        return prepare_synthetic()


__all__ = ["SyntheticGMF", "prepare_synthetic"]
