"""One call that measures the curvature profile of a trained network, and the spectral-gap statistics used to
read it.

`measure_curvature` runs the probes of the paper on one model, each with the budget it is given, and returns a
flat `CurvatureProfile` (plain floats and lists, JSON-serialisable) so that a notebook can cache it, tabulate it
and average it over seeds:

=============================  ================================================================================
field                          definition
=============================  ================================================================================
top_eigenvalues, residuals     the k largest eigenvalues of H by block Lanczos (block size 2), with ‖Hv − λv‖
lambda_min, lambda_min_resid   the smallest eigenvalue of H (Lanczos from the other end, with its own budget: it
                               sits at the edge of a dense bulk near 0, where the r²/gap bound is not valid, so
                               it is accepted on its residual alone, ``bound="residual"``; it is often known
                               only to within that residual, and ``lambda_min_converged`` says whether
                               r ≤ tol·|λmin|)
convexity_ratio                |λmin / λmax| (Li et al. 2018) of the Ritz values; ``convexity_interval`` is the
                               interval that the residuals allow (`convexity_interval`)
trace, trace_stderr            tr(H) by Hutchinson's estimator; ``trace_per_param`` = tr(H) / D
effective_rank                 exp of the entropy of p_i = |λ_i| / Σ|λ_j|, computed from the SLQ density
negative_mass, _stderr         the fraction of eigenvalues below 0 from the SLQ density, with its standard error
                               over probes (`density.negative_mass`)
num_outliers                   `outlier_count` of the top eigenvalues (Papyan 2019: C outliers for C classes)
top_gap_certified              λ1 − λ2 > r1 + r2 from block Lanczos with block size 2: two distinct
                               eigenvalues exist, and λ1 is simple (a random 2-block sees an eigenspace of
                               dimension ≥ 2 twice, so a repeated λ1 would give θ1 ≈ θ2); with block size 1 the
                               same test proves only that two distinct eigenvalues exist
normalized_sharpness           λmax(diag|θ| H diag|θ|) (`sharpness.normalized_sharpness`)
adaptive_sharpness             max over ‖δ / |θ|‖∞ ≤ ρ of L(θ + δ) − L(θ) (`flatness.worst_case_sharpness`)
=============================  ================================================================================
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .density import effective_rank as _effective_rank
from .density import negative_mass, spectral_density
from .eigen import top_eigenvalues
from .flatness import worst_case_sharpness
from .operators import HessianOperator, LossFn
from .sharpness import normalized_sharpness
from .trace import hessian_trace

__all__ = [
    "CurvatureProfile",
    "convexity_interval",
    "measure_curvature",
    "outlier_count",
    "top_gap_certified",
]


def outlier_count(eigenvalues: Sequence[float] | Tensor, *, min_ratio: float = 2.0) -> int:
    r"""Number of outlier eigenvalues: the position of the largest multiplicative gap among the top eigenvalues.

    With the top eigenvalues sorted as :math:`\lambda_1 \ge \dots \ge \lambda_k > 0`, the count is
    :math:`n = \arg\max_{i<k} \lambda_i / \lambda_{i+1}` when that largest ratio is at least `min_ratio`, and 0
    otherwise (no clear separation between outliers and bulk within the k values). Eigenvalues after the first
    non-positive one are ignored (a ratio across zero is not a gap). Papyan (2019, 2020) finds C outliers for a
    C-class problem; this counts how many the measured spectrum shows. The answer can only be trusted below k−1:
    a count of k−1 means the bulk was not reached.

    >>> outlier_count([9.0, 8.0, 7.5, 1.0, 0.9, 0.8])
    3
    >>> outlier_count([1.0, 0.9, 0.8, 0.7])
    0
    """
    values = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if values.numel() < 2:
        raise ValueError(f"outlier_count needs at least 2 eigenvalues, got {values.numel()}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"eigenvalues must be finite, got {values.tolist()}")
    if bool((values[1:] > values[:-1] + 1e-12 * values.abs().max()).any()):
        raise ValueError("eigenvalues must be sorted in descending order")
    if not min_ratio > 1:
        raise ValueError(f"min_ratio must be > 1, got {min_ratio}")
    positive = int((values > 0).sum())
    if positive < 2:
        return 0
    ratios = values[: positive - 1] / values[1:positive]
    best = int(torch.argmax(ratios))
    return best + 1 if float(ratios[best]) >= min_ratio else 0


def top_gap_certified(values: Sequence[float] | Tensor, residuals: Sequence[float] | Tensor) -> bool:
    """Whether the two largest Ritz values are provably distinct eigenvalues: λ1 − λ2 > r1 + r2.

    Each Ritz value θ_i with residual r_i = ‖Hv_i − θ_i v_i‖ has an exact eigenvalue within r_i of it, so if the
    intervals [θ_i − r_i, θ_i + r_i] of the top two do not overlap, the top eigenvalue is not repeated.
    """
    values = torch.as_tensor(values, dtype=torch.float64)
    residuals = torch.as_tensor(residuals, dtype=torch.float64)
    if values.numel() < 2 or residuals.numel() != values.numel():
        raise ValueError("need at least two eigenvalues and one residual per eigenvalue")
    return bool(values[0] - values[1] > residuals[0] + residuals[1])


def convexity_interval(
    lambda_max: float, residual_max: float, lambda_min: float, residual_min: float
) -> tuple[float, float]:
    """The interval of |λmin| / λmax that Ritz values and their residuals allow (for λmin < 0 < λmax).

    θmax, a Rayleigh quotient, lies below λmax, and an eigenvalue lies within r of it, so λmax ∈ [θmax,
    θmax + rmax]; likewise λmin ∈ [θmin − rmin, θmin]. Both assume that Lanczos did not miss an eigenvalue
    beyond the one it found (a random start sees every eigenvector with probability 1). The ratio |λmin|/λmax
    then lies in [max(0, −θmin) / (θmax + rmax), max(0, −(θmin − rmin)) / θmax]; the lower end is 0 when
    θmin ≥ 0 (the residual does not show that a negative eigenvalue exists).

    >>> convexity_interval(10.0, 0.0, -1.0, 0.0)
    (0.1, 0.1)
    >>> convexity_interval(10.0, 0.5, -0.01, 0.2)  # λmin known only to within 0.2
    (0.0009523809523809524, 0.021)
    """
    values = (lambda_max, residual_max, lambda_min, residual_min)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"need finite values and residuals, got {values}")
    if not lambda_max > 0 or residual_max < 0 or residual_min < 0:
        raise ValueError(
            f"need λmax > 0 and residuals >= 0, got λmax={lambda_max}, residuals {residual_max}, {residual_min}"
        )
    low = max(0.0, -lambda_min) / (lambda_max + residual_max)
    high = max(0.0, -(lambda_min - residual_min)) / lambda_max
    return low, high


@dataclass(frozen=True)
class CurvatureProfile:
    """The curvature probes of one model (see the module docstring for each definition)."""

    num_params: int
    num_samples: int
    loss: float
    top_eigenvalues: list[float]
    residuals: list[float]
    lambda_max: float
    lambda_min: float
    lambda_min_residual: float
    lambda_min_converged: bool
    convexity_ratio: float
    convexity_interval: list[float]
    trace: float
    trace_stderr: float
    trace_per_param: float
    effective_rank: float
    negative_mass: float
    negative_mass_stderr: float
    num_outliers: int
    top_gap_certified: bool
    top_converged: bool
    normalized_sharpness: float
    adaptive_sharpness: float
    adaptive_radius: float
    density_nodes: list[list[float]]
    density_weights: list[list[float]]
    num_matvecs: int

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return asdict(self)


def measure_curvature(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    *,
    k: int = 20,
    tol: float = 1e-3,
    lambda_min_matvecs: int = 60,
    trace_matvecs: int = 40,
    slq_probes: int = 2,
    slq_steps: int = 40,
    adaptive_radius: float = 0.01,
    adaptive_steps: int = 10,
    seed: int = 0,
) -> CurvatureProfile:
    r"""Measure the curvature profile of `model` on `data` (see the module docstring for the definitions).

    Args:
        model, loss_fn, data: as for `HessianOperator` (the Hessian of the mean loss over `data`).
        k: number of top eigenvalues (outliers are counted among them), by block Lanczos with block size 2.
        tol: relative tolerance of the Lanczos runs (λmin and normalised sharpness use it too).
        lambda_min_matvecs: product budget of the λmin run (it stops there, converged or not, and reports its
            residual).
        trace_matvecs: Hutchinson probes for tr(H).
        slq_probes, slq_steps: SLQ budget for the density and the effective rank.
        adaptive_radius: ρ of the adaptive ℓ∞ sharpness (each weight moves by at most ρ|θ_i|).
        adaptive_steps: projected-ascent steps of the adaptive sharpness.
        seed: one seed for every random start and probe.
    """
    op = HessianOperator(model, loss_fn, data)
    top = top_eigenvalues(op, k, tol=tol, block_size=2, seed=seed)
    with warnings.catch_warnings():  # a λmin that stops at its budget is reported with its residual instead
        warnings.filterwarnings("ignore", "Lanczos did not reach", RuntimeWarning)
        bottom = top_eigenvalues(
            op, 1, which="smallest", tol=tol, bound="residual", max_matvecs=lambda_min_matvecs, seed=seed
        )
    trace = hessian_trace(op, trace_matvecs, method="hutchinson", seed=seed)
    density = spectral_density(op, num_probes=slq_probes, num_steps=slq_steps, seed=seed)
    scaled = normalized_sharpness(model, loss_fn, data, tol=tol, trace_matvecs=0, seed=seed)
    adaptive = worst_case_sharpness(
        model, loss_fn, data, adaptive_radius, p=float("inf"), adaptive=True, steps=adaptive_steps, seed=seed
    )
    values, residuals = top.values.double().cpu(), top.residuals.double().cpu()
    lam_max, lam_min = float(values[0]), float(bottom.values[0])
    mass = negative_mass(density)
    return CurvatureProfile(
        num_params=op.dim,
        num_samples=op.num_samples,
        loss=adaptive.loss,
        top_eigenvalues=values.tolist(),
        residuals=residuals.tolist(),
        lambda_max=lam_max,
        lambda_min=lam_min,
        lambda_min_residual=float(bottom.residuals[0]),
        lambda_min_converged=bottom.converged,
        convexity_ratio=abs(lam_min / lam_max),
        convexity_interval=list(
            convexity_interval(lam_max, float(residuals[0]), lam_min, float(bottom.residuals[0]))
        )
        if lam_max > 0
        else [math.nan, math.nan],
        trace=trace.estimate,
        trace_stderr=trace.stderr,
        trace_per_param=trace.estimate / op.dim,
        effective_rank=_effective_rank(density),
        negative_mass=mass.estimate,
        negative_mass_stderr=mass.stderr,
        num_outliers=outlier_count(values),
        top_gap_certified=top_gap_certified(values, residuals),
        top_converged=top.converged,
        normalized_sharpness=scaled.lambda_max,
        adaptive_sharpness=adaptive.value,
        adaptive_radius=adaptive_radius,
        density_nodes=density.nodes.double().cpu().tolist(),
        density_weights=density.weights.double().cpu().tolist(),
        num_matvecs=op.num_matvecs + scaled.num_matvecs,
    )
