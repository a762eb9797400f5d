"""saec.bench.compress_scale: the phases come from the library's own timings, and the page from the record alone."""

from __future__ import annotations

import numpy as np
import pytest

from saec.bench.compress_scale import cached_share, compress_child, evict, manifest_split, render
from saec.cluster.saec import ASSIGN_PHASES, CLUSTER_PHASES


def _dump(folder, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for name, (n, dim) in {"big": (3000, 9), "mid": (800, 17), "small": (40, 9)}.items():
        np.save(folder / f"{name}.npy", rng.normal(size=(n, dim)).astype(np.float32))
        np.save(folder / f"{name}.counts.npy", rng.zipf(1.5, n).astype(np.int64))
    return {"fields": [{"name": "big", "features": 3000, "dim": 9}, {"name": "mid", "features": 800, "dim": 17},
                       {"name": "small", "features": 40, "dim": 9}],
            "vectors": 3840, "table_bytes": 4 * (3000 * 9 + 800 * 17 + 40 * 9), "counts_bytes": 8 * 3840,
            "preset": "paper", "generate_s": 0.5, "sync_s": 0.0, "reused": True}


def test_a_compression_run_splits_into_the_phases_the_library_records(tmp_path):
    dump = tmp_path / "dump"
    _dump(dump)
    times = compress_child({"tables": str(dump), "out": str(tmp_path / "out"), "k": 4, "top_n": 50})
    assert set(times) == {"import_s", "load_s", "compress_s", "save_s", "modules"}
    assert min(times[k] for k in ("import_s", "load_s", "compress_s", "save_s")) >= 0
    assert {"numpy", "faiss"} <= set(times["modules"])
    split = manifest_split(tmp_path / "out")
    assert split["clustered_fields"] == 2 and split["fields"] == 3 and split["trained_on"] == 100  # 40 < 100 x 4
    assert set(split["phases"]) == set(CLUSTER_PHASES + ASSIGN_PHASES)
    assert sum(split["phases"][p] for p in CLUSTER_PHASES) == pytest.approx(split["cluster_s"])
    assert sum(split["phases"][p] for p in ASSIGN_PHASES) == pytest.approx(split["assign_s"])
    assert split["cluster_s"] + split["assign_s"] <= times["compress_s"]
    assert [s[1] for s in split["slowest"]][0] == "big" and split["saec"]["k"] == 4
    assert cached_share(dump) == 1.0  # just written
    evict(dump)
    assert 0.0 <= cached_share(dump) <= 1.0


def _run(split, size, top_n, dump, how="driver", cold=False, wall=2.0):
    return {**split, "size": size, "vectors": dump["vectors"], "table_bytes": dump["table_bytes"],
            "counts_bytes": dump["counts_bytes"], "k": 4, "top_n": top_n, "cold": cold, "how": how, "cached_before": 1.0,
            "wall_s": wall, "walls": [wall, wall * 1.1], "cpu_s": 1.5 * wall, "majflt": 3,
            "maxrss_bytes": int(1.2 * dump["table_bytes"]),
            "proc_peak": {"VmRSS": 3 << 20, "RssAnon": 2 << 20, "RssFile": 1 << 20}, "poll_interval_s": 0.05,
            "others_cpu_s": 0.1, "import_s": 0.5, "load_s": 0.1, "compress_s": split["cluster_s"] + split["assign_s"],
            "save_s": 0.1, "modules": ["numpy", "faiss"], "tries": [{"wall_s": wall, "cpu_s": 1.5 * wall, "others_cpu_s": 0.1, "cached_before": 1.0},
                                     {"wall_s": wall * 1.1, "cpu_s": 1.6 * wall, "others_cpu_s": None,
                                      "cached_before": 0.5}]}


def test_the_page_comes_from_the_record_alone(tmp_path):
    dump = _dump(tmp_path / "dump")
    compress_child({"tables": str(tmp_path / "dump"), "out": str(tmp_path / "out"), "k": 4, "top_n": 50})
    split = manifest_split(tmp_path / "out")
    p = {"top_n_s": 0.1, "gather_s": 0.05, "kmeans_s": 0.3, "search_s": 0.4, "read_s": 0.15}
    split.update(phases=p, cluster_s=0.45, assign_s=0.55)  # round seconds, so that the page can be checked
    small, large = {**dump, "vectors": 1000, "table_bytes": 40_000}, dump
    runs = [_run(split, 1000, 50, small, wall=1.0), _run(split, 1000, 400, small, wall=1.5),
            _run(split, 3840, 50, large, wall=2.0), _run(split, 3840, 400, large, wall=3.0),
            _run(split, 3840, 50, large, how="cli", wall=1.9), _run(split, 3840, 50, large, cold=True, wall=2.5)]
    record = {"command": ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/compress_scale.py"],
              "config": {"sizes": [1000, 3840], "k": 4, "top_ns": [50, 400], "repeats": 2, "cli": True, "cold": True,
                         "cache": None, "target_s": 60.0, "target_mem": 1.5, "seed": 0},
              "cpu_count": 7, "assign_chunk": 1 << 20, "dumps": {"1000": small, "3840": large}, "runs": runs,
              "extra": {"base_rss_bytes": 1 << 20, "base_anon_bytes": 1 << 19, "base_wall_s": 0.4, "base_modules": ["numpy", "faiss"],
                        "fig4c_run": {"vectors": 50_000, "k": 500, "dim": 9, "niter": 25, "init": "kmeans++"},
                        "fig4c_cpu_s": 0.4, "fig4c_s": 0.2},
              "wall_s": 120.0, "peak_rss_mib": 99.0}
    render(record, tmp_path / "c.md", tmp_path / "c.png")
    page = (tmp_path / "c.md").read_text()
    assert page.startswith("# Saec compression at scale: 1e3 to 3.84e3 vectors on 7 cores")
    assert "- environment: not recorded\n- peak RSS (the measuring parent): 99 MiB\n- wall time: 2.0 min\n" in page
    # start-up = wall - import - load - compress - save; then the library's phases
    assert "| 3.84e3 | 50 | 0.30 | 0.50 | 0.10 | 0.10 | 0.30 | 0.05 | 0.40 | 0.15 | 0.10 | 2.00 |" in page
    assert "The largest phase is `search` (0.4 s)" in page
    assert "`import` = `saec` with numpy, faiss;" in page and "0.4 s and 1 MiB (interpreter, numpy, faiss)" in page
    assert "polled from /proc every 50 ms" in page and "of the 7 cores busy" in page
    assert "79% of the vectors of length 9 and 21% of length 17" in page  # 3,040 of the 3,840 vectors have dim 9
    assert "2.0 s wall** (target 60 s: met)" in page and "Both met, with room" in page
    assert (tmp_path / "c.png").stat().st_size > 0
