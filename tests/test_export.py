"""saec export --onnx: ONNX Runtime against PyTorch within 1e-5 for every registered method (DSSM and DeepFM,
single- and multi-valued fields, unknown ids and padding), integer tables kept as integers in the graph, the
artifact verified like any saved model, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from saec.cli import main
from saec.data import Field, Schema
from saec.errors import SaecError
from saec.export import example_ids, to_onnx
from saec.onnx_model import OnnxModel
from saec.io import load_model, save_model
from saec.models import build_model
from saec.nn.registry import METHODS, POST_TRAINING, TRAINING_FORMS, from_float, make_embedding

SCHEMA = Schema([Field("user", 8), Field("genres", 8, multi_valued=True), Field("city", 4, multi_valued=True,
                                                                               pooling="sum")], label="y")
SIZES = {"user": 500, "genres": 60, "city": 40}


def model_with(method: str, name: str = "dssm") -> torch.nn.Module:
    """A model whose every table is ``method`` (built from the trained tables, or fresh at half the bytes)."""
    model = build_model(name, SCHEMA, SIZES, hidden=(16,), init_std=0.3, seed=1)
    for f in SCHEMA.fields:
        table = model.embeddings.tables[f.name]
        if method in POST_TRAINING:
            new = from_float(method, table.weight, **({"k": 7} if method.startswith("saec") else
                                                      {"num_buckets": 9} if method == "memcom_int8" else
                                                      {"nnz": SIZES[f.name] * f.dim // 3} if method == "pep" else {}))
        elif method == "full":
            continue
        else:
            few = {"num_hashes": 4} if method == "dhe" else {}  # its default 32 hashes alone outweigh these tables
            # training forms without a knob (binary_ste, ...) are full-size tables: no budget
            budget = {} if method in TRAINING_FORMS and not METHODS[method].knobs else {"budget_bytes": SIZES[f.name] * f.dim * 2}
            new = make_embedding(method, SIZES[f.name], f.dim, seed=3, **budget, **few)
            with torch.no_grad():  # away from the tiny init, so differences would show
                for p in new.parameters():
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(5))
        model.embeddings.replace(f.name, new)
    with torch.no_grad():
        for p in model.embeddings.oov.values():
            p.normal_(0, 0.5)
    return model.eval()


def vocabs_for(model):
    from saec.data.vocab import Vocabulary

    return {f.name: Vocabulary.from_values(np.arange(SIZES[f.name])) for f in SCHEMA.fields}


@pytest.mark.parametrize("method", list(METHODS))
def test_onnx_runtime_matches_pytorch_for_every_method(method, tmp_path):
    model = model_with(method)
    folder = save_model(tmp_path / "m", model, vocabs_for(model), onnx=to_onnx(model))
    runner = OnnxModel(folder)
    for batch, length, seed in ((1, 1, 0), (33, 5, 1)):
        ids = dict(zip(SCHEMA.names, example_ids(model, batch, length, seed)))
        with torch.no_grad():
            want = torch.sigmoid(model(ids)).double().numpy()
        got = runner({n: x.numpy() for n, x in ids.items()})
        assert got.shape == (batch,)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_deepfm_exports_too(tmp_path):
    model = model_with("saec_int8", "deepfm")
    runner = OnnxModel(save_model(tmp_path / "m", model, vocabs_for(model), onnx=to_onnx(model)))
    ids = dict(zip(SCHEMA.names, example_ids(model, 17, 3, 2)))
    with torch.no_grad():
        want = torch.sigmoid(model(ids)).double().numpy()
    np.testing.assert_allclose(runner({n: x.numpy() for n, x in ids.items()}), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method,dtype", [("int8", np.uint8), ("int4", np.uint8), ("saec", np.uint8),
                                          ("fp16", np.float16)])
def test_compressed_tables_stay_compressed_in_the_graph(method, dtype):
    model = model_with(method)
    proto = onnx.load_from_string(to_onnx(model).to_bytes())
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    shapes = [(a.dtype, a.shape) for a in inits.values()]
    # the user table's rows are there in their compressed type, and no float32 copy of the whole table
    assert any(a.dtype == dtype and a.shape[0] == SIZES["user"] for a in inits.values()), shapes
    assert not any(a.dtype == np.float32 and a.size >= SIZES["user"] * 8 for a in inits.values()), shapes


def test_the_onnx_file_is_checked_like_every_other(tmp_path):
    model = model_with("int8")
    folder = save_model(tmp_path / "m", model, vocabs_for(model), onnx=to_onnx(model))
    desc = json.loads((folder / "onnx.json").read_text())
    assert [i["name"] for i in desc["inputs"]] == SCHEMA.names and desc["output"] == "probability"
    loaded, _, _ = load_model(folder)  # a model with its graph still loads, everything verified
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 3] ^= 0x40
    (folder / "model.onnx").write_bytes(bytes(data))
    for load in (load_model, OnnxModel):
        with pytest.raises(SaecError, match="model.onnx is damaged or was replaced"):
            load(folder)
    plain = save_model(tmp_path / "plain", model, vocabs_for(model))
    with pytest.raises(SaecError, match="holds no model.onnx; write one with saec export"):
        OnnxModel(plain)


def test_external_data_runs_the_same_and_is_checked_like_every_other_file(tmp_path):
    model = model_with("int8")
    folder = save_model(tmp_path / "m", model, vocabs_for(model), onnx=to_onnx(model, external=True))
    data = folder / "model.onnx.data"
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)  # the tensors are beside the graph
    assert any(i.data_location == onnx.TensorProto.EXTERNAL for i in graph.graph.initializer)
    ids = dict(zip(SCHEMA.names, example_ids(model, 9, 2, 4)))
    with torch.no_grad():
        want = torch.sigmoid(model(ids)).double().numpy()
    np.testing.assert_allclose(OnnxModel(folder)({n: x.numpy() for n, x in ids.items()}), want, rtol=0, atol=1e-5)
    load_model(folder)
    with pytest.raises(SaecError, match="not a readable|external data"):
        to_onnx(model, external=True).to_bytes()
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    for load in (load_model, OnnxModel):
        with pytest.raises(SaecError, match="model.onnx.data is damaged or was replaced"):
            load(folder)
    data.unlink()
    for load in (load_model, OnnxModel):
        with pytest.raises(SaecError, match="model.onnx.data is missing"):
            load(folder)


def test_saec_export_cli_writes_a_verified_artifact_with_its_graph(tmp_path, capsys):
    model = model_with("saec")
    src = save_model(tmp_path / "src", model, vocabs_for(model))
    out = tmp_path / "served"
    assert main(["export", str(src), "--out", str(out), "--onnx"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    assert main(["check", str(out)]) == 0
    ids = dict(zip(SCHEMA.names, example_ids(model, 9, 2, 4)))
    with torch.no_grad():
        want = torch.sigmoid(model(ids)).double().numpy()
    np.testing.assert_allclose(OnnxModel(out)({n: x.numpy() for n, x in ids.items()}), want, rtol=0, atol=1e-5)
    assert main(["export", str(src), "--out", str(out)]) == 2  # exists: replaced only with --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(src), "--out", str(src), "--overwrite"]) == 2  # never over its own input
    capsys.readouterr()


def test_the_runtime_side_needs_no_torch():
    import subprocess
    import sys

    from saec import io, onnx_model

    assert (onnx_model.FORMAT, onnx_model.ONNX_FILES, onnx_model.ONNX_DATA) == (io.FORMAT, io.ONNX_FILES, io.ONNX_DATA)
    code = "import sys, saec.onnx_model, saec.predict; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
