"""Building, importing, loading and training change no process-wide state of the caller's (torch's global
random generator, numpy's, torch's sparse tensor checks), and the command line turns only saec's own errors
into one-line messages."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from saec import cli
from saec.data.dataset import CTRData
from saec.data.schema import Field, Schema
from saec.data.vocab import Vocabulary
from saec.models import build_compressed_model, build_model
from saec.train.loop import TrainConfig, make_optimizer, train_epoch

SCHEMA = Schema((Field("user", 8), Field("item", 4), Field("tags", 4, multi_valued=True, sep="|")), label="y")
ROWS = {"user": 1500, "item": 40, "tags": 9}


def _vocabs() -> dict[str, Vocabulary]:
    rng = np.random.default_rng(0)
    return {n: Vocabulary.from_values(rng.integers(0, v - 1, 20 * v)) for n, v in ROWS.items()}


def _data(num_embeddings: dict[str, int], n: int = 700) -> CTRData:
    rng = np.random.default_rng(1)
    ids = {n_: rng.integers(0, v, (n, 1 if n_ != "tags" else 3)).squeeze() for n_, v in num_embeddings.items()}
    return CTRData(ids, rng.integers(0, 2, n).astype(np.float32))


@pytest.fixture(params=[False, True], ids=["checks-off", "checks-on"])
def process_state(request):
    """Put the process in a known state (either setting of the sparse checks), hand a snapshot of it to
    the test, and restore torch's defaults afterwards."""
    before = torch.sparse.check_sparse_tensor_invariants.is_enabled()
    (torch.sparse.check_sparse_tensor_invariants.enable if request.param
     else torch.sparse.check_sparse_tensor_invariants.disable)()
    torch.manual_seed(1234)
    np.random.seed(1234)

    def snapshot():
        return (torch.get_rng_state(), np.random.get_state()[1].copy(),
                torch.sparse.check_sparse_tensor_invariants.is_enabled())

    yield snapshot
    (torch.sparse.check_sparse_tensor_invariants.enable if before
     else torch.sparse.check_sparse_tensor_invariants.disable)()


def _assert_unchanged(before, after):
    assert torch.equal(before[0], after[0]), "torch's global random state changed"
    assert (before[1] == after[1]).all(), "numpy's global random state changed"
    assert before[2] == after[2], "torch's sparse tensor invariant checks were switched"


@pytest.mark.parametrize("name", ["dssm", "deepfm"])
def test_building_a_model_leaves_the_global_state_alone(process_state, name):
    before = process_state()
    a = build_model(name, SCHEMA, ROWS, hidden=(16,), seed=3)
    _assert_unchanged(before, process_state())
    b = build_model(name, SCHEMA, ROWS, hidden=(16,), seed=3)
    # still seeded: the same seed gives the same model whatever the caller drew in between
    torch.rand(10)
    c = build_model(name, SCHEMA, ROWS, hidden=(16,), seed=3)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) and torch.equal(a.state_dict()[k], c.state_dict()[k])
               for k in a.state_dict())


def test_building_a_compressed_model_leaves_the_global_state_alone(process_state):
    vocabs = _vocabs()
    before = process_state()
    build_compressed_model("dssm", SCHEMA, vocabs, "hashing", 4.0, min_rows=100, hidden=(16,))
    _assert_unchanged(before, process_state())


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd"])
def test_one_training_epoch_leaves_the_global_state_alone(process_state, optimizer):
    model = build_model("dssm", SCHEMA, ROWS, hidden=(16,))
    opt = make_optimizer(model, TrainConfig(optimizer=optimizer))
    data = _data(ROWS)
    start = model.embeddings.tables["user"].weight.detach().clone()
    before = process_state()
    train_epoch(model, data, opt, batch_size=128, progress=False)
    _assert_unchanged(before, process_state())
    assert not torch.equal(start, model.embeddings.tables["user"].weight)  # it did train (sparse gradients)


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)


@pytest.mark.parametrize("checks", [False, True])
def test_importing_every_saec_module_leaves_the_global_state_alone(checks):
    done = _run_python(f"""
        import importlib, pkgutil
        import numpy as np, torch
        (torch.sparse.check_sparse_tensor_invariants.enable if {checks}
         else torch.sparse.check_sparse_tensor_invariants.disable)()
        torch.manual_seed(7)
        np.random.seed(7)
        rng, nprng = torch.get_rng_state(), np.random.get_state()[1].copy()
        import saec
        names = [m.name for m in pkgutil.walk_packages(saec.__path__, "saec.")]
        for name in names:
            importlib.import_module(name)
        assert len(names) > 20, names
        assert torch.equal(torch.get_rng_state(), rng), "torch's random state"
        assert (np.random.get_state()[1] == nprng).all(), "numpy's random state"
        assert torch.sparse.check_sparse_tensor_invariants.is_enabled() is {checks}, "sparse checks"
        print("ok", len(names))
        """)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr


def test_saec_train_prints_no_sparse_check_warning(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    user = rng.integers(0, 300, n)
    pd.DataFrame({"user": [f"u{u}" for u in user], "city": rng.choice(["a", "b", "c"], n),
                  "click": ((user % 3 == 0) ^ (rng.random(n) < 0.2)).astype(int)}).to_csv(tmp_path / "log.csv",
                                                                                         index=False)
    done = subprocess.run([sys.executable, "-m", "saec.cli", "train", "--table", str(tmp_path / "log.csv"),
                           "--label", "click", "--fields", "user,city", "--epochs", "1", "--hidden", "8"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "Warning" not in done.stdout, done.stderr


def test_a_users_mistake_is_one_line_and_exit_status_2(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert cli.main(["compress", "--model", str(missing), "--out", str(tmp_path / "x.pt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("saec: error: ") and str(missing) in err and err.count("\n") == 1, err


def test_an_existing_output_is_a_users_mistake(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"")
    assert cli.main(["compress", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("saec: error: ") and "--overwrite" in err and err.count("\n") == 1, err


def test_bad_option_values_are_users_mistakes(tmp_path, capsys):
    pd.DataFrame({"user": ["a", "b"] * 50, "click": [0, 1] * 50}).to_csv(tmp_path / "log.csv", index=False)
    for bad in (["--dims", "user:eight"], ["--dims", "user"], ["--hidden", "16,x"]):
        assert cli.main(["train", "--table", str(tmp_path / "log.csv"), "--label", "click", "--fields", "user",
                         "--quiet", *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("saec: error: --") and err.count("\n") == 1, err


@pytest.mark.parametrize("bug", [RuntimeError, ValueError, KeyError, TypeError])
def test_a_bug_propagates_with_its_traceback(monkeypatch, bug):
    def broken(args):
        raise bug("a bug inside saec")

    monkeypatch.setattr(cli, "cmd_fetch", broken)
    with pytest.raises(bug, match="a bug inside saec"):
        cli.main(["data", "fetch"])
