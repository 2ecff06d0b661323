"""landscape: exact, fast probes of neural-network loss-surface geometry."""

# Operators: the Hessian (and any symmetric matrix) as a linear map on the flattened parameters
# Eigenvalues: Lanczos (and the power-iteration baseline)
from .eigen import EigenResult, eigenvalue_ratio, power_iteration, top_eigenvalues
from .operators import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    ScaledOperator,
    as_operator,
    dense_hessian,
)

# Spectral density and effective rank
from .density import SpectralDensity, effective_rank, spectral_density

# Scale-normalised sharpness
from .sharpness import NormalizedSharpness, normalized_sharpness

# Trace
from .trace import TraceEstimate, hessian_trace

__version__ = "0.1.0"

__all__ = [
    "DenseOperator",
    "EigenResult",
    "HessianOperator",
    "LinearOperator",
    "NormalizedSharpness",
    "ScaledOperator",
    "SpectralDensity",
    "TraceEstimate",
    "__version__",
    "as_operator",
    "dense_hessian",
    "effective_rank",
    "eigenvalue_ratio",
    "hessian_trace",
    "normalized_sharpness",
    "power_iteration",
    "spectral_density",
    "top_eigenvalues",
]
