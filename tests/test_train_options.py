"""``train --cuda-graph`` and ``--precision``: their choices are the library's constants, and what
is chosen reaches the training configuration (as a --config file's value does)."""

import importlib

import click
import pytest

from fewshot_cli.cli import cli, main

# Each option's choices: the constant of ``choices`` and the library module that uses it.
OPTIONS = {"cuda_graph": ("CUDA_GRAPH_MODES", "fewshot_cli.algorithms.maml_graph"),
           "precision": ("PRECISIONS", "fewshot_cli.run.precision")}


@pytest.mark.parametrize("name", OPTIONS)
def test_the_choices_are_the_library_constants(name):
    import fewshot_cli.choices as choices

    constant, module = OPTIONS[name]
    param = next(p for p in cli.commands["train"].params if p.name == name)
    assert isinstance(param.type, click.Choice)
    assert tuple(param.type.choices) == getattr(choices, constant)
    assert getattr(importlib.import_module(module), constant) is getattr(choices, constant)


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """The configurations ``train`` passes to the library (which trains nothing here)."""
    from fewshot_cli.run import training

    seen = []

    def stand_in(config, run_dir, **options):
        seen.append(config)
        return training.TrainResult(run_dir, 1, 0.5, 1.0, 1)

    monkeypatch.setattr(training, "train", stand_in)
    return seen


def test_the_defaults_and_the_choices_reach_the_configuration(trained, tmp_path):
    out = ["train", "maml", "--out", str(tmp_path / "r"), "--quiet"]
    assert main(out) == 0
    assert (trained[-1].cuda_graph, trained[-1].precision) == ("auto", "fp32")
    assert main([*out, "--cuda-graph", "off", "--precision", "tf32", "--engine", "vmap"]) == 0
    assert (trained[-1].cuda_graph, trained[-1].precision) == ("off", "tf32")
    config = tmp_path / "gpu.toml"
    config.write_text('[train]\ncuda-graph = "on"\nprecision = "tf32"\n')
    assert main([*out, "--config", str(config)]) == 0
    assert (trained[-1].cuda_graph, trained[-1].precision) == ("on", "tf32")


@pytest.mark.parametrize("option, value", [("--cuda-graph", "always"), ("--precision", "fp16")])
def test_another_value_is_refused_in_one_line(option, value, tmp_path, capsys):
    assert main(["train", "maml", "--out", str(tmp_path / "r"), option, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"'{value}'" in err, err
    assert not (tmp_path / "r").exists()
