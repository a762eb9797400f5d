"""Compressed embedding tables: one contract for every method, hand computations, the budget factory."""

import io
import math

import numpy as np
import pytest
import torch

from saec.data import Field, Schema
from saec.data.vocab import OOV_ID, PAD_ID
from saec.nn import EmbeddingBagCollection
from saec.nn.double_hashing import DoubleHashEmbedding
from saec.nn.base import PRIME, generator, hash_coefficients, universal_hash
from saec.nn.hashing import HashEmbedding
from saec.nn.mixed_dim import block_plan
from saec.nn.robe import RobeEmbedding
from saec.errors import SaecError
from saec.nn.bag import MODES, CompressedEmbeddingBag, PaddedEmbedding
from saec.nn.registry import FROM_SCRATCH, METHODS, PAPER_VARIANTS, POST_TRAINING, fit_hyperparameters, from_float, make_embedding, method_of
from saec.nn.tt import dim_factorization, row_factorization

V, D = 60, 8
SHUFFLED = np.random.default_rng(0).permutation(V).astype(np.int64) * 3 + 1  # top ids are not 0..k-1
CASES = {  # case -> (method, hyperparameters, counts)
    "full": ("full", {}, None),
    "hashing": ("hashing", {"num_buckets": 7}, None),
    "hashing-universal": ("hashing", {"num_buckets": 7, "hash": "universal"}, None),
    "double_hashing": ("double_hashing", {"num_buckets": 7}, None),
    "double_hashing-sum": ("double_hashing", {"num_buckets": 7, "combine": "sum"}, None),
    "freq_double_hashing": ("freq_double_hashing", {"num_buckets": 7, "num_frequent": 5}, None),
    "freq_double_hashing-counts": ("freq_double_hashing", {"num_buckets": 7, "num_frequent": 5}, SHUFFLED),
    "qr-mult": ("qr", {"num_buckets": 8}, None),
    "qr-add": ("qr", {"num_buckets": 8, "operation": "add"}, None),
    "qr-concat": ("qr", {"num_buckets": 8, "operation": "concat"}, None),
    "memcom": ("memcom", {"num_buckets": 7}, None),
    "memcom-bias": ("memcom", {"num_buckets": 7, "bias": True}, None),
    "robe": ("robe", {"memory_size": 50}, None),
    "robe-block": ("robe", {"memory_size": 50, "block": 3}, None),
    "truncate": ("truncate", {"num_kept": 10}, None),
    "truncate-counts": ("truncate", {"num_kept": 10}, SHUFFLED),
    "low_dim": ("low_dim", {"low_dim": 3}, None),
    "low_dim-pad": ("low_dim", {"low_dim": 3, "projection": "pad"}, None),
    "low_dim-affine": ("low_dim", {"low_dim": 3, "projection": "affine"}, None),
    "factorized": ("factorized", {"hidden": 3}, None),
    "mixed_dim": ("mixed_dim", {"base_dim": 8, "alpha": 0.5}, None),
    "mixed_dim-counts": ("mixed_dim", {"base_dim": 6, "alpha": 0.8}, SHUFFLED[::-1].copy()),
    "tt": ("tt", {"rank": 3}, None),
    "dhe": ("dhe", {"hidden": 8, "num_hashes": 6}, None),
    "dhe-deep": ("dhe", {"hidden": 5, "num_hashes": 4, "layers": 2}, None),
    "dhe-relu": ("dhe", {"hidden": 5, "num_hashes": 4, "layers": 2, "activation": "relu"}, None),
    "dpq_train": ("dpq_train", {"num_subspaces": 2, "num_centroids": 8}, None),
    "dpq_train-groups": ("dpq_train", {"num_subspaces": 3, "num_centroids": 6, "group_centroids": [6, 3, 1]}, SHUFFLED),
    "dpq": ("dpq", {"num_subspaces": 2, "num_centroids": 8}, None),
    "dpq-groups": ("dpq", {"num_subspaces": 3, "num_centroids": 6, "group_centroids": [6, 3, 1]}, None),
    "dpq-shuffled": ("dpq", {"num_subspaces": 3, "num_centroids": 6, "group_centroids": [6, 3, 1]}, SHUFFLED),
    "binary_ste": ("binary_ste", {}, None),
    "binary": ("binary", {}, None),
    "memcom_int8": ("memcom_int8", {"num_buckets": 7}, None),
    "memcom_int8-bias": ("memcom_int8", {"num_buckets": 7, "bias": True}, None),
    "pep_train": ("pep_train", {}, None),
    "pep": ("pep", {"nnz": 100}, None),
    "freq_dim": ("freq_dim", {"base_dim": 8}, None),
    "freq_dim-counts": ("freq_dim", {"base_dim": 6, "shares": [0.3, 0.6, 0.9]}, SHUFFLED),
    "freq_dim-zero": ("freq_dim", {"base_dim": 2}, SHUFFLED[::-1].copy()),  # widths 2, 1, 0, 0
    "cce": ("cce", {"k": 5}, None),
    "cce-columns": ("cce", {"k": 6, "columns": 3}, None),
    "lpt": ("lpt", {"bits": 8}, None),
    "lpt-2bit": ("lpt", {"bits": 2}, None),
    "lpt-4bit-adagrad": ("lpt", {"bits": 4, "optimizer": "adagrad"}, None),
    "lpt-16bit": ("lpt", {"bits": 16, "step": 1e-4}, None),
    "alpt": ("alpt", {"bits": 8}, None),
    "alpt-2bit-adagrad": ("alpt", {"bits": 2, "optimizer": "adagrad"}, None),
    "saec": ("saec", {"k": 7}, None),
    "saec-sum": ("saec", {"k": 7, "grad_mode": "sum"}, None),
    "saec_int8": ("saec_int8", {"k": 7}, None),
    "pq": ("pq", {"num_subspaces": 3, "bits": 4}, None),
    "fp16": ("fp16", {}, None),
    "int8": ("int8", {}, None),
    "int4": ("int4", {}, None),
    "int2": ("int2", {}, None),
}
SPARSE_CASES = [c for c, (m, _, _) in CASES.items() if "sparse" in METHODS[m].structure()]
TRAINABLE_CASES = [c for c, (m, _, _) in CASES.items() if METHODS[m].cls.footprint(V, D, **CASES[c][1]).params]


def build(case, seed=0, **kw):
    method, hyper, counts = CASES[case]
    return make_embedding(method, V, D, counts=counts, seed=seed, **{**hyper, **kw})


def test_every_method_has_a_case():
    assert {method for method, _, _ in CASES.values()} == set(METHODS)


def test_training_forms_are_methods_trained_from_scratch():
    for name, spec in METHODS.items():
        if spec.trained_with is not None:
            assert spec.post_training and spec.trained_with in FROM_SCRATCH, name


# -- the contract ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_shapes_for_any_id_shape(case):
    table = build(case)
    assert (table.num_embeddings, table.embedding_dim) == (V, D)
    ids = torch.tensor([[0, V - 1, 5], [7, 7, 30]])
    out = table(ids)
    assert out.shape == (2, 3, D) and out.dtype == torch.float32
    tol = {} if table.batch_invariant else {"atol": 1e-6}  # DHE: a network's rounding depends on the batch
    torch.testing.assert_close(table(ids.reshape(-1)), out.reshape(-1, D), rtol=0, **(tol or {"atol": 0}))
    torch.testing.assert_close(table(ids[1, 2]), out[1, 2], rtol=0, **(tol or {"atol": 0}))  # a 0-d id
    assert table(ids.to(torch.int32)).shape == (2, 3, D)
    assert table(torch.zeros(0, 4, dtype=torch.long)).shape == (0, 4, D)
    column = ids[:, 1]  # a strided view: a column of a (N, fields) batch
    assert not column.is_contiguous()
    torch.testing.assert_close(table(column), out[:, 1], rtol=0, **(tol or {"atol": 0}))


@pytest.mark.parametrize("case", TRAINABLE_CASES)
def test_gradients_reach_every_parameter(case):
    table = build(case)
    out = table(torch.arange(V))
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    for name, p in table.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("case", SPARSE_CASES)
def test_sparse_gradients_train_with_adagrad(case):
    table = build(case, sparse=True)
    before = {n: p.detach().clone() for n, p in table.named_parameters()}
    opt = torch.optim.Adagrad(table.parameters(), lr=0.1)
    table(torch.arange(V)).pow(2).sum().neg().backward()
    with torch.sparse.check_sparse_tensor_invariants(enable=True):
        opt.step()
    assert any(p.grad.is_sparse for p in table.parameters())
    assert all(not torch.equal(before[n], p.detach()) for n, p in table.named_parameters())


@pytest.mark.parametrize("case", CASES)
def test_seeded_and_leaves_the_global_rng_alone(case):
    state = torch.get_rng_state()
    a, b, c = build(case, seed=3), build(case, seed=3), build(case, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    if case in TRAINABLE_CASES:  # the post-training integer tables start from nothing random
        assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    ids = torch.arange(V)
    assert torch.equal(a(ids), b(ids))


@pytest.mark.parametrize("case", CASES)
def test_reported_sizes_are_the_real_tensor_sizes(case):
    method, hyper, counts = CASES[case]
    table = build(case)
    tensors = list(table.parameters()) + list(table.buffers())
    assert table.nbytes() == sum(t.numel() * t.element_size() for t in tensors)
    assert table.nbytes() == sum(t.numel() * t.element_size() for t in table.state_dict().values())
    assert table.param_count() == sum(p.numel() for p in table.parameters())
    fp = METHODS[method].cls.footprint(V, D, **fit_hyperparameters(method, V, D, counts=counts, **hyper),
                                       counts=counts)
    assert (fp.params, fp.nbytes) == (table.param_count(), table.nbytes())


@pytest.mark.parametrize("case", CASES)
def test_drop_in_for_a_field_of_the_collection(case):
    schema = Schema((Field("a", D), Field("b", D, multi_valued=True)))
    emb = EmbeddingBagCollection(schema, {"a": V, "b": V})
    for name in ("a", "b"):
        emb.replace(name, build(case))
    with torch.no_grad():
        emb.oov["a"].fill_(5.0)
        emb.oov["b"].fill_(-1.0)
    a, b = emb({"a": torch.tensor([3, OOV_ID, V - 1]),
                "b": torch.tensor([[0, 9, PAD_ID], [OOV_ID, 2, PAD_ID], [PAD_ID, PAD_ID, PAD_ID]])})
    ta, tb = emb.tables["a"], emb.tables["b"]
    assert torch.allclose(a[0], ta(torch.tensor(3))) and torch.equal(a[1], torch.full((D,), 5.0))
    assert torch.allclose(a[2], ta(torch.tensor(V - 1)))
    assert torch.allclose(b[0], (tb(torch.tensor(0)) + tb(torch.tensor(9))) / 2)
    assert torch.allclose(b[1], (torch.full((D,), -1.0) + tb(torch.tensor(2))) / 2)
    assert torch.equal(b[2], torch.zeros(D))
    a.sum().backward()
    assert all(p.grad is not None for p in ta.parameters())
    assert emb.table_bytes()["a"] == ta.nbytes() + 4 * D


@pytest.mark.parametrize("case", CASES)
def test_bad_ids_are_refused_as_nn_embedding_refuses_them(case):
    table = build(case)
    table.name = "emb.user"
    with pytest.raises(IndexError, match=r"table 'emb.user'.*id -1 is out of range.*\[0, 60\)"):
        table(torch.tensor([3, -1]))
    with pytest.raises(IndexError, match=r"id 60 is out of range.*\[0, 60\)"):
        table(torch.tensor([[V]]))
    for bad in (torch.tensor([1.0]), torch.tensor([True]), torch.tensor([1], dtype=torch.uint8),
                torch.tensor([1], dtype=torch.int16)):
        with pytest.raises(TypeError, match="int64 or int32"):
            table(bad)
    with pytest.raises(IndexError):  # what nn.Embedding does with the same ids
        torch.nn.Embedding(V, D)(torch.tensor([3, -1]))


# -- hand computations -----------------------------------------------------------------------------
def randomise(table):
    with torch.no_grad():
        for p in table.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return table


@pytest.mark.parametrize("bias", [False, True])
def test_memcom_is_u_of_i_mod_m_times_v_of_i_plus_w_of_i(bias):
    table = randomise(make_embedding("memcom", V, D, num_buckets=7, bias=bias))
    U, Vw = table.U.weight.detach(), table.V.weight.detach()
    ids = torch.arange(V)
    want = U[ids % 7] * Vw[ids]
    if bias:
        want = want + table.W.weight.detach()[ids]
    assert torch.allclose(table(ids), want)
    assert table.param_count() == 7 * D + V * (2 if bias else 1)
    assert table.U.weight.shape == (7, D) and table.V.weight.shape == (V, 1)
    fresh = make_embedding("memcom", V, D, num_buckets=7, bias=bias)  # starts as naive hashing
    assert torch.equal(fresh(ids), fresh.U.weight.detach()[ids % 7])


def test_naive_hashing_mod_and_universal():
    table = make_embedding("hashing", V, D, num_buckets=7)
    assert torch.equal(table(torch.arange(V)), table.T.weight.detach()[torch.arange(V) % 7])
    uni = make_embedding("hashing", V, D, num_buckets=7, hash="universal", seed=5)
    a, b = (int(x) for x in uni.hash_coeffs[0])
    assert torch.equal(uni(torch.arange(V)), uni.T.weight.detach()[[(a * i + b) % PRIME % 7 for i in range(V)]])
    assert uni.nbytes() == 7 * D * 4 + 16
    poly = make_embedding("hashing", V, D, num_buckets=7, hash="polynomial", seed=5)
    a, b, c = (int(x) for x in poly.hash_coeffs[0])  # degree 2: a i^2 + b i + c
    rows = [(a * i * i + b * i + c) % PRIME % 7 for i in range(V)]
    assert torch.equal(poly(torch.arange(V)), poly.T.weight.detach()[rows])
    assert poly.nbytes() == 7 * D * 4 + 24
    perm = make_embedding("hashing", V, D, num_buckets=7, hash="permutation", seed=5)
    assert sorted(perm.perm.tolist()) == list(range(V)) and perm.perm.dtype == torch.int32
    rows = perm.perm.long() % 7
    assert torch.equal(perm(torch.arange(V)), perm.T.weight.detach()[rows])
    loads = torch.bincount(rows, minlength=7)  # balanced: every row holds floor(V / 7) or ceil(V / 7) ids
    assert int(loads.min()) == V // 7 and int(loads.max()) == -(-V // 7)
    assert perm.nbytes() == 7 * D * 4 + 4 * V and perm.param_count() == 7 * D
    again = make_embedding("hashing", V, D, num_buckets=7, hash="permutation", seed=5)
    other = make_embedding("hashing", V, D, num_buckets=7, hash="permutation", seed=6)
    assert torch.equal(again.perm, perm.perm) and not torch.equal(other.perm, perm.perm)
    for hash_, k in (("universal", 2), ("polynomial", 3)):  # ids near 2**31: no overflow
        big = HashEmbedding(PRIME, 2, num_buckets=3, hash=hash_, init_std=1.0)
        i = PRIME - 1
        coeffs = [int(x) for x in big.hash_coeffs[0]]
        assert len(coeffs) == k
        want = sum(c * i ** (k - 1 - j) for j, c in enumerate(coeffs)) % PRIME % 3
        assert torch.equal(big(torch.tensor(i)), big.T.weight.detach()[want])


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_universal_hash_is_the_polynomial_mod_p_mod_m(degree):
    coeffs = hash_coefficients(generator(3), 5, degree)
    assert coeffs.shape == (5, degree + 1) and bool((coeffs[:, 0] >= 1).all()) and bool((coeffs < PRIME).all())
    ids = torch.tensor([[0, 1, 17], [PRIME - 1, 12345, 2**30]])
    want = [[[sum(int(k) * int(x) ** (degree - j) for j, k in enumerate(row)) % PRIME % 11 for x in line]
             for line in ids.tolist()] for row in coeffs]
    assert universal_hash(ids, coeffs, 11).tolist() == want


def test_how_many_consecutive_ids_collide_swings_by_seed_under_a_linear_hash_not_a_quadratic_one():
    # why hashing has a "polynomial" hash: under a x + b whether x and y collide depends (nearly) on x - y only,
    # so of the 1000 smallest (saec: most frequent) ids in 1024 buckets 200 or 1000 collide, by seed
    def colliding(degree: int) -> list[int]:
        out = []
        for seed in range(8):
            b = universal_hash(torch.arange(1000), hash_coefficients(generator(seed), 1, degree), 1024)[0]
            out.append(int((torch.bincount(b, minlength=1024)[b] > 1).sum()))
        return out

    linear, quadratic = colliding(1), colliding(2)
    assert max(linear) - min(linear) > 500, linear
    assert all(560 <= c <= 680 for c in quadratic), quadratic  # a random function: 623 of 1000 on average


@pytest.mark.parametrize("block", [None, 3, 8 * 60])
def test_robe_reads_blocks_of_one_shared_array_of_its_budget(block):
    table = make_embedding("robe", V, D, budget_params=50, block=block)
    assert table.param_count() == table.memory_size == 50 and table.memory.weight.shape == (50, 1)
    z = table.block
    coeffs = table.hash_coeffs.tolist()
    assert len(coeffs) == -(-D // z)  # one hash per block position of a row
    memory = table.memory.weight.detach()[:, 0]
    ids = torch.tensor([0, 1, 17, 59])
    got = table(ids)
    for r, i in enumerate(ids.tolist()):  # by hand: weight (i, j) sits at head(block) + offset in the ring
        for j in range(D):
            f = i * D + j
            a, b = coeffs[f // z % len(coeffs)]  # block q: hash number q mod C, of q // C
            head = (a * (f // z // len(coeffs)) + b) % PRIME % 50
            assert got[r, j] == memory[(head + f % z) % 50]
    if block is None:  # one block per row: every id reads D consecutive weights (mod 50) from its head
        pos = table.positions(ids)
        assert torch.equal((pos - pos[:, :1]) % 50, torch.arange(D).expand(len(ids), D))
    with pytest.raises(SaecError, match="memory_size"):
        make_embedding("robe", V, D, memory_size=V * D + 1)


def test_robe_heads_of_one_ids_blocks_collide_independently():
    """Two ids whose first blocks share a head share their second block's head about 1/m of the time (one linear
    hash of every block id makes them share it most of the time: consecutive block ids get heads a fixed stride
    apart)."""
    v, m = 4000, 64
    table = RobeEmbedding(v, 4, memory_size=m, block=2, seed=3)
    pos = table.positions(torch.arange(v))
    first, second = pos[:, 0], pos[:, 2]  # the heads of each id's two blocks (offset 0 in each)

    def pairs(keys: torch.Tensor) -> int:
        n = torch.unique(keys, return_counts=True)[1]
        return int((n * (n - 1) // 2).sum())

    both, first_only = pairs(first * m + second), pairs(first)
    assert first_only > 100_000 and both / first_only < 1.5 / m


def test_robe_dense_and_sparse_gradients_agree():
    """The dense path (indexing M's column) and the sparse one (M as an embedding table) give the same gradient."""
    ids = torch.tensor([3, 3, 17, 59, 0])
    grads = []
    for sparse in (False, True):
        table = RobeEmbedding(V, D, memory_size=20, block=3, seed=1, init_std=1.0, sparse=sparse)
        (table(ids) * torch.arange(D)).sum().backward()
        grad = table.memory.weight.grad
        grads.append(grad.to_dense() if grad.is_sparse else grad)
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_double_hashing_combines_two_universal_hashes(combine):
    table = make_embedding("double_hashing", V, D, num_buckets=7, combine=combine)
    (a1, b1), (a2, b2) = table.hash_coeffs.tolist()
    T1, T2 = table.T1.weight.detach(), table.T2.weight.detach()
    for i in (0, 13, V - 1):
        x1, x2 = T1[(a1 * i + b1) % PRIME % 7], T2[(a2 * i + b2) % PRIME % 7]
        want = torch.cat([x1, x2]) if combine == "concat" else x1 + x2
        assert torch.equal(table(torch.tensor(i)), want)
    assert T1.shape == ((7, D // 2) if combine == "concat" else (7, D))
    assert table.param_count() == 7 * D * (1 if combine == "concat" else 2)
    pairs = table.buckets(torch.arange(V)).T.tolist()  # v/m^2 ~ 1.2: few pairs collide
    assert len(set(map(tuple, pairs))) > 0.5 * V
    with pytest.raises(ValueError, match="combine"):
        make_embedding("double_hashing", V, 1, num_buckets=7)


@pytest.mark.parametrize("counts", [None, SHUFFLED])
def test_frequency_hashing_keeps_the_top_ids_unique(counts):
    table = randomise(DoubleHashEmbedding(V, D, num_buckets=3, num_frequent=6, counts=counts))
    top = list(range(6)) if counts is None else sorted(np.argsort(-counts, kind="stable")[:6].tolist())
    out = table(torch.arange(V))
    assert torch.equal(out[top], table.F.weight.detach())  # own rows, in id order
    assert len({tuple(r) for r in out[top].tolist()}) == 6
    plain = DoubleHashEmbedding(V, D, num_buckets=3)
    plain.load_state_dict({k: v for k, v in table.state_dict().items() if not k.startswith(("F.", "frequent"))})
    rest = [i for i in range(V) if i not in top]
    assert torch.equal(out[rest], plain(torch.tensor(rest)))  # the rest are double-hashed
    assert table.nbytes() == 4 * (6 * D + 3 * D) + 32 + (0 if counts is None else 4 * 6)


@pytest.mark.parametrize("operation", ["mult", "add", "concat"])
def test_qr_indices_and_composition(operation):
    table = randomise(make_embedding("qr", V, D, num_buckets=8, operation=operation))
    ids = torch.arange(V)
    j, k = table.indices(ids)
    assert j.tolist() == [i % 8 for i in range(V)] and k.tolist() == [i // 8 for i in range(V)]
    assert len(set(zip(j.tolist(), k.tolist()))) == V  # every id its own (remainder, quotient) pair
    U, Q = table.U.weight.detach(), table.V.weight.detach()
    assert Q.shape[0] == math.ceil(V / 8)
    want = {"mult": U[j] * Q[k], "add": U[j] + Q[k], "concat": torch.cat([U[j], Q[k]], dim=1)}[operation]
    assert torch.allclose(table(ids), want)


@pytest.mark.parametrize("counts", [None, SHUFFLED])
def test_truncate_maps_rare_ids_to_the_shared_row(counts):
    table = make_embedding("truncate", V, D, num_kept=10, counts=counts)
    top = list(range(10)) if counts is None else sorted(np.argsort(-counts)[:10].tolist())
    out, T = table(torch.arange(V)), table.T.weight.detach()
    assert T.shape == (11, D) and torch.equal(out[top], T[:10])
    rare = [i for i in range(V) if i not in top]
    assert torch.equal(out[rare], T[10].expand(len(rare), D))
    assert table.nbytes() == 11 * D * 4 + (0 if counts is None else 40)


def test_low_dim_and_factorized_are_projections():
    lin = make_embedding("low_dim", V, D, low_dim=3)
    x = lin.table.weight.detach()
    assert torch.allclose(lin(torch.arange(V)), x @ lin.P.detach()) and lin.param_count() == V * 3 + 3 * D
    pad = make_embedding("low_dim", V, D, low_dim=3, projection="pad")
    out = pad(torch.arange(V))
    assert torch.equal(out[:, :3], pad.table.weight.detach()) and not out[:, 3:].any()
    fac = make_embedding("factorized", V, D, hidden=3)
    assert torch.allclose(fac(torch.arange(V)), fac.U.weight.detach() @ fac.V.detach())
    assert fac.param_count() == V * 3 + 3 * D


def test_low_dim_affine_adds_a_trained_bias_to_the_projection():
    lin = make_embedding("low_dim", V, D, low_dim=3, seed=4)
    aff = make_embedding("low_dim", V, D, low_dim=3, projection="affine", seed=4)
    ids = torch.tensor([[0, 5], [59, 5]])
    assert torch.equal(aff(ids), lin(ids))  # the bias starts at zero: the same table as the linear projection
    assert aff.param_count() == V * 3 + 3 * D + D
    with torch.no_grad():
        aff.bias.copy_(torch.arange(D, dtype=torch.float32))
    x, P = aff.table.weight.detach(), aff.P.detach()
    want = torch.stack([x[i] @ P + torch.arange(D) for i in ids.flatten().tolist()]).view(2, 2, D)
    assert torch.allclose(aff(ids), want)
    aff(ids).sum().backward()  # d(sum)/d(bias) = number of lookups, in every coordinate
    assert torch.equal(aff.bias.grad, torch.full((D,), 4.0))


def test_mixed_dim_blocks_dims_and_projections():
    assert block_plan(V, D, 8, 4, 0.5) == ([0, 3, 8, 22, 60], [8, 6, 4, 2])  # sizes 3, 5, 14, 38; 8 sqrt(3/n)
    assert block_plan(V, D, 8, 4, 0.0)[1] == [8, 8, 8, 8]
    counts = np.r_[np.full(3, 100.0), np.full(5, 25.0), np.full(14, 1.0), np.zeros(38)]
    assert block_plan(V, D, 8, 4, 0.5, counts) == ([0, 3, 8, 22, 60], [8, 4, 1, 1])
    table = make_embedding("mixed_dim", V, D, base_dim=8, alpha=0.5)
    out = table(torch.arange(V))
    for k, (lo, hi) in enumerate(zip(table.offsets[:-1], table.offsets[1:])):
        x = table.tables[k].weight.detach()
        want = x if k == 0 else x @ table.projections[str(k)].detach()
        assert torch.allclose(out[lo:hi], want)
    assert "0" not in table.projections  # the full-width block needs none
    assert table.param_count() == 3 * 8 + 5 * 6 + 14 * 4 + 38 * 2 + (6 + 4 + 2) * D


def test_tt_rows_are_rows_of_the_full_tensor_product():
    assert row_factorization(60, 3) == [4, 4, 4] and row_factorization(1000, 3) == [10, 10, 10]
    assert dim_factorization(64, 3) == [4, 4, 4] and dim_factorization(16, 3) == [2, 2, 4]
    table = make_embedding("tt", V, D, rank=3, row_factors=[3, 4, 5], dim_factors=[2, 1, 4], init_std=1.0)
    G = [table.core(k).detach() for k in range(3)]
    assert [g.shape for g in G] == [(1, 3, 2, 3), (3, 4, 1, 3), (3, 5, 4, 1)]
    full = torch.einsum("xiaA,AjbB,BkcY->ijkabc", *G).reshape(60, 8)  # (i1 i2 i3) x (e1 e2 e3)
    assert torch.allclose(table(torch.arange(V)), full, atol=1e-6)
    assert table.param_count() == 3 * 2 * 3 + 3 * 4 * 1 * 3 + 3 * 5 * 4
    with pytest.raises(ValueError, match="dim_factors"):
        make_embedding("tt", V, D, rank=2, dim_factors=[2, 2, 3])
    with pytest.raises(ValueError, match="row_factors"):
        make_embedding("tt", V, D, rank=2, row_factors=[3, 4, 4])



def tt_per_lookup(table, ids):
    """The TT chain computed independently for every lookup (no sharing of ids or prefixes)."""
    flat = ids.reshape(-1)
    out = torch.ones(len(flat), 1, 1, dtype=table.cores[0].weight.dtype)
    for k, i_k in enumerate(table.digits(flat)):
        g = table.core(k)[:, i_k].permute(1, 0, 2, 3)  # (N, r_{k-1}, e_k, r_k)
        out = torch.einsum("nwa,nabB->nwbB", out, g).reshape(len(flat), -1, g.shape[-1])
    return out.reshape(*ids.shape, table.embedding_dim)


@pytest.mark.parametrize("num_cores,rows,dims", [(2, None, None), (3, [3, 4, 5], [2, 1, 4]), (4, [2, 3, 2, 6], None)])
def test_tt_shared_prefixes_match_the_per_lookup_chain(num_cores, rows, dims):
    # embed builds each distinct id, and each distinct prefix of the chain, once; values and core
    # gradients must be those of computing every lookup on its own (autograd sums the repeats).
    kw = {"row_factors": rows, "dim_factors": dims}
    table = make_embedding("tt", V, D, rank=4, num_cores=num_cores, init_std=1.0, seed=3, **kw)
    ids = torch.tensor(np.random.default_rng(1).zipf(1.5, size=(16, 40)) % V)  # many repeats, skewed
    assert len(ids.unique()) < ids.numel() // 5
    got = table(ids)
    assert torch.allclose(got, tt_per_lookup(table, ids), rtol=1e-5, atol=1e-5)
    assert torch.equal(table(ids.flip(1)), got.flip(1))  # order-independent
    # Gradients in float64: in float32 the two sum the repeats in different orders (differences of a
    # few 1e-5 on gradients of size ~100 in this batch).
    table.double()
    w = torch.randn(16, 40, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = table(ids)
    (got * w).sum().backward()
    grads = [c.weight.grad.clone() for c in table.cores]
    table.zero_grad()
    want = tt_per_lookup(table, ids)
    (want * w).sum().backward()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, c in zip(grads, table.cores):
        assert torch.allclose(g, c.weight.grad, rtol=1e-5, atol=1e-5)


# -- the factory -----------------------------------------------------------------------------------
def size_of(method, budget_kind, **kw):
    fp = METHODS[method].cls.footprint(V, D, **kw)
    return fp.params if budget_kind == "budget_params" else fp.nbytes


@pytest.mark.parametrize("method", [m for m in METHODS if METHODS[m].knobs])
@pytest.mark.parametrize("budget_kind", ["budget_params", "budget_bytes"])
def test_budget_gives_the_largest_table_that_fits(method, budget_kind):
    spec = METHODS[method]
    full = V * D * (1 if budget_kind == "budget_params" else 4)
    for fraction in (0.45, 0.75):  # qr and mixed_dim need more than a quarter of this small table
        budget = int(full * fraction)
        hyper = fit_hyperparameters(method, V, D, **{budget_kind: budget})
        table = make_embedding(method, V, D, **{budget_kind: budget})
        again = make_embedding(method, V, D, **hyper)  # what fit_hyperparameters returns builds the same table
        assert (again.param_count(), again.nbytes()) == (table.param_count(), table.nbytes())
        got = table.param_count() if budget_kind == "budget_params" else table.nbytes()
        assert got == size_of(method, budget_kind, **hyper) <= budget
        knob = spec.knobs[0]
        others = [size_of(method, budget_kind, **{**hyper, knob.name: x, **{t: x for t in spec.tied}})
                  for x in knob.values(V, D)[:1000]]  # tt's ranks go to 2**16; those fitting are small
        assert got == max(s for s in others if s <= budget)  # nothing the knob reaches fits closer


def test_budget_errors_and_bad_arguments():
    with pytest.raises(ValueError, match="budget_params=10 is too small.*memcom.*needs 68 parameters"):
        make_embedding("memcom", V, D, budget_params=10)
    with pytest.raises(ValueError, match="budget_bytes=50 is too small.*needs 96 bytes"):
        make_embedding("tt", V, D, budget_bytes=50)
    with pytest.raises(ValueError, match="budget_bytes"):
        make_embedding("qr", V, D, budget_bytes=-5)
    with pytest.raises(ValueError, match="at most one"):
        make_embedding("qr", V, D, budget_bytes=500, budget_params=100)
    with pytest.raises(ValueError, match="num_buckets= or budget_params="):
        make_embedding("memcom", V, D, num_buckets=3, budget_params=1000)
    with pytest.raises(ValueError, match="needs num_buckets= or a budget"):
        make_embedding("hashing", V, D)
    with pytest.raises(ValueError, match="unknown method 'lsh'"):
        make_embedding("lsh", V, D, num_buckets=3)
    with pytest.raises(ValueError, match="no hyperparameter 'buckets'"):
        make_embedding("memcom", V, D, buckets=3)
    with pytest.raises(ValueError, match="pins num_frequent=0"):
        make_embedding("double_hashing", V, D, num_buckets=3, num_frequent=2)
    bad = [("memcom", {"num_buckets": 0}, "num_buckets"), ("memcom", {"num_buckets": V + 1}, "num_buckets"),
           ("memcom", {"num_buckets": 2.5}, "num_buckets"), ("memcom", {"num_buckets": 3, "bias": 1}, "bias"),
           ("hashing", {"num_buckets": 3, "hash": "md5"}, "hash"), ("qr", {"num_buckets": 3, "operation": "div"}, "operation"),
           ("truncate", {"num_kept": V}, "num_kept"), ("low_dim", {"low_dim": D + 1}, "low_dim"),
           ("low_dim", {"low_dim": 2, "projection": "crop"}, "projection"), ("factorized", {"hidden": 0}, "hidden"),
           ("mixed_dim", {"alpha": 2.0}, "alpha"), ("mixed_dim", {"num_blocks": V + 1}, "num_blocks"),
           ("tt", {"rank": 0}, "rank"), ("tt", {"num_cores": 1}, "num_cores"),
           ("dhe", {"hidden": 4, "activation": "tanh"}, "activation"),
           ("freq_double_hashing", {"num_buckets": 3, "num_frequent": -1}, "num_frequent"),
           ("memcom", {"num_buckets": 3, "init_std": 0.1, "sparse": "yes"}, "sparse")]
    for method, hyper, name in bad:
        with pytest.raises(ValueError, match=name):
            make_embedding(method, V, D, **hyper)
    with pytest.raises(ValueError, match="seed"):
        make_embedding("memcom", V, D, num_buckets=3, seed=-1)
    with pytest.raises(ValueError, match="counts"):
        make_embedding("truncate", V, D, num_kept=3, counts=np.ones(V - 1))
    with pytest.raises(ValueError, match="alpha"):  # checked while searching, too
        make_embedding("mixed_dim", V, D, alpha=-1.0, budget_params=200)


def test_full_takes_a_budget_only_if_it_fits():
    assert make_embedding("full", V, D, budget_params=V * D).param_count() == V * D
    assert make_embedding("full", V, D, budget_bytes=4 * V * D).nbytes() == 4 * V * D
    with pytest.raises(ValueError, match="budget_params=479 is too small for method 'full'.*needs 480 parameters"):
        make_embedding("full", V, D, budget_params=V * D - 1)
    with pytest.raises(ValueError, match="no hyperparameter 'num_buckets'"):
        make_embedding("full", V, D, num_buckets=3)


@pytest.mark.parametrize("case", CASES)
def test_config_rebuilds_the_same_structure(case):
    method, _, _ = CASES[case]
    sparse = case in SPARSE_CASES
    table = randomise(build(case, **({"sparse": True} if sparse else {})))
    cfg = table.config()
    assert method_of(table) == method
    assert cfg.get("sparse", False) is sparse and "seed" not in cfg and "counts" not in cfg
    torch.save(cfg, io.BytesIO())  # plain data only
    rebuilt = type(table).from_config(V, D, cfg)
    rebuilt.load_state_dict(table.state_dict())  # same parameter and buffer shapes
    assert rebuilt.config() == cfg and rebuilt.uses_sparse_gradients() is sparse
    assert torch.equal(rebuilt(torch.arange(V)), table(torch.arange(V)))


def test_method_of_a_foreign_table():
    with pytest.raises(TypeError, match="not a table of any method"):
        method_of(torch.nn.Embedding(3, 2))


def test_factory_passes_counts_only_where_used_and_ties_frequent_to_buckets():
    for method in [m for m in METHODS if METHODS[m].knobs]:
        assert make_embedding(method, V, D, counts=SHUFFLED, budget_params=V * D // 3).param_count() <= V * D // 3
    fdh = make_embedding("freq_double_hashing", V, D, budget_params=200)
    assert fdh.num_frequent == fdh.num_buckets and fdh.param_count() <= 200
    mde = make_embedding("mixed_dim", V, D, alpha=0.5, budget_params=200)  # alpha given: the budget sets base_dim
    assert mde.alpha == 0.5 and mde.base_dim < D and mde.param_count() <= 200


@pytest.mark.parametrize("label", list(PAPER_VARIANTS))
def test_paper_variants_build_through_the_factory(label):
    method, fixed = PAPER_VARIANTS[label]
    table = make_embedding(method, V, D, counts=SHUFFLED, budget_params=V * D // 2, **fixed)
    assert method_of(table) == method and 0 < table.param_count() <= V * D // 2
    assert table(torch.arange(V)).shape == (V, D)
    for name, value in fixed.items():
        assert getattr(table, name) == value
    if label == "low_dim":  # "reduce embedding dim": narrower vectors, zero-padded, no projection parameters
        assert table.param_count() == V * table.low_dim
        assert torch.all(table(torch.arange(V))[:, table.low_dim:] == 0)


# -- the pooled and padded forms (what saec.compress puts where nn.EmbeddingBag stood) --------------
BAG_IDS = torch.tensor([3, 7, 7, 0, 59, 12, 5, 7])
BAG_OFFSETS = torch.tensor([0, 3, 3, 5])  # the second bag is empty


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_bag_form_pools_exactly_as_nn_embedding_bag(case, mode):
    table = randomise(build(case))
    dense = table(torch.arange(V)).detach()  # the table this one stands for
    for padding_idx in (None, 7):
        ref = torch.nn.EmbeddingBag.from_pretrained(dense, mode=mode, padding_idx=padding_idx)
        bag = CompressedEmbeddingBag(table, mode, padding_idx=padding_idx)
        assert torch.allclose(bag(BAG_IDS, BAG_OFFSETS), ref(BAG_IDS, BAG_OFFSETS), atol=1e-6)
        two_d = BAG_IDS[:6].reshape(3, 2)
        assert torch.allclose(bag(two_d), ref(two_d), atol=1e-6)
    last = CompressedEmbeddingBag(table, mode, include_last_offset=True)
    ends = torch.cat([BAG_OFFSETS, torch.tensor([len(BAG_IDS)])])
    ref = torch.nn.EmbeddingBag.from_pretrained(dense, mode=mode, include_last_offset=True)
    assert torch.allclose(last(BAG_IDS, ends), ref(BAG_IDS, ends), atol=1e-6)
    if mode == "sum":
        w = torch.linspace(0.5, 2.0, len(BAG_IDS))
        ref = torch.nn.EmbeddingBag.from_pretrained(dense, mode="sum")
        assert torch.allclose(CompressedEmbeddingBag(table, "sum")(BAG_IDS, BAG_OFFSETS, w),
                              ref(BAG_IDS, BAG_OFFSETS, per_sample_weights=w), atol=1e-6)


# lpt has no float parameter (its codes are trained inside backward): the bag form must train it the same way too
IN_BACKWARD_CASES = [c for c, (m, _, _) in CASES.items() if getattr(METHODS[m].cls, "updates_in_backward", False)]


@pytest.mark.parametrize("case", sorted(set(TRAINABLE_CASES) | set(IN_BACKWARD_CASES), key=list(CASES).index))
def test_bag_form_trains_through_the_tables_own_gradient_rule(case):
    a, b = build(case), build(case)
    CompressedEmbeddingBag(a, "sum")(BAG_IDS, BAG_OFFSETS).pow(2).sum().backward()
    rows = b(BAG_IDS)  # the same pooling written out by hand
    pooled = torch.stack([rows[0:3].sum(0), rows[3:3].sum(0), rows[3:5].sum(0), rows[5:].sum(0)])
    pooled.pow(2).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        ga, gb = (p.grad.to_dense() if p.grad.is_sparse else p.grad for p in (pa, pb))
        assert torch.allclose(ga, gb, atol=1e-6), name
    sa, sb = a.state_dict(), b.state_dict()  # a table updated inside backward: the same update
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not sa[k].is_floating_point())


def test_bag_and_padded_forms_refuse_what_nn_embedding_bag_refuses():
    table = build("hashing")
    bag = CompressedEmbeddingBag(table, "mean")
    with pytest.raises(SaecError, match="per_sample_weights are only supported for mode='sum'"):
        bag(BAG_IDS, BAG_OFFSETS, torch.ones(len(BAG_IDS)))
    with pytest.raises(SaecError, match="1-D input needs 1-D offsets"):
        bag(BAG_IDS)
    with pytest.raises(SaecError, match="offsets must start at 0"):
        bag(BAG_IDS, torch.tensor([1, 3]))
    with pytest.raises(SaecError, match="mode must be one of"):
        CompressedEmbeddingBag(table, "median")
    with pytest.raises(IndexError, match="id 60"):
        bag(torch.tensor([1, 60]), torch.tensor([0]))
    padded = PaddedEmbedding(table, padding_idx=-1)  # counts from the end, as nn.Embedding's does
    out = padded(torch.tensor([[V - 1, 2]]))
    assert torch.equal(out[0, 0], torch.zeros(D)) and torch.equal(out[0, 1], table(torch.tensor(2)))


# -- post-training methods: built from a trained float table -----------------------------------------
def clustered_weight(rows=3000, dim=16, centers=6, noise=1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centers, dim, generator=g)
    return c[torch.randint(0, centers, (rows,), generator=g)] + noise * torch.randn(rows, dim, generator=g)


POST_TRAINING_HYPER = {"saec": {"k": 6}, "saec_int8": {"k": 6}, "memcom_int8": {"num_buckets": 3000}, "pep": {"nnz": 3000 * 16}}


@pytest.mark.parametrize("method", POST_TRAINING)
def test_post_training_methods_from_a_trained_table(method):
    weight = clustered_weight()
    trained = torch.nn.Embedding.from_pretrained(weight.clone(), freeze=False)
    table = from_float(method, trained, **POST_TRAINING_HYPER.get(method, {}))
    assert torch.equal(trained.weight.detach(), weight)  # the trained table is only read
    assert (table.num_embeddings, table.embedding_dim) == tuple(weight.shape) and method_of(table) == method
    ids = torch.arange(len(weight))
    err = (table(ids) - weight).abs().max().item()
    span = (weight.max(1).values - weight.min(1).values).max().item()
    assert err <= TOLERANCE[method](span), (method, err)
    # the same table from an EmbeddingBag, a FullEmbedding or the bare weight
    bag = torch.nn.EmbeddingBag.from_pretrained(weight.clone())
    assert torch.equal(from_float(method, bag, **POST_TRAINING_HYPER.get(method, {}))(ids), table(ids))
    assert torch.equal(from_float(method, weight, **POST_TRAINING_HYPER.get(method, {}))(ids), table(ids))
    # what it saves is what it reports
    buf = io.BytesIO()
    torch.save(table.state_dict(), buf)
    assert table.nbytes() <= len(buf.getvalue()) <= table.nbytes() + 4096
    assert table.nbytes() == METHODS[method].cls.footprint(*weight.shape, **{**METHODS[method].fixed, **table.config()}).nbytes
    rebuilt = type(table).from_config(*weight.shape, table.config())
    rebuilt.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert torch.equal(rebuilt(ids), table(ids))


TOLERANCE = {  # largest error per entry, given the largest row range of the trained table
    "saec": lambda span: 0.01,  # six tight clusters, k = 6: the noise
    "pq": lambda span: 0.01,  # each subspace holds at most six tight clusters, fewer than its 64 centroids
    "saec_int8": lambda span: 0.01 + span / 255,
    "fp16": lambda span: 1e-3 * span,
    "int8": lambda span: span / 255 / 2 * 1.01,
    "int4": lambda span: span / 15 / 2 * 1.01 + 1e-2,  # fp16 scale and bias
    "int2": lambda span: span / 3 / 2 * 1.01 + 1e-2,
    # |w - mean|w| sign(w)| = ||w| - mean|w||: both lie between a row's smallest and largest |w|, at most its span apart
    "binary": lambda span: span * 1.001 + 1e-3,
    # m = v: every row its own U row and V = 1 (the least-squares fit): int8's error, and V's float16 rounding of 1 (exact)
    "memcom_int8": lambda span: span / 255 / 2 * 1.01,
    "pep": lambda span: 0.0,  # every weight kept (nnz = v e): exactly the table
    "dpq": lambda span: 0.01,  # as pq: at most six tight clusters per subspace, fewer than even the rare half's 16
}


@pytest.mark.parametrize("method", POST_TRAINING)
def test_post_training_budget_picks_the_largest_setting_that_fits(method):
    weight = clustered_weight(2000, 8)
    spec = METHODS[method]
    if not spec.knobs:  # a fixed size: the budget is only checked
        size = spec.cls.footprint(2000, 8, **spec.fixed).nbytes
        assert from_float(method, weight, budget=size).nbytes() == size
        with pytest.raises(SaecError, match=f"budget_bytes={size - 1} is too small for method '{method}'"):
            from_float(method, weight, budget=size - 1)
        return
    budget = 2000 * 8 * 4 // (8 if method == "memcom_int8" else 20)  # its float16 V alone is 1/16 of 8-dim rows
    table = from_float(method, weight, budget=budget)
    knob = spec.knobs[0].name
    bigger = spec.cls.footprint(2000, 8, **{**spec.fixed, **table.config(), knob: getattr(table, knob) + 1}).nbytes
    assert table.nbytes() <= budget < bigger
    smallest = spec.cls.footprint(2000, 8, **{**spec.fixed, **table.config(), knob: spec.knobs[0].values(2000, 8)[0]})
    if smallest.nbytes > 10:  # (pep's smallest table keeps no weight: 0 bytes)
        with pytest.raises(SaecError, match="too small"):
            from_float(method, weight, budget=10)
    with pytest.raises(SaecError, match=f"{knob}= or budget_bytes="):
        from_float(method, weight, budget=budget, **{knob: 3})


def test_post_training_errors_name_the_parameter():
    weight = clustered_weight(50, 8)
    with pytest.raises(SaecError, match="k=100 is larger than the table's 50 rows"):
        from_float("saec", weight, k=100)
    with pytest.raises(SaecError, match="'memcom' is trained compressed from scratch"):
        from_float("memcom", weight)
    with pytest.raises(SaecError, match="unknown method 'lsh'"):
        from_float("lsh", weight)
    with pytest.raises(SaecError, match="counts must be 50"):
        from_float("saec", weight, k=5, counts=np.ones(49))
    with pytest.raises(SaecError, match="only apply when it is built from a trained table"):
        make_embedding("saec", V, D, k=5, top_n=100)
    with pytest.raises(TypeError, match="from_float needs an nn.Embedding"):
        from_float("saec", torch.nn.Linear(3, 3), k=2)


@pytest.mark.parametrize("dim,subspaces,bits", [(16, 4, 8), (9, 4, 5)])
def test_pq_rows_are_faiss_s_own_encode_and_decode(dim, subspaces, bits):
    import faiss

    weight = torch.randn(2000, dim, generator=torch.Generator().manual_seed(1))
    table = from_float("pq", weight, num_subspaces=subspaces, bits=bits)
    sub = table.sub_dim
    assert table.codebooks.shape == (subspaces, 2**bits, sub) and table.codes.dtype == torch.uint8
    padded = np.zeros((2000, subspaces * sub), dtype=np.float32)  # a dim M does not divide is zero-padded
    padded[:, :dim] = weight.numpy()
    pq = faiss.ProductQuantizer(subspaces * sub, subspaces, bits)  # faiss's quantizer with our centroids
    faiss.copy_array_to_vector(table.codebooks.detach().numpy().ravel(), pq.centroids)
    want = pq.decode(pq.compute_codes(padded))[:, :dim]
    np.testing.assert_allclose(table.to_dense().numpy(), want, rtol=0, atol=1e-6)
    assert table.nbytes() == 4 * subspaces * 2**bits * sub + 2000 * subspaces  # codebooks + one byte per code
    with pytest.raises(SaecError, match="bits=8: 256 centroids per subspace need at least as many rows"):
        from_float("pq", weight[:100], num_subspaces=2, bits=8)


def test_dhe_encoding_is_deterministic_and_collision_free_and_there_is_no_table():
    table = make_embedding("dhe", 100_000, D, hidden=16, num_hashes=8)
    ids = torch.arange(100_000)
    enc = table.encode(ids)
    assert enc.shape == (100_000, 8) and enc.min() >= -1 and enc.max() <= 1
    assert len(torch.unique(enc, dim=0)) == 100_000  # no two ids share an encoding
    again = make_embedding("dhe", 100_000, D, hidden=16, num_hashes=8)
    assert torch.equal(again.encode(ids[:50]), enc[:50]) and torch.equal(again(ids[:50]), table(ids[:50]))
    a, b = (int(x) for x in table.hash_coeffs[3])
    assert enc[12345, 3].item() == pytest.approx(((a * 12345 + b) % PRIME % 10**6) / (10**6 - 1) * 2 - 1, abs=1e-6)
    # the parameters are the network's, whatever the number of ids
    assert table.param_count() == 8 * 16 + 16 + 16 * D + D == make_embedding("dhe", 10, D, hidden=16, num_hashes=8).param_count()


@pytest.mark.parametrize("activation", ["mish", "relu"])
def test_dhe_hidden_layers_apply_their_activation(activation):
    table = make_embedding("dhe", V, D, hidden=5, num_hashes=4, layers=2, activation=activation, seed=2)
    ids = torch.tensor([0, 7, 59])
    f = {"mish": lambda z: z * torch.tanh(torch.log1p(torch.exp(z))), "relu": lambda z: z.clamp(min=0)}[activation]
    (w1, b1), (w2, b2), (w3, b3) = [(m.weight.detach(), m.bias.detach()) for m in table.decoder
                                    if isinstance(m, torch.nn.Linear)]
    h = f(f(table.encode(ids) @ w1.T + b1) @ w2.T + b2)
    assert torch.allclose(table(ids), h @ w3.T + b3, atol=1e-6)
    same_weights = make_embedding("dhe", V, D, hidden=5, num_hashes=4, layers=2, seed=2,
                                  activation="relu" if activation == "mish" else "mish")
    assert not torch.allclose(same_weights(ids), table(ids))  # the activation is what differs
    assert table.config()["activation"] == activation
