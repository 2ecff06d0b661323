"""Stochastic trace estimation from operator products: Hutchinson, Hutch++ and XTrace.

References:
    M. F. Hutchinson (1989), a stochastic estimator of the trace of the influence matrix;
    R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff (2021), Hutch++: optimal stochastic trace estimation;
    E. N. Epperly, J. A. Tropp, R. J. Webber (2024), XTrace: making the most of every sample in stochastic
    trace estimation (SIAM J. Matrix Anal. Appl. 45(1)).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from .operators import LinearOperator, as_operator, make_generator, work_dtype
from .progress import progress_bar

__all__ = ["DISTRIBUTIONS", "TRACE_METHODS", "TraceEstimate", "hessian_trace", "probe_vectors"]

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")
DISTRIBUTIONS = ("rademacher", "gaussian", "sphere")
DEFAULT_CHUNK_SIZE = 16


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate with its standard error (one standard deviation of the estimator, estimated from the
    spread of `num_samples` samples: their std / √num_samples), the products it used, the method and the seed.

    `num_samples` is m for Hutchinson, m − 2⌊m/3⌋ for Hutch++ (its Hutchinson part), ⌊m/2⌋ for XTrace (its
    leave-one-out estimates, which share probes) and 0 for the exact trace; None when not recorded."""

    estimate: float
    stderr: float
    num_matvecs: int
    method: str
    seed: int | None
    num_samples: int | None = None


# Values drawn per call when filling a probe (a multiple of 16, so that slab draws reproduce one whole draw:
# torch's CPU randn fills groups of 16). Bounds the draw's temporary at 8 MB instead of a float64 D-vector.
_DRAW_SLAB = 2**20


def _draw_into(row: Tensor, generator: torch.Generator, distribution: str, scale: float = 1.0) -> float:
    """Fill `row` (D,) with one probe drawn in slabs of _DRAW_SLAB values (Rademacher as int8, Gaussian in
    float64, scaled by `scale` before the cast); return its squared norm (float64) before scaling."""
    norm2 = 0.0
    for start in range(0, row.shape[0], _DRAW_SLAB):
        part = row[start : start + _DRAW_SLAB]
        if distribution == "rademacher":
            part.copy_(torch.randint(0, 2, part.shape, generator=generator, dtype=torch.int8).mul_(2).sub_(1))
            norm2 += part.shape[0]
        else:
            z = torch.randn(part.shape, generator=generator, dtype=torch.float64)
            norm2 += float(z.dot(z))
            part.copy_(z.mul_(scale))
    return norm2


def _draw_rows(out: Tensor, generator: torch.Generator, distribution: str) -> Tensor:
    """Fill each row of `out` (count × D) with one probe and return their squared norms (float64, CPU).

    Row j is the j-th D-vector drawn from `generator` (on the CPU, Rademacher as int8, Gaussian in float64,
    then cast), one draw per row: the probes do not depend on how a caller splits them into blocks. A
    "sphere" probe is a Gaussian one drawn twice from the same generator state: once for its norm, once to
    scale it to radius √D in float64."""
    dim = out.shape[1]
    norms2 = torch.empty(out.shape[0], dtype=torch.float64)
    for j, row in enumerate(out):
        if distribution == "sphere":
            state = generator.get_state()
            norm2 = _draw_into(row, generator, "gaussian")
            generator.set_state(state)
            _draw_into(row, generator, "gaussian", scale=math.sqrt(dim / norm2))
            norms2[j] = dim
        else:
            norms2[j] = _draw_into(row, generator, distribution)
    return norms2


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution={distribution!r}; expected one of {DISTRIBUTIONS}")


def probe_vectors(
    dim: int, count: int, generator: torch.Generator, like: LinearOperator, distribution: str = "rademacher"
) -> Tensor:
    """`count` random probe columns `(dim, count)` with E[z zᵀ] = I, in `like`'s work dtype and device: Rademacher
    (±1), standard Gaussian, or uniform on the sphere of radius √dim ("sphere"). Column j is the j-th vector
    drawn from `generator` (on the CPU), so drawing 2 columns, or 1 and then 1, gives the same probes."""
    _check_distribution(distribution)
    rows = torch.empty(count, dim, dtype=work_dtype(like.dtype), device=like.device)
    _draw_rows(rows, generator, distribution)
    return rows.T


def _mean_and_stderr(samples: Tensor) -> tuple[float, float]:
    samples = samples.double()
    n = samples.numel()
    mean = float(samples.mean())
    stderr = float(samples.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.inf
    return mean, stderr


def _spans(total: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(total, start + size)) for start in range(0, total, size)]


def _product(op: LinearOperator, block: Tensor, bar) -> Tensor:
    out = op @ block
    bar.update(block.shape[1])
    return out


def _probe_buffer(op: LinearOperator, count: int, chunk: int) -> Tensor:
    """One (chunk × D) block, refilled for every chunk of probes (rows: a column block is its transpose)."""
    return torch.empty(min(chunk, count), op.dim, dtype=op.work_dtype, device=op.device)


def _hutchinson_samples(op, count, gen, dist, chunk, bar, basis=None) -> Tensor:
    """zᵀ A z for `count` probes drawn in chunks; with `basis` Q, the probes are first projected off range(Q)."""
    buf = _probe_buffer(op, count, chunk)
    samples = torch.empty(count, dtype=torch.float64)
    for start, stop in _spans(count, chunk):
        Z = buf[: stop - start]
        _draw_rows(Z, gen, dist)
        Z = Z.T
        if basis is not None:
            Z.sub_(basis @ (basis.T @ Z))  # in the buffer: it is refilled for the next chunk
        samples[start:stop] = _column_dots(Z, _product(op, Z, bar)).double().cpu()
    return samples


def _column_dots(X: Tensor, Y: Tensor) -> Tensor:
    """xⱼᵀyⱼ for each column pair of two (D, c) blocks, without the D × c temporary of (X * Y).sum(0)."""
    return torch.bmm(X.T.unsqueeze(1), Y.T.unsqueeze(2)).flatten()


def _hutchinson(op, m, gen, dist, chunk, bar):
    mean, stderr = _mean_and_stderr(_hutchinson_samples(op, m, gen, dist, chunk, bar))
    return mean, stderr, m


def _sketch_qr(op, buf, s, gen, dist, chunk, bar) -> tuple[Tensor, Tensor]:
    """Q, R of Y = A Ω for s probes Ω drawn in chunks into `buf`; Y is held as s rows and freed on return."""
    Yt = torch.empty(s, op.dim, dtype=op.work_dtype, device=op.device)
    for start, stop in _spans(s, chunk):
        block = buf[: stop - start]
        _draw_rows(block, gen, dist)
        Yt[start:stop] = _product(op, block.T, bar).T
    R = _cholesky_qr2_rows(Yt)
    if R is None:  # numerically rank-deficient (or cond > ~1e7): Householder QR, which needs a second copy
        return torch.linalg.qr(Yt.T)  # Yt.T is column-major, as LAPACK wants it; Q comes back column-major
    return Yt.T, R.to(op.work_dtype)


_SLAB_VALUES = 2**22  # float64 values of one temporary slab


def _cholesky_qr2_rows(Yt: Tensor) -> Tensor | None:
    """Orthonormalise the rows of `Yt` (s × D) in place by CholeskyQR2 and return R (float64, s × s) with
    Y = Q R for Y = Ytᵀ before and Q = Ytᵀ after; None (Yt untouched) when Y is too ill-conditioned.

    Each pass forms the Gram matrix G = YᵀY in float64 slab by slab, factors G = LLᵀ and overwrites the rows
    with L⁻¹ Yt, so the memory beyond Yt is one float64 slab (Householder QR would need a second s × D copy).
    The float64 Gram keeps the first pass accurate up to cond(Y) ≈ 1e7 whatever Yt's dtype; the second pass
    restores orthogonality to rounding (Yamamoto et al. 2015, "Roundoff error analysis of the CholeskyQR2
    algorithm"). Written by hand: torch has no in-place QR.
    """
    rows, dim = Yt.shape
    width = max(1, _SLAB_VALUES // max(rows, 1))
    spans = _spans(dim, width)
    R = torch.eye(rows, dtype=torch.float64)
    for attempt in range(2):
        G = torch.zeros(rows, rows, dtype=torch.float64, device=Yt.device)
        for a, b in spans:
            slab = Yt[:, a:b].double()
            G.addmm_(slab, slab.T)
        L, info = torch.linalg.cholesky_ex(G)
        diagonal = L.diagonal() if int(info) == 0 else None
        if diagonal is None or float(diagonal.min()) ** 2 <= 1e-14 * float(diagonal.max()) ** 2:
            if attempt == 0:
                return None
            raise RuntimeError("CholeskyQR2: the second pass lost positive definiteness")  # cannot happen
        for a, b in spans:
            Yt[:, a:b] = torch.linalg.solve_triangular(L, Yt[:, a:b].double(), upper=False).to(Yt.dtype)
        R = L.T.cpu() @ R
    return R


def _hutchpp(op, m, gen, dist, chunk, bar):
    if m < 3:
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {m}")
    s = m // 3
    Q, _ = _sketch_qr(op, _probe_buffer(op, s, chunk), s, gen, dist, chunk, bar)
    low_rank = 0.0
    for start, stop in _spans(s, chunk):
        block = Q[:, start:stop]
        low_rank += float((block * _product(op, block, bar)).sum())
    mean, stderr = _mean_and_stderr(_hutchinson_samples(op, m - 2 * s, gen, dist, chunk, bar, basis=Q))
    return low_rank + mean, stderr, m - 2 * s


def _xtrace(op, m, gen, dist, chunk, bar):
    """XTrace (Epperly et al. 2024, Algorithm 1.2, with the normalisation of their improved estimator for Gaussian
    and sphere probes), from H = QᵀAQ, W = QᵀΩ, R and the probes' norms: s × s matrices only.

    With Y = A Ω = Q R, the basis without column i spans Q·range(R without column i), so its projector is
    P_i = Q M_i Qᵀ with M_i = I − s_i s_iᵀ, s_i = R^{-T} e_i / ‖R^{-T} e_i‖. With v_i = M_i w_i and A symmetric
    (Qᵀ A ω_i = r_i), sample i is

        tr(M_i H) + ω_iᵀ (I − P_i) A (I − P_i) ω_i = tr(H) − s_iᵀ H s_i + w_iᵀ r_i − 2 v_iᵀ r_i + v_iᵀ H v_i.

    If R is numerically singular (A has numerical rank r < s), no single probe is needed for the range: every
    M_i is the projector U_r U_rᵀ onto R's r leading left singular vectors, and the samples are exact for a
    matrix of rank r.
    """
    if m < 4:
        raise ValueError(f"xtrace needs num_matvecs >= 4, got {m}")
    s = m // 2
    replay = torch.Generator(device=gen.device).set_state(gen.get_state())
    buf = _probe_buffer(op, s, chunk)
    Q, R = _sketch_qr(op, buf, s, gen, dist, chunk, bar)
    W = torch.empty(s, s, dtype=torch.float64)
    norms2 = torch.empty(s, dtype=torch.float64)
    for start, stop in _spans(s, chunk):  # the same probes again, from the generator's saved state
        block = buf[: stop - start]
        norms2[start:stop] = _draw_rows(block, replay, dist)
        W[:, start:stop] = (Q.T @ block.T).double().cpu()
    H = torch.empty(s, s, dtype=torch.float64)
    for start, stop in _spans(s, chunk):
        H[:, start:stop] = (Q.T @ _product(op, Q[:, start:stop], bar)).double().cpu()
    H = (H + H.T) / 2
    R = R.double().cpu()
    U, sv, _ = torch.linalg.svd(R)
    # Below eps^(3/4) of the largest (1.8e-12 in float64, 6e-6 in float32) a singular value is rounding noise.
    rank = int((sv > torch.finfo(op.work_dtype).eps ** 0.75 * sv[0]).sum())
    if rank == s:
        S = torch.linalg.solve_triangular(R.T, torch.eye(s, dtype=torch.float64), upper=False)
        S = S / S.norm(dim=0, keepdim=True)
        V = W - S * (S * W).sum(0)
        low_rank = torch.trace(H) - (S * (H @ S)).sum(0)
        kept = s - 1
    else:
        Ur = U[:, :rank]
        V = Ur @ (Ur.T @ W)
        low_rank = torch.trace(Ur.T @ H @ Ur).expand(s)
        kept = rank
    residual = (W * R).sum(0) - 2 * (V * R).sum(0) + (V * (H @ V)).sum(0)
    if dist != "rademacher":
        # Epperly et al.'s improved estimator: for rotation-invariant probes, (I − P_i) ω_i points uniformly on
        # the sphere of range(I − P_i) (dimension D − kept); replacing its squared norm by that dimension keeps
        # the estimator unbiased and removes the norm's fluctuation from the variance. (Rademacher probes are
        # not rotation-invariant; there the rescaling would bias the estimate.)
        residual = residual * (op.dim - kept) / (norms2 - (V * V).sum(0))
    mean, stderr = _mean_and_stderr(low_rank + residual)
    return mean, stderr, s


def _exact(op, m, gen, dist, chunk, bar):
    """Σ_i e_iᵀ A e_i from the D unit vectors, `chunk` at a time."""
    total = 0.0
    buf = _probe_buffer(op, op.dim, chunk)
    for start, stop in _spans(op.dim, chunk):
        block = buf[: stop - start].zero_()
        block[torch.arange(stop - start), torch.arange(start, stop)] = 1
        total += float(_product(op, block.T, bar)[start:stop].diagonal().double().sum())
    return total, 0.0, 0


_ESTIMATORS = {"hutchinson": _hutchinson, "hutch++": _hutchpp, "xtrace": _xtrace, "exact": _exact}


def _products(method: str, m: int, dim: int) -> int:
    return {"hutchinson": m, "hutch++": m, "xtrace": 2 * (m // 2), "exact": dim}[method]


def hessian_trace(
    op: LinearOperator | Tensor,
    num_matvecs: int = 100,
    *,
    method: str = "xtrace",
    seed: int | torch.Generator | None = 0,
    distribution: str = "rademacher",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool | None = None,
) -> TraceEstimate:
    r"""Estimate tr(A) from at most `num_matvecs` products.

    - ``"hutchinson"`` (Hutchinson 1989): :math:`\frac1m \sum_i z_i^\top A z_i`, :math:`\mathbb E zz^\top = I`;
      stderr = sample std / √m. Error ~ ‖A‖_F / √m.
    - ``"hutch++"`` (Meyer et al. 2021): with Q an orthonormal basis of A S (m/3 probes S),
      :math:`\mathrm{tr}(Q^\top A Q) + \mathrm{Hutchinson}_{m/3}((I-QQ^\top)A(I-QQ^\top))`; the stderr is that of
      the Hutchinson part. Error ~ 1/m for matrices with decaying spectra, such as Hessians.
    - ``"xtrace"`` (Epperly et al. 2024, default): uses every probe both for the low-rank part and for the
      correction, by averaging m/2 leave-one-out Hutch++-type estimators
      :math:`\mathrm{tr}(Q_{(i)}^\top A Q_{(i)}) + \omega_i^\top (I-P_i) A (I-P_i) \omega_i`, where
      :math:`Q_{(i)}` spans :math:`A\Omega` without column i; stderr = their std / √(m/2), the paper's error
      estimate. With Gaussian or sphere probes the correction is the paper's normalised one (their improved
      estimator): :math:`(I-P_i)\omega_i` rescaled to the squared norm D − m/2 + 1, the dimension it lives in
      (unbiased, smaller variance when m/2 is not small against D). Rademacher probes (default) cannot be
      normalised without bias, but their estimator drops the diagonal's share of the variance; on small network
      Hessians that was worth more (the MLP, CNN and attention net of tests/conftest.py, m = 12 and 24, 400
      seeds: RMS error 5–14 % lower with Rademacher on the MLP and attention net, 3 % higher on the CNN; equal
      within noise on the benchmark MLP P1). The error bar is a
      heuristic: the leave-one-out terms share probes, so it runs small (the validation chapter measures how
      often ±2 stderr covers the truth). Use ``"hutch++"`` when a calibrated error bar matters more than the
      smallest error. On a flat spectrum (no dominant low-rank part) both Hutch++ and XTrace spend products on
      a basis that captures little: Hutchinson is then the most accurate of the three.
    - ``"exact"``: :math:`\sum_i e_i^\top A e_i` from the D unit vectors (D products, stderr 0). A budget of
      D products or more gives the exact trace with any method (no estimator beats it there, and the sketches
      of Hutch++/XTrace would be rank-deficient).

    Probes: probe j is the j-th D-vector drawn from the seeded CPU generator, whatever `chunk_size` (the result
    does not depend on it, up to the rounding of block products). Products, probes and bases are in
    `op.work_dtype` (the operator's dtype promoted to at least float32: a float16/bfloat16 operator computes
    its products in its dtype and everything else in float32); the s × s matrices of Hutch++/XTrace and all
    sums are in float64.

    Memory, in D-vectors of `op.work_dtype`, with c = min(chunk_size, m), besides what the operator needs
    for one product of c columns (`LinearOperator.__matmul__`'s finiteness check of the block and, for a
    half-precision operator, the block cast to its dtype):

    - Hutchinson: 3c (a block of probes, its product, their elementwise product).
    - Hutch++, s = ⌊m/3⌋: s + 3c. The sketch A S is orthonormalised in place (CholeskyQR2 with a float64
      Gram matrix, one float64 slab of 2²² values beside it).
    - XTrace, s = ⌊m/2⌋: s + 2c, the sketch A Ω orthonormalised in place likewise (the probes are drawn again
      from the generator's saved state for QᵀΩ instead of being kept).
    - Either, when the sketch is numerically rank-deficient (condition number above ~1e7): 2s + c for a
      Householder QR instead.
    - exact: 3c.

    Args:
        op: a `LinearOperator` (e.g. `HessianOperator`) or a dense symmetric matrix.
        num_matvecs: product budget.
        method: one of ``"hutchinson"``, ``"hutch++"``, ``"xtrace"``, ``"exact"``.
        seed: seed or generator for the probes.
        distribution: ``"rademacher"`` (±1, default), ``"gaussian"`` or ``"sphere"`` (Gaussian scaled to norm
            √D) probes. For XTrace, Gaussian and sphere probes give the same (normalised) estimate: only their
            directions enter it.
        chunk_size: probes multiplied per product call (memory above).
        progress: a progress bar over products (None: the library default, `landscape.set_progress`).

    Returns:
        `TraceEstimate(estimate, stderr, num_matvecs, method, seed, num_samples)`.

    Example:
        A matrix of rank 3 is captured exactly by the low-rank part of Hutch++ and XTrace:

        >>> U = torch.linalg.qr(torch.randn(50, 3, generator=torch.Generator().manual_seed(0),
        ...                                 dtype=torch.float64))[0]
        >>> A = U @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)) @ U.T
        >>> round(hessian_trace(A, 12, method="hutch++").estimate, 10)
        6.0
        >>> round(hessian_trace(A, 12, method="xtrace").estimate, 10)
        6.0
    """
    op = as_operator(op)
    if method not in _ESTIMATORS:
        raise ValueError(f"unknown method={method!r}; expected one of {(*TRACE_METHODS, 'exact')}")
    if not isinstance(num_matvecs, int) or isinstance(num_matvecs, bool) or num_matvecs < 1:
        raise ValueError(f"num_matvecs must be a positive integer, got {num_matvecs!r}")
    if not isinstance(chunk_size, numbers.Integral) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    _check_distribution(distribution)
    gen = make_generator(seed)
    before = op.num_matvecs
    used = "exact" if num_matvecs >= op.dim else method
    with progress_bar(
        progress, total=_products(used, num_matvecs, op.dim), desc=f"trace ({used})", unit="product"
    ) as bar:
        estimate, stderr, samples = _ESTIMATORS[used](
            op, num_matvecs, gen, distribution, int(chunk_size), bar
        )
    return TraceEstimate(
        estimate=estimate,
        stderr=stderr,
        num_matvecs=op.num_matvecs - before,
        method=used,
        seed=int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) else None,
        num_samples=samples,
    )
