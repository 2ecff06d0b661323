"""RQ1 — why does SGD find flat, generalising minima? The chapter's experiments, summaries and verdict rules.

Five experiments on MNIST-1D. Each is a sweep of independent tasks (`rq1_tasks`: one training run with its
measurements each) run and cached by `landscape.paper.experiments.common.run_cached` under their settings and
the code they run (`rq1_tasks.DEPENDS_ON`, not this module: editing a summary, a verdict rule or a figure here
recomputes nothing).

- `run_eos`: full-batch gradient descent on a training subset (the MLP and a one-block Transformer,
  cross-entropy and squared loss, several step sizes), λmax of the full-batch loss tracked along the way and at
  every step of a window from the onset — the edge of stability (Cohen et al. 2021); loss spikes (catapult
  candidates, Lewkowycz et al. 2020) are counted apart.
- `run_grid`: plain SGD at every (batch size B, step size η) of a grid, each run stopped at a target training
  loss and measured there (λmax, trace/D, normalised and adaptive sharpness), so that runs are compared at
  equal training loss (Keskar et al. 2017).
- `run_escape`: from the large-batch grid solution, small-batch SGD against full-batch GD at the same η, SGD
  continued until it is back at the target loss so that the two are compared at the same training loss.
- `run_threshold`: from the same solutions, SGD at every batch size × a range of step sizes, against the
  linear-stability threshold η*(B) of the start (`landscape.stability`; Wu, Ma & E 2018).
- `run_rescaling`: Dinh et al. (2017)'s function-preserving rescalings of one solution, every sharpness
  measure.

Summaries (`eos_runs`, `eos_cells`, `eos_ratio_interval`, `eos_reached_interval`, `grid_cells`,
`grid_correlations`, `keskar_pairs`, `keskar_intervals`, `escape_ends`, `escape_interval`,
`escape_loss_interval`, `threshold_table`, `agreement_interval`, `rescaling_spread`) turn the raw tables into the chapter's numbers; the ``*_numbers``
functions give the glued values of each section. Every verdict rests on a confidence interval
(`landscape.paper.stats`) and is decided by the shared rules of `landscape.paper.verdicts`; a claim with k
parts has its parts' intervals at `family_level`(LEVEL, k).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...dynamics import edge_of_stability
from ..glue import format_decimals, format_estimate, format_interval, format_number, format_range
from ..stats import (
    LEVEL,
    Interval,
    bootstrap_ci,
    cluster_bootstrap_ci,
    paired_difference_ci,
    partial_rank_correlation,
    rank_correlation,
    ratio_ci,
    seed_interval,
)
from ..verdicts import (
    NOT_SUPPORTED,
    SUPPORTED,
    Verdict,
    combine,
    family_level,
    not_testable,
    verdict_from_correlation,
    verdict_from_interval,
    verdict_in_band,
)
from . import rq1_tasks
from .common import run_cached
from .rq1_tasks import ADAPTIVE_RHO, EPSILON, LOSSES

__all__ = [
    "ADAPTIVE_RHO",
    "EOS_BAND",
    "EOS_LATE_FRACTION",
    "EOS_ONSET",
    "ESCAPE_LOSS_FACTOR",
    "ESCAPE_RISE",
    "GRANULATED_AXES",
    "LEVEL",
    "MEASURES",
    "PROFILES",
    "THRESHOLD_AGREEMENT",
    "EosSizes",
    "Sizes",
    "agreement_interval",
    "base_grid",
    "eos_cells",
    "eos_numbers",
    "eos_ratio_interval",
    "eos_reached_interval",
    "eos_runs",
    "eos_setting_intervals",
    "escape_ends",
    "escape_interval",
    "escape_loss_interval",
    "escape_numbers",
    "granulated_numbers",
    "granulated_table",
    "grid_cells",
    "grid_correlations",
    "grid_numbers",
    "keskar_intervals",
    "keskar_pairs",
    "log_ticks",
    "matched_runs",
    "plot_eos",
    "plot_escape",
    "plot_grid",
    "plot_rescaling",
    "plot_threshold",
    "rescaling_numbers",
    "rescaling_spread",
    "run_eos",
    "run_escape",
    "run_grid",
    "run_rescaling",
    "run_threshold",
    "setup_numbers",
    "threshold_numbers",
    "threshold_table",
    "verdict_eos",
    "verdict_escape",
    "verdict_flat",
    "verdict_generalise",
    "verdict_keskar",
    "verdict_table",
    "verdict_threshold",
]

EOS_ONSET = 0.9  # λmax·η/2 that ends progressive sharpening
EOS_BAND = (0.85, 1.15)  # "EoS ratio ≈ 1": the interval must lie inside this band
EOS_LATE_FRACTION = (
    0.25  # a run's EoS ratio: the mean of λmax·η/2 over this last fraction of its tracked points
)
# a loss spike (a catapult candidate, Lewkowycz et al.): the training loss at a tracked point rises above 2 × its
# lowest value so far
CATAPULT_RISE = 2.0
ESCAPE_LOSS_FACTOR = (
    1.25  # SGD and GD end "at the same training loss" if their ratio's interval is in [1/f, f]
)
ESCAPE_RISE = (
    2.0  # a threshold continuation "left the minimum" when its training loss rose above 2 × the start's
)
THRESHOLD_AGREEMENT = (
    0.8  # linear stability "predicts the escape" when it calls ≥ 80 % of continuations right
)
MIN_CORRELATION_UNITS = 10  # fewest grid cells for a correlation interval (stats.SMALL_SAMPLE)
MEASURES = ("lambda_max", "trace_per_param", "normalized_sharpness", "adaptive_sharpness")
NAMES = {"lambda_max": "λmax", "trace_per_param": "trace/D", "normalized_sharpness": "normalised sharpness",
         "adaptive_sharpness": "adaptive sharpness", "temperature": "η/B", "gap": "gap"}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class EosSizes:
    """Edge-of-stability runs of one architecture: full-batch GD on the first `num_train` training samples."""

    seeds: tuple[int, ...]  # initialisation seeds
    num_train: int  # training samples GD runs on (the full-batch objective)
    steps: int  # gradient-descent steps
    track_every: int  # steps between λmax evaluations
    lrs_ce: tuple[float, ...]  # step sizes with cross-entropy
    lrs_mse: tuple[float, ...]  # step sizes with the squared loss
    dense_steps: int = 0  # steps tracked at every step from the last tracked point before the onset

    def lrs(self, loss: str) -> tuple[float, ...]:
        """The step sizes of `loss` ("ce" or "mse")."""
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        return self.lrs_ce if loss == "ce" else self.lrs_mse


@dataclass(frozen=True)
class Sizes:
    """Every size and budget of the chapter for one profile."""

    seeds: tuple[int, ...]  # seeds of the grid and escape runs (initialisation and data order)
    eos_mlp: EosSizes  # edge of stability, the 2 × 100 ReLU MLP
    eos_transformer: EosSizes  # edge of stability, the one-block Transformer
    batch_sizes: tuple[int, ...]  # grid batch sizes B
    lrs: tuple[float, ...]  # grid step sizes η
    target_loss: float  # a grid run stops at the first check with full training loss ≤ this ...
    max_steps: int  # ... or after this many steps (then it is left out of every comparison)
    check_every: int  # steps between two checks of the full training loss
    curvature_samples: int  # first training samples whose loss Hessian the grid/escape/rescaling measure
    trace_matvecs: int  # Hessian-vector products of each trace estimate
    adaptive_steps: int  # ascent steps of the worst-case and ε-sharpness
    tol: float  # relative tolerance of every λmax
    escape_lr: float  # step size of the escape runs (one of `lrs`; they start at B = max(batch_sizes))
    escape_batch: int  # batch size of the small-batch SGD continuation
    escape_steps: int  # steps of each continuation
    escape_every: int  # steps between λmax evaluations of a continuation
    alphas: tuple[float, ...]  # Dinh et al. rescaling factors (must contain 1)
    # weight decays of the grid, a third hyperparameter axis for the granulated τ of the gap (Jiang et al.
    # 2020); the first is the base grid that every other comparison and the escape starts use
    weight_decays: tuple[float, ...] = (0.0,)
    escape_return_steps: int = 0  # budget of the return phase: an escape run above target_loss goes on to it
    threshold_lrs: tuple[float, ...] = ()  # step sizes of the escape-threshold continuations (× batch_sizes)
    threshold_steps: int = 0  # steps of each threshold continuation (losses checked every check_every)
    n_resamples: int = 2000  # bootstrap resamples of every interval
    workers: int | None = None  # Dask worker processes (None: one per core; 1: in this process)
    threads: int | None = 1  # torch threads per task (None: leave the process's setting)

    def __post_init__(self) -> None:
        if self.escape_lr not in self.lrs:
            raise ValueError(f"escape_lr {self.escape_lr} must be one of the grid's step sizes {self.lrs}")
        if not any(math.isclose(a, 1.0) for a in self.alphas):
            raise ValueError(
                f"alphas must contain 1 (the reference of the rescaling figure), got {self.alphas}"
            )
        if len(self.batch_sizes) < 2:
            raise ValueError(f"the grid needs at least two batch sizes, got {self.batch_sizes}")
        if (
            not self.weight_decays
            or len(set(self.weight_decays)) != len(self.weight_decays)
            or any(not (isinstance(w, (int, float)) and w >= 0) for w in self.weight_decays)
        ):
            raise ValueError(
                f"weight_decays must be distinct non-negative numbers, got {self.weight_decays!r}"
            )

    @property
    def eos(self) -> dict[str, EosSizes]:
        """The edge-of-stability sizes by architecture."""
        return {"mlp": self.eos_mlp, "transformer": self.eos_transformer}

    @property
    def small_batch(self) -> int:
        return min(self.batch_sizes)

    @property
    def large_batch(self) -> int:
        return max(self.batch_sizes)


PROFILES = {
    "smoke": Sizes(
        seeds=(0, 1),
        eos_mlp=EosSizes((0, 1), 128, 60, 10, (0.5, 1.0), (0.2, 0.4), dense_steps=10),
        eos_transformer=EosSizes((0, 1), 64, 30, 10, (0.1, 0.2), (0.05, 0.06), dense_steps=6),
        batch_sizes=(32, 256), lrs=(0.05, 0.2), target_loss=1.8, max_steps=600, check_every=20,
        curvature_samples=256, trace_matvecs=8, adaptive_steps=3, tol=1e-2,
        escape_lr=0.2, escape_batch=32, escape_steps=40, escape_every=20, escape_return_steps=200,
        threshold_lrs=(0.2, 2.0), threshold_steps=20, alphas=(0.3, 1.0, 3.0), weight_decays=(0.0, 1e-3),
        n_resamples=500, workers=1, threads=1,
    ),
    # 5 seeds for the grid, escape and MLP EoS runs (3 before: intervals of 3 paired values are too wide to
    # decide anything), 3 for the Transformer EoS runs, whose Hessian-vector products cost ~15x the MLP's;
    # the tasks now run on every core, so the cold wall time stays about that of 3 seeds run one at a time
    "paper": Sizes(
        seeds=(0, 1, 2, 3, 4),
        eos_mlp=EosSizes(
            (0, 1, 2, 3, 4), 500, 1500, 25, (0.2, 0.3, 0.5, 1.0), (0.1, 0.2, 0.3, 0.4), dense_steps=200
        ),
        eos_transformer=EosSizes(
            (0, 1, 2), 256, 500, 20, (0.03, 0.05, 0.1, 0.2), (0.035, 0.045, 0.055, 0.06), dense_steps=100
        ),
        # SGD to a training loss of 0.05 (≈ 100 % training accuracy): B = 1024 at η = 0.05 needs ~11k steps
        batch_sizes=(16, 64, 256, 1024), lrs=(0.05, 0.1, 0.2), target_loss=0.05, max_steps=20000,
        check_every=50, curvature_samples=1000, trace_matvecs=40, adaptive_steps=10, tol=1e-3,
        escape_lr=0.1, escape_batch=16, escape_steps=600, escape_every=50, escape_return_steps=20000,
        threshold_lrs=(0.05, 0.1, 0.2, 0.4, 0.8), threshold_steps=200, alphas=(0.1, 0.3, 1.0, 3.0, 10.0),
        weight_decays=(0.0, 5e-4), workers=None, threads=1,
    ),
    "full": Sizes(
        seeds=(0, 1, 2, 3, 4),
        eos_mlp=EosSizes(
            (0, 1, 2, 3, 4), 1000, 4000, 20, (0.1, 0.2, 0.3, 0.5, 1.0), (0.05, 0.1, 0.2, 0.3, 0.4), dense_steps=400
        ),
        eos_transformer=EosSizes(
            (0, 1, 2, 3, 4), 1000, 2000, 20, (0.03, 0.05, 0.1, 0.2), (0.035, 0.045, 0.055, 0.06), dense_steps=200
        ),
        batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 4000), lrs=(0.02, 0.05, 0.1, 0.2, 0.4),
        target_loss=0.05, max_steps=100000, check_every=50, curvature_samples=4000, trace_matvecs=100,
        adaptive_steps=20, tol=1e-4, escape_lr=0.1, escape_batch=16, escape_steps=4000, escape_every=100,
        escape_return_steps=100000, threshold_lrs=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6), threshold_steps=1000,
        alphas=tuple(np.logspace(-2, 2, 9).tolist()), workers=None, threads=None,
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Experiments: the raw tables


def _run(sizes: Sizes, compute, items: list[dict], cache: str | Path, desc: str) -> list[dict]:
    """`run_cached` of a `rq1_tasks` function with the profile's workers and threads."""
    return run_cached(compute, items, cache=cache, depends_on=rq1_tasks.DEPENDS_ON, workers=sizes.workers,
                      threads=sizes.threads, desc=desc)  # fmt: skip


def _histories(items: list[dict], outs: list[dict], labels: Sequence[str]) -> pd.DataFrame:
    """The ``history`` of every task result, labelled with the `labels` entries of its settings."""
    return pd.concat(
        [pd.DataFrame(out["history"]).assign(**{k: item[k] for k in labels}, status=out["status"])
         for item, out in zip(items, outs, strict=True)],
        ignore_index=True,
    )  # fmt: skip


def _measures(sizes: Sizes, measure_seed: int) -> dict:
    """The settings of `rq1_tasks._measure`."""
    return {"curvature_samples": sizes.curvature_samples, "tol": sizes.tol,
            "trace_matvecs": sizes.trace_matvecs, "adaptive_rho": ADAPTIVE_RHO,
            "adaptive_steps": sizes.adaptive_steps, "measure_seed": measure_seed}  # fmt: skip


def _grid_settings(
    sizes: Sizes, b: int, lr: float, seed: int, measure_seed: int, weight_decay: float | None = None
) -> dict:
    """The settings of `rq1_tasks.grid_task` (weight decay: the base grid's by default); the escape start keeps
    its weights."""
    wd = sizes.weight_decays[0] if weight_decay is None else weight_decay
    return {"experiment": "grid", "batch_size": b, "lr": lr, "seed": seed, "weight_decay": float(wd),
            "max_steps": sizes.max_steps, "check_every": sizes.check_every, "target_loss": sizes.target_loss,
            **_measures(sizes, measure_seed),
            "keep_weights": b == sizes.large_batch and lr == sizes.escape_lr and wd == sizes.weight_decays[0]}  # fmt: skip


def run_eos(sizes: Sizes, cache: str | Path) -> pd.DataFrame:
    """Every edge-of-stability run (architecture × loss × step size × seed), one task each.

    Returns the tracked points of all runs: step, train_loss, train_acc, test_loss, test_acc, lambda_max,
    lambda_residual, matvecs, dense (True for the every-step window of a run that reached the onset), with
    arch, loss, lr, seed and the run's status.
    """
    items = [
        {"experiment": "eos", "arch": arch, "loss": loss, "lr": lr, "seed": s, "num_train": spec.num_train,
         "steps": spec.steps, "track_every": spec.track_every, "tol": sizes.tol, "dense_steps": spec.dense_steps,
         "onset": EOS_ONSET}
        for arch, spec in sizes.eos.items() for loss in LOSSES for lr in spec.lrs(loss) for s in spec.seeds
    ]  # fmt: skip
    outs = _run(sizes, rq1_tasks.eos_task, items, cache, "EoS runs")
    traces = _histories(items, outs, ("arch", "loss", "lr", "seed"))
    traces["dense"] = traces["dense"].fillna(False).astype(bool) if "dense" in traces else False
    return traces


def run_grid(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every grid run (weight decay × batch size × step size × seed), one task each; `seed` seeds the
    measurements.

    Returns (runs, curves): one row per run (its settings, status, steps, losses and accuracies where it
    stopped, the generalisation gap, λmax, trace/D, normalised and adaptive sharpness, training seconds), and
    the full training/test losses at every check of every run. `base_grid` selects the runs of the base weight
    decay, which every comparison but the granulated τ uses.
    """
    items = [_grid_settings(sizes, b, lr, s, seed, wd) for wd in sizes.weight_decays
             for b in sizes.batch_sizes for lr in sizes.lrs for s in sizes.seeds]  # fmt: skip
    outs = _run(sizes, rq1_tasks.grid_task, items, cache, "grid runs")
    runs = pd.DataFrame([out["row"] for out in outs])
    curves = _histories(items, [{**out, "status": out["row"]["status"]} for out in outs],
                        ("weight_decay", "batch_size", "lr", "seed"))  # fmt: skip
    return runs, curves


def base_grid(runs: pd.DataFrame, sizes: Sizes) -> pd.DataFrame:
    """The grid runs at the base weight decay (``sizes.weight_decays[0]``): the (η, B) grid of the chapter."""
    return runs[runs["weight_decay"] == sizes.weight_decays[0]].reset_index(drop=True)


GRANULATED_AXES = ("lr", "batch_size", "weight_decay")


def granulated_table(runs: pd.DataFrame, *, level: float | None = None) -> pd.DataFrame:
    """Jiang et al. (2020)'s granulated Kendall τ of every measure with the generalisation gap over the three
    axes η, B and weight decay (`GRANULATED_AXES`), per seed: each seed's matched runs form one network per
    configuration, `stats.granulated_kendall` gives its ψ per axis and Ψ (their mean); one row per measure with
    the mean over seeds of Ψ and of each ψ, and Ψ's Student-t interval over the seeds (``Psi_low``,
    ``Psi_high``: seeds are independent replicates of the whole factorial; NaN below two seeds with a Ψ; at
    `level`, by default `family_level`(LEVEL, 2), that of a part of `verdict_generalise`) and ``seeds`` (how
    many seeds have one)."""
    from ..stats import granulated_kendall

    level = family_level(LEVEL, 2) if level is None else level
    matched = runs[runs["reached"].astype(bool)]
    axes = [a for a in GRANULATED_AXES if matched[a].nunique() > 1]
    rows = []
    for m in MEASURES:
        per_seed = [granulated_kendall(g, m, "gap", axes) for _, g in matched.groupby("seed")] if axes else []
        psis = np.array([p["Psi"] for p in per_seed], dtype=float)
        psis = psis[np.isfinite(psis)]
        row = {"measure": m, "name": NAMES[m], "seeds": len(psis),
               "Psi": float(psis.mean()) if len(psis) else math.nan, "Psi_low": math.nan, "Psi_high": math.nan}  # fmt: skip
        for a in axes:
            values = [p["psi"][a] for p in per_seed if np.isfinite(p["psi"][a])]
            row[f"psi_{a}"] = float(np.mean(values)) if values else math.nan
        if len(psis) >= 2:
            ci = bootstrap_ci(psis, level=level, method="t")  # seeds: few, so Student's t over them
            row |= {"Psi_low": max(ci.low, -1.0), "Psi_high": min(ci.high, 1.0)}
        rows.append(row)
    return pd.DataFrame(rows)


def _start_settings(sizes: Sizes, seed: int, measure_seed: int, cache: str | Path) -> dict:
    """Where an escape or rescaling task finds its start: the grid settings and the (absolute) cache folder."""
    return {"start": _grid_settings(sizes, sizes.large_batch, sizes.escape_lr, seed, measure_seed),
            "start_cache": str(Path(cache).resolve())}  # fmt: skip


def run_escape(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """From the grid solution at (B = max batch size, η = escape_lr) of every seed, small-batch SGD and
    full-batch GD for `escape_steps` steps, then, for a continuation that ended above the target loss, on with
    the same optimiser until it is back at the target (at most `escape_return_steps` more steps); one task each.
    Returns their tracked points with mode ("SGD" or "GD"), seed, phase ("escape", "return") and status
    ("reached": back at the target; ``"diverged"`` for a continuation that stopped at a non-finite loss: a
    result, counted by `escape_numbers`, that makes the escape verdict not testable)."""
    items = [
        {"experiment": "escape", "mode": mode, "batch": batch, "seed": s,
         **_start_settings(sizes, s, seed, cache), "lr": sizes.escape_lr, "steps": sizes.escape_steps,
         "track_every": sizes.escape_every, "tol": sizes.tol, "curvature_samples": sizes.curvature_samples,
         "return_steps": sizes.escape_return_steps, "target_loss": sizes.target_loss}
        for s in sizes.seeds for mode, batch in (("SGD", sizes.escape_batch), ("GD", None))
    ]  # fmt: skip
    outs = _run(sizes, rq1_tasks.escape_task, items, cache, "escape runs")
    return _histories(items, outs, ("mode", "seed"))


def run_threshold(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The escape threshold: from the escape start of every seed (the grid solution at B = max batch size,
    η = escape_lr), its linear stability along the top eigenvector (`rq1_tasks.stability_task`), and SGD
    continuations at every batch size of the grid × step size of `threshold_lrs` for `threshold_steps` steps,
    full training loss every `check_every` steps (no λmax). Returns (stability: one row per seed; traces: the
    tracked points with batch_size, lr, seed, status)."""
    if not sizes.threshold_lrs or sizes.threshold_steps < 1:
        raise ValueError("the profile has no threshold experiment (threshold_lrs and threshold_steps)")
    starts = [{"experiment": "stability", "seed": s, **_start_settings(sizes, s, seed, cache), "tol": sizes.tol,
               "curvature_samples": sizes.curvature_samples} for s in sizes.seeds]  # fmt: skip
    stability = pd.DataFrame(
        [{"seed": item["seed"], **out} for item, out in
         zip(starts, _run(sizes, rq1_tasks.stability_task, starts, cache, "stability"), strict=True)]
    )  # fmt: skip
    items = [
        {"experiment": "threshold", "batch": b, "batch_size": b, "lr": lr, "seed": s,
         **_start_settings(sizes, s, seed, cache), "steps": sizes.threshold_steps, "track_every": sizes.check_every,
         "tol": sizes.tol, "curvature_samples": sizes.curvature_samples, "track_sharpness": False}
        for s in sizes.seeds for b in sizes.batch_sizes for lr in sizes.threshold_lrs
    ]  # fmt: skip
    outs = _run(sizes, rq1_tasks.escape_task, items, cache, "threshold runs")
    return stability, _histories(items, outs, ("batch_size", "lr", "seed"))


def threshold_table(
    stability: pd.DataFrame, traces: pd.DataFrame, *, rise: float = ESCAPE_RISE
) -> pd.DataFrame:
    """One row per threshold continuation (seed, batch_size, lr): the start's training loss, the largest
    training loss over its tracked points (inf for a diverged run), ``escaped`` (that peak above `rise` × the
    start's loss, or diverged), the linear-stability threshold η*(B) of its start (`LinearStability.threshold`
    with the start's λmax and non-uniformity, B of the n training samples), ``predicted`` (η > η*) and
    ``agree``, and the same for the full-batch limit 2/λmax that ignores the minibatch noise (``gd_limit``,
    ``agree_gd``): the baseline any monotone-in-η rule is measured against."""
    from ...stability import LinearStability

    starts = stability.set_index("seed")
    rows = []
    for (b, lr, s), run in traces.groupby(["batch_size", "lr", "seed"], sort=True):
        start = starts.loc[s]
        stab = LinearStability(float(start["lambda_max"]), float(start["nonuniformity"]),
                               float(start["eigen_residual"]), 0)  # fmt: skip
        diverged = (
            run["status"].iloc[0] == "diverged" or not np.isfinite(run["train_loss"].to_numpy(float)).all()
        )
        peak = math.inf if diverged else float(run["train_loss"].max())
        eta = stab.threshold(int(b), int(start["num_train"]))
        escaped = bool(diverged or peak > rise * float(start["start_loss"]))
        gd_limit = 2 / float(start["lambda_max"])
        rows.append({"seed": s, "batch_size": b, "lr": lr, "start_loss": float(start["start_loss"]),
                     "peak_loss": peak, "escaped": escaped, "threshold": eta, "lr_over_threshold": lr / eta,
                     "predicted": bool(lr > eta), "agree": bool(escaped == (lr > eta)), "gd_limit": gd_limit,
                     "agree_gd": bool(escaped == (lr > gd_limit))})  # fmt: skip
    return pd.DataFrame(rows)


def agreement_interval(
    table: pd.DataFrame, column: str = "agree", *, level: float = LEVEL, n_resamples: int = 2000
) -> Interval:
    """The fraction of `threshold_table` rows whose `column` is True, with its interval clustered by seed
    (`cluster_bootstrap_ci`; below 10 seeds Student's t over the seeds' fractions), clipped to [0, 1]."""
    return _fraction_interval(table, column, "seed", level=level, n_resamples=n_resamples)


def _fraction_interval(
    frame: pd.DataFrame, column: str, cluster: str, *, level: float = LEVEL, n_resamples: int = 2000
) -> Interval:
    """The fraction of rows whose boolean `column` is True, with its `cluster_bootstrap_ci` interval (clusters:
    `cluster`), clipped to [0, 1]."""
    frame = frame.assign(**{column: frame[column].astype(float)})
    ci = cluster_bootstrap_ci(frame, column, cluster, level=level, n_resamples=n_resamples)
    return dataclasses.replace(ci, low=max(ci.low, 0.0), high=min(ci.high, 1.0))


def verdict_threshold(table: pd.DataFrame, *, level: float = LEVEL, n_resamples: int = 2000) -> Verdict:
    """The claim "SGD leaves the minimum where its linear stability (Wu et al. 2018) says it must": the
    fraction of threshold continuations whose escape (`threshold_table`) the one-step linear-stability
    criterion calls right, with its interval clustered by seed (the continuations of one start share it),
    against `THRESHOLD_AGREEMENT`: supported above, refuted below, not supported when the interval contains it.
    Not testable when the continuations do not straddle the threshold (all or none predicted to escape, or
    all or none escaped: then agreement says nothing about where the threshold is). The reason also gives the
    agreement of the full-batch limit 2/λmax, which ignores the noise term: the criterion is the
    mean-square growth along the top eigenvector only, q(v) > 1 (exact for commuting per-sample Hessians,
    otherwise a failure of a sufficient condition for stability), so the claim is that it predicts, not that
    it is a theorem; where the two rules agree, the grid cannot tell them apart (``threshold_disputed`` in
    `threshold_numbers`)."""
    if table.empty:
        return not_testable("no threshold continuations")
    for column, what in (("predicted", "predicted to escape"), ("escaped", "escaped")):
        count = int(table[column].sum())
        if count in (0, len(table)):
            return not_testable(
                f"{count} of {len(table)} continuations {what}: the grid does not straddle it"
            )
    ci = agreement_interval(table, level=level, n_resamples=n_resamples)
    verdict = verdict_from_interval(ci.low, ci.high, +1, null=THRESHOLD_AGREEMENT)
    baseline = agreement_interval(table, "agree_gd", level=level, n_resamples=n_resamples)
    return _named(verdict, f"fraction called right {format_estimate(ci)} (the full-batch limit 2/λmax alone: "
                           f"{format_estimate(baseline)})")  # fmt: skip


def run_rescaling(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """The grid solution at (B = max batch size, η = escape_lr) of the first seed under every rescaling α
    (layer 1 × α, layer 2 × 1/α); one task per α. Returns one row per α: λmax, trace/D, normalised, adaptive
    and non-adaptive worst-case, and ε-sharpness, and the training loss on the curvature samples."""
    start = _start_settings(sizes, sizes.seeds[0], seed, cache)
    items = [{"experiment": "rescaling", "alpha": float(alpha), **start, **_measures(sizes, seed),
              "epsilon": EPSILON} for alpha in sizes.alphas]  # fmt: skip
    return pd.DataFrame(_run(sizes, rq1_tasks.rescaling_task, items, cache, "rescalings"))


# ------------------------------------------------------------------------------------------------------------
# Summaries


def _text(values, *, n_resamples: int = 2000, digits: int = 3, missing: str = "none") -> str:
    """'mean [95 % CI]' of `values` (NaNs dropped) as text (`missing` when there are none, the value alone for
    one)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return missing
    if len(values) == 1:
        return format_estimate(values[0], digits=digits)
    return format_estimate(bootstrap_ci(values, level=LEVEL, n_resamples=n_resamples), digits=digits)


def _late_mean(ratio: np.ndarray, fraction: float) -> float:
    """The mean of the last ⌈fraction · n⌉ (at least one) of n values."""
    k = max(1, math.ceil(fraction * len(ratio)))
    return float(np.mean(ratio[-k:]))


def _catapult(losses: np.ndarray, rise: float) -> bool:
    """Whether a loss trace (in step order) ever rises above `rise` × its lowest value so far."""
    finite = losses[np.isfinite(losses)]
    if len(finite) < 2:
        return False
    return bool((finite[1:] > rise * np.minimum.accumulate(finite)[:-1]).any())


def _alternation(losses: np.ndarray) -> float:
    """The fraction of consecutive differences of a trace that change sign: 1 for a period-2 oscillation,
    0 for a monotone trace (NaN below three points)."""
    steps = np.diff(losses[np.isfinite(losses)])
    if len(steps) < 2:
        return math.nan
    return float(np.mean(np.sign(steps[1:]) * np.sign(steps[:-1]) < 0))


def eos_runs(
    traces: pd.DataFrame,
    *,
    onset: float = EOS_ONSET,
    late: float = EOS_LATE_FRACTION,
    rise: float = CATAPULT_RISE,
) -> pd.DataFrame:
    """One row per edge-of-stability run: `edge_of_stability` of its sparse λmax trace (reached, onset_step,
    ratio_mean, phase_ratio_mean, ...), ``late_ratio`` (the mean of λmax·η/2 over the last `late` fraction of
    its sparse points, at least one), from its every-step window (``dense`` points, only in runs that reached
    the onset) ``dense_ratio`` (the mean λmax·η/2 over the window's steps from the onset on), ``dense_points``
    and ``alternation`` (the fraction of sign changes of consecutive training-loss differences in the window
    from the onset on: period-2 oscillation near 1), ``eos_ratio`` (the run's EoS ratio, where GD ends up: ``late_ratio``, the same
    definition for every run whatever it did earlier), ``catapult`` (a loss spike: its training loss at a
    sparse point rose above `rise` × its lowest value so far; sparse points only, so that every run is looked
    at on the same grid), ``diverged`` (status "diverged": the run stopped at a non-finite or exploding loss),
    its final training loss, and ``cell`` (arch/loss/lr: the runs that share a configuration)."""
    dense_column = traces["dense"].astype(bool) if "dense" in traces else pd.Series(False, index=traces.index)
    rows = []
    for (arch, loss, lr, seed), run in traces.assign(dense=dense_column).groupby(
        ["arch", "loss", "lr", "seed"], sort=False
    ):
        run = run.sort_values("step", kind="stable")
        sparse, dense = run[~run["dense"]], run[run["dense"]]
        finite = sparse[np.isfinite(sparse["lambda_max"].to_numpy(float))]
        eos = edge_of_stability(
            finite["step"].tolist(), finite["lambda_max"].tolist(), float(lr), onset=onset
        )
        window = dense[np.isfinite(dense["lambda_max"].to_numpy(float))]
        if eos.onset_step is not None:
            window = window[window["step"] >= eos.onset_step]
        dense_ratio = float((window["lambda_max"] * lr / 2).mean()) if len(window) else math.nan
        late_ratio = _late_mean(finite["lambda_max"].to_numpy(float) * lr / 2, late)
        status = run["status"].iloc[0]
        rows.append({"arch": arch, "loss": loss, "lr": lr, "seed": seed, "cell": f"{arch}/{loss}/{lr:g}",
                     "status": status, "diverged": status == "diverged", **asdict(eos), "late_ratio": late_ratio,
                     "dense_ratio": dense_ratio, "dense_points": len(window),
                     "alternation": _alternation(window["train_loss"].to_numpy(float)),
                     "eos_ratio": late_ratio, "catapult": _catapult(sparse["train_loss"].to_numpy(float), rise),
                     "final_train_loss": sparse["train_loss"].iloc[-1]})  # fmt: skip
    return pd.DataFrame(rows)


def eos_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per edge-of-stability setting (arch, loss, lr): seeds, seeds that diverged, and over the others
    (non-diverged): seeds with a loss spike, seeds that reached the onset, mean onset step, the EoS ratio
    (``eos_ratio`` of `eos_runs`: mean and sd over seeds, and ``ratio_ci``, `seed_interval` as text), the ratio
    over the phase and after the onset (over the seeds that reached it), the mean ratio of the every-step
    windows, the loss alternation of the every-step window, largest ratio, final loss."""
    kept = _eos_selection(runs, None, None)
    counts = runs.groupby(["arch", "loss", "lr"], sort=False).agg(
        seeds=("seed", "count"), diverged=("diverged", "sum"),
        catapults=("catapult", lambda c: int((c.astype(bool) & ~runs.loc[c.index, "diverged"].astype(bool)).sum())),
    )  # fmt: skip
    stats = kept.groupby(["arch", "loss", "lr"], sort=False).agg(
        reached=("reached", "sum"), onset=("onset_step", "mean"), ratio=("eos_ratio", "mean"),
        ratio_sd=("eos_ratio", "std"), ratio_ci=("eos_ratio", _interval_text),
        ratio_phase=("phase_ratio_mean", "mean"), ratio_after=("ratio_mean", "mean"),
        ratio_dense=("dense_ratio", "mean"), alternation=("alternation", "mean"), ratio_max=("ratio_max", "mean"),
        final_train_loss=("final_train_loss", "mean"),
    )  # fmt: skip
    out = counts.join(stats, how="left").reset_index()
    out["reached"] = out["reached"].fillna(0).astype(int)
    return out


def _interval_text(values: pd.Series) -> str:
    """`seed_interval` of the finite values as 'estimate [low, high]' ("none" without any)."""
    finite = values[np.isfinite(values.to_numpy(float))]
    return format_estimate(seed_interval(finite.to_numpy(float))) if len(finite) else "none"


def _eos_selection(runs: pd.DataFrame, loss: str | None, arch: str | None) -> pd.DataFrame:
    """The runs that did not diverge, optionally of one loss and/or architecture. Runs with a loss spike stay
    in: whether a run spikes is an outcome, and leaving them out would select on it (they are counted apart)."""
    mine = runs[~runs["diverged"].astype(bool)]
    if loss is not None:
        mine = mine[mine["loss"] == loss]
    if arch is not None:
        mine = mine[mine["arch"] == arch]
    return mine


def eos_ratio_interval(
    runs: pd.DataFrame,
    *,
    loss: str | None = None,
    arch: str | None = None,
    column: str = "eos_ratio",
    level: float = LEVEL,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval | None:
    """The mean EoS ratio (`column`, by default the late-window ratio of every run) over the non-diverged runs,
    optionally of one loss and/or architecture, with a cluster interval (clusters: the settings, whose seeds
    share an η; below 10 settings the Student-t interval over the settings' means, whose mean is then the
    estimate). Runs where `column` is NaN (e.g. the phase ratio of a run that never reached the onset) are
    left out. None when no run is left."""
    mine = _eos_selection(runs, loss, arch)
    mine = mine[np.isfinite(mine[column].to_numpy(float))]
    if mine.empty:
        return None
    return cluster_bootstrap_ci(mine, column, "cell", level=level, n_resamples=n_resamples, seed=seed)


def eos_reached_interval(
    runs: pd.DataFrame, *, loss: str | None = None, arch: str | None = None, n_resamples: int = 2000
) -> Interval | None:
    """The fraction of the non-diverged runs whose ratio reached the onset, clustered by setting as in
    `eos_ratio_interval` (below 10 settings: the mean of the settings' fractions, Student t). None without
    runs."""
    mine = _eos_selection(runs, loss, arch)
    if mine.empty:
        return None
    return _fraction_interval(mine, "reached", "cell", n_resamples=n_resamples)


def matched_runs(runs: pd.DataFrame, *, minimum: int = 3) -> pd.DataFrame:
    """The grid runs that reached the target training loss (the only ones compared); raises if fewer than
    `minimum` did (raise max_steps or the target)."""
    matched = runs[runs["reached"].astype(bool)]
    if len(matched) < minimum:
        raise RuntimeError(
            f"only {len(matched)} grid runs reached the target loss (need {minimum}): raise max_steps or the target"
        )
    return matched


def grid_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per grid cell (batch_size, lr): η/B, seeds, ``matched`` (seeds that reached the target), and the
    means over the MATCHED seeds only (NaN for a cell without one) of steps, training loss and accuracy, every
    measure, test accuracy (and its sd) and the gap — the values the correlations are computed over."""
    keys = ["batch_size", "lr"]
    counts = runs.groupby(keys).agg(temperature=("temperature", "first"), seeds=("seed", "count"),
                                    matched=("reached", "sum"))  # fmt: skip
    matched = runs[runs["reached"].astype(bool)]
    means = matched.groupby(keys).agg(
        steps=("steps", "mean"), train_loss=("train_loss", "mean"), train_acc=("train_acc", "mean"),
        **{m: (m, "mean") for m in MEASURES}, test_acc=("test_acc", "mean"), test_acc_sd=("test_acc", "std"),
        gap=("gap", "mean"),
    )  # fmt: skip
    out = counts.join(means, how="left").reset_index()
    out["matched"] = out["matched"].astype(int)
    return out


CORRELATION_PAIRS = [("temperature", y) for y in (*MEASURES, "gap", "test_acc", "train_loss", "steps")] + [
    (m, y) for y in ("gap", "test_acc") for m in MEASURES
]
FLAT_MEASURES = ("lambda_max", "normalized_sharpness")  # the two parts of the flat-minima claim


def grid_correlations(cells: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Spearman correlations over the grid cells that have matched runs (`grid_cells`: each cell's value is the
    mean over its seeds that reached the target loss). The unit resampled is the cell: the correlation is
    over cells, and each cell's mean already averages its seeds, so the seeds crossed with every cell enter
    every unit alike. BCa bootstrap over cells; NaN bounds with fewer than 10 cells (not testable).

    Rows (control ""): η/B against every measure, the gap, test accuracy, training loss and steps; every
    measure against the gap and against test accuracy, at `LEVEL`. Rows (control "log_lr"): the partial
    Spearman correlation of η/B with λmax and with normalised sharpness given log η (λmax ≲ 2/η is a stability
    effect of the step size alone), at `family_level`(LEVEL, 2): the two parts of `verdict_flat`.

    Returns one row per correlation: x, y, control, level, estimate, low, high, n (cells).
    """
    cells = cells[cells["matched"] > 0]
    rows = []
    for x, y in CORRELATION_PAIRS:
        ci = rank_correlation(cells[x].to_numpy(float), cells[y].to_numpy(float), method="spearman",
                              level=LEVEL, n_resamples=n_resamples, seed=seed)  # fmt: skip
        rows.append({"x": x, "y": y, "control": "", "level": LEVEL, "estimate": ci.estimate, "low": ci.low,
                     "high": ci.high, "n": ci.n})  # fmt: skip

    def partial(x: str, y: str, control: str, level: float, method: str = "spearman") -> None:
        a, b = cells[x].to_numpy(float), cells[y].to_numpy(float)
        if method == "pearson":  # on logarithms: every value must be positive
            a, b = (np.log(v) if (v > 0).all() else np.full_like(v, np.nan) for v in (a, b))
        if len(cells) >= 4 and np.isfinite(a).all() and np.isfinite(b).all():
            ci = partial_rank_correlation(a, b, np.log(cells[CONTROLS[control]].to_numpy(float)), method=method,
                                          level=level, n_resamples=n_resamples, seed=seed)  # fmt: skip
            values = (ci.estimate, ci.low, ci.high, ci.n)
        else:
            values = (math.nan, math.nan, math.nan, len(cells))
        rows.append(dict(zip(("x", "y", "control", "level", "estimate", "low", "high", "n"),
                             (x, y, control, level, *values), strict=True)))  # fmt: skip

    for y in FLAT_MEASURES:
        partial("temperature", y, "log_lr", family_level(LEVEL, len(FLAT_MEASURES)))
    # Does a measure track the gap beyond what the noise scale η/B already explains? On this grid η/B orders the
    # gap almost perfectly, so on many resamples of the cells it orders it exactly and a rank-based partial
    # correlation is undefined there; on logarithms (Pearson) a deterministic fit needs an exact power law.
    for m in MEASURES:
        partial(m, "gap", "log_temperature", LEVEL, method="pearson")
    return pd.DataFrame(rows)


CONTROLS = {
    "log_lr": "lr",
    "log_temperature": "temperature",
}  # partial-correlation control: its column (logged)


def stability_fit(cells: pd.DataFrame, *, level: float = LEVEL) -> dict:
    """log λmax = a + b·log η + c·log B by least squares over the grid cells with matched runs
    (`statsmodels` OLS, t intervals at `level`, cells as units), and the stability ratio λmax·η/2 of each cell.

    Gradient descent on a quadratic is stable only for λmax < 2/η (linear stability), which predicts b = −1
    and c = 0 when the bound is what sets the sharpness; an SDE picture in which only the temperature η/B
    matters predicts c = −b. Returns b and c with their intervals (NaN with fewer than 4 cells), the cells,
    and the range and median of λmax·η/2 with the number of cells above 1 (beyond the full-batch bound).
    """
    import statsmodels.api as sm

    cells = cells[cells["matched"] > 0]
    ratio = cells["lambda_max"] * cells["lr"] / 2
    out = {"n": len(cells), "ratio_min": float(ratio.min()) if len(cells) else math.nan,
           "ratio_max": float(ratio.max()) if len(cells) else math.nan,
           "ratio_median": float(ratio.median()) if len(cells) else math.nan, "above_one": int((ratio > 1).sum())}  # fmt: skip
    if len(cells) < 4:
        return out | {f"{name}{part}": math.nan for name in ("lr_exponent", "batch_exponent")
                      for part in ("", "_low", "_high")}  # fmt: skip
    design = sm.add_constant(np.column_stack([np.log(cells["lr"]), np.log(cells["batch_size"])]))
    fit = sm.OLS(np.log(cells["lambda_max"].to_numpy(float)), design).fit()
    bounds = fit.conf_int(alpha=1 - level)
    for i, name in ((1, "lr_exponent"), (2, "batch_exponent")):
        out |= {
            name: float(fit.params[i]),
            f"{name}_low": float(bounds[i][0]),
            f"{name}_high": float(bounds[i][1]),
        }
    return out


def _correlation(correlations: pd.DataFrame, x: str, y: str, control: str = "") -> pd.Series:
    if "control" not in correlations.columns:
        correlations = correlations.assign(control="")
    row = correlations[
        (correlations["x"] == x) & (correlations["y"] == y) & (correlations["control"] == control)
    ]
    if len(row) != 1:
        raise ValueError(
            f"expected one correlation of {x!r} with {y!r} (control {control!r}) in the table, found {len(row)}"
        )
    return row.iloc[0]


def keskar_pairs(runs: pd.DataFrame, small: int, large: int) -> pd.DataFrame:
    """Keskar et al.'s comparison: at every step size where every seed of both batch sizes reached the target
    loss, the runs of B = `large` and B = `small` of one seed, side by side (columns ``<column>_small``,
    ``<column>_large``), with the ratios large/small of λmax and normalised sharpness and the test-accuracy
    difference large − small. Empty when no step size qualifies."""
    mine = runs[runs["batch_size"].isin([small, large])]
    complete = mine.groupby(["lr", "batch_size"])["reached"].all().unstack(fill_value=False)
    lrs = [lr for lr, row in complete.iterrows() if row.get(small, False) and row.get(large, False)]
    columns = ["lr", "seed", "train_loss", "lambda_max", "normalized_sharpness", "test_acc"]
    sides = [mine[(mine["batch_size"] == b) & mine["lr"].isin(lrs)][columns] for b in (small, large)]
    pairs = sides[0].merge(sides[1], on=["lr", "seed"], suffixes=("_small", "_large"))
    pairs["lambda_max_ratio"] = pairs["lambda_max_large"] / pairs["lambda_max_small"]
    pairs["ns_ratio"] = pairs["normalized_sharpness_large"] / pairs["normalized_sharpness_small"]
    pairs["acc_diff"] = pairs["test_acc_large"] - pairs["test_acc_small"]
    return pairs.sort_values(["lr", "seed"], ignore_index=True)


def _geometric(values) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=float)))))


def keskar_intervals(
    pairs: pd.DataFrame, *, level: float = LEVEL, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Interval] | None:
    """Intervals of Keskar et al.'s comparison over the pairs of `keskar_pairs` (same seed, same η, both at
    the target loss), CLUSTERED BY SEED: the pairs of one seed at different η share an initialisation and a
    data order, so each seed contributes one value — the geometric mean of its ratios large/small over the η
    (the mean of its accuracy differences) — and the interval is over seeds (Student t below 10 seeds).

    Estimands: ``lambda_max`` and ``normalized_sharpness``, the geometric mean over seeds of each seed's
    geometric-mean ratio (= the geometric mean of all pairs, every seed having the same η); ``test_acc``, the
    mean difference large − small. None when fewer than two seeds have pairs."""
    if pairs.empty or pairs["seed"].nunique() < 2:
        return None
    by_seed = pairs.groupby("seed")
    out = {}
    for m in ("lambda_max", "normalized_sharpness"):
        large, small = by_seed[f"{m}_large"].agg(_geometric), by_seed[f"{m}_small"].agg(_geometric)
        out[m] = ratio_ci(large, small, paired=True, level=level, n_resamples=n_resamples, seed=seed)
    diff = by_seed["acc_diff"].mean()
    out["test_acc"] = paired_difference_ci(diff, np.zeros(len(diff)), level=level, n_resamples=n_resamples,
                                           seed=seed)  # fmt: skip
    return out


def escape_ends(traces: pd.DataFrame, *, target_loss: float | None = None) -> pd.DataFrame:
    """One row per escape run (mode, seed): its status, λmax, test loss and accuracy at the start and at its
    last tracked point, training loss at the start and at the end, the largest training loss after the start
    (``train_peak``), ``left`` (it rose above `ESCAPE_RISE` × the start's: the run left the minimum),
    λmax(end)/λmax(start),
    ``returned`` (the final training loss is ≤ `target_loss`; True without a target), ``end_step``, and the
    point the comparison SGD vs GD uses, at matched training loss (``lmax_matched``, ``train_matched``,
    ``step_matched``): SGD's end, where it is back at the target; for GD, which never leaves it, the tracked
    point whose training loss is closest (on a log scale) to the end loss of SGD from the same start (GD's end
    when there is no SGD run of that seed)."""
    traces = traces.sort_values("step")
    ends = traces.groupby(["mode", "seed"]).agg(
        status=("status", "first"), lmax_start=("lambda_max", "first"), lmax_end=("lambda_max", "last"),
        test_start=("test_loss", "first"), test_end=("test_loss", "last"),
        acc_start=("test_acc", "first"), acc_end=("test_acc", "last"), train_start=("train_loss", "first"),
        train_end=("train_loss", "last"),
    ).reset_index()  # fmt: skip
    peak = traces[traces["step"] > 0].groupby(["mode", "seed"])["train_loss"].max().rename("train_peak")
    ends = ends.merge(peak.reset_index(), on=["mode", "seed"], how="left")
    ends["lmax_ratio"] = ends["lmax_end"] / ends["lmax_start"]
    ends["left"] = ends["train_peak"] > ESCAPE_RISE * ends["train_start"]
    ends["end_step"] = traces.groupby(["mode", "seed"])["step"].max().reindex(
        pd.MultiIndex.from_frame(ends[["mode", "seed"]])).to_numpy()  # fmt: skip
    ends["returned"] = True if target_loss is None else ends["train_end"] <= target_loss
    sgd_end = ends[ends["mode"] == "SGD"].set_index("seed")["train_end"]
    matched = []
    for row in ends.itertuples(index=False):
        run = traces[(traces["mode"] == row.mode) & (traces["seed"] == row.seed)]
        run = run[np.isfinite(run["train_loss"].to_numpy(float))]
        if row.mode == "GD" and row.seed in sgd_end.index and len(run):
            distance = (np.log(run["train_loss"].to_numpy(float)) - math.log(sgd_end[row.seed])) ** 2
            point = run.iloc[int(np.argmin(distance))]
        else:
            point = run.iloc[-1] if len(run) else None
        matched.append((math.nan, math.nan, math.nan) if point is None
                       else (point["lambda_max"], point["train_loss"], point["step"]))  # fmt: skip
    ends[["lmax_matched", "train_matched", "step_matched"]] = pd.DataFrame(matched, index=ends.index)
    return ends


def _paired_ends(ends: pd.DataFrame, column: str) -> pd.DataFrame | None:
    """SGD and GD values of `column` side by side for the seeds where both continuations finished."""
    if "status" in ends.columns:
        ends = ends[ends["status"] != "diverged"]
    wide = ends.pivot(index="seed", columns="mode", values=column).dropna()
    if len(wide) < 2 or not {"SGD", "GD"} <= set(wide.columns):
        return None
    return wide


def escape_interval(ends: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> Interval | None:
    """λmax of small-batch SGD over λmax of full-batch GD at matched training loss (``lmax_matched`` of
    `escape_ends`: SGD back at the target, GD at its point of the same loss), paired by seed (the same start),
    over the seeds where neither diverged: the geometric mean of the per-seed ratios with its interval (Student t
    on the log ratios below 10 seeds). None with fewer than two such seeds."""
    wide = _paired_ends(ends, "lmax_matched")
    if wide is None:
        return None
    return ratio_ci(wide["SGD"], wide["GD"], paired=True, level=LEVEL, n_resamples=n_resamples, seed=seed)


def escape_loss_interval(ends: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> Interval | None:
    """The training loss of SGD over that of GD at the points `escape_interval` compares (``train_matched``),
    paired by seed: whether the two λmax are compared at the same training loss."""
    wide = _paired_ends(ends, "train_matched")
    if wide is None:
        return None
    return ratio_ci(wide["SGD"], wide["GD"], paired=True, level=LEVEL, n_resamples=n_resamples, seed=seed)


def rescaling_spread(table: pd.DataFrame) -> dict[str, float]:
    """max/min over the rescalings of every measure of `run_rescaling`'s table, and the training loss's
    max − min (``loss``): 1 (resp. 0) for a rescaling-invariant quantity."""
    measures = [c for c in table.columns if c not in ("alpha", "train_loss")]
    spread = {m: float(table[m].max() / table[m].min()) for m in measures}
    return {**spread, "loss": float(table["train_loss"].max() - table["train_loss"].min())}


# ------------------------------------------------------------------------------------------------------------
# Verdicts


def _named(verdict: Verdict, what: str) -> Verdict:
    return Verdict(verdict.outcome, f"{what}: {verdict.reason}")


def verdict_flat(correlations: pd.DataFrame) -> Verdict:
    """The claim "SGD converges to flat minima: more noise η/B, flatter", over the grid cells with matched runs
    (`grid_correlations`).

    ρ(η/B, ·) alone is confounded with the step size (λmax ≲ 2/η holds whatever the noise), so the claim is
    decided on the partial Spearman correlations of η/B with λmax and with normalised sharpness given log η,
    at `family_level`(LEVEL, 2), combined by `combine` (rule "all"): supported when both lie below 0, refuted
    when both lie above 0, not supported otherwise; not testable when one cannot be computed (fewer than 10
    cells), with that reason.
    """
    parts = {}
    for m in FLAT_MEASURES:
        row = _correlation(correlations, "temperature", m, "log_lr")
        what = f"partial ρ(η/B, {NAMES[m]} | log η) over {int(row['n'])} cells"
        if math.isnan(row["low"]) or math.isnan(row["high"]):
            parts[what] = not_testable(
                f"the partial correlation given log η has no interval with {int(row['n'])} grid cells "
                f"(need at least {MIN_CORRELATION_UNITS})"
            )
        else:
            # np.clip: a partial correlation's BCa bound can round to ±(1 + 1e-16)
            parts[what] = verdict_from_correlation(tuple(np.clip([row["low"], row["high"]], -1, 1)), -1)
    return combine(parts)


def verdict_generalise(correlations: pd.DataFrame, granulated: pd.DataFrame | None = None) -> Verdict:
    """The claim "normalised sharpness tracks a larger generalisation gap", over the grid cells with matched
    runs and, with `granulated` (`granulated_table`), over the three hyperparameter axes.

    On this grid the noise scale η/B alone orders the gap; a measure that only mirrors η/B tracks the gap
    without telling anything η/B does not. So the claim is decided on the partial Spearman correlation
    ρ(log normalised sharpness, log gap | log η/B) (Pearson on logarithms, `grid_correlations`) and, with
    `granulated`, on the granulated Kendall Ψ of normalised sharpness over η, B and weight decay (Jiang et al.
    2020: does it order networks that differ in one axis alone, whichever axis?), each part at
    `family_level`(LEVEL, 2) with `combine` (rule "all"): a part is supported when its interval lies above 0,
    refuted when below 0, not supported when it contains 0; a part without an interval (fewer than 10 cells;
    Ψ of fewer than two seeds) is not testable. Old rule: the plain ρ(normalised sharpness, gap), which η/B
    confounds.
    """
    row = _correlation(correlations, "normalized_sharpness", "gap", "log_temperature")
    partial = f"partial ρ(normalised sharpness, gap | log η/B) over {int(row['n'])} cells"
    if math.isnan(row["low"]) or math.isnan(row["high"]):
        parts = {partial: not_testable(f"no interval with {int(row['n'])} grid cells (need at least "
                                       f"{MIN_CORRELATION_UNITS})")}  # fmt: skip
    else:
        parts = {partial: verdict_from_correlation(tuple(np.clip([row["low"], row["high"]], -1, 1)), +1)}
    if granulated is None:
        return _named(parts[partial], partial)
    psi = granulated.set_index("measure").loc["normalized_sharpness"]
    what = f"Ψ(normalised sharpness, gap) over {', '.join(GRANULATED_AXES)} ({int(psi['seeds'])} seeds)"
    if math.isnan(psi["Psi_low"]) or math.isnan(psi["Psi_high"]):
        parts[what] = not_testable(f"Ψ has no interval over {int(psi['seeds'])} seeds (need at least 2)")
    else:
        parts[what] = verdict_from_correlation((psi["Psi_low"], psi["Psi_high"]), +1)
    return combine(parts)


def verdict_escape(
    ends: pd.DataFrame, *, starts_reached: int, num_starts: int, n_resamples: int = 2000, seed: int = 0
) -> Verdict:
    """The claim "noise escapes sharp regions: from the same sharp minimum, SGD ends flatter than GD".

    Not testable when a start (the large-batch grid solution of a seed; `starts_reached` of `num_starts`) did
    not reach the target loss, when a continuation diverged (counted in the reason), when an SGD continuation
    that escaped did not return to the target loss within its budget (``returned`` of `escape_ends`), when
    fewer than two seeds have both continuations, or when the compared points are not at the same training
    loss: the interval of the paired ratio of their training losses (`escape_loss_interval`) must lie inside
    [1/`ESCAPE_LOSS_FACTOR`, `ESCAPE_LOSS_FACTOR`]. Otherwise decided on the paired λmax ratio SGD/GD at
    matched training loss (`escape_interval`): supported below 1 when every SGD continuation left the minimum
    (``left`` of `escape_ends`: its loss rose above `ESCAPE_RISE` × the start's; ending flatter without leaving
    is drift inside the basin, not an escape, and is then not supported), refuted above 1, not supported when
    it contains 1.
    """
    if starts_reached < num_starts:
        return not_testable(f"only {starts_reached} of {num_starts} start runs reached the target loss")
    diverged = int((ends["status"] == "diverged").sum()) if "status" in ends.columns else 0
    if diverged:
        return not_testable(f"{diverged} of {len(ends)} continuations diverged")
    if "returned" in ends.columns and not ends["returned"].astype(bool).all():
        away = int((~ends["returned"].astype(bool)).sum())
        return not_testable(f"{away} of {len(ends)} continuations did not return to the target training loss")
    loss = escape_loss_interval(ends, n_resamples=n_resamples, seed=seed)
    lmax = escape_interval(ends, n_resamples=n_resamples, seed=seed)
    if loss is None or lmax is None:
        return not_testable("fewer than two seeds have both an SGD and a GD continuation")
    band = (1 / ESCAPE_LOSS_FACTOR, ESCAPE_LOSS_FACTOR)
    if not (band[0] <= loss.low and loss.high <= band[1]):
        return not_testable(
            f"SGD and GD are compared at different training losses: the ratio SGD/GD {format_estimate(loss)} is "
            f"not inside {format_interval(*band)}"
        )
    verdict = _named(
        verdict_from_interval(lmax.low, lmax.high, -1, null=1.0), "λmax ratio SGD/GD at matched loss"
    )
    sgd = ends[ends["mode"] == "SGD"]
    if verdict.outcome == SUPPORTED and "left" in sgd.columns and not sgd["left"].astype(bool).all():
        stayed = int((~sgd["left"].astype(bool)).sum())
        return Verdict(NOT_SUPPORTED, f"{verdict.reason}, but {stayed} of {len(sgd)} SGD continuations never left "
                                      f"the minimum (training loss never above {ESCAPE_RISE:g} × the start's)")  # fmt: skip
    return verdict


def verdict_keskar(intervals: dict[str, Interval] | None) -> Verdict:
    """Keskar et al.'s claim "large batches find sharper minima", at equal training loss.

    Supported when the intervals (over seeds, `keskar_intervals` at `family_level`(LEVEL, 2)) of the
    geometric-mean ratio large/small of λmax and of normalised sharpness both lie above 1, refuted when both
    lie below 1, not supported otherwise (`combine`); not testable here when the two batch sizes did not both
    reach the target loss at any step size for two seeds.
    """
    if intervals is None:
        return not_testable(
            "the smallest and the largest batch did not both reach the target training loss at any step size"
            " for two seeds"
        )
    return combine({f"{NAMES[m]} ratio large/small": verdict_from_interval(intervals[m].low, intervals[m].high,
                                                                           +1, null=1.0)
                    for m in FLAT_MEASURES})  # fmt: skip


def eos_setting_intervals(runs: pd.DataFrame, loss: str, *, level: float = LEVEL) -> dict[str, Interval]:
    """{cell: `seed_interval` of its runs' EoS ratios} for every setting of `loss` with at least two
    non-diverged runs, at `family_level`(level, number of such settings): the parts of `verdict_eos`."""
    kept = _eos_selection(runs, loss, None)
    settings = [(cell, group) for cell, group in kept.groupby("cell", sort=False) if len(group) >= 2]
    part_level = family_level(level, max(len(settings), 1))
    return {
        cell: seed_interval(group["eos_ratio"].to_numpy(float), level=part_level) for cell, group in settings
    }


def verdict_eos(runs: pd.DataFrame, loss: str, *, level: float = LEVEL, n_resamples: int = 2000) -> Verdict:
    """The claim "GD settles at the edge of stability: its sharpness ends set by its step size, EoS ratio
    λmax·η/2 ≈ 1", for one loss, at every step size tried (Cohen et al. 2021 state it for every η).

    Each setting (architecture, η) with at least two non-diverged seeds is one part: `verdict_in_band` of the
    `seed_interval` of its runs' EoS ratios (``eos_ratio`` of `eos_runs`: the mean over the last
    `EOS_LATE_FRACTION` of the tracked points, the same definition for every run) against `EOS_BAND`, at
    `family_level` over the parts; `combine` (rule "all"): supported when every setting's interval lies inside
    the band, refuted when every one lies outside, not supported otherwise; not testable with fewer than two
    such settings. Diverged runs are left out (above the stability limit GD has no sharpness to settle at) and
    counted; runs with a loss spike stay in (a spike is an outcome) and are counted. Old rules: the mean of the
    settings' means in the band (a mean inside can hide settings at 0.3 and 1.4), and each run's ratio taken
    over its every-step window when it reached the onset (a definition that switched with the outcome).
    """
    mine = runs[runs["loss"] == loss]
    kept = _eos_selection(runs, loss, None)
    diverged = int(mine["diverged"].astype(bool).sum())
    spikes = int(kept["catapult"].astype(bool).sum()) if "catapult" in kept else 0
    intervals = eos_setting_intervals(runs, loss, level=level)
    counts = (f"of {len(mine)} runs {diverged} diverged (left out) and {spikes} had a loss spike (kept); "
              f"{kept['cell'].nunique() - len(intervals)} settings with fewer than two runs left out")  # fmt: skip
    if len(intervals) < 2:
        return not_testable(
            f"fewer than two settings with {loss} have two runs without divergence ({counts})"
        )
    verdict = combine({cell: verdict_in_band(ci.low, ci.high, *EOS_BAND) for cell, ci in intervals.items()})
    return Verdict(verdict.outcome, f"EoS ratio ({loss}) per setting, {counts}: {verdict.reason}")


# ------------------------------------------------------------------------------------------------------------
# Glued numbers


def _list(values, digits: int = 3, signed: bool = False) -> str:
    """Numbers as a comma-separated list (`glue.format_number`; ``signed``: with a sign and 3 decimals)."""

    def one(v) -> str:
        if signed:
            return format_decimals(v, 3) if math.isnan(v) else f"{v:+.3f}"
        return format_number(v, digits)

    return ", ".join(map(one, values)) or "none"


def setup_numbers(sizes: Sizes, profile: str) -> dict:
    """Glued values of the chapter's set-up."""
    return {"profile": profile, "num_seeds": len(sizes.seeds), "seeds": _list(sizes.seeds),
            "transformer_seeds": _list(sizes.eos_transformer.seeds),
            "eos_mlp_seeds": _list(sizes.eos_mlp.seeds), "curvature_samples": sizes.curvature_samples,
            "adaptive_rho": ADAPTIVE_RHO, "tol": f"{sizes.tol:g}", "eos_onset": EOS_ONSET, "eos_late": f"{EOS_LATE_FRACTION:.0%}", "catapult_rise": CATAPULT_RISE,
            "eos_band": format_interval(*EOS_BAND), "level": f"{LEVEL:.0%}",
            "family_level": f"{family_level(LEVEL, 2):.1%}",
            "escape_loss_band": format_interval(1 / ESCAPE_LOSS_FACTOR, ESCAPE_LOSS_FACTOR)}  # fmt: skip


def eos_numbers(sizes: Sizes, runs: pd.DataFrame, cells: pd.DataFrame) -> dict:
    """Glued values of the edge-of-stability section: sizes, counts (diverged, loss spikes ``eos_catapults``,
    runs with an every-step window), and every EoS ratio as 'mean [CI]' over the non-diverged runs, clustered
    by setting (``eos_ratio_*``: the run's EoS ratio, the late window; ``eos_phase_*`` over the phase of the
    runs that reached the onset; ``eos_after_*`` after the onset; ``eos_dense`` over the every-step windows;
    ``eos_reached_*`` the fraction that reached it), per loss the settings whose interval (`verdict_eos`'s
    parts) lies inside the band (``eos_in_band_*``: "k of n", and ``eos_settings_*`` each as
    "setting value [CI]"), the spiking runs' ratios (``eos_catapult_ratio``) and the loss alternation of the
    every-step windows (``eos_alternation``)."""

    def ratio(column="eos_ratio", level=LEVEL, **where):
        ci = eos_ratio_interval(runs, column=column, level=level, n_resamples=sizes.n_resamples, **where)
        return "none" if ci is None else format_estimate(ci)

    def reached(**where):
        ci = eos_reached_interval(runs, n_resamples=sizes.n_resamples, **where)
        return "none" if ci is None else format_estimate(ci, digits=2)

    kept = _eos_selection(runs, None, None)
    catapults = kept[kept["catapult"].astype(bool)]
    transformer = rq1_tasks.init_model("transformer", rq1_tasks.mnist1d(), 0)
    lrs = {len(spec.lrs(loss)) for spec in sizes.eos.values() for loss in LOSSES}
    out = {"eos_cells": len(cells), "eos_cells_reached": int((cells["reached"] == cells["seeds"] - cells["diverged"]).sum()),
           "eos_runs": len(runs), "eos_runs_kept": len(kept), "eos_runs_diverged": int(runs["diverged"].sum()),
           "eos_runs_reached": int(kept["reached"].sum()), "eos_reached": reached(),
           "eos_num_lrs": _list(sorted(lrs)), "eos_ratio": ratio(), "eos_dense": ratio("dense_ratio"),
           "eos_phase": ratio("phase_ratio_mean"), "eos_catapults": len(catapults),
           "eos_catapult_cells": ", ".join(sorted(set(catapults["cell"]))) or "none",
           "eos_catapult_ratio": _text(catapults["eos_ratio"], n_resamples=sizes.n_resamples),
           "eos_dense_runs": int((kept["dense_points"] > 0).sum()),
           "eos_alternation": _text(kept.loc[kept["dense_points"] > 0, "alternation"], n_resamples=sizes.n_resamples),
           "transformer_params": sum(p.numel() for p in transformer.parameters())}  # fmt: skip
    for arch, spec in sizes.eos.items():
        out.update({f"eos_{arch}_train": spec.num_train, f"eos_{arch}_steps": spec.steps,
                    f"eos_{arch}_every": spec.track_every, f"eos_{arch}_dense": spec.dense_steps})  # fmt: skip
        for loss in LOSSES:
            out[f"eos_ratio_{arch}_{loss}"] = ratio(arch=arch, loss=loss)
            out[f"eos_phase_{arch}_{loss}"] = ratio("phase_ratio_mean", arch=arch, loss=loss)
            out[f"eos_after_{arch}_{loss}"] = ratio("ratio_mean", arch=arch, loss=loss)
    for loss in LOSSES:
        out[f"eos_ratio_{loss}"] = ratio(loss=loss)
        out[f"eos_reached_{loss}"] = reached(loss=loss)
        intervals = eos_setting_intervals(runs, loss)
        inside = [EOS_BAND[0] <= ci.low and ci.high <= EOS_BAND[1] for ci in intervals.values()]
        out[f"eos_in_band_{loss}"] = f"{sum(inside)} of {len(inside)}"
        out[f"eos_settings_{loss}"] = (
            "; ".join(
                f"{cell.split('/', 1)[0]} η = {cell.rsplit('/', 1)[1]}: {format_estimate(ci)}"
                for cell, ci in intervals.items()
            )
            or "none"
        )
    return out


def _unmatched(runs: pd.DataFrame, cells: pd.DataFrame, max_steps: int) -> str:
    """The grid cells where some seed did not reach the target, with the lowest loss those seeds got to."""
    parts = []
    for r in cells[cells["matched"] < cells["seeds"]].itertuples():
        cell = runs[(runs["batch_size"] == r.batch_size) & (runs["lr"] == r.lr)]
        lowest = cell.loc[~cell["reached"].astype(bool), "train_loss"].min()
        parts.append(f"B = {r.batch_size}, η = {r.lr:g} ({r.seeds - r.matched} of {r.seeds} seeds, "
                     f"training loss {format_number(lowest)} or more after {max_steps} steps)")  # fmt: skip
    return "; ".join(parts) or "none"


def grid_numbers(
    sizes: Sizes, runs: pd.DataFrame, cells: pd.DataFrame, correlations: pd.DataFrame, pairs: pd.DataFrame
) -> dict:
    """Glued values of the grid section: sizes, matching, correlations over cells (``rho_*`` the estimate,
    ``rho_*_ci`` its interval '[low, high]'; ``prho_temp_*`` the partial correlations given log η) and Keskar
    et al.'s comparison (per step size: the geometric mean over seeds of the ratios; pooled: the geometric
    mean over seeds of each seed's geometric-mean ratio, with its interval over seeds)."""
    matched = runs[runs["reached"].astype(bool)]
    loss = functools.partial(_text, n_resamples=sizes.n_resamples, digits=4)
    out = {
        "grid_target_loss": sizes.target_loss, "grid_max_steps": sizes.max_steps,
        "grid_check_every": sizes.check_every, "grid_batch_sizes": _list(sizes.batch_sizes),
        "grid_lrs": _list(sizes.lrs),
        "grid_temp_range": format_range(cells["temperature"].min(), cells["temperature"].max()),
        "grid_runs": len(runs), "grid_matched": len(matched), "grid_cells": len(cells),
        "grid_cells_matched": int((cells["matched"] > 0).sum()),
        "grid_train_minutes": float(runs["train_seconds"].sum() / 60),
        "matched_loss_range": f"{matched['train_loss'].min():.3f} to {matched['train_loss'].max():.3f}",
        "matched_train_acc": format_decimals(matched["train_acc"].min(), 4),
        "matched_steps_range": f"{matched['steps'].min():.0f} to {matched['steps'].max():.0f}",
        "unmatched_cells": _unmatched(runs, cells, sizes.max_steps),
        "small_batch": sizes.small_batch, "large_batch": sizes.large_batch,
        "large_batch_train_loss": loss(matched.loc[matched["batch_size"] == sizes.large_batch, "train_loss"]),
        "small_batch_train_loss": loss(matched.loc[matched["batch_size"] == sizes.small_batch, "train_loss"]),
    }  # fmt: skip
    names = {"temperature": "temp", "gap": "gap", "test_acc": "acc"}
    for r in correlations.itertuples():
        key = f"rho_temp_{r.y}" if r.x == "temperature" else f"rho_{names[r.y]}_{r.x}"
        key = "p" + key if r.control else key
        out[key] = float(r.estimate)
        out[f"{key}_ci"] = format_interval(r.low, r.high)
    per_lr = pairs.groupby("lr")[["lambda_max_ratio", "ns_ratio"]].agg(_geometric) if len(pairs) else None
    acc = pairs.groupby("lr")["acc_diff"].mean() if len(pairs) else None
    out.update({
        "keskar_lrs": _list([] if per_lr is None else per_lr.index),
        "keskar_lmax_ratio": _list([] if per_lr is None else per_lr["lambda_max_ratio"], digits=2),
        "keskar_ns_ratio": _list([] if per_lr is None else per_lr["ns_ratio"], digits=2),
        "keskar_acc_diff": _list([] if acc is None else acc, signed=True),
        "keskar_num_lrs": 0 if per_lr is None else len(per_lr), "keskar_pairs": len(pairs),
        "keskar_seeds": int(pairs["seed"].nunique()) if len(pairs) else 0,
    })  # fmt: skip
    fit = stability_fit(cells)
    out |= {
        "fit_lr_exponent_ci": format_estimate(fit["lr_exponent"], fit["lr_exponent_low"], fit["lr_exponent_high"]),
        "fit_batch_exponent_ci": format_estimate(fit["batch_exponent"], fit["batch_exponent_low"],
                                                 fit["batch_exponent_high"]),
        "fit_cells": fit["n"], "stability_ratio_range": format_range(fit["ratio_min"], fit["ratio_max"]),
        "stability_ratio_median": fit["ratio_median"], "stability_above_one": fit["above_one"],
    }  # fmt: skip
    intervals = keskar_intervals(pairs, level=family_level(LEVEL, 2), n_resamples=sizes.n_resamples)
    for key, m in (("lmax", "lambda_max"), ("ns", "normalized_sharpness"), ("acc", "test_acc")):
        out[f"keskar_{key}_ci"] = "none" if intervals is None else format_estimate(intervals[m])
    return out


def _steps(ends: pd.DataFrame, column: str) -> str:
    """The range of a step column over seeds ("none" without it): steps are counts, not estimates."""
    if column not in ends or ends[column].isna().all():
        return "none"
    return format_range(ends[column].min(), ends[column].max(), digits=6)


def escape_numbers(sizes: Sizes, ends: pd.DataFrame, runs: pd.DataFrame) -> dict:
    """Glued values of the escape section (`ends` from `escape_ends`, `runs` the grid runs): 'mean [CI]' over
    seeds of the starts, the changes and the ends, the paired λmax ratio SGD/GD (``escape_sgd_over_gd``) and
    the paired final-training-loss ratio (``escape_loss_ratio``), the starts that reached the target, the
    continuations that diverged and the SGD continuations that left the minimum (``escape_sgd_left``)."""
    starts = runs[(runs["batch_size"] == sizes.large_batch) & (runs["lr"] == sizes.escape_lr)]
    near = runs[(runs["batch_size"] == sizes.small_batch) & (runs["lr"] == sizes.escape_lr)]
    near = near[near["reached"].astype(bool)]
    by_mode = {m: g.set_index("seed") for m, g in ends.groupby("mode")}
    text = functools.partial(_text, n_resamples=sizes.n_resamples)
    loss = functools.partial(_text, n_resamples=sizes.n_resamples, digits=4)
    lmax = escape_interval(ends, n_resamples=sizes.n_resamples)
    train = escape_loss_interval(ends, n_resamples=sizes.n_resamples)
    out = {
        "escape_lr": sizes.escape_lr, "escape_steps": sizes.escape_steps, "escape_batch": sizes.escape_batch,
        "escape_every": sizes.escape_every, "escape_start_loss": loss(starts["train_loss"]),
        "escape_start_reached": int(starts["reached"].sum()), "escape_starts": len(starts),
        "escape_diverged": int((ends["status"] == "diverged").sum()), "escape_runs": len(ends),
        "escape_lmax_start": text(by_mode["SGD"]["lmax_start"]),
        "escape_sgd_train_peak": loss(by_mode["SGD"]["train_peak"]),
        "escape_small_batch_lmax": text(near["lambda_max"], missing="not matched"),
        "escape_sgd_over_gd": "none" if lmax is None else format_estimate(lmax),
        "escape_loss_ratio": "none" if train is None else format_estimate(train),
        "escape_return_steps": sizes.escape_return_steps,
        "escape_returned": int(ends["returned"].astype(bool).sum()) if "returned" in ends else len(ends),
        "escape_sgd_left": int(by_mode["SGD"]["left"].astype(bool).sum()) if "left" in ends else 0,
        "escape_sgd_runs": len(by_mode["SGD"]), "escape_rise": ESCAPE_RISE,
    }  # fmt: skip
    for mode, g in by_mode.items():
        key = mode.lower()
        out.update({f"escape_{key}_ratio": text(g["lmax_ratio"]),
                    f"escape_{key}_end_step": _steps(g, "end_step"),
                    f"escape_{key}_matched_step": _steps(g, "step_matched"),
                    f"escape_{key}_lmax_matched": text(g["lmax_matched"]) if "lmax_matched" in g else "none",
                    f"escape_{key}_train_end": loss(g["train_end"]),
                    f"escape_{key}_test_change": text(g["test_end"] - g["test_start"]),
                    f"escape_{key}_acc_change": text(g["acc_end"] - g["acc_start"])})  # fmt: skip
    return out


def _escape_position(sizes: Sizes, by_seed: pd.DataFrame, stability: pd.DataFrame) -> str:
    """Where the escape runs' step size lies against the mean linear-stability threshold at their batch size
    and the mean GD limit 2/λmax of the starts, as text."""
    at_batch = by_seed.loc[by_seed["batch_size"] == sizes.escape_batch, "threshold"]
    if at_batch.empty:
        return f"not on the threshold grid (B = {sizes.escape_batch} was not run)"
    eta, limit, gd = sizes.escape_lr, float(at_batch.mean()), float((2 / stability["lambda_max"]).mean())
    side = "above" if eta > limit else "below"
    gd_side = "below" if eta < gd else "above"
    return (
        f"{eta / limit:.2g}× the threshold η*({sizes.escape_batch}) = {format_number(limit)}, {side} it, and "
        f"{gd_side} the GD limit {format_number(gd)}"
    )


def threshold_numbers(sizes: Sizes, stability: pd.DataFrame, table: pd.DataFrame) -> dict:
    """Glued values of the escape-threshold section: its sizes, the starts' λmax, non-uniformity and GD limit
    2/λmax, the linear-stability threshold at the smallest and the largest batch ('mean [CI]' over seeds), and
    how many continuations escaped, were predicted to, and agree (with the agreement's interval), the same for
    the full-batch limit 2/λmax (``threshold_agree_gd_ci``), and on the continuations where the two rules
    disagree (``threshold_disputed``), how many linear stability calls right (``threshold_disputed_right``)."""
    text = functools.partial(_text, n_resamples=sizes.n_resamples)
    small, large = table["batch_size"] == sizes.small_batch, table["batch_size"] == sizes.large_batch
    by_seed = table.groupby(["seed", "batch_size"])["threshold"].first().reset_index()
    agree = agreement_interval(table, n_resamples=sizes.n_resamples)
    agree_gd = agreement_interval(table, "agree_gd", n_resamples=sizes.n_resamples)
    disputed = table[table["agree"].astype(bool) != table["agree_gd"].astype(bool)]
    return {
        "threshold_lrs": _list(sizes.threshold_lrs), "threshold_steps": sizes.threshold_steps,
        "threshold_rise": ESCAPE_RISE, "threshold_agreement": THRESHOLD_AGREEMENT,
        "threshold_lmax": text(stability["lambda_max"]), "threshold_nonuniformity": text(stability["nonuniformity"]),
        "threshold_gd_limit": text(2 / stability["lambda_max"]),
        "threshold_small_batch": text(by_seed.loc[by_seed["batch_size"] == sizes.small_batch, "threshold"]),
        "threshold_large_batch": text(by_seed.loc[by_seed["batch_size"] == sizes.large_batch, "threshold"]),
        "threshold_runs": len(table), "threshold_escaped": int(table["escaped"].sum()),
        "threshold_predicted": int(table["predicted"].sum()), "threshold_agree": int(table["agree"].sum()),
        "threshold_escaped_small": int(table.loc[small, "escaped"].sum()),
        "threshold_escaped_large": int(table.loc[large, "escaped"].sum()),
        "threshold_agree_ci": format_estimate(agree), "threshold_agree_gd_ci": format_estimate(agree_gd),
        "threshold_disputed": len(disputed), "threshold_disputed_right": int(disputed["agree"].sum()),
        "threshold_escape_position": _escape_position(sizes, by_seed, stability),
    }  # fmt: skip


def granulated_numbers(sizes: Sizes, table: pd.DataFrame, runs: pd.DataFrame | None = None) -> dict:
    """Glued values of the granulated τ (`granulated_table`): the weight decays, with `runs` (every grid run)
    how many runs the factorial has and how many reached the target (``granulated_runs``,
    ``granulated_matched``), and per measure Ψ as 'mean [CI]' (``psi_<measure>``) and its ψ per axis
    (``psi_<measure>_<axis>``)."""
    out = {"grid_weight_decays": _list(sizes.weight_decays), "granulated_axes": "η, B and weight decay"}
    if runs is not None:
        out |= {"granulated_runs": len(runs), "granulated_matched": int(runs["reached"].astype(bool).sum())}
    for row in table.to_dict("records"):
        m = row["measure"]
        if math.isnan(row["Psi"]):
            out[f"psi_{m}"] = "none"
        elif math.isnan(row["Psi_low"]):
            out[f"psi_{m}"] = format_number(row["Psi"])
        else:
            out[f"psi_{m}"] = (
                f"{format_number(row['Psi'])} {format_interval(row['Psi_low'], row['Psi_high'])}"
            )
        for axis in GRANULATED_AXES:
            out[f"psi_{m}_{axis}"] = row.get(f"psi_{axis}", math.nan)
    return out


def rescaling_numbers(sizes: Sizes, table: pd.DataFrame) -> dict:
    """Glued values of the rescaling section: the spread max/min of every measure (``spread_<measure>``)."""
    return {"rescale_seed": sizes.seeds[0], "alpha_range": f"{min(sizes.alphas):g} to {max(sizes.alphas):g}",
            **{f"spread_{m}": v for m, v in rescaling_spread(table).items()}}  # fmt: skip


def verdict_table(
    sizes: Sizes,
    eos: pd.DataFrame,
    correlations: pd.DataFrame,
    pairs: pd.DataFrame,
    ends: pd.DataFrame,
    grid: pd.DataFrame,
    threshold: pd.DataFrame | None = None,
    granulated: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The chapter's verdicts: one row per claim (key, claim, verdict, reason), from the EoS runs
    (`eos_runs`), the grid correlations, Keskar et al.'s pairs, the escape ends, the grid runs (for the
    escape starts) and, when given, the escape-threshold table (`threshold_table`) and the granulated τ
    (`granulated_table`, a second part of the generalisation claim). The EoS claim is decided per loss (each at `family_level`(LEVEL, 2)) and reads e.g.
    "supported for the squared loss, refuted for cross-entropy"."""
    r = sizes.n_resamples
    batches = f"B = {sizes.large_batch} vs {sizes.small_batch}"
    starts = grid[(grid["batch_size"] == sizes.large_batch) & (grid["lr"] == sizes.escape_lr)]
    level = family_level(LEVEL, len(LOSSES))
    by_loss = {loss: verdict_eos(eos, loss, level=level, n_resamples=r) for loss in ("mse", "ce")}
    escape = verdict_escape(ends, starts_reached=int(starts["reached"].sum()), num_starts=len(starts),
                            n_resamples=r)  # fmt: skip
    keskar = keskar_intervals(pairs, level=family_level(LEVEL, 2), n_resamples=r)
    claims = {
        "escape": ("Noise escapes sharp regions (SGD ends flatter than GD, at equal training loss)", escape),
        "keskar": (f"Large batches find sharper minima (Keskar et al.; {batches})", verdict_keskar(keskar)),
        "flat": ("SGD converges to flat minima (more noise η/B, flatter, at fixed η)", verdict_flat(correlations)),
        "generalise": ("Normalised sharpness tracks a larger generalisation gap",
                       verdict_generalise(correlations, granulated)),
    }  # fmt: skip
    if threshold is not None:
        claims["threshold"] = ("SGD leaves a minimum where its linear stability says it must (Wu et al. 2018)",
                               verdict_threshold(threshold, n_resamples=r))  # fmt: skip
    rows = [(key, claim, v.outcome, v.reason) for key, (claim, v) in claims.items()]
    rows.append(("eos", "GD settles at the edge of stability: its sharpness ends set by its step size (EoS ratio ≈ 1)",
                 f"{by_loss['mse']} for the squared loss, {by_loss['ce']} for cross-entropy",
                 "; ".join(v.reason for v in by_loss.values())))  # fmt: skip
    return pd.DataFrame(rows, columns=["key", "claim", "verdict", "reason"])


# ------------------------------------------------------------------------------------------------------------
# Figures

LABELS = {"mlp": "MLP", "transformer": "Transformer", "ce": "cross-entropy", "mse": "squared loss"}
MEASURE_LABELS = {"lambda_max": r"$\lambda_{\max}$", "trace_per_param": "trace / D",
                  "normalized_sharpness": "normalised sharpness",
                  "adaptive_sharpness": f"adaptive sharpness (ρ = {ADAPTIVE_RHO})"}  # fmt: skip
RESCALED_LABELS = {"lambda_max": r"$\lambda_{\max}$", "trace_per_param": "trace / D",
                   "normalized_sharpness": "normalised sharpness",
                   "adaptive_sharpness": "adaptive worst-case",
                   "non_adaptive_sharpness": "non-adaptive worst-case",
                   "epsilon_sharpness": "Keskar ε-sharpness"}  # fmt: skip


def log_ticks(axis) -> None:
    """Plain-number tick labels on a log axis, with enough ticks to read values in a narrow range."""
    from matplotlib import ticker

    low, high = axis.get_view_interval()
    decades = np.log10(high / low)
    subs = (
        (1.0,) if decades > 2.5 else (1.0, 2.0, 5.0) if decades > 1 else (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    )
    axis.set_major_locator(ticker.LogLocator(subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def plot_eos(traces: pd.DataFrame, sizes: Sizes):
    """λmax along every EoS run (one line per seed) against 2/η (dashed), per architecture (rows) and loss."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex="col")
    for row, (arch, spec) in enumerate(sizes.eos.items()):
        for col, loss in enumerate(LOSSES):
            ax = axes[row, col]
            for i, lr in enumerate(spec.lrs(loss)):
                mine = traces[(traces["arch"] == arch) & (traces["loss"] == loss) & (traces["lr"] == lr)]
                for j, (_, one) in enumerate(mine.groupby("seed")):
                    # the every-step window interleaves with the sparse points: one line in step order
                    one = one.sort_values("step", kind="stable").drop_duplicates("step")
                    ax.plot(one["step"], one["lambda_max"], color=f"C{i}", lw=1, alpha=0.8,
                            label=f"η = {lr:g}" if j == 0 else None)  # fmt: skip
                ax.axhline(2 / lr, color=f"C{i}", ls="--", lw=1)
            ax.set(title=f"{LABELS[arch]}, {LABELS[loss]}", ylabel=r"$\lambda_{\max}$", yscale="log")
            log_ticks(ax.yaxis)
            if row == 1:
                ax.set(xlabel="gradient-descent step")
            ax.legend(loc="best")
    return fig


def plot_grid(runs: pd.DataFrame, sizes: Sizes):
    """Every measure, test accuracy, gap, training loss where measured and steps of every grid run against
    η/B (colour: η; marker: B; hollow: target not reached)."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(3, 3, figsize=(11, 8.6), sharex=True)
    panels = {**MEASURE_LABELS, "test_acc": "test accuracy", "gap": "generalisation gap (train − test acc.)",
              "train_loss": "training loss where measured",
              "steps": "SGD steps to the target loss"}  # fmt: skip
    markers = dict(zip(sizes.batch_sizes, "osD^vP<>*h", strict=False))
    for ax, (m, title) in zip(axes.flat, panels.items(), strict=False):
        for i, lr in enumerate(sizes.lrs):
            for b in sizes.batch_sizes:
                pts = runs[(runs["lr"] == lr) & (runs["batch_size"] == b)]
                for hit, face in ((True, f"C{i}"), (False, "none")):
                    sel = pts[pts["reached"] == hit]
                    ax.scatter(sel["temperature"], sel[m], marker=markers[b], s=22, facecolors=face,
                               edgecolors=f"C{i}", linewidths=1)  # fmt: skip
        ax.set(xscale="log", title=title)
        if m in (*MEASURES, "steps"):
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
        if m == "train_loss":
            ax.axhline(sizes.target_loss, color="k", ls="--", lw=1)
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    for ax in (*axes[-1], axes[-2, -1]):
        ax.set(xlabel="η / B")
    axes[-2, -1].tick_params(labelbottom=True)  # above the legend panel
    key = axes[-1, -1]
    key.axis("off")
    handles = [plt.Line2D([], [], ls="", marker="o", color=f"C{i}", label=f"η = {lr:g}")
               for i, lr in enumerate(sizes.lrs)]  # fmt: skip
    handles += [
        plt.Line2D([], [], ls="", marker=markers[b], color="0.3", label=f"B = {b}") for b in sizes.batch_sizes
    ]
    target = f"target loss {sizes.target_loss:g}"
    handles += [plt.Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label="target not reached"),
                plt.Line2D([], [], ls="--", color="k", label=target)]  # fmt: skip
    key.legend(handles=handles, loc="center", ncol=2, frameon=False, fontsize=9)
    return fig


def plot_escape(traces: pd.DataFrame, sizes: Sizes):
    """λmax (2/η dashed), training and test loss of the escape runs, one line per seed and mode."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    first = min(traces["seed"])
    for (mode, s), g in traces.groupby(["mode", "seed"]):
        label = (
            (f"SGD, B = {sizes.escape_batch}" if mode == "SGD" else "full-batch GD") if s == first else None
        )
        for ax, column in zip(axes, ("lambda_max", "train_loss", "test_loss"), strict=True):
            ax.plot(g["step"], g[column], color="C3" if mode == "SGD" else "C0", lw=1, label=label)
    axes[0].axhline(2 / sizes.escape_lr, color="k", ls="--", lw=1, label="2/η")
    for ax in axes:  # the end of the fixed phase; a continuation above the target goes on to return to it
        ax.axvline(sizes.escape_steps, color="0.4", ls=":", lw=1)
    for ax, ylabel in zip(axes, (r"$\lambda_{\max}$", "training loss", "test loss"), strict=True):
        ax.set(xlabel="steps after the large-batch solution", ylabel=ylabel)
    for ax in axes[:2]:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    axes[0].legend()
    return fig


def plot_threshold(table: pd.DataFrame, sizes: Sizes):
    """Each threshold continuation at (B, η/η*(B)) of its start: escaped (filled) or not (open), one marker
    row per seed; the line η = η* is the linear-stability prediction."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    offsets = dict(zip(sorted(table["seed"].unique()), np.linspace(-0.12, 0.12, table["seed"].nunique()),
                       strict=True))  # fmt: skip
    for escaped, marker in ((True, "o"), (False, "o")):
        rows = table[table["escaped"] == escaped]
        x = np.log2(rows["batch_size"].to_numpy(float)) + rows["seed"].map(offsets).to_numpy(float)
        ax.scatter(x, rows["lr_over_threshold"], marker=marker, s=28, edgecolor="C3" if escaped else "C0",
                   facecolor="C3" if escaped else "none", label="left the minimum" if escaped else "stayed")  # fmt: skip
    ax.axhline(1.0, color="k", ls="--", lw=1, label="η = η*(B)")
    ax.set_xticks(np.log2(sizes.batch_sizes), [str(b) for b in sizes.batch_sizes])
    ax.set(xlabel="batch size B", ylabel=r"$\eta / \eta^*(B)$", yscale="log")
    log_ticks(ax.yaxis)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rescaling(table: pd.DataFrame):
    """Every sharpness measure under the rescalings, relative to its value at α = 1."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    reference = table.loc[np.isclose(table["alpha"], 1.0)].iloc[0]
    for i, (m, label) in enumerate(RESCALED_LABELS.items()):
        invariant = m in ("normalized_sharpness", "adaptive_sharpness")  # both lie on 1: keep both visible
        style = {"ms": 11, "mfc": "none", "mew": 1.5} if m == "normalized_sharpness" else {"ms": 5}
        ax.loglog(table["alpha"], table[m] / reference[m], marker="os^vDP"[i], label=label,
                  ls="--" if invariant else "-", **style)  # fmt: skip
    ax.set(xlabel=r"rescaling factor $\alpha$ (layer 1 × α, layer 2 × 1/α)", ylabel="value / value at α = 1")
    log_ticks(ax.xaxis)
    log_ticks(ax.yaxis)
    ax.legend(fontsize=7)
    return fig
