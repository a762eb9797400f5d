"""Saec compression (§2.2-2.4, §3.2): clustering, masks, retraining gradients, growth, sizes, errors."""

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from saec.cli import main
from saec.cluster.kmeans import assign, assign_objective, kmeans, top_indices
from saec.cluster.saec import (ASSIGN_PHASES, CLUSTER_PHASES, FieldSize, SaecConfig, compress_field, compress_tables,
                               mask_dtype, size_report)
from saec.compression import compress_model
from saec.dump import load_compressed, load_dump, save_compressed
from saec.data import Field, Schema
from saec.io import load_model, save_model
from saec.models import build_model
from saec.nn import ClusteredEmbedding, EmbeddingBagCollection


def blobs(n=3000, d=5, centers=8, seed=0, spread=0.1):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d))
    return (c[rng.integers(0, centers, n)] + spread * rng.normal(size=(n, d))).astype(np.float32)


def lloyd(x, init, niter=50):
    """Plain numpy Lloyd's iterations: the reference."""
    c = init.astype(np.float64).copy()
    for _ in range(niter):
        labels = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(c)):
            if (labels == j).any():
                c[j] = x[labels == j].mean(0)
    return c, ((x - c[labels]) ** 2).sum()


def test_kmeans_objective_matches_numpy_lloyd():
    x = blobs()
    ours = kmeans(x, 8, "kmeans++", niter=50, seed=0)
    rng = np.random.default_rng(1)
    ref = min(lloyd(x, x[rng.choice(len(x), 8, replace=False)])[1] for _ in range(5))
    assert ours.objective <= ref * 1.02
    # and the objective is what it claims for the returned centroids
    d = ((x[:, None, :] - ours.centroids[None]) ** 2).sum(-1).min(1).sum()
    assert abs(ours.objective - d) / d < 1e-4


def test_topk_init_starts_from_the_most_frequent_rows():
    x = blobs(500, 4)
    counts = np.random.default_rng(0).integers(1, 1000, 500)
    top = top_indices(counts, 6)
    assert (np.diff(counts[top]) <= 0).all() and set(top) == set(np.argsort(-counts)[:6])
    one_step = kmeans(x, 6, "topk", niter=1, counts=counts).centroids
    ref, _ = lloyd(x, x[top], niter=1)
    assert np.allclose(one_step, ref, atol=1e-5)


@pytest.mark.parametrize("init", ["random", "kmeans++", "topk"])
def test_every_init_is_seeded_and_clusters_well(init):
    x = blobs(2000, 6, centers=5, spread=0.05)
    a, b = kmeans(x, 10, init, seed=3), kmeans(x, 10, init, seed=3)
    assert np.array_equal(a.centroids, b.centroids)
    assert not np.array_equal(a.centroids, kmeans(x, 10, init, seed=4).centroids) or init == "topk"
    assert a.objective < 0.05 * ((x - x.mean(0)) ** 2).sum()  # every blob got a centroid


def test_eligibility_threshold():
    cfg = SaecConfig(k=10, eligibility=5)
    x = blobs(49, 3)
    assert not compress_field("small", x, None, cfg).size.clustered
    r = compress_field("big", blobs(50, 3), None, cfg)
    assert r.size.clustered and r.codebook.shape == (10, 3) and r.mask.dtype == np.uint8


def test_fast_clustering_trains_on_top_n_and_assigns_everyone_to_the_nearest_centroid():
    x = blobs(5000, 4, centers=12)
    counts = np.random.default_rng(2).zipf(1.5, 5000)
    cfg = SaecConfig(k=10, eligibility=10, top_n=300)
    r = compress_field("f", x, counts, cfg)
    assert r.trained_on == 300
    brute = ((x[:, None, :] - r.codebook[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(r.mask, brute)
    assert np.array_equal(assign(x, r.codebook, chunk=7), brute)  # chunking changes nothing
    # k-means saw only the top_n rows: changing the tail leaves the codebook alone
    tail = np.setdiff1d(np.arange(5000), top_indices(counts, 300))
    y = x.copy()
    y[tail] += 5.0
    assert np.array_equal(compress_field("f", y, counts, cfg).codebook, r.codebook)
    vanilla = compress_field("f", x, counts, SaecConfig(k=10, eligibility=10, top_n=300, fast=False))
    assert vanilla.trained_on == 5000
    # the objective (taken from the assignment's search) is the top_n rows' squared distances, by numpy
    top = x[top_indices(counts, 300)]
    ref = ((top[:, None, :] - r.codebook[None]) ** 2).sum(-1).min(1).sum()
    assert abs(r.objective - ref) / ref < 1e-4
    chunked, objective = assign_objective(x, r.codebook, np.sort(top_indices(counts, 300)), chunk=7)
    assert np.array_equal(chunked, brute) and abs(objective - ref) / ref < 1e-4
    everyone = ((x[:, None, :] - vanilla.codebook[None]) ** 2).sum(-1).min(1).sum()
    assert abs(vanilla.objective - everyone) / everyone < 1e-4


@pytest.mark.parametrize("fast", [True, False])
def test_the_clustering_times_its_own_phases(fast, tmp_path):
    x = blobs(n=5000, d=6)
    counts = np.random.default_rng(1).zipf(1.5, 5000)
    cfg = SaecConfig(k=10, eligibility=10, top_n=300, fast=fast)
    start = time.perf_counter()
    r = compress_field("f", x, counts, cfg)
    wall = time.perf_counter() - start
    assert tuple(r.phases) == CLUSTER_PHASES + ASSIGN_PHASES
    assert all(v >= 0 for v in r.phases.values()) and r.phases["kmeans_s"] > 0 and r.phases["search_s"] > 0
    assert r.cluster_s == pytest.approx(sum(r.phases[p] for p in CLUSTER_PHASES), abs=1e-9)
    assert r.assign_s == pytest.approx(sum(r.phases[p] for p in ASSIGN_PHASES), abs=1e-9)
    assert sum(r.phases.values()) <= wall
    # a chunked search adds up every chunk's seconds
    seconds = {}
    start = time.perf_counter()
    assign_objective(x, r.codebook, None, chunk=7, seconds=seconds)
    assert 0 < seconds["search_s"] <= time.perf_counter() - start
    # the manifest of a compressed table set carries them; a field left full has none
    small = x[:50]
    fields = compress_tables({"f": x, "small": small}, {"f": counts}, cfg)
    assert fields["small"].phases == {}
    manifest = json.loads((save_compressed(tmp_path / "c", fields, {"f": x, "small": small}, cfg)
                           / "manifest.json").read_text())
    assert manifest["fields"]["f"]["phases"] == fields["f"].phases


def test_mask_dtype_is_the_smallest_that_holds_k():
    assert [mask_dtype(k) for k in (1, 256, 257, 65536, 65537)] == [
        np.uint8, np.uint8, np.uint16, np.uint16, np.int32]


def test_averaged_gradient_rule_by_hand():
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = np.array([0, 0, 1, 0])
    ids = torch.tensor([0, 0, 1, 3, 2])
    upstream = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]])
    grads = {}
    for mode in ("mean", "sum"):
        emb = ClusteredEmbedding.from_codebook(codebook, mask, grad_mode=mode)
        (emb(ids) * upstream).sum().backward()
        grads[mode] = emb.codebook.grad
    g = {0: upstream[0] + upstream[1], 1: upstream[2], 3: upstream[3], 2: upstream[4]}  # per feature
    # cluster 0 holds features 0, 1, 3 (all in the batch); cluster 1 holds feature 2
    assert torch.allclose(grads["mean"][0], (g[0] + g[1] + g[3]) / 3)
    assert torch.allclose(grads["mean"][1], g[2])
    assert torch.allclose(grads["sum"][0], g[0] + g[1] + g[3]) and torch.allclose(grads["sum"][1], g[2])


def test_mean_rule_counts_only_real_features_inside_the_container():
    schema = Schema((Field("a", 2),))
    emb = EmbeddingBagCollection(schema, {"a": 4})
    emb.replace("a", ClusteredEmbedding.from_codebook(torch.zeros(2, 2), np.array([0, 0, 1, 0])))
    out = emb({"a": torch.tensor([0, -1, -1, 1])})[0]  # two OOV positions must not count as members
    (out * torch.tensor([[1.0, 1.0], [5.0, 5.0], [5.0, 5.0], [3.0, 3.0]])).sum().backward()
    assert torch.allclose(emb.tables["a"].codebook.grad[0], torch.tensor([2.0, 2.0]))  # (1 + 3) / 2


def test_new_features_get_the_nearest_centroid_or_the_largest_cluster():
    emb = ClusteredEmbedding.from_codebook(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), np.array([1, 1, 0]))
    emb.grow(5, vectors=np.array([[9.0, 9.0], [0.5, -0.5]]))
    assert emb.mask.tolist() == [1, 1, 0, 1, 0]
    emb.grow(7)  # no trained vectors: the cluster with most members (1)
    assert emb.mask.tolist()[5:] == [1, 1] and emb(torch.tensor([6])).tolist() == [[10.0, 10.0]]
    with pytest.raises(ValueError, match="shape"):
        emb.grow(8, vectors=np.zeros((1, 3)))
    container = EmbeddingBagCollection(Schema((Field("a", 2),)), {"a": 7})
    container.replace("a", emb)
    container.grow("a", 9, vectors=np.array([[0.0, 0.1], [10.0, 9.0]]))
    assert container.num_embeddings("a") == 9 and emb.mask.tolist()[7:] == [0, 1]


def test_size_accounting_reproduces_the_papers_27_7x():
    # Saec §3.2: 1.24e8 vectors of length 9 -> 1.04e6 centroids (k = 100 per field) plus 1-byte masks.
    n_fields = 10_400  # 1.04e6 / 100
    sizes = [FieldSize(f"f{i}", 124_000_000 // n_fields + (i < 124_000_000 % n_fields), 9, 100) for i in range(n_fields)]
    report = size_report(sizes)
    assert report.total("vectors_before") == 124_000_000 and report.total("vectors_after") == 1_040_000
    assert report.total("bytes_before") == 124_000_000 * 36
    assert report.total("bytes_after") == 124_000_000 * 1 + 1_040_000 * 36
    assert round(report.ratio, 1) == 27.7


def test_reported_bytes_are_the_real_tensor_bytes():
    for k in (100, 300):
        r = compress_field("f", blobs(40 * k, 3, centers=20), None, SaecConfig(k=k, eligibility=40))
        emb = ClusteredEmbedding.from_codebook(r.codebook, r.mask)
        real = sum(t.numel() * t.element_size() for t in [*emb.parameters(), *emb.buffers()])
        assert real == r.size.bytes_after


def test_compress_model_and_save_load_round_trip(tmp_path):
    schema = Schema((Field("big", 4), Field("small", 3, multi_valued=True)))
    model = build_model("deepfm", schema, {"big": 2000, "small": 50}, hidden=(8,))
    counts = {"big": np.arange(2000)[::-1].copy()}
    compressed, fields = compress_model(model, counts, SaecConfig(k=16, eligibility=100))
    assert isinstance(compressed.embeddings.tables["big"], ClusteredEmbedding)
    assert isinstance(compressed.embeddings.tables["small"], nn.Embedding) and not fields["small"].size.clustered
    assert isinstance(model.embeddings.tables["big"], nn.Embedding)  # the original is untouched
    ids = {"big": torch.tensor([0, 1999, -1]), "small": torch.tensor([[1, -2], [3, 4], [-1, -2]])}
    from saec.data import Vocabulary

    vocabs = {"big": Vocabulary.from_values(np.arange(2000)), "small": Vocabulary.from_values(np.arange(50))}
    path = save_model(tmp_path / "c.pt", compressed, vocabs)
    loaded, _, _ = load_model(path)
    assert loaded.embeddings.tables["big"].mask.dtype == torch.uint8
    compressed.eval(), loaded.eval()
    assert torch.equal(compressed(ids), loaded(ids))


def test_raw_table_dump_from_the_command_line(tmp_path, capsys):
    dump = tmp_path / "dump"
    dump.mkdir()
    np.save(dump / "user.npy", blobs(3000, 9))
    np.save(dump / "user.counts.npy", np.random.default_rng(0).zipf(1.3, 3000))
    np.save(dump / "city.npy", blobs(40, 17))
    rc = main(["compress", "--tables", str(dump), "--out", str(tmp_path / "out"), "--k", "20", "--eligibility", "100",
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "user" in out and "city" in out
    modules = load_compressed(tmp_path / "out")
    assert isinstance(modules["user"], ClusteredEmbedding) and modules["user"].k == 20
    assert isinstance(modules["city"], nn.Embedding) and modules["city"].num_embeddings == 40
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["total"]["bytes_after"] == 20 * 9 * 4 + 3000 + 40 * 17 * 4
    # an existing output is not overwritten by accident
    assert main(["compress", "--tables", str(dump), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err


def test_bad_input_gives_clear_errors(tmp_path):
    x = blobs(1000, 4)
    with pytest.raises(ValueError, match="larger than"):
        ClusteredEmbedding.from_float(nn.Embedding(50, 4), k=100)
    bad = x.copy()
    bad[700, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compress_field("f", bad, None, SaecConfig(k=5, eligibility=2))
    with pytest.raises(ValueError, match="row 700"):
        compress_field("f", bad, None, SaecConfig(k=5, eligibility=2, top_n=100))  # NaN in the tail
    with pytest.raises(ValueError, match="counts"):
        compress_field("f", x, np.ones(999), SaecConfig(k=5, eligibility=2))
    with pytest.raises(ValueError, match="2-D"):
        compress_field("f", x.ravel(), None, SaecConfig(k=5))
    with pytest.raises(ValueError, match="no table"):
        compress_tables({"a": x}, {"b": np.ones(1000)}, SaecConfig(k=5))
    with pytest.raises(ValueError, match="unknown fields"):
        compress_model(build_model("dssm", Schema((Field("a", 4),)), {"a": 10}), {"zz": np.ones(10)}, SaecConfig())
    for kwargs, word in (({"k": 0}, "k"), ({"init": "pca"}, "init"), ({"eligibility": 0}, "eligibility"),
                         ({"k": 10, "top_n": 5}, "top_n")):
        with pytest.raises(ValueError, match=word):
            SaecConfig(**kwargs)
    with pytest.raises(ValueError, match="mask values"):
        ClusteredEmbedding.from_codebook(torch.zeros(3, 2), np.array([0, 3]))
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "user.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="user.npy"):
        load_dump(dump)


def test_saec_flow_on_movielens(ml100k):
    from saec.pipeline.flow import run_saec
    from saec.train.loop import TrainConfig

    result = run_saec(ml100k, SaecConfig(k=20, eligibility=5), TrainConfig(epochs=1, progress=False), hidden=(32,))
    assert result.sizes.ratio > 5
    assert {n for n, f in result.fields.items() if f.size.clustered} == {"user", "item", "zip"}
    full, saec = result.metrics["full"], result.metrics["saec"]
    assert saec["auc"] > 0.65 and abs(saec["auc"] - full["auc"]) < 0.03


def test_drop_in_for_nn_embedding_in_a_plain_model():
    class TwoTower(nn.Module):
        def __init__(self):
            super().__init__()
            self.user = nn.Embedding(3000, 8)
            self.head = nn.Linear(8, 1)

        def forward(self, ids):
            return self.head(self.user(ids)).squeeze(-1)

    torch.manual_seed(0)
    model = TwoTower()
    model.user = ClusteredEmbedding.from_float(model.user, k=32, counts=np.arange(3000)[::-1].copy())
    ids = torch.tensor([[0, 5], [2999, 7]])
    out = model(ids)
    assert out.shape == (2, 2)
    out.sum().backward()
    assert model.user.codebook.grad is not None and model.user.num_embeddings == 3000


def test_retraining_continues_the_full_models_adagrad_state():
    from saec.pipeline.flow import carry_optimizer
    from saec.train.loop import TrainConfig, make_optimizer

    schema = Schema((Field("big", 3), Field("small", 2)))
    cfg = TrainConfig()
    model = build_model("dssm", schema, {"big": 400, "small": 5}, hidden=(4,))
    opt = make_optimizer(model, cfg)
    ids = {"big": torch.arange(400), "small": torch.arange(400) % 5}
    for _ in range(2):
        opt.zero_grad()
        model(ids).pow(2).sum().backward()
        opt.step()
    for mode in ("mean", "sum"):
        compressed, fields = compress_model(model, None, SaecConfig(k=4, eligibility=10), grad_mode=mode)
        carried = carry_optimizer(model, opt, compressed, cfg)
        full_mlp = opt.state[model.mlp[0].weight]["sum"]
        assert torch.equal(carried.state[compressed.mlp[0].weight]["sum"], full_mlp)
        small = compressed.embeddings.tables["small"].weight
        assert torch.equal(carried.state[small]["sum"].to_dense(), opt.state[model.embeddings.tables["small"].weight]["sum"].to_dense())
        acc = opt.state[model.embeddings.tables["big"].weight]["sum"].to_dense()
        mask = torch.as_tensor(fields["big"].mask.astype(np.int64))
        members = acc[mask == 1]
        want = members.mean(0) if mode == "mean" else members.sum(0)
        assert torch.allclose(carried.state[compressed.embeddings.tables["big"].codebook]["sum"][1], want)


def test_retraining_toward_the_full_model_fits_its_predictions_not_the_labels():
    import copy

    from saec.data.dataset import CTRData
    from saec.pipeline.flow import distill_targets, retrain, run_saec
    from saec.train.loop import TrainConfig, predict

    schema = Schema((Field("big", 3), Field("small", 2)))
    model = build_model("dssm", schema, {"big": 400, "small": 5}, hidden=(4,))
    rng = np.random.default_rng(0)
    data = CTRData({"big": rng.integers(0, 400, 2000), "small": rng.integers(0, 5, 2000)},
                   rng.integers(0, 2, 2000).astype(np.float32))
    soft = distill_targets(model, data)
    assert np.allclose(soft.labels, predict(model, data)) and soft.ids is data.ids
    # a model retrained toward its own predictions has (up to rounding) zero gradients: plain SGD leaves it
    # where it was, while fitting the labels moves it
    cfg = TrainConfig(optimizer="sgd", lr=0.1, progress=False)
    same, fitted = copy.deepcopy(model), copy.deepcopy(model)
    retrain(same, data, cfg, full=model)
    retrain(fitted, data, cfg)
    moved = [(a - b).abs().max().item() for a, b in zip(same.parameters(), model.parameters())]
    assert max(moved) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(fitted.parameters(), model.parameters())) > 1e-3
    with pytest.raises(ValueError, match="retrain_targets"):
        run_saec(None, SaecConfig(k=4), cfg, retrain_targets="teacher")


def test_loading_a_compressed_model_allocates_no_full_table_for_compressed_fields(tmp_path, monkeypatch):
    import saec.nn.collection as collection
    from saec.data.vocab import Vocabulary
    from saec.io import load_model, save_model

    schema = Schema((Field("big", 3), Field("small", 2)))
    model = build_model("dssm", schema, {"big": 5000, "small": 5}, hidden=(4,))
    compressed, _ = compress_model(model, None, SaecConfig(k=4, eligibility=10))
    vocabs = {"big": Vocabulary.from_values(range(5000)), "small": Vocabulary.from_values(range(5))}
    path = save_model(tmp_path / "m.pt", compressed, vocabs)
    made = []
    real = collection.new_table
    monkeypatch.setattr(collection, "new_table", lambda n, *a: made.append(n) or real(n, *a))
    loaded, _, _ = load_model(path)
    assert made == [5]  # only the small field's full table
    assert isinstance(loaded.embeddings.tables["big"], ClusteredEmbedding)
    ids = {"big": torch.arange(10), "small": torch.arange(10) % 5}
    assert torch.equal(loaded(ids), compressed(ids))
    with pytest.raises(ValueError, match="field 'big': the given table is 3 x 3"):
        collection.EmbeddingBagCollection(schema, {"big": 5000, "small": 5}, tables={"big": nn.Embedding(3, 3)})
    with pytest.raises(ValueError, match="unknown fields"):
        collection.EmbeddingBagCollection(schema, {"big": 5000, "small": 5}, tables={"huge": nn.Embedding(3, 3)})
