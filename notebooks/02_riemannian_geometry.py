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
# # 02 · The geometry of warping
#
# A warp layer reparameterises the learner: parameters θ behave like native parameters γ = Ω(θ). Plain gradient
# descent on θ is then, to first order, *Riemannian* gradient descent on γ under the metric G⁻¹ = JJᵀ. We draw that
# metric, check the first-order claim numerically, and meta-learn a warp whose geometry solves a family of mountains.

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast", "gpu", "full"
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True
META_ITERATIONS = None  # int ≥ 1 or None: None takes the SIZE's default (an override for quick checks)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import warpkit
from warpkit.engine import geometry as geo
from warpkit.experiments import mountains
from warpkit.kit.notebook import check_size
from warpkit.viz import explorers as ex
from warpkit.viz import geometry as draw
from warpkit.viz.style import tidy_axes

check_size(SIZE, ("fast", "gpu", "full"))
warpkit.seed_everything(SEED)
device = warpkit.pick_device(DEVICE)  # everything here is 2-D: it runs on the CPU whatever DEVICE says
torch.set_num_threads(1)  # tiny problems: extra threads only add overhead
CONFIG = {  # fast: the lesson in about two minutes; full: more meta-training and more held-out surfaces
    "fast": dict(meta_iterations=30, meta_batch=10, warp_lr=3e-3, replay_chunk_size=25, replay_epochs=1,
                 snapshot_every=5, held_out=20),
    "gpu": dict(meta_iterations=50, meta_batch=10, warp_lr=3e-3, replay_chunk_size=25, replay_epochs=1,
                snapshot_every=5, held_out=30),  # runs on the CPU whatever DEVICE says (2-D problems)
    "full": dict(meta_iterations=100, meta_batch=20, warp_lr=3e-3, replay_chunk_size=50, replay_epochs=1,
                 snapshot_every=10, held_out=50),
}[SIZE]
if META_ITERATIONS is not None:
    CONFIG["meta_iterations"] = META_ITERATIONS
warpkit.record("seed", SEED)

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
fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.0), layout="constrained")
for row, (name, warp) in enumerate([("linear warp Ω(θ) = Aθ", linear), ("residual MLP warp Ω(θ) = θ + g(θ)", mlp)]):
    ax = axes[row, 0]
    draw.draw_warped_grid(ax, warp, extent, num_lines=13)
    draw.draw_metric_ellipses(ax, warp, extent, num=7, scale=0.25)
    tidy_axes(ax, (-4, 4, -4, 4), f"{name}:\nwarped grid + ellipses of G⁻¹", "γ₁", "γ₂")
    draw.draw_loss_contours(axes[row, 1], bowl, extent, levels=levels)
    draw.draw_warped_grid(axes[row, 1], warp, extent, num_lines=13)
    tidy_axes(axes[row, 1], extent, "loss in native coordinates L(γ)", "γ₁", "γ₂")
    draw.draw_loss_contours(axes[row, 2], bowl, extent, warp=warp, levels=levels)
    draw.draw_warped_grid(axes[row, 2], None, extent, num_lines=13)
    tidy_axes(axes[row, 2], extent, "the same loss in warped coordinates L(Ω(θ))", "θ₁", "θ₂")
warpkit.save_figure(fig, "02_metric_pictures", SAVE_FIGS)

# %% [markdown]
# **What to notice.** Left: every cell of the warped grid is the image of a square θ-cell, and each ellipse fits
# its cell: the ellipses *are* the local linear picture of the grid. The linear warp stretches every cell the same
# way; the MLP warp stretches some regions and squeezes others. Middle and right: the same bowl drawn over native γ
# and over the learner's own θ. Where the warp stretches, the bowl looks narrower in θ: the learner sees a
# differently shaped problem, and its gradient steps differ accordingly.
#
# **Play with it.** The warp explorer moves a four-number warp (stretch, its direction, shear, a twist) and redraws
# the grid, the ellipses and a 25-step descent path in both coordinate systems. Try to make the red path go straight
# down the valley: stretch along it (rotation ≈ 0.6). Under papermill the same drawing function shows four
# settings side by side.

# %%
warp_scene = ex.WarpScene()
warp_settings = [dict(strength=1.0), dict(strength=2.5, rotation=0.6), dict(strength=1.5, rotation=-0.97),
                 dict(strength=2.5, rotation=0.6, nonlinearity=1.5)]
if INTERACTIVE:
    warp_explorer = ex.WarpExplorer(warp_scene)
    display(warp_explorer)
else:
    fig, drawn = ex.warp_explorer_small_multiples(warp_settings, warp_scene, panel_size=2.7)
    warpkit.save_figure(fig, "02_warp_explorer", SAVE_FIGS)
    print("final loss after 25 steps:", [f"{d['final_loss_warped']:.2e}" for d in drawn])

# %% [markdown]
# Stretching *along* the valley (second column) speeds up the slow direction and lands far lower than plain GD
# (first column, the identity warp); stretching *across* it (third) makes the zig-zag worse; the twist (fourth)
# makes the metric change from place to place and bends the path. A warp is a preconditioner, and a bad one hurts:
# this is why WarpGrad *meta-learns* it.
#
# ## b. Gradient descent in warped coordinates traces Riemannian gradient descent
#
# Three ways to walk downhill from the same native point γ₀ (θ₀ = Ω⁻¹(γ₀)):
#
# * plain GD: γ ← γ − α∇L(γ);
# * warped GD: θ ← θ − α∇_θ L(Ω(θ)), seen in native coordinates as γ_k = Ω(θ_k);
# * Riemannian GD: γ ← γ − α G⁻¹(γ)∇L(γ), with G⁻¹ = JJᵀ at θ = Ω⁻¹(γ) (found by Newton's method).
#
# Flennerhag et al., 2020, Section 2: Ω(θ − αJᵀ∇L) = γ − αG⁻¹∇L + O(α²). So the warped and Riemannian paths agree to first order; each
# step adds an O(α²) discrepancy, and over a fixed number of steps the gap shrinks like α².

# %%
alpha, num_steps, gamma0 = 0.05, 30, torch.tensor([-2.0, 1.6])
theta0 = geo.invert_warp(mlp, gamma0)
plain = geo.gradient_descent_path(bowl, gamma0, alpha, num_steps)
_, warped = geo.warped_descent_path(bowl, mlp, theta0, alpha, num_steps)
riemannian = geo.riemannian_descent_path(bowl, mlp, gamma0, alpha, num_steps, theta0=theta0)
riemann_gap = warpkit.record("riemann_path_max_gap", geo.path_gap(warped, riemannian))
alphas = np.geomspace(0.0025, 0.08, 6)
gaps = []
for a in alphas:  # 5 steps each: the gap is a sum of five one-step O(α²) remainders
    _, w = geo.warped_descent_path(bowl, mlp, theta0, float(a), 5)
    gaps.append(geo.path_gap(w, geo.riemannian_descent_path(bowl, mlp, gamma0, float(a), 5, theta0=theta0)))
slope = warpkit.record("riemann_gap_slope", float(np.polyfit(np.log(alphas), np.log(gaps), 1)[0]))

# %%
fig, (ax_paths, ax_gap) = plt.subplots(1, 2, figsize=(9.0, 4.2), layout="constrained")
draw.draw_loss_contours(ax_paths, bowl, extent, levels=levels)
draw.draw_warped_grid(ax_paths, mlp, extent, num_lines=13)
draw.draw_path(ax_paths, plain, "native", label="plain GD")
draw.draw_path(ax_paths, warped, "warped", label="warped GD, γ = Ω(θ)")
draw.draw_path(ax_paths, riemannian, "riemannian", label="Riemannian GD", linestyle="--", marker="x")
tidy_axes(ax_paths, extent, f"α = {alpha}, {num_steps} steps: max gap {riemann_gap:.3f}", "γ₁", "γ₂")
ax_paths.legend(fontsize=7, loc="lower right")
ax_gap.loglog(alphas, gaps, "o-", color="#d62728", label="max gap, warped vs Riemannian (5 steps)")
ax_gap.loglog(alphas, gaps[-1] * (alphas / alphas[-1]) ** 2, "k:", label="reference slope 2 (α²)")
ax_gap.set_xlabel("step size α")
ax_gap.set_title(f"the gap shrinks as α^{slope:.2f}", fontsize=10)
ax_gap.legend(fontsize=7)
warpkit.save_figure(fig, "02_riemannian_paths", SAVE_FIGS)

# %% [markdown]
# **What to notice.** The red (warped) and black dashed (Riemannian) paths lie on top of each other and both bend
# away from plain GD (blue): the MLP warp's metric turns the descent direction. On the right, the gap between them
# falls with slope ≈ 2 on log-log axes: it is a second-order effect, exactly as the expansion says.
#
# **Play with it.** The descent explorer moves the step size and the start point; its right panel shows the loss of
# each path per step. Large α opens the gap between warped and Riemannian paths; small α closes it.

# %%
descent_scene = ex.DescentScene(warp=mlp, loss=bowl, steps=20)
if INTERACTIVE:
    descent_explorer = ex.DescentExplorer(descent_scene, lr=0.1)
    display(descent_explorer)
else:
    fig, drawn = ex.descent_explorer_small_multiples([dict(lr=0.02), dict(lr=0.1), dict(lr=0.2)], descent_scene,
                                                     panel_size=2.9)
    warpkit.save_figure(fig, "02_descent_explorer", SAVE_FIGS)
    print("max gap warped vs Riemannian:", [f"{d['gap']:.1e}" for d in drawn])

# %% [markdown]
# ## c. The mountains: meta-learning a geometry (the paper's Appendix D)
#
# A family of 2-D loss surfaces: MATLAB's `peaks` with random amplitudes (each term × U(0.5, 1.5)) and a random
# shift (U(−1, 1)²), scaled by 1/4 and offset so that each surface's minimum on [−3, 3]² is 0
# (`mountains.MountainFamily`, whose docstring gives the reasons). The paper's printed formula has a typo (x₁ twice in the
# third term); we use the corrected `peaks`. Several valleys compete, and where the deepest one lies changes from
# surface to surface.

# %%
family = mountains.MountainFamily()
train_surfaces = family.sample(200, seed=SEED + 1)
test_surfaces = family.sample(CONFIG["held_out"], seed=SEED + 1000)
fig, axes = plt.subplots(1, 4, figsize=(11, 3.0), layout="constrained")
for ax, surface in zip(axes, train_surfaces):
    draw.draw_loss_contours(ax, surface, family.extent, levels=16)
    ax.plot(*surface.minimiser.numpy(), "w*", markersize=10, markeredgecolor="k")
    tidy_axes(ax, family.extent, repr(surface).replace("MountainSurface(", "").replace("), ", ")\n")[:-1])
warpkit.save_figure(fig, "02_mountain_family", SAVE_FIGS)

# %% [markdown]
# **Meta-training.** The learner's task parameters are one point θ ∈ R²; its warp is Ω(θ) = θ + g(θ) with g a
# 2-layer tanh MLP (hidden 30) whose last layer starts at zero, so Ω starts as the identity and covers the whole
# domain (`mountains.WarpedPoint`). A surface is a warpkit `Task` whose loss is the surface at Ω(θ) (`mountains.SurfaceTask`).
# WarpGrad's offline algorithm (`warpkit.engine.meta.MetaLearner`, objective Eq. 11 "exact") learns φ, and Reptile learns
# θ₀ (Warp-Reptile). The baseline gets the same initialisation learner on the same meta-batches, without a warp
# (Reptile). Both adapt 100 steps of SGD at α = 0.1, in training and at test.

# %%
training = mountains.MountainMetaTraining(
    train_surfaces, meta_batch=CONFIG["meta_batch"], warp_lr=CONFIG["warp_lr"], seed=SEED,
    replay_chunk_size=CONFIG["replay_chunk_size"], replay_epochs=CONFIG["replay_epochs"],
    snapshot_every=CONFIG["snapshot_every"])
training.run(CONFIG["meta_iterations"], show_progress=SHOW_PROGRESS)
result = training.evaluate(test_surfaces)
loss_warp = warpkit.record("mountain_final_loss_warp", result["warp_final"].mean().item())
loss_sgd = warpkit.record("mountain_final_loss_sgd", result["sgd_final"].mean().item())
warpkit.record("mountain_num_held_out", len(test_surfaces))
warpkit.record("mountain_warp_wins_fraction", (result["warp_final"] < result["sgd_final"] - 1e-3).double().mean().item())
same_start = warpkit.record("mountain_final_loss_sgd_from_warp_start", result["same_start_final"].mean().item())
print(f"mean final loss over {len(test_surfaces)} held-out surfaces: WarpGrad {loss_warp:.4f}, SGD {loss_sgd:.4f}, "
      f"SGD from WarpGrad's start Ω(θ₀) {same_start:.4f}")

# %%
fig, axes = plt.subplots(2, 4, figsize=(11, 5.8), layout="constrained")
for i, ax in enumerate(axes.flat):
    draw.draw_loss_contours(ax, test_surfaces[i], family.extent, levels=16)
    draw.draw_path(ax, result["sgd_paths"][i], "native", label="SGD", markevery=10)
    draw.draw_path(ax, result["warp_paths"][i], "warped", label="WarpGrad", markevery=10)
    tidy_axes(ax, family.extent, f"held-out surface {i}, final loss:\nWarpGrad {max(result['warp_final'][i], 0):.2f}, "
              f"SGD {max(result['sgd_final'][i], 0):.2f}")
axes[0, 0].legend(fontsize=7, loc="lower right")
warpkit.save_figure(fig, "02_mountain_paths", SAVE_FIGS)

# %% [markdown]
# **What to notice.** Each panel is a surface neither learner trained on; dots every 10 steps. SGD (blue) starts
# from its own meta-learned initialisation and rolls into whichever valley is nearest. WarpGrad's path (red) is a
# plain SGD path too, but in warped coordinates: it starts somewhere else (its θ₀ was learned *with* the warp) and
# its steps are bent and stretched by the warp.
#
# **Which part is the warp, which the start?** Reptile moves θ₀ towards the average end point. Without a warp, the
# end points split between valleys and their average sits between them; with the warp the runs agree more, and the
# average lands in the deep valley's basin. The recorded `mountain_final_loss_sgd_from_warp_start` (plain SGD from
# WarpGrad's own start Ω(θ₀)) separates the two: the closer it is to WarpGrad's loss, the more of the win is the
# jointly learned start rather than the geometry along the way. At the fast size (SEED = 0) plain SGD from Ω(θ₀) does
# *as well as or better than* WarpGrad: here, what the warp bought is a start that Reptile could learn, not a better
# path from a given start. Be suspicious of any "warp wins" figure that does not show this control.
#
# **The geometry it learned**, and how it formed: the warped grid and the metric ellipses of the learned Ω at
# snapshots during meta-training, on one held-out surface (the explorer has a slider over the snapshots).

# %%
mountain_scene = ex.MountainScene(test_surfaces, training.snapshots, lr=training.lr, steps=training.steps)
if INTERACTIVE:
    mountain_explorer = ex.MountainExplorer(mountain_scene)
    display(mountain_explorer)
else:
    picks = np.unique(np.linspace(0, len(training.snapshots) - 1, 4).round().astype(int)).tolist()
    fig, _ = ex.mountain_small_multiples(mountain_scene, picks, surface=0, panel_size=3.0)
    warpkit.save_figure(fig, "02_mountain_geometry", SAVE_FIGS)
fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
mean_final = mountain_scene.final_loss.mean(axis=1)  # (snapshots, [warp, sgd])
ax.plot(mountain_scene.iterations, mean_final[:, 0], "o-", color="#d62728", label="WarpGrad")
ax.plot(mountain_scene.iterations, mean_final[:, 1], "o-", color="#1f5fbf", label="SGD (Reptile init)")
ax.set(xlabel="meta-iteration", ylabel="mean final loss, held-out", yscale="log")
ax.legend()
warpkit.save_figure(fig, "02_mountain_meta_training", SAVE_FIGS)

# %% [markdown]
# **What to notice.** At meta-iteration 0 the warp is the identity: the grid is square and the ellipses are
# circles, so WarpGrad is plain SGD. As meta-training proceeds the grid stretches, bunches up along a band and the
# ellipses turn: the learned Ω squeezes a whole strip of θ-space into a thin strip of γ-space and no longer covers
# the whole domain. The curve shows the held-out final loss falling as this geometry forms; the baseline, which can
# only move its starting point, improves less.
#
# ## Responsiveness
#
# Each explorer redraws on a slider move; we time a few moves of each (median, milliseconds, drawing + PNG).

# %%
explorers = {"warp": (ex.WarpExplorer(warp_scene), "strength", [1.5, 2.0, 2.5]),
             "descent": (ex.DescentExplorer(descent_scene), "lr", [0.05, 0.1, 0.15]),
             "mountain": (ex.MountainExplorer(mountain_scene), "snapshot", list(range(len(training.snapshots))))}
for name, (explorer, control, values) in explorers.items():
    warpkit.record(f"redraw_ms_{name}_explorer", round(explorer.measure_redraw_ms(control, values), 1))
