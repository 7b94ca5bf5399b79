"""A training run's directory: its logs, the checkpoint a resumed run goes on from, and what a
run finds there when it starts.

A run directory holds ``config.json``, ``last.pt``, ``best.pt``, ``log.csv`` (one row per
validation) and ``iterations.csv`` (one row per training iteration); ``run.training`` writes
them. A validation writes ``log.csv``, then ``best.pt`` (when it is the best), then ``last.pt``,
and a resumed run goes on from the further of the two checkpoints (``resume_point``), so a kill
at any moment leaves a run that resumes.

Example::

    path, state = resume_point(Path("runs/maml"))  # last.pt, or a further best.pt
    start = Start.of(state, iterations=600)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import (
    BEST,
    LAST,
    LOG,
    load_checkpoint,
    read_config,
    save_checkpoint,
    save_config,
)
from fewshot_cli.run.config import RESUME_MAY_CHANGE, TrainConfig

LOG_COLUMNS = ["iteration", "train_loss", "train_accuracy", "val_accuracy", "elapsed_seconds"]
# One row per training iteration, beside log.csv's one row per validation.
ITERATIONS = "iterations.csv"
ITERATION_COLUMNS = ["iteration", "train_loss", "train_accuracy", "lr", "elapsed_seconds"]
# What a run has done: refused unless resumed or overwritten (a fresh start also empties
# iterations.csv, whose rows alone, from before any checkpoint, are nothing to keep).
RUN_FILES = (LAST, BEST, LOG)


def run_files(run_dir: Path) -> list[str]:
    """The checkpoints and logs of a training run that ``run_dir`` holds (none: a new run).

    ``config.json`` alone does not count: it is all a run killed before its first checkpoint
    leaves, and nothing of it is lost by starting again.
    """
    return [name for name in RUN_FILES if (Path(run_dir) / name).is_file()]


def write_log(run_dir: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / LOG, buffer.getvalue())


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / LOG
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def keep_iterations(run_dir: Path, upto: int) -> None:
    """Rewrite ``run_dir/iterations.csv`` (header first) with its rows up to iteration ``upto``.

    A resumed run redoes the iterations after its ``last.pt``; rows written for them before a
    kill (a line cut short included) go, so the file ends as an uninterrupted run's would.
    """
    path, rows = Path(run_dir) / ITERATIONS, []
    if path.is_file():
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    complete = None not in row.values() and int(row["iteration"]) <= upto
                except (KeyError, TypeError, ValueError):
                    complete = False
                if complete:
                    rows.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=ITERATION_COLUMNS, lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def append_iterations(run_dir: Path, rows: list[dict]) -> None:
    """Append rows to ``run_dir/iterations.csv`` (done before each checkpoint, see ``train``)."""
    if not rows:
        return
    try:
        with (Path(run_dir) / ITERATIONS).open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=ITERATION_COLUMNS, lineterminator="\n").writerows(
                rows
            )
    except OSError as exc:
        raise FewshotError(
            f"cannot write {Path(run_dir) / ITERATIONS}: {exc.strerror or exc}"
        ) from exc
    rows.clear()


def resume_point(run_dir: Path) -> tuple[Path, dict]:
    """The checkpoint a resumed run goes on from, and its contents: ``last.pt``, or ``best.pt``
    when that one is further (a kill between the two writes of a validation) or alone.

    Raises:
        FewshotError: neither can be loaded (``last.pt`` is named).
    """
    last, best = run_dir / LAST, run_dir / BEST
    path, state = last, None
    if last.is_file() or not best.is_file():
        state = load_checkpoint(last)
    if best.is_file():
        try:
            other = load_checkpoint(best)
        except FewshotError:
            if state is None:
                raise
            other = None  # last.pt alone is enough to go on
        if other is not None and (state is None or other["iteration"] > state["iteration"]):
            path, state = best, other
    return path, state


def displaced_best(run_dir: Path, best: float, best_at: int | None) -> dict:
    """The best validation so far, its iteration and its ``best.pt``'s contents (when there is
    one), to give back should a validation made only because the run ended replace them."""
    if best < 0:
        return {"best_val": best, "best_iteration": best_at}
    try:
        checkpoint = load_checkpoint(run_dir / BEST)
    except FewshotError:  # nothing to give back: then the next validation writes a best.pt
        return {"best_val": -1.0, "best_iteration": None}
    return {"best_val": best, "best_iteration": best_at, "checkpoint": checkpoint}


@dataclass
class Start:
    """Where a run begins: its first iteration, the best validation so far (-1: none) and its
    iteration, and what an end-of-run validation displaced (``before_end``, see
    ``displaced_best``), given back now (``restore``) when the run goes on past it.

    Example:
        >>> Start.of(None, 100).iteration
        0
    """

    iteration: int = 0
    best: float = -1.0
    best_at: int | None = None
    before_end: dict | None = None
    restore: bool = False

    @classmethod
    def of(cls, state: dict | None, iterations: int) -> Start:
        """The start of a run of ``iterations`` from checkpoint ``state`` (None: a new run)."""
        if state is None:
            return cls()
        start = cls(
            state["iteration"],
            state["best_val"],
            state.get("best_iteration"),
            state.get("before_end"),
        )
        if start.before_end is not None and iterations > start.iteration:
            start.best = start.before_end["best_val"]
            start.best_at, start.restore = start.before_end["best_iteration"], True
        return start


def refuse_own_source(config: TrainConfig, run_dir: Path) -> None:
    """Refuse ``--init-from`` in the very directory a new run takes (and empties first)."""
    if not config.init_from:
        return
    source = Path(config.init_from)
    folder = source.parent if source.is_file() else source
    if folder.resolve() == run_dir.resolve():
        raise FewshotError(
            f"--init-from {config.init_from} is in --out {run_dir}, whose run a new run "
            f"deletes first: start from a copy of it elsewhere, or choose another --out"
        )


def check_creatable(run_dir: Path) -> None:
    """Refuse a run directory that cannot be created (a file in its place or on its path)."""
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise FewshotError(f"cannot create run directory {run_dir}: {folder} is a file")
            return


def prepare_directory(
    run_dir: Path, config: TrainConfig, resume: bool, state: dict | None, start: Start
) -> None:
    """Make ``run_dir`` ready for a run from ``start``, then write its ``config.json``.

    A new run deletes the previous run's checkpoints and logs; a resumed one brings ``last.pt``
    up to a further ``best.pt`` and gives back the ``best.pt`` an end-of-run validation
    displaced (``last.pt`` still holds it, should a kill come meanwhile).

    Raises:
        FewshotError: the directory cannot be created.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FewshotError(f"cannot create run directory {run_dir}: {exc.strerror}") from exc
    if not resume:
        # A fresh start must not leave the previous run's best.pt beside the new config.json.
        for name in run_files(run_dir):
            (run_dir / name).unlink()
    else:
        last = run_dir / LAST
        if not last.is_file() or load_checkpoint(last)["iteration"] < start.iteration:
            save_checkpoint(last, state)
    if start.restore:
        if "checkpoint" in start.before_end:
            save_checkpoint(run_dir / BEST, start.before_end["checkpoint"])
        else:
            (run_dir / BEST).unlink(missing_ok=True)
    save_config(run_dir, config)


def check_new_run(config: TrainConfig, run_dir: Path, overwrite: bool = False) -> None:
    """Refuse a new run in ``run_dir`` where it would replace a run without ``overwrite``, start
    from its own ``--out`` (``refuse_own_source``), or cannot create the directory.

    Raises:
        FewshotError: one line naming the problem.
    """
    refuse_own_source(config, run_dir)
    if not overwrite and run_files(run_dir):
        raise FewshotError(
            f"{run_dir} already holds a training run "
            f"({', '.join(run_files(run_dir))}); continue it with --resume "
            f"{run_dir}, replace it with --overwrite, or choose another --out"
        )
    check_creatable(run_dir)


def resumed_run(config: TrainConfig, run_dir: Path) -> tuple[TrainConfig, dict]:
    """The configuration a resumed run goes on with (its ``config.json``, with ``config``'s
    ``RESUME_MAY_CHANGE`` fields and ``data_root`` where given), and its ``resume_point``.

    Raises:
        FewshotError: the run is not a ``config.algorithm`` one, or has done more iterations
            than ``config.iterations``.
    """
    stored = TrainConfig.from_dict(read_config(run_dir))
    if stored.algorithm != config.algorithm:
        raise FewshotError(f"{run_dir} is a {stored.algorithm} run, not {config.algorithm}")
    for name in RESUME_MAY_CHANGE:
        setattr(stored, name, getattr(config, name))
    stored.data_root = config.data_root or stored.data_root
    path, state = resume_point(run_dir)
    if state["algorithm"] != config.algorithm:
        raise FewshotError(f"{path} does not hold a {config.algorithm} model")
    if state["iteration"] > stored.iterations:
        raise FewshotError(
            f"{run_dir} has done {state['iteration']} iterations already, "
            f"more than --iterations {stored.iterations}: give more to extend it"
        )
    return stored, state
