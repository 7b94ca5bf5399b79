"""Prototypical Networks (Snell et al., 2017): classify queries by their nearest class mean.

A class's prototype is the mean embedding of its support images; a query's logit for a class is
minus the *squared* Euclidean distance to that prototype, and the loss is cross-entropy over the
queries. learn2learn has no such loss, so it is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot_cli.algorithms.backbone import Conv4
from fewshot_cli.data.episodes import Episode


def build_model(backbone: str = "conv4") -> torch.nn.Module:
    """A ProtoNet is just the embedding network."""
    return Conv4(backbone)


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Mean embedding of each class ``0 .. ways-1``: ``[ways, dim]``.

    Example:
        >>> prototypes(torch.tensor([[0., 0.], [2., 2.], [1., 5.]]), torch.tensor([0, 0, 1]), 2)
        tensor([[1., 1.],
                [1., 5.]])
    """
    one_hot = F.one_hot(labels, ways).to(embeddings.dtype)
    return one_hot.t() @ embeddings / one_hot.sum(0).unsqueeze(1)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[len(a), len(b)]`` squared Euclidean distances between rows."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)


def prototypical_logits(support: torch.Tensor, support_labels: torch.Tensor,
                        query: torch.Tensor, ways: int) -> torch.Tensor:
    """Logits ``[queries, ways]``: minus squared distance from each query to each prototype."""
    return -squared_distances(query, prototypes(support, support_labels, ways))


def prototypical_loss(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor,
                      query_labels: torch.Tensor, ways: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and accuracy of the queries under the prototype classifier.

    Args:
        support, query: embeddings ``[n, dim]``.
        support_labels, query_labels: classes in ``0 .. ways-1``.
        ways: number of classes.

    Returns:
        ``(loss, accuracy)``, both scalar tensors.

    Example:
        >>> s, q = torch.eye(2), torch.eye(2)
        >>> loss, acc = prototypical_loss(s, torch.tensor([0, 1]), q, torch.tensor([0, 1]), 2)
        >>> acc.item()
        1.0
    """
    logits = prototypical_logits(support, support_labels, query, ways)
    loss = F.cross_entropy(logits, query_labels)
    accuracy = (logits.argmax(1) == query_labels).float().mean()
    return loss, accuracy


def episode_loss(model: torch.nn.Module, episode: Episode, ways: int):
    """Embed support and query in one pass and return ``(loss, accuracy)`` on the queries."""
    n_support = len(episode.support)
    embeddings = model(torch.cat([episode.support, episode.query]))
    return prototypical_loss(embeddings[:n_support], episode.support_labels,
                             embeddings[n_support:], episode.query_labels, ways)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, episode: Episode,
               ways: int) -> tuple[float, float]:
    """One gradient step on one episode; returns ``(loss, accuracy)``."""
    model.train()
    optimizer.zero_grad()
    loss, accuracy = episode_loss(model, episode, ways)
    loss.backward()
    optimizer.step()
    return loss.item(), accuracy.item()
