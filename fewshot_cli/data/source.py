"""Omniglot on disk: find (or download) it and load every image from a fast tensor cache.

Omniglot has 1623 characters from 50 alphabets, 20 drawings each. The official zips unpack to
``images_background/`` (30 alphabets) and ``images_evaluation/`` (20 alphabets), laid out as
``<alphabet>/<characterNN>/<id>_<drawer>.png`` (105x105, black strokes on white).

Decoding 32,460 PNGs takes tens of seconds, so the first load preprocesses every image once
(LANCZOS resize to 28x28, inverted so strokes are bright) into one ``uint8`` tensor file. Later
loads read that file in a fraction of a second. The cache remembers a fingerprint of the source
files (names, sizes, modification times) and is rebuilt when they change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fewshot_cli.atomic import atomic_torch_save
from fewshot_cli.errors import FewshotError

BACKGROUND, EVALUATION = "images_background", "images_evaluation"
DATASET = "omniglot"  # the name evaluation rows give this data
IMAGE_SIZE = 28
FULL_IMAGE_COUNT = 32460
CACHE_FORMAT = 1


@dataclass
class Omniglot:
    """Every Omniglot image as a tensor, with the name of each character.

    Attributes:
        images: ``uint8`` tensor ``[N, 28, 28]``, strokes bright (255) on a dark background.
        labels: ``int64`` tensor ``[N]``, the character index of each image.
        characters: ``"Alphabet/characterNN"`` for each character index.
        background: for each character, True if it comes from ``images_background``.
        root: the folder the images were read from.

    Example::

        data = load_omniglot("~/.cache/fewshot")
        data.images.shape, len(data.characters)
        # (torch.Size([32460, 28, 28]), 1623)
    """

    images: torch.Tensor
    labels: torch.Tensor
    characters: list[str]
    background: list[bool]
    root: Path

    @property
    def digest(self) -> str:
        """A short hash of the images, labels and names: equal for the same data wherever it
        lies, different for another copy's changed or missing images."""
        digest = hashlib.sha1(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        digest.update("\n".join(self.characters).encode())
        return digest.hexdigest()[:12]

    @property
    def alphabets(self) -> list[str]:
        """The alphabet of each character index."""
        return [c.split("/")[0] for c in self.characters]


def default_data_root() -> Path:
    """``$FEWSHOT_DATA`` if set, else ``~/.cache/fewshot``."""
    return Path(os.environ.get("FEWSHOT_DATA") or "~/.cache/fewshot").expanduser()


def default_cache_dir() -> Path:
    """``$FEWSHOT_CACHE`` if set, else ``~/.cache/fewshot/tensors``."""
    return Path(os.environ.get("FEWSHOT_CACHE") or "~/.cache/fewshot/tensors").expanduser()


def find_image_folder(root: Path) -> Path | None:
    """The folder under ``root`` that holds both image sets, or None.

    An extracted copy has them directly in ``root``; torchvision's download puts them in
    ``root/omniglot-py``.
    """
    for candidate in (root, root / "omniglot-py"):
        if (candidate / BACKGROUND).is_dir() or (candidate / EVALUATION).is_dir():
            return candidate
    return None


def download_omniglot(root: Path) -> Path:
    """Download both official zips through torchvision into ``root/omniglot-py``.

    Example::

        download_omniglot(Path("~/.cache/fewshot").expanduser())
    """
    from torchvision.datasets import Omniglot as TorchvisionOmniglot

    root.mkdir(parents=True, exist_ok=True)
    try:
        for background in (True, False):
            TorchvisionOmniglot(str(root), background=background, download=True)
    except Exception as exc:  # network errors come in many types
        raise FewshotError(
            f"could not download Omniglot into {root} ({exc}); download images_background.zip and "
            "images_evaluation.zip by hand, extract them into one folder and pass it with "
            "--data-root or FEWSHOT_DATA"
        ) from exc
    return root / "omniglot-py"


def list_images(folder: Path) -> list[tuple[str, list[Path]]]:
    """``(set/alphabet/character, [png paths])`` for every character, sorted, for both sets.

    Raises:
        FewshotError: when a set is missing or empty, or a character folder has no image.
    """
    characters: list[tuple[str, list[Path]]] = []
    for image_set in (BACKGROUND, EVALUATION):
        set_dir = folder / image_set
        if not set_dir.is_dir():
            raise FewshotError(
                f"incomplete Omniglot at {folder}: {image_set}/ is missing; extract both official "
                "zips there, or pass --download"
            )
        alphabets = sorted(p for p in set_dir.iterdir() if p.is_dir())
        if not alphabets:
            raise FewshotError(f"incomplete Omniglot at {folder}: {image_set}/ holds no alphabet")
        for alphabet in alphabets:
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                pngs = sorted(character.glob("*.png"))
                if not pngs:
                    raise FewshotError(f"incomplete Omniglot: no PNG image in {character}")
                characters.append((f"{image_set}/{alphabet.name}/{character.name}", pngs))
    return characters


def fingerprint(characters: list[tuple[str, list[Path]]]) -> str:
    """A hash of every image's path, size and modification time: changes when the data does."""
    digest = hashlib.sha1()
    for name, pngs in characters:
        for png in pngs:
            stat = png.stat()
            digest.update(f"{name}/{png.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def preprocess(path: Path) -> torch.Tensor:
    """One Omniglot PNG as a ``uint8 [28, 28]`` tensor: LANCZOS-resized and inverted.

    Raises:
        FewshotError: naming the file when it cannot be decoded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise FewshotError(f"cannot read image {path}: {exc}") from exc
    pixels = torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8)
    return 255 - pixels.view(IMAGE_SIZE, IMAGE_SIZE)


def cache_path(folder: Path, cache_dir: Path) -> Path:
    """Where the tensor cache of the images in ``folder`` lives (one file per data root)."""
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache_dir / f"omniglot-{key}.pt"


def build_cache(characters: list[tuple[str, list[Path]]], progress: bool = False) -> dict:
    """Decode every image once; returns the cache's contents (tensors and names)."""
    from tqdm import tqdm

    total = sum(len(pngs) for _, pngs in characters)
    images = torch.empty(total, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    labels = torch.empty(total, dtype=torch.int64)
    # disable=None draws the bar on a terminal only: in logs and pipes it would bury the
    # one-line error of a bad image under carriage-return noise.
    bar = tqdm(
        total=total, desc="decoding Omniglot", unit="img", disable=None if progress else True
    )
    i = 0
    for label, (_, pngs) in enumerate(characters):
        for png in pngs:
            images[i] = preprocess(png)
            labels[i] = label
            i += 1
        bar.update(len(pngs))
    bar.close()
    return {"images": images, "labels": labels, "names": [name for name, _ in characters]}


def load_omniglot(
    data_root: str | Path | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Omniglot:
    """Load all of Omniglot as tensors, from the cache when it is up to date.

    Args:
        data_root: folder holding ``images_background/`` and ``images_evaluation/`` (or
            ``omniglot-py/`` with them, as torchvision downloads). Default: ``default_data_root()``.
        download: download through torchvision when the images are not there.
        cache_dir: where tensor caches are kept. Default: ``default_cache_dir()``.
        progress: show a progress bar while decoding (on a terminal only).

    Raises:
        FewshotError: the data is missing, incomplete or unreadable.

    Example::

        data = load_omniglot("~/data/omniglot")
        data.images.dtype, data.images.shape
        # (torch.uint8, torch.Size([32460, 28, 28]))
    """
    root = Path(data_root).expanduser() if data_root else default_data_root()
    folder = find_image_folder(root)
    if folder is None:
        if not download:
            raise FewshotError(
                f"no Omniglot found in {root} (expected images_background/ and images_evaluation/); "
                "pass --download to fetch it, or point --data-root / FEWSHOT_DATA at an extracted copy"
            )
        folder = download_omniglot(root)
    characters = list_images(folder)
    stamp = fingerprint(characters)
    path = cache_path(folder, Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    cached = None
    if path.exists():
        try:
            cached = torch.load(path, weights_only=True)
        except Exception:  # a foreign or damaged cache is simply rebuilt
            cached = None
    if not cached or cached.get("fingerprint") != stamp or cached.get("format") != CACHE_FORMAT:
        cached = build_cache(characters, progress=progress)
        cached.update(fingerprint=stamp, format=CACHE_FORMAT)
        atomic_torch_save(cached, path)
    names = cached["names"]
    return Omniglot(
        images=cached["images"],
        labels=cached["labels"],
        characters=[n.split("/", 1)[1] for n in names],
        background=[n.startswith(BACKGROUND + "/") for n in names],
        root=folder,
    )
