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
