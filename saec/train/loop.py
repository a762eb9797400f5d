"""Training and evaluation of CTR models.

Two settings:

* streaming (Saec §2.1, §3.1): every data segment (an hour) is seen once, :func:`train_epoch`;
* static: several epochs with early stopping on the validation split, :func:`fit`.

Adagrad is the default optimizer because the Saec paper trains with it (§3.1: Adagrad, lr 0.001);
the learning rate is a parameter, and our MovieLens default is larger (see ``TrainConfig.lr``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from saec.config import check_bool, check_choice, check_float, check_int
from saec.data.dataset import CTRData
from saec.errors import SaecError
from saec.train.metrics import auc, log_loss

OPTIMIZERS = ("adagrad", "adam", "adamw", "sgd")


def sparse_checks_off() -> torch.sparse.check_sparse_tensor_invariants:
    """A context that turns torch's sparse tensor invariant checks off and restores the caller's setting.

    The sparse embedding gradients saec steps are built by torch itself (or by saec's own backward
    passes) and are valid by construction; saying so explicitly also silences torch's warning that the
    (costly) checks are implicitly off. Only saec's own training steps run inside it.
    """
    return torch.sparse.check_sparse_tensor_invariants(enable=False)


@dataclass
class TrainConfig:
    """Hyperparameters of a training run.

    ``lr`` defaults to 0.01: with the paper's 0.001 Adagrad needs many more passes over MovieLens-sized
    data than a static benchmark can afford (the paper's streaming model saw 240 hours of data).
    """

    optimizer: str = "adagrad"
    lr: float = 0.01
    batch_size: int = 1024
    epochs: int = 1
    patience: int = 2
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        # types and ranges before any data is read or any model built
        self.optimizer = check_choice("TrainConfig.optimizer", self.optimizer, OPTIMIZERS)
        self.lr = check_float("TrainConfig.lr", self.lr, 0.0, lo_open=True)
        self.batch_size = check_int("TrainConfig.batch_size", self.batch_size, 1)
        self.epochs = check_int("TrainConfig.epochs", self.epochs, 1)
        self.patience = check_int("TrainConfig.patience", self.patience, 0)
        self.seed = check_int("TrainConfig.seed", self.seed, 0)
        self.progress = check_bool("TrainConfig.progress", self.progress)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over all parameters (sparse embedding gradients included), attached to the
    tables that replace their parameters' values during training (``attach_optimizer``: CCE's clusterings
    restart its state of them)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adagrad":
        optimizer: torch.optim.Optimizer = torch.optim.Adagrad(params, lr=cfg.lr)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr)
    else:
        sparse = [p for m in model.modules() if getattr(m, "sparse", False) for p in m.parameters(recurse=False)]
        if sparse:
            raise SaecError(f"{cfg.optimizer} cannot take sparse gradients; build the model with sparse=False")
        optimizer = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW)(params, lr=cfg.lr)
    for module in model.modules():
        attach = getattr(module, "attach_optimizer", None)
        if callable(attach):
            attach(optimizer)
    return optimizer


def train_epoch(
    model: nn.Module,
    data: CTRData,
    optimizer: torch.optim.Optimizer,
    batch_size: int = 1024,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """One shuffled pass over ``data``; returns mean loss, seconds and samples per second."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    total, seen = 0.0, 0
    start = time.perf_counter()
    n_batches = -(-len(data) // batch_size)
    with sparse_checks_off():
        for ids, y in tqdm(data.batches(batch_size, shuffle=True, seed=seed), total=n_batches, desc=desc,
                           disable=not progress, leave=False, mininterval=1.0):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(ids), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            seen += len(y)
    seconds = time.perf_counter() - start
    return {"loss": total / max(seen, 1), "seconds": seconds, "samples_per_s": seen / max(seconds, 1e-9)}


@torch.no_grad()
def predict(model: nn.Module, data: CTRData, batch_size: int = 65536) -> np.ndarray:
    """Click probabilities for every sample of ``data``."""
    model.eval()
    out = [torch.sigmoid(model(ids)) for ids, _ in data.batches(batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def evaluate(model: nn.Module, data: CTRData, batch_size: int = 65536) -> dict[str, float]:
    """AUC and log loss of ``model`` on ``data``."""
    p = predict(model, data, batch_size)
    return {"auc": auc(data.labels, p), "logloss": log_loss(data.labels, p)}


@dataclass
class History:
    """What :func:`fit` did: one row per epoch, and the epoch whose weights were kept."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1

    def to_dict(self) -> dict:
        return asdict(self)


def early_stopping(model: nn.Module, epochs: int, patience: int, run_epoch: Callable[[int], tuple[dict, dict]],
                   metric: str) -> History:
    """Call ``run_epoch(epoch) -> (train stats, validation metrics)`` up to ``epochs`` times, stop after
    ``patience`` epochs without a higher validation ``metric``, and leave ``model`` holding the best
    epoch's weights."""
    history = History()
    best, best_state, stale = -np.inf, None, 0
    for epoch in range(epochs):
        stats, metrics = run_epoch(epoch)
        history.epochs.append({"epoch": epoch + 1, **stats, **{f"valid_{k}": v for k, v in metrics.items()}})
        if metrics[metric] > best:
            best, best_state, stale = metrics[metric], copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch + 1
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def fit(model: nn.Module, train: CTRData, valid: CTRData, cfg: TrainConfig,
        optimizer: torch.optim.Optimizer | None = None) -> History:
    """Train up to ``cfg.epochs`` epochs, stop after ``cfg.patience`` epochs without a better validation
    AUC, and leave ``model`` holding the best epoch's weights.

    Pass an ``optimizer`` to keep its state afterwards (it holds the last epoch's state, not the best's).
    """
    valid.check_both_classes("the validation data")  # early stopping needs its AUC: fail now, not after epoch 1
    optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)

    def run_epoch(epoch: int) -> tuple[dict, dict]:
        stats = train_epoch(model, train, optimizer, cfg.batch_size, seed=cfg.seed + epoch,
                            progress=cfg.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        metrics = evaluate(model, valid)
        if cfg.progress:
            tqdm.write(f"epoch {epoch + 1}: loss {stats['loss']:.4f}  valid AUC {metrics['auc']:.4f}  "
                       f"log loss {metrics['logloss']:.4f}  ({stats['samples_per_s']:,.0f} samples/s)")
        return stats, metrics

    return early_stopping(model, cfg.epochs, cfg.patience, run_epoch, "auc")
