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
    assert loaded.encode([3, 99]).tolist() == [7, OOV_ID] and loaded._raw is None
    arrays["values"][4] = arrays["values"][0]  # a repeated value that checksums would not catch (saec did not write it)
    bad = Vocabulary.from_arrays(meta, arrays)
    with pytest.raises(ValueError, match="repeated values, e.g. 10"):
        bad.check()
    with pytest.raises(ValueError, match="repeated values"):
        bad.encode([1])
