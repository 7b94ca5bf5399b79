"""The protocol declared once: what every row records, what aggregate groups on, what counts as
the same evaluation, and CSVs that are never clobbered or misread."""

import dataclasses
import json
import shutil

import pandas as pd
import pytest

from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.aggregate import aggregate, read_results
from fewshot_cli.run import protocol
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate_run
from fewshot_cli.run.results import append_row
from fewshot_cli.run.training import train


def row(**changes):
    """An evaluation row with a value in every protocol column."""
    base = {name: "x" for name in protocol.PROTOCOL_COLUMNS}
    base.update(algorithm="maml", test_ways=5, test_shots=1, accuracy_mean=0.9, ci95=0.01,
                episodes=600, seed=0, train_seed=0, checkpoint="runs/a/best.pt",
                checkpoint_iteration=200)
    return {**base, **changes}


def table_of(tmp_path, rows, warn=None):
    path = tmp_path / "eval.csv"
    for r in rows:
        append_row(path, r)
    return aggregate(read_results([path]), warn=warn)


def test_every_config_field_is_declared_once():
    protocol.check_declared(TrainConfig)
    extra = dataclasses.make_dataclass("Extra", [("algorithm", str), ("new_option", int)])
    with pytest.raises(FewshotError, match="undeclared \\['new_option'\\]"):
        protocol.check_declared(extra)


def test_every_protocol_column_is_a_csv_column_and_grouped_on():
    from fewshot_cli.report.aggregate import PROTOCOL
    from fewshot_cli.run.results import COLUMNS

    assert set(protocol.PROTOCOL_COLUMNS) <= set(COLUMNS)
    assert PROTOCOL == protocol.PROTOCOL_COLUMNS
    for name in ("inner_lr", "inner_steps_train", "lr", "lr_halve_every", "meta_batch",
                 "val_ways", "dataset", "data"):
        assert name in PROTOCOL
    assert "train_seed" not in PROTOCOL and "seed" not in PROTOCOL  # averaged over


@pytest.mark.parametrize("column", [c for c in protocol.PROTOCOL_COLUMNS if c != "algorithm"])
def test_rows_that_differ_in_any_protocol_column_are_never_averaged(tmp_path, column):
    table = table_of(tmp_path, [row(), row(checkpoint="runs/b/best.pt", accuracy_mean=0.5,
                                           **{column: "other"})])
    assert table["runs"].tolist() == [1, 1]


def test_a_training_row_records_its_whole_protocol(tiny_data, tmp_path):
    run = tmp_path / "maml"
    config = TrainConfig("maml", ways=3, queries=1, iterations=2, meta_batch=2, inner_lr=0.3,
                         inner_steps=2, lr=2e-3, lr_halve_every=7, test_ways=3, test_queries=2,
                         val_every=2, val_episodes=2, device="cpu")
    train(config, run, data=tiny_data, progress=False)
    _, r = evaluate_run(run, None, episodes=2, data=tiny_data)
    assert (r["inner_lr"], r["inner_steps_train"], r["lr"], r["lr_halve_every"]) == (
        "0.3", "2", "0.002", "7")
    assert (r["meta_batch"], r["val_ways"], r["val_episodes"]) == ("2", "3", "2")
    assert r["dataset"] == "omniglot" and r["data"] == tiny_data.digest
    assert r["train_iterations"] == 2


def test_a_stopped_run_records_the_iterations_it_trained(tiny_data, tmp_path):
    run = tmp_path / "proto"
    train(TrainConfig("protonet", ways=3, queries=2, iterations=3, test_ways=3, test_queries=2,
                      val_every=1, val_episodes=2, device="cpu"), run, data=tiny_data,
          progress=False)
    # What --time-limit leaves: a configuration planning more than last.pt reached.
    stored = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**stored, "iterations": 100000}))
    _, r = evaluate_run(run, None, episodes=2, data=tiny_data)
    assert r["train_iterations"] == 3


def test_other_data_is_recorded_and_never_merged(tiny_root, tiny_data, tmp_path):
    from fewshot_cli.data.source import load_omniglot

    other_root = tmp_path / "other"
    shutil.copytree(tiny_root, other_root)
    shutil.rmtree(next((other_root / "images_evaluation" / "Omega").iterdir()))
    other = load_omniglot(other_root, cache_dir=tmp_path / "cache")
    run, csv = tmp_path / "proto", tmp_path / "eval.csv"
    train(TrainConfig("protonet", ways=3, queries=2, iterations=2, test_ways=3, test_queries=2,
                      val_every=2, val_episodes=2, device="cpu"), run, data=tiny_data,
          progress=False)
    evaluate_run(run, csv, episodes=4, ways=3, queries=2, data=tiny_data)
    evaluate_run(run, csv, episodes=4, ways=3, queries=2, data=other)
    warnings = []
    table = aggregate(read_results([csv]), warn=warnings.append)
    assert len(table) == 2 and not warnings
    assert other.digest != tiny_data.digest


def test_checkpoints_of_one_training_on_the_same_episodes_count_once(tmp_path):
    warnings = []
    table = table_of(tmp_path, [
        row(checkpoint="runs/a/best.pt", checkpoint_iteration=90, episodes=40, accuracy_mean=0.8),
        row(checkpoint="runs/a/last.pt", checkpoint_iteration=100, episodes=40),
    ], warn=warnings.append)
    assert table["runs"].tolist() == [1] and table["episodes"].tolist() == [40]
    assert len(warnings) == 1 and "checkpoints of one training" in warnings[0]


def test_identical_rows_in_two_csvs_count_once_on_any_line(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    append_row(a, row())
    append_row(b, row(checkpoint="runs/other/best.pt", train_seed=1, accuracy_mean=0.4))
    append_row(b, row())  # line 3 here, line 2 in a.csv
    warnings = []
    table = aggregate(read_results([a, b]), warn=warnings.append)
    assert table["runs"].tolist() == [2] and table["episodes"].tolist() == [1200]
    assert len(warnings) == 1 and "a.csv:2" in warnings[0] and "b.csv:3" in warnings[0]


def test_runs_trained_with_the_same_seed_are_flagged(tmp_path):
    warnings = []
    table = table_of(tmp_path, [row(), row(checkpoint="runs/b/best.pt")], warn=warnings.append)
    assert table["runs"].tolist() == [2]
    assert len(warnings) == 1 and "same seed 0" in warnings[0]
    warnings.clear()
    table_of(tmp_path / "x", [row(), row(checkpoint="runs/b/best.pt", train_seed=1)],
             warn=warnings.append)
    assert warnings == []


def test_aggregate_out_never_replaces_an_evaluation_csv(tmp_path, capsys):
    csv, other = tmp_path / "r.csv", tmp_path / "other.csv"
    append_row(csv, row())
    append_row(other, row(checkpoint="runs/b/best.pt"))
    before = csv.read_text(), other.read_text()
    assert main(["aggregate", str(csv), "--out", str(csv)]) == 2
    assert "one of the CSVs read" in capsys.readouterr().err
    assert main(["aggregate", str(csv), "--out", str(other), "--format", "csv"]) == 2
    assert "is an evaluation CSV" in capsys.readouterr().err
    assert (csv.read_text(), other.read_text()) == before


def test_a_summary_is_never_read_or_appended_to_as_evaluation_rows(tmp_path, capsys):
    folder = tmp_path / "agg"
    append_row(folder / "eval.csv", row())
    summary = folder / "summary.csv"
    for _ in range(2):
        assert main(["aggregate", str(folder / "*.csv"), "--format", "csv",
                     "--out", str(summary)]) == 0
        table = pd.read_csv(summary)
        assert table["runs"].tolist() == [1] and table["ci95"].tolist() == [0.01]
    assert "summary.csv is a summary written by fewshot aggregate: left out" in (
        capsys.readouterr().err)
    assert main(["aggregate", str(summary)]) == 2
    assert "is a summary written by fewshot aggregate" in capsys.readouterr().err
    with pytest.raises(FewshotError, match="is a summary written by fewshot aggregate"):
        append_row(summary, row())


def test_a_header_without_a_newline_takes_rows(tmp_path):
    csv = tmp_path / "eval.csv"
    csv.write_text("algorithm,accuracy_mean")
    append_row(csv, row())
    rows = read_results([csv])
    assert rows["accuracy_mean"].tolist() == [0.9] and list(rows.columns)[:2] == [
        "algorithm", "accuracy_mean"]


def test_appending_leaves_no_lock_file(tmp_path):
    append_row(tmp_path / "eval.csv", row())
    assert [p.name for p in tmp_path.iterdir()] == ["eval.csv"]


def test_rows_of_older_csvs_still_aggregate(tmp_path):
    csv = tmp_path / "old.csv"
    csv.write_text("algorithm,split,test_ways,test_shots,bn_mode,accuracy_mean,ci95,checkpoint,"
                   "seed,train_seed,episodes\n"
                   "maml,random,5,1,batch,0.9,0.01,runs/a/best.pt,0,0,600\n")
    rows = read_results([csv])
    assert rows["dataset"].tolist() == ["omniglot"] and rows["lr"].tolist() == [""]
    assert aggregate(rows)["runs"].tolist() == [1]


def test_a_protonet_training_is_validated_alike_whichever_cells_are_asked(tmp_path):
    from fewshot_cli.run.budgets import get_budget
    from fewshot_cli.run.grid import plan_trainings

    budget = get_budget("cpu")
    alone = plan_trainings(tmp_path, budget, ["protonet"], ["20w1s"])
    grid = plan_trainings(tmp_path, budget, ["protonet"], None)
    assert alone[0].name == grid[0].name == "protonet-60w1s"
    assert alone[0].config == grid[0].config and alone[0].config.test_ways == 5
