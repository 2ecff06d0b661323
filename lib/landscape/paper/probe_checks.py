"""Checks of the curvature probes against exact dense float64 linear algebra, on small seeded testbeds.

Used by the validation chapter (`notebooks/validation.py`, `landscape.paper.experiments.validation`):
small MLPs on synthetic teacher data, trained full-batch so that the Hessian is that of a (near-)minimum,
whose D x D Hessian `dense_hessian` computes exactly. Nothing here depends on the data, model or training
modules of the experiments.

Each check of a probe against its exact answer is a function returning a `Check`: what was checked, the
measured number (with its confidence interval where it is a rate over seeds), the threshold and its outcome:
pass, fail, or "not testable" where the interval it rests on is undefined (e.g. a cluster bootstrap of a
non-mean statistic over fewer than `landscape.paper.stats.SMALL_SAMPLE` seeds), with the reason.

References:
    Z. Yao et al. (2020), PyHessian (power iteration, SLQ); M. F. Hutchinson (1989); R. A. Meyer et al.
    (2021), Hutch++; B. Ghorbani et al. (2019), SLQ densities; L. Dinh et al. (2017), sharp minima can generalize.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..density import gaussian_smoothing
from ..eigen import power_iteration, top_eigenvalues
from ..operators import HessianOperator, LinearOperator, make_generator
from ..sharpness import normalized_sharpness
from ..trace import TRACE_METHODS, hessian_trace
from . import stats
from .glue import format_estimate, format_number

__all__ = [
    "ACTIVATIONS",
    "CALIBRATIONS",
    "NOMINAL_COVERAGE",
    "NOT_TESTABLE",
    "TRACE_RATES",
    "Check",
    "Testbed",
    "at_least",
    "at_most",
    "calibration",
    "check_coverage",
    "check_lanczos_error",
    "check_rescaling",
    "check_residuals_certify",
    "check_trace_rate",
    "check_undeflated_copies",
    "checks_table",
    "compare_eigenvalues",
    "coverage_interval",
    "make_testbed",
    "mlp",
    "nominal_coverage",
    "rate_interval",
    "require_columns",
    "rescale_layers",
    "rescaling_study",
    "rescaling_summary",
    "smoothed_density",
    "stderr_samples",
    "teacher_data",
    "trace_errors",
    "trace_summary",
]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass
class Testbed:
    """A small float64 classification problem: model, loss and the full data set (one batch)."""

    name: str
    model: nn.Module
    inputs: Tensor
    targets: Tensor
    train_losses: list[float]

    loss_fn = staticmethod(F.cross_entropy)

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        return self.inputs, self.targets

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def loss(self) -> float:
        with torch.no_grad():
            return float(self.loss_fn(self.model(self.inputs), self.targets))


def mlp(sizes: Sequence[int], activation: str = "tanh", seed: int = 0) -> nn.Sequential:
    """A float64 MLP `sizes[0] -> ... -> sizes[-1]` with `activation` between layers, initialised from
    `seed`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
    gen = make_generator(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out, dtype=torch.float64)
        bound = 1 / math.sqrt(n_in)
        with torch.no_grad():
            linear.weight.copy_((torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            linear.bias.copy_((torch.rand(n_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def teacher_data(
    num_samples: int, in_dim: int, num_classes: int, *, label_noise: float = 0.1, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Gaussian inputs labelled by a random tanh teacher (argmax), a fraction `label_noise` relabelled at
    random."""
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must lie in [0, 1), got {label_noise}")
    gen = make_generator(seed)
    inputs = torch.randn(num_samples, in_dim, generator=gen, dtype=torch.float64)
    teacher = mlp([in_dim, 4 * num_classes, num_classes], "tanh", seed=seed + 1)
    with torch.no_grad():
        targets = teacher(inputs).argmax(1)
    flip = torch.rand(num_samples, generator=gen, dtype=torch.float64) < label_noise
    targets[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=gen)
    return inputs, targets


def make_testbed(
    activation: str = "tanh",
    *,
    in_dim: int = 8,
    hidden: Sequence[int] = (16,),
    num_classes: int = 3,
    num_samples: int = 256,
    train_steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
) -> Testbed:
    """An MLP trained full-batch with Adam for `train_steps` steps on teacher data (all seeded)."""
    inputs, targets = teacher_data(num_samples, in_dim, num_classes, seed=seed)
    model = mlp([in_dim, *hidden, num_classes], activation, seed=seed + 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(train_steps):
        optimiser.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    for p in model.parameters():
        p.grad = None
    name = (
        f"{activation} MLP {'-'.join(str(s) for s in [in_dim, *hidden, num_classes])}, {num_samples} samples"
    )
    return Testbed(name, model, inputs, targets, losses)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a ValueError naming the columns of `columns` that `frame` (a `what`) lacks.

    >>> require_columns(pd.DataFrame({"a": [1]}), ["a", "b"], "trace table")
    Traceback (most recent call last):
    ...
    ValueError: the trace table lacks columns ['b'] (it has ['a'])
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"the {what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the {what} lacks columns {missing} (it has {list(frame.columns)})")


def compare_eigenvalues(
    op: LinearOperator,
    exact: Tensor | np.ndarray,
    k: int,
    *,
    tol: float = 1e-8,
    power_tol: float = 1e-3,
    power_max_iter: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Top-k eigenvalues by Lanczos and by power iteration with and without deflation, against `exact`.

    Lanczos is compared with the k algebraically largest exact eigenvalues, power iteration with the k largest
    in magnitude (what it targets). One row per (method, index): value, exact value, absolute and relative
    error, the method's residual ‖Av − λv‖, products used, convergence flag.
    """
    exact = torch.as_tensor(exact, dtype=torch.float64).reshape(-1)
    by_value = exact.sort(descending=True).values[:k]
    by_magnitude = exact[exact.abs().argsort(descending=True)][:k]
    power = {"tol": power_tol, "max_iter": power_max_iter, "seed": seed}
    runs = [
        ("Lanczos", top_eigenvalues(op, k, tol=tol, seed=seed), by_value),
        ("power, deflated", power_iteration(op, k, deflate=True, **power), by_magnitude),
        ("power, undeflated", power_iteration(op, k, deflate=False, **power), by_magnitude),
    ]
    rows = []
    for method, result, reference in runs:
        for i in range(k):
            value, truth = float(result.values[i]), float(reference[i])
            rows.append({
                "method": method, "index": i + 1, "value": value, "exact": truth,
                "abs_error": abs(value - truth), "rel_error": abs(value - truth) / abs(truth),
                "residual": float(result.residuals[i]), "num_matvecs": result.num_matvecs,
                "converged": result.converged,
            })  # fmt: skip
    return pd.DataFrame(rows)


def trace_errors(
    op: LinearOperator,
    exact_trace: float,
    budgets: Sequence[int],
    *,
    methods: Sequence[str] = TRACE_METHODS,
    seeds: Sequence[int] = range(10),
) -> pd.DataFrame:
    """Every (method, budget, seed) trace estimate with its standard error and its actual error."""
    unknown = [m for m in methods if m not in TRACE_METHODS]
    if unknown:
        raise ValueError(f"unknown trace methods {unknown}; expected some of {TRACE_METHODS}")
    rows = []
    for method in methods:
        for budget in budgets:
            for seed in seeds:
                est = hessian_trace(op, int(budget), method=method, seed=int(seed))
                rows.append({
                    "method": method, "budget": int(budget), "seed": int(seed), "estimate": est.estimate,
                    "stderr": est.stderr, "error": est.estimate - exact_trace,
                    "rel_error": abs(est.estimate - exact_trace) / abs(exact_trace),
                    "rel_stderr": est.stderr / abs(exact_trace), "num_matvecs": est.num_matvecs,
                })  # fmt: skip
    return pd.DataFrame(rows)


def trace_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (method, budget): RMS relative error over seeds, mean reported relative stderr, and the coverage —
    the fraction of seeds whose error lies within two reported standard errors."""
    require_columns(
        errors, ["method", "budget", "seed", "error", "stderr", "rel_error", "rel_stderr"], "trace table"
    )
    within = (errors["error"].abs() <= 2 * errors["stderr"]).rename("within")
    frame = errors.assign(sq=errors["rel_error"] ** 2, within=within)
    grouped = frame.groupby(["method", "budget"], sort=False)
    summary = grouped.agg(
        rms_rel_error=("sq", lambda s: float(np.sqrt(s.mean()))),
        mean_rel_stderr=("rel_stderr", "mean"),
        coverage=("within", "mean"),
        seeds=("seed", "count"),
    )
    return summary.reset_index()


def smoothed_density(eigenvalues: Tensor | np.ndarray, grid: Tensor | np.ndarray, sigma: float) -> np.ndarray:
    """The exact spectral measure (1/D) Σ δ(λ_j) smoothed by the Gaussian kernel SLQ uses, on `grid`."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1)
    return gaussian_smoothing(lam, torch.full_like(lam, 1 / lam.numel()), grid, sigma).numpy()


def rescale_layers(model: nn.Sequential, layer: int, alpha: float) -> nn.Sequential:
    """Dinh et al. (2017)'s reparametrisation: a copy with Linear layer `layer` (0-based, counting Linear
    layers only) multiplied by α (weight and bias) and the next Linear layer's weight by 1/α.

    For a positively homogeneous activation (ReLU) between them the function is unchanged for every α > 0.
    """
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential, got {type(model).__name__}")
    positions = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    if not 0 <= layer < len(positions) - 1:
        raise ValueError(
            f"layer must index a Linear layer followed by another: 0..{len(positions) - 2}, got {layer}"
        )
    first, second = positions[layer], positions[layer + 1]
    between = [model[i] for i in range(first + 1, second)]
    if not all(isinstance(m, nn.ReLU) for m in between):
        raise ValueError(
            f"rescaling preserves the function only through ReLU activations; found "
            f"{[type(m).__name__ for m in between]} between Linear layers {layer} and {layer + 1}"
        )
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled[first].weight.mul_(alpha)
        scaled[first].bias.mul_(alpha)
        scaled[second].weight.div_(alpha)
    return scaled


def rescaling_study(
    testbed: Testbed, alphas: Sequence[float], *, layer: int = 0, tol: float = 1e-8, seed: int = 0
) -> pd.DataFrame:
    """λmax of the Hessian and normalised sharpness at Dinh-rescaled copies of a ReLU testbed, one row per
    α."""
    rows = []
    for alpha in alphas:
        model = rescale_layers(testbed.model, layer, float(alpha))
        with torch.no_grad():
            loss = float(testbed.loss_fn(model(testbed.inputs), testbed.targets))
        top = top_eigenvalues(HessianOperator(model, testbed.loss_fn, testbed.data), 1, tol=tol, seed=seed)
        norm = normalized_sharpness(model, testbed.loss_fn, testbed.data, tol=tol, trace_matvecs=0, seed=seed)
        rows.append({
            "alpha": float(alpha), "loss": loss, "lambda_max": float(top.values[0]),
            "lambda_max_residual": float(top.residuals[0]), "normalized_sharpness": norm.lambda_max,
            "normalized_residual": norm.residual,
        })  # fmt: skip
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# Checks: each compares a measured number with its threshold and says pass or fail.

NOMINAL_COVERAGE = math.erf(math.sqrt(2))
"""P(|Z| ≤ 2) for a standard normal Z (0.9545): the coverage of ±2 exact standard errors."""

TRACE_RATES = {"hutchinson": (-0.5, -0.5), "hutch++": (-math.inf, -0.5), "xtrace": (-math.inf, -0.5)}
"""Theoretical range of the slope of log RMS error against log budget: −½ for Hutchinson's Monte-Carlo
average; at least as fast for the low-rank methods (−1 for a positive semi-definite matrix in the worst case,
faster on a fast-decaying spectrum and as the budget nears D; Meyer et al. 2021, Epperly et al. 2024)."""


NOT_TESTABLE = "not testable"
"""The outcome of a check whose interval is undefined (`Check.passed` is None)."""


@dataclass(frozen=True)
class Check:
    """One check of a probe against its exact answer.

    Attributes:
        name: what is checked, in words.
        measured: the measured number.
        criterion: the rule it must meet, with the threshold (e.g. ``"≤ 1e-06"``).
        passed: whether it met it; None when it cannot be decided here (its interval is undefined).
        low, high: a confidence interval of `measured` where it is a rate over seeds (NaN otherwise, or when
            the interval is undefined).
        reason: why the check is not testable (empty otherwise).

    >>> print(Check("slope", -0.5, "interval meets -0.5", None, reason="too few seeds"))
    slope: -0.5 (interval meets -0.5): not testable (too few seeds)
    """

    name: str
    measured: float
    criterion: str
    passed: bool | None
    low: float = math.nan
    high: float = math.nan
    reason: str = ""

    def __post_init__(self) -> None:
        if self.passed is None and not self.reason:
            raise ValueError(f"check {self.name!r}: say why it is not testable (reason)")
        if self.passed is not None and not isinstance(self.passed, bool):
            raise TypeError(f"check {self.name!r}: passed must be True, False or None, got {self.passed!r}")

    @property
    def outcome(self) -> str:
        """``"pass"``, ``"fail"`` or `NOT_TESTABLE`."""
        return NOT_TESTABLE if self.passed is None else "pass" if self.passed else "fail"

    @property
    def has_interval(self) -> bool:
        """Whether the check carries a (defined) confidence interval."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    def __str__(self) -> str:
        text = (
            format_estimate(self.measured, self.low, self.high)
            if self.has_interval
            else format_number(self.measured)
        )
        outcome = f"{self.outcome} ({self.reason})" if self.passed is None else self.outcome
        return f"{self.name}: {text} ({self.criterion}): {outcome}"


def at_most(name: str, measured: float, tol: float) -> Check:
    """Passes when `measured` ≤ `tol` (a NaN fails).

    >>> at_most("error", 1e-12, 1e-10).outcome, at_most("error", 1e-3, 1e-10).outcome
    ('pass', 'fail')
    """
    measured = float(measured)
    return Check(name, measured, f"≤ {format_number(tol, 2)}", bool(measured <= tol))


def at_least(name: str, measured: float, bound: float) -> Check:
    """Passes when `measured` ≥ `bound` (a NaN fails)."""
    measured = float(measured)
    return Check(name, measured, f"≥ {format_number(bound)}", bool(measured >= bound))


def checks_table(checks: Sequence[Check]) -> pd.DataFrame:
    """One row per check: check, measured, with interval (``format_estimate`` text: the measured number and
    its interval where it has one), criterion, outcome, reason (why not testable; empty otherwise)."""
    return pd.DataFrame([
        {
            "check": c.name, "measured": c.measured,
            "with interval": format_estimate(c.measured, c.low, c.high) if c.has_interval else "",
            "criterion": c.criterion, "outcome": c.outcome, "reason": c.reason,
        }
        for c in checks
    ], columns=["check", "measured", "with interval", "criterion", "outcome", "reason"])  # fmt: skip


def _rows(eigs: pd.DataFrame, method: str) -> pd.DataFrame:
    require_columns(eigs, ["method", "index", "value", "exact", "rel_error", "residual"], "eigenvalue table")
    rows = eigs[eigs["method"] == method]
    if rows.empty:
        raise ValueError(
            f"no rows for method {method!r} in the eigenvalue table; has {sorted(set(eigs['method']))}"
        )
    return rows


def check_lanczos_error(eigs: pd.DataFrame, tol: float = 1e-6) -> Check:
    """The largest relative error of the Lanczos eigenvalues (a `compare_eigenvalues` table) is at most
    `tol`."""
    return at_most(
        "Lanczos: largest relative error of the top-k eigenvalues",
        _rows(eigs, "Lanczos")["rel_error"].max(),
        tol,
    )


def check_residuals_certify(eigs: pd.DataFrame, exact: Tensor | np.ndarray) -> Check:
    """Every reported residual r = ‖Av − λv‖ (unit v) bounds the distance from λ to the nearest exact
    eigenvalue.

    For a symmetric A some eigenvalue lies within r of any Rayleigh quotient λ (Parlett 1998, Thm. 4.5.1).
    The exact eigenvalues carry rounding errors of their own, about D·ε·max|λ| for `eigvalsh`, which is added
    to each residual. Measured: the largest ratio distance / (residual + rounding) over all methods and rows
    of a `compare_eigenvalues` table; passes at ≤ 1.
    """
    require_columns(eigs, ["value", "residual"], "eigenvalue table")
    exact = torch.as_tensor(exact, dtype=torch.float64).reshape(-1).numpy()
    values = eigs["value"].to_numpy(dtype=float)
    nearest = np.abs(values[:, None] - exact[None, :]).min(axis=1)
    rounding = exact.size * np.finfo(np.float64).eps * np.abs(exact).max()
    ratio = nearest / (eigs["residual"].to_numpy(dtype=float) + rounding)
    measured = float(ratio.max()) if ratio.size else math.nan
    return Check(
        "residuals bound the distance to an exact eigenvalue (largest ratio)",
        measured,
        "≤ 1",
        bool(measured <= 1),
    )


def check_undeflated_copies(eigs: pd.DataFrame, tol: float = 1e-2) -> Check:
    """Power iteration without deflation returns k copies of the dominant eigenvalue: every value lies within
    a relative `tol` of it, while the exact k-th eigenvalue (by magnitude) lies farther away than that.

    Measured: the largest relative distance of the undeflated values from the dominant exact eigenvalue.
    """
    rows = _rows(eigs, "power, undeflated").sort_values("index")
    dominant = float(rows["exact"].iloc[0])
    measured = float((rows["value"] - dominant).abs().max() / abs(dominant))
    exact_gap = float(abs(rows["exact"].iloc[-1] - dominant) / abs(dominant))
    passed = len(rows) > 1 and measured <= tol < exact_gap
    return Check(
        f"undeflated power iteration returns {len(rows)} copies of λmax (largest relative distance)",
        measured,
        f"≤ {format_number(tol, 2)}, exact k-th at {format_number(exact_gap, 2)}",
        bool(passed),
    )


def _method_rows(errors: pd.DataFrame, method: str, columns: Sequence[str]) -> pd.DataFrame:
    require_columns(errors, ["method", "budget", "seed", *columns], "trace table")
    rows = errors[errors["method"] == method]
    if rows.empty:
        raise ValueError(f"no trace estimates for method {method!r}; has {sorted(set(errors['method']))}")
    return rows.reset_index(drop=True)


def rate_interval(
    errors: pd.DataFrame, method: str, *, level: float = stats.LEVEL, n_resamples: int = 2000, seed: int = 0
) -> stats.Interval:
    """The slope of log RMS relative error against log budget (a `trace_errors` table, one method), with a
    cluster-bootstrap interval over seeds (a seed's estimates at all budgets are resampled together: they
    share probes).

    The slope is not a mean, so with fewer than `stats.SMALL_SAMPLE` seeds its bounds are NaN and the
    interval's ``method`` says why (`check_trace_rate` is then not testable)."""
    rows = _method_rows(errors, method, ["rel_error"])
    budgets, budget_code = np.unique(rows["budget"].to_numpy(), return_inverse=True)
    if budgets.size < 2:
        raise ValueError(f"a rate needs at least two budgets, got {budgets.tolist()}")
    squared = rows["rel_error"].to_numpy(dtype=float) ** 2
    design = np.log(budgets.astype(float))

    def slope(positions: np.ndarray) -> float:
        positions = positions.astype(int)
        counts = np.bincount(budget_code[positions], minlength=budgets.size)
        mean_square = np.bincount(budget_code[positions], weights=squared[positions], minlength=budgets.size)
        return float(np.polyfit(design, 0.5 * np.log(mean_square / counts), 1)[0])

    frame = pd.DataFrame({"row": np.arange(len(rows), dtype=float), "seed": rows["seed"]})
    return stats.cluster_bootstrap_ci(
        frame, "row", "seed", slope, level=level, n_resamples=n_resamples, seed=seed
    )


def coverage_interval(
    errors: pd.DataFrame, method: str, *, level: float = stats.LEVEL, n_resamples: int = 2000, seed: int = 0
) -> stats.Interval:
    """The fraction of estimates (all budgets) within two reported standard errors of the exact trace, with a
    cluster-bootstrap interval over seeds (a seed's estimates share probes across budgets).

    With fewer than `stats.SMALL_SAMPLE` seeds: the Student-t interval over the seeds' coverages (every seed
    has the same budgets, so its estimate is still the pooled fraction). A fraction lies in [0, 1], so the
    bounds are clipped to it (the t-interval of few seeds can reach past 1)."""
    rows = _method_rows(errors, method, ["error", "stderr"])
    within = rows.assign(within=(rows["error"].abs() <= 2 * rows["stderr"]).astype(float))
    interval = stats.cluster_bootstrap_ci(
        within, "within", "seed", level=level, n_resamples=n_resamples, seed=seed
    )
    if math.isnan(interval.low) or math.isnan(interval.high):
        return interval
    return replace(interval, low=max(interval.low, 0.0), high=min(interval.high, 1.0))


def stderr_samples(method: str, budget: int) -> int:
    """How many samples a trace estimator's standard error is the standard deviation of (`landscape.trace`):
    all m probes for Hutchinson, the m − 2⌊m/3⌋ probes of Hutch++'s Hutchinson part, the ⌊m/2⌋ leave-one-out
    estimates of XTrace."""
    budget = int(budget)
    samples = {"hutchinson": budget, "hutch++": budget - 2 * (budget // 3), "xtrace": budget // 2}
    if method not in samples:
        raise ValueError(f"unknown trace method {method!r}; expected one of {sorted(samples)}")
    return samples[method]


def nominal_coverage(method: str, budgets: Sequence[int]) -> float:
    """The coverage ±2 honest standard errors would have, averaged over `budgets` (one entry per estimate).

    A standard error estimated from n samples of a normal mean gives (estimate − truth)/stderr ~ Student's t
    with n − 1 degrees of freedom, so ±2 of them cover the truth with probability 2 F_{t, n−1}(2) − 1: 0.914
    for n = 8, 0.95 for n = 64, → `NOMINAL_COVERAGE`. This is what calibrated error bars reach at small budgets.

    >>> round(nominal_coverage("hutchinson", [8]), 3), round(nominal_coverage("hutchinson", [10**6]), 3)
    (0.914, 0.954)
    """
    from scipy.stats import t as student

    dof = np.array([stderr_samples(method, b) - 1 for b in budgets], dtype=float)
    if dof.size == 0 or (dof < 1).any():
        raise ValueError(f"{method}: every budget needs at least two samples, got budgets {list(budgets)}")
    return float(np.mean(2 * student.cdf(2.0, dof) - 1))


def _undefined(low: float, high: float) -> bool:
    return math.isnan(float(low)) or math.isnan(float(high))


def check_trace_rate(
    method: str,
    slope: float,
    low: float,
    high: float,
    *,
    theory: tuple[float, float] | None = None,
    reason: str = "the slope's interval is undefined",
) -> Check:
    """The error of a trace estimator falls with the budget as its theory says: the interval [low, high] of
    the slope of log error against log budget (`rate_interval`) meets the theoretical range (`TRACE_RATES`,
    or `theory`). A NaN bound (e.g. too few seeds for a bootstrap) makes the check not testable, for
    `reason` (pass the interval's ``method``).

    >>> check_trace_rate("hutchinson", -0.48, -0.55, -0.41).outcome
    'pass'
    >>> check_trace_rate("hutchinson", -0.1, -0.2, -0.05).outcome
    'fail'
    >>> check_trace_rate("hutchinson", -0.5, float("nan"), float("nan"), reason="too few seeds").outcome
    'not testable'
    """
    if theory is None and method not in TRACE_RATES:
        raise ValueError(f"no theoretical rate for method {method!r}; expected one of {sorted(TRACE_RATES)}")
    fast, slow = TRACE_RATES[method] if theory is None else theory
    if fast == slow:
        criterion = f"interval meets {slow:g}"
    else:
        criterion = (
            f"interval meets [{fast:g}, {slow:g}]" if math.isfinite(fast) else f"interval meets ≤ {slow:g}"
        )
    name = f"{method}: slope of log RMS error against log budget"
    if _undefined(low, high):
        return Check(name, float(slope), criterion, None, reason=reason)
    passed = low <= slow and high >= fast
    return Check(name, float(slope), criterion, bool(passed), float(low), float(high))


def check_coverage(
    method: str,
    coverage: float,
    low: float,
    high: float,
    *,
    nominal: float = NOMINAL_COVERAGE,
    reason: str = "the coverage's interval is undefined",
) -> Check:
    """A trace estimator's error bars are not optimistic: the interval [low, high] of the coverage of ±2
    reported standard errors (`coverage_interval`) reaches the coverage honest error bars have
    (`nominal_coverage` of the estimates' budgets; 95.4% for many samples). Fails when the whole interval lies
    below it; not testable (for `reason`) when a bound is NaN. See `calibration` for the three-way reading.

    >>> check_coverage("xtrace", 0.82, 0.77, 0.87, nominal=0.93).outcome
    'fail'
    """
    name = f"{method}: coverage of ±2 reported standard errors"
    if _undefined(low, high):
        return Check(name, float(coverage), f"interval reaches {nominal:.3f}", None, reason=reason)
    passed = high >= nominal
    return Check(
        name, float(coverage), f"interval reaches {nominal:.3f}", bool(passed), float(low), float(high)
    )


CALIBRATIONS = ("calibrated", "optimistic", "conservative", "untested")
"""What `calibration` finds of an estimator's error bars."""


def calibration(low: float, high: float, nominal: float) -> str:
    """What the coverage interval [low, high] of ±2 reported standard errors says about the error bars:
    ``"optimistic"`` (the whole interval below the coverage honest error bars have, `nominal`),
    ``"conservative"`` (the whole interval above it), ``"calibrated"`` (it contains it) or ``"untested"`` (a
    NaN bound).

    >>> calibration(0.77, 0.87, 0.93), calibration(0.9, 0.97, 0.95), calibration(0.98, 1.0, 0.95)
    ('optimistic', 'calibrated', 'conservative')
    """
    if _undefined(low, high):
        return "untested"
    if high < nominal:
        return "optimistic"
    if low > nominal:
        return "conservative"
    return "calibrated"


def rescaling_summary(rescaled: pd.DataFrame) -> dict[str, float]:
    """The numbers of a `rescaling_study` table (it must contain α = 1, the reference): the range of α, the
    largest change of the loss, the factor by which λmax moves (max/min) and the relative spread of the
    normalised sharpness ((max − min) / value at α = 1)."""
    require_columns(rescaled, ["alpha", "loss", "lambda_max", "normalized_sharpness"], "rescaling table")
    reference = rescaled.loc[np.isclose(rescaled["alpha"], 1.0)]
    if reference.empty:
        raise ValueError(
            f"the rescaling study needs α = 1 as its reference, got α = {rescaled['alpha'].tolist()}"
        )
    reference = reference.iloc[0]
    ns = rescaled["normalized_sharpness"]
    return {
        "alpha_min": float(rescaled["alpha"].min()),
        "alpha_max": float(rescaled["alpha"].max()),
        "rescale_loss_change": float((rescaled["loss"] - reference["loss"]).abs().max()),
        "lmax_ratio": float(rescaled["lambda_max"].max() / rescaled["lambda_max"].min()),
        "ns_rel_spread": float((ns.max() - ns.min()) / abs(reference["normalized_sharpness"])),
    }


def check_rescaling(
    rescaled: pd.DataFrame, *, loss_tol: float = 1e-10, invariance_tol: float = 1e-6, min_ratio: float = 2.0
) -> list[Check]:
    """Three checks of a `rescaling_study` table (see `rescaling_summary`): the loss is unchanged, the
    normalised sharpness is invariant (relative spread), and λmax is not (it moves by a factor of at least
    `min_ratio`)."""
    summary = rescaling_summary(rescaled)
    return [
        at_most("rescaling: largest change of the loss", summary["rescale_loss_change"], loss_tol),
        at_most(
            "rescaling: relative spread of normalised sharpness", summary["ns_rel_spread"], invariance_tol
        ),
        at_least("rescaling: factor by which λmax moves", summary["lmax_ratio"], min_ratio),
    ]
