"""``fewshot predict``: classify the user's own images from a few labelled examples."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.choices import INVERT_MODES
from fewshot_cli.cli.options import (
    bn_mode_option,
    config_option,
    device_option,
    threads_option,
    warn,
)


@click.command()
@config_option
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--support",
    "support_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder with one sub-folder per class (its name is the label) holding one or "
    "more example images.",
)
@click.option(
    "--query",
    "query_path",
    required=True,
    type=click.Path(path_type=Path),
    help="An image file, or a folder searched recursively for images.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the predictions to this CSV, replacing the file if it exists "
    "(unlike eval --csv, which appends a row to its file).",
)
@click.option(
    "--steps",
    type=int,
    help="MAML, Meta-SGD, ANIL: adaptation steps on the support set. Default: the run's test "
    "inner steps.",
)
@click.option(
    "--invert",
    type=click.Choice(INVERT_MODES),
    default="auto",
    show_default=True,
    help="Omniglot models expect bright strokes on a dark background. auto inverts an "
    "image whose border (the outermost pixels of its grayscale version) averages "
    "lighter than mid-gray, i.e. dark strokes on a light background; yes/no force it "
    "for every image.",
)
@bn_mode_option(
    "BatchNorm, as in eval.",
    "auto: running for ProtoNet, support for the others. The mode used is noted and "
    "written in the CSV's bn_mode column.",
)
@click.option(
    "--strict/--no-strict",
    default=False,
    help="Stop at an unreadable image instead of skipping it with a warning.",
)
@device_option
@threads_option
def predict(
    run, support_dir, query_path, csv_path, steps, invert, bn_mode, strict, device, threads
):
    """Classify your own images from a handful of labelled examples.

    RUN is a trained run (directory or checkpoint) or pretrained:NAME, a model that ships with
    fewshot_cli (fewshot models lists them). Images of any common format, size and colour are
    converted as in training (grayscale, LANCZOS-resized to 28x28, see --invert). ProtoNet
    compares each query with the mean embedding of each class; MAML, Meta-SGD and ANIL first
    adapt (a copy of) the model on the examples. Prints one row per query image: its path, the
    predicted label and the probability of every class.

    \b
    Example:
      fewshot predict runs/proto --support examples/ --query photos/ --csv predictions.csv
    """
    from fewshot_cli.report.predictions import format_table, write_csv
    from fewshot_cli.run.config import set_threads
    from fewshot_cli.run.predict import predict as run_predict
    from fewshot_cli.run.results import check_writable

    set_threads(threads)
    if csv_path is not None:
        check_writable(csv_path)
    frame = run_predict(
        run,
        support_dir,
        query_path,
        invert=invert,
        bn_mode=bn_mode,
        steps=steps,
        strict=strict,
        device=device,
        warn=warn,
    )
    click.echo(format_table(frame))
    if csv_path is not None:
        replaced = csv_path.exists()
        write_csv(frame, csv_path)
        click.echo(
            f"{len(frame)} predictions written to {csv_path}"
            + (" (its previous content replaced)" if replaced else "")
        )
