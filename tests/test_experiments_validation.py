"""The validation chapter's experiments module: profiles, the cached task sweep end to end at toy size, the
summaries on hand-checked tables and the chapter's list of checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from landscape.paper import probe_checks as pc
from landscape.paper.experiments import validation as v
from landscape.trace import TRACE_METHODS

TOY = v.Sizes(in_dim=3, hidden=(4,), relu_hidden=(4, 4), num_classes=2, num_samples=24, train_steps=5, k=2,
              budgets=(6, 12), trace_seeds=3, slq_probes=2, slq_steps=5, alphas=(0.5, 1.0, 2.0), threads=1,
              workers=1)  # fmt: skip


def test_profiles_are_complete_and_runnable():
    assert set(v.PROFILES) == {"smoke", "paper", "full"}
    for name, sizes in v.PROFILES.items():
        assert any(np.isclose(a, 1.0) for a in sizes.alphas), f"{name}: the rescaling needs α = 1"
        assert min(sizes.budgets) >= 4, f"{name}: XTrace needs at least 4 products"
        assert len(sizes.budgets) >= 2, f"{name}: a rate needs two budgets"
        assert sizes.slq_steps <= sizes.in_dim * sizes.hidden[0], f"{name}: more SLQ steps than parameters"
        assert sizes.k >= 2
    assert v.PROFILES["smoke"].workers == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.PROFILES["smoke"].k = 4


def test_task_settings_name_what_the_result_depends_on():
    spectrum, *traces, rescaling = v.tasks(TOY, 0, "cache")
    assert [t.kind for t in v.tasks(TOY, 0, "cache")] == ["spectrum", "trace", "trace", "trace", "rescaling"]
    assert [t.method for t in traces] == list(TRACE_METHODS)
    settings = v.task_settings(spectrum)
    assert "threads" not in settings
    assert "workers" not in settings
    assert "alphas" not in settings
    assert v.task_settings(rescaling)["alphas"] == [0.5, 1.0, 2.0]
    json.dumps(v.task_settings(traces[0]))  # JSON-serialisable
    # where a task runs does not change its key, what it measures does
    elsewhere = dataclasses.replace(TOY, workers=None, threads=None)
    assert v.task_settings(v.tasks(elsewhere, 0, "cache")[0]) == settings
    assert v.task_settings(v.tasks(TOY, 1, "cache")[0]) != settings
    with pytest.raises(ValueError, match="unknown task kind 'slices'"):
        v.run_task(v.Task("slices", TOY, 0, "cache"))
    with pytest.raises(ValueError, match="needs a method"):
        v.run_task(v.Task("trace", TOY, 0, "cache"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    cache = tmp_path_factory.mktemp("validation-cache")
    return cache, v.measure(TOY, 0, cache, progress=False)


def test_measure_end_to_end_at_toy_size(toy):
    cache, m = toy
    assert len(list(cache.glob("*.json"))) == 5
    num_params = 3 * 4 + 4 + 4 * 2 + 2
    assert m.problem["num_params"] == num_params
    assert m.exact.shape == (num_params,)
    assert np.all(np.diff(m.exact) >= 0)
    assert m.problem["exact_trace"] == pytest.approx(m.exact.sum())
    assert m.problem["operator_vs_dense"] < 1e-12
    assert len(m.eigenvalues) == 3 * TOY.k
    assert len(m.trace) == len(TRACE_METHODS) * len(TOY.budgets) * TOY.trace_seeds
    assert sorted(m.trace["seed"].unique()) == [0, 1, 2]
    assert m.trace_operator_diff < 1e-10
    assert m.density["grid"].shape == m.density["density"].shape == m.density["exact_smooth"].shape
    assert 0 <= m.density["slq_l1"] <= 2
    assert m.rescaling["alpha"].tolist() == [0.5, 1.0, 2.0]
    np.testing.assert_allclose(m.rescaling["normalized_sharpness"], m.rescaling["normalized_sharpness"][1])


def test_measure_reads_the_cache_back(toy, monkeypatch):
    cache, m = toy

    def fail(task):
        raise AssertionError(f"{task.kind} recomputed although cached")

    monkeypatch.setattr(v, "_COMPUTE", dict.fromkeys(v._COMPUTE, fail))
    again = v.measure(TOY, 0, cache, progress=False)
    pd.testing.assert_frame_equal(again.trace, m.trace)
    np.testing.assert_array_equal(again.exact, m.exact)
    with pytest.raises(AssertionError, match="recomputed"):
        v.measure(dataclasses.replace(TOY, k=3), 0, cache, progress=False)


def test_chapter_checks_at_toy_size(toy):
    _, m = toy
    methods = v.trace_method_summary(m.trace, n_resamples=200)
    checks = v.chapter_checks(m, methods)
    assert len(checks) == 15
    by_name = {c.name: c for c in checks}
    assert by_name["HessianOperator products against the dense Hessian (relative difference)"].passed
    assert by_name["Lanczos: largest relative error of the top-k eigenvalues"].passed
    assert by_name["residuals bound the distance to an exact eigenvalue (largest ratio)"].passed
    assert by_name["rescaling: relative spread of normalised sharpness"].passed
    table = pc.checks_table(checks)
    assert set(table["outcome"]) <= {"pass", "fail"}


def _eigs():
    rows = []
    runs = [("Lanczos", [4.0, 3.0, 2.0], 12), ("power, deflated", [3.9, 3.1, 2.0], 40),
            ("power, undeflated", [3.9, 3.95, 3.9], 30)]  # fmt: skip
    for method, values, matvecs in runs:
        for i, value in enumerate(values):
            exact = [4.0, 3.0, 2.0][i]
            rows.append({"method": method, "index": i + 1, "value": value, "exact": exact,
                         "rel_error": abs(value - exact) / exact, "residual": 0.1,
                         "num_matvecs": matvecs})  # fmt: skip
    return pd.DataFrame(rows)


def test_eigen_summary_and_top_values_on_a_hand_table():
    summary = v.eigen_summary(_eigs())
    assert summary == {"k": 3, "lanczos_max_rel_error": 0.0, "lanczos_matvecs": 12,
                       "power_max_rel_error": pytest.approx(0.1 / 3), "power_matvecs": 40}  # fmt: skip
    table, text = v.top_values(_eigs(), np.array([-1.0, 2.0, 3.0, 4.0]), 2)
    assert table.index.tolist() == [1, 2]
    assert table["exact (eigvalsh)"].tolist() == [4.0, 3.0]
    assert text == {"exact_top3": "4.0000, 3.0000", "undeflated_values": "3.9000, 3.9500",
                    "deflated_values": "3.9000, 3.1000", "lanczos_values": "4.0000, 3.0000"}  # fmt: skip


def test_trace_method_summary_on_a_hand_table():
    rows = []
    for method, rate in [("hutchinson", -0.5), ("xtrace", -1.0)]:
        for seed in range(3):
            for budget in (4, 16, 64):
                error = (seed + 1) * budget**rate  # exact power law: slope = rate whatever the seeds
                stderr = abs(error) / (1.0 if seed < 2 else 4.0)  # the third seed's error bars are optimistic
                rows.append({"method": method, "budget": budget, "seed": seed, "estimate": 10 + error,
                             "stderr": stderr, "error": error, "rel_error": error / 10,
                             "rel_stderr": stderr / 10})  # fmt: skip
    errors = pd.DataFrame(rows)
    methods = v.trace_method_summary(errors, n_resamples=200)
    assert methods["method"].tolist() == ["hutchinson", "xtrace"]
    hutch = methods.iloc[0]
    assert hutch["budget"] == 64
    assert hutch["rms_rel_error"] == pytest.approx(
        np.sqrt(np.mean([(s * 64**-0.5 / 10) ** 2 for s in (1, 2, 3)]))
    )
    assert hutch["coverage"] == pytest.approx(2 / 3)
    assert hutch["coverage_low"] <= 2 / 3 <= hutch["coverage_high"]
    assert hutch["slope"] == pytest.approx(-0.5)
    assert methods.iloc[1]["slope"] == pytest.approx(-1.0)
    assert hutch["nominal_coverage"] == pytest.approx(pc.nominal_coverage("hutchinson", [4, 16, 64] * 3))
    mean_stderr = np.mean([1, 2, 3 / 4]) / 10  # relative stderr at budget b, times b^0.5
    rms = np.sqrt(np.mean([1, 4, 9])) / 10
    assert hutch["stderr_ratio"] == pytest.approx(rms / mean_stderr)
    glue = v.trace_glue(methods)
    assert glue["trace_max_budget"] == 64
    assert glue["slope_xtrace"] == pytest.approx(-1.0)
    assert glue["coverage_hutchinson_ci"].startswith("[")
    assert {f"nominal_coverage_{k}" for k in ("hutchinson", "xtrace")} <= set(glue)
