"""Aggregating evaluation CSVs: groups, combined CI, spread across runs, formats and bad input."""

import csv
import io
import math

import pandas as pd
import pytest

from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.aggregate import aggregate, aggregate_files, read_results
from fewshot_cli.report.tables import format_table, render
from fewshot_cli.run.results import COLUMNS, append_row


def row(algorithm="protonet", ways=5, shots=1, accuracy=0.9, ci=0.01, episodes=600, seed=0,
        order="", split="lake", bn_mode="running", run_id="run"):
    return {"algorithm": algorithm, "order": order, "split": split, "test_ways": ways,
            "test_shots": shots, "bn_mode": bn_mode, "accuracy_mean": accuracy, "ci95": ci,
            "episodes": episodes, "seed": seed, "run_id": run_id}


def write_rows(path, rows):
    for r in rows:
        append_row(path, r)
    return path


@pytest.fixture
def results_csv(tmp_path):
    return write_rows(tmp_path / "eval.csv", [
        row(accuracy=0.90, ci=0.02, run_id="proto-a"),
        row(accuracy=0.94, ci=0.01, run_id="proto-b"),
        row(accuracy=0.80, ci=0.03, ways=20, run_id="proto-a"),
        row("maml", accuracy=0.95, ci=0.015, episodes=100, order="second", bn_mode="batch"),
    ])


def find(table, **where):
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column] == str(value)
    assert mask.sum() == 1, table
    return table[mask].iloc[0]


def test_groups_runs_and_combines_their_ci(results_csv):
    table = aggregate(read_results([results_csv]))
    assert len(table) == 3
    two = find(table, algorithm="protonet", test_ways=5)
    assert two["runs"] == 2
    assert two["accuracy_mean"] == pytest.approx(0.92)
    assert two["ci95"] == pytest.approx(math.sqrt(0.02 ** 2 + 0.01 ** 2) / 2)
    assert two["episodes"] == 1200
    assert two["run_std"] == pytest.approx(pd.Series([0.90, 0.94]).std())
    one = find(table, algorithm="protonet", test_ways=20)
    assert one["runs"] == 1 and one["accuracy_mean"] == pytest.approx(0.80)
    assert one["ci95"] == pytest.approx(0.03)
    assert math.isnan(one["run_std"])  # no spread from a single run
    assert find(table, algorithm="maml")["episodes"] == 100


def test_rows_trained_on_other_query_counts_are_not_averaged(tmp_path):
    # The cpu budget trains MAML 5w1s on 5 queries per class, the paper on 1: two protocols.
    path = write_rows(tmp_path / "e.csv", [dict(row("maml", accuracy=0.9, run_id="a"), train_queries=1),
                                           dict(row("maml", accuracy=0.8, run_id="b"), train_queries=5)])
    table = aggregate(read_results([path]))
    assert len(table) == 2 and find(table, train_queries=5)["accuracy_mean"] == pytest.approx(0.8)


def test_rows_sort_numbers_as_numbers(tmp_path):
    path = write_rows(tmp_path / "e.csv", [row(ways=20), row(ways=5), row(ways=10)])
    assert aggregate(read_results([path]), by=["test_ways"])["test_ways"].tolist() == ["5", "10", "20"]


def test_group_by_chosen_columns_and_globs(tmp_path):
    write_rows(tmp_path / "a.csv", [row(accuracy=0.9, seed=0), row("maml", accuracy=0.7)])
    write_rows(tmp_path / "b.csv", [row(accuracy=0.8, seed=1)])
    table = aggregate(read_results([tmp_path / "*.csv"]), by=["algorithm"])
    assert list(table.columns[:1]) == ["algorithm"]
    assert find(table, algorithm="protonet")["runs"] == 2
    assert find(table, algorithm="protonet")["accuracy_mean"] == pytest.approx(0.85)
    assert find(table, algorithm="maml")["runs"] == 1


def test_same_file_through_two_patterns_counts_once(results_csv):
    rows = read_results([results_csv, results_csv.parent / "*.csv"])
    assert len(rows) == 4


def test_old_csv_with_missing_columns_still_aggregates(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("algorithm,test_ways,test_shots,accuracy_mean\nprotonet,5,1,0.91\nprotonet,5,1,0.93\n")
    new = write_rows(tmp_path / "new.csv", [row(accuracy=0.95)])
    table = aggregate(read_results([old, new]))
    old_group = find(table, bn_mode="")  # missing columns are empty, not a crash
    assert old_group["runs"] == 2 and old_group["accuracy_mean"] == pytest.approx(0.92)
    assert math.isnan(old_group["ci95"]) and math.isnan(old_group["episodes"])
    text = format_table(table, "table")
    assert "92.00" in text and "95.00 ± 1.00" in text


def test_unknown_group_column_is_an_error(results_csv):
    with pytest.raises(FewshotError, match="unknown column 'algoritm'"):
        aggregate(read_results([results_csv]), by=["algoritm"])


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n", "not an evaluation CSV"),
    ("", "empty"),
    ("algorithm,accuracy_mean\nprotonet,high\n", "accuracy_mean 'high'"),
])
def test_bad_file_is_a_one_line_error_naming_it(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert main(["aggregate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and message in err
    assert err.count("\n") == 1


def test_binary_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(bytes(range(256)) * 8)
    assert main(["aggregate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1


def test_no_matching_file_is_an_error(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path / "*.csv")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert main(["aggregate", str(tmp_path / "missing.csv")]) == 2


def test_table_format_aligns_columns(results_csv, capsys):
    assert main(["aggregate", str(results_csv)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["algorithm", "order", "split"]
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 2 + 3 + 1 and lines[-1].startswith("±: 95% CI over the test episodes")
    # Right-aligned numbers: the accuracies line up on their ± sign.
    assert len({line.index("±") for line in lines[2:-1]}) == 1
    assert any("92.00 ± 1.12" in line and "1200" in line and "2.83" in line for line in lines)


def test_markdown_format(results_csv, tmp_path, capsys):
    out = tmp_path / "table.md"
    assert main(["aggregate", str(results_csv), "--by", "algorithm,test_ways",
                 "--format", "markdown", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == ("| algorithm | test_ways | accuracy (%) | runs | episodes | run std (%) "
                        "| seeds CI95 (%) |")
    assert lines[1] == "| :-- | :-- | --: | --: | --: | --: | --: |"
    assert lines[2].startswith("| maml | 5 | 95.00 ± 1.50 | 1 | 100 |")
    assert len(lines) == 7 and lines[-1].startswith("±: 95% CI over the test episodes")


def test_csv_format_is_tidy_and_reads_back(results_csv, capsys):
    assert main(["aggregate", str(results_csv), "--by", "algorithm", "--by", "test_ways",
                 "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == ["algorithm", "test_ways", "accuracy_mean", "ci95", "runs",
                                   "episodes", "run_std", "seeds_ci95"]
    proto5 = table[(table.algorithm == "protonet") & (table.test_ways == 5)].iloc[0]
    assert proto5["accuracy_mean"] == pytest.approx(0.92) and proto5["runs"] == 2
    assert table["run_std"].isna().sum() == 2  # single runs have no spread: empty cells


def test_render_escapes_pipes_in_markdown():
    text = render(["name"], [["a|b"]], "markdown")
    assert "a\\|b" in text.splitlines()[2]


def test_reads_rows_written_by_the_evaluation_header(tmp_path):
    path = tmp_path / "eval.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow({c: "" for c in COLUMNS} | {"algorithm": "maml", "accuracy_mean": "0.5",
                                                     "ci95": "0.1", "episodes": "10"})
    assert "50.00 ± 10.00" in aggregate_files([path])


def test_grouping_by_a_summary_column_is_refused(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("algorithm,accuracy_mean,episodes\nprotonet,0.9,100\n")
    with pytest.raises(FewshotError, match="cannot group by 'episodes'"):
        aggregate_files([path], ["algorithm", "episodes"])


def seeded_row(seed, accuracy, episode_seed=0, ci=0.01, out="grid"):
    """A row as ``eval`` writes it for training seed ``seed`` of one cell."""
    name = "maml-5w1s" if seed == 0 else f"maml-5w1s-seed{seed}"
    return row("maml", order="second", bn_mode="batch", accuracy=accuracy, ci=ci, seed=episode_seed,
               run_id=name) | {"train_seed": seed, "checkpoint": f"{out}/runs/{name}/best.pt"}


def test_runs_are_trainings_and_their_spread_is_across_seeds(tmp_path):
    path = write_rows(tmp_path / "eval.csv", [
        seeded_row(0, 0.90), seeded_row(1, 0.94), seeded_row(2, 0.95),
        # Seed 2 tested again on other episodes: still one training, its mean is 0.96.
        seeded_row(2, 0.97, episode_seed=1),
    ])
    # The same evaluation merged from a second CSV counts once.
    copy = write_rows(tmp_path / "copy.csv", [seeded_row(1, 0.94)])
    group = aggregate(read_results([path, copy])).iloc[0]
    means = pd.Series([0.90, 0.94, 0.96])
    assert group["runs"] == 3
    assert group["accuracy_mean"] == pytest.approx(means.mean())
    assert group["run_std"] == pytest.approx(means.std())
    assert group["seeds_ci95"] == pytest.approx(4.302653 * means.std() / math.sqrt(3))
    assert group["episodes"] == 4 * 600
    # Seed 2's CI is that of its two evaluations' mean; the group's combines the three runs.
    seed2 = math.sqrt(2 * 0.01 ** 2) / 2
    assert group["ci95"] == pytest.approx(math.sqrt(2 * 0.01 ** 2 + seed2 ** 2) / 3)
    # The same directory name in another reproduction folder is another training.
    other = write_rows(tmp_path / "other.csv", [seeded_row(0, 0.80, out="elsewhere")])
    assert aggregate(read_results([path, other])).iloc[0]["runs"] == 4
    text = format_table(aggregate(read_results([path])), "table")
    assert f"{100 * 4.302653 * means.std() / math.sqrt(3):.2f}" in text
