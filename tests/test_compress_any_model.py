"""saec.compress on a model saec did not build: a DLRM-style network of the user's own."""

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

import saec
from saec.compression import find_tables
from saec.errors import SaecError
from saec.nn.bag import CompressedEmbeddingBag, PaddedEmbedding
from saec.nn.base import CompressedEmbedding
from saec.nn.clustered import ClusteredEmbedding
from saec.nn.registry import POST_TRAINING

ROWS = {"user": 4000, "item": 3000, "city": 2000, "tiny": 20}
DIM = 8


class DLRM(nn.Module):
    """Bag-pooled user history (offsets), an item table in a ModuleDict used for two features (the item
    and the item last clicked), a padded city table, a tiny table, a dense MLP over everything."""

    def __init__(self):
        super().__init__()
        self.history = nn.EmbeddingBag(ROWS["user"], DIM, mode="sum")
        self.tables = nn.ModuleDict({"item": nn.Embedding(ROWS["item"], DIM),
                                     "tiny": nn.Embedding(ROWS["tiny"], DIM)})
        self.last_item = self.tables["item"]  # the same table reached from a second place
        self.cities = nn.ModuleList([nn.Embedding(ROWS["city"], DIM, padding_idx=0)])
        self.mlp = nn.Sequential(nn.Linear(5 * DIM + 2, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, history, offsets, weights, item, last, city, tiny, dense):
        h = self.history(history, offsets, per_sample_weights=weights)
        city_vec = self.cities[0](city).sum(1)  # (B, L) cities, 0 is padding
        x = torch.cat([h, self.tables["item"](item), self.last_item(last), city_vec, self.tables["tiny"](tiny), dense], 1)
        return self.mlp(x).squeeze(-1)


def batch(n, seed):
    g = np.random.default_rng(seed)
    lengths = g.integers(1, 6, n)
    zipf = lambda rows, size: torch.as_tensor(np.minimum(g.zipf(1.3, size) - 1, rows - 1))  # noqa: E731
    hist = zipf(ROWS["user"], int(lengths.sum()))
    return (hist, torch.as_tensor(np.r_[0, np.cumsum(lengths)[:-1]]), torch.as_tensor(g.random(len(hist)), dtype=torch.float32),
            zipf(ROWS["item"], n), zipf(ROWS["item"], n), zipf(ROWS["city"], (n, 3)), zipf(ROWS["tiny"], n),
            torch.as_tensor(g.random((n, 2)), dtype=torch.float32))


def clicks(model, n, seed):
    """Labels from a fixed random teacher, so that training has something to learn."""
    x = batch(n, seed)
    with torch.no_grad():
        y = (torch.sigmoid(model(*x) * 3) > torch.rand(n, generator=torch.Generator().manual_seed(seed))).float()
    return x, y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model, teacher = DLRM(), DLRM()
    with torch.no_grad():  # clustered tables: what trained embeddings look like
        for t in (model.history, model.tables["item"], model.cities[0]):
            centers = torch.randn(12, DIM)
            t.weight.copy_(centers[torch.randint(0, 12, (t.num_embeddings,))] + 0.01 * torch.randn(t.num_embeddings, DIM))
        model.cities[0].weight[0] = 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(5):
        x, y = clicks(teacher, 256, step)
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(*x), y).backward()
        opt.step()
    return model


HYPER = {"saec": {"k": 50, "eligibility": 10}, "saec_int8": {"k": 50, "eligibility": 10}, "pep": {"ratio": 2}}
TOLERANCE = {"saec": 0.05, "saec_int8": 0.05, "pq": 0.02, "fp16": 1e-3, "int8": 0.02, "int4": 0.2, "int2": 1.0, "binary": 1e-2, "memcom_int8": 0.05, "pep": 1e-5, "dpq": 0.05}


def binarized(w):
    return w.abs().mean(1, keepdim=True) * torch.where(w >= 0, 1.0, -1.0)


def memcom_fit(w, m=1000):
    """MEmCom's least-squares fit (U: the rows of ids 0..m-1; V: each row's projection on its U row)."""
    u = w[:m][torch.arange(len(w)) % m]
    return u * ((w * u).sum(1) / (u * u).sum(1).clamp(min=1e-30)).unsqueeze(1)


def magnitude_pruned(w, ratio=2):
    """The largest |w| kept (as many as 8 bytes each fit in 1/ratio of the float bytes), the rest zero."""
    keep = int(w.numel() * 4 / ratio // 8)
    flat = w.reshape(-1).clone()
    order = torch.sort(flat.abs(), descending=True, stable=True).indices
    flat[order[keep:]] = 0
    return flat.reshape(w.shape)


REFERENCE = {"binary": binarized, "memcom_int8": memcom_fit, "pep": magnitude_pruned}  # methods whose rows are not approximations of the float rows: the rows they stand for


def reference(trained, method):
    """The model the compressed one should compute: the trained one, or its large tables' rows as ``method`` defines them."""
    if method not in REFERENCE:
        return trained
    model = copy.deepcopy(trained)
    with torch.no_grad():
        for t in (model.history, model.tables["item"], model.cities[0]):
            t.weight.copy_(REFERENCE[method](t.weight))
    return model


@pytest.mark.parametrize("method", POST_TRAINING)
def test_every_post_training_method_compresses_a_users_dlrm(trained, method):
    before = copy.deepcopy(trained.state_dict())
    x = batch(64, 99)
    want = reference(trained, method)(*x).detach()
    model, report = saec.compress(trained, method, **HYPER.get(method, {}))
    # the original is untouched
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert isinstance(trained.history, nn.EmbeddingBag) and type(trained.tables["item"]) is nn.Embedding
    # every large table replaced in a form that takes its calls; the shared one once, still shared
    assert isinstance(model.history, CompressedEmbeddingBag) and model.history.mode == "sum"
    assert isinstance(model.tables["item"], CompressedEmbedding) and model.last_item is model.tables["item"]
    assert isinstance(model.cities[0], PaddedEmbedding) and model.cities[0].padding_idx == 0
    assert type(model.tables["tiny"]) is nn.Embedding  # fewer rows than min_rows
    paths = {t.path: t for t in report.tables}
    assert set(paths) == {"history", "tables.item", "tables.tiny", "cities.0"}
    assert paths["tables.item"].also_at == ["last_item"] and paths["tables.tiny"].method is None
    # outputs close within the method's tolerance
    got = model(*x).detach()
    assert (got - want).abs().max().item() < TOLERANCE[method], (got - want).abs().max()
    # the saved state_dict is as small as reported
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    dense = sum(p.numel() * 4 for n, p in model.named_parameters() if n.startswith("mlp."))
    tiny = ROWS["tiny"] * DIM * 4
    assert report.bytes_after == sum(t.bytes_after for t in report.tables)
    assert len(buf.getvalue()) - (report.bytes_after + dense) < 16 * 1024  # torch's file overhead only
    assert report.bytes_after < report.bytes_before and paths["tables.tiny"].bytes_after == tiny
    # state_dict round trip into another compressed copy
    other, _ = saec.compress(trained, method, **HYPER.get(method, {}))
    other.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert torch.equal(other(*x), model(*x))
    # one retraining step runs with any optimizer (what can train, trains)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    xb, yb = clicks(DLRM(), 128, 7)
    loss = nn.functional.binary_cross_entropy_with_logits(model(*xb), yb)
    loss.backward()
    opt.step()
    if method == "saec":  # the codebooks train, with Saec's averaged gradient
        assert model.tables["item"].codebook.grad is not None and model.tables["item"].grad_mode == "mean"


def test_saec_keeps_its_eligibility_rule_and_settings(trained):
    model, report = saec.compress(trained, "saec", k=30)  # eligibility 100 x 30 = 3000 rows
    by = {t.path: t for t in report.tables}
    assert by["history"].method == "saec" and by["tables.item"].method == "saec"
    assert by["cities.0"].method is None and "eligibility" in by["cities.0"].skipped
    assert by["history"].settings == {"k": 30, "grad_mode": "mean"} and by["history"].stats["trained_on"] == 3000
    assert isinstance(model.history.table, ClusteredEmbedding)


def test_budget_and_ratio_pick_k_per_table(trained):
    model, report = saec.compress(trained, "saec", ratio=16, eligibility=1)
    for t in report.tables:
        if t.method:
            assert t.bytes_after <= t.bytes_before / 16
            k = t.settings["k"]
            assert ClusteredEmbedding.footprint(t.rows, t.dim, k=k + 1).nbytes > t.bytes_before / 16
    _, by_path = saec.compress(trained, "saec", budget={"history": 6000, "last_item": 5000}, eligibility=1)
    got = {t.path: t.settings.get("k") for t in by_path.tables}
    assert got["history"] == max(k for k in range(1, 200) if ClusteredEmbedding.footprint(4000, DIM, k=k).nbytes <= 6000)
    assert got["tables.item"] is not None  # named through its second path


def test_counts_from_the_models_own_batches(trained):
    xs = [batch(32, s) for s in range(3)]
    counts = saec.count_ids(trained, xs)
    assert set(counts) == {"history", "tables.item", "cities.0", "tables.tiny"}
    hist_ids = torch.cat([x[0] for x in xs])
    assert np.array_equal(counts["history"], np.bincount(hist_ids.numpy(), minlength=ROWS["user"]))
    item_ids = torch.cat([torch.cat([x[3], x[4]]) for x in xs])  # the shared table counts both features
    assert np.array_equal(counts["tables.item"], np.bincount(item_ids.numpy(), minlength=ROWS["item"]))
    assert counts["cities.0"][0] == 0  # padding is not counted
    assert trained.training  # put back as it was
    model, report = saec.compress(trained, "saec", counts=counts, k=20, eligibility=10, top_n=500)
    assert {t.path: t.stats.get("trained_on") for t in report.tables}["history"] == 500


def test_bad_input_is_refused_before_any_work(trained):
    cases = [
        (dict(method="lsh"), "unknown method 'lsh'"),
        (dict(method="memcom"), "'memcom' is trained compressed from scratch"),
        (dict(method="saec", k=5000, tables=["history"]), r"table 'history' \(4000 x 8\): k must be an integer in \[1, 4000\], got 5000"),
        (dict(method="saec", k=100, tables=["cities.0"]), r"table 'cities.0'.*at least eligibility x k = 100 x 100 rows"),
        (dict(method="int8", tables=["mlp.0"]), "table 'mlp.0' is a Linear, not an nn.Embedding or nn.EmbeddingBag"),
        (dict(method="int8", tables=["towers"]), "tables names 'towers', which is no module of the model"),
        (dict(method="saec", budget=10, eligibility=1), "table 'history'.*budget_bytes=10 is too small"),
        (dict(method="saec", counts={"history": np.ones(5)}), "table 'history': counts must be 4000"),
        (dict(method="saec", counts={"users": np.ones(5)}), "counts names \\['users'\\], which are not embedding tables"),
        (dict(method="saec", counts=np.ones(5)), "counts must map table paths"),
        (dict(method="int8", top_n=3), "no hyperparameter 'top_n'"),
        (dict(method="saec", ratio=0.5), "ratio must be a number >= 1"),
        (dict(method="saec", min_rows=0), "min_rows must be a positive integer"),
        (dict(method="saec", k=5000, niter=0), "niter"),  # reported although every table is too small for k
        (dict(method="saec", eligibility=float("inf")), "eligibility"),
        (dict(method="saec", k=5000, colour=1), "no hyperparameter 'colour'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SaecError, match=message):
            saec.compress(trained, **kwargs)
    odd = nn.Sequential(nn.Embedding(2000, 7))
    with pytest.raises(SaecError, match="table '0'.*embedding_dim"):
        saec.compress(odd, "int4")
    with pytest.raises(SaecError, match="max_norm"):
        saec.compress(nn.Sequential(nn.Embedding(2000, 8, max_norm=1.0)), "int8")
    with pytest.raises(TypeError, match="compress takes the model that holds the tables"):
        saec.compress(nn.Embedding(2000, 8), "int8")
    assert find_tables(nn.Sequential(nn.Linear(2, 2))) == {}


def test_embedding_bag_modes_and_2d_input():
    torch.manual_seed(1)
    for mode in ("sum", "mean", "max"):
        m = nn.Sequential(nn.EmbeddingBag(3000, 8, mode=mode))
        ids = torch.randint(0, 3000, (16, 4))
        small, _ = saec.compress(m, "fp16")
        assert torch.allclose(small(ids), m(ids), atol=5e-3) and small[0].mode == mode


def test_named_tables_are_compressed_whatever_their_size_and_no_others(trained):
    model, report = saec.compress(trained, "int8", tables=["tables.tiny", "last_item"])  # any path of a shared table
    by = {t.path: t for t in report.tables}
    assert by["tables.tiny"].method == "int8" and by["tables.item"].method == "int8"  # tiny is under min_rows
    assert by["history"].method is None and by["history"].skipped == "not among the tables named"
    assert isinstance(model.history, nn.EmbeddingBag)
    _, unnamed = saec.compress(trained, "saec", k=5000, eligibility=1)  # too large a k for every table: all stay
    assert all(t.method is None and "eligibility x k = 1 x 5000" in t.skipped for t in unnamed.tables if t.rows >= 1000)


def test_command_line_compresses_a_saved_state_dict(trained, tmp_path, capsys):
    from saec.cli import main
    from saec.compression import load_tables, read_tables

    torch.save(trained.state_dict(), tmp_path / "sd.pt")
    out = tmp_path / "small"
    rc = main(["compress", "--state-dict", str(tmp_path / "sd.pt"), "--names", "history.weight,tables.item.weight",
               "--out", str(out), "--method", "int8"])
    printed = capsys.readouterr().out
    assert rc == 0 and "history" in printed and "int8" in printed
    record = read_tables(out)
    tables = load_tables(out)
    assert set(tables) == {"history", "tables.item"}
    assert "mlp.0.weight" in record["state_dict"] and "cities.0.weight" in record["state_dict"]
    ids = torch.arange(100)
    assert (tables["tables.item"](ids) - trained.tables["item"](ids)).abs().max() < 0.02
    assert (out.stat().st_mode & 0o777) == 0o777 & ~_umask()
    assert ((out / "tables.json").stat().st_mode & 0o777) == 0o666 & ~_umask()
    # a user's mistake is one line, exit 2, before any work
    assert main(["compress", "--state-dict", str(tmp_path / "sd.pt"), "--names", "mlp.0.bias", "--out",
                 str(tmp_path / "x.pt")]) == 2
    assert "not an embedding table's weight" in capsys.readouterr().err
    assert main(["compress", "--state-dict", str(tmp_path / "sd.pt"), "--names", "history.weight", "--out",
                 str(tmp_path / "x.pt"), "--method", "int8", "--k", "5"]) == 2
    assert "--k apply to the Saec methods" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("method", ["saec", "int8", "saec_int8"])
def test_command_line_compresses_a_saved_saec_model_with_any_post_training_method(tmp_path, capsys, method):
    from saec.cli import main
    from saec.data import Field, Schema, Vocabulary
    from saec.io import load_model, save_model
    from saec.models import build_model

    schema = Schema((Field("big", 8), Field("small", 4)))
    model = build_model("dssm", schema, {"big": 3000, "small": 10}, hidden=(8,))
    vocabs = {"big": Vocabulary.from_values(np.arange(3000)), "small": Vocabulary.from_values(np.arange(10))}
    save_model(tmp_path / "m.pt", model, vocabs)
    args = ["compress", "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "c.pt"), "--method", method]
    assert main(args + (["--k", "20", "--eligibility", "10"] if method.startswith("saec") else [])) == 0
    assert method in capsys.readouterr().out
    loaded, _, extra = load_model(tmp_path / "c.pt")
    assert type(loaded.embeddings.tables["big"]).__name__ != "Embedding"
    assert type(loaded.embeddings.tables["small"]) is nn.Embedding
    assert extra["compression"]["method"] == method
    ids = {"big": torch.arange(50), "small": torch.arange(50) % 10}
    model.eval(), loaded.eval()
    assert (loaded(ids) - model(ids)).abs().max() < 0.05
