"""Checksummed JSON files (saec.io.write_json / read_json / write_jsonl / read_jsonl) and the pages rendered from them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from saec.bench.grid import read_record
from saec.bench.report import NO_CHECKSUM, checksums, header, measure_and_render
from saec.errors import SaecError
from saec.io import CHECKSUM, read_json, read_jsonl, write_json, write_jsonl, write_text

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench" / "records"


def test_write_then_read_gives_the_object_and_its_checksum(tmp_path):
    # integer keys sort otherwise than the strings JSON gives back: the digest is of what a read gives
    obj = {"b": [1, 2.5, None], "a": {2: "x", 10: "y"}, "t": (1, 2), 3: float("nan")}
    path = write_json(tmp_path / "r.json", obj)
    got = read_json(path)
    body = {k: v for k, v in got.items() if k != CHECKSUM}
    assert body["b"] == [1, 2.5, None] and body["t"] == [1, 2] and body["3"] != body["3"]  # NaN kept
    assert body["a"] == {"2": "x", "10": "y"}
    # the scheme: sha256 of json.dumps(sorted keys) of the rest, as the grid's records always used
    assert got[CHECKSUM] == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_changed_value_fails_naming_the_file(tmp_path):
    path = write_json(tmp_path / "r.json", {"auc": 0.75, "rows": [1, 2]})
    write_text(path, path.read_text().replace("0.75", "0.76"))
    with pytest.raises(SaecError, match=r"r\.json: checksum mismatch"):
        read_json(path)


@pytest.mark.parametrize("text, what", [("{\"auc\": 0.75}", "no 'sha256' checksum"), ("{oops", "not JSON"),
                                        ("[1, 2]", "a JSON list")])
def test_a_file_saec_did_not_write_is_refused(tmp_path, text, what):
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(SaecError, match=f"r.json: {what}"):
        read_json(path)
    with pytest.raises(SaecError, match="unreadable"):
        read_json(tmp_path / "missing.json")


def test_legacy_ok_reads_a_file_without_checksum_but_still_verifies_one_with(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"auc": 0.75}')
    assert read_json(path, legacy_ok=True) == {"auc": 0.75}
    write_json(path, {"auc": 0.75})
    write_text(path, path.read_text().replace("0.75", "0.5"))
    with pytest.raises(SaecError, match="checksum mismatch"):
        read_json(path, legacy_ok=True)


def test_json_lines_carry_a_checksum_per_line(tmp_path):
    rows = [{"segment": 0, "auc": 0.7}, {"segment": 1, "auc": 0.71}]
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    assert read_jsonl(path) == rows
    assert all(CHECKSUM in json.loads(line) for line in path.read_text().splitlines())
    write_text(path, path.read_text().replace("0.71", "0.9"))
    with pytest.raises(SaecError, match=r"log\.jsonl, line 2: checksum mismatch"):
        read_jsonl(path)


def test_the_benchmark_grid_records_still_verify():
    paths = sorted(RECORDS.rglob("seed*.json"))
    if not paths:
        pytest.skip("no bench records in this checkout")
    for p in paths:
        assert read_record(p)[CHECKSUM]


def _render(record, out):
    write_text(out, header("T", ["cmd"], {"saec": "x"}, checksums(record)) + f"auc {record['auc']}\n")


def test_measure_and_render_stores_a_checksummed_record_and_renders_from_it(tmp_path):
    out = tmp_path / "page.md"
    measure_and_render("b.py", out, False, True, lambda command, progress: {"auc": 0.75, "command": command},
                       _render, figure=False)
    stored = read_json(out.with_suffix(".json"))
    assert stored["auc"] == 0.75
    assert f"- checksum: sha256 {stored[CHECKSUM]} (verified)\nauc 0.75" in out.read_text()

    out.with_suffix(".json").write_text('{"auc": 0.5}')  # a record written before results carried a checksum
    measure_and_render("b.py", out, True, True, None, _render, figure=False)
    assert f"- checksum: {NO_CHECKSUM}\nauc 0.5" in out.read_text()

    write_json(out.with_suffix(".json"), {"auc": 0.5})
    out.with_suffix(".json").write_text(out.with_suffix(".json").read_text().replace("0.5", "0.6"))
    with pytest.raises(SaecError, match="page.json: checksum mismatch"):
        measure_and_render("b.py", out, True, True, None, _render, figure=False)
