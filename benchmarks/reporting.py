"""Formatting shared by the benchmark scripts."""

from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    """A markdown table with one column per key seen in any row (floats to 3 significant digits)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
