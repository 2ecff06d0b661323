"""Ruggedness of a 1-D slice: how much of its variation its local second-order model does not explain.

The seed write-up describes "rugged micro-ridges" by eye. Here that is a number: along a direction d, compare
the slice f(α) = L(θ + α d) with its second-order Taylor model at θ,

    q(α) = f(0) + g α + ½ c α²,   g = ∇L(θ)·d (a gradient),   c = dᵀ H d (a Hessian-vector product),

and report the total variation of the residual relative to the total variation of the slice,

    R = TV(f − q) / TV(f),   TV(h) = Σ_i |h(α_{i+1}) − h(α_i)|   (α sorted ascending).

Properties: R = 0 exactly (up to rounding) when the loss is quadratic along d, whatever its curvature, since
then f = q; R is invariant to adding a constant to the loss, multiplying it by a positive constant, and
rescaling d (with α rescaled inversely); adding oscillations A sin(ω α) of small amplitude to a smooth slice
increases TV(f − q) by about 2 A ω × (length of the α range) / π, so R grows with both the frequency and the
amplitude of the structure. A smooth slice that departs from its quadratic model only at large α (cubic,
quartic terms) contributes a residual of small variation; comparing R over shrinking radii separates the two.
R > 1 means the residual varies more than the slice itself (the quadratic model is useless at this scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .directions import as_direction
from .flatness import _Problem
from .operators import HessianOperator, LossFn
from .slices import slice_1d

__all__ = ["Ruggedness", "count_local_minima", "ruggedness", "total_variation"]


@dataclass(frozen=True)
class Ruggedness:
    """The ruggedness R = TV(f − q) / TV(f) of a slice and everything it was computed from.

    Attributes:
        value: R.
        alphas: the coordinates (float64, ascending).
        losses: the slice f(α) (float64).
        quadratic: the second-order model q(α) (float64).
        slope: g = ∇L(θ)·d.
        curvature: c = dᵀ H d.
        total_variation: TV(f).
        residual_variation: TV(f − q).
        residual_rms: root mean square of f − q over the grid.
        method: the slice's evaluation strategy.
    """

    value: float
    alphas: Tensor
    losses: Tensor
    quadratic: Tensor
    slope: float
    curvature: float
    total_variation: float
    residual_variation: float
    residual_rms: float
    method: str


def total_variation(values: Tensor) -> float:
    """Σ_i |values[i+1] − values[i]| of a 1-D sequence (float64)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    return float((values[1:] - values[:-1]).abs().sum())


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


def ruggedness(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    direction,
    alphas: Sequence[float] | Tensor,
    *,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    progress: bool | None = None,
) -> Ruggedness:
    """The ruggedness R = TV(f − q) / TV(f) of the slice f(α) = L(θ + α d) (see the module docstring).

    The slice is `slice_1d` on `alphas` (strictly increasing, at least 3 values; include 0 so that θ itself is
    on the grid); g comes from one full-data gradient and c from one product with `HessianOperator`, both at θ
    in eval mode. TV(f) = 0 gives R = 0 if the residual is flat too, else inf.

    Args:
        model, loss_fn, data: the network (not modified), a mean loss, and the data.
        direction: any form `slice_1d` accepts (dict, flat vector such as a Hessian eigenvector, a model).
        alphas: coordinates along the direction.
        params, method, chunk_size, progress: as in `slice_1d` (progress: a bar over the slice's points; None:
            the library default, `landscape.set_progress`).

    Non-finite values: as in `slice_1d` (NaN or inf in the model, the direction or the data raise ValueError;
    a non-finite loss on the grid makes R inf or NaN).
    """
    d = as_direction(model, direction, params)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).detach().cpu()
    if alphas.ndim != 1 or alphas.numel() < 3:
        raise ValueError(
            f"alphas must be a 1-D sequence of at least 3 values, got shape {tuple(alphas.shape)}"
        )
    if not bool((alphas[1:] > alphas[:-1]).all()):
        raise ValueError("alphas must be strictly increasing")
    curve = slice_1d(model, loss_fn, data, d, alphas, method=method, chunk_size=chunk_size, progress=progress)

    names = list(d)
    problem = _Problem(model, loss_fn, data, names)
    loss0, grad = problem.loss_and_gradient({n: torch.zeros_like(t) for n, t in problem.theta.items()})
    slope = sum(float((grad[n].double() * d[n].double()).sum()) for n in names)
    op = HessianOperator(model, loss_fn, problem.evaluator.data, params=names, cache_graph=False)
    flat = torch.cat([d[n].reshape(-1) for n in names])
    curvature = float(flat.double() @ (op @ flat).double())

    quadratic = loss0 + slope * alphas + 0.5 * curvature * alphas**2
    residual = curve.losses - quadratic
    tv, rv = total_variation(curve.losses), total_variation(residual)
    value = rv / tv if tv > 0 else (0.0 if rv == 0 else math.inf)
    return Ruggedness(
        value=value,
        alphas=alphas,
        losses=curve.losses,
        quadratic=quadratic,
        slope=slope,
        curvature=curvature,
        total_variation=tv,
        residual_variation=rv,
        residual_rms=float(residual.pow(2).mean().sqrt()),
        method=curve.method,
    )
