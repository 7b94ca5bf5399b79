"""The reproduction grid on the tiny data: cells, the CSV, skipping done cells, resuming."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.papers import PUBLISHED, BudgetSettings
from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.comparison import comparison, format_comparison
from fewshot_cli.run.budgets import BUDGETS, GRID, Budget
from fewshot_cli.run.grid import parse_cell, plan_cells, plan_trainings, training_for
from fewshot_cli.run.reproduce import reproduce
from fewshot_cli.run.results import append_row

# Seconds on the tiny data. Its lake split validates on a 3-character alphabet, hence 3 ways.
TINY = Budget("tiny", ("3w1s",), {
    "maml": BudgetSettings(2, 4, {"meta_batch": 2, "first_order": True}),
    "protonet": BudgetSettings(3, 5, {"ways": 5}),
}, val_every=2, val_episodes=2)


def with_maml_iterations(iterations):
    maml = dataclasses.replace(TINY.algorithms["maml"], iterations=iterations)
    return dataclasses.replace(TINY, algorithms={**TINY.algorithms, "maml": maml})


def run(out, data, lines=None, **options):
    options = {"budget": TINY, "split": "lake", "data": data, "device": "cpu",
               "progress": False, **options}
    return comparison(reproduce(
        out, echo=(lines.append if lines is not None else lambda line: None), **options))


def read_rows(out):
    return pd.read_csv(out / "eval.csv")


def test_trains_and_tests_every_cell_into_one_csv(tmp_path, tiny_data):
    lines = []
    table = run(tmp_path, tiny_data, lines)
    rows = read_rows(tmp_path)
    assert sorted(rows["algorithm"]) == ["maml", "protonet"]
    assert set(rows["test_ways"]) == {3} and set(rows["test_shots"]) == {1}
    by_algorithm = rows.set_index("algorithm")
    assert by_algorithm.loc["maml", "episodes"] == TINY.algorithms["maml"].test_episodes
    assert by_algorithm.loc["protonet", "episodes"] == TINY.algorithms["protonet"].test_episodes
    assert by_algorithm.loc["maml", "order"] == "first"
    assert by_algorithm.loc["maml", "train_iterations"] == TINY.algorithms["maml"].iterations
    assert by_algorithm.loc["protonet", "train_ways"] == TINY.algorithms["protonet"].options["ways"]
    assert (tmp_path / "runs" / "maml-3w1s" / "last.pt").is_file()
    assert (tmp_path / "runs" / "protonet-5w1s" / "best.pt").is_file()
    assert any(line.startswith("[1/2] maml 3-way 1-shot: training") for line in lines)
    assert any(line.startswith("[2/2] protonet 3-way 1-shot: testing") for line in lines)
    # The returned comparison holds what the CSV holds; 3-way has no published number.
    assert sorted(table["algorithm"]) == ["maml", "protonet"]
    merged = table.set_index("algorithm")["accuracy_mean"]
    assert merged["maml"] == pytest.approx(by_algorithm.loc["maml", "accuracy_mean"])
    assert table["published"].isna().all()


def test_second_call_skips_done_cells(tmp_path, tiny_data):
    run(tmp_path, tiny_data)
    checkpoint = tmp_path / "runs" / "maml-3w1s" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    lines = []
    # No data given and none to be found: a call with nothing left to do must not need any.
    table = run(tmp_path, None, lines, data_root=tmp_path / "nowhere")
    assert len(read_rows(tmp_path)) == 2
    assert checkpoint.stat().st_mtime_ns == stamp
    assert len([line for line in lines if line.endswith("skipped")]) == 2
    assert len(table) == 2


def test_protonet_model_serves_cells_of_the_same_shots(tmp_path, tiny_data):
    lines = []
    run(tmp_path, tiny_data, lines, algorithms=["protonet"], cells=["3w1s", "4w1s"])
    rows = read_rows(tmp_path)
    assert sorted(rows["test_ways"]) == [3, 4]
    assert set(rows["run_id"]) == {"protonet-5w1s"}
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["protonet-5w1s"]
    assert any("already trained" in line for line in lines)


def test_interrupted_training_resumes(tmp_path, tiny_data):
    from fewshot_cli.run.training import TrainingInterrupted, train

    budget = with_maml_iterations(4)
    cell = plan_cells(budget, ["maml"])[0]
    name, config = training_for(cell, budget, "lake", val_ways=3)
    config.device = "cpu"
    with pytest.raises(TrainingInterrupted):
        train(config, tmp_path / "runs" / name, data=tiny_data, progress=False, stop_after=1)
    lines = []
    run(tmp_path, tiny_data, lines, budget=budget, algorithms=["maml"])
    assert any("resuming at 1" in line for line in lines)
    log = pd.read_csv(tmp_path / "runs" / name / "log.csv")
    assert log["iteration"].max() == 4
    assert read_rows(tmp_path)["train_iterations"].tolist() == [4]


def test_run_dir_of_another_budget_is_refused(tmp_path, tiny_data):
    run(tmp_path, tiny_data, algorithms=["maml"])
    longer = with_maml_iterations(3)
    with pytest.raises(FewshotError, match="iterations=2, not 3"):
        run(tmp_path, tiny_data, budget=longer, algorithms=["maml"])


def test_comparison_beside_published_numbers(tmp_path):
    csv_path = tmp_path / "eval.csv"
    for accuracy in (0.95, 0.97):
        append_row(csv_path, {"algorithm": "maml", "order": "first", "split": "random",
                              "test_ways": 5, "test_shots": 1, "accuracy_mean": accuracy,
                              "ci95": 0.01, "episodes": 600})
    append_row(csv_path, {"algorithm": "protonet", "split": "vinyals", "test_ways": 20,
                          "test_shots": 5, "accuracy_mean": 0.99, "ci95": 0.002, "episodes": 1000})
    table = comparison(csv_path)
    maml = table.set_index("algorithm").loc["maml"]
    assert maml["runs"] == 2 and maml["published"] == PUBLISHED[("maml", 5, 1)]
    assert maml["difference"] == pytest.approx(96.0 - PUBLISHED[("maml", 5, 1)])
    text = format_comparison(table)
    assert f"{96.0 - PUBLISHED[('maml', 5, 1)]:+.2f}" in text
    assert f"{PUBLISHED[('protonet', 20, 5)]:.1f}" in text and "20w5s" in text
    assert "Finn" in text and "Snell" in text
    assert format_comparison(table, "markdown").startswith("| algorithm |")


def test_cells_and_budgets():
    assert parse_cell("20w5s") == (20, 5) and parse_cell(" 5W1S ") == (5, 1)
    for bad in ("5x1", "1w1s", "w1s", "5w0s"):
        with pytest.raises(FewshotError, match="bad cell"):
            parse_cell(bad)
    paper = plan_cells(BUDGETS["paper"])
    assert {(c.algorithm, c.name) for c in paper} == {(a, g) for a in registry.NAMES for g in GRID}
    assert set(BUDGETS["quick"].cells) <= set(GRID)
    assert [c.name for c in plan_cells(BUDGETS["cpu"], ["maml"], ["20w1s"])] == ["20w1s"]
    with pytest.raises(FewshotError, match="unknown algorithm"):
        plan_cells(BUDGETS["cpu"], ["matching"])
    with pytest.raises(FewshotError, match="budget 'tiny' has no settings for protonet"):
        plan_cells(dataclasses.replace(TINY, algorithms={"maml": TINY.algorithms["maml"]}),
                   ["protonet"])


def test_budgets_keep_their_settings():
    # MAML's quick and cpu budgets use the vmap engine; paper keeps its lengths.
    cpu, quick, paper = BUDGETS["cpu"], BUDGETS["quick"], BUDGETS["paper"]
    assert cpu.algorithms["maml"].options["engine"] == quick.algorithms["maml"].options["engine"] == "vmap"
    # ProtoNet's fixed 60-way training: one run per shot count serves its 5- and 20-way cells.
    trainings = {cell.name: training_for(cell, cpu, "vinyals", 5)
                 for cell in plan_cells(cpu, ["protonet"])}
    assert trainings["5w1s"] == trainings["20w1s"] and trainings["5w5s"] == trainings["20w5s"]
    assert [trainings[c][0] for c in ("5w1s", "5w5s")] == ["protonet-60w1s", "protonet-60w5s"]
    assert (quick.algorithms["maml"].iterations, quick.algorithms["protonet"].options) == (600, {"ways": 60})
    assert (paper.algorithms["maml"].iterations, paper.algorithms["protonet"].iterations) == (60000, 20000)
    # Per-cell iterations reach each cell's training.
    maml_cpu = cpu.algorithms["maml"]
    for cell in plan_cells(cpu, ["maml"]):
        config = training_for(cell, cpu, "random", 5)[1]
        assert config.iterations == maml_cpu.iterations_for(cell.ways, cell.shots)
        options = maml_cpu.options_for(cell.ways, cell.shots)
        resolved = config.resolved()
        assert resolved.engine == options["engine"] and resolved.first_order == options["first_order"]
        # Training queries are the paper's (= shots) unless the cell sets its own.
        assert resolved.queries == options.get("queries", cell.shots)
        assert resolved.lr_halve_every == options.get("lr_halve_every", 0)
    engines = {cell: maml_cpu.options_for(*cell)["engine"] for cell in [(5, 1), (5, 5), (20, 1), (20, 5)]}
    assert engines == {(5, 1): "vmap", (5, 5): "l2l", (20, 1): "l2l", (20, 5): "l2l"}
    assert [maml_cpu.options_for(w, 1).get("queries") for w in (5, 20)] == [5, 5]
    name, config = training_for(plan_cells(cpu, ["protonet"], ["20w5s"])[0], cpu, "vinyals", 5)
    assert name == "protonet-60w5s" and (config.ways, config.test_ways) == (60, 5)
    name, config = training_for(plan_cells(cpu, ["maml"], ["20w5s"])[0], cpu, "random", 5)
    assert name == "maml-20w5s" and (config.ways, config.meta_batch, config.lr) == (20, 16, 1e-3)
    assert (config.first_order, config.resolved().lr_halve_every, config.resolved().queries) == (False, 0, 5)
    assert config.resolved().test_ways == 20
    # The 20-way cells adapt as the 5-way ones (one step at 0.4, three at test), not as the paper.
    for cell in plan_cells(cpu, ["maml"], ["20w1s", "20w5s"]):
        resolved = training_for(cell, cpu, "random", 5)[1].resolved()
        assert (resolved.inner_lr, resolved.inner_steps, resolved.test_inner_steps) == (0.4, 1, 3)
    assert training_for(plan_cells(paper, ["maml"], ["20w1s"])[0], paper, "random", 5)[1].resolved().inner_steps == 5
    # MAML's 5w1s cell trains first; the others start from its model (same seed).
    assert maml_cpu.starts_from == {(5, 5): (5, 1), (20, 1): (5, 1), (20, 5): (5, 1)}
    trainings = plan_trainings(Path("grid"), cpu, ["maml"], seeds=[0, 1], csv_paths=[])
    assert [(t.name, t.source) for t in trainings] == [
        ("maml-5w1s", None), ("maml-5w5s", "maml-5w1s"), ("maml-20w1s", "maml-5w1s"),
        ("maml-20w5s", "maml-5w1s"), ("maml-5w1s-seed1", None), ("maml-5w5s-seed1", "maml-5w1s-seed1"),
        ("maml-20w1s-seed1", "maml-5w1s-seed1"), ("maml-20w5s-seed1", "maml-5w1s-seed1")]
    assert trainings[-1].config.init_from == str(Path("grid/runs/maml-5w1s-seed1"))
    config = training_for(plan_cells(quick, ["maml"])[0], quick, "random", 5)[1]
    assert (config.resolved().queries, config.first_order) == (5, False)


def test_cli_bad_cell_is_a_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path), "--cells", "5w1s,5x5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad cell '5x5'") and err.count("\n") == 1
    assert not (tmp_path / "eval.csv").exists()


def test_a_row_of_another_split_is_no_done_cell(tmp_path, tiny_data):
    # The tiny random split validates on 2 characters, hence 2 ways.
    run(tmp_path, tiny_data, algorithms=["maml"], cells=["2w1s"])
    lines = []
    with pytest.raises(FewshotError, match="split=lake, not random"):
        run(tmp_path, tiny_data, lines, algorithms=["maml"], cells=["2w1s"], split="random")
    assert not any(line.endswith("skipped") for line in lines)
    assert read_rows(tmp_path)["split"].tolist() == ["lake"]


def test_a_row_of_another_learning_rate_is_no_done_cell(tmp_path, tiny_data):
    # The CSV row does not record the meta learning rate: the run's config.json does.
    run(tmp_path, tiny_data, algorithms=["maml"])
    maml = TINY.algorithms["maml"]
    faster = dataclasses.replace(maml, options={**maml.options, "lr": 0.01})
    other = dataclasses.replace(TINY, algorithms={**TINY.algorithms, "maml": faster})
    with pytest.raises(FewshotError, match="lr=0.001, not 0.01"):
        run(tmp_path, tiny_data, budget=other, algorithms=["maml"])
    assert len(read_rows(tmp_path)) == 1


def test_another_test_protocol_tests_again_without_training(tmp_path, tiny_data):
    run(tmp_path, tiny_data, algorithms=["maml"])
    checkpoint = tmp_path / "runs" / "maml-3w1s" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    lines = []
    longer = dataclasses.replace(TINY.algorithms["maml"], test_episodes=6)
    more = dataclasses.replace(TINY, algorithms={**TINY.algorithms, "maml": longer})
    run(tmp_path, tiny_data, lines, budget=more, algorithms=["maml"])
    assert read_rows(tmp_path)["episodes"].tolist() == [4, 6]
    assert any("already trained" in line for line in lines)
    assert checkpoint.stat().st_mtime_ns == stamp


def test_a_run_kept_without_checkpoints_is_refused_for_another_split(tmp_path, tiny_data):
    # results/ keeps config.json and log.csv of each run, not its checkpoints.
    run(tmp_path, tiny_data, algorithms=["maml"], cells=["2w1s"])
    for checkpoint in (tmp_path / "runs").glob("*/*.pt"):
        checkpoint.unlink()
    with pytest.raises(FewshotError, match="split=lake, not random"):
        run(tmp_path, tiny_data, algorithms=["maml"], cells=["2w1s"], split="random")
    assert not list((tmp_path / "runs").glob("*/*.pt"))


def test_a_run_left_with_best_pt_alone_resumes(tmp_path, tiny_data):
    from fewshot_cli.errors import TrainingInterrupted
    from fewshot_cli.run.training import train

    budget = with_maml_iterations(4)
    training = plan_trainings(tmp_path, budget, ["maml"], None, "lake")[0]
    run_dir = tmp_path / "runs" / training.name
    with pytest.raises(TrainingInterrupted):
        train(dataclasses.replace(training.config, device="cpu"), run_dir, data=tiny_data,
              progress=False, stop_after=2)
    (run_dir / "last.pt").unlink()  # what a kill between a validation's two writes leaves
    lines = []
    run(tmp_path, tiny_data, lines, algorithms=["maml"], budget=budget)
    assert any("resuming at 2" in line for line in lines)
    assert read_rows(tmp_path)["train_iterations"].tolist() == [4]
