"""The ``fewshot`` command line: parses options and calls the library, nothing more.

Every problem with the user's input ends in one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fewshot_cli import __version__
from fewshot_cli.errors import FewshotError

DATA_HELP = ("Folder holding images_background/ and images_evaluation/ (an extracted copy of the "
             "official zips), or where --download puts them. Default: $FEWSHOT_DATA, else "
             "~/.cache/fewshot.")


def data_options(func):
    """Options every command that reads Omniglot shares."""
    options = [
        click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
                     envvar="FEWSHOT_DATA", default=None, help=DATA_HELP),
        click.option("--download/--no-download", default=False, show_default=True,
                     help="Download Omniglot (and the Vinyals split files) when missing."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def split_options(func):
    options = [
        click.option("--split", type=click.Choice(["lake", "vinyals", "random"]), default="lake",
                     show_default=True,
                     help="lake: background alphabets train, evaluation alphabets test. vinyals: "
                          "the 1028/172/423-character split with rotations as classes. random: a "
                          "seeded 1100/100/423 character split (MAML protocol)."),
        click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of the Vinyals split files (train.txt, val.txt, test.txt, "
                          "trainval.txt). Default: <data root>/splits/vinyals."),
        click.option("--split-seed", type=int, default=0, show_default=True,
                     help="Seed of the lake validation alphabets and of the random split."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fewshot")
def cli():
    """Few-shot image classification on Omniglot: MAML and Prototypical Networks.

    \b
    Typical session:
      fewshot data --data-root ~/omniglot
      fewshot train protonet --out runs/proto --iterations 1000
      fewshot eval runs/proto --csv results.csv --episodes 600
      fewshot aggregate results.csv
    """


@cli.command()
@data_options
@click.option("--split", "splits", multiple=True, type=click.Choice(["lake", "vinyals", "random"]),
              help="Split(s) to summarise (repeatable). Default: all that are available.")
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the Vinyals split files. Default: <data root>/splits/vinyals.")
@click.option("--split-seed", type=int, default=0, show_default=True)
def data(data_root, download, splits, split_dir, split_seed):
    """Prepare and verify Omniglot, then print the size of every split part.

    Locates (or with --download fetches) the images, builds the 28x28 tensor cache on first use,
    and prints alphabets, characters, classes after rotation and images for each split part.
    """
    from fewshot_cli.source import FULL_IMAGE_COUNT, load_omniglot
    from fewshot_cli.splits import make_split
    from fewshot_cli.summary import split_summary

    omniglot = load_omniglot(data_root, download=download, progress=True)
    count = len(omniglot.labels)
    click.echo(f"Omniglot at {omniglot.root}: {count} images of {len(omniglot.characters)} "
               f"characters in {len(set(omniglot.alphabets))} alphabets"
               + ("" if count == FULL_IMAGE_COUNT else f" (the full set has {FULL_IMAGE_COUNT})"))
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
@click.argument("algorithm", type=click.Choice(["maml", "protonet"]))
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory for config.json, best.pt, last.pt and log.csv.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the interrupted run in this directory from its last.pt "
                   "(its configuration is reused; --iterations may extend it).")
@click.option("--ways", type=int, help="Classes per training episode. Default: 5 (MAML), 60 (ProtoNet).")
@click.option("--shots", type=int, default=1, show_default=True, help="Support images per class.")
@click.option("--queries", type=int, help="Query images per class. Default: 15 (MAML), 5 (ProtoNet).")
@click.option("--iterations", type=int,
              help="Meta-iterations (MAML) or episodes (ProtoNet). Default: 1000.")
@split_options
@click.option("--rotations", is_flag=True,
              help="Augment training classes with random 90-degree rotations (lake/random splits).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights and episodes.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:1...")
@click.option("--backbone", type=click.Choice(["conv4", "conv4-strided"]), default="conv4",
              show_default=True, help="conv4: max-pooling blocks; conv4-strided: the MAML paper's variant.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (MAML: meta learning rate).")
@click.option("--lr-halve-every", type=int,
              help="Halve the learning rate every N iterations (0: never). Default: 2000 (ProtoNet), 0 (MAML).")
@click.option("--inner-lr", type=float, help="MAML inner learning rate. Default: 0.4 (5-way), 0.1 (20-way).")
@click.option("--inner-steps", type=int, help="MAML inner steps in training. Default: 1 (5-way), 5 (20-way).")
@click.option("--test-inner-steps", type=int, help="MAML inner steps at test. Default: 3 (5-way), 5 (20-way).")
@click.option("--meta-batch", type=int, help="MAML tasks per meta-update. Default: 32 (5-way), 16 (20-way).")
@click.option("--first-order", is_flag=True, help="First-order MAML (no second derivatives).")
@click.option("--test-ways", type=int, help="Ways of validation/test episodes. Default: 5 (ProtoNet), training ways (MAML).")
@click.option("--test-shots", type=int, help="Shots of validation/test episodes. Default: --shots.")
@click.option("--test-queries", type=int, default=15, show_default=True)
@click.option("--val-every", type=int, default=100, show_default=True, help="Validate (and checkpoint) every N iterations.")
@click.option("--val-episodes", type=int, default=100, show_default=True)
@click.option("--time-limit", type=float,
              help="Stop after this many minutes (validating and saving first); --resume continues.")
@data_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(algorithm, run_dir, resume_dir, iterations, time_limit, data_root, download, quiet,
          **options):
    """Meta-train MAML or ProtoNet on Omniglot.

    Keeps the best checkpoint by validation accuracy (best.pt) and the latest (last.pt) in the
    run directory, with config.json and a training log (log.csv). Ctrl-C saves last.pt; continue
    with --resume RUN_DIR.
    """
    from fewshot_cli.config import TrainConfig
    from fewshot_cli.source import load_omniglot
    from fewshot_cli.training import train as run_training

    if bool(run_dir) == bool(resume_dir):
        raise FewshotError("give exactly one of --out RUN_DIR (a new run) or --resume RUN_DIR")
    options = {k: v for k, v in options.items() if k != "split_dir" or v is not None}
    if options.get("split_dir"):
        options["split_dir"] = str(options["split_dir"])
    config = TrainConfig(algorithm=algorithm, iterations=iterations or 1000,
                         data_root=str(data_root) if data_root else None, **options)
    if resume_dir:
        from fewshot_cli.checkpoint import read_config
        stored = read_config(resume_dir)
        config = TrainConfig.from_dict({**stored, "algorithm": algorithm,
                                        "iterations": iterations or stored.get("iterations", 1000)})
    else:
        config.resolved()  # bad options fail before the data is loaded
    omniglot = load_omniglot(data_root or config.data_root, download=download, progress=not quiet)
    if time_limit is not None and time_limit <= 0:
        raise FewshotError(f"--time-limit must be positive (got {time_limit})")
    result = run_training(config, resume_dir or run_dir, resume=bool(resume_dir), data=omniglot,
                          progress=not quiet,
                          max_seconds=time_limit * 60 if time_limit is not None else None)
    click.echo(f"done: {result.iterations} iterations, best validation accuracy "
               f"{result.best_val_accuracy:.2%}, {result.seconds:.0f} s; checkpoints in {result.run_dir}")


@cli.command(name="eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append the result as one row to this CSV (created with a header if absent).")
@click.option("--ways", type=int, help="Default: the run's test ways.")
@click.option("--shots", type=int, help="Default: the run's test shots.")
@click.option("--queries", type=int, help="Default: the run's test queries.")
@click.option("--episodes", type=int, default=600, show_default=True, help="Number of test episodes.")
@click.option("--part", type=click.Choice(["test", "val", "train", "trainval"]), default="test",
              show_default=True, help="Split part to draw episodes from (the run's split).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Episode seed: the same seed gives the same episodes for every model.")
@click.option("--bn-mode", type=click.Choice(["auto", "batch", "running"]), default="auto",
              show_default=True,
              help="BatchNorm at test: batch statistics of each episode (transductive, MAML's "
                   "reference) or running statistics from training. auto: batch for MAML, "
                   "running for ProtoNet. Recorded in the CSV.")
@click.option("--inner-steps", type=int, help="MAML adaptation steps at test. Default: the run's test inner steps.")
@click.option("--device", default="auto", show_default=True)
@data_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_(run, csv_path, ways, shots, queries, episodes, part, seed, bn_mode, inner_steps, device,
          data_root, download, quiet):
    """Evaluate a trained run (directory or checkpoint) on seeded test episodes.

    Prints mean accuracy and the 95% confidence interval (1.96 x std / sqrt(episodes)) and, with
    --csv, appends one row describing the run, the protocol and the result.
    """
    from fewshot_cli.evaluation import evaluate_run
    from fewshot_cli.source import load_omniglot

    for name, value in (("ways", ways), ("shots", shots), ("queries", queries),
                        ("episodes", episodes)):
        if value is not None and value < 1:
            raise FewshotError(f"--{name} must be at least 1 (got {value})")
    omniglot = load_omniglot(data_root, download=download, progress=not quiet) if data_root else None
    result, row = evaluate_run(run, csv_path, ways, shots, queries, episodes, part, seed, bn_mode,
                               inner_steps, data=omniglot, device=device, progress=not quiet)
    click.echo(f"{row['algorithm']} {row['test_ways']}-way {row['test_shots']}-shot on "
               f"{row['split']}/{part}, {episodes} episodes, BatchNorm {row['bn_mode']}: "
               f"{result.mean:.2%} ± {result.ci95:.2%}"
               + (f" (row appended to {csv_path})" if csv_path else ""))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turn every expected failure into one line and exit code 2."""
    from fewshot_cli.training import TrainingInterrupted

    try:
        code = cli.main(args=argv, prog_name="fewshot", standalone_mode=False)
    except FewshotError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.ClickException as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "fewshot"
        click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        return 2
    except TrainingInterrupted as exc:
        click.echo(f"interrupted: {exc}", err=True)
        return 130
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
