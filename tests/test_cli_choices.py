"""The command line's choice lists are the library's constants, not copies of them."""

import importlib

import click

import fewshot_cli.cli

# (module, constant) -> the options whose choices it defines, as (command path, option name).
CONSTANTS = {
    ("fewshot_cli.data.splits", "SPLITS"): [("data", "splits"), ("train", "split"), ("reproduce", "split")],
    ("fewshot_cli.data.splits", "PARTS"): [("eval", "part")],
    ("fewshot_cli.algorithms.registry", "NAMES"): [("train", "algorithm"), ("reproduce", "algorithms")],
    ("fewshot_cli.algorithms.backbone", "BACKBONES"): [("train", "backbone")],
    ("fewshot_cli.algorithms.maml_vmap", "ENGINES"): [("train", "engine")],
    ("fewshot_cli.algorithms.base", "BN_MODES"): [("eval", "bn_mode"), ("predict", "bn_mode")],
    ("fewshot_cli.predict", "INVERT_MODES"): [("predict", "invert")],
    ("fewshot_cli.report.aggregate", "FORMATS"): [("aggregate", "fmt")],
    ("fewshot_cli.report.reproduce", "BUDGETS"): [("reproduce", "budget")],
    ("fewshot_cli.report.reproduce", "COMPARISON_FORMATS"): [("reproduce", "fmt")],
}


def choices(command: str, name: str) -> list[str]:
    param = next(p for p in fewshot_cli.cli.cli.commands[command].params if p.name == name)
    assert isinstance(param.type, click.Choice)
    return list(param.type.choices)


def test_cli_choices_follow_the_library_constants(monkeypatch):
    # A name added to a library constant must reach the command line with no other edit.
    for (module, constant), options in CONSTANTS.items():
        value = getattr(importlib.import_module(module), constant)
        for command, name in options:
            assert set(value) <= set(choices(command, name)), (command, name)
        extended = {**value, "added": None} if isinstance(value, dict) else (*value, "added")
        monkeypatch.setattr(importlib.import_module(module), constant, extended)
    try:
        importlib.reload(fewshot_cli.cli)
        for options in CONSTANTS.values():
            for command, name in options:
                assert "added" in choices(command, name), (command, name)
    finally:
        monkeypatch.undo()
        importlib.reload(fewshot_cli.cli)
    assert all("added" not in choices(c, n) for options in CONSTANTS.values() for c, n in options)
