"""Scale-normalised curvature, invariant under the rescalings that leave a network's function unchanged.

References:
    L. Dinh, R. Pascanu, S. Bengio, Y. Bengio (2017), sharp minima can generalize for deep nets;
    M. Kwon, J. Kim, J. Park, I. K. Choi (2021), ASAM: adaptive sharpness-aware minimization.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .eigen import top_eigenvalues
from .operators import HessianOperator, LossFn, ScaledOperator
from .trace import hessian_trace

__all__ = ["NormalizedSharpness", "normalized_sharpness"]


@dataclass(frozen=True)
class NormalizedSharpness:
    """λmax of diag(|θ|) H diag(|θ|) with its Lanczos residual, and the normalised trace Σ θᵢ² Hᵢᵢ ± stderr."""

    lambda_max: float
    residual: float
    trace: float
    trace_stderr: float
    num_matvecs: int


def normalized_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    *,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    tol: float = 1e-6,
    trace_matvecs: int = 60,
    seed: int | torch.Generator | None = 0,
    max_basis: int | None = None,
    progress: bool | None = None,
    **operator_options,
) -> NormalizedSharpness:
    r"""Scale-normalised sharpness of the mean loss at the model's parameters θ.

    .. math::  \lambda_{\max}\!\left(\mathrm{diag}(|\theta|)\, H \,\mathrm{diag}(|\theta|)\right), \qquad
               \mathrm{tr}\left(\mathrm{diag}(|\theta|)\, H \,\mathrm{diag}(|\theta|)\right) = \sum_i \theta_i^2 H_{ii}.

    A positive element-wise rescaling θ' = c ⊙ θ that leaves the network's function unchanged (Dinh et al.
    2017: a ReLU layer scaled by α and the next by 1/α) maps H to diag(c)^{-1} H diag(c)^{-1}, so both quantities
    are invariant, while λmax(H) and tr(H) are not. This is the second-order form of adaptive sharpness
    (Kwon et al. 2021) with the |θ| normalisation.

    Memory: the `HessianOperator` (its gradient graphs, one per batch) and the scale |θ| (one D-vector); then,
    one after the other, Lanczos' basis (D·max_basis values in the operator's work dtype when it restarts,
    twice that for the plain method, see `top_eigenvalues`) and XTrace's sketch (⌊trace_matvecs/2⌋ + 32
    D-vectors, see `hessian_trace`). Nothing else of size D is kept. On ResNet-18 in float32 (D = 11.2M) with
    the defaults: 0.9 GB for Lanczos (max_basis 20), 2.8 GB for the trace.

    Args:
        model, loss_fn, data: as for `HessianOperator`.
        params: restrict to these parameters (names or tensors).
        tol: relative tolerance of the Lanczos run for λmax.
        trace_matvecs: product budget of the (XTrace) normalised-trace estimate; 0 skips it.
        seed: seed for Lanczos and trace probes.
        max_basis: most Lanczos basis columns kept (default: `top_eigenvalues`'s, by the memory it needs).
        progress: progress bars over batches, Lanczos and trace products (None: the library default,
            `landscape.set_progress`).
        operator_options: further `HessianOperator` arguments (`mode`, `unpack`, `reduction`, `cache_graph`, ...).
    """
    op = HessianOperator(model, loss_fn, data, params=params, progress=progress, **operator_options)
    scaled = ScaledOperator(op, op.parameters_vector().abs())
    top = top_eigenvalues(scaled, 1, tol=tol, seed=seed, max_basis=max_basis, progress=progress)
    if trace_matvecs > 0:
        tr = hessian_trace(scaled, trace_matvecs, method="xtrace", seed=seed, progress=progress)
        trace, stderr = tr.estimate, tr.stderr
    else:
        trace, stderr = float("nan"), float("nan")
    return NormalizedSharpness(
        lambda_max=float(top.values[0]),
        residual=float(top.residuals[0]),
        trace=trace,
        trace_stderr=stderr,
        num_matvecs=scaled.num_matvecs,
    )
