"""1-D and 2-D slices of the loss surface: L(θ + α d) and L(θ + x d₁ + y d₂) on a grid.

Every grid point is a linear combination of a few fixed parameter sets ("anchors": θ and the directions, or two
models), built so that a coordinate 0 gives θ exactly (the other terms are exact zeros), and evaluated in
inference mode with the model in eval mode; the caller's model is never written. Two evaluation strategies
give the same numbers up to rounding (of building a point and of the forward pass, about 1e-15 relative in
float64):

- `"vmap"`: `torch.func.vmap` of `torch.func.functional_call` over a chunk of grid points, one forward pass per
  chunk and batch (for tiny models, where a single forward pass is dominated by per-operation overhead, and
  on accelerators);
- `"loop"`: one plain forward pass per grid point and batch, through a private copy of the model whose tensors
  are views of one flat vector per dtype, into which each point θ + Σ w_k d_k is written by one
  matrix-vector product (best on a CPU for anything but tiny models).

`"auto"` picks `"vmap"` on accelerators and, on a CPU, for models without convolutions whose forward pass is
tiny (first batch size × parameters < 10⁵ multiply-adds), else `"loop"`, and falls back to `"loop"` if the
model cannot be vmapped (the result's `.method` says which ran). Measured on one CPU thread (float64, 15×15
grids): a 6-16-16-4 MLP on 64 samples runs 1.6× faster with vmap, a 40-64-64-10 MLP on 32 to 512 samples
1.4× to 1.9× faster with the loop.

The first layer, once per chunk: a linear or convolutional layer is linear in its weight and bias together,
F(x; Σ_k w_k θ_k) = Σ_k w_k F(x; θ_k), so for the points Σ_k w_k θ_k of a slice (k over θ and the directions)
the layer's output on a batch is formed from its K outputs at the anchors, computed once per batch and chunk of
points, instead of one product per point. Forming a point's output costs K passes over it, the product
fan-in multiply-adds per entry at matrix-product speed, so this pays only for a large enough fan-in (inputs
per output, `in_features` or `in_channels / groups × kernel size`): it is applied when fan-in ≥ 16 K.
Measured on one CPU thread with K = 3 (float64): fan-in 40 (the 40-64-64-10 MLP) is 5 % slower with it, fan-in
200 1.9× and fan-in 784 5× faster. The rule is conservative, applied only where the first operation is
provably that layer: the model is a plain `nn.Sequential` (not a subclass, which may override `forward`) whose
first element is exactly an `nn.Linear` or `nn.Conv1d/2d/3d` (not a subclass, not parametrised), with no
forward hooks on the model, on that layer or registered globally, whose parameters (weight and bias) all move
with the anchors and appear nowhere else in the model. Everything else (other architectures, the project's own
model classes, a subset of parameters without the first layer) uses the plain evaluation. The two agree to
rounding (about 1e-15 relative in float64; in half precision each anchor's output is rounded once more), and a
point whose weights are (1, 0, ..., 0) — θ itself — gives θ's first-layer output exactly.

Non-finite values: NaN or inf in the model's parameters or buffers, in a direction or in the data (floating
inputs and targets) raise ValueError naming what is not finite. A grid point whose loss is not finite (e.g. the
loss overflows far from θ) is a legitimate value of the surface there and is returned as inf or NaN.

References:
    I. J. Goodfellow, O. Vinyals, A. M. Saxe (2015), qualitatively characterizing neural network optimization
    problems (1-D interpolation); H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein (2018), visualizing the loss
    landscape of neural nets (2-D slices with filter-normalised directions).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .directions import Direction, as_direction, check_finite, direction_norm
from .operators import (
    LossFn,
    batch_size,
    call_model,
    eval_mode,
    functional_call_model,
    has_convolution,
    iterate_batches,
    materialize,
    move_batch,
    tensor_leaves,
    unpacked,
)
from .progress import progress_bar

__all__ = ["METHODS", "Slice1D", "Slice2D", "slice_1d", "slice_2d", "symmetric_grid"]

METHODS = ("auto", "vmap", "loop")

# "auto" uses vmap on a CPU below this many multiply-adds per forward pass (first batch size × parameters).
_VMAP_MAX_WORK_CPU = 10**5
# The first-layer products are formed once per chunk where the layer's fan-in is at least this many per anchor.
_FIRST_LAYER_FAN_IN_PER_ANCHOR = 16
# Automatic chunk size of the vmap strategy: parameters and activations of one chunk of grid points should take
# about this many bytes (on a CPU, a chunk whose activations stay in cache is faster than a larger one).
_CHUNK_BYTES = {"cpu": 16 * 2**20}
_CHUNK_BYTES_DEFAULT = 512 * 2**20
_MAX_CHUNK = 256
# The loop strategy builds its points a chunk at a time too, within this many bytes of parameters.
_LOOP_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Slice1D:
    """Loss (and accuracy) along a line θ + α d.

    Attributes:
        alphas: the coordinates α, float64, shape (n,).
        losses: mean loss over the data at each α, float64, shape (n,).
        accuracies: fraction of correct argmax predictions at each α (classifiers), else None.
        method: the evaluation strategy that ran (`"vmap"` or `"loop"`).
    """

    alphas: Tensor
    losses: Tensor
    accuracies: Tensor | None
    method: str


@dataclass(frozen=True)
class Slice2D:
    """Loss (and accuracy) on a plane θ + x d₁ + y d₂; `losses[i, j]` is at `(xs[i], ys[j])`.

    Attributes:
        xs, ys: the coordinates, float64, shapes (nx,), (ny,).
        losses: mean loss over the data, float64, shape (nx, ny).
        accuracies: fraction of correct argmax predictions (classifiers), shape (nx, ny), else None.
        method: the evaluation strategy that ran (`"vmap"` or `"loop"`).
    """

    xs: Tensor
    ys: Tensor
    losses: Tensor
    accuracies: Tensor | None
    method: str


def symmetric_grid(radius: float, num_points: int) -> Tensor:
    """`num_points` evenly spaced coordinates from −radius to radius (float64) with 0 exactly in the middle
    when `num_points` is odd (`torch.linspace(-1, 1, 21)` in float32 misses 0 by 1.5e-8)."""
    if not (isinstance(num_points, int) and num_points >= 2):
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be positive and finite, got {radius!r}")
    steps = torch.arange(num_points, dtype=torch.float64) * 2 - (num_points - 1)
    return steps * (radius / (num_points - 1))


def slice_1d(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    direction,
    alphas: Sequence[float] | Tensor,
    *,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    accuracy: bool | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> Slice1D:
    r"""The loss along a line through θ: :math:`f(\alpha) = L(\theta + \alpha d)` for each α in `alphas`.

    Each point is the parameter set :math:`1 \cdot \theta + \alpha \cdot d`, computed element-wise, so α = 0 is
    θ exactly. L is the mean of `loss_fn` over the data (batches weighted by size), evaluated with the model in
    eval mode (BatchNorm uses its running statistics). Buffers and parameters not in the direction stay at
    their values.

    Args:
        model: the network at θ (not modified).
        loss_fn: `loss_fn(outputs, targets)`, mean over a batch.
        data: an `(inputs, targets)` pair or an iterable of such pairs.
        direction: a dict `{parameter name: tensor}` (e.g. `random_direction`), a flat vector in the order of
            `select_parameters(model, params)` (e.g. a column of `top_eigenvalues(op).vectors`), or a second
            model (the line to it: d = θ_other − θ, so α = 1 is the other model up to rounding).
        alphas: 1-D coordinates (include 0 to evaluate θ itself; see `symmetric_grid`).
        params: parameter subset that a flat or model direction refers to.
        accuracy: compute accuracies (`None`: when targets are class indices and outputs are (N, C) logits).
        method: `"auto"`, `"vmap"` or `"loop"` (see the module docstring).
        chunk_size: grid points per vmapped pass (default: from a memory estimate, at most 64).
        unpack: how to split each batch into `(inputs, targets)`, as for `HessianOperator` (default
            `operators.default_unpack`; e.g. `unpack_first_two` for `(x, y, extra)` batches).
        progress: a progress bar over grid points (None: the library default, `landscape.set_progress`).

    Returns:
        `Slice1D` with losses of shape `(len(alphas),)`. A point whose loss is not finite (overflow far from θ)
        holds inf or NaN; NaN or inf in the model, the direction or the data raise ValueError.

    Memory: the model, one chunk of grid points' parameters and their activations (see `chunk_size`).
    """
    data = unpacked(data, unpack)
    evaluator = GridEvaluator(model, loss_fn, data, accuracy=accuracy, method=method, chunk_size=chunk_size)
    d = as_direction(model, direction, params)
    alphas = _coordinates(alphas, "alphas")
    theta = {n: model.get_parameter(n).detach() for n in d}
    weights = torch.stack([torch.ones_like(alphas), alphas], dim=1)
    losses, accs = evaluator.evaluate([theta, d], weights, progress=progress, desc="slice_1d")
    return Slice1D(alphas=alphas, losses=losses, accuracies=accs, method=evaluator.method_used)


def slice_2d(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    d1,
    d2,
    xs: Sequence[float] | Tensor,
    ys: Sequence[float] | Tensor,
    *,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    accuracy: bool | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    unpack: Callable | None = None,
    progress: bool | None = None,
) -> Slice2D:
    r"""The loss on a plane through θ: :math:`f(x, y) = L(\theta + x d_1 + y d_2)` on the grid `xs` × `ys`.

    Each point is :math:`1\cdot\theta + x \cdot d_1 + y \cdot d_2` computed element-wise, so (0, 0) is θ
    exactly (Li et al. 2018 plot this surface with two filter-normalised random directions; their grid, like
    loss-landscapes' `random_plane`, need not contain θ). Same conventions as `slice_1d`; `d1` and `d2` take
    the same forms and must not be parallel. Random directions in high dimension are nearly orthogonal; nothing
    is orthogonalised here.

    Returns:
        `Slice2D` with `losses[i, j] = f(xs[i], ys[j])`, shape `(len(xs), len(ys))`.
    """
    data = unpacked(data, unpack)
    evaluator = GridEvaluator(model, loss_fn, data, accuracy=accuracy, method=method, chunk_size=chunk_size)
    a, b = as_direction(model, d1, params, name="d1"), as_direction(model, d2, params, name="d2")
    xs, ys = _coordinates(xs, "xs"), _coordinates(ys, "ys")
    _check_independent(a, b)
    names = [n for n, _ in model.named_parameters() if n in a or n in b]
    a = {n: a[n] if n in a else torch.zeros_like(b[n]) for n in names}
    b = {n: b[n] if n in b else torch.zeros_like(a[n]) for n in names}
    theta = {n: model.get_parameter(n).detach() for n in names}
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    weights = torch.stack(
        [torch.ones(gx.numel(), dtype=torch.float64), gx.reshape(-1), gy.reshape(-1)], dim=1
    )
    losses, accs = evaluator.evaluate([theta, a, b], weights, progress=progress, desc="slice_2d")
    shape = (xs.numel(), ys.numel())
    return Slice2D(
        xs=xs,
        ys=ys,
        losses=losses.reshape(shape),
        accuracies=None if accs is None else accs.reshape(shape),
        method=evaluator.method_used,
    )


def _check_independent(a: Direction, b: Direction) -> None:
    na, nb = direction_norm(a), direction_norm(b)
    if na == 0 or nb == 0:
        raise ValueError("a direction of the plane is zero")
    dot = sum(float((a[n].double() * b[n].double()).sum()) for n in a if n in b)
    if abs(dot) >= (1 - 1e-12) * na * nb:
        raise ValueError("d1 and d2 are parallel: they span a line, not a plane (use different seeds)")


def check_finite_data(part, what: str) -> None:
    """Raise ValueError "{what} contain NaN or inf" if a floating tensor in `part` (a tensor, or a tuple, list
    or dict of them) has a NaN or inf entry."""
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in tensor_leaves(part)):
        raise ValueError(f"{what} contain NaN or inf")


def _coordinates(values, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t.clone()


# ----------------------------------------------------------------------------------------------------------------
# The evaluation engine (shared with interpolation and flatness)


class FlatAnchors:
    """K parameter sets ("anchors") stored as flat vectors, one (K, D) block per dtype and device, combined into
    grid points Σ_k w[p, k] · anchors[k].

    The combination is element-wise in a fixed order (a product, then a sum, per anchor), and element-wise
    products and sums are correctly rounded entry by entry, so a point comes out bit-for-bit the same whether it
    is built alone or in a chunk, and a weight row (1, 0, ..., 0) gives anchors[0] exactly.
    """

    def __init__(self, anchors: Sequence[dict[str, Tensor]]) -> None:
        if not anchors:
            raise ValueError("at least one anchor is needed")
        self.names = list(anchors[0])
        for a in anchors:
            if list(a) != self.names:
                raise ValueError("all anchors must name the same tensors")
        self.shapes = {n: anchors[0][n].shape for n in self.names}
        self.groups: dict[tuple[torch.dtype, torch.device], list[str]] = {}
        for n in self.names:
            t = anchors[0][n]
            for a in anchors:
                if a[n].shape != t.shape or a[n].dtype != t.dtype or a[n].device != t.device:
                    raise ValueError(f"the anchors disagree on the shape, dtype or device of {n!r}")
            self.groups.setdefault((t.dtype, t.device), []).append(n)
        self.blocks = {
            key: torch.stack([torch.cat([a[n].detach().reshape(-1) for n in names]) for a in anchors])
            for key, names in self.groups.items()
        }
        self.num_anchors = len(anchors)

    def __call__(self, weights: Tensor) -> dict[str, Tensor]:
        """The points for the rows of `weights` (P, K): `{name: tensor of shape (P, *shape)}` (views of one
        (P, D) block per group)."""
        if weights.ndim != 2 or weights.shape[1] != self.num_anchors:
            raise ValueError(f"weights must have shape (P, {self.num_anchors}), got {tuple(weights.shape)}")
        out = {}
        for (dtype, device), names in self.groups.items():
            block = self.blocks[(dtype, device)]
            w = weights.to(device=device, dtype=dtype)
            acc = w[:, :1] * block[0]
            for k in range(1, self.num_anchors):
                acc = acc + w[:, k : k + 1] * block[k]
            offset = 0
            for n in names:
                size = math.prod(self.shapes[n])
                out[n] = acc[:, offset : offset + size].unflatten(1, (*self.shapes[n],) or (1,))
                if not self.shapes[n]:
                    out[n] = out[n].reshape(acc.shape[0])
                offset += size
        return out


# Exactly these classes (not subclasses, which may override `forward`): their output is linear in (weight, bias).
_LINEAR_FIRST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FirstLayer:
    r"""The first layer of a plain `nn.Sequential` evaluated at K anchors, for points Σ_k w_k θ_k.

    For a linear or convolutional layer F(x; W, b) = W ⋆ x + b, linear in (W, b) together, so

    .. math::  F\big(x; \textstyle\sum_k w_k W_k, \sum_k w_k b_k\big) = \sum_k w_k F(x; W_k, b_k):

    `outputs(x)` computes the K products F(x; W_k, b_k) (K layer calls per batch and chunk of points),
    `combine` forms one point's output from them: K passes over one output instead of a product with the
    layer's fan-in per entry. The weights (1, 0, ..., 0) give F(x; W_0, b_0) exactly (the other terms are exact
    zeros). Memory: the K outputs of the layer on one batch, and for the vmap strategy the chunk's combined
    outputs. `find` says when the first operation of the model is provably this layer (see the module
    docstring).
    """

    def __init__(self, layer: nn.Module, rest: nn.Module, names: list[str], anchors: list[dict[str, Tensor]]):
        self.layer = layer
        self.rest = rest
        self.names = names  # the layer's parameter names in the model
        self.anchors = anchors  # per anchor, the layer's tensors by local name ("weight", "bias")

    @classmethod
    def find(cls, model: nn.Module, anchors: Sequence[dict[str, Tensor]]) -> FirstLayer | None:
        """The split of `model` into its first layer and the rest, or None where the rule does not hold."""
        if type(model) is not nn.Sequential or len(model) == 0:
            return None
        prefix, layer = next(iter(model.named_children()))
        if type(layer) not in _LINEAR_FIRST_LAYERS or list(layer.buffers()):
            return None
        global_hooks = nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
        if global_hooks or any(m._forward_hooks or m._forward_pre_hooks for m in (model, layer)):
            return None
        if layer.weight[0].numel() < _FIRST_LAYER_FAN_IN_PER_ANCHOR * len(anchors):
            return None  # K passes over the output would cost more than the product
        local = [n for n, _ in layer.named_parameters()]
        names = [f"{prefix}.{n}" for n in local]
        if not all(n in a for a in anchors for n in names):
            return None  # the layer does not move with the anchors (e.g. a subset of parameters)
        rest = model[1:]
        own = {id(t) for t in layer.parameters()}
        if any(id(t) in own for _, t in rest.named_parameters(remove_duplicate=False)):
            return None  # the layer or its parameters are used again further on
        layer_anchors = [{n: a[f"{prefix}.{n}"] for n in local} for a in anchors]
        return cls(layer, rest, names, layer_anchors)

    def outputs(self, inputs: Tensor) -> Tensor:
        """F(inputs; θ_k) for the anchors k, stacked: shape (K, *output shape)."""
        return torch.stack([torch.func.functional_call(self.layer, a, (inputs,)) for a in self.anchors])

    def combine(self, outputs: Tensor, weights: Sequence[float], out: Tensor | None = None) -> Tensor:
        """Σ_k weights[k] · outputs[k] for one point, shape (*output shape), written into `out` if given: K
        passes over one output, in place after the first (a (1, K) @ (K, M) product, or a fresh tensor per
        point, costs as much as a 40-input linear layer on a CPU)."""
        if weights[0] == 1 and len(weights) > 1:  # θ + Σ w_k d_k: one pass fewer
            acc = torch.add(outputs[0], outputs[1], alpha=weights[1], out=out)
            start = 2
        else:
            acc, start = torch.mul(outputs[0], weights[0], out=out), 1
        for k in range(start, len(weights)):
            acc.add_(outputs[k], alpha=weights[k])
        return acc

    def combine_chunk(self, outputs: Tensor, weights: Tensor) -> Tensor:
        """Σ_k weights[p, k] · outputs[k] for the rows of `weights` (P, K), shape (P, *output shape): one
        (P, K) @ (K, M) product for a chunk."""
        w = weights.to(device=outputs.device, dtype=outputs.dtype)
        return (w @ outputs.reshape(outputs.shape[0], -1)).reshape(w.shape[0], *outputs.shape[1:])


class GridEvaluator:
    """Mean loss (and accuracy) of a model at many parameter points, without touching the model.

    Points are given as linear combinations of anchors (`evaluate`), chunk by chunk (`evaluate_points`), or as
    one explicit state (`evaluate_state`). The model is only read; the loop strategy writes points into a
    private copy of it.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        *,
        accuracy: bool | None = None,
        method: str = "auto",
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets)")
        if method not in METHODS:
            raise ValueError(f"unknown method={method!r}; expected one of {METHODS}")
        if accuracy not in (None, True, False):
            raise TypeError(f"accuracy must be None, True or False, got {accuracy!r}")
        if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        self.model = model
        self.loss_fn = loss_fn
        self.data = materialize(data)
        self.accuracy = accuracy
        self.method = method
        self.chunk_size = chunk_size
        self.method_used = method
        self.is_classifier: bool | None = None
        self.base = {n: t.detach() for n, t in model.named_parameters()}
        self.base.update({n: t.detach() for n, t in model.named_buffers()})
        check_finite(dict(model.named_parameters()), "the model's parameter")
        check_finite(dict(model.named_buffers()), "the model's buffer")
        if not self.base:
            raise ValueError("the model has no parameters or buffers to evaluate at")
        # Inputs are cast to the floating dtype (and device) of the largest floating parameter or buffer.
        floating = [t for t in self.base.values() if t.is_floating_point()] or list(self.base.values())
        self.like = max(floating, key=lambda t: t.numel())
        self._single: list[tuple[Tensor, Tensor]] | None = None
        self._num_samples = 0
        self._zero: Tensor | None = None

    # -- one point ------------------------------------------------------------------------------------------

    def _batches(self):
        """The non-empty batches on the model's device (inputs in its floating dtype); a single in-memory
        (inputs, targets) pair is moved once and reused."""
        if self._single is not None:
            return self._single
        batches = self._move_batches()
        if isinstance(self.data, (tuple, list)) and len(self.data) == 2 and isinstance(self.data[0], Tensor):
            self._single = list(batches)
            return self._single
        return batches

    def _move_batches(self):
        count = 0
        for index, (inputs, targets) in enumerate(iterate_batches(self.data)):
            if batch_size(inputs) == 0:
                continue
            count += batch_size(inputs)
            batch = move_batch(inputs, targets, self.like)
            check_finite_data(batch[0], f"the inputs of batch {index}")
            check_finite_data(batch[1], f"the targets of batch {index}")
            yield batch
        if count == 0:
            raise ValueError("data is empty: no samples to evaluate the loss on")

    def _score(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The batch's mean loss (0-d) and number of correct argmax predictions (0-d, 0 if not scored)."""
        loss = self.loss_fn(outputs, targets)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar (mean over the batch), got shape {shape}")
        classifier = (
            not targets.is_floating_point()
            and targets.ndim == 1
            and outputs.ndim == 2
            and outputs.shape[0] == targets.shape[0]
        )
        if self.accuracy and not classifier:
            raise ValueError(
                "accuracy=True needs class-index targets of shape (N,) and outputs of shape (N, C); got "
                f"targets {tuple(targets.shape)} ({targets.dtype}) and outputs {tuple(outputs.shape)}"
            )
        self.is_classifier = classifier and self.accuracy is not False
        if self.is_classifier:
            correct = (outputs.argmax(-1) == targets).sum()
        else:
            if self._zero is None:
                self._zero = torch.zeros((), dtype=torch.int64, device=outputs.device)
            correct = self._zero
        return loss.reshape(()), correct

    def evaluate_state(self, state: dict[str, Tensor]) -> tuple[float, float | None]:
        """Mean loss and accuracy at one explicit state (entries override the model's parameters/buffers)."""
        full = {**self.base, **state}
        total, correct, count = 0.0, 0, 0
        with eval_mode(self.model), torch.inference_mode():
            for inputs, targets in self._batches():
                outputs = functional_call_model(self.model, full, inputs)
                loss, right = self._score(outputs, targets)
                n = batch_size(inputs)
                total += n * float(loss)
                correct += int(right)
                count += n
        return total / count, (correct / count if self.is_classifier else None)

    # -- many points ----------------------------------------------------------------------------------------

    def evaluate(
        self,
        anchors: Sequence[dict[str, Tensor]],
        weights: Tensor,
        *,
        progress: bool | None = None,
        desc: str = "grid",
    ) -> tuple[Tensor, Tensor | None]:
        """Losses (and accuracies) at the points Σ_k weights[p, k] · anchors[k], p = 0..P−1 (float64, CPU).

        Where `FirstLayer.find` allows it, the first layer's output is formed from its outputs at the anchors
        (see the module docstring) and its parameters are not built per point. The loop strategy writes each
        point straight into its working copy (one matrix-vector product per dtype group, see `_working_copy`)
        instead of building the chunk's points first."""
        first = FirstLayer.find(self.model, anchors)
        if first is not None:
            anchors = [{n: t for n, t in a.items() if n not in first.names} for a in anchors]
        flat = FlatAnchors(anchors) if anchors[0] else None

        def make_points(start: int, stop: int) -> dict[str, Tensor]:
            return {} if flat is None else flat(weights[start:stop])

        return self._evaluate(make_points, weights.shape[0], progress, desc, (flat, weights, first))

    def evaluate_points(
        self,
        make_points: Callable[[int, int], dict[str, Tensor]],
        num_points: int,
        *,
        progress: bool | None = None,
        desc: str = "grid",
    ) -> tuple[Tensor, Tensor | None]:
        """Losses (and accuracies) at `num_points` points; `make_points(start, stop)` returns the points
        start..stop−1 as `{name: tensor of shape (stop − start, *shape)}` and must depend on its arguments only
        (it may be called again for the same range)."""
        return self._evaluate(make_points, num_points, progress, desc, None)

    def _evaluate(
        self,
        make_points: Callable[[int, int], dict[str, Tensor]],
        num_points: int,
        progress: bool | None,
        desc: str,
        linear: tuple[FlatAnchors | None, Tensor, FirstLayer | None] | None,
    ) -> tuple[Tensor, Tensor | None]:
        """`evaluate_points`; with `linear = (anchors, weights, first layer)` the points are combinations of
        anchors (`evaluate`)."""
        losses = torch.empty(num_points, dtype=torch.float64)
        correct = torch.zeros(num_points, dtype=torch.float64)
        method = self._auto_method() if self.method == "auto" else self.method
        sample = make_points(0, 1)
        unknown = [n for n in sample if n not in self.base]
        if unknown:
            raise ValueError(f"{unknown} are not parameters or buffers of the model")
        point_bytes = sum(t.numel() * t.element_size() for t in sample.values())
        # the loop strategy takes explicit points a chunk at a time (fewer small operations per point); it
        # writes combinations of anchors straight into its working copy, so their chunks need no memory
        loop_chunk = _MAX_CHUNK
        if linear is None:
            loop_chunk = max(1, min(_MAX_CHUNK, _LOOP_CHUNK_BYTES // max(point_bytes, 1)))
        chunk = (self.chunk_size or self._auto_chunk(point_bytes)) if method == "vmap" else loop_chunk
        flat, weights, first = (None, None, None) if linear is None else linear
        work = None
        with (
            progress_bar(progress, total=num_points, desc=desc, unit="pt") as bar,
            eval_mode(self.model),
            torch.inference_mode(),
        ):
            start = 0
            while start < num_points:
                stop = min(start + chunk, num_points)
                rows = None if weights is None else weights[start:stop]
                if method == "vmap":
                    try:
                        chunk_losses, chunk_correct = self._vmapped(make_points(start, stop), first, rows)
                    except Exception:
                        if self.method != "auto" or start > 0:
                            raise
                        method, chunk = "loop", loop_chunk  # not vmappable: one plain pass per point
                        continue
                else:
                    if work is None:
                        work = self._working_copy(flat)
                    points = make_points(start, stop) if linear is None else None
                    chunk_losses, chunk_correct = self._looped(work, stop - start, points, rows, first)
                losses[start:stop] = chunk_losses.cpu()
                correct[start:stop] = chunk_correct.cpu().double() / self._num_samples
                bar.update(stop - start)
                start = stop
        self.method_used = method
        return losses, (correct if self.is_classifier else None)

    def _vmapped(
        self, points: dict[str, Tensor], first: FirstLayer | None, rows: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Mean losses (P,) and correct counts (P,) of a chunk of points: one vmapped forward pass per batch
        (with `first`: through the layers after the first, on the first-layer outputs combined with the
        chunk's anchor weights `rows`)."""
        model, skip = (self.model, ()) if first is None else (first.rest, first.names)
        fixed = {n: t for n, t in self.base.items() if n not in points and n not in skip}

        def one_point(point, inputs, targets):
            outputs = functional_call_model(model, {**fixed, **point}, inputs)
            return self._score(outputs, targets)

        if first is None:
            batched = torch.func.vmap(one_point, in_dims=(0, None, None))
            return self._mean_over_batches(lambda inputs, targets: batched(points, inputs, targets))
        batched = torch.func.vmap(one_point, in_dims=(0, 0, None))

        def score(inputs, targets):
            return batched(points, first.combine_chunk(first.outputs(inputs), rows), targets)

        return self._mean_over_batches(score)

    def _mean_over_batches(self, score) -> tuple[Tensor, Tensor]:
        """Σ_b n_b · loss_b / Σ_b n_b (float64; a single batch's loss as it is) and Σ_b correct_b, where
        `score(inputs, targets)` gives the losses and correct counts of a chunk's points on one batch."""
        batches = self._batches()
        if isinstance(batches, list) and len(batches) == 1:
            loss, right = score(*batches[0])
            self._num_samples = batch_size(batches[0][0])
            return loss.double(), right
        total = correct = None
        count = 0
        for inputs, targets in batches:
            loss, right = score(inputs, targets)
            n = batch_size(inputs)
            total = n * loss.double() if total is None else total + n * loss.double()
            correct = right if correct is None else correct + right
            count += n
        self._num_samples = count
        return total / count, correct

    def _working_copy(self, flat: FlatAnchors | None) -> tuple[nn.Module, dict[str, Tensor], list]:
        """A private copy of the model in eval mode, its tensors by name, and, given `flat`, one contiguous
        vector per group of `flat` (its layout) of which the copy's tensors named in `flat` are views, paired
        with that group's (K, D) block: a point is then written by one product `weights @ block`."""
        work = copy.deepcopy(self.model).eval()
        for param in work.parameters():
            param.grad = None
            param.requires_grad_(False)
        tensors = {**dict(work.named_parameters()), **dict(work.named_buffers())}
        vectors = []
        if flat is not None:
            for key, names in flat.groups.items():
                block = flat.blocks[key]
                vector = torch.empty(block.shape[1], dtype=block.dtype, device=block.device)
                offset = 0
                for n in names:
                    shape = flat.shapes[n]
                    stride = torch.empty(shape, device="meta").stride()
                    tensors[n].set_(vector.untyped_storage(), offset, shape, stride)  # tied tensors follow
                    offset += math.prod(shape)
                vectors.append((vector.view(1, -1), block))
        return work, tensors, vectors

    def _looped(
        self,
        work: tuple[nn.Module, dict[str, Tensor], list],
        num: int,
        points: dict[str, Tensor] | None,
        rows: Tensor | None,
        first: FirstLayer | None,
    ) -> tuple[Tensor, Tensor]:
        """Mean losses (num,) and correct counts (num,) of a chunk of points, one plain forward pass per point
        and batch. Each point is written into the working copy: copied from `points`, or, for anchor weights
        `rows`, one product per group (`_working_copy`; θ itself, weights (1, 0, ..., 0), comes out exactly as
        every other term is an exact zero). With `first` the copy runs from its second layer on, on the point's
        combined first-layer output. Batches are the outer loop, so a data loader is read once per chunk."""
        module, tensors, vectors = work
        if first is not None:
            module = module[1:]  # shares the working copy's modules and tensors
        if points is not None:
            targets_of = [tensors[n] for n in points]
            values = list(points.values())
        else:
            products = [
                (out, block, rows.to(dtype=block.dtype, device=block.device)) for out, block in vectors
            ]
        weights = None if first is None else rows.tolist()

        def write(p: int) -> None:
            if points is None:
                for out, block, w in products:
                    torch.mm(w[p : p + 1], block, out=out)
            elif values:
                torch._foreach_copy_(targets_of, [v[p] for v in values])

        def score(inputs, targets):
            anchor_outputs = hidden = None
            if first is not None:  # one buffer for the points' first-layer outputs, used in turn
                anchor_outputs = first.outputs(inputs)
                hidden = torch.empty_like(anchor_outputs[0])
            losses, corrects = [], []
            for p in range(num):
                write(p)
                if anchor_outputs is None:
                    outputs = call_model(module, inputs)
                else:
                    outputs = module(first.combine(anchor_outputs, weights[p], out=hidden))
                loss, right = self._score(outputs, targets)
                losses.append(loss)
                corrects.append(right)
            return torch.stack(losses), torch.stack(corrects)

        return self._mean_over_batches(score)

    def _auto_method(self) -> str:
        """`"vmap"` on accelerators and for tiny forward passes on a CPU (see the module docstring), else
        `"loop"`."""
        if self.like.device.type != "cpu":
            return "vmap"
        if has_convolution(self.model):
            return "loop"
        first = next((b for b in iterate_batches(self.data) if batch_size(b[0]) > 0), None)
        if first is None:
            raise ValueError("data is empty: no samples to evaluate the loss on")
        num_params = sum(t.numel() for t in self.model.parameters())
        return "vmap" if batch_size(first[0]) * num_params < _VMAP_MAX_WORK_CPU else "loop"

    def _auto_chunk(self, point_bytes: int) -> int:
        """Grid points per vmapped pass: parameters and activations of a chunk within a per-device budget
        (16 MiB on a CPU, 512 MiB on an accelerator), at most 256 points."""
        per_point = point_bytes + self._activation_bytes()
        budget = _CHUNK_BYTES.get(self.like.device.type, _CHUNK_BYTES_DEFAULT)
        return int(max(1, min(_MAX_CHUNK, budget // max(per_point, 1))))

    def _activation_bytes(self) -> int:
        """Bytes of all module outputs in one forward pass of the first batch (measured on a copy)."""
        first = next((b for b in iterate_batches(self.data) if batch_size(b[0]) > 0), None)
        if first is None:
            raise ValueError("data is empty: no samples to evaluate the loss on")
        probe = copy.deepcopy(self.model)
        sizes = []

        def hook(_module, _inputs, output):
            if isinstance(output, Tensor):
                sizes.append(output.numel() * output.element_size())

        for m in probe.modules():
            m.register_forward_hook(hook)
        inputs, _ = move_batch(*first, self.like)
        with eval_mode(probe), torch.inference_mode():
            call_model(probe, inputs)
        return sum(sizes)
