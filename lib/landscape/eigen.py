"""Extreme eigenpairs of a symmetric operator: (block) Lanczos with full reorthogonalisation and thick restarts,
the Lanczos tridiagonal for quadrature, and the power-iteration baseline.

References:
    C. Lanczos (1950); G. H. Golub and R. Underwood (1977), block Lanczos; B. N. Parlett, *The Symmetric
    Eigenvalue Problem* (1998), residual and gap bounds; K. Wu and H. Simon (2000), thick-restart Lanczos;
    G. W. Stewart (2001), the Krylov–Schur restart; A. Greenbaum (1989), the Lanczos recurrence in finite
    precision; G. H. Golub and G. Meurant (2010), *Matrices, Moments and Quadrature with Applications*;
    Z. Yao et al. (2020), PyHessian (power iteration);
    H. Li et al. (2018), |λmin/λmax| as a convexity indicator.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .operators import LinearOperator, as_operator, make_generator
from .progress import progress_bar

__all__ = ["EigenResult", "eigenvalue_ratio", "lanczos_tridiagonal", "power_iteration", "top_eigenvalues"]

WHICH = ("largest", "smallest", "magnitude")
BOUNDS = ("gap", "residual")  # convergence tests of `top_eigenvalues`

# Below this many bytes for the whole basis (Q and W together), the default keeps every column (no restart) and
# stores each of Q and W in one buffer, so products with the basis are single matrix products.
ONE_BUFFER_BYTES = 2**30
# Values in one row slab of the in-place restart Q <- Q S (bounds its temporary).
_SLAB_VALUES = 2**22


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs of a symmetric operator.

    Attributes:
        values: eigenvalues, ordered from the requested end inwards (descending for `"largest"`), in the
            operator's `work_dtype`.
        vectors: unit eigenvectors as columns, `(D, k)`.
        residuals: ‖A v − λ v‖ for each pair, from the operator's own products (an error bar: an eigenvalue
            of A lies within this distance of each value).
        num_matvecs: operator-vector products used.
        converged: whether every pair met the tolerance.
        method: the algorithm that produced them, with its settings.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    num_matvecs: int
    converged: bool
    method: str


def _check_k(k: int, dim: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k >= dim:
        raise ValueError(
            f"k={k} must be smaller than the operator dimension D={dim}; for all eigenvalues of a small "
            "operator use torch.linalg.eigvalsh on dense_hessian(...)"
        )


def _basis_device(op: LinearOperator, basis_device: torch.device | str | None) -> torch.device:
    return op.device if basis_device is None else torch.device(basis_device)


# Coordinates per partial product in `dot64`. A single float32 BLAS reduction over D ~ 1e7 values loses up to
# ~1e-2 relative accuracy (MKL's one-row gemv: 7e-3 on ResNet-18's D = 11.2M, measured); partial products over
# 16k coordinates summed in float64 keep ~1e-7 at one matrix product per slab.
_DOT_SLAB = 2**14


def dot64(rows: Tensor, cols: Tensor) -> Tensor:
    """rows @ cols for rows `(n, D)` and cols `(D, m)` in float64, one slab of `_DOT_SLAB` coordinates at a time:
    `(n, m)` float64 on the CPU. Each slab is converted to float64 before its product (a product of two float32
    values is exact in float64), so the result is accurate to float64 rounding at any D; the temporaries are
    (n + m)·`_DOT_SLAB` float64 values. (torch has no float32 matrix product with a float64 accumulator, and a
    float32 product of one slab lost 1e-6 relative on 16k coordinates with this machine's BLAS; converting whole
    D-vectors would double their memory.)"""
    out = torch.zeros(rows.shape[0], cols.shape[1], dtype=torch.float64, device=rows.device)
    for start in range(0, rows.shape[1], _DOT_SLAB):
        out += rows[:, start : start + _DOT_SLAB].double() @ cols[start : start + _DOT_SLAB].double()
    return out.cpu()


def norms64(block: Tensor) -> Tensor:
    """Column norms of a `(D, m)` block in float64, slab by slab as in `dot64`: `(m,)` float64, CPU."""
    total = torch.zeros(block.shape[1], dtype=torch.float64, device=block.device)
    for start in range(0, block.shape[0], _DOT_SLAB):
        total += block[start : start + _DOT_SLAB].double().square().sum(0)
    return total.sqrt().cpu()


class _Basis:
    """The columns of a D x n matrix, stored as a list of chunks that are allocated as columns arrive.

    Every chunk but the last is full. A chunk holds `chunk_cols` columns (fewer for the last one when
    `capacity` is reached), so the storage is `capacity` columns at most and at most `chunk_cols − 1` columns
    more than those stored. Each chunk keeps its columns as contiguous rows (`(width, D)`): a new column writes
    only its own memory pages, and Qᵀx and Q s are one matrix product per chunk (nothing is concatenated).
    """

    def __init__(self, dim: int, capacity: int, chunk_cols: int, dtype: torch.dtype, device: torch.device):
        self.dim, self.capacity, self.chunk_cols = dim, capacity, chunk_cols
        self.dtype, self.device = dtype, device
        self.chunks: list[Tensor] = []  # each (width, D): column j of the basis is a row
        self.cols = 0

    @property
    def allocated(self) -> int:
        """Columns of storage held."""
        return sum(c.shape[0] for c in self.chunks)

    def _views(self):
        """(first column, filled rows `(w, D)`) of each chunk in use."""
        offset = 0
        for chunk in self.chunks:
            width = min(chunk.shape[0], self.cols - offset)
            if width <= 0:
                return
            yield offset, chunk[:width]
            offset += width

    def append(self, block: Tensor) -> None:
        done = 0
        while done < block.shape[1]:
            free = self.allocated - self.cols
            if free == 0:
                width = min(self.chunk_cols, self.capacity - self.allocated)
                if width <= 0:
                    raise RuntimeError(f"basis of capacity {self.capacity} is full")  # a caller's bug
                self.chunks.append(torch.empty(width, self.dim, dtype=self.dtype, device=self.device))
                free = width
            last = self.chunks[-1]
            at = last.shape[0] - free
            n = min(free, block.shape[1] - done)
            last[at : at + n] = block[:, done : done + n].T
            done += n
            self.cols += n

    def project(self, x: Tensor) -> Tensor:
        """Qᵀ x, `(n, m)` (float32 reductions: for orthogonalisation, which a second pass corrects)."""
        return torch.cat([rows @ x for _, rows in self._views()])

    def project64(self, x: Tensor) -> Tensor:
        """Qᵀ x, `(n, m)`, by `dot64` (float64, CPU): for the entries of T."""
        return torch.cat([dot64(rows, x) for _, rows in self._views()])

    def remove_projection(self, block: Tensor) -> None:
        """block <- block − Q Qᵀ block in place, chunk by chunk (no D-sized temporary)."""
        coeffs = self.project(block)
        for offset, rows in self._views():
            block.addmm_(rows.T, coeffs[offset : offset + rows.shape[0]], alpha=-1)

    def tail(self, width: int) -> Tensor | None:
        """The last `width` stored columns as a `(D, width)` view, or None when they span two chunks."""
        for offset, rows in self._views():
            if offset <= self.cols - width and self.cols <= offset + rows.shape[0]:
                return rows[self.cols - width - offset :].T
        return None

    def columns(self) -> Tensor:
        """All stored columns, `(D, n)`: a view when they lie in one chunk, else a concatenated copy."""
        views = [rows for _, rows in self._views()]
        return views[0].T if len(views) == 1 else torch.cat(views).T

    def combine(self, s: Tensor) -> Tensor:
        """Q s, `(D, m)`."""
        out = None
        for offset, rows in self._views():
            part = s[offset : offset + rows.shape[0]]
            out = rows.T @ part if out is None else out.addmm_(rows.T, part)
        return out

    def rotate(self, S: Tensor) -> None:
        """Q <- Q S in place, for S `(n, p)` with p <= n, one slab of coordinates at a time (temporary:
        p x slab)."""
        p = S.shape[1]
        S = S.to(device=self.device, dtype=self.dtype)
        views = list(self._views())
        width = max(1, _SLAB_VALUES // max(self.cols, 1))
        for r in range(0, self.dim, width):
            slab = None
            for offset, rows in views:
                part = S[offset : offset + rows.shape[0]].T
                block = rows[:, r : r + width]
                slab = part @ block if slab is None else slab.addmm_(part, block)
            for offset, rows in views:
                if offset < p:
                    n = min(rows.shape[0], p - offset)
                    rows[:n, r : r + width] = slab[offset : offset + n]
        while self.chunks and self.allocated - self.chunks[-1].shape[0] >= p:
            self.chunks.pop()  # storage past the p kept columns
        self.cols = p


CHUNK_COLS = 16


def _fits_one_buffer(dim: int, cols: int, dtype: torch.dtype, copies: int) -> bool:
    """Whether `copies` D × `cols` matrices in `dtype` take at most ONE_BUFFER_BYTES."""
    return copies * dim * cols * dtype.itemsize <= ONE_BUFFER_BYTES


def _chunk_cols(dim: int, capacity: int, block: int, dtype: torch.dtype, copies: int) -> int:
    """One buffer of `capacity` columns when `copies` such matrices fit in ONE_BUFFER_BYTES, else chunks of
    max(block, CHUNK_COLS) columns (few, large matrix products; at most CHUNK_COLS − 1 columns unused)."""
    if _fits_one_buffer(dim, capacity, dtype, copies):
        return capacity
    return min(capacity, max(block, CHUNK_COLS))


def _orthonormalise(block: Tensor, basis: _Basis | None) -> tuple[Tensor, Tensor]:
    """Orthogonalise `block` against `basis` in place (twice: 'twice is enough') and return (Q, Gram), the
    Gram matrix RᵀR (float64, CPU) of the orthogonalised block R before its QR: ‖R c‖² = cᵀ RᵀR c. A single
    column becomes Q itself."""
    if basis is not None and basis.cols > 0:
        for _ in range(2):
            basis.remove_projection(block)
    gram = dot64(block.T, block)
    if block.shape[1] == 1:  # one column: normalised in place, no QR copy (a zero column is replaced later)
        return block.div_(float(gram[0, 0].sqrt())), gram
    q, _ = torch.linalg.qr(block)
    return q, gram


def lanczos_tridiagonal(
    op: LinearOperator,
    start: Tensor,
    num_steps: int,
    *,
    reorthogonalize: bool = True,
    generator: torch.Generator | None = None,
    basis_device: torch.device | str | None = None,
) -> Tensor:
    r"""T = QᵀAQ (float64, `(num_steps, num_steps)`) of `num_steps` Lanczos steps from the vector `start` `(D,)`.

    With `reorthogonalize=True`, each new vector is orthogonalised against all previous ones (twice), so Q stays
    orthonormal to rounding: memory D·num_steps values in `op.work_dtype` (the products A Q are not kept) on
    `basis_device` (default the operator's device). With `reorthogonalize=False`, the plain three-term recurrence
    :math:`\beta_{j} q_{j+1} = A q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}` keeps three vectors (O(D)); Q then
    loses orthogonality once a Ritz value converges, which adds spurious copies of converged Ritz values to T,
    but the Gauss-quadrature weights of T remain a valid estimate (Golub & Meurant 2010, ch. 4; Greenbaum 1989).
    When the Krylov space becomes invariant, the recurrence continues from a fresh random vector (drawn from
    `generator`, default seed 0) with zero coupling, so T keeps its size and the new nodes carry no weight.
    """
    device = _basis_device(op, basis_device)
    dtype = op.work_dtype
    gen = generator or make_generator(0)
    v = start.detach().reshape(op.dim, 1).to(device=device, dtype=dtype)
    if reorthogonalize:
        chunk = _chunk_cols(op.dim, num_steps, 1, dtype, copies=1)
        return _lanczos(
            op,
            v,
            budget=num_steps,
            capacity=num_steps,
            chunk_cols=chunk,
            keep_products=False,
            generator=gen,
            device=device,
            progress=False,
        ).T

    def vdot(x, y):  # float64-accumulated: this recurrence has no second pass to correct a float32 reduction
        return float(dot64(x.reshape(1, -1), y.reshape(-1, 1)))

    alphas, betas = [], []
    q, q_prev, beta = v[:, 0] / math.sqrt(vdot(v, v)), None, None
    for step in range(num_steps):
        w = (op @ q.to(op.device)).to(device)
        if q_prev is not None:
            w = w - beta * q_prev
        alpha = vdot(q, w)
        w = w - alpha * q
        alphas.append(alpha)
        if step == num_steps - 1:
            break
        beta = math.sqrt(vdot(w, w))
        if beta <= 1e-10 * max(1.0, *map(abs, alphas), *betas):
            # Invariant Krylov space: a fresh direction, orthogonal to the last two vectors, uncoupled (β = 0).
            w = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
            for u in (q, q_prev) if q_prev is not None else (q,):
                w = w - vdot(u, w) * u
            q_prev, q, beta = q, w / math.sqrt(vdot(w, w)), 0.0
        else:
            q_prev, q = q, w / beta
        betas.append(beta)
    off = torch.tensor(betas, dtype=torch.float64)
    return torch.diag(torch.tensor(alphas, dtype=torch.float64)) + torch.diag(off, 1) + torch.diag(off, -1)


@dataclass
class _Krylov:
    """What `_lanczos` built: the basis Q, the products W = A Q (None when not kept), T = QᵀW (float64, CPU),
    whether `select` stopped it, and the number of restarts."""

    Q: _Basis
    W: _Basis | None
    T: Tensor
    done: bool
    restarts: int


def _lanczos(
    op: LinearOperator,
    start: Tensor,
    *,
    budget: int,
    capacity: int,
    chunk_cols: int,
    select: Callable | None = None,
    keep: Callable[[Tensor], Tensor] | None = None,
    keep_products: bool = True,
    generator: torch.Generator,
    device: torch.device,
    progress: bool | None = None,
) -> _Krylov:
    """Shared block-Lanczos loop with full reorthogonalisation and thick restarts.

    Spends at most `budget` products. Q (and, with `keep_products`, W = A Q) grow block by block (in
    `op.work_dtype`, on `device`) and T = QᵀAQ by the new block's column. After each block, if `select` is
    given, it is called as `select(theta, S, residuals)` with the Ritz values, the Ritz vectors in the basis, and
    a function returning the residual norms ‖A Q s − θ Q s‖ of chosen Ritz pairs; it returns True to stop. With
    W the residuals are explicit, ‖W s − θ Q s‖. Without W they come from the Lanczos relation
    A Q = Q T + R Eᵀ (R: the last product orthogonalised against Q; E: the last block's columns), which every
    step and every restart preserves: ‖A Q s − θ Q s‖ = ‖R (Eᵀ s)‖, from the Gram matrix RᵀR.
    When the next block would pass `capacity` columns, `keep(theta)` picks the Ritz pairs to keep:
    Q <- Q S_keep (W likewise), T <- diag(θ_keep), and the loop continues with the next block, which was
    orthogonalised against the whole old basis and so against the kept Ritz vectors.
    """
    dim, dtype = op.dim, op.work_dtype
    Q = _Basis(dim, capacity, chunk_cols, dtype, device)
    W = _Basis(dim, capacity, chunk_cols, dtype, device) if keep_products else None
    T = torch.empty(0, 0, dtype=torch.float64)
    q, _ = _orthonormalise(start.clone(), None)  # not the caller's tensor
    used, done, restarts = 0, False, 0
    with progress_bar(progress, total=budget, desc="Lanczos", unit="matvec") as bar:
        while used < budget:
            q = q[:, : budget - used]
            width = q.shape[1]
            if Q.cols + width > capacity:
                theta, S = torch.linalg.eigh(T)
                idx = keep(theta)
                Q.rotate(S[:, idx])
                if W is not None:
                    W.rotate(S[:, idx])
                T = torch.diag(theta[idx])
                restarts += 1
            Q.append(q)
            stored = Q.tail(width)
            if stored is not None:
                q = stored  # multiply the stored copy, so that the block's own memory is freed now
            w = (op @ q.to(op.device)).to(device)
            del q, stored
            if W is not None:
                W.append(w)
            used += width
            bar.update(width)
            T = _grow_symmetric(T, Q.project64(w))
            invariant = Q.cols >= dim
            if not invariant:
                # The next block (w is orthogonalised in place; W holds its own copy); `gram` describes
                # R = (I − Q Qᵀ) A q, for the relation residuals.
                q, gram = _orthonormalise(w, Q)
            if select is not None:
                theta, S = torch.linalg.eigh(T)

                def residuals(idx, theta=theta, S=S, gram=None if invariant else gram, width=width):
                    if W is not None:
                        s = S[:, idx].to(device=device, dtype=dtype)
                        vals = theta[idx].to(device=device, dtype=dtype)
                        return norms64(W.combine(s) - Q.combine(s) * vals)
                    if gram is None:  # the basis spans the whole space: A Q = Q T
                        return torch.zeros(len(idx), dtype=torch.float64)
                    tail = S[-width:, idx]
                    return (tail * (gram @ tail)).sum(0).clamp_min(0).sqrt()

                done = select(theta, S, residuals)
                if done:
                    break
            if invariant:
                break
            # Invariant subspace (or a rank-deficient block): continue with fresh random directions.
            lost = gram.diagonal().sqrt() <= 1e-10 * max(1.0, float(T.abs().max()))
            if bool(lost.any()):
                fresh = torch.randn(dim, int(lost.sum()), generator=generator, dtype=torch.float64)
                w[:, lost] = fresh.to(dtype=dtype, device=device)
                q, _ = _orthonormalise(w, Q)
            del w  # not alive during the next product
    return _Krylov(Q, W, T, done, restarts)


def _grow_symmetric(M: Tensor, new_cols: Tensor) -> Tensor:
    """Append columns (and the mirrored rows) to a symmetric matrix."""
    n_old, n_new = M.shape[0], new_cols.shape[1]
    out = torch.empty(n_old + n_new, n_old + n_new, dtype=M.dtype)
    out[:n_old, :n_old] = M
    out[:, n_old:] = new_cols
    out[n_old:, :n_old] = new_cols[:n_old].T
    out[n_old:, n_old:] = (new_cols[n_old:] + new_cols[n_old:].T) / 2
    return out


def ritz_order(theta: Tensor, which: str) -> Tensor:
    """Indices of `theta` from the requested end inwards (descending, ascending, or by magnitude)."""
    if which == "largest":
        return torch.argsort(theta, descending=True)
    if which == "smallest":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


def default_max_basis(dim: int, k: int, block_size: int, budget: int, dtype: torch.dtype) -> int:
    """`top_eigenvalues`' default basis size: the whole budget when Q and W of `budget` columns take at most
    `ONE_BUFFER_BYTES` (1 GiB) in `dtype`, else max(20, 3k + 2·block_size) (never more than the budget)."""
    if _fits_one_buffer(dim, budget, dtype, copies=2):
        return budget
    return min(budget, max(20, 3 * k + 2 * block_size))


def _keeps_products(dim: int, capacity: int, budget: int, dtype: torch.dtype) -> bool:
    """Whether `top_eigenvalues` stores W = A Q beside Q: only for the plain method (the basis holds the whole
    budget, no restart) with Q and W in ONE_BUFFER_BYTES. A restarted basis exists to bound memory, so it stores
    Q alone and pays k products at the end for the explicit residuals."""
    return capacity >= budget and _fits_one_buffer(dim, capacity, dtype, copies=2)


def top_eigenvalues(
    op: LinearOperator | Tensor,
    k: int = 1,
    *,
    which: str = "largest",
    tol: float = 1e-6,
    block_size: int = 1,
    bound: str = "gap",
    max_matvecs: int | None = None,
    max_basis: int | None = None,
    start: Tensor | None = None,
    seed: int | torch.Generator | None = 0,
    basis_device: torch.device | str | None = None,
    progress: bool | None = None,
) -> EigenResult:
    r"""The k extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation and thick
    restarts.

    Builds the Krylov space of a random start block and after each step solves the Rayleigh–Ritz problem
    T = QᵀAQ = S Θ Sᵀ. A Ritz pair (θ, y = Qs) is accepted when its eigenvalue error bound

    .. math::  \min\left(r, \; r^2 / \mathrm{gap}\right) \le \mathrm{tol} \cdot |\theta|, \qquad r = ‖A y − θ y‖

    holds (Parlett 1998, Thm. 11.7.1; the gap is measured to the nearest other Ritz value; after a restart the
    basis holds fewer Ritz values, so this estimate can exceed the true gap, while r itself always bounds the
    error). The r²/gap bound is only as good as the gap estimate: at the edge of a dense bulk (λmin of a
    trained network, a cluster of near-zero eigenvalues) the true gap to the next eigenvalue is far smaller
    than the gap to the next Ritz value, and the estimate accepts pairs whose eigenvalue is known only to
    within r ≫ tol·|θ|; it also accepts at the float rounding floor of the products, 100·eps·max|θ|, which
    for λmin ≈ 0 beside λmax ≫ 0 is larger than λmin itself. ``bound="residual"`` accepts on r ≤ tol·|θ|
    alone, with no floor (a value that rounding hides stays unconverged), which is always valid: some
    eigenvalue lies in [θ − r, θ + r] (and for the extreme pair, the extreme eigenvalue lies beyond θ, since θ
    is a Rayleigh quotient). Use it wherever the spectrum near the wanted end is dense.

    Two ways to get r. The plain method (the basis holds the whole budget, never restarts) keeps every product
    W = A Q when Q and W fit in 1 GiB (`ONE_BUFFER_BYTES`), and r = ‖W s − θ Q s‖ is explicit at every step,
    with no extra product (honest in float32, where the products carry rounding noise). Otherwise only Q is
    stored: the loop stops on the Lanczos-relation residual r = ‖R Eᵀ s‖ (A Q = Q T + R Eᵀ, R the last
    product orthogonalised against Q), and the k returned pairs then get explicit residuals from k more
    products (reserved from `max_matvecs`). If those explicit residuals fail the test (the relation assumes
    exact products; float32 or half-precision products have a rounding floor), the result says
    `converged=False`, with a warning.

    When the basis holds `max_basis` columns and the budget is not spent, it is compressed to the
    p = min(max_basis − block_size, max(k + block_size, max_basis // 2)) wanted Ritz pairs (thick restart, Wu &
    Simon 2000; the Krylov–Schur form of Stewart 2001): Q ← Q S_p, T ← Θ_p, and Lanczos continues from the next
    block, the last product orthogonalised against the whole old basis (hence orthogonal to the kept Ritz
    vectors, whose residuals lie in its span). T = QᵀAQ and the relation A Q = Q T + R Eᵀ stay exact
    statements about the current basis; a restart only slows convergence (each cycle keeps the best part of the
    space) compared with keeping every column.

    Memory, in D-vectors of `op.work_dtype` on `basis_device`: a restarted basis, `max_basis` (Q alone) plus k
    Ritz vectors at the end and O(block_size) for the next block; the plain method, 2·`max_basis` (Q and W,
    at most 1 GiB) plus 2k. Storage grows in chunks of max(block_size, 16) columns as the basis fills, except
    when the basis fits in 1 GiB: then it is one buffer, so the products with the basis are single matrix
    products. Columns are stored as rows, so on a CPU a column not yet written occupies no resident memory
    either way; on a GPU the buffer is reserved whole. The default `max_basis` is the whole budget when Q and W
    of `budget` columns fit in 1 GiB (the plain method), else max(20, 3k + 2·block_size). E.g. ResNet-18,
    D = 11.2M in float32, k = 5: 20 columns, 0.9 GB, 2.1 GB peak resident memory in all with 64 images
    (`benchmarks/bench_memory.py`); `max_basis=k + 2` needs 1.7 GB and about 40% more products.

    Half precision: for a float16/bfloat16 operator, the products run in its dtype, and everything else (basis,
    QR, eigh, residuals, the returned values and vectors) in `op.work_dtype` (float32), with the tolerance floor
    of float32. The residuals and the convergence test describe the products as computed; these differ from the
    exact Hessian of the rounded weights by the half-precision rounding (about 0.5% of ‖Av‖ in bfloat16), which
    bounds how closely the values can match it (in the tests, within 3e-3·λmax).

    A single start vector (block_size=1) sees one direction of each eigenspace, so an eigenvalue of exact
    multiplicity m > 1 is returned once; use `block_size >= m` to resolve multiplicities.

    Args:
        op: a `LinearOperator` (e.g. `HessianOperator`) or a dense symmetric matrix.
        k: number of eigenpairs, 1 <= k < D.
        which: "largest" (algebraic, descending), "smallest" (ascending) or "magnitude".
        tol: relative tolerance on the eigenvalue error.
        block_size: vectors multiplied per step (block Lanczos, Golub & Underwood 1977).
        bound: the convergence test, "gap" (min(r, r²/gap), the default) or "residual" (r alone, valid at the
            edge of a dense bulk; see above).
        max_matvecs: budget of products (default 30 k + 200; at most D when the basis never restarts; a
            restarted run keeps k of them for the final residuals).
        max_basis: most basis columns stored (>= k + block_size; default above); restarts keep memory there.
        start: the start block, `(D, block_size)` (e.g. a previous eigenvector, for a warm start); default a
            seeded Gaussian block.
        seed: seed or generator for the random start block (and for fresh directions after a breakdown).
        basis_device: where Q and W live (default the operator's device; e.g. "cpu" to keep a large basis off
            an accelerator: each block moves to the operator's device for its product and back). The returned
            vectors live there too.
        progress: show a progress bar over products (None: the library default, `landscape.set_progress`).

    Returns:
        `EigenResult`; `converged=False` (with a warning) if the budget ran out first. `method` records
        block_size, max_basis and the number of restarts.

    Example:
        >>> A = torch.diag(torch.tensor([5.0, 3.0, 1.0, 0.5, 0.25], dtype=torch.float64))
        >>> res = top_eigenvalues(A, 2, tol=1e-10)
        >>> [round(v, 10) for v in res.values.tolist()]
        [5.0, 3.0]
        >>> bool(res.residuals.max() < 1e-8)
        True
    """
    op = as_operator(op)
    _check_k(k, op.dim)
    if which not in WHICH:
        raise ValueError(f"unknown which={which!r}; expected one of {WHICH}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound={bound!r}; expected one of {BOUNDS}")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    products = max_matvecs if max_matvecs is not None else 30 * k + 200
    if products < k:
        raise ValueError(f"max_matvecs={max_matvecs} is smaller than k={k}")
    dtype, device = op.work_dtype, _basis_device(op, basis_device)
    # Without restarts the Krylov space is full after D products; with them, the budget may exceed D.
    budget = min(op.dim, products)
    if max_basis is None:
        capacity = default_max_basis(op.dim, k, block_size, budget, dtype)
    elif not isinstance(max_basis, int) or isinstance(max_basis, bool) or max_basis < k + block_size:
        raise ValueError(
            f"max_basis={max_basis!r} must be an integer >= k + block_size = {k + block_size} (the kept Ritz "
            "vectors and one new block)"
        )
    else:
        capacity = min(max_basis, budget)
    if capacity < budget:
        budget = products
    gen = make_generator(seed)
    if start is None:
        start = torch.randn(op.dim, block_size, generator=gen, dtype=torch.float64).to(device, dtype)
    elif not isinstance(start, Tensor) or start.shape != (op.dim, block_size):
        shape = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
        raise ValueError(f"start must have shape ({op.dim}, {block_size}) = (D, block_size), got {shape}")
    else:
        start = start.detach().to(device, dtype)
    eps = torch.finfo(dtype).eps
    num_keep = min(capacity - block_size, max(k + block_size, capacity // 2))

    def accepted(theta, idx, resid) -> bool:
        scale = float(theta.abs().max())
        for i, r in zip(idx.tolist(), resid.tolist(), strict=True):
            others = torch.cat([theta[:i], theta[i + 1 :]])
            err = r
            if bound == "gap" and others.numel():  # the r²/gap bound needs a gap estimate: another Ritz value
                gap = float((others - theta[i]).abs().min())
                if gap > 0:
                    err = min(err, r * r / gap)
            # "gap" also accepts at the rounding floor of the products (relative to the largest Ritz value);
            # "residual" does not: a value below that floor (λmin ≈ 0 beside λmax ≫ 0) stays unconverged
            floor = 100 * eps * scale if bound == "gap" else 0.0
            if err > max(tol * abs(float(theta[i])), floor):
                return False
        return True

    def select(theta, S, residuals):
        if theta.numel() < k:
            return False
        idx = ritz_order(theta, which)[:k]
        return accepted(theta, idx, residuals(idx))

    keep_products = _keeps_products(op.dim, capacity, budget, dtype)
    if not keep_products:
        budget -= k  # reserved for the explicit residuals of the k returned pairs
        if budget < k:
            raise ValueError(
                f"max_matvecs={products} leaves {budget} products for a restarted Lanczos run after the k={k} "
                f"products of the final residuals; give at least {2 * k}"
            )
    before = op.num_matvecs
    run = _lanczos(
        op,
        start,
        budget=budget,
        capacity=capacity,
        chunk_cols=_chunk_cols(op.dim, capacity, block_size, dtype, copies=2 if keep_products else 1),
        select=select,
        keep=lambda theta: ritz_order(theta, which)[:num_keep],
        keep_products=keep_products,
        generator=gen,
        device=device,
        progress=progress,
    )
    theta, S = torch.linalg.eigh(run.T)
    idx = ritz_order(theta, which)[:k]
    values = theta[idx].to(dtype)
    if run.W is not None:
        s = S[:, idx].to(device=device, dtype=dtype)
        vectors = run.Q.combine(s)
        residuals = norms64(run.W.combine(s) - vectors * values.to(device))
    else:
        # The Ritz vectors in place of the basis (Q <- Q S_k: no second copy), then their explicit residuals
        # (k more products, a block at a time): the relation residuals that stopped the loop assume exact
        # products, these do not.
        run.Q.rotate(S[:, idx])
        vectors = run.Q.columns()
        run.Q = None
        residuals = torch.cat(
            [
                norms64(
                    (op @ vectors[:, j : j + block_size].to(op.device)).to(device)
                    - vectors[:, j : j + block_size] * values[j : j + block_size].to(device)
                )
                for j in range(0, k, block_size)
            ]
        )
        if vectors.untyped_storage().nbytes() > vectors.numel() * vectors.element_size():
            vectors = vectors.clone()  # not the spare rows of the basis' first chunk
    full_space = theta.numel() >= op.dim
    converged = bool(run.done or full_space)
    if converged and run.W is None and not accepted(theta, idx, residuals):
        converged = False
        warnings.warn(
            f"Lanczos met tol={tol} by its recurrence residuals, but the explicit residuals of the returned "
            f"pairs (largest {float(residuals.max()):.2e}) do not: the products' rounding sets a floor. "
            "Raise tol.",
            RuntimeWarning,
            stacklevel=2,
        )
    elif not converged:
        warnings.warn(
            f"Lanczos did not reach tol={tol} within {products} products; largest residual "
            f"{float(residuals.max()):.2e}. Raise max_matvecs or tol.",
            RuntimeWarning,
            stacklevel=2,
        )
    return EigenResult(
        values=values.cpu(),
        vectors=vectors,
        residuals=residuals.to(dtype).cpu(),
        num_matvecs=op.num_matvecs - before,
        converged=converged,
        method=f"lanczos(block_size={block_size}, bound={bound}, max_basis={capacity}, restarts={run.restarts})",
    )


def eigenvalue_ratio(
    op: LinearOperator | Tensor,
    *,
    tol: float = 1e-4,
    seed: int | torch.Generator | None = 0,
    progress: bool | None = None,
) -> dict[str, float]:
    """λmax, λmin and Li et al. (2018)'s convexity indicator |λmin / λmax| (two `top_eigenvalues` runs, with
    its default budget and memory).

    A ratio near 0 means the surface is locally convex along every direction up to the scale of λmax.
    """
    top = top_eigenvalues(op, 1, which="largest", tol=tol, seed=seed, progress=progress)
    bottom = top_eigenvalues(op, 1, which="smallest", tol=tol, seed=seed, progress=progress)
    lmax, lmin = float(top.values[0]), float(bottom.values[0])
    return {
        "lambda_max": lmax,
        "lambda_min": lmin,
        "ratio": abs(lmin / lmax) if lmax != 0 else math.inf,
        "num_matvecs": top.num_matvecs + bottom.num_matvecs,
    }


def power_iteration(
    op: LinearOperator | Tensor,
    k: int = 1,
    *,
    deflate: bool = True,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int | torch.Generator | None = 0,
    progress: bool | None = None,
) -> EigenResult:
    r"""Top-k eigenpairs (by magnitude) by power iteration, the method of PyHessian (Yao et al. 2020).

    Kept as a baseline. Each pair starts from a fresh random vector and iterates v ← Av/‖Av‖ until the Rayleigh
    quotient changes by less than `tol` relative (PyHessian's criterion and default). With `deflate=True` every
    iterate is orthogonalised against the pairs already found, so the i-th run converges to the i-th
    eigenvalue. With `deflate=False` nothing stops each run from converging to the same dominant eigenvector:
    the result is k copies of λmax — the artefact behind the founding write-up's "4.0550, 4.0550, 4.0550".

    Vectors and reductions are in `op.work_dtype` (float32 for a float16/bfloat16 operator); memory O(D·k).
    `progress` shows a bar over the k runs (None: the library default).

    Returns:
        `EigenResult` with residuals ‖Av − λv‖ from the last product of each run.
    """
    op = as_operator(op)
    _check_k(k, op.dim)
    if not isinstance(deflate, bool):
        raise TypeError(f"deflate must be True or False, got {deflate!r}")
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    gen = make_generator(seed)
    before = op.num_matvecs
    found: list[Tensor] = []
    values, residuals = [], []
    converged = True
    dtype = op.work_dtype
    for _ in progress_bar(progress, iterable=range(k), desc="power iteration", unit="pair"):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.device, dtype)
        basis = torch.stack(found, 1) if (deflate and found) else None
        lam = None
        for _ in range(max_iter):
            if basis is not None:
                v = v - basis @ (basis.T @ v)
            v = v / float(norms64(v[:, None])[0])
            w = op @ v
            if basis is not None:
                w = w - basis @ (basis.T @ w)
            new = float(dot64(v[None], w[:, None]))
            resid = float(norms64((w - new * v)[:, None])[0])
            stop = lam is not None and abs(new - lam) <= tol * abs(new)
            lam, vec, v = new, v, w
            if stop:
                break
        else:
            converged = False
        found.append(vec)
        values.append(lam)
        residuals.append(resid)
    return EigenResult(
        values=torch.tensor(values, dtype=dtype),
        vectors=torch.stack(found, 1),
        residuals=torch.tensor(residuals, dtype=dtype),
        num_matvecs=op.num_matvecs - before,
        converged=converged,
        method=f"power_iteration(deflate={deflate})",
    )
