"""saec.bench.sweep: a resumable sweep keeps its cells, logs its passes and re-runs chosen cells on request."""

from __future__ import annotations

import json

import pytest

from saec.bench.sweep import Sweep, parse_rerun
from saec.errors import SaecError


def test_parse_rerun():
    assert parse_rerun("tt") == ("tt", None)
    assert parse_rerun("tt:2,4") == ("tt", (2.0, 4.0))
    with pytest.raises(SaecError, match="METHOD or METHOD:RATIO"):
        parse_rerun(":2")
    with pytest.raises(SaecError, match="must be numbers"):
        parse_rerun("tt:two")


def _cells(path, command, **kw):
    return Sweep(path, {"config": {"k": 1}}, command, rows="runs", wall="wall_s", method_key="label", **kw)


def test_fresh_resumed_and_rerun_passes(tmp_path):
    path = tmp_path / "r.json"
    sweep = _cells(path, ["first"])
    for label, ratio in (("tt", 2.0), ("tt", 4.0), ("hashing", 2.0)):
        sweep.add({"label": label, "ratio": ratio})
    stored = json.loads(path.read_text())  # written after every cell
    assert [r["label"] for r in stored["runs"]] == ["tt", "tt", "hashing"] and stored["commands"] == [["first"]]
    assert stored["environment"]["saec"] and stored["peak_rss_mib"] > 0 and stored["wall_s"] >= 0

    assert _cells(path, ["fresh"]).rows == []  # without resume a pass starts over
    again = _cells(path, ["second"], resume=True)
    assert len(again.rows) == 3
    redo = _cells(path, ["third"], rerun=[parse_rerun("tt:4")])  # a rerun implies resume
    assert [(r["label"], r["ratio"]) for r in redo.rows] == [("tt", 2.0), ("hashing", 2.0)]
    assert redo.record["commands"] == [["first"], ["third"]]
    assert [(r["label"]) for r in _cells(path, ["fourth"], rerun=[("tt", None)]).rows] == ["hashing"]


def test_rerun_errors_and_records_from_before_passes_were_logged(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(SaecError, match="needs the stored record"):
        _cells(path, ["x"], rerun=[("tt", None)])
    path.write_text(json.dumps({"runs": [{"label": "tt", "ratio": 2.0}], "wall_s": 60.0}))  # no commands, no environment
    with pytest.raises(SaecError, match=r"--rerun \['qr'\]: no such cells"):
        _cells(path, ["x"], rerun=[("qr", None)])
    sweep = _cells(path, ["x"], resume=True)
    assert sweep.record["commands"] == [None, ["x"]] and sweep.record["predates_logging"]
    assert sweep.save()["wall_s"] >= 60.0  # the earlier passes' wall time carried on
