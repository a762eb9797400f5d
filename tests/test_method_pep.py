"""PEP (survey §3.2): the learnable-threshold re-parameterisation against its formula, the sparse stored form's
lookups against a dense reference (the nnz largest weights), its bytes, and retraining with the mask fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saec
from saec.data import Field, Schema
from saec.models import build_model
from saec.nn.pep import PEPTrainEmbedding, PrunedEmbedding
from saec.nn.registry import from_float, make_embedding


def test_training_form_prunes_below_the_learnt_threshold_exactly_to_zero():
    table = make_embedding("pep_train", 40, 6, seed=1, init_std=0.5, init_threshold=-1.0)  # cut at sigmoid(-1) ~ 0.27
    ids = torch.arange(40)
    out = table(ids)
    v, cut = table.V.weight.detach(), torch.sigmoid(torch.tensor(-1.0))
    want = torch.where(v.abs() > cut, v - torch.sign(v) * cut, torch.zeros(()))
    torch.testing.assert_close(out, want, rtol=0, atol=1e-7)
    assert ((out == 0) == (v.abs() <= cut)).all() and (out == 0).any()
    out.sum().backward()
    assert table.s.grad.abs().sum() > 0  # the thresholds learn
    assert table.param_count() == 40 * 6 + 6 == PEPTrainEmbedding.footprint(40, 6).params


@pytest.mark.parametrize("nnz", [0, 1, 37, 240])
def test_stored_form_is_the_nnz_largest_weights_in_sparse_storage(nnz):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 6, generator=g)
    weight[5] = 0  # a row with no weight left reads zeros
    table = from_float("pep", weight, nnz=nnz)
    kept = min(nnz, int((weight != 0).sum()))
    assert table.nnz == kept and table.positions.dtype == torch.int32
    assert bool((torch.diff(table.positions.long()) > 0).all())
    assert table.nbytes() == 8 * kept == PrunedEmbedding.footprint(40, 6, nnz=kept).nbytes
    flat = weight.reshape(-1)
    ref = torch.zeros_like(flat)
    top = torch.sort(flat.abs(), descending=True, stable=True).indices[:kept]
    ref[top] = flat[top]
    ids = torch.tensor([5, 0, 39, 17, 17, 3])
    assert torch.equal(table(ids), ref.reshape(40, 6)[ids])
    assert torch.equal(table.to_dense(), ref.reshape(40, 6))


def test_retraining_keeps_the_mask():
    table = from_float("pep", torch.randn(30, 4, generator=torch.Generator().manual_seed(1)), nnz=25)
    zero = table.to_dense() == 0
    opt = torch.optim.Adagrad(table.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        table(torch.arange(30)).pow(2).sum().backward()
        opt.step()
    dense = table.to_dense()
    assert (dense[zero] == 0).all() and not torch.equal(dense[~zero], from_float(
        "pep", torch.randn(30, 4, generator=torch.Generator().manual_seed(1)), nnz=25).to_dense()[~zero])


def test_compress_keeps_what_the_learnt_thresholds_left_within_the_budget():
    schema = Schema([Field("user", 16), Field("tags", 8, multi_valued=True)], label="y")
    model = build_model("dssm", schema, {"user": 1200, "tags": 30}, hidden=(8,), seed=0)
    form = make_embedding("pep_train", 1200, 16, seed=2, init_std=0.3, init_threshold=-1.5)  # prunes ~ half
    model.embeddings.replace("user", form)
    pruned = form.pruned_weight()
    survivors = int((pruned != 0).sum())
    stored, report = saec.compress(model, "pep", ratio=16)
    table = stored.embeddings.tables["user"]
    assert isinstance(table, PrunedEmbedding) and table.nnz == 1200 * 16 * 4 // 16 // 8 < survivors
    assert {t.path: t for t in report.tables}["embeddings.tables.user"].bytes_after == 8 * table.nnz
    dense = table.to_dense()
    assert bool(((dense != 0) <= (pruned != 0)).all())  # only weights the thresholds kept
    assert dense[dense != 0].abs().min() >= np.sort(pruned.abs().reshape(-1).numpy())[-table.nnz]
    everything, _ = saec.compress(model, "pep", nnz=1200 * 16)
    assert everything.embeddings.tables["user"].nnz == survivors  # the zeros are never stored
