"""RQ2's cached task: one measurement of one trained network (or of a pair of seeds), and the constants it uses.

`measure_task` is the module-level ``compute(settings) -> dict`` that `landscape.paper.experiments.rq2` runs
through `landscape.paper.experiments.common.run_cached`, which caches each result under its settings and
`DEPENDS_ON` (this module, the training code, the data and the models; the probes always). The chapter's
summaries, plots and verdict rules live in `landscape.paper.experiments.rq2`, so editing them recomputes nothing.

Kinds of measurement (``settings["probe"]``):

- ``"curvature"``: `landscape.geometry.measure_curvature` on the first ``hessian_samples`` training samples.
- ``"slices"``: 1-D slices with their ruggedness along a filter-normalised random direction and the
  filter-normalised top Hessian eigenvector, on every window of `WINDOWS`.
- ``"plane"``: a 2-D slice on a filter-normalised random plane, α, β ∈ [−`PLANE_RADIUS`, `PLANE_RADIUS`].
- ``"barrier"``: the loss on the line between two seeds on the first ``eval_samples`` training samples (raw,
  and after weight-matching alignment when ``settings["aligned"]``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...results import load_run

__all__ = [
    "ADAPTIVE_RADIUS",
    "DEPENDS_ON",
    "LOCAL_RADIUS",
    "PLANE_RADIUS",
    "PROBES",
    "WINDOWS",
    "measure_task",
]

ADAPTIVE_RADIUS = 0.01  # adaptive ℓ∞ sharpness: each weight moves by at most 1% of its magnitude
LOCAL_RADIUS = 0.1  # the local slice window α ∈ [−0.1, 0.1]
WINDOWS = {"wide": 1.0, "local": LOCAL_RADIUS}  # slice windows: name → radius r of α ∈ [−r, r]
PLANE_RADIUS = 1.0  # the 2-D slice covers α, β ∈ [−1, 1]
PROBES = ("curvature", "slices", "plane", "barrier")
# the code every cached result of this chapter runs beyond the probes (the probes are always included)
DEPENDS_ON = ("data", "models", "train", "dynamics", __name__)


def _samples(count: int):
    """The first `count` MNIST-1D training samples as one batch."""
    from ...data import load_dataset

    data = load_dataset("mnist1d")
    return [(data.x_train[:count], data.y_train[:count])]


def _curvature(model, loss_fn, s: Mapping) -> dict:
    from ...geometry import measure_curvature

    return measure_curvature(
        model, loss_fn, _samples(s["hessian_samples"]), k=s["k"], tol=s["tol"], trace_matvecs=s["trace_matvecs"],
        slq_probes=s["slq_probes"], slq_steps=s["slq_steps"], adaptive_radius=s["radius"],
        adaptive_steps=s["adaptive_steps"], seed=s["seed"],
    ).to_dict()  # fmt: skip


def _slices(model, loss_fn, s: Mapping) -> dict:
    import torch

    from ... import HessianOperator, normalize_direction, random_direction, ruggedness, top_eigenvalues
    from ...ruggedness import count_local_minima

    data = _samples(s["hessian_samples"])
    random_dir = random_direction(model, "filter", seed=s["seed"])
    top = top_eigenvalues(HessianOperator(model, loss_fn, data), 1, tol=s["tol"], seed=s["seed"])
    eigen_dir = normalize_direction(model, top.vectors[:, 0], "filter")
    out = {}
    for name, direction in (("random", random_dir), ("eigen", eigen_dir)):
        for window, radius in s["windows"].items():
            alphas = torch.linspace(-radius, radius, s["points"], dtype=torch.float64)
            rough = ruggedness(model, loss_fn, data, direction, alphas)
            out[f"{name}_{window}"] = {
                "ruggedness": rough.value, "local_minima": count_local_minima(rough.losses),
                "alphas": alphas.tolist(), "losses": rough.losses.tolist(), "quadratic": rough.quadratic.tolist(),
            }  # fmt: skip
    return out


def _plane(model, loss_fn, s: Mapping) -> dict:
    import torch

    from ... import random_direction, slice_2d

    grid = torch.linspace(-s["radius"], s["radius"], s["grid"], dtype=torch.float64)
    first = random_direction(model, "filter", seed=s["seed"])
    second = random_direction(model, "filter", seed=s["seed"] + 1)
    plane = slice_2d(model, loss_fn, _samples(s["hessian_samples"]), first, second, grid, grid)
    return {"grid": grid.tolist(), "losses": plane.losses.tolist()}


def _barrier(model, other, loss_fn, s: Mapping) -> dict:
    from ... import align_permutation, interpolation_barrier

    variants = {"raw": other}
    if s["aligned"]:
        variants["aligned"] = align_permutation(model, other, seed=s["seed"])
    out = {}
    for name, second in variants.items():
        barrier = interpolation_barrier(
            model, second, loss_fn, _samples(s["eval_samples"]), num_points=s["points"]
        )
        out[name] = {"height": barrier.height, "instability": barrier.instability,
                     "losses": barrier.losses.tolist(), "alphas": barrier.alphas.tolist()}  # fmt: skip
    return out


def measure_task(settings: Mapping) -> dict:
    """One measurement (``settings["probe"]``, one of `PROBES`) of the stored run(s) ``settings["runs"]`` (from the
    run store ``settings.get("root")``, the default store when absent), uncached: `run_cached` caches it.

    Returns:
        curvature: every `CurvatureProfile` field; slices: {"<direction>_<window>": ruggedness, local_minima,
        alphas, losses, quadratic}; plane: grid, losses; barrier: {"raw" (and "aligned"): height, instability,
        losses, alphas}.
    """
    from ...train import loss_function

    probe = settings.get("probe")
    if probe not in PROBES:
        raise ValueError(f"unknown measurement {probe!r}; expected one of {PROBES}")
    models = [load_run(key, settings.get("root")).model() for key in settings["runs"]]
    loss_fn = loss_function("ce")
    if probe == "barrier":
        if len(models) != 2:
            raise ValueError(f"a barrier needs two runs, got {len(models)}")
        return _barrier(models[0], models[1], loss_fn, settings)
    return {"curvature": _curvature, "slices": _slices, "plane": _plane}[probe](models[0], loss_fn, settings)
