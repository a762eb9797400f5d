import numpy as np
import pandas as pd
import pytest

from saec.data import CTRData, Field, Schema, encode_frame, fit_vocabs
from saec.data.task import build_task, split_by_time
from saec.data.vocab import OOV_ID, PAD_ID

SCHEMA = Schema((Field("user", 4), Field("tags", 3, multi_valued=True, sep="|", max_len=2)), label="y", time="t")


def frame():
    return pd.DataFrame({
        "user": ["u1", "u2", "u1", "u3"],
        "tags": ["a|b", "b", "", "c|a|b"],
        "y": [1, 0, 1, 0],
        "t": [3, 1, 2, 4],
    })


def test_encode_single_and_multi_valued():
    df = frame()
    vocabs = fit_vocabs(df, SCHEMA)
    assert list(vocabs["tags"].values) == ["b", "a", "c"]
    data = encode_frame(df, SCHEMA, vocabs)
    assert data.ids["user"].tolist() == [0, 1, 0, 2]
    # max_len=2 keeps the first two values; an empty list becomes one OOV entry
    assert data.ids["tags"].tolist() == [[1, 0], [0, PAD_ID], [OOV_ID, PAD_ID], [2, 1]]
    assert data.labels.dtype == np.float32


def test_unknown_values_become_oov_and_labels_are_checked():
    df = frame()
    vocabs = fit_vocabs(df.iloc[:2], SCHEMA)
    data = encode_frame(df, SCHEMA, vocabs)
    assert data.ids["user"].tolist() == [0, 1, 0, OOV_ID]
    bad = df.assign(y=[1, 0, 2, 0])
    with pytest.raises(ValueError, match="row 2"):
        encode_frame(bad, SCHEMA, vocabs)
    with pytest.raises(ValueError, match="not in the data"):
        fit_vocabs(df.drop(columns="user"), SCHEMA)


def test_split_by_time_has_no_future_in_training():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"t": rng.permutation(1000), "x": np.arange(1000)})
    train, valid, test = split_by_time(df, "t", (0.7, 0.2, 0.1))
    assert (len(train), len(valid), len(test)) == (700, 200, 100)
    assert train.t.max() < valid.t.min() and valid.t.max() < test.t.min()
    with pytest.raises(ValueError, match="fractions"):
        split_by_time(df, "t", (0.5, 0.2, 0.2))


def test_task_vocab_comes_from_training_split_only():
    df = frame()
    task = build_task("toy", df, SCHEMA, (0.5, 0.25, 0.25))
    # training rows are t=1,2 (u2, u1); u3 appears only at t=4
    assert set(task.vocabs["user"].values) == {"u1", "u2"}
    assert task.test.ids["user"].tolist() == [OOV_ID]


def test_batches_cover_everything_and_shuffle_is_seeded():
    data = CTRData({"a": np.arange(10)}, np.zeros(10))
    seen = np.concatenate([b["a"].numpy() for b, _ in data.batches(3, shuffle=True, seed=1)])
    assert sorted(seen) == list(range(10))
    again = np.concatenate([b["a"].numpy() for b, _ in data.batches(3, shuffle=True, seed=1)])
    assert (seen == again).all()
    with pytest.raises(ValueError, match="do not match"):
        CTRData({"a": np.arange(3)}, np.zeros(4))


def test_schema_errors():
    with pytest.raises(ValueError, match="duplicate"):
        Schema((Field("a", 2), Field("a", 3)))
    with pytest.raises(ValueError, match="dim"):
        Field("a", 0)
    with pytest.raises(ValueError, match="pooling"):
        Field("a", 2, pooling="max")
    assert Schema.from_dict(SCHEMA.to_dict()) == SCHEMA
