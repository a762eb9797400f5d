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
    (dict(optimizer="lbfgs"), r"TrainConfig.optimizer must be one of \('adagrad', 'adam', 'adamw', 'sgd'\), got 'lbfgs'"),
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


# -- TOML data descriptions ------------------------------------------------------------------------
from saec.data.movielens import movielens_schema  # noqa: E402
from saec.data.schema import Field, Schema  # noqa: E402
from saec.data.tabular import TableSpec, load_spec, parse_fields, tabular_ctr  # noqa: E402
from saec.train.loop import fit  # noqa: E402

GOOD_TOML = '[data]\npath = "log.csv"\nlabel = "click"\n[[fields]]\nname = "user"\n[[fields]]\nname = "tags"\n'


def click_log(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"ts": np.arange(n), "user": [f"u{u}" for u in rng.integers(0, 20, n)],
                         "tags": rng.choice(["a|b", "c", "b|c"], n), "click": rng.integers(0, 2, n)})


@pytest.mark.parametrize("toml, message", [
    (GOOD_TOML + 'multi_valued = "no"\n', r"field 'tags': multi_valued must be true or false, got 'no'"),
    (GOOD_TOML + "dim = 16.7\n", r"field 'tags': dim must be an integer >= 1, got 16.7"),
    (GOOD_TOML + "dim = true\n", r"field 'tags': dim must be an integer >= 1, got True"),
    (GOOD_TOML + "min_count = 0\n", r"field 'tags': min_count must be an integer >= 1, got 0"),
    (GOOD_TOML + 'pooling = "max"\n', r"field 'tags': pooling must be one of \('mean', 'sum'\), got 'max'"),
    (GOOD_TOML + "sep = 1\n", r"field 'tags': sep must be a string, got 1"),
    (GOOD_TOML + "multivalued = true\n", r"\[\[fields\]\] entry 2 \('tags'\): unknown key 'multivalued'"),
    (GOOD_TOML + "[model]\nhidden = 3\n", r"top level: unknown key 'model'; expected one of \['data', 'fields'\]"),
    (GOOD_TOML.replace('label = "click"', 'label = "click"\ndims = 3'), r"\[data\]: unknown key 'dims'"),
    (GOOD_TOML.replace('label = "click"', 'label = "click"\ndim = 16.7'), r"\[data\] dim must be an integer >= 1, got 16.7"),
    (GOOD_TOML.replace('path = "log.csv"', "path = 3"), r"\[data\] path must be a non-empty string, got 3"),
    (GOOD_TOML.replace('label = "click"', "label = 3"), r"label must be a non-empty string, got 3"),
    (GOOD_TOML.replace('label = "click"', 'label = "click"\ntime = 1'), r"time must be a non-empty string, got 1"),
    (GOOD_TOML.replace('label = "click"', 'label = "click"\nsplits = [0.5, 0.5]'),
     r"splits must be three non-negative numbers \(train, valid, test\) summing to 1, got \[0.5, 0.5\]"),
    (GOOD_TOML.replace('label = "click"', 'label = "click"\nlabel_threshold = "4"'),
     r"label_threshold must be a finite number in \[-inf, inf\), got '4'"),
    ('fields = [1]\n[data]\npath = "log.csv"\nlabel = "click"\n', r"\[\[fields\]\] entry 1 must be a table with a 'name', got 1"),
    ('fields = "user"\n[data]\npath = "log.csv"\nlabel = "click"\n', r"needs at least one \[\[fields\]\] entry"),
    ('data = 3\n', r"needs a \[data\] section"),
])
def test_toml_values_of_the_wrong_type_or_unknown_keys_are_refused(tmp_path, toml, message):
    (tmp_path / "data.toml").write_text(toml)
    with pytest.raises(SaecError, match=r"data\.toml: " + message):
        load_spec(tmp_path / "data.toml")


def test_good_toml_still_loads(tmp_path):
    (tmp_path / "data.toml").write_text(GOOD_TOML + 'multi_valued = true\nsep = "|"\ndim = 4\n')
    spec = load_spec(tmp_path / "data.toml")
    assert [(f.name, f.dim, f.multi_valued) for f in spec.fields] == [("user", 16, False), ("tags", 4, True)]


def test_config_that_is_a_folder_or_not_text_is_an_error_without_traceback(tmp_path, capsys):
    assert main(["data", "info", "--config", str(tmp_path)]) == 2
    assert f"{tmp_path} is a folder; expected a TOML file" in capsys.readouterr().err
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["data", "info", "--config", str(tmp_path / "bin.toml")]) == 2
    assert "bin.toml: cannot read the file (UnicodeDecodeError" in capsys.readouterr().err


def test_schema_and_field_refuse_wrong_types():
    with pytest.raises(SaecError, match="field 'u': multi_valued must be true or false, got 1"):
        Field("u", 4, multi_valued=1)
    with pytest.raises(SaecError, match="field name must be a non-empty string, got 3"):
        Field(3, 4)
    with pytest.raises(SaecError, match="label column must be a non-empty string, got None"):
        Schema((Field("u", 4),), label=None)
    with pytest.raises(SaecError, match=r"MovieLens dims \(fields\): unknown key 'usr'"):
        movielens_schema({"usr": 8})


# -- CSV and Parquet files -------------------------------------------------------------------------
def test_a_doubled_csv_column_is_refused_naming_it_and_the_file(tmp_path):
    (tmp_path / "log.csv").write_text("user,click,user\nu1,1,u9\nu2,0,u8\n")
    spec = TableSpec(tmp_path / "log.csv", "click", parse_fields(["user"]))
    with pytest.raises(SaecError, match=r"log\.csv: column 'user' appears more than once in the header"):
        tabular_ctr(spec)


def test_an_undeclared_parquet_list_column_is_refused(tmp_path):
    df = pd.DataFrame({"user": ["a", "b", "c", "d"], "tags": [["x", "z"], ["y"], ["x"], []], "click": [1, 0, 1, 0]})
    df.to_parquet(tmp_path / "log.parquet")
    spec = TableSpec(tmp_path / "log.parquet", "click", parse_fields(["user", "tags"]), splits=(1.0, 0.0, 0.0))
    with pytest.raises(SaecError, match=r"log\.parquet: column 'tags' holds lists but is not declared "
                                        r"multi-valued; declare it \(multi_valued = true"):
        tabular_ctr(spec)
    spec.fields = parse_fields(["user", "tags"], multi={"tags": "|"})
    task = tabular_ctr(spec)
    assert set(task.vocabs["tags"].values) == {"x", "y", "z"}


def test_a_bad_time_value_is_reported_with_its_row_and_value(tmp_path):
    df = click_log(40)
    df["ts"] = df["ts"].astype(str)
    df.loc[10, "ts"] = "yesterday"
    df.to_csv(tmp_path / "log.csv", index=False)
    spec = TableSpec(tmp_path / "log.csv", "click", parse_fields(["user"]), time="ts")
    with pytest.raises(SaecError, match=r"log\.csv: time column 'ts' row 10 holds 'yesterday', neither a number "
                                        r"nor a date \(1 such rows\)"):
        tabular_ctr(spec)
    df.loc[10, "ts"] = ""
    df.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(SaecError, match=r"time column 'ts' row 10 is empty"):
        tabular_ctr(spec)


# -- data-dependent checks before training ---------------------------------------------------------
def test_a_split_with_one_class_is_refused_before_training(tmp_path, capsys):
    df = click_log()
    df.loc[df.index >= 360, "click"] = 0  # the last 10% by time, the test split, has no click
    df.to_csv(tmp_path / "log.csv", index=False)
    rc = main(["train", "--table", str(tmp_path / "log.csv"), "--label", "click", "--fields", "user,tags",
               "--time", "ts", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "log.csv: the test split has only label 0 in all 40 rows: AUC needs both" in err
    assert not (tmp_path / "run").exists()


def test_fit_refuses_validation_data_with_one_class_before_the_first_epoch():
    from saec.data.dataset import CTRData
    from saec.models import build_model

    schema = Schema((Field("u", 4),))
    train = CTRData({"u": np.array([0, 1, 2, 0])}, np.array([0, 1, 0, 1]))
    valid = CTRData({"u": np.array([0, 1])}, np.array([1, 1]))
    model = build_model("dssm", schema, {"u": 3}, hidden=(4,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SaecError, match="the validation data has only label 1 in all 2 rows"):
        fit(model, train, valid, TrainConfig(progress=False))
    assert all((before[k] == v).all() for k, v in model.state_dict().items())


# -- command-line options --------------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--dims", "user"], "--dims: expected NAME:VALUE items, got 'user'"),
    (["--dims", "user:16.7"], "--dims user: expected an integer, got '16.7'"),
    (["--dims", "user:8,user:4"], "--dims: 'user' is given twice ('8' and '4')"),
    (["--dims", "usr:8"], "options given for ['usr'], which are not among the fields ['user', 'tags']"),
    (["--multi", "tags:"], "field 'tags': a multi-valued field needs a non-empty sep"),
    (["--min-count", "0"], "field 'user': min_count must be an integer >= 1, got 0"),
    (["--label-threshold", "nan"], "label_threshold must be a finite number in [-inf, inf), got nan"),
])
def test_cli_data_options_give_one_line_errors(tmp_path, capsys, extra, message):
    click_log().to_csv(tmp_path / "log.csv", index=False)
    rc = main(["data", "info", "--table", str(tmp_path / "log.csv"), "--label", "click", "--fields", "user,tags",
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_cli_table_options_with_another_source_are_refused(tmp_path, capsys):
    (tmp_path / "data.toml").write_text(GOOD_TOML)
    assert main(["data", "info", "--config", str(tmp_path / "data.toml"), "--dims", "user:4", "--label", "y"]) == 2
    assert "--label, --dims apply to --table, not to --config" in capsys.readouterr().err
    assert main(["data", "info", "--dataset", "movielens-100k", "--min-count", "3"]) == 2
    assert "--min-count applies to --table, not to --dataset" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--hidden", "8,0"], "--hidden width must be an integer >= 1, got 0"),
    (["--lr", "inf"], "TrainConfig.lr must be a finite number in (0, inf), got inf"),
    (["--seed", "-1"], "TrainConfig.seed must be an integer >= 0, got -1"),
    (["--batch-size", "0"], "TrainConfig.batch_size must be an integer >= 1, got 0"),
])
def test_cli_train_options_are_checked_before_reading_data(tmp_path, capsys, extra, message):
    rc = main(["train", "--table", str(tmp_path / "missing.csv"), "--label", "click", "--fields", "user", *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_a_bad_label_is_reported_with_its_file_row_and_value(tmp_path):
    df = click_log(40)
    df["click"] = df["click"].astype(str)
    df.loc[[25, 31], "click"] = "yes"
    df.to_csv(tmp_path / "log.csv", index=False)
    spec = TableSpec(tmp_path / "log.csv", "click", parse_fields(["user"]), time="ts")
    with pytest.raises(SaecError, match=r"log\.csv: label column 'click' row 25 holds 'yes'; expected 0/1 "
                                        r"\(or give label_threshold\) \(2 such rows\)"):
        tabular_ctr(spec)
    spec.label_threshold = 1
    with pytest.raises(SaecError, match=r"row 25 holds 'yes'; expected a number"):
        tabular_ctr(spec)


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=2.5), r"RankingConfig.k must be an integer >= 1, got 2.5"),
    (dict(negatives="16"), r"RankingConfig.negatives must be an integer >= 1, got '16'"),
    (dict(exclude_history="no"), r"RankingConfig.exclude_history must be true or false, got 'no'"),
    (dict(loss="hinge"), r"RankingConfig.loss must be one of \('softmax', 'ranknet'\), got 'hinge'"),
])
def test_ranking_config_checks_types(kwargs, message):
    from saec.train.ranking import RankingConfig

    with pytest.raises(SaecError, match=message):
        RankingConfig(**kwargs)


def test_streaming_run_and_vocabulary_check_their_counts():
    from saec.data.synthetic import SyntheticTrace, TraceConfig
    from saec.data.vocab import Vocabulary
    from saec.train.stream import StreamingRun

    with pytest.raises(SaecError, match="min_count must be an integer >= 1, got True"):
        Vocabulary(min_count=True)
    trace = SyntheticTrace(TraceConfig.preset("tiny"))
    with pytest.raises(SaecError, match="min_count must be an integer >= 1, got 1.5"):
        StreamingRun(trace, min_count=1.5)
    with pytest.raises(SaecError, match=r"hours \(one to train, the next to test\) must be an integer in \[2, "):
        next(StreamingRun(trace, cfg=TrainConfig(progress=False)).run(2.5))


def test_a_missing_csv_column_is_named_with_the_columns_the_file_has(tmp_path):
    click_log(20).to_csv(tmp_path / "log.csv", index=False)
    spec = TableSpec(tmp_path / "log.csv", "click", parse_fields(["user"]), time="when")
    with pytest.raises(SaecError, match=r"log\.csv: columns \['when'\] not found; it has \['ts', 'user', 'tags', "
                                        r"'click'\]"):
        tabular_ctr(spec)


def test_a_number_time_column_with_one_clock_time_is_refused_not_read_as_clock_times(tmp_path):
    from saec.data.tabular import TableSpec, parse_fields, tabular_ctr

    rows = ["ts,user,click"] + ["12:00,u0,1"] + [f"{1000 + i},u{i % 5},{i % 2}" for i in range(1, 100)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    spec = TableSpec(path=tmp_path / "c.csv", label="click", time="ts", fields=parse_fields(["user"]))
    with pytest.raises(SaecError, match=r"c.csv: time column 'ts' row 0 holds '12:00'"):
        tabular_ctr(spec)
