"""The meta-training loop shared by every algorithm, with validation, checkpoints and resume.

``train`` is the loop; ``prepare`` checks a run before anything is written, ``Run`` holds its
state between iterations (checkpoints, validation, stopping) and ``run.run_directory`` its files.
The run's ``Algorithm`` (``algorithms.registry``) builds the model and steps: the loop knows no
algorithm by name.

Iteration ``t`` trains on episodes drawn from ``(seed, t)`` alone (built on the run's device,
``data.batches``), and state is saved at iteration boundaries only, so an interrupted run
resumed with ``resume=True`` ends with the very weights of an uninterrupted one (on CPU).
Ctrl-C or SIGTERM finish the iteration under way, save ``last.pt`` and stop with
``TrainingInterrupted``; a second Ctrl-C stops at once (the last periodic checkpoint stays).

On CUDA the vmap engine's step may run as a captured graph (``algorithms.maml_graph``), in the
run's ``precision`` (``run.precision``). Under torchrun (``parallel``, ``run.distributed``) each
process trains on its share of every iteration's episodes with gradients averaged before the
optimizer step; rank 0 alone validates and writes the run directory.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import episodes_of_step
from fewshot_cli.algorithms.maml_graph import GraphedStep, set_capturable, use_cuda_graph
from fewshot_cli.data.batches import device_batches
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import Omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError, TrainingInterrupted  # noqa: F401 (re-exported)
from fewshot_cli.run.checkpoint import BEST, LAST, initial_weights, save_checkpoint, start_from
from fewshot_cli.run.config import TrainConfig, pick_device
from fewshot_cli.run.distributed import Parallel, check_split
from fewshot_cli.run.evaluation import evaluate
from fewshot_cli.run.precision import precision
from fewshot_cli.run.run_data import complete_from_data, load_run_data
from fewshot_cli.run.run_directory import (
    ITERATION_COLUMNS,
    LOG_COLUMNS,
    Start,
    append_iterations,
    check_new_run,
    displaced_best,
    keep_iterations,
    prepare_directory,
    read_log,
    resume_point,  # noqa: F401 (re-exported)
    resumed_run,
    write_log,
)

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
    run_dir, state, weights = Path(run_dir), None, None
    if resume:
        config, state = resumed_run(config, run_dir)
    else:
        check_new_run(config, run_dir, overwrite)
    resolved = config.resolved()
    # Refused here, before any data loads, where a captured step cannot run.
    use_cuda_graph(resolved.cuda_graph, pick_device(resolved.device), resolved.engine, world)
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
    data = load_run_data(resolved, download=download, progress=progress)
    samplers(complete_from_data(resolved, data), data)


@dataclass
class Run:
    """A training run between two iterations: what its checkpoints and logs hold.

    ``best``, ``best_at`` and ``before_end`` are ``Start``'s, kept up to date; ``elapsed`` counts
    the seconds of every session of the run (at the last save); ``saved_at`` is the iteration of
    this run's ``last.pt``; ``pending`` holds the rows of ``iterations.csv`` not written yet
    (appended before each save of ``last.pt``, so the file never misses an iteration a checkpoint
    holds); ``losses`` and ``accuracies`` are those since the last validation; ``main``: this
    process writes ``run_dir`` and validates (rank 0).

    Example::

        run = Run.begin(config, run_dir, model, Start.of(state, config.iterations), state)
        save_checkpoint(run_dir / "last.pt", run.checkpoint(iteration))
    """

    config: TrainConfig
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    main: bool = True
    best: float = -1.0
    best_at: int | None = None
    before_end: dict | None = None
    elapsed: float = 0.0
    log: list[dict] = field(default_factory=list)
    saved_at: int | None = None
    pending: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    began: float = 0.0

    @classmethod
    def begin(
        cls,
        config: TrainConfig,
        run_dir: Path,
        model: torch.nn.Module,
        start: Start,
        state: dict | None,
        main: bool = True,
        capturable: bool = False,
    ) -> Run:
        """The run of ``model`` from ``start``, its optimizer and schedule, with ``state``'s
        weights and logs when resumed; ``capturable``: Adam for a CUDA graph
        (``algorithms.maml_graph``)."""
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, capturable=capturable)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_halve_every or 10**12, gamma=0.5
        )
        before_end = None if start.restore else start.before_end
        run = cls(config, run_dir, model, optimizer, scheduler, main)
        run.best, run.best_at, run.before_end = start.best, start.best_at, before_end
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            # The checkpoint brings back the flag it was saved with; this run's device decides.
            set_capturable(optimizer, capturable)
            scheduler.load_state_dict(state["scheduler"])
            run.elapsed, run.saved_at = state["elapsed"], state["iteration"]
            if main:
                run.log = [r for r in read_log(run_dir) if int(r["iteration"]) <= start.iteration]
        if main:
            keep_iterations(run_dir, start.iteration)
        return run

    def seconds(self) -> float:
        return time.perf_counter() - self.began

    def checkpoint(self, iteration: int) -> dict:
        """What ``last.pt`` or ``best.pt`` holds after ``iteration``."""
        return {
            "algorithm": self.config.algorithm,
            "iteration": iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_val": self.best,
            "best_iteration": self.best_at,
            "elapsed": self.elapsed,
            **({"before_end": self.before_end} if self.before_end is not None else {}),
        }

    def record(self, done: int, loss: float, accuracy: float, lr: float) -> None:
        """Note iteration ``done``'s results.

        Raises:
            FewshotError: the loss or the model is no longer finite (the losses that led there
                are written to ``iterations.csv`` first).
        """
        if self.main:
            cells = (done, f"{loss:.5f}", f"{accuracy:.5f}", f"{lr:.6g}", f"{self.seconds():.2f}")
            self.pending.append(dict(zip(ITERATION_COLUMNS, cells)))
        broken = f"the loss is {loss}" if not math.isfinite(loss) else nonfinite_state(self.model)
        if broken:
            if self.main:
                append_iterations(self.run_dir, self.pending)
            # Only this run's own last.pt (saved now, or before a resume) is worth naming.
            saved = (
                f"the last good checkpoint is {self.run_dir / LAST} (iteration {self.saved_at})"
                if self.saved_at is not None
                else "no checkpoint was saved yet"
            )
            options = registry.get(self.config.algorithm).options
            rates = "--lr or --inner-lr" if "inner_lr" in options else "--lr"
            raise FewshotError(
                f"training diverged: {broken} at iteration {done}; "
                f"{saved}; try a lower learning rate ({rates})"
            )
        self.losses.append(loss)
        self.accuracies.append(accuracy)

    def recent(self) -> dict[str, str]:
        """The mean loss and accuracy of the last 20 iterations, for the progress bar."""
        losses, accuracies = self.losses[-20:], self.accuracies[-20:]
        return {
            "loss": f"{sum(losses) / len(losses):.3f}",
            "acc": f"{sum(accuracies) / len(accuracies):.3f}",
        }

    def validate_and_save(self, done: int, sampler: EpisodeSampler, device: torch.device) -> float:
        """Validate after iteration ``done``, then write ``log.csv``, ``best.pt`` (when best)
        and ``last.pt``, in that order; returns the validation accuracy.

        A validation off the ``val_every`` grid (the run's end alone called for it) competes for
        ``best.pt`` until the run goes on: a new best keeps what it displaces in ``before_end``,
        given back then (``Start``), so an extended run keeps the ``best.pt`` of a run that had
        its length from the start.
        """
        config, run_dir = self.config, self.run_dir
        val = evaluate(config, self.model, sampler, config.val_episodes, device=device)
        self.elapsed = self.seconds()
        loss = sum(self.losses) / len(self.losses)
        accuracy = sum(self.accuracies) / len(self.accuracies)
        cells = (done, f"{loss:.5f}", f"{accuracy:.5f}", f"{val.mean:.5f}", f"{self.elapsed:.2f}")
        self.log.append(dict(zip(LOG_COLUMNS, cells)))
        self.losses, self.accuracies = [], []
        append_iterations(run_dir, self.pending)
        write_log(run_dir, self.log)  # rows after last.pt's iteration are dropped on resume
        if val.mean > self.best:
            if done % config.val_every:
                self.before_end = displaced_best(run_dir, self.best, self.best_at)
            self.best, self.best_at = val.mean, done
            # best.pt first: a kill before last.pt leaves best.pt further, resumable.
            save_checkpoint(run_dir / BEST, self.checkpoint(done))
        save_checkpoint(run_dir / LAST, self.checkpoint(done))
        self.saved_at = done
        return val.mean

    def interrupted(self, done: int, signum: int) -> TrainingInterrupted:
        """Save ``last.pt`` and the logs after iteration ``done``; the error to stop with."""
        self.elapsed = self.seconds()
        if self.main:
            append_iterations(self.run_dir, self.pending)
            write_log(self.run_dir, self.log)
            save_checkpoint(self.run_dir / LAST, self.checkpoint(done))
        return TrainingInterrupted(
            f"stopped after iteration {done}; {self.run_dir / LAST} saved, "
            f"continue with --resume {self.run_dir}",
            signum,
        )


def on_main(parallel: Parallel | None, produce):
    """``produce()`` on rank 0, its result (or error) on every rank; alone, just ``produce()``."""
    return parallel.share(produce) if parallel is not None else produce()


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
    """Meta-train ``config.algorithm`` and keep its checkpoints in ``run_dir``, validating every
    ``val_every`` iterations and at the run's end (``Run.validate_and_save``).

    Args:
        config: the run's settings (``None`` fields take the paper defaults).
        run_dir: where ``config.json``, ``last.pt``, ``best.pt``, ``log.csv`` (one row per
            validation) and ``iterations.csv`` (one row per iteration) go.
        resume: continue from ``last.pt`` (or a further ``best.pt``: ``resume_point``) with the
            run's own configuration, except ``RESUME_MAY_CHANGE`` and a ``data_root`` given.
        data: preloaded Omniglot (else loaded from ``config.data_root``, with ``download``).
        progress: show a progress bar (on a terminal only).
        stop_after: stop as if interrupted after this iteration.
        max_seconds: end the run (validating and saving) once this much time has passed.
        overwrite: start afresh in a ``run_dir`` that holds a run (refused without it).
        parallel: this process's rank among data-parallel ones (``run.distributed``): each
            trains on its share of every iteration's episodes; rank 0 alone reads and writes
            ``run_dir`` and validates.

    Raises:
        TrainingInterrupted: after a signal (``last.pt`` saved).
        FewshotError: bad settings, or a loss that is not finite.

    Example::

        train(TrainConfig("protonet", iterations=250), "runs/proto")
    """
    run_dir, local_root = Path(run_dir), config.data_root
    rank, world = (parallel.rank, parallel.world) if parallel is not None else (0, 1)
    main = rank == 0
    config, state, weights = on_main(
        parallel, lambda: prepare(config, run_dir, resume, overwrite, world)
    )
    if config.data_root is None and data is not None:
        # Recorded, so that a later `fewshot eval` of this run finds the data by itself.
        config.data_root = str(data.root)
    algorithm = registry.get(config.algorithm)
    device = pick_device(config.device)
    if parallel is not None:
        device = parallel.device_for(device)
        progress = progress and main
    captured = use_cuda_graph(config.cuda_graph, device, config.engine, world)
    if data is None:
        data = load_run_data(config, local_root, download=download, progress=progress)
    config = complete_from_data(config, data)
    train_sampler, val_sampler = samplers(config, data)
    train_sampler = device_batches(train_sampler, device)
    start = Start.of(state, config.iterations)
    on_main(parallel, lambda: prepare_directory(run_dir, config, resume, state, start))

    with precision(config.precision):
        torch.manual_seed(config.seed)
        model = algorithm.build_model(config).to(device)
        if weights is not None:
            start_from(model, weights)
        run = Run.begin(config, run_dir, model, start, state, main, captured)
        if parallel is not None:
            parallel.sync(model)
        hook = parallel.attach(run.optimizer) if parallel is not None else nullcontext()
        graphed = GraphedStep.for_run(model, run.optimizer, config, device, world)
        run.began = time.perf_counter() - run.elapsed
        done, out_of_time = start.iteration, False
        bar = tqdm(
            total=config.iterations,
            initial=start.iteration,
            desc=f"training {config.algorithm}",
            unit="it",
            disable=None if progress else True,  # None: on a terminal only
            dynamic_ncols=True,
        )
        with stop_on_signal() as signals, closing(bar), hook:
            for iteration in range(start.iteration, config.iterations):
                lr = run.optimizer.param_groups[0]["lr"]
                if parallel is not None:
                    parallel.begin_step(model)
                if graphed is not None:
                    per_step = algorithm.episodes_per_step(config)
                    episodes = episodes_of_step(train_sampler, iteration, per_step, device)
                    loss, accuracy = graphed.step(episodes)
                else:
                    loss, accuracy = algorithm.train_step(
                        model, run.optimizer, train_sampler, iteration, config, device, rank, world
                    )
                run.scheduler.step()
                out_of_time = max_seconds is not None and run.seconds() >= max_seconds
                stop = signals["stop"]
                if parallel is not None:  # every rank must agree to stop at the same iteration
                    loss, accuracy, out_of_time, stop = parallel.end_step(
                        model, loss, accuracy, out_of_time, stop
                    )
                done = iteration + 1
                run.record(done, loss, accuracy, lr)
                bar.update(1)
                bar.set_postfix(**run.recent())
                ending = done == config.iterations or out_of_time
                if main and (done % config.val_every == 0 or ending):
                    val = run.validate_and_save(done, val_sampler, device)
                    if progress:
                        bar.write(f"iteration {done}: validation accuracy {val:.2%}")
                if out_of_time:
                    break
                # One process also stops on a signal received while it validated.
                stop = stop or (parallel is None and signals["stop"])
                if stop or (stop_after is not None and done >= stop_after):
                    raise run.interrupted(done, signals["signum"])
    return TrainResult(
        run_dir,
        done if out_of_time else config.iterations,
        run.best,
        run.seconds(),
        config.iterations,
        out_of_time and done < config.iterations,
    )
