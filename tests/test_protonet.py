"""ProtoNet loss against a direct computation on hand-made embeddings."""

import math

import torch
import torch.nn.functional as F

from fewshot_cli.algorithms.protonet import (
    ALGORITHM,
    prototypes,
    prototypical_logits,
    prototypical_loss,
    squared_distances,
)


def test_prototypes_are_class_means():
    embeddings = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 1.0], [3.0, 3.0], [5.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    assert torch.equal(prototypes(embeddings, labels, 3),
                       torch.tensor([[1.0, 2.0], [2.0, 2.0], [5.0, -1.0]]))


def test_loss_equals_direct_computation():
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 5.0]])
    support_labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    query_labels = torch.tensor([0, 1])
    # Prototypes (1, 0) and (0, 4); squared distances written out by hand.
    d = [[(1 - 1) ** 2 + (1 - 0) ** 2, (1 - 0) ** 2 + (1 - 4) ** 2],
         [(0 - 1) ** 2 + (2 - 0) ** 2, (0 - 0) ** 2 + (2 - 4) ** 2]]
    # Cross-entropy of logits -d: minus the true class's logit (+d) plus the log-sum-exp.
    expected = (d[0][0] + math.log(math.exp(-d[0][0]) + math.exp(-d[0][1]))
                + d[1][1] + math.log(math.exp(-d[1][0]) + math.exp(-d[1][1]))) / 2
    loss, accuracy = prototypical_loss(support, support_labels, query, query_labels, 2)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert accuracy.item() == 1.0


def test_distance_is_squared_euclidean():
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    assert squared_distances(a, b).item() == 25.0


def test_query_equal_to_a_prototype_gets_its_class():
    torch.manual_seed(0)
    support = torch.randn(15, 8)
    labels = torch.arange(5).repeat_interleave(3)
    protos = prototypes(support, labels, 5)
    logits = prototypical_logits(support, labels, protos[[3, 1, 4]], 5)
    assert logits.argmax(1).tolist() == [3, 1, 4]
    assert torch.allclose(logits[0, 3], torch.tensor(0.0))


def test_query_loss_backpropagates_into_the_backbone(tiny_data):
    from fewshot_cli.algorithms.backbone import Conv4
    from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
    from fewshot_cli.data.splits import make_split

    model = Conv4()
    episode = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "train"), 5, 2, 3)[0]
    logits = ALGORITHM.query_logits(model, episode, None, training=True)
    assert logits.shape == (15, 5)
    F.cross_entropy(logits, episode.query_labels).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
