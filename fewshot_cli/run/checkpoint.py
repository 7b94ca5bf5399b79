"""Run directories: the configuration (JSON) and checkpoints (tensors only) of a training run.

A run directory holds ``config.json``, ``last.pt`` (to resume), ``best.pt`` (best validation
accuracy) and ``log.csv``. Checkpoints are loaded with ``torch.load(weights_only=True)``: a
crafted pickle cannot run code, and everything that is not a tensor lives in the JSON beside it.
Every file is written to a temporary name and renamed, so a kill leaves the previous good file.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch

from fewshot_cli.algorithms import registry
from fewshot_cli.atomic import atomic_torch_save, atomic_write_text
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import pretrained
from fewshot_cli.run.config import TrainConfig

CONFIG, LAST, BEST, LOG = "config.json", "last.pt", "best.pt", "log.csv"
ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"  # torch.save's zip format; a binary pickle
HEAD_BYTES = 512  # enough of a file to tell text from a checkpoint


def save_config(run_dir: Path, config) -> None:
    """Write a dataclass configuration as ``config.json``."""
    atomic_write_text(
        Path(run_dir) / CONFIG, json.dumps(dataclasses.asdict(config), indent=2) + "\n"
    )


def read_config(run_dir: Path) -> dict:
    """The configuration of a run directory, as a dict."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FewshotError(f"{run_dir} is not a run directory: {CONFIG} not found")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FewshotError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(values, dict):
        raise FewshotError(f"{path} is not a run configuration (not a JSON object)")
    return values


def save_checkpoint(path: Path, state: dict) -> None:
    """Save a checkpoint (a dict of tensors, numbers, strings and nested dicts) atomically."""
    try:
        atomic_torch_save(state, Path(path))
    except OSError as exc:
        raise FewshotError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from exc


def load_failure(exc: Exception, head: bytes = b"") -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one short line.

    ``head`` (the file's first bytes) tells a file that is no checkpoint at all (text, an empty
    file, other data) from a checkpoint or pickle refused for safety, and from a damaged one.
    """
    text = str(exc)
    refused = "WeightsUnpickler error:" in text or "GLOBAL" in text
    detail = first_line(
        text.split("WeightsUnpickler error:", 1)[-1]
        if "WeightsUnpickler error:" in text
        else next((line for line in text.splitlines() if "GLOBAL" in line), text)
    )
    # torch's own first line suggests weights_only=False: the one thing not to do here.
    if refused and ("GLOBAL" in text or head.startswith(ZIP_MAGIC)):
        return (
            f"it holds more than tensors and plain data, and loading it could run code "
            f"({detail[:120]})"
        )
    if refused and head.startswith(PICKLE_MAGIC):
        return (
            f"it is a Python pickle, not a torch.save checkpoint, and loading it could run "
            f"code ({detail[:120]})"
        )
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        return (
            f"a damaged or truncated PyTorch checkpoint "
            f"({type(exc).__name__}: {first_line(text)[:150]})"
        )
    return f"not a PyTorch checkpoint at all ({describe_content(head)})"


def describe_content(head: bytes) -> str:
    """What a file that is no checkpoint starts with, in a few words."""
    if not head:
        return "the file is empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its content is neither a zip archive nor a pickle"
    return "it is a text file"


def first_line(text: str) -> str:
    """The first sentence of the first non-empty line of ``text``."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "").split(". ")[0]


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint safely (tensors and plain data only, no code).

    Raises:
        FewshotError: the file is missing, truncated, or holds anything but plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FewshotError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign file's pickle protocol
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, unsafe global, not a checkpoint...
        try:
            with path.open("rb") as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            head = b""
        raise FewshotError(f"cannot load checkpoint {path}: {load_failure(exc, head)}") from exc
    if not isinstance(state, dict) or "model" not in state or "algorithm" not in state:
        raise FewshotError(f"{path} is not a fewshot checkpoint")
    return state


def resolve_run(path: Path, which: str = BEST) -> tuple[Path, Path]:
    """``(run directory, checkpoint file)`` for a run directory or a checkpoint path.

    For a directory, ``which`` (``best.pt`` by default) is used, falling back to ``last.pt``;
    ``pretrained:NAME`` is a shipped model's run directory (``run.pretrained``).
    """
    path = pretrained.locate(path)
    if path.is_dir():
        for name in (which, LAST):
            if (path / name).is_file():
                return path, path / name
        raise FewshotError(f"no checkpoint ({which} or {LAST}) in run directory {path}")
    if not path.exists():
        raise FewshotError(f"run directory or checkpoint {path} does not exist")
    return path.parent, path


def load_trained(path: str | Path) -> tuple[TrainConfig, torch.nn.Module, Path]:
    """The configuration and trained model of a run directory or checkpoint.

    Example::

        config, model, checkpoint = load_trained("runs/protonet")
    """
    return load_run(path)[:3]


def load_run(path: str | Path) -> tuple[TrainConfig, torch.nn.Module, Path, dict]:
    """``load_trained`` plus the checkpoint's contents (iteration, best validation...).

    The checkpoint is read once.

    Example::

        config, model, checkpoint, state = load_run("runs/protonet")
        state["iteration"]
        # 1000
    """
    run_dir, checkpoint_path = resolve_run(Path(path))
    # The checkpoint first: a given file that is none is named as such, not its folder.
    state = load_checkpoint(checkpoint_path)
    if not (run_dir / CONFIG).is_file() and not Path(path).is_dir():
        raise FewshotError(
            f"checkpoint {checkpoint_path} has no {CONFIG} beside it (its run's network and "
            f"settings): give a checkpoint inside its run directory"
        )
    config = TrainConfig.from_dict(read_config(run_dir))
    if state["algorithm"] != config.algorithm:
        raise FewshotError(
            f"{checkpoint_path} holds a {state['algorithm']} model but {run_dir}/config.json "
            f"describes {config.algorithm}"
        )
    model = registry.get(config.algorithm).build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise FewshotError(
            f"{checkpoint_path} does not fit the network of its config.json"
        ) from exc
    return config, model, checkpoint_path, state


def source_name(init_from: str | None) -> str:
    """The run a training started from (``--init-from``), as a CSV row names it: the run
    directory's name, also for a checkpoint inside it; empty for a random start.

    Example:
        >>> source_name("results/cpu/runs/maml-5w1s"), source_name("x/maml-5w1s/best.pt")
        ('maml-5w1s', 'maml-5w1s')
    """
    if not init_from:
        return ""
    path = Path(init_from)
    return path.parent.name if path.suffix == ".pt" else path.name


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The trained weights a fresh run of ``config`` starts from: ``config.init_from``'s.

    ``config.init_from`` is a trained run (its ``best.pt``) or a checkpoint of the same
    algorithm and network (backbone, BatchNorm); its head may have other ways (``start_from``
    then leaves the new run's own head).

    Raises:
        FewshotError: the source is missing, or of another algorithm or network.

    Example::

        weights = initial_weights(TrainConfig("maml", ways=20, init_from="runs/maml-5w1s").resolved())
    """
    try:
        source, model, _ = load_trained(config.init_from)
    except FewshotError as exc:
        raise FewshotError(f"--init-from: {exc}") from None
    source = source.resolved()
    for name in ("algorithm", "backbone", "bn_running_stats"):
        if getattr(source, name) != getattr(config, name):
            raise FewshotError(
                f"--init-from {config.init_from}: it has {name}={getattr(source, name)}, this "
                f"run {name}={getattr(config, name)}"
            )
    return model.state_dict()


def start_from(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Copy ``weights`` into ``model`` where names and shapes agree; return the names of the
    tensors that keep ``model``'s own values (a head of other ways).

    A new head keeps its random initialisation rather than starting at zero: a 20-way MAML
    started from a 5-way model with a zero head validated at 56% after 100 meta-iterations,
    with its random head at 85% (results/gpu/schedules-first and -second).

    Example:
        >>> from fewshot_cli.algorithms.maml_family import network
        >>> start_from(network(20), network(5).state_dict())
        ['head.weight', 'head.bias']
    """
    own = model.state_dict()
    if set(own) != set(weights):
        raise FewshotError("--init-from: its network has other layers than this run's")
    kept = [name for name, value in own.items() if value.shape != weights[name].shape]
    model.load_state_dict({**weights, **{name: own[name] for name in kept}})
    return kept


def trained_iterations(checkpoint_path: Path, state: dict) -> int:
    """How many iterations the run of ``checkpoint_path`` (whose contents are ``state``) has
    trained: its ``last.pt``'s iteration, or ``state``'s when that is further or the run has
    no readable ``last.pt``."""
    last = Path(checkpoint_path).parent / LAST
    if Path(checkpoint_path).name == LAST or not last.is_file():
        return state["iteration"]
    try:
        done = torch.load(last, map_location="cpu", weights_only=True)["iteration"]
    except Exception:  # an unreadable last.pt proves nothing further
        return state["iteration"]
    return max(done, state["iteration"])
