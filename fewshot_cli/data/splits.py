"""Which Omniglot classes are used for meta-training, validation and testing.

A class is a character at one rotation: ``(character index, quarter turns)``. Three protocols:

- ``lake``: the 30 background alphabets train, the 20 evaluation alphabets test (Lake et al.).
  Validation is carved out of the background set by whole alphabets (a sixth of them), seeded.
- ``vinyals``: the 1028 / 172 / 423-character split of Vinyals et al., read from its split files,
  with the four 90-degree rotations of each character as separate classes.
- ``random``: a seeded random split of all characters, 1100 / 100 / 423 (the MAML protocol).

No character ever appears in two of the parts ``train``, ``val`` and ``test``.
"""

from __future__ import annotations

import random
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fewshot_cli.choices import PARTS, SPLITS
from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:  # type hints only: the data itself is torch tensors
    from fewshot_cli.data.source import Omniglot

VINYALS_URL = (
    "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/"
    "splits/vinyals/{part}.txt"
)
FULL_CHARACTERS = 1623
RANDOM_SIZES = {"val": 100, "test": 423}  # of 1623 characters; the rest (1100) train


@dataclass
class Split:
    """The classes of each part of a split.

    Attributes:
        name: ``lake``, ``vinyals`` or ``random``.
        parts: part name (``train``, ``val``, ``test``, ``trainval``) to its classes, each a
            ``(character index, quarter turns)`` pair.

    Example::

        split = make_split(data, "lake")
        len(split.parts["test"])
        # 659
    """

    name: str
    parts: dict[str, list[tuple[int, int]]]

    def characters(self, part: str) -> set[int]:
        """The character indices used by ``part``."""
        return {character for character, _ in self.parts[part]}


def lake_split(data: Omniglot, seed: int = 0) -> Split:
    """Background alphabets train (minus a seeded sixth for validation); evaluation alphabets test."""
    alphabets = data.alphabets
    background = sorted({a for a, bg in zip(alphabets, data.background) if bg})
    val_alphabets = set(random.Random(seed).sample(background, max(1, round(len(background) / 6))))
    parts: dict[str, list[tuple[int, int]]] = {p: [] for p in PARTS}
    for character, (alphabet, bg) in enumerate(zip(alphabets, data.background)):
        if not bg:
            parts["test"].append((character, 0))
            continue
        parts["val" if alphabet in val_alphabets else "train"].append((character, 0))
        parts["trainval"].append((character, 0))
    return Split("lake", parts)


def random_split(data: Omniglot, seed: int = 0) -> Split:
    """A seeded random split of the characters: 1100 / 100 / 423 on the full 1623.

    Smaller data (as in tests) keeps the same proportions.
    """
    order = list(range(len(data.characters)))
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(order) * RANDOM_SIZES["test"] / FULL_CHARACTERS))
    n_val = max(1, round(len(order) * RANDOM_SIZES["val"] / FULL_CHARACTERS))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    parts = {"train": train, "val": val, "test": test, "trainval": train + val}
    return Split("random", {p: [(c, 0) for c in sorted(chars)] for p, chars in parts.items()})


def fetch_vinyals_files(split_dir: Path) -> None:
    """Download the four Vinyals split files into ``split_dir``."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        try:
            with urllib.request.urlopen(VINYALS_URL.format(part=part), timeout=60) as response:
                text = response.read().decode()
        except OSError as exc:
            raise FewshotError(
                f"could not download the Vinyals split files ({exc}); put train.txt, val.txt, "
                f"test.txt and trainval.txt in {split_dir} or pass --split-dir"
            ) from exc
        (split_dir / f"{part}.txt").write_text(text)


def vinyals_split(data: Omniglot, split_dir: Path | None = None, download: bool = False) -> Split:
    """The Vinyals et al. split, read from ``train.txt`` etc. in ``split_dir``.

    Each line names a class as ``Alphabet/characterNN/rotDDD``.

    Args:
        data: the loaded images.
        split_dir: folder of the split files. Default: ``<data root>/splits/vinyals``.
        download: fetch the files from their public source when they are missing.
    """
    split_dir = Path(split_dir).expanduser() if split_dir else data.root / "splits" / "vinyals"
    missing = [p for p in PARTS if not (split_dir / f"{p}.txt").is_file()]
    if missing and download and not split_dir.exists():
        fetch_vinyals_files(split_dir)
    elif missing:
        raise FewshotError(
            f"Vinyals split file {split_dir / (missing[0] + '.txt')} not found; pass --split-dir "
            "with the folder of train.txt/val.txt/test.txt/trainval.txt (or --download)"
        )
    index = {name: i for i, name in enumerate(data.characters)}
    parts: dict[str, list[tuple[int, int]]] = {}
    for part in PARTS:
        path = split_dir / f"{part}.txt"
        classes = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            character, _, rotation = line.rpartition("/")
            if character not in index or not rotation.startswith("rot"):
                raise FewshotError(
                    f"{path}:{number}: '{line}' names no character of the data at {data.root}"
                )
            try:
                quarter_turns = int(rotation[3:]) // 90
            except ValueError:
                raise FewshotError(f"{path}:{number}: bad rotation in '{line}'") from None
            classes.append((index[character], quarter_turns))
        parts[part] = classes
    split = Split("vinyals", parts)
    check_disjoint(split)
    return split


def check_disjoint(split: Split) -> None:
    """Raise when a character is in more than one of train, val and test."""
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = split.characters(a) & split.characters(b)
        if shared:
            raise FewshotError(
                f"split '{split.name}' puts {len(shared)} characters in both {a} and {b}"
            )


def make_split(
    data: Omniglot,
    name: str = "lake",
    seed: int = 0,
    split_dir: str | Path | None = None,
    download: bool = False,
) -> Split:
    """Build the named split over ``data``.

    Args:
        data: the loaded images.
        name: ``lake``, ``vinyals`` or ``random``.
        seed: seeds the validation alphabets (``lake``) or the class shuffle (``random``).
        split_dir: folder of the Vinyals split files (``vinyals`` only).
        download: fetch the Vinyals files when missing.

    Example::

        split = make_split(data, "vinyals", split_dir="../shared/data/omniglot/splits/vinyals")
        len(split.parts["train"])  # 1028 characters x 4 rotations
        # 4112
    """
    if hasattr(data, "as_split"):  # another dataset (``FewShotData``): its own named splits
        return data.as_split(name)
    if name == "lake":
        split = lake_split(data, seed)
    elif name == "random":
        split = random_split(data, seed)
    elif name == "vinyals":
        return vinyals_split(data, Path(split_dir) if split_dir else None, download)
    else:
        raise FewshotError(f"unknown split '{name}' (choose from {', '.join(SPLITS)})")
    check_disjoint(split)
    return split
