"""Roughness, validated on synthetic surfaces of known roughness: exactly 0 for quadratic bowls of any curvature,
the closed-form share of a ripple's variance otherwise, independent of curvature; and on real models."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from landscape.directions import random_direction
from landscape.ruggedness import count_local_minima, roughness, slice_roughness
from test_directions import assert_unchanged, snapshot
from test_slices import classifier, regression


def rippled_bowl(curvature: float, amplitude: float, cycles: float, window: float = 1.0, points: int = 401):
    """f(α) = ½cα² + A sin(ωα + 0.3) on the curvature-scaled window a = w/√c, ω = 2π·cycles/(2a)."""
    radius = window / math.sqrt(curvature)
    alphas = torch.linspace(-radius, radius, points, dtype=torch.float64)
    omega = 2 * math.pi * cycles / (2 * radius)
    return alphas, 0.5 * curvature * alphas**2 + amplitude * torch.sin(omega * alphas + 0.3)


def expected_roughness(amplitude: float, window: float = 1.0) -> float:
    """The closed form for many cycles: ripple variance A²/2 over quadratic variance w⁴/45 plus A²/2."""
    return (amplitude**2 / 2) / (window**4 / 45 + amplitude**2 / 2)


@pytest.mark.parametrize("curvature", [1e-3, 1.0, 70.0, 1e4])
def test_a_bowl_of_any_curvature_scores_zero(curvature):
    alphas, losses = rippled_bowl(curvature, 0.0, 0.0)
    rho, smooth = roughness(alphas, losses + 5.0)
    assert rho < 1e-20
    torch.testing.assert_close(smooth, losses + 5.0, rtol=1e-10, atol=1e-10)
    quartic = losses + 3.0 * (alphas * math.sqrt(curvature)) ** 4  # a smooth, non-quadratic slice: also 0
    assert roughness(alphas, quartic)[0] < 1e-20


@pytest.mark.parametrize("amplitude", [0.01, 0.03, 0.1, 0.3])
def test_a_rippled_bowl_matches_the_closed_form_whatever_its_curvature(amplitude):
    values = [roughness(*rippled_bowl(c, amplitude, cycles=12.0))[0] for c in (1e-2, 1.0, 1e3)]
    assert values == pytest.approx([values[0]] * 3, rel=1e-9)  # independent of curvature
    assert values[0] == pytest.approx(expected_roughness(amplitude), rel=0.05)


def test_roughness_grows_with_amplitude_and_ignores_slow_waves():
    rough = [roughness(*rippled_bowl(1.0, a, cycles=12.0))[0] for a in (0.0, 0.01, 0.05, 0.2)]
    assert rough == sorted(rough)
    assert rough[0] < 1e-20 < rough[1]
    # a quarter cycle over the window is smooth at this scale: the quartic fit absorbs almost all of it
    slow = roughness(*rippled_bowl(1.0, 0.2, cycles=0.25))[0]
    assert slow < 1e-3 * roughness(*rippled_bowl(1.0, 0.2, cycles=12.0))[0]


def test_roughness_is_invariant_to_the_scale_and_offset_of_the_loss():
    alphas, losses = rippled_bowl(2.0, 0.05, cycles=8.0)
    base = roughness(alphas, losses)[0]
    assert roughness(alphas, 7.0 * losses + 3.0)[0] == pytest.approx(base, rel=1e-9)
    assert roughness(alphas / 2, losses)[0] == pytest.approx(base, rel=1e-9)
    assert roughness(alphas, torch.full_like(alphas, 2.0))[0] == 0.0


def test_roughness_rejects_bad_input():
    a = torch.linspace(-1, 1, 11, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least degree \\+ 2 = 6 points"):
        roughness(a[:5], a[:5] ** 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        roughness(a.flip(0), a**2)
    with pytest.raises(ValueError, match="finite"):
        roughness(a, torch.where(a > 0.5, math.inf, a))
    with pytest.raises(ValueError, match="degree must be"):
        roughness(a, a**2, degree=-1)


def wavy_mse(amplitude: float, frequency: float):
    """MSE plus a ripple A · mean(sin(ω · output)): rough along any direction that moves the outputs."""

    def loss(outputs, targets):
        return F.mse_loss(outputs, targets) + amplitude * torch.sin(frequency * outputs).mean()

    return loss


def test_a_linear_regression_is_smooth_on_every_direction_and_its_window_follows_its_curvature():
    """The MSE of a linear model is exactly quadratic in its parameters: ρ = 0, and a = w/√(dᵀHd) in closed form."""
    model, x, y = regression()
    for seed in range(3):
        d = random_direction(model, "none", seed=seed, zero_bias_and_norm=False)
        out = slice_roughness(model, F.mse_loss, (x, y), d, window=2.0, points=21)
        s = x @ d["weight"].T + d["bias"]
        curvature = float(2 * (s**2).mean())
        assert out.curvature == pytest.approx(curvature, rel=1e-12)
        assert out.radius == pytest.approx(2.0 / math.sqrt(curvature), rel=1e-12)
        assert out.value < 1e-20
        rise = float(out.losses[0] + out.losses[-1]) / 2 - float(out.losses[10])  # ½ c a² = ½ w² = 2
        assert rise == pytest.approx(2.0, rel=1e-9)


def test_slice_roughness_sees_a_ripple_and_is_invariant_to_the_direction_scale():
    model, x, y = regression()
    d = random_direction(model, "filter", seed=2, zero_bias_and_norm=False)
    smooth = slice_roughness(model, wavy_mse(0.0, 1.0), (x, y), d, points=201).value
    rough = [
        slice_roughness(model, wavy_mse(a, 20.0), (x, y), d, points=201).value for a in (0.002, 0.01, 0.05)
    ]
    assert smooth < 1e-20 < rough[0] < rough[1] < rough[2]
    doubled = slice_roughness(
        model, wavy_mse(0.01, 20.0), (x, y), {k: 2 * v for k, v in d.items()}, points=201
    )
    assert doubled.value == pytest.approx(rough[1], rel=1e-9)
    assert doubled.radius == pytest.approx(
        slice_roughness(model, wavy_mse(0.01, 20.0), (x, y), d, points=201).radius / 2, rel=1e-9
    )


def test_slice_roughness_leaves_the_model_unchanged_and_checks_its_input():
    model, x, y = classifier()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model.train()
    before = snapshot(model)
    flat = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    out = slice_roughness(model, F.cross_entropy, (x, y), flat.double(), points=11)
    assert out.losses.shape == (11,)
    assert 0 <= out.value <= 1
    assert out.local_minima >= 0
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="window must be a positive number, got 0"):
        slice_roughness(model, F.cross_entropy, (x, y), flat.double(), window=0)
    with pytest.raises(ValueError, match="points must be an integer >= max"):
        slice_roughness(model, F.cross_entropy, (x, y), flat.double(), points=4)
    regression_model, xr, yr = regression()
    zero = {n: torch.zeros_like(p) for n, p in regression_model.named_parameters()}
    zero["bias"] = torch.zeros_like(zero["bias"])
    with pytest.raises(ValueError, match="curvature"):
        slice_roughness(
            regression_model, lambda o, t: (o * 0).sum() + 1.0, (xr, yr), {**zero, "bias": zero["bias"] + 1}
        )


def test_count_local_minima_counts_dips_not_noise():
    alphas = torch.linspace(-1, 1, 201, dtype=torch.float64)
    assert count_local_minima(alphas**2) == 1
    assert count_local_minima(alphas) == 0
    assert count_local_minima(torch.cos(3 * torch.pi * alphas)) == 2  # at ±1/3; those at ±1 are end points
    flat = torch.ones(50, dtype=torch.float64)
    flat[::2] += 1e-12  # rounding-level wiggles on a flat stretch of a curve with a real range
    assert count_local_minima(torch.cat([flat, torch.tensor([2.0])])) == 0
    with pytest.raises(ValueError, match="at least 3"):
        count_local_minima([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        count_local_minima([1.0, float("inf"), 2.0])
