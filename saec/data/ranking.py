"""Next-item ranking examples from interaction logs (MEmCom §5.2), and MovieLens-1M as such a task.

The paper's recipe (§5.2): per user, "up to five training examples", each label one of the user's most
recent interactions, the input "the 128 most recent item interactions (excepting the label)", and items
"that did not have sufficient popularity in the training data" filtered out. It does not say how the
evaluation examples are held out; here it is **leave-last-out per user**, so no example ever sees its
own label or anything after it:

1. Each user's interactions are sorted by time (ties keep the log's order, a stable sort).
2. The user's last ``num_test`` interactions are test labels, the ``num_valid`` before them validation
   labels, everything earlier is the *training part*.
3. Item popularity is counted on the training parts only; items seen fewer than ``min_count`` times
   there are dropped everywhere (inputs and labels). The kept items form one vocabulary, used for both
   the input and the output (softmax) side, frequency-ranked: id 0 is the most popular item (what
   ``i mod m`` methods such as MEmCom assume, :mod:`saec.data.vocab`). The input side has one more id,
   ``pad_id = num_items``, which pads short histories (the least frequent id, so it never displaces an
   item in a frequency-ranked table).
4. Training examples: the user's last ``examples_per_user`` kept interactions of the training part are
   labels. Every example (train, valid, test) gets as input the ``history_len`` kept items the user
   interacted with strictly before the label (most recent last, left-padded with ``pad_id``).
   Examples with an empty history are dropped.

So a training example never contains a validation or test interaction (they are later in the user's
sequence), and the validation/test inputs contain only interactions before their label. Across users
this is not a global time cut: one user's test interaction may be older than another user's training
interactions (the usual leave-last-out protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from saec.data.vocab import OOV_ID, Vocabulary
from saec.errors import SaecError

HISTORY_LEN = 128
"""Input length of §5 ("the input length is 128")."""
EXAMPLES_PER_USER = 5
"""Training examples per user (§5.2: "up to five")."""
MIN_COUNT = 20
"""Default popularity threshold: an item needs this many interactions in the training parts."""


@dataclass(frozen=True)
class RankingSplit:
    """Examples of one split: ``history`` (n, history_len) item ids (``pad_id`` = padding), ``labels`` (n,)
    item ids, ``users`` (n,) raw user ids, ``times`` (n,) label timestamps."""

    history: np.ndarray
    labels: np.ndarray
    users: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class RankingTask:
    """A next-item ranking task: three splits over ``num_items`` frequency-ranked items.

    ``vocab`` maps raw item ids to ids (its counts are the training-part counts); ``counts`` has one
    entry per *input* id (``num_items + 1``; the pad's count is 0), ready for ``make_embedding(counts=)``.
    """

    name: str
    train: RankingSplit
    valid: RankingSplit
    test: RankingSplit
    vocab: Vocabulary
    history_len: int
    min_count: int
    dropped: dict[str, int]

    @property
    def num_items(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.num_items

    @property
    def counts(self) -> np.ndarray:
        return np.append(self.vocab.counts, 0).astype(np.int64)

    def summary(self) -> str:
        """A few lines describing the task."""
        lens = {s: (getattr(self, s).history != self.pad_id).sum(1) for s in ("train", "valid", "test")}
        lines = [f"{self.name}: {self.num_items:,} items (>= {self.min_count} training interactions), "
                 f"history length {self.history_len}"]
        for s, n in lens.items():
            split = getattr(self, s)
            line = f"  {s:5s} {len(split):7,} examples from {len(np.unique(split.users)):,} users"
            if len(n):
                line += f", median history {int(np.median(n))}, full histories {(n == self.history_len).mean():.1%}"
            lines.append(line)
        lines.append("  dropped: " + ", ".join(f"{k} {v:,}" for k, v in self.dropped.items()))
        return "\n".join(lines)


def build_ranking_task(users: np.ndarray, items: np.ndarray, times: np.ndarray, *, name: str = "ranking",
                       history_len: int = HISTORY_LEN, examples_per_user: int = EXAMPLES_PER_USER,
                       min_count: int = MIN_COUNT, num_valid: int = 1, num_test: int = 1) -> RankingTask:
    """Ranking examples from an interaction log (one row per interaction); see the module docstring.

    Raises:
        ValueError: arrays of different lengths or not 1-D, missing values, or a bad size argument.
    """
    for arg, value, lo in (("history_len", history_len, 1), ("examples_per_user", examples_per_user, 1),
                           ("min_count", min_count, 1), ("num_valid", num_valid, 0), ("num_test", num_test, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise SaecError(f"{arg} must be an integer >= {lo}, got {value!r}")
    cols = {"user": np.asarray(users), "item": np.asarray(items), "time": np.asarray(times)}
    for col, arr in cols.items():
        if arr.ndim != 1:
            raise SaecError(f"{col}s must be 1-D, got shape {arr.shape}")
        if len(arr) != len(cols["user"]):
            raise SaecError(f"users, items and times must have one entry per interaction, got lengths "
                            f"{[len(a) for a in cols.values()]}")
    log = pd.DataFrame(cols)
    if log.isna().any().any():
        raise SaecError(f"missing values in column(s) {list(log.columns[log.isna().any()])}")
    log = log.sort_values(["user", "time"], kind="stable").reset_index(drop=True)
    from_end = log.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    role = np.where(from_end < num_test, 2, np.where(from_end < num_test + num_valid, 1, 0))  # 0 train 1 valid 2 test

    vocab = Vocabulary.from_values(log["item"].to_numpy()[role == 0], min_count=min_count)
    if len(vocab) == 0:
        raise SaecError(f"no item has >= {min_count} interactions in the training parts; lower min_count")
    ids = vocab.encode(log["item"].to_numpy())
    keep = ids != OOV_ID
    dropped = {"interactions of rare items": int((~keep).sum()),
               "valid labels of rare items": int(((role == 1) & ~keep).sum()),
               "test labels of rare items": int(((role == 2) & ~keep).sum())}
    kept = pd.DataFrame({"user": log["user"].to_numpy()[keep], "item": ids[keep], "time": log["time"].to_numpy()[keep],
                         "role": role[keep]})
    # position of each kept interaction inside its user's kept sequence, and where that sequence starts
    pos = kept.groupby("user", sort=False).cumcount().to_numpy()
    start = np.arange(len(kept)) - pos
    train_from_end = kept.assign(t=kept["role"] == 0).groupby(["user", "t"], sort=False).cumcount(ascending=False)
    is_label = {"train": (kept["role"].to_numpy() == 0) & (train_from_end.to_numpy() < examples_per_user),
                "valid": kept["role"].to_numpy() == 1, "test": kept["role"].to_numpy() == 2}
    item_arr, pad = kept["item"].to_numpy(), len(vocab)
    splits = {}
    for split, mask in is_label.items():
        rows = np.flatnonzero(mask & (pos > 0))  # an example needs at least one earlier item
        dropped[f"{split} examples without history"] = int((mask & (pos == 0)).sum())
        window = rows[:, None] + np.arange(-history_len, 0)[None, :]  # the history_len rows before the label
        inside = window >= start[rows][:, None]
        history = np.where(inside, item_arr[np.clip(window, 0, None)], pad).astype(np.int64)
        splits[split] = RankingSplit(history, item_arr[rows].astype(np.int64), kept["user"].to_numpy()[rows],
                                     kept["time"].to_numpy()[rows])
    return RankingTask(name, splits["train"], splits["valid"], splits["test"], vocab, history_len, min_count,
                       dropped)


def movielens_ranking(name: str = "movielens-1m", cache: Path | None = None, **kwargs) -> RankingTask:
    """MovieLens (every rating is an interaction, whatever its value) as a next-item ranking task.

    ``kwargs`` go to :func:`build_ranking_task` (``history_len``, ``examples_per_user``, ``min_count``, ...).
    """
    from saec.data.movielens import load_ratings

    frame = load_ratings(name, cache)
    return build_ranking_task(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["timestamp"].to_numpy(),
                              name=name, **kwargs)


__all__ = ["EXAMPLES_PER_USER", "HISTORY_LEN", "MIN_COUNT", "RankingSplit", "RankingTask", "build_ranking_task",
           "movielens_ranking"]
