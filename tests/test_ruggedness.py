"""Ruggedness: exactly 0 for a quadratic loss, growing with high-frequency structure; g and c closed forms."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from landscape.directions import random_direction
from landscape.ruggedness import count_local_minima, ruggedness, total_variation
from landscape.slices import symmetric_grid
from test_directions import assert_unchanged, snapshot
from test_slices import classifier, regression


def wavy_mse(amplitude: float, frequency: float):
    """MSE plus a high-frequency ripple A · mean(sin(ω · output)): rugged along any direction that moves
    the outputs."""

    def loss(outputs, targets):
        return F.mse_loss(outputs, targets) + amplitude * torch.sin(frequency * outputs).mean()

    return loss


def test_total_variation():
    assert total_variation(torch.tensor([0.0, 2.0, 1.0, 1.0, 4.0])) == 6.0
    assert total_variation(torch.tensor([3.0])) == 0.0


def test_quadratic_loss_has_zero_ruggedness_and_exact_derivatives():
    model, x, y = regression()
    d = random_direction(model, "none", seed=1, zero_bias_and_norm=False)
    out = ruggedness(model, F.mse_loss, (x, y), d, symmetric_grid(3.0, 41))
    with torch.no_grad():
        r0 = model(x) - y
    s = x @ d["weight"].T + d["bias"]
    assert out.slope == pytest.approx(float(2 * (r0 * s).mean()), rel=1e-12)
    assert out.curvature == pytest.approx(float(2 * (s**2).mean()), rel=1e-12)
    torch.testing.assert_close(out.quadratic, out.losses, rtol=1e-12, atol=1e-12)
    assert out.value < 1e-12
    assert out.total_variation > 1.0
    assert out.residual_rms < 1e-12


def test_ruggedness_grows_with_frequency_and_amplitude():
    model, x, y = regression()
    d = random_direction(model, "filter", seed=2, zero_bias_and_norm=False)
    alphas = symmetric_grid(1.0, 401)
    smooth = ruggedness(model, wavy_mse(0.0, 1.0), (x, y), d, alphas).value
    by_frequency = [ruggedness(model, wavy_mse(0.01, w), (x, y), d, alphas).value for w in (5.0, 20.0, 80.0)]
    by_amplitude = [
        ruggedness(model, wavy_mse(a, 20.0), (x, y), d, alphas).value for a in (0.002, 0.01, 0.05)
    ]
    assert smooth < 1e-12
    assert smooth < by_frequency[0] < by_frequency[1] < by_frequency[2]
    assert by_amplitude[0] < by_amplitude[1] < by_amplitude[2]
    assert by_frequency[2] > 0.1


def test_ruggedness_is_invariant_to_the_scale_of_the_loss_and_of_the_direction():
    model, x, y = regression()
    d = random_direction(model, "filter", seed=2, zero_bias_and_norm=False)
    alphas = symmetric_grid(1.0, 101)
    base = ruggedness(model, wavy_mse(0.01, 20.0), (x, y), d, alphas)
    scaled_loss = ruggedness(model, lambda o, t: 7.0 * wavy_mse(0.01, 20.0)(o, t) + 3.0, (x, y), d, alphas)
    doubled = ruggedness(model, wavy_mse(0.01, 20.0), (x, y), {k: 2 * v for k, v in d.items()}, alphas / 2)
    assert scaled_loss.value == pytest.approx(base.value, rel=1e-9)
    assert doubled.value == pytest.approx(base.value, rel=1e-9)


def test_eigenvector_direction_and_model_unchanged():
    model, x, y = classifier()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model.train()
    before = snapshot(model)
    flat = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    out = ruggedness(model, F.cross_entropy, (x, y), flat.double() * 0.05, symmetric_grid(1.0, 11))
    assert out.losses.shape == (11,)
    assert out.value >= 0
    assert_unchanged(model, before)


def test_bad_input_raises():
    model, x, y = regression()
    d = random_direction(model, seed=0, zero_bias_and_norm=False)
    with pytest.raises(ValueError, match="at least 3"):
        ruggedness(model, F.mse_loss, (x, y), d, [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        ruggedness(model, F.mse_loss, (x, y), d, [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="unknown method"):
        ruggedness(model, F.mse_loss, (x, y), d, [0.0, 0.5, 1.0], method="batched")


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
