"""Never destroy what saec did not write (issue 9's data-loss cases, through the command line): each is
refused with exit 2 and a one-line error before any work, and the user's files are byte-identical after."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saec import cli
from saec.artifact import MANIFEST


def snapshot(root: Path) -> dict[str, tuple[bytes | str, int]]:
    """Every file and symlink under ``root`` with its bytes (or link target) and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = (os.readlink(p), 0)
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), p.stat().st_mode)
    return out


def refused(capsys, argv, *phrases):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("saec: error: ") and err.count("\n") == 1, err
    for phrase in phrases:
        assert phrase in err, err
    return err


@pytest.fixture
def dump(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "dump"
    folder.mkdir()
    np.save(folder / "a.npy", rng.standard_normal((1200, 4), dtype=np.float32))
    np.save(folder / "a.counts.npy", rng.integers(0, 100, 1200))
    np.save(folder / "b.npy", rng.standard_normal((20, 4), dtype=np.float32))
    (folder / "notes.txt").write_text("where this dump came from\n")
    return folder


COMPRESS = ["--k", "10", "--eligibility", "10", "--niter", "3", "--quiet"]


@pytest.fixture
def log(tmp_path):
    rng = np.random.default_rng(0)
    user = rng.integers(0, 40, 600)
    pd.DataFrame({"user": [f"u{u}" for u in user], "city": rng.choice(["a", "b"], 600),
                  "click": ((user % 2 == 0) ^ (rng.random(600) < 0.1)).astype(int)}).to_csv(tmp_path / "log.csv",
                                                                                           index=False)
    return tmp_path / "log.csv"


def train_args(log, out, *extra):
    return ["train", "--table", str(log), "--label", "click", "--fields", "user,city", "--epochs", "1",
            "--hidden", "8", "--quiet", "--out", str(out), *extra]


@pytest.fixture
def no_training(monkeypatch):
    """Refusals must come before any work: training would fail the test."""
    import saec.train.loop

    def fit(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(saec.train.loop, "fit", fit)


def test_compress_never_writes_over_or_into_its_input_tables(tmp_path, dump, capsys):
    before = snapshot(tmp_path)
    for out in (dump, dump / "sub", tmp_path, dump / "a.npy"):
        for extra in ([], ["--overwrite"]):
            refused(capsys, ["compress", "--tables", str(dump), "--out", str(out), *extra, *COMPRESS], str(out))
    refused(capsys, ["compress", "--tables", str(dump), "--out", str(dump), "--overwrite", *COMPRESS],
            "is, holds or lies inside the input")
    os.symlink(dump, tmp_path / "alias")  # the same folder under another name is still the input
    before["alias"] = (str(dump), 0)
    refused(capsys, ["compress", "--tables", str(dump), "--out", str(tmp_path / "alias"), "--overwrite", *COMPRESS],
            "lies inside the input")
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_a_folder_saec_wrote(tmp_path, dump, capsys):
    out = tmp_path / "out"
    args = ["compress", "--tables", str(dump), "--out", str(out), *COMPRESS]
    assert cli.main(args) == 0
    capsys.readouterr()
    refused(capsys, args, "exists", "--overwrite")  # no --overwrite: kept
    assert cli.main(args + ["--overwrite"]) == 0  # saec's own output: replaced
    capsys.readouterr()
    (out / "notes.txt").write_text("my notes\n")  # the user keeps something in it: never deleted
    before = snapshot(tmp_path)
    refused(capsys, args + ["--overwrite"], "not an output saec wrote", "notes.txt")
    (out / "notes.txt").unlink()
    (out / "sub").mkdir()
    (out / "sub" / "x.bin").write_bytes(b"x")
    refused(capsys, args + ["--overwrite"], "x.bin")
    (out / "sub" / "x.bin").unlink()
    (out / "sub").rmdir()
    (out / "notes.txt").write_text("my notes\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not saec's\n")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MANIFEST).write_text('{"format": "saec-compressed-tables"}')  # looks like saec's, is not
    before = snapshot(tmp_path)
    for target in (mine, fake):
        refused(capsys, ["compress", "--tables", str(dump), "--out", str(target), "--overwrite", *COMPRESS],
                "not an output saec wrote")
    assert snapshot(tmp_path) == before


def test_train_refuses_before_training(tmp_path, log, capsys, no_training):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"an old model")
    (tmp_path / "file").write_text("a file, not a folder")
    before = snapshot(tmp_path)
    refused(capsys, train_args(log, tmp_path / "run"), "exists", "--overwrite")
    refused(capsys, train_args(log, tmp_path / "run", "--overwrite"), "not an output saec wrote", "model.pt")
    refused(capsys, train_args(log, tmp_path / "file"), "is an existing file")
    refused(capsys, train_args(log, tmp_path / "file", "--overwrite"), "is an existing file")
    refused(capsys, train_args(log, tmp_path / "file" / "run"), "is a file, not a folder")
    refused(capsys, train_args(log, log.parent, "--overwrite"), "lies inside the input")
    refused(capsys, ["run", *train_args(log, tmp_path / "run", "--overwrite")[1:], "--k", "2"], "not an output saec")
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left behind


def test_train_writes_a_run_folder_and_replaces_only_its_own(tmp_path, log, capsys):
    out = tmp_path / "run"
    assert cli.main(train_args(log, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "metrics.json", "model"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "saec-run" and "model/tensors.safetensors" in manifest["files"]
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((out / "model" / "tensors.safetensors").stat().st_mode & 0o777) == 0o666 & ~mask
    capsys.readouterr()
    refused(capsys, train_args(log, out), "--overwrite")
    # a write that was killed left its temporary folders beside the target: the next write removes them
    (tmp_path / ".run.dead.saec-tmp").mkdir()
    (tmp_path / ".run.dead.saec-tmp" / "half.bin").write_bytes(b"half")
    (tmp_path / ".run.dead.saec-old").mkdir()
    assert cli.main(train_args(log, out, "--overwrite", "--seed", "1")) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert cli.main(["evaluate", str(out / "model"), "--table", str(log), "--label", "click", "--fields",
                     "user,city"]) == 0
    capsys.readouterr()
    refused(capsys, ["evaluate", str(out), "--table", str(log), "--label", "click", "--fields", "user,city"],
            "saec-run", str(out / "model"))


def test_compress_model_and_state_dict_never_write_over_their_inputs(tmp_path, log, capsys):
    import torch

    assert cli.main(train_args(log, tmp_path / "run")) == 0
    model = tmp_path / "run" / "model"
    torch.save({"emb.weight": torch.randn(300, 4)}, tmp_path / "sd.pt")
    before = snapshot(tmp_path)
    for out in (model, model / "x", tmp_path / "run"):
        refused(capsys, ["compress", "--model", str(model), "--out", str(out), "--overwrite", "--method", "int8"],
                "input")
    for out in (tmp_path / "sd.pt", tmp_path):
        refused(capsys, ["compress", "--state-dict", str(tmp_path / "sd.pt"), "--names", "emb.weight", "--out",
                         str(out), "--overwrite", "--method", "int8"], "input")
    assert snapshot(tmp_path) == before
    assert cli.main(["compress", "--state-dict", str(tmp_path / "sd.pt"), "--names", "emb.weight", "--out",
                     str(tmp_path / "small"), "--method", "int8"]) == 0


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path, dump, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["compress", "--tables", str(dump), "--out", str(out), *COMPRESS]
    assert cli.main(args) == 0
    before = snapshot(tmp_path)
    import saec.dump

    def broken(array):
        raise OSError("disk full")

    monkeypatch.setattr(saec.dump, "npy_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        cli.main(args + ["--overwrite"])
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
