"""Statistics for the paper's chapters: bootstrap intervals, rank correlations with intervals, and the
generalisation-measure statistics of Jiang et al. (2020) and Dziugaite et al. (2020).

Everything rests on `scipy.stats` (bootstrap, rank correlations, entropy), `statsmodels` (Holm) and NumPy; the
few pieces none of them has (a cluster bootstrap, Kendall's τ_a, the granulated Kendall coefficient, the
conditional mutual information score and the robust sign error) are written here, each marked where it is.

Small samples. A bootstrap interval from n = 3–5 seeds spans about [min, max] of the sample and covers at
70–85 % where it claims 95 % (the bootstrap distribution of n values is too narrow by a factor (n − 1)/n in
variance and too short-tailed). Below `SMALL_SAMPLE` (10) observations, pairs or clusters, therefore:

- the mean (``np.mean`` / ``np.nanmean``, or ``method="t"``) gets the Student-t interval, exact for normal
  data (`bootstrap_ci`; `paired_difference_ci` on the differences; `ratio_ci` on log ratios, exponentiated,
  or for independent samples Welch's t on the log values, i.e. the ratio of geometric means);
- `cluster_bootstrap_ci` of the mean gets the t-interval over the cluster means (the mean of cluster means);
- any other statistic (median, correlation, a statistic of a frame) gets NaN bounds and a ``method`` saying
  why, so a verdict built on it is "not testable here";

unless the caller passes ``allow_small=True`` (then the bootstrap as for large samples). The ``method`` field
of every `Interval` names what was done, and its ``estimate`` is always the estimand of that interval.

Every interval comes back as an `Interval` (estimate, bounds, level, number of observations or clusters, and
the method), so a chapter can glue it (``format_estimate(interval)``) and decide a claim from it
(`landscape.paper.verdicts.verdict_from_interval`). All randomness goes through an explicit integer ``seed``
(``numpy.random.default_rng(seed)``): the same seed gives the same interval.

References:
    Student (1908). The probable error of a mean. Biometrika 6(1). Welch, B. L. (1947). The generalization of
        "Student's" problem when several different population variances are involved. Biometrika 34.
    Efron, B. (1987). Better bootstrap confidence intervals. JASA 82(397). (BCa)
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application, §3.8 (resampling clusters).
    Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be zero. Stat. Appl. Genet. Mol. Biol.
        9(1).
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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from landscape.paper.glue import format_estimate

__all__ = [
    "LEVEL",
    "SMALL_SAMPLE",
    "GroupMeansCorrelation",
    "Interval",
    "bootstrap_ci",
    "cluster_bootstrap_ci",
    "concordance_index",
    "conditional_mutual_information",
    "granulated_kendall",
    "holm",
    "paired_difference_ci",
    "partial_rank_correlation",
    "rank_correlation",
    "rank_correlation_of_means",
    "rank_correlation_test",
    "ratio_ci",
    "robust_sign_error",
    "seed_interval",
]

BOOTSTRAP_METHODS = ("BCa", "percentile", "basic")  # scipy.stats.bootstrap's methods
INTERVAL_METHODS = (*BOOTSTRAP_METHODS, "t")  # bootstrap_ci: scipy's bootstrap or the Student-t interval
ALTERNATIVES = ("two-sided", "greater", "less")

LEVEL = (
    0.95  # the confidence level of every interval the paper reports (a claim's parts: verdicts.family_level)
)
SMALL_SAMPLE = 10
"""Fewest observations (pairs, clusters) for a bootstrap interval. Below it the mean gets a Student-t interval
and other statistics NaN bounds (unless ``allow_small=True``): at n = 3–5 a bootstrap interval covers 70–85 %
at nominal 95 %. The threshold is a compromise, not a guarantee: at n = 10 the percentile and BCa intervals of
the mean of normal data still cover about 90 % (400 simulated samples), so a verdict that rests on a bootstrap
interval from 10–20 observations should be read as approximate; the t-interval is exact for normal data at
any n and can be asked for with ``method="t"``."""

T_METHOD = "Student t"
TOO_FEW = f"too few observations for a bootstrap (n < {SMALL_SAMPLE})"
TOO_FEW_CLUSTERS = f"too few clusters for a cluster bootstrap (G < {SMALL_SAMPLE})"
MEANS = (np.mean, np.nanmean)  # the statistics recognised as "the mean" (by identity)
RANK_METHODS = ("spearman", "kendall")
PARTIAL_METHODS = ("spearman", "pearson")
WEIGHTINGS = ("hard", "soft")


@dataclass(frozen=True)
class Interval:
    """An estimate with a confidence interval.

    Attributes:
        estimate: the statistic on the data as observed.
        low, high: the interval's bounds; equal to the estimate when the data are constant, NaN when the interval
            is undefined (fewer than 2 observations or clusters, a statistic other than the mean of fewer than
            `SMALL_SAMPLE` observations or clusters, or a resample on which the statistic is undefined).
        level: the interval's nominal coverage, e.g. 0.95.
        n: the number of observations (pairs for paired data, clusters for the cluster bootstrap).
        method: how the interval was made, e.g. ``"bootstrap BCa"``, ``"cluster bootstrap percentile"``,
            ``"Student t"`` or why there is none (``"too few observations for a bootstrap (n < 10)"``).

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


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _is_mean(statistic) -> bool:
    return any(statistic is mean for mean in MEANS)


def _t_bounds(values: np.ndarray, level: float) -> tuple[float, float]:
    """Student-t interval of the mean: x̄ ± t_{(1+level)/2, n−1} s/√n (NaN for n < 2; x̄ for constant data)."""
    if values.size < 2:
        return math.nan, math.nan
    mean = float(np.mean(values))
    if np.all(values == values[0]):
        return mean, mean
    half = float(stats.t.ppf((1 + level) / 2, values.size - 1)) * float(np.std(values, ddof=1))
    half /= math.sqrt(values.size)
    return mean - half, mean + half


def _welch_bounds(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float]:
    """Welch's interval of mean(a) − mean(b): d ± t_{(1+level)/2, ν} √(s_a²/n_a + s_b²/n_b), with the
    Welch–Satterthwaite degrees of freedom ν = (v_a + v_b)² / (v_a²/(n_a − 1) + v_b²/(n_b − 1)), v = s²/n."""
    if min(a.size, b.size) < 2:
        return math.nan, math.nan
    difference = float(np.mean(a) - np.mean(b))
    va = 0.0 if np.all(a == a[0]) else float(np.var(a, ddof=1)) / a.size
    vb = 0.0 if np.all(b == b[0]) else float(np.var(b, ddof=1)) / b.size
    if va + vb == 0:
        return difference, difference
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf((1 + level) / 2, df)) * math.sqrt(va + vb)
    return difference - half, difference + half


def seed_interval(values, *, level: float = LEVEL, fraction: bool = False) -> Interval:
    """The central value of a few runs (seeds) with a Student-t interval that respects the quantity's sign: what
    figures and tables show in place of "mean ± sd".

    All values positive: the geometric mean exp(m) with exp(m ± t s/√n), m and s the mean and standard deviation
    of the logarithms (exact for log-normal data; the interval never reaches zero, where mean ± sd of a skewed
    positive quantity often does). Otherwise: the mean with m ± t s/√n. t is the (1 + level)/2 quantile of
    Student's t with n − 1 degrees of freedom. One value: the value, NaN bounds. Missing values are an error.

    With `fraction` (values in [0, 1], e.g. a share or an overlap): the interval on the logits log(x/(1 − x))
    mapped back, so it stays inside (0, 1); values are clipped to [1e-12, 1 − 1e-12] first.

    Meaning: an interval that covers the population's geometric mean (mean; inverse-logit of the mean logit)
    in about `level` of repeated experiments when the logarithms (values; logits) are roughly normal and the
    runs independent.

    >>> print(seed_interval([1.0, 2.0, 4.0]))
    2 [0.36, 11]
    >>> seed_interval([-1.0, 0.0, 4.0]).method
    'mean, Student t'
    >>> print(seed_interval([0.8, 0.9, 0.95], fraction=True))  # never above 1
    0.898 [0.56, 0.98]
    """
    level = _check_level(level)
    x = _as_1d(values, "values")
    if x.size == 0:
        raise ValueError("values is empty: no run to summarise")
    if fraction:
        if np.any((x < 0) | (x > 1)):
            raise ValueError(f"fraction=True needs values in [0, 1], got {x.min():g} to {x.max():g}")
        clipped = np.clip(x, 1e-12, 1 - 1e-12)
        y = np.log(clipped / (1 - clipped))
        m = float(y.mean())
        low, high = _t_bounds(y, level)
        m, low, high = (1 / (1 + math.exp(-v)) if math.isfinite(v) else v for v in (m, low, high))
        return Interval(
            m, low, high, level, int(x.size), "inverse-logit of the mean logit, Student t on logits"
        )
    positive = bool(np.all(x > 0))
    y = np.log(x) if positive else x
    method = "geometric mean, Student t on logs" if positive else "mean, Student t"
    m = float(y.mean())
    low, high = _t_bounds(y, level)
    if positive:
        m, low, high = math.exp(m), math.exp(low), math.exp(high)
    return Interval(m, low, high, level, int(x.size), method)


def bootstrap_ci(
    values,
    statistic: Callable = np.mean,
    *,
    level=0.95,
    n_resamples=2000,
    method="BCa",
    seed=0,
    allow_small=False,
) -> Interval:
    """Confidence interval of a statistic of one sample: `scipy.stats.bootstrap`, or Student's t for the mean
    of a small sample.

    The estimate is θ̂ = statistic(values). The bootstrap draws `n_resamples` samples of size n with replacement,
    θ*_b = statistic(resample_b); the interval is, for ``"percentile"``, the (1 ± level)/2 quantiles of θ*; for
    ``"basic"``, 2θ̂ minus those quantiles; for ``"BCa"``, the quantiles Φ(z₀ + (z₀ + z_α)/(1 − a(z₀ + z_α)))
    corrected for the bias z₀ = Φ⁻¹(#{θ* < θ̂}/B) and the acceleration a (from the jackknife) (Efron 1987).
    ``method="t"``, and the mean of fewer than `SMALL_SAMPLE` values whatever `method` says: Student's interval
    x̄ ± t_{(1+level)/2, n−1} s/√n (s the sample standard deviation), exact for normal data and the reason the
    bootstrap is not used there: at n = 3 a bootstrap interval spans about [min, max] and covers ~75 %.

    Meaning: an interval that would cover the population value of the statistic in about `level` of repeated
    experiments (approximately; BCa errs by O(1/n), the percentile interval by O(1/√n)). It describes the
    sampling spread of the statistic over these n independent observations: runs that are not independent
    (several runs of one configuration) need `cluster_bootstrap_ci`.

    Small samples (n < `SMALL_SAMPLE`): the mean (``statistic`` is ``np.mean`` or ``np.nanmean`` itself — a
    lambda computing a mean counts as another statistic) gets the t-interval, ``method == "Student t"``; any
    other statistic gets NaN bounds, ``method == "too few observations for a bootstrap (n < 10)"``, so a
    verdict on it is not testable. ``allow_small=True`` bootstraps anyway (with the `method` asked for).

    Args:
        values: the sample (1-D, finite; NaN values raise — drop missing runs first if that is what they are).
        statistic: a function of a 1-D array returning a number; one accepting ``axis`` (``np.mean``,
            ``np.median``) is vectorised by scipy.
        level: the interval's nominal coverage, in (0, 1).
        n_resamples: bootstrap resamples.
        method: ``"BCa"``, ``"percentile"``, ``"basic"`` (bootstrap) or ``"t"`` (Student t; the statistic must
            be the mean).
        seed: integer seed of ``numpy.random.default_rng``.
        allow_small: bootstrap below `SMALL_SAMPLE` observations too (knowing it undercovers).

    Returns:
        An `Interval` whose ``method`` is ``"bootstrap <method>"``, ``"Student t"`` or the too-few text: with
        n < 2, bounds NaN (estimate NaN for n = 0); with all values equal, low = high = estimate.

    >>> bootstrap_ci([2.0, 2.0, 2.0]).high
    2.0
    >>> bootstrap_ci([1.0, 2.0, 3.0]).method, round(bootstrap_ci([1.0, 2.0, 3.0]).high, 4)  # 2 + t·1/√3
    ('Student t', 4.4841)
    >>> bootstrap_ci([1.0, 2.0, 3.0, 5.0], np.median).method
    'too few observations for a bootstrap (n < 10)'
    """
    values = _as_1d(values, "values")
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    method = _check_choice(method, INTERVAL_METHODS, "method")
    allow_small = _check_flag(allow_small, "allow_small")
    is_mean = _is_mean(statistic)
    if method == "t" and not is_mean:
        raise ValueError(
            f"method='t' is the Student-t interval of the mean: statistic must be np.mean (or np.nanmean),"
            f" got {getattr(statistic, '__name__', statistic)!r}"
        )
    n = int(values.size)
    small = n < SMALL_SAMPLE and not allow_small
    if method == "t" or (small and is_mean):
        label = T_METHOD
    elif small:
        label = TOO_FEW
    else:
        label = f"bootstrap {method}"
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, level, 0, label)
    estimate = float(statistic(values))
    if label == T_METHOD:
        low, high = _t_bounds(values, level)
        return Interval(estimate, low, high, level, n, label)
    if label == TOO_FEW or n < 2:
        return Interval(estimate, math.nan, math.nan, level, n, label)
    if np.all(values == values[0]):
        return Interval(estimate, estimate, estimate, level, n, label)
    low, high = _scipy_bootstrap(
        (values,), statistic, paired=False, vectorized=None, level=level, n_resamples=n_resamples,
        method=method, seed=seed,
    )  # fmt: skip
    return Interval(estimate, low, high, level, n, label)


def paired_difference_ci(
    a, b, statistic: Callable = np.mean, *, level=0.95, n_resamples=2000, seed=0, allow_small=False
) -> Interval:
    """Interval of statistic(a − b) for paired samples (a_i and b_i share a seed): BCa bootstrap of the
    differences, or the paired Student-t interval for the mean of fewer than `SMALL_SAMPLE` pairs.

    The differences d_i = a_i − b_i are treated as one sample (`bootstrap_ci` with ``method="BCa"``), so the
    pairing removes the seed-to-seed variation the two conditions share. With the mean, statistic(a − b) =
    mean(a) − mean(b); with other statistics (the median) it is the statistic of the differences, not the
    difference of the statistics. Below `SMALL_SAMPLE` pairs: the mean gets d̄ ± t_{(1+level)/2, n−1} s_d/√n
    (``method == "Student t"``), other statistics NaN bounds, unless ``allow_small=True``.

    Args:
        a, b: paired samples of equal length (finite values).
        statistic, level, n_resamples, seed, allow_small: as in `bootstrap_ci`.

    Returns:
        An `Interval` with n = number of pairs; degenerate cases as in `bootstrap_ci`.

    >>> paired_difference_ci([3.0, 4.0, 5.0], [2.0, 3.0, 4.0]).low
    1.0
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    _same_length(a, b, "a and b (paired samples)")
    return bootstrap_ci(
        a - b,
        statistic,
        level=level,
        n_resamples=n_resamples,
        method="BCa",
        seed=seed,
        allow_small=allow_small,
    )


def ratio_ci(a, b, *, level=0.95, n_resamples=2000, seed=0, paired=True, allow_small=False) -> Interval:
    """Interval of a ratio of a to b; which ratio (the estimand) is named in the returned ``method``.

    - ``paired=True`` (a_i, b_i share a seed): the geometric mean of the paired ratios,
      R = exp(mean_i log(a_i / b_i)) = (∏ a_i/b_i)^(1/n), whatever n. The interval is exp of an interval of the
      mean of log(a_i/b_i): with n ≥ `SMALL_SAMPLE` pairs its BCa bootstrap interval (BCa and percentile
      intervals respect monotone transformations, so this is the BCa interval of R itself), with fewer pairs
      the Student-t interval of the log ratios, exponentiated. Needs a_i > 0 and b_i > 0.
    - ``paired=False`` (independent samples), ``n_a`` and ``n_b`` ≥ `SMALL_SAMPLE` (or ``allow_small=True``):
      the ratio of arithmetic means, R = mean(a) / mean(b), with scipy's two-sample BCa bootstrap (a and b
      resampled independently). Needs b_i > 0, so that every resample's denominator is positive.
    - ``paired=False`` with fewer than `SMALL_SAMPLE` values in a or in b: the ratio of GEOMETRIC means,
      R = exp(mean log a − mean log b) = gmean(a) / gmean(b) — a different estimand from the large-sample
      one (equal to it only when a and b have the same spread on the log scale), chosen because it has an
      interval that holds at 3–5 values: Welch's t-interval of the difference of mean logs, exponentiated.
      Needs a_i > 0 and b_i > 0. Near exact for log-normal data; Welch's approximation undercovers a little
      in the worst case of 3 values against more with a larger spread in the 3 (≈ 93.6 % at nominal 95 % for
      3 against 5 values and 3× the spread on the log scale).

    The ``estimate`` is always the estimand of the interval returned (the geometric-mean ratio where the
    interval is for it), and ``method`` says which: ``"... (geometric mean of paired ratios)"``, ``"... (ratio
    of means)"`` or ``"... (ratio of geometric means)"``.

    Meaning: an approximate `level` interval for the population ratio (exact for log-normal data on the t
    paths); 1 is the null value ("no change").

    Args:
        a, b: the numerator and denominator samples (finite; equal lengths when paired).
        level, n_resamples, seed: as in `bootstrap_ci`.
        paired: which ratio (above).
        allow_small: bootstrap below `SMALL_SAMPLE` too (paired: BCa on the log ratios; unpaired: the ratio of
            means), knowing it undercovers.

    Returns:
        An `Interval` with n = number of pairs (paired) or len(a) + len(b) (unpaired); NaN bounds when a sample
        has fewer than 2 values, low = high = estimate when the ratios (or both samples) are constant.

    >>> ratio_ci([2.0, 4.0, 8.0], [1.0, 2.0, 4.0]).estimate
    2.0
    >>> ratio_ci([2.0, 4.0, 8.0], [1.0, 1.0, 1.0], paired=False).method
    'Welch t on log values (ratio of geometric means)'
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    allow_small = _check_flag(allow_small, "allow_small")
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
            np.log(a / b), np.mean, level=level, n_resamples=n_resamples, method="BCa", seed=seed,
            allow_small=allow_small,
        )  # fmt: skip
        how = "Student t on log ratios" if logs.method == T_METHOD else logs.method
        return Interval(
            math.exp(logs.estimate), math.exp(logs.low), math.exp(logs.high), level, logs.n,
            f"{how} (geometric mean of paired ratios)",
        )  # fmt: skip
    if b.size and b.min() <= 0:
        i = int(np.argmin(b))
        raise ValueError(f"unpaired ratio_ci divides by mean(b) and needs positive b, got b[{i}] = {b[i]}")
    n = int(a.size + b.size)
    if min(a.size, b.size) < SMALL_SAMPLE and not allow_small:
        label = "Welch t on log values (ratio of geometric means)"
        if a.size and a.min() <= 0:
            i = int(np.argmin(a))
            raise ValueError(
                f"unpaired ratio_ci with fewer than {SMALL_SAMPLE} values per sample takes the ratio of"
                f" geometric means and needs positive a, got a[{i}] = {a[i]}"
            )
        if a.size == 0 or b.size == 0:
            return Interval(math.nan, math.nan, math.nan, level, n, label)
        log_a, log_b = np.log(a), np.log(b)
        low, high = _welch_bounds(log_a, log_b, level)
        estimate = math.exp(float(np.mean(log_a) - np.mean(log_b)))
        return Interval(estimate, math.exp(low), math.exp(high), level, n, label)
    label = "bootstrap BCa (ratio of means)"
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
    allow_small=False,
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

    Few clusters (G < `SMALL_SAMPLE`), where the percentile interval is about [min, max] of the cluster
    statistics and undercovers: for the mean of a `value` column (``statistic`` is ``np.mean``), the
    Student-t interval over the G cluster means, m̄ ± t_{(1+level)/2, G−1} s_m/√G, with the estimate the mean
    of the cluster means (each cluster weighted equally; the pooled mean of all rows when the clusters have
    equal sizes), ``method == "Student t over cluster means"``; for any other statistic, NaN bounds and
    ``method == "too few clusters for a cluster bootstrap (G < 10)"``. ``allow_small=True`` bootstraps anyway.

    Args:
        frame: the rows.
        value: column whose values `statistic` receives as a 1-D float array; or None, and `statistic` receives
            the resampled DataFrame (its index keeps the original labels, repeated when a cluster is drawn
            twice), e.g. ``lambda d: d["x"].corr(d["y"], method="spearman")``.
        cluster: column of cluster labels.
        statistic: a function of the pooled rows returning a number.
        level, n_resamples, seed: as in `bootstrap_ci`.
        allow_small: bootstrap clusters below `SMALL_SAMPLE` clusters too.

    Returns:
        An `Interval` with n = number of clusters; NaN bounds with fewer than 2 clusters or when the statistic
        is NaN on some resample.
    """
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    allow_small = _check_flag(allow_small, "allow_small")
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if cluster not in frame.columns:
        raise ValueError(f"cluster column {cluster!r} is not in the frame (columns: {list(frame.columns)})")
    codes, n_clusters = _labels_to_codes(frame[cluster].to_numpy(), f"frame[{cluster!r}]")
    small = n_clusters < SMALL_SAMPLE and not allow_small
    t_path = small and value is not None and _is_mean(statistic)
    label = (
        "Student t over cluster means"
        if t_path
        else TOO_FEW_CLUSTERS
        if small
        else "cluster bootstrap percentile"
    )
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

    if t_path:
        cluster_means = np.bincount(codes, weights=values) / np.bincount(codes)
        low, high = _t_bounds(cluster_means, level)
        return Interval(float(np.mean(cluster_means)), low, high, level, n_clusters, label)
    if small:
        return Interval(estimate, math.nan, math.nan, level, n_clusters, label)
    low, high = _cluster_percentile(
        codes, n_clusters, statistic_of_rows, level=level, n_resamples=n_resamples, seed=seed
    )
    return Interval(estimate, low, high, level, n_clusters, label)


def concordance_index(time, event, risk) -> float:
    """Harrell's concordance index C for right-censored times: how often a higher `risk` comes with an earlier event.

    A pair (i, j) is comparable when the earlier of the two times is an event (``event[i]`` and
    ``time[i] < time[j]``; a censored time only says the event came later); it is concordant when
    ``risk[i] > risk[j]`` and counts ½ when the risks tie. C = (concordant + ½ ties) / comparable: 1 for a perfect
    ordering, 0.5 for a random one, NaN with no comparable pair (Harrell et al. 1982). Pairs with equal times are
    not compared. O(n²) pairs in NumPy; written here because lifelines (which has it) pins pandas < 3 and
    scikit-survival would bring two convex solvers for this one function.

    >>> concordance_index([1, 2, 3], [True, True, False], [3.0, 2.0, 1.0])
    1.0
    >>> concordance_index([1, 2, 3], [True, True, True], [1.0, 2.0, 3.0])
    0.0
    """
    time, risk = _as_1d(time, "time"), _as_1d(risk, "risk")
    event = np.asarray(event, dtype=bool).ravel()
    _same_length(time, risk, "time and risk")
    _same_length(time, event.astype(float), "time and event")
    earlier = (time[:, None] < time[None, :]) & event[:, None]
    comparable = int(earlier.sum())
    if comparable == 0:
        return math.nan
    concordant = (earlier & (risk[:, None] > risk[None, :])).sum()
    ties = (earlier & (risk[:, None] == risk[None, :])).sum()
    return float((concordant + 0.5 * ties) / comparable)


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


def _clip_correlation(low: float, high: float) -> tuple[float, float]:
    """Bounds of a correlation's interval clipped to [−1, 1] (resampled correlations can exceed it by rounding)."""
    return (
        (min(max(low, -1.0), 1.0), min(max(high, -1.0), 1.0)) if not math.isnan(low + high) else (low, high)
    )


def rank_correlation(
    x, y, *, method="spearman", level=0.95, n_resamples=2000, seed=0, clusters=None, allow_small=False
) -> Interval:
    """Spearman's ρ or Kendall's τ_b with a bootstrap interval over pairs (or over clusters of pairs).

    ρ = Pearson correlation of the average ranks of x and y (`scipy.stats.spearmanr`);
    τ_b = (n_c − n_d) / √((n₀ − n_x)(n₀ − n_y)), n₀ = n(n−1)/2, n_c / n_d concordant / discordant pairs,
    n_x / n_y pairs tied in x / y (`scipy.stats.kendalltau`).

    The interval: without `clusters`, the BCa interval of `scipy.stats.bootstrap` over resampled (x_i, y_i)
    pairs; with `clusters` (one label per pair, e.g. the configuration a run belongs to), the cluster bootstrap
    percentile interval (`cluster_bootstrap_ci`), for pairs that are not independent. An approximate `level`
    interval for the population correlation; for a p-value of "no association" use `rank_correlation_test`.

    With fewer than `SMALL_SAMPLE` pairs (or clusters) the bounds are NaN, with ``method`` saying so (``"too
    few observations for a bootstrap (n < 10)"``, ``"too few clusters for a cluster bootstrap (G < 10)"``):
    a bootstrap of a correlation over 2–9 units undercovers badly, and a verdict on it is then not testable.
    ``allow_small=True`` bootstraps anyway. For the correlation between a few groups' means, see
    `rank_correlation_of_means` (its permutation p-value is exact however few the groups).

    Args:
        x, y: paired observations (finite, at least 3 pairs).
        method: ``"spearman"`` or ``"kendall"``.
        level, n_resamples, seed: as in `bootstrap_ci`.
        clusters: optional cluster label per pair.
        allow_small: bootstrap below `SMALL_SAMPLE` pairs or clusters too.

    Returns:
        An `Interval` with n = pairs (or clusters). NaN estimate and bounds when x or y is constant; NaN bounds
        when some resample is constant in x or y (possible with heavily tied data and few pairs).
    """
    method = _check_choice(method, RANK_METHODS, "method")
    x, y = _paired_xy(x, y)
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    allow_small = _check_flag(allow_small, "allow_small")
    estimate = _rank_correlation_value(x, y, method)
    if clusters is not None:
        codes, n_clusters = _labels_to_codes(clusters, "clusters")
        if codes.size != x.size:
            raise ValueError(f"clusters must have one label per pair ({x.size}), got {codes.size}")
        if n_clusters < SMALL_SAMPLE and not allow_small:
            return Interval(estimate, math.nan, math.nan, level, n_clusters, TOO_FEW_CLUSTERS)
        label = "cluster bootstrap percentile"
        if math.isnan(estimate):
            return Interval(math.nan, math.nan, math.nan, level, n_clusters, label)
        low, high = _cluster_percentile(
            codes, n_clusters, lambda rows: _rank_correlation_value(x[rows], y[rows], method),
            level=level, n_resamples=n_resamples, seed=seed,
        )  # fmt: skip
        return Interval(estimate, *_clip_correlation(low, high), level, n_clusters, label)
    if x.size < SMALL_SAMPLE and not allow_small:
        return Interval(estimate, math.nan, math.nan, level, int(x.size), TOO_FEW)
    label = "bootstrap BCa"
    if math.isnan(estimate):
        return Interval(math.nan, math.nan, math.nan, level, int(x.size), label)
    low, high = _scipy_bootstrap(
        (x, y), _spearman_along if method == "spearman" else _kendall_along, paired=True, vectorized=True,
        level=level, n_resamples=n_resamples, method="BCa", seed=seed,
    )  # fmt: skip
    return Interval(estimate, *_clip_correlation(low, high), level, int(x.size), label)


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


def _rank_correlation_rows(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """Spearman ρ or Kendall τ_b of each row of x against the same row of y (2-D arrays of equal shape).

    Vectorised by hand over rows (resamples, permutations): ρ = Pearson r of the average ranks; τ_b = Σ sx sy /
    √(Σ sx² Σ sy²) over the pairs i < j with sx = sign(x_i − x_j), sy = sign(y_i − y_j). NaN for a row that is
    constant in x or y.
    """
    if method == "spearman":
        rx = stats.rankdata(x, axis=1)
        ry = stats.rankdata(y, axis=1)
        rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
        numerator, sx, sy = (rx * ry).sum(axis=1), (rx**2).sum(axis=1), (ry**2).sum(axis=1)
    else:
        i, j = np.triu_indices(x.shape[1], 1)
        dx, dy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
        numerator, sx, sy = (dx * dy).sum(axis=1), (dx**2).sum(axis=1), (dy**2).sum(axis=1)
    out = np.full(x.shape[0], math.nan)
    defined = (sx > 0) & (sy > 0)
    out[defined] = numerator[defined] / np.sqrt(sx[defined] * sy[defined])
    return out


@dataclass(frozen=True)
class GroupMeansCorrelation:
    """A rank correlation between groups' means, with its interval and permutation p-value
    (`rank_correlation_of_means`).

    Attributes:
        interval: the correlation of the group means and its stratified-bootstrap interval (n = groups).
        pvalue: the permutation p-value of "no association" over the groups (`alternative`).
        alternative: ``"two-sided"``, ``"greater"`` or ``"less"``.
        exact: True when every one of the k! orderings was enumerated, False for a Monte Carlo p-value.
        min_pvalue: the smallest p-value these group means could give (the most extreme ordering); with k = 4
            groups 1/24 one-sided, 1/12 two-sided.
        means: one row per group: the group label, the means of x and y, and the group's size n.

    ``estimate``, ``low``, ``high``, ``level``, ``n`` and ``method`` are the interval's, so the object can be
    glued (``format_estimate``) and decided on (``verdict_from_interval(r.low, r.high, ...)``) like an
    `Interval`.
    """

    interval: Interval
    pvalue: float
    alternative: str
    exact: bool
    min_pvalue: float
    means: pd.DataFrame = field(compare=False, repr=False)

    estimate = property(lambda self: self.interval.estimate)
    low = property(lambda self: self.interval.low)
    high = property(lambda self: self.interval.high)
    level = property(lambda self: self.interval.level)
    n = property(lambda self: self.interval.n)
    method = property(lambda self: self.interval.method)

    def __str__(self) -> str:
        return format_estimate(self.interval)


def _permutation_pvalue(
    statistic: float, distribution: np.ndarray, alternative: str, *, exact: bool
) -> float:
    """p-value of `statistic` against a permutation distribution (which holds the identity when exact)."""
    tolerance = 1e-12  # correlations lie in [−1, 1]: equal up to rounding counts as "as extreme"
    if exact:
        greater = float(np.mean(distribution >= statistic - tolerance))
        less = float(np.mean(distribution <= statistic + tolerance))
    else:  # Monte Carlo: count the observed ordering too (Phipson & Smyth 2010), so p > 0
        size = distribution.size + 1
        greater = (1 + int(np.sum(distribution >= statistic - tolerance))) / size
        less = (1 + int(np.sum(distribution <= statistic + tolerance))) / size
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return min(1.0, 2 * min(greater, less))


def rank_correlation_of_means(
    frame: pd.DataFrame,
    x,
    y,
    group,
    *,
    method="spearman",
    level=0.95,
    n_resamples=2000,
    seed=0,
    alternative="two-sided",
    max_permutations=40320,
) -> GroupMeansCorrelation:
    """Spearman's ρ (or Kendall's τ_b) between the per-group means of x and y, with a stratified-bootstrap
    interval and a permutation p-value over the groups.

    The k groups (e.g. architectures) each hold several observations (e.g. seeds): x̄_g and ȳ_g are the group
    means (x may be a property of the group, constant within it, such as a width or a dimension), and the
    estimate is r = ρ(x̄, ȳ) (or τ_b) over the k groups.

    Interval: stratified bootstrap. Each resample draws, within every group, as many rows as the group has,
    with replacement (a row's x and y together), recomputes the k group means and r*; the interval is the
    (1 ± level)/2 percentile interval of r*, widened to contain r where the discrete distribution of r* leaves
    it out (with few groups r* takes few values). Written here: scipy's bootstrap resamples one sample, not
    within strata.

    p-value: exact permutation test over the groups — r of x̄ against every one of the k! orderings of ȳ
    (``scipy.stats.permutation_test``'s "pairings" null, enumerated here), p = the fraction of orderings whose
    r is at least as extreme (two-sided: twice the smaller one-sided p, at most 1). Above `max_permutations`
    orderings (k ≥ 9 by default), `max_permutations` random orderings (seeded) give a Monte Carlo p-value.

    Meaning, and its limits:
    - The groups are these k groups, not a sample from a population of groups: the interval reflects only the
      within-group noise of the means (how much r would move with other seeds for these same groups), not how
      r would vary over other groups one might have chosen. A tight interval at r = 1 from 4 groups says the
      4 means are ordered reliably, nothing about a fifth group.
    - With few groups the attainable p-values are coarse: without ties the smallest one-sided p is 1/k!, the
      smallest two-sided 2/k! — for k = 4, 1/24 ≈ 0.042 and 1/12 ≈ 0.083, so no two-sided test at 5 % can
      reject with 4 groups (k = 5: 1/120 and 1/60). ``min_pvalue`` reports it for the data at hand.
    - With few observations per group the bootstrap understates each mean's spread (by a factor (m − 1)/m in
      variance for m observations).

    Args:
        frame: one row per observation.
        x, y: columns of the two variables (finite).
        group: column of group labels (at least 3 groups).
        method: ``"spearman"`` or ``"kendall"`` (τ_b).
        level, n_resamples, seed: as in `bootstrap_ci` (the seed also drives a Monte Carlo p-value).
        alternative: ``"two-sided"``, ``"greater"`` (r > 0) or ``"less"``.
        max_permutations: most orderings enumerated for the exact p-value.

    Returns:
        A `GroupMeansCorrelation` (interval with n = k groups). NaN estimate, bounds and p-value when the means
        of x or of y are all equal; NaN bounds when a group has a single observation (no within-group spread to
        resample) or r* is undefined on some resample.

    >>> frame = pd.DataFrame({"g": list("aabbcc"), "x": [1, 1, 2, 2, 3, 3], "y": [0.0, 1, 2, 3, 4, 5]})
    >>> r = rank_correlation_of_means(frame, "x", "y", "g")
    >>> r.estimate, r.low, r.high, r.pvalue, r.exact  # 3 groups: 3! = 6 orderings, 2 as extreme as r = 1
    (1.0, 1.0, 1.0, 0.3333333333333333, True)
    """
    method = _check_choice(method, RANK_METHODS, "method")
    alternative = _check_choice(alternative, ALTERNATIVES, "alternative")
    level, seed = _check_level(level), _check_seed(seed)
    n_resamples = _check_n_resamples(n_resamples)
    if (
        isinstance(max_permutations, bool)
        or not isinstance(max_permutations, (int, np.integer))
        or max_permutations < 1
    ):
        raise ValueError(f"max_permutations must be a positive integer, got {max_permutations!r}")
    xs, ys = _column(frame, x, "x"), _column(frame, y, "y")
    if group not in frame.columns:
        raise ValueError(f"group column {group!r} is not in the frame (columns: {list(frame.columns)})")
    _labels_to_codes(frame[group].to_numpy(), f"frame[{group!r}]")  # raises on missing labels
    codes, labels = pd.factorize(frame[group])
    k = len(labels)
    if k < 3:
        raise ValueError(f"need at least 3 groups for a correlation of group means, got {k}")
    counts = np.bincount(codes, minlength=k)
    mean_x = np.bincount(codes, weights=xs, minlength=k) / counts
    mean_y = np.bincount(codes, weights=ys, minlength=k) / counts
    means = pd.DataFrame({group: labels, x: mean_x, y: mean_y, "n": counts})
    estimate = float(_rank_correlation_rows(mean_x[None], mean_y[None], method)[0])
    label = f"stratified bootstrap percentile (within {k} groups)"
    if math.isnan(estimate):
        return GroupMeansCorrelation(
            Interval(math.nan, math.nan, math.nan, level, k, label),
            math.nan,
            alternative,
            True,
            math.nan,
            means,
        )

    # Permutation p-value over the groups: every ordering of the y-means against the x-means.
    exact = math.factorial(k) <= max_permutations
    rng = np.random.default_rng(seed)
    if exact:
        orders = np.array(list(itertools.permutations(range(k))))
    else:
        orders = rng.permuted(np.tile(np.arange(k), (int(max_permutations), 1)), axis=1)
    null = _rank_correlation_rows(np.broadcast_to(mean_x, orders.shape), mean_y[orders], method)
    pvalue = _permutation_pvalue(estimate, null, alternative, exact=exact)
    extremes = [float(np.nanmax(null)), float(np.nanmin(null))]
    min_pvalue = min(_permutation_pvalue(e, null, alternative, exact=exact) for e in extremes)

    # Stratified bootstrap: rows resampled within each group, the group means recomputed.
    low = high = math.nan
    if counts.min() >= 2:
        order = np.argsort(codes, kind="stable")
        members = np.split(order, np.cumsum(counts)[:-1])
        boot_x, boot_y = np.empty((n_resamples, k)), np.empty((n_resamples, k))
        for g, rows in enumerate(members):
            picks = rows[rng.integers(rows.size, size=(n_resamples, rows.size))]
            boot_x[:, g], boot_y[:, g] = xs[picks].mean(axis=1), ys[picks].mean(axis=1)
        distribution = _rank_correlation_rows(boot_x, boot_y, method)
        if not np.isnan(distribution).any():
            low, high = (float(q) for q in np.quantile(distribution, [(1 - level) / 2, (1 + level) / 2]))
            low, high = min(low, estimate), max(high, estimate)
    interval = Interval(estimate, low, high, level, k, label)
    return GroupMeansCorrelation(interval, pvalue, alternative, exact, min_pvalue, means)


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
    x, y, covariates, *, method="spearman", level=0.95, n_resamples=2000, seed=0, allow_small=False
) -> Interval:
    """Partial Spearman (or Pearson) correlation of x and y given covariates, with a BCa bootstrap interval.

    Spearman: rank x, y and each covariate (average ranks), regress the ranks of x and of y on [1, covariate
    ranks] by least squares (`numpy.linalg.lstsq`), and take Pearson's r of the two residual vectors. With one
    covariate z this equals r_xy·z = (r_xy − r_xz r_yz) / √((1 − r_xz²)(1 − r_yz²)) on the Spearman
    correlations. ``"pearson"`` does the same without ranking (the ordinary partial correlation).

    The interval is the BCa interval of `scipy.stats.bootstrap` over resampled rows (x_i, y_i, z_i): an
    approximate `level` interval for the population partial correlation, treating rows as independent. With
    fewer than `SMALL_SAMPLE` rows the bounds are NaN (``method`` says why) unless ``allow_small=True``.

    Args:
        x, y: the two variables (finite, equal length n).
        covariates: the variables to partial out: shape (n,) or (n, k), or a DataFrame / Series with n rows;
            needs n ≥ k + 3 (two residual degrees of freedom beyond the fit).
        method: ``"spearman"`` or ``"pearson"``.
        level, n_resamples, seed, allow_small: as in `bootstrap_ci`.

    Returns:
        An `Interval` with n = rows; NaN when a covariate explains x or y exactly (also on some resample).
    """
    method = _check_choice(method, PARTIAL_METHODS, "method")
    allow_small = _check_flag(allow_small, "allow_small")
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
    if x.size < SMALL_SAMPLE and not allow_small:
        return Interval(estimate, math.nan, math.nan, level, int(x.size), TOO_FEW)
    if math.isnan(estimate):
        return Interval(math.nan, math.nan, math.nan, level, int(x.size), label)

    def statistic(*samples):
        return _residual_correlation(*samples, method=method)

    low, high = _scipy_bootstrap(
        (x, y, *columns), statistic, paired=True, vectorized=False, level=level, n_resamples=n_resamples,
        method="BCa", seed=seed,
    )  # fmt: skip
    return Interval(estimate, *_clip_correlation(low, high), level, int(x.size), label)


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


def conditional_mutual_information(
    frame: pd.DataFrame, measure, gap, axes, *, condition_sizes=(2,), max_condition=None
) -> dict:
    """Conditional mutual information score of a generalisation measure (Jiang et al. 2020).

    Written here (no library has it); implemented as follows. Over all ordered pairs (i, j), i ≠ j, of networks
    (rows): V_μ = sign(μ_i − μ_j), V_g = sign(g_i − g_j) (values −1, 0, +1; without ties the paper's ±1), and
    for a set S of hyperparameter axes U_S = (θ_i[S], θ_j[S]), the values of the axes in S of BOTH networks of
    the pair. With the empirical distribution over pairs,

        I(V_μ; V_g | U_S) = Σ_u p(u) Σ_{a,b} p(a, b | u) log[p(a, b | u) / (p(a | u) p(b | u))],
        H(V_g | U_S) = −Σ_u p(u) Σ_b p(b | u) log p(b | u),
        Î_S = I(V_μ; V_g | U_S) / H(V_g | U_S)  (∈ [0, 1]; the log's base cancels),

    and the score is K(μ) = min_S Î_S over the conditioning sets S, the measure's worst case. The paper's
    K(μ) (its main results, and the PGDL competition's score) takes the minimum over the sets of exactly two
    axes, |S| = 2: the default ``condition_sizes=(2,)``. ``max_condition=m`` takes it over every |S| ≤ m
    instead (S = ∅ is the plain normalised mutual information), as the paper's appendix varies it.
    Î_S = 1 when V_μ determines V_g within every value of U_S; 0 when they are conditionally independent, e.g.
    when the measure only copies a hyperparameter in S: once the pair's values of that hyperparameter are
    fixed, the measure's order carries nothing about the gap's. (The PGDL competition's scoring program
    moreover weights every value combination u equally; here u is weighted by p(u), as in the paper's
    definition.)

    Meaning: a plug-in estimate from the finite population, biased upward by about (cells − 1)/(2 N_u) nats per
    value u with N_u pairs; no interval.

    Args:
        frame: one row per network.
        measure, gap: columns of the measure μ and of the generalisation gap g (finite).
        axes: the hyperparameter columns (values compared exactly).
        condition_sizes: the sizes |S| of the conditioning sets (each at most len(axes)); default (2,).
        max_condition: instead of `condition_sizes`, every size 0 … max_condition (clipped to len(axes)).

    Returns:
        ``{"score": K(μ), "worst_set": S attaining it, "per_set": {S (tuple of axes): Î_S}, "n_pairs": ordered
        pairs, "condition_sizes": the sizes used}``. Î_S is NaN when H(V_g | U_S) = 0 (the pair's values in S
        fix the gap's order); such sets are left out of the minimum.
    """
    axes = _check_axes(frame, axes)
    if max_condition is not None:
        if tuple(condition_sizes) != (2,):
            raise ValueError(
                f"pass condition_sizes or max_condition, not both (got condition_sizes={condition_sizes!r},"
                f" max_condition={max_condition!r})"
            )
        if (
            isinstance(max_condition, bool)
            or not isinstance(max_condition, (int, np.integer))
            or max_condition < 0
        ):
            raise ValueError(f"max_condition must be a non-negative integer, got {max_condition!r}")
        sizes = tuple(range(min(int(max_condition), len(axes)) + 1))
    else:
        if (
            isinstance(condition_sizes, (str, bytes))
            or not isinstance(condition_sizes, Sequence)
            or not (condition_sizes)
        ):
            raise ValueError(
                f"condition_sizes must be a non-empty sequence of sizes, got {condition_sizes!r}"
            )
        for size in condition_sizes:
            if (
                isinstance(size, bool)
                or not isinstance(size, (int, np.integer))
                or not 0 <= size <= len(axes)
            ):
                raise ValueError(
                    f"condition_sizes must hold integers in [0, len(axes) = {len(axes)}], got {size!r} in"
                    f" {tuple(condition_sizes)!r} (the paper's |S| = 2 needs at least 2 axes; pass"
                    f" max_condition=1 or condition_sizes=(0, 1) for fewer)"
                )
        sizes = tuple(sorted({int(size) for size in condition_sizes}))
    mu, g = _frame_measure_gap(frame, measure, gap)
    first, second = np.nonzero(~np.eye(mu.size, dtype=bool))  # ordered pairs i ≠ j
    v_mu = np.sign(mu[first] - mu[second]).astype(np.int64) + 1  # 0, 1, 2 for −1, 0, +1
    v_g = np.sign(g[first] - g[second]).astype(np.int64) + 1
    cell = 3 * v_mu + v_g
    per_set = {}
    for size in sizes:
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
        "condition_sizes": sizes,
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
    min_ess=12.0,
) -> dict:
    """Robust sign error of a generalisation measure over coupled networks: the worst environment
    (Dziugaite et al. 2020), with the mean and per-axis sign errors beside it.

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

    Reported: the sign error of each environment e, SE(e) = Σ_e w ℓ / Σ_e w, and the paper's robust sign error
    ``robust`` = sup_e SE(e) over the environments whose effective sample size is at least `min_ess` (the
    authors' 12, the default): the worst case over environments, not an average. Besides it: the weighted mean
    Σ w ℓ / Σ w over all pairs (``mean``), the same per axis with all environments of that axis pooled
    (``per_axis``), and the largest of those (``max_over_axes``, with ``worst_axis``) — a coarser worst case
    that averages within an axis, ≤ ``robust`` when every environment qualifies. Effective sample size: Kish's
    (Σ w)² / Σ w² (the count of kept pairs for hard weights).

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
        min_ess: smallest effective sample size of an environment that enters ``robust`` (the authors: 12).
            With one network per configuration an environment holds one pair: pass ``min_ess=1`` knowingly.

    Returns:
        ``{"robust": sup over environments with n_effective ≥ min_ess (NaN when none qualifies),
        "robust_environment": that environment's row as a dict (None when none), "n_environments": environments
        with a kept pair, "n_environments_eligible": those with n_effective ≥ min_ess, "min_ess", "mean",
        "per_axis": {axis: pooled mean ℓ}, "max_over_axes": max of per_axis, "worst_axis", "n_pairs",
        "n_dropped", "n_effective", "n_pairs_per_axis", "n_dropped_per_axis", "n_effective_per_axis",
        "threshold" (2ε; NaN for soft weights), "environments": DataFrame (axis, fixed: values of the other
        columns, values: the pair of values of the axis, sign_error, weight, n_effective, n_pairs),
        "worst_environment": the same number as "robust" (its former name)}``; means are NaN where no pair is
        kept, and ``max_over_axes`` is the maximum over the axes that keep a pair.
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
    kept_environments = environments.loc[environments["weight"] > 0]
    eligible = kept_environments.loc[kept_environments["n_effective"] >= min_ess]
    robust = float(eligible["sign_error"].max()) if len(eligible) else math.nan
    worst = eligible.loc[eligible["sign_error"].idxmax()].to_dict() if len(eligible) else None
    return {
        "robust": robust,
        "robust_environment": worst,
        "n_environments": len(kept_environments),
        "n_environments_eligible": len(eligible),
        "min_ess": float(min_ess),
        "mean": mean,
        "per_axis": per_axis,
        "max_over_axes": kept[worst_axis] if kept else math.nan,
        "worst_axis": worst_axis,
        "n_pairs": n_pairs,
        "n_dropped": n_dropped,
        "n_effective": ess,
        "n_pairs_per_axis": pairs_axis,
        "n_dropped_per_axis": dropped_axis,
        "n_effective_per_axis": ess_axis,
        "threshold": threshold,
        "environments": environments,
        "worst_environment": robust,
    }
