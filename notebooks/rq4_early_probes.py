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
# (chapter-rq4)=
# # RQ4 — Do early probes predict optimisation difficulty?
#
# The founding write-up's Hypothesis H5: optimisation difficulty is predicted not by raw curvature alone but by
# early probes (λmax, tr(H)/D, slice variance, interpolation barriers), with four rules of action. A prediction
# claim has to hold out of sample, against the predictors practitioners already use, and a rule of action has to
# work when it is applied. This chapter tests all three on a population of short training runs whose step sizes are
# set relative to the initial sharpness, so that a sizeable part of them diverges. It was executed in the
# {glue:text}`profile` profile.

# %% tags=["parameters", "remove-cell"]
profile = "paper"  # smoke | paper
figures_dir = "build/interactive/figures"
results_dir = "build/interactive/results/rq4_early_probes"
seed = 0

# %% tags=["remove-cell"]
import time
from pathlib import Path

import matplotlib.pyplot as plt
from myst_nb import glue

from landscape.paper.claims import paste_claims, rows_from_table
from landscape.paper.experiments import rq4
from landscape.paper.glue import paste_all
from landscape.paper.plotting import apply_style, save_figure
from landscape.paper.tables import results_table

NOTEBOOK = "rq4_early_probes"
if profile not in rq4.PROFILES:
    raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(rq4.PROFILES)}")
sizes = rq4.PROFILES[profile]
results = Path(results_dir)
results.mkdir(parents=True, exist_ok=True)
cache = results / "cache"  # every configuration's runs, cached under their settings and code
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
# Two-hidden-layer ReLU MLPs on the first {glue:text}`num_train` MNIST-1D training signals
# {cite}`greydanus2020scaling`, trained by SGD without momentum for a fixed budget of {glue:text}`steps` steps. The
# step size is set relative to λ0, the top Hessian eigenvalue at initialisation: η = c · 2/λ0 with
# c ∈ {{glue:text}`cs`} (c < 1 is stable for gradient descent on the initial quadratic model), batch sizes
# {glue:text}`batch_sizes` (full: gradient descent), cross-entropy and the squared loss, a linear warmup over the
# first {glue:text}`branch_step` steps or none, and {glue:text}`seeds` seeds: {glue:text}`num_mlp` runs. A panel of
# {glue:text}`num_panel` runs (ResNet-18-1D, its no-skip twin and a small Transformer, cross-entropy) tests transfer
# across architectures. The probes are taken at steps {glue:text}`probe_steps` (the first 5 % of the budget); at step
# K = {glue:text}`branch_step` every MLP run is continued three times with one data order: unchanged, with η
# halved, and with unit-wise adaptive gradient clipping {cite}`brock2021high` (threshold {glue:text}`clip`).
#
# Outcomes: divergence (the minibatch loss above 100 × its initial value or not finite); the step at which the full
# training loss first falls to {glue:text}`target_fraction` × its initial value (censored when it never does); the
# final training loss and test accuracy; a catapult {cite}`lewkowycz2020large` (the loss rose above its initial value
# and the run still reached the target). {glue:text}`diverged_before` MLP runs diverged before step K and are not
# predicted (nothing is left to predict); of the {glue:text}`num_alive` others, {glue:text}`diverged_after` diverged
# later, {glue:text}`reached` reached the target and {glue:text}`catapults` went through a catapult.

# %% tags=["hide-input"]
frame = rq4.run_population(sizes, cache, seed=seed)
frame.to_csv(results / "runs.csv", index=False)
results_table(rq4.census(frame), results, "census", "The population per architecture and loss: runs, "
              "how many diverged before and after step K, reached the target and went through a catapult.")  # fmt: skip

# %% [markdown]
# (rq4-prediction)=
# ## Does early geometry predict divergence?
#
# Four predictor sets: **A** the hyperparameters (log c, log B, loss, warmup); **B** the early training-loss curve
# at step k (L(k)/L(0), the slope of log L, the largest one-step rise, a power-law extrapolation to the end of the
# budget in the spirit of {cite}`domhan2015speeding`); **C** zero-cost proxies at initialisation (grad_norm, SNIP,
# GraSP, Fisher, SynFlow, jacob_cov {cite}`abdelfattah2021zero`) and the NTK condition number {cite}`chen2021neural`;
# **D** this project's probes at every probe step up to k: λmax (warm-started Lanczos) and η·λmax/2, tr(H)/D, the
# negative-eigenvalue mass of the SLQ density, the roughest of several random filter-normalised slices (variance of
# the slice around its least-squares parabola, relative to L², zero for any quadratic bowl), the loss barrier between
# two children spawned at k with different data orders {cite}`frankle2020linear`, the gradient norm and the simple
# noise scale {cite}`mccandlish2018empirical`. Logistic regression and gradient boosting are scored out of fold
# (regularisation chosen by an inner grouped cross-validation) with held-out configurations, a held-out loss,
# held-out large c and a held-out architecture family; intervals are {glue:text}`level` cluster-bootstrap intervals
# over configurations.

# %% tags=["hide-input"]
table, predictions = rq4.prediction_table(frame, sizes, seed=seed)
rules = rq4.zero_parameter_rules(frame, sizes, seed=seed)
rules.to_csv(results / "zero_parameter_rules.csv", index=False)
h5 = rq4.added_value(frame, sizes, seed=seed)
effects = rq4.intervention_effects(frame, sizes, seed=seed)
effects.to_csv(results / "interventions.csv", index=False)
rule3 = rq4.rule3_seed_sensitivity(frame, sizes, seed=seed)
rule4 = rq4.rule4_skip_roughness(frame, sizes, seed=seed)
verdicts = rq4.verdict_table(h5, effects, rule3, rule4)
numbers = rq4.numbers(sizes, profile, frame, table, rules, h5, effects, rule3, rule4)
paste_all(numbers)
results_table(table[["split", "model", "set", "k", "target", "n", "interval", "brier"]], results, "predictions",
              "Out-of-fold prediction of each outcome per split, model and predictor set at probe step k: "
              "AUC (divergence), Harrell's C (steps to target) or Spearman ρ (test accuracy) with its "
              f"cluster-bootstrap interval over configurations, and the Brier score; {numbers['num_alive']} "
              "MLP runs alive at step K.", data=table)  # fmt: skip

# %% tags=["hide-input"]
figure(rq4.plot_trajectories(frame, sizes), "trajectories")
figure(rq4.plot_roc(predictions, table, sizes.branch_step), "roc")
figure(rq4.plot_auc_vs_step(table, rules), "auc_vs_step")
figure(rq4.plot_interventions(effects), "interventions")

# %% [markdown]
# ```{glue:figure} fig_trajectories
# :name: fig-rq4-trajectories
#
# η·λmax/2 at the probe steps for every MLP run (peak η), coloured by the unchanged run's outcome; dashed: the
# gradient-descent stability threshold 1.
# ```
#
# ```{glue:figure} fig_roc
# :name: fig-rq4-roc
#
# Out-of-fold ROC curves of divergence after step K per predictor set (held-out configurations, logistic
# regression), with the AUC and its cluster-bootstrap interval.
# ```
#
# With the predictors at step K (held-out configurations), logistic regression reaches an AUC of
# {glue:text}`auc_a` from the hyperparameters alone, {glue:text}`auc_ab` with the early loss curve,
# {glue:text}`auc_abc` with the proxies and {glue:text}`auc_abd` with the early geometry
# ({glue:text}`auc_abcd` with everything); gradient boosting {glue:text}`auc_gb_a`, {glue:text}`auc_gb_ab`,
# {glue:text}`auc_gb_abd`. Held out one loss at a time: {glue:text}`auc_loss_ab` (A+B) against
# {glue:text}`auc_loss_abd` (A+B+D); held-out large c: {glue:text}`auc_large_c_ab` against
# {glue:text}`auc_large_c_abd`; trained on the MLP and tested on the panel: {glue:text}`auc_architecture_ab`
# against {glue:text}`auc_architecture_abd` (n/a where the held-out runs hold a single class). Steps to the target
# (Harrell's C of a ridge regression on log steps): {glue:text}`cindex_a` (A), {glue:text}`cindex_ab` (A+B),
# {glue:text}`cindex_abd` (A+B+D). Final test accuracy (Spearman ρ): {glue:text}`rho_acc_a`, {glue:text}`rho_acc_ab`,
# {glue:text}`rho_acc_abd`.
#
# **The H5 test.** The gain of A+B+D over A+B is ΔAUC = {glue:text}`h5_delta` (paired cluster bootstrap), with
# a permutation p-value of {glue:text}`h5_pvalue` (D's rows shuffled and both models refitted): H5 is
# {glue:text}`verdict_h5`.
#
# ```{glue:figure} fig_auc_vs_step
# :name: fig-rq4-auc-vs-step
#
# AUC of divergence against the probe step k: the fitted A+B and A+B+D models, and the scores of the two
# zero-parameter rules (η·λmax/2 and L(k)/L(0)).
# ```
#
# The zero-parameter rule "η·λmax/2 > 1" has an AUC (as a score) of {glue:text}`eta_rule_auc_0` at initialisation
# and {glue:text}`eta_rule_auc_K` at step K; "L(k) > L(0)" has {glue:text}`loss_rule_auc_K` there. At step K the first flags {glue:text}`eta_rule_tpr` of the runs that go on to
# diverge at a false-positive rate of {glue:text}`eta_rule_fpr`; the second {glue:text}`loss_rule_tpr` at
# {glue:text}`loss_rule_fpr`.
#
# (rq4-interventions)=
# ## The rules as interventions
#
# ```{glue:figure} fig_interventions
# :name: fig-rq4-interventions
#
# Effect of each treatment (treated − unchanged continuation from the same step-K weights and data order) on the
# failure rate (diverged or target not reached) and on the test accuracy (chance for a diverged run), among the runs
# each rule flags and among the others; cluster-bootstrap intervals over configurations.
# ```
#
# - **Rule 1** (λmax high early → reduce η): flagged when η·λmax/2 > 1 at step K ({glue:text}`rule1_flagged_n`
#   runs). Halving η changes their failure rate by {glue:text}`rule1_flagged_effect` (others:
#   {glue:text}`rule1_others_effect`): {glue:text}`verdict_rule1`.
# - **Rule 2** (rugged slices while the trace is small → clipping): flagged when the slice roughness is at or above
#   its median and tr(H)/D at or below its median ({glue:text}`rule2_flagged_n` runs). Clipping changes their test
#   accuracy by {glue:text}`rule2_flagged_effect` (others: {glue:text}`rule2_others_effect`):
#   {glue:text}`verdict_rule2`.
# - **Rule 3** (high barrier but small sharpness → seed-sensitive): over {glue:text}`rule3_configs` configurations,
#   {glue:text}`rule3_flagged` flagged (mean children barrier at K above its median, η·λmax/2 at or below its
#   median); flagged minus other spread of the test accuracy over seeds: {glue:text}`rule3_effect`:
#   {glue:text}`verdict_rule3` ({glue:text}`rule3_reason`).
# - **Rule 4** (skip connections → lower worst-case slice roughness): ResNet minus twin, mean paired difference of
#   log roughness, {glue:text}`rule4_diff_0` at initialisation ({glue:text}`rule4_pairs_0` pairs) and
#   {glue:text}`rule4_diff_K` at step K ({glue:text}`rule4_pairs_K` pairs): {glue:text}`verdict_rule4`.
#
# Read with care: the treatments are applied once, at step K, to every run, so a rule's effect on the runs it flags
# is compared with its effect on the others from the same population; the runs differ in c and B, which the
# flags partly encode. Momentum and Adam are not in the population, so the thresholds (2+2β)/η and the
# preconditioned sharpness are not tested here.

# %% tags=["hide-input"]
evidence = [f"ΔAUC {numbers['h5_delta']}, permutation p = {numbers['h5_pvalue']}",
            f"Δ failure rate {numbers['rule1_flagged_effect']} (others {numbers['rule1_others_effect']})",
            f"Δ test accuracy {numbers['rule2_flagged_effect']} (others {numbers['rule2_others_effect']})",
            (f"Δ seed spread {numbers['rule3_effect']} ({numbers['rule3_flagged']} of {numbers['rule3_configs']} "
            "configurations flagged)"),
            f"Δ log roughness ResNet − twin {numbers['rule4_diff_K']} ({numbers['rule4_pairs_K']} pairs)"]  # fmt: skip
sections = ["rq4-prediction"] + ["rq4-interventions"] * 4
paste_claims("RQ4", rows_from_table(verdicts, evidence, sections))
results_table(
    verdicts, results, "verdicts", "The verdict of H5 and of each rule, with the reason its rule gives."
)

# %% tags=["remove-cell"]
glue("runtime_minutes", (time.perf_counter() - started) / 60, display=False)

# %% [markdown]
# The chapter ran in {glue:text}`runtime_minutes:.1f` minutes (configurations are cached by their settings and
# code version, so a rerun with nothing changed reads them back).
