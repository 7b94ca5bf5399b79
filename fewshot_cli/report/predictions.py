"""What ``fewshot predict`` prints and writes: the table of predictions, the accuracy of
labelled queries, the CSV."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.errors import FewshotError
from fewshot_cli.run.predict import PROBABILITY_PREFIX

if TYPE_CHECKING:
    import pandas as pd


def accuracy_lines(frame: pd.DataFrame) -> list[str]:
    """The accuracy of labelled predictions: overall on one line, then one line per class.

    Empty when the queries are not labelled (no ``true_class``). Queries without a class (images
    directly in a labelled query folder) are left out.

    Example::

        accuracy_lines(predict("runs/proto", "examples", "labelled-photos"))
        # ['accuracy: 75.0% (3 of 4 queries)', '  cat: 100.0% (2 of 2)', '  dog: 50.0% (1 of 2)']
    """
    if "true_class" not in frame.columns:
        return []
    labelled = frame[frame["true_class"].fillna("").astype(str) != ""]
    if labelled.empty:
        return ["accuracy: no query image is in a class sub-folder"]

    def score(rows: pd.DataFrame) -> str:
        right = int((rows["label"] == rows["true_class"]).sum())
        return f"{right / len(rows):.1%} ({right} of {len(rows)}"

    classes = [
        c[len(PROBABILITY_PREFIX) :] for c in frame.columns if c.startswith(PROBABILITY_PREFIX)
    ]
    per_class = [(name, labelled[labelled["true_class"] == name]) for name in classes]
    return [f"accuracy: {score(labelled)} queries)"] + [
        f"  {name}: {score(rows)})" for name, rows in per_class if len(rows)
    ]


def format_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """What ``fewshot predict`` prints: its notes (``note: ...``), the prediction table
    (probabilities rounded to ``digits``; the BatchNorm mode is in a note) and, for labelled
    queries, the accuracy (``accuracy_lines``)."""
    table = frame.drop(columns=["bn_mode"], errors="ignore").to_string(
        index=False, float_format=lambda value: f"{value:.{digits}f}"
    )
    notes = [f"note: {line}" for line in frame.attrs.get("notes", [])]
    return "\n".join([*notes, table, *accuracy_lines(frame)])


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the predictions as CSV atomically (a temporary file renamed into place).

    An existing file of predictions is replaced; an evaluation CSV or an ``aggregate`` summary
    is refused, since its rows would be lost.
    """
    from fewshot_cli.run.results import csv_kind, header_of

    path = Path(path)
    kind = csv_kind(header_of(path)) if path.is_file() else "other"
    if kind != "other":
        what = "an evaluation CSV" if kind == "evaluation" else "a summary of fewshot aggregate"
        raise FewshotError(f"--csv {path} is {what}: write the predictions to another file")
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.6f"))
