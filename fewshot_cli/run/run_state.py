"""A training run between two iterations: its optimizer and schedule, the logs and
checkpoints it keeps, validation, and the checks that stop a diverged run.

Example::

    run = Run.begin(config, run_dir, model, Start.of(state, config.iterations), state)
    run.record(done, loss, accuracy, lr)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.maml_graph import set_capturable
from fewshot_cli.data.episodes import EpisodeSampler
from fewshot_cli.errors import FewshotError, TrainingInterrupted
from fewshot_cli.run.checkpoint import BEST, LAST, save_checkpoint
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate
from fewshot_cli.run.run_directory import (
    ITERATION_COLUMNS,
    LOG_COLUMNS,
    Start,
    append_iterations,
    displaced_best,
    keep_iterations,
    read_log,
    write_log,
)


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
