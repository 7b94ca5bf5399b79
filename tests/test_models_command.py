"""``fewshot models`` lists the shipped models, ``fewshot export`` writes a network as a file, and
the commands that take a run say they take ``pretrained:NAME`` too."""

import importlib.util

import pytest
import torch

from fewshot_cli.cli import main
from fewshot_cli.run.checkpoint import load_trained
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate_run
from fewshot_cli.run.shipping import ship
from fewshot_cli.run.training import train

TINY = dict(ways=3, queries=2, iterations=2, test_ways=3, test_queries=2, val_every=2,
            val_episodes=2, device="cpu")


@pytest.fixture
def shipped(tiny_data, tiny_root, cache_dir, tmp_path, monkeypatch):
    """A tiny trained ProtoNet shipped as ``pretrained:proto-tiny``; its manifest entry."""
    monkeypatch.setenv("FEWSHOT_PRETRAINED", str(tmp_path / "shipped"))
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))
    run = tmp_path / "proto"
    train(TrainConfig("protonet", **TINY), run, data=tiny_data, progress=False)
    _, row = evaluate_run(run, None, episodes=6, data=tiny_data)
    return ship(run, "proto-tiny", row, "fewshot train protonet --ways 3 --iterations 2")


def test_models_says_so_in_one_line_when_none_ship(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_PRETRAINED", str(tmp_path / "none"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("no models ship"), out


def test_models_lists_each_shipped_model(shipped, capsys):
    assert main(["models"]) == 0
    heading, line = capsys.readouterr().out.splitlines()
    assert heading.split() == ["name", "algorithm", "test", "accuracy", "episodes"]
    accuracy = f"{100 * shipped['accuracy']:.2f}% ± {100 * shipped['ci95']:.2f}%"
    assert line.split()[:4] == ["proto-tiny", "protonet", "3-way", "1-shot"], line
    assert accuracy in line and line.endswith(" 6"), line
    assert "fewshot train" not in line
    assert main(["models", "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].strip() == "trained by: fewshot train protonet --ways 3 --iterations 2", lines


def test_a_shipped_model_evaluates_from_the_command_line(shipped, capsys):
    assert main(["eval", "pretrained:proto-tiny", "--episodes", "6", "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("protonet 3-way 1-shot") and f"{100 * shipped['accuracy']:.2f}%" in line


def test_export_writes_a_network_plain_torch_loads(shipped, tiny_data, tmp_path, capsys):
    out = tmp_path / "nets" / "proto.pt2"
    assert main(["export", "pretrained:proto-tiny", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"written to {out}"
    _, model, _ = load_trained(tmp_path / "shipped" / "proto-tiny")
    model.eval()  # ProtoNet tests with its running statistics
    images = tiny_data.images[:5].float().div(255).unsqueeze(1)
    with torch.no_grad():
        assert torch.allclose(torch.export.load(out).module()(images), model(images), atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["pretrained:proto-tiny", "--out", "{tmp}/net.zip"], "give a file ending in .pt2 or .onnx"),
    (["pretrained:nope", "--out", "{tmp}/net.pt2"], "no shipped model 'nope'"),
    (["{tmp}/nowhere", "--out", "{tmp}/net.pt2"], "does not exist"),
    (["pretrained:proto-tiny"], "Missing option '--out'"),
])
def test_export_refuses_with_one_line(shipped, tmp_path, capsys, args, message):
    assert main(["export", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "net.zip").exists() and not (tmp_path / "net.pt2").exists()


def test_onnx_is_written_or_refused_in_one_line(shipped, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    code = main(["export", "pretrained:proto-tiny", "--out", str(out)])
    if importlib.util.find_spec("onnx") is not None:
        assert code == 0 and out.stat().st_size > 0
    else:
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "needs the onnx package" in err, err
        assert not out.exists()


def test_the_commands_that_take_a_run_say_they_take_a_shipped_model():
    from click.testing import CliRunner

    from fewshot_cli.cli import cli

    def help_of(command):
        return " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())

    for command in ("eval", "predict", "export", "train"):
        text = help_of(command)
        assert "pretrained:NAME" in text and "fewshot models lists them" in text, command
    assert "pretrained:NAME wherever a run goes" in help_of("models")
