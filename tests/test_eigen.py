import copy
from typing import ClassVar

import pytest
import torch

from conftest import make_problem
from landscape import (
    HessianOperator,
    LinearOperator,
    dense_hessian,
    eigen,
    eigenvalue_ratio,
    power_iteration,
    top_eigenvalues,
)


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


# ------------------------------------------------------------------------------------------------------------
# Bounded memory: thick restarts, the chunked basis, the basis device; half precision


def clustered_matrix():
    """D = 200: three top eigenvalues 1% apart above a cluster of 20 at 2.5–2.6 and a bulk in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    values = torch.cat(
        [
            torch.tensor([3.0, 2.97, 2.94], dtype=torch.float64),
            2.5 + 0.1 * torch.rand(20, generator=g, dtype=torch.float64),
            torch.rand(177, generator=g, dtype=torch.float64),
        ]
    )
    return spd_with_spectrum(values, seed=1)


def restarts_of(result):
    return int(result.method.split("restarts=")[1].rstrip(")"))


@pytest.mark.parametrize(("max_basis", "block_size"), [(8, 1), (12, 1), (7, 2)])
def test_restarted_lanczos_matches_eigvalsh_with_honest_residuals(max_basis, block_size):
    A = clustered_matrix()
    exact = torch.linalg.eigvalsh(A).flip(0)[:3]
    res = top_eigenvalues(A, 3, tol=1e-10, max_basis=max_basis, block_size=block_size, max_matvecs=2000)
    assert res.converged
    assert f"max_basis={max_basis}," in res.method
    assert restarts_of(res) > 0
    torch.testing.assert_close(res.values, exact, rtol=1e-9, atol=0)
    true_res = (A @ res.vectors - res.vectors * res.values).norm(dim=0)
    torch.testing.assert_close(res.residuals, true_res, rtol=1e-6, atol=1e-14)
    assert torch.all(res.residuals <= 1e-4)
    torch.testing.assert_close(
        res.vectors.T @ res.vectors, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0
    )


def test_restarts_may_spend_more_products_than_the_dimension():
    A = spd_with_spectrum(torch.linspace(0, 1, 60), seed=5)
    res = top_eigenvalues(A, 2, tol=1e-10, max_basis=4, max_matvecs=2000)
    assert res.converged
    assert res.num_matvecs > 60  # a restarted basis never fills the space, so D is no cap
    torch.testing.assert_close(res.values, torch.linalg.eigvalsh(A).flip(0)[:2], rtol=1e-9, atol=0)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        short = top_eigenvalues(A, 2, tol=1e-10, max_basis=4, max_matvecs=30)
    assert short.num_matvecs == 30


def test_max_basis_is_checked():
    A = clustered_matrix()
    with pytest.raises(ValueError, match=r"max_basis=3 must be an integer >= k \+ block_size = 4"):
        top_eigenvalues(A, 3, max_basis=3)
    with pytest.raises(ValueError, match=r"max_basis=5 must be an integer >= k \+ block_size = 7"):
        top_eigenvalues(A, 3, max_basis=5, block_size=4)
    with pytest.raises(ValueError, match=r"max_basis=8\.0 must be an integer"):
        top_eigenvalues(A, 3, max_basis=8.0)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        top_eigenvalues(A, 3, block_size=0)


def test_default_max_basis_rule(monkeypatch):
    # ResNet-18 (D = 11.2M, float32), k = 5, 60 products: Q and W of 60 columns take 5.4 GB > 1 GiB.
    assert eigen.default_max_basis(11_200_000, 5, 1, 60, torch.float32) == 20
    assert eigen.default_max_basis(11_200_000, 10, 4, 500, torch.float32) == 38  # 3k + 2 block_size
    assert eigen.default_max_basis(11_200_000, 5, 1, 15, torch.float32) == 15  # never more than the budget
    assert eigen.default_max_basis(200, 3, 1, 200, torch.float64) == 200  # small: every column, no restart
    A = clustered_matrix()
    plain = top_eigenvalues(A, 3, tol=1e-10)
    assert plain.method == "lanczos(block_size=1, bound=gap, max_basis=200, restarts=0)"
    monkeypatch.setattr(eigen, "ONE_BUFFER_BYTES", 0)  # as if this were a large model
    big = top_eigenvalues(A, 3, tol=1e-10, max_matvecs=2000)
    assert big.method.startswith("lanczos(block_size=1, bound=gap, max_basis=20, restarts=")
    torch.testing.assert_close(big.values, plain.values, rtol=1e-10, atol=0)


class RecordingBasis(eigen._Basis):
    """`_Basis` that records (columns stored, columns allocated) after every append."""

    log: ClassVar[list] = []

    def append(self, block):
        super().append(block)
        RecordingBasis.log.append((self.capacity, self.cols, self.allocated))


def test_chunked_basis_allocates_only_the_columns_it_stores(monkeypatch):
    A = clustered_matrix()
    one_buffer = top_eigenvalues(A, 3, tol=1e-10, max_basis=8, max_matvecs=2000)
    monkeypatch.setattr(eigen, "ONE_BUFFER_BYTES", 0)  # chunks, as for a large model
    monkeypatch.setattr(eigen, "CHUNK_COLS", 1)  # one chunk per block
    monkeypatch.setattr(eigen, "_Basis", RecordingBasis)
    RecordingBasis.log = []
    chunked = top_eigenvalues(A, 3, tol=1e-10, max_basis=8, max_matvecs=2000)
    assert RecordingBasis.log
    assert all(allocated == cols <= capacity == 8 for capacity, cols, allocated in RecordingBasis.log)
    assert max(cols for _, cols, _ in RecordingBasis.log) == 8
    assert chunked.num_matvecs == one_buffer.num_matvecs
    torch.testing.assert_close(chunked.values, one_buffer.values, rtol=1e-12, atol=0)
    torch.testing.assert_close(chunked.residuals, one_buffer.residuals, rtol=1e-6, atol=1e-14)


@pytest.mark.parametrize(("max_basis", "block_size"), [(8, 1), (12, 1), (7, 2)])
def test_lanczos_without_stored_products_stops_where_the_explicit_residuals_do(
    monkeypatch, max_basis, block_size
):
    # The relation residual ‖R Eᵀs‖ equals the explicit ‖A Q s − θ Q s‖ in float64, through restarts and blocks.
    A = clustered_matrix()
    kwargs = {"tol": 1e-10, "max_basis": max_basis, "block_size": block_size, "max_matvecs": 2000}
    without = top_eigenvalues(A, 3, **kwargs)  # a restarted basis stores Q alone
    monkeypatch.setattr(eigen, "_keeps_products", lambda *args: True)
    with_products = top_eigenvalues(A, 3, **kwargs)
    assert without.converged
    assert without.method == with_products.method  # the same restarts
    assert without.num_matvecs == with_products.num_matvecs + 3
    torch.testing.assert_close(without.values, with_products.values, rtol=1e-12, atol=0)
    true_res = (A @ without.vectors - without.vectors * without.values).norm(dim=0)
    torch.testing.assert_close(without.residuals, true_res, rtol=1e-6, atol=1e-14)
    # The Ritz vectors were formed in place of the basis; what is returned holds no spare basis rows.
    assert without.vectors.untyped_storage().nbytes() == without.vectors.numel() * 8


class NoisyOperator(LinearOperator):
    """A dense symmetric matrix whose products carry seeded relative noise (like half-precision products)."""

    def __init__(self, A, noise):
        super().__init__(A.shape[0], A.dtype, A.device)
        self.A, self.noise, self.gen = A, noise, torch.Generator().manual_seed(0)

    def _matmat(self, V):
        W = self.A @ V
        return W + self.noise * W.norm(dim=0) * torch.randn(W.shape, generator=self.gen, dtype=W.dtype)


def test_relation_residuals_below_the_products_noise_are_not_reported_as_converged():
    op = NoisyOperator(clustered_matrix(), 1e-4)
    with pytest.warns(RuntimeWarning, match="explicit residuals of the returned pairs"):
        res = top_eigenvalues(op, 1, tol=1e-10, max_basis=20, max_matvecs=400)
    assert not res.converged
    assert float(res.residuals[0]) > 1e-6  # the noise floor, honestly reported


def test_basis_products_and_in_place_restart_match_dense():
    g = torch.Generator().manual_seed(3)
    M = torch.randn(50, 7, generator=g, dtype=torch.float64)
    basis = eigen._Basis(50, capacity=7, chunk_cols=2, dtype=torch.float64, device=torch.device("cpu"))
    basis.append(M[:, :3])  # a block split across chunks
    basis.append(M[:, 3:7])
    assert (basis.cols, basis.allocated, [c.shape[0] for c in basis.chunks]) == (7, 7, [2, 2, 2, 1])
    x, s = (
        torch.randn(50, 2, generator=g, dtype=torch.float64),
        torch.randn(7, 3, generator=g, dtype=torch.float64),
    )
    torch.testing.assert_close(basis.project(x), M.T @ x)
    torch.testing.assert_close(basis.combine(s), M @ s)
    torch.testing.assert_close(basis.columns(), M)
    torch.testing.assert_close(basis.tail(1), M[:, 6:])  # the last chunk
    assert basis.tail(2) is None  # columns 5 and 6 lie in two chunks
    y = x.clone()
    basis.remove_projection(y)
    torch.testing.assert_close(y, x - M @ (M.T @ x))
    S = torch.randn(7, 3, generator=g, dtype=torch.float64)
    basis.rotate(S)
    assert (basis.cols, basis.allocated) == (3, 4)  # the kept columns, and their chunks only
    torch.testing.assert_close(basis.combine(torch.eye(3, dtype=torch.float64)), M @ S)
    basis.append(M[:, :2])  # fills the free column, then a new chunk
    assert (basis.cols, basis.allocated) == (5, 6)
    torch.testing.assert_close(basis.project(x), torch.cat([M @ S, M[:, :2]], 1).T @ x)
    with pytest.raises(RuntimeError, match="full"):
        basis.append(M[:, :3])


def test_basis_device_keeps_the_basis_there():
    A = clustered_matrix()
    here = top_eigenvalues(A, 3, tol=1e-10, max_basis=8, max_matvecs=2000)
    cpu = top_eigenvalues(A, 3, tol=1e-10, max_basis=8, max_matvecs=2000, basis_device=torch.device("cpu"))
    assert cpu.vectors.device == torch.device("cpu")
    assert torch.equal(cpu.values, here.values)
    assert torch.equal(cpu.vectors, here.vectors)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_basis_on_the_cpu_for_an_operator_on_the_gpu():
    A = clustered_matrix()
    cpu = top_eigenvalues(A, 3, tol=1e-10, max_basis=8, max_matvecs=2000)
    split = top_eigenvalues(A.cuda(), 3, tol=1e-10, max_basis=8, max_matvecs=2000, basis_device="cpu")
    assert split.vectors.device == torch.device("cpu")
    torch.testing.assert_close(split.values, cpu.values, rtol=1e-10, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_model_works_in_float32(dtype):
    model, loss_fn, x, y = make_problem("mlp", n=40)
    half, x_half = model.to(dtype), x.to(dtype)
    # The exact reference: the float64 Hessian of the same rounded weights and inputs.
    H = dense_hessian(copy.deepcopy(half).double(), loss_fn, (x_half.double(), y))
    exact = torch.linalg.eigvalsh(H)
    top3, lmin = exact.flip(0)[:3], exact[0]
    scale = float(top3[0])
    op = HessianOperator(half, loss_fn, (x_half, y))
    for res in (
        top_eigenvalues(op, 3, tol=1e-3),
        top_eigenvalues(op, 3, tol=1e-3, max_basis=6, max_matvecs=200),
    ):
        assert res.values.dtype == res.vectors.dtype == res.residuals.dtype == torch.float32
        assert res.converged
        # Products in half precision carry ~eps relative noise (4e-3 for bfloat16): a loose tolerance.
        assert torch.all((res.values.double() - top3).abs() <= 3e-3 * scale), (res.values, top3)
    power = power_iteration(op, 2, tol=1e-6, max_iter=500)
    assert power.values.dtype == torch.float32
    assert torch.all((power.values.double() - top3[:2]).abs() <= 2e-2 * scale), (power.values, top3)
    ratio = eigenvalue_ratio(op, tol=1e-3)
    assert ratio["lambda_max"] == pytest.approx(scale, abs=1e-2 * scale)
    assert ratio["lambda_min"] == pytest.approx(float(lmin), abs=1e-2 * scale)


# Recorded with the code before thick restarts (commit a3476ca), on the mlp problem of
# test_top_k_match_dense_eigvalsh: the default path keeps its arithmetic (bit-identical on the recording
# machine; compared to 1e-12 so that another BLAS passes) and stops after the same number of products.
RECORDED_MLP_TOP4 = {
    "values": [0.6369828027562568, 0.4232499852100281, 0.33452738583054537, 0.27023039761079254],
    "residuals": [
        6.784131536683849e-15,
        5.197604031154751e-11,
        3.109626842572282e-08,
        5.3276223339311264e-06,
    ],
    "num_matvecs": 23,
}


def test_default_path_reproduces_the_recorded_output():
    model, loss_fn, x, y = make_problem("mlp", n=40)
    res = top_eigenvalues(HessianOperator(model, loss_fn, (x, y)), 4, tol=1e-8)
    assert (
        res.method == "lanczos(block_size=1, bound=gap, max_basis=57, restarts=0)"
    )  # D = 57 < the 320 products
    assert res.num_matvecs == RECORDED_MLP_TOP4["num_matvecs"]
    torch.testing.assert_close(
        res.values, torch.tensor(RECORDED_MLP_TOP4["values"], dtype=torch.float64), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(
        res.residuals,
        torch.tensor(RECORDED_MLP_TOP4["residuals"], dtype=torch.float64),
        rtol=1e-6,
        atol=1e-13,
    )


def test_dot64_keeps_float32_reductions_accurate_at_large_dimension():
    # 4M float32 values: one-row float32 BLAS products can lose ~1e-3 here, float32 slab products 1e-6; slabs
    # converted to float64 (products of float32 values are exact there) leave only float64 rounding.
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(4_000_003, 2, generator=g)
    exact = x.double().T @ x.double()
    got = eigen.dot64(x.T.contiguous(), x)
    assert got.dtype == torch.float64
    assert float(((got - exact) / exact.diagonal().max()).abs().max()) < 1e-12
    norms = eigen.norms64(x)
    assert float(((norms - exact.diagonal().sqrt()) / norms).abs().max()) < 1e-12


def test_residual_bound_refuses_lambda_min_hidden_in_a_dense_bulk():
    """λmin = −1e-3 inside a dense bulk beside λmax = 70, in float32: the gap test accepts a Ritz value 100× too
    small (at the products' rounding floor); the residual test does not, and its interval still holds an
    eigenvalue."""
    gen = torch.Generator().manual_seed(0)
    bulk = (torch.rand(3000, generator=gen, dtype=torch.float64) * 2 - 1) * 1e-3
    values = torch.cat([torch.tensor([70.0, 40.0, 20.0], dtype=torch.float64), bulk])
    A = torch.diag(values).float()
    gap = top_eigenvalues(A, 1, which="smallest", tol=1e-3, max_matvecs=60, seed=0)
    assert gap.converged
    assert abs(float(gap.values[0]) - float(values.min())) > 0.5e-3
    with pytest.warns(RuntimeWarning, match="did not reach"):
        resid = top_eigenvalues(A, 1, which="smallest", tol=1e-3, max_matvecs=60, bound="residual", seed=0)
    assert not resid.converged
    theta, r = float(resid.values[0]), float(resid.residuals[0])
    assert float((values - theta).abs().min()) <= r  # an eigenvalue within r of θ
    assert float(values.min()) <= theta  # θ is a Rayleigh quotient: λmin lies below it
    assert "bound=residual" in resid.method
    with pytest.raises(ValueError, match="bound='tight'"):
        top_eigenvalues(A, 1, bound="tight")


def test_residual_bound_converges_where_it_can():
    A = torch.diag(torch.tensor([5.0, 3.0, 1.0, 0.5, -2.0], dtype=torch.float64))
    res = top_eigenvalues(A, 1, which="smallest", tol=1e-8, bound="residual")
    assert res.converged
    assert abs(float(res.values[0]) + 2.0) < 1e-8
