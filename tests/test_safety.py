"""Safety of what the tool reads and writes: untrusted checkpoints, writes cut short by a kill,
concurrent evaluations appending to one CSV, and training that diverges."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_omniglot

from fewshot_cli.algorithms.base import Algorithm
from fewshot_cli.cli import main
from fewshot_cli.data.source import load_omniglot
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import load_checkpoint, save_checkpoint, save_config
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.results import COLUMNS, append_row
from fewshot_cli.run.training import LOG_COLUMNS, train, write_log

TINY = dict(ways=5, queries=2, test_ways=3, test_queries=2, val_episodes=1, device="cpu")
MAML_TINY = dict(meta_batch=2, first_order=True)


def train_tiny(algorithm: str, run_dir: Path, data, **options) -> Path:
    settings = {**TINY, "iterations": 2, "val_every": 1, **options}
    extra = MAML_TINY if algorithm == "maml" else {}
    train(TrainConfig(algorithm, **settings, **extra), run_dir, data=data, progress=False)
    return run_dir


def environment(tiny_root: Path, cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEWSHOT_")}
    env.update(FEWSHOT_DATA=str(tiny_root), FEWSHOT_CACHE=str(cache_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def fewshot(*args: str, env: dict) -> subprocess.Popen:
    """Start ``python -m fewshot_cli ARGS`` in a fresh interpreter."""
    return subprocess.Popen([sys.executable, "-m", "fewshot_cli", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def proto_run(tiny_data, tmp_path_factory) -> Path:
    return train_tiny("protonet", tmp_path_factory.mktemp("safety") / "proto", tiny_data)


# ---------------------------------------------------------------- untrusted checkpoints


class Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def plant(run: Path, how: str, marker: Path) -> None:
    """Replace the run's checkpoints with a malicious pickle, written the way ``how`` says."""
    for name in ("best.pt", "last.pt"):
        if how == "torch.save":  # a zip checkpoint whose model is the payload
            torch.save({"algorithm": "protonet", "model": Payload(marker)}, run / name)
        else:  # a bare pickle, as torch.load's legacy format reads it
            (run / name).write_bytes(pickle.dumps(Payload(marker)))


def test_the_payload_is_live(tmp_path):
    """Loaded the unsafe way, a planted file does run code, so refusing it means something."""
    run = tmp_path / "run"
    run.mkdir()
    plant(run, "torch.save", tmp_path / "ran-torch")
    torch.load(run / "best.pt", weights_only=False)
    plant(run, "pickle", tmp_path / "ran-pickle")
    pickle.loads((run / "best.pt").read_bytes())
    assert (tmp_path / "ran-torch").exists() and (tmp_path / "ran-pickle").exists()


def test_malicious_checkpoints_are_refused(proto_run, tiny_root, cache_dir, tmp_path):
    env = environment(tiny_root, cache_dir)
    started = []
    for how, command in (("torch.save", ["eval", "{run}", "--episodes", "2", "--quiet"]),
                         ("pickle", ["train", "protonet", "--resume", "{run}", "--quiet"])):
        run = Path(shutil.copytree(proto_run, tmp_path / how))
        marker = tmp_path / f"ran-{how}"
        plant(run, how, marker)
        started.append((marker, fewshot(*[a.format(run=run) for a in command], env=env)))
    for marker, process in started:
        stdout, stderr = process.communicate(timeout=300)
        assert "Traceback" not in stderr, stderr
        assert process.returncode == 2, (stdout, stderr)
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot load checkpoint"), stderr
        assert "could run code" in lines[0]
        assert not marker.exists()


def test_checkpoints_hold_tensors_and_plain_data_only(proto_run):
    state = torch.load(proto_run / "last.pt", weights_only=True)  # raises on anything else
    assert state["algorithm"] == "protonet"
    assert all(isinstance(t, torch.Tensor) for t in state["model"].values())
    assert (proto_run / "config.json").read_text().lstrip().startswith("{")


# ---------------------------------------------------------------- writes cut short


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way may swallow it."""


@pytest.fixture
def dying_writes(monkeypatch):
    """Make every file opened through ``os.fdopen`` die halfway through its first write.

    The atomic writers (checkpoints, tensor cache, config, log, CSV) write through a handle from
    ``os.fdopen`` on their temporary file. Returns a list that receives the bytes written.
    """
    written: list[int] = []
    real_fdopen = os.fdopen

    class Dying:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            half = bytes(data)[: max(1, len(data) // 2)]
            self.handle.write(half)
            self.handle.flush()
            written.append(len(half))
            raise Killed

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Dying(real_fdopen(fd, *a, **k)))
    return written


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def write_checkpoint(path: Path, version: int) -> None:
    save_checkpoint(path, {"algorithm": "protonet", "iteration": version,
                           "model": {"w": torch.full((64, 64), float(version))}})


def write_config(path: Path, version: int) -> None:
    save_config(path.parent, TrainConfig("protonet", iterations=version))


def write_log_rows(path: Path, version: int) -> None:
    write_log(path.parent, [dict.fromkeys(LOG_COLUMNS, i) for i in range(version)])


def write_csv_row(path: Path, version: int) -> None:
    append_row(path, {"algorithm": "protonet", "accuracy_mean": version})


@pytest.mark.parametrize("name, write", [
    ("last.pt", write_checkpoint), ("config.json", write_config), ("log.csv", write_log_rows),
    ("eval.csv", write_csv_row)])
def test_a_write_cut_short_leaves_the_previous_file(name, write, tmp_path, request):
    path = tmp_path / name
    write(path, 1)
    write(path, 2)
    before = path.read_bytes()
    written = request.getfixturevalue("dying_writes")
    with pytest.raises(Killed):
        write(path, 3)
    request.getfixturevalue("monkeypatch").undo()
    assert written and written[0] > 0  # part of the new version was on disk when it died
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    if name == "last.pt":
        assert load_checkpoint(path)["iteration"] == 2
    if name == "eval.csv":
        assert [r["accuracy_mean"] for r in csv.DictReader(path.open())] == ["1", "2"]


def test_a_cache_write_cut_short_leaves_the_previous_cache(tmp_path, request):
    root = make_tiny_omniglot(tmp_path / "data", {"images_background": {"A": 2},
                                                  "images_evaluation": {"B": 2}}, drawings=2)
    cache = tmp_path / "cache"
    first = load_omniglot(root, cache_dir=cache)
    (cached,) = cache.iterdir()
    before = cached.read_bytes()
    png = sorted(root.rglob("*.png"))[0]
    png.write_bytes(sorted(root.rglob("*.png"))[-1].read_bytes())  # the data changed: rebuild
    written = request.getfixturevalue("dying_writes")
    with pytest.raises(Killed):
        load_omniglot(root, cache_dir=cache)
    request.getfixturevalue("monkeypatch").undo()
    assert written and cached.read_bytes() == before and leftovers(cache) == []
    assert torch.equal(torch.load(cached, weights_only=True)["images"], first.images)
    assert not torch.equal(load_omniglot(root, cache_dir=cache).images, first.images)


# ---------------------------------------------------------------- concurrent writers


def test_concurrent_evaluations_lose_no_row(proto_run, tiny_root, cache_dir, tmp_path):
    out = tmp_path / "eval.csv"
    env = environment(tiny_root, cache_dir)
    processes = [fewshot("eval", str(proto_run), "--csv", str(out), "--episodes", "3",
                         "--seed", str(seed), "--quiet", env=env) for seed in range(8)]
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    text = out.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 9
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == COLUMNS
    for row in rows:
        assert None not in row and None not in row.values(), row  # no cut or merged line
        assert row["algorithm"] == "protonet" and 0 <= float(row["accuracy_mean"]) <= 1
    assert sorted(int(row["seed"]) for row in rows) == list(range(8))


def test_an_append_waits_for_the_lock(tmp_path):
    out = tmp_path / "eval.csv"
    append_row(out, {"algorithm": "maml", "accuracy_mean": "0.5"})
    lock = os.open(tmp_path, os.O_RDONLY)  # the CSV's folder, as append_row locks it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process in the middle of its append
        writer = threading.Thread(target=append_row,
                                  args=(out, {"algorithm": "protonet", "accuracy_mean": "0.9"}))
        writer.start()
        writer.join(0.5)
        blocked = writer.is_alive()
        rows_meanwhile = len(list(csv.DictReader(out.open())))
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    writer.join(30)
    assert blocked and rows_meanwhile == 1
    assert [r["algorithm"] for r in csv.DictReader(out.open())] == ["maml", "protonet"]


# ---------------------------------------------------------------- numerical faults


def cli_train(algorithm: str, run: Path, *options: str) -> list[str]:
    args = ["train", algorithm, "--out", str(run), "--ways", "5", "--test-ways", "3",
            "--queries", "2", "--test-queries", "2", "--val-episodes", "1", "--device", "cpu",
            "--quiet", *options]
    return args + (["--meta-batch", "2", "--first-order"] if algorithm == "maml" else [])


@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
        algorithm, tiny_root, cache_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))
    run, bad_iteration, val_every, at_failure = tmp_path / "run", 5, 2, {}
    real_step, calls = Algorithm.train_step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        loss, accuracy = real_step(self, *args, **kwargs)
        if len(calls) == bad_iteration:
            at_failure["last.pt"] = (run / "last.pt").read_bytes()
            return float("nan"), accuracy
        return loss, accuracy

    monkeypatch.setattr(Algorithm, "train_step", step)
    code = main(cli_train(algorithm, run, "--iterations", "10", "--val-every", str(val_every)))
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert f"iteration {bad_iteration}" in err and "learning rate" in err
    assert len(calls) == bad_iteration  # stopped at once
    assert (run / "last.pt").read_bytes() == at_failure["last.pt"]
    last_good = (bad_iteration - 1) // val_every * val_every  # the checkpoint before the NaN
    assert load_checkpoint(run / "last.pt")["iteration"] == last_good
    assert load_checkpoint(run / "best.pt")["iteration"] <= last_good


def finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


# A huge step overflows BatchNorm's running variance (ProtoNet, MAML's network of earlier
# versions); MAML's paper network keeps no running statistics, so its weights must overflow.
@pytest.mark.parametrize("algorithm,extra,lr", [
    ("protonet", {}, 1e12),
    ("maml", {**MAML_TINY, "bn_running_stats": True, "backbone": "conv4"}, 1e12),
    ("maml", MAML_TINY, 1e30)], ids=["protonet", "maml-running-stats", "maml"])
def test_a_huge_learning_rate_never_saves_broken_weights(algorithm, extra, lr, tiny_data, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(algorithm, **TINY, **extra, iterations=8, val_every=1, lr=lr)
    with pytest.raises(FewshotError, match="learning rate") as error:
        train(config, run, data=tiny_data, progress=False)
    failed_at = int(re.search(r"at iteration (\d+)", str(error.value)).group(1))
    if (run / "last.pt").exists():
        state = load_checkpoint(run / "last.pt")
        assert state["iteration"] < failed_at and finite(state)
        assert finite(load_checkpoint(run / "best.pt"))
        assert str(run / "last.pt") in str(error.value)
    else:
        assert "no checkpoint" in str(error.value)


def test_append_with_a_new_column_rewrites_the_header(tmp_path):
    import pandas as pd

    from fewshot_cli.run.results import append_row

    path = tmp_path / "eval.csv"
    append_row(path, {"algorithm": "maml", "accuracy_mean": "0.9"})
    path.write_text("algorithm,accuracy_mean\nmaml,0.9\n")  # an older file without new columns
    append_row(path, {"algorithm": "protonet", "accuracy_mean": "0.95", "checkpoint_iteration": "7"})
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["algorithm", "accuracy_mean", "checkpoint_iteration"]
    assert frame["checkpoint_iteration"].isna().tolist() == [True, False]
