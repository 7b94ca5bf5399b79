"""MAML (Finn et al., 2017) through learn2learn's ``l2l.algorithms.MAML``.

Per task, the meta-learner is ``clone()``-d, the clone ``adapt()``-s with a few gradient steps on
the support loss, and the query loss of the adapted clone is back-propagated to the initial
weights (through the adaptation when second order). The network is the shared Conv-4 with a
linear N-way head.

``l2l.clone_module`` shares BatchNorm running buffers between clones and the base model, so
evaluation works on a copy of the model (see ``run.evaluation``) and never alters the one given.

The adaptation (``adapt``) is the one place to add another engine computing the same thing;
``step`` of ``ALGORITHM`` is where a training iteration could pick it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fewshot_cli.algorithms.backbone import EMBEDDING_DIM, Conv4
from fewshot_cli.algorithms.base import Algorithm, BudgetSettings, Classifier, Published

if TYPE_CHECKING:  # learn2learn itself is imported where used: it costs seconds
    from fewshot_cli.l2l import l2l
    from fewshot_cli.run.config import TrainConfig

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
    from fewshot_cli.l2l import l2l

    return l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)


def fit_head(model: torch.nn.Module, ways: int) -> torch.nn.Module:
    """Give ``model`` a ``ways``-output head if its head has another size.

    A new head starts at zero: every class then starts equal and the support set's inner steps
    tell them apart, which lets a model trained on 5 ways adapt to 20 (or to a user's 3 classes).
    The new head lives where the old one did (device and dtype), so the model may be moved
    before or after.

    Example:
        >>> fit_head(build_model(5), 3).head.out_features
        3
    """
    old = model.head
    if old.out_features != ways:
        model.head = torch.nn.Linear(old.in_features, ways, device=old.weight.device,
                                     dtype=old.weight.dtype)
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


def classifier(model: torch.nn.Module, support: torch.Tensor, support_labels: torch.Tensor,
               ways: int, config: TrainConfig, training: bool = False,
               steps: int | None = None) -> Classifier:
    """Adapt a clone of ``model`` on the support set; return its query-logits function.

    In training the clone takes ``config.inner_steps`` steps, first or second order as the run;
    at test ``steps`` (default ``config.test_inner_steps``) first-order steps, since no
    meta-gradient follows. The queries go through the adapted clone together with the support
    images (the package's batch-BatchNorm definition, see ``algorithms.base``).

    Example::

        logits = classifier(model, support, labels, 5, config)(query)
    """
    if training:
        steps, first_order = config.inner_steps, config.first_order
    else:
        steps, first_order = (config.test_inner_steps if steps is None else steps), True
    learner = build_learner(model, config.inner_lr, first_order)
    clone = adapt(learner, support, support_labels, steps)
    n_support = len(support)

    def logits(query: torch.Tensor) -> torch.Tensor:
        return clone(torch.cat([support, query]))[n_support:]
    return logits


def model_of(config: TrainConfig) -> torch.nn.Module:
    """The network of a resolved configuration: its backbone and a ``config.ways``-way head."""
    return build_model(config.ways, config.backbone)


def tasks_per_step(config: TrainConfig) -> int:
    """Tasks of one meta-update: the meta-batch."""
    return config.meta_batch


def defaults(ways: int) -> dict:
    """MAML's settings at ``ways`` training ways: the paper's hyper-parameters, 15 queries per
    class, a constant learning rate, tested at the training ways."""
    return {"queries": 15, "lr_halve_every": 0, "test_ways": ways, **paper_defaults(ways)}


def csv_values(config: TrainConfig, steps: int | None) -> dict:
    """MAML's columns of an evaluation row (``steps``: the test steps asked for)."""
    return {"order": "first" if config.first_order else "second",
            "inner_steps_train": config.inner_steps,
            "inner_steps_test": config.test_inner_steps if steps is None else steps,
            "inner_lr": config.inner_lr}


ALGORITHM = Algorithm(
    name="maml",
    title="MAML (Finn et al., 2017)",
    default_ways=5,
    defaults=defaults,
    build_model=model_of,
    classifier=classifier,
    episodes_per_step=tasks_per_step,
    for_ways=fit_head,
    # Its reference BatchNorm keeps no running statistics: each batch normalises itself.
    bn_mode="batch",
    # learn2learn's clones share the base model's buffers, so every meta-iteration writes the
    # adapted clones' activations into them: evaluating with them gives chance accuracy.
    unsound_running_stats="they were gathered from MAML's adapted clones and do not fit the "
                          "meta-learned weights",
    options=("inner_lr", "inner_steps", "test_inner_steps", "meta_batch", "first_order"),
    csv_columns=("order", "inner_steps_train", "inner_steps_test", "inner_lr"),
    csv_values=csv_values,
    group_by=("order", "inner_steps_test"),
    published=Published(
        {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9},
        "Finn, Abbeel & Levine (2017), Model-Agnostic Meta-Learning, Table 1 (Omniglot)"),
    # The paper: 1200 training characters with rotation augmentation (ours: 1100 / 100 / 423).
    paper_split="random",
    # Speeds behind the budgets, measured by ``python -m benchmarks.budget`` on an idle 2-core
    # machine with 2 torch threads (results/cpu/logs): a second-order meta-iteration of 8 tasks
    # takes 0.7 s (5w1s), 1.0 s (5w5s), 5.7 s (20w1s) and 14.5 s (20w5s, with its 5 inner
    # steps); a test episode 0.02-0.06 s at 5 ways, 0.12-0.44 s at 20 ways.
    budgets={
        # Second order: a first-order MAML barely moves in its first few hundred iterations, at
        # nearly the same cost per iteration on a CPU. Short budgets learn faster at lr 3e-3.
        "quick": BudgetSettings(60, 100, {"meta_batch": 8, "first_order": False, "lr": 3e-3}),
        # 4 x 200 iterations of 8 tasks: 73 minutes, 48 of them 20-way 5-shot.
        "cpu": BudgetSettings(200, 600, {"meta_batch": 8, "first_order": False, "lr": 3e-3}),
        # 60000 meta-iterations (its reference code's Omniglot commands), paper meta-batches.
        "paper": BudgetSettings(60000, 600, {"first_order": False}),
    },
    colors={"ours": "#1f77b4", "first": "#17becf", "paper": "#aec7e8"},
)
