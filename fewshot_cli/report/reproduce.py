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
training (every field of ``TRAINING_FIELDS``) and test protocol (ways, shots, queries, episodes,
BatchNorm mode); a training with a ``last.pt`` resumes from it, so an interrupted reproduction
continues where it stopped when the same command is run again.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import BudgetSettings
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.aggregate import aggregate, natural_key, percent, read_csv, render
from fewshot_cli.run.checkpoint import CONFIG, LAST, load_checkpoint, read_config
from fewshot_cli.run.config import TrainConfig

# Published test accuracies (%) on Omniglot, by (algorithm, ways, shots), and their sources.
PUBLISHED = {(a.name, ways, shots): value for a in registry.algorithms()
             for (ways, shots), value in a.published.accuracy.items()}
PUBLISHED_SOURCES = {a.name: a.published.source for a in registry.algorithms()}
GRID = ("5w1s", "5w5s", "20w1s", "20w5s")
TEST_QUERIES = 15
TEST_SEED = 0
COMPARISON_FORMATS = ("table", "markdown")  # what format_comparison writes


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
BUDGETS = {b.name: b for b in (
    # The README's first job: a few minutes on 2 cores, 5-way 1-shot only.
    Budget("quick", ("5w1s",), settings_of("quick"), val_every=10**9, val_episodes=20),
    # About 2 hours on 2 cores (1.94 h estimated from timed steps by benchmarks.budget, with
    # validation 3 min and testing with the papers' episode counts 14 min).
    Budget("cpu", GRID, settings_of("cpu"), val_every=100, val_episodes=50),
    # The papers' lengths, for a GPU.
    Budget("paper", GRID, settings_of("paper"), val_every=500, val_episodes=100),
)}


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
        raise FewshotError(f"bad cell '{text}': write WAYSwSHOTSs with at least 2 ways, e.g. 5w1s or 20w5s")
    return int(match[1]), int(match[2])


def get_budget(budget: str | Budget) -> Budget:
    """The budget named ``budget`` (a ``Budget`` passes through)."""
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise FewshotError(f"unknown budget '{budget}' (choose from {', '.join(BUDGETS)})")
    return BUDGETS[budget]


def plan_cells(budget: Budget, algorithms: Iterable[str] | None = None,
               cells: Iterable[str] | None = None) -> list[Cell]:
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
    config = TrainConfig(cell.algorithm, shots=cell.shots,
                         iterations=settings.iterations_for(cell.ways, cell.shots),
                         split=split, rotations=split != "vinyals", val_every=budget.val_every,
                         val_episodes=budget.val_episodes, test_queries=TEST_QUERIES, **options)
    return f"{cell.algorithm}-{config.ways}w{cell.shots}s", config


# What makes two trainings the same (validation and paths may differ).
TRAINING_FIELDS = ("algorithm", "ways", "shots", "queries", "iterations", "split", "split_seed",
                   "rotations", "seed", "backbone", "lr", "lr_halve_every", "inner_lr",
                   "inner_steps", "meta_batch", "first_order", "bn_running_stats", "engine")


def check_same_training(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume a run directory made with another budget or protocol."""
    stored = TrainConfig.from_dict(read_config(run_dir)).resolved()
    planned = config.resolved()
    differ = [f for f in TRAINING_FIELDS if getattr(stored, f) != getattr(planned, f)]
    if differ:
        field = differ[0]
        raise FewshotError(
            f"{run_dir} was trained with {field}={getattr(stored, field)}, not "
            f"{getattr(planned, field)} (another budget or split?); use another --out directory")


# Training fields that a CSV row records itself, and their columns. The rest of
# TRAINING_FIELDS is read from the row's run directory, whose config.json holds them all.
ROW_TRAINING_COLUMNS = {"algorithm": "algorithm", "ways": "train_ways", "shots": "train_shots",
                        "queries": "train_queries", "iterations": "train_iterations",
                        "split": "split", "backbone": "backbone"}


def cell_protocol(cell: Cell, episodes: int) -> dict[str, str]:
    """The CSV columns of the test protocol a reproduction gives ``cell``, as the CSV holds them."""
    from fewshot_cli.run.evaluation import resolve_bn_mode

    return {"test_ways": str(cell.ways), "test_shots": str(cell.shots),
            "test_queries": str(TEST_QUERIES), "episodes": str(episodes), "seed": str(TEST_SEED),
            "split_part": "test", "bn_mode": resolve_bn_mode(cell.algorithm)}


def csv_rows(csv_path: Path) -> list[dict[str, str]]:
    """The rows of the CSV at ``csv_path`` as dicts of strings (none when it is absent)."""
    return read_csv(csv_path).to_dict("records") if csv_path.exists() else []


def is_done(rows: list[dict[str, str]], run_dir: Path, config: TrainConfig,
            protocol: dict[str, str]) -> bool:
    """Whether one of ``rows`` tested the training ``config`` of ``run_dir`` with ``protocol``.

    A row counts when it names ``run_dir``, records the planned training and the planned test
    protocol, and the run directory's configuration agrees on every field of
    ``TRAINING_FIELDS`` (a row of another split, learning rate or seed does not).

    Example:
        >>> is_done(csv_rows(Path("X/eval.csv")), Path("X/runs/maml-5w1s"), config,
        ...         cell_protocol(Cell("maml", 5, 1), 600))
        False
    """
    planned = config.resolved()
    wanted = {"run_id": run_dir.name, **protocol,
              **{column: str(getattr(planned, field)) for field, column in ROW_TRAINING_COLUMNS.items()}}
    if not any(all(row.get(k) == v for k, v in wanted.items()) for row in rows):
        return False
    try:
        stored = TrainConfig.from_dict(read_config(run_dir)).resolved()
    except FewshotError:  # run directory gone or unreadable: nothing proves what the row tested
        return False
    return all(getattr(stored, f) == getattr(planned, f) for f in TRAINING_FIELDS)


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
) -> pd.DataFrame:
    """Train and evaluate the Omniglot grid into ``out_dir``; return the comparison table.

    Args:
        out_dir: holds ``eval.csv`` and ``runs/``; run the same call again to resume.
        budget: ``quick``, ``cpu``, ``paper`` or a ``Budget``.
        algorithms: narrow to these algorithms (default both).
        cells: narrow to these cells, e.g. ``["5w1s"]`` (default: the budget's).
        split: one split for every algorithm instead of each paper's (``random`` for MAML,
            ``vinyals`` for ProtoNet).
        split_dir: folder of the Vinyals split files (default ``<data root>/splits/vinyals``).
        data: preloaded Omniglot (else loaded from ``data_root``, with ``download``).
        device: ``auto``, ``cpu``, ``cuda``...
        progress: progress bars of training and testing.
        echo: where the progress lines go.

    Returns:
        ``comparison(out_dir / "eval.csv")``: our accuracy beside the published one, per cell.

    Raises:
        TrainingInterrupted: a signal stopped a training (``last.pt`` saved; rerun to resume).

    Example:
        >>> print(format_comparison(reproduce("results/quick", "quick")))
    """
    from fewshot_cli.run.evaluation import evaluate_run
    from fewshot_cli.report.results import check_writable
    from fewshot_cli.data.source import load_omniglot
    from fewshot_cli.data.splits import make_split
    from fewshot_cli.run.training import TrainingInterrupted, train

    budget = get_budget(budget)
    plan = plan_cells(budget, algorithms, cells)
    out_dir = Path(out_dir)
    csv_path = out_dir / "eval.csv"
    check_writable(csv_path)
    rows = csv_rows(csv_path)
    splits = {c.algorithm: split or registry.get(c.algorithm).paper_split for c in plan}
    val_ways = {a: min(c.ways for c in plan if c.algorithm == a) for a in {c.algorithm for c in plan}}
    jobs = []
    for cell in plan:
        name, config = training_for(cell, budget, splits[cell.algorithm], val_ways[cell.algorithm])
        config.resolved()  # a bad cell fails before anything runs
        episodes = budget.algorithms[cell.algorithm].test_episodes
        done = is_done(rows, out_dir / "runs" / name, config, cell_protocol(cell, episodes))
        if not done and (out_dir / "runs" / name / CONFIG).is_file():
            # Before the data is loaded; also without checkpoints (results/ keeps config.json only).
            check_same_training(out_dir / "runs" / name, config)
        jobs.append((cell, name, config, episodes, done))

    todo = [job for job in jobs if not job[4]]
    if todo:
        if data is None:
            data = load_omniglot(data_root, download=download, progress=progress)
        for algorithm in dict.fromkeys(job[0].algorithm for job in todo):
            # Fetch (or fail on) the split files before hours of training.
            make_split(data, splits[algorithm], 0, split_dir, download)
    for number, (cell, name, config, episodes, skipped) in enumerate(jobs, start=1):
        title = f"[{number}/{len(jobs)}] {cell.algorithm} {cell.ways}-way {cell.shots}-shot"
        if skipped:
            echo(f"{title}: already in {csv_path}, skipped")
            continue
        run_dir = out_dir / "runs" / name
        config = dataclasses.replace(config, device=device, data_root=str(data.root),
                                     split_dir=str(split_dir) if split_dir else None)
        trained = 0
        if (run_dir / LAST).is_file():
            trained = load_checkpoint(run_dir / LAST)["iteration"]
        if trained < config.iterations:
            action = f"resuming at {trained}" if trained else "training"
            echo(f"{title}: {action} {run_dir} ({config.iterations} iterations)")
            try:
                train(config, run_dir, resume=trained > 0, data=data, progress=progress)
            except TrainingInterrupted as exc:
                raise TrainingInterrupted(f"{exc}, or rerun this reproduce command") from None
        else:
            echo(f"{title}: {run_dir} already trained")
        echo(f"{title}: testing on {episodes} episodes")
        result, _ = evaluate_run(run_dir, csv_path, ways=cell.ways, shots=cell.shots,
                                 queries=TEST_QUERIES, episodes=episodes, seed=TEST_SEED, data=data,
                                 device=device, progress=progress)
        echo(f"{title}: {result.mean:.2%} ± {result.ci95:.2%}"
             + (f" (published {PUBLISHED[(cell.algorithm, cell.ways, cell.shots)]}%)"
                if (cell.algorithm, cell.ways, cell.shots) in PUBLISHED else ""))
    return comparison(csv_path)


def comparison(csv_path: str | Path) -> pd.DataFrame:
    """Our results in ``csv_path`` per cell beside the published accuracy.

    Columns: ``algorithm``, the algorithms' variant columns (``registry.group_columns()``:
    MAML's ``order``), ``split``, ``cell``, ``accuracy_mean``, ``ci95``,
    ``runs``, ``episodes`` (fractions, as ``aggregate``), ``published`` (%, NaN where the papers
    have none) and ``difference`` (ours minus published, percentage points).

    Example:
        >>> comparison("results/quick/eval.csv")
    """
    variants = list(registry.group_columns())
    table = aggregate(read_csv(Path(csv_path)),
                      by=["algorithm", *variants, "split", "test_ways", "test_shots"])
    table = table.assign(ways=[natural_key(w)[1] for w in table["test_ways"]],
                         shots=[natural_key(s)[1] for s in table["test_shots"]])
    table["cell"] = [f"{w}w{s}s" for w, s in zip(table["test_ways"], table["test_shots"])]
    table["published"] = [PUBLISHED.get((a, int(w), int(s)), float("nan"))
                          for a, w, s in zip(table["algorithm"], table["ways"], table["shots"])]
    table["difference"] = 100 * table["accuracy_mean"] - table["published"]
    return table[["algorithm", *variants, "split", "cell", "accuracy_mean", "ci95", "runs",
                  "episodes", "published", "difference"]].reset_index(drop=True)


def format_comparison(table: pd.DataFrame, fmt: str = "table") -> str:
    """Text of ``comparison``: a terminal or Markdown table, then the sources of the numbers.

    Example:
        >>> print(format_comparison(comparison("results/quick/eval.csv"), "markdown"))
    """
    variants = list(registry.group_columns())
    headers = ["algorithm", *variants, "split", "cell", "ours (%)", "episodes", "published (%)",
               "ours - published"]
    rows = []
    for r in table.to_dict("records"):
        ours = percent(r["accuracy_mean"]) + (f" ± {percent(r['ci95'])}" if pd.notna(r["ci95"]) else "")
        if r["runs"] > 1:
            ours += f" ({r['runs']} runs)"
        known = pd.notna(r["published"])
        rows.append([r["algorithm"], *(r[v] for v in variants), r["split"], r["cell"], ours,
                     str(int(r["episodes"])) if pd.notna(r["episodes"]) else "",
                     f"{r['published']:.1f}" if known else "",
                     f"{r['difference']:+.2f}" if known else ""])
    sources = [f"published: {name} -- {source}" for name, source in PUBLISHED_SOURCES.items()
               if name in set(table["algorithm"])]
    text = render(headers, rows, fmt, right=headers[headers.index("ours (%)"):])
    return text + "\n" + ("\n" if fmt == "markdown" and sources else "") + "\n".join(sources) + "\n"
