"""The benchmark pages moved into saec.bench: each is rendered from its raw record alone, shows the environment
and peak RSS recorded with the run (or says they were not recorded), and computes what its prose quotes."""

from __future__ import annotations

import numpy as np
import pytest

ENV = {"saec": "9.9", "machine": "Test CPU, 3 cores, 1 GiB, Linux", "date": "2000-01-01 00:00 UTC"}


# ---- memcom_classification --------------------------------------------------------------------------------

def _run(label, ratio, auc, seed=0, **extra):
    return {"label": label, "ratio": ratio, "seed": seed, "auc": auc, "logloss": 0.6, "epochs": 3, "best_epoch": 2,
            "train_s": 6.0, "field_params": int(1000 / ratio), "embedding_params": int(1000 / ratio) + 10,
            "model_params": int(1000 / ratio) + 110, "embedding_bytes": 4000, "hyper": {"item": "''"}, **extra}


def _precision(auc):
    return [{"scope": "embeddings", "bits": b, "auc": auc - 0.001 * (32 - b) / 30, "logloss": 0.6, "nbytes": 100,
             "embedding_nbytes": 50} for b in (32, 16, 8, 4, 2)]


def _classification_record():
    unique = {"item": {"pairs": 10, "distinct_pairs": 10, "pair_fraction": 1.0, "feature_fraction": 1.0,
                       "features": 50, "unique_features": 50, "num_buckets": 5, "features_total": 50}}
    runs = [_run("full", 1.0, 0.76, 0, precision=_precision(0.76)), _run("full", 1.0, 0.758, 1),
            _run("memcom", 8.0, 0.74, precision=_precision(0.74), unique=unique), _run("hashing", 8.0, 0.73),
            _run("low_dim", 8.0, 0.755), _run("factorized", 8.0, 0.757),
            {"label": "tt", "ratio": 8.0, "seed": 0, "skipped": "TT rank 200 > --tt-max-rank 128 (too slow)"}]
    args = {"methods": ["full", "memcom", "hashing", "low_dim", "factorized", "tt"], "ratios": [1.0, 8.0],
            "seeds": 2, "seeded": ["full"], "dim": 64, "epochs": 3, "patience": 1, "quick": False, "resume": True}
    task = {"summary": "tiny task", "large": ["item"],
            "fields": {"item": {"features": 1000, "dim": 64}, "age": {"features": 7, "dim": 4}}}
    return {"args": args, "runs": runs, "wall_s": 120.0, "task": task}


def test_classification_command_comes_from_the_recorded_settings():
    from saec.bench.memcom_classification import ClassificationConfig, command
    from saec.bench.report import recorded_config
    from saec.errors import SaecError

    cfg = recorded_config(ClassificationConfig, {"ratios": [2.0, 4.0, 8.0, 16.0, 32.0, 64.0], "out": "x.md", "resume": True})
    assert command(cfg)[3:] == ["benchmarks/memcom_classification.py", "--ratios", "2,4,8,16,32,64"]
    assert command(ClassificationConfig(epochs=3, lr=0.05))[4:] == ["--epochs", "3", "--lr", "0.05"]
    with pytest.raises(SaecError, match="must include full"):
        ClassificationConfig(methods=("memcom",))


def test_classification_page_says_what_the_record_does_not_hold(tmp_path):
    from saec.bench.memcom_classification import render

    old = _classification_record()  # as the committed record: no environment, no peak RSS, passes unlogged
    render(old, tmp_path / "c.md", tmp_path / "c.png")
    page = (tmp_path / "c.md").read_text()
    assert "- environment: not recorded" in page and "Peak RSS not recorded." in page
    assert "its one row was removed from the JSON by hand" in page
    assert "--ratios 1,8" in page and "--seeds" not in page.split("```")[1]  # seeds 2 is the default
    assert "tt at 8x: TT rank 200" in page
    assert "stay within\n  0.53% AUC of the reference" in page  # low_dim 0.755 against the reference's mean 0.759
    assert (tmp_path / "c.png").stat().st_size and (tmp_path / "c_precision.png").stat().st_size

    new = {**old, "environment": ENV, "peak_rss_mib": 321.0, "commands": [["python", "a"], ["python", "a", "--rerun", "tt"]]}
    render(new, tmp_path / "n.md", tmp_path / "n.png")
    page = (tmp_path / "n.md").read_text()
    assert "- machine: Test CPU, 3 cores" in page and "Peak RSS 321 MiB." in page
    assert "removed from the JSON by hand" not in page and "python a --rerun tt" in page


# ---- memcom_ranking ---------------------------------------------------------------------------------------

def _rank_row(variant, ratio, ndcg, seed=0, loss="softmax", **extra):
    return {"variant": variant, "ratio": ratio, "seed": seed, "loss": loss, "ndcg": ndcg, "hit": 2 * ndcg,
            "valid_ndcg": ndcg, "best_epoch": 3, "epochs": 5, "seconds": 4.0, "emb_params": int(3020 * 8 / ratio),
            "model_params": int(3020 * 8 / ratio) + 3019 * 9, "emb_ratio": float(ratio), "model_ratio": 1.5, **extra}


def test_ranking_page_from_its_record_alone(tmp_path):
    from saec.bench.memcom_ranking import render

    rows = [_rank_row("uncompressed", 1, 0.06, 0), _rank_row("uncompressed", 1, 0.062, 1),
            _rank_row("memcom", 16, 0.045, hyper={"num_buckets": 189}), _rank_row("hashing", 16, 0.04),
            _rank_row("low_dim", 16, 0.052), {"variant": "qr_mult", "ratio": 16, "seed": 0, "loss": "softmax",
                                              "error": "budget too small"}]
    task = {"summary": "tiny", "num_items": 3019, "history_len": 128, "train_examples": 30200, "popularity_ndcg": 0.015}
    record = {"argv": ["python", "benchmarks/memcom_ranking.py"], "rows": rows, "elapsed": 60.0, "task": task,
              "config": {"dim": 8, "lr": 0.2}, "commands": [["python", "benchmarks/memcom_ranking.py"]]}
    render(record, tmp_path / "r.md", tmp_path / "r.png")
    page = (tmp_path / "r.md").read_text()
    assert "- environment: not recorded" in page and "peak RSS not recorded" in page
    assert "removed from the JSON by hand" in page  # a record from before records carried their environment
    assert "MEmCom loses about 26% of the uncompressed nDCG@10" in page  # 0.045 against the mean 0.061
    assert '"reduce embedding dim" (`low_dim`) at about 15%' in page and "16x +26.2% vs +34.4%" in page
    assert "popularity (no model, history removed): 0.0150" in page and "embedding (dim 8)" in page
    render({**record, "environment": ENV, "peak_rss_mib": 99.0}, tmp_path / "n.md", tmp_path / "n.png")
    page = (tmp_path / "n.md").read_text()
    assert "- saec: 9.9" in page and "peak RSS 99 MiB" in page and "removed from the JSON by hand" not in page


# ---- baseline, movielens_saec, trace_saec -----------------------------------------------------------------

def test_baseline_page_from_its_record_alone(tmp_path):
    from saec.bench.baseline import BaselineConfig, render

    model = {"model": "dssm", "best_epoch": 1, "epochs": [{"valid_auc": 0.74, "seconds": 2.0},
                                                          {"valid_auc": 0.73, "seconds": 4.0}],
             "test": {"auc": 0.75, "logloss": 0.58}, "valid": {"auc": 0.74, "logloss": 0.6}, "params": 1234,
             "embedding_params": 1000}
    record = {"command": ["python", "benchmarks/baseline.py"], "config": vars(BaselineConfig()) | {"models": ["dssm"]},
              "task": {"summary": "tiny", "train_rows": 600}, "load_s": 1.5, "models": [model]}
    render(record, tmp_path / "b.md")
    page = (tmp_path / "b.md").read_text()
    assert "| dssm | 2 (1) | 0.7500 | 0.5800 | 0.7400 | 6.0 | 3.0 | 200 | 1,234 (1,000) |" in page
    assert "Peak RSS not recorded." in page and "- environment: not recorded" in page
    assert "| dssm | 0.7400 (2.0 s) | 0.7300 (4.0 s) |" in page


def test_movielens_saec_analysis_against_simple_references():
    from saec.bench.movielens_saec import complete, distortion, pc1_share

    rng = np.random.default_rng(0)
    w = np.outer(rng.normal(size=50), [1.0, 2.0, -1.0])  # rank one: all variance on the first axis
    counts = rng.integers(1, 9, 50)
    assert pc1_share(w, counts) == pytest.approx(1.0)
    assert distortion(w, w.copy(), np.arange(50), counts) == pytest.approx(0.0)  # a centroid per vector
    centre = (counts[:, None] * w).sum(0) / counts.sum()
    assert distortion(w, centre[None, :], np.zeros(50), counts) == pytest.approx(1.0)  # one centroid at the mean
    record = {"config": {}, "task": {}, "results": []}
    assert complete(record, None) is record  # a record that holds both is not touched


def test_trace_cost_by_frequency_is_the_difference_of_bucket_log_losses():
    from types import SimpleNamespace

    from saec.bench.trace_saec import cost_by_frequency
    from saec.train.metrics import log_loss

    rng = np.random.default_rng(3)
    ids = rng.integers(-1, 30, 3000)
    counts = {"f": rng.integers(1, 2000, 30)}
    test = SimpleNamespace(ids={"f": ids}, labels=rng.integers(0, 2, 3000).astype(np.float32))
    full, saec = rng.random(3000).astype(np.float32), rng.random(3000).astype(np.float32)
    rows = cost_by_frequency("f", counts, test, {"full": full, "saec": saec})
    oov = ids < 0
    assert rows[0]["bucket"] == "OOV (unseen)" and rows[0]["share"] == pytest.approx(oov.mean())
    y = test.labels
    assert rows[0]["saec"] == pytest.approx(log_loss(y[oov], saec[oov]) - log_loss(y[oov], full[oov]))
    assert all(r["share"] > 0 for r in rows) and sum(r["share"] for r in rows) == pytest.approx(1.0)
