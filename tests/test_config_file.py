"""``--config FILE``: any command's options from a TOML file (issue 14 item 14)."""

import csv
import json

import pytest

from fewshot_cli.cli import main

TINY = """
ways = 5
queries = 2
test-queries = 2
test_ways = 3
val-every = 2
val-episodes = 2
device = "cpu"
quiet = true
"""


@pytest.fixture
def data_env(tiny_root, cache_dir, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))


def test_a_flat_file_repeats_a_training(data_env, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'algorithm = "protonet"\niterations = 2\nout = "{tmp_path / "run"}"\n' + TINY)
    assert main(["train", "--config", str(config)]) == 0
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (stored["ways"], stored["queries"], stored["test_queries"], stored["iterations"],
            stored["val_episodes"]) == (5, 2, 2, 2, 2)
    # The command line wins over the file.
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "other"),
                 "--iterations", "4"]) == 0
    assert json.loads((tmp_path / "other" / "config.json").read_text())["iterations"] == 4


def test_one_file_with_a_table_per_command(data_env, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "eval.csv"
    config = tmp_path / "experiment.toml"
    config.write_text(f"[train]\niterations = 2\n{TINY}\n"
                      f'[eval]\ncsv = "{out}"\nepisodes = 3\nways = 3\nqueries = 2\nquiet = true\n'
                      f'[plot.curves]\nout = "{tmp_path / "curves.svg"}"\n')
    assert main(["train", "protonet", "--out", str(run), "--config", str(config)]) == 0
    assert main(["eval", str(run), "--config", str(config)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert (rows[0]["episodes"], rows[0]["test_queries"]) == ("3", "2")
    assert main(["plot", "curves", str(run), "--config", str(config)]) == 0
    assert (tmp_path / "curves.svg").read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize("content, message", [
    ("wayz = 3\n", "'wayz' is no option of fewshot train"),
    ('ways = "x\n', "is not a TOML file"),
    ("[train]\nways = 5\n[eval]\nwayz = 3\n", None),  # another command's table is not read
])
def test_a_bad_file_is_a_one_line_error(tmp_path, capsys, content, message):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code = main(["train", "maml", "--out", str(tmp_path / "r"), "--config", str(config),
                 "--iterations", "0"])  # stops at option checks, before any data is read
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert (message or "--iterations must be at least 1") in err
