"""The ``fewshot`` command line: parses options and calls the library, nothing more.

Every problem with the user's input ends in one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fewshot_cli import __version__
from fewshot_cli.algorithms.registry import NAMES as ALGORITHMS

# The names users choose from, as the library defines them (not repeated here).
# (from light modules: --help imports neither torch nor pandas nor learn2learn).
from fewshot_cli.choices import (
    BACKBONES,
    BN_MODE_HELP,
    BN_MODES,
    BUDGETS,
    COMPARISON_FORMATS,
    ENGINES,
    FORMATS,
    INVERT_MODES,
    PARTS,
    SPLITS,
)
from fewshot_cli.errors import FewshotError, TrainingInterrupted
from fewshot_cli.run.protocol import PROTOCOL_COLUMNS

DATA_HELP = (
    "Folder holding images_background/ and images_evaluation/ (an extracted copy of the "
    "official zips), or where --download puts them. Default: $FEWSHOT_DATA, else "
    "~/.cache/fewshot."
)


def warn(message: str) -> None:
    """Print one ``warning: ...`` line on stderr (the run goes on)."""
    click.echo(f"warning: {message}", err=True)


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


def read_config_file(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    """Turn ``--config FILE`` into the command's defaults (Click's ``default_map``).

    Read before every other parameter (the option is eager), so each one falls back on the
    file's value where the command line gives none.
    """
    if path is None:
        return
    import tomllib

    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", ctx, param) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not a TOML file ({exc})", ctx, param) from None
    root = ctx.find_root().command
    commands = getattr(root, "commands", {})
    if any(key in commands and isinstance(value, dict) for key, value in values.items()):
        # One file for several commands: this command's table only ([train], [plot.curves]).
        names = ctx.command_path.split()[1:]
        for name in names:
            values = values.get(name, {})
            if not isinstance(values, dict):
                raise click.BadParameter(f"{path}: [{'.'.join(names)}] is not a table", ctx, param)
        values = {k: v for k, v in values.items() if not isinstance(v, dict)}
    names, shown = {}, set()  # key (long option or parameter name, - as _) -> parameter name
    for parameter in ctx.command.params:
        if parameter.expose_value and parameter.name:
            names[parameter.name] = parameter.name
            longs = [o[2:] for o in parameter.opts if o.startswith("--")]
            names.update({o.replace("-", "_"): parameter.name for o in longs})
            shown.update(longs or [parameter.name])
    defaults = {}
    for key, value in values.items():
        name = names.get(key.replace("-", "_"))
        if name is None:
            known = ", ".join(sorted(shown))
            raise click.BadParameter(
                f"{path}: '{key}' is no option of {ctx.command_path} (its options: {known})",
                ctx,
                param,
            )
        parameter = next(p for p in ctx.command.params if p.name == name)
        multiple = parameter.multiple or parameter.nargs == -1
        # One value of a repeatable option or argument may come as a string ("maml,protonet").
        defaults[name] = [value] if multiple and isinstance(value, str) else value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


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


def data_options(func):
    """Options every command that reads Omniglot shares."""
    options = [
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
    ]
    for option in reversed(options):
        func = option(func)
    return func


def split_options(func):
    options = [
        click.option(
            "--split",
            type=click.Choice(SPLITS),
            default="lake",
            show_default=True,
            help="lake: background alphabets train, evaluation alphabets test. vinyals: "
            "the 1028/172/423-character split with rotations as classes. random: a "
            "seeded 1100/100/423 character split (MAML protocol).",
        ),
        click.option(
            "--split-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder of the Vinyals split files (train.txt, val.txt, test.txt, "
            "trainval.txt). Default: <data root>/splits/vinyals.",
        ),
        click.option(
            "--split-seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed of the lake validation alphabets and of the random split.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def with_algorithms(func):
    """Put the registry's algorithm names in place of ``{algorithms}`` in a command's help."""
    func.__doc__ = func.__doc__.replace("{algorithms}", ", ".join(ALGORITHMS))
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fewshot")
@with_algorithms
def cli():
    """Few-shot image classification on Omniglot: train and test {algorithms}.

    \b
    Typical session:
      fewshot data --data-root ~/omniglot
      fewshot train protonet --out runs/proto --iterations 1000
      fewshot eval runs/proto --csv results.csv --episodes 600
      fewshot aggregate results.csv
      fewshot plot curves runs/proto --out curves.png
    """


@cli.command()
@config_option
@data_options
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(SPLITS),
    help="Split(s) to summarise (repeatable). Default: all that are available.",
)
@click.option(
    "--split-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the Vinyals split files. Default: <data root>/splits/vinyals.",
)
@click.option(
    "--split-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the lake validation alphabets and of the random split.",
)
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
    for name in splits or ("lake", "vinyals", "random"):
        try:
            split = make_split(omniglot, name, split_seed, split_dir, download)
        except FewshotError as exc:
            if splits:
                raise
            click.echo(f"\n{name}: skipped ({exc})")
            continue
        click.echo("\n" + split_summary(omniglot, split).to_string(index=False))


@cli.command()
@config_option
@click.argument("algorithm", type=click.Choice(ALGORITHMS))
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory for config.json, best.pt, last.pt, log.csv and iterations.csv.",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Continue the interrupted run in this directory from its last.pt (or its best.pt, "
    "where a kill left that one further) with its own configuration. --iterations (to extend it), --device, --time-limit and "
    "--quiet may be given; another option that differs from the run's is refused. "
    "Extended, a run keeps the best.pt of a run as long from the start: a validation "
    "made only because the run ended off the --val-every grid no longer competes.",
)
@click.option(
    "--overwrite/--no-overwrite",
    default=False,
    help="Let --out replace the run already in that directory (its checkpoints and "
    "logs are deleted). Without it an existing run is refused.",
)
@click.option(
    "--ways",
    type=int,
    help="Classes per training episode (at least 2). Default: 60 (ProtoNet), 5 (the others).",
)
@click.option("--shots", type=int, default=1, show_default=True, help="Support images per class.")
@click.option(
    "--queries",
    type=int,
    help="Query images per class in training. Default: 5 (ProtoNet), --shots (the "
    "others, as MAML's reference code).",
)
@click.option(
    "--iterations",
    type=int,
    help="Meta-iterations (MAML, Meta-SGD, ANIL) or episodes (ProtoNet). Default: 1000.",
)
@split_options
@click.option(
    "--rotations/--no-rotations",
    default=False,
    help="Augment training classes with random 90-degree rotations (lake/random splits).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of weights and episodes."
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda, cuda:1...",
)
@click.option(
    "--threads",
    type=int,
    metavar="N",
    help="Let torch use at most N CPU threads (to share a machine). Default: torch's "
    "own choice, all cores.",
)
@click.option(
    "--backbone",
    type=click.Choice(BACKBONES),
    help="conv4: max-pooling blocks (the ProtoNet paper's); conv4-strided: stride-2 "
    "convolutions (the MAML paper's). Default: each algorithm's paper.",
)
@click.option(
    "--lr",
    type=float,
    default=1e-3,
    show_default=True,
    help="Adam learning rate (the meta learning rate of MAML, Meta-SGD, ANIL).",
)
@click.option(
    "--lr-halve-every",
    type=int,
    help="Halve the learning rate every N iterations (0: never). Default: 2000 (ProtoNet), 0 (the others).",
)
@click.option(
    "--inner-lr",
    type=float,
    help="MAML, Meta-SGD, ANIL: inner learning rate (Meta-SGD: its initial value). Default: 0.4 (5-way), 0.1 (20-way).",
)
@click.option(
    "--inner-steps",
    type=int,
    help="MAML, Meta-SGD, ANIL: inner steps in training. Default: 1 (5-way), 5 (20-way).",
)
@click.option(
    "--test-inner-steps",
    type=int,
    help="MAML, Meta-SGD, ANIL: inner steps at test. Default: 3 (5-way), 5 (20-way).",
)
@click.option(
    "--meta-batch",
    type=int,
    help="MAML, Meta-SGD, ANIL: tasks per meta-update. Default: 32 (5-way), 16 (20-way).",
)
@click.option(
    "--first-order/--no-first-order",
    default=False,
    help="MAML, Meta-SGD, ANIL: first order (no second derivatives). --no-first-order: second "
    "order (the default), e.g. over a --config file's first-order = true.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    help="MAML only: l2l (learn2learn's loop over tasks, the reference) or vmap (all "
    "tasks of a meta-batch in one torch.func call, also used to evaluate; same "
    "meta-gradient). Default: l2l.",
)
@click.option(
    "--init-from",
    metavar="RUN",
    help="Start from the weights of a trained run (a run directory: its best.pt; or a "
    "checkpoint) of the same algorithm and network instead of a random initialisation. "
    "A head of other ways keeps this run's random initialisation, so a 20-way run can "
    "start from a 5-way model. Recorded in config.json and in evaluation rows (init_from).",
)
@click.option(
    "--test-ways",
    type=int,
    help="Ways of validation/test episodes. Default: 5 (ProtoNet), the training ways (the others).",
)
@click.option("--test-shots", type=int, help="Shots of validation/test episodes. Default: --shots.")
@click.option(
    "--test-queries",
    type=int,
    default=15,
    show_default=True,
    help="Query images per class in validation episodes (and the run's default at test).",
)
@click.option(
    "--val-every",
    type=int,
    default=100,
    show_default=True,
    help="Validate (and checkpoint) every N iterations, and at the run's end.",
)
@click.option(
    "--val-episodes",
    type=int,
    default=100,
    show_default=True,
    help="Validation episodes behind each validation accuracy (and best.pt's choice).",
)
@click.option(
    "--time-limit",
    type=float,
    help="Stop once the run's total training time (resumed sessions included) reaches "
    "this many minutes, validating and saving first; --resume continues it.",
)
@click.option(
    "--nproc",
    type=int,
    help="Train in NPROC processes on this machine (data parallel, launched through "
    "torchrun once the options, run directory and data are checked here; one GPU each on "
    "CUDA). Each iteration's episodes (the meta-batch of MAML, Meta-SGD, ANIL, which must "
    "divide by NPROC) are split across the processes and their gradients averaged: the "
    "same training as one process. ProtoNet, with one episode per iteration, is refused. "
    "For several machines run torchrun yourself (README).",
)
@data_options
@click.option("--quiet/--no-quiet", default=False, help="No progress bar.")
@with_algorithms
def train(
    algorithm,
    run_dir,
    resume_dir,
    overwrite,
    iterations,
    time_limit,
    threads,
    nproc,
    data_root,
    download,
    quiet,
    **options,
):
    """Meta-train an algorithm ({algorithms}) on Omniglot.

    Keeps the best checkpoint by validation accuracy (best.pt) and the latest (last.pt) in the
    run directory, with config.json and training logs: one row per validation (log.csv) and one
    per iteration (iterations.csv). Ctrl-C saves last.pt; continue with --resume RUN_DIR.
    An option that names the algorithms it applies to is refused for the others.

    \b
    Several processes (data parallel; see --nproc):
      torchrun --standalone --nproc_per_node 2 -m fewshot_cli train maml --out runs/m
    """
    from fewshot_cli.run import distributed
    from fewshot_cli.run.config import TrainConfig, set_threads
    from fewshot_cli.run.training import TrainingInterrupted
    from fewshot_cli.run.training import train as run_training

    set_threads(threads)
    if bool(run_dir) == bool(resume_dir):
        raise FewshotError("give exactly one of --out RUN_DIR (a new run) or --resume RUN_DIR")
    if overwrite and resume_dir:
        raise FewshotError(
            "--overwrite starts a new run and --resume continues one: give one of them"
        )
    if time_limit is not None and time_limit <= 0:
        raise FewshotError(f"--time-limit must be positive (got {time_limit})")
    if options["split_dir"] is not None:
        options["split_dir"] = str(options["split_dir"])
    if resume_dir:
        from click.core import ParameterSource

        from fewshot_cli.run.checkpoint import read_config
        from fewshot_cli.run.config import resume_config

        # The run's own configuration goes on; options given here may change its length and
        # device only (a differing --lr, --ways... is refused).
        context = click.get_current_context()
        given = {
            name: value
            for name, value in {**options, "iterations": iterations}.items()
            if context.get_parameter_source(name)
            in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        }
        config = resume_config(read_config(resume_dir), {"algorithm": algorithm, **given})
    else:
        config = TrainConfig(
            algorithm=algorithm, iterations=1000 if iterations is None else iterations, **options
        )
    if data_root:
        config.data_root = str(data_root)
    parallel = distributed.from_env()
    if distributed.needs_launch(nproc, parallel):
        from fewshot_cli.run.training import preflight

        # Everything the processes would refuse is refused here, once, before any starts.
        preflight(
            config, resume_dir or run_dir, bool(resume_dir), overwrite, nproc, download, not quiet
        )
        # Under torchrun these same arguments find WORLD_SIZE set and train.
        argv = click.get_current_context().find_root().obj["argv"]
        return distributed.launch(nproc, distributed.without_nproc(argv))
    # train() checks the configuration, then loads the data.
    with distributed.joined(parallel):
        try:
            result = run_training(
                config,
                resume_dir or run_dir,
                resume=bool(resume_dir),
                progress=not quiet,
                download=download,
                parallel=parallel,
                max_seconds=time_limit * 60 if time_limit is not None else None,
                overwrite=overwrite,
            )
        except TrainingInterrupted as exc:
            if parallel is not None and not parallel.main:
                return 128 + exc.signum  # rank 0 says it
            raise
        except distributed.RankZeroError:
            return 2  # rank 0's own error, which rank 0 says
    if parallel is not None and not parallel.main:
        return None
    summary = (
        f"best validation accuracy {result.best_val_accuracy:.2%}, {result.seconds:.0f} s; "
        f"checkpoints in {result.run_dir}"
    )
    if result.time_limited:
        click.echo(
            f"time limit reached: stopped after {result.iterations} of "
            f"{result.planned_iterations} iterations, {summary}; continue with "
            f"'fewshot train {algorithm} --resume {result.run_dir}' and a larger "
            f"--time-limit (it counts the run's total time) or none"
        )
    else:
        click.echo(f"done: {result.iterations} iterations, {summary}")


@cli.command(name="eval")
@config_option
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the result as one row to this CSV (created with a header if absent). "
    "Unlike predict --csv, which replaces its file, rows accumulate.",
)
@click.option("--ways", type=int, help="Default: the run's test ways.")
@click.option("--shots", type=int, help="Default: the run's test shots.")
@click.option("--queries", type=int, help="Default: the run's test queries.")
@click.option(
    "--episodes", type=int, default=600, show_default=True, help="Number of test episodes."
)
@click.option(
    "--part",
    type=click.Choice(PARTS),
    default="test",
    show_default=True,
    help="Split part to draw episodes from (the run's split).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Episode seed: the same seed gives the same episodes for every model.",
)
@click.option(
    "--bn-mode",
    type=click.Choice(["auto", *BN_MODES]),
    default="auto",
    show_default=True,
    help="BatchNorm at test, as in predict. "
    + " ".join(f"{mode}: {text}." for mode, text in BN_MODE_HELP.items())
    + " auto: running for ProtoNet, batch for the others (each paper's). Recorded in the CSV.",
)
@click.option(
    "--inner-steps",
    type=int,
    help="MAML, Meta-SGD, ANIL: adaptation steps at test. Default: the run's test inner steps.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda, cuda:1...",
)
@click.option(
    "--threads",
    type=int,
    metavar="N",
    help="Let torch use at most N CPU threads (to share a machine). Default: torch's "
    "own choice, all cores.",
)
@data_options
@click.option("--quiet/--no-quiet", default=False, help="No progress bar.")
def eval_(
    run,
    csv_path,
    ways,
    shots,
    queries,
    episodes,
    part,
    seed,
    bn_mode,
    inner_steps,
    device,
    threads,
    data_root,
    download,
    quiet,
):
    """Evaluate a trained run (directory or checkpoint) on seeded test episodes.

    Prints mean accuracy and the 95% confidence interval (1.96 x std / sqrt(episodes)) and, with
    --csv, appends one row describing the run, the protocol and the result.
    """
    from fewshot_cli.data.source import load_omniglot
    from fewshot_cli.run.config import ONE_WAY, set_threads
    from fewshot_cli.run.evaluation import evaluate_run
    from fewshot_cli.run.results import format_accuracy

    set_threads(threads)
    if ways is not None and ways < 2:
        raise FewshotError(f"--ways must be at least 2 (got {ways}): {ONE_WAY}")
    for name, value in (("shots", shots), ("queries", queries)):
        if value is not None and value < 1:
            raise FewshotError(f"--{name} must be at least 1 (got {value})")
    if episodes < 2:
        raise FewshotError(
            f"--episodes must be at least 2, for a confidence interval (got {episodes})"
        )
    omniglot = (
        load_omniglot(data_root, download=download, progress=not quiet) if data_root else None
    )
    _, row = evaluate_run(
        run,
        csv_path,
        ways,
        shots,
        queries,
        episodes,
        part,
        seed,
        bn_mode,
        inner_steps,
        data=omniglot,
        device=device,
        progress=not quiet,
        notice=lambda message: click.echo(f"note: {message}"),
    )
    click.echo(
        f"{row['algorithm']} {row['test_ways']}-way {row['test_shots']}-shot on "
        f"{row['split']}/{part}, {episodes} episodes, BatchNorm {row['bn_mode']}: "
        f"{format_accuracy(row)}" + (f" (row appended to {csv_path})" if csv_path else "")
    )


@cli.command()
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
@click.option(
    "--bn-mode",
    type=click.Choice(["auto", *BN_MODES]),
    default="auto",
    show_default=True,
    help="BatchNorm, as in eval. "
    + " ".join(f"{mode}: {text}." for mode, text in BN_MODE_HELP.items())
    + " auto: running for ProtoNet, support for the others. The mode used is noted and "
    "written in the CSV's bn_mode column.",
)
@click.option(
    "--strict/--no-strict",
    default=False,
    help="Stop at an unreadable image instead of skipping it with a warning.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda, cuda:1...",
)
@click.option(
    "--threads",
    type=int,
    metavar="N",
    help="Let torch use at most N CPU threads (to share a machine). Default: torch's "
    "own choice, all cores.",
)
def predict(
    run, support_dir, query_path, csv_path, steps, invert, bn_mode, strict, device, threads
):
    """Classify your own images from a handful of labelled examples.

    Images of any common format, size and colour are converted as in training (grayscale,
    LANCZOS-resized to 28x28, see --invert). ProtoNet compares each query with the mean embedding
    of each class; MAML, Meta-SGD and ANIL first adapt (a copy of) the model on the examples.
    Prints one row per query image: its path, the predicted label and the probability of every
    class.

    \b
    Example:
      fewshot predict runs/proto --support examples/ --query photos/ --csv predictions.csv
    """
    from fewshot_cli.predict import format_table, write_csv
    from fewshot_cli.predict import predict as run_predict
    from fewshot_cli.run.config import set_threads
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


@cli.command()
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

    columns = [c.strip() for item in by for c in item.split(",") if c.strip()]
    text = aggregate_files(csv_files, columns or None, fmt, warn=warn, out=out)
    click.echo(f"written to {out}" if out else text, nl=bool(out))


@cli.command()
@config_option
@click.option(
    "--budget",
    type=click.Choice(list(BUDGETS)),
    default="quick",
    show_default=True,
    help="quick: 5-way 1-shot only, short trainings, 100 test episodes (minutes on 2 CPU "
    "cores). cpu: the whole grid in about 3 hours on 2 cores (shorter trainings; about 2.3 "
    "with --jobs 2). "
    "paper: the papers' training lengths and protocols (for a GPU).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/reproduce"),
    show_default=True,
    help="Folder for eval.csv and runs/; rerun with the same folder to resume.",
)
@click.option(
    "--algorithms",
    "algorithms",
    multiple=True,
    type=ChoiceList(ALGORITHMS),
    callback=flatten,
    help="Only these algorithms, comma-separated or repeated, e.g. maml,protonet. "
    "Default: all of them.",
)
@click.option(
    "--cells",
    "cells",
    multiple=True,
    metavar="CELLS",
    help="Only these cells, WAYSwSHOTSs, comma-separated or repeated, e.g. 5w1s,20w5s. "
    "Default: the budget's (quick: 5w1s; others: 5w1s 5w5s 20w1s 20w5s).",
)
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    help="One split for every algorithm. Default: each paper's (MAML, Meta-SGD, ANIL: "
    "random with rotation augmentation; ProtoNet: vinyals).",
)
@click.option(
    "--split-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the Vinyals split files. Default: <data root>/splits/vinyals.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(COMPARISON_FORMATS),
    default="table",
    show_default=True,
    help="Format of the final comparison table.",
)
@click.option(
    "--seeds",
    type=int,
    default=1,
    show_default=True,
    help="Train and test every cell with training seeds 0..N-1, each in its own run "
    "directory (seed 0 keeps the one-seed name, e.g. runs/maml-5w1s; the others "
    "add -seedS) and with its own rows. The table shows the mean ± 95% CI across "
    "seeds and the number of runs.",
)
@click.option("--seed", type=int, help="Only this training seed (what the commands of --plan use).")
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Run up to J trainings at once, each in a worker process with cores/J torch "
    "threads (one GPU each on a machine with several GPUs). Ctrl-C stops them all "
    "after each saves its last.pt; rerunning resumes.",
)
@click.option(
    "--plan/--no-plan",
    default=False,
    help="Print one self-contained command per training (a cell at one seed; cells "
    "that share a model share its command), each writing its own CSV under "
    "OUT/csv/, and exit. Run them with any scheduler (a SLURM array, a loop over "
    "machines sharing OUT), then merge them with --report. A training that starts "
    "from another cell's model (the cpu budget's MAML cells start from its 5w1s) "
    "comes after that one's command and refuses to start before it has finished.",
)
@click.option(
    "--report/--no-report",
    default=False,
    help="Train nothing: list the tests without a result yet and print the table of "
    "every CSV in OUT (eval.csv and csv/*.csv).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the rows here instead of OUT/eval.csv (--plan's commands use "
    "OUT/csv/<training>.csv, which --report reads).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda, cuda:1...",
)
@click.option(
    "--threads",
    type=int,
    metavar="N",
    help="Let torch use at most N CPU threads (to share a machine). Default: torch's "
    "own choice, all cores.",
)
@data_options
@click.option("--quiet/--no-quiet", default=False, help="No progress bars.")
@with_algorithms
def reproduce(
    budget,
    out_dir,
    algorithms,
    cells,
    split,
    split_dir,
    fmt,
    seeds,
    seed,
    jobs,
    plan,
    report,
    csv_path,
    device,
    threads,
    data_root,
    download,
    quiet,
):
    """Train and test each algorithm on the Omniglot grid; compare with the papers.

    Each cell (5/20-way, 1/5-shot) of each algorithm ({algorithms}) is trained with its paper's
    protocol, tested (600 episodes for MAML, Meta-SGD and ANIL, 1000 for ProtoNet, fewer with
    --budget quick) and appended to OUT/eval.csv; run directories go to OUT/runs/. Cells
    already in OUT's CSVs are skipped and interrupted trainings resume, so rerunning the same
    command continues a reproduction. A budget may start a cell's training from another cell's
    model (cpu: MAML's 5w5s, 20w1s and 20w5s from its 5w1s), which then trains first. Finally
    prints our accuracy per cell next to the published one.

    \b
    Several seeds, 2 trainings at a time; or the same through a scheduler:
      fewshot reproduce --budget cpu --out grid --seeds 3 --jobs 2
      fewshot reproduce --budget cpu --out grid --seeds 3 --plan > commands.txt
      fewshot reproduce --budget cpu --out grid --seeds 3 --report
    """
    from fewshot_cli.report.comparison import comparison, format_comparison
    from fewshot_cli.report.plan import plan_commands, report_command
    from fewshot_cli.run.config import set_threads
    from fewshot_cli.run.reproduce import reproduce as run_reproduction

    set_threads(threads)
    if plan and report:
        raise FewshotError(
            "give one of --plan (print the commands) and --report (merge their results)"
        )
    if seed is not None and seeds != 1:
        raise FewshotError("give --seeds N (seeds 0..N-1) or --seed S (that seed alone), not both")
    if seed is not None and seed < 0:
        raise FewshotError(f"--seed must be 0 or more (got {seed})")
    cell_names = [c.strip() for item in cells for c in item.split(",") if c.strip()]
    chosen = [seed] if seed is not None else seeds
    if plan:
        # A data folder from $FEWSHOT_DATA stays out of the commands: each machine has its own.
        given = click.get_current_context().get_parameter_source("data_root")
        root = data_root if given == click.core.ParameterSource.COMMANDLINE else None
        for line in plan_commands(
            out_dir,
            budget,
            algorithms or None,
            cell_names or None,
            split,
            split_dir,
            chosen,
            root,
            device,
        ):
            click.echo(line)
        click.echo(
            "# then, once they have all run: "
            + report_command(out_dir, budget, algorithms, cell_names, split, seeds),
            err=True,
        )
        return
    csvs = run_reproduction(
        out_dir,
        budget,
        algorithms or None,
        cell_names or None,
        split,
        split_dir,
        data_root=data_root,
        download=download,
        device=device,
        progress=not quiet,
        echo=click.echo,
        seeds=chosen,
        jobs=jobs,
        csv_path=csv_path,
        report=report,
    )
    click.echo("\n" + format_comparison(comparison(csvs, warn=warn), fmt), nl=False)


@cli.group()
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
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("curves.png"),
    show_default=True,
    help="The figure to write: .png, .pdf or .svg (the format follows the extension).",
)
def curves(run_dirs, out):
    """Training loss and validation accuracy of runs, against iterations and wall-clock time.

    One colour per run. The loss panel draws each iteration's training loss (faint) and its
    moving average from the run directory's iterations.csv; the accuracy panels draw its
    log.csv (one row per validation), against iterations and against seconds of training. A
    run without a validation row yet shows its loss only, or is left out without either, with
    a warning.
    """
    from fewshot_cli.report.plots import plot_curves

    click.echo(f"written to {plot_curves(run_dirs, out, warn=warn)}")


@plot.command()
@config_option
@click.argument("csv_files", nargs=-1, required=True, metavar="CSV...")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("accuracy.png"),
    show_default=True,
    help="The figure to write: .png, .pdf or .svg (the format follows the extension).",
)
def accuracy(csv_files, out):
    """Test accuracy per grid cell with 95% CI error bars, beside the published numbers.

    CSV... are evaluation CSVs or glob patterns. Rows are grouped as fewshot aggregate groups
    them, by the whole protocol (split and part, backbone, training length, BatchNorm mode...):
    one bar per protocol, labelled with what sets it apart, never an average of two.
    """
    from fewshot_cli.report.plots import plot_accuracy

    click.echo(f"written to {plot_accuracy(csv_files, out, warn=warn)}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turn every expected failure into one line and exit code 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        # obj: the arguments as given, for `train --nproc` to relaunch itself under torchrun.
        code = cli.main(args=argv, prog_name="fewshot", standalone_mode=False, obj={"argv": argv})
    except FewshotError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.ClickException as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "fewshot"
        message = " ".join(exc.format_message().split())  # Click wraps choices over lines
        click.echo(f"error: {message} (see '{command} --help')", err=True)
        return 2
    except TrainingInterrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        return 128 + exc.signum  # the shell's code for the signal: 130 Ctrl-C, 143 SIGTERM
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
