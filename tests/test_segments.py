"""Segment sources: the synthetic trace, a folder of files, windows of one table, MovieLens by week."""

import numpy as np
import pandas as pd
import pytest
import torch

from saec.data import Field, Schema, movielens
from saec.data.segments import (FileSegments, MovieLensWeeks, Segment, TableWindows, TraceSegments, as_source,
                                encode)
from saec.data.synthetic import SyntheticTrace, TraceConfig, encode_segment
from saec.data.tabular import TableSpec, parse_fields
from saec.errors import SaecError
from saec.models import build_model
from saec.train.loop import TrainConfig, evaluate, make_optimizer, train_epoch
from saec.train.stream import GROWTH_SEED, StreamingRun, grow_model

CFG = TrainConfig(lr=0.05, batch_size=64, progress=False)


def clicks(rng: np.random.Generator, n: int, users: int) -> pd.DataFrame:
    user = rng.integers(0, users, n)
    return pd.DataFrame({
        "user": [f"u{u}" for u in user], "item": [f"i{i}" for i in rng.integers(0, 20, n)],
        "tags": ["|".join(f"t{t}" for t in rng.choice(6, rng.integers(1, 3), replace=False)) for _ in range(n)],
        "click": (rng.random(n) < 0.2 + 0.6 * (user % 2)).astype(int),
    })


def spec_for(path, **kw) -> TableSpec:
    return TableSpec(path, label="click", fields=parse_fields(["user", "item", "tags"], dim=4, multi={"tags": "|"}), **kw)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for day, users in (("2024-01-01", 30), ("2024-01-02", 40), ("2024-01-03", 50)):
        clicks(rng, 300, users).to_csv(tmp_path / f"clicks-{day}.csv", index=False)
    (tmp_path / ".partial.csv").write_text("junk")  # hidden files are not segments
    return tmp_path


def test_file_segments_read_each_file_in_name_order(folder):
    src = FileSegments(spec_for(folder))
    assert len(src) == 3 and src.unit == "files" and src.names == ["user", "item", "tags"]
    seg = src.segment(1)
    assert seg.name == "clicks-2024-01-02.csv" and len(seg) == 300 and seg.bayes_auc is None
    assert set(np.unique(seg.labels)) == {0.0, 1.0}
    vocabs = {}
    data = encode(seg, src.schema, vocabs, grow=True)
    assert data.ids["tags"].ndim == 2 and len(vocabs["tags"]) == 6 and (data.ids["user"] >= 0).all()
    test = encode(src.segment(2), src.schema, vocabs, grow=False)  # users 40..49 are new: OOV, no growth
    assert (test.ids["user"] == -1).any() and len(vocabs["user"]) <= 40
    with pytest.raises(SaecError, match=r"segment index \(3 files\) must be an integer in \[0, 2\]"):
        src.segment(3)


def test_streaming_run_over_a_csv_folder(folder):
    run = StreamingRun(FileSegments(spec_for(folder)), cfg=CFG, hidden=(8,))
    rows = list(run.run())
    assert [(r["name"], r["test_name"]) for r in rows] == [
        ("clicks-2024-01-01.csv", "clicks-2024-01-02.csv"), ("clicks-2024-01-02.csv", "clicks-2024-01-03.csv")]
    assert [(r["segment"], r["test_segment"]) for r in rows] == [(0, 1), (1, 2)]
    assert not {"bayes_auc", "hour"} & set(rows[0])  # no Bayes metrics (and no hours) outside the trace
    assert rows[1]["features"] > rows[0]["features"] and all(0.0 <= r["auc"] <= 1.0 for r in rows)
    assert {n: run.model.embeddings.num_embeddings(n) for n in run.source.names} == \
        {n: len(v) for n, v in run.vocabs.items()}
    with pytest.raises(SaecError, match=r"files \(one to train, the next to test\) must be an integer in \[2, 3\]"):
        next(run.run(4))


def test_parquet_folder_and_label_threshold(tmp_path):
    rng = np.random.default_rng(1)
    for k in range(2):
        frame = clicks(rng, 100, 10)
        frame["click"] = frame["click"] * 5.0  # a rating: label = value >= 4
        frame.to_parquet(tmp_path / f"part-{k}.parquet")
    src = FileSegments(spec_for(tmp_path, label_threshold=4.0))
    seg = src.segment(0)
    assert seg.name == "part-0.parquet" and set(np.unique(seg.labels)) == {0.0, 1.0}


def test_bad_folders_name_the_file_and_the_problem(folder, tmp_path):
    bad = folder / "clicks-2024-01-04.csv"
    pd.DataFrame({"user": ["u1"], "item": ["i1"], "click": [1]}).to_csv(bad, index=False)
    with pytest.raises(SaecError, match=r"segment 'clicks-2024-01-04.csv': its columns .* differ from those of the "
                                        r"first file 'clicks-2024-01-01.csv' .*\['tags'\]"):
        FileSegments(spec_for(folder))
    bad.write_text("user,item,tags,click\n")  # header only
    src = FileSegments(spec_for(folder))
    with pytest.raises(SaecError, match="segment 'clicks-2024-01-04.csv' has no rows"):
        src.segment(3)
    bad.write_text("user,item,tags,click\nu1,i1,t1,1\nu2,i2,t2,2\n")
    with pytest.raises(SaecError, match=r"segment 'clicks-2024-01-04.csv': label column 'click' must hold 0/1 values; "
                                        r"row 1 has '2'"):
        src.segment(3)
    with pytest.raises(SaecError, match="no folder of segment files at .*missing"):
        FileSegments(spec_for(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SaecError, match="empty: no segment files"):
        FileSegments(spec_for(tmp_path / "empty"))


def test_table_windows_by_time_and_by_rows(tmp_path):
    rng = np.random.default_rng(2)
    frame = clicks(rng, 240, 20)
    # 3 days with a gap (Jan 3 has no rows), shuffled: windows follow the time column, not the row order
    days = np.repeat(["2024-01-01", "2024-01-02", "2024-01-04"], 80)
    frame["ts"] = [f"{d} {h:02d}:30:00" for d, h in zip(days, rng.integers(0, 24, 240))]
    frame = frame.sample(frac=1.0, random_state=0)
    frame.to_csv(tmp_path / "log.csv", index=False)
    spec = spec_for(tmp_path / "log.csv", time="ts")
    src = TableWindows(spec, window="1d")
    assert [src.segment(i).name for i in range(len(src))] == ["log.csv 2024-01-01", "log.csv 2024-01-02",
                                                              "log.csv 2024-01-04"]
    assert [len(src.segment(i)) for i in range(3)] == [80, 80, 80]
    assert len(TableWindows(spec, window="1h")) > 24
    by_rows = TableWindows(spec, rows=100)
    assert [len(by_rows.segment(i)) for i in range(len(by_rows))] == [100, 100, 40]
    assert by_rows.segment(2).name == "log.csv rows 200..239"
    # numbers in the time column are Unix seconds
    frame["ts"] = (pd.to_datetime(frame["ts"]) - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    frame.to_csv(tmp_path / "secs.csv", index=False)
    assert len(TableWindows(spec_for(tmp_path / "secs.csv", time="ts"), window="1d")) == 3
    with pytest.raises(SaecError, match="window must be a positive number of hours, days or weeks"):
        TableWindows(spec, window="1 day")
    with pytest.raises(SaecError, match="give either window"):
        TableWindows(spec)
    with pytest.raises(SaecError, match="needs a time column"):
        TableWindows(spec_for(tmp_path / "log.csv"), window="1d")
    frame.loc[frame.index[5], "click"] = 3
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SaecError, match=r"bad.csv: label column 'click' must hold 0/1 values; row 5 has '3'"):
        TableWindows(spec_for(tmp_path / "bad.csv", time="ts"), window="1d")


def test_movielens_by_week():
    movielens.fetch("movielens-100k", quiet=True)
    src = MovieLensWeeks("movielens-100k")
    ratings = movielens.load_ratings("movielens-100k")
    sizes = [len(src.segment(i)) for i in range(len(src))]
    assert len(src) > 20 and sum(sizes) == len(ratings) and min(sizes) > 0 and src.unit == "weeks"
    assert src.segment(0).name.startswith("week 0 (") and src.names == movielens.movielens_schema().names
    clicks_ = sum(float(src.segment(i).labels.sum()) for i in range(len(src)))
    assert clicks_ == float((ratings["rating"] >= 4).sum())
    vocabs = {}
    data = encode(src.segment(0), src.schema, vocabs, grow=True)
    assert data.ids["genres"].ndim == 2 and len(vocabs["gender"]) == 2


def _old_streaming(trace: SyntheticTrace, cfg: TrainConfig, hours: int):
    """The streaming loop as it read the trace before segment sources (encode_segment on trace hours)."""
    vocabs, model, opt, rows = {}, None, None, []
    gen = torch.Generator().manual_seed(cfg.seed + GROWTH_SEED)  # the run's own stream of new rows
    for h in range(hours - 1):
        train = encode_segment(trace.segment(h), vocabs, grow=True)
        sizes = {n: len(vocabs[n]) for n in trace.names}
        if model is None:
            model = build_model("dssm", trace.schema, sizes, hidden=(16,), seed=cfg.seed)
            opt = make_optimizer(model, cfg)
        else:
            grow_model(model, opt, sizes, gen)
        train_epoch(model, train, opt, cfg.batch_size, seed=cfg.seed + h, progress=False)
        nxt = trace.segment(h + 1)
        m = evaluate(model, encode_segment(nxt, vocabs, grow=False))
        rows.append({"hour": h, "test_hour": h + 1, "features": sum(sizes.values()), "auc": m["auc"],
                     "logloss": m["logloss"], "bayes_auc": nxt.bayes_auc, "bayes_logloss": nxt.bayes_logloss})
    return rows, model


def test_trace_adapter_gives_the_old_rows_bit_for_bit():
    trace = SyntheticTrace(TraceConfig.preset("tiny", samples_per_hour=2000))
    src = TraceSegments(trace)
    assert len(src) == trace.config.hours and src.segment(2).name == "hour 2"
    assert all(np.array_equal(src.segment(2).raw[n], trace.segment(2).raw[n]) for n in trace.names)
    state = torch.get_rng_state()
    old, old_model = _old_streaming(trace, CFG, 4)
    run = StreamingRun(trace, cfg=CFG, hidden=(16,))
    new = list(run.run(4))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is neither used nor changed
    assert [{k: r[k] for k in old[0]} for r in new] == old  # exact equality of every number
    assert [r["name"] for r in new] == ["hour 0", "hour 1", "hour 2"] and new[0]["test_name"] == "hour 1"
    for a, b in zip(old_model.state_dict().values(), run.model.state_dict().values()):
        assert torch.equal(a, b)
    assert as_source(src) is src
    with pytest.raises(SaecError, match="expected a SegmentSource or a SyntheticTrace, got str"):
        StreamingRun("trace.csv")


def test_encode_refuses_unknown_fields_without_growth():
    schema = spec_for("x.csv").schema
    seg = Segment("s", {"user": ["a"], "item": ["b"], "tags": ["c|d"]}, np.array([1.0], dtype=np.float32))
    with pytest.raises(SaecError, match="no vocabulary for fields"):
        encode(seg, schema, {}, grow=False)
    vocabs = {}
    encode(seg, schema, vocabs, grow=True, min_count=2)  # the run's min_count, or a field's own if larger
    assert vocabs["user"].min_count == 2 and len(vocabs["user"]) == 0
    schema2 = Schema((Field("user", 4, min_count=3),), label="click")
    v2 = {}
    encode(seg, schema2, v2, grow=True, min_count=2)
    assert v2["user"].min_count == 3
