"""Run independent jobs (trainings) in worker processes, J at a time, sharing the machine.

Each job runs in a fresh process (``spawn``) with ``cores / J`` torch threads, or on its own GPU
when there are several (slot ``k`` of ``J`` uses ``cuda:k mod GPUs``). Workers sit in their own
process group, so a Ctrl-C at the terminal reaches this process alone, which passes it on to
every running worker once as SIGTERM: each finishes its iteration, saves ``last.pt`` and stops,
as one process does on Ctrl-C; a second Ctrl-C is passed on again and stops them at once. A
worker also receives SIGTERM if this process dies (Linux).

A job is ``function(*args, device=..., echo=...)``, importable by name (it is pickled). It ends
as done, interrupted (``TrainingInterrupted``) or failed (``FewshotError`` or anything else);
after a failure or an interruption no new job starts, the running ones are stopped (and save),
and the first problem is raised once all have exited.

Example::

    run_jobs([(run_training, (training, out_dir)) for training in trainings], workers=2)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import connection, get_context
from typing import Any

import torch

from fewshot_cli.errors import FewshotError

PR_SET_PDEATHSIG = 1


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and schedulers set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_devices(device: str, jobs: int) -> list[str]:
    """The device of each of ``jobs`` worker slots: one GPU each (round robin) for a CUDA run on
    a machine with several GPUs, else ``device`` for all.

    Example::

        worker_devices("auto", 4)   # on a machine with 2 GPUs
        # ['cuda:0', 'cuda:1', 'cuda:0', 'cuda:1']
    """
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if gpus > 1:
        return [f"cuda:{k % gpus}" for k in range(jobs)]
    return [device] * jobs


def _job(function: Callable, args: tuple, threads: int, device: str, sender) -> None:
    """A worker's life: detach from the terminal's signals, run the job, report how it ended."""
    from fewshot_cli.errors import TrainingInterrupted

    os.setpgrp()  # the terminal's Ctrl-C goes to the parent, which passes it on once
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # orphaned: stop and save
    except (OSError, AttributeError):
        pass
    torch.set_num_threads(threads)
    try:
        function(*args, device=device, echo=lambda line: print(line, flush=True))
        outcome = ("done", "")
    except TrainingInterrupted as exc:
        outcome = ("interrupted", str(exc))
    except FewshotError as exc:
        outcome = ("failed", str(exc))
    except KeyboardInterrupt:
        outcome = ("interrupted", "stopped at once")
    except BaseException as exc:  # a bug: its traceback is worth seeing
        traceback.print_exc()
        outcome = ("failed", f"{type(exc).__name__}: {exc}")
    sender.send(outcome)
    sender.close()


def run_jobs(
    jobs: Sequence[tuple[Callable, tuple]],
    workers: int,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Run ``jobs`` in up to ``workers`` processes at once; return when all are done.

    Args:
        jobs: ``(function, args)`` pairs; each is called as ``function(*args, device=...,
            echo=...)`` in a worker of its own.
        workers: processes at once (J); each gets ``threads / J`` torch threads (at least 1).
        device: ``auto``, ``cpu``, ``cuda``...: with several GPUs, one per worker slot.
        threads: the threads of all workers together (default: the cores this process may
            use). Given, a worker's thread count, and so its results, are the same on any
            machine.

    Raises:
        TrainingInterrupted: a signal stopped the jobs (each saved its ``last.pt``).
        FewshotError: a job failed (the first failure; the others were stopped and saved).
    """
    from fewshot_cli.errors import TrainingInterrupted

    context = get_context("spawn")
    threads = max(1, (threads or available_cores()) // workers)
    devices = worker_devices(device, workers)
    pending = list(jobs)
    running: dict[int, tuple[Any, Any]] = {}  # slot -> (process, receiver)
    problems: list[tuple[str, str]] = []
    signals = {"count": 0}

    def stop_all(signum: int = signal.SIGTERM) -> None:
        for process, _ in running.values():
            if process.is_alive():
                os.kill(process.pid, signum)

    def on_signal(signum, frame) -> None:
        signals["count"] += 1
        # First signal: each worker stops after its iteration (SIGTERM); second: at once.
        stop_all(signal.SIGTERM if signals["count"] == 1 else signal.SIGINT)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        while pending or running:
            stopping = signals["count"] > 0 or problems
            for slot in range(workers):
                if slot in running or not pending or stopping:
                    continue
                function, args = pending.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_job, daemon=False, args=(function, args, threads, devices[slot], sender)
                )
                process.start()
                sender.close()
                running[slot] = (process, receiver)
            if not running:
                break
            ready = connection.wait([p.sentinel for p, _ in running.values()], timeout=1.0)
            for slot, (process, receiver) in list(running.items()):
                if process.sentinel not in ready:
                    continue
                process.join()
                outcome = (
                    receiver.recv()
                    if receiver.poll()
                    else (
                        "interrupted" if signals["count"] else "failed",
                        f"worker ended with exit code {process.exitcode}",
                    )
                )
                receiver.close()
                del running[slot]
                if outcome[0] != "done":
                    problems.append(outcome)
                    if outcome[0] == "failed" and not signals["count"]:
                        stop_all()  # stop (and save) the others: the first failure is raised
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failures = [message for kind, message in problems if kind == "failed"]
    if failures:
        raise FewshotError(failures[0])
    if problems or signals["count"]:
        left = len(pending)
        raise TrainingInterrupted(
            f"stopped {len(problems)} running training(s) after saving their last.pt"
            + (f", {left} not started" if left else "")
            + "; rerun the same command to resume"
        )
    sys.stdout.flush()
