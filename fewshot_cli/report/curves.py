"""Training curves of run directories: loss, and validation accuracy by iteration and by time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from fewshot_cli.algorithms.registry import NAMES as ALGORITHMS
from fewshot_cli.errors import FewshotError

LINE_STYLES = ("-", "--", ":", "-.")
ITERATION = "iteration (meta-iteration or episode)"


class NoValidationYet(FewshotError):
    """A run's log.csv has no validation row yet (a run just started)."""


def read_log(path: Path, columns: list[str], empty_ok: bool = False) -> pd.DataFrame | None:
    """The numeric ``columns`` of a training log, rows with a gap dropped.

    Returns None for a file without any content when ``empty_ok``.

    Raises:
        FewshotError: a file that is not a training log.
    """
    try:
        rows = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        if empty_ok and isinstance(exc, pd.errors.EmptyDataError):
            return None
        raise FewshotError(f"{path} is not a training log ({type(exc).__name__})") from None
    if not set(columns) <= set(rows.columns):
        raise FewshotError(f"{path} is not a training log (no {', '.join(columns)} columns)")
    return rows[columns].apply(pd.to_numeric, errors="coerce").dropna()


def read_curve(run_dir: str | Path) -> pd.DataFrame:
    """The validation rows of ``run_dir/log.csv``: iteration, val_accuracy, elapsed_seconds.

    Raises:
        FewshotError: no log, or a log without validation rows.
    """
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise FewshotError(f"{run_dir} has no log.csv (is it a run directory?)")
    log = read_log(path, ["iteration", "val_accuracy", "elapsed_seconds"])
    if log.empty:
        raise NoValidationYet(f"{path} has no validation rows yet")
    return log


def read_losses(run_dir: str | Path) -> pd.DataFrame | None:
    """The rows of ``run_dir/iterations.csv`` (iteration, train_loss), or None without any.

    Raises:
        FewshotError: a file that is not a training log.
    """
    path = Path(run_dir) / "iterations.csv"
    rows = read_log(path, ["iteration", "train_loss"], empty_ok=True) if path.is_file() else None
    return rows if rows is not None and not rows.empty else None


def curve_label(run_dir: str | Path) -> str:
    """A run's legend label: its algorithm and training cell (``maml 5w1s``), from config.json;
    the folder's name for a folder without one."""
    from fewshot_cli.run.checkpoint import read_config
    from fewshot_cli.run.config import TrainConfig

    try:
        config = TrainConfig.from_dict(read_config(Path(run_dir))).resolved()
    except FewshotError:
        return Path(run_dir).resolve().name
    return f"{config.algorithm} {config.ways}w{config.shots}s"


def plot_curves(
    run_dirs: Iterable[str | Path], out: str | Path, warn: Callable[[str], None] | None = None
) -> Path:
    """Training loss by iteration, and validation accuracy by iteration and by wall-clock time.

    One colour per algorithm, a line style per run of it. The loss panel (``iterations.csv``:
    each iteration's loss, faint, and its moving average) appears when a run has that file.

    Args:
        run_dirs: training run directories (each with a ``log.csv``).
        out: the figure to write (``.png``, ``.pdf`` or ``.svg``).
        warn: told about each run left out (or shown by its loss only) for want of a
            validation row.

    Raises:
        FewshotError: a folder that is no run, or no run with anything to plot yet.

    Example::

        plot_curves(["runs/maml", "runs/proto"], "figures/curves.png")
    """
    from matplotlib.figure import Figure

    from fewshot_cli.report.plots import colors_of, figure_format, save

    figure_format(out)
    run_dirs, runs, left_out = list(run_dirs), {}, []
    if not run_dirs:
        raise FewshotError("give at least one run directory")
    for run_dir in run_dirs:
        label = curve_label(run_dir)
        try:
            log = read_curve(run_dir)
        except NoValidationYet as exc:
            log = None
            missing = str(exc)
        losses = read_losses(run_dir)
        if log is None and losses is None:
            left_out.append(f"{run_dir} left out: {missing}")
            continue
        if log is None:
            left_out.append(f"{run_dir}: training loss only ({missing})")
        runs[label if label not in runs else f"{label} ({run_dir})"] = (log, losses)
    if not runs:
        raise FewshotError(f"no run has a validation row yet ({', '.join(map(str, run_dirs))})")
    for message in left_out if warn is not None else ():
        warn(message)
    with_losses = any(losses is not None for _, losses in runs.values())
    figure = Figure(figsize=(16 if with_losses else 11, 4.2), layout="constrained")
    panels = list(figure.subplots(1, 3 if with_losses else 2))
    loss_axes = panels.pop(0) if with_losses else None
    by_iteration, by_time = panels
    by_time.sharey(by_iteration)
    seen: dict[str, int] = {}
    for index, (label, (log, losses)) in enumerate(runs.items()):
        algorithm = label.split()[0]
        color = colors_of(algorithm)["ours"] if algorithm in ALGORITHMS else f"C{index % 10}"
        style = LINE_STYLES[seen.get(algorithm, 0) % len(LINE_STYLES)]
        seen[algorithm] = seen.get(algorithm, 0) + 1
        line = {"color": color, "linestyle": style, "label": label}
        if losses is not None:
            loss, window = losses["train_loss"], max(1, len(losses) // 50)
            loss_axes.plot(losses["iteration"], loss, color=color, alpha=0.25, linewidth=0.6)
            loss_axes.plot(losses["iteration"], loss.rolling(window, min_periods=1).mean(), **line)
        if log is not None:
            marker, minutes = "o" if len(log) < 30 else None, log["elapsed_seconds"] / 60
            for axes, x in ((by_iteration, log["iteration"]), (by_time, minutes)):
                axes.plot(x, 100 * log["val_accuracy"], marker=marker, markersize=3, **line)
    by_iteration.set(
        xlabel=ITERATION,
        ylabel="validation accuracy (%)",
        title="Validation accuracy by iteration",
    )
    by_time.set(xlabel="wall-clock time (minutes)", title="Validation accuracy by training time")
    for axes in (by_iteration, by_time):
        axes.grid(alpha=0.3)
    if loss_axes is not None:
        loss_axes.set(
            xlabel=ITERATION,
            ylabel="training loss",
            title="Training loss (faint: each iteration; line: moving average)",
        )
        loss_axes.grid(alpha=0.3)
        loss_axes.legend(fontsize="small")
    if by_iteration.lines:
        by_iteration.legend(fontsize="small")
    return save(figure, out)
