import numpy as np
import pytest

from saec.data import movielens
from saec.data.vocab import OOV_ID


def test_movielens_100k_loads_with_its_row_count(ml100k):
    assert len(ml100k.train) + len(ml100k.valid) + len(ml100k.test) == 100_000
    assert ml100k.schema.names == ["user", "item", "age", "gender", "occupation", "zip", "genres", "year"]
    assert ml100k.vocabs["gender"].values.tolist() == ["M", "F"]  # most frequent first
    assert len(ml100k.vocabs["genres"]) == 19
    assert 0.4 < ml100k.train.labels.mean() < 0.7


def test_movielens_1m_loads_with_its_row_count():
    movielens.fetch("movielens-1m", quiet=True)
    frame = movielens.load_ratings("movielens-1m")
    assert len(frame) == 1_000_209
    assert frame.user.nunique() == 6040 and frame.item.nunique() == 3706
    assert frame[["age", "gender", "occupation", "zip", "year", "genres"]].notna().all().all()
    assert set(frame.rating.unique()) == {1, 2, 3, 4, 5}


def test_split_is_by_time_and_unseen_users_are_oov(ml100k):
    frame = movielens.load_ratings("movielens-100k")
    ts = np.sort(frame.timestamp.to_numpy())
    n_train = len(ml100k.train)
    assert ts[n_train - 1] <= ts[n_train]
    # users who first rate after the training period have no id of their own
    assert (ml100k.test.ids["user"] == OOV_ID).any()
    assert (ml100k.train.ids["user"] >= 0).all()


def test_unknown_variant_and_missing_cache(tmp_path):
    with pytest.raises(ValueError, match="unknown MovieLens"):
        movielens.fetch("movielens-20m", cache=tmp_path)
    with pytest.raises(FileNotFoundError, match="saec data fetch"):
        movielens.load_ratings("movielens-100k", cache=tmp_path)
