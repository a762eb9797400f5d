"""CTR models whose fields use the registry's methods: building at a ratio, training, saving, and the
MEmCom analyses (unique embeddings, App. A.4; lower precision, App. A.2)."""

import json
import shutil

import numpy as np
import pytest
import torch

from saec.data import Field, Schema
from saec.data.vocab import OOV_ID, Vocabulary
from saec.artifact import reseal
from saec.io import load_model, save_model
from saec.models import build_compressed_model, large_fields
from saec.nn.clustered import ClusteredEmbedding
from saec.nn.memcom import MEmComEmbedding, unique_embeddings
from saec.nn.quantize import quantize_rowwise, simulate_quantization
from saec.nn.registry import FROM_SCRATCH, METHODS, make_embedding
from saec.train.loop import TrainConfig, make_optimizer

SCHEMA = Schema((Field("user", 8), Field("item", 8), Field("zip", 8, multi_valued=True), Field("sex", 2)))
RNG = np.random.default_rng(0)
SIZES = {"user": 300, "item": 120, "zip": 90, "sex": 2}
VOCABS = {n: Vocabulary.from_values(np.r_[RNG.zipf(1.3, 4000) % v, np.arange(v)]) for n, v in SIZES.items()}
BATCH = {"user": torch.tensor([0, 5, OOV_ID, 299]), "item": torch.tensor([1, 119, 3, 0]),
         "zip": torch.tensor([[0, 89], [3, -2], [-2, -2], [7, 7]]), "sex": torch.tensor([0, 1, 1, 0])}


def model_for(method, ratio=4.0, **kw):
    return build_compressed_model("dssm", SCHEMA, VOCABS, method, ratio if METHODS[method].knobs else 1.0 if method == "full" else None,
                                  min_rows=50, hidden=(8,), **kw)


def test_large_fields_are_compressed_to_the_ratio_and_small_ones_stay_full():
    assert [len(VOCABS[n]) for n in SCHEMA.names] == [300, 120, 90, 2]
    assert large_fields(SCHEMA, VOCABS, 100) == ["user", "item"]
    model = model_for("memcom", ratio=4.0)
    tables = model.embeddings.tables
    for name in ("user", "item", "zip"):
        full = SIZES[name] * SCHEMA[name].dim
        assert isinstance(tables[name], MEmComEmbedding) and full / 4 - 8 < tables[name].param_count() <= full / 4
    assert type(tables["sex"]) is torch.nn.Embedding
    bytes_model = build_compressed_model("dssm", SCHEMA, VOCABS, "hashing", 8, budget="bytes", min_rows=50)
    assert bytes_model.embeddings.tables["user"].nbytes() <= 300 * 8 * 4 / 8
    with pytest.raises(ValueError, match="ratio must be a number >= 1"):
        model_for("memcom", ratio=0.5)
    with pytest.raises(ValueError, match="field 'user'.*too small"):
        model_for("qr", ratio=1000.0)
    with pytest.raises(ValueError, match="no vocabulary for fields"):
        build_compressed_model("dssm", SCHEMA, {"user": VOCABS["user"]}, "memcom", 2)
    with pytest.raises(ValueError, match="min_rows"):
        large_fields(SCHEMA, VOCABS, 0)


@pytest.mark.parametrize("method", FROM_SCRATCH)
def test_a_compressed_model_trains_with_sparse_gradients(method):
    model = model_for(method)
    opt = make_optimizer(model, TrainConfig())
    table = model.embeddings.tables["user"]
    before = {n: p.detach().clone() for n, p in table.named_parameters()}
    codes = {n: b.clone() for n, b in table.named_buffers() if not b.is_floating_point()}
    every_id = {n: torch.arange(300) % SIZES[n] for n in SCHEMA.names}  # every block of every table is read
    every_id["zip"] = every_id["zip"].unsqueeze(1)
    torch.nn.functional.binary_cross_entropy_with_logits(model(every_id), torch.rand(300).round()).backward()
    if "sparse" in METHODS[method].structure():  # every method with row tables keeps them sparse (DHE has none)
        assert any(p.grad.is_sparse for p in table.parameters())
    opt.step()
    assert all(not torch.equal(before[n], p.detach()) for n, p in table.named_parameters() if p.numel())
    if getattr(table, "updates_in_backward", False):  # lpt: its integer codes move in backward
        assert any(not torch.equal(codes[n], b) for n, b in table.named_buffers() if n in codes)


@pytest.mark.parametrize("method", FROM_SCRATCH)
def test_save_load_round_trip_for_every_method(method, tmp_path):
    model = model_for(method)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    model.eval()
    path = save_model(tmp_path / "m.pt", model, VOCABS)
    loaded, vocabs, _ = load_model(path)
    loaded.eval()
    for name in SCHEMA.names:
        a, b = model.embeddings.tables[name], loaded.embeddings.tables[name]
        assert type(a) is type(b)
        if hasattr(a, "config"):
            assert a.config() == b.config()
    assert torch.equal(model(BATCH), loaded(BATCH))
    assert list(vocabs) == SCHEMA.names


def test_clustered_tables_still_save_beside_method_tables(tmp_path):
    model = model_for("qr")
    model.embeddings.replace("sex", ClusteredEmbedding.from_codebook(torch.randn(1, 2), torch.zeros(2, dtype=torch.int32)))
    loaded, _, _ = load_model(save_model(tmp_path / "m.pt", model, VOCABS))
    assert isinstance(loaded.embeddings.tables["sex"], ClusteredEmbedding)
    assert torch.equal(model.eval()(BATCH), loaded.eval()(BATCH))


def test_damaged_and_mismatched_table_records(tmp_path):
    model = model_for("memcom")
    path = save_model(tmp_path / "m.pt", model, VOCABS)
    payload = json.loads((path / "model.json").read_text())

    def broken(edit, name, tables=None):  # a model folder whose model.json is edited and whose manifest agrees
        p = {**payload, "tables": {k: dict(v) for k, v in payload["tables"].items()} if tables is None else tables}
        edit(p["tables"])
        shutil.copytree(path, tmp_path / name)
        (tmp_path / name / "model.json").write_text(json.dumps(p))
        reseal(tmp_path / name)
        return tmp_path / name

    cases = [
        (lambda t: t["user"].update(method="lsh"), "unknown method 'lsh'"),
        (lambda t: t["user"].update(config={"buckets": 3}), "field 'user': cannot rebuild.*buckets"),
        (lambda t: t["user"].update(config=[1, 2]), "not a dict"),
        (lambda t: t["user"].pop("features"), "field 'user': cannot rebuild.*features"),
        (lambda t: t["user"].update(kind="pruned"), "unknown table kind 'pruned'"),
        (lambda t: t.update(age={"kind": "method"}), "field 'age'.*schema does not have"),
        (lambda t: t["user"].update(method="hashing"), "field 'user': cannot rebuild.*'bias'"),
        (lambda t: t["item"].update(config={**t["item"]["config"], "num_buckets": 3}),
         "the saved configuration rebuilds"),
    ]
    with pytest.raises(ValueError, match="field 'tables' is \\['user'\\], not of the expected type"):
        load_model(broken(lambda t: None, "list.pt", tables=["user"]))
    for i, (edit, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            load_model(broken(edit, f"b{i}.pt"))
    model.embeddings.tables["sex"] = torch.nn.EmbeddingBag(2, 2)
    with pytest.raises(TypeError, match="field 'sex': cannot save a table of type EmbeddingBag"):
        save_model(tmp_path / "x.pt", model, VOCABS)
    assert not (tmp_path / "x.pt").exists()


# -- App. A.4: unique embeddings -------------------------------------------------------------------
def brute_force_uniqueness(table, tol):
    V = table.V.weight.detach().double()[:, 0]
    W = table.W.weight.detach().double()[:, 0] if table.W is not None else torch.zeros_like(V)
    ids = torch.arange(table.num_embeddings)
    same_row = (ids[:, None] % table.num_buckets == ids[None, :] % table.num_buckets) & (ids[:, None] != ids[None, :])
    equal = ((V[:, None] - V[None, :]).abs() <= tol) & ((W[:, None] - W[None, :]).abs() <= tol) & same_row
    return (int(same_row.sum()) // 2, int((same_row & ~equal).sum()) // 2, int(same_row.any(1).sum()),
            int((same_row.any(1) & ~equal.any(1)).sum()))


@pytest.mark.parametrize("bias", [False, True])
def test_unique_embeddings_counts_like_brute_force(bias):
    table = make_embedding("memcom", 50, 4, num_buckets=7, bias=bias)
    with torch.no_grad():  # multipliers on a coarse grid, so some row-mates are equal and some only in V
        table.V.weight.copy_(torch.randint(0, 4, (50, 1)).float() * 1e-3)
        if bias:
            table.W.weight.copy_(torch.randint(0, 2, (50, 1)).float())
    got = unique_embeddings(table, tol=1e-5)
    want = brute_force_uniqueness(table, 1e-5)
    assert tuple(got) == want and 0 < got.distinct_pairs < got.pairs
    assert got.pair_fraction == want[1] / want[0] and got.feature_fraction == want[3] / want[2]
    assert tuple(unique_embeddings(table, tol=1e-5, chunk=3)) == want  # chunking changes nothing
    fresh = make_embedding("memcom", 50, 4, num_buckets=7, bias=bias)  # untrained: V = 1 everywhere
    assert unique_embeddings(fresh).distinct_pairs == 0 and unique_embeddings(fresh).unique_features == 0
    assert unique_embeddings(fresh, ids=[0, 7, 1]) == (1, 0, 2, 0)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 50\)"):
        unique_embeddings(fresh, ids=[50])
    with pytest.raises(TypeError, match="MEmComEmbedding"):
        unique_embeddings(make_embedding("hashing", 50, 4, num_buckets=7))


# -- App. A.2: lower precision ---------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_rowwise_quantization_matches_a_plain_reference(bits):
    w = torch.randn(9, 6, generator=torch.Generator().manual_seed(bits)).double()
    w[3] = 0.25  # a constant row is exact
    lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
    step = torch.where(hi > lo, (hi - lo) / (2**bits - 1), torch.ones_like(hi))
    want = torch.round((w - lo) / step).clamp(0, 2**bits - 1) * step + lo
    q = quantize_rowwise(w.float(), bits)
    assert torch.allclose(q.dequantize().double(), want, atol=1e-6)
    assert q.untyped_storage().nbytes() == 9 * -(-6 * bits // 8)  # packed codes
    assert torch.equal(q.dequantize()[3], torch.full((6,), 0.25))
    with pytest.raises(ValueError, match="bits"):
        quantize_rowwise(w.float(), 3)


def test_simulate_quantization_scopes_and_true_bytes():
    model = model_for("memcom", ratio=2.0, hyper={"bias": True})
    n_emb = sum(p.numel() for p in model.embeddings.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    same, size = simulate_quantization(model, 32)
    assert size == (4 * n_all, 4 * n_emb) and torch.equal(same(BATCH), model(BATCH))
    half, size = simulate_quantization(model, 16)
    assert size.embedding_nbytes == 2 * n_emb and size.nbytes == 2 * n_emb + 4 * (n_all - n_emb)
    assert all(torch.equal(p, p.half().float()) for p in half.embeddings.parameters())
    assert torch.equal(half.mlp[0].weight, model.mlp[0].weight)  # dense layers untouched
    q8, size = simulate_quantization(model, 8, scope="all")
    user, user8 = model.embeddings.tables["user"], q8.embeddings.tables["user"]
    assert torch.equal(user8.U.weight, quantize_rowwise(user.U.weight, 8).dequantize())  # per row
    assert len(torch.unique(user8.V.weight)) <= 256  # V: one scale for the whole column
    assert not torch.equal(q8.mlp[0].weight, model.mlp[0].weight)
    want = sum(p.shape[0] * (p.shape[1] + 8) if p.dim() == 2 and p.shape[1] > 1 else p.numel() + 8
               for p in model.embeddings.parameters())  # 1 byte a code, float32 scale and offset a row
    assert size.embedding_nbytes == want
    with pytest.raises(ValueError, match="bits"):
        simulate_quantization(model, 12)
    with pytest.raises(ValueError, match="scope"):
        simulate_quantization(model, 8, scope="dense")
