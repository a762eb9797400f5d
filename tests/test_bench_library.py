"""The analysis helpers the benchmarks share, now in the library: retraining with a ``trainable`` choice,
metrics by feature frequency, the parameter counter, and the report helpers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score
from torch import nn

from saec.cluster.saec import SaecConfig
from saec.compression import compress_model
from saec.data.dataset import CTRData
from saec.data.schema import Field, Schema
from saec.errors import SaecError
from saec.models import build_model
from saec.train.loop import TrainConfig


def _compressed():
    schema = Schema((Field("big", 3), Field("small", 2)))
    model = build_model("dssm", schema, {"big": 400, "small": 5}, hidden=(4,))
    compressed, _ = compress_model(model, None, SaecConfig(k=4, eligibility=10))
    rng = np.random.default_rng(0)
    data = CTRData({"big": rng.integers(0, 400, 600), "small": rng.integers(0, 5, 600)},
                   rng.integers(0, 2, 600).astype(np.float32))
    return model, compressed, data


def test_retrain_codebooks_moves_only_the_codebooks_and_restores_requires_grad():
    from saec.pipeline.flow import retrain

    _, compressed, data = _compressed()
    compressed.mlp[-1].bias.requires_grad_(False)  # the caller's own choice survives retraining
    flags = {n: p.requires_grad for n, p in compressed.named_parameters()}
    before = {n: p.detach().clone() for n, p in compressed.named_parameters()}
    retrain(compressed, data, TrainConfig(optimizer="sgd", lr=0.1, progress=False), trainable="codebooks")
    moved = {n for n, p in compressed.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved == {"embeddings.tables.big.codebook"}
    assert {n: p.requires_grad for n, p in compressed.named_parameters()} == flags
    # "all" trains what the caller left trainable, the frozen bias still held
    retrain(compressed, data, TrainConfig(optimizer="sgd", lr=0.1, progress=False))
    assert torch.equal(compressed.mlp[-1].bias.detach(), before["mlp.{}.bias".format(len(compressed.mlp) - 1)])
    assert not torch.equal(compressed.mlp[0].weight.detach(), before["mlp.0.weight"])


def test_retrain_codebooks_with_a_carried_optimizer_over_every_parameter():
    """A carried optimizer holds the network too; held parameters get no gradient, hence no step."""
    from saec.pipeline.flow import carry_optimizer, retrain
    from saec.train.loop import make_optimizer, train_epoch

    model, _, data = _compressed()
    cfg = TrainConfig(progress=False)
    opt = make_optimizer(model, cfg)
    train_epoch(model, data, opt, progress=False)
    compressed, fields = compress_model(model, None, SaecConfig(k=4, eligibility=10))
    carried = carry_optimizer(model, opt, compressed, cfg, codebook_state="sum")
    acc = opt.state[model.embeddings.tables["big"].weight]["sum"].to_dense()
    mask = torch.as_tensor(fields["big"].mask.astype(np.int64))
    book = compressed.embeddings.tables["big"].codebook
    assert torch.allclose(carried.state[book]["sum"][1], acc[mask == 1].sum(0))  # sum, though grad_mode is mean
    mlp = compressed.mlp[0].weight.detach().clone()
    retrain(compressed, data, cfg, carried, trainable="codebooks")
    assert torch.equal(compressed.mlp[0].weight.detach(), mlp) and compressed.mlp[0].weight.requires_grad
    with pytest.raises(SaecError, match="codebook_state"):
        carry_optimizer(model, opt, compressed, cfg, codebook_state="max")


def test_retrain_rejects_a_bad_trainable_and_a_model_without_codebooks():
    from saec.pipeline.flow import retrain

    model, compressed, data = _compressed()
    with pytest.raises(SaecError, match=r"trainable must be one of \('all', 'codebooks'\), got 'mlp'"):
        retrain(compressed, data, TrainConfig(progress=False), trainable="mlp")
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(SaecError, match="trainable='codebooks' needs clustered tables"):
        retrain(model, data, TrainConfig(progress=False), trainable="codebooks")
    assert [p.requires_grad for p in model.parameters()] == flags


def test_frequency_buckets_against_a_loop_over_samples():
    from saec.train.metrics import frequency_bucket_labels, frequency_buckets

    rng = np.random.default_rng(1)
    counts = rng.integers(1, 3000, 50)
    counts[:5] = [1, 2, 9, 10, 999]
    ids = rng.integers(-1, 50, 4000)
    y = rng.integers(0, 2, 4000)
    p, q = rng.random(4000).astype(np.float32), rng.random(4000)
    rows = frequency_buckets(y, ids, counts, {"p": p, "q": q}, edges=(1, 2, 10, 1000))
    assert [r["bucket"] for r in rows] == frequency_bucket_labels((1, 2, 10, 1000)) == \
        ["OOV (unseen)", "1", "2-9", "10-999", ">= 1000"]

    def bucket(i):  # the reference: each sample on its own
        if i < 0:
            return 0
        c = counts[i]
        return 1 if c == 1 else 2 if c < 10 else 3 if c < 1000 else 4

    where = np.array([bucket(i) for i in ids])
    for b, row in enumerate(rows):
        sel = where == b
        assert row["n"] == sel.sum() and row["share"] == pytest.approx(sel.mean())
        assert row["ctr"] == pytest.approx(y[sel].mean())
        for name, pred in (("p", p), ("q", q)):
            assert row[name]["logloss"] == pytest.approx(sk_log_loss(y[sel], pred[sel]), rel=1e-6)
            assert row[name]["auc"] == pytest.approx(roc_auc_score(y[sel], pred[sel]))


def test_frequency_buckets_empty_and_one_class_buckets_and_errors():
    from saec.train.metrics import frequency_buckets

    counts = np.array([5, 5, 50])
    rows = frequency_buckets([1, 0, 1], np.array([0, 1, 2]), counts, {"p": np.array([0.9, 0.2, 0.7])})
    oov, low, mid = rows[0], rows[1], rows[2]
    assert oov["n"] == 0 and np.isnan(oov["p"]["logloss"]) and np.isnan(oov["ctr"])
    assert low["n"] == 2 and low["p"]["auc"] == 1.0
    assert mid["n"] == 1 and np.isnan(mid["p"]["auc"]) and mid["p"]["logloss"] == pytest.approx(-np.log(0.7))
    with pytest.raises(SaecError, match="edges"):
        frequency_buckets([1], np.array([0]), counts, {}, edges=(10, 5))
    with pytest.raises(SaecError, match="one feature id per sample"):
        frequency_buckets([1, 0], np.array([[0, 1], [1, 2]]), counts, {})
    with pytest.raises(SaecError, match="len\\(counts\\) = 3"):
        frequency_buckets([1], np.array([3]), counts, {})
    with pytest.raises(SaecError, match="predictions\\['p'\\]"):
        frequency_buckets([1, 0], np.array([0, 1]), counts, {"p": np.array([0.5])})


def test_param_count_counts_every_parameter_and_no_buffer():
    from saec.nn import param_count
    from saec.nn.registry import make_embedding

    lin = nn.Linear(3, 2)
    lin.bias.requires_grad_(False)  # frozen still counts: it is stored
    lin.register_buffer("codes", torch.zeros(100))
    assert param_count(lin) == 3 * 2 + 2
    table = make_embedding("hashing", 100, 4, num_buckets=10)
    assert table.param_count() == param_count(table) == 40


def test_report_helpers():
    from saec.bench.report import (NOT_RECORDED, and_list, count_word, group_by, mean, mean_std, peak_rss_text,
                                   recorded_environment, relative_loss, select, span)

    assert mean_std([0.001, 0.003], 4, sign=True) == "+0.0020 ± 0.0014" and mean_std([-0.5], 2, sign=True) == "-0.50"
    assert mean_std([]) == "n/a" and np.isnan(mean([]))
    signed = "{:+.4f}"
    assert span([0.0005, 0.0138], signed) == "+0.0005 to +0.0138"
    assert span([0.00001, -0.00001], signed) == "-0.0000 to +0.0000"
    assert span([0.00101, 0.00099], signed) == "+0.0010" and span([]) == "n/a" and span([1.234]) == "1.23"
    assert relative_loss(0.9, 1.0) == pytest.approx(10.0)
    rows = [{"k": 1, "s": 0}, {"k": 2, "s": 0}, {"k": 1, "s": 1}]
    assert group_by(rows, "k") == {1: [rows[0], rows[2]], 2: [rows[1]]}
    assert list(group_by(rows, "k", "s")) == [(1, 0), (2, 0), (1, 1)] and select(rows, k=1, s=1) == [rows[2]]
    assert count_word(5) == "five" and count_word(13) == "13"
    assert and_list(["a"]) == "a" and and_list("ab") == "a and b" and and_list("abc") == "a, b and c"
    assert recorded_environment(None, **{"peak RSS": peak_rss_text(None)}) == \
        {"environment": NOT_RECORDED, "peak RSS": NOT_RECORDED}
    assert recorded_environment({"saec": "0.1"})["saec"] == "0.1" and peak_rss_text(1258.7) == "1,259 MiB"
    from saec.bench.report import ENVIRONMENT_KEYS, environment, header

    # a record's environment comes back from JSON with sorted keys; the page lists it in environment()'s order
    stored = dict(sorted({**environment(), "peak RSS": "1 MiB", "another fact": "x"}.items()))
    lines = [ln[2:].split(":")[0] for ln in header("T", ["cmd"], stored).splitlines() if ln.startswith("- ")]
    assert lines == [*ENVIRONMENT_KEYS, "another fact", "peak RSS"]


def test_codebooks_retraining_is_the_benchmarks_former_hand_rolled_ones():
    """retrain(trainable="codebooks") against what benchmarks/movielens_saec.py (requires_grad by name, a fresh
    optimizer) and benchmarks/trace_saec.py (an Adagrad over the codebooks, each row starting from the sum of its
    members' accumulators) did by hand: the same epoch."""
    from saec.nn.clustered import ClusteredEmbedding
    from saec.pipeline.flow import carry_optimizer, retrain
    from saec.train.loop import make_optimizer, train_epoch

    model, _, data = _compressed()
    cfg = TrainConfig(progress=False)
    opt = make_optimizer(model, cfg)
    train_epoch(model, data, opt, progress=False)
    compressed, fields = compress_model(model, None, SaecConfig(k=4, eligibility=10))

    by_name, fresh = copy.deepcopy(compressed), copy.deepcopy(compressed)
    for name, p in by_name.named_parameters():
        p.requires_grad_(name.endswith(".codebook"))
    retrain(by_name, data, cfg)
    retrain(fresh, data, cfg, trainable="codebooks")
    assert all(torch.equal(a, b) for a, b in zip(by_name.parameters(), fresh.parameters()))

    by_hand, carried = copy.deepcopy(compressed), copy.deepcopy(compressed)
    params, state = [], {}
    for name, table in by_hand.embeddings.tables.items():
        if isinstance(table, ClusteredEmbedding):
            acc = opt.state[model.embeddings.tables[name].weight]["sum"].to_dense()
            members = torch.as_tensor(fields[name].mask.astype(np.int64))
            params.append(table.codebook)
            state[table.codebook] = {"step": torch.tensor(0.0), "sum": torch.zeros_like(table.codebook).index_add_(0, members, acc)}
    for p in by_hand.parameters():
        p.requires_grad_(any(p is q for q in params))
    hand_opt = torch.optim.Adagrad(params, lr=cfg.lr)
    hand_opt.state.update(state)
    train_epoch(by_hand, data, hand_opt, cfg.batch_size, seed=cfg.seed + 10_007, progress=False)
    retrain(carried, data, cfg, carry_optimizer(model, opt, carried, cfg, codebook_state="sum"), trainable="codebooks")
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(by_hand.parameters(), carried.parameters()))
    assert not torch.equal(carried.embeddings.tables["big"].codebook, compressed.embeddings.tables["big"].codebook)
