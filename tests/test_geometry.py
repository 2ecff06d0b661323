"""The curvature profile against a dense float64 Hessian, the outlier count and the gap certificate."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import assert_unchanged, make_problem, snapshot
from landscape import dense_hessian
from landscape.geometry import convexity_interval, measure_curvature, outlier_count, top_gap_certified
from landscape.results import cached_json


def test_outlier_count_finds_the_largest_ratio_gap():
    bulk = [1.0, 0.9, 0.8, 0.7, 0.6]
    assert outlier_count([50.0, 40.0, 30.0, *bulk]) == 3
    assert outlier_count(bulk) == 0  # largest ratio 1.17 < 2
    assert outlier_count([5.0, 2.0, 1.9, 1.8], min_ratio=2.0) == 1  # ratio 2.5 at the first gap
    assert outlier_count([3.0, 1.0, 0.0, -1.0]) == 1  # nothing counted across zero
    assert outlier_count([3.0, -1.0]) == 0


@pytest.mark.parametrize(
    ("values", "match"),
    [([1.0], "at least 2"), ([1.0, 2.0], "descending"), ([2.0, 1.0, float("nan")], "finite")],
)
def test_outlier_count_rejects_bad_input(values, match):
    with pytest.raises(ValueError, match=match):
        outlier_count(values)


def test_outlier_count_rejects_ratio_at_most_one():
    with pytest.raises(ValueError, match="min_ratio"):
        outlier_count([2.0, 1.0], min_ratio=1.0)


def test_gap_certificate_uses_the_residual_intervals():
    assert top_gap_certified([2.0, 1.0], [0.4, 0.4])
    assert not top_gap_certified([2.0, 1.0], [0.6, 0.6])
    with pytest.raises(ValueError, match="residual"):
        top_gap_certified([2.0, 1.0], [0.1])


def test_measure_curvature_matches_the_dense_hessian():
    model, loss_fn, x, y = make_problem("mlp", n=32)
    data = [(x, y)]
    exact = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, data)).flip(0)  # descending
    before = snapshot(model)
    profile = measure_curvature(model, loss_fn, data, k=4, tol=1e-8, trace_matvecs=400, slq_steps=20, seed=3)
    assert_unchanged(model, before)
    assert profile.num_params == exact.numel() == 57
    assert profile.num_samples == 32
    torch.testing.assert_close(
        torch.tensor(profile.top_eigenvalues, dtype=torch.float64), exact[:4], rtol=1e-6, atol=1e-9
    )
    assert profile.lambda_min == pytest.approx(float(exact[-1]), rel=1e-5, abs=1e-8)
    assert profile.lambda_min_converged
    assert profile.top_converged
    assert profile.convexity_ratio == pytest.approx(abs(float(exact[-1] / exact[0])), rel=1e-5)
    assert abs(profile.trace - float(exact.sum())) <= 4 * profile.trace_stderr + 1e-10 * float(
        exact.abs().sum()
    )
    assert profile.trace_per_param == pytest.approx(profile.trace / 57)
    assert profile.top_gap_certified == bool(exact[0] - exact[1] > 1e-6)
    assert profile.loss == pytest.approx(float(loss_fn(model(x), y).detach()))
    assert profile.adaptive_sharpness >= 0
    assert 1 <= profile.effective_rank <= 57
    low, high = profile.convexity_interval
    assert low <= abs(float(exact[-1] / exact[0])) * (1 + 1e-9)
    assert high >= abs(float(exact[-1] / exact[0])) * (1 - 1e-9)
    # 20 SLQ steps: the negative mass agrees with the exact count within a few standard errors of the probes
    true_mass = float((exact < 0).double().mean())
    assert 0 <= profile.negative_mass <= 1
    assert abs(profile.negative_mass - true_mass) <= 4 * profile.negative_mass_stderr + 0.05
    json.dumps(profile.to_dict())  # cacheable as JSON


def test_cached_json_computes_once_and_writes_atomically(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": 1.5}

    settings = {"run": "abc", "k": 3}
    assert cached_json(tmp_path, settings, compute) == {"value": 1.5}
    assert cached_json(tmp_path, settings, compute) == {"value": 1.5}
    assert len(calls) == 1
    assert cached_json(tmp_path, {**settings, "k": 4}, compute) == {"value": 1.5}
    assert len(calls) == 2
    assert not list(tmp_path.glob(".tmp-*"))

    def broken():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        cached_json(tmp_path, {"other": 1}, broken)
    assert len(list(tmp_path.glob("*.json"))) == 2  # nothing half-written
    with pytest.raises(TypeError, match="JSON"):
        cached_json(tmp_path, {"bad": object()}, compute)


def test_lambda_min_stops_at_its_budget_and_reports_the_residual():
    model, loss_fn, x, y = make_problem("mlp", n=32)
    data = [(x, y)]
    exact_min = float(torch.linalg.eigvalsh(dense_hessian(model, loss_fn, data))[0])
    profile = measure_curvature(model, loss_fn, data, k=2, tol=1e-12, lambda_min_matvecs=3, trace_matvecs=4,
                                slq_steps=5, adaptive_steps=1)  # fmt: skip
    assert not profile.lambda_min_converged
    assert profile.lambda_min_residual > 0
    # the residual is an error bar: an exact eigenvalue lies within it; the smallest one lies below it
    assert exact_min <= profile.lambda_min + 1e-12
    low, high = (
        profile.convexity_interval
    )  # the interval contains the exact ratio even though λmin did not converge
    exact_max = float(torch.linalg.eigvalsh(dense_hessian(model, loss_fn, data))[-1])
    assert low <= abs(exact_min) / exact_max <= high


def test_convexity_interval_is_checked_and_clamped():
    assert convexity_interval(2.0, 0.0, 0.5, 0.1) == (0.0, 0.0)  # no negative eigenvalue shown
    assert convexity_interval(2.0, 0.0, 0.05, 0.1) == (0.0, pytest.approx(0.025))
    with pytest.raises(ValueError, match="λmax > 0"):
        convexity_interval(-1.0, 0.0, -2.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        convexity_interval(1.0, float("nan"), -2.0, 0.0)
