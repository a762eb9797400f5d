"""CCE (Tsang & Ahle): a hashed compositional table before clustering, k-means centroids right after one, the
clustering schedule (training mode only, exactly at the scheduled calls), the index's dtype and bytes, seeding,
the optimizer kept working, and save/load keeping the clustered index."""

import numpy as np
import pytest
import torch

from saec.cluster.kmeans import assign, kmeans
from saec.errors import SaecError
from saec.nn.base import generator, hash_coefficients, seeded_table, universal_hash
from saec.nn.cce import CCEEmbedding, clustering_seeds, column_widths
from saec.nn.registry import fit_hyperparameters, make_embedding

V, D = 300, 7


def randomised(table, seed=1):
    with torch.no_grad():
        for p in table.parameters():
            p.normal_(0, 1, generator=torch.Generator().manual_seed(seed))
    return table


def reference(table, ids):
    """concat_j C_j[index_j[i]] + H_j[h_j(i)] by hand."""
    parts = []
    for j in range(table.columns):
        a, b = (int(x) for x in table.hash_coeffs[j])
        h = (a * ids + b) % (2**31 - 1) % table.k
        parts.append(table.clusters[j].weight[table.index[ids, j].long()] + table.hashed[j].weight[h])
    return torch.cat(parts, dim=1)


def test_before_clustering_a_hashed_compositional_table():
    table = CCEEmbedding(V, D, k=11, columns=3, seed=2).eval()
    assert column_widths(D, 3) == [3, 2, 2] and [t.weight.shape[1] for t in table.clusters] == [3, 2, 2]
    ids = torch.arange(V)
    # the index holds a second seeded hash of every id before any clustering
    g = universal_hash(ids, _first_coeffs(2, 3), 11).T
    assert torch.equal(table.index.long(), g)
    torch.testing.assert_close(table(ids), reference(table, ids), rtol=0, atol=0)


def _first_coeffs(seed, c, k=11):
    """The index's hash before clustering: drawn after the 2c tables and the residual hash (the constructor's order)."""
    gen = generator(seed)
    for w in column_widths(D, c) * 2:
        seeded_table(gen, k, w, 0.01, False)
    hash_coefficients(gen, c)
    return hash_coefficients(gen, c)


@pytest.mark.parametrize("columns", [1, 3])
def test_a_clustering_makes_every_row_its_kmeans_centroid(columns):
    table = randomised(CCEEmbedding(V, D, k=9, columns=columns, seed=4, niter=10))
    ids = torch.arange(V)
    with torch.no_grad():
        before = table.eval()(ids)
    old_coeffs = table.hash_coeffs.clone()
    table.cluster()
    assert table.clusterings == 1 and not torch.equal(table.hash_coeffs, old_coeffs)
    seeds = clustering_seeds(4, 1, columns)
    start = 0
    for j, w in enumerate(table.widths):  # V <= 256 k: k-means saw every id, in id order
        x = before[:, start : start + w].numpy()
        want = kmeans(x, 9, init="random", niter=10, seed=seeds[j + 1], objective=False).centroids
        np.testing.assert_array_equal(table.clusters[j].weight.detach().numpy(), want)
        np.testing.assert_array_equal(table.index[:, j].numpy(), assign(x, want))
        assert not table.hashed[j].weight.detach().any()  # the fresh hashed table starts at zero
        start += w
    with torch.no_grad():
        after = table(ids)
    centroid_rows = torch.cat([table.clusters[j].weight[table.index[:, j].long()] for j in range(columns)], 1)
    torch.testing.assert_close(after, centroid_rows, rtol=0, atol=0)
    torch.testing.assert_close(after, reference(table, ids), rtol=0, atol=0)
    assert ((after - before) ** 2).sum() < (before - before.mean(0)).pow(2).sum()  # better than one centroid


def test_kmeans_trains_on_a_sample_and_assigns_every_id():
    table = randomised(CCEEmbedding(V, D, k=4, sample_per_centroid=10, niter=5))  # 40 of the 300 ids
    with torch.no_grad():
        before = table.eval()(torch.arange(V)).numpy()
    table.cluster()
    cent = table.clusters[0].weight.detach().numpy()
    np.testing.assert_array_equal(table.index[:, 0].numpy(), assign(before, cent))
    rng = np.random.default_rng(clustering_seeds(0, 1, 1)[1])
    sample = np.sort(rng.choice(V, 40, replace=False))
    want = kmeans(before[sample], 4, init="random", niter=5, seed=clustering_seeds(0, 1, 1)[1], objective=False)
    np.testing.assert_array_equal(cent, want.centroids)


@pytest.mark.parametrize("k,dtype", [(7, torch.uint8), (256, torch.uint8), (257, torch.int16),
                                     (32767, torch.int16), (32768, torch.int32)])
def test_index_dtype_by_k_and_bytes_equal_the_footprint(k, dtype):
    v = 40000
    fp = CCEEmbedding.footprint(v, 2, k=k, columns=2)
    itemsize = {torch.uint8: 1, torch.int16: 2, torch.int32: 4}[dtype]
    assert fp.nbytes == 4 * 2 * k * 2 + v * 2 * itemsize + 2 * 16 + 24
    if k in (7, 257):  # build only the small ones
        table = CCEEmbedding(v, 2, k=k, columns=2)
        assert table.index.dtype == dtype and table.index.shape == (v, 2)
        assert (table.param_count(), table.nbytes()) == tuple(fp)
        table.cluster()
        assert table.index.dtype == dtype and (table.param_count(), table.nbytes()) == tuple(fp)


def test_budget_counts_the_index():
    # 1/16 of float32 at 16 dims: 4 bytes per id, of which the uint8 index of one column takes 1
    v = 6000
    hyper = fit_hyperparameters("cce", v, 16, budget_bytes=v * 4)
    assert hyper["k"] == (v * 4 - v * 1 - 16 - 24) // (2 * 16 * 4) == 140
    # 8 dims: 2 bytes per id, half of it the index
    assert fit_hyperparameters("cce", v, 8, budget_bytes=v * 2)["k"] == (v * 2 - v - 40) // (2 * 8 * 4)
    # 10x the bytes: k past 256 needs an int16 index, which the budget pays for
    k = fit_hyperparameters("cce", v, 16, budget_bytes=v * 40)["k"]
    assert k == (v * 40 - v * 2 - 40) // (2 * 16 * 4) and CCEEmbedding.footprint(v, 16, k=k).nbytes <= v * 40
    with pytest.raises(SaecError, match="too small"):
        make_embedding("cce", v, 8, budget_bytes=v * 2, columns=2)  # two uint8 columns alone take 2 bytes


def test_clusters_exactly_at_the_scheduled_training_calls_only():
    table = CCEEmbedding(V, D, k=5, cluster_every=3, max_clusterings=2, niter=2)
    ids = torch.arange(10)
    seen = []
    for call in range(1, 12):
        table.eval()(ids)  # eval calls neither count nor cluster
        table.train()(ids)
        seen.append(table.clusterings)
    # clusterings at the start of training calls 4 and 7 (after 3 and 6 calls), then no more (max 2)
    assert seen == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert table.training_calls == 11


def test_never_clusters_in_eval_mode_or_with_max_zero():
    table = CCEEmbedding(V, D, k=5, cluster_every=1, max_clusterings=0)
    for _ in range(3):
        table(torch.arange(V))
    assert table.clusterings == 0
    table = CCEEmbedding(V, D, k=5, cluster_every=1).eval()
    for _ in range(3):
        table(torch.arange(V))
    assert table.clusterings == 0 and table.training_calls == 0


def test_seeded_deterministic_and_leaves_the_global_rngs_alone():
    def trained(seed):
        table = CCEEmbedding(V, D, k=6, columns=2, cluster_every=2, max_clusterings=2, niter=3, seed=seed)
        opt = torch.optim.Adagrad(table.parameters(), lr=0.5)
        for step in range(5):
            ids = torch.arange(step * 40, step * 40 + 60)
            opt.zero_grad()
            table(ids).sum().backward()
            opt.step()
        return table

    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b, c = trained(3), trained(3), trained(4)
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], np_state)
    assert a.clusterings == 2
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["index"], sc["index"])


def _train(table, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        table(torch.arange(V)).pow(2).sum().neg().backward()
        opt.step()


@pytest.mark.parametrize("attached", [False, True])
def test_optimizer_keeps_working_and_restarts_when_attached(attached):
    table = CCEEmbedding(V, D, k=6, cluster_every=2, max_clusterings=1, niter=3, sparse=True)
    params = list(table.parameters())
    opt = torch.optim.Adagrad(params, lr=0.1)
    if attached:
        table.attach_optimizer(opt)
        table.attach_optimizer(opt)  # once is enough
        assert len(table._optimizers) == 1
    _train(table, opt, 2)
    sums = [opt.state[p]["sum"].clone() for p in params]
    table.train()(torch.arange(V))  # the third training call clusters
    assert table.clusterings == 1 and list(table.parameters()) == params  # the same Parameters, values replaced
    for p, s in zip(params, sums):
        if attached:  # a fresh start for the new tables
            assert not opt.state[p]["sum"].any() and int(opt.state[p]["step"]) == 0
        else:
            assert torch.equal(opt.state[p]["sum"], s) and int(opt.state[p]["step"]) == 2
    _train(table, opt, 1)  # still steps
    assert table.hashed[0].weight.detach().any()  # the fresh hashed table trains after the clustering


def test_make_optimizer_attaches_and_reset_drops_other_optimizers_state():
    from saec.train.loop import TrainConfig, make_optimizer

    model = torch.nn.Sequential(CCEEmbedding(V, D, k=6))
    opt = make_optimizer(model, TrainConfig(optimizer="adam"))
    assert [r() for r in model[0]._optimizers] == [opt]
    _train(model[0], opt, 1)
    assert all(p in opt.state for p in model.parameters())
    model[0].reset_optimizer_state(opt)
    assert not any(p in opt.state for p in model.parameters())
    _train(model[0], opt, 1)


def test_save_load_keeps_the_clustered_index_and_schedule():
    table = randomised(CCEEmbedding(V, D, k=6, columns=2, cluster_every=2, max_clusterings=3, niter=3, seed=5))
    for _ in range(3):
        table(torch.arange(V))
    assert table.clusterings == 1
    rebuilt = CCEEmbedding.from_config(V, D, table.config())
    rebuilt.load_state_dict(table.state_dict())
    assert torch.equal(rebuilt.index, table.index) and rebuilt.clusterings == 1 and rebuilt.training_calls == 3
    ids = torch.arange(V)
    torch.testing.assert_close(rebuilt.eval()(ids), table.eval()(ids), rtol=0, atol=0)
    for _ in range(2):  # the second of the next two training calls clusters in both, the same way
        table.train()(ids)
        rebuilt.train()(ids)
    assert table.clusterings == rebuilt.clusterings == 2 and torch.equal(rebuilt.index, table.index)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(SaecError, match="k must be an integer in \\[1, 300\\]"):
        CCEEmbedding(V, D, k=301)
    with pytest.raises(SaecError, match="columns must be an integer in \\[1, 7\\]"):
        CCEEmbedding(V, D, k=3, columns=8)
    with pytest.raises(SaecError, match="cluster_every"):
        CCEEmbedding(V, D, k=3, cluster_every=0)
    with pytest.raises(SaecError, match="NaN"):
        table = CCEEmbedding(V, D, k=3)
        with torch.no_grad():
            table.clusters[0].weight[1, 0] = float("nan")
        table.cluster()
