"""saec.bench.lookup_cost: the variants, their bytes, the id batches, and a page from a (tiny) record alone."""

from __future__ import annotations

import json
import statistics

import numpy as np
import torch

from saec.bench.lookup_cost import (DENSE, REFERENCE, LookupCostConfig, build_variants, fmt_rate, make_ids,
                                    module_bytes, render, run)
from saec.data.synthetic import zipf_sample


def test_ids_and_variants():
    ids = make_ids("zipf", 1000, 64, 3, 5, 1.1)
    ref = zipf_sample(np.random.default_rng(5).random((3, 64)), 1000, 1.1)  # the batches as drawn by hand
    assert ids.shape == (3, 64) and ids.dtype == torch.int64 and np.array_equal(ids.numpy(), ref)
    v = build_variants(500, 4, (10, 300), True, seed=0)
    assert list(v) == [DENSE, REFERENCE, "Clustered k=10 mean", "Clustered k=10 sum", "Clustered k=300 mean",
                       "Clustered k=300 sum"]
    assert torch.equal(v[DENSE].weight, v[REFERENCE].weight) and v[REFERENCE].sparse and not v[DENSE].sparse
    assert module_bytes(v[REFERENCE]) == (500 * 4 * 4, 500 * 4 * 4)
    assert module_bytes(v["Clustered k=300 sum"]) == (300 * 4 * 4 + 500 * 2, 300 * 4 * 4)  # uint16 mask beyond 256


def test_the_page_comes_from_the_record_alone(tmp_path):
    cfg = LookupCostConfig(sizes=(500,), dims=(4,), ks=(10,), dists=("zipf",), batch=32, batches=2, rounds=2,
                           dense_rounds=1, min_time=0.0, max_iters=2, profile_rows=500, profile_steps=1, alt_rounds=1,
                           warmup_rows=100, warmup_time=0.0)
    record = json.loads(json.dumps(run(cfg, ["python", "benchmarks/lookup_cost.py"], progress=False)))
    rates = record["cells"][0]["rates"]
    assert set(rates) == {DENSE, REFERENCE, "Clustered k=10 mean", "Clustered k=10 sum"}
    assert len(rates[REFERENCE]["forward"]) == 2 and len(rates[DENSE]["fwd+bwd"]) == 1  # dense: dense_rounds
    render(record, tmp_path / "l.md")
    page = (tmp_path / "l.md").read_text()
    assert f"- date: {record['environment']['date']}" in page and f"peak RSS: {record['peak_rss_mib']:,.0f} MiB" in page
    assert "k=10 gives a uint8 mask" in page and "2 pre-drawn batches" in page and "a 32-id batch" in page
    assert f"| 500 | 4 | zipf | {fmt_rate(statistics.median(rates[REFERENCE]['forward']))} |" in page
