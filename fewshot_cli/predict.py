"""Classify the user's own images with a trained run, from a handful of labelled examples.

The support set is a folder with one sub-folder per class (the sub-folder's name is the label)
holding one or more images; the queries are an image file or a folder of images. Every image is
turned into what the model saw in training: grayscale, LANCZOS-resized to 28x28 like
``source.preprocess``, bright strokes on a dark background, ``float [1, 28, 28]`` in ``[0, 1]``.

Omniglot drawings are dark strokes on a light page, and the cache inverts them. A user's image
may come either way, so by default (``invert="auto"``) an image is inverted when its border --
the outermost row and column of pixels of its grayscale version -- is light (mean above 127.5
of 255): a light border means a light background, hence dark strokes.

Queries are classified by the run's algorithm exactly as ``fewshot eval`` classifies an
episode's queries (``run.evaluation.prepared_copy`` and the algorithm's ``classifier``): ProtoNet by
the nearest prototype (mean support embedding); MAML adapts a copy of the model on the support
set (with as many outputs as there are classes) and classifies with the adapted clone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.choices import INVERT_MODES
from fewshot_cli.data.source import IMAGE_SIZE
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.checkpoint import load_trained
from fewshot_cli.run.config import TrainConfig, pick_device
from fewshot_cli.run.evaluation import prepared_copy, refuse_test_steps, resolve_bn_mode

if TYPE_CHECKING:  # pandas is imported where the table is made (it costs a second)
    import pandas as pd
    from PIL import Image

LIGHT_BORDER = 127.5  # mid-gray: a border lighter than this is a light background
CHUNK = 256  # queries embedded per forward pass, which bounds memory for large folders
PROBABILITY_PREFIX = "p_"


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
    transparent sheet reads as one on paper); 16-bit and float images are scaled to 0..255
    instead of being clipped.
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 255.0)
        scaled = np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
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


def convert_image(path: str | Path, invert: str = "auto") -> torch.Tensor:
    """One image file as the model's input: ``float [1, 28, 28]`` in ``[0, 1]``, strokes bright.

    Args:
        path: any format Pillow reads, any size, colour or grayscale.
        invert: ``auto`` (invert when the border is light), ``yes`` or ``no``.

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
) -> tuple[torch.Tensor, list[Path]]:
    """Convert image files, skipping unreadable ones.

    Args:
        paths: the files.
        invert: see ``convert_image``.
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
            images.append(convert_image(path, invert))
        except FewshotError as exc:
            if strict:
                raise
            warn(f"{exc}; skipped")
            continue
        kept.append(Path(path))
    stacked = torch.stack(images) if images else torch.empty(0, 1, IMAGE_SIZE, IMAGE_SIZE)
    return stacked, kept


def load_support(
    support_dir: str | Path,
    invert: str = "auto",
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
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
        class_images, kept = load_images(find_images(class_dir), invert, strict, warn)
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
    images, kept = load_images(files, invert, strict, warn)
    if not kept:
        raise FewshotError(f"no readable query image in {path}")
    return images, kept


def _chunks(images: torch.Tensor):
    for start in range(0, len(images), CHUNK):
        yield images[start : start + CHUNK]


def classify(
    config: TrainConfig,
    model: torch.nn.Module,
    support: SupportSet,
    query: torch.Tensor,
    bn_mode: str = "auto",
    steps: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Class probabilities ``[len(query), len(support.classes)]`` (softmax of the logits).

    The same computation as ``fewshot eval`` on an episode with these support images and these
    queries (up to ``CHUNK`` queries: more are classified in chunks of ``CHUNK``, each with the
    support images).

    Args:
        config: the run's resolved configuration.
        model: the trained network; left untouched (a deep copy is used).
        support: the labelled examples.
        query: ``float [n, 1, 28, 28]``.
        bn_mode: ``running`` (each image on its own, with training's statistics), ``batch``
            (statistics of the support images together with each chunk of queries) or ``auto``
            (the algorithm's own: running for ProtoNet, batch for MAML, as ``fewshot eval``).
        steps: adaptation steps (MAML; default: the run's ``test_inner_steps``).
        device: where to compute.

    Example::

        config, model, _ = load_trained("runs/proto")
        probabilities = classify(config.resolved(), model, load_support("examples"), images)
    """
    algorithm = registry.get(config.algorithm)
    mode = resolve_bn_mode(config.algorithm, bn_mode, model)
    ways = len(support.classes)
    model = prepared_copy(algorithm, model, ways, mode, device)
    fitted = algorithm.classifier(
        model, support.images.to(device), support.labels.to(device), ways, config, steps=steps
    )
    with torch.no_grad():
        return torch.cat(
            [torch.softmax(fitted(chunk), dim=1).cpu() for chunk in _chunks(query.to(device))]
        )


def predict(
    run: str | Path,
    support_dir: str | Path,
    query_path: str | Path,
    invert: str = "auto",
    bn_mode: str = "auto",
    steps: int | None = None,
    strict: bool = False,
    device: str = "auto",
    warn: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Classify the query images of ``query_path`` from the examples in ``support_dir``.

    Args:
        run: run directory or checkpoint of a trained model.
        support_dir: one sub-folder per class (its name is the label) with one or more images.
        query_path: an image file, or a folder searched recursively for images.
        invert: ``auto`` (invert images with a light border), ``yes`` or ``no``.
        bn_mode: ``auto``, ``running`` or ``batch`` (see ``classify``).
        steps: MAML adaptation steps (default: the run's test inner steps); not for ProtoNet.
        strict: stop at an unreadable image instead of skipping it with a warning.
        device: ``auto``, ``cpu``, ``cuda``...
        warn: called with a one-line message for each skipped image (default: ``warnings.warn``).

    Returns:
        One row per query image: ``path``, the predicted ``label``, and ``p_<class>``, the
        probability of each class in the support folder's (sorted) order.

    Raises:
        FewshotError: bad run, folders or options.

    Example::

        frame = predict("runs/proto", "examples", "photos")
        frame[["path", "label"]]
    """
    if invert not in INVERT_MODES:
        raise FewshotError(
            f"unknown --invert mode '{invert}' (choose from {', '.join(INVERT_MODES)})"
        )
    config, model, _ = load_trained(run)
    config = config.resolved()
    resolve_bn_mode(config.algorithm, bn_mode, model)  # a bad mode fails before images are read
    refuse_test_steps(config, steps, "--steps", run)
    support = load_support(support_dir, invert, strict, warn)
    query, paths = load_query(query_path, invert, strict, warn)
    probabilities = classify(config, model, support, query, bn_mode, steps, pick_device(device))
    import pandas as pd

    frame = pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "label": [support.classes[i] for i in probabilities.argmax(1).tolist()],
        }
    )
    for index, name in enumerate(support.classes):
        frame[PROBABILITY_PREFIX + name] = probabilities[:, index].numpy().astype(float)
    return frame


def format_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """The prediction table as aligned text, probabilities rounded to ``digits``."""
    return frame.to_string(index=False, float_format=lambda value: f"{value:.{digits}f}")


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the predictions as CSV atomically (a temporary file renamed into place)."""
    atomic_write_text(Path(path), frame.to_csv(index=False, float_format="%.6f"))
