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
# (chapter-rq2)=
# # RQ2 — How does architecture shape the landscape?
#
# The founding write-up compared one training run per architecture and read the plots by eye. Here four
# architectures are trained on the same data (MNIST-1D, {glue:text}`num_train` training samples) with
# {glue:text}`num_seeds` seeds each, and every quantity of {doc}`../methods` is measured on every trained network.
# Each founding claim about architectures gets a verdict from these numbers at the end of the chapter. This
# chapter was executed in the {glue:text}`profile` profile.

# %% tags=["parameters", "remove-cell"]
profile = "paper"  # smoke | paper | full
figures_dir = "build/interactive/figures"
results_dir = "build/interactive/results/rq2_architecture"
seed = 0

# %% tags=["remove-cell"]
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from myst_nb import glue

from landscape import load_dataset
from landscape.paper.claims import key_number, paste_claims
from landscape.paper.experiments import rq2
from landscape.paper.glue import paste, paste_all
from landscape.paper.plotting import apply_style, save_figure
from landscape.paper.tables import interval_summary, results_table

if profile not in rq2.PROFILES:
    raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(rq2.PROFILES)}")
sizes = rq2.PROFILES[profile]
NOTEBOOK = "rq2_architecture"
results = Path(results_dir)
results.mkdir(parents=True, exist_ok=True)
apply_style()
timings: dict[str, float] = {}


def show(fig, name: str) -> None:
    """Save a figure of this chapter as rq2_architecture_<name>.png and glue it as fig_<name>."""
    save_figure(fig, figures_dir, f"{NOTEBOOK}_{name}", NOTEBOOK)
    glue(f"fig_{name}", fig, display=False)
    plt.close(fig)


# The founding write-up's claims about architectures, quoted (numbered as in the verdicts below).
CLAIMS = {
    1: "MLP landscapes are smoother, with rapid-convergence basins",
    2: "ResNet-18 has stiff dominant eigenvalues but coherent valleys thanks to skip connections",
    3: "Transformers, even tiny, show near-zero average curvature but rugged local slices",
    4: "The MLP's top eigenvalue is repeated (no explicit Hessian gap)",
    5: "Trace grows with parameter dimension",
    6: "Barriers are moderate: distinct but nearby basins for small models",
}
data = load_dataset("mnist1d")
paste_all(rq2.settings_numbers(sizes, profile, len(data.x_train)))

# %% [markdown]
# ## Networks and recipes
#
# Every network is trained on the same {glue:text}`num_train` MNIST-1D training samples with the recipe of
# its row below (the paper's reference recipes of `landscape.train.paper_recipe`; the ResNet twin differs from
# ResNet-18 only by `skip=False`: the identity and projection shortcuts are removed, nothing else), with seeds
# {glue:text}`seed_list`. Test accuracy is mean ± standard deviation over seeds. All curvature probes use the
# Hessian of the mean cross-entropy over a fixed subset of the first {glue:text}`hessian_samples` training
# samples (the same for every network); slices are evaluated on the same subset, interpolation barriers on the
# first {glue:text}`eval_samples`.

# %% tags=["hide-input"]
start = time.perf_counter()
training = rq2.train_networks(sizes, data=data)  # MLP seeds vectorised in one task, other networks one each
timings["training (cached runs are loaded)"] = time.perf_counter() - start
rq2.save_table(training, results / "training.csv")
paste_all(rq2.training_numbers(training, n_resamples=sizes.n_resamples, seed=seed))
results_table(rq2.recipe_table(sizes, training), results, "recipes", "The recipe of each architecture (first "
              "seed): model options, optimiser, step size, weight decay, schedule, batch size and length.",
              index=True)  # fmt: skip

# %% [markdown]
# Test accuracy (mean ± standard deviation over seeds): MLP {glue:text}`acc_mlp:.1f` ± {glue:text}`acc_mlp_std:.1f` %,
# ResNet-18 {glue:text}`acc_resnet:.1f` ± {glue:text}`acc_resnet_std:.1f` %, ResNet-18 without skips
# {glue:text}`acc_noskip:.1f` ± {glue:text}`acc_noskip_std:.1f` %, Transformer
# {glue:text}`acc_transformer:.1f` ± {glue:text}`acc_transformer_std:.1f` %. Per run:

# %% tags=["hide-input"]
results_table(training.drop(columns="key"), results, "training_runs", f"Every trained network ({len(training)} "
              "runs): final training loss and accuracy, test loss and accuracy, training time.", digits=4,
              data=training.drop(columns="key"))  # fmt: skip

# %% [markdown]
# ## Curvature
#
# For every network: the top {glue:text}`k` eigenvalues by block Lanczos (relative tolerance
# {glue:text}`tol`) with their residuals ‖Hv − λv‖, λmin (Lanczos from the bottom, at most 60 products, reported
# with its residual) and Li et al.'s {cite}`li2018visualizing` convexity
# ratio |λmin/λmax|, the trace by Hutchinson's estimator with {glue:text}`trace_matvecs` probes and the trace per
# parameter tr(H)/D, the spectral density by SLQ ({glue:text}`slq_probes_text` × {glue:text}`slq_steps`
# steps) and its entropy effective rank, the number of outliers (the position of the largest ratio
# λᵢ/λᵢ₊₁ ≥ 2 among the top {glue:text}`k`; Papyan {cite}`papyan2019measurements,papyan2020traces` finds one per class, C = 10),
# the normalised sharpness λmax(diag|θ| H diag|θ|) and the adaptive ℓ∞ sharpness
# max L(θ + δ) − L(θ) over |δᵢ| ≤ {glue:text}`adaptive_radius`·|θᵢ| (projected ascent, a lower bound).
# Every number in the table below is the geometric mean over seeds with its 95 % interval (Student's t on
# the logarithms) for positive quantities, the mean with Student's interval otherwise.

# %% tags=["hide-input"]
start = time.perf_counter()
raw = rq2.measure_networks(training, sizes, results / "cache", seed=seed)  # one cached task per measurement
timings["curvature, slices, planes, barriers (cached ones are read back)"] = time.perf_counter() - start
curvature, slices, planes, barriers = raw["curvature"], raw["slices"], raw["planes"], raw["barriers"]
rugged = rq2.ruggedness_table(slices)
for name, frame in {**raw, "ruggedness": rugged}.items():
    rq2.save_table(frame, results / f"{name}.csv")
paste_all(rq2.curvature_numbers(curvature, n_resamples=sizes.n_resamples, seed=seed))
paste_all(rq2.ruggedness_numbers(rugged))
paste_all(rq2.barrier_numbers(barriers))
results_table(interval_summary(curvature, "architecture", rq2.CURVATURE_COLUMNS), results, "curvature_summary",
              f"Curvature per architecture over {len(sizes.seeds)} seeds: estimate [95 % CI] (geometric mean "
              "for positive quantities).", index=True, data=curvature)  # fmt: skip

# %% [markdown]
# Per run: λmin with its residual (the smallest eigenvalue sits at the edge of a dense bulk near 0, where
# Lanczos converges slowly, so λmin is only known to within that residual and |λmin/λmax| is bounded by
# (|λmin| + r)/λmax), the largest ratio of consecutive top eigenvalues and where it occurs (Papyan's picture
# predicts a gap after i = C = 10), whether the residual intervals prove λ1 ≠ λ2, and the largest relative
# residual of the top-k:

# %% tags=["hide-input"]
results_table(rq2.per_run_curvature(curvature), results, "curvature_runs", "Curvature of every network: λmin "
              "with its residual, the largest ratio of consecutive top eigenvalues, the λ1 ≠ λ2 certificate and the "
              "largest relative residual of the top-k.")  # fmt: skip

# %% tags=["hide-input"]
show(rq2.plot_spectra(curvature), "spectra")

# %% [markdown]
# ```{glue:figure} fig_spectra
# :name: fig-rq2-spectra
#
# Hessian spectra per architecture, each on the scale of its own λmax. Left: the top eigenvalues relative to
# λ1 (line: mean over seeds; band: range); the dotted line marks C = 10 classes. Right: the SLQ density of the
# whole spectrum (log scale), one curve per seed.
# ```
#
# ## Slices and ruggedness
#
# Along a filter-normalised random direction {cite}`li2018visualizing` and along the top Hessian eigenvector
# (normalised per filter in the same way), the loss f(α) = L(θ + αd) is evaluated on
# {glue:text}`slice_points` points of a window α ∈ [−r, r] and compared with its second-order model
# q(α) = L(θ) + αg·d + ½α²dᵀHd. The ruggedness R = TV(f − q)/TV(f) is 0 for a landscape that is quadratic along
# the slice. It grows with every bump the quadratic does not predict, but also with smooth growth that is not
# quadratic (a cross-entropy slice grows linearly far from the minimum), so it is measured on two windows:
# r = 1 (the range of Li et al.'s plots) and a local window r = {glue:text}`local_radius`, where smooth
# departures from the quadratic are small and what remains is structure at that scale. The number of interior
# local minima of the r = 1 slice counts separate dips directly. A 2-D slice on a filter-normalised random
# plane ({glue:text}`grid_points` × {glue:text}`grid_points` points, r = 1) is shown for seed
# {glue:text}`first_seed`.

# %% tags=["hide-input"]
show(rq2.plot_slices(slices), "slices")
show(rq2.plot_planes(planes), "planes")
results_table(interval_summary(rugged, "architecture", list(rq2.RUGGED_COLUMNS)), results, "ruggedness_summary",
              f"Ruggedness R and interior local minima per architecture over {len(sizes.seeds)} seeds: estimate "
              "[95 % CI].", index=True, data=rugged)  # fmt: skip

# %% [markdown]
# ```{glue:figure} fig_slices
# :name: fig-rq2-slices
#
# 1-D slices through each trained network (one solid curve per seed; log scale) along a filter-normalised
# random direction (top) and along the filter-normalised top Hessian eigenvector (bottom), with the quadratic
# model q(α) of each (dotted).
# ```
#
# ```{glue:figure} fig_planes
# :name: fig-rq2-planes
#
# Loss contours on a filter-normalised random plane through the trained network (+), seed
# {glue:text}`first_seed`, on the same α, β ∈ [−1, 1] range and the same logarithmically spaced levels for every
# architecture (one shared colourbar).
# ```
#
# ## Barriers between seeds
#
# For every pair of seeds of an architecture, the loss on the straight line θ(α) = (1 − α)θ_a + αθ_b
# ({glue:text}`barrier_points` points, evaluated on {glue:text}`eval_samples` training samples) and its barrier
# height max_α [L(θ(α)) − ((1 − α)L(θ_a) + αL(θ_b))] {cite}`entezari2022role`. For the MLP the second network is
# also aligned to the first by weight matching {cite}`ainsworth2023git` first (a permutation of hidden units that
# leaves its function unchanged); permutation alignment is not implemented for the convolutional and attention
# networks.

# %% tags=["hide-input"]
show(rq2.plot_barriers(barriers), "barriers")
barrier_columns = ["loss barrier", "error barrier"]
labelled = barriers.assign(network=barriers["architecture"] + ", " + barriers["variant"].astype(str))
results_table(interval_summary(labelled, "network", barrier_columns), results, "barrier_summary", "Loss and error "
              f"barriers per architecture (and alignment) over {math.comb(len(sizes.seeds), 2)} seed pairs: "
              "estimate [95 % CI].", index=True, data=barriers)  # fmt: skip

# %% [markdown]
# ```{glue:figure} fig_barriers
# :name: fig-rq2-barriers
#
# Linear interpolation between independently trained seeds. Left: the training loss along each line (dashed:
# MLP after weight-matching alignment). Right: the barrier heights with their 95 % interval over the seed pairs
# (`seed_interval`: Student's t, on the logarithms when every barrier is positive).
# ```
#
# ## Ruggedness across architectures

# %% tags=["hide-input"]
show(rq2.plot_ruggedness(rugged), "ruggedness")

# %% [markdown]
# ```{glue:figure} fig_ruggedness
# :name: fig-rq2-ruggedness
#
# Ruggedness R of 1-D slices (geometric mean over seeds with its 95 % interval; log axis) on the window α ∈ [−1, 1] of {numref}`fig-rq2-slices`
# (left) and on the local window (right): 0 means the slice is exactly its quadratic model on that window.
# ```
#
# (rq2-claims)=
# ## The founding claims
#
# Each claim of the founding write-up about architectures, the test applied to it (decided in advance and
# computed below, not read off a plot) and the verdict. A claimed difference between two architectures is the
# ratio of the two over seeds with a {glue:text}`level_percent` % interval (paired by seed for ResNet-18 and its
# twin, which share seeds and data order: the geometric mean of the paired ratios; unpaired for the others:
# with fewer than 10 seeds the ratio of geometric means); it is shown when the interval excludes 1. Curvature
# and ruggedness of a cross-entropy network shrink with its training loss, so two architectures are compared
# only at matched training losses: the interval of the ratio of their training losses must lie inside
# [1/{glue:text}`loss_match_factor:.2f`, {glue:text}`loss_match_factor:.2f`], otherwise the comparison is *not
# testable here* (a wider band would be as large as the effects compared). A claim with k parts has each part's
# interval at level 1 − 0.05/k (Bonferroni), and is *refuted* when one part is refuted (the data show the
# opposite), *supported* when every part is, else *not testable here* when one part is, and *not supported*
# otherwise. "Mean ± std" in the text describe the spread over seeds; the table below gives each claim's parts
# with the intervals they rest on.

# %% tags=["hide-input"]
verdicts = rq2.verdicts(training, curvature, rugged, barriers, n_resamples=sizes.n_resamples, seed=seed)
paste_all({f"verdict_{i}": v.outcome for i, v in verdicts.items()})
timings_frame = pd.Series(timings, name="seconds").round(1)
paste("total_minutes", sum(timings.values()) / 60)
table = rq2.verdict_table(verdicts).reset_index()
table.insert(1, "claim_text", [CLAIMS[i] for i in table["claim"]])
paste_claims("RQ2", [{"claim": CLAIMS[i], "verdict": v.outcome, "evidence": key_number(v.reason, v.outcome),
                      "section": "rq2-claims"} for i, v in verdicts.items()])  # fmt: skip
results_table(table, results, "verdicts", "The verdict of each founding claim about architectures, with the "
              "reason its rule gives (every part's interval).")  # fmt: skip

# %% [markdown]
# 1. **"MLP landscapes are smoother, with rapid-convergence basins."** Test: the ratio of every other
#    architecture's random-direction ruggedness to the MLP's has an interval above 1. Measured R: MLP
#    {glue:text}`rugged_mlp:.3f` ± {glue:text}`rugged_mlp_std:.3f`, ResNet-18 {glue:text}`rugged_resnet:.3f` ± {glue:text}`rugged_resnet_std:.3f`,
#    no-skip twin {glue:text}`rugged_noskip:.3f` ± {glue:text}`rugged_noskip_std:.3f`, Transformer
#    {glue:text}`rugged_transformer:.3f` ± {glue:text}`rugged_transformer_std:.3f`. Verdict:
#    **{glue:text}`verdict_1`**. Interior local minima along the random slice (mean per seed): MLP
#    {glue:text}`minima_mlp:.2g`, ResNet-18 {glue:text}`minima_resnet:.2g`, no skips {glue:text}`minima_noskip:.2g`,
#    Transformer {glue:text}`minima_transformer:.2g`. "Rapid-convergence basins" has no measurable definition here
#    and is not tested.
# 2. **"ResNet-18 has stiff dominant eigenvalues but coherent valleys thanks to skip connections."** Test
#    (Li et al.'s comparison {cite}`li2018visualizing`): the twin's ruggedness and |λmin/λmax| over ResNet-18's
#    (paired by seed) have intervals above 1, and so has ResNet-18's λmax over each other architecture's.
#    λmax: ResNet-18 {glue:text}`lmax_resnet:.3g`, no skips {glue:text}`lmax_noskip:.3g`, MLP {glue:text}`lmax_mlp:.3g`, Transformer {glue:text}`lmax_transformer:.3g`;
#    |λmin/λmax|: {glue:text}`ratio_resnet:.1e` with skips vs {glue:text}`ratio_noskip:.1e` without. Verdict:
#    **{glue:text}`verdict_2`**. Without skips over with skips (geometric mean of the paired ratios
#    [{glue:text}`level_percent` % interval]): λmax {glue:text}`lmax_skip_ratio_ci`, normalised sharpness
#    {glue:text}`ns_skip_ratio_ci`; mean test accuracy is {glue:text}`acc_drop_skips:.0f` points lower without
#    them (standard deviation over the twin's seeds {glue:text}`acc_noskip_std:.1f` points). The twin's training
#    loss ({glue:text}`train_loss_noskip_min:.2f`–{glue:text}`train_loss_noskip_max:.2f` against
#    {glue:text}`train_loss_resnet_min:.3f`–{glue:text}`train_loss_resnet_max:.3f` with skips) over ResNet-18's is
#    {glue:text}`loss_ratio_skip_ci`, {glue:text}`loss_match_skip` the matching band. |λmin/λmax| cannot separate
#    them when λmin is within its Lanczos residual of 0 (bound column above); that part is then not testable.
# 3. **"Transformers, even tiny, show near-zero average curvature but rugged local slices."** Test: every
#    other architecture's tr(H)/D over the Transformer's, and the Transformer's local-window ruggedness over every
#    other architecture's, have intervals above 1. tr(H)/D:
#    Transformer {glue:text}`trace_d_transformer:.2e`, MLP {glue:text}`trace_d_mlp:.2e`, ResNet-18
#    {glue:text}`trace_d_resnet:.2e`, no skips {glue:text}`trace_d_noskip:.2e`; local R: Transformer
#    {glue:text}`rugged_local_transformer:.3f` ± {glue:text}`rugged_local_transformer_std:.3f`, MLP
#    {glue:text}`rugged_local_mlp:.3f` ± {glue:text}`rugged_local_mlp_std:.3f`, ResNet-18
#    {glue:text}`rugged_local_resnet:.3f` ± {glue:text}`rugged_local_resnet_std:.3f`, no skips
#    {glue:text}`rugged_local_noskip:.3f` ± {glue:text}`rugged_local_noskip_std:.3f`. Verdict:
#    **{glue:text}`verdict_3`**.
# 4. **"The MLP's top eigenvalue is repeated (no explicit Hessian gap)."** Test, from the top two Ritz values
#    and their Lanczos residuals r1, r2 (each interval [λi − ri, λi + ri] holds an exact eigenvalue): the claim is
#    refuted when the mean certified margin (λ1 − λ2 − r1 − r2)/λ1 has its interval above 0 (the residual
#    intervals are disjoint: λ1 ≠ λ2 shown); it is supported only by an equivalence test, when the mean of
#    (λ1 − λ2 + r1 + r2)/λ1, the largest gap the residuals allow, has its interval below δ =
#    {glue:text}`gap_delta:g` with residuals (r1 + r2)/λ1 ≤ {glue:text}`gap_resolution:g` on every seed; with
#    larger residuals it is not testable (the residuals do not resolve the gap; a gap that is merely not resolved
#    is no evidence of a repeated eigenvalue). Margin: {glue:text}`mlp_margin_ci`; bound:
#    {glue:text}`mlp_bound_ci`; largest (r1 + r2)/λ1: {glue:text}`mlp_top_residuals:.2g`. The residual intervals
#    are disjoint for {glue:text}`certified_mlp` of {glue:text}`num_seeds` MLP seeds; the mean relative gap
#    (λ1 − λ2)/λ1 is {glue:text}`mlp_rel_gap:.3f`. Verdict: **{glue:text}`verdict_4`**. Single-vector Lanczos
#    sees one direction of each eigenspace and returns an exactly repeated eigenvalue once, so it cannot show a
#    multiplicity: what is tested is whether the top two Ritz values are separated. A repeated top eigenvalue is
#    also what undeflated power iteration reports for any matrix ({doc}`validation`).
# 5. **"Trace grows with parameter dimension."** Test: a claim about architectures in general, so a test over
#    the architectures: the exact permutation test of the Spearman rank correlation between D and the mean tr(H)
#    at 5 % (two-sided), at matched training losses. ρ = {glue:text}`rank_corr_ci` (the interval, a stratified
#    bootstrap over seeds, says only how reliably these {glue:text}`num_architectures` means are ordered),
#    permutation p = {glue:text}`rank_corr_p:.3g`; the smallest p any ordering of {glue:text}`num_architectures`
#    architectures can give is {glue:text}`rank_corr_min_p:.3g`, so with four the claim cannot be tested at 5 %. tr(H): MLP {glue:text}`trace_mlp:.3g` (D =
#    {glue:text}`dim_mlp`), ResNet-18 {glue:text}`trace_resnet:.3g` (D = {glue:text}`dim_resnet`), no skips
#    {glue:text}`trace_noskip:.3g` (D = {glue:text}`dim_noskip`), Transformer {glue:text}`trace_transformer:.3g`
#    (D = {glue:text}`dim_transformer`). Verdict: **{glue:text}`verdict_5`**. Per parameter, the largest mean
#    tr(H)/D of the four is {glue:text}`trace_d_spread:.3g` times the smallest.
# 6. **"Barriers are moderate: distinct but nearby basins for small models."** Test: for every architecture,
#    distinct basins: the mean relative barrier (barrier over the mean loss of the two end points) above
#    {glue:text}`relative_barrier:g` (the loss on the line at least doubles over the interpolation of the end
#    points: a barrier counts only against the loss of the networks it joins); nearby: the mean peak loss on the
#    line below ln 10 = {glue:text}`ln_classes:.2f`, the loss of a uniform prediction. The pairs of n seeds share
#    networks, so the intervals come from a bootstrap over seeds; below 10 seeds there is no such interval and the
#    barriers are reported descriptively. Raw barriers range from {glue:text}`barrier_min:.3g` to
#    {glue:text}`barrier_max:.3g`; mean barrier (relative barrier, peak loss): MLP {glue:text}`barrier_mlp:.3g`
#    ({glue:text}`rel_barrier_mlp:.3g`, {glue:text}`peak_loss_mlp:.3g`; after alignment
#    {glue:text}`barrier_mlp_aligned:.3g`), ResNet-18 {glue:text}`barrier_resnet:.3g`
#    ({glue:text}`rel_barrier_resnet:.3g`, {glue:text}`peak_loss_resnet:.3g`), no skips
#    {glue:text}`barrier_noskip:.3g` ({glue:text}`rel_barrier_noskip:.3g`, {glue:text}`peak_loss_noskip:.3g`),
#    Transformer {glue:text}`barrier_transformer:.3g` ({glue:text}`rel_barrier_transformer:.3g`,
#    {glue:text}`peak_loss_transformer:.3g`). Verdict: **{glue:text}`verdict_6`**.
#
# Outliers (Papyan: C = 10 for 10 classes): the largest-ratio criterion (a ratio λᵢ/λᵢ₊₁ ≥ 2 among the top
# {glue:text}`k`) finds {glue:text}`outliers_mlp:.1f` (MLP), {glue:text}`outliers_resnet:.1f` (ResNet-18),
# {glue:text}`outliers_noskip:.1f` (no skips) and {glue:text}`outliers_transformer:.1f` (Transformer) outliers
# on average; the largest consecutive ratio among the top {glue:text}`k` is at i = 10 in
# {glue:text}`gap_at_c` of {glue:text}`num_runs` networks (0 means the top eigenvalues decay without a
# clear break at C, contrary to the picture of C separated outliers). The entropy
# effective ranks are {glue:text}`erank_mlp:.3g`, {glue:text}`erank_resnet:.3g`, {glue:text}`erank_noskip:.3g` and
# {glue:text}`erank_transformer:.3g`.
#
# **Unequal training losses.** With its usual recipe each architecture stops at a different training loss: the
# MLP at {glue:text}`train_loss_mlp_min:.0e`–{glue:text}`train_loss_mlp_max:.0e` (it memorises the training set),
# the Transformer at {glue:text}`train_loss_transformer_min:.3f`–{glue:text}`train_loss_transformer_max:.3f`,
# ResNet-18 at {glue:text}`train_loss_resnet_min:.3f`–{glue:text}`train_loss_resnet_max:.3f` and the twin at
# {glue:text}`train_loss_noskip_min:.2f`–{glue:text}`train_loss_noskip_max:.2f`. Cross-entropy curvature shrinks
# with the loss: the MLP's mean λmax is {glue:text}`lmax_mlp:.3g` and its normalised sharpness
# {glue:text}`ns_mlp:.3g`, against {glue:text}`lmax_resnet:.3g` and {glue:text}`ns_resnet:.3g` for ResNet-18,
# {glue:text}`lmax_noskip:.3g` and {glue:text}`ns_noskip:.3g` without skips, {glue:text}`lmax_transformer:.3g`
# and {glue:text}`ns_transformer:.3g` for the Transformer. The MLP's ruggedness is {glue:text}`rugged_mlp:.3f` ±
# {glue:text}`rugged_mlp_std:.3f`; when gradient and curvature are near 0 the quadratic model q is flat, so
# f − q = f − f(0) and R = TV(f)/TV(f) = 1: R then says "the local quadratic model explains none of the slice",
# not "the slice is bumpy". The count of local minima, the direct measure of bumps, is at most
# {glue:text}`minima_max:.2g` per slice on average for any architecture. This is why a comparison between
# architectures is not testable here when their training losses are not matched; training every architecture to
# a common training loss (as RQ1 does for batch sizes) would remove this confound.
#
# **Limits of this chapter.** {glue:text}`num_seeds` seeds per architecture, one data set, one recipe per
# architecture (the architectures differ in optimiser too: Adam for the MLP, SGD for the ResNets, AdamW for the Transformer, so
# "architecture" here means architecture with its usual recipe); curvature on a {glue:text}`hessian_samples`-sample
# subset of the training set; slices along one random direction per seed. Training the
# {glue:text}`num_runs` networks took {glue:text}`training_minutes:.0f` minutes of compute when they were trained
# (sum of the stored wall times); this execution of the chapter took {glue:text}`total_minutes:.1f` minutes,
# reading stored runs and cached measurements back where they existed:

# %% tags=["hide-input"]
results_table(timings_frame.to_frame(), results, "timings", "Seconds per step of this execution of the chapter.",
              index=True)  # fmt: skip
