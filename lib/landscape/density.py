"""Spectral density by stochastic Lanczos quadrature, and effective rank.

References:
    L. Lin, Y. Saad, C. Yang (2016), approximating spectral densities of large matrices;
    B. Ghorbani, S. Krishnan, Y. Xiao (2019), an investigation into neural net optimization via Hessian
    eigenvalue density; G. H. Golub, G. Meurant (2010), *Matrices, Moments and Quadrature with Applications*; O. Roy, M. Vetterli (2007), the effective rank; V. Papyan (2020), traces of class/cross-class
    structure pervade deep learning spectra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .eigen import lanczos_tridiagonal
from .operators import LinearOperator, as_operator, make_generator
from .progress import progress_bar
from .trace import probe_vectors

__all__ = [
    "MassEstimate",
    "SpectralDensity",
    "effective_rank",
    "gaussian_smoothing",
    "negative_mass",
    "spectral_density",
]


@dataclass(frozen=True)
class SpectralDensity:
    r"""A spectral density estimate.

    The spectral measure :math:`\mu = \frac1D \sum_j \delta_{\lambda_j}` is approximated by the Gauss quadrature
    :math:`\frac1{n_v} \sum_{v} \sum_i w_{v,i}\, \delta_{\theta_{v,i}}` (weights sum to 1), and smoothed with a
    Gaussian kernel of width `sigma` on `grid`.

    Attributes:
        nodes: Ritz values, `(num_probes, num_steps)`.
        weights: quadrature weights (squared first components of the Ritz vectors / num_probes); sum to 1.
        grid: points where the smoothed density is evaluated.
        density: smoothed density on `grid` (integrates to ~1).
        sigma: kernel width.
        dim: D, the operator dimension (to turn weights into eigenvalue counts).
        num_matvecs: operator products used.
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    density: Tensor
    sigma: float
    dim: int
    num_matvecs: int

    def moment(self, power: int) -> float:
        """∫ t^p dμ(t) ≈ tr(A^p)/D (p ≤ 2·num_steps − 1 is exact for each probe's quadrature)."""
        return float((self.weights * self.nodes.double() ** power).sum())


def gaussian_smoothing(nodes: Tensor, weights: Tensor, grid: Tensor, sigma: float) -> Tensor:
    r"""The discrete measure :math:`\sum_i w_i \delta_{\theta_i}` convolved with :math:`\mathcal N(0, \sigma^2)`,
    evaluated on `grid` (float64)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    nodes = torch.as_tensor(nodes, dtype=torch.float64).reshape(1, -1)
    weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    grid = torch.as_tensor(grid, dtype=torch.float64).reshape(-1, 1)
    kernel = torch.exp(-0.5 * ((grid - nodes) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return kernel @ weights


def spectral_density(
    op: LinearOperator | Tensor,
    *,
    num_probes: int = 4,
    num_steps: int = 60,
    grid_size: int = 1000,
    sigma: float | None = None,
    seed: int | torch.Generator | None = 0,
    reorthogonalize: bool = True,
    basis_device: torch.device | str | None = None,
    progress: bool | None = None,
) -> SpectralDensity:
    r"""Stochastic Lanczos quadrature (SLQ; Lin, Saad & Yang 2016, as used by Ghorbani et al. 2019).

    For each Rademacher probe v (normalised), `num_steps` Lanczos steps give T = S Θ Sᵀ; the nodes are Θ and the
    weights :math:`(S_{1i})^2`. Then :math:`v^\top f(A) v / \|v\|^2 \approx \sum_i S_{1i}^2 f(\theta_i)`,
    exact for polynomials of degree < 2·num_steps (Gauss quadrature, Golub & Meurant 2010), and averaging over
    probes estimates tr f(A) / D; the spread over probes is its error (each probe's estimate is unbiased for
    polynomials of that degree). The smoothed density is :math:`\phi(t) = \sum w_i \, \mathcal N(t; \theta_i, \sigma^2)`.

    Probes run one after another and only T is kept (not the products A Q). With `reorthogonalize=True` each
    Lanczos vector is orthogonalised against all previous ones: memory D·num_steps values (the basis, in
    `op.work_dtype` on `basis_device`, default the operator's device). With `reorthogonalize=False` the plain
    three-term recurrence needs O(D) memory (three vectors); in floating point its basis loses orthogonality as
    Ritz values converge, which creates spurious copies of converged Ritz values (ghost nodes), but the
    quadrature weights then split among the copies and remain a valid estimate of the measure (Golub & Meurant
    2010, ch. 4). For a float16/bfloat16 operator the products run in its dtype and everything else in float32.

    Args:
        op: a `LinearOperator` or dense symmetric matrix.
        num_probes: independent starting vectors.
        num_steps: Lanczos steps per probe (products per probe).
        grid_size: grid points for the smoothed density, spanning the nodes ± 5 σ.
        sigma: kernel width (default: 1% of the spread of the nodes).
        seed: seed or generator for the probes (and fresh directions after a breakdown).
        reorthogonalize: full reorthogonalisation (True, O(D·num_steps) memory) or the three-term recurrence
            (False, O(D)).
        basis_device: where the Lanczos basis lives (default the operator's device).
        progress: show a progress bar over probes (None: the library default, `landscape.set_progress`).
    """
    op = as_operator(op)
    if num_probes < 1 or num_steps < 1:
        raise ValueError(f"num_probes and num_steps must be >= 1, got {num_probes}, {num_steps}")
    if num_steps > op.dim:
        raise ValueError(f"num_steps={num_steps} exceeds the operator dimension {op.dim}")
    if not isinstance(reorthogonalize, bool):
        raise TypeError(f"reorthogonalize must be True or False, got {reorthogonalize!r}")
    gen = make_generator(seed)
    before = op.num_matvecs
    nodes, weights = [], []
    for _ in progress_bar(progress, iterable=range(num_probes), desc="SLQ probes", unit="probe"):
        v = probe_vectors(op.dim, 1, gen, op)[:, 0]
        T = lanczos_tridiagonal(
            op, v, num_steps, reorthogonalize=reorthogonalize, generator=gen, basis_device=basis_device
        )
        theta, S = torch.linalg.eigh(T)
        # First Lanczos vector is v/|v|: the first row of S gives the weights.
        nodes.append(theta)
        weights.append(S[0] ** 2)
    nodes_t = torch.stack(nodes)
    weights_t = torch.stack(weights) / num_probes
    lo, hi = float(nodes_t.min()), float(nodes_t.max())
    if sigma is None:
        sigma = max(hi - lo, abs(hi), 1e-12) * 0.01
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size, dtype=torch.float64)
    density = gaussian_smoothing(nodes_t, weights_t, grid, sigma)
    return SpectralDensity(
        nodes=nodes_t,
        weights=weights_t,
        grid=grid,
        density=density,
        sigma=float(sigma),
        dim=op.dim,
        num_matvecs=op.num_matvecs - before,
    )


@dataclass(frozen=True)
class MassEstimate:
    """The SLQ estimate of the fraction of eigenvalues below a threshold (`negative_mass`).

    Attributes:
        estimate: the mean over probes of each probe's quadrature mass below the threshold.
        stderr: the standard error of that mean over probes (NaN with one probe): each probe's mass is an
            unbiased estimate of a smoothed count, so mean ± t·stderr is an interval over probes.
        per_probe: each probe's mass.
        threshold: the threshold τ (eigenvalues < τ are counted).
    """

    estimate: float
    stderr: float
    per_probe: list[float]
    threshold: float


def negative_mass(density: SpectralDensity, *, threshold: float = 0.0) -> MassEstimate:
    r"""Fraction of the spectrum below `threshold` (default 0: the negative-eigenvalue mass), from an SLQ density.

    Each probe v gives the quadrature :math:`m_v = \sum_i S_{1i}^2 \, [\theta_i < \tau]`, an estimate of
    :math:`v^\top \mathbf 1[A < \tau] v / \|v\|^2` whose mean over Rademacher probes is
    :math:`\#\{\lambda_j < \tau\}/D` up to the quadrature error of a step function (Gauss quadrature with s
    nodes resolves a step only to within the spacing of its nodes near τ; Lin, Saad & Yang 2016). The error bar
    is the spread over probes only: it does not contain that quadrature error, which a larger `num_steps`
    reduces. Memory: none beyond the density.

    Example:
        With as many steps as the dimension the quadrature is exact, and a Rademacher probe of a diagonal
        matrix weighs every eigenvalue 1/D, so every probe gives 2/5:

        >>> A = torch.diag(torch.tensor([-2.0, -1.0, 1.0, 2.0, 3.0], dtype=torch.float64))
        >>> mass = negative_mass(spectral_density(A, num_probes=3, num_steps=5, seed=0))
        >>> round(mass.estimate, 10), round(mass.stderr, 10)
        (0.4, 0.0)
    """
    if not isinstance(density, SpectralDensity):
        raise TypeError(f"negative_mass needs a SpectralDensity, got {type(density).__name__}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    probes = density.nodes.shape[0]
    # the stored weights are divided by the number of probes; undo it per probe
    per_probe = ((density.weights * probes) * (density.nodes < threshold)).sum(dim=1).double()
    stderr = float(per_probe.std(unbiased=True) / math.sqrt(probes)) if probes > 1 else math.nan
    return MassEstimate(float(per_probe.mean()), stderr, per_probe.tolist(), float(threshold))


def effective_rank(
    spectrum: Tensor | np.ndarray | SpectralDensity,
    *,
    method: str = "entropy",
    threshold: float = 0.01,
) -> float:
    r"""Effective rank of a symmetric matrix from its eigenvalues or from an SLQ density.

    - ``"entropy"`` (Roy & Vetterli 2007): with :math:`p_j = |\lambda_j| / \sum_k |\lambda_k|`,
      :math:`\operatorname{erank} = \exp\left(-\sum_j p_j \log p_j\right)`; between 1 and the rank.
    - ``"threshold"``: :math:`\#\{j : \lambda_j > \tau \, \lambda_{\max}\}` with τ = `threshold` (e.g. the number of
      outlier eigenvalues, to compare with the number of classes as in Papyan 2020).

    For a `SpectralDensity`, each node θ with weight w stands for D·w eigenvalues equal to θ, so both formulas
    are evaluated on that discrete measure (an estimate; exact eigenvalues give exact values).

    Example:
        >>> round(effective_rank(torch.tensor([1.0, 1.0, 1.0, 0.0])), 12)
        3.0
        >>> effective_rank(torch.tensor([10.0, 5.0, 0.1]), method="threshold", threshold=0.1)
        2.0
    """
    if method not in ("entropy", "threshold"):
        raise ValueError(f"unknown method={method!r}; expected 'entropy' or 'threshold'")
    if isinstance(spectrum, SpectralDensity):
        values = spectrum.nodes.reshape(-1).double()
        counts = spectrum.weights.reshape(-1).double() * spectrum.dim
    else:
        values = torch.as_tensor(spectrum, dtype=torch.float64).reshape(-1)
        counts = torch.ones_like(values)
    if values.numel() == 0:
        raise ValueError("spectrum is empty")
    if method == "threshold":
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        lmax = float(values.max())
        return float(counts[values > threshold * lmax].sum())
    mass = counts * values.abs()
    total = float(mass.sum())
    if total == 0:
        return 0.0
    p = values.abs() / total
    keep = p > 0
    entropy = -float((counts[keep] * p[keep] * torch.log(p[keep])).sum())
    return math.exp(entropy)
