import math

import pytest
import torch

from conftest import make_problem
from landscape import HessianOperator, dense_hessian, hessian_trace


@pytest.fixture(scope="module")
def hessian():
    model, loss_fn, x, y = make_problem("mlp", n=40)
    return dense_hessian(model, loss_fn, (x, y))


@pytest.mark.parametrize(("method", "budget"), [("hutchinson", 12), ("hutch++", 12), ("xtrace", 12)])
def test_unbiased_and_stderr_honest(hessian, method, budget):
    truth = float(hessian.trace())
    runs = [hessian_trace(hessian, budget, method=method, seed=s) for s in range(300)]
    estimates = torch.tensor([r.estimate for r in runs], dtype=torch.float64)
    spread = float(estimates.std()) / math.sqrt(len(runs))
    assert abs(float(estimates.mean()) - truth) <= 4 * spread  # unbiased on average
    covered = sum(abs(r.estimate - truth) <= 2 * r.stderr for r in runs) / len(runs)
    assert covered >= 0.75  # the reported stderr is not overconfident
    assert all(r.num_matvecs <= budget for r in runs)


def test_variance_reduction_on_a_decaying_spectrum():
    values = torch.tensor([100.0 / (i + 1) ** 2 for i in range(200)], dtype=torch.float64)
    q, _ = torch.linalg.qr(
        torch.randn(200, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    )
    A = q @ torch.diag(values) @ q.T
    truth = float(values.sum())

    def rms(method):
        errs = [hessian_trace(A, 60, method=method, seed=s).estimate - truth for s in range(40)]
        return math.sqrt(sum(e * e for e in errs) / len(errs))

    assert rms("hutch++") < rms("hutchinson") / 3
    assert rms("xtrace") < rms("hutch++")


def test_on_hessian_operator_and_determinism():
    model, loss_fn, x, y = make_problem("cnn", n=30)
    op = HessianOperator(model, loss_fn, (x, y))
    truth = float(dense_hessian(model, loss_fn, (x, y)).trace())
    a = hessian_trace(op, 40, method="xtrace", seed=3)
    b = hessian_trace(op, 40, method="xtrace", seed=3)
    assert a == b
    assert a.num_matvecs == 40
    assert abs(a.estimate - truth) <= 5 * a.stderr


def test_bad_input(hessian):
    with pytest.raises(ValueError, match="unknown method"):
        hessian_trace(hessian, 10, method="hutch+")
    with pytest.raises(ValueError, match="positive integer"):
        hessian_trace(hessian, 0)
    with pytest.raises(ValueError, match="hutch\\+\\+ needs"):
        hessian_trace(hessian, 2, method="hutch++")
    with pytest.raises(ValueError, match="unknown distribution"):
        hessian_trace(hessian, 10, distribution="uniform")


def test_exact_method_and_budgets_of_d_or_more_give_the_exact_trace(hessian):
    truth = float(hessian.trace())
    d = hessian.shape[0]
    exact = hessian_trace(hessian, 1, method="exact")
    assert exact.method == "exact"
    assert exact.estimate == pytest.approx(truth, rel=1e-12)
    assert exact.stderr == 0.0
    assert exact.num_matvecs == d
    for method in ("hutchinson", "hutch++", "xtrace"):  # m > 2D+1 used to crash XTrace's triangular solve
        big = hessian_trace(hessian, 2 * d + 5, method=method)
        assert big.method == "exact"
        assert big.estimate == pytest.approx(truth, rel=1e-12)
    with pytest.raises(ValueError, match="'exact'"):
        hessian_trace(hessian, 10, method="dense")


def test_numpy_integer_seeds_are_seeds(hessian):
    import numpy as np

    a = hessian_trace(hessian, 12, method="hutchinson", seed=np.int64(3))
    b = hessian_trace(hessian, 12, method="hutchinson", seed=3)
    assert a.estimate == b.estimate
    assert a.seed == 3
    with pytest.raises(TypeError, match="integer"):
        hessian_trace(hessian, 12, seed=1.5)
