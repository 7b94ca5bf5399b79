"""Data-parallel training across processes with ``torch.distributed``, as launched by torchrun.

Every rank holds the same model and optimizer and runs the algorithm's own step on its equal,
contiguous share of an iteration's episodes (``algorithms.base.episodes_of_step``). An optimizer
step pre-hook averages the gradients of all ranks with one all-reduce, so every step is the one
a single process would take, whatever ``Algorithm.step`` computes. (``DistributedDataParallel``
is not used: it synchronises inside ``backward``, once per task in MAML's second-order passes.)

BatchNorm running statistics are merged after each step as one process would have updated them:
a moving average is affine in its start, so the ranks' updates chain in rank order. Rank 0 alone
validates and writes; all ranks agree each iteration on stopping. Backends: gloo for CPU, NCCL
for CUDA with one GPU per process (``cuda:<local rank>``).

Example (2 processes on this machine)::

    torchrun --standalone --nproc_per_node 2 -m fewshot_cli train maml --out runs/maml-dp
    fewshot train maml --out runs/maml-dp --nproc 2      # the same, launched for you
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fewshot_cli.errors import FewshotError
from fewshot_cli.run.workers import available_cores

# Rank 0 validates while the others wait in the next all-reduce: allow long validations.
TIMEOUT = timedelta(hours=2)
CPU = torch.device("cpu")


class RankZeroError(FewshotError):
    """Rank 0's error as the other ranks raise it (``Parallel.share``): rank 0 alone reports it."""


def check_split(algorithm: Any, config: Any, world: int) -> None:
    """Refuse a run whose iterations do not split evenly across ``world`` processes.

    Args:
        algorithm: the run's ``Algorithm``.
        config: its resolved ``TrainConfig``.
        world: number of processes.

    Raises:
        FewshotError: one line, e.g. ``protonet trains on 1 episode per iteration: ...``.

    Example::

        check_split(registry.get("maml"), TrainConfig("maml", meta_batch=32).resolved(), 4)
    """
    if world < 1:
        raise FewshotError(f"--nproc must be at least 1 (got {world})")
    per_step = algorithm.episodes_per_step(config)
    if world == 1 or per_step % world == 0:
        return
    if per_step == 1:
        raise FewshotError(
            f"{algorithm.name} trains on 1 episode per iteration: nothing to split across "
            f"{world} processes (data parallelism splits the episodes of one iteration, e.g. a "
            f"meta-batch of tasks)"
        )
    option = " (--meta-batch)" if "meta_batch" in algorithm.options else ""
    raise FewshotError(
        f"{per_step} episodes per iteration{option} do not split evenly across "
        f"{world} processes; use a multiple of {world}"
    )


@dataclass
class Parallel:
    """This process's place among the data-parallel ranks, and the collectives training needs.

    Attributes:
        rank: this process (0 validates and writes).
        world: number of processes.
        local_rank: this process on its machine (its GPU index).

    Example::

        parallel = from_env()          # None outside torchrun
        with joined(parallel):
            train(config, "runs/maml", parallel=parallel)
    """

    rank: int
    world: int
    local_rank: int = 0
    device: torch.device = CPU
    _start: dict = field(default_factory=dict, repr=False)

    @property
    def main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:<local rank>`` for a CUDA run, else ``device``."""
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        return device

    def share(self, produce: Callable[[], Any]) -> Any:
        """Rank 0's ``produce()`` on every rank (pickled); its error is raised on every rank.

        Example::

            config, state = parallel.share(lambda: (config, load_checkpoint(path)))
        """
        if self.main:
            try:
                box = [("ok", produce())]
            except BaseException as exc:
                message = (
                    str(exc)
                    if isinstance(exc, FewshotError)
                    else f"rank 0 failed ({type(exc).__name__}: {exc})"
                )
                dist.broadcast_object_list([("error", message)], 0, device=CPU)
                raise
        else:
            box = [None]
        dist.broadcast_object_list(box, 0, device=CPU)
        status, value = box[0]
        if status == "error":
            raise RankZeroError(value)
        return value

    def sync(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, 0)

    def attach(self, optimizer: torch.optim.Optimizer):
        """Average gradients across ranks before every ``optimizer.step()``; returns the hook's
        handle (``handle.remove()`` detaches it)."""
        return optimizer.register_step_pre_hook(self._average_gradients)

    def _average_gradients(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params:
            return
        # One all-reduce of every gradient (zeros where missing) and a presence flag each: a
        # parameter untouched on one rank still gets the others' gradient.
        flat = torch.cat(
            [
                *(
                    p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                    for p in params
                ),
                torch.tensor(
                    [p.grad is not None for p in params],
                    dtype=params[0].dtype,
                    device=params[0].device,
                ),
            ]
        )
        dist.all_reduce(flat)
        flat /= self.world
        presence = flat[flat.numel() - len(params) :].tolist()
        offset = 0
        for p, present in zip(params, presence):
            count = p.numel()
            if present > 0:
                average = flat[offset : offset + count].view_as(p)
                if p.grad is None:
                    p.grad = average.clone()
                else:
                    p.grad.copy_(average)
            offset += count

    def begin_step(self, model: torch.nn.Module) -> None:
        """Remember the BatchNorm running statistics before an iteration's forward passes."""
        self._start = {
            module: (
                module.running_mean.detach().clone(),
                module.running_var.detach().clone(),
                int(module.num_batches_tracked),
            )
            for module in batch_norms(model)
        }

    def end_step(self, model: torch.nn.Module, loss: float, accuracy: float, *flags: bool) -> tuple:
        """Merge an iteration's results across ranks; one collective.

        Returns:
            ``(loss, accuracy, *flags)``: loss and accuracy averaged over the ranks (equal
            shares: the iteration's mean), each flag true if it is true on any rank. BatchNorm
            running statistics are merged in place (module docstring).
        """
        modules = batch_norms(model)
        parts = [torch.tensor([loss, accuracy, *map(float, flags)], dtype=torch.float64)]
        for module in modules:
            parts += [
                torch.tensor(
                    [float(module.num_batches_tracked) - self._start[module][2]],
                    dtype=torch.float64,
                ),
                module.running_mean.detach().double().cpu(),
                module.running_var.detach().double().cpu(),
            ]
        mine = torch.cat(parts).to(self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(gathered, mine)
        table = torch.stack(gathered).cpu()  # [world, values]
        loss, accuracy = table[:, 0].mean().item(), table[:, 1].mean().item()
        flags = tuple(bool((table[:, 2 + i] > 0).any()) for i in range(len(flags)))
        offset = 2 + len(flags)
        for module in modules:
            channels = module.running_mean.numel()
            updates = table[:, offset]
            means = table[:, offset + 1 : offset + 1 + channels]
            variances = table[:, offset + 1 + channels : offset + 1 + 2 * channels]
            offset += 1 + 2 * channels
            mean0, var0, count0 = self._start[module]
            for buffer, start, ends in (
                (module.running_mean, mean0, means),
                (module.running_var, var0, variances),
            ):
                merged = chain_averages(
                    start.double().cpu(), ends, updates, count0, module.momentum
                )
                buffer.copy_(merged.to(buffer))
            module.num_batches_tracked.fill_(count0 + int(updates.sum().item()))
        return (loss, accuracy, *flags)


def batch_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats
        and m.running_mean is not None
    ]


def chain_averages(
    start: torch.Tensor,
    ends: torch.Tensor,
    updates: torch.Tensor,
    count0: int,
    momentum: float | None,
) -> torch.Tensor:
    """The running statistic after every rank's updates in rank order, from each rank's own.

    Each rank made ``updates[r]`` updates from ``start`` to ``ends[r]``. With momentum ``m``,
    ``u`` updates map ``x`` to ``(1 - m)^u x + c`` with ``c = end - (1 - m)^u start``: the
    ranks' maps are chained in order. Without one (a cumulative average over ``count0``
    earlier batches) the ranks' sums add up.

    Example::

        chain_averages(torch.zeros(1), torch.tensor([[0.1], [0.1]]), torch.tensor([1., 1.]), 0, 0.1)
        # tensor([0.1900], dtype=torch.float64)
    """
    if momentum is None:
        total = count0 + updates.sum()
        if total == 0:
            return start
        sums = ends * (count0 + updates)[:, None] - count0 * start
        return (count0 * start + sums.sum(0)) / total
    value = start
    for end, count in zip(ends, updates):
        decay = (1.0 - momentum) ** count.item()
        value = decay * value + (end - decay * start)
    return value


def from_env() -> Parallel | None:
    """This process's ``Parallel`` when torchrun started several (``WORLD_SIZE`` > 1), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return Parallel(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


@contextmanager
def joined(parallel: Parallel | None):
    """Join the process group of ``parallel`` (nothing for ``None``) and leave it afterwards."""
    if parallel is None or dist.is_initialized():
        yield parallel
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise FewshotError(
            f"cannot join the torchrun process group: {str(exc).splitlines()[0]}"
        ) from exc
    try:
        yield parallel
    finally:
        dist.destroy_process_group()


def needs_launch(nproc: int | None, parallel: Parallel | None) -> bool:
    """Whether ``train --nproc`` must start torchrun (it was not started by torchrun).

    Raises:
        FewshotError: ``nproc`` is below 1, or differs from the processes torchrun started.
    """
    if nproc is None:
        return False
    if nproc < 1:
        raise FewshotError(f"--nproc must be at least 1 (got {nproc})")
    if parallel is not None:
        if nproc != parallel.world:
            raise FewshotError(f"--nproc {nproc}, but torchrun started {parallel.world} processes")
        return False
    return nproc > 1


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N``: torchrun's parser would take ``--nproc`` for an
    abbreviation of its own ``--nproc-per-node`` (and the processes it starts need none).

    Example:
        >>> without_nproc(["train", "maml", "--nproc", "2", "--out", "r"])
        ['train', 'maml', '--out', 'r']
    """
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def torchrun_arguments(nproc: int, argv: list[str]) -> list[str]:
    """torchrun's arguments for ``fewshot <argv>`` in ``nproc`` processes on this machine
    (``--standalone`` picks a free port, so several runs can share a machine).

    Example:
        >>> torchrun_arguments(2, ["train", "maml", "--out", "runs/m"])
        ['--standalone', '--nproc-per-node=2', '-m', 'fewshot_cli', 'train', 'maml', '--out', 'runs/m']
    """
    return ["--standalone", f"--nproc-per-node={nproc}", "-m", "fewshot_cli", *argv]


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``fewshot <argv>`` in ``nproc`` processes, acting as torchrun; the exit code
    (128 + the signal's number when a signal stopped the run: 130 Ctrl-C, 143 SIGTERM).

    A signal is passed on to the ranks, which finish the iteration and stop (rank 0 saves
    ``last.pt``). torchrun's own logging is silenced unless ``LOGLEVEL`` is set: the ranks
    print one-line messages. Each rank gets ``cores / nproc`` threads unless
    ``OMP_NUM_THREADS`` is set.
    """
    import logging

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.agent.server import local_elastic_agent  # noqa: F401 (loggers)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher import api  # noqa: F401 (its logger, silenced below)

    args = torchrun.parse_args(torchrun_arguments(nproc, argv))
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads is None:  # torchrun would give every rank 1 thread
        os.environ["OMP_NUM_THREADS"] = str(max(1, available_cores() // nproc))
    silenced = {}
    if "LOGLEVEL" not in os.environ:
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("torch.distributed"):
                logger = logging.getLogger(name)
                silenced[logger] = logger.level
                logger.setLevel(logging.CRITICAL + 1)
    try:
        torchrun.run(args)
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        return next((code for code in codes if code > 0), 1)
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        for logger, level in silenced.items():
            logger.setLevel(level)
    return 0
