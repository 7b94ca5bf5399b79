"""How a paper's protocol is declared: its defaults, published numbers and ``reproduce``
budgets, on Omniglot and on other datasets. ``algorithms.papers`` holds each algorithm's.

Example:
    >>> BudgetSettings(600, 100).iterations_for(5, 1)
    600
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Published:
    """Published test accuracies (%) and where they come from.

    Attributes:
        accuracy: ``{(ways, shots): percent}``.
        source: the paper and table, as cited beside the numbers.
    """

    accuracy: Mapping[tuple[int, int], float]
    source: str


@dataclass(frozen=True)
class BudgetSettings:
    """How one algorithm trains and tests in a ``reproduce`` budget.

    Attributes:
        iterations: training iterations of each of its trainings, or ``{(ways, shots): n}``
            per grid cell.
        test_episodes: test episodes per grid cell.
        options: ``TrainConfig`` fields set for its trainings. When they fix ``ways``, one model
            per shot count serves every cell of that shot count; otherwise each cell trains at
            its own ways.
        cell_options: ``{(ways, shots): {field: value}}`` on top of ``options`` for one cell.
        starts_from: ``{(ways, shots): (ways, shots)}``: cells whose training starts from the
            trained model of another cell of the same algorithm and seed (``--init-from``).
        tested_with: ``{(ways, shots): (ways, shots)}``: cells that train nothing and test the
            model of another cell (as Li et al. test 1-shot-trained models at 5 shots).

    Example:
        >>> BudgetSettings(10, 6, {"lr": 3e-3}, {(5, 5): {"lr": 1e-3}}).options_for(5, 5)
        {'lr': 0.001}
    """

    iterations: int | Mapping[tuple[int, int], int]
    test_episodes: int
    options: Mapping[str, Any] = field(default_factory=dict)
    cell_options: Mapping[tuple[int, int], Mapping[str, Any]] = field(default_factory=dict)
    starts_from: Mapping[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    tested_with: Mapping[tuple[int, int], tuple[int, int]] = field(default_factory=dict)

    def trained_cell(self, ways: int, shots: int) -> tuple[int, int]:
        """The cell whose training the ``ways``-way ``shots``-shot cell tests."""
        return self.tested_with.get((ways, shots), (ways, shots))

    def options_for(self, ways: int, shots: int) -> dict:
        """The options of the training the ``ways``-way ``shots``-shot cell tests."""
        return {**self.options, **self.cell_options.get(self.trained_cell(ways, shots), {})}

    def iterations_for(self, ways: int, shots: int) -> int:
        """Training iterations of the training the ``ways``-way ``shots``-shot cell tests."""
        if isinstance(self.iterations, Mapping):
            return self.iterations[self.trained_cell(ways, shots)]
        return self.iterations


@dataclass(frozen=True)
class Defaults:
    """A paper's values for the ``TrainConfig`` fields a run leaves unset.

    Attributes:
        fixed: values at any training ways and shots.
        by_ways: values per training ways: those of the smallest key at or above the run's
            ways (the largest key beyond them).
        queries: training queries per class; None: as many as the shots (MAML's K queries).
    """

    fixed: Mapping[str, Any]
    by_ways: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    queries: int | None = None
    by_shots: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def at(self, ways: int, shots: int) -> dict:
        """The defaults of a run at ``ways`` training ways and ``shots`` (``by_shots`` as
        ``by_ways``, and winning over it)."""
        return {
            "queries": self.queries or shots,
            **self.fixed,
            **_nearest(self.by_ways, ways),
            **_nearest(self.by_shots, shots),
        }


def _nearest(table: Mapping[int, Mapping[str, Any]], key: int) -> Mapping[str, Any]:
    """The entry of the smallest key at or above ``key`` (the largest key beyond them)."""
    keys = sorted(table)
    return table[next((k for k in keys if k >= key), keys[-1])] if keys else {}


@dataclass(frozen=True)
class Paper:
    """One algorithm's paper protocol.

    Attributes:
        default_ways: training ways when ``--ways`` is not given (test ways default to them
            unless ``defaults`` fixes ``test_ways``).
        defaults: its paper's hyper-parameters and network (Omniglot).
        published: its published Omniglot numbers.
        split: the Omniglot split its paper uses (``reproduce``'s default).
        budgets: its ``BudgetSettings`` per ``reproduce`` budget (Omniglot).
        colors: plot colours: ``ours``, ``paper``, and ``first`` for first order where it has one.
        datasets: the same protocol on other datasets: ``{dataset: DatasetProtocol}``.
    """

    default_ways: int
    defaults: Defaults
    published: Published
    split: str
    budgets: Mapping[str, BudgetSettings]
    colors: Mapping[str, str]
    datasets: Mapping[str, DatasetProtocol] = field(default_factory=dict)

    def ways_for(self, dataset: str, shots: int) -> int:
        """Training ways when ``--ways`` is not given."""
        own = self.datasets.get(dataset)
        return own.ways.get(shots, self.default_ways) if own and own.ways else self.default_ways

    def defaults_for(self, dataset: str) -> Defaults:
        """The paper's defaults on ``dataset`` (Omniglot's where it has none of its own)."""
        own = self.datasets.get(dataset)
        return own.defaults if own else self.defaults

    def published_on(self, dataset: str) -> Published | None:
        """The published numbers on ``dataset``, if any."""
        if dataset == "omniglot":
            return self.published
        own = self.datasets.get(dataset)
        return own.published if own else None

    def budgets_on(self, dataset: str) -> Mapping[str, BudgetSettings]:
        """The ``reproduce`` budgets on ``dataset``."""
        if dataset == "omniglot":
            return self.budgets
        own = self.datasets.get(dataset)
        return own.budgets if own else {}


@dataclass(frozen=True)
class DatasetProtocol:
    """An algorithm's paper protocol on one dataset other than Omniglot.

    Attributes:
        defaults: hyper-parameters and network.
        published: published numbers, or None.
        budgets: ``reproduce`` budgets.
        ways: training ways per shots when ``--ways`` is not given (default: the algorithm's).
    """

    defaults: Defaults
    published: Published | None = None
    budgets: Mapping[str, BudgetSettings] = field(default_factory=dict)
    ways: Mapping[int, int] = field(default_factory=dict)
