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
def single_thread():
    # Bit-identical weights across processes need the same reduction order: one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
