"""RQ2 experiments module: each verdict's outcomes from small synthetic tables, the summaries on hand-checked
tables, and one toy end-to-end measurement sweep (cached)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from landscape.paper.experiments import rq2
from landscape.paper.verdicts import NOT_SUPPORTED, NOT_TESTABLE, REFUTED, SUPPORTED, Verdict

MLP, RESNET, NOSKIP, TRANSFORMER = rq2.MLP, rq2.RESNET, rq2.NOSKIP, rq2.TRANSFORMER
SEEDS = range(6)
# small multiplicative seed-to-seed noise, the same pattern for every architecture
NOISE = np.array([1.0, 1.03, 0.97, 1.02, 0.98, 1.01])
KW = {"n_resamples": 400, "seed": 0}


def table(column: str, means: dict[str, float], noise=NOISE) -> pd.DataFrame:
    """One row per (architecture, seed) with `column` = mean × noise."""
    return pd.DataFrame([
        {"architecture": label, "seed": s, column: mean * noise[s]} for label, mean in means.items() for s in SEEDS
    ])  # fmt: skip


def matched(labels=tuple(rq2.ARCHITECTURES), loss: float = 0.01) -> pd.DataFrame:
    """A training table with equal training losses (matched)."""
    return table("train loss", dict.fromkeys(labels, loss))


def frames(column: str, means: dict[str, float], **extra) -> pd.DataFrame:
    frame = table(column, means)
    for name, values in extra.items():
        frame[name] = table(name, values)[name]
    return frame


# ---------------------------------------------------------------------------------------------- combine, compare


def test_combine_is_a_conjunction():
    s, r = Verdict(SUPPORTED, "a"), Verdict(REFUTED, "b")
    n, t = Verdict(NOT_SUPPORTED, "c"), Verdict(NOT_TESTABLE, "d")
    assert rq2.combine({"x": s, "y": s}).outcome == SUPPORTED
    assert rq2.combine({"x": s, "y": r, "z": t}).outcome == REFUTED
    assert rq2.combine({"x": s, "y": t, "z": n}).outcome == NOT_TESTABLE
    assert rq2.combine({"x": s, "y": n}).outcome == NOT_SUPPORTED
    assert rq2.combine({"x": s, "y": n}).reason == "x: supported (a); y: not supported (c)"
    with pytest.raises(ValueError, match="at least one part"):
        rq2.combine({})


def test_loss_confound_needs_the_loss_ratio_inside_the_band():
    assert rq2.loss_confound(matched(), MLP, RESNET, **KW) is None
    unmatched = table("train loss", {MLP: 1e-5, RESNET: 1e-2})
    reason = rq2.loss_confound(unmatched, MLP, RESNET, **KW)
    assert reason.startswith("training losses not matched: MLP/ResNet-18 = 0.001")
    # a factor 1.5 is inside [1/2, 2]; a factor 3 is not
    assert rq2.loss_confound(table("train loss", {MLP: 0.015, RESNET: 0.01}), MLP, RESNET, **KW) is None
    assert rq2.loss_confound(table("train loss", {MLP: 0.03, RESNET: 0.01}), MLP, RESNET, **KW) is not None


def test_ratio_interval_pairs_the_twin_by_seed():
    # the twin is exactly 2× ResNet-18 seed by seed while the seeds themselves vary a lot: paired, the interval
    # is the single value 2; unpaired (MLP vs Transformer with the same numbers) it is wide
    wild = np.array([1.0, 3.0, 0.5, 2.0, 0.7, 1.5])
    frame = table("x", {RESNET: 1.0, NOSKIP: 2.0, MLP: 1.0, TRANSFORMER: 2.0}, noise=wild)
    paired = rq2.ratio_interval(frame, "x", NOSKIP, RESNET, **KW)
    unpaired = rq2.ratio_interval(frame, "x", TRANSFORMER, MLP, **KW)
    assert paired.low == pytest.approx(2.0)
    assert paired.high == pytest.approx(2.0)
    assert unpaired.estimate == pytest.approx(2.0)
    assert unpaired.high - unpaired.low > 0.5


@pytest.mark.parametrize(
    ("larger", "smaller", "outcome"),
    [(2.0, 1.0, SUPPORTED), (1.0, 2.0, REFUTED), (1.0, 1.0, NOT_SUPPORTED)],
)
def test_compare_outcomes(larger, smaller, outcome):
    frame = table("x", {MLP: larger, TRANSFORMER: smaller})
    assert rq2.compare(frame, "x", MLP, TRANSFORMER, matched(), **KW).outcome == outcome


def test_compare_reason_names_the_quantity_and_its_interval():
    frame = table("lambda_max", {MLP: 2.0, TRANSFORMER: 1.0})
    reason = rq2.compare(frame, "lambda_max", MLP, TRANSFORMER, matched(), **KW).reason
    assert reason.startswith("λmax MLP/Transformer = 2 [")
    assert reason.endswith("(claimed above 1)")


def test_compare_not_testable_for_unmatched_losses_or_non_positive_values():
    frame = table("x", {MLP: 2.0, TRANSFORMER: 1.0})
    unmatched = table("train loss", {MLP: 1e-5, TRANSFORMER: 0.1})
    assert rq2.compare(frame, "x", MLP, TRANSFORMER, unmatched, **KW).outcome == NOT_TESTABLE
    negative = table("x", {MLP: 2.0, TRANSFORMER: -1.0})
    v = rq2.compare(negative, "x", MLP, TRANSFORMER, matched(), **KW)
    assert v.outcome == NOT_TESTABLE
    assert "positive" in v.reason


# ---------------------------------------------------------------------------------------------- claim verdicts


def rugged_table(wide: dict[str, float], local: dict[str, float] | None = None) -> pd.DataFrame:
    local = local or dict.fromkeys(wide, 0.5)
    return frames("R random, r=1", wide, **{"R random, local": local})


@pytest.mark.parametrize(
    ("wide", "outcome"),
    [
        ({MLP: 0.2, RESNET: 0.5, NOSKIP: 0.6, TRANSFORMER: 0.4}, SUPPORTED),
        ({MLP: 0.2, RESNET: 0.5, NOSKIP: 0.1, TRANSFORMER: 0.4}, REFUTED),  # the twin is smoother
        ({MLP: 0.2, RESNET: 0.5, NOSKIP: 0.2, TRANSFORMER: 0.4}, NOT_SUPPORTED),  # a tie with the twin
    ],
)
def test_verdict_mlp_smoother(wide, outcome):
    assert rq2.verdict_mlp_smoother(rugged_table(wide), matched(), **KW).outcome == outcome


def test_verdict_mlp_smoother_not_testable_when_the_mlp_memorises():
    training = table("train loss", {MLP: 1e-5, RESNET: 0.01, NOSKIP: 0.01, TRANSFORMER: 0.01})
    rugged = rugged_table({MLP: 0.2, RESNET: 0.5, NOSKIP: 0.6, TRANSFORMER: 0.4})
    v = rq2.verdict_mlp_smoother(rugged, training, **KW)
    assert v.outcome == NOT_TESTABLE
    assert "training losses not matched" in v.reason


def curvature_table(lmax, ratio=None, trace_d=None, resolved: bool = True) -> pd.DataFrame:
    labels = list(lmax)
    frame = frames(
        "lambda_max", lmax,
        convexity_ratio=ratio or dict.fromkeys(labels, 0.01),
        trace_per_param=trace_d or dict.fromkeys(labels, 1.0),
        lambda_min=dict.fromkeys(labels, -0.5),
    )  # fmt: skip
    frame["lambda_min_residual"] = 0.01 if resolved else 1.0
    return frame


SKIPS_SUPPORTED = {
    "lmax": {MLP: 1.0, RESNET: 10.0, NOSKIP: 5.0, TRANSFORMER: 2.0},
    "ratio": {MLP: 0.01, RESNET: 0.01, NOSKIP: 0.05, TRANSFORMER: 0.01},
    "wide": {MLP: 0.3, RESNET: 0.2, NOSKIP: 0.6, TRANSFORMER: 0.3},
}


def test_verdict_resnet_skips_outcomes():
    c, r = SKIPS_SUPPORTED, rugged_table(SKIPS_SUPPORTED["wide"])
    supported = rq2.verdict_resnet_skips(curvature_table(c["lmax"], c["ratio"]), r, matched(), **KW)
    assert supported.outcome == SUPPORTED
    # without skips the twin is smoother: refuted
    smoother_twin = rugged_table({**c["wide"], NOSKIP: 0.1})
    refuted = rq2.verdict_resnet_skips(curvature_table(c["lmax"], c["ratio"]), smoother_twin, matched(), **KW)
    assert refuted.outcome == REFUTED
    # ResNet-18's λmax ties the twin's: not supported
    tie = curvature_table({**c["lmax"], NOSKIP: 10.0}, c["ratio"])
    assert rq2.verdict_resnet_skips(tie, r, matched(), **KW).outcome == NOT_SUPPORTED
    # λmin inside its residual: |λmin/λmax| not measured
    unresolved = rq2.verdict_resnet_skips(
        curvature_table(c["lmax"], c["ratio"], resolved=False), r, matched(), **KW
    )
    assert unresolved.outcome == NOT_TESTABLE
    assert "within its Lanczos residual" in unresolved.reason


def test_verdict_transformer_outcomes():
    lmax = dict.fromkeys(rq2.ARCHITECTURES, 1.0)
    low_trace = {MLP: 2.0, RESNET: 3.0, NOSKIP: 4.0, TRANSFORMER: 0.5}
    rough = {MLP: 0.2, RESNET: 0.3, NOSKIP: 0.3, TRANSFORMER: 0.8}
    wide = dict.fromkeys(rq2.ARCHITECTURES, 0.5)
    curvature = curvature_table(lmax, trace_d=low_trace)

    def verdict(curv, local, training=None):
        return rq2.verdict_transformer(
            curv, rugged_table(wide, local), matched() if training is None else training, **KW
        ).outcome

    assert verdict(curvature, rough) == SUPPORTED
    assert verdict(curvature, {**rough, TRANSFORMER: 0.1}) == REFUTED  # the smoothest locally
    assert verdict(curvature, {**rough, TRANSFORMER: 0.3}) == NOT_SUPPORTED  # ties ResNet-18
    unmatched = table("train loss", {MLP: 1e-5, RESNET: 0.01, NOSKIP: 0.3, TRANSFORMER: 0.1})
    assert verdict(curvature, rough, unmatched) == NOT_TESTABLE


@pytest.mark.parametrize(
    ("margins", "outcome"),
    [
        ([-0.01, -0.02, -0.015, -0.01], SUPPORTED),  # λ1 − λ2 within the residuals
        ([0.2, 0.3, 0.25, 0.22], REFUTED),  # λ1 ≠ λ2 proven on every seed
        ([-0.2, 0.3, -0.1, 0.25], NOT_SUPPORTED),
        ([0.2], NOT_TESTABLE),
    ],
)
def test_verdict_mlp_repeated_top(margins, outcome):
    curvature = pd.DataFrame({"architecture": MLP, "seed": range(len(margins)), "gap_margin": margins})
    assert rq2.verdict_mlp_repeated_top(curvature, **KW).outcome == outcome


DIMS = {MLP: 1e4, RESNET: 5e5, NOSKIP: 4e5, TRANSFORMER: 1e5}


def trace_table(traces: dict[str, float], noise=NOISE) -> pd.DataFrame:
    frame = table("trace", traces, noise=noise)
    frame["D"] = frame["architecture"].map(DIMS)
    return frame


def test_verdict_trace_grows_with_dimension_outcomes():
    growing = {MLP: 1.0, TRANSFORMER: 3.0, NOSKIP: 10.0, RESNET: 20.0}
    shrinking = {MLP: 20.0, TRANSFORMER: 10.0, NOSKIP: 3.0, RESNET: 1.0}
    assert rq2.verdict_trace_grows_with_dimension(trace_table(growing), matched(), **KW).outcome == SUPPORTED
    assert rq2.verdict_trace_grows_with_dimension(trace_table(shrinking), matched(), **KW).outcome == REFUTED
    noisy = trace_table(
        dict.fromkeys(DIMS, 1.0)
    )  # the same mean for every architecture, then seed-level scatter
    noisy["trace"] = np.random.default_rng(0).uniform(0.2, 1.8, len(noisy))
    assert rq2.verdict_trace_grows_with_dimension(noisy, matched(), **KW).outcome == NOT_SUPPORTED
    unmatched = table("train loss", {MLP: 1e-5, RESNET: 0.01, NOSKIP: 0.3, TRANSFORMER: 0.1})
    v = rq2.verdict_trace_grows_with_dimension(trace_table(growing), unmatched, **KW)
    assert v.outcome == NOT_TESTABLE


def test_rank_correlation_of_means_estimate_and_degenerate_cases():
    growing = trace_table({MLP: 1.0, TRANSFORMER: 3.0, NOSKIP: 10.0, RESNET: 20.0})
    rho = rq2.rank_correlation_of_means(growing, "D", "trace", n_resamples=200)
    assert rho.estimate == pytest.approx(1.0)
    assert rho.low == pytest.approx(1.0)  # the ordering survives every resample of seeds
    swapped = trace_table({MLP: 1.0, TRANSFORMER: 10.0, NOSKIP: 3.0, RESNET: 20.0})  # one pair out of order
    assert rq2.rank_correlation_of_means(swapped, "D", "trace", n_resamples=200).estimate == pytest.approx(
        0.8
    )
    single = growing[growing["seed"] == 0]
    assert math.isnan(rq2.rank_correlation_of_means(single, "D", "trace", n_resamples=200).low)


def barrier_table(heights: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"architecture": label, "seed a": 0, "seed b": i + 1, "variant": "raw", "loss barrier": h,
         "error barrier": 0.1}
        for label, values in heights.items() for i, h in enumerate(values)
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("heights", "outcome"),
    [
        ({MLP: [0.4, 0.5, 0.45], RESNET: [0.2, 0.25, 0.3]}, SUPPORTED),
        ({MLP: [0.4, 0.5, 0.45], RESNET: [1e-5, 2e-5, 1e-5]}, REFUTED),  # one basin for ResNet-18
        ({MLP: [0.4, 0.5, 0.45], RESNET: [3.0, 4.0, 3.5]}, REFUTED),  # above ln 10: not nearby
        ({MLP: [0.4, 0.5, 0.45], RESNET: [0.0, 0.5, 0.0]}, NOT_SUPPORTED),
        ({MLP: [0.4]}, NOT_TESTABLE),
    ],
)
def test_verdict_barriers_moderate(heights, outcome):
    assert rq2.verdict_barriers_moderate(barrier_table(heights), **KW).outcome == outcome


# ---------------------------------------------------------------------------------------------- summaries


def test_largest_ratio_skips_non_positive_eigenvalues():
    assert rq2.largest_ratio([8.0, 4.0, 1.0, 0.5]) == (4.0, 2)
    assert rq2.largest_ratio([9.0, 3.0, -1.0]) == (3.0, 1)
    assert math.isnan(rq2.largest_ratio([1.0, -1.0])[0])


def test_curvature_row_derived_columns():
    profile = {"num_params": 7, "top_eigenvalues": [10.0, 8.0, 1.0], "residuals": [0.5, 0.5, 0.1],
               "lambda_max": 10.0, "lambda_min": -2.0, "lambda_min_residual": 1.0}  # fmt: skip
    row = rq2._curvature_row(profile)
    assert row["D"] == 7
    assert "num_params" not in row
    assert row["lambda_min_bound"] == pytest.approx(0.3)
    assert (row["largest_ratio"], row["largest_ratio_at"]) == (8.0, 2)
    assert row["relative_gap"] == pytest.approx(0.2)
    assert row["gap_margin"] == pytest.approx(0.1)
    assert row["max_relative_residual"] == pytest.approx(0.05)


def test_ruggedness_table_and_mean_std():
    slices = pd.DataFrame([
        {"architecture": a, "seed": s, "direction": d, "window": w, "ruggedness": r + (w == "local"),
         "local_minima": s}
        for a, r in ((MLP, 0.1), (RESNET, 0.5)) for s in (0, 1) for d in ("random", "eigen") for w in ("wide", "local")
    ])  # fmt: skip
    rugged = rq2.ruggedness_table(slices)
    assert list(rugged.columns) == ["architecture", "seed", *rq2.RUGGED_COLUMNS]
    assert len(rugged) == 4
    assert rugged.loc[rugged["architecture"] == RESNET, "R random, local"].tolist() == [1.5, 1.5]
    shown = rq2.mean_std_table(rugged, ["minima random, r=1"])
    assert shown.loc[MLP, "minima random, r=1"] == "0.5 ± 0.71"


def test_training_and_barrier_numbers_by_hand():
    training = pd.DataFrame({
        "architecture": [RESNET, RESNET, NOSKIP, NOSKIP], "seed": [0, 1, 0, 1], "D": [100, 100, 90, 90],
        "test acc": [0.9, 0.8, 0.6, 0.7], "train loss": [0.01, 0.03, 0.5, 0.4], "wall time": [60.0, 60, 30, 30],
    })  # fmt: skip
    numbers = rq2.training_numbers(training)
    assert numbers["acc_resnet"] == pytest.approx(85.0)
    assert numbers["acc_resnet_std"] == pytest.approx(100 * np.std([0.9, 0.8], ddof=1))
    assert numbers["acc_drop_skips"] == pytest.approx(20.0)
    assert (numbers["train_loss_noskip_min"], numbers["train_loss_noskip_max"]) == (0.4, 0.5)
    assert numbers["dim_noskip"] == 90
    assert numbers["training_minutes"] == pytest.approx(3.0)
    assert "acc_mlp" not in numbers
    barriers = barrier_table({MLP: [0.2, 0.4]})
    barriers = pd.concat([barriers, barriers.assign(variant="aligned", **{"loss barrier": 0.05})])
    b = rq2.barrier_numbers(barriers)
    assert b["barrier_mlp"] == pytest.approx(0.3)
    assert b["barrier_mlp_aligned"] == pytest.approx(0.05)
    assert (b["barrier_min"], b["barrier_max"]) == (0.2, 0.4)
    assert b["err_barrier_mlp"] == pytest.approx(10.0)
    assert b["ln_classes"] == pytest.approx(math.log(10))


def test_profiles_and_sizes_checks():
    assert set(rq2.PROFILES) == {"smoke", "paper", "full"}
    assert rq2.PROFILES["smoke"].workers == 1
    assert rq2.PROFILES["paper"].hessian_samples == 256  # the numbers the notebook held
    smoke = rq2.PROFILES["smoke"]
    with pytest.raises(ValueError, match="hessian_samples"):
        replace(smoke, hessian_samples=smoke.eval_samples + 1)
    with pytest.raises(ValueError, match="distinct"):
        replace(smoke, seeds=(0, 0))
    with pytest.raises(ValueError, match="unknown recipes"):
        replace(smoke, overrides={"vgg": {}})


def test_settings_numbers_cover_the_sizes():
    numbers = rq2.settings_numbers(rq2.PROFILES["paper"], "paper", 4000)
    assert numbers["num_seeds"] == 3
    assert numbers["seed_list"] == "0, 1, 2"
    assert numbers["num_pairs"] == 3
    assert numbers["num_train"] == 4000


# ---------------------------------------------------------------------------------------------- end to end


def test_recipe_applies_overrides_and_the_twin_option():
    smoke = rq2.PROFILES["smoke"]
    twin = rq2.recipe(NOSKIP, 3, smoke)
    assert twin.model_config["skip"] is False
    assert twin.model_config["width_multiplier"] == 0.0625
    assert twin.seed == 3
    assert "skip" not in rq2.recipe(RESNET, 3, smoke).model_config
    with pytest.raises(ValueError, match="unknown architecture"):
        rq2.recipe("VGG", 0, smoke)


def test_measurement_sweep_on_two_tiny_mlps_is_cached(tmp_path, monkeypatch):
    from landscape import load_dataset
    from landscape.results import run

    sizes = replace(
        rq2.PROFILES["smoke"], seeds=(0, 1), eval_samples=64, hessian_samples=32, k=3, trace_matvecs=2,
        slq_steps=4, adaptive_steps=1, slice_points=5, grid_points=3, barrier_points=3, workers=1,
        overrides={"mlp": {"model_config": {"depth": 1, "width": 4, "activation": "relu"}, "steps": 5}},
    )  # fmt: skip
    data = load_dataset("mnist1d")
    records = [run(rq2.recipe(MLP, s, sizes), root=tmp_path / "store", data=data) for s in sizes.seeds]
    training = pd.DataFrame({"architecture": MLP, "seed": list(sizes.seeds), "key": [r.key for r in records]})
    tasks = rq2.measurement_tasks(training, sizes, tmp_path / "cache", root=tmp_path / "store")
    assert [t.kind for t in tasks] == ["curvature", "curvature", "barrier", "slices", "slices", "plane"]

    raw = rq2.measure_networks(training, sizes, tmp_path / "cache", root=tmp_path / "store")
    assert len(raw["curvature"]) == 2
    assert len(raw["curvature"]["top_eigenvalues"][0]) == 3
    assert len(raw["slices"]) == 2 * 2 * len(rq2.WINDOWS)
    assert raw["barriers"]["variant"].tolist() == ["raw", "aligned"]
    assert np.array(raw["planes"]["losses"][0]).shape == (3, 3)

    def recompute(task):
        raise AssertionError(f"{task.kind} recomputed although cached")

    monkeypatch.setattr(rq2, "_compute", recompute)
    again = rq2.measure_networks(training, sizes, tmp_path / "cache", root=tmp_path / "store")
    pd.testing.assert_frame_equal(again["curvature"], raw["curvature"])
    import matplotlib.pyplot as plt

    fig = rq2.plot_barriers(raw["barriers"])
    assert fig.axes[1].get_title() == "mean ± std over 1 seed pairs"  # the aligned variant is not a pair
    plt.close(fig)
    rq2.save_table(raw["barriers"], tmp_path / "barriers.csv")
    assert pd.read_csv(tmp_path / "barriers.csv")["alphas"].str.startswith("[").all()
