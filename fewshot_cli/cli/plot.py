"""``fewshot plot``: figures of training curves and of test accuracy beside the papers'."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.cli.options import config_option, warn


def figure_option(default: str):
    """``--out``: the figure to write, its format by its extension."""
    return click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path(default),
        show_default=True,
        help="The figure to write: .png, .pdf or .svg (the format follows the extension).",
    )


@click.group()
def plot():
    """Draw figures (PNG, PDF or SVG, by --out's extension): training curves, test accuracy.

    curves: each run's training loss and validation accuracy; accuracy: test accuracy per grid
    cell beside the papers'.
    """


@plot.command()
@config_option
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    metavar="RUN_DIR...",
    type=click.Path(file_okay=False, path_type=Path),
)
@figure_option("curves.png")
def curves(run_dirs, out):
    """Training loss and validation accuracy of runs, against iterations and wall-clock time.

    One colour per run. The loss panel draws each iteration's training loss (faint) and its
    moving average from the run directory's iterations.csv; the accuracy panels draw its
    log.csv (one row per validation), against iterations and against seconds of training. A
    run without a validation row yet shows its loss only, or is left out without either, with
    a warning.
    """
    from fewshot_cli.report.curves import plot_curves

    click.echo(f"written to {plot_curves(run_dirs, out, warn=warn)}")


@plot.command()
@config_option
@click.argument("csv_files", nargs=-1, required=True, metavar="CSV...")
@figure_option("accuracy.png")
def accuracy(csv_files, out):
    """Test accuracy per grid cell with 95% CI error bars, beside the published numbers.

    CSV... are evaluation CSVs or glob patterns. Rows are grouped as fewshot aggregate groups
    them, by the whole protocol (split and part, backbone, training length, BatchNorm mode...):
    one bar per protocol, labelled with what sets it apart, never an average of two.
    """
    from fewshot_cli.report.plots import plot_accuracy

    click.echo(f"written to {plot_accuracy(csv_files, out, warn=warn)}")
