"""``fewshot predict``: classifying the user's own images from a few labelled examples."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw

from fewshot_cli.algorithms import registry
from fewshot_cli.cli import main
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import preprocess
from fewshot_cli.data.splits import make_split
from fewshot_cli.data.user_images import (
    convert_image,
    find_images,
    has_light_border,
    load_images,
    load_support,
)
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.bn_mode import prepared_copy
from fewshot_cli.run.checkpoint import load_trained
from fewshot_cli.run.config import TrainConfig
from fewshot_cli.run.evaluation import episode_logits, evaluate
from fewshot_cli.run.predict import PROBABILITY_PREFIX, classify, predict
from fewshot_cli.run.training import train

TINY_CLASSES = ("Chi/character01", "Omega/character01", "Omega/character02", "Psi/character03")
ADAPTING = ("maml", "metasgd", "anil")  # the algorithms that adapt to the support set


def tiny_pngs(tiny_root: Path, character: str) -> list[Path]:
    return sorted((tiny_root / "images_evaluation" / character).glob("*.png"))


def glyph(size=(80, 60), background=255, ink=0, mode="L") -> Image.Image:
    """A thick cross of ``ink`` on ``background``, away from the border."""
    image = Image.new("L", size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.line((w * 0.3, h * 0.3, w * 0.7, h * 0.7), fill=ink, width=max(3, w // 12))
    draw.line((w * 0.3, h * 0.7, w * 0.7, h * 0.3), fill=ink, width=max(3, w // 12))
    return image.convert(mode)


def probability_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(PROBABILITY_PREFIX)]


def check_rows_line_up(frame: pd.DataFrame, classes: list[str]) -> None:
    """Probability columns follow the class folders; label is the most probable class."""
    columns = probability_columns(frame)
    assert columns == [PROBABILITY_PREFIX + c for c in classes]
    probabilities = frame[columns].to_numpy()
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-4)
    assert (probabilities >= 0).all()
    assert list(frame["label"]) == [classes[i] for i in probabilities.argmax(1)]


# --------------------------------------------------------------------------- fixtures (tiny)

@pytest.fixture(scope="module")
def tiny_runs(tiny_data, tmp_path_factory):
    """A ProtoNet and first-order MAML, Meta-SGD and ANIL (5-way heads) runs, trained for a few
    iterations."""
    root = tmp_path_factory.mktemp("predict-runs")
    common = dict(shots=1, queries=2, test_ways=3, test_queries=2, device="cpu")
    train(TrainConfig("protonet", ways=5, iterations=3, val_every=3, val_episodes=2, **common),
          root / "proto", data=tiny_data, progress=False)
    for name in ADAPTING:
        train(TrainConfig(name, ways=5, first_order=True, iterations=2, meta_batch=2,
                          val_every=2, val_episodes=2, **common), root / name, data=tiny_data,
              progress=False)
    return {"protonet": root / "proto", **{name: root / name for name in ADAPTING}}


@pytest.fixture
def tiny_tree(tiny_root, tmp_path):
    """support/<class>/ with 2 drawings of 3 tiny characters; query/<class>/ with 2 more each."""
    for name in TINY_CLASSES[:3]:
        label = name.replace("/", "-")
        pngs = tiny_pngs(tiny_root, name)
        for part, files in (("support", pngs[:2]), ("query", pngs[-2:])):
            (tmp_path / part / label).mkdir(parents=True)
            for png in files:
                shutil.copy(png, tmp_path / part / label / png.name)
    return tmp_path


# --------------------------------------------------------------------------- conversion

def test_omniglot_png_converts_exactly_as_in_training(tiny_root):
    png = tiny_pngs(tiny_root, "Omega/character02")[3]
    image = convert_image(png)
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert torch.equal(image[0], preprocess(png).float() / 255)


def test_light_on_dark_copy_is_not_inverted(tiny_root, tmp_path):
    png = tiny_pngs(tiny_root, "Psi/character01")[0]
    with Image.open(png) as image:
        negative = Image.eval(image.convert("L"), lambda v: 255 - v).convert("RGB")
    negative.save(tmp_path / "negative.png")
    original, copy = convert_image(png), convert_image(tmp_path / "negative.png")
    # Both end up with bright strokes; LANCZOS rounding may differ by one grey level.
    assert (original - copy).abs().max() <= 1.5 / 255
    assert torch.allclose(convert_image(tmp_path / "negative.png", invert="yes"), 1 - copy)


def test_forced_inversion_overrides_the_border(tiny_root):
    png = tiny_pngs(tiny_root, "Chi/character02")[0]
    plain, inverted = convert_image(png, invert="no"), convert_image(png, invert="yes")
    assert torch.allclose(plain, 1 - inverted)
    assert torch.equal(inverted, convert_image(png, invert="auto"))  # white page: inverted
    with pytest.raises(FewshotError, match="--invert"):
        convert_image(png, invert="maybe")


@pytest.mark.parametrize("background, ink, light", [(255, 0, True), (230, 40, True),
                                                     (0, 255, False), (30, 200, False)])
def test_inversion_is_decided_by_the_border(background, ink, light):
    assert has_light_border(glyph(background=background, ink=ink)) is light


def test_a_light_glyph_filling_the_middle_does_not_fool_the_border():
    image = Image.new("L", (50, 50), 0)
    ImageDraw.Draw(image).rectangle((3, 3, 46, 46), fill=255)  # mostly white, dark frame
    assert np.asarray(image).mean() > 127
    assert not has_light_border(image)


@pytest.mark.parametrize("name, mode, size, background, ink", [
    ("rgb.jpg", "RGB", (64, 48), 250, 10),
    ("gray.bmp", "L", (200, 200), 0, 255),
    ("palette.gif", "P", (105, 105), 255, 0),
    ("small.png", "L", (20, 24), 255, 0),
    ("cmyk.tiff", "CMYK", (90, 70), 255, 0),
    ("wide.webp", "RGB", (300, 120), 20, 235),
])
def test_common_formats_sizes_and_colours(tmp_path, name, mode, size, background, ink):
    path = tmp_path / name
    glyph(size, background, ink, mode).save(path)
    image = convert_image(path)
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1
    border = torch.cat([image[0, 0], image[0, -1], image[0, :, 0], image[0, :, -1]])
    assert border.mean() < 0.15  # background dark after conversion...
    assert image[0, 10:18, 10:18].max() > 0.6  # ...strokes bright, whichever way it came


def test_transparent_png_reads_as_ink_on_paper(tmp_path):
    image = Image.new("RGBA", (60, 60), (0, 0, 0, 0))  # transparent *black* pixels
    ImageDraw.Draw(image).line((15, 30, 45, 30), fill=(0, 0, 0, 255), width=6)
    image.save(tmp_path / "sticker.png")
    converted = convert_image(tmp_path / "sticker.png")
    assert converted[0, 0].max() < 0.05  # the transparent sheet becomes the dark background
    assert converted[0, 14].max() > 0.6  # the stroke bright


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    pixels = np.full((50, 50), 60000, dtype=np.uint16)
    pixels[20:30, 10:40] = 3000
    Image.fromarray(pixels).save(tmp_path / "scan16.png")
    with Image.open(tmp_path / "scan16.png") as check:
        assert check.mode.startswith("I")
    converted = convert_image(tmp_path / "scan16.png")
    assert converted[0, 0].max() < 0.15 and converted[0, 14, 8:20].min() > 0.8


def test_find_images_is_recursive_and_skips_other_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("x.PNG", "a/y.jpeg", "a/b/z.bmp", ".hidden/h.png", "notes.txt", ".w.png"):
        (tmp_path / name).write_bytes(b"")
    assert find_images(tmp_path) == [tmp_path / "a/b/z.bmp", tmp_path / "a/y.jpeg",
                                     tmp_path / "x.PNG"]


def test_unreadable_images_are_skipped_with_a_warning_or_stop_when_strict(tiny_root, tmp_path):
    good = tiny_pngs(tiny_root, "Omega/character01")[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    messages = []
    images, kept = load_images([broken, good, truncated], warn=messages.append)
    assert kept == [good] and images.shape == (1, 1, 28, 28)
    assert len(messages) == 2 and "broken.jpg" in messages[0] and "truncated.png" in messages[1]
    with pytest.raises(FewshotError, match="broken.jpg"):
        load_images([good, broken], strict=True)


def test_support_set_labels_follow_sorted_folder_names(tiny_tree):
    support = load_support(tiny_tree / "support")
    assert support.classes == sorted(p.name for p in (tiny_tree / "support").iterdir())
    assert support.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [p.parent.name for p in support.paths] == [support.classes[i] for i in support.labels]
    assert support.images.shape == (6, 1, 28, 28)


# --------------------------------------------------------------------------- prediction (tiny)

def test_protonet_query_identical_to_a_lone_example_gets_its_class(tiny_runs, tiny_root,
                                                                     tmp_path):
    """With one example per class, a query equal to an example sits on its prototype."""
    classes = []
    for i, name in enumerate(TINY_CLASSES):
        png = tiny_pngs(tiny_root, name)[i + 2]
        label = f"class-{name.replace('/', '_')}"
        classes.append(label)
        (tmp_path / "support" / label).mkdir(parents=True)
        shutil.copy(png, tmp_path / "support" / label / "example.png")
        (tmp_path / "query").mkdir(exist_ok=True)
        with Image.open(png) as image:  # same pixels, stored as RGB under another name
            image.convert("RGB").save(tmp_path / "query" / f"q{3 - i}.png")
    frame = predict(tiny_runs["protonet"], tmp_path / "support", tmp_path / "query")
    check_rows_line_up(frame, sorted(classes))
    assert [Path(p).name for p in frame["path"]] == ["q0.png", "q1.png", "q2.png", "q3.png"]
    assert list(frame["label"]) == classes[::-1]


@pytest.mark.parametrize("bn_mode", ["auto", "batch", "support"])
def test_maml_adapts_a_copy_with_as_many_outputs_as_classes(tiny_runs, tiny_tree, bn_mode):
    config, model, _ = load_trained(tiny_runs["maml"])
    config = config.resolved()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    support = load_support(tiny_tree / "support")
    query = load_support(tiny_tree / "query").images
    if bn_mode == "running":  # MAML's paper network keeps no running statistics
        with pytest.raises(FewshotError, match="needs running statistics"):
            classify(config, model, support, query, bn_mode=bn_mode, steps=2)
        return
    probabilities = classify(config, model, support, query, bn_mode=bn_mode, steps=2)
    assert probabilities.shape == (6, 3)  # the trained head had 5 outputs
    assert torch.allclose(probabilities.sum(1), torch.ones(6), atol=1e-5)
    after = model.state_dict()
    assert model.head.out_features == 5
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm buffers too


# MAML's models keep no running statistics: --bn-mode running is refused for them (test_bn_mode).
@pytest.mark.parametrize("algorithm, bn_mode", [("protonet", "batch"), ("protonet", "running"),
                                                ("protonet", "support"), ("maml", "batch"),
                                                ("maml", "support"), ("anil", "support")])
def test_eval_and_predict_agree_on_the_same_images(tiny_runs, tiny_data, tmp_path, algorithm,
                                                   bn_mode):
    """An eval episode written out as image folders gets the same predictions from predict."""
    config, model, _ = load_trained(tiny_runs[algorithm])
    config = config.resolved()
    sampler = EpisodeSampler(meta_dataset(tiny_data, make_split(tiny_data), "test"), 3, 2, 4,
                             seed=1)
    if bn_mode == "running" and not config.bn_running_stats:  # refused, see above
        with pytest.raises(FewshotError, match="needs running statistics"):
            evaluate(config, model, sampler, episodes=2, bn_mode=bn_mode)
        return
    result = evaluate(config, model, sampler, episodes=2, bn_mode=bn_mode)
    for index in range(2):
        episode = sampler[index]
        tested = prepared_copy(registry.get(algorithm), model, episode.ways, bn_mode, "cpu")
        logits = episode_logits(registry.get(algorithm), tested, episode, config, bn_mode=bn_mode)
        folder = tmp_path / f"episode{index}"
        for i, (image, label) in enumerate(zip(episode.support, episode.support_labels)):
            (folder / "support" / f"class{label}").mkdir(parents=True, exist_ok=True)
            save_tensor_png(image, folder / "support" / f"class{label}" / f"s{i:03d}.png")
        (folder / "query").mkdir()
        for i, image in enumerate(episode.query):
            save_tensor_png(image, folder / "query" / f"q{i:03d}.png")
        frame = predict(tiny_runs[algorithm], folder / "support", folder / "query",
                        invert="no", bn_mode=bn_mode)
        assert list(frame["label"]) == [f"class{c}" for c in logits.argmax(1).tolist()]
        assert np.allclose(frame[probability_columns(frame)].to_numpy(),
                           torch.softmax(logits, 1).numpy(), atol=1e-6)
        correct = [label == f"class{c}" for label, c in zip(frame["label"], episode.query_labels)]
        assert result.accuracies[index] == pytest.approx(sum(correct) / len(correct))


def save_tensor_png(image: torch.Tensor, path: Path) -> None:
    """A ``[1, 28, 28]`` image in ``[0, 1]`` as an 8-bit PNG of the very same pixels."""
    Image.fromarray((image[0] * 255).round().byte().numpy(), mode="L").save(path)


def test_maml_steps_change_the_adaptation(tiny_runs, tiny_tree):
    frames = [predict(tiny_runs["maml"], tiny_tree / "support", tiny_tree / "query", steps=s)
              for s in (1, 5)]
    for frame in frames:
        check_rows_line_up(frame, sorted(p.name for p in (tiny_tree / "support").iterdir()))
    columns = probability_columns(frames[0])
    assert not np.allclose(frames[0][columns].to_numpy(), frames[1][columns].to_numpy())


def test_cli_prints_the_table_and_writes_the_csv(tiny_runs, tiny_tree, capsys):
    (tiny_tree / "query" / "notes.txt").write_text("not an image")
    out = tiny_tree / "results" / "predictions.csv"
    code = main(["predict", str(tiny_runs["protonet"]), "--support", str(tiny_tree / "support"),
                 "--query", str(tiny_tree / "query"), "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    frame = pd.read_csv(out)
    assert len(frame) == 6 and list(frame.columns[:2]) == ["path", "label"]
    check_rows_line_up(frame, sorted(p.name for p in (tiny_tree / "support").iterdir()))
    expected = predict(tiny_runs["protonet"], tiny_tree / "support", tiny_tree / "query")
    assert list(frame["label"]) == list(expected["label"])
    assert np.allclose(frame[probability_columns(frame)], expected[probability_columns(expected)],
                       atol=1e-5)
    assert (frame["bn_mode"] == "running").all()  # ProtoNet's own
    lines = captured.out.splitlines()
    notes = [line for line in lines if line.startswith("note: ")]
    assert lines[: len(notes)] == notes and len(notes) == 2  # the checkpoint, BatchNorm
    table = lines[len(notes) :]
    assert table[0].split() == [c for c in frame.columns if c != "bn_mode"]  # said in a note
    for path, label, line in zip(frame["path"], frame["label"], table[1:7]):
        assert line.split()[:2] == [path, label]
    assert table[7].startswith("accuracy: ")  # query/ has a sub-folder per class
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no temporary file


def test_a_single_query_file_of_any_name(tiny_runs, tiny_tree, tmp_path):
    png = next((tiny_tree / "query").rglob("*.png"))
    renamed = tmp_path / "drawing.scan"  # named explicitly, so its ending does not matter
    shutil.copy(png, renamed)
    frame = predict(tiny_runs["protonet"], tiny_tree / "support", renamed)
    assert list(frame["path"]) == [str(renamed)]
    check_rows_line_up(frame, sorted(p.name for p in (tiny_tree / "support").iterdir()))


def test_cli_skips_an_unreadable_query_with_a_warning(tiny_runs, tiny_tree, capsys):
    (tiny_tree / "query" / "broken.png").write_bytes(b"\x89PNG garbage")
    args = ["predict", str(tiny_runs["protonet"]), "--support", str(tiny_tree / "support"),
            "--query", str(tiny_tree / "query")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: cannot read image")
    assert "broken.png" in captured.err and len(captured.err.splitlines()) == 1
    table = [line for line in captured.out.splitlines() if line.split()[0].endswith(".png")]
    assert len(table) == 6 and "broken.png" not in captured.out

    assert main(args + ["--strict"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("error: cannot read image") and "broken.png" in captured.err


def _only_one_class(tree):
    for extra in ("Omega-character02", "Chi-character01"):
        shutil.rmtree(tree / "support" / extra)


def _empty_class(tree):
    (tree / "support" / "empty").mkdir()


def _class_of_broken_images(tree):
    (tree / "support" / "zz-broken").mkdir()
    (tree / "support" / "zz-broken" / "a.png").write_bytes(b"junk")
    (tree / "support" / "zz-broken" / "readme.txt").write_text("hi")


def _empty_support(tree):
    shutil.rmtree(tree / "support")
    (tree / "support").mkdir()
    (tree / "support" / "stray.png").write_bytes(b"")


def _empty_query(tree):
    shutil.rmtree(tree / "query")
    (tree / "query" / "sub").mkdir(parents=True)
    (tree / "query" / "sub" / "notes.txt").write_text("no images")


def _broken_query_file(tree):
    (tree / "one.jpg").write_bytes(b"nope")


def _stranger_query_folder(tree):
    shutil.copytree(tree / "query" / "Chi-character01", tree / "query" / "zz-stranger")


@pytest.mark.parametrize("prepare, support, query, extra, expected", [
    (None, "missing", "query", [], "support folder .*missing does not exist"),
    (None, "query/Chi-character01/", "query", [], "needs at least two class sub-folders"),
    (_only_one_class, "support", "query", [], "found only 'Omega-character01'"),
    (_empty_support, "support", "query", [], r"found none\)"),
    (_empty_class, "support", "query", [], "class folder .*empty has no readable image"),
    (_class_of_broken_images, "support", "query", [],
     "class folder .*zz-broken has no readable image"),
    (None, "support", "nowhere", [], "query path .*nowhere does not exist"),
    (_empty_query, "support", "query", [], "no images found in query folder"),
    (_broken_query_file, "support", "one.jpg", [], "cannot read image .*one.jpg"),
    (_stranger_query_folder, "support", "query", [], "'zz-stranger' is none of them"),
    (None, "support", "query", ["--steps", "3"], "--steps applies to maml, metasgd, anil only, not to .*proto, a protonet run"),
    (None, "support", "query", ["--invert", "maybe"], "invalid value for '--invert'"),
    (None, "support", "query", ["--bn-mode", "sometimes"], "invalid value for '--bn-mode'"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_runs, tiny_tree, capsys, prepare, support, query,
                                          extra, expected):
    if prepare:
        prepare(tiny_tree)
    code = main(["predict", str(tiny_runs["protonet"]), "--support", str(tiny_tree / support),
                 "--query", str(tiny_tree / query), *extra])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    *warnings, error = captured.err.strip().splitlines()
    assert error.startswith("error: ") and re.search(expected, error, flags=re.IGNORECASE), error
    # Only an unreadable support image is worth a warning before the error.
    assert [w for w in warnings if "zz-broken/a.png" not in w or not w.startswith("warning: ")] == []


@pytest.mark.parametrize("run, extra, expected", [
    ("maml", ["--steps", "0"], "--steps must be at least 1"),
    ("nowhere", [], "run directory or checkpoint .*nowhere does not exist"),
    ("protonet", ["--csv", "{tree}/support"], "is a directory"),
    ("protonet", ["--csv", "{a_file}/predictions.csv"], "cannot write .* is not a directory"),
])
def test_bad_run_or_options_are_one_line_and_exit_2(tiny_runs, tiny_tree, capsys, run, extra,
                                                    expected):
    path = tiny_runs.get(run, tiny_tree / run)
    a_file = next((tiny_tree / "support").rglob("*.png"))
    extra = [e.format(tree=tiny_tree, a_file=a_file) for e in extra]
    code = main(["predict", str(path), "--support", str(tiny_tree / "support"),
                 "--query", str(tiny_tree / "query"), *extra])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert re.search(expected, captured.err, flags=re.IGNORECASE), captured.err


# --------------------------------------------------------------------------- trustworthy output

@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "anil", "protonet"])
def test_support_mode_predicts_a_query_alone_as_in_its_folder(tiny_runs, tiny_tree, tmp_path,
                                                              algorithm):
    """A query's prediction depends on the support set and on it alone (auto for the algorithms
    that adapt, asked for explicitly for ProtoNet)."""
    bn_mode = "support" if algorithm == "protonet" else "auto"
    folder = predict(tiny_runs[algorithm], tiny_tree / "support", tiny_tree / "query",
                     bn_mode=bn_mode)
    assert (folder["bn_mode"] == "support").all()
    columns = probability_columns(folder)
    for index, path in enumerate(folder["path"]):
        alone = predict(tiny_runs[algorithm], tiny_tree / "support", path, bn_mode=bn_mode)
        assert list(alone["label"]) == [folder["label"][index]]
        assert np.array_equal(alone[columns].to_numpy()[0], folder[columns].to_numpy()[index])


def test_batch_mode_still_depends_on_the_other_queries(tiny_runs, tiny_tree):
    """Why support is predict's default: in batch mode the same image gets other numbers."""
    folder = predict(tiny_runs["maml"], tiny_tree / "support", tiny_tree / "query",
                     bn_mode="batch")
    alone = predict(tiny_runs["maml"], tiny_tree / "support", folder["path"][0], bn_mode="batch")
    columns = probability_columns(folder)
    assert not np.allclose(alone[columns].to_numpy()[0], folder[columns].to_numpy()[0])
    assert (folder["bn_mode"] == "batch").all()


def test_cli_notes_the_bn_mode_and_writes_it_in_the_csv(tiny_runs, tiny_tree, capsys):
    out = tiny_tree / "predictions.csv"
    assert main(["predict", str(tiny_runs["maml"]), "--support", str(tiny_tree / "support"),
                 "--query", str(tiny_tree / "query"), "--csv", str(out)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert any(line.startswith("note: BatchNorm support: each query in a batch of its own")
               for line in notes), notes
    assert set(pd.read_csv(out)["bn_mode"]) == {"support"}


@pytest.mark.parametrize("algorithm", ADAPTING)
def test_unbalanced_support_is_one_warning_for_the_algorithms_that_adapt(tiny_runs, tiny_tree,
                                                                         tiny_root, algorithm):
    omega = tiny_tree / "support" / "Omega-character01"
    for i, png in enumerate(tiny_pngs(tiny_root, "Omega/character01")[2:9]):
        shutil.copy(png, omega / f"more{i}.png")  # 9 images against 2 and 2
    next((tiny_tree / "support" / "Chi-character01").glob("*.png")).unlink()  # 1 image
    messages = []
    predict(tiny_runs[algorithm], tiny_tree / "support", tiny_tree / "query", warn=messages.append)
    assert len(messages) == 1, messages
    assert messages[0].startswith("unbalanced support set: 'Chi-character01' has 1 image, "
                                  "'Omega-character01' has 9 images")
    messages.clear()  # ProtoNet's prototypes are class means: no bias, no warning
    predict(tiny_runs["protonet"], tiny_tree / "support", tiny_tree / "query",
            warn=messages.append)
    assert messages == []


def test_cli_prints_the_unbalanced_support_warning_once(tiny_runs, tiny_tree, capsys):
    next((tiny_tree / "support" / "Chi-character01").glob("*.png")).unlink()
    assert main(["predict", str(tiny_runs["maml"]), "--support", str(tiny_tree / "support"),
                 "--query", str(tiny_tree / "query")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: unbalanced support set: ")
    assert "1 image" in err[0] and "2 images" in err[0]


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
def test_predict_notes_a_new_head_as_eval_does(tiny_runs, tiny_tree, tiny_root, monkeypatch,
                                               capsys, algorithm):
    """The run's head has 5 ways, the support set 3 classes: eval at 3 ways says the same."""
    monkeypatch.setenv("FEWSHOT_DATA", str(tiny_root))
    assert main(["eval", str(tiny_runs[algorithm]), "--ways", "3", "--episodes", "2",
                 "--quiet"]) == 0
    eval_notes = [line for line in capsys.readouterr().out.splitlines() if "-way head" in line]
    assert len(eval_notes) == 1 and "trained with a 5-way head" in eval_notes[0]
    assert main(["predict", str(tiny_runs[algorithm]), "--support", str(tiny_tree / "support"),
                 "--query", str(tiny_tree / "query")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert eval_notes[0] in out
    assert out[0].startswith(f"note: predicting with {tiny_runs[algorithm] / 'best.pt'} (best "
                             "validation accuracy, iteration")
    frame = predict(tiny_runs["protonet"], tiny_tree / "support", tiny_tree / "query")
    assert not any("head" in note for note in frame.attrs["notes"])  # no head to replace


def test_labelled_query_folder_reports_accuracy_and_true_classes(tiny_runs, tiny_tree, capsys):
    """query/<class>/ folders named after the support classes are the queries' true classes."""
    out = tiny_tree / "predictions.csv"
    assert main(["predict", str(tiny_runs["protonet"]), "--support", str(tiny_tree / "support"),
                 "--query", str(tiny_tree / "query"), "--csv", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    frame = pd.read_csv(out)
    assert list(frame["true_class"]) == [Path(p).parent.name for p in frame["path"]]
    right = int((frame["label"] == frame["true_class"]).sum())
    overall = [line for line in lines if line.startswith("accuracy: ")]
    assert overall == [f"accuracy: {right / 6:.1%} ({right} of 6 queries)"]
    per_class = lines[lines.index(overall[0]) + 1 : -1]  # the last line: the CSV written
    classes = sorted(p.name for p in (tiny_tree / "support").iterdir())
    assert [line.split(":")[0].strip() for line in per_class] == classes
    for name, line in zip(classes, per_class):
        rows = frame[frame["true_class"] == name]
        hits = int((rows["label"] == name).sum())
        assert line == f"  {name}: {hits / len(rows):.1%} ({hits} of {len(rows)})"


def test_a_query_folder_of_other_sub_folders_is_not_labelled(tiny_runs, tiny_tree, tmp_path):
    """Sub-folders named after no support class (photos/2023/...) are just where images are."""
    shutil.copytree(tiny_tree / "query", tmp_path / "photos" / "2023")
    frame = predict(tiny_runs["protonet"], tiny_tree / "support", tmp_path / "photos")
    assert len(frame) == 6 and "true_class" not in frame.columns


def _loose_query_image(tree):
    png = next((tree / "query").rglob("*.png"))
    shutil.copy(png, tree / "query" / "loose.png")


def test_a_loose_image_in_a_labelled_folder_has_no_true_class(tiny_runs, tiny_tree):
    _loose_query_image(tiny_tree)
    frame = predict(tiny_runs["protonet"], tiny_tree / "support", tiny_tree / "query")
    loose = frame["path"].str.endswith("loose.png")
    assert list(frame["true_class"][loose]) == [""] and (frame["true_class"][~loose] != "").all()
    from fewshot_cli.report.predictions import accuracy_lines

    assert accuracy_lines(frame)[0].endswith("of 6 queries)")  # the 6 labelled ones


def test_sixteen_bit_image_of_8_bit_values_reads_as_the_8_bit_image(tmp_path):
    eight = glyph((60, 60), background=255, ink=0)
    eight.save(tmp_path / "eight.png")
    Image.fromarray(np.asarray(eight).astype(np.uint16)).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as check:
        assert check.mode.startswith("I")
    converted = convert_image(tmp_path / "sixteen.png")
    assert converted.max() > 0.6  # not blank
    assert torch.equal(converted, convert_image(tmp_path / "eight.png"))


# --------------------------------------------------------------------------- real Omniglot

REAL_SHOTS, REAL_QUERIES = 5, 5


@pytest.fixture(scope="module")
def real_tree(real_root, tmp_path_factory):
    """5 held-out characters (5 alphabets): 5 examples each in support/, queries in query/.

    query/png/<class>/ holds 5 untouched drawings per class; query/synthetic/<class>/ holds the
    same drawings as RGB JPEGs of another size, as light-on-dark PNGs and as small GIFs. One
    example per class is a light-on-dark JPEG too, so the support set mixes conventions.
    """
    root = tmp_path_factory.mktemp("real-tree")
    alphabets = sorted(p for p in (real_root / "images_evaluation").iterdir() if p.is_dir())
    for alphabet in alphabets[::4][:5]:
        character = sorted(p for p in alphabet.iterdir() if p.is_dir())[2]
        label = f"{alphabet.name}-{character.name}"
        pngs = sorted(character.glob("*.png"))
        (root / "support" / label).mkdir(parents=True)
        for png in pngs[:REAL_SHOTS - 1]:
            shutil.copy(png, root / "support" / label / png.name)
        with Image.open(pngs[REAL_SHOTS - 1]) as image:
            Image.eval(image.convert("L"), lambda v: 255 - v).convert("RGB").save(
                root / "support" / label / "negative.jpg", quality=95)
        for folder in ("png", "synthetic"):
            (root / "query" / folder / label).mkdir(parents=True)
        for i, png in enumerate(pngs[REAL_SHOTS:REAL_SHOTS + REAL_QUERIES]):
            shutil.copy(png, root / "query" / "png" / label / png.name)
            with Image.open(png) as image:
                gray = image.convert("L")
                synthetic = root / "query" / "synthetic" / label
                gray.convert("RGB").resize((160, 160)).save(synthetic / f"{i}-rgb.jpg", quality=90)
                Image.eval(gray, lambda v: 255 - v).resize((77, 77)).save(synthetic / f"{i}-neg.png")
                gray.resize((56, 56)).convert("P").save(synthetic / f"{i}-small.gif")
    return root


@pytest.fixture(scope="module")
def real_runs(real_data, tmp_path_factory):
    """ProtoNet (60 episodes of 20 ways) and first-order MAML (20 meta-batches of 4) runs."""
    root = tmp_path_factory.mktemp("real-runs")
    train(TrainConfig("protonet", ways=20, shots=1, queries=5, iterations=60, val_every=60,
                      val_episodes=20, device="cpu"), root / "proto", data=real_data,
          progress=False)
    train(TrainConfig("maml", first_order=True, iterations=20, meta_batch=4, val_every=20,
                      val_episodes=10, device="cpu"), root / "maml", data=real_data,
          progress=False)
    return {"protonet": root / "proto", "maml": root / "maml"}


def accuracy(frame: pd.DataFrame) -> float:
    truth = [Path(p).parent.name for p in frame["path"]]
    return float(np.mean([t == label for t, label in zip(truth, frame["label"])]))


@pytest.mark.integration
def test_protonet_classifies_held_out_characters(real_runs, real_tree):
    classes = sorted(p.name for p in (real_tree / "support").iterdir())
    frame = predict(real_runs["protonet"], real_tree / "support", real_tree / "query")
    check_rows_line_up(frame, classes)
    assert len(frame) == 5 * REAL_QUERIES * 4
    plain = frame[frame["path"].str.contains("/png/")]
    synthetic = frame[frame["path"].str.contains("/synthetic/")]
    print(f"\nProtoNet 5-way {REAL_SHOTS}-shot on held-out characters: "
          f"{accuracy(plain):.0%} (PNG), {accuracy(synthetic):.0%} (converted copies)")
    assert accuracy(plain) >= 0.6  # chance is 20%
    assert accuracy(synthetic) >= 0.6
    # The light-on-dark copies only work because they are *not* inverted again.
    forced = predict(real_runs["protonet"], real_tree / "support",
                     real_tree / "query" / "synthetic", invert="yes")
    negatives = forced[forced["path"].str.endswith("-neg.png")]
    auto_negatives = synthetic[synthetic["path"].str.endswith("-neg.png")]
    assert accuracy(auto_negatives) > accuracy(negatives)


@pytest.mark.integration
def test_protonet_cli_csv_on_held_out_characters(real_runs, real_tree, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(real_runs["protonet"] / "best.pt"),
                 "--support", str(real_tree / "support"),
                 "--query", str(real_tree / "query" / "png"), "--csv", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    frame = pd.read_csv(out)
    check_rows_line_up(frame, sorted(p.name for p in (real_tree / "support").iterdir()))
    assert len(frame) == 5 * REAL_QUERIES
    assert accuracy(frame) >= 0.6
    assert f"{len(frame)} predictions written to {out}" in captured.out


@pytest.mark.integration
def test_maml_classifies_held_out_characters(real_runs, real_tree):
    classes = sorted(p.name for p in (real_tree / "support").iterdir())
    frame = predict(real_runs["maml"], real_tree / "support", real_tree / "query" / "png")
    check_rows_line_up(frame, classes)
    print(f"\nfirst-order MAML (20 meta-iterations) 5-way {REAL_SHOTS}-shot: {accuracy(frame):.0%}")
    assert accuracy(frame) >= 0.4  # chance is 20%
