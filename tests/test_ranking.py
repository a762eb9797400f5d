"""The MEmCom §5.2 ranking task: example construction, the networks, nDCG, RankNet (all synthetic, fast)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from saec.data.ranking import build_ranking_task
from saec.models.ranking import PointwiseRanker, RankNet, ranknet_loss
from saec.nn.base import param_count
from saec.nn.registry import make_embedding
from saec.train.ranking import RankingConfig, evaluate, fit, label_ranks, sample_negatives


def log_of(sequences: dict[str, list[str]], shuffle_seed: int = 0):
    """(users, items, times) of users' item sequences (times 0, 1, ...), rows in a shuffled order."""
    rows = [(u, item, t) for u, seq in sequences.items() for t, item in enumerate(seq)]
    order = np.random.default_rng(shuffle_seed).permutation(len(rows))
    users, items, times = zip(*[rows[i] for i in order])
    return np.array(users), np.array(items), np.array(times)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second thread only adds contention (12x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TEN = [f"i{k}" for k in range(10)]
SEQS = {"a": TEN, "b": TEN[::-1], "c": ["i0", "i1", "i2"]}


@pytest.fixture
def task():
    return build_ranking_task(*log_of(SEQS), history_len=4, examples_per_user=2, min_count=1)


def raw(task, ids):
    """Raw items of ids, None for the pad."""
    return [None if i == task.pad_id else task.vocab.decode([i])[0] for i in ids]


def examples(task, split):
    s = getattr(task, split)
    return {(u, raw(task, [y])[0]): raw(task, h) for u, h, y in zip(s.users, s.history, s.labels)}


def test_examples_are_the_most_recent_interactions_with_their_history_before_them(task):
    assert examples(task, "test") == {("a", "i9"): ["i5", "i6", "i7", "i8"], ("b", "i0"): ["i4", "i3", "i2", "i1"],
                                      ("c", "i2"): [None, None, "i0", "i1"]}
    assert examples(task, "valid") == {("a", "i8"): ["i4", "i5", "i6", "i7"], ("b", "i1"): ["i5", "i4", "i3", "i2"],
                                       ("c", "i1"): [None, None, None, "i0"]}
    # up to examples_per_user training labels, the latest ones before valid/test; c's only earlier item has
    # no history, so it gives no example
    assert examples(task, "train") == {("a", "i6"): ["i2", "i3", "i4", "i5"], ("a", "i7"): ["i3", "i4", "i5", "i6"],
                                       ("b", "i3"): ["i7", "i6", "i5", "i4"], ("b", "i2"): ["i6", "i5", "i4", "i3"]}
    assert task.dropped["train examples without history"] == 1


def test_no_label_leaks_into_inputs_or_training():
    rng = np.random.default_rng(1)
    seqs = {f"u{u}": list(rng.choice([f"i{k}" for k in range(60)], size=rng.integers(3, 40), replace=False))
            for u in range(40)}
    t = build_ranking_task(*log_of(seqs), history_len=8, examples_per_user=5, min_count=1, num_test=2)
    position = {(u, item): p for u, seq in seqs.items() for p, item in enumerate(seq)}
    per_user = {}
    for split in ("train", "valid", "test"):
        s = getattr(t, split)
        for u, h, y in zip(s.users, s.history, s.labels):
            label_pos = position[u, raw(t, [y])[0]]
            past = [position[u, item] for item in raw(t, h) if item is not None]
            assert past == sorted(past) and all(p < label_pos for p in past)  # only earlier items, in order
            kept_before = [p for p in range(label_pos) if seqs[u][p] in t.vocab]
            assert past == kept_before[-8:]  # the 8 most recent kept ones
            per_user.setdefault(u, {}).setdefault(split, []).append(label_pos)
    for u, d in per_user.items():
        assert len(d.get("train", [])) <= 5 and len(d.get("test", [])) <= 2
        if "train" in d and "valid" in d:
            assert max(d["train"]) < min(d["valid"])  # training never reaches the held-out interactions
        if "valid" in d and "test" in d:
            assert max(d["valid"]) < min(d["test"])


def test_popularity_is_counted_on_training_parts_only_and_ids_are_frequency_ranked():
    seqs = {"a": ["x", "y", "y2", "late"], "b": ["y", "x", "y3", "late"], "c": ["y", "z", "late", "late2"]}
    t = build_ranking_task(*log_of(seqs), history_len=3, examples_per_user=5, min_count=2, num_valid=1, num_test=1)
    # "late" is only ever held out, so it does not count and is dropped as rare; y (3) before x (2)
    assert list(t.vocab.values) == ["y", "x"]
    assert t.counts.tolist() == [3, 2, 0]  # one count per input id, the pad last
    assert t.dropped["test labels of rare items"] == 3 and len(t.test) == 0


def test_bad_inputs_fail_clearly():
    users, items, times = log_of(SEQS)
    with pytest.raises(ValueError, match="one entry per interaction"):
        build_ranking_task(users, items[:-1], times)
    with pytest.raises(ValueError, match="history_len"):
        build_ranking_task(users, items, times, history_len=0)
    with pytest.raises(ValueError, match="lower min_count"):
        build_ranking_task(users, items, times, min_count=100)
    with pytest.raises(ValueError, match="num_items \\+ 1"):
        PointwiseRanker(nn.Embedding(5, 4), num_items=5)
    model = PointwiseRanker(nn.Embedding(6, 4), num_items=5)
    with pytest.raises(ValueError, match="history must be"):
        model(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="items must be"):
        RankNet(nn.Embedding(6, 4), num_items=5).item_scores(torch.zeros(2, 3, dtype=torch.int64),
                                                             torch.zeros(3, dtype=torch.int64))


def test_average_pooling_ignores_pads():
    table = nn.Embedding(6, 4)
    model = PointwiseRanker(table, num_items=5)
    history = torch.tensor([[1, 3, 5, 5], [5, 5, 5, 2], [5, 5, 5, 5]])
    u = model.user_vector(history)
    w = table.weight.detach()
    torch.testing.assert_close(u[0], (w[1] + w[3]) / 2)
    torch.testing.assert_close(u[1], w[2])
    torch.testing.assert_close(u[2], torch.zeros(4))  # no item: zeros
    with torch.no_grad():
        table.weight[5] += 100.0  # the pad row never matters
    torch.testing.assert_close(model.user_vector(history), u)
    torch.testing.assert_close(model(history), model.output(u))


class Fixed(nn.Module):
    """Scores given by hand."""

    def __init__(self, scores):
        super().__init__()
        self.s = torch.tensor(scores, dtype=torch.float32)

    def scores(self, history):
        return self.s.expand(len(history), -1)


def test_ndcg_by_hand():
    from saec.data.ranking import RankingSplit

    # five items scored 0.9 0.8 0.7 0.1 0.0; label item 2 (rank 2) and item 4 (rank 4)
    split = RankingSplit(np.array([[0, 5], [1, 3]]), np.array([2, 4]), np.array(["a", "b"]), np.array([0, 0]))
    model = Fixed([0.9, 0.8, 0.7, 0.1, 0.0])
    assert label_ranks(model, split, exclude_history=False).tolist() == [2, 4]
    hand = (1 / math.log2(2 + 2) + 1 / math.log2(4 + 2)) / 2
    assert evaluate(model, split, k=10, exclude_history=False)["ndcg"] == pytest.approx(hand)
    assert evaluate(model, split, k=3, exclude_history=False)["ndcg"] == pytest.approx(0.5 / 2)
    # history removed from the ranking: item 0 for the first row (pad 5 ignored), items 1 and 3 for the second
    assert label_ranks(model, split, exclude_history=True).tolist() == [1, 2]
    # a label in its own history is not removed; ties count against the model
    tie = RankingSplit(np.array([[2, 2]]), np.array([2]), np.array(["a"]), np.array([0]))
    assert label_ranks(Fixed([0.5, 0.7, 0.7, 0.7, 0.0]), tie).tolist() == [2]


@pytest.mark.parametrize("method,hyper", [("memcom", {"num_buckets": 3}), ("memcom", {"num_buckets": 3, "bias": True}),
                                          ("tt", {"rank": 2}), ("truncate", {"num_kept": 4})])
def test_a_compressed_table_plugs_into_both_networks(method, hyper):
    v = 10
    for cls in (PointwiseRanker, RankNet):
        table = make_embedding(method, v + 1, 8, counts=np.arange(v + 1)[::-1].copy(), **hyper)
        model = cls(table, num_items=v)
        history = torch.tensor([[0, 4, 9, v], [v, v, 3, 7]])
        assert model.scores(history).shape == (2, v)
        assert param_count(model) == table.param_count() + 8 * v + v
        if cls is RankNet:
            s1, s2 = model(history, torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5, 6], [7, 8]]))
            assert s1.shape == s2.shape == (2, 2)
            torch.testing.assert_close(s1, model.scores(history).gather(1, torch.tensor([[1, 2], [3, 4]])))
            loss = ranknet_loss(s1, s2)
        else:
            loss = nn.functional.cross_entropy(model(history), torch.tensor([1, 2]))
        loss.backward()
        assert all(p.grad is not None for p in table.parameters())


def test_ranknet_loss_sign_and_gradient():
    assert ranknet_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    assert ranknet_loss(torch.tensor([3.0]), torch.tensor([0.0])) < math.log(2) < ranknet_loss(torch.tensor([0.0]),
                                                                                               torch.tensor([3.0]))
    a, b = torch.tensor([0.2], requires_grad=True), torch.tensor([0.5], requires_grad=True)
    ranknet_loss(a, b).backward()
    assert a.grad.item() < 0 < b.grad.item()  # descent raises the first score and lowers the second
    with pytest.raises(ValueError, match="shapes differ"):
        ranknet_loss(torch.zeros(2), torch.zeros(3))


def test_negatives_are_other_items():
    labels = torch.arange(7).repeat(50)
    neg = sample_negatives(labels, 7, 5, torch.Generator().manual_seed(0))
    assert neg.shape == (350, 5) and (neg != labels[:, None]).all() and neg.min() >= 0 and neg.max() < 7
    assert set(neg.unique().tolist()) == set(range(7))


def sequence_task():
    """Users walk the items in a cycle; the next item is the last one + 1: learnable from history."""
    rng = np.random.default_rng(0)
    seqs = {}
    for u in range(200):
        start = int(rng.integers(12))
        seqs[f"u{u}"] = [f"i{(start + t) % 12}" for t in range(8)]
    return build_ranking_task(*log_of(seqs), history_len=1, examples_per_user=5, min_count=1)


@pytest.mark.parametrize("loss", ["softmax", "ranknet"])
def test_training_learns_a_learnable_sequence(loss):
    t = sequence_task()
    cls = RankNet if loss == "ranknet" else PointwiseRanker
    model = cls(make_embedding("memcom", t.num_items + 1, 8, num_buckets=6, init_std=0.1), t.num_items, seed=0)
    before = evaluate(model, t.test, k=1)["ndcg"]
    cfg = RankingConfig(loss=loss, lr=0.3, epochs=12, patience=12, batch_size=64, progress=False)
    history = fit(model, t.train, t.valid, cfg)
    after = evaluate(model, t.test, k=1)["ndcg"]
    assert after > 0.9 > before + 0.5
    assert history.best_epoch >= 1


def test_training_is_seeded():
    t = sequence_task()
    runs = []
    for _ in range(2):
        table = make_embedding("hashing", t.num_items + 1, 4, num_buckets=5, seed=3)
        model = PointwiseRanker(table, t.num_items, seed=3)
        fit(model, t.train, t.valid, RankingConfig(epochs=2, seed=3, progress=False))
        runs.append(label_ranks(model, t.test))
    np.testing.assert_array_equal(*runs)
