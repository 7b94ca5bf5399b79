"""``--config FILE``: any command's options from a TOML file."""

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


def commands():
    """Every command of ``fewshot`` with its path (``fewshot plot curves``...)."""
    import click

    from fewshot_cli.cli import cli

    def walk(group, path):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from walk(command, f"{path} {name}")
            else:
                yield f"{path} {name}", command

    return list(walk(cli, "fewshot"))


def test_every_flag_a_file_can_set_can_be_turned_off():
    import click

    one_way = [f"{path} {option.opts[0]}" for path, command in commands()
               for option in command.params
               if isinstance(option, click.Option) and option.is_flag and not option.secondary_opts]
    assert one_way == []


def test_the_command_line_turns_off_what_the_file_turns_on(tmp_path, monkeypatch):
    from fewshot_cli.run import training

    seen = []

    def stand_in(config, run_dir, **options):
        seen.append(config)
        return training.TrainResult(run_dir, 1, 0.5, 1.0, 1)

    monkeypatch.setattr(training, "train", stand_in)
    config = tmp_path / "maml.toml"
    config.write_text('[train]\nfirst-order = true\nrotations = true\nquiet = true\n')
    for extra, expected in (([], (True, True)),
                            (["--no-first-order", "--no-rotations"], (False, False))):
        assert main(["train", "maml", "--out", str(tmp_path / "r"), "--config", str(config),
                     *extra]) == 0
        assert (seen[-1].first_order, seen[-1].rotations) == expected


def test_paths_in_a_file_are_taken_from_the_working_directory(data_env, tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "work").mkdir()
    config = tmp_path / "conf" / "run.toml"
    config.write_text(f'algorithm = "protonet"\niterations = 1\nout = "runs/r"\n{TINY}')
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--config", str(config)]) == 0
    assert (tmp_path / "work" / "runs" / "r" / "last.pt").is_file()
    assert not (tmp_path / "conf" / "runs").exists()


def test_the_help_of_config_says_where_paths_start_and_names_the_arguments():
    from click.testing import CliRunner

    from fewshot_cli.cli import cli

    keys = {"fewshot train": 'algorithm = "', "fewshot eval": 'run = "',
            "fewshot predict": 'run = "', "fewshot aggregate": "csv_files = [",
            "fewshot plot curves": "run_dirs = [", "fewshot plot accuracy": "csv_files = ["}
    for path, _ in commands():
        text = " ".join(CliRunner().invoke(cli, [*path.split()[1:], "--help"]).output.split())
        assert "taken from the working directory" in text, path
        if path in keys:
            assert keys[path] in text, path


def test_a_repeatable_option_takes_one_string_from_a_file(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_text('algorithms = "maml,protonet"\ncells = "5w1s"\n')
    assert main(["reproduce", "--out", str(tmp_path / "grid"), "--config", str(config),
                 "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("--algorithms ")[1].split()[0] for line in lines] == ["maml", "protonet"]
