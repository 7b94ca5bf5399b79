"""Our results per grid cell beside the published ones: the table ``reproduce`` prints.

Example::

    print(format_comparison(comparison(result_csvs("results/cpu")), "markdown"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from fewshot_cli.algorithms.papers import published, published_source
from fewshot_cli.choices import COMPARISON_FORMATS  # noqa: F401 (what format_comparison writes)
from fewshot_cli.report.aggregate import PROTOCOL, aggregate, natural_key, read_results
from fewshot_cli.report.tables import CI_NOTE, percent, render


def comparison(
    csv_paths: str | Path | Iterable[str | Path], warn: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """Our results in the evaluation CSVs ``csv_paths`` per cell beside the published accuracy.

    Rows are grouped as ``aggregate`` groups them, by the whole protocol (a run is one
    training: with several seeds, ``runs`` counts the seeds and ``seeds_ci95`` is the 95% CI
    of their mean).

    Columns: ``algorithm``, the protocol columns that tell two lines of one algorithm and cell
    apart (``variant_columns``), ``split``, ``cell``, ``accuracy_mean``, ``ci95``, ``runs``,
    ``episodes``, ``run_std``, ``seeds_ci95`` (fractions, as ``aggregate``), ``published`` (%,
    NaN where the papers have none) and ``difference`` (ours minus published, percentage points).

    Example::

        comparison(["results/quick/eval.csv", *Path("results/quick/csv").glob("*.csv")])
    """
    paths = [csv_paths] if isinstance(csv_paths, (str, Path)) else list(csv_paths)
    table = aggregate(read_results(paths), by=PROTOCOL, warn=warn)
    variants = variant_columns(table)
    table = table.assign(
        ways=[natural_key(w)[1] for w in table["test_ways"]],
        shots=[natural_key(s)[1] for s in table["test_shots"]],
    )
    table["cell"] = [f"{w}w{s}s" for w, s in zip(table["test_ways"], table["test_shots"])]
    datasets = table["dataset"] if "dataset" in table else ["omniglot"] * len(table)
    table["published"] = [
        published(a, int(w), int(s), d or "omniglot") or float("nan")
        for a, w, s, d in zip(table["algorithm"], table["ways"], table["shots"], datasets)
    ]
    table["difference"] = 100 * table["accuracy_mean"] - table["published"]
    table = table.sort_values(["algorithm", "ways", "shots"], kind="stable")
    return table[
        [
            "algorithm",
            *variants,
            "split",
            "cell",
            "accuracy_mean",
            "ci95",
            "runs",
            "episodes",
            "run_std",
            "seeds_ci95",
            "published",
            "difference",
        ]
    ].reset_index(drop=True)


def variant_columns(table: pd.DataFrame) -> list[str]:
    """The protocol columns of ``table`` whose values differ within one algorithm and cell."""
    cell = ["algorithm", "test_ways", "test_shots"]
    fixed = {*cell, "split"}
    return [
        c
        for c in PROTOCOL
        if c not in fixed and c in table and (table.groupby(cell)[c].nunique() > 1).any()
    ]


def format_comparison(table: pd.DataFrame, fmt: str = "table") -> str:
    """Text of ``comparison``: a terminal or Markdown table, then what ± means and the sources.

    Our accuracy is shown as mean ± 95% CI across test episodes (as in ``aggregate``), with
    the CI across training seeds in a column of its own where a cell has several runs.

    Example::

        print(format_comparison(comparison("results/quick/eval.csv"), "markdown"))
    """
    variants = [c for c in table.columns if c in PROTOCOL and c not in ("algorithm", "split")]
    headers = [
        "algorithm",
        *variants,
        "split",
        "cell",
        "ours (%)",
        "runs",
        "episodes",
        *(["seeds CI95 (%)"] if (table["runs"] > 1).any() else []),
        "published (%)",
        "ours - published",
    ]
    rows = []
    for r in table.to_dict("records"):
        ci = r["ci95"]
        ours = percent(r["accuracy_mean"]) + (f" ± {percent(ci)}" if pd.notna(ci) else "")
        known = pd.notna(r["published"])
        rows.append(
            [
                r["algorithm"],
                *(r[v] for v in variants),
                r["split"],
                r["cell"],
                ours,
                str(r["runs"]),
                str(int(r["episodes"])) if pd.notna(r["episodes"]) else "",
                *([percent(r["seeds_ci95"])] if "seeds CI95 (%)" in headers else []),
                f"{r['published']:.1f}" if known else "",
                f"{r['difference']:+.2f}" if known else "",
            ]
        )
    notes = [CI_NOTE]
    datasets = table["dataset"] if "dataset" in table else ["omniglot"] * len(table)
    for name, dataset in dict.fromkeys(zip(table["algorithm"], datasets)):
        source = published_source(name, dataset or "omniglot")
        notes += [f"published: {name} -- {source}"] if source else []
    text = render(headers, rows, fmt, right=headers[headers.index("ours (%)") :])
    if fmt == "markdown":  # a list, or Markdown runs the lines into one paragraph
        return text + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text + "\n" + "\n".join(notes) + "\n"
