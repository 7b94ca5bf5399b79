"""Tables and figures never mix protocols: default grouping by everything that defines the
experiment, and one checkpoint evaluated twice on the same episodes counted once."""

import io

import pandas as pd
import pytest

from fewshot_cli.cli import main
from fewshot_cli.report.aggregate import aggregate, aggregate_files, read_results
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.results import append_row
from fewshot_cli.run.training import train


def row(**changes):
    base = {"algorithm": "maml", "order": "second", "backbone": "conv4", "split": "random",
            "split_part": "test", "rotations": "True", "train_ways": 5, "train_shots": 1,
            "train_iterations": 200, "test_ways": 5, "test_shots": 1, "test_queries": 15,
            "inner_steps_test": 3, "bn_mode": "batch", "accuracy_mean": 0.9, "ci95": 0.01,
            "episodes": 600, "seed": 0, "checkpoint": "runs/a/best.pt", "checkpoint_iteration": 200}
    return {**base, **changes}


def table_of(tmp_path, rows, **options):
    path = tmp_path / "eval.csv"
    for r in rows:
        append_row(path, r)
    return aggregate(read_results([path]), **options)


@pytest.mark.parametrize("change", [
    {"split_part": "val"}, {"backbone": "conv4-strided"}, {"train_iterations": 60000},
    {"train_ways": 20}, {"train_shots": 5}, {"test_queries": 5}, {"bn_mode": "running"},
    {"split": "lake"}, {"rotations": "False"}, {"inner_steps_test": 10}, {"engine": "vmap"},
])
def test_rows_of_another_protocol_are_never_averaged(tmp_path, change):
    other = row(checkpoint="runs/b/best.pt", accuracy_mean=0.5, **change)
    table = table_of(tmp_path, [row(), other])
    assert len(table) == 2 and table["runs"].tolist() == [1, 1], table
    assert sorted(table["accuracy_mean"]) == [0.5, 0.9]


def test_seeds_of_one_protocol_are_averaged(tmp_path):
    table = table_of(tmp_path, [row(), row(checkpoint="runs/b/best.pt", accuracy_mean=0.8)])
    assert table["runs"].tolist() == [2] and table["accuracy_mean"].iloc[0] == pytest.approx(0.85)


def test_one_checkpoint_evaluated_twice_counts_once(tmp_path):
    warnings = []
    table = table_of(tmp_path, [row(), row(), row(seed=1)], warn=warnings.append)
    # The same episodes again count once. Other episodes (seed 1) of the same checkpoint are
    # another measurement of the same training: one run (a run is a training, see aggregate).
    assert table["runs"].tolist() == [1] and table["episodes"].tolist() == [1200]
    assert len(warnings) == 1 and "eval.csv:2, " in warnings[0] and "eval.csv:3" in warnings[0]
    assert "runs/a/best.pt" in warnings[0] and "counted once" in warnings[0]


def test_default_table_shows_what_differs_and_notes_what_is_shared(tmp_path):
    path = tmp_path / "eval.csv"
    for r in (row(), row(split_part="val", checkpoint="runs/b/best.pt")):
        append_row(path, r)
    lines = aggregate_files([path]).splitlines()
    header = lines[0].split()
    assert header[:2] == ["algorithm", "split"] and "split_part" in header
    assert "backbone" not in header and "train_iterations" not in header
    assert lines[-2].startswith("Every line: ") and "backbone conv4" in lines[-2]
    assert "train_iterations 200" in lines[-2]
    # Columns chosen with --by are all shown, and nothing is noted.
    chosen = aggregate_files([path], by=["algorithm", "backbone"]).splitlines()
    assert chosen[0].split()[:2] == ["algorithm", "backbone"] and not any(line.startswith("Every") for line in chosen)


def test_eval_twice_and_a_validation_row_end_to_end(tiny_root, tiny_data, tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    run, out = tmp_path / "run", tmp_path / "x.csv"
    train(TrainConfig("protonet", ways=5, queries=2, test_ways=3, test_queries=2, iterations=2,
                      val_every=2, val_episodes=2, device="cpu"), run, data=tiny_data, progress=False)
    common = ["eval", str(run), "--csv", str(out), "--episodes", "4", "--ways", "3",
              "--queries", "2", "--quiet"]
    for extra in ([], [], ["--part", "val"]):
        assert main(common + extra) == 0
    capsys.readouterr()
    assert main(["aggregate", str(out), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(io.StringIO(captured.out))
    assert sorted(table["split_part"]) == ["test", "val"]
    assert table["runs"].tolist() == [1, 1]
    assert captured.err.count("warning: ") == 1 and "counted once" in captured.err


def test_accuracy_plot_has_one_labelled_bar_per_protocol(tmp_path):
    from fewshot_cli.report.plots import accuracy_bars

    # The 5-way 1-shot MAML: lake, running BatchNorm, and two seeds of random.
    table = table_of(tmp_path, [
        row(split="lake", rotations="False", accuracy_mean=0.665, checkpoint="l"),
        row(bn_mode="running", accuracy_mean=0.201, checkpoint="r"),
        row(accuracy_mean=0.898, checkpoint="s0/best.pt", train_seed=0),
        row(accuracy_mean=0.900, checkpoint="s1/best.pt", train_seed=1),
    ])
    cells, bars, shared = accuracy_bars(table)
    assert cells == [("5", "1")]
    ours = {b.details: b.height for b in bars if not b.paper}
    assert sorted(ours.values()) == pytest.approx([20.1, 66.5, 89.9])
    assert {b.family for b in bars if not b.paper} == {"maml second order"}
    assert sorted(b.tag for b in bars if not b.paper) == ["a", "b", "c"]
    assert any("lake split" in d for d in ours) and any("BN running" in d for d in ours)
    assert [b.family for b in bars if b.paper] == ["maml"]
    assert "backbone conv4" in shared


def test_accuracy_plot_keeps_two_budgets_apart(tmp_path):
    from fewshot_cli.report.plots import accuracy_bars

    quick, cpu = tmp_path / "quick.csv", tmp_path / "cpu.csv"
    append_row(quick, row(train_iterations=20, accuracy_mean=0.6, checkpoint="q"))
    append_row(cpu, row(train_iterations=200, accuracy_mean=0.9, checkpoint="c"))
    _, bars, _ = accuracy_bars(aggregate(read_results([quick, cpu])))
    assert sorted(b.details for b in bars if not b.paper) == ["20 it", "200 it"]
