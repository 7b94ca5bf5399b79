"""The options several commands share, declared once, and the types and callbacks behind them.

Light like the whole command line: ``fewshot --help`` imports neither torch nor pandas.
"""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli import config_file
from fewshot_cli.algorithms.registry import NAMES as ALGORITHMS
from fewshot_cli.choices import BN_MODE_HELP, BN_MODES
from fewshot_cli.data import registry as datasets
from fewshot_cli.errors import FewshotError

DATA_HELP = (
    "The dataset's folder. Omniglot: images_background/ and images_evaluation/ (an extracted "
    "copy of the official zips), or where --download puts them; mini-imagenet: learn2learn's "
    "mini-imagenet-cache-*.pkl files; cifar-fs: its data/ and splits/ folders; folder: "
    "train/, val/, test/ folders of class folders, or class folders (split by --split-seed). "
    "Default: $FEWSHOT_DATA, else ~/.cache/fewshot."
)
CONFIG_HELP = (
    "A TOML file of this command's options, e.g. 'ways = 5' or 'first-order = true' "
    "(keys as the long options, - or _), flat or under a [COMMAND] table such as "
    "[train] or [plot.curves]. Options given on the command line (and environment "
    "variables) win over the file. Relative paths in the file are taken from the "
    "working directory, as on the command line, not from the file's folder."
)
# How --config names each positional argument (by its parameter name), shown in its help.
ARGUMENT_EXAMPLES = {
    "algorithm": '"maml"',
    "run": '"runs/maml"',
    "run_dirs": '["runs/maml", "runs/proto"]',
    "csv_files": '["results.csv"]',
}


def warn(message: str) -> None:
    """Print one ``warning: ...`` line on stderr (the run goes on)."""
    click.echo(f"warning: {message}", err=True)


def note(message: str) -> None:
    """Print one ``note: ...`` line on stdout."""
    click.echo(f"note: {message}")


def stack(*options):
    """One decorator applying ``options`` in the order given (the first shown first)."""

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def read_config_file(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    """Turn ``--config FILE`` into the command's defaults (Click's ``default_map``).

    Read before every other parameter (the option is eager), so each one falls back on the
    file's value where the command line gives none.
    """
    if path is None:
        return
    parameters = [
        config_file.Parameter(
            p.name,
            tuple(o[2:] for o in p.opts if o.startswith("--")),
            p.multiple or p.nargs == -1,
        )
        for p in ctx.command.params
        if p.expose_value and p.name
    ]
    commands = getattr(ctx.find_root().command, "commands", {})
    try:
        values = config_file.command_options(path, ctx.command_path, commands, parameters)
    except FewshotError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **values}


def given(values: dict) -> dict:
    """Those of ``values`` (by parameter name) that the command line or the environment set,
    as opposed to defaults and ``--config`` files."""
    from click.core import ParameterSource

    context = click.get_current_context()
    chosen = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {k: v for k, v in values.items() if context.get_parameter_source(k) in chosen}


class ChoiceList(click.Choice):
    """One of the choices, or several, comma-separated ("maml,protonet"), as a tuple; a
    repeatable option of this type gives tuples that ``flatten`` joins."""

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = [name.strip() for name in str(value).split(",") if name.strip()]
        return tuple(super(ChoiceList, self).convert(name, param, ctx) for name in names)


def flatten(ctx: click.Context, param: click.Parameter, values) -> tuple[str, ...]:
    """The values of a repeatable ``ChoiceList`` option in one tuple, in order, each once."""
    return tuple(dict.fromkeys(name for names in values or () for name in names))


def comma_list(values: tuple[str, ...]) -> list[str]:
    """The names of a repeatable option of comma-separated names ("5w1s,20w5s"), in order."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def config_option(func):
    """``--config FILE``: read the command's options from a TOML file (see ``CONFIG_HELP``);
    its help names the keys of the command's arguments (the outermost decorator sees them)."""
    arguments = [
        p for p in reversed(getattr(func, "__click_params__", [])) if isinstance(p, click.Argument)
    ]
    keys = [
        f"{p.human_readable_name} as {p.name} = {ARGUMENT_EXAMPLES.get(p.name, '...')}"
        for p in arguments
    ]
    text = CONFIG_HELP + (f" Arguments too: {', '.join(keys)}." if keys else "")
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=read_config_file,
        metavar="FILE",
        help=text,
    )(func)


def with_algorithms(func):
    """Put the registry's algorithm names in place of ``{algorithms}`` in a command's help."""
    func.__doc__ = func.__doc__.replace("{algorithms}", ", ".join(ALGORITHMS))
    return func


def bn_mode_option(lead: str, auto: str):
    """``--bn-mode``: ``lead``, then every mode's meaning, then what ``auto`` picks."""
    return click.option(
        "--bn-mode",
        type=click.Choice(["auto", *BN_MODES]),
        default="auto",
        show_default=True,
        help=" ".join([lead, *(f"{m}: {text}." for m, text in BN_MODE_HELP.items()), auto]),
    )


# Which dataset, and its images as the network sees them (recorded with the run).
dataset_options = stack(
    click.option(
        "--dataset",
        type=click.Choice(datasets.NAMES),
        default=datasets.DEFAULT,
        show_default=True,
        help="; ".join(f"{s.name}: {s.about}" for s in datasets.SOURCES.values()) + ".",
    ),
    click.option(
        "--image-size",
        type=int,
        metavar="PIXELS",
        help="Side of the square images the network sees (resized once, cached). Default: "
        "the dataset's papers' (omniglot 28, mini-imagenet 84, cifar-fs 32, folder 84).",
    ),
    click.option(
        "--channels",
        type=click.Choice(["1", "3"]),
        callback=lambda ctx, param, value: None if value is None else int(value),
        help="1: grayscale, 3: RGB. Default: the dataset's (folder: detected, RGB when any "
        "image has colour).",
    ),
)
# Options that read a dataset.
data_options = stack(
    click.option(
        "--data-root",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="FEWSHOT_DATA",
        default=None,
        help=DATA_HELP,
    ),
    click.option(
        "--download/--no-download",
        default=False,
        show_default=True,
        help="Download Omniglot (and the Vinyals split files) when missing.",
    ),
)
split_dir_option = click.option(
    "--split-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the Vinyals split files. Default: <data root>/splits/vinyals.",
)
split_seed_option = click.option(
    "--split-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the lake validation alphabets and of the random split.",
)
split_fractions_option = click.option(
    "--split-fractions",
    metavar="TRAIN/VAL/TEST",
    default=None,
    help="--dataset folder, when its class folders are not already in train/val/test "
    "folders: the proportions of classes (or of class groups' classes) the seeded split "
    "puts in each part, e.g. 70/10/20. Default: 64/16/20, mini-ImageNet's.",
)
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda, cuda:1...",
)
threads_option = click.option(
    "--threads",
    type=int,
    metavar="N",
    help="Let torch use at most N CPU threads (to share a machine). Default: torch's "
    "own choice, all cores.",
)
quiet_option = click.option("--quiet/--no-quiet", default=False, help="No progress bar.")
# Where a training's episodes come from.
split_options = stack(
    click.option(
        "--split",
        help="Omniglot: lake (the default: background alphabets train, evaluation alphabets "
        "test), vinyals (the 1028/172/423-character split with rotations as classes) or "
        "random (a seeded 1100/100/423 character split, MAML protocol). Other datasets: "
        "their own (mini-imagenet: ravi; cifar-fs: bertinetto; folder: its part folders, "
        "else random 64/16/20% of its classes), the default.",
    ),
    click.option(
        "--split-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder of the Vinyals split files (train.txt, val.txt, test.txt, "
        "trainval.txt). Default: <data root>/splits/vinyals.",
    ),
    split_seed_option,
    split_fractions_option,
)
