"""saec periodic: the production loop's folder, resume after SIGKILL, a CSV folder, --retrain-on auto, bad inputs,
warm start. Kept small (the tiny trace, k=4, one hidden layer of 16) so the whole file runs in well under a minute."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from saec.cli import main
from saec.data import Field, Schema
from saec.data.segments import FileSegments, Segment, SegmentSource, TraceSegments
from saec.data.synthetic import SyntheticTrace, TraceConfig
from saec.data.tabular import TableSpec
from saec.errors import SaecError
from saec.io import load_model, read_jsonl
from saec.pipeline.periodic import PeriodicConfig, PeriodicRun
from saec.train.loop import TrainConfig

SMALL = ["--k", "4", "--hidden", "16", "--quiet"]
TINY = ["--preset", "tiny", *SMALL]
DOCUMENTED = {"segment", "name", "features_before", "features", "vectors_before", "vectors_after", "bytes_before",
              "bytes_after", "ratio", "full_auc", "full_logloss", "compressed_auc", "compressed_logloss", "bayes_auc",
              "data_s", "train_s", "compress_s", "cluster_s", "assign_s", "retrain_s", "eval_s", "publish_s", "checkpoint_s",
              "peak_rss_mib"}
NAMES = SyntheticTrace(TraceConfig.preset("tiny")).names  # f00 .. f07


def log_rows(out: Path) -> list[dict]:
    return read_jsonl(out / "log.jsonl")


def untimed(rows: list[dict]) -> list[dict]:
    """Rows without what depends on the clock or the process (``*_s``, peak RSS, the choice's seconds)."""
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if not k.endswith("_s") and k != "peak_rss_mib"}
        if "retrain_choice" in r:
            r["retrain_choice"] = {k: v for k, v in r["retrain_choice"].items() if k != "seconds"}
        out.append(r)
    return out


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file under ``folder``: bytes and mtime (symlinks: their target)."""
    snap = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            snap[rel] = ("->", os.readlink(p))
        elif p.is_file():
            snap[rel] = (p.read_bytes(), p.stat().st_mtime_ns)
    return snap


def published(out: Path) -> dict[str, tuple]:
    """The serving folder and the checkpoints, with mtimes: what a failed command must not touch."""
    return {k: v for k, v in snapshot(out).items() if k.startswith(("serving", "checkpoints"))}


def newest_checkpoint(out: Path) -> Path:
    found = sorted(p for p in (out / "checkpoints").iterdir() if re.fullmatch(r"\d{6,}", p.name))
    assert found, f"no checkpoint in {out}"
    return found[-1]


def same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(a / "tensors.safetensors"), load_file(b / "tensors.safetensors")
    assert set(ta) == set(tb)
    diff = [k for k in ta if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
    assert not diff, f"tensors differ: {diff[:5]}"


def write_trace_csv(folder: Path, hours: int = 6, rows: int | None = None) -> None:
    """The tiny trace's hours as hour_00.csv ... (the first ``rows`` samples of each, default all)."""
    trace = SyntheticTrace(TraceConfig.preset("tiny"))
    folder.mkdir()
    for h in range(hours):
        seg = trace.segment(h)
        frame = pd.DataFrame({n: np.asarray(seg.raw[n]) for n in trace.names})
        frame["label"] = seg.labels.astype(np.int8)
        frame[:rows].to_csv(folder / f"hour_{h:02d}.csv", index=False)


def folder_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return ["periodic", "--folder", str(data), "--label", "label", "--fields", ",".join(NAMES), *SMALL, *extra,
            "--out", str(out)]


# -- 1. end to end ---------------------------------------------------------------------------------
TINY_RUN = ["periodic", "--preset", "tiny", "--k", "4", "--eligibility", "10", "--hidden", "16", "--keep", "2"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, float]:
    """One uninterrupted run of the tiny trace (every field clustered from the first hour), and its seconds.
    Tests that use it must leave it as it is."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    start = time.perf_counter()
    assert main([*TINY_RUN, "--quiet", "--out", str(out)]) == 0
    return out, time.perf_counter() - start


def test_tiny_run_logs_publishes_resumes_and_refuses_other_settings(tiny_run, capsys, tmp_path):
    out, _ = tiny_run
    rows = log_rows(out)
    assert len(rows) == 5  # 6 hours: train on 0..4, each tested on the next
    assert [r["segment"] for r in rows] == list(range(5))
    assert [r["name"] for r in rows] == [f"hour {h}" for h in range(5)]
    assert [r["test_name"] for r in rows] == [f"hour {h + 1}" for h in range(5)]
    for r in rows:
        assert DOCUMENTED <= set(r), DOCUMENTED - set(r)
        assert r["features"] >= r["features_before"] and r["vectors_after"] <= r["vectors_before"]
        assert r["ratio"] == pytest.approx(r["bytes_before"] / r["bytes_after"])
        assert 0 <= r["compressed_auc"] <= 1 and r["compressed_logloss"] > 0
        assert all(r[k] >= 0 for k in DOCUMENTED if k.endswith("_s")) and r["peak_rss_mib"] > 0
        assert r["compressed_tables"] > 0 and r["retrain_on"] in ("labels", "full")
    assert rows[0]["features_before"] == 0
    assert all(b["features_before"] == a["features"] for a, b in zip(rows, rows[1:]))
    assert all(r["ratio"] > 1 and r["vectors_after"] < r["vectors_before"] for r in rows)

    serving = out / "serving"
    assert (serving / "current").is_symlink()
    versions = sorted(p.name for p in serving.iterdir() if re.fullmatch(r"v\d{6}", p.name))
    assert versions == ["v000003", "v000004"]  # --keep 2: the newest two of five
    assert os.readlink(serving / "current") == "v000004" == versions[-1]
    model, vocabs, extra = load_model(serving / "current")
    info = extra["published"]
    assert json.loads((serving / "v000004" / "model.json").read_text())["extra"]["published"] == info
    assert info["segment"] == 4 and info["name"] == "hour 4" and info["test_name"] == "hour 5"
    assert info["metrics"] == {k: rows[-1][k] for k in ("compressed_auc", "compressed_logloss", "full_auc",
                                                        "full_logloss")}
    assert info["sizes"]["bytes_after"] == rows[-1]["bytes_after"] and info["retrain_on"] == rows[-1]["retrain_on"]
    assert sum(len(v) for v in vocabs.values()) == rows[-1]["features"]
    assert sum(p.numel() for p in model.parameters()) > 0
    capsys.readouterr()
    assert main(["check", str(out), str(serving / "current")]) == 0  # the run folder: versions and checkpoint
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [str(serving / v) for v in versions] + [
        str(p) for p in sorted((out / "checkpoints").iterdir())] + [str(serving / "current")]
    assert all(line.startswith("ok  ") for line in lines) and "saec-checkpoint" in lines[2]

    log_bytes = (out / "log.jsonl").read_bytes()
    before = published(out)
    capsys.readouterr()
    assert main([*TINY_RUN, "--quiet", "--out", str(out)]) == 0  # the same command: all done
    assert (out / "log.jsonl").read_bytes() == log_bytes  # no duplicate rows, same timings
    assert published(out) == before  # nothing re-published, no new checkpoint

    everything = snapshot(out)
    for option, value, want in (("--k", "5", "k: 4 here, 5 in this command"),
                                ("--lr", "0.02", "lr: 0.01 here, 0.02 in this command"),
                                ("--no-warm-start", None, "warm_start: True here, False in this command")):
        capsys.readouterr()
        assert main([*TINY_RUN, option, *[value] * (value is not None), "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "other settings" in err and want in err, err
    assert snapshot(out) == everything  # bytes and mtimes: log.jsonl, the current model, all of it

    copy = tmp_path / "copy"  # every line of the log carries its checksum; saec check verifies them
    shutil.copytree(out, copy, symlinks=True)
    (copy / "log.jsonl").write_text((copy / "log.jsonl").read_text().replace('"segment": 2,', '"segment": 7,', 1))
    capsys.readouterr()
    assert main(["check", str(copy)]) == 2
    assert "log.jsonl, line 3: checksum mismatch" in capsys.readouterr().err


# -- 2. SIGKILL at random points -------------------------------------------------------------------
def _lines(p: subprocess.Popen) -> queue.Queue:
    """The child's stdout line by line (None at its end), read by a thread so that waits can time out."""
    q: queue.Queue = queue.Queue()

    def read() -> None:
        for line in p.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    return q


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_run_bit_for_bit(tiny_run, tmp_path):
    ref, loop_s = tiny_run
    # one segment's time once a process is warm (its first segment also pays for torch's and faiss's start):
    # the median over the later segments of the parts each row timed
    parts = ("train_s", "compress_s", "retrain_s", "eval_s", "publish_s", "checkpoint_s")
    per_segment = float(np.median([sum(r[k] for k in parts) for r in log_rows(ref)[1:]]))
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "saec.cli", *TINY_RUN, "--out", str(out)]
    rng, kills, killed_at, finished = random.Random(20261201), 0, [], False
    for attempt in range(3):
        done = len(log_rows(out)) if (out / "log.jsonl").exists() else 0
        if done == 5:
            break
        # each start is killed at a random point of a random one of the segments left: after the child has
        # printed `target` rows (0: once its run folder is open and restored), within one segment's time
        target = rng.randrange(5 - done)
        with open(tmp_path / f"stderr-{attempt}", "w+") as err:
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                q, header, seen, line = _lines(p), False, 0, ""
                while line is not None and not (header and seen == target):
                    line = q.get(timeout=300)
                    header = header or (line or "").startswith("segment")
                    seen += header and (line or "").startswith("hour ")
                delay = rng.uniform(0, per_segment)
                try:
                    p.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    kills += 1
                    killed_at.append({"done": done, "after_rows": target, "delay": round(delay, 2),
                                      "logged": len(log_rows(out)) if (out / "log.jsonl").exists() else 0})
                    continue
                assert p.wait(timeout=300) == 0, (err.seek(0), err.read())[1]  # it finished first
                finished = True
                break
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if not finished:  # the last restart, in this process (saves a start of Python and torch)
        assert main([*TINY_RUN, "--quiet", "--out", str(out)]) == 0
    print(f"uninterrupted loop {loop_s:.1f} s; kills: {killed_at}")
    assert sum(k["logged"] < 5 for k in killed_at) >= 1, f"no kill landed mid-run (loop {loop_s:.1f} s): {killed_at}"
    assert newest_checkpoint(out).name == newest_checkpoint(ref).name == "000005"
    same_tensors(newest_checkpoint(ref), newest_checkpoint(out))
    assert untimed(log_rows(out)) == untimed(log_rows(ref)), killed_at
    assert os.readlink(out / "serving" / "current") == os.readlink(ref / "serving" / "current") == "v000004"
    same_tensors(out / "serving" / "v000004", ref / "serving" / "v000004")
    assert not [p for p in out.rglob("*") if p.name.endswith(".saec-tmp")]  # no half-written leftovers


# -- 3. a folder of CSV files ----------------------------------------------------------------------
def test_a_csv_folder_is_a_stream_of_files(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    write_trace_csv(data)
    assert main(folder_cmd(data, out)) == 0
    rows = log_rows(out)
    assert [r["name"] for r in rows] == [f"hour_{h:02d}.csv" for h in range(5)]
    assert [r["test_name"] for r in rows] == [f"hour_{h:02d}.csv" for h in range(1, 6)]
    assert all("bayes_auc" not in r for r in rows)  # only the trace knows the true click probability
    # every distinct value of every field seen so far has its own row (min_count 1)
    for h, r in enumerate(rows):
        frame = pd.concat([pd.read_csv(data / f"hour_{i:02d}.csv", dtype=str) for i in range(h + 1)])
        assert r["features"] == sum(frame[n].nunique() for n in NAMES)
    _, vocabs, extra = load_model(out / "serving" / "current")
    assert extra["published"]["name"] == "hour_04.csv" and sorted(vocabs) == sorted(NAMES)


# -- 4. --retrain-on auto --------------------------------------------------------------------------
class Repeated(SegmentSource):
    """The same learnable segment again and again (``flip``: odd segments have the opposite labels, so
    fitting one segment more closely hurts on the next)."""

    unit = "copies"

    def __init__(self, n: int = 3, rows: int = 1500, flip: bool = False) -> None:
        self.schema = Schema((Field("user", 4), Field("item", 4)), label="label")
        rng = np.random.default_rng(5)
        user, item = rng.integers(0, 200, rows), rng.integers(0, 200, rows)
        bias_u, bias_i = rng.normal(0, 2, 200), rng.normal(0, 2, 200)
        p = 1 / (1 + np.exp(-(bias_u[user] + bias_i[item])))
        self.raw = {"user": user.astype(str), "item": item.astype(str)}
        self.labels = (rng.random(rows) < p).astype(np.float32)
        self.n, self.flip = n, flip

    def __len__(self) -> int:
        return self.n

    def segment(self, i: int) -> Segment:
        i = self._check_index(i)
        y = 1 - self.labels if self.flip and i % 2 else self.labels
        return Segment(f"copy {i}", dict(self.raw), y)

    def describe(self) -> dict:
        return {"source": "repeated", "n": self.n, "flip": self.flip}


@pytest.mark.parametrize("flip, lr, want", [(False, 0.001, "labels"), (True, 0.1, "full")])
def test_retrain_on_auto_chooses_by_the_extra_epoch(tmp_path, flip, lr, want):
    cfg = PeriodicConfig(hyper={"k": 4, "eligibility": 10}, hidden=(16,), retrain_on="auto",
                         train=TrainConfig(lr=lr, batch_size=256, progress=False))
    out = tmp_path / "auto"
    run = PeriodicRun(Repeated(flip=flip), cfg, out)
    rows = list(run.run())
    c = run.retrain_choice
    assert c["chose"] == want, c
    assert (c["extra_epoch_gain"] > 0) == (want == "labels")
    assert abs(c["extra_epoch_gain"]) > 0.005, c  # a clear verdict, not noise
    logged = log_rows(out)
    decided = [r for r in logged if "retrain_choice" in r]
    assert len(decided) == 1 and decided[0]["segment"] == c["segment"] == 0  # every table compressed from the start
    evidence = decided[0]["retrain_choice"]
    assert evidence == json.loads(json.dumps(c))
    assert evidence["full_auc"] == decided[0]["full_auc"]
    assert evidence["extra_epoch_gain"] == pytest.approx(evidence["extra_epoch_auc"] - evidence["full_auc"])
    assert [r["retrain_on"] for r in logged] == [want] * len(rows) == [r["retrain_on"] for r in rows]
    assert PeriodicRun(Repeated(flip=flip), cfg, out).retrain_choice == evidence  # kept through a resume


# -- 5. bad inputs ---------------------------------------------------------------------------------
def test_files_with_other_columns_are_refused_before_any_work(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    write_trace_csv(data)
    frame = pd.read_csv(data / "hour_04.csv").rename(columns={"f03": "g03"})
    frame.to_csv(data / "hour_04.csv", index=False)
    assert main(folder_cmd(data, out)) == 2
    err = capsys.readouterr().err
    assert "hour_04.csv" in err and "'f03'" in err and "'g03'" in err and "hour_00.csv" in err, err
    assert not out.exists()  # nothing created


@pytest.fixture
def partial_run(tmp_path):
    """A CSV folder of 6 hours and a run over its first 4 (trained on 0..2, tested up to hour_03)."""
    data, out = tmp_path / "data", tmp_path / "run"
    write_trace_csv(data, rows=400)
    assert main(folder_cmd(data, out, "--segments", "4")) == 0
    assert [r["name"] for r in log_rows(out)] == ["hour_00.csv", "hour_01.csv", "hour_02.csv"]
    return data, out


@pytest.mark.parametrize("damage", ["header only", "label 2", "deleted"])
def test_a_bad_file_mid_stream_is_named_and_nothing_published_changes(partial_run, capsys, damage):
    data, out = partial_run
    if damage == "header only":
        bad = data / "hour_04.csv"
        bad.write_text(bad.read_text().splitlines()[0] + "\n")
        wants = ["segment 'hour_04.csv'", "has no rows"]
    elif damage == "label 2":
        bad = data / "hour_04.csv"
        frame = pd.read_csv(bad)
        frame.loc[11, "label"] = 2
        frame.to_csv(bad, index=False)
        wants = ["segment 'hour_04.csv'", "label", "row 11", "2"]
    else:  # the newest file the run has read (its last test segment) is gone
        (data / "hour_03.csv").unlink()
        wants = ["'hour_03.csv'", "not the same stream"]
    before = published(out)
    log_before = (out / "log.jsonl").read_bytes()
    capsys.readouterr()
    assert main(folder_cmd(data, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("saec: error:") and all(w in err for w in wants), err
    assert published(out) == before  # the published model and the newest checkpoint, bytes and mtimes
    assert (out / "log.jsonl").read_bytes() == log_before
    _, _, extra = load_model(out / "serving" / "current")
    assert extra["published"]["name"] == "hour_02.csv"
    assert newest_checkpoint(out).name == "000003"


def test_a_file_deleted_while_the_run_is_under_way_is_named(partial_run):
    data, out = partial_run
    spec = TableSpec(data, label="label", fields=[Field(n, 16) for n in NAMES])
    cfg = PeriodicConfig(hyper={"k": 4}, hidden=(16,), train=TrainConfig(progress=False))
    run = PeriodicRun(FileSegments(spec), cfg, out)  # lists the folder: six files
    assert run.done == 3
    before = published(out)
    (data / "hour_05.csv").unlink()
    rows = []
    with pytest.raises(SaecError, match="hour_05.csv"):
        for r in run.run():
            rows.append(r)
    assert [r["name"] for r in rows] == ["hour_03.csv"]  # segment 3 (tested on hour_04) was published
    after = published(out)
    assert after != before and os.readlink(out / "serving" / "current") == "v000003"
    assert newest_checkpoint(out).name == "000004"
    _, _, extra = load_model(out / "serving" / "current")
    assert extra["published"]["name"] == "hour_03.csv"


def test_out_folders_saec_did_not_write_or_that_overlap_the_input_are_refused(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    mine = snapshot(theirs)
    assert main(["periodic", *TINY, "--out", str(theirs)]) == 2
    err = capsys.readouterr().err
    assert str(theirs) in err and "not a saec periodic run" in err, err
    assert snapshot(theirs) == mine

    data = tmp_path / "data"
    write_trace_csv(data, hours=3)
    files = snapshot(data)
    for out in (data / "run", data, tmp_path):  # inside the input, the input itself, holding the input
        capsys.readouterr()
        assert main(folder_cmd(data, out)) == 2
        err = capsys.readouterr().err
        assert str(data) in err or str(out) in err, err
        assert snapshot(data) == files
    assert not (tmp_path / "periodic.json").exists()


# -- 6. warm start ---------------------------------------------------------------------------------
def test_warm_start_carries_codebooks_through_a_resume(tmp_path):
    source = TraceSegments(SyntheticTrace(TraceConfig.preset("tiny", samples_per_hour=600)))
    kw = dict(hyper={"k": 4, "eligibility": 10}, hidden=(16,), retrain_on="labels", train=TrainConfig(progress=False))
    cfg = PeriodicConfig(warm_start=True, warm_niter=2, **kw)
    ref = PeriodicRun(source, cfg, tmp_path / "ref")
    rows = list(ref.run(4))  # segments 0..2
    assert len(rows) == 3 and all(r["compressed_tables"] > 0 for r in rows)
    assert ref.codebooks and all(cb.shape[0] == 4 for cb in ref.codebooks.values())
    saved = load_file(newest_checkpoint(tmp_path / "ref") / "tensors.safetensors")
    assert {k for k in saved if k.startswith("codebook/")} == {f"codebook/{n}" for n in ref.codebooks}
    for name, cb in ref.codebooks.items():
        assert np.array_equal(saved[f"codebook/{name}"].numpy(), cb)

    part = PeriodicRun(source, cfg, tmp_path / "part")
    list(part.run(3))  # segments 0..1, then "the process ends"
    resumed = PeriodicRun(source, cfg, tmp_path / "part")
    assert resumed.done == 2 and resumed.resumed_from == 2
    assert set(resumed.codebooks) == set(part.codebooks)
    assert all(np.array_equal(resumed.codebooks[n], part.codebooks[n]) for n in part.codebooks)
    list(resumed.run(4))
    same_tensors(newest_checkpoint(tmp_path / "ref"), newest_checkpoint(tmp_path / "part"))
    assert untimed(log_rows(tmp_path / "part")) == untimed(rows)

    # the warm start is used: a cold run of the same stream is the same on the first segment (no codebook
    # yet) and differs after it
    cold_rows = list(PeriodicRun(source, PeriodicConfig(warm_start=False, **kw), tmp_path / "cold").run(3))
    assert untimed(cold_rows[:1]) == untimed(rows[:1])
    assert cold_rows[1]["compressed_auc"] != rows[1]["compressed_auc"]


def test_warm_start_is_the_default_where_it_applies():
    assert PeriodicConfig().warm_start and PeriodicConfig(hyper={"k": 8}).warm_start
    assert not PeriodicConfig(warm_start=False).warm_start
    for kw in ({"budget": 4096}, {"ratio": 8.0}, {"method": "int8"}):
        assert PeriodicConfig(**kw).warm_start is False  # k may change, or no codebook: re-fit every segment
    assert PeriodicConfig().identity()["warm_start"] is True


@pytest.mark.parametrize("kw, match", [({"budget": 4096}, "fixed k"), ({"ratio": 8.0}, "fixed k"),
                                       ({"method": "int8"}, "method 'saec'")])
def test_warm_start_needs_saec_with_a_fixed_k(kw, match):
    with pytest.raises(SaecError, match=match):
        PeriodicConfig(warm_start=True, **kw)
