"""The Omniglot data source: locating the images, the tensor cache and its errors."""

import os
import shutil
import time

import pytest
import torch

from fewshot_cli.data.source import cache_path, find_image_folder, load_omniglot
from fewshot_cli.errors import FewshotError


def test_loads_every_image_preprocessed(tiny_data, tiny_root):
    pngs = sorted(tiny_root.rglob("*.png"))
    assert tiny_data.images.shape == (len(pngs), 28, 28)
    assert tiny_data.images.dtype == torch.uint8
    assert len(tiny_data.characters) == 32
    assert tiny_data.labels.bincount().tolist() == [20] * 32
    # Inverted: the background (most pixels) is dark, the strokes bright.
    assert tiny_data.images.float().median() < 10
    assert tiny_data.images.max() > 200
    assert tiny_data.characters[0] == "Alpha/character01"
    assert sum(tiny_data.background) == 21


def test_lanczos_resize_of_one_image(tiny_root, tiny_data):
    from PIL import Image

    first = sorted((tiny_root / "images_background" / "Alpha" / "character01").glob("*.png"))[0]
    with Image.open(first) as image:
        small = image.convert("L").resize((28, 28), Image.LANCZOS)
    expected = 255 - torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8).view(28, 28)
    assert torch.equal(tiny_data.images[0], expected)


def test_cache_is_reused(tiny_root, tmp_path):
    first = load_omniglot(tiny_root, cache_dir=tmp_path)
    cache = cache_path(tiny_root, tmp_path)
    stamp = cache.stat().st_mtime_ns
    second = load_omniglot(tiny_root, cache_dir=tmp_path)
    assert cache.stat().st_mtime_ns == stamp  # not rewritten
    assert torch.equal(first.images, second.images)


def test_cache_rebuilt_when_source_changes(tiny_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    before = load_omniglot(root, cache_dir=tmp_path / "cache")
    victim = sorted(root.rglob("*.png"))[0]
    os.remove(victim)
    after = load_omniglot(root, cache_dir=tmp_path / "cache")
    assert len(after.labels) == len(before.labels) - 1
    # Replacing a file's content (same name) is noticed too.
    other = sorted(root.rglob("*.png"))[5]
    shutil.copy(sorted(root.rglob("*.png"))[-1], other)
    os.utime(other, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = load_omniglot(root, cache_dir=tmp_path / "cache")
    assert not torch.equal(again.images[5], after.images[5])


def test_cache_write_leaves_no_temp_file(tiny_root, tmp_path):
    load_omniglot(tiny_root, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_torchvision_download_layout_is_found(tiny_root, tmp_path):
    shutil.copytree(tiny_root, tmp_path / "omniglot-py")
    assert find_image_folder(tmp_path) == tmp_path / "omniglot-py"
    assert len(load_omniglot(tmp_path, cache_dir=tmp_path / "c").characters) == 32


def test_missing_data_says_where_and_what_to_do(tmp_path):
    with pytest.raises(FewshotError, match="no Omniglot found in .*--download.*FEWSHOT_DATA"):
        load_omniglot(tmp_path, cache_dir=tmp_path)


def test_partial_data_is_refused(tiny_root, tmp_path):
    shutil.copytree(tiny_root / "images_background", tmp_path / "images_background")
    with pytest.raises(FewshotError, match="images_evaluation/ is missing"):
        load_omniglot(tmp_path, cache_dir=tmp_path)


def test_empty_character_folder_is_refused(tiny_root, tmp_path):
    shutil.copytree(tiny_root, tmp_path / "d")
    (tmp_path / "d" / "images_evaluation" / "Omega" / "character09").mkdir()
    with pytest.raises(FewshotError, match="no PNG image in .*character09"):
        load_omniglot(tmp_path / "d", cache_dir=tmp_path)


def test_corrupt_png_is_named(tiny_root, tmp_path):
    shutil.copytree(tiny_root, tmp_path / "d")
    victim = sorted((tmp_path / "d").rglob("*.png"))[3]
    victim.write_bytes(b"not a png")
    with pytest.raises(FewshotError, match=f"cannot read image .*{victim.name}"):
        load_omniglot(tmp_path / "d", cache_dir=tmp_path / "c")


def test_download_goes_through_torchvision(tmp_path, monkeypatch, tiny_root):
    calls = []

    class FakeOmniglot:
        def __init__(self, root, background, download):
            calls.append((root, background, download))
            name = "images_background" if background else "images_evaluation"
            shutil.copytree(tiny_root / name, tmp_path / "omniglot-py" / name, dirs_exist_ok=True)

    monkeypatch.setattr("torchvision.datasets.Omniglot", FakeOmniglot)
    data = load_omniglot(tmp_path, download=True, cache_dir=tmp_path / "c")
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert len(data.characters) == 32


@pytest.mark.integration
def test_real_omniglot_is_complete(real_data):
    assert real_data.images.shape == (32460, 28, 28)
    assert len(real_data.characters) == 1623
    assert len(set(real_data.alphabets)) == 50
    assert sum(real_data.background) == 964
