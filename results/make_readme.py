"""Write results/README.md from the evaluation CSVs and training logs in this folder.

Every number in the README comes from a file written by ``fewshot`` itself; this script only
lays them out beside the commands that produced them. Run from the project root:

    .venv/bin/python results/make_readme.py
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from fewshot_cli.report.aggregate import aggregate_files
from fewshot_cli.report.reproduce import comparison, format_comparison

RESULTS = Path(__file__).resolve().parent

SECTIONS = [
    (
        "cpu",
        "`cpu` budget: the whole grid on 2 CPU cores (MAML at its paper's network, schedule per cell)",
        "export FEWSHOT_DATA=../shared/data/omniglot OMP_NUM_THREADS=1\n"
        "# A and B side by side, one thread each (started in the second session of 2026-11-27,\n"
        "# resumed by the same commands in the third):\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w5s --quiet && \\\n"
        "  fewshot reproduce --budget cpu --out results/cpu --algorithms protonet --quiet\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 5w1s,5w5s --quiet && \\\n"
        "  fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w1s --quiet && \\\n"
        "  fewshot reproduce --budget cpu --out results/cpu --algorithms metasgd --algorithms anil --quiet\n"
        "# C and D (third session), after the 20w5s and 5w1s cells' budgets changed; their\n"
        "# former runs and rows were moved to results/schedule first:\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w5s --quiet\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 5w1s --quiet\n"
        "# E and F side by side (fourth session), after the 5w1s and 20w1s cells' budgets changed\n"
        "# again (former runs and rows moved to results/schedule first):\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 5w1s --threads 1 --quiet\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w1s --threads 1 --quiet\n"
        "# G (fifth session), after the budget changed again (the former MAML runs and rows moved\n"
        "# to results/schedule first): the 5w1s run of E, continued in place with\n"
        "# `fewshot train maml --resume results/cpu/runs/maml-5w1s --iterations 4500`, then 6000:\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 5w1s --threads 1 --quiet\n"
        "# then H and I side by side, each cell starting from the 5w1s model:\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w5s --threads 1 --quiet\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w1s --threads 1 --quiet && \\\n"
        "  fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 5w5s --threads 1 --quiet\n"
        "# J and K (sixth session), after the 20-way cells' budgets changed (the former runs and\n"
        "# rows moved to results/schedule first): the trial runs of results/schedule (sixth round),\n"
        "# trained by `fewshot train` with the cells' settings, copied in as the cells' runs and\n"
        "# tested by:\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w5s --threads 1 --quiet\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --cells 20w1s --threads 2 --quiet",
        "Issue 10's protocol. MAML: the paper's network and settings (strided Conv-4, BatchNorm "
        "without running statistics, second order), `random` split with rotation augmentation, "
        "meta-batch 16, 600 test episodes, and the schedule of results/schedule (fifth and sixth "
        "rounds): the 5w1s cell trains first, 6000 iterations with 5 training queries per class "
        "and Adam 3e-3 halved every 1000 (vmap engine); the other three cells start from its "
        "model (`--init-from`, the `init_from` column), with the l2l engine: 5w5s 1000 "
        "iterations (Adam 3e-3); 20w1s 4200 with 5 training queries per class (Adam 1e-3 halved "
        "every 1800) and 20w5s 1200 (Adam 1e-3), both adapting as the 5-way cells (inner lr "
        "0.4, one step in training, three at test; the paper: 0.1, five and five). The "
        "former MAML runs, each trained from scratch, are kept with their rows in "
        "results/schedule: 5w1s 3000 iterations 96.22% ± 0.36 (cpu-5w1s-3000), 5w5s 2000 "
        "98.42% ± 0.17 (cpu-5w5s-scratch-2000), 20w1s 1400 83.45% ± 0.37 "
        "(cpu-20w1s-scratch-1400), 20w5s 1000 first order 91.82% ± 0.20 "
        "(cpu-20w5s-scratch-first-order-1000), and before them the runs of the third and fourth "
        "rounds. The training times below are each run's own; a started cell's time does not "
        "include its source's. ProtoNet: `vinyals` split, 60-way training, 1500 episodes per "
        "shot count (one model per shot count serves both way counts), 1000 test episodes. "
        "Meta-SGD and ANIL: `maml.VARIANT_BUDGETS` (200 meta-iterations of 8 tasks). The "
        "processes share results/cpu/eval.csv (appends are locked). In the third session up to "
        "five processes (the grid, schedule runs, tests) shared the 2 cores, so those training "
        "times below are not an idle machine's; `protonet-60w5s` trained across two sessions and "
        "its time includes a pause of about 10 minutes (SIGSTOP) during a CI check. In the fifth "
        "session H and I ran side by side with one thread each, beside tests for a while; in the "
        "sixth, the 20-way runs trained on one thread each, with two or three processes on the 2 "
        "cores, so their times are a loaded machine's. "
        "Console output: [cpu/logs/](cpu/logs/). Against the previous protocol (last section), "
        "MAML gained 5.6 points at 5w1s (97.08 vs 91.52), 2.3 at 5w5s (98.98 vs 96.67), 6.6 at "
        "20w1s (90.65 vs 84.02) and 0.8 at 20w5s (96.09 vs 95.25). All four reach issue 10's "
        "targets (97 / 98.5 / 90 / 96). The five-step 20-way cells of the fifth session tested "
        "at 86.61% ± 0.35 (cpu-20w1s-five-steps-600) and 93.31% ± 0.18 "
        "(cpu-20w5s-five-steps-first-order-600, first order). The budget takes about 3 hours in one "
        "process (3.05-3.33 estimated, 4.4 on one thread, so about 2.3 with `--jobs 2`; "
        "cpu/logs/budget-estimate-*.txt). "
        "Meta-SGD and ANIL at their short variant budget are far below their papers: they need "
        "budgets of their own.",
    ),
    (
        "paper-cpu",
        "`paper` budget, MAML 5-way 1-shot at full length (60000 iterations), mostly on the 2-core CPU",
        "export FEWSHOT_DATA=../shared/data/omniglot\n"
        "# sixth and seventh sessions, to iteration 2937, one thread beside other work:\n"
        "OMP_NUM_THREADS=1 fewshot reproduce --budget paper --out results/paper-cpu --algorithms maml --cells 5w1s --threads 1 --quiet\n"
        "# seventh and eighth sessions, both cores (each rerun resumes from the run's last.pt):\n"
        "OMP_NUM_THREADS=2 fewshot reproduce --budget paper --out results/paper-cpu --algorithms maml --cells 5w1s --threads 2 --quiet\n"
        "# eighth session, iterations 28693-43020 on one H200 (two device calls, SIGTERM saves last.pt):\n"
        "timeout -s TERM 470 python3 -m fewshot_cli train maml --resume results/paper-cpu/runs/maml-5w1s --quiet\n"
        "timeout -s TERM 320 python3 -m fewshot_cli train maml --resume results/paper-cpu/runs/maml-5w1s --quiet",
        "Issue 10's stretch: the MAML paper's Omniglot 5-way 1-shot training at its full length "
        "and settings (60000 meta-iterations of 32 tasks, 1 training query per class, strided "
        "Conv-4 with batch statistics, second order, one inner step of 0.4 and three at test, "
        "Adam 1e-3), vmap engine, `random` split with rotations, validated every 500 iterations "
        "on 100 episodes and tested from `best.pt` on 600 episodes. It ran over three sessions "
        "(sixth to eighth): 45673 iterations on the CPU (0.26-0.41 s each on two threads, "
        "0.45-0.54 on one) and 14327 on an H200 (0.049-0.056 s each), where this task was lent a "
        "GPU; the training time below adds both. Progress session by session, validation "
        "accuracies and the device commands in full: [paper-cpu/README.md](paper-cpu/README.md).",
    ),
    (
        "quick",
        "`quick` budget: the README's main job (`make quick` runs the same into runs/quick)",
        "FEWSHOT_DATA=../shared/data/omniglot fewshot reproduce --budget quick --out results/quick",
        "5-way 1-shot only, 100 test episodes each: MAML at its paper's network and settings "
        "(strided Conv-4, second order) except 5 training queries per class (the paper: 1; "
        "results/schedule, third round), 600 meta-iterations of 16 tasks with the vmap engine and "
        "Adam 3e-3; ProtoNet 200 episodes of 60-way training; Meta-SGD and ANIL 60 "
        "meta-iterations of 8 tasks. Run alone on the idle 2-core machine (torch's default "
        "threads): the whole command took 4 min 21 s (`time`: real 4m21.5s; console output in "
        "[quick/reproduce.log](quick/reproduce.log)); a first run of it into a scratch folder, "
        "just before, took 4 min 9 s with the same accuracies. The budget before (1100 "
        "iterations at 1 query per class) took 4 min 48 s for MAML 89.63% ± 1.35 on the same "
        "100 episodes (its run: results/schedule/quick-queries1-1100). MAML is 7.7 points below "
        "its paper here, where issue 10 asks for about 5: no setting tried (results/schedule, "
        "second to seventh rounds: training queries, meta-batch 4 to 32, learning rates and "
        "halving, first order, test steps) beat this one by more than its CI in the same time, "
        "and the cpu 5w1s run's curve puts 93.7% at about twice MAML's time here.",
    ),
    (
        "15min",
        "15 minutes of training each, `lake` split, 5-way 1-shot",
        "OMP_NUM_THREADS=1 fewshot train protonet --out runs/proto-15min --shots 1 "
        "--iterations 100000 --time-limit 15 --val-every 250 --quiet\n"
        "OMP_NUM_THREADS=1 fewshot train maml --first-order --out runs/maml-fo-15min "
        "--iterations 100000 --time-limit 15 --val-every 50 --quiet\n"
        "fewshot eval runs/proto-15min --csv runs/note15.csv --episodes 600 --quiet\n"
        "fewshot eval runs/maml-fo-15min --csv runs/note15.csv --episodes 600 --quiet",
        "Both trainings ran at the same time, one thread each, while other work (tests) shared "
        "the 2 cores, so each got well under one idle core: ProtoNet (60-way) and first-order "
        "MAML (paper 5-way defaults, meta-batch 32).",
    ),
    (
        "cpu-previous",
        "`cpu` budget, previous protocol (before issue 10): MAML with max-pool "
        "Conv-4, running statistics and 15 queries",
        "export FEWSHOT_DATA=../shared/data/omniglot OMP_NUM_THREADS=1\n"
        "# first session\n"
        "fewshot reproduce --budget cpu --out results/cpu --quiet                    # all cells, in order\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms protonet --quiet  # alongside\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms protonet --cells 20w1s --quiet\n"
        "# the session ended mid-training; the next one resumed with\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms maml --quiet\n"
        "fewshot reproduce --budget cpu --out results/cpu --algorithms protonet --quiet  # alongside",
        "The commands ran side by side, one thread each (they share results/cpu/eval.csv, whose "
        "appends are locked; the third tested the finished 1-shot ProtoNet at 20 ways while the "
        "second trained the 5-shot one), and development work shared the machine, so each process "
        "had at most one busy core. When the first session ended, `maml-20w5s` and "
        "`protonet-60w5s` were part-trained; the second session's commands skipped the finished "
        "cells and resumed both trainings from their `last.pt` (the iterations between the last "
        "checkpoint and the interruption were redone). MAML: `random` split with rotation "
        "augmentation, second order, meta-batch 8, Adam 3e-3, 200 meta-iterations per cell, 600 "
        "test episodes. ProtoNet: `vinyals` split, 60-way training, 1500 episodes per shot count "
        "(one model per shot count serves both way counts), 1000 test episodes. The console output "
        "of every command is in [cpu-previous/logs/](cpu-previous/logs/). These runs were "
        "made in results/cpu and moved here when the grid was rerun.",
    ),
]


def last_log_rows(folder: Path) -> dict[Path, dict]:
    """The last row of each run's log.csv (runs that logged nothing yet are left out)."""
    rows = {}
    for log in sorted(folder.glob("runs/*/log.csv")):
        logged = list(csv.DictReader(log.open()))
        if logged:
            rows[log.parent] = logged[-1]
    return rows


def training_times(last_rows: dict[Path, dict]) -> list[str]:
    """One line per run directory: iterations reached and training minutes."""
    lines = []
    for run_dir, last in last_rows.items():
        planned = json.loads((run_dir / "config.json").read_text())["iterations"]
        unfinished = "" if int(last["iteration"]) >= planned else f" of {planned} planned"
        lines.append(
            f"- `{run_dir.name}`: {last['iteration']}{unfinished} iterations in "
            f"{float(last['elapsed_seconds']) / 60:.1f} min of training "
            f"(validation included), last validation accuracy "
            f"{100 * float(last['val_accuracy']):.2f}%"
        )
    return lines


def testing_times(eval_rows: list[dict]) -> list[str]:
    """One line per evaluation row: the cell, its test episodes and the minutes they took."""
    return [
        f"- `{row['run_id']}` tested {row['test_ways']}-way {row['test_shots']}-shot: "
        f"{row['episodes']} episodes in {float(row['eval_seconds']) / 60:.1f} min"
        for row in eval_rows
    ]


ESTIMATE_COMMANDS = {
    "2threads-idle": "FEWSHOT_DATA=../shared/data/omniglot python -m benchmarks.budget --budget cpu",
    "1thread-idle": "FEWSHOT_DATA=../shared/data/omniglot OMP_NUM_THREADS=1 "
    "python -m benchmarks.budget --budget cpu",
    "1thread-other-core-busy": "FEWSHOT_DATA=../shared/data/omniglot OMP_NUM_THREADS=1 "
    "python -m benchmarks.budget --budget cpu",
}
ESTIMATE_CONDITIONS = {  # by (section folder, kind)
    ("cpu", "2threads-idle"): "sixth session, after the runs above had finished, on the "
    "otherwise idle machine, twice in a row: the spread of these short timings; before the "
    "sixth-session changes (20-way cells of 600 five-step iterations) the same command gave "
    "2.15-2.19 hours",
    ("cpu", "1thread-idle"): "right after, one thread: the time of each worker's trainings "
    "with `--jobs 2`, which runs two of them at a time on one thread each, so about half of "
    "this with two workers",
    ("cpu-previous", "2threads-idle"): "after the runs above had finished, on the otherwise "
    "idle machine",
    ("cpu-previous", "1thread-other-core-busy"): "while the `maml-20w5s` training used the "
    "other core",
}


def budget_estimates(folder: Path) -> list[str]:
    """The saved outputs of ``benchmarks.budget`` in ``folder/logs``, with their commands."""
    parts = []
    for path in sorted((folder / "logs").glob("budget-estimate-*.txt")):
        kind = path.stem.removeprefix("budget-estimate-")
        parts += [
            f"Time of the budget for one `reproduce` process, from timed steps "
            f"({ESTIMATE_CONDITIONS[folder.name, kind]}; [{path.name}]({folder.name}/logs/{path.name})):",
            "",
            "```",
            "$ " + ESTIMATE_COMMANDS[kind],
            path.read_text().rstrip(),
            "```",
            "",
        ]
    return parts


def section(name: str, title: str, command: str, how: str) -> str:
    folder = RESULTS / name
    csv_path = folder / "eval.csv"
    parts = [f"## {title}", "", "```sh", command, "```", "", how, ""]
    if not csv_path.exists():
        return "\n".join(parts + ["No cell finished yet.", ""])
    parts += [format_comparison(comparison(csv_path), "markdown").rstrip(), ""]
    parts += [
        "All rows grouped (`fewshot aggregate results/" + name + "/eval.csv --format markdown`):",
        "",
        aggregate_files([csv_path], fmt="markdown").rstrip(),
        "",
    ]
    last_rows = last_log_rows(folder)
    eval_rows = list(csv.DictReader(csv_path.open()))
    parts += ["Training time:", "", *training_times(last_rows), ""]
    parts += ["Testing time:", "", *testing_times(eval_rows), ""]
    training = sum(float(row["elapsed_seconds"]) for row in last_rows.values()) / 60
    testing = sum(float(row["eval_seconds"]) for row in eval_rows) / 60
    parts += [
        f"In all: {training:.0f} min of training and {testing:.0f} min of testing, "
        f"{(training + testing) / 60:.1f} hours summed over runs (runs that went side "
        "by side overlap in wall-clock time).",
        "",
    ]
    parts += budget_estimates(folder)
    figures = [p.name for p in sorted(folder.glob("*.png"))]
    if figures:
        parts += ["Figures: " + ", ".join(f"[{f}]({name}/{f})" for f in figures), ""]
    return "\n".join(parts)


def gpu_section() -> list[str]:
    """The GPU run of benchmarks/gpu.sh: the card, the engines' timings and a short training."""
    folder = RESULTS / "gpu" / "h100-gpu-sh"
    info = (folder / "gpu-info.txt").read_text().splitlines()
    engines = (folder / "gpu-engines.txt").read_text().rstrip()
    log = list(csv.DictReader((folder / "paper-5w1s-log.csv").open()))[-1]
    row = next(csv.DictReader((folder / "paper-5w1s-eval.csv").open()))
    per_iteration = float(log["elapsed_seconds"]) / int(log["iteration"])
    card, _, driver = (part.strip() for part in info[1].split(","))
    _, torch_version, _, l2l_version = info[2].split()[:4]
    # pytest's summary without the deselected count and the duration: "1 failed, 3 passed".
    summary = (folder / "gpu-tests.txt").read_text().splitlines()[-1]
    tests = re.sub(r", \d+ deselected| in [\d.]+s$", "", summary)
    rerun = (RESULTS / "gpu" / "schedules-round1" / "gpu-tests.txt").read_text().splitlines()[-1]
    rerun = re.sub(r", \d+ deselected| in [\d.]+s$", "", rerun)
    return [
        "## On a GPU: `benchmarks/gpu.sh` on one " + card,
        "",
        "```sh",
        "bash benchmarks/gpu.sh      # the device tool, carrying .gpu/ (wheels and Omniglot)",
        "```",
        "",
        f"torch {torch_version} and learn2learn {l2l_version}, driver {driver}. "
        f"CUDA tests: {tests}; the failure was a bound of the test, too tight by 0.14% for "
        "Adam's second step, since fixed (details, the test log and the console output: "
        "[gpu/h100-gpu-sh/](gpu/h100-gpu-sh/); an earlier run of the engines on an H200: "
        "[gpu/engines_h200.txt](gpu/engines_h200.txt)).",
        "",
        "The engines side by side at each cell's paper settings (`python -m benchmarks.engines "
        "--device cuda --iterations 3`):",
        "",
        "```",
        engines,
        "```",
        "",
        f"`paper`-budget MAML 5w1s (vmap engine) for 2 minutes: {log['iteration']} "
        f"meta-iterations, {per_iteration:.3f} s each with task sampling and validation, so its "
        f"60000 iterations take about {per_iteration * 60000 / 3600:.1f} hours on this card; "
        f"last validation {float(log['val_accuracy']):.2%}, tested at "
        f"{float(row['accuracy_mean']):.2%} ± {float(row['ci95']):.2%} on "
        f"{row['episodes']} episodes (the paper: 98.7% after 60000).",
        "",
        "In the fifth session `benchmarks/gpu_schedules.sh` ran the CUDA tests again, with the "
        f"fixed bound, on an H100 ({rerun}: [gpu/schedules-round1/](gpu/schedules-round1/)), "
        "beside schedule trials for the `cpu` budget, and a second round of trials on an H200 "
        "([gpu/schedules-round2/](gpu/schedules-round2/)): they chose the cpu budget's "
        "schedule of starting the 5w5s, 20w1s and 20w5s cells from the 5w1s cell's model "
        "([schedule/README.md](schedule/README.md), fifth round).",
        "",
    ]


def main() -> None:
    text = [
        "# Results",
        "",
        "Real runs on this project's 2-core CPU machines (no GPU), torch 2.14.1, except the "
        "last section's, on one GPU, and a quarter of the `paper-cpu` run's. Accuracies are "
        "test accuracies in % with the 95% confidence interval over the test episodes "
        "(1.96 x std / sqrt(episodes)); published numbers are the papers' Table 1. Each "
        "section says which budget produced its numbers and the exact command. This file is "
        "written by `results/make_readme.py` from the CSVs and logs beside it.",
        "",
    ]
    text += [section(*s) for s in SECTIONS]
    text += gpu_section()
    (RESULTS / "README.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
