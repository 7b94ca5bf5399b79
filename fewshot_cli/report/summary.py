"""What ``fewshot data`` prints: the size of every part of a split."""

from __future__ import annotations

import pandas as pd

from fewshot_cli.data.source import Omniglot
from fewshot_cli.data.splits import Split


def split_summary(data: Omniglot, split: Split) -> pd.DataFrame:
    """One row per part: alphabets, characters, classes (after rotation) and images.

    Example::

        print(split_summary(data, make_split(data, "lake")).to_string(index=False))
    """
    images_per_character = data.labels.bincount(minlength=len(data.characters)).tolist()
    alphabets = data.alphabets
    rows = []
    for part, classes in split.parts.items():
        characters = {c for c, _ in classes}
        rows.append(
            {
                "split": split.name,
                "part": part,
                "alphabets": len({alphabets[c] for c in characters}),
                "characters": len(characters),
                "classes": len(classes),
                "images": sum(images_per_character[c] for c, _ in classes),
            }
        )
    return pd.DataFrame(rows)


def dataset_summary(data, split: str | None = None) -> pd.DataFrame:
    """One row per part of a ``FewShotData`` split: classes, images per class (min, median,
    max), image shape and the cache's size in memory.

    Example::

        print(dataset_summary(load_data("mini-imagenet", root)).to_string(index=False))
    """
    counts = data.labels.bincount(minlength=len(data.classes))
    channels, height, width = data.image_shape
    rows = []
    for part in ("train", "val", "test"):
        classes = data.part_classes(part, split)
        per_class = counts[classes].float() if classes else counts[:0].float()
        images = int(per_class.sum())
        rows.append(
            {
                "split": split or data.default_split,
                "part": part,
                "classes": len(classes),
                "images": images,
                "per class min/median/max": (
                    f"{int(per_class.min())}/{int(per_class.median())}/{int(per_class.max())}"
                    if classes
                    else "-"
                ),
                "image": f"{channels}x{height}x{width}",
                "memory (MB)": round(images * channels * height * width / 2**20, 1),
            }
        )
    return pd.DataFrame(rows)
