"""Starting a training from another run's model (--init-from), alone and in a reproduction."""

import dataclasses

import pandas as pd
import pytest
import torch

from fewshot_cli.algorithms import maml_family
from fewshot_cli.algorithms.base import without_running_stats
from fewshot_cli.algorithms.papers import BudgetSettings
from fewshot_cli.cli import main
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.comparison import comparison
from fewshot_cli.run.budgets import Budget
from fewshot_cli.run.checkpoint import load_checkpoint, start_from
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate_run
from fewshot_cli.run.grid import Training, in_order
from fewshot_cli.run.reproduce import reproduce
from fewshot_cli.run.training import train


def test_start_from_copies_the_body_and_keeps_the_new_head():
    torch.manual_seed(0)
    source = maml_family.network(5, "conv4-strided")
    model = maml_family.network(20, "conv4-strided")
    head = model.head.weight.detach().clone()
    assert start_from(model, source.state_dict()) == ["head.weight", "head.bias"]
    for name, value in source.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(model.state_dict()[name], value), name
    # The new head is the model's own random one, not zeros (which trained far slower).
    assert torch.equal(model.head.weight, head) and head.abs().sum() > 0
    # Same ways: everything is the source's, head included.
    same = maml_family.network(5, "conv4-strided")
    assert start_from(same, source.state_dict()) == []
    assert torch.equal(same.head.weight, source.head.weight)
    # BatchNorm without running statistics has no buffers to take them from.
    with pytest.raises(FewshotError, match="other layers"):
        start_from(without_running_stats(maml_family.network(5)), source.state_dict())


def small(ways, **options):
    settings = dict(iterations=2, meta_batch=2, first_order=True, val_every=2, val_episodes=2,
                    device="cpu")
    return TrainConfig("maml", ways=ways, **{**settings, **options})


def test_a_run_starts_from_the_source_model(tmp_path, tiny_data):
    train(small(3), tmp_path / "source", data=tiny_data, progress=False)
    source = load_checkpoint(tmp_path / "source" / "best.pt")["model"]
    # A learning rate too small to move the weights shows where the run started.
    config = small(2, init_from=str(tmp_path / "source"), lr=1e-12, iterations=1)
    train(config, tmp_path / "started", data=tiny_data, progress=False)
    started = load_checkpoint(tmp_path / "started" / "last.pt")["model"]
    body = [name for name in source if not name.startswith("head.")]
    assert all(torch.allclose(started[n], source[n], atol=1e-9) for n in body)
    assert started["head.weight"].shape == (2, source["head.weight"].shape[1])
    # Without --init-from the same run starts elsewhere.
    train(dataclasses.replace(config, init_from=None), tmp_path / "fresh", data=tiny_data,
          progress=False)
    fresh = load_checkpoint(tmp_path / "fresh" / "last.pt")["model"]
    assert not torch.allclose(fresh[body[0]], source[body[0]])
    # Recorded in config.json and in the evaluation row, by the source run's name.
    assert '"init_from": "' + str(tmp_path / "source") in (tmp_path / "started" / "config.json").read_text()
    _, row = evaluate_run(tmp_path / "started", tmp_path / "eval.csv", episodes=2, data=tiny_data,
                          device="cpu", progress=False)
    _, plain = evaluate_run(tmp_path / "fresh", tmp_path / "eval.csv", episodes=2, data=tiny_data,
                            device="cpu", progress=False)
    rows = pd.read_csv(tmp_path / "eval.csv", keep_default_na=False)
    assert rows["init_from"].tolist() == ["source", ""] == [row["init_from"], plain["init_from"]]


def test_bad_sources_are_one_line_errors(tmp_path, tiny_data, tiny_root, capsys):
    train(small(3), tmp_path / "source", data=tiny_data, progress=False)
    common = ["train", "maml", "--ways", "2", "--iterations", "1", "--data-root", str(tiny_root),
              "--quiet", "--device", "cpu"]
    cases = [
        (["--init-from", str(tmp_path / "nowhere")], "does not exist"),
        (["--init-from", str(tmp_path / "source"), "--backbone", "conv4"],
         "it has backbone=conv4-strided, this run backbone=conv4"),
        (["--init-from", str(tmp_path / "source" / "config.json")], "not a PyTorch checkpoint"),
    ]
    for number, (extra, message) in enumerate(cases):
        out = tmp_path / f"run{number}"
        assert main([*common, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --init-from") and message in err and err.count("\n") == 1
        assert not (out / "last.pt").exists()
    assert main(["train", "protonet", "--iterations", "1", "--data-root", str(tiny_root),
                 "--quiet", "--out", str(tmp_path / "p"), "--init-from",
                 str(tmp_path / "source")]) == 2
    assert "it has algorithm=maml, this run algorithm=protonet" in capsys.readouterr().err


# The tiny lake split validates on a 3-character alphabet: cells of 2 and 3 ways.
def tiny_budget(algorithm: str, **links) -> Budget:
    """2- and 3-way cells of ``algorithm``, the 2-way one linked to the 3-way one by ``links``."""
    settings = BudgetSettings(2, 4, {"meta_batch": 2, "first_order": True}, **links)
    return Budget("tiny", ("3w1s", "2w1s"), {algorithm: settings}, val_every=2, val_episodes=2)


STARTING = tiny_budget("maml", starts_from={(2, 1): (3, 1)})


def run(out, data, lines=None, **options):
    return comparison(reproduce(
        out, budget=STARTING, split="lake", data=data, device="cpu", progress=False,
        echo=(lines.append if lines is not None else lambda line: None), **options))


def test_reproduce_trains_the_source_first(tmp_path, tiny_data):
    lines = []
    run(tmp_path, tiny_data, lines, cells=["2w1s", "3w1s"])  # the dependent cell named first
    trainings = [line.split(": training ")[1].split()[0] for line in lines if ": training " in line]
    assert trainings == [str(tmp_path / "runs" / "maml-3w1s"), str(tmp_path / "runs" / "maml-2w1s")]
    rows = pd.read_csv(tmp_path / "eval.csv", keep_default_na=False).set_index("run_id")
    assert rows.loc["maml-2w1s", "init_from"] == "maml-3w1s"
    assert rows.loc["maml-3w1s", "init_from"] == ""
    # Done cells are recognised again, init_from included.
    lines = []
    run(tmp_path, tiny_data, lines, cells=["2w1s", "3w1s"])
    assert len([line for line in lines if line.endswith("skipped")]) == 2


def test_a_cell_whose_source_is_not_trained_is_refused(tmp_path, tiny_data):
    with pytest.raises(FewshotError, match="maml-2w1s starts from the model of maml-3w1s, "
                                           r"which is not trained .*\(--cells 3w1s\)"):
        run(tmp_path, tiny_data, cells=["2w1s"])
    assert not (tmp_path / "runs").exists()
    # Once the source has finished, the cell alone is fine.
    run(tmp_path, tiny_data, cells=["3w1s"])
    run(tmp_path, tiny_data, cells=["2w1s"])
    assert len(pd.read_csv(tmp_path / "eval.csv")) == 2


# A cell that tests another cell's model trains nothing of its own.
TESTED_WITH = tiny_budget("metasgd", tested_with={(2, 1): (3, 1)})


def test_a_cell_tested_with_another_cells_model_trains_nothing(tmp_path, tiny_data):
    lines = []
    reproduce(tmp_path, budget=TESTED_WITH, split="lake", data=tiny_data, device="cpu",
              progress=False, echo=lines.append, cells=["2w1s", "3w1s"])
    assert [line for line in lines if ": training " in line] == [
        f"[1/2] metasgd 2-way 1-shot: training {tmp_path / 'runs' / 'metasgd-3w1s'} (2 iterations)"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["metasgd-3w1s"]
    rows = pd.read_csv(tmp_path / "eval.csv")
    assert sorted(zip(rows.run_id, rows.train_ways, rows.test_ways)) == [
        ("metasgd-3w1s", 3, 2), ("metasgd-3w1s", 3, 3)]


def test_trainings_that_start_from_each_other_are_refused():
    a, b = Training("a", None, (), source="b"), Training("b", None, (), source="a")
    with pytest.raises(FewshotError, match="start from each other: a, b"):
        in_order([a, b])


def test_a_source_that_is_no_checkpoint_is_named_with_why(tmp_path, tiny_data, tiny_root, capsys):
    train(small(3), tmp_path / "source", data=tiny_data, progress=False)
    (tmp_path / "loose").mkdir()  # no config.json here: the files themselves are to blame
    garbage = tmp_path / "loose" / "garbage.pt"
    garbage.write_text("not a checkpoint\n")
    alone = tmp_path / "loose" / "best.pt"
    alone.write_bytes((tmp_path / "source" / "best.pt").read_bytes())
    for source, message in ((garbage, f"{garbage}: not a PyTorch checkpoint at all"),
                            (alone, f"checkpoint {alone} has no config.json beside it")):
        assert main(["train", "maml", "--ways", "2", "--iterations", "1", "--quiet",
                     "--data-root", str(tiny_root), "--out", str(tmp_path / "run"),
                     "--init-from", str(source)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert "not a run directory" not in err


@pytest.mark.parametrize("inside", ["", "best.pt", "last.pt"])
def test_a_run_cannot_start_from_the_run_it_replaces(inside, tmp_path, tiny_data, tiny_root,
                                                     capsys):
    run = tmp_path / "run"
    train(small(3), run, data=tiny_data, progress=False)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    source = run / inside if inside else run
    assert main(["train", "maml", "--ways", "3", "--iterations", "1", "--quiet", "--data-root",
                 str(tiny_root), "--out", str(run), "--overwrite", "--init-from",
                 str(source)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--init-from {source} is in --out {run}" in err, err
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before
