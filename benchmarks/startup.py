"""Start-up time of the command line: what a user waits for before any work is done.

Times, in fresh processes, ``fewshot --help``, ``fewshot train --help`` and ``fewshot predict``
with a ProtoNet on 20 support images (4 classes of 5) and 20 query images (targets on 2 cores:
1 s for each --help and 4 s for predict). Prints the median and the
fastest of ``--runs`` runs of each.

Usage (from the project root)::

    python -m benchmarks.startup [--runs 5] [--repo OTHER_CHECKOUT]

``--repo`` times another checkout of the project (e.g. a ``git worktree`` of an older commit)
with the same images and run, for a before/after comparison on the same machine; the commands
of both should be timed in one sitting, as a shared machine's load drifts.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES, PER_CLASS = 4, 5  # 20 support and 20 query images


def make_images(folder: Path, seed: int) -> None:
    """``CLASSES`` folders of ``PER_CLASS`` 105x105 PNGs: dark strokes on white, one glyph each."""
    from PIL import Image, ImageDraw

    for label in range(CLASSES):
        strokes = random.Random(label).sample(range(10, 95), 8)
        rng = random.Random(seed * 100 + label)
        (folder / f"class{label}").mkdir(parents=True)
        for index in range(PER_CLASS):
            image = Image.new("L", (105, 105), 255)
            points = [v + rng.randint(-3, 3) for v in strokes]
            ImageDraw.Draw(image).line(points, fill=0, width=6)
            image.save(folder / f"class{label}" / f"{index}.png")


def make_run(run_dir: Path) -> None:
    """An (untrained) ProtoNet run directory: predict's work does not depend on the weights."""
    from fewshot_cli.algorithms import registry
    from fewshot_cli.run.checkpoint import save_checkpoint, save_config
    from fewshot_cli.run.config import TrainConfig

    config = TrainConfig("protonet", ways=5, shots=1, queries=1, device="cpu")
    run_dir.mkdir(parents=True)
    save_config(run_dir, config)
    model = registry.get("protonet").build_model(config)
    save_checkpoint(
        run_dir / "last.pt", {"algorithm": "protonet", "iteration": 0, "model": model.state_dict()}
    )


def wall_clock(args: list[str], repo: Path) -> float:
    """Seconds of ``python -m fewshot_cli ARGS`` in ``repo``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fewshot_cli", *args],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fewshot {' '.join(args)} failed in {repo}:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument(
        "--repo",
        type=Path,
        action="append",
        help="checkout to time (repeatable; default: this one)",
    )
    args = parser.parse_args()
    repos = [path.resolve() for path in args.repo or [ROOT]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "support", seed=0)
        make_images(tmp / "query", seed=1)
        make_run(tmp / "run")
        commands = {
            "fewshot --help": ["--help"],
            "fewshot train --help": ["train", "--help"],
            f"fewshot predict (ProtoNet, {CLASSES * PER_CLASS}+{CLASSES * PER_CLASS} images)": [
                "predict",
                str(tmp / "run"),
                "--support",
                str(tmp / "support"),
                "--query",
                str(tmp / "query"),
                "--device",
                "cpu",
            ],
        }
        print(
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
            f"{args.runs} fresh processes each, seconds"
        )
        print(f"{'command':<44}{'checkout':<28}{'median':>8}{'fastest':>9}")
        for name, command in commands.items():
            times = {repo: [] for repo in repos}
            for _ in range(args.runs):  # checkouts in turns, so load changes hit both alike
                for repo in repos:
                    times[repo].append(wall_clock(command, repo))
            for repo, seconds in times.items():
                print(
                    f"{name:<44}{str(repo)[-27:]:<28}{statistics.median(seconds):>8.2f}"
                    f"{min(seconds):>9.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
