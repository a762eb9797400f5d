import numpy as np
import shutil

import pytest
import torch
from torch import nn

from saec.data import Field, Schema
from saec.data.vocab import OOV_ID, PAD_ID
from saec.io import load_model, save_model
from saec.models import build_model
from saec.nn import EmbeddingBagCollection
from saec.train.loop import TrainConfig, evaluate, fit, make_optimizer, train_epoch

SCHEMA = Schema((Field("a", 3), Field("b", 2, multi_valued=True), Field("c", 2, multi_valued=True, pooling="sum")))


def collection():
    torch.manual_seed(0)
    return EmbeddingBagCollection(SCHEMA, {"a": 5, "b": 4, "c": 4})


def test_lookup_handles_oov_padding_and_pooling():
    emb = collection()
    with torch.no_grad():
        emb.oov["a"].fill_(7.0)
        emb.oov["b"].fill_(-1.0)
    a, b, c = emb({
        "a": torch.tensor([1, OOV_ID]),
        "b": torch.tensor([[0, 2, PAD_ID], [OOV_ID, 3, PAD_ID]]),
        "c": torch.tensor([[0, 2, PAD_ID], [1, PAD_ID, PAD_ID]]),
    })
    wa, wb, wc = (emb.tables[n].weight.detach() for n in "abc")
    assert torch.allclose(a[0], wa[1]) and torch.allclose(a[1], torch.full((3,), 7.0))
    assert torch.allclose(b[0], (wb[0] + wb[2]) / 2)  # mean over present ids only
    assert torch.allclose(b[1], (torch.full((2,), -1.0) + wb[3]) / 2)
    assert torch.allclose(c[0], wc[0] + wc[2]) and torch.allclose(c[1], wc[1])


def test_replace_and_grow():
    emb = collection()
    old = emb.tables["a"].weight.detach().clone()
    emb.grow("a", 8)
    assert emb.num_embeddings("a") == 8 and torch.equal(emb.tables["a"].weight[:5].detach(), old)
    new = nn.Embedding(3, 3)
    assert isinstance(emb.replace("a", new), nn.Embedding) and emb.tables["a"] is new
    with pytest.raises(ValueError, match="shape"):
        emb.replace("a", nn.Embedding(3, 4))
    with pytest.raises(KeyError, match="unknown field"):
        emb.lookup("zzz", torch.tensor([0]))
    with pytest.raises(ValueError, match="shrink"):
        emb.grow("b", 2)
    with pytest.raises(ValueError, match="lacks fields"):
        EmbeddingBagCollection(SCHEMA, {"a": 5, "b": 4})


@pytest.mark.parametrize("name", ["dssm", "deepfm"])
def test_models_forward_and_gradients_reach_every_parameter(name):
    model = build_model(name, SCHEMA, {"a": 5, "b": 4, "c": 4}, hidden=(8,))
    ids = {"a": torch.tensor([0, 4, OOV_ID]), "b": torch.tensor([[1], [2], [OOV_ID]]), "c": torch.tensor([[0], [1], [OOV_ID]])}
    out = model(ids)
    assert out.shape == (3,)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["dssm", "deepfm"])
def test_short_training_run_learns_movielens(ml100k, name):
    model = build_model(name, ml100k.schema, ml100k.num_embeddings)
    history = fit(model, ml100k.train, ml100k.valid, TrainConfig(epochs=1, progress=False))
    result = evaluate(model, ml100k.test)
    assert result["auc"] > 0.65, result  # constant prediction is 0.5
    assert result["logloss"] < 0.69
    assert history.best_epoch == 1 and history.epochs[0]["samples_per_s"] > 0


def test_training_is_seeded_and_reproducible(ml100k):
    small = ml100k.train.take(slice(0, 5000))
    results = []
    for _ in range(2):
        model = build_model("dssm", ml100k.schema, ml100k.num_embeddings, seed=3)
        train_epoch(model, small, make_optimizer(model, TrainConfig()), seed=3, progress=False)
        results.append(evaluate(model, ml100k.valid))
    assert results[0] == results[1]


def test_save_load_round_trip_and_damaged_file(ml100k, tmp_path):
    model = build_model("deepfm", ml100k.schema, ml100k.num_embeddings, hidden=(16,))
    path = save_model(tmp_path / "m.pt", model, ml100k.vocabs, {"note": "x"})
    loaded, vocabs, extra = load_model(path)
    assert extra == {"note": "x"} and list(vocabs["item"].values) == list(ml100k.vocabs["item"].values)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind
    damaged = tmp_path / "damaged.pt"
    shutil.copytree(path, damaged)
    tensors = damaged / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[: 1000])
    with pytest.raises(ValueError, match="tensors.safetensors has 1,000 bytes.*damaged or replaced"):
        load_model(damaged)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_bad_training_parameters():
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("wide", SCHEMA, {"a": 5, "b": 4, "c": 4})
    model = build_model("dssm", SCHEMA, {"a": 5, "b": 4, "c": 4})
    with pytest.raises(ValueError, match="sparse"):
        make_optimizer(model, TrainConfig(optimizer="adam"))
