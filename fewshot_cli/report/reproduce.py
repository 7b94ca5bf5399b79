"""The standard Omniglot grid, trained and evaluated in one go, beside the published numbers.

The grid is every algorithm of the registry at 5 and 20 ways, 1 and 5 shots, each with its
paper's protocol: its split (``Algorithm.paper_split``; rotation augmentation on the splits
without rotated classes) and, per budget, its ``BudgetSettings`` (training length, test
episodes, options). Today:

- MAML (Finn et al.): the ``random`` split (1100 / 100 / 423 characters; the paper trains on
  1200) with 90-degree rotation augmentation, one model per cell, 600 test episodes.
- ProtoNet (Snell et al.): the ``vinyals`` split (rotations as classes), 60-way training with 5
  queries, one model per shot count that serves both the 5-way and the 20-way cell (as in the
  paper: its budgets fix the training ways), 1000 test episodes.

Test episodes have 15 queries per class, seed 0, BatchNorm per algorithm (``run.evaluation``).

Every cell appends one row to ``DIR/eval.csv``; run directories are ``DIR/runs/<training>``
(``maml-5w1s``, ``protonet-60w1s``...). A cell is skipped when the CSV holds a row of the same
training (every field of its identity, ``run.protocol``) and test protocol (ways, shots, queries, episodes,
BatchNorm mode); a training with a ``last.pt`` resumes from it, so an interrupted reproduction
continues where it stopped when the same command is run again.

Seeds and parallelism: with ``seeds`` every cell is trained and tested at each training seed,
in its own run directory (``maml-5w1s-seed1``; seed 0 keeps the plain name) with its own rows,
and the table gives the mean and 95% CI across seeds (``aggregate``). The unit of work is a
``Training`` (one run directory and the cells it serves): ``jobs`` runs several at once in
worker processes (``run.workers``), and ``report.plan`` prints one command per training for an
outside scheduler, each writing ``DIR/csv/<training>.csv``; the table reads every CSV of the
folder (``result_csvs``), so either way it is the same table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import BudgetSettings
from fewshot_cli.choices import COMPARISON_FORMATS  # noqa: F401 (what format_comparison writes)
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.aggregate import (
    CI_NOTE,
    PROTOCOL,
    aggregate,
    format_accuracy,
    natural_key,
    percent,
    read_csv,
    read_results,
    render,
)
from fewshot_cli.run.checkpoint import CONFIG, LAST, load_checkpoint, read_config
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.protocol import training_identity, training_values

# Published test accuracies (%) on Omniglot, by (algorithm, ways, shots), and their sources.
PUBLISHED = {
    (a.name, ways, shots): value
    for a in registry.algorithms()
    for (ways, shots), value in a.published.accuracy.items()
}
PUBLISHED_SOURCES = {a.name: a.published.source for a in registry.algorithms()}
GRID = ("5w1s", "5w5s", "20w1s", "20w5s")
TEST_QUERIES = 15
TEST_SEED = 0
PLAN_CSVS = "csv"  # the folder of the CSVs of ``--plan``'s commands, inside the output folder


@dataclass(frozen=True)
class Budget:
    """How much training and testing a reproduction spends.

    Attributes:
        name: what ``--budget`` calls it.
        cells: the grid cells it runs unless ``cells`` are given.
        algorithms: ``BudgetSettings`` of each algorithm it runs (by name): training
            iterations, test episodes per cell, and options of its trainings.
        val_every, val_episodes: validation during training.
    """

    name: str
    cells: tuple[str, ...]
    algorithms: Mapping[str, BudgetSettings]
    val_every: int = 500
    val_episodes: int = 100


def settings_of(budget: str) -> dict[str, BudgetSettings]:
    """Every registered algorithm's settings for the budget called ``budget``."""
    return {a.name: a.budgets[budget] for a in registry.algorithms() if budget in a.budgets}


# Each algorithm's settings (and the speeds measured behind them) live in its module.
BUDGETS = {
    b.name: b
    for b in (
        # The README's first job: a few minutes on 2 cores, 5-way 1-shot only.
        Budget("quick", ("5w1s",), settings_of("quick"), val_every=10**9, val_episodes=20),
        # About 3 hours on 2 cores: 3.05-3.33 hours in one process of 2 threads, 4.4 hours of one
        # thread in all (so about 2.3 hours with --jobs 2), estimated from timed steps by
        # benchmarks.budget on the idle machine (results/cpu/logs).
        Budget("cpu", GRID, settings_of("cpu"), val_every=100, val_episodes=50),
        # The papers' lengths, for a GPU.
        Budget("paper", GRID, settings_of("paper"), val_every=500, val_episodes=100),
    )
}


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


def get_budget(budget: str | Budget) -> Budget:
    """The budget named ``budget`` (a ``Budget`` passes through)."""
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise FewshotError(f"unknown budget '{budget}' (choose from {', '.join(BUDGETS)})")
    return BUDGETS[budget]


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
    validates at the cell's ways.
    """
    settings = budget.algorithms[cell.algorithm]
    options = {"ways": cell.ways, **settings.options_for(cell.ways, cell.shots)}
    if "ways" in settings.options:
        options.setdefault("test_ways", val_ways)
    config = TrainConfig(
        cell.algorithm,
        shots=cell.shots,
        iterations=settings.iterations_for(cell.ways, cell.shots),
        split=split,
        rotations=split != "vinyals",
        val_every=budget.val_every,
        val_episodes=budget.val_episodes,
        test_queries=TEST_QUERIES,
        **options,
    )
    return f"{cell.algorithm}-{config.ways}w{cell.shots}s", config


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
    from fewshot_cli.run.evaluation import resolve_bn_mode

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
    """The rows of the evaluation CSVs ``csv_paths`` (those that exist) as dicts of strings."""
    paths = [csv_paths] if isinstance(csv_paths, Path) else csv_paths
    return [
        row
        for path in paths
        if path.exists()
        for row in read_csv(path, legacy=False).to_dict("records")
    ]


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
        >>> [t.name for t in plan_trainings(Path("out"), get_budget("cpu"), ["maml"], ["5w1s"], seeds=2)]
        ['maml-5w1s', 'maml-5w1s-seed1']
    """
    plan = plan_cells(budget, algorithms, cells)
    rows = csv_rows(result_csvs(out_dir) if csv_paths is None else csv_paths)
    splits = {c.algorithm: split or registry.get(c.algorithm).paper_split for c in plan}
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
            start = budget.algorithms[cell.algorithm].starts_from.get((cell.ways, cell.shots))
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


def check_source_trained(
    out_dir: Path, name: str, source: str, config: TrainConfig, cell: Cell
) -> None:
    """Refuse to plan ``name`` while ``source`` (the training of ``cell`` with ``config``), the
    training it starts from, has not finished in ``out_dir`` (and is not part of the plan)."""
    last = out_dir / "runs" / source / LAST
    done = load_checkpoint(last)["iteration"] if last.is_file() else 0
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


def title(test: Test, total: int, seeds: int) -> str:
    """``[3/8] maml 20-way 1-shot`` (``seed 1`` added when several seeds are planned)."""
    cell = test.cell
    return f"[{test.number}/{total}] {cell.algorithm} {cell.ways}-way {cell.shots}-shot" + (
        f" seed {test.seed}" if seeds > 1 or test.seed else ""
    )


def run_training(
    training: Training,
    out_dir: Path,
    csv_path: Path,
    total: int,
    seeds: int,
    data=None,
    data_root: str | Path | None = None,
    split_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Train (or resume) one training of the plan and run its tests not yet done.

    The unit ``reproduce`` runs in order, or in worker processes with ``--jobs`` (which pass
    ``device`` and ``echo``); ``data`` is loaded from ``data_root`` when not given.

    Raises:
        TrainingInterrupted: a signal stopped the training (``last.pt`` saved; rerun to resume).
    """
    from fewshot_cli.data.source import load_omniglot
    from fewshot_cli.run.evaluation import evaluate_run
    from fewshot_cli.run.training import TrainingInterrupted, train

    tests = [t for t in training.tests if not t.done]
    if not tests:
        return
    if data is None:
        data = load_omniglot(data_root, progress=progress)
    run_dir = out_dir / "runs" / training.name
    config = dataclasses.replace(
        training.config,
        device=device,
        data_root=str(data.root),
        split_dir=str(split_dir) if split_dir else None,
    )
    for test in tests:
        cell, name = test.cell, title(test, total, seeds)
        trained = load_checkpoint(run_dir / LAST)["iteration"] if (run_dir / LAST).is_file() else 0
        if trained < config.iterations:
            action = f"resuming at {trained}" if trained else "training"
            echo(f"{name}: {action} {run_dir} ({config.iterations} iterations)")
            try:
                train(config, run_dir, resume=trained > 0, data=data, progress=progress)
            except TrainingInterrupted as exc:
                raise TrainingInterrupted(
                    f"{exc}, or rerun this reproduce command", exc.signum
                ) from None
        else:
            echo(f"{name}: {run_dir} already trained")
        echo(f"{name}: testing on {test.episodes} episodes")
        _, row = evaluate_run(
            run_dir,
            csv_path,
            ways=cell.ways,
            shots=cell.shots,
            queries=TEST_QUERIES,
            episodes=test.episodes,
            seed=TEST_SEED,
            data=data,
            device=device,
            progress=progress,
        )
        published = PUBLISHED.get((cell.algorithm, cell.ways, cell.shots))
        echo(
            f"{name}: {format_accuracy(row)}"
            + (f" (published {published}%)" if published is not None else "")
        )


def reproduce(
    out_dir: str | Path,
    budget: str | Budget = "quick",
    algorithms: Iterable[str] | None = None,
    cells: Iterable[str] | None = None,
    split: str | None = None,
    split_dir: str | Path | None = None,
    data=None,
    data_root: str | Path | None = None,
    download: bool = False,
    device: str = "auto",
    progress: bool = True,
    echo: Callable[[str], None] = print,
    seeds: int | Iterable[int] = 1,
    jobs: int = 1,
    csv_path: str | Path | None = None,
    report: bool = False,
) -> pd.DataFrame:
    """Train and evaluate the Omniglot grid into ``out_dir``; return the comparison table.

    Args:
        out_dir: holds ``eval.csv`` and ``runs/``; run the same call again to resume.
        budget: ``quick``, ``cpu``, ``paper`` or a ``Budget``.
        algorithms: narrow to these algorithms (default: all of the budget's).
        cells: narrow to these cells, e.g. ``["5w1s"]`` (default: the budget's).
        split: one split for every algorithm instead of each paper's (``random`` for MAML,
            ``vinyals`` for ProtoNet).
        split_dir: folder of the Vinyals split files (default ``<data root>/splits/vinyals``).
        data: preloaded Omniglot (else loaded from ``data_root``, with ``download``).
        device: ``auto``, ``cpu``, ``cuda``...
        progress: progress bars of training and testing (off in worker processes).
        echo: where the progress lines go.
        seeds: training seeds: ``N`` for ``0 .. N-1``, or a list (``--seed S``: ``[S]``). Each
            seed trains its own run directory (``Training.name``) and adds its own rows.
        jobs: trainings at once, each in a worker process (``run.workers``: ``cores / jobs``
            threads each, one GPU each on a machine with several).
        csv_path: where the rows go (default ``out_dir/eval.csv``); ``--plan`` gives each
            command its own under ``out_dir/csv/``.
        report: train and test nothing: list the tests without a row yet and return the table
            of the rows in ``result_csvs(out_dir)``.

    Returns:
        ``comparison(result_csvs(out_dir))``: our accuracy beside the published one, per cell,
        mean and 95% CI across seeds when there are several.

    Raises:
        TrainingInterrupted: a signal stopped a training (``last.pt`` saved; rerun to resume).

    Example::

        print(format_comparison(reproduce("results/quick", "quick", seeds=3, jobs=3)))
    """
    from fewshot_cli.data.source import load_omniglot
    from fewshot_cli.data.splits import make_split
    from fewshot_cli.report.results import check_writable
    from fewshot_cli.run.workers import run_jobs

    if jobs < 1:
        raise FewshotError(f"--jobs must be at least 1 (got {jobs})")
    budget = get_budget(budget)
    out_dir = Path(out_dir)
    csv_path = Path(csv_path) if csv_path else out_dir / "eval.csv"
    if not report:
        check_writable(csv_path)
    csvs = result_csvs(out_dir)
    csvs += [csv_path] if csv_path.is_file() and csv_path not in csvs else []
    trainings = plan_trainings(out_dir, budget, algorithms, cells, split, seeds, csvs)
    tests = sorted((t for training in trainings for t in training.tests), key=lambda t: t.number)
    n_seeds = len(seed_list(seeds))
    runs = {t: training.name for training in trainings for t in training.tests}
    for test in tests:
        if test.done:
            echo(f"{title(test, len(tests), n_seeds)}: already in {out_dir}, skipped")
        elif report:
            echo(f"{title(test, len(tests), n_seeds)}: no result yet (runs/{runs[test]})")
    if report:
        if not csvs:
            raise FewshotError(f"no results in {out_dir} yet (no eval.csv, no {PLAN_CSVS}/*.csv)")
        return comparison(csvs)

    todo = [t for t in trainings if not all(test.done for test in t.tests)]
    if todo:
        if data is None:
            data = load_omniglot(data_root, download=download, progress=progress)
        for split_name in dict.fromkeys(t.config.split for t in todo):
            # Fetch (or fail on) the split files before hours of training.
            make_split(data, split_name, 0, split_dir, download)
    common = dict(total=len(tests), seeds=n_seeds, split_dir=split_dir)
    for wave in in_order(todo):  # a training that starts from another's model goes after it
        if jobs == 1 or len(wave) <= 1:
            for training in wave:
                run_training(
                    training,
                    out_dir,
                    csv_path,
                    data=data,
                    device=device,
                    progress=progress,
                    echo=echo,
                    **common,
                )
        else:
            # Workers load the data themselves (from the tensor cache the line above filled).
            run_jobs(
                [
                    (run_training_job, (training, out_dir, csv_path, str(data.root), common))
                    for training in wave
                ],
                min(jobs, len(wave)),
                device,
            )
    csvs = result_csvs(out_dir)
    return comparison(csvs + ([csv_path] if csv_path not in csvs else []))


def run_training_job(
    training: Training,
    out_dir: Path,
    csv_path: Path,
    data_root: str,
    common: dict,
    device: str = "auto",
    echo: Callable[[str], None] = print,
) -> None:
    """``run_training`` in a worker process (``run.workers``), without progress bars."""
    from fewshot_cli.run.training import TrainingInterrupted

    try:
        run_training(
            training,
            out_dir,
            csv_path,
            data_root=data_root,
            device=device,
            progress=False,
            echo=echo,
            **common,
        )
    except TrainingInterrupted as exc:
        echo(f"{training.name}: {exc}")
        raise


def comparison(
    csv_paths: str | Path | Iterable[str | Path], warn: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """Our results in the evaluation CSVs ``csv_paths`` per cell beside the published accuracy.

    Rows are grouped as ``aggregate`` groups them, by the whole protocol (a run is one
    training: with several seeds, ``runs`` counts the seeds and ``seeds_ci95`` is the 95% CI
    of their mean).

    Columns: ``algorithm``, the protocol columns that tell two lines of one algorithm and cell
    apart (``variant_columns``), ``split``, ``cell``, ``accuracy_mean``, ``ci95``, ``runs``,
    ``episodes``, ``run_std``, ``seeds_ci95`` (fractions, as ``aggregate``), ``published`` (%,
    NaN where the papers have none) and ``difference`` (ours minus published, percentage points).

    Example::

        comparison(["results/quick/eval.csv", *Path("results/quick/csv").glob("*.csv")])
    """
    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
    table = aggregate(read_results(paths), by=PROTOCOL, warn=warn)
    variants = variant_columns(table)
    table = table.assign(
        ways=[natural_key(w)[1] for w in table["test_ways"]],
        shots=[natural_key(s)[1] for s in table["test_shots"]],
    )
    table["cell"] = [f"{w}w{s}s" for w, s in zip(table["test_ways"], table["test_shots"])]
    table["published"] = [
        PUBLISHED.get((a, int(w), int(s)), float("nan"))
        for a, w, s in zip(table["algorithm"], table["ways"], table["shots"])
    ]
    table["difference"] = 100 * table["accuracy_mean"] - table["published"]
    table = table.sort_values(["algorithm", "ways", "shots"], kind="stable")
    return table[
        [
            "algorithm",
            *variants,
            "split",
            "cell",
            "accuracy_mean",
            "ci95",
            "runs",
            "episodes",
            "run_std",
            "seeds_ci95",
            "published",
            "difference",
        ]
    ].reset_index(drop=True)


def variant_columns(table: pd.DataFrame) -> list[str]:
    """The protocol columns of ``table`` whose values differ within one algorithm and cell."""
    cell = ["algorithm", "test_ways", "test_shots"]
    fixed = {*cell, "split"}
    return [
        c
        for c in PROTOCOL
        if c not in fixed and c in table and (table.groupby(cell)[c].nunique() > 1).any()
    ]


def format_comparison(table: pd.DataFrame, fmt: str = "table") -> str:
    """Text of ``comparison``: a terminal or Markdown table, then what ± means and the sources.

    Our accuracy is shown as mean ± 95% CI across test episodes (as in ``aggregate``), with
    the CI across training seeds in a column of its own where a cell has several runs.

    Example::

        print(format_comparison(comparison("results/quick/eval.csv"), "markdown"))
    """
    variants = [c for c in table.columns if c in PROTOCOL and c not in ("algorithm", "split")]
    headers = [
        "algorithm",
        *variants,
        "split",
        "cell",
        "ours (%)",
        "runs",
        "episodes",
        *(["seeds CI95 (%)"] if (table["runs"] > 1).any() else []),
        "published (%)",
        "ours - published",
    ]
    rows = []
    for r in table.to_dict("records"):
        ci = r["ci95"]
        ours = percent(r["accuracy_mean"]) + (f" ± {percent(ci)}" if pd.notna(ci) else "")
        known = pd.notna(r["published"])
        rows.append(
            [
                r["algorithm"],
                *(r[v] for v in variants),
                r["split"],
                r["cell"],
                ours,
                str(r["runs"]),
                str(int(r["episodes"])) if pd.notna(r["episodes"]) else "",
                *([percent(r["seeds_ci95"])] if "seeds CI95 (%)" in headers else []),
                f"{r['published']:.1f}" if known else "",
                f"{r['difference']:+.2f}" if known else "",
            ]
        )
    notes = [CI_NOTE]
    notes += [
        f"published: {name} -- {source}"
        for name, source in PUBLISHED_SOURCES.items()
        if name in set(table["algorithm"])
    ]
    text = render(headers, rows, fmt, right=headers[headers.index("ours (%)") :])
    if fmt == "markdown":  # a list, or Markdown runs the lines into one paragraph
        return text + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text + "\n" + "\n".join(notes) + "\n"
