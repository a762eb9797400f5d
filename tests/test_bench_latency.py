"""saec.bench.latency: the measuring process in both runtimes (the ONNX one without torch) and the page rendered
from a record alone. Tiny model, a few calls: behaviour, not timings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from saec.bench.latency import render
from saec.data import Field, Schema, Vocabulary
from saec.export import example_ids, to_onnx
from saec.io import save_model
from saec.models import build_model

SCHEMA = Schema([Field("user", 8), Field("genres", 4, multi_valued=True)], label="y")
SIZES = {"user": 50, "genres": 9}


def test_worker_measures_both_runtimes_and_onnx_needs_no_torch(tmp_path):
    model = build_model("dssm", SCHEMA, SIZES, hidden=(8,)).eval()
    vocabs = {n: Vocabulary.from_values(np.arange(v)) for n, v in SIZES.items()}
    folder = save_model(tmp_path / "m", model, vocabs, onnx=to_onnx(model))
    arrays = {}
    for b in (1, 4):
        batches = [example_ids(model, b, 3, seed=i) for i in range(5)]
        for j, name in enumerate(SCHEMA.names):
            arrays[f"{b}/{name}"] = torch.stack([x[j] for x in batches]).numpy()
    np.savez(tmp_path / "ids.npz", **arrays)
    runs = {}
    for runtime in ("torch", "onnxruntime", "predictor"):  # the predictor takes raw values: here equal to the ids
        out = subprocess.run([sys.executable, "-m", "saec.bench.latency", runtime, str(folder), str(tmp_path / "ids.npz"),
                              "3", "2", "1"], capture_output=True, text=True, check=True)
        runs[runtime] = json.loads(out.stdout.strip().splitlines()[-1])
        r = runs[runtime]
        assert set(r["times_us"]) == {"1", "4"} and all(len(t) == 3 and min(t) > 0 for t in r["times_us"].values())
        assert r["rss_loaded_mib"] >= r["rss_imported_mib"] > 0 and r["load_s"] > 0
    assert runs["torch"]["torch_imported"] and not runs["onnxruntime"]["torch_imported"]
    runs.pop("predictor")

    record = {"command": ["python", "benchmarks/serve_latency.py"], "environment": {"saec": "0", "date": "d"},
              "config": {"dataset": "tiny", "batches": [1, 4], "calls": 3, "warmup": 2, "threads": 1, "k": 4,
                         "eligibility": 10, "ratio": 4, "hidden": [8]},
              "load_before": 0.1, "load_after": 0.2, "wall_s": 1.0, "peak_rss_mib": 100.0,
              "models": [{"method": m, "table_bytes": 1000, "files": {"model.onnx": 2000}, "runs": list(runs.values())}
                         for m in ("full", "saec")]}
    render(record, tmp_path / "page.md", tmp_path / "page.png")
    page = (tmp_path / "page.md").read_text()
    assert "| Saec | 1.0 KiB | 2.0 KiB | torch |" in page and "batch 4: p50 / p99" in page and (tmp_path / "page.png").stat().st_size
    assert "python benchmarks/serve_latency.py" in page and "no torch imported: True" in page


def test_load_page_is_rendered_from_its_record_alone(tmp_path):
    from saec.bench.load import render as render_load

    run = {"workers": 1, "sent": 4, "wall_s": 2.0, "switch_at_s": 1.0, "start_s": [0.1, 0.5, 1.2, 1.5],
           "latency_s": [0.01, 0.02, 0.03, 0.01], "status": [200, 200, 200, 200],
           "version": ["v000000", "v000000", "v000002", "v000002"], "old": "v000000", "new": "v000002",
           "server_log": ""}
    record = {"command": ["python", "benchmarks/serve_load.py"], "environment": {"saec": "0", "date": "d"},
              "config": {"preset": "small", "segments": 4, "clients": 2, "requests": 4, "records": 16,
                         "max_seconds": 10}, "load_before": 0.1, "load_after": 0.2, "wall_s": 3.0,
              "peak_rss_mib": 50.0, "runs": [run, {**run, "workers": 2, "status": [200, 200, 503, 200]}]}
    render_load(record, tmp_path / "load.md", tmp_path / "load.png")
    page = (tmp_path / "load.md").read_text()
    assert "| 1 | 4 | 0 | 2.0 | 2 | 32 |" in page and "| 2 | 4 | 1 |" in page
    assert "1 requests failed: [(2, 503)]" in page and "first new version" in page
    assert "| 1.0 | 0.20 | 2 / 2 |" in page


def test_paper_workload_is_the_trace_s_last_hour_with_ids_drawn_by_count():
    from saec.bench.latency import LatencyConfig, paper_workload

    cfg = LatencyConfig(dataset="paper", features=30_000, methods=("full", "saec", "hashing"), hidden=(8,), k=4,
                        eligibility=10)
    vocabs, draw, models, raw = paper_workload(cfg)
    sizes = {n: len(v) for n, v in vocabs.items()}
    assert len(sizes) == 256 and abs(sum(sizes.values()) - 30_000) <= 256  # the preset's fields, its final size
    ids = draw(np.random.default_rng(0), 3, 64)
    assert all(x.shape == (3, 64) and x.dtype == np.int64 and 0 <= x.min() and x.max() < sizes[n]
               for n, x in ids.items())
    big = max(sizes, key=sizes.get)  # drawn by count: the most frequent feature (id 0) comes up most often
    many = draw(np.random.default_rng(1), 50, 256)[big]
    assert np.bincount(many.ravel(), minlength=sizes[big]).argmax() == 0
    raws = raw(ids)  # the raw values the predictor takes encode back to the drawn ids
    assert all(np.array_equal(vocabs[n].encode(raws[n].ravel()).reshape(3, 64), x) for n, x in ids.items())
    got = dict(models)
    assert list(got) == ["full", "saec", "hashing"]
    assert got["saec"].embeddings.table_bytes()[big] < got["full"].embeddings.table_bytes()[big]
    with torch.no_grad():  # the full tables hold the trace's vectors, not a fresh initialisation
        from saec.data.synthetic import SyntheticTrace, TraceConfig

        trace = SyntheticTrace(TraceConfig.preset("paper", final_features=30_000, seed=0))
        f = trace.names.index(big)
        np.testing.assert_array_equal(got["full"].embeddings.tables[big].weight[:5].numpy(),
                                      trace.field_vectors(f, 0, 5))
