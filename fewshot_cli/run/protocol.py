"""What a result is: every field of a training's configuration and of an evaluation, declared once.

Each evaluation CSV column is one of three kinds:

- ``protocol``: it changes what is learned or measured. Written to every row, grouped on by
  ``aggregate`` and the plots, part of ``reproduce``'s training identity: two results that
  differ in one are never averaged together.
- ``replicate``: it tells repetitions of one protocol apart (the training seed, the episode
  seed, how many episodes). Written to every row and part of the identity of one run or one
  evaluation; ``aggregate`` averages over it.
- incidental (``TrainConfig`` fields in ``INCIDENTAL``): where and how it ran (device, paths).
  Never in a row's protocol.

``COLUMNS`` lists the columns of the protocol and its replicates, in the order a CSV shows them;
the other columns of a row (``report.results.ROW``) identify the checkpoint and hold the result.
A column an older CSV lacks reads as its ``legacy`` value: what the code that wrote the row
used (``omniglot`` for ``dataset``), else empty, which means "not recorded" and groups apart from
every recorded value.

Example:
    >>> [c.name for c in COLUMNS if c.field == "first_order"]
    ['order']
    >>> "device" in INCIDENTAL
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from fewshot_cli.errors import FewshotError

PROTOCOL, REPLICATE = "protocol", "replicate"


@dataclass(frozen=True)
class Column:
    """One CSV column of the protocol or its replicates.

    Attributes:
        name: the column's name.
        kind: ``protocol`` or ``replicate``.
        field: the ``TrainConfig`` field it records, or None for a column the evaluation sets
            (test ways, BatchNorm mode, data...).
        value: the cell's value from the field's (resolved) value and the configuration; by
            default the value itself.
        legacy: the value of a row whose CSV predates the column.
    """

    name: str
    kind: str = PROTOCOL
    field: str | None = None
    value: Callable[[object, object], object] | None = None
    legacy: str = ""


def _order(first_order: bool, config) -> str:
    return ("first" if first_order else "second") if _has_option(config, "first_order") else ""


def _rotations(rotations: bool, config) -> bool:
    return bool(rotations) or config.split == "vinyals"  # the vinyals classes are rotations


def _init_from(init_from: str | None, config) -> str:
    from fewshot_cli.run.checkpoint import source_name

    return source_name(init_from)


def _has_option(config, name: str) -> bool:
    from fewshot_cli.algorithms import registry

    return name in registry.get(config.algorithm).options


COLUMNS = (
    Column("algorithm", field="algorithm"),
    Column("order", field="first_order", value=_order),
    Column("inner_steps_train", field="inner_steps"),
    Column("inner_steps_test", field="test_inner_steps"),  # an evaluation may ask for others
    Column("inner_lr", field="inner_lr"),
    Column("engine", field="engine"),
    Column("precision", field="precision"),  # tf32 rounds inside products and convolutions
    Column("meta_batch", field="meta_batch"),
    Column("backbone", field="backbone"),
    Column("bn_running_stats", field="bn_running_stats"),
    Column("dataset", field="dataset", legacy="omniglot"),
    Column("image_size", field="image_size", legacy="28"),
    Column("channels", field="channels", legacy="1"),
    Column("filters", field="filters", legacy="64"),
    Column("data"),  # a digest of the images evaluated on: another copy or subset differs
    Column("split", field="split"),
    Column("split_seed", field="split_seed"),
    Column("split_fractions", field="split_fractions"),
    Column("split_part"),
    Column("rotations", field="rotations", value=_rotations),
    Column("train_ways", field="ways"),
    Column("train_shots", field="shots"),
    Column("train_queries", field="queries"),
    Column("lr", field="lr"),
    Column("lr_halve_every", field="lr_halve_every"),
    Column("val_ways", field="test_ways"),  # validation picks best.pt
    Column("val_shots", field="test_shots"),
    Column("val_queries", field="test_queries"),
    Column("val_every", field="val_every"),
    Column("val_episodes", field="val_episodes"),
    Column("test_ways"),
    Column("test_shots"),
    Column("test_queries"),
    # The iterations a row's run had trained when evaluated (a stopped run: fewer than planned).
    Column("train_iterations", field="iterations"),
    Column("init_from", field="init_from", value=_init_from),
    Column("episodes", REPLICATE),
    Column("seed", REPLICATE),
    Column("train_seed", REPLICATE, field="seed"),
    Column("bn_mode"),
)
# TrainConfig fields that say where or how a run computed, not what it learned.
# A captured step (cuda_graph) runs the very kernels of the eager one.
INCIDENTAL = ("device", "split_dir", "data_root", "cuda_graph")

BY_NAME = {c.name: c for c in COLUMNS}
# What aggregate groups on by default: rows that differ in one are different experiments.
PROTOCOL_COLUMNS = tuple(c.name for c in COLUMNS if c.kind == PROTOCOL)
# The fields that make two trainings the same training (reproduce resumes or skips on them).
TRAINING_FIELDS = tuple(c.field for c in COLUMNS if c.field)
# Columns an evaluation sets, beside its training's: same values, same episodes.
EVALUATION_COLUMNS = tuple(c.name for c in COLUMNS if c.field is None)


def check_declared(config_class) -> None:
    """Raise when a field of ``config_class`` (``TrainConfig``) is not declared here exactly once.

    Example:
        >>> from fewshot_cli.run.config import TrainConfig
        >>> check_declared(TrainConfig)
    """
    names = [f.name for f in dataclasses.fields(config_class)]
    declared = [*TRAINING_FIELDS, *INCIDENTAL]
    missing = [n for n in names if n not in declared]
    twice = sorted({n for n in declared if declared.count(n) > 1})
    unknown = [n for n in declared if n not in names]
    if missing or twice or unknown:
        raise FewshotError(
            "the protocol declaration does not match TrainConfig: "
            f"undeclared {missing}, declared twice {twice}, unknown {unknown}"
        )


def cell(value: object) -> str:
    """A value as a CSV cell holds it (``None`` is empty).

    Example:
        >>> cell(None), cell(0.003), cell(True)
        ('', '0.003', 'True')
    """
    return "" if value is None else str(value)


def training_values(config) -> dict[str, str]:
    """The protocol and replicate columns of a resolved ``TrainConfig``, as CSV cells.

    An option of other algorithms (MAML's ``order`` for a ProtoNet) is empty.

    Example::

        training_values(TrainConfig("protonet").resolved())["train_ways"]
        # '60'
    """
    return {c.name: _value(c, config) for c in COLUMNS if c.field}


def training_identity(config) -> dict[str, str]:
    """What makes two trainings the same: every non-incidental field of a resolved config.

    Example::

        training_identity(a.resolved()) == training_identity(b.resolved())
    """
    return {c.field: _value(c, config) for c in COLUMNS if c.field}


def _value(column: Column, config) -> str:
    value = getattr(config, column.field)
    return cell(column.value(value, config) if column.value else value)


def fill_legacy(rows):
    """Give a pandas frame of one CSV's rows the columns its CSV predates, at their ``legacy``
    values (see the module docstring). Returns ``rows``."""
    for column in COLUMNS:
        if column.name not in rows.columns:
            rows[column.name] = column.legacy
    return rows
