import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import ndcg_score, roc_auc_score

from saec.train.metrics import auc, log_loss, ndcg_at_k, ndcg_from_rank


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_logloss_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 5000)
    p = rng.random(5000)
    p[:500] = np.round(p[:500], 1)  # ties
    assert abs(auc(y, p) - roc_auc_score(y, p)) < 1e-6
    assert abs(log_loss(y, p) - sk_log_loss(y, p)) < 1e-6


def test_ndcg_matches_sklearn_and_single_relevant_shortcut():
    rng = np.random.default_rng(0)
    rel = rng.integers(0, 3, (50, 30)).astype(float)
    s = rng.random((50, 30))
    assert abs(ndcg_at_k(rel, s, 10) - ndcg_score(rel, s, k=10)) < 1e-9
    one_hot = np.zeros((40, 30))
    target = rng.integers(0, 30, 40)
    one_hot[np.arange(40), target] = 1
    rank = (s[:40] > s[np.arange(40), target][:, None]).sum(axis=1)
    assert abs(ndcg_from_rank(rank, 10) - ndcg_at_k(one_hot, s[:40], 10)) < 1e-12


def test_metric_errors():
    with pytest.raises(ValueError, match="both"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="length"):
        log_loss([1, 0], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        auc([1, 0], [np.nan, 0.1])
