"""The algorithm seam: every registered algorithm is complete, and nothing else knows their names."""

import ast
import dataclasses
from pathlib import Path

import pytest

import fewshot_cli
from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import BN_MODES
from fewshot_cli.algorithms.papers import PUBLISHED
from fewshot_cli.cli import cli
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.budgets import BUDGETS, GRID
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.grid import parse_cell

PACKAGE = Path(fewshot_cli.__file__).parent
CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_algorithm_fills_in_the_interface_and_has_a_paper(name):
    algorithm, paper = registry.get(name), registry.paper(name)
    assert algorithm.name == name and algorithm.bn_mode in BN_MODES
    assert set(algorithm.options) <= CONFIG_FIELDS
    for ways in (5, 20, 60):
        assert set(paper.defaults.at(ways, 1)) <= CONFIG_FIELDS
    assert set(paper.budgets) == set(BUDGETS)
    for budget in BUDGETS.values():
        settings = budget.algorithms[name]
        assert set(settings.options) <= CONFIG_FIELDS
        assert all(settings.iterations_for(*parse_cell(c)) >= 1 for c in GRID), budget.name
    assert {"ours", "paper"} <= set(paper.colors)
    assert paper.published.source
    for (ways, shots), value in paper.published.accuracy.items():
        assert f"{ways}w{shots}s" in GRID and PUBLISHED[(name, ways, shots)] == value
    config = TrainConfig(name).resolved()
    model = algorithm.build_model(config)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_an_algorithm_module_holds_no_protocol_data():
    """Published numbers, budgets and defaults live in algorithms/papers.py alone."""
    for name, module in registry.MODULES.items():
        source = (PACKAGE.parent / Path(*module.split("."))).with_suffix(".py").read_text()
        for word in ("BudgetSettings", "Published", "budgets", "published", "PAPER_DEFAULTS"):
            assert word not in source, (name, word)


def test_cli_choices_come_from_the_registry():
    train = next(p for p in cli.commands["train"].params if p.name == "algorithm")
    reproduce = next(p for p in cli.commands["reproduce"].params if p.name == "algorithms")
    assert tuple(train.type.choices) == registry.NAMES == tuple(reproduce.type.choices)


def test_unknown_name_is_a_one_line_error():
    with pytest.raises(FewshotError, match="unknown algorithm 'matching' \\(choose from maml, protonet, metasgd, anil\\)"):
        registry.get("matching")


def test_options_of_another_algorithm_are_refused_from_python_too():
    with pytest.raises(FewshotError, match="--first-order applies to maml, metasgd, anil only, not to protonet"):
        TrainConfig("protonet", first_order=True).resolved()
    with pytest.raises(FewshotError, match="--meta-batch applies to maml, metasgd, anil only"):
        TrainConfig("protonet", meta_batch=4).resolved()
    assert TrainConfig("maml", meta_batch=4, first_order=True).resolved().meta_batch == 4


def name_literals(path: Path) -> list[int]:
    """Lines of ``path`` where a registered name appears as a string in code (not a docstring)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in registry.NAMES
            and id(node) not in docstrings]


def test_no_code_outside_the_algorithms_names_an_algorithm():
    outside = [path for path in PACKAGE.rglob("*.py")
               if path.relative_to(PACKAGE).parts[0] != "algorithms"]
    found = {str(path.relative_to(PACKAGE)): lines for path in outside
             if (lines := name_literals(path))}
    assert not found, f"algorithm names in code outside algorithms/: {found}"
