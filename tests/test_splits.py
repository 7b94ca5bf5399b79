"""Splits: parts are disjoint, sized as the protocols say, seeded, and bad split files fail."""

import pytest

from fewshot_cli.data.splits import make_split
from fewshot_cli.errors import FewshotError


def assert_disjoint(split):
    parts = [split.characters(p) for p in ("train", "val", "test")]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]


def test_lake_split_by_whole_alphabets(tiny_data):
    split = make_split(tiny_data, "lake")
    assert_disjoint(split)
    alphabet = tiny_data.alphabets
    by_part = {p: {alphabet[c] for c in split.characters(p)} for p in ("train", "val", "test")}
    assert not by_part["train"] & by_part["val"]
    assert by_part["test"] == {"Omega", "Psi", "Chi"}
    assert len(by_part["val"]) == 1  # a sixth of the 6 background alphabets
    assert all(tiny_data.background[c] for c in split.characters("train") | split.characters("val"))
    assert split.characters("trainval") == split.characters("train") | split.characters("val")


def test_lake_validation_alphabets_follow_the_seed(tiny_data):
    chosen = {frozenset(make_split(tiny_data, "lake", seed=s).characters("val")) for s in range(8)}
    assert len(chosen) > 1
    assert make_split(tiny_data, "lake", seed=3).parts == make_split(tiny_data, "lake", seed=3).parts


def test_random_split_proportions_and_seed(tiny_data):
    split = make_split(tiny_data, "random", seed=1)
    assert_disjoint(split)
    sizes = {p: len(split.parts[p]) for p in ("train", "val", "test")}
    assert sum(sizes.values()) == 32
    assert sizes["test"] == round(32 * 423 / 1623) and sizes["val"] == 2
    assert make_split(tiny_data, "random", seed=2).parts != split.parts


def write_vinyals(folder, parts):
    folder.mkdir(parents=True, exist_ok=True)
    for part, lines in parts.items():
        (folder / f"{part}.txt").write_text("\n".join(lines) + "\n")


def vinyals_lines(characters):
    return [f"{c}/rot{r:03d}" for c in characters for r in (0, 90, 180, 270)]


def test_vinyals_split_from_files_with_rotations(tiny_data, tmp_path):
    names = tiny_data.characters
    parts = {"train": vinyals_lines(names[:20]), "val": vinyals_lines(names[20:24]),
             "test": vinyals_lines(names[24:])}
    parts["trainval"] = parts["train"] + parts["val"]
    write_vinyals(tmp_path, parts)
    split = make_split(tiny_data, "vinyals", split_dir=tmp_path)
    assert_disjoint(split)
    assert len(split.parts["train"]) == 80
    assert split.parts["test"][:4] == [(24, 0), (24, 1), (24, 2), (24, 3)]


def test_vinyals_unknown_character_is_named(tiny_data, tmp_path):
    parts = {p: vinyals_lines(tiny_data.characters[:2]) for p in ("train", "val", "trainval")}
    parts["test"] = ["Klingon/character01/rot000"]
    write_vinyals(tmp_path, parts)
    with pytest.raises(FewshotError, match="test.txt:1: 'Klingon/character01/rot000' names no character"):
        make_split(tiny_data, "vinyals", split_dir=tmp_path)


def test_vinyals_missing_files(tiny_data, tmp_path):
    with pytest.raises(FewshotError, match="train.txt not found"):
        make_split(tiny_data, "vinyals", split_dir=tmp_path / "nowhere")


def test_vinyals_overlapping_parts_refused(tiny_data, tmp_path):
    names = tiny_data.characters
    write_vinyals(tmp_path, {"train": vinyals_lines(names[:10]), "val": vinyals_lines(names[9:12]),
                             "test": vinyals_lines(names[12:]), "trainval": vinyals_lines(names[:12])})
    with pytest.raises(FewshotError, match="both train and val"):
        make_split(tiny_data, "vinyals", split_dir=tmp_path)


def test_unknown_split(tiny_data):
    with pytest.raises(FewshotError, match="unknown split"):
        make_split(tiny_data, "nope")


@pytest.mark.integration
def test_real_splits_have_the_published_sizes(real_data, real_root):
    lake = make_split(real_data, "lake")
    assert len(lake.parts["test"]) == 659 and len(lake.parts["trainval"]) == 964
    assert_disjoint(lake)
    vinyals = make_split(real_data, "vinyals", split_dir=real_root / "splits" / "vinyals")
    assert [len(vinyals.characters(p)) for p in ("train", "val", "test")] == [1028, 172, 423]
    assert len(vinyals.parts["train"]) == 4 * 1028
    assert_disjoint(vinyals)
    rand = make_split(real_data, "random")
    assert [len(rand.parts[p]) for p in ("train", "val", "test")] == [1100, 100, 423]
    assert_disjoint(rand)
