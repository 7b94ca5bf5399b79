"""Every dataset through the command line: mini-ImageNet's pickles and CIFAR-FS's folders (tiny
fakes in their exact formats), an RGB folder of coloured shapes that the algorithms learn, and
Omniglot exported as class folders, which trains exactly as the native source."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cifar_fs import write_processed
from test_folder_dataset import shape_image
from test_mini_imagenet import write_pickles

from fewshot_cli.cli import main
from fewshot_cli.data.dataset import PARTS
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.folder import load_folder
from fewshot_cli.data.splits import make_split
from fewshot_cli.data.user_images import convert_image
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.predict import PROBABILITY_PREFIX, input_shape
from fewshot_cli.run.run_data import complete_from_data, load_run_data
from fewshot_cli.run.training import samplers

ALGORITHMS = ("protonet", "maml", "metasgd", "anil")
ADAPTING = ["--meta-batch", "2", "--inner-steps", "1", "--test-inner-steps", "1"]
QUICK = ["--device", "cpu", "--quiet", "--threads", "1"]
# The fakes: mini-ImageNet at 32 px and RGB, CIFAR-FS at 16 px and gray (resized, converted).
FAKES = {
    "mini-imagenet": dict(options=["--image-size", "32"], shape=(3, 32), split="ravi"),
    "cifar-fs": dict(options=["--image-size", "16", "--channels", "1"], shape=(1, 16),
                     split="bertinetto"),
}
# The RGB folder: a class per colour and shape, 10 images each, of mixed sizes.
SHAPES = ("ellipse", "rectangle", "triangle", "cross")
COLOURS = ((220, 30, 30), (30, 160, 40), (40, 60, 220), (230, 200, 20), (150, 40, 170),
           (20, 180, 190), (240, 130, 20), (60, 60, 60))
RGB_IMAGES = 10


@pytest.fixture(scope="module", autouse=True)
def environment(cache_dir):
    """Every command of this module keeps its tensor caches in the session's cache folder and
    finds its data where it is told (no Omniglot from ``$FEWSHOT_DATA``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEWSHOT_CACHE", str(cache_dir))
        patch.delenv("FEWSHOT_DATA", raising=False)
        yield cache_dir


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    """The data root of each fake: learn2learn's three pickles; CIFAR-FS's processed folders."""
    root = tmp_path_factory.mktemp("fakes")
    write_pickles(root / "mini")
    return {"mini-imagenet": root / "mini", "cifar-fs": write_processed(root / "cifar")}


@pytest.fixture(scope="module")
def rgb_shapes(tmp_path_factory) -> Path:
    """32 classes (8 colours x 4 shapes) of 10 images, 28 to 40 px, one level of class folders."""
    root = tmp_path_factory.mktemp("rgb-shapes")
    rng = random.Random(0)
    for c, colour in enumerate(COLOURS):
        for kind in SHAPES:
            folder = root / f"{kind}-{c}"
            folder.mkdir()
            for i in range(RGB_IMAGES):
                size = rng.choice([(32, 32), (28, 36), (40, 30)])
                shape_image(kind, colour, rng, size).save(folder / f"{i}.png")
    return root


def run_cli(capsys, *args: str) -> str:
    """Run ``fewshot ARGS`` in this process; it must succeed. Returns its stdout."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def state_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(first: Path, second: Path) -> None:
    a, b = state_of(first), state_of(second)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


def test_fakes_are_in_the_formats_their_loaders_expect(fakes):
    """The fakes stand for the real files only if they are laid out as learn2learn's."""
    assert sorted(p.name for p in fakes["mini-imagenet"].iterdir()) == [
        "mini-imagenet-cache-test.pkl", "mini-imagenet-cache-train.pkl",
        "mini-imagenet-cache-validation.pkl"]
    processed = fakes["cifar-fs"] / "cifarfs" / "processed"
    assert sorted(p.name for p in processed.iterdir()) == ["test", "train", "val"]
    with Image.open(next((processed / "train" / "apple").iterdir())) as image:
        assert (image.mode, image.size) == ("RGB", (32, 32))


# --------------------------------------------------------------------------- fakes: train, eval, predict

def source_pictures(dataset: str, root: Path, work: Path) -> dict[str, Image.Image]:
    """The first picture of each test class of a fake, as its files hold it (84x84 or 32x32
    RGB), by class name, in the loader's class order."""
    if dataset == "mini-imagenet":
        sources = write_pickles(work / "sources")  # the very same pictures again
        return {name: Image.fromarray(sources[name][0]) for name in ("n07", "n08")}
    processed = root / "cifarfs" / "processed" / "test"
    return {name: Image.open(sorted((processed / name).iterdir())[0]).convert("RGB")
            for name in ("girl", "house")}


def write_predict_folders(pictures: dict[str, Image.Image], folder: Path) -> list[str]:
    """support/<class>/ and query/<class>/ of each picture, at 40x24 for the support and 80x48
    for the query, plus an unlabelled gray query of yet another size. Returns the classes."""
    for name, picture in pictures.items():
        for part, size in (("support", (40, 24)), ("query", (80, 48))):
            (folder / part / name).mkdir(parents=True)
            picture.resize(size, Image.BICUBIC).save(folder / part / name / f"{part}.png")
    picture.convert("L").resize((45, 27)).save(folder / "query" / "0-gray.png")
    return list(pictures)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dataset", list(FAKES))
def test_fake_dataset_trains_evaluates_and_predicts(dataset, algorithm, fakes, tmp_path, capsys):
    fake, run = FAKES[dataset], tmp_path / "run"
    extra = ADAPTING if algorithm != "protonet" else []
    out = run_cli(capsys, "train", algorithm, "--dataset", dataset, "--data-root", fakes[dataset],
                  *fake["options"], "--filters", "8", "--ways", "2", "--queries", "2",
                  "--test-ways", "2", "--test-queries", "2", "--iterations", "2",
                  "--val-every", "1", "--val-episodes", "2", "--out", run, *QUICK, *extra)
    assert out.startswith("done: 2 iterations")
    channels, size = fake["shape"]
    config = json_config(run)
    assert (config["dataset"], config["image_size"], config["channels"], config["filters"],
            config["split"]) == (dataset, size, channels, 8, fake["split"])
    assert config["data_root"] == str(fakes[dataset])
    first = state_of(run / "best.pt")
    convolution = next(t for t in first.values() if t.dim() == 4)  # the first one
    assert convolution.shape[:2] == (8, channels)

    # eval reads the dataset, its size and channels from the run
    out = run_cli(capsys, "eval", run, "--episodes", "4", "--csv", tmp_path / "eval.csv", *QUICK)
    assert f"2-way 1-shot on {fake['split']}/test, 4 episodes" in out
    (row,) = csv_rows(tmp_path / "eval.csv")
    assert (row["algorithm"], row["dataset"], row["image_size"], row["channels"], row["filters"],
            row["split"], row["split_part"], row["test_ways"]) == (
        algorithm, dataset, str(size), str(channels), "8", fake["split"], "test", "2")
    assert 0 <= float(row["accuracy_mean"]) <= 1

    # predict: PNGs of another size (and mode) are prepared as the run's images were
    classes = write_predict_folders(source_pictures(dataset, fakes[dataset], tmp_path), tmp_path)
    out = run_cli(capsys, "predict", run, "--support", tmp_path / "support", "--query",
                  tmp_path / "query", "--csv", tmp_path / "predictions.csv", "--device", "cpu",
                  "--threads", "1")
    assert "accuracy:" in out
    rows = csv_rows(tmp_path / "predictions.csv")
    assert [Path(r["path"]).name for r in rows] == ["0-gray.png", "query.png", "query.png"]
    assert [r["true_class"] for r in rows] == ["", *sorted(classes)]
    for r in rows:
        probabilities = [float(r[PROBABILITY_PREFIX + c]) for c in sorted(classes)]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert r["label"] == sorted(classes)[int(np.argmax(probabilities))]
    if algorithm == "protonet":  # a query is its class's lone example, at another size
        assert [r["label"] for r in rows[1:]] == sorted(classes)


def json_config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_eval_finds_a_run_data_despite_an_omniglot_fewshot_data(fakes, tiny_root, tmp_path,
                                                                capsys, monkeypatch):
    run = tmp_path / "run"
    run_cli(capsys, "train", "protonet", "--dataset", "mini-imagenet", "--data-root",
            fakes["mini-imagenet"], "--image-size", "16", "--filters", "8", "--ways", "2",
            "--queries", "2", "--test-ways", "2", "--test-queries", "2", "--iterations", "1",
            "--val-episodes", "2", "--out", run, *QUICK)
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))  # where README says Omniglot goes
    out = run_cli(capsys, "eval", run, "--episodes", "2", *QUICK)
    assert "2-way 1-shot on ravi/test" in out


@pytest.mark.parametrize("dataset", list(FAKES))
def test_predict_prepares_a_file_exactly_as_the_dataset_was(dataset, fakes, tmp_path):
    """One of the dataset's own pictures, saved as a PNG at its source size, becomes the very
    tensor the run trained on: the same resize and the same channels."""
    channels, size = FAKES[dataset]["shape"]
    config = TrainConfig("protonet", dataset=dataset, image_size=size, channels=channels,
                         data_root=str(fakes[dataset])).resolved()
    assert input_shape(config) == (channels, size)
    data = load_run_data(config)
    name, picture = next(iter(source_pictures(dataset, fakes[dataset], tmp_path).items()))
    assert data.classes[data.part_classes("test")[0]] == name
    picture.save(tmp_path / "picture.png")
    stored = data.images[data.labels == data.classes.index(name)][0]
    assert stored.shape == (channels, size, size)
    assert torch.equal(convert_image(tmp_path / "picture.png", shape=input_shape(config)),
                       stored.float() / 255)


# --------------------------------------------------------------------------- RGB folder: learning

def train_and_test(capsys, tmp_path, root: Path, name: str, algorithm: str, iterations: int,
                   *options: str) -> tuple[Path, float]:
    """Train on the folder (24 px, 5-way 1-shot), then test on 100 episodes of its test part."""
    run = tmp_path / name
    run_cli(capsys, "train", algorithm, "--dataset", "folder", "--data-root", root,
            "--image-size", "24", "--filters", "16", "--ways", "5", "--test-ways", "5",
            "--test-queries", "5", "--iterations", iterations, "--val-every", "1000",
            "--val-episodes", "10", "--seed", "0", "--out", run, *QUICK, *options)
    run_cli(capsys, "eval", run, "--episodes", "100", "--csv", tmp_path / f"{name}.csv", *QUICK)
    (row,) = csv_rows(tmp_path / f"{name}.csv")
    assert (row["dataset"], row["image_size"], row["channels"], row["filters"], row["split"],
            row["test_ways"]) == ("folder", "24", "3", "16", "random", "5")
    return run, float(row["accuracy_mean"])


# Measured on one CPU thread (chance: 20%): ProtoNet 68.7% after 1 iteration, 93.0% after 60;
# MAML 53.3% after 1 iteration, 81.8% after 60. The bounds leave a margin of about 10 points.
@pytest.mark.parametrize("algorithm, options, trained_at_least, gain_at_least", [
    ("protonet", ["--queries", "5"], 0.80, 0.12),
    ("maml", ["--meta-batch", "2", "--lr", "0.005"], 0.70, 0.18),
])
def test_rgb_folder_is_learned_well_above_chance(algorithm, options, trained_at_least,
                                                  gain_at_least, rgb_shapes, tmp_path, capsys):
    start, before = train_and_test(capsys, tmp_path, rgb_shapes, "start", algorithm, 1, *options)
    again, same = train_and_test(capsys, tmp_path, rgb_shapes, "again", algorithm, 1, *options)
    assert_same_weights(start / "best.pt", again / "best.pt")  # seeded: the very same run
    assert same == before
    _, after = train_and_test(capsys, tmp_path, rgb_shapes, "trained", algorithm, 60, *options)
    assert after >= trained_at_least
    assert after >= before + gain_at_least


# --------------------------------------------------------------------------- Omniglot as a folder

def test_exported_omniglot_trains_exactly_as_the_native_source(tiny_root, tmp_path, capsys):
    exported = tmp_path / "exported"
    out = run_cli(capsys, "data", "--data-root", tiny_root, "--split", "lake", "--export",
                  exported)
    assert f"exported 640 images to {exported}" in out
    assert sorted(p.name for p in exported.iterdir()) == ["classes.txt", *sorted(PARTS)]

    # the same classes in the same parts, and the same episodes of each part
    native = TrainConfig("protonet", ways=5, queries=2, test_ways=3, test_queries=2,
                         data_root=str(tiny_root)).resolved()
    folder = TrainConfig("protonet", ways=5, queries=2, test_ways=3, test_queries=2,
                         dataset="folder", image_size=28, data_root=str(exported)).resolved()
    native_data, folder_data = load_run_data(native), load_run_data(folder)
    native, folder = complete_from_data(native, native_data), complete_from_data(folder, folder_data)
    assert (folder.split, folder.channels, folder.image_size) == ("folders", 1, 28)
    native_split, folder_split = (make_split(d, c.split, c.split_seed) for d, c in
                                  ((native_data, native), (folder_data, folder)))
    for part in PARTS:
        assert [native_data.characters[c] for c, _ in native_split.parts[part]] == [
            folder_data.classes[c] for c, _ in folder_split.parts[part]]
    for native_sampler, folder_sampler in zip(
            [*samplers(native, native_data),
             EpisodeSampler(meta_dataset(native_data, native_split, "test"), 5, 1, 3)],
            [*samplers(folder, folder_data),
             EpisodeSampler(meta_dataset(folder_data, folder_split, "test"), 5, 1, 3)]):
        for index in range(4):
            a, b = native_sampler[index], folder_sampler[index]
            for field in ("support", "support_labels", "query", "query_labels"):
                assert torch.equal(getattr(a, field), getattr(b, field)), field

    # the same training, weights and test accuracy
    common = ["--ways", "5", "--queries", "2", "--test-ways", "3", "--test-queries", "2",
              "--iterations", "3", "--val-every", "1", "--val-episodes", "4", *QUICK]
    for algorithm, extra in (("protonet", ["--rotations"]), ("maml", ADAPTING)):
        runs = {"native": tmp_path / f"native-{algorithm}", "folder": tmp_path / f"folder-{algorithm}"}
        run_cli(capsys, "train", algorithm, "--data-root", tiny_root, "--split", "lake",
                "--out", runs["native"], *common, *extra)
        run_cli(capsys, "train", algorithm, "--dataset", "folder", "--image-size", "28",
                "--data-root", exported, "--out", runs["folder"], *common, *extra)
        for checkpoint in ("best.pt", "last.pt"):
            assert_same_weights(runs["native"] / checkpoint, runs["folder"] / checkpoint)
        assert [r["val_accuracy"] for r in csv_rows(runs["native"] / "log.csv")] == [
            r["val_accuracy"] for r in csv_rows(runs["folder"] / "log.csv")]
        for run in runs.values():
            run_cli(capsys, "eval", run, "--ways", "5", "--episodes", "10", "--csv",
                    tmp_path / f"{algorithm}.csv", *QUICK)
        native_row, folder_row = csv_rows(tmp_path / f"{algorithm}.csv")
        assert (native_row["dataset"], native_row["split"]) == ("omniglot", "lake")
        assert (folder_row["dataset"], folder_row["split"]) == ("folder", "folders")
        for key in ("accuracy_mean", "ci95", "data", "image_size", "channels", "filters"):
            assert native_row[key] == folder_row[key], key


# --------------------------------------------------------------------------- fewshot data

@pytest.mark.parametrize("dataset, split, shape", [
    ("mini-imagenet", "ravi", "3x84x84"),
    ("cifar-fs", "bertinetto", "3x32x32"),
])
def test_data_prints_every_part(dataset, split, shape, fakes, capsys):
    out = run_cli(capsys, "data", "--dataset", dataset, "--data-root", fakes[dataset])
    lines = out.splitlines()
    assert lines[0].startswith(f"{dataset} at ")
    assert lines[0].endswith(f": 24 images of 8 classes, {shape}")
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["split", "part"])
    assert "per class min/median/max" in lines[header] and "memory (MB)" in lines[header]
    rows = [line.split() for line in lines[header + 1:]]
    assert [row[:-1] for row in rows] == [[split, "train", "4", "12", "3/3/3", shape],
                                          [split, "val", "2", "6", "3/3/3", shape],
                                          [split, "test", "2", "6", "3/3/3", shape]]
    channels, height, width = map(int, shape.split("x"))
    assert [float(row[-1]) for row in rows] == [
        round(n * channels * height * width / 2**20, 1) for n in (12, 6, 6)]


def test_data_exports_a_folder_as_class_folders(rgb_shapes, tmp_path, capsys):
    out_dir = tmp_path / "exported"
    out = run_cli(capsys, "data", "--dataset", "folder", "--data-root", rgb_shapes,
                  "--image-size", "24", "--export", out_dir)
    assert "random train" in " ".join(out.split()) and f"exported 320 images to {out_dir}" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["classes.txt", *sorted(PARTS)]
    original = load_folder(rgb_shapes, image_size=24)
    names = (out_dir / "classes.txt").read_text().split()
    assert sorted(names) == sorted(original.classes) and len(names) == 32
    pngs = sorted(out_dir.glob("*/*/*.png"))
    assert len(pngs) == 320
    with Image.open(pngs[0]) as image:
        assert (image.mode, image.size) == ("RGB", (24, 24))
    for part in PARTS:
        assert sorted(p.name for p in (out_dir / part).iterdir()) == sorted(
            original.classes[c] for c in original.part_classes(part))
    back = load_folder(out_dir, image_size=24)
    assert torch.equal(back.images, original.images) and back.classes == original.classes
    assert back.parts == {"folders": original.parts["random"]}


def test_split_fractions_size_the_parts_and_are_recorded(rgb_shapes, tmp_path, capsys):
    """--split-fractions sizes a folder's seeded parts; the run, its row and its evaluation keep
    them (eval splits the classes as the training did), and the default is recorded too."""
    out = run_cli(capsys, "data", "--dataset", "folder", "--data-root", rgb_shapes,
                  "--image-size", "16", "--split-fractions", "0.5,0.25,0.25")
    counts = {line.split()[1]: int(line.split()[2]) for line in out.splitlines()
              if line.split()[:1] == ["random"]}
    assert counts == {"train": 16, "val": 8, "test": 8}
    common = ["--dataset", "folder", "--data-root", rgb_shapes, "--image-size", "16",
              "--filters", "4", "--ways", "3", "--queries", "2", "--test-ways", "3",
              "--test-queries", "2", "--iterations", "1", "--val-episodes", "2", *QUICK]
    for name, given, recorded in (("half", ["--split-fractions", "50/25/25"], "50/25/25"),
                                  ("default", [], "64/16/20")):
        run = tmp_path / name
        run_cli(capsys, "train", "protonet", "--out", run, *common, *given)
        assert json_config(run)["split_fractions"] == recorded
        run_cli(capsys, "eval", run, "--episodes", "3", "--csv", tmp_path / "eval.csv", "--quiet")
    rows = csv_rows(tmp_path / "eval.csv")
    assert [r["split_fractions"] for r in rows] == ["50/25/25", "64/16/20"]
    for name, test_classes in (("half", 8), ("default", 6)):
        data = load_run_data(TrainConfig.from_dict(json_config(tmp_path / name)))
        assert len(data.part_classes("test")) == test_classes


# --------------------------------------------------------------------------- classes too small

def test_classes_too_small_for_an_episode_are_left_out(tmp_path, capsys):
    """A class with fewer images than shots + queries is left out of its part's episodes."""
    root = tmp_path / "uneven"
    rng = random.Random(1)
    sizes = {"train": [4, 4, 4, 4, 1, 2], "val": [4, 4, 4], "test": [4, 4, 4]}
    for part, counts in sizes.items():
        for c, count in enumerate(counts):
            (root / part / f"{part}{c}").mkdir(parents=True)
            for i in range(count):
                shape_image(SHAPES[c % 4], COLOURS[c], rng, (20, 20)).save(
                    root / part / f"{part}{c}" / f"{i}.png")
    options = ["--dataset", "folder", "--data-root", root, "--image-size", "16", "--filters", "4",
               "--queries", "2", "--test-ways", "3", "--test-queries", "2", "--iterations", "2",
               "--val-episodes", "2", *QUICK]
    code = main([str(a) for a in ["train", "protonet", "--ways", "4", "--out", tmp_path / "run",
                                  *options]])
    err = capsys.readouterr().err
    assert code == 0, err
    assert ("warning: 2 of the 6 classes of split part 'train' have fewer than 3 images (shots + "
            "queries) and are left out") in err.splitlines()[0]
    config = TrainConfig("protonet", ways=4, queries=2, test_ways=3, test_queries=2,
                         dataset="folder", image_size=16, data_root=str(root)).resolved()
    data = load_run_data(config)
    config = complete_from_data(config, data)
    with pytest.warns(UserWarning, match="2 of the 6 classes"):
        train_sampler, _ = samplers(config, data)
    drawn = {data.classes[data.part_classes("train")[train_sampler.taskset.dataset.indices_to_labels[
        index]]] for episode in range(20) for index, _, _ in train_sampler.plan(episode)}
    assert drawn == {"train0", "train1", "train2", "train3"}

    code = main([str(a) for a in ["train", "protonet", "--ways", "5", "--out", tmp_path / "five",
                                  *options]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: split part 'train' has 4 classes with at least 3 images "
                          "(shots + queries), fewer than the 5 ways of an episode"), err
