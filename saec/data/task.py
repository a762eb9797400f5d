"""A CTR task: a schema, vocabularies fitted on the training split, and encoded train/valid/test splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from saec.data.dataset import CTRData, encode_frame, fit_vocabs
from saec.data.schema import Schema
from saec.data.vocab import OOV_ID, Vocabulary
from saec.errors import SaecError

SPLITS = (0.8, 0.1, 0.1)


@dataclass
class CTRTask:
    """Everything a CTR experiment needs; vocabularies (and so feature ids) come from ``train`` only."""

    name: str
    schema: Schema
    vocabs: dict[str, Vocabulary]
    train: CTRData
    valid: CTRData
    test: CTRData

    @property
    def num_embeddings(self) -> dict[str, int]:
        """Table rows per field (one per vocabulary entry)."""
        return {name: len(v) for name, v in self.vocabs.items()}

    def check_labels(self, splits: tuple[str, ...] = ("train", "valid", "test")) -> None:
        """Refuse, before any training, a split that AUC cannot be computed on (one class, or no rows)."""
        for split in splits:
            getattr(self, split).check_both_classes(f"{self.name}: the {split} split")

    def summary(self) -> str:
        """A short human-readable description: split sizes, click rates, per-field vocabulary."""
        lines = [f"{self.name}: " + ", ".join(
            f"{s} {len(d):,} rows (CTR {d.labels.mean():.3f})" for s, d in
            (("train", self.train), ("valid", self.valid), ("test", self.test)))]
        for f in self.schema.fields:
            oov = float((self.test.ids[f.name] == OOV_ID).any(axis=-1).mean() if self.test.ids[f.name].ndim == 2
                        else (self.test.ids[f.name] == OOV_ID).mean()) if len(self.test) else 0.0
            kind = "multi" if f.multi_valued else "single"
            lines.append(f"  {f.name:<12} {kind:<6} dim {f.dim:<3} vocab {len(self.vocabs[f.name]):>7,}  "
                         f"test OOV {oov:6.2%}")
        return "\n".join(lines)


def split_by_time(frame: pd.DataFrame, time: str | None, fractions: tuple[float, float, float] = SPLITS
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cut rows into train/valid/test by ``fractions`` after a stable sort on ``time``.

    Every validation row is at or after every training row, and every test row at or after every
    validation row, so nothing from the future leaks into training. Without a time column the file's
    row order stands for time.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise SaecError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    if time is not None:
        if time not in frame.columns:
            raise SaecError(f"time column {time!r} not in the data; it has {list(frame.columns)}")
        frame = frame.sort_values(time, kind="stable")
    n = len(frame)
    a = int(round(n * fractions[0]))
    b = int(round(n * (fractions[0] + fractions[1])))
    return frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:]


def build_task(name: str, frame: pd.DataFrame, schema: Schema,
               fractions: tuple[float, float, float] = SPLITS,
               vocabs: dict[str, Vocabulary] | None = None) -> CTRTask:
    """Split ``frame`` by time, fit vocabularies on the training rows (unless ``vocabs`` are given, e.g.
    a saved model's), and encode all three splits."""
    train, valid, test = split_by_time(frame, schema.time, fractions)
    if len(train) == 0:
        raise SaecError(f"{name}: the training split is empty ({len(frame)} rows, fractions {fractions})")
    vocabs = vocabs if vocabs is not None else fit_vocabs(train, schema)
    empty = [f for f, v in vocabs.items() if len(v) == 0]
    if empty:
        raise SaecError(f"{name}: fields {empty} have no value in the training split "
                        f"(raise their min_count or check the column)")
    return CTRTask(name, schema, vocabs, *(encode_frame(part, schema, vocabs) for part in (train, valid, test)))
