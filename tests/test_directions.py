"""Directions: filter/layer normalisation (Li et al. 2018), determinism, the accepted direction forms."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from landscape.directions import as_direction, direction_norm, normalize_direction, random_direction
from landscape.eigen import top_eigenvalues
from landscape.operators import HessianOperator


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1, bias=False),
        nn.LayerNorm([5, 6, 6]),
        nn.Flatten(),
        nn.Linear(5 * 36, 7),
    ).double()


def snapshot(model: nn.Module) -> dict:
    """Everything a probe must leave alone (shared by the other probe test files)."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for k in before["state"]:
        assert torch.equal(after["state"][k], before["state"][k]), k
    for a, b in zip(after["grads"], before["grads"], strict=True):
        assert (a is None) == (b is None)
        assert a is None or torch.equal(a, b)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["modes"] == before["modes"]


def test_filter_normalised_direction_has_the_filter_norms_of_theta():
    model = conv_net()
    d = random_direction(model, "filter", seed=3, zero_bias_and_norm=False)
    for name, theta in model.named_parameters():
        if theta.ndim >= 2:
            got = d[name].reshape(d[name].shape[0], -1).norm(dim=1)
            want = theta.detach().reshape(theta.shape[0], -1).norm(dim=1)
        else:
            got, want = d[name].norm(), theta.detach().norm()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_filter_normalisation_zeroes_bias_and_norm_parameters_by_default():
    model = conv_net()
    d = random_direction(model, seed=3)
    zeroed = {"0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "6.bias"}
    for name, t in d.items():
        if name in zeroed:
            assert torch.count_nonzero(t) == 0, name
        else:
            assert torch.count_nonzero(t) == t.numel(), name


def test_layer_normalised_direction_has_the_tensor_norms_of_theta():
    model = conv_net()
    d = random_direction(model, "layer", seed=1, zero_bias_and_norm=False)
    for name, theta in model.named_parameters():
        torch.testing.assert_close(d[name].norm(), theta.detach().norm(), rtol=1e-12, atol=0)


def test_unnormalised_direction_is_the_seeded_gaussian_draw():
    model = conv_net()
    d = random_direction(model, "none", seed=5, zero_bias_and_norm=False)
    gen = torch.Generator().manual_seed(5)
    for name, p in model.named_parameters():
        assert torch.equal(d[name], torch.randn(p.shape, generator=gen, dtype=torch.float64))


def test_same_seed_same_direction_and_different_seeds_differ():
    model = conv_net()
    a, b, c = (random_direction(model, seed=s) for s in (7, 7, 8))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_zero_filter_of_theta_gives_a_zero_filter():
    model = nn.Linear(3, 2).double()
    with torch.no_grad():
        model.weight[1] = 0
    d = random_direction(model, seed=0)
    assert torch.count_nonzero(d["weight"][1]) == 0
    assert torch.count_nonzero(d["weight"][0]) == 3


def test_unknown_options_raise():
    model = conv_net()
    with pytest.raises(ValueError, match="unknown normalization='model'"):
        random_direction(model, "model", seed=0)
    with pytest.raises(ValueError, match="unknown normalization"):
        random_direction(model, "Filter", seed=0)
    with pytest.raises(TypeError):
        random_direction(model, "filter")  # the seed is required
    with pytest.raises(TypeError, match="zero_bias_and_norm"):
        random_direction(model, seed=0, zero_bias_and_norm="yes")
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_direction(model, random_direction(model, seed=0), "unit")


def test_flat_vector_follows_the_hessian_operator_order():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    op = HessianOperator(model, nn.functional.mse_loss, (x, y))
    v = top_eigenvalues(op, 1).vectors[:, 0]
    d = as_direction(model, v)
    assert list(d) == op.param_names
    assert torch.equal(torch.cat([t.reshape(-1) for t in d.values()]), v)
    sub = as_direction(model, v[:16], params=["0.weight", "0.bias"])
    assert list(sub) == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match="length 26"):
        as_direction(model, v[:-1])


def test_model_direction_is_the_difference_and_dicts_are_checked():
    torch.manual_seed(0)
    a = nn.Linear(3, 2).double()
    b = copy.deepcopy(a)
    with torch.no_grad():
        b.weight.add_(1.0)
    d = as_direction(a, b)
    assert torch.equal(d["weight"], torch.ones(2, 3, dtype=torch.float64))
    assert torch.equal(d["bias"], torch.zeros(2, dtype=torch.float64))
    assert direction_norm(d) == pytest.approx(6**0.5)
    with pytest.raises(ValueError, match="not parameters"):
        as_direction(a, {"weights": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="shape"):
        as_direction(a, {"weight": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="different parameters"):
        as_direction(a, nn.Linear(3, 2, bias=False))
    with pytest.raises(TypeError, match="a direction must be"):
        as_direction(a, [1.0, 2.0])
    # partial dicts move only the named parameters; dtype comes from the model
    assert list(as_direction(a, {"bias": torch.ones(2)})) == ["bias"]
    assert as_direction(a, {"bias": torch.ones(2)})["bias"].dtype == torch.float64


def test_normalize_direction_puts_an_eigenvector_on_the_filter_scale():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    v = torch.randn(26, dtype=torch.float64)
    d = normalize_direction(model, v, "filter", zero_bias_and_norm=True)
    torch.testing.assert_close(
        d["0.weight"].norm(dim=1), model[0].weight.detach().norm(dim=1), rtol=1e-12, atol=0
    )
    assert torch.count_nonzero(d["0.bias"]) == 0


def test_model_is_unchanged_by_direction_probes():
    model = conv_net().train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = snapshot(model)
    random_direction(model, "filter", seed=0)
    random_direction(model, "layer", seed=0, zero_bias_and_norm=False)
    normalize_direction(model, random_direction(model, "none", seed=1), "filter")
    assert_unchanged(model, before)
