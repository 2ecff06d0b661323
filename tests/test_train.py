"""Training: exact GD / heavy-ball iterates on a linear model, schedules, determinism, checkpoints, divergence
as a result, and the vmapped multi-seed loop equal to separate runs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from landscape.data import Dataset
from landscape.models import build_model
from landscape.train import (
    TrainConfig,
    _stacked_forward,
    batch_indices,
    learning_rate,
    loss_function,
    paper_recipe,
    train,
    train_seeds,
    vmappable,
)


def synthetic(
    n_train: int = 96, n_test: int = 32, length: int = 8, classes: int = 3, seed: int = 0
) -> Dataset:
    """A small learnable problem: labels from a fixed random linear map of Gaussian inputs."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(length, classes, generator=gen)
    x = torch.randn(n_train + n_test, length, generator=gen)
    y = (x @ w).argmax(-1)
    return Dataset("mnist1d", x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


DATA = synthetic()
SMALL_MLP = {"depth": 1, "width": 8}


def test_full_batch_gd_with_momentum_matches_the_closed_form_iteration():
    """Linear model, MSE loss ½‖Wx + b − t‖² (mean): grad_W = (1/N) Σ (Wx + b − t) xᵀ. Heavy ball (torch's
    convention): v ← μ v + g + λ θ, θ ← θ − η v."""
    lr, mu, wd, steps = 0.1, 0.9, 1e-3, 12
    config = TrainConfig(
        model="mlp",
        model_config={"depth": 0},
        optimizer="gd",
        batch_size=None,
        lr=lr,
        momentum=mu,
        weight_decay=wd,
        steps=steps,
        loss="mse",
        dtype="float64",
        seed=5,
    )
    result = train(config, data=DATA)
    init = build_model("mlp", input_shape=(8,), num_classes=3, seed=5, dtype=torch.float64, depth=0)
    W, b = init[0].weight.detach().clone(), init[0].bias.detach().clone()
    x, t = DATA.x_train.double(), F.one_hot(DATA.y_train, 3).double()
    vW, vb = torch.zeros_like(W), torch.zeros_like(b)
    for _ in range(steps):
        r = x @ W.T + b - t
        gW, gb = r.T @ x / len(x) + wd * W, r.mean(0) + wd * b
        vW, vb = mu * vW + gW, mu * vb + gb
        W, b = W - lr * vW, b - lr * vb
    torch.testing.assert_close(result.state_dict["0.weight"], W, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(result.state_dict["0.bias"], b, rtol=1e-12, atol=1e-14)
    expected_loss = float(0.5 * ((x @ W.T + b - t) ** 2).sum(1).mean())
    assert result.final["train_loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert result.status == "finished"
    assert result.diverged_step is None


def test_losses():
    out = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    expected = 0.5 * ((1.0**2 + 0 + 1.0**2) + (0.25 + 0.25 + 1.0)) / 2
    assert float(loss_function("mse")(out, y)) == pytest.approx(expected)
    assert loss_function("ce") is F.cross_entropy
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        loss_function("hinge")


def test_learning_rate_schedules():
    c = TrainConfig(lr=1.0, warmup_steps=4, schedule="cosine", steps=14)
    assert [learning_rate(c, s, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(c, 4, 14) == 1.0
    assert learning_rate(c, 9, 14) == pytest.approx(0.5)  # halfway through the 10 decay steps
    lin = replace(c, schedule="linear")
    assert learning_rate(lin, 9, 14) == pytest.approx(0.5)
    assert learning_rate(replace(c, schedule="constant"), 13, 14) == 1.0


def test_epochs_visit_every_sample_once_per_epoch():
    c = TrainConfig(batch_size=10, steps=None, epochs=3)
    assert c.num_steps(95) == 30
    assert c.steps_per_epoch(95) == 10
    batches = list(batch_indices(c, 95, c.num_steps(95), torch.Generator().manual_seed(0)))
    assert len(batches) == 30
    assert len(batches[9]) == 5
    for e in range(3):
        epoch = torch.cat(batches[10 * e : 10 * e + 10])
        assert sorted(epoch.tolist()) == list(range(95))
    assert not torch.equal(torch.cat(batches[:10]), torch.cat(batches[10:20]))


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="optimizer='lbfgs'"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        TrainConfig(steps=10, epochs=1)
    with pytest.raises(ValueError, match="full-batch"):
        TrainConfig(optimizer="gd")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(TypeError, match="TrainConfig"):
        train({"lr": 0.1})
    c = TrainConfig(checkpoint_steps=[5, 0, 5])
    assert c.checkpoint_steps == (0, 5)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert len({c, TrainConfig.from_dict(c.to_dict()), replace(c, seed=1)}) == 2  # hashable, by value


def _same_numbers(a, b) -> None:
    assert a.history == b.history
    assert a.final == b.final
    for k in a.state_dict:
        assert torch.equal(a.state_dict[k], b.state_dict[k]), k


def test_same_config_and_seed_same_numbers_and_global_rng_untouched():
    config = TrainConfig(model_config=SMALL_MLP, batch_size=16, steps=25, eval_every=10, seed=3)
    state = torch.get_rng_state()
    a, b = train(config, data=DATA), train(config, data=DATA)
    assert torch.equal(torch.get_rng_state(), state)
    _same_numbers(a, b)
    c = train(replace(config, seed=4), data=DATA)
    assert not torch.equal(a.state_dict["0.weight"], c.state_dict["0.weight"])
    assert [h["step"] for h in a.history] == [0, 10, 20, 25]
    assert a.trained_with == "single"
    assert a.num_parameters == 8 * 8 + 8 + 8 * 3 + 3


def test_training_learns_and_checkpoints_are_kept():
    config = TrainConfig(
        model_config=SMALL_MLP, batch_size=32, steps=150, eval_every=50, checkpoint_steps=(0, 50)
    )
    result = train(config, data=DATA)
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert result.final["train_acc"] > 0.8
    assert set(result.checkpoints) == {0, 50}
    init = build_model("mlp", input_shape=(8,), num_classes=3, seed=0, **SMALL_MLP).state_dict()
    for k, v in init.items():
        assert torch.equal(result.checkpoints[0][k], v)
    assert not torch.equal(result.checkpoints[50]["0.weight"], result.state_dict["0.weight"])


def test_divergence_is_a_status_not_an_exception():
    config = TrainConfig(
        model_config=SMALL_MLP, optimizer="sgd", lr=1e4, momentum=0.9, batch_size=32, steps=50
    )
    result = train(config, data=DATA)
    assert result.status == "diverged"
    assert isinstance(result.diverged_step, int)
    assert 1 < result.diverged_step <= 50
    assert all(math.isnan(v) for v in result.final.values())


def test_stop_rule_ends_at_the_first_evaluation_below_the_target():
    config = TrainConfig(model_config=SMALL_MLP, batch_size=32, steps=400, eval_every=20, dtype="float64")
    full = train(config, data=DATA)
    assert full.status == "finished"
    assert full.reached_step is None
    losses = [row["train_loss"] for row in full.history]
    target = (losses[3] + losses[4]) / 2 if losses[4] < losses[3] else losses[4]  # first crossed at row 4
    first = next(i for i, value in enumerate(losses) if value <= target)
    stopped = train(replace(config, stop_loss=target), data=DATA)
    assert stopped.status == "reached"
    assert stopped.reached_step == full.history[first]["step"] == stopped.history[-1]["step"]
    assert stopped.history == full.history[: first + 1]  # the same run, cut at the stop
    assert stopped.final["train_loss"] <= target
    assert train(replace(config, stop_loss=10.0), data=DATA).reached_step == 0  # already below at the start
    with pytest.raises(ValueError, match="stop_loss"):
        TrainConfig(stop_loss=math.inf)


def test_stop_refine_lands_on_the_first_step_below_the_target():
    config = TrainConfig(model_config=SMALL_MLP, batch_size=32, steps=400, eval_every=1, dtype="float64")
    every_step = train(config, data=DATA)
    losses = [row["train_loss"] for row in every_step.history]
    target = losses[137]
    first = next(i for i, value in enumerate(losses) if value <= target)  # where an every-step check stops
    coarse = train(replace(config, eval_every=50, stop_loss=target), data=DATA)
    assert coarse.reached_step > first  # checked every 50 steps, the stop lands past the first step below
    refined = train(replace(config, eval_every=50, stop_loss=target, stop_refine=3.0), data=DATA)
    assert refined.status == "reached"
    assert refined.reached_step == first
    assert refined.final["train_loss"] == pytest.approx(losses[first], rel=1e-12)
    cadence = [row["step"] for row in refined.history[:-1]]
    assert cadence == list(range(0, first, 50))  # the stop checks between evaluations add only the stop's row

    def without_batch_loss(row):  # batch_loss is the mean since the previous row
        return {k: v for k, v in row.items() if k != "batch_loss"}

    assert without_batch_loss(refined.history[-1]) == without_batch_loss(every_step.history[first])
    refine_config = replace(config, eval_every=50, stop_loss=target, stop_refine=3.0)
    vmapped = train_seeds(refine_config, [0, 1], data=DATA)
    assert vmapped[0].reached_step == first
    for copy in vmapped:  # a copy's rows are those of its own run, whatever the other copies do
        alone = train(replace(copy.config), data=DATA)
        assert [r["step"] for r in copy.history] == [r["step"] for r in alone.history]
        assert copy.reached_step == alone.reached_step
    with pytest.raises(ValueError, match="needs stop_loss"):
        TrainConfig(stop_refine=2.0)
    with pytest.raises(ValueError, match="stop_refine"):
        TrainConfig(stop_loss=0.1, stop_refine=0.5)


def test_start_from_given_weights_and_evaluation_hook():
    config = TrainConfig(model_config=SMALL_MLP, batch_size=32, steps=60, eval_every=20, dtype="float64")
    fresh = train(config, data=DATA)
    init = build_model("mlp", input_shape=(8,), num_classes=3, seed=0, dtype=torch.float64, **SMALL_MLP)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    seen = []

    def hook(step, model):
        seen.append(step)
        return {"weight_norm": float(torch.cat([p.detach().flatten() for p in model.parameters()]).norm())}

    from_module = train(config, data=DATA, start=init, on_eval=hook)
    assert seen == [0, 20, 40, 60]
    assert from_module.history[0]["weight_norm"] == pytest.approx(
        float(torch.cat([v.flatten() for v in before.values()]).norm())
    )
    for k, v in init.state_dict().items():
        assert torch.equal(v, before[k])  # the start module is never modified
    from_state = train(config, data=DATA, start=before)
    for k, v in fresh.state_dict.items():  # the config's own initialisation: the same run three ways
        assert torch.equal(from_module.state_dict[k], v)
        assert torch.equal(from_state.state_dict[k], v)
    halfway = train(replace(config, steps=30), data=DATA, start=fresh.state_dict)
    assert halfway.history[0]["train_loss"] == pytest.approx(fresh.history[-1]["train_loss"])
    with pytest.raises(TypeError, match="start"):
        train(config, data=DATA, start=[1, 2])


def test_vmapped_copies_stop_at_the_target_like_separate_runs():
    config = TrainConfig(
        model_config=SMALL_MLP, batch_size=32, steps=300, eval_every=5, dtype="float64", stop_loss=0.6
    )
    vmapped = _assert_seeds_match_separate_runs(config, [0, 1, 2], atol=1e-10)
    assert {r.status for r in vmapped} == {"reached"}
    assert len({r.reached_step for r in vmapped}) > 1  # copies stop at different steps, the others go on


def _assert_runs_match(vmapped, separate, atol):
    assert vmapped.config == separate.config
    assert vmapped.trained_with == "vmap"
    assert vmapped.status == separate.status
    assert vmapped.diverged_step == separate.diverged_step
    assert vmapped.reached_step == separate.reached_step
    for k, v in separate.state_dict.items():
        torch.testing.assert_close(vmapped.state_dict[k], v, rtol=0, atol=atol)
    assert set(vmapped.checkpoints) == set(separate.checkpoints)
    for step, state in separate.checkpoints.items():
        for k, v in state.items():
            torch.testing.assert_close(vmapped.checkpoints[step][k], v, rtol=0, atol=atol)
    assert len(vmapped.history) == len(separate.history)
    for hv, hs in zip(vmapped.history, separate.history, strict=True):
        assert hv.keys() == hs.keys()
        for key in hs:
            assert hv[key] == pytest.approx(hs[key], rel=1e-9, abs=1e-12, nan_ok=True), key


def _assert_seeds_match_separate_runs(config, seeds, atol):
    """`train_seeds(config, seeds)` against one `train` run per seed; returns the vmapped results."""
    vmapped = train_seeds(config, seeds, data=DATA)
    for seed, v in zip(seeds, vmapped, strict=True):
        _assert_runs_match(v, train(replace(config, seed=seed), data=DATA), atol=atol)
    return vmapped


# float64 weights after 12 steps agree to rounding (~1e-16) for the hand-batched MLP and ~1e-13 for the ResNet;
# the Transformer's AdamW divides by square roots of near-zero second moments, which turns rounding of the
# vmapped attention products into ~1e-10 (a wrong gradient or update shows up at 1e-3 or more).
@pytest.mark.parametrize(
    ("model", "model_config", "optimizer", "loss", "atol"),
    [
        ("mlp", SMALL_MLP, "sgd", "ce", 1e-14),
        ("mlp", {"depth": 2, "width": 8, "activation": "tanh"}, "adam", "ce", 1e-14),
        ("mlp", {"depth": 1, "width": 8, "activation": "gelu"}, "adamw", "mse", 1e-14),
        (
            "transformer",
            {"patch_size": 2, "dim": 8, "depth": 1, "heads": 2, "pooling": "cls"},
            "adamw",
            "ce",
            1e-8,
        ),
        ("resnet18", {"width_multiplier": 1 / 32, "norm": "group"}, "sgd", "mse", 1e-11),
    ],
)
def test_vmapped_seeds_equal_separate_runs(model, model_config, optimizer, loss, atol):
    config = TrainConfig(
        model=model,
        model_config=model_config,
        optimizer=optimizer,
        loss=loss,
        lr=0.05,
        weight_decay=1e-3,
        warmup_steps=3,
        schedule="cosine",
        batch_size=16,
        steps=12,
        eval_every=5,
        checkpoint_steps=(0, 6),
        dtype="float64",
    )
    _assert_seeds_match_separate_runs(config, [0, 1, 7], atol=atol)


def test_vmapped_float32_agrees_to_rounding():
    config = TrainConfig(model_config=SMALL_MLP, batch_size=16, steps=20, eval_every=10)
    for seed, v in zip([0, 1], train_seeds(config, [0, 1], data=DATA), strict=True):
        s = train(replace(config, seed=seed), data=DATA)
        for k in s.state_dict:
            torch.testing.assert_close(v.state_dict[k], s.state_dict[k], rtol=1e-4, atol=1e-5)


def test_batchnorm_falls_back_to_separate_runs():
    config = TrainConfig(
        model="resnet18",
        model_config={"width_multiplier": 1 / 32, "norm": "batch"},
        batch_size=16,
        steps=3,
        eval_every=3,
    )
    assert not vmappable(build_model("resnet18", **config.model_config))
    results = train_seeds(config, [0, 1], data=DATA)
    assert [r.trained_with for r in results] == ["single", "single"]
    _same_numbers(results[1], train(replace(config, seed=1), data=DATA))


def test_vmapped_divergence_is_per_seed_status():
    config = TrainConfig(model_config=SMALL_MLP, optimizer="sgd", lr=1e4, batch_size=32, steps=40)
    results = train_seeds(config, [0, 1], data=DATA)
    for r in results:
        assert r.status == "diverged"
        assert isinstance(r.diverged_step, int)
        assert r.diverged_step == train(r.config, data=DATA).diverged_step


def test_vmapped_divergence_matches_separate_runs_copy_by_copy():
    # float64, SGD at lr 20: seed 0 diverges at step 3, seed 1 at step 4, seed 5 at step 5 (each copy goes on
    # after the others stopped); early, sharp divergence, so rounding differences have not grown yet
    config = TrainConfig(
        model_config=SMALL_MLP,
        optimizer="sgd",
        lr=20.0,
        batch_size=32,
        steps=10,
        eval_every=2,
        checkpoint_steps=(2, 4),
        dtype="float64",
    )
    # the weights of a diverged copy are those it had when it diverged, as for `train`
    vmapped = _assert_seeds_match_separate_runs(config, [0, 1, 5], atol=1e-10)
    assert [r.diverged_step for r in vmapped] == [3, 4, 5]


@pytest.mark.parametrize(
    ("model", "model_config"),
    [
        ("mlp", {"depth": 2, "width": 8, "activation": "silu"}),  # hand-batched products
        ("transformer", {"patch_size": 2, "dim": 8, "depth": 1, "heads": 2, "pooling": "mean"}),  # vmap
    ],
)
def test_stacked_forward_is_each_copy_on_its_own_inputs(model, model_config):
    models = [
        build_model(model, input_shape=(8,), num_classes=3, seed=s, dtype=torch.float64, **model_config)
        for s in range(3)
    ]
    params, buffers = torch.func.stack_module_state(models)
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    outputs = _stacked_forward(models[0])(params, buffers, x)
    for i, m in enumerate(models):
        torch.testing.assert_close(outputs[i], m(x[i]), rtol=0, atol=1e-12)


def test_seeds_validation():
    with pytest.raises(ValueError, match="distinct"):
        train_seeds(TrainConfig(), [1, 1], data=DATA)
    with pytest.raises(ValueError, match="distinct"):
        train_seeds(TrainConfig(), [], data=DATA)


def test_paper_recipes():
    # the defaults are Greydanus' MLP recipe (and MLP's defaults are his 2 x 100 ReLU)
    assert paper_recipe("mlp") == TrainConfig(model_config={"depth": 2, "width": 100, "activation": "relu"})
    assert paper_recipe("resnet18").model_config["norm"] == "group"
    assert paper_recipe("transformer", seed=2).seed == 2
    with pytest.raises(ValueError, match="unknown recipe"):
        paper_recipe("vgg")
