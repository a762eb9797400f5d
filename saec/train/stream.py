"""The streaming setting (Saec §2.1, §3.1): train one epoch on each new segment, evaluate on the next.

Segments come from any :class:`~saec.data.segments.SegmentSource` (the synthetic trace's hours, a folder
of files, windows of one table, MovieLens weeks). Every segment the vocabularies first admit its new
features, the model's tables grow to match (existing rows and their Adagrad accumulators are kept), the
model trains one pass over the segment, and it is evaluated on the following segment, whose unseen
features map to the OOV vector. On the synthetic trace each evaluated hour also carries its
Bayes-optimal AUC and log loss.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from saec.config import check_int
from saec.data.dataset import CTRData
from saec.data.segments import SegmentSource, TraceSegments, as_source, encode
from saec.data.synthetic import SyntheticTrace
from saec.data.vocab import Vocabulary
from saec.errors import SaecError
from saec.models import build_model
from saec.train.loop import TrainConfig, evaluate, make_optimizer, train_epoch


def grow_model(model: nn.Module, optimizer: torch.optim.Optimizer, sizes: dict[str, int],
               generator: torch.Generator | None = None) -> None:
    """Grow the model's full tables to ``sizes`` rows, carrying each table's optimizer state along
    (new rows start with a fresh state: zero accumulators for Adagrad); new rows are drawn from
    ``generator`` (fields in ``sizes`` order)."""
    emb = model.embeddings
    for name, n in sizes.items():
        old = emb.tables[name].weight
        if n == old.shape[0]:
            continue
        emb.grow(name, n, generator=generator)
        if isinstance(getattr(model, "config", None), dict):  # what rebuilds the model when it is loaded
            model.config["num_embeddings"][name] = n
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


GROWTH_SEED = 7_919  # offset of the new rows' stream from cfg.seed (the model's init uses cfg.seed itself)


class StreamingRun:
    """A model trained segment by segment on a :class:`~saec.data.segments.SegmentSource` (a
    :class:`SyntheticTrace` is accepted and read hour by hour).

    ``model``, ``vocabs`` and ``optimizer`` are live attributes (``model`` is ``None`` before the first
    segment), so a caller can inspect, save or compress the model between segments. Every random draw is
    seeded by ``cfg.seed``: the model's initialisation (:func:`~saec.models.build_model`), each segment's
    shuffle (``cfg.seed + segment``) and the rows new features get (:attr:`generator`, the run's own, so
    the caller's random state is neither used nor changed).
    """

    def __init__(self, source: SegmentSource | SyntheticTrace, model_name: str = "dssm",
                 cfg: TrainConfig | None = None, hidden: tuple[int, ...] = (256, 128), min_count: int = 1) -> None:
        self.source = as_source(source)
        self.model_name, self.cfg, self.hidden = model_name, cfg or TrainConfig(), hidden
        # a feature gets its own row once seen this often; until then it is OOV (checked now, not at segment 0)
        self.min_count = check_int("min_count", min_count, 1)
        self.vocabs: dict[str, Vocabulary] = {}
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.train_data: CTRData | None = None  # the segment just trained on
        self.test_data: CTRData | None = None  # the next segment, encoded with the current vocabularies
        # rows of new features: a stream of the run's own (its state is what a checkpoint must carry)
        self.generator = torch.Generator().manual_seed(self.cfg.seed + GROWTH_SEED)
        self._next: tuple[int, Any] | None = None  # (index, segment) read for testing, trained on next

    def _sizes(self) -> dict[str, int]:
        return {n: len(self.vocabs[n]) for n in self.source.names}

    def check_segments(self, segments: int | None = None, hours: int | None = None) -> int:
        """How many segments a run over ``segments`` (or ``hours``, the trace's name for it) uses."""
        if hours is not None:
            if segments is not None:
                raise SaecError("give segments or hours, not both")
            segments = hours
        segments = len(self.source) if segments is None else segments
        return check_int(f"{self.source.unit} (one to train, the next to test)", segments, 2, len(self.source))

    def run(self, segments: int | None = None, *, hours: int | None = None, start: int = 0) -> Iterator[dict[str, Any]]:
        """Train on segments ``start .. segments-2`` (default: all), yielding after each the evaluation on
        the next segment (:meth:`step`); ``hours`` is the name ``segments`` had when the trace was the only
        source. ``start`` > 0 continues a run whose state (model, optimizer, vocabularies, generator) was
        restored after segment ``start - 1``."""
        segments = self.check_segments(segments, hours)
        start = check_int("start segment", start, 0, segments - 2)
        for h in tqdm(range(start, segments - 1), desc=self.source.unit, disable=not self.cfg.progress,
                      initial=start, total=segments - 1):
            yield self.step(h)

    def step(self, h: int) -> dict[str, Any]:
        """Admit segment ``h``'s new features, grow the tables, train one epoch on it, and evaluate on
        segment ``h + 1``.

        The row holds the segment indices and names (``segment``, ``name``, ``test_segment``,
        ``test_name``), the features before and after admitting the segment (``features_before``,
        ``features``), AUC and log loss, seconds, the Bayes-optimal metrics of the test segment where the
        source has them, and on the synthetic trace ``hour``/``test_hour``.
        """
        source, cfg, schema = self.source, self.cfg, self.source.schema
        start = time.perf_counter()
        seg = self._next if self._next is not None and self._next[0] == h else None
        seg = seg[1] if seg is not None else source.segment(h)  # the segment tested last time, read once
        before = sum(self._sizes().values()) if self.vocabs else 0
        self.train_data = train = encode(seg, schema, self.vocabs, grow=True, min_count=self.min_count)
        if self.model is None:
            self.model = build_model(self.model_name, schema, self._sizes(), hidden=self.hidden, seed=cfg.seed)
            self.optimizer = make_optimizer(self.model, cfg)
        else:
            grow_model(self.model, self.optimizer, self._sizes(), self.generator)
        data_s = time.perf_counter() - start
        stats = train_epoch(self.model, train, self.optimizer, cfg.batch_size, seed=cfg.seed + h, progress=False)
        start = time.perf_counter()
        nxt = source.segment(h + 1)
        self._next = (h + 1, nxt)
        data_s += time.perf_counter() - start
        start = time.perf_counter()
        self.test_data = encode(nxt, schema, self.vocabs, grow=False)
        metrics = evaluate(self.model, self.test_data)
        row: dict[str, Any] = {"segment": h, "name": seg.name, "test_segment": h + 1, "test_name": nxt.name}
        if isinstance(source, TraceSegments):  # the key the trace's scripts and committed results read
            row.update(hour=h, test_hour=h + 1)
        row.update(features_before=before, features=sum(self._sizes().values()), auc=metrics["auc"],
                   logloss=metrics["logloss"])
        if nxt.bayes_auc is not None:
            row.update(bayes_auc=nxt.bayes_auc, bayes_logloss=nxt.bayes_logloss)
        # data_s: reading both segments, admitting this one's features and growing the tables
        row.update(train_s=stats["seconds"], eval_s=time.perf_counter() - start, data_s=data_s)
        return row
