"""BatchNorm at test time: the mode an evaluation or a prediction uses, and the model copy it
runs on. The mode is an explicit choice, recorded with every result (its names are defined in
``algorithms.base``):

- ``batch``: the support images and the queries of an episode are normalised together with
  their own batch statistics (transductive; MAML's reference code keeps no running statistics);
- ``support``: each query is normalised together with the support images alone, in a forward
  pass of its own (``predict``'s default where the algorithm's own mode is ``batch``);
- ``running``: the running statistics gathered in training (``model.eval()``), each query judged
  on its own; refused for a model that keeps none, or whose statistics do not fit its weights
  (``Algorithm.unsound_running_stats``).

Evaluation works on a deep copy of the model (``prepared_copy``): adapted MAML clones share
BatchNorm buffers with their base model, and batch-mode forward passes update them, so the
caller's model must not be the one used.
"""

from __future__ import annotations

import copy

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.base import BN_MODES, Algorithm
from fewshot_cli.errors import FewshotError


def running_statistics_problem(algorithm: str, model: torch.nn.Module) -> str | None:
    """Why ``model``'s BatchNorm running statistics cannot be used at test, or None if they can.

    A model whose BatchNorm keeps no running statistics (``track_running_stats=False``, as in
    MAML's reference code) has none to use; one trained by an algorithm whose training leaves
    unsound statistics (``Algorithm.unsound_running_stats``) has statistics that do not fit.

    Example::

        running_statistics_problem("protonet", Conv4()) is None
        # True
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return None
    if any(not m.track_running_stats or m.running_mean is None for m in norms):
        return "this model keeps no BatchNorm running statistics"
    why = registry.get(algorithm).unsound_running_stats
    if why:
        return f"this model's BatchNorm running statistics are not sound: {why}"
    return None


def resolve_bn_mode(
    algorithm: str,
    bn_mode: str = "auto",
    model: torch.nn.Module | None = None,
    predicting: bool = False,
) -> str:
    """The BatchNorm mode to evaluate (or, with ``predicting``, to predict) with.

    ``auto`` is the algorithm's own mode (batch for MAML, running for ProtoNet: each paper's
    practice), and ``batch`` for a ``model`` whose running statistics cannot be used (see
    ``running_statistics_problem``); ``running`` for such a model is refused. When
    ``predicting``, ``auto`` gives ``support`` where it would give ``batch``, so that a
    prediction never depends on the other queries.

    Raises:
        FewshotError: an unknown mode, or ``running`` for a model without sound statistics.

    Example::

        resolve_bn_mode("maml", "auto", predicting=True)
        # 'support'
    """
    mode = registry.get(algorithm).bn_mode if bn_mode == "auto" else bn_mode
    if mode not in BN_MODES:
        raise FewshotError(
            f"unknown BatchNorm mode '{bn_mode}' (choose from auto, {', '.join(BN_MODES)})"
        )
    problem = running_statistics_problem(algorithm, model) if mode == "running" and model else None
    if problem and bn_mode != "auto":
        raise FewshotError(
            f"--bn-mode running does not apply: {problem}; use --bn-mode support or batch "
            f"(statistics of the support images with each query, or with all of them)"
        )
    if problem:
        mode = "batch"
    return "support" if predicting and bn_mode == "auto" and mode == "batch" else mode


def prepared_copy(
    algorithm: Algorithm,
    model: torch.nn.Module,
    ways: int,
    bn_mode: str,
    device: torch.device | str,
) -> torch.nn.Module:
    """A copy of ``model`` on ``device``, ready for ``ways``-way episodes in ``bn_mode``.

    ``model`` itself is left untouched (see the module docstring).

    Example::

        model_20 = prepared_copy(registry.get(config.algorithm), model, 20, "batch", "cuda")
    """
    model = algorithm.for_ways(copy.deepcopy(model).to(device), ways)
    model.train(bn_mode != "running")  # batch and support: statistics of each forward pass
    return model
