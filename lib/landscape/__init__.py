"""landscape: exact, fast probes of neural-network loss-surface geometry."""

from .data import Dataset, cache_root, image_dataset, load_dataset, mnist1d
from .density import SpectralDensity, effective_rank, spectral_density
from .eigen import EigenResult, eigenvalue_ratio, power_iteration, top_eigenvalues
from .models import MLP, ResNet18, Transformer, build_model, count_parameters
from .operators import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    ScaledOperator,
    as_operator,
    dense_hessian,
)
from .results import RunRecord, load_run, load_sweep, load_weights, run, run_sweep
from .sharpness import NormalizedSharpness, normalized_sharpness
from .trace import TraceEstimate, hessian_trace
from .train import TrainConfig, TrainResult, paper_recipe, train_seeds

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
    # data
    "Dataset",
    "mnist1d",
    "image_dataset",
    "load_dataset",
    "cache_root",
    # models
    "MLP",
    "ResNet18",
    "Transformer",
    "build_model",
    "count_parameters",
    # training (the loop itself is `landscape.train.train`: the module keeps that name)
    "TrainConfig",
    "TrainResult",
    "paper_recipe",
    "train_seeds",
    # results store and sweeps
    "RunRecord",
    "run",
    "run_sweep",
    "load_run",
    "load_sweep",
    "load_weights",
    "__version__",
]
