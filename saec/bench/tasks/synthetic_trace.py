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
  can do better in expectation) and ``auc_pop`` the popularity model's (:class:`ClickRates`): every feature's
  click rate over the training hours, smoothed towards the training CTR, their log-odds added over the fields
  as the trace's click model adds its per-feature effects (no interactions). Its prior strength is chosen on
  the selection hour among :data:`POP_PRIORS`, so the floor is the best of its kind without touching the
  reported hour. 0: no better than counting clicks; 1: the Bayes ceiling; below 0: worse than counting.
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
at the preset's 10,000 the full model's test AUC is 0.005 below the popularity model's, at 50,000 they tie."""
TRAIN_HOURS = 10
POP_PRIORS = (1.0, 10.0, 100.0, 1000.0)
"""Prior strengths (pseudo-samples at the training CTR) the popularity model chooses from on the selection hour."""


def _logit(p: np.ndarray | float) -> np.ndarray:
    return np.log(p) - np.log1p(-np.asarray(p))


@dataclass(frozen=True)
class ClickRates:
    """The popularity model: a feature's click rate over the training samples, smoothed towards the training CTR
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


def popularity_model(train: CTRData, valid: CTRData, sizes: Mapping[str, int],
                     priors: tuple[float, ...] = POP_PRIORS) -> ClickRates:
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
                "popularity model": "per-feature click rates of the training hours smoothed towards the training "
                                    "CTR, log-odds summed over fields; prior strength (pop_prior) chosen on the "
                                    f"validation hour among {list(POP_PRIORS)}"}

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
        pop = popularity_model(task.train, task.valid, task.num_embeddings)
        floors = {s: {"auc_pop": auc(getattr(task, s).labels, pop.scores(getattr(task, s))), "auc_bayes": bayes[s],
                      "pop_prior": pop.prior} for s in ("valid", "test")}
        return {"task": task, "large": large, "floors": floors}

    def evaluate(self, model: Any, data: dict[str, Any]) -> dict[str, dict[str, float]]:
        """movielens_ctr's AUC and log loss per split, with the split's floors and ``gap_share``."""
        from saec.train.metrics import gap_share

        out = super().evaluate(model, data)
        for split, m in out.items():
            f = data["floors"][split]
            m.update(f, gap_share=gap_share(m["auc"], f["auc_pop"], f["auc_bayes"]))
        return out


__all__ = ["ClickRates", "OVERRIDES", "POP_PRIORS", "PRESET", "SyntheticTraceCTR", "TRAIN_HOURS", "popularity_model",
           "trace_split"]
