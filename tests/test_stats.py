"""The paper's statistics against scipy/statsmodels/scikit-learn and small hand-computed cases."""

from __future__ import annotations

import doctest
import inspect
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mutual_info_score
from statsmodels.api import OLS, add_constant

from landscape.paper import stats as paper_stats
from landscape.paper.stats import (
    SMALL_SAMPLE,
    GroupMeansCorrelation,
    Interval,
    bootstrap_ci,
    cluster_bootstrap_ci,
    conditional_mutual_information,
    granulated_kendall,
    holm,
    paired_difference_ci,
    partial_rank_correlation,
    rank_correlation,
    rank_correlation_of_means,
    rank_correlation_test,
    ratio_ci,
    robust_sign_error,
)


def test_docstring_examples():
    result = doctest.testmod(paper_stats, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 14
    assert result.failed == 0


def test_interval_text_and_checks():
    assert str(Interval(0.51234, 0.4321, 0.6012, 0.95, 20, "bootstrap BCa")) == "0.512 [0.43, 0.6]"
    with pytest.raises(ValueError, match=r"low <= high, got \[2, 1\]"):
        Interval(1.5, 2, 1, 0.95, 3, "x")
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\).*got 95"):
        Interval(1.0, 0.0, 2.0, 95, 3, "x")


# ----------------------------------------------------------------------------------------------- bootstrap_ci


@pytest.mark.parametrize(
    ("method", "statistic"), [("BCa", np.mean), ("percentile", np.median), ("basic", np.mean)]
)
def test_bootstrap_ci_is_scipy_bootstrap(method, statistic):
    values = np.random.default_rng(1).exponential(size=40)
    interval = bootstrap_ci(values, statistic, level=0.9, n_resamples=500, method=method, seed=3)
    expected = stats.bootstrap(
        (values,),
        statistic,
        n_resamples=500,
        confidence_level=0.9,
        method=method,
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert (interval.low, interval.high) == (expected.low, expected.high)
    assert interval.estimate == statistic(values)
    assert (interval.level, interval.n, interval.method) == (0.9, 40, f"bootstrap {method}")


def test_bootstrap_ci_covers_the_mean_at_its_level():
    covered = 0
    for seed in range(200):
        sample = np.random.default_rng(1000 + seed).normal(size=25)
        interval = bootstrap_ci(sample, level=0.95, n_resamples=400, seed=seed)
        covered += interval.low <= 0 <= interval.high
    assert 0.90 <= covered / 200 <= 0.99


def test_bootstrap_ci_is_deterministic_in_its_seed():
    values = np.random.default_rng(0).normal(size=15)
    first = bootstrap_ci(values, n_resamples=300, seed=7)
    assert bootstrap_ci(values, n_resamples=300, seed=7) == first
    assert bootstrap_ci(values, n_resamples=300, seed=8) != first


def test_bootstrap_ci_degenerate_samples():
    constant = bootstrap_ci([2.5, 2.5, 2.5, 2.5])
    assert (constant.estimate, constant.low, constant.high, constant.n) == (2.5, 2.5, 2.5, 4)
    single = bootstrap_ci([3.0])
    assert single.estimate == 3.0
    assert math.isnan(single.low)
    assert math.isnan(single.high)
    assert single.n == 1
    empty = bootstrap_ci([])
    assert math.isnan(empty.estimate)
    assert math.isnan(empty.low)
    assert empty.n == 0


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(ValueError, match=r"values contains nan at index 1 .*drop them first"):
        bootstrap_ci([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match=r"values contains inf at index 0"):
        bootstrap_ci([math.inf, 1.0])
    with pytest.raises(ValueError, match=r"one-dimensional, got shape \(2, 2\)"):
        bootstrap_ci([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\), e.g. 0.95, got 1.5"):
        bootstrap_ci([1.0, 2.0], level=1.5)
    with pytest.raises(
        ValueError, match=r"method must be one of \('BCa', 'percentile', 'basic', 't'\), got 'bca'"
    ):
        bootstrap_ci([1.0, 2.0], method="bca")
    with pytest.raises(ValueError, match=r"n_resamples must be an integer >= 2, got 1"):
        bootstrap_ci([1.0, 2.0], n_resamples=1)
    with pytest.raises(TypeError, match=r"seed must be an int .*got 0.5"):
        bootstrap_ci([1.0, 2.0], seed=0.5)
    with pytest.raises(TypeError, match=r"values must be numbers, got list"):
        bootstrap_ci(["a", "b"])
    with pytest.raises(ValueError, match=r"method='t' is the Student-t interval of the mean.*got 'median'"):
        bootstrap_ci([1.0, 2.0, 3.0], np.median, method="t")
    with pytest.raises(TypeError, match=r"allow_small must be True or False, got 1"):
        bootstrap_ci([1.0, 2.0], allow_small=1)


# ----------------------------------------------------------------------------------------------- small samples


def _coverage(intervals, truth):
    return np.mean([interval.low <= truth <= interval.high for interval in intervals])


def test_small_sample_threshold_is_ten():
    assert SMALL_SAMPLE == 10


@pytest.mark.parametrize("n", [3, 5])
def test_mean_of_a_small_sample_gets_the_t_interval_and_covers(n):
    samples = [np.random.default_rng(2000 + s).normal(size=n) for s in range(2000)]
    intervals = [bootstrap_ci(sample) for sample in samples]
    assert {interval.method for interval in intervals} == {"Student t"}
    assert 0.93 <= _coverage(intervals, 0.0) <= 0.97
    sample = samples[0]  # by hand: x̄ ± t_{0.975, n−1} s/√n
    half = stats.t.ppf(0.975, n - 1) * sample.std(ddof=1) / math.sqrt(n)
    assert (intervals[0].low, intervals[0].high) == pytest.approx(
        (sample.mean() - half, sample.mean() + half)
    )
    assert bootstrap_ci(sample, np.nanmean).method == "Student t"


def test_the_bootstrap_undercovers_at_three_observations():
    # What the t-interval replaces: the percentile bootstrap of 3 values covers ~75 % at nominal 95 %.
    intervals = [
        bootstrap_ci(
            np.random.default_rng(2000 + s).normal(size=3), method="percentile", n_resamples=300, seed=s,
            allow_small=True,
        )
        for s in range(300)
    ]  # fmt: skip
    assert {interval.method for interval in intervals} == {"bootstrap percentile"}
    assert _coverage(intervals, 0.0) < 0.88


def test_explicit_t_method_at_any_n():
    values = np.random.default_rng(3).normal(size=40)
    interval = bootstrap_ci(values, method="t", level=0.9)
    assert interval.method == "Student t"
    assert (interval.low, interval.high) == pytest.approx(
        stats.t.interval(0.9, 39, loc=values.mean(), scale=stats.sem(values))
    )


def test_other_statistics_of_small_samples_have_no_interval():
    values = [1.0, 4.0, 2.0, 8.0]
    interval = bootstrap_ci(values, np.median)
    assert interval.estimate == 3.0
    assert math.isnan(interval.low)
    assert math.isnan(interval.high)
    assert (interval.n, interval.method) == (4, "too few observations for a bootstrap (n < 10)")
    assert math.isnan(bootstrap_ci([2.0, 2.0, 2.0], np.median).low)  # constant, still no interval
    assert math.isnan(bootstrap_ci(values, lambda v: float(np.mean(v))).low)  # only np.mean is "the mean"
    # allow_small=True: the bootstrap as for large samples, bit for bit scipy's
    forced = bootstrap_ci(values, np.median, n_resamples=500, method="percentile", seed=1, allow_small=True)
    expected = stats.bootstrap(
        (np.array(values),), np.median, n_resamples=500, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    assert (forced.low, forced.high) == (expected.low, expected.high)
    assert forced.method == "bootstrap percentile"
    mean = bootstrap_ci(values, n_resamples=500, method="percentile", seed=1, allow_small=True)
    assert mean.method == "bootstrap percentile"
    assert bootstrap_ci(np.arange(10.0), np.median).method == "bootstrap BCa"  # n = SMALL_SAMPLE: bootstrap


@pytest.mark.parametrize("n", [3, 5])
def test_paired_difference_of_few_pairs_is_the_paired_t_interval(n):
    intervals = []
    for s in range(1000):
        rng = np.random.default_rng(5000 + s)
        shared = rng.normal(scale=3.0, size=n)  # seed effect both conditions share
        a, b = 1.0 + shared + rng.normal(size=n), shared + rng.normal(size=n)
        intervals.append(paired_difference_ci(a, b))
    assert {interval.method for interval in intervals} == {"Student t"}
    assert 0.93 <= _coverage(intervals, 1.0) <= 0.97
    d = a - b
    assert (intervals[-1].low, intervals[-1].high) == pytest.approx(
        stats.t.interval(0.95, n - 1, loc=d.mean(), scale=stats.sem(d))
    )
    assert math.isnan(paired_difference_ci(a, b, np.median).low)


@pytest.mark.parametrize("n", [3, 5])
def test_paired_ratio_of_few_pairs_is_the_t_interval_of_log_ratios(n):
    intervals = []
    for s in range(1000):
        rng = np.random.default_rng(6000 + s)
        shared = rng.normal(size=n)
        a, b = np.exp(0.5 + shared + 0.3 * rng.normal(size=n)), np.exp(shared + 0.3 * rng.normal(size=n))
        intervals.append(ratio_ci(a, b))
    assert {interval.method for interval in intervals} == {
        "Student t on log ratios (geometric mean of paired ratios)"
    }
    assert 0.93 <= _coverage(intervals, math.exp(0.5)) <= 0.97
    logs = np.log(a / b)
    low, high = stats.t.interval(0.95, n - 1, loc=logs.mean(), scale=stats.sem(logs))
    assert (intervals[-1].low, intervals[-1].high) == pytest.approx((math.exp(low), math.exp(high)))
    assert intervals[-1].estimate == pytest.approx(stats.gmean(a / b))
    forced = ratio_ci(a, b, n_resamples=300, allow_small=True)
    assert forced.method == "bootstrap BCa (geometric mean of paired ratios)"


@pytest.mark.parametrize(("n_a", "n_b", "spread_a"), [(3, 5, 0.2), (5, 4, 0.6)])
def test_unpaired_ratio_of_small_samples_is_welch_on_logs(n_a, n_b, spread_a):
    # Log-normal samples: the estimand is the ratio of geometric means exp(0.5 − 0) (the ratio of arithmetic
    # means would be exp(0.5 + spread_a²/2 − 0.2²/2)). Welch's interval is near exact here; it undercovers a
    # little (≈ 93.6 %) when the smaller sample (3) has the larger spread (3×), a known limit of Welch at n = 3.
    intervals = []
    for s in range(2000):
        rng = np.random.default_rng(7000 + s)
        a, b = np.exp(rng.normal(0.5, spread_a, size=n_a)), np.exp(rng.normal(0.0, 0.2, size=n_b))
        intervals.append(ratio_ci(a, b, paired=False))
    assert {interval.method for interval in intervals} == {"Welch t on log values (ratio of geometric means)"}
    assert 0.93 <= _coverage(intervals, math.exp(0.5)) <= 0.98
    last = intervals[-1]
    assert last.estimate == pytest.approx(stats.gmean(a) / stats.gmean(b), rel=1e-12)
    welch = stats.ttest_ind(np.log(a), np.log(b), equal_var=False).confidence_interval(0.95)
    assert (last.low, last.high) == pytest.approx((math.exp(welch.low), math.exp(welch.high)), rel=1e-10)
    assert last.n == n_a + n_b
    forced = ratio_ci(a, b, paired=False, n_resamples=300, allow_small=True)
    assert forced.method == "bootstrap BCa (ratio of means)"
    assert forced.estimate == pytest.approx(a.mean() / b.mean())
    with pytest.raises(ValueError, match=r"ratio of geometric means and needs positive a, got a\[1\] = 0.0"):
        ratio_ci([1.0, 0.0, 2.0], [1.0, 2.0, 3.0], paired=False)
    constant = ratio_ci([4.0, 4.0], [2.0, 2.0, 2.0], paired=False)
    assert (constant.estimate, constant.low, constant.high) == pytest.approx((2.0, 2.0, 2.0))
    assert math.isnan(ratio_ci([4.0], [2.0, 3.0], paired=False).low)


# ------------------------------------------------------------------------------------ paired differences, ratios


def test_paired_difference_is_the_bootstrap_of_the_differences():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1, 1, size=20), rng.normal(0, 1, size=20)
    assert paired_difference_ci(a, b, np.median, level=0.8, n_resamples=300, seed=4) == bootstrap_ci(
        a - b, np.median, level=0.8, n_resamples=300, method="BCa", seed=4
    )
    with pytest.raises(
        ValueError, match=r"a and b \(paired samples\) must have the same length.*got 3 and 2"
    ):
        paired_difference_ci([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"b contains nan"):
        paired_difference_ci([1.0, 2.0], [1.0, math.nan])


def test_paired_ratio_is_the_geometric_mean_of_ratios():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0.5, 0.3, size=25), rng.lognormal(0.0, 0.3, size=25)
    interval = ratio_ci(a, b, n_resamples=400, seed=1)
    logs = bootstrap_ci(np.log(a / b), n_resamples=400, method="BCa", seed=1)
    assert interval.estimate == pytest.approx(stats.gmean(a / b), rel=1e-12)
    assert (interval.low, interval.high) == pytest.approx(
        (math.exp(logs.low), math.exp(logs.high)), rel=1e-12
    )
    assert interval.low < interval.estimate < interval.high
    assert interval.n == 25
    with pytest.raises(ValueError, match=r"needs positive values, got b\[1\] = -1.0"):
        ratio_ci([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(
        ValueError, match=r"paired=False for independent ones\) must have the same length.*2 and 3"
    ):
        ratio_ci([1.0, 2.0], [1.0, 2.0, 3.0])


def test_unpaired_ratio_is_the_ratio_of_means_resampled_independently():
    rng = np.random.default_rng(4)
    a, b = rng.gamma(4.0, size=30), rng.gamma(2.0, size=18)
    interval = ratio_ci(a, b, level=0.9, n_resamples=500, seed=2, paired=False)
    assert interval.method == "bootstrap BCa (ratio of means)"
    expected = stats.bootstrap(
        (a, b), lambda x, y, axis: x.mean(axis) / y.mean(axis), n_resamples=500, confidence_level=0.9,
        rng=np.random.default_rng(2),
    ).confidence_interval  # fmt: skip
    assert interval.estimate == pytest.approx(a.mean() / b.mean(), rel=1e-12)
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert interval.n == 48
    with pytest.raises(ValueError, match=r"needs positive b, got b\[0\] = 0.0"):
        ratio_ci([1.0, 2.0], [0.0, 2.0], paired=False)


# -------------------------------------------------------------------------------------------- cluster bootstrap


def test_cluster_bootstrap_pools_the_rows_of_drawn_clusters():
    # Cluster A: three rows of 0, cluster B: one row of 1. Drawing (A, A), (A, B) or (B, A), (B, B) gives the
    # pooled means 0, 1/4, 1 with probabilities 1/4, 1/2, 1/4 (the mean of cluster means would give 1/2).
    frame = pd.DataFrame({"v": [0.0, 0.0, 0.0, 1.0], "c": ["A", "A", "A", "B"]})
    narrow = cluster_bootstrap_ci(frame, "v", "c", level=0.4, n_resamples=2000, seed=0, allow_small=True)
    assert (narrow.estimate, narrow.low, narrow.high, narrow.n) == (0.25, 0.25, 0.25, 2)
    wide = cluster_bootstrap_ci(frame, "v", "c", level=0.95, n_resamples=2000, seed=0, allow_small=True)
    assert (wide.low, wide.high) == (0.0, 1.0)
    assert wide.method == "cluster bootstrap percentile"


def test_few_clusters_mean_is_the_t_interval_over_cluster_means():
    # The same two clusters without allow_small: cluster means 0 and 1, so the mean of cluster means is 1/2
    # and the interval 1/2 ± t_{0.975, 1}·(1/√2)/√2, not the bootstrap's [0, 1].
    frame = pd.DataFrame({"v": [0.0, 0.0, 0.0, 1.0], "c": ["A", "A", "A", "B"]})
    interval = cluster_bootstrap_ci(frame, "v", "c")
    half = stats.t.ppf(0.975, 1) * 0.5
    assert (interval.estimate, interval.n, interval.method) == (0.5, 2, "Student t over cluster means")
    assert (interval.low, interval.high) == pytest.approx((0.5 - half, 0.5 + half))
    # Coverage with 4 clusters of 3 correlated runs each: the cluster means are the independent units.
    intervals = []
    for s in range(1000):
        rng = np.random.default_rng(8000 + s)
        values = np.repeat(rng.normal(size=4), 3) + 0.5 * rng.normal(size=12)
        intervals.append(
            cluster_bootstrap_ci(pd.DataFrame({"v": values, "c": np.repeat(range(4), 3)}), "v", "c")
        )
    assert 0.93 <= _coverage(intervals, 0.0) <= 0.97


def test_few_clusters_other_statistics_have_no_interval():
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"v": rng.normal(size=24), "c": np.repeat(range(8), 3)})
    median = cluster_bootstrap_ci(frame, "v", "c", np.median)
    assert median.estimate == np.median(frame["v"])
    assert math.isnan(median.low)
    assert math.isnan(median.high)
    assert (median.n, median.method) == (8, "too few clusters for a cluster bootstrap (G < 10)")
    of_frame = cluster_bootstrap_ci(frame, None, "c", lambda d: d["v"].mean())
    assert math.isnan(of_frame.low)
    assert of_frame.method == "too few clusters for a cluster bootstrap (G < 10)"
    forced = cluster_bootstrap_ci(frame, "v", "c", np.median, n_resamples=300, allow_small=True)
    assert forced.low < forced.estimate < forced.high
    assert forced.method == "cluster bootstrap percentile"


def test_cluster_bootstrap_is_wider_than_the_naive_one_for_duplicated_rows():
    base = np.random.default_rng(5).normal(size=30)
    frame = pd.DataFrame({"v": np.repeat(base, 4), "config": np.repeat(np.arange(30), 4)})
    clustered = cluster_bootstrap_ci(frame, "v", "config", n_resamples=1000, seed=1)
    naive = bootstrap_ci(frame["v"], n_resamples=1000, method="percentile", seed=1)
    of_clusters = bootstrap_ci(base, n_resamples=1000, method="percentile", seed=1)
    width = clustered.high - clustered.low
    assert clustered.n == 30
    assert naive.n == 120
    assert width > 1.6 * (naive.high - naive.low)  # √4 = 2 expected
    assert 0.8 < width / (of_clusters.high - of_clusters.low) < 1.25  # as wide as 30 independent values


def test_cluster_bootstrap_statistic_of_the_frame():
    rng = np.random.default_rng(6)
    x = rng.normal(size=40)
    frame = pd.DataFrame({"x": x, "y": x + rng.normal(size=40), "c": np.arange(40) // 2})

    def spearman(d):
        return d["x"].corr(d["y"], method="spearman")

    interval = cluster_bootstrap_ci(frame, None, "c", spearman, n_resamples=300, seed=2)
    assert interval.estimate == pytest.approx(stats.spearmanr(frame["x"], frame["y"]).statistic, rel=1e-12)
    assert interval.low < interval.estimate < interval.high
    assert interval.n == 20
    assert cluster_bootstrap_ci(frame, None, "c", spearman, n_resamples=300, seed=2) == interval
    assert cluster_bootstrap_ci(frame, None, "c", spearman, n_resamples=300, seed=3) != interval


def test_cluster_bootstrap_degenerate_and_bad_input():
    one = cluster_bootstrap_ci(pd.DataFrame({"v": [1.0, 2.0], "c": [0, 0]}), "v", "c")
    assert one.estimate == 1.5
    assert math.isnan(one.low)
    assert one.n == 1
    frame = pd.DataFrame({"v": [1.0, math.nan], "c": [0, 1]})
    with pytest.raises(ValueError, match=r"frame\['v'\] contains nan at index 1"):
        cluster_bootstrap_ci(frame, "v", "c")
    with pytest.raises(ValueError, match=r"value column 'w' is not in the frame"):
        cluster_bootstrap_ci(frame, "w", "c")
    with pytest.raises(ValueError, match=r"cluster column 'k' is not in the frame"):
        cluster_bootstrap_ci(frame, "v", "k")
    with pytest.raises(ValueError, match=r"frame\['c'\] contains missing labels .*at index 1"):
        cluster_bootstrap_ci(pd.DataFrame({"v": [1.0, 2.0], "c": ["a", None]}), "v", "c")
    with pytest.raises(TypeError, match=r"frame must be a pandas DataFrame, got dict"):
        cluster_bootstrap_ci({"v": [1.0]}, "v", "c")


# -------------------------------------------------------------------------------------------- rank correlations


def _bivariate(n, rho, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)


@pytest.mark.parametrize(
    ("method", "scipy_function", "population"),
    [
        ("spearman", stats.spearmanr, 6 / math.pi * math.asin(0.3)),
        ("kendall", stats.kendalltau, 2 / math.pi * math.asin(0.6)),
    ],
)
def test_rank_correlation_matches_scipy_and_covers_the_population_value(method, scipy_function, population):
    x, y = _bivariate(200, 0.6, seed=7)
    interval = rank_correlation(x, y, method=method, n_resamples=500, seed=0)
    assert interval.estimate == scipy_function(x, y).statistic
    assert interval.low < population < interval.high
    assert interval.low < interval.estimate < interval.high
    assert (interval.n, interval.method) == (200, "bootstrap BCa")
    assert rank_correlation_test(x, y, method) == (
        scipy_function(x, y).statistic,
        scipy_function(x, y).pvalue,
    )


def test_spearman_interval_agrees_with_fisher_z():
    # Fieller, Hartley & Pearson (1957): atanh(ρ̂_s) has standard error ≈ √(1.06 / (n − 3)).
    x, y = _bivariate(300, 0.5, seed=8)
    interval = rank_correlation(x, y, n_resamples=1000, seed=1)
    half = stats.norm.ppf(0.975) * math.sqrt(1.06 / 297)
    low, high = (
        math.tanh(math.atanh(interval.estimate) - half),
        math.tanh(math.atanh(interval.estimate) + half),
    )
    assert interval.low == pytest.approx(low, abs=0.03)
    assert interval.high == pytest.approx(high, abs=0.03)


def test_rank_correlation_over_clusters_is_wider_for_duplicated_pairs():
    x, y = _bivariate(40, 0.5, seed=9)
    by_rows = rank_correlation(np.repeat(x, 3), np.repeat(y, 3), n_resamples=400, seed=0)
    by_clusters = rank_correlation(
        np.repeat(x, 3), np.repeat(y, 3), n_resamples=400, seed=0, clusters=np.repeat(np.arange(40), 3)
    )
    assert by_clusters.estimate == by_rows.estimate
    assert (by_clusters.n, by_clusters.method) == (40, "cluster bootstrap percentile")
    assert by_clusters.high - by_clusters.low > 1.4 * (by_rows.high - by_rows.low)  # √3 expected
    again = rank_correlation(
        np.repeat(x, 3), np.repeat(y, 3), n_resamples=400, seed=0, clusters=np.repeat(np.arange(40), 3)
    )
    assert again == by_clusters


def test_rank_correlation_is_deterministic_and_undefined_for_constant_input():
    x, y = _bivariate(30, 0.3, seed=10)
    first = rank_correlation(x, y, method="kendall", n_resamples=200, seed=5)
    assert rank_correlation(x, y, method="kendall", n_resamples=200, seed=5) == first
    assert rank_correlation(x, y, method="kendall", n_resamples=200, seed=6) != first
    constant = rank_correlation(np.ones(10), np.arange(10.0))
    assert math.isnan(constant.estimate)
    assert math.isnan(constant.low)
    assert constant.n == 10
    assert all(math.isnan(v) for v in rank_correlation_test(np.arange(5.0), np.full(5, 2.0)))


def test_rank_correlation_needs_ten_pairs_or_clusters():
    x, y = _bivariate(40, 0.5, seed=11)
    few = rank_correlation(x[:8], y[:8])
    assert few.estimate == pytest.approx(stats.spearmanr(x[:8], y[:8]).statistic)
    assert math.isnan(few.low)
    assert math.isnan(few.high)
    assert few.method == "too few observations for a bootstrap (n < 10)"
    clustered = rank_correlation(x, y, clusters=np.arange(40) // 5)  # 8 clusters of 5 pairs
    assert clustered.estimate == pytest.approx(stats.spearmanr(x, y).statistic)
    assert math.isnan(clustered.low)
    assert (clustered.n, clustered.method) == (8, "too few clusters for a cluster bootstrap (G < 10)")
    forced = rank_correlation(x, y, clusters=np.arange(40) // 5, n_resamples=300, allow_small=True)
    assert forced.low < forced.estimate < forced.high
    assert forced.method == "cluster bootstrap percentile"
    assert rank_correlation(x[:8], y[:8], n_resamples=300, allow_small=True).method == "bootstrap BCa"
    assert not math.isnan(rank_correlation(x, y, clusters=np.arange(40) // 4, n_resamples=200).low)  # 10
    partial = partial_rank_correlation(x[:8], y[:8], np.arange(8.0))
    assert math.isnan(partial.low)
    assert partial.method == "too few observations for a bootstrap (n < 10)"


# ------------------------------------------------------------------------------------ correlation of group means


def test_rank_correlation_of_means_hand_computed():
    # Groups a, b, c with x = 1, 2, 3; y: a = {0, 10} (mean 5), b = {4, 4}, c = {6, 6}. Means 5, 4, 6:
    # ρ = 1 − 6·(1 + 1 + 0)/(3·8) = 0.5, τ_b = (2 − 1)/3. Resampling a gives its mean 0, 5, 10 with
    # probabilities 1/4, 1/2, 1/4 and ρ* = 1, 0.5, −0.5 (b and c are constant).
    frame = pd.DataFrame(
        {"g": ["a", "a", "b", "b", "c", "c"], "x": [1, 1, 2, 2, 3, 3], "y": [0.0, 10, 4, 4, 6, 6]}
    )
    result = rank_correlation_of_means(frame, "x", "y", "g", n_resamples=4000, seed=1)
    assert isinstance(result, GroupMeansCorrelation)
    assert (result.estimate, result.low, result.high, result.n) == (0.5, -0.5, 1.0, 3)
    narrow = rank_correlation_of_means(frame, "x", "y", "g", level=0.4, n_resamples=4000, seed=1)
    assert (narrow.low, narrow.high) == (0.5, 0.5)
    # Exact permutation null over 3! orderings of (5, 4, 6) against (1, 2, 3): ρ = 1, ½, ½, −½, −½, −1.
    assert result.exact
    assert result.pvalue == pytest.approx(1.0)  # two-sided: 2 · min(3/6, 5/6), capped at 1
    assert result.min_pvalue == pytest.approx(2 / 6)
    greater = rank_correlation_of_means(frame, "x", "y", "g", alternative="greater", n_resamples=200)
    assert greater.pvalue == pytest.approx(3 / 6)
    assert greater.min_pvalue == pytest.approx(1 / 6)
    assert result.means.to_dict("list") == {"g": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "y": [5.0, 4.0, 6.0],
                                            "n": [2, 2, 2]}  # fmt: skip
    kendall = rank_correlation_of_means(frame, "x", "y", "g", method="kendall", n_resamples=200)
    assert kendall.estimate == pytest.approx(1 / 3)
    assert kendall.method == "stratified bootstrap percentile (within 3 groups)"
    assert str(result) == "0.5 [-0.5, 1]"
    assert rank_correlation_of_means(frame, "x", "y", "g", n_resamples=4000, seed=1) == result


def test_rank_correlation_of_means_four_groups_coarse_pvalues():
    # Four well separated groups: every resample keeps the order (interval [1, 1]) but the permutation test
    # cannot go below 1/4! one-sided, 2/4! two-sided.
    frame = pd.DataFrame({"g": np.repeat(list("abcd"), 3), "x": np.repeat([1.0, 2, 3, 4], 3)})
    frame["y"] = frame["x"] * 10 + np.tile([0.0, 0.5, 1.0], 4)
    result = rank_correlation_of_means(frame, "x", "y", "g", n_resamples=300)
    assert (result.estimate, result.low, result.high) == (1.0, 1.0, 1.0)
    assert result.pvalue == pytest.approx(2 / 24)
    assert result.min_pvalue == pytest.approx(2 / 24)
    assert rank_correlation_of_means(frame, "x", "y", "g", alternative="greater").pvalue == pytest.approx(
        1 / 24
    )
    assert rank_correlation_of_means(frame, "x", "y", "g", alternative="less").pvalue == pytest.approx(1.0)
    monte_carlo = rank_correlation_of_means(frame, "x", "y", "g", max_permutations=10, n_resamples=300)
    assert not monte_carlo.exact
    assert monte_carlo.pvalue >= 1 / 11  # the observed ordering counts: never 0


def test_rank_correlation_of_means_undefined_and_bad_input():
    frame = pd.DataFrame({"g": list("aabbcc"), "x": [1.0, 1, 2, 2, 3, 3], "y": [1.0, 1, 1, 1, 1, 1]})
    flat = rank_correlation_of_means(frame, "x", "y", "g")
    assert math.isnan(flat.estimate)
    assert math.isnan(flat.pvalue)
    single = rank_correlation_of_means(frame.iloc[1:].assign(y=[1.0, 2, 2, 4, 4]), "x", "y", "g")
    assert single.estimate == 1.0  # group a has one observation: no within-group spread to resample
    assert math.isnan(single.low)
    with pytest.raises(ValueError, match=r"need at least 3 groups .*got 2"):
        rank_correlation_of_means(frame.iloc[:4], "x", "y", "g")
    with pytest.raises(ValueError, match=r"group column 'h' is not in the frame"):
        rank_correlation_of_means(frame, "x", "y", "h")
    with pytest.raises(ValueError, match=r"alternative must be one of"):
        rank_correlation_of_means(frame, "x", "y", "g", alternative="up")
    with pytest.raises(ValueError, match=r"max_permutations must be a positive integer, got 0"):
        rank_correlation_of_means(frame, "x", "y", "g", max_permutations=0)


def test_rank_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match=r"method must be one of \('spearman', 'kendall'\), got 'pearson'"):
        rank_correlation([1, 2, 3], [1, 2, 3], method="pearson")
    with pytest.raises(ValueError, match=r"x and y must have the same length.*got 3 and 4"):
        rank_correlation([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"need at least 3 pairs .*got 2"):
        rank_correlation([1, 2], [2, 1])
    with pytest.raises(ValueError, match=r"clusters must have one label per pair \(4\), got 3"):
        rank_correlation([1, 2, 3, 4], [1, 3, 2, 4], clusters=[0, 0, 1])
    with pytest.raises(ValueError, match=r"method must be one of"):
        rank_correlation_test([1, 2, 3], [1, 2, 3], "tau")
    with pytest.raises(ValueError, match=r"x contains nan"):
        rank_correlation_test([1, math.nan, 3], [1, 2, 3])


def test_partial_spearman_hand_computed():
    # Ranks x = 1 2 3 4, y = 2 1 4 3, z = 1 3 2 4: Σd² = 4, 2, 10 give r_xy = 1 − 6·4/60 = 0.6, r_xz = 0.8,
    # r_yz = 0, so r_xy·z = (0.6 − 0.8·0) / √((1 − 0.64)(1 − 0)) = 1.
    interval = partial_rank_correlation([10, 20, 30, 40], [2, 1, 4, 3], [5, 7, 6, 8], n_resamples=100)
    assert interval.estimate == pytest.approx(1.0, abs=1e-12)
    assert interval.n == 4


def test_partial_spearman_one_covariate_closed_form():
    rng = np.random.default_rng(11)
    z = rng.normal(size=60)
    x, y = z + rng.normal(size=60), np.exp(z) + 0.5 * rng.normal(size=60)
    r_xy, r_xz, r_yz = (stats.spearmanr(u, v).statistic for u, v in ((x, y), (x, z), (y, z)))
    closed = (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    interval = partial_rank_correlation(x, y, z, n_resamples=300, seed=0)
    assert interval.estimate == pytest.approx(closed, abs=1e-12)
    assert interval.low < interval.estimate < interval.high
    assert abs(closed - r_xy) > 0.2  # the covariate matters here: partialling it out changes the answer
    r_xy, r_xz, r_yz = (np.corrcoef(u, v)[0, 1] for u, v in ((x, y), (x, z), (y, z)))
    pearson = partial_rank_correlation(x, y, z, method="pearson", n_resamples=100).estimate
    assert pearson == pytest.approx(
        (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2)), abs=1e-12
    )


def test_partial_spearman_two_covariates_against_statsmodels():
    rng = np.random.default_rng(12)
    covariates = rng.normal(size=(50, 2))
    x = covariates @ [1.0, -0.5] + rng.normal(size=50)
    y = covariates @ [0.3, 0.8] + 0.5 * x + rng.normal(size=50)
    ranks = add_constant(np.column_stack([stats.rankdata(c) for c in covariates.T]))
    residual_x = OLS(stats.rankdata(x), ranks).fit().resid
    residual_y = OLS(stats.rankdata(y), ranks).fit().resid
    frame = pd.DataFrame(covariates, columns=["u", "v"])
    interval = partial_rank_correlation(x, y, frame, n_resamples=200, seed=3)
    assert interval.estimate == pytest.approx(stats.pearsonr(residual_x, residual_y).statistic, abs=1e-12)
    assert partial_rank_correlation(x, y, frame, n_resamples=200, seed=3) == interval
    assert partial_rank_correlation(x, y, frame, n_resamples=200, seed=4) != interval


def test_partial_rank_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match=r"method must be one of \('spearman', 'pearson'\), got 'kendall'"):
        partial_rank_correlation([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], method="kendall")
    with pytest.raises(ValueError, match=r"need at least k \+ 3 = 5 rows .*k = 2 covariate\(s\), got 4"):
        partial_rank_correlation([1, 2, 3, 4], [4, 2, 3, 1], np.ones((4, 2)))
    with pytest.raises(
        ValueError, match=r"covariates must have shape \(n,\) or \(n, k\) with n = 4 .*got \(3,\)"
    ):
        partial_rank_correlation([1, 2, 3, 4], [4, 2, 3, 1], [1, 2, 3])
    with pytest.raises(ValueError, match=r"covariates\[:, 0\] contains nan"):
        partial_rank_correlation([1, 2, 3, 4], [4, 2, 3, 1], [1, math.nan, 3, 4])


def test_holm_hand_computed():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06.
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(holm([0.5, 0.4]), [0.8, 0.8], rtol=1e-12)  # 2·0.4, then the max
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]  # capped at 1
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\], got pvalues\[1\] = 1.5"):
        holm([0.1, 1.5])
    with pytest.raises(ValueError, match=r"at least one p-value"):
        holm([])


# -------------------------------------------------------------------------- generalisation-measure statistics


def _tau_a_by_pairs(x, y):
    pairs = list(itertools.combinations(range(len(x)), 2))
    return sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs) / len(pairs)


def _grid_frame():
    # a ∈ {0, 1, 2}, b ∈ {0, 1}; gap rises with a and with b; the measure follows a where b = 0 and opposes it
    # where b = 1.
    rows = [(a, b) for b in (0, 1) for a in (0, 1, 2)]
    frame = pd.DataFrame(rows, columns=["a", "b"])
    frame["gap"] = frame["a"] + 10.0 * frame["b"]
    frame["mu"] = np.where(frame["b"] == 0, frame["a"], -frame["a"]).astype(float)
    return frame


def test_granulated_kendall_hand_computed():
    frame = _grid_frame()
    result = granulated_kendall(frame, "mu", "gap", ["a", "b"])
    # Axis a, groups b = 0 (τ = 1) and b = 1 (τ = −1): ψ_a = 0. Axis b, groups a = 0 (μ tied: τ_a = 0), a = 1
    # and a = 2 (μ falls as the gap rises: −1): ψ_b = −2/3. Ψ = −1/3.
    assert result["psi"] == pytest.approx({"a": 0.0, "b": -2 / 3})
    assert result["Psi"] == pytest.approx(-1 / 3)
    assert result["groups"] == {"a": 2, "b": 3}
    assert result["tau"] == pytest.approx(_tau_a_by_pairs(frame["mu"].to_numpy(), frame["gap"].to_numpy()))
    # A network whose configuration has no neighbour along either axis forms groups with one value: skipped.
    extra = pd.concat(
        [frame, pd.DataFrame({"a": [7], "b": [5], "gap": [0.0], "mu": [9.0]})], ignore_index=True
    )
    assert granulated_kendall(extra, "mu", "gap", ["a", "b"])["psi"] == pytest.approx(result["psi"])
    assert granulated_kendall(extra, "mu", "gap", ["a", "b"])["groups"] == {"a": 2, "b": 3}


def test_granulated_kendall_tau_is_tau_a():
    rng = np.random.default_rng(13)
    x, y = rng.integers(0, 4, size=25).astype(float), rng.integers(0, 3, size=25).astype(float)
    frame = pd.DataFrame({"h": np.arange(25), "mu": x, "g": y})
    tau = granulated_kendall(frame, "mu", "g", ["h"])["tau"]
    assert tau == pytest.approx(_tau_a_by_pairs(x, y), abs=1e-12)
    assert tau != pytest.approx(stats.kendalltau(x, y).statistic)  # τ_b differs with ties
    x, y = rng.normal(size=25), rng.normal(size=25)
    frame = pd.DataFrame({"h": np.arange(25), "mu": x, "g": y})
    assert granulated_kendall(frame, "mu", "g", ["h"])["tau"] == pytest.approx(
        stats.kendalltau(x, y).statistic
    )


def test_granulated_kendall_undefined_axis_and_bad_input():
    frame = pd.DataFrame({"a": [0, 1, 0], "b": [0, 1, 2], "mu": [1.0, 2.0, 3.0], "g": [1.0, 3.0, 2.0]})
    result = granulated_kendall(frame, "mu", "g", ["a", "b"])  # no two rows differ in a alone
    assert math.isnan(result["psi"]["a"])
    assert result["groups"]["a"] == 0
    assert math.isnan(result["Psi"])
    with pytest.raises(ValueError, match=r"axes must be a non-empty list of column names, got 'a'"):
        granulated_kendall(frame, "mu", "g", "a")
    with pytest.raises(ValueError, match=r"axes \['c'\] are not columns of the frame"):
        granulated_kendall(frame, "mu", "g", ["a", "c"])
    with pytest.raises(ValueError, match=r"measure column 'nu' is not in the frame"):
        granulated_kendall(frame, "nu", "g", ["a"])
    with pytest.raises(ValueError, match=r"need at least 2 networks \(rows\), got 1"):
        granulated_kendall(frame.iloc[:1], "mu", "g", ["a"])


def _population(seed):
    """4 axes × 4 values, one network each; the gap is driven by a (mostly), b and c, plus noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(list(itertools.product(range(4), repeat=4)), columns=["a", "b", "c", "d"])
    frame["gap"] = frame["a"] + 0.5 * frame["b"] + 0.3 * frame["c"] + rng.normal(scale=0.2, size=len(frame))
    return frame, rng


def test_conditional_mutual_information_hand_computed():
    # Gaps 0 1 2, measure 0 2 1. Over the 6 ordered pairs (V_g, V_μ) = (−,−) ×2, (+,+) ×2, (−,+), (+,−):
    # I = (2/3) log(4/3) + (1/3) log(2/3), H(V_g) = log 2, so Î = 5/3 − log₂ 3.
    frame = pd.DataFrame({"h": [0, 1, 2], "g": [0.0, 1.0, 2.0], "mu": [0.0, 2.0, 1.0]})
    result = conditional_mutual_information(frame, "mu", "g", ["h"], max_condition=0)
    assert result["per_set"] == {(): pytest.approx(5 / 3 - math.log2(3), abs=1e-12)}
    assert result["n_pairs"] == 6
    assert result["worst_set"] == ()


def test_conditional_mutual_information_on_synthetic_populations():
    frame, rng = _population(14)
    axes = ["a", "b", "c", "d"]
    frame["copy"] = frame["gap"]
    frame["random"] = rng.normal(size=len(frame))
    frame["only_a"] = frame["a"].astype(float)
    same = conditional_mutual_information(frame, "copy", "gap", axes)
    assert list(same["per_set"]) == list(itertools.combinations(axes, 2))  # the paper's |S| = 2 only
    assert same["condition_sizes"] == (2,)
    assert all(value == pytest.approx(1.0, abs=1e-9) for value in same["per_set"].values())
    assert same["score"] == pytest.approx(1.0, abs=1e-9)
    up_to_two = conditional_mutual_information(frame, "copy", "gap", axes, max_condition=2)
    assert len(up_to_two["per_set"]) == 1 + 4 + 6
    assert up_to_two["condition_sizes"] == (0, 1, 2)
    independent = conditional_mutual_information(frame, "random", "gap", axes, max_condition=2)
    assert max(independent["per_set"].values()) < 0.05
    shortcut = conditional_mutual_information(frame, "only_a", "gap", axes, max_condition=2)
    assert shortcut["per_set"][()] > 0.3  # a looks predictive on its own ...
    assert shortcut["per_set"][("a",)] == pytest.approx(0.0, abs=1e-12)  # ... and explains nothing given a
    assert shortcut["score"] == pytest.approx(0.0, abs=1e-12)
    assert "a" in shortcut["worst_set"]
    paper = conditional_mutual_information(frame, "only_a", "gap", axes)
    assert paper["score"] == pytest.approx(0.0, abs=1e-12)  # every S ∋ a of size 2 explains it away too
    assert "a" in paper["worst_set"]
    assert len(paper["worst_set"]) == 2
    # |S| = 2 and |S| ≤ 2 differ for a measure against the gap's main axis a: unconditioned, its order is
    # nearly independent of the gap's (Î_∅ ≈ 0), while within fixed values of two axes it tracks b and c.
    frame["against_a"] = (-frame["a"] + frame["b"] + frame["c"]).astype(float)
    two = conditional_mutual_information(frame, "against_a", "gap", axes)
    at_most_two = conditional_mutual_information(frame, "against_a", "gap", axes, max_condition=2)
    assert two["score"] == min(v for subset, v in at_most_two["per_set"].items() if len(subset) == 2)
    assert at_most_two["worst_set"] == ()
    assert at_most_two["score"] < 0.01 < two["score"]
    custom = conditional_mutual_information(frame, "copy", "gap", axes, condition_sizes=(1, 2))
    assert len(custom["per_set"]) == 4 + 6
    assert conditional_mutual_information(frame, "only_a", "gap", axes, max_condition=1)[
        "per_set"
    ].keys() == {
        (),
        ("a",),
        ("b",),
        ("c",),
        ("d",),
    }


def test_conditional_mutual_information_against_scikit_learn():
    frame, rng = _population(15)
    frame["mu"] = frame["gap"] + rng.normal(scale=1.0, size=len(frame))
    result = conditional_mutual_information(frame, "mu", "gap", ["a", "b"], max_condition=1)
    i, j = np.nonzero(~np.eye(len(frame), dtype=bool))
    v_mu = np.sign(frame["mu"].to_numpy()[i] - frame["mu"].to_numpy()[j])
    v_g = np.sign(frame["gap"].to_numpy()[i] - frame["gap"].to_numpy()[j])
    condition = frame["a"].to_numpy()[i] * 10 + frame["a"].to_numpy()[j]  # U_{a} = (a_i, a_j)
    mutual, entropy = 0.0, 0.0
    for u in np.unique(condition):
        inside = condition == u
        weight = inside.mean()
        mutual += weight * mutual_info_score(v_g[inside], v_mu[inside])
        entropy += weight * stats.entropy(np.unique(v_g[inside], return_counts=True)[1])
    assert result["per_set"][("a",)] == pytest.approx(mutual / entropy, rel=1e-10)
    assert result["per_set"][()] == pytest.approx(mutual_info_score(v_g, v_mu) / math.log(2), rel=1e-10)


def test_conditional_mutual_information_undefined_sets_and_bad_input():
    # The gap is a function of h: given the pair's values of h, its order is fixed (H(V_g | U) = 0).
    frame = pd.DataFrame(
        {"h": [0, 1, 2, 3], "k": [0, 0, 1, 1], "g": [0.0, 1.0, 2.0, 3.0], "mu": [1, 0, 3, 2]}
    )
    result = conditional_mutual_information(frame, "mu", "g", ["h", "k"], max_condition=1)
    assert math.isnan(result["per_set"][("h",)])
    assert result["score"] == min(result["per_set"][()], result["per_set"][("k",)])
    with pytest.raises(ValueError, match=r"max_condition must be a non-negative integer, got -1"):
        conditional_mutual_information(frame, "mu", "g", ["h"], max_condition=-1)
    with pytest.raises(ValueError, match=r"got 2 in \(2,\) \(the paper's \|S\| = 2 needs at least 2 axes"):
        conditional_mutual_information(frame, "mu", "g", ["h"])
    with pytest.raises(ValueError, match=r"pass condition_sizes or max_condition, not both"):
        conditional_mutual_information(frame, "mu", "g", ["h", "k"], condition_sizes=(1,), max_condition=1)
    with pytest.raises(ValueError, match=r"condition_sizes must be a non-empty sequence"):
        conditional_mutual_information(frame, "mu", "g", ["h", "k"], condition_sizes=())
    with pytest.raises(ValueError, match=r"gap column 'gap' is not in the frame"):
        conditional_mutual_information(frame, "mu", "gap", ["h", "k"])
    with pytest.raises(ValueError, match=r"axes must not repeat a column, got \['h', 'h'\]"):
        conditional_mutual_information(frame, "mu", "g", ["h", "h"])


def _coupled(seeds=3, seed=16):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        list(itertools.product(range(5), range(5), range(seeds))), columns=["a", "b", "seed"]
    )
    frame["gap"] = 0.05 * frame["a"] + 0.04 * frame["b"] + rng.normal(scale=0.002, size=len(frame))
    return frame, rng


def test_robust_sign_error_on_synthetic_populations():
    frame, rng = _coupled(seeds=4)
    frame["good"] = 2 * frame["gap"] + 1
    frame["bad"] = -frame["gap"]
    frame["random"] = rng.normal(size=len(frame))
    kwargs = {"environment_columns": ["a", "b"], "num_test": 10_000}
    good = robust_sign_error(frame, "good", "gap", **kwargs)
    assert (good["mean"], good["robust"], good["max_over_axes"]) == (0.0, 0.0, 0.0)
    assert good["per_axis"] == {"a": 0.0, "b": 0.0}
    assert (good["n_environments"], good["n_environments_eligible"], good["min_ess"]) == (100, 100, 12.0)
    # Pairs differ in exactly one of a, b: per axis 5 groups × C(5, 2) configuration pairs × 4² seed pairs.
    assert good["n_pairs_per_axis"] == {"a": 800, "b": 800}
    assert good["n_pairs"] == 1600
    assert good["n_dropped"] == 0
    assert good["n_effective"] == 1600.0
    assert len(good["environments"]) == 2 * 5 * 10
    assert (good["environments"]["n_pairs"] == 16).all()
    bad = robust_sign_error(frame, "bad", "gap", **kwargs)
    assert (bad["mean"], bad["robust"]) == (1.0, 1.0)
    coin = robust_sign_error(frame, "random", "gap", **kwargs)
    assert abs(coin["mean"] - 0.5) < 0.1
    assert coin["max_over_axes"] == max(coin["per_axis"].values())
    assert coin["max_over_axes"] >= coin["mean"]
    # The paper's robust sign error: the worst single environment (each has 16 pairs ≥ 12 here).
    assert coin["robust"] == coin["environments"]["sign_error"].max()
    assert coin["robust"] > coin["max_over_axes"]
    assert coin["worst_environment"] == coin["robust"]  # the former name, kept
    worst = coin["robust_environment"]
    assert worst["sign_error"] == coin["robust"]
    assert worst["n_effective"] == 16.0
    assert worst["axis"] in ("a", "b")


def test_robust_sign_error_needs_min_ess_per_environment():
    assert inspect.signature(robust_sign_error).parameters["min_ess"].default == 12  # Dziugaite et al.
    frame, rng = _coupled(seeds=3)  # 3 × 3 = 9 pairs per environment, below 12
    frame["random"] = rng.normal(size=len(frame))
    kwargs = {"environment_columns": ["a", "b"], "num_test": 10_000}
    default = robust_sign_error(frame, "random", "gap", **kwargs)
    assert math.isnan(default["robust"])
    assert default["robust_environment"] is None
    assert (default["n_environments"], default["n_environments_eligible"]) == (100, 0)
    assert not math.isnan(default["max_over_axes"])  # pooled per axis: still defined
    nine = robust_sign_error(frame, "random", "gap", min_ess=9, **kwargs)
    assert nine["n_environments_eligible"] == 100
    assert nine["robust"] == nine["environments"]["sign_error"].max()
    # An environment left with fewer resolvable pairs (the others dropped by the Hoeffding filter) drops out.
    frame.loc[(frame["a"] == 1) & (frame["b"] == 0), "gap"] = frame.loc[
        (frame["a"] == 0) & (frame["b"] == 0), "gap"
    ].to_numpy()
    thinned = robust_sign_error(frame, "random", "gap", min_ess=9, **kwargs)
    assert thinned["n_environments_eligible"] == 99


def test_robust_sign_error_drops_pairs_the_test_set_cannot_resolve():
    n, delta = 2000, 0.05
    width = 2 * math.sqrt(math.log(2 / delta) / (2 * n))  # two Hoeffding half-widths
    for factor, kept in ((0.99, 0), (1.01, 1)):
        frame = pd.DataFrame({"a": [0, 1], "gap": [0.10, 0.10 + factor * width], "mu": [1.0, 2.0]})
        result = robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=n, delta=delta)
        assert result["threshold"] == pytest.approx(width, rel=1e-12)
        assert (result["n_pairs"], result["n_dropped"], result["n_effective"]) == (1, 1 - kept, float(kept))
        assert result["mean"] == 0.0 if kept else math.isnan(result["mean"])
    # A measure that ties counts as half an error.
    frame = pd.DataFrame({"a": [0, 1], "gap": [0.1, 0.3], "mu": [1.0, 1.0]})
    assert robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=n)["mean"] == 0.5


def test_robust_sign_error_soft_weights_and_kish_sample_size():
    n = 10_000
    frame = pd.DataFrame({"a": [0, 0, 1, 1], "seed": [0, 1, 0, 1], "gap": [0.100, 0.105, 0.127, 0.135]})
    frame["mu"] = [0.0, 2.5, 3.0, 2.0]  # orders the pair (1, 3) the wrong way, the others right
    result = robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=n, weighting="soft")
    differences = np.array([0.027, 0.035, 0.022, 0.030])  # pairs (0, 2), (0, 3), (1, 2), (1, 3)
    weights = np.clip((1 - 2 * np.exp(-2 * n * (differences / 2) ** 2)) ** 2 - 0.5, 0, None)
    assert weights.min() > 0
    assert weights.max() < 0.5
    assert result["n_effective"] == pytest.approx(weights.sum() ** 2 / (weights**2).sum(), rel=1e-12)
    assert result["mean"] == pytest.approx(weights[3] / weights.sum(), rel=1e-12)
    assert result["environments"]["weight"].item() == pytest.approx(weights.sum(), rel=1e-12)
    assert math.isnan(result["threshold"])


def test_robust_sign_error_rejects_bad_input():
    frame = pd.DataFrame({"a": [0, 1], "gap": [0.1, 0.3], "mu": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"fractions, not percent.*got max \|gap\| = 30"):
        robust_sign_error(
            frame.assign(gap=[10.0, 30.0]), "mu", "gap", environment_columns=["a"], num_test=100
        )
    with pytest.raises(ValueError, match=r"num_test must be a positive integer .*got 0"):
        robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=0)
    with pytest.raises(ValueError, match=r"delta must be a probability in \(0, 1\), got 1.0"):
        robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=100, delta=1.0)
    with pytest.raises(ValueError, match=r"weighting must be one of \('hard', 'soft'\), got 'kish'"):
        robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=100, weighting="kish")
    with pytest.raises(ValueError, match=r"environment_columns \['lr'\] are not columns of the frame"):
        robust_sign_error(frame, "mu", "gap", environment_columns=["lr"], num_test=100)
    with pytest.raises(ValueError, match=r"min_ess must be a non-negative number, got -1"):
        robust_sign_error(frame, "mu", "gap", environment_columns=["a"], num_test=100, min_ess=-1)


def test_seed_interval_of_a_fraction_stays_inside_zero_one():
    interval = paper_stats.seed_interval([0.2, 0.9, 0.99], fraction=True)
    assert 0 < interval.low < interval.estimate < interval.high < 1
    plain = paper_stats.seed_interval([0.2, 0.9, 0.99])
    assert plain.high > 1  # the log scale does not know the bound
    assert paper_stats.seed_interval([1.0, 1.0], fraction=True).estimate == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        paper_stats.seed_interval([0.5, 1.5], fraction=True)
