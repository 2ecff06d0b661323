"""The validation chapter (`notebooks/validation.py`): every curvature probe checked against its exact answer.

Two small float64 MLPs trained on teacher data (`landscape.paper.probe_checks.make_testbed`): a tanh MLP whose
D x D Hessian is computed densely and diagonalised by `torch.linalg.eigvalsh`, and a ReLU MLP for Dinh et
al.'s rescaling. The measurements are five tasks of one sweep (`landscape.sweep.parallel_map`), each cached by
its settings and code (`landscape.results.cached_json`):

- ``spectrum``: the exact spectrum, the operator's products against the dense Hessian, Lanczos and power
  iteration against the exact top-k eigenvalues, SLQ against the exact smoothed density;
- ``trace`` (one task per estimator): every (budget, seed) trace estimate on the dense Hessian, and the
  estimate through `HessianOperator` at the largest budget;
- ``rescaling``: λmax and normalised sharpness at rescaled copies of the ReLU MLP.

The chapter has pass/fail checks rather than verdicts: `chapter_checks` lists them (`probe_checks.Check`:
measured number, threshold, outcome), with cluster-bootstrap intervals over seeds for the trace estimators'
rates and coverages.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ... import DenseOperator, HessianOperator, dense_hessian, effective_rank, spectral_density
from ...results import cached_json
from ...sweep import parallel_map
from ...trace import TRACE_METHODS
from .. import probe_checks as pc

__all__ = [
    "GLUE_NAMES",
    "PROFILES",
    "Measurements",
    "Sizes",
    "Task",
    "chapter_checks",
    "eigen_summary",
    "measure",
    "plot_density",
    "plot_eigenvalues",
    "plot_rescaling",
    "plot_trace",
    "run_task",
    "task_settings",
    "tasks",
    "testbed_settings",
    "top_values",
    "trace_glue",
    "trace_method_summary",
]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and probe budgets of one profile."""

    in_dim: int  # input dimension of the teacher data and of both MLPs
    hidden: tuple[int, ...]  # hidden widths of the tanh MLP (its D x D Hessian is computed exactly)
    relu_hidden: tuple[int, ...]  # hidden widths of the ReLU MLP of the rescaling experiment
    num_classes: int  # classes of the teacher data
    num_samples: int  # samples (one full batch)
    train_steps: int  # full-batch Adam steps before probing
    k: int  # top eigenvalues compared with the exact ones
    budgets: tuple[int, ...]  # Hessian-vector products per trace estimate
    trace_seeds: int  # seeds per (estimator, budget)
    slq_probes: int  # SLQ probe vectors
    slq_steps: int  # Lanczos steps per SLQ probe
    alphas: tuple[float, ...]  # Dinh rescaling factors (must include 1, the reference)
    threads: int | None  # torch threads per task (None: leave the process's setting)
    workers: int | None  # Dask workers: 1 runs in this process, None one per core


PROFILES = {
    "smoke": Sizes(in_dim=6, hidden=(12,), relu_hidden=(12, 12), num_classes=3, num_samples=128,
                   train_steps=150, k=3, budgets=(12, 24, 48), trace_seeds=4, slq_probes=2, slq_steps=30,
                   alphas=(0.1, 1.0, 10.0), threads=1, workers=1),
    "paper": Sizes(in_dim=12, hidden=(24, 24), relu_hidden=(24, 24), num_classes=4, num_samples=1024,
                   train_steps=300, k=5, budgets=(8, 16, 32, 64, 128, 256, 512), trace_seeds=100,
                   slq_probes=8, slq_steps=80, alphas=tuple(np.logspace(-2, 2, 9).tolist()), threads=1,
                   workers=None),
    "full": Sizes(in_dim=32, hidden=(64, 64), relu_hidden=(64, 64), num_classes=10, num_samples=4096,
                  train_steps=1000, k=10, budgets=(8, 16, 32, 64, 128, 256, 512, 1024, 2048), trace_seeds=200,
                  slq_probes=16, slq_steps=150, alphas=tuple(np.logspace(-3, 3, 13).tolist()), threads=None,
                  workers=None),
}  # fmt: skip

LANCZOS_TOL = 1e-8  # tolerance Lanczos and the rescaling study run at
POWER_TOL = 1e-3  # PyHessian's stopping rule for power iteration
OPERATOR_TOL = 1e-10  # HessianOperator products against the dense Hessian (relative)
LANCZOS_MAX_ERROR = 1e-6  # the Lanczos check: largest relative eigenvalue error
COPIES_TOL = 1e-2  # the undeflated-power check: values within this of λmax are copies of it
TRACE_OPERATOR_TOL = 1e-8  # trace estimates through HessianOperator against the dense matrix (relative)
SLQ_L1_TOL = 0.1  # the SLQ check: L¹ distance to the exact smoothed density (out of 2)
GLUE_NAMES = {"hutchinson": "hutchinson", "hutch++": "hutchpp", "xtrace": "xtrace"}  # glue-key suffixes


# ------------------------------------------------------------------------------------------ the testbeds


def testbed_settings(sizes: Sizes, activation: str, seed: int) -> dict:
    """The arguments of `probe_checks.make_testbed` for the chapter's tanh or ReLU MLP (JSON-serialisable)."""
    hidden = {"tanh": sizes.hidden, "relu": sizes.relu_hidden}[activation]
    return {
        "activation": activation, "in_dim": sizes.in_dim, "hidden": list(hidden),
        "num_classes": sizes.num_classes, "num_samples": sizes.num_samples, "train_steps": sizes.train_steps,
        "seed": int(seed),
    }  # fmt: skip


@functools.cache
def _testbed(activation, in_dim, hidden, num_classes, num_samples, train_steps, seed) -> pc.Testbed:
    return pc.make_testbed(activation, in_dim=in_dim, hidden=hidden, num_classes=num_classes,
                           num_samples=num_samples, train_steps=train_steps, seed=seed)  # fmt: skip


def _testbed_of(settings: dict) -> pc.Testbed:
    return _testbed(**{**settings, "hidden": tuple(settings["hidden"])})


@functools.cache
def _exact(activation, in_dim, hidden, num_classes, num_samples, train_steps, seed):
    tb = _testbed(activation, in_dim, hidden, num_classes, num_samples, train_steps, seed)
    H = dense_hessian(tb.model, tb.loss_fn, tb.data)
    return H, torch.linalg.eigvalsh(H)  # ascending


def _exact_of(settings: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense Hessian of a testbed and its eigenvalues (ascending), once per process."""
    return _exact(**{**settings, "hidden": tuple(settings["hidden"])})


# ----------------------------------------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class Task:
    """One measurement of the sweep: `kind` is "spectrum", "trace" (of one `method`) or "rescaling"."""

    kind: str
    sizes: Sizes
    seed: int
    cache: str
    method: str | None = None


def tasks(sizes: Sizes, seed: int, cache: str | Path) -> list[Task]:
    """The chapter's five measurements: the spectrum, one trace task per estimator, the rescaling study."""
    cache = str(cache)
    return [
        Task("spectrum", sizes, seed, cache),
        *(Task("trace", sizes, seed, cache, method) for method in TRACE_METHODS),
        Task("rescaling", sizes, seed, cache),
    ]


def _spectrum(task: Task) -> dict:
    sizes, seed = task.sizes, task.seed
    settings = testbed_settings(sizes, "tanh", seed)
    tb = _testbed_of(settings)
    H, exact = _exact_of(settings)
    op = HessianOperator(tb.model, tb.loss_fn, tb.data)
    block = torch.randn(op.dim, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    operator_vs_dense = float((op @ block - H @ block).norm() / (H @ block).norm())
    eigs = pc.compare_eigenvalues(op, exact, sizes.k, tol=LANCZOS_TOL, power_tol=POWER_TOL, seed=seed)
    density = spectral_density(op, num_probes=sizes.slq_probes, num_steps=sizes.slq_steps, seed=seed)
    grid = density.grid.numpy()
    exact_smooth = pc.smoothed_density(exact, grid, density.sigma)
    exact_trace = float(exact.sum())
    return {
        "problem": {
            "problem": tb.name, "num_params": tb.num_params, "num_samples": sizes.num_samples,
            "train_loss": tb.loss(), "exact_max": float(exact[-1]), "exact_min": float(exact[0]),
            "exact_trace": exact_trace, "operator_vs_dense": operator_vs_dense,
        },
        "exact": exact.tolist(),
        "eigenvalues": eigs.to_dict("records"),
        "density": {
            "nodes": density.nodes.tolist(), "weights": density.weights.tolist(), "grid": grid.tolist(),
            "density": density.density.tolist(), "exact_smooth": exact_smooth.tolist(),
            "sigma": density.sigma,
            "slq_l1": float(np.trapezoid(np.abs(density.density.numpy() - exact_smooth), grid)),
            "slq_trace_rel_error": abs(density.moment(1) * density.dim - exact_trace) / abs(exact_trace),
            "slq_erank": effective_rank(density), "exact_erank": effective_rank(exact),
        },
    }  # fmt: skip


def _trace(task: Task) -> dict:
    sizes, seed = task.sizes, task.seed
    settings = testbed_settings(sizes, "tanh", seed)
    H, exact = _exact_of(settings)
    exact_trace = float(exact.sum())
    seeds = range(seed, seed + sizes.trace_seeds)
    errors = pc.trace_errors(DenseOperator(H), exact_trace, sizes.budgets, methods=[task.method], seeds=seeds)
    tb = _testbed_of(settings)
    largest = max(sizes.budgets)
    op = HessianOperator(tb.model, tb.loss_fn, tb.data)
    through = pc.trace_errors(op, exact_trace, [largest], methods=[task.method], seeds=[seed])
    dense = errors[(errors["budget"] == largest) & (errors["seed"] == seed)]
    diff = abs(float(through["estimate"].iloc[0]) - float(dense["estimate"].iloc[0])) / abs(exact_trace)
    return {"errors": errors.to_dict("records"), "operator_diff": diff}


def _rescaling(task: Task) -> dict:
    relu = _testbed_of(testbed_settings(task.sizes, "relu", task.seed))
    table = pc.rescaling_study(relu, task.sizes.alphas, layer=0, tol=LANCZOS_TOL, seed=task.seed)
    return {"problem": relu.name, "rescaling": table.to_dict("records")}


_COMPUTE = {"spectrum": _spectrum, "trace": _trace, "rescaling": _rescaling}


def task_settings(task: Task) -> dict:
    """What identifies a task's result in the cache: its kind, method, seed and the sizes it reads."""
    sizes = {
        key: list(value) if isinstance(value, tuple) else value for key, value in asdict(task.sizes).items()
    }
    for key in ("threads", "workers"):  # where it runs does not change the result
        sizes.pop(key)
    if task.kind != "rescaling":
        sizes.pop("alphas")
        sizes.pop("relu_hidden")
    return {"chapter": "validation", "kind": task.kind, "method": task.method, "seed": task.seed, **sizes}


def run_task(task: Task) -> dict:
    """One task's result (a JSON-serialisable dict), computed once and then read back from `task.cache`."""
    if task.kind not in _COMPUTE:
        raise ValueError(f"unknown task kind {task.kind!r}; expected one of {sorted(_COMPUTE)}")
    if task.kind == "trace" and task.method not in TRACE_METHODS:
        raise ValueError(f"a trace task needs a method in {TRACE_METHODS}, got {task.method!r}")
    return cached_json(
        task.cache, task_settings(task), functools.partial(_COMPUTE[task.kind], task),
        depends_on=[pc, sys.modules[__name__]],
    )  # fmt: skip


@dataclass(frozen=True)
class Measurements:
    """The chapter's raw results.

    Attributes:
        problem: the tanh testbed's numbers (name, num_params, num_samples, train_loss, exact_max, exact_min,
            exact_trace, operator_vs_dense).
        exact: its exact Hessian eigenvalues, ascending.
        eigenvalues: `compare_eigenvalues` table (Lanczos, power iteration with and without deflation).
        trace: `trace_errors` table of the three estimators on the dense Hessian.
        trace_operator_diff: largest relative difference between estimates through `HessianOperator` and on
            the dense matrix (largest budget, first seed, each estimator).
        density: the SLQ nodes, weights, grid, density, the exact smoothed density, sigma and its numbers
            (slq_l1, slq_trace_rel_error, slq_erank, exact_erank).
        rescaling: `rescaling_study` table of the ReLU testbed.
    """

    problem: dict
    exact: np.ndarray
    eigenvalues: pd.DataFrame
    trace: pd.DataFrame
    trace_operator_diff: float
    density: dict
    rescaling: pd.DataFrame


def measure(sizes: Sizes, seed: int, cache: str | Path, *, progress: bool = True) -> Measurements:
    """Run (or read back) the chapter's five tasks as one sweep on `sizes.workers` Dask workers."""
    items = tasks(sizes, seed, cache)
    results = parallel_map(run_task, items, workers=sizes.workers, threads=sizes.threads,
                           desc="validation tasks", progress=progress)  # fmt: skip
    by_kind = {(t.kind, t.method): r for t, r in zip(items, results, strict=True)}
    spectrum, rescaling = by_kind["spectrum", None], by_kind["rescaling", None]
    traces = [by_kind["trace", method] for method in TRACE_METHODS]
    density = {k: np.asarray(v) if isinstance(v, list) else v for k, v in spectrum["density"].items()}
    return Measurements(
        problem=spectrum["problem"],
        exact=np.asarray(spectrum["exact"]),
        eigenvalues=pd.DataFrame(spectrum["eigenvalues"]),
        trace=pd.concat([pd.DataFrame(t["errors"]) for t in traces], ignore_index=True),
        trace_operator_diff=max(t["operator_diff"] for t in traces),
        density=density,
        rescaling=pd.DataFrame(rescaling["rescaling"]),
    )


# ------------------------------------------------------------------------------------------- summaries


def eigen_summary(eigs: pd.DataFrame) -> dict:
    """Of a `compare_eigenvalues` table: k, the largest relative error and the products of Lanczos and of
    deflated power iteration."""
    by = {method: rows for method, rows in eigs.groupby("method", sort=False)}
    return {
        "k": int(eigs["index"].max()),
        "lanczos_max_rel_error": float(by["Lanczos"]["rel_error"].max()),
        "lanczos_matvecs": int(by["Lanczos"]["num_matvecs"].iloc[0]),
        "power_max_rel_error": float(by["power, deflated"]["rel_error"].max()),
        "power_matvecs": int(by["power, deflated"]["num_matvecs"].iloc[0]),
    }


def top_values(eigs: pd.DataFrame, exact: np.ndarray, n: int = 3) -> tuple[pd.DataFrame, dict[str, str]]:
    """The top `n` eigenvalues by each method next to the exact ones (a table, index 1..n), and each column
    as text ("0.6341, 0.4514, 0.3958") under the keys exact_top3, undeflated_values, deflated_values,
    lanczos_values."""
    top = eigs[eigs["index"] <= n]
    table = top.pivot(index="index", columns="method", values="value")
    table.insert(0, "exact (eigvalsh)", np.sort(np.asarray(exact))[::-1][:n])
    columns = {"exact_top3": "exact (eigvalsh)", "undeflated_values": "power, undeflated",
               "deflated_values": "power, deflated", "lanczos_values": "Lanczos"}  # fmt: skip
    text = {key: ", ".join(f"{v:.4f}" for v in table[column]) for key, column in columns.items()}
    return table, text


def trace_method_summary(errors: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per estimator of a `trace_errors` table: the RMS relative error at the largest budget, the coverage
    of ±2 reported standard errors over all budgets and the slope of log RMS error against log budget (each
    with a cluster-bootstrap 95% interval over seeds), and the median over budgets of RMS error / mean
    reported standard error (above 1: optimistic error bars)."""
    per_budget = pc.trace_summary(errors)
    largest = errors["budget"].max()
    rows = []
    for method, budgets in per_budget.groupby("method", sort=False):
        coverage = pc.coverage_interval(errors, method, n_resamples=n_resamples, seed=seed)
        nominal = pc.nominal_coverage(method, errors.loc[errors["method"] == method, "budget"])
        rate = pc.rate_interval(errors, method, n_resamples=n_resamples, seed=seed)
        rows.append({
            "method": method, "budget": int(largest),
            "rms_rel_error": float(budgets.loc[budgets["budget"] == largest, "rms_rel_error"].iloc[0]),
            "coverage": coverage.estimate, "coverage_low": coverage.low, "coverage_high": coverage.high,
            "nominal_coverage": nominal,
            "slope": rate.estimate, "slope_low": rate.low, "slope_high": rate.high,
            "stderr_ratio": float((budgets["rms_rel_error"] / budgets["mean_rel_stderr"]).median()),
            "seeds": int(budgets["seeds"].iloc[0]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def trace_glue(methods: pd.DataFrame) -> dict:
    """The glued numbers of a `trace_method_summary` table: trace_max_budget and, per estimator (suffix
    `GLUE_NAMES`), trace_rms_, coverage_, stderr_ratio_, slope_ and the intervals coverage_*_ci, slope_*_ci
    as text ("[0.93, 0.96]")."""
    values: dict = {"trace_max_budget": int(methods["budget"].iloc[0])}
    for row in methods.itertuples():
        key = GLUE_NAMES[row.method]
        values |= {
            f"trace_rms_{key}": row.rms_rel_error, f"coverage_{key}": row.coverage,
            f"coverage_{key}_ci": f"[{row.coverage_low:.2f}, {row.coverage_high:.2f}]",
            f"nominal_coverage_{key}": row.nominal_coverage,
            f"stderr_ratio_{key}": row.stderr_ratio, f"slope_{key}": row.slope,
            f"slope_{key}_ci": f"[{row.slope_low:.2f}, {row.slope_high:.2f}]",
        }  # fmt: skip
    return values


# ----------------------------------------------------------------------------------------------- checks


def chapter_checks(m: Measurements, methods: pd.DataFrame) -> list[pc.Check]:
    """Every check of the chapter, in the order of its sections (`methods`: a `trace_method_summary`)."""
    trace = [row for _, row in methods.iterrows()]
    return [
        pc.at_most("HessianOperator products against the dense Hessian (relative difference)",
                   m.problem["operator_vs_dense"], OPERATOR_TOL),
        pc.check_lanczos_error(m.eigenvalues, LANCZOS_MAX_ERROR),
        pc.check_residuals_certify(m.eigenvalues, m.exact),
        pc.check_undeflated_copies(m.eigenvalues, COPIES_TOL),
        pc.at_most("trace estimates through HessianOperator against the dense Hessian (relative difference)",
                   m.trace_operator_diff, TRACE_OPERATOR_TOL),
        *(pc.check_trace_rate(row["method"], row["slope"], row["slope_low"], row["slope_high"])
          for row in trace),
        *(pc.check_coverage(row["method"], row["coverage"], row["coverage_low"], row["coverage_high"],
                            nominal=row["nominal_coverage"]) for row in trace),
        pc.at_most("SLQ: L¹ distance to the exact smoothed density", m.density["slq_l1"], SLQ_L1_TOL),
        *pc.check_rescaling(m.rescaling),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- figures


def plot_eigenvalues(eigs: pd.DataFrame):
    """Relative error against the exact eigenvalues (clipped at machine epsilon) and reported residual of each
    method of a `compare_eigenvalues` table, against the eigenvalue index."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharex=True)
    floor = np.finfo(np.float64).eps
    for (method, rows), marker in zip(eigs.groupby("method", sort=False), "osx", strict=True):
        axes[0].semilogy(rows["index"], rows["rel_error"].clip(lower=floor), marker=marker, label=method)
        axes[1].semilogy(rows["index"], rows["residual"].clip(lower=floor), marker=marker, label=method)
    axes[0].set(xlabel="eigenvalue index i", ylabel=r"$|\hat\lambda_i - \lambda_i| / |\lambda_i|$",
                title="relative error against eigvalsh")  # fmt: skip
    axes[1].set(xlabel="eigenvalue index i", ylabel=r"$\|H v_i - \hat\lambda_i v_i\|$", title="residual")
    axes[0].legend()
    return fig


def plot_trace(errors: pd.DataFrame, per_budget: pd.DataFrame, exact_trace: float, seed: int):
    """Left: seed `seed`'s estimates against the budget with a band of ±2 reported standard errors, and the
    exact trace. Right: RMS relative error over seeds and mean reported standard error (a `trace_summary`)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    first_seed = errors[errors["seed"] == seed]
    for method, color in zip(TRACE_METHODS, ["C0", "C1", "C2"], strict=True):
        one = first_seed[first_seed["method"] == method]
        axes[0].plot(one["budget"], one["estimate"], marker="o", color=color, label=method)
        band = (one["estimate"] - 2 * one["stderr"], one["estimate"] + 2 * one["stderr"])
        axes[0].fill_between(one["budget"], *band, color=color, alpha=0.15)
        rows = per_budget[per_budget["method"] == method]
        axes[1].loglog(rows["budget"], rows["rms_rel_error"], marker="o", color=color,
                       label=f"{method}: RMS error")  # fmt: skip
        axes[1].loglog(
            rows["budget"], rows["mean_rel_stderr"], ls="--", color=color, label=f"{method}: stderr"
        )
    axes[0].axhline(exact_trace, color="k", lw=1, label="exact trace")
    axes[0].set(xscale="log", xlabel="Hessian-vector products", ylabel="trace estimate",
                title="one seed, band = ±2 stderr")  # fmt: skip
    axes[1].set(xlabel="Hessian-vector products", ylabel="relative error",
                title=f"over {errors['seed'].nunique()} seeds")  # fmt: skip
    axes[0].legend()
    axes[1].legend(ncol=1, fontsize=7)
    return fig


def plot_density(exact: np.ndarray, density: dict):
    """Histogram of the exact eigenvalues, the exact measure smoothed with the SLQ kernel and the SLQ density
    (`Measurements.density`), on a logarithmic density axis."""
    import matplotlib.pyplot as plt

    grid, slq, smooth = density["grid"], density["density"], density["exact_smooth"]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.hist(exact, bins=80, density=True, color="0.8", label="exact eigenvalues (histogram)")
    ax.plot(grid, smooth, color="k", lw=1, ls="--", label=f"exact, smoothed (σ = {density['sigma']:.2g})")
    ax.plot(grid, slq, color="C3", lw=1.2, label="SLQ")
    top = 3 * max(float(slq.max()), float(smooth.max()))
    ax.set(yscale="log", ylim=(1e-3 / max(abs(grid[0]), abs(grid[-1])), top), xlabel="eigenvalue",
           ylabel="density")  # fmt: skip
    ax.legend()
    return fig


def plot_rescaling(rescaled: pd.DataFrame):
    """λmax of the Hessian and normalised sharpness against the rescaling factor α (a `rescaling_study`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.loglog(rescaled["alpha"], rescaled["lambda_max"], marker="o", label=r"$\lambda_{\max}(H)$")
    ax.loglog(rescaled["alpha"], rescaled["normalized_sharpness"], marker="s",
              label=r"$\lambda_{\max}(\mathrm{diag}|\theta|\,H\,\mathrm{diag}|\theta|)$")  # fmt: skip
    ax.set(xlabel=r"rescaling factor $\alpha$ (layer 1 × α, layer 2 × 1/α)", ylabel="curvature")
    ax.legend()
    return fig
