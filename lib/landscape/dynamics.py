"""Curvature along an optimisation trajectory: λmax tracked with warm-started Lanczos, the edge-of-stability
ratio λmax·η/2, and a short training loop that continues from given weights while tracking both and can stop
at a target training loss.

Gradient descent with step η on a quadratic with Hessian H is stable exactly when λmax(H) < 2/η. Cohen et al.
(2021) observed that full-batch GD on neural networks first *sharpens* (λmax grows) until λmax reaches 2/η and
then hovers there — the edge of stability (EoS) — while the loss keeps decreasing non-monotonically.
`edge_of_stability` summarises a λmax trace by the ratio λmax·η/2 after that onset.

Tracking λmax at many points of a trajectory is cheap when each Lanczos run starts from the previous point's top
eigenvector: the Hessian changes little between nearby points, so the start already lies close to the new top
eigenvector and a few products suffice. A small random part is mixed into the start so that a new eigenvalue
that overtakes the old top one is still found.

References:
    J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter, A. Talwalkar (2021), gradient descent on neural networks
    typically occurs at the edge of stability; C. Lanczos (1950); B. N. Parlett (1998), *The Symmetric
    Eigenvalue Problem*, Thm. 11.7.1 (the residual / gap error bound used for stopping).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from .data import Dataset
from .eigen import EigenResult, top_eigenvalues
from .operators import HessianOperator, LinearOperator, LossFn, as_operator, make_generator
from .train import TrainConfig, loss_function, train

__all__ = [
    "ContinuedRun",
    "EdgeOfStability",
    "SharpnessTrajectory",
    "continue_training",
    "edge_of_stability",
    "sharpness_trajectory",
    "warm_top_eigenpair",
]


@dataclass(frozen=True)
class SharpnessTrajectory:
    """λmax of the loss Hessian at a sequence of points of a trajectory.

    Attributes:
        steps: the optimiser step of each point.
        lambda_max: the top eigenvalue at each point (float64).
        residuals: ‖H v − λ v‖ of each returned pair (an error bar on each value).
        num_matvecs: Hessian-vector products used at each point.
    """

    steps: tuple[int, ...]
    lambda_max: Tensor
    residuals: Tensor
    num_matvecs: tuple[int, ...]


@dataclass(frozen=True)
class EdgeOfStability:
    """Summary of a λmax trace of gradient descent with step size η against the stability threshold 2/η.

    Attributes:
        lr: the step size η.
        threshold: 2/η.
        reached: whether λmax·η/2 reached `onset` at some tracked point.
        onset_step: the first tracked step where it did (None if never).
        ratio_mean, ratio_std: mean and standard deviation of λmax·η/2 over the tracked points from the onset
            to the end (NaN if never reached).
        phase_end_step: the last tracked step with λmax·η/2 ≥ onset (the end of the EoS phase; under
            cross-entropy λmax falls again once the loss nears zero).
        phase_ratio_mean, phase_ratio_std: the same statistics over the onset..phase-end window only.
        ratio_max: the largest λmax·η/2 seen anywhere.
        num_points, phase_points: tracked points in each window.
    """

    lr: float
    threshold: float
    reached: bool
    onset_step: int | None
    ratio_mean: float
    ratio_std: float
    phase_end_step: int | None
    phase_ratio_mean: float
    phase_ratio_std: float
    ratio_max: float
    num_points: int
    phase_points: int


@dataclass(frozen=True)
class ContinuedRun:
    """A training run continued from given weights by `continue_training`.

    Attributes:
        config: the optimiser settings used (its model fields are not used).
        status: ``"finished"`` (all ``config`` steps taken), ``"reached"`` (stopped early at the target
            training loss) or ``"diverged"``.
        diverged_step: the step whose minibatch loss was non-finite or exploded (None otherwise).
        history: one dict per tracked point: step, train_loss, train_acc, test_loss, test_acc and, when λmax
            is tracked, lambda_max, lambda_residual, matvecs.
        state_dict: the final weights (detached CPU copies).
        target_loss: the stopping target (None when training ran for a fixed number of steps).
        reached_step: the first tracked step whose full training loss was ≤ `target_loss` — where the run
            stopped (None if the target was not reached or not set).
    """

    config: TrainConfig
    status: str
    diverged_step: int | None
    history: tuple[dict, ...]
    state_dict: dict[str, Tensor]
    target_loss: float | None = None
    reached_step: int | None = None


def warm_top_eigenpair(
    op: LinearOperator | Tensor,
    start: Tensor | None = None,
    *,
    tol: float = 1e-3,
    max_matvecs: int = 200,
    mix: float = 0.1,
    seed: int | torch.Generator | None = 0,
) -> EigenResult:
    r"""The largest eigenpair of a symmetric operator by block Lanczos started from a given vector.

    The start vector is v₀ = s/‖s‖ + m·z/‖z‖ with s = `start`, m = `mix` and z a seeded Gaussian vector (just z
    without `start`). The random part gives every eigendirection a component, so an eigenvalue that overtook the
    old top one is still found, and the warm start needs at most about log(1/m) more Krylov steps than a cold one
    when `start` is useless. Lanczos with full reorthogonalisation runs until the top Ritz pair (θ, y) meets Parlett's error bound

    .. math::  \min\left(r, \; r^2 / \mathrm{gap}\right) \le \mathrm{tol} \cdot |\theta|, \qquad
               r = \lVert A y - \theta y \rVert,

    with the gap to the next Ritz value. Started at a good approximation of the top eigenvector (the previous
    point of a trajectory), a handful of products suffice.

    Args:
        op: a `LinearOperator` (e.g. `HessianOperator`) or a dense symmetric matrix.
        start: a vector of length D (need not be normalised), or None for a cold start.
        tol: relative tolerance on the eigenvalue error.
        max_matvecs: budget of products.
        mix: weight of the random part of the start vector, in (0, 1].
        seed: seed or generator of the random start vector.

    Returns:
        `EigenResult` with one pair; `converged=False` if the budget ran out first (no warning: a trajectory
        records the residual instead).

    Example:
        >>> A = torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64))
        >>> res = warm_top_eigenpair(A, torch.tensor([1.0, 0.1, 0.0, 0.0], dtype=torch.float64), tol=1e-10)
        >>> round(float(res.values[0]), 10)
        4.0
    """
    op = as_operator(op)
    if op.dim < 2:
        raise ValueError(f"the operator must have dimension at least 2, got D={op.dim}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if not isinstance(max_matvecs, int) or max_matvecs < 2:
        raise ValueError(f"max_matvecs must be an integer >= 2, got {max_matvecs!r}")
    if not 0 < mix <= 1:
        raise ValueError(f"mix must be in (0, 1], got {mix!r}")
    gen = make_generator(seed)
    noise = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.device, op.work_dtype)
    block = noise
    if start is not None:
        if not isinstance(start, Tensor) or start.shape != (op.dim,):
            shape = tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__
            raise ValueError(f"start must be a vector of shape ({op.dim},), got {shape}")
        if not torch.isfinite(start).all() or float(start.norm()) == 0:
            raise ValueError("start must be finite and non-zero")
        start = start.detach().to(op.device, op.work_dtype)
        block = start / start.norm() + mix * noise / noise.norm()
    with warnings.catch_warnings():  # a trajectory records the residual instead of warning
        warnings.filterwarnings("ignore", "Lanczos did not reach", RuntimeWarning)
        result = top_eigenvalues(
            op, 1, tol=tol, max_matvecs=min(op.dim, max_matvecs), start=block[:, None], seed=gen
        )
    return replace(result, method="lanczos(warm start)" if start is not None else "lanczos(cold start)")


def sharpness_trajectory(
    points: Iterable[tuple[int, nn.Module]],
    loss_fn: LossFn,
    data,
    *,
    tol: float = 1e-3,
    max_matvecs: int = 200,
    seed: int = 0,
) -> SharpnessTrajectory:
    """λmax of the Hessian of the mean loss over `data` at each point of a trajectory, warm-started.

    The first point starts Lanczos cold; every later one starts from the previous point's top eigenvector (plus
    a little random noise, see `warm_top_eigenpair`). Points are visited in the order given.

    Args:
        points: (step, model) pairs, e.g. ``((s, record.model(s)) for s in record.checkpoint_steps)``.
        loss_fn: `loss_fn(outputs, targets)`, the mean loss of a batch.
        data: the data the loss is the mean over (as for `HessianOperator`); the same at every point.
        tol: relative tolerance of each eigenvalue.
        max_matvecs: product budget per point.
        seed: seed of the random start vectors (point i uses seed + i).
    """
    steps, values, residuals, matvecs = [], [], [], []
    previous = None
    for i, (step, model) in enumerate(points):
        op = HessianOperator(model, loss_fn, data)
        if previous is not None and previous.shape[0] != op.dim:
            raise ValueError(f"the model at step {step} has {op.dim} parameters, the previous point had "
                             f"{previous.shape[0]}: a trajectory must keep one architecture")  # fmt: skip
        result = warm_top_eigenpair(op, previous, tol=tol, max_matvecs=max_matvecs, seed=seed + i)
        previous = result.vectors[:, 0]
        steps.append(int(step))
        values.append(float(result.values[0]))
        residuals.append(float(result.residuals[0]))
        matvecs.append(result.num_matvecs)
    if not steps:
        raise ValueError("points is empty: no trajectory to measure")
    return SharpnessTrajectory(
        steps=tuple(steps),
        lambda_max=torch.tensor(values, dtype=torch.float64),
        residuals=torch.tensor(residuals, dtype=torch.float64),
        num_matvecs=tuple(matvecs),
    )


def edge_of_stability(
    steps: Sequence[int], lambda_max: Sequence[float] | Tensor, lr: float, *, onset: float = 0.9
) -> EdgeOfStability:
    r"""The edge-of-stability ratio of a λmax trace of gradient descent with step size η (Cohen et al. 2021).

    .. math::  \rho_t = \lambda_{\max}(t)\,\eta / 2, \qquad t^\ast = \min\{t : \rho_t \ge \text{onset}\},
               \qquad \bar\rho = \operatorname{mean}_{t \ge t^\ast} \rho_t, \qquad
               \bar\rho_{\mathrm{phase}} = \operatorname{mean}_{t^\ast \le t \le t_\ast} \rho_t,

    with t_* the last tracked step where ρ_t ≥ onset.

    ρ = 1 is the stability threshold of GD on a quadratic; Cohen et al. find ρ̄ ≈ 1 (slightly above) once
    progressive sharpening has brought λmax to 2/η. Only the tracked points enter, so the mean is over time
    when they are evenly spaced.

    Args:
        steps: the step of each tracked point, increasing.
        lambda_max: λmax at those points.
        lr: the step size η (> 0).
        onset: the ratio that marks the end of progressive sharpening (default 0.9).
    """
    values = torch.as_tensor(lambda_max, dtype=torch.float64).reshape(-1)
    steps = [int(s) for s in steps]
    if len(steps) != values.numel() or not steps:
        raise ValueError(f"steps and lambda_max must be non-empty and of equal length, got {len(steps)} and "
                         f"{values.numel()}")  # fmt: skip
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError("steps must be strictly increasing")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not onset > 0:
        raise ValueError(f"onset must be positive, got {onset}")
    ratio = values * lr / 2
    above = torch.nonzero(ratio >= onset).flatten()
    if above.numel() == 0:
        nan = math.nan
        return EdgeOfStability(
            float(lr), 2 / lr, False, None, nan, nan, None, nan, nan, float(ratio.max()), 0, 0
        )
    first, last = int(above[0]), int(above[-1])
    after, phase = ratio[first:], ratio[first : last + 1]
    return EdgeOfStability(
        lr=float(lr),
        threshold=2 / lr,
        reached=True,
        onset_step=steps[first],
        ratio_mean=float(after.mean()),
        ratio_std=float(after.std()) if after.numel() > 1 else 0.0,
        phase_end_step=steps[last],
        phase_ratio_mean=float(phase.mean()),
        phase_ratio_std=float(phase.std()) if phase.numel() > 1 else 0.0,
        ratio_max=float(ratio.max()),
        num_points=after.numel(),
        phase_points=phase.numel(),
    )


def continue_training(
    model: nn.Module,
    config: TrainConfig,
    data: Dataset,
    *,
    track_every: int,
    sharpness_data=None,
    tol: float = 1e-3,
    max_matvecs: int = 200,
    track_sharpness: bool = True,
    target_loss: float | None = None,
) -> ContinuedRun:
    """Continue training a copy of `model` with the optimiser of `config`, tracking λmax and the losses.

    This is `landscape.train.train` started from the given weights (``start=model``; same optimiser,
    learning-rate schedule, minibatch order from ``config.seed``, divergence and stop rules), with λmax added to
    every evaluation by its ``on_eval`` hook; `model` itself is never modified. Started from ``build_model(..., seed=config.seed)`` it
    takes the same steps as ``train(config)``. Every `track_every` steps (and at steps 0 and the last), it
    evaluates the full training and test losses and λmax of the loss on `sharpness_data`, warm-started from
    the previous top eigenvector.

    With `target_loss`, training stops at the first tracked point whose mean loss over the whole training split
    is ≤ `target_loss` (status ``"reached"``); ``config.steps`` is then the budget. This is the stopping rule
    for comparing runs at equal training loss rather than after an equal number of steps: the stop is resolved
    to `track_every` steps, so choose it small enough that the loss cannot fall far below the target between
    two checks.

    Args:
        model: the starting point (copied).
        config: optimiser, lr, schedule, momentum, weight decay, batch size, steps, loss and seed; its model
            fields are ignored.
        data: the data set (training split for the steps and `train_loss`, test split for `test_loss`).
        track_every: steps between tracked points.
        sharpness_data: data of the tracked Hessian (default: the whole training split).
        tol, max_matvecs: of each λmax (see `warm_top_eigenpair`).
        track_sharpness: compute λmax at the tracked points (False: only the losses, much cheaper).
        target_loss: stop once the full training loss is ≤ this (None: ``config.stop_loss``, and with that None
            too, run all ``config`` steps).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a landscape.data.Dataset, got {type(data).__name__}")
    if not isinstance(track_every, int) or track_every < 1:
        raise ValueError(f"track_every must be a positive integer, got {track_every!r}")
    number = isinstance(target_loss, (int, float)) and not isinstance(target_loss, bool)
    if target_loss is not None and not (number and math.isfinite(target_loss)):
        raise ValueError(f"target_loss must be a finite number or None, got {target_loss!r}")
    loss_fn = loss_function(config.loss)
    previous: Tensor | None = None
    like = next(model.parameters())
    if sharpness_data is None:
        sharpness_data = (data.x_train.to(like.device, like.dtype), data.y_train.to(like.device))

    def sharpness(step: int, current: nn.Module) -> dict:
        """λmax at this evaluation, warm-started from the previous one's top eigenvector."""
        nonlocal previous
        if not track_sharpness:
            return {}
        # the model is in train mode inside the loop; λmax is that of the eval-mode loss, as everywhere else
        op = HessianOperator(current, loss_fn, sharpness_data, mode="eval")
        top = warm_top_eigenpair(op, previous, tol=tol, max_matvecs=max_matvecs, seed=config.seed + step)
        previous = top.vectors[:, 0]
        return {"lambda_max": float(top.values[0]), "lambda_residual": float(top.residuals[0]),
                "matvecs": top.num_matvecs}  # fmt: skip

    target_loss = config.stop_loss if target_loss is None else target_loss  # the config's own stop rule holds
    run_config = replace(config, eval_every=track_every, stop_loss=target_loss)
    result = train(run_config, data=data, start=model, on_eval=sharpness)
    return ContinuedRun(
        config, result.status, result.diverged_step, result.history, result.state_dict, target_loss,
        result.reached_step,
    )  # fmt: skip
