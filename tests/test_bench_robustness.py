"""saec.bench.robustness: mutations do what they say, outcomes are sorted right, the page renders from the record."""

import random

import torch

from saec.bench.robustness import (INPUT_MUTATIONS, INPUT_OUTCOMES, KINDS, MUTATIONS, OUTCOMES, RobustnessConfig,
                                   classify, classify_input, mutate, mutate_input, render, run)
from saec.errors import SaecError


def test_mutations_change_the_artifact_as_described(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name, data in (("x.bin", b"\x00" * 64), ("y.bin", b"\x01" * 32)):
        (tmp_path / "a" / name).write_bytes(data)
        (tmp_path / "b" / name).write_bytes(data[::-1] + b"!")
    rng = random.Random(0)
    what = mutate(tmp_path / "a", tmp_path / "b", "bitflip", rng)
    flipped = [p for p in (tmp_path / "a").iterdir() if p.read_bytes().count(0) + p.read_bytes().count(1) != len(p.read_bytes())]
    assert "bit" in what and len(flipped) == 1
    assert "deleted" in mutate(tmp_path / "a", tmp_path / "b", "delete", rng)
    assert len(list((tmp_path / "a").iterdir())) == 1


def test_outcomes_are_sorted_by_what_loading_did(tmp_path):
    ref = torch.ones(3)
    path = tmp_path / "thing.pt"

    def refuse(p):
        raise SaecError(f"{p} is damaged")

    def vague(p):
        raise SaecError("something is damaged")

    def crash(p):
        raise KeyError(3)

    assert classify(path, refuse, ref)[0] == "clear"
    assert classify(path, vague, ref)[0] == "unclear"
    assert classify(path, crash, ref)[0] == "unclear"
    assert classify(path, lambda p: torch.ones(3), ref)[0] == "same"
    assert classify(path, lambda p: torch.zeros(3), ref)[0] == "silent_wrong"


def test_a_small_run_counts_every_case_and_renders():
    record = run(RobustnessConfig(cases=2, seed=1), ["python", "benchmarks/robustness.py"], progress=False)
    kinds = {k.name for k in KINDS}
    assert {r["kind"] for r in record["results"]} == kinds
    for r in record["results"]:
        assert r["mutation"] in MUTATIONS and sum(r[o] for o in OUTCOMES) == r["cases"] == 2
    assert [r["mutation"] for r in record["inputs"]] == list(INPUT_MUTATIONS)
    for r in record["inputs"]:
        assert sum(r[o] for o in INPUT_OUTCOMES) == r["cases"] == 2
    page = render(record)
    assert "| all |" in page and "Robustness" in page


def test_the_input_oracle_and_its_verdicts(tmp_path):
    rng = random.Random(0)
    from saec.bench.robustness import _base_input, _toml

    doc, rows = _base_input(tmp_path, rng)
    (tmp_path / "data.toml").write_text(_toml(doc))
    (tmp_path / "clicks.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    assert classify_input(tmp_path, True)[0] == "accepted"  # the undamaged input loads
    d, r, valid, what, _ = mutate_input(doc, rows, "toml unknown key", rng)
    assert valid is False and "colour" in what
    (tmp_path / "data.toml").write_text(_toml(d))
    outcome, message = classify_input(tmp_path, valid)
    assert outcome == "clear" and "colour" in message
