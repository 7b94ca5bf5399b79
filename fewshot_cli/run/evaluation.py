"""The test protocol: mean accuracy and 95% confidence interval over seeded episodes.

Every algorithm is evaluated on the same episodes for the same seed, its queries classified by
its ``query_logits`` (the function training and ``predict`` use too). The BatchNorm mode is an
explicit choice, recorded with every result (``run.bn_mode``).

An algorithm that scores many episodes per call (``Algorithm.batch_logits``: MAML's vmap engine)
gets them in chunks built on the device (``data.batches.DeviceEpisodes``, the sampler's episodes
bit for bit); the others take them one by one. Accuracies stay on the device until the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fewshot_cli import __version__
from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import Algorithm, classify_queries
from fewshot_cli.data.batches import DeviceEpisodes
from fewshot_cli.data.source import Omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import protocol
from fewshot_cli.run.bn_mode import prepared_copy, resolve_bn_mode
from fewshot_cli.run.checkpoint import BEST, LAST, load_run, trained_iterations
from fewshot_cli.run.config import TrainConfig, pick_device
from fewshot_cli.run.results import append_row, check_writable

if TYPE_CHECKING:  # imported where used: predict needs this module, not learn2learn's episodes
    from fewshot_cli.data.episodes import Episode, EpisodeSampler


@dataclass
class EvalResult:
    """Per-episode accuracies and their summary.

    Attributes:
        accuracies: query accuracy of each episode, in ``[0, 1]``.
        seconds: wall-clock time of the evaluation.
    """

    accuracies: list[float]
    seconds: float

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def ci95(self) -> float:
        """1.96 x sample standard deviation / sqrt(episodes)."""
        n = len(self.accuracies)
        if n < 2:
            return float("nan")
        mean = self.mean  # once: the property walks the whole list
        variance = sum((a - mean) ** 2 for a in self.accuracies) / (n - 1)
        return 1.96 * math.sqrt(variance) / math.sqrt(n)


# Test episodes drawn (and, where the algorithm batches them, adapted) at once.
BATCH_EPISODES = 32


def refuse_test_steps(config: TrainConfig, steps: int | None, flag: str, run: object) -> None:
    """Refuse test adaptation ``steps`` (``flag`` on the command line) that a run cannot use."""
    if steps is None:
        return
    registry.refuse_options(
        config.algorithm, {"test_inner_steps": flag}, f"{run}, a {config.algorithm} run"
    )
    if steps < 1:
        raise FewshotError(f"{flag} must be at least 1 (got {steps})")


def evaluate(
    config: TrainConfig,
    model: torch.nn.Module,
    sampler: EpisodeSampler,
    episodes: int = 600,
    bn_mode: str = "auto",
    steps: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> EvalResult:
    """Accuracy of ``model`` on episodes ``0 .. episodes-1`` of ``sampler``.

    Args:
        config: the run's resolved configuration (its algorithm and settings).
        model: the trained network (left untouched).
        sampler: seeded test episodes.
        episodes: how many episodes.
        bn_mode: ``batch``, ``support``, ``running`` or ``auto``.
        steps: adaptation steps at test (MAML); default: the run's ``test_inner_steps``.
        device: where to compute.
        progress: show a progress bar (on a terminal only).

    Example::

        result = evaluate(config, model, EpisodeSampler(test_ds, 5, 1, 15), episodes=600)
        f"{result.mean:.1%} ± {result.ci95:.1%}"
    """
    if episodes < 1:
        raise FewshotError(f"episodes must be at least 1 (got {episodes})")
    algorithm = registry.get(config.algorithm)
    mode = resolve_bn_mode(config.algorithm, bn_mode, model)
    model = prepared_copy(algorithm, model, sampler.ways, mode, device)
    from tqdm import tqdm

    start = time.perf_counter()
    # Where the algorithm batches episodes, each chunk is built on the device at once; the
    # first chunk's answer (logits, or None) tells whether it does for this run.
    batches = None if algorithm.batch_logits is None else episode_batches(sampler, device)
    accuracies = []  # on the device: one transfer at the end, no wait per episode
    with tqdm(
        total=episodes,
        desc="evaluating",
        unit="episode",
        disable=None if progress else True,
        leave=False,
    ) as bar:  # None: terminal only
        for first in range(0, episodes, BATCH_EPISODES):
            count = min(BATCH_EPISODES, episodes - first)
            logits = None
            if batches is not None:
                batch = batches.batch(first, count)
                logits = algorithm.batch_logits(model, batch, config, mode, steps)
            if logits is not None:
                accuracies.append(query_accuracies(logits, batch.query_labels))
            else:  # one episode at a time
                batches = None
                for i in range(first, first + count):
                    episode = sampler[i].to(device)
                    logit = episode_logits(algorithm, model, episode, config, steps, mode)
                    accuracies.append(query_accuracies(logit[None], episode.query_labels[None]))
            bar.update(count)
    return EvalResult(torch.cat(accuracies).tolist(), time.perf_counter() - start)


def episode_batches(sampler: EpisodeSampler, device: torch.device | str) -> DeviceEpisodes:
    """``sampler``'s episodes built in batches on ``device`` (``data.batches.DeviceEpisodes``;
    ``sampler`` itself when it is one there already): the same episodes, bit for bit.

    Example::

        batch = episode_batches(sampler, "cuda").batch(0, 32)  # episodes 0..31
    """
    if isinstance(sampler, DeviceEpisodes):
        if sampler.device == torch.device(device):
            return sampler
        sampler = sampler.sampler
    return DeviceEpisodes(sampler, device)


def query_accuracies(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each episode's query accuracy ``[episodes]`` from logits ``[episodes, queries, ways]``.

    Example:
        >>> query_accuracies(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.tensor([[1, 1]]))
        tensor([0.5000])
    """
    return (logits.argmax(-1) == labels).float().mean(dim=1)


def episode_logits(
    algorithm: Algorithm,
    model: torch.nn.Module,
    episode: Episode,
    config: TrainConfig,
    steps: int | None = None,
    bn_mode: str = "batch",
) -> torch.Tensor:
    """Logits ``[queries, ways]`` of ``episode``'s queries at test (``model``: a ``prepared_copy``
    for ``bn_mode``; ``support`` classifies one query per forward pass).

    The adaptation (if any) runs with gradients; the queries are classified without. ``predict``
    computes the same for a user's images.

    Example::

        predictions = episode_logits(algorithm, tested, episode, config).argmax(1)
    """
    fitted = algorithm.classifier(
        model, episode.support, episode.support_labels, episode.ways, config, steps=steps
    )
    with torch.no_grad():
        return classify_queries(fitted, episode.query, bn_mode)


def checkpoint_notices(
    checkpoint_path: Path,
    iteration: int,
    planned: int,
    model: torch.nn.Module,
    ways: int,
    steps: int,
    action: str = "evaluating",
) -> list[str]:
    """What ``evaluate_run`` and ``predict`` tell before classifying: the checkpoint used (after
    ``action``), and a new head if any.

    Example::

        checkpoint_notices(Path("runs/maml/best.pt"), 300, 1000, model, ways=20, steps=5)[0]
        # 'evaluating runs/maml/best.pt (best validation accuracy, iteration 300 of 1000)'
    """
    what = {BEST: "best validation accuracy", LAST: "latest checkpoint"}.get(checkpoint_path.name)
    if checkpoint_path.name == LAST and not (checkpoint_path.parent / BEST).is_file():
        what = "latest checkpoint; the run has no best.pt"
    lines = [
        f"{action} {checkpoint_path} ({what + ', ' if what else ''}iteration {iteration} "
        f"of {planned})"
    ]
    # Models that classify through a trained output layer (Meta-SGD's wraps the network).
    head = getattr(getattr(model, "module", model), "head", None)
    if isinstance(head, torch.nn.Linear) and head.out_features != ways:
        lines.append(
            f"the model was trained with a {head.out_features}-way head: a new "
            f"zero-initialised {ways}-way head is adapted on the support images "
            f"({steps} steps)"
        )
    return lines


def evaluate_run(
    path: str | Path,
    csv_path: str | Path | None = None,
    ways: int | None = None,
    shots: int | None = None,
    queries: int | None = None,
    episodes: int = 600,
    part: str = "test",
    seed: int = 0,
    bn_mode: str = "auto",
    inner_steps: int | None = None,
    data: Omniglot | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
    download: bool = False,
    root_from_env: bool = False,
) -> tuple[EvalResult, dict]:
    """Evaluate a run directory (or checkpoint) and append the result to ``csv_path``.

    Ways, shots and queries default to the run's test settings; the dataset (from
    ``data_root``, default the run's; ``root_from_env``: ``data_root`` is only a default, which
    a run of another dataset than Omniglot with a folder of its own ignores) and split are the
    run's own.
    ``inner_steps`` (``--inner-steps``) changes the test adaptation of an algorithm that adapts
    (MAML) and is refused for others.
    ``notice`` hears, before the episodes run, which checkpoint is evaluated (file, iteration)
    and whether the model gets a new output head for other ways.

    Returns:
        ``(result, row)``: the accuracies and the CSV row written (also when ``csv_path`` is None).

    Example::

        result, row = evaluate_run("runs/protonet", "results/eval.csv", episodes=600)
    """
    from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
    from fewshot_cli.run.run_data import complete_from_data, load_run_data

    if episodes < 2:
        raise FewshotError(
            f"--episodes must be at least 2, for a confidence interval (got {episodes})"
        )
    if csv_path is not None:
        check_writable(csv_path)
    config, model, checkpoint_path, state = load_run(path)
    config = config.resolved()
    refuse_test_steps(config, inner_steps, "--inner-steps", path)
    mode = resolve_bn_mode(config.algorithm, bn_mode, model)  # refused before the data loads
    ways, shots = ways or config.test_ways, shots or config.test_shots
    queries = queries or config.test_queries
    if data is None:
        if root_from_env and config.dataset != "omniglot" and config.data_root:
            data_root = None  # a default folder does not override the run's own data
        data = load_run_data(config, data_root, download=download, progress=progress)
    config = complete_from_data(config, data)
    split = make_split(data, config.split, config.split_seed, config.split_dir)
    sampler = EpisodeSampler(
        meta_dataset(data, split, part), ways, shots, queries, seed=seed, part=part
    )
    if notice is not None:
        steps = inner_steps if inner_steps is not None else (config.test_inner_steps or 0)
        for line in checkpoint_notices(
            checkpoint_path, state["iteration"], config.iterations, model, ways, steps
        ):
            notice(line)
    result = evaluate(
        config, model, sampler, episodes, mode, inner_steps, pick_device(device), progress
    )
    test_steps = config.test_inner_steps if inner_steps is None else inner_steps
    row = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_id": checkpoint_path.parent.name,
        **protocol.training_values(config),
        "inner_steps_test": protocol.cell(test_steps),
        "data": data.digest,
        "split_part": part,
        "test_ways": ways,
        "test_shots": shots,
        "test_queries": queries,
        # The run may have stopped short of its planned iterations (--time-limit, a kill).
        "train_iterations": trained_iterations(checkpoint_path, state),
        "episodes": episodes,
        "seed": seed,
        "bn_mode": mode,
        "checkpoint_iteration": state["iteration"],
        "accuracy_mean": f"{result.mean:.5f}",
        "ci95": f"{result.ci95:.5f}",
        "eval_seconds": f"{result.seconds:.2f}",
        "checkpoint": str(checkpoint_path),
        "version": __version__,
    }
    if csv_path is not None:
        append_row(csv_path, row)
    return result, row
