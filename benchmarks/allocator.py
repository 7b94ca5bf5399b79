"""CPU time of training with glibc's default allocator thresholds and with ``fewshot``'s
(``fewshot_cli.allocator``: freed memory kept for reuse instead of handed back to the kernel).

Each side is a fresh ``fewshot train`` process (the setting is per process), one thread, the
sides in turns; the table gives the CPU seconds (user + system) of each run and the ratio of
their medians. Run it on an idle machine, from the project root::

    FEWSHOT_DATA=../shared/data/omniglot python -m benchmarks.allocator [--iterations N] [--turns T]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# ProtoNet's 60-way training episodes and MAML's quick step (16 tasks, vmap engine).
TRAININGS = {
    "protonet 60w1s": ["protonet", "--split", "vinyals"],
    "maml 5w1s mb16 vmap": [
        "maml", "--split", "random", "--rotations", "--queries", "5", "--meta-batch", "16",
        "--engine", "vmap",
    ],
}  # fmt: skip
SIDES = {"glibc defaults": {"FEWSHOT_MALLOC": "system"}, "fewshot": {}}


def run(args: list[str], env: dict, iterations: int) -> tuple[float, float, float]:
    """``(wall, user, system)`` seconds of one training process."""
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "fewshot_cli", "train", *args, "--iterations", str(iterations),
             "--val-every", "100000", "--val-episodes", "1", "--threads", "1", "--quiet",
             "--out", f"{out}/run"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args(argv)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base.pop("FEWSHOT_MALLOC", None)
    print(f"{args.iterations} training iterations a run, 1 thread, {args.turns} turns a side")
    print(f"{'training':<22}{'side':<16}{'CPU s (user + system) of each run':<36}{'median':>8}")
    for name, training in TRAININGS.items():
        cpu = {side: [] for side in SIDES}
        for turn in range(args.turns):
            order = list(SIDES) if turn % 2 == 0 else list(SIDES)[::-1]
            for side in order:
                _, user, system = run(training, {**base, **SIDES[side]}, args.iterations)
                cpu[side].append((user, system))
        for side, runs in cpu.items():
            shown = "  ".join(f"{u:.1f} + {s:.1f}" for u, s in runs)
            print(
                f"{name:<22}{side:<16}{shown:<36}{statistics.median(u + s for u, s in runs):>8.1f}"
            )
        ratio = statistics.median(u + s for u, s in cpu["glibc defaults"]) / statistics.median(
            u + s for u, s in cpu["fewshot"]
        )
        print(f"{name:<22}glibc defaults / fewshot: {ratio:.2f}x")


if __name__ == "__main__":
    main()
