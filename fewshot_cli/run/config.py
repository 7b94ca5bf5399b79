"""The configuration of a training run; each algorithm's published defaults fill its gaps."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.algorithms.backbone import BACKBONES
from fewshot_cli.choices import CUDA_GRAPH_MODES, ENGINES, PRECISIONS
from fewshot_cli.data import registry as datasets
from fewshot_cli.errors import FewshotError

# Omniglot's network input, the only one before datasets were a choice.
OMNIGLOT_INPUT = {"image_size": 28, "channels": 1}
# Fields that once had a fixed value for every run and were not in config.json: the Conv-4 with
# max-pooling and BatchNorm keeping running statistics (before MAML's paper defaults), and
# Omniglot's input to 64 filters (before other datasets).
LEGACY = {"backbone": "conv4", "bn_running_stats": True, **OMNIGLOT_INPUT, "filters": 64}

# Why fewer than 2 ways are refused (training, validation and test episodes alike).
ONE_WAY = "with one class every prediction is right, and the accuracy always 100%"

# What a resumed run may change: where, how long and how fast it goes on, never what it learns.
RESUME_MAY_CHANGE = ("iterations", "device", "cuda_graph")


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory.

    ``None`` fields take the algorithm's paper defaults in ``resolved()`` (``algorithms.papers``;
    test ways and shots default to the training ones where the paper fixes none). Fields that
    belong to other algorithms only (``Algorithm.options``, e.g. MAML's ``inner_lr`` for a
    ProtoNet) must stay unset. ``init_from`` names a trained run (or checkpoint) whose weights a
    fresh run starts from (``run.checkpoint.initial_weights``).

    Example:
        >>> TrainConfig("protonet", iterations=500).resolved().ways
        60
    """

    algorithm: str
    ways: int | None = None
    shots: int = 1
    queries: int | None = None
    iterations: int = 1000
    dataset: str = datasets.DEFAULT
    image_size: int | None = None
    channels: int | None = None
    filters: int | None = None
    split: str | None = None
    split_seed: int = 0
    split_fractions: str | None = None  # a folder's seeded split: train/val/test
    split_dir: str | None = None
    rotations: bool = False
    seed: int = 0
    device: str = "auto"
    backbone: str | None = None
    bn_running_stats: bool | None = None
    lr: float = 1e-3
    lr_halve_every: int | None = None
    inner_lr: float | None = None
    inner_steps: int | None = None
    test_inner_steps: int | None = None
    meta_batch: int | None = None
    first_order: bool = False
    engine: str | None = None
    test_ways: int | None = None
    test_shots: int | None = None
    test_queries: int = 15
    val_every: int = 100
    val_episodes: int = 100
    data_root: str | None = None
    init_from: str | None = None
    cuda_graph: str = "auto"  # capture the training step in a CUDA graph (algorithms.maml_graph)
    precision: str = "fp32"  # of products and convolutions on CUDA (run.precision)

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` replaced by the algorithm's paper default, validated."""
        paper = registry.paper(self.algorithm)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        registry.refuse_options(
            self.algorithm,
            {
                name: "--" + name.replace("_", "-")
                for name in registry.own_options()
                if getattr(self, name) != defaults[name]
            },
        )
        c = dataclasses.replace(self)
        source = datasets.get(c.dataset)
        if c.ways is None:
            c.ways = paper.ways_for(c.dataset, c.shots)
        c.validate()  # before ways is used to pick the other defaults
        for key, value in paper.defaults_for(c.dataset).at(c.ways, c.shots).items():
            if getattr(c, key) is None:
                setattr(c, key, value)
        c.filters = 64 if c.filters is None else c.filters
        c.image_size = source.size if c.image_size is None else c.image_size
        c.channels = source.channels if c.channels is None else c.channels
        if c.split is None:  # folder: the data's own first split, set once it is loaded
            c.split = source.splits[0] if source.splits else None
        if c.split_fractions is not None:  # checked, in the form rows record
            from fewshot_cli.data.folder import fractions_text

            c.split_fractions = fractions_text(c.split_fractions)
        c.test_ways = c.ways if c.test_ways is None else c.test_ways
        c.test_shots = c.shots if c.test_shots is None else c.test_shots
        c.validate()
        return c

    def validate(self) -> None:
        """Raise a one-line error for an impossible configuration."""
        positive = [
            "shots",
            "queries",
            "iterations",
            "test_shots",
            "test_queries",
            "val_every",
            "val_episodes",
            "inner_steps",
            "test_inner_steps",
            "meta_batch",
        ]
        for name in ("ways", "test_ways"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise FewshotError(
                    f"--{name.replace('_', '-')} must be at least 2 (got {value}): {ONE_WAY}"
                )
        for name in positive:  # unset (None) ones are checked once resolved
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FewshotError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        if self.lr_halve_every is not None and self.lr_halve_every < 0:
            raise FewshotError(f"--lr-halve-every must be 0 or more (got {self.lr_halve_every})")
        for name in ("lr", "inner_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise FewshotError(f"--{name.replace('_', '-')} must be positive (got {value})")
        source = datasets.get(self.dataset)
        if self.split is not None and source.splits and self.split not in source.splits:
            raise FewshotError(
                f"{self.dataset} has no split '{self.split}' (choose from {', '.join(source.splits)})"
            )
        if self.dataset == datasets.DEFAULT:
            for name, value in OMNIGLOT_INPUT.items():
                if getattr(self, name) not in (None, value):
                    raise FewshotError(
                        f"--{name.replace('_', '-')} {getattr(self, name)}: omniglot's images "
                        f"are {'grayscale' if name == 'channels' else f'{value}x{value}'} here; export "
                        "it (fewshot data --export) and read it as --dataset folder to change that"
                    )
        if self.split_fractions is not None and self.dataset != "folder":
            raise FewshotError(
                f"--split-fractions applies to --dataset folder; {self.dataset} has its own split"
            )
        if self.channels not in (None, 1, 3):
            raise FewshotError(f"--channels must be 1 or 3 (got {self.channels})")
        for name in ("image_size", "filters"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FewshotError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        if self.engine is not None and self.engine not in ENGINES:
            raise FewshotError(f"unknown engine '{self.engine}' (choose from {', '.join(ENGINES)})")
        if self.cuda_graph not in CUDA_GRAPH_MODES:
            raise FewshotError(
                f"unknown --cuda-graph '{self.cuda_graph}' "
                f"(choose from {', '.join(CUDA_GRAPH_MODES)})"
            )
        if self.precision not in PRECISIONS:
            raise FewshotError(
                f"unknown precision '{self.precision}' (choose from {', '.join(PRECISIONS)})"
            )
        if self.engine == "vmap" and self.bn_running_stats:
            raise FewshotError(
                "--engine vmap trains only networks whose BatchNorm keeps no running "
                "statistics; this run's does (use --engine l2l)"
            )
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise FewshotError(
                f"unknown backbone '{self.backbone}' (choose from {', '.join(BACKBONES)})"
            )
        if self.rotations and self.split == "vinyals":
            raise FewshotError(
                "--rotations does not apply to the vinyals split: its rotations are classes already"
            )

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Rebuild from ``config.json`` contents, ignoring keys this version does not know.

        Keys missing from an older ``config.json`` take the values that version used
        (``LEGACY``), so its run loads and evaluates as before.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LEGACY, **{k: v for k, v in values.items() if k in known}})


def resume_config(stored: dict, given: dict) -> TrainConfig:
    """The configuration a resumed run goes on with: ``stored``, changed where it may be.

    Fields in ``RESUME_MAY_CHANGE`` take their value from ``given``; any other given field must
    equal the run's own (resolved) value, since it would change the training.

    Args:
        stored: the run's ``config.json`` contents.
        given: the options the user set explicitly, by field name (``algorithm`` included).

    Raises:
        FewshotError: a given option (named in the message) differs from the run's.

    Example::

        resume_config({"algorithm": "protonet", "iterations": 500}, {"iterations": 900}).iterations
        # 900
        resume_config({"algorithm": "protonet"}, {"lr": 0.01})  # FewshotError: --lr cannot change...
    """
    config = TrainConfig.from_dict(stored)
    algorithm = given.get("algorithm", config.algorithm)
    if algorithm != config.algorithm:
        raise FewshotError(f"the run to resume is a {config.algorithm} run, not {algorithm}")
    run = config.resolved()
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and value != getattr(run, name):
            option = f"--{name.replace('_', '-')}"
            raise FewshotError(
                f"{option} cannot change when resuming: the run has "
                f"{name}={getattr(run, name)} (leave {option} out, or start a new "
                "run with --out)"
            )
    return dataclasses.replace(config, **{k: v for k, v in given.items() if k in RESUME_MAY_CHANGE})


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise FewshotError(f"unknown device '{name}'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FewshotError("--device cuda asked for, but no CUDA device is available")
    return device


def set_threads(threads: int | None = None) -> None:
    """Let torch use at most ``threads`` CPU threads (``None``: leave torch's default, all cores).

    For sharing a machine: intra-op parallelism (convolutions, matrix products) is what uses
    the cores here.

    Example::

        set_threads(2)  # torch.get_num_threads() is now 2, for the whole process
    """
    if threads is None:
        return
    if threads < 1:
        raise FewshotError(f"--threads must be at least 1 (got {threads})")
    torch.set_num_threads(threads)
