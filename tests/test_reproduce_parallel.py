"""Several seeds, worker processes and printed plans all give the table ``reproduce`` gives.

On the tiny data, 1 torch thread everywhere (workers get cores / jobs threads, made 1 here), so
the same trainings give the same weights in any process and the tables compare exactly.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import shlex
import signal
import threading
import time

import pandas as pd
import pytest
import torch

from fewshot_cli.algorithms.papers import BudgetSettings
from fewshot_cli.cli import main
from fewshot_cli.report.aggregate import t975
from fewshot_cli.report.comparison import comparison, format_comparison
from fewshot_cli.run import budgets, workers
from fewshot_cli.run.budgets import Budget
from fewshot_cli.run.checkpoint import load_checkpoint
from fewshot_cli.run.reproduce import reproduce
from fewshot_cli.run.training import TrainingInterrupted

# Seconds on the tiny data (its lake split validates on a 3-character alphabet, hence 3 ways).
TINY = Budget("tiny", ("3w1s",), {
    "maml": BudgetSettings(2, 4, {"meta_batch": 2, "first_order": True}),
    "protonet": BudgetSettings(3, 5, {"ways": 5}),
}, val_every=2, val_episodes=2)
# Long enough for a signal to land mid-training.
LONG = dataclasses.replace(TINY, algorithms={
    "maml": BudgetSettings(20, 4, {"meta_batch": 2, "first_order": True})})


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(out, budget=TINY, **options):
    lines = []
    options = {"split": "lake", "device": "cpu", "progress": False, "seeds": 2, **options}
    table = comparison(reproduce(out, budget, echo=lines.append, **options))
    return table, lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data, one_thread):
    """Two seeds of both algorithms, in order, in this process."""
    out = tmp_path_factory.mktemp("reference")
    table, lines = run(out, data=tiny_data)
    return out, table, lines


def test_each_seed_trains_its_own_run_and_the_table_spans_seeds(reference):
    out, table, lines = reference
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "maml-3w1s", "maml-3w1s-seed1", "protonet-5w1s", "protonet-5w1s-seed1"]
    rows = pd.read_csv(out / "eval.csv")
    assert sorted(zip(rows["algorithm"], rows["train_seed"])) == [
        ("maml", 0), ("maml", 1), ("protonet", 0), ("protonet", 1)]
    assert any(line.startswith("[3/4] maml 3-way 1-shot seed 1: training") for line in lines)
    for algorithm, group in rows.groupby("algorithm"):
        line = table.set_index("algorithm").loc[algorithm]
        means = group["accuracy_mean"]
        assert line["runs"] == 2 and line["accuracy_mean"] == pytest.approx(means.mean())
        assert line["run_std"] == pytest.approx(means.std())
        assert line["seeds_ci95"] == pytest.approx(t975(1) * means.std() / math.sqrt(2))
    text = format_comparison(table)
    shown = table.set_index("algorithm").loc["maml"]
    # "±" is the episodes' CI, as in aggregate; the seeds' CI has a column of its own.
    maml_line = next(line for line in text.splitlines() if line.startswith("maml"))
    assert f"{100 * shown['accuracy_mean']:.2f} ± {100 * shown['ci95']:.2f}" in maml_line
    assert f"{100 * shown['seeds_ci95']:.2f}" in maml_line.split("±")[1]
    assert "seeds CI95 (%)" in text and "±: 95% CI over the test episodes" in text


def test_printed_plan_then_report_gives_the_same_table(reference, tmp_path, tiny_root,
                                                       cache_dir, monkeypatch, capsys):
    monkeypatch.setitem(budgets.BUDGETS, "quick", dataclasses.replace(TINY, name="quick"))
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))
    out = tmp_path / "grid"
    options = ["--budget", "quick", "--out", str(out), "--split", "lake", "--device", "cpu"]
    assert main(["reproduce", *options, "--seeds", "2", "--data-root", str(tiny_root),
                 "--plan"]) == 0
    printed = capsys.readouterr()
    commands = printed.out.splitlines()
    assert len(commands) == 4 and "--report" in printed.err
    for command in commands:  # as a scheduler would run them: any order, each on its own
        argv = shlex.split(command)
        assert argv[:2] == ["fewshot", "reproduce"] and "--seed" in argv
        assert main(argv[1:] + ["--quiet"]) == 0
    capsys.readouterr()
    assert not (out / "eval.csv").exists()
    assert sorted(p.name for p in (out / "csv").glob("*.csv")) == [
        "maml-3w1s-seed1.csv", "maml-3w1s.csv", "protonet-5w1s-seed1.csv", "protonet-5w1s.csv"]
    assert main(["reproduce", *options, "--seeds", "2", "--report"]) == 0
    report = capsys.readouterr().out
    assert report.endswith("\n" + format_comparison(reference[1]))
    pd.testing.assert_frame_equal(
        comparison(reproduce(out, TINY, split="lake", seeds=2, report=True,
                             echo=lambda line: None)),
        reference[1])
    # A command run again finds its rows and does nothing.
    assert main(shlex.split(commands[0])[1:]) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(pd.read_csv(out / "csv" / "maml-3w1s.csv")) == 1


def test_report_lists_what_is_missing(reference, tmp_path, capsys):
    out = reference[0]
    lines = []
    table = comparison(reproduce(out, TINY, split="lake", seeds=3, report=True,
                                 echo=lines.append))
    assert [line for line in lines if "no result yet" in line] == [
        "[5/6] maml 3-way 1-shot seed 2: no result yet (runs/maml-3w1s-seed2)",
        "[6/6] protonet 3-way 1-shot seed 2: no result yet (runs/protonet-5w1s-seed2)"]
    pd.testing.assert_frame_equal(table, reference[1])
    assert main(["reproduce", "--out", str(tmp_path), "--report"]) == 2
    assert "no results in" in capsys.readouterr().err


def test_jobs_stop_on_ctrl_c_then_resume_to_the_same_table(tmp_path, tiny_root, cache_dir,
                                                           monkeypatch, one_thread, tiny_data,
                                                           capfd):
    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))
    monkeypatch.setattr(workers, "available_cores", lambda: 2)  # 1 thread per worker
    expected, _ = run(tmp_path / "in-order", LONG, data=tiny_data)
    out = tmp_path / "jobs"

    def interrupt():  # Ctrl-C once both trainings are under way
        deadline = time.time() + 300
        while len(list(out.glob("runs/*/last.pt"))) < 2 and time.time() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(TrainingInterrupted, match="stopped 2 running training"):
        run(out, LONG, data_root=tiny_root, jobs=2)
    assert multiprocessing.active_children() == []
    stopped = [load_checkpoint(p)["iteration"] for p in out.glob("runs/*/last.pt")]
    assert len(stopped) == 2 and all(i < 20 for i in stopped), stopped
    assert not (out / "eval.csv").exists()
    capfd.readouterr()

    table, _ = run(out, LONG, data_root=tiny_root, jobs=2)
    printed = capfd.readouterr().out
    assert printed.count("resuming at") == 2, printed
    pd.testing.assert_frame_equal(table, expected)


def record_threads(path: str, device: str, echo) -> None:
    """A job that writes the torch threads its worker was given."""
    with open(path, "w") as handle:
        handle.write(str(torch.get_num_threads()))


@pytest.mark.parametrize("threads, each", [(None, 2), (2, 1), (6, 3)])
def test_workers_share_the_threads_given_else_the_cores(tmp_path, monkeypatch, threads, each):
    """``--jobs J`` gives each worker cores / J threads, or --threads / J when given (so a
    worker's thread count, on which its numbers depend, is the same on any machine)."""
    monkeypatch.setattr(workers, "available_cores", lambda: 4)
    files = [tmp_path / f"{i}.txt" for i in range(2)]
    workers.run_jobs([(record_threads, (str(f),)) for f in files], 2, "cpu", threads)
    assert [int(f.read_text()) for f in files] == [each, each]


def test_bad_combinations_are_one_line_errors(tmp_path, capsys):
    for args, message in ((["--plan", "--report"], "give one of --plan"),
                          (["--seeds", "2", "--seed", "1"], "not both"),
                          (["--seeds", "0"], "--seeds must be at least 1"),
                          (["--jobs", "0"], "--jobs must be at least 1")):
        assert main(["reproduce", "--out", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
