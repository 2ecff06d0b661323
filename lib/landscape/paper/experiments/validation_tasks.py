"""The validation chapter's measurements: the code its cached tasks run, apart from its summaries and figures.

Each task is a module-level function of one JSON-serialisable settings dict (`landscape.paper.experiments.common.
run_cached`), on the small float64 testbeds of `landscape.paper.probe_checks.make_testbed`:

- `spectrum`: the exact spectrum of the tanh MLP's dense Hessian, the operator's products against it, Lanczos
  and power iteration against the exact top-k eigenvalues, SLQ against the exact smoothed density;
- `trace` (one task per estimator): every (budget, seed) trace estimate on the dense Hessian, and the estimate
  through `HessianOperator` at the largest budget;
- `rescaling`: λmax and normalised sharpness at Dinh-rescaled copies of the ReLU MLP.

Only this module and `probe_checks` are declared as the tasks' code, so editing the chapter's summaries, checks
or figures (`landscape.paper.experiments.validation`) recomputes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import torch

from ... import DenseOperator, HessianOperator, dense_hessian, effective_rank, spectral_density
from ...trace import TRACE_METHODS
from .. import probe_checks as pc

__all__ = [
    "KINDS", "LANCZOS_TOL", "POWER_TOL", "TESTBED_KEYS", "exact_of", "measurement", "rescaling", "spectrum",
    "testbed_of", "trace",
]  # fmt: skip

LANCZOS_TOL = 1e-8  # tolerance Lanczos and the rescaling study run at
POWER_TOL = 1e-3  # PyHessian's stopping rule for power iteration
TESTBED_KEYS = ("activation", "in_dim", "hidden", "num_classes", "num_samples", "train_steps", "seed")
"""The keys of a testbed's settings: the arguments of `probe_checks.make_testbed`."""


def _require(settings: Mapping, keys, what: str) -> None:
    missing = [key for key in keys if key not in settings]
    if missing:
        raise ValueError(f"{what} settings lack {missing}; got keys {sorted(settings)}")


@functools.cache
def _testbed(activation, in_dim, hidden, num_classes, num_samples, train_steps, seed) -> pc.Testbed:
    return pc.make_testbed(activation, in_dim=in_dim, hidden=hidden, num_classes=num_classes,
                           num_samples=num_samples, train_steps=train_steps, seed=seed)  # fmt: skip


def testbed_of(settings: Mapping) -> pc.Testbed:
    """The testbed of a settings dict with the `TESTBED_KEYS`, built once per process."""
    _require(settings, TESTBED_KEYS, "testbed")
    return _testbed(**{key: settings[key] for key in TESTBED_KEYS} | {"hidden": tuple(settings["hidden"])})


@functools.cache
def _exact(*key):
    tb = _testbed(*key)
    H = dense_hessian(tb.model, tb.loss_fn, tb.data)
    return H, torch.linalg.eigvalsh(H)  # ascending


def exact_of(settings: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense Hessian of a testbed and its eigenvalues (ascending), once per process."""
    _require(settings, TESTBED_KEYS, "testbed")
    return _exact(*(tuple(settings[k]) if k == "hidden" else settings[k] for k in TESTBED_KEYS))


def spectrum(settings: Mapping) -> dict:
    """The exact spectrum and the eigenvalue and density probes against it.

    Settings: ``testbed`` (see `TESTBED_KEYS`), ``k``, ``slq_probes``, ``slq_steps``, ``seed``.
    """
    _require(settings, ("testbed", "k", "slq_probes", "slq_steps", "seed"), "spectrum")
    seed = int(settings["seed"])
    tb = testbed_of(settings["testbed"])
    H, exact = exact_of(settings["testbed"])
    op = HessianOperator(tb.model, tb.loss_fn, tb.data)
    block = torch.randn(op.dim, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    operator_vs_dense = float((op @ block - H @ block).norm() / (H @ block).norm())
    eigs = pc.compare_eigenvalues(op, exact, settings["k"], tol=LANCZOS_TOL, power_tol=POWER_TOL, seed=seed)
    density = spectral_density(
        op, num_probes=settings["slq_probes"], num_steps=settings["slq_steps"], seed=seed
    )
    grid = density.grid.numpy()
    exact_smooth = pc.smoothed_density(exact, grid, density.sigma)
    exact_trace = float(exact.sum())
    return {
        "problem": {
            "problem": tb.name, "num_params": tb.num_params, "num_samples": settings["testbed"]["num_samples"],
            "train_loss": tb.loss(), "exact_max": float(exact[-1]), "exact_min": float(exact[0]),
            "exact_trace": exact_trace, "operator_vs_dense": operator_vs_dense,
        },
        "exact": exact.tolist(),
        "eigenvalues": eigs.to_dict("records"),
        "density": {
            "nodes": density.nodes.tolist(), "weights": density.weights.tolist(), "grid": grid.tolist(),
            "density": density.density.tolist(), "exact_smooth": exact_smooth.tolist(),
            "sigma": density.sigma,
            "slq_l1": float(np.trapezoid(np.abs(density.density.numpy() - exact_smooth), grid)),
            "slq_trace_rel_error": abs(density.moment(1) * density.dim - exact_trace) / abs(exact_trace),
            "slq_erank": effective_rank(density), "exact_erank": effective_rank(exact),
        },
    }  # fmt: skip


def trace(settings: Mapping) -> dict:
    """Every (budget, seed) estimate of one trace estimator on the dense Hessian, and how far the estimate
    through `HessianOperator` (largest budget, first seed) lies from the dense one (relative to the trace).

    Settings: ``testbed``, ``method`` (one of `TRACE_METHODS`), ``budgets``, ``trace_seeds``, ``seed`` (the
    first of the seeds).
    """
    _require(settings, ("testbed", "method", "budgets", "trace_seeds", "seed"), "trace")
    method, seed = settings["method"], int(settings["seed"])
    if method not in TRACE_METHODS:
        raise ValueError(f"a trace task needs a method in {TRACE_METHODS}, got {method!r}")
    H, exact = exact_of(settings["testbed"])
    exact_trace = float(exact.sum())
    seeds = range(seed, seed + int(settings["trace_seeds"]))
    errors = pc.trace_errors(
        DenseOperator(H), exact_trace, settings["budgets"], methods=[method], seeds=seeds
    )
    tb = testbed_of(settings["testbed"])
    largest = max(settings["budgets"])
    op = HessianOperator(tb.model, tb.loss_fn, tb.data)
    through = pc.trace_errors(op, exact_trace, [largest], methods=[method], seeds=[seed])
    dense = errors[(errors["budget"] == largest) & (errors["seed"] == seed)]
    diff = abs(float(through["estimate"].iloc[0]) - float(dense["estimate"].iloc[0])) / abs(exact_trace)
    return {"errors": errors.to_dict("records"), "operator_diff": diff}


def rescaling(settings: Mapping) -> dict:
    """The `probe_checks.rescaling_study` of a ReLU testbed. Settings: ``testbed``, ``alphas``, ``seed``."""
    _require(settings, ("testbed", "alphas", "seed"), "rescaling")
    relu = testbed_of(settings["testbed"])
    table = pc.rescaling_study(relu, settings["alphas"], layer=0, tol=LANCZOS_TOL, seed=int(settings["seed"]))
    return {"problem": relu.name, "rescaling": table.to_dict("records")}


KINDS = {"spectrum": spectrum, "trace": trace, "rescaling": rescaling}
"""The task kinds, by the ``kind`` of their settings."""


def measurement(settings: Mapping) -> dict:
    """One task of the chapter's sweep: `KINDS` [``settings["kind"]``] of the settings."""
    kind = settings.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(KINDS)}")
    return KINDS[kind](settings)
