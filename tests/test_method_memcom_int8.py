"""MEmCom with an int8 U (survey §5.2 hybrid): the stored form of a trained MEmCom table against that table, its
least-squares fit of a float table against a numpy reference, and the training form sized for the stored budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saec
from saec.data import Field, Schema
from saec.data.vocab import Vocabulary
from saec.errors import SaecError
from saec.models import build_compressed_model
from saec.nn.memcom import MEmComEmbedding
from saec.nn.memcom_int8 import MEmComInt8Embedding
from saec.nn.registry import from_float, make_embedding


@pytest.mark.parametrize("bias", [False, True])
def test_stored_form_of_a_trained_memcom_is_that_table_up_to_int8_and_float16(bias):
    trained = make_embedding("memcom", 500, 16, num_buckets=40, bias=bias, seed=1, init_std=0.5)
    with torch.no_grad():
        trained.V.weight.normal_(1.0, 0.3, generator=torch.Generator().manual_seed(2))
        if bias:
            trained.W.weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(3))
    stored = from_float("memcom_int8", trained)
    assert isinstance(stored, MEmComInt8Embedding) and (stored.num_buckets, stored.bias) == (40, bias)
    assert stored.U.packed.dtype == torch.uint8 and stored.V.dtype == torch.float16 and stored.param_count() == 0
    assert stored.nbytes() == 40 * (16 + 8) + 500 * 2 * (2 if bias else 1)
    ids = torch.arange(500)
    with torch.no_grad():
        want = trained(ids)
    span = (trained.U.weight.max(1).values - trained.U.weight.min(1).values).max().item()
    v_max = trained.V.weight.abs().max().item()
    # U's int8 error times |V|, plus V's and W's float16 rounding (relative 2^-11)
    bound = span / 255 / 2 * 1.01 * v_max + want.abs().max().item() * 2**-10 + 1e-4
    assert (stored(ids) - want).abs().max().item() <= bound
    with pytest.raises(SaecError, match="below the trained MEmCom table's 40 rows"):
        from_float("memcom_int8", trained, num_buckets=39)
    with pytest.raises(SaecError, match="bias"):
        from_float("memcom_int8", trained, num_buckets=40, bias=not bias)


def test_fit_of_a_float_table_is_the_least_squares_projection_on_each_buckets_top_row():
    g = np.random.default_rng(0)
    w = g.normal(size=(300, 8)).astype(np.float32)
    counts = g.integers(0, 100, 300).astype(np.float64)
    table = from_float("memcom_int8", torch.from_numpy(w), num_buckets=25, counts=counts)
    bucket = np.arange(300) % 25
    rep = np.array([min(np.flatnonzero(bucket == j), key=lambda i: (-counts[i], i)) for j in range(25)])
    u = w[rep][bucket].astype(np.float64)
    v = (w * u).sum(1) / (u * u).sum(1)
    want = u * v[:, None]
    got = table(torch.arange(300)).numpy()
    assert np.abs(got - want).max() <= np.abs(w).max() * 2 / 255 + 1e-3
    np.testing.assert_allclose(got[rep], w[rep], atol=np.abs(w).max() * 2 / 255 + 1e-3)  # representatives come back


def test_the_training_form_is_sized_for_the_stored_budget_and_compresses_into_it():
    schema = Schema([Field("user", 16), Field("tags", 8, multi_valued=True)], label="y")
    vocabs = {"user": Vocabulary.from_values(np.arange(2400)), "tags": Vocabulary.from_values(np.arange(30))}
    model = build_compressed_model("dssm", schema, vocabs, "memcom_int8", ratio=16, budget="bytes", hidden=(8,))
    form = model.embeddings.tables["user"]
    assert isinstance(form, MEmComEmbedding)
    budget = 2400 * 16 * 4 // 16
    assert MEmComInt8Embedding.footprint(2400, 16, num_buckets=form.num_buckets).nbytes <= budget
    assert MEmComInt8Embedding.footprint(2400, 16, num_buckets=form.num_buckets + 1).nbytes > budget
    stored, report = saec.compress(model, "memcom_int8", ratio=16)
    assert isinstance(stored.embeddings.tables["user"], MEmComInt8Embedding)
    assert stored.embeddings.tables["user"].num_buckets == form.num_buckets
    assert {t.path: t for t in report.tables}["embeddings.tables.user"].bytes_after <= budget
    with pytest.raises(SaecError, match="pass budget='bytes'"):
        build_compressed_model("dssm", schema, vocabs, "memcom_int8", ratio=16, hidden=(8,))
