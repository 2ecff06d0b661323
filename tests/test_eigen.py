import pytest
import torch

from conftest import make_problem
from landscape import HessianOperator, dense_hessian, eigenvalue_ratio, power_iteration, top_eigenvalues


def spd_with_spectrum(values, seed=0):
    """A dense symmetric matrix with the given eigenvalues and a random orthogonal basis."""
    values = torch.as_tensor(values, dtype=torch.float64)
    q, _ = torch.linalg.qr(
        torch.randn(
            len(values), len(values), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
    )
    return q @ torch.diag(values) @ q.T


@pytest.mark.parametrize("kind", ["mlp", "cnn", "attention"])
def test_top_k_match_dense_eigvalsh(kind):
    model, loss_fn, x, y = make_problem(kind, n=40)
    exact = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, (x, y))).flip(0)
    op = HessianOperator(model, loss_fn, (x, y))
    res = top_eigenvalues(op, 4, tol=1e-8)
    assert res.converged
    rel = ((res.values - exact[:4]).abs() / exact[:4].abs()).max()
    assert rel <= 1e-6, (res.values, exact[:4])
    assert torch.all(res.values[:-1] >= res.values[1:])  # descending
    assert torch.all(res.residuals <= 1e-3 * exact[0].abs())
    assert res.num_matvecs == op.num_matvecs < op.dim
    # Residuals are true ‖Hv − λv‖ (checked with fresh products), and the vectors are orthonormal.
    H = dense_hessian(model, loss_fn, (x, y))
    true_res = (H @ res.vectors - res.vectors * res.values).norm(dim=0)
    torch.testing.assert_close(res.residuals, true_res, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(
        res.vectors.T @ res.vectors, torch.eye(4, dtype=torch.float64), atol=1e-8, rtol=0
    )


def test_smallest_and_ratio():
    A = spd_with_spectrum([5.0, 3.0, 1.0, 0.5, 0.1, -0.2, -1.5] + [0.0] * 20)
    low = top_eigenvalues(A, 2, which="smallest", tol=1e-10)
    torch.testing.assert_close(
        low.values, torch.tensor([-1.5, -0.2], dtype=torch.float64), rtol=1e-8, atol=1e-10
    )
    mag = top_eigenvalues(A, 2, which="magnitude", tol=1e-10)
    torch.testing.assert_close(mag.values, torch.tensor([5.0, 3.0], dtype=torch.float64))
    ratio = eigenvalue_ratio(A, tol=1e-10)
    assert ratio["lambda_max"] == pytest.approx(5.0)
    assert ratio["lambda_min"] == pytest.approx(-1.5)
    assert ratio["ratio"] == pytest.approx(0.3)


def test_no_repeated_copies_and_block_resolves_multiplicity():
    A = spd_with_spectrum([4.0, 4.0, 2.0, 1.0] + [0.1 * i for i in range(30)])
    single = top_eigenvalues(A, 3, tol=1e-10)
    # One start vector sees one direction of the double eigenvalue: 4, 3.0 (next), ... never fake copies.
    assert single.values[0] == pytest.approx(4.0)
    assert single.values[1] == pytest.approx(2.9)  # 0.1 * 29, the next distinct eigenvalue it can see
    block = top_eigenvalues(A, 3, tol=1e-10, block_size=2)
    torch.testing.assert_close(block.values, torch.tensor([4.0, 4.0, 2.9], dtype=torch.float64))


def test_power_iteration_artefact_and_deflation():
    A = spd_with_spectrum([4.055, 2.5, 1.2, 0.4] + [0.01 * i for i in range(20)])
    raw = power_iteration(A, 3, deflate=False, seed=1)
    # Three separate runs, three copies of λmax: the founding write-up's "4.0550, 4.0550, 4.0550".
    assert torch.allclose(raw.values, torch.full((3,), 4.055, dtype=torch.float64), rtol=1e-3)
    overlaps = (raw.vectors.T @ raw.vectors).abs()
    assert torch.all(overlaps > 0.99)  # the same eigenvector three times
    deflated = power_iteration(A, 3, deflate=True, tol=1e-10, max_iter=2000, seed=1)
    torch.testing.assert_close(
        deflated.values, torch.tensor([4.055, 2.5, 1.2], dtype=torch.float64), rtol=1e-6, atol=0
    )


def test_seeded_regression_and_determinism(mlp_problem):
    model, loss_fn, x, y = mlp_problem
    op = HessianOperator(model, loss_fn, (x, y))
    a = top_eigenvalues(op, 2, seed=5)
    b = top_eigenvalues(op, 2, seed=5)
    assert torch.equal(a.values, b.values)
    assert a.num_matvecs == b.num_matvecs


def test_unconverged_run_warns():
    A = spd_with_spectrum([1.0 + 1e-3 * i for i in range(60)])
    with pytest.warns(RuntimeWarning, match="did not reach"):
        res = top_eigenvalues(A, 3, tol=1e-12, max_matvecs=6)
    assert not res.converged


def test_bad_input():
    A = spd_with_spectrum([3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="smaller than the operator dimension"):
        top_eigenvalues(A, 3)
    with pytest.raises(ValueError, match="positive integer"):
        top_eigenvalues(A, 0)
    with pytest.raises(ValueError, match="unknown which"):
        top_eigenvalues(A, 1, which="biggest")
    with pytest.raises(ValueError, match="smaller than the operator dimension"):
        power_iteration(A, 5)
    with pytest.raises(ValueError, match="square matrix"):
        top_eigenvalues(torch.ones(3, 2), 1)


def test_progress_bar_changes_nothing(capsys):
    A = spd_with_spectrum([3.0, 2.0, 1.0] + [0.1] * 10)
    quiet = top_eigenvalues(A, 2, tol=1e-10)
    loud = top_eigenvalues(A, 2, tol=1e-10, progress=True)
    assert torch.equal(quiet.values, loud.values)
    assert "Lanczos" in capsys.readouterr().err


def test_start_block_is_used_and_checked():
    A = torch.diag(torch.tensor([5.0, 3.0, 1.0, 0.5], dtype=torch.float64))
    exact_vector = torch.tensor([[1.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    res = top_eigenvalues(A, 1, tol=1e-12, start=exact_vector)
    assert float(res.values[0]) == 5.0
    assert res.num_matvecs == 1  # started on the eigenvector: one product certifies it
    with pytest.raises(ValueError, match="start must have shape"):
        top_eigenvalues(A, 1, start=torch.ones(4, dtype=torch.float64))


def test_power_iteration_rejects_a_non_positive_iteration_budget():
    with pytest.raises(ValueError, match="max_iter must be a positive integer, got -1"):
        power_iteration(torch.eye(4, dtype=torch.float64), 1, max_iter=-1)
