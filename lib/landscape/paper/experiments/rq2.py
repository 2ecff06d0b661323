"""RQ2 — how does architecture shape the landscape?

Six architectures (an MLP, ResNet-10 and ResNet-18 each with a twin without skip connections, a tiny
Transformer) are trained on MNIST-1D with one recipe (Adam, one step size, one batch size, no weight decay or
schedule) and stopped by one rule: at the first evaluation whose full training cross-entropy is at most
`Sizes.target_loss`, so every comparison is between networks at the same training loss trained the same way,
and "architecture" means the architecture alone. Runs that never reach the target within `Sizes.max_steps` are
counted and reported, and left out of the measurements. Every network that reached it is probed: its curvature
profile (`landscape.geometry.measure_curvature`), the roughness of 1-D slices along `Sizes.directions` random
directions and along its top eigenvector on two curvature-scaled windows (`landscape.ruggedness`), a 2-D
slice (first seed), and the interpolation barriers between its seeds. A second population, the first
`Sizes.class_seeds` seeds of each architecture stopped by the same recipe at the moderate loss
`Sizes.moderate_loss`, carries Papyan's class-mean decomposition of the Gauss–Newton matrix
(`landscape.hierarchy`), which near zero loss has nothing left to measure. The founding write-up's six claims
about architectures, Li et al.'s (2018) depth-dependent effect of removing skips and Papyan's (2019) class-mean
outliers are decided by the verdict functions at the end.

Pieces, in the order the chapter uses them:

- `Sizes` and `PROFILES`: every size and budget of the chapter per profile.
- Experiments: `train_networks` (every network one task of `run_sweep`) and `measure_networks` (every
  per-network measurement one task of a `run_cached` sweep of `rq2_tasks.measure_task`, cached under the code
  of `rq2_tasks` only, so editing a summary, figure or verdict here recomputes nothing). Both return raw
  DataFrames.
- Summaries: `recipe_table`, `per_run_curvature`, `roughness_table` (their intervals over seeds:
  `landscape.paper.tables.interval_summary`), and the numbers the text glues (`settings_numbers`,
  `training_numbers`, `curvature_numbers`, `roughness_numbers`, `barrier_numbers`), `barrier_table`.
- Verdicts: `verdict_mlp_smoother`, `verdict_resnet_skips`, `verdict_transformer`, `verdict_mlp_repeated_top`,
  `verdict_trace_grows_with_dimension`, `verdict_barriers_moderate`, `verdict_skips_matter_more_when_deeper`,
  `verdict_class_outliers`, each a `landscape.paper.verdicts.Verdict`.
- Figures: `plot_spectra`, `plot_slices`, `plot_planes`, `plot_barriers`, `plot_roughness`, `plot_classes`.

How comparisons are made. A claim that one architecture has more of a quantity than another is the ratio of
the two over seeds with an interval (`landscape.paper.stats.ratio_ci`) against 1. A ResNet and its twin are
paired by seed (same seed: same initialisation stream and data order, the twin only lacks the shortcuts; the
geometric mean of the paired ratios); other architectures share nothing but the seed number and are compared
unpaired (below 10 seeds the ratio of geometric means). The stop rule matches training losses by design; the
check stays: two architectures are compared only when the interval of the ratio of their training losses lies
inside [1/`LOSS_MATCH_FACTOR`, `LOSS_MATCH_FACTOR`] = [0.8, 1.25]; otherwise the comparison is not testable
here. A claim with k parts is decided by `landscape.paper.verdicts.combine` (``rule="conjunction"``: one
refuted part refutes it) on parts whose intervals are made at `family_level`(0.95, k).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..glue import MISSING, format_estimate, format_number, plural
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
    "CLASS_COLUMNS",
    "CLASS_FRACTIONS",
    "CLASS_OVERLAP",
    "GAP_EQUIVALENCE",
    "KEYS",
    "LOSS_MATCH_FACTOR",
    "PROFILES",
    "RELATIVE_BARRIER",
    "RESOLUTION",
    "Sizes",
    "barrier_numbers",
    "barrier_table",
    "class_numbers",
    "class_table",
    "compare",
    "configs",
    "curvature_numbers",
    "decide",
    "largest_ratio",
    "loss_confound",
    "measure_networks",
    "measurement_tasks",
    "moderate_configs",
    "pair_bootstrap_ci",
    "per_run_curvature",
    "plot_barriers",
    "plot_classes",
    "plot_planes",
    "plot_roughness",
    "plot_slices",
    "plot_spectra",
    "ratio_interval",
    "recipe",
    "recipe_table",
    "roughness_numbers",
    "roughness_table",
    "save_table",
    "settings_numbers",
    "trace_dimension_correlation",
    "train_networks",
    "training_numbers",
    "verdict_barriers_moderate",
    "verdict_class_outliers",
    "verdict_mlp_repeated_top",
    "verdict_mlp_smoother",
    "verdict_resnet_skips",
    "verdict_skips_matter_more_when_deeper",
    "verdict_table",
    "verdict_trace_grows_with_dimension",
    "verdict_transformer",
    "verdicts",
]

MLP, TRANSFORMER = "MLP", "Transformer"
RESNET10, NOSKIP10 = "ResNet-10", "ResNet-10, no skips"
RESNET, NOSKIP = "ResNet-18", "ResNet-18, no skips"
_RESNET = {"width_multiplier": 0.25, "norm": "group"}  # GroupNorm: per-sample, vmappable, no batch statistics
ARCHITECTURES = {  # label: (model, model_config); the training recipe is the same for all (`recipe`)
    MLP: ("mlp", {"depth": 2, "width": 100, "activation": "relu"}),
    RESNET10: ("resnet18", {**_RESNET, "blocks": 1}),
    NOSKIP10: ("resnet18", {**_RESNET, "blocks": 1, "skip": False}),
    RESNET: ("resnet18", _RESNET),
    NOSKIP: ("resnet18", {**_RESNET, "skip": False}),
    TRANSFORMER: ("transformer", {"patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "pooling": "mean"}),
}
KEYS = {MLP: "mlp", RESNET10: "resnet10", NOSKIP10: "noskip10", RESNET: "resnet", NOSKIP: "noskip",
        TRANSFORMER: "transformer"}  # glue-key stems  # fmt: skip
TWINS = {RESNET10: NOSKIP10, RESNET: NOSKIP}  # with skips → without, paired by seed
PAIRED = frozenset(frozenset(pair) for pair in TWINS.items())  # architecture pairs whose runs pair by seed
ADAPTIVE_RADIUS, WINDOWS, PLANE_RADIUS = tasks.ADAPTIVE_RADIUS, tasks.WINDOWS, tasks.PLANE_RADIUS
NUM_CLASSES = 10  # MNIST-1D; Papyan's picture predicts C outliers
# training losses are matched when their ratio's interval lies inside [1/1.25, 1.25] = [0.8, 1.25]: a factor 2
# would be as large as the effects compared
LOSS_MATCH_FACTOR = 1.25
GAP_EQUIVALENCE = 1e-3  # claim 4: λ1 and λ2 "repeated" when they agree to 0.1 % of λ1
RESOLUTION = 0.1  # claim 4: the residuals resolve the gap when (r1 + r2)/λ1 ≤ 0.1·GAP_EQUIVALENCE
RELATIVE_BARRIER = 1.0  # claim 6: "distinct" basins when the barrier exceeds the end points' mean loss
# claim 8: the top-C Gauss–Newton eigenvectors "come from the class means" when, on average, more than half of
# each one's squared norm lies in the span of the C class means (a random direction has C / D of it)
CLASS_OVERLAP = 0.5


@dataclass(frozen=True)
class Sizes:
    """Sizes and budgets of the chapter for one profile."""

    seeds: tuple[int, ...]  # training seeds of every architecture
    barrier_seeds: tuple[int, ...] = ()  # more seeds, trained by the same recipe for the barriers only
    target_loss: float = 0.05  # the stop rule: training cross-entropy at most this
    max_steps: int = 8000  # a run that has not reached the target by then is "never reached"
    eval_every: int = 50  # evaluations of the full training loss ...
    stop_refine: float = 2.0  # ... and below this × the target (or moderate_loss), a stop check at every step
    lr: float = 1e-3  # Adam's step size, for every architecture
    batch_size: int = 128
    model_overrides: Mapping[str, Mapping] = field(
        default_factory=dict
    )  # model name → model_config overrides
    eval_samples: int = 1000  # first training samples on which barriers are evaluated
    hessian_samples: int = 256  # first training samples of every curvature probe and slice (≤ eval_samples)
    k: int = 20  # top eigenvalues by block Lanczos (block size 2)
    tol: float = 1e-3  # relative Lanczos tolerance
    trace_matvecs: int = 40  # Hutchinson probes of tr(H)
    slq_probes: int = 2  # SLQ probe vectors
    slq_steps: int = 40  # SLQ Lanczos steps per probe
    adaptive_steps: int = 10  # projected-ascent steps of the adaptive sharpness
    directions: int = 10  # random directions per network for the roughness
    slice_points: int = 41  # points of each 1-D slice
    grid_points: int = 21  # points per axis of the 2-D slice
    barrier_points: int = 21  # points on the line between two seeds
    moderate_loss: float = 0.5  # the class-structure population stops at this training loss ...
    class_seeds: int = 3  # ... for the first this many seeds of every architecture ...
    class_eval_every: int = 10  # ... checked this often (fast-training ResNets pass 0.5 within 50 steps)
    n_resamples: int = 2000  # bootstrap resamples of every interval
    workers: int | None = None  # Dask worker processes (None: one per core; 1: in this process)
    threads: int | None = 1  # torch threads per task (None: leave the process's setting)

    def __post_init__(self) -> None:
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds!r}")
        if len(set(self.seeds) | set(self.barrier_seeds)) != len(self.seeds) + len(self.barrier_seeds):
            raise ValueError(f"barrier_seeds must be distinct and not in seeds, got {self.barrier_seeds!r}")
        if self.hessian_samples > self.eval_samples:
            raise ValueError(
                f"hessian_samples ({self.hessian_samples}) must not exceed eval_samples ({self.eval_samples})"
            )
        if not (isinstance(self.target_loss, (int, float)) and self.target_loss > 0):
            raise ValueError(f"target_loss must be a positive number, got {self.target_loss!r}")
        if not self.moderate_loss > self.target_loss:
            raise ValueError(
                f"moderate_loss ({self.moderate_loss!r}) must be above target_loss ({self.target_loss!r})"
            )
        if not isinstance(self.class_seeds, int) or not 1 <= self.class_seeds <= len(self.seeds):
            raise ValueError(f"class_seeds must be between 1 and {len(self.seeds)}, got {self.class_seeds!r}")
        if not isinstance(self.directions, int) or self.directions < 1:
            raise ValueError(f"directions must be a positive integer, got {self.directions!r}")
        unknown = set(self.model_overrides) - {name for name, _ in ARCHITECTURES.values()}
        if unknown:
            raise ValueError(f"overrides for unknown models {sorted(unknown)}")


PROFILES = {
    # the smoke profile shrinks every model and the target; the paper profile trains the architectures as listed
    "smoke": Sizes(
        seeds=(0, 1, 2), barrier_seeds=(3,), target_loss=1.5, max_steps=300, eval_every=50, stop_refine=1.2, lr=3e-3,
        model_overrides={
            "mlp": {"width": 16},
            "resnet18": {"width_multiplier": 0.0625},
            "transformer": {"patch_size": 8, "dim": 16, "depth": 1, "heads": 2},
        },
        eval_samples=128, hessian_samples=64, k=6, tol=1e-2, trace_matvecs=8, slq_probes=2, slq_steps=12,
        adaptive_steps=3, directions=1, slice_points=11, grid_points=5, barrier_points=5, moderate_loss=2.0,
        class_seeds=2, class_eval_every=10, n_resamples=500, workers=1, threads=1,
    ),
    "paper": Sizes(
        # checked every 50 steps, ResNets that reach the target in ~300 steps stopped at losses down to 0.022 (the
        # MLP at 0.047-0.050), and every 10 steps at 0.034-0.050: no pair of architectures matched; below twice the
        # target the loss is now checked at every step
        # 10 seeds for the barriers: the seed bootstrap of pairs needs SMALL_SAMPLE = 10
        seeds=(0, 1, 2, 3, 4, 5), barrier_seeds=(6, 7, 8, 9), eval_every=10, eval_samples=1000, hessian_samples=256, k=20, tol=1e-3, trace_matvecs=40,
        slq_probes=4, slq_steps=40, adaptive_steps=10, directions=10, slice_points=41, grid_points=21,
        barrier_points=21, n_resamples=2000, workers=None, threads=1,  # a second thread per task helps little
    ),
    "full": Sizes(
        seeds=tuple(range(10)), barrier_seeds=(10, 11), eval_every=10, eval_samples=4000, hessian_samples=2000, k=30, tol=1e-4, trace_matvecs=100,
        slq_probes=8, slq_steps=80, adaptive_steps=20, directions=20, slice_points=61, grid_points=41,
        barrier_points=41, n_resamples=10000, workers=4, threads=None,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Training


def recipe(label: str, seed: int, sizes: Sizes, *, moderate: bool = False):
    """The `TrainConfig` of architecture `label` with `seed`: the chapter's one recipe (Adam at `sizes.lr`,
    batch `sizes.batch_size`, constant step, no weight decay, stopped at `sizes.target_loss` or after
    `sizes.max_steps`, the loss checked at every step below `sizes.stop_refine` × the target) on the
    architecture's model, with the profile's model overrides. With `moderate`, the same recipe stopped at
    `sizes.moderate_loss`, evaluated every `sizes.class_eval_every` steps."""
    from ...train import TrainConfig

    if label not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {label!r}; expected one of {list(ARCHITECTURES)}")
    model, config = ARCHITECTURES[label]
    return TrainConfig(
        model=model, model_config={**config, **sizes.model_overrides.get(model, {})}, optimizer="adam",
        lr=sizes.lr, batch_size=sizes.batch_size, steps=sizes.max_steps,
        eval_every=sizes.class_eval_every if moderate else sizes.eval_every,
        stop_loss=sizes.moderate_loss if moderate else sizes.target_loss, stop_refine=sizes.stop_refine, seed=seed,
    )  # fmt: skip


def configs(sizes: Sizes) -> dict[tuple[str, int], object]:
    """{(architecture, seed): TrainConfig} for every network of the chapter, architectures in `ARCHITECTURES`
    order."""
    return {(label, s): recipe(label, s, sizes) for label in ARCHITECTURES for s in sizes.seeds}


def moderate_configs(sizes: Sizes) -> dict[tuple[str, int], object]:
    """{(architecture, seed): TrainConfig} of the class-structure population: the first `sizes.class_seeds`
    seeds of every architecture, the recipe stopped at `sizes.moderate_loss` (`recipe` with ``moderate``)."""
    seeds = sizes.seeds[: sizes.class_seeds]
    return {(label, s): recipe(label, s, sizes, moderate=True) for label in ARCHITECTURES for s in seeds}


def barrier_configs(sizes: Sizes) -> dict[tuple[str, int], object]:
    """{(architecture, seed): TrainConfig} of the extra barrier seeds (`Sizes.barrier_seeds`), the chapter's
    recipe: with `configs`, the barrier population."""
    return {(label, s): recipe(label, s, sizes) for label in ARCHITECTURES for s in sizes.barrier_seeds}


def train_networks(
    sizes: Sizes,
    *,
    root=None,
    data=None,
    progress: bool = False,
    moderate: bool = False,
    barrier: bool = False,
) -> pd.DataFrame:
    """Train (or load from the run store) every network of the chapter (with `moderate`: of the class-structure
    population, `moderate_configs`; with `barrier`: the extra barrier seeds, `barrier_configs`), each a task of
    `landscape.results.run_sweep` on `sizes.workers` Dask workers (not vectorised over seeds: each run stops at
    its own step).

    Returns:
        One row per network: architecture, seed, key, status ("reached"; "finished": never reached the
        target within `Sizes.max_steps`; "diverged"), steps (to the target, or run), train loss, train acc, test acc, D (parameters),
        wall time (seconds of training when it was trained).
    """
    from ...data import load_dataset
    from ...results import load_run, run_key, run_sweep

    if moderate and barrier:
        raise ValueError("train one population at a time: moderate or barrier, not both")
    data = data if data is not None else load_dataset("mnist1d")
    wanted = moderate_configs(sizes) if moderate else barrier_configs(sizes) if barrier else configs(sizes)
    if not wanted:
        return pd.DataFrame(columns=["architecture", "seed", "key", "status", "steps", "train loss", "train acc",
                                     "test acc", "D", "wall time"])  # fmt: skip
    run_sweep(list(wanted.values()), root=root, workers=sizes.workers, threads=sizes.threads,
              data={"mnist1d": data}, group_seeds=False, progress=progress)  # fmt: skip
    rows = []
    for (label, s), c in wanted.items():
        r = load_run(run_key(c, data), root)
        steps = r.reached_step if r.reached_step is not None else r.history[-1]["step"]
        rows.append({
            "architecture": label, "seed": s, "key": r.key, "status": r.status, "steps": int(steps),
            "train loss": r.final["train_loss"], "train acc": r.final["train_acc"], "test acc": r.final["test_acc"],
            "D": r.num_parameters, "wall time": r.wall_time,
        })  # fmt: skip
    return pd.DataFrame(rows)


def reached(training: pd.DataFrame) -> pd.DataFrame:
    """The runs that reached the target loss (the only ones measured and compared)."""
    return training[training["status"] == "reached"].reset_index(drop=True)


def recipe_table(sizes: Sizes, training: pd.DataFrame) -> pd.DataFrame:
    """Each architecture's model and options with its parameter count, indexed by architecture (the training
    recipe is the same for all: `settings_numbers`)."""
    rows = []
    for label in ARCHITECTURES:
        c = recipe(label, sizes.seeds[0], sizes)
        first = training[training["architecture"] == label]
        rows.append({
            "architecture": label, "parameters D": int(first["D"].iloc[0]), "model": c.model,
            "options": ", ".join(f"{k}={v}" for k, v in c.model_config.items()),
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
        return {**common, "points": sizes.slice_points, "windows": tasks.WINDOWS, "directions": sizes.directions,
                "hessian_samples": sizes.hessian_samples, "tol": sizes.tol}  # fmt: skip
    if kind == "plane":
        return {**common, "grid": sizes.grid_points, "radius": tasks.PLANE_RADIUS,
                "hessian_samples": sizes.hessian_samples}  # fmt: skip
    if kind == "classes":
        return {**common, "k": max(sizes.k, NUM_CLASSES + 1), "tol": sizes.tol,
                "trace_matvecs": sizes.trace_matvecs, "hessian_samples": sizes.hessian_samples}  # fmt: skip
    return {**common, "points": sizes.barrier_points, "eval_samples": sizes.eval_samples,
            "aligned": architecture == MLP}  # fmt: skip


def measurement_tasks(
    training: pd.DataFrame,
    sizes: Sizes,
    *,
    root=None,
    seed: int = 0,
    moderate: pd.DataFrame | None = None,
    barrier: pd.DataFrame | None = None,
) -> list[MeasurementTask]:
    """Every measurement of the chapter as a task, for the networks that reached the target loss (`reached`):
    curvature and slices of each, the 2-D slice of each architecture's first such seed, the barrier of each pair
    of its seeds (with `barrier`, `train_networks` with ``barrier``: of its seeds and those); with `moderate`
    (`train_networks` with ``moderate``), the class structure of each of its networks that reached the moderate
    loss. Costliest kinds first. A run store `root` other than the default is made absolute (workers may run
    elsewhere)."""
    by_kind = {kind: [] for kind in ("curvature", "barrier", "classes", "slices", "plane")}
    root = None if root is None else str(Path(root).resolve())
    done = reached(training)
    pairable = done if barrier is None or not len(barrier) else pd.concat([done, reached(barrier)])
    if moderate is not None:
        for row in reached(moderate).sort_values(["architecture", "seed"], kind="stable").itertuples():
            settings = _task_settings("classes", row.architecture, [row.key], sizes, root, seed)
            by_kind["classes"].append(MeasurementTask(row.architecture, (int(row.seed),), settings))
    for label in ARCHITECTURES:
        rows = done[done["architecture"] == label].sort_values("seed")
        seeds, keys = rows["seed"].tolist(), rows["key"].tolist()

        def task(kind, idx, label=label, seeds=seeds, keys=keys):
            settings = _task_settings(kind, label, [keys[i] for i in idx], sizes, root, seed)
            return MeasurementTask(label, tuple(seeds[i] for i in idx), settings)

        for i in range(len(seeds)):
            by_kind["curvature"].append(task("curvature", (i,)))
            by_kind["slices"].append(task("slices", (i,)))
        if seeds:
            by_kind["plane"].append(task("plane", (0,)))
        pool = pairable[pairable["architecture"] == label].sort_values("seed")
        pool_seeds, pool_keys = pool["seed"].tolist(), pool["key"].tolist()
        by_kind["barrier"] += [
            task("barrier", (i, j), seeds=pool_seeds, keys=pool_keys)
            for i, j in itertools.combinations(range(len(pool_seeds)), 2)
        ]
    return [t for kind in by_kind.values() for t in kind]


def measure_networks(
    training: pd.DataFrame,
    sizes: Sizes,
    cache,
    *,
    root=None,
    seed: int = 0,
    progress: bool = False,
    moderate: pd.DataFrame | None = None,
    barrier: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Every per-network measurement (`measurement_tasks`) as one `run_cached` sweep of
    `rq2_tasks.measure_task` on `sizes.workers` Dask workers (`sizes.threads` torch threads each), each task
    cached under `cache` with `rq2_tasks.DEPENDS_ON` as its code.

    Returns:
        Raw tables (list-valued columns hold curves):

        - ``"curvature"``: one row per network: architecture, seed, every `CurvatureProfile` field (``num_params``
          as D) and the derived columns of `_curvature_row`.
        - ``"slices"``: one row per network, direction ("eigen", "random 0", …) and window: kind (eigen or
          random), roughness, local_minima, curvature dᵀHd, radius a, alphas, losses, smooth.
        - ``"planes"``: one row per architecture (first seed): grid, losses (grid × grid).
        - ``"barriers"``: one row per pair of seeds and variant (raw; aligned for the MLP): loss barrier, error
          barrier, alphas, losses.
        - ``"classes"`` (with `moderate`): one row per network of the moderate population: architecture, seed,
          train loss, and the fields of the ``"classes"`` measurement of `rq2_tasks.measure_task`.

        With `barrier` (`train_networks` with ``barrier``), the barriers are those of every pair of the
        barrier population (`measurement_tasks`).
    """
    from .common import run_cached

    wanted = measurement_tasks(training, sizes, root=root, seed=seed, moderate=moderate, barrier=barrier)
    results = run_cached(tasks.measure_task, [t.settings for t in wanted], cache=cache, depends_on=tasks.DEPENDS_ON,
                         workers=sizes.workers, threads=sizes.threads, desc="rq2 measurements",
                         progress=progress)  # fmt: skip
    rows = {"curvature": [], "slices": [], "planes": [], "barriers": [], "classes": []}
    moderate_loss = (
        {} if moderate is None else dict(zip(moderate["key"], moderate["train loss"], strict=True))
    )
    for t, r in zip(wanted, results, strict=True):
        base = {"architecture": t.architecture, "seed": t.seeds[0]}
        if t.kind == "curvature":
            rows["curvature"].append({**base, **_curvature_row(r)})
        elif t.kind == "slices":
            rows["slices"] += [{**base, **v} for v in r["slices"]]
        elif t.kind == "plane":
            rows["planes"].append({**base, **r})
        elif t.kind == "classes":
            rows["classes"].append({**base, "train loss": moderate_loss[t.settings["runs"][0]], **r})
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
    """A `CurvatureProfile` with derived columns: ``lambda_min_low``/``lambda_min_high`` (λmin ∈ [θ − r, θ]:
    θ is a Rayleigh quotient, an eigenvalue lies within r of it), ``convexity_low``/``convexity_high`` (the
    interval of |λmin|/λmax that the residuals allow), ``largest_ratio`` and ``largest_ratio_at`` (the largest
    λi/λi+1 of the positive top eigenvalues and its i), ``relative_gap`` = (λ1 − λ2)/λ1, ``gap_margin`` =
    (λ1 − λ2 − r1 − r2)/λ1 (> 0: two distinct eigenvalues, and with block size 2 a simple λ1), ``gap_bound`` =
    (λ1 − λ2 + r1 + r2)/λ1 (the largest relative gap the residuals allow), ``top_residuals`` = (r1 + r2)/λ1 and
    ``max_relative_residual``."""
    top, res, lmax = p["top_eigenvalues"], p["residuals"], p["lambda_max"]
    ratio, at = largest_ratio(top)
    row = {
        "D": p["num_params"],
        **{k: v for k, v in p.items() if k not in ("num_params", "convexity_interval")},
    }
    return {
        **row,
        "lambda_min_low": p["lambda_min"] - p["lambda_min_residual"],
        "lambda_min_high": p["lambda_min"],
        "convexity_low": p["convexity_interval"][0],
        "convexity_high": p["convexity_interval"][1],
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
    "λmax": "lambda_max", "tr(H)/D": "trace_per_param", "negative mass": "negative_mass",
    "outliers": "num_outliers", "normalised sharpness": "normalized_sharpness",
    "adaptive sharpness": "adaptive_sharpness",
}  # fmt: skip
PER_RUN_COLUMNS = {  # display name: column of the curvature table (per-run view)
    "D": "D", **CURVATURE_COLUMNS, "tr(H)": "trace", "λmin ≤": "lambda_min_high", "λmin ≥": "lambda_min_low",
    "λmin converged": "lambda_min_converged", "|λmin|/λmax ≥": "convexity_low", "|λmin|/λmax ≤": "convexity_high",
    "negative mass s.e.": "negative_mass_stderr", "largest λi/λi+1": "largest_ratio", "at i": "largest_ratio_at",
    "λ1 simple (certified)": "top_gap_certified", "max residual / λmax": "max_relative_residual",
}  # fmt: skip
ROUGH_COLUMNS = {  # column of `roughness_table`: (kind, window, field, how over a network's directions)
    "ρ random, local": ("random", "local", "roughness", "median"),
    "ρ random, wide": ("random", "wide", "roughness", "median"),
    "ρ eigenvector, local": ("eigen", "local", "roughness", "median"),
    "ρ eigenvector, wide": ("eigen", "wide", "roughness", "median"),
    "minima random, wide": ("random", "wide", "local_minima", "mean"),
    "minima eigenvector, wide": ("eigen", "wide", "local_minima", "mean"),
}


def per_run_curvature(curvature: pd.DataFrame) -> pd.DataFrame:
    """The curvature table's scalar columns under their display names, one row per network."""
    return curvature[["architecture", "seed", *PER_RUN_COLUMNS.values()]].set_axis(
        ["architecture", "seed", *PER_RUN_COLUMNS], axis=1
    )


def roughness_table(slices: pd.DataFrame) -> pd.DataFrame:
    """One row per network (architecture, seed) with the columns of `ROUGH_COLUMNS`: the median roughness over
    the network's random directions (one value for its eigenvector) per window, and the mean count of local
    minima."""
    rows = []
    for (label, s), group in slices.groupby(["architecture", "seed"], sort=False):
        row = {"architecture": label, "seed": s}
        for col, (kind, window, value, how) in ROUGH_COLUMNS.items():
            cell = group[(group["kind"] == kind) & (group["window"] == window)][value]
            row[col] = float(cell.agg(how)) if len(cell) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _per_architecture(frame: pd.DataFrame, column: str, how: str) -> dict[str, float]:
    return frame.groupby("architecture", sort=False)[column].agg(how).to_dict()


def _centre(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """Per architecture, the `seed_interval` centre of `column` (the geometric mean of positive values)."""
    return {label: seed_interval(g[column].to_numpy(float)).estimate
            for label, g in frame.groupby("architecture", sort=False)}  # fmt: skip


def settings_numbers(sizes: Sizes, profile: str, num_train: int) -> dict:
    """The chapter's settings as glue values."""
    return {
        "profile": profile, "num_seeds": len(sizes.seeds), "seed_list": ", ".join(map(str, sizes.seeds)),
        "barrier_seed_list": ", ".join(map(str, sizes.seeds + sizes.barrier_seeds)),
        "first_seed": sizes.seeds[0], "num_train": num_train, "hessian_samples": sizes.hessian_samples,
        "eval_samples": sizes.eval_samples, "k": sizes.k, "tol": sizes.tol, "trace_matvecs": sizes.trace_matvecs,
        "slq_probes": sizes.slq_probes, "slq_probes_text": plural(sizes.slq_probes, "probe"),
        "slq_steps": sizes.slq_steps, "adaptive_radius": ADAPTIVE_RADIUS, "target_loss": sizes.target_loss,
        "max_steps": sizes.max_steps, "eval_every": sizes.eval_every, "stop_refine": f"{sizes.stop_refine:g}",
        "lr": sizes.lr, "batch_size": sizes.batch_size,
        "directions": sizes.directions, "slice_points": sizes.slice_points, "grid_points": sizes.grid_points,
        "window_local": WINDOWS["local"], "window_wide": WINDOWS["wide"],
        "rise_local": WINDOWS["local"] ** 2 / 2, "rise_wide": WINDOWS["wide"] ** 2 / 2,
        "barrier_points": sizes.barrier_points, "num_pairs": math.comb(len(sizes.seeds) + len(sizes.barrier_seeds), 2),
        "loss_match_factor": LOSS_MATCH_FACTOR, "level_percent": round(100 * LEVEL),
        "num_architectures_trained": len(ARCHITECTURES),
    }  # fmt: skip


def training_numbers(training: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Glue values of the training table: per architecture the test accuracy (%, `seed_interval` over the
    networks that reached the target), D, the range of training losses and the median steps to the target;
    how many runs never reached it (``unreached``, with a text listing them); the accuracy drop without
    skips at each depth; the twin's training loss over its ResNet's (``loss_ratio_skip_ci``, paired, at depth
    18); and the training compute in minutes."""
    from ..stats import seed_interval as interval

    out = {}
    done = reached(training)
    for label, key in KEYS.items():
        rows = done[done["architecture"] == label]
        if not len(rows):  # no network of this architecture reached the target: every number is missing
            out |= {
                f"acc_{key}": math.nan,
                f"acc_{key}_ci": MISSING,
                f"dim_{key}": MISSING,
                f"steps_{key}": math.nan,
                f"train_loss_{key}_min": math.nan,
                f"train_loss_{key}_max": math.nan,
            }
            continue
        acc = interval(100 * rows["test acc"].to_numpy(float))
        out |= {
            f"acc_{key}": acc.estimate, f"acc_{key}_ci": format_estimate(acc),
            f"dim_{key}": int(rows["D"].iloc[0]), f"steps_{key}": float(rows["steps"].median()),
            f"train_loss_{key}_min": float(rows["train loss"].min()),
            f"train_loss_{key}_max": float(rows["train loss"].max()),
        }  # fmt: skip
    missing = training[training["status"] != "reached"]
    out["unreached"] = len(missing)
    out["unreached_text"] = (
        "every run reached it"
        if missing.empty
        else "; ".join(
            f"{a} seed {s} ({st})" for a, s, st in missing[["architecture", "seed", "status"]].values
        )
    )
    out["num_runs_trained"] = len(training)
    kw = {"n_resamples": n_resamples, "seed": seed}
    for skip, twin in TWINS.items():
        out[f"acc_drop_{KEYS[twin]}"] = out[f"acc_{KEYS[skip]}"] - out[f"acc_{KEYS[twin]}"]
    out["loss_ratio_skip_ci"] = MISSING
    if {RESNET, NOSKIP} <= set(done["architecture"]):
        out["loss_ratio_skip_ci"] = format_estimate(ratio_interval(done, "train loss", NOSKIP, RESNET, **kw))
    out["train_loss_min"], out["train_loss_max"] = (
        float(done["train loss"].min()),
        float(done["train loss"].max()),
    )
    out["training_minutes"] = float(training["wall time"].sum()) / 60
    return out


def curvature_numbers(curvature: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Glue values of the curvature table: per architecture the `seed_interval` centre of λmax, tr(H), tr(H)/D,
    the negative mass, normalised sharpness and outliers, and how many networks have λmin resolved; the factor
    between the largest and smallest tr(H)/D; the no-skip/skip ratios of λmax at both depths; the MLP's
    certified gaps, margin and gap bound with their intervals and largest (r1 + r2)/λ1; Spearman ρ between D
    and the mean trace with its interval and permutation p-values; and how many networks have their largest
    eigenvalue ratio at i = C."""
    from ..stats import bootstrap_ci

    out = {}
    names = {"lmax": "lambda_max", "trace": "trace", "trace_d": "trace_per_param", "negmass": "negative_mass",
             "ns": "normalized_sharpness"}  # fmt: skip
    centres = {name: _centre(curvature, col) for name, col in names.items()}
    outliers = _per_architecture(curvature, "num_outliers", "mean")
    resolved = _per_architecture(curvature, "lambda_min_converged", "sum")
    for label, key in KEYS.items():
        out |= {f"{name}_{key}": centres[name].get(label, math.nan) for name in names}
        out[f"outliers_{key}"] = outliers.get(label, math.nan)
        out[f"lmin_resolved_{key}"] = int(resolved.get(label, 0))
    trace_d = np.array(list(centres["trace_d"].values()))
    out["trace_d_spread"] = float(trace_d.max() / trace_d.min()) if (trace_d > 0).all() else math.nan
    out["lmin_resolved"], out["num_runs"] = int(curvature["lambda_min_converged"].sum()), len(curvature)
    kw = {"level": LEVEL, "n_resamples": n_resamples, "seed": seed}
    for skip, twin in TWINS.items():
        out[f"lmax_ratio_{KEYS[twin]}_ci"] = MISSING
        if {skip, twin} <= set(curvature["architecture"]):
            ratio = ratio_interval(curvature, "lambda_max", twin, skip, **kw)
            out[f"lmax_ratio_{KEYS[twin]}_ci"] = format_estimate(ratio)
    mlp = curvature[curvature["architecture"] == MLP]
    out["certified_mlp"] = int(mlp["top_gap_certified"].sum())
    out["mlp_rel_gap"] = float(mlp["relative_gap"].mean()) if len(mlp) else math.nan
    out["mlp_margin_ci"] = out["mlp_bound_ci"] = MISSING
    if len(mlp) >= 2:
        out["mlp_margin_ci"] = format_estimate(bootstrap_ci(mlp["gap_margin"].to_numpy(float), **kw))
        out["mlp_bound_ci"] = format_estimate(bootstrap_ci(mlp["gap_bound"].to_numpy(float), **kw))
    out["mlp_top_residuals"] = float(mlp["top_residuals"].max()) if len(mlp) else math.nan
    out["gap_delta"], out["gap_resolution"] = GAP_EQUIVALENCE, RESOLUTION * GAP_EQUIVALENCE
    rho = trace_dimension_correlation(curvature, n_resamples=n_resamples, seed=seed)
    out |= {"rank_corr": rho.estimate, "rank_corr_ci": format_estimate(rho.interval), "rank_corr_p": rho.pvalue,
            "rank_corr_min_p": rho.min_pvalue, "num_architectures": rho.n}  # fmt: skip
    out["gap_at_c"] = int((curvature["largest_ratio_at"] == NUM_CLASSES).sum())
    return out


def roughness_numbers(rough: pd.DataFrame) -> dict:
    """Glue values of the roughness table: per architecture the `seed_interval` of ρ (random directions, both
    windows; eigenvector, wide window) as text, and the mean count of local minima along random slices."""
    from ..stats import seed_interval as interval

    out = {}
    columns = {
        "rough_local": "ρ random, local",
        "rough_wide": "ρ random, wide",
        "rough_eigen": "ρ eigenvector, wide",
    }
    for label, key in KEYS.items():
        rows = rough[rough["architecture"] == label]
        for prefix, col in columns.items():
            values = rows[col].dropna().to_numpy(float)
            out[f"{prefix}_{key}"] = format_estimate(interval(values)) if len(values) else MISSING
    minima = _per_architecture(rough, "minima random, wide", "mean")
    out |= {f"minima_{key}": minima.get(label, math.nan) for label, key in KEYS.items()}
    out["minima_max"] = max(minima.values()) if minima else math.nan
    return out


def barrier_numbers(barriers: pd.DataFrame, barrier_training: pd.DataFrame | None = None) -> dict:
    """Glue values of the barrier table (descriptive, over the seed pairs): mean and std of the raw loss barrier,
    the mean relative barrier and peak loss (`barrier_table`) and the mean error barrier (%) per architecture,
    the MLP's aligned barrier, the range of raw barriers, and ln C; with `barrier_training` (`train_networks`
    with ``barrier``), how many of the extra seeds' runs did not reach the target (``barrier_unreached``)."""
    raw = barrier_table(barriers)
    mean, std = _per_architecture(raw, "loss barrier", "mean"), _per_architecture(raw, "loss barrier", "std")
    relative, peak = (
        _per_architecture(raw, "relative barrier", "mean"),
        _per_architecture(raw, "peak loss", "mean"),
    )
    err = _per_architecture(raw, "error barrier", "mean")
    out = {"ln_classes": math.log(NUM_CLASSES), "relative_barrier": RELATIVE_BARRIER}
    if barrier_training is not None:
        out["barrier_unreached"] = int((barrier_training["status"] != "reached").sum())
        out["barrier_runs"] = len(barrier_training)
    for label, key in KEYS.items():
        present = label in mean
        out |= {f"barrier_{key}": mean.get(label, math.nan),
                f"barrier_{key}_std": _nan_to_zero(std[label]) if present else math.nan,
                f"rel_barrier_{key}": relative.get(label, math.nan), f"peak_loss_{key}": peak.get(label, math.nan),
                f"err_barrier_{key}": 100 * err.get(label, math.nan)}  # fmt: skip
    aligned = barriers[(barriers["variant"] == "aligned") & (barriers["architecture"] == MLP)]
    out["barrier_mlp_aligned"] = float(aligned["loss barrier"].mean()) if len(aligned) else math.nan
    out["barrier_max"] = float(raw["loss barrier"].max()) if len(raw) else math.nan
    out["barrier_min"] = float(raw["loss barrier"].min()) if len(raw) else math.nan
    return out


def _nan_to_zero(value: float) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


CLASS_FRACTIONS = (
    "overlap of the top C",
    "class share of the top C",
    "tr G_class / tr G",
    "tr G_cross / tr G",
)
CLASS_COLUMNS = {  # display name: column of `class_table`
    "overlap of the top C": "overlap", "class share of the top C": "class share",
    "tr G_class / tr G": "class trace share", "tr G_cross / tr G": "cross trace share",
    "λ_C / λ_C+1": "gap at C", "training loss": "train loss",
}  # fmt: skip


def class_table(classes: pd.DataFrame, num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """One row per network of the moderate population, the class structure read against Papyan's picture:

    - ``overlap``: the mean over the top C Gauss–Newton eigenvectors of the fraction of each one's squared norm
      in the span of the C class means (1: all of it; a random direction: C/D);
    - ``class share``: Σ_{j≤C} λ_j(G_class) / Σ_{j≤C} λ_j(G), in [0, 1] since G − G_class is positive
      semi-definite (Weyl): the part of the outliers' size the class means account for;
    - ``class trace share``, ``cross trace share``: tr G_class / tr G and tr G_cross / tr G (tr G estimated);
    - ``gap at C``: λ_C(G) / λ_{C+1}(G), large when exactly C outliers stand out;
    - ``converged``: whether the top-k Lanczos pairs met the tolerance.
    """
    rows = []
    for r in classes.to_dict("records"):
        ggn, cls, overlap = (np.asarray(v, dtype=float) for v in (r["ggn"], r["class"], r["overlap"]))
        c = min(num_classes, len(ggn))
        rows.append({
            "architecture": r["architecture"], "seed": r["seed"], "train loss": r["train loss"],
            "overlap": float(overlap[:c].mean()), "class share": float(cls[:c].sum() / ggn[:c].sum()),
            "class trace share": r["class_trace"] / r["ggn_trace"], "cross trace share": r["cross_trace"] / r["ggn_trace"],
            "gap at C": float(ggn[c - 1] / ggn[c]) if len(ggn) > c and ggn[c] > 0 else math.nan,
            "converged": bool(r["converged"]),
        })  # fmt: skip
    columns = ["architecture", "seed", *CLASS_COLUMNS.values(), "converged"]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))


def class_numbers(table: pd.DataFrame, sizes: Sizes) -> dict:
    """Glue values of the class-structure section: the population's settings, its training losses, and per
    architecture the overlap, class share and trace shares as 'estimate [95 % CI]' over its seeds
    (`seed_interval`; `MISSING` for an architecture without networks)."""
    out = {"moderate_loss": sizes.moderate_loss, "class_seeds": sizes.class_seeds,
           "class_eval_every": sizes.class_eval_every, "class_overlap": CLASS_OVERLAP,
           "class_k": max(sizes.k, NUM_CLASSES + 1), "num_class_runs": len(table),
           "class_unconverged": int((~table["converged"].astype(bool)).sum()) if len(table) else 0,
           "moderate_loss_min": float(table["train loss"].min()) if len(table) else math.nan,
           "moderate_loss_max": float(table["train loss"].max()) if len(table) else math.nan}  # fmt: skip
    for label, key in KEYS.items():
        rows = table[table["architecture"] == label]
        for column, name in (("overlap", "overlap"), ("class share", "share"),
                             ("class trace share", "trace"), ("cross trace share", "cross_trace")):  # fmt: skip
            values = rows[column].to_numpy(float)
            out[f"class_{name}_{key}"] = (
                format_estimate(seed_interval(values, fraction=True)) if len(values) else MISSING
            )
    return out


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
    (`landscape.paper.stats.ratio_ci`): paired by seed for a ResNet and its twin (seeds both lack are dropped;
    the geometric mean of the paired ratios), unpaired otherwise (below 10 seeds the ratio of geometric means,
    Welch's t on the logs). The interval's ``estimate`` is the estimand its ``method`` names."""
    from ..stats import ratio_ci

    a, b = _by_seed(frame, column, numerator), _by_seed(frame, column, denominator)
    paired = frozenset({numerator, denominator}) in PAIRED
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
    name = {col: display for display, col in PER_RUN_COLUMNS.items()}.get(column, column)
    return decide(interval, +1, 1.0, f"{name} {larger}/{smaller}")


def _claim(parts: Mapping[str, tuple], *, n_resamples: int, seed: int) -> Verdict:
    """A claim that is the conjunction of `parts` ({name: (frame, column, larger, smaller, training)}), each
    part a `compare` at `family_level` (Bonferroni over the parts), decided by `verdicts.combine` with
    ``rule="conjunction"`` (one refuted part refutes the claim)."""
    level = family_level(LEVEL, len(parts))
    return combine({name: compare(*args, level=level, n_resamples=n_resamples, seed=seed)
                    for name, args in parts.items()}, rule="conjunction")  # fmt: skip


def verdict_mlp_smoother(rough: pd.DataFrame, training: pd.DataFrame, *, n_resamples: int = 2000,
                         seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 1, "MLP landscapes are smoother": the roughness ρ of random slices on the local window (median over
    each network's directions) of every other architecture is larger than the MLP's. Old rules: the MLP's mean +
    std below every other's mean − std; then the same ratio test on the ruggedness TV(f − q)/TV(f), which
    measured how non-quadratic a slice is rather than how rough, at unmatched training losses."""
    others = [label for label in ARCHITECTURES if label != MLP and label in set(rough["architecture"])]
    parts = {f"ρ {o} > MLP": (rough, "ρ random, local", o, MLP, training) for o in others}
    return _claim(parts, n_resamples=n_resamples, seed=seed)


def _lambda_min_unresolved(curvature: pd.DataFrame, labels: Sequence[str]) -> str | None:
    rows = curvature[curvature["architecture"].isin(labels)]
    unresolved = rows[~rows["lambda_min_converged"].astype(bool)]
    if len(unresolved):
        return (f"λmin is not resolved (residual above tol·|λmin|, the test valid at a bulk edge) for "
                f"{len(unresolved)} of {len(rows)} networks, so |λmin/λmax| is not measured")  # fmt: skip
    return None


def verdict_resnet_skips(curvature: pd.DataFrame, rough: pd.DataFrame, training: pd.DataFrame, *,
                         n_resamples: int = 2000, seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 2, "ResNet-18 has stiff dominant eigenvalues but coherent valleys thanks to skip connections":
    ResNet-18's λmax is larger than the MLP's, the twin's and the Transformer's (the founding comparison), and
    without skips the roughness of random slices
    on the wide window and |λmin/λmax| are larger (paired by seed). The |λmin/λmax| part is not testable unless
    every λmin of both is resolved by the residual test. Old rule: point-estimate largest λmax and mean ± std
    separation, "partly supported" when some parts held."""
    parts = {f"λmax ResNet-18 > {o}": (curvature, "lambda_max", RESNET, o, training)
             for o in (MLP, NOSKIP, TRANSFORMER) if o in set(curvature["architecture"])}  # fmt: skip
    parts["ρ no skips > skips"] = (rough, "ρ random, wide", NOSKIP, RESNET, training)
    parts["|λmin/λmax| no skips > skips"] = (curvature, "convexity_ratio", NOSKIP, RESNET, training)
    unresolved = _lambda_min_unresolved(curvature, [RESNET, NOSKIP])
    level = family_level(LEVEL, len(parts))  # a part not measured still counts in the family
    return combine({
        name: not_testable(unresolved) if unresolved and name.startswith("|λmin")
        else compare(*args, level=level, n_resamples=n_resamples, seed=seed)
        for name, args in parts.items()
    }, rule="conjunction")  # fmt: skip


def verdict_transformer(curvature: pd.DataFrame, rough: pd.DataFrame, training: pd.DataFrame, *,
                        n_resamples: int = 2000, seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 3, "Transformers show near-zero average curvature but rugged local slices": the Transformer's
    tr(H)/D is smaller and its roughness on the local window larger than every other architecture's (old rule:
    the point estimates are the smallest and largest of the four)."""
    parts = {}
    for o in (
        label for label in ARCHITECTURES if label != TRANSFORMER and label in set(curvature["architecture"])
    ):
        parts[f"tr(H)/D {o} > Transformer"] = (curvature, "trace_per_param", o, TRANSFORMER, training)
        parts[f"local ρ Transformer > {o}"] = (rough, "ρ random, local", TRANSFORMER, o, training)
    return _claim(parts, n_resamples=n_resamples, seed=seed)


def skip_effect_by_depth(rough: pd.DataFrame, column: str = "ρ random, wide", *, level: float = LEVEL,
                         n_resamples: int = 2000, seed: int = 0):  # fmt: skip
    """How much more removing skips changes `column` at depth 18 than at depth 10: with the paired log-ratios
    d_s = log(twin_s / ResNet_s) per seed at each depth, the interval of exp(mean d(18) − mean d(10)), the
    ratio of the two depths' geometric-mean effects (`ratio_ci` on exp(d), unpaired: the depths share no
    networks). Above 1: the skips matter more in the deeper network."""
    from ..stats import ratio_ci

    effects = []
    for skip, twin in ((RESNET, NOSKIP), (RESNET10, NOSKIP10)):
        a, b = _by_seed(rough, column, twin), _by_seed(rough, column, skip)
        common = a.index.intersection(b.index)
        effects.append((a.loc[common] / b.loc[common]).to_numpy(float))
    return ratio_ci(effects[0], effects[1], level=level, n_resamples=n_resamples, seed=seed, paired=False)


def verdict_skips_matter_more_when_deeper(rough: pd.DataFrame, training: pd.DataFrame, *, n_resamples: int = 2000,
                                          seed: int = 0) -> Verdict:  # fmt: skip
    """Claim 7 (Li et al. 2018, the depth dependence behind claim 2): removing the skips roughens the landscape,
    and more so in the deeper network. Parts (`combine`, conjunction, at `family_level`): the twin's roughness
    over its ResNet's (wide window, paired by seed) above 1 at depth 18, and the depth-18 effect over the
    depth-10 effect (`skip_effect_by_depth`) above 1. Not testable when a pair's training losses are not
    matched or a roughness is not positive."""
    labels = set(rough["architecture"])
    if not {RESNET10, NOSKIP10, RESNET, NOSKIP} <= labels:
        return not_testable("needs both ResNet depths with their twins")
    level = family_level(LEVEL, 2)
    kw = {"level": level, "n_resamples": n_resamples, "seed": seed}
    for skip, twin in TWINS.items():
        confound = loss_confound(training, twin, skip, **kw)
        if confound is not None:
            return not_testable(confound)
    column = "ρ random, wide"
    if (rough[column] <= 0).any() or rough[column].isna().any():
        return not_testable(f"{column} needs positive values for a ratio")
    deeper = compare(rough, column, NOSKIP, RESNET, training, **kw)
    ratio = skip_effect_by_depth(rough, column, **kw)
    return combine({"ρ no skips > skips at depth 18": deeper,
                    "effect at 18 > effect at 10": decide(ratio, +1, 1.0, "skip effect on ρ, depth 18/depth 10")},
                   rule="conjunction")  # fmt: skip


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

    The Ritz values come from block Lanczos with block size 2 (`measure_curvature`): a random 2-block sees an
    eigenspace of dimension ≥ 2 twice, so a repeated λ1 would come back as θ1 ≈ θ2, and disjoint intervals show
    that λ1 is simple (single-vector Lanczos returns a repeated eigenvalue once, so there they show only that
    two distinct eigenvalues exist). Old rule: supported when the margin's interval was below 0, i.e. whenever
    the gap was not resolved.
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
    p < 0.05 (with 4 architectures the smallest two-sided p is 1/12, with 6 it is 1/360) or when some pair of
    architectures is not at matched training loss. Old rules: ρ > 0.5 as a point estimate; then a bootstrap interval over seeds, which
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


def verdict_class_outliers(table: pd.DataFrame, num_classes: int = NUM_CLASSES) -> Verdict:
    """Claim 8, Papyan's (2019) "the C outliers of the spectrum come from the class means", at moderate loss:
    for every architecture, the mean overlap of the top-C Gauss–Newton eigenvectors with the span of the class
    means (`class_table`) has its interval over seeds (`seed_interval` on the logits: a fraction, at
    `family_level` over the architectures) above `CLASS_OVERLAP`. Decided by `verdicts.combine` with ``rule="all"``: supported where
    every architecture's interval lies above, refuted where every one lies below, not supported otherwise; an
    architecture with fewer than two networks is not testable. Networks whose top-k Lanczos pairs did not
    converge are left out."""
    kept = table[table["converged"].astype(bool)]
    labels = _labels(kept) if len(kept) else []
    if not labels:
        return not_testable("no network of the moderate population has converged top eigenpairs")
    level = family_level(LEVEL, len(labels))
    parts = {}
    for label in labels:
        values = kept.loc[kept["architecture"] == label, "overlap"].to_numpy(float)
        if len(values) < 2:
            parts[label] = not_testable(f"{label}: {plural(len(values), 'network')}, an interval needs two")
            continue
        parts[label] = decide(seed_interval(values, level=level, fraction=True), +1, CLASS_OVERLAP,
                              f"overlap of the top {num_classes}")  # fmt: skip
    return combine(parts, rule="all")


def verdicts(
    training,
    curvature,
    rough,
    barriers,
    *,
    classes: pd.DataFrame | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[int, Verdict]:
    """The claims' verdicts, numbered as in the chapter (only networks that reached the target); claim 8 from
    the class-structure table (`class_table`) when `classes` is given."""
    kw = {"n_resamples": n_resamples, "seed": seed}
    done = reached(training)
    return {
        1: verdict_mlp_smoother(rough, done, **kw),
        2: verdict_resnet_skips(curvature, rough, done, **kw),
        3: verdict_transformer(curvature, rough, done, **kw),
        4: verdict_mlp_repeated_top(curvature, **kw),
        5: verdict_trace_grows_with_dimension(curvature, done, **kw),
        6: verdict_barriers_moderate(barriers, **kw),
        7: verdict_skips_matter_more_when_deeper(rough, done, **kw),
        **({8: verdict_class_outliers(classes)} if classes is not None else {}),
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


def _grid(count: int, width: float, height: float):
    import matplotlib.pyplot as plt

    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:count]


def plot_slices(slices: pd.DataFrame):
    """1-D slices on the wide window, one panel per architecture: the loss rise f(α) − f(0) against α/a (the
    window scaled by the direction's curvature, so the quadratic model rises by ½w² at the ends whatever the
    curvature) along the first random direction (solid, one curve per seed) and the top eigenvector (dashed),
    with the smooth degree-4 fit of each (thin black)."""
    labels, colors = _labels(slices), _colors()
    fig, axes = _grid(len(labels), 11, 3.2)
    wide = slices[slices["window"] == "wide"]
    for ax, label in zip(axes, labels, strict=True):
        rows = wide[(wide["architecture"] == label) & wide["direction"].isin(["eigen", "random 0"])]
        for _, v in rows.iterrows():
            alphas, losses = np.asarray(v["alphas"]), np.asarray(v["losses"])
            u, centre = alphas / v["radius"], losses[len(losses) // 2]
            ax.plot(
                u, losses - centre, color=colors[label], ls="--" if v["kind"] == "eigen" else "-", alpha=0.8
            )
            ax.plot(u, np.asarray(v["smooth"]) - centre, color="k", lw=0.6, alpha=0.6)
        rise = WINDOWS["wide"] ** 2 / 2
        ax.axhline(rise, color="grey", ls=":", lw=0.8)
        ax.set(title=label, xlabel=r"$\alpha / a$", ylabel=r"$f(\alpha) - f(0)$")
    axes[0].text(0.02, 0.95, "solid: random\ndashed: eigenvector", transform=axes[0].transAxes, va="top",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def plot_planes(planes: pd.DataFrame):
    """Filled loss contours of each architecture's 2-D slice on one shared set of log-spaced levels (one
    colourbar for all panels, so colours compare across architectures), the trained network at the centre (+)."""
    from matplotlib.colors import LogNorm

    fig, axes = _grid(len(planes), 11, 3.3)
    every = np.concatenate([np.ravel(p) for p in planes["losses"]])
    low, high = max(float(every.min()), 1e-4), float(every.max())
    levels = np.logspace(np.log10(low), np.log10(high), 16)
    norm = LogNorm(vmin=low, vmax=high)
    image = None
    for ax, (_, p) in zip(axes, planes.iterrows(), strict=True):
        losses, grid = np.clip(np.array(p["losses"]), low, high), np.array(p["grid"])
        image = ax.contourf(grid, grid, losses.T, levels=levels, norm=norm, cmap="viridis")
        ax.contour(grid, grid, losses.T, levels=levels, colors="k", linewidths=0.3, alpha=0.5)
        ax.plot(0, 0, "r+", ms=8)
        ax.set(title=p["architecture"], xlabel=r"$\alpha$", ylabel=r"$\beta$", aspect="equal")
        ax.grid(False)
    bar = fig.colorbar(image, ax=list(axes), label="training loss (shared log levels)", shrink=0.9,
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
    # "ResNet-18, no skips" → "ResNet\n18, no skips": seven bars share 5 inches, so every label wraps
    names = [a.replace("ResNet-", "ResNet\n").replace(", ", ",\n") + ("\n(aligned)" if v == "aligned" else "")
             for a, v in keys]  # fmt: skip
    _seed_bars(axes[1], range(len(keys)), [groups.get_group(k).to_numpy(float) for k in keys],
               color=[colors[a] for a, _ in keys])  # fmt: skip
    axes[1].set_xticks(range(len(keys)), names, fontsize=8)
    raw = barriers[barriers["variant"] == "raw"]
    pairs = int(raw.groupby("architecture").size().max()) if len(raw) else 0
    axes[1].set(ylabel="loss barrier height", title=f"95 % interval over {pairs} seed pairs")
    return fig


def plot_roughness(rough: pd.DataFrame):
    """Roughness ρ per architecture (geometric mean over seeds with its 95 % interval, `seed_interval`; log axis,
    the values span decades), random directions (median per network) dark and the top eigenvector light, on
    the local (left) and wide (right) curvature-scaled windows."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colors, width = _colors(), 0.38
    grouped, labels = rough.groupby("architecture"), _labels(rough)
    for ax, window in zip(axes, ("local", "wide"), strict=True):
        for j, (name, shift) in enumerate((("random", -width / 2), ("eigenvector", width / 2))):
            col = f"ρ {name}, {window}"
            values = [grouped.get_group(label)[col].dropna().to_numpy(float) for label in labels]
            floor = [
                np.maximum(v, 1e-16) for v in values
            ]  # a bowl scores 0 up to rounding: keep it on a log axis
            _seed_bars(ax, np.arange(len(labels)) + shift, floor, width=width, label=name,
                       color=[colors[label] for label in labels], alpha=1.0 if j == 0 else 0.5, edgecolor="k",
                       linewidth=0.5)  # fmt: skip
        ax.set_xticks(range(len(labels)), [a.replace(", ", "\n") for a in labels], fontsize=9)
        rise = WINDOWS[window] ** 2 / 2
        ax.set(
            ylabel=r"roughness $\rho$",
            yscale="log",
            title=f"{window} window (quadratic rise {format_number(rise)})\ndark: random, light: top eigenvector",
        )
    fig.tight_layout()
    return fig


def plot_classes(classes: pd.DataFrame, num_classes: int = NUM_CLASSES):
    """Papyan's test per architecture at moderate loss, mean over its seeds (band: range). Left: the ratio
    λ_j(G_class)/λ_j(G) of the j-th eigenvalue of the class-mean part to that of the Gauss–Newton matrix (at
    most 1, by Weyl). Right: the fraction of the j-th Gauss–Newton eigenvector in the span of the class
    means. Both for j = 1 … k; the dotted line marks j = C."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharex=True)
    colors = _colors()
    for label in _labels(classes):
        rows = classes[classes["architecture"] == label]
        k = min(len(v) for v in rows["ggn"])
        ggn = np.array([np.asarray(v, dtype=float)[:k] for v in rows["ggn"]])
        cls = np.array(
            [np.pad(np.asarray(v, dtype=float), (0, max(0, k - len(v))))[:k] for v in rows["class"]]
        )
        overlap = np.array([np.asarray(v, dtype=float)[:k] for v in rows["overlap"]])
        j = np.arange(1, k + 1)
        for ax, values in zip(axes, (cls / ggn, overlap), strict=True):
            ax.plot(j, values.mean(0), color=colors[label], label=label, marker="o", markersize=3)
            ax.fill_between(j, values.min(0), values.max(0), color=colors[label], alpha=0.15, linewidth=0)
    for ax, ylabel in zip(axes, (r"$\lambda_j(G_{\rm class}) / \lambda_j(G)$", "overlap with span of class means"),
                          strict=True):  # fmt: skip
        ax.axvline(num_classes, color="0.4", linestyle=":", linewidth=1)
        ax.set(xlabel="eigenvalue index j", ylabel=ylabel, ylim=(0, 1.05))
    axes[1].axhline(CLASS_OVERLAP, color="0.4", linestyle="--", linewidth=1)
    axes[0].legend(fontsize=9, ncol=2)
    fig.tight_layout()
    return fig
