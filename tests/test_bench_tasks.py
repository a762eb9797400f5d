"""The benchmark's ranking and trace tasks (saec.bench.tasks.movielens_rank, .synthetic_trace) on tiny data: their
metrics against simple references, one cell each through the grid, and their pages."""

import functools
import math
import os

import numpy as np
import pytest
import torch

from saec.bench import grid
from saec.bench.grid import Cell, parse_budget, read_records, run_cell, write_record
from saec.bench.leaderboard import render
from saec.bench.tasks.movielens_rank import MovieLensRank
from saec.bench.tasks.synthetic_trace import (ClickRates, FeaturePopularity, SyntheticTraceCTR, click_rate_model,
                                             trace_split)
from saec.data.dataset import CTRData
from saec.data.ranking import build_ranking_task
from saec.data.synthetic import SyntheticTrace, TraceConfig
from saec.errors import SaecError
from saec.train.metrics import auc, gap_share


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """One torch thread (tiny models) and a short latency measurement (its length is not under test here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(grid, "forward_latency_ms", functools.partial(grid.forward_latency_ms, min_time=0.01))
    yield
    torch.set_num_threads(threads)


def test_gap_share_is_zero_at_the_floor_one_at_the_ceiling_and_linear_between():
    assert gap_share(0.6, 0.6, 0.9) == 0.0 and gap_share(0.9, 0.6, 0.9) == 1.0
    assert gap_share(0.7, 0.6, 0.9) == pytest.approx(1 / 3) and gap_share(0.45, 0.6, 0.9) == pytest.approx(-0.5)
    with pytest.raises(SaecError, match=r"ceiling \(0.6\) must lie above the floor \(0.7\)"):
        gap_share(0.8, 0.7, 0.6)
    with pytest.raises(SaecError, match="finite"):
        gap_share(float("nan"), 0.5, 0.9)


def test_click_rates_are_smoothed_per_feature_rates_whose_log_odds_add_up():
    train = CTRData({"a": np.array([0, 0, 0, 1]), "b": np.array([0, 1, 1, 1])}, np.array([1, 1, 0, 0]))
    m = ClickRates.fit(train, {"a": 3, "b": 2}, prior=2.0)
    ctr = 0.5

    def offset(clicks, n):  # the reference, one feature at a time
        r = (clicks + 2.0 * ctr) / (n + 2.0)
        return math.log(r / (1 - r)) - math.log(ctr / (1 - ctr))

    np.testing.assert_allclose(m.offsets["a"], [offset(2, 3), offset(0, 1), 0.0])  # id 2 unseen: the prior alone
    np.testing.assert_allclose(m.offsets["b"], [offset(1, 1), offset(1, 3)])
    data = CTRData({"a": np.array([0, -1, 1]), "b": np.array([0, 1, -1])}, np.array([1, 0, 1]))
    np.testing.assert_allclose(m.scores(data), [offset(2, 3) + offset(1, 1), offset(1, 3), offset(0, 1)])
    with pytest.raises(SaecError, match="one id per sample"):
        ClickRates.fit(CTRData({"a": np.zeros((4, 2), dtype=np.int64)}, train.labels), {"a": 1}, 1.0)


def test_popularity_scores_sum_the_log_training_counts_of_a_samples_features():
    train = CTRData({"a": np.array([0, 0, 0, 1]), "b": np.array([1, 1, -1, 1])}, np.array([1, 1, 0, 0]))
    m = FeaturePopularity.fit(train, {"a": 3, "b": 2})
    assert m.counts["a"].tolist() == [3, 1, 0] and m.counts["b"].tolist() == [0, 3]
    data = CTRData({"a": np.array([0, 2, -1]), "b": np.array([1, 0, 1])}, np.array([1, 0, 1]))
    np.testing.assert_allclose(m.scores(data), [math.log(4) + math.log(4), 0.0, math.log(4)])
    with pytest.raises(SaecError, match="one id per sample"):
        FeaturePopularity.fit(CTRData({"a": np.zeros((4, 2), dtype=np.int64)}, train.labels), {"a": 1})


def test_counting_clicks_keeps_the_prior_best_on_validation():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=(2, 600))
    y = (rng.random(600) < 0.2 + 0.6 * (ids[0] % 2)).astype(np.float32)  # odd features click more
    train = CTRData({"f": ids[0, :400]}, y[:400])
    valid = CTRData({"f": ids[0, 400:]}, y[400:])
    chosen = click_rate_model(train, valid, {"f": 50}, priors=(0.1, 5.0, 1e4))
    aucs = {p: auc(valid.labels, ClickRates.fit(train, {"f": 50}, p).scores(valid)) for p in (0.1, 5.0, 1e4)}
    assert chosen.prior == max(aucs, key=aucs.get)


def test_the_trace_split_trains_on_the_first_hours_and_knows_each_later_hours_ceiling():
    trace = SyntheticTrace(TraceConfig.preset("tiny"))
    task, bayes = trace_split(trace, 3)
    hours = [trace.segment(h) for h in range(5)]
    assert len(task.train) == sum(len(s) for s in hours[:3]) and len(task.test) == len(hours[4])
    assert bayes == {"valid": hours[3].bayes_auc, "test": hours[4].bayes_auc}
    f = trace.names[0]
    seen = set(np.concatenate([s.raw[f] for s in hours[:3]]).tolist())
    assert len(task.vocabs[f]) == len(seen)  # one vocabulary of the training hours only
    assert ((task.valid.ids[f] < 0) == ~np.isin(hours[3].raw[f], list(seen))).all()
    assert (np.diff(task.vocabs[f].counts) <= 0).all()  # ids by decreasing training frequency
    with pytest.raises(SaecError, match="train_hours must leave a validation and a test hour"):
        trace_split(trace, 5)


def _tiny_ranking():
    """100 users walking 60 items in steps of one from a random start: the next item is learnable."""
    rng = np.random.default_rng(0)
    rows = [(u, f"i{(s + t) % 60}", t) for u, s in enumerate(rng.integers(0, 60, 100)) for t in range(12)]
    users, items, times = map(np.array, zip(*rows))
    return build_ranking_task(users, items, times, history_len=8, min_count=1)


@pytest.fixture
def tiny_tasks(monkeypatch):
    ranking = _tiny_ranking()
    monkeypatch.setattr(MovieLensRank, "prepare", lambda self, cache=None: {"task": ranking})
    monkeypatch.setattr(SyntheticTraceCTR, "preset", "tiny")
    monkeypatch.setattr(SyntheticTraceCTR, "overrides", {})
    monkeypatch.setattr(SyntheticTraceCTR, "train_hours", 4)
    monkeypatch.setattr(SyntheticTraceCTR, "min_rows", 300)


@pytest.mark.parametrize("method", ["full", "hashing"])
def test_a_ranking_cell_reports_test_ndcg_of_the_state_chosen_on_validation(tiny_tasks, method):
    r = run_cell(Cell("movielens_rank", method, "full" if method == "full" else "1/16", 0))
    assert r["status"] == "ok" and set(r["tables"]) == {"item"}
    assert 0.0 <= r["metrics"]["ndcg"] <= r["metrics"]["hit"] <= 1.0
    best = max(r["states"], key=lambda s: s["valid"]["ndcg"])
    assert r["metrics"] == best["test"] and r["train"]["epochs"] >= 1
    if method == "hashing":
        assert r["tables"]["item"]["bytes"] <= r["tables"]["item"]["full_bytes"] / 16
    else:
        assert r["metrics"]["ndcg"] > 0.5  # the walk is learnable: the full model ranks the next item near the top


def test_a_ranking_budget_out_of_reach_is_said(tiny_tasks):
    r = run_cell(Cell("movielens_rank", "hashing", "1/1000", 0))  # 61 rows x 256: 1/1000 is less than one row
    assert r["status"] == "cannot reach" and "item" in r["reason"]


@pytest.mark.parametrize("method", ["full", "hashing"])
def test_a_trace_cell_reports_its_auc_as_a_share_of_the_gap(tiny_tasks, method):
    r = run_cell(Cell("synthetic_trace", method, "full" if method == "full" else "1/16", 0))
    assert r["status"] == "ok" and r["tables"]
    for split in ("valid", "test"):
        m = r["states"][0][split]
        assert 0.4 < m["auc_pop"] < m["auc_bayes"] < 1.0 and m["auc_pop"] < m["auc_rates"] and m["rates_prior"] > 0
        assert m["gap_share"] == pytest.approx((m["auc"] - m["auc_pop"]) / (m["auc_bayes"] - m["auc_pop"]))
    assert -3.0 < r["metrics"]["gap_share"] < 1.0  # above the ceiling only by chance, not on tiny data
    for t in r["tables"].values():
        assert t["bytes"] <= t["full_bytes"] / (parse_budget(r["cell"]["budget"])[1] or 1)


def test_a_trace_budget_out_of_reach_is_said(tiny_tasks):
    r = run_cell(Cell("synthetic_trace", "int8", "1/16", 0))  # int8 keeps a byte per number: 1/4, not 1/16
    assert r["status"] == "cannot reach" and "int8" in r["reason"]


def test_pages_of_the_new_tasks_name_their_metric_and_have_no_peer_rows(tiny_tasks, tmp_path):
    from saec.bench.report import environment

    for cell in (Cell("movielens_rank", "full", "full", 0), Cell("movielens_rank", "hashing", "1/16", 0),
                 Cell("movielens_rank", "hashing", "1/1000", 0), Cell("synthetic_trace", "full", "full", 0),
                 Cell("synthetic_trace", "hashing", "1/16", 0)):
        record = run_cell(cell)  # what the grid's child adds to a record
        record.update(command=["test"], environment=environment(), peak_rss_mib=1.0, wall_s=1.0, loadavg_end=0.0)
        write_record(cell.path(tmp_path), record)
    assert len(read_records(tmp_path)) == 5
    pages = {p.stem: p.read_text() for p in render(tmp_path)}
    assert set(pages) == {"movielens_rank", "synthetic_trace", "guide"}
    assert "[movielens_rank](movielens_rank.md), [synthetic_trace](synthetic_trace.md)" in pages["guide"]
    rank, trace = pages["movielens_rank"], pages["synthetic_trace"]
    assert "nDCG@10 (`ndcg`)" in rank and "share of the popularity-to-Bayes AUC gap (`gap_share`)" in trace and "| hashing |" in rank
    assert "cannot reach" in rank and "## Guide" in rank and "## Guide" in trace
    assert "thomasahle" not in rank + trace
    assert "reference AUCs on the reported split" in trace and "`auc_rates`" in trace and "`auc_bayes`" in trace
    assert os.path.exists(tmp_path / "movielens_rank_pareto_ratio.png")
