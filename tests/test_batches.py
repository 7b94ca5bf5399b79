"""Episodes built on the device: the same images, labels and order as the sampler's, bit for bit."""

import copy
import random

import pytest
import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import episodes_of_step
from fewshot_cli.algorithms.maml_vmap import stack_episodes
from fewshot_cli.data.batches import LEVELS, DeviceEpisodes, TaskBatch, device_batches
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import Split, make_split
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.config import TrainConfig


@pytest.fixture(scope="module")
def train_part(tiny_data):
    return meta_dataset(tiny_data, make_split(tiny_data, "lake"), "train")


@pytest.fixture(scope="module")
def turned_part(tiny_data):
    """A part whose classes are characters at every quarter turn (as the vinyals split's)."""
    classes = [(c, t) for c in range(6) for t in range(4)]
    return meta_dataset(tiny_data, Split("turned", {"train": classes}), "train")


def assert_same_batch(batch: TaskBatch, expected: TaskBatch) -> None:
    for name in ("support", "support_labels", "query", "query_labels"):
        ours, theirs = getattr(batch, name), getattr(expected, name)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        assert ours.is_contiguous(), name
        assert torch.equal(ours.cpu(), theirs.cpu()), name


def host_batch(sampler: EpisodeSampler, first: int, count: int) -> TaskBatch:
    """Today's path: one episode after another on the host, stacked."""
    return stack_episodes([sampler[first + i] for i in range(count)])


@pytest.mark.parametrize(
    "ways,shots,queries,rotate,seed,first,count",
    [
        (5, 1, 1, True, 0, 0, 32),  # the MAML paper's 5-way 1-shot meta-batch
        (5, 1, 1, False, 0, 0, 32),
        (5, 1, 15, True, 3, 320, 8),
        (3, 5, 5, True, -7, 17, 5),
        (10, 2, 3, False, 11, 1000, 4),
        (17, 1, 2, True, 1, 5, 3),  # every class of the part
    ],
)
def test_batch_equals_the_samplers_episodes(
    train_part, ways, shots, queries, rotate, seed, first, count
):
    sampler = EpisodeSampler(train_part, ways, shots, queries, seed=seed, rotate=rotate)
    batch = DeviceEpisodes(sampler, "cpu").batch(first, count)
    assert batch.support.shape == (count, ways * shots, 1, 28, 28)
    assert batch.query.shape == (count, ways * queries, 1, 28, 28)
    assert batch.ways == ways
    assert_same_batch(batch, host_batch(sampler, first, count))


@pytest.mark.parametrize("rotate", [False, True])
def test_batch_equals_the_samplers_episodes_of_turned_classes(turned_part, rotate):
    sampler = EpisodeSampler(turned_part, 5, 2, 3, seed=4, rotate=rotate)
    episodes = DeviceEpisodes(sampler, "cpu")
    for first in (0, 50, 999):
        assert_same_batch(episodes.batch(first, 6), host_batch(sampler, first, 6))


def test_every_iteration_and_share_equals_episodes_of_step(train_part):
    sampler = EpisodeSampler(train_part, 5, 1, 1, seed=2, rotate=True)
    episodes = device_batches(sampler, "cpu")
    for iteration in (0, 1, 7):
        for rank, world in ((0, 1), (0, 2), (1, 2), (3, 4)):
            batch = episodes_of_step(episodes, iteration, 8, "cpu", rank, world)
            assert isinstance(batch, TaskBatch)
            expected = episodes_of_step(sampler, iteration, 8, "cpu", rank, world)
            assert_same_batch(batch, stack_episodes(expected))


def test_batch_iterates_as_the_samplers_episodes(train_part):
    sampler = EpisodeSampler(train_part, 4, 2, 3, seed=5, rotate=True)
    episodes = DeviceEpisodes(sampler, "cpu")
    batch = episodes.batch(10, 3)
    for i, (ours, theirs) in enumerate(zip(batch, [sampler[10 + j] for j in range(3)])):
        assert ours.ways == theirs.ways == 4
        for name in ("support", "support_labels", "query", "query_labels"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), (i, name)
    assert episodes[3].support.equal(sampler[3].support)  # single episodes: the sampler's own
    unnamed = TaskBatch(batch.support, batch.support_labels, batch.query, batch.query_labels)
    assert [e.ways for e in unnamed] == [4, 4, 4]  # read from the labels


def test_plan_leaves_the_callers_random_state_and_the_episodes_alone(train_part):
    sampler = EpisodeSampler(train_part, 5, 1, 1, seed=0, rotate=True)
    before = sampler[7]
    random.seed(123)
    state = random.getstate()
    plan = sampler.plan(7)
    assert random.getstate() == state
    assert len(plan) == 10 and {label for _, _, label in plan} == set(range(5))
    assert sampler.plan(7) == plan
    assert sampler[7].support.equal(before.support)


def test_levels_are_the_hosts_scaling_of_every_pixel_value():
    assert torch.equal(LEVELS, torch.arange(256, dtype=torch.uint8).float().div_(255))


def test_bad_counts_are_refused(train_part):
    with pytest.raises(FewshotError, match="at least 1"):
        DeviceEpisodes(EpisodeSampler(train_part, 5, 1, 1), "cpu").batch(0, 0)


@pytest.mark.parametrize(
    "algorithm,options",
    [
        ("maml", {"engine": "vmap", "meta_batch": 4, "rotations": True}),
        ("maml", {"engine": "l2l", "meta_batch": 2}),
        ("protonet", {"ways": 5, "queries": 2}),
    ],
)
def test_training_steps_on_device_batches_match_the_samplers(train_part, algorithm, options):
    config = TrainConfig(algorithm, shots=1, **options).resolved()
    chosen = registry.get(algorithm)
    torch.manual_seed(0)
    model = chosen.build_model(config)
    twin = copy.deepcopy(model)
    sampler = EpisodeSampler(
        train_part, config.ways, config.shots, config.queries, seed=1, rotate=config.rotations
    )
    episodes = device_batches(sampler, "cpu")
    optimizers = [torch.optim.Adam(m.parameters(), lr=config.lr) for m in (model, twin)]
    for iteration in range(3):
        host = chosen.train_step(model, optimizers[0], sampler, iteration, config)
        device = chosen.train_step(twin, optimizers[1], episodes, iteration, config)
        assert host == device
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "split,ways,shots,queries,rotate",
    [
        ("random", 5, 1, 1, True),
        ("lake", 20, 1, 5, True),
        ("lake", 5, 5, 15, False),
        ("vinyals", 60, 5, 5, False),
    ],
)
def test_batch_equals_the_samplers_episodes_on_omniglot(
    real_data, split, ways, shots, queries, rotate
):
    part = meta_dataset(real_data, make_split(real_data, split), "train")
    sampler = EpisodeSampler(part, ways, shots, queries, seed=0, rotate=rotate)
    episodes = DeviceEpisodes(sampler, "cpu")
    for first in (0, 32 * 1000):
        assert_same_batch(episodes.batch(first, 32), host_batch(sampler, first, 32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rotate", [False, True])
def test_batch_on_cuda_equals_the_samplers_episodes(train_part, rotate):
    sampler = EpisodeSampler(train_part, 5, 1, 15, seed=0, rotate=rotate)
    batch = DeviceEpisodes(sampler, "cuda").batch(64, 32)
    assert batch.support.device.type == "cuda"
    assert_same_batch(batch, host_batch(sampler, 64, 32))


def test_benchmark_prints_both_ways_and_their_ratios(tiny_root, cache_dir, monkeypatch, capsys):
    from benchmarks import batches

    monkeypatch.setenv("FEWSHOT_CACHE", str(cache_dir))
    threads = torch.get_num_threads()  # the benchmark sets them: keep the suite's own
    batches.main(
        ["--data-root", str(tiny_root), "--threads", str(threads), "--iterations", "1"]
        + ["--steps", "1"]
    )
    out = capsys.readouterr().out
    assert "host (today)" in out and "host draw alone" in out
    assert "sampling host/device" in out and "whole step host/device" in out
    assert "losses: 0\n" in out  # the same tasks, bit for bit: the same training
