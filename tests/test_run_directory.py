"""A run directory keeps what it holds: no silent overwrite, honest end-of-run messages,
checkpoints named only when this run wrote them, and a per-iteration training log."""

import json

import pytest

from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import load_checkpoint
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.training import TrainingInterrupted, train

TINY = dict(ways=5, queries=2, test_ways=3, test_queries=2, val_every=2, val_episodes=2,
            device="cpu")


def tiny_train(run, data, iterations=4, **options):
    return train(TrainConfig("protonet", iterations=iterations, **TINY), run, data=data,
                 progress=False, **options)


def test_out_on_an_existing_run_is_refused_and_keeps_it(tiny_data, tmp_path):
    run = tmp_path / "run"
    tiny_train(run, tiny_data, iterations=4)
    before = {name: (run / name).read_bytes() for name in ("config.json", "last.pt", "best.pt", "log.csv")}
    with pytest.raises(FewshotError, match="already holds a training run.*--resume.*--overwrite"):
        tiny_train(run, tiny_data, iterations=2)
    assert {name: (run / name).read_bytes() for name in before} == before


def test_overwrite_replaces_the_whole_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    tiny_train(run, tiny_data, iterations=4)
    (run / "best.pt").write_bytes(b"the old run's best")  # must not survive beside the new config
    # Stopped before the first checkpoint: nothing of the old run may remain.
    with pytest.raises(TrainingInterrupted):
        tiny_train(run, tiny_data, iterations=2, overwrite=True, stop_after=1)
    assert not (run / "best.pt").exists()
    assert json.loads((run / "config.json").read_text())["iterations"] == 2
    tiny_train(run, tiny_data, iterations=2, overwrite=True)
    assert load_checkpoint(run / "best.pt")["iteration"] <= 2
    assert load_checkpoint(run / "last.pt")["iteration"] == 2


def test_a_directory_with_only_a_config_is_a_new_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # a run killed before its first checkpoint
    assert tiny_train(run, tiny_data, iterations=2).iterations == 2


def test_cli_refuses_an_existing_run_and_overwrite_with_resume(tiny_root, tiny_data, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    run = tmp_path / "run"
    tiny_train(run, tiny_data, iterations=2)
    args = ["train", "protonet", "--ways", "5", "--queries", "2", "--test-ways", "3",
            "--test-queries", "2", "--iterations", "2", "--val-every", "2", "--val-episodes", "2",
            "--quiet"]
    assert main(args + ["--out", str(run)]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(args + ["--resume", str(run), "--overwrite"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--out", str(run), "--overwrite"]) == 0


def test_resume_with_fewer_iterations_than_done_is_refused(tiny_data, tmp_path):
    run = tmp_path / "run"
    tiny_train(run, tiny_data, iterations=4)
    last = (run / "last.pt").read_bytes()
    with pytest.raises(FewshotError, match="done 4 iterations already, more than --iterations 2"):
        train(TrainConfig("protonet", iterations=2), run, resume=True, data=tiny_data, progress=False)
    assert (run / "last.pt").read_bytes() == last
    assert json.loads((run / "config.json").read_text())["iterations"] == 4


def test_a_time_limit_stop_says_so_and_how_to_continue(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    run = tmp_path / "run"
    args = ["train", "protonet", "--ways", "5", "--queries", "2", "--test-ways", "3",
            "--test-queries", "2", "--val-every", "2", "--val-episodes", "2", "--quiet"]
    assert main(args + ["--out", str(run), "--iterations", "1000", "--time-limit", "1e-9"]) == 0
    out = capsys.readouterr().out
    assert "done:" not in out
    assert "time limit reached: stopped after 1 of 1000 iterations" in out
    assert f"--resume {run}" in out


def test_divergence_names_only_this_runs_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    tiny_train(run, tiny_data, iterations=2)  # an earlier run's last.pt is in the directory
    config = TrainConfig("protonet", iterations=4, lr=float("inf"), **TINY)
    with pytest.raises(FewshotError, match="training diverged") as error:
        train(config, run, data=tiny_data, progress=False, overwrite=True)
    assert "no checkpoint was saved yet" in str(error.value)
    assert "last.pt" not in str(error.value)


def test_divergence_after_a_checkpoint_names_it_with_its_iteration(tiny_data, tmp_path, monkeypatch):
    from fewshot_cli.algorithms.base import Algorithm

    real_step, calls = Algorithm.train_step, []

    def step(*args, **kwargs):
        calls.append(1)
        loss, accuracy = real_step(*args, **kwargs)
        return (float("nan") if len(calls) == 3 else loss), accuracy

    monkeypatch.setattr(Algorithm, "train_step", step)
    with pytest.raises(FewshotError, match=r"last good checkpoint is .*last\.pt \(iteration 2\)"):
        tiny_train(tmp_path / "run", tiny_data, iterations=4)


# ---------------------------------------------------------------- iterations.csv


def read_iterations(run):
    import csv

    with (run / "iterations.csv").open() as handle:
        return list(csv.DictReader(handle))


def comparable(rows):
    return [(r["iteration"], float(r["train_loss"]), float(r["train_accuracy"]), r["lr"])
            for r in rows]


def test_every_iteration_is_logged_and_survives_interrupts_and_resume(tiny_data, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same reduction order in both runs: the same losses
    try:
        whole = tmp_path / "whole"
        tiny_train(whole, tiny_data, iterations=7)
        reference = read_iterations(whole)
        assert [r["iteration"] for r in reference] == [str(i) for i in range(1, 8)]
        assert set(reference[0]) == {"iteration", "train_loss", "train_accuracy", "lr",
                                     "elapsed_seconds"}

        run = tmp_path / "run"
        with pytest.raises(TrainingInterrupted):
            tiny_train(run, tiny_data, iterations=7, stop_after=3)  # Ctrl-C after iteration 3
        assert [r["iteration"] for r in read_iterations(run)] == ["1", "2", "3"]
        # A kill after the next rows were written but before last.pt: rows beyond it, one cut short.
        with (run / "iterations.csv").open("a") as handle:
            handle.write("4,9.99999,0.00000,0.001,1.00\n5,9.9")
        train(TrainConfig("protonet", iterations=7), run, resume=True, data=tiny_data,
              progress=False)
    finally:
        torch.set_num_threads(threads)
    assert comparable(read_iterations(run)) == comparable(reference)


def test_curves_plot_the_training_loss(tiny_data, tmp_path):
    from fewshot_cli.report.curves import read_losses

    run = tmp_path / "run"
    tiny_train(run, tiny_data, iterations=4)
    losses = read_losses(run)
    assert losses["iteration"].tolist() == [1, 2, 3, 4]
    assert main(["plot", "curves", str(run), "--out", str(tmp_path / "c.png")]) == 0


def test_a_run_with_losses_but_no_validation_yet_still_plots_its_loss(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        tiny_train(run, tiny_data, iterations=4, stop_after=1)  # before the first validation
    assert main(["plot", "curves", str(run), "--out", str(tmp_path / "c.png")]) == 0
    assert "training loss only" in capsys.readouterr().err
