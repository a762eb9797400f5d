"""The synthetic production trace (:mod:`saec.data.synthetic`) as a :mod:`saec.bench.grid` task, scored against
what is reachable: the AUC as a share of the gap between a popularity model and the Bayes ceiling.

- Data: ``SyntheticTrace(TraceConfig.preset(PRESET, **OVERRIDES))``: 16 fields, 50,000 features at the last
  hour, 12 hours of 50,000 samples. Hours ``0 .. TRAIN_HOURS - 1`` train, hour ``TRAIN_HOURS`` selects the
  state, hour ``TRAIN_HOURS + 1`` is reported (:func:`trace_split`). A static benchmark sizes every table once,
  so each field gets one vocabulary over all training hours (ids by decreasing frequency); the later hours'
  unseen features are OOV and read the field's OOV vector, as the streaming protocol's next hour does.
- Model and loop: those of :mod:`saec.bench.tasks.movielens_ctr` (the DSSM of :mod:`saec.bench.trace_saec`, MLP
  256-128, Adagrad lr 0.01, batch 1024), one epoch over the training hours shuffled together (each sample seen
  once, as the stream sees each hour once). Fields with at least 1,000 training features take the method's
  tables, the others stay full. Post-training methods retrain one epoch (:func:`saec.pipeline.flow.retrain`).
- Metric (``gap_share``, :func:`saec.train.metrics.gap_share`): ``(auc - auc_pop) / (auc_bayes - auc_pop)`` on
  the split, with ``auc_bayes`` the AUC of the true click probabilities (:attr:`Segment.bayes_auc`: no model
  can do better in expectation) and ``auc_pop`` the popularity model's (:class:`FeaturePopularity`: a sample
  scores by how often its features occur in the training hours, the recommender's "most popular" baseline).
  The trace's effects are hashed, not tied to frequency (:mod:`saec.data.synthetic`), so popularity is about
  chance and the share reads as how much of the learnable AUC a method gets. Each split also records
  ``auc_rates``, the AUC of counting clicks (:class:`ClickRates`, per-feature click rates whose log-odds add up
  over fields as the trace's main effects do, prior chosen on the selection hour): on this trace a one-epoch
  DSSM does no better than that, which the page should show rather than hide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from saec.bench.tasks.movielens_ctr import EPOCHS, HIDDEN, MovieLensCTR
from saec.data.dataset import CTRData
from saec.data.synthetic import SyntheticTrace, TraceConfig
from saec.data.task import CTRTask
from saec.data.vocab import Vocabulary
from saec.errors import SaecError
from saec.models import SMALL_FIELD_ROWS

PRESET = "small"
OVERRIDES: dict[str, Any] = {"samples_per_hour": 50_000}
"""The trace: the ``small`` preset (16 fields, 50,000 features, 12 hours) with five times its samples per hour;
at the preset's 10,000 the full model's test AUC is 0.005 below counting clicks (:class:`ClickRates`), at 50,000
they tie."""
TRAIN_HOURS = 10
RATE_PRIORS = (1.0, 10.0, 100.0, 1000.0)
"""Prior strengths (pseudo-samples at the training CTR) :func:`click_rate_model` chooses from on the selection hour."""


def _logit(p: np.ndarray | float) -> np.ndarray:
    return np.log(p) - np.log1p(-np.asarray(p))


@dataclass(frozen=True)
class ClickRates:
    """Counting clicks: a feature's click rate over the training samples, smoothed towards the training CTR
    ``c`` by ``prior`` pseudo-samples, ``r = (clicks + prior * c) / (n + prior)``; a sample's score is
    ``sum over fields of logit(r) - logit(c)`` (0 for a feature not seen in training). ``offsets[field][id]``
    holds those log-odds."""

    offsets: dict[str, np.ndarray]
    prior: float

    @classmethod
    def fit(cls, train: CTRData, sizes: Mapping[str, int], prior: float) -> ClickRates:
        """The click rates of ``train``'s features (``sizes``: each field's number of ids)."""
        if not prior > 0:
            raise SaecError(f"prior must be > 0 pseudo-samples, got {prior}")
        y = train.labels.astype(np.float64)
        ctr = float(y.mean())
        offsets = {}
        for name, n in sizes.items():
            ids = train.ids[name]
            if ids.ndim != 1:
                raise SaecError(f"field {name!r}: click rates need one id per sample, got ids of shape {ids.shape}")
            seen = ids >= 0
            clicks = np.bincount(ids[seen], weights=y[seen], minlength=n)
            count = np.bincount(ids[seen], minlength=n)
            offsets[name] = _logit((clicks + prior * ctr) / (count + prior)) - _logit(ctr)
        return cls(offsets, float(prior))

    def scores(self, data: CTRData) -> np.ndarray:
        """Each sample's summed log-odds offset (a ranking score; AUC needs no bias)."""
        out = np.zeros(len(data))
        for name, offset in self.offsets.items():
            ids = data.ids[name]
            out += np.where(ids >= 0, offset[np.maximum(ids, 0)], 0.0)
        return out


@dataclass(frozen=True)
class FeaturePopularity:
    """The popularity model: a sample's score is ``sum over fields of log(1 + n)``, ``n`` the number of training
    samples with its feature (0 for a feature not seen in training). ``counts[field][id]`` holds ``n``."""

    counts: dict[str, np.ndarray]

    @classmethod
    def fit(cls, train: CTRData, sizes: Mapping[str, int]) -> FeaturePopularity:
        """The feature counts of ``train`` (``sizes``: each field's number of ids)."""
        counts = {}
        for name, n in sizes.items():
            ids = train.ids[name]
            if ids.ndim != 1:
                raise SaecError(f"field {name!r}: popularity needs one id per sample, got ids of shape {ids.shape}")
            counts[name] = np.bincount(ids[ids >= 0], minlength=n)
        return cls(counts)

    def scores(self, data: CTRData) -> np.ndarray:
        """Each sample's summed log-popularity (a ranking score)."""
        out = np.zeros(len(data))
        for name, count in self.counts.items():
            ids = data.ids[name]
            out += np.where(ids >= 0, np.log1p(count[np.maximum(ids, 0)]), 0.0)
        return out


def click_rate_model(train: CTRData, valid: CTRData, sizes: Mapping[str, int],
                     priors: tuple[float, ...] = RATE_PRIORS) -> ClickRates:
    """The :class:`ClickRates` of ``train`` whose prior (one of ``priors``) gives the highest AUC on ``valid``."""
    from saec.train.metrics import auc

    models = [ClickRates.fit(train, sizes, p) for p in priors]
    return max(models, key=lambda m: auc(valid.labels, m.scores(valid)))


def trace_split(trace: SyntheticTrace, train_hours: int) -> tuple[CTRTask, dict[str, float]]:
    """Hours ``0 .. train_hours - 1`` (train), ``train_hours`` (valid) and the next (test) encoded with one
    vocabulary per field over the training hours, and the Bayes AUC of the valid and test hours."""
    hours = trace.config.hours
    if not 1 <= train_hours <= hours - 2:
        raise SaecError(f"train_hours must leave a validation and a test hour: 1 .. {hours - 2} for a trace of "
                        f"{hours} hours, got {train_hours}")
    train = [trace.segment(h) for h in range(train_hours)]
    valid, test = trace.segment(train_hours), trace.segment(train_hours + 1)
    raw = {n: np.concatenate([s.raw[n] for s in train]) for n in trace.names}
    vocabs = {n: Vocabulary.from_values(v) for n, v in raw.items()}

    def encoded(raws: Mapping[str, np.ndarray], labels: np.ndarray) -> CTRData:
        return CTRData({n: vocabs[n].encode(raws[n]) for n in trace.names}, labels)

    task = CTRTask(f"synthetic trace (hours 0-{train_hours - 1} / {train_hours} / {train_hours + 1})", trace.schema,
                   vocabs, encoded(raw, np.concatenate([s.labels for s in train])), encoded(valid.raw, valid.labels),
                   encoded(test.raw, test.labels))
    return task, {"valid": valid.bayes_auc, "test": test.bayes_auc}


class SyntheticTraceCTR(MovieLensCTR):
    """The task (module docstring): movielens_ctr's model, loop and tables on :func:`trace_split`'s data."""

    name = "synthetic_trace"
    metric = "gap_share"
    preset = PRESET
    overrides = OVERRIDES
    train_hours = TRAIN_HOURS
    min_rows = SMALL_FIELD_ROWS

    def describe(self) -> dict[str, Any]:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items())
        return {"name": self.name, "dataset": f"synthetic trace, preset {self.preset!r} ({settings}): hours "
                                              f"0-{self.train_hours - 1} train, {self.train_hours} selects, "
                                              f"{self.train_hours + 1} is reported",
                "model": f"DSSM, MLP {HIDDEN}; compressed: the fields with >= {self.min_rows:,} training features",
                "epochs": EPOCHS, "optimizer": "Adagrad lr 0.01, batch 1024",
                "metric": "test gap_share = (auc - auc_pop) / (auc_bayes - auc_pop) (state chosen on validation)",
                "popularity model": "sum over fields of log(1 + the feature's training count)",
                "counting clicks (auc_rates)": "per-feature click rates of the training hours smoothed towards the "
                                               "training CTR, log-odds summed over fields; prior (rates_prior) "
                                               f"chosen on the validation hour among {list(RATE_PRIORS)}"}

    def prepare(self, cache: Any = None) -> dict[str, Any]:
        """The split, its large fields, and per split the popularity and Bayes AUC (``cache`` is unused: the trace
        is generated)."""
        from saec.models import large_fields
        from saec.train.metrics import auc

        task, bayes = trace_split(SyntheticTrace(TraceConfig.preset(self.preset, **self.overrides)), self.train_hours)
        task.check_labels()
        large = large_fields(task.schema, task.vocabs, self.min_rows)
        if not large:
            raise SaecError(f"{self.name}: no field has >= {self.min_rows} training features: nothing to compress")
        pop = FeaturePopularity.fit(task.train, task.num_embeddings)
        rates = click_rate_model(task.train, task.valid, task.num_embeddings)
        floors = {s: {"auc_pop": auc(getattr(task, s).labels, pop.scores(getattr(task, s))), "auc_bayes": bayes[s],
                      "auc_rates": auc(getattr(task, s).labels, rates.scores(getattr(task, s))),
                      "rates_prior": rates.prior} for s in ("valid", "test")}
        return {"task": task, "large": large, "floors": floors}

    def evaluate(self, model: Any, data: dict[str, Any]) -> dict[str, dict[str, float]]:
        """movielens_ctr's AUC and log loss per split, with the split's floors and ``gap_share``."""
        from saec.train.metrics import gap_share

        out = super().evaluate(model, data)
        for split, m in out.items():
            f = data["floors"][split]
            m.update(f, gap_share=gap_share(m["auc"], f["auc_pop"], f["auc_bayes"]))
        return out


__all__ = ["ClickRates", "FeaturePopularity", "OVERRIDES", "PRESET", "RATE_PRIORS", "SyntheticTraceCTR", "TRAIN_HOURS",
           "click_rate_model", "trace_split"]
