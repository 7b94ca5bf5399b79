"""Shipped models: packaged from a run, checked against their manifest, usable wherever a run is,
and exportable as a plain TorchScript network."""

import pytest
import torch

from fewshot_cli.errors import FewshotError
from fewshot_cli.run import pretrained
from fewshot_cli.run.checkpoint import load_trained
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate_run
from fewshot_cli.run.export import export
from fewshot_cli.run.shipping import ship
from fewshot_cli.run.training import train

TINY = dict(ways=3, queries=2, iterations=2, test_ways=3, test_queries=2, val_every=2,
            val_episodes=2, device="cpu")


@pytest.fixture
def shipped(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_PRETRAINED", str(tmp_path / "shipped"))
    run = tmp_path / "proto"
    train(TrainConfig("protonet", **TINY), run, data=tiny_data, progress=False)
    _, row = evaluate_run(run, None, episodes=6, data=tiny_data)
    return ship(run, "proto-tiny", row, "fewshot train protonet ..."), row


def test_a_shipped_model_evaluates_as_its_run_did(shipped, tiny_data):
    entry, row = shipped
    assert entry["accuracy"] == pytest.approx(float(row["accuracy_mean"]))
    assert entry["protocol"]["train_ways"] == "3" and entry["command"].startswith("fewshot")
    weights = pretrained.folder() / "proto-tiny" / "best.pt"
    assert set(torch.load(weights, weights_only=True)) <= {"model", "algorithm", "iteration",
                                                           "best_val"}  # no optimizer state
    _, again = evaluate_run("pretrained:proto-tiny", None, episodes=6, data=tiny_data)
    assert again["accuracy_mean"] == row["accuracy_mean"] and again["run_id"] == "proto-tiny"


def test_a_changed_model_or_an_unknown_name_is_refused(shipped):
    with pytest.raises(FewshotError, match="no shipped model 'nope'.*proto-tiny"):
        pretrained.locate("pretrained:nope")
    weights = pretrained.folder() / "proto-tiny" / "best.pt"
    changed = bytearray(weights.read_bytes())
    changed[len(changed) // 2] ^= 0xFF
    weights.write_bytes(bytes(changed))
    with pytest.raises(FewshotError, match="does not match its manifest"):
        pretrained.locate("pretrained:proto-tiny")


@pytest.mark.parametrize("algorithm", ["protonet", "maml", "metasgd"])
def test_the_exported_network_computes_what_the_checkpoint_does(algorithm, tiny_data, tmp_path):
    run = tmp_path / algorithm
    extra = {} if algorithm == "protonet" else dict(meta_batch=2, first_order=True)
    train(TrainConfig(algorithm, **TINY, **extra), run, data=tiny_data, progress=False)
    out = export(run, tmp_path / "net.pt2")
    images = tiny_data.images[:7].float().div(255).unsqueeze(1)
    _, model, _ = load_trained(run)
    network = getattr(model, "module", model)
    network.train(algorithm != "protonet")
    with torch.no_grad():
        exported = torch.export.load(out).module()
        assert torch.allclose(exported(images), network(images), atol=1e-5)


def test_export_refuses_other_files(tmp_path, shipped):
    with pytest.raises(FewshotError, match=".pt2 or .onnx"):
        export("pretrained:proto-tiny", tmp_path / "net.zip")


def test_every_model_that_ships_matches_its_manifest(real_data):
    """On the first episodes of its test: within three of those episodes' CIs of the manifest."""
    if not pretrained.manifest():
        pytest.skip("no model ships with this version")
    for entry in pretrained.manifest():
        run = pretrained.locate(f"pretrained:{entry['name']}")
        ways, shots = (int(x.split("-")[0]) for x in entry["test"].split())
        result, _ = evaluate_run(run, None, ways=ways, shots=shots, episodes=40, data=real_data)
        assert abs(result.mean - entry["accuracy"]) < max(3 * result.ci95, 0.01), entry["name"]
