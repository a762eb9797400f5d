"""MovieLens-1M next-item ranking (MEmCom §5.2) as a :mod:`saec.bench.grid` task: the data, network, loop and
reference table of :mod:`saec.bench.memcom_ranking` at its config's defaults (:class:`MEMCOM`), the epochs capped.

- Data: :func:`saec.bench.memcom_ranking.ranking_task`: leave-last-out per user (the last 3 interactions test,
  the one before them validates), items with at least 20 training interactions, histories of 128
  (:mod:`saec.data.ranking`).
- Model: :class:`saec.models.ranking.PointwiseRanker` of width 256 (MEmCom §5): the mean of the history's input
  vectors, then a linear layer scoring every item. The compressed table is the input (item) table,
  ``(num_items + 1) x 256`` (the last row pads); the model has no user table (a user is its history) and its
  output (softmax) layer stays full, as in the paper (§5.2), so the byte budget is of the item table alone.
- Training: softmax cross-entropy, Adagrad lr 0.2, batch 256 (:class:`saec.train.ranking.RankingConfig`), up to
  :data:`EPOCHS` epochs (memcom_ranking allows 30; its reference's best epoch is 3-8), stopping after 2 without
  a better validation nDCG@10 and keeping the best epoch's weights. Post-training methods retrain one epoch
  with a fresh Adagrad.
- Init: every method that takes ``init_std`` draws N(0, 0.01^2), as the reference table of memcom_ranking.
- Metric: nDCG@10 of the held-out item among all items, the history's items removed and ties counted against
  the model (:func:`saec.train.ranking.evaluate`); the state is selected on validation, test is reported.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from saec.bench.memcom_ranking import INIT_STD
from saec.bench.memcom_ranking import RankingConfig as MemcomConfig
from saec.bench.tasks import BYTE_BUDGETS

MEMCOM = MemcomConfig()
"""The memcom_ranking sweep's configuration: data set, width, learning rate, batch and patience come from it."""
EPOCHS = 10
K = 10


class MovieLensRank:
    """The task (module docstring)."""

    name = "movielens_rank"
    metric = "ndcg"
    select_split = "valid"
    report_split = "test"
    budgets = BYTE_BUDGETS
    extra_methods: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": MEMCOM.dataset,
                "model": f"pointwise ranker (MEmCom §5.2), width {MEMCOM.dim}; compressed: the item input table "
                         "(no user table; the output layer stays full)",
                "epochs": f"up to {EPOCHS}, early stop after {MEMCOM.patience} without a better validation "
                          f"nDCG@{K}",
                "optimizer": f"Adagrad lr {MEMCOM.lr:g}, batch {MEMCOM.batch_size}, softmax loss",
                "init_std": INIT_STD, "metric": f"test nDCG@{K} over all items, history excluded (state chosen on "
                                                "validation)"}

    def prepare(self, cache: Any = None) -> dict[str, Any]:
        from saec.bench.memcom_ranking import ranking_task

        return {"task": ranking_task(MEMCOM, cache)}

    def tables(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        task = data["task"]
        return {"item": {"rows": task.num_items + 1, "dim": MEMCOM.dim, "counts": task.counts}}

    def method_hyper(self, method: str, data: dict[str, Any], table: str) -> dict[str, Any]:
        """The reference table's init scale to every method that takes ``init_std``."""
        from saec.nn.registry import METHODS

        return {"init_std": INIT_STD} if "init_std" in METHODS[method].structure() else {}

    def model(self, data: dict[str, Any], seed: int, tables: dict[str, nn.Module]) -> nn.Module:
        from saec.models.ranking import PointwiseRanker

        return PointwiseRanker(tables["item"], data["task"].num_items, seed=seed)

    def get_table(self, model: nn.Module, name: str) -> nn.Module:
        return model.embedding

    def set_table(self, model: nn.Module, name: str, table: nn.Module) -> None:
        model.embedding = table

    def _config(self, seed: int) -> Any:
        from saec.train.ranking import RankingConfig

        return RankingConfig(lr=MEMCOM.lr, batch_size=MEMCOM.batch_size, epochs=EPOCHS, patience=MEMCOM.patience,
                             k=K, seed=seed, progress=False)

    def fit(self, model: nn.Module, data: dict[str, Any], seed: int) -> dict[str, Any]:
        from saec.bench.grid import training_state_bytes
        from saec.train.loop import make_optimizer
        from saec.train.ranking import fit

        cfg = self._config(seed)
        optimizer = make_optimizer(model, cfg)
        history = fit(model, data["task"].train, data["task"].valid, cfg, optimizer)
        return {"history": history.epochs, "best_epoch": history.best_epoch,
                "state_bytes": training_state_bytes(model, optimizer)}

    def retrain(self, model: nn.Module, data: dict[str, Any], seed: int) -> float:
        """One more epoch (a fresh Adagrad); returns its seconds."""
        from saec.train.loop import make_optimizer
        from saec.train.ranking import train_epoch

        cfg = self._config(seed)
        t = time.perf_counter()
        train_epoch(model, data["task"].train, make_optimizer(model, cfg), cfg, seed=seed * 1000 + 999)
        return time.perf_counter() - t

    def evaluate(self, model: nn.Module, data: dict[str, Any]) -> dict[str, dict[str, float]]:
        from saec.train.ranking import evaluate

        return {s: evaluate(model, getattr(data["task"], s), K) for s in ("valid", "test")}

    def example(self, data: dict[str, Any], n: int) -> torch.Tensor:
        history = data["task"].valid.history
        return torch.from_numpy(history[np.arange(n) % len(history)])


__all__ = ["EPOCHS", "K", "MEMCOM", "MovieLensRank"]
