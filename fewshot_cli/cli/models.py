"""``fewshot models`` and ``fewshot export``: the models that ship with the package, and any
trained network as a file that plain torch or an ONNX runtime loads."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.cli.options import config_option

HEADINGS = ("name", "algorithm", "test", "accuracy", "episodes")


def model_table(entries: list[dict], verbose: bool = False) -> str:
    """The manifest ``entries`` as an aligned table; ``verbose`` adds, under each model, the
    command that trained it."""
    from fewshot_cli.run.results import format_accuracy

    rows = [HEADINGS] + [
        (
            e["name"],
            e["algorithm"],
            e["test"],
            format_accuracy({"accuracy_mean": e["accuracy"], "ci95": e["ci95"]}),
            str(e["episodes"]),
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]
    if verbose:
        lines[1:] = [
            f"{line}\n    trained by: {e['command']}" for line, e in zip(lines[1:], entries)
        ]
    return "\n".join(lines)


@click.command()
@config_option
@click.option(
    "--verbose/--no-verbose",
    default=False,
    help="Also print the command that trained each model.",
)
def models(verbose):
    """List the trained models that ship with fewshot_cli.

    Each is used as pretrained:NAME wherever a run goes (eval, predict, export, train
    --init-from), its weights checked against the manifest first. Shows its algorithm, the test
    it was measured on, its accuracy with the 95% CI and the test episodes behind it.
    $FEWSHOT_PRETRAINED names another folder of shipped models.
    """
    from fewshot_cli.run import pretrained

    entries = pretrained.manifest()
    if not entries:
        click.echo(f"no models ship with this version (none in {pretrained.folder()})")
        return
    click.echo(model_table(entries, verbose))


@click.command()
@config_option
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write: .pt2 (torch.export's program; torch.export.load reads it) or "
    ".onnx (needs the onnx package).",
)
def export(run, out):
    """Write a trained network to a file that plain torch or an ONNX runtime loads.

    RUN is a run directory (its best.pt), a checkpoint, or pretrained:NAME, a model that ships
    with fewshot_cli (fewshot models lists them). The file holds the network alone, in its
    algorithm's BatchNorm mode at test, for any batch of 28x28 grayscale images: for ProtoNet
    the embedding (prototypes and distances are a few lines of torch); for MAML, Meta-SGD and
    ANIL the network with its meta-learned head (adapting it to a support set needs
    fewshot_cli).

    \b
    Example:
      fewshot export pretrained:NAME --out net.pt2
      python -c "import torch; net = torch.export.load('net.pt2').module()"
    """
    from fewshot_cli.run.export import export as export_network

    click.echo(f"written to {export_network(run, out)}")
