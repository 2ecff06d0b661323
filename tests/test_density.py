import pytest
import torch

from conftest import make_problem
from landscape import HessianOperator, dense_hessian, effective_rank, spectral_density
from landscape.operators import make_generator
from landscape.trace import probe_vectors


@pytest.fixture(scope="module")
def problem_and_hessian():
    model, loss_fn, x, y = make_problem("mlp", n=40)
    return (model, loss_fn, x, y), dense_hessian(model, loss_fn, (x, y))


def test_moments_are_the_probes_quadratic_forms(problem_and_hessian):
    (model, loss_fn, x, y), H = problem_and_hessian
    op = HessianOperator(model, loss_fn, (x, y))
    dens = spectral_density(op, num_probes=1, num_steps=12, seed=7)
    v = probe_vectors(op.dim, 1, make_generator(7), op)[:, 0]
    D = op.dim
    assert dens.moment(0) == pytest.approx(1.0, abs=1e-12)
    assert dens.moment(1) == pytest.approx(float(v @ H @ v) / D, rel=1e-9)
    assert dens.moment(2) == pytest.approx(float(v @ H @ H @ v) / D, rel=1e-9)
    assert dens.num_matvecs == 12


def test_first_moment_estimates_trace_over_d_and_top_nodes_are_exact(problem_and_hessian):
    (_, _, _, _), H = problem_and_hessian
    exact = torch.linalg.eigvalsh(H)
    dens = spectral_density(H, num_probes=30, num_steps=25, seed=0)
    per_probe = (dens.weights * dens.nodes).sum(1) * dens.nodes.shape[0]
    stderr = float(per_probe.std() / per_probe.numel() ** 0.5)
    assert abs(dens.moment(1) - float(H.trace()) / H.shape[0]) <= 4 * stderr
    # Lanczos nodes converge at the edges of the spectrum first.
    assert float(dens.nodes.max()) == pytest.approx(float(exact[-1]), rel=1e-8)
    assert float(dens.nodes.min()) == pytest.approx(float(exact[0]), rel=1e-6)
    # The smoothed density is a probability density on its grid.
    integral = torch.trapezoid(dens.density, dens.grid)
    assert float(integral) == pytest.approx(1.0, abs=1e-3)


def test_effective_rank_formulas():
    assert effective_rank(torch.ones(7)) == pytest.approx(7.0)
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    values = torch.tensor([8.0, 4.0, 2.0, 1.0])
    p = values / values.sum()
    assert effective_rank(values) == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    assert effective_rank(values, method="threshold", threshold=0.2) == 3
    with pytest.raises(ValueError, match="unknown method"):
        effective_rank(values, method="stable")
    with pytest.raises(ValueError, match="threshold"):
        effective_rank(values, method="threshold", threshold=0.0)


def test_effective_rank_from_density_close_to_exact(problem_and_hessian):
    (_, _, _, _), H = problem_and_hessian
    exact = torch.linalg.eigvalsh(H)
    dens = spectral_density(H, num_probes=20, num_steps=30, seed=1)
    outliers_exact = effective_rank(exact, method="threshold", threshold=0.1)
    outliers_slq = effective_rank(dens, method="threshold", threshold=0.1)
    assert abs(outliers_slq - outliers_exact) <= 1.5


def test_bad_input(problem_and_hessian):
    _, H = problem_and_hessian
    with pytest.raises(ValueError, match="exceeds the operator dimension"):
        spectral_density(H, num_steps=H.shape[0] + 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        spectral_density(H, num_probes=0)
