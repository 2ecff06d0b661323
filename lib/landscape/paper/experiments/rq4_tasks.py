"""RQ4's cached task: one configuration's seeds trained for a fixed budget, probed early, and branched.

`configuration_task` is the module-level ``compute(settings) -> dict`` that `landscape.paper.experiments.rq4`
runs through `landscape.paper.experiments.common.run_cached`. One task is one configuration (architecture, loss,
step-size factor c, batch size, warmup) and all its seeds, because one target belongs to the seeds together: the
spread of their test accuracy and the loss barrier between them at the end.

Each seed, top to bottom:

1. λ0, the top Hessian eigenvalue of the training loss at initialisation (on the training set the probes use),
   sets the step size η = c · 2/λ0: c < 1 is stable for gradient descent on the initial quadratic model, c > 1
   is not (momentum 0, so 2/η is the threshold).
2. The zero-cost proxies at initialisation (`landscape.proxies.zero_cost_proxies`, with the run's loss).
3. Phase 1: ``K = max(probe_steps)`` steps of SGD (gradient descent when the batch is the whole training set),
   the full training loss recorded after every step, weights kept at every probe step. With warmup the step
   ramps linearly to η over these K steps (so warmup ends where the branches start).
4. The early probes at every probe step k (`early_probes`): λmax (warm-started from the previous step's
   eigenvector) and η·λmax/2, tr(H)/D, the negative-eigenvalue mass of the SLQ spectral density, the worst slice
   roughness over random filter-normalised directions, the loss barrier between two children spawned at k with
   different data orders (Frankle et al. 2020's instability), the gradient norm and McCandlish et al.'s simple
   noise scale tr(Σ)/‖g‖².
5. Phase 2 from the step-K weights, for the rest of the budget, three times with one data order: unchanged
   (the control), with η halved (rule 1's treatment) and with unit-wise adaptive gradient clipping (rule 2's;
   `UnitClipped`). A diverged branch is a result, never an error.

The outcomes of each branch (`_outcomes`): diverged, final training loss and test accuracy, the step at which
the full training loss first fell to ``target_fraction`` × its initial value (None when never: censored), and
whether a catapult happened (the training loss rose above its initial value and the run still reached the
target; Lewkowycz et al. 2020).
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ... import complexity
from ...alignment import align_permutation
from ...data import Dataset, load_dataset
from ...density import spectral_density
from ...directions import random_direction
from ...dynamics import warm_top_eigenpair
from ...eigen import top_eigenvalues
from ...interpolation import interpolation_barrier
from ...models import build_model
from ...operators import HessianOperator
from ...proxies import zero_cost_proxies
from ...slices import slice_1d
from ...trace import hessian_trace
from ...train import TrainConfig, learning_rate, loss_function, train

__all__ = [
    "BRANCHES",
    "DEPENDS_ON",
    "PROBES",
    "PROXIES",
    "UnitClipped",
    "configuration_task",
    "early_loss_features",
    "early_probes",
    "quadratic_residual_variance",
    "task_data",
]

BRANCHES = ("control", "halve_lr", "clip")  # the continuations from the step-K weights
PROBES = (  # the early geometry probes (predictor set D), each recorded at every probe step
    "lambda_max",
    "eta_lambda",  # η·λmax/2 with the peak step size η: > 1 is beyond gradient descent's stability threshold
    "trace_per_param",
    "negative_mass",
    "slice_roughness",
    "child_barrier",
    "grad_norm",
    "noise_scale",
)
EARLY_LOSS = (
    "loss_ratio",
    "loss_slope",
    "loss_spike",
    "loss_extrapolated",
)  # predictor set B, per probe step
PROXIES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov", "ntk_condition")  # set C, at init
DIVERGENCE_FACTOR = 100.0  # diverged: the minibatch loss exceeds this × the initial loss (or is not finite)
# the code every cached result of this chapter runs beyond the probes (the probes are always included)
DEPENDS_ON = ("data", "models", "train", "complexity", "proxies", "alignment", __name__)


@functools.lru_cache(maxsize=4)
def task_data(num_train: int) -> Dataset:
    """MNIST-1D with its first `num_train` training signals and the whole test set (loaded once per process).

    A smaller training set keeps full-batch gradient descent, one of the batch sizes, within the budget."""
    data = load_dataset("mnist1d")
    if not 2 <= num_train <= len(data.y_train):
        raise ValueError(f"num_train must be in [2, {len(data.y_train)}], got {num_train}")
    return Dataset(data.name, data.x_train[:num_train], data.y_train[:num_train], data.x_test, data.y_test,
                   data.num_classes)  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Rule 2's treatment: unit-wise adaptive gradient clipping


class _ClipUnits(torch.autograd.Function):
    """Identity on a parameter whose backward clips each unit's gradient to ``clip × max(‖θ_unit‖, 1e-3)``."""

    @staticmethod
    def forward(ctx, param: Tensor, clip: float) -> Tensor:
        ctx.save_for_backward(param)
        ctx.clip = clip
        return param.view_as(param)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (param,) = ctx.saved_tensors
        dims = tuple(range(1, grad.ndim)) if grad.ndim > 1 else (0,)
        weight = param.detach().norm(dim=dims, keepdim=True).clamp_min(1e-3)
        norm = grad.norm(dim=dims, keepdim=True).clamp_min(1e-12)
        return grad * (ctx.clip * weight / norm).clamp(max=1.0), None


class UnitClipped(nn.Module):
    """`inner` trained with unit-wise adaptive gradient clipping (Brock et al. 2021, "AGC").

    Every parameter's gradient is rescaled unit by unit (a unit is a row along the first dimension: one neuron
    or filter; a 1-D parameter is one unit) so that ‖g_unit‖ ≤ clip · max(‖θ_unit‖, 10⁻³): the step never moves
    a unit by more than the fraction ``lr · clip`` of its norm, whatever the curvature. The forward pass is
    `inner`'s exactly. Written here because `landscape.train` has no gradient transform and clipping is the
    only treatment that needs one; `unwrap` gives the trained weights of `inner`.
    """

    def __init__(self, inner: nn.Module, clip: float) -> None:
        super().__init__()
        if not clip > 0:
            raise ValueError(f"clip must be positive, got {clip!r}")
        self.inner, self.clip = inner, float(clip)

    def forward(self, x: Tensor) -> Tensor:
        params = {n: _ClipUnits.apply(p, self.clip) for n, p in self.inner.named_parameters()}
        return torch.func.functional_call(self.inner, params, (x,))

    @staticmethod
    def unwrap(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The state dict of `inner` from that of the wrapper."""
        return {k.removeprefix("inner."): v for k, v in state.items()}


# ------------------------------------------------------------------------------------------------------------
# Probes


def quadratic_residual_variance(alphas: Tensor, losses: Tensor) -> float:
    """Variance of f(α) − q(α), q the least-squares quadratic through the slice, over f(0)²  (0 for any parabola).

    A slice roughness that a quadratic bowl of any curvature scores 0 on and that does not grow with curvature:
    only the part of the slice that no parabola explains counts. Non-finite losses give inf.
    """
    alphas, losses = alphas.double().cpu(), losses.double().cpu()
    if not bool(torch.isfinite(losses).all()):
        return math.inf
    design = torch.stack([torch.ones_like(alphas), alphas, alphas**2], dim=1)
    coef = torch.linalg.lstsq(design, losses[:, None]).solution
    residual = losses - (design @ coef)[:, 0]
    centre = float(losses[alphas.abs().argmin()])
    return float(residual.var(correction=0)) / max(centre**2, 1e-24)


def _config(settings: Mapping, seed: int, lr: float, steps: int, warmup: int = 0, **extra) -> TrainConfig:
    full = settings["batch_size"] is None
    return TrainConfig(model=settings["model"], model_config=settings["model_config"],
                       optimizer="gd" if full else "sgd", lr=lr, momentum=0.0, batch_size=settings["batch_size"],
                       steps=steps, warmup_steps=warmup, loss=settings["loss"], seed=seed, **extra)  # fmt: skip


def _children_barrier(
    model: nn.Module, settings: Mapping, data: Dataset, sample, lr: float, seed: int
) -> float:
    """Frankle et al.'s instability at this point: the loss barrier between two children trained from it for
    ``children_steps`` steps with different data orders (inf when a child diverged)."""
    children = []
    for child in (1, 2):
        config = _config(settings, 1000 * seed + child, lr, settings["children_steps"],
                         eval_every=settings["children_steps"])  # fmt: skip
        result = train(config, data=data, start=model)
        if result.status == "diverged":
            return math.inf
        twin = copy.deepcopy(model)
        twin.load_state_dict(result.state_dict)
        children.append(twin)
    loss_fn = loss_function(settings["loss"])
    return interpolation_barrier(*children, loss_fn, sample, num_points=settings["barrier_points"]).height


def _vmappable_loss(name: str):
    """`loss_function(name)` in a form `torch.func.vmap` accepts: the library's squared loss builds its one-hot
    targets with `F.one_hot`, which reads the labels' maximum (data-dependent control flow under vmap)."""
    if name != "mse":
        return loss_function(name)

    def mse(outputs: Tensor, targets: Tensor) -> Tensor:
        classes = torch.arange(outputs.shape[-1], device=outputs.device)
        onehot = (targets[..., None] == classes).to(outputs.dtype)
        return 0.5 * (outputs - onehot).pow(2).sum(-1).mean()

    return mse


def early_probes(model: nn.Module, settings: Mapping, data: Dataset, lr: float, seed: int,
                 start: Tensor | None = None) -> tuple[dict, Tensor | None]:  # fmt: skip
    """Every probe of `PROBES` at one point of a run, and the top eigenvector (to warm-start the next point).

    On the first ``probe_samples`` training signals with the run's loss; `lr` is the run's peak step size.
    """
    loss_fn = loss_function(settings["loss"])
    x, y = data.train
    sample = (x[: settings["probe_samples"]], y[: settings["probe_samples"]])
    ms = settings["measure_seed"]
    op = HessianOperator(model, loss_fn, sample)
    top = warm_top_eigenpair(op, start, tol=settings["tol"], max_matvecs=settings["max_matvecs"], seed=ms)
    lam = float(top.values[0])
    density = spectral_density(op, num_probes=1, num_steps=settings["slq_steps"], seed=ms)
    alphas = torch.linspace(-settings["slice_radius"], settings["slice_radius"], settings["slice_points"])
    roughness = max(
        quadratic_residual_variance(alphas, slice_1d(model, loss_fn, sample, random_direction(model, seed=ms + i),
                                                     alphas).losses)
        for i in range(settings["slice_directions"])
    )  # fmt: skip
    grad = torch.autograd.grad(loss_fn(model(sample[0]), sample[1]), list(model.parameters()))
    grad_sq = float(sum(g.double().square().sum() for g in grad))
    n_noise = settings["noise_samples"]
    noise = complexity.gradient_noise(model, _vmappable_loss(settings["loss"]), x[:n_noise], y[:n_noise])
    probes = {
        "lambda_max": lam,
        "eta_lambda": lr * lam / 2,
        "trace_per_param": hessian_trace(op, settings["trace_matvecs"], seed=ms).estimate / op.dim,
        "negative_mass": float(density.weights[density.nodes < 0].sum()),
        "slice_roughness": roughness,
        "child_barrier": _children_barrier(model, settings, data, sample, lr, seed),
        "grad_norm": math.sqrt(grad_sq),
        "noise_scale": noise / max(grad_sq, 1e-30),
    }
    return probes, top.vectors[:, 0]


def early_loss_features(losses: Sequence[float], k: int, horizon: int) -> dict:
    """Predictor set B at step k from the full training losses L(0), ..., L(k) (one per step).

    loss_ratio L(k)/L(0); loss_slope, the least-squares slope of log L over the last half of the steps; loss_spike,
    the largest one-step rise max_t (L(t) − L(t−1))/L(0); loss_extrapolated, L at the end of the budget from a
    power law log L = a + b log(t + 1) fitted to steps 1..k (a learning-curve extrapolation in the spirit of Domhan
    et al. 2015), as a ratio to L(0). At k = 0 there is no curve yet: ratio 1, the rest 0.
    """
    curve = torch.tensor(losses[: k + 1], dtype=torch.float64)
    first = float(curve[0])
    if k == 0:
        return {"loss_ratio": 1.0, "loss_slope": 0.0, "loss_spike": 0.0, "loss_extrapolated": 1.0}
    if not bool(torch.isfinite(curve).all()):
        return {
            "loss_ratio": math.inf,
            "loss_slope": math.inf,
            "loss_spike": math.inf,
            "loss_extrapolated": math.inf,
        }
    logs = curve.clamp_min(1e-12).log()
    steps = torch.arange(k + 1, dtype=torch.float64)
    tail = slice(k // 2, k + 1)
    slope = float(torch.linalg.lstsq(torch.stack([torch.ones_like(steps[tail]), steps[tail]], 1),
                                     logs[tail, None]).solution[1, 0])  # fmt: skip
    u = torch.log1p(steps[1:])
    fit = torch.linalg.lstsq(torch.stack([torch.ones_like(u), u], 1), logs[1:, None]).solution[:, 0]
    extrapolated = math.exp(min(float(fit[0] + fit[1] * math.log1p(horizon)), 700.0))
    return {"loss_ratio": float(curve[k]) / first, "loss_slope": slope,
            "loss_spike": max(0.0, float((curve[1:] - curve[:-1]).max()) / first),
            "loss_extrapolated": extrapolated / first}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# One seed


def _outcomes(
    early: Sequence[float], result, offset: int, first_loss: float, target: float, num_classes: int
) -> dict:
    """The targets of one branch: the phase-1 losses `early`, then phase 2's history shifted by `offset` steps."""
    diverged = result is None or result.status == "diverged"
    curve = [(t, v) for t, v in enumerate(early)]
    if result is not None:
        curve += [(offset + row["step"], row["train_loss"]) for row in result.history[1:]]
    reached = next((t for t, v in curve if math.isfinite(v) and v <= target), None)
    peak = max((v for _, v in curve if math.isfinite(v)), default=math.inf)
    final_loss = math.nan if diverged else result.final["train_loss"]
    return {
        "diverged": diverged,
        "final_loss": final_loss,
        # a diverged network predicts no better than chance
        "test_acc": 1.0 / num_classes if diverged else result.final["test_acc"],
        "steps_to_target": reached,
        "catapult": (not diverged) and peak > first_loss and reached is not None,
        "peak_loss_ratio": peak / first_loss,
    }


def _seed(settings: Mapping, data: Dataset, seed: int) -> tuple[dict, nn.Module | None]:
    """One seed of the configuration: its row and its final control network (None when it diverged)."""
    tic = time.perf_counter()
    loss_fn = loss_function(settings["loss"])
    x, y = data.train
    sample = (x[: settings["probe_samples"]], y[: settings["probe_samples"]])
    model = build_model(settings["model"], input_shape=data.input_shape, num_classes=data.num_classes, seed=seed,
                        **settings["model_config"])  # fmt: skip
    lambda0 = float(top_eigenvalues(HessianOperator(model, loss_fn, sample), 1, tol=settings["tol"],
                                    seed=settings["measure_seed"]).values[0])  # fmt: skip
    lr = settings["c"] * 2.0 / lambda0
    probe_steps = tuple(settings["probe_steps"])
    horizon, k_branch = settings["steps"], max(probe_steps)
    warmup = k_branch if settings["warmup"] else 0
    n_proxy = settings["proxy_samples"]
    row = {"seed": seed, "lambda0": lambda0, "lr": lr,
           **{f"proxy_{k}": v for k, v in zero_cost_proxies(model, loss_fn, x[:n_proxy], y[:n_proxy],
                                                           ntk_samples=settings["ntk_samples"]).items()}}  # fmt: skip
    phase1 = train(_config(settings, seed, lr, k_branch, warmup, eval_every=1, checkpoint_steps=probe_steps),
                   data=data, start=model)  # fmt: skip
    early = [h["train_loss"] for h in phase1.history]
    first = early[0]
    row["initial_loss"] = first
    start = None
    for k in probe_steps:
        features = (
            early_loss_features(early, k, horizon) if k < len(early) else dict.fromkeys(EARLY_LOSS, math.inf)
        )
        row |= {f"{name}@{k}": v for name, v in features.items()}
        probes = dict.fromkeys(PROBES, math.nan)
        if k in phase1.checkpoints:
            at_k = copy.deepcopy(model)
            at_k.load_state_dict(phase1.checkpoints[k])
            probes, start = early_probes(at_k, settings, data, lr, seed, start)
            probes["learning_rate"] = learning_rate(phase1.config, k, k_branch)
        row |= {f"{name}@{k}": v for name, v in probes.items()}
    target = settings["target_fraction"] * first
    row["target_loss"] = target
    final = None
    for branch in BRANCHES if settings["branches"] else ("control",):
        result = None
        if phase1.status != "diverged":
            at_k = copy.deepcopy(model)
            at_k.load_state_dict(phase1.state_dict)
            branch_lr = lr / 2 if branch == "halve_lr" else lr
            start_model = UnitClipped(at_k, settings["clip"]) if branch == "clip" else at_k
            # the divergence rule of phase 1, relative to the initial loss, not to the loss at step K
            factor = max(DIVERGENCE_FACTOR * first / max(early[-1], 1e-12), 1.0 + 1e-6)
            config = _config(settings, 10_000 + seed, branch_lr, horizon - k_branch, eval_every=settings["eval_every"],
                             divergence_factor=factor)  # fmt: skip
            result = train(config, data=data, start=start_model)
            if branch == "control" and result.status != "diverged":
                final = copy.deepcopy(model)
                final.load_state_dict(result.state_dict)
        outcomes = _outcomes(early, result, k_branch, first, target, data.num_classes)
        row |= {f"{name}/{branch}": v for name, v in outcomes.items()}
    row["seconds"] = time.perf_counter() - tic
    return row, final


def configuration_task(settings: Mapping) -> dict:
    """Train, probe and branch every seed of one configuration, then measure its seeds against each other.

    `settings`: model, model_config, loss, c, batch_size (None: full batch), warmup, seeds, num_train, steps,
    probe_steps, eval_every, children_steps, barrier_points, probe_samples, tol, max_matvecs, trace_matvecs,
    slq_steps, slice_directions, slice_points, slice_radius, noise_samples, proxy_samples, ntk_samples,
    target_fraction, clip, branches (False: the control only), measure_seed.

    Returns ``{"rows": [...]}``, one row per seed: λ0, η, the proxies (``proxy_<name>``), the initial loss, the
    early-loss features and probes at each probe step (``<name>@<k>``), and each branch's outcomes
    (``<outcome>/<branch>``); and ``"seed_barrier"``, the mean loss barrier between the final control networks
    of the seeds after permutation alignment (NaN when fewer than two did not diverge).
    """
    data = task_data(settings["num_train"])
    rows, finals = [], {}
    for seed in settings["seeds"]:
        row, final = _seed(settings, data, seed)
        rows.append(row)
        if final is not None:
            finals[seed] = final
    x, y = data.train
    sample = (x[: settings["probe_samples"]], y[: settings["probe_samples"]])
    barriers = []
    for a, b in itertools.combinations(sorted(finals), 2):
        aligned = align_permutation(finals[a], finals[b], seed=settings["measure_seed"]) if settings["model"] == "mlp" \
            else finals[b]  # fmt: skip
        barriers.append(interpolation_barrier(finals[a], aligned, loss_function(settings["loss"]), sample,
                                              num_points=settings["barrier_points"]).height)  # fmt: skip
    return {"rows": rows, "seed_barrier": sum(barriers) / len(barriers) if barriers else math.nan}
