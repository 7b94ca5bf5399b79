"""The meta-training loop shared by every algorithm, with validation, checkpoints and resume.

``train`` is the loop; ``prepare`` checks a run before anything is written, ``run.run_state``'s
``Run`` holds its state between iterations (checkpoints, validation, stopping) and
``run.run_directory`` its files.
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

import signal
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import episodes_of_step
from fewshot_cli.algorithms.maml_graph import GraphedStep, use_cuda_graph
from fewshot_cli.data.batches import device_batches
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import Omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError, TrainingInterrupted  # noqa: F401 (re-exported)
from fewshot_cli.run.checkpoint import initial_weights, start_from
from fewshot_cli.run.config import TrainConfig, pick_device
from fewshot_cli.run.distributed import Parallel, check_split
from fewshot_cli.run.precision import precision
from fewshot_cli.run.run_data import complete_from_data, load_run_data
from fewshot_cli.run.run_directory import (
    LOG_COLUMNS,  # noqa: F401 (re-exported)
    Start,
    check_new_run,
    prepare_directory,
    resume_point,  # noqa: F401 (re-exported)
    resumed_run,
    write_log,  # noqa: F401 (re-exported)
)
from fewshot_cli.run.run_state import Run

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
