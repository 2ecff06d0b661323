"""RQ2 — how does architecture shape the landscape?

Four architectures (an MLP, ResNet-18, ResNet-18 without skip connections, a tiny Transformer) are trained on
MNIST-1D with their reference recipes (`landscape.train.paper_recipe`) and several seeds each; every trained
network is then probed: its curvature profile (`landscape.geometry.measure_curvature`), 1-D slices with their
ruggedness on two windows, a 2-D slice (first seed), and the interpolation barriers between its seeds. The
founding write-up's six claims about architectures are decided by the verdict functions at the end.

Pieces, in the order the chapter uses them:

- `Sizes` and `PROFILES`: every size and budget of the chapter per profile.
- Experiments: `train_networks` (the training sweep through `run_sweep`: the MLP seeds as one vectorised task,
  every other network a task of its own) and `measure_networks` (every per-network measurement as one task of
  a `run_cached` sweep of `rq2_tasks.measure_task`, cached under the code of `rq2_tasks` only, so editing a
  summary, figure or verdict here recomputes nothing). Both return raw DataFrames.
- Summaries of those tables: `recipe_table`, `per_run_curvature`, `ruggedness_table` (their intervals over seeds:
  `landscape.paper.tables.interval_summary`), and the numbers the text glues (`settings_numbers`,
  `training_numbers`, `curvature_numbers`, `ruggedness_numbers`, `barrier_numbers`), `barrier_table` (relative barriers, peak losses).
- Verdicts: `verdict_mlp_smoother`, `verdict_resnet_skips`, `verdict_transformer`, `verdict_mlp_repeated_top`,
  `verdict_trace_grows_with_dimension`, `verdict_barriers_moderate`, each a `landscape.paper.verdicts.Verdict`.
- Figures: `plot_spectra`, `plot_slices`, `plot_planes`, `plot_barriers`, `plot_ruggedness`.

How comparisons are made. A claim that one architecture has more of a quantity than another is the ratio of
the two over seeds with an interval (`landscape.paper.stats.ratio_ci`) against 1. ResNet-18 and its twin are
paired by seed (same seed: same initialisation stream and data order, the twin only lacks the shortcuts; the
geometric mean of the paired ratios); other architectures share nothing but the seed number and are compared
unpaired (below 10 seeds the ratio of geometric means). Curvature and ruggedness of cross-entropy networks
shrink with the training loss, so two architectures are compared only when their training losses are matched
(the interval of the ratio of training losses lies inside [1/`LOSS_MATCH_FACTOR`, `LOSS_MATCH_FACTOR`] =
[0.8, 1.25]); otherwise the comparison is not testable here. A claim with k parts is decided by
`landscape.paper.verdicts.combine` (``rule="conjunction"``: one refuted part refutes it) on parts whose
intervals are made at `family_level`(0.95, k).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..glue import format_estimate, format_number, plural
from ..stats import LEVEL, seed_interval
from ..verdicts import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    REFUTED,
    SUPPORTED,
    Verdict,
    combine,
    family_level,
    not_testable,
    verdict_from_interval,
)
from . import rq2_tasks as tasks

__all__ = [
    "ADAPTIVE_RADIUS",
    "ARCHITECTURES",
    "GAP_EQUIVALENCE",
    "KEYS",
    "LOCAL_RADIUS",
    "LOSS_MATCH_FACTOR",
    "PROFILES",
    "RELATIVE_BARRIER",
    "RESOLUTION",
    "Sizes",
    "barrier_numbers",
    "barrier_table",
    "compare",
    "configs",
    "curvature_numbers",
    "decide",
    "largest_ratio",
    "loss_confound",
    "measure_networks",
    "measurement_tasks",
    "pair_bootstrap_ci",
    "per_run_curvature",
    "plot_barriers",
    "plot_planes",
    "plot_ruggedness",
    "plot_slices",
    "plot_spectra",
    "ratio_interval",
    "recipe",
    "recipe_table",
    "ruggedness_numbers",
    "ruggedness_table",
    "save_table",
    "settings_numbers",
    "trace_dimension_correlation",
    "train_networks",
    "training_numbers",
    "verdict_barriers_moderate",
    "verdict_mlp_repeated_top",
    "verdict_mlp_smoother",
    "verdict_resnet_skips",
    "verdict_table",
    "verdict_trace_grows_with_dimension",
    "verdict_transformer",
    "verdicts",
]

MLP, RESNET, NOSKIP, TRANSFORMER = "MLP", "ResNet-18", "ResNet-18, no skips", "Transformer"
ARCHITECTURES = {  # label: (recipe name, model_config overrides of the recipe)
    MLP: ("mlp", {}),
    RESNET: ("resnet18", {}),
    NOSKIP: ("resnet18", {"skip": False}),
    TRANSFORMER: ("transformer", {}),
}
KEYS = {MLP: "mlp", RESNET: "resnet", NOSKIP: "noskip", TRANSFORMER: "transformer"}  # glue-key stems
PAIRED = frozenset({RESNET, NOSKIP})  # architectures whose runs are paired by seed
ADAPTIVE_RADIUS, LOCAL_RADIUS = tasks.ADAPTIVE_RADIUS, tasks.LOCAL_RADIUS  # the measurements' constants
WINDOWS, PLANE_RADIUS = tasks.WINDOWS, tasks.PLANE_RADIUS
NUM_CLASSES = 10  # MNIST-1D; Papyan's picture predicts C outliers
# training losses are matched when their ratio's interval lies inside [1/1.25, 1.25] = [0.8, 1.25]: a factor 2
# would be as large as the effects compared
LOSS_MATCH_FACTOR = 1.25
GAP_EQUIVALENCE = 1e-3  # claim 4: λ1 and λ2 "repeated" when they agree to 0.1 % of λ1
RESOLUTION = 0.1  # claim 4: the residuals resolve the gap when (r1 + r2)/λ1 ≤ 0.1·GAP_EQUIVALENCE
RELATIVE_BARRIER = 1.0  # claim 6: "distinct" basins when the barrier exceeds the end points' mean loss


@dataclass(frozen=True)
class Sizes:
    """Sizes and budgets of the chapter for one profile."""

    seeds: tuple[int, ...]  # training seeds of every architecture
    overrides: Mapping[str, Mapping] = field(default_factory=dict)  # recipe name → paper_recipe overrides
    eval_samples: int = 1000  # first training samples on which barriers are evaluated
    hessian_samples: int = 256  # first training samples of every curvature probe and slice (≤ eval_samples)
    k: int = 20  # top eigenvalues by Lanczos
    tol: float = 1e-3  # relative Lanczos tolerance
    trace_matvecs: int = 40  # Hutchinson probes of tr(H)
    slq_probes: int = 2  # SLQ probe vectors
    slq_steps: int = 40  # SLQ Lanczos steps per probe
    adaptive_steps: int = 10  # projected-ascent steps of the adaptive sharpness
    slice_points: int = 41  # points of each 1-D slice
    grid_points: int = 21  # points per axis of the 2-D slice
    barrier_points: int = 21  # points on the line between two seeds
    n_resamples: int = 2000  # bootstrap resamples of every interval
    workers: int | None = None  # Dask worker processes (None: one per core; 1: in this process)
    threads: int | None = 1  # torch threads per task (None: leave the process's setting)

    def __post_init__(self) -> None:
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds!r}")
        if self.hessian_samples > self.eval_samples:
            raise ValueError(
                f"hessian_samples ({self.hessian_samples}) must not exceed eval_samples ({self.eval_samples})"
            )
        unknown = set(self.overrides) - {name for name, _ in ARCHITECTURES.values()}
        if unknown:
            raise ValueError(f"overrides for unknown recipes {sorted(unknown)}")


PROFILES = {
    # recipe overrides make the smoke models tiny; the paper profile trains the reference recipes unchanged
    "smoke": Sizes(
        seeds=(0, 1, 2),
        overrides={
            "mlp": {"model_config": {"depth": 2, "width": 16, "activation": "relu"}, "steps": 200},
            "resnet18": {"model_config": {"width_multiplier": 0.0625, "norm": "group"}, "epochs": 1},
            "transformer": {"model_config": {"patch_size": 8, "dim": 16, "depth": 1, "heads": 2, "pooling": "mean"},
                            "epochs": 2, "warmup_steps": 10},
        },
        eval_samples=256, hessian_samples=128, k=6, tol=1e-2, trace_matvecs=8, slq_probes=1, slq_steps=12,
        adaptive_steps=3, slice_points=11, grid_points=5, barrier_points=5, n_resamples=500, workers=1, threads=1,
    ),
    "paper": Sizes(
        seeds=(0, 1, 2), eval_samples=1000, hessian_samples=256, k=20, tol=1e-3, trace_matvecs=40, slq_probes=2,
        slq_steps=40, adaptive_steps=10, slice_points=41, grid_points=21, barrier_points=21, n_resamples=2000,
        workers=None, threads=1,  # a second thread per task helps little on 2 shared cores
    ),
    "full": Sizes(
        seeds=(0, 1, 2, 3, 4), eval_samples=4000, hessian_samples=2000, k=30, tol=1e-4, trace_matvecs=100,
        slq_probes=4, slq_steps=80, adaptive_steps=20, slice_points=61, grid_points=41, barrier_points=41,
        n_resamples=10000, workers=4, threads=None,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Training


def recipe(label: str, seed: int, sizes: Sizes):
    """The `TrainConfig` of architecture `label` with `seed`: its reference recipe, the profile's overrides, and
    the architecture's model options (the twin is ResNet-18 with ``skip=False``, nothing else changed)."""
    from ...train import paper_recipe

    if label not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {label!r}; expected one of {list(ARCHITECTURES)}")
    name, model_overrides = ARCHITECTURES[label]
    overrides = dict(sizes.overrides.get(name, {}))
    base = paper_recipe(name, **overrides)
    return replace(base, model_config={**base.model_config, **model_overrides}, seed=seed)


def configs(sizes: Sizes) -> dict[tuple[str, int], object]:
    """{(architecture, seed): TrainConfig} for every network of the chapter, architectures in `ARCHITECTURES`
    order."""
    return {(label, s): recipe(label, s, sizes) for label in ARCHITECTURES for s in sizes.seeds}


def train_networks(sizes: Sizes, *, root=None, data=None, progress: bool = False) -> pd.DataFrame:
    """Train (or load from the run store) every network of the chapter.

    The MLP seeds train as one vectorised `train_seeds` task; every other network is a task of its own. Both go
    through `landscape.results.run_sweep` on `sizes.workers` Dask workers.

    Returns:
        One row per network: architecture, seed, key, status, train loss, train acc, test acc, D (parameters),
        wall time (seconds of training when it was trained).
    """
    from ...data import load_dataset
    from ...results import load_run, run_key, run_sweep

    data = data if data is not None else load_dataset("mnist1d")
    wanted = configs(sizes)
    mlp = [c for (label, _), c in wanted.items() if label == MLP]
    others = [c for (label, _), c in wanted.items() if label != MLP]
    where = {"root": root, "workers": sizes.workers, "threads": sizes.threads, "data": {"mnist1d": data}}
    run_sweep(mlp, **where, progress=progress)
    run_sweep(others, **where, group_seeds=False, progress=progress)
    rows = []
    for (label, s), c in wanted.items():
        r = load_run(run_key(c, data), root)
        rows.append({
            "architecture": label, "seed": s, "key": r.key, "status": r.status,
            "train loss": r.final["train_loss"], "train acc": r.final["train_acc"], "test acc": r.final["test_acc"],
            "D": r.num_parameters, "wall time": r.wall_time,
        })  # fmt: skip
    return pd.DataFrame(rows)


def recipe_table(sizes: Sizes, training: pd.DataFrame) -> pd.DataFrame:
    """The recipe of each architecture (first seed) with its parameter count, indexed by architecture."""
    rows = []
    for label in ARCHITECTURES:
        c = recipe(label, sizes.seeds[0], sizes)
        first = training[(training["architecture"] == label) & (training["seed"] == sizes.seeds[0])]
        rows.append({
            "architecture": label, "parameters D": int(first["D"].iloc[0]), "model": c.model,
            "options": ", ".join(f"{k}={v}" for k, v in c.model_config.items()), "optimiser": c.optimizer,
            "lr": c.lr, "weight decay": c.weight_decay, "schedule": c.schedule, "batch": c.batch_size,
            "length": f"{c.steps} steps" if c.steps else f"{c.epochs} epochs",
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("architecture")


# ----------------------------------------------------------------------------------------------------------------
# Measurements: one cached task per network (curvature, slices, plane) or seed pair (barrier), in `rq2_tasks`


@dataclass(frozen=True)
class MeasurementTask:
    """One measurement: which networks it is of, and the settings `rq2_tasks.measure_task` computes it from."""

    architecture: str
    seeds: tuple[int, ...]  # the network's seed (two for a barrier)
    settings: Mapping  # the task's settings (its cache key with the task's name and declared code)

    @property
    def kind(self) -> str:
        return self.settings["probe"]


def _task_settings(kind: str, architecture: str, keys: Sequence[str], sizes: Sizes, root, seed: int) -> dict:
    common = {"probe": kind, "runs": list(keys), "seed": seed, **({"root": root} if root is not None else {})}
    if kind == "curvature":
        budgets = (
            "hessian_samples",
            "k",
            "tol",
            "trace_matvecs",
            "slq_probes",
            "slq_steps",
            "adaptive_steps",
        )
        return {**common, "radius": tasks.ADAPTIVE_RADIUS, **{b: getattr(sizes, b) for b in budgets}}
    if kind == "slices":
        return {**common, "points": sizes.slice_points, "windows": tasks.WINDOWS,
                "hessian_samples": sizes.hessian_samples, "tol": sizes.tol}  # fmt: skip
    if kind == "plane":
        return {**common, "grid": sizes.grid_points, "radius": tasks.PLANE_RADIUS,
                "hessian_samples": sizes.hessian_samples}  # fmt: skip
    return {**common, "points": sizes.barrier_points, "eval_samples": sizes.eval_samples,
            "aligned": architecture == MLP}  # fmt: skip


def measurement_tasks(
    training: pd.DataFrame, sizes: Sizes, *, root=None, seed: int = 0
) -> list[MeasurementTask]:
    """Every measurement of the chapter as a task: curvature and slices of each network, the 2-D slice of each
    architecture's first seed, the barrier of each pair of seeds of an architecture. Costliest kinds first. A
    run store `root` other than the default is made absolute (workers may run elsewhere)."""
    by_kind = {kind: [] for kind in ("curvature", "barrier", "slices", "plane")}
    root = None if root is None else str(Path(root).resolve())
    for label in ARCHITECTURES:
        rows = training[training["architecture"] == label].sort_values("seed")
        seeds, keys = rows["seed"].tolist(), rows["key"].tolist()

        def task(kind, idx, label=label, seeds=seeds, keys=keys):
            settings = _task_settings(kind, label, [keys[i] for i in idx], sizes, root, seed)
            return MeasurementTask(label, tuple(seeds[i] for i in idx), settings)

        for i in range(len(seeds)):
            by_kind["curvature"].append(task("curvature", (i,)))
            by_kind["slices"].append(task("slices", (i,)))
        if seeds:
            by_kind["plane"].append(task("plane", (0,)))
        by_kind["barrier"] += [
            task("barrier", (i, j)) for i, j in itertools.combinations(range(len(seeds)), 2)
        ]
    return [t for kind in by_kind.values() for t in kind]


def measure_networks(
    training: pd.DataFrame, sizes: Sizes, cache, *, root=None, seed: int = 0, progress: bool = False
) -> dict[str, pd.DataFrame]:
    """Every per-network measurement (`measurement_tasks`) as one `run_cached` sweep of
    `rq2_tasks.measure_task` on `sizes.workers` Dask workers (`sizes.threads` torch threads each), each task
    cached under `cache` with `rq2_tasks.DEPENDS_ON` as its code.

    Returns:
        Raw tables (list-valued columns hold curves):

        - ``"curvature"``: one row per network: architecture, seed, every `CurvatureProfile` field (``num_params``
          as D) and the derived columns ``lambda_min_bound`` = (|λmin| + r)/λmax, ``largest_ratio`` and
          ``largest_ratio_at`` (the largest λi/λi+1 of the positive top eigenvalues and its i),
          ``relative_gap`` = (λ1 − λ2)/λ1, ``gap_margin`` = (λ1 − λ2 − r1 − r2)/λ1 (> 0: λ1 ≠ λ2 proven by the
          residuals), ``gap_bound`` = (λ1 − λ2 + r1 + r2)/λ1 (the largest relative gap the residuals allow),
          ``top_residuals`` = (r1 + r2)/λ1 and ``max_relative_residual``.
        - ``"slices"``: one row per network, direction (random, eigen) and window (wide, local): ruggedness,
          local_minima, alphas, losses, quadratic.
        - ``"planes"``: one row per architecture (first seed): grid, losses (grid × grid).
        - ``"barriers"``: one row per pair of seeds and variant (raw; aligned for the MLP): loss barrier, error
          barrier, alphas, losses.
    """
    from .common import run_cached

    wanted = measurement_tasks(training, sizes, root=root, seed=seed)
    results = run_cached(tasks.measure_task, [t.settings for t in wanted], cache=cache, depends_on=tasks.DEPENDS_ON,
                         workers=sizes.workers, threads=sizes.threads, desc="rq2 measurements",
                         progress=progress)  # fmt: skip
    rows = {"curvature": [], "slices": [], "planes": [], "barriers": []}
    for t, r in zip(wanted, results, strict=True):
        base = {"architecture": t.architecture, "seed": t.seeds[0]}
        if t.kind == "curvature":
            rows["curvature"].append({**base, **_curvature_row(r)})
        elif t.kind == "slices":
            for name, v in r.items():
                direction, window = name.split("_")
                rows["slices"].append({**base, "direction": direction, "window": window, **v})
        elif t.kind == "plane":
            rows["planes"].append({**base, **r})
        else:
            for variant, v in r.items():
                rows["barriers"].append({
                    "architecture": t.architecture, "seed a": t.seeds[0], "seed b": t.seeds[1], "variant": variant,
                    "loss barrier": v["height"], "error barrier": v["instability"], "alphas": v["alphas"],
                    "losses": v["losses"],
                })  # fmt: skip
    return {name: pd.DataFrame(r) for name, r in rows.items()}


def largest_ratio(values: Sequence[float]) -> tuple[float, int]:
    """The largest ratio λi/λi+1 of consecutive positive eigenvalues (in decreasing order) and its i (1-based).

    >>> largest_ratio([8.0, 4.0, 1.0, 0.5])
    (4.0, 2)
    """
    v = np.asarray(values, dtype=float)
    v = v[v > 0]
    if len(v) < 2:
        return math.nan, 0
    ratios = v[:-1] / v[1:]
    return float(ratios.max()), int(ratios.argmax()) + 1


def _curvature_row(p: Mapping) -> dict:
    top, res, lmax = p["top_eigenvalues"], p["residuals"], p["lambda_max"]
    ratio, at = largest_ratio(top)
    row = {"D": p["num_params"], **{k: v for k, v in p.items() if k != "num_params"}}
    return {
        **row,
        "lambda_min_bound": (abs(p["lambda_min"]) + p["lambda_min_residual"]) / lmax,
        "largest_ratio": ratio,
        "largest_ratio_at": at,
        "relative_gap": (top[0] - top[1]) / top[0],
        "gap_margin": (top[0] - top[1] - res[0] - res[1]) / top[0],
        "gap_bound": (top[0] - top[1] + res[0] + res[1]) / top[0],
        "top_residuals": (res[0] + res[1]) / top[0],
        "max_relative_residual": max(res) / lmax,
    }


def save_table(frame: pd.DataFrame, path) -> Path:
    """Write a raw table as CSV, list-valued cells (curves) as JSON."""
    path = Path(path)
    frame.map(lambda v: json.dumps(v) if isinstance(v, list) else v).to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Summaries

CURVATURE_COLUMNS = {  # display name: column of the curvature table
    "λmax": "lambda_max", "λmin": "lambda_min", "|λmin/λmax|": "convexity_ratio", "tr(H)": "trace",
    "tr(H)/D": "trace_per_param", "effective rank": "effective_rank", "outliers": "num_outliers",
    "normalised sharpness": "normalized_sharpness", "adaptive sharpness": "adaptive_sharpness",
}  # fmt: skip
PER_RUN_COLUMNS = {  # display name: column of the curvature table (per-run view)
    "D": "D", **CURVATURE_COLUMNS, "λmin residual": "lambda_min_residual", "λmin converged": "lambda_min_converged",
    "|λmin|/λmax bound": "lambda_min_bound", "largest λi/λi+1": "largest_ratio", "at i": "largest_ratio_at",
    "λ1 − λ2 certified": "top_gap_certified", "max residual / λmax": "max_relative_residual",
}  # fmt: skip
RUGGED_COLUMNS = {  # column of `ruggedness_table`: (direction, window, field) of the slices table
    "R random, r=1": ("random", "wide", "ruggedness"),
    "R random, local": ("random", "local", "ruggedness"),
    "R eigenvector, r=1": ("eigen", "wide", "ruggedness"),
    "R eigenvector, local": ("eigen", "local", "ruggedness"),
    "minima random, r=1": ("random", "wide", "local_minima"),
    "minima eigenvector, r=1": ("eigen", "wide", "local_minima"),
}


def per_run_curvature(curvature: pd.DataFrame) -> pd.DataFrame:
    """The curvature table's scalar columns under their display names, one row per network."""
    return curvature[["architecture", "seed", *PER_RUN_COLUMNS.values()]].set_axis(
        ["architecture", "seed", *PER_RUN_COLUMNS], axis=1
    )


def ruggedness_table(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per network (architecture, seed) with the ruggedness and local-minima columns of
    `RUGGED_COLUMNS`."""
    rows = []
    for (label, s), group in slices.groupby(["architecture", "seed"], sort=False):
        by = group.set_index(["direction", "window"])
        rows.append({"architecture": label, "seed": s,
                     **{col: by.loc[(d, w), f] for col, (d, w, f) in RUGGED_COLUMNS.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def _per_architecture(frame: pd.DataFrame, column: str, how: str) -> dict[str, float]:
    return frame.groupby("architecture", sort=False)[column].agg(how).to_dict()


def settings_numbers(sizes: Sizes, profile: str, num_train: int) -> dict:
    """The chapter's settings as glue values."""
    return {
        "profile": profile, "num_seeds": len(sizes.seeds), "seed_list": ", ".join(map(str, sizes.seeds)),
        "first_seed": sizes.seeds[0], "num_train": num_train, "hessian_samples": sizes.hessian_samples,
        "eval_samples": sizes.eval_samples, "k": sizes.k, "tol": sizes.tol, "trace_matvecs": sizes.trace_matvecs,
        "slq_probes": sizes.slq_probes, "slq_probes_text": plural(sizes.slq_probes, "probe"),
        "slq_steps": sizes.slq_steps, "adaptive_radius": ADAPTIVE_RADIUS,
        "slice_points": sizes.slice_points, "grid_points": sizes.grid_points, "local_radius": LOCAL_RADIUS,
        "barrier_points": sizes.barrier_points, "num_pairs": math.comb(len(sizes.seeds), 2),
        "loss_match_factor": LOSS_MATCH_FACTOR, "level_percent": round(100 * LEVEL),
    }  # fmt: skip


def training_numbers(training: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Glue values of the training table: accuracy (%, mean and std over seeds), D, the range of training
    losses per architecture, the accuracy drop without skips, the twin's training loss over ResNet-18's
    (``loss_ratio_skip_ci``, paired) and whether it is matched (``loss_match_skip``: "inside" or "not inside"
    the band of `loss_confound`), and the training compute in minutes."""
    out = {}
    acc, acc_std = (
        _per_architecture(training, "test acc", "mean"),
        _per_architecture(training, "test acc", "std"),
    )
    lo, hi = (
        _per_architecture(training, "train loss", "min"),
        _per_architecture(training, "train loss", "max"),
    )
    dims = _per_architecture(training, "D", "first")
    for label, key in KEYS.items():
        if label not in acc:
            continue
        out |= {
            f"acc_{key}": 100 * acc[label],
            f"acc_{key}_std": 100 * _nan_to_zero(acc_std[label]),
            f"dim_{key}": int(dims[label]),
            f"train_loss_{key}_min": lo[label],
            f"train_loss_{key}_max": hi[label],
        }
    if RESNET in acc and NOSKIP in acc:
        out["acc_drop_skips"] = 100 * (acc[RESNET] - acc[NOSKIP])
        kw = {"n_resamples": n_resamples, "seed": seed}
        out["loss_ratio_skip_ci"] = format_estimate(
            ratio_interval(training, "train loss", NOSKIP, RESNET, **kw)
        )
        out["loss_match_skip"] = (
            "inside" if loss_confound(training, NOSKIP, RESNET, **kw) is None else "not inside"
        )
    out["training_minutes"] = float(training["wall time"].sum()) / 60
    return out


def curvature_numbers(curvature: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Glue values of the curvature table: per-architecture means (λmax with its std, tr(H), tr(H)/D,
    |λmin/λmax|, outliers, effective rank, normalised sharpness) and the factor between the largest and smallest
    mean tr(H)/D; the no-skip/skip ratios of λmax and normalised sharpness (``*_skip_ratio``: the geometric mean
    of the paired ratios, the estimand of ``*_skip_ratio_ci``); the MLP's certified gaps, mean relative gap,
    certified margin and gap bound (with their intervals) and largest (r1 + r2)/λ1; Spearman ρ between D and the
    mean trace with its interval and permutation p-values; and how many networks have their largest eigenvalue
    ratio at i = C."""
    from ..stats import bootstrap_ci

    mean = {col: _per_architecture(curvature, col, "mean") for col in CURVATURE_COLUMNS.values()}
    lmax_std = _per_architecture(curvature, "lambda_max", "std")
    out = {}
    names = {"lmax": "lambda_max", "trace": "trace", "trace_d": "trace_per_param", "ratio": "convexity_ratio",
             "outliers": "num_outliers", "erank": "effective_rank", "ns": "normalized_sharpness"}  # fmt: skip
    for label, key in KEYS.items():
        if label in mean["lambda_max"]:
            out |= {f"{name}_{key}": mean[col][label] for name, col in names.items()}
            out[f"lmax_{key}_std"] = _nan_to_zero(lmax_std[label])
    trace_d = np.array(list(mean["trace_per_param"].values()))
    out["trace_d_spread"] = float(trace_d.max() / trace_d.min()) if (trace_d > 0).all() else math.nan
    kw = {"level": LEVEL, "n_resamples": n_resamples, "seed": seed}
    if RESNET in mean["lambda_max"] and NOSKIP in mean["lambda_max"]:
        for name, col in (("lmax", "lambda_max"), ("ns", "normalized_sharpness")):
            ratio = ratio_interval(curvature, col, NOSKIP, RESNET, **kw)
            out[f"{name}_skip_ratio"], out[f"{name}_skip_ratio_ci"] = ratio.estimate, format_estimate(ratio)
    mlp = curvature[curvature["architecture"] == MLP]
    out["certified_mlp"] = int(mlp["top_gap_certified"].sum())
    out["mlp_rel_gap"] = float(mlp["relative_gap"].mean())
    out["mlp_margin_ci"] = format_estimate(bootstrap_ci(mlp["gap_margin"].to_numpy(float), **kw))
    out["mlp_bound_ci"] = format_estimate(bootstrap_ci(mlp["gap_bound"].to_numpy(float), **kw))
    out["mlp_top_residuals"] = float(mlp["top_residuals"].max()) if len(mlp) else math.nan
    out["gap_delta"], out["gap_resolution"] = GAP_EQUIVALENCE, RESOLUTION * GAP_EQUIVALENCE
    rho = trace_dimension_correlation(curvature, n_resamples=n_resamples, seed=seed)
    out |= {"rank_corr": rho.estimate, "rank_corr_ci": format_estimate(rho.interval), "rank_corr_p": rho.pvalue,
            "rank_corr_min_p": rho.min_pvalue, "num_architectures": rho.n}  # fmt: skip
    out["gap_at_c"] = int((curvature["largest_ratio_at"] == NUM_CLASSES).sum())
    out["num_runs"] = len(curvature)
    return out


def ruggedness_numbers(rugged: pd.DataFrame) -> dict:
    """Glue values of the ruggedness table: mean and std of R on both windows (random direction) and the mean
    count of local minima per architecture."""
    out = {}
    for prefix, col in (("rugged", "R random, r=1"), ("rugged_local", "R random, local")):
        mean, std = _per_architecture(rugged, col, "mean"), _per_architecture(rugged, col, "std")
        for label, key in KEYS.items():
            if label in mean:
                out[f"{prefix}_{key}"], out[f"{prefix}_{key}_std"] = mean[label], _nan_to_zero(std[label])
    minima = _per_architecture(rugged, "minima random, r=1", "mean")
    out |= {f"minima_{key}": minima[label] for label, key in KEYS.items() if label in minima}
    out["minima_max"] = max(minima.values()) if minima else math.nan
    return out


def barrier_numbers(barriers: pd.DataFrame) -> dict:
    """Glue values of the barrier table (descriptive, over the seed pairs): mean and std of the raw loss barrier,
    the mean relative barrier and peak loss (`barrier_table`) and the mean error barrier (%) per architecture,
    the MLP's aligned barrier, the range of raw barriers, and ln C."""
    raw = barrier_table(barriers)
    mean, std = _per_architecture(raw, "loss barrier", "mean"), _per_architecture(raw, "loss barrier", "std")
    relative, peak = (
        _per_architecture(raw, "relative barrier", "mean"),
        _per_architecture(raw, "peak loss", "mean"),
    )
    err = _per_architecture(raw, "error barrier", "mean")
    out = {"ln_classes": math.log(NUM_CLASSES), "relative_barrier": RELATIVE_BARRIER}
    for label, key in KEYS.items():
        if label in mean:
            out |= {f"barrier_{key}": mean[label], f"barrier_{key}_std": _nan_to_zero(std[label]),
                    f"rel_barrier_{key}": relative[label], f"peak_loss_{key}": peak[label],
                    f"err_barrier_{key}": 100 * err[label]}  # fmt: skip
    aligned = barriers[(barriers["variant"] == "aligned") & (barriers["architecture"] == MLP)]
    out["barrier_mlp_aligned"] = float(aligned["loss barrier"].mean()) if len(aligned) else math.nan
    out["barrier_max"] = float(raw["loss barrier"].max()) if len(raw) else math.nan
    out["barrier_min"] = float(raw["loss barrier"].min()) if len(raw) else math.nan
    return out


def _nan_to_zero(value: float) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# ----------------------------------------------------------------------------------------------------------------
# Verdicts


def decide(interval, expected_sign: int, null: float, what: str, *, null_name: str | None = None) -> Verdict:
    """`verdict_from_interval` on an `Interval`, the reason naming the quantity, its interval and the null value:
    e.g. ``"λmax ResNet-18/MLP = 2.25 [1.1, 4.6] (claimed above 1)"``."""
    v = verdict_from_interval(interval.low, interval.high, expected_sign, null=null)
    if v.outcome == NOT_TESTABLE:
        return Verdict(v.outcome, f"{what}: {v.reason}")
    side = "above" if expected_sign > 0 else "below"
    null_text = f"{null_name} = {format_number(null)}" if null_name else format_number(null)
    return Verdict(v.outcome, f"{what} = {format_estimate(interval)} (claimed {side} {null_text})")


def _by_seed(frame: pd.DataFrame, column: str, label: str) -> pd.Series:
    rows = frame[frame["architecture"] == label]
    return pd.Series(rows[column].to_numpy(float), index=rows["seed"].to_numpy()).sort_index()


def ratio_interval(frame: pd.DataFrame, column: str, numerator: str, denominator: str, *, level: float = LEVEL,
                   n_resamples: int = 2000, seed: int = 0):  # fmt: skip
    """The interval of the ratio of `column` of `numerator` to that of `denominator` over seeds
    (`landscape.paper.stats.ratio_ci`): paired by seed for ResNet-18 and its twin (seeds both lack are dropped;
    the geometric mean of the paired ratios), unpaired otherwise (below 10 seeds the ratio of geometric means,
    Welch's t on the logs). The interval's ``estimate`` is the estimand its ``method`` names."""
    from ..stats import ratio_ci

    a, b = _by_seed(frame, column, numerator), _by_seed(frame, column, denominator)
    paired = {numerator, denominator} == PAIRED
    if paired:
        common = a.index.intersection(b.index)
        a, b = a.loc[common], b.loc[common]
    return ratio_ci(
        a.to_numpy(), b.to_numpy(), level=level, n_resamples=n_resamples, seed=seed, paired=paired
    )


def loss_confound(training: pd.DataFrame, a: str, b: str, *, level: float = LEVEL, n_resamples: int = 2000,
                  seed: int = 0) -> str | None:  # fmt: skip
    """Why architectures `a` and `b` cannot be compared (their training losses are not shown to be matched:
    the interval of the ratio of their training losses (`ratio_interval`) is not inside
    [1/`LOSS_MATCH_FACTOR`, `LOSS_MATCH_FACTOR`] = [0.8, 1.25]), or None when they can."""
    interval = ratio_interval(training, "train loss", a, b, level=level, n_resamples=n_resamples, seed=seed)
    if interval.low >= 1 / LOSS_MATCH_FACTOR and interval.high <= LOSS_MATCH_FACTOR:
        return None
    return (f"training losses not matched: {a}/{b} = {format_estimate(interval)}, not inside "
            f"[{1 / LOSS_MATCH_FACTOR:g}, {LOSS_MATCH_FACTOR:g}]")  # fmt: skip


def compare(frame: pd.DataFrame, column: str, larger: str, smaller: str, training: pd.DataFrame, *,
            level: float = LEVEL, n_resamples: int = 2000, seed: int = 0) -> Verdict:  # fmt: skip
    """The claim "`larger` has a larger `column` than `smaller`": the `level` interval of their ratio against 1
    (`ratio_interval`), not testable when their training losses are not matched (`loss_confound`) or when a
    value is not positive (a ratio then says nothing)."""
    kw = {"level": level, "n_resamples": n_resamples, "seed": seed}
    confound = loss_confound(training, larger, smaller, **kw)
    if confound is not None:
        return not_testable(confound)
    a, b = _by_seed(frame, column, larger), _by_seed(frame, column, smaller)
    if len(a) == 0 or len(b) == 0 or (a <= 0).any() or (b <= 0).any():
        return not_testable(f"{column} needs positive values of both architectures for a ratio")
    interval = ratio_interval(frame, column, larger, smaller, **kw)
    name = {col: display for display, col in CURVATURE_COLUMNS.items()}.get(column, column)
    return decide(interval, +1, 1.0, f"{name} {larger}/{smaller}")


def _claim(parts: Mapping[str, tuple], *, n_resamples: int, seed: int) -> Verdict:
    """A claim that is the conjunction of `parts` ({name: (frame, column, larger, smaller, training)}), each
    part a `compare` at `family_level` (Bonferroni over the parts), decided by `verdicts.combine` with
    ``rule="conjunction"`` (one refuted part refutes the claim)."""
    level = family_level(LEVEL, len(parts))
    return combine({name: compare(*args, level=level, n_resamples=n_resamples, seed=seed)
                    for name, args in parts.items()}, rule="conjunction")  # fmt: skip


def verdict_mlp_smoother(rugged: pd.DataFrame, training: pd.DataFrame, *, n_resamples: int = 2000,
                         seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 1, "MLP landscapes are smoother": the random-direction ruggedness (r = 1) of every other
    architecture is larger than the MLP's (old rule: the MLP's mean + std below every other's mean − std)."""
    others = [label for label in ARCHITECTURES if label != MLP and label in set(rugged["architecture"])]
    parts = {f"R {o} > MLP": (rugged, "R random, r=1", o, MLP, training) for o in others}
    return _claim(parts, n_resamples=n_resamples, seed=seed)


def _lambda_min_unresolved(curvature: pd.DataFrame, labels: Sequence[str]) -> str | None:
    rows = curvature[curvature["architecture"].isin(labels)]
    unresolved = rows[rows["lambda_min"].abs() <= rows["lambda_min_residual"]]
    if len(unresolved):
        return (f"λmin is within its Lanczos residual of 0 for {len(unresolved)} of {len(rows)} networks, so "
                "|λmin/λmax| is not measured")  # fmt: skip
    return None


def verdict_resnet_skips(curvature: pd.DataFrame, rugged: pd.DataFrame, training: pd.DataFrame, *,
                         n_resamples: int = 2000, seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 2, "ResNet-18 has stiff dominant eigenvalues but coherent valleys thanks to skip connections":
    ResNet-18's λmax is larger than every other architecture's, and without skips the random-direction
    ruggedness and |λmin/λmax| are larger (paired by seed). Old rule: point-estimate largest λmax and mean ± std
    separation, "partly supported" when some parts held."""
    parts = {f"λmax ResNet-18 > {o}": (curvature, "lambda_max", RESNET, o, training)
             for o in ARCHITECTURES if o != RESNET}  # fmt: skip
    parts["R no skips > skips"] = (rugged, "R random, r=1", NOSKIP, RESNET, training)
    parts["|λmin/λmax| no skips > skips"] = (curvature, "convexity_ratio", NOSKIP, RESNET, training)
    unresolved = _lambda_min_unresolved(curvature, [RESNET, NOSKIP])
    level = family_level(LEVEL, len(parts))  # a part not measured still counts in the family
    return combine({
        name: not_testable(unresolved) if unresolved and name.startswith("|λmin")
        else compare(*args, level=level, n_resamples=n_resamples, seed=seed)
        for name, args in parts.items()
    }, rule="conjunction")  # fmt: skip


def verdict_transformer(curvature: pd.DataFrame, rugged: pd.DataFrame, training: pd.DataFrame, *,
                        n_resamples: int = 2000, seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 3, "Transformers show near-zero average curvature but rugged local slices": the Transformer's
    tr(H)/D is smaller and its local-window ruggedness larger than every other architecture's (old rule: the
    point estimates are the smallest and largest of the four)."""
    parts = {}
    for o in (label for label in ARCHITECTURES if label != TRANSFORMER):
        parts[f"tr(H)/D {o} > Transformer"] = (curvature, "trace_per_param", o, TRANSFORMER, training)
        parts[f"local R Transformer > {o}"] = (rugged, "R random, local", TRANSFORMER, o, training)
    return _claim(parts, n_resamples=n_resamples, seed=seed)


def verdict_mlp_repeated_top(curvature: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0,
                             delta: float = GAP_EQUIVALENCE) -> Verdict:  # fmt: skip
    """Claim 4, "the MLP's top eigenvalue is repeated (no explicit Hessian gap)", from the top two Ritz values
    θ1 ≥ θ2 of each MLP seed and their Lanczos residuals r1, r2 (each interval [θi − ri, θi + ri] holds an exact
    eigenvalue), intervals of the mean over seeds (Student t below 10 seeds):

    - REFUTED when the certified margin (λ1 − λ2 − r1 − r2)/λ1 has its interval above 0: the residual intervals
      are disjoint on average, λ1 ≠ λ2 shown;
    - SUPPORTED only by an equivalence test: the largest relative gap the residuals allow,
      (λ1 − λ2 + r1 + r2)/λ1, has its interval's upper bound below `delta` (default `GAP_EQUIVALENCE` = 10⁻³:
      λ1 and λ2 agree to 0.1 %), with every seed's residuals (r1 + r2)/λ1 at most `RESOLUTION` · δ (≪ δ);
    - NOT_TESTABLE when the residuals are not that small ("the residuals do not resolve the gap"): an
      unresolved gap is no evidence of a repeated eigenvalue (a looser Lanczos tolerance would make it so);
    - NOT_SUPPORTED otherwise (resolved residuals, but a gap neither shown to be > 0 nor < δ).

    Single-vector Lanczos sees one direction of each eigenspace, so an exactly repeated eigenvalue is returned
    once: these Ritz values cannot show a multiplicity; the test is whether the top two distinct Ritz values
    are separated. Old rule: supported when the margin's interval was below 0, i.e. whenever the gap was not
    resolved.
    """
    from ..stats import bootstrap_ci

    mlp = curvature[curvature["architecture"] == MLP]
    if len(mlp) < 2:
        return not_testable(f"{len(mlp)} MLP network(s): an interval needs at least two")
    kw = {"level": LEVEL, "n_resamples": n_resamples, "seed": seed}
    margin = bootstrap_ci(mlp["gap_margin"].to_numpy(float), **kw)
    if verdict_from_interval(margin.low, margin.high, +1).outcome == SUPPORTED:
        return Verdict(REFUTED, f"mean (λ1 − λ2 − r1 − r2)/λ1 = {format_estimate(margin)} lies above 0: λ1 ≠ λ2 "
                                "shown by the residuals")  # fmt: skip
    resolution = float(mlp["top_residuals"].max())
    if not resolution <= RESOLUTION * delta:
        return not_testable(f"the residuals do not resolve the gap: max (r1 + r2)/λ1 = {format_number(resolution, 2)}, not "
                            f"≤ {RESOLUTION * delta:g} (≪ δ = {delta:g})")  # fmt: skip
    bound = bootstrap_ci(mlp["gap_bound"].to_numpy(float), **kw)
    equivalence = verdict_from_interval(bound.low, bound.high, -1, null=delta)
    if equivalence.outcome == SUPPORTED:
        return Verdict(SUPPORTED, f"mean (λ1 − λ2 + r1 + r2)/λ1 = {format_estimate(bound)} lies below δ = "
                                  f"{delta:g}: λ1 and λ2 agree to within δ")  # fmt: skip
    return Verdict(NOT_SUPPORTED, f"the margin {format_estimate(margin)} is not above 0 and the bound "
                                  f"{format_estimate(bound)} not below δ = {delta:g}")  # fmt: skip


def trace_dimension_correlation(curvature: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0):
    """Spearman ρ between D and the mean tr(H) of the architectures (`landscape.paper.stats.
    rank_correlation_of_means`: stratified bootstrap interval over seeds, exact permutation p-value over the
    architectures, two-sided)."""
    from ..stats import rank_correlation_of_means

    return rank_correlation_of_means(curvature, "D", "trace", "architecture", level=LEVEL, n_resamples=n_resamples,
                                     seed=seed)  # fmt: skip


def verdict_trace_grows_with_dimension(curvature: pd.DataFrame, training: pd.DataFrame, *, n_resamples: int = 2000,
                                       seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 5, "trace grows with parameter dimension", a claim about architectures in general, so tested over
    the architectures (the groups), not over seeds: the exact permutation test of Spearman ρ(D, mean tr H)
    (`trace_dimension_correlation`) at 1 − `LEVEL` (two-sided): supported when p < 0.05 and ρ > 0, refuted when
    p < 0.05 and ρ < 0, not supported otherwise. Not testable when no ordering of the groups could reach
    p < 0.05 (with 4 architectures the smallest two-sided p is 1/12) or when some pair of architectures is not at
    matched training loss. Old rules: ρ > 0.5 as a point estimate; then a bootstrap interval over seeds, which
    says how reliably these 4 means are ordered, not whether trace grows with D."""
    alpha = 1 - LEVEL
    rho = trace_dimension_correlation(curvature, n_resamples=n_resamples, seed=seed)
    if math.isnan(rho.estimate):
        return not_testable("ρ is undefined (the mean traces or the dimensions are all equal)")
    if not rho.min_pvalue < alpha:
        return not_testable(f"{rho.n} architectures: no rank test at {100 * alpha:g} % (smallest two-sided "
                            f"permutation p = {format_number(rho.min_pvalue)})")  # fmt: skip
    labels = list(dict.fromkeys(curvature["architecture"]))
    for a, b in itertools.combinations(labels, 2):
        confound = loss_confound(training, a, b, n_resamples=n_resamples, seed=seed)
        if confound is not None:
            return not_testable(confound)
    text = (
        f"Spearman ρ(D, mean tr H) = {format_number(rho.estimate)}, "
        f"permutation p = {format_number(rho.pvalue)} over {rho.n} groups"
    )
    if rho.pvalue < alpha:
        return Verdict(SUPPORTED if rho.estimate > 0 else REFUTED, f"{text} < {alpha:g}")
    return Verdict(NOT_SUPPORTED, f"{text} ≥ {alpha:g}")


def barrier_table(barriers: pd.DataFrame) -> pd.DataFrame:
    """The raw barriers with, per pair of seeds, the mean loss of the two end points (``end loss``), the
    ``relative barrier`` = loss barrier / end loss, and the ``peak loss`` max_α L(θ(α)) on the line."""
    raw = barriers[barriers["variant"] == "raw"].copy()
    raw["end loss"] = [(v[0] + v[-1]) / 2 for v in raw["losses"]]
    raw["relative barrier"] = raw["loss barrier"] / raw["end loss"]
    raw["peak loss"] = [max(v) for v in raw["losses"]]
    return raw.drop(columns=["alphas", "losses"]).reset_index(drop=True)


def pair_bootstrap_ci(pairs: pd.DataFrame, value: str, *, level: float = LEVEL, n_resamples: int = 2000,
                      seed: int = 0):  # fmt: skip
    """Interval of the mean of `value` over every pair of distinct seeds (columns ``seed a``, ``seed b``), by a
    bootstrap over seeds: each resample draws n seeds with replacement and averages `value` over every pair of
    distinct drawn seeds (the pairs share networks, so pairs are not resampled as if independent); percentile
    interval, widened to contain the estimate. NaN bounds below `SMALL_SAMPLE` seeds ("too few seeds for an
    interval over pairs") or when a pair of the seeds is missing."""
    from ..stats import SMALL_SAMPLE, Interval

    seeds = sorted(set(pairs["seed a"]) | set(pairs["seed b"]))
    n, index = len(seeds), {s: i for i, s in enumerate(seeds)}
    matrix = np.full((n, n), np.nan)
    for a, b, v in zip(pairs["seed a"], pairs["seed b"], pairs[value].to_numpy(float), strict=True):
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = v
    upper = matrix[np.triu_indices(n, 1)]
    estimate = float(upper.mean()) if upper.size else math.nan
    if n < SMALL_SAMPLE or np.isnan(upper).any():
        why = (
            f"too few seeds for an interval over pairs (n < {SMALL_SAMPLE})"
            if n < SMALL_SAMPLE
            else "pairs missing"
        )
        return Interval(estimate, math.nan, math.nan, level, n, why)
    rng = np.random.default_rng(seed)
    draws = rng.integers(n, size=(n_resamples, n))
    means = np.empty(n_resamples)
    for r, idx in enumerate(draws):
        distinct = (
            idx[:, None] < idx[None, :]
        )  # each unordered pair of distinct drawn seeds, with multiplicity
        means[r] = matrix[np.ix_(idx, idx)][distinct].mean() if distinct.any() else np.nan
    means = means[~np.isnan(means)]
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate, float(min(low, estimate)), float(max(high, estimate)), level, n,
                    "bootstrap over seeds, every pair of distinct drawn seeds (percentile)")  # fmt: skip


def verdict_barriers_moderate(barriers: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> Verdict:
    """Claim 6, "barriers are moderate: distinct but nearby basins", for every architecture (the parts' intervals
    from `pair_bootstrap_ci` at `family_level`, decided by `verdicts.combine`, ``rule="conjunction"``):

    - distinct: the mean relative barrier (loss barrier / mean loss of the two end points) lies above
      `RELATIVE_BARRIER` = 1. A barrier is large or small only against the loss of the networks it joins (10⁻³
      is a wall between networks at loss 10⁻⁵ and nothing between networks at loss 1): above 1, the loss on the
      line exceeds the linear interpolation of the end points by more than their own loss, at least doubling it.
    - nearby: the mean peak loss on the line lies below ln C, the loss of a uniform prediction: the line never
      passes through networks that predict no better than chance.

    Not testable below `SMALL_SAMPLE` seeds per architecture ("too few seeds for an interval over pairs"): the
    C(n, 2) pairs of n seeds share networks, so they are not n(n − 1)/2 independent observations; the barriers
    are then reported descriptively. Old rules: every single barrier inside (10⁻³, ln 10); then a bootstrap
    over the pairs as if independent, against the fixed 10⁻³.
    """
    from ..stats import SMALL_SAMPLE

    raw = barrier_table(barriers) if "losses" in barriers else barriers[barriers["variant"] == "raw"]
    labels = [label for label in ARCHITECTURES if label in set(raw["architecture"])]
    if not labels:
        return not_testable("no raw barriers")
    counts = {label: len(set(g["seed a"]) | set(g["seed b"])) for label, g in raw.groupby("architecture")}
    if min(counts.values()) < SMALL_SAMPLE:
        return not_testable(f"too few seeds for an interval over pairs ({min(counts.values())} seeds, fewer than "
                            f"{SMALL_SAMPLE})")  # fmt: skip
    kw = {"level": family_level(LEVEL, 2 * len(labels)), "n_resamples": n_resamples, "seed": seed}
    parts = {}
    for label in labels:
        pairs = raw[raw["architecture"] == label]
        parts[f"{label} distinct"] = decide(pair_bootstrap_ci(pairs, "relative barrier", **kw), +1,
                                            RELATIVE_BARRIER, "mean relative barrier")  # fmt: skip
        parts[f"{label} nearby"] = decide(pair_bootstrap_ci(pairs, "peak loss", **kw), -1, math.log(NUM_CLASSES),
                                          "mean peak loss", null_name="ln C")  # fmt: skip
    return combine(parts, rule="conjunction")


def verdicts(
    training, curvature, rugged, barriers, *, n_resamples: int = 2000, seed: int = 0
) -> dict[int, Verdict]:
    """The six claims' verdicts, numbered as in the chapter."""
    kw = {"n_resamples": n_resamples, "seed": seed}
    return {
        1: verdict_mlp_smoother(rugged, training, **kw),
        2: verdict_resnet_skips(curvature, rugged, training, **kw),
        3: verdict_transformer(curvature, rugged, training, **kw),
        4: verdict_mlp_repeated_top(curvature, **kw),
        5: verdict_trace_grows_with_dimension(curvature, training, **kw),
        6: verdict_barriers_moderate(barriers, **kw),
    }


def verdict_table(results: Mapping[int, Verdict]) -> pd.DataFrame:
    """The verdicts as a table (claim number → outcome, reason)."""
    return pd.DataFrame({"verdict": {i: v.outcome for i, v in results.items()},
                         "reason": {i: v.reason for i, v in results.items()}}).rename_axis("claim")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _colors() -> dict[str, str]:
    import matplotlib.pyplot as plt

    return dict(zip(ARCHITECTURES, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))


def _labels(frame: pd.DataFrame) -> list[str]:
    present = set(frame["architecture"])
    return [label for label in ARCHITECTURES if label in present]


def plot_spectra(curvature: pd.DataFrame):
    """Top eigenvalues relative to λ1 (mean, band = min–max over seeds) and the smoothed SLQ density on the scale
    of λmax (one curve per seed), per architecture."""
    import matplotlib.pyplot as plt
    import torch

    from ...density import gaussian_smoothing

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors, grid = _colors(), torch.linspace(-0.3, 1.05, 600, dtype=torch.float64)
    for label in _labels(curvature):
        rows = curvature[curvature["architecture"] == label]
        tops = np.array(rows["top_eigenvalues"].tolist())
        normalised, index = tops / tops[:, :1], np.arange(1, tops.shape[1] + 1)
        axes[0].plot(index, normalised.mean(0), marker="o", ms=3, color=colors[label], label=label)
        axes[0].fill_between(index, normalised.min(0), normalised.max(0), color=colors[label], alpha=0.2)
        for i, (_, p) in enumerate(rows.iterrows()):
            nodes = torch.tensor(p["density_nodes"], dtype=torch.float64) / p["lambda_max"]
            density = gaussian_smoothing(nodes, torch.tensor(p["density_weights"], dtype=torch.float64), grid,
                                         sigma=0.02)  # fmt: skip
            axes[1].semilogy(grid, density.clamp(min=1e-6), color=colors[label], alpha=0.7,
                             label=label if i == 0 else None)  # fmt: skip
    axes[0].axvline(NUM_CLASSES + 0.5, color="grey", ls=":", lw=1)
    axes[0].text(NUM_CLASSES + 0.7, 0.95, f"C = {NUM_CLASSES}", color="grey", fontsize=9, va="top")
    axes[0].set(xlabel="index i", ylabel=r"$\lambda_i / \lambda_1$", yscale="log",
                title="top eigenvalues (mean, band = min–max over seeds)")  # fmt: skip
    axes[1].set(xlabel=r"$\lambda / \lambda_{\max}$", ylabel="density (smoothed, σ = 0.02)", ylim=(1e-5, None),
                title="SLQ spectral density, one curve per seed")  # fmt: skip
    axes[0].legend()
    return fig


def plot_slices(slices: pd.DataFrame):
    """1-D slices on the wide window (one curve per seed, log scale) with their quadratic models (dotted): random
    direction (top row) and top eigenvector (bottom row), one column per architecture."""
    import matplotlib.pyplot as plt

    labels, colors = _labels(slices), _colors()
    fig, axes = plt.subplots(2, len(labels), figsize=(12, 5.5), sharex=True, squeeze=False)
    wide = slices[slices["window"] == "wide"]
    for col, label in enumerate(labels):
        for row, name in enumerate(("random", "eigen")):
            ax, curves = axes[row, col], wide[(wide["architecture"] == label) & (wide["direction"] == name)]
            for _, v in curves.iterrows():
                ax.plot(v["alphas"], v["losses"], color=colors[label], alpha=0.8)
                ax.plot(v["alphas"], v["quadratic"], color="k", ls=":", lw=0.8)
            ax.set(
                yscale="log", title=f"{label}\n{'random (filter-norm.)' if row == 0 else 'top eigenvector'}"
            )
            ax.set_ylim(top=10 * max(max(v) for v in curves["losses"]))
            if row == 1:
                ax.set_xlabel(r"$\alpha$")
        axes[0, 0].set_ylabel("loss")
        axes[1, 0].set_ylabel("loss")
    return fig


def plot_planes(planes: pd.DataFrame):
    """Filled loss contours of each architecture's 2-D slice on one shared set of log-spaced levels (one
    colourbar for all panels, so colours compare across architectures), the trained network at the centre (+)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, len(planes), figsize=(12, 3.4), squeeze=False)
    every = np.concatenate([np.ravel(p) for p in planes["losses"]])
    low, high = max(float(every.min()), 1e-4), float(every.max())
    levels = np.logspace(np.log10(low), np.log10(high), 16)
    norm = LogNorm(vmin=low, vmax=high)
    image = None
    for ax, (_, p) in zip(axes[0], planes.iterrows(), strict=True):
        losses, grid = np.clip(np.array(p["losses"]), low, high), np.array(p["grid"])
        image = ax.contourf(grid, grid, losses.T, levels=levels, norm=norm, cmap="viridis")
        ax.contour(grid, grid, losses.T, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
        ax.plot(0, 0, "r+", ms=8)
        ax.set(title=p["architecture"], xlabel=r"$\alpha$", aspect="equal")
        ax.grid(False)
    axes[0, 0].set_ylabel(r"$\beta$")
    bar = fig.colorbar(image, ax=axes[0].tolist(), label="training loss (shared log levels)", shrink=0.9,
                       ticks=levels[::3], format="%.3g")  # fmt: skip
    bar.minorticks_off()
    return fig


def _seed_bars(ax, positions, groups: Sequence[np.ndarray], **bar):
    """Bars at the seeds' central value with `seed_interval` error bars (never below zero for a positive
    quantity, unlike mean ± sd)."""
    intervals = [seed_interval(g) for g in groups]
    centre = np.array([i.estimate for i in intervals])
    low = np.array([i.low if np.isfinite(i.low) else i.estimate for i in intervals])
    high = np.array([i.high if np.isfinite(i.high) else i.estimate for i in intervals])
    ax.bar(positions, centre, yerr=[centre - low, high - centre], capsize=3, **bar)


def plot_barriers(barriers: pd.DataFrame):
    """The training loss on the line between seeds (dashed: MLP after alignment) and the barrier heights (mean ±
    std over seed pairs)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colors, labelled = _colors(), set()
    for _, v in barriers.iterrows():
        name = f"{v['architecture']}{' (aligned)' if v['variant'] == 'aligned' else ''}"
        axes[0].plot(v["alphas"], v["losses"], color=colors[v["architecture"]],
                     ls="-" if v["variant"] == "raw" else "--", label=None if name in labelled else name)  # fmt: skip
        labelled.add(name)
    axes[0].set(
        xlabel=r"$\alpha$", ylabel="training loss", yscale="log", title="loss on the line between seeds"
    )
    axes[0].legend()
    groups = barriers.groupby(["architecture", "variant"], sort=False)["loss barrier"]
    keys = list(groups.groups)
    names = [a.replace(", ", "\n") + ("\n(aligned)" if v == "aligned" else "") for a, v in keys]
    _seed_bars(axes[1], range(len(keys)), [groups.get_group(k).to_numpy(float) for k in keys],
               color=[colors[a] for a, _ in keys])  # fmt: skip
    axes[1].set_xticks(range(len(keys)), names, fontsize=9)
    raw = barriers[barriers["variant"] == "raw"]
    pairs = int(raw.groupby("architecture").size().max()) if len(raw) else 0
    axes[1].set(ylabel="loss barrier height", title=f"95 % interval over {pairs} seed pairs")
    return fig


def plot_ruggedness(rugged: pd.DataFrame):
    """Ruggedness per architecture (geometric mean over seeds with its 95 % interval, `seed_interval`; log axis,
    the values span decades), random direction dark and top eigenvector light, on the wide (left) and local
    (right) windows."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    colors, width = _colors(), 0.38
    grouped, labels = rugged.groupby("architecture"), _labels(rugged)
    for ax, window, title in zip(axes, ("r=1", "local"), ("window r = 1", f"local window r = {LOCAL_RADIUS}"),
                                 strict=True):  # fmt: skip
        for j, (name, shift) in enumerate((("random", -width / 2), ("eigenvector", width / 2))):
            col = f"R {name}, {window}"
            values = [grouped.get_group(label)[col].dropna().to_numpy(float) for label in labels]
            _seed_bars(ax, np.arange(len(labels)) + shift, values, width=width, label=name,
                       color=[colors[label] for label in labels], alpha=1.0 if j == 0 else 0.5, edgecolor="k",
                       linewidth=0.5)  # fmt: skip
        ax.set_xticks(range(len(labels)), [a.replace(", ", "\n") for a in labels], fontsize=9)
        ax.set(ylabel=r"ruggedness $TV(f-q)/TV(f)$", title=title, yscale="log")
    axes[0].legend(title="dark: random, light: top eigenvector", title_fontsize=9)
    return fig
