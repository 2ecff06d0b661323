"""Zero-cost proxies: training-free scores of a network at its initialisation, from one batch.

The saliency scores of pruning at initialisation (``grad_norm``, ``snip``, ``grasp``, ``fisher``,
``synflow``), the Jacobian-covariance score of NAS without training (``jacob_cov``) and the condition number of
the empirical neural tangent kernel (``ntk_condition``), as compared by Abdelfattah et al. (2021). Each
parameter-saliency score is summed over all trainable parameters (Abdelfattah et al.'s "sum" aggregation of a
per-parameter score). Every function returns a Python float, works on a deep copy of the model put in eval mode
(the caller's model, its ``.grad`` and its train/eval flags are never modified) and sums in float64.

Eval mode matters: dropout is off and batch normalisation uses its running statistics, so each sample's output
depends on that sample alone; ``fisher`` and ``jacob_cov`` rely on this to get per-sample derivatives from one
backward pass of a batch-summed quantity. (The reference implementations run the networks in train mode, where
BatchNorm normalises with the batch's own statistics.)

References:
    M. S. Abdelfattah, A. Mehrotra, Ł. Dudziak, N. D. Lane (2021), Zero-cost proxies for lightweight NAS
    (ICLR); N. Lee, T. Ajanthan, P. H. S. Torr (2019), SNIP: single-shot network pruning based on connection
    sensitivity; C. Wang, G. Zhang, R. Grosse (2020), Picking winning tickets before training by preserving
    gradient flow; J. Turner, E. J. Crowley, M. O'Boyle, A. Storkey, G. Gray (2020), BlockSwap: Fisher-guided
    block substitution for network compression on a budget; H. Tanaka, D. Kunin, D. L. K. Yamins, S. Ganguli
    (2020), Pruning neural networks without any data by iteratively conserving synaptic flow; J. Mellor,
    J. Turner, A. Storkey, E. J. Crowley (2021), Neural architecture search without training (v1 score);
    W. Chen, X. Gong, Z. Wang (2021), Neural architecture search on ImageNet in four GPU hours: a theoretically
    inspired perspective (TE-NAS, ICLR).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = [
    "fisher",
    "grad_norm",
    "grasp",
    "jacob_cov",
    "ntk_condition",
    "snip",
    "synflow",
    "zero_cost_proxies",
]

ACTIVATION_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
"""The layers whose outputs `fisher` scores (their channel is the last dimension for `nn.Linear`, dimension 1
for the convolutions)."""

JACOB_COV_EPS = 1e-5
"""k in Mellor et al.'s −Σ [log(λ + k) + 1/(λ + k)]."""


def _check_batch(inputs: Tensor, targets: Tensor | None = None) -> int:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a tensor batch of shape (N, ...), got {type(inputs).__name__}")
    if inputs.ndim == 0 or len(inputs) == 0:
        raise ValueError(
            f"inputs must be a non-empty batch of shape (N, ...), N ≥ 1; got shape {tuple(inputs.shape)}"
        )
    if targets is not None:
        if not isinstance(targets, Tensor):
            raise TypeError(f"targets must be a tensor, got {type(targets).__name__}")
        if targets.ndim == 0 or len(targets) != len(inputs):
            raise ValueError(
                f"targets must have one entry per input: {len(inputs)} inputs, targets of shape "
                f"{tuple(targets.shape)}"
            )
    return len(inputs)


def _check_trainable(model: nn.Module) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameter (every requires_grad is False)")


def _check_num_samples(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ValueError(f"{name} must be an integer ≥ 2 (the kernel is {name} × {name}), got {value!r}")


def _copy(model: nn.Module, dtype: torch.dtype | None = None) -> tuple[nn.Module, list[nn.Parameter]]:
    """A deep copy in eval mode (cast to `dtype` if given) and its trainable parameters; a clear error when
    there are none."""
    _check_trainable(model)
    model = copy.deepcopy(model).eval()
    if dtype is not None:
        model = model.to(dtype)
    return model, [p for p in model.parameters() if p.requires_grad]


def _gradient(model: nn.Module, params, loss_fn, inputs: Tensor, targets: Tensor, create_graph: bool = False):
    loss = loss_fn(model(inputs), targets)
    return torch.autograd.grad(loss, params, create_graph=create_graph)


def _dot(a, b) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def grad_norm(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor) -> float:
    """‖∇θ L‖₂, the Euclidean norm of the gradient of the batch loss L = loss_fn(f(inputs), targets) over all
    trainable parameters θ (Abdelfattah et al. 2021). One backward pass; memory one gradient (D values).

    >>> model = nn.Linear(1, 1, bias=False).double()
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(2.0)
    >>> x, y = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    >>> grad_norm(model, nn.functional.mse_loss, x, y)  # L = w², ∂L/∂w = 2w
    4.0
    """
    _check_batch(inputs, targets)
    model, params = _copy(model)
    grads = _gradient(model, params, loss_fn, inputs, targets)
    return math.sqrt(_dot(grads, grads))


def snip(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor) -> float:
    """Σ |θ ⊙ ∇θ L| over all trainable parameters: SNIP's connection sensitivity (Lee et al. 2019), the
    first-order change of the batch loss L when a weight is removed, summed. One backward pass; memory D
    values."""
    _check_batch(inputs, targets)
    model, params = _copy(model)
    grads = _gradient(model, params, loss_fn, inputs, targets)
    return float(
        sum((p.detach().double() * g.double()).abs().sum() for p, g in zip(params, grads, strict=True))
    )


def grasp(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor) -> float:
    """−Σ θ ⊙ (H ∇θ L) over all trainable parameters, H = ∇²θ L the Hessian of the batch loss L: GraSP (Wang
    et al. 2020), built on the first-order change of the gradient flow ‖∇θ L‖² when weights are removed
    (Abdelfattah et al.'s sign). The Hessian-vector product H g, g = ∇θ L, is one double backward pass through
    g(θ) · stop_gradient(g), the same batch giving g and H. Memory: the graph of a gradient, a few times a
    backward pass."""
    _check_batch(inputs, targets)
    model, params = _copy(model)
    # The math attention kernel is twice differentiable; the fused CPU/GPU kernels are not.
    with sdpa_kernel(SDPBackend.MATH):
        grads = _gradient(model, params, loss_fn, inputs, targets, create_graph=True)
    gv = sum((g * g.detach()).sum() for g in grads)
    if not gv.requires_grad:  # the loss is linear in θ: H = 0
        return 0.0
    hg = torch.autograd.grad(gv, params, allow_unused=True, materialize_grads=True)
    return -_dot([p.detach() for p in params], hg)


def fisher(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor) -> float:
    """The Fisher saliency of channels (Turner et al. 2020; Abdelfattah et al. 2021), summed over the network.

    The activations z are the outputs of every `nn.Linear`, `nn.Conv1d` and `nn.Conv2d` call in the forward
    pass, captured by forward hooks on the deep copy (a module called twice contributes twice; a layer with
    nothing trainable upstream is scored too; a layer used through its weights alone, as `nn.MultiheadAttention`
    uses its ``out_proj``, is never called and not scored). Channel c is the last dimension of a linear layer's
    output and dimension 1 of a convolution's, the "spatial" positions the remaining dimensions. With ℓ_n the
    loss of sample n alone,

        score = Σ_layers Σ_c Σ_n ½ (Σ_spatial z_{n,c,·} ∂ℓ_n/∂z_{n,c,·})².

    Scaling: the per-sample derivatives ∂ℓ_n/∂z_n are those of L_sum = Σ_n ℓ_n = N · loss_fn(f(inputs),
    targets), which holds for any loss_fn that is the mean over samples of the per-sample loss loss_fn(f(x_n),
    y_n) (``F.cross_entropy``; ``F.mse_loss`` too, each sample having as many output entries), and they are per
    sample because in eval mode z_n depends on x_n alone. Abdelfattah et al.'s code differentiates the mean
    loss and averages over n instead of summing: their score is this one divided by N³. One backward pass;
    memory the activations of the hooked layers.
    """
    n = _check_batch(inputs, targets)
    model, _ = _copy(model)
    layers = [m for m in model.modules() if isinstance(m, ACTIVATION_LAYERS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear, nn.Conv1d or nn.Conv2d layer to score")
    activations: list[tuple[Tensor, int]] = []

    def keep(module, _inputs, output):
        if not output.requires_grad:  # nothing upstream is trainable: make z a leaf to differentiate against
            output = output.detach().requires_grad_(True)
        activations.append((output, output.ndim - 1 if isinstance(module, nn.Linear) else 1))
        return output

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        loss_sum = n * loss_fn(model(inputs), targets)
    finally:
        for handle in handles:
            handle.remove()
    zs = [z for z, _ in activations]
    grads = torch.autograd.grad(loss_sum, zs, allow_unused=True, materialize_grads=True)
    total = torch.zeros((), dtype=torch.float64)
    for (z, channel), g in zip(activations, grads, strict=True):
        zg = (z.detach().double() * g.double()).movedim(channel, -1)  # (N, spatial..., C)
        per_channel = zg.reshape(zg.shape[0], -1, zg.shape[-1]).sum(1)  # (N, C): Σ_spatial z ∂ℓ_n/∂z
        total += 0.5 * per_channel.square().sum()
    return float(total)


def synflow(model: nn.Module, inputs: Tensor) -> float:
    """Σ θ ⊙ ∂R/∂θ over all trainable parameters, the synaptic flow of Tanaka et al. (2020), data-free.

    In float64, every parameter (trainable or not) of the copy is replaced by its absolute value |θ|, and R is
    the sum of the outputs for one all-ones input of the data's shape (a batch of 1, shape
    (1, *inputs.shape[1:]); integer inputs stay integer): R = 1ᵀ f_{|θ|}(1); the score is Σ |θ| ⊙ ∂R/∂|θ|.
    Normalisation layers act as they do in eval mode (BatchNorm with its running statistics, which are buffers
    and keep their sign), dropout is off. For a bias-free chain of d linear layers (ReLU or not: every value is
    non-negative) R = 1ᵀ|W_d|⋯|W_1|1 is homogeneous of degree 1 in each W_i, so the score is d · R. One backward
    pass; memory one gradient.

    >>> chain = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    >>> w1, w2 = (p.detach().double().abs() for p in chain.parameters())
    >>> r = float(torch.ones(2, dtype=torch.float64) @ w2 @ w1 @ torch.ones(3, dtype=torch.float64))
    >>> math.isclose(synflow(chain, torch.randn(5, 3)), 2 * r, rel_tol=1e-12)
    True
    """
    _check_batch(inputs)
    model, params = _copy(model, torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    dtype = torch.float64 if inputs.is_floating_point() else inputs.dtype
    ones = torch.ones(1, *inputs.shape[1:], dtype=dtype, device=inputs.device)
    grads = torch.autograd.grad(model(ones).sum(), params, allow_unused=True, materialize_grads=True)
    return _dot([p.detach() for p in params], grads)


def jacob_cov(model: nn.Module, inputs: Tensor) -> float:
    """Mellor et al. (2021)'s v1 score of NAS without training: −Σ_i [log(λ_i + k) + 1/(λ_i + k)], k = 1e-5,
    over the eigenvalues λ_i of C = corrcoef(J), J the N × (input size) matrix whose row n is the input
    gradient J_n = ∂(Σ_k f_k(x_n))/∂x_n, flattened (C_nm the Pearson correlation of rows n and m across input
    entries, as ``numpy.corrcoef(J)``).

    The rows come from one backward pass of Σ_n Σ_k f_k(x_n) (per sample because, in eval mode, f(x_n) depends
    on x_n alone); C and its eigenvalues (`torch.linalg.eigvalsh`) in float64. Each eigenvalue λ contributes
    −(log(λ + k) + 1/(λ + k)), largest at λ = 1 − k: uncorrelated rows (C = I) score −N(log(1 + k) + 1/(1 + k)),
    correlated rows far lower (each eigenvalue near 0 costs about 1/k). NaN when some J_n is constant (its
    correlation is undefined). Inputs must be floating point. Memory: N input gradients and the N × N matrix C.
    """
    _check_batch(inputs)
    if not inputs.is_floating_point():
        raise ValueError(
            f"jacob_cov differentiates the inputs: they must be floating point, got {inputs.dtype}"
        )
    model, _ = _copy(model)
    x = inputs.detach().clone().requires_grad_(True)
    (jac,) = torch.autograd.grad(model(x).sum(), x)
    corr = torch.corrcoef(jac.reshape(len(x), -1).double()).reshape(len(x), len(x))  # (1, 1) when N = 1
    lam = torch.linalg.eigvalsh(corr)
    return float(-(torch.log(lam + JACOB_COV_EPS) + 1.0 / (lam + JACOB_COV_EPS)).sum())


def ntk_condition(model: nn.Module, inputs: Tensor, num_samples: int = 64) -> float:
    """λ_max(Θ) / λ_min(Θ), the condition number of the empirical neural tangent kernel Θ = J Jᵀ on the first
    `num_samples` inputs (all of them when there are fewer), J_n = ∂(Σ_k f_k(x_n))/∂θ over all trainable
    parameters θ, the gradient of the sum of the outputs as in TE-NAS (Chen et al. 2021; their code keeps only
    the ``weight`` tensors and runs in train mode; here every trainable parameter, in eval mode).

    J by `torch.func.vmap` of `torch.func.grad` (memory num_samples · D values); Θ and its eigenvalues
    (`torch.linalg.eigvalsh`) in float64. +inf when Θ is singular up to rounding: λ_min ≤ M · ε · λ_max (M the
    number of samples, ε the float64 machine epsilon; eigvalsh's error is of order ε · λ_max), e.g. whenever
    there are more samples than parameters, or when J = 0. Lower is better (a well-conditioned kernel trains
    fast in every direction).
    """
    _check_batch(inputs)
    _check_num_samples("num_samples", num_samples)
    model, _ = _copy(model)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    x = inputs[:num_samples]

    def summed_output(p, xi):
        return torch.func.functional_call(model, p, (xi[None],)).sum()

    grads = torch.func.vmap(torch.func.grad(summed_output), in_dims=(None, 0))(params, x)
    jac = torch.cat([g.reshape(len(x), -1).double() for g in grads.values()], dim=1)
    lam = torch.linalg.eigvalsh(jac @ jac.T)
    lam_min, lam_max = float(lam[0]), float(lam[-1])
    if lam_min <= len(x) * torch.finfo(torch.float64).eps * max(lam_max, 0.0):
        return math.inf
    return lam_max / lam_min


def zero_cost_proxies(
    model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor, *, ntk_samples: int = 64
) -> dict[str, float]:
    """All seven proxies on one batch, under the keys ``grad_norm``, ``snip``, ``grasp``, ``fisher``,
    ``synflow``, ``jacob_cov`` and ``ntk_condition`` (the last on the first `ntk_samples` inputs)."""
    _check_batch(inputs, targets)
    _check_num_samples("ntk_samples", ntk_samples)
    _check_trainable(model)
    return {
        "grad_norm": grad_norm(model, loss_fn, inputs, targets),
        "snip": snip(model, loss_fn, inputs, targets),
        "grasp": grasp(model, loss_fn, inputs, targets),
        "fisher": fisher(model, loss_fn, inputs, targets),
        "synflow": synflow(model, inputs),
        "jacob_cov": jacob_cov(model, inputs),
        "ntk_condition": ntk_condition(model, inputs, num_samples=ntk_samples),
    }
