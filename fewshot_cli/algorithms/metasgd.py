"""Meta-SGD (Li et al., 2017) through learn2learn's ``l2l.algorithms.MetaSGD``.

MAML with a learned inner learning rate for every element of every parameter: a task adapts
with ``theta' = theta - alpha * grad`` (element-wise), and the meta-optimizer learns ``alpha``
together with ``theta``. The network is MAML's (Conv-4 and a linear N-way head).

The model *is* learn2learn's ``MetaSGD`` wrapper: its ``state_dict`` holds the network
(``module.*``) and the rates (``lrs.0`` ... in the order of the network's parameters), so the
training loop's Adam learns the rates with the weights, checkpoints save them and a resumed run
continues from them. ``--inner-lr`` is the rates' initial value.

Li et al. adapt in one step, in training and at test; those are the defaults here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fewshot_cli.algorithms import maml
from fewshot_cli.algorithms.base import Algorithm, Classifier, Published

if TYPE_CHECKING:  # learn2learn itself is imported where used: it costs seconds
    from fewshot_cli.l2l import l2l
    from fewshot_cli.run.config import TrainConfig


def build_model(ways: int, inner_lr: float, backbone: str = "conv4") -> l2l.algorithms.MetaSGD:
    """MAML's network wrapped in ``MetaSGD``, every rate starting at ``inner_lr``.

    Example:
        >>> model = build_model(5, inner_lr=0.4)
        >>> sorted(model.state_dict())[-2:]
        ['module.head.bias', 'module.head.weight']
    """
    from fewshot_cli.l2l import l2l

    return l2l.algorithms.MetaSGD(maml.build_model(ways, backbone), lr=inner_lr)


def model_of(config: TrainConfig) -> l2l.algorithms.MetaSGD:
    """The model of a resolved configuration (a checkpoint's rates replace the initial ones)."""
    from fewshot_cli.l2l import l2l

    # MAML's network of the configuration (its BatchNorm as ``config.bn_running_stats`` says).
    return l2l.algorithms.MetaSGD(maml.model_of(config), lr=config.inner_lr)


def fit_head(model: l2l.algorithms.MetaSGD, ways: int) -> l2l.algorithms.MetaSGD:
    """Give ``model`` a ``ways``-output head (MAML's zero head) with rates learned for its head.

    The classes of an episode are interchangeable, so each row of the new head gets the mean of
    the learned rates over the old head's rows (per input feature; the bias gets the mean bias
    rate). The new rates live where the old ones did.

    Example:
        >>> fit_head(build_model(5, 0.4), 3).module.head.out_features
        3
    """
    head = model.module.head
    if head.out_features == ways:
        return model
    slot = {id(p): i for i, p in enumerate(model.module.parameters())}
    slots = [slot[id(head.weight)], slot[id(head.bias)]]
    maml.fit_head(model.module, ways)  # the new head takes the old one's place in the order
    for i, parameter in zip(slots, (model.module.head.weight, model.module.head.bias)):
        rate = model.lrs[i].detach().mean(0, keepdim=True).expand_as(parameter)
        model.lrs[i] = torch.nn.Parameter(rate.clone())
    return model


def classifier(
    model: l2l.algorithms.MetaSGD,
    support: torch.Tensor,
    support_labels: torch.Tensor,
    ways: int,
    config: TrainConfig,
    training: bool = False,
    steps: int | None = None,
) -> Classifier:
    """Adapt a clone of ``model`` with its learned rates; return its query-logits function.

    Steps and order as MAML's (``config.inner_steps`` in training, first or second order as the
    run; ``steps`` or ``config.test_inner_steps`` first-order steps at test). The queries go
    through the adapted clone together with the support images (see ``algorithms.base``).

    Example::

        logits = classifier(model, support, labels, 5, config)(query)
    """
    steps, first_order = maml.adaptation(config, training, steps)
    clone = model.clone()
    for _ in range(steps):
        clone.adapt(F.cross_entropy(clone(support), support_labels), first_order=first_order)
    n_support = len(support)

    def logits(query: torch.Tensor) -> torch.Tensor:
        return clone(torch.cat([support, query]))[n_support:]

    return logits


def defaults(ways: int, shots: int = 1) -> dict:
    """MAML's Omniglot settings at ``ways`` (its inner rate as the rates' start, its
    meta-batch), with Li et al.'s one adaptation step in training and at test."""
    settings = {k: v for k, v in maml.defaults(ways, shots).items() if k != "engine"}
    return {**settings, "inner_steps": 1, "test_inner_steps": 1}


ALGORITHM = Algorithm(
    name="metasgd",
    title="Meta-SGD (Li et al., 2017)",
    default_ways=5,
    defaults=defaults,
    build_model=model_of,
    classifier=classifier,
    episodes_per_step=maml.tasks_per_step,
    for_ways=fit_head,
    bn_mode="batch",
    # Its clones (``clone_module``) share the base model's BatchNorm buffers, as MAML's do, so
    # training writes the adapted clones' activations into them.
    unsound_running_stats="they were gathered from Meta-SGD's adapted clones and do not fit "
    "the meta-learned weights",
    unbalanced_support=maml.UNBALANCED_SUPPORT,
    # inner_lr: the rates' initial value. MAML's vmap engine does not apply (learned rates).
    options=tuple(o for o in maml.ALGORITHM.options if o != "engine"),
    csv_columns=maml.ALGORITHM.csv_columns,
    csv_values=maml.csv_values,
    group_by=maml.ALGORITHM.group_by,
    published=Published(
        {(5, 1): 99.53, (5, 5): 99.93, (20, 1): 95.93, (20, 5): 98.97},
        "Li, Zhou, Chen & Li (2017), Meta-SGD, Table 2 (Omniglot; its 5-shot models were "
        "meta-trained 1-shot)",
    ),
    # The paper: 1200 training characters with rotation augmentation, as MAML.
    paper_split="random",
    # MAML's lengths. An iteration computes what MAML's does at the same number of steps, with
    # one step at every cell here (MAML takes 5 at 20 ways); not timed on an idle machine yet.
    # (Li et al. do not give their length for Omniglot.)
    budgets=maml.VARIANT_BUDGETS,
    colors={"ours": "#2ca02c", "first": "#bcbd22", "paper": "#98df8a"},
)
