"""Tables of evaluation results: many CSV rows grouped into one line per setting.

Each row of an evaluation CSV is one evaluated run (one checkpoint, one episode seed). Rows are
grouped by the chosen columns; each group reports the mean accuracy, its 95% confidence
interval, the number of runs, the episodes behind them, and, where several runs (seeds) share a
group, the spread of their means.

What a run is: one training (one seed). Rows are matched to their training by the directory
of their ``checkpoint`` (every row ``eval`` writes has one; a row without it counts as a run of
its own). A training evaluated twice in one group (several episode seeds, or the same result
appended to two CSVs) is still one run: identical repeated rows count once, and the remaining
rows of one training are averaged into its run mean first (their CIs combined as below). So
``runs`` counts seeds and ``run_std`` is their spread, not the spread of test episodes.

How a group's CI is combined: the per-episode accuracies are not stored in the CSV, so the
pooled CI cannot be computed. The group accuracy is the mean of the run means ``m_i`` (each run
weighs the same), and the runs are independent, so ``Var(mean) = sum Var(m_i) / n^2`` and its
95% CI is ``sqrt(sum ci_i^2) / n`` (``ci_i = 1.96 * sd(m_i)``). That interval covers episode
sampling noise only, for these trainings. The variation between seeds is what ``run_std`` (the
sample standard deviation of the run means, ``n >= 2``) shows, and ``seeds_ci95`` is the 95% CI
of the mean over seeds, ``t(0.975, n - 1) * run_std / sqrt(n)`` (Student t): the interval to
quote for "mean ± CI over n seeds".
"""

from __future__ import annotations

import glob
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from fewshot_cli.algorithms import registry
from fewshot_cli.choices import FORMATS
from fewshot_cli.errors import FewshotError
from fewshot_cli.report.results import COLUMNS, REQUIRED

# Everything that defines an experiment's protocol: rows that differ in any of these are never
# averaged together by default. The algorithms' own protocol columns (``Algorithm.group_by``:
# MAML's order, test inner steps...) count where a CSV has them.
PROTOCOL = (
    "algorithm",
    *registry.group_columns(),
    "backbone",
    "split",
    "split_part",
    "rotations",
    "train_ways",
    "train_shots",
    "train_queries",
    "train_iterations",
    "init_from",
    "test_ways",
    "test_shots",
    "test_queries",
    "bn_mode",
)
DEFAULT_BY = PROTOCOL
# Shown in every default table; the other protocol columns only where they tell lines apart.
ALWAYS_SHOWN = ("algorithm", "split", "test_ways", "test_shots", "bn_mode")
# One checkpoint evaluated on the same episodes with the same test protocol: one run, not two.
SAME_EVALUATION = (
    "checkpoint",
    "checkpoint_iteration",
    "split_part",
    "test_ways",
    "test_shots",
    "test_queries",
    *registry.group_columns(),
    "bn_mode",
    "seed",
    "episodes",
)
STATS = ("accuracy_mean", "ci95", "runs", "episodes", "run_std", "seeds_ci95")
GLOB_CHARS = set("*?[")
# Columns that differ between two appends of the same evaluation.
INCIDENTAL = ("timestamp", "eval_seconds", "version", "source")
# Student t quantiles t(0.975, df) for df = 1..30 (scipy.stats.t.ppf); beyond, an expansion.
T975 = (
    12.7062,
    4.3027,
    3.1824,
    2.7764,
    2.5706,
    2.4469,
    2.3646,
    2.3060,
    2.2622,
    2.2281,
    2.2010,
    2.1788,
    2.1604,
    2.1448,
    2.1314,
    2.1199,
    2.1098,
    2.1009,
    2.0930,
    2.0860,
    2.0796,
    2.0739,
    2.0687,
    2.0639,
    2.0595,
    2.0555,
    2.0518,
    2.0484,
    2.0452,
    2.0423,
)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (for a 95% CI).

    Example:
        >>> t975(2)
        4.3027
    """
    if df < 1:
        return math.nan
    if df <= len(T975):
        return T975[df - 1]
    z, v = 1.959963984540054, float(df)  # Abramowitz & Stegun 26.7.5, < 1e-7 off beyond 30
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


def expand_patterns(patterns: Iterable[str | Path]) -> list[Path]:
    """The files named by ``patterns`` (paths or glob patterns, ``**`` allowed), in order, once each.

    Raises:
        FewshotError: a pattern matches no file.

    Example::

        expand_patterns(["results/*.csv"])
        # [PosixPath('results/a.csv'), PosixPath('results/b.csv')]
    """
    files: list[Path] = []
    for pattern in patterns:
        pattern = str(pattern)
        if GLOB_CHARS & set(pattern):
            matches = sorted(
                Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()
            )
        else:
            matches = [Path(pattern)] if Path(pattern).exists() else []
        if not matches:
            raise FewshotError(f"no file matches {pattern}")
        files += [m for m in matches if m not in files]
    if not files:
        raise FewshotError("no evaluation CSV given")
    return files


def read_csv(path: Path) -> pd.DataFrame:
    """One evaluation CSV as strings (empty cells as ``""``), with numeric ``accuracy_mean``.

    Raises:
        FewshotError: the file is unreadable, not a CSV, or lacks the evaluation columns.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise FewshotError(f"{path} is not an evaluation CSV: it is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FewshotError(f"{path} is not an evaluation CSV: {first[:120]}") from None
    except OSError as exc:
        raise FewshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    missing = REQUIRED - set(frame.columns)
    if missing:
        raise FewshotError(
            f"{path} is not an evaluation CSV (no {', '.join(sorted(missing))} column)"
        )
    accuracy = pd.to_numeric(frame["accuracy_mean"], errors="coerce")
    bad = accuracy.isna() | (accuracy < 0) | (accuracy > 1)
    if bad.any():
        line = int(bad.to_numpy().argmax()) + 2  # header is line 1
        raise FewshotError(
            f"{path}:{line}: accuracy_mean "
            f"'{frame['accuracy_mean'].iloc[line - 2]}' is not a number in [0, 1]"
        )
    frame["accuracy_mean"] = accuracy
    return frame


def read_results(patterns: Iterable[str | Path]) -> pd.DataFrame:
    """All rows of the evaluation CSVs matching ``patterns``, with a ``source`` column.

    Columns missing from older files are filled with ``""``, so their rows still aggregate.

    Example::

        rows = read_results(["results/eval.csv", "old/*.csv"])
    """
    frames = []
    for path in expand_patterns(patterns):
        frame = read_csv(path)
        frame["source"] = str(path)
        frame["line"] = range(2, len(frame) + 2)  # the header is line 1
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True, sort=False)
    text_columns = [c for c in rows.columns if c not in ("accuracy_mean", "line")]
    rows[text_columns] = rows[text_columns].fillna("")
    return rows


def natural_key(value: str) -> tuple:
    """Sort numbers as numbers (5 before 20) and empty values last."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1 if value else 2, 0.0, str(value))


def drop_repeated(rows: pd.DataFrame, warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """``rows`` without repeated evaluations: the same checkpoint (file and iteration) tested
    again on the same episodes (seed, count, part, ways, shots, queries, BatchNorm mode, MAML
    steps) is one run, counted once (its latest row); ``warn`` hears which rows were dropped.

    Rows that lack the checkpoint or the episode seed (older CSVs) are all kept.

    Example::

        rows = drop_repeated(read_results(["results/eval.csv"]), warn=print)
    """
    if not {"checkpoint", "seed"} <= set(rows.columns):
        return rows
    known = (rows["checkpoint"] != "") & (rows["seed"] != "")
    key = (
        rows[[c for c in SAME_EVALUATION if c in rows.columns]].astype(str).agg("\x1f".join, axis=1)
    )
    repeated = known & key.duplicated(keep="last")
    if repeated.any() and warn is not None:

        def where(index) -> str:
            row = rows.loc[index]
            return (
                f"{row['source']}:{row['line']}"
                if "source" in rows.columns and "line" in rows.columns
                else f"row {index + 1}"
            )

        for value in dict.fromkeys(key[repeated]):
            same = key.index[known & (key == value)]
            first = rows.loc[same[0]]
            warn(
                f"{', '.join(where(i) for i in same)} evaluate the same checkpoint "
                f"({first['checkpoint']}) on the same episodes: counted once "
                f"({where(same[-1])})"
            )
    return rows[~repeated]


def aggregate(
    rows: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, warn: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """One line per group of ``rows``: accuracy, 95% CI, runs, episodes and spread across runs.

    Args:
        rows: evaluation rows (see ``read_results``); each counts as one run, except repeated
            evaluations of one checkpoint on the same episodes (see ``drop_repeated``).
        by: the grouping columns; by default every column of the protocol (``PROTOCOL``), so
            rows of different experiments are never averaged. Columns of ``results.COLUMNS``
            (or of ``PROTOCOL``) that the rows lack are taken as empty; any other unknown
            column is an error.
        warn: told about repeated evaluations counted once.

    Returns:
        The ``by`` columns then ``accuracy_mean`` (mean of the run means), ``ci95`` (combined
        as ``sqrt(sum ci_i^2) / runs``, see the module docstring; NaN when a run lacks its CI),
        ``runs`` (trainings, see the module docstring), ``episodes`` (summed; NaN when a run
        lacks the count), ``run_std`` (standard deviation of the run means, NaN for a single
        run) and ``seeds_ci95`` (95% CI of the mean over the runs, Student t; NaN for a
        single run); fractions, not percent.

    Example::

        aggregate(read_results(["results/eval.csv"]), by=["algorithm", "test_shots"])
    """
    by = list(dict.fromkeys(by))
    if not by:
        raise FewshotError("give at least one column to group by")
    clash = [c for c in by if c in STATS]
    if clash:
        raise FewshotError(
            f"cannot group by '{clash[0]}': it is one of the summary columns ({', '.join(STATS)})"
        )
    rows = drop_repeated(rows, warn).copy()
    for column in by:
        if column not in rows.columns:
            if column not in COLUMNS and column not in PROTOCOL:
                known = ", ".join(c for c in COLUMNS if c in rows.columns)
                raise FewshotError(
                    f"unknown column '{column}' to group by (the CSVs have: {known})"
                )
            rows[column] = ""
    rows = rows.drop_duplicates([c for c in rows.columns if c not in INCIDENTAL], keep="last")
    for column in ("ci95", "episodes"):
        values = rows[column] if column in rows.columns else pd.Series("", index=rows.index)
        rows[f"_{column}"] = pd.to_numeric(values, errors="coerce")
    rows["_run"] = training_keys(rows)
    records = []
    for keys, group in rows.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        runs = group.groupby("_run", sort=False).agg(
            mean=("accuracy_mean", "mean"),
            count=("accuracy_mean", "size"),
            square=("_ci95", lambda c: (c**2).sum() if c.notna().all() else math.nan),
            episodes=("_episodes", lambda e: e.sum() if e.notna().all() else math.nan),
        )
        n = len(runs)
        means = runs["mean"]
        cis = (runs["square"] ** 0.5) / runs["count"]  # each run's CI, as for a group below
        std = means.std(ddof=1) if n > 1 else math.nan
        records.append(
            {
                **dict(zip(by, keys)),
                "accuracy_mean": means.mean(),
                # hypot, not sqrt of a sum of squares: one run's CI comes back exactly as stored.
                "ci95": math.hypot(*cis) / n if cis.notna().all() else math.nan,
                "runs": n,
                "episodes": runs["episodes"].sum() if runs["episodes"].notna().all() else math.nan,
                "run_std": std,
                "seeds_ci95": t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan,
            }
        )
    records.sort(key=lambda r: tuple(natural_key(r[c]) for c in by))
    return pd.DataFrame(records, columns=[*by, *STATS])


def training_keys(rows: pd.DataFrame) -> list[str]:
    """The training each row evaluates: its checkpoint's directory and training seed, or the
    row itself when it names no checkpoint (see the module docstring).

    Example:
        >>> training_keys(pd.DataFrame({"checkpoint": ["runs/a/best.pt", "runs/a/last.pt"]}))
        ['runs/a|', 'runs/a|']
    """
    checkpoints = (
        rows["checkpoint"] if "checkpoint" in rows.columns else pd.Series("", index=rows.index)
    )
    seeds = rows["train_seed"] if "train_seed" in rows.columns else pd.Series("", index=rows.index)
    return [
        f"{Path(c).parent}|{s}" if c else f"row {i}"
        for i, (c, s) in enumerate(zip(checkpoints, seeds))
    ]


def percent(value: float, digits: int = 2) -> str:
    """``0.98712`` as ``98.71``; NaN as an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * value:.{digits}f}"


def format_accuracy(row: dict) -> str:
    """An evaluation row's ``accuracy_mean ± ci95`` in percent, rounded as every table rounds it.

    Printed from the row's stored values (not the unrounded result), so a progress line and a
    later table of the same row never differ in the last digit.

    Example:
        >>> format_accuracy({"accuracy_mean": "0.91524", "ci95": "0.02405"})
        '91.52% ± 2.40%'
    """
    ci = pd.to_numeric(row.get("ci95", ""), errors="coerce")
    text = f"{percent(float(row['accuracy_mean']))}%"
    return text + (f" ± {percent(float(ci))}%" if pd.notna(ci) else "")


def render(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    fmt: str = "table",
    right: Iterable[str] = (),
) -> str:
    """Text of a table of strings: aligned columns (``table``) or a Markdown table (``markdown``).

    Args:
        headers: column titles.
        rows: cells, already formatted.
        fmt: ``table`` or ``markdown``.
        right: titles of the columns to align right (numbers).

    Example:
        >>> print(render(["a", "n"], [["x", "1"]], "markdown", right=["n"]))
        | a | n |
        | :-- | --: |
        | x | 1 |
    """
    right = set(right)
    if fmt == "markdown":

        def line(cells):
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        rule = ["--:" if h in right else ":--" for h in headers]
        return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])
    if fmt != "table":
        raise FewshotError(f"unknown format '{fmt}' (choose from table, markdown)")
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]

    def aligned(cells):
        return "  ".join(
            str(c).rjust(w) if h in right else str(c).ljust(w)
            for c, w, h in zip(cells, widths, headers)
        ).rstrip()

    return "\n".join([aligned(headers), "  ".join("-" * w for w in widths), *map(aligned, rows)])


def shown_columns(table: pd.DataFrame, always: Sequence[str]) -> tuple[list[str], list[str]]:
    """The grouping columns of ``table`` worth a column, and ``name value`` notes of the rest.

    Columns in ``always`` are shown; another is shown where its value differs between lines,
    noted once when every line has the same value, and left out when it is empty everywhere.
    """
    shown, same = [], []
    for column in (c for c in table.columns if c not in STATS):
        values = set(table[column])
        if column in always or len(values) > 1:
            shown.append(column)
        elif values - {""}:
            same.append(f"{column} {values.pop()}")
    return shown, same


def format_table(
    table: pd.DataFrame, fmt: str = "table", always: Sequence[str] | None = None
) -> str:
    """Text of an ``aggregate`` result: a terminal table, a Markdown table, or a tidy CSV.

    ``table`` and ``markdown`` show percentages (accuracy as ``mean ± ci95``); ``csv`` keeps the
    fractions in separate columns, with empty cells for missing values.

    Args:
        table: the result of ``aggregate``.
        fmt: ``table``, ``markdown`` or ``csv``.
        always: show these grouping columns, and of the others only those that tell lines apart
            (the values every line shares are noted under the table). ``None``: show all.

    Example::

        print(format_table(aggregate(rows), "markdown", always=ALWAYS_SHOWN))
    """
    if fmt not in FORMATS:
        raise FewshotError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    if fmt == "csv":
        return table.to_csv(index=False, lineterminator="\n", float_format="%.5f")
    by, same = (
        ([c for c in table.columns if c not in STATS], [])
        if always is None
        else shown_columns(table, always)
    )
    headers = [*by, "accuracy (%)", "runs", "episodes", "run std (%)", "seeds CI95 (%)"]
    rows = []
    for record in table.to_dict("records"):
        accuracy = percent(record["accuracy_mean"])
        if not math.isnan(record["ci95"]):
            accuracy += f" ± {percent(record['ci95'])}"
        episodes = "" if math.isnan(record["episodes"]) else str(int(record["episodes"]))
        rows.append(
            [
                *(record[c] for c in by),
                accuracy,
                str(record["runs"]),
                episodes,
                percent(record["run_std"]),
                percent(record["seeds_ci95"]),
            ]
        )
    text = render(headers, rows, fmt, right=headers[len(by) :]) + "\n"
    if same:
        text += ("\n" if fmt == "markdown" else "") + f"Every line: {', '.join(same)}.\n"
    return text


def aggregate_files(
    patterns: Iterable[str | Path],
    by: Sequence[str] | None = None,
    fmt: str = "table",
    warn: Callable[[str], None] | None = None,
) -> str:
    """Read, group and format evaluation CSVs in one call (what ``fewshot aggregate`` prints).

    ``by=None`` groups by the whole protocol and shows the columns that tell lines apart (see
    ``format_table``); chosen columns are all shown.

    Example::

        print(aggregate_files(["results/*.csv"], by=["algorithm"], fmt="markdown"))
    """
    if fmt not in FORMATS:
        raise FewshotError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    table = aggregate(read_results(patterns), by or DEFAULT_BY, warn)
    return format_table(table, fmt, always=ALWAYS_SHOWN if by is None else None)
