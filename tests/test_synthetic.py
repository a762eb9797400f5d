"""The synthetic QQ-browser-like trace (saec.data.synthetic): determinism, growth, length mix,
Zipf frequency, the known click model and the tables for compression benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from saec.data.synthetic import (
    PRESETS,
    Segment,
    SyntheticTrace,
    TraceConfig,
    encode_segment,
    zipf_pmf,
    zipf_sample,
)
from saec.data.vocab import OOV_ID
from saec.train.metrics import auc, log_loss


@pytest.fixture(scope="module")
def tiny() -> SyntheticTrace:
    return SyntheticTrace(TraceConfig.preset("tiny"))


@pytest.fixture(scope="module")
def tiny_segments(tiny: SyntheticTrace) -> list[Segment]:
    return list(tiny.segments())


def assert_same(a: Segment, b: Segment) -> None:
    assert a.hour == b.hour
    assert list(a.raw) == list(b.raw)
    for name in a.raw:
        assert a.raw[name].dtype == np.int64
        np.testing.assert_array_equal(a.raw[name], b.raw[name])
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.prob, b.prob)


# -- determinism ---------------------------------------------------------------------------------
def test_same_config_gives_identical_segments(tiny: SyntheticTrace) -> None:
    again = SyntheticTrace(TraceConfig.preset("tiny"))
    assert again.bias == tiny.bias
    for h in (0, 3):
        assert_same(tiny.segment(h), again.segment(h))


def test_different_seed_differs(tiny: SyntheticTrace) -> None:
    other = SyntheticTrace(TraceConfig.preset("tiny", seed=1))
    a, b = tiny.segment(2), other.segment(2)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.raw["f00"], b.raw["f00"])
    assert not np.array_equal(a.prob, b.prob)


def test_segment_does_not_depend_on_generation_order(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    fresh = SyntheticTrace(TraceConfig.preset("tiny"))
    last = tiny.config.hours - 1
    assert_same(fresh.segment(last), tiny_segments[last])  # generated first vs after all others
    assert_same(fresh.segment(1), tiny_segments[1])
    assert [s.hour for s in tiny.segments(2, 4)] == [2, 3]


def test_segment_shapes(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    cfg = tiny.config
    seg = tiny_segments[0]
    assert len(seg) == cfg.samples_per_hour
    assert list(seg.raw) == tiny.schema.names
    assert seg.labels.dtype == np.float32 and seg.prob.dtype == np.float64
    assert set(np.unique(seg.labels)) == {0.0, 1.0}
    assert ((seg.prob > 0) & (seg.prob < 1)).all()


# -- growth --------------------------------------------------------------------------------------
def test_universe_grows_by_growth_factor(tiny: SyntheticTrace) -> None:
    cfg = tiny.config
    sizes = np.stack([tiny.universe(h) for h in range(cfg.hours)])
    assert (np.diff(sizes, axis=0) >= 0).all()
    np.testing.assert_array_equal(sizes[-1], tiny.field_sizes)
    assert sizes[-1].sum() == cfg.final_features
    ratio = sizes[-1].sum() / sizes[0].sum()
    assert abs(ratio - cfg.growth) / cfg.growth < 0.1, ratio
    start, stop = tiny.born(cfg.hours - 1)
    np.testing.assert_array_equal(stop, sizes[-1])
    np.testing.assert_array_equal(start, sizes[-2])


def test_observed_vocabulary_grows_roughly_tenfold(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    vocabs: dict = {}
    sizes, new_per_hour = [], []
    for seg in tiny_segments:
        before = sum(len(v) for v in vocabs.values())
        encode_segment(seg, vocabs, grow=True)
        sizes.append(sum(len(v) for v in vocabs.values()))
        new_per_hour.append(sizes[-1] - before)
    assert 5.0 <= sizes[-1] / sizes[0] <= 20.0, sizes
    assert min(new_per_hour) > 0.05 * sizes[0]  # features keep arriving every hour
    # Observed vocabulary is a subset of the universe.
    assert sizes[-1] <= tiny.config.final_features


def test_features_born_this_hour_appear_in_its_segment(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    h = 3
    start, stop = tiny.born(h)
    f = int(np.argmax(stop - start))
    j = tiny.feature_index(f, tiny_segments[h].raw[tiny.names[f]])
    fresh = (j >= start[f]) & (j < stop[f])
    share = fresh.mean()
    assert 0.5 * tiny.config.new_feature_share < share < 0.5, share
    assert j.max() < stop[f]


# -- field sizes and vector lengths --------------------------------------------------------------
def test_length_mix_close_to_paper() -> None:
    trace = SyntheticTrace(TraceConfig(n_fields=96, final_features=300_000))
    assert abs(trace.long_share() - 0.11) < 0.01
    assert {f.dim for f in trace.schema.fields} == {9, 17}
    assert trace.schema.names[:2] == ["f00", "f01"] and trace.schema.label == "label"
    dims = np.array([f.dim for f in trace.schema.fields])
    np.testing.assert_array_equal(dims, trace.dims)


def test_field_sizes_heavy_tailed_at_default_scale() -> None:
    sizes = SyntheticTrace(TraceConfig()).field_sizes
    assert (sizes < 10_000).mean() >= 0.75
    assert 0.0 < (sizes > 100_000).mean() <= 0.1
    assert sizes.sum() == TraceConfig().final_features


# -- Zipf ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [0.5, 1.0, 1.0 + 1e-9, 1.1, 2.5])
def test_zipf_sampler_matches_its_pmf(s: float) -> None:
    n = 40
    pmf = zipf_pmf(np.arange(n), n, s)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert (np.diff(pmf) < 0).all()
    draws = zipf_sample(np.random.default_rng(0).random(200_000), n, s)
    assert draws.min() >= 0 and draws.max() < n
    freq = np.bincount(draws, minlength=n) / len(draws)
    np.testing.assert_allclose(freq, pmf, atol=4e-3)


def test_zipf_uniform_exponent_and_huge_support() -> None:
    np.testing.assert_allclose(zipf_pmf(np.arange(10), 10, 0.0), 0.1)
    # A support of 10^12 ranks needs no memory beyond the draws (no probability vector).
    big = zipf_sample(np.random.default_rng(1).random(100_000), 10**12, 1.1)
    assert big.min() == 0 and big.max() < 10**12
    assert np.median(big) < 1000  # heavy head even over a huge support


def test_feature_frequency_is_heavily_skewed(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    counts = []
    for name in tiny.names:
        _, c = np.unique(np.concatenate([s.raw[name] for s in tiny_segments]), return_counts=True)
        counts.append(c)
    c = np.sort(np.concatenate(counts))[::-1]
    top = max(1, len(c) // 100)
    assert c[:top].sum() / c.sum() > 0.25  # uniform frequency would give ~1%
    assert np.median(c) < 0.1 * c.mean()  # most features are rare


# -- the click model -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_ctr_and_bayes_metrics_are_sane(seed: int) -> None:
    trace = SyntheticTrace(TraceConfig.preset("tiny", seed=seed))
    segs = list(trace.segments())
    ctr = np.mean([s.ctr for s in segs])
    assert 0.05 < ctr < 0.35, ctr
    for s in segs:
        assert 0.6 < s.bayes_auc < 0.95, s.bayes_auc
        constant = log_loss(s.labels, np.full(len(s), s.labels.mean()))
        assert s.bayes_logloss < constant
    # Labels follow prob: mean label and mean prob agree within sampling error over the trace.
    labels = np.concatenate([s.labels for s in segs])
    prob = np.concatenate([s.prob for s in segs])
    assert abs(labels.mean() - prob.mean()) < 4 * np.sqrt(prob.mean() / len(prob))


def test_true_prob_beats_shuffled_prob(tiny_segments: list[Segment]) -> None:
    rng = np.random.default_rng(0)
    for s in tiny_segments:
        shuffled = rng.permutation(s.prob)
        assert s.bayes_auc > auc(s.labels, shuffled) + 0.15
        assert s.bayes_logloss < log_loss(s.labels, shuffled)


def test_click_prob_reproduces_segment_prob(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    seg = tiny_segments[2]
    idx = {n: tiny.feature_index(n, seg.raw[n]) for n in tiny.names}
    np.testing.assert_allclose(tiny.click_prob(idx), seg.prob, rtol=1e-12)


def test_groups_carry_the_signal(tiny: SyntheticTrace) -> None:
    """Features of a group share an effect, so their click rates are similar (§2.2.1)."""
    f = int(np.argmax(tiny.field_std))
    j = np.arange(tiny.field_sizes[f])
    g = tiny.feature_groups(f, j)
    assert g.min() >= 0 and g.max() < tiny.config.groups
    np.testing.assert_array_equal(g, tiny.feature_groups(tiny.names[f], j))
    own = tiny.effects[f, g] + tiny._deviation(f, j)
    within = np.mean([own[g == k].var() for k in np.unique(g) if (g == k).sum() > 1])
    assert within < 0.25 * own.var()


# -- raw ids and encoding ------------------------------------------------------------------------
def test_raw_ids_round_trip_and_are_unique_across_fields(tiny: SyntheticTrace) -> None:
    j = np.arange(500)
    raws = [tiny.raw_ids(f, j) for f in range(tiny.config.n_fields)]
    for f, r in enumerate(raws):
        assert r.min() >= 0
        np.testing.assert_array_equal(tiny.feature_index(f, r), j)
    assert len(np.unique(np.concatenate(raws))) == 500 * tiny.config.n_fields
    with pytest.raises(ValueError, match="not features of field"):
        tiny.feature_index(1, raws[0])


def test_encode_segment_streaming(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    vocabs: dict = {}
    train = encode_segment(tiny_segments[0], vocabs, grow=True)
    assert set(vocabs) == set(tiny.schema.names)
    assert len(train) == len(tiny_segments[0])
    assert all((v >= 0).all() for v in train.ids.values())  # trained hour is fully known
    sizes = {n: len(v) for n, v in vocabs.items()}
    test = encode_segment(tiny_segments[1], vocabs, grow=False)
    assert {n: len(v) for n, v in vocabs.items()} == sizes  # evaluation does not grow
    oov = np.mean([(v == OOV_ID).mean() for v in test.ids.values()])
    assert 0.0 < oov < 0.5
    np.testing.assert_array_equal(test.labels, tiny_segments[1].labels)
    with pytest.raises(ValueError, match="no vocabulary"):
        encode_segment(tiny_segments[1], {}, grow=False)


# -- tables --------------------------------------------------------------------------------------
def test_field_counts_match_sampled_frequencies(tiny: SyntheticTrace, tiny_segments: list[Segment]) -> None:
    h = 3
    f = int(np.argmax(tiny.field_sizes))
    counts = tiny.field_counts(h, f)
    assert counts.dtype == np.int64 and len(counts) == tiny.universe(h)[f] and counts.min() >= 1
    seen = np.zeros(len(counts))
    for s in tiny_segments[: h + 1]:
        seen += np.bincount(tiny.feature_index(f, s.raw[tiny.names[f]]), minlength=len(counts))
    top = np.argsort(-counts)[:30]
    assert np.abs(seen[top] - counts[top]).sum() / counts[top].sum() < 0.15
    assert counts.sum() == pytest.approx(tiny.config.samples_per_hour * (h + 1), rel=0.1)


def test_tables_vectors_cluster_by_group(tiny: SyntheticTrace) -> None:
    h = tiny.config.hours - 1
    tables = tiny.tables(h)
    assert [t.name for t in tables] == tiny.schema.names
    assert sum(len(t) for t in tables) == tiny.config.final_features
    f = int(np.argmax(tiny.field_sizes))
    t = tables[f]
    assert t.vectors.dtype == np.float32 and t.vectors.shape == (len(t), t.dim)
    np.testing.assert_array_equal(t.groups, tiny.feature_groups(f, np.arange(len(t))))
    cent = tiny.centroids(f)
    nearest = np.argmin(((t.vectors[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (nearest == t.groups).mean() > 0.9
    # Chunking and hour do not change a vector.
    np.testing.assert_array_equal(tiny.field_vectors(f, 100, 300), t.vectors[100:300])
    np.testing.assert_array_equal(tiny.table(1, f).vectors, t.vectors[: tiny.universe(1)[f]])
    assert tiny.table(h, f, vectors=False).vectors is None


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "param, value",
    [
        ("n_fields", 0),
        ("n_fields", 2.5),
        ("final_features", 5),  # fewer than n_fields * ceil(growth)
        ("hours", 0),
        ("samples_per_hour", 0),
        ("growth", 0.5),
        ("growth", float("nan")),
        ("zipf_exponent", -1.0),
        ("long_dim_share", 1.5),
        ("dims", (9,)),
        ("dims", (0, 17)),
        ("groups", 0),
        ("new_feature_share", 1.0),
        ("field_sigma", -1.0),
        ("ctr", 0.0),
        ("signal", -0.1),
        ("feature_noise", float("inf")),
        ("interactions", -1),
        ("interaction_scale", -1.0),
        ("latent_rank", 0),
        ("seed", -1),
        ("seed", True),
    ],
)
def test_bad_parameters_raise(param: str, value: object) -> None:
    with pytest.raises(ValueError, match=param):
        TraceConfig(**{param: value})


def test_bad_arguments_raise(tiny: SyntheticTrace) -> None:
    with pytest.raises(ValueError, match="preset"):
        TraceConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown TraceConfig"):
        TraceConfig.preset("tiny", n_field=3)
    with pytest.raises(ValueError, match="hour"):
        tiny.segment(tiny.config.hours)
    with pytest.raises(ValueError, match="hour"):
        tiny.universe(-1)
    with pytest.raises(ValueError, match="field"):
        tiny.table(0, "nope")
    with pytest.raises(ValueError, match="noise"):
        tiny.field_vectors(0, 0, 10, noise=-1.0)
    with pytest.raises(ValueError, match="start"):
        list(tiny.segments(3, 1))


def test_presets_are_valid_and_scale() -> None:
    sizes = {name: TraceConfig.preset(name).final_features for name in PRESETS}
    assert TraceConfig.preset("medium") == TraceConfig()
    assert sizes["tiny"] < sizes["small"] < sizes["medium"] < sizes["large"] < sizes["paper"]
    assert sizes["large"] >= 10**7
