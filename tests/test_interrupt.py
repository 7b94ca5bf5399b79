"""Interrupted training resumes to the very weights of an uninterrupted run (CPU, fixed seed).

Two ways to stop: ``train(..., stop_after=k)`` in process, and SIGTERM to a real
``python -m fewshot_cli train`` process. Either way ``last.pt`` is saved at an iteration
boundary, and resuming to the end must give a ``last.pt`` equal, tensor for tensor, to the
uninterrupted run's (model, optimizer and schedule).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fewshot_cli.run.checkpoint import load_checkpoint, read_config
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.training import TrainingInterrupted, train

# Small episodes; enough iterations after the first checkpoint that SIGTERM lands mid-run.
SETTINGS = {
    "protonet": dict(ways=5, queries=2, test_ways=3, test_queries=2, iterations=60, val_every=5,
                     val_episodes=1, seed=3, device="cpu"),
    "maml": dict(ways=3, queries=2, test_ways=3, test_queries=2, iterations=24, val_every=3,
                 val_episodes=1, seed=3, device="cpu", meta_batch=2, first_order=True),
}


def cli_options(settings: dict) -> list[str]:
    options = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        options += [flag] if value is True else [flag, str(value)]
    return options


def flatten(value, prefix: str = "") -> dict:
    """Every leaf of a checkpoint, keyed by its path (``model/head.weight``...)."""
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}/{key}").items()}


def assert_same_checkpoint(path: Path, reference: Path) -> None:
    ours, theirs = (flatten(load_checkpoint(p)) for p in (path, reference))
    ours.pop("/elapsed"), theirs.pop("/elapsed")  # wall-clock time, the one thing that differs
    assert ours.keys() == theirs.keys()
    assert sum(isinstance(v, torch.Tensor) for v in ours.values()) > 20
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ours[key], value), key
        else:
            assert ours[key] == value, key


@pytest.fixture(scope="module")
def single_thread(one_thread):
    """Bit-identical weights across processes need the same reduction order: one thread."""


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory, single_thread) -> dict[str, Path]:
    """``last.pt`` of an uninterrupted run of each algorithm."""
    runs = {}
    for algorithm, settings in SETTINGS.items():
        run = tmp_path_factory.mktemp(f"reference-{algorithm}")
        train(TrainConfig(algorithm, **settings), run, data=tiny_data, progress=False)
        assert load_checkpoint(run / "last.pt")["iteration"] == settings["iterations"]
        runs[algorithm] = run / "last.pt"
    return runs


@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_stop_after_then_resume_gives_the_same_weights(algorithm, reference, tiny_data, tmp_path):
    settings = SETTINGS[algorithm]
    stop = settings["val_every"] * 2 + 1  # between two checkpoints, so resume starts off-grid
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(TrainConfig(algorithm, **settings), tmp_path, data=tiny_data, progress=False,
              stop_after=stop)
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == stop
    result = train(TrainConfig(algorithm, iterations=settings["iterations"]), tmp_path,
                   resume=True, data=tiny_data, progress=False)
    assert result.iterations == settings["iterations"]
    assert_same_checkpoint(tmp_path / "last.pt", reference[algorithm])


def fewshot(args: list[str], tiny_root: Path, cache_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEWSHOT_")}
    env.update(FEWSHOT_DATA=str(tiny_root), FEWSHOT_CACHE=str(cache_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen([sys.executable, "-m", "fewshot_cli", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_sigterm_saves_and_resume_gives_the_same_weights(algorithm, reference, tiny_root,
                                                         cache_dir, tmp_path):
    settings, run = SETTINGS[algorithm], tmp_path / "run"
    process = fewshot(["train", algorithm, "--out", str(run), "--quiet", *cli_options(settings)],
                      tiny_root, cache_dir)
    # The first checkpoint shows training is under way (and the signal handler installed).
    while not (run / "last.pt").exists() and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, (stdout, stderr)  # 128 + SIGTERM, as the shell reports it
    assert "Traceback" not in stderr and "--resume" in stderr, stderr
    stopped = load_checkpoint(run / "last.pt")["iteration"]
    assert settings["val_every"] <= stopped < settings["iterations"]
    assert read_config(run)["iterations"] == settings["iterations"]

    resumed = fewshot(["train", algorithm, "--resume", str(run), "--quiet"], tiny_root, cache_dir)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"done: {settings['iterations']} iterations" in stdout
    assert_same_checkpoint(run / "last.pt", reference[algorithm])


# ---------------------------------------------------------------- kills and extensions
# Validation accuracies scripted by iteration, so that which validation is best is known.


@pytest.fixture
def scripted(monkeypatch):
    """``scores`` (iteration -> validation accuracy) replaces the real validation."""
    from types import SimpleNamespace

    from fewshot_cli.algorithms.base import Algorithm
    from fewshot_cli.run import run_state

    scores, done = {}, {"iteration": 0}
    real_step = Algorithm.train_step

    def step(self, model, optimizer, sampler, iteration, *args, **kwargs):
        done["iteration"] = iteration + 1
        return real_step(self, model, optimizer, sampler, iteration, *args, **kwargs)

    monkeypatch.setattr(Algorithm, "train_step", step)
    monkeypatch.setattr(run_state, "evaluate",
                        lambda *args, **kwargs: SimpleNamespace(mean=scores[done["iteration"]]))
    return scores


KILLED = dict(ways=5, queries=2, test_ways=3, test_queries=2, val_every=2, val_episodes=1, seed=3,
              device="cpu")


def protonet_run(run, data, iterations, resume=False, **options):
    config = TrainConfig("protonet", iterations=iterations, **({} if resume else KILLED))
    return train(config, run, resume=resume, data=data, progress=False, **options)


def stopped(run, data, iterations, at, resume=False):
    with pytest.raises(TrainingInterrupted):
        protonet_run(run, data, iterations, resume=resume, stop_after=at)


@pytest.mark.parametrize("kill", ["best-without-last", "best-newer-than-last", "log-ahead"])
def test_a_kill_at_any_moment_of_a_validation_leaves_a_run_that_resumes(
        kill, scripted, single_thread, tiny_data, tmp_path):
    scripted.update({2: 0.5, 4: 0.8, 6: 0.6})
    protonet_run(tmp_path / "whole", tiny_data, 6)
    run = tmp_path / "run"
    if kill == "best-without-last":  # killed at the first validation, between its two saves
        stopped(run, tiny_data, 6, at=2)
        (run / "last.pt").unlink()
    elif kill == "best-newer-than-last":  # killed at iteration 4's validation, the same way
        stopped(run, tiny_data, 6, at=2)
        earlier = (run / "last.pt").read_bytes()
        stopped(run, tiny_data, 6, at=4, resume=True)
        (run / "last.pt").write_bytes(earlier)
    else:  # killed after log.csv had iteration 4's row, before any checkpoint of it
        stopped(run, tiny_data, 6, at=2)
        with (run / "log.csv").open("a") as handle:
            handle.write("4,1.00000,0.50000,0.80000,1.00\n")
    assert protonet_run(run, tiny_data, 6, resume=True).iterations == 6
    for name in ("last.pt", "best.pt"):
        assert_same_checkpoint(run / name, tmp_path / "whole" / name)
    assert load_checkpoint(run / "best.pt")["iteration"] == 4
    rows = [line.split(",")[0] for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert rows == ["2", "4", "6"]


@pytest.mark.parametrize("first", [5, 1])  # with a validation on the grid before, and none
def test_an_extended_run_keeps_the_best_checkpoint_of_a_run_as_long(
        first, scripted, single_thread, tiny_data, tmp_path):
    # Iteration 5 validates only because the first run ends there, and it scores highest.
    scripted.update({1: 0.7, 2: 0.5, 4: 0.4, 5: 0.9, 6: 0.6, 7: 0.3})
    whole, extended = tmp_path / "whole", tmp_path / "extended"
    protonet_run(whole, tiny_data, 7)
    protonet_run(extended, tiny_data, first)
    assert load_checkpoint(extended / "best.pt")["iteration"] == first  # the short run's best
    result = protonet_run(extended, tiny_data, 7, resume=True)
    reference = load_checkpoint(whole / "best.pt")
    assert reference["iteration"] == 6 and result.best_val_accuracy == 0.6
    assert_same_checkpoint(extended / "best.pt", whole / "best.pt")
    assert_same_checkpoint(extended / "last.pt", whole / "last.pt")


def test_a_kill_while_an_extension_begins_still_restores_the_best(scripted, single_thread,
                                                                  tiny_data, tmp_path):
    scripted.update({2: 0.5, 3: 0.9, 4: 0.6, 6: 0.4})
    protonet_run(tmp_path / "whole", tiny_data, 6)
    run = tmp_path / "run"
    protonet_run(run, tiny_data, 3)  # ends off the grid, at its best
    # Killed between the best.pt of iteration 3 and its last.pt: best.pt is further, and holds
    # what it displaced.
    stopped(tmp_path / "at-2", tiny_data, 3, at=2)
    (run / "last.pt").write_bytes((tmp_path / "at-2" / "last.pt").read_bytes())
    protonet_run(run, tiny_data, 6, resume=True)
    for name in ("last.pt", "best.pt"):
        assert_same_checkpoint(run / name, tmp_path / "whole" / name)
