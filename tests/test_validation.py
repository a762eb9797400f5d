"""Issue 9: bad input is a clear SaecError naming what is wrong, before any work, never a silently wrong
result or a crash (counts, tables, configs, TOML, CSV/Parquet files, splits, command-line options)."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from saec.cli import main
from saec.cluster.kmeans import top_indices
from saec.cluster.saec import SaecConfig, compress_field
from saec.errors import SaecError
from saec.nn.base import check_counts
from saec.train.loop import TrainConfig


def blobs(n=3000, d=4, centers=6, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)) * 5
    return (c[rng.integers(0, centers, n)] + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


# -- silent wrong results: counts ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int32, np.int64,
                                   np.float16, np.float32, np.float64])
def test_top_indices_ranks_most_frequent_first_for_every_dtype(dtype):
    counts = np.array([3, 1, 0, 5, 1, 2, 0, 4], dtype=dtype)
    expected = [3, 7, 0, 5, 1, 4, 2, 6]  # decreasing count, ties by lower index
    assert top_indices(counts, 3).tolist() == expected[:3]
    assert top_indices(counts, len(counts)).tolist() == expected


def test_fast_clustering_trains_on_the_most_frequent_rows_with_unsigned_counts():
    # the frequent rows sit in one blob, the never-seen ones far away: k-means on those would put every
    # centroid far from the frequent rows. Stored unsigned, the old negation (-0 == 0, -x wraps to 2**b - x)
    # ranked the zero counts first.
    rng = np.random.default_rng(0)
    frequent = rng.normal(size=(200, 4)).astype(np.float32)
    rare = (100 + rng.normal(size=(2800, 4))).astype(np.float32)
    weight = np.concatenate([frequent, rare])
    counts = np.concatenate([np.full(200, 200), np.zeros(2800)])
    cfg = SaecConfig(k=2, eligibility=1.0, top_n=200)
    reference = compress_field("f", weight, counts.astype(np.float64), cfg)
    for dtype in (np.uint8, np.uint32, np.uint64, np.int64):
        r = compress_field("f", weight, counts.astype(dtype), cfg)
        np.testing.assert_array_equal(r.codebook, reference.codebook)
        assert np.abs(r.codebook).max() < 10  # centroids of the frequent blob


@pytest.mark.parametrize("bad, shown", [(np.full(3000, np.nan), "id 0 has nan"),
                                        (np.r_[np.ones(2999), np.nan], "id 2999 has nan"),
                                        (np.r_[np.ones(10), -1.0, np.ones(2989)], "id 10 has -1.0"),
                                        (np.r_[np.ones(5), np.inf, np.ones(2994)], "id 5 has inf"),
                                        (np.r_[np.ones(5), -3, np.ones(2994)].astype(np.int64), "id 5 has -3")])
def test_nan_negative_or_infinite_counts_are_refused(bad, shown):
    with pytest.raises(SaecError, match=f"field 'user': counts must be finite and non-negative; {shown}"):
        compress_field("user", blobs(), bad, SaecConfig(k=4, eligibility=1.0))
    with pytest.raises(SaecError, match=f"counts must be finite and non-negative; {shown}"):
        check_counts(bad, 3000)


def test_counts_of_the_wrong_kind_or_length_are_refused():
    with pytest.raises(SaecError, match=r"field 'user': counts must be 3000 finite non-negative numbers.*\(5,\)"):
        compress_field("user", blobs(), np.ones(5), SaecConfig(k=4, eligibility=1.0))
    with pytest.raises(SaecError, match="counts must be 3 finite non-negative numbers"):
        check_counts(np.array(["a", "b", "c"]), 3)


# -- crashes instead of errors: empty tables, SaecConfig -------------------------------------------
@pytest.mark.parametrize("shape", [(3000, 0), (0, 8)])
def test_empty_tables_are_refused(shape):
    with pytest.raises(SaecError, match=rf"field 'f': the table has shape \({shape[0]}, {shape[1]}\)"):
        compress_field("f", np.zeros(shape, dtype=np.float32), None, SaecConfig(k=4, eligibility=1.0))


@pytest.mark.parametrize("shape", [(3000, 0), (0, 8)])
def test_cli_compress_of_an_empty_table_is_an_error_not_a_crash(tmp_path, shape):
    dump = tmp_path / "dump"
    dump.mkdir()
    np.save(dump / "ok.npy", blobs())
    np.save(dump / "empty.npy", np.zeros(shape, dtype=np.float32))
    # a subprocess: a floating-point exception in faiss would kill the test process itself
    out = subprocess.run([sys.executable, "-m", "saec.cli", "compress", "--tables", str(dump), "--out",
                          str(tmp_path / "out"), "--k", "4", "--eligibility", "1", "--quiet"],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "field 'empty': the table has shape" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), r"SaecConfig.k must be an integer >= 1, got 0"),
    (dict(k=2.0), r"SaecConfig.k must be an integer >= 1, got 2.0"),
    (dict(k=True), r"SaecConfig.k must be an integer >= 1, got True"),
    (dict(eligibility=math.inf), r"SaecConfig.eligibility must be a finite number in \[1, inf\), got inf"),
    (dict(eligibility=math.nan), r"SaecConfig.eligibility must be a finite number"),
    (dict(eligibility=0.5), r"SaecConfig.eligibility must be a finite number in \[1, inf\), got 0.5"),
    (dict(eligibility="100"), r"SaecConfig.eligibility must be a finite number"),
    (dict(k=10, top_n=9), r"SaecConfig.top_n \(at least k\) must be an integer >= 10, got 9"),
    (dict(top_n=1000.5), r"SaecConfig.top_n \(at least k\) must be an integer >= 100, got 1000.5"),
    (dict(fast="no"), r"SaecConfig.fast must be true or false, got 'no'"),
    (dict(fast=1), r"SaecConfig.fast must be true or false, got 1"),
    (dict(init="kmeans"), r"SaecConfig.init must be one of \('random', 'kmeans\+\+', 'topk'\), got 'kmeans'"),
    (dict(init=["topk"]), r"SaecConfig.init must be one of"),
    (dict(niter=2.5), r"SaecConfig.niter must be an integer >= 1, got 2.5"),
    (dict(niter=0), r"SaecConfig.niter must be an integer >= 1, got 0"),
    (dict(seed=-1), r"SaecConfig.seed must be an integer >= 0, got -1"),
    (dict(seed=0.5), r"SaecConfig.seed must be an integer >= 0, got 0.5"),
])
def test_saec_config_checks_every_field(kwargs, message):
    with pytest.raises(SaecError, match=message):
        SaecConfig(**kwargs)


def test_saec_config_keeps_plain_python_values():
    cfg = SaecConfig(k=np.int64(8), eligibility=2, top_n=np.int32(100), niter=np.int16(3))
    assert (type(cfg.k), type(cfg.eligibility), type(cfg.top_n), type(cfg.niter)) == (int, float, int, int)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0.0), r"TrainConfig.lr must be a finite number in \(0, inf\), got 0.0"),
    (dict(lr=math.nan), r"TrainConfig.lr must be a finite number in \(0, inf\), got nan"),
    (dict(lr=math.inf), r"TrainConfig.lr must be a finite number in \(0, inf\), got inf"),
    (dict(lr="0.1"), r"TrainConfig.lr must be a finite number"),
    (dict(batch_size=0), r"TrainConfig.batch_size must be an integer >= 1, got 0"),
    (dict(batch_size=32.5), r"TrainConfig.batch_size must be an integer >= 1, got 32.5"),
    (dict(epochs=1.5), r"TrainConfig.epochs must be an integer >= 1, got 1.5"),
    (dict(patience=-1), r"TrainConfig.patience must be an integer >= 0, got -1"),
    (dict(seed=-2), r"TrainConfig.seed must be an integer >= 0, got -2"),
    (dict(optimizer="lbfgs"), r"TrainConfig.optimizer must be one of \('adagrad', 'adam', 'sgd'\), got 'lbfgs'"),
    (dict(progress="yes"), r"TrainConfig.progress must be true or false, got 'yes'"),
])
def test_train_config_checks_types_and_ranges(kwargs, message):
    with pytest.raises(SaecError, match=message):
        TrainConfig(**kwargs)
    assert TrainConfig(patience=0).patience == 0


@pytest.mark.parametrize("flag, value, message", [
    ("--eligibility", "inf", "SaecConfig.eligibility must be a finite number in [1, inf), got inf"),
    ("--eligibility", "nan", "SaecConfig.eligibility must be a finite number in [1, inf), got nan"),
    ("--k", "0", "SaecConfig.k must be an integer >= 1, got 0"),
    ("--niter", "0", "SaecConfig.niter must be an integer >= 1, got 0"),
])
def test_cli_saec_options_are_checked_before_reading_tables(tmp_path, capsys, flag, value, message):
    dump = tmp_path / "dump"
    dump.mkdir()
    np.save(dump / "t.npy", blobs())
    assert main(["compress", "--tables", str(dump), "--out", str(tmp_path / "out"), "--quiet", flag, value]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
