r"""Linear stability of SGD at a minimum along one direction: the step size above which minibatch noise and
curvature make a perturbation grow (Wu, Ma & E 2018).

Linearised at a minimum θ*, SGD with step η and minibatches B moves a perturbation x by
:math:`x \mapsto (I - \eta H_B) x`, with :math:`H_B` the Hessian of the minibatch loss. For a unit direction v
with :math:`H v = a v` (an eigenvector of the full-batch Hessian H; a = λmax for the top one) the expected
squared length after one step from x = v is

.. math::  q(\eta, B) = \mathbb{E}\,\|(I - \eta H_B) v\|^2 = (1 - \eta a)^2 + \eta^2 c_B\, s_v^2, \qquad
           s_v^2 = \frac1n \sum_i \|H_i v\|^2 - a^2, \qquad c_B = \frac{n - B}{B (n - 1)},

with :math:`H_i` the Hessian of sample i's loss, :math:`s_v` the *non-uniformity* of the per-sample curvature
along v and :math:`c_B` the variance factor of a minibatch mean of B of the n training samples drawn without
replacement (0 for full-batch GD, B = n). The perturbation along v grows in mean square over one step when
q > 1, i.e. above the threshold step size

.. math::  \eta^*(B) = \frac{2 a}{a^2 + c_B s_v^2} \quad (\le 2/a, \text{ the GD limit}).

This is the one-direction form of Wu, Ma & E's criterion (their necessary conditions are a ≤ 2/η and
:math:`s \le \sqrt{B(n-1)/(n-B)}/\eta` with s from the largest eigenvalue of the per-sample curvature
covariance). What q > 1 proves: :math:`\lambda_{\max}(\mathbb{E}[(I - \eta H_B)^2]) > 1`, so the sufficient
condition for mean-square stability fails. It is the exact instability criterion when the per-sample Hessians
share their eigenvectors (commute; e.g. in one dimension); otherwise it is a prediction: non-commuting
:math:`H_i` can keep the minimum stable although q > 1 along v, and other directions can have lower
thresholds.

Reference:
    L. Wu, C. Ma, W. E (2018), How SGD selects the global minima in over-parameterized learning: a dynamical
    stability perspective (NeurIPS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .operators import (
    curvature_mode,
    functional_call_model,
    iterate_batches,
    map_tensors,
    move_batch,
    resolve_mode,
    select_parameters,
)

__all__ = ["LinearStability", "linear_stability"]


@dataclass(frozen=True)
class LinearStability:
    """The curvature of a minimum along one unit direction v and its spread over the samples.

    Attributes:
        sharpness: a = vᵀHv, the curvature of the mean loss along v (λ when v is an eigenvector).
        nonuniformity: s_v = √(mean_i ‖H_i v‖² − ‖Hv‖²), the spread of the per-sample Hessian products
            (the mean over the n measured samples; ‖Hv‖² = a² for an eigenvector).
        eigen_residual: ‖Hv − a v‖ (0 for an exact eigenvector: the formulas assume one).
        num_samples: n, the samples measured.
    """

    sharpness: float
    nonuniformity: float
    eigen_residual: float
    num_samples: int

    def variance_factor(self, batch_size: int, num_train: int) -> float:
        """c_B = (n − B)/(B (n − 1)): the variance of a minibatch mean of B of `num_train` samples drawn
        without replacement, per unit of the per-sample variance."""
        if not isinstance(num_train, int) or num_train < 2:
            raise ValueError(f"num_train must be an integer ≥ 2, got {num_train!r}")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= num_train:
            raise ValueError(f"batch_size must be an integer in [1, {num_train}], got {batch_size!r}")
        return (num_train - batch_size) / (batch_size * (num_train - 1))

    def growth(self, lr: float, batch_size: int, num_train: int) -> float:
        """q(η, B) = (1 − ηa)² + η² c_B s_v²: the expected squared length of v after one linearised SGD step
        (above 1: the perturbation grows)."""
        c = self.variance_factor(batch_size, num_train)
        return (1 - lr * self.sharpness) ** 2 + lr**2 * c * self.nonuniformity**2

    def threshold(self, batch_size: int, num_train: int) -> float:
        """η*(B) = 2a/(a² + c_B s_v²), the step size above which q > 1 (inf when a ≤ 0: no growth by curvature).

        >>> LinearStability(4.0, 0.0, 0.0, 10).threshold(10, 10)  # full batch: the GD limit 2/a
        0.5
        """
        c = self.variance_factor(batch_size, num_train)
        if self.sharpness <= 0:
            return math.inf
        return 2 * self.sharpness / (self.sharpness**2 + c * self.nonuniformity**2)


def linear_stability(
    model: nn.Module,
    loss_fn,
    data,
    direction: Tensor,
    *,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    chunk_size: int = 64,
    mode: str | None = None,
) -> LinearStability:
    r"""The sharpness a = vᵀHv and non-uniformity s_v of the mean loss along the unit direction `direction`
    (flattened in the order of `params`, as `HessianOperator` orders them), for `LinearStability.threshold`.

    Per-sample products :math:`H_i v` by `torch.func.vmap` over samples of forward-over-reverse
    differentiation (`torch.func.jvp` of `torch.func.grad` of sample i's loss, ``loss_fn`` applied to that one
    sample), `chunk_size` samples at a time: memory chunk_size·D values; sums in float64. Exact for the samples
    given (no estimator, no error bar); the per-sample loss needs a model without batch coupling (eval-mode
    BatchNorm is fine).

    Args:
        model, loss_fn, data: as for `HessianOperator` (an ``(inputs, targets)`` pair, batches or a Dataset);
            `loss_fn(outputs, targets)` with mean reduction.
        direction: (D,) unit vector v (normalised here).
        params: the parameters (names or tensors; default all that require gradients).
        chunk_size: samples per vmapped pass.
        mode: "eval" or "train" as for `HessianOperator`.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    names, weights = select_parameters(model, params)
    dim = sum(p.numel() for p in weights)
    if not isinstance(direction, Tensor) or direction.shape != (dim,):
        shape = tuple(direction.shape) if isinstance(direction, Tensor) else type(direction).__name__
        raise ValueError(f"direction must have shape ({dim},) like the selected parameters, got {shape}")
    norm = float(direction.double().norm())
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("direction must be a non-zero finite vector")
    first = weights[0]
    v = (direction.double() / norm).to(device=first.device, dtype=first.dtype)
    pieces, start = {}, 0
    for name, p in zip(names, weights, strict=True):
        pieces[name] = v[start : start + p.numel()].reshape(p.shape)
        start += p.numel()
    theta = {name: p.detach() for name, p in zip(names, weights, strict=True)}

    def sample_loss(state, x, y):
        out = functional_call_model(model, state, map_tensors(x, _batch_of_one))
        return loss_fn(out, map_tensors(y, _batch_of_one))

    def sample_hvp(x, y):
        grad = torch.func.grad(sample_loss)
        return torch.func.jvp(lambda s: grad(s, x, y), (theta,), (pieces,))[1]

    per_sample = torch.func.vmap(sample_hvp)
    total = torch.zeros(dim, dtype=torch.float64, device=first.device)
    squares, n = 0.0, 0
    with curvature_mode(model, resolve_mode(model, mode)):
        for inputs, targets in iterate_batches(data):
            inputs, targets = move_batch(inputs, targets, first)
            for lo in range(0, targets.shape[0], chunk_size):
                rows = map_tensors(inputs, lambda t, lo=lo: t[lo : lo + chunk_size])
                products = per_sample(rows, targets[lo : lo + chunk_size])
                flat = torch.cat(
                    [products[name].reshape(products[name].shape[0], -1) for name in names], dim=1
                )
                flat = flat.double()
                total += flat.sum(0)
                squares += float(flat.square().sum())
                n += flat.shape[0]
    if n == 0:
        raise ValueError("data is empty: no samples to define the loss on")
    mean = total / n  # Hv
    sharpness = float(mean @ v.double())
    variance = max(squares / n - float(mean.square().sum()), 0.0)
    residual = float((mean - sharpness * v.double()).norm())
    return LinearStability(sharpness, math.sqrt(variance), residual, n)


def _batch_of_one(t: Tensor) -> Tensor:
    """One sample as a batch of one."""
    return t.unsqueeze(0)
