"""MAML through learn2learn: adaptation, first vs second order, and one meta-step."""

import copy

import pytest
import torch
import torch.nn.functional as F

from fewshot_cli.algorithms import maml, maml_family
from fewshot_cli.algorithms.base import step_on_episodes
from fewshot_cli.algorithms.papers import PAPERS
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.splits import make_split
from fewshot_cli.run.config import TrainConfig


@pytest.fixture(scope="module")
def episodes(tiny_data):
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "train"), 5, 1, 5, seed=0)
    return [sampler[i] for i in range(4)]


def fresh_model(ways=5):
    torch.manual_seed(0)
    return maml_family.network(ways)


def config(first_order=False, steps=1):
    return TrainConfig("maml", ways=5, queries=5, inner_lr=0.4, inner_steps=steps,
                       first_order=first_order).resolved()


def task_loss(model, episode, cfg):
    logits = maml.ALGORITHM.query_logits(model, episode, cfg, training=True)
    return F.cross_entropy(logits, episode.query_labels)


def test_adaptation_leaves_base_parameters_untouched(episodes):
    model = fresh_model()
    learner = maml.build_learner(model, inner_lr=0.4)
    before = copy.deepcopy(model.state_dict())
    clone = maml.adapt(learner, episodes[0].support, episodes[0].support_labels, steps=3)
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), name
    # ... while the clone did move.
    assert not torch.equal(clone.module.head.weight, model.head.weight)


def meta_gradient(first_order, episode, steps=1):
    model = fresh_model()
    model.train()
    task_loss(model, episode, config(first_order, steps)).backward()
    return model, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_second_order_differs_from_first_order(episodes):
    _, second = meta_gradient(False, episodes[0])
    _, first = meta_gradient(True, episodes[0])
    differs = [n for n in second if not torch.allclose(second[n], first[n], atol=1e-7)]
    assert differs, "second-order meta-gradient should differ from first-order"


def test_first_order_is_query_gradient_at_adapted_weights(episodes):
    episode = episodes[1]
    model, first = meta_gradient(True, episode)
    # Recompute by hand: adapt a detached copy, then differentiate the query loss there.
    adapted = fresh_model()
    adapted.train()
    support_loss = F.cross_entropy(adapted(episode.support), episode.support_labels)
    grads = torch.autograd.grad(support_loss, list(adapted.parameters()))
    with torch.no_grad():
        for p, g in zip(adapted.parameters(), grads):
            p -= 0.4 * g
    # Queries are classified in one batch with the support images (batch-BatchNorm definition).
    n = len(episode.support)
    logits = adapted(torch.cat([episode.support, episode.query]))[n:]
    query_loss = F.cross_entropy(logits, episode.query_labels)
    expected = torch.autograd.grad(query_loss, list(adapted.parameters()))
    for (name, _), g in zip(adapted.named_parameters(), expected):
        assert torch.allclose(first[name], g, atol=1e-5), name


def test_one_meta_step_lowers_the_query_loss(episodes):
    model = fresh_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = config()

    def batch_loss():
        state = copy.deepcopy(model.state_dict())  # BatchNorm buffers move with each pass
        total = sum(task_loss(model, e, cfg).item() for e in episodes) / len(episodes)
        model.load_state_dict(state)
        return total

    before = batch_loss()
    step_on_episodes(maml.ALGORITHM, model, optimizer, episodes, cfg)
    assert batch_loss() < before


def test_fit_head_resizes_to_zero_head():
    model = fresh_model(5)
    maml_family.fit_head(model, 3)
    assert model.head.out_features == 3 and model.head.weight.abs().sum() == 0
    same = fresh_model(5)
    head = same.head
    assert maml_family.fit_head(same, 5).head is head


def test_new_head_follows_the_model_device():
    # The order evaluation uses: move the copy first, then fit the head (a CUDA crash before).
    model = fresh_model(5).to("meta")
    maml_family.fit_head(model, 3)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.head.out_features == 3
    # ... and the other order still works.
    model = maml_family.fit_head(fresh_model(5), 3).to("meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_test_copy_at_other_ways_lives_on_the_device():
    from fewshot_cli.run.bn_mode import prepared_copy

    model = fresh_model(5)
    tested = prepared_copy(maml.ALGORITHM, model, 20, "batch", "meta")
    assert {p.device.type for p in tested.parameters()} == {"meta"}
    assert tested.head.out_features == 20 and tested.training
    assert model.head.out_features == 5 and model.head.weight.device.type == "cpu"


def test_paper_defaults():
    defaults = PAPERS["maml"].defaults
    assert {k: defaults.at(5, 1)[k] for k in ("inner_lr", "inner_steps", "test_inner_steps",
                                              "meta_batch")} == dict(inner_lr=0.4, inner_steps=1,
                                                                     test_inner_steps=3, meta_batch=32)
    assert defaults.at(20, 1)["inner_lr"] == 0.1 and defaults.at(20, 1)["meta_batch"] == 16
    assert defaults.at(3, 1)["inner_lr"] == 0.4 and defaults.at(30, 5)["inner_lr"] == 0.1
    assert defaults.at(5, 5)["queries"] == 5  # K queries per class for K shots
