"""Tests of landscape.dynamics: warm-started λmax, trajectories, the EoS ratio and the continued training loop,
against dense float64 Hessians and the closed-form stability threshold 2/η of gradient descent."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from landscape.data import Dataset
from landscape.dynamics import continue_training, edge_of_stability, sharpness_trajectory, warm_top_eigenpair
from landscape.models import MLP, build_model
from landscape.operators import dense_hessian
from landscape.train import TrainConfig, evaluate, train


def _spd(dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    values = torch.linspace(0.1, 10.0, dim, dtype=torch.float64)
    return (q * values) @ q.T


def test_warm_top_eigenpair_matches_eigvalsh_and_warm_start_is_cheaper():
    A = _spd(60, seed=1)
    exact = torch.linalg.eigh(A)
    cold = warm_top_eigenpair(A, None, tol=1e-10, seed=0)
    near = exact.eigenvectors[:, -1] + 1e-3 * torch.randn(60, generator=torch.Generator().manual_seed(2),
                                                           dtype=torch.float64)  # fmt: skip
    warm = warm_top_eigenpair(A, near, tol=1e-10, seed=0)
    for result in (cold, warm):
        assert result.converged
        assert float(result.values[0]) == pytest.approx(float(exact.eigenvalues[-1]), rel=1e-9)
        assert float(result.residuals[0]) < 1e-4
    assert warm.num_matvecs < cold.num_matvecs


def test_warm_start_still_finds_an_eigenvalue_that_overtook_the_old_top():
    # the start is the eigenvector of the second eigenvalue: the random column of the block must find λ1
    values = torch.tensor([5.0, 4.0, 3.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    A = torch.diag(values)
    start = torch.zeros(6, dtype=torch.float64)
    start[1] = 1.0
    result = warm_top_eigenpair(A, start, tol=1e-10, seed=3)
    assert float(result.values[0]) == pytest.approx(5.0, rel=1e-10)


def test_warm_top_eigenpair_rejects_bad_start():
    A = _spd(8, seed=0)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        warm_top_eigenpair(A, torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-zero"):
        warm_top_eigenpair(A, torch.zeros(8, dtype=torch.float64))
    with pytest.raises(ValueError, match="tol"):
        warm_top_eigenpair(A, None, tol=0.0)


def _tiny_problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    torch.manual_seed(seed)
    model = MLP(5, num_classes=3, depth=1, width=6, activation="tanh").double()
    return model, x, y


def test_sharpness_trajectory_matches_dense_hessians_along_gd():
    model, x, y = _tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    points, exact = [], []
    for step in range(41):
        if step % 10 == 0:
            snapshot = MLP(5, num_classes=3, depth=1, width=6, activation="tanh").double()
            snapshot.load_state_dict(model.state_dict())
            points.append((step, snapshot))
            exact.append(float(torch.linalg.eigvalsh(dense_hessian(snapshot, F.cross_entropy, (x, y)))[-1]))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    traj = sharpness_trajectory(points, F.cross_entropy, (x, y), tol=1e-8)
    assert traj.steps == (0, 10, 20, 30, 40)
    exact = torch.tensor(exact, dtype=torch.float64)
    torch.testing.assert_close(traj.lambda_max, exact, rtol=1e-7, atol=0)
    assert bool(((traj.lambda_max - exact).abs() <= traj.residuals).all())  # the residual is an error bar
    assert max(traj.num_matvecs[1:]) < traj.num_matvecs[0]  # warm starts beat the cold first point
    with pytest.raises(ValueError, match="empty"):
        sharpness_trajectory([], F.cross_entropy, (x, y))


def test_edge_of_stability_closed_form():
    lam = [1.0, 5.0, 9.5, 10.5, 9.8, 3.0]  # with η = 0.2: ρ = 0.1, 0.5, 0.95, 1.05, 0.98, 0.3
    eos = edge_of_stability([0, 10, 20, 30, 40, 50], lam, 0.2)
    assert eos.reached
    assert eos.threshold == pytest.approx(10.0)
    assert eos.onset_step == 20
    assert eos.phase_end_step == 40
    assert eos.ratio_mean == pytest.approx((0.95 + 1.05 + 0.98 + 0.3) / 4)
    assert eos.phase_ratio_mean == pytest.approx((0.95 + 1.05 + 0.98) / 3)
    assert eos.ratio_max == pytest.approx(1.05)
    assert (eos.num_points, eos.phase_points) == (4, 3)
    never = edge_of_stability([0, 1], [1.0, 2.0], 0.2)
    assert not never.reached
    assert math.isnan(never.ratio_mean)
    assert never.onset_step is None
    with pytest.raises(ValueError, match="increasing"):
        edge_of_stability([0, 0], [1.0, 2.0], 0.2)
    with pytest.raises(ValueError, match="equal length"):
        edge_of_stability([0, 1, 2], [1.0, 2.0], 0.2)
    with pytest.raises(ValueError, match="lr"):
        edge_of_stability([0, 1], [1.0, 2.0], -1.0)


def _linear_regression():
    """A linear model under the MSE loss: its Hessian is I_c ⊗ ZᵀZ/N with Z = [X, 1], constant in θ."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(200, 5, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 1, 0.5])
    y = torch.randint(0, 3, (200,), generator=gen)
    data = Dataset("mnist1d", x[:150], y[:150], x[150:], y[150:], 3)
    z = torch.cat([x[:150], torch.ones(150, 1, dtype=torch.float64)], 1)
    lam = float(torch.linalg.eigvalsh(z.T @ z / 150)[-1])
    torch.manual_seed(0)
    return MLP(5, num_classes=3, depth=0).double(), data, lam


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_continue_training_gd_is_stable_exactly_below_two_over_lambda(factor):
    model, data, lam = _linear_regression()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr = factor * 2 / lam
    config = TrainConfig(model="mlp", optimizer="gd", lr=lr, momentum=0.0, batch_size=None, steps=400,
                         loss="mse", dtype="float64", divergence_factor=1e4)  # fmt: skip
    run = continue_training(model, config, data, track_every=50, tol=1e-10)
    for key, value in model.state_dict().items():  # the caller's model is untouched
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    tracked = torch.tensor([row["lambda_max"] for row in run.history], dtype=torch.float64)
    torch.testing.assert_close(tracked, torch.full_like(tracked, lam), rtol=1e-8, atol=0)
    if factor < 1:
        assert run.status == "finished"
        losses = [row["train_loss"] for row in run.history]
        assert losses[-1] < losses[0]
        eos = edge_of_stability([row["step"] for row in run.history], tracked, lr)
        assert eos.ratio_mean == pytest.approx(factor, rel=1e-8)
    else:
        assert run.status == "diverged"
        assert run.diverged_step is not None


def test_continue_training_rejects_bad_arguments():
    model, data, _ = _linear_regression()
    config = TrainConfig(
        model="mlp", optimizer="gd", lr=0.1, momentum=0.0, batch_size=None, steps=5, loss="mse"
    )
    with pytest.raises(ValueError, match="track_every"):
        continue_training(model, config, data, track_every=0)
    with pytest.raises(TypeError, match="Dataset"):
        continue_training(model, config, (data.x_train, data.y_train), track_every=1)
    with pytest.raises(TypeError, match="TrainConfig"):
        continue_training(model, {"lr": 0.1}, data, track_every=1)


def _tiny_classification(seed: int = 5):
    """A small separable 3-class problem in float64 on which minibatch SGD drives the training loss to ~0."""
    gen = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(3, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (160,), generator=gen)
    x = centres[y] + torch.randn(160, 5, generator=gen, dtype=torch.float64)
    return Dataset("mnist1d", x[:120], y[:120], x[120:], y[120:], 3)


def test_continue_training_from_init_matches_train_and_stops_at_the_target_loss():
    data = _tiny_classification()
    config = TrainConfig(model="mlp", model_config={"depth": 1, "width": 8}, optimizer="sgd", lr=0.1,
                         momentum=0.0, batch_size=16, steps=300, eval_every=10, dtype="float64", seed=3)  # fmt: skip
    init = build_model("mlp", input_shape=(5,), num_classes=3, seed=3, dtype=torch.float64, depth=1, width=8)
    full = continue_training(init, config, data, track_every=10, track_sharpness=False)
    reference = train(config, data=data)
    assert full.status == "finished"
    assert full.reached_step is None
    assert full.target_loss is None
    assert "lambda_max" not in full.history[-1]
    ours = torch.tensor([row["train_loss"] for row in full.history], dtype=torch.float64)
    theirs = torch.tensor([row["train_loss"] for row in reference.history], dtype=torch.float64)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)  # the same steps as train(config)

    target = float(ours[len(ours) // 2])  # crossed somewhere in the middle of the run
    first = next(i for i, v in enumerate(ours.tolist()) if v <= target)
    stopped = continue_training(init, config, data, track_every=10, target_loss=target)
    assert stopped.status == "reached"
    assert stopped.target_loss == target
    assert stopped.reached_step == full.history[first]["step"] == stopped.history[-1]["step"]
    assert len(stopped.history) == first + 1
    assert all(row["train_loss"] > target for row in stopped.history[:-1])
    assert stopped.history[-1]["train_loss"] == pytest.approx(float(ours[first]), rel=1e-12)
    assert "lambda_max" in stopped.history[-1]
    model = build_model("mlp", input_shape=(5,), num_classes=3, dtype=torch.float64, depth=1, width=8)
    model.load_state_dict(stopped.state_dict)  # the returned weights are those at the stopping step
    assert evaluate(model, F.cross_entropy, data.x_train, data.y_train)["loss"] == pytest.approx(
        stopped.history[-1]["train_loss"], rel=1e-12
    )

    never = continue_training(init, config, data, track_every=10, track_sharpness=False, target_loss=-1.0)
    assert never.status == "finished"
    assert never.reached_step is None
    at_start = continue_training(init, config, data, track_every=10, target_loss=10.0)
    assert at_start.status == "reached"
    assert at_start.reached_step == 0
    assert len(at_start.history) == 1
    for bad in (math.nan, "0.1", True):
        with pytest.raises(ValueError, match="target_loss"):
            continue_training(init, config, data, track_every=10, target_loss=bad)


def test_continue_training_keeps_the_configs_own_stop_rule():
    data = _tiny_classification()
    config = TrainConfig(model="mlp", model_config={"depth": 1, "width": 8}, optimizer="sgd", lr=0.1,
                         momentum=0.0, batch_size=16, steps=300, dtype="float64", seed=3, stop_loss=10.0)  # fmt: skip
    init = build_model("mlp", input_shape=(5,), num_classes=3, seed=3, dtype=torch.float64, depth=1, width=8)
    run = continue_training(init, config, data, track_every=10, track_sharpness=False)
    assert run.status == "reached"
    assert run.reached_step == 0
    assert run.target_loss == 10.0
