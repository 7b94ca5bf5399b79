"""MAML (Finn et al., 2017) through learn2learn's ``l2l.algorithms.MAML``.

Per task, the meta-learner is ``clone()``-d, the clone ``adapt()``-s with a few gradient steps on
the support loss, and the query loss of the adapted clone is back-propagated to the initial
weights (through the adaptation when second order). The network is the shared Conv-4 with a
linear N-way head.

``l2l.clone_module`` shares BatchNorm running buffers between clones and the base model, so
evaluation works on a copy of the model (see ``evaluation``) and never alters the one given.
"""

from __future__ import annotations

from collections import OrderedDict

import learn2learn as l2l
import torch
import torch.nn.functional as F

from fewshot_cli.algorithms.backbone import EMBEDDING_DIM, Conv4
from fewshot_cli.data.episodes import Episode

# Hyper-parameters of the MAML paper for Omniglot, by number of ways.
PAPER_DEFAULTS = {
    5: dict(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch=32),
    20: dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=16),
}


def paper_defaults(ways: int) -> dict:
    """MAML-paper Omniglot hyper-parameters for ``ways`` (20-way ones above 5 ways)."""
    return dict(PAPER_DEFAULTS[5 if ways <= 5 else 20])


def build_model(ways: int, backbone: str = "conv4") -> torch.nn.Module:
    """Conv-4 embedding followed by a linear ``ways``-way head."""
    return torch.nn.Sequential(OrderedDict(
        backbone=Conv4(backbone), head=torch.nn.Linear(EMBEDDING_DIM, ways)))


def build_learner(model: torch.nn.Module, inner_lr: float, first_order: bool = False
                  ) -> l2l.algorithms.MAML:
    """Wrap ``model`` in learn2learn's MAML.

    Example:
        >>> learner = build_learner(build_model(5), inner_lr=0.4)
        >>> clone = learner.clone()
    """
    return l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)


def fit_head(model: torch.nn.Module, ways: int) -> torch.nn.Module:
    """Give ``model`` a ``ways``-output head if its head has another size.

    A new head starts at zero: every class then starts equal and the support set's inner steps
    tell them apart, which lets a model trained on 5 ways adapt to 20 (or to a user's 3 classes).
    """
    if model.head.out_features != ways:
        model.head = torch.nn.Linear(model.head.in_features, ways)
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
    return model


def adapt(learner: l2l.algorithms.MAML, support: torch.Tensor, support_labels: torch.Tensor,
          steps: int, first_order: bool | None = None) -> l2l.algorithms.MAML:
    """A clone of ``learner`` after ``steps`` gradient steps on the support loss."""
    clone = learner.clone(first_order=first_order)
    for _ in range(steps):
        clone.adapt(F.cross_entropy(clone(support), support_labels))
    return clone


def task_loss(learner: l2l.algorithms.MAML, episode: Episode, steps: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapt on the support set, then ``(loss, accuracy)`` of the adapted clone on the queries."""
    clone = adapt(learner, episode.support, episode.support_labels, steps)
    logits = clone(episode.query)
    loss = F.cross_entropy(logits, episode.query_labels)
    return loss, (logits.argmax(1) == episode.query_labels).float().mean()


def meta_step(learner: l2l.algorithms.MAML, optimizer: torch.optim.Optimizer,
              episodes: list[Episode], steps: int) -> tuple[float, float]:
    """One meta-update over a batch of tasks; returns mean query ``(loss, accuracy)``.

    Example:
        >>> loss, acc = meta_step(learner, torch.optim.Adam(learner.parameters()), batch, steps=1)
    """
    learner.train()
    optimizer.zero_grad()
    total_loss, total_acc = 0.0, 0.0
    for episode in episodes:
        loss, accuracy = task_loss(learner, episode, steps)
        # Backward per task frees each task's graph at once instead of holding the whole batch.
        (loss / len(episodes)).backward()
        total_loss += loss.item()
        total_acc += accuracy.item()
    optimizer.step()
    return total_loss / len(episodes), total_acc / len(episodes)
