"""RQ3's cached task: one hyperparameter configuration, its seeds trained to a training cross-entropy and measured.

`configuration_task` is the module-level ``compute(settings) -> dict`` that `landscape.paper.experiments.rq3`
runs through `landscape.paper.experiments.common.run_cached` (cached under its settings and `DEPENDS_ON`: this
module, the training code, the data, the models and the norm baselines; the probes always). One task trains every
seed of one configuration, because two of the measures belong to a pair of seeds: their disagreement on
unlabelled data and the loss barrier between them after permutation alignment.

Every network is trained with SGD (momentum 0.9, constant step) until its full training cross-entropy is at most
``stop_loss`` at an evaluation (Jiang et al. 2020's stop rule, so that every measure is compared at about the same
training loss), or for ``max_steps``; a run that diverges or never reaches the target is returned as such (its
measures NaN), counted by the chapter, never dropped silently.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Mapping

import torch

from ... import complexity
from ...alignment import align_permutation
from ...data import Dataset, digits, load_dataset, mnist1d_signals
from ...density import effective_rank, spectral_density
from ...eigen import top_eigenvalues
from ...flatness import average_case_sharpness, epsilon_sharpness, pac_bayes_sigma, worst_case_sharpness
from ...interpolation import interpolation_barrier
from ...models import build_model
from ...operators import HessianOperator
from ...sharpness import normalized_sharpness
from ...trace import hessian_trace
from ...train import TrainConfig, evaluate, loss_function, train
from .. import probe_checks
from ..probe_checks import rescale_layers

__all__ = [
    "ADAPTIVE_RHO",
    "AVERAGE_RHO",
    "DATASETS",
    "DEPENDS_ON",
    "EPSILON",
    "GEOMETRY",
    "MEASURES",
    "PAC_TARGET",
    "PAIR_MEASURES",
    "configuration_task",
    "task_data",
]

ADAPTIVE_RHO = 0.1  # adaptive worst-case sharpness: ‖δ / |θ|‖₂ ≤ ρ
AVERAGE_RHO = 0.05  # adaptive average-case sharpness: δ ~ N(0, ρ² diag(θ²))
EPSILON = 1e-3  # Keskar et al.'s ε-sharpness radius
PAC_TARGET = 0.1  # PAC-Bayes flatness: the largest σ′ whose expected training-error increase stays ≤ 0.1
DATASETS = ("mnist1d", "digits")
# what each network's row holds besides its settings, by kind (the chapter's measure list is built from these)
GEOMETRY = (
    "lambda_max",
    "trace_per_param",
    "effective_rank",
    "normalized_sharpness",
    "normalized_trace",
    "adaptive_worst_sharpness",
    "adaptive_average_sharpness",
    "epsilon_sharpness",
    "pac_bayes_flatness",
    "pac_bayes_mag_flatness",
)
NORMS = (
    "num_params",
    "param_norm",
    "dist_from_init",
    "log_path_norm",
    "log_prod_spectral",
    "log_sum_frobenius",
    "inverse_margin",
    "log_spectral_over_margin",
)
OPTIMISATION = ("steps_to_target", "gradient_noise")
PAIR_MEASURES = ("barrier", "disagreement")  # a configuration's seeds, copied onto each of its networks
MEASURES = GEOMETRY + NORMS + OPTIMISATION + PAIR_MEASURES
# the code every cached result of this chapter runs beyond the probes (the probes are always included)
DEPENDS_ON = ("data", "models", "train", "complexity", probe_checks.__name__, __name__)


@functools.lru_cache(maxsize=4)
def task_data(dataset: str, extra_test: int, extra_seed: int) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """The training data and the test signals of `dataset` (loaded once per process).

    MNIST-1D: the default set's 4,000 training signals; its test signals are `extra_test` further signals
    generated with `extra_seed` (`landscape.data.mnist1d_signals`), far more than the default 1,000, so gaps a
    point apart can be ranked. Digits: scikit-learn's bundled set (`landscape.data.digits`), whose own 597 test
    images are all there is (`extra_test` ignored).
    """
    if dataset == "mnist1d":
        data = load_dataset("mnist1d")
        x, y = mnist1d_signals(extra_test, extra_seed)
        return data, x, y
    if dataset == "digits":
        data = digits()
        return data, data.x_test, data.y_test
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def _config(settings: Mapping, seed: int) -> TrainConfig:
    return TrainConfig(
        model="mlp",
        model_config={"depth": settings["depth"], "width": settings["width"], "activation": "relu"},
        optimizer="sgd",
        lr=settings["lr"],
        momentum=0.9,
        weight_decay=settings["weight_decay"],
        batch_size=settings["batch_size"],
        steps=settings["max_steps"],
        eval_every=settings["eval_every"],
        stop_loss=settings["stop_loss"],
        seed=seed,
    )


def _init(settings: Mapping, data: Dataset, seed: int) -> torch.nn.Module:
    return build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, seed=seed,
                       depth=settings["depth"], width=settings["width"], activation="relu")  # fmt: skip


def _error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return 1.0 - evaluate(model, loss_function("ce"), x, y)["acc"]


def _geometry(model: torch.nn.Module, sample: tuple, settings: Mapping) -> dict:
    """This project's probes on the training sample (cross-entropy): curvature, sharpness and flatness."""
    loss_fn, tol, seed = loss_function("ce"), settings["tol"], settings["measure_seed"]
    op = HessianOperator(model, loss_fn, sample)
    density = spectral_density(
        op, num_probes=settings["slq_probes"], num_steps=settings["slq_steps"], seed=seed
    )
    normalised = normalized_sharpness(model, loss_fn, sample, tol=tol, trace_matvecs=settings["trace_matvecs"],
                                      seed=seed)  # fmt: skip
    pac = {
        aware: pac_bayes_sigma(model, loss_fn, sample, target=PAC_TARGET, magnitude_aware=aware,
                               num_samples=settings["pac_samples"], seed=seed)
        for aware in (False, True)
    }  # fmt: skip
    steps = settings["adaptive_steps"]
    return {
        "lambda_max": float(top_eigenvalues(op, 1, tol=tol, seed=seed).values[0]),
        "trace_per_param": hessian_trace(op, settings["trace_matvecs"], seed=seed).estimate / op.dim,
        "effective_rank": effective_rank(density),
        "normalized_sharpness": normalised.lambda_max,
        "normalized_trace": normalised.trace,
        "adaptive_worst_sharpness": worst_case_sharpness(model, loss_fn, sample, ADAPTIVE_RHO, adaptive=True,
                                                         steps=steps, seed=seed).value,
        "adaptive_average_sharpness": average_case_sharpness(model, loss_fn, sample, AVERAGE_RHO,
                                                             num_samples=settings["average_samples"],
                                                             seed=seed).value,
        "epsilon_sharpness": epsilon_sharpness(model, loss_fn, sample, EPSILON, steps=steps, seed=seed).value,
        "pac_bayes_flatness": pac[False].flatness,
        "pac_bayes_mag_flatness": pac[True].flatness,
    }  # fmt: skip


def _network(settings: Mapping, data: Dataset, test: tuple, seed: int) -> tuple[dict, torch.nn.Module | None]:
    """Train one seed and measure it: (its row, the trained model or None when it did not reach the target)."""
    tic = time.perf_counter()
    result = train(_config(settings, seed), data=data)
    seconds = time.perf_counter() - tic
    end = result.history[-1]
    row = {"seed": seed, "status": result.status, "reached": result.status == "reached",
           "steps": end["step"], "train_loss": end["train_loss"], "train_seconds": seconds}  # fmt: skip
    if not row["reached"]:
        return row | dict.fromkeys(MEASURES, math.nan), None
    model, init = _init(settings, data, seed), _init(settings, data, seed)
    model.load_state_dict(result.state_dict)
    alpha = settings.get("alpha", 1.0)
    if alpha != 1.0:  # Dinh et al.'s function-preserving rescaling of the trained network (the check)
        model = rescale_layers(model, 0, alpha)
    x, y = data.train
    half = len(test[1]) // 2
    train_error = _error(model, x, y)
    test_a, test_b = (
        _error(model, test[0][:half], test[1][:half]),
        _error(model, test[0][half:], test[1][half:]),
    )
    sample = (x[: settings["curvature_samples"]], y[: settings["curvature_samples"]])
    tic = time.perf_counter()
    row |= {
        "train_error": train_error,
        "test_error": _error(model, *test),
        "test_error_a": test_a,
        "test_error_b": test_b,
        "gap": test_a - train_error,  # the target: measured on the first half of the test signals ...
        "gap_b": test_b - train_error,  # ... and the same on the other half (the noisy oracle)
        **_geometry(model, sample, settings),
        **complexity.norm_measures(model, init, x, y, data.input_shape),
        "steps_to_target": float(result.reached_step),
        "gradient_noise": complexity.gradient_noise(model, loss_function("ce"), *sample),
    }  # fmt: skip
    row["measure_seconds"] = time.perf_counter() - tic
    return row, model


def configuration_task(settings: Mapping) -> dict:
    """Train and measure every seed of one configuration, then its seed pairs.

    `settings`: dataset, extra_test, extra_seed, lr, batch_size, width, depth, weight_decay, seeds, stop_loss,
    max_steps, eval_every, curvature_samples, tol, trace_matvecs, slq_probes, slq_steps, adaptive_steps,
    average_samples, pac_samples, barrier_points, measure_seed, and optionally alpha: every
    trained network is measured after Dinh et al.'s rescaling (first layer × α, second × 1/α; the function is
    unchanged), so that a measure that moves under it is exposed (training is deterministic, so these are the
    population's networks).

    Returns ``{"rows": [...]}``, one row per seed: status, steps, training loss, errors (training; test on
    the first and second halves of the test signals), the gap (test error on the first half minus the training
    error) and its copy on the second half, every measure of `MEASURES` (NaN for a run that did not reach the
    target), seconds. The pair measures of a network are the means over its pairs with the configuration's other
    reached seeds: the disagreement on the second half of the test signals (unlabelled; the gap uses the
    first) and the loss barrier on the
    training sample after weight-matching alignment (`align_permutation`).
    """
    data, x_test, y_test = task_data(settings["dataset"], settings["extra_test"], settings["extra_seed"])
    rows, models = [], {}
    for seed in settings["seeds"]:
        row, model = _network(settings, data, (x_test, y_test), seed)
        rows.append(row)
        if model is not None:
            models[seed] = model
    pairs: dict[int, dict[str, list[float]]] = {s: {"barrier": [], "disagreement": []} for s in models}
    x, y = data.train
    sample = (x[: settings["curvature_samples"]], y[: settings["curvature_samples"]])
    unlabelled = x_test[len(y_test) // 2 :]  # the half the gap is not measured on
    for a, b in itertools.combinations(sorted(models), 2):
        aligned = align_permutation(models[a], models[b], seed=settings["measure_seed"])
        barrier = interpolation_barrier(models[a], aligned, loss_function("ce"), sample,
                                        num_points=settings["barrier_points"]).height  # fmt: skip
        agree = complexity.disagreement(models[a], models[b], unlabelled)
        for s in (a, b):
            pairs[s]["barrier"].append(barrier)
            pairs[s]["disagreement"].append(agree)
    for row in rows:
        if row["seed"] in pairs and pairs[row["seed"]]["barrier"]:
            row |= {name: sum(values) / len(values) for name, values in pairs[row["seed"]].items()}
    return {"rows": rows}
