"""The one interface every algorithm fills in: ``Algorithm``, a dataclass of data and functions.

The rest of the package (training loop, evaluation, predict, reproduce, aggregate, plots, CLI)
asks an ``Algorithm`` (found by name in ``registry``) and never compares names itself. Adding an
algorithm is one module that builds an ``Algorithm`` plus one line in ``registry``.

Functions receive the run's *resolved* configuration (``TrainConfig``: a ``run.config``
configuration, whose attributes alone this layer reads). An algorithm's paper protocol (its
defaults, published numbers, budgets) is data in ``papers``.

BatchNorm modes, one definition everywhere (training, validation, ``eval`` and ``predict``):

- ``batch``: the network is in training mode and every forward pass normalises with the
  statistics of its own batch. Adapting to a support set (MAML's inner steps) sees the support
  images alone, unless the algorithm embeds an episode once (ANIL adapts its head on the support
  part of the one pass below); the queries are always classified in one forward pass *together
  with the support images* (support first, queries after), so a query's logits depend on the
  support set and on the queries passed with it, the same way in training, ``eval`` and
  ``predict``.
- ``support``: as ``batch``, but each query is classified in a forward pass of its own together
  with the support images (``classify_queries``), so its logits depend on the support set and on
  that query only, whatever other queries are classified with it (``predict``'s default).
- ``running``: the network is in evaluation mode and uses the running statistics gathered in
  training: each image is judged on its own.

Example::

    from fewshot_cli.algorithms import registry
    algorithm = registry.get("protonet")
    model = algorithm.build_model(config)
    logits = algorithm.query_logits(model, episode, config)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from fewshot_cli.choices import BN_MODES  # noqa: F401 (defined there for the CLI)
from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:
    from fewshot_cli.data.batches import TaskBatch
    from fewshot_cli.data.episodes import Episode, EpisodeSampler

# A run's resolved configuration (``run.config.TrainConfig``, a layer above): this layer reads
# its attributes only.
TrainConfig = Any


# Query images to logits, for one support set the classifier was fitted to.
Classifier = Callable[[torch.Tensor], torch.Tensor]


_NORMS = torch.nn.modules.batchnorm._BatchNorm


def tracks_running_stats(model: torch.nn.Module) -> bool:
    """Whether any BatchNorm of ``model`` keeps running statistics (what ``running`` BatchNorm
    mode needs).

    Example:
        >>> tracks_running_stats(torch.nn.BatchNorm2d(4, track_running_stats=False))
        False
    """
    return any(isinstance(m, _NORMS) and m.running_mean is not None for m in model.modules())


def without_running_stats(model: torch.nn.Module) -> torch.nn.Module:
    """Turn every BatchNorm of ``model`` (in place) into one without running statistics.

    The result behaves as ``nn.BatchNorm2d(..., track_running_stats=False)``: batch statistics in
    training and evaluation alike, the MAML paper's BatchNorm. Returns ``model``.

    Example:
        >>> model = without_running_stats(torch.nn.Sequential(torch.nn.BatchNorm2d(4)))
        >>> tracks_running_stats(model)
        False
    """
    for module in model.modules():
        if isinstance(module, _NORMS):
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
    return model


def keep_model(model: torch.nn.Module, ways: int) -> torch.nn.Module:
    """``for_ways`` of an algorithm whose model serves any number of ways unchanged."""
    return model


def one_episode(config: TrainConfig) -> int:
    """``episodes_per_step`` of an algorithm that trains on one episode per iteration."""
    return 1


@dataclass(frozen=True)
class Algorithm:
    """A meta-learning algorithm: what the training loop, evaluation and reports need of it.

    Attributes:
        name: the name on the command line, in ``config.json`` and in the CSV.
        title: one line for help texts, e.g. ``"MAML (Finn et al., 2017)"``.
        build_model: ``build_model(config)``: the freshly initialised network of a configuration;
            its ``state_dict`` is what checkpoints hold.
        classifier: ``classifier(model, support, support_labels, ways, config, training=False,
            steps=None)``: fit to a support set (MAML adapts a clone), returning the function
            from query images to logits ``[queries, ways]``: the one definition of an episode's
            query logits in training, validation, ``eval`` and ``predict``. ``training`` selects
            the training-time adaptation (with its graph); ``steps`` overrides the test steps.
        episodes_per_step: ``episodes_per_step(config)``: episodes of one training iteration
            (MAML's meta-batch; 1 by default).
        step: replaces the default training iteration (``step_on_episodes``):
            ``step(algorithm, model, optimizer, episodes, config)`` returning ``(loss, accuracy)``.
            Its gradient must be that of the *mean* loss over ``episodes``, ending with one
            ``optimizer.step()`` (data-parallel training averages gradients there).
        batch_logits: ``batch_logits(model, episodes, config, bn_mode, steps)``: test logits
            ``[episodes, queries, ways]`` of many same-shaped episodes at once, as
            ``classifier`` gives them one by one, or None where the per-episode path applies.
        for_ways: ``for_ways(model, ways)``: the model ready for ``ways``-way episodes at test.
        bn_mode: BatchNorm mode at test when ``--bn-mode auto`` (``batch`` or ``running``;
            ``predict`` uses ``support`` where this is ``batch``).
        unsound_running_stats: why the BatchNorm running statistics its training leaves do not
            fit the trained weights (``--bn-mode running`` is then refused), or None.
        unbalanced_support: why a support set with more images of some classes than of others
            biases its predictions (``predict`` then warns), or None.
        options: the ``TrainConfig`` fields only this algorithm uses; set for another one, they
            are refused (``registry.refuse_options``).
    """

    name: str
    title: str
    build_model: Callable[[TrainConfig], torch.nn.Module]
    classifier: Callable[..., Classifier]
    episodes_per_step: Callable[[TrainConfig], int] = one_episode
    step: Callable[..., tuple[float, float]] | None = None
    batch_logits: Callable[..., torch.Tensor | None] | None = None
    for_ways: Callable[[torch.nn.Module, int], torch.nn.Module] = keep_model
    bn_mode: str = "batch"
    unsound_running_stats: str | None = None
    unbalanced_support: str | None = None
    options: tuple[str, ...] = ()

    def query_logits(
        self,
        model: torch.nn.Module,
        episode: Episode,
        config: TrainConfig,
        training: bool = False,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Logits ``[queries, ways]`` of an episode's queries, fitted to its support set.

        Example::

            predictions = algorithm.query_logits(model, episode, config).argmax(1)
        """
        fitted = self.classifier(
            model,
            episode.support,
            episode.support_labels,
            episode.ways,
            config,
            training=training,
            steps=steps,
        )
        return fitted(episode.query)

    def train_step(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        sampler: EpisodeSampler,
        iteration: int,
        config: TrainConfig,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world: int = 1,
    ) -> tuple[float, float]:
        """Training iteration ``iteration`` on its episodes of ``sampler``; ``(loss, accuracy)``.

        With ``world`` data-parallel processes this process (``rank``) steps on its share of the
        iteration's episodes; ``run.distributed`` averages the gradients of all shares before
        ``optimizer.step`` (a step pre-hook), whatever ``step`` computes them.

        Example::

            loss, accuracy = algorithm.train_step(model, optimizer, sampler, 0, config)
        """
        episodes = episodes_of_step(
            sampler, iteration, self.episodes_per_step(config), device, rank, world
        )
        return (self.step or step_on_episodes)(self, model, optimizer, episodes, config)


def classify_queries(
    fitted: Classifier, query: torch.Tensor, bn_mode: str, chunk: int | None = None
) -> torch.Tensor:
    """Logits ``[queries, ways]`` of ``query`` from a fitted classifier, in ``bn_mode``.

    ``support`` passes one query per call (a batch of the support images and that query);
    the other modes pass ``chunk`` queries per call (default: all at once).

    Example::

        logits = classify_queries(algorithm.classifier(model, s, labels, 5, config), q, "support")
    """
    size = 1 if bn_mode == "support" else max(1, chunk or len(query))
    return torch.cat([fitted(query[i : i + size]) for i in range(0, len(query), size)])


def step_on_episodes(
    algorithm: Algorithm,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    episodes: list[Episode],
    config: TrainConfig,
) -> tuple[float, float]:
    """One optimizer step on the mean query loss of ``episodes``; their mean ``(loss, accuracy)``.

    The query logits come from ``algorithm.query_logits(..., training=True)``. Each episode's
    loss is back-propagated on its own, which frees its graph at once instead of holding the
    whole batch (MAML's meta-batch).

    Example::

        loss, accuracy = step_on_episodes(algorithm, model, optimizer, [episode], config)
    """
    model.train()
    optimizer.zero_grad()
    total_loss, total_accuracy = 0.0, 0.0
    for episode in episodes:
        logits = algorithm.query_logits(model, episode, config, training=True)
        loss = F.cross_entropy(logits, episode.query_labels)
        (loss / len(episodes)).backward()
        total_loss += loss.item()
        total_accuracy += (logits.argmax(1) == episode.query_labels).float().mean().item()
    optimizer.step()
    return total_loss / len(episodes), total_accuracy / len(episodes)


def episodes_of_step(
    sampler: EpisodeSampler,
    iteration: int,
    per_step: int,
    device: torch.device | str,
    rank: int = 0,
    world: int = 1,
) -> list[Episode] | TaskBatch:
    """Episodes ``iteration * per_step ...`` of ``sampler`` on ``device``: one iteration's tasks.

    With ``world`` processes, process ``rank`` takes the ``rank``-th of ``world`` equal
    contiguous shares of them (``per_step`` must divide by ``world``). A sampler that builds
    batches itself (``data.batches.DeviceEpisodes``) gives the same episodes as one
    ``TaskBatch``, which the vmap engine takes as it is and other steps iterate as episodes.

    Example::

        batch = episodes_of_step(sampler, 3, per_step=32, device="cpu")  # episodes 96..127
        share = episodes_of_step(sampler, 3, 32, "cpu", rank=1, world=2)  # episodes 112..127
    """
    if per_step % world:
        raise FewshotError(
            f"{per_step} episodes per iteration do not split across {world} processes"
        )
    share = per_step // world
    first = iteration * per_step + rank * share
    if hasattr(sampler, "batch"):
        return sampler.batch(first, share).to(device)
    return [sampler[first + j].to(device) for j in range(share)]
