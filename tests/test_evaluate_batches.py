"""evaluate: episodes built on the device in chunks, accuracies kept there; the per-episode
accuracies are exactly those of the former loop (each episode drawn on the host, one `.item()`
each), for an algorithm that batches episodes and for those that do not."""

import dataclasses

import pytest
import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.data.batches import DeviceEpisodes
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import make_split
from fewshot_cli.run.bn_mode import prepared_copy, resolve_bn_mode
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import BATCH_EPISODES, episode_batches, episode_logits, evaluate

TINY = dict(ways=5, queries=2, test_ways=3, test_queries=3, meta_batch=3)
EPISODES = BATCH_EPISODES + 8  # a whole chunk and a part of one

CASES = [
    ("maml", {"engine": "vmap", **TINY}),
    ("maml", {"engine": "l2l", **TINY}),
    ("protonet", {"ways": 5, "queries": 2}),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: threads only add hand-offs


@pytest.fixture(scope="module")
def test_sampler(tiny_data):
    part = meta_dataset(tiny_data, make_split(tiny_data), "test")
    return EpisodeSampler(part, 3, 1, 3, seed=1)


def former_accuracies(config, model, sampler, episodes, bn_mode="auto", steps=None, device="cpu"):
    """The loop evaluate ran before: host episodes, a list to ``batch_logits``, one ``.item()``
    per episode."""
    algorithm = registry.get(config.algorithm)
    mode = resolve_bn_mode(config.algorithm, bn_mode, model)
    model = prepared_copy(algorithm, model, sampler.ways, mode, device)
    accuracies = []
    for first in range(0, episodes, BATCH_EPISODES):
        batch = [sampler[i].to(device) for i in range(first, min(first + BATCH_EPISODES, episodes))]
        logits = (algorithm.batch_logits(model, batch, config, mode, steps)
                  if algorithm.batch_logits is not None else None)
        if logits is None:
            logits = [episode_logits(algorithm, model, e, config, steps, mode) for e in batch]
        for episode, logit in zip(batch, logits):
            accuracies.append((logit.argmax(-1) == episode.query_labels).float().mean().item())
    return accuracies


def trained_model(algorithm, options):
    config = TrainConfig(algorithm, iterations=1, **options).resolved()
    torch.manual_seed(3)
    return config, registry.get(algorithm).build_model(config)


@pytest.mark.parametrize("algorithm,options", CASES)
def test_accuracies_are_the_former_loops_exactly(test_sampler, algorithm, options):
    config, model = trained_model(algorithm, options)
    steps = 2 if algorithm == "maml" else None
    result = evaluate(config, model, test_sampler, EPISODES, steps=steps)
    assert len(result.accuracies) == EPISODES
    assert all(isinstance(a, float) for a in result.accuracies)
    assert result.accuracies == former_accuracies(config, model, test_sampler, EPISODES,
                                                  steps=steps)


@pytest.mark.parametrize("bn_mode", ["support", "batch"])
def test_vmap_in_either_mode_and_from_device_episodes_gives_the_same(test_sampler, bn_mode):
    # support: batch_logits declines, the per-episode loop takes over after the first chunk.
    config, model = trained_model("maml", {"engine": "vmap", **TINY})
    former = former_accuracies(config, model, test_sampler, EPISODES, bn_mode, steps=1)
    assert evaluate(config, model, test_sampler, EPISODES, bn_mode, steps=1).accuracies == former
    on_device = DeviceEpisodes(test_sampler, "cpu")
    assert evaluate(config, model, on_device, EPISODES, bn_mode, steps=1).accuracies == former


def test_vmap_and_l2l_engines_still_agree(test_sampler):
    config, model = trained_model("maml", {"engine": "l2l", **TINY})
    loop = evaluate(config, model, test_sampler, EPISODES, steps=2)
    batched = evaluate(dataclasses.replace(config, engine="vmap"), model, test_sampler, EPISODES,
                       steps=2)
    assert batched.accuracies == pytest.approx(loop.accuracies, abs=1e-6)


def test_episode_batches_reuses_device_episodes_of_the_device_only(test_sampler):
    on_cpu = DeviceEpisodes(test_sampler, "cpu")
    assert episode_batches(on_cpu, "cpu") is on_cpu
    fresh = episode_batches(test_sampler, "cpu")
    assert isinstance(fresh, DeviceEpisodes) and fresh.sampler is test_sampler


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("algorithm,options", CASES)
def test_accuracies_are_the_former_loops_exactly_on_cuda(test_sampler, algorithm, options):
    config, model = trained_model(algorithm, options)
    steps = 2 if algorithm == "maml" else None
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # the same kernels in both, so the same roundings
    try:
        result = evaluate(config, model, test_sampler, EPISODES, steps=steps, device="cuda")
        former = former_accuracies(config, model, test_sampler, EPISODES, steps=steps,
                                   device="cuda")
    finally:
        torch.backends.cudnn.deterministic = deterministic
    assert result.accuracies == former
