"""The streaming setting (Saec §2.1, §3.1): train one epoch on each new hour, evaluate on the next.

Every hour the vocabularies first admit the hour's new features, the model's tables grow to match
(existing rows and their Adagrad accumulators are kept), the model trains one pass over the hour, and
it is evaluated on the following hour, whose unseen features map to the OOV vector. On the synthetic
trace each evaluated hour also carries its Bayes-optimal AUC and log loss.
"""

from __future__ import annotations

import time
from typing import Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from saec.config import check_int
from saec.data.dataset import CTRData
from saec.data.synthetic import SyntheticTrace, encode_segment
from saec.data.vocab import Vocabulary
from saec.models import build_model
from saec.train.loop import TrainConfig, evaluate, make_optimizer, train_epoch


def grow_model(model: nn.Module, optimizer: torch.optim.Optimizer, sizes: dict[str, int]) -> None:
    """Grow the model's full tables to ``sizes`` rows, carrying each table's optimizer state along
    (new rows start with a fresh state: zero accumulators for Adagrad)."""
    emb = model.embeddings
    for name, n in sizes.items():
        old = emb.tables[name].weight
        if n == old.shape[0]:
            continue
        emb.grow(name, n)
        new = emb.tables[name].weight
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        state = optimizer.state.pop(old, None)
        if state:
            optimizer.state[new] = {
                k: torch.cat([v, v.new_zeros((n - v.shape[0], *v.shape[1:]))]) if torch.is_tensor(v) and v.dim() and
                v.shape[0] == old.shape[0] else v
                for k, v in state.items()
            }


class StreamingRun:
    """A model trained hour by hour on a :class:`SyntheticTrace`.

    ``model``, ``vocabs`` and ``optimizer`` are live attributes (``model`` is ``None`` before the first
    hour), so a caller can inspect, save or compress the model between hours.
    """

    def __init__(self, trace: SyntheticTrace, model_name: str = "dssm", cfg: TrainConfig | None = None,
                 hidden: tuple[int, ...] = (256, 128), min_count: int = 1) -> None:
        self.trace, self.model_name, self.cfg, self.hidden = trace, model_name, cfg or TrainConfig(), hidden
        # a feature gets its own row once seen this often; until then it is OOV (checked now, not at hour 0)
        self.min_count = check_int("min_count", min_count, 1)
        self.vocabs: dict[str, Vocabulary] = {}
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.train_data: CTRData | None = None  # the hour just trained on
        self.test_data: CTRData | None = None  # the next hour, encoded with the current vocabularies

    def _sizes(self) -> dict[str, int]:
        return {n: len(self.vocabs[n]) for n in self.trace.names}

    def run(self, hours: int | None = None) -> Iterator[dict[str, float]]:
        """Train on hours ``0 .. hours-2``, yielding after each the evaluation on the next hour next to
        that hour's Bayes-optimal metrics."""
        trace, cfg = self.trace, self.cfg
        hours = trace.config.hours if hours is None else hours
        hours = check_int("hours (one to train, the next to test)", hours, 2, trace.config.hours)
        for h in tqdm(range(hours - 1), desc="hours", disable=not cfg.progress):
            self.train_data = train = encode_segment(trace.segment(h), self.vocabs, grow=True,
                                                            min_count=self.min_count)
            if self.model is None:
                self.model = build_model(self.model_name, trace.schema, self._sizes(), hidden=self.hidden,
                                         seed=cfg.seed)
                self.optimizer = make_optimizer(self.model, cfg)
            else:
                grow_model(self.model, self.optimizer, self._sizes())
            stats = train_epoch(self.model, train, self.optimizer, cfg.batch_size, seed=cfg.seed + h, progress=False)
            nxt = trace.segment(h + 1)
            start = time.perf_counter()
            self.test_data = encode_segment(nxt, self.vocabs, grow=False)
            metrics = evaluate(self.model, self.test_data)
            yield {
                "hour": h, "test_hour": h + 1, "features": sum(self._sizes().values()),
                "auc": metrics["auc"], "logloss": metrics["logloss"],
                "bayes_auc": nxt.bayes_auc, "bayes_logloss": nxt.bayes_logloss,
                "train_s": stats["seconds"], "eval_s": time.perf_counter() - start,
            }
