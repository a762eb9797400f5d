import subprocess
import sys

import pytest

from saec.cli import build_parser

COMMANDS = [[], ["data"], ["data", "fetch"], ["data", "info"], ["train"], ["evaluate"], ["stream"], ["run"], ["compress"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "saec")
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(cmd + ["--help"])
    assert e.value.code == 0 and "usage: saec" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "saec.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("saec ")


def test_data_info_on_movielens(ml100k, capsys):
    from saec.cli import main

    assert main(["data", "info", "--dataset", "movielens-100k"]) == 0
    out = capsys.readouterr().out
    assert "train 80,000 rows" in out and "genres" in out


def test_exactly_one_data_source_is_required(capsys):
    from saec.cli import main

    assert main(["data", "info"]) == 2
    assert "give exactly one of --dataset, --table or --config (got none)" in capsys.readouterr().err
    assert main(["data", "info", "--table", "clicks.csv"]) == 2
    assert "--table needs --label" in capsys.readouterr().err
