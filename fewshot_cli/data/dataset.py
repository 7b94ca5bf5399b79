"""The form every dataset source gives (``FewShotData``), and the one tensor cache they share.

A source (``folder``, ``mini_imagenet``, ``cifar_fs``; Omniglot through ``from_omniglot``)
decodes its files once into ``uint8 [N, C, H, W]`` images at the working size, with a label
per image, a name per class, optionally a group per class (Omniglot's alphabets: a group is
never split between parts) and its named splits, each a ``train``/``val``/``test`` partition of
the class indices.

The decoded tensors are kept in ``$FEWSHOT_CACHE`` (default ``~/.cache/fewshot/tensors``), one
file per source folder and preprocessing. A cache records the key it was made for (the
source's files: relative paths, sizes and modification times; and the preprocessing that
shapes the stored pixels), is written atomically and read with ``torch.load(weights_only=True)``
(a cache file cannot run code). A stale, damaged or foreign cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fewshot_cli.atomic import atomic_torch_save
from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:  # type hints only: both are imported where they are used
    from fewshot_cli.data.source import Omniglot
    from fewshot_cli.data.splits import Split

CACHE_FORMAT = 1
PARTS = ("train", "val", "test")  # the parts of every split; "trainval" is train + val


@dataclass(frozen=True)
class Preprocessing:
    """How a source's files become the stored images, and how images become model input.

    ``size``, ``channels`` and ``invert`` shape the stored ``uint8`` pixels (and key the
    cache); ``mean`` and ``std`` are applied when the images are used (``FewShotData.to_float``),
    so changing them never re-decodes anything.

    Args:
        size: side of the square images.
        channels: 1 (grayscale) or 3 (RGB); None before detection (``folder``'s default).
        invert: pixels were inverted (255 - x), as Omniglot's strokes are made bright.
        mean, std: per channel, on the ``[0, 1]`` scale: input is ``(x / 255 - mean) / std``.
            Default: 0 and 1 (plain ``[0, 1]`` pixels, as learn2learn's ``normalize``).

    Example:
        >>> Preprocessing(84, 3).key()
        'size=84;channels=3;invert=False;resize=lanczos'
    """

    size: int
    channels: int | None
    invert: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.size < 1:
            raise FewshotError(f"image size must be at least 1 pixel (got {self.size})")
        if self.channels not in (None, 1, 3):
            raise FewshotError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")

    def key(self) -> str:
        """What the stored pixels depend on, as text (part of the cache key)."""
        return f"size={self.size};channels={self.channels};invert={self.invert};resize=lanczos"

    def resolved(self, channels: int) -> Preprocessing:
        """This preprocessing with ``channels`` known and ``mean``/``std`` spelled out."""
        mean = self.mean if self.mean is not None else (0.0,) * channels
        std = self.std if self.std is not None else (1.0,) * channels
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise FewshotError(
                f"normalisation needs {channels} mean and {channels} positive std values "
                f"(got mean {list(mean)}, std {list(std)})"
            )
        return replace(self, channels=channels, mean=tuple(mean), std=tuple(std))


@dataclass
class FewShotData:
    """Every image of a dataset as one tensor, with its classes and splits.

    Attributes:
        name: the source's registry name (``folder``, ``mini-imagenet``...): the ``dataset``
            evaluation rows record.
        images: ``uint8 [N, C, H, W]`` at the working size.
        labels: ``int64 [N]``, an index into ``classes``.
        classes: the name of each class.
        parts: split name to part name (``train``, ``val``, ``test``) to sorted class indices;
            the first split is the default.
        preprocessing: what made the pixels and how they become model input.
        root: the folder the data was read from.
        groups: the group of each class (a group is kept in one part), or None.

    Example::

        data = load_folder("~/data/birds", image_size=84)
        data.images.shape, data.parts["random"]["test"][:3]
        # (torch.Size([6000, 3, 84, 84]), [2, 11, 17])
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    parts: dict[str, dict[str, list[int]]]
    preprocessing: Preprocessing
    root: Path
    groups: list[str] | None = None

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")
        if self.groups is not None and len(self.groups) != len(self.classes):
            raise ValueError(f"{len(self.groups)} groups for {len(self.classes)} classes")

    @property
    def digest(self) -> str:
        """A short hash of the images, labels and class names (``Omniglot.digest``'s recipe, so
        Omniglot through ``from_omniglot`` keeps the digest its evaluation rows record)."""
        digest = hashlib.sha1(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        digest.update("\n".join(self.classes).encode())
        return digest.hexdigest()[:12]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``: the network's input."""
        return tuple(self.images.shape[1:])

    @property
    def default_split(self) -> str:
        """The first split: the one used when none is named."""
        return next(iter(self.parts))

    def part_classes(self, part: str, split: str | None = None) -> list[int]:
        """The class indices of ``part`` (``train``, ``val``, ``test`` or ``trainval``).

        Raises:
            FewshotError: an unknown split or part.
        """
        split = split or self.default_split
        if split not in self.parts:
            raise FewshotError(
                f"{self.name} has no split '{split}' (choose from {', '.join(self.parts)})"
            )
        if part == "trainval":
            return sorted(self.parts[split]["train"] + self.parts[split]["val"])
        if part not in self.parts[split]:
            raise FewshotError(f"split '{split}' of {self.name} has no part '{part}'")
        return list(self.parts[split][part])

    def as_split(self, split: str | None = None) -> Split:
        """One split as ``data.splits.Split`` (classes as ``(class index, 0)`` pairs, with
        ``trainval``), the form ``data.episodes.meta_dataset`` takes today."""
        from fewshot_cli.data.splits import Split

        name = split or self.default_split
        parts = {p: [(c, 0) for c in self.part_classes(p, name)] for p in (*PARTS, "trainval")}
        return Split(name, parts)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """Stored ``uint8`` images as network input: ``(x / 255 - mean) / std`` per channel.

        Example::

            data.to_float(data.images[:8]).shape
            # torch.Size([8, 3, 84, 84])
        """
        prep = self.preprocessing.resolved(self.images.shape[1])
        x = images.float().div_(255)
        if any(prep.mean) or any(s != 1 for s in prep.std):
            shape = (-1, 1, 1)
            x = (x - torch.tensor(prep.mean).view(shape)) / torch.tensor(prep.std).view(shape)
        return x


def usable_classes(
    data: FewShotData, part: str, needed: int, ways: int = 1, split: str | None = None
) -> tuple[list[int], str | None]:
    """The classes of ``part`` with at least ``needed`` images (an episode's shots + queries).

    Args:
        data: the dataset.
        part: ``train``, ``val``, ``test`` or ``trainval``.
        needed: images an episode draws per class.
        ways: classes an episode needs: fewer usable classes is an error.
        split: the split (default: the data's first).

    Returns:
        ``(kept, warning)``: the usable class indices, and a one-line warning naming how many
        were left out (None when none was).

    Raises:
        FewshotError: fewer than ``ways`` classes are usable.

    Example::

        kept, warning = usable_classes(data, "test", needed=1 + 15, ways=5)
        # warning: "2 of the 20 classes of part 'test' of folder have fewer than 16 images ..."
    """
    classes = data.part_classes(part, split)
    counts = data.labels.bincount(minlength=len(data.classes)).tolist()
    kept = [c for c in classes if counts[c] >= needed]
    if len(kept) < ways:
        raise FewshotError(
            f"part '{part}' of {data.name} has {len(kept)} classes with at least {needed} images "
            f"(shots + queries), fewer than the {ways} ways of an episode"
        )
    left_out = len(classes) - len(kept)
    warning = None
    if left_out:
        warning = (
            f"{left_out} of the {len(classes)} classes of part '{part}' of {data.name} have "
            f"fewer than {needed} images (shots + queries) and are left out"
        )
    return kept, warning


def fingerprint(files: Iterable[Path], base: Path) -> str:
    """A hash of every file's path under ``base``, size and modification time.

    Example::

        fingerprint(sorted(root.rglob("*.png")), root)
        # '3f1c...'
    """
    digest = hashlib.sha1()
    for path in files:
        stat = path.stat()
        name = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$FEWSHOT_CACHE`` if set, else ``~/.cache/fewshot/tensors`` (as Omniglot's cache)."""
    from fewshot_cli.data.source import default_cache_dir as omniglot_cache_dir

    return omniglot_cache_dir()


def cache_file(name: str, root: Path, preprocessing: Preprocessing, cache_dir: Path) -> Path:
    """Where the cache of ``name`` read from ``root`` with ``preprocessing`` lives."""
    place = f"{root.resolve()}\n{preprocessing.key()}".encode()
    return cache_dir / f"{name}-{hashlib.sha1(place).hexdigest()[:16]}.pt"


def is_sound(cached: object, key: str) -> bool:
    """True when ``cached`` is a cache of this format and key, with consistent tensors."""
    if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT:
        return False
    images, labels, classes = cached.get("images"), cached.get("labels"), cached.get("classes")
    return (
        cached.get("key") == key
        and isinstance(images, torch.Tensor)
        and images.dtype == torch.uint8
        and images.dim() == 4
        and isinstance(labels, torch.Tensor)
        and labels.dtype == torch.int64
        and labels.shape == (len(images),)
        and isinstance(classes, list)
        and all(isinstance(c, str) for c in classes)
        and (len(labels) == 0 or 0 <= int(labels.min()) <= int(labels.max()) < len(classes))
    )


def cached_tensors(
    name: str,
    root: Path,
    files: Iterable[Path],
    preprocessing: Preprocessing,
    build: Callable[[], dict],
    cache_dir: str | Path | None = None,
) -> dict:
    """The decoded tensors of a source: from its cache when that is current, else ``build()``.

    Args:
        name: the source's name (the cache file's prefix).
        root: the folder the source reads.
        files: every file the decoded tensors depend on (images, split files...).
        preprocessing: what shapes the stored pixels (its ``key()``).
        build: decodes the files; returns at least ``images`` (``uint8 [N, C, H, W]``),
            ``labels`` (``int64 [N]``) and ``classes`` (names), plus any other entries
            ``torch.load(weights_only=True)`` reads back (tensors, lists, strings, numbers).
        cache_dir: default ``$FEWSHOT_CACHE``, else ``~/.cache/fewshot/tensors``.

    Returns:
        ``build()``'s dict, with ``key`` and ``format`` added.

    Example::

        cached = cached_tensors("folder", root, pngs, Preprocessing(84, 3), decode_all)
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = hashlib.sha1(
        f"{CACHE_FORMAT}\n{name}\n{preprocessing.key()}\n{fingerprint(files, root)}".encode()
    ).hexdigest()
    path = cache_file(name, root, preprocessing, cache_dir)
    if path.exists():
        try:
            with warnings.catch_warnings():  # torch warns about a foreign file's pickle protocol
                warnings.simplefilter("ignore")
                cached = torch.load(path, weights_only=True)
        except Exception:  # a damaged or foreign file is simply rebuilt
            cached = None
        if is_sound(cached, key):
            return cached
    cached = build()
    cached.update(key=key, format=CACHE_FORMAT)
    atomic_torch_save(cached, path)
    return cached


def from_omniglot(omniglot: Omniglot, seed: int = 0) -> FewShotData:
    """Omniglot (``source.load_omniglot``) in the common form, with its ``lake`` and ``random``
    splits (``vinyals`` needs its split files and rotations: ``data.splits`` builds it).

    Images are the same tensors viewed as ``[N, 1, 28, 28]``; classes are the characters and
    groups their alphabets, so the digest is ``omniglot.digest``.

    Example::

        data = from_omniglot(load_omniglot("~/data/omniglot"))
        data.image_shape, data.digest == load_omniglot("~/data/omniglot").digest
        # ((1, 28, 28), True)
    """
    from fewshot_cli.data.source import DATASET, IMAGE_SIZE
    from fewshot_cli.data.splits import make_split

    parts = {}
    for name in ("lake", "random"):
        split = make_split(omniglot, name, seed=seed)
        parts[name] = {p: sorted(c for c, _ in split.parts[p]) for p in PARTS}
    return FewShotData(
        name=DATASET,
        images=omniglot.images.unsqueeze(1),
        labels=omniglot.labels,
        classes=list(omniglot.characters),
        parts=parts,
        preprocessing=Preprocessing(IMAGE_SIZE, 1, invert=True).resolved(1),
        root=omniglot.root,
        groups=omniglot.alphabets,
    )
