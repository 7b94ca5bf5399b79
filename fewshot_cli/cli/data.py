"""``fewshot data``: locate (or download) Omniglot, build its cache, print every split's parts."""

from __future__ import annotations

import click

from fewshot_cli.choices import SPLITS
from fewshot_cli.cli.options import config_option, data_options, split_dir_option, split_seed_option
from fewshot_cli.errors import FewshotError


@click.command()
@config_option
@data_options
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(SPLITS),
    help="Split(s) to summarise (repeatable). Default: all that are available.",
)
@split_dir_option
@split_seed_option
def data(data_root, download, splits, split_dir, split_seed):
    """Prepare and verify Omniglot, then print the size of every split part.

    Locates (or with --download fetches) the images, builds the 28x28 tensor cache on first use,
    and prints alphabets, characters, classes after rotation and images for each split part.
    """
    from fewshot_cli.data.source import FULL_IMAGE_COUNT, load_omniglot
    from fewshot_cli.data.splits import make_split
    from fewshot_cli.report.summary import split_summary

    omniglot = load_omniglot(data_root, download=download, progress=True)
    count = len(omniglot.labels)
    click.echo(
        f"Omniglot at {omniglot.root}: {count} images of {len(omniglot.characters)} "
        f"characters in {len(set(omniglot.alphabets))} alphabets"
        + ("" if count == FULL_IMAGE_COUNT else f" (the full set has {FULL_IMAGE_COUNT})")
    )
    for name in splits or SPLITS:
        try:
            split = make_split(omniglot, name, split_seed, split_dir, download)
        except FewshotError as exc:
            if splits:
                raise
            click.echo(f"\n{name}: skipped ({exc})")
            continue
        click.echo("\n" + split_summary(omniglot, split).to_string(index=False))
