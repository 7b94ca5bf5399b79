"""The test protocol: mean accuracy and 95% confidence interval over seeded episodes.

Both algorithms are evaluated on the same episodes for the same seed. The BatchNorm mode is an
explicit choice, recorded with every result:

- ``batch``: each episode normalises with its own batch statistics (transductive; what MAML's
  reference code does, since its BatchNorm keeps no running statistics);
- ``running``: the running statistics gathered in training (``model.eval()``), each query judged
  on its own; refused for a model that keeps none, or whose statistics do not fit its weights
  (MAML's: see ``UNSOUND_RUNNING_STATISTICS``).

Evaluation works on a deep copy of the model: adapted MAML clones share BatchNorm buffers with
their base model, and batch-mode forward passes update them, so the caller's model must not be
the one used.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from fewshot_cli import __version__, maml, protonet
from fewshot_cli.checkpoint import BEST, LAST, load_checkpoint, load_trained
from fewshot_cli.config import pick_device
from fewshot_cli.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.errors import FewshotError
from fewshot_cli.results import append_row, check_writable
from fewshot_cli.source import Omniglot, load_omniglot
from fewshot_cli.splits import make_split

BN_MODES = ("batch", "running")
DEFAULT_BN_MODE = {"maml": "batch", "protonet": "running"}
# Training that leaves BatchNorm running statistics which do not describe the trained weights.
# MAML: learn2learn's clones share the base model's buffers, so every meta-iteration writes the
# adapted clones' activations into them; evaluating with them gives chance accuracy.
UNSOUND_RUNNING_STATISTICS = {
    "maml": "its running statistics were gathered from MAML's adapted clones and do not fit "
            "the meta-learned weights",
}


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
        variance = sum((a - self.mean) ** 2 for a in self.accuracies) / (n - 1)
        return 1.96 * math.sqrt(variance) / math.sqrt(n)


def running_statistics_problem(algorithm: str, model: torch.nn.Module) -> str | None:
    """Why ``model``'s BatchNorm running statistics cannot be used at test, or None if they can.

    A model whose BatchNorm keeps no running statistics (``track_running_stats=False``, as in
    MAML's reference code) has none to use; one trained by an algorithm of
    ``UNSOUND_RUNNING_STATISTICS`` has statistics that do not fit its weights.

    Example:
        >>> running_statistics_problem("protonet", Conv4()) is None
        True
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return None
    if any(not m.track_running_stats or m.running_mean is None for m in norms):
        return "this model keeps no BatchNorm running statistics"
    if algorithm in UNSOUND_RUNNING_STATISTICS:
        return f"this model's BatchNorm running statistics are not sound: {UNSOUND_RUNNING_STATISTICS[algorithm]}"
    return None


def resolve_bn_mode(algorithm: str, bn_mode: str = "auto", model: torch.nn.Module | None = None) -> str:
    """The BatchNorm mode to evaluate with.

    ``auto`` is ``batch`` for MAML and ``running`` for ProtoNet (each paper's practice), and
    ``batch`` for a ``model`` whose running statistics cannot be used (see
    ``running_statistics_problem``); ``running`` for such a model is refused.

    Raises:
        FewshotError: an unknown mode, or ``running`` for a model without sound statistics.
    """
    mode = DEFAULT_BN_MODE[algorithm] if bn_mode == "auto" else bn_mode
    if mode not in BN_MODES:
        raise FewshotError(f"unknown BatchNorm mode '{bn_mode}' (choose from auto, {', '.join(BN_MODES)})")
    problem = running_statistics_problem(algorithm, model) if mode == "running" and model else None
    if problem and bn_mode == "auto":
        return "batch"
    if problem:
        raise FewshotError(f"--bn-mode running does not apply: {problem}; use --bn-mode batch "
                           f"(each episode's own statistics)")
    return mode


def evaluate(
    algorithm: str,
    model: torch.nn.Module,
    sampler: EpisodeSampler,
    episodes: int = 600,
    bn_mode: str = "auto",
    inner_steps: int = 3,
    inner_lr: float = 0.4,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> EvalResult:
    """Accuracy of ``model`` on episodes ``0 .. episodes-1`` of ``sampler``.

    Args:
        algorithm: ``maml`` or ``protonet``.
        model: the trained network (left untouched).
        sampler: seeded test episodes.
        episodes: how many episodes.
        bn_mode: ``batch``, ``running`` or ``auto``.
        inner_steps, inner_lr: MAML's adaptation at test.
        device: where to compute.
        progress: show a progress bar (on a terminal only).

    Example:
        >>> result = evaluate("protonet", model, EpisodeSampler(test_ds, 5, 1, 15), episodes=600)
        >>> f"{result.mean:.1%} ± {result.ci95:.1%}"
    """
    if episodes < 1:
        raise FewshotError(f"episodes must be at least 1 (got {episodes})")
    mode = resolve_bn_mode(algorithm, bn_mode, model)
    model = copy.deepcopy(model).to(device)
    model.train(mode == "batch")
    if algorithm == "maml":
        learner = maml.build_learner(maml.fit_head(model, sampler.ways), inner_lr, first_order=True)
    start = time.perf_counter()
    accuracies = []
    for index in tqdm(range(episodes), desc="evaluating", unit="episode",
                      disable=None if progress else True, leave=False):  # None: terminal only
        episode = sampler[index].to(device)
        if algorithm == "maml":
            clone = maml.adapt(learner, episode.support, episode.support_labels, inner_steps)
            with torch.no_grad():
                predictions = clone(episode.query).argmax(1)
        else:
            with torch.no_grad():
                embeddings = model(torch.cat([episode.support, episode.query]))
                n = len(episode.support)
                predictions = protonet.prototypical_logits(
                    embeddings[:n], episode.support_labels, embeddings[n:], sampler.ways).argmax(1)
        accuracies.append((predictions == episode.query_labels).float().mean().item())
    return EvalResult(accuracies, time.perf_counter() - start)


def checkpoint_notices(checkpoint_path: Path, iteration: int, planned: int, model: torch.nn.Module,
                       ways: int, steps: int) -> list[str]:
    """What ``evaluate_run`` tells before testing: the checkpoint used, and a new head if any.

    Example:
        >>> checkpoint_notices(Path("runs/maml/best.pt"), 300, 1000, model, ways=20, steps=5)[0]
        'evaluating runs/maml/best.pt (best validation accuracy, iteration 300 of 1000)'
    """
    what = {BEST: "best validation accuracy", LAST: "latest checkpoint"}.get(checkpoint_path.name)
    if checkpoint_path.name == LAST and not (checkpoint_path.parent / BEST).is_file():
        what = "latest checkpoint; the run has no best.pt"
    lines = [f"evaluating {checkpoint_path} ({what + ', ' if what else ''}iteration {iteration} "
             f"of {planned})"]
    head = getattr(model, "head", None)  # models that classify through a trained output layer
    if isinstance(head, torch.nn.Linear) and head.out_features != ways:
        lines.append(f"the model was trained with a {head.out_features}-way head: a new "
                     f"zero-initialised {ways}-way head is adapted on each episode's support set "
                     f"({steps} steps)")
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
) -> tuple[EvalResult, dict]:
    """Evaluate a run directory (or checkpoint) and append the result to ``csv_path``.

    Ways, shots and queries default to the run's test settings; the split is the run's own.
    ``notice`` hears, before the episodes run, which checkpoint is evaluated (file, iteration)
    and whether the model gets a new output head for other ways.

    Returns:
        ``(result, row)``: the accuracies and the CSV row written (also when ``csv_path`` is None).

    Example:
        >>> result, row = evaluate_run("runs/protonet", "results/eval.csv", episodes=600)
    """
    if inner_steps is not None and inner_steps < 1:
        raise FewshotError(f"--inner-steps must be at least 1 (got {inner_steps})")
    if episodes < 2:
        raise FewshotError(f"--episodes must be at least 2, for a confidence interval (got {episodes})")
    if csv_path is not None:
        check_writable(csv_path)
    config, model, checkpoint_path = load_trained(path)
    mode = resolve_bn_mode(config.algorithm, bn_mode, model)  # refused before the data loads
    iteration = load_checkpoint(checkpoint_path)["iteration"]
    ways, shots = ways or config.test_ways, shots or config.test_shots
    queries = queries or config.test_queries
    steps = inner_steps if inner_steps is not None else (config.test_inner_steps or 0)
    if data is None:
        data = load_omniglot(data_root or config.data_root, progress=progress)
    split = make_split(data, config.split, config.split_seed, config.split_dir)
    sampler = EpisodeSampler(meta_dataset(data, split, part), ways, shots, queries, seed=seed, part=part)
    if notice is not None:
        for line in checkpoint_notices(checkpoint_path, iteration, config.iterations, model, ways,
                                       steps):
            notice(line)
    result = evaluate(config.algorithm, model, sampler, episodes, mode, steps,
                      config.inner_lr or 0.0, pick_device(device), progress)
    is_maml = config.algorithm == "maml"
    row = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_id": checkpoint_path.parent.name,
        "algorithm": config.algorithm,
        "order": ("first" if config.first_order else "second") if is_maml else "",
        "backbone": config.backbone, "dataset": "omniglot", "split": config.split,
        "split_part": part, "rotations": config.rotations or config.split == "vinyals",
        "train_ways": config.ways, "train_shots": config.shots, "train_queries": config.queries,
        "test_ways": ways, "test_shots": shots, "test_queries": queries,
        "inner_steps_train": config.inner_steps if is_maml else "",
        "inner_steps_test": steps if is_maml else "",
        "inner_lr": config.inner_lr if is_maml else "",
        "train_iterations": config.iterations,
        # A best.pt (or a time-limited run) may stop short of the planned iterations.
        "checkpoint_iteration": iteration,
        "episodes": episodes, "seed": seed,
        "bn_mode": mode, "accuracy_mean": f"{result.mean:.5f}", "ci95": f"{result.ci95:.5f}",
        "eval_seconds": f"{result.seconds:.2f}", "checkpoint": str(checkpoint_path),
        "version": __version__,
    }
    if csv_path is not None:
        append_row(csv_path, row)
    return result, row
