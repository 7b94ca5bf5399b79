"""Data-parallel MAML under torchrun (gloo, 2 CPU processes) trains as one process does.

Checked: the BatchNorm merge against sequential updates; refusals before any process starts
(bad options, an existing run, a missing source or data); and real runs: 2 processes stopped by
SIGTERM (exit code 143) hold the weights of one process stopped at the same iteration (up to
float rounding), and resumed by a bare torchrun they end where one process ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_interrupt import cli_options

from fewshot_cli.algorithms import registry
from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import load_checkpoint
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.distributed import chain_averages, check_split, needs_launch, without_nproc
from fewshot_cli.run.training import TrainingInterrupted, train

# Second order, 4 tasks per meta-batch: 2 per process.
SETTINGS = dict(ways=3, queries=2, test_ways=3, test_queries=2, iterations=12, val_every=2,
                val_episodes=1, seed=3, device="cpu", meta_batch=4)


def test_batchnorm_statistics_merge_as_sequential_updates():
    torch.manual_seed(0)
    batches = [torch.randn(6, 3, 4, 4) * (i + 1) + i for i in range(7)]
    for momentum in (0.1, None):
        start = torch.nn.BatchNorm2d(3, momentum=momentum)
        start.running_mean.uniform_(), start.running_var.uniform_(1, 2)
        start.num_batches_tracked.fill_(5)
        one = torch.nn.BatchNorm2d(3, momentum=momentum).train()
        one.load_state_dict(start.state_dict())
        for batch in batches:
            one(batch)
        ranks = []
        for share in (batches[:4], batches[4:]):  # unequal shares merge too
            rank = torch.nn.BatchNorm2d(3, momentum=momentum).train()
            rank.load_state_dict(start.state_dict())
            for batch in share:
                rank(batch)
            ranks.append(rank)
        updates = torch.tensor([4.0, 3.0], dtype=torch.float64)
        for name in ("running_mean", "running_var"):
            ends = torch.stack([getattr(r, name).double() for r in ranks])
            merged = chain_averages(getattr(start, name).double(), ends, updates, 5, momentum)
            assert torch.allclose(merged.float(), getattr(one, name), atol=1e-6), (momentum, name)


def test_refusals_come_before_any_process_starts(tmp_path, capsys):
    maml, protonet = registry.get("maml"), registry.get("protonet")
    check_split(maml, TrainConfig("maml", meta_batch=32).resolved(), 4)
    with pytest.raises(FewshotError, match="do not split evenly across 3 processes"):
        check_split(maml, TrainConfig("maml", meta_batch=32).resolved(), 3)
    with pytest.raises(FewshotError, match="protonet trains on 1 episode per iteration"):
        check_split(protonet, TrainConfig("protonet").resolved(), 2)
    for args, message in ((["maml", "--meta-batch", "5", "--nproc", "2"], "5 episodes per iteration"),
                          (["protonet", "--nproc", "2"], "nothing to split across 2 processes"),
                          (["maml", "--nproc", "0"], "--nproc must be at least 1")):
        assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
    assert not needs_launch(None, None) and not needs_launch(1, None) and needs_launch(2, None)
    assert without_nproc(["train", "maml", "--nproc", "2", "--nproc=2", "--out", "r"]) == \
        ["train", "maml", "--out", "r"]


def test_bad_options_are_refused_before_any_process_starts(tiny_root, cache_dir, tiny_data,
                                                           tmp_path, monkeypatch, capsys):
    from fewshot_cli.run import distributed

    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))
    monkeypatch.setattr(distributed, "launch", lambda *args: pytest.fail("a process started"))
    run, file = tmp_path / "run", tmp_path / "file"
    train(TrainConfig("maml", **{**SETTINGS, "iterations": 2}), run, data=tiny_data,
          progress=False)
    file.write_text("not a checkpoint\n")
    new = ["--out", str(tmp_path / "new")]
    for args, message in (
        (["--out", str(run)], "already holds a training run"),
        (["--out", str(file / "run")], f"{file} is a file"),
        (["--resume", str(run), "--iterations", "1"], "done 2 iterations already"),
        ([*new, "--init-from", str(file)], "not a PyTorch checkpoint at all"),
        ([*new, "--data-root", str(tmp_path / "nowhere")], "no Omniglot found"),
        ([*new, "--ways", "50"], "ways (50) exceeds"),
    ):
        assert main(["train", "maml", "--nproc", "2", "--meta-batch", "4", "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()

    # The whole command: one line, nothing from torchrun.
    done = subprocess.run(fewshot("train", "maml", "--out", str(run), "--nproc", "2", "--quiet"),
                          env=environment(tiny_root, cache_dir), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and "already holds a training run" in done.stderr


def environment(tiny_root: Path, cache_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FEWSHOT_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(FEWSHOT_DATA=str(tiny_root), FEWSHOT_CACHE=str(cache_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def start(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def fewshot(*args: str) -> list[str]:
    return [sys.executable, "-m", "fewshot_cli", *args]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "-m", "fewshot_cli", *args]


def assert_close_to_one_process(path: Path, reference: Path, atol: float = 1e-4) -> None:
    """Every tensor of the two checkpoints agrees within ``atol``, except the convolution biases
    (and the running means they shift): each is followed by BatchNorm, so its gradient is zero
    in exact arithmetic and Adam normalises rounding noise into full-size steps in any run
    (two one-process runs with 1 and 2 threads differ there too). That their gradients are
    noise is checked: Adam's second moment stays below 1e-12."""
    ours, theirs = load_checkpoint(path), load_checkpoint(reference)
    names = list(theirs["model"])
    parameters = [n for n in names if "running" not in n and "num_batches" not in n]
    noise = {n for n in parameters if n.endswith("conv.bias")}
    assert len(noise) == 4
    for index, name in enumerate(parameters):
        state = [c["optimizer"]["state"][index] for c in (ours, theirs)]
        if name in noise:
            assert max(s["exp_avg_sq"].max().item() for s in state) < 1e-12, name
            continue
        assert torch.allclose(ours["model"][name], theirs["model"][name], atol=atol, rtol=0), name
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(state[0][key], state[1][key], atol=atol, rtol=0), (name, key)
    for name in names:
        if "running_var" in name or "num_batches" in name:
            assert torch.allclose(ours["model"][name].double(), theirs["model"][name].double(),
                                  atol=atol, rtol=0), name
    assert ours["iteration"] == theirs["iteration"]


def test_two_processes_train_as_one_and_resume_after_sigterm(tiny_root, cache_dir, tiny_data,
                                                             tmp_path):
    env = environment(tiny_root, cache_dir)
    run = tmp_path / "parallel"
    # `train --nproc 2` launches torchrun; SIGTERM to it reaches both processes once.
    process = start(fewshot("train", "maml", "--out", str(run), "--nproc", "2", "--quiet",
                            *cli_options(SETTINGS)), env)
    while not (run / "last.pt").exists() and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, (stdout, stderr)  # 128 + SIGTERM, as for one process
    assert "Traceback" not in stderr and stderr.count("--resume") == 1, stderr  # rank 0 alone
    assert "torch" not in stderr and "signal" not in stderr.lower(), stderr  # torchrun's logs
    stopped = load_checkpoint(run / "last.pt")["iteration"]
    assert SETTINGS["val_every"] <= stopped < SETTINGS["iterations"]

    # One process stopped at the same iteration holds the same weights.
    single = tmp_path / "single"
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig("maml", **SETTINGS), single, data=tiny_data, progress=False,
              stop_after=stopped)
    assert_close_to_one_process(run / "last.pt", single / "last.pt")

    # Resumed by a bare torchrun, the 2 processes end where one process ends.
    resumed = start(torchrun("train", "maml", "--resume", str(run), "--quiet"), env)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert stdout.count(f"done: {SETTINGS['iterations']} iterations") == 1, stdout  # rank 0 alone
    train(TrainConfig("maml", iterations=SETTINGS["iterations"]), single, resume=True,
          data=tiny_data, progress=False)
    assert_close_to_one_process(run / "last.pt", single / "last.pt")
    # Rank 0 alone validated, as often as one process does, on the same models.
    logs = [pd.read_csv(path / "log.csv") for path in (run, single)]
    assert logs[0]["iteration"].tolist() == logs[1]["iteration"].tolist()
    assert logs[0]["val_accuracy"].tolist() == logs[1]["val_accuracy"].tolist()
