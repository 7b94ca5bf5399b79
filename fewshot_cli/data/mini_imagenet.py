"""mini-ImageNet from the files learn2learn's ``MiniImagenet`` reads, never downloaded.

mini-ImageNet (Vinyals et al., 2016) has 100 ImageNet classes of 600 colour images, 84x84,
split by Ravi and Larochelle (2017) into 64 training, 16 validation and 20 test classes. Its
usual files, as learn2learn downloads them into its ``root``, are

- ``mini-imagenet-cache-train.pkl``, ``mini-imagenet-cache-validation.pkl`` and
  ``mini-imagenet-cache-test.pkl``: each a pickled dict with ``image_data`` (a ``uint8`` numpy
  array ``[n, 84, 84, 3]``) and ``class_dict`` (class name -> indices into ``image_data``).

The three files are the split (``ravi``). The pickles are read with ``safe_pickle.load_arrays``,
which refuses any file that would run code. Images are grouped by class (in each file's
``class_dict`` order, files in train, validation, test order) into one ``uint8 [N, 3, 84, 84]``
tensor, cached as every source's (``dataset.cached_tensors``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fewshot_cli.data.dataset import FewShotData, Preprocessing, cached_tensors
from fewshot_cli.errors import FewshotError

NAME = "mini-imagenet"
IMAGE_SIZE = 84
FILES = {
    "train": "mini-imagenet-cache-train.pkl",
    "val": "mini-imagenet-cache-validation.pkl",
    "test": "mini-imagenet-cache-test.pkl",
}
SPLIT = "ravi"  # Ravi and Larochelle's 64/16/20 classes, as the three files hold them
SUBFOLDERS = ("", "mini-imagenet", "mini_imagenet", "miniimagenet")


def find_files(root: Path) -> Path:
    """The folder under ``root`` holding the three pickles (``root`` or a ``mini-imagenet``
    sub-folder).

    Raises:
        FewshotError: naming the first file that is missing.
    """
    for sub in SUBFOLDERS:
        if all((root / sub / name).is_file() for name in FILES.values()):
            return root / sub
    folder = next((root / s for s in SUBFOLDERS if (root / s / FILES["train"]).is_file()), root)
    missing = next(name for name in FILES.values() if not (folder / name).is_file())
    raise FewshotError(
        f"no mini-ImageNet in {root}: {folder / missing} is missing (put the three "
        f"{', '.join(FILES.values())} there; they are not downloaded)"
    )


def read_part(path: Path) -> tuple[np.ndarray, list[tuple[str, list[int]]]]:
    """One pickle's images and ``(class name, image indices)`` pairs, checked.

    Raises:
        FewshotError: the file is refused, unreadable, or not in the format above.
    """
    from fewshot_cli.data.safe_pickle import load_arrays

    content = load_arrays(path)

    def bad(what: str) -> FewshotError:
        return FewshotError(f"{path} is not a mini-ImageNet file: {what}")

    if not isinstance(content, dict) or not {"image_data", "class_dict"} <= set(content):
        raise bad("expected a dict with 'image_data' and 'class_dict'")
    images, class_dict = content["image_data"], content["class_dict"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise bad("'image_data' must be a uint8 array [n, height, width, 3]")
    if images.shape[3] != 3:
        raise bad(f"'image_data' has {images.shape[3]} channels, not 3")
    if not isinstance(class_dict, dict) or not class_dict:
        raise bad("'class_dict' must be a non-empty dict of class name -> image indices")
    classes = []
    for name, indices in class_dict.items():
        if not isinstance(name, str):
            raise bad(f"class name {name!r} is not a string")
        values = np.asarray(indices).reshape(-1)
        if values.size == 0 or values.dtype.kind not in "iu":
            raise bad(f"class '{name}' has no list of integer image indices")
        if values.min() < 0 or values.max() >= len(images):
            raise bad(f"class '{name}' names image {int(values.max())} of {len(images)}")
        classes.append((name, values.astype(np.int64).tolist()))
    return images, classes


def to_size(images: np.ndarray, size: int, channels: int) -> torch.Tensor:
    """``uint8 [n, h, w, 3]`` as ``uint8 [n, channels, size, size]`` (LANCZOS, as every source)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if tensor.shape[2:] == (size, size) and channels == 3:
        return tensor.contiguous()
    from PIL import Image

    from fewshot_cli.data.images import fit

    return torch.stack([fit(Image.fromarray(image), size, channels) for image in images])


def decode_files(folder: Path, size: int, channels: int) -> dict:
    """Read the three pickles into the cache's contents (images grouped by class)."""
    chunks, labels, names, class_parts = [], [], [], []
    for part, file_name in FILES.items():
        images, classes = read_part(folder / file_name)
        for name, indices in classes:
            if name in names:
                raise FewshotError(
                    f"class '{name}' of {folder / file_name} is also in "
                    f"{folder / FILES[class_parts[names.index(name)]]}: a class belongs to one part"
                )
            chunks.append(to_size(images[indices], size, channels))
            labels += [len(names)] * len(indices)
            names.append(name)
            class_parts.append(part)
        del images  # one file's array at a time
    return {
        "images": torch.cat(chunks),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "classes": names,
        "class_parts": class_parts,
    }


def load_mini_imagenet(
    root: str | Path | None = None,
    image_size: int = IMAGE_SIZE,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FewShotData:
    """Load mini-ImageNet's three pickles as one dataset with its 64/16/20-class split.

    Args:
        root: the folder of ``mini-imagenet-cache-*.pkl`` (or its parent, holding them in
            ``mini-imagenet/``). Default: ``$FEWSHOT_DATA``, else ``~/.cache/fewshot``.
        image_size: side of the working images (84: as stored, nothing resized).
        channels: 3 (RGB), or 1 for grayscale.
        mean, std: per-channel normalisation of the network input (default 0 and 1).
        cache_dir: where tensor caches are kept (default ``$FEWSHOT_CACHE``).
        progress: accepted for the common signature (the pickles are read whole).

    Raises:
        FewshotError: a file is missing, refused (it would run code) or not in the format.

    Example::

        data = load_mini_imagenet("~/data/mini-imagenet")
        data.images.shape, [len(data.parts["ravi"][p]) for p in ("train", "val", "test")]
        # (torch.Size([60000, 3, 84, 84]), [64, 16, 20])
    """
    from fewshot_cli.data.source import default_data_root

    preprocessing = Preprocessing(int(image_size), channels, False, mean, std)
    root = Path(root).expanduser() if root else default_data_root()
    folder = find_files(root)
    cached = cached_tensors(
        NAME,
        folder,
        [folder / name for name in FILES.values()],
        preprocessing,
        lambda: decode_files(folder, int(image_size), channels),
        cache_dir,
    )
    kept_parts = cached["class_parts"]
    parts = {p: [c for c, q in enumerate(kept_parts) if q == p] for p in FILES}
    return FewShotData(
        name=NAME,
        images=cached["images"],
        labels=cached["labels"],
        classes=cached["classes"],
        parts={SPLIT: parts},
        preprocessing=preprocessing.resolved(channels),
        root=folder,
    )
