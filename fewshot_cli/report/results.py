"""Evaluation results as CSV rows: the columns, and a safe append.

Every ``fewshot eval`` appends one row. Appends take an exclusive lock on ``<csv>.lock`` and
rewrite the file through a temporary copy and a rename, so concurrent evaluations lose no row,
never interleave partial lines, and a kill at any moment leaves the previous good file.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from contextlib import contextmanager
from pathlib import Path

from fewshot_cli.algorithms import registry
from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.errors import FewshotError


def all_columns() -> list[str]:
    """Every row's columns: after ``algorithm``, each algorithm's own (empty in the rows of the
    other algorithms). Also ``COLUMNS``, computed when first read: it imports every algorithm's
    module (learn2learn), which ``predict``, importing this module, has no use for."""
    return [
        "timestamp",
        "run_id",
        "algorithm",
        *registry.csv_columns(),
        "backbone",
        "dataset",
        "split",
        "split_part",
        "rotations",
        "train_ways",
        "train_shots",
        "train_queries",
        "test_ways",
        "test_shots",
        "test_queries",
        "train_iterations",
        "init_from",
        "checkpoint_iteration",
        "episodes",
        "seed",
        "train_seed",
        "bn_mode",
        "accuracy_mean",
        "ci95",
        "eval_seconds",
        "checkpoint",
        "version",
    ]


def __getattr__(name: str):
    if name == "COLUMNS":  # PEP 562: computed once, on first use
        globals()["COLUMNS"] = value = all_columns()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


REQUIRED = {"algorithm", "accuracy_mean"}  # what makes a CSV an evaluation CSV


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on ``<path>.lock`` (a separate file, since ``path`` gets replaced)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")
    except OSError as exc:
        raise FewshotError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_text(path: Path) -> str:
    """The CSV's text ("" when absent); a binary file is no evaluation CSV."""
    try:
        return path.read_text() if path.exists() else ""
    except UnicodeDecodeError:
        raise FewshotError(f"{path} is not an evaluation CSV (not a text file)") from None


def append_row(path: str | Path, row: dict) -> None:
    """Append ``row`` to the evaluation CSV at ``path``, creating it with a header if absent.

    Columns the file already has keep their order; new ones are added at the end.

    Example::

        append_row("results/eval.csv", {"algorithm": "protonet", "accuracy_mean": 0.98})
    """
    path = Path(path)
    with locked(path):
        existing = read_text(path)
        header = next(csv.reader([existing.splitlines()[0]]), []) if existing.strip() else []
        if header and not REQUIRED <= set(header):
            raise FewshotError(
                f"{path} is not an evaluation CSV (no {', '.join(sorted(REQUIRED))} columns)"
            )
        columns = list(header or all_columns())  # a copy: extending it must not change `header`
        columns += [c for c in row if c not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        if columns != header:
            writer.writeheader()
            body = existing.split("\n", 1)[1] if header else ""
            # Rows written under the old header are padded by readers (pandas) with empties.
            buffer.write(body if body.endswith("\n") or not body else body + "\n")
        else:
            buffer.write(existing if existing.endswith("\n") else existing + "\n")
        writer.writerow({c: row.get(c, "") for c in columns})
        atomic_write_text(path, buffer.getvalue())


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
