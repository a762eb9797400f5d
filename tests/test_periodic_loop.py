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


def test_retrain_network_defaults_and_refusals():
    assert PeriodicConfig().retrain_network == "compressed"
    assert PeriodicConfig(retrain_fields="all").retrain_network == "all"
    with pytest.raises(SaecError, match="retrain_network='compressed' keeps"):
        PeriodicConfig(retrain_fields="all", retrain_network="compressed")
    with pytest.raises(SaecError, match="retrain_network"):
        PeriodicConfig(retrain_network="first")


def _compressed_after_one_segment(tmp_path, model="dssm"):
    src = TraceSegments(SyntheticTrace(TraceConfig.preset("tiny")))
    cfg = PeriodicConfig(hyper={"k": 4, "eligibility": 8}, hidden=(16,), retrain_on="full", model=model,
                         train=TrainConfig(progress=False))
    run = PeriodicRun(src, cfg, tmp_path / model)
    run.stream.step(0)
    compressed, _, _ = run._compress()
    return run.stream.model, compressed, run.stream.train_data, cfg.train


def test_fixed_share_retraining_equals_the_whole_model_with_those_weights_held(tmp_path):
    """retrain(fixed=...) through FixedShare against the plain model whose first-layer columns of the frozen
    fields get a zero gradient: the same epoch, up to float rounding."""
    import copy

    from saec.models.mlp import split_columns
    from saec.pipeline.flow import freeze_full_fields, retrain

    full, compressed, data, train = _compressed_after_one_segment(tmp_path)
    ref, new = copy.deepcopy(compressed), copy.deepcopy(compressed)
    frozen = freeze_full_fields(ref)
    assert frozen and freeze_full_fields(new) == frozen
    names = [f.name for f in compressed.embeddings.schema.fields]
    fixed_cols, _ = split_columns(tuple(compressed.embeddings.schema[n].dim for n in names),
                                  tuple(n not in frozen for n in names))
    before = compressed.mlp[0].weight.detach().clone()

    def hold(grad):
        grad = grad.clone()
        grad[:, fixed_cols] = 0
        return grad

    ref.mlp[0].weight.register_hook(hold)
    retrain(ref, data, train, None, full)
    retrain(new, data, train, None, full, fixed=frozen)
    assert torch.equal(new.mlp[0].weight.detach()[:, fixed_cols], before[:, fixed_cols])
    moved = new.mlp[0].weight.detach() - before
    assert moved.abs().sum() > 0  # the other columns trained
    for (name, a), (_, b) in zip(ref.state_dict().items(), new.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_fixed_share_is_skipped_where_it_does_not_apply(tmp_path):
    """DeepFM (frozen vectors also meet the trained ones in its FM term): ``fixed`` changes nothing."""
    import copy

    from saec.pipeline.flow import freeze_full_fields, retrain

    full, compressed, data, train = _compressed_after_one_segment(tmp_path, "deepfm")
    a, b = copy.deepcopy(compressed), copy.deepcopy(compressed)
    frozen = freeze_full_fields(a)
    freeze_full_fields(b)
    retrain(a, data, train, None, full)
    retrain(b, data, train, None, full, fixed=frozen)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_concat_linear_gives_input_gradients_only_to_trained_vectors():
    from saec.models.mlp import concat_linear

    torch.manual_seed(0)
    lin = nn.Linear(7, 5)
    vecs = [torch.randn(6, 3), torch.randn(6, 4, requires_grad=True)]
    (out,) = concat_linear(vecs, lin)
    ref = lin(torch.cat(vecs, dim=1))
    assert torch.allclose(out, ref, atol=1e-6)
    grad_w = torch.autograd.grad(out.sum(), [lin.weight, vecs[1]])
    ref_w = torch.autograd.grad(ref.sum(), [lin.weight, vecs[1]])
    assert all(torch.allclose(g, r, atol=1e-6) for g, r in zip(grad_w, ref_w))
    with torch.no_grad():  # the plain layer where nothing is split
        assert torch.equal(concat_linear(vecs, lin)[0], lin(torch.cat(vecs, dim=1)))
