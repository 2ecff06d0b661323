"""Interpolation barriers: zero for a model with itself, the convex-quadratic closed form, BatchNorm handling."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape.interpolation import interpolation_barrier, recompute_batchnorm_statistics
from test_directions import assert_unchanged, snapshot
from test_slices import classifier, regression


def bn_mlp(seed: int):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3)
    ).double()


def bn_data(n: int = 48, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen, dtype=torch.float64) * 3 + 1, torch.randint(
        0, 3, (n,), generator=gen
    )


def test_barrier_of_a_model_with_itself_is_zero():
    model, x, y = classifier()
    out = interpolation_barrier(model, copy.deepcopy(model), F.cross_entropy, (x, y), num_points=7)
    assert out.height == 0.0
    assert torch.equal(out.losses, out.losses[0].expand(7))
    assert out.instability == 0.0
    assert out.errors.shape == (7,)
    assert out.bn_stats == "none"
    assert out.alphas[0] == 0.0
    assert out.alphas[-1] == 1.0


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_barrier_between_two_points_of_a_convex_quadratic_is_not_positive(method):
    model_a, x, y = regression(seed=0)
    model_b = copy.deepcopy(model_a)
    with torch.no_grad():
        for p in model_b.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=p.dtype))
    out = interpolation_barrier(model_a, model_b, F.mse_loss, (x, y), num_points=11, method=method)
    # L(θ(α)) − linear part = −α(1 − α) mean(s²), s = the difference of the two residuals
    with torch.no_grad():
        s = model_b(x) - model_a(x)
    alphas = out.alphas
    linear = (1 - alphas) * out.losses[0] + alphas * out.losses[-1]
    torch.testing.assert_close(
        out.losses - linear, -alphas * (1 - alphas) * (s**2).mean(), rtol=1e-10, atol=1e-13
    )
    assert out.height <= 0.0
    assert out.errors is None
    assert out.instability is None
    with torch.no_grad():  # the ends are the two models exactly
        assert out.losses[0].item() == pytest.approx(F.mse_loss(model_a(x), y).item(), rel=1e-14)
        assert out.losses[-1].item() == pytest.approx(F.mse_loss(model_b(x), y).item(), rel=1e-14)


def test_errors_and_instability_follow_frankle_et_al():
    model_a, x, y = classifier(seed=0)
    model_b, _, _ = classifier(seed=1)
    out = interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), num_points=9)
    assert out.errors is not None
    want = float(out.errors.max() - (out.errors[0] + out.errors[-1]) / 2)
    assert out.instability == want
    with torch.no_grad():
        assert out.errors[0].item() == (model_a(x).argmax(1) != y).double().mean().item()
        assert out.errors[-1].item() == (model_b(x).argmax(1) != y).double().mean().item()
    gap = out.losses - ((1 - out.alphas) * out.losses[0] + out.alphas * out.losses[-1])
    assert out.height == pytest.approx(float(gap.max()), abs=1e-15)
    assert out.argmax == float(out.alphas[int(gap.argmax())])
    no_acc = interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), num_points=9, accuracy=False)
    assert no_acc.errors is None
    assert no_acc.height == out.height


def test_recompute_batchnorm_statistics_is_the_average_over_batches():
    model = bn_mlp(0)
    x, y = bn_data()
    work = copy.deepcopy(model).eval()
    work[1].train()
    modes = [m.training for m in work.modules()]
    momentum = work[1].momentum
    recompute_batchnorm_statistics(work, [(x[:24], y[:24]), (x[24:], y[24:])])
    with torch.no_grad():
        pre = model[0](x)
    torch.testing.assert_close(work[1].running_mean, pre.mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        work[1].running_var, (pre[:24].var(0) + pre[24:].var(0)) / 2, rtol=1e-12, atol=1e-14
    )
    assert work[1].momentum == momentum
    assert [m.training for m in work.modules()] == modes
    with pytest.raises(ValueError, match="no BatchNorm"):
        recompute_batchnorm_statistics(nn.Linear(2, 2), (x, x))


def test_batchnorm_statistics_interpolated_or_recomputed():
    x, y = bn_data()
    model_a, model_b = bn_mlp(0), bn_mlp(1)
    for m in (model_a, model_b):
        recompute_batchnorm_statistics(m, (x, y))  # statistics of each end point on the training data
    before_a, before_b = snapshot(model_a.train()), snapshot(model_b)
    plain = interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), num_points=5)
    assert plain.bn_stats == "interpolated"
    fixed = interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), num_points=5, bn_data=[(x, y)])
    assert fixed.bn_stats == "recomputed"
    assert fixed.method == "loop"
    # the ends already carry their own statistics: both ways agree there, and differ in between
    torch.testing.assert_close(fixed.losses[[0, -1]], plain.losses[[0, -1]], rtol=1e-12, atol=0)
    assert not torch.allclose(fixed.losses[1:-1], plain.losses[1:-1])
    # at α = 1/2 the recomputed statistics are those of the midpoint network on the data
    mid = copy.deepcopy(model_a)
    with torch.no_grad():
        for (_, pa), (_, pb), (_, pm) in zip(
            model_a.named_parameters(), model_b.named_parameters(), mid.named_parameters(), strict=True
        ):
            pm.copy_(0.5 * pa + 0.5 * pb)
    recompute_batchnorm_statistics(mid, (x, y))
    with torch.no_grad():
        want = F.cross_entropy(mid.eval()(x), y).item()
    assert fixed.losses[2].item() == pytest.approx(want, rel=1e-12)
    assert_unchanged(model_a, before_a)
    assert_unchanged(model_b, before_b)


def test_bad_input_raises():
    model, x, y = classifier()
    with pytest.raises(ValueError, match="no BatchNorm"):
        interpolation_barrier(model, model, F.cross_entropy, (x, y), bn_data=(x, y))
    with pytest.raises(ValueError, match="num_points"):
        interpolation_barrier(model, model, F.cross_entropy, (x, y), num_points=1)
    other = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    with pytest.raises(ValueError, match="different tensors"):
        interpolation_barrier(model, other, F.cross_entropy, (x, y))
    with pytest.raises(ValueError, match="dtype"):
        interpolation_barrier(model, copy.deepcopy(model).float(), F.cross_entropy, (x, y))
    with pytest.raises(ValueError, match="unknown method"):
        interpolation_barrier(model, model, F.cross_entropy, (x, y), method="gpu")
    with pytest.raises(TypeError, match="model_b"):
        interpolation_barrier(model, "model", F.cross_entropy, (x, y))


def test_models_are_bit_for_bit_unchanged():
    model_a, x, y = classifier(seed=0)
    model_b, _, _ = classifier(seed=1)
    model_a[0].weight.grad = torch.ones_like(model_a[0].weight)
    model_b.train()
    model_b[3].eval()
    before_a, before_b = snapshot(model_a), snapshot(model_b)
    for method in ("vmap", "loop"):
        interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), num_points=4, method=method)
    assert_unchanged(model_a, before_a)
    assert_unchanged(model_b, before_b)


def test_non_finite_models_or_bn_data_raise_naming_what():
    model_a, x, y = classifier(seed=0)
    model_b, _, _ = classifier(seed=1)
    broken = copy.deepcopy(model_b)
    with torch.no_grad():
        broken[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=re.escape("model_b's tensor '2.weight' contains NaN or inf")):
        interpolation_barrier(model_a, broken, F.cross_entropy, (x, y), 3)
    with pytest.raises(ValueError, match=re.escape("model_a's tensor '2.weight' contains NaN or inf")):
        interpolation_barrier(broken, model_a, F.cross_entropy, (x, y), 3)
    a, b = bn_mlp(0), bn_mlp(1)
    bx, by = bn_data()
    bx = bx.clone()
    bx[3, 0] = float("inf")
    with pytest.raises(ValueError, match="the inputs of batch 0 of bn_data contain NaN or inf"):
        interpolation_barrier(a, b, F.cross_entropy, bn_data(seed=1), 3, bn_data=(bx, by))
