"""Packaging trained runs as shipped models (``run.pretrained``): the weights alone, the
configuration, and a manifest entry with the test result and the command that trained it.

Usage (from the project root, after the run was evaluated into CSV)::

    python -m fewshot_cli.run.shipping RUN NAME CSV "COMMAND THAT TRAINED IT" [CELL]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import pretrained
from fewshot_cli.run.checkpoint import CONFIG, load_run, read_config, save_checkpoint
from fewshot_cli.run.protocol import training_values
from fewshot_cli.run.results import read_rows

# What a shipped checkpoint keeps: enough to evaluate and start from, no optimizer state.
KEPT = ("model", "algorithm", "iteration", "best_val")
# Configuration fields that only held where the run was made (left to their defaults).
LOCAL = ("device", "data_root", "split_dir", "init_from")


def ship(run_dir: str | Path, name: str, row: dict, command: str) -> dict:
    """Copy ``run_dir``'s ``best.pt`` (weights only) and configuration as the shipped model
    ``name``, and record it in the manifest with the test result ``row`` (an evaluation CSV row
    of this run) and ``command``. Returns the manifest entry.

    Example::

        ship("results/cpu/runs/protonet-60w1s", "protonet-omniglot-5w1s", row, "fewshot ...")
    """
    config, _, checkpoint, state = load_run(run_dir)
    resolved = config.resolved()
    target = pretrained.folder() / name
    target.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target / pretrained.WEIGHTS, {k: state[k] for k in KEPT if k in state})
    stored = {k: v for k, v in read_config(checkpoint.parent).items() if k not in LOCAL}
    atomic_write_text(target / CONFIG, json.dumps(stored, indent=2) + "\n")
    entry = {
        "name": name,
        "algorithm": config.algorithm,
        "dataset": row.get("dataset", "omniglot"),
        "test": f"{row['test_ways']}-way {row['test_shots']}-shot",
        "accuracy": float(row["accuracy_mean"]),
        "ci95": float(row["ci95"]),
        "episodes": int(row["episodes"]),
        "protocol": training_values(resolved),
        "command": command,
        "sha256": pretrained.sha256(target / pretrained.WEIGHTS),
    }
    others = [m for m in pretrained.manifest() if m["name"] != name]
    path = pretrained.folder() / pretrained.MANIFEST
    atomic_write_text(path, json.dumps({"models": [*others, entry]}, indent=1) + "\n")
    return entry


def main(argv: list[str]) -> None:
    run_dir, name, csv_path, command, *cell = argv  # CELL (e.g. 20w1s): the row of that test
    rows = [r for r in read_rows(Path(csv_path)) if Path(r["checkpoint"]).parent == Path(run_dir)]
    if cell:
        rows = [r for r in rows if f"{r['test_ways']}w{r['test_shots']}s" == cell[0]]
    if not rows:
        raise FewshotError(f"{csv_path} has no row of {run_dir}")
    print(json.dumps(ship(run_dir, name, rows[-1], command), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
