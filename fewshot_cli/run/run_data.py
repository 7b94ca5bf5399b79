"""The data of a run: its dataset loaded at the run's preprocessing, and the configuration
completed from it (a folder's detected channels and its own split).

Example::

    data = load_run_data(config.resolved())
    config = complete_from_data(config.resolved(), data)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from fewshot_cli.data import registry
from fewshot_cli.errors import FewshotError


def load_run_data(
    config,
    root: str | Path | None = None,
    download: bool = False,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
):
    """The dataset of a resolved ``config`` from ``root`` (default ``config.data_root``):
    Omniglot as ``load_omniglot`` gives it, any other as ``FewShotData`` at the run's image
    size and channels (a folder split with the run's ``split_seed``)."""
    root = root or config.data_root
    if config.dataset == registry.DEFAULT:
        from fewshot_cli.data.source import load_omniglot

        return load_omniglot(root, download=download, progress=progress)
    options = {"image_size": config.image_size, "progress": progress}
    if config.channels is not None:
        options["channels"] = config.channels
    if config.dataset == "folder":
        options.update(seed=config.split_seed, warn=warn)
    return registry.load_data(config.dataset, root, **options)


def complete_from_data(config, data):
    """``config`` with what only the data tells (a folder's channels, its first split) filled
    in, checked against the data's images.

    Raises:
        FewshotError: the data's images are not the run's (another size or channels).
    """
    if config.dataset == registry.DEFAULT:
        return config
    channels, height, width = data.image_shape
    changes = {}
    if config.channels is None:
        changes["channels"] = channels
    if config.split is None:
        changes["split"] = data.default_split
    config = dataclasses.replace(config, **changes)
    if (config.channels, config.image_size) != (channels, height) or height != width:
        raise FewshotError(
            f"the run expects {config.channels}x{config.image_size}x{config.image_size} images, "
            f"the data at {data.root} gives {channels}x{height}x{width}"
        )
    return config
