"""The claims dashboard: every founding claim → its verdict → the key number with its interval → the evidence.

Each chapter ends with ``paste_claims(question, rows)``: one row per founding claim it tests, with the verdict
its rule returned, the number the verdict rests on (as the chapter glues it, e.g. ``"0.48 [0.21, 0.7]"``) and the
label of the section that holds the evidence. The rows are glued as JSON under the key ``claims``; when the paper
is built, the pipeline reads them back from every executed notebook and writes the landing page's dashboard
(`dashboard_markdown`). Nothing in the dashboard is typed by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from landscape.paper.tables import markdown_cell
from landscape.paper.verdicts import OUTCOMES

__all__ = [
    "CLAIMS_KEY",
    "dashboard_markdown",
    "key_number",
    "paste_claims",
    "rows_from_table",
    "validate_claims",
]

CLAIMS_KEY = "claims"
FIELDS = ("claim", "verdict", "evidence", "section")
_LABEL = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def validate_claims(question: str, rows: Sequence[Mapping]) -> list[dict]:
    """Check and normalise a chapter's claim rows (see `paste_claims`); returns them as plain dicts.

    >>> validate_claims("RQ1", [{"claim": "c", "verdict": "supported", "evidence": "ρ 0.5 [0.2, 0.7]",
    ...                          "section": "rq1-verdicts"}])[0]["question"]
    'RQ1'
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string (e.g. 'RQ1'), got {question!r}")
    if not rows:
        raise ValueError(f"{question}: no claim rows given")
    out = []
    for i, row in enumerate(rows):
        missing = [f for f in FIELDS if not str(row.get(f, "")).strip()]
        if missing:
            raise ValueError(f"{question}, claim {i}: missing {missing}; every row needs {list(FIELDS)}")
        verdict = str(row["verdict"])
        # a claim with parts may read "supported for the squared loss, refuted for cross-entropy"
        if not any(verdict == o or verdict.startswith(f"{o} ") for o in OUTCOMES):
            raise ValueError(
                f"{question}, claim {i}: verdict {verdict!r} does not start with one of {OUTCOMES}"
            )
        if not _LABEL.match(str(row["section"])):
            raise ValueError(
                f"{question}, claim {i}: section {row['section']!r} must be a label such as 'rq1-verdicts' "
                "(lower case, digits, '-'), defined in the chapter as (label)="
            )
        out.append({"question": question, **{f: " ".join(str(row[f]).split()) for f in FIELDS}})
    return out


_ESTIMATE = re.compile(r"([^;:—]*?=\s*[-+−]?[\d.]+(?:e[-+]?\d+|×10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)?\s*\[[^\]]+\])")
_COMBINED = re.compile(r"^\d+ parts?: ")  # the head of a `verdicts.combine` reason


_OUTCOME_PREFIX = re.compile(r"^.*?\b(?:supported|refuted|not testable here) \(")


def _split_parts(details: str) -> list[str]:
    """The "name: outcome (reason)" parts of a combined verdict's reason (`verdicts.combine`), split at the
    "; " that lie outside parentheses."""
    parts, depth, current = [], 0, ""
    for i, char in enumerate(details):
        depth += (char in "([") - (char in ")]")
        if depth == 0 and details.startswith("; ", i):
            parts.append(current)
            current = ""
            continue
        if not (current == "" and char == " " and parts):
            current += char
    return [*parts, current]


def key_number(reason: str, verdict: str | None = None, limit: int = 90) -> str:
    """The number a verdict rests on, read from its reason: the first "name = estimate [low, high]" of the part
    that decided it (for a combined claim, `verdicts.combine`, the first part with the claim's own outcome), or
    the reason's start, cut at `limit` characters, when it quotes none. A training-loss ratio that made a
    comparison not testable is labelled as such.

    >>> key_number("2 parts: 1 refuted, 1 not testable here — a: not testable here (training losses not "
    ...            "matched: x/y = 1.7 [1.6, 1.8], not inside [0.8, 1.25]); b: refuted (b/c = 0.81 [0.7, 0.9])",
    ...            "refuted")
    'b: b/c = 0.81 [0.7, 0.9]'
    >>> key_number("1 part: 1 not testable here — a: not testable here (training losses not matched: "
    ...            "x/y = 1.7 [1.6, 1.8], not inside [0.8, 1.25])", "not testable here")
    'a: training-loss ratio x/y = 1.7 [1.6, 1.8], not matched'
    >>> key_number("gap: supported ((λ1 − λ2)/λ1 = 0.102 [0.04, 0.16])")
    'gap: (λ1 − λ2)/λ1 = 0.102 [0.04, 0.16]'
    >>> key_number("mean (λ1 − λ2)/λ1 = 0.1 [0.04, 0.16] lies above 0")
    'mean (λ1 − λ2)/λ1 = 0.1 [0.04, 0.16]'
    >>> key_number("too few runs reached the target")
    'too few runs reached the target'
    """
    text = " ".join(str(reason).split())
    head, sep, details = text.partition(" — ")
    parts = _split_parts(details) if sep and _COMBINED.match(head) else [text]
    if verdict is not None:
        parts = sorted(parts, key=lambda part: f": {verdict} (" not in part)  # the deciding parts first
    for part in parts:
        match = _ESTIMATE.search(part)
        if match is None:
            continue
        number = _OUTCOME_PREFIX.sub(
            "", match.group(1).split(": ")[-1].strip(" ,")
        )  # "refuted (x = …" → "x = …"
        if "training losses not matched" in part:
            number = f"training-loss ratio {number}, not matched"
        name = part.split(": ", 1)[0] if ": " in part and len(part.split(": ", 1)[0]) <= 40 else ""
        return f"{name}: {number}" if name else number
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def rows_from_table(
    table: pd.DataFrame, evidence: Sequence[str], sections: Sequence[str] | str, *, claim: str = "claim"
) -> list[dict]:
    """Claim rows from a chapter's verdict table (one row per claim, columns `claim` and ``verdict``), with the
    key number of each claim and the section label(s) of its evidence, in the table's order.

    >>> t = pd.DataFrame({"claim": ["a", "b"], "verdict": ["supported", "refuted"]})
    >>> [r["section"] for r in rows_from_table(t, ["1 [0, 2]", "3 [2, 4]"], "rq1-verdicts")]
    ['rq1-verdicts', 'rq1-verdicts']
    """
    for column in (claim, "verdict"):
        if column not in table.columns:
            raise ValueError(f"the verdict table has no column {column!r}; it has {list(table.columns)}")
    sections = [sections] * len(table) if isinstance(sections, str) else list(sections)
    if not len(evidence) == len(sections) == len(table):
        raise ValueError(f"{len(table)} claims need as many evidence texts and sections, "
                         f"got {len(evidence)} and {len(sections)}")  # fmt: skip
    return [{"claim": c, "verdict": v, "evidence": e, "section": s}
            for c, v, e, s in zip(table[claim], table["verdict"], evidence, sections, strict=True)]  # fmt: skip


def paste_claims(question: str, rows: Sequence[Mapping]) -> pd.DataFrame:
    """Glue a chapter's claims for the dashboard and return them as a table (for display in the chapter).

    Args:
        question: the research question, e.g. ``"RQ1"`` (the validation chapter: ``"Probes"``).
        rows: one mapping per founding claim with ``claim`` (the claim as the founding write-up makes it),
            ``verdict`` (an outcome of `landscape.paper.verdicts`, optionally followed by its parts), ``evidence``
            (the key number with its interval, as glued) and ``section`` (the label of the section with the
            evidence, defined in the chapter's Markdown as ``(label)=``).
    """
    from myst_nb import glue

    records = validate_claims(question, rows)
    glue(CLAIMS_KEY, json.dumps(records, ensure_ascii=False), display=False)
    return pd.DataFrame(records)[list(FIELDS)]


def dashboard_markdown(records: Sequence[Mapping]) -> str:
    """The landing page's claims dashboard as MyST Markdown: one numbered table, a row per claim, its evidence
    linked with ``{ref}`` (so a missing section fails the strict Sphinx build)."""
    if not records:
        raise ValueError("no claims to show: no executed chapter pasted any (paste_claims)")
    lines = [
        (
            ":::{table} Every founding claim tested in this paper: the verdict of its rule, the number the verdict "
            "rests on (with its confidence interval where it has one) and the section with the evidence. Generated "
            "from the chapters' glued values when the paper is built."
        ),
        ":name: tbl-claims",
        ":class: results-table claims-dashboard",
        "",
        "| question | claim | verdict | key number [CI] | evidence |",
        "|:--|:--|:--|:--|:--|",
    ]
    for r in records:
        question, claim, verdict, evidence = (markdown_cell(r[f]) for f in ("question", *FIELDS[:3]))
        lines.append(f"| {question} | {claim} | **{verdict}** | {evidence} | {{ref}}`{r['section']}` |")
    lines.append(":::")
    return "\n".join(lines) + "\n"
