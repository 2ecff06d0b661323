"""RQ1's cached tasks: one training run with its measurements each, and the constants they use.

Every function here is a module-level ``compute(settings) -> dict`` for `landscape.paper.experiments.common.
run_cached`, which caches each result under its settings and `DEPENDS_ON` (this module, the training code, the
data, the models and the probe checks; the probes always). The chapter's summaries, plots and verdict rules live
in `landscape.paper.experiments.rq1`, so editing them recomputes nothing.

- `eos_task`: full-batch GD on a training subset, λmax tracked (edge of stability).
- `grid_task`: plain SGD at one (B, η) until a target training loss, measured there.
- `escape_task`: from a stored grid solution, small-batch SGD or full-batch GD at the same η.
- `rescaling_task`: every sharpness measure of a grid solution under Dinh et al.'s rescaling.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Mapping

import torch

from ...data import Dataset, load_dataset
from ...dynamics import continue_training
from ...eigen import top_eigenvalues
from ...flatness import epsilon_sharpness, worst_case_sharpness
from ...models import build_model
from ...operators import HessianOperator
from ...sharpness import normalized_sharpness
from ...trace import hessian_trace
from ...train import TrainConfig, evaluate, loss_function
from .. import probe_checks
from ..probe_checks import rescale_layers

__all__ = [
    "ADAPTIVE_RHO",
    "ARCHITECTURES",
    "DEPENDS_ON",
    "EPSILON",
    "LOSSES",
    "MLP_CONFIG",
    "TRANSFORMER_CONFIG",
    "eos_task",
    "escape_task",
    "grid_task",
    "init_model",
    "mnist1d",
    "rescaling_task",
]

MLP_CONFIG = {"depth": 2, "width": 100, "activation": "relu"}
# a one-block Transformer with patches of 8 (9.4k parameters): the reference recipe's HVP costs 15x more
TRANSFORMER_CONFIG = {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2, "pooling": "mean"}
ARCHITECTURES = {"mlp": MLP_CONFIG, "transformer": TRANSFORMER_CONFIG}
LOSSES = ("ce", "mse")
ADAPTIVE_RHO = 0.1  # radius of the adaptive worst-case sharpness: ‖δ / |θ|‖₂ ≤ ρ
EPSILON = 1e-3  # radius of Keskar's ε-sharpness in the rescaling experiment
# the code every cached result of this chapter runs beyond the probes (the probes are always included)
DEPENDS_ON = ("data", "models", "train", "dynamics", probe_checks.__name__, __name__)


@functools.lru_cache(maxsize=1)
def mnist1d() -> Dataset:
    """The MNIST-1D data set (loaded once per process)."""
    return load_dataset("mnist1d")


def _curvature_data(data: Dataset, samples: int):
    return data.x_train[:samples], data.y_train[:samples]


def init_model(arch: str, data: Dataset, seed: int) -> torch.nn.Module:
    """The chapter's `arch` ("mlp" or "transformer") for `data`, initialised from `seed`."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    return build_model(
        arch, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed, **ARCHITECTURES[arch]
    )


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
    model = init_model(arch, data, 0)
    model.load_state_dict(
        {k: torch.tensor(v["values"], dtype=getattr(torch, v["dtype"])) for k, v in weights.items()}
    )
    return model


def eos_task(settings: Mapping) -> dict:
    """One edge-of-stability run: full-batch GD (no momentum) from seed `seed`'s initialisation on the first
    `num_train` training samples, λmax of the full-batch loss tracked every `track_every` steps.

    With `dense_steps` > 0 and a tracked ratio λmax·η/2 ≥ `onset`, the run's EoS phase is then tracked at every
    step: GD is run again from the same initialisation to the last tracked point before the onset (t0; GD
    without momentum is deterministic and keeps no optimiser state, so this is the same trajectory) and
    continued for `dense_steps` steps with λmax at each one, so that period-2 oscillations are resolved rather
    than aliased by the sparse grid.

    `settings`: arch, loss, lr, seed, num_train, steps, track_every, tol (and dense_steps, onset). Returns
    status, diverged_step, history (one dict per tracked point; dense points carry ``dense`` True) and seconds.
    """
    arch, seed = settings["arch"], settings["seed"]
    config = TrainConfig(model=arch, model_config=ARCHITECTURES[arch], optimizer="gd", lr=settings["lr"],
                         momentum=0.0, batch_size=None, steps=settings["steps"], loss=settings["loss"],
                         seed=seed)  # fmt: skip
    data = mnist1d()
    subset = data.subset(settings["num_train"])
    tic = time.perf_counter()
    out = continue_training(init_model(arch, data, seed), config, subset, track_every=settings["track_every"],
                            tol=settings["tol"])  # fmt: skip
    result = _stored(out, time.perf_counter() - tic)
    dense, onset = settings.get("dense_steps", 0), settings.get("onset", math.inf)
    above = [h["step"] for h in out.history if h.get("lambda_max", 0.0) * settings["lr"] / 2 >= onset]
    if dense and above:
        before = [h["step"] for h in out.history if h["step"] < above[0]]
        t0 = before[-1] if before else 0
        start = init_model(arch, data, seed)
        if t0 > 0:
            to_t0 = dataclasses.replace(config, steps=t0)
            start.load_state_dict(continue_training(start, to_t0, subset, track_every=t0,
                                                    track_sharpness=False).state_dict)  # fmt: skip
        window = continue_training(start, dataclasses.replace(config, steps=dense), subset, track_every=1,
                                   tol=settings["tol"])  # fmt: skip
        result["history"] += [{**h, "step": h["step"] + t0, "dense": True} for h in window.history]
        result["seconds"] = time.perf_counter() - tic
    return result


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

    `settings`: batch_size, lr, seed, weight_decay (SGD's, default 0), max_steps, check_every, target_loss,
    curvature_samples, tol, trace_matvecs, adaptive_rho, adaptive_steps, measure_seed, keep_weights. Returns ``row`` (the run's
    measurements), ``history`` (the checks) and, with `keep_weights`, ``weights`` (the final weights, for the
    escape and rescaling experiments).
    """
    b, lr, seed = settings["batch_size"], settings["lr"], settings["seed"]
    wd = float(settings.get("weight_decay", 0.0))
    config = TrainConfig(model="mlp", model_config=MLP_CONFIG, optimizer="sgd", lr=lr, momentum=0.0,
                         weight_decay=wd, batch_size=b, steps=settings["max_steps"], seed=seed)  # fmt: skip
    data = mnist1d()
    init = init_model("mlp", data, seed)
    tic = time.perf_counter()
    out = continue_training(init, config, data, track_every=settings["check_every"],
                            track_sharpness=False, target_loss=settings["target_loss"])  # fmt: skip
    seconds = time.perf_counter() - tic
    model = copy.deepcopy(init)
    model.load_state_dict(out.state_dict)
    end = out.history[-1]
    row = {
        "batch_size": b, "lr": lr, "seed": seed, "weight_decay": wd, "temperature": lr / b, "status": out.status,
        "reached": out.status == "reached", "steps": end["step"], "train_seconds": seconds,
        "train_loss": end["train_loss"], "train_acc": end["train_acc"], "test_loss": end["test_loss"],
        "test_acc": end["test_acc"], "gap": end["train_acc"] - end["test_acc"],
        **_measure(model, data, settings),
    }  # fmt: skip
    result = {"row": row, "history": list(out.history)}
    if settings["keep_weights"]:
        result["weights"] = _weights(out.state_dict)
    return result


def _start(settings: Mapping, data: Dataset) -> torch.nn.Module:
    """The grid solution that `settings["start"]` (grid settings with ``keep_weights``) names, read from (or
    computed into) the cache folder `settings["start_cache"]` under the key `run_cached` gives it."""
    from .common import _cached_call

    start = _cached_call((grid_task, dict(settings["start"]), settings["start_cache"], DEPENDS_ON))
    if "weights" not in start:
        raise ValueError(
            f"the start must be a grid run stored with its weights (keep_weights=True), got {settings['start']}"
        )
    return _model("mlp", data, start["weights"])


RETURN_SEED_OFFSET = 10_000  # the return phase draws its minibatch order from seed + this (not a replay)


def escape_task(settings: Mapping) -> dict:
    """One escape run: continue the grid solution `start` for `steps` steps at step `lr`, with minibatches of
    `batch` (small-batch SGD) or full batch (`batch` None: GD) in the data order of `seed`, λmax on the first
    `curvature_samples` training samples every `track_every` steps (only the losses with `track_sharpness`
    False). With `return_steps` > 0, a continuation that
    ends above `target_loss` goes on with the same optimiser (minibatch order from seed + `RETURN_SEED_OFFSET`)
    until the first tracked point whose full training loss is ≤ `target_loss`, for at most `return_steps` more
    steps: its tracked points follow with ``phase`` "return" (the first phase's are "escape"), and its status is
    the run's ("reached", or "finished" when the budget ran out).

    Only a non-finite loss counts as divergence: from a minimum the first minibatch loss can be ~0, so
    "100 × the first loss" would stop SGD at its first larger minibatch loss. A diverged run is returned
    (status ``"diverged"``), not raised.
    """
    data = mnist1d()
    batch = settings["batch"]
    config = TrainConfig(model="mlp", model_config=MLP_CONFIG, optimizer="sgd" if batch else "gd",
                         lr=settings["lr"], momentum=0.0, batch_size=batch, steps=settings["steps"],
                         seed=settings["seed"], divergence_factor=math.inf)  # fmt: skip
    start = _start(settings, data)
    tic = time.perf_counter()
    sample = _curvature_data(data, settings["curvature_samples"])
    track = {"track_every": settings["track_every"], "tol": settings["tol"], "sharpness_data": sample,
             "track_sharpness": settings.get("track_sharpness", True)}  # fmt: skip
    out = continue_training(start, config, data, **track)
    history = [{**h, "phase": "escape"} for h in out.history]
    status, diverged_step = out.status, out.diverged_step
    budget = settings.get("return_steps", 0)
    if budget and status != "diverged" and history[-1]["train_loss"] > settings["target_loss"]:
        start.load_state_dict(out.state_dict)
        again = dataclasses.replace(config, steps=budget, seed=settings["seed"] + RETURN_SEED_OFFSET)
        back = continue_training(start, again, data, target_loss=settings["target_loss"], **track)
        offset = history[-1]["step"]
        history += [{**h, "step": h["step"] + offset, "phase": "return"} for h in back.history[1:]]
        status = back.status
        diverged_step = None if back.diverged_step is None else back.diverged_step + offset
    return {"status": status, "diverged_step": diverged_step, "history": history,
            "seconds": time.perf_counter() - tic}  # fmt: skip


def stability_task(settings: Mapping) -> dict:
    """The linear stability of the grid solution `start` along its top Hessian eigenvector
    (`landscape.stability.linear_stability` on the first `curvature_samples` training samples): λmax, the
    non-uniformity s_v, the eigenvector's residual, and the full training loss there."""
    from ...stability import linear_stability

    data = mnist1d()
    model = _start(settings, data)
    loss_fn, sample = loss_function("ce"), _curvature_data(data, settings["curvature_samples"])
    top = top_eigenvalues(
        HessianOperator(model, loss_fn, sample), 1, tol=settings["tol"], seed=settings["seed"]
    )
    stab = linear_stability(model, loss_fn, sample, top.vectors[:, 0])
    return {"lambda_max": stab.sharpness, "nonuniformity": stab.nonuniformity,
            "eigen_residual": stab.eigen_residual, "start_loss": evaluate(model, loss_fn, *data.train)["loss"],
            "num_train": len(data.y_train)}  # fmt: skip


def rescaling_task(settings: Mapping) -> dict:
    """Every sharpness measure (`_measure` with ``rescaling``) of the grid solution `start` with layer 1 × α
    and layer 2 × 1/α (`alpha`)."""
    data = mnist1d()
    model = rescale_layers(_start(settings, data), 0, float(settings["alpha"]))
    return {"alpha": settings["alpha"], **_measure(model, data, settings, rescaling=True)}
