"""Training and evaluation end to end: run directories, CSV rows, resume, and real learning."""

import csv
import json

import pytest
import torch

from fewshot_cli.cli import main
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import load_checkpoint, load_trained
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate, evaluate_run
from fewshot_cli.run.results import COLUMNS
from fewshot_cli.run.training import train

TINY = dict(ways=5, queries=3, test_ways=3, test_queries=3, val_every=3, val_episodes=4)


@pytest.fixture(scope="module")
def proto_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("proto")
    train(TrainConfig("protonet", iterations=6, **TINY), run, data=tiny_data, progress=False)
    return run


@pytest.fixture(scope="module")
def maml_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("maml")
    train(TrainConfig("maml", iterations=4, meta_batch=2, first_order=True, **TINY), run,
          data=tiny_data, progress=False)
    return run


def test_config_defaults_follow_the_papers():
    proto = TrainConfig("protonet").resolved()
    assert (proto.ways, proto.queries, proto.test_ways, proto.lr, proto.lr_halve_every) == (60, 5, 5, 1e-3, 2000)
    maml5 = TrainConfig("maml").resolved()
    assert (maml5.inner_lr, maml5.inner_steps, maml5.test_inner_steps, maml5.meta_batch) == (0.4, 1, 3, 32)
    maml20 = TrainConfig("maml", ways=20).resolved()
    assert (maml20.inner_lr, maml20.inner_steps, maml20.meta_batch, maml20.test_ways) == (0.1, 5, 16, 20)
    assert TrainConfig("maml", inner_lr=0.2).resolved().inner_lr == 0.2


@pytest.mark.parametrize("run_fixture", ["proto_run", "maml_run"])
def test_run_directory_contents(run_fixture, request):
    run = request.getfixturevalue(run_fixture)
    assert {p.name for p in run.iterdir()} >= {"config.json", "best.pt", "last.pt", "log.csv"}
    config = json.loads((run / "config.json").read_text())
    assert config["algorithm"] in ("protonet", "maml") and config["ways"] == 5
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["iteration"] for r in rows] == (["3", "6"] if config["algorithm"] == "protonet" else ["3", "4"])
    assert set(rows[0]) == {"iteration", "train_loss", "train_accuracy", "val_accuracy", "elapsed_seconds"}
    assert load_checkpoint(run / "last.pt")["iteration"] == int(rows[-1]["iteration"])
    best = max(float(r["val_accuracy"]) for r in rows)
    assert load_checkpoint(run / "best.pt")["best_val"] == pytest.approx(best, abs=1e-5)


def test_evaluation_leaves_the_model_unchanged(maml_run, tiny_data):
    config, model, _ = load_trained(maml_run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "test"), 5, 1, 3)
    evaluate(config.resolved(), model, sampler, episodes=3, bn_mode="batch", steps=2)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm buffers included


def test_same_seed_same_result_and_bn_modes_differ(proto_run, tiny_data):
    a, _ = evaluate_run(proto_run, episodes=10, seed=5, data=tiny_data)
    b, _ = evaluate_run(proto_run, episodes=10, seed=5, data=tiny_data)
    assert a.accuracies == b.accuracies
    batch, row = evaluate_run(proto_run, episodes=10, seed=5, bn_mode="batch", data=tiny_data)
    assert row["bn_mode"] == "batch" and batch.accuracies != a.accuracies


def test_eval_appends_rows_with_every_column(proto_run, maml_run, tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    out = tmp_path / "eval.csv"
    assert main(["eval", str(proto_run), "--csv", str(out), "--episodes", "5", "--quiet"]) == 0
    assert main(["eval", str(maml_run / "last.pt"), "--csv", str(out), "--episodes", "6",
                 "--ways", "4", "--bn-mode", "batch", "--quiet"]) == 0
    assert "± " in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 and list(rows[0]) == COLUMNS
    proto, maml_row = rows
    assert (proto["algorithm"], proto["bn_mode"], proto["test_ways"], proto["episodes"]) == ("protonet", "running", "3", "5")
    assert (maml_row["order"], maml_row["test_ways"], maml_row["bn_mode"], maml_row["inner_steps_test"]) == ("first", "4", "batch", "3")
    assert (maml_row["engine"], maml_row["backbone"], proto["engine"], proto["backbone"]) == ("l2l", "conv4-strided", "", "conv4")
    assert maml_row["checkpoint"].endswith("last.pt") and proto["checkpoint"].endswith("best.pt")
    assert maml_row["checkpoint_iteration"] == "4" and proto["checkpoint_iteration"] in ("3", "6")
    assert 0 <= float(proto["accuracy_mean"]) <= 1 and float(proto["ci95"]) >= 0


def test_resume_extends_a_finished_run(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig("protonet", iterations=3, **TINY), run, data=tiny_data, progress=False)
    result = train(TrainConfig("protonet", iterations=6), run, resume=True, data=tiny_data, progress=False)
    assert result.iterations == 6
    assert [r["iteration"] for r in csv.DictReader((run / "log.csv").open())] == ["3", "6"]
    assert load_checkpoint(run / "last.pt")["iteration"] == 6


def test_time_limit_ends_the_run_early(tiny_data, tmp_path):
    result = train(TrainConfig("protonet", iterations=1000, **TINY), tmp_path / "r", data=tiny_data,
                   progress=False, max_seconds=0.0)
    assert result.iterations == 1
    assert load_checkpoint(tmp_path / "r" / "last.pt")["iteration"] == 1


def test_cli_train_on_tiny_data(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    code = main(["train", "protonet", "--out", str(tmp_path / "r"), "--ways", "4", "--queries", "2",
                 "--iterations", "2", "--val-every", "2", "--val-episodes", "2", "--test-ways", "3", "--quiet"])
    assert code == 0
    assert "done: 2 iterations" in capsys.readouterr().out


# Learning must really happen: short trainings on the real data, far above the 20% of chance.

@pytest.mark.integration
def test_protonet_learns_omniglot(real_data, tmp_path):
    config = TrainConfig("protonet", ways=30, shots=1, queries=5, iterations=120, val_every=120,
                         val_episodes=50)
    train(config, tmp_path / "proto", data=real_data, progress=False)
    result, row = evaluate_run(tmp_path / "proto", episodes=200, data=real_data)
    print(f"ProtoNet 5-way 1-shot after 120 episodes: {result.mean:.2%} ± {result.ci95:.2%}")
    assert row["test_ways"] == 5 and result.mean > 0.85


@pytest.mark.integration
def test_maml_learns_omniglot(real_data, tmp_path):
    # Second order: first-order MAML barely moves in its first few hundred meta-iterations.
    config = TrainConfig("maml", ways=5, shots=1, meta_batch=8, lr=3e-3, iterations=50,
                         val_every=50, val_episodes=20)
    train(config, tmp_path / "maml", data=real_data, progress=False)
    result, _ = evaluate_run(tmp_path / "maml", episodes=200, data=real_data)
    print(f"MAML 5-way 1-shot after 50 meta-iterations: {result.mean:.2%} ± {result.ci95:.2%}")
    assert result.mean > 0.60


def tiny_cli_run(tiny_root, run, monkeypatch, iterations=2):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    assert main(["train", "protonet", "--out", str(run), "--ways", "4", "--queries", "2",
                 "--iterations", str(iterations), "--val-every", "2", "--val-episodes", "2",
                 "--test-ways", "3", "--quiet"]) == 0


@pytest.mark.parametrize("option", [["--lr", "0.01"], ["--ways", "3"], ["--seed", "1"],
                                    ["--split", "vinyals"], ["--first-order"]])
def test_resume_refuses_options_that_change_the_training(option, tiny_root, tmp_path, monkeypatch,
                                                          capsys):
    run = tmp_path / "r"
    tiny_cli_run(tiny_root, run, monkeypatch)
    before = (run / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", "protonet", "--resume", str(run), "--iterations", "4", *option,
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option[0]} cannot change when resuming") and err.count("\n") == 1
    assert (run / "config.json").read_text() == before
    assert load_checkpoint(run / "last.pt")["iteration"] == 2


def test_resume_honours_iterations_device_and_same_values(tiny_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    tiny_cli_run(tiny_root, run, monkeypatch)
    # The run's own values may be repeated; --device and --iterations change.
    assert main(["train", "protonet", "--resume", str(run), "--iterations", "4", "--device", "cpu",
                 "--ways", "4", "--lr", "0.001", "--shots", "1", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["device"], config["iterations"], config["ways"]) == ("cpu", 4, 4)
    assert load_checkpoint(run / "last.pt")["iteration"] == 4
    assert main(["train", "maml", "--resume", str(run), "--quiet"]) == 2
    assert "is a protonet run, not maml" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resume_uses_the_device_given(tiny_root, tiny_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    tiny_cli_run(tiny_root, run, monkeypatch)
    capsys.readouterr()
    assert main(["train", "protonet", "--resume", str(run), "--iterations", "4", "--device", "cuda",
                 "--quiet"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    with pytest.raises(FewshotError, match="no CUDA device"):  # the library too (reproduce)
        train(TrainConfig("protonet", iterations=4, device="cuda"), run, resume=True,
              data=tiny_data, progress=False)


def test_ci95_walks_the_accuracies_a_fixed_number_of_times():
    import statistics

    from fewshot_cli.run.evaluation import EvalResult

    class Counted(list):
        walks = 0

        def __iter__(self):
            Counted.walks += 1
            return super().__iter__()

    values = [(i * 37 % 101) / 100 for i in range(500)]
    result = EvalResult(Counted(values), 0.0)
    ci = result.ci95
    assert Counted.walks <= 3  # the mean inside the loop walked the list once per episode
    assert ci == pytest.approx(1.96 * statistics.stdev(values) / len(values) ** 0.5)


def test_evaluate_run_reads_the_checkpoint_once(proto_run, tiny_data, monkeypatch):
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    _, row = evaluate_run(proto_run, episodes=2, data=tiny_data)
    # best.pt once; last.pt only for how far the run trained.
    assert sorted(str(a[0].name) for a in loads) == ["best.pt", "last.pt"]
    assert row["checkpoint_iteration"] == load_checkpoint(proto_run / "best.pt")["iteration"]


def test_config_json_holds_the_training_fields_only(proto_run):
    import dataclasses

    stored = json.loads((proto_run / "config.json").read_text())
    assert "extra" not in stored  # a field nothing read
    assert set(stored) == {f.name for f in dataclasses.fields(TrainConfig)}
    # A config.json of an older version, with its unused "extra", still loads.
    assert TrainConfig.from_dict({**stored, "extra": {}}).resolved() == TrainConfig.from_dict(stored)


def test_fewer_than_two_ways_are_refused(proto_run, tmp_path, capsys):
    for options in (dict(ways=1), dict(test_ways=1)):
        with pytest.raises(FewshotError, match="ways must be at least 2 .got 1.: with one class"):
            TrainConfig("maml", **options).resolved()
    for args in (["train", "protonet", "--out", str(tmp_path / "r"), "--ways", "1"],
                 ["train", "maml", "--out", str(tmp_path / "r"), "--test-ways", "1"],
                 ["eval", str(proto_run), "--ways", "1", "--episodes", "2"],
                 ["reproduce", "--out", str(tmp_path / "g"), "--cells", "1w1s", "--plan"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "at least 2" in err, err
    assert not (tmp_path / "r").exists()
