"""Binarization (survey §2.1): the straight-through training form against its formula and gradient, the stored form's
packed bits and float16 scales against the training form, and saec.compress turning one into the other."""

from __future__ import annotations

import pytest
import torch

import saec
from saec.errors import SaecError
from saec.data import Field, Schema
from saec.models import build_model
from saec.nn.binary import BinaryEmbedding, BinarySTEEmbedding
from saec.nn.registry import from_float, make_embedding


def test_training_form_is_mean_abs_times_sign_with_the_straight_through_gradient():
    table = make_embedding("binary_ste", 30, 10, seed=2, init_std=0.8)  # some weights beyond |1|: clipped STE
    with torch.no_grad():
        table.T.weight[3, 4] = 0.0  # sign(0) is +1
    w = table.T.weight.detach().clone()
    ids = torch.tensor([3, 5, 5, 29])
    out = table(ids)
    s = w[ids].abs().mean(1, keepdim=True)
    b = torch.where(w[ids] >= 0, 1.0, -1.0)
    torch.testing.assert_close(out, s * b, rtol=0, atol=0)
    assert out[0, 4] == s[0, 0] > 0
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * g).sum().backward()
    # d/dw_j of s * b_k, with b's gradient the identity inside |w| <= 1: g_j s 1[|w_j| <= 1] + (sum_k g_k b_k) sign(w_j) / d
    per_lookup = g * s * (w[ids].abs() <= 1) + (g * b).sum(1, keepdim=True) * torch.sign(w[ids]) / 10
    want = torch.zeros_like(w).index_add_(0, ids, per_lookup)
    torch.testing.assert_close(table.T.weight.grad, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [16, 10, 3])
def test_stored_form_packs_one_bit_per_weight_and_a_float16_scale(dim):
    trained = make_embedding("binary_ste", 200, dim, seed=1, init_std=0.3)
    stored = from_float("binary", trained)
    assert isinstance(stored, BinaryEmbedding) and stored.param_count() == 0
    assert stored.bits.dtype == torch.uint8 and stored.bits.shape == (200, -(-dim // 8))
    assert stored.scale.dtype == torch.float16
    assert stored.nbytes() == 200 * (-(-dim // 8) + 2) == BinaryEmbedding.footprint(200, dim).nbytes
    ids = torch.arange(200)
    with torch.no_grad():
        want = trained(ids)
    got = stored(ids)
    assert torch.equal(torch.sign(got), torch.where(trained.T.weight >= 0, 1.0, -1.0))  # every sign bit kept
    torch.testing.assert_close(got, want, rtol=1e-3, atol=0)  # the scale's float16 rounding only
    # two-stage binarisation of a float table: the same rule on its weight
    torch.testing.assert_close(from_float("binary", trained.T.weight)(ids), got, rtol=0, atol=0)


def test_other_post_training_methods_read_a_trained_compressed_table_through_its_rows():
    trained = make_embedding("binary_ste", 64, 8, seed=4, init_std=0.3)
    int8 = from_float("int8", trained)
    with torch.no_grad():
        want = trained(torch.arange(64))
    assert (int8(torch.arange(64)) - want).abs().max() <= 2 * want.abs().max() / 255


def test_compress_stores_a_model_trained_with_binary_ste():
    schema = Schema([Field("user", 16), Field("tags", 8, multi_valued=True)], label="y")
    model = build_model("dssm", schema, {"user": 1500, "tags": 40}, hidden=(8,), seed=0)
    model.embeddings.replace("user", make_embedding("binary_ste", 1500, 16, seed=3, init_std=0.2))
    stored, report = saec.compress(model, "binary", ratio=16)
    assert isinstance(stored.embeddings.tables["user"], BinaryEmbedding)
    assert isinstance(model.embeddings.tables["user"], BinarySTEEmbedding)  # the trained model is left as it was
    row = {t.path: t for t in report.tables}["embeddings.tables.user"]
    assert (row.kind, row.bytes_before, row.bytes_after) == ("BinarySTEEmbedding", 1500 * 16 * 4, 1500 * 4)
    ids = {"user": torch.tensor([0, 7, 1499]), "tags": torch.tensor([[1, 2], [3, 0], [5, 6]])}
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(stored(ids), model(ids), rtol=1e-3, atol=1e-4)
    with pytest.raises(SaecError, match="budget_bytes=5999 is too small for method 'binary'"):
        saec.compress(model, "binary", budget=5999)
