"""Stochastic trace estimation from operator products: Hutchinson, Hutch++ and XTrace.

References:
    M. F. Hutchinson (1989), a stochastic estimator of the trace of the influence matrix;
    R. A. Meyer, C. Musco, C. Musco, D. P. Woodruff (2021), Hutch++: optimal stochastic trace estimation;
    E. N. Epperly, J. A. Tropp, R. J. Webber (2024), XTrace: making the most of every sample in stochastic
    trace estimation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from .operators import LinearOperator, as_operator, make_generator

__all__ = ["TRACE_METHODS", "TraceEstimate", "hessian_trace", "probe_vectors"]

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate with its standard error (one standard deviation of the estimator, estimated from the
    same samples), the products it used, the method and the seed."""

    estimate: float
    stderr: float
    num_matvecs: int
    method: str
    seed: int | None


def probe_vectors(
    dim: int, count: int, generator: torch.Generator, like: LinearOperator, distribution: str = "rademacher"
) -> Tensor:
    """`count` random probe columns with E[z zᵀ] = I: Rademacher (±1) or standard Gaussian, drawn on the CPU."""
    if distribution == "rademacher":
        z = torch.randint(0, 2, (dim, count), generator=generator, dtype=torch.int8).double() * 2 - 1
    elif distribution == "gaussian":
        z = torch.randn(dim, count, generator=generator, dtype=torch.float64)
    else:
        raise ValueError(f"unknown distribution={distribution!r}; expected 'rademacher' or 'gaussian'")
    return z.to(device=like.device, dtype=like.dtype)


def _mean_and_stderr(samples: Tensor) -> tuple[float, float]:
    samples = samples.double()
    n = samples.numel()
    mean = float(samples.mean())
    stderr = float(samples.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.inf
    return mean, stderr


def _hutchinson(op, m, gen, dist):
    z = probe_vectors(op.dim, m, gen, op, dist)
    samples = (z * (op @ z)).sum(0)
    return _mean_and_stderr(samples)


def _hutchpp(op, m, gen, dist):
    if m < 3:
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {m}")
    s = m // 3
    sketch = probe_vectors(op.dim, s, gen, op, dist)
    Q, _ = torch.linalg.qr(op @ sketch)
    low_rank = float(torch.trace(Q.T @ (op @ Q)))
    g = probe_vectors(op.dim, m - 2 * s, gen, op, dist)
    g = g - Q @ (Q.T @ g)
    samples = (g * (op @ g)).sum(0)
    mean, stderr = _mean_and_stderr(samples)
    return low_rank + mean, stderr


def _xtrace(op, m, gen, dist):
    """XTrace (Epperly et al. 2024): the average over i of the leave-one-out estimators
    tr(Q_(i)ᵀ A Q_(i)) + ω_iᵀ (I − P_i) A (I − P_i) ω_i, where Q_(i) spans A Ω without column i.

    With P = QQᵀ and s_i = R^{-T} e_i / ‖R^{-T} e_i‖, the projector onto range(Q_(i)) is Q (I − s_i s_iᵀ) Qᵀ,
    so every term reduces to small matrices: H = QᵀAQ, W = QᵀΩ, X = (AQ)ᵀ Ω and R.
    """
    if m < 4:
        raise ValueError(f"xtrace needs num_matvecs >= 4, got {m}")
    s = m // 2
    omega = probe_vectors(op.dim, s, gen, op, dist)
    Q, R = torch.linalg.qr(op @ omega)
    Z = op @ Q
    H = (Q.T @ Z).double()
    H = (H + H.T) / 2
    W = (Q.T @ omega).double()
    X = (Z.T @ omega).double()
    R = R.double()
    if float(torch.linalg.svdvals(R).min()) <= 1e-12 * float(torch.linalg.svdvals(R).max()):
        raise ValueError(
            "xtrace: the sketch A Ω is rank-deficient (an operator of low rank); use method='hutch++', or "
            "method='exact' (D products)"
        )
    S = torch.linalg.solve_triangular(
        R.T, torch.eye(s, dtype=torch.float64), upper=False
    )  # columns R^{-T} e_i
    S = S / S.norm(dim=0, keepdim=True)
    c = (S * W).sum(0)  # s_iᵀ w_i
    HS, HW = H @ S, H @ W
    sHs = (S * HS).sum(0)
    wHw = (W * HW).sum(0)
    sHw = (S * HW).sum(0)
    xw = (X * W).sum(0)
    xs = (X * S).sum(0)
    sr = (S * R).sum(0)  # s_iᵀ r_i with r_i = R e_i
    residual_terms = wHw - xw + c * (xs + sr) - 2 * c * sHw + c**2 * sHs
    samples = torch.trace(H) - sHs + residual_terms
    return _mean_and_stderr(samples)


def _exact(op, m, gen, dist):
    """Σ_i e_iᵀ A e_i from the D unit vectors, in blocks of at most 64 columns (memory O(D·64))."""
    total, block = 0.0, 64
    for start in range(0, op.dim, block):
        stop = min(op.dim, start + block)
        eye = torch.zeros(op.dim, stop - start, dtype=op.dtype, device=op.device)
        eye[torch.arange(start, stop), torch.arange(stop - start)] = 1
        total += float((op @ eye)[start:stop].diagonal().double().sum())
    return total, 0.0


_ESTIMATORS = {"hutchinson": _hutchinson, "hutch++": _hutchpp, "xtrace": _xtrace, "exact": _exact}


def hessian_trace(
    op: LinearOperator | Tensor,
    num_matvecs: int = 100,
    *,
    method: str = "xtrace",
    seed: int | torch.Generator | None = 0,
    distribution: str = "rademacher",
) -> TraceEstimate:
    r"""Estimate tr(A) from at most `num_matvecs` products.

    - ``"hutchinson"`` (Hutchinson 1989): :math:`\frac1m \sum_i z_i^\top A z_i`, :math:`\mathbb E zz^\top = I`;
      stderr = sample std / √m. Error ~ ‖A‖_F / √m.
    - ``"hutch++"`` (Meyer et al. 2021): with Q an orthonormal basis of A S (m/3 probes S),
      :math:`\mathrm{tr}(Q^\top A Q) + \mathrm{Hutchinson}_{m/3}((I-QQ^\top)A(I-QQ^\top))`; the stderr is that of
      the Hutchinson part. Error ~ 1/m for matrices with decaying spectra, such as Hessians.
    - ``"xtrace"`` (Epperly et al. 2024, default): uses every probe both for the low-rank part and for the
      correction, by averaging m/2 leave-one-out Hutch++-type estimators; stderr = their std / √(m/2), the
      paper's error estimate. It is a heuristic: the leave-one-out terms share probes, so it runs small (the
      validation chapter measures how often ±2 stderr covers the truth). Use ``"hutch++"`` when a calibrated
      error bar matters more than the smallest error.
    - ``"exact"``: :math:`\sum_i e_i^\top A e_i` from the D unit vectors (D products, stderr 0). A budget of
      D products or more gives the exact trace with any method (no estimator beats it there, and the sketches
      of Hutch++/XTrace would be rank-deficient).

    Memory: O(D·m) for the stochastic methods (all m probes at once), O(D·64) for ``"exact"``.

    Args:
        op: a `LinearOperator` (e.g. `HessianOperator`) or a dense symmetric matrix.
        num_matvecs: product budget.
        method: one of ``"hutchinson"``, ``"hutch++"``, ``"xtrace"``, ``"exact"``.
        seed: seed or generator for the probes.
        distribution: ``"rademacher"`` (default) or ``"gaussian"`` probes.

    Returns:
        `TraceEstimate(estimate, stderr, num_matvecs, method, seed)`.

    Example:
        A matrix of rank 3 is captured exactly by the low-rank part of Hutch++ and XTrace:

        >>> U = torch.linalg.qr(torch.randn(50, 3, generator=torch.Generator().manual_seed(0),
        ...                                 dtype=torch.float64))[0]
        >>> A = U @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)) @ U.T
        >>> round(hessian_trace(A, 12, method="hutch++").estimate, 10)
        6.0
    """
    op = as_operator(op)
    if method not in _ESTIMATORS:
        raise ValueError(f"unknown method={method!r}; expected one of {(*TRACE_METHODS, 'exact')}")
    if not isinstance(num_matvecs, int) or isinstance(num_matvecs, bool) or num_matvecs < 1:
        raise ValueError(f"num_matvecs must be a positive integer, got {num_matvecs!r}")
    gen = make_generator(seed)
    before = op.num_matvecs
    used = "exact" if num_matvecs >= op.dim else method
    estimate, stderr = _ESTIMATORS[used](op, num_matvecs, gen, distribution)
    return TraceEstimate(
        estimate=estimate,
        stderr=stderr,
        num_matvecs=op.num_matvecs - before,
        method=used,
        seed=int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) else None,
    )
