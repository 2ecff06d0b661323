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
# (chapter-rq3)=
# # RQ3 — Which geometric quantities track generalisation?
#
# The founding write-up lists λmax, tr(H), the effective rank, normalised sharpness and the barrier between
# solutions as the quantities that "correlate with trainability and generalisation", and shows no study. This
# chapter runs one in the manner of Jiang et al. {cite}`jiang2020fantastic` and Dziugaite et al.
# {cite}`dziugaite2020search`: a population of MNIST-1D networks {cite}`greydanus2020scaling` that differ in four
# hyperparameters, all trained to the same training loss, each measured by this project's probes and by the
# baselines a geometric measure has to beat. It was executed in the {glue:text}`profile` profile.

# %% tags=["parameters", "remove-cell"]
profile = "paper"  # smoke | paper | full
figures_dir = "build/interactive/figures"
results_dir = "build/interactive/results/rq3_generalisation"
seed = 0

# %% tags=["remove-cell"]
import time
from pathlib import Path

import matplotlib.pyplot as plt
from myst_nb import glue

from landscape.paper.claims import paste_claims
from landscape.paper.experiments import rq3
from landscape.paper.experiments.rq3_tasks import MEASURES
from landscape.paper.glue import format_estimate, paste_all
from landscape.paper.plotting import apply_style, save_figure
from landscape.paper.tables import results_table

NOTEBOOK = "rq3_generalisation"
if profile not in rq3.PROFILES:
    raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(rq3.PROFILES)}")
sizes = rq3.PROFILES[profile]
results = Path(results_dir)
results.mkdir(parents=True, exist_ok=True)
cache = results / "cache"  # every configuration's networks, cached under their settings and code
apply_style()
started = time.perf_counter()


def figure(fig, name):
    """Save the figure as <notebook>_<name>.png, glue it as fig_<name> (not displayed) and close it."""
    save_figure(fig, figures_dir, f"{NOTEBOOK}_{name}", NOTEBOOK)
    glue(f"fig_{name}", fig, display=False)
    plt.close(fig)


# %% [markdown]
# ## Population
#
# A full factorial over the SGD step size η ∈ {{glue:text}`lrs`} (momentum 0.9), the batch size
# B ∈ {{glue:text}`batch_sizes`}, the width of a two-hidden-layer ReLU MLP ∈ {{glue:text}`widths`} and the weight
# decay ∈ {{glue:text}`weight_decays`}, with the seeds {glue:text}`seeds` per configuration:
# {glue:text}`num_networks` networks in {glue:text}`num_configs` configurations. Every network is trained until its
# cross-entropy over the whole training set is at most {glue:text}`stop_loss` at an evaluation (Jiang et al.'s stop
# rule, so that networks are compared at about equal training loss); {glue:text}`num_reached` reached it
# (training loss {glue:text}`train_loss_range`), {glue:text}`num_diverged` diverged and
# {glue:text}`num_out_of_steps` ran out of steps. Those that did not reach it are counted here and left out of
# every statistic below. A target of 0.1 is a compromise with the budget (Jiang et al. stop at 0.01): the
# training loss is checked every 50 steps, and the partial correlations below control what remains of its spread.
#
# The default MNIST-1D test set has 1,000 signals, too few to order gaps a few points apart. The gap here is the
# test error on {glue:text}`half_test` further signals generated offline with another seed, minus the training
# error ({glue:text}`gap_range`); the gap on another {glue:text}`half_test` signals, treated as a measure, is the
# *noisy oracle*: the best any measure can do against test-set noise.

# %% tags=["hide-input"]
frame = rq3.run_population(sizes, cache, seed=seed)
frame.to_csv(results / "networks.csv", index=False)
results_table(rq3.census(frame), results, "census", "The population per data set: networks trained, "
              "how many reached the target training loss, diverged or ran out of steps, and the range of training "
              "loss and gap among those that reached it.", digits=3)  # fmt: skip

# %% [markdown]
# ## Measures
#
# This project's (on the first {glue:text}`curvature_samples` training samples): λmax, tr(H)/D, the entropy
# effective rank from SLQ, normalised sharpness λmax(diag|θ| H diag|θ|) and trace, adaptive worst- and
# average-case sharpness, Keskar's ε-sharpness, PAC-Bayes flatness 1/σ′² (plain and magnitude-aware), and the loss
# barrier between the two seeds after permutation alignment. Baselines: the number of parameters, ‖θ‖², the
# distance from initialisation, the path norm {cite}`neyshabur2015norm`, the product of spectral norms and the
# sum of Frobenius norms {cite}`bartlett2017spectrally`, the inverse output margin and spectral norm over margin,
# the steps to the target, the final gradient noise, a model that sees the hyperparameters only (an out-of-fold
# ridge regression), and the disagreement of the two seeds on unlabelled test signals {cite}`jiang2022assessing`.
#
# For each measure: Kendall's τ with the gap (positive when the measure grows with the gap) with a
# {glue:text}`level` cluster-bootstrap interval over configurations; the granulated coefficient Ψ, the mean over
# axes of τ among networks that differ in that axis alone; the conditional mutual information score; the robust
# sign error over single-axis environments; and the partial rank correlation on configuration means given
# log(η/B) and the training loss, with Holm-adjusted p-values across measures.

# %% tags=["hide-input"]
main = rq3.add_reference_measures(frame[frame["dataset"] == "mnist1d"])
measures = [*MEASURES, rq3.HYPERPARAMETER_MODEL, rq3.NOISY_ORACLE]
table = rq3.measure_table(main, measures, num_test=sizes.extra_test // 2, n_resamples=sizes.n_resamples,
                          seed=seed)  # fmt: skip
rescaled = rq3.run_rescaling(sizes, cache, seed=seed)
table["rescaling_change"] = table["measure"].map(rq3.rescaling_changes(main, rescaled, MEASURES))
# the founding claims' intervals at the family level of their verdicts
founding = rq3.measure_table(main, list(rq3.FOUNDING), num_test=sizes.extra_test // 2, seed=seed,
                             level=rq3.family_interval_level(), n_resamples=sizes.n_resamples)  # fmt: skip
verdicts = rq3.verdict_table(founding)
digits = rq3.add_reference_measures(frame[frame["dataset"] == "digits"], axes=("lr", "width"), folds=4)
digits_table = rq3.measure_table(digits, list(rq3.FOUNDING), axes=("lr", "width"), num_test=298,
                                 n_resamples=sizes.n_resamples, seed=seed)  # fmt: skip
resolution = rq3.power(main, table, n_resamples=max(200, sizes.n_resamples // 4), seed=seed)
held_out = rq3.leave_one_level_out(main, MEASURES)
held_out.to_csv(results / "leave_one_level_out.csv", index=False)
paste_all(rq3.held_out_numbers(held_out, MEASURES))
paste_all(rq3.numbers(sizes, profile, frame, table, verdicts, digits_table, rescaled, resolution))
results_table(table, results, "measures", f"Every measure against the generalisation gap over {len(main)} networks: "
              "Kendall τ with its cluster-bootstrap interval over configurations, the granulated Ψ, the conditional "
              "mutual information, the robust sign error, the partial correlation given log(η/B) and the training "
              "loss (Holm-adjusted p), and the change under rescaling.")  # fmt: skip

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 0.28 * len(table) + 1))
rq3.plot_tau(table, ax)
figure(fig, "tau")
fig, ax = plt.subplots(figsize=(6, 0.28 * len(table) + 1))
rq3.plot_psi_heatmap(table, rq3.AXES, ax, fig)
figure(fig, "psi")
candidates = table[~table["kind"].isin(["reference"])].dropna(subset=["tau"])
best = candidates.nlargest(2, "tau")
fig, axes = plt.subplots(1, max(1, len(best)), figsize=(5 * max(1, len(best)), 3.6), squeeze=False)
for ax, (_, row) in zip(axes[0], best.iterrows(), strict=False):  # no axes used when nothing was measured
    psi = {a: abs(row.get(f"psi_{a}", 0.0)) for a in rq3.AXES if f"psi_{a}" in row}
    rq3.plot_measure_vs_gap(main, row["measure"], max(psi, key=psi.get) if psi else "lr", ax)
figure(fig, "best")
best = best["measure"].tolist()
fig, ax = plt.subplots(figsize=(7, 3))
rq3.plot_sign_error(main, [*best, *rq3.FOUNDING[:2]], rq3.AXES, sizes.extra_test // 2, ax)
figure(fig, "sign_error")

# %% [markdown]
# ```{glue:figure} fig_tau
# :name: fig-rq3-tau
#
# Kendall's τ of each measure with the gap over the {glue:text}`num_reached` reached networks (dots, with the
# {glue:text}`level` cluster-bootstrap interval over configurations) and the granulated Ψ (diamonds), sorted.
# ```
#
# ```{glue:figure} fig_psi
# :name: fig-rq3-psi
#
# ψ per axis: Kendall's τ among networks that differ in that hyperparameter alone, averaged over the groups.
# ```
#
# ```{glue:figure} fig_best
# :name: fig-rq3-best
#
# The two non-reference measures with the largest τ against the gap, coloured by the axis of their largest |ψ|.
# ```
#
# ```{glue:figure} fig_sign_error
# :name: fig-rq3-sign-error
#
# Sign error per single-axis environment (pairs of configurations that differ in one axis, each holding at most
# 2 × 2 pairs of networks, kept when the two gaps differ by more than the Hoeffding threshold; environments with
# at least {glue:text}`min_ess` kept pairs) for the best measures and for λmax and tr(H)/D.
# ```
#
# The measures with the largest τ are {glue:text}`best_measures`; the best norm or margin baseline is
# {glue:text}`best_norm`. Two references bound what a measure can add: the hyperparameters alone, through an
# out-of-fold ridge regression, reach {glue:text}`hyper_tau`, and the noisy oracle (the gap on the other test half)
# {glue:text}`oracle_tau`. The population resolves differences in τ of about {glue:text}`power` (the median
# half-width of the paired bootstrap interval of τ(a) − τ(b) between neighbours in the ranking); measures closer
# than that are not ranked. On the weight-decay axis even the oracle's ψ is {glue:text}`oracle_psi_weight_decay`:
# there the gaps differ by less than the test noise.
#
# Beyond τ: the partial rank correlation with the gap on configuration means, given log(η/B) and the training
# loss, is {glue:text}`partial_lambda_max` for λmax, {glue:text}`partial_trace_per_param` for tr(H)/D and
# {glue:text}`partial_normalized_sharpness` for normalised sharpness; given the hyperparameter model instead (does
# the measure add to what the hyperparameters already say?) it is {glue:text}`partial_hyper_lambda_max`,
# {glue:text}`partial_hyper_trace_per_param` and {glue:text}`partial_hyper_normalized_sharpness`. The sign error
# over single-axis environments (mean / 90th percentile / maximum) is {glue:text}`rse_mean_lambda_max` /
# {glue:text}`rse_p90_lambda_max` / {glue:text}`rse_max_lambda_max` for λmax and
# {glue:text}`rse_mean_normalized_sharpness` / {glue:text}`rse_p90_normalized_sharpness` /
# {glue:text}`rse_max_normalized_sharpness` for normalised sharpness: as Dziugaite et al. found, no measure is right
# in every environment. With 2 seeds an environment holds at most 4 pairs of networks, so environments need only
# {glue:text}`min_ess` kept pairs here, not their 12.
#
# Out of level: holding out each level of each axis in turn ({glue:text}`loo_levels` held-out levels), the
# hyperparameter model refitted on the other levels reaches a mean τ of {glue:text}`loo_tau_hyper` on the held-out
# networks. λmax reaches {glue:text}`loo_tau_lambda_max` and beats the refitted model in
# {glue:text}`loo_beats_lambda_max` levels; the barrier {glue:text}`loo_tau_barrier` ({glue:text}`loo_beats_barrier`);
# tr(H)/D {glue:text}`loo_tau_trace_per_param` ({glue:text}`loo_beats_trace_per_param`); normalised sharpness
# {glue:text}`loo_tau_normalized_sharpness` ({glue:text}`loo_beats_normalized_sharpness`).
#
# Rescaling check: the networks of a few configurations ({glue:text}`rescaled_networks` in all) were measured again
# after Dinh et al.'s rescaling {cite}`dinh2017sharp` by α ∈ {{glue:text}`alphas`} (first layer × α, second × 1/α:
# the same function). Measures that change by more than {glue:text}`rescaling_tolerance` of their spread over the
# population move with the parametrisation and cannot carry a causal claim about the function:
# {glue:text}`moving_measures`. Unchanged: {glue:text}`invariant_measures`.
#
# On the digits (out of task; {glue:text}`digits_reached` of {glue:text}`digits_networks` networks, step size ×
# width only, reached the target), τ is {glue:text}`digits_tau_lambda_max` for λmax and
# {glue:text}`digits_tau_normalized_sharpness` for normalised sharpness.
#
# (rq3-verdicts)=
# ## Verdicts
#
# The rule (`landscape.paper.experiments.rq3.verdict_measure`, intervals at {glue:text}`family_level` for the
# five claims): a founding quantity "correlates with generalisation" (*supported*) when both τ's interval and the
# partial correlation's (on configuration means, given log(η/B) and the training loss) lie above 0; *refuted* when
# the partial's lies below 0 while τ's excludes 0; *not supported* otherwise (an interval contains 0, or the two
# disagree); *not testable here* when an interval is undefined, the measure is nearly a function of η/B, or the
# probe's budget is not validated (the effective rank).
#
# - λmax: {glue:text}`verdict_lambda_max` (τ {glue:text}`vtau_lambda_max`, partial {glue:text}`vpartial_lambda_max`)
# - tr(H)/D: {glue:text}`verdict_trace_per_param` (τ {glue:text}`vtau_trace_per_param`, partial
#   {glue:text}`vpartial_trace_per_param`)
# - effective rank: {glue:text}`verdict_effective_rank` (τ {glue:text}`vtau_effective_rank`)
# - normalised sharpness: {glue:text}`verdict_normalized_sharpness` (τ {glue:text}`vtau_normalized_sharpness`,
#   partial {glue:text}`vpartial_normalized_sharpness`)
# - barrier between seeds: {glue:text}`verdict_barrier` (τ {glue:text}`vtau_barrier`, partial
#   {glue:text}`vpartial_barrier`)
#
# Not done here, and needed before these verdicts generalise: a second architecture family (out-of-family test),
# an intervention on sharpness at fixed hyperparameters (SAM), leave-one-level-out checks, the "trainability" half
# of the founding claim (the RQ4 chapter), a validated effective-rank budget, and a comparison with the values
# published by Jiang et al. and Dziugaite et al., which this chapter does not quote because they were not
# checked against the papers' tables.


# %% tags=["hide-input"]
def interval(row, name):
    return format_estimate(row[name], row[f"{name}_low"], row[f"{name}_high"], digits=2)


paste_claims("RQ3", [{"claim": f"{row['quantity']} tracks the generalisation gap", "verdict": row["verdict"],
                      "evidence": f"τ {interval(row, 'tau')}, partial {interval(row, 'partial')}",
                      "section": "rq3-verdicts"} for _, row in verdicts.iterrows()])  # fmt: skip
results_table(verdicts, results, "verdicts", "The verdict of each founding quantity, with τ, Ψ and the partial "
              "correlation it rests on (intervals at the family level) and the reason its rule gives.")  # fmt: skip

# %% tags=["remove-cell"]
glue("runtime_minutes", (time.perf_counter() - started) / 60, display=False)

# %% [markdown]
# The chapter ran in {glue:text}`runtime_minutes:.1f` minutes (configurations are cached by their settings and
# code version, so a rerun with nothing changed reads them back).
