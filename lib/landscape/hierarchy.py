r"""Papyan's class / cross-class structure of the Gauss–Newton matrix of the cross-entropy.

For a classifier with logits :math:`z_i = f(x_i; \theta) \in \mathbb{R}^C`, softmax :math:`p_i`, labels
:math:`y_i` and Jacobians :math:`J_i = \partial z_i / \partial \theta`, the Gauss–Newton matrix of the mean
cross-entropy over N samples is a sum of N·C outer products, because
:math:`\operatorname{diag} p - p p^\top = \sum_{c'} p_{c'} (e_{c'} - p)(e_{c'} - p)^\top`:

.. math::  G = \frac1N \sum_i J_i^\top (\operatorname{diag} p_i - p_i p_i^\top) J_i
             = \frac1N \sum_i \sum_{c'} h_{i,c'} h_{i,c'}^\top, \qquad
           h_{i,c'} = \sqrt{p_{i,c'}}\, J_i^\top (e_{c'} - p_i).

Grouping the vectors :math:`h_{i,c'}` by the true class :math:`c = y_i` and the class :math:`c'` of the logit
direction, with :math:`\pi_c = N_c / N`, group means :math:`\delta_{c,c'} = \operatorname{mean}_{y_i = c}
h_{i,c'}` and class means :math:`\delta_c = \frac1C \sum_{c'} \delta_{c,c'}`, G splits exactly into three
positive semi-definite parts (second moment = mean outer product + covariance, twice):

.. math::  G = G_\mathrm{class} + G_\mathrm{cross} + G_\mathrm{within}, \qquad
           G_\mathrm{class} = C \sum_c \pi_c\, \delta_c \delta_c^\top \ (\text{rank} \le C), \quad
           G_\mathrm{cross} = \sum_{c,c'} \pi_c (\delta_{c,c'} - \delta_c)(\delta_{c,c'} - \delta_c)^\top,

and :math:`G_\mathrm{within} = \sum_{c,c'} \pi_c \operatorname{Cov}_{y_i = c}(h_{i,c'})` the rest. Papyan (2019)
attributes the C largest outliers of deep classifiers' spectra to the class means and the next C(C − 1) to the
cross-class means, with the bulk from the within-class variation; the test is whether the top-C eigenvalues of G
are those of :math:`G_\mathrm{class}` and their eigenvectors lie in :math:`\operatorname{span}\{\delta_c\}`
(`ClassStructure.class_overlap`). Near zero loss p_i → e_{y_i} and every :math:`h_{i,c'}` → 0, so the structure is
measured at moderate loss. The factors here carry the weight √p_{i,c'} so that the three parts are exact and
positive semi-definite; Papyan's normalisation of the class means may differ from this one, which changes the
split of the eigenvalues between G_class and G_cross but not the span of the class means.

References:
    V. Papyan (2019), Measurements of three-level hierarchical structure in the outliers in the spectrum of
    deepnet Hessians (ICML); V. Papyan (2020), Traces of class/cross-class structure pervade deep learning
    spectra (JMLR).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .curvature import batched_grad
from .operators import (
    batch_size_of,
    call_model,
    curvature_mode,
    iterate_batches,
    move_batch,
    resolve_mode,
    select_parameters,
    work_dtype,
)
from .progress import progress_bar

__all__ = ["ClassStructure", "class_structure"]


@dataclass(frozen=True)
class ClassStructure:
    """The class and cross-class means of the Gauss–Newton factors (see the module docstring).

    Attributes:
        counts: (C,) samples of each class, N_c.
        class_means: (C, D) the class means δ_c (rows; a class without samples has a zero row).
        cross_means: (C, C, D) the group means δ_{c,c'}, or None when computed with ``cross=False``.
        num_samples: N.
    """

    counts: Tensor
    class_means: Tensor
    cross_means: Tensor | None
    num_samples: int

    @property
    def num_classes(self) -> int:
        return int(self.counts.numel())

    @property
    def weights(self) -> Tensor:
        """(C,) the class frequencies π_c = N_c / N (float64)."""
        return self.counts.double() / self.num_samples

    def class_factor(self) -> Tensor:
        r"""(D, C) the factor M with :math:`G_\mathrm{class} = M M^\top`: column c is √(C π_c) δ_c."""
        scale = (self.num_classes * self.weights).sqrt().to(self.class_means)
        return (self.class_means * scale[:, None]).T

    def cross_factor(self) -> Tensor:
        r"""(D, C²) the factor with :math:`G_\mathrm{cross} = M M^\top`: column (c, c') is √π_c (δ_{c,c'} − δ_c)."""
        cross = self._cross()
        centred = (cross - self.class_means[:, None, :]) * self.weights.sqrt().to(cross)[:, None, None]
        return centred.reshape(-1, cross.shape[-1]).T

    @property
    def class_eigenvalues(self) -> Tensor:
        """(C,) the eigenvalues of G_class, largest first (float64): those of the C × C Gram matrix MᵀM."""
        return _factor_eigenvalues(self.class_factor())

    @property
    def cross_eigenvalues(self) -> Tensor:
        """(C²,) the eigenvalues of G_cross, largest first (float64; at most C(C − 1) are non-zero)."""
        return _factor_eigenvalues(self.cross_factor())

    @property
    def class_trace(self) -> float:
        """tr G_class = C Σ_c π_c ‖δ_c‖² (exact)."""
        return float(self.class_factor().double().square().sum())

    @property
    def cross_trace(self) -> float:
        """tr G_cross (exact)."""
        return float(self.cross_factor().double().square().sum())

    def class_overlap(self, vectors: Tensor) -> Tensor:
        r"""The fraction of each column of `vectors` (D, k) — or of one vector (D,) — in the span of the class
        means, :math:`\|P v\|^2 / \|v\|^2` with P the orthogonal projector onto span{δ_c}: 1 for a vector in the
        span, about C / D for a random one. Returns (k,) float64 (a float for one vector)."""
        if not isinstance(vectors, Tensor) or vectors.ndim not in (1, 2) or vectors.shape[0] != self.dim:
            shape = tuple(vectors.shape) if isinstance(vectors, Tensor) else type(vectors).__name__
            raise ValueError(f"vectors must have shape ({self.dim},) or ({self.dim}, k), got {shape}")
        block = vectors.reshape(self.dim, -1).double().to(self.class_means.device)
        U, s, _ = torch.linalg.svd(self.class_factor().double(), full_matrices=False)
        # The span's basis: singular vectors above the rounding floor (classes without samples add none).
        rank_tol = s.max().clamp_min(torch.finfo(torch.float64).tiny) * max(self.dim, s.numel()) * 1e-12
        basis = U[:, s > rank_tol]
        norms = block.square().sum(0)
        if bool((norms == 0).any()):
            raise ValueError("class_overlap of a zero vector is undefined")
        out = (basis.T @ block).square().sum(0) / norms
        return float(out[0]) if vectors.ndim == 1 else out.cpu()

    @property
    def dim(self) -> int:
        return int(self.class_means.shape[1])

    def _cross(self) -> Tensor:
        if self.cross_means is None:
            raise ValueError("the cross-class means were not kept: call class_structure(..., cross=True)")
        return self.cross_means


def _factor_eigenvalues(factor: Tensor) -> Tensor:
    """Eigenvalues of M Mᵀ for a (D, r) factor M, largest first: those of the r × r Gram matrix MᵀM, in float64,
    clipped at 0 (M Mᵀ is positive semi-definite; eigvalsh can return −1e-17 for a zero eigenvalue)."""
    gram = factor.double().T @ factor.double()
    return torch.linalg.eigvalsh(gram).flip(0).clamp_min(0.0).cpu()


def class_structure(
    model: nn.Module,
    data,
    num_classes: int | None = None,
    *,
    params: Sequence[str] | Sequence[Tensor] | None = None,
    cross: bool = True,
    unpack: Callable | None = None,
    mode: str | None = None,
    progress: bool | None = None,
) -> ClassStructure:
    r"""The class and cross-class means of the Gauss–Newton matrix of the mean cross-entropy
    (:math:`G` of ``GGNOperator(model, F.cross_entropy, data)``), decomposed as in Papyan (2019): see the module
    docstring for :math:`h_{i,c'}`, :math:`\delta_{c,c'}`, :math:`\delta_c` and
    :math:`G = G_\mathrm{class} + G_\mathrm{cross} + G_\mathrm{within}`.

    The means are exact (no estimator, no error bar) for the data given. Cost: one forward pass and C·C'
    backward passes per batch, C' the classes present in it (one vmapped pass per class c' where the model's
    ops allow it). Memory: the C² group sums in the parameters' dtype promoted to at least float32
    (C²·D values; C·D with ``cross=False``, which keeps only the class means), plus one batch's graph.

    Args:
        model: a classifier whose output (read as `operators.model_output` reads it) is logits of shape (n, C).
        data: an ``(inputs, labels)`` pair, an iterable of batches or a Dataset, read as `HessianOperator` reads
            it (`unpack`); labels are class indices.
        num_classes: C; default the width of the logits.
        params: the parameters θ (names or tensors; default all that require gradients).
        cross: keep the C² group means δ_{c,c'} (needed for `cross_factor` and `cross_eigenvalues`).
        mode: "eval" or "train" as for `HessianOperator` (None: eval, with a warning for a model in train mode
            with BatchNorm or dropout).
        progress: a progress bar over batches.

    Example:
        A linear classifier on two samples of classes 0 and 1: the decomposition sums to the dense GGN.

        >>> from landscape import GGNOperator
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> model = torch.nn.Linear(3, 2).double()
        >>> x, y = torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 1])
        >>> s = class_structure(model, (x, y))
        >>> G = GGNOperator(model, torch.nn.functional.cross_entropy, (x, y)).to_dense()
        >>> parts = s.class_factor() @ s.class_factor().T + s.cross_factor() @ s.cross_factor().T
        >>> bool(torch.allclose(parts, G))  # one sample per class: no within-class variation
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer ≥ 2, got {num_classes!r}")
    _, weights = select_parameters(model, params)
    first = weights[0]
    dim = sum(p.numel() for p in weights)
    dtype = work_dtype(first.dtype)
    sums: Tensor | None = None  # (C, C, D) Σ_{y_i = c} h_{i,c'}; (C, D) summed over c' without `cross`
    counts: Tensor | None = None
    batched = True
    with curvature_mode(model, resolve_mode(model, mode)), progress_bar(progress, desc="class structure",
                                                                        unit="batch") as bar:  # fmt: skip
        for inputs, labels in iterate_batches(data, unpack):
            n = batch_size_of(inputs, labels)
            if n == 0:
                continue
            inputs, labels = move_batch(inputs, labels, first)
            with torch.enable_grad():
                logits = call_model(model, inputs)
            C = _check_batch(logits, labels, n, num_classes if sums is None else sums.shape[0])
            if sums is None:
                shape = (C, C, dim) if cross else (C, dim)
                sums = torch.zeros(shape, dtype=dtype, device=first.device)
                counts = torch.zeros(C, dtype=torch.long)
            probs = torch.softmax(logits.detach().to(dtype), dim=1)
            present = labels.unique().tolist()
            counts += torch.bincount(labels.cpu(), minlength=C)
            masks = torch.stack([labels == c for c in present]).to(dtype)  # (k, n)
            for c_prime in range(C):
                # u_i = √p_{i,c'} (e_{c'} − p_i) on the samples of class c, zero elsewhere: Jᵀu = Σ_{y_i = c} h_{i,c'}
                u = -probs.clone()
                u[:, c_prime] += 1.0
                u *= probs[:, c_prime : c_prime + 1].sqrt()
                cotangents = (masks[:, :, None] * u[None]).to(logits.dtype)  # (k, n, C)
                grads, batched = batched_grad([logits], weights, [cotangents], batched)
                flat = torch.cat(
                    [
                        torch.zeros(len(present), p.numel(), dtype=dtype, device=first.device)
                        if g is None
                        else g.reshape(len(present), -1).to(dtype)
                        for g, p in zip(grads, weights, strict=True)
                    ],
                    dim=1,
                )
                if cross:
                    sums[present, c_prime] += flat
                else:
                    sums[present] += flat
            bar.update(1)
    if sums is None:
        raise ValueError("data is empty: no samples to define the loss on")
    total = int(counts.sum())
    per_class = counts.clamp_min(1).to(dtype=dtype, device=first.device)
    if cross:
        cross_means = sums / per_class[:, None, None]
        class_means = cross_means.mean(dim=1)
    else:
        cross_means = None
        class_means = sums / (per_class[:, None] * sums.shape[0])
    return ClassStructure(counts=counts, class_means=class_means, cross_means=cross_means, num_samples=total)


def _check_batch(logits: Tensor, labels: Tensor, n: int, num_classes: int | None) -> int:
    """The number of classes C, after checking that `logits` are (n, C) and `labels` (n,) indices in [0, C)."""
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(
            f"the model must return logits of shape (n, C) = ({n}, C), got {tuple(logits.shape)}"
        )
    C = logits.shape[1] if num_classes is None else num_classes
    if logits.shape[1] != C:
        raise ValueError(f"the logits have {logits.shape[1]} columns, expected num_classes = {C}")
    if labels.ndim != 1 or labels.is_floating_point() or labels.shape[0] != n:
        raise ValueError(
            f"labels must be ({n},) integer class indices, got shape {tuple(labels.shape)} of {labels.dtype}"
        )
    if bool(((labels < 0) | (labels >= C)).any()):
        bad = labels[(labels < 0) | (labels >= C)][0].item()
        raise ValueError(f"label {bad} is outside the classes 0 … {C - 1}")
    return C
