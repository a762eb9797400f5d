import numpy as np
import pytest
import torch

from saec.cli import main
from saec.data.synthetic import SyntheticTrace, TraceConfig
from saec.models import build_model
from saec.data import Field, Schema
from saec.train.loop import TrainConfig, make_optimizer
from saec.train.stream import StreamingRun, grow_model


def test_grow_model_keeps_rows_and_adagrad_state():
    schema = Schema((Field("a", 3), Field("b", 2)))
    model = build_model("dssm", schema, {"a": 4, "b": 2}, hidden=(4,))
    opt = make_optimizer(model, TrainConfig())
    ids = {"a": torch.tensor([0, 3]), "b": torch.tensor([1, 1])}
    model(ids).sum().backward()
    opt.step()
    old_w = model.embeddings.tables["a"].weight.detach().clone()
    old_sum = opt.state[model.embeddings.tables["a"].weight]["sum"].clone()
    grow_model(model, opt, {"a": 6, "b": 2})
    w = model.embeddings.tables["a"].weight
    assert w.shape == (6, 3) and torch.equal(w[:4].detach(), old_w)
    assert torch.equal(opt.state[w]["sum"][:4], old_sum) and (opt.state[w]["sum"][4:] == 0).all()
    assert any(p is w for g in opt.param_groups for p in g["params"])
    opt.zero_grad()
    model({"a": torch.tensor([5]), "b": torch.tensor([0])}).sum().backward()
    opt.step()  # the optimizer updates the grown table
    assert not torch.equal(w[5].detach(), torch.zeros(3))


def test_streaming_learns_and_stays_below_the_bayes_ceiling():
    trace = SyntheticTrace(TraceConfig.preset("tiny", samples_per_hour=6000))
    run = StreamingRun(trace, cfg=TrainConfig(lr=0.05, batch_size=256, progress=False), hidden=(32,))
    rows = list(run.run())
    assert [r["test_hour"] for r in rows] == list(range(1, trace.config.hours))
    assert rows[-1]["features"] > rows[0]["features"]  # the vocabulary (and the tables) grew
    last = rows[-1]
    assert 0.6 < last["auc"] <= last["bayes_auc"] + 0.02, last
    assert last["logloss"] >= last["bayes_logloss"] - 0.02
    sizes = {n: run.model.embeddings.num_embeddings(n) for n in trace.names}
    assert sizes == {n: len(v) for n, v in run.vocabs.items()}


def test_stream_command(tmp_path, capsys):
    assert main(["stream", "--preset", "tiny", "--hours", "3", "--quiet", "--out", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "Bayes AUC" in out and "1->2" in out and (tmp_path / "s.json").is_file()
    with pytest.raises(ValueError, match="hours"):
        list(StreamingRun(SyntheticTrace(TraceConfig.preset("tiny"))).run(hours=1))


def test_min_count_lets_the_oov_vector_learn_from_first_sightings():
    trace = SyntheticTrace(TraceConfig.preset("tiny", samples_per_hour=3000))
    cfg = TrainConfig(lr=0.05, batch_size=256, progress=False)
    runs = {m: StreamingRun(trace, cfg=cfg, hidden=(16,), min_count=m) for m in (1, 2)}
    for run in runs.values():
        list(run.run(hours=3))
    oov = {m: max(float(p.detach().abs().max()) for p in r.model.embeddings.oov.values()) for m, r in runs.items()}
    assert oov[1] == 0.0 < oov[2]  # with min_count 1 no training value is OOV, so the OOV vectors never move
    for n in trace.names:  # values seen once are held back (pending) instead of getting a row
        assert len(runs[2].vocabs[n]) <= len(runs[1].vocabs[n])
    assert sum(len(v) for v in runs[2].vocabs.values()) < sum(len(v) for v in runs[1].vocabs.values())
