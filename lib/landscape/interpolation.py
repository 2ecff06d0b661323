"""Linear-interpolation barriers between two networks (linear mode connectivity).

References:
    R. Entezari, H. Sedghi, O. Saukh, B. Neyshabur (2022), the role of permutation invariance in linear mode
    connectivity of neural networks (loss barrier); J. Frankle, G. K. Dziugaite, D. M. Roy, M. Carbin (2020),
    linear mode connectivity and the lottery ticket hypothesis (error barrier, "instability");
    K. Jordan, H. Sedghi, O. Saukh, R. Entezari, B. Neyshabur (2023), REPAIR (interpolated BatchNorm statistics
    are wrong; recompute them).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .directions import _check_same_parameters, check_finite
from .operators import LossFn, batch_size, call_model, iterate_batches, materialize, move_batch, unpacked
from .progress import progress_bar
from .slices import FlatAnchors, GridEvaluator, check_finite_data

__all__ = ["BN_STATS", "Barrier", "interpolation_barrier", "recompute_batchnorm_statistics"]

BN_STATS = ("none", "interpolated", "recomputed")


@dataclass(frozen=True)
class Barrier:
    """Loss and error along the segment θ(α) = (1 − α) θ_a + α θ_b, and the barriers they define.

    Attributes:
        height: loss barrier max_α [L(θ(α)) − ((1 − α) L(θ_a) + α L(θ_b))] over the grid (≥ 0: the grid
            contains both ends, where the bracket is exactly 0).
        argmax: the α where the loss barrier is attained.
        alphas: the grid, float64, from 0 to 1.
        losses: L(θ(α)) on the grid, float64.
        errors: classification error 1 − accuracy on the grid (classifiers), else None.
        instability: Frankle et al.'s error barrier max_α Err(θ(α)) − (Err(θ_a) + Err(θ_b)) / 2 (classifiers),
            else None.
        bn_stats: how BatchNorm statistics were set at each α: "none" (the model has no BatchNorm),
            "interpolated" (running statistics interpolated like the parameters) or "recomputed" (reset and
            re-estimated on `bn_data` at each α).
        method: the evaluation strategy ("vmap", "loop").
    """

    height: float
    argmax: float
    alphas: Tensor
    losses: Tensor
    errors: Tensor | None
    instability: float | None
    bn_stats: str
    method: str


def _batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def interpolation_barrier(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: LossFn,
    data,
    num_points: int = 25,
    *,
    bn_data=None,
    accuracy: bool | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> Barrier:
    r"""The loss barrier on the straight line between two networks (Entezari et al. 2022)

    .. math::  B = \max_{\alpha \in [0, 1]} \; L\big((1-\alpha)\theta_a + \alpha\theta_b\big)
               - \big((1-\alpha) L(\theta_a) + \alpha L(\theta_b)\big),

    with α on `num_points` evenly spaced values including 0 and 1, and, for classifiers, the error barrier of
    Frankle et al. (2020), :math:`\max_\alpha \mathrm{Err}(\theta(\alpha)) - \tfrac12(\mathrm{Err}(\theta_a)
    + \mathrm{Err}(\theta_b))` ("instability" when θ_a, θ_b are two runs from one starting point).

    Each point is computed element-wise as θ_a + αΔ for α ≤ 1/2 and θ_b − (1 − α)Δ above (Δ = θ_b − θ_a), so
    α = 0 and α = 1 are the two models exactly, and two equal models give exactly one point (barrier 0); the
    endpoint losses are those evaluated on the grid, so the bracket is exactly 0 there. Floating-point
    buffers are interpolated like the parameters and integer buffers are taken from `model_a`.

    BatchNorm: interpolated running statistics do not match the statistics of the interpolated network and show
    barriers that are not there (Jordan et al. 2023). Pass `bn_data` (training data: a pair or an iterable of
    `(inputs, targets)` pairs) to reset and re-estimate them at each α (a cumulative average over `bn_data` in
    train mode; only the BatchNorm layers are put in train mode). The result's `bn_stats` says which was used.
    `bn_data` for a model without BatchNorm raises.

    Args:
        model_a, model_b: two networks with the same parameter and buffer names, shapes, dtypes and devices
            (neither is modified). Evaluation is in eval mode.
        loss_fn: `loss_fn(outputs, targets)`, mean over a batch.
        data: where the loss is measured: a pair or an iterable of pairs.
        num_points: grid size (≥ 2).
        bn_data: data to recompute BatchNorm statistics at each α (None: interpolate them).
        accuracy: compute errors (None: when targets are class indices and outputs are logits).
        method, chunk_size, unpack, progress: as in `slice_1d` (`unpack` splits the batches of `data` and of
            `bn_data`; progress: a bar over the grid; None: the library default, `landscape.set_progress`).

    Returns:
        `Barrier`. NaN or inf in either model's tensors or in the data raise ValueError; a non-finite loss at
        an interior α is kept (a barrier of inf or NaN).
    """
    data = unpacked(data, unpack)
    bn_data = None if bn_data is None else unpacked(bn_data, unpack)
    if not (isinstance(num_points, int) and not isinstance(num_points, bool) and num_points >= 2):
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    for name, m in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    state_a = {**dict(model_a.named_parameters()), **dict(model_a.named_buffers())}
    state_b = {**dict(model_b.named_parameters()), **dict(model_b.named_buffers())}
    _check_same_parameters(state_a, state_b, what="tensors")
    check_finite(state_a, "model_a's tensor")
    check_finite(state_b, "model_b's tensor")
    for n, t in state_a.items():
        if t.dtype != state_b[n].dtype or t.device != state_b[n].device:
            raise ValueError(
                f"{n!r} is {t.dtype} on {t.device} in model_a but {state_b[n].dtype} on {state_b[n].device} in "
                "model_b; move both models to one dtype and device"
            )
    has_bn = bool(_batchnorm_modules(model_a))
    if bn_data is not None and not has_bn:
        raise ValueError("bn_data was given but the model has no BatchNorm layer: nothing to recompute")
    bn_stats = "none" if not has_bn else ("interpolated" if bn_data is None else "recomputed")

    alphas = torch.linspace(0, 1, num_points, dtype=torch.float64)
    alphas[0], alphas[-1] = 0.0, 1.0
    # θ(α) = θa + α Δ for α ≤ 1/2 and θb − (1 − α) Δ above, Δ = θb − θa: exact at both ends, and exactly θa
    # everywhere when the two models are equal.
    first_half = alphas <= 0.5
    weights = torch.stack(
        [first_half.double(), (~first_half).double(), torch.where(first_half, alphas, alphas - 1)], dim=1
    )
    moving = [n for n, t in state_a.items() if t.is_floating_point()]
    anchors = [
        {n: state_a[n].detach() for n in moving},
        {n: state_b[n].detach() for n in moving},
        {n: state_b[n].detach() - state_a[n].detach() for n in moving},
    ]
    evaluator = GridEvaluator(model_a, loss_fn, data, accuracy=accuracy, method=method, chunk_size=chunk_size)
    if bn_stats == "recomputed":
        losses, accs = _evaluate_with_recomputed_bn(
            model_a, evaluator, anchors, weights, materialize(bn_data), progress
        )
        method_used = "loop"
    else:
        losses, accs = evaluator.evaluate(anchors, weights, progress=progress, desc="barrier")
        method_used = evaluator.method_used

    linear = (1 - alphas) * losses[0] + alphas * losses[-1]
    gap = losses - linear
    gap[0] = gap[-1] = 0.0
    best = int(torch.argmax(gap))
    errors = instability = None
    if accs is not None:
        errors = 1 - accs
        instability = float(errors.max() - (errors[0] + errors[-1]) / 2)
    return Barrier(
        height=float(gap[best]),
        argmax=float(alphas[best]),
        alphas=alphas,
        losses=losses,
        errors=errors,
        instability=instability,
        bn_stats=bn_stats,
        method=method_used,
    )


def _evaluate_with_recomputed_bn(model, evaluator, anchors, weights, bn_data, progress):
    """One point at a time: set the interpolated parameters on a working copy, re-estimate BN statistics."""
    work = copy.deepcopy(model)
    num = weights.shape[0]
    losses = torch.empty(num, dtype=torch.float64)
    accs = torch.empty(num, dtype=torch.float64)
    bn_names = {
        f"{prefix}.{b}" if prefix else b
        for prefix, m in work.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for b, _ in m.named_buffers(recurse=False)
    }
    flat = FlatAnchors(anchors)
    with progress_bar(progress, total=num, desc="barrier (BN recomputed)", unit="pt") as bar:
        for p in range(num):
            point = {n: t[0] for n, t in flat(weights[p : p + 1]).items()}
            with torch.no_grad():
                for n, t in point.items():
                    if n not in bn_names:
                        _get_tensor(work, n).copy_(t)
            recompute_batchnorm_statistics(work, bn_data)
            state = {n: t.detach() for n, t in work.named_buffers() if n in bn_names}
            loss, acc = evaluator.evaluate_state(
                {**{n: t for n, t in point.items() if n not in bn_names}, **state}
            )
            losses[p] = loss
            accs[p] = float("nan") if acc is None else acc
            bar.update()
    return losses, (accs if evaluator.is_classifier else None)


def _get_tensor(module: nn.Module, name: str) -> Tensor:
    owner, _, leaf = name.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, leaf)


def recompute_batchnorm_statistics(model: nn.Module, data) -> nn.Module:
    """Reset every BatchNorm layer's running statistics of `model` **in place** and re-estimate them as the
    cumulative average over the batches of `data` (PyTorch's `momentum=None` mode), with only the BatchNorm
    layers in train mode (dropout and the rest stay in eval mode); inputs with NaN or inf raise ValueError. Modes and momenta are restored. Meant for working copies: it modifies `model`.

    Returns:
        `model`.
    """
    bns = _batchnorm_modules(model)
    if not bns:
        raise ValueError("the model has no BatchNorm layer")
    saved = [(m, m.training) for m in model.modules()]
    momenta = [(bn, bn.momentum) for bn in bns]
    like = next(iter(bns[0].buffers()))
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over all batches seen
            bn.train()
        seen = 0
        with torch.no_grad():
            for index, (inputs, targets) in enumerate(iterate_batches(data)):
                if batch_size(inputs) == 0:
                    continue
                seen += batch_size(inputs)
                moved = move_batch(inputs, targets, like)[0]
                check_finite_data(moved, f"the inputs of batch {index} of bn_data")
                call_model(model, moved)
        if seen == 0:
            raise ValueError("bn_data is empty: no samples to estimate BatchNorm statistics on")
    finally:
        for bn, momentum in momenta:
            bn.momentum = momentum
        for m, mode in saved:
            m.training = mode
    return model
