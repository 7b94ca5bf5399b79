"""The ``reproduce`` budgets: how much each reproduction trains and tests.

``quick`` (the README's first job), ``cpu`` (hours on 2 cores) and ``paper`` (the papers'
lengths). Each algorithm's settings per budget live in ``algorithms.papers``; their
measurements in results/schedule.

Example:
    >>> BUDGETS["cpu"].cells
    ('5w1s', '5w5s', '20w1s', '20w5s')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from fewshot_cli.algorithms.paper import BudgetSettings
from fewshot_cli.algorithms.papers import PAPERS
from fewshot_cli.errors import FewshotError

GRID = ("5w1s", "5w5s", "20w1s", "20w5s")
IMAGE_GRID = ("5w1s", "5w5s")  # what the papers report on mini-ImageNet


@dataclass(frozen=True)
class Budget:
    """How much training and testing a reproduction spends.

    Attributes:
        name: what ``--budget`` calls it.
        cells: the grid cells it runs unless ``cells`` are given.
        algorithms: ``BudgetSettings`` of each algorithm it runs (by name): training
            iterations, test episodes per cell, and options of its trainings.
        val_every, val_episodes: validation during training.
        dataset: the dataset every training and test uses.
    """

    name: str
    cells: tuple[str, ...]
    algorithms: Mapping[str, BudgetSettings]
    val_every: int = 500
    val_episodes: int = 100
    dataset: str = "omniglot"


def settings_of(budget: str) -> dict[str, BudgetSettings]:
    """Every registered algorithm's settings for the budget called ``budget``."""
    return {name: p.budgets[budget] for name, p in PAPERS.items() if budget in p.budgets}


# Each algorithm's settings live in algorithms.papers; their measurements in results/schedule.
BUDGETS = {
    b.name: b
    for b in (
        # The README's first job: a few minutes on 2 cores, 5-way 1-shot only.
        Budget("quick", ("5w1s",), settings_of("quick"), val_every=10**9, val_episodes=20),
        # Hours on 2 cores: about 7.4 with --jobs 2 --threads 2, estimated from timed steps by
        # benchmarks.budget (results/cpu/logs).
        Budget("cpu", GRID, settings_of("cpu"), val_every=100, val_episodes=50),
        # The papers' lengths, for a GPU.
        Budget("paper", GRID, settings_of("paper"), val_every=500, val_episodes=100),
    )
}


def get_budget(budget: str | Budget, dataset: str = "omniglot") -> Budget:
    """The budget named ``budget`` on ``dataset`` (a ``Budget`` passes through): Omniglot's
    grid, or the 5-way cells of the algorithms with a protocol on another dataset.

    Example:
        >>> get_budget("quick", "mini-imagenet").cells
        ('5w1s', '5w5s')
    """
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise FewshotError(f"unknown budget '{budget}' (choose from {', '.join(BUDGETS)})")
    if dataset == "omniglot":
        return BUDGETS[budget]
    settings = {
        name: paper.budgets_on(dataset)[budget]
        for name, paper in PAPERS.items()
        if budget in paper.budgets_on(dataset)
    }
    if not settings:
        raise FewshotError(f"no algorithm has a '{budget}' budget on {dataset}")
    return dataclasses.replace(
        BUDGETS[budget], cells=IMAGE_GRID, algorithms=settings, dataset=dataset
    )
