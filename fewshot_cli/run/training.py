"""The meta-training loop shared by every algorithm, with validation, checkpoints and resume.

The loop asks the run's ``Algorithm`` (``algorithms.registry``) for its model and for each
training iteration; it knows no algorithm by name.

Iteration ``t`` trains on episodes drawn from ``(seed, t)`` alone (see ``episodes``), and the
model, optimizer and schedule are saved at iteration boundaries only, so an interrupted run
resumed with ``resume=True`` ends with the very weights of an uninterrupted one (on CPU).

Ctrl-C or SIGTERM finish the iteration under way, save ``last.pt`` and stop with
``TrainingInterrupted``; a second Ctrl-C stops at once (the last periodic checkpoint stays).
A validation writes ``best.pt`` (when it is the best) before ``last.pt``, and a resumed run goes
on from the further of the two, so a kill at any moment leaves a run that ``resume`` continues.

Under torchrun (``parallel``, see ``run.distributed``) each process trains on its share of every
iteration's episodes with gradients averaged before the optimizer step: the same training as
one process (up to float rounding), with rank 0 alone validating and writing the run directory.
"""

from __future__ import annotations

import csv
import io
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fewshot_cli.algorithms import registry
from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import Omniglot, load_omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError, TrainingInterrupted  # noqa: F401 (re-exported)
from fewshot_cli.run.checkpoint import (
    BEST,
    LAST,
    LOG,
    initial_weights,
    load_checkpoint,
    read_config,
    save_checkpoint,
    save_config,
    start_from,
)
from fewshot_cli.run.config import TrainConfig, pick_device
from fewshot_cli.run.distributed import Parallel, check_split
from fewshot_cli.run.evaluation import evaluate

LOG_COLUMNS = ["iteration", "train_loss", "train_accuracy", "val_accuracy", "elapsed_seconds"]
# One row per training iteration, beside log.csv's one row per validation.
ITERATIONS = "iterations.csv"
ITERATION_COLUMNS = ["iteration", "train_loss", "train_accuracy", "lr", "elapsed_seconds"]
# What a run has done: refused unless resumed or overwritten (a fresh start also empties
# iterations.csv, whose rows alone, from before any checkpoint, are nothing to keep).
RUN_FILES = (LAST, BEST, LOG)
VAL_SEED_OFFSET = 10_000  # validation episodes never coincide with training episodes


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run reached."""

    run_dir: Path
    iterations: int
    best_val_accuracy: float
    seconds: float
    planned_iterations: int = 0  # the run's --iterations
    time_limited: bool = False  # the time limit ended it before planned_iterations


@contextmanager
def stop_on_signal():
    """Turn the first SIGINT/SIGTERM into a flag checked between iterations."""
    requested = {"stop": False, "signum": signal.SIGINT}
    previous = {}

    def handler(signum, frame):
        if requested["stop"]:
            raise KeyboardInterrupt
        requested["stop"], requested["signum"] = True, signum

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals stay as they are
            pass
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def nonfinite_state(model: torch.nn.Module) -> str | None:
    """Name the first parameter or buffer holding a NaN or infinity, or return None.

    A finite loss does not prove a sound model: a huge step can overflow BatchNorm's running
    variance while the loss stays at chance, and saving that state would replace the last good
    checkpoint with a useless one.

    Example:
        >>> nonfinite_state(torch.nn.Linear(2, 2)) is None
        True
    """
    tensors = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    finite = torch.stack([torch.isfinite(t).all() for t in tensors.values()]).tolist()  # one sync
    bad = [name for name, ok in zip(tensors, finite) if not ok]
    return f"{bad[0]} is no longer finite" if bad else None


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


def prepare(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    world: int = 1,
) -> tuple[TrainConfig, dict | None, dict | None]:
    """Every check of a run that needs no data, before anything is written.

    Returns the resolved configuration, the checkpoint a resumed run goes on from (``None``
    for a new run; ``resume_point``) and the weights of ``init_from`` (``None`` without).
    ``world`` processes must split each iteration evenly (``check_split``).

    Raises:
        FewshotError: one line naming the problem.
    """
    run_dir = Path(run_dir)
    state, resolved, weights = None, config, None
    if resume:
        stored = TrainConfig.from_dict(read_config(run_dir))
        if stored.algorithm != config.algorithm:
            raise FewshotError(f"{run_dir} is a {stored.algorithm} run, not {config.algorithm}")
        stored.iterations, stored.device = config.iterations, config.device
        stored.data_root = config.data_root or stored.data_root
        resolved = stored
        path, state = resume_point(run_dir)
        if state["algorithm"] != config.algorithm:
            raise FewshotError(f"{path} does not hold a {config.algorithm} model")
        if state["iteration"] > resolved.iterations:
            raise FewshotError(
                f"{run_dir} has done {state['iteration']} iterations already, "
                f"more than --iterations {resolved.iterations}: give more to "
                f"extend it"
            )
    else:
        refuse_own_source(config, run_dir)
        if not overwrite and run_files(run_dir):
            raise FewshotError(
                f"{run_dir} already holds a training run "
                f"({', '.join(run_files(run_dir))}); continue it with --resume "
                f"{run_dir}, replace it with --overwrite, or choose another --out"
            )
        check_creatable(run_dir)
    resolved = resolved.resolved()
    check_split(registry.get(resolved.algorithm), resolved, world)
    if state is None and resolved.init_from:
        # Read before the run directory is emptied (train's prepare_directory).
        weights = initial_weights(resolved)
    return resolved, state, weights


def samplers(config: TrainConfig, data: Omniglot) -> tuple[EpisodeSampler, EpisodeSampler]:
    """The training and validation episodes of a resolved ``config`` on ``data``.

    Raises:
        FewshotError: episodes the split cannot give (more ways than classes...).
    """
    split = make_split(data, config.split, config.split_seed, config.split_dir)
    train_sampler = EpisodeSampler(
        meta_dataset(data, split, "train"),
        config.ways,
        config.shots,
        config.queries,
        seed=config.seed,
        rotate=config.rotations,
        part="train",
    )
    val_sampler = EpisodeSampler(
        meta_dataset(data, split, "val"),
        config.test_ways,
        config.test_shots,
        config.test_queries,
        seed=config.seed + VAL_SEED_OFFSET,
        part="val",
    )
    return train_sampler, val_sampler


def preflight(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    world: int = 1,
    download: bool = False,
    progress: bool = False,
) -> None:
    """Check that ``train`` with these arguments can start, writing nothing: ``prepare``, then
    the data and its episodes (what ``train --nproc`` does before it starts any process)."""
    resolved, _, _ = prepare(config, run_dir, resume, overwrite, world)
    data = load_omniglot(resolved.data_root, download=download, progress=progress)
    samplers(resolved, data)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    data: Omniglot | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    max_seconds: float | None = None,
    download: bool = False,
    overwrite: bool = False,
    parallel: Parallel | None = None,
) -> TrainResult:
    """Meta-train ``config.algorithm`` and keep its checkpoints in ``run_dir``.

    Args:
        config: the run's settings (``None`` fields take the paper defaults).
        run_dir: where ``config.json``, ``last.pt``, ``best.pt``, ``log.csv`` (one row per
            validation) and ``iterations.csv`` (one row per training iteration) go.
        resume: continue from ``run_dir/last.pt`` (or from ``best.pt`` where that one is
            further: ``resume_point``; ``config`` then comes from the run, except
            its ``iterations``, which may extend the run, its ``device``, and a ``data_root``
            given).
        data: preloaded Omniglot (loaded from ``config.data_root`` otherwise, once the
            configuration is known to be sound, with ``download``).
        progress: show a progress bar with the running loss and accuracy (on a terminal only).
        stop_after: stop as if interrupted after this iteration (used by tests).
        max_seconds: end the run (validating and saving as at its last iteration) once this
            much wall-clock time has passed; ``--resume`` can continue it later.
        overwrite: start afresh in a ``run_dir`` that already holds a run, deleting its
            checkpoints and logs first (without it, such a directory is refused).
        parallel: this process's rank among data-parallel processes (``run.distributed``, in a
            joined process group): every rank trains on its share of each iteration's episodes
            and rank 0 alone reads and writes the run directory and validates. The run's
            configuration and checkpoint come from rank 0, so only its machine needs them.

    Validations come every ``val_every`` iterations and at the run's end. One made only because
    the run ended off that grid (its last iteration, or a time limit) competes for ``best.pt``
    until the run goes on (``resume`` with more iterations, or after a time limit): then the
    ``best.pt`` it displaced comes back, so an extended run keeps the ``best.pt`` of a run that
    had its length from the start.

    Raises:
        TrainingInterrupted: after a signal (``last.pt`` saved).
        FewshotError: bad settings, or a loss that is not finite.

    Example::

        train(TrainConfig("protonet", iterations=250), "runs/proto")
    """
    run_dir = Path(run_dir)
    main = parallel is None or parallel.main
    local_root = config.data_root
    world_size = parallel.world if parallel is not None else 1

    def settings() -> tuple[TrainConfig, dict | None, dict | None]:
        return prepare(config, run_dir, resume, overwrite, world_size)

    config, state, weights = parallel.share(settings) if parallel is not None else settings()
    if config.data_root is None and data is not None:
        # Recorded, so that a later `fewshot eval` of this run finds the data by itself.
        config.data_root = str(data.root)
    algorithm = registry.get(config.algorithm)
    device = pick_device(config.device)
    rank, world = (parallel.rank, parallel.world) if parallel is not None else (0, 1)
    if parallel is not None:
        device = parallel.device_for(device)
        progress = progress and main
    if data is None:
        data = load_omniglot(local_root or config.data_root, download=download, progress=progress)
    train_sampler, val_sampler = samplers(config, data)

    # The best validation so far (-1: none), its iteration, and what an end-of-run validation
    # off the --val-every grid displaced ({"best_val", "best_iteration"} and the displaced
    # "checkpoint", if any): it is given back once the run goes on.
    start, best, best_at, before_end = 0, -1.0, None, None
    restore = False
    if state is not None:
        start, best = state["iteration"], state["best_val"]
        best_at, before_end = state.get("best_iteration"), state.get("before_end")
        if before_end is not None and config.iterations > start:
            best, best_at, restore = before_end["best_val"], before_end["best_iteration"], True

    def prepare_directory() -> None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FewshotError(f"cannot create run directory {run_dir}: {exc.strerror}") from exc
        if not resume:
            # A fresh start must not leave the previous run's best.pt beside the new config.json.
            for name in run_files(run_dir):
                (run_dir / name).unlink()
        else:
            # Resumed from a best.pt that last.pt had not caught up with: now it has.
            last = run_dir / LAST
            if not last.is_file() or load_checkpoint(last)["iteration"] < start:
                save_checkpoint(last, state)
        if restore:  # last.pt still holds what to restore, should a kill come now
            if "checkpoint" in before_end:
                save_checkpoint(run_dir / BEST, before_end["checkpoint"])
            else:
                (run_dir / BEST).unlink(missing_ok=True)
        save_config(run_dir, config)

    if parallel is not None:
        parallel.share(prepare_directory)  # the others wait: its failure stops every rank
    else:
        prepare_directory()

    torch.manual_seed(config.seed)
    model = algorithm.build_model(config).to(device)
    if weights is not None:
        start_from(model, weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_halve_every or 10**12, gamma=0.5
    )
    elapsed, log = 0.0, []
    saved_at = state["iteration"] if state is not None else None  # this run's last.pt
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        elapsed = state["elapsed"]
        if main:
            log = [row for row in read_log(run_dir) if int(row["iteration"]) <= start]
    if restore:
        before_end = None
    hook = None
    if parallel is not None:
        parallel.sync(model)
        hook = parallel.attach(optimizer)

    def checkpoint(iteration: int) -> dict:
        return {
            "algorithm": config.algorithm,
            "iteration": iteration,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "best_val": best,
            "best_iteration": best_at,
            "elapsed": elapsed,
            **({"before_end": before_end} if before_end is not None else {}),
        }

    if main:
        keep_iterations(run_dir, start)
    began = time.perf_counter() - elapsed
    losses, accuracies = [], []
    # Rows of iterations.csv not written yet: appended before each save of last.pt, so the file
    # never misses an iteration that a checkpoint holds.
    pending: list[dict] = []
    done, out_of_time = start, False
    bar = tqdm(
        total=config.iterations,
        initial=start,
        desc=f"training {config.algorithm}",
        unit="it",
        disable=None if progress else True,  # None: on a terminal only
        dynamic_ncols=True,
    )
    with stop_on_signal() as signal_state:
        for iteration in range(start, config.iterations):
            lr = optimizer.param_groups[0]["lr"]
            if parallel is not None:
                parallel.begin_step(model)
            loss, accuracy = algorithm.train_step(
                model, optimizer, train_sampler, iteration, config, device, rank, world
            )
            scheduler.step()
            out_of_time = max_seconds is not None and time.perf_counter() - began >= max_seconds
            stop = signal_state["stop"]
            if parallel is not None:  # every rank must agree to stop at the same iteration
                loss, accuracy, out_of_time, stop = parallel.end_step(
                    model, loss, accuracy, out_of_time, stop
                )
            if main:
                pending.append(
                    {
                        "iteration": iteration + 1,
                        "train_loss": f"{loss:.5f}",
                        "train_accuracy": f"{accuracy:.5f}",
                        "lr": f"{lr:.6g}",
                        "elapsed_seconds": f"{time.perf_counter() - began:.2f}",
                    }
                )
            broken = f"the loss is {loss}" if not math.isfinite(loss) else nonfinite_state(model)
            if broken:
                if main:
                    append_iterations(run_dir, pending)  # the losses that led here are worth seeing
                # Only this run's own last.pt (saved now, or before a resume) is worth naming.
                saved = (
                    f"the last good checkpoint is {run_dir / LAST} (iteration {saved_at})"
                    if saved_at is not None
                    else "no checkpoint was saved yet"
                )
                rates = "--lr or --inner-lr" if "inner_lr" in algorithm.options else "--lr"
                raise FewshotError(
                    f"training diverged: {broken} at iteration {iteration + 1}; "
                    f"{saved}; try a lower learning rate ({rates})"
                )
            losses.append(loss)
            accuracies.append(accuracy)
            done = iteration + 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}",
                acc=f"{sum(accuracies[-20:]) / len(accuracies[-20:]):.3f}",
            )
            on_grid = done % config.val_every == 0
            if main and (on_grid or done == config.iterations or out_of_time):
                val = evaluate(config, model, val_sampler, config.val_episodes, device=device)
                elapsed = time.perf_counter() - began
                log.append(
                    {
                        "iteration": done,
                        "train_loss": f"{sum(losses) / len(losses):.5f}",
                        "train_accuracy": f"{sum(accuracies) / len(accuracies):.5f}",
                        "val_accuracy": f"{val.mean:.5f}",
                        "elapsed_seconds": f"{elapsed:.2f}",
                    }
                )
                losses, accuracies = [], []
                append_iterations(run_dir, pending)
                write_log(run_dir, log)  # rows after last.pt's iteration are dropped on resume
                if val.mean > best:
                    if not on_grid:  # the run's end alone called for it: keep what it displaces
                        before_end = displaced_best(run_dir, best, best_at)
                    best, best_at = val.mean, done
                    # best.pt first: a kill before last.pt leaves best.pt further, resumable.
                    save_checkpoint(run_dir / BEST, checkpoint(done))
                save_checkpoint(run_dir / LAST, checkpoint(done))
                saved_at = done
                if progress:
                    bar.write(f"iteration {done}: validation accuracy {val.mean:.2%}")
            if out_of_time:
                break
            # One process also stops on a signal received while it validated.
            stop = stop or (parallel is None and signal_state["stop"])
            if stop or (stop_after is not None and done >= stop_after):
                elapsed = time.perf_counter() - began
                if main:
                    append_iterations(run_dir, pending)
                    write_log(run_dir, log)
                    save_checkpoint(run_dir / LAST, checkpoint(done))
                bar.close()
                if hook is not None:
                    hook.remove()
                raise TrainingInterrupted(
                    f"stopped after iteration {done}; {run_dir / LAST} saved, continue with --resume {run_dir}",
                    signal_state["signum"],
                )
    bar.close()
    if hook is not None:
        hook.remove()
    return TrainResult(
        run_dir,
        done if out_of_time else config.iterations,
        best,
        time.perf_counter() - began,
        config.iterations,
        out_of_time and done < config.iterations,
    )
