"""``fewshot eval``: test a trained model on seeded episodes, optionally appending a CSV row."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.choices import PARTS
from fewshot_cli.cli.options import (
    bn_mode_option,
    config_option,
    data_options,
    device_option,
    note,
    quiet_option,
    threads_option,
)
from fewshot_cli.errors import FewshotError


@click.command(name="eval")
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
@bn_mode_option(
    "BatchNorm at test, as in predict.",
    "auto: running for ProtoNet, batch for the others (each paper's). Recorded in the CSV.",
)
@click.option(
    "--inner-steps",
    type=int,
    help="MAML, Meta-SGD, ANIL: adaptation steps at test. Default: the run's test inner steps.",
)
@device_option
@threads_option
@data_options
@quiet_option
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
    --csv, appends one row describing the run, the protocol and the result. RUN may also be
    pretrained:NAME, a model that ships with fewshot_cli (fewshot models lists them).
    """
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
        data_root=data_root,
        # $FEWSHOT_DATA names one folder (Omniglot's, usually): another dataset's run keeps its own.
        root_from_env=click.get_current_context().get_parameter_source("data_root")
        == click.core.ParameterSource.ENVIRONMENT,
        download=download,
        device=device,
        progress=not quiet,
        notice=note,
    )
    click.echo(
        f"{row['algorithm']} {row['test_ways']}-way {row['test_shots']}-shot on "
        f"{row['split']}/{part}, {episodes} episodes, BatchNorm {row['bn_mode']}: "
        f"{format_accuracy(row)}" + (f" (row appended to {csv_path})" if csv_path else "")
    )
