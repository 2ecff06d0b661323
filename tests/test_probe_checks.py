"""The validation chapter's helpers (landscape.paper.probe_checks, landscape.paper.plotting) on tiny exact problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape import DenseOperator, HessianOperator, dense_hessian
from landscape.paper import probe_checks as pc
from landscape.paper.plotting import save_figure


@pytest.fixture(scope="module")
def relu_testbed():
    return pc.make_testbed(
        "relu", in_dim=4, hidden=(6, 5), num_classes=3, num_samples=40, train_steps=30, seed=1
    )


def test_testbed_is_seeded_and_float64():
    a = pc.make_testbed("tanh", in_dim=3, hidden=(4,), num_classes=2, num_samples=20, train_steps=5, seed=3)
    b = pc.make_testbed("tanh", in_dim=3, hidden=(4,), num_classes=2, num_samples=20, train_steps=5, seed=3)
    c = pc.make_testbed("tanh", in_dim=3, hidden=(4,), num_classes=2, num_samples=20, train_steps=5, seed=4)
    assert a.num_params == 3 * 4 + 4 + 4 * 2 + 2
    assert all(p.dtype == torch.float64 for p in a.model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))
    assert not torch.equal(a.inputs, c.inputs)
    assert a.train_losses[-1] < a.train_losses[0]
    assert all(p.grad is None for p in a.model.parameters())


def test_unknown_options_raise():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        pc.mlp([2, 3], "gelu")
    with pytest.raises(ValueError, match="label_noise"):
        pc.teacher_data(4, 2, 2, label_noise=1.5)
    with pytest.raises(ValueError, match="unknown trace methods"):
        pc.trace_errors(DenseOperator(torch.eye(5, dtype=torch.float64)), 5.0, [4], methods=["exact"])


def test_rescaling_keeps_the_function_and_moves_only_the_raw_curvature(relu_testbed):
    model = relu_testbed.model
    scaled = pc.rescale_layers(model, 0, 7.0)
    torch.testing.assert_close(scaled(relu_testbed.inputs), model(relu_testbed.inputs))
    assert torch.equal(model[0].weight, relu_testbed.model[0].weight)  # the original is untouched
    torch.testing.assert_close(scaled[0].weight, 7.0 * model[0].weight)
    torch.testing.assert_close(scaled[2].weight, model[2].weight / 7.0)
    study = pc.rescaling_study(relu_testbed, [0.2, 1.0, 5.0])
    assert np.ptp(study["loss"]) < 1e-12
    ratio = study["lambda_max"].max() / study["lambda_max"].min()
    assert ratio > 2, "λmax should move under rescaling"
    ns = study["normalized_sharpness"]
    np.testing.assert_allclose(ns, ns.iloc[1], rtol=1e-6)


def test_rescaling_refuses_non_homogeneous_activations_and_bad_arguments(relu_testbed):
    tanh = pc.mlp([3, 4, 4, 2], "tanh")
    with pytest.raises(ValueError, match="only through ReLU"):
        pc.rescale_layers(tanh, 0, 2.0)
    with pytest.raises(ValueError, match="alpha must be a positive"):
        pc.rescale_layers(relu_testbed.model, 0, -1.0)
    with pytest.raises(ValueError, match="layer must index"):
        pc.rescale_layers(relu_testbed.model, 2, 2.0)
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        pc.rescale_layers(nn.Linear(2, 2), 0, 2.0)


def test_compare_eigenvalues_reproduces_the_undeflated_artefact():
    # A known spectrum with distinct top eigenvalues 4, 3, 2.5 and a gap below.
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([4.0, 3.0, 2.5], dtype=torch.float64), torch.linspace(-0.5, 1.0, 27)])
    exact = torch.sort(spectrum).values
    table = pc.compare_eigenvalues(
        DenseOperator(q @ torch.diag(spectrum) @ q.T), exact, 3, power_max_iter=500
    )
    lanczos = table[table["method"] == "Lanczos"]
    np.testing.assert_allclose(lanczos["value"], [4.0, 3.0, 2.5], atol=1e-10)
    assert (lanczos["abs_error"] <= lanczos["residual"] + 1e-12).all()
    undeflated = table[table["method"] == "power, undeflated"]["value"].to_numpy()
    np.testing.assert_allclose(undeflated, 4.0, rtol=5e-3)  # three copies of λmax
    deflated = table[table["method"] == "power, deflated"]["value"].to_numpy()
    np.testing.assert_allclose(deflated, [4.0, 3.0, 2.5], rtol=5e-2)
    assert table[table["method"] == "power, undeflated"]["rel_error"].iloc[1:].min() > 0.2


def test_trace_errors_and_summary_on_an_exact_problem():
    model, loss_fn, data = (
        pc.mlp([3, 5, 2], "tanh", seed=2),
        nn.functional.cross_entropy,
        pc.teacher_data(30, 3, 2),
    )
    H = dense_hessian(model, loss_fn, data)
    exact = float(torch.trace(H))
    op = HessianOperator(model, loss_fn, data)
    errors = pc.trace_errors(op, exact, [8, 16], seeds=range(3))
    assert len(errors) == 3 * 2 * 3
    # Hutch++ with a sketch of D columns spans the whole space: exact up to rounding.
    full = pc.trace_errors(op, exact, [3 * op.dim], methods=["hutch++"], seeds=[0])
    assert full["rel_error"].iloc[0] < 1e-10
    summary = pc.trace_summary(errors)
    assert list(summary.columns) == [
        "method",
        "budget",
        "rms_rel_error",
        "mean_rel_stderr",
        "coverage",
        "seeds",
    ]
    assert (summary["seeds"] == 3).all()
    assert summary["coverage"].between(0, 1).all()
    row = summary[(summary["method"] == "hutchinson") & (summary["budget"] == 8)].iloc[0]
    hutch = errors[(errors["method"] == "hutchinson") & (errors["budget"] == 8)]
    assert row["rms_rel_error"] == pytest.approx(float(np.sqrt((hutch["rel_error"] ** 2).mean())))


def test_smoothed_density_is_a_density():
    grid = np.linspace(-5, 6, 4001)
    density = pc.smoothed_density(np.array([0.0, 0.0, 1.0]), grid, 0.2)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-9)
    assert density[np.argmin(np.abs(grid))] > density[np.argmin(np.abs(grid - 1.0))]
    with pytest.raises(ValueError, match="sigma"):
        pc.smoothed_density([1.0], grid, 0.0)


def test_benchmark_tables(tmp_path):
    assert pc.benchmark_tables(tmp_path / "missing") == {}
    (tmp_path / "a.md").write_text("| a |\n|---|\n| 1 |\n")
    (tmp_path / "curvature.md").write_text("## Curvature ##\n\n| c |\n|---|\n| 2 |\n")
    tables = pc.benchmark_tables(tmp_path)
    assert list(tables) == ["curvature.md", "a.md"]
    assert tables["curvature.md"] == "**Curvature**\n\n| c |\n|---|\n| 2 |\n"


def test_save_figure_names_figures_after_their_notebook(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    first = save_figure(fig, tmp_path, "validation_lines", "validation")
    again = save_figure(fig, tmp_path / "b", "validation_lines", "validation")
    assert first.name == "validation_lines.png"
    assert first.read_bytes() == again.read_bytes()  # reproducible files
    with pytest.raises(ValueError, match="validation_<what>"):
        save_figure(fig, tmp_path, "lines", "validation")
    plt.close(fig)
