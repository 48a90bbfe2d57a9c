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
# # 02 · Meta-learning: from a learned initialisation to WarpGrad
#
# Lesson 01 showed that a frozen warp layer preconditions gradient descent. This lesson asks where a good warp comes
# from: it is *meta-learned*, across many related problems. We first say what meta-learning is (tasks, a task
# distribution, an inner and an outer loop, two batches per task), then compare the four initialisation
# meta-learners that WarpGrad builds on (MAML, first-order MAML, Reptile, Leap) on a toy you can see, and finally
# write WarpGrad's meta-objective (Flennerhag et al., 2020, Eq. 11 and 12) and its offline algorithm
# (Algorithm 2) from scratch in plain torch, and check our 40 lines against `warpkit.MetaLearner`.
#
# The lessons after this one use these words without defining them again.

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast", "gpu", "full"
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True

# %%
import copy

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.func import functional_call

import warpkit
from warpkit.experiments import meta_learning as meta
from warpkit.kit.notebook import check_size
from warpkit.viz import meta_learning as draw

# %%
config = meta.SIZES[check_size(SIZE, tuple(meta.SIZES))]
warpkit.defer_records()  # recorded values are shown once, as a table, at the end of the lesson
warpkit.record("seed", warpkit.seed_everything(SEED))
torch.set_num_threads(1)  # tiny problems: extra threads only add overhead
device = warpkit.pick_device(DEVICE)  # everything here is small: it runs on the CPU whatever DEVICE says

# %% [markdown]
# ## a. Tasks, a task distribution, and two loops
#
# Ordinary learning fits one problem. *Meta-learning* assumes a distribution p(τ) over **tasks**: each task τ is
# a learning problem with its own loss L^τ (here: a regression curve y = a sin(x + b), a new amplitude a and phase
# b per task; in lesson 04 an alphabet; in lesson 05 a maze goal). A learner adapts to a task by a few steps of
# gradient descent, the **inner loop**:
#
# $$\theta^\tau_{k+1} = \theta^\tau_k - \alpha\, \nabla_\theta L^\tau_{\text{task}}(\theta^\tau_k), \qquad
#   k = 0, \dots, K-1, \qquad \theta^\tau_0 = \theta_0 .$$
#
# Something about this inner loop is shared by all tasks: its starting point θ₀, or, in WarpGrad, the geometry in
# which it descends. The **outer loop** improves that shared part across many tasks drawn from p(τ), so that the
# inner loop works well on *new* tasks from the same distribution. Meta-training tasks and meta-test tasks are
# different draws; a meta-learner is only judged on the latter.
#
# **Two batches per task.** The outer loop must score an inner loop on data the inner loop did not fit, or it
# learns to overfit. So every task provides two different batches: a *task batch* for the inner step (in few-shot
# learning, the support set) and a *meta batch* on which the adapted parameters are scored (the query set). In
# warpkit a task is any object with `sample_batch(k)` (the inner loop's batch at step k) and
# `sample_meta_batches(k)` (a task batch and a meta batch, two fresh draws). Three sine tasks and their batches:

# %%
tasks = meta.sine_tasks(3, first_seed=SEED * 1000 + 1)
grid = torch.linspace(-5, 5, 200, dtype=torch.float64)
fig, axes = plt.subplots(1, 3, figsize=(10.5, 2.9), layout="constrained", sharey=True)
for ax, task in zip(axes, tasks):
    (task_x, task_y), (meta_x, meta_y) = task.sample_meta_batches(0)
    ax.plot(grid, task.amplitude * torch.sin(grid + task.phase), color="0.6", label="the task's curve")
    ax.plot(task_x, task_y, "o", color="#1f5fbf", label="task batch (inner step)")
    ax.plot(meta_x, meta_y, "^", color="#d62728", label="meta batch (scores the step)")
    ax.set(xlabel="input x", title=f"task: a = {task.amplitude:.2f}, b = {task.phase:.2f}")
axes[0].set_ylabel("target y = a sin(x + b)")
axes[2].legend(fontsize=7, loc="upper right")
warpkit.show_figure(fig, "02_sine_tasks", SAVE_FIGS)

# %% [markdown]
# ## b. Meta-learning an initialisation: MAML, FOMAML, Reptile, Leap
#
# The best-known meta-learners share the starting point θ₀ of the inner loop. Each defines a meta-objective C(θ₀)
# and steps θ₀ ← θ₀ − β ∇C(θ₀), with ∇C averaged over a meta-batch of tasks. They differ in what one task
# contributes (θ_K is the end of the task's inner loop, started at θ₀):
#
# * **MAML** (Finn et al., 2017): the meta loss after adaptation, differentiated *through* the inner loop,
#   $$\nabla C_{\text{MAML}}(\theta_0) = \Big(\frac{d\theta_K}{d\theta_0}\Big)^{\!\top} \nabla L_{\text{meta}}(\theta_K).$$
#   The Jacobian holds second derivatives, and memory grows with K.
# * **First-order MAML** (FOMAML, Finn et al., 2017): drop the Jacobian, $\nabla C \approx \nabla L_{\text{meta}}(\theta_K)$.
# * **Reptile** (Nichol et al., 2018): move θ₀ towards where the task ended, $\nabla C = \theta_0 - \theta_K$.
# * **Leap** (Flennerhag et al., 2019): shorten the inner loop's path on the loss surface. With
#   z_k = (θ_k, L(θ_k)), Δθ_k = θ_{k+1} − θ_k and ΔL_k = L(θ_{k+1}) − L(θ_k),
#   $$\nabla C_{\text{Leap}}(\theta_0) = -\sum_{k=0}^{K-1} \frac{\Delta\theta_k + \Delta L_k\, \nabla L(\theta_k)}{\lVert z_{k+1} - z_k \rVert_2}.$$
#
# All four meta-learn *where to start*. To see them, make each task a 2-D quadratic bowl (parameters θ ∈ R², one
# bowl per task, minimisers on an arc, long axes in different directions) and apply each rule from the same θ₀.

# %%
toy_tasks = meta.toy_task_family(config.toy_tasks, seed=SEED)
theta0 = torch.tensor([2.2, -1.8], dtype=torch.float64)
lr, steps, beta = config.toy_lr, config.toy_steps, config.toy_meta_lr
updates = {m: -beta * meta.mean_meta_gradient(m, toy_tasks, theta0, lr, steps) for m in meta.METHODS}
updates["Leap"] = updates["Leap"] / steps  # Leap sums K unit vectors: divide by K to compare lengths
inner_paths = [meta.inner_path(task, theta0, lr, steps) for task in toy_tasks]
paths = {m: meta.meta_train_initialisation(m, toy_tasks, theta0, lr, steps, beta, config.toy_meta_iterations)
         for m in meta.METHODS}
with torch.no_grad():
    adapted = {m: meta.loss_after_adaptation(toy_tasks, p[-1], lr, steps).item() for m, p in paths.items()}
    adapted_start = meta.loss_after_adaptation(toy_tasks, theta0, lr, steps).item()
warpkit.record("toy_adapted_loss_start", adapted_start)
for method, value in adapted.items():
    warpkit.record(f"toy_adapted_loss_{method.lower()}", value)

# %%
extent = (-3.0, 3.0, -2.5, 2.5)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
draw.draw_meta_updates(left, toy_tasks, theta0, updates, inner_paths, lr, steps, extent)
draw.draw_meta_training(right, toy_tasks, paths, lr, steps, extent, colorbar_fig=fig)
warpkit.show_figure(fig, "02_init_learners", SAVE_FIGS)
ranking = sorted(adapted, key=adapted.get)
print(f"mean loss after K = {steps} steps: from the first θ₀ {adapted_start:.3f}; after "
      f"{config.toy_meta_iterations} meta-iterations " + ", ".join(f"{m} {adapted[m]:.3f}" for m in ranking))

# %% [markdown]
# **What to notice.** Left: the yellow lines are the tasks' inner loops from θ₀, the crosses the tasks' minimisers,
# and the background the mean loss *after* K steps, the quantity MAML minimises. Each arrow is the direction of
# one meta-step (all drawn at one length; the legend gives the true lengths). MAML and FOMAML follow the gradient
# of the loss at the tasks' end points (MAML's passed back through the inner loop's Jacobian); Reptile points to
# the average end point; Leap to where the paths would be short. Right: where 40-odd meta-steps take θ₀. They need
# not agree, because they optimise different things. MAML follows the exact gradient of the background, but its
# Jacobian (I − αA)^K shrinks steps along steep directions, so after a fixed number of meta-iterations it need not
# be the lowest: the printed line ranks all four by the loss after adaptation, for this run.
#
# ## c. WarpGrad: meta-learn the geometry, not only the start
#
# A learned θ₀ helps only near θ₀. WarpGrad (Flennerhag et al., 2020, Section 3) meta-learns **warp layers** ω
# with parameters φ, interleaved with the task layers θ (lesson 01); the inner loop changes θ only, and the warps
# precondition every one of its steps, wherever it is. The meta-objective of the warp is a sum over *points θ^τ_k
# that task τ's own inner loop visited*: from each point take one look-ahead step on a task batch, and score it on
# a meta batch,
#
# $$\mathcal{L}(\phi) = \sum_{\tau} \sum_{k=0}^{K-1} L^\tau_{\text{meta}}\Big(\theta^\tau_k - \alpha\,
#   \nabla_\theta L^\tau_{\text{task}}(\theta^\tau_k; \phi);\ \phi\Big) \qquad \text{(Eq. 11)}$$
#
# The points θ^τ_k are treated as constants: the meta-gradient never flows back through the K steps that led to a
# point, so its cost and memory do not grow with K (MAML's do). Inside one look-ahead step, φ appears twice:
# in the forward pass at the stepped point, and in the inner gradient ∇L_task(θ; φ), whose φ-derivative is a
# second-order term. Dropping that term (a stop-gradient on the inner gradient) gives the first-order objective
#
# $$\mathcal{L}_{\text{FO}}(\phi) = \sum_{\tau} \sum_{k} L^\tau_{\text{meta}}\Big(\theta^\tau_k - \alpha\,
#   \mathrm{sg}\big[\nabla_\theta L^\tau_{\text{task}}(\theta^\tau_k; \phi)\big];\ \phi\Big)
#   \qquad \text{(Eq. 12)}$$
#
# WarpGrad can also meta-learn θ₀ with any initialisation learner C of section b, λ C(θ₀) added to the
# objective (Warp-Reptile, Warp-Leap). **Offline WarpGrad** (the paper's Algorithm 2) separates collecting
# points from learning φ:
#
# ```text
# Algorithm 2 (offline WarpGrad), as implemented below
# repeat
#     draw a meta-batch of tasks τ ~ p(τ); empty the buffer
#     for each task τ:
#         θ ← θ₀
#         for k = 0, …, K−1:  store (τ, k, θ) in the buffer;  θ ← θ − α ∇_θ L_task^τ(θ; φ)      (φ frozen)
#         add the task's initialisation gradient ∇C^τ(θ₀)                  (Reptile: θ₀ − θ_K)
#     θ₀ ← θ₀ − β · mean of ∇C^τ(θ₀)
#     shuffle the buffer; for each chunk of points:
#         φ ← φ − η ∇_φ mean over the chunk of L_meta^τ(θ − α ∇_θ L_task^τ(θ; φ); φ)       (Eq. 11 or 12)
# ```
#
# ## d. Algorithm 2 from scratch
#
# The network: x → Linear → tanh → **warp** → Linear → tanh → **warp** → Linear, in float64. The Linear layers are
# θ, the warps φ (`warpkit.task_parameters`, `warpkit.warp_parameters` tell them apart). We write the loss as a
# function of the two dicts, with `torch.func.functional_call`; everything else is plain autograd.

# %%
def loss(network, theta, phi, batch):
    """L(θ; φ; batch): mean squared error of ``network`` run with task parameters θ and warp parameters φ."""
    inputs, targets = batch
    return F.mse_loss(functional_call(network, {**theta, **phi}, (inputs,)), targets)


def frozen(params):
    """A stop-gradient copy: the same values, no gradient flows back, and later in-place updates do not leak in."""
    return {name: p.detach().clone() for name, p in params.items()}


# %% [markdown]
# The inner loop (φ frozen) returns the buffered points θ_0 … θ_{K−1} and the end point θ_K; the one-step
# objective is Eq. 11 (`exact=True`: the inner gradient stays in the graph, `create_graph=True`) or Eq. 12.

# %%
def inner_loop(network, theta0, phi, task, K, alpha):
    theta, points = dict(theta0), []
    for k in range(K):
        points.append((k, theta))
        theta = {name: t.detach().requires_grad_() for name, t in theta.items()}
        gradient = torch.autograd.grad(loss(network, theta, frozen(phi), task.sample_batch(k)), list(theta.values()))
        theta = {name: (t - alpha * g).detach() for (name, t), g in zip(theta.items(), gradient)}
    return points, theta


# %%
def one_step_objective(network, phi, theta, task_batch, meta_batch, alpha, exact=True):
    theta = {name: t.detach().requires_grad_() for name, t in theta.items()}
    task_loss = loss(network, theta, phi if exact else frozen(phi), task_batch)
    gradient = torch.autograd.grad(task_loss, list(theta.values()), create_graph=exact)
    stepped = {name: t - alpha * g for (name, t), g in zip(theta.items(), gradient)}
    return loss(network, stepped, phi, meta_batch)  # Eq. 11 (exact) or Eq. 12


# %% [markdown]
# One meta-iteration: adapt every task and buffer its points, move θ₀ by Reptile, then replay the shuffled buffer
# in chunks, one φ-step per chunk. The shuffle uses the generator it is given.

# %%
def collect(network, tasks, K, alpha):
    theta0, phi = frozen(warpkit.task_parameters(network)), warpkit.warp_parameters(network)
    buffer, reptile = [], {name: torch.zeros_like(t) for name, t in theta0.items()}
    for index, task in enumerate(tasks):
        points, theta_K = inner_loop(network, theta0, phi, task, K, alpha)
        buffer += [(index, k, theta) for k, theta in points]
        for name in reptile:
            reptile[name] += (theta0[name] - theta_K[name]) / len(tasks)
    return buffer, reptile


# %%
def warpgrad_step(network, tasks, K, alpha, beta, eta, chunk, generator, exact=True):
    buffer, reptile = collect(network, tasks, K, alpha)
    with torch.no_grad():
        for name, p in warpkit.task_parameters(network).items():
            p -= beta * reptile[name]  # θ₀ ← θ₀ − β ∇C(θ₀)
    phi = warpkit.warp_parameters(network)
    order = torch.randperm(len(buffer), generator=generator).tolist()
    for start in range(0, len(order), chunk):
        points = [buffer[j] for j in order[start:start + chunk]]
        objective = torch.stack([one_step_objective(network, phi, theta, *tasks[i].sample_meta_batches(k), alpha,
                                                    exact) for i, k, theta in points]).mean()
        gradient = torch.autograd.grad(objective, list(phi.values()))
        with torch.no_grad():
            for p, g in zip(phi.values(), gradient):
                p -= eta * g  # φ ← φ − η ∇L(φ)


# %% [markdown]
# ## e. The same numbers as `warpkit.MetaLearner`
#
# Two copies of one network, with warps moved away from the identity (as if already meta-learned), the same
# meta-batch of tasks and the same shuffling seed: one meta-iteration with our 40 lines, one with
# `warpkit.MetaLearner` (objective `"exact"`, then `"first_order"`, Reptile for θ₀). If both implement Algorithm 2
# the parameters afterwards agree to float64 rounding. The check is only worth something if the step moves the
# parameters by much more than the tolerance, so we print that too.

# %%
def compare(mode):
    reference = meta.warped_regressor(config.hidden, seed=SEED, warp_noise=0.05)
    ours, theirs = copy.deepcopy(reference), copy.deepcopy(reference)
    batch = meta.sine_tasks(config.meta_batch, first_seed=SEED * 1000 + 100)
    sizes = dict(K=config.inner_steps, alpha=config.inner_lr, beta=config.init_lr, eta=config.warp_lr)
    warpgrad_step(ours, batch, **sizes, chunk=config.replay_chunk_size,
                  generator=torch.Generator().manual_seed(SEED), exact=mode == "exact")
    learner = warpkit.MetaLearner(theirs, F.mse_loss, inner_lr=sizes["alpha"], inner_steps=sizes["K"],
                                  warp_objective=mode, init_learner=warpkit.Reptile(), warp_lr=sizes["eta"],
                                  init_lr=sizes["beta"], replay_chunk_size=config.replay_chunk_size, seed=SEED)
    learner.meta_step(batch)
    pairs = zip(ours.parameters(), theirs.parameters(), reference.parameters())
    differences = [((a - b).abs().max().item(), (a - r).abs().max().item()) for a, b, r in pairs]
    return max(d for d, _ in differences), max(m for _, m in differences)


# %%
difference_exact, moved = compare("exact")
difference_first_order, _ = compare("first_order")
difference = warpkit.record("scratch_vs_metalearner_max_abs_diff", max(difference_exact, difference_first_order))
warpkit.record("scratch_step_size_max_abs", moved)
assert difference < 1e-10, f"from-scratch WarpGrad differs from MetaLearner by {difference:.2e}"
print(f"largest parameter change in one meta-iteration: {moved:.2e}; largest difference between our step and "
      f"MetaLearner's: {difference_exact:.1e} (Eq. 11), {difference_first_order:.1e} (Eq. 12)")

# %% [markdown]
# ## f. Does a meta-learned warp help?
#
# Now use our `warpgrad_step` to meta-train the warps of a fresh network (identity warps, so before meta-training
# it *is* plain SGD) with β = 0: θ₀ stays where it is and only φ is learned. We then adapt K steps on held-out
# tasks from that θ₀, with the identity warps and with the learned ones, and compare their losses on the tasks'
# held-out points.

# %%
def held_out_curve(network, tasks):
    curve = torch.zeros(config.inner_steps + 1, dtype=torch.float64)
    theta0, phi = frozen(warpkit.task_parameters(network)), warpkit.warp_parameters(network)
    for task in tasks:
        points, theta_K = inner_loop(network, theta0, phi, task, config.inner_steps, config.inner_lr)
        with torch.no_grad():
            losses = [loss(network, theta, phi, task.evaluation_batch()) for _, theta in points + [(0, theta_K)]]
        curve += torch.stack(losses) / len(tasks)
    return curve.tolist()


# %%
network = meta.warped_regressor(config.hidden, seed=SEED)
held_out = meta.sine_tasks(config.held_out_tasks, first_seed=10**6 + SEED * 1000)
before = held_out_curve(network, held_out)
generator = torch.Generator().manual_seed(SEED)
for iteration in warpkit.progress(range(config.meta_iterations), show=SHOW_PROGRESS, desc="meta-training"):
    batch = meta.sine_tasks(config.meta_batch, first_seed=SEED * 1000 + 200 + iteration * config.meta_batch)
    warpgrad_step(network, batch, config.inner_steps, config.inner_lr, 0.0, config.warp_lr,
                  config.replay_chunk_size, generator)
after = held_out_curve(network, held_out)
loss_sgd = warpkit.record("sine_held_out_loss_plain_sgd", before[-1])
loss_warp = warpkit.record("sine_held_out_loss_warped", after[-1])

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
draw.draw_adaptation_curves(ax, {"identity warps (plain SGD)": before, "meta-learned warps": after},
                            f"{len(held_out)} held-out tasks, same θ₀, α = {config.inner_lr}")
warpkit.show_figure(fig, "02_warp_adaptation", SAVE_FIGS)
verdict = "lower" if loss_warp < loss_sgd else "not lower"
print(f"after {config.inner_steps} steps on held-out tasks: plain SGD {loss_sgd:.3f}, meta-learned warps "
      f"{loss_warp:.3f} ({verdict}; {config.meta_iterations} meta-iterations, θ₀ fixed)")

# %% [markdown]
# **What to notice.** The two curves do not start at the same loss although θ₀ is the same: warp layers sit in
# the forward pass, so a new φ changes the function that θ₀ computes as well as every step taken from it. The
# meta-objective only scores losses *after* steps, so it is the whole curve that matters; the printed line gives
# its last point for this run. The learned warps change the optimisation problem the inner loop solves; lesson 03
# draws what such a geometry looks like, and lesson 04 combines a learned warp with a learned start (Warp-Leap).
#
# ## Summary
#
# * A meta-learning problem is a distribution of tasks; an inner loop adapts to one task, an outer loop improves
#   what the inner loops share, scored on data the inner loop did not fit (two batches per task).
# * MAML, FOMAML, Reptile and Leap meta-learn the starting point θ₀; they differ in what one task contributes
#   (a gradient through the inner loop, a gradient at its end, its end point, the shape of its path).
# * WarpGrad meta-learns warp layers φ from points of the tasks' own trajectories with a one-step objective
#   (Eq. 11; Eq. 12 drops its second-order term), so its cost does not grow with K; Algorithm 2 first collects
#   the points, then replays them in shuffled chunks. Our 40 lines take the same step as `warpkit.MetaLearner`.
#
# ## Check yourself
#
# 1. Why must the meta batch differ from the task batch? What would the outer loop learn if they were the same?
# 2. MAML's memory grows with K, WarpGrad's does not. Which term of MAML's meta-gradient is responsible, and why
#    does Eq. 11 not need it?
# 3. In `one_step_objective`, which two changes turn Eq. 11 into Eq. 12, and why does the *value* of the objective
#    not change?

# %%
warpkit.show_records()
