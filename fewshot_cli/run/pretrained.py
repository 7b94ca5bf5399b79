"""Trained models that ship with the package, named ``pretrained:NAME`` wherever a run goes.

Each is a small run directory in the package's ``pretrained/`` folder (``NAME/config.json`` and
``NAME/best.pt``, the weights alone) with an entry in ``pretrained/manifest.json``: its name,
algorithm, dataset, protocol, test accuracy with its CI and episodes, the command that trained it,
and the checkpoint's sha256. ``locate`` checks the hash before a model is used; the checkpoint is
then loaded as any other (``torch.load(weights_only=True)``).

Example::

    locate("pretrained:protonet-omniglot-5w1s")  # .../fewshot_cli/pretrained/protonet-omniglot-5w1s
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fewshot_cli.errors import FewshotError

PREFIX = "pretrained:"
MANIFEST = "manifest.json"
WEIGHTS = "best.pt"


def folder() -> Path:
    """Where the shipped models are (``$FEWSHOT_PRETRAINED`` overrides the package's folder)."""
    return Path(os.environ.get("FEWSHOT_PRETRAINED") or Path(__file__).parents[1] / "pretrained")


def manifest() -> list[dict]:
    """Every shipped model's manifest entry, in the manifest's order (empty when none ship)."""
    path = folder() / MANIFEST
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FewshotError(f"{path} is not a model manifest ({exc})") from None


def sha256(path: Path) -> str:
    """The sha256 of a file, in hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_pretrained(path: str | Path) -> bool:
    """Whether ``path`` names a shipped model (``pretrained:NAME``)."""
    return str(path).startswith(PREFIX)


def locate(path: str | Path) -> Path:
    """The run directory of ``pretrained:NAME``, its checkpoint checked against the manifest;
    any other path unchanged.

    Raises:
        FewshotError: no model of that name, or a checkpoint that does not match its hash.
    """
    if not is_pretrained(path):
        return Path(path)
    name = str(path)[len(PREFIX) :]
    entry = next((m for m in manifest() if m["name"] == name), None)
    if entry is None:
        known = ", ".join(m["name"] for m in manifest()) or "none ship with this version"
        raise FewshotError(f"no shipped model '{name}' (fewshot models lists them: {known})")
    run_dir = folder() / name
    weights = run_dir / WEIGHTS
    if not weights.is_file() or sha256(weights) != entry["sha256"]:
        raise FewshotError(
            f"{weights} does not match its manifest (sha256): refusing a changed or damaged model"
        )
    return run_dir
