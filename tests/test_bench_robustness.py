"""saec.bench.robustness: mutations do what they say, outcomes are sorted right, the page renders from the record."""

import random

import torch

from saec.bench.robustness import KINDS, MUTATIONS, OUTCOMES, RobustnessConfig, classify, mutate, render, run
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
    page = render(record)
    assert "| all |" in page and "Robustness" in page
