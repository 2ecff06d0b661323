"""Zero-cost proxies against dense float64 computations and closed forms on tiny models."""

import doctest
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import assert_unchanged, make_problem, snapshot
from landscape import proxies

K = proxies.JACOB_COV_EPS


def data(n, d, seed=0, classes=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def seeded(module, seed=0):
    torch.manual_seed(seed)
    return module().double()


def mse_onehot(outputs, targets):
    return F.mse_loss(outputs, F.one_hot(targets, outputs.shape[1]).double())


def dense_gradient_and_hessian(model, loss_fn, x, y):
    """∇L and ∇²L on the flattened parameter vector θ (model.parameters() order), by
    torch.autograd.functional on a function of θ alone."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat):
        chunks = torch.split(flat, [math.prod(s) for s in shapes])
        state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        return loss_fn(torch.func.functional_call(model, state, (x,)), y)

    grad = torch.autograd.functional.jacobian(loss_of, theta)
    hess = torch.autograd.functional.hessian(loss_of, theta)
    return theta, grad, hess


GRADIENT_CASES = {
    "linear-ce": (lambda: nn.Linear(3, 4), F.cross_entropy),
    "linear-mse": (lambda: nn.Linear(3, 4), mse_onehot),
    "mlp-ce": (lambda: nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)), F.cross_entropy),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradient_scores_match_a_dense_gradient_and_hessian(case):
    build, loss_fn = GRADIENT_CASES[case]
    model = seeded(build)
    x, y = data(10, 3, classes=4)
    theta, g, h = dense_gradient_and_hessian(model, loss_fn, x, y)
    assert proxies.grad_norm(model, loss_fn, x, y) == pytest.approx(float(g.norm()), rel=1e-12)
    assert proxies.snip(model, loss_fn, x, y) == pytest.approx(float((theta * g).abs().sum()), rel=1e-12)
    assert proxies.grasp(model, loss_fn, x, y) == pytest.approx(float(-theta @ (h @ g)), rel=1e-10)


def test_grasp_is_zero_when_the_loss_is_linear_in_the_parameters():
    model = seeded(lambda: nn.Linear(3, 2))
    x, y = data(6, 3)
    assert proxies.grasp(model, lambda out, _: out.mean(), x, y) == 0.0
    assert proxies.grad_norm(model, lambda out, _: out.mean(), x, y) > 0


def manual_fisher_mlp(model, loss_fn, x, y):
    """Σ_n Σ_layers Σ_c ½ (z_c ∂ℓ_n/∂z_c)², each sample's forward pass written out by hand (no hooks)."""
    lin1, lin2 = model[0], model[2]
    total = 0.0
    for n in range(len(x)):
        z1 = x[n] @ lin1.weight.T + lin1.bias
        z2 = torch.tanh(z1) @ lin2.weight.T + lin2.bias
        g1, g2 = torch.autograd.grad(loss_fn(z2[None], y[n : n + 1]), (z1, z2))
        total += 0.5 * float((z1 * g1).square().sum().detach() + (z2 * g2).square().sum().detach())
    return total


@pytest.mark.parametrize("loss_fn", [F.cross_entropy, mse_onehot], ids=["ce", "mse"])
@pytest.mark.parametrize("frozen_first", [False, True], ids=["all-trainable", "first-frozen"])
def test_fisher_of_an_mlp_matches_per_sample_derivatives(loss_fn, frozen_first):
    model = seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))
    x, y = data(7, 3)
    expected = manual_fisher_mlp(model, loss_fn, x, y)
    model[0].requires_grad_(not frozen_first)  # the first layer's activations are scored all the same
    assert proxies.fisher(model, loss_fn, x, y) == pytest.approx(expected, rel=1e-12)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.fc = nn.Linear(2 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_fisher_of_a_conv1d_sums_over_positions_before_squaring():
    model = seeded(ConvNet)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 1, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (5,), generator=g)
    expected = 0.0
    for n in range(5):
        z1 = F.conv1d(x[n : n + 1], model.conv.weight, model.conv.bias)  # (1, C=2, L=4)
        z2 = torch.relu(z1).flatten(1) @ model.fc.weight.T + model.fc.bias
        g1, g2 = torch.autograd.grad(F.cross_entropy(z2, y[n : n + 1]), (z1, z2))
        expected += 0.5 * float((z1 * g1).sum(2).square().sum().detach() + (z2 * g2).square().sum().detach())
    assert proxies.fisher(model, F.cross_entropy, x, y) == pytest.approx(expected, rel=1e-12)


class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 2)

    def forward(self, x):  # x: (N, T, 3); the channel of proj's (N, T, 2) output is the last dimension
        return self.proj(x).tanh().mean(1)


def test_fisher_of_a_linear_layer_on_tokens_takes_the_last_dimension_as_channel():
    model = seeded(TokenNet)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (4,), generator=g)
    expected = 0.0
    for n in range(4):
        z = x[n] @ model.proj.weight.T + model.proj.bias  # (T=5, C=2)
        (gz,) = torch.autograd.grad(F.cross_entropy(z.tanh().mean(0)[None], y[n : n + 1]), z)
        expected += 0.5 * float((z * gz).sum(0).square().sum().detach())
    assert proxies.fisher(model, F.cross_entropy, x, y) == pytest.approx(expected, rel=1e-12)


def bias_free_chain(depth, seed=0):
    torch.manual_seed(seed)
    widths = [3, 4, 5, 2][: depth + 1]
    layers = []
    for i in range(depth):
        layers += [nn.Linear(widths[i], widths[i + 1], bias=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_synflow_of_a_bias_free_chain_is_depth_times_the_path_sum(depth):
    model = bias_free_chain(depth)
    assert any((p < 0).any() for p in model.parameters())  # the absolute values matter
    r = torch.ones(3, dtype=torch.float64)
    for p in model.parameters():
        r = p.detach().abs() @ r
    # R = 1ᵀ|W_d|⋯|W_1|1 is homogeneous of degree 1 in each W_i: Σ_i W_i ⊙ ∂R/∂W_i = d · R
    x, _ = data(4, 3)
    assert proxies.synflow(model, x) == pytest.approx(depth * float(r.sum()), rel=1e-12)


def test_synflow_with_biases_in_float64_from_a_float32_model():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # float32: the score is float64
    w1, b1, w2, b2 = (p.detach().double().abs() for p in model.parameters())
    one3, one2 = torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    # R = 1ᵀ(|W2|(|W1|1 + |b1|) + |b2|); θ ⊙ ∂R/∂θ summed layer by layer
    expected = (
        one2 @ w2 @ w1 @ one3  # W1
        + one2 @ w2 @ b1  # b1
        + one2 @ w2 @ (w1 @ one3 + b1)  # W2
        + b2.sum()  # b2
    )
    x = torch.randn(4, 3)
    assert proxies.synflow(model, x) == pytest.approx(float(expected), rel=1e-12)


def test_synflow_uses_batchnorm_in_eval_mode():
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Linear(2, 3, bias=False), nn.BatchNorm1d(3), nn.Linear(3, 1, bias=False)
    ).double()
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
        bn.weight.copy_(torch.tensor([-1.5, 0.7, 2.0]))
        bn.bias.copy_(torch.tensor([0.3, -0.2, -1.0]))
    model.train()  # the proxy must not use batch statistics (a batch of one would fail in train mode)
    leaves = [p.detach().abs().requires_grad_(True) for p in model.parameters()]
    w1, gamma, beta, w2 = leaves
    h = w1 @ torch.ones(2, dtype=torch.float64)
    h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * gamma + beta
    r = (w2 @ h).sum()
    expected = sum(
        float((p.detach() * g).sum()) for p, g in zip(leaves, torch.autograd.grad(r, leaves), strict=True)
    )
    assert proxies.synflow(model, torch.randn(5, 2, dtype=torch.float64)) == pytest.approx(
        expected, rel=1e-12
    )


def mellor_score(jac: np.ndarray) -> float:
    lam = np.linalg.eigvalsh(np.corrcoef(jac))
    return float(-np.sum(np.log(lam + K) + 1.0 / (lam + K)))


def loop_input_jacobian(model, x):
    rows = []
    for n in range(len(x)):
        xn = x[n : n + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xn).sum(), xn)
        rows.append(g.reshape(-1).numpy())
    return np.stack(rows)


def test_jacob_cov_of_a_linear_model_has_identical_rows():
    model = seeded(lambda: nn.Linear(5, 3))
    x, _ = data(6, 5)
    # J_n = Wᵀ1 for every n: C is the all-ones matrix, eigenvalues N and N − 1 zeros
    n = 6
    expected = -(math.log(n + K) + 1 / (n + K) + (n - 1) * (math.log(K) + 1 / K))
    assert proxies.jacob_cov(model, x) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_jacob_cov_matches_numpy_on_per_sample_input_gradients(kind):
    model, _, x, _ = make_problem(kind, n=4)
    expected = mellor_score(loop_input_jacobian(model, x))
    assert proxies.jacob_cov(model, x) == pytest.approx(expected, rel=1e-9)


def loop_ntk_condition(model, x):
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for n in range(len(x)):
        grads = torch.autograd.grad(model(x[n : n + 1]).sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).numpy())
    jac = np.stack(rows)
    lam = np.linalg.eigvalsh(jac @ jac.T)
    return float(lam[-1] / lam[0])


@pytest.mark.parametrize("kind", ["mlp", "cnn", "mlp-first-frozen"])
def test_ntk_condition_matches_a_dense_per_sample_jacobian(kind):
    model, _, x, _ = make_problem(kind.removesuffix("-first-frozen"), n=8)
    if kind.endswith("frozen"):
        next(iter(model.children())).requires_grad_(False)
    expected = loop_ntk_condition(model, x[:5])  # only the first num_samples inputs count
    assert proxies.ntk_condition(model, x, num_samples=5) == pytest.approx(expected, rel=1e-9)


def test_ntk_condition_is_infinite_with_more_samples_than_parameters():
    model = seeded(lambda: nn.Linear(2, 1))  # D = 3 parameters, N = 6 samples: Θ has rank ≤ 3
    x, _ = data(6, 2)
    assert proxies.ntk_condition(model, x) == math.inf
    assert math.isfinite(proxies.ntk_condition(model, x, num_samples=3))


def test_zero_cost_proxies_returns_the_seven_scores():
    model, loss_fn, x, y = make_problem("mlp", n=10)
    out = proxies.zero_cost_proxies(model, loss_fn, x, y, ntk_samples=6)
    assert list(out) == ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "ntk_condition"]
    assert all(isinstance(v, float) for v in out.values())
    assert out["grad_norm"] == proxies.grad_norm(model, loss_fn, x, y)
    assert out["snip"] == proxies.snip(model, loss_fn, x, y)
    assert out["grasp"] == proxies.grasp(model, loss_fn, x, y)
    assert out["fisher"] == proxies.fisher(model, loss_fn, x, y)
    assert out["synflow"] == proxies.synflow(model, x)
    assert out["jacob_cov"] == proxies.jacob_cov(model, x)
    assert out["ntk_condition"] == proxies.ntk_condition(model, x, num_samples=6)


CALLS = {
    "grad_norm": lambda m, lf, x, y: proxies.grad_norm(m, lf, x, y),
    "snip": lambda m, lf, x, y: proxies.snip(m, lf, x, y),
    "grasp": lambda m, lf, x, y: proxies.grasp(m, lf, x, y),
    "fisher": lambda m, lf, x, y: proxies.fisher(m, lf, x, y),
    "synflow": lambda m, lf, x, y: proxies.synflow(m, x),
    "jacob_cov": lambda m, lf, x, y: proxies.jacob_cov(m, x),
    "ntk_condition": lambda m, lf, x, y: proxies.ntk_condition(m, x, num_samples=4),
    "zero_cost_proxies": lambda m, lf, x, y: proxies.zero_cost_proxies(m, lf, x, y, ntk_samples=4),
}


@pytest.mark.parametrize("name", CALLS)
def test_model_is_left_unchanged(name):
    model, loss_fn, x, y = make_problem("cnn", n=6)  # BatchNorm: running statistics and modes must survive
    model.train()
    model.bn.eval()  # mixed modes
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    model.conv.bias.requires_grad_(False)
    before = snapshot(model)
    CALLS[name](model, loss_fn, x, y)
    assert_unchanged(model, before)
    assert model.training
    assert not model.bn.training


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x):
        return x * self.w


def test_bad_inputs_raise_clear_errors():
    model, loss_fn, x, y = make_problem("mlp", n=6)
    with pytest.raises(ValueError, match=r"non-empty batch.*got shape \(0, 5\)"):
        proxies.grad_norm(model, loss_fn, x[:0], y[:0])
    with pytest.raises(ValueError, match="non-empty batch"):
        proxies.synflow(model, x[:0])
    with pytest.raises(ValueError, match=r"6 inputs, targets of shape \(5,\)"):
        proxies.snip(model, loss_fn, x, y[:5])
    with pytest.raises(TypeError, match="tensor batch"):
        proxies.jacob_cov(model, x.tolist())
    with pytest.raises(ValueError, match=r"ntk_samples must be an integer ≥ 2.*got 1"):
        proxies.zero_cost_proxies(model, loss_fn, x, y, ntk_samples=1)
    with pytest.raises(ValueError, match=r"num_samples must be an integer ≥ 2.*got 0"):
        proxies.ntk_condition(model, x, num_samples=0)
    with pytest.raises(ValueError, match=r"jacob_cov differentiates the inputs.*torch\.int64"):
        proxies.jacob_cov(model, torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"Scale has no nn\.Linear, nn\.Conv1d or nn\.Conv2d"):
        proxies.fisher(Scale(), lambda out, t: (out - t).square().mean(), x[:, :3], x[:, :3])
    model.requires_grad_(False)
    for call in CALLS.values():  # every public function refuses a model with nothing to train
        with pytest.raises(ValueError, match="Sequential has no trainable parameter"):
            call(model, loss_fn, x, y)


def test_docstring_examples():
    result = doctest.testmod(proxies, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
