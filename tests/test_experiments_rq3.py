"""RQ3's experiments module: the statistics table on synthetic populations with known answers, every verdict
outcome, the census, and one toy configuration end to end."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from landscape.paper.experiments import rq3, rq3_tasks
from landscape.paper.verdicts import NOT_SUPPORTED, NOT_TESTABLE, REFUTED, SUPPORTED


def population(gap_of, *, seeds=(0, 1), rng=0, noise=0.002):
    """A synthetic 3 × 3 × 2 × 2 factorial with `seeds`: gap = gap_of(lr, b, width, wd) + noise."""
    rng = np.random.default_rng(rng)
    rows = []
    for lr, b, w, wd in itertools.product((0.01, 0.03, 0.1), (32, 128, 512), (64, 128), (0.0, 1e-3)):
        config = f"mnist1d/lr={lr}/b={b}/w={w}/wd={wd}"
        for s in seeds:
            gap = gap_of(lr, b, w, wd) + noise * rng.normal()
            rows.append({"dataset": "mnist1d", "lr": lr, "batch_size": b, "width": w, "weight_decay": wd,
                         "seed": s, "config": config, "reached": True, "status": "reached",
                         "train_loss": 0.05 - 0.001 * rng.random(), "gap": gap,
                         "gap_b": gap + noise * rng.normal()})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["log_lr_over_b"] = np.log(frame["lr"] / frame["batch_size"])
    return frame


def width_gap(lr, b, w, wd):
    return 0.1 + 0.001 * w + 0.02 * math.log(b) - 0.01 * math.log(lr)


def test_measure_table_on_known_answers():
    frame = population(width_gap)
    rng = np.random.default_rng(5)
    frame["copy"] = frame["gap"] * 2 + 1  # a monotone copy of the gap: τ = 1
    frame["reverse"] = -frame["gap"]  # τ = −1
    frame["noise"] = rng.normal(size=len(frame))  # no information: τ ≈ 0
    frame["width_only"] = frame["width"].astype(
        float
    )  # one axis only: concordant across widths, tied otherwise
    table = rq3.measure_table(frame, ["copy", "reverse", "noise", "width_only", "gap_b"], num_test=10000,
                              n_resamples=300).set_index("measure")  # fmt: skip
    assert table.loc["copy", "tau"] == pytest.approx(1.0)
    assert table.loc["copy", "Psi"] == pytest.approx(1.0)
    assert table.loc["copy", "rse_mean"] == pytest.approx(0.0)
    assert table.loc["reverse", "tau"] == pytest.approx(-1.0)
    assert table.loc["reverse", "tau_high"] < 0
    assert table.loc["noise", "tau_low"] < 0 < table.loc["noise", "tau_high"]
    # Ψ is computed on configuration means: the two widths of a group are concordant, every other axis ties
    assert table.loc["width_only", "psi_width"] == pytest.approx(1.0)
    assert table.loc["width_only", "psi_lr"] == pytest.approx(0.0)
    assert table.loc["width_only", "Psi"] == pytest.approx(0.25)
    assert table.loc["copy", "n"] == len(frame)
    # the partial correlation removes log(η/B): a measure that is log(η/B) itself has partial ≈ 0
    frame["temperature"] = frame["log_lr_over_b"] + 1e-3 * rng.normal(size=len(frame))
    confounded = rq3.measure_table(frame, ["temperature"], num_test=10000, n_resamples=300).iloc[0]
    assert abs(confounded["partial"]) < 0.2
    tested = table["p_holm"].notna()
    assert tested.any()
    assert table.loc[tested, "p_holm"].ge(table.loc[tested, "p_value"]).all()
    assert 0 < rq3.power(frame, table.reset_index(), n_resamples=100) < 1


def test_hyperparameter_model_is_predicted_out_of_fold():
    frame = population(width_gap)
    out = rq3.add_reference_measures(frame)
    assert out[rq3.HYPERPARAMETER_MODEL].notna().all()
    # the gap is a smooth function of the axes, so the out-of-fold ridge fit ranks it well ...
    tau = rq3.measure_table(out, [rq3.HYPERPARAMETER_MODEL], num_test=10000, n_resamples=200).iloc[0]["tau"]
    assert tau > 0.8
    # ... and the seeds of one configuration always share a prediction (never fitted on their own configuration)
    assert out.groupby("config")[rq3.HYPERPARAMETER_MODEL].nunique().max() == 1


@pytest.mark.parametrize(
    ("tau", "partial", "outcome"),
    [
        ((0.2, 0.5), (0.1, 0.6), SUPPORTED),
        ((0.2, 0.5), (-0.1, 0.3), NOT_SUPPORTED),  # the association may be η/B's
        ((0.2, 0.5), (-0.6, -0.1), REFUTED),  # it reverses at fixed η/B and training loss
        ((-0.5, -0.2), (-0.6, -0.1), REFUTED),
        ((-0.5, -0.2), (0.1, 0.6), NOT_SUPPORTED),  # conflicting evidence
        ((-0.1, 0.3), (0.1, 0.6), NOT_SUPPORTED),
        ((math.nan, math.nan), (0.1, 0.6), NOT_TESTABLE),
    ],
)
def test_verdict_measure_outcomes(tau, partial, outcome):
    row = {"n": 100, "tau_low": tau[0], "tau_high": tau[1], "partial_low": partial[0], "partial_high": partial[1],
           "tau_temperature": 0.3}  # fmt: skip
    assert rq3.verdict_measure(row).outcome == outcome


def test_verdict_measure_not_testable_for_few_networks_or_a_proxy_of_eta_over_b():
    row = {
        "n": 100,
        "tau_low": 0.2,
        "tau_high": 0.5,
        "partial_low": 0.1,
        "partial_high": 0.6,
        "tau_temperature": 0.3,
    }
    few = rq3.verdict_measure({**row, "n": rq3.MIN_NETWORKS - 1})
    assert few.outcome == NOT_TESTABLE
    assert "networks" in few.reason
    proxy = rq3.verdict_measure({**row, "tau_temperature": -0.95})
    assert proxy.outcome == NOT_TESTABLE
    assert "η/B" in proxy.reason


def test_verdict_table_marks_the_unvalidated_effective_rank():
    table = pd.DataFrame([{"measure": m, "n": 100, "tau_low": 0.2, "tau_high": 0.5, "partial_low": 0.1,
                           "partial_high": 0.6, "tau_temperature": 0.0} for m in rq3.FOUNDING])  # fmt: skip
    verdicts = rq3.verdict_table(table).set_index("quantity")
    assert verdicts.loc[rq3.NAMES["effective_rank"], "verdict"] == NOT_TESTABLE
    assert verdicts.loc[rq3.NAMES["lambda_max"], "verdict"] == SUPPORTED


def test_pair_measures_keep_their_networks_when_one_seed_fails():
    frame = population(width_gap)
    frame["pair"] = frame["gap"]
    frame.loc[0, "pair"] = math.nan  # one configuration's pair measure is missing on one network
    row = rq3.measure_table(frame, ["pair"], num_test=10000, n_resamples=100).iloc[0]
    assert row["n"] == len(frame) - 1
    assert row["tau"] == pytest.approx(1.0)


def test_tau_leaves_out_pairs_of_a_resampled_configuration():
    frame = pd.DataFrame({"m": [1.0, 2.0, 3.0], "gap": [1.0, 2.0, 3.0]}, index=[0, 0, 1])
    # rows 0 and 1 are one network drawn twice: only the pairs with row 2 count
    assert rq3._tau_a(frame, "m") == pytest.approx(1.0)


def test_census_counts_what_did_not_reach_the_target():
    frame = population(width_gap)
    frame.loc[:3, ["reached", "status"]] = [False, "diverged"]
    frame.loc[4:5, ["reached", "status"]] = [False, "finished"]
    row = rq3.census(frame).iloc[0]
    assert (row["networks"], row["reached"], row["diverged"], row["out_of_steps"]) == (
        len(frame),
        len(frame) - 6,
        4,
        2,
    )


def test_profiles_hold_enough_networks():
    assert rq3.PROFILES["paper"].num_networks >= 150
    for sizes in rq3.PROFILES.values():
        assert len(sizes.seeds) >= 2
    with pytest.raises(ValueError, match="at least 2 seeds"):
        replace(rq3.PROFILES["smoke"], seeds=(0,))


def test_configuration_task_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    rq3_tasks.task_data.cache_clear()
    sizes = rq3.PROFILES["smoke"]
    settings = rq3._settings(replace(sizes, extra_test=200), "mnist1d", 0.1, 256, 16, 0.0, 0)
    out = rq3_tasks.configuration_task({**settings, "max_steps": 100, "eval_every": 50, "stop_loss": 2.1})
    rows = pd.DataFrame(out["rows"])
    assert list(rows["seed"]) == list(sizes.seeds)
    reached = rows[rows["reached"]]
    assert len(reached) > 0
    assert reached[list(rq3_tasks.MEASURES)].notna().all().all()
    assert (reached["gap"] == reached["test_error_a"] - reached["train_error"]).all()
    # a run that cannot reach the target is a row with NaN measures, not an error
    never = rq3_tasks.configuration_task({**settings, "max_steps": 10, "eval_every": 10, "stop_loss": 1e-6})
    assert all(not r["reached"] and math.isnan(r["lambda_max"]) for r in never["rows"])
    rq3_tasks.task_data.cache_clear()


def test_rescaling_changes_flags_measures_that_move():
    population = pd.DataFrame({"config": ["a", "a", "b"], "seed": [0, 1, 0], "moves": [1.0, 2.0, 4.0],
                               "still": [3.0, 3.0, 5.0], "inf": [math.inf, 1.0, 1.0]})  # fmt: skip
    rescaled = pd.DataFrame({"config": ["a", "a", "b"], "seed": [0, 1, 0], "alpha": [2.0, 2.0, 0.5],
                             "reached": [True, True, True], "moves": [1.5, 2.0, 4.0],
                             "still": [3.0, 3.0 * (1 + 1e-4), 5.0], "inf": [math.inf, 1.0, 1.0]})  # fmt: skip
    changes = rq3.rescaling_changes(population, rescaled, ["moves", "still", "inf"])
    # changes relative to the population's interquartile range: 0.5 / 1.5 and 3e-4 / 1
    assert changes["moves"] == pytest.approx(1 / 3)
    assert changes["still"] == pytest.approx(3e-4)
    assert changes["inf"] == 0.0  # +inf before and after: unchanged
    assert changes["moves"] > rq3.RESCALING_TOLERANCE > changes["still"]


def test_rescaled_configuration_is_the_same_function(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    rq3_tasks.task_data.cache_clear()
    sizes = replace(rq3.PROFILES["smoke"], extra_test=200)
    settings = {**rq3._settings(sizes, "mnist1d", 0.1, 256, 16, 0.0, 0), "max_steps": 100, "eval_every": 50,
                "stop_loss": 2.1}  # fmt: skip
    base = pd.DataFrame(rq3_tasks.configuration_task(settings)["rows"])
    scaled = pd.DataFrame(rq3_tasks.configuration_task({**settings, "alpha": 3.0})["rows"])
    # the function is unchanged: errors, margins, disagreement and the normalised sharpness agree ...
    for column in ("train_error", "test_error_a", "margin", "disagreement"):
        np.testing.assert_allclose(scaled[column], base[column], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scaled["normalized_sharpness"], base["normalized_sharpness"], rtol=0.02)
    # ... while λmax moves
    assert (abs(scaled["lambda_max"] / base["lambda_max"] - 1) > 0.05).all()
    rq3_tasks.task_data.cache_clear()


def test_sign_error_figure_skips_missing_values():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = population(width_gap)
    frame["pair"] = frame["gap"]
    frame.loc[0, "pair"] = math.nan
    fig, ax = plt.subplots()
    rq3.plot_sign_error(frame, ["pair"], rq3.AXES, 10000, ax)
    plt.close(fig)


def test_leave_one_level_out_holds_each_level_out_of_the_fit():
    frame = population(width_gap)
    frame["copy"] = frame["gap"]
    frame["width_only"] = frame["width"].astype(float)
    held = rq3.leave_one_level_out(frame, ["copy", "width_only"])
    assert len(held) == 3 + 3 + 2 + 2  # one row per level of each axis
    assert (held["copy"] == 1.0).all()
    # at a held-out width the width-only measure is constant: every pair ties
    assert (held.loc[held["axis"] == "width", "width_only"] == 0.0).all()
    # the gap is smooth in log η, log B and the width: the refitted model extrapolates to a held-out level
    assert held[rq3.HYPERPARAMETER_MODEL].min() > 0.5
    assert rq3.beats_hyperparameters(held, "copy") == (len(held), len(held))
