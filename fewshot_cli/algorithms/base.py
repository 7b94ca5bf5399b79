"""``Algorithm``: the one interface every algorithm fills in (data and functions).

The rest of the package asks an ``Algorithm`` (by name from ``registry``) and never compares
names itself; an algorithm is one module plus one line in ``registry``. Its paper protocol is
data in ``papers``.

BatchNorm modes, the same in training, validation, ``eval`` and ``predict``:

- ``batch``: training mode, batch statistics. The queries are classified in one forward pass
  together with the support images, so a query's logits depend on the support set and on the
  other queries; support-only passes (MAML's inner steps) see the support images alone.
- ``support``: as ``batch``, but one query per pass with the support images, so its logits
  depend on the support set and that query only (``predict``'s default).
- ``running``: evaluation mode, the running statistics of training: each image on its own.

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

# A run's resolved ``run.config.TrainConfig`` (a layer above): only its attributes are read.
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
    """A meta-learning algorithm: what training, evaluation and reports need of it.

    Attributes:
        name: the name on the command line, in ``config.json`` and in the CSV.
        title: one line for help texts, e.g. ``"MAML (Finn et al., 2017)"``.
        build_model: ``build_model(config)``: the freshly initialised network.
        classifier: ``classifier(model, support, support_labels, ways, config, training=False,
            steps=None)``: fits to a support set and returns a function from query images to
            logits ``[queries, ways]``, used everywhere; ``training`` keeps the adaptation's
            graph, ``steps`` overrides the test steps.
        episodes_per_step: ``episodes_per_step(config)``: episodes per training iteration.
        step: ``step(algorithm, model, optimizer, episodes, config) -> (loss, accuracy)``, in
            place of ``step_on_episodes``; its gradient must be that of the mean loss, ending
            with one ``optimizer.step()`` (data-parallel training averages gradients there).
        batch_logits: ``batch_logits(model, episodes, config, bn_mode, steps)``: test logits
            ``[episodes, queries, ways]`` of same-shaped episodes at once, or None.
        for_ways: ``for_ways(model, ways)``: the model ready for ``ways``-way test episodes.
        bn_mode: test BatchNorm mode for ``--bn-mode auto`` (``batch`` or ``running``;
            ``predict`` then uses ``support`` for ``batch``).
        unsound_running_stats: why ``--bn-mode running`` is refused, or None.
        unbalanced_support: why ``predict`` warns about an unbalanced support set, or None.
        options: ``TrainConfig`` fields only this algorithm uses (refused for others).
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
