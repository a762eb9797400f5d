"""Integrity of everything saec writes (issue 9): every damaged, swapped or edited artifact is refused with a
SaecError naming the file; nothing damaged loads."""

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from saec import compress
from saec.artifact import MANIFEST, canonical, read_artifact, reseal, sign
from saec.cluster.saec import SaecConfig, compress_tables
from saec.compression import compress_state_dict, load_tables, save_tables
from saec.data import Field, Schema, Vocabulary
from saec.dump import load_compressed, save_compressed
from saec.errors import SaecError
from saec.io import load_model, save_model
from saec.models import build_model

SCHEMA = Schema((Field("user", 8), Field("item", 4)))
SIZES = {"user": 1200, "item": 30}
VOCABS = {n: Vocabulary.from_values(np.repeat(np.arange(v), np.arange(v, 0, -1) % 7 + 1)) for n, v in SIZES.items()}
FLIPS = 200


def _model(seed):
    return build_model("dssm", SCHEMA, SIZES, hidden=(8,), seed=seed)


def write_model(folder, seed):
    return save_model(folder, _model(seed), VOCABS, {"seed": "same"})


def write_compressed_model(folder, seed):
    small, _ = compress(_model(seed), "saec", k=10, eligibility=10, min_rows=100)
    return save_model(folder, small, VOCABS, {"seed": "same"})


def _tables(seed):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((1500, 8), dtype=np.float32), "b": rng.standard_normal((30, 4), dtype=np.float32)}


def write_exported_model(folder, seed):
    """A compressed model with its ONNX graph (saec export --onnx): the graph is one more checked file."""
    from saec.export import to_onnx

    small, _ = compress(_model(seed), "saec_int8", k=10, eligibility=10, min_rows=100)
    return save_model(folder, small, VOCABS, {"seed": "same"}, onnx=to_onnx(small))


def write_exported_external(folder, seed):
    """The same with the graph's tensors in ONNX external data (model.onnx.data), as a model over 2 GiB has them."""
    from saec.export import to_onnx

    small, _ = compress(_model(seed), "saec_int8", k=10, eligibility=10, min_rows=100)
    return save_model(folder, small, VOCABS, {"seed": "same"}, onnx=to_onnx(small, external=True))


def _fingerprint_exported(folder):
    from saec.onnx_model import OnnxModel

    ids = {"user": np.array([0, 5, 1199, -1]), "item": np.array([3, -1, 29, 0])}
    return _fingerprint_model(folder), torch.from_numpy(OnnxModel(folder)(ids))


def write_dump(folder, seed):
    cfg = SaecConfig(k=10, eligibility=10, niter=5, seed=0)
    tables = _tables(seed)
    fields = compress_tables(tables, None, cfg)
    for r in fields.values():  # the timings differ run to run; twins differ only in their arrays
        r.cluster_s = r.assign_s = 0.0
        r.phases = {}
        r.objective = 0.0
    return save_compressed(folder, fields, tables, cfg)


def write_record(folder, seed):
    g = torch.Generator().manual_seed(seed)
    state = {"emb.weight": torch.randn(1500, 8, generator=g), "head.weight": torch.randn(3, 8, generator=g)}
    record, report = compress_state_dict(state, ["emb.weight"], "saec", k=10, eligibility=10, niter=5)
    record["report"]["tables"][0]["stats"] = {}  # timings differ run to run
    return save_tables(folder, record)


def _fingerprint_model(folder):
    model, vocabs, extra = load_model(folder)
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: (list(v.values), v.counts.tolist()) for n, v in vocabs.items()}, extra)


def _fingerprint_dump(folder):
    return {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in load_compressed(folder).items()}


def _fingerprint_record(folder):
    return {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in load_tables(folder).items()}


KINDS = {
    "model": (write_model, _fingerprint_model),
    "compressed model": (write_compressed_model, _fingerprint_model),
    "exported model": (write_exported_model, _fingerprint_exported),
    "exported model, external data": (write_exported_external, _fingerprint_exported),
    "dump": (write_dump, _fingerprint_dump),
    "state-dict record": (write_record, _fingerprint_record),
}


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module", params=list(KINDS))
def artifact(request, tmp_path_factory):
    write, load = KINDS[request.param]
    root = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    folder, twin = write(root / "a", 0), write(root / "b", 1)
    original = load(folder)
    assert not _same(original, load(twin))  # the twin really is another artifact of the same shapes
    return request.param, folder, twin, load, original


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _refused(load, folder, name, original):
    """Loading ``folder`` raises a SaecError naming ``folder/name`` (never returns, never another error)."""
    try:
        got = load(folder)
    except SaecError as e:
        assert str(folder / name) in str(e) or (name in str(e) and str(folder) in str(e)), (name, str(e))
        return
    raise AssertionError(f"{folder / name}: a damaged artifact loaded "
                         f"({'the same' if _same(got, original) else 'DIFFERENT'} content)")


def test_round_trip_loads_what_was_saved(artifact):
    kind, folder, _, load, original = artifact
    assert _same(load(folder), original)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["version"] == 1 and manifest["saec_version"] and set(manifest["files"]) == set(_files(folder)) - {MANIFEST}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())


def test_every_flipped_bit_is_refused(artifact):
    kind, folder, _, load, original = artifact
    rng = random.Random(f"flip {kind}")
    names = _files(folder)
    for trial in range(FLIPS):
        name = rng.choice(names)
        path = folder / name
        data = path.read_bytes()
        pos, bit = rng.randrange(len(data)), rng.randrange(8)
        damaged = bytearray(data)
        damaged[pos] ^= 1 << bit
        path.write_bytes(bytes(damaged))
        try:
            _refused(load, folder, name, original)
        finally:
            path.write_bytes(data)
    assert _same(load(folder), original)


def test_truncated_swapped_missing_and_extra_files_are_refused(artifact):
    kind, folder, twin, load, original = artifact
    rng = random.Random(f"cut {kind}")
    for name in _files(folder):
        path = folder / name
        data = path.read_bytes()
        try:
            for cut in {0, len(data) - 1, rng.randrange(len(data))}:
                path.write_bytes(data[:cut])
                _refused(load, folder, name, original)
            path.write_bytes(data + b"\0")
            _refused(load, folder, name, original)
            other = (twin / name).read_bytes()
            if other != data:
                path.write_bytes(other)
                if name == MANIFEST:  # the twin's manifest: the files it vouches for are this folder's others
                    with pytest.raises(SaecError, match=str(folder)):
                        load(folder)
                else:
                    _refused(load, folder, name, original)
            path.unlink()
            _refused(load, folder, name, original)
        finally:
            path.write_bytes(data)
    (folder / "notes.txt").write_text("mine")
    try:
        _refused(load, folder, "notes.txt", original)
    finally:
        (folder / "notes.txt").unlink()
    assert _same(load(folder), original)


def _edited(folder, tmp_path, edit, signed=True):
    copy = tmp_path / f"edit{len(list(tmp_path.iterdir()))}"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    edit(manifest, copy)
    (copy / MANIFEST).write_bytes(canonical(sign(manifest) if signed else manifest))
    return copy


def test_edited_manifests_are_refused(artifact, tmp_path):
    kind, folder, _, load, original = artifact
    manifest = json.loads((folder / MANIFEST).read_text())
    first = sorted(manifest["files"])[0]
    edits = [(lambda m, f, k=k: m.pop(k), signed) for k in manifest for signed in (True, False)
             if k != "manifest_sha256" or not signed]
    edits += [(lambda m, f: m.update(version=2), True), (lambda m, f: m.update(version="1"), True),
              (lambda m, f: m.update(format="saec-run" if m["format"] != "saec-run" else "x"), True),
              (lambda m, f: m.update(format="not-saec"), True),
              (lambda m, f: m["files"].pop(first), True),
              (lambda m, f: m["files"][first].update(sha256="0" * 64), True),
              (lambda m, f: m["files"][first].update(bytes=m["files"][first]["bytes"] + 1), True),
              (lambda m, f: m["files"].update({"../x": m["files"][first]}), True),
              (lambda m, f: m["files"].update({"a/../../x": m["files"][first]}), True),
              (lambda m, f: m["files"].update({str(f.parent / "x"): m["files"][first]}), True),
              (lambda m, f: m["files"].update({"./" + first: m["files"].pop(first)}), True),
              (lambda m, f: m.update(manifest_sha256="0" * 64), False)]
    for edit, signed in edits:
        copy = _edited(folder, tmp_path, edit, signed)
        _refused(load, copy, MANIFEST, original)


def test_symlinks_never_lead_out_of_the_folder(artifact, tmp_path):
    kind, folder, _, load, original = artifact
    outside = tmp_path / "outside.bin"
    name = sorted(json.loads((folder / MANIFEST).read_text())["files"])[0]
    copy = tmp_path / "linked"
    shutil.copytree(folder, copy)
    outside.write_bytes((copy / name).read_bytes())
    (copy / name).unlink()
    os.symlink(outside, copy / name)  # same bytes, same checksum, but outside the folder
    _refused(load, copy, name, original)


def _resealed_copy(folder, tmp_path, name, change):
    copy = tmp_path / f"semantic{len(list(tmp_path.iterdir()))}"
    shutil.copytree(folder, copy)
    change(copy / name)
    reseal(copy)
    return copy


def _edit_json(change):
    def edit(path):
        obj = json.loads(path.read_text())
        change(obj)
        path.write_text(json.dumps(obj))
    return edit


def _edit_npy(change):
    def edit(path):
        arr = np.load(path)
        np.save(path, change(arr))
    return edit


def _edit_tensors(key, change):
    def edit(path):
        from safetensors.torch import load_file, save_file

        t = load_file(path)
        t[key] = change(t[key])
        save_file(t, path)
    return edit


def test_checksummed_but_inconsistent_content_is_refused(tmp_path):
    """With checksums that match (an artifact written wrong, not damaged), shapes, dtypes, ranges and sizes are
    still checked against what the artifact says."""
    dump = write_dump(tmp_path / "dump", 0)
    nan = lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a).astype(a.dtype)  # noqa: E731
    cases = [
        ("a.mask.npy", _edit_npy(lambda a: np.full_like(a, 10)), "mask values must lie in \\[0, 10\\)"),
        ("a.mask.npy", _edit_npy(lambda a: a[:-1]), "mask is uint8 \\(1499,\\)"),
        ("a.mask.npy", _edit_npy(lambda a: a.astype(np.int64)), "mask is int64"),
        ("a.codebook.npy", _edit_npy(nan), "NaN"),
        ("a.codebook.npy", _edit_npy(lambda a: a[:, :4].copy()), "codebook is float32 \\(10, 4\\)"),
        ("a.codebook.npy", _edit_npy(lambda a: a.astype(np.float64)), "codebook is float64"),
        ("b.npy", _edit_npy(lambda a: a[:, :2].copy()), "table is float32 \\(30, 2\\)"),
        ("b.npy", _edit_npy(nan), "NaN"),
        (MANIFEST, lambda p: None, None),  # resealed unchanged: still loads
    ]
    for name, change, message in cases:
        copy = _resealed_copy(dump, tmp_path, name, change)
        if message is None:
            assert _same(_fingerprint_dump(copy), _fingerprint_dump(dump))
            continue
        with pytest.raises(SaecError, match=message) as e:
            load_compressed(copy)
        assert name in str(e.value)

    def drop_field(path):
        m = json.loads(path.read_text())
        del m["fields"]["b"]
        path.unlink()
        path.write_bytes(canonical(sign(m)))
    copy = tmp_path / "fewer"
    shutil.copytree(dump, copy)
    drop_field(copy / MANIFEST)
    with pytest.raises(SaecError, match="b.npy is not part of"):  # a manifest with fields removed
        load_compressed(copy)

    model = write_compressed_model(tmp_path / "model", 0)
    cases = [
        ("tensors.safetensors", _edit_tensors("state_dict/embeddings.tables.user.mask", lambda t: t + 200),
         "mask values must lie in \\[0, 10\\)"),
        ("tensors.safetensors", _edit_tensors("state_dict/embeddings.tables.user.codebook", lambda t: t.double()),
         "float64"),
        ("tensors.safetensors", _edit_tensors("state_dict/embeddings.tables.item.weight", lambda t: t * np.nan), "NaN"),
        ("tensors.safetensors", _edit_tensors("vocab_counts/item", lambda t: t[:-1].clone()), "29 counts"),
        ("tensors.safetensors", _edit_tensors("vocab_counts/item", lambda t: -t), "non-negative int64"),
        ("tensors.safetensors", _edit_tensors("vocab_values/item", lambda t: t[:-1].clone()), "29 values"),
        ("tensors.safetensors", _edit_tensors("vocab_values/item", lambda t: t.double()), "expected int64 values"),
        ("vocabs.json", _edit_json(lambda v: v["item"].update(values=list(range(30)))), "exactly one"),
        ("model.json", _edit_json(lambda m: m["config"]["num_embeddings"].update(item=31)), "item"),
        ("model.json", _edit_json(lambda m: m["tables"]["user"].update(features=1201)), "1201"),
        ("model.json", _edit_json(lambda m: m["tables"]["user"]["config"].update(k=11)), "rebuilds"),
    ]
    for name, change, message in cases:
        with pytest.raises(SaecError, match=message):
            load_model(_resealed_copy(model, tmp_path, name, change))

    record = write_record(tmp_path / "record", 0)
    cases = [
        ("state_dict.safetensors", _edit_tensors("emb.mask", lambda t: t + 100), "mask values must lie"),
        ("state_dict.safetensors", _edit_tensors("emb.codebook", lambda t: t[:5].clone()), "rebuilds"),
        ("tables.json", _edit_json(lambda m: m["tables"]["emb"].update(method="nope")), "unknown method"),
    ]
    for name, change, message in cases:
        with pytest.raises(SaecError, match=message):
            load_tables(_resealed_copy(record, tmp_path, name, change))


def test_loading_never_unpickles(tmp_path):
    """A pickle where a model, dump or record belongs is refused without running it."""
    ran = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (ran,))

    folder = write_model(tmp_path / "m", 0)
    torch.save({"x": Boom()}, folder / "tensors.safetensors")
    reseal(folder)
    with pytest.raises(SaecError, match="tensors.safetensors is not a readable safetensors file"):
        load_model(folder)
    torch.save(Boom(), tmp_path / "old.pt")
    with pytest.raises(SaecError, match="old.pt is a file"):
        load_model(tmp_path / "old.pt")
    assert not ran.exists()


def test_read_artifact_names_the_kind_it_wanted(tmp_path):
    dump = write_dump(tmp_path / "dump", 0)
    with pytest.raises(SaecError, match="a saec-compressed-tables, not a saec-model"):
        load_model(dump)
    with pytest.raises(SaecError, match="no compressed table set at"):
        load_compressed(tmp_path / "missing")
    assert read_artifact(dump, "saec-compressed-tables").kind == "saec-compressed-tables"


def test_saec_check_passes_what_loads_and_names_the_first_damaged_file(artifact, tmp_path, capsys):
    from saec.cli import main

    kind, folder, _, _, _ = artifact
    assert main(["check", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok  {folder}  ") and "written by saec" in out
    rng = random.Random(7)
    for name in _files(folder):
        copy = tmp_path / f"{name.replace('/', '_')}"
        shutil.copytree(folder, copy)
        data = bytearray((copy / name).read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        (copy / name).write_bytes(bytes(data))
        assert main(["check", str(copy)]) == 2, (kind, name)
        assert str(copy / name) in capsys.readouterr().err, (kind, name)
    assert main(["check", str(tmp_path / "nothing-here")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- memory-mapped loading ---------------------------------------------------------------------------
BIG = {"user": 500_000, "item": 30}
_RSS = """
import json, sys
import numpy as np, torch
import saec.models, saec.nn.registry
from saec.io import load_model
def anon():
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('RssAnon'))
before = anon()
model, vocabs, _ = load_model(sys.argv[1], mmap_bytes=None if sys.argv[2] == 'none' else int(sys.argv[2]))
after = anon()
with torch.no_grad():
    p = torch.sigmoid(model({'user': torch.tensor([0, 7, 499_999, -1]), 'item': torch.tensor([1, 2, 3, 4])}))
print(json.dumps({'grew': after - before, 'p': p.tolist(), 'mapped': model.embeddings.tables['user'].weight.data_ptr()}))
"""


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    schema = Schema((Field("user", 64), Field("item", 4)))
    model = build_model("dssm", schema, BIG, hidden=(8,), seed=3)
    vocabs = {n: Vocabulary.from_values(np.arange(v)) for n, v in BIG.items()}
    return save_model(tmp_path_factory.mktemp("big") / "m", model, vocabs), BIG["user"] * 64 * 4


def _load_in_child(folder, mmap_bytes):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RSS, str(folder), str(mmap_bytes)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_a_large_table_loads_memory_mapped_without_being_copied(big_model):
    folder, table_bytes = big_model
    mapped, copied = _load_in_child(folder, 1 << 20), _load_in_child(folder, "none")
    assert mapped["p"] == copied["p"]  # the same model either way
    assert copied["grew"] >= table_bytes  # read into memory: the table's bytes at least
    assert mapped["grew"] < 0.1 * table_bytes, mapped  # mapped: the file's pages, not a private copy


def test_a_mapped_file_is_verified_and_never_written(big_model, tmp_path):
    folder, _ = big_model
    copy = tmp_path / "m"
    shutil.copytree(folder, copy)
    tensors = copy / "tensors.safetensors"
    original = tensors.read_bytes()
    model, _, _ = load_model(copy, mmap_bytes=1 << 20)
    with torch.no_grad():  # training or editing the loaded model changes its pages, not the file
        model.embeddings.tables["user"].weight.mul_(2.0)
    assert tensors.read_bytes() == original
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x10
    tensors.write_bytes(bytes(damaged))
    with pytest.raises(SaecError, match="tensors.safetensors is damaged or was replaced"):
        load_model(copy, mmap_bytes=1 << 20)
    tensors.write_bytes(original)
    art = read_artifact(copy, "saec-model", map_over=1 << 20, mappable=["tensors.safetensors"])
    assert set(art.mapped) == {"tensors.safetensors"} and "tensors.safetensors" not in art.data
    tensors.write_bytes(original)  # the same bytes, but another write after the check
    with pytest.raises(SaecError, match="changed after its SHA-256 was checked"):
        art.tensors("tensors.safetensors")
