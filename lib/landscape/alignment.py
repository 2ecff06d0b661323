"""Permutation alignment of hidden units by weight matching (Ainsworth et al. 2023).

Permuting the hidden units of a layer (rows of its weight and bias, columns of the next weight) leaves the
network's function unchanged. `align_permutation` chooses, for every hidden layer of `model_b`, the permutation
that makes its weights closest to `model_a`'s, so that the two networks can be compared (and interpolated)
modulo this symmetry.

Supported architectures: `nn.Sequential` models (and subclasses, such as the project's `MLP`) made of
`nn.Linear` layers and element-wise modules (activations, dropout, identity), with an optional `nn.Flatten`
before the first linear layer. Anything else raises a `TypeError` naming the unsupported module.

References:
    S. K. Ainsworth, J. Hayase, S. Srinivasa (2023), Git Re-Basin: merging models modulo permutation
    symmetries (weight matching, Algorithm 2); R. Entezari, H. Sedghi, O. Saukh, B. Neyshabur (2022).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .operators import make_generator

__all__ = ["align_permutation", "permute_hidden_units", "weight_matching"]

# Modules that act element-wise (or not at all) on features, so they commute with a permutation of units.
_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
    nn.Identity,
    nn.Dropout,
    nn.AlphaDropout,
)


def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of a supported Sequential MLP, in order; raises for anything unsupported."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"align_permutation supports nn.Sequential MLPs of Linear layers and element-wise activations; got "
            f"{type(model).__name__} (ResNets and Transformers are not supported)"
        )
    linears: list[nn.Linear] = []
    for index, module in enumerate(model):
        if isinstance(module, nn.Linear):
            linears.append(module)
            continue
        leading_flatten = isinstance(module, nn.Flatten) and not linears
        scalar_prelu = isinstance(module, nn.PReLU) and module.num_parameters == 1
        if not (leading_flatten or scalar_prelu or type(module) in _ELEMENTWISE):
            raise TypeError(
                f"module {index} of the Sequential ({type(module).__name__}) is not supported: only nn.Linear, "
                "element-wise activations, dropout, identity and a leading nn.Flatten are"
            )
    if len(linears) < 2:
        raise ValueError("the model has fewer than two Linear layers: there are no hidden units to permute")
    for i, (a, b) in enumerate(itertools.pairwise(linears)):
        if a.out_features != b.in_features:
            raise ValueError(
                f"Linear layers {i} and {i + 1} do not chain ({a.out_features} -> {b.in_features})"
            )
    return linears


def _layer_weights(model: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    return [
        (m.weight.detach().double().cpu(), None if m.bias is None else m.bias.detach().double().cpu())
        for m in _linear_layers(model)
    ]


def weight_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    max_sweeps: int = 100,
    seed: int | torch.Generator | None = 0,
) -> list[Tensor]:
    r"""Permutations of `model_b`'s hidden units that best match `model_a`'s weights (Ainsworth et al. 2023).

    Maximises :math:`\sum_i \langle W_i^a, P_i W_i^b P_{i-1}^\top\rangle + \langle b_i^a, P_i b_i^b\rangle` over
    permutation matrices :math:`P_i` of the hidden layers (:math:`P_0`, :math:`P_L` = identity) by coordinate
    ascent: each step solves the linear assignment problem for one :math:`P_i` with the others fixed
    (`scipy.optimize.linear_sum_assignment`), visiting the layers in a random order (from `seed`) each sweep,
    until a sweep changes nothing. With one hidden layer the optimum is exact.

    Returns:
        One LongTensor per hidden layer: `perm[i][j]` is the unit of `model_b` placed at position j.
    """
    wa, wb = _layer_weights(model_a), _layer_weights(model_b)
    if [w.shape for w, _ in wa] != [w.shape for w, _ in wb]:
        raise ValueError("the two models have Linear layers of different shapes")
    if [b is None for _, b in wa] != [b is None for _, b in wb]:
        raise ValueError("the two models differ in which Linear layers have a bias")
    if not (isinstance(max_sweeps, int) and max_sweeps >= 1):
        raise ValueError(f"max_sweeps must be a positive integer, got {max_sweeps!r}")
    gen = make_generator(seed)
    hidden = len(wa) - 1
    perms = [torch.arange(wa[i][0].shape[0]) for i in range(hidden)]

    def permuted_in(i: int) -> Tensor:  # W_i^b with its input units permuted by P_{i-1}
        w = wb[i][0]
        return w if i == 0 else w[:, perms[i - 1]]

    for _ in range(max_sweeps):
        changed = False
        for i in torch.randperm(hidden, generator=gen).tolist():
            score = wa[i][0] @ permuted_in(i).T  # <incoming weights of unit j in a, of unit k in b>
            if wa[i][1] is not None:
                score = score + torch.outer(wa[i][1], wb[i][1])
            outgoing_b = wb[i + 1][0] if i + 1 == hidden else wb[i + 1][0][perms[i + 1]]
            score = score + wa[i + 1][0].T @ outgoing_b  # <outgoing weights of unit j in a, of unit k in b>
            _, cols = linear_sum_assignment(score.numpy(), maximize=True)
            new = torch.as_tensor(np.asarray(cols), dtype=torch.long)
            if not torch.equal(new, perms[i]):
                old_value = float(score[torch.arange(len(new)), perms[i]].sum())
                new_value = float(score[torch.arange(len(new)), new].sum())
                if new_value > old_value:  # strict ascent: ties keep the current permutation
                    perms[i] = new
                    changed = True
        if not changed:
            break
    return perms


def permute_hidden_units(model: nn.Module, perms: Sequence[Tensor]) -> nn.Module:
    """A copy of `model` with hidden units permuted: unit j of hidden layer i becomes unit `perms[i][j]` of the
    original. The copy computes the same function (exactly: every number is only moved). `model` is untouched.
    """
    linears = _linear_layers(model)
    if len(perms) != len(linears) - 1:
        raise ValueError(f"expected {len(linears) - 1} permutations (one per hidden layer), got {len(perms)}")
    for i, p in enumerate(perms):
        n = linears[i].out_features
        p = torch.as_tensor(p)
        if p.shape != (n,) or not torch.equal(torch.sort(p).values, torch.arange(n)):
            raise ValueError(f"perms[{i}] is not a permutation of {n} units")
    new = copy.deepcopy(model)
    layers = _linear_layers(new)
    with torch.no_grad():
        for i, layer in enumerate(layers):
            w = layer.weight
            if i > 0:
                w.copy_(w[:, torch.as_tensor(perms[i - 1], device=w.device)].clone())
            if i < len(perms):
                rows = torch.as_tensor(perms[i], device=w.device)
                w.copy_(w[rows].clone())
                if layer.bias is not None:
                    layer.bias.copy_(layer.bias[rows].clone())
    return new


def align_permutation(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    max_sweeps: int = 100,
    seed: int | torch.Generator | None = 0,
) -> nn.Module:
    """A new model, functionally identical to `model_b`, whose hidden units are permuted to match `model_a`
    (weight matching, Ainsworth et al. 2023; see `weight_matching`). Neither input is modified.

    After alignment, `interpolation_barrier(model_a, aligned, ...)` measures the barrier modulo permutations
    (Entezari et al. 2022 conjecture it is then near zero for SGD solutions of wide enough networks).
    """
    return permute_hidden_units(model_b, weight_matching(model_a, model_b, max_sweeps=max_sweeps, seed=seed))
