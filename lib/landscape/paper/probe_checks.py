"""Checks of the curvature probes against exact dense float64 linear algebra, on small seeded testbeds.

Used by the validation chapter (`notebooks/validation.py`): small MLPs on synthetic teacher data, trained
full-batch so that the Hessian is that of a (near-)minimum, whose D x D Hessian `dense_hessian` computes
exactly. Nothing here depends on the data, model or training modules of the experiments.

References:
    Z. Yao et al. (2020), PyHessian (power iteration, SLQ); M. F. Hutchinson (1989); R. A. Meyer et al.
    (2021), Hutch++; B. Ghorbani et al. (2019), SLQ densities; L. Dinh et al. (2017), sharp minima can generalize.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..density import gaussian_smoothing
from ..eigen import power_iteration, top_eigenvalues
from ..operators import HessianOperator, LinearOperator, make_generator
from ..sharpness import normalized_sharpness
from ..trace import TRACE_METHODS, hessian_trace

__all__ = [
    "ACTIVATIONS",
    "Testbed",
    "benchmark_tables",
    "compare_eigenvalues",
    "make_testbed",
    "mlp",
    "rescale_layers",
    "rescaling_study",
    "smoothed_density",
    "teacher_data",
    "trace_errors",
    "trace_summary",
]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass
class Testbed:
    """A small float64 classification problem: model, loss and the full data set (one batch)."""

    name: str
    model: nn.Module
    inputs: Tensor
    targets: Tensor
    train_losses: list[float]

    loss_fn = staticmethod(F.cross_entropy)

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        return self.inputs, self.targets

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def loss(self) -> float:
        with torch.no_grad():
            return float(self.loss_fn(self.model(self.inputs), self.targets))


def mlp(sizes: Sequence[int], activation: str = "tanh", seed: int = 0) -> nn.Sequential:
    """A float64 MLP `sizes[0] -> ... -> sizes[-1]` with `activation` between layers, initialised from
    `seed`."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
    gen = make_generator(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(n_in, n_out, dtype=torch.float64)
        bound = 1 / math.sqrt(n_in)
        with torch.no_grad():
            linear.weight.copy_((torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
            linear.bias.copy_((torch.rand(n_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def teacher_data(
    num_samples: int, in_dim: int, num_classes: int, *, label_noise: float = 0.1, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Gaussian inputs labelled by a random tanh teacher (argmax), a fraction `label_noise` relabelled at
    random."""
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must lie in [0, 1), got {label_noise}")
    gen = make_generator(seed)
    inputs = torch.randn(num_samples, in_dim, generator=gen, dtype=torch.float64)
    teacher = mlp([in_dim, 4 * num_classes, num_classes], "tanh", seed=seed + 1)
    with torch.no_grad():
        targets = teacher(inputs).argmax(1)
    flip = torch.rand(num_samples, generator=gen, dtype=torch.float64) < label_noise
    targets[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=gen)
    return inputs, targets


def make_testbed(
    activation: str = "tanh",
    *,
    in_dim: int = 8,
    hidden: Sequence[int] = (16,),
    num_classes: int = 3,
    num_samples: int = 256,
    train_steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
) -> Testbed:
    """An MLP trained full-batch with Adam for `train_steps` steps on teacher data (all seeded)."""
    inputs, targets = teacher_data(num_samples, in_dim, num_classes, seed=seed)
    model = mlp([in_dim, *hidden, num_classes], activation, seed=seed + 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(train_steps):
        optimiser.zero_grad()
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    for p in model.parameters():
        p.grad = None
    name = (
        f"{activation} MLP {'-'.join(str(s) for s in [in_dim, *hidden, num_classes])}, {num_samples} samples"
    )
    return Testbed(name, model, inputs, targets, losses)


def compare_eigenvalues(
    op: LinearOperator,
    exact: Tensor | np.ndarray,
    k: int,
    *,
    tol: float = 1e-8,
    power_tol: float = 1e-3,
    power_max_iter: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Top-k eigenvalues by Lanczos and by power iteration with and without deflation, against `exact`.

    Lanczos is compared with the k algebraically largest exact eigenvalues, power iteration with the k largest
    in magnitude (what it targets). One row per (method, index): value, exact value, absolute and relative
    error, the method's residual ‖Av − λv‖, products used, convergence flag.
    """
    exact = torch.as_tensor(exact, dtype=torch.float64).reshape(-1)
    by_value = exact.sort(descending=True).values[:k]
    by_magnitude = exact[exact.abs().argsort(descending=True)][:k]
    power = {"tol": power_tol, "max_iter": power_max_iter, "seed": seed}
    runs = [
        ("Lanczos", top_eigenvalues(op, k, tol=tol, seed=seed), by_value),
        ("power, deflated", power_iteration(op, k, deflate=True, **power), by_magnitude),
        ("power, undeflated", power_iteration(op, k, deflate=False, **power), by_magnitude),
    ]
    rows = []
    for method, result, reference in runs:
        for i in range(k):
            value, truth = float(result.values[i]), float(reference[i])
            rows.append({
                "method": method, "index": i + 1, "value": value, "exact": truth,
                "abs_error": abs(value - truth), "rel_error": abs(value - truth) / abs(truth),
                "residual": float(result.residuals[i]), "num_matvecs": result.num_matvecs,
                "converged": result.converged,
            })  # fmt: skip
    return pd.DataFrame(rows)


def trace_errors(
    op: LinearOperator,
    exact_trace: float,
    budgets: Sequence[int],
    *,
    methods: Sequence[str] = TRACE_METHODS,
    seeds: Sequence[int] = range(10),
) -> pd.DataFrame:
    """Every (method, budget, seed) trace estimate with its standard error and its actual error."""
    unknown = [m for m in methods if m not in TRACE_METHODS]
    if unknown:
        raise ValueError(f"unknown trace methods {unknown}; expected some of {TRACE_METHODS}")
    rows = []
    for method in methods:
        for budget in budgets:
            for seed in seeds:
                est = hessian_trace(op, int(budget), method=method, seed=int(seed))
                rows.append({
                    "method": method, "budget": int(budget), "seed": int(seed), "estimate": est.estimate,
                    "stderr": est.stderr, "error": est.estimate - exact_trace,
                    "rel_error": abs(est.estimate - exact_trace) / abs(exact_trace),
                    "rel_stderr": est.stderr / abs(exact_trace), "num_matvecs": est.num_matvecs,
                })  # fmt: skip
    return pd.DataFrame(rows)


def trace_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Per (method, budget): RMS relative error over seeds, mean reported relative stderr, and the coverage —
    the fraction of seeds whose error lies within two reported standard errors."""
    within = (errors["error"].abs() <= 2 * errors["stderr"]).rename("within")
    frame = errors.assign(sq=errors["rel_error"] ** 2, within=within)
    grouped = frame.groupby(["method", "budget"], sort=False)
    summary = grouped.agg(
        rms_rel_error=("sq", lambda s: float(np.sqrt(s.mean()))),
        mean_rel_stderr=("rel_stderr", "mean"),
        coverage=("within", "mean"),
        seeds=("seed", "count"),
    )
    return summary.reset_index()


def smoothed_density(eigenvalues: Tensor | np.ndarray, grid: Tensor | np.ndarray, sigma: float) -> np.ndarray:
    """The exact spectral measure (1/D) Σ δ(λ_j) smoothed by the Gaussian kernel SLQ uses, on `grid`."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).reshape(-1)
    return gaussian_smoothing(lam, torch.full_like(lam, 1 / lam.numel()), grid, sigma).numpy()


def rescale_layers(model: nn.Sequential, layer: int, alpha: float) -> nn.Sequential:
    """Dinh et al. (2017)'s reparametrisation: a copy with Linear layer `layer` (0-based, counting Linear
    layers only) multiplied by α (weight and bias) and the next Linear layer's weight by 1/α.

    For a positively homogeneous activation (ReLU) between them the function is unchanged for every α > 0.
    """
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential, got {type(model).__name__}")
    positions = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    if not 0 <= layer < len(positions) - 1:
        raise ValueError(
            f"layer must index a Linear layer followed by another: 0..{len(positions) - 2}, got {layer}"
        )
    first, second = positions[layer], positions[layer + 1]
    between = [model[i] for i in range(first + 1, second)]
    if not all(isinstance(m, nn.ReLU) for m in between):
        raise ValueError(
            f"rescaling preserves the function only through ReLU activations; found "
            f"{[type(m).__name__ for m in between]} between Linear layers {layer} and {layer + 1}"
        )
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled[first].weight.mul_(alpha)
        scaled[first].bias.mul_(alpha)
        scaled[second].weight.div_(alpha)
    return scaled


def rescaling_study(
    testbed: Testbed, alphas: Sequence[float], *, layer: int = 0, tol: float = 1e-8, seed: int = 0
) -> pd.DataFrame:
    """λmax of the Hessian and normalised sharpness at Dinh-rescaled copies of a ReLU testbed, one row per
    α."""
    rows = []
    for alpha in alphas:
        model = rescale_layers(testbed.model, layer, float(alpha))
        with torch.no_grad():
            loss = float(testbed.loss_fn(model(testbed.inputs), testbed.targets))
        top = top_eigenvalues(HessianOperator(model, testbed.loss_fn, testbed.data), 1, tol=tol, seed=seed)
        norm = normalized_sharpness(model, testbed.loss_fn, testbed.data, tol=tol, trace_matvecs=0, seed=seed)
        rows.append({
            "alpha": float(alpha), "loss": loss, "lambda_max": float(top.values[0]),
            "lambda_max_residual": float(top.residuals[0]), "normalized_sharpness": norm.lambda_max,
            "normalized_residual": norm.residual,
        })  # fmt: skip
    return pd.DataFrame(rows)


def benchmark_tables(results_dir: Path | str, preferred: str = "curvature.md") -> dict[str, str]:
    """Markdown benchmark tables in `results_dir` (file name -> text), `preferred` first; empty when not run.

    Headings in the files become bold lines, so that pasting them into a chapter adds no sections to the paper.
    """
    folder = Path(results_dir)
    if not folder.is_dir():
        return {}
    files = sorted(folder.glob("*.md"), key=lambda p: (p.name != preferred, p.name))
    return {p.name: _HEADING.sub(r"**\1**", p.read_text()) for p in files}


_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.MULTILINE)
