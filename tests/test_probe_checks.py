"""The validation chapter's helpers (landscape.paper.probe_checks, landscape.paper.plotting) on tiny exact problems."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from landscape import DenseOperator, HessianOperator, dense_hessian
from landscape.paper import benchmarks
from landscape.paper import probe_checks as pc
from landscape.paper.plotting import save_figure


@pytest.fixture(scope="module")
def relu_testbed():
    return pc.make_testbed(
        "relu", in_dim=4, hidden=(6, 5), num_classes=3, num_samples=40, train_steps=30, seed=1
    )


def test_testbed_is_seeded_and_float64():
    a = pc.make_testbed("tanh", in_dim=3, hidden=(4,), num_classes=2, num_samples=20, train_steps=5, seed=3)
    b = pc.make_testbed("tanh", in_dim=3, hidden=(4,), num_classes=2, num_samples=20, train_steps=5, seed=3)
    c = pc.make_testbed("tanh", in_dim=3, hidden=(4,), num_classes=2, num_samples=20, train_steps=5, seed=4)
    assert a.num_params == 3 * 4 + 4 + 4 * 2 + 2
    assert all(p.dtype == torch.float64 for p in a.model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))
    assert not torch.equal(a.inputs, c.inputs)
    assert a.train_losses[-1] < a.train_losses[0]
    assert all(p.grad is None for p in a.model.parameters())


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        pc.mlp([2, 3], "gelu")
    with pytest.raises(ValueError, match="label_noise"):
        pc.teacher_data(4, 2, 2, label_noise=1.5)
    with pytest.raises(ValueError, match="unknown trace methods"):
        pc.trace_errors(DenseOperator(torch.eye(5, dtype=torch.float64)), 5.0, [4], methods=["exact"])


def test_rescaling_keeps_the_function_and_moves_only_the_raw_curvature(relu_testbed):
    model = relu_testbed.model
    scaled = pc.rescale_layers(model, 0, 7.0)
    torch.testing.assert_close(scaled(relu_testbed.inputs), model(relu_testbed.inputs))
    assert torch.equal(model[0].weight, relu_testbed.model[0].weight)  # the original is untouched
    torch.testing.assert_close(scaled[0].weight, 7.0 * model[0].weight)
    torch.testing.assert_close(scaled[2].weight, model[2].weight / 7.0)
    study = pc.rescaling_study(relu_testbed, [0.2, 1.0, 5.0])
    assert np.ptp(study["loss"]) < 1e-12
    ratio = study["lambda_max"].max() / study["lambda_max"].min()
    assert ratio > 2, "λmax should move under rescaling"
    ns = study["normalized_sharpness"]
    np.testing.assert_allclose(ns, ns.iloc[1], rtol=1e-6)


def test_rescaling_refuses_non_homogeneous_activations_and_bad_arguments(relu_testbed):
    tanh = pc.mlp([3, 4, 4, 2], "tanh")
    with pytest.raises(ValueError, match="only through ReLU"):
        pc.rescale_layers(tanh, 0, 2.0)
    with pytest.raises(ValueError, match="alpha must be a positive"):
        pc.rescale_layers(relu_testbed.model, 0, -1.0)
    with pytest.raises(ValueError, match="layer must index"):
        pc.rescale_layers(relu_testbed.model, 2, 2.0)
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        pc.rescale_layers(nn.Linear(2, 2), 0, 2.0)


def test_compare_eigenvalues_reproduces_the_undeflated_artefact():
    # A known spectrum with distinct top eigenvalues 4, 3, 2.5 and a gap below.
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([4.0, 3.0, 2.5], dtype=torch.float64), torch.linspace(-0.5, 1.0, 27)])
    exact = torch.sort(spectrum).values
    table = pc.compare_eigenvalues(
        DenseOperator(q @ torch.diag(spectrum) @ q.T), exact, 3, power_max_iter=500
    )
    lanczos = table[table["method"] == "Lanczos"]
    np.testing.assert_allclose(lanczos["value"], [4.0, 3.0, 2.5], atol=1e-10)
    assert (lanczos["abs_error"] <= lanczos["residual"] + 1e-12).all()
    undeflated = table[table["method"] == "power, undeflated"]["value"].to_numpy()
    np.testing.assert_allclose(undeflated, 4.0, rtol=5e-3)  # three copies of λmax
    deflated = table[table["method"] == "power, deflated"]["value"].to_numpy()
    np.testing.assert_allclose(deflated, [4.0, 3.0, 2.5], rtol=5e-2)
    assert table[table["method"] == "power, undeflated"]["rel_error"].iloc[1:].min() > 0.2


def test_trace_errors_and_summary_on_an_exact_problem():
    model, loss_fn, data = (
        pc.mlp([3, 5, 2], "tanh", seed=2),
        nn.functional.cross_entropy,
        pc.teacher_data(30, 3, 2),
    )
    H = dense_hessian(model, loss_fn, data)
    exact = float(torch.trace(H))
    op = HessianOperator(model, loss_fn, data)
    errors = pc.trace_errors(op, exact, [8, 16], seeds=range(3))
    assert len(errors) == 3 * 2 * 3
    # Hutch++ with a sketch of D columns spans the whole space: exact up to rounding.
    full = pc.trace_errors(op, exact, [3 * op.dim], methods=["hutch++"], seeds=[0])
    assert full["rel_error"].iloc[0] < 1e-10
    summary = pc.trace_summary(errors)
    assert list(summary.columns) == [
        "method",
        "budget",
        "rms_rel_error",
        "mean_rel_stderr",
        "coverage",
        "seeds",
    ]
    assert (summary["seeds"] == 3).all()
    assert summary["coverage"].between(0, 1).all()
    row = summary[(summary["method"] == "hutchinson") & (summary["budget"] == 8)].iloc[0]
    hutch = errors[(errors["method"] == "hutchinson") & (errors["budget"] == 8)]
    assert row["rms_rel_error"] == pytest.approx(float(np.sqrt((hutch["rel_error"] ** 2).mean())))


def test_smoothed_density_is_a_density():
    grid = np.linspace(-5, 6, 4001)
    density = pc.smoothed_density(np.array([0.0, 0.0, 1.0]), grid, 0.2)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-9)
    assert density[np.argmin(np.abs(grid))] > density[np.argmin(np.abs(grid - 1.0))]
    with pytest.raises(ValueError, match="sigma"):
        pc.smoothed_density([1.0], grid, 0.0)


def test_benchmark_tables(tmp_path):
    assert benchmarks.benchmark_tables(tmp_path / "missing") == []
    (tmp_path / "a.md").write_text("| a_b | c |\n|---|---|\n| 1 | x |\n| 2.5 | |\nA closing note.\n")
    (tmp_path / "curvature.md").write_text(
        "## Curvature ##\n\nNotes first.\n\n| c |\n|---|\n| 2 |\n\n### Second\n\n| d | e |\n|---|---|\n| 3 | 4x |\n"
    )
    tables = benchmarks.benchmark_tables(tmp_path)
    assert [(t.file, t.title, t.name) for t in tables] == [
        ("curvature.md", "Curvature", "bench_curvature_1"),
        ("curvature.md", "Second", "bench_curvature_2"),
        ("a.md", "a", "bench_a_1"),
    ]
    assert tables[0].notes == "Notes first."
    assert tables[0].frame["c"].tolist() == [2]
    assert tables[1].frame["e"].tolist() == ["4x"]  # not every cell a number: kept as text
    assert list(tables[2].frame.columns) == ["a b", "c"]
    assert tables[2].frame["a b"].tolist() == [1.0, 2.5]
    assert tables[2].frame["c"].tolist() == ["x", ""]
    assert tables[2].notes == "A closing note."


def test_save_figure_names_figures_after_their_notebook(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    first = save_figure(fig, tmp_path, "validation_lines", "validation")
    again = save_figure(fig, tmp_path / "b", "validation_lines", "validation")
    assert first.name == "validation_lines.png"
    assert first.read_bytes() == again.read_bytes()  # reproducible files
    with pytest.raises(ValueError, match="validation_<what>"):
        save_figure(fig, tmp_path, "lines", "validation")
    plt.close(fig)


def test_save_figure_refuses_type_too_small_or_clipped_at_the_page_width(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landscape.paper.plotting import apply_style, legibility

    with matplotlib.rc_context():  # apply_style sets rcParams: leave other tests their defaults
        apply_style()
        fig, ax = plt.subplots(figsize=(12, 3))
        ax.plot([0, 1], [1, 0])
        assert legibility(fig) == []  # the shared style is legible at the widest figure allowed
        ax.legend(["line"], fontsize=7)  # 7 pt in a 12-in figure: 7/72 · 1056/12 = 8.6 px at the column width
        with pytest.raises(ValueError, match=r"'line' at 7 pt shows 8.6 px"):
            save_figure(fig, tmp_path, "validation_small", "validation")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [1, 0])
        ax.legend(["line"], fontsize=7)  # the same type in a figure shown at its own size: 14.6 px
        assert legibility(fig) == []
        ax.set_xlabel("a label much longer than the figure is wide, which the saved file cuts off")
        with pytest.raises(ValueError, match="clipped"):
            save_figure(fig, tmp_path, "validation_clipped", "validation")
        assert not (tmp_path / "validation_clipped.png").exists()
        plt.close(fig)


# ------------------------------------------------------------------------------------------------ the checks


def _eigen_table(method, values, exact, residuals):
    return pd.DataFrame({
        "method": method, "index": np.arange(1, len(values) + 1), "value": values, "exact": exact,
        "rel_error": np.abs(np.subtract(values, exact)) / np.abs(exact), "residual": residuals,
    })  # fmt: skip


def test_at_most_and_at_least_pass_fail_and_fail_on_nan():
    assert pc.at_most("e", 1e-12, 1e-10).passed
    assert not pc.at_most("e", 1e-8, 1e-10).passed
    assert not pc.at_most("e", float("nan"), 1e-10).passed
    assert pc.at_least("r", 3.0, 2.0).outcome == "pass"
    assert pc.at_least("r", 1.5, 2.0).outcome == "fail"
    assert "1.5" in str(pc.at_least("r", 1.5, 2.0))


def test_check_lanczos_error():
    exact = np.array([4.0, 3.0])
    good = _eigen_table("Lanczos", [4.0 + 1e-12, 3.0], exact, [1e-10, 1e-10])
    bad = _eigen_table("Lanczos", [4.0, 3.01], exact, [1e-10, 1e-2])
    assert pc.check_lanczos_error(good, 1e-6).passed
    check = pc.check_lanczos_error(bad, 1e-6)
    assert not check.passed
    assert check.measured == pytest.approx(0.01 / 3)
    with pytest.raises(ValueError, match="no rows for method 'Lanczos'"):
        pc.check_lanczos_error(_eigen_table("power, deflated", [4.0], [4.0], [0.1]))


def test_check_residuals_certify():
    exact = np.array([-1.0, 2.0, 3.0, 4.0])
    # 3.9 lies 0.1 from 4 (and 0.9 from 3): a residual of 0.2 certifies it, one of 0.05 does not.
    honest = _eigen_table("power, deflated", [3.9, 3.0], [4.0, 3.0], [0.2, 1e-14])
    dishonest = _eigen_table("power, deflated", [3.9, 3.0], [4.0, 3.0], [0.05, 1e-14])
    assert pc.check_residuals_certify(honest, exact).passed
    check = pc.check_residuals_certify(dishonest, exact)
    assert not check.passed
    assert check.measured == pytest.approx(0.1 / (0.05 + 4 * np.finfo(float).eps * 4))
    # the distance is to the *nearest* exact eigenvalue, not to the i-th: a copy of λmax is certified too
    copies = _eigen_table("power, undeflated", [4.0, 4.0], [4.0, 3.0], [1e-14, 1e-14])
    assert pc.check_residuals_certify(copies, exact).passed


def test_check_undeflated_copies():
    copies = _eigen_table("power, undeflated", [3.999, 4.001, 3.998], [4.0, 3.0, 2.5], [0.01] * 3)
    distinct = _eigen_table("power, undeflated", [4.0, 3.0, 2.5], [4.0, 3.0, 2.5], [1e-9] * 3)
    degenerate = _eigen_table("power, undeflated", [4.0, 4.0], [4.0, 4.0], [1e-9] * 2)
    check = pc.check_undeflated_copies(copies, 1e-2)
    assert check.passed
    assert check.measured == pytest.approx(0.002 / 4)
    assert not pc.check_undeflated_copies(distinct, 1e-2).passed
    assert not pc.check_undeflated_copies(degenerate, 1e-2).passed, (
        "copies of a repeated eigenvalue prove nothing"
    )


def _synthetic_errors(method, rate, *, seeds=40, budgets=(8, 16, 32, 64, 128), within=0.95, seed=0):
    """Estimates whose relative error is b^rate times seed noise, and whose |error| lies within two stderr for
    a fraction `within` of the rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        for b in budgets:
            error = b**rate * rng.normal()
            inside = rng.random() < within
            stderr = abs(error) / (1.5 if inside else 2.5)
            rows.append({"method": method, "budget": b, "seed": s, "estimate": 10 + error, "stderr": stderr,
                         "error": error, "rel_error": abs(error) / 10,
                         "rel_stderr": stderr / 10})  # fmt: skip
    return pd.DataFrame(rows)


def test_rate_interval_on_an_exact_power_law_and_on_noisy_ones():
    budgets = [8, 16, 32, 64]
    exact = pd.DataFrame([
        {"method": "hutchinson", "budget": b, "seed": s, "rel_error": (1 + s) * b**-0.5}
        for s in range(12) for b in budgets
    ])  # fmt: skip
    rate = pc.rate_interval(exact, "hutchinson", n_resamples=200)
    assert rate.estimate == pytest.approx(-0.5)
    assert rate.low == pytest.approx(-0.5)
    assert rate.high == pytest.approx(-0.5)
    assert rate.n == 12
    # a slope is not a mean: with fewer than SMALL_SAMPLE seeds no interval, and the method says why
    few = pc.rate_interval(exact[exact["seed"] < 4], "hutchinson", n_resamples=200)
    assert few.estimate == pytest.approx(-0.5)
    assert np.isnan(few.low)
    assert np.isnan(few.high)
    assert "too few clusters" in few.method
    with pytest.raises(ValueError, match=r"lacks columns \['rel_error'\]"):
        pc.rate_interval(exact.drop(columns="rel_error"), "hutchinson")
    noisy = pc.rate_interval(_synthetic_errors("hutchinson", -0.5), "hutchinson", n_resamples=500)
    assert noisy.low < -0.5 < noisy.high
    assert noisy.high - noisy.low < 0.3
    with pytest.raises(ValueError, match="at least two budgets"):
        pc.rate_interval(exact[exact["budget"] == 8], "hutchinson")
    with pytest.raises(ValueError, match="no trace estimates for method 'xtrace'"):
        pc.rate_interval(exact, "xtrace")


def test_check_trace_rate_both_outcomes():
    right = pc.rate_interval(_synthetic_errors("hutchinson", -0.5), "hutchinson", n_resamples=500)
    slow = pc.rate_interval(_synthetic_errors("hutchinson", -0.15), "hutchinson", n_resamples=500)
    assert pc.check_trace_rate("hutchinson", right.estimate, right.low, right.high).passed
    check = pc.check_trace_rate("hutchinson", slow.estimate, slow.low, slow.high)
    assert not check.passed
    assert check.low == slow.low
    assert check.measured == slow.estimate
    # the low-rank methods pass when at least as fast as Hutchinson, and fail when slower
    fast = pc.rate_interval(_synthetic_errors("hutch++", -1.4), "hutch++", n_resamples=500)
    assert pc.check_trace_rate("hutch++", fast.estimate, fast.low, fast.high).passed
    assert not pc.check_trace_rate("xtrace", -0.2, -0.3, -0.1).passed
    nan = float("nan")
    few_reason = "too few clusters (G < 10)"
    untested = pc.check_trace_rate("hutchinson", -0.5, nan, nan, reason=few_reason)
    assert untested.passed is None
    assert untested.outcome == "not testable"
    assert untested.reason == few_reason
    assert not untested.has_interval
    assert str(untested).endswith(f"not testable ({few_reason})")
    assert pc.check_trace_rate("hutchinson", nan, -0.6, nan).outcome == "not testable"
    with pytest.raises(ValueError, match="no theoretical rate"):
        pc.check_trace_rate("exact", -0.5, -0.6, -0.4)


def test_nominal_coverage_follows_student_t():
    assert pc.stderr_samples("hutchinson", 9) == 9
    assert pc.stderr_samples("hutch++", 9) == 3
    assert pc.stderr_samples("xtrace", 9) == 4
    # P(|t_3| <= 2) = 0.8607 (tables), P(|t_1| <= 2) = 2 atan(2) / π
    assert pc.nominal_coverage("hutchinson", [4]) == pytest.approx(0.8607, abs=1e-4)
    assert pc.nominal_coverage("xtrace", [4]) == pytest.approx(2 * np.arctan(2) / np.pi)
    assert pc.nominal_coverage("hutchinson", [4, 10**6]) == pytest.approx(
        (0.8607 + pc.NOMINAL_COVERAGE) / 2, abs=1e-4
    )
    assert abs(pc.NOMINAL_COVERAGE - 0.9545) < 1e-4
    with pytest.raises(ValueError, match="at least two samples"):
        pc.nominal_coverage("hutch++", [3])
    with pytest.raises(ValueError, match="unknown trace method"):
        pc.stderr_samples("exact", 8)


def test_coverage_interval_and_check_coverage_both_outcomes():
    honest = pc.coverage_interval(_synthetic_errors("xtrace", -1, within=0.96), "xtrace", n_resamples=500)
    optimistic = pc.coverage_interval(_synthetic_errors("xtrace", -1, within=0.7), "xtrace", n_resamples=500)
    assert honest.n == 40
    assert honest.low < honest.estimate < honest.high
    assert pc.check_coverage("xtrace", honest.estimate, honest.low, honest.high).passed
    check = pc.check_coverage("xtrace", optimistic.estimate, optimistic.low, optimistic.high)
    assert not check.passed
    assert optimistic.high < pc.NOMINAL_COVERAGE
    # a nominal below 1 for few samples: the same interval can pass against it
    assert pc.check_coverage("xtrace", 0.86, 0.8, 0.9, nominal=0.88).passed
    # few seeds: the coverage is a mean, so Student's t over the seeds' coverages decides it
    few = pc.coverage_interval(_synthetic_errors("xtrace", -1, seeds=4, within=0.7), "xtrace")
    assert few.method == "Student t over cluster means"
    assert 0.0 <= few.low < few.estimate < few.high <= 1.0
    # a fraction's t-interval is clipped to [0, 1]: three seeds covering 1, 1 and 0
    clipped = pd.DataFrame({"method": "xtrace", "budget": 8, "seed": [0, 1, 2], "error": [1.0, 1.0, 3.0],
                            "stderr": 1.0})  # fmt: skip
    interval = pc.coverage_interval(clipped, "xtrace")
    assert (interval.low, interval.estimate, interval.high) == (0.0, pytest.approx(2 / 3), 1.0)
    nan = float("nan")
    assert pc.check_coverage("xtrace", 0.9, nan, nan, reason="no seeds").outcome == "not testable"
    with pytest.raises(ValueError, match=r"lacks columns \['stderr'\]"):
        pc.coverage_interval(_synthetic_errors("xtrace", -1).drop(columns="stderr"), "xtrace")


def test_calibration_reads_the_coverage_interval_three_ways():
    assert pc.calibration(0.77, 0.87, 0.93) == "optimistic"
    assert pc.calibration(0.90, 0.97, 0.95) == "calibrated"
    assert pc.calibration(0.96, 0.99, 0.95) == "conservative"
    assert pc.calibration(float("nan"), 0.99, 0.95) == "untested"
    assert set(pc.CALIBRATIONS) == {"calibrated", "optimistic", "conservative", "untested"}


def test_check_needs_a_reason_when_not_testable():
    with pytest.raises(ValueError, match="say why it is not testable"):
        pc.Check("x", 1.0, "≤ 2", None)
    with pytest.raises(TypeError, match="passed must be True, False or None"):
        pc.Check("x", 1.0, "≤ 2", 1)


def test_rescaling_summary_and_checks():
    table = pd.DataFrame({
        "alpha": [0.5, 1.0, 2.0], "loss": [0.3, 0.3, 0.3 + 1e-16], "lambda_max": [8.0, 2.0, 1.0],
        "normalized_sharpness": [1.0, 1.0, 1.0 + 1e-9],
    })  # fmt: skip
    summary = pc.rescaling_summary(table)
    assert summary["alpha_min"] == 0.5
    assert summary["alpha_max"] == 2.0
    assert summary["lmax_ratio"] == pytest.approx(8.0)
    assert summary["ns_rel_spread"] == pytest.approx(1e-9)
    assert all(c.passed for c in pc.check_rescaling(table))
    broken = table.assign(
        loss=[0.3, 0.3, 0.4], lambda_max=[2.0, 2.0, 2.1], normalized_sharpness=[1.0, 1.0, 1.5]
    )
    assert [c.passed for c in pc.check_rescaling(broken)] == [False, False, False]
    with pytest.raises(ValueError, match="α = 1"):
        pc.rescaling_summary(table[table["alpha"] != 1.0])
    with pytest.raises(ValueError, match=r"rescaling table lacks columns \['lambda_max'\]"):
        pc.rescaling_summary(table.drop(columns="lambda_max"))


def test_checks_table():
    nan = float("nan")
    checks = [pc.at_most("a", 1e-12, 1e-10), pc.check_coverage("xtrace", 0.8, 0.75, 0.85),
              pc.check_trace_rate("xtrace", -0.7, nan, nan, reason="too few seeds")]  # fmt: skip
    table = pc.checks_table(checks)
    assert list(table.columns) == ["check", "measured", "with interval", "criterion", "outcome", "reason"]
    assert table["outcome"].tolist() == ["pass", "fail", "not testable"]
    assert table["with interval"].tolist() == ["", "0.8 [0.75, 0.85]", ""]
    assert table["reason"].tolist() == ["", "", "too few seeds"]
    assert pc.checks_table([]).empty


def test_docstring_examples():
    import doctest

    result = doctest.testmod(pc, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5
    assert result.failed == 0
