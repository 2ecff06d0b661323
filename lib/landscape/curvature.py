r"""Curvature matrices beside the Hessian, on the same data handling: the generalised Gauss–Newton (GGN), the
empirical and the true Fisher; the Hessian diagonal; per-layer (block-diagonal) spectra.

Every operator here is a `LinearOperator` on the flattened parameters, so `top_eigenvalues`, `hessian_trace`,
`spectral_density` and `hessian_diagonal` take them as they take `HessianOperator`. They read data, batches,
model outputs, the loss reduction and the train/eval mode exactly as `HessianOperator` does (all are
subclasses of `operators.CurvatureOperator`, which holds that data handling), and each defines the matrix of
the *mean* over the N samples of a data set:

.. math::  C = \frac1N \sum_b C_b, \qquad C_b \text{ summed over the } n_b \text{ samples of batch } b.

References:
    N. N. Schraudolph (2002), fast curvature matrix-vector products for second-order gradient descent (the GGN);
    J. Martens (2020), new insights and perspectives on the natural gradient method (GGN, true and empirical
    Fisher, and when they agree); F. Kunstner, L. Balles, P. Hennig (2019), limitations of the empirical Fisher
    approximation; C. Bekas, E. Kokiopoulou, Y. Saad (2007), an estimator for the diagonal of a matrix.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .eigen import WHICH, EigenResult, ritz_order, top_eigenvalues
from .operators import (
    BATCH_NORMS,
    CurvatureOperator,
    FunctionalModel,
    HessianOperator,
    LinearOperator,
    LossFn,
    as_operator,
    batch_loss,
    batch_size_of,
    call_model,
    curvature_mode,
    make_generator,
    map_tensors,
    materialize,
    move_batch,
    resolve_mode,
    select_parameters,
)
from .progress import progress_bar
from .trace import probe_vectors

__all__ = [
    "CurvatureOperator",
    "DiagonalEstimate",
    "FisherOperator",
    "GGNOperator",
    "LayerSpectrum",
    "hessian_diagonal",
    "layer_spectra",
    "parameter_groups",
]

# Per-sample gradients of all samples (N x D values) are kept between products by default only below this size.
CACHE_BYTES = 2**30
# Rows of per-sample gradients formed in one batched backward pass when samples are coupled (bounds its memory).
_ROW_CHUNK = 32


def batched_grad(
    outputs: list[Tensor], inputs: list[Tensor], cotangents: list[Tensor], batched: bool = True
) -> tuple[list[Tensor | None], bool]:
    """`torch.autograd.grad` for a block of m cotangents (`cotangents[i]` of shape (m, *outputs[i].shape)), the
    graph retained: one vmapped pass (`is_grads_batched`) when `batched`, or, where an op has no batching rule, one
    pass per column. Returns the gradients, shaped (m, *inputs[j].shape) or None where an input does not reach the
    outputs, and whether batching worked (pass it back in to skip a failing vmap next time)."""
    m = cotangents[0].shape[0]
    if m > 1 and batched:
        try:
            with warnings.catch_warnings():  # ops without a batching rule loop inside vmap: still exact
                warnings.filterwarnings("ignore", message="There is a performance drop")
                grads = torch.autograd.grad(
                    outputs, inputs, cotangents, retain_graph=True, is_grads_batched=True, allow_unused=True
                )
            return list(grads), True
        except RuntimeError as err:
            if "modified by an inplace operation" in str(err):
                raise
    columns = [
        torch.autograd.grad(outputs, inputs, [c[j] for c in cotangents], retain_graph=True, allow_unused=True)
        for j in range(m)
    ]
    grads = [None if cols[0] is None else torch.stack(cols) for cols in zip(*columns, strict=True)]
    return grads, batched and m <= 1


class _JacobianOperator(CurvatureOperator):
    """A `CurvatureOperator` with the autograd products the GGN and the Fisher are built from: batched
    `torch.autograd.grad`, and J V and Jᵀ U for the Jacobian J of the model outputs."""

    def _grad(
        self, outputs: list[Tensor], inputs: list[Tensor], cotangents: list[Tensor]
    ) -> list[Tensor | None]:
        """`batched_grad` that remembers when the model has no batching rule (then loops from there on)."""
        grads, self._batch_block = batched_grad(outputs, inputs, cotangents, self._batch_block)
        return grads

    def _pieces(self, V: Tensor) -> list[Tensor]:
        """A (D, m) block as per-parameter (m, *shape) cotangents."""
        chunks = torch.split(V.T, [p.numel() for p in self.params], dim=1)
        return [c.reshape(V.shape[1], *p.shape) for c, p in zip(chunks, self.params, strict=True)]

    def _linearise(self, inputs) -> _Linearisation:
        """The model's outputs on a batch with the graphs that give J V and Jᵀ U (J = ∂outputs/∂θ).

        J V by the double-vjp trick: g(u) = Jᵀ u is linear in u, so the derivative of ⟨g(u), v⟩ in u is J v.
        Building g with its graph costs one backward pass per batch; each product is then one backward pass
        through it. (Forward mode, `torch.func.jvp`, would recompute the forward pass at every product.)"""
        out = call_model(self.model, inputs)
        dual = torch.zeros_like(out, requires_grad=True)
        pull = [None] * len(self.params)
        if out.requires_grad:
            pull = list(torch.autograd.grad(out, self.params, dual, create_graph=True, allow_unused=True))
        if all(g is None for g in pull):
            raise ValueError(
                f"the model output does not depend on the selected parameters {self.param_names}: every "
                "Jacobian-based curvature is zero"
            )
        return _Linearisation(out, dual, pull)

    def _jvp(self, lin: _Linearisation, V: Tensor) -> Tensor:
        """J V as a (m, *out.shape) block."""
        used = [i for i, g in enumerate(lin.pullback) if g is not None]
        pieces = self._pieces(V)
        (jv,) = self._grad([lin.pullback[i] for i in used], [lin.dual], [pieces[i] for i in used])
        return jv

    def _vjp(self, lin: _Linearisation, U: Tensor) -> Tensor:
        """Jᵀ U for a (m, *out.shape) block, as (D, m)."""
        return self._flatten(self._grad([lin.out], self.params, [U]), U.shape[0]).T


@dataclass
class _Linearisation:
    out: Tensor  # the outputs on one batch, with their graph to the parameters
    dual: Tensor  # u: zeros shaped like `out`, the variable of g(u) = Jᵀ u
    pullback: list[
        Tensor | None
    ]  # g(u) per parameter, with its graph (None: the output does not depend on it)


class GGNOperator(_JacobianOperator):
    r"""Generalised Gauss–Newton matrix of the mean loss (Schraudolph 2002; Martens 2020, §8):

    .. math::  G = \frac1N \sum_b J_b^\top \, \nabla^2_f \big(w_b \bar L_b(f)\big) \, J_b,
               \qquad w_b = n_b \ (\text{reduction="mean"}), \; 1 \ (\text{"sum"}),

    with :math:`J_b = \partial f / \partial \theta` the Jacobian of the model outputs f on batch b and
    :math:`\nabla^2_f` the Hessian of the loss in the outputs (exact, by autograd, for any `loss_fn`). It is the
    Hessian with the second-order term of the model dropped: equal to the Hessian for a model linear in θ,
    positive semi-definite for a loss convex in f (cross-entropy, squared error), and for cross-entropy equal to
    the true Fisher (`FisherOperator(kind="true", likelihood="categorical")`).

    A product is J V (backward through the graph of Jᵀ u: the double-vjp trick), then the output Hessian (an
    output-sized double backward), then Jᵀ (a backward pass). With `cache_graph=True` (default) the forward graph
    and the graph of Jᵀ u are kept for every batch (about twice the memory `HessianOperator` caches); with
    `False` they are rebuilt batch by batch at each product. A block of m vectors runs in batched passes
    (`batched`, as for `HessianOperator`; the (m, *outputs) blocks J V are the extra memory).

    Arguments as `HessianOperator` (see there); `loss_fn(outputs, targets)` returns the mean (or, with
    `reduction="sum"`, the sum) over the batch.

    Example:
        For f = w·x and the mean squared error, G = 2·mean(x²) (the Hessian too: f is linear in w):

        >>> model = torch.nn.Linear(1, 1, bias=False).double()
        >>> x, y = torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)
        >>> GGNOperator(model, torch.nn.functional.mse_loss, (x, y)).to_dense()
        tensor([[5.]], dtype=torch.float64)
    """

    _WEIGHT_IN_GRAPH = True

    def _prepare(self, inputs, targets, n: int) -> tuple[_Linearisation, Tensor, Tensor]:
        lin = self._linearise(inputs)
        leaf = lin.out.detach().requires_grad_()
        loss = batch_loss(lambda *_, **__: leaf, self.loss_fn, inputs, targets, self.params[0])
        (grad_out,) = torch.autograd.grad(loss * self._graph_weight(n), leaf, create_graph=True)
        return lin, leaf, grad_out

    def _product(self, state, V: Tensor) -> Tensor:
        lin, leaf, grad_out = state
        JV = self._jvp(lin, V)
        if not grad_out.requires_grad:  # the loss is linear in the outputs
            return torch.zeros(self.dim, V.shape[1], dtype=self.dtype, device=self.device)
        (HJV,) = self._grad([grad_out], [leaf], [JV])
        return self._vjp(lin, HJV)


FISHER_KINDS = ("empirical", "true")
LIKELIHOODS = ("categorical", "gaussian")


class FisherOperator(_JacobianOperator):
    r"""Empirical or true Fisher information of the mean loss, as an operator on the flattened parameters.

    ``kind="empirical"`` (default): the uncentred second moment of the per-sample gradients,

    .. math::  F_\mathrm{emp} = \frac1N \sum_i g_i g_i^\top, \qquad g_i = \nabla_\theta \ell_i,

    where :math:`\ell_i` is `loss_fn` on the single-sample slice ``(outputs[i:i+1], targets[i:i+1])`` — so the
    same `loss_fn` as for the Hessian serves (a mean or a sum over a batch of one sample is the sample's loss);
    the first batch is checked to be the mean (or sum) of its per-sample losses. Per-sample gradients come from
    `torch.func.vmap(torch.func.grad(...))` over single samples of a functional call; where samples interact in
    the forward pass (BatchNorm in train mode) or vmap cannot run the model, :math:`g_i` is the gradient of the
    i-th loss term through the whole batch's forward pass, one backward pass per sample (:math:`O(n_b^2)` sample
    passes per batch; Σ g_i is then still the batch gradient). It is not a curvature of the loss in general and
    can differ from the Hessian and the true Fisher even at a minimum (Kunstner et al. 2019).

    A product is :math:`G_b^\top (G_b V)` with :math:`G_b` the (n_b, D) per-sample gradients of batch b. With
    `cache_graph=True` they are kept for all batches (N·D values; the default None keeps them when that fits in
    1 GiB, `CACHE_BYTES`), so products are two matrix products; with `False` they are recomputed batch by batch
    (memory n_b·D).

    ``kind="true"`` (the "type-2" Fisher of the model's predictive distribution p(y | f(x)); Martens 2020, §9):

    .. math::  F = \frac1N \sum_i J_i^\top \Lambda_i J_i, \qquad
               \Lambda_i = \mathbb E_{y \sim p(\cdot | f_i)} \big[\nabla_f \log p(y|f_i)\, \nabla_f \log p(y|f_i)^\top\big],

    - ``likelihood="categorical"`` (softmax of logits f, outputs of shape (n, C)): Λ = diag(p) − p pᵀ. For
      cross-entropy this equals the GGN exactly.
    - ``likelihood="gaussian"`` (y ~ N(f, σ²I), any output shape): Λ = I/σ², so F = Σ JᵢᵀJᵢ/(Nσ²) (σ = `sigma`,
      default 1). `F.mse_loss` averages over the K outputs of a sample too: its per-sample loss is
      ‖f − y‖²/K, whose output Hessian is (2/K) I, so its GGN equals this F with σ² = K/2 (and equals 2/K times
      the σ = 1 Fisher).

    It depends on the likelihood, not on the targets or `loss_fn` (which is still evaluated for the reduction
    check). With `num_samples=S` it is the Monte-Carlo estimate instead: Λ replaced by
    (1/S) Σ_s r_s r_sᵀ with r_s = ∇_f log p(ŷ_s | f_i) for S labels ŷ_s drawn from the model's own p(y | f_i)
    with `seed` (unbiased; the same draws at every product, so the operator is a fixed symmetric matrix). The
    products and their memory are those of `GGNOperator` (J V, Λ, Jᵀ).

    Args:
        model, loss_fn, data, params, batched, unpack, reduction, check_reduction, mode, progress: as for
            `HessianOperator`.
        kind: "empirical" or "true".
        likelihood: for kind="true", "categorical" or "gaussian" (required there; an error for "empirical").
        sigma: the Gaussian likelihood's standard deviation (only with likelihood="gaussian"; default 1).
        num_samples: Monte-Carlo labels per sample for kind="true" (default None: the exact Λ).
        seed: seed or generator of the Monte-Carlo labels.
        cache_graph: keep what products reuse (see above; default: the graphs for "true", the per-sample
            gradients for "empirical" when they fit in 1 GiB).

    Example:
        For f = w·x with a unit Gaussian likelihood, F = mean(x²); the empirical Fisher of the squared error
        at w = 0, y = 1 is mean((2·x)²) (g_i = −2·x_i):

        >>> model = torch.nn.Linear(1, 1, bias=False).double()
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> x, y = torch.tensor([[1.0], [2.0]], dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
        >>> data, mse = (x, y), torch.nn.functional.mse_loss
        >>> FisherOperator(model, mse, data, kind="true", likelihood="gaussian").to_dense()
        tensor([[2.5000]], dtype=torch.float64)
        >>> FisherOperator(model, mse, data).to_dense()
        tensor([[10.]], dtype=torch.float64)
    """

    def __init__(
        self,
        model: nn.Module,
        *args,
        kind: str = "empirical",
        likelihood: str | None = None,
        sigma: float | None = None,
        num_samples: int | None = None,
        seed: int | torch.Generator | None = 0,
        **kwargs,
    ) -> None:
        if kind not in FISHER_KINDS:
            raise ValueError(f"unknown kind={kind!r}; expected one of {FISHER_KINDS}")
        if kind == "empirical":
            for name, value in (("likelihood", likelihood), ("sigma", sigma), ("num_samples", num_samples)):
                if value is not None:
                    raise ValueError(
                        f"{name}={value!r} applies to kind='true' only; the empirical Fisher uses the observed "
                        "targets and loss_fn"
                    )
        elif likelihood not in LIKELIHOODS:
            raise ValueError(
                f"kind='true' needs likelihood='categorical' (softmax of logits, as cross-entropy) or 'gaussian' "
                f"(as squared error), got likelihood={likelihood!r}"
            )
        if sigma is not None and likelihood != "gaussian":
            raise ValueError(f"sigma={sigma!r} applies to likelihood='gaussian' only")
        if sigma is not None and not (isinstance(sigma, numbers.Real) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
        if num_samples is not None and (
            not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples < 1
        ):
            raise ValueError(f"num_samples must be a positive integer or None (exact), got {num_samples!r}")
        self.kind = kind
        self.likelihood = likelihood
        self.sigma = 1.0 if sigma is None else float(sigma)
        self.mc_samples = None if num_samples is None else int(num_samples)
        gen = make_generator(seed)
        self._label_state = gen.get_state()  # every pass over the data redraws the same labels from here
        self._labels = torch.Generator()
        # Per-sample gradients by vmap over single samples, unless the samples of a batch are coupled.
        # BatchNorm normalises with batch statistics in train mode, and in any mode without running statistics.
        self._coupled = isinstance(model, nn.Module) and any(
            isinstance(m, BATCH_NORMS) and (kwargs.get("mode") == "train" or m.running_mean is None)
            for m in model.modules()
        )
        super().__init__(model, *args, **kwargs)

    def _resolve_cache(self, cache_graph: bool | None) -> bool:
        if cache_graph is not None:
            return bool(cache_graph)
        if self.kind == "true":
            return True
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        return self._count_samples() * self.dim * itemsize <= CACHE_BYTES

    def _check_reduction(self) -> None:
        super()._check_reduction()
        first = self._first_batch()
        if self.kind != "empirical" or first is None:
            return
        inputs, targets = move_batch(*first, self.params[0])
        n = batch_size_of(inputs, targets)
        with torch.no_grad(), curvature_mode(self.model, self.mode), sdpa_kernel(SDPBackend.MATH):
            out = call_model(self.model, inputs)
            whole = float(batch_loss(lambda *_, **__: out, self.loss_fn, inputs, targets, out))
            parts = sum(float(self._sample_loss(out, targets, i)) for i in range(n))
        tol = max(1e-3, 20 * torch.finfo(self.dtype).eps)
        if abs(parts - self._weight(n) * whole) > tol * max(abs(parts), abs(whole), 1e-30):
            raise ValueError(
                f"loss_fn is not a {self.reduction} of per-sample losses: on the first batch ({n} samples) it gives "
                f"{whole:.6g}, while its values on the single samples add up to {parts:.6g}; the empirical Fisher "
                "needs the loss of each sample (pass check_reduction=False if this is intended)"
            )

    def _sample_loss(self, out: Tensor, targets, i: int) -> Tensor:
        """ℓ_i: `loss_fn` on the single-sample slice i of a batch's outputs and targets."""
        one = map_tensors(targets, lambda t: t[i : i + 1])
        return batch_loss(lambda *_, **__: out[i : i + 1], self.loss_fn, None, one, out)

    def _batch_states(self, progress: bool | None = False):
        self._labels.set_state(self._label_state)
        return super()._batch_states(progress)

    # -- empirical ---------------------------------------------------------------------------------------------

    def _prepare(self, inputs, targets, n: int):
        if self.kind == "empirical":
            if not self._coupled:
                try:
                    return self._vmapped_gradients(inputs, targets)
                except RuntimeError:  # vmap cannot run this model or loss: per-sample rows through the batch
                    self._coupled = True
            return self._coupled_gradients(inputs, targets, n)
        lin = self._linearise(inputs)
        f = lin.out.detach()
        if not torch.isfinite(f).all():
            raise ValueError("the model output is not finite; the Fisher is undefined there")
        if self.likelihood == "categorical":
            if f.ndim != 2:
                raise ValueError(
                    f"likelihood='categorical' needs outputs of shape (batch, classes), got {tuple(f.shape)}; "
                    "for other shapes use GGNOperator with cross-entropy (equal to the true Fisher)"
                )
            p = torch.softmax(f, dim=1)
            if self.mc_samples is None:
                return lin, p
            labels = torch.multinomial(
                p.cpu().double(), self.mc_samples, replacement=True, generator=self._labels
            )
            onehot = torch.nn.functional.one_hot(labels.T, f.shape[1]).to(p)  # (S, n, C)
            return lin, p - onehot  # ∇_f log p(ŷ|f) up to sign
        if self.mc_samples is None:
            return lin, None
        noise = torch.randn(self.mc_samples, *f.shape, generator=self._labels, dtype=torch.float64)
        return lin, noise.to(f) / self.sigma  # ∇_f log N(ŷ; f, σ²) = (ŷ − f)/σ² = ε/σ

    def _vmapped_gradients(self, inputs, targets) -> Tensor:
        theta = {name: p.detach() for name, p in zip(self.param_names, self.params, strict=True)}

        def sample_loss(theta, x, y):
            x1 = map_tensors(x, lambda t: t.unsqueeze(0))
            y1 = map_tensors(y, lambda t: t.unsqueeze(0))
            out = call_model(FunctionalModel(self.model, theta), x1)
            return batch_loss(lambda *_, **__: out, self.loss_fn, None, y1, out, check_finite=False)

        grads, losses = torch.func.vmap(torch.func.grad_and_value(sample_loss), in_dims=(None, 0, 0))(
            theta, inputs, targets
        )
        if not torch.isfinite(losses).all():
            raise ValueError("a per-sample loss is not finite; the Fisher is undefined there")
        rows = losses.shape[0]
        return torch.cat([grads[name].reshape(rows, -1) for name in self.param_names], dim=1)

    def _coupled_gradients(self, inputs, targets, n: int) -> Tensor:
        out = call_model(self.model, inputs)
        leaf = out.detach().requires_grad_()
        r = torch.stack(
            [torch.autograd.grad(self._sample_loss(leaf, targets, i), leaf)[0][i] for i in range(n)]
        )
        rows = []
        for start in range(0, n, _ROW_CHUNK):
            idx = torch.arange(start, min(start + _ROW_CHUNK, n), device=out.device)
            U = torch.zeros(len(idx), *out.shape, dtype=out.dtype, device=out.device)
            U[torch.arange(len(idx)), idx] = r[idx]  # row j: sample idx[j]'s output gradient, zero elsewhere
            rows.append(self._flatten(self._grad([out], self.params, [U]), len(idx)))
        return torch.cat(rows)

    # -- products ----------------------------------------------------------------------------------------------

    def _product(self, state, V: Tensor) -> Tensor:
        if self.kind == "empirical":
            return state.T @ (state @ V)
        lin, extra = state
        JV = self._jvp(lin, V)  # (m, n, ...)
        if self.likelihood == "categorical" and self.mc_samples is None:
            p = extra
            LJV = p * JV - p * (p * JV).sum(dim=-1, keepdim=True)
        elif self.mc_samples is None:  # gaussian, exact
            LJV = JV / self.sigma**2
        else:  # (1/S) Σ_s r_s ⟨r_s, ·⟩ per sample
            S, m, n = extra.shape[0], JV.shape[0], JV.shape[1]
            r = extra.reshape(S, n, -1)  # (S, n, K): the outputs of a sample flattened
            coef = torch.einsum("snk,mnk->smn", r, JV.reshape(m, n, -1))
            LJV = (torch.einsum("smn,snk->mnk", coef, r) / r.shape[0]).reshape(JV.shape)
        return self._vjp(lin, LJV)


# ----------------------------------------------------------------------------------------------------------------
# The diagonal


DIAGONAL_METHODS = ("exact", "hutchinson")


@dataclass(frozen=True)
class DiagonalEstimate:
    """The diagonal of a curvature matrix, with a per-entry standard error.

    Attributes:
        estimate: the diagonal, (D,), in the operator's `work_dtype`.
        stderr: per-entry standard error of `estimate` (sample std of z ⊙ Az over the probes / √m; zeros for
            the exact method; inf for a single probe).
        num_matvecs: operator products used.
        method: "exact" or "hutchinson".
        seed: the seed of the probes (None for a generator or the exact method).
    """

    estimate: Tensor
    stderr: Tensor
    num_matvecs: int
    method: str
    seed: int | None


def hessian_diagonal(
    model: nn.Module | LinearOperator | Tensor,
    loss_fn: LossFn | None = None,
    data=None,
    *,
    method: str = "hutchinson",
    num_matvecs: int = 100,
    seed: int | torch.Generator | None = 0,
    chunk: int = 32,
    progress: bool | None = None,
    **operator_kwargs,
) -> DiagonalEstimate:
    r"""The diagonal of the Hessian of the mean loss (or of any symmetric operator).

    - ``"exact"``: :math:`A_{jj} = e_j^\top A e_j` from the D unit vectors, `chunk` at a time: D products
      (exact to rounding; for small D, or to check the estimator).
    - ``"hutchinson"`` (default; Bekas, Kokiopoulou & Saad 2007): :math:`\hat d = \frac1m \sum_k z_k \odot A
      z_k` with Rademacher probes z (so z ⊙ z = 1): unbiased, with per-entry variance
      :math:`\sum_{l \ne j} A_{jl}^2` per probe; `stderr` is the sample std over the m probes / √m (entry by
      entry; exactly 0 where the row is diagonal). A budget of D products or more gives the exact diagonal.

    Memory: O(D · chunk) for the probes and their products, plus two (D,) accumulators. Probes are drawn one
    column at a time from the seed, so the estimate does not depend on `chunk`.

    Args:
        model: the network — then `loss_fn` and `data` are required and a `HessianOperator(model, loss_fn,
            data, **operator_kwargs)` is built — or a `LinearOperator` (e.g. `GGNOperator`, `FisherOperator`)
            or dense symmetric matrix, with `loss_fn`, `data` and `operator_kwargs` left out.
        method: "hutchinson" or "exact".
        num_matvecs: probes for "hutchinson" (ignored by "exact", which uses D).
        seed: seed or generator of the probes.
        chunk: vectors per product block.
        progress: a progress bar over products (None: the library default).
        operator_kwargs: `HessianOperator` arguments (`params`, `unpack`, `reduction`, `mode`, ...).

    Returns:
        `DiagonalEstimate(estimate, stderr, num_matvecs, method, seed)`.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> hessian_diagonal(A, method="exact").estimate.tolist()
        [2.0, 3.0]
    """
    if isinstance(model, nn.Module):
        if loss_fn is None or data is None:
            raise TypeError(
                "hessian_diagonal(model, loss_fn, data): loss_fn and data are required with a model"
            )
        op = HessianOperator(model, loss_fn, data, progress=progress, **operator_kwargs)
    else:
        if loss_fn is not None or data is not None or operator_kwargs:
            raise TypeError(
                "hessian_diagonal(op) takes an operator alone: loss_fn, data and operator arguments "
                f"({sorted(operator_kwargs)}) belong to hessian_diagonal(model, loss_fn, data, ...)"
            )
        op = as_operator(model)
    if method not in DIAGONAL_METHODS:
        raise ValueError(f"unknown method={method!r}; expected one of {DIAGONAL_METHODS}")
    for name, value in (("num_matvecs", num_matvecs), ("chunk", chunk)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    used = "exact" if method == "exact" or num_matvecs >= op.dim else "hutchinson"
    dtype, before = op.work_dtype, op.num_matvecs
    if used == "exact":
        estimate = torch.empty(op.dim, dtype=dtype, device=op.device)
        with progress_bar(progress, total=op.dim, desc="Hessian diagonal", unit="matvec") as bar:
            for start in range(0, op.dim, chunk):
                stop = min(start + chunk, op.dim)
                E = torch.zeros(op.dim, stop - start, dtype=op.dtype, device=op.device)
                E[torch.arange(start, stop), torch.arange(stop - start)] = 1
                estimate[start:stop] = torch.diagonal((op @ E)[start:stop]).to(dtype)
                bar.update(stop - start)
        return DiagonalEstimate(estimate, torch.zeros_like(estimate), op.num_matvecs - before, "exact", None)
    gen = make_generator(seed)
    # Running mean and sum of squared deviations (Welford, merged chunk by chunk): stable in float32.
    mean = torch.zeros(op.dim, dtype=dtype, device=op.device)
    m2 = torch.zeros_like(mean)
    count = 0
    with progress_bar(progress, total=num_matvecs, desc="Hessian diagonal", unit="matvec") as bar:
        while count < num_matvecs:
            c = min(chunk, num_matvecs - count)
            Z = torch.cat([probe_vectors(op.dim, 1, gen, op) for _ in range(c)], dim=1)
            samples = (Z * (op @ Z)).to(dtype)
            chunk_mean = samples.mean(dim=1)
            delta = chunk_mean - mean
            total = count + c
            mean += delta * (c / total)
            m2 += ((samples - chunk_mean[:, None]) ** 2).sum(dim=1) + delta**2 * (count * c / total)
            count = total
            bar.update(c)
    stderr = (m2 / (count - 1)).sqrt() / math.sqrt(count) if count > 1 else torch.full_like(mean, math.inf)
    return DiagonalEstimate(
        mean,
        stderr,
        op.num_matvecs - before,
        "hutchinson",
        int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) else None,
    )


# ----------------------------------------------------------------------------------------------------------------
# Per-layer spectra


OPERATORS = {"hessian": HessianOperator, "ggn": GGNOperator, "fisher": FisherOperator}
GROUPINGS = ("module", "parameter")
DENSE_BLOCK_DIM = 64


def parameter_groups(
    model: nn.Module,
    group_by: str | Callable[[str], str] = "module",
    params: Sequence[str] | Sequence[Tensor] | None = None,
) -> dict[str, list[str]]:
    """Parameter names grouped into blocks, in `model.named_parameters()` order.

    `group_by="module"`: one group per module owning parameters, named by its path (``"layer1.0.conv1"``; the
    root module's own parameters under its class name); ``"parameter"``: one group per parameter tensor; a
    callable: `group_by(parameter_name) -> group name`.
    """
    names, _ = select_parameters(model, params)
    if group_by == "module":
        root = type(model).__name__

        def key(name: str) -> str:
            return name.rpartition(".")[0] or root
    elif group_by == "parameter":

        def key(name: str) -> str:
            return name
    elif callable(group_by):
        key = group_by
    else:
        raise ValueError(
            f"unknown group_by={group_by!r}; expected one of {GROUPINGS} or a callable name -> group"
        )
    groups: dict[str, list[str]] = {}
    for name in names:
        group = key(name)
        if not isinstance(group, str):
            raise TypeError(f"group_by must return a group name (str), got {group!r} for {name!r}")
        groups.setdefault(group, []).append(name)
    return groups


@dataclass(frozen=True)
class LayerSpectrum:
    """The extreme eigenpairs of one diagonal block of a curvature matrix.

    Attributes:
        name: the group's name.
        params: the parameter names of the block.
        dim: the block's size D_l.
        eigen: its `EigenResult` (values, vectors (D_l, k), residuals, products, method).
    """

    name: str
    params: tuple[str, ...]
    dim: int
    eigen: EigenResult

    @property
    def values(self) -> Tensor:
        return self.eigen.values


def layer_spectra(
    model: nn.Module,
    loss_fn: LossFn,
    data,
    *,
    k: int = 1,
    operator: str | Callable[..., LinearOperator] = "hessian",
    group_by: str | Callable[[str], str] = "module",
    params: Sequence[str] | Sequence[Tensor] | None = None,
    which: str = "largest",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: int | torch.Generator | None = 0,
    dense_dim: int = DENSE_BLOCK_DIM,
    progress: bool | None = None,
    **operator_kwargs,
) -> dict[str, LayerSpectrum]:
    r"""Per-layer (block-diagonal) spectra: the k extreme eigenpairs of each diagonal block :math:`C_{ll}` of a
    curvature matrix, one block per group of parameters (`parameter_groups`), in one call.

    Each block is the operator restricted to its group (`params=` of the operator: :math:`C_{ll}` is the
    operator's matrix of the loss as a function of θ_l alone, the other parameters fixed). One operator is built
    per group, and dropped before the next: one gradient-graph pass per group and batch, and each block product
    differentiates only through the group's parameters. (One operator over all parameters with products
    projected into each block would build the graphs once but pay a full D-dimensional product for every block
    product; a spectrum takes tens of products per block, so building per group is cheaper.) Memory: that of one
    operator on one group.

    A block with D_l ≤ max(`dense_dim`, k + 1) is built densely (D_l products in blocks) and solved by `eigh`:
    exact, and no more products than Lanczos needs at that size; it returns min(k, D_l) pairs. Larger blocks use
    `top_eigenvalues(op, k, which=..., tol=..., max_matvecs=..., seed=...)`.

    The mode is resolved (and warned about) once, and the reduction checked on the first group only.

    Args:
        model, loss_fn, data: as for `HessianOperator`.
        k: eigenpairs per block.
        operator: "hessian" (default), "ggn", "fisher" (`FisherOperator`; pass `kind=`, `likelihood=` in
            `operator_kwargs`), or a callable returning a `LinearOperator`, called as `operator(model, loss_fn,
            data, params=names, check_reduction=..., mode=..., **operator_kwargs)`.
        group_by: "module", "parameter" or a callable (see `parameter_groups`).
        params: restrict to these parameters before grouping.
        which, tol, max_matvecs, seed: passed to `top_eigenvalues`.
        dense_dim: blocks up to this size are solved densely.
        progress: a progress bar over groups (None: the library default).
        operator_kwargs: further operator arguments (`unpack`, `reduction`, `mode`, `cache_graph`, ...).

    Returns:
        dict group name → `LayerSpectrum(name, params, dim, eigen)`, in parameter order.
    """
    if which not in WHICH:
        raise ValueError(f"unknown which={which!r}; expected one of {WHICH}")
    if isinstance(operator, str):
        if operator not in OPERATORS:
            raise ValueError(
                f"unknown operator={operator!r}; expected one of {tuple(OPERATORS)} or a callable"
            )
        build = OPERATORS[operator]
    elif callable(operator):
        build = operator
    else:
        raise TypeError(f"operator must be a name or a callable returning a LinearOperator, got {operator!r}")
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(dense_dim, numbers.Integral) or isinstance(dense_dim, bool) or dense_dim < 0:
        raise ValueError(f"dense_dim must be a non-negative integer, got {dense_dim!r}")
    if "params" in operator_kwargs:
        raise TypeError("params= is layer_spectra's own argument, not an operator argument")
    groups = parameter_groups(model, group_by, params)
    data = materialize(data)
    operator_kwargs["mode"] = resolve_mode(model, operator_kwargs.get("mode"))
    check = operator_kwargs.pop("check_reduction", True)
    results: dict[str, LayerSpectrum] = {}
    for i, (name, names) in enumerate(
        progress_bar(progress, iterable=list(groups.items()), desc="layer spectra", unit="block")
    ):
        op = build(model, loss_fn, data, params=names, check_reduction=check and i == 0, **operator_kwargs)
        if op.dim <= max(dense_dim, k + 1):
            eigen = _dense_eigen(op, k, which)
        else:
            eigen = top_eigenvalues(op, k, which=which, tol=tol, max_matvecs=max_matvecs, seed=seed)
        results[name] = LayerSpectrum(name=name, params=tuple(names), dim=op.dim, eigen=eigen)
        del op  # free the group's graphs before the next one is built
    return results


def _dense_eigen(op: LinearOperator, k: int, which: str) -> EigenResult:
    """Eigenpairs of a small operator from its dense matrix (D products): exact to rounding."""
    before = op.num_matvecs
    A = op.to_dense().to(op.work_dtype)
    A = (A + A.T) / 2
    theta, S = torch.linalg.eigh(A)
    idx = ritz_order(theta, which)[: min(k, op.dim)]
    values, vectors = theta[idx], S[:, idx]
    residuals = (A @ vectors - vectors * values).norm(dim=0)
    return EigenResult(
        values=values.cpu(),
        vectors=vectors,
        residuals=residuals.cpu(),
        num_matvecs=op.num_matvecs - before,
        converged=True,
        method=f"dense eigh (D={op.dim})",
    )
