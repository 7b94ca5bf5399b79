"""``fewshot aggregate``: one line per group of evaluation rows, grouped by the protocol."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.choices import FORMATS
from fewshot_cli.cli.options import comma_list, config_option, warn
from fewshot_cli.run.protocol import PROTOCOL_COLUMNS


@click.command()
@config_option
@click.argument("csv_files", nargs=-1, required=True, metavar="CSV...")
@click.option(
    "--by",
    "by",
    multiple=True,
    metavar="COLUMNS",
    help="Columns to group by, comma-separated (repeatable). Default: every column of the "
    f"protocol ({', '.join(PROTOCOL_COLUMNS)}); the table then shows the columns that "
    "differ between lines and notes the values all lines share.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table: aligned terminal table; markdown: a table for a README; csv: a tidy file "
    "(fractions, not percent).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of printing.",
)
def aggregate(csv_files, by, fmt, out):
    """Summarise evaluation CSVs: one line per group of runs.

    CSV... are files or glob patterns (quote them: "results/**/*.csv"). Each group shows the mean
    accuracy with its 95% confidence interval, the number of runs (rows), the test episodes
    behind them and, for several runs (seeds), the standard deviation of the run means. The CI
    of a group of n runs is sqrt(sum ci_i^2) / n: episode noise only, the spread is separate.
    A training evaluated again on the same episodes (with the same or another checkpoint)
    counts once, with a warning. Summaries written with --out are never read back as rows.
    """
    from fewshot_cli.report.aggregate import aggregate_files

    text = aggregate_files(csv_files, comma_list(by) or None, fmt, warn=warn, out=out)
    click.echo(f"written to {out}" if out else text, nl=bool(out))
