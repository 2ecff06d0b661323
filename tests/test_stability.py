"""Linear stability along a direction against per-sample Hessians built densely in float64, and the
one-step growth against the exact mean over every minibatch."""

import itertools
import math

import pytest
import torch
from torch.func import functional_call, hessian

from landscape.stability import LinearStability, linear_stability

N = 6


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.arange(N) % 2
    return model, x, y


def _sample_hessians(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat, xi, yi):
        pieces, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            pieces[name] = flat[start : start + shape.numel()].reshape(shape)
            start += shape.numel()
        return torch.nn.functional.cross_entropy(functional_call(model, pieces, (xi[None],)), yi[None])

    return torch.stack([hessian(loss)(theta, x[i], y[i]) for i in range(N)])  # (N, D, D)


def test_sharpness_and_nonuniformity_match_dense_per_sample_hessians():
    model, x, y = _problem()
    H_i = _sample_hessians(model, x, y)
    H = H_i.mean(0)
    values, vectors = torch.linalg.eigh(H)
    v = vectors[:, -1]
    got = linear_stability(model, torch.nn.functional.cross_entropy, [(x[:4], y[:4]), (x[4:], y[4:])], v,
                           chunk_size=3)  # fmt: skip
    products = H_i @ v  # (N, D)
    assert got.sharpness == pytest.approx(float(values[-1]), rel=1e-10)
    s2 = float(products.square().sum(1).mean() - (H @ v).square().sum())
    assert got.nonuniformity == pytest.approx(math.sqrt(s2), rel=1e-8)
    assert got.eigen_residual < 1e-10
    assert got.num_samples == N
    # the direction's scale does not matter
    again = linear_stability(model, torch.nn.functional.cross_entropy, (x, y), 3 * v)
    assert again.sharpness == pytest.approx(got.sharpness, rel=1e-10)


def test_growth_is_the_exact_mean_over_every_minibatch_without_replacement():
    model, x, y = _problem(1)
    H_i = _sample_hessians(model, x, y)
    values, vectors = torch.linalg.eigh(H_i.mean(0))
    v = vectors[:, -1]
    s = linear_stability(model, torch.nn.functional.cross_entropy, (x, y), v)
    lr, B = 0.7, 2
    eye = torch.eye(v.numel(), dtype=torch.float64)
    exact = torch.stack([((eye - lr * H_i[list(b)].mean(0)) @ v).square().sum()
                         for b in itertools.combinations(range(N), B)]).mean()  # fmt: skip
    assert s.growth(lr, B, N) == pytest.approx(float(exact), rel=1e-9)
    # the threshold is where the growth crosses 1; full batch gives the GD limit 2/λ
    eta = s.threshold(B, N)
    assert s.growth(eta, B, N) == pytest.approx(1.0, rel=1e-9)
    assert s.growth(0.9 * eta, B, N) < 1 < s.growth(1.1 * eta, B, N)
    assert s.threshold(N, N) == pytest.approx(2 / float(values[-1]), rel=1e-10)
    assert s.threshold(1, N) < s.threshold(B, N) < s.threshold(N, N)  # more noise, smaller threshold


def test_bad_input_is_named():
    model, x, y = _problem()
    with pytest.raises(ValueError, match="direction must have shape"):
        linear_stability(model, torch.nn.functional.cross_entropy, (x, y), torch.ones(3))
    with pytest.raises(ValueError, match="non-zero"):
        linear_stability(
            model, torch.nn.functional.cross_entropy, (x, y), torch.zeros(26, dtype=torch.float64)
        )
    with pytest.raises(ValueError, match="batch_size must be an integer in"):
        LinearStability(1.0, 0.0, 0.0, 4).threshold(0, 10)
    with pytest.raises(ValueError, match="num_train"):
        LinearStability(1.0, 0.0, 0.0, 4).threshold(1, 1)
    assert LinearStability(-1.0, 0.0, 0.0, 4).threshold(2, 10) == math.inf
