"""ANIL, Almost No Inner Loop (Raghu et al., 2020): MAML's inner loop on the head alone.

The network is MAML's (Conv-4 ``backbone`` and a linear N-way ``head``). Per task the backbone
embeds the support images and the queries once, in one pass; learn2learn's ``MAML`` wraps the
head, a clone of it adapts on the support features, and the adapted head classifies the query
features, as learn2learn's ANIL examples do. The backbone learns only through the meta-gradient
(second order through the head's steps unless ``--first-order``) and runs once per task,
whatever the number of inner steps.

With batch BatchNorm (the default, as MAML), that one pass normalises the support images
together with the queries, so the head adapts on support features that saw the queries' batch
statistics too (MAML adapts on a pass of the support images alone).
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


def adapt_head(
    head: torch.nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    inner_lr: float,
    steps: int,
    first_order: bool,
) -> l2l.algorithms.MAML:
    """A clone of ``head`` (in learn2learn's MAML) after ``steps`` steps on ``features``.

    Example::

        adapted = adapt_head(model.head, model.backbone(support), labels, 0.4, 1, False)
    """
    from fewshot_cli.l2l import l2l

    clone = l2l.algorithms.MAML(head, lr=inner_lr, first_order=first_order).clone()
    for _ in range(steps):
        clone.adapt(F.cross_entropy(clone(features), labels))
    return clone


def classifier(
    model: torch.nn.Module,
    support: torch.Tensor,
    support_labels: torch.Tensor,
    ways: int,
    config: TrainConfig,
    training: bool = False,
    steps: int | None = None,
) -> Classifier:
    """The query-logits function of a support set: features once, the head adapted on them.

    Each call embeds the support images and the given queries in one pass, adapts a clone of the
    head on the support features (``config.inner_steps`` steps of the run's order in training;
    ``steps`` or ``config.test_inner_steps`` first-order steps at test) and returns the adapted
    head's logits of the queries. The adaptation runs with gradients even when the caller
    classifies under ``torch.no_grad()`` (evaluation does).

    Example::

        logits = classifier(model, support, labels, 5, config)(query)
    """
    steps, first_order = maml.adaptation(config, training, steps)
    n_support = len(support)

    def logits(query: torch.Tensor) -> torch.Tensor:
        features = model.backbone(torch.cat([support, query]))
        with torch.enable_grad():
            head = adapt_head(
                model.head,
                features[:n_support],
                support_labels,
                config.inner_lr,
                steps,
                first_order,
            )
        return head(features[n_support:])

    return logits


def defaults(ways: int, shots: int = 1) -> dict:
    """MAML's settings at ``ways`` and ``shots`` (Raghu et al. use MAML's Omniglot setups),
    without MAML's engine choice: ANIL runs learn2learn's loop."""
    return {k: v for k, v in maml.defaults(ways, shots).items() if k != "engine"}


ALGORITHM = Algorithm(
    name="anil",
    title="ANIL (Raghu et al., 2020)",
    default_ways=5,
    # Raghu et al. use MAML's Omniglot models and setups; MAML's hyper-parameters here.
    defaults=defaults,
    build_model=maml.model_of,
    classifier=classifier,
    episodes_per_step=maml.tasks_per_step,
    for_ways=maml.fit_head,
    bn_mode="batch",
    # Running statistics sound: only the head (no BatchNorm) is cloned; the backbone runs unadapted.
    unbalanced_support=maml.UNBALANCED_SUPPORT,
    options=tuple(o for o in maml.ALGORITHM.options if o != "engine"),  # the l2l loop only
    csv_columns=maml.ALGORITHM.csv_columns,
    csv_values=maml.csv_values,
    group_by=maml.ALGORITHM.group_by,
    published=Published(
        {(20, 1): 96.2, (20, 5): 98.0},
        "Raghu, Raghu, Bengio & Vinyals (2020), Rapid Learning or Feature Reuse?, Table 2 "
        "(Omniglot 20-way; mean of 3 seeds; no 5-way numbers)",
    ),
    paper_split="random",
    # MAML's lengths. The backbone runs once per task (MAML's once per inner step and once more),
    # so 20-way cells with their 5 steps cost less than MAML's; not timed on an idle machine yet.
    budgets=maml.VARIANT_BUDGETS,
    colors={"ours": "#9467bd", "first": "#e377c2", "paper": "#c5b0d5"},
)
