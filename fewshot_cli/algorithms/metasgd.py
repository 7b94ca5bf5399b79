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

from fewshot_cli.algorithms import maml_family
from fewshot_cli.algorithms.base import Algorithm, Classifier, TrainConfig

if TYPE_CHECKING:  # learn2learn itself is imported where used: it costs seconds
    from fewshot_cli.l2l import l2l


def build_model(config: TrainConfig) -> l2l.algorithms.MetaSGD:
    """The family's network of a resolved configuration wrapped in ``MetaSGD``, every rate
    starting at ``config.inner_lr`` (a checkpoint's rates replace them).

    Example::

        sorted(build_model(config).state_dict())[-2:]
        # ['module.head.bias', 'module.head.weight']
    """
    from fewshot_cli.l2l import l2l

    return l2l.algorithms.MetaSGD(maml_family.build_model(config), lr=config.inner_lr)


def fit_head(model: l2l.algorithms.MetaSGD, ways: int) -> l2l.algorithms.MetaSGD:
    """Give ``model`` a ``ways``-output head (MAML's zero head) with rates learned for its head.

    The classes of an episode are interchangeable, so each row of the new head gets the mean of
    the learned rates over the old head's rows (per input feature; the bias gets the mean bias
    rate). The new rates live where the old ones did.

    Example::

        fit_head(build_model(config), 3).module.head.out_features
        # 3
    """
    head = model.module.head
    if head.out_features == ways:
        return model
    slot = {id(p): i for i, p in enumerate(model.module.parameters())}
    slots = [slot[id(head.weight)], slot[id(head.bias)]]
    maml_family.fit_head(model.module, ways)  # the new head takes the old one's place in the order
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
    steps, first_order = maml_family.adaptation(config, training, steps)
    clone = maml_family.inner_loop(
        model.clone(), support, support_labels, steps, first_order=first_order
    )
    return maml_family.with_support(clone, support)


ALGORITHM = Algorithm(
    name="metasgd",
    title="Meta-SGD (Li et al., 2017)",
    build_model=build_model,
    classifier=classifier,
    episodes_per_step=maml_family.episodes_per_step,
    for_ways=fit_head,
    bn_mode="batch",
    # Its clones (``clone_module``) share the base model's BatchNorm buffers, as MAML's do, so
    # training writes the adapted clones' activations into them.
    unsound_running_stats="they were gathered from Meta-SGD's adapted clones and do not fit "
    "the meta-learned weights",
    unbalanced_support=maml_family.UNBALANCED_SUPPORT,
    # inner_lr: the rates' initial value.
    options=maml_family.OPTIONS,
)
