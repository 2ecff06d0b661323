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
from pathlib import Path

import matplotlib.pyplot as plt
from myst_nb import glue

from landscape.paper.claims import paste_claims, rows_from_table
from landscape.paper.experiments import rq1
from landscape.paper.glue import paste, paste_all
from landscape.paper.plotting import apply_style, save_figure
from landscape.paper.tables import results_table

NOTEBOOK = "rq1_sgd_flat_minima"
if profile not in rq1.PROFILES:
    raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(rq1.PROFILES)}")
sizes = rq1.PROFILES[profile]
results = Path(results_dir)
results.mkdir(parents=True, exist_ok=True)
# every training run with its measurements is cached under its settings and the code it runs (rq1_tasks.DEPENDS_ON)
cache = results / "cache"
apply_style()
started = time.perf_counter()
paste_all(rq1.setup_numbers(sizes, profile))


def figure(fig, name):
    """Save the figure as <notebook>_<name>.png, glue it as fig_<name> (not displayed) and close it."""
    save_figure(fig, figures_dir, f"{NOTEBOOK}_{name}", NOTEBOOK)
    glue(f"fig_{name}", fig, display=False)
    plt.close(fig)


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
#   Progressive sharpening ends at the first tracked step where ρ_t ≥ {glue:text}`eos_onset` (the onset); the
#   EoS ratio of a run is the mean of ρ_t over the last {glue:text}`eos_late` of its tracked points (where GD
#   ends up), the same definition for every run whether or not it reached the onset; the phase ratio is the mean
#   of ρ_t from the onset to the last tracked step with ρ_t ≥ {glue:text}`eos_onset` (the EoS phase).
# - **generalisation gap**: training accuracy minus test accuracy (full 4000/1000 split).
#
# The grid, escape and MLP edge-of-stability runs are repeated for the seeds {glue:text}`seeds`, the Transformer
# runs (whose Hessian-vector products cost about 15 times more) for the seeds {glue:text}`transformer_seeds`
# (initialisation and data order). A value "m [a, b]" is a mean over runs with its {glue:text}`level`
# confidence interval: over seeds where each seed is one run, over settings where several seeds share a setting
# (then m is the mean of the settings' means); below 10 units the interval is Student's t, from 10 on a bootstrap
# (BCa over seeds, a cluster bootstrap over settings). A ratio of paired runs is the geometric mean of the
# per-seed ratios. A claim with two parts has each part's interval at {glue:text}`family_level` (Bonferroni), so
# that the claim errs with probability at most 5 %.
#
# (rq1-eos)=
# ## Edge of stability
#
# Full-batch gradient descent without momentum is run from the standard initialisation on a fixed training subset
# (as Cohen et al. did with a CIFAR-10 subset): the 2 × 100 ReLU MLP on the first {glue:text}`eos_mlp_train`
# samples for {glue:text}`eos_mlp_steps` steps, and a one-block Transformer (patch 8, width 32, 2 heads;
# {glue:text}`transformer_params` parameters, smaller than the reference recipe so that Hessian-vector products
# stay affordable) on the first {glue:text}`eos_transformer_train` samples for
# {glue:text}`eos_transformer_steps` steps, each with cross-entropy and with the squared loss, at
# {glue:text}`eos_num_lrs` step sizes per setting. λmax of the full-batch loss is tracked every {glue:text}`eos_mlp_every`
# ({glue:text}`eos_transformer_every`) steps ({numref}`fig-rq1-eos`), and, once a run reaches the onset, at every
# step of a window of {glue:text}`eos_mlp_dense` ({glue:text}`eos_transformer_dense`) steps from its last tracked
# point before the onset: at EoS λmax and the loss oscillate with period 2, which a grid of every 20–25 steps
# aliases. The window describes the phase; a run's EoS ratio is always the late-window mean of its tracked
# points, so that no run's number depends on what it did earlier (a definition that switched to the window for
# runs that reached the onset would select on the outcome). A run whose training loss at a tracked point rises
# above {glue:text}`catapult_rise:g` × its lowest value so far has a *loss spike*, a candidate catapult
# {cite}`lewkowycz2020large` (whether a flatter region follows is not checked); spikes are looked for on the
# tracked points only, the same grid for every run, and counted, not left out (whether a run spikes is an outcome
# too).

# %% tags=["hide-input"]
traces = rq1.run_eos(sizes, cache)
eos = rq1.eos_runs(traces)
eos_cells = rq1.eos_cells(eos)
traces.to_csv(results / "eos_traces.csv", index=False)
eos.to_csv(results / "eos.csv", index=False)
eos_numbers = rq1.eos_numbers(sizes, eos, eos_cells)
paste_all(eos_numbers)
figure(rq1.plot_eos(traces, sizes), "eos")
results_table(eos_cells, results, "eos_summary", "Edge of stability per setting (loss, architecture, step size): "
              "seeds, diverged runs, and over the others the runs with a loss spike, the EoS ratio λmax·η/2 (mean, "
              "sd and geometric mean [95 % CI] over seeds), the phase ratios, the mean ratio of the every-step "
              "windows and their loss alternation.")  # fmt: skip

# %% [markdown]
# ```{glue:figure} fig_eos
# :name: fig-rq1-eos
#
# λmax of the full-batch training loss during gradient descent (solid, one line per seed) against the stability
# threshold 2/η (dashed, same colour), for the MLP (top) and the Transformer (bottom), cross-entropy (left)
# and squared loss (right).
# ```
#
# Of the {glue:text}`eos_runs` runs, {glue:text}`eos_runs_diverged` diverged and are left out of every ratio
# below (counted, not averaged). Of the {glue:text}`eos_runs_kept` others, {glue:text}`eos_catapults` had a loss
# spike (settings: {glue:text}`eos_catapult_cells`; their EoS ratio {glue:text}`eos_catapult_ratio`),
# {glue:text}`eos_dense_runs` have an every-step window, whose training loss changes direction at a fraction
# {glue:text}`eos_alternation` of its steps (1: a period-2 oscillation) and whose mean ratio from the onset on is
# {glue:text}`eos_dense`, and {glue:text}`eos_runs_reached` reach
# ρ ≥ {glue:text}`eos_onset` (all seeds in {glue:text}`eos_cells_reached` of {glue:text}`eos_cells` settings);
# the fraction that reaches the onset is {glue:text}`eos_reached` (mean over settings, with cross-entropy
# {glue:text}`eos_reached_ce`, with the squared loss {glue:text}`eos_reached_mse`). The EoS ratio, over all runs
# without divergence (mean over settings), is {glue:text}`eos_ratio` (MLP: {glue:text}`eos_ratio_mlp_ce` with
# cross-entropy, {glue:text}`eos_ratio_mlp_mse` with the squared loss;
# Transformer: {glue:text}`eos_ratio_transformer_ce` and {glue:text}`eos_ratio_transformer_mse`). Over the EoS
# phase alone, of the runs that reached the onset (selected on the outcome, so for description only), the ratio
# is {glue:text}`eos_phase` (MLP: {glue:text}`eos_phase_mlp_ce` with cross-entropy, {glue:text}`eos_phase_mlp_mse`
# with the squared loss; Transformer: {glue:text}`eos_phase_transformer_ce` and
# {glue:text}`eos_phase_transformer_mse`), and from the onset to the end of training {glue:text}`eos_after_mlp_ce`
# (MLP) and {glue:text}`eos_after_transformer_ce` (Transformer) for cross-entropy, against
# {glue:text}`eos_after_mlp_mse` and {glue:text}`eos_after_transformer_mse` for the squared loss. Whether GD
# settles at EoS is decided per setting, for every step size: the interval of each setting's EoS ratio over its
# seeds lies in the band {glue:text}`eos_band` for {glue:text}`eos_in_band_mse` settings with the squared loss
# ({glue:text}`eos_settings_mse`) and {glue:text}`eos_in_band_ce` with cross-entropy
# ({glue:text}`eos_settings_ce`; intervals at the family level over the settings); the verdict is below
# ({glue:text}`verdict_eos`).
#
# (rq1-batch)=
# ## Batch size and learning rate
#
# The MLP is trained with plain SGD (no momentum, constant step) on all 4000 training samples at every batch
# size B in {glue:text}`grid_batch_sizes` and step size η in {glue:text}`grid_lrs`, so that the SDE temperature
# η/B spans {glue:text}`grid_temp_range`. Keskar et al. compared networks trained to similar, near-100 %
# training accuracy, and the curvature of a cross-entropy minimum falls as its loss goes to zero, so runs must be
# compared at equal training loss: after an equal number of epochs the large-batch runs, which take far fewer
# steps, are still far from a minimum, and after an equal number of steps the least noisy runs are ahead.
# **Matching criterion:** every run trains from its seed's initialisation until
# its mean cross-entropy over the whole training set, evaluated every {glue:text}`grid_check_every` steps, first
# falls to {glue:text}`grid_target_loss` or below, and is measured at that point; a run that does not get there
# within {glue:text}`grid_max_steps` steps is reported but left out of every correlation and comparison
# (`landscape.dynamics.continue_training` with `target_loss`). The final training loss and the steps each run
# took are reported with every cell ({numref}`fig-rq1-grid`, table below).

# %% tags=["hide-input"]
grid_all, curves = rq1.run_grid(sizes, cache, seed=seed)  # every weight decay
grid = rq1.base_grid(grid_all, sizes)  # the (η, B) grid at the base weight decay
rq1.matched_runs(grid)  # raises when too few runs reached the target
cells = rq1.grid_cells(grid)  # means over the matched seeds of each cell
correlations = rq1.grid_correlations(cells, n_resamples=sizes.n_resamples)
pairs = rq1.keskar_pairs(grid, sizes.small_batch, sizes.large_batch)
for name, table in (("grid", grid_all), ("grid_curves", curves), ("grid_correlations", correlations),
                    ("keskar_pairs", pairs)):  # fmt: skip
    table.to_csv(results / f"{name}.csv", index=False)
grid_numbers = rq1.grid_numbers(sizes, grid, cells, correlations, pairs)
paste_all(grid_numbers)
figure(rq1.plot_grid(grid, sizes), "grid")
shown = cells.drop(columns=["train_acc", "test_acc_sd"]).copy()
shown[list(rq1.MEASURES)] = shown[list(rq1.MEASURES)].map(lambda v: f"{v:.3g}")
shown["matched"] = shown["matched"].astype(str) + "/" + shown["seeds"].astype(str)
results_table(shown.drop(columns="seeds"), results, "grid_summary", "One row per cell of the (η, B) grid: means over "
              "the seeds that reached the target training loss (matched/seeds), the measures at that loss, test "
              "accuracy and generalisation gap.", data=cells)  # fmt: skip

# %% [markdown]
# ```{glue:figure} fig_grid
# :name: fig-rq1-grid
#
# Curvature, test accuracy, generalisation gap, training loss where measured and steps taken by SGD-trained MLPs
# trained to the target loss, against the noise scale η/B (colour: η; marker: batch size; one point per seed;
# hollow: the run did not reach the target loss within the step budget and is left out of the comparisons).
# ```
#
# {glue:text}`grid_matched` of the {glue:text}`grid_runs` runs reached the target; their training loss where
# measured lies between {glue:text}`matched_loss_range` (training accuracy at least
# {glue:text}`matched_train_acc`), after {glue:text}`matched_steps_range` steps. Cells not matched:
# {glue:text}`unmatched_cells`. Training the grid took {glue:text}`grid_train_minutes:.1f` minutes. Within that
# band the Spearman correlation of η/B with the training loss where measured is
# {glue:text}`rho_temp_train_loss:.2f` {glue:text}`rho_temp_train_loss_ci` over the cells. For scale: in the escape experiment below, full-batch GD
# lowers the loss of the B = {glue:text}`large_batch` solutions from {glue:text}`escape_start_loss` to
# {glue:text}`escape_gd_train_end` and changes λmax by a factor {glue:text}`escape_gd_ratio`.
#
# Correlations are over the {glue:text}`grid_cells_matched` of {glue:text}`grid_cells` grid cells with matched
# runs, each cell's value the mean over its matched seeds (the table's "matched" column counts them): the seeds
# are crossed with every cell, so the cell is the unit resampled. The Spearman rank correlation of the noise
# scale η/B with λmax is {glue:text}`rho_temp_lambda_max:.2f` {glue:text}`rho_temp_lambda_max_ci` (in brackets
# the {glue:text}`level` interval, a bootstrap over cells; none below 10 cells), with trace/D
# {glue:text}`rho_temp_trace_per_param:.2f` {glue:text}`rho_temp_trace_per_param_ci`, with normalised sharpness
# {glue:text}`rho_temp_normalized_sharpness:.2f` {glue:text}`rho_temp_normalized_sharpness_ci` and with adaptive
# sharpness {glue:text}`rho_temp_adaptive_sharpness:.2f` {glue:text}`rho_temp_adaptive_sharpness_ci`; with test
# accuracy {glue:text}`rho_temp_test_acc:.2f` {glue:text}`rho_temp_test_acc_ci`, with the generalisation gap
# {glue:text}`rho_temp_gap:.2f` {glue:text}`rho_temp_gap_ci`, with the training loss where measured
# {glue:text}`rho_temp_train_loss:.2f` {glue:text}`rho_temp_train_loss_ci` and with the steps to the target
# {glue:text}`rho_temp_steps:.2f` {glue:text}`rho_temp_steps_ci`. Since λmax ≲ 2/η is a stability effect of
# the step size alone, the flat-minima claim is decided on the partial correlations given log η: η/B with λmax
# {glue:text}`prho_temp_lambda_max:.2f` {glue:text}`prho_temp_lambda_max_ci` and with normalised sharpness
# {glue:text}`prho_temp_normalized_sharpness:.2f` {glue:text}`prho_temp_normalized_sharpness_ci`
# ({glue:text}`family_level` intervals). Fitting log λmax = a + b log η + c log B over the
# {glue:text}`fit_cells` cells separates the two knobs: b = {glue:text}`fit_lr_exponent_ci` and
# c = {glue:text}`fit_batch_exponent_ci` ({glue:text}`level` intervals, ordinary least squares over cells). The
# linear-stability bound of gradient descent, λmax < 2/η, predicts b = −1 and c = 0 where it is what sets the
# sharpness; a picture in which only the temperature η/B matters predicts c = −b. The stability ratio λmax·η/2
# of the cells spans {glue:text}`stability_ratio_range` (median {glue:text}`stability_ratio_median:.2f`;
# {glue:text}`stability_above_one` cells above 1, beyond the full-batch bound).
# Keskar et al.'s comparison — the largest batch ({glue:text}`large_batch`) against the smallest
# ({glue:text}`small_batch`) at the same η, at every η where all seeds of both reached the target
# (η = {glue:text}`keskar_lrs`) — gives λmax ratios large/small {glue:text}`keskar_lmax_ratio`, normalised-sharpness ratios
# {glue:text}`keskar_ns_ratio` and test-accuracy differences {glue:text}`keskar_acc_diff` (per η: the geometric
# mean over seeds of the ratios, the mean of the differences), at training losses
# {glue:text}`large_batch_train_loss` (B = {glue:text}`large_batch`) and {glue:text}`small_batch_train_loss`
# (B = {glue:text}`small_batch`). The {glue:text}`keskar_pairs` pairs (one seed at one such η, both at the
# target loss) share their seed across η, so the interval is over the {glue:text}`keskar_seeds` seeds: each seed's
# geometric-mean ratio over the η, and the geometric mean of those over seeds (equal to the geometric mean of
# all pairs) is {glue:text}`keskar_lmax_ci` for λmax and {glue:text}`keskar_ns_ci` for normalised sharpness
# ({glue:text}`family_level` intervals); the test accuracy changes by {glue:text}`keskar_acc_ci` (mean over
# seeds of each seed's mean difference).
#
# Which sharpness tracks generalisation within the matched grid? The Spearman correlation with the
# generalisation gap is {glue:text}`rho_gap_lambda_max:.2f` {glue:text}`rho_gap_lambda_max_ci` for λmax,
# {glue:text}`rho_gap_trace_per_param:.2f` {glue:text}`rho_gap_trace_per_param_ci` for trace/D,
# {glue:text}`rho_gap_normalized_sharpness:.2f` {glue:text}`rho_gap_normalized_sharpness_ci` for normalised
# sharpness and {glue:text}`rho_gap_adaptive_sharpness:.2f` {glue:text}`rho_gap_adaptive_sharpness_ci` for
# adaptive sharpness; with test accuracy
# {glue:text}`rho_acc_lambda_max:.2f`, {glue:text}`rho_acc_trace_per_param:.2f`,
# {glue:text}`rho_acc_normalized_sharpness:.2f` and {glue:text}`rho_acc_adaptive_sharpness:.2f`. On this grid
# the noise scale alone orders the gap (ρ(η/B, gap) = {glue:text}`rho_temp_gap:.2f`), so a measure that only
# mirrors η/B would track the gap too; given log η/B, the partial correlations with the gap (Pearson, on
# logarithms: η/B orders the gap almost exactly, which leaves a rank-based partial correlation undefined on many
# resamples) are
# {glue:text}`prho_gap_lambda_max:.2f` {glue:text}`prho_gap_lambda_max_ci` for λmax,
# {glue:text}`prho_gap_trace_per_param:.2f` {glue:text}`prho_gap_trace_per_param_ci` for trace/D,
# {glue:text}`prho_gap_normalized_sharpness:.2f` {glue:text}`prho_gap_normalized_sharpness_ci` for normalised
# sharpness and {glue:text}`prho_gap_adaptive_sharpness:.2f` {glue:text}`prho_gap_adaptive_sharpness_ci` for
# adaptive sharpness: what each measure says about the gap beyond η/B. With the
# training loss held fixed these runs still differ in η, B and the path they took, so a correlation here is not
# a causal statement; the correlation study across many more hyper-parameters is {doc}`rq3_generalisation`.
#
# A third hyperparameter axis, weight decay ∈ {{glue:text}`grid_weight_decays`}, is added to the grid (the same
# (η, B) grid and seeds, stopped at the same target loss) for Jiang et al.'s granulated Kendall τ
# {cite}`jiang2020fantastic`: for each axis, τ between a measure and the gap over the networks that differ in
# that axis alone, averaged over the groups (ψ), and Ψ the mean of ψ over {glue:text}`granulated_axes`, computed
# per seed (one network per configuration) with a Student-t interval over the seeds.

# %% tags=["hide-input"]
granulated = rq1.granulated_table(grid_all)
granulated.to_csv(results / "granulated.csv", index=False)
granulated_numbers = rq1.granulated_numbers(sizes, granulated, grid_all)
paste_all(granulated_numbers)
results_table(granulated.set_index("name").drop(columns="measure"), results, "granulated_summary",
              "Granulated Kendall τ of each measure with the generalisation gap: Ψ (mean over seeds) with its "
              "interval over seeds, and ψ per axis.", index=True, data=granulated)  # fmt: skip

# %% [markdown]
# Of the {glue:text}`granulated_runs` runs of the factorial, {glue:text}`granulated_matched` reached the target.
# Ψ with the gap is {glue:text}`psi_normalized_sharpness` for normalised sharpness (ψ over η
# {glue:text}`psi_normalized_sharpness_lr:.2f`, over B {glue:text}`psi_normalized_sharpness_batch_size:.2f`,
# over weight decay {glue:text}`psi_normalized_sharpness_weight_decay:.2f`), {glue:text}`psi_lambda_max` for
# λmax, {glue:text}`psi_trace_per_param` for trace/D and {glue:text}`psi_adaptive_sharpness` for adaptive
# sharpness ({glue:text}`family_level` intervals).
#
# (rq1-escape)=
# ## Escape from a sharp minimum
#
# Start from the large-batch solution of the grid (B = {glue:text}`large_batch`, η = {glue:text}`escape_lr`,
# stopped at the target training loss like every grid run: {glue:text}`escape_start_loss`) of each seed and
# continue for {glue:text}`escape_steps` steps at the same η, once with small-batch SGD
# (B = {glue:text}`escape_batch`) and once with full-batch gradient descent, tracking λmax and the test loss
# every {glue:text}`escape_every` steps ({numref}`fig-rq1-escape`). Both take steps of the same η from the same
# weights; they differ in the minibatch noise. A continuation that ends above the target loss (SGD, having left
# the minimum) goes on with the same optimiser until its full training loss is back at the target (at most
# {glue:text}`escape_return_steps` more steps), so that λmax is compared where the two are at the same training
# loss: SGD where it is back, GD (which starts at the target and only lowers its loss) at its tracked point of
# the closest training loss — at or near its start, so the comparison is SGD after its excursion against the
# sharp start at the same loss, not after the same number of steps. An SGD continuation *left* the minimum when
# its training loss rose above {glue:text}`escape_rise:g` × the start's; ending flatter without leaving would be
# drift inside the basin, not an escape. (Only a non-finite loss
# counts as divergence here: at a minimum the first minibatch loss can be close to zero, so the usual rule
# "100 × the first loss" would stop small-batch SGD at its first larger minibatch loss.)

# %% tags=["hide-input"]
escape = rq1.run_escape(sizes, cache, seed=seed)
ends = rq1.escape_ends(escape, target_loss=sizes.target_loss)
escape.to_csv(results / "escape.csv", index=False)
escape_numbers = rq1.escape_numbers(sizes, ends, grid)
paste_all(escape_numbers)
figure(rq1.plot_escape(escape, sizes), "escape")
results_table(ends, results, "escape_summary", "Escape runs, one row per start (seed) and continuation: λmax and "
              "losses at the start and at the end.", digits=4)  # fmt: skip

# %% [markdown]
# ```{glue:figure} fig_escape
# :name: fig-rq1-escape
#
# Continuing from the large-batch solution at the same step size: λmax (left; 2/η dashed), training loss
# (middle) and test loss (right) for small-batch SGD and full-batch GD, one line per seed; the dotted line ends
# the fixed phase, after which a continuation above the target goes on until it is back there.
# ```
#
# {glue:text}`escape_start_reached` of {glue:text}`escape_starts` start runs reached the target loss, and
# {glue:text}`escape_diverged` of {glue:text}`escape_runs` continuations diverged. From λmax =
# {glue:text}`escape_lmax_start` at the start (the small-batch solutions of the grid at this η, at the target
# training loss, have {glue:text}`escape_small_batch_lmax`), SGD's training loss rises to as much as
# {glue:text}`escape_sgd_train_peak` ({glue:text}`escape_sgd_left` of {glue:text}`escape_sgd_runs` SGD
# continuations left the minimum); {glue:text}`escape_returned` of {glue:text}`escape_runs` continuations
# end at the target loss (SGD after {glue:text}`escape_sgd_end_step` steps in all). There SGD's λmax is
# {glue:text}`escape_sgd_lmax_matched` (a factor {glue:text}`escape_sgd_ratio` of the start's), and GD's at the
# same training loss (step {glue:text}`escape_gd_matched_step`) {glue:text}`escape_gd_lmax_matched`; GD ends
# (step {glue:text}`escape_gd_end_step`) at a factor {glue:text}`escape_gd_ratio`. λmax of SGD over λmax of GD
# at matched loss from the same start is {glue:text}`escape_sgd_over_gd` (geometric mean over seeds of the
# paired ratios); the paired ratio of the compared points' training losses SGD/GD is
# {glue:text}`escape_loss_ratio`, to be inside {glue:text}`escape_loss_band` for the verdict to be decided.
# SGD's final training loss is {glue:text}`escape_sgd_train_end`, GD's {glue:text}`escape_gd_train_end`. The test loss changes by {glue:text}`escape_sgd_test_change` (SGD) and
# {glue:text}`escape_gd_test_change` (GD), the test accuracy by {glue:text}`escape_sgd_acc_change` and
# {glue:text}`escape_gd_acc_change`.
#
# ### Where SGD leaves: the linear-stability threshold
#
# Whether small-batch SGD leaves the minimum can be predicted without any thermal picture. Linearised at the
# start, one SGD step with step η and minibatches of B of the n training samples multiplies the expected squared
# length of a perturbation along the top eigenvector v by q = (1 − ηλmax)² + η² c_B s_v², with s_v the spread of
# the per-sample products H_i v and c_B = (n − B)/(B(n − 1)) ({mod}`landscape.stability`; Wu et al.
# {cite}`wu2018sgd`); above the threshold η*(B) = 2λmax/(λmax² + c_B s_v²) (2/λmax for full-batch GD) the
# perturbation along v grows in mean square. This is a prediction, not a theorem: when the per-sample Hessians
# do not share eigenvectors, q > 1 along v only says that a sufficient condition for stability fails, and other
# directions can have lower thresholds. λmax and s_v are measured on the first {glue:text}`curvature_samples`
# training samples, c_B uses all n, and a last, smaller minibatch of an epoch is ignored. From each seed's start ({glue:text}`threshold_lmax` λmax, non-uniformity
# {glue:text}`threshold_nonuniformity`, GD limit 2/λmax = {glue:text}`threshold_gd_limit`), SGD runs
# {glue:text}`threshold_steps` steps at every batch size of the grid and η ∈ {{glue:text}`threshold_lrs`}; a
# run *left the minimum* when its full training loss rose above {glue:text}`threshold_rise:g` × the start's
# ({numref}`fig-rq1-threshold`).

# %% tags=["hide-input"]
stability, threshold_traces = rq1.run_threshold(sizes, cache, seed=seed)
threshold = rq1.threshold_table(stability, threshold_traces)
threshold.to_csv(results / "threshold.csv", index=False)
threshold_numbers = rq1.threshold_numbers(sizes, stability, threshold)
paste_all(threshold_numbers)
figure(rq1.plot_threshold(threshold, sizes), "threshold")

# %% [markdown]
# ```{glue:figure} fig_threshold
# :name: fig-rq1-threshold
#
# SGD continuations from the large-batch solutions: each marker one run (seeds side by side) at its batch size
# and its step size relative to the linear-stability threshold η*(B) of its start; filled: it left the minimum.
# ```
#
# The threshold is {glue:text}`threshold_small_batch` at B = {glue:text}`small_batch` and
# {glue:text}`threshold_large_batch` at B = {glue:text}`large_batch`. {glue:text}`threshold_escaped` of
# {glue:text}`threshold_runs` continuations left the minimum ({glue:text}`threshold_escaped_small` at
# B = {glue:text}`small_batch`, {glue:text}`threshold_escaped_large` at B = {glue:text}`large_batch`) and
# {glue:text}`threshold_predicted` were predicted to; the criterion calls {glue:text}`threshold_agree` right, a
# fraction {glue:text}`threshold_agree_ci` (interval over seeds). The full-batch limit 2/λmax alone, which
# ignores the minibatch noise, calls a fraction {glue:text}`threshold_agree_gd_ci` right: the two rules differ
# on {glue:text}`threshold_disputed` continuations, of which linear stability calls
# {glue:text}`threshold_disputed_right` right — only these test the noise term. Verdict (called right in at
# least {glue:text}`threshold_agreement:.0%` of runs): **{glue:text}`verdict_threshold`**.
# The escape of the previous section (η = {glue:text}`escape_lr` at B = {glue:text}`escape_batch`, from the same
# starts) has a step size {glue:text}`threshold_escape_position`: above the threshold, leaving is the linear
# instability this criterion predicts, with no thermal crossing of a barrier needed.
#
# ## Reparameterisation
#
# The large-batch solution of seed {glue:text}`rescale_seed` is rescaled as Dinh et al. proposed: the first
# layer multiplied by α and the second by 1/α, which leaves the ReLU network's function — and so its training
# loss, test accuracy and generalisation — unchanged ({numref}`fig-rq1-rescaling`).

# %% tags=["hide-input"]
rescaled = rq1.run_rescaling(sizes, cache, seed=seed)
paste_all(rq1.rescaling_numbers(sizes, rescaled))
figure(rq1.plot_rescaling(rescaled), "rescaling")
results_table(rescaled, results, "rescaling", "Dinh et al.'s rescaling by α of one trained network: training loss and "
              "every sharpness measure per α.", digits=6)  # fmt: skip

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
# by {glue:text}`spread_epsilon_sharpness:.3g`, and normalised sharpness by
# {glue:text}`spread_normalized_sharpness:.4f` and adaptive sharpness by {glue:text}`spread_adaptive_sharpness:.4f`
# (max/min over the α; 1 for a rescaling-invariant measure, and these two are invariant in exact arithmetic, so
# their distance from 1 is the error of their estimates: Lanczos at tolerance {glue:text}`tol`, projected ascent
# with a fixed number of steps). A statement "flat minima generalise" is therefore only meaningful for the invariant measures: with
# λmax, trace or ε-sharpness, any minimum of a ReLU network can be made arbitrarily sharp or flat without
# changing what it computes.
#
# ## Verdicts


# %% tags=["hide-input"]
verdicts = rq1.verdict_table(sizes, eos, correlations, pairs, ends, grid, threshold, granulated)
paste_all(dict(zip(verdicts["key"], verdicts["verdict"], strict=True)), prefix="verdict_")
paste("runtime_minutes", (time.perf_counter() - started) / 60)
evidence = {
    "escape": f"λmax ratio SGD/GD {escape_numbers['escape_sgd_over_gd']}",
    "keskar": f"λmax ratio large/small B {grid_numbers['keskar_lmax_ci']}",
    "flat": f"partial ρ(η/B, λmax | η) {grid_numbers['prho_temp_lambda_max']:.2f} "
    f"{grid_numbers['prho_temp_lambda_max_ci']}",
    "generalise": f"partial ρ(normalised sharpness, gap | η/B) {grid_numbers['prho_gap_normalized_sharpness']:.2f} "
    f"{grid_numbers['prho_gap_normalized_sharpness_ci']}; Ψ {granulated_numbers['psi_normalized_sharpness']}",
    "eos": f"settings in the band: {eos_numbers['eos_in_band_mse']} (MSE), {eos_numbers['eos_in_band_ce']} (CE)",
    "threshold": f"fraction called right {threshold_numbers['threshold_agree_ci']}",
}
sections = {"escape": "rq1-escape", "keskar": "rq1-batch", "flat": "rq1-batch", "generalise": "rq1-batch",
            "eos": "rq1-eos", "threshold": "rq1-escape"}  # fmt: skip
paste_claims("RQ1", rows_from_table(verdicts, [evidence[k] for k in verdicts["key"]],
                                    [sections[k] for k in verdicts["key"]]))  # fmt: skip
results_table(verdicts.drop(columns="key"), results, "verdicts", "The verdict of each founding claim of this "
              "chapter, with the reason its rule gives.", data=verdicts)  # fmt: skip

# %% [markdown]
# Verdicts follow fixed rules (`landscape.paper.experiments.rq1`, each tested on synthetic tables), every one
# decided on a confidence interval ({glue:text}`level`; {glue:text}`family_level` for each part of a two-part
# claim). A correlation claim is *supported* when the interval of the Spearman correlation over the grid cells
# (bootstrap over cells) lies on the claimed side of 0, *refuted* when it lies on the other side, and *not
# supported* when it contains 0. "SGD converges to flat minima" needs this for the partial correlations of η/B
# with λmax and with normalised sharpness given log η (both below 0; refuted when both lie above 0), since
# ρ(η/B, ·) alone mixes the noise with the step size's own stability limit λmax ≲ 2/η; with fewer than 10 cells
# it is not testable here. "Normalised sharpness tracks the gap" is decided, for the same reason, on the partial
# correlation of log normalised sharpness with the log gap given log η/B (above 0) and on its granulated Ψ over
# η, B and weight decay (above 0): supported when both are, refuted when both lie below 0. The escape claim is not
# testable here unless every start run reached the target, no continuation diverged, every continuation is back
# at the target loss and the interval of the paired training-loss ratio SGD/GD of the compared points lies
# inside {glue:text}`escape_loss_band`; then it is supported when the interval of λmax of small-batch SGD over
# λmax of GD at matched loss (paired by seed: the same start) lies below 1 and every SGD continuation left the
# minimum (not supported when one ended flatter without leaving), refuted when it lies above 1.
# Keskar et al.'s claim is supported when the intervals (over seeds) of the ratios large/small of λmax and of
# normalised sharpness, at equal training loss, both lie above 1, refuted when both lie below 1, not supported
# otherwise, and *not testable here* when the two batch sizes did not both reach the target loss at any step
# size. The EoS claim ("GD settles at EoS", for every step size), for each loss, is decided per setting on all
# runs without divergence (not only those that reached the onset; loss spikes included): supported when every
# setting's interval of the EoS ratio over its seeds lies inside {glue:text}`eos_band`, refuted when every one
# lies entirely outside that band, and not supported otherwise (a mean over settings could sit in the band while
# single settings lie far from it). An interval that cannot be formed (too few runs or settings) makes a claim
# not testable here.
#
# - *Noise escapes sharp regions*: {glue:text}`verdict_escape` (λmax ratio SGD/GD at matched loss
#   {glue:text}`escape_sgd_over_gd`, training-loss ratio SGD/GD {glue:text}`escape_loss_ratio`;
#   {glue:text}`escape_start_reached` of {glue:text}`escape_starts` starts at the target,
#   {glue:text}`escape_diverged` continuations diverged).
# - *SGD leaves a minimum where its linear stability says it must* (Wu et al. {cite}`wu2018sgd`):
#   {glue:text}`verdict_threshold` (fraction of threshold continuations called right
#   {glue:text}`threshold_agree_ci`, against {glue:text}`threshold_agreement:.0%`; not testable when the runs do
#   not straddle the threshold).
# - *Large batches find sharper minima* (at equal training loss): {glue:text}`verdict_keskar` (ratios of
#   B = {glue:text}`large_batch` over B = {glue:text}`small_batch`: λmax {glue:text}`keskar_lmax_ci`, normalised
#   sharpness {glue:text}`keskar_ns_ci`; per step size η = {glue:text}`keskar_lrs`: λmax
#   {glue:text}`keskar_lmax_ratio`, normalised {glue:text}`keskar_ns_ratio`).
# - *SGD converges to flat minima*: {glue:text}`verdict_flat` (given log η: ρ(η/B, λmax) =
#   {glue:text}`prho_temp_lambda_max:.2f` {glue:text}`prho_temp_lambda_max_ci`, ρ(η/B, normalised sharpness) =
#   {glue:text}`prho_temp_normalized_sharpness:.2f` {glue:text}`prho_temp_normalized_sharpness_ci`; without
#   the control ρ(η/B, λmax) = {glue:text}`rho_temp_lambda_max:.2f` {glue:text}`rho_temp_lambda_max_ci`).
# - *Normalised sharpness correlates with a larger generalisation gap* (within the matched grid):
#   {glue:text}`verdict_generalise` (given log η/B, ρ with the gap {glue:text}`prho_gap_normalized_sharpness:.2f`
#   {glue:text}`prho_gap_normalized_sharpness_ci`; without the control {glue:text}`rho_gap_normalized_sharpness:.2f`
#   {glue:text}`rho_gap_normalized_sharpness_ci`; granulated Ψ over η, B and weight decay
#   {glue:text}`psi_normalized_sharpness`).
# - *GD settles at the edge of stability*: {glue:text}`verdict_eos` (settings inside the band:
#   {glue:text}`eos_in_band_mse` with the squared loss, {glue:text}`eos_in_band_ce` with cross-entropy; mean EoS
#   ratio over settings {glue:text}`eos_ratio_mse` and {glue:text}`eos_ratio_ce`; {glue:text}`eos_runs_diverged`
#   runs diverged, {glue:text}`eos_catapults` had a loss spike).
#
# The chapter ran in {glue:text}`runtime_minutes:.1f` minutes (training runs and their measurements are cached by
# their settings and code version, so a rerun with nothing changed reads them back).
