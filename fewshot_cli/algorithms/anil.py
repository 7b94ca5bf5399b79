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

from fewshot_cli.algorithms import maml_family
from fewshot_cli.algorithms.base import Algorithm, Classifier, TrainConfig

if TYPE_CHECKING:  # learn2learn itself is imported where used: it costs seconds
    from fewshot_cli.l2l import l2l


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
    return maml_family.inner_loop(clone, features, labels, steps)


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
    steps, first_order = maml_family.adaptation(config, training, steps)
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


ALGORITHM = Algorithm(
    name="anil",
    title="ANIL (Raghu et al., 2020)",
    build_model=maml_family.build_model,
    classifier=classifier,
    episodes_per_step=maml_family.episodes_per_step,
    for_ways=maml_family.fit_head,
    bn_mode="batch",
    # Running statistics sound: only the head (no BatchNorm) is cloned; the backbone runs unadapted.
    unbalanced_support=maml_family.UNBALANCED_SUPPORT,
    options=maml_family.OPTIONS,
)
