"""Your own images as a few-shot dataset: a folder of class folders, and ``export`` back to one.

``PATH`` is read in one of three layouts (a class is a folder that holds images; its name is
its path under ``PATH``, or under its part folder):

- the split given as folders: ``PATH/train/``, ``PATH/val/`` (or ``validation/``) and
  ``PATH/test/``, each holding class folders (split ``folders``);
- one level of class folders, ``PATH/<class>/``: split by seed into train, val and test
  classes in proportion to ``fractions`` (default 64/16/20, mini-ImageNet's class counts;
  split ``random``);
- group folders of class folders, ``PATH/<group>/<class>/``: whole groups are split by seed,
  so no group has classes in two parts, as Omniglot's alphabets in its ``lake`` split (split
  ``groups``).

Images may be in any format Pillow opens (by file extension), any size and mode: see
``data.images`` for how each becomes a ``uint8 [C, size, size]`` tensor. Channels are detected
unless given: RGB when any image has colour, else grayscale. Files that cannot be decoded are
skipped, with one warning line that counts them and names the first few. A ``classes.txt`` in
``PATH`` (one class name a line) fixes the order of the labels; otherwise classes are sorted
by part (train, val, test), then by name. Hidden files and folders are ignored.

Decoded images are cached (``dataset.cached_tensors``): a second load reads one tensor file.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewshot_cli.data.dataset import PARTS, FewShotData, Preprocessing, cached_tensors
from fewshot_cli.data.images import decode, image_extensions, same_channels
from fewshot_cli.errors import FewshotError

NAME = "folder"
IMAGE_SIZE = 84  # mini-ImageNet's: the size a Conv-4 for colour images is usually given
FRACTIONS = (64, 16, 20)  # train, val, test: mini-ImageNet's 64/16/20 classes
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
MANIFEST = "classes.txt"
NAMED = 3  # unreadable files named in the warning


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


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def listing(folder: Path, extensions: frozenset[str]) -> tuple[list[Path], list[Path]]:
    """``(image files, sub-folders)`` of ``folder``, sorted, hidden entries left out."""
    files, folders = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(Path(entry.path))
                elif Path(entry.name).suffix.lower() in extensions and entry.is_file():
                    files.append(Path(entry.path))
    except OSError as exc:
        raise FewshotError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    return sorted(files), sorted(folders)


def class_folders(base: Path, part: str | None = None) -> list[ClassFolder]:
    """The class folders under ``base``: one level, or group folders of class folders.

    Raises:
        FewshotError: classes at both depths, or a folder with images and class folders.
    """
    extensions = image_extensions()
    classes: list[ClassFolder] = []
    for top in listing(base, extensions)[1]:
        files, subfolders = listing(top, extensions)
        inner = [(sub, listing(sub, extensions)[0]) for sub in subfolders]
        inner = [(sub, sub_files) for sub, sub_files in inner if sub_files]
        if files and inner:
            raise FewshotError(
                f"{top} holds both images and folders of images; a class folder holds images "
                "only, a group folder class folders only"
            )
        if files:
            classes.append(ClassFolder(top.name, files, part))
        for sub, sub_files in inner:
            classes.append(ClassFolder(f"{top.name}/{sub.name}", sub_files, part, top.name))
    if len({c.group is None for c in classes}) > 1:
        raise FewshotError(
            f"{base} mixes class folders (e.g. {next(c.name for c in classes if c.group is None)}/) "
            f"and group folders of classes (e.g. {next(c.group for c in classes if c.group)}/); "
            "use one layout"
        )
    return classes


def scan(root: Path) -> list[ClassFolder]:
    """Every class of ``root`` in its layout (see the module), in label order.

    Raises:
        FewshotError: no class folder of images, a layout that mixes kinds, incomplete split
            folders, a class in two parts, or a ``classes.txt`` that does not match.
    """
    if not root.is_dir():
        raise FewshotError(f"no folder {root}: give a folder of class folders of images")
    tops = listing(root, frozenset())[1]
    given = [t for t in tops if t.name in SPLIT_FOLDERS]
    if given:
        others = [t.name for t in tops if t.name not in SPLIT_FOLDERS]
        named = [SPLIT_FOLDERS[t.name] for t in given]
        missing = [p for p in PARTS if p not in named]
        if others:
            raise FewshotError(
                f"{root} mixes split folders ({', '.join(t.name + '/' for t in given)}) with "
                f"other folders ({', '.join(o + '/' for o in others[:NAMED])}); put every "
                "class folder in train/, val/ or test/"
            )
        if missing or len(named) != len(set(named)):
            raise FewshotError(
                f"{root} gives the split as folders but "
                + (f"lacks {missing[0]}/" if missing else "has both val/ and validation/")
                + "; it needs train/, val/ and test/"
            )
        classes = []
        for top in sorted(given, key=lambda t: PARTS.index(SPLIT_FOLDERS[t.name])):
            found = class_folders(top, SPLIT_FOLDERS[top.name])
            if not found:
                raise FewshotError(f"{top} holds no class folder of images")
            classes += found
        if len({c.group is None for c in classes}) > 1:
            raise FewshotError(f"the part folders of {root} mix class and group folders")
        seen: dict[str, str] = {}
        for c in classes:
            if c.name in seen:
                raise FewshotError(
                    f"class '{c.name}' is in both {seen[c.name]}/ and {c.part}/ of {root}: "
                    "a class belongs to one part"
                )
            seen[c.name] = c.part
    else:
        classes = class_folders(root)
    if not classes:
        raise FewshotError(
            f"no class folder of images in {root} (expected <class>/<image>, "
            "<group>/<class>/<image>, or train/, val/ and test/ of class folders)"
        )
    return ordered(root, classes)


def ordered(root: Path, classes: list[ClassFolder]) -> list[ClassFolder]:
    """``classes`` in the order ``root/classes.txt`` lists them, when there is one."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        return classes
    names = [line.strip() for line in manifest.read_text().splitlines() if line.strip()]
    by_name = {c.name: c for c in classes}
    unknown = [n for n in names if n not in by_name]
    unlisted = [c.name for c in classes if c.name not in set(names)]
    if unknown or unlisted or len(names) != len(set(names)):
        problem = (
            f"lists '{unknown[0]}', which is no class folder"
            if unknown
            else f"does not list class '{unlisted[0]}'"
            if unlisted
            else "lists a class twice"
        )
        raise FewshotError(f"{manifest} {problem}; it must name every class folder once")
    return [by_name[n] for n in names]


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
            f"({', '.join(skipped[:NAMED])}{', ...' if len(skipped) > NAMED else ''})"
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
        names = ", ".join(skipped[:NAMED]) + (", ..." if len(skipped) > NAMED else "")
        said.append(f"skipped {len(skipped)} unreadable image files in {root} ({names})")
    if dropped:
        names = ", ".join(dropped[:NAMED]) + (", ..." if len(dropped) > NAMED else "")
        said.append(
            f"{len(dropped)} class folders had no readable image and are left out ({names})"
        )
    return "; ".join(said) or None


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``fractions`` as three positive numbers (train, val, test), or a one-line error."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) <= 0:
        raise FewshotError(
            f"split fractions must be three positive numbers for train, val and test "
            f"(e.g. 64 16 20), got {' '.join(str(f) for f in fractions)}"
        )
    return values


def random_parts(n_classes: int, fractions: Sequence[float], seed: int = 0) -> dict[str, list[int]]:
    """A seeded split of ``n_classes`` classes in proportion to ``fractions``.

    Example:
        >>> parts = random_parts(100, (64, 16, 20), seed=0)
        >>> [len(parts[p]) for p in ("train", "val", "test")]
        [64, 16, 20]
    """
    train, val, test = check_fractions(fractions)
    total = train + val + test
    n_test = max(1, round(n_classes * test / total))
    n_val = max(1, round(n_classes * val / total))
    if n_classes - n_test - n_val < 1:
        raise FewshotError(
            f"{n_classes} classes cannot be split into train, val and test classes; "
            "at least 3 are needed"
        )
    order = list(range(n_classes))
    random.Random(seed).shuffle(order)
    test_part, val_part = order[:n_test], order[n_test : n_test + n_val]
    return {
        "train": sorted(order[n_test + n_val :]),
        "val": sorted(val_part),
        "test": sorted(test_part),
    }


def group_parts(
    groups: list[str], fractions: Sequence[float], seed: int = 0
) -> dict[str, list[int]]:
    """A seeded split of whole groups, their classes in proportion to ``fractions``.

    Groups are taken in a seeded order; each goes to the part furthest below its share of the
    classes (relative to that share), so every part gets a group first.

    Example:
        >>> parts = group_parts(["a", "a", "b", "c", "c", "d"], (64, 16, 20))
        >>> all(parts.values()), sorted(sum(parts.values(), []))  # every part, every class once
        (True, [0, 1, 2, 3, 4, 5])
    """
    shares = dict(zip(("train", "val", "test"), check_fractions(fractions)))
    names = sorted(set(groups))
    if len(names) < 3:
        raise FewshotError(
            f"{len(names)} groups cannot be split into train, val and test groups; "
            "at least 3 are needed"
        )
    random.Random(seed).shuffle(names)
    total = sum(shares.values())
    target = {p: len(groups) * s / total for p, s in shares.items()}
    count = dict.fromkeys(shares, 0)
    sizes = Counter(groups)
    part_of = {}
    for name in names:
        # ties go to test, then val: the small parts get their first group before train
        part = max(("test", "val", "train"), key=lambda p: (target[p] - count[p]) / target[p])
        part_of[name] = part
        count[part] += sizes[name]
    return {p: [c for c, g in enumerate(groups) if part_of[g] == p] for p in PARTS}


def load_class_folders(
    name: str,
    root: Path,
    classes: list[ClassFolder],
    preprocessing: Preprocessing,
    split_name: str | None = None,
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 0,
    extra_files: Sequence[Path] = (),
    cache_dir: str | Path | None = None,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> FewShotData:
    """Decode (or read from the cache) the given class folders as a ``FewShotData``.

    What ``load_folder`` does after scanning, for sources with their own layout (``cifar_fs``).

    Args:
        name: the dataset's name.
        root: the folder the class folders lie under (paths in messages are relative to it).
        classes: the classes, in label order; with ``part`` set when the split is given.
        preprocessing: size, channels (None: detected), inversion, normalisation.
        split_name: the given split's name (default ``folders``), when the classes have parts.
        fractions, seed: the seeded split otherwise (``groups`` when classes have groups,
            else ``random``).
        extra_files: other files the classes depend on (a manifest, split files), for the cache.
        cache_dir: default ``$FEWSHOT_CACHE``.
        progress: show a progress bar while decoding (on a terminal only).
        warn: called with the one-line warning about unreadable files (default: ``warnings.warn``).

    Example::

        data = load_class_folders("mine", root, [ClassFolder("cat", sorted(...), "train"), ...],
                                  Preprocessing(32, 3), split_name="mine")
    """
    files = [f for c in classes for f in c.files] + [f for f in extra_files if f.is_file()]
    cached = cached_tensors(
        name,
        root,
        files,
        preprocessing,
        lambda: decode_classes(root, classes, preprocessing, progress),
        cache_dir,
    )
    warning = skipped_warning(root, cached.get("skipped", []), cached.get("dropped", []))
    if warning:
        (warn or _warn)(warning)
    kept_parts, kept_groups = cached["class_parts"], cached["groups"]
    if any(kept_parts):
        parts = {p: [c for c, q in enumerate(kept_parts) if q == p] for p in PARTS}
        empty = [p for p in PARTS if not parts[p]]
        if empty:
            raise FewshotError(f"part '{empty[0]}' of {root} has no class with a readable image")
        split = {split_name or "folders": parts}
    elif any(kept_groups):
        split = {"groups": group_parts(kept_groups, fractions, seed)}
    else:
        split = {"random": random_parts(len(cached["classes"]), fractions, seed)}
    return FewShotData(
        name=name,
        images=cached["images"],
        labels=cached["labels"],
        classes=cached["classes"],
        parts=split,
        preprocessing=preprocessing.resolved(int(cached["channels"])),
        root=root,
        groups=list(kept_groups) if any(kept_groups) else None,
    )


def load_folder(
    path: str | Path | None,
    image_size: int = IMAGE_SIZE,
    channels: int | None = None,
    invert: bool = False,
    fractions: Sequence[float] = FRACTIONS,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> FewShotData:
    """Load a folder of class folders of images (see the module for the layouts).

    Args:
        path: the folder.
        image_size: side of the square working images.
        channels: 1 (grayscale), 3 (RGB) or None: RGB when any image has colour, else 1.
        invert: store ``255 - x`` (for dark strokes on a light page, as Omniglot).
        fractions: train/val/test proportions of the seeded split (not used when the split is
            given as folders).
        seed: seeds that split.
        mean, std: per-channel normalisation of the network input (default 0 and 1).
        cache_dir: where tensor caches are kept (default ``$FEWSHOT_CACHE``).
        progress: show a progress bar while decoding (on a terminal only).
        warn: called with the one-line warning about unreadable files (default: ``warnings.warn``).

    Raises:
        FewshotError: no such folder, no class folder, no readable image, a layout that
            mixes kinds, too few classes or groups to split.

    Example::

        data = load_folder("~/data/birds", image_size=84)
        data.image_shape, {p: len(c) for p, c in data.parts["random"].items()}
        # ((3, 84, 84), {'train': 128, 'val': 32, 'test': 40})
    """
    if path is None:
        raise FewshotError("the folder dataset needs a path: a folder of class folders of images")
    check_fractions(fractions)
    root = Path(path).expanduser()
    preprocessing = Preprocessing(
        int(image_size),
        channels,
        bool(invert),
        tuple(mean) if mean is not None else None,
        tuple(std) if std is not None else None,
    )
    return load_class_folders(
        NAME,
        root,
        scan(root),
        preprocessing,
        fractions=fractions,
        seed=seed,
        extra_files=[root / MANIFEST],
        cache_dir=cache_dir,
        progress=progress,
        warn=warn,
    )


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
