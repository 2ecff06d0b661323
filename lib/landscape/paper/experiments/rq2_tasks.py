"""RQ2's cached task: one measurement of one trained network (or of a pair of seeds), and the constants it uses.

`measure_task` is the module-level ``compute(settings) -> dict`` that `landscape.paper.experiments.rq2` runs
through `landscape.paper.experiments.common.run_cached`, which caches each result under its settings and
`DEPENDS_ON` (this module, the training code, the data and the models; the probes always). The chapter's
summaries, plots and verdict rules live in `landscape.paper.experiments.rq2`, so editing them recomputes nothing.

Kinds of measurement (``settings["probe"]``):

- ``"curvature"``: `landscape.geometry.measure_curvature` on the first ``hessian_samples`` training samples.
- ``"slices"``: the roughness (`landscape.ruggedness.slice_roughness`) of 1-D slices along ``directions``
  filter-normalised random directions and along the top Hessian eigenvector itself (unit norm, not normalised
  afterwards, so the slice runs along a true eigenvector), on every curvature-scaled window of `WINDOWS`.
- ``"plane"``: a 2-D slice on a filter-normalised random plane, α, β ∈ [−`PLANE_RADIUS`, `PLANE_RADIUS`].
- ``"barrier"``: the loss on the line between two seeds on the first ``eval_samples`` training samples (raw,
  and after weight-matching alignment when ``settings["aligned"]``).
- ``"classes"``: of a network stopped at a moderate training loss, the top ``k`` eigenpairs of the Gauss–Newton
  matrix (block Lanczos, block size 2), its trace, and Papyan's class / cross-class means
  (`landscape.hierarchy.class_structure`) with the overlap of each eigenvector with the class means' span.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...results import load_run

__all__ = [
    "ADAPTIVE_RADIUS",
    "DEPENDS_ON",
    "PLANE_RADIUS",
    "PROBES",
    "WINDOWS",
    "measure_task",
]

ADAPTIVE_RADIUS = 0.01  # adaptive ℓ∞ sharpness: each weight moves by at most 1% of its magnitude
# roughness windows: name → w, the slice spans α ∈ [−w/√(dᵀHd), w/√(dᵀHd)], where the quadratic model rises by
# ½w² (0.125 and 2 nats): the local scale of a step, and the scale of Li et al.'s plots
WINDOWS = {"local": 0.5, "wide": 2.0}
PLANE_RADIUS = 1.0  # the 2-D slice covers α, β ∈ [−1, 1]
PROBES = ("curvature", "slices", "plane", "barrier", "classes")
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
    from ... import HessianOperator, random_direction, slice_roughness, top_eigenvalues

    data = _samples(s["hessian_samples"])
    top = top_eigenvalues(HessianOperator(model, loss_fn, data), 1, tol=s["tol"], seed=s["seed"])
    directions = {"eigen": top.vectors[:, 0]}
    for i in range(s["directions"]):
        directions[f"random {i}"] = random_direction(model, "filter", seed=1000 * s["seed"] + i)
    rows = []
    for name, direction in directions.items():
        for window, w in s["windows"].items():
            rough = slice_roughness(model, loss_fn, data, direction, window=w, points=s["points"])
            rows.append({
                "direction": name, "kind": name.split()[0], "window": window, "roughness": rough.value,
                "local_minima": rough.local_minima, "curvature": rough.curvature, "radius": rough.radius,
                "alphas": rough.alphas.tolist(), "losses": rough.losses.tolist(), "smooth": rough.smooth.tolist(),
            })  # fmt: skip
    return {"slices": rows, "lambda_max": float(top.values[0])}


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


def _classes(model, loss_fn, s: Mapping) -> dict:
    from ... import GGNOperator, class_structure, hessian_trace, top_eigenvalues

    data = _samples(s["hessian_samples"])
    ggn = GGNOperator(model, loss_fn, data)
    top = top_eigenvalues(ggn, s["k"], tol=s["tol"], block_size=2, seed=s["seed"])
    structure = class_structure(model, data)
    # XTrace, not Hutchinson: G is dominated by a few outliers, where XTrace's low-rank part is exact
    trace = hessian_trace(ggn, max(s["trace_matvecs"], 4), method="xtrace", seed=s["seed"])
    return {
        "ggn": top.values.tolist(), "residuals": top.residuals.tolist(), "converged": top.converged,
        "ggn_trace": trace.estimate, "ggn_trace_stderr": trace.stderr,
        "class": structure.class_eigenvalues.tolist(), "cross": structure.cross_eigenvalues[: s["k"]].tolist(),
        "class_trace": structure.class_trace, "cross_trace": structure.cross_trace,
        "overlap": structure.class_overlap(top.vectors).tolist(),
    }  # fmt: skip


def measure_task(settings: Mapping) -> dict:
    """One measurement (``settings["probe"]``, one of `PROBES`) of the stored run(s) ``settings["runs"]`` (from the
    run store ``settings.get("root")``, the default store when absent), uncached: `run_cached` caches it.

    Returns:
        curvature: every `CurvatureProfile` field; slices: {"slices": one row per direction and window
        (direction, kind, window, roughness, local_minima, curvature, radius, alphas, losses, smooth),
        "lambda_max"}; plane: grid, losses; barrier: {"raw" (and "aligned"): height, instability,
        losses, alphas}; classes: ggn (top-k eigenvalues), residuals, converged, ggn_trace and ggn_trace_stderr
        (XTrace, at least 4 products), class and cross (eigenvalues of G_class and of G_cross), class_trace,
        cross_trace, overlap (of each eigenvector with the class means' span).
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
    probes = {"curvature": _curvature, "slices": _slices, "plane": _plane, "classes": _classes}
    return probes[probe](models[0], loss_fn, settings)
