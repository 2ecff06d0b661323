"""Sharpness family: closed forms on a quadratic at its minimum, Dinh rescaling invariance (adaptive pass,
non-adaptive fail), determinism, no mutation, unknown options raise."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape.flatness import (
    average_case_sharpness,
    epsilon_sharpness,
    pac_bayes_sigma,
    worst_case_sharpness,
)
from landscape.operators import dense_hessian
from test_directions import assert_unchanged, snapshot


def least_squares(orthogonal: bool = False):
    """A linear regression at its exact minimum (gradient 0, Hessian H = 2 XᵀX / n): a quadratic loss."""
    gen = torch.Generator().manual_seed(0)
    n, dim = 32, 4
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    if orthogonal:  # orthogonal columns with distinct norms: H is diagonal
        q, _ = torch.linalg.qr(x)
        x = q * torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    x = x * torch.tensor([3.0, 1.5, 1.0, 0.5], dtype=torch.float64)
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(dim, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    return model, x, y


def relu_net(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3)
    ).double()
    x = torch.randn(60, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=gen)
    return model, x, y


def dinh_rescaled(model: nn.Sequential, alpha: float) -> nn.Sequential:
    """Layer 0 (weight and bias) times α, layer 2's weight times 1/α: the same function for a ReLU net."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out[0].weight.mul_(alpha)
        out[0].bias.mul_(alpha)
        out[2].weight.div_(alpha)
    return out


def test_worst_case_l2_at_a_minimum_is_half_rho_squared_lambda_max():
    model, x, y = least_squares()
    H = dense_hessian(model, F.mse_loss, (x, y))
    theta = model.weight.detach().reshape(-1)
    rho = 0.1
    plain = worst_case_sharpness(model, F.mse_loss, (x, y), rho, adaptive=False, steps=200)
    assert plain.value == pytest.approx(0.5 * rho**2 * float(torch.linalg.eigvalsh(H)[-1]), rel=1e-8)
    scaled = torch.diag(theta.abs()) @ H @ torch.diag(theta.abs())
    adaptive = worst_case_sharpness(model, F.mse_loss, (x, y), rho, steps=200)
    assert adaptive.value == pytest.approx(0.5 * rho**2 * float(torch.linalg.eigvalsh(scaled)[-1]), rel=1e-8)
    assert adaptive.p == 2
    assert adaptive.adaptive
    assert adaptive.perturbed_loss == pytest.approx(adaptive.loss + adaptive.value, rel=1e-14)


def test_worst_case_linf_and_keskar_box_reach_the_corner_of_a_diagonal_quadratic():
    model, x, y = least_squares(orthogonal=True)
    H = dense_hessian(model, F.mse_loss, (x, y))
    assert torch.allclose(H, torch.diag(torch.diag(H)), atol=1e-12)
    theta = model.weight.detach().reshape(-1)
    rho = 0.2
    out = worst_case_sharpness(model, F.mse_loss, (x, y), rho, p=math.inf, steps=10)
    assert out.value == pytest.approx(0.5 * rho**2 * float((theta**2 * torch.diag(H)).sum()), rel=1e-10)
    eps = 1e-2
    kes = epsilon_sharpness(model, F.mse_loss, (x, y), eps, steps=10)
    corner = 0.5 * float(((eps * (theta.abs() + 1)) ** 2 * torch.diag(H)).sum())
    assert kes.value == pytest.approx(100 * corner / (1 + kes.loss), rel=1e-10)
    assert kes.perturbed_loss - kes.loss == pytest.approx(corner, rel=1e-10)


def test_average_case_on_a_quadratic_is_half_rho_squared_trace():
    model, x, y = least_squares()
    H = dense_hessian(model, F.mse_loss, (x, y))
    theta = model.weight.detach().reshape(-1)
    rho = 0.3
    for adaptive, scale in ((True, theta.abs()), (False, torch.ones_like(theta))):
        out = average_case_sharpness(model, F.mse_loss, (x, y), rho, adaptive=adaptive, num_samples=400)
        exact = 0.5 * rho**2 * float((scale**2 * torch.diag(H)).sum())
        assert abs(out.value - exact) < 4 * out.stderr
        assert out.stderr < 0.1 * exact
        assert out.p is None


def test_average_case_is_deterministic_and_independent_of_chunking():
    model, x, y = relu_net()
    a = average_case_sharpness(model, F.cross_entropy, (x, y), 0.1, num_samples=10, seed=4, chunk_size=3)
    b = average_case_sharpness(model, F.cross_entropy, (x, y), 0.1, num_samples=10, seed=4, chunk_size=10)
    c = average_case_sharpness(model, F.cross_entropy, (x, y), 0.1, num_samples=10, seed=5)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    assert a.value != c.value


def measures(model, x, y):
    data = (x, y)
    return {
        "adaptive worst l2": worst_case_sharpness(model, F.cross_entropy, data, 0.05, steps=10).value,
        "adaptive worst linf": worst_case_sharpness(
            model, F.cross_entropy, data, 0.02, p=math.inf, steps=10
        ).value,
        "adaptive average": average_case_sharpness(model, F.cross_entropy, data, 0.1, num_samples=16).value,
        "worst l2": worst_case_sharpness(model, F.cross_entropy, data, 0.05, adaptive=False, steps=10).value,
        "average": average_case_sharpness(
            model, F.cross_entropy, data, 0.1, adaptive=False, num_samples=16
        ).value,
        "keskar": epsilon_sharpness(model, F.cross_entropy, data, 1e-2, steps=10).value,
    }


@pytest.mark.parametrize("alpha", [4.0, 3.0])
def test_dinh_rescaling_adaptive_measures_are_invariant_and_the_others_are_not(alpha):
    model, x, y = relu_net()
    rescaled = dinh_rescaled(model, alpha)
    with torch.no_grad():
        torch.testing.assert_close(rescaled(x), model(x), rtol=1e-12, atol=1e-12)  # the same function
    original, moved = measures(model, x, y), measures(rescaled, x, y)
    for name in ("adaptive worst l2", "adaptive worst linf", "adaptive average"):
        assert original[name] > 0
        assert moved[name] == pytest.approx(original[name], rel=1e-8), name
    for name in ("worst l2", "average", "keskar"):
        assert abs(moved[name] - original[name]) > 0.1 * abs(original[name]), name


def test_pac_bayes_sigma_on_a_quadratic():
    model, x, y = least_squares()
    H = dense_hessian(model, F.mse_loss, (x, y))
    target = 0.05
    out = pac_bayes_sigma(
        model, F.mse_loss, (x, y), target=target, quantity="loss", num_samples=256, iterations=30
    )
    # E[L(θ + σ z)] − L(θ) = σ² tr(H) / 2 for a quadratic at its minimum
    assert out.sigma == pytest.approx(math.sqrt(2 * target / float(torch.trace(H))), rel=0.1)
    assert out.increase <= target
    assert out.increase == pytest.approx(target, rel=1e-6)
    assert out.flatness == pytest.approx(1 / out.sigma**2)
    mag = pac_bayes_sigma(model, F.mse_loss, (x, y), target=target, quantity="loss", magnitude_aware=True)
    assert mag.magnitude_aware
    assert mag.increase <= target


def test_pac_bayes_sigma_on_the_training_error():
    model, x, y = relu_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    out = pac_bayes_sigma(model, F.cross_entropy, (x, y), target=0.1, num_samples=8)
    assert out.quantity == "error"
    assert 1e-6 < out.sigma < 10
    assert out.increase <= 0.1


def test_models_are_bit_for_bit_unchanged():
    model, x, y = relu_net()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[4].bias.requires_grad_(False)
    model.train()
    before = snapshot(model)
    measures(model, x, y)
    pac_bayes_sigma(model, F.cross_entropy, (x, y), num_samples=4, iterations=3)
    assert_unchanged(model, before)


def test_bad_input_raises():
    model, x, y = relu_net()
    data = (x, y)
    with pytest.raises(ValueError, match="unknown p=1"):
        worst_case_sharpness(model, F.cross_entropy, data, 0.1, p=1)
    with pytest.raises(ValueError, match="rho"):
        worst_case_sharpness(model, F.cross_entropy, data, 0.0)
    with pytest.raises(TypeError, match="adaptive"):
        average_case_sharpness(model, F.cross_entropy, data, 0.1, adaptive="yes")
    with pytest.raises(ValueError, match="num_samples"):
        average_case_sharpness(model, F.cross_entropy, data, 0.1, num_samples=0)
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_sharpness(model, F.cross_entropy, data, -1.0)
    with pytest.raises(ValueError, match="steps"):
        epsilon_sharpness(model, F.cross_entropy, data, steps=0)
    with pytest.raises(ValueError, match="unknown quantity"):
        pac_bayes_sigma(model, F.cross_entropy, data, quantity="accuracy")
    with pytest.raises(ValueError, match="bounds"):
        pac_bayes_sigma(model, F.cross_entropy, data, bounds=(1.0, 0.1))


def test_non_finite_parameters_or_inputs_raise_naming_what():
    model, x, y = relu_net()
    bad_x = x.clone()
    bad_x[7, 2] = float("nan")
    with pytest.raises(ValueError, match="the inputs of batch 0 contain NaN or inf"):
        worst_case_sharpness(model, F.cross_entropy, (bad_x, y), 0.05, steps=2)
    with pytest.raises(ValueError, match="the inputs of batch 0 contain NaN or inf"):
        average_case_sharpness(model, F.cross_entropy, (bad_x, y), 0.05, num_samples=2)
    with torch.no_grad():
        model[0].bias[1] = float("inf")
    with pytest.raises(ValueError, match=re.escape("the model's parameter '0.bias' contains NaN or inf")):
        epsilon_sharpness(model, F.cross_entropy, (x, y), steps=2)
