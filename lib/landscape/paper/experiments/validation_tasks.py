"""The validation chapter's measurements: the code its cached tasks run, apart from its summaries and figures.

Each task is a module-level function of one JSON-serialisable settings dict (`landscape.paper.experiments.common.
run_cached`), on the small float64 testbeds of `landscape.paper.probe_checks.make_testbed`:

- `spectrum`: the exact spectrum of the tanh MLP's dense Hessian, the operator's products against it, Lanczos
  and power iteration against the exact top-k eigenvalues, SLQ against the exact smoothed density;
- `trace` (one task per estimator): every (budget, seed) trace estimate on the dense Hessian, and the estimate
  through `HessianOperator` at the largest budget;
- `rescaling`: λmax and normalised sharpness at Dinh-rescaled copies of the ReLU MLP.
- `operating`: the probes at the chapters' operating regime (float32, their k, tolerances and budgets, on an
  MNIST-1D MLP of D ≈ 10⁵ trained to the RQ2 target loss) against a high-budget float64 reference on the same
  weights;
- `synthetic`: cases with known answers at D ≈ 10⁵ in float32 (a repeated top eigenvalue; λmin inside a dense
  bulk beside a large λmax) and the roughness of synthetic slices of known roughness.

Only this module and `probe_checks` are declared as the tasks' code, so editing the chapter's summaries, checks
or figures (`landscape.paper.experiments.validation`) recomputes nothing.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from ... import (
    DenseOperator,
    HessianOperator,
    dense_hessian,
    effective_rank,
    hessian_trace,
    measure_curvature,
    negative_mass,
    roughness,
    spectral_density,
    top_eigenvalues,
)
from ...operators import LinearOperator
from ...trace import TRACE_METHODS
from .. import probe_checks as pc

__all__ = [
    "KINDS",
    "LANCZOS_TOL",
    "POWER_TOL",
    "TESTBED_KEYS",
    "DiagonalOperator",
    "exact_of",
    "measurement",
    "operating",
    "rescaling",
    "spectrum",
    "synthetic",
    "testbed_of",
    "trace",
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


def _operating_network(s: Mapping):
    """The MNIST-1D MLP of the operating-regime task, trained (float32) to ``target_loss`` on the training set,
    and the first ``hessian_samples`` training samples."""
    from ...data import load_dataset
    from ...train import TrainConfig, train

    data = load_dataset("mnist1d")
    config = TrainConfig(model="mlp", model_config={"depth": 2, "width": s["width"], "activation": "relu"},
                         optimizer="adam", lr=1e-3, batch_size=128, steps=s["max_steps"], eval_every=50,
                         stop_loss=s["target_loss"], seed=int(s["seed"]))  # fmt: skip
    result = train(config, data=data)
    n = s["hessian_samples"]
    return result, [(data.x_train[:n], data.y_train[:n])]


def operating(settings: Mapping) -> dict:
    """`measure_curvature` at the chapters' settings (float32, block Lanczos k, tol, λmin budget, Hutchinson and
    SLQ budgets) against a float64 reference on the same weights: Lanczos to ``ref_tol`` (its residuals certify
    it), λmin by the residual test with a large budget, Hutch++ with ``ref_trace`` products and SLQ with
    ``ref_slq_probes`` × ``ref_slq_steps``.

    Settings: ``width``, ``target_loss``, ``max_steps``, ``hessian_samples``, ``k``, ``tol``,
    ``trace_matvecs``, ``slq_probes``, ``slq_steps``, ``ref_tol``, ``ref_trace``, ``ref_slq_probes``,
    ``ref_slq_steps``, ``seed``.
    """
    import copy

    from ...train import loss_function

    keys = ("width", "target_loss", "max_steps", "hessian_samples", "k", "tol", "trace_matvecs", "slq_probes",
            "slq_steps", "ref_tol", "ref_trace", "ref_slq_probes", "ref_slq_steps", "seed")  # fmt: skip
    _require(settings, keys, "operating")
    seed = int(settings["seed"])
    result, data = _operating_network(settings)
    from ...models import build_model

    model = build_model("mlp", input_shape=(40,), num_classes=10, **result.config.model_config)
    model.load_state_dict(result.state_dict)
    model, loss_fn = model.float().eval(), loss_function("ce")
    chapter = measure_curvature(model, loss_fn, data, k=settings["k"], tol=settings["tol"],
                                trace_matvecs=settings["trace_matvecs"], slq_probes=settings["slq_probes"],
                                slq_steps=settings["slq_steps"], adaptive_steps=1, seed=seed)  # fmt: skip
    model64 = copy.deepcopy(model).double()
    data64 = [(x.double(), y) for x, y in data]
    op = HessianOperator(model64, loss_fn, data64)
    top = top_eigenvalues(op, settings["k"], tol=settings["ref_tol"], block_size=2, max_matvecs=40 * settings["k"] + 400,
                          seed=seed + 1)  # fmt: skip
    with warnings.catch_warnings():  # the bulk edge may not converge even here: its interval is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        bottom = top_eigenvalues(
            op, 1, which="smallest", tol=1e-4, bound="residual", max_matvecs=1500, seed=seed + 1
        )
    trace = hessian_trace(op, settings["ref_trace"], method="hutch++", seed=seed + 1)
    density = spectral_density(op, num_probes=settings["ref_slq_probes"], num_steps=settings["ref_slq_steps"],
                               seed=seed + 1)  # fmt: skip
    mass = negative_mass(density)
    return {
        "tol": settings["tol"],
        "network": {"num_params": op.dim, "train_loss": result.final["train_loss"], "steps": result.reached_step,
                    "status": result.status, "hessian_samples": settings["hessian_samples"]},
        "chapter": chapter.to_dict(),
        "reference": {
            "top_eigenvalues": top.values.tolist(), "residuals": top.residuals.tolist(), "converged": top.converged,
            "num_matvecs": top.num_matvecs, "lambda_min": float(bottom.values[0]),
            "lambda_min_residual": float(bottom.residuals[0]), "lambda_min_converged": bottom.converged,
            "trace": trace.estimate, "trace_stderr": trace.stderr, "negative_mass": mass.estimate,
            "negative_mass_stderr": mass.stderr, "effective_rank": effective_rank(density),
        },
    }  # fmt: skip


class DiagonalOperator(LinearOperator):
    """diag(values) as a `LinearOperator` (products elementwise): a matrix of any size with a known spectrum."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__(values.numel(), values.dtype, values.device)
        self.values = values

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.values[:, None] * V


def synthetic(settings: Mapping) -> dict:
    """Known answers at D = ``dim`` in float32, at the chapters' tolerance ``tol``:

    - a repeated top eigenvalue (λ1 = λ2 = 5, λ3 = 3, a bulk in [0, 1]): the top three by Lanczos with block
      size 1 and 2, with their residuals;
    - λmin = −10⁻³ inside a dense bulk [−10⁻³, 10⁻³] beside λmax = 70 (the shape of a trained network's
      spectrum), ``lambda_min_matvecs`` products: the gap test and the residual test;
    - the roughness of ½cα² + A sin(ωα + 0.3) on the curvature-scaled window (w = 1, 12 cycles, 41 points) for
      each curvature and amplitude, with the closed form (A²/2)/(1/45 + A²/2).

    Settings: ``dim``, ``tol``, ``lambda_min_matvecs``, ``curvatures``, ``amplitudes``, ``seed``.
    """
    import math

    _require(settings, ("dim", "tol", "lambda_min_matvecs", "curvatures", "amplitudes", "seed"), "synthetic")
    dim, tol, seed = int(settings["dim"]), float(settings["tol"]), int(settings["seed"])
    gen = torch.Generator().manual_seed(seed)
    bulk = torch.rand(dim - 3, generator=gen, dtype=torch.float64)
    repeated = torch.cat([torch.tensor([5.0, 5.0, 3.0], dtype=torch.float64), bulk]).float()
    blocks = {}
    for block in (1, 2):
        res = top_eigenvalues(DiagonalOperator(repeated), 3, tol=tol, block_size=block, seed=seed)
        blocks[str(block)] = {"values": res.values.tolist(), "residuals": res.residuals.tolist(),
                              "num_matvecs": res.num_matvecs}  # fmt: skip
    edge = torch.cat([torch.tensor([70.0, 40.0, 20.0], dtype=torch.float64),
                      (torch.rand(dim - 3, generator=gen, dtype=torch.float64) * 2 - 1) * 1e-3])  # fmt: skip
    true_min = float(edge.min())
    tests = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for bound in ("gap", "residual"):
            res = top_eigenvalues(DiagonalOperator(edge.float()), 1, which="smallest", tol=tol, bound=bound,
                                  max_matvecs=settings["lambda_min_matvecs"], seed=seed)  # fmt: skip
            tests[bound] = {"value": float(res.values[0]), "residual": float(res.residuals[0]),
                            "converged": res.converged}  # fmt: skip
    rows = []
    for c in settings["curvatures"]:
        radius = 1.0 / math.sqrt(c)
        alphas = torch.linspace(-radius, radius, 41, dtype=torch.float64)
        omega = 2 * math.pi * 12 / (2 * radius)
        for a in settings["amplitudes"]:
            rho, _ = roughness(alphas, 0.5 * c * alphas**2 + a * torch.sin(omega * alphas + 0.3))
            rows.append({"curvature": c, "amplitude": a, "roughness": rho,
                         "closed_form": (a * a / 2) / (1 / 45 + a * a / 2)})  # fmt: skip
    return {"repeated": blocks, "bulk_edge": {"true_min": true_min, **tests}, "roughness": rows}


KINDS = {"spectrum": spectrum, "trace": trace, "rescaling": rescaling, "operating": operating,
         "synthetic": synthetic}  # fmt: skip
"""The task kinds, by the ``kind`` of their settings."""


def measurement(settings: Mapping) -> dict:
    """One task of the chapter's sweep: `KINDS` [``settings["kind"]``] of the settings."""
    kind = settings.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {sorted(KINDS)}")
    return KINDS[kind](settings)
