"""PNG figures: training curves of run directories, and test accuracy per grid cell.

Figures are drawn on matplotlib's Agg canvas (``matplotlib.figure.Figure`` without pyplot), so
no display is needed and no global backend state changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from fewshot_cli.errors import FewshotError

DPI = 120
UNKNOWN_COLORS = {"ours": "#7f7f7f", "paper": "#c7c7c7"}  # an algorithm this version lacks


def colors_of(algorithm: str) -> dict:
    """Plot colours of ``algorithm`` (``Algorithm.colors``): ours strong, the paper's lighter."""
    from fewshot_cli.algorithms import registry

    return dict(registry.get(algorithm).colors) if algorithm in registry.NAMES else UNKNOWN_COLORS


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
        raise FewshotError(f"{path} has no validation rows yet")
    return log


def save(figure, out: str | Path) -> Path:
    """Write ``figure`` as a PNG, creating the folder."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=DPI, format="png")
    except OSError as exc:
        raise FewshotError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def plot_curves(run_dirs: Iterable[str | Path], out: str | Path) -> Path:
    """Validation accuracy against iterations and against wall-clock time, one line per run.

    Args:
        run_dirs: training run directories (each with a ``log.csv``).
        out: the PNG to write.

    Example:
        >>> plot_curves(["runs/maml", "runs/proto"], "figures/curves.png")
    """
    from matplotlib.figure import Figure

    curves = {}
    for run_dir in run_dirs:
        label = Path(run_dir).resolve().name
        curves[label if label not in curves else str(run_dir)] = read_curve(run_dir)
    if not curves:
        raise FewshotError("give at least one run directory")
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    by_iteration, by_time = figure.subplots(1, 2, sharey=True)
    for label, log in curves.items():
        marker = "o" if len(log) < 30 else None
        line, = by_iteration.plot(log["iteration"], 100 * log["val_accuracy"], marker=marker,
                                  markersize=3, label=label)
        by_time.plot(log["elapsed_seconds"] / 60, 100 * log["val_accuracy"], marker=marker,
                     markersize=3, color=line.get_color(), label=label)
    by_iteration.set(xlabel="iteration (meta-iteration or episode)", ylabel="validation accuracy (%)",
                     title="Validation accuracy by iteration")
    by_time.set(xlabel="wall-clock time (minutes)", title="Validation accuracy by training time")
    for axes in (by_iteration, by_time):
        axes.grid(alpha=0.3)
    by_iteration.legend(fontsize="small")
    return save(figure, out)


def plot_accuracy(csv_patterns: Iterable[str | Path], out: str | Path) -> Path:
    """Test accuracy with 95% CI error bars per grid cell, ours beside the published numbers.

    Rows are grouped by cell, algorithm and the algorithms' variant columns (``Algorithm.
    group_by``: MAML's order), as ``aggregate`` does; each group is a bar, and each published result (``reproduce.PUBLISHED``) for a cell we have is a lighter,
    hatched bar beside it.

    Args:
        csv_patterns: evaluation CSVs (paths or glob patterns).
        out: the PNG to write.

    Example:
        >>> plot_accuracy(["results/cpu/eval.csv"], "figures/accuracy.png")
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from fewshot_cli.algorithms import registry
    from fewshot_cli.report.aggregate import aggregate, natural_key, read_results
    from fewshot_cli.report.reproduce import PUBLISHED

    variants = list(registry.group_columns())
    table = aggregate(read_results(csv_patterns),
                      by=["test_ways", "test_shots", "algorithm", *variants])
    cells = list(dict.fromkeys(zip(table["test_ways"], table["test_shots"])))
    bars = []  # (cell index, label, height %, ci %, colour, hatch)
    for index, (ways, shots) in enumerate(cells):
        here = table[(table["test_ways"] == ways) & (table["test_shots"] == shots)]
        for algorithm in dict.fromkeys(here["algorithm"]):
            colors = colors_of(algorithm)
            for record in here[here["algorithm"] == algorithm].to_dict("records"):
                values = [record[v] for v in variants if record[v]]
                variant = "".join(f", {record[v]} {v}" for v in variants if record[v])
                color = next((colors[v] for v in values if v in colors), colors["ours"])
                ci = record["ci95"]
                bars.append((index, f"{algorithm}{variant} (ours)", 100 * record["accuracy_mean"],
                             0.0 if math.isnan(ci) else 100 * ci, color, ""))
            key = (algorithm, int(natural_key(ways)[1]), int(natural_key(shots)[1]))
            if key in PUBLISHED:
                bars.append((index, f"{algorithm} (paper)", PUBLISHED[key], 0.0, colors["paper"],
                             "//"))
    figure = Figure(figsize=(max(6.0, 2.4 * len(cells) + 2), 4.5), layout="constrained")
    axes = figure.subplots()
    per_cell = {i: [b for b in bars if b[0] == i] for i in range(len(cells))}
    width = 0.8 / max(len(v) for v in per_cell.values())
    for index, group in per_cell.items():
        for slot, (_, name, height, ci, color, hatch) in enumerate(group):
            x = index + (slot - (len(group) - 1) / 2) * width
            axes.bar(x, height, width * 0.95, yerr=ci or None, capsize=4, color=color,
                     hatch=hatch, edgecolor="#444444", linewidth=0.6)
            axes.text(x, height + ci + 0.3, f"{height:.1f}", ha="center", va="bottom", fontsize=8)
    heights = [b[2] - b[3] for b in bars]
    axes.set_ylim(max(0.0, min(heights) - 5), 101.5)
    axes.set_xticks(range(len(cells)), [f"{w}-way {s}-shot" for w, s in cells])
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Omniglot test accuracy, ours (95% CI) and published")
    axes.grid(axis="y", alpha=0.3)
    legend = {}
    for _, name, _, _, color, hatch in bars:
        legend.setdefault(name, Patch(facecolor=color, hatch=hatch, edgecolor="#444444", label=name))
    axes.legend(handles=list(legend.values()), fontsize="small", loc="upper left",
                bbox_to_anchor=(1.01, 1.0))
    return save(figure, out)
