import pytest
import torch
from torch import nn
from torch.nn import functional as F

from landscape import HessianOperator, normalized_sharpness, top_eigenvalues


def relu_net_and_rescaled_twin(alpha: float = 3.0):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    twin = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    twin.load_state_dict(net.state_dict())
    with torch.no_grad():  # Dinh et al. 2017: layer i by α (weights and bias), layer i+1's weights by 1/α
        twin[0].weight.mul_(alpha)
        twin[0].bias.mul_(alpha)
        twin[2].weight.div_(alpha)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    return net, twin, x, y


def test_dinh_rescaling_moves_lambda_max_but_not_normalized_sharpness():
    net, twin, x, y = relu_net_and_rescaled_twin()
    torch.testing.assert_close(net(x), twin(x))  # same function
    lmax = [
        float(top_eigenvalues(HessianOperator(m, F.cross_entropy, (x, y)), 1, tol=1e-10).values[0])
        for m in (net, twin)
    ]
    assert abs(lmax[1] - lmax[0]) > 0.1 * lmax[0]  # plain λmax is not invariant
    a = normalized_sharpness(net, F.cross_entropy, (x, y), tol=1e-10)
    b = normalized_sharpness(twin, F.cross_entropy, (x, y), tol=1e-10)
    assert b.lambda_max == pytest.approx(a.lambda_max, rel=1e-6)
    assert b.trace == pytest.approx(a.trace, rel=1e-6)


def test_normalized_sharpness_matches_dense_definition():
    net, _, x, y = relu_net_and_rescaled_twin()
    op = HessianOperator(net, F.cross_entropy, (x, y))
    H = op.to_dense()
    theta = op.parameters_vector().abs()
    scaled = theta[:, None] * H * theta[None, :]
    exact = torch.linalg.eigvalsh(scaled)
    res = normalized_sharpness(net, F.cross_entropy, (x, y), tol=1e-10, trace_matvecs=80)
    assert res.lambda_max == pytest.approx(float(exact[-1]), rel=1e-6)
    assert abs(res.trace - float(scaled.trace())) <= 4 * res.trace_stderr
    assert res.residual <= 1e-4 * res.lambda_max


def test_max_basis_and_progress_reach_lanczos_and_the_trace(capsys):
    net, _, x, y = relu_net_and_rescaled_twin()
    op = HessianOperator(net, F.cross_entropy, (x, y))
    theta = op.parameters_vector().abs()
    exact = torch.linalg.eigvalsh(theta[:, None] * op.to_dense() * theta[None, :])
    res = normalized_sharpness(net, F.cross_entropy, (x, y), tol=1e-8, max_basis=8, trace_matvecs=0)
    assert res.lambda_max == pytest.approx(float(exact[-1]), rel=1e-6)  # restarted Lanczos, 8 columns
    with pytest.raises(ValueError, match="max_basis"):
        normalized_sharpness(net, F.cross_entropy, (x, y), max_basis=1)
    capsys.readouterr()
    normalized_sharpness(net, F.cross_entropy, (x, y), trace_matvecs=20, progress=True)
    assert "trace (xtrace)" in capsys.readouterr().err


def test_operator_options_reach_the_hessian():
    from conftest import make_problem

    model, loss_fn, x, y = make_problem("cnn")
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        default = normalized_sharpness(model, loss_fn, (x, y), trace_matvecs=0)
    quiet = normalized_sharpness(model, loss_fn, (x, y), trace_matvecs=0, mode="eval")
    assert quiet.lambda_max == default.lambda_max
    train = normalized_sharpness(model, loss_fn, (x, y), trace_matvecs=0, mode="train")
    assert abs(train.lambda_max - quiet.lambda_max) > 1e-6 * abs(quiet.lambda_max)
    model.eval()
