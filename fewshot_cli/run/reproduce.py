"""A reproduction: every training of the grid's plan (``run.grid``) trained or resumed, and
each of its cells tested into a CSV, in order or in worker processes.

Every cell appends one row to ``DIR/eval.csv``; a training with a ``last.pt`` resumes from it,
so an interrupted reproduction continues where it stopped when the same call is made again.
With several ``seeds`` every cell is trained and tested at each training seed, in its own run
directory with its own rows. ``jobs`` runs several trainings at once in worker processes
(``run.workers``); ``report.plan`` prints one command per training for an outside scheduler,
each writing ``DIR/csv/<training>.csv``. ``report.comparison`` makes the table of them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from fewshot_cli.algorithms import papers
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.budgets import Budget, get_budget
from fewshot_cli.run.grid import (
    PLAN_CSVS,
    TEST_QUERIES,
    TEST_SEED,
    Test,
    Training,
    in_order,
    plan_trainings,
    result_csvs,
    seed_list,
    trained_so_far,
)
from fewshot_cli.run.results import format_accuracy


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
    from fewshot_cli.run.evaluation import evaluate_run
    from fewshot_cli.run.run_data import load_run_data
    from fewshot_cli.run.training import TrainingInterrupted, train

    tests = [t for t in training.tests if not t.done]
    if not tests:
        return
    if data is None:
        data = load_run_data(training.config.resolved(), data_root, progress=progress)
    run_dir = out_dir / "runs" / training.name
    config = dataclasses.replace(
        training.config,
        device=device,
        data_root=str(data.root),
        split_dir=str(split_dir) if split_dir else None,
    )
    for test in tests:
        cell, name = test.cell, title(test, total, seeds)
        trained = trained_so_far(run_dir)
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
        published = papers.published(cell.algorithm, cell.ways, cell.shots, training.config.dataset)
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
    threads: int | None = None,
    csv_path: str | Path | None = None,
    report: bool = False,
    dataset: str = "omniglot",
) -> list[Path]:
    """Train and evaluate the grid into ``out_dir``; return its evaluation CSVs.

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
        jobs: trainings at once, each in a worker process (``run.workers``: ``threads / jobs``
            threads each, one GPU each on a machine with several).
        threads: CPU threads of the workers together (default: every core); with one job,
            set by the caller (``run.config.set_threads``).
        csv_path: where the rows go (default ``out_dir/eval.csv``); ``--plan`` gives each
            command its own under ``out_dir/csv/``.
        report: train and test nothing: list the tests without a row yet and return the CSVs
            of ``result_csvs(out_dir)``.
        dataset: ``omniglot``'s grid, or another dataset's 5-way cells (``run.budgets.get_budget``).

    Returns:
        Every evaluation CSV of the reproduction (``result_csvs(out_dir)`` and ``csv_path``):
        ``report.comparison.comparison`` of them is the table beside the papers.

    Raises:
        TrainingInterrupted: a signal stopped a training (``last.pt`` saved; rerun to resume).

    Example::

        print(format_comparison(comparison(reproduce("results/quick", "quick", seeds=3))))
    """
    from fewshot_cli.data.splits import make_split
    from fewshot_cli.run.results import check_writable
    from fewshot_cli.run.run_data import load_run_data
    from fewshot_cli.run.workers import run_jobs

    if jobs < 1:
        raise FewshotError(f"--jobs must be at least 1 (got {jobs})")
    budget = get_budget(budget, dataset)
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
        return csvs

    todo = [t for t in trainings if not all(test.done for test in t.tests)]
    if todo:
        if data is None:
            first = todo[0].config.resolved()
            data = load_run_data(first, data_root, download=download, progress=progress)
        for split_name in dict.fromkeys(t.config.split for t in todo):
            if (
                split_name is not None
            ):  # fetch (or fail on) the split files before hours of training
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
                threads,
            )
    csvs = result_csvs(out_dir)
    return csvs + ([csv_path] if csv_path not in csvs else [])


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
