"""``fewshot train``: meta-train an algorithm, or resume a run (in one process or under torchrun)."""

from __future__ import annotations

from pathlib import Path

import click

from fewshot_cli.algorithms.registry import NAMES as ALGORITHMS
from fewshot_cli.choices import BACKBONES, CUDA_GRAPH_MODES, ENGINES, PRECISIONS
from fewshot_cli.cli.options import (
    config_option,
    data_options,
    dataset_options,
    device_option,
    given,
    quiet_option,
    split_options,
    threads_option,
    with_algorithms,
)
from fewshot_cli.errors import FewshotError

# The options of the MAML family, each with its help after this prefix.
FAMILY = "MAML, Meta-SGD, ANIL: "


@click.command()
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
    "where a kill left that one further) with its own configuration. --iterations (to extend "
    "it), --device, --cuda-graph, --time-limit and --quiet may be given; another option that "
    "differs from the run's is refused. Extended, a run keeps the best.pt of a run as long "
    "from the start: a validation made only because the run ended off the --val-every grid no "
    "longer competes.",
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
@dataset_options
@split_options
@click.option(
    "--rotations/--no-rotations",
    default=False,
    help="Augment training classes with random 90-degree rotations (lake/random splits).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of weights and episodes."
)
@device_option
@threads_option
@click.option(
    "--backbone",
    type=click.Choice(BACKBONES),
    help="conv4: max-pooling blocks (the ProtoNet paper's); conv4-strided: stride-2 "
    "convolutions (the MAML paper's). Default: each algorithm's paper.",
)
@click.option(
    "--filters",
    type=int,
    help="Filters of each Conv-4 convolution. Default: 64; 32 for MAML, Meta-SGD and ANIL "
    "on mini-imagenet and cifar-fs (Finn et al.'s network).",
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
    help="Halve the learning rate every N iterations (0: never). Default: 2000 (ProtoNet), "
    "0 (the others).",
)
@click.option(
    "--inner-lr",
    type=float,
    help=FAMILY + "inner learning rate (Meta-SGD: its initial value). Default: 0.4 (5-way), "
    "0.1 (20-way).",
)
@click.option(
    "--inner-steps",
    type=int,
    help=FAMILY + "inner steps in training. Default: 1 (5-way), 5 (20-way).",
)
@click.option(
    "--test-inner-steps",
    type=int,
    help=FAMILY + "inner steps at test. Default: 3 (5-way), 5 (20-way).",
)
@click.option(
    "--meta-batch",
    type=int,
    help=FAMILY + "tasks per meta-update. Default: 32 (5-way), 16 (20-way).",
)
@click.option(
    "--first-order/--no-first-order",
    default=False,
    help=FAMILY + "first order (no second derivatives). --no-first-order: second "
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
    "--cuda-graph",
    type=click.Choice(CUDA_GRAPH_MODES),
    default="auto",
    show_default=True,
    help="Capture the vmap engine's training step as one CUDA graph; auto: on a CUDA device "
    "with --engine vmap, one process.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="TF32 for cuBLAS and cuDNN on CUDA, or full float32.",
)
@click.option(
    "--init-from",
    metavar="RUN",
    help="Start from the weights of a trained run (a run directory: its best.pt; a "
    "checkpoint; or pretrained:NAME, a model that ships with fewshot_cli: fewshot models "
    "lists them) of the same algorithm and network instead of a random initialisation. "
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
@quiet_option
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
    """Meta-train an algorithm ({algorithms}) on a dataset (--dataset: Omniglot by default).

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
        from fewshot_cli.run.checkpoint import read_config
        from fewshot_cli.run.config import resume_config

        # The run goes on with its own configuration, changed only where the user says so.
        changes = given({**options, "iterations": iterations})
        config = resume_config(read_config(resume_dir), {"algorithm": algorithm, **changes})
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
