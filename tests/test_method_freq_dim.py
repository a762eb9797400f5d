"""Frequency groups with predefined dimensions (CpRec; saec.nn.freq_dim): groups by cumulative count share
against a direct reference, each group's rows of its own width, true sizes, zero-width and empty groups,
a table at 1/16 of the bytes, ONNX export of the id-list path."""

import numpy as np
import pytest
import torch

from saec.errors import SaecError
from saec.nn.base import count_below
from saec.nn.freq_dim import FrequencyGroupEmbedding, group_plan
from saec.nn.registry import make_embedding

E = 8


def reference_groups(counts, shares):
    """Group of every id, written out: rank by count (ties: smaller id first), then the group of a feature is
    how many shares the observations of the features ranked before it reach."""
    counts = [float(c) for c in counts]
    total = sum(counts)
    group, before = {}, 0.0
    for i in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
        group[i] = sum(before >= s * total for s in shares)
        before += counts[i]
    return np.array([group[i] for i in range(len(counts))])


def randomised(table):
    with torch.no_grad():
        for i, p in enumerate(table.parameters()):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    return table


def group_vectors(table, k):
    """The e-wide vectors group k's block gives, row by row (its rows projected when narrower than e)."""
    b = table.block_of[k]
    x = table.tables[b].weight.detach()
    return x @ table.projections[str(b)].detach() if str(b) in table.projections else x


TIES = np.array([5, 3, 3, 3, 3, 9, 0, 3, 1, 1, 9, 2, 2, 0, 3, 7, 7, 1, 4, 4] * 3, dtype=float)  # 60 ids, many ties
CASES = {
    "ties, not in id order": (TIES, [0.5, 0.8, 0.95]),
    "shuffled distinct": (np.random.default_rng(3).permutation(60).astype(float) ** 2, [0.3, 0.6, 0.9]),
    "zipf-like sample": (np.bincount(np.random.default_rng(1).zipf(1.3, 3000) % 60, minlength=60).astype(float),
                         [0.5, 0.8, 0.95]),
    "two groups": (TIES[::-1].copy(), [0.7]),
    "in id order": (np.sort(TIES)[::-1].copy(), [0.5, 0.8, 0.95]),
    "no counts (zipf)": (None, [0.5, 0.8, 0.95]),
}


@pytest.mark.parametrize("case", CASES)
def test_groups_follow_the_cumulative_share_rule(case):
    counts, shares = CASES[case]
    ref_counts = 1.0 / np.arange(1, 61) if counts is None else counts
    want = reference_groups(ref_counts, shares)
    table = randomised(FrequencyGroupEmbedding(60, E, base_dim=E, shares=shares, counts=counts))
    ids = torch.arange(60)
    located = table.locate(ids)
    got = np.full(60, -1)
    for k, (inside, _) in enumerate(located):
        assert not (got[inside.numpy()] >= 0).any()  # every id in one group only
        got[inside.numpy()] = k
    np.testing.assert_array_equal(got, want)
    assert table.sizes == np.bincount(want, minlength=len(shares) + 1).tolist()
    # the id-list buffer exists exactly when the groups are not id ranges
    ranges = all((np.diff(want) >= 0))
    assert (table.group_ids is None) == ranges
    # every group's members read its rows in id order, each row of the group's own width
    out = table(ids).detach()
    for k, dk in enumerate(table.dims):
        members = np.flatnonzero(want == k)
        if not len(members):
            assert table.block_of[k] is None
            continue
        assert table.tables[table.block_of[k]].weight.shape == (len(members), dk)
        torch.testing.assert_close(out[members], group_vectors(table, k), rtol=0, atol=0)


def test_a_share_is_reached_by_the_feature_crossing_it_and_ties_go_to_the_smaller_id():
    counts = np.array([1, 4, 4, 1, 0, 2], dtype=float)  # total 12: ranking 1, 2, 5, 0, 3, 4
    sizes, ids = group_plan(6, [1 / 3, 0.5, 0.9], counts)
    # 1 holds 4/12 = 1/3 exactly: it alone reaches 1/3; 2 reaches 8/12 >= 0.5 alone; 5 and 0 reach 11/12
    assert sizes == [1, 1, 2, 2] and ids.tolist() == [1, 2, 0, 5]
    assert reference_groups(counts, [1 / 3, 0.5, 0.9]).tolist() == [2, 0, 1, 3, 3, 2]


def test_one_dominant_feature_leaves_groups_empty_without_parameters():
    counts = np.r_[2000.0, np.ones(59)]  # 2000 / 2059 > 0.95
    table = FrequencyGroupEmbedding(60, E, shares=[0.5, 0.8, 0.95], counts=counts)
    assert table.sizes == [1, 0, 0, 59] and table.block_of == [0, None, None, 1]
    assert table.param_count() == 1 * 8 + 59 * 1 + 1 * E  # the last group's width 1 needs a 1 x e projection
    assert table(torch.arange(60)).shape == (60, E)
    assert table.footprint(60, E, shares=[0.5, 0.8, 0.95], counts=counts).params == table.param_count()


@pytest.mark.parametrize("counts", [None, TIES])
def test_zero_width_groups_share_one_row_that_learns(counts):
    table = randomised(FrequencyGroupEmbedding(60, E, base_dim=2, counts=counts))  # widths 2, 1, 0, 0
    assert table.dims == [2, 1, 0, 0]
    out = table(torch.arange(60))
    located = table.locate(torch.arange(60))
    for k in (2, 3):
        members = located[k][0].nonzero().squeeze(1)
        assert len(members) == table.sizes[k] > 0
        shared = table.tables[table.block_of[k]].weight
        assert shared.shape == (1, E) and str(table.block_of[k]) not in table.projections
        torch.testing.assert_close(out[members], shared.detach().expand(len(members), E), rtol=0, atol=0)
    assert not torch.equal(out[located[2][0]][0], out[located[3][0]][0])  # one row per group, not one for all
    out[located[3][0]].sum().backward()
    assert table.tables[table.block_of[3]].weight.grad.abs().sum() > 0
    assert table.tables[table.block_of[0]].weight.grad.abs().sum() == 0  # the other groups untouched


SHUFFLED = CASES["shuffled distinct"][0]


@pytest.mark.parametrize("hyper,counts", [({"base_dim": 8}, None), ({"base_dim": 5}, TIES), ({"base_dim": 1}, TIES),
                                          ({"dims": [7, 3, 3, 0]}, SHUFFLED),
                                          ({"base_dim": 4, "fractions": [1, 1, 0.5, 0]}, None),
                                          ({"base_dim": 3, "shares": []}, TIES)])
def test_reported_sizes_are_the_real_tensors(hyper, counts):
    table = FrequencyGroupEmbedding(60, E, **hyper, counts=counts)
    fp = FrequencyGroupEmbedding.footprint(60, E, **hyper, counts=counts)
    tensors = list(table.parameters()) + list(table.buffers())
    assert fp == (table.param_count(), sum(t.numel() * t.element_size() for t in tensors)) == \
        (table.param_count(), table.nbytes())
    head = 0 if table.group_ids is None else len(table.group_ids)
    assert head == (0 if table.group_ids is None else sum(table.sizes[:-1]))
    width = [(n * dk + (dk * E if dk < E else 0)) if dk else E for n, dk in zip(table.sizes, table.dims) if n]
    assert table.nbytes() == 4 * sum(width) + 4 * head


def test_count_below_is_searchsorted():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 8, 9, 100):
        seg = np.sort(rng.choice(1000, n, replace=False)).astype(np.int32)
        ids = torch.from_numpy(rng.integers(0, 1001, 500))
        assert count_below(torch.from_numpy(seg), ids).tolist() == np.searchsorted(seg, ids.numpy()).tolist()


def test_a_table_exists_at_a_sixteenth_of_the_bytes_where_mixed_dim_has_none():
    v, d = 5400, 16
    counts = np.bincount(np.random.default_rng(0).zipf(1.2, 200_000) % v, minlength=v).astype(float)
    counts = np.sort(counts)[::-1].copy()  # the vocabulary's frequency order: no id list
    budget = v * d * 4 // 16
    table = make_embedding("freq_dim", v, d, counts=counts, budget_bytes=budget)
    assert table.nbytes() <= budget and table.group_ids is None and table.dims[-1] == 0
    with pytest.raises(SaecError, match="too small for method 'mixed_dim'"):
        make_embedding("mixed_dim", v, d, counts=counts, budget_bytes=budget)
    tiny = make_embedding("freq_dim", v, d, counts=counts, base_dim=1)  # the smallest: 1, 0, 0, 0
    assert tiny.dims == [1, 0, 0, 0] and tiny.param_count() == tiny.sizes[0] + d + 3 * d


def test_bad_arguments_name_the_parameter():
    bad = [({"shares": [0.8, 0.5]}, "shares must be strictly increasing"), ({"shares": [0.5, 1.0]}, "shares"),
           ({"shares": "0.5"}, "shares"), ({"base_dim": 0}, "base_dim"), ({"base_dim": E + 1}, "base_dim"),
           ({"dims": [8, 4, 2]}, "dims must be 4 integers"), ({"dims": [4, 8, 2, 1]}, "must not increase"),
           ({"fractions": [1, 0.5]}, "fractions must be 4"), ({"fractions": [1, 0.5, 0.25, 2]}, "fractions"),
           ({"sizes": [10, 10, 10, 10]}, "sizes must be 4 non-negative integers summing to 60")]
    for hyper, match in bad:
        with pytest.raises(SaecError, match=match):
            make_embedding("freq_dim", 60, E, **hyper)


def test_onnx_export_of_the_id_list_path(tmp_path):
    from saec.data import Field, Schema
    from saec.data.vocab import Vocabulary
    from saec.export import example_ids, to_onnx
    from saec.io import load_model, save_model
    from saec.models import build_model
    from saec.onnx_model import OnnxModel

    schema = Schema([Field("user", 8)], label="y")
    sizes = {"user": 300}
    model = build_model("dssm", schema, sizes, hidden=(8,), seed=1)
    rng = np.random.default_rng(0)
    for f in schema.fields:
        counts = rng.permutation(sizes[f.name]).astype(float) ** 2
        table = randomised(make_embedding("freq_dim", sizes[f.name], f.dim, counts=counts, base_dim=f.dim // 2))
        assert table.group_ids is not None
        model.embeddings.replace(f.name, table)
    model.eval()
    vocabs = {f.name: Vocabulary.from_values(np.arange(sizes[f.name])) for f in schema.fields}
    folder = save_model(tmp_path / "m", model, vocabs, onnx=to_onnx(model))
    ids = dict(zip(schema.names, example_ids(model, 33, 5, 1)))
    with torch.no_grad():
        want = torch.sigmoid(model(ids)).double().numpy()
    np.testing.assert_allclose(OnnxModel(folder)({n: x.numpy() for n, x in ids.items()}), want, rtol=0, atol=1e-5)
    loaded = load_model(folder)[0]  # state_dict + config() rebuild the id lists
    with torch.no_grad():
        np.testing.assert_allclose(torch.sigmoid(loaded(ids)).double().numpy(), want, rtol=0, atol=1e-6)
