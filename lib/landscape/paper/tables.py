"""Results tables for reading: significant figures per column, a numbered caption, and the data as CSV.

A chapter shows a table with ``results_table(frame, results_dir, "name", "Caption ...")``: the frame is written
at full precision to ``<results_dir>/<name>.csv`` and displayed as a MyST ``{table}`` (numbered "Table N" by
Sphinx, cross-referenced as ``{numref}`tbl-<chapter>-<name>```), its numbers rounded per column for reading and
followed by a download link to the CSV. The pipeline stages the chapters' CSVs next to the paper's sources, so
the link works in the built HTML, offline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from landscape.paper.glue import MISSING, format_number

__all__ = ["column_formatter", "interval_summary", "markdown_cell", "markdown_table", "results_table"]

_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")


def _check_digits(digits) -> int:
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    return digits


def column_formatter(values, digits: int = 3) -> Callable[[object], str]:
    """A function that writes each value of a column as text, the precision chosen for the column as a whole.

    - booleans: ``yes``/``no``; integers (and floats that are all whole numbers): as integers;
    - other floats: a fixed number of decimals that gives the column's largest magnitude `digits` significant
      figures, so the column's numbers line up; when that would write its smallest non-zero value as 0 (a
      column spanning decades), each value gets `digits` significant figures of its own (`glue.format_number`);
    - anything else: ``str``; missing values (None, NaN) as `glue.MISSING`.

    >>> f = column_formatter([42038.87961, 1030.2, 21073.0])
    >>> [f(v) for v in [42038.87961, 1030.2, 21073.0]]
    ['42039', '1030', '21073']
    >>> f = column_formatter([0.0512, 0.0049, 0.857])
    >>> [f(v) for v in [0.0512, 0.0049, 0.857]]
    ['0.051', '0.005', '0.857']
    >>> f = column_formatter([5e-5, 0.002, 0.857])
    >>> [f(v) for v in [5e-5, 0.002, 0.857]]
    ['5×10⁻⁵', '0.002', '0.857']
    """
    digits = _check_digits(digits)
    series = pd.Series(list(values) if not isinstance(values, pd.Series) else values)

    def missing(v) -> bool:
        return v is None or (isinstance(v, float | np.floating) and math.isnan(v)) or v is pd.NA

    kept = [v for v in series if not missing(v)]
    if kept and all(isinstance(v, bool | np.bool_) for v in kept):
        return lambda v: MISSING if missing(v) else ("yes" if v else "no")
    if kept and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in kept):
        return lambda v: MISSING if missing(v) else f"{int(v)}"
    if not kept or not all(isinstance(v, int | float | np.integer | np.floating) for v in kept):
        return lambda v: MISSING if missing(v) else str(v)

    finite = np.asarray([float(v) for v in kept if math.isfinite(float(v))])

    def special(v) -> str | None:
        if missing(v):
            return MISSING
        if not math.isfinite(float(v)):
            return "∞" if float(v) > 0 else "−∞"
        return None

    if finite.size and np.all(finite == np.round(finite)) and np.max(np.abs(finite)) < 1e15:
        return lambda v: special(v) or f"{float(v):.0f}"
    nonzero = np.abs(finite[finite != 0])
    if nonzero.size == 0:
        return lambda v: special(v) or format_number(v, digits)
    decimals = max(0, digits - 1 - math.floor(math.log10(nonzero.max())))
    smallest = math.floor(math.log10(nonzero.min()))  # its decade: with `decimals` it shows as 0 when < 0
    if decimals > 8 or smallest + decimals < 0:
        return lambda v: special(v) or format_number(v, digits)
    return lambda v: special(v) or f"{float(v):.{decimals}f}"


def markdown_cell(text) -> str:
    """A table cell's text, safe inside a Markdown pipe table (backslashes, pipes and line breaks escaped)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(
    frame: pd.DataFrame, *, digits: int = 3, formats: Mapping[str, str] | None = None, index: bool = False
) -> str:
    """`frame` as a Markdown pipe table, each column written by `column_formatter` (or by the format string
    `formats[column]`, e.g. ``"{:.1%}"``); numeric columns right-aligned. ``index=True`` keeps the index as the
    first column(s)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    formats = dict(formats or {})
    unknown = sorted(set(formats) - {str(c) for c in frame.columns} - {str(n) for n in frame.index.names})
    if unknown:
        raise ValueError(
            f"formats name columns {unknown} that the table does not have: {list(frame.columns)}"
        )
    shown = frame.reset_index() if index else frame
    header, align, columns = [], [], []
    for name in shown.columns:
        values = shown[name]
        if str(name) in formats:
            pattern = formats[str(name)]
            column = [MISSING if pd.isna(v) else pattern.format(v) for v in values]
        else:
            write = column_formatter(values, digits)
            column = [write(v) for v in values]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        header.append(markdown_cell(name))
        align.append("--:" if numeric else ":--")
        columns.append(column)
    rows = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    rows += ["| " + " | ".join(markdown_cell(c[i]) for c in columns) + " |" for i in range(len(shown))]
    return "\n".join(rows)


def results_table(
    frame: pd.DataFrame,
    results_dir: Path | str,
    name: str,
    caption: str,
    *,
    digits: int = 3,
    formats: Mapping[str, str] | None = None,
    index: bool = False,
    data: pd.DataFrame | None = None,
):
    """Write a table as ``<results_dir>/<name>.csv`` and return it for display as a numbered, captioned table.

    Args:
        frame: the table shown (its numbers are rounded for display only).
        results_dir: the chapter's results folder (``build/<profile>/results/<chapter>``, papermill's
            ``results_dir``); the chapter is its last component.
        name: file stem of the CSV and the table's label ``tbl-<chapter>-<name>`` (lower case, digits, ``_``).
        caption: what the table shows and over how many seeds or networks.
        digits, formats, index: as in `markdown_table`.
        data: what the CSV holds, when it differs from the displayed frame (e.g. unrounded per-run values);
            default: `frame`, at full precision.

    Returns an `IPython.display.Markdown` object (displayed by the notebook; MyST-NB renders it as a table
    directive with a download link to the CSV).
    """
    from IPython.display import Markdown

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"table name must be lower case letters, digits and '_', got {name!r}")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("a results table needs a caption that says what it shows")
    folder = Path(results_dir)
    chapter = folder.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    tmp = path.with_suffix(".csv.tmp")
    (frame if data is None else data).to_csv(tmp, index=index)
    tmp.replace(path)
    body = markdown_table(frame, digits=digits, formats=formats, index=index)
    caption = " ".join(caption.split())
    text = (
        f":::{{table}} {caption}\n:name: tbl-{chapter.replace('_', '-')}-{name.replace('_', '-')}\n"
        f":class: results-table\n\n{body}\n:::\n\n"
        f"Data: {{download}}`{name}.csv <../results/{chapter}/{name}.csv>` "
        f"({len(frame if data is None else data)} rows, full precision).\n"
    )
    return Markdown(text)


def interval_summary(
    frame: pd.DataFrame,
    by: str,
    columns: Mapping[str, str] | Sequence[str],
    *,
    level: float = 0.95,
    digits: int = 3,
    fractions: Sequence[str] = (),
) -> pd.DataFrame:
    """Per group, each column as ``"estimate [low, high]"`` with its confidence interval over the group's rows
    (seeds), in place of "mean ± sd", whose lower end can fall below zero for a positive quantity.

    Each cell is `landscape.paper.stats.seed_interval` of the group's values: for positive values the geometric
    mean with a Student-t interval on the logarithms (never below zero), otherwise the mean with Student's
    interval; for the columns named (by display name) in `fractions`, values in [0, 1], the interval on the
    logits (never outside (0, 1)). Positivity is decided per group. One row gives the value alone; a missing value in a group gives
    ``–`` there. Columns are given as names or as {display name: column}.

    >>> f = pd.DataFrame({"arch": ["a", "a", "a"], "x": [1.0, 2.0, 4.0]})
    >>> interval_summary(f, "arch", ["x"]).loc["a", "x"]
    '2 [0.36, 11]'
    """
    from landscape.paper.glue import format_estimate
    from landscape.paper.stats import seed_interval

    columns = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    missing = [c for c in [by, *columns.values()] if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table; it has {list(frame.columns)}")

    def cell(values: np.ndarray, fraction: bool) -> str:
        if values.size == 0 or np.isnan(values).any():
            return MISSING
        interval = seed_interval(values, level=level, fraction=fraction)
        if values.size == 1:
            return format_estimate(interval.estimate, digits=digits)
        return format_estimate(interval, digits=digits)

    out = {}
    for name, column in columns.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        fraction = name in fractions
        out[name] = {
            g: cell(group.to_numpy(float), fraction) for g, group in values.groupby(frame[by], sort=False)
        }
    return pd.DataFrame(out).rename_axis(by)
