"""``fewshot reproduce``: train and test the grid of cells, or plan and report it for a scheduler."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.algorithms.registry import NAMES as ALGORITHMS
from fewshot_cli.choices import BUDGETS, COMPARISON_FORMATS, SPLITS
from fewshot_cli.cli.options import (
    ChoiceList,
    comma_list,
    config_option,
    data_options,
    device_option,
    flatten,
    quiet_option,
    split_dir_option,
    threads_option,
    warn,
    with_algorithms,
)
from fewshot_cli.data.registry import NAMES as DATASETS
from fewshot_cli.errors import FewshotError


@click.command()
@config_option
@click.option(
    "--budget",
    type=click.Choice(list(BUDGETS)),
    default="quick",
    show_default=True,
    help="quick: 5-way 1-shot only, short trainings, 100 test episodes (minutes on 2 CPU "
    "cores). cpu: the whole grid in about 3 hours on 2 cores (shorter trainings; about 2.3 "
    "with --jobs 2). paper: the papers' training lengths and protocols (for a GPU).",
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
    "--dataset",
    type=click.Choice([n for n in DATASETS if n != "folder"]),
    default="omniglot",
    show_default=True,
    help="omniglot: the 5/20-way grid. mini-imagenet, cifar-fs: the 5-way 1- and 5-shot "
    "cells with each paper's mini-ImageNet settings (84x84 RGB; CIFAR-FS at 32x32 with the "
    "same settings, no published numbers).",
)
@click.option(
    "--split",
    help="One split for every algorithm. Default: each paper's on Omniglot (MAML, "
    f"Meta-SGD, ANIL: random with rotation augmentation; ProtoNet: vinyals; choices "
    f"{', '.join(SPLITS)}), the dataset's own on the others.",
)
@split_dir_option
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
    "threads, or --threads/J (one GPU each on a machine with several GPUs). Results "
    "depend on a worker's thread count: --threads fixes it on any machine. Ctrl-C stops "
    "them all after each saves its last.pt; rerunning resumes.",
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
@device_option
@threads_option
@data_options
@quiet_option
@with_algorithms
def reproduce(
    budget,
    out_dir,
    algorithms,
    cells,
    dataset,
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
    """Train and test each algorithm on the Omniglot grid (or --dataset's); compare with the papers.

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
    from fewshot_cli.run.budgets import get_budget
    from fewshot_cli.run.config import set_threads
    from fewshot_cli.run.reproduce import reproduce as run_reproduction

    set_threads(threads)
    budget = get_budget(budget, dataset)
    if plan and report:
        raise FewshotError(
            "give one of --plan (print the commands) and --report (merge their results)"
        )
    if seed is not None and seeds != 1:
        raise FewshotError("give --seeds N (seeds 0..N-1) or --seed S (that seed alone), not both")
    if seed is not None and seed < 0:
        raise FewshotError(f"--seed must be 0 or more (got {seed})")
    cell_names = comma_list(cells)
    chosen = [seed] if seed is not None else seeds
    if plan:
        # A data folder from $FEWSHOT_DATA stays out of the commands: each machine has its own.
        given = click.get_current_context().get_parameter_source("data_root")
        root = data_root if given == click.core.ParameterSource.COMMANDLINE else None
        plan_args = (algorithms or None, cell_names or None, split, split_dir, chosen, root)
        for line in plan_commands(out_dir, budget, *plan_args, device):
            click.echo(line)
        then = report_command(out_dir, budget, algorithms, cell_names, split, seeds)
        click.echo(f"# then, once they have all run: {then}", err=True)
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
        threads=threads,
        csv_path=csv_path,
        report=report,
    )
    click.echo("\n" + format_comparison(comparison(csvs, warn=warn), fmt), nl=False)
