"""BatchNorm at test: running statistics only where they are sound, and the support mode (each
query normalised with the support images alone) in eval."""

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from fewshot_cli.algorithms import maml, maml_family, registry
from fewshot_cli.algorithms.backbone import Conv4
from fewshot_cli.algorithms.base import step_on_episodes
from fewshot_cli.cli import main
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.bn_mode import prepared_copy, resolve_bn_mode, running_statistics_problem
from fewshot_cli.run.checkpoint import load_trained
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import evaluate, evaluate_run
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
    with pytest.raises(FewshotError, match="running does not apply.*keeps no BatchNorm.*--bn-mode support or batch"):
        evaluate_run(maml_run, episodes=2, bn_mode="running", data=tiny_data)
    _, row = evaluate_run(maml_run, episodes=2, data=tiny_data)
    assert row["bn_mode"] == "batch"


def test_a_model_without_running_statistics_refuses_running_and_auto_is_batch():
    model = without_running_statistics(Conv4())
    assert running_statistics_problem("protonet", model) == "this model keeps no BatchNorm running statistics"
    with pytest.raises(FewshotError, match="keeps no BatchNorm running statistics"):
        resolve_bn_mode("protonet", "running", model)
    assert resolve_bn_mode("protonet", "auto", model) == "batch"
    assert resolve_bn_mode("maml", "batch", without_running_statistics(maml_family.network(5))) == "batch"


def test_protonet_keeps_its_running_mode():
    model = Conv4()
    assert running_statistics_problem("protonet", model) is None
    assert resolve_bn_mode("protonet", "running", model) == "running"
    assert resolve_bn_mode("protonet", "auto", model) == "running"


# ---------------------------------------------------------------- the support mode


@pytest.mark.parametrize("name", ["maml", "metasgd", "anil", "protonet"])
def test_predict_auto_is_support_where_eval_auto_is_batch(name):
    own = registry.get(name).bn_mode
    assert resolve_bn_mode(name, "auto") == own  # eval: each paper's
    assert resolve_bn_mode(name, "auto", predicting=True) == ("support" if own == "batch" else own)
    assert resolve_bn_mode(name, "support") == "support"
    assert resolve_bn_mode(name, "batch", predicting=True) == "batch"  # asked for: kept


def test_predict_auto_is_support_for_a_model_without_running_statistics():
    model = without_running_statistics(Conv4())
    assert resolve_bn_mode("protonet", "auto", model, predicting=True) == "support"


def test_eval_support_mode_is_recorded_and_judges_each_query_alone(maml_run, tiny_data):
    _, row = evaluate_run(maml_run, episodes=2, bn_mode="support", data=tiny_data)
    assert row["bn_mode"] == "support"
    config, model, _ = load_trained(maml_run)
    config = config.resolved()
    algorithm = registry.get("maml")
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "test"), 3, 1, 3,
                             seed=4)
    result = evaluate(config, model, sampler, episodes=2, bn_mode="support")
    for index, accuracy in enumerate(result.accuracies):
        episode = sampler[index]
        tested = prepared_copy(algorithm, model, 3, "support", "cpu")
        fitted = algorithm.classifier(tested, episode.support, episode.support_labels, 3, config)
        with torch.no_grad():  # each query in a batch of its own with the support images
            alone = [fitted(episode.query[i : i + 1]).argmax(1) for i in range(len(episode.query))]
        right = (torch.cat(alone) == episode.query_labels).float().mean().item()
        assert accuracy == pytest.approx(right)


def test_eval_support_mode_of_the_vmap_engine_runs_episode_by_episode(maml_run, tiny_data):
    config, model, _ = load_trained(maml_run)
    config = config.resolved()
    vmap = dataclasses.replace(config, engine="vmap")
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "test"), 3, 1, 3)
    episodes = [sampler[i] for i in range(2)]
    tested = prepared_copy(registry.get("maml"), model, 3, "support", "cpu")
    assert maml.batch_logits(tested, episodes, vmap, "support") is None
    assert (evaluate(vmap, model, sampler, episodes=3, bn_mode="support").accuracies
            == evaluate(config, model, sampler, episodes=3, bn_mode="support").accuracies)


def test_eval_cli_says_the_support_mode(maml_run, tiny_root, monkeypatch, capsys):
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    assert main(["eval", str(maml_run), "--episodes", "2", "--bn-mode", "support",
                 "--quiet"]) == 0
    assert "BatchNorm support: " in capsys.readouterr().out


def test_help_explains_the_three_modes(capsys):
    for command in ("eval", "predict"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for mode in ("batch:", "support:", "running:", "auto:"):
            assert mode in text, (command, mode)


# ---------------------------------------------------------------- whose running statistics


def tracking(name: str) -> torch.nn.Module:
    """A freshly built ``name`` model whose BatchNorm keeps running statistics."""
    config = TrainConfig(name, ways=3, bn_running_stats=True).resolved()
    return registry.get(name).build_model(config)


def test_metasgd_running_statistics_are_unsound_and_running_is_refused():
    model = tracking("metasgd")
    assert "not sound" in running_statistics_problem("metasgd", model)
    with pytest.raises(FewshotError, match="running does not apply.*not sound.*adapted clones"):
        resolve_bn_mode("metasgd", "running", model)
    assert resolve_bn_mode("metasgd", "auto", model) == "batch"


def test_anil_running_statistics_are_sound():
    model = tracking("anil")
    assert running_statistics_problem("anil", model) is None
    assert resolve_bn_mode("anil", "running", model) == "running"


def norm_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for name, t in model.state_dict().items() if name.endswith("running_mean")]


@pytest.mark.parametrize("name", ["metasgd", "anil"])
def test_only_anil_training_leaves_the_statistics_of_its_own_network(name):
    """A training step's running statistics against those of the unadapted network on the same
    batches: Meta-SGD's clones write their adapted activations into the shared buffers."""
    torch.manual_seed(0)
    config = TrainConfig(name, ways=3, queries=1, meta_batch=2, first_order=True,
                         bn_running_stats=True).resolved()
    algorithm = registry.get(name)
    model = algorithm.build_model(config)
    replay = copy.deepcopy(model).train()
    episodes = [SimpleNamespace(support=torch.rand(3, 1, 28, 28), query=torch.rand(3, 1, 28, 28),
                                support_labels=torch.arange(3), query_labels=torch.arange(3),
                                ways=3) for _ in range(2)]
    step_on_episodes(algorithm, model, torch.optim.Adam(model.parameters()), episodes, config)
    network = getattr(replay, "module", replay)  # Meta-SGD wraps MAML's network
    with torch.no_grad():
        for episode in episodes:  # the batches the step normalised, through unadapted weights
            both = torch.cat([episode.support, episode.query])
            if name == "anil":  # the backbone, once, on the support images and the queries
                network.backbone(both)
            else:  # the support images for each inner step, then both through the adapted clone
                for _ in range(config.inner_steps):
                    network(episode.support)
                network(both)
    same = all(torch.allclose(a, b, atol=1e-6)
               for a, b in zip(norm_buffers(model), norm_buffers(replay)))
    assert same == (name == "anil")
