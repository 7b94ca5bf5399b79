"""Vectorised MAML: every task of a meta-batch adapted and scored in one ``torch.func`` call.

The engine runs the same network as learn2learn's ``l2l.algorithms.MAML`` (the ``build_model``
Sequential: Conv-4 backbone + linear head) through ``torch.func.functional_call``: the inner loop
is ``torch.func.grad`` of the support loss, and ``torch.func.vmap`` maps the whole
adapt-then-score function over the task dimension of stacked tensors. The meta-gradient comes
from ordinary autograd through that call, into the model's own ``.grad``, so any optimizer steps
as it would after the l2l loop. Parameter names are the model's: checkpoints of either engine
load into the other.

BatchNorm: the vmapped function uses ``BatchStatNorm`` (mean/var operations) in place of each
``nn.BatchNorm*``, with the same parameters. ``F.batch_norm`` under vmap gives second-order
meta-gradients about 2% off learn2learn's (float64) and non-zero gradients on the convolution
biases in front of BatchNorm; mean/var operations agree with learn2learn to ~1e-14. Running
statistics cannot be updated from inside the vmapped call, so training refuses a network whose
BatchNorm tracks them (build it with ``track_running_stats=False``, as the MAML paper's code does;
``without_running_stats`` converts one). Evaluation takes either BatchNorm mode.

Example::

    model = without_running_stats(build_model(5, "conv4-strided"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, accuracy = meta_step(model, optimizer, episodes, steps=1, inner_lr=0.4, first_order=False)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from fewshot_cli.algorithms.base import tracks_running_stats, without_running_stats
from fewshot_cli.choices import ENGINES  # noqa: F401 (defined there for the CLI)
from fewshot_cli.data.batches import TaskBatch  # the stacked tasks this engine consumes
from fewshot_cli.errors import FewshotError

__all__ = [
    "TaskBatch",
    "stack_episodes",
    "BatchStatNorm",
    "without_running_stats",
    "tracks_running_stats",
    "functional_twin",
    "check_trainable",
    "meta_loss",
    "meta_update",
    "meta_step",
    "adapted_logits",
    "adapt_and_predict",
]


Episodes = TaskBatch | Sequence


def stack_episodes(episodes: Episodes) -> TaskBatch:
    """Stack episodes (anything with ``support``, ``support_labels``, ``query``, ``query_labels``).

    Args:
        episodes: a ``TaskBatch`` (returned as is) or a sequence of same-shaped episodes.

    Example::

        batch = stack_episodes([sampler[i] for i in range(32)])
        batch.support.shape  # 5-way 1-shot
        # torch.Size([32, 5, 1, 28, 28])
    """
    if isinstance(episodes, TaskBatch):
        return episodes
    if len(episodes) == 0:
        raise FewshotError("no episodes to stack")
    fields = ("support", "support_labels", "query", "query_labels")
    shapes = {tuple(tuple(getattr(e, f).shape) for f in fields) for e in episodes}
    if len(shapes) != 1:
        raise FewshotError(
            "the vmap engine needs episodes of one shape (same ways, shots and queries)"
        )
    return TaskBatch(*(torch.stack([getattr(e, f) for e in episodes]) for f in fields))


class BatchStatNorm(torch.nn.Module):
    """BatchNorm from mean/var operations, safe for second-order gradients under ``vmap``.

    Normalises over every dimension but the channel one (dim 1) with the biased variance, as
    ``nn.BatchNorm*`` does in training. With ``running_mean``/``running_var`` given it uses those
    instead (``nn.BatchNorm*`` in eval mode). Parameters ``weight``/``bias`` keep BatchNorm's names.

    Args:
        num_features: channels.
        eps: added to the variance (``nn.BatchNorm2d``'s default 1e-5).
        affine: learnable ``weight`` and ``bias``.
        running_mean, running_var: fixed statistics, or None for batch statistics.

    Example:
        >>> BatchStatNorm(64)(torch.randn(8, 64, 14, 14)).shape
        torch.Size([8, 64, 14, 14])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        affine: bool = True,
        running_mean: torch.Tensor | None = None,
        running_var: torch.Tensor | None = None,
    ):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = torch.nn.Parameter(torch.zeros(num_features)) if affine else None
        # Plain attributes, not buffers: functional_call then never asks for them.
        self.fixed_mean, self.fixed_var = running_mean, running_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.fixed_mean is None:
            dims = [0] + list(range(2, x.dim()))
            mean = x.mean(dim=dims, keepdim=True)
            # The variance of the centred values, and the output from them too: torch.var_mean
            # and folding the mean into a shift (x * scale - mean * scale) round differently in
            # float32, enough for the two engines' float32 trainings to part (tests/test_engine.py).
            centred = x - mean
            var = (centred**2).mean(dim=dims, keepdim=True)
        else:
            mean, var = self.fixed_mean.view(shape), self.fixed_var.view(shape)
            centred = x - mean
        y = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


_NORMS = torch.nn.modules.batchnorm._BatchNorm


def functional_twin(model: torch.nn.Module, bn_mode: str = "batch") -> torch.nn.Module:
    """A copy of ``model``'s structure, sharing its parameters, with ``BatchStatNorm`` norms.

    Args:
        model: the network (left untouched).
        bn_mode: ``batch`` (statistics of each batch) or ``running`` (the model's running
            statistics; the model must keep them).
    """
    if bn_mode not in ("batch", "running"):
        raise FewshotError(f"unknown BatchNorm mode {bn_mode!r} (choose from batch, running)")
    # Share parameters and buffers with the model instead of copying them.
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    twin = copy.deepcopy(model, memo)
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _NORMS):
                parent._modules[name] = _stat_norm(child, bn_mode)
    return twin


def _stat_norm(norm: torch.nn.Module, bn_mode: str) -> BatchStatNorm:
    fixed = (None, None)
    if bn_mode == "running":
        if norm.running_mean is None:
            raise FewshotError(
                "BatchNorm mode 'running' needs a network that keeps running statistics"
            )
        fixed = (norm.running_mean.detach(), norm.running_var.detach())
    new = BatchStatNorm(norm.num_features, norm.eps, norm.affine, *fixed)
    if norm.affine:
        new.weight, new.bias = norm.weight, norm.bias
    return new


def _adapt(twin, params, support, support_labels, steps, inner_lr, first_order):
    """``steps`` gradient steps of one task's support loss from ``params`` (inside vmap)."""

    def support_loss(fast):
        return F.cross_entropy(functional_call(twin, fast, (support,)), support_labels)

    fast = params
    for _ in range(steps):
        grads = grad(support_loss)(fast)
        if first_order:  # the inner gradient is a constant to the meta-gradient, as in l2l
            grads = {k: g.detach() for k, g in grads.items()}
        fast = {k: fast[k] - inner_lr * grads[k] for k in fast}
    return fast


def _query_logits(twin, fast, support, query):
    """The queries' logits, passed together with the support set (support first), as every
    algorithm classifies queries (``algorithms.base``: in ``batch`` BatchNorm mode a query's
    logits depend on the support images normalised with it)."""
    return functional_call(twin, fast, (torch.cat([support, query]),))[support.shape[0] :]


def check_trainable(model: torch.nn.Module) -> None:
    """Refuse (``FewshotError``) a network this engine cannot train: one whose BatchNorm keeps
    running statistics, which the vmapped call cannot update.

    Example:
        >>> check_trainable(without_running_stats(torch.nn.Sequential(torch.nn.BatchNorm2d(4))))
    """
    if tracks_running_stats(model):
        raise FewshotError(
            "the vmap engine trains only networks whose BatchNorm keeps no running "
            "statistics (track_running_stats=False); use the l2l engine for this one"
        )


def meta_loss(
    model: torch.nn.Module,
    episodes: Episodes,
    steps: int,
    inner_lr: float,
    first_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task query ``(losses, accuracies)`` after adaptation, each ``[T]``, differentiable.

    ``losses.mean().backward()`` gives the meta-gradient that learn2learn's loop accumulates
    (through the adaptation when ``first_order`` is False).

    Args:
        model: the meta-learner's network (BatchNorm without running statistics).
        episodes: a ``TaskBatch`` or same-shaped episodes.
        steps: inner gradient steps on each support set.
        inner_lr: inner learning rate.
        first_order: drop the second-order terms (first-order MAML).
    """
    check_trainable(model)
    params = dict(model.named_parameters())
    device = next(iter(params.values())).device
    batch = stack_episodes(episodes).to(device)
    twin = functional_twin(model)

    def task(params, support, support_labels, query, query_labels):
        fast = _adapt(twin, params, support, support_labels, steps, inner_lr, first_order)
        logits = _query_logits(twin, fast, support, query)
        loss = F.cross_entropy(logits, query_labels)
        return loss, (logits.argmax(-1) == query_labels).to(logits.dtype).mean()

    return vmap(task, in_dims=(None, 0, 0, 0, 0))(
        params, batch.support, batch.support_labels, batch.query, batch.query_labels
    )


def meta_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    episodes: Episodes,
    steps: int,
    inner_lr: float,
    first_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One meta-update over a batch of tasks; mean query ``(loss, accuracy)`` as 0-d tensors.

    ``meta_step`` without reading the results back to the host, so nothing in it waits for the
    device: ``maml_graph.GraphedStep`` records exactly this into a CUDA graph.

    Args:
        model, optimizer, episodes, steps, inner_lr, first_order: as in ``meta_step``.

    Example::

        loss, accuracy = meta_update(model, optimizer, batch, 1, 0.4)  # tensors on the device
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    losses, accuracies = meta_loss(model, episodes, steps, inner_lr, first_order)
    loss = losses.mean()
    loss.backward()
    optimizer.step()
    return loss.detach(), accuracies.mean()


def meta_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    episodes: Episodes,
    steps: int,
    inner_lr: float,
    first_order: bool = False,
) -> tuple[float, float]:
    """One meta-update over a batch of tasks; returns mean query ``(loss, accuracy)``.

    Same contract as ``fewshot_cli.maml.meta_step`` (zero the gradients, accumulate the mean
    meta-gradient into ``.grad``, step the optimizer), with the whole batch in one vmapped call.

    Args:
        model: the network the optimizer updates (BatchNorm without running statistics).
        optimizer: over ``model.parameters()``.
        episodes: a ``TaskBatch`` or a list of same-shaped episodes.
        steps, inner_lr, first_order: the inner loop, as in ``meta_loss``.

    Example::

        loss, acc = meta_step(model, optimizer, batch, steps=1, inner_lr=0.4, first_order=False)
    """
    loss, accuracy = meta_update(model, optimizer, episodes, steps, inner_lr, first_order)
    return loss.item(), accuracy.item()


def adapted_logits(
    model: torch.nn.Module,
    episodes: Episodes,
    steps: int,
    inner_lr: float,
    bn_mode: str = "batch",
    chunk: int = 32,
) -> torch.Tensor:
    """Query logits ``[T, Q, ways]`` of each task after ``steps`` first-order inner steps.

    What evaluation does per episode with learn2learn (clone, adapt, no-grad forward on the
    queries), for ``chunk`` episodes per vmapped call. Nothing is recorded for autograd and the
    model is left untouched.

    Args:
        model: the trained network; its head must have ``ways`` outputs.
        episodes: a ``TaskBatch`` or same-shaped episodes.
        steps, inner_lr: adaptation at test.
        bn_mode: ``batch`` (each episode's statistics) or ``running`` (the model's).
        chunk: episodes per vmapped call (bounds memory).

    Example::

        logits = adapted_logits(model, [sampler[i] for i in range(100)], steps=3, inner_lr=0.4)
    """
    if chunk < 1:
        raise FewshotError(f"chunk must be at least 1 (got {chunk})")
    params = {k: p.detach() for k, p in model.named_parameters()}
    device = next(iter(params.values())).device
    batch = stack_episodes(episodes)
    twin = functional_twin(model, bn_mode)

    def task(params, support, support_labels, query):
        fast = _adapt(twin, params, support, support_labels, steps, inner_lr, first_order=True)
        return _query_logits(twin, fast, support, query)

    mapped = vmap(task, in_dims=(None, 0, 0, 0))
    out = []
    # torch.func.grad ignores an enclosing no_grad, so the inner steps still see their gradients.
    with torch.no_grad():
        for start in range(0, len(batch), chunk):
            part = batch[start : start + chunk].to(device)
            out.append(mapped(params, part.support, part.support_labels, part.query))
    return torch.cat(out)


def adapt_and_predict(
    model: torch.nn.Module,
    episodes: Episodes,
    steps: int,
    inner_lr: float,
    bn_mode: str = "batch",
    chunk: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predictions [T, Q], accuracies [T])`` of the adapted model on each task's queries.

    See ``adapted_logits`` for the arguments.

    Example::

        _, accuracies = adapt_and_predict(model, episodes, steps=3, inner_lr=0.4)
    """
    batch = stack_episodes(episodes)
    predictions = adapted_logits(model, batch, steps, inner_lr, bn_mode, chunk).argmax(-1)
    labels = batch.query_labels.to(predictions.device)
    return predictions, (predictions == labels).float().mean(dim=1)
