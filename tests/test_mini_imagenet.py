"""mini-ImageNet from learn2learn's pickles: format, split, cache, and pickles that would run code."""

from __future__ import annotations

import os
import pickle
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fewshot_cli.data import mini_imagenet
from fewshot_cli.data.mini_imagenet import FILES, load_mini_imagenet
from fewshot_cli.data.safe_pickle import load_arrays
from fewshot_cli.errors import FewshotError

CLASSES = {"train": ["n01", "n02", "n03", "n04"], "val": ["n05", "n06"], "test": ["n07", "n08"]}
PER_CLASS = 3


def shapes(n: int, seed: int) -> np.ndarray:
    """``n`` coloured shapes as learn2learn's files hold images: ``uint8 [n, 84, 84, 3]``."""
    rng = random.Random(seed)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (84, 84), tuple(rng.randint(180, 255) for _ in range(3)))
        box = sorted(rng.sample(range(5, 80), 2))
        ImageDraw.Draw(image).ellipse((box[0], box[0], box[1], box[1]),
                                      fill=tuple(rng.randint(0, 255) for _ in range(3)))
        images.append(np.asarray(image))
    return np.stack(images)


def write_pickles(folder: Path, protocol: int = pickle.HIGHEST_PROTOCOL, seed: int = 0) -> dict:
    """The three files in learn2learn's format; classes interleaved in ``image_data``.

    Returns each class's images, as ``[n, 84, 84, 3]`` arrays.
    """
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for part, names in CLASSES.items():
        images = shapes(len(names) * PER_CLASS, seed + len(expected))
        # image i belongs to class i % classes: a class's images are not consecutive
        class_dict = {name: list(range(c, len(images), len(names))) for c, name in enumerate(names)}
        for name, indices in class_dict.items():
            expected[name] = images[indices]
        with open(folder / FILES[part], "wb") as handle:
            pickle.dump({"image_data": images, "class_dict": class_dict}, handle, protocol=protocol)
    return expected


@pytest.fixture
def pickles(tmp_path) -> tuple[Path, dict]:
    return tmp_path / "mini", write_pickles(tmp_path / "mini")


def test_loads_images_classes_and_split(pickles, tmp_path):
    root, expected = pickles
    data = load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    assert data.name == "mini-imagenet" and data.root == root
    assert data.images.shape == (24, 3, 84, 84) and data.images.dtype == torch.uint8
    assert data.classes == [n for names in CLASSES.values() for n in names]
    assert data.parts == {"ravi": {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]}}
    assert data.labels.tolist() == [c for c in range(8) for _ in range(PER_CLASS)]
    for label, name in enumerate(data.classes):
        stored = data.images[data.labels == label].permute(0, 2, 3, 1).numpy()
        assert np.array_equal(stored, expected[name])
    assert data.preprocessing.channels == 3 and data.preprocessing.size == 84


def test_files_in_a_subfolder_and_other_sizes(tmp_path):
    write_pickles(tmp_path / "data" / "mini-imagenet")
    data = load_mini_imagenet(tmp_path / "data", image_size=42, cache_dir=tmp_path / "cache")
    assert data.images.shape == (24, 3, 42, 42)
    gray = load_mini_imagenet(tmp_path / "data", channels=1, cache_dir=tmp_path / "cache")
    assert gray.images.shape == (24, 1, 84, 84)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_loads(tmp_path, protocol):
    expected = write_pickles(tmp_path, protocol=protocol)
    content = load_arrays(tmp_path / FILES["val"])
    assert np.array_equal(content["image_data"][0], expected["n05"][0])
    assert content["class_dict"]["n06"] == [1, 3, 5]


def test_cache_is_reused_and_rebuilt(pickles, tmp_path, monkeypatch):
    root, _ = pickles
    first = load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("mini-imagenet-*.pt")
    stamp = cache.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(mini_imagenet, "decode_files", no_decoding)
        second = load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images) and cache.stat().st_mtime_ns == stamp

    write_pickles(root, seed=7)  # new images in the same files
    for name in FILES.values():
        os.utime(root / name, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    assert not torch.equal(changed.images, first.images)


class Runs:
    """Unpickling this runs a shell command that touches ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_pickle_that_would_run_code_is_refused(pickles, tmp_path):
    root, _ = pickles
    # the payload works: plain pickle runs it
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Runs(proof)))
    assert proof.exists()

    marker = tmp_path / "ran"
    images = shapes(PER_CLASS, 0)
    with open(root / FILES["train"], "wb") as handle:
        pickle.dump({"image_data": images, "class_dict": {"n01": [0, 1, 2]}, "x": Runs(marker)},
                    handle)
    with pytest.raises(FewshotError, match=r"refused to load .*mini-imagenet-cache-train\.pkl: "
                                           r"it calls (posix|os)\.system") as caught:
        load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    assert "\n" not in str(caught.value)
    assert not marker.exists()

    (root / FILES["test"]).write_bytes(pickle.dumps(Runs(marker), protocol=0))
    with pytest.raises(FewshotError, match="refused to load"):
        load_arrays(root / FILES["test"])
    assert not marker.exists()
    (root / FILES["test"]).write_bytes(pickle.dumps([eval, "1+1"]))
    with pytest.raises(FewshotError, match="it calls builtins.eval"):
        load_arrays(root / FILES["test"])


def test_bad_files_are_one_line_errors(pickles, tmp_path):
    root, _ = pickles
    os.remove(root / FILES["val"])
    with pytest.raises(FewshotError, match=r"mini-imagenet-cache-validation\.pkl is missing.*not downloaded"):
        load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    with open(root / FILES["val"], "wb") as handle:
        pickle.dump({"image_data": np.zeros((2, 84, 84, 3), np.float32), "class_dict": {"a": [0]}},
                    handle)
    with pytest.raises(FewshotError, match="not a mini-ImageNet file: 'image_data' must be a uint8"):
        load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    with open(root / FILES["val"], "wb") as handle:
        pickle.dump({"image_data": shapes(2, 0), "class_dict": {"n05": [0, 9]}}, handle)
    with pytest.raises(FewshotError, match="class 'n05' names image 9 of 2"):
        load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    with open(root / FILES["val"], "wb") as handle:
        pickle.dump({"image_data": shapes(2, 0), "class_dict": {"n01": [0, 1]}}, handle)
    with pytest.raises(FewshotError, match="class 'n01' of .*validation.pkl is also in .*train.pkl"):
        load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    (root / FILES["val"]).write_bytes(b"not a pickle")
    with pytest.raises(FewshotError, match="not a readable pickle"):
        load_mini_imagenet(root, cache_dir=tmp_path / "cache")
