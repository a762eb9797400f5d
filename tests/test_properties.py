"""Property-based tests (hypothesis) of the boundaries (issue 9): growing vocabularies, ``top_indices`` on
every integer and float dtype, Saec's ``compress_field`` on random tables and counts, the config
layer on random TOML-like documents, and loading a saved model after a random byte edit. Each test is bounded (``max_examples``) so the file runs in seconds."""

import datetime
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from saec.cluster.kmeans import top_indices
from saec.cluster.saec import SaecConfig, compress_field, mask_dtype
from saec.data.schema import POOLINGS
from saec.data.tabular import DATA_KEYS, FIELD_KEYS, SECTIONS, TableSpec, spec_from_dict
from saec.data.vocab import OOV_ID, Vocabulary
from saec.errors import SaecError

# database=None: no example database (hypothesis still keeps a small self-ignored cache in .hypothesis/)
FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# -- vocabularies: ordering, growth, OOV -----------------------------------------------------------
values = st.sampled_from(list("abcdefghij"))
batches = st.lists(st.lists(values, max_size=30), min_size=1, max_size=5)


class ReferenceVocabulary:
    """What the module docstring of saec.data.vocab promises, written out plainly."""

    def __init__(self, min_count):
        self.min_count, self.ids, self.total = min_count, {}, {}

    def update(self, batch):
        seen = list(dict.fromkeys(batch))  # first-appearance order within the batch
        for v in batch:
            self.total[v] = self.total.get(v, 0) + 1
        new = [v for v in seen if v not in self.ids and self.total[v] >= self.min_count]
        for v in sorted(new, key=lambda v: (-self.total[v], seen.index(v))):  # most frequent first, then seen
            self.ids[v] = len(self.ids)


@FAST
@given(batches, st.integers(1, 3))
def test_vocabulary_grows_without_renumbering_and_keeps_counts(batches, min_count):
    vocab, ref = Vocabulary(min_count=min_count), ReferenceVocabulary(min_count)
    for batch in batches:
        before = {v: int(vocab.encode([v])[0]) for v in vocab.values}
        vocab.update(batch)
        ref.update(batch)
        assert {v: int(vocab.encode([v])[0]) for v in before} == before  # ids never renumbered
        assert list(vocab.values) == list(ref.ids)  # same values, same ids, same order
        assert vocab.counts.tolist() == [ref.total[v] for v in ref.ids]  # counts kept (pending ones too)
    unknown = [v for v in "abcdefghijz" if v not in ref.ids]
    assert (vocab.encode(unknown) == OOV_ID).all()  # unseen or still rarer than min_count
    ids = np.arange(len(vocab))
    assert vocab.encode(vocab.decode(ids)).tolist() == ids.tolist()
    restored = Vocabulary.from_dict(vocab.to_dict())
    assert list(restored.values) == list(vocab.values) and restored.counts.tolist() == vocab.counts.tolist()


@FAST
@given(st.lists(values, min_size=1, max_size=60))
def test_a_fresh_vocabulary_ranks_by_frequency_then_first_appearance(observations):
    vocab = Vocabulary.from_values(observations)
    counts = vocab.counts.tolist()
    assert counts == sorted(counts, reverse=True)
    first = {v: observations.index(v) for v in vocab.values}
    for a, b in zip(vocab.values[:-1], vocab.values[1:]):
        assert counts[vocab.encode([a])[0]] > counts[vocab.encode([b])[0]] or first[a] < first[b]


# -- top_indices on every dtype --------------------------------------------------------------------
DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64]


@st.composite
def counts_arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    elements = hnp.from_dtype(dtype, allow_nan=False) if dtype.kind == "f" else hnp.from_dtype(dtype)
    arr = draw(hnp.arrays(dtype, st.integers(0, 40), elements=elements))
    return arr, draw(st.integers(0, len(arr) + 2))


@FAST
@given(counts_arrays())
def test_top_indices_matches_a_reference_stable_sort(case):
    counts, n = case
    # Python numbers compare exactly whatever the dtype (uint64 beyond 2**63 too); ties: lower index first
    reference = sorted(range(len(counts)), key=lambda i: (-counts[i].item(), i))
    assert top_indices(counts, n).tolist() == reference[:n]


@FAST
@given(st.integers(1, 30), st.data())
def test_top_indices_refuses_nan(length, data):
    counts = np.ones(length)
    counts[data.draw(st.integers(0, length - 1))] = np.nan
    with pytest.raises(SaecError, match="NaN"):
        top_indices(counts, data.draw(st.integers(0, length)))


# -- Saec's compress_field: codebook and mask invariants -------------------------------------------
@st.composite
def saec_cases(draw):
    n, d = draw(st.integers(1, 60)), draw(st.integers(1, 4))
    weight = draw(hnp.arrays(np.float32, (n, d), elements=st.floats(-100, 100, width=32)))
    k = draw(st.integers(1, min(n, 8)))
    kind = draw(st.sampled_from([None, np.uint32, np.int64, np.float64, np.uint8]))
    counts = None
    if kind is not None:
        top = 255 if kind == np.uint8 else 10**6
        counts = np.asarray(draw(st.lists(st.integers(0, top), min_size=n, max_size=n)), dtype=kind)
    top_n = draw(st.one_of(st.none(), st.integers(k, n + 5)))
    cfg = SaecConfig(k=k, eligibility=1.0, top_n=top_n, fast=draw(st.booleans()),
                     init=draw(st.sampled_from(["random", "kmeans++", "topk"])), niter=draw(st.integers(1, 5)),
                     seed=draw(st.integers(0, 1000)))
    return weight, counts, cfg


@FAST
@given(saec_cases())
def test_compress_field_codebook_and_mask_invariants(case):
    weight, counts, cfg = case
    r = compress_field("f", weight, counts, cfg)
    n, d = weight.shape
    assert r.size.clustered and r.size.k == cfg.k
    assert r.codebook.shape == (cfg.k, d) and r.codebook.dtype == np.float32 and np.isfinite(r.codebook).all()
    assert r.mask.shape == (n,) and r.mask.dtype == mask_dtype(cfg.k)
    assert int(r.mask.max()) < cfg.k
    # every row is assigned to its nearest centroid (up to float32 rounding of the distances)
    dist = ((weight[:, None, :].astype(np.float64) - r.codebook[None].astype(np.float64)) ** 2).sum(-1)
    chosen = dist[np.arange(n), r.mask.astype(np.int64)]
    assert (chosen <= dist.min(axis=1) + 1e-3 * (1 + dist.min(axis=1))).all()
    assert r.trained_on == (min(cfg.train_size, n) if cfg.fast else n)


# -- the config layer on random TOML-like documents ------------------------------------------------
scalars = st.one_of(st.text(max_size=6), st.integers(-3, 40), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.dates(),
                    st.sampled_from(["mean", "sum", "log.csv", "click", "ts", "|", "", "user"]))
toml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                           max_leaves=6)
split_values = st.one_of(st.sampled_from([[0.8, 0.1, 0.1], [1, 0, 0], [0.3, 0.3, 0.4], [0.5, 0.5],
                                          [0.6, 0.2, 0.2, 0.0], [0.7, 0.2, 0.2], [-0.1, 0.6, 0.5]]),
                         st.lists(st.floats(-1, 2), min_size=3, max_size=3))


def mostly(plausible):
    """Usually a plausible value for the key (still sometimes out of range), now and then anything."""
    return st.integers(0, 7).flatmap(lambda r: toml_values if r == 7 else plausible)  # hypothesis favours 0


def field_value(key):
    plausible = {"name": st.sampled_from(["user", "item", "tags", "city", "click", ""]),
                 "dim": st.one_of(st.integers(1, 32), st.sampled_from([0, -1, 16.7])), "multi_valued": st.booleans(),
                 "pooling": st.sampled_from(["mean", "sum", "max"]), "sep": st.sampled_from([" ", "|", ""]),
                 "max_len": st.integers(0, 20), "min_count": st.integers(0, 5)}
    return mostly(plausible[key]) if key in plausible else toml_values


def data_value(key):
    plausible = {"path": st.sampled_from(["log.csv", "/abs/log.parquet", ""]),
                 "label": st.sampled_from(["click", "y", "user"]), "time": st.sampled_from(["ts", "ts", ""]),
                 "label_threshold": st.one_of(st.floats(-10, 10), st.floats(allow_nan=True, allow_infinity=True)),
                 "splits": split_values, "dim": st.one_of(st.integers(1, 32), st.sampled_from([0, 2.5]))}
    return mostly(plausible[key]) if key in plausible else toml_values


@st.composite
def toml_documents(draw):
    """Mostly well-formed documents, each with a few random changes (wrong types, unknown keys, omissions)."""
    fields = []
    for _ in range(draw(st.integers(1, 3)) if draw(st.integers(0, 9)) < 9 else 0):  # none: invalid
        keys = ["name"] + draw(st.lists(st.sampled_from(FIELD_KEYS[1:] + ("multivalued", "x")), max_size=3,
                                        unique=True))
        if draw(st.integers(0, 9)) == 9:
            keys.remove("name")
        fields.append({k: draw(field_value(k)) for k in keys})
    data_keys = ["path", "label"] + draw(st.lists(st.sampled_from(DATA_KEYS[2:] + ("dims",)), max_size=3,
                                                  unique=True))
    if draw(st.integers(0, 9)) == 9:
        data_keys.remove(draw(st.sampled_from(["path", "label"])))
    doc = {"data": {k: draw(data_value(k)) for k in data_keys}, "fields": fields}
    if draw(st.integers(0, 9)) == 9:
        doc[draw(st.sampled_from(["data", "fields", "model", "extra"]))] = draw(toml_values)
    return doc


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_finite_number(x):
    if not is_number(x):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def is_int(x, lo):
    return isinstance(x, int) and not isinstance(x, bool) and x >= lo


def valid_field(f, default_dim):
    f = {"dim": default_dim, "multi_valued": False, "pooling": "mean", "sep": " ", "max_len": 16, "min_count": 1,
         **f}
    return (isinstance(f["name"], str) and f["name"] != "" and is_int(f["dim"], 1)
            and isinstance(f["multi_valued"], bool) and f["pooling"] in POOLINGS and isinstance(f["pooling"], str)
            and isinstance(f["sep"], str) and is_int(f["max_len"], 1) and is_int(f["min_count"], 1)
            and not (f["multi_valued"] and f["sep"] == ""))


def is_valid(doc):
    """The rules of a data description (saec.data.tabular's docstring and issue 9), written independently."""
    if set(doc) - set(SECTIONS) or not isinstance(doc.get("data"), dict):
        return False
    data, fields = doc["data"], doc.get("fields")
    if set(data) - set(DATA_KEYS) or not {"path", "label"} <= set(data):
        return False
    dim = data.get("dim", 16)
    if not is_int(dim, 1) or not isinstance(fields, list) or not fields:
        return False
    if not all(isinstance(f, dict) and "name" in f and not set(f) - set(FIELD_KEYS) and valid_field(f, dim)
               for f in fields):
        return False
    names = [f["name"] for f in fields]
    label, time, splits = data["label"], data.get("time"), data.get("splits", [0.8, 0.1, 0.1])
    return (isinstance(data["path"], str) and data["path"] != "" and isinstance(label, str) and label != ""
            and (time is None or isinstance(time, str) and time != "")
            and ("label_threshold" not in data or is_finite_number(data["label_threshold"]))
            and isinstance(splits, list) and len(splits) == 3
            and all(is_finite_number(x) and x >= 0 for x in splits) and math.isclose(sum(splits), 1.0)
            and len(set(names)) == len(names) and label not in names)


@settings(FAST, max_examples=300)
@given(toml_documents())
def test_config_layer_accepts_exactly_the_valid_documents(doc):
    valid = is_valid(doc)
    try:
        spec = spec_from_dict(doc, Path("/base"))
    except SaecError as e:  # any other exception fails the test: the layer never crashes
        assert not valid, f"refused a valid document: {e}"
        assert str(e)  # a message, naming what is wrong
        return
    assert valid, f"accepted an invalid document {doc!r}"
    assert isinstance(spec, TableSpec) and [f.name for f in spec.fields] == [f["name"] for f in doc["fields"]]
    assert spec.path.is_absolute()


def test_the_document_generator_produces_both_kinds():
    """Guard against a vacuous property: the generator yields valid and invalid documents alike."""
    seen = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(toml_documents())
    def collect(doc):
        seen.add(is_valid(doc))

    collect()
    assert seen == {True, False}


def test_dates_are_not_numbers():
    # TOML has date values; they are no split fraction, threshold or dim
    doc = {"data": {"path": "a.csv", "label": "y", "label_threshold": datetime.date(2024, 1, 1)},
           "fields": [{"name": "u"}]}
    with pytest.raises(SaecError, match="label_threshold must be a finite number"):
        spec_from_dict(doc)


# -- artifacts: any byte edit of any file is refused, naming the file ----------------------------------
@pytest.fixture(scope="module")
def saved_compressed_model(tmp_path_factory):
    from saec.cluster.saec import SaecConfig as Cfg
    from saec.compression import compress_model
    from saec.data import Field, Schema
    from saec.io import save_model
    from saec.models import build_model

    schema = Schema((Field("user", 8), Field("tag", 4, multi_valued=True)))
    vocabs = {"user": Vocabulary.from_values([str(i % 700) for i in range(3000)]),
              "tag": Vocabulary.from_values([str(i % 9) for i in range(100)])}
    model = build_model("dssm", schema, {n: len(v) for n, v in vocabs.items()}, hidden=(8,))
    compressed, _ = compress_model(model, {n: v.counts for n, v in vocabs.items()}, Cfg(k=8, eligibility=10))
    path = save_model(tmp_path_factory.mktemp("artifact") / "saec", compressed, vocabs)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return path, {p: p.read_bytes() for p in files}


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(min_value=0), where=st.floats(min_value=0, max_value=1, exclude_max=True),
       byte=st.integers(min_value=0, max_value=255), insert=st.booleans())
def test_any_byte_edit_of_a_saved_model_is_refused_naming_the_file(saved_compressed_model, which, where, byte, insert):
    from saec.io import load_model

    path, originals = saved_compressed_model
    target = sorted(originals)[which % len(originals)]
    data = originals[target]
    pos = int(where * len(data))
    edited = data[:pos] + bytes([byte]) + data[pos:] if insert else data[:pos] + bytes([byte]) + data[pos + 1:]
    if edited == data:
        return  # the same byte written back: nothing was edited
    try:
        target.write_bytes(edited)
        with pytest.raises(SaecError) as e:
            load_model(path)
        assert path.name in str(e.value) or target.name in str(e.value)
    finally:
        target.write_bytes(data)
