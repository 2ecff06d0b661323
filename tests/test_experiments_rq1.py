"""RQ1's experiments module: sizes, summaries on hand-checked tables, every verdict outcome on synthetic
tables, and one toy end-to-end run of each experiment (cached)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from landscape.paper.experiments import rq1, rq1_tasks
from landscape.paper.verdicts import NOT_SUPPORTED, NOT_TESTABLE, REFUTED, SUPPORTED

RESAMPLES = 400


# ------------------------------------------------------------------------------------------- synthetic tables


def grid_table(*, lambda_max, normalized=None, gap=None, reached=None, seeds=(0, 1, 2), noise=0.05, rng=0):
    """A synthetic grid: B in (16, 64, 256, 1024) × η in (0.05, 0.1, 0.2) × seeds; measures are functions of
    (B, η, seed) times log-normal noise."""
    rng = np.random.default_rng(rng)
    rows = []
    for b in (16, 64, 256, 1024):
        for lr in (0.05, 0.1, 0.2):
            for s in seeds:
                t = lr / b
                hit = True if reached is None else reached(b, lr, s)
                rows.append({
                    "batch_size": b, "lr": lr, "seed": s, "temperature": t, "reached": hit,
                    "status": "reached" if hit else "finished", "steps": 100.0, "train_seconds": 1.0,
                    "train_loss": 0.05, "train_acc": 1.0, "test_loss": 1.0, "test_acc": 0.6,
                    "gap": gap(t, b) * math.exp(noise * rng.normal()) if gap else 0.4,
                    "lambda_max": lambda_max(t, b) * math.exp(noise * rng.normal()),
                    "trace_per_param": 1.0 + rng.random(),
                    "normalized_sharpness": (normalized or lambda_max)(t, b) * math.exp(noise * rng.normal()),
                    "adaptive_sharpness": 1.0 + rng.random(),
                })  # fmt: skip
    return pd.DataFrame(rows)


def eos_table(
    ratios: dict[tuple[str, str, float], list[float]], *, diverged=(), catapults=()
) -> pd.DataFrame:
    """Runs shaped like `rq1.eos_runs`: one row per (arch, loss, lr) and seed with the given EoS ratios;
    a run reached the onset when its ratio is ≥ 0.9; (arch, loss, lr, seed) in `diverged` diverged, in
    `catapults` catapulted."""
    rows = []
    for (arch, loss, lr), values in ratios.items():
        for s, v in enumerate(values):
            rows.append({"arch": arch, "loss": loss, "lr": lr, "seed": s, "cell": f"{arch}/{loss}/{lr:g}",
                         "diverged": (arch, loss, lr, s) in diverged, "reached": v >= rq1.EOS_ONSET,
                         "late_ratio": v, "eos_ratio": v, "phase_ratio_mean": v if v >= rq1.EOS_ONSET else math.nan,
                         "ratio_mean": v, "catapult": (arch, loss, lr, s) in catapults,
                         "dense_points": 10 if v >= rq1.EOS_ONSET else 0, "alternation": 0.5,
                         "dense_ratio": v if v >= rq1.EOS_ONSET else math.nan})  # fmt: skip
    return pd.DataFrame(rows)


def ends_table(sgd_end, gd_end, *, sgd_loss=None, gd_loss=None, status=None, away=()) -> pd.DataFrame:
    """Escape ends: λmax at the compared points per seed, their training losses (default 0.05 for both),
    statuses, and the (mode, seed) runs in `away` not back at the target."""
    rows = []
    for mode, values, losses in (("SGD", sgd_end, sgd_loss), ("GD", gd_end, gd_loss)):
        for s, v in enumerate(values):
            loss = 0.05 if losses is None else losses[s]
            rows.append({"mode": mode, "seed": s, "lmax_start": 10.0, "lmax_end": v, "lmax_matched": v,
                         "train_end": loss, "train_matched": loss, "returned": (mode, s) not in away,
                         "status": (status or {}).get((mode, s), "finished")})  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------ sizes


def test_profiles_are_consistent():
    for name, sizes in rq1.PROFILES.items():
        assert sizes.escape_lr in sizes.lrs, name
        assert sizes.small_batch < sizes.large_batch
        assert set(sizes.eos) == {"mlp", "transformer"}
    # the paper profile raised the seeds of the cheap MLP runs, not of the Transformer's
    paper = rq1.PROFILES["paper"]
    assert len(paper.seeds) == len(paper.eos_mlp.seeds) == 5
    assert len(paper.eos_transformer.seeds) == 3


def test_sizes_reject_an_escape_lr_outside_the_grid_and_alphas_without_one():
    smoke = rq1.PROFILES["smoke"]
    with pytest.raises(ValueError, match="escape_lr"):
        replace(smoke, escape_lr=0.3)
    with pytest.raises(ValueError, match="alphas"):
        replace(smoke, alphas=(0.5, 2.0))
    with pytest.raises(ValueError, match="loss"):
        smoke.eos_mlp.lrs("hinge")


# -------------------------------------------------------------------------------------------------- summaries


def test_eos_runs_summarises_each_trace():
    steps = [0, 10, 20, 30]
    traces = pd.DataFrame({
        "step": steps * 3, "lambda_max": [1.0, 9.5, 10.5, 2.0, 1.0, 2.0, 3.0, 4.0, 1.0, 12.0, 20.0, 30.0],
        "train_loss": [2.0, 1.0, 0.5, 0.1] * 3, "arch": "mlp", "loss": "ce",
        "lr": [0.2] * 4 + [0.1] * 4 + [0.3] * 4, "seed": 0,
        "status": ["finished"] * 8 + ["diverged"] * 4,
    })  # fmt: skip
    runs = rq1.eos_runs(traces).set_index("lr")
    # η = 0.2: ratios 0.1, 0.95, 1.05, 0.2; onset at step 10, phase 10..20; last 25 % = the last point
    assert runs.loc[0.2, "reached"]
    assert runs.loc[0.2, "onset_step"] == 10
    assert runs.loc[0.2, "phase_ratio_mean"] == pytest.approx(1.0)
    assert runs.loc[0.2, "ratio_mean"] == pytest.approx((0.95 + 1.05 + 0.2) / 3)
    assert runs.loc[0.2, "late_ratio"] == pytest.approx(0.2)
    assert runs.loc[0.2, "final_train_loss"] == pytest.approx(0.1)
    assert runs.loc[0.2, "cell"] == "mlp/ce/0.2"
    assert not runs.loc[0.1, "reached"]  # ratios 0.05 .. 0.2
    assert runs.loc[0.1, "late_ratio"] == pytest.approx(0.2)  # defined without the onset
    assert runs.loc[0.3, "diverged"]
    assert not runs.loc[0.2, "diverged"]
    cells = rq1.eos_cells(rq1.eos_runs(traces)).set_index("lr")
    assert cells.loc[[0.2, 0.1, 0.3], "reached"].tolist() == [1, 0, 0]  # the diverged run is not counted
    assert cells.loc[0.3, "diverged"] == 1
    assert math.isnan(cells.loc[0.3, "ratio"])


def test_eos_ratio_interval_uses_every_non_diverged_run_and_clusters_by_setting():
    runs = eos_table({("mlp", "mse", 0.1): [1.0, 1.0], ("mlp", "mse", 0.2): [1.2, 0.4],
                      ("mlp", "mse", 0.3): [5.0, 1.1], ("mlp", "ce", 0.1): [2.0, 2.0]},
                     diverged={("mlp", "mse", 0.3, 0)})  # fmt: skip
    ci = rq1.eos_ratio_interval(runs, loss="mse", n_resamples=RESAMPLES)
    # below 10 settings: the mean of the settings' means; the run at 0.4 (onset not reached) enters, the
    # diverged one (5.0) does not
    assert ci.estimate == pytest.approx((1.0 + 0.8 + 1.1) / 3)
    assert ci.n == 3  # clusters, not runs
    assert rq1.eos_ratio_interval(runs, loss="mse", arch="transformer") is None
    reached = rq1.eos_reached_interval(runs, loss="mse")
    assert reached.estimate == pytest.approx((1.0 + 0.5 + 1.0) / 3)


def test_keskar_pairs_match_seeds_at_step_sizes_where_both_batches_reached():
    runs = grid_table(lambda_max=lambda t, b: 1.0 + (b == 1024), noise=0.0,
                      reached=lambda b, lr, s: not (b == 1024 and lr == 0.05 and s == 2))  # fmt: skip
    pairs = rq1.keskar_pairs(runs, 16, 1024)
    assert sorted(pairs["lr"].unique()) == [0.1, 0.2]  # at η = 0.05 one large-batch seed missed the target
    assert len(pairs) == 6
    assert pairs["lambda_max_ratio"].tolist() == pytest.approx([2.0] * 6)
    assert pairs["acc_diff"].tolist() == pytest.approx([0.0] * 6)


def test_keskar_intervals_resample_seeds_not_pairs():
    runs = grid_table(lambda_max=lambda t, b: 1.0 + (b == 1024), seeds=(0, 1, 2, 3))
    pairs = rq1.keskar_pairs(runs, 16, 1024)
    assert len(pairs) == 12
    intervals = rq1.keskar_intervals(pairs, n_resamples=RESAMPLES)
    assert intervals["lambda_max"].n == 4  # seeds, not the 12 pairs
    pooled = math.exp(np.log(pairs["lambda_max_ratio"]).mean())  # balanced: = the geometric mean of all pairs
    assert intervals["lambda_max"].estimate == pytest.approx(pooled)
    assert rq1.keskar_intervals(pairs[pairs["seed"] == 0]) is None


def test_grid_cells_average_only_matched_runs_and_count_them():
    runs = grid_table(lambda_max=lambda t, b: 1.0, noise=0.0, reached=lambda b, lr, s: s != 0)
    runs.loc[runs["seed"] == 0, "lambda_max"] = 100.0  # the unmatched runs must not enter the means
    runs.loc[(runs["batch_size"] == 16) & (runs["lr"] == 0.05), "reached"] = False
    cells = rq1.grid_cells(runs).set_index(["batch_size", "lr"])
    assert len(cells) == 12
    assert cells["matched"].tolist() == [0] + [2] * 11
    assert cells["seeds"].tolist() == [3] * 12
    assert cells["lambda_max"].iloc[1:].tolist() == pytest.approx([1.0] * 11)
    assert math.isnan(cells.loc[(16, 0.05), "lambda_max"])


def test_matched_runs_raises_when_too_few_reached():
    runs = grid_table(lambda_max=lambda t, b: 1.0, reached=lambda b, lr, s: b == 16 and lr == 0.05 and s < 2)
    with pytest.raises(RuntimeError, match="only 2 grid runs"):
        rq1.matched_runs(runs)


def test_escape_ends_and_paired_ratio():
    traces = pd.DataFrame({
        "step": [0, 10, 20] * 2, "lambda_max": [8.0, 6.0, 4.0, 8.0, 8.0, 8.0],
        "train_loss": [0.1, 0.5, 0.3, 0.1, 0.09, 0.08], "test_loss": [1.0, 1.2, 1.1, 1.0, 1.0, 0.9],
        "test_acc": [0.5, 0.4, 0.45, 0.5, 0.5, 0.52], "mode": ["SGD"] * 3 + ["GD"] * 3, "seed": 0,
        "status": "finished",
    })  # fmt: skip
    ends = rq1.escape_ends(traces, target_loss=0.2).set_index("mode")
    assert ends.loc["SGD", "lmax_ratio"] == pytest.approx(0.5)
    assert ends.loc["SGD", "train_peak"] == pytest.approx(0.5)
    assert ends["left"].to_dict() == {"GD": False, "SGD": True}  # 0.5 > 2 × 0.1; GD never rises
    assert ends.loc["GD", "train_end"] == pytest.approx(0.08)
    assert ends["returned"].to_dict() == {"GD": True, "SGD": False}  # SGD ends at 0.3 > 0.2
    assert ends["end_step"].tolist() == [20, 20]
    # SGD is compared at its end; GD at its point of the closest training loss to SGD's end (0.3): step 0
    assert (ends.loc["SGD", "lmax_matched"], ends.loc["SGD", "step_matched"]) == (4.0, 20)
    assert (ends.loc["GD", "train_matched"], ends.loc["GD", "step_matched"]) == (0.1, 0)
    assert rq1.escape_ends(traces)["returned"].all()  # no target: no rule
    assert rq1.escape_interval(ends.reset_index()) is None  # one seed: no interval
    ci = rq1.escape_interval(ends_table([4.0, 2.0], [8.0, 8.0]), n_resamples=RESAMPLES)
    assert ci.estimate == pytest.approx(math.sqrt(0.5 * 0.25))  # geometric mean of the per-seed ratios
    # a diverged continuation drops its seed from the pairs
    status = {("SGD", 1): "diverged"}
    assert rq1.escape_interval(ends_table([4.0, 2.0], [8.0, 8.0], status=status)) is None


def test_rescaling_spread():
    table = pd.DataFrame({"alpha": [0.5, 1.0, 2.0], "train_loss": [0.1, 0.1, 0.1001],
                          "lambda_max": [4.0, 1.0, 0.5],
                          "normalized_sharpness": [2.0, 2.0, 2.0]})  # fmt: skip
    spread = rq1.rescaling_spread(table)
    assert spread["lambda_max"] == pytest.approx(8.0)
    assert spread["normalized_sharpness"] == pytest.approx(1.0)
    assert spread["loss"] == pytest.approx(1e-4)


# --------------------------------------------------------------------------------------------------- verdicts


def test_verdict_eos_each_outcome():
    ok = eos_table({("mlp", "mse", lr): [0.99, 1.0, 1.01] for lr in (0.1, 0.2, 0.3, 0.4)})
    high = eos_table({("mlp", "ce", lr): [1.5, 1.6, 1.55] for lr in (0.1, 0.2, 0.3, 0.4)})
    wide = eos_table({("mlp", "mse", 0.1): [0.8] * 3, ("mlp", "mse", 0.2): [1.3] * 3,
                      ("mlp", "mse", 0.3): [0.9] * 3, ("mlp", "mse", 0.4): [1.25] * 3})  # fmt: skip
    alone = eos_table({("mlp", "ce", 0.1): [1.0, 1.0], ("mlp", "ce", 0.2): [1.0, 1.0]},
                      diverged={("mlp", "ce", 0.2, 0), ("mlp", "ce", 0.2, 1)})  # fmt: skip
    assert rq1.verdict_eos(ok, "mse", n_resamples=RESAMPLES).outcome == SUPPORTED
    assert rq1.verdict_eos(high, "ce", n_resamples=RESAMPLES).outcome == REFUTED
    assert rq1.verdict_eos(wide, "mse", n_resamples=RESAMPLES).outcome == NOT_SUPPORTED
    single = rq1.verdict_eos(alone, "ce", n_resamples=RESAMPLES)
    assert single.outcome == NOT_TESTABLE
    assert "of 4 runs 2 diverged" in single.reason
    assert rq1.verdict_eos(ok, "ce").outcome == NOT_TESTABLE  # no cross-entropy runs at all


def test_verdict_eos_decides_every_setting_and_keeps_loss_spikes():
    cells = {("mlp", "ce", lr): [0.99, 1.0, 1.01] for lr in (0.1, 0.2, 0.3, 0.4)}
    cells[("mlp", "ce", 1.0)] = [2.7, 2.6, 2.8]
    mixed = eos_table(cells, catapults={("mlp", "ce", 1.0, s) for s in range(3)})
    verdict = rq1.verdict_eos(mixed, "ce", n_resamples=RESAMPLES)
    # the mean over the five settings (1.34) would hide it; per setting, one setting far above the band
    assert verdict.outcome == NOT_SUPPORTED
    assert "0 diverged (left out) and 3 had a loss spike (kept)" in verdict.reason
    assert "mlp/ce/1: refuted" in verdict.reason
    intervals = rq1.eos_setting_intervals(mixed, "ce")
    assert list(intervals) == [f"mlp/ce/{lr:g}" for lr in (0.1, 0.2, 0.3, 0.4, 1.0)]
    assert intervals["mlp/ce/1"].level == pytest.approx(1 - 0.05 / 5)  # family level over the settings
    numbers_like = {lr: [0.99, 1.0, 1.01] for lr in (0.1, 0.2, 0.3, 0.4)}
    fine = eos_table({("mlp", "ce", lr): v for lr, v in numbers_like.items()})
    assert rq1.verdict_eos(fine, "ce", n_resamples=RESAMPLES).outcome == SUPPORTED
    extra = {"onset_step": 10.0, "ratio_max": 1.0, "final_train_loss": 0.1}
    table = rq1.eos_cells(mixed.assign(**extra)).set_index("lr")
    assert table.loc[1.0, "catapults"] == 3
    assert table.loc[1.0, "ratio"] == pytest.approx(2.7)  # kept
    assert table.loc[0.1, "ratio"] == pytest.approx(1.0)
    assert table.loc[0.1, "ratio_ci"].startswith("1 [")


def test_eos_runs_dense_window_catapult_and_alternation():
    # sparse points every 10 steps; onset (ratio ≥ 0.9 at η = 0.2: λmax ≥ 9) at step 20; a dense window from
    # step 10 (the last sparse point before it) whose λmax alternates 9.5 / 10.5 and the loss 1.0 / 0.9
    sparse = pd.DataFrame({"step": [0, 10, 20, 30], "lambda_max": [2.0, 5.0, 9.5, 9.5],
                           "train_loss": [2.0, 1.5, 1.0, 0.9], "dense": False})  # fmt: skip
    steps = np.arange(10, 31)
    dense = pd.DataFrame({"step": steps, "lambda_max": np.where(steps % 2, 10.5, 9.5),
                          "train_loss": np.where(steps % 2, 1.0, 0.9), "dense": True})  # fmt: skip
    trace = pd.concat([sparse, dense]).assign(arch="mlp", loss="ce", lr=0.2, seed=0, status="finished")
    run = rq1.eos_runs(trace).iloc[0]
    assert run["onset_step"] == 20
    assert run["dense_points"] == 11  # steps 20..30
    assert run["dense_ratio"] == pytest.approx((5 * 1.05 + 6 * 0.95) / 11)
    assert run["eos_ratio"] == run["late_ratio"] == pytest.approx(0.95)  # the sparse grid: aliased, reported
    assert run["dense_ratio"] != run["eos_ratio"]  # the window's mean is descriptive, not the run's EoS ratio
    assert run["alternation"] == pytest.approx(1.0)
    assert not run["catapult"]
    spike = trace.copy()
    spike.loc[(spike["step"] == 30) & ~spike["dense"], "train_loss"] = 5.0  # 5 > 2 × the lowest loss so far
    assert rq1.eos_runs(spike).iloc[0]["catapult"]
    dense_spike = trace.copy()  # a spike seen only by the every-step window is not counted: runs without a
    dense_spike.loc[(dense_spike["step"] == 25) & dense_spike["dense"], "train_loss"] = (
        5.0  # window can't show one
    )
    assert not rq1.eos_runs(dense_spike).iloc[0]["catapult"]
    # without a window the EoS ratio is the same
    alone = rq1.eos_runs(trace[~trace["dense"]]).iloc[0]
    assert alone["eos_ratio"] == alone["late_ratio"] == run["eos_ratio"]
    assert math.isnan(alone["alternation"])


def test_verdict_eos_does_not_condition_on_reaching_the_onset():
    # half the runs stay far below the onset: the old rule (reached runs only) saw ratios of 1.0 and
    # supported the claim; over all non-diverged runs every setting's interval straddles the band's edge
    low = eos_table({("mlp", "mse", lr): [1.0, 0.3, 1.0, 0.3] for lr in (0.1, 0.2, 0.3, 0.4)})
    assert rq1.verdict_eos(low, "mse", n_resamples=RESAMPLES).outcome == NOT_SUPPORTED
    lower = eos_table({("mlp", "mse", lr): [0.3, 0.31, 0.29, 0.3] for lr in (0.1, 0.2, 0.3, 0.4)})
    assert rq1.verdict_eos(lower, "mse", n_resamples=RESAMPLES).outcome == REFUTED
    # a diverged run with a huge ratio does not pull an otherwise supported claim out of the band
    ok = eos_table({("mlp", "mse", lr): [0.99, 1.0, 1.01, 50.0] for lr in (0.1, 0.2, 0.3, 0.4)},
                   diverged={("mlp", "mse", lr, 3) for lr in (0.1, 0.2, 0.3, 0.4)})  # fmt: skip
    assert rq1.verdict_eos(ok, "mse", n_resamples=RESAMPLES).outcome == SUPPORTED


def correlations_of(runs):
    rq1.matched_runs(runs)
    return rq1.grid_correlations(rq1.grid_cells(runs), n_resamples=RESAMPLES)


def test_grid_correlations_recover_a_monotone_relation_over_cells():
    corr = correlations_of(grid_table(lambda_max=lambda t, b: 1 / t, gap=lambda t, b: t))
    row = corr[(corr["x"] == "temperature") & (corr["y"] == "lambda_max") & (corr["control"] == "")].iloc[0]
    assert row["estimate"] < -0.9
    assert row["high"] < 0
    assert row["n"] == 12  # units: the grid cells
    partial = corr[corr["control"] == "log_lr"]
    assert len(partial) == 2
    assert partial["level"].tolist() == pytest.approx([0.975, 0.975])
    assert len(corr) == 8 + 2 * len(rq1.MEASURES) + 2 + len(rq1.MEASURES)
    given_temperature = corr[corr["control"] == "log_temperature"]
    assert given_temperature["y"].tolist() == ["gap"] * len(rq1.MEASURES)


def test_verdict_flat_and_generalise_each_outcome():
    def sharp_at_high_noise(t, b):
        return t

    flatter = correlations_of(grid_table(lambda_max=lambda t, b: 1 / t, gap=lambda t, b: 1 / t))
    sharper = correlations_of(grid_table(lambda_max=sharp_at_high_noise, gap=lambda t, b: t))
    mixed = correlations_of(grid_table(lambda_max=lambda t, b: 1 / t, normalized=sharp_at_high_noise,
                                       gap=lambda t, b: 1.0, noise=0.5))  # fmt: skip
    assert rq1.verdict_flat(flatter).outcome == SUPPORTED
    assert rq1.verdict_flat(sharper).outcome == REFUTED
    assert rq1.verdict_flat(mixed).outcome == NOT_SUPPORTED
    # normalised sharpness against the gap: 1/t with 1/t and t with t rise together, 1/t with t does not
    # the gap claim is decided beyond η/B: where η/B sets both the measure and the gap, what is left of either
    # is noise (not supported), as it is for a measure that varies beyond η/B but not with the gap; a measure
    # and a gap that share B beyond η/B are supported
    assert rq1.verdict_generalise(flatter).outcome == NOT_SUPPORTED
    independent = correlations_of(grid_table(lambda_max=lambda t, b: 1 / t, normalized=lambda t, b: 1.0,
                                             gap=lambda t, b: 1 / t, noise=0.3, rng=2))  # fmt: skip
    assert rq1.verdict_generalise(independent).outcome == NOT_SUPPORTED
    beyond = correlations_of(
        grid_table(lambda_max=lambda t, b: 1 / t, normalized=lambda t, b: b, gap=lambda t, b: b)
    )
    assert rq1.verdict_generalise(beyond).outcome == SUPPORTED
    assert rq1._correlation(beyond, "normalized_sharpness", "gap", "log_temperature")["low"] > 0
    refuted = correlations_of(grid_table(lambda_max=lambda t, b: 1 / t, normalized=lambda t, b: b,
                                         gap=lambda t, b: 1 / b))  # fmt: skip
    assert rq1.verdict_generalise(refuted).outcome == REFUTED
    unrelated = correlations_of(
        grid_table(lambda_max=lambda t, b: 1.0, gap=lambda t, b: 1.0, noise=0.3, rng=3)
    )
    assert rq1.verdict_generalise(unrelated).outcome == NOT_SUPPORTED


def test_granulated_table_and_the_generalise_verdict_with_it():
    # a 2 × 2 × 2 factorial per seed; normalised sharpness orders the gap along every axis, λmax reverses it
    # along weight decay alone
    rows = []
    rng = np.random.default_rng(0)
    for s in range(4):
        for lr in (0.05, 0.1):
            for b in (16, 64):
                for wd in (0.0, 5e-4):
                    gap = lr * 10 + 1 / b + wd * 400 + 0.001 * rng.random()
                    rows.append({"seed": s, "lr": lr, "batch_size": b, "weight_decay": wd, "reached": True,
                                 "gap": gap, "normalized_sharpness": gap, "lambda_max": lr * 10 + 1 / b - wd * 400,
                                 "trace_per_param": 1.0, "adaptive_sharpness": rng.random()})  # fmt: skip
    runs = pd.DataFrame(rows)
    table = rq1.granulated_table(runs).set_index("measure")
    assert table.loc["normalized_sharpness", "Psi"] == pytest.approx(1.0)
    assert (table.loc["normalized_sharpness", "Psi_low"], table.loc["normalized_sharpness", "Psi_high"]) == (
        1.0,
        1.0,
    )
    lmax = table.loc["lambda_max"]
    assert (lmax["psi_lr"], lmax["psi_batch_size"], lmax["psi_weight_decay"]) == pytest.approx(
        (1.0, 1.0, -1.0)
    )
    assert lmax["Psi"] == pytest.approx(1 / 3)
    assert table.loc["trace_per_param", "Psi"] == 0.0  # a constant measure: every pair tied
    assert table.loc["normalized_sharpness", "seeds"] == 4
    beyond = correlations_of(
        grid_table(lambda_max=lambda t, b: 1 / t, normalized=lambda t, b: b, gap=lambda t, b: b)
    )
    granulated = table.reset_index()
    assert rq1.verdict_generalise(beyond, granulated).outcome == SUPPORTED
    against = granulated.assign(Psi=-0.5, Psi_low=-0.8, Psi_high=-0.2)
    both = rq1.verdict_generalise(beyond, against)
    assert both.outcome == NOT_SUPPORTED  # the two parts disagree
    assert "Ψ(normalised sharpness, gap) over lr, batch_size, weight_decay (4 seeds): refuted" in both.reason
    one_seed = rq1.granulated_table(runs[runs["seed"] == 0])
    assert rq1.verdict_generalise(beyond, one_seed).outcome == NOT_TESTABLE
    numbers = rq1.granulated_numbers(rq1.PROFILES["paper"], granulated)
    assert numbers["psi_normalized_sharpness"] == "1 [1.00, 1.00]"
    assert numbers["psi_lambda_max_weight_decay"] == pytest.approx(-1.0)


def test_stability_fit_recovers_the_exponents():
    # λmax = 2/η exactly (the stability bound), then λmax ∝ (η/B)^−1 (the temperature picture)
    bound = rq1.stability_fit(rq1.grid_cells(grid_table(lambda_max=lambda t, b: 2 / (t * b), noise=0.0)))
    assert bound["lr_exponent"] == pytest.approx(-1.0)
    assert bound["batch_exponent"] == pytest.approx(0.0, abs=1e-9)
    assert bound["ratio_min"] == pytest.approx(1.0)
    assert bound["above_one"] == 0
    temp = rq1.stability_fit(rq1.grid_cells(grid_table(lambda_max=lambda t, b: 1 / t, noise=0.05)))
    assert temp["lr_exponent_low"] < -0.9
    assert temp["batch_exponent"] == pytest.approx(1.0, abs=0.1)
    assert temp["n"] == 12
    few = rq1.stability_fit(rq1.grid_cells(grid_table(lambda_max=lambda t, b: 1 / t)).head(3))
    assert math.isnan(few["lr_exponent"])


def test_verdict_flat_controls_for_the_step_size():
    # λmax set by η alone (≈ 2/η), not by the batch size: ρ(η/B, λmax) is negative, but given log η nothing
    # is left (the partial interval contains 0), so the flat-minima claim is not supported
    stability = correlations_of(grid_table(lambda_max=lambda t, b: 2 / (t * b), noise=0.1, rng=1))
    assert rq1._correlation(stability, "temperature", "lambda_max")["estimate"] < -0.25
    partial = rq1._correlation(stability, "temperature", "lambda_max", "log_lr")
    assert partial["low"] < 0 < partial["high"]
    assert rq1.verdict_flat(stability).outcome == NOT_SUPPORTED


def test_verdict_flat_not_testable_with_few_cells():
    runs = grid_table(lambda_max=lambda t, b: 1 / t, reached=lambda b, lr, s: b in (16, 64))  # 6 cells
    verdict = rq1.verdict_flat(correlations_of(runs))
    assert verdict.outcome == NOT_TESTABLE
    assert "6 grid cells" in verdict.reason
    with pytest.raises(ValueError, match="'gap'"):
        rq1.verdict_generalise(pd.DataFrame(columns=["x", "y", "control", "low", "high", "n"]))


def test_verdict_escape_each_outcome():
    gd = [10.0, 10.5, 9.8, 10.2, 10.1]

    def verdict(sgd, *, reached=5, **kwargs):
        ends = ends_table(sgd, gd, **kwargs)
        return rq1.verdict_escape(ends, starts_reached=reached, num_starts=5, n_resamples=RESAMPLES)

    assert verdict([5.0, 5.5, 4.8, 5.2, 5.1]).outcome == SUPPORTED
    assert verdict([20.0, 21.0, 19.0, 20.5, 20.2]).outcome == REFUTED
    assert verdict([5.0, 21.0, 9.0, 12.0, 10.0]).outcome == NOT_SUPPORTED
    missed = verdict([5.0, 5.5, 4.8, 5.2, 5.1], reached=4)
    assert missed.outcome == NOT_TESTABLE
    assert "4 of 5 start runs" in missed.reason
    unequal = verdict([5.0, 5.5, 4.8, 5.2, 5.1], sgd_loss=[0.2, 0.25, 0.22, 0.21, 0.3])
    assert unequal.outcome == NOT_TESTABLE
    assert "different training losses" in unequal.reason
    diverged = verdict([5.0, 5.5, 4.8, 5.2, 5.1], status={("SGD", 2): "diverged"})
    assert diverged.outcome == NOT_TESTABLE
    assert "1 of 10 continuations diverged" in diverged.reason
    away = verdict([5.0, 5.5, 4.8, 5.2, 5.1], away={("SGD", 3)})
    assert away.outcome == NOT_TESTABLE
    assert "1 of 10 continuations did not return" in away.reason
    few = rq1.verdict_escape(ends_table([5.0], [10.0]), starts_reached=1, num_starts=1)
    assert few.outcome == NOT_TESTABLE
    # flatter without leaving (drift inside the basin) is not an escape
    drift = ends_table([5.0, 5.5, 4.8, 5.2, 5.1], gd).assign(
        left=lambda d: (d["mode"] == "SGD") & (d["seed"] > 0)
    )
    stayed = rq1.verdict_escape(drift, starts_reached=5, num_starts=5, n_resamples=RESAMPLES)
    assert stayed.outcome == NOT_SUPPORTED
    assert "1 of 5 SGD continuations never left" in stayed.reason
    left = drift.assign(left=drift["mode"] == "SGD")
    assert (
        rq1.verdict_escape(left, starts_reached=5, num_starts=5, n_resamples=RESAMPLES).outcome == SUPPORTED
    )


def test_verdict_keskar_each_outcome():
    def verdict(lambda_max, normalized=None, reached=None):
        runs = grid_table(
            lambda_max=lambda_max, normalized=normalized, reached=reached, seeds=(0, 1, 2, 3, 4)
        )
        pairs = rq1.keskar_pairs(runs, 16, 1024)
        return rq1.verdict_keskar(rq1.keskar_intervals(pairs, n_resamples=RESAMPLES)).outcome

    assert verdict(lambda t, b: 1.0 + (b == 1024)) == SUPPORTED
    assert verdict(lambda t, b: 1.0 + (b == 16)) == REFUTED
    assert verdict(lambda t, b: 1.0 + (b == 1024), normalized=lambda t, b: 1.0 + (b == 16)) == NOT_SUPPORTED
    assert verdict(lambda t, b: 1.0 + (b == 1024), reached=lambda b, lr, s: b != 1024) == NOT_TESTABLE


def test_verdict_table_and_numbers_on_synthetic_tables():
    sizes = replace(rq1.PROFILES["paper"], n_resamples=RESAMPLES)
    runs = grid_table(lambda_max=lambda t, b: 1 / t, gap=lambda t, b: 1 / t, seeds=sizes.seeds)
    cells = rq1.grid_cells(runs)
    corr = rq1.grid_correlations(cells, n_resamples=RESAMPLES)
    pairs = rq1.keskar_pairs(runs, sizes.small_batch, sizes.large_batch)
    eos = eos_table({**{("mlp", "mse", lr): [1.0, 1.01, 0.99, 1.0] for lr in (0.1, 0.2, 0.3)},
                     **{("mlp", "ce", lr): [1.6, 1.62, 1.61, 1.6] for lr in (0.1, 0.2, 0.3)}})  # fmt: skip
    ends = ends_table([5.0, 5.5, 4.8, 5.2, 5.1], [10.0, 10.5, 9.8, 10.2, 10.1])
    table = rq1.verdict_table(sizes, eos, corr, pairs, ends, runs).set_index("key")
    assert table.loc["eos", "verdict"] == "supported for the squared loss, refuted for cross-entropy"
    assert table.loc["flat", "verdict"] == SUPPORTED
    assert table.loc["keskar", "verdict"] == SUPPORTED
    assert table.loc["escape", "verdict"] == SUPPORTED
    numbers = rq1.grid_numbers(sizes, runs, cells, corr, pairs)
    assert isinstance(numbers["rho_temp_lambda_max"], float)  # the paper's index formats it with :.2f
    assert numbers["rho_temp_lambda_max_ci"].startswith("[-")
    assert numbers["prho_temp_lambda_max"] < 0
    assert numbers["keskar_num_lrs"] == 3
    assert numbers["keskar_seeds"] == len(sizes.seeds)
    assert numbers["unmatched_cells"] == "none"


# ------------------------------------------------------------------------------------------------- end to end


def test_toy_experiments_run_and_are_cached(tmp_path, monkeypatch):
    smoke = rq1.PROFILES["smoke"]
    toy = replace(
        smoke, seeds=(0, 1), batch_sizes=(64, 512), lrs=(0.2,), target_loss=2.25, max_steps=40,
        check_every=10, curvature_samples=64, trace_matvecs=4, adaptive_steps=1, escape_lr=0.2,
        escape_batch=64, escape_steps=4, escape_every=2, escape_return_steps=6, threshold_lrs=(0.2, 2.0),
        threshold_steps=4, alphas=(1.0, 2.0),
        n_resamples=RESAMPLES,
        eos_mlp=rq1.EosSizes((0,), 32, 4, 2, (0.5,), (0.2,)),
        eos_transformer=rq1.EosSizes((0,), 16, 2, 2, (0.1,), (0.05,)),
    )  # fmt: skip
    runs, curves = rq1.run_grid(toy, tmp_path)
    assert len(runs) == 8  # 2 weight decays × 2 batch sizes × 2 seeds
    assert sorted(set(runs["weight_decay"])) == [0.0, 1e-3]
    base = rq1.base_grid(runs, toy)
    assert len(base) == 4
    assert (base["weight_decay"] == 0).all()
    decayed = runs[runs["weight_decay"] > 0].set_index(["batch_size", "seed"])["lambda_max"]
    assert not np.allclose(decayed, base.set_index(["batch_size", "seed"])["lambda_max"].loc[decayed.index])
    assert set(curves["batch_size"]) == {64, 512}
    assert (runs["lambda_max"] > 0).all()
    escape = rq1.run_escape(toy, tmp_path)
    assert set(escape["mode"]) == {"SGD", "GD"}
    for _, run in escape.groupby(["mode", "seed"]):
        fixed = run[run["phase"] == "escape"]
        assert fixed["step"].max() == 4
        # the return phase exists exactly when the fixed phase ended above the target, and stops at it
        above = fixed["train_loss"].iloc[-1] > toy.target_loss
        back = run[run["phase"] == "return"]
        assert (len(back) > 0) == above
        assert run["step"].max() <= 4 + 6
        assert (run["status"].iloc[0] == "reached") == (
            above and back["train_loss"].iloc[-1] <= toy.target_loss
        )
    # a target below every loss: the return phase runs its whole budget and the run is "finished"
    item = {"experiment": "escape", "mode": "SGD", "batch": 64, "seed": 0, "lr": 0.2, "steps": 4,
            **rq1._start_settings(toy, 0, 0, tmp_path), "track_every": 2, "tol": toy.tol,
            "curvature_samples": 64, "return_steps": 4, "target_loss": 1e-9}  # fmt: skip
    unreachable = rq1_tasks.escape_task(item)
    stability, threshold_traces = rq1.run_threshold(toy, tmp_path)
    assert len(stability) == 2
    assert (stability["lambda_max"] > 0).all()
    threshold = rq1.threshold_table(stability, threshold_traces)
    assert len(threshold) == 2 * 2 * len(toy.threshold_lrs)
    assert (
        threshold["threshold"] <= 2 / threshold["seed"].map(stability.set_index("seed")["lambda_max"])
    ).all()
    assert unreachable["status"] == "finished"
    assert [h["step"] for h in unreachable["history"] if h["phase"] == "return"] == [6, 8]
    rescaled = rq1.run_rescaling(toy, tmp_path)
    spread = rq1.rescaling_spread(rescaled)
    assert spread["normalized_sharpness"] == pytest.approx(1.0, abs=1e-3)  # rescaling-invariant
    assert spread["lambda_max"] > 1.01
    traces = rq1.run_eos(toy, tmp_path)
    assert len(rq1.eos_runs(traces)) == 4  # 2 architectures × 2 losses × 1 step size × 1 seed
    # the every-step window starts at the last tracked point before the onset and retraces the same GD path
    item = {"arch": "mlp", "loss": "ce", "lr": 0.5, "seed": 0, "num_train": 32, "steps": 6, "track_every": 2,
            "tol": toy.tol}  # fmt: skip
    sparse = rq1_tasks.eos_task(item)["history"]
    ratios = [h["lambda_max"] * 0.5 / 2 for h in sparse]
    onset = max(ratios[1:])  # first reached at a later tracked point, so t0 > 0
    first = next(h["step"] for h, r in zip(sparse, ratios, strict=True) if r >= onset)
    t0 = max(h["step"] for h in sparse if h["step"] < first)
    dense = [
        h for h in rq1_tasks.eos_task({**item, "dense_steps": 3, "onset": onset})["history"] if h.get("dense")
    ]
    assert [h["step"] for h in dense] == [t0, t0 + 1, t0 + 2, t0 + 3]
    at_t0 = next(h for h in sparse if h["step"] == t0)
    assert dense[0]["train_loss"] == pytest.approx(at_t0["train_loss"], rel=1e-6)
    assert dense[0]["lambda_max"] == pytest.approx(at_t0["lambda_max"], rel=1e-2)
    written = sorted(p.name for p in tmp_path.glob("*.json"))

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(rq1_tasks, "continue_training", no_training)
    again, _ = rq1.run_grid(toy, tmp_path)
    pd.testing.assert_frame_equal(again, runs)
    pd.testing.assert_frame_equal(rq1.run_escape(toy, tmp_path), escape)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == written


def test_docstring_examples():
    import doctest

    from landscape.paper import glue

    for module in (rq1, rq1_tasks, glue):
        assert doctest.testmod(module).failed == 0


# ------------------------------------------------------------------------------------------------ threshold


def _threshold_inputs(escapes, lrs=(0.1, 1.0), batches=(16, 1024), seeds=range(3)):
    """A start per seed with λmax = 4 and no non-uniformity (η* = 0.5 at every B), and one constant-loss trace
    per (seed, B, η) whose peak is 3 × the start's loss when `escapes(b, lr, seed)`."""
    stability = pd.DataFrame({"seed": list(seeds), "lambda_max": 4.0, "nonuniformity": 0.0, "eigen_residual": 0.0,
                              "start_loss": 0.05, "num_train": 4000})  # fmt: skip
    rows = [{"step": step, "train_loss": 0.15 if (escapes(b, lr, s) and step == 10) else 0.05, "batch_size": b,
             "lr": lr, "seed": s, "status": "finished"}
            for s in seeds for b in batches for lr in lrs for step in (0, 10, 20)]  # fmt: skip
    return stability, pd.DataFrame(rows)


def test_threshold_table_and_verdict():
    stability, traces = _threshold_inputs(lambda b, lr, s: lr > 0.5)
    table = rq1.threshold_table(stability, traces)
    assert len(table) == 12
    assert table["threshold"].tolist() == pytest.approx([0.5] * 12)  # s_v = 0: the GD limit 2/λmax at every B
    assert table["agree"].all()
    assert table["escaped"].sum() == 6
    assert rq1.verdict_threshold(table, n_resamples=RESAMPLES).outcome == SUPPORTED
    # escape at the wrong step size everywhere: refuted
    wrong = rq1.threshold_table(*_threshold_inputs(lambda b, lr, s: lr < 0.5))
    assert rq1.verdict_threshold(wrong, n_resamples=RESAMPLES).outcome == REFUTED
    # nothing escapes: the grid does not straddle the threshold
    none = rq1.threshold_table(*_threshold_inputs(lambda b, lr, s: False))
    verdict = rq1.verdict_threshold(none, n_resamples=RESAMPLES)
    assert verdict.outcome == NOT_TESTABLE
    assert "0 of 12 continuations escaped" in verdict.reason
    # a diverged run left the minimum
    stability, traces = _threshold_inputs(lambda b, lr, s: False)
    traces.loc[(traces["lr"] == 1.0) & (traces["step"] == 20), "train_loss"] = math.nan
    traces.loc[traces["lr"] == 1.0, "status"] = "diverged"
    diverged = rq1.threshold_table(stability, traces)
    assert diverged.loc[diverged["lr"] == 1.0, "escaped"].all()
    assert math.isinf(diverged["peak_loss"].max())
    numbers = rq1.threshold_numbers(rq1.PROFILES["paper"], stability, diverged)
    assert (numbers["threshold_runs"], numbers["threshold_agree"]) == (12, 12)


def test_threshold_table_separates_the_noise_term_from_the_full_batch_limit():
    # s_v chosen so that η*(16) = 0.2 while η*(1024) and 2/λmax stay near 0.5: at η = 0.3 only the minibatch
    # noise makes B = 16 unstable
    c16 = (4000 - 16) / (16 * 3999)
    s_v = math.sqrt((2 * 4.0 / 0.2 - 4.0**2) / c16)
    stability, traces = _threshold_inputs(lambda b, lr, s: lr > 0.5 or (b == 16 and lr > 0.2),
                                          lrs=(0.1, 0.3, 1.0))  # fmt: skip
    table = rq1.threshold_table(stability.assign(nonuniformity=s_v), traces)
    small = table[table["batch_size"] == 16]
    assert small["threshold"].tolist() == pytest.approx([0.2] * len(small))
    assert table["gd_limit"].tolist() == pytest.approx([0.5] * len(table))
    assert table["agree"].all()
    assert not table.loc[(table["batch_size"] == 16) & (table["lr"] == 0.3), "agree_gd"].any()
    numbers = rq1.threshold_numbers(rq1.PROFILES["paper"], stability, table)
    assert (numbers["threshold_disputed"], numbers["threshold_disputed_right"]) == (3, 3)  # 3 seeds
    verdict = rq1.verdict_threshold(table, n_resamples=RESAMPLES)
    assert verdict.outcome == SUPPORTED
    assert "2/λmax alone: 0.833" in verdict.reason  # 5 of 6 per seed
    interval = rq1.agreement_interval(table, "agree_gd")
    assert 0 <= interval.low <= interval.high <= 1
