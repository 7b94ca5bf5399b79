"""The vmap MAML meta-step captured once as a CUDA graph and replayed every iteration.

A meta-step of a Conv-4 on 28x28 images is hundreds of small kernels: on a GPU the host's
launching them, not the GPU, sets its pace. ``GraphedStep`` records the whole step
(``maml_vmap.meta_update``: forward, the inner steps, the second-order backward through them,
Adam's update) into a ``torch.cuda.CUDAGraph`` once, reading the meta-batch from static input
buffers and writing the loss and accuracy into a static output; each iteration copies its batch
into the buffers and replays the graph, one launch. The maths are ``maml_vmap.meta_step``'s: the
same kernels on the same tensors.

What a graph needs of the rest:

- Adam with ``capturable=True`` (its step count and bias corrections live on the GPU):
  ``set_capturable(optimizer, True)``, also after ``optimizer.load_state_dict``, which brings
  back the flag the checkpoint was saved with.
- The learning rate is read from a tensor the step owns, refreshed from the optimizer's
  ``param_groups`` before each replay, so a scheduler works as with the eager step; the other
  hyper-parameters (betas, eps, weight decay) are fixed at capture.
- The precision flags (``run.precision``) in force at capture are the graph's for good.

Example::

    set_capturable(optimizer, True)
    graphed = GraphedStep.for_run(model, optimizer, config, device)  # None where it does not apply
    loss, accuracy = graphed.step(batch)  # the first call captures
"""

from __future__ import annotations

import warnings

import torch

from fewshot_cli.algorithms import maml_vmap
from fewshot_cli.algorithms.base import TrainConfig
from fewshot_cli.choices import CUDA_GRAPH_MODES  # noqa: F401 (defined there for the CLI)
from fewshot_cli.data.batches import TaskBatch
from fewshot_cli.errors import FewshotError

# Eager iterations on a side stream before capture, as torch's CUDA-graph notes prescribe: they
# create Adam's state and let cuDNN/cuBLAS set up their workspaces outside the graph.
WARMUP = 3

FIELDS = ("support", "support_labels", "query", "query_labels")


def use_cuda_graph(
    setting: str, device: torch.device | str, engine: str | None, world: int = 1
) -> bool:
    """Whether a run captures its training step (``--cuda-graph``).

    ``auto``: where it applies (a CUDA device, the vmap engine, one process); ``on``: there,
    else refused; ``off``: never.

    Args:
        setting: ``auto``, ``on`` or ``off``.
        device: the run's device.
        engine: the run's MAML engine (None for algorithms without one).
        world: data-parallel processes (their gradient average runs between backward and step).

    Raises:
        FewshotError: an unknown setting, or ``on`` where a graph does not apply.

    Example:
        >>> use_cuda_graph("auto", "cpu", "vmap")
        False
    """
    if setting not in CUDA_GRAPH_MODES:
        raise FewshotError(
            f"unknown --cuda-graph '{setting}' (choose from {', '.join(CUDA_GRAPH_MODES)})"
        )
    if setting == "off":
        return False
    device = torch.device(device)
    why = None
    if device.type != "cuda":
        why = f"it needs a CUDA device (this run's is {device.type})"
    elif engine != "vmap":
        why = f"it captures the vmap engine's step (this run's engine is {engine or 'none'})"
    elif world > 1:
        why = "data-parallel training averages the gradients outside the step"
    if why is not None and setting == "on":
        raise FewshotError(f"--cuda-graph on does not apply: {why}; use --cuda-graph auto or off")
    return why is None


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Make an Adam-like ``optimizer`` (in place) capturable in a CUDA graph, or not.

    Sets every group's ``capturable`` flag and moves each parameter's ``step`` count where that
    flag wants it (the parameter's device, or the host), as the optimizer would have made it.

    Raises:
        FewshotError: an optimizer without a ``capturable`` option.

    Example:
        >>> weight = torch.nn.Parameter(torch.zeros(2))
        >>> optimizer = torch.optim.Adam([weight], capturable=True)
        >>> set_capturable(optimizer, False)
        >>> optimizer.param_groups[0]["capturable"]
        False
    """
    for group in optimizer.param_groups:
        if "capturable" not in group:
            raise FewshotError(f"{type(optimizer).__name__} cannot be captured in a CUDA graph")
        group["capturable"] = capturable
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(param.device if capturable else "cpu")


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """``model``'s 4-d weights (the convolutions') in channels-last memory order, in place.

    The parameters stay the same objects (an optimizer over them keeps working); only their
    strides change, not their values. Returns ``model``.

    Example:
        >>> conv = to_channels_last(torch.nn.Conv2d(3, 8, 3))
        >>> conv.weight.is_contiguous(memory_format=torch.channels_last)
        True
    """
    return model.to(memory_format=torch.channels_last)


def static_buffers(batch: TaskBatch, channels_last: bool = False) -> TaskBatch:
    """Empty tensors of ``batch``'s shapes, dtypes and device, to copy each batch into.

    With ``channels_last`` every task's images ``[S, C, H, W]`` are laid out channels-last, as
    the convolutions see them once vmap folds the task dimension into the batch one.

    Example:
        >>> batch = TaskBatch(torch.zeros(2, 5, 1, 28, 28), torch.zeros(2, 5, dtype=torch.long),
        ...                   torch.zeros(2, 5, 1, 28, 28), torch.zeros(2, 5, dtype=torch.long))
        >>> static_buffers(batch, channels_last=True).support[0].is_contiguous(
        ...     memory_format=torch.channels_last)
        True
    """

    def empty(tensor: torch.Tensor) -> torch.Tensor:
        if channels_last and tensor.dim() == 5:
            tasks, samples, channels, height, width = tensor.shape
            return tensor.new_empty((tasks, samples, height, width, channels)).permute(
                0, 1, 4, 2, 3
            )
        return torch.empty_like(tensor, memory_format=torch.contiguous_format)

    return TaskBatch(*(empty(getattr(batch, name)) for name in FIELDS), batch.ways)


class GraphedStep:
    """The vmap engine's meta-step on CUDA, captured at the first ``step`` and replayed after.

    Each ``step(batch)`` equals ``maml_vmap.meta_step(model, optimizer, batch, steps, inner_lr,
    first_order)``: the model's weights and the optimizer's state move as they would. The
    warm-up before capture runs real steps; the weights and the optimizer's state are put back
    afterwards, so the run is as if it had not happened.

    Args:
        model: the network on a CUDA device (BatchNorm without running statistics).
        optimizer: Adam over ``model.parameters()`` with ``capturable=True`` (``set_capturable``).
        steps, inner_lr, first_order: the inner loop, as in ``maml_vmap.meta_loss``.
        channels_last: keep the convolutions' weights and the input buffers channels-last
            (converts ``model`` in place; its values do not change).
        warmup: eager iterations before capture.

    Example::

        graphed = GraphedStep(model, optimizer, steps=1, inner_lr=0.4)
        for iteration in range(1000):
            loss, accuracy = graphed.step(episodes.batch(32 * iteration, 32))
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        steps: int,
        inner_lr: float,
        first_order: bool = False,
        channels_last: bool = False,
        warmup: int = WARMUP,
    ):
        maml_vmap.check_trainable(model)
        self.device = next(model.parameters()).device
        if self.device.type != "cuda":
            raise FewshotError(
                f"a captured step needs a CUDA device (the model is on {self.device})"
            )
        if not all(group.get("capturable") for group in optimizer.param_groups):
            raise FewshotError(
                "a captured step needs an optimizer made with capturable=True (set_capturable)"
            )
        if channels_last:
            to_channels_last(model)
        self.model, self.optimizer = model, optimizer
        self.steps, self.inner_lr, self.first_order = steps, inner_lr, first_order
        self.channels_last, self.warmup = channels_last, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: TaskBatch | None = None
        dtype = next(model.parameters()).dtype  # the loss's: read back without rounding
        self.outputs = torch.zeros(2, dtype=dtype, device=self.device)  # loss, accuracy
        # Per group: the learning-rate tensor the graph reads, and the value it holds.
        self.rates: list[tuple[torch.Tensor, float] | None] = []

    @classmethod
    def for_run(
        cls,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        device: torch.device | str,
        world: int = 1,
        channels_last: bool = False,
    ) -> GraphedStep | None:
        """The captured step of a run, or None where it does not apply (``use_cuda_graph``:
        ``config.cuda_graph``, the device, the engine, the processes).

        Args:
            model, optimizer: the run's (the optimizer made capturable, ``set_capturable``).
            config: the resolved configuration (``cuda_graph``, ``engine``, the inner loop).
            device: the run's device.
            world: data-parallel processes.
            channels_last: see ``GraphedStep``.

        Raises:
            FewshotError: ``cuda_graph`` ``on`` where a graph does not apply.

        Example::

            graphed = GraphedStep.for_run(model, optimizer, config, device)
        """
        if not use_cuda_graph(config.cuda_graph, device, config.engine, world):
            return None
        return cls(
            model,
            optimizer,
            config.inner_steps,
            config.inner_lr,
            config.first_order,
            channels_last=channels_last,
        )

    def step(self, episodes: maml_vmap.Episodes) -> tuple[float, float]:
        """One meta-update on ``episodes`` (a ``TaskBatch`` or same-shaped episodes); mean
        query ``(loss, accuracy)``. Every batch must have the first one's shapes.

        Example::

            loss, accuracy = graphed.step(episodes.batch(0, 32))
        """
        batch = maml_vmap.stack_episodes(episodes)
        if self.graph is None:
            with torch.cuda.device(self.device):  # the capture's streams are the current device's
                self._capture(batch)
        else:
            self._load(batch)
        self._refresh_rates()
        self.graph.replay()
        loss, accuracy = self.outputs.tolist()
        return loss, accuracy

    def _meta_update(self) -> None:
        loss, accuracy = maml_vmap.meta_update(
            self.model, self.optimizer, self.static, self.steps, self.inner_lr, self.first_order
        )
        self.outputs.copy_(torch.stack((loss, accuracy)))

    def _load(self, batch: TaskBatch) -> None:
        for name in FIELDS:
            source, target = getattr(batch, name), getattr(self.static, name)
            if source.shape != target.shape or source.dtype != target.dtype:
                raise FewshotError(
                    f"the captured step takes batches of {name} {tuple(target.shape)} "
                    f"{target.dtype}; this one's is {tuple(source.shape)} {source.dtype}"
                )
            # A batch built on the device is copied in stream order; one on the host at once.
            target.copy_(source, non_blocking=source.is_cuda)

    def _capture(self, batch: TaskBatch) -> None:
        self.static = static_buffers(batch.to(self.device), self.channels_last)
        self._load(batch)
        saved = save_state(self.model, self.optimizer)
        floats = [group["lr"] for group in self.optimizer.param_groups]
        graph = torch.cuda.CUDAGraph()
        try:
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side), warnings.catch_warnings():
                # Adam warns when a capturable instance steps outside a graph: here it must.
                warnings.filterwarnings("ignore", message=".*running without CUDA graph capture")
                for _ in range(self.warmup):
                    self._meta_update()
            current.wait_stream(side)
            self._rate_tensors()
            # The graph reads each group's rate from a tensor: a float would be baked in.
            for group, rate in zip(self.optimizer.param_groups, self.rates):
                if rate is not None:
                    group["lr"] = rate[0]
            # Gradients of None: the captured backward then allocates them from the graph's
            # own memory, where every replay writes them.
            self.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                self._meta_update()
        finally:
            for group, value in zip(self.optimizer.param_groups, floats):
                group["lr"] = value
            # Also after a failed capture: the run goes on from its own weights.
            restore_state(self.model, self.optimizer, saved)
        self.graph = graph

    def _rate_tensors(self) -> None:
        """A device tensor per group whose rate is a float (a tensor rate is read as it is),
        of the dtype of Adam's step counts, which it divides."""
        self.rates = []
        for group in self.optimizer.param_groups:
            if torch.is_tensor(group["lr"]):
                self.rates.append(None)
                continue
            steps = [
                self.optimizer.state[p]["step"]
                for p in group["params"]
                if p in self.optimizer.state
            ]
            dtype = steps[0].dtype if steps else torch.float32
            value = float(group["lr"])
            self.rates.append((torch.tensor(value, dtype=dtype, device=self.device), value))

    def _refresh_rates(self) -> None:
        for i, (group, rate) in enumerate(zip(self.optimizer.param_groups, self.rates)):
            if rate is not None and group["lr"] != rate[1]:
                rate[0].fill_(group["lr"])
                self.rates[i] = (rate[0], group["lr"])


# Copies of a model's parameters and of its optimizer's state, per parameter.
SavedState = tuple[list[torch.Tensor], dict]


def save_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> SavedState:
    """Copies of ``model``'s parameters and ``optimizer``'s state, for ``restore_state``.

    Example::

        saved = save_state(model, optimizer)
        meta_step(model, optimizer, batch, 1, 0.4)
        restore_state(model, optimizer, saved)  # as if the step had not been taken
    """
    params = [p.detach().clone() for p in model.parameters()]
    state = {
        param: {k: v.clone() if torch.is_tensor(v) else v for k, v in values.items()}
        for param, values in optimizer.state.items()
    }
    return params, state


def restore_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, saved: SavedState
) -> None:
    """Put back what ``save_state`` copied, into the very tensors there now (a captured graph
    reads those). A parameter the optimizer had not stepped yet gets zeros (step count and
    moments): the state Adam itself starts from.
    """
    params, state = saved
    with torch.no_grad():
        for param, value in zip(model.parameters(), params):
            param.copy_(value)
        for param, current in optimizer.state.items():
            before = state.get(param)
            for key, value in current.items():
                if not torch.is_tensor(value):
                    continue
                if before is None:
                    value.zero_()
                else:
                    value.copy_(before[key])
