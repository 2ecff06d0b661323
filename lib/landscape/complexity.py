"""Norm-, margin- and agreement-based generalisation measures: the baselines a geometric measure must beat.

Definitions follow Jiang et al. (2020), "Fantastic generalization measures and where to find them" (their
Appendix C), for networks whose layers are `nn.Linear` (the MLP); Jiang et al. (2022) for the disagreement of two
runs. Each function returns plain floats; every quantity that a rank correlation uses is a monotone transform of
the paper's (e.g. a logarithm), so a Kendall τ computed on it equals the paper's.

References:
    Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan, S. Bengio (2020), Fantastic generalization measures and
    where to find them; B. Neyshabur, R. Tomioka, N. Srebro (2015), Norm-based capacity control (path norm);
    P. Bartlett, D. Foster, M. Telgarsky (2017), Spectrally-normalized margin bounds;
    Y. Jiang, V. Nagarajan, C. Baek, J. Z. Kolter (2022), Assessing generalization of SGD via disagreement.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

__all__ = [
    "disagreement",
    "distance_from_init",
    "gradient_noise",
    "linear_layers",
    "norm_measures",
    "output_margin",
    "path_norm",
]


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's `nn.Linear` layers in forward order; a clear error when it has none (norm measures here are
    defined for fully connected networks)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer; these norm measures need one")
    return layers


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def distance_from_init(model: nn.Module, init: nn.Module) -> float:
    """‖θ − θ₀‖₂ between a trained model and its initialisation (same architecture)."""
    a, b = _flat(model), _flat(init)
    if a.shape != b.shape:
        raise ValueError(f"model and init differ in size: {a.numel()} vs {b.numel()} parameters")
    return float((a - b).norm())


def path_norm(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Σ over input–output paths of the product of squared weights: f_{θ²}(1) summed over the outputs, the
    network with every parameter squared evaluated on an all-ones input (Neyshabur et al. 2015; Jiang et al.'s
    ``path.norm``, biases squared too). With ReLU the activations pass every (non-negative) value unchanged."""
    squared = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in squared.parameters():
            p.copy_(p.double().square().to(p.dtype))
        ones = torch.ones(1, *input_shape, dtype=next(squared.parameters()).dtype)
        return float(squared(ones).double().sum())


def output_margin(model: nn.Module, inputs: Tensor, targets: Tensor, quantile: float = 0.1) -> float:
    """γ: the `quantile` (Jiang et al.: 10th percentile) over samples of the output margin
    f(x)_y − max_{j≠y} f(x)_j (negative for a misclassified sample)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        out = model(inputs).double()
    correct = out.gather(1, targets[:, None]).squeeze(1)
    other = out.scatter(1, targets[:, None], -math.inf).amax(1)
    return float(torch.quantile(correct - other, quantile))


def norm_measures(
    model: nn.Module, init: nn.Module, inputs: Tensor, targets: Tensor, input_shape: tuple[int, ...]
) -> dict[str, float]:
    """Jiang et al. (2020)'s norm and margin baselines of a fully connected network, as named there.

    With W_i the d weight matrices (biases excluded, except in the path norm), γ the 10th-percentile output margin
    on (inputs, targets) and θ the parameters:

    - ``num_params``: D;
    - ``param_norm``: ‖θ‖₂² (``l2``); ``dist_from_init``: ‖θ − θ₀‖₂ (``dist.init``);
    - ``log_prod_spectral``: Σ_i log ‖W_i‖₂² (``log.prod.of.spec``);
    - ``log_sum_frobenius``: log(d · (Π_i ‖W_i‖_F²)^{1/d}) (``log.sum.of.fro``);
    - ``log_path_norm``: log of `path_norm` (``path.norm``);
    - ``inverse_margin``: 1 / γ² (``inverse.margin``; +inf when γ ≤ 0);
    - ``log_spectral_over_margin``: Σ_i log ‖W_i‖₂² − log γ² (``log.prod.of.spec.over.margin``; +inf when
      γ ≤ 0).
    """
    weights = [layer.weight.detach().double() for layer in linear_layers(model)]
    spectral = [float(torch.linalg.matrix_norm(w, ord=2)) ** 2 for w in weights]
    frobenius = [float(w.square().sum()) for w in weights]
    d = len(weights)
    margin = output_margin(model, inputs, targets)
    log_margin2 = 2 * math.log(margin) if margin > 0 else -math.inf
    log_prod_spectral = sum(math.log(s) for s in spectral)
    return {
        "num_params": float(sum(p.numel() for p in model.parameters())),
        "param_norm": float(_flat(model).square().sum()),
        "dist_from_init": distance_from_init(model, init),
        "log_prod_spectral": log_prod_spectral,
        "log_sum_frobenius": math.log(d) + sum(math.log(f) for f in frobenius) / d,
        "log_path_norm": math.log(path_norm(model, input_shape)),
        "margin": margin,
        "inverse_margin": math.exp(-log_margin2) if margin > 0 else math.inf,
        "log_spectral_over_margin": log_prod_spectral - log_margin2,
    }


def gradient_noise(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor, chunk_size: int = 64) -> float:
    """tr Cov(∇ℓᵢ) = (1/n) Σᵢ ‖∇ℓᵢ − ḡ‖², the variance of the per-sample gradients ∇ℓᵢ around their mean ḡ at
    the model's weights (eval mode), summed over parameters: the gradient noise of SGD with batch size B is this
    divided by B (with replacement), so the measure itself does not depend on the batch size a network was
    trained with. Per-sample gradients by `torch.func.vmap` of `torch.func.grad`, `chunk_size` samples at a time
    (memory chunk_size·D values); sums in float64."""
    model = copy.deepcopy(model).eval()
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def one(p, x, y):
        return loss_fn(torch.func.functional_call(model, p, (x[None],)), y[None])

    per_sample = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))
    total = torch.zeros(sum(p.numel() for p in params.values()), dtype=torch.float64)
    squares = 0.0
    for start in range(0, len(targets), chunk_size):
        grads = per_sample(params, inputs[start : start + chunk_size], targets[start : start + chunk_size])
        flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1).double()
        total += flat.sum(0)
        squares += float(flat.square().sum())
    n = len(targets)
    return squares / n - float((total / n).square().sum())


def disagreement(model_a: nn.Module, model_b: nn.Module, inputs: Tensor) -> float:
    """Fraction of `inputs` (unlabelled) on which two models' predicted classes differ (Jiang et al. 2022:
    for a well-calibrated ensemble it estimates the test error)."""
    with torch.no_grad():
        pa = copy.deepcopy(model_a).eval()(inputs).argmax(1)
        pb = copy.deepcopy(model_b).eval()(inputs).argmax(1)
    return float((pa != pb).double().mean())
