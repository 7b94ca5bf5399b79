"""Your own images as a few-shot dataset: a folder of class folders (``folder_images.export``
writes one).

A class is a folder of images, named by its path under ``PATH`` (or its part folder). Layouts:

- ``PATH/train/``, ``PATH/val/`` (or ``validation/``), ``PATH/test/`` of class folders: the
  split is given (split ``folders``);
- ``PATH/<class>/``: classes split by seed in proportion to ``fractions`` (default 64/16/20,
  mini-ImageNet's; split ``random``);
- ``PATH/<group>/<class>/``: whole groups split by seed, as Omniglot's alphabets (split
  ``groups``).

Any format Pillow opens, any size and mode (``data.images``); RGB when any image has colour,
else grayscale, unless ``channels`` is given. Unreadable files are skipped with one warning.
``PATH/classes.txt`` (a class name a line) fixes the label order; otherwise by part, then name.
Hidden entries are ignored; decoded images are cached (``dataset.cached_tensors``).
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from fewshot_cli.data.dataset import PARTS, FewShotData, Preprocessing, cached_tensors
from fewshot_cli.data.folder_images import (  # noqa: F401 (ClassFolder re-exported)
    MANIFEST,
    NAMED,
    ClassFolder,
    decode_classes,
    skipped_warning,
)
from fewshot_cli.data.images import image_extensions
from fewshot_cli.errors import FewshotError

NAME = "folder"
IMAGE_SIZE = 84  # mini-ImageNet's: the size a Conv-4 for colour images is usually given
FRACTIONS = (64, 16, 20)  # train, val, test: mini-ImageNet's 64/16/20 classes
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


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


def check_fractions(fractions: Sequence[float | str]) -> tuple[float, float, float]:
    """``fractions`` as three positive numbers (train, val, test), or a one-line error."""
    try:
        values = tuple(float(f) for f in fractions)
    except ValueError:
        values = ()
    if len(values) != 3 or not min(values) > 0 or max(values) == float("inf"):
        raise FewshotError(
            f"split fractions must be three positive numbers for train, val and test "
            f"(e.g. 64/16/20), got {'/'.join(str(f) for f in fractions)}"
        )
    return values


def fractions_text(text: str) -> str:
    """``--split-fractions`` in its recorded form: train/val/test as percentages of the classes.

    Example:
        >>> fractions_text("0.7,0.1,0.2"), fractions_text("64/16/20")
        ('70/10/20', '64/16/20')
    """
    values = check_fractions([v for v in re.split(r"[/,: ]+", str(text).strip()) if v] or [text])
    return "/".join(f"{100 * v / sum(values):.4g}" for v in values)


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
