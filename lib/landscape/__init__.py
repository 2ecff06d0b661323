"""landscape: exact, fast probes of neural-network loss-surface geometry."""

from .density import SpectralDensity, effective_rank, spectral_density
from .eigen import EigenResult, eigenvalue_ratio, power_iteration, top_eigenvalues
from .operators import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    ScaledOperator,
    as_operator,
    dense_hessian,
)
from .sharpness import NormalizedSharpness, normalized_sharpness
from .trace import TraceEstimate, hessian_trace

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022  (grouped by topic, not sorted)
    # operators: the Hessian (or any symmetric matrix) as a linear map on the flattened parameters
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "ScaledOperator",
    "as_operator",
    "dense_hessian",
    # eigenvalues: Lanczos, and the power-iteration baseline
    "EigenResult",
    "top_eigenvalues",
    "eigenvalue_ratio",
    "power_iteration",
    # trace
    "TraceEstimate",
    "hessian_trace",
    # spectral density and effective rank
    "SpectralDensity",
    "spectral_density",
    "effective_rank",
    # scale-normalised sharpness
    "NormalizedSharpness",
    "normalized_sharpness",
    "__version__",
]
