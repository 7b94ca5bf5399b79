"""CIFAR-FS from learn2learn's folders: both layouts, the split, the cache."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fewshot_cli.data import folder as folder_module
from fewshot_cli.data.cifar_fs import load_cifar_fs
from fewshot_cli.errors import FewshotError

CLASSES = {"train": ["apple", "bee", "cup", "dolphin"], "val": ["elephant", "fox"], "test": ["girl", "house"]}
PER_CLASS = 3


def write_class(folder: Path, seed: int) -> None:
    """``PER_CLASS`` 32x32 RGB PNGs of a coloured square, as CIFAR-FS stores its images."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for i in range(PER_CLASS):
        image = Image.new("RGB", (32, 32), tuple(rng.randint(150, 255) for _ in range(3)))
        corner = rng.randint(2, 12)
        ImageDraw.Draw(image).rectangle((corner, corner, corner + 15, corner + 15),
                                        fill=tuple(rng.randint(0, 120) for _ in range(3)))
        image.save(folder / f"{folder.name}_s_{i:06d}.png")


def write_processed(root: Path) -> Path:
    """learn2learn's processed layout: ``cifarfs/processed/{train,val,test}/<class>/*.png``."""
    for part, names in CLASSES.items():
        for n, name in enumerate(names):
            write_class(root / "cifarfs" / "processed" / part / name, seed=10 * len(name) + n)
    return root


def write_raw(root: Path) -> Path:
    """The extracted zip: ``cifarfs/cifar100/data/<class>/`` and the Bertinetto split files."""
    base = root / "cifarfs" / "cifar100"
    for names in CLASSES.values():
        for n, name in enumerate(names):
            write_class(base / "data" / name, seed=n)
    (base / "splits" / "bertinetto").mkdir(parents=True)
    for part, names in CLASSES.items():
        (base / "splits" / "bertinetto" / f"{part}.txt").write_text("\n".join(names) + "\n")
    return root


def test_processed_layout(tmp_path):
    root = write_processed(tmp_path / "data")
    data = load_cifar_fs(root, cache_dir=tmp_path / "cache")
    assert data.name == "cifar-fs" and data.root == root / "cifarfs" / "processed"
    assert data.images.shape == (24, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.classes == [n for names in CLASSES.values() for n in names]
    assert data.parts == {"bertinetto": {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]}}
    first = sorted((root / "cifarfs" / "processed" / "train" / "apple").iterdir())[0]
    pixels = torch.from_numpy(np.array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(data.images[0], pixels)  # stored as read: 32x32, nothing resized
    # the processed folder itself is found too
    same = load_cifar_fs(root / "cifarfs" / "processed", cache_dir=tmp_path / "cache")
    assert torch.equal(same.images, data.images)


def test_extracted_zip_layout_follows_the_split_files(tmp_path):
    root = write_raw(tmp_path / "data")
    data = load_cifar_fs(root, image_size=16, cache_dir=tmp_path / "cache")
    assert data.images.shape == (24, 3, 16, 16)
    assert data.parts["bertinetto"] == {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]}
    # the split files are part of the cache's key: moving a class moves it
    splits = root / "cifarfs" / "cifar100" / "splits" / "bertinetto"
    (splits / "val.txt").write_text("elephant\n")
    (splits / "test.txt").write_text("fox\ngirl\nhouse\n")
    moved = load_cifar_fs(root, image_size=16, cache_dir=tmp_path / "cache")
    assert moved.parts["bertinetto"] == {"train": [0, 1, 2, 3], "val": [4], "test": [5, 6, 7]}
    (splits / "test.txt").write_text("fox\ngirl\nhouse\nzebra\n")
    with pytest.raises(FewshotError, match=r"test\.txt:4: class 'zebra' has no images"):
        load_cifar_fs(root, cache_dir=tmp_path / "cache")


def test_cache_is_reused(tmp_path, monkeypatch):
    root = write_processed(tmp_path / "data")
    first = load_cifar_fs(root, cache_dir=tmp_path / "cache")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_module, "decode_classes", no_decoding)
    second = load_cifar_fs(root, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images) and second.parts == first.parts


def test_missing_data_is_one_line(tmp_path):
    with pytest.raises(FewshotError, match="no CIFAR-FS in .*cifarfs/processed.*not downloaded"):
        load_cifar_fs(tmp_path, cache_dir=tmp_path / "cache")
    root = write_processed(tmp_path / "data")
    for image in (root / "cifarfs" / "processed" / "val" / "fox").iterdir():
        image.write_text("not a png")
    warned = []
    data = load_cifar_fs(root, cache_dir=tmp_path / "cache", warn=warned.append)
    assert "fox" not in data.classes and len(warned) == 1 and "left out (fox)" in warned[0]
