"""Every algorithm by name: the one list the CLI's choices, ``reproduce``'s grid and
``aggregate``'s grouping come from.

``MODULES`` maps each name to the module defining its ``ALGORITHM`` (an ``algorithms.base.
Algorithm``). Names are known without importing anything heavy (the CLI lists them in its
help); a module is imported when its algorithm is first asked for.

Adding an algorithm: one module with an ``ALGORITHM``, and one line here.

Example:
    >>> NAMES[:2]
    ('maml', 'protonet')
    >>> get("maml").bn_mode
    'batch'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from fewshot_cli.errors import FewshotError

MODULES = {
    "maml": "fewshot_cli.algorithms.maml",
    "protonet": "fewshot_cli.algorithms.protonet",
    "metasgd": "fewshot_cli.algorithms.metasgd",
    "anil": "fewshot_cli.algorithms.anil",
}
NAMES = tuple(MODULES)


def get(name: str):
    """The ``Algorithm`` called ``name``.

    Raises:
        FewshotError: no algorithm has that name.
    """
    if name not in MODULES:
        raise FewshotError(f"unknown algorithm '{name}' (choose from {', '.join(NAMES)})")
    return importlib.import_module(MODULES[name]).ALGORITHM


def algorithms() -> list:
    """Every ``Algorithm``, in registry order."""
    return [get(name) for name in NAMES]


def paper(name: str):
    """The paper protocol of the algorithm called ``name`` (``papers.Paper``: defaults, published
    numbers, split, budgets, colours)."""
    from fewshot_cli.algorithms.papers import PAPERS

    get(name)  # an unknown name fails here, with the one message
    return PAPERS[name]


def own_options() -> tuple[str, ...]:
    """The ``TrainConfig`` fields that belong to some algorithms only, each once, in order."""
    return tuple(dict.fromkeys(o for a in algorithms() for o in a.options))


def refuse_options(name: str, given: Mapping[str, str], subject: str | None = None) -> None:
    """Refuse options set for an algorithm they do not apply to, with one line.

    Args:
        name: the algorithm of the run.
        given: ``{TrainConfig field: option as the user wrote it}`` of the options that were set
            (e.g. ``{"test_inner_steps": "--inner-steps"}``).
        subject: what is refused, for the message (default: the algorithm's name).

    Raises:
        FewshotError: the first option that applies to other algorithms only.

    Example::

        refuse_options("protonet", {"inner_lr": "--inner-lr"})  # raises FewshotError:
        # --inner-lr applies to maml only, not to protonet
    """
    algorithm = get(name)
    for option, flag in given.items():
        if option in own_options() and option not in algorithm.options:
            users = [a.name for a in algorithms() if option in a.options]
            raise FewshotError(
                f"{flag} applies to {', '.join(users)} only, not to {subject or name}"
            )
