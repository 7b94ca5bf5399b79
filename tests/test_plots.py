"""PNG figures: training curves from run logs, accuracy bars from evaluation CSVs."""

import pytest
from PIL import Image

from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.aggregate import aggregate, read_results
from fewshot_cli.report.curves import plot_curves, read_curve
from fewshot_cli.report.plots import (
    accuracy_bars,
    caption,
    colors_of,
    plot_accuracy,
)
from fewshot_cli.run.results import append_row

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_log(run_dir, rows):
    run_dir.mkdir(parents=True)
    lines = ["iteration,train_loss,train_accuracy,val_accuracy,elapsed_seconds"]
    lines += [f"{i},1.0,0.5,{acc},{seconds}" for i, acc, seconds in rows]
    (run_dir / "log.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def assert_png(path, min_width=400):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.width >= min_width and image.height >= 300
        # Something was drawn: not a blank canvas.
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


def test_curves_png_from_run_logs(tmp_path):
    a = write_log(tmp_path / "maml", [(50, 0.4, 30.0), (100, 0.6, 61.5), (150, 0.7, 90.0)])
    b = write_log(tmp_path / "proto", [(250, 0.8, 20.0), (500, 0.9, 41.0)])
    out = plot_curves([a, b], tmp_path / "figures" / "curves.png")
    assert out == tmp_path / "figures" / "curves.png"
    assert_png(out)


def test_read_curve_keeps_validation_rows(tmp_path):
    run_dir = write_log(tmp_path / "run", [(10, 0.5, 1.0), (20, 0.75, 2.0)])
    log = read_curve(run_dir)
    assert log["iteration"].tolist() == [10, 20]
    assert log["val_accuracy"].tolist() == [0.5, 0.75]


def test_curves_of_a_folder_without_log_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["plot", "curves", str(tmp_path / "empty"), "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "no log.csv" in err and err.count("\n") == 1
    write_log(tmp_path / "fresh", [])
    with pytest.raises(FewshotError, match="no validation rows"):
        read_curve(tmp_path / "fresh")


def test_accuracy_bars_beside_published(tmp_path, capsys):
    csv_path = tmp_path / "eval.csv"
    for algorithm, ways, shots, accuracy in [("maml", 5, 1, 0.96), ("maml", 5, 1, 0.97),
                                             ("protonet", 5, 1, 0.98), ("protonet", 20, 5, 0.97),
                                             ("protonet", 3, 1, 0.99)]:
        append_row(csv_path, {"algorithm": algorithm, "order": "first" if algorithm == "maml" else "",
                              "test_ways": ways, "test_shots": shots, "accuracy_mean": accuracy,
                              "ci95": 0.01, "episodes": 100})
    out = tmp_path / "accuracy.png"
    assert main(["plot", "accuracy", str(csv_path), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert_png(out)


def test_accuracy_of_a_non_evaluation_csv_is_an_error(tmp_path):
    bad = tmp_path / "log.csv"
    bad.write_text("iteration,val_accuracy\n1,0.5\n")
    with pytest.raises(FewshotError, match="not an evaluation CSV"):
        plot_accuracy([bad], tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


def grid_rows(tmp_path):
    """A grid whose cells each trained their own way, as MAML's cpu budget does."""
    csv_path = tmp_path / "eval.csv"
    for algorithm, ways, shots, iterations in [("maml", 5, 1, 6000), ("maml", 20, 1, 4200),
                                               ("protonet", 5, 1, 1500), ("protonet", 20, 1, 1500)]:
        append_row(csv_path, {"algorithm": algorithm, "order": "second" if algorithm == "maml"
                              else "", "train_ways": ways if algorithm == "maml" else 60,
                              "train_shots": shots, "train_iterations": iterations,
                              "test_ways": ways, "test_shots": shots, "accuracy_mean": 0.9,
                              "ci95": 0.01, "episodes": 100, "checkpoint": f"{algorithm}{ways}/b.pt"})
    return csv_path


def test_accuracy_legend_has_one_entry_per_algorithm_and_a_caption_per_cell(tmp_path):
    table = aggregate(read_results([grid_rows(tmp_path)]))
    cells, bars, _ = accuracy_bars(table)
    ours = [b for b in bars if not b.paper]
    assert {b.family for b in ours} == {"maml second order", "protonet"}
    assert {b.color for b in ours if b.family == "protonet"} == {colors_of("protonet")["ours"]}
    assert {b.color for b in ours if b.family.startswith("maml")} == {colors_of("maml")["ours"]}
    assert all(b.color == colors_of(b.family)["paper"] for b in bars if b.paper)
    notes = caption(cells, bars)
    assert notes == ["maml second order: 5w1s 6000 it; 20w1s 4200 it"]  # ProtoNet: one training


def test_two_bars_of_one_algorithm_in_a_cell_are_told_apart(tmp_path):
    csv_path = grid_rows(tmp_path)
    append_row(csv_path, {"algorithm": "maml", "order": "first", "train_ways": 5, "train_shots": 1,
                          "train_iterations": 6000, "test_ways": 5, "test_shots": 1,
                          "accuracy_mean": 0.8, "ci95": 0.01, "checkpoint": "fo/b.pt"})
    append_row(csv_path, {"algorithm": "protonet", "train_ways": 60, "train_shots": 1,
                          "train_iterations": 300, "test_ways": 5, "test_shots": 1,
                          "accuracy_mean": 0.8, "ci95": 0.01, "checkpoint": "short/b.pt"})
    cells, bars, _ = accuracy_bars(aggregate(read_results([csv_path])))
    proto = [b for b in bars if b.family == "protonet" and not b.paper and b.cell == 0]
    assert sorted(b.tag for b in proto) == ["a", "b"]
    first = [b for b in bars if b.family == "maml first order"]
    assert first and first[0].color == colors_of("maml")["first"]
    assert any(line.startswith("protonet: 5w1s a ") and "; 5w1s b " in line
               for line in caption(cells, bars))
    out = tmp_path / "a.png"
    plot_accuracy([csv_path], out)
    assert_png(out)
