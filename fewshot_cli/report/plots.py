"""Figures (PNG, PDF or SVG): training curves of run directories, test accuracy per grid cell.

Figures are drawn on matplotlib's Agg canvas (``matplotlib.figure.Figure`` without pyplot), so
no display is needed and no global backend state changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from fewshot_cli.errors import FewshotError

DPI = 120
UNKNOWN_COLORS = {"ours": "#7f7f7f", "paper": "#c7c7c7"}  # an algorithm this version lacks


def colors_of(algorithm: str) -> dict:
    """Plot colours of ``algorithm`` (``Algorithm.colors``): ours strong, the paper's lighter."""
    from fewshot_cli.algorithms import registry

    return dict(registry.get(algorithm).colors) if algorithm in registry.NAMES else UNKNOWN_COLORS


FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}  # matplotlib's name for each
# Our bars: a strong colour per protocol.
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)


def read_curve(run_dir: str | Path) -> pd.DataFrame:
    """The validation rows of ``run_dir/log.csv``: iteration, val_accuracy, elapsed_seconds.

    Raises:
        FewshotError: no log, or a log without validation rows.
    """
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise FewshotError(f"{run_dir} has no log.csv (is it a run directory?)")
    try:
        log = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FewshotError(f"{path} is not a training log ({type(exc).__name__})") from None
    columns = ["iteration", "val_accuracy", "elapsed_seconds"]
    if not set(columns) <= set(log.columns):
        raise FewshotError(f"{path} is not a training log (no {', '.join(columns)} columns)")
    log = log[columns].apply(pd.to_numeric, errors="coerce").dropna()
    if log.empty:
        raise NoValidationYet(f"{path} has no validation rows yet")
    return log


class NoValidationYet(FewshotError):
    """A run's log.csv has no validation row yet (a run just started)."""


def figure_format(out: str | Path) -> str:
    """The format ``out``'s extension names (``png``, ``pdf`` or ``svg``).

    Raises:
        FewshotError: any other extension (checked before any work, so nothing is drawn for
            a file that could not be written as asked).
    """
    suffix = Path(out).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise FewshotError(
            f"cannot write {out}: name a {', '.join(FIGURE_FORMATS)} file "
            f"(the format follows the extension)"
        )
    return FIGURE_FORMATS[suffix]


def save(figure, out: str | Path) -> Path:
    """Write ``figure`` in the format of ``out``'s extension (PNG, PDF, SVG), creating the folder."""
    out = Path(out)
    fmt = figure_format(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # "tight": the legend below the bars may be wider than the axes; keep all of it.
        figure.savefig(out, dpi=DPI, format=fmt, bbox_inches="tight")
    except OSError as exc:
        raise FewshotError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def read_losses(run_dir: str | Path) -> pd.DataFrame | None:
    """The rows of ``run_dir/iterations.csv`` (iteration, train_loss), or None without any.

    Raises:
        FewshotError: a file that is not a training log.
    """
    path = Path(run_dir) / "iterations.csv"
    if not path.is_file():
        return None
    try:
        rows = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FewshotError(f"{path} is not a training log ({type(exc).__name__})") from None
    if not {"iteration", "train_loss"} <= set(rows.columns):
        raise FewshotError(f"{path} is not a training log (no iteration, train_loss columns)")
    rows = rows[["iteration", "train_loss"]].apply(pd.to_numeric, errors="coerce").dropna()
    return rows if not rows.empty else None


def plot_curves(
    run_dirs: Iterable[str | Path], out: str | Path, warn: Callable[[str], None] | None = None
) -> Path:
    """Training loss by iteration, and validation accuracy by iteration and by wall-clock time.

    One colour per run. The loss panel (from ``iterations.csv``: each iteration's loss, faint,
    and its moving average) appears when a run has that file.

    Args:
        run_dirs: training run directories (each with a ``log.csv``).
        out: the figure to write (``.png``, ``.pdf`` or ``.svg``).
        warn: told about each run left out (or shown by its loss only) because it has no
            validation row yet.

    Raises:
        FewshotError: a folder that is no run, or no run with anything to plot yet.

    Example::

        plot_curves(["runs/maml", "runs/proto"], "figures/curves.png")
    """
    from matplotlib.figure import Figure

    figure_format(out)
    run_dirs, runs, left_out = list(run_dirs), {}, []
    if not run_dirs:
        raise FewshotError("give at least one run directory")
    for run_dir in run_dirs:
        label = Path(run_dir).resolve().name
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
        runs[label if label not in runs else str(run_dir)] = (log, losses)
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
    for index, (label, (log, losses)) in enumerate(runs.items()):
        color = f"C{index % 10}"
        if losses is not None:
            window = max(1, len(losses) // 50)
            loss_axes.plot(
                losses["iteration"], losses["train_loss"], color=color, alpha=0.25, linewidth=0.6
            )
            loss_axes.plot(
                losses["iteration"],
                losses["train_loss"].rolling(window, min_periods=1).mean(),
                color=color,
                label=label,
            )
        if log is not None:
            marker = "o" if len(log) < 30 else None
            by_iteration.plot(
                log["iteration"],
                100 * log["val_accuracy"],
                marker=marker,
                markersize=3,
                color=color,
                label=label,
            )
            by_time.plot(
                log["elapsed_seconds"] / 60,
                100 * log["val_accuracy"],
                marker=marker,
                markersize=3,
                color=color,
                label=label,
            )
    by_iteration.set(
        xlabel="iteration (meta-iteration or episode)",
        ylabel="validation accuracy (%)",
        title="Validation accuracy by iteration",
    )
    by_time.set(xlabel="wall-clock time (minutes)", title="Validation accuracy by training time")
    for axes in (by_iteration, by_time):
        axes.grid(alpha=0.3)
    if loss_axes is not None:
        loss_axes.set(
            xlabel="iteration (meta-iteration or episode)",
            ylabel="training loss",
            title="Training loss (faint: each iteration; line: moving average)",
        )
        loss_axes.grid(alpha=0.3)
        loss_axes.legend(fontsize="small")
    if by_iteration.lines:
        by_iteration.legend(fontsize="small")
    return save(figure, out)


def protocol_labels(
    table: pd.DataFrame, axis: tuple[str, ...] = ("test_ways", "test_shots")
) -> tuple[list[str], list[str]]:
    """A legend label for each line of an ``aggregate`` table, and the values all lines share.

    A label names the algorithm (and MAML order) and every other protocol column whose value
    differs between lines (``axis`` columns aside: the x axis shows them), e.g.
    ``maml second order, split=lake, bn_mode=running``.

    Example::

        labels, shared = protocol_labels(aggregate(rows))
    """
    from fewshot_cli.report.tables import shown_columns

    shown, shared = shown_columns(table, always=("algorithm", "order"))
    varying = [c for c in shown if c not in ("algorithm", "order", *axis)]
    if {"train_ways", "train_shots"} & set(varying):
        varying = [c for c in varying if c != "train_shots"]  # both in one word: trained 5w1s
    labels = []
    for record in table.to_dict("records"):
        name = record["algorithm"] + (f" {record['order']} order" if record.get("order") else "")
        details = [protocol_word(c, record) for c in varying if record[c] != ""]
        labels.append(name + (": " + ", ".join(details) if details else ""))
    return labels, [s for s in shared if not s.startswith(axis)]


def protocol_word(column: str, record: dict) -> str:
    """A short legend word for one protocol value: ``200 it``, ``BN running``, ``trained 5w1s``."""
    value = record[column]
    words = {
        "split": f"{value} split",
        "split_part": f"{value} part",
        "rotations": "rotations" if value == "True" else "no rotations",
        "train_ways": f"trained {value}w{record.get('train_shots', '')}s",
        "train_queries": f"{value} training queries",
        "train_iterations": f"{value} it",
        "test_queries": f"{value} queries",
        "inner_steps_test": f"{value} steps",
        "bn_mode": f"BN {value}",
    }
    return words.get(column, f"{column} {value}")


def protocol_colors(labels: list[str], records: list[dict]) -> dict[str, str]:
    """A colour per protocol label, from its algorithm's own, so bars match their paper's hue.

    Every label of an algorithm (and order: ``colors["first"]`` for first order where the
    algorithm has one) takes its colour, e.g. a grid whose cells each trained their own way.
    Only where two labels of one algorithm share a grid cell do the later ones take unused
    colours of ``PALETTE``, those no algorithm owns first.

    Example:
        >>> protocol_colors(["protonet", "maml a", "maml b"],
        ...                 [{"algorithm": "protonet"}, {"algorithm": "maml"}, {"algorithm": "maml"}])
        {'protonet': '#d62728', 'maml a': '#1f77b4', 'maml b': '#ff7f0e'}
    """
    from fewshot_cli.algorithms import registry

    def family(record: dict) -> tuple[str, bool]:
        return record["algorithm"], record.get("order") == "first"

    first_in_cell: dict[tuple, str] = {}
    crowded = set()  # families with two labels in one cell: those need more than one colour
    for label, record in zip(labels, records):
        cell = (family(record), record.get("test_ways"), record.get("test_shots"))
        if first_in_cell.setdefault(cell, label) != label:
            crowded.add(family(record))
    owned = {c for name in registry.NAMES for c in colors_of(name).values()}
    spare = [c for c in PALETTE if c not in owned] + [c for c in PALETTE if c in owned]
    colors: dict[str, str] = {}
    for label, record in zip(labels, records):
        if label in colors:
            continue
        own = colors_of(record["algorithm"])
        base = own.get("first", own["ours"]) if family(record)[1] else own["ours"]
        used = set(colors.values())
        if family(record) not in crowded or base not in used:
            colors[label] = base
            continue
        free = [c for c in spare if c not in used]
        colors[label] = free[0] if free else PALETTE[len(colors) % len(PALETTE)]
    return colors


def accuracy_bars(table: pd.DataFrame) -> tuple[list[tuple[str, str]], list[tuple], list[str]]:
    """The bars of ``plot_accuracy`` for an ``aggregate`` table grouped by the protocol.

    Returns:
        ``(cells, bars, shared)``: the ``(ways, shots)`` cells in order; one bar per table line
        and per published result of a cell, as ``(cell index, label, height %, ci %, colour,
        hatch)``; and the ``column value`` notes that hold for every line.

    Raises:
        FewshotError: the table has no line (the CSVs have no rows).
    """
    from fewshot_cli.report.aggregate import natural_key
    from fewshot_cli.run.grid import PUBLISHED

    if table.empty:
        raise FewshotError("no evaluation rows to plot (the CSVs have a header only)")
    labels, shared = protocol_labels(table)
    colors = protocol_colors(labels, table.to_dict("records"))
    cells = sorted(
        dict.fromkeys(zip(table["test_ways"], table["test_shots"])),
        key=lambda cell: (natural_key(cell[0]), natural_key(cell[1])),
    )
    bars = []
    for index, (ways, shots) in enumerate(cells):
        here = (table["test_ways"] == ways) & (table["test_shots"] == shots)
        for label, record in zip(
            [name for name, h in zip(labels, here) if h], table[here].to_dict("records")
        ):
            ci = record["ci95"]
            bars.append(
                (
                    index,
                    label,
                    100 * record["accuracy_mean"],
                    0.0 if math.isnan(ci) else 100 * ci,
                    colors[label],
                    "",
                )
            )
        for algorithm in dict.fromkeys(table[here]["algorithm"]):
            key = (algorithm, int(natural_key(ways)[1]), int(natural_key(shots)[1]))
            if key in PUBLISHED:
                bars.append(
                    (
                        index,
                        f"{algorithm} (paper)",
                        PUBLISHED[key],
                        0.0,
                        colors_of(algorithm)["paper"],
                        "//",
                    )
                )
    return cells, bars, shared


def plot_accuracy(
    csv_patterns: Iterable[str | Path], out: str | Path, warn: Callable[[str], None] | None = None
) -> Path:
    """Test accuracy with 95% CI error bars per grid cell, ours beside the published numbers.

    Rows are grouped as ``fewshot aggregate`` groups them (by the whole protocol: split and part,
    backbone, training length, BatchNorm mode...), so a bar never averages two experiments; each
    bar is labelled with what sets it apart. Each published result (``reproduce.PUBLISHED``) for
    a cell we have is a lighter, hatched bar beside ours.

    Args:
        csv_patterns: evaluation CSVs (paths or glob patterns).
        out: the figure to write (see ``save`` for the formats).
        warn: told about repeated evaluations counted once.

    Example::

        plot_accuracy(["results/cpu/eval.csv"], "figures/accuracy.png")
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from fewshot_cli.report.aggregate import DEFAULT_BY, aggregate, read_results

    figure_format(out)
    table = aggregate(read_results(csv_patterns), by=DEFAULT_BY, warn=warn)
    cells, bars, shared = accuracy_bars(table)
    legend_lines = len({b[1] for b in bars})
    figure = Figure(
        figsize=(max(7.0, 2.4 * len(cells) + 2), 4.5 + 0.2 * legend_lines), layout="constrained"
    )
    axes = figure.subplots()
    per_cell = {i: [b for b in bars if b[0] == i] for i in range(len(cells))}
    width = 0.8 / max(len(v) for v in per_cell.values())
    for index, group in per_cell.items():
        for slot, (_, _name, height, ci, color, hatch) in enumerate(group):
            x = index + (slot - (len(group) - 1) / 2) * width
            axes.bar(
                x,
                height,
                width * 0.95,
                yerr=ci or None,
                capsize=4,
                color=color,
                hatch=hatch,
                edgecolor="#444444",
                linewidth=0.6,
            )
            axes.text(x, height + ci + 0.3, f"{height:.1f}", ha="center", va="bottom", fontsize=8)
    heights = [b[2] - b[3] for b in bars]
    axes.set_ylim(max(0.0, min(heights) - 5), 101.5)
    axes.set_xticks(range(len(cells)), [f"{w}-way {s}-shot" for w, s in cells])
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(
        "Omniglot test accuracy, ours (95% CI) and published"
        + (f"\nevery bar of ours: {', '.join(shared)}" if shared else ""),
        fontsize="medium",
    )
    axes.grid(axis="y", alpha=0.3)
    legend = {}
    for _, name, _, _, color, hatch in bars:
        legend.setdefault(
            name, Patch(facecolor=color, hatch=hatch, edgecolor="#444444", label=name)
        )
    # Below the bars: long protocol labels must not squeeze the axes.
    axes.legend(
        handles=list(legend.values()),
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncols=1 if len(legend) > 6 or max(map(len, legend)) > 60 else 2,
    )
    return save(figure, out)
