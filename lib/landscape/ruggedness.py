"""Roughness of a 1-D slice: the share of its variance that a smooth curve does not explain, on a window set by
its own curvature.

The seed write-up describes "rugged micro-ridges" by eye. A number for it must score every smooth bowl zero,
whatever its curvature, and must not grow with curvature, so that a sharp minimum is not called rough only for
being sharp. Along a direction d with curvature c = dᵀHd (one Hessian-vector product), the slice
f(α) = L(θ + α d) is sampled on the curvature-scaled window

    α ∈ [−a, a],   a = w / √|c|,

on which the second-order model ½ c α² rises by ½ w² at both ends whatever c is, and its roughness is

    ρ = Σ_i (f(α_i) − p(α_i))² / Σ_i (f(α_i) − f̄)²,

with p the least-squares polynomial of degree `degree` (default 4) in α / a (a Legendre fit, numpy) and f̄
the mean of the samples. Properties (tested on synthetic surfaces in `tests/test_ruggedness.py`):

- ρ = 0 up to rounding for any polynomial slice of degree ≤ `degree`, so for a quadratic bowl of any
  curvature, and for the smooth departures from it (a saturating cross-entropy along a sharp direction is close
  to a quartic on this window);
- ρ ∈ [0, 1], invariant to adding a constant to the loss, to multiplying it by a positive constant, and to
  rescaling d (the window rescales with it);
- for f = ½ c α² + A sin(ω α + φ) with ω a ≫ `degree` (many oscillations in the window), ρ ≈ (A²/2) /
  (w⁴/45 + A²/2), independent of c: the ripple's variance over the variance of the quadratic rise (w⁴/45 on a
  uniform grid) plus the ripple's.

The window's "w" sets the scale the roughness refers to: w = 1 is a rise of half a nat for cross-entropy.
A ripple much slower than the window is smooth at that scale (the polynomial absorbs it); one faster than the
grid spacing is aliased, so `points` must resolve the structure meant to be measured.

`count_local_minima` counts the basins a sampled slice shows, the other reading of "rugged".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .directions import as_direction
from .flatness import _Problem
from .operators import HessianOperator, LossFn
from .slices import slice_1d

__all__ = ["Roughness", "count_local_minima", "roughness", "slice_roughness"]


@dataclass(frozen=True)
class Roughness:
    """The roughness ρ of a slice on its curvature-scaled window, and what it was computed from.

    Attributes:
        value: ρ (see the module docstring).
        alphas: the coordinates (float64, ascending), α ∈ [−a, a].
        losses: the slice f(α) (float64).
        smooth: the degree-`degree` least-squares fit p(α) (float64).
        curvature: c = dᵀ H d.
        radius: a = window / √|c|.
        window: w.
        degree: the degree of the smooth fit.
        local_minima: `count_local_minima` of the slice.
        method: the slice's evaluation strategy.
    """

    value: float
    alphas: Tensor
    losses: Tensor
    smooth: Tensor
    curvature: float
    radius: float
    window: float
    degree: int
    local_minima: int
    method: str


def roughness(alphas: Sequence[float] | Tensor, losses: Sequence[float] | Tensor, *, degree: int = 4):
    """ρ = Σ(f − p)² / Σ(f − f̄)² of a sampled curve, with p its least-squares polynomial of degree `degree`.

    Returns ``(rho, smooth)``: the roughness and the fitted values (float64). A constant curve gives ρ = 0.

    >>> a = torch.linspace(-1, 1, 41, dtype=torch.float64)
    >>> rho, _ = roughness(a, 3.0 + 50.0 * a**2)  # a bowl: smooth at any curvature
    >>> rho < 1e-20
    True
    >>> rho, _ = roughness(a, a**2 + 0.1 * torch.sin(40 * a))
    >>> round(rho, 2)  # the ripple's variance 0.005 over the curve's 0.0889 + 0.005 (module docstring)
    0.05
    """
    x = torch.as_tensor(alphas, dtype=torch.float64).detach().cpu().flatten()
    f = torch.as_tensor(losses, dtype=torch.float64).detach().cpu().flatten()
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    if x.shape != f.shape or x.numel() < degree + 2:
        raise ValueError(
            f"need as many losses as alphas and at least degree + 2 = {degree + 2} points, got "
            f"{x.numel()} alphas and {f.numel()} losses"
        )
    if not bool((x[1:] > x[:-1]).all()):
        raise ValueError("alphas must be strictly increasing")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("losses must be finite (a slice that reaches a non-finite loss has no roughness)")
    centre, half = float(x[0] + x[-1]) / 2, float(x[-1] - x[0]) / 2
    u = ((x - centre) / half).numpy()
    # numpy's Legendre least-squares fit is well conditioned on [-1, 1], where a monomial fit is not
    coef = np.polynomial.legendre.legfit(u, f.numpy(), degree)
    smooth = torch.from_numpy(np.polynomial.legendre.legval(u, coef))
    spread = float(((f - f.mean()) ** 2).sum())
    residual = float(((f - smooth) ** 2).sum())
    if spread == 0.0:
        return 0.0, smooth
    return min(1.0, residual / spread), smooth


def count_local_minima(values: Tensor | Sequence[float], *, rel_tol: float = 1e-6) -> int:
    """Number of interior strict local minima of a sampled 1-D curve: points lower than both neighbours.

    A dip counts only if it is deeper than `rel_tol` × (max − min) of the curve on both sides, so rounding noise
    in a flat stretch is not counted. A convex or monotone slice has none; each extra basin along the slice adds
    one.

    >>> count_local_minima([3.0, 1.0, 2.0, 0.5, 4.0])
    2
    >>> count_local_minima([4.0, 1.0, 0.0, 1.0, 4.0])
    1
    """
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if values.numel() < 3:
        raise ValueError(f"need at least 3 values, got {values.numel()}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values must be finite")
    tol = rel_tol * float(values.max() - values.min())
    middle = values[1:-1]
    return int(((middle < values[:-2] - tol) & (middle < values[2:] - tol)).sum())


def slice_roughness(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    direction,
    *,
    window: float = 1.0,
    points: int = 41,
    degree: int = 4,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> Roughness:
    """The roughness ρ of the slice f(α) = L(θ + α d) on its curvature-scaled window (see the module docstring).

    c = dᵀHd comes from one product with `HessianOperator` at θ (eval mode); the slice is `slice_1d` on
    `points` equally spaced α ∈ [−a, a], a = `window` / √|c| (odd `points` put θ itself on the grid). Cost: one
    Hessian-vector product and `points` loss evaluations over `data`; memory: that of `slice_1d`.

    Args:
        model, loss_fn, data: the network (not modified), a mean loss, and the data.
        direction: any form `slice_1d` accepts (dict, flat vector such as a Hessian eigenvector, a model).
        window: w > 0, the window in units of the quadratic model: it rises by ½ w² at the ends.
        points: grid points (at least degree + 2).
        degree: degree of the smooth fit.
        params, method, chunk_size, progress: as in `slice_1d` (progress: a bar over the slice's points; None:
            the library default, `landscape.set_progress`).

    Raises:
        ValueError: for a non-positive window, too few points, or c = 0 (no curvature scale: pass a direction
            with curvature, or use `roughness` on a slice of your own grid); NaN or inf in the model, the
            direction or the data (as in `slice_1d`), or a non-finite loss on the grid.
    """
    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number, got {window!r}")
    if not isinstance(points, int) or isinstance(points, bool) or points < max(3, degree + 2):
        raise ValueError(
            f"points must be an integer >= max(3, degree + 2) = {max(3, degree + 2)}, got {points!r}"
        )
    d = as_direction(model, direction, params)
    names = list(d)
    problem = _Problem(model, loss_fn, data, names)
    op = HessianOperator(model, loss_fn, problem.evaluator.data, params=names, cache_graph=False)
    flat = torch.cat([d[n].reshape(-1) for n in names])
    curvature = float(flat.double() @ (op @ flat).double())
    if not (math.isfinite(curvature) and curvature != 0.0):
        raise ValueError(
            f"the direction's curvature dᵀHd = {curvature} sets no window; expected a non-zero number"
        )
    radius = window / math.sqrt(abs(curvature))
    alphas = torch.linspace(-radius, radius, points, dtype=torch.float64)
    curve = slice_1d(model, loss_fn, data, d, alphas, method=method, chunk_size=chunk_size, progress=progress)
    value, smooth = roughness(alphas, curve.losses, degree=degree)
    return Roughness(
        value=value,
        alphas=alphas,
        losses=curve.losses,
        smooth=smooth,
        curvature=curvature,
        radius=radius,
        window=float(window),
        degree=degree,
        local_minima=count_local_minima(curve.losses),
        method=curve.method,
    )
