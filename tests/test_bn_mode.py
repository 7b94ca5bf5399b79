"""BatchNorm running statistics are used at test only where they are sound (issue 14 item 4)."""

import pytest
import torch

from fewshot_cli.algorithms import maml, protonet
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate_run, resolve_bn_mode, running_statistics_problem
from fewshot_cli.run.training import train


def without_running_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with BatchNorm as in MAML's reference code: batch statistics only."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
    return model


@pytest.fixture(scope="module")
def maml_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("maml")
    train(TrainConfig("maml", ways=5, queries=2, test_ways=3, test_queries=2, iterations=2,
                      val_every=2, val_episodes=2, meta_batch=2, first_order=True, device="cpu"),
          run, data=tiny_data, progress=False)
    return run


def test_maml_running_mode_is_refused_in_one_line(maml_run, tiny_data):
    with pytest.raises(FewshotError, match="running does not apply.*keeps no BatchNorm.*--bn-mode batch"):
        evaluate_run(maml_run, episodes=2, bn_mode="running", data=tiny_data)
    _, row = evaluate_run(maml_run, episodes=2, data=tiny_data)
    assert row["bn_mode"] == "batch"


def test_a_model_without_running_statistics_refuses_running_and_auto_is_batch():
    model = without_running_statistics(protonet.build_model())
    assert running_statistics_problem("protonet", model) == "this model keeps no BatchNorm running statistics"
    with pytest.raises(FewshotError, match="keeps no BatchNorm running statistics"):
        resolve_bn_mode("protonet", "running", model)
    assert resolve_bn_mode("protonet", "auto", model) == "batch"
    assert resolve_bn_mode("maml", "batch", without_running_statistics(maml.build_model(5))) == "batch"


def test_protonet_keeps_its_running_mode():
    model = protonet.build_model()
    assert running_statistics_problem("protonet", model) is None
    assert resolve_bn_mode("protonet", "running", model) == "running"
    assert resolve_bn_mode("protonet", "auto", model) == "running"
