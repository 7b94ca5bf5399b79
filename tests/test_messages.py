"""Messages and help texts that say the right thing."""

import pickle

import pytest
import torch

from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import load_checkpoint


class Payload:
    def __reduce__(self):
        return exec, ("raise SystemExit('payload ran')",)


@pytest.mark.parametrize("content, message", [
    (b"hello, this is a text file\n", "not a PyTorch checkpoint at all (it is a text file)"),
    (b"(dp0\nS'text that looks like a protocol-0 pickle'\n", "not a PyTorch checkpoint at all"),
    (b"", "not a PyTorch checkpoint at all (the file is empty)"),
    (bytes(range(256)) * 4, "not a PyTorch checkpoint at all (its content is neither"),
])
def test_a_file_that_is_no_checkpoint_is_not_called_unsafe(tmp_path, content, message):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(FewshotError) as error:
        load_checkpoint(path)
    assert message in str(error.value) and "could run code" not in str(error.value)


def test_unsafe_and_damaged_checkpoints_are_told_apart(tmp_path):
    unsafe_zip, unsafe_pickle, damaged = (tmp_path / n for n in ("zip.pt", "pickle.pt", "cut.pt"))
    torch.save({"algorithm": "protonet", "model": Payload()}, unsafe_zip)
    unsafe_pickle.write_bytes(pickle.dumps(Payload()))
    torch.save({"algorithm": "protonet", "model": {"w": torch.zeros(50)}}, damaged)
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(FewshotError, match="more than tensors and plain data.*could run code"):
        load_checkpoint(unsafe_zip)
    with pytest.raises(FewshotError, match="a Python pickle.*could run code"):
        load_checkpoint(unsafe_pickle)
    with pytest.raises(FewshotError, match="damaged or truncated PyTorch checkpoint") as error:
        load_checkpoint(damaged)
    assert "could run code" not in str(error.value)


# ---------------------------------------------------------------- what eval used


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    from fewshot_cli.run.config import TrainConfig
    from fewshot_cli.run.training import train

    root = tmp_path_factory.mktemp("messages")
    common = dict(ways=5, queries=2, test_ways=3, test_queries=2, val_every=2, val_episodes=2,
                  device="cpu")
    train(TrainConfig("protonet", iterations=4, **common), root / "proto", data=tiny_data,
          progress=False)
    train(TrainConfig("maml", iterations=2, meta_batch=2, first_order=True, **common),
          root / "maml", data=tiny_data, progress=False)
    return root


def test_eval_names_the_checkpoint_and_its_iteration(runs, tiny_root, monkeypatch, capsys):
    from fewshot_cli.cli import main

    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    best = load_checkpoint(runs / "proto" / "best.pt")["iteration"]
    assert main(["eval", str(runs / "proto"), "--episodes", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (f"note: evaluating {runs / 'proto' / 'best.pt'} (best validation accuracy, iteration "
            f"{best} of 4)") in out
    assert main(["eval", str(runs / "proto" / "last.pt"), "--episodes", "2", "--quiet"]) == 0
    assert "(latest checkpoint, iteration 4 of 4)" in capsys.readouterr().out


def test_eval_of_maml_at_other_ways_says_the_head_is_new(runs, tiny_root, monkeypatch, capsys):
    from fewshot_cli.cli import main

    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    assert main(["eval", str(runs / "maml"), "--episodes", "2", "--ways", "4", "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2
    assert "trained with a 5-way head: a new zero-initialised 4-way head" in notes[1]
    assert main(["eval", str(runs / "maml"), "--episodes", "2", "--ways", "5", "--quiet"]) == 0
    assert "head" not in capsys.readouterr().out


# ---------------------------------------------------------------- --csv: append or replace


def test_eval_and_predict_csv_help_name_append_and_replace(capsys):
    from fewshot_cli.cli import main

    assert main(["eval", "--help"]) == 0
    eval_help = " ".join(capsys.readouterr().out.split())
    assert "Append the result as one row" in eval_help and "predict --csv, which replaces" in eval_help
    assert main(["predict", "--help"]) == 0
    predict_help = " ".join(capsys.readouterr().out.split())
    assert "replacing the file if it exists" in predict_help
    assert "eval --csv, which appends" in predict_help


def test_predict_says_when_it_replaced_a_csv(runs, tiny_root, tmp_path, capsys):
    import shutil

    from fewshot_cli.cli import main

    support = tmp_path / "support"
    for label, character in (("a", "character01"), ("b", "character02")):
        shutil.copytree(tiny_root / "images_background" / "Alpha" / character, support / label)
    query = next((support / "a").iterdir())
    out = tmp_path / "p.csv"
    args = ["predict", str(runs / "proto"), "--support", str(support), "--query", str(query),
            "--csv", str(out)]
    assert main(args) == 0
    assert "replaced" not in capsys.readouterr().out
    assert main(args) == 0
    assert "(its previous content replaced)" in capsys.readouterr().out


# ---------------------------------------------------------------- figures


def write_log(run_dir, rows):
    run_dir.mkdir(parents=True)
    lines = ["iteration,train_loss,train_accuracy,val_accuracy,elapsed_seconds"]
    lines += [f"{i},1.0,0.5,{acc},{seconds}" for i, acc, seconds in rows]
    (run_dir / "log.csv").write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.mark.parametrize("suffix, signature", [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                               (".SVG", b"<?xml")])
def test_figures_have_the_format_of_their_extension(tmp_path, capsys, suffix, signature):
    from fewshot_cli.cli import main

    run = write_log(tmp_path / "run", [(10, 0.5, 1.0), (20, 0.7, 2.0)])
    out = tmp_path / f"curves{suffix}"
    assert main(["plot", "curves", str(run), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(signature)


def test_a_figure_format_we_cannot_write_is_refused(tmp_path, capsys):
    from fewshot_cli.cli import main

    run = write_log(tmp_path / "run", [(10, 0.5, 1.0)])
    assert main(["plot", "curves", str(run), "--out", str(tmp_path / "c.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".png, .pdf, .svg" in err
    assert not (tmp_path / "c.jpg").exists()


def test_curves_leave_out_a_run_without_validation_rows(tmp_path, capsys):
    from fewshot_cli.cli import main

    done = write_log(tmp_path / "done", [(10, 0.5, 1.0), (20, 0.7, 2.0)])
    fresh = write_log(tmp_path / "fresh", [])
    out = tmp_path / "c.png"
    assert main(["plot", "curves", str(done), str(fresh), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: ") and captured.err.count("\n") == 1
    assert str(fresh) in captured.err and out.exists()
    assert main(["plot", "curves", str(fresh), "--out", str(tmp_path / "d.png")]) == 2
    assert "no run has a validation row yet" in capsys.readouterr().err


def test_accuracy_of_a_header_only_csv_is_a_one_line_error(tmp_path, capsys):
    from fewshot_cli.cli import main
    from fewshot_cli.run.results import COLUMNS

    header_only = tmp_path / "eval.csv"
    header_only.write_text(",".join(COLUMNS) + "\n")
    assert main(["plot", "accuracy", str(header_only), "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no evaluation rows" in err


# ---------------------------------------------------------------- small things


def test_eval_line_and_table_round_the_ci_alike(runs, tiny_root, tmp_path, monkeypatch, capsys):
    from fewshot_cli.cli import main
    from fewshot_cli.run import evaluation

    class Fixed:  # a result whose CI sits on a rounding edge: 2.40501%
        mean, ci95, seconds, accuracies = 0.9, 0.0240501, 1.0, [0.9, 0.9]

    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: Fixed())
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    out = tmp_path / "e.csv"
    assert main(["eval", str(runs / "proto"), "--csv", str(out), "--episodes", "2", "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert "90.00% ± 2.40%" in line, line
    assert main(["aggregate", str(out)]) == 0
    assert "90.00 ± 2.40" in capsys.readouterr().out


def test_every_option_explains_itself():
    import click

    from fewshot_cli.cli import cli

    def commands(group, path):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, f"{path} {name}")
            else:
                yield f"{path} {name}", command

    missing = [f"{path} {option.opts[0]}" for path, command in commands(cli, "fewshot")
               for option in command.params
               if isinstance(option, click.Option) and not option.help]
    assert missing == []


def test_help_names_every_algorithm_and_what_each_command_reads_and_writes():
    from click.testing import CliRunner

    from fewshot_cli.algorithms.registry import NAMES
    from fewshot_cli.cli import cli

    def help_of(*path):
        return " ".join(CliRunner().invoke(cli, [*path, "--help"]).output.split())

    for path in ((), ("train",), ("reproduce",)):
        text = help_of(*path)
        assert all(name in text for name in NAMES), (path, text)
    train = help_of("train")
    assert "log.csv and iterations.csv" in train and "--no-first-order" in train
    assert "MAML, Meta-SGD and ANIL first adapt" in help_of("predict")
    assert "600 episodes for MAML, Meta-SGD and ANIL" in help_of("reproduce")
    curves = help_of("plot", "curves")
    assert "Training loss and validation accuracy" in curves and "iterations.csv" in curves
    assert "training loss" in help_of("plot")


def test_training_from_python_records_where_the_data_is(tiny_data, tmp_path):
    import json

    from fewshot_cli.run.config import TrainConfig
    from fewshot_cli.run.training import train

    train(TrainConfig("protonet", ways=5, queries=2, test_ways=3, test_queries=2, iterations=1,
                      val_every=1, val_episodes=2, device="cpu"), tmp_path / "run",
          data=tiny_data, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_root"] == str(tiny_data.root)
