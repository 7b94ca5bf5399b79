"""Figures (PNG, PDF or SVG): test accuracy per grid cell here, training curves in ``curves``.

Figures are drawn on matplotlib's Agg canvas (``Figure`` without pyplot): no display needed.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fewshot_cli.errors import FewshotError

DPI = 120
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}  # matplotlib's name for each
UNKNOWN_COLORS = {"ours": "#7f7f7f", "paper": "#c7c7c7"}  # an algorithm this version lacks


# Protocol columns every bar shares that a reader of the figure need not be told (the title
# names the dataset; `aggregate` shows them all).
UNSHOWN = (
    "dataset",
    "precision",
    "image_size",
    "channels",
    "filters",
    "data",
    "split_seed",
    "split_fractions",
    "split_part",
    "val_ways",
    "val_shots",
    "val_queries",
    "val_every",
    "val_episodes",
)


def colors_of(algorithm: str) -> dict:
    """Plot colours of ``algorithm`` (``Paper.colors``): ours strong, the paper's lighter."""
    from fewshot_cli.algorithms.papers import PAPERS

    return dict(PAPERS[algorithm].colors) if algorithm in PAPERS else UNKNOWN_COLORS


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


def protocol_labels(
    table: pd.DataFrame, axis: tuple[str, ...] = ("test_ways", "test_shots")
) -> tuple[list[str], list[str], list[str]]:
    """Each line's family, what sets it apart within its family, and what every line shares.

    A family is an algorithm (and MAML's order); a line's details name each protocol column
    whose value differs between the lines of its family (``axis`` columns aside: the x axis
    shows them), e.g. ``6000 it, vmap engine``.

    Example::

        families, details, shared = protocol_labels(aggregate(rows))
    """
    from fewshot_cli.report.tables import STATS, shown_columns

    _, shared = shown_columns(table, always=("algorithm", "order"))
    families = [
        r["algorithm"] + (f" {r['order']} order" if r.get("order") else "")
        for r in table.to_dict("records")
    ]
    details = [""] * len(table)
    for family in dict.fromkeys(families):
        lines = [i for i, f in enumerate(families) if f == family]
        own = table.iloc[lines]
        varying = [
            c
            for c in own.columns
            if c not in ("algorithm", "order", *axis, *STATS, *UNSHOWN) and own[c].nunique() > 1
        ]
        if {"train_ways", "train_shots"} & set(varying):
            varying = [c for c in varying if c != "train_shots"]  # both in one: trained 5w1s
        for i, record in zip(lines, own.to_dict("records")):
            words = [c for c in varying if record[c] != ""]
            if [record.get("train_ways"), record.get("train_shots")] == [
                record.get("test_ways"),
                record.get("test_shots"),
            ]:  # trained at the cell it is tested at: the x axis says so
                words = [c for c in words if c not in ("train_ways", "train_shots")]
            details[i] = ", ".join(protocol_word(c, record) for c in words)
    return families, details, [s for s in shared if not s.startswith(axis)]


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
        "inner_steps_train": f"{value} inner steps",
        "inner_steps_test": f"{value} test steps",
        "inner_lr": f"inner lr {value}",
        "engine": f"{value} engine",
        "meta_batch": f"meta-batch {value}",
        "lr": f"Adam {value}",
        "lr_halve_every": f"halved every {value}" if value not in ("0", "") else "constant lr",
        "init_from": f"from {value}",
        "bn_mode": f"BN {value}",
    }
    return words.get(column, f"{column} {value}")


@dataclass(frozen=True)
class Bar:
    """One bar of ``plot_accuracy``.

    Attributes:
        cell: the index of its grid cell on the x axis.
        family: its algorithm (and MAML's order): its colour and legend entry.
        height, ci: accuracy and 95% CI, in percent (CI 0 for a published number).
        paper: a published number (hatched) rather than ours.
        tag: ``a``, ``b``...: several lines of one family in one cell, told apart in the caption.
        details: what sets it apart from its family's other lines (the caption's words).
    """

    cell: int
    family: str
    height: float
    ci: float
    paper: bool = False
    tag: str = ""
    details: str = ""

    @property
    def color(self) -> str:
        own = colors_of(self.family.split()[0])
        if self.paper:
            return own["paper"]
        return own.get("first", own["ours"]) if "first order" in self.family else own["ours"]


def accuracy_bars(table: pd.DataFrame) -> tuple[list[tuple[str, str]], list[Bar], list[str]]:
    """The bars of ``plot_accuracy`` for an ``aggregate`` table grouped by the protocol.

    Returns:
        ``(cells, bars, shared)``: the ``(ways, shots)`` cells in order; one bar per table line
        and per published result of a cell; and the ``column value`` notes that hold for every
        line.

    Raises:
        FewshotError: the table has no line (the CSVs have no rows).
    """
    from fewshot_cli.algorithms.papers import PUBLISHED
    from fewshot_cli.report.aggregate import natural_key

    if table.empty:
        raise FewshotError("no evaluation rows to plot (the CSVs have a header only)")
    families, details, shared = protocol_labels(table)
    cells = sorted(
        dict.fromkeys(zip(table["test_ways"], table["test_shots"])),
        key=lambda cell: (natural_key(cell[0]), natural_key(cell[1])),
    )
    bars, published = [], set()
    for index, cell in enumerate(cells):
        here = [i for i, c in enumerate(zip(table["test_ways"], table["test_shots"])) if c == cell]
        for family in dict.fromkeys(families[i] for i in here):
            lines = [i for i in here if families[i] == family]
            for n, i in enumerate(lines):
                record = table.iloc[i]
                ci = 0.0 if math.isnan(record["ci95"]) else 100 * record["ci95"]
                tag = "abcdefghijklmnopqrstuvwxyz"[n] if len(lines) > 1 else ""
                bars.append(
                    Bar(index, family, 100 * record["accuracy_mean"], ci, False, tag, details[i])
                )
            key = (family.split()[0], int(natural_key(cell[0])[1]), int(natural_key(cell[1])[1]))
            if key in PUBLISHED and key not in published:  # once per algorithm and cell
                published.add(key)
                bars.append(Bar(index, key[0], PUBLISHED[key], 0.0, paper=True))
    return cells, bars, shared


def caption(cells: list[tuple[str, str]], bars: list[Bar]) -> list[str]:
    """Lines under the plot: per family, what each cell's training was where they differ.

    Example::

        caption([("5", "1")], [Bar(0, "maml", 97.1, 0.3, details="6000 it")])
        # ['maml: 5w1s 6000 it']
    """
    lines = []
    for family in dict.fromkeys(b.family for b in bars if not b.paper):
        parts = [
            f"{cells[b.cell][0]}w{cells[b.cell][1]}s{' ' + b.tag if b.tag else ''} {b.details}"
            for b in bars
            if b.family == family and not b.paper and (b.details or b.tag)
        ]
        if parts:
            lines.append(f"{family}: " + "; ".join(p.strip() for p in parts))
    return lines


def plot_accuracy(
    csv_patterns: Iterable[str | Path], out: str | Path, warn: Callable[[str], None] | None = None
) -> Path:
    """Test accuracy with 95% CI error bars per grid cell, ours beside the published numbers.

    Rows are grouped by the whole protocol (as ``fewshot aggregate``), so a bar never averages
    two experiments. One colour per algorithm: ours solid, published hatched; how the cells'
    trainings differ is written under the plot, with letters for several bars of one family.

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
    notes = caption(cells, bars)
    wrapped = [textwrap.fill(n, 130, subsequent_indent="    ") for n in notes]
    note_lines = sum(w.count("\n") + 1 for w in wrapped)
    figure = Figure(
        figsize=(max(9.0, 2.4 * len(cells) + 2), 4.8 + 0.18 * note_lines), layout="constrained"
    )
    axes = figure.subplots()
    per_cell = {i: [b for b in bars if b.cell == i] for i in range(len(cells))}
    width = 0.8 / max(len(v) for v in per_cell.values())
    for index, group in per_cell.items():
        for slot, bar in enumerate(group):
            x = index + (slot - (len(group) - 1) / 2) * width
            axes.bar(
                x,
                bar.height,
                width * 0.95,
                yerr=bar.ci or None,
                capsize=4,
                color=bar.color,
                hatch="//" if bar.paper else "",
                edgecolor="#444444",
                linewidth=0.6,
            )
            text = f"{bar.height:.1f}" + (f"\n{bar.tag}" if bar.tag else "")
            axes.text(x, bar.height + bar.ci + 0.3, text, ha="center", va="bottom", fontsize=8)
    heights = [b.height - b.ci for b in bars]
    axes.set_ylim(max(0.0, min(heights) - 5), 102.5)
    axes.set_xticks(range(len(cells)), [f"{w}-way {s}-shot" for w, s in cells])
    axes.set_ylabel("test accuracy (%)")
    datasets = table["dataset"].unique() if "dataset" in table else ["omniglot"]
    title = f"{'/'.join(datasets)} test accuracy, ours (95% CI, solid) and published (hatched)"
    common = [s for s in shared if s.split()[0] not in UNSHOWN]
    if common:
        title += "\n" + textwrap.fill("all of ours: " + ", ".join(common), 110)
    axes.set_title(title, fontsize="medium")
    axes.grid(axis="y", alpha=0.3)
    legend = {}
    for bar in bars:  # one entry per family and kind: the caption says how cells differ
        family = bar.family.split()[0] if bar.paper else bar.family
        kind = "paper" if bar.paper else "ours"
        legend.setdefault(family.split()[0], {})[kind] = Patch(
            facecolor=bar.color,
            hatch="//" if bar.paper else "",
            edgecolor="#444444",
            label=f"{family} ({kind})",
        )
    handles = [h for pair in legend.values() for h in (pair.get("ours"), pair.get("paper")) if h]
    # Below the axes, one column per algorithm (ours above its paper's): the bars stay clear.
    axes.legend(
        handles=handles,
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
        ncols=max(1, len(legend)),
    )
    if wrapped:
        figure.supxlabel("\n".join(wrapped), fontsize="small", ha="left", x=0.01)
    return save(figure, out)
