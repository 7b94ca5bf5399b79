"""``reproduce --plan``: a reproduction as independent shell commands, for any scheduler.

Each command trains and tests one training of the plan (one cell at one training seed; cells
served by one model, as ProtoNet's 5- and 20-way cells of a shot count, share their command,
since two commands must never train one run directory at once). It is a ``fewshot reproduce``
narrowed to that training (``--algorithms``, ``--cells``, ``--seed``) and writes its rows to its
own CSV, ``OUT/csv/<training>.csv``, so commands never contend for a file, run on any machine
that shares ``OUT`` (a SLURM array, a shell loop over machines), can be rerun (a finished one
does nothing, an interrupted one resumes), and ``reproduce --report`` (or ``aggregate``) merges
the CSVs into the table ``reproduce`` itself prints. A training that starts from another
training's model (``BudgetSettings.starts_from``) comes after it in the list and must run once
that one has finished: started earlier, its command stops at once with a one-line error.

Example:
    >>> for line in plan_commands("grid", "cpu", seeds=3):
    ...     print(line)
    fewshot reproduce --budget cpu --out grid --algorithms maml --cells 5w1s --seed 0 --csv grid/csv/maml-5w1s.csv
    ...
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

from fewshot_cli.run.budgets import Budget, get_budget
from fewshot_cli.run.grid import PLAN_CSVS, plan_trainings, seed_list

PROGRAM = "fewshot"


def plan_commands(
    out_dir: str | Path,
    budget: str | Budget = "quick",
    algorithms: Iterable[str] | None = None,
    cells: Iterable[str] | None = None,
    split: str | None = None,
    split_dir: str | Path | None = None,
    seeds: int | Iterable[int] = 1,
    data_root: str | Path | None = None,
    device: str = "auto",
    program: str = PROGRAM,
) -> list[str]:
    """One shell command per training of the reproduction, every seed, in plan order.

    Args:
        out_dir, budget, algorithms, cells, split, split_dir, seeds: as ``reproduce``.
        data_root, device: passed on when given (else each machine's own default applies).
        program: how the commands call fewshot.

    Example::

        plan_commands("grid", "quick", seeds=2)[2]
        # 'fewshot reproduce --budget quick --out grid --algorithms maml --cells 5w1s --seed 1 --csv grid/csv/maml-5w1s-seed1.csv'
    """
    budget = get_budget(budget)
    out_dir = Path(out_dir)
    commands = []
    # Planned as if nothing were done: the plan does not depend on what already ran.
    for training in plan_trainings(
        out_dir, budget, algorithms, cells, split, seed_list(seeds), csv_paths=[]
    ):
        args = [
            program,
            "reproduce",
            "--budget",
            budget.name,
            "--out",
            str(out_dir),
            "--algorithms",
            training.config.algorithm,
            "--cells",
            ",".join(test.cell.name for test in training.tests),
            "--seed",
            str(training.config.seed),
            "--csv",
            str(out_dir / PLAN_CSVS / f"{training.name}.csv"),
        ]
        args += ["--dataset", budget.dataset] if budget.dataset != "omniglot" else []
        args += ["--split", split] if split else []
        args += ["--split-dir", str(split_dir)] if split_dir else []
        args += ["--data-root", str(data_root)] if data_root else []
        args += ["--device", device] if device != "auto" else []
        commands.append(shlex.join(args))
    return commands


def report_command(
    out_dir: str | Path,
    budget: str | Budget = "quick",
    algorithms: Iterable[str] | None = None,
    cells: Iterable[str] | None = None,
    split: str | None = None,
    seeds: int = 1,
    program: str = PROGRAM,
) -> str:
    """The ``reproduce --report`` command that merges what ``plan_commands`` wrote.

    Example:
        >>> report_command("grid", "cpu", seeds=3)
        'fewshot reproduce --report --budget cpu --out grid --seeds 3'
    """
    budget = get_budget(budget)
    args = [program, "reproduce", "--report", "--budget", budget.name, "--out", str(out_dir)]
    args += ["--dataset", budget.dataset] if budget.dataset != "omniglot" else []
    for algorithm in algorithms or ():
        args += ["--algorithms", algorithm]
    args += ["--cells", ",".join(cells)] if cells else []
    args += ["--split", split] if split else []
    args += ["--seeds", str(seeds)] if seeds != 1 else []
    return shlex.join(args)
