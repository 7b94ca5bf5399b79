"""The training options for GPUs: --cuda-graph (a captured step) and --precision (fp32, tf32),
and the training episodes built on the run's device. On a CPU: refusals, what is recorded, old
runs that resume, and the very same weights as the per-episode path."""

import csv
import json

import pandas as pd
import pytest
import torch

from fewshot_cli.data.batches import DeviceEpisodes
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import protocol, training
from fewshot_cli.run.checkpoint import load_checkpoint
from fewshot_cli.run.config import RESUME_MAY_CHANGE, TrainConfig
from fewshot_cli.run.evaluation import evaluate_run
from fewshot_cli.run.training import TrainingInterrupted, preflight, train

TINY = dict(ways=3, queries=2, test_ways=3, test_queries=2, val_every=2, val_episodes=2,
            device="cpu")


def tiny_train(name, run, data, iterations=3, resume=False, **options):
    config = TrainConfig(name, iterations=iterations, **({} if resume else {**TINY, **options}))
    return train(config, run, resume=resume, data=data, progress=False)


@pytest.mark.parametrize("field,value,option", [("cuda_graph", "maybe", "--cuda-graph"),
                                                ("precision", "fp16", "precision")])
def test_unknown_values_are_refused_in_one_line(field, value, option):
    with pytest.raises(FewshotError) as info:
        TrainConfig("maml", **{field: value}).resolved()
    message = str(info.value)
    assert "\n" not in message and f"unknown {option} '{value}'" in message


def test_cuda_graph_on_is_refused_on_a_cpu_before_anything_is_written(tiny_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FewshotError) as info:
        tiny_train("maml", run, tiny_data, engine="vmap", cuda_graph="on")
    message = str(info.value)
    assert "\n" not in message and "--cuda-graph on does not apply" in message
    assert "CUDA device" in message
    assert not run.exists()


def test_cuda_graph_on_is_refused_by_preflight_before_the_data_loads(tmp_path):
    # No data where data_root points: the refusal must come first.
    config = TrainConfig("maml", engine="vmap", cuda_graph="on", device="cpu",
                         data_root=str(tmp_path / "no-data"))
    with pytest.raises(FewshotError, match="--cuda-graph on does not apply"):
        preflight(config, tmp_path / "run", world=2)
    assert not (tmp_path / "run").exists()


def test_cuda_graph_auto_and_off_train_on_a_cpu_as_before(tiny_data, tmp_path):
    for mode in ("auto", "off"):
        tiny_train("maml", tmp_path / mode, tiny_data, iterations=2, engine="vmap",
                   cuda_graph=mode)
    a, b = (load_checkpoint(tmp_path / m / "last.pt")["model"] for m in ("auto", "off"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "off" / "config.json").read_text())["cuda_graph"] == "off"


def test_precision_is_recorded_in_config_json_and_every_evaluation_row(tiny_data, tmp_path):
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    run = tmp_path / "run"
    tiny_train("protonet", run, tiny_data, iterations=2, precision="tf32")
    # The run gives the process's flags back when it ends.
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert json.loads((run / "config.json").read_text())["precision"] == "tf32"
    results = tmp_path / "eval.csv"
    _, row = evaluate_run(run, results, episodes=2, data=tiny_data, device="cpu")
    assert row["precision"] == "tf32"
    with results.open() as handle:
        assert [r["precision"] for r in csv.DictReader(handle)] == ["tf32"]
    assert protocol.BY_NAME["precision"].kind == protocol.PROTOCOL
    assert "cuda_graph" in protocol.INCIDENTAL and "cuda_graph" in RESUME_MAY_CHANGE


def test_rows_of_an_older_csv_read_an_empty_precision():
    rows = protocol.fill_legacy(pd.DataFrame({"algorithm": ["maml"], "accuracy_mean": [0.9]}))
    assert rows["precision"].tolist() == [""]


def test_a_run_whose_config_json_predates_the_options_resumes(tiny_data, tmp_path):
    run, whole = tmp_path / "run", tmp_path / "whole"
    tiny_train("protonet", whole, tiny_data, iterations=4)
    with pytest.raises(TrainingInterrupted):
        config = TrainConfig("protonet", iterations=4, **TINY)
        train(config, run, data=tiny_data, progress=False, stop_after=2)
    stored = json.loads((run / "config.json").read_text())
    del stored["cuda_graph"], stored["precision"]
    (run / "config.json").write_text(json.dumps(stored))
    tiny_train("protonet", run, tiny_data, iterations=4, resume=True)
    resumed = json.loads((run / "config.json").read_text())
    assert (resumed["cuda_graph"], resumed["precision"]) == ("auto", "fp32")
    a, b = (load_checkpoint(r / "last.pt")["model"] for r in (run, whole))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,options", [
    ("protonet", {}),
    ("maml", {"meta_batch": 2}),
    ("maml", {"meta_batch": 2, "engine": "vmap", "rotations": True}),
])
def test_episodes_built_on_the_device_train_the_same_weights(name, options, tiny_data, tmp_path,
                                                             monkeypatch):
    made, real = [], training.device_batches
    monkeypatch.setattr(training, "device_batches",
                        lambda sampler, device: made.append(real(sampler, device)) or made[-1])
    tiny_train(name, tmp_path / "device", tiny_data, iterations=4, **options)
    assert [type(m) for m in made] == [DeviceEpisodes]
    # The per-episode path: the sampler itself, each episode built on the host.
    monkeypatch.setattr(training, "device_batches", lambda sampler, device: sampler)
    tiny_train(name, tmp_path / "host", tiny_data, iterations=4, **options)
    device, host = (load_checkpoint(tmp_path / r / "last.pt") for r in ("device", "host"))
    for key, value in host["model"].items():
        assert torch.equal(device["model"][key], value), key
    assert device["best_val"] == host["best_val"]
    logs = [(tmp_path / r / "iterations.csv").read_text().splitlines() for r in ("device", "host")]
    assert [line.rsplit(",", 1)[0] for line in logs[0]] == \
        [line.rsplit(",", 1)[0] for line in logs[1]]  # the same losses, all but the seconds
