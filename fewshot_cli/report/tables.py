"""Text of result tables: aligned terminal tables, Markdown, and what "±" means in them.

Example::

    print(format_table(aggregate(read_results(["eval.csv"])), "markdown", always=ALWAYS_SHOWN))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from fewshot_cli.choices import FORMATS
from fewshot_cli.errors import FewshotError

# The summary columns of an aggregate table, after its grouping columns.
STATS = ("accuracy_mean", "ci95", "runs", "episodes", "run_std", "seeds_ci95")
# Shown in every default table; the other protocol columns only where they tell lines apart.
ALWAYS_SHOWN = ("algorithm", "split", "test_ways", "test_shots", "bn_mode")
# What "±" means in every table of results (aggregate, reproduce): one meaning, one label.
CI_NOTE = (
    "±: 95% CI over the test episodes; seeds CI95: 95% CI of the mean over the runs' training "
    "seeds (Student t)."
)


def percent(value: float, digits: int = 2) -> str:
    """``0.98712`` as ``98.71``; NaN as an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * value:.{digits}f}"


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    fmt: str = "table",
    right: Iterable[str] = (),
) -> str:
    """Text of a table of strings: aligned columns (``table``) or a Markdown table (``markdown``).

    Args:
        headers: column titles.
        rows: cells, already formatted.
        fmt: ``table`` or ``markdown``.
        right: titles of the columns to align right (numbers).

    Example:
        >>> print(render(["a", "n"], [["x", "1"]], "markdown", right=["n"]))
        | a | n |
        | :-- | --: |
        | x | 1 |
    """
    right = set(right)
    if fmt == "markdown":

        def line(cells):
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        rule = ["--:" if h in right else ":--" for h in headers]
        return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])
    if fmt != "table":
        raise FewshotError(f"unknown format '{fmt}' (choose from table, markdown)")
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]

    def aligned(cells):
        return "  ".join(
            str(c).rjust(w) if h in right else str(c).ljust(w)
            for c, w, h in zip(cells, widths, headers)
        ).rstrip()

    return "\n".join([aligned(headers), "  ".join("-" * w for w in widths), *map(aligned, rows)])


def shown_columns(table: pd.DataFrame, always: Sequence[str]) -> tuple[list[str], list[str]]:
    """The grouping columns of ``table`` worth a column, and ``name value`` notes of the rest.

    Columns in ``always`` are shown; another is shown where its value differs between lines,
    noted once when every line has the same value, and left out when it is empty everywhere.
    """
    shown, same = [], []
    for column in (c for c in table.columns if c not in STATS):
        values = set(table[column])
        if column in always or len(values) > 1:
            shown.append(column)
        elif values - {""}:
            same.append(f"{column} {values.pop()}")
    return shown, same


def format_table(
    table: pd.DataFrame, fmt: str = "table", always: Sequence[str] | None = None
) -> str:
    """Text of an ``aggregate`` result: a terminal table, a Markdown table, or a tidy CSV.

    ``table`` and ``markdown`` show percentages (accuracy as ``mean ± ci95``); ``csv`` keeps the
    fractions in separate columns, with empty cells for missing values.

    Args:
        table: the result of ``aggregate``.
        fmt: ``table``, ``markdown`` or ``csv``.
        always: show these grouping columns, and of the others only those that tell lines apart
            (the values every line shares are noted under the table). ``None``: show all.

    Example::

        print(format_table(aggregate(rows), "markdown", always=ALWAYS_SHOWN))
    """
    if fmt not in FORMATS:
        raise FewshotError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    if fmt == "csv":
        return table.to_csv(index=False, lineterminator="\n", float_format="%.5f")
    by, same = (
        ([c for c in table.columns if c not in STATS], [])
        if always is None
        else shown_columns(table, always)
    )
    headers = [*by, "accuracy (%)", "runs", "episodes", "run std (%)", "seeds CI95 (%)"]
    rows = []
    for record in table.to_dict("records"):
        accuracy = percent(record["accuracy_mean"])
        if not math.isnan(record["ci95"]):
            accuracy += f" ± {percent(record['ci95'])}"
        episodes = "" if math.isnan(record["episodes"]) else str(int(record["episodes"]))
        rows.append(
            [
                *(record[c] for c in by),
                accuracy,
                str(record["runs"]),
                episodes,
                percent(record["run_std"]),
                percent(record["seeds_ci95"]),
            ]
        )
    text = render(headers, rows, fmt, right=headers[len(by) :]) + "\n"
    notes = [f"Every line: {', '.join(same)}."] if same else []
    notes.append(CI_NOTE)
    return text + ("\n" if fmt == "markdown" else "") + "\n".join(notes) + "\n"
