"""The standard Omniglot grid, trained and evaluated in one go, beside the published numbers.

The grid is MAML and ProtoNet at 5 and 20 ways, 1 and 5 shots, each with its paper's protocol:

- MAML (Finn et al.): the ``random`` split (1100 / 100 / 423 characters; the paper trains on
  1200) with 90-degree rotation augmentation, one model per cell, 600 test episodes.
- ProtoNet (Snell et al.): the ``vinyals`` split (rotations as classes), 60-way training with 5
  queries, one model per shot count that serves both the 5-way and the 20-way cell (as in the
  paper), 1000 test episodes.

Test episodes have 15 queries per class, seed 0, BatchNorm per algorithm (``evaluation``).

Every cell appends one row to ``DIR/eval.csv``; run directories are ``DIR/runs/<training>``
(``maml-5w1s``, ``protonet-60w1s``...). A cell whose row (same run, training length and test
episodes) is in the CSV is skipped, and a training with a ``last.pt`` resumes from it, so an
interrupted reproduction continues where it stopped when the same command is run again.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from fewshot_cli.aggregate import (aggregate, format_accuracy, natural_key, percent, read_csv,
                                   render)
from fewshot_cli.checkpoint import LAST, load_checkpoint, read_config
from fewshot_cli.config import ALGORITHMS, TrainConfig
from fewshot_cli.errors import FewshotError

# Published test accuracies (%) on Omniglot, by (algorithm, ways, shots).
PUBLISHED_SOURCES = {
    "maml": "Finn, Abbeel & Levine (2017), Model-Agnostic Meta-Learning, Table 1 (Omniglot)",
    "protonet": "Snell, Swersky & Zemel (2017), Prototypical Networks, Table 1 (Omniglot)",
}
PUBLISHED = {
    ("maml", 5, 1): 98.7, ("maml", 5, 5): 99.9, ("maml", 20, 1): 95.8, ("maml", 20, 5): 98.9,
    ("protonet", 5, 1): 98.8, ("protonet", 5, 5): 99.7, ("protonet", 20, 1): 96.0,
    ("protonet", 20, 5): 98.9,
}
GRID = ("5w1s", "5w5s", "20w1s", "20w5s")
PAPER_SPLITS = {"maml": "random", "protonet": "vinyals"}
TEST_QUERIES = 15


@dataclass(frozen=True)
class Budget:
    """How much training and testing a reproduction spends.

    Attributes:
        name: what ``--budget`` calls it.
        cells: the grid cells it runs unless ``cells`` are given.
        maml_iterations: meta-iterations of each MAML cell.
        maml_meta_batch: tasks per meta-update; ``None``: the paper's 32 (5-way) / 16 (20-way).
        maml_first_order: first-order MAML (the papers' numbers are second order).
        maml_lr: Adam's meta learning rate (the paper: 1e-3; short budgets learn faster at 3e-3).
        protonet_iterations: training episodes of each ProtoNet model.
        protonet_ways: ways of the ProtoNet training episodes (the paper: 60).
        maml_episodes, protonet_episodes: test episodes per cell (the papers: 600 and 1000).
        val_every, val_episodes: validation during training.
    """

    name: str
    cells: tuple[str, ...]
    maml_iterations: int
    maml_meta_batch: int | None
    maml_first_order: bool
    protonet_iterations: int
    protonet_ways: int = 60
    maml_lr: float = 1e-3
    maml_episodes: int = 600
    protonet_episodes: int = 1000
    val_every: int = 500
    val_episodes: int = 100


# Speeds behind the budgets, measured by ``python -m benchmarks.budget`` on an idle 2-core
# machine with 2 torch threads (results/cpu/logs): a second-order MAML meta-iteration of 8 tasks
# takes 0.7 s (5w1s), 1.0 s (5w5s), 5.7 s (20w1s) and 14.5 s (20w5s, with its 5 inner steps); a
# ProtoNet 60-way episode 0.34 s (1-shot) / 0.71 s (5-shot); a test episode 0.02-0.06 s at 5
# ways, 0.12-0.44 s at 20 ways.
BUDGETS = {b.name: b for b in (
    # The README's first job: a few minutes on 2 cores, 5-way 1-shot only.
    # Second-order MAML: a first-order one barely moves in its first few hundred iterations,
    # at nearly the same cost per iteration on a CPU.
    Budget("quick", ("5w1s",), maml_iterations=60, maml_meta_batch=8, maml_first_order=False,
           protonet_iterations=100, protonet_ways=20, maml_lr=3e-3, maml_episodes=100,
           protonet_episodes=100, val_every=10**9, val_episodes=20),
    # About 2 hours on 2 cores (1.94 h estimated from timed steps): ProtoNet 2 x 1500 episodes
    # (26 min); second-order MAML 4 x 200 iterations of 8 tasks (73 min, 48 of them 20-way
    # 5-shot); validation 3 min; testing with the papers' episode counts 14 min.
    Budget("cpu", GRID, maml_iterations=200, maml_meta_batch=8, maml_first_order=False,
           protonet_iterations=1500, maml_lr=3e-3, val_every=100, val_episodes=50),
    # The papers' lengths, for a GPU: MAML 60000 meta-iterations (its reference code's Omniglot
    # commands), second order, paper meta-batches; ProtoNet 20000 episodes (the paper trains
    # until validation stops improving).
    Budget("paper", GRID, maml_iterations=60000, maml_meta_batch=None, maml_first_order=False,
           protonet_iterations=20000, val_every=500, val_episodes=100),
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
    """The cells to run: ``algorithms`` x ``cells`` (default: both algorithms x the budget's cells)."""
    algorithms = list(dict.fromkeys(algorithms or ALGORITHMS))
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise FewshotError(f"unknown algorithm '{algorithm}' (choose from {', '.join(ALGORITHMS)})")
    shapes = list(dict.fromkeys(parse_cell(c) for c in (cells or budget.cells)))
    return [Cell(a, w, s) for a in algorithms for w, s in shapes]


def training_for(cell: Cell, budget: Budget, split: str, val_ways: int) -> tuple[str, TrainConfig]:
    """``(run name, configuration)`` of the training behind ``cell``.

    ProtoNet's run depends on the shots only (its ``val_ways``: the fewest ways it is tested at).
    """
    common = dict(shots=cell.shots, split=split, rotations=split != "vinyals",
                  val_every=budget.val_every, val_episodes=budget.val_episodes,
                  test_queries=TEST_QUERIES)
    if cell.algorithm == "maml":
        config = TrainConfig("maml", ways=cell.ways, iterations=budget.maml_iterations,
                             meta_batch=budget.maml_meta_batch, lr=budget.maml_lr,
                             first_order=budget.maml_first_order, **common)
        return f"maml-{cell.name}", config
    config = TrainConfig("protonet", ways=budget.protonet_ways,
                         iterations=budget.protonet_iterations, test_ways=val_ways, **common)
    return f"protonet-{budget.protonet_ways}w{cell.shots}s", config


# What makes two trainings the same (validation and paths may differ).
TRAINING_FIELDS = ("algorithm", "ways", "shots", "queries", "iterations", "split", "split_seed",
                   "rotations", "seed", "backbone", "lr", "lr_halve_every", "inner_lr",
                   "inner_steps", "meta_batch", "first_order")


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


def done_cells(csv_path: Path) -> set[tuple]:
    """Keys ``(algorithm, ways, shots, run name, training length, episodes)`` of the CSV's rows."""
    if not csv_path.exists():
        return set()
    rows = read_csv(csv_path)
    columns = ["algorithm", "test_ways", "test_shots", "run_id", "train_iterations", "episodes"]
    for column in columns:
        if column not in rows.columns:
            rows[column] = ""
    return {tuple(str(v) for v in r) for r in rows[columns].itertuples(index=False)}


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
    from fewshot_cli.evaluation import evaluate_run
    from fewshot_cli.results import check_writable
    from fewshot_cli.source import load_omniglot
    from fewshot_cli.splits import make_split
    from fewshot_cli.training import TrainingInterrupted, train

    budget = get_budget(budget)
    plan = plan_cells(budget, algorithms, cells)
    out_dir = Path(out_dir)
    csv_path = out_dir / "eval.csv"
    check_writable(csv_path)
    done = done_cells(csv_path)
    splits = {a: split or PAPER_SPLITS[a] for a in ALGORITHMS}
    val_ways = {a: min(c.ways for c in plan if c.algorithm == a) for a in {c.algorithm for c in plan}}
    jobs = []
    for cell in plan:
        name, config = training_for(cell, budget, splits[cell.algorithm], val_ways[cell.algorithm])
        config.resolved()  # a bad cell fails before anything runs
        episodes = budget.maml_episodes if cell.algorithm == "maml" else budget.protonet_episodes
        key = (cell.algorithm, str(cell.ways), str(cell.shots), name, str(config.iterations),
               str(episodes))
        if key not in done and (out_dir / "runs" / name / LAST).is_file():
            check_same_training(out_dir / "runs" / name, config)  # before the data is loaded
        jobs.append((cell, name, config, episodes, key in done))

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
                raise TrainingInterrupted(f"{exc}, or rerun this reproduce command",
                                          exc.signum) from None
        else:
            echo(f"{title}: {run_dir} already trained")
        echo(f"{title}: testing on {episodes} episodes")
        _, row = evaluate_run(run_dir, csv_path, ways=cell.ways, shots=cell.shots,
                              queries=TEST_QUERIES, episodes=episodes, seed=0, data=data,
                              device=device, progress=progress)
        echo(f"{title}: {format_accuracy(row)}"
             + (f" (published {PUBLISHED[(cell.algorithm, cell.ways, cell.shots)]}%)"
                if (cell.algorithm, cell.ways, cell.shots) in PUBLISHED else ""))
    return comparison(csv_path)


def comparison(csv_path: str | Path) -> pd.DataFrame:
    """Our results in ``csv_path`` per cell beside the published accuracy.

    Columns: ``algorithm``, ``order``, ``split``, ``cell``, ``accuracy_mean``, ``ci95``,
    ``runs``, ``episodes`` (fractions, as ``aggregate``), ``published`` (%, NaN where the papers
    have none) and ``difference`` (ours minus published, percentage points).

    Example:
        >>> comparison("results/quick/eval.csv")
    """
    table = aggregate(read_csv(Path(csv_path)),
                      by=["algorithm", "order", "split", "test_ways", "test_shots"])
    table = table.assign(ways=[natural_key(w)[1] for w in table["test_ways"]],
                         shots=[natural_key(s)[1] for s in table["test_shots"]])
    table["cell"] = [f"{w}w{s}s" for w, s in zip(table["test_ways"], table["test_shots"])]
    table["published"] = [PUBLISHED.get((a, int(w), int(s)), float("nan"))
                          for a, w, s in zip(table["algorithm"], table["ways"], table["shots"])]
    table["difference"] = 100 * table["accuracy_mean"] - table["published"]
    return table[["algorithm", "order", "split", "cell", "accuracy_mean", "ci95", "runs",
                  "episodes", "published", "difference"]].reset_index(drop=True)


def format_comparison(table: pd.DataFrame, fmt: str = "table") -> str:
    """Text of ``comparison``: a terminal or Markdown table, then the sources of the numbers.

    Example:
        >>> print(format_comparison(comparison("results/quick/eval.csv"), "markdown"))
    """
    headers = ["algorithm", "order", "split", "cell", "ours (%)", "episodes", "published (%)",
               "ours - published"]
    rows = []
    for r in table.to_dict("records"):
        ours = percent(r["accuracy_mean"]) + (f" ± {percent(r['ci95'])}" if pd.notna(r["ci95"]) else "")
        if r["runs"] > 1:
            ours += f" ({r['runs']} runs)"
        known = pd.notna(r["published"])
        rows.append([r["algorithm"], r["order"], r["split"], r["cell"], ours,
                     str(int(r["episodes"])) if pd.notna(r["episodes"]) else "",
                     f"{r['published']:.1f}" if known else "",
                     f"{r['difference']:+.2f}" if known else ""])
    sources = [f"published: {name} -- {source}" for name, source in PUBLISHED_SOURCES.items()
               if name in set(table["algorithm"])]
    text = render(headers, rows, fmt, right=headers[4:])
    return text + "\n" + ("\n" if fmt == "markdown" and sources else "") + "\n".join(sources) + "\n"
