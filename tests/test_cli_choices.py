"""The command line's choice lists are the library's constants, not copies of them."""

import importlib

import click

import fewshot_cli.cli

# (module, constant) -> the options whose choices it defines, as (command path, option name).
# The constants live in the light ``choices`` module (so --help imports no torch); the modules
# that use them re-export them (LIBRARY below).
CONSTANTS = {
    ("fewshot_cli.data.registry", "NAMES"): [("data", "dataset"), ("train", "dataset")],
    ("fewshot_cli.choices", "PARTS"): [("eval", "part")],
    ("fewshot_cli.algorithms.registry", "NAMES"): [("train", "algorithm"), ("reproduce", "algorithms")],
    ("fewshot_cli.choices", "BACKBONES"): [("train", "backbone")],
    ("fewshot_cli.choices", "ENGINES"): [("train", "engine")],
    ("fewshot_cli.choices", "BN_MODES"): [("eval", "bn_mode"), ("predict", "bn_mode")],
    ("fewshot_cli.choices", "INVERT_MODES"): [("predict", "invert")],
    ("fewshot_cli.choices", "FORMATS"): [("aggregate", "fmt")],
    ("fewshot_cli.choices", "BUDGETS"): [("reproduce", "budget")],
    ("fewshot_cli.choices", "COMPARISON_FORMATS"): [("reproduce", "fmt")],
}
# The library module that uses each constant of ``choices``, under the same name.
LIBRARY = {
    "SPLITS": "fewshot_cli.data.splits", "PARTS": "fewshot_cli.data.splits",
    "BACKBONES": "fewshot_cli.algorithms.backbone", "BN_MODES": "fewshot_cli.algorithms.base",
    "INVERT_MODES": "fewshot_cli.data.user_images", "FORMATS": "fewshot_cli.report.aggregate",
    "COMPARISON_FORMATS": "fewshot_cli.report.comparison", "ENGINES": "fewshot_cli.algorithms.maml_vmap",
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


def test_the_library_uses_the_constants_of_choices():
    import fewshot_cli.choices as choices
    from fewshot_cli.run.budgets import BUDGETS

    for constant, module in LIBRARY.items():
        assert getattr(importlib.import_module(module), constant) is getattr(choices, constant)
    assert tuple(BUDGETS) == choices.BUDGETS  # every budget reproduce defines, by name, in order
