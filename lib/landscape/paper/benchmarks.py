"""The benchmark reports of `nox -s bench` (``benchmarks/results/*.md``) as tables for the paper.

The validation chapter shows each report's tables through `tables.results_table`, so that they read like every
other results table (rounded per column, captioned, with their CSV).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["BenchmarkTable", "benchmark_tables"]


@dataclass(frozen=True)
class BenchmarkTable:
    """One table of a benchmark's Markdown report (`benchmark_tables`): its file, its heading, the notes
    around it and its rows."""

    file: str
    title: str
    notes: str
    frame: pd.DataFrame
    index: int = 1  # its place among the tables of its file

    @property
    def name(self) -> str:
        """A results-table name: ``bench_<file stem>_<n>``."""
        return f"bench_{Path(self.file).stem}_{self.index}"


_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$")
_BENCHMARK_TITLES = {
    "sweep.md": "Dask sweep: the same runs in one process and on a LocalCluster",
    "train.md": "Seeds trained together (vmapped) against one after another",
}


def _pipe_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _numeric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    for column in frame.columns:
        values = frame[column].replace("", None)
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() == values.notna().sum() and values.notna().any():
            frame[column] = numbers
        else:
            frame[column] = values.fillna("")
    return frame


def benchmark_tables(results_dir: Path | str, preferred: str = "curvature.md") -> list[BenchmarkTable]:
    """The tables of the Markdown benchmark reports in `results_dir` (`nox -s bench` writes them), `preferred`
    first, then by file name; empty when the benchmarks were not run.

    Each pipe table becomes a `BenchmarkTable` whose title is the heading above it (or the report's own title
    for a report without headings) and whose notes are the report's other lines of that section; columns whose
    every cell is a number become numeric (so that `tables.results_table` rounds them), column names written
    with underscores get spaces.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.md"), key=lambda p: (p.name != preferred, p.name))
    out = []
    for path in files:
        sections = _report_tables(path.read_text(), _BENCHMARK_TITLES.get(path.name, path.stem))
        for index, (title, notes, rows) in enumerate(sections, start=1):
            columns = [c.replace("_", " ") for c in rows[0]]
            body = [r + [""] * (len(columns) - len(r)) for r in rows[2:]]  # rows[1] is the |---| line
            frame = _numeric_columns(pd.DataFrame(body, columns=columns))
            out.append(BenchmarkTable(path.name, title, notes, frame, index))
    return out


def _report_tables(text: str, title: str) -> list[tuple[str, str, list[list[str]]]]:
    """(heading, notes, pipe rows) of each table of a Markdown report; notes after the last table join it."""
    tables, notes, rows = [], [], []
    for line in [*text.splitlines(), ""]:
        if rows and not line.lstrip().startswith("|"):
            if len(rows) >= 2:
                tables.append([title, notes, rows])
            notes, rows = [], []
        heading = _HEADING.match(line)
        if heading:
            title, notes = heading.group(1), []
        elif line.lstrip().startswith("|"):
            rows.append(_pipe_row(line))
        elif line.strip():
            notes.append(line.strip())
    if notes and tables:
        tables[-1][1] = [*tables[-1][1], *notes]
    return [(t, " ".join(n), r) for t, n, r in tables]
