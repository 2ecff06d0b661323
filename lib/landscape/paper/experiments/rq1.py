"""RQ1 — why does SGD find flat, generalising minima? The chapter's experiments, summaries and verdict rules.

Four experiments on MNIST-1D. Each is a sweep of independent tasks run by `landscape.sweep.parallel_map`; a
task is one training run (`landscape.dynamics.continue_training`) with its measurements, cached by its
settings and the code it runs (`landscape.results.cached_json`, `DEPENDS_ON`), so a rerun reads it back and a
task that Dask reruns stores nothing twice.

- `run_eos`: full-batch gradient descent on a training subset (the MLP and a one-block Transformer,
  cross-entropy and squared loss, several step sizes), λmax of the full-batch loss tracked along the way — the
  edge of stability (Cohen et al. 2021).
- `run_grid`: plain SGD at every (batch size B, step size η) of a grid, each run stopped at a target training
  loss and measured there (λmax, trace/D, normalised and adaptive sharpness), so that runs are compared at
  equal training loss (Keskar et al. 2017).
- `run_escape`: from the large-batch grid solution, small-batch SGD against full-batch GD at the same η.
- `run_rescaling`: Dinh et al. (2017)'s function-preserving rescalings of one solution, every sharpness
  measure.

Summaries (`eos_runs`, `eos_cells`, `grid_cells`, `grid_correlations`, `keskar_pairs`, `keskar_intervals`,
`escape_ends`, `escape_interval`, `rescaling_spread`) turn the raw tables into the chapter's numbers; the
``*_numbers`` functions give the glued values of each section. Every verdict rests on a confidence interval
(`landscape.paper.stats`) and is decided by `landscape.paper.verdicts.verdict_from_interval` or, for the
edge-of-stability band, `verdict_in_band`.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...data import Dataset, load_dataset
from ...dynamics import continue_training, edge_of_stability
from ...eigen import top_eigenvalues
from ...flatness import epsilon_sharpness, worst_case_sharpness
from ...models import build_model
from ...operators import HessianOperator
from ...results import cached_json
from ...sharpness import normalized_sharpness
from ...sweep import parallel_map
from ...trace import hessian_trace
from ...train import TrainConfig, evaluate, loss_function
from ..glue import format_estimate
from ..probe_checks import rescale_layers
from ..stats import (
    Interval,
    bootstrap_ci,
    cluster_bootstrap_ci,
    paired_difference_ci,
    rank_correlation,
    ratio_ci,
)
from ..verdicts import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    REFUTED,
    SUPPORTED,
    Verdict,
    not_testable,
    verdict_from_interval,
)

__all__ = [
    "ADAPTIVE_RHO",
    "DEPENDS_ON",
    "EOS_BAND",
    "EOS_ONSET",
    "MEASURES",
    "PROFILES",
    "EosSizes",
    "Sizes",
    "eos_cells",
    "eos_numbers",
    "eos_ratio_interval",
    "eos_runs",
    "escape_ends",
    "escape_interval",
    "escape_numbers",
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
    "rescaling_numbers",
    "rescaling_spread",
    "run_eos",
    "run_escape",
    "run_grid",
    "run_rescaling",
    "setup_numbers",
    "verdict_correlation",
    "verdict_eos",
    "verdict_escape",
    "verdict_flat",
    "verdict_generalise",
    "verdict_in_band",
    "verdict_keskar",
    "verdict_table",
]

MLP_CONFIG = {"depth": 2, "width": 100, "activation": "relu"}
# a one-block Transformer with patches of 8 (9.4k parameters): the reference recipe's HVP costs 15x more
TRANSFORMER_CONFIG = {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2, "pooling": "mean"}
ARCHITECTURES = {"mlp": MLP_CONFIG, "transformer": TRANSFORMER_CONFIG}
LOSSES = ("ce", "mse")
ADAPTIVE_RHO = 0.1  # radius of the adaptive worst-case sharpness: ‖δ / |θ|‖₂ ≤ ρ
EPSILON = 1e-3  # radius of Keskar's ε-sharpness in the rescaling experiment
EOS_ONSET = 0.9  # λmax·η/2 that ends progressive sharpening
EOS_BAND = (0.85, 1.15)  # "EoS ratio ≈ 1": the interval must lie inside this band
MEASURES = ("lambda_max", "trace_per_param", "normalized_sharpness", "adaptive_sharpness")
NAMES = {"lambda_max": "λmax", "trace_per_param": "trace/D", "normalized_sharpness": "normalised sharpness",
         "adaptive_sharpness": "adaptive sharpness", "temperature": "η/B", "gap": "gap"}  # fmt: skip
# the code every cached result of this chapter depends on beyond the probes
DEPENDS_ON = ("data", "models", "train", "dynamics", __name__)
LEVEL = 0.95  # confidence level of every interval


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
    resamples: int = 2000  # bootstrap resamples of every interval
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
        eos_mlp=EosSizes((0, 1), 128, 60, 10, (0.5, 1.0), (0.2, 0.4)),
        eos_transformer=EosSizes((0, 1), 64, 30, 10, (0.1, 0.2), (0.05, 0.06)),
        batch_sizes=(32, 256), lrs=(0.05, 0.2), target_loss=1.8, max_steps=600, check_every=20,
        curvature_samples=256, trace_matvecs=8, adaptive_steps=3, tol=1e-2,
        escape_lr=0.2, escape_batch=32, escape_steps=40, escape_every=20,
        alphas=(0.3, 1.0, 3.0), resamples=500, workers=1, threads=1,
    ),
    # 5 seeds for the grid, escape and MLP EoS runs (3 before: intervals of 3 paired values are too wide to
    # decide anything), 3 for the Transformer EoS runs, whose Hessian-vector products cost ~15x the MLP's;
    # the tasks now run on every core, so the cold wall time stays about that of 3 seeds run one at a time
    "paper": Sizes(
        seeds=(0, 1, 2, 3, 4),
        eos_mlp=EosSizes((0, 1, 2, 3, 4), 500, 1500, 25, (0.2, 0.3, 0.5, 1.0), (0.1, 0.2, 0.3, 0.4)),
        eos_transformer=EosSizes(
            (0, 1, 2), 256, 500, 20, (0.03, 0.05, 0.1, 0.2), (0.035, 0.045, 0.055, 0.06)
        ),
        # SGD to a training loss of 0.05 (≈ 100 % training accuracy): B = 1024 at η = 0.05 needs ~11k steps
        batch_sizes=(16, 64, 256, 1024), lrs=(0.05, 0.1, 0.2), target_loss=0.05, max_steps=20000,
        check_every=50, curvature_samples=1000, trace_matvecs=40, adaptive_steps=10, tol=1e-3,
        escape_lr=0.1, escape_batch=16, escape_steps=600, escape_every=50,
        alphas=(0.1, 0.3, 1.0, 3.0, 10.0), workers=None, threads=1,
    ),
    "full": Sizes(
        seeds=(0, 1, 2, 3, 4),
        eos_mlp=EosSizes(
            (0, 1, 2, 3, 4), 1000, 4000, 20, (0.1, 0.2, 0.3, 0.5, 1.0), (0.05, 0.1, 0.2, 0.3, 0.4)
        ),
        eos_transformer=EosSizes(
            (0, 1, 2, 3, 4), 1000, 2000, 20, (0.03, 0.05, 0.1, 0.2), (0.035, 0.045, 0.055, 0.06)
        ),
        batch_sizes=(8, 16, 32, 64, 128, 256, 512, 1024, 4000), lrs=(0.02, 0.05, 0.1, 0.2, 0.4),
        target_loss=0.05, max_steps=100000, check_every=50, curvature_samples=4000, trace_matvecs=100,
        adaptive_steps=20, tol=1e-4, escape_lr=0.1, escape_batch=16, escape_steps=4000, escape_every=100,
        alphas=tuple(np.logspace(-2, 2, 9).tolist()), workers=None, threads=None,
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Tasks: one training run and its measurements each, cached


@functools.lru_cache(maxsize=1)
def _mnist1d() -> Dataset:
    return load_dataset("mnist1d")


def _curvature_data(data: Dataset, samples: int):
    return data.x_train[:samples], data.y_train[:samples]


def _init(arch: str, data: Dataset, seed: int) -> torch.nn.Module:
    return build_model(
        arch, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed, **ARCHITECTURES[arch]
    )


def _cached(settings: Mapping, compute) -> dict:
    """`cached_json` of `compute()` under `settings` minus its ``cache`` entry (the folder)."""
    settings = dict(settings)
    folder = settings.pop("cache")
    return cached_json(folder, settings, compute, depends_on=DEPENDS_ON)


def _stored(out, seconds: float) -> dict:
    """The JSON-serialisable part of a `ContinuedRun` that the chapter uses."""
    return {"status": out.status, "diverged_step": out.diverged_step, "history": list(out.history),
            "seconds": seconds}  # fmt: skip


def _weights(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Weights as JSON (exact: every float32 is a float64 and back)."""
    return {
        k: {"dtype": str(v.dtype).removeprefix("torch."), "values": v.tolist()} for k, v in state_dict.items()
    }


def _model(arch: str, data: Dataset, weights: Mapping) -> torch.nn.Module:
    model = _init(arch, data, 0)
    model.load_state_dict(
        {k: torch.tensor(v["values"], dtype=getattr(torch, v["dtype"])) for k, v in weights.items()}
    )
    return model


def eos_task(settings: Mapping) -> dict:
    """One edge-of-stability run: full-batch GD (no momentum) from seed `seed`'s initialisation on the first
    `num_train` training samples, λmax of the full-batch loss tracked every `track_every` steps.

    `settings`: cache (folder), arch, loss, lr, seed, num_train, steps, track_every, tol. Returns status,
    diverged_step, history (one dict per tracked point) and seconds.
    """

    def compute():
        arch, seed = settings["arch"], settings["seed"]
        config = TrainConfig(model=arch, model_config=ARCHITECTURES[arch], optimizer="gd", lr=settings["lr"],
                             momentum=0.0, batch_size=None, steps=settings["steps"], loss=settings["loss"],
                             seed=seed)  # fmt: skip
        data = _mnist1d()
        tic = time.perf_counter()
        out = continue_training(_init(arch, data, seed), config, data.subset(settings["num_train"]),
                                track_every=settings["track_every"], tol=settings["tol"])  # fmt: skip
        return _stored(out, time.perf_counter() - tic)

    return _cached(settings, compute)


def _measure(model: torch.nn.Module, data: Dataset, settings: Mapping, *, rescaling: bool = False) -> dict:
    """The curvature of `model`'s cross-entropy on the first `curvature_samples` training samples: λmax,
    trace/D, normalised and adaptive sharpness; with `rescaling` also the non-adaptive worst-case and Keskar's
    ε-sharpness and the training loss on those samples. Budgets and seed from `settings`."""
    loss_fn, sample = loss_function("ce"), _curvature_data(data, settings["curvature_samples"])
    tol, steps, rho, seed = (settings[k] for k in ("tol", "adaptive_steps", "adaptive_rho", "measure_seed"))
    op = HessianOperator(model, loss_fn, sample)
    out = {
        "lambda_max": float(top_eigenvalues(op, 1, tol=tol, seed=seed).values[0]),
        "trace_per_param": hessian_trace(op, settings["trace_matvecs"], seed=seed).estimate / op.dim,
        "normalized_sharpness": normalized_sharpness(model, loss_fn, sample, tol=tol, trace_matvecs=0,
                                                     seed=seed).lambda_max,
        "adaptive_sharpness": worst_case_sharpness(model, loss_fn, sample, rho, adaptive=True, steps=steps,
                                                   seed=seed).value,
    }  # fmt: skip
    if rescaling:
        out["non_adaptive_sharpness"] = worst_case_sharpness(
            model, loss_fn, sample, rho, adaptive=False, steps=steps, seed=seed
        ).value
        out["epsilon_sharpness"] = epsilon_sharpness(
            model, loss_fn, sample, settings["epsilon"], steps=steps, seed=seed
        ).value
        out["train_loss"] = evaluate(model, loss_fn, *sample)["loss"]
    return out


def grid_task(settings: Mapping) -> dict:
    """One grid run: plain SGD with batch size `batch_size` and step `lr` from seed `seed`'s initialisation,
    stopped at the first check (every `check_every` steps) whose full training loss is ≤ `target_loss`
    (budget `max_steps`), then measured (`_measure`).

    `settings`: cache, batch_size, lr, seed, max_steps, check_every, target_loss, curvature_samples, tol,
    trace_matvecs, adaptive_rho, adaptive_steps, measure_seed, keep_weights. Returns ``row`` (the run's
    measurements), ``history`` (the checks) and, with `keep_weights`, ``weights`` (the final weights, for the
    escape and rescaling experiments).
    """

    def compute():
        b, lr, seed = settings["batch_size"], settings["lr"], settings["seed"]
        config = TrainConfig(model="mlp", model_config=MLP_CONFIG, optimizer="sgd", lr=lr, momentum=0.0,
                             batch_size=b, steps=settings["max_steps"], seed=seed)  # fmt: skip
        data = _mnist1d()
        init = _init("mlp", data, seed)
        tic = time.perf_counter()
        out = continue_training(init, config, data, track_every=settings["check_every"],
                                track_sharpness=False, target_loss=settings["target_loss"])  # fmt: skip
        seconds = time.perf_counter() - tic
        model = copy.deepcopy(init)
        model.load_state_dict(out.state_dict)
        end = out.history[-1]
        row = {
            "batch_size": b, "lr": lr, "seed": seed, "temperature": lr / b, "status": out.status,
            "reached": out.status == "reached", "steps": end["step"], "train_seconds": seconds,
            "train_loss": end["train_loss"], "train_acc": end["train_acc"], "test_loss": end["test_loss"],
            "test_acc": end["test_acc"], "gap": end["train_acc"] - end["test_acc"],
            **_measure(model, data, settings),
        }  # fmt: skip
        result = {"row": row, "history": list(out.history)}
        if settings["keep_weights"]:
            result["weights"] = _weights(out.state_dict)
        return result

    return _cached(settings, compute)


def _start(settings: Mapping, data: Dataset) -> torch.nn.Module:
    """The grid solution that `settings["start"]` (grid settings with ``keep_weights``) names."""
    start = grid_task({**settings["start"], "cache": settings["cache"]})
    if "weights" not in start:
        raise ValueError("the start must be a grid run stored with its weights (keep_weights=True)")
    return _model("mlp", data, start["weights"])


def escape_task(settings: Mapping) -> dict:
    """One escape run: continue the grid solution `start` for `steps` steps at step `lr`, with minibatches of
    `batch` (small-batch SGD) or full batch (`batch` None: GD) in the data order of `seed`, λmax on the first
    `curvature_samples` training samples every `track_every` steps.

    Only a non-finite loss counts as divergence: from a minimum the first minibatch loss can be ~0, so
    "100 × the first loss" would stop SGD at its first larger minibatch loss.
    """

    def compute():
        data = _mnist1d()
        batch = settings["batch"]
        config = TrainConfig(model="mlp", model_config=MLP_CONFIG, optimizer="sgd" if batch else "gd",
                             lr=settings["lr"], momentum=0.0, batch_size=batch, steps=settings["steps"],
                             seed=settings["seed"], divergence_factor=math.inf)  # fmt: skip
        start = _start(settings, data)
        tic = time.perf_counter()
        sample = _curvature_data(data, settings["curvature_samples"])
        out = continue_training(start, config, data, track_every=settings["track_every"], tol=settings["tol"],
                                sharpness_data=sample)  # fmt: skip
        return _stored(out, time.perf_counter() - tic)

    return _cached(settings, compute)


def rescaling_task(settings: Mapping) -> dict:
    """Every sharpness measure (`_measure` with ``rescaling``) of the grid solution `start` with layer 1 × α
    and layer 2 × 1/α (`alpha`)."""

    def compute():
        data = _mnist1d()
        model = rescale_layers(_start(settings, data), 0, float(settings["alpha"]))
        return {"alpha": settings["alpha"], **_measure(model, data, settings, rescaling=True)}

    return _cached(settings, compute)


# ------------------------------------------------------------------------------------------------------------
# Experiments: the raw tables


def _map(sizes: Sizes, function, items: list, desc: str) -> list:
    """`parallel_map` with the profile's workers and threads, without a progress bar (it would end up in the
    paper)."""
    return parallel_map(
        function, items, workers=sizes.workers, threads=sizes.threads, desc=desc, progress=False
    )


def _histories(items: list[dict], outs: list[dict], labels: Sequence[str]) -> pd.DataFrame:
    """The ``history`` of every task result, labelled with the `labels` entries of its settings."""
    return pd.concat(
        [pd.DataFrame(out["history"]).assign(**{k: item[k] for k in labels}, status=out["status"])
         for item, out in zip(items, outs, strict=True)],
        ignore_index=True,
    )  # fmt: skip


def _measures(sizes: Sizes, measure_seed: int) -> dict:
    """The settings of `_measure`."""
    return {"curvature_samples": sizes.curvature_samples, "tol": sizes.tol,
            "trace_matvecs": sizes.trace_matvecs, "adaptive_rho": ADAPTIVE_RHO,
            "adaptive_steps": sizes.adaptive_steps, "measure_seed": measure_seed}  # fmt: skip


def _grid_settings(sizes: Sizes, b: int, lr: float, seed: int, measure_seed: int) -> dict:
    """The settings of `grid_task` (without the cache folder); the escape start keeps its weights."""
    return {"experiment": "grid", "batch_size": b, "lr": lr, "seed": seed, "max_steps": sizes.max_steps,
            "check_every": sizes.check_every, "target_loss": sizes.target_loss,
            **_measures(sizes, measure_seed),
            "keep_weights": b == sizes.large_batch and lr == sizes.escape_lr}  # fmt: skip


def run_eos(sizes: Sizes, cache: str | Path) -> pd.DataFrame:
    """Every edge-of-stability run (architecture × loss × step size × seed), one task each.

    Returns the tracked points of all runs: step, train_loss, train_acc, test_loss, test_acc, lambda_max,
    lambda_residual, matvecs, with arch, loss, lr, seed and the run's status.
    """
    items = [
        {"cache": str(cache), "experiment": "eos", "arch": arch, "loss": loss, "lr": lr, "seed": s,
         "num_train": spec.num_train, "steps": spec.steps, "track_every": spec.track_every, "tol": sizes.tol}
        for arch, spec in sizes.eos.items() for loss in LOSSES for lr in spec.lrs(loss) for s in spec.seeds
    ]  # fmt: skip
    return _histories(items, _map(sizes, eos_task, items, "EoS runs"), ("arch", "loss", "lr", "seed"))


def run_grid(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every grid run (batch size × step size × seed), one task each; `seed` seeds the measurements.

    Returns (runs, curves): one row per run (its settings, status, steps, losses and accuracies where it
    stopped, the generalisation gap, λmax, trace/D, normalised and adaptive sharpness, training seconds), and
    the full training/test losses at every check of every run.
    """
    items = [{**_grid_settings(sizes, b, lr, s, seed), "cache": str(cache)}
             for b in sizes.batch_sizes for lr in sizes.lrs for s in sizes.seeds]  # fmt: skip
    outs = _map(sizes, grid_task, items, "grid runs")
    runs = pd.DataFrame([out["row"] for out in outs])
    curves = _histories(items, [{**out, "status": out["row"]["status"]} for out in outs],
                        ("batch_size", "lr", "seed"))  # fmt: skip
    return runs, curves


def run_escape(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """From the grid solution at (B = max batch size, η = escape_lr) of every seed, small-batch SGD and
    full-batch GD for `escape_steps` steps; one task each. Returns their tracked points with mode ("SGD" or
    "GD"), seed and status. Raises if a continuation stopped early (diverged)."""
    items = [
        {"cache": str(cache), "experiment": "escape", "mode": mode, "batch": batch, "seed": s,
         "start": _grid_settings(sizes, sizes.large_batch, sizes.escape_lr, s, seed), "lr": sizes.escape_lr,
         "steps": sizes.escape_steps, "track_every": sizes.escape_every, "tol": sizes.tol,
         "curvature_samples": sizes.curvature_samples}
        for s in sizes.seeds for mode, batch in (("SGD", sizes.escape_batch), ("GD", None))
    ]  # fmt: skip
    outs = _map(sizes, escape_task, items, "escape runs")
    for item, out in zip(items, outs, strict=True):
        if out["status"] != "finished":
            raise RuntimeError(f"escape run {item['mode']}, seed {item['seed']} stopped early: "
                               f"{out['status']} at step {out['diverged_step']}")  # fmt: skip
    return _histories(items, outs, ("mode", "seed"))


def run_rescaling(sizes: Sizes, cache: str | Path, *, seed: int = 0) -> pd.DataFrame:
    """The grid solution at (B = max batch size, η = escape_lr) of the first seed under every rescaling α
    (layer 1 × α, layer 2 × 1/α); one task per α. Returns one row per α: λmax, trace/D, normalised, adaptive
    and non-adaptive worst-case, and ε-sharpness, and the training loss on the curvature samples."""
    start = _grid_settings(sizes, sizes.large_batch, sizes.escape_lr, sizes.seeds[0], seed)
    items = [{"cache": str(cache), "experiment": "rescaling", "alpha": float(alpha), "start": start,
              **_measures(sizes, seed), "epsilon": EPSILON} for alpha in sizes.alphas]  # fmt: skip
    return pd.DataFrame(_map(sizes, rescaling_task, items, "rescalings"))


# ------------------------------------------------------------------------------------------------------------
# Summaries


def _mean_interval(values, *, resamples: int = 2000, seed: int = 0) -> Interval:
    """The mean of `values` (NaNs dropped) with its bootstrap interval."""
    values = np.asarray(values, dtype=float)
    return bootstrap_ci(values[~np.isnan(values)], level=LEVEL, n_resamples=resamples, seed=seed)


def _text(values, *, resamples: int = 2000, digits: int = 3, missing: str = "none") -> str:
    """'mean [95 % CI]' of `values` as text (`missing` when there are none, the value alone for one)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return missing
    if len(values) == 1:
        return format_estimate(values[0], digits=digits)
    return format_estimate(_mean_interval(values, resamples=resamples), digits=digits)


def eos_runs(traces: pd.DataFrame, *, onset: float = EOS_ONSET) -> pd.DataFrame:
    """One row per edge-of-stability run: `edge_of_stability` of its λmax trace (reached, onset_step,
    ratio_mean, phase_ratio_mean, ...), its status and final training loss, and ``cell`` (arch/loss/lr: the
    runs that share a configuration, the clusters of every interval)."""
    rows = []
    for (arch, loss, lr, seed), run in traces.groupby(["arch", "loss", "lr", "seed"], sort=False):
        run = run.sort_values("step")
        eos = edge_of_stability(run["step"].tolist(), run["lambda_max"].tolist(), float(lr), onset=onset)
        rows.append({"arch": arch, "loss": loss, "lr": lr, "seed": seed, "cell": f"{arch}/{loss}/{lr:g}",
                     "status": run["status"].iloc[0], **asdict(eos),
                     "final_train_loss": run["train_loss"].iloc[-1]})  # fmt: skip
    return pd.DataFrame(rows)


def eos_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per edge-of-stability setting (arch, loss, lr): seeds that reached the onset, mean onset step,
    EoS ratio over the phase (mean and sd over seeds) and after the onset, largest ratio, final loss."""
    return runs.groupby(["arch", "loss", "lr"], sort=False).agg(
        reached=("reached", "sum"), seeds=("seed", "count"), onset=("onset_step", "mean"),
        ratio_phase=("phase_ratio_mean", "mean"), ratio_phase_sd=("phase_ratio_mean", "std"),
        ratio_after=("ratio_mean", "mean"), ratio_max=("ratio_max", "mean"),
        final_train_loss=("final_train_loss", "mean"),
    ).reset_index()  # fmt: skip


def eos_ratio_interval(
    runs: pd.DataFrame,
    *,
    loss: str | None = None,
    arch: str | None = None,
    column: str = "phase_ratio_mean",
    resamples: int = 2000,
    seed: int = 0,
) -> Interval | None:
    """The mean EoS ratio (`column`) over the runs that reached the onset, optionally of one loss and/or
    architecture, with a cluster-bootstrap interval (clusters: the settings, whose seeds share an η).
    None when no run reached the onset."""
    mine = runs[runs["reached"].astype(bool)]
    if loss is not None:
        mine = mine[mine["loss"] == loss]
    if arch is not None:
        mine = mine[mine["arch"] == arch]
    if mine.empty:
        return None
    return cluster_bootstrap_ci(mine, column, "cell", level=LEVEL, n_resamples=resamples, seed=seed)


def matched_runs(runs: pd.DataFrame, *, minimum: int = 3) -> pd.DataFrame:
    """The grid runs that reached the target training loss (the only ones compared); raises if fewer than
    `minimum` did (raise max_steps or the target)."""
    matched = runs[runs["reached"].astype(bool)]
    if len(matched) < minimum:
        raise RuntimeError(
            f"only {len(matched)} grid runs reached the target loss: raise max_steps or the target"
        )
    return matched


def grid_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per grid cell (batch_size, lr): η/B, seeds that reached the target, and the means over seeds of
    steps, training loss and accuracy, every measure, test accuracy (and its sd) and the gap."""
    return runs.groupby(["batch_size", "lr"]).agg(
        temperature=("temperature", "first"), reached=("reached", "sum"), seeds=("seed", "count"),
        steps=("steps", "mean"), train_loss=("train_loss", "mean"), train_acc=("train_acc", "mean"),
        **{m: (m, "mean") for m in MEASURES}, test_acc=("test_acc", "mean"), test_acc_sd=("test_acc", "std"),
        gap=("gap", "mean"),
    ).reset_index()  # fmt: skip


def grid_correlations(matched: pd.DataFrame, *, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Spearman correlations over the matched grid runs, each with a bootstrap interval clustered by grid cell
    (the seeds of one (B, η) share it): η/B against every measure, the gap, test accuracy, training loss and
    steps; every measure against the gap and against test accuracy.

    Returns one row per pair: x, y, estimate, low, high, n.
    """
    clusters = matched["batch_size"].astype(str) + "/" + matched["lr"].astype(str)
    pairs = [("temperature", y) for y in (*MEASURES, "gap", "test_acc", "train_loss", "steps")]
    pairs += [(m, y) for y in ("gap", "test_acc") for m in MEASURES]
    rows = []
    for x, y in pairs:
        ci = rank_correlation(matched[x].to_numpy(float), matched[y].to_numpy(float), method="spearman",
                              level=LEVEL, n_resamples=resamples, seed=seed,
                              clusters=clusters.to_numpy())  # fmt: skip
        rows.append({"x": x, "y": y, "estimate": ci.estimate, "low": ci.low, "high": ci.high, "n": ci.n})
    return pd.DataFrame(rows)


def _correlation(correlations: pd.DataFrame, x: str, y: str) -> pd.Series:
    row = correlations[(correlations["x"] == x) & (correlations["y"] == y)]
    if len(row) != 1:
        raise KeyError(f"no correlation of {x!r} with {y!r} in the table")
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


def keskar_intervals(
    pairs: pd.DataFrame, *, resamples: int = 2000, seed: int = 0
) -> dict[str, Interval] | None:
    """Intervals of Keskar et al.'s comparison over all pairs of `keskar_pairs` (same seed, same η, both at
    the target loss): the geometric-mean ratio large/small of λmax (``lambda_max``) and of normalised
    sharpness (``normalized_sharpness``), and the mean test-accuracy difference (``test_acc``). None when
    there are fewer than two pairs."""
    if len(pairs) < 2:
        return None
    out = {m: ratio_ci(pairs[f"{m}_large"], pairs[f"{m}_small"], paired=True, level=LEVEL,
                       n_resamples=resamples, seed=seed)
           for m in ("lambda_max", "normalized_sharpness")}  # fmt: skip
    out["test_acc"] = paired_difference_ci(pairs["test_acc_large"], pairs["test_acc_small"], level=LEVEL,
                                           n_resamples=resamples, seed=seed)  # fmt: skip
    return out


def escape_ends(traces: pd.DataFrame) -> pd.DataFrame:
    """One row per escape run (mode, seed): λmax, test loss and accuracy at the start and the end, final
    training loss, the largest training loss after the start, and λmax(end)/λmax(start)."""
    traces = traces.sort_values("step")
    ends = traces.groupby(["mode", "seed"]).agg(
        lmax_start=("lambda_max", "first"), lmax_end=("lambda_max", "last"),
        test_start=("test_loss", "first"), test_end=("test_loss", "last"),
        acc_start=("test_acc", "first"), acc_end=("test_acc", "last"), train_end=("train_loss", "last"),
    ).reset_index()  # fmt: skip
    peak = traces[traces["step"] > 0].groupby(["mode", "seed"])["train_loss"].max().rename("train_peak")
    ends = ends.merge(peak.reset_index(), on=["mode", "seed"], how="left")
    ends["lmax_ratio"] = ends["lmax_end"] / ends["lmax_start"]
    return ends


def escape_interval(ends: pd.DataFrame, *, resamples: int = 2000, seed: int = 0) -> Interval | None:
    """λmax at the end of small-batch SGD over λmax at the end of full-batch GD, paired by seed (the same
    start): the geometric mean of the per-seed ratios with its bootstrap interval. None with fewer than two
    seeds that have both."""
    wide = ends.pivot(index="seed", columns="mode", values="lmax_end").dropna()
    if len(wide) < 2 or not {"SGD", "GD"} <= set(wide.columns):
        return None
    return ratio_ci(wide["SGD"], wide["GD"], paired=True, level=LEVEL, n_resamples=resamples, seed=seed)


def rescaling_spread(table: pd.DataFrame) -> dict[str, float]:
    """max/min over the rescalings of every measure of `run_rescaling`'s table, and the training loss's
    max − min (``loss``): 1 (resp. 0) for a rescaling-invariant quantity."""
    measures = [c for c in table.columns if c not in ("alpha", "train_loss")]
    spread = {m: float(table[m].max() / table[m].min()) for m in measures}
    return {**spread, "loss": float(table["train_loss"].max() - table["train_loss"].min())}


# ------------------------------------------------------------------------------------------------------------
# Verdicts


def verdict_correlation(interval, expected_sign: int, what: str) -> Verdict:
    """A correlation claim: supported when the interval of the rank correlation (an `Interval`, or a row with
    low/high) lies on the claimed side of 0, refuted when it lies on the other side, not supported when it
    contains 0. `what` names the correlation in the reason."""
    verdict = verdict_from_interval(float(interval.low), float(interval.high), expected_sign)
    return Verdict(verdict.outcome, f"{what}: {verdict.reason}")


def _combine(verdicts: Sequence[Verdict]) -> Verdict:
    """All parts agree: that outcome; otherwise not supported (or not testable if one part is)."""
    outcomes = {v.outcome for v in verdicts}
    reason = "; ".join(v.reason for v in verdicts)
    if len(outcomes) == 1:
        return Verdict(outcomes.pop(), reason)
    if NOT_TESTABLE in outcomes:
        return not_testable(reason)
    return Verdict(NOT_SUPPORTED, f"the measures disagree: {reason}")


def verdict_flat(correlations: pd.DataFrame) -> Verdict:
    """The claim "SGD converges to flat minima: more noise η/B, flatter", over the matched grid runs
    (`grid_correlations`).

    Supported when the intervals of ρ(η/B, λmax) and of ρ(η/B, normalised sharpness) both lie below 0,
    refuted when both lie above 0, not supported otherwise (an interval contains 0, or the two disagree); not
    testable when an interval is undefined.
    """
    return _combine([
        verdict_correlation(_correlation(correlations, "temperature", m), -1, f"ρ(η/B, {NAMES[m]})")
        for m in ("lambda_max", "normalized_sharpness")
    ])  # fmt: skip


def verdict_generalise(correlations: pd.DataFrame) -> Verdict:
    """The claim "normalised sharpness tracks a larger generalisation gap", over the matched grid runs.

    Supported when the interval of ρ(normalised sharpness, gap) lies above 0, refuted when it lies below 0,
    not supported when it contains 0.
    """
    row = _correlation(correlations, "normalized_sharpness", "gap")
    return verdict_correlation(row, +1, "ρ(normalised sharpness, gap)")


def verdict_escape(interval: Interval | None) -> Verdict:
    """The claim "noise escapes sharp regions: from the same sharp minimum, SGD ends flatter than GD".

    Supported when the interval of the paired λmax ratio SGD/GD at the end (`escape_interval`) lies below 1,
    refuted when it lies above 1, not supported when it contains 1; not testable with fewer than two seeds.
    """
    if interval is None:
        return not_testable("fewer than two seeds have both an SGD and a GD continuation")
    verdict = verdict_from_interval(interval.low, interval.high, -1, null=1.0)
    return Verdict(verdict.outcome, f"λmax ratio SGD/GD at the end: {verdict.reason}")


def verdict_keskar(intervals: Mapping[str, Interval] | None) -> Verdict:
    """Keskar et al.'s claim "large batches find sharper minima", at equal training loss.

    Supported when the intervals of the geometric-mean ratio large/small of λmax and of normalised sharpness
    (`keskar_intervals`) both lie above 1, refuted when both lie below 1, not supported otherwise; not
    testable here when the two batch sizes did not both reach the target loss at any step size (fewer than
    two pairs).
    """
    if intervals is None:
        return not_testable(
            "the smallest and the largest batch did not both reach the target training loss at any step size"
        )
    parts = []
    for m in ("lambda_max", "normalized_sharpness"):
        verdict = verdict_from_interval(intervals[m].low, intervals[m].high, +1, null=1.0)
        parts.append(Verdict(verdict.outcome, f"{NAMES[m]} ratio large/small: {verdict.reason}"))
    return _combine(parts)


def verdict_in_band(low: float, high: float, band: tuple[float, float] = EOS_BAND) -> Verdict:
    """A claim "the value is ≈ 1", decided on its interval [low, high] against a tolerance band [a, b]:

    - supported when the interval lies inside the band (a ≤ low and high ≤ b),
    - refuted when it lies entirely outside (high < a or low > b),
    - not supported otherwise (it straddles an edge of the band: too wide to tell),
    - not testable when a bound is NaN.

    >>> [verdict_in_band(*ci).outcome for ci in ((0.95, 1.05), (1.3, 1.6), (0.9, 1.3))]
    ['supported', 'refuted', 'not supported']
    """
    a, b = band
    if not a < b:
        raise ValueError(f"the band must have a < b, got {band}")
    if math.isnan(low) or math.isnan(high):
        return not_testable("the interval is undefined (too few runs)")
    if low > high:
        raise ValueError(f"the interval must have low <= high, got [{low}, {high}]")
    interval = f"[{low:.3g}, {high:.3g}]"
    if a <= low and high <= b:
        return Verdict(SUPPORTED, f"the interval {interval} lies inside [{a:g}, {b:g}]")
    if high < a or low > b:
        return Verdict(REFUTED, f"the interval {interval} lies outside [{a:g}, {b:g}]")
    return Verdict(NOT_SUPPORTED, f"the interval {interval} straddles an edge of [{a:g}, {b:g}]")


def verdict_eos(runs: pd.DataFrame, loss: str, *, resamples: int = 2000, seed: int = 0) -> Verdict:
    """The claim "GD's sharpness is set by its step size: EoS ratio ≈ 1", for one loss.

    `verdict_in_band` of the cluster-bootstrap interval of the mean EoS ratio over that loss's runs that
    reached the onset (`eos_ratio_interval`) against `EOS_BAND` = [0.85, 1.15]: supported when the interval
    lies inside the band, refuted when it lies entirely outside, not supported when it straddles an edge; not
    testable when fewer than two settings reached the onset.
    """
    mine = runs[runs["reached"].astype(bool) & (runs["loss"] == loss)]
    if mine["cell"].nunique() < 2:
        return not_testable(f"fewer than two settings with {loss} reached the edge of stability")
    ci = eos_ratio_interval(runs, loss=loss, resamples=resamples, seed=seed)
    verdict = verdict_in_band(ci.low, ci.high)
    return Verdict(verdict.outcome, f"EoS ratio ({loss}): {verdict.reason}")


# ------------------------------------------------------------------------------------------------------------
# Glued numbers


def _bounds(low: float, high: float) -> str:
    """'[low, high]' of a correlation, two decimals ('n/a' for an undefined bound)."""
    return "[" + ", ".join("n/a" if math.isnan(v) else f"{v:.2f}" for v in (low, high)) + "]"


def _list(values, fmt: str = "{:g}") -> str:
    return ", ".join(fmt.format(v) for v in values) or "none"


def setup_numbers(sizes: Sizes, profile: str) -> dict:
    """Glued values of the chapter's set-up."""
    return {"profile": profile, "num_seeds": len(sizes.seeds), "seeds": _list(sizes.seeds),
            "transformer_seeds": _list(sizes.eos_transformer.seeds),
            "eos_mlp_seeds": _list(sizes.eos_mlp.seeds), "curvature_samples": sizes.curvature_samples,
            "adaptive_rho": ADAPTIVE_RHO, "eos_onset": EOS_ONSET,
            "eos_band": f"[{EOS_BAND[0]:g}, {EOS_BAND[1]:g}]", "level": f"{LEVEL:.0%}"}  # fmt: skip


def eos_numbers(sizes: Sizes, runs: pd.DataFrame, cells: pd.DataFrame) -> dict:
    """Glued values of the edge-of-stability section: sizes, counts, and every EoS ratio as 'mean [CI]'."""

    def ratio(column="phase_ratio_mean", **where):
        ci = eos_ratio_interval(runs, column=column, resamples=sizes.resamples, **where)
        return "not reached" if ci is None else format_estimate(ci)

    transformer = _init("transformer", _mnist1d(), 0)
    out = {"eos_cells": len(cells), "eos_cells_reached": int((cells["reached"] == cells["seeds"]).sum()),
           "eos_runs": len(runs), "eos_runs_reached": int(runs["reached"].sum()), "eos_ratio": ratio(),
           "eos_ratio_after": ratio("ratio_mean"),
           "transformer_params": sum(p.numel() for p in transformer.parameters())}  # fmt: skip
    for arch, spec in sizes.eos.items():
        out.update({f"eos_{arch}_train": spec.num_train, f"eos_{arch}_steps": spec.steps,
                    f"eos_{arch}_every": spec.track_every})  # fmt: skip
        for loss in LOSSES:
            out[f"eos_ratio_{arch}_{loss}"] = ratio(arch=arch, loss=loss)
            out[f"eos_after_{arch}_{loss}"] = ratio("ratio_mean", arch=arch, loss=loss)
    for loss in LOSSES:
        out[f"eos_ratio_{loss}"] = ratio(loss=loss)
    return out


def _unmatched(runs: pd.DataFrame, cells: pd.DataFrame, max_steps: int) -> str:
    """The grid cells where some seed did not reach the target, with the lowest loss those seeds got to."""
    parts = []
    for r in cells[cells["reached"] < cells["seeds"]].itertuples():
        cell = runs[(runs["batch_size"] == r.batch_size) & (runs["lr"] == r.lr)]
        lowest = cell.loc[~cell["reached"].astype(bool), "train_loss"].min()
        parts.append(f"B = {r.batch_size}, η = {r.lr:g} ({r.seeds - r.reached} of {r.seeds} seeds, "
                     f"training loss {lowest:.3g} or more after {max_steps} steps)")  # fmt: skip
    return "; ".join(parts) or "none"


def grid_numbers(
    sizes: Sizes, runs: pd.DataFrame, cells: pd.DataFrame, correlations: pd.DataFrame, pairs: pd.DataFrame
) -> dict:
    """Glued values of the grid section: sizes, matching, correlations (``rho_*`` the estimate, ``rho_*_ci``
    its interval '[low, high]') and Keskar et al.'s comparison (per step size, and pooled with intervals)."""
    matched = runs[runs["reached"].astype(bool)]
    loss = functools.partial(_text, resamples=sizes.resamples, digits=4)
    out = {
        "grid_target_loss": sizes.target_loss, "grid_max_steps": sizes.max_steps,
        "grid_check_every": sizes.check_every, "grid_batch_sizes": _list(sizes.batch_sizes),
        "grid_lrs": _list(sizes.lrs),
        "grid_temp_range": f"{cells['temperature'].min():.2g} to {cells['temperature'].max():.2g}",
        "grid_runs": len(runs), "grid_matched": len(matched),
        "grid_train_minutes": float(runs["train_seconds"].sum() / 60),
        "matched_loss_range": f"{matched['train_loss'].min():.3f} to {matched['train_loss'].max():.3f}",
        "matched_train_acc": f"{matched['train_acc'].min():.4f}",
        "matched_steps_range": f"{matched['steps'].min():.0f} to {matched['steps'].max():.0f}",
        "unmatched_cells": _unmatched(runs, cells, sizes.max_steps),
        "small_batch": sizes.small_batch, "large_batch": sizes.large_batch,
        "large_batch_train_loss": loss(matched.loc[matched["batch_size"] == sizes.large_batch, "train_loss"]),
        "small_batch_train_loss": loss(matched.loc[matched["batch_size"] == sizes.small_batch, "train_loss"]),
    }  # fmt: skip
    names = {"temperature": "temp", "gap": "gap", "test_acc": "acc"}
    for r in correlations.itertuples():
        key = f"rho_temp_{r.y}" if r.x == "temperature" else f"rho_{names[r.y]}_{r.x}"
        out[key] = float(r.estimate)
        out[f"{key}_ci"] = _bounds(r.low, r.high)
    per_lr = pairs.groupby("lr")[["lambda_max_ratio", "ns_ratio", "acc_diff"]].mean()
    out.update({
        "keskar_lrs": _list(per_lr.index), "keskar_lmax_ratio": _list(per_lr["lambda_max_ratio"], "{:.2g}"),
        "keskar_ns_ratio": _list(per_lr["ns_ratio"], "{:.2g}"),
        "keskar_acc_diff": _list(per_lr["acc_diff"], "{:+.3f}"),
        "keskar_sharper_count": int((per_lr["lambda_max_ratio"] > 1).sum()),
        "keskar_ns_sharper_count": int((per_lr["ns_ratio"] > 1).sum()),
        "keskar_worse_count": int((per_lr["acc_diff"] < 0).sum()), "keskar_num_lrs": len(per_lr),
        "keskar_pairs": len(pairs),
    })  # fmt: skip
    intervals = keskar_intervals(pairs, resamples=sizes.resamples)
    for key, m in (("lmax", "lambda_max"), ("ns", "normalized_sharpness"), ("acc", "test_acc")):
        out[f"keskar_{key}_ci"] = "none" if intervals is None else format_estimate(intervals[m])
    return out


def escape_numbers(sizes: Sizes, ends: pd.DataFrame, runs: pd.DataFrame) -> dict:
    """Glued values of the escape section (`ends` from `escape_ends`, `runs` the grid runs): 'mean [CI]' over
    seeds of the starts, the changes and the ends, and the paired λmax ratio SGD/GD
    (``escape_sgd_over_gd``)."""
    starts = runs[(runs["batch_size"] == sizes.large_batch) & (runs["lr"] == sizes.escape_lr)]
    near = runs[(runs["batch_size"] == sizes.small_batch) & (runs["lr"] == sizes.escape_lr)]
    near = near[near["reached"].astype(bool)]
    by_mode = {m: g.set_index("seed") for m, g in ends.groupby("mode")}
    text = functools.partial(_text, resamples=sizes.resamples)
    loss = functools.partial(_text, resamples=sizes.resamples, digits=4)
    interval = escape_interval(ends, resamples=sizes.resamples)
    out = {
        "escape_lr": sizes.escape_lr, "escape_steps": sizes.escape_steps, "escape_batch": sizes.escape_batch,
        "escape_every": sizes.escape_every, "escape_start_loss": loss(starts["train_loss"]),
        "escape_start_reached": int(starts["reached"].sum()),
        "escape_lmax_start": text(by_mode["SGD"]["lmax_start"]),
        "escape_sgd_train_peak": loss(by_mode["SGD"]["train_peak"]),
        "escape_small_batch_lmax": text(near["lambda_max"], missing="not matched"),
        "escape_flatter_seeds": int((by_mode["SGD"]["lmax_end"] < by_mode["GD"]["lmax_end"]).sum()),
        "escape_sgd_over_gd": "none" if interval is None else format_estimate(interval),
    }  # fmt: skip
    for mode, g in by_mode.items():
        key = mode.lower()
        out.update({f"escape_{key}_ratio": text(g["lmax_ratio"]),
                    f"escape_{key}_train_end": loss(g["train_end"]),
                    f"escape_{key}_test_change": text(g["test_end"] - g["test_start"]),
                    f"escape_{key}_acc_change": text(g["acc_end"] - g["acc_start"])})  # fmt: skip
    return out


def rescaling_numbers(sizes: Sizes, table: pd.DataFrame) -> dict:
    """Glued values of the rescaling section: the spread of every measure (``spread_<measure>``)."""
    return {"rescale_seed": sizes.seeds[0], "alpha_range": f"{min(sizes.alphas):g} to {max(sizes.alphas):g}",
            **{f"spread_{m}": v for m, v in rescaling_spread(table).items()}}  # fmt: skip


def verdict_table(
    sizes: Sizes, eos: pd.DataFrame, correlations: pd.DataFrame, pairs: pd.DataFrame, ends: pd.DataFrame
) -> pd.DataFrame:
    """The chapter's verdicts: one row per claim (key, claim, verdict, reason), from the EoS runs
    (`eos_runs`), the grid correlations, Keskar et al.'s pairs and the escape ends. The EoS claim is decided
    per loss and reads e.g. "supported for the squared loss, refuted for cross-entropy"."""
    r = sizes.resamples
    batches = f"B = {sizes.large_batch} vs {sizes.small_batch}"
    by_loss = {loss: verdict_eos(eos, loss, resamples=r) for loss in ("mse", "ce")}
    claims = {
        "escape": ("Noise escapes sharp regions (SGD ends flatter than GD)",
                   verdict_escape(escape_interval(ends, resamples=r))),
        "keskar": (f"Large batches find sharper minima (Keskar et al.; {batches})",
                   verdict_keskar(keskar_intervals(pairs, resamples=r))),
        "flat": ("SGD converges to flat minima (more noise η/B, flatter)", verdict_flat(correlations)),
        "generalise": ("Normalised sharpness tracks a larger generalisation gap",
                       verdict_generalise(correlations)),
    }  # fmt: skip
    rows = [(key, claim, v.outcome, v.reason) for key, (claim, v) in claims.items()]
    rows.append(("eos", "GD's sharpness is set by its step size (EoS ratio ≈ 1)",
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
                    ax.plot(one["step"], one["lambda_max"], color=f"C{i}", lw=1, alpha=0.8,
                            label=f"η = {lr:g}" if j == 0 else None)  # fmt: skip
                ax.axhline(2 / lr, color=f"C{i}", ls="--", lw=1)
            ax.set(title=f"{LABELS[arch]}, {LABELS[loss]}", ylabel=r"$\lambda_{\max}$", yscale="log")
            log_ticks(ax.yaxis)
            if row == 1:
                ax.set(xlabel="gradient-descent step")
            ax.legend(fontsize=7, loc="best")
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
    for ax, ylabel in zip(axes, (r"$\lambda_{\max}$", "training loss", "test loss"), strict=True):
        ax.set(xlabel="steps after the large-batch solution", ylabel=ylabel)
    for ax in axes[:2]:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    axes[0].legend(fontsize=8)
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
