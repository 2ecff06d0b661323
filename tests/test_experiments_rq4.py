"""RQ4's experiments: the task's pieces against exact answers, the predictions and verdicts on synthetic populations
with known answers, and one tiny configuration end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from landscape.paper.experiments import rq4, rq4_tasks
from landscape.paper.stats import concordance_index
from landscape.paper.verdicts import NOT_SUPPORTED, NOT_TESTABLE, REFUTED, SUPPORTED

K = 20
STEPS = (0, 5, 10, 20)


def test_quadratic_residual_variance_is_zero_for_any_parabola_and_grows_with_ripples():
    alphas = torch.linspace(-1, 1, 21, dtype=torch.float64)
    for curvature in (0.1, 10.0, 1000.0):
        assert (
            rq4_tasks.quadratic_residual_variance(alphas, 1.0 + 0.3 * alphas + curvature * alphas**2) < 1e-20
        )
    rough = [rq4_tasks.quadratic_residual_variance(alphas, 1.0 + alphas**2 + a * torch.sin(20 * alphas))
             for a in (0.01, 0.1)]  # fmt: skip
    assert 0 < rough[0] < rough[1]
    assert rough[1] / rough[0] == pytest.approx(100, rel=0.05)  # variance ∝ amplitude²
    assert rq4_tasks.quadratic_residual_variance(alphas, torch.full((21,), math.nan)) == math.inf


def test_early_loss_features_on_a_power_law():
    losses = [2.0 * (t + 1) ** -0.5 for t in range(21)]
    f = rq4_tasks.early_loss_features(losses, 20, horizon=400)
    assert f["loss_ratio"] == pytest.approx(losses[20] / losses[0])
    assert f["loss_spike"] == 0.0  # never rises
    assert f["loss_extrapolated"] == pytest.approx(401**-0.5, rel=1e-9)  # the power law, recovered exactly
    spiky = list(losses)
    spiky[7] = 3.0
    assert rq4_tasks.early_loss_features(spiky, 20, 400)["loss_spike"] == pytest.approx(
        (3.0 - losses[6]) / 2.0
    )
    assert rq4_tasks.early_loss_features(losses, 0, 400) == {"loss_ratio": 1.0, "loss_slope": 0.0,
                                                             "loss_spike": 0.0, "loss_extrapolated": 1.0}  # fmt: skip


def test_unit_clipping_caps_each_units_gradient_and_keeps_the_function():
    torch.manual_seed(0)
    inner = torch.nn.Linear(3, 2).double()
    wrapped = rq4_tasks.UnitClipped(inner, clip=0.01)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(wrapped(x), inner(x))
    (100 * wrapped(x).square().sum()).backward()
    for p in inner.parameters():
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else (0,)
        bound = 0.01 * p.detach().norm(dim=dims).clamp_min(1e-3)
        assert (p.grad.norm(dim=dims) <= bound * (1 + 1e-9)).all()
    assert set(rq4_tasks.UnitClipped.unwrap(wrapped.state_dict())) == set(inner.state_dict())
    with pytest.raises(ValueError, match="clip"):
        rq4_tasks.UnitClipped(inner, clip=0.0)


def test_concordance_index_against_pairs_by_hand():
    time = [2, 4, 6, 8]
    event = [True, False, True, True]
    risk = [0.9, 0.1, 0.5, 0.6]
    # comparable pairs (earlier one an event): (0,1) (0,2) (0,3) (2,3); concordant: (0,1) (0,2) (0,3)
    assert concordance_index(time, event, risk) == pytest.approx(3 / 4)
    assert math.isnan(concordance_index([1, 2], [False, False], [0.0, 1.0]))  # no comparable pair
    assert concordance_index([1, 2, 3], [True, True, True], [1.0, 1.0, 1.0]) == 0.5  # ties count ½


def population(rng=0, geometry_informative=True, n_configs=40, seeds=3):
    """A synthetic population of alive MLP runs: divergence is decided by η·λmax/2 at K, which c predicts only
    partly (λmax grows by a run-specific factor); with `geometry_informative` False it is decided by noise."""
    rng = np.random.default_rng(rng)
    rows = []
    for i in range(n_configs):
        c = float(rng.choice([0.25, 0.5, 1.0, 2.0, 4.0]))
        loss = ["ce", "mse"][i % 2]
        for s in range(seeds):
            growth = float(np.exp(rng.normal(0, 0.8)))
            eta_lambda = c * growth
            diverged = eta_lambda > 1.5 if geometry_informative else bool(rng.random() < 0.4)
            row = {"arch": "mlp", "loss": loss, "c": c, "batch": 64, "warmup": False, "config": f"cfg{i}", "seed": s,
                   "alive": True, "diverged/control": diverged,
                   "steps_to_target/control": None if diverged else float(rng.integers(50, 400)),
                   "test_acc/control": 0.1 if diverged else float(rng.uniform(0.4, 0.6))}  # fmt: skip
            for k in STEPS:
                row |= {f"{name}@{k}": float(rng.normal()) for name in rq4_tasks.PROBES}
                row |= {f"{name}@{k}": float(rng.normal()) for name in rq4_tasks.EARLY_LOSS}
                row[f"eta_lambda@{k}"] = c * growth ** (k / K)
            row |= {f"proxy_{name}": float(rng.normal()) for name in rq4_tasks.PROXIES}
            rows.append(row)
    return pd.DataFrame(rows)


SIZES = rq4.Sizes(cs=(0.5,), batch_sizes=(64,), losses=("ce",), warmups=(False,), seeds=(0, 1, 2), num_train=100,
                  steps=400, probe_steps=STEPS, eval_every=10, mlp_width=8, panel=(), panel_cs=(), panel_batch=64,
                  panel_seeds=(), resnet_width=0.0625, folds=4, n_resamples=200, n_permutations=39)  # fmt: skip


def test_added_value_detects_informative_geometry_and_not_noise():
    informative = rq4.added_value(population(), SIZES)
    assert informative["delta"].low > 0
    assert informative["pvalue"] <= 0.05
    assert rq4.verdict_h5(informative).outcome == SUPPORTED
    noise = rq4.added_value(population(geometry_informative=False), SIZES)
    assert rq4.verdict_h5(noise).outcome != SUPPORTED
    few = {**informative, "positives": rq4.MIN_CLASS - 1}
    assert rq4.verdict_h5(few).outcome == NOT_TESTABLE


def test_zero_parameter_rule_auc_grows_with_the_probe_step():
    rules = rq4.zero_parameter_rules(population(), SIZES).set_index(["rule", "k"])["estimate"]
    assert rules["η·λmax/2 > 1", K] == pytest.approx(1.0)  # divergence is η·λmax/2 > 1.5 at K exactly
    assert rules["η·λmax/2 > 1", 0] < rules["η·λmax/2 > 1", K]


def test_predictor_columns():
    frame = population()
    d = rq4.predictor_columns(frame, "D", 5, STEPS)
    assert d == [f"{n}@{s}" for s in (0, 5) for n in rq4_tasks.PROBES]
    assert rq4.predictor_columns(frame, "A+B", K, STEPS)[:4] == ["log_c", "log_batch", "is_mse", "warmup_on"]
    with pytest.raises(ValueError, match="unknown predictor set"):
        rq4.predictor_columns(frame, "A+E", K, STEPS)


def effects_frame(flagged_effect, other_effect, runs=30):
    return pd.DataFrame([{"rule": r, "treatment": t, "outcome": o, "flagged": f, "runs": runs,
                          "estimate": e, "low": e - 0.05, "high": e + 0.05}
                         for r, (_, t, o, _) in rq4.RULES.items()
                         for f, e in ((True, flagged_effect), (False, other_effect))])  # fmt: skip


@pytest.mark.parametrize(("effect", "rule1", "rule2"), [(-0.3, SUPPORTED, REFUTED), (0.3, REFUTED, SUPPORTED),
                                                       (0.0, NOT_SUPPORTED, NOT_SUPPORTED)])  # fmt: skip
def test_verdict_intervention_outcomes(effect, rule1, rule2):
    effects = effects_frame(effect, 0.0)
    assert rq4.verdict_intervention(effects, 1).outcome == rule1  # rule 1 wants fewer failures (effect < 0)
    assert rq4.verdict_intervention(effects, 2).outcome == rule2  # rule 2 wants higher accuracy (effect > 0)
    assert (
        rq4.verdict_intervention(effects_frame(effect, 0.0, runs=rq4.MIN_FLAGGED - 1), 1).outcome
        == NOT_TESTABLE
    )


def test_intervention_effects_recover_a_planted_effect():
    frame = population()
    frame["failed/control"] = frame["diverged/control"]
    flagged = frame[f"eta_lambda@{K}"] > 1
    frame["failed/halve_lr"] = frame["failed/control"] & ~flagged  # halving η rescues every flagged failure
    frame["failed/clip"] = frame["failed/control"]
    for b in ("halve_lr", "clip"):
        frame[f"test_acc/{b}"] = frame["test_acc/control"]
    effects = rq4.intervention_effects(frame, SIZES)
    assert rq4.verdict_intervention(effects, 1).outcome == SUPPORTED
    row = effects[(effects["rule"] == 1) & (effects["treatment"] == "halve_lr") & (effects["outcome"] == "failed")
                  & ~effects["flagged"]].iloc[0]  # fmt: skip
    assert row["estimate"] == 0.0
    assert rq4.verdict_intervention(effects, 2).outcome == NOT_SUPPORTED  # clipping changed nothing


def test_rule4_paired_skip_effect():
    rows = []
    for c in (0.5, 1.0, 2.0):
        for s in range(4):
            noise = 0.1 * (s - 1.5)
            rows.append(
                {
                    "arch": "resnet",
                    "c": c,
                    "seed": s,
                    "slice_roughness@0": 1e-4,
                    f"slice_roughness@{K}": 1e-4 * math.exp(noise),
                }
            )
            rows.append(
                {"arch": "noskip", "c": c, "seed": s, "slice_roughness@0": 1e-4, f"slice_roughness@{K}": 1e-2}
            )
    result = rq4.rule4_skip_roughness(pd.DataFrame(rows), SIZES)
    assert result["verdict"].outcome == SUPPORTED
    assert result["intervals"][K].estimate == pytest.approx(-math.log(100), abs=0.1)


def test_profiles():
    paper = rq4.PROFILES["paper"]
    assert paper.num_runs >= 300
    assert 0 in paper.probe_steps
    assert paper.branch_step <= 0.05 * paper.steps
    with pytest.raises(ValueError, match="seed"):
        rq4.Sizes(**{**SIZES.__dict__, "seeds": (0,)})
    with pytest.raises(ValueError, match="probe_steps"):
        rq4.Sizes(**{**SIZES.__dict__, "probe_steps": (5, 10)})


def test_configuration_task_end_to_end_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    rq4_tasks.task_data.cache_clear()
    sizes = rq4.PROFILES["smoke"]
    settings = rq4._settings(sizes, "mlp", "ce", 0.5, 64, True, (0, 1), True, 0)
    out = rq4_tasks.configuration_task(settings)
    rows = pd.DataFrame(out["rows"])
    assert list(rows["seed"]) == [0, 1]
    assert (rows["lr"] == 0.5 * 2 / rows["lambda0"]).all()
    for k in sizes.probe_steps:
        assert rows[[f"{p}@{k}" for p in rq4_tasks.PROBES]].notna().all().all()
    assert math.isfinite(out["seed_barrier"])
    again = pd.DataFrame(rq4_tasks.configuration_task(settings)["rows"]).drop(columns="seconds")
    pd.testing.assert_frame_equal(rows.drop(columns="seconds"), again)
    # a run far beyond the stability threshold diverges: a row, not an error
    wild = rq4_tasks.configuration_task({**settings, "c": 1e4, "seeds": [0]})["rows"][0]
    assert wild["diverged/control"]
    assert wild["test_acc/control"] == 0.1
    rq4_tasks.task_data.cache_clear()
