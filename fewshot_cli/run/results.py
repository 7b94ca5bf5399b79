"""Evaluation results as CSV rows: the columns, and a safe append.

Every ``fewshot eval`` appends one row. Appends take an exclusive lock on the CSV's folder and
rewrite the file through a temporary copy and a rename, so concurrent evaluations lose no row,
never interleave partial lines, and a kill at any moment leaves the previous good file. Rows go
only to evaluation CSVs: never into ``predict``'s predictions or an ``aggregate`` summary.
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
from contextlib import contextmanager
from pathlib import Path

from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import protocol

# Every row's columns: the protocol and its replicates (``run.protocol``), between the row's
# identity and its result.
COLUMNS = [
    "timestamp",
    "run_id",
    *(c.name for c in protocol.COLUMNS),
    "checkpoint_iteration",
    "accuracy_mean",
    "ci95",
    "eval_seconds",
    "checkpoint",
    "version",
]
REQUIRED = {"algorithm", "accuracy_mean"}  # what makes a CSV an evaluation CSV
# Columns of an ``aggregate`` summary: a CSV that has them holds no evaluation rows.
SUMMARY = {"runs", "run_std", "seeds_ci95"}


def csv_kind(header: list[str]) -> str:
    """What a CSV with this header holds: ``evaluation`` rows, an aggregate ``summary``, or
    ``other`` data (such as ``predict``'s predictions).

    Example:
        >>> csv_kind(["algorithm", "accuracy_mean", "runs"]), csv_kind(["image", "predicted"])
        ('summary', 'other')
    """
    if SUMMARY & set(header):
        return "summary"
    return "evaluation" if REQUIRED <= set(header) else "other"


def header_of(path: Path) -> list[str]:
    """The column names of the CSV at ``path`` (empty when absent or empty)."""
    first = read_text(path).split("\n", 1)[0]
    return next(csv.reader([first]), []) if first.strip() else []


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on the folder of ``path`` (the file itself gets replaced; a lock
    on its folder leaves no file behind)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path.parent, os.O_RDONLY)
    except OSError as exc:
        raise FewshotError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def read_text(path: Path) -> str:
    """The CSV's text ("" when absent); a binary file is no evaluation CSV."""
    try:
        return path.read_text() if path.exists() else ""
    except UnicodeDecodeError:
        raise FewshotError(f"{path} is not an evaluation CSV (not a text file)") from None


def append_row(path: str | Path, row: dict) -> None:
    """Append ``row`` to the evaluation CSV at ``path``, creating it with a header if absent.

    Columns the file already has keep their order; new ones are added at the end.

    Raises:
        FewshotError: ``path`` holds something other than evaluation rows (predictions, an
            ``aggregate`` summary).

    Example::

        append_row("results/eval.csv", {"algorithm": "protonet", "accuracy_mean": 0.98})
    """
    path = Path(path)
    with locked(path):
        existing = read_text(path)
        header = header_of(path)
        check_evaluation_csv(path, header)
        columns = list(header or COLUMNS)  # a copy: extending it must not change `header`
        columns += [c for c in row if c not in columns]
        body = existing.split("\n", 1)[1] if "\n" in existing else ""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        # A new column rewrites the header; rows written under the old one are padded by
        # readers (pandas) with empties.
        writer.writeheader()
        buffer.write(body if body.endswith("\n") or not body else body + "\n")
        writer.writerow({c: row.get(c, "") for c in columns})
        atomic_write_text(path, buffer.getvalue())


def check_evaluation_csv(path: Path, header: list[str]) -> None:
    """Refuse to add evaluation rows to a CSV of another kind (see ``csv_kind``)."""
    if not header:
        return
    kind = csv_kind(header)
    if kind == "summary":
        raise FewshotError(
            f"{path} is a summary written by fewshot aggregate, not an evaluation CSV: "
            "evaluation rows go to another file"
        )
    if kind == "other":
        raise FewshotError(
            f"{path} is not an evaluation CSV (no {', '.join(sorted(REQUIRED))} columns)"
        )


def check_writable(path: str | Path) -> None:
    """Fail early (before an evaluation runs) when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise FewshotError(f"cannot write {path}: it is a directory")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise FewshotError(f"cannot write {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FewshotError(f"cannot write {path}: permission denied")


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the evaluation CSV at ``path`` as dicts of strings; a cell of a column the
    file lacks is absent from its dict (not empty).

    Raises:
        FewshotError: the file holds something other than evaluation rows.
    """
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    check_evaluation_csv(path, list(reader.fieldnames or []))
    return [{k: v for k, v in row.items() if k is not None} for row in reader]


def format_accuracy(row: dict) -> str:
    """An evaluation row's ``accuracy_mean ± ci95`` in percent, rounded as every table rounds it.

    Printed from the row's stored values (not the unrounded result), so a progress line and a
    later table of the same row never differ in the last digit.

    Example:
        >>> format_accuracy({"accuracy_mean": "0.91524", "ci95": "0.02405"})
        '91.52% ± 2.40%'
    """
    text = f"{100 * float(row['accuracy_mean']):.2f}%"
    try:
        ci = float(row.get("ci95", ""))
    except ValueError:
        return text
    return text if math.isnan(ci) else text + f" ± {100 * ci:.2f}%"
