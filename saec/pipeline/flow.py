"""Train -> compress -> retrain -> evaluate (Saec §2.1, Fig. 2).

Saec does not change how the full model is trained. It clusters the trained model's embeddings, then
retrains the compressed model for one epoch on the same data "to compensate for the performance loss
of compression" (§2.1), and serves that. :func:`run_saec` does this once on a static task;
:func:`periodic_saec` does it every hour of the synthetic trace while the full model keeps training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from saec.cluster.saec import FieldCompression, SaecConfig, SizeReport, size_report
from saec.compression import compress_model
from saec.config import check_choice
from saec.data.dataset import CTRData
from saec.data.synthetic import SyntheticTrace
from saec.data.task import CTRTask
from saec.errors import SaecError
from saec.models import build_model
from saec.models.dssm import DSSM, ROW, FixedShare, fixed_share
from saec.nn.clustered import ClusteredEmbedding
from saec.train.loop import History, TrainConfig, evaluate, fit, make_optimizer, predict, train_epoch
from saec.train.stream import StreamingRun


def carry_optimizer(full: nn.Module, full_optimizer: torch.optim.Optimizer, compressed: nn.Module,
                    cfg: TrainConfig, codebook_state: str | None = None) -> torch.optim.Optimizer:
    """An optimizer for ``compressed`` that continues ``full_optimizer``'s state (Adagrad accumulators).

    Parameters the two models share (the MLP, tables left full, OOV vectors) keep their state. A codebook
    row of a ClusteredEmbedding starts from its members' accumulators: their mean when the codebook gets
    the members' mean gradient (Saec §2.3, ``grad_mode="mean"``), their sum for ``"sum"``; ``codebook_state``
    (``"mean"`` or ``"sum"``) sets that rule for every table instead of its ``grad_mode``. A fresh state
    makes Adagrad's first retraining steps as large as the learning rate on every coordinate. Measured on
    the synthetic trace (docs/results/trace_retrain.md): carrying the state helps retraining toward the full
    model at lr 0.01 slightly and hurts label retraining at lr 0.001, so the flows default to a fresh one.
    """
    if codebook_state is not None:
        check_choice("codebook_state", codebook_state, ("mean", "sum"))
    optimizer = make_optimizer(compressed, cfg)
    if type(optimizer) is not type(full_optimizer):
        return optimizer
    sources = dict(full.named_parameters())
    for name, p in compressed.named_parameters():
        src = sources.get(name)
        if not p.requires_grad:  # frozen (freeze_full_fields): not the optimizer's
            continue
        if src is not None and src.shape == p.shape and src in full_optimizer.state:
            optimizer.state[p] = copy.deepcopy(full_optimizer.state[src])
    for name, table in compressed.embeddings.tables.items():
        state = full_optimizer.state.get(getattr(full.embeddings.tables[name], "weight", None))
        if not isinstance(table, ClusteredEmbedding) or not state or "sum" not in state:
            continue
        members = table.mask.long()
        acc = torch.zeros_like(table.codebook).index_add_(0, members, state["sum"].to_dense())
        if (codebook_state or table.grad_mode) == "mean":
            acc /= torch.bincount(members, minlength=table.k).clamp(min=1).unsqueeze(1).to(acc.dtype)
        optimizer.state[table.codebook] = {**copy.deepcopy({k: v for k, v in state.items() if k != "sum"}), "sum": acc}
    return optimizer


RETRAIN_TARGETS = ("labels", "full")
RETRAIN_TRAINABLE = ("all", "codebooks")
"""What :func:`retrain` trains: ``"all"`` every parameter the caller left trainable (the paper retrains the
whole compressed model, §2.1); ``"codebooks"`` only the codebooks of the clustered tables
(:class:`~saec.nn.clustered.ClusteredEmbedding`), the network, the tables left full and the OOV vectors held."""
RETRAIN_FIELDS = ("compressed", "all")
RETRAIN_NETWORK = ("compressed", "all")
"""What of the network the retraining epoch trains when the fields left full are frozen
(``retrain_fields="compressed"``): ``"all"`` every weight; ``"compressed"`` all but the first layer's
columns that read the frozen fields (their share of the first layer is computed once per sample,
:class:`~saec.models.dssm.FixedShare`). Not in the paper, which retrains the whole model."""


def freeze_full_fields(compressed: nn.Module) -> list[str]:
    """Stop the retraining epoch from training the fields the compression left full (a plain ``nn.Embedding``
    table): their table and OOV vector keep the full model's just-trained values; returns their names.

    Not in the paper, which retrains the whole compressed model. The full fields were trained on this very
    segment a moment ago, and the full model (not this copy) carries them on; what retraining exists for is
    "to compensate for the performance loss of compression" (§2.1), which lives in the codebooks and the
    network. Freezing them also skips their sparse gradients and optimizer steps, most of an epoch's cost
    when most fields are too small to compress (docs/results/periodic_retrain_fields.md).
    """
    emb = compressed.embeddings
    frozen = [n for n, t in emb.tables.items() if type(t) is nn.Embedding]
    for n in frozen:
        emb.tables[n].weight.requires_grad_(False)
        emb.oov[n].requires_grad_(False)
    return frozen


def distill_targets(full: nn.Module, data: CTRData) -> CTRData:
    """``data`` with its labels replaced by the full model's predicted click probabilities."""
    return CTRData(data.ids, predict(full, data))


def retrain(compressed: nn.Module, train: CTRData, cfg: TrainConfig,
            optimizer: torch.optim.Optimizer | None = None, full: nn.Module | None = None,
            fixed: Iterable[str] = (), trainable: str = "all") -> float:
    """One epoch on the same data (§2.1, §2.3) with ``optimizer`` (see :func:`carry_optimizer`; default a
    fresh one over what it trains); returns the seconds taken, the full model's predictions on ``train``
    included when they are the targets.

    ``trainable`` (:data:`RETRAIN_TRAINABLE`): ``"all"`` trains every parameter that requires a gradient;
    ``"codebooks"`` only the clustered tables' codebooks (a gentler retraining: the network and the small
    tables keep the full model's values). The parameters' ``requires_grad`` are as the caller left them when
    this returns; a given ``optimizer`` may hold the held parameters too (they get no gradient, so no step).

    The paper fits the labels again. Given ``full`` (the uncompressed model), the targets are instead
    its predicted probabilities on ``train`` (knowledge distillation, not in the paper): the compressed
    model is pulled back towards the model it approximates rather than fitting the hour's labels a second
    time, which on the synthetic trace at lr 0.01 is what makes label retraining lose accuracy
    (docs/results/trace_retrain.md).

    ``fixed``: fields frozen by :func:`freeze_full_fields` whose first-layer weights stay too
    (``retrain_network="compressed"``, :data:`RETRAIN_NETWORK`). For a DSSM trained by Adagrad or SGD without
    momentum (whose zero gradient leaves a weight unchanged) their share of the first layer is computed once,
    in the pass that gives the full model's predictions (:class:`~saec.models.dssm.FixedShare`); otherwise
    ``fixed`` is ignored and the whole network trains.
    """
    trainable = check_choice("trainable", trainable, RETRAIN_TRAINABLE)
    start = time.perf_counter()
    flags = [(p, p.requires_grad) for p in compressed.parameters()]
    try:
        if trainable == "codebooks":
            _hold_all_but_codebooks(compressed)
        optimizer = optimizer if optimizer is not None else make_optimizer(compressed, cfg)
        fixed = list(fixed)
        model, data = compressed, train
        if (fixed and isinstance(compressed, DSSM) and _zero_grad_keeps(optimizer)
                and ROW not in compressed.embeddings.schema.names):
            share, probs = fixed_share(compressed, train, fixed, full)
            model = FixedShare(compressed, fixed, share)
            ids = {n: train.ids[n] for n in model.trained}  # a batch gathers only what the steps read
            data = CTRData({**ids, ROW: np.arange(len(train))}, train.labels if probs is None else probs.numpy())
        elif full is not None:
            data = distill_targets(full, train)
        train_epoch(model, data, optimizer, cfg.batch_size, seed=cfg.seed + 10_007, progress=cfg.progress,
                    desc="retrain")
    finally:
        for p, flag in flags:  # the caller's model as it was: its frozen parameters frozen, no others
            p.requires_grad_(flag)
    return time.perf_counter() - start


def _hold_all_but_codebooks(model: nn.Module) -> None:
    """Stop every parameter of ``model`` but the clustered tables' codebooks from requiring a gradient."""
    books = {id(m.codebook) for m in model.modules()
             if isinstance(m, ClusteredEmbedding) and isinstance(m.codebook, nn.Parameter)}
    if not books:
        raise SaecError("trainable='codebooks' needs clustered tables (ClusteredEmbedding with a float codebook); "
                        f"{type(model).__name__} has none")
    for p in model.parameters():
        if id(p) not in books:
            p.requires_grad_(False)


def _zero_grad_keeps(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a step with a zero gradient leaves a parameter exactly as it is."""
    if isinstance(optimizer, torch.optim.Adagrad):
        return all(g["weight_decay"] == 0 for g in optimizer.param_groups)
    if isinstance(optimizer, torch.optim.SGD):
        return all(g["weight_decay"] == 0 and g["momentum"] == 0 for g in optimizer.param_groups)
    return False


def _check_targets(retrain_targets: str) -> None:
    if retrain_targets not in RETRAIN_TARGETS:
        raise ValueError(f"retrain_targets must be one of {RETRAIN_TARGETS}, got {retrain_targets!r}")


@dataclass
class FlowResult:
    """Everything :func:`run_saec` measured."""

    model: nn.Module  # the full model
    compressed: nn.Module  # the compressed model, retrained
    fields: dict[str, FieldCompression]
    history: History
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {auc, logloss}
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def sizes(self) -> SizeReport:
        return size_report(self.fields.values())


def run_saec(task: CTRTask, saec: SaecConfig, cfg: TrainConfig, model_name: str = "dssm",
             hidden: tuple[int, ...] = (256, 128), grad_mode: str = "mean", carry_state: bool = False,
             retrain_targets: str = "full") -> FlowResult:
    """Train the full model (early stopping on valid), compress it, retrain one epoch, evaluate on test.

    Retraining starts a fresh optimizer, or with ``carry_state`` continues the full model's
    (:func:`carry_optimizer`); it fits the full model's predictions (``retrain_targets="full"``, the
    default, see :func:`retrain`) or the labels (``"labels"``, the paper). The default is not the paper's
    because at the library's learning rate a second pass over the same data overfits: on MovieLens-1M
    label retraining loses 0.0008-0.0016 AUC against not retraining (k >= 10), and on the synthetic trace at lr 0.01
    it loses 0.04 (docs/results/movielens_saec.md, trace_retrain.md); where an extra epoch helps the full
    model (the trace at lr 0.001), ``"labels"`` is better.

    ``metrics`` holds the test AUC/log loss of the ``full`` model, the ``compressed`` model before
    retraining and the ``saec`` model (compressed and retrained).
    """
    _check_targets(retrain_targets)
    model = build_model(model_name, task.schema, task.num_embeddings, hidden=hidden, seed=cfg.seed)
    start = time.perf_counter()
    optimizer = make_optimizer(model, cfg)
    history = fit(model, task.train, task.valid, cfg, optimizer)
    train_s = time.perf_counter() - start
    counts = {name: v.counts for name, v in task.vocabs.items()}
    start = time.perf_counter()
    compressed, fields = compress_model(model, counts, saec, grad_mode)
    result = FlowResult(model, compressed, fields, history,
                        timing={"train_s": train_s, "compress_s": time.perf_counter() - start})
    result.metrics["full"] = evaluate(model, task.test)
    result.metrics["compressed"] = evaluate(compressed, task.test)
    carried = carry_optimizer(model, optimizer, compressed, cfg) if carry_state else None
    result.timing["retrain_s"] = retrain(compressed, task.train, cfg, carried,
                                         model if retrain_targets == "full" else None)
    result.metrics["saec"] = evaluate(compressed, task.test)
    return result


def periodic_saec(trace: SyntheticTrace, saec: SaecConfig, cfg: TrainConfig, model_name: str = "dssm",
                  hours: int | None = None, compress_hours: Iterable[int] | None = None,
                  hidden: tuple[int, ...] = (256, 128), grad_mode: str = "mean",
                  carry_state: bool = False, retrain_targets: str = "full") -> Iterator[dict[str, float]]:
    """The paper's production loop (§2.1, §3.1) as a generator over the synthetic trace, for the trace
    benchmarks (benchmarks/trace_saec.py): every hour train the full model one epoch on the new hour,
    compress it, retrain the compressed copy on the same hour, evaluate both on the next hour. The loop
    as a tool (any segment source and method, publishing, checkpoints, resume) is
    :class:`saec.pipeline.periodic.PeriodicRun` (``saec periodic``).

    Hours not in ``compress_hours`` (default: all) only train and evaluate the full model. The full
    model keeps training from its own weights; the compressed model is what would be served. Retraining
    uses a fresh optimizer unless ``carry_state`` (see :func:`carry_optimizer`) and fits
    ``retrain_targets`` (see :func:`run_saec`).
    """
    _check_targets(retrain_targets)
    run = StreamingRun(trace, model_name, cfg, hidden)
    wanted = None if compress_hours is None else set(compress_hours)
    for row in run.run(hours):
        if wanted is not None and row["hour"] not in wanted:
            yield row
            continue
        counts = {name: v.counts for name, v in run.vocabs.items()}
        start = time.perf_counter()
        compressed, fields = compress_model(run.model, counts, saec, grad_mode)
        carried = carry_optimizer(run.model, run.optimizer, compressed, cfg) if carry_state else None
        timing = {"compress_s": time.perf_counter() - start, "retrain_s": retrain(
            compressed, run.train_data, cfg, carried, run.model if retrain_targets == "full" else None)}
        sizes = size_report(fields.values())
        m = evaluate(compressed, run.test_data)
        row.update({
            "saec_auc": m["auc"], "saec_logloss": m["logloss"], "vectors_before": sizes.total("vectors_before"),
            "vectors_after": sizes.total("vectors_after"), "bytes_before": sizes.total("bytes_before"),
            "bytes_after": sizes.total("bytes_after"), "ratio": sizes.ratio,
            "clustered_fields": sum(f.size.clustered for f in fields.values()),
            "cluster_s": sum(f.cluster_s for f in fields.values()), "assign_s": sum(f.assign_s for f in fields.values()),
            **timing,
        })
        yield row
