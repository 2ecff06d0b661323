"""Directions in parameter space: random (filter-, layer- or un-normalised), Hessian eigenvectors, lines to a
second model.

A direction is a dict `{parameter name: tensor}` with the shapes, dtype and device of the model's parameters.
Every probe that takes a direction (`slice_1d`, `slice_2d`, `slice_roughness`) also accepts a flat vector in the
flattened-parameter order of `select_parameters(model, params)` (the order of `HessianOperator` and of the
eigenvectors returned by `top_eigenvalues`) or a second model (the direction θ_other − θ).

References:
    H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein (2018), visualizing the loss landscape of neural nets
    (filter normalisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .operators import make_generator, select_parameters

__all__ = [
    "NORMALIZATIONS",
    "Direction",
    "as_direction",
    "check_finite",
    "direction_norm",
    "normalize_direction",
    "random_direction",
]

Direction = dict[str, Tensor]

NORMALIZATIONS = ("filter", "layer", "none")

# Modules whose parameters are "norm parameters" (zeroed with zero_bias_and_norm=True, as in Li et al. 2018).
_NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*d, SyncBatchNorm, InstanceNorm*d
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization={normalization!r}; expected one of {NORMALIZATIONS}")


def bias_and_norm_names(model: nn.Module) -> set[str]:
    """Names of the parameters called `bias` and of every parameter of a normalisation layer."""
    names = {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
    for prefix, module in model.named_modules():
        if isinstance(module, _NORM_MODULES):
            names.update(f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters(recurse=False))
    return names


def random_direction(
    model: nn.Module,
    normalization: str = "filter",
    *,
    seed: int | torch.Generator,
    zero_bias_and_norm: bool = True,
    params: Sequence[str] | Sequence[Tensor] | None = None,
) -> Direction:
    r"""A random Gaussian direction in parameter space, normalised to the scale of the model's parameters θ.

    Each entry is drawn i.i.d. from N(0, 1) (in float64 on the CPU from `seed`, then cast to the parameter's
    dtype and device, so the same seed gives the same direction on any device), then normalised:

    - `"filter"` (Li et al. 2018, Sec. 4): every filter is rescaled to the norm of the same filter of θ,
      :math:`d_{i,j} \leftarrow d_{i,j} \, \lVert\theta_{i,j}\rVert / \lVert d_{i,j}\rVert`, where a filter
      is a slice along the first dimension (an output channel of a convolution, a row — one neuron — of a
      linear layer). A parameter with fewer than two dimensions is treated as one filter.
    - `"layer"`: every parameter tensor is rescaled as a whole, :math:`d_i \leftarrow d_i \lVert\theta_i\rVert
      / \lVert d_i\rVert`.
    - `"none"`: the raw Gaussian draw.

    With `zero_bias_and_norm=True` (Li et al.'s recommended setting) the entries of parameters named `bias` and
    of normalisation layers (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm) are set to 0, whatever the
    normalisation. (Li et al.'s code, when not zeroing them, copies θ into a 1-D direction; here a 1-D
    parameter is rescaled like one filter instead.) A filter of θ that is exactly zero gives a zero filter.

    Args:
        model: the network; its parameters give names, shapes, dtype, device and the normalising norms.
        normalization: `"filter"`, `"layer"` or `"none"`; anything else raises.
        seed: an int or a `torch.Generator` (required: two directions of a plane need two seeds).
        zero_bias_and_norm: zero the bias and normalisation-layer entries.
        params: restrict the direction to these parameters (default: all with `requires_grad`).

    Returns:
        `{parameter name: tensor}` in `model.named_parameters()` order.
    """
    _check_normalization(normalization)
    if not isinstance(zero_bias_and_norm, bool):
        raise TypeError(f"zero_bias_and_norm must be True or False, got {zero_bias_and_norm!r}")
    gen = make_generator(seed)
    names, tensors = select_parameters(model, params)
    raw = {
        n: torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device=p.device, dtype=p.dtype)
        for n, p in zip(names, tensors, strict=True)
    }
    return normalize_direction(model, raw, normalization, zero_bias_and_norm=zero_bias_and_norm)


def normalize_direction(
    model: nn.Module, direction, normalization: str, *, zero_bias_and_norm: bool = False
) -> Direction:
    """Normalise any direction (dict, flat vector, or a second model) to the model's parameters as
    `random_direction` does (`"filter"`, `"layer"` or `"none"`); returns a new dict, the input is not modified.

    Useful to put Hessian eigenvectors on the same scale as filter-normalised random directions.
    """
    _check_normalization(normalization)
    direction = as_direction(model, direction)
    theta = dict(model.named_parameters())
    skip = bias_and_norm_names(model) if zero_bias_and_norm else set()
    out: Direction = {}
    for name, d in direction.items():
        if name in skip:
            out[name] = torch.zeros_like(d)
        elif normalization == "none":
            out[name] = d.clone()
        else:
            out[name] = _rescale(d, theta[name].detach(), per_filter=normalization == "filter")
    return out


def _rescale(d: Tensor, w: Tensor, per_filter: bool) -> Tensor:
    """Rescale d to the norm of w, per slice along dim 0 (filters) or as a whole; zero where d is zero."""
    if per_filter and d.ndim >= 2:
        d_rows, w_rows = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
        d_norm, w_norm = d_rows.norm(dim=1, keepdim=True), w_rows.norm(dim=1, keepdim=True)
    else:
        d_rows, w_rows = d.reshape(1, -1), w.reshape(1, -1)
        d_norm, w_norm = d_rows.norm(), w_rows.norm()
    scale = torch.where(d_norm > 0, w_norm / torch.where(d_norm > 0, d_norm, 1.0), 0.0)
    return (d_rows * scale).reshape(d.shape)


def as_direction(
    model: nn.Module,
    direction,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    *,
    name: str = "direction",
) -> Direction:
    """Turn a direction given in any accepted form into a dict `{parameter name: tensor}`.

    Accepted forms:
        - a mapping `{parameter name: tensor}`; names must be parameters of `model` with matching shapes;
          parameters left out do not move. Values are cast to the parameter's dtype and device.
        - a flat tensor of length D in the order of `select_parameters(model, params)` — the order of
          `HessianOperator(model, ..., params=params)` and of `top_eigenvalues(...).vectors[:, i]`.
        - a model with the same parameter names and shapes: the direction θ_other − θ (the line to it).

    A direction with a NaN or inf entry (after the cast) raises ValueError naming the entry; `name` is what the
    messages call the direction (e.g. "d1"). For a model direction the two models' parameters are checked first.
    """
    named = dict(model.named_parameters())
    if isinstance(direction, nn.Module):
        other = dict(direction.named_parameters())
        _check_same_parameters(named, other)
        names, _ = select_parameters(model, params)
        check_finite({n: named[n] for n in names}, "the model's parameter")
        check_finite({n: other[n] for n in names}, f"the {name} model's parameter")
        out = {
            n: other[n].detach().to(device=named[n].device, dtype=named[n].dtype) - named[n].detach()
            for n in names
        }
    elif isinstance(direction, Tensor):
        names, tensors = select_parameters(model, params)
        total = sum(t.numel() for t in tensors)
        if direction.ndim != 1 or direction.numel() != total:
            raise ValueError(
                f"a flat {name} must be a 1-D tensor of length {total} (the selected parameters, in "
                f"select_parameters order), got shape {tuple(direction.shape)}; pass the same `params` as to "
                "HessianOperator"
            )
        pieces = torch.split(direction.detach(), [t.numel() for t in tensors])
        out = {
            n: c.reshape(t.shape).to(device=t.device, dtype=t.dtype)
            for n, c, t in zip(names, pieces, tensors, strict=True)
        }
    elif isinstance(direction, Mapping):
        if params is not None:
            raise ValueError(
                "`params` applies to flat and model directions only; a dict names its parameters"
            )
        unknown = [n for n in direction if n not in named]
        if unknown:
            raise ValueError(f"{name} names {unknown} are not parameters of the model")
        if not direction:
            raise ValueError(f"the {name} is empty")
        out = {}
        for n, param in named.items():  # model order
            if n not in direction:
                continue
            d = direction[n]
            if not isinstance(d, Tensor):
                raise TypeError(f"{name}[{n!r}] must be a tensor, got {type(d).__name__}")
            if d.shape != param.shape:
                raise ValueError(
                    f"{name}[{n!r}] has shape {tuple(d.shape)}, the parameter {tuple(param.shape)}"
                )
            out[n] = d.detach().to(device=param.device, dtype=param.dtype)
    else:
        raise TypeError(
            f"a {name} must be a dict {{parameter name: tensor}}, a flat tensor or an nn.Module, got "
            f"{type(direction).__name__}"
        )
    check_finite(out, name, indexed=True)
    return out


def check_finite(tensors: Mapping[str, Tensor], what: str, *, indexed: bool = False) -> None:
    """Raise ValueError if a floating (or complex) tensor of `tensors` has a NaN or inf entry, naming it:
    "{what} 'name' contains NaN or inf" (or "{what}['name'] ..." with `indexed`). One pass over the entries."""
    for n, t in tensors.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            label = f"{what}[{n!r}]" if indexed else f"{what} {n!r}"
            raise ValueError(f"{label} contains NaN or inf")


def _check_same_parameters(
    a: Mapping[str, Tensor], b: Mapping[str, Tensor], what: str = "parameters"
) -> None:
    if list(a) != list(b):
        raise ValueError(
            f"the two models have different {what}: {sorted(set(a) ^ set(b)) or 'order differs'}"
        )
    for n in a:
        if a[n].shape != b[n].shape:
            raise ValueError(
                f"{what[:-1]} {n!r} has shape {tuple(a[n].shape)} in one model, {tuple(b[n].shape)}"
            )


def direction_norm(direction: Mapping[str, Tensor]) -> float:
    """The Euclidean norm of a direction over all its entries (computed in float64)."""
    return float(torch.sqrt(sum((d.double() ** 2).sum().cpu() for d in direction.values())))
