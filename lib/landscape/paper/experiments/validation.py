"""The validation chapter (`notebooks/validation.py`): every curvature probe checked against its exact answer.

Two small float64 MLPs trained on teacher data (`landscape.paper.probe_checks.make_testbed`): a tanh MLP whose
D x D Hessian is computed densely and diagonalised by `torch.linalg.eigvalsh`, and a ReLU MLP for Dinh et
al.'s rescaling. The measurements are five tasks of one cached sweep (`experiments.common.run_cached`), whose
code lives in `validation_tasks` (declared as their code, with `probe_checks`; this module's summaries, checks
and figures are not, so editing them recomputes nothing):

- ``spectrum``: the exact spectrum, the operator's products against the dense Hessian, Lanczos and power
  iteration against the exact top-k eigenvalues, SLQ against the exact smoothed density;
- ``trace`` (one task per estimator): every (budget, seed) trace estimate on the dense Hessian, and the
  estimate through `HessianOperator` at the largest budget;
- ``rescaling``: λmax and normalised sharpness at rescaled copies of the ReLU MLP.

The chapter has pass/fail checks rather than verdicts: `chapter_checks` lists them (`probe_checks.Check`:
measured number, threshold, outcome), with cluster-bootstrap intervals over seeds for the trace estimators'
rates and coverages. With fewer than `stats.SMALL_SAMPLE` seeds (the smoke profile) the rate's interval is
undefined and its check "not testable"; the coverage (a mean) gets the Student-t interval over seeds.
`checks_sentence`, `calibration_summary` and `group_outcomes` turn the checks' outcomes into the chapter's
verdict text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...trace import TRACE_METHODS
from .. import probe_checks as pc
from ..glue import format_estimate, format_number
from . import validation_tasks as vt
from .common import run_cached

__all__ = [
    "DEPENDS_ON",
    "GLUE_NAMES",
    "LABELS",
    "PROFILES",
    "Measurements",
    "Sizes",
    "calibration_summary",
    "chapter_check_groups",
    "chapter_checks",
    "checks_sentence",
    "eigen_summary",
    "group_outcomes",
    "measure",
    "plot_density",
    "plot_eigenvalues",
    "plot_rescaling",
    "plot_trace",
    "task_settings",
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
    trace_seeds: (
        int  # seeds per (estimator, budget); below stats.SMALL_SAMPLE the rate checks are not testable
    )
    slq_probes: int  # SLQ probe vectors
    slq_steps: int  # Lanczos steps per SLQ probe
    alphas: tuple[float, ...]  # Dinh rescaling factors (must include 1, the reference)
    operating: (
        Mapping  # the `validation_tasks.operating` settings (network, chapter budgets, reference budgets)
    )
    synthetic: Mapping  # the `validation_tasks.synthetic` settings (dimension, tolerance, roughness grid)
    n_resamples: int  # bootstrap resamples of every interval over seeds
    threads: int | None  # torch threads per task (None: leave the process's setting)
    workers: int | None  # Dask workers: 1 runs in this process, None one per core


# The operating regime of RQ2's curvature profiles (k, tol, Hutchinson and SLQ budgets, 256 samples, the target
# loss), on an MNIST-1D MLP of D ≈ 10⁵ in float32, against float64 references of much larger budgets.
OPERATING = {"width": 300, "target_loss": 0.05, "max_steps": 8000, "hessian_samples": 256, "k": 20, "tol": 1e-3,
             "trace_matvecs": 40, "slq_probes": 4, "slq_steps": 40, "ref_tol": 1e-8, "ref_trace": 600,
             "ref_slq_probes": 16, "ref_slq_steps": 150}  # fmt: skip
SYNTHETIC = {"dim": 100_000, "tol": 1e-3, "lambda_min_matvecs": 60, "curvatures": [0.01, 1.0, 100.0],
             "amplitudes": [0.01, 0.03, 0.1, 0.3]}  # fmt: skip
PROFILES = {
    "smoke": Sizes(in_dim=6, hidden=(12,), relu_hidden=(12, 12), num_classes=3, num_samples=128,
                   train_steps=150, k=3, budgets=(12, 24, 48), trace_seeds=4, slq_probes=2, slq_steps=30,
                   alphas=(0.1, 1.0, 10.0), n_resamples=500, threads=1, workers=1,
                   operating={**OPERATING, "width": 24, "target_loss": 1.0, "max_steps": 400, "hessian_samples": 64,
                              "k": 4, "tol": 1e-2, "trace_matvecs": 8, "slq_probes": 2, "slq_steps": 12,
                              "ref_trace": 60, "ref_slq_probes": 4, "ref_slq_steps": 40},
                   synthetic={**SYNTHETIC, "dim": 2000, "curvatures": [0.01, 100.0], "amplitudes": [0.03, 0.3]}),
    "paper": Sizes(in_dim=12, hidden=(24, 24), relu_hidden=(24, 24), num_classes=4, num_samples=1024,
                   train_steps=300, k=5, budgets=(8, 16, 32, 64, 128, 256, 512), trace_seeds=100,
                   slq_probes=8, slq_steps=80, alphas=tuple(np.logspace(-2, 2, 9).tolist()), n_resamples=2000,
                   threads=1, workers=None, operating=OPERATING, synthetic=SYNTHETIC),
    "full": Sizes(in_dim=32, hidden=(64, 64), relu_hidden=(64, 64), num_classes=10, num_samples=4096,
                  train_steps=1000, k=10, budgets=(8, 16, 32, 64, 128, 256, 512, 1024, 2048), trace_seeds=200,
                  slq_probes=16, slq_steps=150, alphas=tuple(np.logspace(-3, 3, 13).tolist()), n_resamples=5000,
                  threads=None, workers=None, operating={**OPERATING, "k": 30, "tol": 1e-4, "ref_trace": 2000},
                  synthetic=SYNTHETIC),
}  # fmt: skip

OPERATOR_TOL = 1e-10  # HessianOperator products against the dense Hessian (relative)
LANCZOS_MAX_ERROR = 1e-6  # the Lanczos check: largest relative eigenvalue error
COPIES_TOL = 1e-2  # the undeflated-power check: values within this of λmax are copies of it
TRACE_OPERATOR_TOL = 1e-8  # trace estimates through HessianOperator against the dense matrix (relative)
SLQ_L1_TOL = 0.1  # the SLQ check: L¹ distance to the exact smoothed density (out of 2)
TOPK_FACTOR = 10  # operating regime: top-k relative error within 10 × the chapters' tol
ERANK_TOL = 0.1  # operating regime: effective rank within 10 % of the reference to count as validated
ROUGHNESS_TOL = 0.2  # synthetic slices: roughness within 20 % of the continuous closed form on 41 points
GLUE_NAMES = {"hutchinson": "hutchinson", "hutch++": "hutchpp", "xtrace": "xtrace"}  # glue-key suffixes
LABELS = {"hutchinson": "Hutchinson", "hutch++": "Hutch++", "xtrace": "XTrace"}  # the estimators in the text
DEPENDS_ON = (vt, pc)  # the code the tasks run (beyond the probes): not this module


# ------------------------------------------------------------------------------------------------- the tasks


def testbed_settings(sizes: Sizes, activation: str, seed: int) -> dict:
    """The arguments of `probe_checks.make_testbed` for the chapter's tanh or ReLU MLP (JSON-serialisable)."""
    widths = {"tanh": sizes.hidden, "relu": sizes.relu_hidden}
    if activation not in widths:
        raise ValueError(f"unknown testbed activation {activation!r}; expected one of {sorted(widths)}")
    return {
        "activation": activation, "in_dim": sizes.in_dim, "hidden": list(widths[activation]),
        "num_classes": sizes.num_classes, "num_samples": sizes.num_samples, "train_steps": sizes.train_steps,
        "seed": int(seed),
    }  # fmt: skip


def task_settings(sizes: Sizes, seed: int) -> list[dict]:
    """The settings of the chapter's five tasks (`validation_tasks.measurement`): the spectrum, one trace task
    per estimator, the rescaling study. Each holds only what its task reads (its cache key): not where it runs
    (threads, workers), not the bootstrap."""
    tanh = testbed_settings(sizes, "tanh", seed)
    return [
        {"kind": "spectrum", "testbed": tanh, "k": sizes.k, "slq_probes": sizes.slq_probes,
         "slq_steps": sizes.slq_steps, "seed": int(seed)},
        *({"kind": "trace", "testbed": tanh, "method": method, "budgets": list(sizes.budgets),
           "trace_seeds": sizes.trace_seeds, "seed": int(seed)} for method in TRACE_METHODS),
        {"kind": "rescaling", "testbed": testbed_settings(sizes, "relu", seed), "alphas": list(sizes.alphas),
         "seed": int(seed)},
        {"kind": "operating", **sizes.operating, "seed": int(seed)},
        {"kind": "synthetic", **sizes.synthetic, "seed": int(seed)},
    ]  # fmt: skip


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
        operating: the `validation_tasks.operating` result (network, chapter, reference).
        synthetic: the `validation_tasks.synthetic` result (repeated, bulk_edge, roughness).
    """

    problem: dict
    exact: np.ndarray
    eigenvalues: pd.DataFrame
    trace: pd.DataFrame
    trace_operator_diff: float
    density: dict
    rescaling: pd.DataFrame
    operating: dict
    synthetic: dict


def measure(sizes: Sizes, seed: int, cache: str | Path, *, progress: bool = False) -> Measurements:
    """Run (or read back) the chapter's five tasks as one cached sweep on `sizes.workers` Dask workers."""
    settings = task_settings(sizes, seed)
    results = run_cached(vt.measurement, settings, cache=cache, depends_on=DEPENDS_ON, workers=sizes.workers,
                         threads=sizes.threads, desc="validation tasks", progress=progress)  # fmt: skip
    spectrum, *traces, rescaling, operating, synthetic = results
    density = {k: np.asarray(v) if isinstance(v, list) else v for k, v in spectrum["density"].items()}
    return Measurements(
        problem=spectrum["problem"],
        exact=np.asarray(spectrum["exact"]),
        eigenvalues=pd.DataFrame(spectrum["eigenvalues"]),
        trace=pd.concat([pd.DataFrame(t["errors"]) for t in traces], ignore_index=True),
        trace_operator_diff=max(t["operator_diff"] for t in traces),
        density=density,
        rescaling=pd.DataFrame(rescaling["rescaling"]),
        operating=operating,
        synthetic=synthetic,
    )


# ------------------------------------------------------------------------------------------- summaries

EIGEN_METHODS = ("Lanczos", "power, deflated", "power, undeflated")  # the methods of `compare_eigenvalues`


def _method_rows(eigs: pd.DataFrame, method: str) -> pd.DataFrame:
    pc.require_columns(eigs, ["method", "index", "value", "rel_error", "num_matvecs"], "eigenvalue table")
    rows = eigs[eigs["method"] == method]
    if rows.empty:
        raise ValueError(
            f"the eigenvalue table has no rows of method {method!r}; it has {sorted(set(eigs['method']))}"
        )
    return rows


def eigen_summary(eigs: pd.DataFrame) -> dict:
    """Of a `compare_eigenvalues` table: k, the largest relative error and the products of Lanczos and of
    deflated power iteration."""
    lanczos, power = _method_rows(eigs, "Lanczos"), _method_rows(eigs, "power, deflated")
    return {
        "k": int(eigs["index"].max()),
        "lanczos_max_rel_error": float(lanczos["rel_error"].max()),
        "lanczos_matvecs": int(lanczos["num_matvecs"].iloc[0]),
        "power_max_rel_error": float(power["rel_error"].max()),
        "power_matvecs": int(power["num_matvecs"].iloc[0]),
    }


def top_values(eigs: pd.DataFrame, exact: np.ndarray, n: int = 3) -> tuple[pd.DataFrame, dict[str, str]]:
    """The top `n` eigenvalues by each method next to the exact ones (a table, index 1..n), and each column
    as text ("0.6341, 0.4514, 0.3958") under the keys exact_top3, undeflated_values, deflated_values,
    lanczos_values."""
    for method in EIGEN_METHODS:
        rows = _method_rows(eigs, method)
        if rows["index"].max() < n:
            raise ValueError(
                f"top_values needs {n} eigenvalues of {method!r}, the table has {rows['index'].max()}"
            )
    if np.asarray(exact).size < n:
        raise ValueError(f"top_values needs {n} exact eigenvalues, got {np.asarray(exact).size}")
    top = eigs[eigs["index"] <= n]
    table = top.pivot(index="index", columns="method", values="value")
    table.insert(0, "exact (eigvalsh)", np.sort(np.asarray(exact))[::-1][:n])
    columns = {"exact_top3": "exact (eigvalsh)", "undeflated_values": "power, undeflated",
               "deflated_values": "power, deflated", "lanczos_values": "Lanczos"}  # fmt: skip
    text = {key: ", ".join(f"{v:.4f}" for v in table[column]) for key, column in columns.items()}
    return table, text


def trace_method_summary(errors: pd.DataFrame, *, n_resamples: int, seed: int = 0) -> pd.DataFrame:
    """Per estimator of a `trace_errors` table: the RMS relative error at the largest budget, the coverage
    of ±2 reported standard errors over all budgets and the slope of log RMS error against log budget (each
    with a cluster-bootstrap 95% interval over seeds, `n_resamples` resamples, and the interval's method:
    with fewer than `stats.SMALL_SAMPLE` seeds the coverage gets Student's t over seeds and the slope NaN
    bounds), the calibration the coverage interval shows (`probe_checks.calibration`), and the median over
    budgets of RMS error / mean reported standard error (above 1: optimistic error bars)."""
    per_budget = pc.trace_summary(errors)
    unknown = sorted(set(per_budget["method"]) - set(GLUE_NAMES))
    if unknown:
        raise ValueError(
            f"unknown trace methods {unknown} in the trace table; expected some of {TRACE_METHODS}"
        )
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
            "coverage_method": coverage.method, "nominal_coverage": nominal,
            "calibration": pc.calibration(coverage.low, coverage.high, nominal),
            "slope": rate.estimate, "slope_low": rate.low, "slope_high": rate.high, "slope_method": rate.method,
            "stderr_ratio": float((budgets["rms_rel_error"] / budgets["mean_rel_stderr"]).median()),
            "seeds": int(budgets["seeds"].iloc[0]),
        })  # fmt: skip
    return pd.DataFrame(rows)


_SUMMARY_COLUMNS = ["method", "budget", "rms_rel_error", "coverage", "coverage_low", "coverage_high",
                    "coverage_method", "nominal_coverage", "calibration", "slope", "slope_low", "slope_high",
                    "slope_method", "stderr_ratio"]  # fmt: skip


def trace_glue(methods: pd.DataFrame) -> dict:
    """The glued numbers of a `trace_method_summary` table: trace_max_budget, calibration_summary and, per
    estimator (suffix `GLUE_NAMES`), trace_rms_, coverage_, nominal_coverage_, stderr_ratio_, slope_,
    calibration_ and the estimates with their intervals as text, coverage_*_ci and slope_*_ci
    (`glue.format_estimate`: "0.948 [0.93, 0.96]"; "0.948 (interval n/a)" where it is undefined)."""
    pc.require_columns(methods, _SUMMARY_COLUMNS, "trace method summary")
    values: dict = {"trace_max_budget": int(methods["budget"].iloc[0]),
                    "calibration_summary": calibration_summary(methods)}  # fmt: skip
    for row in methods.itertuples():
        key = GLUE_NAMES[row.method]
        values |= {
            f"trace_rms_{key}": row.rms_rel_error, f"coverage_{key}": row.coverage,
            f"coverage_{key}_ci": format_estimate(row.coverage, row.coverage_low, row.coverage_high, digits=2),
            f"nominal_coverage_{key}": row.nominal_coverage, f"calibration_{key}": row.calibration,
            f"stderr_ratio_{key}": row.stderr_ratio, f"slope_{key}": row.slope,
            f"slope_{key}_ci": format_estimate(row.slope, row.slope_low, row.slope_high, digits=2),
        }  # fmt: skip
    return values


def _join(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def calibration_summary(methods: pd.DataFrame) -> str:
    """A phrase for the text from the calibration column of a `trace_method_summary`: estimators with the same
    finding grouped, in the order they first appear, e.g. "calibrated for Hutchinson and Hutch++ and
    optimistic for XTrace" (an "untested" finding reads "not testable here for ...")."""
    pc.require_columns(methods, ["method", "calibration"], "trace method summary")
    groups: dict[str, list[str]] = {}
    for method, finding in zip(methods["method"], methods["calibration"], strict=True):
        if finding not in pc.CALIBRATIONS:
            raise ValueError(
                f"unknown calibration {finding!r} for {method!r}; expected one of {pc.CALIBRATIONS}"
            )
        groups.setdefault(finding, []).append(LABELS.get(method, method))
    words = {"untested": "not testable here"}
    return _join([f"{words.get(finding, finding)} for {_join(names)}" for finding, names in groups.items()])


def operating_table(operating: Mapping) -> pd.DataFrame:
    """The chapters' probes (float32, their budgets) next to the float64 reference on the same weights, one row
    per quantity: the chapter's value and error bar, the reference's, and the relative difference."""
    c, r = operating["chapter"], operating["reference"]
    rows = [{"quantity": f"λ{i + 1}", "chapter": a, "chapter error bar": ra, "reference": b, "reference error bar": rb}
            for i, (a, ra, b, rb) in enumerate(zip(c["top_eigenvalues"], c["residuals"], r["top_eigenvalues"],
                                                   r["residuals"], strict=True))]  # fmt: skip
    rows += [
        {"quantity": "λmin", "chapter": c["lambda_min"], "chapter error bar": c["lambda_min_residual"],
         "reference": r["lambda_min"], "reference error bar": r["lambda_min_residual"]},
        {"quantity": "tr(H)", "chapter": c["trace"], "chapter error bar": c["trace_stderr"], "reference": r["trace"],
         "reference error bar": r["trace_stderr"]},
        {"quantity": "negative mass", "chapter": c["negative_mass"], "chapter error bar": c["negative_mass_stderr"],
         "reference": r["negative_mass"], "reference error bar": r["negative_mass_stderr"]},
        {"quantity": "effective rank", "chapter": c["effective_rank"], "chapter error bar": math.nan,
         "reference": r["effective_rank"], "reference error bar": math.nan},
    ]  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["relative difference"] = (frame["chapter"] - frame["reference"]).abs() / frame["reference"].abs()
    return frame


def operating_numbers(operating: Mapping) -> dict:
    """Glue values of the operating-regime comparison: the network (D, samples, loss, steps), the largest
    relative error of the top-k, λmin of both with their residuals, and the relative differences of the trace,
    negative mass and effective rank."""
    c, r, net = operating["chapter"], operating["reference"], operating["network"]
    table = operating_table(operating).set_index("quantity")
    top = table.loc[[f"λ{i + 1}" for i in range(len(c["top_eigenvalues"]))]]
    return {
        "op_dim": net["num_params"], "op_samples": net["hessian_samples"], "op_loss": net["train_loss"],
        "op_k": len(c["top_eigenvalues"]), "op_topk_error": float(top["relative difference"].max()),
        "op_ref_residual": float(max(r["residuals"]) / r["top_eigenvalues"][0]),
        "op_lmin": c["lambda_min"], "op_lmin_residual": c["lambda_min_residual"],
        "op_lmin_converged": "resolved" if c["lambda_min_converged"] else "not resolved",
        "op_ref_lmin": r["lambda_min"], "op_ref_lmin_residual": r["lambda_min_residual"],
        "op_trace_error": float(table.loc["tr(H)", "relative difference"]),
        "op_mass": c["negative_mass"], "op_ref_mass": r["negative_mass"],
        "op_erank": c["effective_rank"], "op_ref_erank": r["effective_rank"],
        "op_erank_error": float(table.loc["effective rank", "relative difference"]),
    }  # fmt: skip


def synthetic_numbers(synthetic: Mapping) -> dict:
    """Glue values of the known-answer cases: the top three by block sizes 1 and 2 on the repeated spectrum,
    λmin by the gap and residual tests at the bulk edge, and the roughness's largest deviation from its closed
    form and largest spread over curvatures."""
    out = {}
    for block, res in synthetic["repeated"].items():
        out[f"repeated_block{block}"] = ", ".join(format_number(v, 6) for v in res["values"])
        values, residuals = res["values"], res["residuals"]
        out[f"repeated_certified{block}"] = (
            "yes" if values[0] - values[1] > residuals[0] + residuals[1] else "no"
        )
    edge = synthetic["bulk_edge"]
    out["edge_true"] = edge["true_min"]
    for bound in ("gap", "residual"):
        out |= {f"edge_{bound}": edge[bound]["value"], f"edge_{bound}_residual": edge[bound]["residual"],
                f"edge_{bound}_converged": "accepted" if edge[bound]["converged"] else "not accepted"}  # fmt: skip
    rough = pd.DataFrame(synthetic["roughness"])
    out["rough_deviation"] = float(
        ((rough["roughness"] - rough["closed_form"]).abs() / rough["closed_form"]).max()
    )
    spread = rough.groupby("amplitude")["roughness"].agg(lambda x: (x.max() - x.min()) / x.mean())
    out["rough_spread"] = float(spread.max())
    return out


# ----------------------------------------------------------------------------------------------- checks


def chapter_check_groups(m: Measurements, methods: pd.DataFrame) -> dict[str, list[pc.Check]]:
    """Every check of the chapter, grouped by the probe it checks (in the order of the chapter's sections):
    operator, eigenvalues, trace rates, trace error bars, SLQ, rescaling (`methods`: a `trace_method_summary`)."""
    pc.require_columns(methods, _SUMMARY_COLUMNS, "trace method summary")
    trace = [row for _, row in methods.iterrows()]
    return {
        "operator": [
            pc.at_most("HessianOperator products against the dense Hessian (relative difference)",
                       m.problem["operator_vs_dense"], OPERATOR_TOL),
            pc.at_most("trace estimates through HessianOperator against the dense Hessian (relative difference)",
                       m.trace_operator_diff, TRACE_OPERATOR_TOL),
        ],
        "eigenvalues": [
            pc.check_lanczos_error(m.eigenvalues, LANCZOS_MAX_ERROR),
            pc.check_residuals_certify(m.eigenvalues, m.exact),
            pc.check_undeflated_copies(m.eigenvalues, COPIES_TOL),
        ],
        "trace rates": [
            pc.check_trace_rate(row["method"], row["slope"], row["slope_low"], row["slope_high"],
                                reason=row["slope_method"]) for row in trace
        ],
        "trace error bars": [
            pc.check_coverage(row["method"], row["coverage"], row["coverage_low"], row["coverage_high"],
                              nominal=row["nominal_coverage"], reason=row["coverage_method"]) for row in trace
        ],
        "SLQ": [pc.at_most("SLQ: L¹ distance to the exact smoothed density", m.density["slq_l1"], SLQ_L1_TOL)],
        "rescaling": pc.check_rescaling(m.rescaling),
        "operating regime": operating_checks(m.operating),
        "known answers": synthetic_checks(m.synthetic),
    }  # fmt: skip


def operating_checks(operating: Mapping) -> list[pc.Check]:
    """The chapters' probes at their operating regime against the float64 reference: the top-k within
    `TOPK_FACTOR` × tol; the reference λmin inside the chapter's interval [θ − r, θ] (or within r above it:
    both are upper bounds of the smallest eigenvalue only up to its residual); tr(H), the negative mass within
    3 combined standard errors; the effective rank within `ERANK_TOL` (where it fails, the chapters do not use it)."""
    c, r = operating["chapter"], operating["reference"]
    table = operating_table(operating).set_index("quantity")
    k = len(c["top_eigenvalues"])
    tol = TOPK_FACTOR * operating["tol"]
    top = float(table.loc[[f"λ{i + 1}" for i in range(k)], "relative difference"].max())
    low, high = c["lambda_min"] - c["lambda_min_residual"], c["lambda_min"] + c["lambda_min_residual"]
    inside = low <= r["lambda_min"] <= high
    trace_z = abs(c["trace"] - r["trace"]) / math.hypot(c["trace_stderr"], r["trace_stderr"])
    mass_se = math.hypot(c["negative_mass_stderr"], r["negative_mass_stderr"])
    mass_z = abs(c["negative_mass"] - r["negative_mass"]) / mass_se if mass_se > 0 else math.inf
    return [
        pc.at_most(f"top-{k} eigenvalues (float32, chapter budget) against float64 (largest relative error)", top,
                   tol),
        pc.Check("λmin: the reference inside the chapter's interval θ ± r", float(r["lambda_min"]),
                 f"in [{format_number(low, 3)}, {format_number(high, 3)}]", bool(inside)),
        pc.at_most("tr(H), Hutchinson at the chapter budget against Hutch++ (combined standard errors)", trace_z, 3.0),
        pc.at_most("negative mass, SLQ at the chapter budget against the reference (combined standard errors)",
                   mass_z, 3.0),
        pc.at_most("effective rank, SLQ at the chapter budget against the reference (relative error)",
                   float(table.loc["effective rank", "relative difference"]), ERANK_TOL),
    ]  # fmt: skip


def synthetic_checks(synthetic: Mapping) -> list[pc.Check]:
    """The known-answer cases: block Lanczos (block 2) does not certify a repeated λ1 as simple; at the bulk
    edge the residual test accepts no wrong λmin and its interval holds the true one; the roughness of the
    synthetic slices lies within `ROUGHNESS_TOL` of its closed form and does not depend on the curvature."""
    values, residuals = synthetic["repeated"]["2"]["values"], synthetic["repeated"]["2"]["residuals"]
    edge = synthetic["bulk_edge"]
    resid, truth = edge["residual"], edge["true_min"]
    wrong = resid["converged"] and abs(resid["value"] - truth) > 1e-3 * abs(truth) + resid["residual"]
    numbers = synthetic_numbers(synthetic)
    return [
        pc.Check("repeated λ1: block Lanczos (block 2) leaves θ1 − θ2 within r1 + r2 (not certified simple)",
                 float(values[0] - values[1]), f"≤ {format_number(residuals[0] + residuals[1], 3)}",
                 bool(values[0] - values[1] <= residuals[0] + residuals[1])),
        pc.Check("bulk edge: the residual test accepts no wrong λmin", float(resid["value"]),
                 "not accepted, or within tol of the truth", not wrong),
        pc.Check("bulk edge: the true λmin lies within the residual of θ", float(abs(resid["value"] - truth)),
                 f"≤ r = {format_number(resid['residual'], 3)}", bool(abs(resid["value"] - truth) <= resid["residual"])),
        pc.at_most("roughness of synthetic slices against the closed form (largest relative deviation)",
                   numbers["rough_deviation"], ROUGHNESS_TOL),
        pc.at_most("roughness of synthetic slices over curvatures 0.01–100 (largest relative spread)",
                   numbers["rough_spread"], 1e-6),
    ]  # fmt: skip


def chapter_checks(m: Measurements, methods: pd.DataFrame) -> list[pc.Check]:
    """Every check of the chapter, in the order of its sections (`chapter_check_groups`, flattened)."""
    return [check for group in chapter_check_groups(m, methods).values() for check in group]


def checks_sentence(checks: Sequence[pc.Check]) -> str:
    """How a list of checks came out, as a clause for the text: "all 15 checks pass", or "12 of 15 checks
    pass; failing: A; B; not testable here (reason): C, D" (not-testable checks grouped by reason); for one
    check "the check passes", "the check fails" or "the check is not testable here (reason)"."""
    if not checks:
        raise ValueError("checks_sentence needs at least one check")
    if len(checks) == 1:
        (check,) = checks
        if check.passed is None:
            return f"the check is not testable here ({check.reason})"
        return "the check passes" if check.passed else "the check fails"
    failing = [c.name for c in checks if c.passed is False]
    untested: dict[str, list[str]] = {}
    for c in checks:
        if c.passed is None:
            untested.setdefault(c.reason, []).append(c.name)
    passed = sum(c.passed is True for c in checks)
    if passed == len(checks):
        return f"all {len(checks)} checks pass"
    text = f"{passed} of {len(checks)} checks pass"
    if failing:
        text += "; failing: " + "; ".join(failing)
    for reason, names in untested.items():
        text += f"; not testable here ({reason}): " + "; ".join(names)
    return text


def group_outcomes(groups: Mapping[str, Sequence[pc.Check]]) -> dict[str, str]:
    """`checks_sentence` of each group of `chapter_check_groups`, under the key ``outcome_<group>`` (spaces
    as underscores), and of all checks under ``checks_summary``."""
    values = {f"outcome_{name.replace(' ', '_')}": checks_sentence(checks) for name, checks in groups.items()}
    values["checks_summary"] = checks_sentence([c for checks in groups.values() for c in checks])
    return values


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
    axes[1].legend(ncol=1)
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
