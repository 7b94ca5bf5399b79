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

# The sources whose loader reports skipped files through a ``warn`` callable.
WARNING_LOADERS = ("folder", "cifar-fs")
# The smallest side ``conv4`` takes: its four 2x2 max-poolings leave a 1x1 map (16 // 2**4).
POOLED_MINIMUM = 16
# A folder's splits drawn by seed in proportion to its split fractions (data.folder).
SEEDED_SPLITS = ("random", "groups")


def load_run_data(
    config,
    root: str | Path | None = None,
    download: bool = False,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
):
    """The dataset of a resolved ``config`` from ``root`` (default ``config.data_root``):
    Omniglot as ``load_omniglot`` gives it, any other as ``FewShotData`` at the run's image
    size and channels (a folder split with the run's ``split_seed`` and ``split_fractions``); ``warn`` hears a folder's
    or CIFAR-FS's one-line warning about unreadable files (default: ``warnings.warn``)."""
    root = root or config.data_root
    if config.dataset == registry.DEFAULT:
        from fewshot_cli.data.source import load_omniglot

        return load_omniglot(root, download=download, progress=progress)
    options = {"image_size": config.image_size, "progress": progress}
    if config.channels is not None:
        options["channels"] = config.channels
    if config.dataset == "folder":
        options["seed"] = config.split_seed
        if config.split_fractions is not None:
            options["fractions"] = config.split_fractions.split("/")
    if config.dataset in WARNING_LOADERS and warn is not None:
        options["warn"] = warn
    return registry.load_data(config.dataset, root, **options)


def complete_from_data(config, data):
    """``config`` with what only the data tells (a folder's channels, its first split) filled
    in, checked against the data's images.

    Raises:
        FewshotError: the data's images are not the run's (another size or channels), or are
            too small for the run's network.
    """
    if config.dataset == registry.DEFAULT:
        return config
    check_network_input(config)
    channels, height, width = data.image_shape
    changes = {}
    if config.channels is None:
        changes["channels"] = channels
    split = changes.setdefault("split", config.split or data.default_split)
    if split not in SEEDED_SPLITS and config.split_fractions is not None:
        raise FewshotError(
            f"--split-fractions applies to class folders split by seed; {data.root} gives its "
            f"own parts (split '{split}')"
        )
    if config.dataset == "folder" and split in SEEDED_SPLITS and config.split_fractions is None:
        from fewshot_cli.data.folder import FRACTIONS

        changes["split_fractions"] = "/".join(map(str, FRACTIONS))
    config = dataclasses.replace(config, **changes)
    if (config.channels, config.image_size) != (channels, height) or height != width:
        raise FewshotError(
            f"the run expects {config.channels}x{config.image_size}x{config.image_size} images, "
            f"the data at {data.root} gives {channels}x{height}x{width}"
        )
    return config


def check_network_input(config) -> None:
    """Refuse an image size the run's backbone cannot take (``conv4`` halves the images four
    times by max-pooling: below 16 pixels its maps vanish; ``conv4-strided`` takes any size).

    Raises:
        FewshotError: naming the size and the smallest the backbone takes.
    """
    backbone = config.backbone or "conv4"
    if backbone == "conv4" and config.image_size is not None and config.image_size < POOLED_MINIMUM:
        raise FewshotError(
            f"--image-size {config.image_size} is too small for the conv4 backbone, whose four "
            f"max-poolings need at least {POOLED_MINIMUM} pixels (use a larger --image-size, or "
            "--backbone conv4-strided)"
        )
