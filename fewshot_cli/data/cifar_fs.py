"""CIFAR-FS from the folders learn2learn's ``CIFARFS`` reads, never downloaded.

CIFAR-FS (Bertinetto et al., 2019) has the 100 CIFAR-100 classes of 600 colour images, 32x32,
split into 64 training, 16 validation and 20 test classes (split ``bertinetto``). Two layouts
are read, both as learn2learn leaves them under its ``root``:

- processed: ``cifarfs/processed/{train,val,test}/<class>/<image>.png`` (what ``CIFARFS``
  makes on first use); ``processed/`` itself, or a folder holding ``train/``, ``val/`` and
  ``test/``, will do too;
- extracted zip: ``cifarfs/cifar100/data/<class>/<image>.png`` with the split files
  ``cifarfs/cifar100/splits/bertinetto/{train,val,test}.txt`` (one class a line).

Images are decoded as ``folder``'s (``data.images``), RGB at 32x32, and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fewshot_cli.data.dataset import PARTS, FewShotData, Preprocessing
from fewshot_cli.data.folder import ClassFolder, class_folders, listing, load_class_folders
from fewshot_cli.data.images import image_extensions
from fewshot_cli.errors import FewshotError

NAME = "cifar-fs"
IMAGE_SIZE = 32
SPLIT = "bertinetto"
PROCESSED = ("cifarfs/processed", "processed", "")
RAW = ("cifarfs/cifar100", "cifar100", "")


def processed_classes(folder: Path) -> list[ClassFolder]:
    """The classes of a processed folder (``train/``, ``val/``, ``test/`` of class folders)."""
    classes = []
    for part in PARTS:
        found = class_folders(folder / part, part)
        if not found:
            raise FewshotError(f"{folder / part} holds no class folder of images")
        classes += found
    return classes


def raw_classes(folder: Path) -> tuple[list[ClassFolder], list[Path]]:
    """The classes of an extracted zip, as its Bertinetto split files name them.

    Returns:
        ``(classes, split files)``.
    """
    extensions = image_extensions()
    classes, split_files = [], []
    for part in PARTS:
        split_file = folder / "splits" / "bertinetto" / f"{part}.txt"
        split_files.append(split_file)
        for number, line in enumerate(split_file.read_text().splitlines(), start=1):
            name = line.strip()
            if not name:
                continue
            class_dir = folder / "data" / name
            files = listing(class_dir, extensions)[0] if class_dir.is_dir() else []
            if not files:
                raise FewshotError(
                    f"{split_file}:{number}: class '{name}' has no images in {folder / 'data'}"
                )
            classes.append(ClassFolder(name, files, part))
    return classes, split_files


def find_classes(root: Path) -> tuple[Path, list[ClassFolder], list[Path]]:
    """``(folder, classes, split files)`` of the first layout found under ``root``.

    Raises:
        FewshotError: neither layout is there.
    """
    for sub in PROCESSED:
        folder = root / sub
        if all((folder / part).is_dir() for part in PARTS):
            return folder, processed_classes(folder), []
    for sub in RAW:
        folder = root / sub
        splits = folder / "splits" / "bertinetto"
        if (folder / "data").is_dir() and all((splits / f"{p}.txt").is_file() for p in PARTS):
            classes, split_files = raw_classes(folder)
            return folder, classes, split_files
    raise FewshotError(
        f"no CIFAR-FS in {root}: expected cifarfs/processed/{{train,val,test}}/<class>/*.png, or "
        "cifarfs/cifar100/data/ with cifarfs/cifar100/splits/bertinetto/*.txt (not downloaded)"
    )


def load_cifar_fs(
    root: str | Path | None = None,
    image_size: int = IMAGE_SIZE,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> FewShotData:
    """Load CIFAR-FS with its 64/16/20-class split (``bertinetto``).

    Args:
        root: learn2learn's ``root`` for ``CIFARFS`` (holding ``cifarfs/``), or the processed
            or extracted folder itself. Default: ``$FEWSHOT_DATA``, else ``~/.cache/fewshot``.
        image_size: side of the working images (32: as stored, nothing resized).
        channels: 3 (RGB), or 1 for grayscale.
        mean, std: per-channel normalisation of the network input (default 0 and 1).
        cache_dir: where tensor caches are kept (default ``$FEWSHOT_CACHE``).
        progress: show a progress bar while decoding (on a terminal only).
        warn: called with the one-line warning about unreadable files (default: ``warnings.warn``).

    Raises:
        FewshotError: no CIFAR-FS there, a split file naming a missing class, no readable image.

    Example::

        data = load_cifar_fs("~/data")  # learn2learn's root: ~/data/cifarfs/processed/...
        data.images.shape, [len(data.parts["bertinetto"][p]) for p in ("train", "val", "test")]
        # (torch.Size([60000, 3, 32, 32]), [64, 16, 20])
    """
    from fewshot_cli.data.source import default_data_root

    preprocessing = Preprocessing(int(image_size), channels, False, mean, std)
    root = Path(root).expanduser() if root else default_data_root()
    folder, classes, split_files = find_classes(root)
    return load_class_folders(
        NAME,
        folder,
        classes,
        preprocessing,
        split_name=SPLIT,
        extra_files=split_files,
        cache_dir=cache_dir,
        progress=progress,
        warn=warn,
    )
