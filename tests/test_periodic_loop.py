"""PeriodicRun: settings refused up front, and methods other than Saec (the loop itself: tests/test_periodic.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
    with pytest.raises(SaecError, match="retrain_fields"):
        PeriodicConfig(retrain_fields="full")


def test_other_methods_publish_too(tmp_path):
    src = TraceSegments(SyntheticTrace(TraceConfig.preset("tiny")))
    cfg = PeriodicConfig(method="int8", min_rows=50, hidden=(16,), retrain_on="labels",
                         train=TrainConfig(progress=False))
    rows = list(PeriodicRun(src, cfg, tmp_path / "int8").run(3))
    assert all(r["method"] == "int8" and r["compressed_tables"] > 0 and r["ratio"] > 1.2 for r in rows)
    model, _, extra = load_model(tmp_path / "int8" / "serving" / "current")
    assert extra["published"]["method"] == "int8"


@pytest.mark.parametrize("fields", ["compressed", "all"])
def test_retrain_fields_decides_whether_fields_left_full_keep_the_full_models_values(tmp_path, fields):
    src = TraceSegments(SyntheticTrace(TraceConfig.preset("tiny")))
    cfg = PeriodicConfig(hyper={"k": 4, "eligibility": 8}, hidden=(16,), retrain_on="labels", retrain_fields=fields,
                         train=TrainConfig(progress=False))
    run = PeriodicRun(src, cfg, tmp_path / fields)
    row = list(run.run(3))[-1]
    published, _, _ = load_model(tmp_path / fields / "serving" / "current")
    full, tables = run.stream.model.embeddings, published.embeddings.tables
    left_full = [n for n, t in tables.items() if type(t) is nn.Embedding]
    assert 0 < row["compressed_tables"] < len(tables) and left_full  # both kinds present
    same = [torch.equal(tables[n].weight, full.tables[n].weight) and
            torch.equal(published.embeddings.oov[n], full.oov[n]) for n in left_full]
    assert all(same) if fields == "compressed" else not any(same)
    codebooks_trained = [n for n, t in tables.items() if n not in left_full]
    assert codebooks_trained and all(tables[n].codebook.requires_grad for n in codebooks_trained)
