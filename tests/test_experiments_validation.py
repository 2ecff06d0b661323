"""The validation chapter's experiments module: profiles, the cached task sweep end to end at toy size, the
summaries on hand-checked tables and the chapter's list of checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from landscape.paper import probe_checks as pc
from landscape.paper.experiments import validation as v
from landscape.paper.experiments import validation_tasks as vt
from landscape.paper.glue import format_estimate
from landscape.trace import TRACE_METHODS

TOY_OPERATING = {"width": 4, "target_loss": 0.05, "max_steps": 5, "hessian_samples": 16, "k": 2, "tol": 1e-2,
                 "trace_matvecs": 4, "slq_probes": 2, "slq_steps": 4, "ref_tol": 1e-8, "ref_trace": 12,
                 "ref_slq_probes": 2, "ref_slq_steps": 8}  # fmt: skip
TOY_SYNTHETIC = {
    "dim": 200,
    "tol": 1e-3,
    "lambda_min_matvecs": 60,
    "curvatures": [1.0, 100.0],
    "amplitudes": [0.1],
}
TOY = v.Sizes(in_dim=3, hidden=(4,), relu_hidden=(4, 4), num_classes=2, num_samples=24, train_steps=5, k=2,
              budgets=(6, 12), trace_seeds=3, slq_probes=2, slq_steps=5, alphas=(0.5, 1.0, 2.0), n_resamples=100,
              threads=1, workers=1, operating=TOY_OPERATING, synthetic=TOY_SYNTHETIC)  # fmt: skip


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
    spectrum, *traces, rescaling, operating, synthetic = v.task_settings(TOY, 0)
    assert [t["kind"] for t in v.task_settings(TOY, 0)] == [
        "spectrum",
        "trace",
        "trace",
        "trace",
        "rescaling",
        "operating",
        "synthetic",
    ]
    assert operating == {"kind": "operating", **TOY_OPERATING, "seed": 0}
    assert synthetic["dim"] == 200
    assert [t["method"] for t in traces] == list(TRACE_METHODS)
    for key in ("threads", "workers", "n_resamples", "alphas"):
        assert key not in spectrum
    assert rescaling["alphas"] == [0.5, 1.0, 2.0]
    assert rescaling["testbed"]["activation"] == "relu"
    assert rescaling["testbed"]["hidden"] == [4, 4]
    json.dumps(v.task_settings(TOY, 0))  # JSON-serialisable
    # where a task runs and how its intervals are bootstrapped do not change its key, what it measures does
    elsewhere = dataclasses.replace(TOY, workers=None, threads=None, n_resamples=5000)
    assert v.task_settings(elsewhere, 0) == v.task_settings(TOY, 0)
    assert v.task_settings(TOY, 1)[0] != spectrum
    # the declared code is the task module and the probe checks, not the chapter module
    assert v not in v.DEPENDS_ON
    assert set(v.DEPENDS_ON) == {vt, pc}
    with pytest.raises(ValueError, match="unknown task kind 'slices'"):
        vt.measurement({"kind": "slices"})
    with pytest.raises(ValueError, match="needs a method"):
        vt.measurement({**traces[0], "method": None})
    with pytest.raises(ValueError, match=r"trace settings lack \['budgets'\]"):
        vt.measurement({k: x for k, x in traces[0].items() if k != "budgets"})
    with pytest.raises(ValueError, match="unknown testbed activation 'gelu'"):
        v.testbed_settings(TOY, "gelu", 0)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    cache = tmp_path_factory.mktemp("validation-cache")
    return cache, v.measure(TOY, 0, cache)


def test_measure_end_to_end_at_toy_size(toy):
    cache, m = toy
    assert len(list(cache.glob("*.json"))) == 7
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
    op = m.operating
    assert op["network"]["num_params"] == 40 * 4 + 4 + 4 * 4 + 4 + 4 * 10 + 10
    assert len(op["chapter"]["top_eigenvalues"]) == len(op["reference"]["top_eigenvalues"]) == 2
    # the float64 reference converges (to 1e-8 by the gap test); float32 at tol 1e-2 agrees with it to that order
    assert op["reference"]["converged"]
    assert v.operating_numbers(op)["op_topk_error"] < 1e-1
    syn = m.synthetic
    assert syn["bulk_edge"]["true_min"] == pytest.approx(-1e-3, rel=0.05)
    assert len(syn["roughness"]) == 2


def test_measure_reads_the_cache_back(toy, monkeypatch):
    cache, m = toy

    def fail(settings):
        raise AssertionError(f"{settings['kind']} recomputed although cached")

    monkeypatch.setattr(vt, "KINDS", dict.fromkeys(vt.KINDS, fail))
    again = v.measure(dataclasses.replace(TOY, n_resamples=7), 0, cache)
    pd.testing.assert_frame_equal(again.trace, m.trace)
    np.testing.assert_array_equal(again.exact, m.exact)
    with pytest.raises(AssertionError, match="spectrum recomputed"):
        v.measure(dataclasses.replace(TOY, k=3), 0, cache)


def test_chapter_checks_at_toy_size(toy):
    _, m = toy
    methods = v.trace_method_summary(m.trace, n_resamples=200)
    groups = v.chapter_check_groups(m, methods)
    assert list(groups) == ["operator", "eigenvalues", "trace rates", "trace error bars", "SLQ", "rescaling",
                            "operating regime", "known answers"]  # fmt: skip
    checks = v.chapter_checks(m, methods)
    assert len(checks) == 25
    assert checks == [c for group in groups.values() for c in group]
    by_name = {c.name: c for c in checks}
    assert by_name["HessianOperator products against the dense Hessian (relative difference)"].passed
    assert by_name["Lanczos: largest relative error of the top-k eigenvalues"].passed
    assert by_name["residuals bound the distance to an exact eigenvalue (largest ratio)"].passed
    assert by_name["rescaling: relative spread of normalised sharpness"].passed
    # three seeds: the slopes' cluster bootstrap is undefined, so the rate checks say "not testable", with why;
    # the coverages (means) get Student's t over seeds and are decided
    assert [c.outcome for c in groups["trace rates"]] == ["not testable"] * 3
    assert all("too few clusters" in c.reason for c in groups["trace rates"])
    assert all(c.passed is not None and c.has_interval for c in groups["trace error bars"])
    table = pc.checks_table(checks)
    assert set(table["outcome"]) <= {"pass", "fail", "not testable"}
    outcomes = v.group_outcomes(groups)
    assert "not testable here (too few clusters" in outcomes["outcome_trace_rates"]
    assert "): hutchinson: slope" in outcomes["outcome_trace_rates"]
    assert outcomes["outcome_trace_rates"].startswith("0 of 3 checks pass")
    assert "not testable here" in outcomes["checks_summary"]


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


def test_checks_sentence_says_what_passed_failed_and_could_not_be_tested():
    ok = pc.at_most("a", 0.0, 1.0)
    bad = pc.at_most("b", 2.0, 1.0)
    untested = pc.check_trace_rate("xtrace", -1.0, float("nan"), float("nan"), reason="too few seeds")
    assert v.checks_sentence([ok, ok]) == "all 2 checks pass"
    assert v.checks_sentence([ok]) == "the check passes"
    assert v.checks_sentence([ok, bad]) == "1 of 2 checks pass; failing: b"
    assert v.checks_sentence([ok, bad, untested, untested]) == (
        "1 of 4 checks pass; failing: b; not testable here (too few seeds): xtrace: slope of log RMS error "
        "against log budget; xtrace: slope of log RMS error against log budget"
    )
    assert v.checks_sentence([untested]) == "the check is not testable here (too few seeds)"
    assert v.group_outcomes({"x y": [ok], "z": [bad]}) == {
        "outcome_x_y": "the check passes", "outcome_z": "the check fails",
        "checks_summary": "1 of 2 checks pass; failing: b",
    }  # fmt: skip
    with pytest.raises(ValueError, match="at least one check"):
        v.checks_sentence([])


def test_calibration_summary_groups_the_estimators_by_finding():
    table = pd.DataFrame({"method": ["hutchinson", "hutch++", "xtrace"],
                          "calibration": ["calibrated", "calibrated", "optimistic"]})  # fmt: skip
    assert v.calibration_summary(table) == "calibrated for Hutchinson and Hutch++ and optimistic for XTrace"
    table["calibration"] = ["conservative", "untested", "calibrated"]
    assert v.calibration_summary(table) == (
        "conservative for Hutchinson, not testable here for Hutch++ and calibrated for XTrace"
    )
    table["calibration"] = ["calibrated"] * 3
    assert v.calibration_summary(table) == "calibrated for Hutchinson, Hutch++ and XTrace"
    with pytest.raises(ValueError, match="unknown calibration 'fine'"):
        v.calibration_summary(table.assign(calibration="fine"))
    with pytest.raises(ValueError, match=r"lacks columns \['calibration'\]"):
        v.calibration_summary(table[["method"]])


def test_eigen_summary_and_top_values_on_a_hand_table():
    summary = v.eigen_summary(_eigs())
    assert summary == {"k": 3, "lanczos_max_rel_error": 0.0, "lanczos_matvecs": 12,
                       "power_max_rel_error": pytest.approx(0.1 / 3), "power_matvecs": 40}  # fmt: skip
    with pytest.raises(ValueError, match="no rows of method 'Lanczos'"):
        v.eigen_summary(_eigs().query("method != 'Lanczos'"))
    with pytest.raises(ValueError, match=r"lacks columns \['num_matvecs'\]"):
        v.eigen_summary(_eigs().drop(columns="num_matvecs"))
    with pytest.raises(ValueError, match="needs 4 eigenvalues"):
        v.top_values(_eigs(), np.array([-1.0, 2.0, 3.0, 4.0]), 4)
    table, text = v.top_values(_eigs(), np.array([-1.0, 2.0, 3.0, 4.0]), 2)
    assert table.index.tolist() == [1, 2]
    assert table["exact (eigvalsh)"].tolist() == [4.0, 3.0]
    assert text == {"exact_top3": "4.0000, 3.0000", "undeflated_values": "3.9000, 3.9500",
                    "deflated_values": "3.9000, 3.1000", "lanczos_values": "4.0000, 3.0000"}  # fmt: skip


def _hand_errors(num_seeds: int = 3) -> pd.DataFrame:
    rows = []
    for method, rate in [("hutchinson", -0.5), ("xtrace", -1.0)]:
        for seed in range(num_seeds):
            for budget in (4, 16, 64):
                error = (seed + 1) * budget**rate  # exact power law: slope = rate whatever the seeds
                stderr = abs(error) / (
                    1.0 if seed % 3 < 2 else 4.0
                )  # every third seed's error bars are optimistic
                rows.append({"method": method, "budget": budget, "seed": seed, "estimate": 10 + error,
                             "stderr": stderr, "error": error, "rel_error": error / 10,
                             "rel_stderr": stderr / 10})  # fmt: skip
    return pd.DataFrame(rows)


def test_trace_method_summary_on_a_hand_table():
    methods = v.trace_method_summary(_hand_errors(), n_resamples=200)
    assert methods["method"].tolist() == ["hutchinson", "xtrace"]
    hutch = methods.iloc[0]
    assert hutch["budget"] == 64
    assert hutch["rms_rel_error"] == pytest.approx(
        np.sqrt(np.mean([(s * 64**-0.5 / 10) ** 2 for s in (1, 2, 3)]))
    )
    assert hutch["coverage"] == pytest.approx(2 / 3)
    # three seeds: Student's t over the seeds' coverages (1, 1, 0), clipped to [0, 1]; no interval for the slope
    half = stats.t.ppf(0.975, 2) * np.std([1, 1, 0], ddof=1) / np.sqrt(3)
    assert 2 / 3 - half < 0
    assert 2 / 3 + half > 1
    assert hutch["coverage_low"] == 0.0
    assert hutch["coverage_high"] == 1.0
    assert hutch["coverage_method"] == "Student t over cluster means"
    assert hutch["calibration"] == "calibrated"  # the wide interval contains the honest coverage
    assert hutch["slope"] == pytest.approx(-0.5)
    assert np.isnan(hutch["slope_low"])
    assert np.isnan(hutch["slope_high"])
    assert "too few clusters" in hutch["slope_method"]
    assert methods.iloc[1]["slope"] == pytest.approx(-1.0)
    assert hutch["nominal_coverage"] == pytest.approx(pc.nominal_coverage("hutchinson", [4, 16, 64] * 3))
    mean_stderr = np.mean([1, 2, 3 / 4]) / 10  # relative stderr at budget b, times b^0.5
    rms = np.sqrt(np.mean([1, 4, 9])) / 10
    assert hutch["stderr_ratio"] == pytest.approx(rms / mean_stderr)
    glue = v.trace_glue(methods)
    assert glue["trace_max_budget"] == 64
    assert glue["slope_xtrace"] == pytest.approx(-1.0)
    assert glue["coverage_hutchinson_ci"] == format_estimate(2 / 3, 0.0, 1.0, digits=2) == "0.67 [0, 1]"
    assert glue["slope_hutchinson_ci"] == "-0.5 (interval n/a)"
    assert glue["calibration_summary"] == "calibrated for Hutchinson and XTrace"
    assert {f"nominal_coverage_{k}" for k in ("hutchinson", "xtrace")} <= set(glue)
    with pytest.raises(ValueError, match=r"lacks columns \['slope_method'\]"):
        v.trace_glue(methods.drop(columns="slope_method"))
    with pytest.raises(ValueError, match=r"unknown trace methods \['exact'\]"):
        v.trace_method_summary(_hand_errors().replace({"method": {"xtrace": "exact"}}), n_resamples=10)


def test_trace_method_summary_with_enough_seeds_bootstraps_and_finds_optimism():
    methods = v.trace_method_summary(_hand_errors(30), n_resamples=300)
    hutch = methods.iloc[0]
    assert hutch["coverage_method"] == hutch["slope_method"] == "cluster bootstrap percentile"
    assert hutch["slope_low"] == pytest.approx(-0.5)  # an exact power law for every seed
    assert hutch["slope_high"] == pytest.approx(-0.5)
    assert (
        hutch["coverage_high"] < hutch["nominal_coverage"]
    )  # a third of the seeds' error bars are too small
    assert hutch["calibration"] == "optimistic"
    m = v.Measurements(problem={"operator_vs_dense": 0.0}, exact=np.array([2.0, 3.0, 4.0]), eigenvalues=_eigs(),
                       trace=_hand_errors(30), trace_operator_diff=0.0, density={"slq_l1": 0.01},
                       rescaling=pd.DataFrame({"alpha": [0.5, 1.0, 2.0], "loss": [1.0] * 3,
                                               "lambda_max": [1.0, 4.0, 16.0],
                                               "normalized_sharpness": [2.0] * 3}),
                       operating=hand_operating(), synthetic=hand_synthetic())  # fmt: skip
    groups = v.chapter_check_groups(m, methods)
    assert [c.outcome for c in groups["trace rates"]] == ["pass", "pass"]  # −½ meets −½, −1 meets ≤ −½
    assert [c.outcome for c in groups["trace error bars"]] == ["fail", "fail"]
    assert v.group_outcomes(groups)["outcome_trace_error_bars"].startswith("0 of 2 checks pass; failing:")


def hand_operating(erank: float = 105.0, lmin_ref: float = -0.012) -> dict:
    """An operating-regime result by hand: the chapter within 5e-4 of the reference on λ1, λ2."""
    chapter = {"top_eigenvalues": [10.005, 4.998], "residuals": [0.01, 0.01], "lambda_min": -0.01,
               "lambda_min_residual": 0.005, "lambda_min_converged": False, "trace": 50.0, "trace_stderr": 2.0,
               "negative_mass": 0.2, "negative_mass_stderr": 0.02, "effective_rank": erank}  # fmt: skip
    reference = {"top_eigenvalues": [10.0, 5.0], "residuals": [1e-9, 1e-9], "lambda_min": lmin_ref,
                 "lambda_min_residual": 1e-4, "trace": 52.0, "trace_stderr": 0.1, "negative_mass": 0.22,
                 "negative_mass_stderr": 0.005, "effective_rank": 100.0}  # fmt: skip
    return {"tol": 1e-3, "network": {"num_params": 1000, "train_loss": 0.05, "steps": 10, "status": "reached",
                                     "hessian_samples": 16}, "chapter": chapter, "reference": reference}  # fmt: skip


def hand_synthetic(gap_converged: bool = True) -> dict:
    return {
        "repeated": {"1": {"values": [5.0, 5.0, 3.0], "residuals": [1e-4, 5e-3, 1e-5]},
                     "2": {"values": [5.000004, 4.999996, 3.0], "residuals": [1e-3, 1e-4, 1e-2]}},
        "bulk_edge": {"true_min": -1e-3, "gap": {"value": 1e-4, "residual": 0.05, "converged": gap_converged},
                      "residual": {"value": -0.000999, "residual": 4e-6, "converged": False}},
        "roughness": [{"curvature": c, "amplitude": 0.1, "roughness": 0.16, "closed_form": 0.18} for c in (1.0, 100.0)],
    }  # fmt: skip


def test_operating_checks_and_numbers_by_hand():
    op = hand_operating()
    checks = {c.name.split(",")[0].split(":")[0]: c for c in v.operating_checks(op)}
    assert checks["top-2 eigenvalues (float32"].passed  # 5e-4 ≤ 10 × 1e-3
    assert checks["λmin"].passed  # −0.012 inside −0.01 ± 0.005
    assert checks["tr(H)"].passed  # |50 − 52| / √(4 + 0.01) ≈ 1 ≤ 3
    assert checks["negative mass"].passed  # 0.02 / 0.0206 ≈ 1
    assert checks["effective rank"].passed  # 5 %
    failing = {
        c.name.split(",")[0].split(":")[0]: c.passed for c in v.operating_checks(hand_operating(150.0, -0.02))
    }
    assert failing["effective rank"] is False
    assert failing["λmin"] is False
    numbers = v.operating_numbers(op)
    assert numbers["op_topk_error"] == pytest.approx(5e-4)
    assert numbers["op_erank_error"] == pytest.approx(0.05)
    assert numbers["op_lmin_converged"] == "not resolved"
    table = v.operating_table(op)
    assert table["quantity"].tolist() == ["λ1", "λ2", "λmin", "tr(H)", "negative mass", "effective rank"]


def test_synthetic_checks_and_numbers_by_hand():
    syn = hand_synthetic()
    assert [c.passed for c in v.synthetic_checks(syn)] == [True, True, True, True, True]
    numbers = v.synthetic_numbers(syn)
    assert (numbers["repeated_certified1"], numbers["repeated_certified2"]) == ("no", "no")
    assert numbers["edge_gap_converged"] == "accepted"
    assert numbers["edge_residual_converged"] == "not accepted"
    assert numbers["rough_deviation"] == pytest.approx(0.02 / 0.18)
    assert numbers["rough_spread"] == 0.0
    wrong = hand_synthetic()
    # accepted with a residual that meets tol·|θ|, yet half the true value: a missed eigenvalue below it
    wrong["bulk_edge"]["residual"] = {"value": -5e-4, "residual": 4e-7, "converged": True}
    assert v.synthetic_checks(wrong)[1].passed is False
