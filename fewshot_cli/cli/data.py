"""``fewshot data``: locate (or download) a dataset, build its cache, print every split's parts,
or export it as class folders."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.choices import SPLITS
from fewshot_cli.cli.options import (
    config_option,
    data_options,
    dataset_options,
    split_dir_option,
    split_fractions_option,
    split_seed_option,
)
from fewshot_cli.errors import FewshotError


@click.command()
@config_option
@dataset_options
@data_options
@click.option(
    "--split",
    "splits",
    multiple=True,
    help="Split(s) to summarise (repeatable). Default: all that are available "
    f"(omniglot: {', '.join(SPLITS)}).",
)
@split_dir_option
@split_seed_option
@split_fractions_option
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the dataset as train/, val/ and test/ folders of class folders of PNGs (the "
    "first --split, default the dataset's first), exactly as the network sees them: what "
    "--dataset folder reads.",
)
def data(
    dataset,
    image_size,
    channels,
    data_root,
    download,
    splits,
    split_dir,
    split_seed,
    split_fractions,
    export_dir,
):
    """Prepare and verify a dataset, then print the size of every split part.

    Locates (Omniglot: or with --download fetches) the images, builds the tensor cache on first
    use, and prints each split part: Omniglot's alphabets, characters, classes after rotation
    and images; other datasets' classes, images per class, image size and memory.
    """
    from fewshot_cli.algorithms.registry import NAMES as ALGORITHMS
    from fewshot_cli.data import registry
    from fewshot_cli.run.config import TrainConfig
    from fewshot_cli.run.run_data import complete_from_data, load_run_data

    named = registry.get(dataset).splits
    unknown = [s for s in splits if named and s not in named]
    if unknown:  # refused before the data loads (a folder's splits are its own: known once read)
        raise FewshotError(
            f"{dataset} has no split '{unknown[0]}' (choose from {', '.join(named)})"
        )
    config = TrainConfig(
        ALGORITHMS[0],  # any: only the dataset's fields are read
        dataset=dataset,
        image_size=image_size,
        channels=channels,
        split_seed=split_seed,
        split_fractions=split_fractions,
        data_root=str(data_root) if data_root else None,
    ).resolved()
    loaded = load_run_data(config, download=download, progress=True, warn=warn_line)
    if dataset == "omniglot":
        from fewshot_cli.data.dataset import from_omniglot

        summarise_omniglot(loaded, splits, split_dir, split_seed, download)
        if export_dir is None:
            return
        loaded = from_omniglot(loaded, split_seed)
    else:
        complete_from_data(config, loaded)  # refuses fractions for a split given as folders
        summarise(loaded, splits)
    if export_dir is not None:
        from fewshot_cli.data.folder_images import export

        written = export(loaded, export_dir, splits[0] if splits else None)
        click.echo(f"\nexported {len(loaded.labels)} images to {written}")


def warn_line(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def summarise(loaded, splits) -> None:
    from fewshot_cli.report.summary import dataset_summary

    click.echo(
        f"{loaded.name} at {loaded.root}: {len(loaded.labels)} images of "
        f"{len(loaded.classes)} classes, {'x'.join(map(str, loaded.image_shape))}"
    )
    for name in splits or list(loaded.parts):
        click.echo("\n" + dataset_summary(loaded, name).to_string(index=False))


def summarise_omniglot(omniglot, splits, split_dir, split_seed, download) -> None:
    from fewshot_cli.data.source import FULL_IMAGE_COUNT
    from fewshot_cli.data.splits import make_split
    from fewshot_cli.report.summary import split_summary

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
