"""Permutation alignment: exact recovery of a permuted copy (barrier 0), function preserved, clear errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape.alignment import align_permutation, permute_hidden_units, weight_matching
from landscape.interpolation import interpolation_barrier
from test_directions import assert_unchanged, snapshot


class SequentialMLP(nn.Sequential):
    """Like the project's MLP: an nn.Sequential subclass of Linear layers and activations."""

    def __init__(self, widths, activation=nn.ReLU):
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(activation())
        super().__init__(*layers)


def toy_data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 5, generator=gen, dtype=torch.float64)
    y = (x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return x, y


def trained(widths, seed: int, activation=nn.ReLU, steps: int = 150):
    torch.manual_seed(seed)
    model = SequentialMLP(widths, activation).double()
    x, y = toy_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model


def random_perms(model, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randperm(m.out_features, generator=gen)
        for m in list(model.children())[:-1]
        if isinstance(m, nn.Linear)
    ]


@pytest.mark.parametrize(("widths", "activation"), [((5, 24, 3), nn.ReLU), ((5, 16, 12, 10, 3), nn.Tanh)])
def test_permuted_copy_of_a_trained_net_comes_back_with_zero_barrier(widths, activation):
    model_a = trained(widths, seed=0, activation=activation)
    x, y = toy_data()
    perms = random_perms(model_a, seed=1)
    model_b = permute_hidden_units(model_a, perms)
    with torch.no_grad():
        torch.testing.assert_close(model_b(x), model_a(x), rtol=1e-12, atol=1e-12)
    before = interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), num_points=11)
    assert before.height > 1e-3  # the permuted copy is far away in parameter space
    before_a, before_b = snapshot(model_a), snapshot(model_b)
    aligned = align_permutation(model_a, model_b)
    for (name, pa), pb in zip(model_a.named_parameters(), aligned.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    after = interpolation_barrier(model_a, aligned, F.cross_entropy, (x, y), num_points=11)
    assert after.height == 0.0
    assert after.instability == 0.0
    assert_unchanged(model_a, before_a)
    assert_unchanged(model_b, before_b)


def test_weight_matching_returns_the_inverse_permutation():
    model_a = trained((5, 16, 12, 3), seed=0)
    perms = random_perms(model_a, seed=2)
    found = weight_matching(model_a, permute_hidden_units(model_a, perms))
    for p, q in zip(perms, found, strict=True):
        assert torch.equal(p[q], torch.arange(len(p)))  # composing the two gives the identity


def test_aligned_model_is_functionally_identical_and_closer_in_weights():
    model_a = trained((5, 32, 3), seed=0)
    model_b = trained((5, 32, 3), seed=1)
    x, _ = toy_data()
    aligned = align_permutation(model_a, model_b)
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), model_b(x), rtol=1e-12, atol=1e-12)
    assert type(aligned) is SequentialMLP

    def inner(m):
        return sum(
            float((pa * pb).sum().detach())
            for pa, pb in zip(model_a.parameters(), m.parameters(), strict=True)
        )

    assert inner(aligned) > inner(model_b)
    for pb, pal in zip(model_b.parameters(), aligned.parameters(), strict=True):  # only moved, never changed
        assert torch.equal(
            torch.sort(pb.detach().reshape(-1)).values, torch.sort(pal.detach().reshape(-1)).values
        )


def test_weight_matching_is_deterministic_given_the_seed():
    model_a = trained((5, 16, 12, 10, 3), seed=0, steps=20)
    model_b = trained((5, 16, 12, 10, 3), seed=1, steps=20)
    first = weight_matching(model_a, model_b, seed=3)
    second = weight_matching(model_a, model_b, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))


def test_unsupported_architectures_raise_clearly():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Conv2d"):
        align_permutation(conv, conv)
    with_bn = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        align_permutation(with_bn, with_bn)

    class NotSequential(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

    with pytest.raises(TypeError, match="NotSequential"):
        align_permutation(NotSequential(), NotSequential())
    single = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="fewer than two Linear"):
        align_permutation(single, single)
    a, b = SequentialMLP((5, 8, 3)), SequentialMLP((5, 9, 3))
    with pytest.raises(ValueError, match="different shapes"):
        align_permutation(a, b)
    with pytest.raises(ValueError, match="not a permutation"):
        permute_hidden_units(a, [torch.zeros(8, dtype=torch.long)])
    with pytest.raises(ValueError, match="max_sweeps"):
        weight_matching(a, a, max_sweeps=0)


def test_leading_flatten_and_scalar_prelu_are_supported():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5), nn.PReLU(), nn.Dropout(0.1), nn.Linear(5, 2)
    ).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    permuted = permute_hidden_units(model, [torch.tensor([4, 2, 0, 1, 3])])
    with torch.no_grad():
        torch.testing.assert_close(permuted.eval()(x), model.eval()(x), rtol=1e-12, atol=1e-12)
    aligned = align_permutation(model, permuted)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), aligned.parameters(), strict=True))
