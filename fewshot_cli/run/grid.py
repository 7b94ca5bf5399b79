"""The standard grid of a reproduction: its cells and trainings, and what is done.

The grid is every algorithm of the registry at 5 and 20 ways, 1 and 5 shots, each with its
paper's protocol (``algorithms.papers``): its split (rotation augmentation on the splits
without rotated classes) and, per budget (``run.budgets``), its ``BudgetSettings`` (training length, test
episodes, options). Test episodes have 15 queries per class, seed 0, BatchNorm per algorithm.

Run directories are ``DIR/runs/<training>`` (``maml-5w1s``, ``protonet-60w1s``...; ``-seedS``
for training seeds other than 0). A test is done when a CSV of the folder (``result_csvs``)
holds a row of the same training (every field of its identity, ``run.protocol``, trained to
its end) and test protocol; ``run.reproduce`` trains and tests the rest.

Example:
    >>> from fewshot_cli.run.budgets import get_budget
    >>> [t.name for t in plan_trainings(Path("out"), get_budget("cpu"), ["maml"], ["5w1s"], seeds=2)]
    ['maml-5w1s', 'maml-5w1s-seed1']
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fewshot_cli.algorithms import registry
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.budgets import Budget
from fewshot_cli.run.checkpoint import BEST, CONFIG, LAST, read_config
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.protocol import training_identity, training_values
from fewshot_cli.run.results import read_rows

TEST_QUERIES = 15
TEST_SEED = 0
PLAN_CSVS = "csv"  # the folder of the CSVs of ``--plan``'s commands, inside the output folder


@dataclass(frozen=True)
class Cell:
    """One grid cell: an algorithm tested at ``ways`` ways and ``shots`` shots."""

    algorithm: str
    ways: int
    shots: int

    @property
    def name(self) -> str:
        return f"{self.ways}w{self.shots}s"


def parse_cell(text: str) -> tuple[int, int]:
    """``"20w5s"`` as ``(20, 5)``.

    Example:
        >>> parse_cell("5w1s")
        (5, 1)
    """
    match = re.fullmatch(r"\s*(\d+)\s*w\s*(\d+)\s*s\s*", str(text).lower())
    if not match or int(match[1]) < 2 or int(match[2]) < 1:
        raise FewshotError(
            f"bad cell '{text}': write WAYSwSHOTSs with at least 2 ways, e.g. 5w1s or 20w5s"
        )
    return int(match[1]), int(match[2])


def plan_cells(
    budget: Budget, algorithms: Iterable[str] | None = None, cells: Iterable[str] | None = None
) -> list[Cell]:
    """The cells to run: ``algorithms`` x ``cells`` (default: the budget's algorithms x cells)."""
    algorithms = list(dict.fromkeys(algorithms or budget.algorithms))
    for algorithm in algorithms:
        registry.get(algorithm)  # an unknown name fails here
        if algorithm not in budget.algorithms:
            raise FewshotError(f"budget '{budget.name}' has no settings for {algorithm}")
    shapes = list(dict.fromkeys(parse_cell(c) for c in (cells or budget.cells)))
    return [Cell(a, w, s) for a in algorithms for w, s in shapes]


def training_for(cell: Cell, budget: Budget, split: str, val_ways: int) -> tuple[str, TrainConfig]:
    """``(run name, configuration)`` of the training behind ``cell``.

    When the budget fixes the algorithm's training ways, its run depends on the shots only and
    is validated at ``val_ways`` (the fewest ways it is tested at); otherwise it trains and
    validates at the ways of the cell it trains for (``BudgetSettings.tested_with``).
    """
    settings = budget.algorithms[cell.algorithm]
    ways, shots = settings.trained_cell(cell.ways, cell.shots)
    own = settings.options_for(ways, shots)
    options = {"ways": ways, **own}
    if "ways" in own:
        options.setdefault("test_ways", val_ways)
    config = TrainConfig(
        cell.algorithm,
        shots=shots,
        iterations=settings.iterations_for(cell.ways, cell.shots),
        dataset=budget.dataset,
        split=split,
        rotations=budget.dataset == "omniglot" and split != "vinyals",
        val_every=budget.val_every,
        val_episodes=budget.val_episodes,
        test_queries=TEST_QUERIES,
        **options,
    )
    return f"{cell.algorithm}-{config.ways}w{shots}s", config


def check_same_training(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume a run directory made with another budget or protocol."""
    stored = training_identity(TrainConfig.from_dict(read_config(run_dir)).resolved())
    planned = training_identity(config.resolved())
    differ = [f for f in planned if stored[f] != planned[f]]
    if differ:
        field = differ[0]
        raise FewshotError(
            f"{run_dir} was trained with {field}={stored[field] or None}, not "
            f"{planned[field] or None} (another budget or split?); use another --out directory"
        )


def cell_protocol(cell: Cell, episodes: int) -> dict[str, str]:
    """The CSV columns of the test protocol a reproduction gives ``cell``, as the CSV holds them."""
    from fewshot_cli.run.bn_mode import resolve_bn_mode

    return {
        "test_ways": str(cell.ways),
        "test_shots": str(cell.shots),
        "test_queries": str(TEST_QUERIES),
        "episodes": str(episodes),
        "seed": str(TEST_SEED),
        "split_part": "test",
        "bn_mode": resolve_bn_mode(cell.algorithm),
    }


def csv_rows(csv_paths: Path | Iterable[Path]) -> list[dict[str, str]]:
    """The rows of the evaluation CSVs ``csv_paths`` (those that exist) as dicts of strings;
    a column a CSV predates is absent from its rows' dicts."""
    paths = [csv_paths] if isinstance(csv_paths, Path) else csv_paths
    return [row for path in paths if path.exists() for row in read_rows(path)]


def is_done(
    rows: list[dict[str, str]], run_dir: Path, config: TrainConfig, protocol: dict[str, str]
) -> bool:
    """Whether one of ``rows`` tested the training ``config`` of ``run_dir`` with ``protocol``.

    A row counts when it names ``run_dir``, records the planned training (trained to its end)
    and the planned test protocol, and the run directory's configuration agrees on every field
    of the training's identity (``run.protocol``: a row of another split, learning rate or
    seed does not).

    Example::

        is_done(csv_rows(Path("X/eval.csv")), Path("X/runs/maml-5w1s"), config,
                cell_protocol(Cell("maml", 5, 1), 600))
        # False
    """
    planned = config.resolved()
    wanted = {"run_id": run_dir.name, **protocol, **training_values(planned)}
    # A column a row's CSV predates is checked against the run's config.json below.
    if not any(all(row.get(k, v) == v for k, v in wanted.items()) for row in rows):
        return False
    try:
        stored = TrainConfig.from_dict(read_config(run_dir)).resolved()
    except FewshotError:  # run directory gone or unreadable: nothing proves what the row tested
        return False
    return training_identity(stored) == training_identity(planned)


def result_csvs(out_dir: str | Path) -> list[Path]:
    """Every evaluation CSV of a reproduction folder: ``eval.csv`` (what ``reproduce`` writes)
    and ``csv/*.csv`` (one per command of ``reproduce --plan``), those that exist."""
    out_dir = Path(out_dir)
    return [
        p
        for p in [out_dir / "eval.csv", *sorted((out_dir / PLAN_CSVS).glob("*.csv"))]
        if p.is_file()
    ]


@dataclass(frozen=True)
class Test:
    """One test of the plan: a cell, at one training seed.

    Attributes:
        cell: the grid cell.
        seed: the training seed (test episodes are always seed 0: every model sees the same).
        number: its place in the plan, from 1 (for progress lines).
        episodes: test episodes.
        done: its row is in the folder's CSVs already.
    """

    cell: Cell
    seed: int
    number: int
    episodes: int
    done: bool


@dataclass(frozen=True)
class Training:
    """One training of the plan (a run directory) and the tests it serves.

    Attributes:
        name: its run directory under ``runs/``: ``maml-5w1s``, ``protonet-60w1s``..., with
            ``-seedS`` for training seeds other than 0 (so a one-seed reproduction is seed 0
            of a multi-seed one).
        config: its configuration (seed included).
        tests: its cells (several when one model serves several cells, as ProtoNet's).
        source: the training whose model it starts from (``BudgetSettings.starts_from``; its
            ``config.init_from`` is that run directory), or None.
    """

    name: str
    config: TrainConfig
    tests: tuple[Test, ...]
    source: str | None = None


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    """Training seeds: ``N`` as ``0 .. N-1``, a list as given.

    Example:
        >>> seed_list(3), seed_list([4])
        ([0, 1, 2], [4])
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise FewshotError(f"--seeds must be at least 1 (got {seeds})")
        return list(range(seeds))
    seeds = list(dict.fromkeys(seeds))
    if not seeds or any(s < 0 for s in seeds):
        raise FewshotError(f"training seeds must be 0 or more (got {seeds})")
    return seeds


def plan_trainings(
    out_dir: Path,
    budget: Budget,
    algorithms: Iterable[str] | None = None,
    cells: Iterable[str] | None = None,
    split: str | None = None,
    seeds: int | Iterable[int] = 1,
    csv_paths: Iterable[Path] | None = None,
) -> list[Training]:
    """The trainings of a reproduction, each with its tests, for every seed (seed by seed).

    A training serving several cells is validated at the fewest ways it is tested at, so a
    training is the same whichever subset of the plan (``--plan``'s commands) asks for it. Run
    directories with a ``last.pt`` are checked to hold the same training (before any data is
    loaded); tests with a row of the same training and test protocol in ``csv_paths`` (default
    ``result_csvs(out_dir)``) are done (``is_done``). A training that starts from another
    cell's model (``BudgetSettings.starts_from``) names it as its ``source``; when that one is
    not planned, it must have finished in ``out_dir`` already.

    Example:
        >>> from fewshot_cli.run.budgets import get_budget
        >>> [t.name for t in plan_trainings(Path("out"), get_budget("cpu"), ["maml"], ["5w1s"], seeds=2)]
        ['maml-5w1s', 'maml-5w1s-seed1']
    """
    plan = plan_cells(budget, algorithms, cells)
    rows = csv_rows(result_csvs(out_dir) if csv_paths is None else csv_paths)
    omniglot = budget.dataset == "omniglot"  # else each dataset's own split by default
    splits = {
        c.algorithm: split or (registry.paper(c.algorithm).split if omniglot else None)
        for c in plan
    }
    # A training's validation ways are the fewest of every budget cell it serves, asked for
    # or not: the same run whichever cells are asked (its name does not depend on val_ways).
    served: dict[str, list[Cell]] = {}
    asked = [f"{c.ways}w{c.shots}s" for c in plan]
    for cell in plan_cells(budget, [c.algorithm for c in plan], [*budget.cells, *asked]):
        served.setdefault(
            training_for(cell, budget, splits[cell.algorithm], cell.ways)[0], []
        ).append(cell)
    val_ways = {cell: min(c.ways for c in cells) for cells in served.values() for cell in cells}
    trainings: dict[str, tuple[TrainConfig, list[Test]]] = {}
    sources: dict[str, tuple[str, TrainConfig, Cell]] = {}  # training -> what it starts from
    seeds = seed_list(seeds)
    for seed in seeds:
        suffix = f"-seed{seed}" if seed else ""
        for cell in plan:
            name, config = training_for(cell, budget, splits[cell.algorithm], val_ways[cell])
            config = dataclasses.replace(config, seed=seed)
            name += suffix
            settings = budget.algorithms[cell.algorithm]
            start = settings.starts_from.get(settings.trained_cell(cell.ways, cell.shots))
            if start is not None:
                start = Cell(cell.algorithm, *start)
                source, source_config = training_for(
                    start, budget, splits[cell.algorithm], start.ways
                )
                sources[name] = (
                    source + suffix,
                    dataclasses.replace(source_config, seed=seed),
                    start,
                )
                config = dataclasses.replace(
                    config, init_from=str(out_dir / "runs" / (source + suffix))
                )
            config.resolved()  # a bad cell fails before anything runs
            episodes = budget.algorithms[cell.algorithm].test_episodes
            done = is_done(rows, out_dir / "runs" / name, config, cell_protocol(cell, episodes))
            test = Test(
                cell, seed, len(plan) * seeds.index(seed) + plan.index(cell) + 1, episodes, done
            )
            trainings.setdefault(name, (config, []))[1].append(test)
    for name, (config, tests) in trainings.items():
        if all(t.done for t in tests):
            continue
        if (out_dir / "runs" / name / CONFIG).is_file():
            # Before the data is loaded; also without checkpoints (results/ keeps config.json only).
            check_same_training(out_dir / "runs" / name, config)
        if name in sources and sources[name][0] not in trainings:
            check_source_trained(out_dir, name, *sources[name])
    return [
        Training(name, config, tuple(tests), sources[name][0] if name in sources else None)
        for name, (config, tests) in trainings.items()
    ]


def trained_so_far(run_dir: Path) -> int:
    """Iterations a run directory holds (0 for none): its ``last.pt``'s, or its ``best.pt``'s
    where a kill between the two writes of a validation left that one further or alone."""
    from fewshot_cli.run.training import resume_point

    if not (run_dir / LAST).is_file() and not (run_dir / BEST).is_file():
        return 0
    return resume_point(run_dir)[1]["iteration"]


def check_source_trained(
    out_dir: Path, name: str, source: str, config: TrainConfig, cell: Cell
) -> None:
    """Refuse to plan ``name`` while ``source`` (the training of ``cell`` with ``config``), the
    training it starts from, has not finished in ``out_dir`` (and is not part of the plan)."""
    done = trained_so_far(out_dir / "runs" / source)
    if done < config.iterations:
        state = (
            f"has done {done} of its {config.iterations} iterations" if done else "is not trained"
        )
        raise FewshotError(
            f"{name} starts from the model of {source}, which {state} in {out_dir}: "
            f"reproduce its cell first (--cells {cell.name}), or both together"
        )


def in_order(trainings: list[Training]) -> list[list[Training]]:
    """``trainings`` in waves: each after the wave holding its source (the independent first).

    Example:
        >>> a, b = Training("a", None, ()), Training("b", None, (), source="a")
        >>> [[t.name for t in wave] for wave in in_order([b, a])]
        [['a'], ['b']]
    """
    waves, pending = [], list(trainings)
    while pending:
        names = {t.name for t in pending}
        ready = [t for t in pending if t.source not in names]
        if not ready:
            raise FewshotError(f"trainings start from each other: {', '.join(sorted(names))}")
        waves.append(ready)
        pending = [t for t in pending if t not in ready]
    return waves
