"""saec.bench.trace_stats and saec.bench.trace_retrain: records carry what produced them, pages come from them."""

from __future__ import annotations

import json

import numpy as np

from saec.bench.trace_retrain import VARIANTS, merge, render as render_retrain
from saec.bench.trace_stats import TraceStatsConfig, render as render_stats, run as run_stats, scale_child, skew


def test_trace_stats_record_and_page(tmp_path):
    record = run_stats(TraceStatsConfig(preset="tiny", scale=False), ["python", "x"], False)
    record = json.loads(json.dumps(record, sort_keys=True))  # as saec.io.write_json stores it
    assert record["environment"]["saec"] and record["peak_rss_mib"] > 0 and "scale" not in record
    counts = record["counts"]
    assert sum(counts["features"]) == record["rows"][-1]["vocab"]  # every observed feature, by its count
    render_stats(record, tmp_path / "t.md", tmp_path / "t.png")
    page = (tmp_path / "t.md").read_text()
    last = record["rows"][-1]
    assert f"| {last['hour']} | {last['samples']:,} | {last['universe']:,} | {last['vocab']:,} |" in page
    assert f"- peak RSS: {record['peak_rss_mib']:,.0f} MiB" in page and f"date: {record['environment']['date']}" in page
    assert page.index("- saec:") < page.index("- python:") < page.index("- date:")  # environment()'s order
    assert page.index("| n_fields |") < page.index("| final_features |") < page.index("| seed |")  # the config's
    assert (tmp_path / "t.png").stat().st_size > 0


def test_skew_and_the_scaling_child():
    s = skew(np.array([1] * 90 + [100] * 10))
    assert s["top"]["0.1"] == 1000 / 1090 and s["top"]["0.01"] == 100 / 1090 and s["once"] == 0.9
    child = scale_child({"preset": "tiny", "hours": 2, "tables": True})
    assert len(child["hours"]) == 2 and child["tables"]["vectors"] == child["final_features"]
    assert child["baseline_rss_mb"] <= child["rss_after_segments_mb"] <= child["peak_rss_mb"]


def _retrain_record(lr, hours, control, paper, env=True):
    """One learning rate's record: ΔAUC ``paper`` for the paper's variant, the other variants 0.001 apart."""
    full = 0.75
    settings = []
    for k, el, bonus in ((100, 100.0, 0.0), (256, 39.0, 0.0005)):
        for seed in range(2):
            variants = {name: {"auc": full + paper + bonus - 0.001 * i, "logloss": 0.4}
                        for i, name in enumerate(VARIANTS)}
            variants["labels, fresh Adagrad (paper)"]["auc"] = full + paper + bonus
            settings.append({"k": k, "eligibility": el, "seed": seed, "ratio": 30.0 - (k == 256), "clustered": 5,
                             "variants": variants})
    rec = {"trace": "TraceConfig(n_fields=4)", "at": hours, "seeds": 2, "commands": [f"python run --lrs {lr}"],
           "runs": [{"lr": lr, "hours": [{"hour": h, "full": {"auc": full, "logloss": 0.4}, "features": 9,
                                           "full_extra_epoch": {"auc": full + control, "logloss": 0.4},
                                           "settings": settings} for h in hours]}],
           "wall_s": 60.0 * lr * 1000, "peak_rss_mib": 100.0 + lr}
    if env:
        rec["environment"] = {"saec": "0.1.0", "machine": "m", "date": f"d{lr}"}
    return rec


def test_retrain_page_of_merged_runs(tmp_path):
    a, b = _retrain_record(0.001, [17, 20, 23], 0.002, -0.0007), _retrain_record(0.01, [17, 23], -0.027, -0.04)
    render_retrain(merge([a, b]), tmp_path / "r.md", ["python", "benchmarks/trace_retrain.py", "--from-json"])
    page = (tmp_path / "r.md").read_text()
    assert "- saec: 0.1.0\n- machine: m\n- date: d0.001, d0.01\n" in page  # the runs' own, not this process's
    assert "peak RSS: 100 MiB; wall time 10.0 min (the longest" in page
    assert "at hours [17, 20, 23] (lr 0.001), [17, 23] (lr 0.01) it is" in page
    assert "its MLP widths, optimizer and batch size not recorded" in page
    assert "k = 256 with eligibility 39 (>= 9,984 features:\nthe same fields, one-byte masks still, 2.56x" in page
    assert "Where it helps (lr 0.001: +0.0020 on average)" in page and "(lr 0.01: -0.0270," in page
    assert "k = 256 costs\n1.0 ratio points (29.0x vs 30.0x at\nhour 23) for +0.0005 AUC at lr 0.001." in page
    # a run that did not record its environment makes the page say so
    render_retrain(merge([a, _retrain_record(0.01, [17], -0.02, -0.04, env=False)]), tmp_path / "s.md", ["x"])
    assert "- environment: not recorded\n" in (tmp_path / "s.md").read_text()
