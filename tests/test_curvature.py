"""GGN, Fisher, the Hessian diagonal and per-layer spectra against dense float64 references."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from conftest import assert_unchanged, make_problem, snapshot
from landscape import (
    DenseOperator,
    dense_hessian,
    hessian_trace,
    spectral_density,
    top_eigenvalues,
)
from landscape.curvature import (
    FisherOperator,
    GGNOperator,
    hessian_diagonal,
    layer_spectra,
    parameter_groups,
)
from landscape.trace import probe_vectors

# ----------------------------------------------------------------------------------------------------------------
# Dense references


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def jacobian(model, x):
    """Outputs f (n, K) and the Jacobian ∂f/∂θ as (n, K, D), by torch.autograd.functional.jacobian."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def f(theta):
        chunks = torch.split(theta, [s.numel() for s in shapes])
        return functional_call(
            model, {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}, (x,)
        )

    theta = flat_params(model)
    with sdpa_kernel(SDPBackend.MATH):
        out = f(theta).detach()
        J = torch.autograd.functional.jacobian(f, theta)
    return out, J.reshape(out.shape[0], -1, theta.numel())


def dense_ggn(model, loss_fn, x, y):
    """Jᵀ ∇²_f L J with the output Hessian of the mean loss by torch.autograd.functional.hessian."""
    out, J = jacobian(model, x)
    H_out = torch.autograd.functional.hessian(lambda o: loss_fn(o, y), out).reshape(out.numel(), out.numel())
    J = J.reshape(out.numel(), -1)
    return J.T @ H_out @ J


def per_sample_gradients(model, loss_fn, x, y):
    """(n, D): the gradient of loss_fn on each single sample, one backward pass each."""
    rows = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(loss_fn(model(x[i : i + 1]), y[i : i + 1]), list(model.parameters()))
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(rows)


def true_fisher_categorical(model, x):
    """(1/N) Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i."""
    out, J = jacobian(model, x)
    p = torch.softmax(out, dim=1)
    Lam = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ikd,ikl,ile->de", J, Lam, J) / x.shape[0]


def assert_close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def regression_problem(n=20, seed=0, linear=False):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Linear(4, 3) if linear else nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    model = model.double()
    return (
        model,
        F.mse_loss,
        torch.randn(n, 4, generator=gen).double(),
        torch.randn(n, 3, generator=gen).double(),
    )


class KeywordModel(nn.Module):
    """Takes its input by keyword, as HuggingFace models do."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, pixel_values):
        return self.inner(pixel_values)


# ----------------------------------------------------------------------------------------------------------------
# GGN


def test_ggn_matches_dense_jacobian_reference(problem):
    model, loss_fn, x, y = problem
    G = dense_ggn(model, loss_fn, x, y)
    op = GGNOperator(model, loss_fn, (x, y))
    V = torch.randn(op.dim, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert_close(op @ V, G @ V)
    assert_close(op @ V[:, 0], G @ V[:, 0])
    assert op.num_matvecs == 5
    assert op.num_samples == x.shape[0]
    assert float(torch.linalg.eigvalsh(G).min()) > -1e-12  # cross-entropy is convex in the logits: PSD


def test_ggn_equals_hessian_for_a_linear_model_with_squared_error():
    model, loss_fn, x, y = regression_problem(linear=True)
    H = dense_hessian(model, loss_fn, (x, y))
    assert_close(GGNOperator(model, loss_fn, (x, y)).to_dense(), H)
    # a loss linear in the outputs has no output curvature: the GGN is zero (the Hessian need not be)
    zero = GGNOperator(model, lambda o, t: (o * t).mean(), (x, y)).to_dense()
    assert torch.equal(zero, torch.zeros_like(H))
    # ... and differs from it where the model is not linear (the dropped second-order term)
    model, loss_fn, x, y = regression_problem(linear=False)
    gap = GGNOperator(model, loss_fn, (x, y)).to_dense() - dense_hessian(model, loss_fn, (x, y))
    assert gap.abs().max() > 1e-3


@pytest.mark.parametrize("cache_graph", [True, False])
def test_ggn_batches_loops_and_summed_loss_agree(cache_graph):
    model, loss_fn, x, y = make_problem("mlp")
    G = dense_ggn(model, loss_fn, x, y)
    uneven = [(x[:5], y[:5]), (x[5:16], y[5:16]), (x[16:], y[16:])]
    assert_close(GGNOperator(model, loss_fn, uneven, cache_graph=cache_graph).to_dense(), G)
    assert_close(GGNOperator(model, loss_fn, (x, y), batched=False).to_dense(), G)

    def summed(o, t):
        return F.cross_entropy(o, t, reduction="sum")

    assert_close(GGNOperator(model, summed, uneven, reduction="sum").to_dense(), G)
    with pytest.raises(ValueError, match="looks like a sum"):
        GGNOperator(model, summed, (x, y))


# ----------------------------------------------------------------------------------------------------------------
# Fisher


def test_empirical_fisher_matches_explicit_per_sample_gradients(problem):
    model, loss_fn, x, y = problem
    Gs = per_sample_gradients(model, loss_fn, x, y)
    op = FisherOperator(model, loss_fn, (x, y))
    assert op.cache_graph  # N·D values fit in the default budget
    V = torch.randn(op.dim, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_close(op @ V, Gs.T @ (Gs @ V) / x.shape[0])
    assert not op._coupled  # the vmapped per-sample route


def test_empirical_fisher_in_train_mode_differentiates_through_the_batch():
    """BatchNorm in train mode couples the samples: g_i is the gradient of sample i's loss term through the batch's
    forward pass (one backward pass per sample), and Σ g_i is the batch gradient."""
    model, loss_fn, x, y = make_problem("cnn", n=10)
    ref = copy.deepcopy(model).train()
    out = ref(x)
    Gs = torch.stack(
        [
            torch.cat(
                [
                    g.reshape(-1)
                    for g in torch.autograd.grad(
                        loss_fn(out[i : i + 1], y[i : i + 1]), list(ref.parameters()), retain_graph=True
                    )
                ]
            )
            for i in range(10)
        ]
    )
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(out, y), list(ref.parameters()))])
    assert_close(Gs.mean(0), grad)
    before = snapshot(model)
    op = FisherOperator(model, loss_fn, (x, y), mode="train")
    assert_close(op.to_dense(), Gs.T @ Gs / 10)
    assert_unchanged(model, before)  # running statistics untouched


def test_empirical_fisher_falls_back_where_vmap_cannot_run_the_loss():
    model, _, x, y = make_problem("mlp")

    def branching(o, t):  # data-dependent control flow: vmap refuses it
        loss = F.cross_entropy(o, t)
        return loss if loss > 0 else -loss

    Gs = per_sample_gradients(model, F.cross_entropy, x, y)
    op = FisherOperator(model, branching, [(x[:9], y[:9]), (x[9:], y[9:])], cache_graph=False)
    assert_close(op.to_dense(), Gs.T @ Gs / x.shape[0])
    assert op._coupled


def test_empirical_fisher_needs_per_sample_losses():
    model, _, x, y = make_problem("mlp")

    def batch_level(o, t):  # the squared batch mean of the logits is no mean of per-sample terms
        return F.cross_entropy(o, t) + o.mean() ** 2

    with pytest.raises(ValueError, match="not a mean of per-sample losses"):
        FisherOperator(model, batch_level, (x, y))
    FisherOperator(model, batch_level, (x, y), check_reduction=False)  # the check can be turned off


def test_true_fisher_equals_the_ggn_for_cross_entropy(problem):
    model, loss_fn, x, y = problem
    F_true = true_fisher_categorical(model, x)
    assert_close(dense_ggn(model, loss_fn, x, y), F_true)  # the identity itself, on the references
    op = FisherOperator(model, loss_fn, (x, y), kind="true", likelihood="categorical")
    assert_close(op.to_dense(), F_true)


def test_gaussian_fisher_and_the_scaling_of_mse():
    """F = Σ JᵢᵀJᵢ/(Nσ²); F.mse_loss averages over the K outputs, so its GGN is (2/K)·F(σ=1) = F(σ²=K/2)."""
    model, loss_fn, x, y = regression_problem()
    out, J = jacobian(model, x)
    K = out.shape[1]
    JtJ = torch.einsum("ikd,ike->de", J, J) / x.shape[0]
    unit = FisherOperator(model, loss_fn, (x, y), kind="true", likelihood="gaussian")
    assert_close(unit.to_dense(), JtJ)
    matched = FisherOperator(
        model, loss_fn, (x, y), kind="true", likelihood="gaussian", sigma=math.sqrt(K / 2)
    )
    ggn = GGNOperator(model, loss_fn, (x, y)).to_dense()
    assert_close(ggn, 2 / K * JtJ)
    assert_close(matched.to_dense(), ggn)


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_monte_carlo_fisher_is_unbiased_and_fixed(likelihood):
    if likelihood == "categorical":
        model, loss_fn, x, y = make_problem("mlp", n=12)
    else:
        model, loss_fn, x, y = regression_problem(n=12)
    kw = {"kind": "true", "likelihood": likelihood}
    exact = FisherOperator(model, loss_fn, (x, y), **kw).to_dense()
    draws = torch.stack(
        [FisherOperator(model, loss_fn, (x, y), num_samples=4, seed=s, **kw).to_dense() for s in range(40)]
    )
    z = (draws.mean(0) - exact) / (draws.std(0) / math.sqrt(40)).clamp_min(1e-12)
    assert float((z.abs() < 4).double().mean()) > 0.97
    assert (draws[0] - exact).abs().max() > 1e-3  # a real sample, not the closed form
    # the same labels at every product and in every pass over the data: a fixed symmetric matrix
    again = FisherOperator(
        model, loss_fn, [(x[:5], y[:5]), (x[5:], y[5:])], cache_graph=False, seed=0, num_samples=4, **kw
    )
    first = FisherOperator(
        model, loss_fn, [(x[:5], y[:5]), (x[5:], y[5:])], seed=0, num_samples=4, **kw
    ).to_dense()
    assert_close(again.to_dense(), first)
    assert_close(again.to_dense(), first)
    assert_close(first, first.T)


def test_fisher_arguments_are_checked(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    with pytest.raises(ValueError, match="unknown kind='type2'"):
        FisherOperator(model, loss_fn, (x, y), kind="type2")
    with pytest.raises(ValueError, match="needs likelihood="):
        FisherOperator(model, loss_fn, (x, y), kind="true")
    with pytest.raises(ValueError, match="likelihood='categorical' applies to kind='true'"):
        FisherOperator(model, loss_fn, (x, y), likelihood="categorical")
    with pytest.raises(ValueError, match=r"sigma=2\.0 applies to likelihood='gaussian'"):
        FisherOperator(model, loss_fn, (x, y), kind="true", likelihood="categorical", sigma=2.0)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        FisherOperator(model, loss_fn, (x, y), kind="true", likelihood="gaussian", sigma=-1.0)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        FisherOperator(model, loss_fn, (x, y), kind="true", likelihood="categorical", num_samples=0)
    seq = nn.Sequential(model, nn.Unflatten(1, (3, 1)))  # outputs (n, 3, 1)
    with pytest.raises(ValueError, match=r"shape \(batch, classes\), got \(24, 3, 1\)"):
        FisherOperator(
            seq, lambda o, t: F.cross_entropy(o[..., 0], t), (x, y), kind="true", likelihood="categorical"
        )


# ----------------------------------------------------------------------------------------------------------------
# Shared data handling, dtype, device, the model untouched


OPERATORS = {
    "ggn": lambda *a, **kw: GGNOperator(*a, **kw),
    "fisher": lambda *a, **kw: FisherOperator(*a, **kw),
    "true_fisher": lambda *a, **kw: FisherOperator(*a, kind="true", likelihood="categorical", **kw),
}


@pytest.mark.parametrize("name", list(OPERATORS))
def test_data_formats_give_the_same_operator(name):
    model, loss_fn, x, y = make_problem("mlp")
    build = OPERATORS[name]
    full = build(model, loss_fn, (x, y)).to_dense()
    dicts = [{"pixel_values": x[:7], "labels": y[:7]}, {"pixel_values": x[7:], "labels": y[7:]}]
    assert_close(build(KeywordModel(model), loss_fn, dicts).to_dense(), full)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)  # 10 + 10 + 4
    assert_close(build(model, loss_fn, loader, cache_graph=False).to_dense(), full)
    assert_close(build(model, loss_fn, iter([(x[:3], y[:3]), (x[3:], y[3:])])).to_dense(), full)


@pytest.mark.parametrize("name", list(OPERATORS))
def test_dtype_follows_the_model_and_the_model_is_untouched(name):
    model, loss_fn, x, y = make_problem("cnn", n=8)
    model = model.float().train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    before = snapshot(model)
    op = OPERATORS[name](model, loss_fn, (x.float(), y), mode="eval")
    v = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = op @ v
    assert op.dtype == out.dtype == torch.float32
    assert op.device == torch.device("cpu")
    ref = OPERATORS[name](copy.deepcopy(model).double(), loss_fn, (x, y), mode="eval") @ v
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", list(OPERATORS))
def test_changed_parameters_make_products_raise(name):
    model, loss_fn, x, y = make_problem("mlp")
    op = OPERATORS[name](model, loss_fn, (x, y))
    with torch.no_grad():
        model[0].weight.add_(0.1)
    with pytest.raises(RuntimeError, match="parameters changed after this"):
        op @ torch.ones(op.dim, dtype=torch.float64)


def test_empty_data_a_bad_model_and_unused_parameters_are_errors(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    padded = KeywordModel(model)  # forward(pixel_values): a positional call works too
    padded.unused = nn.Linear(2, 2).double()  # a submodule forward never calls
    for kw in ({}, {"kind": "true", "likelihood": "categorical"}):
        build = GGNOperator if not kw else FisherOperator
        with pytest.raises(
            ValueError, match=r"does not depend on the selected parameters \['unused.weight'\]"
        ):
            build(padded, loss_fn, (x, y), params=["unused.weight"], **kw)
    with pytest.raises(ValueError, match="data is empty"):
        GGNOperator(model, loss_fn, [], check_reduction=False)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        FisherOperator(lambda t: t, loss_fn, (x, y))


# ----------------------------------------------------------------------------------------------------------------
# The diagonal


def test_exact_diagonal_equals_the_dense_hessian_diagonal(problem):
    model, loss_fn, x, y = problem
    H = dense_hessian(model, loss_fn, (x, y))
    diag = hessian_diagonal(model, loss_fn, (x, y), method="exact", chunk=40)
    assert_close(diag.estimate, torch.diagonal(H))
    assert torch.equal(diag.stderr, torch.zeros_like(diag.stderr))
    assert diag.num_matvecs == H.shape[0]
    assert diag.method == "exact"


def test_diagonal_of_ggn_and_fisher_operators():
    model, loss_fn, x, y = make_problem("mlp")
    assert_close(hessian_diagonal(GGNOperator(model, loss_fn, (x, y)), method="exact").estimate,
                 torch.diagonal(dense_ggn(model, loss_fn, x, y)))  # fmt: skip
    Gs = per_sample_gradients(model, loss_fn, x, y)
    est = hessian_diagonal(FisherOperator(model, loss_fn, (x, y)), num_matvecs=1000)  # budget >= D: exact
    assert est.method == "exact"
    assert_close(est.estimate, (Gs**2).mean(0))


def test_hutchinson_diagonal_is_the_mean_of_its_probes():
    """Regression with a fixed seed: the estimate and stderr are the mean and std/√m of z ⊙ Az over the probes,
    drawn one column at a time (so the chunk size does not matter)."""
    model, loss_fn, x, y = make_problem("mlp")
    H = dense_hessian(model, loss_fn, (x, y))
    gen = torch.Generator().manual_seed(5)
    Z = torch.cat([probe_vectors(H.shape[0], 1, gen, DenseOperator(H)) for _ in range(13)], dim=1)
    assert set(Z.unique().tolist()) == {-1.0, 1.0}
    samples = Z * (H @ Z)
    for chunk in (1, 5, 32):
        est = hessian_diagonal(DenseOperator(H), num_matvecs=13, seed=5, chunk=chunk)
        assert_close(est.estimate, samples.mean(1))
        assert_close(est.stderr, samples.std(1) / math.sqrt(13))
        assert (est.num_matvecs, est.method, est.seed) == (13, "hutchinson", 5)


def test_hutchinson_diagonal_is_unbiased_and_its_stderr_calibrated():
    model, loss_fn, x, y = make_problem("mlp")
    H = dense_hessian(model, loss_fn, (x, y))
    exact = torch.diagonal(H)
    one = hessian_diagonal(H, num_matvecs=50, seed=0)
    assert float(((one.estimate - exact).abs() <= 4 * one.stderr).double().mean()) > 0.95
    assert one.stderr.min() > 0
    means = torch.stack([hessian_diagonal(H, num_matvecs=10, seed=s).estimate for s in range(60)])
    z = (means.mean(0) - exact) / (means.std(0) / math.sqrt(60))
    assert float((z.abs() < 4).double().mean()) > 0.95
    # a diagonal matrix: every probe gives the diagonal exactly
    D = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64))
    est = hessian_diagonal(D, num_matvecs=3, seed=1)
    assert_close(est.estimate, torch.diagonal(D))
    assert torch.equal(est.stderr, torch.zeros(5, dtype=torch.float64))
    assert torch.isinf(hessian_diagonal(H, num_matvecs=1).stderr).all()


def test_diagonal_arguments_are_checked(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    with pytest.raises(TypeError, match="loss_fn and data are required"):
        hessian_diagonal(model)
    H = torch.eye(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="takes an operator alone"):
        hessian_diagonal(H, loss_fn, (x, y))
    with pytest.raises(TypeError, match="takes an operator alone"):
        hessian_diagonal(H, mode="eval")
    with pytest.raises(ValueError, match="unknown method='rademacher'"):
        hessian_diagonal(H, method="rademacher")
    with pytest.raises(ValueError, match="num_matvecs must be a positive integer, got 0"):
        hessian_diagonal(H, num_matvecs=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'kind'"):
        hessian_diagonal(model, loss_fn, (x, y), kind="true")  # an operator argument HessianOperator lacks


# ----------------------------------------------------------------------------------------------------------------
# Per-layer spectra


def test_parameter_groups():
    model, _, _, _ = make_problem("cnn")
    assert parameter_groups(model) == {
        "conv": ["conv.weight", "conv.bias"],
        "bn": ["bn.weight", "bn.bias"],
        "fc": ["fc.weight", "fc.bias"],
    }
    assert list(parameter_groups(model, "parameter")) == [n for n, _ in model.named_parameters()]
    assert parameter_groups(model, lambda n: n.split(".")[1]) == {
        "weight": ["conv.weight", "bn.weight", "fc.weight"],
        "bias": ["conv.bias", "bn.bias", "fc.bias"],
    }
    assert parameter_groups(nn.Linear(2, 2)) == {"Linear": ["weight", "bias"]}
    with pytest.raises(ValueError, match="unknown group_by='layer'"):
        parameter_groups(model, "layer")
    with pytest.raises(TypeError, match="must return a group name"):
        parameter_groups(model, lambda n: 0)


@pytest.mark.parametrize(("operator", "dense_dim"), [("hessian", 64), ("hessian", 0), ("ggn", 0)])
def test_layer_spectra_equal_eigenvalues_of_the_dense_blocks(operator, dense_dim):
    model, loss_fn, x, y = make_problem("mlp")
    full = dense_hessian(model, loss_fn, (x, y)) if operator == "hessian" else dense_ggn(model, loss_fn, x, y)
    before = snapshot(model)
    spectra = layer_spectra(model, loss_fn, (x, y), k=2, operator=operator, dense_dim=dense_dim, tol=1e-10)
    assert_unchanged(model, before)
    assert list(spectra) == ["0", "2"]
    start = 0
    for name, spec in spectra.items():
        block = full[start : start + spec.dim, start : start + spec.dim]
        start += spec.dim
        expected = torch.linalg.eigvalsh(block).flip(0)[:2]
        torch.testing.assert_close(spec.values, expected, rtol=1e-8, atol=1e-10)
        assert spec.params == (f"{name}.weight", f"{name}.bias")
        assert spec.eigen.method.startswith("dense" if dense_dim else "lanczos")
        assert spec.eigen.residuals.max() < (1e-12 if dense_dim else 1e-5)
    assert start == full.shape[0]


def test_layer_spectra_small_blocks_options_and_errors():
    model, loss_fn, x, y = make_problem("cnn")
    H = dense_hessian(model, loss_fn, (x, y), params=["bn.weight", "bn.bias"])
    spectra = layer_spectra(
        model, loss_fn, (x, y), k=10, group_by="parameter", params=["bn.weight", "bn.bias"]
    )
    for i, name in enumerate(["bn.weight", "bn.bias"]):  # k > D_l = 3: all three eigenvalues
        expected = torch.linalg.eigvalsh(H[3 * i : 3 * i + 3, 3 * i : 3 * i + 3]).flip(0)
        torch.testing.assert_close(spectra[name].values, expected, rtol=1e-9, atol=1e-11)
    fisher = layer_spectra(model, loss_fn, (x, y), operator="fisher", kind="true", likelihood="categorical",
                           params=["fc.weight"], which="smallest")  # fmt: skip
    G = dense_ggn(model, loss_fn, x, y)[-51:-3, -51:-3]  # fc.weight: 48 entries before the 3 of fc.bias
    torch.testing.assert_close(fisher["fc"].values, torch.linalg.eigvalsh(G)[:1], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="unknown operator='kfac'"):
        layer_spectra(model, loss_fn, (x, y), operator="kfac")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        layer_spectra(model, loss_fn, (x, y), k=0)
    with pytest.raises(ValueError, match="unknown which='biggest'"):
        layer_spectra(model, loss_fn, (x, y), which="biggest")


def test_layer_spectra_warn_once_about_train_mode():
    model, loss_fn, x, y = make_problem("cnn")
    model.train()
    with pytest.warns(UserWarning, match="train mode") as record:
        layer_spectra(model, loss_fn, (x, y))
    assert len(record) == 1


# ----------------------------------------------------------------------------------------------------------------
# Every estimator takes these operators


def test_estimators_accept_the_curvature_operators():
    model, loss_fn, x, y = make_problem("mlp")
    ggn = GGNOperator(model, loss_fn, (x, y))
    G = dense_ggn(model, loss_fn, x, y)
    eigs = torch.linalg.eigvalsh(G)
    top = top_eigenvalues(ggn, k=2, tol=1e-10)
    torch.testing.assert_close(top.values, eigs.flip(0)[:2], rtol=1e-8, atol=1e-10)
    fisher = FisherOperator(model, loss_fn, (x, y))
    Gs = per_sample_gradients(model, loss_fn, x, y)
    tr = hessian_trace(fisher, num_matvecs=fisher.dim)  # a budget of D products: the exact trace
    assert math.isclose(tr.estimate, float((Gs**2).sum() / x.shape[0]), rel_tol=1e-10)
    true = FisherOperator(model, loss_fn, (x, y), kind="true", likelihood="categorical")
    density = spectral_density(true, num_probes=2, num_steps=30)
    assert density.nodes.min() > eigs[0] - 1e-8
    assert density.nodes.max() < eigs[-1] + 1e-8
    assert math.isclose(float(density.nodes.max()), float(eigs[-1]), rel_tol=1e-6)


def test_empirical_fisher_couples_samples_through_batchnorm_without_running_statistics():
    # BatchNorm with track_running_stats=False normalises with batch statistics in eval mode too: per-sample
    # gradients must go through the batch (as in train mode), not through single samples
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2, track_running_stats=False),
        torch.nn.Flatten(), torch.nn.Linear(32, 3),
    ).double().eval()  # fmt: skip
    x = torch.randn(10, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(2))
    loss_fn = torch.nn.functional.cross_entropy
    evaluated = FisherOperator(model, loss_fn, (x, y), mode="eval").to_dense()
    through_batch = FisherOperator(model, loss_fn, (x, y), mode="train").to_dense()
    torch.testing.assert_close(evaluated, through_batch, rtol=1e-10, atol=1e-12)
