"""saec serve: raw records -> probabilities equal to the model's own, every bad request a 4xx naming the record
and field, the real service in a subprocess on a loopback port, and hot reload while the loop publishes under
concurrent requests. Kept small: the tiny trace, k=4, one hidden layer of 16."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from saec.cli import main
from saec.data import encode_frame
from saec.data.synthetic import SyntheticTrace, TraceConfig
from saec.io import load_model
from saec.predict import Predictor, RequestError, RequestTooLarge, resolve

LOOP = ["periodic", "--preset", "tiny", "--k", "4", "--eligibility", "10", "--hidden", "16", "--keep", "5", "--quiet"]
TRACE = SyntheticTrace(TraceConfig.preset("tiny"))


@pytest.fixture(scope="module")
def run2(tmp_path_factory) -> Path:
    """A saec periodic folder after 3 segments (versions v000000, v000001)."""
    out = tmp_path_factory.mktemp("serve") / "run"
    assert main([*LOOP, "--segments", "3", "--out", str(out)]) == 0
    return out


def records(hour: int, n: int) -> list[dict]:
    seg = TRACE.segment(hour)
    return [{name: np.asarray(seg.raw[name])[i].item() for name in TRACE.names} for i in range(n)]


def reference(folder: Path, recs: list[dict]) -> np.ndarray:
    """The model's probabilities on ``recs`` through training's own encoding (encode_frame)."""
    model, vocabs, _ = load_model(folder)
    frame = pd.DataFrame(recs)
    frame["label"] = 0
    data = encode_frame(frame, model.embeddings.schema, vocabs)
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model({n: torch.from_numpy(a) for n, a in data.ids.items()})).double().numpy()


# -- the predictor ---------------------------------------------------------------------------------
def test_predictions_equal_the_models_own_and_unknown_values_take_the_oov_path(run2):
    source = resolve(run2)
    assert source.version == "v000001" and source.watch == run2 / "serving" / "current"
    assert resolve(run2 / "serving").folder == source.folder and resolve(source.folder).watch is None
    p = Predictor.load(run2)
    recs = records(3, 64)  # an hour the model never saw: some values are unknown
    got = p.predict(recs)
    np.testing.assert_allclose(got, reference(source.folder, recs), rtol=0, atol=1e-12)
    unknown = p.unknown(p.encode(recs))
    assert any(unknown) and all(set(u) <= set(TRACE.names) for u in unknown)
    # an unseen value, null, the value the vocabulary has no id for and one beyond int64 all give the OOV vector
    first = TRACE.names[0]
    base = recs[0]
    variants = [{**base, first: v} for v in (None, 10**12, -5, 2**70)]
    probs = p.predict(variants)
    assert probs[0] == probs[1] == probs[2] == probs[3]
    assert p.unknown(p.encode(variants)) == [[first] + [n for n in unknown[0] if n != first]] * 4


def test_sorted_vocabularies_serve_the_same_and_damaged_ones_are_refused_before_serving(run2, tmp_path, monkeypatch):
    import saec.data.vocab as vocab_module
    from safetensors.torch import load_file, save_file

    from saec.artifact import reseal
    from saec.io import save_model

    monkeypatch.setattr(vocab_module, "SORTED_LOOKUP", 5)  # every field's vocabulary counts as large
    model, vocabs, extra = load_model(resolve(run2).folder)
    folder = save_model(tmp_path / "sorted", model, vocabs, extra)
    tensors = load_file(folder / "tensors.safetensors")
    large = [n for n in TRACE.names if len(vocabs[n]) >= 5]
    assert len(large) > len(TRACE.names) // 2 and {f"vocab_sorted/{n}" for n in large} <= set(tensors)
    p = Predictor.load(folder)
    assert all(p.vocabs[n]._sorted is not None for n in large)  # looked up in the arrays, not hashed
    recs = records(3, 64) + [{**records(3, 1)[0], TRACE.names[0]: v} for v in (None, 10**12, -5)]
    np.testing.assert_allclose(p.predict(recs), reference(resolve(run2).folder, recs), rtol=0, atol=1e-12)
    name = large[1]
    tensors[f"vocab_order/{name}"] = tensors[f"vocab_order/{name}"].flip(0).contiguous()
    save_file(tensors, folder / "tensors.safetensors")
    reseal(folder)  # checksums agree: only the consistency check can tell
    with pytest.raises(ValueError, match=f"field '{name}': corrupted vocabulary: its sorted values do not match"):
        Predictor.load(folder)


def test_every_bad_request_names_the_record_field_and_problem(run2):
    p = Predictor.load(run2, max_records=8)
    good = records(1, 2)
    f = TRACE.names[2]
    cases = [
        ({"a": 1}, "'records' must be a list"),
        ([], "'records' is empty"),
        ([good[0], 7], "record 1: must be an object"),
        ([good[0], {k: v for k, v in good[1].items() if k != f}], f"record 1: field {f!r} is missing"),
        ([{**good[0], "colour": 1}], "record 0: unknown field 'colour'"),
        ([good[0], {**good[1], f: "17"}], f"record 1: field {f!r}: '17' is not an integer"),
        ([{**good[0], f: 1.5}], f"record 0: field {f!r}: 1.5 is not an integer"),
        ([{**good[0], f: True}], f"record 0: field {f!r}: bool True is not a feature value"),
        ([{**good[0], f: [1, 2]}], f"record 0: field {f!r}: list [1, 2] is not a feature value"),
    ]
    for body, message in cases:
        with pytest.raises(RequestError) as e:
            p.predict(body)
        assert message in str(e.value) and e.value.status == 422, (body, str(e.value))
    with pytest.raises(RequestTooLarge, match="9 records in one request; at most 8") as e:
        p.predict(records(1, 9))
    assert e.value.status == 413
    assert p.predict([{**good[0], f: 3.0}]).shape == (1,)  # an integral float is the integer


def test_multi_valued_fields_take_lists_or_their_separated_string(tmp_path):
    from saec.data import Field, Schema
    from saec.data.dataset import fit_vocabs
    from saec.models import build_model

    frame = pd.DataFrame({"user": [1, 2, 3, 1], "genres": ["a b", "b", "c a", ""], "label": [1, 0, 1, 0]})
    schema = Schema([Field("user", 4), Field("genres", 4, multi_valued=True)], label="label")
    vocabs = fit_vocabs(frame, schema)
    model = build_model("dssm", schema, {n: len(v) for n, v in vocabs.items()}, hidden=(8,), init_std=0.5)
    p = Predictor(model, vocabs)
    recs = [{"user": 1, "genres": ["a", "b"]}, {"user": 3, "genres": "c a"}, {"user": 9, "genres": []},
            {"user": 2, "genres": None}, {"user": 2, "genres": "zzz"}, {"user": 3, "genres": [None, "c", "", "a"]}]
    data = encode_frame(pd.DataFrame({"user": [1, 3, 9, 2, 2, 3], "genres": ["a b", "c a", "", "", "zzz", "c a"],
                                      "label": 0}), schema, vocabs)
    with torch.no_grad():
        want = torch.sigmoid(model({n: torch.from_numpy(a) for n, a in data.ids.items()})).double().numpy()
    np.testing.assert_allclose(p.predict(recs), want, rtol=0, atol=1e-12)
    assert p.unknown(p.encode(recs)) == [[], [], ["user", "genres"], ["genres"], ["genres"], []]
    with pytest.raises(RequestError, match="record 0: field 'genres' is multi-valued; expected a list"):
        p.predict([{"user": 1, "genres": 5}])
    with pytest.raises(RequestError, match="record 0: field 'genres': 5 is a number; this field's values are str"):
        p.predict([{"user": 1, "genres": [5]}])


def test_resolve_refuses_what_it_cannot_serve(tmp_path):
    from saec.errors import SaecError, SaecFileNotFoundError

    with pytest.raises(SaecFileNotFoundError, match="no such model folder"):
        resolve(tmp_path / "nothing")
    (tmp_path / "serving").mkdir()
    with pytest.raises(SaecFileNotFoundError, match="nothing is published yet"):
        resolve(tmp_path)
    (tmp_path / "plain").mkdir()
    with pytest.raises(SaecError, match="not a saved model folder"):
        resolve(tmp_path / "plain")


# -- the real service -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``saec serve`` in a subprocess on a free loopback port; stopped (and its output kept) on exit."""

    def __init__(self, path: Path, *extra: str, timeout: float = 60) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "saec.cli", "serve", str(path), "--port", str(self.port),
                                      *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"saec serve exited with {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.close()
        raise AssertionError("saec serve did not answer /health in time")

    def alive(self) -> bool:
        return self.proc.poll() is None and self.client.get("/health").status_code == 200

    def close(self) -> str:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.stdout.read()

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def test_service_endpoints_and_bad_requests_over_http(run2):
    recs = records(2, 32)
    with Service(run2, "--max-records", "40", "--max-body", "20000") as s:
        r = s.client.post("/predict", json={"records": recs})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == "v000001" and len(body["unknown"]) == 32
        np.testing.assert_allclose(body["probabilities"], Predictor.load(run2).predict(recs), rtol=0, atol=1e-12)
        info = s.client.get("/model").json()
        assert info["version"] == "v000001" and set(info["fields"]) == set(TRACE.names)
        assert {t["method"] for t in info["fields"].values()} <= {"saec", "full"}
        assert info["published"]["segment"] == 1 and len(info["manifest_sha256"]) == 64
        f = TRACE.names[1]
        bad = [
            (b"not json", 422, "the body is not JSON"),
            (b'[1, 2]', 422, 'expected a JSON object {"records"'),
            (b'{"records": [], "x": 1}', 422, "unknown key 'x'"),
            (b'{"records": []}', 422, "'records' is empty"),
            (b'{"records": [{"%s": 1}]}' % f.encode(), 422, "record 0: field"),
            (('{"records": [%s]}' % ",".join(["{}"] * 41)).encode(), 413, "41 records in one request; at most 40"),
            (b"{" + b" " * 30000 + b"}", 413, "at most 20000"),
            (bytes(range(256)) * 10, 422, "the body is not JSON"),
        ]
        for raw, status, message in bad:
            r = s.client.post("/predict", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == status and message in r.json()["error"], (raw[:40], r.status_code, r.text)
        assert s.alive()


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_hot_reload_while_the_loop_publishes_drops_no_request(run2, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run2, out, symlinks=True)
    recs = records(4, 16)
    stop = threading.Event()
    seen: list[list[tuple[str, int]]] = [[] for _ in range(3)]

    def client(i: int) -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", json={"records": recs})
                seen[i].append((r.json().get("version") if r.status_code == 200 else r.text, r.status_code))

    with Service(out, "--poll", "0.05") as s:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        try:  # the loop goes on in this process, publishing v000002 .. v000004 beside the running service
            assert main([*LOOP, "--segments", "6", "--out", str(out)]) == 0
            wait_for(lambda: s.client.get("/health").json()["version"] == "v000004")
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert all(code == 200 for rows in seen for _, code in rows), [r for rows in seen for r in rows if r[1] != 200]
        for rows in seen:  # each client sees versions only move forward, ending on the newest
            versions = [v for v, _ in rows]
            assert versions == sorted(versions) and versions[-1] == "v000004" and versions[0] == "v000001"
        final = s.client.post("/predict", json={"records": recs}).json()
        np.testing.assert_allclose(final["probabilities"], reference(out / "serving" / "v000004", recs),
                                   rtol=0, atol=1e-12)


def test_a_damaged_version_is_not_switched_to_and_the_old_one_keeps_serving(run2, tmp_path):
    serving = tmp_path / "serving"
    shutil.copytree(run2 / "serving", serving, symlinks=True)
    bad = serving / "v000009"
    shutil.copytree(serving / "v000000", bad)
    tensors = bad / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[len(data) // 2] ^= 0x01
    tensors.write_bytes(bytes(data))
    recs = records(2, 4)

    def point(target: str) -> None:
        tmp = serving / ".current.tmp"
        os.symlink(target, tmp)
        os.replace(tmp, serving / "current")

    with Service(serving, "--poll", "0.05") as s:
        point("v000009")
        time.sleep(1.0)
        r = s.client.post("/predict", json={"records": recs})
        assert r.status_code == 200 and r.json()["version"] == "v000001"
        point("v000000")
        wait_for(lambda: s.client.get("/health").json()["version"] == "v000000")
        log = s.close()
    assert f"not switching to {bad}" in log and "tensors.safetensors" in log, log


def test_two_workers_answer_the_same(run2):
    recs = records(2, 8)
    want = Predictor.load(run2).predict(recs)
    with Service(run2, "--workers", "2", timeout=120) as s:
        for _ in range(6):
            r = s.client.post("/predict", json={"records": recs})
            assert r.status_code == 200
            np.testing.assert_allclose(r.json()["probabilities"], want, rtol=0, atol=1e-12)


def test_serve_refuses_bad_options_and_paths_before_starting(run2, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "none")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a saved model folder" in capsys.readouterr().err
    for option, value in (("--workers", "0"), ("--port", "-1"), ("--max-records", "0"), ("--poll", "0")):
        assert main(["serve", str(run2), option, value]) == 2
        assert f"{option} is {value}" in capsys.readouterr().err
