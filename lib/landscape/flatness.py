"""Perturbation-based sharpness: Keskar's ε-sharpness, adaptive worst-case and average-case sharpness, and the
PAC-Bayes σ′ flatness.

All measures perturb the selected parameters θ by δ = s ⊙ u, with a per-coordinate scale vector s and u in a
unit ball or Gaussian:

=====================================  =========================  ========================================
measure                                s                          u
=====================================  =========================  ========================================
`epsilon_sharpness` (Keskar 2017)      ε (|θ| + 1)                ‖u‖∞ ≤ 1 (the box C_ε)
`worst_case_sharpness`, adaptive       ρ |θ|                      ‖u‖_p ≤ 1, p ∈ {2, ∞}
`worst_case_sharpness`, non-adaptive   ρ                          ‖u‖_p ≤ 1
`average_case_sharpness`, adaptive     ρ |θ|                      u ~ N(0, I)
`average_case_sharpness`, non-adapt.   ρ                          u ~ N(0, I)
`pac_bayes_sigma`                      σ (or σ |θ| + ε_mag)        u ~ N(0, I), σ found by bisection
=====================================  =========================  ========================================

Adaptive measures are invariant to the rescalings θ' = c ⊙ θ (c > 0 element-wise) that leave the network's
function unchanged, e.g. a ReLU layer multiplied by α and the next by 1/α (Dinh et al. 2017): then
θ' + |θ'| ⊙ u = c ⊙ (θ + |θ| ⊙ u), the same function. Non-adaptive ones (and Keskar's, through the +1) are not.

The maximum over a ball is found by projected gradient ascent on u with the full-data gradient (sign steps for
p = ∞, normalised steps for p = 2), from a random start in the ball (so that a critical point does not stall it);
the best point seen is returned, a lower bound of the true maximum. Evaluations are in eval mode, with
`torch.func.functional_call`: the caller's model is never written.

References:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy, P. T. P. Tang (2017), on large-batch training for
    deep learning: generalization gap and sharp minima (ε-sharpness, Metric 2.1);
    L. Dinh, R. Pascanu, S. Bengio, Y. Bengio (2017), sharp minima can generalize for deep nets;
    J. Kwon, J. Kim, H. Park, I. K. Choi (2021), ASAM: adaptive sharpness-aware minimization;
    M. Andriushchenko, F. Croce, M. Müller, M. Hein, N. Flammarion (2023), a modern look at the relationship
    between sharpness and generalization (adaptive worst-case / average-case sharpness);
    Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan, S. Bengio (2020), fantastic generalization measures and
    where to find them (PAC-Bayes σ′ flatness).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .operators import (
    LossFn,
    batch_size,
    eval_mode,
    functional_call_model,
    make_generator,
    select_parameters,
    unpacked,
)
from .progress import progress_bar
from .slices import GridEvaluator

__all__ = [
    "PacBayesFlatness",
    "Sharpness",
    "average_case_sharpness",
    "epsilon_sharpness",
    "pac_bayes_sigma",
    "worst_case_sharpness",
]

NORMS = (2, math.inf)


@dataclass(frozen=True)
class Sharpness:
    """A perturbation sharpness measure.

    Attributes:
        value: the measure (see the function: an increase of the loss, or Keskar's percentage).
        loss: L(θ).
        perturbed_loss: the largest loss found in the ball (worst case) or the Monte Carlo mean (average case).
        stderr: standard error of `value` (Monte Carlo measures), 0.0 for worst-case ones.
        radius: ε or ρ.
        p: the norm of the ball (2 or inf), None for Gaussian perturbations.
        adaptive: whether the perturbation scale is |θ| (invariant to function-preserving rescalings).
        measure: the function that produced it.
        num_evaluations: full-data loss (or loss-and-gradient) evaluations used.
    """

    value: float
    loss: float
    perturbed_loss: float
    stderr: float
    radius: float
    p: float | None
    adaptive: bool
    measure: str
    num_evaluations: int


@dataclass(frozen=True)
class PacBayesFlatness:
    """The PAC-Bayes flatness of Jiang et al. (2020).

    Attributes:
        sigma: σ′, the largest noise scale found whose expected increase stays within `target`.
        flatness: 1 / σ′² (Jiang et al.'s `pacbayes.flatness`, or `pacbayes.mag.flatness` when magnitude-aware).
        increase: the estimated expected increase at σ′ (≤ target).
        target: the allowed increase.
        quantity: "error" or "loss".
        magnitude_aware: whether the noise scale was σ|θ| + ε_mag.
        num_evaluations: full-data evaluations used.
    """

    sigma: float
    flatness: float
    increase: float
    target: float
    quantity: str
    magnitude_aware: bool
    num_evaluations: int


# ----------------------------------------------------------------------------------------------------------------
# Helpers


class _Problem:
    """Full-data loss and gradient at θ + δ for the selected parameters, via functional_call."""

    def __init__(self, model, loss_fn, data, params) -> None:
        self.names, tensors = select_parameters(model, params)
        self.theta = {n: t.detach() for n, t in zip(self.names, tensors, strict=True)}
        self.evaluator = GridEvaluator(model, loss_fn, data, accuracy=False, method="loop")
        self.model = model
        self.loss_fn = loss_fn
        self.evaluations = 0

    def loss(self, delta: dict[str, Tensor] | None = None) -> float:
        self.evaluations += 1
        state = self.theta if delta is None else {n: self.theta[n] + delta[n] for n in self.names}
        return self.evaluator.evaluate_state(state)[0]

    def loss_and_gradient(self, delta: dict[str, Tensor]) -> tuple[float, dict[str, Tensor]]:
        self.evaluations += 1
        ev = self.evaluator
        total, count = 0.0, 0
        grads = {n: torch.zeros_like(t) for n, t in self.theta.items()}
        with eval_mode(self.model), torch.enable_grad():
            for inputs, targets in ev._batches():
                point = {n: (self.theta[n] + delta[n]).requires_grad_(True) for n in self.names}
                outputs = functional_call_model(self.model, {**ev.base, **point}, inputs)
                loss = self.loss_fn(outputs, targets)
                if not isinstance(loss, Tensor) or loss.numel() != 1:
                    raise ValueError("loss_fn must return a scalar (mean over the batch)")
                n = batch_size(inputs)
                pieces = torch.autograd.grad(loss * n, list(point.values()), allow_unused=True)
                for name, g in zip(self.names, pieces, strict=True):
                    if g is not None:
                        grads[name] += g
                total += n * float(loss.detach())
                count += n
        return total / count, {n: g / count for n, g in grads.items()}

    def draw(self, gen: torch.Generator, kind: str) -> dict[str, Tensor]:
        """A random u (float64 on the CPU, then cast): "gaussian", or "ball2"/"ballinf" uniform-ish starts."""
        out = {}
        for n, t in self.theta.items():
            if kind == "gaussian":
                z = torch.randn(t.shape, generator=gen, dtype=torch.float64)
            else:
                z = torch.rand(t.shape, generator=gen, dtype=torch.float64) * 2 - 1
            out[n] = z.to(device=t.device, dtype=t.dtype)
        if kind == "ball2":  # a random point of norm 1/2 inside the unit ℓ2 ball
            norm = _norm(out, 2)
            out = {n: z * (0.5 / norm) for n, z in out.items()}
        return out


def _norm(u: dict[str, Tensor], p: float) -> float:
    if p == math.inf:
        return max(float(z.abs().max()) for z in u.values() if z.numel())
    return math.sqrt(sum(float((z.double() ** 2).sum()) for z in u.values()))


def _check_radius(value: float, name: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_p(p) -> float:
    if p in ("inf", float("inf")):
        return math.inf
    if p == 2 and not isinstance(p, bool):
        return 2.0
    raise ValueError(f"unknown p={p!r}; expected 2 or math.inf")


def _check_positive_int(value, name: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _projected_ascent(
    problem: _Problem,
    scale: dict[str, Tensor],
    p: float,
    steps: int,
    step_size: float,
    gen: torch.Generator,
    progress: bool | None,
    desc: str,
) -> float:
    """max over ‖u‖_p ≤ 1 of L(θ + scale ⊙ u), by projected gradient ascent; returns the best loss seen."""
    u = problem.draw(gen, "ballinf" if p == math.inf else "ball2")
    best = -math.inf
    with progress_bar(progress, total=steps, desc=desc, unit="step") as bar:
        for _ in range(steps):
            loss, grad = problem.loss_and_gradient({n: scale[n] * u[n] for n in u})
            best = max(best, loss)
            bar.update()
            g = {n: scale[n] * grad[n] for n in u}  # ∂/∂u L(θ + s ⊙ u)
            if p == math.inf:
                u = {n: (u[n] + step_size * torch.sign(g[n])).clamp(-1.0, 1.0) for n in u}
            else:
                g_norm = _norm(g, 2)
                if g_norm == 0:
                    break  # a critical point of the perturbed loss: no ascent direction
                u = {n: u[n] + (step_size / g_norm) * g[n] for n in u}
                u_norm = _norm(u, 2)
                if u_norm > 1:
                    u = {n: z / u_norm for n, z in u.items()}
    return max(best, problem.loss({n: scale[n] * u[n] for n in u}))


# ----------------------------------------------------------------------------------------------------------------
# Measures


def epsilon_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    epsilon: float = 1e-3,
    *,
    steps: int = 20,
    step_size: float = 0.25,
    seed: int | torch.Generator | None = 0,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> Sharpness:
    r"""Keskar et al. (2017)'s ε-sharpness (Metric 2.1, full space, A = I):

    .. math::  \phi_\epsilon(\theta) = 100 \cdot
               \frac{\max_{\delta \in C_\epsilon} L(\theta + \delta) - L(\theta)}{1 + L(\theta)}, \qquad
               C_\epsilon = \{\delta : |\delta_i| \le \epsilon (|\theta_i| + 1)\}.

    The maximum is found by projected sign-gradient ascent in the box (Keskar et al. used L-BFGS-B), from a
    random start (`seed`), `steps` gradient evaluations with steps of `step_size` times the box half-width.
    Not invariant to function-preserving rescalings (the +1 in the box).

    Args:
        model, loss_fn, data: the network (not modified), a mean loss, and the data it is measured on.
        epsilon: box size ε (Keskar et al. report 1e-3 and 5e-4).
        steps: gradient evaluations of the ascent.
        step_size: ascent step in units of the box half-width.
        seed: seed of the random start.
        params: parameter subset to perturb (default: all with `requires_grad`).
        unpack: how to split each batch into `(inputs, targets)`, as for `HessianOperator` (default
            `operators.default_unpack`; e.g. `unpack_first_two` for `(x, y, extra)` batches).
        progress: a progress bar over the ascent steps (None: the library default, `landscape.set_progress`).

    Returns:
        `Sharpness` with `value` = φ (a percentage).
    """
    data = unpacked(data, unpack)
    epsilon = _check_radius(epsilon, "epsilon")
    steps = _check_positive_int(steps, "steps")
    step_size = _check_radius(step_size, "step_size")
    problem = _Problem(model, loss_fn, data, params)
    base = problem.loss()
    scale = {n: epsilon * (t.abs() + 1) for n, t in problem.theta.items()}
    worst = _projected_ascent(
        problem, scale, math.inf, steps, step_size, make_generator(seed), progress, "epsilon_sharpness"
    )
    return Sharpness(
        value=100 * (worst - base) / (1 + base),
        loss=base,
        perturbed_loss=worst,
        stderr=0.0,
        radius=epsilon,
        p=math.inf,
        adaptive=False,
        measure="epsilon_sharpness",
        num_evaluations=problem.evaluations,
    )


def worst_case_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    rho: float,
    *,
    p: float = 2,
    adaptive: bool = True,
    steps: int = 20,
    step_size: float | None = None,
    seed: int | torch.Generator | None = 0,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> Sharpness:
    r"""Worst-case (adaptive) sharpness (Kwon et al. 2021; Andriushchenko et al. 2023, Eq. 1 with m = n):

    .. math::  S^\rho_{\max}(\theta) = \max_{\lVert \delta \oslash c \rVert_p \le \rho}
               L(\theta + \delta) - L(\theta), \qquad c = |\theta| \text{ (adaptive) or } c = 1,

    i.e. δ = ρ c ⊙ u with ‖u‖_p ≤ 1. ρ is the radius of the ball in the rescaled coordinates (a relative size
    when adaptive: ρ = 0.05 lets every weight move by up to 5 % of its magnitude for p = ∞); p ∈ {2, ∞}.
    The loss is the full-data loss (Andriushchenko et al. also study m-sharpness over batches of size m).
    Near a minimum with gradient 0 and Hessian H, :math:`S^\rho_{\max} \approx \tfrac12 \rho^2
    \lambda_{\max}(\mathrm{diag}(c) H \mathrm{diag}(c))` for p = 2.

    The maximum is found by projected gradient ascent (normalised steps for p = 2, sign steps for p = ∞) from a
    random start (`seed`), keeping the best point: a lower bound that tightens with `steps`.

    Args:
        model, loss_fn, data: the network (not modified), a mean loss, and the data it is measured on.
        rho: radius ρ.
        p: 2 or math.inf.
        adaptive: scale the ball by |θ| (invariant to function-preserving rescalings) or not.
        steps: gradient evaluations of the ascent.
        step_size: ascent step in units of ρ (default 1.0 for p = 2, 0.25 for p = ∞).
        seed: seed of the random start.
        params: parameter subset to perturb (default: all with `requires_grad`).
        unpack: how to split each batch into `(inputs, targets)`, as for `HessianOperator` (default
            `operators.default_unpack`; e.g. `unpack_first_two` for `(x, y, extra)` batches).
        progress: a progress bar over the ascent steps (None: the library default, `landscape.set_progress`).
    """
    data = unpacked(data, unpack)
    rho = _check_radius(rho, "rho")
    p = _check_p(p)
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
    steps = _check_positive_int(steps, "steps")
    step_size = _check_radius(step_size if step_size is not None else (1.0 if p == 2 else 0.25), "step_size")
    problem = _Problem(model, loss_fn, data, params)
    base = problem.loss()
    scale = {n: rho * t.abs() if adaptive else torch.full_like(t, rho) for n, t in problem.theta.items()}
    worst = _projected_ascent(
        problem, scale, p, steps, step_size, make_generator(seed), progress, "worst_case_sharpness"
    )
    return Sharpness(
        value=worst - base,
        loss=base,
        perturbed_loss=worst,
        stderr=0.0,
        radius=rho,
        p=p,
        adaptive=adaptive,
        measure="worst_case_sharpness",
        num_evaluations=problem.evaluations,
    )


def _gaussian_losses(problem: _Problem, scale_fn, num_samples: int, seed, chunk_size, progress) -> Tensor:
    """L(θ + scale ⊙ z_s) for s = 1..S, z_s ~ N(0, I) from per-sample seeds (independent of chunking)."""
    gen = make_generator(seed)
    seeds = torch.randint(0, 2**62, (num_samples,), generator=gen).tolist()
    ev = GridEvaluator(
        problem.model,
        problem.loss_fn,
        problem.evaluator.data,
        accuracy=False,
        method="auto",
        chunk_size=chunk_size,
    )

    def make_points(start: int, stop: int) -> dict[str, Tensor]:
        draws = [
            problem.draw(torch.Generator().manual_seed(seeds[s]), "gaussian") for s in range(start, stop)
        ]
        return {n: torch.stack([t + scale_fn(n) * d[n] for d in draws]) for n, t in problem.theta.items()}

    losses, _ = ev.evaluate_points(make_points, num_samples, progress=progress, desc="average_case_sharpness")
    problem.evaluations += num_samples
    return losses


def average_case_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    rho: float,
    *,
    adaptive: bool = True,
    num_samples: int = 64,
    seed: int | torch.Generator | None = 0,
    chunk_size: int | None = None,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> Sharpness:
    r"""Average-case (adaptive) sharpness (Andriushchenko et al. 2023, Eq. 2 with m = n):

    .. math::  S^\rho_{\mathrm{avg}}(\theta) = \mathbb{E}_{\delta \sim \mathcal N(0,\, \rho^2 \mathrm{diag}(c^2))}
               L(\theta + \delta) - L(\theta), \qquad c = |\theta| \text{ (adaptive) or } c = 1,

    estimated by Monte Carlo over `num_samples` draws (seeded), with its standard error. Near a minimum,
    :math:`S^\rho_{\mathrm{avg}} \approx \tfrac12 \rho^2 \,\mathrm{tr}(\mathrm{diag}(c) H \mathrm{diag}(c))`
    (exact for a quadratic loss).

    Args:
        model, loss_fn, data: the network (not modified), a mean loss, and the data it is measured on.
        rho: noise scale ρ (relative to |θ| when adaptive).
        adaptive: scale the noise by |θ| or not.
        num_samples: Monte Carlo draws.
        seed: seed of the draws.
        chunk_size: draws per vmapped pass (as in `slice_1d`).
        params: parameter subset to perturb (default: all with `requires_grad`).
        unpack: how to split each batch into `(inputs, targets)`, as for `HessianOperator` (default
            `operators.default_unpack`; e.g. `unpack_first_two` for `(x, y, extra)` batches).
        progress: a progress bar over the draws (None: the library default, `landscape.set_progress`).
    """
    data = unpacked(data, unpack)
    rho = _check_radius(rho, "rho")
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
    num_samples = _check_positive_int(num_samples, "num_samples")
    problem = _Problem(model, loss_fn, data, params)
    base = problem.loss()
    theta = problem.theta

    def scale_fn(name: str):
        return rho * theta[name].abs() if adaptive else rho

    losses = _gaussian_losses(problem, scale_fn, num_samples, seed, chunk_size, progress)
    mean = float(losses.mean())
    stderr = float(losses.std() / math.sqrt(num_samples)) if num_samples > 1 else math.inf
    return Sharpness(
        value=mean - base,
        loss=base,
        perturbed_loss=mean,
        stderr=stderr,
        radius=rho,
        p=None,
        adaptive=adaptive,
        measure="average_case_sharpness",
        num_evaluations=problem.evaluations,
    )


def pac_bayes_sigma(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    *,
    target: float = 0.1,
    quantity: str = "error",
    magnitude_aware: bool = False,
    magnitude_epsilon: float = 1e-3,
    num_samples: int = 16,
    bounds: tuple[float, float] = (1e-6, 10.0),
    iterations: int = 20,
    seed: int | torch.Generator | None = 0,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> PacBayesFlatness:
    r"""The PAC-Bayes flatness of Jiang et al. (2020, Sec. C.1): the largest σ′ with

    .. math::  \mathbb{E}_{u}\big[\hat L(\theta + u)\big] - \hat L(\theta) \le \text{target}, \qquad
               u \sim \mathcal N(0, \sigma'^2 I) \ \text{or (magnitude-aware)} \
               u_i \sim \mathcal N(0, \sigma'^2 \theta_i^2 + \epsilon_{mag}^2),

    where :math:`\hat L` is the training error (`quantity="error"`, Jiang et al.'s choice, target 0.1) or the
    loss. Reported as `flatness` = 1/σ′² (their `pacbayes.flatness` / `pacbayes.mag.flatness`). σ′ is found by
    bisection in log σ within `bounds`, with the same `num_samples` standard normal draws at every σ (common
    random numbers make the estimate a smooth function of σ). If even the upper bound stays within target, σ′
    is that bound. `progress` shows a bar over the σ tried (at most `iterations` + 2; None: the library
    default, `landscape.set_progress`); `unpack` splits each batch as in `epsilon_sharpness`.
    """
    data = unpacked(data, unpack)
    if quantity not in ("error", "loss"):
        raise ValueError(f"unknown quantity={quantity!r}; expected 'error' or 'loss'")
    target = _check_radius(target, "target")
    num_samples = _check_positive_int(num_samples, "num_samples")
    iterations = _check_positive_int(iterations, "iterations")
    lo, hi = (_check_radius(b, "bounds") for b in bounds)
    if not lo < hi:
        raise ValueError(f"bounds must be increasing, got {bounds}")
    if not isinstance(magnitude_aware, bool):
        raise TypeError(f"magnitude_aware must be True or False, got {magnitude_aware!r}")
    if magnitude_aware:
        magnitude_epsilon = _check_radius(magnitude_epsilon, "magnitude_epsilon")
    problem = _Problem(model, loss_fn, data, params)
    theta = problem.theta
    ev = GridEvaluator(model, loss_fn, problem.evaluator.data, accuracy=quantity == "error", method="auto")
    gen = make_generator(seed)
    seeds = torch.randint(0, 2**62, (num_samples,), generator=gen).tolist()
    evaluations = 0

    def value(losses: Tensor, accs: Tensor | None) -> Tensor:
        return losses if quantity == "loss" else 1 - accs

    base_loss, base_acc = ev.evaluate_state(theta)
    base = base_loss if quantity == "loss" else 1 - base_acc
    evaluations += 1

    def increase(sigma: float) -> float:
        nonlocal evaluations

        def std(name: str):
            if magnitude_aware:
                return torch.sqrt(sigma**2 * theta[name] ** 2 + magnitude_epsilon**2)
            return sigma

        def make_points(start: int, stop: int) -> dict[str, Tensor]:
            draws = [
                problem.draw(torch.Generator().manual_seed(seeds[s]), "gaussian") for s in range(start, stop)
            ]
            return {n: torch.stack([t + std(n) * d[n] for d in draws]) for n, t in theta.items()}

        losses, accs = ev.evaluate_points(make_points, num_samples, progress=False)
        evaluations += num_samples
        bar.update()
        return float(value(losses, accs).mean()) - base

    with progress_bar(progress, total=iterations + 2, desc="pac_bayes_sigma", unit="σ") as bar:
        inc = increase(hi)
        if inc <= target:
            sigma = hi
        else:
            log_lo, log_hi = math.log(lo), math.log(hi)
            inc = increase(lo)
            if inc > target:
                raise ValueError(
                    f"even σ = {lo:g} increases the {quantity} by {inc:g} > target; lower bounds[0]"
                )
            sigma = lo
            for _ in range(iterations):
                mid = math.exp((log_lo + log_hi) / 2)
                mid_inc = increase(mid)
                if mid_inc <= target:
                    log_lo, sigma, inc = math.log(mid), mid, mid_inc
                else:
                    log_hi = math.log(mid)
    return PacBayesFlatness(
        sigma=sigma,
        flatness=1 / sigma**2,
        increase=inc,
        target=target,
        quantity=quantity,
        magnitude_aware=magnitude_aware,
        num_evaluations=evaluations,
    )
