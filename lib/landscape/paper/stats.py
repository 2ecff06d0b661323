"""Statistics for the paper's chapters: bootstrap intervals, rank correlations with intervals, and the
generalisation-measure statistics of Jiang et al. (2020) and Dziugaite et al. (2020).

Everything rests on `scipy.stats` (bootstrap, rank correlations, entropy), `statsmodels` (Holm) and NumPy; the
few pieces none of them has (a cluster bootstrap, Kendall's τ_a, the granulated Kendall coefficient, the
conditional mutual information score and the robust sign error) are written here, each marked where it is.

Every interval comes back as an `Interval` (estimate, bounds, level, number of observations or clusters, and
the method), so a chapter can glue it (``format_estimate(interval)``) and decide a claim from it
(`landscape.paper.verdicts.verdict_from_interval`). All randomness goes through an explicit integer ``seed``
(``numpy.random.default_rng(seed)``): the same seed gives the same interval.

References:
    Efron, B. (1987). Better bootstrap confidence intervals. JASA 82(397). (BCa)
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application, §3.8 (resampling clusters).
    Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6(2).
    Jiang, Y., Neyshabur, B., Mobahi, H., Krishnan, D. & Bengio, S. (2020). Fantastic generalization measures
        and where to find them. ICLR.
    Dziugaite, G. K., Drouin, A., Neal, B., Rajkumar, N., Caballero, E., Wang, L., Mitliagkas, I. & Roy, D. M.
        (2020). In search of robust measures of generalization. NeurIPS.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from landscape.paper.glue import format_estimate

__all__ = [
    "Interval",
    "bootstrap_ci",
    "cluster_bootstrap_ci",
    "conditional_mutual_information",
    "granulated_kendall",
    "holm",
    "paired_difference_ci",
    "partial_rank_correlation",
    "rank_correlation",
    "rank_correlation_test",
    "ratio_ci",
    "robust_sign_error",
]

BOOTSTRAP_METHODS = ("BCa", "percentile", "basic")  # scipy.stats.bootstrap's methods
RANK_METHODS = ("spearman", "kendall")
PARTIAL_METHODS = ("spearman", "pearson")
WEIGHTINGS = ("hard", "soft")


@dataclass(frozen=True)
class Interval:
    """An estimate with a confidence interval.

    Attributes:
        estimate: the statistic on the data as observed.
        low, high: the interval's bounds; equal to the estimate when the data are constant, NaN when the interval
            is undefined (fewer than 2 observations or clusters, or a resample on which the statistic is
            undefined).
        level: the interval's nominal coverage, e.g. 0.95.
        n: the number of observations (pairs for paired data, clusters for the cluster bootstrap).
        method: how the interval was made, e.g. ``"bootstrap BCa"`` or ``"cluster bootstrap percentile"``.

    >>> print(Interval(0.51234, 0.4321, 0.6012, 0.95, 20, "bootstrap BCa"))
    0.512 [0.43, 0.6]
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str

    def __post_init__(self) -> None:
        _check_level(self.level)
        if not isinstance(self.n, (int, np.integer)) or self.n < 0:
            raise ValueError(f"n must be a non-negative integer, got {self.n!r}")
        if self.low > self.high:  # False when either bound is NaN
            raise ValueError(f"the interval must have low <= high, got [{self.low}, {self.high}]")

    def __str__(self) -> str:
        """``"estimate [low, high]"``: 3 significant digits for the estimate, 2 for the bounds."""
        return format_estimate(self)


# ---------------------------------------------------------------------------------------------- argument checks


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), e.g. 0.95, got {level!r}")
    return float(level)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (passed to numpy.random.default_rng), got {seed!r}")
    return int(seed)


def _check_n_resamples(n_resamples) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 2:
        raise ValueError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    return int(n_resamples)


def _check_choice(value, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _as_1d(values, name: str) -> np.ndarray:
    """Float64 1-D array of finite values; NaN or ±inf raise (the caller decides what missing values mean)."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be numbers, got {type(values).__name__}: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"{name} contains {array[bad[0]]} at index {bad[0]} ({bad.size} of {array.size} values are not finite);"
            f" drop them first (e.g. {name}[np.isfinite({name})]) if they are missing runs"
        )
    return array


def _same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same length (one entry per pair), got {a.size} and {b.size}")


def _column(frame: pd.DataFrame, name, what: str) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if name not in frame.columns:
        raise ValueError(f"{what} column {name!r} is not in the frame (columns: {list(frame.columns)})")
    return _as_1d(frame[name].to_numpy(), f"frame[{name!r}]")


def _check_axes(frame: pd.DataFrame, axes, what: str = "axes") -> list:
    if isinstance(axes, str) or not isinstance(axes, Sequence) or len(axes) == 0:
        raise ValueError(f"{what} must be a non-empty list of column names, got {axes!r}")
    missing = [axis for axis in axes if axis not in frame.columns]
    if missing:
        raise ValueError(f"{what} {missing} are not columns of the frame (columns: {list(frame.columns)})")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{what} must not repeat a column, got {list(axes)}")
    return list(axes)


def _labels_to_codes(labels, name: str) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(np.asarray(labels, dtype=object))
    if (codes < 0).any():
        raise ValueError(f"{name} contains missing labels (NaN/None) at index {np.flatnonzero(codes < 0)[0]}")
    return codes, len(uniques)


# ------------------------------------------------------------------------------------------ bootstrap machinery


def _scipy_bootstrap(data, statistic, *, paired, vectorized, level, n_resamples, method, seed):
    """(low, high) from `scipy.stats.bootstrap`, degenerate cases made explicit.

    A bootstrap distribution with a NaN (a resample on which the statistic is undefined, e.g. a constant resample
    for a correlation) gives NaN bounds; a constant one gives low = high = that value (BCa's acceleration is 0/0
    there); scipy's warnings about them are dropped. Otherwise every warning caught is passed on.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.bootstrap(
            data,
            statistic,
            n_resamples=n_resamples,
            vectorized=vectorized,
            paired=paired,
            confidence_level=level,
            method=method,
            rng=np.random.default_rng(seed),
        )
    distribution = np.asarray(result.bootstrap_distribution, dtype=float)
    if np.isnan(distribution).any():
        return math.nan, math.nan
    if np.all(distribution == distribution.flat[0]):
        return float(distribution.flat[0]), float(distribution.flat[0])
    for caught_warning in caught:
        warnings.warn_explicit(
            caught_warning.message, caught_warning.category, caught_warning.filename, caught_warning.lineno
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _cluster_percentile(
    codes, n_clusters, statistic_of_rows, *, level, n_resamples, seed
) -> tuple[float, float]:
    """Percentile interval of `statistic_of_rows(row indices)` over resamples of whole clusters.

    Written here because scipy.stats.bootstrap resamples single observations, and neither statsmodels nor
    scikit-learn resamples groups: each resample draws `n_clusters` cluster labels with replacement and pools all
    rows of the drawn clusters (a cluster drawn twice enters twice).
    """
    if n_clusters < 2:
        return math.nan, math.nan
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(codes, minlength=n_clusters))[:-1])
    rng = np.random.default_rng(seed)
    distribution = np.empty(n_resamples)
    for r in range(n_resamples):
        picks = rng.integers(n_clusters, size=n_clusters)
        distribution[r] = statistic_of_rows(np.concatenate([members[c] for c in picks]))
    if np.isnan(distribution).any():
        return math.nan, math.nan
    low, high = np.quantile(distribution, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_ci(
    values, statistic: Callable = np.mean, *, level=0.95, n_resamples=2000, method="BCa", seed=0
) -> Interval:
    """Bootstrap confidence interval of a statistic of one sample, by `scipy.stats.bootstrap`.

    The estimate is θ̂ = statistic(values). The bootstrap draws `n_resamples` samples of size n with replacement,
    θ*_b = statistic(resample_b); the interval is, for ``"percentile"``, the (1 ± level)/2 quantiles of θ*; for
    ``"basic"``, 2θ̂ minus those quantiles; for ``"BCa"``, the quantiles Φ(z₀ + (z₀ + z_α)/(1 − a(z₀ + z_α)))
    corrected for the bias z₀ = Φ⁻¹(#{θ* < θ̂}/B) and the acceleration a (from the jackknife) (Efron 1987).

    Meaning: an interval that would cover the population value of the statistic in about `level` of repeated
    experiments (approximately; BCa errs by O(1/n), the percentile interval by O(1/√n)). It describes the
    sampling spread of the statistic over these n independent observations: runs that are not independent
    (several runs of one configuration) need `cluster_bootstrap_ci`.

    Args:
        values: the sample (1-D, finite; NaN values raise — drop missing runs first if that is what they are).
        statistic: a function of a 1-D array returning a number; one accepting ``axis`` (``np.mean``,
            ``np.median``) is vectorised by scipy.
        level: the interval's nominal coverage, in (0, 1).
        n_resamples: bootstrap resamples.
        method: ``"BCa"``, ``"percentile"`` or ``"basic"``.
        seed: integer seed of ``numpy.random.default_rng``.

    Returns:
        An `Interval`: with n < 2, bounds NaN (estimate NaN for n = 0); with all values equal, low = high =
        estimate.

    >>> bootstrap_ci([2.0, 2.0, 2.0]).high
    2.0
    """
    values = _as_1d(values, "values")
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    method = _check_choice(method, BOOTSTRAP_METHODS, "method")
    label = f"bootstrap {method}"
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0, label)
    estimate = float(statistic(values))
    if values.size < 2:
        return Interval(estimate, math.nan, math.nan, level, int(values.size), label)
    if np.all(values == values[0]):
        return Interval(estimate, estimate, estimate, level, int(values.size), label)
    low, high = _scipy_bootstrap(
        (values,), statistic, paired=False, vectorized=None, level=level, n_resamples=n_resamples,
        method=method, seed=seed,
    )  # fmt: skip
    return Interval(estimate, low, high, level, int(values.size), label)


def paired_difference_ci(
    a, b, statistic: Callable = np.mean, *, level=0.95, n_resamples=2000, seed=0
) -> Interval:
    """BCa bootstrap interval of statistic(a − b) for paired samples (a_i and b_i share a seed).

    The differences d_i = a_i − b_i are resampled as one sample (`bootstrap_ci` with ``method="BCa"``), so the
    pairing removes the seed-to-seed variation the two conditions share. With the mean, statistic(a − b) =
    mean(a) − mean(b); with other statistics (the median) it is the statistic of the differences, not the
    difference of the statistics.

    Args:
        a, b: paired samples of equal length (finite values).
        statistic, level, n_resamples, seed: as in `bootstrap_ci`.

    Returns:
        An `Interval` with n = number of pairs; degenerate cases as in `bootstrap_ci`.

    >>> paired_difference_ci([3.0, 4.0, 5.0], [2.0, 3.0, 4.0]).low
    1.0
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    _same_length(a, b, "a and b (paired samples)")
    return bootstrap_ci(a - b, statistic, level=level, n_resamples=n_resamples, method="BCa", seed=seed)


def ratio_ci(a, b, *, level=0.95, n_resamples=2000, seed=0, paired=True) -> Interval:
    """BCa bootstrap interval of a ratio of a to b.

    - ``paired=True`` (a_i, b_i share a seed): the geometric mean of the paired ratios,
      R = exp(mean_i log(a_i / b_i)) = (∏ a_i/b_i)^(1/n); the interval is exp of the BCa interval of the mean
      of log(a_i/b_i) (BCa and percentile intervals respect monotone transformations, so this is the BCa
      interval of R itself). Needs a_i > 0 and b_i > 0.
    - ``paired=False`` (independent samples): the ratio of means, R = mean(a) / mean(b), with a and b resampled
      independently (scipy's two-sample BCa). Needs b_i > 0, so that every resample's denominator is positive.

    Meaning: an approximate `level` interval for the population ratio; 1 is the null value ("no change").

    Args:
        a, b: the numerator and denominator samples (finite; equal lengths when paired).
        level, n_resamples, seed: as in `bootstrap_ci`.
        paired: which ratio (above).

    Returns:
        An `Interval` with n = number of pairs (paired) or len(a) + len(b) (unpaired); NaN bounds when a sample
        has fewer than 2 values, low = high = estimate when the ratios (or both samples) are constant.

    >>> ratio_ci([2.0, 4.0, 8.0], [1.0, 2.0, 4.0]).estimate
    2.0
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    if paired:
        _same_length(a, b, "a and b (paired samples; pass paired=False for independent ones)")
        for name, sample in (("a", a), ("b", b)):
            if sample.size and sample.min() <= 0:
                i = int(np.argmin(sample))
                raise ValueError(
                    f"paired ratio_ci takes the geometric mean of a_i/b_i and needs positive values,"
                    f" got {name}[{i}] = {sample[i]}"
                )
        logs = bootstrap_ci(
            np.log(a / b), np.mean, level=level, n_resamples=n_resamples, method="BCa", seed=seed
        )
        return Interval(
            math.exp(logs.estimate), math.exp(logs.low), math.exp(logs.high), level, logs.n,
            "bootstrap BCa (geometric mean of paired ratios)",
        )  # fmt: skip
    if b.size and b.min() <= 0:
        i = int(np.argmin(b))
        raise ValueError(f"unpaired ratio_ci divides by mean(b) and needs positive b, got b[{i}] = {b[i]}")
    label = "bootstrap BCa (ratio of means)"
    n = int(a.size + b.size)
    if a.size == 0 or b.size == 0:
        return Interval(math.nan, math.nan, math.nan, level, n, label)
    estimate = float(a.mean() / b.mean())
    if min(a.size, b.size) < 2:
        return Interval(estimate, math.nan, math.nan, level, n, label)

    def ratio_of_means(x, y, axis=-1):
        return np.mean(x, axis=axis) / np.mean(y, axis=axis)

    low, high = _scipy_bootstrap(
        (a, b), ratio_of_means, paired=False, vectorized=True, level=level, n_resamples=n_resamples,
        method="BCa", seed=seed,
    )  # fmt: skip
    return Interval(estimate, low, high, level, n, label)


def cluster_bootstrap_ci(
    frame: pd.DataFrame,
    value,
    cluster,
    statistic: Callable = np.mean,
    *,
    level=0.95,
    n_resamples=2000,
    seed=0,
) -> Interval:
    """Cluster (block) bootstrap percentile interval: resample whole clusters, not rows.

    Rows of one cluster (e.g. the runs of one configuration, or the measurements of one network) are not
    independent, so resampling rows understates the spread. Each resample draws G cluster labels with
    replacement out of the G clusters and pools all their rows; θ*_b = statistic(pooled rows); the interval is
    the (1 ± level)/2 quantiles of θ* (Davison & Hinkley 1997, §3.8, "resampling clusters"). The estimate is
    the statistic of all rows.

    Meaning: an approximate `level` interval for the statistic when clusters, not rows, are the independent
    units; its width reflects G, not the number of rows (G clusters of k identical rows give the interval of G
    observations). Percentile only: BCa would need a cluster jackknife.

    Args:
        frame: the rows.
        value: column whose values `statistic` receives as a 1-D float array; or None, and `statistic` receives
            the resampled DataFrame (its index keeps the original labels, repeated when a cluster is drawn
            twice), e.g. ``lambda d: d["x"].corr(d["y"], method="spearman")``.
        cluster: column of cluster labels.
        statistic: a function of the pooled rows returning a number.
        level, n_resamples, seed: as in `bootstrap_ci`.

    Returns:
        An `Interval` with n = number of clusters; NaN bounds with fewer than 2 clusters or when the statistic
        is NaN on some resample.
    """
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if cluster not in frame.columns:
        raise ValueError(f"cluster column {cluster!r} is not in the frame (columns: {list(frame.columns)})")
    codes, n_clusters = _labels_to_codes(frame[cluster].to_numpy(), f"frame[{cluster!r}]")
    label = "cluster bootstrap percentile"
    if len(frame) == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0, label)
    if value is None:
        estimate = float(statistic(frame))

        def statistic_of_rows(rows):
            return float(statistic(frame.iloc[rows]))

    else:
        values = _column(frame, value, "value")
        estimate = float(statistic(values))

        def statistic_of_rows(rows):
            return float(statistic(values[rows]))

    low, high = _cluster_percentile(
        codes, n_clusters, statistic_of_rows, level=level, n_resamples=n_resamples, seed=seed
    )
    return Interval(estimate, low, high, level, n_clusters, label)


# ------------------------------------------------------------------------------------------- rank correlations


def _spearman_along(x, y, axis=-1):
    """Spearman ρ along an axis: Pearson's r of the average ranks (scipy's spearmanr does not batch)."""
    return stats.pearsonr(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis).statistic


def _kendall_along(x, y, axis=-1):
    return stats.kendalltau(x, y, axis=axis).statistic


def _rank_correlation_value(x, y, method: str) -> float:
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan  # undefined for a constant variable (scipy would warn and return NaN)
    if method == "spearman":
        return float(stats.spearmanr(x, y).statistic)
    return float(stats.kendalltau(x, y).statistic)


def _paired_xy(x, y, *, minimum: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    _same_length(x, y, "x and y")
    if x.size < minimum:
        raise ValueError(f"need at least {minimum} pairs for a correlation with an interval, got {x.size}")
    return x, y


def rank_correlation(
    x, y, *, method="spearman", level=0.95, n_resamples=2000, seed=0, clusters=None
) -> Interval:
    """Spearman's ρ or Kendall's τ_b with a bootstrap interval over pairs (or over clusters of pairs).

    ρ = Pearson correlation of the average ranks of x and y (`scipy.stats.spearmanr`);
    τ_b = (n_c − n_d) / √((n₀ − n_x)(n₀ − n_y)), n₀ = n(n−1)/2, n_c / n_d concordant / discordant pairs,
    n_x / n_y pairs tied in x / y (`scipy.stats.kendalltau`).

    The interval: without `clusters`, the BCa interval of `scipy.stats.bootstrap` over resampled (x_i, y_i)
    pairs; with `clusters` (one label per pair, e.g. the configuration a run belongs to), the cluster bootstrap
    percentile interval (`cluster_bootstrap_ci`), for pairs that are not independent. An approximate `level`
    interval for the population correlation; for a p-value of "no association" use `rank_correlation_test`.

    Args:
        x, y: paired observations (finite, at least 3 pairs).
        method: ``"spearman"`` or ``"kendall"``.
        level, n_resamples, seed: as in `bootstrap_ci`.
        clusters: optional cluster label per pair.

    Returns:
        An `Interval` with n = pairs (or clusters). NaN estimate and bounds when x or y is constant; NaN bounds
        when some resample is constant in x or y (possible with heavily tied data and few pairs).
    """
    method = _check_choice(method, RANK_METHODS, "method")
    x, y = _paired_xy(x, y)
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    estimate = _rank_correlation_value(x, y, method)
    if clusters is not None:
        codes, n_clusters = _labels_to_codes(clusters, "clusters")
        if codes.size != x.size:
            raise ValueError(f"clusters must have one label per pair ({x.size}), got {codes.size}")
        label = "cluster bootstrap percentile"
        if math.isnan(estimate):
            return Interval(math.nan, math.nan, math.nan, level, n_clusters, label)
        low, high = _cluster_percentile(
            codes, n_clusters, lambda rows: _rank_correlation_value(x[rows], y[rows], method),
            level=level, n_resamples=n_resamples, seed=seed,
        )  # fmt: skip
        return Interval(estimate, low, high, level, n_clusters, label)
    label = "bootstrap BCa"
    if math.isnan(estimate):
        return Interval(math.nan, math.nan, math.nan, level, int(x.size), label)
    low, high = _scipy_bootstrap(
        (x, y), _spearman_along if method == "spearman" else _kendall_along, paired=True, vectorized=True,
        level=level, n_resamples=n_resamples, method="BCa", seed=seed,
    )  # fmt: skip
    return Interval(estimate, low, high, level, int(x.size), label)


def rank_correlation_test(x, y, method="spearman") -> tuple[float, float]:
    """(statistic, two-sided p-value) of Spearman's ρ or Kendall's τ_b against "no association".

    `scipy.stats.spearmanr` (t-distribution approximation with n − 2 degrees of freedom) or
    `scipy.stats.kendalltau` (exact null distribution for small samples without ties, normal approximation
    otherwise). The p-value treats the pairs as independent.

    >>> round(rank_correlation_test([1, 2, 3, 4], [1, 3, 2, 4])[0], 12)  # 1 − 6·2 / (4·15)
    0.8
    """
    method = _check_choice(method, RANK_METHODS, "method")
    x, y = _paired_xy(x, y)
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan
    result = stats.spearmanr(x, y) if method == "spearman" else stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def _residual_correlation(x, y, *covariates, method: str) -> float:
    """Pearson's r of the least-squares residuals of x and y on [1, covariates] (ranked first for Spearman)."""
    transform = stats.rankdata if method == "spearman" else np.asarray
    xt, yt = transform(x), transform(y)
    design = np.column_stack([np.ones(len(xt)), *[transform(c) for c in covariates]])
    coefficients = np.linalg.lstsq(design, np.column_stack([xt, yt]), rcond=None)[0]
    residuals = np.column_stack([xt, yt]) - design @ coefficients  # mean zero: the design has an intercept
    sums = (residuals**2).sum(axis=0)
    spread = np.array([((xt - xt.mean()) ** 2).sum(), ((yt - yt.mean()) ** 2).sum()])
    if np.any(sums <= 1e-12 * np.maximum(spread, 1e-300)):
        return math.nan  # a covariate explains x or y exactly: nothing is left to correlate
    return float(residuals[:, 0] @ residuals[:, 1] / math.sqrt(sums[0] * sums[1]))


def partial_rank_correlation(
    x, y, covariates, *, method="spearman", level=0.95, n_resamples=2000, seed=0
) -> Interval:
    """Partial Spearman (or Pearson) correlation of x and y given covariates, with a BCa bootstrap interval.

    Spearman: rank x, y and each covariate (average ranks), regress the ranks of x and of y on [1, covariate
    ranks] by least squares (`numpy.linalg.lstsq`), and take Pearson's r of the two residual vectors. With one
    covariate z this equals r_xy·z = (r_xy − r_xz r_yz) / √((1 − r_xz²)(1 − r_yz²)) on the Spearman
    correlations. ``"pearson"`` does the same without ranking (the ordinary partial correlation).

    The interval is the BCa interval of `scipy.stats.bootstrap` over resampled rows (x_i, y_i, z_i): an
    approximate `level` interval for the population partial correlation, treating rows as independent.

    Args:
        x, y: the two variables (finite, equal length n).
        covariates: the variables to partial out: shape (n,) or (n, k), or a DataFrame / Series with n rows;
            needs n ≥ k + 3 (two residual degrees of freedom beyond the fit).
        method: ``"spearman"`` or ``"pearson"``.
        level, n_resamples, seed: as in `bootstrap_ci`.

    Returns:
        An `Interval` with n = rows; NaN when a covariate explains x or y exactly (also on some resample).
    """
    method = _check_choice(method, PARTIAL_METHODS, "method")
    x, y = _as_1d(x, "x"), _as_1d(y, "y")
    _same_length(x, y, "x and y")
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    z = np.asarray(covariates, dtype=float)
    shape = z.shape
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != x.size or z.shape[1] == 0:
        raise ValueError(
            f"covariates must have shape (n,) or (n, k) with n = {x.size} rows (one per pair), got {shape}"
        )
    columns = [_as_1d(z[:, i], f"covariates[:, {i}]") for i in range(z.shape[1])]
    if x.size < len(columns) + 3:
        raise ValueError(
            f"need at least k + 3 = {len(columns) + 3} rows for a partial correlation on k = {len(columns)}"
            f" covariate(s), got {x.size}"
        )
    label = "bootstrap BCa"
    estimate = _residual_correlation(x, y, *columns, method=method)
    if math.isnan(estimate):
        return Interval(math.nan, math.nan, math.nan, level, int(x.size), label)

    def statistic(*samples):
        return _residual_correlation(*samples, method=method)

    low, high = _scipy_bootstrap(
        (x, y, *columns), statistic, paired=True, vectorized=False, level=level, n_resamples=n_resamples,
        method="BCa", seed=seed,
    )  # fmt: skip
    return Interval(estimate, low, high, level, int(x.size), label)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (`statsmodels.stats.multitest.multipletests`, ``method="holm"``).

    With the m p-values sorted, p_(1) ≤ … ≤ p_(m): p̃_(i) = min(1, max_{j ≤ i} (m − j + 1) p_(j)), returned in
    the input order. Rejecting every hypothesis with p̃ ≤ α controls the family-wise error rate at α under any
    dependence (Holm 1979).

    >>> holm([0.01, 0.04, 0.03, 0.005]).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    p = _as_1d(pvalues, "pvalues")
    if p.size == 0:
        raise ValueError("pvalues must hold at least one p-value, got none")
    if p.min() < 0 or p.max() > 1:
        bad = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise ValueError(f"p-values must lie in [0, 1], got pvalues[{bad}] = {p[bad]}")
    return multipletests(p, method="holm")[1]


# ----------------------------------------------------------------------------- generalisation-measure statistics


def _kendall_tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ_a = (n_c − n_d) / n₀, n₀ = n(n − 1)/2, the plain average of sign(Δx)·sign(Δy) over pairs.

    By hand because scipy.stats.kendalltau offers τ_b and τ_c only, while Jiang et al. (2020) define τ as the
    average over all pairs; from scipy's τ_b: τ_a = τ_b √((n₀ − n_x)(n₀ − n_y)) / n₀ (n_x, n_y: pairs tied in
    x, y). Equal to τ_b without ties; 0, not NaN, when x or y is constant.
    """
    n0 = x.size * (x.size - 1) / 2
    ties_x = sum(t * (t - 1) / 2 for t in np.unique(x, return_counts=True)[1])
    ties_y = sum(t * (t - 1) / 2 for t in np.unique(y, return_counts=True)[1])
    if n0 == 0 or ties_x == n0 or ties_y == n0:
        return 0.0
    return float(stats.kendalltau(x, y).statistic * math.sqrt((n0 - ties_x) * (n0 - ties_y)) / n0)


def _frame_measure_gap(frame, measure, gap) -> tuple[np.ndarray, np.ndarray]:
    mu, g = _column(frame, measure, "measure"), _column(frame, gap, "gap")
    if mu.size < 2:
        raise ValueError(f"need at least 2 networks (rows), got {mu.size}")
    return mu, g


def _groups(frame: pd.DataFrame, by: list) -> list[np.ndarray]:
    """Positional row indices of each group of rows sharing the values of `by` (all rows when `by` is empty)."""
    if not by:
        return [np.arange(len(frame))]
    codes = frame.groupby(by, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes))[:-1])


def granulated_kendall(frame: pd.DataFrame, measure, gap, axes) -> dict:
    """Granulated Kendall coefficient Ψ of a generalisation measure (Jiang et al. 2020).

    Written here (no library has it). With hyperparameter axes i = 1…m: for each axis i, group the networks
    (rows) by the values of all other axes; within a group the networks differ only in axis i (and in anything
    not named in `axes`, e.g. the seed); τ_g is Kendall's τ between measure and gap in group g, with the paper's
    definition τ(T) = Σ_{t≠t'} sign(μ_t − μ_t') sign(g_t − g_t') / (|T|(|T| − 1)) (τ_a: tied pairs count 0).
    ψ_i = mean of τ_g over the groups with at least 2 distinct values of axis i (others are skipped);
    Ψ = (1/m) Σ_i ψ_i. With several seeds per configuration every row of a group enters its τ (pairs of seeds
    of one configuration included): average the seeds first for the paper's one-network-per-configuration
    setting.

    Meaning: ψ_i is how consistently the measure orders networks that differ in axis i alone, from −1 to 1; Ψ
    averages it over axes, so a measure that only tracks one axis scores low. No interval: a bootstrap over
    networks would cut the grid apart; use `cluster_bootstrap_ci` with a statistic on the frame if needed.

    Args:
        frame: one row per network.
        measure, gap: columns of the measure μ and of the generalisation gap g (finite).
        axes: the hyperparameter columns.

    Returns:
        ``{"psi": {axis: ψ_i}, "Psi": Ψ, "tau": τ_a over all rows, "groups": {axis: groups used}}``; ψ_i is NaN
        for an axis with no usable group, and then Ψ is NaN too.

    >>> frame = pd.DataFrame({"a": [0, 1, 0, 1], "b": [0, 0, 1, 1], "mu": [1, 2, 3, 4], "g": [1, 2, 4, 3]})
    >>> granulated_kendall(frame, "mu", "g", ["a", "b"])["psi"]
    {'a': 0.0, 'b': 1.0}
    """
    axes = _check_axes(frame, axes)
    mu, g = _frame_measure_gap(frame, measure, gap)
    psi, used = {}, {}
    for axis in axes:
        others = [other for other in axes if other != axis]
        taus = [
            _kendall_tau_a(mu[rows], g[rows])
            for rows in _groups(frame, others)
            if frame[axis].iloc[rows].nunique(dropna=False) >= 2
        ]
        psi[axis] = float(np.mean(taus)) if taus else math.nan
        used[axis] = len(taus)
    return {
        "psi": psi,
        "Psi": float(np.mean(list(psi.values()))),
        "tau": _kendall_tau_a(mu, g),
        "groups": used,
    }


def _normalised_cmi(counts: np.ndarray) -> float:
    """I(V_μ; V_g | U) / H(V_g | U) from counts of shape (values of U, 3 values of V_μ, 3 values of V_g)."""
    weights = counts.sum(axis=(1, 2)) / counts.sum()  # p(U = u)
    h_joint = stats.entropy(counts.reshape(len(counts), -1), axis=1)  # H(V_μ, V_g | U = u), nats
    h_mu = stats.entropy(counts.sum(axis=2), axis=1)
    h_g = stats.entropy(counts.sum(axis=1), axis=1)
    conditional_entropy = float(weights @ h_g)
    if conditional_entropy <= 1e-12:
        return math.nan  # the gap's order is fixed by U: there is nothing left for the measure to explain
    mutual = max(float(weights @ (h_mu + h_g - h_joint)), 0.0)  # ≥ 0 exactly; clip rounding
    return mutual / conditional_entropy


def conditional_mutual_information(frame: pd.DataFrame, measure, gap, axes, *, max_condition=2) -> dict:
    """Conditional mutual information score of a generalisation measure (Jiang et al. 2020).

    Written here (no library has it); implemented as follows. Over all ordered pairs (i, j), i ≠ j, of networks
    (rows): V_μ = sign(μ_i − μ_j), V_g = sign(g_i − g_j) (values −1, 0, +1; without ties the paper's ±1), and
    for a set S of hyperparameter axes U_S = (θ_i[S], θ_j[S]), the values of the axes in S of BOTH networks of
    the pair. With the empirical distribution over pairs,

        I(V_μ; V_g | U_S) = Σ_u p(u) Σ_{a,b} p(a, b | u) log[p(a, b | u) / (p(a | u) p(b | u))],
        H(V_g | U_S) = −Σ_u p(u) Σ_b p(b | u) log p(b | u),
        Î_S = I(V_μ; V_g | U_S) / H(V_g | U_S)  (∈ [0, 1]; the log's base cancels),

    for every S with |S| ≤ max_condition (S = ∅ is the plain normalised mutual information), and the score is
    K(μ) = min_S Î_S, the measure's worst case. Î_S = 1 when V_μ determines V_g within every value of U_S; 0
    when they are conditionally independent, e.g. when the measure only copies a hyperparameter in S: once the
    pair's values of that hyperparameter are fixed, the measure's order carries nothing about the gap's.
    The PGDL competition's scoring program differs in two ways: it weights every value combination u equally
    (not by p(u)) and takes the minimum over |S| = 2 only; both can be had from ``per_set``.

    Meaning: a plug-in estimate from the finite population, biased upward by about (cells − 1)/(2 N_u) nats per
    value u with N_u pairs; no interval.

    Args:
        frame: one row per network.
        measure, gap: columns of the measure μ and of the generalisation gap g (finite).
        axes: the hyperparameter columns (values compared exactly).
        max_condition: the largest conditioning set (0 gives only S = ∅).

    Returns:
        ``{"score": K(μ), "worst_set": S attaining it, "per_set": {S (tuple of axes): Î_S}, "n_pairs": ordered
        pairs}``. Î_S is NaN when H(V_g | U_S) = 0 (the pair's values in S fix the gap's order); such sets are
        left out of the minimum.
    """
    axes = _check_axes(frame, axes)
    if (
        isinstance(max_condition, bool)
        or not isinstance(max_condition, (int, np.integer))
        or max_condition < 0
    ):
        raise ValueError(f"max_condition must be a non-negative integer, got {max_condition!r}")
    mu, g = _frame_measure_gap(frame, measure, gap)
    first, second = np.nonzero(~np.eye(mu.size, dtype=bool))  # ordered pairs i ≠ j
    v_mu = np.sign(mu[first] - mu[second]).astype(np.int64) + 1  # 0, 1, 2 for −1, 0, +1
    v_g = np.sign(g[first] - g[second]).astype(np.int64) + 1
    cell = 3 * v_mu + v_g
    per_set = {}
    for size in range(min(int(max_condition), len(axes)) + 1):
        for subset in itertools.combinations(axes, size):
            if subset:
                row_code = frame.groupby(list(subset), sort=False, dropna=False).ngroup().to_numpy()
                pair_code = row_code[first] * (row_code.max() + 1) + row_code[second]
            else:
                pair_code = np.zeros(first.size, dtype=np.int64)
            u = np.unique(pair_code, return_inverse=True)[1]
            counts = np.bincount(9 * u + cell, minlength=9 * (u.max() + 1)).reshape(-1, 3, 3).astype(float)
            per_set[subset] = _normalised_cmi(counts)
    defined = {subset: value for subset, value in per_set.items() if not math.isnan(value)}
    worst = min(defined, key=defined.get) if defined else None
    return {
        "score": defined[worst] if defined else math.nan,
        "worst_set": worst,
        "per_set": per_set,
        "n_pairs": int(first.size),
    }


def robust_sign_error(
    frame: pd.DataFrame,
    measure,
    gap,
    *,
    environment_columns,
    num_test,
    delta=0.05,
    weighting="hard",
    min_ess=1.0,
) -> dict:
    """Sign error of a generalisation measure over coupled networks, per environment type and worst case
    (Dziugaite et al. 2020).

    Written here (no library has it). Pairs: every two rows (networks) whose `environment_columns` differ in
    exactly one column, the axis of the pair (rows of one configuration, e.g. seeds, are paired with every row
    of the other). An environment is a pair of configurations that differ in that one axis. Each pair's sign
    error is ℓ = (1 − sign(μ_i − μ_j) sign(g_i − g_j)) / 2: 0 when the measure orders the two gaps correctly,
    1 when it orders them the wrong way, 1/2 when the measure ties.

    Each pair gets a weight for whether the test set resolves the gap difference. A network's test error on
    n = `num_test` i.i.d. examples (0–1 loss) lies within ε = √(ln(2/δ) / (2n)) of its expectation with
    probability ≥ 1 − δ (two-sided Hoeffding); the training error is the network's own, so the gap carries the
    same ε. ``weighting="hard"``: w = 1 if |g_i − g_j| > 2ε (the two Hoeffding intervals are disjoint, so the
    true gaps are ordered as observed with probability ≥ 1 − 2δ), else 0 and the pair is dropped.
    ``weighting="soft"``: the authors' released code: p = [(1 − 2 exp(−2n (|g_i − g_j|/2)²))₊]², a lower
    bound on the probability that both test errors lie within |g_i − g_j|/2 of their expectations, and
    w = (p − 1/2)₊ (`delta` unused; pairs with w = 0 are dropped).

    Reported: the weighted mean Σ w ℓ / Σ w over all pairs and per axis (environment type), the robust sign
    error = max over axes (the worst environment type), and per environment (the paper's finer environments,
    whose maximum over environments with effective sample size ≥ `min_ess` is ``worst_environment``; the
    authors used 12). Effective sample size: Kish's (Σ w)² / Σ w² (the count of kept pairs for hard weights).

    Meaning: 0 is a measure that always orders the gaps right, 1/2 a coin flip, 1 one that always orders them
    wrong; no interval (the population of pairs is the whole grid).

    Args:
        frame: one row per network.
        measure, gap: columns of the measure μ and the gap g; g must be an error-rate difference in [−1, 1]
            (a fraction, not percent) for the Hoeffding bound.
        environment_columns: the hyperparameter columns (values compared exactly; round floats first).
        num_test: test-set size n behind each gap.
        delta: Hoeffding failure probability per network, in (0, 1) (hard weighting).
        weighting: ``"hard"`` or ``"soft"`` (above).
        min_ess: smallest effective sample size of an environment for ``worst_environment``.

    Returns:
        ``{"mean", "per_axis": {axis: mean ℓ}, "robust": max over axes, "worst_axis", "n_pairs", "n_dropped",
        "n_effective", "n_pairs_per_axis", "n_dropped_per_axis", "n_effective_per_axis", "threshold" (2ε; NaN
        for soft weights), "environments": DataFrame (axis, fixed: values of the other columns, values: the
        pair of values of the axis, sign_error, weight, n_effective, n_pairs), "worst_environment"}``; means
        are NaN where no pair is kept, and ``robust`` is the maximum over the axes that keep a pair.
    """
    axes = _check_axes(frame, environment_columns, "environment_columns")
    mu, g = _frame_measure_gap(frame, measure, gap)
    if np.abs(g).max() > 1:
        raise ValueError(
            f"gap values must be error-rate differences in [-1, 1] (fractions, not percent) for the Hoeffding"
            f" bound, got max |gap| = {np.abs(g).max()}"
        )
    if isinstance(num_test, bool) or not isinstance(num_test, (int, np.integer)) or num_test < 1:
        raise ValueError(f"num_test must be a positive integer (the test-set size), got {num_test!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or not 0 < delta < 1:
        raise ValueError(f"delta must be a probability in (0, 1), got {delta!r}")
    weighting = _check_choice(weighting, WEIGHTINGS, "weighting")
    if (
        isinstance(min_ess, bool)
        or not isinstance(min_ess, (int, float, np.integer, np.floating))
        or min_ess < 0
    ):
        raise ValueError(f"min_ess must be a non-negative number, got {min_ess!r}")

    # Pairs of rows that differ in exactly one column: within each group of rows sharing all other columns,
    # the rows whose value of the axis differs. Values are compared through their factorize codes.
    factorized = [pd.factorize(frame[axis], use_na_sentinel=False) for axis in axes]
    first, second, axis_id, group_id = [], [], [], []
    for k, axis in enumerate(axes):
        values = factorized[k][0]
        for rows in _groups(frame, [other for other in axes if other != axis]):
            i, j = np.triu_indices(rows.size, 1)
            keep = values[rows[i]] != values[rows[j]]
            first.append(rows[i[keep]])
            second.append(rows[j[keep]])
            axis_id.append(np.full(keep.sum(), k))
            group_id.append(np.full(keep.sum(), rows[0]))  # a row of the group: the fixed values
    first, second = np.concatenate(first), np.concatenate(second)
    axis_id, group_id = np.concatenate(axis_id), np.concatenate(group_id)

    difference = np.abs(g[first] - g[second])
    if weighting == "hard":
        threshold = 2 * math.sqrt(math.log(2 / delta) / (2 * num_test))
        weight = (difference > threshold).astype(float)
    else:
        threshold = math.nan
        p = np.clip(1 - 2 * np.exp(-2 * num_test * (difference / 2) ** 2), 0, None) ** 2
        weight = np.clip(p - 0.5, 0, None)
    loss = (1 - np.sign(mu[first] - mu[second]) * np.sign(g[first] - g[second])) / 2

    def summary(w, weighted_loss):
        total, squares = float(w.sum()), float((w**2).sum())
        mean = float(weighted_loss.sum() / total) if total > 0 else math.nan
        return mean, total**2 / squares if squares > 0 else 0.0, int(w.size), int((w == 0).sum())

    per_axis, ess_axis, pairs_axis, dropped_axis = {}, {}, {}, {}
    for k, axis in enumerate(axes):
        on_axis = axis_id == k
        per_axis[axis], ess_axis[axis], pairs_axis[axis], dropped_axis[axis] = summary(
            weight[on_axis], (weight * loss)[on_axis]
        )
    mean, ess, n_pairs, n_dropped = summary(weight, weight * loss)
    kept = {axis: value for axis, value in per_axis.items() if not math.isnan(value)}
    worst_axis = max(kept, key=kept.get) if kept else None

    # An environment: the axis, the fixed values of the other columns (the group) and the unordered pair of
    # the axis's values (by their codes).
    codes = np.stack([codes for codes, _ in factorized])
    code_first, code_second = codes[axis_id, first], codes[axis_id, second]
    pairs = pd.DataFrame(
        {
            "axis": axis_id,
            "group": group_id,
            "value_low": np.minimum(code_first, code_second),
            "value_high": np.maximum(code_first, code_second),
            "weight": weight,
            "weighted_loss": weight * loss,
        }
    )
    rows = []
    for (k, group, value_low, value_high), env in pairs.groupby(["axis", "group", "value_low", "value_high"]):
        env_mean, env_ess, env_pairs, _ = summary(env["weight"].to_numpy(), env["weighted_loss"].to_numpy())
        rows.append(
            {
                "axis": axes[k],
                "fixed": tuple(frame[other].iloc[group] for other in axes if other != axes[k]),
                "values": (factorized[k][1][value_low], factorized[k][1][value_high]),
                "sign_error": env_mean,
                "weight": float(env["weight"].sum()),
                "n_effective": env_ess,
                "n_pairs": env_pairs,
            }
        )
    environments = pd.DataFrame(
        rows, columns=["axis", "fixed", "values", "sign_error", "weight", "n_effective", "n_pairs"]
    )
    eligible = environments.loc[(environments["weight"] > 0) & (environments["n_effective"] >= min_ess)]
    return {
        "mean": mean,
        "per_axis": per_axis,
        "robust": kept[worst_axis] if kept else math.nan,
        "worst_axis": worst_axis,
        "n_pairs": n_pairs,
        "n_dropped": n_dropped,
        "n_effective": ess,
        "n_pairs_per_axis": pairs_axis,
        "n_dropped_per_axis": dropped_axis,
        "n_effective_per_axis": ess_axis,
        "threshold": threshold,
        "environments": environments,
        "worst_environment": float(eligible["sign_error"].max()) if len(eligible) else math.nan,
    }
