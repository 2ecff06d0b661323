"""landscape: exact, fast probes of neural-network loss-surface geometry."""

from .alignment import align_permutation, permute_hidden_units, weight_matching
from .complexity import (
    disagreement,
    distance_from_init,
    gradient_noise,
    norm_measures,
    output_margin,
    path_norm,
)
from .curvature import (
    DiagonalEstimate,
    FisherOperator,
    GGNOperator,
    LayerSpectrum,
    hessian_diagonal,
    layer_spectra,
    parameter_groups,
)
from .data import Dataset, cache_root, digits, image_dataset, load_dataset, mnist1d, mnist1d_signals
from .density import MassEstimate, SpectralDensity, effective_rank, negative_mass, spectral_density
from .directions import as_direction, normalize_direction, random_direction
from .distributed import DistributedGGNOperator, DistributedHessianOperator
from .dynamics import (
    ContinuedRun,
    EdgeOfStability,
    SharpnessTrajectory,
    continue_training,
    edge_of_stability,
    sharpness_trajectory,
    warm_top_eigenpair,
)
from .eigen import EigenResult, eigenvalue_ratio, power_iteration, top_eigenvalues
from .flatness import (
    PacBayesFlatness,
    Sharpness,
    average_case_sharpness,
    epsilon_sharpness,
    pac_bayes_sigma,
    worst_case_sharpness,
)
from .geometry import (
    CurvatureProfile,
    convexity_interval,
    measure_curvature,
    outlier_count,
    top_gap_certified,
)
from .hierarchy import ClassStructure, class_structure
from .interpolation import Barrier, interpolation_barrier, recompute_batchnorm_statistics
from .models import MLP, ResNet18, Transformer, build_model, count_parameters
from .operators import (
    DenseOperator,
    HessianOperator,
    LinearOperator,
    ScaledOperator,
    as_operator,
    dense_hessian,
    unpack_first_two,
    unpack_inputs_then_target,
)
from .progress import set_progress
from .results import RunRecord, cached_json, load_run, load_sweep, load_weights, run, run_sweep
from .ruggedness import Roughness, count_local_minima, roughness, slice_roughness
from .sharpness import NormalizedSharpness, normalized_sharpness
from .slices import Slice1D, Slice2D, slice_1d, slice_2d, symmetric_grid
from .stability import LinearStability, linear_stability
from .trace import TraceEstimate, hessian_trace
from .train import TrainConfig, TrainResult, paper_recipe, train_seeds

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022  (grouped by topic, not sorted)
    # operators: the Hessian (or any symmetric matrix) as a linear map on the flattened parameters
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "DistributedHessianOperator",
    "DistributedGGNOperator",
    "ScaledOperator",
    "as_operator",
    "dense_hessian",
    "unpack_first_two",
    "unpack_inputs_then_target",
    "set_progress",
    # curvature beside the Hessian: GGN, empirical/true Fisher, the diagonal, per-layer spectra
    "GGNOperator",
    "ClassStructure",
    "class_structure",
    "FisherOperator",
    "DiagonalEstimate",
    "hessian_diagonal",
    "LayerSpectrum",
    "layer_spectra",
    "parameter_groups",
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
    "MassEstimate",
    "negative_mass",
    # scale-normalised sharpness
    "NormalizedSharpness",
    "normalized_sharpness",
    "LinearStability",
    "linear_stability",
    # sharpness family: worst-case, average-case, ε-sharpness, PAC-Bayes flatness
    "Sharpness",
    "PacBayesFlatness",
    "worst_case_sharpness",
    "average_case_sharpness",
    "epsilon_sharpness",
    "pac_bayes_sigma",
    # directions, slices, roughness
    "random_direction",
    "normalize_direction",
    "as_direction",
    "Slice1D",
    "Slice2D",
    "slice_1d",
    "slice_2d",
    "symmetric_grid",
    "Roughness",
    "roughness",
    "slice_roughness",
    "count_local_minima",
    # training dynamics: λmax along a trajectory, edge of stability
    "SharpnessTrajectory",
    "EdgeOfStability",
    "ContinuedRun",
    "warm_top_eigenpair",
    "sharpness_trajectory",
    "edge_of_stability",
    "continue_training",
    # a model's whole curvature profile in one call
    "CurvatureProfile",
    "measure_curvature",
    "convexity_interval",
    "outlier_count",
    "top_gap_certified",
    # mode connectivity: barriers and permutation alignment
    "Barrier",
    "interpolation_barrier",
    "recompute_batchnorm_statistics",
    "align_permutation",
    "weight_matching",
    "permute_hidden_units",
    # norm, margin and agreement baselines of generalisation studies
    "norm_measures",
    "path_norm",
    "output_margin",
    "distance_from_init",
    "gradient_noise",
    "disagreement",
    # data
    "Dataset",
    "mnist1d",
    "mnist1d_signals",
    "digits",
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
    "cached_json",
    "load_run",
    "load_sweep",
    "load_weights",
    "__version__",
]
