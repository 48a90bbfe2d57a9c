# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · The geometry of warping
#
# A warp layer reparameterises the learner: parameters θ behave like native parameters γ = Ω(θ). Plain gradient
# descent on θ is then, to first order, *Riemannian* gradient descent on γ under the metric G⁻¹ = JJᵀ. We draw that
# metric, check the first-order claim numerically, and meta-learn a warp whose geometry solves a family of mountains
# (the paper's Appendix D), with the meta-learning vocabulary and WarpGrad's Algorithm 2 of lesson 02.

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast", "gpu", "full"
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True
META_ITERATIONS = None  # int ≥ 1 or None: None takes the SIZE's meta-iterations (an override for quick checks, both trainings)

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import warpkit
from warpkit.engine import geometry as geo
from warpkit.engine.replay import last_replay
from warpkit.experiments import mountains
from warpkit.kit.notebook import check_size
from warpkit.viz import explorers as ex
from warpkit.viz import geometry as draw
from warpkit.viz import mountains as figures

# %%
config = mountains.SIZES[check_size(SIZE, tuple(mountains.SIZES))]
if META_ITERATIONS is not None:
    config = replace(config, meta_iterations=META_ITERATIONS, random_start_iterations=META_ITERATIONS)
warpkit.defer_records()  # recorded values are shown once, as a table, at the end of the lesson
warpkit.record("seed", warpkit.seed_everything(SEED))
device = warpkit.pick_device(DEVICE)  # everything here is 2-D: it runs on the CPU whatever DEVICE says
torch.set_num_threads(1)  # tiny problems: extra threads only add overhead

# %% [markdown]
# ## a. What a warp does to the plane: the metric, in a picture
#
# Take a warp Ω: θ ↦ γ of the plane with Jacobian J(θ) = D_θΩ. A gradient step on θ of the warped loss L(Ω(θ)) is
# Δθ = Jᵀ∇L(γ), which moves γ by JΔθ = JJᵀ∇L(γ) (`warpkit.engine.geometry`, module docstring). So the warp acts on native
# coordinates through
#
# $$G^{-1}(\gamma) = J J^\top, \qquad J = U\,\mathrm{diag}(s)\,V^\top \;\Rightarrow\; G^{-1} = U\,\mathrm{diag}(s^2)\,U^\top .$$
#
# We draw G⁻¹ as an ellipse at each point: the image under J of a small circle of θ-steps, with axes U and
# semi-axes s. A long axis is a direction in which a gradient step travels far. For a linear warp Ω(θ) = Aθ the
# ellipses are all the same (G⁻¹ = AAᵀ); for a residual MLP warp Ω(θ) = θ + g(θ) they change from point to point.
# First the numbers, on a warp we can do by hand:

# %%
A = torch.tensor([[1.6, 0.6], [-0.3, 0.7]])
linear = geo.linear_warp(A)
mlp = geo.random_residual_warp(seed=5, scale=0.9)  # a fixed example warp, not a learned one
points = geo.regular_grid((-2.5, 2.5, -2.5, 2.5), 9).reshape(-1, 2)
metric_error = (geo.inverse_metric(linear, points) - A @ A.T).abs().max().item()
print(f"linear warp: max |G⁻¹ − AAᵀ| over 81 points = {metric_error:.1e}")
ellipse_error = (geo.metric_ellipses(linear, points).lengths[0] - torch.linalg.svdvals(A)).abs().max().item()
print(f"linear warp: ellipse semi-axes − singular values of A = {ellipse_error:.1e}")
min_det = torch.linalg.det(geo.jacobian(mlp, geo.regular_grid((-2.5, 2.5, -2.5, 2.5), 61).reshape(-1, 2))).min()
assert min_det > 0, "this example warp folds the plane: pick another seed or a smaller scale"
print(f"MLP warp: smallest det J on a 61×61 grid = {min_det:.2f} > 0, so it does not fold the plane")

# %%
bowl = mountains.QuadraticBowl(condition=6.0, angle=0.6, centre=(0.5, 0.3))
extent = (-2.5, 2.5, -2.5, 2.5)
levels = draw.loss_levels(bowl, extent, num=14)
fig, axes = plt.subplots(2, 3, figsize=(11.5, 7.0), layout="constrained")
warps = [("linear warp Ω(θ) = Aθ", linear), ("residual MLP warp Ω(θ) = θ + g(θ)", mlp)]
figures.draw_metric_pictures(fig, axes, warps, bowl, extent, levels)
warpkit.show_figure(fig, "03_metric_pictures", SAVE_FIGS)

# %% [markdown]
# **What to notice.** Left: every cell of the warped grid is the image of a square θ-cell, and each ellipse fits
# its cell: the ellipses *are* the local linear picture of the grid. The linear warp stretches every cell the same
# way; the MLP warp stretches some regions and squeezes others. Middle and right: the same bowl drawn over native γ
# and over the learner's own θ, with its minimum (white star) at γ* and at θ* = Ω⁻¹(γ*). Where the warp stretches,
# the bowl looks narrower in θ: the learner sees a differently shaped problem, and its gradient steps differ
# accordingly.
#
# **Play with it.** The warp explorer moves a four-number warp (stretch, its direction, shear, a twist) and redraws
# the grid, the ellipses and a 25-step descent path in both coordinate systems (ring: start, star: end). Set
# `INTERACTIVE = True` in the parameters cell to get the sliders; try to make the red path go straight down the
# valley by stretching along it (rotation ≈ 0.6). Executed headlessly, the same drawing function shows four settings
# side by side.

# %%
warp_scene = ex.WarpScene()
warp_settings = [dict(strength=1.0), dict(strength=2.5, rotation=0.6), dict(strength=1.5, rotation=-0.97),
                 dict(strength=2.5, rotation=0.6, nonlinearity=1.5)]
if INTERACTIVE:
    display(ex.WarpExplorer(warp_scene))
else:
    fig, drawn = ex.warp_explorer_small_multiples(warp_settings, warp_scene, panel_size=2.9)
    warpkit.show_figure(fig, "03_warp_explorer", SAVE_FIGS)
    finals = [d["final_loss_warped"] for d in drawn]
    print(f"loss after 25 steps: identity {finals[0]:.1e}, stretched along the valley {finals[1]:.1e}, "
          f"across it {finals[2]:.1e}, stretched and twisted {finals[3]:.1e}")

# %% [markdown]
# Stretching *along* the valley (second column) speeds up the slow direction and ends lower than plain GD (first
# column, the identity warp); stretching *across* it (third) makes the zig-zag worse; the twist (fourth) makes the
# metric change from place to place and bends the path (the printed losses; the scene is deterministic). A warp is
# a preconditioner, and a bad one hurts: this is why WarpGrad *meta-learns* it.
#
# ## b. Gradient descent in warped coordinates traces Riemannian gradient descent
#
# Three ways to walk downhill from the same native point γ₀ (θ₀ = Ω⁻¹(γ₀)):
#
# * plain GD: γ ← γ − α∇L(γ);
# * warped GD: θ ← θ − α∇_θ L(Ω(θ)), seen in native coordinates as γ_k = Ω(θ_k);
# * Riemannian GD: γ ← γ − α G⁻¹(γ)∇L(γ), with G⁻¹ = JJᵀ at θ = Ω⁻¹(γ) (found by Newton's method).
#
# Flennerhag et al., 2020, Section 2: Ω(θ − αJᵀ∇L) = γ − αG⁻¹∇L + O(α²). So the warped and Riemannian paths agree
# to first order; each step adds an O(α²) discrepancy, and over a fixed number of steps the gap shrinks like α².

# %%
alpha, num_steps, gamma0 = 0.05, 30, torch.tensor([-2.0, 1.6])
theta0 = geo.invert_warp(mlp, gamma0)
paths = {"plain": geo.gradient_descent_path(bowl, gamma0, alpha, num_steps),
         "warped": geo.warped_descent_path(bowl, mlp, theta0, alpha, num_steps)[1],
         "riemannian": geo.riemannian_descent_path(bowl, mlp, gamma0, alpha, num_steps, theta0=theta0)}
riemann_gap = warpkit.record("riemann_path_max_gap", geo.path_gap(paths["warped"], paths["riemannian"]))
plain_gap = warpkit.record("plain_vs_warped_path_max_gap", geo.path_gap(paths["warped"], paths["plain"]))
alphas = np.geomspace(0.0025, 0.08, 6)
gaps = []
for a in alphas:  # 5 steps each: the gap is a sum of five one-step O(α²) remainders
    _, w = geo.warped_descent_path(bowl, mlp, theta0, float(a), 5)
    gaps.append(geo.path_gap(w, geo.riemannian_descent_path(bowl, mlp, gamma0, float(a), 5, theta0=theta0)))
slope = warpkit.record("riemann_gap_slope", float(np.polyfit(np.log(alphas), np.log(gaps), 1)[0]))

# %%
fig, (ax_paths, ax_gap) = plt.subplots(1, 2, figsize=(10.0, 4.4), layout="constrained")
figures.draw_riemannian_paths(ax_paths, ax_gap, bowl, mlp, extent, levels, paths, alphas, gaps, slope)
ax_paths.set_title(f"α = {alpha}, {num_steps} steps from one native start", fontsize=10)
warpkit.show_figure(fig, "03_riemannian_paths", SAVE_FIGS)
print(f"largest distance from the warped path: Riemannian GD {riemann_gap:.3f}, plain GD {plain_gap:.3f}")

# %% [markdown]
# **What to notice.** The red (warped) and black dashed (Riemannian) paths run close together: the printed line
# gives the largest step-for-step distance between them and, for scale, between the warped path and plain GD
# (blue), which the warp sends along another route at another speed. On the right, the gap between warped and Riemannian paths falls with slope ≈ 2 on log-log axes: it is a
# second-order effect, exactly as the expansion says.
#
# **Play with it.** The descent explorer (`INTERACTIVE = True`) moves the step size and the start point; its lower
# panel shows the loss of each path per step. Large α opens the gap between warped and Riemannian paths; small α
# closes it. Headless, three step sizes are drawn side by side.

# %%
descent_scene = ex.DescentScene(warp=mlp, loss=bowl, steps=20)
if INTERACTIVE:
    display(ex.DescentExplorer(descent_scene, lr=0.1))
else:
    fig, drawn = ex.descent_explorer_small_multiples([dict(lr=0.02), dict(lr=0.1), dict(lr=0.2)], descent_scene,
                                                     panel_size=3.1)
    warpkit.show_figure(fig, "03_descent_explorer", SAVE_FIGS)

# %% [markdown]
# ## c. The mountains: meta-learning a geometry (the paper's Appendix D)
#
# A family of 2-D loss surfaces: MATLAB's `peaks` with random amplitudes (each term × U(0.5, 1.5)) and a random
# shift (U(−1, 1)²), scaled by 1/4 and offset so that each surface's minimum on [−3, 3]² is 0
# (`mountains.MountainFamily`, whose docstring gives the reasons). The paper's printed formula has a typo (x₁ twice
# in the third term); we use the corrected `peaks`. Several valleys compete, and where the deepest one lies changes
# from surface to surface. Each surface is a task (lesson 02): its parameters are one point, its loss the surface.

# %%
family = mountains.MountainFamily()
train_surfaces = family.sample(200, seed=SEED + 1)
test_surfaces = family.sample(config.held_out, seed=SEED + 1000)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.3), layout="constrained")
figures.draw_mountain_family(fig, axes, train_surfaces[:4], family.extent)
warpkit.show_figure(fig, "03_mountain_family", SAVE_FIGS)

# %% [markdown]
# **Meta-training.** The learner's task parameters are one point θ ∈ R²; its warp is Ω(θ) = θ + g(θ) with g a
# 2-layer tanh MLP (hidden 30) whose last layer starts at zero, so Ω starts as the identity and covers the whole
# domain (`mountains.WarpedPoint`). A surface is a warpkit `Task` whose loss is the surface at Ω(θ)
# (`mountains.SurfaceTask`). WarpGrad's offline algorithm (Algorithm 2, objective Eq. 11 "exact", lesson 02)
# learns φ, and Reptile learns θ₀ (Warp-Reptile). The baseline gets the same initialisation learner on the same
# meta-batches, without a warp (Reptile). Both adapt 100 steps of SGD at α = 0.1, in training and at test.

# %%
training = mountains.MountainMetaTraining(
    train_surfaces, meta_batch=config.meta_batch, warp_lr=config.warp_lr, seed=SEED,
    replay_chunk_size=config.replay_chunk_size, replay_epochs=config.replay_epochs,
    snapshot_every=config.snapshot_every, replay=config.replay)
training.run(config.meta_iterations, show_progress=SHOW_PROGRESS)
warpkit.record("replay", last_replay())
result = training.evaluate(test_surfaces)
loss_warp = warpkit.record("mountain_final_loss_warp", result["warp_final"].mean().item())
loss_sgd = warpkit.record("mountain_final_loss_sgd", result["sgd_final"].mean().item())
same_start = warpkit.record("mountain_final_loss_sgd_from_warp_start", result["same_start_final"].mean().item())
warpkit.record("mountain_num_held_out", len(test_surfaces))
wins = warpkit.record("mountain_warp_wins_fraction",
                      (result["warp_final"] < result["sgd_final"] - 1e-3).double().mean().item())

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 7.4), layout="constrained")
figures.draw_mountain_paths(axes.flat, test_surfaces, family.extent, result)
draw.path_legend(axes[0, 0], where=fig, loc="outside lower center", ncols=5, fontsize=8)
warpkit.show_figure(fig, "03_mountain_paths", SAVE_FIGS)
print(f"mean final loss over {len(test_surfaces)} held-out surfaces: WarpGrad {loss_warp:.3g}, SGD {loss_sgd:.3g}, "
      f"control (plain SGD from WarpGrad's start Ω(θ₀)) {same_start:.3g}")

# %% [markdown]
# **What to notice.** Each panel is a surface neither learner trained on; dots every 20 steps. Where the green
# dashed control runs along the thick red path, plain SGD from WarpGrad's start finds the same valley. SGD (blue) starts
# from its own meta-learned initialisation and rolls into whichever valley is nearest. WarpGrad's path (red) is a
# plain SGD path too, but in warped coordinates: it starts somewhere else (its θ₀ was learned *with* the warp) and
# its steps are bent and stretched by the warp.
#
# **Which part is the warp, which the start?** Reptile moves θ₀ towards the average end point, so a warp that makes
# the runs agree also moves the learned start. The control (green, dashed) is plain SGD, no warp, from WarpGrad's
# own native start Ω(θ₀): the closer its loss is to WarpGrad's, the more of the win is the start rather than the
# geometry along the way. For this run:

# %%
def compare(a, b, close=0.2, floor=1e-4):
    """'about the same as' when within ``close`` (relative) or both below ``floor`` (both at the minimum),
    else 'lower than' / 'higher than'."""
    if abs(a - b) <= close * max(abs(a), abs(b)) or max(a, b) < floor:
        return "about the same as"
    return "lower than" if a < b else "higher than"


print(f"WarpGrad's mean final loss ({loss_warp:.3g}) is {compare(loss_warp, loss_sgd)} the SGD baseline's "
      f"({loss_sgd:.3g}), and the control's ({same_start:.3g}) is {compare(same_start, loss_warp)} WarpGrad's: "
      + ("most of the gain is the start, not the geometry." if same_start <= 1.2 * loss_warp else
         "the geometry adds to what the start gives."))

# %% [markdown]
# **The geometry it learned**, and how it formed: the warped grid and the metric ellipses of the learned Ω at
# snapshots during meta-training, on one held-out surface (the explorer, with `INTERACTIVE = True`, has sliders
# over the snapshots and surfaces). Below it, the held-out loss over meta-training for all three: WarpGrad, the SGD
# baseline and the control.

# %%
mountain_scene = ex.MountainScene(test_surfaces, training.snapshots, lr=training.lr, steps=training.steps)
if INTERACTIVE:
    display(ex.MountainExplorer(mountain_scene))
else:
    picks = np.unique(np.linspace(0, len(training.snapshots) - 1, 4).round().astype(int)).tolist()
    fig, _ = ex.mountain_small_multiples(mountain_scene, picks, surface=0, panel_size=3.3)
    warpkit.show_figure(fig, "03_mountain_geometry", SAVE_FIGS)
control = [training.evaluate(test_surfaces, snap)["same_start_final"].mean().item() for snap in training.snapshots]
mean_final = mountain_scene.final_loss.mean(axis=1)  # (snapshots, [warp, sgd])
fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
figures.draw_meta_training_curve(ax, mountain_scene.iterations, mean_final[:, 0], mean_final[:, 1], control,
                                 len(test_surfaces))
warpkit.show_figure(fig, "03_mountain_meta_training", SAVE_FIGS)

# %% [markdown]
# **What to notice.** At meta-iteration 0 the warp is the identity: the grid is square and the ellipses are
# circles, so WarpGrad is plain SGD. As meta-training proceeds the grid stretches and the ellipses turn. In the
# curve, where the green squares (plain SGD from WarpGrad's start) lie on or below the red line, plain SGD from
# that start does at least as well as WarpGrad: the start explains WarpGrad's loss. Green above red would be the
# geometry's own contribution.
#
# **The geometry's own effect.** Here the warp cannot help by moving the start: every surface comes with a random
# start s, and the warp is translated so that θ₀ = 0 maps to s whatever φ is (`mountains.PinnedStartPoint`: γ =
# Ω(s + θ) − Ω(s) + s, so the metric is Ω's). Only φ is meta-learned (no initialisation learner). On held-out
# surfaces, the warped learner and plain SGD start from the same random points and take the same 100 steps of the
# same size.

# %%
random_start = mountains.RandomStartTraining(train_surfaces, meta_batch=config.meta_batch, seed=SEED,
                                             replay=config.replay)
random_start.run(config.random_start_iterations, show_progress=SHOW_PROGRESS)
pinned = random_start.evaluate(test_surfaces, seed=SEED + 2000)
pinned_warp = warpkit.record("mountain_random_start_loss_warp", pinned["warp_final"].mean().item())
pinned_sgd = warpkit.record("mountain_random_start_loss_sgd", pinned["sgd_final"].mean().item())
ratio = pinned_warp / pinned_sgd
print(f"random starts, {len(test_surfaces)} held-out surfaces: warped {pinned_warp:.4f}, plain SGD {pinned_sgd:.4f} "
      f"(ratio {ratio:.2f}; {config.random_start_iterations} meta-iterations). "
      + ("The learned geometry at least halves SGD's loss." if ratio <= 0.5 else
         "The learned geometry does not halve SGD's loss from the same starts: on this toy, at this size, the "
         "geometry alone cannot show the target effect."))

# %% [markdown]
# ## Summary
#
# * A warp Ω turns gradient descent on θ into descent in native coordinates under the metric G⁻¹ = JJᵀ; we can
#   see it as a warped grid and as ellipses, and the warped path equals Riemannian GD up to O(α²) per step.
# * On the Appendix D mountains, WarpGrad meta-learns such a geometry together with a start (Warp-Reptile).
#   A control (plain SGD from WarpGrad's start) and a variant with the start pinned separate what the start
#   contributes from what the geometry contributes; the printed lines above say which dominates in this run.
#
# ## Check yourself
#
# 1. A linear warp Ω(θ) = Aθ has the same ellipse everywhere. What are its axes and semi-axes, in terms of A?
# 2. Why does the gap between warped and Riemannian GD shrink like α², and not like α?
# 3. Why is "SGD from WarpGrad's start" the right control for the claim "the learned geometry helps"? What does
#    the pinned-start variant rule out that the control does not?

# %%
warpkit.show_records()
