"""learn2learn's stock Omniglot path, for comparison: ``FullOmniglot`` decoded by PIL per load.

torchvision's ``Omniglot`` (inside ``FullOmniglot``) insists on the official zips' MD5 even when
the images are already extracted; the benchmark only needs the images, so it links the extracted
folder where torchvision looks (``<root>/omniglot-py``) and skips the zip check.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image
from torchvision import transforms
from torchvision.datasets import Omniglot

from fewshot_cli.data.source import find_image_folder
from fewshot_cli.l2l import l2l  # without gym's import-time notice


def stock_omniglot(data_root: str | Path) -> l2l.data.MetaDataset:
    """learn2learn's ``FullOmniglot`` with the transforms of its Omniglot examples."""
    folder = find_image_folder(Path(data_root).expanduser()).resolve()
    root = Path(tempfile.mkdtemp(prefix="stock-omniglot-"))
    (root / "omniglot-py").symlink_to(folder, target_is_directory=True)
    Omniglot._check_integrity = lambda self: True  # extracted copy, no zips to check
    dataset = l2l.vision.datasets.FullOmniglot(
        root=str(root),
        transform=transforms.Compose(
            [
                transforms.Resize(28, interpolation=Image.LANCZOS),
                transforms.ToTensor(),
                lambda x: 1.0 - x,
            ]
        ),
    )
    # The bookkeeping pass decodes every image once, as learn2learn's examples do on first use.
    return l2l.data.MetaDataset(dataset)


def stock_taskset(
    dataset: l2l.data.MetaDataset, ways: int, shots: int, queries: int
) -> l2l.data.Taskset:
    """The same task transforms as ours, over the stock dataset."""
    from learn2learn.data.transforms import (
        ConsecutiveLabels,
        FusedNWaysKShots,
        LoadData,
        RemapLabels,
    )

    return l2l.data.Taskset(
        dataset,
        task_transforms=[
            FusedNWaysKShots(dataset, n=ways, k=shots + queries),
            LoadData(dataset),
            RemapLabels(dataset),
            ConsecutiveLabels(dataset),
        ],
        num_tasks=-1,
    )
