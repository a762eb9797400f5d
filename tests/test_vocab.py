import numpy as np
import pytest

from saec.data.vocab import OOV_ID, Vocabulary


def test_ids_ranked_by_frequency_ties_by_first_appearance():
    v = Vocabulary.from_values(["b", "a", "c", "a", "c", "a", "d"])
    assert list(v.values) == ["a", "c", "b", "d"]  # a:3, c:2, then b and d (1 each) in order seen
    assert v.counts.tolist() == [3, 2, 1, 1]
    assert v.encode(["a", "d", "zzz"]).tolist() == [0, 3, OOV_ID]
    assert v.decode([0, OOV_ID]) == ["a", None]


def test_growth_appends_and_never_renumbers():
    v = Vocabulary.from_values(["x", "y", "y"])
    before = v.encode(["x", "y"]).tolist()
    added = v.update(["z", "x", "x", "x", "w", "w"])
    assert added == 2
    assert v.encode(["x", "y"]).tolist() == before  # existing ids stay
    assert v.encode(["w", "z"]).tolist() == [2, 3]  # new ones after, most frequent first
    assert v.counts.tolist() == [2, 4, 2, 1]  # y, x, w, z


def test_min_count_keeps_pending_counts_until_admitted():
    v = Vocabulary(min_count=3)
    v.update(["a", "a", "a", "b", "b"])
    assert len(v) == 1 and v.encode(["b"]).tolist() == [OOV_ID]
    v.update(["b"])  # third sighting of b
    assert v.encode(["b"]).tolist() == [1] and v.counts.tolist() == [3, 3]


def test_missing_values_are_ignored_and_encode_to_oov():
    v = Vocabulary.from_values(np.array(["a", None, "a"], dtype=object))
    assert len(v) == 1
    assert v.encode(np.array([None, "a"], dtype=object)).tolist() == [OOV_ID, 0]


def test_integer_values_and_round_trip():
    v = Vocabulary.from_values(np.array([5, 7, 7, 9, 9, 9], dtype=np.int64), min_count=2)
    w = Vocabulary.from_dict(v.to_dict())
    assert list(w.values) == [9, 7]
    assert w.counts.tolist() == v.counts.tolist()
    w.update([5])  # the pending count of 5 survived the round trip
    assert w.encode([5]).tolist() == [2]


def test_counts_are_read_only_and_bad_arguments_fail():
    v = Vocabulary.from_values(["a"])
    with pytest.raises(ValueError):
        v.counts[0] = 5
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary(min_count=0)
    with pytest.raises(IndexError):
        v.decode([3])
    with pytest.raises(ValueError, match="corrupted"):
        Vocabulary.from_dict({"min_count": 1, "values": ["a", "b"], "counts": [1]})


@pytest.mark.parametrize("values", [[5, 3, 5, 9, 3, 5, 7], ["b", "a", "b", "c", "b", "z"], []])
def test_to_arrays_round_trips_integer_values_as_an_array_and_others_in_the_json_part(values):
    v = Vocabulary.from_values(values, min_count=2)
    meta, arrays = v.to_arrays()
    integer = bool(values) and isinstance(values[0], int)
    assert (meta["values"] is None) == integer and ("values" in arrays) == integer
    assert arrays["counts"].dtype == np.int64
    back = Vocabulary.from_arrays(meta, arrays)
    assert list(back.values) == list(v.values) and back.counts.tolist() == v.counts.tolist()
    assert back.pending == v.pending and back.min_count == 2
    assert back.encode(values).tolist() == v.encode(values).tolist()


def test_a_read_vocabulary_is_indexed_at_first_use_and_repeats_are_refused_then():
    values = np.arange(10, 0, -1, dtype=np.int64)
    meta, arrays = Vocabulary.from_values(values).to_arrays()
    loaded = Vocabulary.from_arrays(meta, arrays)
    assert loaded._raw is not None and len(loaded) == 10  # nothing hashed yet
    again_meta, again = loaded.to_arrays()  # written back without an index
    assert loaded._raw is not None and again_meta == meta and np.array_equal(again["values"], arrays["values"])
    assert loaded.encode([3, 99]).tolist() == [7, OOV_ID]
    assert loaded._raw is not None and loaded._sorted is not None and len(loaded._indexed) == 0  # sorted, not hashed
    assert loaded.update([3, 42]) == 1 and loaded._sorted is None and loaded.encode([42]).tolist() == [10]
    arrays["values"][4] = arrays["values"][0]  # a repeated value that checksums would not catch (saec did not write it)
    bad = Vocabulary.from_arrays(meta, arrays)
    with pytest.raises(ValueError, match="repeated values, e.g. 10"):
        bad.check()
    with pytest.raises(ValueError, match="repeated values"):
        bad.encode([1])


def test_large_integer_vocabularies_are_looked_up_in_their_sorted_arrays_as_a_hash_index_would(monkeypatch):
    import saec.data.vocab as vocab_module

    monkeypatch.setattr(vocab_module, "SORTED_LOOKUP", 100)  # "large" for this test
    rng = np.random.default_rng(0)
    raw = rng.choice(10**12, size=500, replace=False).astype(np.int64)
    v = Vocabulary.from_values(np.concatenate([raw, raw[:50]]))
    meta, arrays = v.to_arrays()
    assert np.array_equal(arrays["values"][arrays["order"]], arrays["sorted"]) and np.all(np.diff(arrays["sorted"]) > 0)
    loaded = Vocabulary.from_arrays(meta, arrays).check()
    ints = np.array([*raw[::7], -5, 10**13, raw[3]])
    assert loaded.encode(ints).tolist() == v.encode(ints).tolist()
    assert loaded.encode(ints.astype(np.uint64)[:-3]).tolist() == v.encode(ints[:-3]).tolist()
    assert loaded.encode(raw).tolist() == v.encode(raw).tolist()
    assert int(raw[9]) in loaded and -5 not in loaded and np.int32(7) not in loaded
    assert loaded.decode([0, 3, OOV_ID]) == v.decode([0, 3, OOV_ID])
    assert loaded._raw is not None and len(loaded._indexed) == 0  # looked up without hashing a value
    probe = np.array([int(raw[3]), None, float(raw[4]), 2.5, "x", np.int32(7)], dtype=object)
    assert loaded.encode(probe).tolist() == v.encode(probe).tolist()  # other types: the hash index, as always
    again_meta, again = loaded.to_arrays()  # written back as read
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays) and again_meta == meta
    small = Vocabulary.from_values(raw[:99]).to_arrays()[1]
    assert "sorted" not in small and "order" not in small  # below the threshold: the hash index, as before
    for key, damage in (("sorted", lambda a: a.__setitem__(slice(0, 2), a[1::-1])),  # out of order
                        ("order", lambda a: a.__setitem__(slice(0, 2), a[1::-1]))):  # ids swapped
        bad = {k: a.copy() for k, a in arrays.items()}
        damage(bad[key])
        with pytest.raises(ValueError, match="corrupted vocabulary: its sorted values"):
            Vocabulary.from_arrays(meta, bad).check()
    with pytest.raises(ValueError, match="expected both or neither"):
        Vocabulary.from_arrays(meta, {k: a for k, a in arrays.items() if k != "order"})
    loaded.update([int(raw[0]), 123])  # growing it goes back to the hash index
    assert loaded._sorted is None and loaded.encode([123]).tolist() == [500]
