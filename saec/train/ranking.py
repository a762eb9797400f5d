"""Training and evaluation of the ranking networks (MEmCom §5.2).

* pointwise: softmax cross-entropy of the label item over all items (§5.2 "we use the softmax as our
  loss function");
* pairwise (RankNet): each example gives ``negatives`` pairs (label item, an item drawn uniformly from
  the other items), trained with :func:`saec.models.ranking.ranknet_loss`.

Evaluation ranks **all** items by the model's scores for each example and reports nDCG@k of the single
held-out label item (:func:`saec.train.metrics.ndcg_from_rank`) and the hit rate at k. With
``exclude_history`` (the default) the items of the example's input history are removed from the ranking
first (a user does not rate a movie twice); the label itself is never removed. Ties count against the
model: the label's rank is the number of other items scoring at least as high.

Early stopping keeps the epoch with the best validation nDCG@k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from saec.config import check_bool, check_choice, check_int
from saec.data.ranking import RankingSplit
from saec.errors import SaecError, SaecTypeError
from saec.models.ranking import PointwiseRanker, RankNet, ranknet_loss
from saec.train.loop import History, TrainConfig, early_stopping, make_optimizer, sparse_checks_off
from saec.train.metrics import ndcg_from_rank

LOSSES = ("softmax", "ranknet")


@dataclass
class RankingConfig(TrainConfig):
    """:class:`~saec.train.loop.TrainConfig` plus the ranking settings.

    ``lr`` 0.2 (Adagrad) was picked among 0.05 / 0.2 / 0.5 on the uncompressed MovieLens-1M model's
    validation nDCG@10 (docs/results/memcom_ranking.md); ``negatives`` is the number of RankNet pairs per
    example.
    """

    lr: float = 0.2
    batch_size: int = 256
    epochs: int = 30
    loss: str = "softmax"
    negatives: int = 16
    k: int = 10
    exclude_history: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.loss = check_choice("RankingConfig.loss", self.loss, LOSSES)
        self.negatives = check_int("RankingConfig.negatives", self.negatives, 1)
        self.k = check_int("RankingConfig.k", self.k, 1)
        self.exclude_history = check_bool("RankingConfig.exclude_history", self.exclude_history)


def _tensors(split: RankingSplit) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(split.history)), torch.from_numpy(np.ascontiguousarray(split.labels))


def sample_negatives(labels: torch.Tensor, num_items: int, negatives: int, gen: torch.Generator) -> torch.Tensor:
    """(B, negatives) items drawn uniformly from the ``num_items - 1`` items other than each row's label."""
    if num_items < 2:
        raise SaecError("pairs need at least 2 items")
    shift = torch.randint(1, num_items, (len(labels), negatives), generator=gen)
    return (labels.unsqueeze(1) + shift) % num_items


def train_epoch(model: PointwiseRanker, split: RankingSplit, optimizer: torch.optim.Optimizer,
                cfg: RankingConfig, seed: int, desc: str = "train") -> dict[str, float]:
    """One shuffled pass; returns the mean loss and the seconds it took."""
    if cfg.loss == "ranknet" and not isinstance(model, RankNet):
        raise SaecTypeError("loss='ranknet' needs a RankNet model")
    model.train()
    history, labels = _tensors(split)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    total, start = 0.0, time.perf_counter()
    with sparse_checks_off():
        for batch in tqdm(order.split(cfg.batch_size), desc=desc, disable=not cfg.progress, leave=False,
                          mininterval=1.0):
            h, y = history[batch], labels[batch]
            optimizer.zero_grad(set_to_none=True)
            if cfg.loss == "softmax":
                loss = F.cross_entropy(model(h), y)
            else:
                neg = sample_negatives(y, model.num_items, cfg.negatives, gen)
                loss = ranknet_loss(*model(h, y.unsqueeze(1).expand_as(neg).contiguous(), neg))
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
    return {"loss": total / max(len(labels), 1), "seconds": time.perf_counter() - start}


@torch.no_grad()
def label_ranks(model: PointwiseRanker, split: RankingSplit, exclude_history: bool = True,
                batch_size: int = 1024) -> np.ndarray:
    """0-based rank of each example's label among all items (see the module docstring)."""
    model.eval()
    history, labels = _tensors(split)
    out = []
    for h, y in zip(history.split(batch_size), labels.split(batch_size)):
        s = model.scores(h)
        if exclude_history:  # a pad column soaks up the pads' scatter, then is dropped
            s = torch.cat([s, s.new_zeros(len(s), 1)], dim=1)
            label_score = s.gather(1, y.unsqueeze(1))
            s = s.scatter(1, h, float("-inf")).scatter(1, y.unsqueeze(1), label_score)[:, :-1]
        target = s.gather(1, y.unsqueeze(1))
        out.append((s >= target).sum(1) - 1)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def evaluate(model: PointwiseRanker, split: RankingSplit, k: int = 10,
             exclude_history: bool = True) -> dict[str, float]:
    """nDCG@k and hit rate@k of the label items of ``split``."""
    r = label_ranks(model, split, exclude_history)
    return {"ndcg": ndcg_from_rank(r, k), "hit": float((r < k).mean())}


def fit(model: PointwiseRanker, train: RankingSplit, valid: RankingSplit, cfg: RankingConfig,
        optimizer: torch.optim.Optimizer | None = None) -> History:
    """Train up to ``cfg.epochs`` epochs, stop after ``cfg.patience`` epochs without a better validation
    nDCG@k, and leave ``model`` holding the best epoch's weights.

    Pass an ``optimizer`` to keep its state afterwards (it holds the last epoch's state, not the best's), as
    :func:`saec.train.loop.fit` takes one."""
    optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)

    def run_epoch(epoch: int) -> tuple[dict, dict]:
        stats = train_epoch(model, train, optimizer, cfg, seed=cfg.seed * 1000 + epoch, desc=f"epoch {epoch + 1}")
        metrics = evaluate(model, valid, cfg.k, cfg.exclude_history)
        if cfg.progress:
            tqdm.write(f"epoch {epoch + 1}: loss {stats['loss']:.4f}  valid nDCG@{cfg.k} {metrics['ndcg']:.4f}  "
                       f"({stats['seconds']:.1f} s)")
        return stats, metrics

    return early_stopping(model, cfg.epochs, cfg.patience, run_epoch, "ndcg")


__all__ = ["LOSSES", "RankingConfig", "evaluate", "fit", "label_ranks", "sample_negatives", "train_epoch"]
