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

import csv
import glob
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from fewshot_cli.atomic import atomic_write_text
from fewshot_cli.choices import FORMATS
from fewshot_cli.errors import FewshotError
from fewshot_cli.run import protocol
from fewshot_cli.run.results import COLUMNS, REQUIRED, csv_kind

# Everything that defines an experiment's protocol (declared once, in ``run.protocol``): rows
# that differ in any of these are never averaged together by default.
PROTOCOL = protocol.PROTOCOL_COLUMNS
DEFAULT_BY = PROTOCOL
# Shown in every default table; the other protocol columns only where they tell lines apart.
ALWAYS_SHOWN = ("algorithm", "split", "test_ways", "test_shots", "bn_mode")
# What "±" means in every table of results (aggregate, reproduce): one meaning, one label.
CI_NOTE = (
    "±: 95% CI over the test episodes; seeds CI95: 95% CI of the mean over the runs' training "
    "seeds (Student t)."
)
STATS = ("accuracy_mean", "ci95", "runs", "episodes", "run_std", "seeds_ci95")
GLOB_CHARS = set("*?[")
# Columns that differ between two appends of the same evaluation (and where a row was read).
INCIDENTAL = ("timestamp", "eval_seconds", "version", "source", "line")
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


def expand_patterns(
    patterns: Iterable[str | Path], warn: Callable[[str], None] | None = None
) -> list[Path]:
    """The evaluation CSVs named by ``patterns`` (paths or glob patterns, ``**`` allowed), in
    order, once each. A file a pattern matches that is an ``aggregate`` summary is left out
    (``warn`` hears which); one named by its path is refused.

    Raises:
        FewshotError: a pattern matches no file, or a named file is a summary.

    Example::

        expand_patterns(["results/*.csv"])
        # [PosixPath('results/a.csv'), PosixPath('results/b.csv')]
    """
    files: list[Path] = []
    for pattern in patterns:
        pattern, summaries = str(pattern), []
        if GLOB_CHARS & set(pattern):
            matches = sorted(
                Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()
            )
            summaries = [m for m in matches if is_summary(m)]
            for summary in summaries:
                if warn is not None:
                    warn(f"{summary} is a summary written by fewshot aggregate: left out")
            matches = [m for m in matches if m not in summaries]
        else:
            matches = [Path(pattern)] if Path(pattern).exists() else []
            if matches and is_summary(matches[0]):
                raise FewshotError(
                    f"{pattern} is a summary written by fewshot aggregate, not an evaluation CSV"
                )
        if not matches:
            raise FewshotError(
                f"no evaluation CSV matches {pattern}"
                if summaries
                else f"no file matches {pattern}"
            )
        files += [m for m in matches if m not in files]
    if not files:
        raise FewshotError("no evaluation CSV given")
    return files


def is_summary(path: Path) -> bool:
    """Whether ``path`` is a CSV written by ``aggregate --format csv`` (see ``results.SUMMARY``)."""
    try:
        with open(path, newline="") as handle:
            header = next(csv.reader([handle.readline()]), [])
    except (OSError, UnicodeDecodeError):
        return False
    return csv_kind(header) == "summary"


def read_csv(path: Path, legacy: bool = True) -> pd.DataFrame:
    """One evaluation CSV as strings (empty cells as ``""``), with numeric ``accuracy_mean``.

    With ``legacy``, columns the CSV predates get their legacy values (``protocol.fill_legacy``).

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
    if csv_kind(list(frame.columns)) == "summary":
        raise FewshotError(
            f"{path} is a summary written by fewshot aggregate, not an evaluation CSV"
        )
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
    return protocol.fill_legacy(frame) if legacy else frame


def read_results(
    patterns: Iterable[str | Path], warn: Callable[[str], None] | None = None
) -> pd.DataFrame:
    """All rows of the evaluation CSVs matching ``patterns``, with ``source`` and ``line``.

    ``warn`` hears which matched files were left out as ``aggregate`` summaries.

    Example::

        rows = read_results(["results/eval.csv", "old/*.csv"])
    """
    frames = []
    for path in expand_patterns(patterns, warn):
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


def where(rows: pd.DataFrame, index) -> str:
    """``file:line`` of a row read by ``read_results`` (``row N`` for rows from elsewhere)."""
    if {"source", "line"} <= set(rows.columns):
        return f"{rows.loc[index, 'source']}:{rows.loc[index, 'line']}"
    return f"row {index + 1}"


def drop_repeated(rows: pd.DataFrame, warn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """``rows`` without repeated evaluations: one training (run directory and seed) tested
    again on the same episodes (the same test protocol and episode seed), with the same or
    another of its checkpoints, is one result, not two independent ones. The row with the most
    episodes is kept (the latest of those); ``warn`` hears which rows were merged.

    Rows that lack the checkpoint or the episode seed (older CSVs) are all kept.

    Example::

        rows = drop_repeated(read_results(["results/eval.csv"]), warn=print)
    """
    if not {"checkpoint", "seed"} <= set(rows.columns) or rows.empty:
        return rows
    known = (rows["checkpoint"] != "") & (rows["seed"] != "")
    columns = [c for c in (*PROTOCOL, "seed") if c in rows.columns]
    key = (
        pd.Series(training_keys(rows), index=rows.index)
        + "\x1f"
        + rows[columns].astype(str).agg("\x1f".join, axis=1)
    )
    episodes = pd.to_numeric(rows.get("episodes", pd.Series("", index=rows.index)), "coerce")
    ranked = pd.DataFrame({"key": key, "episodes": episodes.fillna(0), "at": range(len(rows))})
    kept = ranked[known].sort_values(["episodes", "at"]).drop_duplicates("key", keep="last").index
    repeated = known & ~rows.index.isin(kept)
    if repeated.any() and warn is not None:
        for value in dict.fromkeys(key[repeated]):
            same = key.index[known & (key == value)]
            keep = next(i for i in same if i in kept)
            row = rows.loc[keep]
            checkpoints = sorted(set(rows.loc[same, "checkpoint"]))
            what = (
                f"the same checkpoint ({checkpoints[0]})"
                if len(checkpoints) == 1
                else f"checkpoints of one training ({', '.join(checkpoints)})"
            )
            warn(
                f"{', '.join(where(rows, i) for i in same)} evaluate {what} on the same "
                f"episodes (seed {row['seed']}): counted once ({where(rows, keep)})"
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
        if warn is not None and n > 1:
            warn_same_seed(group, warn)
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


def warn_same_seed(group: pd.DataFrame, warn: Callable[[str], None]) -> None:
    """Warn when runs of one group were trained with the same seed: their spread is then no
    spread across seeds (the same training repeated, or one copied)."""
    if "train_seed" not in group.columns:
        return
    runs = group[group["train_seed"] != ""].drop_duplicates("_run")
    for seed, same in runs.groupby("train_seed", sort=False):
        if len(same) > 1:
            names = ", ".join(str(Path(c).parent) for c in same["checkpoint"])
            warn(
                f"{names} were trained with the same seed {seed}: they count as {len(same)} "
                "runs, but their spread is not a spread across seeds"
            )


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
    notes = [f"Every line: {', '.join(same)}."] if same else []
    notes.append(CI_NOTE)
    return text + ("\n" if fmt == "markdown" else "") + "\n".join(notes) + "\n"


def aggregate_files(
    patterns: Iterable[str | Path],
    by: Sequence[str] | None = None,
    fmt: str = "table",
    warn: Callable[[str], None] | None = None,
    out: str | Path | None = None,
) -> str:
    """Read, group and format evaluation CSVs in one call (what ``fewshot aggregate`` prints).

    ``by=None`` groups by the whole protocol and shows the columns that tell lines apart (see
    ``format_table``); chosen columns are all shown. With ``out`` the text is also written
    there, atomically; an ``out`` that is one of the CSVs read, or any evaluation CSV, is
    refused before anything is written.

    Example::

        print(aggregate_files(["results/*.csv"], by=["algorithm"], fmt="markdown"))
    """
    if fmt not in FORMATS:
        raise FewshotError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    files = expand_patterns(patterns, warn)
    if out is not None:
        check_summary_target(Path(out), files)
    table = aggregate(read_results(files), by or DEFAULT_BY, warn)
    text = format_table(table, fmt, always=ALWAYS_SHOWN if by is None else None)
    if out is not None:
        atomic_write_text(Path(out), text)
    return text


def check_summary_target(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse to write a summary over one of its inputs or over any evaluation CSV."""
    if not out.exists():
        return
    if any(out.resolve() == Path(p).resolve() for p in inputs):
        raise FewshotError(
            f"--out {out} is one of the CSVs read: write the summary to another file"
        )
    if out.is_file() and not is_summary(out):
        try:
            with open(out, newline="") as handle:
                header = next(csv.reader([handle.readline()]), [])
        except (OSError, UnicodeDecodeError):
            return
        if csv_kind(header) == "evaluation":
            raise FewshotError(
                f"--out {out} is an evaluation CSV: the summary would replace its rows"
            )
