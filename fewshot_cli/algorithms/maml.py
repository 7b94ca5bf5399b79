"""MAML (Finn et al., 2017) through learn2learn's ``l2l.algorithms.MAML``.

Per task, the meta-learner is ``clone()``-d, the clone ``adapt()``-s with a few gradient steps on
the support loss, and the query loss of the adapted clone is back-propagated to the initial
weights (through the adaptation when second order). ``l2l.clone_module`` shares BatchNorm
buffers between clones and the base model, so evaluation works on a copy of the model.

Two engines compute the same meta-gradient (``--engine``): ``l2l`` (learn2learn's loop over
tasks) and ``vmap`` (``algorithms.maml_vmap``: a meta-batch in one ``torch.func`` call, which
also adapts many test episodes at once in ``batch_logits``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fewshot_cli.algorithms import maml_family, maml_vmap
from fewshot_cli.algorithms.base import Algorithm, Classifier, TrainConfig, step_on_episodes

if TYPE_CHECKING:  # learn2learn itself is imported where used: it costs seconds
    from fewshot_cli.data.episodes import Episode
    from fewshot_cli.l2l import l2l


def build_learner(
    model: torch.nn.Module, inner_lr: float, first_order: bool = False
) -> l2l.algorithms.MAML:
    """Wrap ``model`` in learn2learn's MAML.

    Example:
        >>> learner = build_learner(maml_family.network(5), inner_lr=0.4)
        >>> clone = learner.clone()
    """
    from fewshot_cli.l2l import l2l

    return l2l.algorithms.MAML(model, lr=inner_lr, first_order=first_order)


def adapt(
    learner: l2l.algorithms.MAML,
    support: torch.Tensor,
    support_labels: torch.Tensor,
    steps: int,
    first_order: bool | None = None,
) -> l2l.algorithms.MAML:
    """A clone of ``learner`` after ``steps`` gradient steps on the support loss."""
    clone = learner.clone(first_order=first_order)
    return maml_family.inner_loop(clone, support, support_labels, steps)


def classifier(
    model: torch.nn.Module,
    support: torch.Tensor,
    support_labels: torch.Tensor,
    ways: int,
    config: TrainConfig,
    training: bool = False,
    steps: int | None = None,
) -> Classifier:
    """Adapt a clone of ``model`` on the support set; return its query-logits function.

    In training the clone takes ``config.inner_steps`` steps, first or second order as the run;
    at test ``steps`` (default ``config.test_inner_steps``) first-order steps, since no
    meta-gradient follows. The queries go through the adapted clone together with the support
    images (the package's batch-BatchNorm definition, see ``algorithms.base``).

    Example::

        logits = classifier(model, support, labels, 5, config)(query)
    """
    steps, first_order = maml_family.adaptation(config, training, steps)
    learner = build_learner(model, config.inner_lr, first_order)
    return maml_family.with_support(adapt(learner, support, support_labels, steps), support)


def engine_step(
    algorithm: Algorithm,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    episodes: list[Episode],
    config: TrainConfig,
) -> tuple[float, float]:
    """One meta-iteration with the run's engine; mean query ``(loss, accuracy)``.

    ``l2l``: the seam's ``step_on_episodes`` (learn2learn's clone/adapt per task); ``vmap``:
    ``maml_vmap.meta_step`` on the same tasks (the same meta-gradient, in one call).

    Example::

        loss, accuracy = engine_step(ALGORITHM, model, optimizer, episodes, config)
    """
    if config.engine == "vmap":
        return maml_vmap.meta_step(
            model, optimizer, episodes, config.inner_steps, config.inner_lr, config.first_order
        )
    return step_on_episodes(algorithm, model, optimizer, episodes, config)


def batch_logits(
    model: torch.nn.Module,
    episodes: list[Episode],
    config: TrainConfig,
    bn_mode: str,
    steps: int | None = None,
) -> torch.Tensor | None:
    """Test logits ``[episodes, queries, ways]`` of same-shaped episodes in vmapped calls, or
    None where the per-episode loop is the one to use (the ``l2l`` engine, ``support`` BatchNorm).

    Same adaptation as ``classifier`` at test (``steps`` first-order steps, queries classified
    together with the support set), so accuracies equal the loop's.

    Example::

        logits = batch_logits(tested, [sampler[i] for i in range(32)], config, "batch")
    """
    if config.engine != "vmap" or bn_mode == "support":
        return None
    steps = config.test_inner_steps if steps is None else steps
    images = episodes[0].support.shape[0] + episodes[0].query.shape[0]
    # About 2000 images per call keeps activations (and inner gradients) to a few hundred MB.
    return maml_vmap.adapted_logits(
        model, episodes, steps, config.inner_lr, bn_mode, chunk=max(1, 2048 // images)
    )


ALGORITHM = Algorithm(
    name="maml",
    title="MAML (Finn et al., 2017)",
    build_model=maml_family.build_model,
    classifier=classifier,
    episodes_per_step=maml_family.episodes_per_step,
    step=engine_step,
    batch_logits=batch_logits,
    for_ways=maml_family.fit_head,
    # Its reference BatchNorm keeps no running statistics: each batch normalises itself.
    bn_mode="batch",
    # learn2learn's clones share the base model's buffers, so every meta-iteration writes the
    # adapted clones' activations into them: evaluating with them gives chance accuracy.
    unsound_running_stats="they were gathered from MAML's adapted clones and do not fit the "
    "meta-learned weights",
    unbalanced_support=maml_family.UNBALANCED_SUPPORT,
    options=(*maml_family.OPTIONS, "engine"),
)
