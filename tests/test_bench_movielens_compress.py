"""saec.bench.movielens_compress: the settings are `saec run`'s, one short run on MovieLens-100K, the page is
rendered from the raw record alone and says when saec.compress and the flow disagree."""

import copy
import json

import pytest

from saec.bench.movielens_compress import CompressBenchConfig, flow_mismatches, render, run
from saec.cli import build_parser


def test_settings_are_those_of_saec_run():
    args = build_parser().parse_args(["run", "--dataset", "movielens-1m"])
    cfg = CompressBenchConfig()
    assert cfg.dataset == args.dataset and cfg.model == args.model
    assert cfg.hidden == tuple(int(h) for h in args.hidden.split(","))
    for name in ("optimizer", "lr", "batch_size", "epochs", "patience", "seed", "k", "eligibility"):
        assert getattr(cfg, name) == getattr(args, name), name
    assert cfg.kmeans_seed == args.seed  # `saec run` seeds k-means with --seed


@pytest.fixture(scope="module")
def record(ml100k):
    cfg = CompressBenchConfig(dataset="movielens-100k", epochs=1)
    # through JSON, as --from-json reads it
    return json.loads(json.dumps(run(cfg, ["python", "benchmarks/movielens_compress.py"], progress=False)))


def test_short_run_compresses_the_large_table_with_every_method(record):
    assert [m["method"] for m in record["methods"]] == list(CompressBenchConfig.methods)
    full = record["full"]
    for m in record["methods"]:
        done = [t["path"] for t in m["report"]["tables"] if t["method"]]
        assert done == ["embeddings.tables.item"], m["method"]  # the only MovieLens-100K table of >= 1000 rows
        assert m["report"]["bytes_after"] < m["report"]["bytes_before"]
        assert m["state_dict_bytes"] < full["state_dict_bytes"]
        assert 0.5 < m["auc"] < 1
    assert flow_mismatches(record) == []
    assert record["flow"]["clustered"] == ["item"] and record["flow"]["same_tables"]
    assert record["reference"] is None  # the MovieLens-1M sweep is no reference for MovieLens-100K


def test_page_comes_from_the_record_alone(record, tmp_path):
    rec = copy.deepcopy(record)
    rec["environment"]["date"] = "recorded-date"
    render(rec, tmp_path / "a.md", tmp_path / "a.png")
    render(rec, tmp_path / "b.md", tmp_path / "a.png")
    page = (tmp_path / "a.md").read_text()
    assert page == (tmp_path / "b.md").read_text()
    assert "- date: recorded-date" in page and "**Identical**" in page
    for m in rec["methods"]:
        assert f"| {m['method']} | " in page and f"{m['auc']:.4f}" in page
    assert (tmp_path / "a.png").stat().st_size > 0


def test_a_flow_mismatch_is_reported(record, tmp_path):
    rec = copy.deepcopy(record)
    rec["flow"]["auc"] += 1e-6
    rec["flow"]["bytes_after"] += 1
    bad = flow_mismatches(rec)
    assert len(bad) == 2 and bad[0].startswith("test AUC") and bad[1].startswith("table bytes after")
    render(rec, tmp_path / "p.md", tmp_path / "p.png")
    page = (tmp_path / "p.md").read_text()
    assert "**They differ**" in page and "**Identical**" not in page
