"""RQ3 — which geometric quantities track generalisation? The chapter's population, statistics and verdicts.

A study in the manner of Jiang et al. (2020) and Dziugaite et al. (2020) on MNIST-1D: a full factorial over
four hyperparameter axes (step size η, batch size B, width, weight decay), several seeds per configuration,
every network trained with SGD to the same training cross-entropy and then measured (`rq3_tasks`). The gap is
the test error on the first half of 20,000 further MNIST-1D signals minus the training error; the gap on the
other half, used as a "measure", is the noise ceiling (the noisy oracle). A smaller population on
scikit-learn's 8 × 8 digits is the out-of-task check.

For every measure (`measure_table`): Kendall's τ with the gap (sign-oriented: + when the measure grows with the
gap) and its cluster-bootstrap interval (configurations resampled: the seeds of one configuration are not
independent); the granulated Kendall coefficient Ψ and its per-axis ψ; the conditional mutual information
score; Dziugaite et al.'s robust sign error over single-axis environments (mean, 90th percentile, maximum); the
partial Spearman correlation with the gap on configuration means given log(η/B) and the final training loss
(the confounds the founding write-up ignores), with its Holm-adjusted p-value across measures.

The founding claims (`FOUNDING`) are decided by `verdict_measure`; `power` states the smallest τ difference the
population resolves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, cross_val_predict

from ..glue import format_estimate
from ..stats import (
    LEVEL,
    cluster_bootstrap_ci,
    conditional_mutual_information,
    granulated_kendall,
    holm,
    partial_rank_correlation,
    robust_sign_error,
)
from ..verdicts import Verdict, family_level, not_testable, verdict_from_correlation
from . import rq3_tasks
from .common import run_cached
from .rq3_tasks import GEOMETRY, NORMS, OPTIMISATION, PAIR_MEASURES

__all__ = [
    "AXES",
    "FOUNDING",
    "HYPERPARAMETER_MODEL",
    "MIN_NETWORKS",
    "NAMES",
    "NOISY_ORACLE",
    "PROFILES",
    "RESCALING_TOLERANCE",
    "Sizes",
    "add_reference_measures",
    "census",
    "family_interval_level",
    "measure_table",
    "numbers",
    "plot_measure_vs_gap",
    "plot_psi_heatmap",
    "plot_sign_error",
    "plot_tau",
    "power",
    "rescaling_changes",
    "run_population",
    "run_rescaling",
    "verdict_measure",
    "verdict_table",
]

AXES = ("lr", "batch_size", "width", "weight_decay")  # the factorial's hyperparameter axes
NOISY_ORACLE = "gap_b"  # the gap measured on the other half of the test signals
HYPERPARAMETER_MODEL = "hyperparameter_model"  # out-of-fold ridge prediction of the gap from the axes
# the founding write-up's quantities: "correlate with trainability and generalisation"
FOUNDING = ("lambda_max", "trace_per_param", "effective_rank", "normalized_sharpness", "barrier")
MIN_NETWORKS = 20  # fewest reached networks for a verdict
# a measure "moves" under a function-preserving rescaling when it changes by more than this (relative): well above
# the probes' own tolerance (Lanczos 1e-3) on identical random draws
RESCALING_TOLERANCE = 0.02
NAMES = {
    "lambda_max": "λmax", "trace_per_param": "tr(H)/D", "effective_rank": "effective rank",
    "normalized_sharpness": "normalised sharpness", "normalized_trace": "normalised trace",
    "adaptive_worst_sharpness": "adaptive worst-case sharpness",
    "adaptive_average_sharpness": "adaptive average-case sharpness", "epsilon_sharpness": "ε-sharpness",
    "pac_bayes_flatness": "PAC-Bayes 1/σ′²", "pac_bayes_mag_flatness": "PAC-Bayes 1/σ′² (magnitude)",
    "num_params": "number of parameters", "param_norm": "‖θ‖²", "dist_from_init": "‖θ − θ₀‖",
    "log_path_norm": "path norm", "log_prod_spectral": "Π spectral norms", "log_sum_frobenius": "Σ Frobenius",
    "inverse_margin": "1/margin²", "log_spectral_over_margin": "spectral / margin",
    "steps_to_target": "steps to target", "gradient_noise": "gradient noise", "barrier": "barrier between seeds",
    "disagreement": "disagreement of seeds", HYPERPARAMETER_MODEL: "hyperparameters only",
    NOISY_ORACLE: "noisy oracle (other half)",
}  # fmt: skip
KINDS = {**dict.fromkeys(GEOMETRY, "geometry"), **dict.fromkeys(NORMS, "norm / margin"),
         **dict.fromkeys(OPTIMISATION, "optimisation"), **dict.fromkeys(PAIR_MEASURES, "seed pair"),
         HYPERPARAMETER_MODEL: "reference", NOISY_ORACLE: "reference"}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    """Every size and budget of the chapter for one profile."""

    lrs: tuple[float, ...]  # SGD step sizes η (momentum 0.9)
    batch_sizes: tuple[int, ...]  # minibatch sizes B
    widths: tuple[int, ...]  # hidden units per layer
    weight_decays: tuple[float, ...]  # coupled L2
    seeds: tuple[int, ...]  # seeds per configuration (initialisation and data order)
    digits_lrs: tuple[float, ...]  # the out-of-task population on the digits: step sizes ...
    digits_widths: tuple[int, ...]  # ... and widths (B and weight decay at their first level)
    depth: int  # hidden layers
    stop_loss: float  # a run stops at the first evaluation with full training cross-entropy ≤ this ...
    max_steps: int  # ... or after this many steps (then it has not reached the target)
    eval_every: int  # steps between evaluations of the full training loss
    extra_test: int  # further MNIST-1D test signals (two halves: the gap and the noisy oracle)
    curvature_samples: int  # first training samples every probe uses
    tol: float  # relative tolerance of each λmax
    trace_matvecs: int  # products of each trace estimate
    slq_probes: int  # SLQ probes of the effective rank ...
    slq_steps: int  # ... and Lanczos steps per probe
    adaptive_steps: int  # ascent steps of the worst-case and ε-sharpness
    average_samples: int  # Monte-Carlo samples of the average-case sharpness
    pac_samples: int  # Monte-Carlo samples per PAC-Bayes bisection step
    noise_batches: int  # minibatches of the gradient noise
    barrier_points: int  # points on the segment between two aligned seeds
    rescaled_configs: int = 3  # configurations whose networks are measured again after a rescaling ...
    alphas: tuple[float, ...] = (0.5, 2.0)  # ... by these factors (Dinh et al.; 1 is the population itself)
    extra_seed: int = 1  # the generator seed of the further test signals (the default set's is 42)
    n_resamples: int = 2000  # bootstrap resamples of every interval
    workers: int | None = None  # Dask worker processes (None: one per core; 1: in this process)
    threads: int | None = 1  # torch threads per task

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise ValueError(f"the pair measures need at least 2 seeds per configuration, got {self.seeds}")

    @property
    def num_networks(self) -> int:
        return math.prod(map(len, (self.lrs, self.batch_sizes, self.widths, self.weight_decays, self.seeds)))


_COMMON = {"depth": 2, "extra_seed": 1}
PROFILES = {
    "smoke": Sizes(
        lrs=(0.05, 0.1), batch_sizes=(32, 64), widths=(64,), weight_decays=(0.0,), seeds=(0, 1),
        digits_lrs=(0.05,), digits_widths=(64,), stop_loss=1.5, max_steps=400, eval_every=50,
        extra_test=1000, curvature_samples=256, tol=1e-2, trace_matvecs=8, slq_probes=1, slq_steps=10,
        adaptive_steps=2, average_samples=4, pac_samples=2, noise_batches=2, barrier_points=5,
        n_resamples=200, workers=1, rescaled_configs=1, **_COMMON,
    ),
    # 3 × 3 × 3 × 3 configurations × 2 seeds = 162 networks (Jiang et al. use 2 seeds too). The levels are
    # chosen so that every network reaches a training cross-entropy of 0.1 within 10,000 steps (measured:
    # 800–5,200 steps at the corners; width 64 or η/B = 0.1/32 do not get there)
    "paper": Sizes(
        lrs=(0.01, 0.02, 0.05), batch_sizes=(32, 64, 128), widths=(128, 256, 512),
        weight_decays=(0.0, 1e-4, 5e-4), seeds=(0, 1), digits_lrs=(0.01, 0.02, 0.05),
        digits_widths=(128, 256, 512), stop_loss=0.1, max_steps=10000, eval_every=100, extra_test=20000,
        curvature_samples=1000, tol=1e-3, trace_matvecs=30, slq_probes=2, slq_steps=30, adaptive_steps=10,
        average_samples=16, pac_samples=8, noise_batches=8, barrier_points=11, **_COMMON,
    ),
    "full": Sizes(
        lrs=(0.005, 0.01, 0.03, 0.1), batch_sizes=(16, 64, 256, 1024), widths=(32, 64, 128, 256, 512),
        weight_decays=(0.0, 1e-5, 1e-4, 1e-3), seeds=(0, 1, 2), digits_lrs=(0.01, 0.03, 0.1),
        digits_widths=(64, 128, 256), stop_loss=0.01, max_steps=100000, eval_every=100, extra_test=20000,
        curvature_samples=4000, tol=1e-4, trace_matvecs=100, slq_probes=4, slq_steps=80, adaptive_steps=20,
        average_samples=64, pac_samples=16, noise_batches=16, barrier_points=25, workers=None, threads=None,
        **_COMMON,
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# The population


def _settings(sizes: Sizes, dataset: str, lr: float, b: int, width: int, wd: float, seed: int) -> dict:
    fields = asdict(sizes)
    keep = ("depth", "stop_loss", "max_steps", "eval_every", "extra_test", "extra_seed", "curvature_samples",
            "tol", "trace_matvecs", "slq_probes", "slq_steps", "adaptive_steps", "average_samples",
            "pac_samples", "noise_batches", "barrier_points")  # fmt: skip
    return {"dataset": dataset, "lr": lr, "batch_size": b, "width": width, "weight_decay": wd,
            "seeds": list(sizes.seeds), "measure_seed": seed, **{k: fields[k] for k in keep}}  # fmt: skip


def run_population(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """Every configuration of both populations (MNIST-1D factorial; digits over step size × width), one task
    each; `seed` seeds the measurements. Returns one row per network: dataset, the four axes, seed, a
    configuration label, status and every column of `rq3_tasks.configuration_task`'s rows."""
    items = [
        _settings(sizes, "mnist1d", lr, b, w, wd, seed)
        for lr in sizes.lrs
        for b in sizes.batch_sizes
        for w in sizes.widths
        for wd in sizes.weight_decays
    ]
    items += [_settings(sizes, "digits", lr, sizes.batch_sizes[0], w, sizes.weight_decays[0], seed)
              for lr in sizes.digits_lrs for w in sizes.digits_widths]  # fmt: skip
    outs = run_cached(rq3_tasks.configuration_task, items, cache=cache, depends_on=rq3_tasks.DEPENDS_ON,
                      workers=sizes.workers, threads=sizes.threads, desc="RQ3 configurations")  # fmt: skip
    rows = []
    for item, out in zip(items, outs, strict=True):
        config = {k: item[k] for k in ("dataset", *AXES)}
        label = "/".join(f"{k}={item[k]:g}" for k in AXES)
        rows += [{**config, "config": f"{item['dataset']}/{label}", **row} for row in out["rows"]]
    frame = pd.DataFrame(rows)
    frame["log_lr_over_b"] = np.log(frame["lr"] / frame["batch_size"])
    return frame


def run_rescaling(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """The networks of `rescaled_configs` MNIST-1D configurations spread over the factorial (every k-th), measured
    again after each rescaling α of `alphas`: one row per network and α, with the configuration label."""
    configs = [(lr, b, w, wd) for lr in sizes.lrs for b in sizes.batch_sizes for w in sizes.widths
               for wd in sizes.weight_decays]  # fmt: skip
    step = max(1, len(configs) // max(sizes.rescaled_configs, 1))
    chosen = configs[::step][: sizes.rescaled_configs]
    items = [
        {**_settings(sizes, "mnist1d", *c, seed), "alpha": float(a)} for c in chosen for a in sizes.alphas
    ]
    outs = run_cached(rq3_tasks.configuration_task, items, cache=cache, depends_on=rq3_tasks.DEPENDS_ON,
                      workers=sizes.workers, threads=sizes.threads, desc="RQ3 rescalings")  # fmt: skip
    rows = []
    for item, out in zip(items, outs, strict=True):
        label = "/".join(f"{k}={item[k]:g}" for k in AXES)
        rows += [{"config": f"mnist1d/{label}", "alpha": item["alpha"], **row} for row in out["rows"]]
    return pd.DataFrame(rows)


def rescaling_changes(population: pd.DataFrame, rescaled: pd.DataFrame, measures: Sequence[str]) -> pd.Series:
    """For each measure, the largest relative change |m_α − m_1| / |m_1| over the rescaled networks and factors
    (m_1 from the population); NaN when a value is missing. A measure above `RESCALING_TOLERANCE` moves under
    a change of parametrisation that leaves the function unchanged, so it cannot carry a causal claim."""
    base = population.set_index(["config", "seed"])
    out = {}
    for measure in measures:
        changes = []
        for _, row in rescaled.iterrows():
            key = (row["config"], row["seed"])
            if key not in base.index or not row.get("reached", False):
                continue
            m1, ma = float(base.loc[key, measure]), float(row[measure])
            if not (math.isfinite(m1) and math.isfinite(ma)):
                changes.append(0.0 if m1 == ma else math.inf)
                continue
            changes.append(abs(ma - m1) / abs(m1) if m1 != 0 else (0.0 if ma == 0 else math.inf))
        out[measure] = max(changes) if changes else math.nan
    return pd.Series(out, name="rescaling_change")


def census(frame: pd.DataFrame) -> pd.DataFrame:
    """Per data set: networks, how many reached the target, diverged, or ran out of steps; and the spread of
    the final training loss of those that reached it (the like-with-like condition)."""
    out = []
    for dataset, group in frame.groupby("dataset", sort=False):
        reached = group[group["reached"]]
        out.append({"dataset": dataset, "networks": len(group), "reached": len(reached),
                    "diverged": int((group["status"] == "diverged").sum()),
                    "out_of_steps": int((group["status"] == "finished").sum()),
                    "train_loss_min": reached["train_loss"].min(), "train_loss_max": reached["train_loss"].max(),
                    "gap_min": reached["gap"].min(), "gap_max": reached["gap"].max()})  # fmt: skip
    return pd.DataFrame(out)


def add_reference_measures(
    frame: pd.DataFrame, axes: Sequence[str] = AXES, *, folds: int = 5
) -> pd.DataFrame:
    """The reached networks with the hyperparameter-only model as one more measure: the out-of-fold prediction
    of the gap by a ridge regression (`sklearn.linear_model.RidgeCV`) on the axes (logarithms of η, B and
    width; weight decay as is) and their pairwise products, the folds grouped by configuration (a network is
    never predicted from its own configuration's seeds). `NOISY_ORACLE` (the gap on the other half) is a column
    already."""
    reached = frame[frame["reached"]].copy()
    usable = [a for a in axes if reached[a].nunique() > 1]
    if not usable or reached["config"].nunique() < folds:
        reached[HYPERPARAMETER_MODEL] = np.nan
        return reached
    features = pd.DataFrame({a: np.log(reached[a]) if a != "weight_decay" else reached[a] for a in usable})
    for i, a in enumerate(usable):
        for b in usable[i + 1 :]:
            features[f"{a}*{b}"] = features[a] * features[b]
    model = RidgeCV(alphas=np.logspace(-3, 3, 13))
    reached[HYPERPARAMETER_MODEL] = cross_val_predict(
        model, features.to_numpy(), reached["gap"].to_numpy(), groups=reached["config"], cv=GroupKFold(folds)
    )
    return reached


# ------------------------------------------------------------------------------------------------------------
# Statistics


def _tau_a(frame: pd.DataFrame, measure: str) -> float:
    x, y = frame[measure].to_numpy(float), frame["gap"].to_numpy(float)
    n0 = len(x) * (len(x) - 1) / 2
    if n0 == 0:
        return math.nan
    i, j = np.triu_indices(len(x), 1)
    return float((np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])).sum() / n0)


def _config_means(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame.groupby("config", sort=False)[list(columns)].mean()


def measure_table(
    frame: pd.DataFrame,
    measures: Sequence[str],
    *,
    axes: Sequence[str] = AXES,
    num_test: int,
    level: float = LEVEL,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per measure over the reached networks of `frame` (with the reference measures added).

    Columns: measure, name, kind; ``tau`` (Kendall τ_a of the measure with the gap over all networks, + when
    they grow together) with ``tau_low``/``tau_high`` (cluster bootstrap over configurations,
    `cluster_bootstrap_ci`, at `level`); ``Psi`` and ``psi_<axis>`` (`granulated_kendall`); ``cmi``
    (`conditional_mutual_information`, |S| = 2 where there are ≥ 2 axes, else |S| ≤ 1); ``rse_mean``,
    ``rse_p90``, ``rse_max`` (the robust sign error: weighted mean over all pairs, 90th percentile and maximum
    over environments with an effective sample size ≥ 12, hard Hoeffding weights at n = `num_test`);
    ``partial`` with ``partial_low``/``partial_high`` (partial Spearman of measure and gap on configuration
    means given log(η/B) and the training loss, BCa over configurations) and ``p_value`` (Kendall's test on the
    configuration means, two-sided) with ``p_holm`` (Holm across the measures of the table).

    Measures whose values are not all finite (e.g. an inverse margin of a network with γ ≤ 0) are ranked with
    +inf above every finite value; NaN measures (not computed) give NaN rows.
    """
    axes = [a for a in axes if frame[a].nunique() > 1]
    rows = []
    for measure in measures:
        data = frame[[*axes, "config", "gap", "train_loss", "log_lr_over_b", measure]].copy()
        data[measure] = data[measure].replace(np.inf, np.finfo(float).max)
        row = {"measure": measure, "name": NAMES.get(measure, measure), "kind": KINDS.get(measure, "")}
        if data[measure].isna().any() or len(data) < 3:
            rows.append(row)
            continue
        tau = cluster_bootstrap_ci(data, None, "config", lambda d, m=measure: _tau_a(d, m), level=level,
                                   n_resamples=n_resamples, seed=seed)  # fmt: skip
        row |= {"tau": _tau_a(data, measure), "tau_low": tau.low, "tau_high": tau.high}
        if axes:
            psi = granulated_kendall(data, measure, "gap", axes)
            row |= {"Psi": psi["Psi"], **{f"psi_{a}": v for a, v in psi["psi"].items()}}
            sizes = (2,) if len(axes) >= 2 else (0, 1)
            row["cmi"] = conditional_mutual_information(data, measure, "gap", axes, condition_sizes=sizes)[
                "score"
            ]
            rse = robust_sign_error(data, measure, "gap", environment_columns=axes, num_test=num_test)
            envs = rse["environments"]
            eligible = envs[envs["n_effective"] >= rse["min_ess"]]["sign_error"]
            row |= {"rse_mean": rse["mean"], "rse_p90": float(eligible.quantile(0.9)) if len(eligible) else math.nan,
                    "rse_max": rse["robust"]}  # fmt: skip
        means = _config_means(data, [measure, "gap", "train_loss", "log_lr_over_b"])
        if len(means) >= 10:
            partial = partial_rank_correlation(means[measure], means["gap"],
                                               means[["log_lr_over_b", "train_loss"]], level=level,
                                               n_resamples=n_resamples, seed=seed)  # fmt: skip
            row |= {"partial": partial.estimate, "partial_low": partial.low, "partial_high": partial.high,
                    "p_value": float(scipy_stats.kendalltau(means[measure], means["gap"]).pvalue)}  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows)
    if "p_value" in table and table["p_value"].notna().any():
        ok = table["p_value"].notna()
        table.loc[ok, "p_holm"] = holm(table.loc[ok, "p_value"].to_numpy())
    return table


def power(table: pd.DataFrame) -> float:
    """The smallest difference in τ this population resolves: the median width of the τ intervals (two
    measures whose τ differ by less have overlapping intervals)."""
    widths = (table["tau_high"] - table["tau_low"]).dropna()
    return float(widths.median()) if len(widths) else math.nan


# ------------------------------------------------------------------------------------------------------------
# Verdicts


def verdict_measure(row: pd.Series | dict, n_reached: int, *, min_networks: int = MIN_NETWORKS) -> Verdict:
    """Does a quantity "correlate with generalisation" (the founding claim), from its row of `measure_table`?

    - NOT_TESTABLE when fewer than `min_networks` networks reached the training-loss target, or when the τ
      interval or the partial-correlation interval is undefined;
    - τ's interval decides the association (`verdict_from_correlation`, expected sign +: a sharper or more
      complex network generalises worse): REFUTED when it lies below 0, NOT_SUPPORTED when it contains 0;
    - when τ's interval lies above 0, the partial correlation on configuration means given log(η/B) and the
      training loss must too: SUPPORTED if it does; NOT_TESTABLE if it does not (the association may be the
      step size's and batch size's, a confound this population cannot remove).
    """
    if n_reached < min_networks:
        return not_testable(
            f"only {n_reached} networks reached the training-loss target (need {min_networks})"
        )
    low, high = row.get("tau_low", math.nan), row.get("tau_high", math.nan)
    association = verdict_from_correlation((low, high), +1)
    if association.outcome != "supported":
        return association
    partial = (row.get("partial_low", math.nan), row.get("partial_high", math.nan))
    confound = verdict_from_correlation(partial, +1)
    if confound.outcome == "supported":
        return Verdict("supported", f"τ {association.reason}; given log(η/B) and the training loss, the partial "
                                    f"correlation {confound.reason}")  # fmt: skip
    return not_testable(
        f"τ {association.reason}, but given log(η/B) and the training loss the partial "
        f"correlation {confound.reason.replace(', as claimed', '')}: η/B may carry the association"
    )


def verdict_table(table: pd.DataFrame, n_reached: int) -> pd.DataFrame:
    """The founding quantities' verdicts (`verdict_measure`), with τ, Ψ and the partial correlation."""
    rows = []
    for measure in FOUNDING:
        match = table[table["measure"] == measure]
        row = match.iloc[0].to_dict() if len(match) else {}
        verdict = verdict_measure(row, n_reached)
        rows.append(
            {
                "quantity": NAMES[measure],
                "verdict": verdict.outcome,
                "reason": verdict.reason,
                **{k: row.get(k, math.nan) for k in ("tau", "tau_low", "tau_high", "Psi", "partial")},
            }
        )
    return pd.DataFrame(rows)


def family_interval_level(level: float = LEVEL) -> float:
    """The level of each founding quantity's intervals: `family_level` over the `FOUNDING` claims."""
    return family_level(level, len(FOUNDING))


# ------------------------------------------------------------------------------------------------------------
# Figures


def plot_tau(table: pd.DataFrame, ax) -> None:
    """τ with its interval per measure, sorted, coloured by kind; Ψ as open markers."""
    data = table.dropna(subset=["tau"]).sort_values("tau")
    colours = {
        "geometry": "C0",
        "norm / margin": "C1",
        "optimisation": "C2",
        "seed pair": "C3",
        "reference": "C7",
    }
    y = np.arange(len(data))
    for i, (_, row) in enumerate(data.iterrows()):
        c = colours.get(row["kind"], "k")
        ax.errorbar(row["tau"], i, xerr=[[row["tau"] - row["tau_low"]], [row["tau_high"] - row["tau"]]], fmt="o",
                    color=c, capsize=2)  # fmt: skip
        if "Psi" in row and not pd.isna(row["Psi"]):
            ax.plot(row["Psi"], i, "D", mfc="none", color=c)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_yticks(y, data["name"])
    ax.set_xlabel("Kendall τ with the gap (dots, cluster-bootstrap CI); Ψ (diamonds)")
    for kind, c in colours.items():
        ax.plot([], [], "o", color=c, label=kind)
    ax.legend(loc="lower right", fontsize="small")


def plot_measure_vs_gap(frame: pd.DataFrame, measure: str, axis: str, ax) -> None:
    """One measure against the gap, coloured by the values of one axis."""
    for i, (value, group) in enumerate(frame.groupby(axis)):
        ax.scatter(group[measure], group["gap"], s=12, color=f"C{i}", label=f"{axis} = {value:g}")
    ax.set_xlabel(NAMES.get(measure, measure))
    ax.set_ylabel("gap (test − train error)")
    if frame[measure].gt(0).all() and frame[measure].max() / frame[measure].min() > 30:
        ax.set_xscale("log")
    ax.legend(fontsize="small")


def plot_psi_heatmap(table: pd.DataFrame, axes: Sequence[str], ax, fig) -> None:
    """ψ per axis × measure on a shared colour scale [−1, 1], with a colourbar."""
    cols = [f"psi_{a}" for a in axes if f"psi_{a}" in table]
    data = table.dropna(subset=cols).sort_values("tau")
    image = ax.imshow(data[cols].to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_yticks(range(len(data)), data["name"])
    ax.set_xticks(range(len(cols)), [c.removeprefix("psi_") for c in cols])
    fig.colorbar(image, ax=ax, label="ψ (Kendall τ within one axis)")


def plot_sign_error(
    frame: pd.DataFrame, measures: Sequence[str], axes: Sequence[str], num_test: int, ax
) -> None:
    """The distribution of the sign error over single-axis environments for some measures (those with an
    effective sample size ≥ 12, or all of them when none has)."""
    axes = [a for a in axes if frame[a].nunique() > 1]
    values = []
    for measure in measures:
        rse = robust_sign_error(frame, measure, "gap", environment_columns=axes, num_test=num_test)
        envs = rse["environments"]
        eligible = envs[envs["n_effective"] >= rse["min_ess"]]
        values.append((eligible if len(eligible) else envs)["sign_error"].to_numpy())
    ax.boxplot(values, orientation="horizontal", tick_labels=[NAMES.get(m, m) for m in measures])
    ax.axvline(0.5, color="k", lw=0.5, ls="--")
    ax.set_xlabel("sign error per environment (0: always right, 0.5: coin flip)")


# ------------------------------------------------------------------------------------------------------------
# Glued numbers


def _tau_text(row) -> str:
    if pd.isna(row.get("tau", math.nan)):
        return "undefined"
    return format_estimate(row["tau"], row["tau_low"], row["tau_high"], digits=2)


def numbers(sizes: Sizes, profile: str, frame: pd.DataFrame, table: pd.DataFrame, verdicts: pd.DataFrame,
            digits_table: pd.DataFrame, rescaled: pd.DataFrame) -> dict:  # fmt: skip
    """The chapter's glued values: set-up, census, the best measures, the baselines, power, the rescaling check
    (`table` must carry ``rescaling_change``) and verdicts."""
    main = frame[frame["dataset"] == "mnist1d"]
    reached = main[main["reached"]]
    ranked = table.dropna(subset=["tau"]).sort_values("tau", ascending=False)
    candidates = ranked[~ranked["kind"].isin(["reference"])]
    norms = ranked[ranked["kind"] == "norm / margin"]
    out = {
        "profile": profile, "level": f"{LEVEL:.0%}", "family_level": f"{family_interval_level():.1%}",
        "num_configs": main["config"].nunique(), "num_networks": len(main), "num_reached": len(reached),
        "num_diverged": int((main["status"] == "diverged").sum()),
        "num_out_of_steps": int((main["status"] == "finished").sum()),
        "seeds": ", ".join(map(str, sizes.seeds)), "stop_loss": f"{sizes.stop_loss:g}",
        "lrs": ", ".join(f"{v:g}" for v in sizes.lrs), "batch_sizes": ", ".join(map(str, sizes.batch_sizes)),
        "widths": ", ".join(map(str, sizes.widths)), "weight_decays": ", ".join(f"{v:g}" for v in sizes.weight_decays),
        "extra_test": sizes.extra_test, "half_test": sizes.extra_test // 2, "curvature_samples": sizes.curvature_samples,
        "train_loss_range": f"{reached['train_loss'].min():.3g}–{reached['train_loss'].max():.3g}" if len(reached) else "none",
        "gap_range": f"{reached['gap'].min():.3f}–{reached['gap'].max():.3f}" if len(reached) else "none",
        "power": f"{power(table):.2f}",
        "oracle_tau": _tau_text(table.set_index("measure").loc[NOISY_ORACLE]) if NOISY_ORACLE in set(table["measure"]) else "undefined",
        "hyper_tau": _tau_text(table.set_index("measure").loc[HYPERPARAMETER_MODEL]) if HYPERPARAMETER_MODEL in set(table["measure"]) else "undefined",
        "best_measures": "; ".join(f"{r['name']} {_tau_text(r)}" for _, r in candidates.head(3).iterrows()) or "none",
        "best_norm": "; ".join(f"{r['name']} {_tau_text(r)}" for _, r in norms.head(1).iterrows()) or "none",
        "rescaled_networks": int(rescaled["reached"].sum()) if len(rescaled) else 0,
        "alphas": ", ".join(f"{a:g}" for a in sizes.alphas),
        "rescaling_tolerance": f"{RESCALING_TOLERANCE:.0%}",
        "moving_measures": ", ".join(NAMES.get(m, m) for m in table.loc[table["rescaling_change"] > RESCALING_TOLERANCE, "measure"]) or "none",
        "invariant_measures": ", ".join(NAMES.get(m, m) for m in table.loc[table["rescaling_change"] <= RESCALING_TOLERANCE, "measure"]) or "none",
        "digits_networks": int((frame["dataset"] == "digits").sum()),
        "digits_reached": int(frame[(frame["dataset"] == "digits")]["reached"].sum()),
    }  # fmt: skip
    for _, row in table.iterrows():
        out[f"tau_{row['measure']}"] = _tau_text(row)
        out[f"psi_{row['measure']}"] = (
            "undefined" if pd.isna(row.get("Psi", math.nan)) else f"{row['Psi']:.2f}"
        )
    for _, row in digits_table.iterrows():
        out[f"digits_tau_{row['measure']}"] = _tau_text(row)
    for _, row in verdicts.iterrows():
        key = next(m for m in FOUNDING if NAMES[m] == row["quantity"])
        out[f"verdict_{key}"] = row["verdict"]
    return out
