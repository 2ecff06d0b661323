import copy
from typing import ClassVar

import pytest
import torch

from conftest import make_problem
from landscape import HessianOperator, dense_hessian, effective_rank, eigen, spectral_density
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
    with pytest.raises(TypeError, match="reorthogonalize must be True or False, got 'yes'"):
        spectral_density(H, num_steps=5, reorthogonalize="yes")


# ------------------------------------------------------------------------------------------------------------
# Memory: only T is kept; the three-term recurrence; half precision


def outlier_matrix():
    """D = 100: eigenvalues 20, 12, 8 above a bulk uniform on [0, 1] (Lanczos converges to 20 within a few steps)."""
    g = torch.Generator().manual_seed(0)
    values = torch.cat(
        [
            torch.tensor([20.0, 12.0, 8.0], dtype=torch.float64),
            torch.rand(97, generator=g, dtype=torch.float64),
        ]
    )
    q, _ = torch.linalg.qr(
        torch.randn(100, 100, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    )
    return q @ torch.diag(values) @ q.T, values


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_moments_match_the_exact_spectrum(reorthogonalize):
    A, values = outlier_matrix()
    num_probes = 20
    dens = spectral_density(A, num_probes=num_probes, num_steps=60, seed=0, reorthogonalize=reorthogonalize)
    gen = make_generator(0)
    for j in (1, 2):
        per_probe = (dens.weights * dens.nodes**j).sum(1) * num_probes
        stderr = float(per_probe.std() / num_probes**0.5)
        exact = float((values**j).mean())
        assert abs(dens.moment(j) - exact) <= 4 * stderr, (j, dens.moment(j), exact, stderr)
    # Each probe's quadrature reproduces its quadratic forms vᵀAʲv / vᵀv (Gauss quadrature, degree < 2·steps).
    for i in range(num_probes):
        v = probe_vectors(100, 1, gen, A)[:, 0]
        for j in (1, 2, 4, 8):
            quad = float((dens.weights[i] * dens.nodes[i] ** j).sum()) * num_probes
            exact = float(v @ torch.linalg.matrix_power(A, j) @ v / (v @ v))
            assert quad == pytest.approx(exact, rel=1e-9)


def test_three_term_recurrence_has_ghost_copies_but_the_same_weights():
    A, _ = outlier_matrix()
    full = spectral_density(A, num_probes=3, num_steps=60, seed=0)
    plain = spectral_density(A, num_probes=3, num_steps=60, seed=0, reorthogonalize=False)
    near_full, near_plain = (full.nodes - 20).abs() < 1e-6, (plain.nodes - 20).abs() < 1e-6
    assert torch.all(near_full.sum(1) == 1)
    assert torch.all(near_plain.sum(1) > 1)  # lost orthogonality: spurious copies of the converged 20
    # ... whose weights add up to the one weight of the orthogonal basis.
    torch.testing.assert_close(
        (plain.weights * near_plain).sum(1), (full.weights * near_full).sum(1), rtol=1e-8, atol=0
    )
    for j in range(1, 12):
        assert plain.moment(j) == pytest.approx(full.moment(j), rel=1e-9)


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_invariant_krylov_space_keeps_the_size_and_exact_moments(reorthogonalize):
    values = torch.tensor([3.0] * 5 + [1.0] * 10 + [-2.0] * 5, dtype=torch.float64)
    dens = spectral_density(
        torch.diag(values), num_probes=3, num_steps=8, seed=0, reorthogonalize=reorthogonalize
    )
    assert dens.nodes.shape == (3, 8)  # three distinct eigenvalues: a breakdown after three steps
    for j in range(6):  # a ±1 probe gives vᵀAʲv / vᵀv = mean(λʲ) exactly
        assert dens.moment(j) == pytest.approx(float((values**j).mean()), rel=1e-12, abs=1e-12)
    for value, mass in ((3.0, 0.25), (1.0, 0.5), (-2.0, 0.25)):
        assert float(dens.weights[(dens.nodes - value).abs() < 1e-8].sum()) == pytest.approx(mass, abs=1e-10)


class RecordingBasis(eigen._Basis):
    """`_Basis` that records every instance (to count what SLQ stores)."""

    made: ClassVar[list] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingBasis.made.append(self)


def test_only_the_basis_is_stored_and_nothing_without_reorthogonalisation(monkeypatch):
    A, _ = outlier_matrix()
    monkeypatch.setattr(eigen, "_Basis", RecordingBasis)
    RecordingBasis.made = []
    spectral_density(A, num_probes=3, num_steps=10, seed=0)
    # One basis Q per probe (no products W = AQ), of num_steps columns.
    assert [(b.cols, b.allocated) for b in RecordingBasis.made] == [(10, 10)] * 3
    RecordingBasis.made = []
    spectral_density(A, num_probes=3, num_steps=10, seed=0, reorthogonalize=False)
    assert RecordingBasis.made == []


def test_basis_device_and_progress_change_nothing():
    A, _ = outlier_matrix()
    plain = spectral_density(A, num_probes=2, num_steps=10, seed=0)
    other = spectral_density(
        A, num_probes=2, num_steps=10, seed=0, basis_device=torch.device("cpu"), progress=True
    )
    assert torch.equal(plain.nodes, other.nodes)
    assert torch.equal(plain.weights, other.weights)


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_half_precision_model(reorthogonalize):
    model, loss_fn, x, y = make_problem("mlp", n=40)
    half, x_half = model.to(torch.bfloat16), x.to(torch.bfloat16)
    reference = HessianOperator(copy.deepcopy(half).double(), loss_fn, (x_half.double(), y))
    op = HessianOperator(half, loss_fn, (x_half, y))
    kw = {"num_probes": 4, "num_steps": 10, "seed": 3, "reorthogonalize": reorthogonalize}
    dens, exact = spectral_density(op, **kw), spectral_density(reference, **kw)
    assert dens.nodes.dtype == torch.float64
    scale = float(exact.nodes.abs().max())
    # bfloat16 products carry ~0.5% relative noise; the moments of the same probes agree to ~1e-4 · scale^j.
    for j in (1, 2):
        assert abs(dens.moment(j) - exact.moment(j)) <= 2e-3 * scale**j
    assert abs(float(dens.nodes.max()) - float(exact.nodes.max())) <= 1e-2 * scale


# Recorded with the code before this change (commit a3476ca): spectral_density(mlp op, num_probes=3,
# num_steps=12, seed=7), first probe (bit-identical on the recording machine; compared to 1e-12).
RECORDED_MLP_SLQ_NODES = [
    -0.21957674137197603, -0.1822106533341723, -0.14560886822790195, -0.08237178993456995, -0.019031146968605653,
    0.03016764131734892, 0.12489864113128303, 0.20343800301714696, 0.25866486906598896, 0.3340939962078373,
    0.42324968397784196, 0.6369828027266011,
]  # fmt: skip
RECORDED_MLP_SLQ_WEIGHTS = [
    0.018422599076810986, 0.02215781679772404, 0.04095181646597865, 0.03230045765052849, 0.067587839403686,
    0.06988714706997128, 0.01983164981686592, 0.021974321793104584, 0.008175586022815875, 0.003926259298561893,
    0.02499510318573596, 0.0031227367515495106,
]  # fmt: skip


def test_reproduces_the_recorded_output(problem_and_hessian):
    (model, loss_fn, x, y), _ = problem_and_hessian
    dens = spectral_density(HessianOperator(model, loss_fn, (x, y)), num_probes=3, num_steps=12, seed=7)
    assert dens.num_matvecs == 36
    recorded = torch.tensor(RECORDED_MLP_SLQ_NODES, dtype=torch.float64)
    torch.testing.assert_close(dens.nodes[0], recorded, rtol=1e-12, atol=1e-14)
    recorded = torch.tensor(RECORDED_MLP_SLQ_WEIGHTS, dtype=torch.float64)
    torch.testing.assert_close(dens.weights[0], recorded, rtol=1e-10, atol=1e-14)
