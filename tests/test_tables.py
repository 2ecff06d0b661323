"""Results tables: per-column precision, Markdown that survives any cell text, the CSV at full precision, and
intervals that stay positive for positive quantities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from landscape.paper.tables import column_formatter, interval_summary, markdown_table, results_table


def _write(values, digits=3):
    f = column_formatter(values, digits)
    return [f(v) for v in values]


def test_column_precision_is_chosen_per_column():
    # the founding table's 12-digit floats become integers when the column's magnitude allows no decimals
    assert _write([42038.87961, 1030.2]) == ["42039", "1030"]
    # one number of decimals for the whole column, set by its largest value
    assert _write([0.857, 0.0512, 0.0049]) == ["0.857", "0.051", "0.005"]
    # a column spanning decades: each value its own significant figures, none written as 0
    assert _write([0.857, 5e-5]) == ["0.857", "5×10⁻⁵"]
    assert _write([1.0, 2.0, 3.0]) == ["1", "2", "3"]
    assert _write([True, False]) == ["yes", "no"]
    assert _write([1, 20]) == ["1", "20"]
    assert _write([float("nan"), 1.5, math.inf, -math.inf]) == ["n/a", "1.50", "∞", "−∞"]
    assert _write(["a", None]) == ["a", "n/a"]
    assert _write([0.0, 0.0]) == ["0", "0"]
    assert _write([12.3456], digits=5) == ["12.346"]
    with pytest.raises(ValueError, match="digits must be a positive integer"):
        column_formatter([1.0], 0)


def test_markdown_table_escapes_cells_and_aligns_numbers():
    frame = pd.DataFrame({"name": ["a|b", "c\nd"], "value": [1.23456, 10.0]})
    text = markdown_table(frame)
    lines = text.splitlines()
    assert lines[0] == "| name | value |"
    assert lines[1] == "|:--|--:|"
    assert lines[2] == "| a\\|b | 1.2 |"  # decimals set by the largest, 10.0
    assert lines[3] == "| c d | 10.0 |"
    assert markdown_table(frame, formats={"value": "{:.1%}"}).splitlines()[2].endswith("123.5% |")
    indexed = markdown_table(frame.set_index("name"), index=True)
    assert indexed.splitlines()[0] == "| name | value |"
    with pytest.raises(ValueError, match=r"formats name columns \['nope'\]"):
        markdown_table(frame, formats={"nope": "{}"})
    with pytest.raises(TypeError, match="pandas DataFrame"):
        markdown_table([1, 2])


def test_results_table_writes_the_csv_and_a_numbered_table(tmp_path):
    folder = tmp_path / "rq9_chapter"
    frame = pd.DataFrame({"x": [0.123456789, 2.0], "y": ["p", "q"]})
    shown = results_table(frame, folder, "my_table", "What it shows, over 2 seeds.")
    back = pd.read_csv(folder / "my_table.csv")
    np.testing.assert_array_equal(back["x"].to_numpy(), frame["x"].to_numpy())  # full precision in the CSV
    text = shown.data
    assert text.startswith(":::{table} What it shows, over 2 seeds.\n:name: tbl-rq9-chapter-my-table\n")
    assert "| 0.12 | p |" in text
    assert "| 2.00 | q |" in text
    assert "{download}`my_table.csv <../results/rq9_chapter/my_table.csv>`" in text
    other = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    results_table(frame, folder, "two", "Shown rounded, stored whole.", data=other)
    assert len(pd.read_csv(folder / "two.csv")) == 3
    with pytest.raises(ValueError, match="lower case letters"):
        results_table(frame, folder, "Bad Name", "caption")
    with pytest.raises(ValueError, match="needs a caption"):
        results_table(frame, folder, "ok", "  ")


def test_interval_summary_against_student_t():
    frame = pd.DataFrame({"arch": ["a"] * 3 + ["b"] * 3 + ["c"],
                          "pos": [1.0, 2.0, 4.0, 3.0, 3.0, 3.0, 5.0],
                          "signed": [-1.0, 0.0, 4.0, 1.0, 2.0, 3.0, 1.0]})  # fmt: skip
    out = interval_summary(frame, "arch", {"positive": "pos", "any sign": "signed"})
    # positive: geometric mean 2 with exp(mean log ± t s/√n): never below zero, unlike mean ± sd (2.33 ± 1.53)
    logs = np.log([1.0, 2.0, 4.0])
    half = 4.302652729911275 * logs.std(ddof=1) / math.sqrt(3)
    assert (
        out.loc["a", "positive"]
        == f"2 [{math.exp(logs.mean() - half):.2g}, {math.exp(logs.mean() + half):.2g}]"
    )
    assert out.loc["b", "positive"] == "3 [3, 3]"
    assert out.loc["c", "positive"] == "5"  # one run: the value alone
    # a column with a non-positive value: the mean with Student's interval
    half = 4.302652729911275 * np.std([-1.0, 0.0, 4.0], ddof=1) / math.sqrt(3)
    assert out.loc["a", "any sign"] == f"1 [{1 - half:.2g}, {1 + half:.2g}]"
    with pytest.raises(ValueError, match=r"columns \['nope'\] not in the table"):
        interval_summary(frame, "arch", ["nope"])
