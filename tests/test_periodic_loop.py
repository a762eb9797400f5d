"""PeriodicRun: settings refused up front, and methods other than Saec (the loop itself: tests/test_periodic.py)."""

from __future__ import annotations

import pytest

from saec.data.segments import TraceSegments
from saec.data.synthetic import SyntheticTrace, TraceConfig
from saec.errors import SaecError
from saec.io import load_model
from saec.pipeline.periodic import PeriodicConfig, PeriodicRun
from saec.train.loop import TrainConfig


def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(SaecError, match="warm_start needs a fixed k"):
        PeriodicConfig(warm_start=True, ratio=16)
    with pytest.raises(SaecError, match="warm_start applies to method 'saec'"):
        PeriodicConfig(method="int8", warm_start=True)
    with pytest.raises(SaecError, match="has no hyperparameter 'kk'"):
        PeriodicConfig(hyper={"kk": 3})
    with pytest.raises(SaecError, match="retrain_on"):
        PeriodicConfig(retrain_on="both")



def test_other_methods_publish_too(tmp_path):
    src = TraceSegments(SyntheticTrace(TraceConfig.preset("tiny")))
    cfg = PeriodicConfig(method="int8", min_rows=50, hidden=(16,), retrain_on="labels",
                         train=TrainConfig(progress=False))
    rows = list(PeriodicRun(src, cfg, tmp_path / "int8").run(3))
    assert all(r["method"] == "int8" and r["compressed_tables"] > 0 and r["ratio"] > 1.2 for r in rows)
    model, _, extra = load_model(tmp_path / "int8" / "serving" / "current")
    assert extra["published"]["method"] == "int8"
