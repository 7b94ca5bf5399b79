"""Your own images for ``predict``: a support folder of class folders, and query files.

The support set is a folder with one sub-folder per class (the sub-folder's name is the label)
holding one or more images; the queries are an image file or a folder of images. Every image is
turned into what the model saw in training: for a run of another dataset, the run's channels
and size (``data.images.decode``); for Omniglot, grayscale, LANCZOS-resized to 28x28 like
``source.preprocess``, bright strokes on a dark background, ``float [1, 28, 28]`` in ``[0, 1]``.

Omniglot drawings are dark strokes on a light page, and the cache inverts them. A user's image
may come either way, so by default (``invert="auto"``) an image is inverted when its border --
the outermost row and column of pixels of its grayscale version -- is light (mean above 127.5
of 255): a light border means a light background, hence dark strokes.

A query folder whose sub-folders are named after support classes is labelled
(``labelled_query``, ``true_class``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fewshot_cli.choices import INVERT_MODES
from fewshot_cli.data.source import IMAGE_SIZE
from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:
    from PIL import Image

LIGHT_BORDER = 127.5  # mid-gray: a border lighter than this is a light background


@dataclass
class SupportSet:
    """Labelled example images.

    Attributes:
        images: ``float [n, 1, 28, 28]`` in ``[0, 1]``.
        labels: ``int64 [n]``, an index into ``classes``.
        classes: the class names (sub-folder names), sorted.
        paths: the file of each image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[Path]


def image_suffixes() -> set[str]:
    """File name endings Pillow can decode (``.png``, ``.jpg``, ...), lower case."""
    from PIL import Image

    return {suffix.lower() for suffix in Image.registered_extensions()}


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted), by their name's ending.

    Hidden files and folders (names starting with ``.``) are skipped.

    Example::

        find_images(Path("queries"))
        # [PosixPath('queries/a.png'), PosixPath('queries/more/b.jpg')]
    """
    folder = Path(folder)
    suffixes = image_suffixes()
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in suffixes
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def to_grayscale(image) -> Image.Image:
    """A Pillow image as 8-bit grayscale (mode ``L``).

    Camera rotation (EXIF) is applied; transparent pixels become white (a drawing on a
    transparent sheet reads as one on paper); 16-bit, 32-bit and float images are stretched
    from their own darkest and lightest pixel to 0..255 (a 16-bit file may hold 0..255 values).
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        return Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    return image.convert("L")


def has_light_border(gray) -> bool:
    """True when the outermost pixels of a grayscale image average above mid-gray.

    Example:
        >>> from PIL import Image
        >>> has_light_border(Image.new("L", (50, 40), 230))
        True
    """
    pixels = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    return float(border.mean()) > LIGHT_BORDER


def convert_image(
    path: str | Path, invert: str = "auto", shape: tuple[int, int] | None = None
) -> torch.Tensor:
    """One image file as the model's input: ``float [1, 28, 28]`` in ``[0, 1]``, strokes bright
    (Omniglot), or ``float [C, S, S]`` for a run of another dataset.

    Args:
        path: any format Pillow reads, any size, colour or grayscale.
        invert: ``auto`` (invert when the border is light), ``yes`` or ``no`` (Omniglot only).
        shape: ``(channels, size)`` of a run of another dataset, prepared as its images were
            (``data.images.decode``: no inversion); None for Omniglot.

    Raises:
        FewshotError: naming the file when it cannot be decoded.

    Example::

        convert_image("cat.jpg").shape
        # torch.Size([1, 28, 28])
    """
    from PIL import Image, UnidentifiedImageError

    if invert not in INVERT_MODES:
        raise FewshotError(
            f"unknown --invert mode '{invert}' (choose from {', '.join(INVERT_MODES)})"
        )
    if shape is not None:
        from fewshot_cli.data.images import decode

        channels, size = shape
        return decode(path, size, channels).float().div_(255)
    try:
        with Image.open(path) as image:
            gray = to_grayscale(image)
            flip = invert == "yes" or (invert == "auto" and has_light_border(gray))
            small = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    except UnidentifiedImageError as exc:
        raise FewshotError(
            f"cannot read image {path}: not an image format Pillow knows, or a damaged file"
        ) from exc
    except Exception as exc:  # Pillow raises many types for a truncated or odd file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FewshotError(f"cannot read image {path}: {reason}") from exc
    pixels = torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(1, IMAGE_SIZE, IMAGE_SIZE)
    return (255 - pixels if flip else pixels).float().div_(255)


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def load_images(
    paths: list[Path],
    invert: str = "auto",
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, list[Path]]:
    """Convert image files, skipping unreadable ones.

    Args:
        paths: the files.
        invert, shape: see ``convert_image``.
        strict: stop at the first unreadable image instead of skipping it.
        warn: called with a one-line message for each skipped file (default: ``warnings.warn``).

    Returns:
        ``(images, kept)``: ``float [n, 1, 28, 28]`` and the paths that could be read.

    Raises:
        FewshotError: an unreadable image when ``strict``.

    Example::

        images, kept = load_images(find_images(Path("queries")))
    """
    warn = warn or _default_warn
    images, kept = [], []
    for path in paths:
        try:
            images.append(convert_image(path, invert, shape))
        except FewshotError as exc:
            if strict:
                raise
            warn(f"{exc}; skipped")
            continue
        kept.append(Path(path))
    channels, size = shape or (1, IMAGE_SIZE)
    stacked = torch.stack(images) if images else torch.empty(0, channels, size, size)
    return stacked, kept


def load_support(
    support_dir: str | Path,
    invert: str = "auto",
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    shape: tuple[int, int] | None = None,
) -> SupportSet:
    """The labelled examples of a folder holding one sub-folder of images per class.

    Raises:
        FewshotError: the folder is missing, has fewer than two class folders, or a class
            folder has no readable image (or any image is unreadable, when ``strict``).

    Example::

        support = load_support("examples")  # examples/cat/*.jpg, examples/dog/*.png
        support.classes
        # ['cat', 'dog']
    """
    folder = Path(support_dir)
    if not folder.exists():
        raise FewshotError(f"support folder {folder} does not exist")
    if not folder.is_dir():
        raise FewshotError(
            f"support folder {folder} is not a folder (expected one sub-folder of images per class)"
        )
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        found = f"only '{class_dirs[0].name}'" if class_dirs else "none"
        raise FewshotError(
            f"support folder {folder} needs at least two class sub-folders (found "
            f"{found}); put each class's example images in a sub-folder named "
            "after the class"
        )
    images, labels, paths = [], [], []
    for index, class_dir in enumerate(class_dirs):
        class_images, kept = load_images(find_images(class_dir), invert, strict, warn, shape)
        if not kept:
            raise FewshotError(f"class folder {class_dir} has no readable image")
        images.append(class_images)
        labels += [index] * len(kept)
        paths += kept
    return SupportSet(
        torch.cat(images),
        torch.tensor(labels, dtype=torch.int64),
        [d.name for d in class_dirs],
        paths,
    )


def load_query(
    query_path: str | Path,
    invert: str = "auto",
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, list[Path]]:
    """The images to classify: one file, or every image under a folder (recursively).

    Raises:
        FewshotError: the path is missing, is an unreadable image, or holds no readable image.

    Example::

        images, paths = load_query("photos/")
    """
    path = Path(query_path)
    if not path.exists():
        raise FewshotError(f"query path {path} does not exist")
    if path.is_dir():
        files = find_images(path)
        if not files:
            raise FewshotError(f"no images found in query folder {path}")
    else:
        # A file named explicitly is tried whatever its name's ending; if it cannot be read
        # there is nothing left to skip to, so that is the error.
        files, strict = [path], True
    images, kept = load_images(files, invert, strict, warn, shape)
    if not kept:
        raise FewshotError(f"no readable query image in {path}")
    return images, kept


def labelled_query(query_path: str | Path, classes: list[str]) -> bool:
    """Whether the query folder is labelled: one of its sub-folders is named after a support class.

    An image in such a sub-folder (at any depth) belongs to that class (``true_class``).

    Raises:
        FewshotError: a labelled query folder has a sub-folder named after no support class.

    Example::

        labelled_query("photos", ["cat", "dog"])  # photos/cat/1.jpg, photos/dog/2.png
        # True
    """
    folder = Path(query_path)
    if not folder.is_dir():
        return False
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not set(names) & set(classes):
        return False
    strangers = [name for name in names if name not in classes]
    if strangers:
        raise FewshotError(
            f"query folder {folder} has sub-folders named after support classes, but "
            f"'{strangers[0]}' is none of them ({', '.join(classes)}): rename or move it"
        )
    return True


def true_class(query_path: str | Path, path: str | Path) -> str:
    """The class of a query image of a labelled query folder: its sub-folder's name, or ``""``
    for an image directly in the query folder.

    Example:
        >>> true_class("photos", "photos/cat/old/1.jpg"), true_class("photos", "photos/2.jpg")
        ('cat', '')
    """
    parts = Path(path).relative_to(Path(query_path)).parts
    return parts[0] if len(parts) > 1 else ""
