"""Linear operators on the flattened parameter vector: the one abstraction every estimator shares.

An estimator in this package (`top_eigenvalues`, `hessian_trace`, `spectral_density`, ...) takes a
`LinearOperator` or a dense symmetric matrix, so the same code runs on an exact matrix in a test and on the
Hessian of a network in an experiment.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = [
    "DenseOperator",
    "HessianOperator",
    "LinearOperator",
    "ScaledOperator",
    "as_operator",
    "dense_hessian",
    "flatten_parameters",
    "select_parameters",
]

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


class LinearOperator:
    """A symmetric linear map `R^D -> R^D` applied through products only.

    Subclasses implement `_matmat(V)` for a `(D, m)` block. `op @ v` accepts a vector `(D,)` or a block `(D, m)`
    and returns the same shape. `num_matvecs` counts vectors multiplied so far (a block of m counts m).
    """

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    @property
    def work_dtype(self) -> torch.dtype:
        """The dtype solvers keep their vectors and reductions in: the operator's dtype, promoted to at least
        float32 (QR, eigh and sums are not implemented or not accurate in float16/bfloat16)."""
        return work_dtype(self.dtype)

    def _matmat(self, V: Tensor) -> Tensor:
        raise NotImplementedError

    def __matmul__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim not in (1, 2) or x.shape[0] != self.dim:
            raise ValueError(
                f"operator of shape {self.shape} cannot multiply a tensor of shape {tuple(x.shape)}: "
                f"expected ({self.dim},) or ({self.dim}, m)"
            )
        if not torch.isfinite(x).all():
            raise ValueError("the vector multiplied by the operator contains NaN or inf")
        block = x.unsqueeze(1) if x.ndim == 1 else x
        if block.shape[1] == 0:
            return block.clone()
        out = self._matmat(block.to(device=self.device, dtype=self.dtype))
        self.num_matvecs += block.shape[1]
        if self.dtype != self.work_dtype:
            # A half-precision operator computes in its own dtype; solvers keep their vectors in float32 or
            # float64 (`work_dtype`) and get the product back in that precision.
            out = out.to(torch.promote_types(self.work_dtype, x.dtype if x.is_floating_point() else self.dtype))
        return out[:, 0] if x.ndim == 1 else out

    def to_dense(self) -> Tensor:
        """The D x D matrix, column by column (D products: for small operators and tests)."""
        return self @ torch.eye(self.dim, dtype=self.dtype, device=self.device)

    def to_scipy(self):
        """A `scipy.sparse.linalg.LinearOperator` view (float64 NumPy in and out)."""
        from scipy.sparse.linalg import LinearOperator as ScipyOperator

        def matmat(X):
            block = torch.as_tensor(X, dtype=self.dtype, device=self.device).reshape(self.dim, -1)
            return (self @ block).detach().cpu().double().numpy()

        return ScipyOperator(self.shape, matvec=matmat, matmat=matmat, rmatvec=matmat, dtype=float)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype}, device={self.device})"


class DenseOperator(LinearOperator):
    """A dense symmetric matrix seen as an operator (for tests and small exact problems)."""

    def __init__(self, matrix: Tensor) -> None:
        if not isinstance(matrix, Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
            raise ValueError(f"expected a square matrix, got {shape}")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, V: Tensor) -> Tensor:
        return self.matrix @ V

    def to_dense(self) -> Tensor:
        return self.matrix.clone()


class ScaledOperator(LinearOperator):
    """`diag(s) · A · diag(s)` for a fixed vector `s` (used for scale-normalised curvature)."""

    def __init__(self, op: LinearOperator | Tensor, scale: Tensor) -> None:
        op = as_operator(op)
        if scale.shape != (op.dim,):
            raise ValueError(f"scale must have shape ({op.dim},), got {tuple(scale.shape)}")
        super().__init__(op.dim, op.dtype, op.device)
        self.op = op
        self.scale = scale.to(device=op.device, dtype=op.dtype)

    def _matmat(self, V: Tensor) -> Tensor:
        s = self.scale[:, None]
        return s * (self.op @ (s * V))


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """`dtype` promoted to at least float32 (float16 and bfloat16 become float32; float32/float64 unchanged)."""
    return torch.promote_types(dtype, torch.float32)


def as_operator(op: LinearOperator | Tensor) -> LinearOperator:
    """Return `op` itself if it is an operator; wrap a dense square tensor in a `DenseOperator`."""
    if isinstance(op, LinearOperator):
        return op
    if isinstance(op, Tensor):
        return DenseOperator(op)
    raise TypeError(f"expected a LinearOperator or a square torch.Tensor, got {type(op).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Parameters and data


def select_parameters(
    model: nn.Module, params: Sequence[str] | Sequence[Tensor] | None = None
) -> tuple[list[str], list[Tensor]]:
    """Names and tensors of the parameters an operator acts on, in `model.named_parameters()` order.

    `params=None` takes every parameter with `requires_grad`; otherwise a list of names or of parameter tensors.
    """
    named = [(n, p) for n, p in model.named_parameters()]
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    else:
        params = list(params)
        if all(isinstance(p, str) for p in params):
            known = dict(named)
            unknown = [p for p in params if p not in known]
            if unknown:
                raise ValueError(f"unknown parameter names {unknown}; the model has {list(known)}")
            wanted = set(params)
        elif all(isinstance(p, Tensor) for p in params):
            ids = {id(p) for p in params}
            wanted = {n for n, p in named if id(p) in ids}
            if len(wanted) != len(ids):
                raise ValueError("some tensors in `params` are not parameters of the model")
        else:
            raise TypeError("`params` must be a list of parameter names or a list of parameter tensors")
        chosen = [(n, p) for n, p in named if n in wanted]
    if not chosen:
        raise ValueError("no parameters selected: the model has no parameter with requires_grad=True")
    return [n for n, _ in chosen], [p for _, p in chosen]


def flatten_parameters(tensors: Iterable[Tensor]) -> Tensor:
    """Concatenate tensors into one detached 1-D vector."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def iterate_batches(data) -> Iterator[Batch]:
    """Yield `(inputs, targets)` batches from a pair of tensors or from an iterable of such pairs."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        yield _check_batch(data)
        return
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise TypeError(
            "data must be an (inputs, targets) pair of tensors or an iterable of such pairs (e.g. a DataLoader), "
            f"got {type(data).__name__}"
        )
    for batch in data:
        yield _check_batch(batch)


def _check_batch(batch) -> Batch:
    if not (
        isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)
    ):
        raise TypeError(
            f"each batch must be an (inputs, targets) pair of tensors, got {type(batch).__name__}"
        )
    inputs, targets = batch
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets disagree on the batch size: {inputs.shape[0]} vs {targets.shape[0]}"
        )
    return inputs, targets


def materialize(data) -> list[Batch] | object:
    """Keep re-iterable data as it is; turn a one-shot iterator into a list so it can be read many times."""
    if isinstance(data, Iterator):
        return list(data)
    return data


def move_batch(inputs: Tensor, targets: Tensor, like: Tensor) -> Batch:
    """A batch on the device of `like`, its floating tensors cast to `like`'s dtype (class indices keep theirs)."""
    inputs = inputs.to(device=like.device, dtype=like.dtype if inputs.is_floating_point() else None)
    targets = targets.to(device=like.device, dtype=like.dtype if targets.is_floating_point() else None)
    return inputs, targets


def has_convolution(model: nn.Module) -> bool:
    """Whether the model contains a convolution (vmap over it loses to a plain loop on CPUs)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def batch_loss(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    like: Tensor,
    check_finite: bool = True,
) -> Tensor:
    """Mean loss of one batch, with inputs moved to the device (and floating dtype) of `like`."""
    inputs, targets = move_batch(inputs, targets, like)
    # The math attention kernel is twice differentiable; the fused CPU/GPU kernels are not.
    with sdpa_kernel(SDPBackend.MATH):
        loss = loss_fn(model(inputs), targets)
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar (mean over the batch), got shape {shape}")
    if check_finite and not torch.isfinite(loss):
        raise ValueError(f"the loss is not finite ({loss.item()}); curvature is undefined there")
    return loss.reshape(())


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode for the duration and restore each one's previous mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


# ----------------------------------------------------------------------------------------------------------------
# The Hessian


class HessianOperator(LinearOperator):
    r"""Hessian of the mean loss over a whole data set, as an operator on the flattened parameters.

    .. math::  H = \nabla^2_\theta \frac{1}{N} \sum_{b} n_b \, \bar L_b(\theta),
               \qquad N = \sum_b n_b,

    where :math:`\bar L_b` is `loss_fn` on batch `b` (a mean over its :math:`n_b` samples). Batches of unequal
    size are weighted by size, so the operator equals the full-batch Hessian exactly.

    Products use reverse-over-reverse differentiation. With `cache_graph=True` (default) the gradient and its
    graph are computed once per batch, in eval mode, and every later product is a single backward pass through
    that graph (as in PyHessian); the memory of the forward graphs of all batches is kept. A block of vectors is
    multiplied in one batched backward pass (`is_grads_batched`), which amortises the per-pass overhead.

    The operator is a snapshot of the model at construction time when `cache_graph=True`: if parameters change
    in place afterwards, products raise. It never writes parameters, buffers or `.grad`, and the model's
    train/eval mode is restored after each use.

    Args:
        model: the network; its parameters set the dtype and device of the products.
        loss_fn: `loss_fn(outputs, targets)` returning the mean loss over a batch (a scalar).
        data: an `(inputs, targets)` pair of tensors or an iterable of such pairs (e.g. a `DataLoader`).
        params: parameter names or tensors to restrict the Hessian to (default: all with `requires_grad`).
        cache_graph: keep the gradient graphs between products (faster, uses memory for all batches).
        batched: multiply a block of vectors in one vmapped backward pass (default: yes, unless the model has
            convolutions, where a loop over the vectors is faster on CPUs; measured in `nox -s bench`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        params: Sequence[str] | Sequence[Tensor] | None = None,
        cache_graph: bool = True,
        batched: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets)")
        self.param_names, self.params = select_parameters(model, params)
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise ValueError("all selected parameters must share one dtype and device")
        super().__init__(sum(p.numel() for p in self.params), first.dtype, first.device)
        self.model = model
        self.loss_fn = loss_fn
        self.data = materialize(data)
        self.cache_graph = cache_graph
        self._graphs: list[tuple[int, tuple[Tensor, ...]]] | None = None
        if batched is None:  # vmap over convolution double-backward is slower than a loop on CPUs
            batched = not has_convolution(model)
        self._batch_block = bool(batched)
        self._versions = [p._version for p in self.params]
        if cache_graph:
            self._graphs = list(self._gradient_graphs())
        else:
            self._check_data_nonempty()

    @property
    def num_samples(self) -> int:
        return sum(n for n, _ in self._graphs) if self._graphs is not None else self._count_samples()

    def parameters_vector(self) -> Tensor:
        """The current parameter values θ, flattened in operator order."""
        return flatten_parameters(self.params)

    def _check_data_nonempty(self) -> None:
        if self._count_samples() == 0:
            raise ValueError("data is empty: no samples to define the loss on")

    def _count_samples(self) -> int:
        return sum(int(t.shape[0]) for t, _ in iterate_batches(self.data))

    def _gradient_graphs(self) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
        """For each batch: its size n_b and the gradient of n_b · mean loss with its graph kept."""
        count = 0
        with eval_mode(self.model):
            for inputs, targets in iterate_batches(self.data):
                n = int(inputs.shape[0])
                if n == 0:
                    continue
                count += n
                with torch.enable_grad():
                    loss = batch_loss(self.model, self.loss_fn, inputs, targets, self.params[0])
                    grads = torch.autograd.grad(loss * n, self.params, create_graph=True, allow_unused=True)
                grads = tuple(
                    g if g is not None else torch.zeros_like(p)
                    for g, p in zip(grads, self.params, strict=True)
                )
                yield n, grads
        if count == 0:
            raise ValueError("data is empty: no samples to define the loss on")

    def _matmat(self, V: Tensor) -> Tensor:
        total, count = self._summed_matmat(V)
        return total.div_(count)

    def _summed_matmat(self, V: Tensor) -> tuple[Tensor, int]:
        """(Σ_b n_b H_b V, Σ_b n_b) over this process's batches: the unnormalised product and its sample count.

        A data-parallel subclass all-reduces both before dividing."""
        if self._graphs is not None and [p._version for p in self.params] != self._versions:
            raise RuntimeError(
                "the model's parameters changed after this HessianOperator was built; build a new one "
                "(or use cache_graph=False)"
            )
        total, count = None, 0
        graphs = self._graphs if self._graphs is not None else self._gradient_graphs()
        for n, grads in graphs:
            hv = self._backward(grads, V)
            total = hv if total is None else total.add_(hv)
            count += n
        if total is None:  # no local batches (an empty shard)
            total = torch.zeros(self.dim, V.shape[1], dtype=self.dtype, device=self.device)
        return total, count

    def _backward(self, grads: tuple[Tensor, ...], V: Tensor) -> Tensor:
        """H_b V for one batch: vector-Jacobian products of the gradient, batched (vmap) or one per column."""
        m = V.shape[1]
        sizes = [p.numel() for p in self.params]
        needs_grad = [g.requires_grad for g in grads]
        if not any(needs_grad):  # the loss is linear in every selected parameter
            return torch.zeros(self.dim, m, dtype=self.dtype, device=self.device)
        outs = [g for g, r in zip(grads, needs_grad, strict=True) if r]

        def pieces(block: Tensor) -> list[Tensor]:  # block: (m, D) -> per-parameter (m, *shape) chunks
            chunks = torch.split(block, sizes, dim=1)
            return [
                c.reshape(block.shape[0], *p.shape)
                for c, p, r in zip(chunks, self.params, needs_grad, strict=True)
                if r
            ]

        def flatten(hv, rows: int) -> Tensor:  # per-parameter results -> (rows, D)
            return torch.cat(
                [
                    torch.zeros(rows, p.numel(), dtype=self.dtype, device=self.device)
                    if h is None
                    else h.reshape(rows, -1)
                    for h, p in zip(hv, self.params, strict=True)
                ],
                dim=1,
            )

        try:
            if m > 1 and self._batch_block:
                try:
                    with (
                        warnings.catch_warnings()
                    ):  # ops without a batching rule loop inside vmap: still exact
                        warnings.filterwarnings("ignore", message="There is a performance drop")
                        hv = torch.autograd.grad(
                            outs,
                            self.params,
                            grad_outputs=pieces(V.T),
                            retain_graph=True,
                            is_grads_batched=True,
                            allow_unused=True,
                        )
                    return flatten(hv, m).T
                except RuntimeError as err:  # an op without a vmap rule: fall back to one pass per vector
                    if "modified by an inplace operation" in str(err):
                        raise
                    self._batch_block = False
            columns = []
            for j in range(m):
                vec = V[:, j].reshape(1, -1)
                hv = torch.autograd.grad(
                    outs,
                    self.params,
                    grad_outputs=[c[0] for c in pieces(vec)],
                    retain_graph=True,
                    allow_unused=True,
                )
                columns.append(flatten(hv, 1)[0])
            return torch.stack(columns, dim=1)
        except RuntimeError as err:
            if "modified by an inplace operation" in str(err):
                raise RuntimeError(
                    "the model's parameters or buffers changed after this HessianOperator was built; build a "
                    "new one (or use cache_graph=False)"
                ) from err
            raise


def dense_hessian(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    params: Sequence[str] | Sequence[Tensor] | None = None,
) -> Tensor:
    """The exact D x D Hessian of the mean loss over `data` (same conventions as `HessianOperator`).

    Computed with `torch.autograd.functional.hessian` of a functional call, batch by batch, weighted by batch
    size. Memory is D² entries: for small models and tests.
    """
    names, tensors = select_parameters(model, params)
    shapes = [t.shape for t in tensors]
    sizes = [t.numel() for t in tensors]
    theta = flatten_parameters(tensors)
    fixed = {n: p for n, p in model.named_parameters() if n not in set(names)}
    buffers = dict(model.named_buffers())
    total = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    count = 0
    data = materialize(data)
    with eval_mode(model):
        for inputs, targets in iterate_batches(data):
            n = int(inputs.shape[0])
            if n == 0:
                continue

            def loss_of(flat: Tensor, inputs=inputs, targets=targets) -> Tensor:
                chunks = torch.split(flat, sizes)
                state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
                module = _FunctionalModel(model, {**fixed, **state, **buffers})
                return batch_loss(module, loss_fn, inputs, targets, flat, check_finite=False)

            # torch.autograd.functional.hessian, not torch.func: in torch 2.14 the vmapped second derivative
            # of layer_norm is wrong (tests/test_models.py documents it), autograd's double backward is not.
            total += n * torch.autograd.functional.hessian(loss_of, theta)
            count += n
    if count == 0:
        raise ValueError("data is empty: no samples to define the loss on")
    return total / count


class _FunctionalModel(nn.Module):
    """Calls `model` with substituted parameters and buffers (torch.func.functional_call), nothing stored."""

    def __init__(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_state", state)

    def forward(self, x: Tensor) -> Tensor:
        return torch.func.functional_call(self._model, self._state, (x,))


def random_unit_vectors(
    dim: int, count: int, like: Tensor | LinearOperator, generator: torch.Generator
) -> Tensor:
    """`count` independent Gaussian vectors of unit norm in R^dim (columns), drawn on the CPU for determinism."""
    dtype, device = like.dtype, like.device
    V = torch.randn(dim, count, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    return V / V.norm(dim=0, keepdim=True).clamp_min(math.ulp(1.0))


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A CPU `torch.Generator` from a seed (or the generator itself); `None` means seed 0, never global state."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):  # numpy integers are seeds too
        raise TypeError(f"seed must be an integer or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(int(seed))
