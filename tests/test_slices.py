"""Slices: closed forms on linear regression, θ exactly on the grid, batched == looped, no mutation."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape import progress
from landscape.directions import random_direction
from landscape.eigen import top_eigenvalues
from landscape.interpolation import interpolation_barrier
from landscape.operators import HessianOperator
from landscape.slices import FirstLayer, GridEvaluator, slice_1d, slice_2d, symmetric_grid
from test_directions import assert_unchanged, snapshot


def regression(n: int = 40, dim: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Linear(dim, 1).double()
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return model, x, y


def residual_and_shift(model: nn.Linear, x, y, d):
    """r0 = Xw + b − y and s = X d_w + d_b, so that L(θ + α d) = mean((r0 + α s)²)."""
    with torch.no_grad():
        r0 = model(x) - y
    return r0, x @ d["weight"].T + d["bias"]


def classifier(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)
    ).double()
    x = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=gen)
    return model, x, y


def bn_cnn():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 25, 3),
    ).double()
    x = torch.randn(12, 2, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    model.train()
    with torch.no_grad():
        model(x)  # running statistics that are not the initial ones
    return model, x, y


def test_symmetric_grid_contains_zero_and_the_ends_exactly():
    g = symmetric_grid(0.7, 21)
    assert g[10] == 0.0
    assert g[0] == -0.7
    assert g[-1] == 0.7
    torch.testing.assert_close(g, torch.linspace(-0.7, 0.7, 21, dtype=torch.float64), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="num_points"):
        symmetric_grid(1.0, 1)
    with pytest.raises(ValueError, match="radius"):
        symmetric_grid(-1.0, 5)


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_1d_slice_of_linear_regression_is_the_analytic_quadratic(method):
    model, x, y = regression()
    d = random_direction(model, "none", seed=1, zero_bias_and_norm=False)
    alphas = torch.linspace(-2, 3, 11, dtype=torch.float64)
    out = slice_1d(model, F.mse_loss, (x, y), d, alphas, method=method)
    r0, s = residual_and_shift(model, x, y, d)
    want = (r0**2).mean() + 2 * alphas * (r0 * s).mean() + alphas**2 * (s**2).mean()
    torch.testing.assert_close(out.losses, want, rtol=1e-12, atol=0)
    assert out.losses.shape == (11,)
    assert out.accuracies is None
    assert out.method == method


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_2d_slice_of_linear_regression_is_the_analytic_quadratic(method):
    model, x, y = regression()
    d1 = random_direction(model, "none", seed=1, zero_bias_and_norm=False)
    d2 = random_direction(model, "none", seed=2, zero_bias_and_norm=False)
    xs, ys = symmetric_grid(1.0, 5), torch.tensor([-0.5, 0.0, 0.25, 2.0])
    out = slice_2d(model, F.mse_loss, (x, y), d1, d2, xs, ys, method=method)
    r0, s1 = residual_and_shift(model, x, y, d1)
    _, s2 = residual_and_shift(model, x, y, d2)
    residual = r0[None, None] + xs[:, None, None, None] * s1 + ys[None, :, None, None] * s2
    want = (residual**2).mean(dim=(2, 3))
    assert out.losses.shape == (5, 4)
    torch.testing.assert_close(out.losses, want, rtol=1e-12, atol=0)


def test_slice_along_a_top_eigenvector_at_the_minimum_is_half_lambda_alpha_squared():
    model, x, y = regression()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y).solution
    with torch.no_grad():
        model.weight.copy_(solution[:-1].T)
        model.bias.copy_(solution[-1])
    top = top_eigenvalues(HessianOperator(model, F.mse_loss, (x, y)), 1, tol=1e-10)
    alphas = symmetric_grid(2.0, 9)
    out = slice_1d(model, F.mse_loss, (x, y), top.vectors[:, 0], alphas)
    lam = float(top.values[0])
    torch.testing.assert_close(out.losses, out.losses[4] + 0.5 * lam * alphas**2, rtol=1e-9, atol=1e-12)


def test_theta_is_exactly_on_the_grid():
    model, x, y = classifier()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    with torch.no_grad():
        plain = F.cross_entropy(model(x), y).item()
    grid = symmetric_grid(1.0, 7)
    loop = slice_2d(model, F.cross_entropy, (x, y), d1, d2, grid, grid, method="loop")
    assert loop.losses[3, 3].item() == plain  # the very parameters of the model: bit-for-bit the same loss
    assert slice_1d(model, F.cross_entropy, (x, y), d1, grid, method="loop").losses[3].item() == plain
    batched = slice_2d(model, F.cross_entropy, (x, y), d1, d2, grid, grid, method="vmap")
    assert batched.losses[3, 3].item() == pytest.approx(plain, rel=1e-14)


def test_batched_and_looped_evaluation_give_the_same_numbers():
    model, x, y = classifier()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    xs, ys = symmetric_grid(2.0, 9), symmetric_grid(1.0, 7)
    loop = slice_2d(model, F.cross_entropy, (x, y), d1, d2, xs, ys, method="loop")
    assert loop.method == "loop"
    for chunk in (None, 1, 5, 63, 1000):
        vm = slice_2d(model, F.cross_entropy, (x, y), d1, d2, xs, ys, method="vmap", chunk_size=chunk)
        assert vm.method == "vmap"
        torch.testing.assert_close(vm.losses, loop.losses, rtol=1e-13, atol=0)
        assert torch.equal(vm.accuracies, loop.accuracies)
    auto = slice_2d(model, F.cross_entropy, (x, y), d1, d2, xs, ys)
    assert auto.method == "vmap"  # an MLP: batched over grid points


def test_accuracies_match_a_direct_computation():
    model, x, y = classifier()
    d = random_direction(model, seed=4)
    alphas = torch.tensor([-1.0, 0.0, 0.5])
    out = slice_1d(model, F.cross_entropy, (x, y), d, alphas, progress=True)
    for a, acc, loss in zip(alphas, out.accuracies, out.losses, strict=True):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in moved.named_parameters():
                p.add_(a * d[name])
            logits = moved(x)
        assert acc.item() == (logits.argmax(1) == y).double().mean().item()
        assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-13)


def test_batches_are_weighted_by_size():
    model, x, y = classifier()
    d = random_direction(model, seed=4)
    alphas = symmetric_grid(1.0, 5)
    whole = slice_1d(model, F.cross_entropy, (x, y), d, alphas)
    batches = [(x[:10], y[:10]), (x[10:11], y[10:11]), (x[11:], y[11:])]
    for method in ("vmap", "loop"):
        split = slice_1d(model, F.cross_entropy, iter(batches), d, alphas, method=method)
        torch.testing.assert_close(split.losses, whole.losses, rtol=1e-13, atol=0)
        torch.testing.assert_close(split.accuracies, whole.accuracies, rtol=1e-15, atol=0)


def test_line_to_a_second_model():
    model, x, y = classifier(seed=0)
    other, _, _ = classifier(seed=1)
    out = slice_1d(model, F.cross_entropy, (x, y), other, [0.0, 1.0])
    with torch.no_grad():
        assert out.losses[0].item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-14)
        assert out.losses[1].item() == pytest.approx(F.cross_entropy(other(x), y).item(), rel=1e-12)


def test_convolutional_bn_model_loops_on_cpu_and_vmap_agrees():
    model, x, y = bn_cnn()
    before = snapshot(model)
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    grid = symmetric_grid(0.5, 3)
    auto = slice_2d(model, F.cross_entropy, (x, y), d1, d2, grid, grid)
    assert auto.method == "loop"
    vm = slice_2d(model, F.cross_entropy, (x, y), d1, d2, grid, grid, method="vmap")
    torch.testing.assert_close(vm.losses, auto.losses, rtol=1e-12, atol=0)
    with torch.no_grad():  # eval mode: running statistics, no dropout
        plain = F.cross_entropy(model.eval()(x), y).item()
    model.train()
    assert auto.losses[1, 1].item() == plain
    assert_unchanged(model, before)


def test_model_is_bit_for_bit_unchanged():
    model, x, y = classifier()
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    model[2].bias.requires_grad_(False)
    model.train()
    model[1].eval()
    before = snapshot(model)
    d1 = random_direction(model, seed=1)
    d2 = random_direction(model, seed=2)
    for method in ("vmap", "loop"):
        slice_1d(model, F.cross_entropy, (x, y), d1, [-1.0, 0.0, 1.0], method=method)
        slice_2d(model, F.cross_entropy, (x, y), d1, d2, [-1.0, 0.0], [0.0, 1.0], method=method)
    assert_unchanged(model, before)


def test_bad_input_raises():
    model, x, y = classifier()
    d1 = random_direction(model, seed=1)
    with pytest.raises(ValueError, match="unknown method='fast'"):
        slice_1d(model, F.cross_entropy, (x, y), d1, [0.0], method="fast")
    with pytest.raises(ValueError, match="alphas"):
        slice_1d(model, F.cross_entropy, (x, y), d1, [])
    with pytest.raises(ValueError, match="NaN"):
        slice_1d(model, F.cross_entropy, (x, y), d1, [0.0, float("nan")])
    with pytest.raises(ValueError, match="parallel"):
        slice_2d(model, F.cross_entropy, (x, y), d1, {k: 2 * v for k, v in d1.items()}, [0.0], [0.0])
    with pytest.raises(ValueError, match="chunk_size"):
        slice_1d(model, F.cross_entropy, (x, y), d1, [0.0], chunk_size=0)
    with pytest.raises(TypeError, match="accuracy"):
        slice_1d(model, F.cross_entropy, (x, y), d1, [0.0], accuracy="yes")
    with pytest.raises(ValueError, match="data is empty"):
        slice_1d(model, F.cross_entropy, [], d1, [0.0])
    reg, rx, ry = regression()
    with pytest.raises(ValueError, match="accuracy=True"):
        slice_1d(reg, F.mse_loss, (rx, ry), reg, [0.0], accuracy=True)
    with pytest.raises(ValueError, match="scalar"):
        slice_1d(
            reg, lambda o, t: (o - t) ** 2, (rx, ry), random_direction(reg, seed=0), [0.0], method="loop"
        )


def test_evaluator_falls_back_to_the_loop_when_vmap_fails_in_auto_mode():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2).double()

        def forward(self, x):
            out = self.lin(x)
            return out if bool(out.sum() > -1e9) else -out  # control flow on values: not vmappable

    torch.manual_seed(0)
    model = DataDependent()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,))
    d = random_direction(model, seed=0)
    auto = slice_1d(model, F.cross_entropy, (x, y), d, [0.0, 1.0])
    assert auto.method == "loop"
    with pytest.raises(RuntimeError):
        slice_1d(model, F.cross_entropy, (x, y), d, [0.0, 1.0], method="vmap")
    ev = GridEvaluator(model, F.cross_entropy, (x, y), method="loop")
    loss, acc = ev.evaluate_state({})
    assert loss == pytest.approx(auto.losses[0].item(), rel=1e-15)
    assert acc == auto.accuracies[0].item()


def test_scalar_and_mixed_dtype_parameters():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2).double()
            self.scale = nn.Parameter(torch.tensor(1.5))  # 0-d, float32 next to float64 weights

        def forward(self, x):
            return self.lin(x) * self.scale.double()

    torch.manual_seed(0)
    model = Scaled()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    d = {"scale": torch.tensor(1.0), "lin.weight": torch.ones(2, 3, dtype=torch.float64)}
    alphas = [-1.0, 0.0, 0.5]
    loop = slice_1d(model, F.mse_loss, (x, y), d, alphas, method="loop")
    vm = slice_1d(model, F.mse_loss, (x, y), d, alphas, method="vmap")
    torch.testing.assert_close(vm.losses, loop.losses, rtol=1e-13, atol=0)
    with torch.no_grad():
        w, b = model.lin.weight - 1.0, model.lin.bias
        want = F.mse_loss((x @ w.T + b) * 0.5, y).item()
    assert loop.losses[0].item() == pytest.approx(want, rel=1e-12)


# -- progress --------------------------------------------------------------------------------------------------


def test_progress_is_off_under_pytest_and_set_progress_turns_the_bar_on(capsys):
    model, x, y = regression()
    d = random_direction(model, seed=1)
    slice_1d(model, F.mse_loss, (x, y), d, [0.0, 1.0])
    assert "slice_1d" not in capsys.readouterr().err  # the default under pytest: no bar
    try:
        progress.set_progress(True)
        slice_1d(model, F.mse_loss, (x, y), d, [0.0, 1.0])
        assert "slice_1d" in capsys.readouterr().err
        slice_1d(model, F.mse_loss, (x, y), d, [0.0, 1.0], progress=False)  # an explicit value wins
        assert "slice_1d" not in capsys.readouterr().err
    finally:
        progress.set_progress(None)


# -- the first layer formed once per anchor ---------------------------------------------------------------------


def plain_losses(model, loss_fn, data, anchors, weights):
    """Reference: each point built as a state and evaluated by one functional_call of the whole model."""
    ev = GridEvaluator(model, loss_fn, data, method="loop")
    out = []
    for w in weights.tolist():
        state = {n: sum(wk * a[n] for wk, a in zip(w, anchors, strict=True)) for n in anchors[0]}
        out.append(ev.evaluate_state(state)[0])
    return torch.tensor(out, dtype=torch.float64)


def wide_mlp():
    """An MLP whose first layer has fan-in 64 >= 16 K (K = 3 anchors): the first-layer rule applies."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x = torch.randn(10, 64, dtype=torch.float64)
    y = torch.randint(0, 4, (10,))
    return model, x, y


def wide_cnn():
    """A CNN whose first convolution has fan-in 6 x 3 x 3 = 54 >= 16 K."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(6, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 16, 4)
    ).double()
    x = torch.randn(10, 6, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (10,))
    return model, x, y


def grid_weights(xs, ys):
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    ones = torch.ones(gx.numel(), dtype=torch.float64)
    return torch.stack([ones, gx.reshape(-1), gy.reshape(-1)], dim=1)


@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_first_layer_products_once_per_chunk_match_the_plain_evaluation(monkeypatch, net, method):
    model, x, y = wide_mlp() if net == "mlp" else wide_cnn()
    d1 = random_direction(model, seed=1, zero_bias_and_norm=False)
    d2 = random_direction(model, seed=2, zero_bias_and_norm=False)
    theta = {n: p.detach() for n, p in model.named_parameters()}
    assert FirstLayer.find(model, [theta, d1, d2]).names == ["0.weight", "0.bias"]
    calls = []
    outputs = FirstLayer.outputs
    monkeypatch.setattr(FirstLayer, "outputs", lambda self, inputs: calls.append(1) or outputs(self, inputs))
    xs, ys = symmetric_grid(1.5, 5), symmetric_grid(1.0, 3)
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]
    out = slice_2d(model, F.cross_entropy, batches, d1, d2, xs, ys, method=method, chunk_size=4)
    want = plain_losses(model, F.cross_entropy, batches, [theta, d1, d2], grid_weights(xs, ys))
    torch.testing.assert_close(out.losses.reshape(-1), want, rtol=1e-12, atol=0)
    chunks = 4 if method == "vmap" else 1  # 15 points in chunks of 4 (vmap) or in one chunk (loop)
    assert len(calls) == chunks * len(batches)  # K products per batch and chunk, not one per point
    with torch.no_grad():
        at_theta = F.cross_entropy(model(x), y).item()
    single = slice_2d(model, F.cross_entropy, (x, y), d1, d2, xs, ys, method="loop")
    assert single.losses[2, 1].item() == at_theta  # θ's own first-layer output, bit for bit


class Twice(nn.Module):
    """Applies its first layer twice: its output is not the first operation's output alone."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 64)

    def forward(self, x):
        return self.lin(self.lin(x))[:, :3]


class MySequential(nn.Sequential):
    def forward(self, x):
        return super().forward(2 * x)  # a subclass may do anything before the first layer


class MyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x.sin())


def test_the_first_layer_rule_falls_back_to_the_plain_evaluation(monkeypatch):
    torch.manual_seed(0)
    first, again = nn.Linear(64, 64), nn.Linear(64, 64)
    again.weight = first.weight  # tied (a module used twice breaks torch.func.functional_call itself)
    hooked = nn.Sequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 3))
    hooked[0].register_forward_pre_hook(lambda _m, args: (args[0] * 3,))
    cases = {  # each would qualify but for the named defect (fan-in 64 >= 16 K)
        "not a Sequential": Twice(),
        "a Sequential subclass": MySequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 3)),
        "a Linear subclass": nn.Sequential(MyLinear(64, 4), nn.Tanh(), nn.Linear(4, 3)),
        "another first op": nn.Sequential(nn.Tanh(), nn.Linear(64, 3)),
        "a hooked first layer": hooked,
        "a weight used twice": nn.Sequential(first, nn.Tanh(), again, nn.Linear(64, 3)),
        "a small fan-in": nn.Sequential(nn.Linear(47, 4), nn.Tanh(), nn.Linear(4, 3)),
    }
    for why, model in cases.items():
        model = model.double()
        width = 47 if why == "a small fan-in" else 64
        x, y = torch.randn(7, width, dtype=torch.float64), torch.randint(0, 3, (7,))
        d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
        theta = {n: p.detach() for n, p in model.named_parameters()}
        assert FirstLayer.find(model, [theta, d1, d2]) is None, why
        xs = symmetric_grid(1.0, 3)
        want = plain_losses(model, F.cross_entropy, (x, y), [theta, d1, d2], grid_weights(xs, xs))
        for method in ("vmap", "loop"):
            out = slice_2d(model, F.cross_entropy, (x, y), d1, d2, xs, xs, method=method)
            torch.testing.assert_close(out.losses.reshape(-1), want, rtol=1e-13, atol=0, msg=why)
    model, _, _ = wide_mlp()
    theta = {n: p.detach() for n, p in model.named_parameters()}
    assert FirstLayer.find(model, [theta, theta, theta]) is not None  # the control: the rule holds
    assert FirstLayer.find(nn.Sequential(nn.Linear(47, 4)).double(), [theta] * 3) is None  # 47 < 16 x 3
    later = {n: t for n, t in theta.items() if not n.startswith("0.")}  # a subset without the first layer
    assert FirstLayer.find(model, [later, later]) is None
    monkeypatch.setattr(nn.modules.module, "_global_forward_hooks", {0: lambda *_: None})
    assert FirstLayer.find(model, [theta, theta]) is None


def test_a_direction_on_the_first_layer_only():
    model, x, y = wide_mlp()
    d = {n: t for n, t in random_direction(model, seed=3, zero_bias_and_norm=False).items() if n[0] == "0"}
    theta = {n: p.detach() for n, p in model.named_parameters() if n in d}
    assert FirstLayer.find(model, [theta, d]) is not None
    alphas = symmetric_grid(1.0, 5)
    weights = torch.stack([torch.ones(5, dtype=torch.float64), alphas], 1)
    want = plain_losses(model, F.cross_entropy, (x, y), [theta, d], weights)
    for method in ("vmap", "loop"):
        out = slice_1d(model, F.cross_entropy, (x, y), d, alphas, method=method)
        torch.testing.assert_close(out.losses, want, rtol=1e-12, atol=0)


def test_auto_uses_vmap_for_tiny_forward_passes_on_a_cpu_and_the_loop_otherwise():
    model, x, y = classifier()  # 64 samples x 452 parameters < 1e5 multiply-adds
    d = random_direction(model, seed=1)
    assert slice_1d(model, F.cross_entropy, (x, y), d, [0.0, 1.0]).method == "vmap"
    model, x, y = wide_mlp()  # 10 x 556 < 1e5, but 400 samples give 2.2e5
    d = random_direction(model, seed=1)
    assert slice_1d(model, F.cross_entropy, (x, y), d, [0.0, 1.0]).method == "vmap"
    big = (x.repeat(40, 1), y.repeat(40))
    assert slice_1d(model, F.cross_entropy, big, d, [0.0, 1.0]).method == "loop"


# -- non-finite values -------------------------------------------------------------------------------------------


def test_non_finite_model_directions_or_data_raise_naming_what():
    model, x, y = classifier()
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    bad = {**d1, "2.weight": d1["2.weight"].clone().fill_(float("nan"))}
    with pytest.raises(ValueError, match=r"direction\['2.weight'\] contains NaN or inf"):
        slice_1d(model, F.cross_entropy, (x, y), bad, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"d2\['2.weight'\] contains NaN or inf"):
        slice_2d(model, F.cross_entropy, (x, y), d1, bad, [0.0], [0.0])
    flat = torch.cat([t.reshape(-1) for t in d1.values()])
    flat[3] = float("inf")
    with pytest.raises(ValueError, match=r"direction\['0.weight'\] contains NaN or inf"):
        slice_1d(model, F.cross_entropy, (x, y), flat, [0.0, 1.0])
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[4].bias[0] = float("inf")
    with pytest.raises(
        ValueError, match=re.escape("the direction model's parameter '4.bias' contains NaN or inf")
    ):
        slice_1d(model, F.cross_entropy, (x, y), other, [0.0, 1.0])
    with pytest.raises(ValueError, match=re.escape("the model's parameter '4.bias' contains NaN or inf")):
        slice_1d(other, F.cross_entropy, (x, y), model, [0.0, 1.0])  # θ blamed, not the difference
    with pytest.raises(ValueError, match=re.escape("the model's parameter '4.bias' contains NaN or inf")):
        slice_1d(other, F.cross_entropy, (x, y), d1, [0.0, 1.0])
    cnn, cx, cy = bn_cnn()
    with torch.no_grad():
        cnn[1].running_var[2] = float("nan")
    cd = random_direction(cnn, seed=0)
    with pytest.raises(ValueError, match=re.escape("the model's buffer '1.running_var' contains NaN or inf")):
        slice_1d(cnn, F.cross_entropy, (cx, cy), cd, [0.0])
    nan_x = x.clone()
    nan_x[15, 1] = float("nan")
    batches = [(x[:10], y[:10]), (nan_x[10:], y[10:])]
    for method in ("vmap", "loop"):
        with pytest.raises(ValueError, match="the inputs of batch 1 contain NaN or inf"):
            slice_1d(model, F.cross_entropy, batches, d1, [0.0, 1.0], method=method)
    with pytest.raises(ValueError, match="the inputs of batch 0 contain NaN or inf"):
        slice_2d(model, F.cross_entropy, (nan_x, y), d1, d2, [0.0], [0.0])
    reg, rx, ry = regression()
    ry = ry.clone()
    ry[0] = float("inf")
    with pytest.raises(ValueError, match="the targets of batch 0 contain NaN or inf"):
        slice_1d(reg, F.mse_loss, (rx, ry), random_direction(reg, seed=0), [0.0])


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_a_loss_that_overflows_far_from_theta_is_kept(method):
    model, x, y = regression()
    d = random_direction(model, "none", seed=1, zero_bias_and_norm=False)
    out = slice_1d(model, F.mse_loss, (x, y), d, [0.0, 1.0, 1e200], method=method)
    assert torch.isfinite(out.losses[:2]).all()
    assert out.losses[2].item() == float("inf")  # (1e200)² overflows: data about the surface, not an error


def test_barrier_weights_through_the_first_layer_match_the_plain_evaluation():
    model_a, x, y = wide_mlp()
    model_b = copy.deepcopy(model_a)
    with torch.no_grad():
        for p in model_b.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5), dtype=p.dtype))
    a = {n: t.detach() for n, t in model_a.named_parameters()}
    b = {n: t.detach() for n, t in model_b.named_parameters()}
    assert FirstLayer.find(model_a, [a, b, a]) is not None
    ev = GridEvaluator(model_a, F.cross_entropy, (x, y))
    for method in ("vmap", "loop"):  # rows (1, 0, α) up to α = 1/2, then (0, 1, α − 1)
        out = interpolation_barrier(model_a, model_b, F.cross_entropy, (x, y), 5, method=method)
        want = [
            ev.evaluate_state({n: (1 - al) * a[n] + al * b[n] for n in a})[0] for al in out.alphas.tolist()
        ]
        torch.testing.assert_close(out.losses, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_slices_barriers_and_flatness_read_dict_batches_and_logits(method):
    from conftest import KeywordModel, make_problem
    from landscape import worst_case_sharpness

    model, loss_fn, x, y = make_problem("mlp", n=20)
    mask = torch.ones_like(x)
    mask[:, 0] = 0
    plain = [(x[:10] * mask[:10], y[:10]), (x[10:] * mask[10:], y[10:])]
    dicts = [
        {"input_ids": x[i], "attention_mask": mask[i], "labels": y[i]}
        for i in (slice(0, 10), slice(10, None))
    ]
    hf = KeywordModel(model)
    gen = torch.Generator().manual_seed(0)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in model.parameters()]
    alphas = [-0.5, 0.0, 0.5]
    names = [n for n, _ in model.named_parameters()]
    ours = slice_1d(hf, loss_fn, dicts, {f"inner.{n}": d for n, d in zip(names, direction, strict=True)}, alphas,
                    method=method)  # fmt: skip
    ref = slice_1d(model, loss_fn, plain, dict(zip(names, direction, strict=True)), alphas, method=method)
    torch.testing.assert_close(ours.losses, ref.losses)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    barrier = interpolation_barrier(hf, KeywordModel(other), loss_fn, dicts, num_points=5, method=method)
    torch.testing.assert_close(barrier.losses, interpolation_barrier(model, other, loss_fn, plain, num_points=5,
                                                                      method=method).losses)  # fmt: skip
    sharp = worst_case_sharpness(hf, loss_fn, dicts, 0.05, steps=2)
    assert sharp.value == pytest.approx(
        worst_case_sharpness(model, loss_fn, plain, 0.05, steps=2).value, rel=1e-10
    )


class _Tied(nn.Module):
    """Two modules sharing one weight (tied), the other pattern beside a module used twice."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4).double(), nn.Linear(4, 4).double()
        self.b.weight = self.a.weight
        self.head = nn.Linear(4, 3).double()

    def forward(self, x):
        return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))


@pytest.mark.parametrize("kind", ["shared_module", "tied_weight"])
@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_slices_and_flatness_on_shared_modules_and_tied_weights(kind, method):
    from landscape import worst_case_sharpness

    torch.manual_seed(0)
    if kind == "shared_module":
        shared = nn.Linear(4, 4).double()
        model = nn.Sequential(shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(4, 3).double())
    else:
        model = _Tied()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (20,), generator=gen)
    direction = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in model.named_parameters()}
    before = copy.deepcopy(model.state_dict())
    out = slice_1d(model, F.cross_entropy, (x, y), direction, [0.0, 0.5], method=method)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in moved.named_parameters():
            p.add_(0.5 * direction[n])
    with torch.no_grad():
        expected = [float(F.cross_entropy(model(x), y)), float(F.cross_entropy(moved(x), y))]
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))
    worst_case_sharpness(model, F.cross_entropy, (x, y), 0.05, steps=2)
    # the caller's model is intact: real Parameters with their values (torch's own weight tying left a
    # vmap-batched tensor in a module used twice)
    assert all(type(p) is nn.Parameter for p in model.parameters())
    for name, value in copy.deepcopy(model).state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
