"""A folder of class folders as a dataset: layouts, splits, odd images, the cache, export."""

from __future__ import annotations

import os
import pickle
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fewshot_cli.data import folder as folder_module
from fewshot_cli.data.dataset import cache_file, from_omniglot, usable_classes
from fewshot_cli.data.folder import load_folder
from fewshot_cli.data.folder_images import export
from fewshot_cli.errors import FewshotError

SHAPES = ("ellipse", "rectangle", "triangle", "cross")
COLOURS = ((220, 30, 30), (30, 160, 40), (40, 60, 220), (230, 200, 20), (150, 40, 170), (20, 180, 190))


def shape_image(kind: str, colour, rng: random.Random, size=(48, 48), background=None) -> Image.Image:
    """A coloured shape, moved and scaled a little, on a light background."""
    width, height = size
    image = Image.new("RGB", size, background or tuple(rng.randint(200, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    x0, y0 = rng.randint(2, width // 4), rng.randint(2, height // 4)
    x1, y1 = rng.randint(3 * width // 4, width - 3), rng.randint(3 * height // 4, height - 3)
    if kind == "ellipse":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif kind == "rectangle":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif kind == "triangle":
        draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    else:
        draw.line((x0, y0, x1, y1), fill=colour, width=5)
        draw.line((x0, y1, x1, y0), fill=colour, width=5)
    return image


def write_classes(base: Path, names: list[str], images: int = 5, seed: int = 0) -> None:
    """A class folder of coloured shapes (of mixed sizes and formats) under ``base`` per name."""
    rng = random.Random(seed)
    for n, name in enumerate(names):
        kind, colour = SHAPES[n % len(SHAPES)], COLOURS[n // len(SHAPES) % len(COLOURS)]
        (base / name).mkdir(parents=True)
        for i in range(images):
            size = rng.choice([(48, 48), (40, 56), (64, 36)])
            suffix = ".jpg" if i == 0 else ".png"
            shape_image(kind, colour, rng, size).save(base / name / f"img{i}{suffix}")


@pytest.fixture(scope="session")
def rgb_folder(tmp_path_factory) -> Path:
    """24 classes of coloured shapes, 5 images each, one level of class folders."""
    root = tmp_path_factory.mktemp("rgb-folder")
    write_classes(root, [f"class{c:02d}" for c in range(24)])
    return root


def test_rgb_folder_loads_with_shapes_and_parts(rgb_folder, tmp_path):
    data = load_folder(rgb_folder, image_size=32, cache_dir=tmp_path)
    assert data.name == "folder" and data.root == rgb_folder
    assert data.images.shape == (120, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.labels.bincount().tolist() == [5] * 24
    assert data.classes == [f"class{c:02d}" for c in range(24)]
    assert data.groups is None and data.image_shape == (3, 32, 32)
    assert data.preprocessing.size == 32 and data.preprocessing.channels == 3
    assert data.preprocessing.mean == (0.0,) * 3 and data.preprocessing.std == (1.0,) * 3
    parts = data.parts["random"]
    assert [len(parts[p]) for p in ("train", "val", "test")] == [15, 4, 5]  # 64/16/20 of 24
    assert sorted(sum(parts.values(), [])) == list(range(24))
    assert data.part_classes("trainval") == sorted(parts["train"] + parts["val"])
    floats = data.to_float(data.images[:4])
    assert floats.dtype == torch.float32 and 0 <= floats.min() and floats.max() <= 1
    assert len(data.digest) == 12


def test_seeded_split_is_reproducible(rgb_folder, tmp_path):
    first = load_folder(rgb_folder, image_size=16, cache_dir=tmp_path).parts
    again = load_folder(rgb_folder, image_size=16, cache_dir=tmp_path).parts
    other = load_folder(rgb_folder, image_size=16, seed=1, cache_dir=tmp_path).parts
    halves = load_folder(rgb_folder, image_size=16, fractions=(2, 1, 1), cache_dir=tmp_path)
    assert first == again and first != other
    assert [len(halves.parts["random"][p]) for p in ("train", "val", "test")] == [12, 6, 6]
    with pytest.raises(FewshotError, match="three positive numbers"):
        load_folder(rgb_folder, fractions=(80, 0, 20), cache_dir=tmp_path)


def test_normalisation_applies_at_use(rgb_folder, tmp_path):
    data = load_folder(rgb_folder, image_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, cache_dir=tmp_path)
    x = data.to_float(data.images[:1])
    expected = (data.images[:1].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected)
    # mean/std do not shape the stored pixels, so they share the cache
    assert len(list(tmp_path.glob("folder-*.pt"))) == 1


def test_split_given_as_folders(tmp_path):
    root = tmp_path / "given"
    write_classes(root / "train", ["a", "b", "c"], images=2)
    write_classes(root / "validation", ["d"], images=2, seed=1)
    write_classes(root / "test", ["e", "f"], images=2, seed=2)
    data = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert data.classes == ["a", "b", "c", "d", "e", "f"]
    assert data.parts == {"folders": {"train": [0, 1, 2], "val": [3], "test": [4, 5]}}

    write_classes(root / "test", ["a"], images=2)
    with pytest.raises(FewshotError, match="class 'a' is in both train/ and test/"):
        load_folder(root, cache_dir=tmp_path / "cache")
    shutil.rmtree(root / "validation")
    with pytest.raises(FewshotError, match="lacks val/"):
        load_folder(root, cache_dir=tmp_path / "cache")
    write_classes(root / "val", ["v"], images=2)
    write_classes(root, ["stray"], images=1)
    with pytest.raises(FewshotError, match="mixes split folders .* other folders \\(stray/\\)"):
        load_folder(root, cache_dir=tmp_path / "cache")


def test_grouped_layout_keeps_groups_whole(tmp_path):
    root = tmp_path / "grouped"
    for g in range(6):
        write_classes(root / f"group{g}", [f"c{c}" for c in range(3)], images=2, seed=g)
    data = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert data.classes[:2] == ["group0/c0", "group0/c1"] and len(data.classes) == 18
    assert data.groups == [f"group{c // 3}" for c in range(18)]
    parts = data.parts["groups"]
    assert all(parts[p] for p in ("train", "val", "test"))
    assert sorted(sum(parts.values(), [])) == list(range(18))
    for part, classes in parts.items():
        for c in classes:  # every class of its group is in the same part
            assert {data.groups[d] for d in classes} >= {data.groups[c]}
            assert all(d in classes for d in range(18) if data.groups[d] == data.groups[c]), part

    write_classes(root, ["loose"], images=2)
    with pytest.raises(FewshotError, match="mixes class folders .*loose.* and group folders"):
        load_folder(root, cache_dir=tmp_path / "cache")


def odd_folder(root: Path) -> Path:
    """Class folders of awkward images: alpha, palette, 16-bit, CMYK JPEG, a text file named
    .png, a class of one image, a class of nothing readable."""
    rng = random.Random(0)
    for name in ("plain1", "plain2", "plain3"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            shape_image("ellipse", COLOURS[i], rng, (16, 16)).save(root / name / f"{i}.png")
    (root / "alpha").mkdir()
    for i in range(2):
        rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # transparent black
        ImageDraw.Draw(rgba).rectangle((4, 4, 11, 11), fill=(200, 0, 0, 255))
        rgba.save(root / "alpha" / f"{i}.png")
    (root / "palette").mkdir()
    for i in range(2):
        pal = Image.new("P", (16, 16), 0)
        pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
        ImageDraw.Draw(pal).rectangle((0, 0, 7, 15), fill=1)
        pal.save(root / "palette" / f"{i}.png", transparency=0)  # index 0 transparent
    (root / "deep").mkdir()
    for i in range(2):
        ramp = np.linspace(1000 + i, 3000, 256).reshape(16, 16).astype(np.uint16)
        Image.fromarray(ramp).save(root / "deep" / f"{i}.png")  # 16-bit grayscale
    (root / "cmyk").mkdir()
    for i in range(2):
        Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(root / "cmyk" / f"{i}.jpg", quality=95)
    (root / "single").mkdir()
    shape_image("cross", COLOURS[3], rng, (16, 16)).save(root / "single" / "only.png")
    (root / "broken").mkdir()
    (root / "broken" / "notes.png").write_text("not an image")
    for i in range(2):
        shape_image("triangle", COLOURS[4], rng, (16, 16)).save(root / "broken" / f"{i}.png")
    (root / "broken" / "README.txt").write_text("not an image extension: not read at all")
    (root / "hopeless").mkdir()
    (root / "hopeless" / "fake.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


def test_odd_images_behave(tmp_path):
    root = odd_folder(tmp_path / "odd")
    warned = []
    data = load_folder(root, image_size=16, cache_dir=tmp_path / "cache", warn=warned.append)
    assert len(warned) == 1
    assert "skipped 2 unreadable image files" in warned[0]
    assert "broken/notes.png" in warned[0] and "hopeless/fake.jpg" in warned[0]
    assert "1 class folders had no readable image and are left out (hopeless)" in warned[0]
    assert "hopeless" not in data.classes and "\n" not in warned[0]
    assert data.images.shape[1] == 3  # colour found: RGB

    def first(name):
        return data.images[data.labels == data.classes.index(name)][0]

    assert first("alpha")[:, 0, 0].tolist() == [255, 255, 255]  # transparent -> white
    assert first("alpha")[:, 8, 8].tolist() == [200, 0, 0]
    assert first("palette")[:, 0, 12].tolist() == [255, 255, 255]  # transparent index
    assert first("palette")[:, 0, 0].tolist() == [0, 0, 255]
    deep = first("deep")
    assert int(deep.min()) == 0 and int(deep.max()) == 255  # its own range, stretched
    assert torch.equal(deep[0], deep[1]) and torch.equal(deep[1], deep[2])  # gray
    red, green, blue = first("cmyk")[:, 8, 8].tolist()
    assert red > 200 and green < 60 and blue < 60
    assert (data.labels == data.classes.index("broken")).sum() == 2
    # the warning repeats when the cache is read: the files are still unreadable
    again = []
    load_folder(root, image_size=16, cache_dir=tmp_path / "cache", warn=again.append)
    assert again == warned

    single = data.classes.index("single")
    part = next(p for p, classes in data.parts["random"].items() if single in classes)
    kept, warning = usable_classes(data, part, needed=2)
    assert single not in kept and kept == [c for c in data.part_classes(part) if c != single]
    assert warning.startswith(f"1 of the {len(data.part_classes(part))} classes of part '{part}'")
    assert usable_classes(data, part, needed=1) == (data.part_classes(part), None)
    with pytest.raises(FewshotError, match="fewer than the 99 ways"):
        usable_classes(data, part, needed=1, ways=99)


def test_gray_images_give_one_channel(tmp_path):
    root = tmp_path / "gray"
    rng = random.Random(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(2):
            shape_image("rectangle", (90, 90, 90), rng, (20, 20), (240, 240, 240)).convert(
                "L" if i else "RGB"  # an RGB file of gray pixels has no colour either
            ).save(root / f"c{c}" / f"{i}.png")
    data = load_folder(root, image_size=20, cache_dir=tmp_path / "cache")
    assert data.images.shape == (6, 1, 20, 20)
    forced = load_folder(root, image_size=20, channels=3, cache_dir=tmp_path / "cache")
    assert forced.images.shape == (6, 3, 20, 20)
    assert torch.equal(forced.images[:, :1], data.images)
    inverted = load_folder(root, image_size=20, invert=True, cache_dir=tmp_path / "cache")
    assert torch.equal(inverted.images, 255 - data.images)


def test_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(FewshotError, match="no folder"):
        load_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FewshotError, match="no class folder of images in"):
        load_folder(tmp_path / "empty", cache_dir=tmp_path / "cache")
    for c in range(3):
        (tmp_path / "texts" / f"c{c}").mkdir(parents=True)
        (tmp_path / "texts" / f"c{c}" / "a.png").write_text("text")
    with pytest.raises(FewshotError, match="no readable image in .*3 files could not be decoded"):
        load_folder(tmp_path / "texts", cache_dir=tmp_path / "cache")
    write_classes(tmp_path / "two", ["a", "b"], images=2)
    with pytest.raises(FewshotError, match="2 classes cannot be split.*at least 3"):
        load_folder(tmp_path / "two", cache_dir=tmp_path / "cache")
    with pytest.raises(FewshotError, match="channels must be 1"):
        load_folder(tmp_path / "two", channels=2)
    with pytest.raises(FewshotError, match="needs a path"):
        load_folder(None)


def test_cache_is_reused_and_rebuilt(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_classes(root, ["a", "b", "c"], images=2)
    first = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    cache = cache_file("folder", root, first.preprocessing.__class__(16, None), tmp_path / "cache")
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "decode_classes", no_decoding)
        second = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert cache.stat().st_mtime_ns == stamp and torch.equal(first.images, second.images)

    # another size is another cache file
    load_folder(root, image_size=8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("folder-*.pt"))) == 2

    # a changed image (same name) is decoded again
    target = root / "b" / "img1.png"
    Image.new("RGB", (16, 16), (0, 0, 0)).save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert not torch.equal(changed.images, first.images)
    assert changed.images[3].max() == 0

    # a foreign file at the cache's place is replaced, and never run
    marker = tmp_path / "ran"
    cache.write_bytes(pickle.dumps(Runs(marker)))
    rebuilt = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert torch.equal(rebuilt.images, changed.images) and not marker.exists()
    cache.write_bytes(b"garbage")
    assert torch.equal(load_folder(root, image_size=16, cache_dir=tmp_path / "cache").images,
                       changed.images)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


class Runs:
    """Unpickling this touches ``marker`` (what a hostile file could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_manifest_fixes_label_order(tmp_path):
    root = tmp_path / "listed"
    write_classes(root, ["a", "b", "c"], images=2)
    (root / "classes.txt").write_text("c\na\nb\n")
    data = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert data.classes == ["c", "a", "b"]
    (root / "classes.txt").write_text("c\na\n")
    with pytest.raises(FewshotError, match="does not list class 'b'"):
        load_folder(root, image_size=16, cache_dir=tmp_path / "cache")


def test_omniglot_exported_and_read_back_is_identical(tiny_data, tmp_path):
    data = from_omniglot(tiny_data)
    assert data.digest == tiny_data.digest and data.image_shape == (1, 28, 28)
    out = export(data, tmp_path / "exported", split="lake")
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "test", "train", "val"]
    assert (out / "test" / "Omega" / "character01" / "00000.png").is_file()
    back = load_folder(out, image_size=28, cache_dir=tmp_path / "cache")
    assert torch.equal(back.images, data.images) and torch.equal(back.labels, data.labels)
    assert back.classes == data.classes and back.groups == data.groups
    assert back.parts == {"folders": data.parts["lake"]}
    assert back.digest == data.digest
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask  # as a plain mkdir makes it


def test_rgb_export_round_trip_and_refusals(rgb_folder, tmp_path):
    data = load_folder(rgb_folder, image_size=24, cache_dir=tmp_path / "cache")
    out = export(data, tmp_path / "copy")
    back = load_folder(out, image_size=24, cache_dir=tmp_path / "cache")
    assert torch.equal(back.images, data.images) and back.parts["folders"] == data.parts["random"]
    with pytest.raises(FewshotError, match="not an empty folder"):
        export(data, out)
    data.classes[0] = "../escape"
    with pytest.raises(FewshotError, match="cannot be a folder"):
        export(data, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
