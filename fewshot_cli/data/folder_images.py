"""The pixels of class folders: decoded into the cache's tensors, and written back (``export``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewshot_cli.data.dataset import PARTS, FewShotData, Preprocessing
from fewshot_cli.data.images import decode, same_channels
from fewshot_cli.errors import FewshotError


@dataclass
class ClassFolder:
    """One class on disk.

    Attributes:
        name: its path under ``PATH`` or under its part folder (``cat``, ``Greek/alpha``).
        files: its image files (by extension, readable or not), sorted by name.
        part: ``train``, ``val`` or ``test`` when the split is given as folders, else None.
        group: the folder above it in the grouped layout, else None.
    """

    name: str
    files: list[Path]
    part: str | None = None
    group: str | None = None


MANIFEST = "classes.txt"  # one class name a line: the label order
NAMED = 3  # file or class names given in a message


def few(names: list[str]) -> str:
    """The first ``NAMED`` of ``names``, comma-separated, with ``...`` for the rest.

    Example:
        >>> few(["a", "b", "c", "d"])
        'a, b, c, ...'
    """
    return ", ".join(names[:NAMED]) + (", ..." if len(names) > NAMED else "")


def decode_classes(
    root: Path, classes: list[ClassFolder], preprocessing: Preprocessing, progress: bool = False
) -> dict:
    """Decode every image of ``classes`` (the cache's contents); unreadable files are skipped.

    Raises:
        FewshotError: not one image could be read.
    """
    from tqdm import tqdm

    images, labels, kept, skipped, dropped = [], [], [], [], []
    bar = tqdm(
        total=sum(len(c.files) for c in classes),
        desc=f"decoding {root.name}",
        unit="img",
        disable=None if progress else True,
    )
    for folder in classes:
        count = 0
        for path in folder.files:
            try:
                image = decode(path, preprocessing.size, preprocessing.channels)
            except FewshotError:
                skipped.append(path.relative_to(root).as_posix())
                continue
            images.append(255 - image if preprocessing.invert else image)
            count += 1
        if count:
            labels += [len(kept)] * count
            kept.append(folder)
        else:
            dropped.append(folder.name)
        bar.update(len(folder.files))
    bar.close()
    if not images:
        raise FewshotError(
            f"no readable image in {root}: {len(skipped)} files could not be decoded "
            f"({few(skipped)})"
        )
    images, channels = same_channels(images, preprocessing.channels)
    return {
        "images": torch.stack(images),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "classes": [c.name for c in kept],
        "class_parts": [c.part or "" for c in kept],
        "groups": [c.group or "" for c in kept],
        "skipped": skipped,
        "dropped": dropped,
        "channels": channels,
    }


def skipped_warning(root: Path, skipped: list[str], dropped: list[str]) -> str | None:
    """One line about unreadable files and classes left without images, or None."""
    said = []
    if skipped:
        said.append(f"skipped {len(skipped)} unreadable image files in {root} ({few(skipped)})")
    if dropped:
        said.append(
            f"{len(dropped)} class folders had no readable image and are left out ({few(dropped)})"
        )
    return "; ".join(said) or None


def class_path(name: str) -> Path:
    """A class name as the folder path ``export`` writes (``Greek/alpha``: a group folder).

    Raises:
        FewshotError: a name that is no safe relative path of one or two folders.
    """
    components = name.split("/")
    if len(components) > 2 or any(
        not c or c.startswith(".") or "\\" in c or "\0" in c for c in components
    ):
        raise FewshotError(
            f"class name '{name}' cannot be a folder: export needs names of one or two path "
            "components, none empty or starting with '.'"
        )
    return Path(*components)


def export(data: FewShotData, folder: str | Path, split: str | None = None) -> Path:
    """Write ``data`` as what ``load_folder`` reads: ``train/``, ``val/``, ``test/`` of class
    folders of PNGs, with ``classes.txt`` keeping the label order.

    Images are written as stored (after any inversion), so ``load_folder(folder,
    image_size=size)`` gives the same tensors, labels and parts back (with ``channels`` given
    when an RGB dataset holds only gray images). The folder appears complete or not at all.

    Args:
        data: any dataset in the common form.
        folder: a new (or empty) folder.
        split: which split becomes the part folders (default: the data's first).

    Raises:
        FewshotError: the folder is not empty, or a class name cannot be a folder.

    Example::

        export(from_omniglot(load_omniglot()), "omniglot-folders", split="lake")
        load_folder("omniglot-folders", image_size=28).parts["folders"]["test"][:2]
        # [964, 965]
    """
    from PIL import Image

    folder = Path(folder).expanduser()
    if data.images.shape[1] not in (1, 3):
        raise FewshotError(f"cannot write {data.images.shape[1]}-channel images as PNG")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FewshotError(f"{folder} exists and is not an empty folder; export into a new one")
    parts = {p: data.part_classes(p, split) for p in PARTS}
    paths = {c: class_path(data.classes[c]) for classes in parts.values() for c in classes}
    if len({len(p.parts) for p in paths.values()}) > 1:
        raise FewshotError(
            "class names mix one- and two-component names ('a' and 'group/a'); "
            "a folder dataset has one layout"
        )
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(data.labels.tolist()):
        by_class.setdefault(label, []).append(index)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        # mkdtemp makes an owner-only folder; give it the permissions of a plain mkdir
        mask = os.umask(0)
        os.umask(mask)
        staging.chmod(0o777 & ~mask)
        written = []
        for part, classes in parts.items():
            for c in classes:
                indices = by_class.get(c, [])
                if not indices:  # an empty folder would read back as no class at all
                    continue
                target = staging / part / paths[c]
                target.mkdir(parents=True)
                width = max(5, len(str(len(indices))))
                for number, index in enumerate(indices):
                    pixels = np.ascontiguousarray(data.images[index].permute(1, 2, 0).numpy())
                    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
                    image.save(target / f"{number:0{width}d}.png")
                written.append(c)
        names = [data.classes[c] for c in sorted(written)]
        (staging / MANIFEST).write_text("".join(n + "\n" for n in names))
        if folder.exists():
            folder.rmdir()
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
