"""Every dataset by name: the one list the CLI's ``--dataset`` choices come from.

Each entry names the function that loads it (``module:function``, imported when the dataset is
first loaded: nothing heavy is imported to list the names) and the network input of the
papers that use it. ``omniglot`` is the default and loads as it always has
(``source.load_omniglot``, giving an ``Omniglot``); the others give ``dataset.FewShotData``,
and ``load_data`` gives that common form for every dataset.

Adding a dataset: one module with a loader taking the root first, and one line here.

Example:
    >>> NAMES[0], DEFAULT
    ('omniglot', 'omniglot')
    >>> get("mini-imagenet").network_input
    (3, 84)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:
    from fewshot_cli.data.dataset import FewShotData


@dataclass(frozen=True)
class DataSource:
    """One dataset: where its loader is and what network input its papers use.

    Attributes:
        name: the name users choose (``--dataset``) and evaluation rows record.
        loader: ``module:function`` of ``loader(root, **options)``.
        channels: the papers' input channels (None: the data's own, detected).
        size: the papers' input side in pixels (the loader's default ``image_size``).
        about: one line for help texts.
        splits: its named splits, the default first (empty: the data's own, as ``folder``'s).
        common: ``module:function`` turning the loader's result into ``FewShotData``, when it
            gives another form (Omniglot's own).
    """

    name: str
    loader: str
    channels: int | None
    size: int
    about: str
    splits: tuple[str, ...] = ()
    common: str | None = None

    @property
    def network_input(self) -> tuple[int | None, int]:
        """``(channels, size)`` of the papers' network input."""
        return self.channels, self.size

    def load(self, root: str | Path | None = None, **options):
        """Call the loader (see its docstring for ``options``)."""
        return _function(self.loader)(root, **options)


SOURCES = {
    s.name: s
    for s in (
        DataSource("omniglot", "fewshot_cli.data.source:load_omniglot", 1, 28, "Omniglot, 1623 handwritten characters of 50 alphabets (28x28, grayscale)", ("lake", "vinyals", "random"), common="fewshot_cli.data.dataset:from_omniglot"),
        DataSource("mini-imagenet", "fewshot_cli.data.mini_imagenet:load_mini_imagenet", 3, 84, "mini-ImageNet, 100 ImageNet classes (learn2learn's pickles; 84x84 RGB)", ("ravi",)),
        DataSource("cifar-fs", "fewshot_cli.data.cifar_fs:load_cifar_fs", 3, 32, "CIFAR-FS, the 100 CIFAR-100 classes (learn2learn's folders; 32x32 RGB)", ("bertinetto",)),
        DataSource("folder", "fewshot_cli.data.folder:load_folder", None, 84, "your own folder of class folders of images (any format, size and colour)"),
    )
}  # fmt: skip
NAMES = tuple(SOURCES)
DEFAULT = "omniglot"


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def get(name: str) -> DataSource:
    """The dataset called ``name``.

    Raises:
        FewshotError: no dataset has that name.
    """
    if name not in SOURCES:
        raise FewshotError(f"unknown dataset '{name}' (choose from {', '.join(NAMES)})")
    return SOURCES[name]


def load(name: str, root: str | Path | None = None, **options):
    """Load dataset ``name`` from ``root`` in its loader's own form.

    Example::

        load("omniglot", "~/data/omniglot")           # an Omniglot, as load_omniglot gives
        load("folder", "~/data/birds", image_size=84)  # a FewShotData
    """
    return get(name).load(root, **options)


def load_data(name: str, root: str | Path | None = None, **options) -> FewShotData:
    """Load dataset ``name`` from ``root`` as ``FewShotData`` (Omniglot converted).

    Example::

        data = load_data("mini-imagenet", "~/data/mini-imagenet")
        data.image_shape
        # (3, 84, 84)
    """
    source = get(name)
    loaded = source.load(root, **options)
    return _function(source.common)(loaded) if source.common else loaded
