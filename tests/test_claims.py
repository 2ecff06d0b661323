"""The claims dashboard: rows checked, glued, read back by the pipeline and rendered with links to evidence."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from landscape.paper.claims import dashboard_markdown, key_number, rows_from_table, validate_claims
from landscape.paper.pipeline import claims_markdown, reproducibility_markdown

ROW = {"claim": "Noise finds flat minima", "verdict": "not supported", "evidence": "ρ 0.1 [−0.2, 0.4]",
       "section": "rq1-batch"}  # fmt: skip


def test_rows_are_checked():
    assert validate_claims("RQ1", [ROW])[0] == {"question": "RQ1", **ROW}
    parts = {**ROW, "verdict": "supported for the squared loss, refuted for cross-entropy"}
    assert validate_claims("RQ1", [parts])[0]["verdict"].startswith("supported")
    with pytest.raises(ValueError, match="does not start with one of"):
        validate_claims("RQ1", [{**ROW, "verdict": "probably"}])
    with pytest.raises(ValueError, match=r"missing \['evidence'\]"):
        validate_claims("RQ1", [{**ROW, "evidence": ""}])
    with pytest.raises(ValueError, match="must be a label"):
        validate_claims("RQ1", [{**ROW, "section": "Batch size"}])
    with pytest.raises(ValueError, match="no claim rows"):
        validate_claims("RQ1", [])


def test_rows_from_a_verdict_table():
    table = pd.DataFrame({"claim": ["a", "b"], "verdict": ["supported", "refuted"]})
    rows = rows_from_table(table, ["1 [0, 2]", "3 [2, 4]"], ["rq1-x", "rq1-y"])
    assert [r["section"] for r in rows] == ["rq1-x", "rq1-y"]
    with pytest.raises(ValueError, match="2 claims need as many"):
        rows_from_table(table, ["1"], "rq1-x")
    with pytest.raises(ValueError, match="no column 'claim'"):
        rows_from_table(table.rename(columns={"claim": "quantity"}), ["1", "2"], "rq1-x")


def test_key_number_picks_the_first_interval():
    assert key_number("a: refuted (x/y = 0.5 [0.4, 0.6]); b = 2 [1, 3]") == "a: x/y = 0.5 [0.4, 0.6]"
    assert key_number("x" * 200).endswith("…")


def test_dashboard_from_glued_claims():
    glued = json.dumps(validate_claims("RQ1", [ROW]), ensure_ascii=False)
    notebooks = {"rq1": {"glued": {"claims": repr(glued)}}, "validation": {"glued": {}}}
    text = claims_markdown(notebooks, ["validation", "rq1"])
    assert text.startswith(":::{table} Every founding claim")
    assert ":name: tbl-claims" in text
    assert (
        "| RQ1 | Noise finds flat minima | **not supported** | ρ 0.1 [−0.2, 0.4] | {ref}`rq1-batch` |" in text
    )
    with pytest.raises(ValueError, match="no claims to show"):
        dashboard_markdown([])


def test_reproducibility_appendix_from_a_manifest():
    manifest = {
        "environment": {"cpu": "CPU X", "cores": 2, "torch": "2.14", "git_commit": "0123456789abcdef",
                        "git_changed": ["figures/a.png"], "variables": {"OMP_NUM_THREADS": "1",
                                                                                 "LANDSCAPE_WORKERS": None}},
        "notebooks": {"rq1": {"seconds": 90.0, "fingerprint": "ab" * 32,
                              "cache": {"entries": 3, "keys_sha256": "cd" * 32}}},
    }  # fmt: skip
    text = reproducibility_markdown(manifest, "paper")
    assert "| CPU | CPU X (2 cores) |" in text
    assert "`OMP_NUM_THREADS=1`" in text
    assert "LANDSCAPE_WORKERS" not in text  # unset variables are left out
    assert "| `rq1` | 1.5 | `abababababababab` | 3 | `cdcdcdcdcdcdcdcd` |" in text
    assert "--profile paper --only rq1_sgd_flat_minima" in text
    assert "commit `0123456789ab`; tracked files changed at build time: `figures/a.png`" in text
    assert ":name: tbl-reproducibility-chapters" in text
    assert "1.5 minutes of execution in all" in text
