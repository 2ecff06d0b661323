# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chapter-rq1)=
# # RQ1 — Why does SGD find flat, generalising minima?
#
# The founding write-up argued from a stochastic-differential-equation picture: the gradient noise of SGD, whose
# temperature grows with the ratio η/B of learning rate to batch size {cite}`jastrzebski2017three,smith2018bayesian`,
# lets the iterate escape sharp regions; flat basins hold more volume, so SGD ends in them; and flat minima,
# measured scale-invariantly, generalise better {cite}`keskar2017large`. It showed no experiment. This chapter
# tests each of these claims on MNIST-1D {cite}`greydanus2020scaling` with four experiments — the edge of
# stability of full-batch gradient descent {cite}`cohen2021gradient`, a grid over batch size and learning rate,
# escape from a sharp minimum, and the rescalings of Dinh et al. {cite}`dinh2017sharp` — and closes with a
# verdict per claim. This chapter was executed in the {glue:text}`profile` profile.

# %% tags=["parameters", "remove-cell"]
profile = "paper"  # smoke | paper | full
figures_dir = "build/interactive/figures"
results_dir = "build/interactive/results/rq1_sgd_flat_minima"
seed = 0

# %% tags=["remove-cell"]
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue
from scipy.stats import spearmanr

from landscape import (
    HessianOperator,
    build_model,
    epsilon_sharpness,
    hessian_trace,
    load_dataset,
    normalized_sharpness,
    top_eigenvalues,
    worst_case_sharpness,
)
from landscape.dynamics import continue_training, edge_of_stability
from landscape.plotting import apply_style, save_figure
from landscape.probe_checks import rescale_layers
from landscape.results import load_run, run_sweep
from landscape.train import TrainConfig, evaluate, loss_function

MLP_CONFIG = {"depth": 2, "width": 100, "activation": "relu"}
# a one-block Transformer with patches of 8 (9.4k parameters): the reference recipe's HVP costs 15x more
TRANSFORMER_CONFIG = {"patch_size": 8, "dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2, "pooling": "mean"}
SIZES = {
    "smoke": {
        "seeds": [0, 1], "threads": 1,
        "eos": {"mlp": {"num_train": 128, "steps": 60, "track_every": 10,
                        "lrs": {"ce": [0.5, 1.0], "mse": [0.2, 0.4]}},
                "transformer": {"num_train": 64, "steps": 30, "track_every": 10,
                                "lrs": {"ce": [0.1, 0.2], "mse": [0.05, 0.06]}}},
        "grid": {"batch_sizes": [32, 256], "lrs": [0.05, 0.2], "epochs": 2, "eval_every": 100},
        "curvature_samples": 256, "trace_matvecs": 8, "adaptive_steps": 3, "tol": 1e-2,
        "escape": {"lr": 0.2, "small_batch": 32, "steps": 40, "track_every": 20},
        "alphas": [0.3, 1.0, 3.0],
    },
    "paper": {
        "seeds": [0, 1, 2], "threads": 1,
        "eos": {"mlp": {"num_train": 500, "steps": 1500, "track_every": 25,
                        "lrs": {"ce": [0.2, 0.3, 0.5, 1.0], "mse": [0.1, 0.2, 0.3, 0.4]}},
                "transformer": {"num_train": 256, "steps": 500, "track_every": 20,
                                "lrs": {"ce": [0.03, 0.05, 0.1, 0.2], "mse": [0.035, 0.045, 0.055, 0.06]}}},
        "grid": {"batch_sizes": [16, 64, 256, 1024], "lrs": [0.05, 0.1, 0.2], "epochs": 60, "eval_every": 1000},
        "curvature_samples": 1000, "trace_matvecs": 40, "adaptive_steps": 10, "tol": 1e-3,
        "escape": {"lr": 0.1, "small_batch": 16, "steps": 600, "track_every": 50},
        "alphas": [0.1, 0.3, 1.0, 3.0, 10.0],
    },
    "full": {
        "seeds": [0, 1, 2, 3, 4], "threads": None,
        "eos": {"mlp": {"num_train": 1000, "steps": 4000, "track_every": 20,
                        "lrs": {"ce": [0.1, 0.2, 0.3, 0.5, 1.0], "mse": [0.05, 0.1, 0.2, 0.3, 0.4]}},
                "transformer": {"num_train": 1000, "steps": 2000, "track_every": 20,
                                "lrs": {"ce": [0.03, 0.05, 0.1, 0.2], "mse": [0.035, 0.045, 0.055, 0.06]}}},
        "grid": {"batch_sizes": [8, 16, 32, 64, 128, 256, 512, 1024, 4000], "lrs": [0.02, 0.05, 0.1, 0.2, 0.4],
                 "epochs": 200, "eval_every": 1000},
        "curvature_samples": 4000, "trace_matvecs": 100, "adaptive_steps": 20, "tol": 1e-4,
        "escape": {"lr": 0.1, "small_batch": 16, "steps": 4000, "track_every": 100},
        "alphas": np.logspace(-2, 2, 9).tolist(),
    },
}  # fmt: skip
if profile not in SIZES:
    raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(SIZES)}")
cfg = SIZES[profile]
NOTEBOOK = "rq1_sgd_flat_minima"
ADAPTIVE_RHO = 0.1  # radius of the adaptive worst-case sharpness: ‖δ / |θ|‖₂ ≤ ρ
EOS_ONSET = 0.9  # λmax·η/2 that ends progressive sharpening
results = Path(results_dir)
results.mkdir(parents=True, exist_ok=True)
if cfg["threads"]:
    torch.set_num_threads(cfg["threads"])  # small models: one thread per process is fastest on a shared CPU
apply_style()
started = time.perf_counter()
data = load_dataset("mnist1d")
curvature_data = (data.x_train[: cfg["curvature_samples"]], data.y_train[: cfg["curvature_samples"]])


def paste(key, value):
    """glue() a plain Python value for the text (NumPy and torch scalars become float or int), not
    displayed."""
    glue(key, value.item() if hasattr(value, "item") else value, display=False)


def pm(values, digits=3):
    """'mean ± std' over seeds as text."""
    values = np.asarray(values, dtype=float)
    return f"{np.nanmean(values):.{digits}g} ± {np.nanstd(values, ddof=1) if len(values) > 1 else 0:.2g}"


paste("profile", profile)
paste("num_seeds", len(cfg["seeds"]))
paste("seeds", ", ".join(map(str, cfg["seeds"])))
paste("curvature_samples", cfg["curvature_samples"])
paste("adaptive_rho", ADAPTIVE_RHO)
paste("eos_onset", EOS_ONSET)

# %% [markdown]
# ## Definitions
#
# All curvature is that of the mean training loss L(θ) over a stated sample set. In the grid, escape and
# rescaling experiments it is the Hessian H of the loss over a fixed subset, the first
# {glue:text}`curvature_samples` MNIST-1D training samples (the same subset for every model); in the
# edge-of-stability experiment it is the Hessian of the full-batch objective that gradient descent minimises.
#
# - **λmax**: the largest eigenvalue of H, by Lanczos (`top_eigenvalues`; along a trajectory, warm-started from
#   the previous top eigenvector, `landscape.dynamics`).
# - **trace/D**: tr(H)/D, the mean eigenvalue, by XTrace {cite}`epperly2024xtrace`.
# - **normalised sharpness**: λmax(diag|θ| H diag|θ|), invariant under the rescalings θ → c ⊙ θ that leave a
#   ReLU network's function unchanged ({doc}`../methods`).
# - **adaptive sharpness**: max L(θ + δ) − L(θ) over ‖δ ⊘ |θ|‖₂ ≤ ρ with ρ = {glue:text}`adaptive_rho`
#   (worst case, projected gradient ascent; {cite}`kwon2021asam,andriushchenko2023modern`), also rescaling
#   invariant.
# - **EoS ratio**: ρ_t = λmax(t)·η/2 for gradient descent with step η; GD on a quadratic is stable iff ρ < 1.
#   Progressive sharpening ends at the first tracked step where ρ_t ≥ {glue:text}`eos_onset`; the EoS ratio is
#   the mean of ρ_t from there to the last tracked step with ρ_t ≥ {glue:text}`eos_onset` (the EoS phase).
# - **generalisation gap**: training accuracy minus test accuracy (full 4000/1000 split).
#
# Every experiment is repeated for the seeds {glue:text}`seeds` (initialisation and data order); we report the
# mean ± standard deviation over seeds.
#
# ## Edge of stability
#
# Full-batch gradient descent without momentum is run from the standard initialisation on a fixed training subset
# (as Cohen et al. did with a CIFAR-10 subset): the 2 × 100 ReLU MLP on the first {glue:text}`eos_mlp_train`
# samples for {glue:text}`eos_mlp_steps` steps, and a one-block Transformer (patch 8, width 32, 2 heads;
# {glue:text}`transformer_params` parameters, smaller than the reference recipe so that Hessian-vector products
# stay affordable) on the first {glue:text}`eos_transformer_train` samples for
# {glue:text}`eos_transformer_steps` steps, each with cross-entropy and with the squared loss, at four step sizes
# per setting. λmax of the full-batch loss is tracked every {glue:text}`eos_mlp_every`
# ({glue:text}`eos_transformer_every`) steps ({numref}`fig-rq1-eos`).

# %% tags=["hide-input"]
ARCH = {"mlp": MLP_CONFIG, "transformer": TRANSFORMER_CONFIG}
LABEL = {"mlp": "MLP", "transformer": "Transformer", "ce": "cross-entropy", "mse": "squared loss"}
traces, eos_rows = [], []
for arch, spec in cfg["eos"].items():
    subset = data.subset(spec["num_train"])
    for loss in ("ce", "mse"):
        for lr in spec["lrs"][loss]:
            for s in cfg["seeds"]:
                config = TrainConfig(model=arch, model_config=ARCH[arch], optimizer="gd", lr=lr, momentum=0.0,
                                     batch_size=None, steps=spec["steps"], loss=loss, seed=s)  # fmt: skip
                init = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes, seed=s,
                                   **ARCH[arch])  # fmt: skip
                out = continue_training(init, config, subset, track_every=spec["track_every"], tol=cfg["tol"])
                hist = pd.DataFrame(out.history).assign(arch=arch, loss=loss, lr=lr, seed=s)
                traces.append(hist)
                eos = edge_of_stability(hist["step"], hist["lambda_max"], lr, onset=EOS_ONSET)
                eos_rows.append({"arch": arch, "loss": loss, "lr": lr, "seed": s, "status": out.status,
                                 **asdict(eos), "final_train_loss": hist["train_loss"].iloc[-1]})  # fmt: skip
traces = pd.concat(traces, ignore_index=True)
eos_table = pd.DataFrame(eos_rows)
traces.to_csv(results / "eos_traces.csv", index=False)
eos_table.to_csv(results / "eos.csv", index=False)
for arch, spec in cfg["eos"].items():
    paste(f"eos_{arch}_train", spec["num_train"])
    paste(f"eos_{arch}_steps", spec["steps"])
    paste(f"eos_{arch}_every", spec["track_every"])
paste("transformer_params", sum(p.numel() for p in build_model("transformer", input_shape=data.input_shape,
                                                                 num_classes=10, **TRANSFORMER_CONFIG).parameters()))  # fmt: skip

per_cell = eos_table.groupby(["arch", "loss", "lr"], sort=False).agg(
    reached=("reached", "sum"), seeds=("seed", "count"), onset=("onset_step", "mean"),
    ratio_phase=("phase_ratio_mean", "mean"), ratio_phase_sd=("phase_ratio_mean", "std"),
    ratio_after=("ratio_mean", "mean"), ratio_max=("ratio_max", "mean"),
    final_train_loss=("final_train_loss", "mean"),
).reset_index()  # fmt: skip
per_cell.to_csv(results / "eos_summary.csv", index=False)
reached = eos_table[eos_table["reached"]]
paste("eos_cells", len(per_cell))
paste("eos_cells_reached", int((per_cell["reached"] == per_cell["seeds"]).sum()))
paste("eos_runs", len(eos_table))
paste("eos_runs_reached", len(reached))
paste("eos_ratio", pm(reached["phase_ratio_mean"]))
paste("eos_ratio_after", pm(reached["ratio_mean"]))
for loss in ("ce", "mse"):
    paste(f"eos_ratio_{loss}", pm(reached.loc[reached["loss"] == loss, "phase_ratio_mean"]))
for arch in cfg["eos"]:
    for loss in ("ce", "mse"):
        mine = reached[(reached["arch"] == arch) & (reached["loss"] == loss)]
        paste(f"eos_ratio_{arch}_{loss}", pm(mine["phase_ratio_mean"]) if len(mine) else "not reached")
        paste(f"eos_after_{arch}_{loss}", pm(mine["ratio_mean"]) if len(mine) else "not reached")

fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex="col")
for row, arch in enumerate(cfg["eos"]):
    for col, loss in enumerate(("ce", "mse")):
        ax = axes[row, col]
        for i, lr in enumerate(cfg["eos"][arch]["lrs"][loss]):
            color = f"C{i}"
            for s in cfg["seeds"]:
                one = traces[(traces["arch"] == arch) & (traces["loss"] == loss) & (traces["lr"] == lr)
                             & (traces["seed"] == s)]  # fmt: skip
                ax.plot(one["step"], one["lambda_max"], color=color, lw=1, alpha=0.8,
                        label=f"η = {lr:g}" if s == cfg["seeds"][0] else None)  # fmt: skip
            ax.axhline(2 / lr, color=color, ls="--", lw=1)
        ax.set(title=f"{LABEL[arch]}, {LABEL[loss]}", ylabel=r"$\lambda_{\max}$", yscale="log")
        if row == 1:
            ax.set(xlabel="gradient-descent step")
        ax.legend(fontsize=7)
save_figure(fig, figures_dir, "rq1_sgd_flat_minima_eos", NOTEBOOK)
glue("fig_eos", fig, display=False)
plt.close(fig)
per_cell.round(3)

# %% [markdown]
# ```{glue:figure} fig_eos
# :name: fig-rq1-eos
#
# λmax of the full-batch training loss during gradient descent (solid, one line per seed) against the stability
# threshold 2/η (dashed, same colour), for the MLP (top) and the Transformer (bottom), cross-entropy (left)
# and squared loss (right).
# ```
#
# Of the {glue:text}`eos_runs` runs, {glue:text}`eos_runs_reached` reach ρ ≥ {glue:text}`eos_onset` (all seeds
# in {glue:text}`eos_cells_reached` of {glue:text}`eos_cells` settings; the others, at the smallest step sizes,
# are still sharpening when the budget ends). The EoS ratio over all runs that reached the threshold is {glue:text}`eos_ratio` (MLP: {glue:text}`eos_ratio_mlp_ce` with cross-entropy,
# {glue:text}`eos_ratio_mlp_mse` with the squared loss; Transformer: {glue:text}`eos_ratio_transformer_ce` and
# {glue:text}`eos_ratio_transformer_mse`). With cross-entropy the phase ends: once the training loss approaches
# zero, λmax falls well below 2/η, as Cohen et al. also observed, so the ratio averaged over the *whole* rest of
# training is lower — {glue:text}`eos_after_mlp_ce` (MLP) and {glue:text}`eos_after_transformer_ce`
# (Transformer) for cross-entropy, against {glue:text}`eos_after_mlp_mse` and
# {glue:text}`eos_after_transformer_mse` for the squared loss. While the EoS phase lasts, the curvature that
# full-batch GD reaches is set by its step size rather than by the data; with cross-entropy the ratio sits
# above 1 (λmax overshoots 2/η between the tracked points of the short phase), with the squared loss close to 1.
#
# ## Batch size and learning rate
#
# The MLP is trained with plain SGD (no momentum, constant step) on all 4000 training samples for
# {glue:text}`grid_epochs` epochs at every batch size B in {glue:text}`grid_batch_sizes` and step size η in
# {glue:text}`grid_lrs`, so that the SDE temperature η/B spans {glue:text}`grid_temp_range`. The same number of
# epochs means fewer steps at large B, as in Keskar et al.; the final training loss is reported with every cell
# ({numref}`fig-rq1-grid`).

# %% tags=["hide-input"]
grid = cfg["grid"]
configs = [
    TrainConfig(model="mlp", model_config=MLP_CONFIG, optimizer="sgd", lr=lr, momentum=0.0, batch_size=b,
                steps=None, epochs=grid["epochs"], eval_every=grid["eval_every"], seed=s)
    for b in grid["batch_sizes"] for lr in grid["lrs"] for s in cfg["seeds"]
]  # fmt: skip
sweep = run_sweep(configs, progress=False)
rows = []
loss_fn = loss_function("ce")
for _, r in sweep.iterrows():
    record = load_run(r["key"])
    model = record.model()
    op = HessianOperator(model, loss_fn, curvature_data)
    top = top_eigenvalues(op, 1, tol=cfg["tol"], seed=seed)
    trace = hessian_trace(op, cfg["trace_matvecs"], seed=seed)
    normalised = normalized_sharpness(
        model, loss_fn, curvature_data, tol=cfg["tol"], trace_matvecs=0, seed=seed
    )
    adaptive = worst_case_sharpness(model, loss_fn, curvature_data, ADAPTIVE_RHO, adaptive=True,
                                    steps=cfg["adaptive_steps"], seed=seed)  # fmt: skip
    rows.append({
        "batch_size": r["batch_size"], "lr": r["lr"], "seed": r["seed"], "temperature": r["lr"] / r["batch_size"],
        "status": r["status"], "train_loss": r["train_loss"], "train_acc": r["train_acc"],
        "test_loss": r["test_loss"], "test_acc": r["test_acc"], "gap": r["train_acc"] - r["test_acc"],
        "lambda_max": float(top.values[0]), "trace_per_param": trace.estimate / op.dim,
        "normalized_sharpness": normalised.lambda_max, "adaptive_sharpness": adaptive.value, "key": r["key"],
    })  # fmt: skip
grid_table = pd.DataFrame(rows)
grid_table.to_csv(results / "grid.csv", index=False)
MEASURES = {"lambda_max": r"$\lambda_{\max}$", "trace_per_param": "trace / D",
            "normalized_sharpness": "normalised sharpness", "adaptive_sharpness": f"adaptive sharpness (ρ={ADAPTIVE_RHO})"}  # fmt: skip
cells = grid_table.groupby(["batch_size", "lr"]).agg(
    temperature=("temperature", "first"), **{m: (m, "mean") for m in MEASURES},
    train_loss=("train_loss", "mean"), test_acc=("test_acc", "mean"), test_acc_sd=("test_acc", "std"),
    gap=("gap", "mean"),
).reset_index()  # fmt: skip
cells.to_csv(results / "grid_summary.csv", index=False)
paste("grid_epochs", grid["epochs"])
paste("grid_batch_sizes", ", ".join(map(str, grid["batch_sizes"])))
paste("grid_lrs", ", ".join(f"{v:g}" for v in grid["lrs"]))
paste("grid_temp_range", f"{cells['temperature'].min():.2g} to {cells['temperature'].max():.2g}")
paste("grid_runs", len(grid_table))
correlations = {}
for m in [*MEASURES, "gap", "test_acc", "train_loss"]:
    correlations[m] = spearmanr(grid_table["temperature"], grid_table[m]).statistic
    paste(f"rho_temp_{m}", correlations[m])
gen_corr = {m: spearmanr(grid_table[m], grid_table["gap"]).statistic for m in MEASURES}
acc_corr = {m: spearmanr(grid_table[m], grid_table["test_acc"]).statistic for m in MEASURES}
for m in MEASURES:
    paste(f"rho_gap_{m}", gen_corr[m])
    paste(f"rho_acc_{m}", acc_corr[m])
pd.DataFrame({"ρ(η/B, ·)": correlations}).to_csv(results / "grid_correlations.csv")
# Keskar et al.: at each η, the largest batch against the smallest
small, large = min(grid["batch_sizes"]), max(grid["batch_sizes"])
pairs = cells[cells["batch_size"].isin([small, large])].pivot(index="lr", columns="batch_size")
lmax_ratio = pairs["lambda_max"][large] / pairs["lambda_max"][small]
ns_ratio = pairs["normalized_sharpness"][large] / pairs["normalized_sharpness"][small]
paste("small_batch", small)
paste("large_batch", large)
paste("keskar_lmax_ratio", ", ".join(f"{v:.2g}" for v in lmax_ratio))
paste("keskar_ns_ratio", ", ".join(f"{v:.2g}" for v in ns_ratio))
paste("keskar_acc_diff", ", ".join(f"{v:+.3f}" for v in pairs["test_acc"][large] - pairs["test_acc"][small]))
paste("keskar_sharper_count", int((lmax_ratio > 1).sum()))
paste("keskar_num_lrs", len(lmax_ratio))
paste("large_batch_train_loss", pm(grid_table.loc[grid_table["batch_size"] == large, "train_loss"]))
paste("small_batch_train_loss", pm(grid_table.loc[grid_table["batch_size"] == small, "train_loss"]))

fig, axes = plt.subplots(2, 3, figsize=(11, 6.2), sharex=True)
panels = [*MEASURES, "test_acc", "gap"]
titles = {**MEASURES, "test_acc": "test accuracy", "gap": "generalisation gap (train − test acc.)"}
markers = dict(zip(grid["batch_sizes"], "osD^vP<>*", strict=False))
for ax, m in zip(axes.flat, panels, strict=True):
    for i, lr in enumerate(grid["lrs"]):
        for b in grid["batch_sizes"]:
            pts = grid_table[(grid_table["lr"] == lr) & (grid_table["batch_size"] == b)]
            ax.scatter(pts["temperature"], pts[m], color=f"C{i}", marker=markers[b], s=18,
                       label=f"η={lr:g}, B={b}" if m == panels[0] else None)  # fmt: skip
    ax.set(xscale="log", title=titles[m])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    if m in MEASURES:
        ax.set(yscale="log")
for ax in axes[1]:
    ax.set(xlabel="η / B")
axes[0, 0].legend(fontsize=6, ncol=2)
save_figure(fig, figures_dir, "rq1_sgd_flat_minima_grid", NOTEBOOK)
glue("fig_grid", fig, display=False)
plt.close(fig)
shown = cells.copy()
shown[list(MEASURES)] = shown[list(MEASURES)].map(lambda v: f"{v:.3g}")
shown.round(4)

# %% [markdown]
# ```{glue:figure} fig_grid
# :name: fig-rq1-grid
#
# Curvature, test accuracy and generalisation gap of SGD-trained MLPs against the noise scale η/B (colour: η;
# marker: batch size; one point per seed).
# ```
#
# Over the {glue:text}`grid_runs` runs, the Spearman rank correlation of the noise scale η/B with λmax is
# {glue:text}`rho_temp_lambda_max:.2f`, with trace/D {glue:text}`rho_temp_trace_per_param:.2f`, with normalised
# sharpness {glue:text}`rho_temp_normalized_sharpness:.2f` and with adaptive sharpness
# {glue:text}`rho_temp_adaptive_sharpness:.2f`; with test accuracy {glue:text}`rho_temp_test_acc:.2f`, with the
# generalisation gap {glue:text}`rho_temp_gap:.2f` and with the final training loss
# {glue:text}`rho_temp_train_loss:.2f`. Keskar et al.'s comparison — the largest batch
# ({glue:text}`large_batch`) against the smallest ({glue:text}`small_batch`) at the same η, for
# η = {glue:text}`grid_lrs` — gives λmax ratios {glue:text}`keskar_lmax_ratio` (large-batch sharper at
# {glue:text}`keskar_sharper_count` of {glue:text}`keskar_num_lrs` step sizes), normalised-sharpness ratios
# {glue:text}`keskar_ns_ratio` and test-accuracy differences {glue:text}`keskar_acc_diff`. At an equal number of
# epochs the large-batch runs are far from converged: their final training loss is
# {glue:text}`large_batch_train_loss` against {glue:text}`small_batch_train_loss` at B = {glue:text}`small_batch`,
# so the grid compares minima at unequal training loss, and H1's "at equal training loss" is not met here.
#
# Which sharpness tracks generalisation within the grid? The Spearman correlation with the generalisation gap is
# {glue:text}`rho_gap_lambda_max:.2f` for λmax, {glue:text}`rho_gap_trace_per_param:.2f` for trace/D,
# {glue:text}`rho_gap_normalized_sharpness:.2f` for normalised sharpness and
# {glue:text}`rho_gap_adaptive_sharpness:.2f` for adaptive sharpness; with test accuracy
# {glue:text}`rho_acc_lambda_max:.2f`, {glue:text}`rho_acc_trace_per_param:.2f`,
# {glue:text}`rho_acc_normalized_sharpness:.2f` and {glue:text}`rho_acc_adaptive_sharpness:.2f`. These runs
# differ in training loss as well as in curvature, so a correlation here is not a causal statement; the
# correlation study across many more hyper-parameters is {doc}`../rq3_generalisation`.
#
# ## Escape from a sharp minimum
#
# Start from the large-batch solution (B = {glue:text}`large_batch`, η = {glue:text}`escape_lr`) of each seed and
# continue for {glue:text}`escape_steps` steps at the same η, once with small-batch SGD
# (B = {glue:text}`escape_batch`) and once with full-batch gradient descent, tracking λmax and the test loss
# every {glue:text}`escape_every` steps ({numref}`fig-rq1-escape`). Both travel the same SDE time η·t; only the
# noise differs.

# %% tags=["hide-input"]
esc = cfg["escape"]
if esc["lr"] not in grid["lrs"]:
    raise ValueError(f"escape lr {esc['lr']} must be one of the grid's step sizes {grid['lrs']}")
paste("escape_lr", esc["lr"])
paste("escape_steps", esc["steps"])
paste("escape_batch", esc["small_batch"])
paste("escape_every", esc["track_every"])
escape = []
for s in cfg["seeds"]:
    start_row = grid_table[(grid_table["batch_size"] == large) & (grid_table["lr"] == esc["lr"])
                           & (grid_table["seed"] == s)].iloc[0]  # fmt: skip
    start_model = load_run(start_row["key"]).model()
    for mode, batch in (("SGD", esc["small_batch"]), ("GD", None)):
        config = TrainConfig(model="mlp", model_config=MLP_CONFIG, optimizer="sgd" if batch else "gd",
                             lr=esc["lr"], momentum=0.0, batch_size=batch, steps=esc["steps"], seed=s)  # fmt: skip
        out = continue_training(start_model, config, data, track_every=esc["track_every"],
                                sharpness_data=curvature_data, tol=cfg["tol"])  # fmt: skip
        escape.append(pd.DataFrame(out.history).assign(mode=mode, seed=s, status=out.status))
escape = pd.concat(escape, ignore_index=True)
escape.to_csv(results / "escape.csv", index=False)
ends = escape.groupby(["mode", "seed"]).agg(
    lmax_start=("lambda_max", "first"), lmax_end=("lambda_max", "last"),
    test_start=("test_loss", "first"), test_end=("test_loss", "last"),
    acc_start=("test_acc", "first"), acc_end=("test_acc", "last"), train_end=("train_loss", "last"),
).reset_index()  # fmt: skip
ends["lmax_ratio"] = ends["lmax_end"] / ends["lmax_start"]
ends.to_csv(results / "escape_summary.csv", index=False)
by_mode = {m: g for m, g in ends.groupby("mode")}
for m, key in (("SGD", "sgd"), ("GD", "gd")):
    g = by_mode[m]
    paste(f"escape_{key}_ratio", pm(g["lmax_ratio"]))
    paste(f"escape_{key}_test_change", pm(g["test_end"] - g["test_start"]))
    paste(f"escape_{key}_acc_change", pm(g["acc_end"] - g["acc_start"]))
paste("escape_lmax_start", pm(by_mode["SGD"]["lmax_start"]))
same_lr_small = grid_table[(grid_table["batch_size"] == small) & (grid_table["lr"] == esc["lr"])]
paste("escape_small_batch_lmax", pm(same_lr_small["lambda_max"]))
sgd_flatter = by_mode["SGD"].set_index("seed")["lmax_end"] < by_mode["GD"].set_index("seed")["lmax_end"]
paste("escape_flatter_seeds", int(sgd_flatter.sum()))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for (mode, s), g in escape.groupby(["mode", "seed"]):
    color = "C3" if mode == "SGD" else "C0"
    label = (
        (f"SGD, B = {esc['small_batch']}" if mode == "SGD" else "full-batch GD")
        if s == cfg["seeds"][0]
        else None
    )
    axes[0].plot(g["step"], g["lambda_max"], color=color, lw=1, label=label)
    axes[1].plot(g["step"], g["test_loss"], color=color, lw=1, label=label)
axes[0].axhline(2 / esc["lr"], color="k", ls="--", lw=1, label="2/η")
axes[0].set(xlabel="steps after the large-batch solution", ylabel=r"$\lambda_{\max}$", yscale="log")
axes[1].set(xlabel="steps after the large-batch solution", ylabel="test loss")
axes[0].legend()
save_figure(fig, figures_dir, "rq1_sgd_flat_minima_escape", NOTEBOOK)
glue("fig_escape", fig, display=False)
plt.close(fig)
ends.round(4)

# %% [markdown]
# ```{glue:figure} fig_escape
# :name: fig-rq1-escape
#
# Continuing from the large-batch solution at the same step size: λmax (left; 2/η dashed) and test loss (right)
# for small-batch SGD and full-batch GD, one line per seed.
# ```
#
# From λmax = {glue:text}`escape_lmax_start` at the start (the small-batch solutions of the grid at this η have
# {glue:text}`escape_small_batch_lmax`), small-batch SGD changes λmax by a factor
# {glue:text}`escape_sgd_ratio` and full-batch GD by {glue:text}`escape_gd_ratio`; SGD ends flatter than GD in
# {glue:text}`escape_flatter_seeds` of {glue:text}`num_seeds` seeds. The test loss changes by
# {glue:text}`escape_sgd_test_change` (SGD) and {glue:text}`escape_gd_test_change` (GD), the test accuracy by
# {glue:text}`escape_sgd_acc_change` and {glue:text}`escape_gd_acc_change`.
#
# ## Reparameterisation
#
# The large-batch solution of seed {glue:text}`rescale_seed` is rescaled as Dinh et al. proposed: the first
# layer multiplied by α and the second by 1/α, which leaves the ReLU network's function — and so its training
# loss, test accuracy and generalisation — unchanged ({numref}`fig-rq1-rescaling`).

# %% tags=["hide-input"]
base_row = grid_table[(grid_table["batch_size"] == large) & (grid_table["lr"] == esc["lr"])
                      & (grid_table["seed"] == cfg["seeds"][0])].iloc[0]  # fmt: skip
base = load_run(base_row["key"]).model()
paste("rescale_seed", cfg["seeds"][0])
rescaled = []
for alpha in cfg["alphas"]:
    model = rescale_layers(base, 0, float(alpha))
    op = HessianOperator(model, loss_fn, curvature_data)
    rescaled.append({
        "alpha": alpha,
        "train_loss": evaluate(model, loss_fn, *curvature_data)["loss"],
        "lambda_max": float(top_eigenvalues(op, 1, tol=cfg["tol"], seed=seed).values[0]),
        "trace_per_param": hessian_trace(op, cfg["trace_matvecs"], seed=seed).estimate / op.dim,
        "normalized_sharpness": normalized_sharpness(model, loss_fn, curvature_data, tol=cfg["tol"],
                                                     trace_matvecs=0, seed=seed).lambda_max,
        "adaptive_sharpness": worst_case_sharpness(model, loss_fn, curvature_data, ADAPTIVE_RHO, adaptive=True,
                                                   steps=cfg["adaptive_steps"], seed=seed).value,
        "non_adaptive_sharpness": worst_case_sharpness(model, loss_fn, curvature_data, ADAPTIVE_RHO,
                                                       adaptive=False, steps=cfg["adaptive_steps"], seed=seed).value,
        "epsilon_sharpness": epsilon_sharpness(model, loss_fn, curvature_data, 1e-3,
                                               steps=cfg["adaptive_steps"], seed=seed).value,
    })  # fmt: skip
rescaled = pd.DataFrame(rescaled)
rescaled.to_csv(results / "rescaling.csv", index=False)
RESCALED = {"lambda_max": r"$\lambda_{\max}$", "trace_per_param": "trace / D",
            "normalized_sharpness": "normalised sharpness", "adaptive_sharpness": "adaptive worst-case",
            "non_adaptive_sharpness": "non-adaptive worst-case", "epsilon_sharpness": "Keskar ε-sharpness"}  # fmt: skip
spread = {m: rescaled[m].max() / rescaled[m].min() for m in RESCALED}
for m, v in spread.items():
    paste(f"spread_{m}", v)
paste("spread_loss", float(rescaled["train_loss"].max() - rescaled["train_loss"].min()))
paste("alpha_range", f"{min(cfg['alphas']):g} to {max(cfg['alphas']):g}")

fig, ax = plt.subplots(figsize=(6.5, 3.6))
reference = rescaled.loc[np.isclose(rescaled["alpha"], 1.0)].iloc[0]
for i, (m, label) in enumerate(RESCALED.items()):
    ax.loglog(rescaled["alpha"], rescaled[m] / reference[m], marker="os^vDP"[i], label=label)
ax.set(xlabel=r"rescaling factor $\alpha$ (layer 1 × α, layer 2 × 1/α)", ylabel="value / value at α = 1")
ax.legend(fontsize=7)
save_figure(fig, figures_dir, "rq1_sgd_flat_minima_rescaling", NOTEBOOK)
glue("fig_rescaling", fig, display=False)
plt.close(fig)
rescaled.round(6)

# %% [markdown]
# ```{glue:figure} fig_rescaling
# :name: fig-rq1-rescaling
#
# Sharpness measures of one network under function-preserving rescalings, relative to their value at α = 1.
# ```
#
# For α from {glue:text}`alpha_range` the training loss changes by at most {glue:text}`spread_loss:.1e`, but
# λmax varies by a factor {glue:text}`spread_lambda_max:.3g`, trace/D by {glue:text}`spread_trace_per_param:.3g`,
# non-adaptive worst-case sharpness by {glue:text}`spread_non_adaptive_sharpness:.3g` and Keskar's ε-sharpness
# by {glue:text}`spread_epsilon_sharpness:.3g`, while normalised sharpness ({glue:text}`spread_normalized_sharpness:.4f`)
# and adaptive sharpness ({glue:text}`spread_adaptive_sharpness:.4f`) stay constant up to the accuracy of their
# estimates. A statement "flat minima generalise" is therefore only meaningful for the invariant measures: with
# λmax, trace or ε-sharpness, any minimum of a ReLU network can be made arbitrarily sharp or flat without
# changing what it computes.
#
# ## Verdicts


# %% tags=["hide-input"]
def verdict_from_correlation(rho, expected_sign, strong=0.5):
    """'supported' when the rank correlation has the claimed sign and |ρ| ≥ strong; 'refuted' when it has the
    opposite sign with |ρ| ≥ strong; otherwise 'not supported (weak correlation)'."""
    if np.sign(rho) == expected_sign and abs(rho) >= strong:
        return "supported"
    if np.sign(rho) == -expected_sign and abs(rho) >= strong:
        return "refuted"
    return "not supported (weak correlation)"


sgd_ratio = by_mode["SGD"]["lmax_ratio"].mean()
gd_ratio = by_mode["GD"]["lmax_ratio"].mean()
if sgd_flatter.all() and sgd_ratio < 1:
    escape_verdict = "supported"
elif sgd_flatter.all():
    escape_verdict = "partly supported (SGD ends flatter than GD, but sharper than its start)"
elif not sgd_flatter.any():
    escape_verdict = "refuted"
else:
    escape_verdict = "not supported (mixed across seeds)"
flat_verdict = verdict_from_correlation(
    np.mean([correlations["lambda_max"], correlations["normalized_sharpness"]]), expected_sign=-1
)
gen_verdict = verdict_from_correlation(gen_corr["normalized_sharpness"], expected_sign=+1)
eos_by_loss = {}
for loss in ("mse", "ce"):
    mean = reached.loc[reached["loss"] == loss, "phase_ratio_mean"].mean()
    eos_by_loss[loss] = "supported" if abs(mean - 1) <= 0.15 else "not supported"
eos_verdict = f"{eos_by_loss['mse']} for the squared loss, {eos_by_loss['ce']} for cross-entropy"
verdicts = pd.DataFrame([
    ("Noise escapes sharp regions", escape_verdict,
     (f"λmax × {sgd_ratio:.2g} with SGD vs × {gd_ratio:.2g} with GD; SGD flatter in {int(sgd_flatter.sum())}/"
     f"{len(sgd_flatter)} seeds")),
    ("SGD converges to flat minima (more noise η/B, flatter)", flat_verdict,
     (f"Spearman ρ(η/B, λmax) = {correlations['lambda_max']:.2f}, ρ(η/B, normalised) = "
     f"{correlations['normalized_sharpness']:.2f}")),
    ("Normalised sharpness tracks better generalisation", gen_verdict,
     f"Spearman ρ(normalised sharpness, gap) = {gen_corr['normalized_sharpness']:.2f}"),
    ("GD's sharpness is set by its step size (EoS ratio ≈ 1)", eos_verdict, (
        f"EoS ratio {pm(reached.loc[reached['loss'] == 'mse', 'phase_ratio_mean'])} (squared loss), "
        f"{pm(reached.loc[reached['loss'] == 'ce', 'phase_ratio_mean'])} (cross-entropy)"
    )),
], columns=["claim", "verdict", "evidence"])  # fmt: skip
verdicts.to_csv(results / "verdicts.csv", index=False)
for key, v in zip(["escape", "flat", "generalise", "eos"], verdicts["verdict"], strict=True):
    paste(f"verdict_{key}", v)
paste("runtime_minutes", (time.perf_counter() - started) / 60)
verdicts

# %% [markdown]
# Verdicts follow fixed rules, decided before the runs: a correlation claim is *supported* when the Spearman
# rank correlation over all grid runs has the claimed sign and magnitude at least 0.5, *refuted* when it has the
# opposite sign with that magnitude, and *not supported* otherwise; the escape claim is supported when SGD ends
# flatter than GD for every seed and flatter than where it started (partly supported when only the first holds,
# refuted when SGD ends sharper than GD for every seed); the EoS claim, for each loss, when the mean EoS ratio of
# its runs is within 0.15 of 1.
#
# - *Noise escapes sharp regions*: {glue:text}`verdict_escape` (λmax × {glue:text}`escape_sgd_ratio` under
#   small-batch SGD against × {glue:text}`escape_gd_ratio` under GD).
# - *SGD converges to flat minima*: {glue:text}`verdict_flat` (ρ(η/B, λmax) = {glue:text}`rho_temp_lambda_max:.2f`,
#   ρ(η/B, normalised sharpness) = {glue:text}`rho_temp_normalized_sharpness:.2f`).
# - *Normalised sharpness correlates with better generalisation* (within this grid):
#   {glue:text}`verdict_generalise` (ρ with the gap {glue:text}`rho_gap_normalized_sharpness:.2f`).
# - *Edge of stability*: {glue:text}`verdict_eos` (EoS ratio {glue:text}`eos_ratio_mse` with the squared loss,
#   {glue:text}`eos_ratio_ce` with cross-entropy, over all runs that reached the threshold).
#
# The chapter ran in {glue:text}`runtime_minutes:.1f` minutes.
