"""DPQ / MGQE (survey §4.2): the training form's nearest-centroid lookup against brute force, its straight-through
and codebook gradients, the frequency groups' centroid limits, the stored form's packed codes against the training
form, and the bench's flow (train at the stored form's budget-fitted structure, then saec.compress)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saec
from saec.data import Field, Schema
from saec.data.vocab import Vocabulary
from saec.errors import SaecError
from saec.models import build_compressed_model, build_model
from saec.nn.dpq import DPQEmbedding, DPQTrainEmbedding, frequency_groups, pack, packed_bytes
from saec.nn.registry import from_float, make_embedding, training_structure


def brute_codes(table: DPQTrainEmbedding, ids: torch.Tensor) -> np.ndarray:
    """Each sub-vector's nearest allowed centroid, by float64 squared distances over every centroid."""
    m, k, sub = table.codebooks.shape
    q = np.zeros((len(ids), m * sub))
    q[:, :table.embedding_dim] = table.Q.weight.detach().double().numpy()[ids.numpy()]
    q = q.reshape(len(ids), m, sub)
    c = table.codebooks.detach().double().numpy()
    dist = ((q[:, :, None, :] - c[None]) ** 2).sum(-1)  # (N, M, K)
    limit = np.asarray(table.group_centroids)[table.group.numpy()[ids.numpy()]]
    dist = np.where(np.arange(k)[None, None, :] >= limit[:, None, None], np.inf, dist)
    return dist.argmin(-1)


def randomised(table, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in table.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return table


@pytest.mark.parametrize("dim,subspaces,groups", [(8, 2, None), (10, 4, [16, 4, 1]), (6, 6, [16])])
def test_forward_is_each_sub_vectors_nearest_allowed_centroid(dim, subspaces, groups):
    counts = np.random.default_rng(1).integers(0, 100, 300)
    table = randomised(make_embedding("dpq_train", 300, dim, num_subspaces=subspaces, num_centroids=16,
                                      group_centroids=groups, counts=counts, seed=2))
    ids = torch.arange(300)
    codes = table.codes(ids)
    np.testing.assert_array_equal(codes.numpy(), brute_codes(table, ids))
    c = table.codebooks.detach()
    want = torch.cat([c[j, codes[:, j]] for j in range(subspaces)], 1)[:, :dim]
    assert torch.equal(table(ids), want)  # exactly the centroids (the STE adds Q - Q = 0)
    assert torch.equal(table.eval()(ids), want)


def test_gradients_reach_q_straight_through_and_the_chosen_centroids():
    table = randomised(make_embedding("dpq_train", 50, 8, num_subspaces=2, num_centroids=4, group_centroids=[4]))
    ids = torch.tensor([3, 3, 7, 49, 0])
    out = table(ids)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * g).sum().backward()
    want_q = torch.zeros(50, 8).index_add_(0, ids, g)  # the identity: each lookup's gradient to its row of Q
    torch.testing.assert_close(table.Q.weight.grad, want_q, rtol=0, atol=1e-6)
    codes = table.codes(ids)
    want_c = torch.zeros(2, 4, 4)
    for n in range(len(ids)):
        for j in range(2):
            want_c[j, codes[n, j]] += g[n, j * 4:(j + 1) * 4]
    torch.testing.assert_close(table.codebooks.grad, want_c, rtol=0, atol=1e-6)


def test_groups_come_from_counts_and_rare_ids_only_use_their_first_centroids():
    v = 400
    counts = np.random.default_rng(3).integers(0, 50, v).astype(float)  # many ties: broken by id
    rank = np.empty(v, dtype=int)
    rank[sorted(range(v), key=lambda i: (-counts[i], i))] = np.arange(v)
    np.testing.assert_array_equal(frequency_groups(v, 3, counts), rank * 3 // v)
    np.testing.assert_array_equal(frequency_groups(v, 4), np.arange(v) * 4 // v)  # no counts: id order
    table = randomised(make_embedding("dpq_train", v, 8, num_subspaces=4, num_centroids=32,
                                      group_centroids=[32, 8, 2], counts=counts, seed=1))
    np.testing.assert_array_equal(table.group.numpy(), rank * 3 // v)
    codes = table.codes(torch.arange(v)).numpy()
    limit = np.array([32, 8, 2])[rank * 3 // v]
    assert (codes < limit[:, None]).all()
    for g, n in enumerate([32, 8, 2]):
        assert codes[rank * 3 // v == g].max() == n - 1  # each group reaches its limit (random codebooks)
    unlimited = table.codebooks.detach()
    free = make_embedding("dpq_train", v, 8, num_subspaces=4, num_centroids=32, group_centroids=[32], counts=counts)
    free.load_state_dict({**table.state_dict(), "group": torch.zeros(v, dtype=torch.uint8)})
    assert torch.equal(free.codebooks.detach(), unlimited)
    assert (free.codes(torch.arange(v)).numpy() >= limit[:, None]).any()  # the limits bind


@pytest.mark.parametrize("dim,subspaces,groups,counts", [
    (16, 4, None, None), (16, 3, [64, 16, 2, 1], None), (10, 4, [64, 16], "shuffled"), (8, 8, [5, 3], None)])
def test_stored_form_looks_up_what_the_training_form_gave_in_its_packed_bytes(dim, subspaces, groups, counts):
    v = 1000
    if counts == "shuffled":
        counts = np.random.default_rng(0).permutation(v).astype(float)
    trained = randomised(make_embedding("dpq_train", v, dim, num_subspaces=subspaces, num_centroids=64,
                                        group_centroids=groups, counts=counts, seed=4), seed=5)
    ids = torch.arange(v)
    with torch.no_grad():
        want = trained.eval()(ids)
    stored = from_float("dpq", trained)
    assert isinstance(stored, DPQEmbedding) and torch.equal(stored(ids), want)
    assert torch.equal(stored.codebooks.detach(), trained.codebooks.detach()) and stored.codebooks.requires_grad
    limits = trained.group_centroids
    if counts is None:  # groups are id ranges: each group's codes at its own width
        sizes = np.bincount(trained.group.numpy(), minlength=len(limits))
        bits = sum(int(s) * subspaces * (n - 1).bit_length() for s, n in zip(sizes, limits))
    else:  # the group of an id is not stored: every code at K's width
        assert stored.layout == [[0, max(limits)]]
        bits = v * subspaces * (max(limits) - 1).bit_length()
    assert stored.codes.dtype == torch.uint8 and stored.codes.numel() == bits // 8 + 2
    assert stored.nbytes() == 4 * trained.codebooks.numel() + bits // 8 + 2
    assert stored.nbytes() == DPQEmbedding.footprint(v, dim, **stored.config()).nbytes
    assert stored.nbytes() == DPQEmbedding.footprint(v, dim, num_subspaces=subspaces, num_centroids=64,
                                                     group_centroids=groups, counts=counts).nbytes
    rebuilt = DPQEmbedding.from_config(v, dim, stored.config())
    rebuilt.load_state_dict(stored.state_dict())
    assert torch.equal(rebuilt(ids), want)
    with pytest.raises(SaecError, match="num_subspaces=1: the trained .* has num_subspaces="):
        from_float("dpq", trained, num_subspaces=1)


def test_packing_round_trips_codes_of_any_width():
    rng = np.random.default_rng(0)
    layout = [[0, 256], [5, 7], [9, 1], [12, 2], [20, 33]]
    v, m = 31, 3
    allowed = np.repeat([256, 7, 1, 2, 33], np.diff([0, 5, 9, 12, 20, v]))
    codes = rng.integers(0, allowed[:, None], (v, m))
    table = DPQEmbedding(v, 4, num_subspaces=m, num_centroids=256, group_centroids=[256], layout=layout)
    table.codes = torch.from_numpy(pack(codes, layout))
    assert table.codes.numel() == packed_bytes(layout, v, m) == (5 * 8 + 4 * 3 + 0 + 8 * 1 + 11 * 6) * m // 8 + 2
    np.testing.assert_array_equal(table.unpacked_codes(torch.arange(v)).numpy(), codes)
    np.testing.assert_array_equal(table.unpacked_codes(torch.tensor([30, 0, 9, 9])).numpy(), codes[[30, 0, 9, 9]])


def test_from_a_float_table_kmeans_under_the_group_limits():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g)
    weight = centers[torch.randint(0, 3, (2000,), generator=g)] + 1e-3 * torch.randn(2000, 8, generator=g)
    table = from_float("dpq", weight, num_subspaces=2, num_centroids=32, group_centroids=[32, 4])
    codes = table.unpacked_codes(torch.arange(2000)).numpy()
    assert (codes[1000:] < 4).all()  # the rarer half (no counts: the later ids) uses the first 4 centroids
    assert (table.to_dense() - weight).abs().max() < 0.01  # which k-means fit to every row: 3 clusters fit in 4
    assert table.layout == [[0, 32], [1000, 4]] and table.nbytes() == 2 * 32 * 4 * 4 + (1000 * 10 + 1000 * 4) // 8 + 2


def test_bench_flow_trains_the_budget_structure_then_compress_stores_it():
    schema = Schema([Field("user", 16), Field("tags", 8, multi_valued=True)], label="y")
    rng = np.random.default_rng(0)
    vocabs = {"user": Vocabulary.from_values(np.r_[rng.zipf(1.3, 20000) % 3000, np.arange(3000)]),
              "tags": Vocabulary.from_values(np.arange(40))}
    v = len(vocabs["user"])
    fitted = training_structure("dpq", v, 16, budget_bytes=v * 16 * 4 // 16, counts=vocabs["user"].counts)
    assert set(fitted) == {"num_subspaces"}
    model = build_compressed_model("dssm", schema, vocabs, "dpq", ratio=16, budget="bytes", min_rows=1000, hidden=(8,))
    trained = model.embeddings.tables["user"]
    assert isinstance(trained, DPQTrainEmbedding) and trained.num_subspaces == fitted["num_subspaces"]
    assert type(model.embeddings.tables["tags"]) is torch.nn.Embedding
    stored, report = saec.compress(model, "dpq", ratio=16, counts={"embeddings.tables.user": vocabs["user"].counts},
                                   tables=["embeddings.tables.user"])
    table = stored.embeddings.tables["user"]
    assert isinstance(table, DPQEmbedding) and model.embeddings.tables["user"] is trained  # left as it was
    row = {t.path: t for t in report.tables}["embeddings.tables.user"]
    assert row.kind == "DPQTrainEmbedding" and row.bytes_after == table.nbytes() <= v * 16 * 4 / 16
    assert len(table.layout) == 2  # the vocabulary ranks ids by frequency: the rare half is packed narrower
    ids = torch.arange(v)
    with torch.no_grad():
        assert torch.equal(table(ids), trained.eval()(ids))
    # a table trained with another structure is not silently re-quantized
    model.embeddings.replace("user", make_embedding("dpq_train", v, 16, num_subspaces=1, seed=3))
    with pytest.raises(SaecError, match="num_subspaces=.*keeps its structure"):
        saec.compress(model, "dpq", ratio=16, tables=["embeddings.tables.user"])


def test_nearest_centroid_ties_go_to_the_lower_index_within_each_groups_limit():
    from saec.nn.dpq import assign

    books = torch.tensor([[[1.0], [0.0], [0.0], [0.0]]])  # centroids 1-3 tie for a zero sub-vector
    q = torch.zeros(4, 1, 1)
    assert assign(q, books, torch.tensor([4, 2, 1, 3]), [4, 3, 2, 1]).tolist() == [[1], [1], [0], [1]]
