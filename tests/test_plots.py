"""PNG figures: training curves from run logs, accuracy bars from evaluation CSVs."""

import pytest
from PIL import Image

from fewshot_cli.algorithms import registry
from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.plots import (
    colors_of,
    plot_accuracy,
    plot_curves,
    protocol_colors,
    read_curve,
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


def test_each_algorithm_keeps_its_own_colour_whatever_the_row_order():
    # The bars once took palette colours in legend order, so MAML could be drawn in ProtoNet's red.
    records = [{"algorithm": "protonet"}, {"algorithm": "anil"}, {"algorithm": "maml", "order": "second"},
               {"algorithm": "maml", "order": "first"}, {"algorithm": "maml", "order": "second"}]
    labels = ["protonet", "anil", "maml 2nd a", "maml 1st", "maml 2nd b"]
    colors = protocol_colors(labels, records)
    assert colors["protonet"] == colors_of("protonet")["ours"] and colors["anil"] == colors_of("anil")["ours"]
    assert colors["maml 2nd a"] == colors_of("maml")["ours"] and colors["maml 1st"] == colors_of("maml")["first"]
    assert colors["maml 2nd b"] not in {c for a in registry.NAMES for c in colors_of(a).values()}
    assert len(set(colors.values())) == len(labels)


def test_an_algorithm_trained_per_cell_keeps_one_colour():
    # A grid whose cells each train their own way (MAML's cpu budget): one hue per algorithm.
    records = [{"algorithm": "maml", "test_ways": w, "test_shots": 1} for w in (5, 20)]
    records += [{"algorithm": "protonet", "test_ways": w, "test_shots": 1} for w in (5, 20)]
    colors = protocol_colors(["maml 5w", "maml 20w", "proto 5w", "proto 20w"], records)
    assert colors["maml 5w"] == colors["maml 20w"] == colors_of("maml")["ours"]
    assert colors["proto 5w"] == colors["proto 20w"] == colors_of("protonet")["ours"]
