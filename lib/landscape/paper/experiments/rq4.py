"""RQ4 (H5) — do early probes predict optimisation difficulty? The chapter's population, predictions and verdicts.

The founding write-up's Hypothesis H5: optimisation difficulty is predicted by early curvature and landscape probes,
with four rules of action. Tested here as a prediction claim must be:

- Population (`run_population`): MLPs on MNIST-1D with step sizes set relative to the initial sharpness,
  η = c · 2/λ0, c from stable to divergent, minibatch and full-batch, cross-entropy and squared loss, warmup on
  and off, several seeds, a fixed step budget; a panel of ResNet-18-1D, its no-skip twin and a Transformer for
  transfer across architectures and rule 4. Each run's early probes and outcomes come from `rq4_tasks`.
- Predictor sets (`predictor_columns`): A the hyperparameters; B the early training-loss curve; C zero-cost proxies
  at initialisation and the NTK condition number; D this project's early geometry probes.
- Out-of-sample prediction (`prediction_table`): logistic regression and gradient boosting (scikit-learn), their
  regularisation chosen by an inner grouped cross-validation, scored out of fold under grouped splits (held-out
  configurations, a held-out loss, held-out large c, a held-out family). AUC and Brier score for divergence, with
  cluster-bootstrap intervals over configurations. Steps to the target loss (censored) by Harrell's concordance;
  the final test accuracy by Spearman's ρ.
- The H5 test proper (`added_value`): does D add to A+B? ΔAUC with a paired cluster-bootstrap interval and a
  permutation test (D's rows shuffled, refitted). The zero-parameter rules "η·λmax/2 > 1 at step k" and "the
  training loss at step k is above its initial value" (`zero_parameter_rules`).
- The rules as interventions (`intervention_effects`): every run alive at the branch step is continued unchanged,
  with η halved and with clipping; a rule is supported when its treatment helps the runs it flags.

Only runs that have not diverged by the branch step K (the last probe step) are predicted: a run that already
diverged needs no prediction. They are counted in `census`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..glue import format_decimals, format_estimate, format_number
from ..stats import LEVEL, Interval, cluster_bootstrap_ci, concordance_index, paired_difference_ci
from ..verdicts import NOT_SUPPORTED, SUPPORTED, Verdict, not_testable, verdict_from_interval
from . import rq4_tasks
from .common import run_cached
from .rq4_tasks import EARLY_LOSS, PROBES, PROXIES

__all__ = [
    "ARCHITECTURES",
    "MIN_CLASS",
    "MIN_FLAGGED",
    "PROFILES",
    "SETS",
    "Sizes",
    "added_value",
    "auc_interval",
    "census",
    "intervention_effects",
    "numbers",
    "out_of_fold",
    "plot_auc_vs_step",
    "plot_interventions",
    "plot_roc",
    "plot_trajectories",
    "prediction_table",
    "predictor_columns",
    "rule3_seed_sensitivity",
    "rule4_skip_roughness",
    "rule_flags",
    "run_population",
    "verdict_h5",
    "verdict_intervention",
    "verdict_table",
    "zero_parameter_rules",
]

SETS = ("A", "A+B", "A+B+C", "A+B+D", "A+B+C+D")
MIN_CLASS = 10  # fewest runs of each class (diverged / not) for an AUC-based verdict
MIN_FLAGGED = 10  # fewest flagged runs (configurations for rule 3) for an intervention verdict
ALPHA = 0.05  # the permutation test's level
TARGET = "diverged/control"


# ------------------------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    """Every size and budget of the chapter for one profile."""

    cs: tuple[float, ...]  # step-size factors: η = c · 2/λ0
    batch_sizes: tuple[int | None, ...]  # minibatch sizes (None: the whole training set, gradient descent)
    losses: tuple[str, ...]  # "ce", "mse"
    warmups: tuple[bool, ...]  # linear warmup over the first K steps, or none
    seeds: tuple[int, ...]  # seeds per configuration
    num_train: int  # training signals (the first of MNIST-1D's 4,000)
    steps: int  # the fixed budget of every run
    probe_steps: tuple[int, ...]  # where the early probes are taken; the largest, K, is where runs branch
    eval_every: int  # steps between evaluations of the full training loss after K (every step before)
    mlp_width: int  # hidden units of the two-layer ReLU MLP
    panel: tuple[str, ...]  # the other architectures (labels of ARCHITECTURES), control branch only
    panel_cs: tuple[float, ...]  # their step-size factors ...
    panel_batch: int  # ... batch size (cross-entropy, no warmup) ...
    panel_seeds: tuple[int, ...]  # ... and seeds
    resnet_width: float  # width multiplier of the ResNet-18-1D and its twin
    children_steps: int = 30  # steps of each child of the instability probe
    barrier_points: int = 9  # points on each barrier's segment
    probe_samples: int = 1000  # training signals every probe uses
    tol: float = 1e-2  # relative tolerance of λmax
    max_matvecs: int = 60  # budget of each λmax
    trace_matvecs: int = 12  # Hutch++ products of tr(H)
    slq_steps: int = 16  # Lanczos steps of the SLQ probe (one probe)
    slice_directions: int = 3  # random filter-normalised directions; the roughest counts
    slice_points: int = 15  # points on each slice ...
    slice_radius: float = 0.5  # ... over α ∈ [−radius, radius]
    noise_samples: int = 256  # per-sample gradients of the noise scale
    proxy_samples: int = 256  # inputs of the zero-cost proxies ...
    ntk_samples: int = 64  # ... and of the NTK
    target_fraction: float = 0.4  # the target training loss, as a fraction of the initial loss
    clip: float = 0.05  # rule 2's unit-wise clipping threshold (Brock et al. use 0.01–0.16)
    folds: int = 5  # outer grouped folds
    n_resamples: int = 2000  # bootstrap resamples of every interval
    n_permutations: int = 200  # permutations of the added-value test
    large_c: float = 2.0  # the "held-out large c" split tests on c above this
    workers: int | None = None  # Dask worker processes (None: one per core; 1: in this process)
    threads: int | None = 1  # torch threads per task

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise ValueError(f"seed sensitivity needs at least 2 seeds per configuration, got {self.seeds}")
        if not self.probe_steps or min(self.probe_steps) != 0 or max(self.probe_steps) >= self.steps:
            raise ValueError(
                f"probe_steps must start at 0 and end before steps={self.steps}, got {self.probe_steps}"
            )
        for label in self.panel:
            if label not in ARCHITECTURES:
                raise ValueError(
                    f"unknown panel architecture {label!r}; expected one of {tuple(ARCHITECTURES)}"
                )

    @property
    def branch_step(self) -> int:
        return max(self.probe_steps)

    @property
    def num_runs(self) -> int:
        mlp = math.prod(map(len, (self.cs, self.batch_sizes, self.losses, self.warmups, self.seeds)))
        return mlp + len(self.panel) * len(self.panel_cs) * len(self.panel_seeds)


# label: (model name, its options given the sizes)
ARCHITECTURES = {
    "mlp": ("mlp", lambda s: {"depth": 2, "width": s.mlp_width, "activation": "relu"}),
    "resnet": ("resnet18", lambda s: {"width_multiplier": s.resnet_width, "norm": "group"}),
    "noskip": ("resnet18", lambda s: {"width_multiplier": s.resnet_width, "norm": "group", "skip": False}),
    "transformer": (
        "transformer",
        lambda s: {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "pooling": "mean"},
    ),
}

PROFILES = {
    "smoke": Sizes(
        cs=(0.5, 4.0), batch_sizes=(64, None), losses=("ce", "mse"), warmups=(False,), seeds=(0, 1), num_train=256,
        steps=60, probe_steps=(0, 3), eval_every=10, mlp_width=16, panel=("resnet", "noskip"), panel_cs=(0.5,),
        panel_batch=64, panel_seeds=(0, 1), resnet_width=0.0625, children_steps=3, barrier_points=5,
        probe_samples=128, max_matvecs=20, trace_matvecs=6, slq_steps=8, slice_directions=2, slice_points=7,
        noise_samples=32, proxy_samples=32, ntk_samples=16, folds=2, n_resamples=100, n_permutations=10,
        large_c=1.0, workers=1,
    ),
    # 9 × 3 × 2 × 2 configurations × 3 seeds = 324 MLP runs of 400 steps (probes at 0, 5, 10, 20: the first 5 %),
    # and a panel of 3 architectures × 4 c × 2 seeds; 500 training signals keep full-batch GD in the budget
    "paper": Sizes(
        cs=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0), batch_sizes=(64, 256, None), losses=("ce", "mse"),
        warmups=(False, True), seeds=(0, 1, 2), num_train=500, steps=400, probe_steps=(0, 5, 10, 20),
        eval_every=10, mlp_width=100, panel=("resnet", "noskip", "transformer"), panel_cs=(0.5, 1.0, 2.0, 4.0),
        panel_batch=128, panel_seeds=(0, 1), resnet_width=0.0625, probe_samples=500,
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# The population


def _settings(sizes: Sizes, arch: str, loss: str, c: float, batch: int | None, warmup: bool, seeds, branches: bool,
              seed: int) -> dict:  # fmt: skip
    model, options = ARCHITECTURES[arch]
    keep = ("num_train", "steps", "eval_every", "children_steps", "barrier_points", "probe_samples", "tol",
            "max_matvecs", "trace_matvecs", "slq_steps", "slice_directions", "slice_points", "slice_radius",
            "noise_samples", "proxy_samples", "ntk_samples", "target_fraction", "clip")  # fmt: skip
    return {"model": model, "model_config": options(sizes), "loss": loss, "c": c, "batch_size": batch,
            "warmup": warmup, "seeds": list(seeds), "probe_steps": list(sizes.probe_steps), "branches": branches,
            "measure_seed": seed, **{k: getattr(sizes, k) for k in keep}}  # fmt: skip


def _label(arch: str, s: dict) -> str:
    batch = "full" if s["batch_size"] is None else s["batch_size"]
    return f"{arch}/{s['loss']}/c={s['c']:g}/B={batch}/warmup={int(s['warmup'])}"


def run_population(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """Every configuration (the MLP factorial with its branches, then the panel), one cached task each.

    Returns one row per run: arch, loss, c, batch (the batch size; the training-set size for full batch), warmup,
    config (label), seed, everything `rq4_tasks.configuration_task` returns for the run, the configuration's
    seed barrier, and derived columns: ``alive`` (not diverged by the branch step K), ``failed/<branch>``
    (diverged or never reached the target), ``seed_spread`` (standard deviation of the control's test accuracy
    over the configuration's seeds).
    """
    items = [("mlp", _settings(sizes, "mlp", loss, c, b, w, sizes.seeds, True, seed))
             for loss in sizes.losses for c in sizes.cs for b in sizes.batch_sizes for w in sizes.warmups]  # fmt: skip
    items += [(arch, _settings(sizes, arch, "ce", c, sizes.panel_batch, False, sizes.panel_seeds, False, seed))
              for arch in sizes.panel for c in sizes.panel_cs]  # fmt: skip
    outs = run_cached(rq4_tasks.configuration_task, [s for _, s in items], cache=cache,
                      depends_on=rq4_tasks.DEPENDS_ON, workers=sizes.workers, threads=sizes.threads,
                      desc="RQ4 configurations")  # fmt: skip
    rows = []
    for (arch, s), out in zip(items, outs, strict=True):
        config = {"arch": arch, "loss": s["loss"], "c": s["c"], "warmup": s["warmup"],
                  "batch": sizes.num_train if s["batch_size"] is None else s["batch_size"],
                  "full_batch": s["batch_size"] is None, "config": _label(arch, s),
                  "seed_barrier": out["seed_barrier"]}  # fmt: skip
        rows += [{**config, **row} for row in out["rows"]]
    frame = pd.DataFrame(rows)
    k = sizes.branch_step
    frame["alive"] = frame[f"eta_lambda@{k}"].notna()
    for branch in rq4_tasks.BRANCHES:
        if f"diverged/{branch}" in frame:
            frame[f"failed/{branch}"] = (
                frame[f"diverged/{branch}"] | frame[f"steps_to_target/{branch}"].isna()
            )
    frame["seed_spread"] = frame.groupby("config")["test_acc/control"].transform(lambda v: v.std(ddof=1))
    return frame


def census(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs per architecture and loss: how many diverged before the branch step, after it, reached the target,
    caught a catapult."""
    out = frame.groupby(["arch", "loss"]).agg(
        runs=("seed", "size"), diverged_before_K=("alive", lambda a: int((~a).sum())),
        diverged_after_K=("diverged/control", lambda d: int(d.sum())),
        reached_target=("steps_to_target/control", lambda s: int(s.notna().sum())),
        catapults=("catapult/control", lambda c: int(c.sum())),
    )  # fmt: skip
    out["diverged_after_K"] -= out["diverged_before_K"]
    return out.reset_index()


# ------------------------------------------------------------------------------------------------------------
# Predictors


def predictor_columns(frame: pd.DataFrame, which: str, k: int, probe_steps: Sequence[int]) -> list[str]:
    """The columns of a predictor set ("A", "A+B", ...) as seen at probe step k.

    A: log c, log batch size, squared loss (0/1), warmup (0/1). B: the early-loss features at k. C: the proxies at
    initialisation. D: the geometry probes at every probe step ≤ k (a trajectory so far).
    """
    seen = [s for s in probe_steps if s <= k]
    parts = {
        "A": ["log_c", "log_batch", "is_mse", "warmup_on"],
        "B": [f"{name}@{k}" for name in EARLY_LOSS],
        "C": [f"proxy_{name}" for name in PROXIES],
        "D": [f"{name}@{s}" for s in seen for name in PROBES],
    }
    columns = []
    for part in which.split("+"):
        if part not in parts:
            raise ValueError(f"unknown predictor set {part!r} in {which!r}; expected parts of A, B, C, D")
        columns += parts[part]
    missing = [c for c in columns if c not in frame.columns and c not in parts["A"]]
    if missing:
        raise ValueError(f"the frame lacks predictor columns {missing[:5]}")
    return columns


def _design(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The predictors as a matrix: A computed from the settings; every other value x as sign(x)·log(1 + |x|)
    (probes span decades), ±inf clipped to ±1e6 first, NaN left for the imputer."""
    derived = {"log_c": np.log(frame["c"]), "log_batch": np.log(frame["batch"]),
               "is_mse": (frame["loss"] == "mse").astype(float), "warmup_on": frame["warmup"].astype(float)}  # fmt: skip
    out = []
    for column in columns:
        if column in derived:
            out.append(np.asarray(derived[column], dtype=float))
            continue
        x = np.clip(frame[column].to_numpy(dtype=float), -1e6, 1e6)
        out.append(np.sign(x) * np.log1p(np.abs(x)))
    return np.column_stack(out)


def _model(kind: str, folds: int, task: str = "classify"):
    """Logistic regression (standardised, C by an inner grouped CV) or gradient boosting (depth by an inner CV);
    ridge / gradient-boosting regressors for a continuous target."""
    impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    if kind == "logistic":
        estimator = LogisticRegression(max_iter=2000) if task == "classify" else Ridge()
        grid = (
            {"model__C": [0.01, 0.1, 1.0, 10.0]} if task == "classify" else {"model__alpha": [0.1, 1.0, 10.0]}
        )
        steps = [("impute", impute), ("scale", StandardScaler()), ("model", estimator)]
    elif kind == "boosting":
        cls = HistGradientBoostingClassifier if task == "classify" else HistGradientBoostingRegressor
        estimator = cls(max_iter=100, learning_rate=0.1, random_state=0)
        grid = {"model__max_depth": [2, 3]}
        steps = [("impute", impute), ("model", estimator)]
    else:
        raise ValueError(f"kind must be 'logistic' or 'boosting', got {kind!r}")
    return GridSearchCV(Pipeline(steps), grid, cv=GroupKFold(max(2, folds - 2)),
                        scoring="roc_auc" if task == "classify" else "neg_mean_squared_error")  # fmt: skip


SPLITS = ("grouped", "loss", "large_c", "architecture")


def _split_indices(
    frame: pd.DataFrame, split: str, folds: int, large_c: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row positions of the outer split: held-out configurations (grouped k-fold over the MLP),
    one held-out loss (MLP), held-out c > `large_c` (MLP), or train on the MLP and test on the panel."""
    mlp = np.flatnonzero((frame["arch"] == "mlp").to_numpy())
    if split == "grouped":
        groups = frame["config"].to_numpy()[mlp]
        return [(mlp[a], mlp[b]) for a, b in GroupKFold(folds).split(mlp, groups=groups)]
    if split == "loss":
        losses = frame["loss"].to_numpy()
        return [(mlp[losses[mlp] != v], mlp[losses[mlp] == v]) for v in sorted(set(losses[mlp]))]
    if split == "large_c":
        big = frame["c"].to_numpy()[mlp] > large_c
        return [(mlp[~big], mlp[big])]
    if split == "architecture":
        return [(mlp, np.flatnonzero((frame["arch"] != "mlp").to_numpy()))]
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def out_of_fold(frame: pd.DataFrame, columns: Sequence[str], target: str, split: str, kind: str, *, folds: int,
                large_c: float, task: str = "classify") -> np.ndarray:  # fmt: skip
    """Out-of-fold predictions (probability of the positive class, or the regression value) for every row that
    some test fold holds (NaN elsewhere, or where the training fold has a single class)."""
    x, y = _design(frame, columns), frame[target].to_numpy(dtype=float)
    groups = frame["config"].to_numpy()
    prediction = np.full(len(frame), np.nan)
    for train, test in _split_indices(frame, split, folds, large_c):
        if len(test) == 0 or (task == "classify" and len(set(y[train])) < 2):
            continue
        model = _model(kind, folds, task)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence and constant-feature warnings of tiny folds
            try:
                model.fit(x[train], y[train], groups=groups[train])
            except ValueError:  # an inner fold holds a single class (tiny populations): the default settings
                model = model.estimator.fit(x[train], y[train])
        prediction[test] = (
            model.predict_proba(x[test])[:, 1] if task == "classify" else model.predict(x[test])
        )
    return prediction


def _auc(frame: pd.DataFrame, target: str, score: str) -> float:
    y = frame[target].to_numpy(dtype=float)
    return float(roc_auc_score(y, frame[score])) if 0 < y.sum() < len(y) else math.nan


def auc_interval(frame: pd.DataFrame, target: str, score: str, *, n_resamples: int, seed: int = 0,
                 baseline: str | None = None) -> Interval:  # fmt: skip
    """AUC of `score` for the binary `target` (or, with `baseline`, AUC(score) − AUC(baseline) on the same
    rows), with a cluster-bootstrap interval over configurations (rows with a NaN score are left out)."""
    rows = frame.dropna(subset=[score] + ([baseline] if baseline else []))

    def statistic(d):
        value = _auc(d, target, score)
        return value - _auc(d, target, baseline) if baseline else value

    return cluster_bootstrap_ci(rows, None, "config", statistic, n_resamples=n_resamples, seed=seed)


def _concordance(frame: pd.DataFrame, score: str, horizon: int) -> float:
    time = frame["steps_to_target/control"].fillna(horizon).to_numpy(dtype=float)
    event = frame["steps_to_target/control"].notna().to_numpy()
    return concordance_index(time, event, -frame[score].to_numpy(dtype=float))


def prediction_table(
    frame: pd.DataFrame, sizes: Sizes, *, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every out-of-sample score, and the out-of-fold predictions they come from.

    Rows of the table: split, model, predictor set, probe step k, target ("divergence": AUC and Brier score;
    "steps to target": Harrell's C of a regression on log steps, censored runs at twice the budget; "test
    accuracy": Spearman ρ of a regression among runs that did not diverge), the estimate, its interval.
    Only runs alive at the branch step. The second frame holds the predictions (one column per split/model/set/k).
    """
    alive = frame[frame["alive"]].reset_index(drop=True)
    K, steps = sizes.branch_step, sizes.probe_steps
    plan = [("grouped", kind, s, K) for kind in ("logistic", "boosting") for s in SETS]
    plan += [(split, kind, s, K) for split in ("loss", "large_c", "architecture") for kind in ("logistic", "boosting")
             for s in ("A+B", "A+B+D")]  # fmt: skip
    plan += [("grouped", "logistic", s, k) for k in steps if k != K for s in ("A+B", "A+B+D")]
    predictions, rows = {}, []
    kw = {"folds": sizes.folds, "large_c": sizes.large_c}
    for split, kind, which, k in plan:
        name = f"{split}/{kind}/{which}/{k}"
        columns = predictor_columns(alive, which, k, steps)
        predictions[name] = out_of_fold(alive, columns, TARGET, split, kind, **kw)
        scored = alive.assign(p=predictions[name]).dropna(subset=["p"])
        auc = (
            auc_interval(scored, TARGET, "p", n_resamples=sizes.n_resamples, seed=seed)
            if len(scored)
            else None
        )
        brier = brier_score_loss(scored[TARGET].astype(int), scored["p"]) if len(scored) else math.nan
        rows.append({"split": split, "model": kind, "set": which, "k": k, "target": "divergence", "n": len(scored),
                     "positives": int(scored[TARGET].sum()), "estimate": auc.estimate if auc else math.nan,
                     "low": auc.low if auc else math.nan, "high": auc.high if auc else math.nan, "brier": brier})  # fmt: skip
    mlp = alive[alive["arch"] == "mlp"].reset_index(drop=True)
    censored = np.log(mlp["steps_to_target/control"].fillna(2 * sizes.steps).to_numpy(dtype=float))
    mlp = mlp.assign(log_steps=censored)
    survived = mlp[~mlp[TARGET]].reset_index(drop=True)
    for which in ("A", "A+B", "A+B+D"):
        columns = predictor_columns(mlp, which, K, steps)
        p = out_of_fold(mlp, columns, "log_steps", "grouped", "logistic", task="regress", **kw)
        scored = mlp.assign(p=p)
        ci = cluster_bootstrap_ci(scored, None, "config", lambda d: _concordance(d, "p", sizes.steps),
                                  n_resamples=sizes.n_resamples, seed=seed)  # fmt: skip
        rows.append({"split": "grouped", "model": "ridge", "set": which, "k": K, "target": "steps to target",
                     "n": len(scored), "estimate": ci.estimate, "low": ci.low, "high": ci.high})  # fmt: skip
        p = out_of_fold(survived, columns, "test_acc/control", "grouped", "logistic", task="regress", **kw)
        scored = survived.assign(p=p)
        ci = cluster_bootstrap_ci(scored, None, "config",
                                  lambda d: scipy_stats.spearmanr(d["p"], d["test_acc/control"]).statistic,
                                  n_resamples=sizes.n_resamples, seed=seed)  # fmt: skip
        rows.append({"split": "grouped", "model": "ridge", "set": which, "k": K, "target": "test accuracy",
                     "n": len(scored), "estimate": ci.estimate, "low": ci.low, "high": ci.high})  # fmt: skip
    table = pd.DataFrame(rows)
    table["interval"] = [format_estimate(r.estimate, r.low, r.high) if math.isfinite(r.low) else
                         format_estimate(r.estimate) for r in table.itertuples()]  # fmt: skip
    return table, pd.concat([alive, pd.DataFrame(predictions)], axis=1)


def added_value(frame: pd.DataFrame, sizes: Sizes, *, seed: int = 0) -> dict:
    """The H5 test: ΔAUC of A+B+D over A+B (grouped split, logistic regression, at the branch step), its paired
    cluster-bootstrap interval, and a permutation p-value: D's rows are shuffled together (its association with
    the outcome broken, its joint distribution kept), both models refitted with a fixed C = 1, and
    p = (1 + #{ΔAUC_perm ≥ ΔAUC}) / (1 + n_permutations) (Phipson & Smyth 2010)."""
    alive = frame[frame["alive"]].reset_index(drop=True)
    K, steps = sizes.branch_step, sizes.probe_steps
    base_cols = predictor_columns(alive, "A+B", K, steps)
    full_cols = predictor_columns(alive, "A+B+D", K, steps)
    kw = {"folds": sizes.folds, "large_c": sizes.large_c}
    scored = alive.assign(base=out_of_fold(alive, base_cols, TARGET, "grouped", "logistic", **kw),
                          full=out_of_fold(alive, full_cols, TARGET, "grouped", "logistic", **kw))  # fmt: skip
    delta = auc_interval(scored, TARGET, "full", baseline="base", n_resamples=sizes.n_resamples, seed=seed)
    mlp = np.flatnonzero((alive["arch"] == "mlp").to_numpy())
    y = alive[TARGET].to_numpy(dtype=float)[mlp]
    groups = alive["config"].to_numpy()[mlp]
    x_base = _design(alive, base_cols)[mlp]
    x_d = _design(alive, [c for c in full_cols if c not in base_cols])[mlp]

    def fixed_delta(x_extra: np.ndarray) -> float:
        scores = []
        for x in (x_base, np.column_stack([x_base, x_extra])):
            p = np.full(len(y), np.nan)
            for train, test in GroupKFold(sizes.folds).split(x, groups=groups):
                model = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                      StandardScaler(), LogisticRegression(max_iter=2000))  # fmt: skip
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(x[train], y[train])
                p[test] = model.predict_proba(x[test])[:, 1]
            scores.append(roc_auc_score(y, p) if 0 < y.sum() < len(y) else math.nan)
        return scores[1] - scores[0]

    observed = fixed_delta(x_d)
    rng = np.random.default_rng(seed)
    null = [fixed_delta(x_d[rng.permutation(len(y))]) for _ in range(sizes.n_permutations)]
    exceed = sum(v >= observed for v in null if math.isfinite(v))
    pvalue = (1 + exceed) / (1 + sizes.n_permutations) if math.isfinite(observed) else math.nan
    positives = int(y.sum())
    return {"delta": delta, "pvalue": pvalue, "fixed_delta": observed, "positives": positives,
            "negatives": int(len(y) - positives)}  # fmt: skip


def zero_parameter_rules(frame: pd.DataFrame, sizes: Sizes, *, seed: int = 0) -> pd.DataFrame:
    """The two rules without fitted parameters, at every probe step, on the alive MLP runs: "η·λmax/2 > 1" and
    "the training loss is above its initial value". For each: the AUC of its score (η·λmax/2, L(k)/L(0)) with a
    cluster-bootstrap interval, and the rule's true- and false-positive rates at its threshold of 1."""
    mlp = frame[frame["alive"] & (frame["arch"] == "mlp")]
    rows = []
    for k in sizes.probe_steps:
        for rule, column in (("η·λmax/2 > 1", f"eta_lambda@{k}"), ("L(k) > L(0)", f"loss_ratio@{k}")):
            d = mlp.dropna(subset=[column])
            auc = auc_interval(d, TARGET, column, n_resamples=sizes.n_resamples, seed=seed)
            flagged, y = d[column] > 1, d[TARGET].astype(bool)
            rows.append({"k": k, "rule": rule, "n": len(d), "estimate": auc.estimate, "low": auc.low,
                         "high": auc.high, "tpr": float(flagged[y].mean()) if y.any() else math.nan,
                         "fpr": float(flagged[~y].mean()) if (~y).any() else math.nan})  # fmt: skip
    return pd.DataFrame(rows)


def verdict_h5(result: dict) -> Verdict:
    """H5 — early geometry adds to the hyperparameters and the early loss curve: supported when the ΔAUC interval
    lies above 0 and the permutation test rejects at `ALPHA`; refuted when the interval lies below 0; not
    supported otherwise; not testable with fewer than `MIN_CLASS` runs of either class."""
    if min(result["positives"], result["negatives"]) < MIN_CLASS:
        return not_testable(f"{result['positives']} diverging and {result['negatives']} other runs: fewer than "
                            f"{MIN_CLASS} of a class")  # fmt: skip
    delta = result["delta"]
    verdict = verdict_from_interval(delta.low, delta.high, +1)
    if verdict.outcome == SUPPORTED and not result["pvalue"] < ALPHA:
        return Verdict(
            NOT_SUPPORTED,
            f"ΔAUC {format_estimate(delta)} but the permutation p = {format_number(result['pvalue'])}",
        )
    return verdict


# ------------------------------------------------------------------------------------------------------------
# The rules as interventions


def _effects(runs: pd.DataFrame, treatment: str, outcome: str, *, n_resamples: int, seed: int) -> Interval:
    diff = runs[f"{outcome}/{treatment}"].astype(float) - runs[f"{outcome}/control"].astype(float)
    return cluster_bootstrap_ci(
        runs.assign(effect=diff), "effect", "config", n_resamples=n_resamples, seed=seed
    )


def rule_flags(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Which alive MLP runs each rule flags at step k. Rule 1: η·λmax/2 > 1. Rule 2: the slice roughness at or
    above its median over these runs while tr(H)/D is at or below its median ("rugged but small trace")."""
    runs = frame[frame["alive"] & (frame["arch"] == "mlp")].copy()
    rough, trace = runs[f"slice_roughness@{k}"], runs[f"trace_per_param@{k}"]
    runs["rule1"] = runs[f"eta_lambda@{k}"] > 1
    runs["rule2"] = (rough >= rough.median()) & (trace <= trace.median())
    return runs


TREATMENT_LABELS = {"halve_lr": "η halved", "clip": "gradients clipped"}  # the branches at the probe step
RULES = {1: ("rule1", "halve_lr", "failed", -1), 2: ("rule2", "clip", "test_acc", +1)}


def intervention_effects(frame: pd.DataFrame, sizes: Sizes, *, seed: int = 0) -> pd.DataFrame:
    """The effect of each treatment (halved η, clipping) against the unchanged continuation, on failure (diverged
    or target never reached) and test accuracy (chance for a diverged run), among the runs each rule flags and
    among the others: mean paired difference with a cluster-bootstrap interval over configurations."""
    runs = rule_flags(frame, sizes.branch_step)
    rows = []
    for rule, (flag, _, _, _) in RULES.items():
        for treatment in TREATMENT_LABELS:
            for outcome in ("failed", "test_acc"):
                for flagged in (True, False):
                    part = runs[runs[flag] == flagged]
                    ci = _effects(part, treatment, outcome, n_resamples=sizes.n_resamples, seed=seed)
                    rows.append({"rule": rule, "treatment": treatment, "outcome": outcome, "flagged": flagged,
                                 "runs": len(part), "estimate": ci.estimate, "low": ci.low, "high": ci.high})  # fmt: skip
    return pd.DataFrame(rows)


def verdict_intervention(effects: pd.DataFrame, rule: int) -> Verdict:
    """Rule 1 (λmax high early → halve η) is supported when halving η lowers the failure rate of the runs it flags
    (interval below 0); rule 2 (rugged slices with a small trace → clip) when clipping raises their test
    accuracy (interval above 0); refuted when the interval lies on the other side. Fewer than `MIN_FLAGGED`
    flagged runs: not testable."""
    _, treatment, outcome, sign = RULES[rule]
    row = effects[(effects["rule"] == rule) & (effects["treatment"] == treatment) & (effects["outcome"] == outcome)
                  & effects["flagged"]].iloc[0]  # fmt: skip
    if row["runs"] < MIN_FLAGGED:
        return not_testable(f"only {row['runs']} runs flagged (fewer than {MIN_FLAGGED})")
    return verdict_from_interval(row["low"], row["high"], sign)


def rule3_seed_sensitivity(frame: pd.DataFrame, sizes: Sizes, *, seed: int = 0) -> dict:
    """Rule 3 — a high early barrier with low sharpness means flat but isolated minima, seed-sensitive.

    Per MLP configuration whose seeds are all alive at K: flagged when the mean children barrier at K is above its
    median over configurations and the mean η·λmax/2 at K at or below its median. The outcome is the spread of the
    test accuracy over seeds; the effect is mean(flagged) − mean(others), with a bootstrap interval over
    configurations. Not testable when the children barrier does not vary (no configuration above the median).
    """
    K = sizes.branch_step
    runs = frame[frame["arch"] == "mlp"]
    configs = runs.groupby("config").agg(alive=("alive", "all"), barrier=(f"child_barrier@{K}", "mean"),
                                         sharp=(f"eta_lambda@{K}", "mean"), spread=("seed_spread", "first"),
                                         seed_barrier=("seed_barrier", "first"))  # fmt: skip
    configs = (
        configs[configs["alive"]]
        .replace([np.inf, -np.inf], np.nan)
        .dropna(subset=["barrier", "sharp", "spread"])
    )
    configs["flag"] = (configs["barrier"] > configs["barrier"].median()) & (
        configs["sharp"] <= configs["sharp"].median()
    )
    n_flag = int(configs["flag"].sum())
    out = {"configs": len(configs), "flagged": n_flag}
    if n_flag < MIN_FLAGGED or n_flag == len(configs):
        out["interval"] = Interval(math.nan, math.nan, math.nan, LEVEL, len(configs), "too few flagged")
        out["verdict"] = not_testable(f"{n_flag} of {len(configs)} configurations flagged (fewer than {MIN_FLAGGED}"
                                      " or all): the early barrier hardly varies")  # fmt: skip
        return out
    ci = cluster_bootstrap_ci(configs.reset_index(), None, "config",
                              lambda d: d.loc[d["flag"], "spread"].mean() - d.loc[~d["flag"], "spread"].mean(),
                              n_resamples=sizes.n_resamples, seed=seed)  # fmt: skip
    out["interval"] = ci
    out["verdict"] = verdict_from_interval(ci.low, ci.high, +1)
    return out


def rule4_skip_roughness(frame: pd.DataFrame, sizes: Sizes, *, seed: int = 0) -> dict:
    """Rule 4 — skip connections lower the worst-case slice roughness: the ResNet against its no-skip twin at the
    same c and seed, at initialisation and at the branch step; the mean paired difference of log roughness (< 0:
    the ResNet is smoother) with its interval (Student t below 10 pairs). Verdict on the step-K difference."""
    out = {}
    for k in (0, sizes.branch_step):
        column = f"slice_roughness@{k}"
        pairs = (frame[frame["arch"] == "resnet"].set_index(["c", "seed"])[column].rename("resnet").to_frame()
                 .join(frame[frame["arch"] == "noskip"].set_index(["c", "seed"])[column].rename("noskip"), how="inner"))  # fmt: skip
        pairs = pairs.replace([np.inf, -np.inf], np.nan).dropna()
        pairs = pairs[(pairs > 0).all(axis=1)]
        if len(pairs) < 2:
            out[k] = Interval(math.nan, math.nan, math.nan, LEVEL, len(pairs), "fewer than 2 pairs")
            continue
        out[k] = paired_difference_ci(np.log(pairs["resnet"]), np.log(pairs["noskip"]),
                                      n_resamples=sizes.n_resamples, seed=seed)  # fmt: skip
    last = out[sizes.branch_step]
    if last.n < 3:
        return {"intervals": out, "verdict": not_testable(f"{last.n} ResNet/twin pairs alive at step "
                                                           f"{sizes.branch_step}")}  # fmt: skip
    return {"intervals": out, "verdict": verdict_from_interval(last.low, last.high, -1)}


# ------------------------------------------------------------------------------------------------------------
# Figures


def plot_trajectories(frame: pd.DataFrame, sizes: Sizes):
    """η·λmax/2 against the probe step for every MLP run, one panel per loss, coloured by outcome."""
    import matplotlib.pyplot as plt

    losses = sorted(frame["loss"].unique())
    fig, axes = plt.subplots(1, len(losses), figsize=(4.2 * len(losses), 3.4), squeeze=False, sharey=True)
    colours = {"diverged": "tab:red", "target not reached": "tab:orange", "reached the target": "tab:blue"}
    steps = list(sizes.probe_steps)
    for ax, loss in zip(axes[0], losses, strict=True):
        runs = frame[(frame["arch"] == "mlp") & (frame["loss"] == loss)]
        for _, run in runs.iterrows():
            outcome = ("diverged" if run["diverged/control"] else "target not reached" if run["failed/control"]
                       else "reached the target")  # fmt: skip
            values = [run[f"eta_lambda@{k}"] for k in steps]
            ax.plot(steps, values, color=colours[outcome], alpha=0.35, lw=0.8)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set(yscale="log", xlabel="probe step k", title=f"{loss.upper()}: {len(runs)} runs")
        ax.set_xticks(steps)
    axes[0][0].set_ylabel("η·λmax/2")
    for label, colour in colours.items():
        axes[0][-1].plot([], [], color=colour, label=label)
    axes[0][-1].legend(loc="upper right")
    return fig


def plot_roc(predictions: pd.DataFrame, table: pd.DataFrame, k: int):
    """Out-of-fold ROC curves of divergence per predictor set (grouped split, logistic regression), AUC with its
    interval in the legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for which in SETS:
        name = f"grouped/logistic/{which}/{k}"
        d = predictions.dropna(subset=[name])
        y = d[TARGET].astype(int)
        if not 0 < y.sum() < len(y):
            continue
        fpr, tpr, _ = roc_curve(y, d[name])
        row = table[(table["split"] == "grouped") & (table["model"] == "logistic") & (table["set"] == which)
                    & (table["k"] == k) & (table["target"] == "divergence")].iloc[0]  # fmt: skip
        ax.plot(fpr, tpr, label=f"{which}: AUC {row['interval']}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    ax.set(
        xlabel="false-positive rate", ylabel="true-positive rate", title=f"divergence, predictors at step {k}"
    )
    ax.legend(loc="lower right")
    return fig


def plot_auc_vs_step(table: pd.DataFrame, rules: pd.DataFrame):
    """AUC of divergence against the probe step: A+B and A+B+D (grouped split, logistic) and the two
    zero-parameter rules, with intervals."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    fitted = table[
        (table["split"] == "grouped") & (table["model"] == "logistic") & (table["target"] == "divergence")
    ]
    for which, marker in (("A+B", "o"), ("A+B+D", "s")):
        d = fitted[fitted["set"] == which].sort_values("k")
        ax.errorbar(d["k"], d["estimate"], yerr=[d["estimate"] - d["low"], d["high"] - d["estimate"]],
                    marker=marker, capsize=3, label=f"fitted {which}")  # fmt: skip
    for rule, marker in (("η·λmax/2 > 1", "^"), ("L(k) > L(0)", "v")):
        d = rules[rules["rule"] == rule].sort_values("k")
        ax.errorbar(d["k"] + 0.3, d["estimate"], yerr=[d["estimate"] - d["low"], d["high"] - d["estimate"]],
                    marker=marker, ls="--", capsize=3, label=f"score of rule {rule}")  # fmt: skip
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="probe step k", ylabel="AUC (divergence)", ylim=(0.4, 1.02))
    ax.legend(loc="lower right")
    return fig


def plot_interventions(effects: pd.DataFrame):
    """The treatment effects (treated − unchanged) with intervals, for flagged and other runs of each rule."""
    import matplotlib.pyplot as plt

    keys = ["rule", "flagged", "treatment"]
    rows = effects.groupby(keys, sort=False)["runs"].max().reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 1.2 + 0.42 * len(rows)), sharey=True)
    for ax, outcome, label in zip(
        axes, ("failed", "test_acc"), ("Δ failure rate (treated − unchanged)", "Δ test accuracy"), strict=True
    ):
        d = rows[keys].merge(effects[effects["outcome"] == outcome], on=keys, how="left")
        colors = ["C3" if flagged else "C0" for flagged in d["flagged"]]
        for i, r in d.iterrows():
            ax.errorbar(r["estimate"], i, xerr=[[r["estimate"] - r["low"]], [r["high"] - r["estimate"]]], fmt="o",
                        color=colors[i], capsize=3)  # fmt: skip
        ax.axvline(0, color="k", lw=0.8)
        ax.set(xlabel=label)
    names = [f"rule {r.rule}, {'flagged' if r.flagged else 'other'} runs: {TREATMENT_LABELS[r.treatment]} "
             f"(n = {r.runs})" for r in rows.itertuples()]  # fmt: skip
    axes[0].set_yticks(np.arange(len(rows)), names)
    axes[0].invert_yaxis()
    return fig


# ------------------------------------------------------------------------------------------------------------
# Glue


def _row(table: pd.DataFrame, **match) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for key, value in match.items():
        mask &= (table[key] == value).to_numpy()
    return table[mask].iloc[0]


def numbers(sizes: Sizes, profile: str, frame: pd.DataFrame, table: pd.DataFrame, rules: pd.DataFrame,
            h5: dict, effects: pd.DataFrame, rule3: dict, rule4: dict) -> dict:  # fmt: skip
    """The chapter's glued values: set-up, census, the AUCs and their gains, the rules and the verdicts."""
    K = sizes.branch_step
    mlp = frame[frame["arch"] == "mlp"]
    alive = mlp[mlp["alive"]]
    out = {
        "profile": profile, "level": f"{LEVEL:.0%}", "num_runs": len(frame), "num_mlp": len(mlp),
        "num_panel": int((frame["arch"] != "mlp").sum()), "num_configs": frame["config"].nunique(),
        "cs": ", ".join(f"{c:g}" for c in sizes.cs),
        "batch_sizes": ", ".join("full" if b is None else str(b) for b in sizes.batch_sizes),
        "seeds": len(sizes.seeds), "steps": sizes.steps, "num_train": sizes.num_train,
        "probe_steps": ", ".join(map(str, sizes.probe_steps)), "branch_step": K,
        "target_fraction": f"{sizes.target_fraction:g}", "clip": f"{sizes.clip:g}",
        "diverged_before": int((~mlp["alive"]).sum()), "num_alive": len(alive),
        "diverged_after": int(alive["diverged/control"].sum()),
        "reached": int(alive["steps_to_target/control"].notna().sum()),
        "catapults": int(alive["catapult/control"].sum()),
        "h5_delta": format_estimate(h5["delta"]), "h5_pvalue": format_number(h5["pvalue"]),
        "verdict_h5": verdict_h5(h5).outcome,
    }  # fmt: skip
    for which in SETS:
        key = which.replace("+", "").lower()
        out[f"auc_{key}"] = _row(table, split="grouped", model="logistic", set=which, k=K,
                                 target="divergence")["interval"]  # fmt: skip
        out[f"auc_gb_{key}"] = _row(table, split="grouped", model="boosting", set=which, k=K,
                                    target="divergence")["interval"]  # fmt: skip
    for split in ("loss", "large_c", "architecture"):
        for which in ("A+B", "A+B+D"):
            key = which.replace("+", "").lower()
            out[f"auc_{split}_{key}"] = _row(table, split=split, model="logistic", set=which, k=K,
                                             target="divergence")["interval"]  # fmt: skip
    for target, key in (("steps to target", "cindex"), ("test accuracy", "rho_acc")):
        for which in ("A", "A+B", "A+B+D"):
            out[f"{key}_{which.replace('+', '').lower()}"] = _row(table, target=target, set=which)["interval"]
    for rule, key in (("η·λmax/2 > 1", "eta_rule"), ("L(k) > L(0)", "loss_rule")):
        for k, tag in ((0, "0"), (K, "K")):
            r = _row(rules, rule=rule, k=k)
            out[f"{key}_auc_{tag}"] = format_estimate(r["estimate"], r["low"], r["high"])
        r = _row(rules, rule=rule, k=K)
        out[f"{key}_tpr"], out[f"{key}_fpr"] = format_decimals(r["tpr"]), format_decimals(r["fpr"])
    for rule, (_, treatment, outcome, _) in RULES.items():
        for flagged in (True, False):
            r = _row(effects, rule=rule, treatment=treatment, outcome=outcome, flagged=flagged)
            tag = "flagged" if flagged else "others"
            out[f"rule{rule}_{tag}_n"] = int(r["runs"])
            out[f"rule{rule}_{tag}_effect"] = format_estimate(r["estimate"], r["low"], r["high"])
        out[f"verdict_rule{rule}"] = verdict_intervention(effects, rule).outcome
    out["rule3_configs"], out["rule3_flagged"] = rule3["configs"], rule3["flagged"]
    out["rule3_effect"] = format_estimate(rule3["interval"])
    out["verdict_rule3"] = rule3["verdict"].outcome
    out["rule3_reason"] = rule3["verdict"].reason
    for k, tag in ((0, "0"), (K, "K")):
        out[f"rule4_diff_{tag}"] = format_estimate(rule4["intervals"][k])
        out[f"rule4_pairs_{tag}"] = rule4["intervals"][k].n
    out["verdict_rule4"] = rule4["verdict"].outcome
    return out


def verdict_table(h5: dict, effects: pd.DataFrame, rule3: dict, rule4: dict) -> pd.DataFrame:
    """One row per claim: H5 and the four rules, the verdict and its reason."""
    rows = [("H5: early geometry adds to hyperparameters + early loss", verdict_h5(h5)),
            ("Rule 1: λmax high early → halve η", verdict_intervention(effects, 1)),
            ("Rule 2: rugged slices, small trace → clip", verdict_intervention(effects, 2)),
            ("Rule 3: high early barrier, low sharpness → seed-sensitive", rule3["verdict"]),
            ("Rule 4: skip connections → smoother slices", rule4["verdict"])]  # fmt: skip
    return pd.DataFrame([{"claim": c, "verdict": v.outcome, "reason": v.reason} for c, v in rows])
