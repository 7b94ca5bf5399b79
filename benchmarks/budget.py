"""How long a ``fewshot reproduce`` budget takes on this machine, from a few timed steps.

Times a few training steps of every training in the budget's plan, a few validation and test
episodes of every cell, on the real data and with the very settings ``reproduce`` uses (its
engine included: the configuration's ``engine`` picks MAML's training step and its batched
evaluation through the algorithm, as in ``train``), then multiplies by the budget's counts
(per-cell iterations where the budget sets them). Run it on an idle machine; it prints the estimate for one
``reproduce`` process with this process's torch thread count, and for ``--jobs J`` worker
processes (``reproduce --jobs J``: trainings that start from another's model wait for it; each
worker takes the next training when free), which with one thread here is the estimate of
``reproduce --jobs J --threads J``.

Usage (from the project root)::

    FEWSHOT_DATA=../shared/data/omniglot python -m benchmarks.budget --budget cpu
    FEWSHOT_DATA=../shared/data/omniglot OMP_NUM_THREADS=1 python -m benchmarks.budget --budget cpu
"""

from __future__ import annotations

import argparse
import heapq
import os
import time
from pathlib import Path

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.allocator import reuse_freed_memory
from fewshot_cli.data.episodes import EpisodeSampler, meta_dataset
from fewshot_cli.data.source import load_omniglot
from fewshot_cli.data.splits import make_split
from fewshot_cli.run.budgets import get_budget
from fewshot_cli.run.evaluation import evaluate
from fewshot_cli.run.grid import TEST_QUERIES, in_order, plan_cells, plan_trainings, training_for


def seconds_per_step(config, data, split, steps: int) -> float:
    """Mean seconds of one training iteration of ``config`` (after one untimed warm-up)."""
    sampler = EpisodeSampler(
        meta_dataset(data, split, "train"),
        config.ways,
        config.shots,
        config.queries,
        seed=0,
        rotate=config.rotations,
    )
    algorithm = registry.get(config.algorithm)
    torch.manual_seed(0)
    model = algorithm.build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    algorithm.train_step(model, optimizer, sampler, 0, config)
    start = time.perf_counter()
    for i in range(1, steps + 1):
        algorithm.train_step(model, optimizer, sampler, i, config)
    return (time.perf_counter() - start) / steps


def seconds_per_episode(
    config, data, split, part: str, ways: int, shots: int, episodes: int
) -> float:
    """Mean seconds of one evaluation episode (``ways``-way ``shots``-shot, 15 queries)."""
    sampler = EpisodeSampler(meta_dataset(data, split, part), ways, shots, TEST_QUERIES, seed=0)
    model = registry.get(config.algorithm).build_model(config)
    evaluate(config, model, sampler, 1)  # warm-up
    result = evaluate(config, model, sampler, episodes)
    return result.seconds / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("FEWSHOT_DATA"))
    parser.add_argument("--budget", default="cpu", choices=["quick", "cpu", "paper"])
    parser.add_argument(
        "--steps", type=int, default=3, help="training iterations timed per training"
    )
    parser.add_argument("--episodes", type=int, default=10, help="test episodes timed per cell")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes to estimate for")
    args = parser.parse_args()
    reuse_freed_memory()  # as the `fewshot` command does
    budget = get_budget(args.budget)
    data = load_omniglot(args.data_root)
    plan = plan_cells(budget)
    val_ways = {
        a: min(c.ways for c in plan if c.algorithm == a) for a in {c.algorithm for c in plan}
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, budget {budget.name}")
    # Engine and order per training: the budgets set them per cell (e.g. MAML 20w5s first order).
    print(
        f"{'cell':<20}{'training':<16}{'engine':<13}{'s/step':>8}{'train min':>11}"
        f"{'val min':>9}{'test min':>10}"
    )
    paper_splits = {a: registry.paper(a).split for a in val_ways}
    splits = {a: make_split(data, paper_splits[a]) for a in val_ways}
    trained, totals, minutes_of = set(), [0.0, 0.0, 0.0], {}
    for cell in plan:
        config = training_for(cell, budget, paper_splits[cell.algorithm], val_ways[cell.algorithm])[
            1
        ].resolved()
        name = f"{cell.algorithm}-{config.ways}w{config.shots}s"
        train_min = val_min = step = 0.0
        if name not in trained:  # ProtoNet's one training serves both way counts
            trained.add(name)
            step = seconds_per_step(config, data, splits[cell.algorithm], args.steps)
            train_min = step * config.iterations / 60
            validations = -(-config.iterations // config.val_every)
            val_min = (
                validations
                * config.val_episodes
                * seconds_per_episode(
                    config,
                    data,
                    splits[cell.algorithm],
                    "val",
                    config.test_ways,
                    config.test_shots,
                    args.episodes,
                )
                / 60
            )
        episodes = budget.algorithms[cell.algorithm].test_episodes
        test_min = (
            episodes
            * seconds_per_episode(
                config, data, splits[cell.algorithm], "test", cell.ways, cell.shots, args.episodes
            )
            / 60
        )
        for i, minutes in enumerate((train_min, val_min, test_min)):
            totals[i] += minutes
        minutes_of[name] = minutes_of.get(name, 0.0) + train_min + val_min + test_min
        engine = (config.engine or "-") + (" 1st" if config.first_order else "")
        print(
            f"{cell.algorithm + ' ' + cell.name:<20}{name if step else '(shared)':<16}{engine:<13}"
            f"{step:>8.2f}{train_min:>11.1f}{val_min:>9.1f}{test_min:>10.1f}"
        )
    print(f"{'total':<57}{totals[0]:>11.1f}{totals[1]:>9.1f}{totals[2]:>10.1f}")
    print(f"estimated: {sum(totals) / 60:.2f} hours for one process running the whole budget")
    hours = with_workers(budget, minutes_of, args.jobs) / 60
    print(
        f"estimated: {hours:.2f} hours with --jobs {args.jobs} (each worker as fast as this process)"
    )


def with_workers(budget, minutes_of: dict[str, float], jobs: int) -> float:
    """Minutes of ``reproduce --jobs`` from each training's minutes (its tests included).

    Example:
        >>> from fewshot_cli.run.budgets import get_budget
        >>> minutes = {"maml-5w1s": 60, "maml-5w5s": 10, "maml-20w1s": 30, "maml-20w5s": 30}
        >>> with_workers(get_budget("cpu"), minutes, 2)  # 5w1s first, then the others on 2
        100.0
    """
    total = 0.0
    for wave in in_order(plan_trainings(Path("budget"), budget)):
        free = [0.0] * jobs  # when each worker is next free, as a heap
        for training in wave:
            if training.name in minutes_of:
                heapq.heappush(free, heapq.heappop(free) + minutes_of[training.name])
        total += max(free)
    return total


if __name__ == "__main__":
    main()
