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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .progress import progress_bar

__all__ = [
    "CurvatureOperator",
    "DenseOperator",
    "HessianOperator",
    "LinearOperator",
    "ScaledOperator",
    "as_operator",
    "dense_hessian",
    "flatten_parameters",
    "select_parameters",
]

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
        # amax/amin propagate NaN and need no block-sized temporary (isfinite(x) would allocate ~2x the block)
        if x.numel() and not (torch.isfinite(x.amax()) and torch.isfinite(x.amin())):
            raise ValueError("the vector multiplied by the operator contains NaN or inf")
        block = x.unsqueeze(1) if x.ndim == 1 else x
        if block.shape[1] == 0:
            return block.clone()
        if self.dtype != self.work_dtype and block.is_floating_point():
            # A half-precision operator computes in its own dtype. Each column is scaled to a largest entry of 1
            # before the cast (a unit vector of D ~ 1e7 has entries ~3e-4, near float16's smallest normal
            # 6e-5: without it they would lose bits or vanish) and the product scaled back in float32 (one
            # D x m temporary in `work_dtype`). Solvers keep their vectors in float32 or float64 (`work_dtype`)
            # and get the product back in that precision.
            scale = block.abs().amax(dim=0).to(self.work_dtype)
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            scaled = (block.to(self.work_dtype) / scale).to(device=self.device, dtype=self.dtype)
            out = self._matmat(scaled).to(self.work_dtype) * scale.to(self.device)
            out = out.to(torch.promote_types(self.work_dtype, x.dtype))
        else:
            out = self._matmat(block.to(device=self.device, dtype=self.dtype))
        self.num_matvecs += block.shape[1]
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


TARGET_KEYS = ("labels", "label", "targets", "target", "y")
DATASET_BATCH_SIZE = 256


def default_unpack(batch) -> tuple[object, Tensor]:
    """Split one batch into `(inputs, targets)` by the documented default rule.

    - an `(inputs, targets)` pair (tuple or list of two): `inputs` may itself be a tensor, a tuple of tensors
      (positional arguments of a multi-input model: `((x, mask), y)`) or a dict (keyword arguments);
    - a dict (as HuggingFace loaders yield): the one key among ``TARGET_KEYS`` (``labels``, ``label``,
      ``targets``, ``target``, ``y``) holds the targets, every other entry is a keyword argument of the model;
    - a tuple of three or more is ambiguous (``(x, y, extra)`` or ``(x1, x2, y)``): pass ``unpack=`` — e.g.
      `unpack_first_two` or `unpack_inputs_then_target`.
    """
    if isinstance(batch, Mapping):
        keys = [k for k in TARGET_KEYS if k in batch]
        if len(keys) != 1:
            raise TypeError(
                f"a dict batch needs exactly one target entry among {TARGET_KEYS}, got keys {list(batch)}; pass "
                "unpack=lambda batch: (inputs, targets) to say which is which"
            )
        return {k: v for k, v in batch.items() if k != keys[0]}, batch[keys[0]]
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        raise TypeError(
            f"a batch of {len(batch)} elements is ambiguous: pass unpack=landscape.unpack_first_two for "
            "(inputs, targets, extra...) or unpack=landscape.unpack_inputs_then_target for (inputs..., targets)"
        )
    raise TypeError(
        f"each batch must be an (inputs, targets) pair or a dict with a target entry, got {type(batch).__name__}; "
        "pass unpack=lambda batch: (inputs, targets)"
    )


def unpack_first_two(batch) -> tuple[object, Tensor]:
    """`(inputs, targets, extra...)` → `(inputs, targets)`: elements after the second are ignored."""
    return batch[0], batch[1]


def unpack_inputs_then_target(batch) -> tuple[object, Tensor]:
    """`(x1, ..., xk, targets)` → `((x1, ..., xk), targets)`: all but the last are the model's positional inputs."""
    *inputs, targets = batch
    return (inputs[0] if len(inputs) == 1 else tuple(inputs)), targets


def tensor_leaves(tree) -> list[Tensor]:
    if isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, Mapping):
        return [t for v in tree.values() for t in tensor_leaves(v)]
    if isinstance(tree, (tuple, list)):
        return [t for v in tree for t in tensor_leaves(v)]
    return []


def map_tensors(tree, fn):
    """`tree` with `fn` applied to every tensor in it (nested tuples, lists and dicts keep their shape)."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        return {k: map_tensors(v, fn) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_tensors(v, fn) for v in tree)
    return tree


def batch_size_of(inputs, targets) -> int:
    """Samples in a batch: the leading dimension of the targets (of the first input tensor if targets are not a
    tensor)."""
    leaves = [targets] if isinstance(targets, Tensor) else tensor_leaves(inputs)
    if not leaves or leaves[0].ndim == 0:
        raise ValueError(
            "cannot tell the batch size: expected targets (or inputs) with a leading batch dimension; a Dataset of "
            "single samples must be batched (pass a DataLoader)"
        )
    return int(leaves[0].shape[0])


def iterate_batches(data, unpack: Callable | None = None) -> Iterator[tuple[object, Tensor]]:
    """Yield `(inputs, targets)` batches from `data`.

    `data` is an `(inputs, targets)` pair of tensors, an iterable of batches (a `DataLoader`, a list, a one-shot
    iterator) or a `torch.utils.data.Dataset` of single samples (map-style or `IterableDataset`), read in order in
    batches of `DATASET_BATCH_SIZE` with the default collation. Each batch is split by `unpack(batch) ->
    (inputs, targets)` (default `default_unpack`); `inputs` is a tensor, a tuple (positional arguments) or a dict
    (keyword arguments) of the model.
    """
    unpack = _checked_unpack(default_unpack if unpack is None else unpack)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        yield _check_batch(unpack(data))
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.DataLoader):
        data = torch.utils.data.DataLoader(data, batch_size=DATASET_BATCH_SIZE, shuffle=False)
    if isinstance(data, (Tensor, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(
            "data must be an (inputs, targets) pair of tensors, an iterable of batches (e.g. a DataLoader) or a "
            f"torch Dataset, got {type(data).__name__}"
        )
    for batch in data:
        yield _check_batch(unpack(batch))


class UnpackedBatches:
    """`data` read through `unpack`: iterating yields the checked `(inputs, targets)` pair of each batch
    (`iterate_batches(data, unpack)`), again at every iteration when `data` can be read again. Built by
    `unpacked`; it lets every probe that takes `data` accept any batch format."""

    def __init__(self, data, unpack: Callable):
        self.data, self.unpack = data, _checked_unpack(unpack)  # checked now, not at the first batch

    def __iter__(self) -> Iterator[tuple[object, Tensor]]:
        return iterate_batches(self.data, self.unpack)


def unpacked(data, unpack: Callable | None):
    """`data` unchanged when `unpack` is None, else `UnpackedBatches(data, unpack)`."""
    return data if unpack is None else UnpackedBatches(data, unpack)


def _checked_unpack(unpack) -> Callable:
    if not callable(unpack):
        raise TypeError(f"unpack must be callable as unpack(batch) -> (inputs, targets), got {unpack!r}")
    return unpack


def _check_batch(pair) -> tuple[object, Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"unpack must return an (inputs, targets) pair, got {type(pair).__name__}")
    inputs, targets = pair
    if isinstance(inputs, Tensor) and isinstance(targets, Tensor):
        if inputs.ndim == 0 or targets.ndim == 0:
            raise ValueError(
                "a batch holds 0-d tensors: these look like single samples; batch them (pass a DataLoader)"
            )
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"inputs and targets disagree on the batch size: {inputs.shape[0]} vs {targets.shape[0]}"
            )
    elif not tensor_leaves(inputs):
        raise TypeError(f"the model inputs of a batch contain no tensor (got {type(inputs).__name__})")
    return inputs, targets


def materialize(data) -> list | object:
    """Keep re-iterable data as it is; turn a one-shot iterator into a list so it can be read many times."""
    if isinstance(data, Iterator):
        return list(data)
    return data


def move_batch(inputs, targets, like: Tensor):
    """A batch on the device of `like`, its floating tensors cast to `like`'s dtype (class indices keep theirs);
    `inputs` may be a tensor, a tuple or a dict of tensors."""

    def move(t: Tensor) -> Tensor:
        return t.to(device=like.device, dtype=like.dtype if t.is_floating_point() else None)

    return map_tensors(inputs, move), map_tensors(targets, move)


def call_model(model: nn.Module, inputs) -> Tensor:
    """`model(inputs)`, `model(*inputs)` for a tuple or `model(**inputs)` for a dict, reduced to one tensor by
    `model_output`."""
    if isinstance(inputs, Mapping):
        return model_output(model(**inputs))
    if isinstance(inputs, (tuple, list)):
        return model_output(model(*inputs))
    return model_output(model(inputs))


def _attribute_names(model: nn.Module) -> list[tuple[str, str]]:
    """(name to substitute, canonical name) for every distinct (module, attribute) slot holding a parameter or
    buffer. A module used twice (``Sequential(shared, act, shared)``) is one slot under two names: it is listed
    once. A tensor shared by two modules (tied weights) is two slots: both are listed, with the canonical name
    (the first, as ``named_parameters()`` gives it) to take the value from."""
    canonical = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        canonical.setdefault(id(tensor), name)
    slots, out = set(), []
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        owner_path, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_path) if owner_path else model
        if (id(owner), attr) not in slots:
            slots.add((id(owner), attr))
            out.append((name, canonical[id(tensor)]))
    return out


def functional_call_model(model: nn.Module, state: Mapping[str, Tensor], inputs) -> Tensor:
    """`call_model` with the parameters and buffers in `state` (by their `named_parameters()` /
    `named_buffers()` names) substituted through `torch.func.functional_call`: the same input rule (tensor,
    tuple of arguments, dict of keyword arguments) and output rule.

    Each (module, attribute) slot is swapped exactly once (`_attribute_names`), with ``tie_weights=False``:
    torch's own tying swaps a module used twice twice, and its restore then leaves the substituted (e.g. vmap-
    batched) tensor in the caller's model; tied weights of two modules are still both substituted."""
    full = dict(state)
    for name, source in _attribute_names(model):
        if source in state:
            full[name] = state[source]
    if isinstance(inputs, Mapping):
        args, kwargs = (), dict(inputs)
    elif isinstance(inputs, (tuple, list)):
        args, kwargs = tuple(inputs), None
    else:
        args, kwargs = (inputs,), None
    return model_output(torch.func.functional_call(model, full, args, kwargs, tie_weights=False))


def batch_size(inputs) -> int:
    """Samples in a batch's inputs: the first dimension of their first tensor (a tensor, or a tuple, list or dict
    of them); 0 when they hold no tensor."""
    for t in tensor_leaves(inputs):
        return int(t.shape[0]) if t.ndim else 1
    return 0


def model_output(out) -> Tensor:
    """The tensor the loss is computed on: the output itself if it is a tensor; its ``.logits`` (HuggingFace
    `ModelOutput` and similar objects) or ``["logits"]`` entry; the first element of a tuple or list. To use
    another part of the output, wrap the model (or `loss_fn`) so that this rule picks it."""
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, Mapping):
        logits = out.get("logits")
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(
        f"cannot read the model output of type {type(out).__name__}: expected a tensor, an object or dict with "
        "'logits', or a tuple whose first element is a tensor; wrap the model so that it returns one tensor"
    )


def has_convolution(model: nn.Module) -> bool:
    """Whether the model contains a convolution (vmap over it loses to a plain loop on CPUs)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def batch_loss(
    model: nn.Module,
    loss_fn: LossFn,
    inputs,
    targets,
    like: Tensor,
    check_finite: bool = True,
) -> Tensor:
    """Loss of one batch (as `loss_fn` reduces it), with the batch moved to the device (and floating dtype) of
    `like`."""
    inputs, targets = move_batch(inputs, targets, like)
    # The math attention kernel is twice differentiable; the fused CPU/GPU kernels are not.
    with sdpa_kernel(SDPBackend.MATH):
        loss = loss_fn(call_model(model, inputs), targets)
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(
            f"loss_fn must return a scalar (the mean or, with reduction='sum', the sum over the batch), got shape "
            f"{shape}; reduction='none' losses must be reduced"
        )
    if check_finite and not torch.isfinite(loss):
        raise ValueError(f"the loss is not finite ({loss.item()}); curvature is undefined there")
    return loss.reshape(())


REDUCTIONS = ("mean", "sum")


def check_reduction(model: nn.Module, loss_fn: LossFn, inputs, targets, like: Tensor, reduction: str) -> None:
    """Check that `loss_fn` reduces over the batch as `reduction` says, from one batch and that batch doubled.

    The loss of a batch concatenated with itself equals the loss of the batch for a mean and is twice it for a
    sum (exactly, up to rounding; BatchNorm statistics of a doubled batch are those of the batch). One extra
    forward pass of 2·n_b samples. A loss of exactly 0 is not checked.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction={reduction!r}; expected one of {REDUCTIONS}")
    n = batch_size_of(inputs, targets)

    def double(t: Tensor) -> Tensor:
        return torch.cat([t, t]) if t.ndim > 0 and t.shape[0] == n else t

    with torch.no_grad():
        single = float(batch_loss(model, loss_fn, inputs, targets, like))
        doubled = float(batch_loss(model, loss_fn, map_tensors(inputs, double), double(targets), like))
    if single == 0.0:
        return
    ratio = doubled / single
    tol = max(1e-3, 20 * torch.finfo(like.dtype).eps)
    found = "mean" if abs(ratio - 1) <= tol else "sum" if abs(ratio - 2) <= 2 * tol else None
    if found == reduction:
        return
    if found is None:
        raise ValueError(
            f"loss_fn is neither a mean nor a sum over the batch: the loss of a batch repeated twice is {ratio:.4g} "
            f"times the loss of the batch (1 for reduction='mean', 2 for reduction='sum'); pass "
            "check_reduction=False if this is intended"
        )
    hint = "reduction='sum'" if found == "sum" else "reduction='mean' (the default)"
    raise ValueError(
        f"loss_fn looks like a {found} over the batch (a batch repeated twice gives {ratio:.4g} times its loss), "
        f"but reduction={reduction!r} was given: every curvature would be off by the batch size. Use a loss with "
        f"reduction='mean' or pass {hint}"
    )


MODES = ("eval", "train")
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
BATCH_NORMS = nn.modules.batchnorm._BatchNorm


def _random_modules(model: nn.Module) -> list[str]:
    """Names of submodules that are random in train mode (dropout with p > 0, attention with dropout)."""
    return [
        name or type(m).__name__
        for name, m in model.named_modules()
        if (isinstance(m, _DROPOUT) and m.p > 0)
        or (isinstance(m, nn.MultiheadAttention) and m.dropout > 0)
        or (type(m).__name__ == "StochasticDepth" and getattr(m, "p", 0) > 0)  # torchvision.ops
    ]


def resolve_mode(model: nn.Module, mode: str | None) -> str:
    """The curvature mode: `mode` itself, or for `None` "eval" with a warning when the model arrived in train
    mode with BatchNorm or dropout (whose eval-mode Hessian differs from the train-mode one)."""
    if mode is None:
        stateful = [
            name or type(m).__name__
            for name, m in model.named_modules()
            if m.training and isinstance(m, (*_DROPOUT, BATCH_NORMS, nn.MultiheadAttention))
        ]
        if stateful:
            warnings.warn(
                f"the model is in train mode with {', '.join(stateful[:3])}{' ...' if len(stateful) > 3 else ''}: "
                "computing the eval-mode curvature (BatchNorm running statistics, no dropout). Pass mode='eval' "
                "to silence this, or mode='train' for BatchNorm batch statistics",
                UserWarning,
                stacklevel=3,
            )
        return "eval"
    if mode not in MODES:
        raise ValueError(f"unknown mode={mode!r}; expected one of {MODES} (or None: eval with a warning)")
    return mode


@contextlib.contextmanager
def curvature_mode(model: nn.Module, mode: str = "eval"):
    """Put the model in the mode the curvature is defined in, and restore every submodule's mode and buffers.

    - "eval": every submodule in eval mode (BatchNorm uses its running statistics, dropout is off).
    - "train": every submodule in train mode; BatchNorm normalises with the statistics of each batch and its
      running statistics are never updated (they are detached for the duration); dropout with p > 0 is an error
      (its Hessian is random): set p = 0 or use "eval".
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode={mode!r}; expected one of {MODES}")
    modes = [(m, m.training) for m in model.modules()]
    detached: list[tuple[nn.Module, str, Tensor]] = []
    try:
        if mode == "eval":
            model.eval()
        else:
            random = _random_modules(model)
            if random:
                raise ValueError(
                    f"mode='train' with dropout ({', '.join(random[:3])}): the train-mode loss is random. Set "
                    "the dropout probability to 0 or use mode='eval'"
                )
            synced = [name for name, m in model.named_modules() if isinstance(m, nn.SyncBatchNorm)]
            if synced:
                raise ValueError(
                    f"mode='train' with SyncBatchNorm ({', '.join(synced[:3])}): its statistics are pooled over "
                    "ranks and it has no second derivative; convert it to BatchNorm for the probe or use "
                    "mode='eval'"
                )
            model.train()
            for m in model.modules():
                if isinstance(m, BATCH_NORMS):
                    for name in ("running_mean", "running_var", "num_batches_tracked"):
                        if m._buffers.get(name) is not None:
                            detached.append((m, name, m._buffers[name]))
                            m._buffers[name] = None
        yield
    finally:
        for m, name, buffer in detached:
            m._buffers[name] = buffer
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode for the duration and restore each one's previous mode after."""
    with curvature_mode(model, "eval"):
        yield


# ----------------------------------------------------------------------------------------------------------------
# Curvature operators: the shared data handling, and the Hessian


class CurvatureOperator(LinearOperator):
    r"""The data handling shared by the curvature operators: a matrix :math:`C = \frac1N \sum_b C_b` over batches.

    Arguments and conventions are those of `HessianOperator` (data formats, `unpack`, `reduction`,
    `check_reduction`, `mode`, `params`, `progress`; the parameters set dtype and device; the model, its buffers,
    `.grad` and modes are left as they were). A subclass implements two methods:

    - `_prepare(inputs, targets, n)`: what products of batch b reuse (graphs, per-sample gradients), from a batch
      already on the parameters' device, under gradient mode and the curvature mode;
    - `_product(state, V)`: :math:`C_b V` for a block `V` of shape (D, m), summed over the batch's samples.

    With `cache_graph=True` the states of all batches are built once, at construction; with `False` they are
    rebuilt batch by batch at every product (memory of one batch); `None` (the default) is the subclass's rule,
    `_resolve_cache` (True unless overridden). Data without samples is an error, raised by `_empty_data` (a
    data-parallel subclass, where one rank's shard may be empty, overrides it).
    """

    # The progress bar's label while the batch states are built (None: "<class name> batches").
    _STATES_DESC: str | None = None

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        params: Sequence[str] | Sequence[Tensor] | None = None,
        cache_graph: bool | None = None,
        batched: bool | None = None,
        *,
        unpack: Callable | None = None,
        reduction: str = "mean",
        check_reduction: bool = True,
        mode: str | None = None,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable as loss_fn(outputs, targets)")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction={reduction!r}; expected one of {REDUCTIONS}")
        self.param_names, self.params = select_parameters(model, params)
        first = self.params[0]
        if any(p.dtype != first.dtype or p.device != first.device for p in self.params):
            raise ValueError("all selected parameters must share one dtype and device")
        super().__init__(sum(p.numel() for p in self.params), first.dtype, first.device)
        self.model = model
        self.loss_fn = loss_fn
        self.data = materialize(data)
        self.unpack = unpack
        self.reduction = reduction
        self.mode = resolve_mode(model, mode)
        if batched is None:  # vmap over convolution backward passes is slower than a loop on CPUs
            batched = not has_convolution(model)
        self._batch_block = bool(batched)
        self._versions = [p._version for p in self.params]
        if check_reduction:
            self._check_reduction()
        self._states: list[tuple[int, object]] | None = None
        self.cache_graph = self._resolve_cache(cache_graph)
        if self.cache_graph:
            self._states = list(self._batch_states(progress))
        if self._count_samples() == 0:
            self._empty_data()

    # -- to implement ------------------------------------------------------------------------------------------

    def _prepare(self, inputs, targets, n: int) -> object:
        raise NotImplementedError

    def _product(self, state, V: Tensor) -> Tensor:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return self._count_samples()

    def parameters_vector(self) -> Tensor:
        """The current parameter values θ, flattened in operator order."""
        return flatten_parameters(self.params)

    def _resolve_cache(self, cache_graph: bool | None) -> bool:
        return True if cache_graph is None else bool(cache_graph)

    def _empty_data(self) -> None:
        """Called at construction when the data hold no samples."""
        raise ValueError("data is empty: no samples to define the loss on")

    def _weight(self, n: int) -> int:
        """The factor turning `loss_fn` on a batch into the sum of its per-sample losses."""
        return n if self.reduction == "mean" else 1

    # Subclasses whose `_prepare` differentiates `loss * _graph_weight(n)` (Hessian, GGN) set this.
    _WEIGHT_IN_GRAPH = False

    def _graph_weight(self, n: int) -> int:
        """The part of `_weight` applied inside the autograd graph: all of it, except in half precision, where
        n_b · loss could overflow float16 and the weight is applied to the product in `work_dtype` instead."""
        return self._weight(n) if self.dtype == self.work_dtype else 1

    def _batches(self) -> Iterator[tuple[object, Tensor]]:
        return iterate_batches(self.data, self.unpack)

    def _count_samples(self) -> int:
        """This process's samples: summed from the cached states, else counted in a pass over the batches."""
        if self._states is not None:
            return sum(n for n, _ in self._states)
        return sum(batch_size_of(*b) for b in self._batches())

    def _first_batch(self):
        return next((b for b in self._batches() if batch_size_of(*b) > 0), None)

    def _check_reduction(self) -> None:
        first = self._first_batch()
        if first is not None:
            with curvature_mode(self.model, self.mode):
                check_reduction(self.model, self.loss_fn, *first, self.params[0], self.reduction)

    def _batch_states(self, progress: bool | None = False) -> Iterator[tuple[int, object]]:
        """For each batch with samples: its size n_b and what `_prepare` makes of it."""
        desc = self._STATES_DESC or f"{type(self).__name__} batches"
        with curvature_mode(self.model, self.mode), progress_bar(progress, desc=desc, unit="batch") as bar:
            for inputs, targets in self._batches():
                n = batch_size_of(inputs, targets)
                if n == 0:
                    continue
                inputs, targets = move_batch(inputs, targets, self.params[0])
                # The math attention kernel is twice differentiable; the fused CPU/GPU kernels are not.
                with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
                    state = self._prepare(inputs, targets, n)
                bar.update(1)
                yield n, state

    def _check_parameters(self) -> None:
        """Products use the tensors captured at construction: refuse if they were changed or replaced."""
        current = dict(self.model.named_parameters())
        for name, param in zip(self.param_names, self.params, strict=True):
            if current.get(name) is not param:
                raise RuntimeError(
                    f"the model's parameter {name!r} was replaced after this {type(self).__name__} was built; "
                    "build a new one"
                )
        if self._states is not None and [p._version for p in self.params] != self._versions:
            raise RuntimeError(
                f"the model's parameters changed after this {type(self).__name__} was built; build a new one "
                "(or use cache_graph=False)"
            )

    def _flatten(self, grads: list[Tensor | None], rows: int, out: Tensor | None = None) -> Tensor:
        """Per-parameter (rows, *shape) results (None: zero) as a (rows, D) block (written into `out` if given)."""
        pieces = [
            torch.zeros(rows, p.numel(), dtype=self.dtype, device=self.device)
            if g is None
            else g.reshape(rows, -1)
            for g, p in zip(grads, self.params, strict=True)
        ]
        return torch.cat(pieces, dim=1) if out is None else torch.cat(pieces, dim=1, out=out)

    def _matmat(self, V: Tensor) -> Tensor:
        total, count = self._summed_matmat(V)
        return total.div_(count)

    def _summed_matmat(self, V: Tensor) -> tuple[Tensor, int]:
        """(Σ_b C_b V, Σ_b n_b) over this process's batches: the unnormalised product and its sample count.

        A data-parallel subclass (`landscape.distributed.DataParallelMixin`) sums the first over the ranks and
        divides by the global sample count."""
        self._check_parameters()
        total, count = None, 0
        states = self._states if self._states is not None else self._batch_states()
        try:
            for n, state in states:
                cv = self._product(state, V).to(self.work_dtype)  # sums over batches never in half precision
                left_out = self._weight(n) // self._graph_weight(n) if self._WEIGHT_IN_GRAPH else 1
                if left_out != 1:  # the part of the weight a half-precision graph left out
                    cv.mul_(left_out)
                total = cv if total is None else total.add_(cv)
                count += n
        except RuntimeError as err:
            if "modified by an inplace operation" in str(err):
                raise RuntimeError(
                    f"the model's parameters or buffers changed after this {type(self).__name__} was built; "
                    "build a new one (or use cache_graph=False)"
                ) from err
            raise
        finally:
            if not isinstance(states, list):  # a paused generator would keep the model in the curvature mode
                states.close()
        if total is None:  # no local batches (an empty shard)
            total = torch.zeros(self.dim, V.shape[1], dtype=self.work_dtype, device=self.device)
        return total, count


class HessianOperator(CurvatureOperator):
    r"""Hessian of the mean loss over a whole data set, as an operator on the flattened parameters.

    .. math::  H = \nabla^2_\theta \frac{1}{N} \sum_{b} n_b \, \bar L_b(\theta),
               \qquad N = \sum_b n_b,

    where :math:`\bar L_b` is `loss_fn` on batch `b` (a mean over its :math:`n_b` samples). Batches of unequal
    size are weighted by size, so the operator equals the full-batch Hessian exactly. With `reduction="sum"`,
    `loss_fn` returns the sum :math:`n_b \bar L_b` itself and is not reweighted.

    Products use reverse-over-reverse differentiation. With `cache_graph=True` (default) the gradient and its
    graph are computed once per batch and every later product is a single backward pass through that graph (as
    in PyHessian); the memory of the forward graphs of all batches is kept. With `cache_graph=False` each
    product recomputes them batch by batch: memory of one batch's double-backward graph, one forward and
    gradient more per batch and product. A block of vectors is multiplied in one batched backward pass
    (`is_grads_batched`), which amortises the per-pass overhead; the result block (D × m) is the only other
    memory.

    Data: any of the formats of `iterate_batches` — a pair of tensors, a `DataLoader`, a list or iterator of
    batches, a `Dataset` of samples — split by `unpack(batch) -> (inputs, targets)` (default `default_unpack`:
    pairs, and dicts with a ``labels``/``targets``/... entry as HuggingFace loaders yield). `inputs` may be a
    tensor, a tuple (positional arguments) or a dict (keyword arguments); the output is read by `model_output`
    (a tensor, ``.logits``, or the first element of a tuple). The batch size :math:`n_b` is the leading dimension
    of the targets.

    Checks at construction: the loss reduction (a `loss_fn` that sums over the batch when a mean was declared
    would scale every curvature by the batch size: `check_reduction`, one extra forward pass of the first batch
    doubled); a non-finite loss is an error. A parameter changed in place, or replaced by another tensor, after
    construction makes products raise (a change through ``p.data`` bypasses autograd's version counter and is
    not detected: build a new operator after such an update).

    Limitation: batches are weighted by their sample count n_b. A loss normalised by something else — valid
    tokens with ``ignore_index``, class weights, a masked token mean — passes the reduction check (it is still
    a mean) but makes the operator a weighted average of batch Hessians rather than the Hessian of the loss on
    the whole data set; use one batch, or equal normalisers per batch, for such losses.

    Precision: products run in the parameters' dtype (float16/bfloat16 included); solvers keep their vectors
    and reductions in `work_dtype` (at least float32).

    It never writes parameters, buffers or `.grad`, and every submodule's train/eval mode is restored.

    Args:
        model: the network; its parameters set the dtype and device of the products.
        loss_fn: `loss_fn(outputs, targets)` returning the mean loss over a batch (a scalar).
        data: the data set (see above).
        params: parameter names or tensors to restrict the Hessian to (default: all with `requires_grad`).
        cache_graph: keep the gradient graphs between products (faster, uses memory for all batches; the
            default, None, means True).
        batched: multiply a block of vectors in one vmapped backward pass (default: yes, unless the model has
            convolutions, where a loop over the vectors is faster on CPUs; measured in `nox -s bench`).
        unpack: `unpack(batch) -> (inputs, targets)` for batches of other shapes (see `default_unpack`).
        reduction: "mean" (default) or "sum": how `loss_fn` reduces over a batch.
        check_reduction: verify `reduction` on the first batch (default True).
        mode: "eval" (running BatchNorm statistics, no dropout), "train" (BatchNorm with the statistics of each
            batch, running statistics untouched; dropout is an error), or None (default): "eval", with a warning
            when the model arrived in train mode with BatchNorm or dropout.
        progress: a progress bar over batches while the graphs are built (None: the library default,
            `landscape.set_progress`).
    """

    _STATES_DESC = "Hessian graphs"
    _WEIGHT_IN_GRAPH = True

    def _prepare(self, inputs, targets, n: int) -> tuple[Tensor, ...]:
        """The gradient of n_b · mean loss (or of the summed loss) with its graph kept (zeros for parameters the
        loss does not reach)."""
        loss = batch_loss(self.model, self.loss_fn, inputs, targets, self.params[0])
        grads = torch.autograd.grad(
            loss * self._graph_weight(n), self.params, create_graph=True, allow_unused=True
        )
        return tuple(
            g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params, strict=True)
        )

    def _product(self, grads: tuple[Tensor, ...], V: Tensor) -> Tensor:
        return self._backward(grads, V)

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

        if m > 1 and self._batch_block:
            try:
                with warnings.catch_warnings():  # ops without a batching rule loop inside vmap: still exact
                    warnings.filterwarnings("ignore", message="There is a performance drop")
                    hv = torch.autograd.grad(
                        outs,
                        self.params,
                        grad_outputs=pieces(V.T),
                        retain_graph=True,
                        is_grads_batched=True,
                        allow_unused=True,
                    )
                return self._flatten(hv, m).T
            except RuntimeError as err:  # an op without a vmap rule: fall back to one pass per vector
                if "modified by an inplace operation" in str(err):
                    raise
                self._batch_block = False
        rows = torch.empty(m, self.dim, dtype=self.dtype, device=self.device)  # column j of the result: row j
        for j in range(m):
            vec = V[:, j].reshape(1, -1)
            hv = torch.autograd.grad(
                outs,
                self.params,
                grad_outputs=[c[0] for c in pieces(vec)],
                retain_graph=True,
                allow_unused=True,
            )
            self._flatten(hv, 1, out=rows[j : j + 1])
            del hv  # before the next pass: one column's gradients alive at a time
        # One layout for a single column, (D, 1) with unit strides, as a rank with no data returns (BLAS
        # rounding can depend on the strides, and every rank must compute the same bits).
        return rows.view(self.dim, 1) if m == 1 else rows.T


def dense_hessian(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    *,
    unpack: Callable | None = None,
    reduction: str = "mean",
    mode: str | None = None,
) -> Tensor:
    """The exact D x D Hessian of the mean loss over `data` (same conventions and arguments as
    `HessianOperator`; a non-finite loss is the same error).

    Computed with `torch.autograd.functional.hessian` of a functional call, batch by batch, weighted by batch
    size. Memory is D² entries: for small models and tests.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction={reduction!r}; expected one of {REDUCTIONS}")
    names, tensors = select_parameters(model, params)
    shapes = [t.shape for t in tensors]
    sizes = [t.numel() for t in tensors]
    theta = flatten_parameters(tensors)
    fixed = {n: p for n, p in model.named_parameters() if n not in set(names)}
    total = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    count = 0
    data = materialize(data)
    mode = resolve_mode(model, mode)
    with curvature_mode(model, mode):
        buffers = dict(model.named_buffers())  # in train mode without the detached BatchNorm statistics
        for inputs, targets in iterate_batches(data, unpack):
            n = batch_size_of(inputs, targets)
            if n == 0:
                continue

            def loss_of(flat: Tensor, inputs=inputs, targets=targets) -> Tensor:
                chunks = torch.split(flat, sizes)
                state = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
                module = FunctionalModel(model, {**fixed, **state, **buffers})
                return batch_loss(module, loss_fn, inputs, targets, flat)

            # torch.autograd.functional.hessian, not torch.func: in torch 2.14 the vmapped second derivative
            # of layer_norm is wrong (tests/test_models.py documents it), autograd's double backward is not.
            weight = n if reduction == "mean" else 1
            total += weight * torch.autograd.functional.hessian(loss_of, theta)
            count += n
    if count == 0:
        raise ValueError("data is empty: no samples to define the loss on")
    return total / count


class FunctionalModel(nn.Module):
    """Calls `model` with substituted parameters and buffers (torch.func.functional_call), nothing stored."""

    def __init__(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_state", state)

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self._model, self._state, args, kwargs)


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
