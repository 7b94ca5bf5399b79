"""What MAML, Meta-SGD and ANIL share: the network (Conv-4 and a linear N-way head), the inner
loop's steps and order, the gradient steps themselves, and the queries classified after them.

Example:
    >>> network(5).head.out_features
    5
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fewshot_cli.algorithms.backbone import EMBEDDING_DIM, Conv4, feature_dim
from fewshot_cli.algorithms.base import Classifier, TrainConfig, without_running_stats

# The options of the family's inner loop (MAML adds its engine).
OPTIONS = ("inner_lr", "inner_steps", "test_inner_steps", "meta_batch", "first_order")
# Why an unbalanced support set biases the family (``predict`` warns).
UNBALANCED_SUPPORT = (
    "its adaptation minimises the mean loss over the support images, so a class with more "
    "images pulls the adapted model towards itself"
)


def network(
    ways: int,
    backbone: str = "conv4",
    channels: int = 1,
    filters: int = EMBEDDING_DIM,
    size: int = 28,
) -> torch.nn.Module:
    """Conv-4 embedding (``backbone.Conv4``'s arguments) followed by a linear ``ways``-way head."""
    features = feature_dim(backbone, filters, size)
    return torch.nn.Sequential(
        OrderedDict(
            backbone=Conv4(backbone, channels, filters, size),
            head=torch.nn.Linear(features, ways),
        )
    )


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The network of a resolved configuration; its BatchNorm keeps running statistics only
    when ``config.bn_running_stats`` (runs made before the paper's BatchNorm was the default)."""
    model = network(
        config.ways, config.backbone, config.channels, config.filters, config.image_size
    )
    return model if config.bn_running_stats else without_running_stats(model)


def fit_head(model: torch.nn.Module, ways: int) -> torch.nn.Module:
    """Give ``model`` a zero-initialised ``ways``-output head if its head has another size.

    Every class then starts equal and the support set's inner steps tell them apart, which lets
    a model trained on 5 ways adapt to 20 (or to a user's 3 classes). The new head lives where
    the old one did (device and dtype).

    Example:
        >>> fit_head(network(5), 3).head.out_features
        3
    """
    old = model.head
    if old.out_features != ways:
        model.head = torch.nn.Linear(
            old.in_features, ways, device=old.weight.device, dtype=old.weight.dtype
        )
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
    return model


def adaptation(config: TrainConfig, training: bool, steps: int | None) -> tuple[int, bool]:
    """``(steps, first_order)`` of an inner loop: the run's in training; at test ``steps``
    (default ``config.test_inner_steps``) first-order steps, since no meta-gradient follows."""
    if training:
        return config.inner_steps, config.first_order
    return (config.test_inner_steps if steps is None else steps), True


def inner_loop(clone, inputs: torch.Tensor, labels: torch.Tensor, steps: int, **options):
    """``clone`` (a learn2learn ``MAML``/``MetaSGD`` clone) after ``steps`` gradient steps on
    the cross-entropy of ``inputs``; ``options`` go to its ``adapt``."""
    for _ in range(steps):
        clone.adapt(F.cross_entropy(clone(inputs), labels), **options)
    return clone


def with_support(adapted: Callable, support: torch.Tensor) -> Classifier:
    """The query-logits function of an adapted model: queries go through it together with the
    support images (support first), the package's batch-BatchNorm definition."""
    n_support = len(support)

    def logits(query: torch.Tensor) -> torch.Tensor:
        return adapted(torch.cat([support, query]))[n_support:]

    return logits


def episodes_per_step(config: TrainConfig) -> int:
    """Tasks of one meta-update: the meta-batch."""
    return config.meta_batch
