import copy
import math

import pytest
import torch

from conftest import make_problem
from landscape import HessianOperator, TraceEstimate, dense_hessian, hessian_trace
from landscape.operators import LinearOperator, as_operator, make_generator
from landscape.trace import DISTRIBUTIONS, probe_vectors


@pytest.fixture(scope="module")
def hessian():
    model, loss_fn, x, y = make_problem("mlp", n=40)
    return dense_hessian(model, loss_fn, (x, y))


@pytest.mark.parametrize(
    ("method", "distribution"),
    [
        ("hutchinson", "rademacher"),
        ("hutch++", "rademacher"),
        ("xtrace", "rademacher"),
        ("xtrace", "sphere"),
        ("hutchinson", "sphere"),
    ],
)
def test_unbiased_and_stderr_honest(hessian, method, distribution):
    truth = float(hessian.trace())
    budget = 12
    runs = [
        hessian_trace(hessian, budget, method=method, seed=s, distribution=distribution) for s in range(300)
    ]
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


def low_rank_matrix(n: int, values: list[float], shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    """shift·I + U diag(values) Uᵀ with U random orthonormal (n × len(values)): trace n·shift + Σ values."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(n, len(values), generator=gen, dtype=torch.float64))[0]
    return shift * torch.eye(n, dtype=torch.float64) + U @ torch.diag(torch.tensor(values).double()) @ U.T


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace", "exact"])
def test_result_does_not_depend_on_chunk_size(hessian, method):
    runs = [hessian_trace(hessian, 30, method=method, seed=4, chunk_size=c) for c in (1, 4, 16, 1000)]
    for run in runs[1:]:
        assert run.estimate == pytest.approx(runs[0].estimate, rel=1e-12, abs=1e-12)
        assert run.stderr == pytest.approx(runs[0].stderr, rel=1e-9, abs=1e-12)
        assert run.num_matvecs == runs[0].num_matvecs


class WidthSpy(LinearOperator):
    """A dense matrix that records the widest block it was asked to multiply."""

    def __init__(self, matrix):
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix, self.widest = matrix, 0

    def _matmat(self, V):
        self.widest = max(self.widest, V.shape[1])
        return self.matrix @ V


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace", "exact"])
def test_products_come_in_chunks(hessian, method):
    spy = WidthSpy(hessian)
    res = hessian_trace(spy, 40, method=method, chunk_size=3)
    assert spy.widest == 3
    assert res.num_matvecs == spy.num_matvecs


def test_probes_are_drawn_once_from_a_given_generator(hessian):
    d = hessian.shape[0]
    gen = torch.Generator().manual_seed(3)
    hessian_trace(
        hessian, 20, method="xtrace", seed=gen
    )  # draws its 10 probes twice, from a copy the second time
    reference = torch.Generator().manual_seed(3)
    probe_vectors(d, 10, reference, as_operator(hessian))
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=reference))


def test_probe_columns_do_not_depend_on_how_many_are_drawn_at_once(hessian):
    op = as_operator(hessian)
    for dist in DISTRIBUTIONS:
        both = probe_vectors(op.dim, 2, make_generator(1), op, dist)
        gen = make_generator(1)
        one_by_one = torch.cat([probe_vectors(op.dim, 1, gen, op, dist) for _ in range(2)], 1)
        assert torch.equal(both, one_by_one)
    sphere = probe_vectors(op.dim, 3, make_generator(1), op, "sphere")
    torch.testing.assert_close(sphere.norm(dim=0), torch.full((3,), math.sqrt(op.dim), dtype=torch.float64))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_exact_for_rank_below_the_sketch(distribution):
    A = low_rank_matrix(60, [3.0, -2.0, 1.0, 0.5, 0.25])  # rank 5, trace 2.75
    for method, budget in (("xtrace", 12), ("xtrace", 30), ("hutch++", 18), ("hutch++", 30)):
        # XTrace needs rank < m/2 (each leave-one-out basis of m/2 - 1 probes spans the range), Hutch++ rank <= m/3
        res = hessian_trace(A, budget, method=method, distribution=distribution, seed=2)
        assert res.estimate == pytest.approx(2.75, rel=1e-10)
        assert res.stderr <= 1e-10
    assert abs(hessian_trace(A, 10, method="xtrace", distribution=distribution).estimate - 2.75) > 1e-6


def test_normalised_xtrace_is_exact_on_a_multiple_of_the_identity():
    # Epperly et al. 2024, improved XTrace: (I - P_i) ω_i rescaled to squared norm D - m/2 + 1 (the dimension of the
    # complement of the leave-one-out basis) makes every sample of c·I exactly c·D; the unnormalised
    # (Rademacher) correction keeps the fluctuation of |(I - P_i) ω_i|^2.
    A = 0.7 * torch.eye(80, dtype=torch.float64)
    for distribution in ("sphere", "gaussian"):
        res = hessian_trace(A, 20, distribution=distribution, seed=1)
        assert res.estimate == pytest.approx(56.0, rel=1e-12)
        assert res.stderr <= 1e-10
    plain = hessian_trace(A, 20, distribution="rademacher", seed=1)
    assert abs(plain.estimate - 56.0) > 1e-3


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_xtrace_unbiased_where_the_normalisation_matters(distribution):
    # m/2 = 6 of D = 24: the rescaling factor (D - 5) / |(I - P_i) ω_i|^2 is far from 1 here.
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(24, 24, generator=gen, dtype=torch.float64)
    A = torch.diag(torch.linspace(-1.0, 3.0, 24, dtype=torch.float64)) + 0.2 * (noise + noise.T)
    truth = float(A.trace())
    estimates = torch.tensor(
        [hessian_trace(A, 12, distribution=distribution, seed=s).estimate for s in range(600)]
    )
    spread = float(estimates.std()) / math.sqrt(len(estimates))
    assert abs(float(estimates.mean()) - truth) <= 4 * spread


def test_num_samples_behind_the_stderr(hessian):
    expected = {"hutchinson": 20, "hutch++": 20 - 2 * 6, "xtrace": 10}
    for method, count in expected.items():
        assert hessian_trace(hessian, 20, method=method).num_samples == count
    assert hessian_trace(hessian, 1, method="exact").num_samples == 0
    assert TraceEstimate(1.0, 0.1, 10, "hutchinson", 0).num_samples is None  # older constructors still work


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_gives_the_float32_trace(dtype):
    model, loss_fn, x, y = make_problem("mlp", n=40)
    results = {}
    for dt in (torch.float32, dtype):
        op = HessianOperator(copy.deepcopy(model).to(dt), loss_fn, (x.to(dt), y))
        assert op.work_dtype == torch.float32
        results[dt] = {
            method: hessian_trace(op, 30 if method != "exact" else 1, method=method, seed=0)
            for method in ("hutchinson", "hutch++", "xtrace", "exact")
        }
    truth = float(dense_hessian(model, loss_fn, (x, y)).trace())
    for method, ref in results[torch.float32].items():
        half = results[dtype][method]
        assert math.isfinite(half.estimate)
        assert math.isfinite(half.stderr)
        assert half.estimate == pytest.approx(ref.estimate, rel=3e-2)
    assert results[dtype]["exact"].estimate == pytest.approx(truth, rel=3e-2)


def test_progress_bar_over_products(hessian, capsys):
    hessian_trace(hessian, 20, progress=True)
    assert "trace (xtrace)" in capsys.readouterr().err
    hessian_trace(hessian, 20, progress=False)
    assert capsys.readouterr().err == ""


def test_bad_chunk_size_and_distribution(hessian):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            hessian_trace(hessian, 10, chunk_size=bad)
    with pytest.raises(ValueError, match="'sphere'"):
        hessian_trace(hessian, 10, distribution="normal")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_place_cholesky_qr2_orthonormalises_an_ill_conditioned_sketch(dtype):
    from landscape import trace

    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(300, 12, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))[0]
    Y = U @ torch.diag(torch.logspace(0, -5, 12, dtype=torch.float64)) @ V.T  # cond(Y) = 1e5
    rows = Y.T.to(dtype).clone()
    storage = rows.data_ptr()
    R = trace._cholesky_qr2_rows(rows)
    assert rows.data_ptr() == storage  # in place
    Q = rows.T.double()
    eps = torch.finfo(dtype).eps
    assert float((Q.T @ Q - torch.eye(12, dtype=torch.float64)).abs().max()) < 50 * eps
    assert float((Q @ R - Y.to(dtype).double()).norm() / Y.norm()) < 50 * eps
    assert torch.equal(R, R.triu())
    singular = Y[:, :11] @ torch.randn(11, 12, generator=g, dtype=torch.float64)  # rank 11
    rows = singular.T.clone()
    assert trace._cholesky_qr2_rows(rows) is None
    assert torch.equal(rows, singular.T)  # untouched, for the Householder fallback


def test_xtrace_equals_its_householder_version():
    from landscape import trace

    g = torch.Generator().manual_seed(1)
    B = torch.randn(80, 80, generator=g, dtype=torch.float64)
    A = B @ B.T / 80
    ours = hessian_trace(A, 24, seed=3)
    original = trace._cholesky_qr2_rows
    try:
        trace._cholesky_qr2_rows = lambda rows: None  # always the Householder path
        householder = hessian_trace(A, 24, seed=3)
    finally:
        trace._cholesky_qr2_rows = original
    assert ours.estimate == pytest.approx(householder.estimate, rel=1e-10)
    assert ours.stderr == pytest.approx(householder.stderr, rel=1e-8)
