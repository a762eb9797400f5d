import numpy as np
import pandas as pd
import pytest

from saec.cli import main
from saec.data.tabular import TableSpec, load_spec, parse_fields, read_table, tabular_ctr
from saec.data.vocab import OOV_ID


def click_log(n=3000, seed=0):
    """A click log in which user u clicks iff the tag set contains 'hot' or u is even (with noise)."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 50, n)
    tags = np.where(rng.random(n) < 0.5, "hot|new", "old")
    y = ((user % 2 == 0) | (tags == "hot|new")) ^ (rng.random(n) < 0.1)
    return pd.DataFrame({"ts": np.arange(n)[::-1], "user": [f"u{u}" for u in user], "tags": tags,
                         "city": rng.choice(["a", "b", "c"], n), "click": y.astype(int)})


def test_csv_and_parquet_give_the_same_task(tmp_path):
    df = click_log()
    df.to_csv(tmp_path / "log.csv", index=False)
    df.to_parquet(tmp_path / "log.parquet")
    fields = parse_fields(["user", "tags", "city"], dim=4, multi={"tags": "|"})
    a = tabular_ctr(TableSpec(tmp_path / "log.csv", "click", fields, time="ts"))
    b = tabular_ctr(TableSpec(tmp_path / "log.parquet", "click", fields, time="ts"))
    assert list(a.vocabs["user"].values) == list(b.vocabs["user"].values)
    assert (a.test.ids["tags"] == b.test.ids["tags"]).all()
    assert set(a.vocabs["tags"].values) == {"hot", "new", "old"}
    # time runs backwards in the file: the training split is the *last* rows of the file
    assert (a.train.labels == df.click.to_numpy()[::-1][: len(a.train)]).all()


def test_toml_config_with_relative_path_and_threshold(tmp_path):
    df = click_log().assign(score=lambda d: d.click * 5)
    df.to_csv(tmp_path / "log.tsv", sep="\t", index=False)
    (tmp_path / "data.toml").write_text(
        '[data]\npath = "log.tsv"\nlabel = "score"\nlabel_threshold = 3\ntime = "ts"\ndim = 6\n'
        '[[fields]]\nname = "user"\n[[fields]]\nname = "tags"\nmulti_valued = true\nsep = "|"\ndim = 2\n')
    spec = load_spec(tmp_path / "data.toml")
    assert [f.dim for f in spec.fields] == [6, 2]
    task = tabular_ctr(spec)
    assert set(np.unique(task.train.labels)) == {0.0, 1.0}


def test_bring_your_own_csv_from_the_command_line(tmp_path, capsys):
    click_log().to_csv(tmp_path / "log.csv", index=False)
    rc = main(["train", "--table", str(tmp_path / "log.csv"), "--label", "click", "--fields", "user,tags,city",
               "--multi", "tags:|", "--time", "ts", "--dims", "user:8", "--epochs", "3", "--lr", "0.05",
               "--quiet", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0 and "test" in out and (tmp_path / "run" / "model" / "manifest.json").is_file()
    test_auc = float(next(line.split()[2] for line in out.splitlines() if line.startswith("test")))
    assert test_auc > 0.75  # the rule behind the labels is learnable
    rc = main(["evaluate", str(tmp_path / "run" / "model"), "--table", str(tmp_path / "log.csv"),
               "--label", "click", "--fields", "user,tags,city", "--multi", "tags:|", "--time", "ts"])
    assert rc == 0 and '"auc"' in capsys.readouterr().out


def test_bad_tables_give_clear_errors(tmp_path, capsys):
    df = click_log(100)
    df.to_csv(tmp_path / "log.csv", index=False)
    fields = parse_fields(["user", "nope"])
    with pytest.raises(ValueError, match="nope"):
        tabular_ctr(TableSpec(tmp_path / "log.csv", "click", fields))
    with pytest.raises(ValueError, match="0/1"):
        tabular_ctr(TableSpec(tmp_path / "log.csv", "user", parse_fields(["city"])))
    with pytest.raises(ValueError, match="unsupported file type"):
        read_table(tmp_path / "log.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="could not read"):
        read_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.toml").write_text("[data]\npath = 'x.csv'\n")
    with pytest.raises(ValueError, match="'label'"):
        load_spec(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="not among the fields"):
        parse_fields(["a"], multi={"b": "|"})
    assert main(["train", "--table", str(tmp_path / "log.csv"), "--label", "click", "--fields", "user,zzz"]) == 2
    assert "zzz" in capsys.readouterr().err


def test_unseen_values_in_later_rows_are_oov(tmp_path):
    df = click_log(200)
    df.loc[df.ts >= 190, "user"] = "newcomer"  # only in the latest rows
    df.to_csv(tmp_path / "log.csv", index=False)
    task = tabular_ctr(TableSpec(tmp_path / "log.csv", "click", parse_fields(["user"]), time="ts"))
    assert "newcomer" not in task.vocabs["user"] and (task.test.ids["user"][-10:] == OOV_ID).all()
