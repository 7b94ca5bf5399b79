"""Tables of evaluation results: CSV rows grouped into one line per protocol.

A *run* is one training (a run directory and its seed, found from each row's ``checkpoint``);
one training tested again on the same episodes counts once (``drop_repeated``), and its other
rows are averaged into one run mean first. Per group: the mean of the run means, its 95% CI
``sqrt(sum ci_i^2) / n`` (test-episode noise only: the runs are independent, and per-episode
accuracies are not stored), ``runs``, ``episodes``, ``run_std`` (the spread of the run means
across seeds) and ``seeds_ci95``, ``t(0.975, n - 1) * run_std / sqrt(n)``: the interval to quote
for "mean over n seeds".

Example::

    print(aggregate_files(["results/cpu/eval.csv"], by=["algorithm", "test_ways"]))
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
from fewshot_cli.report.tables import ALWAYS_SHOWN, STATS, format_table
from fewshot_cli.run import protocol
from fewshot_cli.run.results import COLUMNS, REQUIRED, csv_kind

# Everything that defines an experiment's protocol (declared once, in ``run.protocol``): rows
# that differ in any of these are never averaged together by default.
PROTOCOL = protocol.PROTOCOL_COLUMNS
DEFAULT_BY = PROTOCOL
GLOB_CHARS = set("*?[")
# Columns that differ between two appends of the same evaluation (and where a row was read).
INCIDENTAL = ("timestamp", "eval_seconds", "version", "source", "line")


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (for a 95% CI).

    Example:
        >>> round(t975(2), 4)
        4.3027
    """
    from scipy.stats import t

    return float(t.ppf(0.975, df)) if df >= 1 else math.nan


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
