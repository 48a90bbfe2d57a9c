# %% [markdown]
# # Assignment 4: WarpGrad's meta-objective at a buffered point
#
# WarpGrad learns the warp φ from points θ_k of a task's own training run: at each buffered point it takes one
# look-ahead step on a task batch and scores the result on a different meta batch (Eq. 11; lesson 02, section c).
# You will write the look-ahead step, the first-order objective (Eq. 12) and the exact one (Eq. 11), and
# verify their φ-gradients against finite differences.
#
# **How this works.** Each exercise is a function with a `NotImplementedError` in its body: replace those two
# lines with your code, then run the cell below it. Those cells run *public checks*; when they pass you see
# "public checks passed". Your instructor may run further tests when grading.

# %%
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad

from warpkit.engine.adapt import adapt
from warpkit.kit.checks import PublicChecks, check_close
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import ResidualMLPWarp, interleave_warps, warp_parameters

torch.manual_seed(0)
model = interleave_warps([nn.Linear(4, 8), nn.Sequential(nn.Tanh(), nn.Linear(8, 3))],
                         lambda i, layer: ResidualMLPWarp(8, hidden=8)).double()  # h₂ ∘ ω ∘ h₁
with torch.no_grad():  # a stand-in for a meta-learned warp: move φ away from the identity
    for p in warp_parameters(model).values():
        p.add_(0.3 * torch.randn_like(p))

# %% [markdown]
# A small 3-class task, and one run of task adaptation (10 SGD steps on θ, φ frozen) with `warpkit.engine.adapt`.
# The run's trajectory holds the points θ_0 … θ_9, detached; we replay the point θ_5 with two fresh batches.

# %%
inputs = torch.randn(60, 4, dtype=torch.float64)
labels = (inputs[:, 0] > 0).long() + (inputs[:, 1] > 0.5).long()
task = SupervisedTask(inputs, labels, batch_size=20, generator=torch.Generator().manual_seed(1))
trajectory = adapt(model, task, F.cross_entropy, num_steps=10, lr=0.5)
theta = trajectory.params[5]  # the buffered point θ_5: {name: tensor}
phi = {name: p.detach().clone().requires_grad_(True) for name, p in warp_parameters(model).items()}
task_batch, meta_batch = task.sample_meta_batches(5)  # two different draws
LR = 0.5


def loss_at(params, batch):
    """Cross-entropy of the model with the given θ and φ (a dict holding both) on batch = (inputs, labels)."""
    x, y = batch
    return F.cross_entropy(functional_call(model, params, (x,)), y)


print(f"task loss along the run: {trajectory.losses[0]:.3f} → {trajectory.losses[-1]:.3f}")

# %% [markdown]
# ## Exercise 1: the look-ahead step
#
# Write `inner_step(theta, phi, batch, lr)` returning the dict θ′ = θ − α ∇_θ L_task(θ; φ), the gradient
# taken with respect to θ only (φ is held fixed). `torch.func.grad` (imported as `grad`) differentiates a function
# of a dict with respect to that dict.

# %%
def inner_step(theta, phi, batch, lr):
    """θ′ = θ − lr · ∇_θ L(θ; φ; batch), as a dict with θ's keys."""
    ### BEGIN SOLUTION
    theta_gradient = grad(lambda t: loss_at({**t, **phi}, batch))(theta)
    return {name: theta[name] - lr * theta_gradient[name] for name in theta}
    ### END SOLUTION


# %%
def along(params, direction, step):
    """params + step · direction, for dicts of tensors (detached: a plain point)."""
    return {name: (params[name] + step * direction[name]).detach() for name in params}


direction_theta = {name: torch.randn_like(t) for name, t in theta.items()}
h = 1e-6  # finite-difference step (float64)
with PublicChecks("inner_step") as checks:
    stepped = inner_step(theta, phi, task_batch, LR)
    checks.equal("θ′ has θ's parameters", sorted(stepped), sorted(theta),
                 hint="return one entry per task parameter")
    slope = sum(((theta[n] - stepped[n]) / LR * direction_theta[n]).sum() for n in theta)
    finite_difference = (loss_at({**along(theta, direction_theta, h), **phi}, task_batch)
                         - loss_at({**along(theta, direction_theta, -h), **phi}, task_batch)) / (2 * h)
    checks.close("∇_θ L_task matches finite differences (along a random direction)", slope, finite_difference,
                 atol=1e-7, hint=("differentiate the task loss as a function of θ alone, on the batch you are given",
                                  "grad(lambda t: loss_at({**t, **phi}, batch))(theta), then θ − lr · that"))
### BEGIN HIDDEN TESTS
theta_leaves = {name: t.clone().requires_grad_(True) for name, t in theta.items()}
autograd_h = torch.autograd.grad(loss_at({**theta_leaves, **phi}, meta_batch), list(theta_leaves.values()))
stepped_h = inner_step(theta, phi, meta_batch, 0.1)
for (name, t), g in zip(theta.items(), autograd_h):
    check_close(f"hidden: {name} matches torch.autograd on another batch", stepped_h[name], t - 0.1 * g)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the first-order objective (Eq. 12)
#
# $$\mathcal{L}_{\text{FO}}(\phi)
#   = L_{\text{meta}}\big(\theta - \alpha\, \mathrm{sg}[\nabla_\theta L_{\text{task}}(\theta;\phi)];\ \phi\big)$$
#
# where sg is stop-gradient: φ gets gradient only through its appearance in the forward pass of L_meta at
# the stepped point. Write `first_order_objective(theta, phi, task_batch, meta_batch, lr)` returning this
# scalar, differentiable with respect to the tensors in `phi`. (`.detach()` is a stop-gradient.)

# %%
def first_order_objective(theta, phi, task_batch, meta_batch, lr):
    """L_meta(θ − lr · sg[∇_θ L_task(θ; φ)]; φ)  (Eq. 12)."""
    ### BEGIN SOLUTION
    frozen_step = {name: t.detach() for name, t in inner_step(theta, phi, task_batch, lr).items()}
    return loss_at({**frozen_step, **phi}, meta_batch)
    ### END SOLUTION


# %%
direction_phi = {name: torch.randn_like(p) for name, p in phi.items()}


def phi_slope(objective):
    """The directional derivative of objective(φ) along direction_phi, by autograd."""
    gradients = torch.autograd.grad(objective, list(phi.values()))
    return sum((g * direction_phi[name]).sum() for g, name in zip(gradients, phi))


with PublicChecks("first_order_objective") as checks:
    value = first_order_objective(theta, phi, task_batch, meta_batch, LR)
    checks.shape("a scalar", value, ())
    checks.close("the value is L_meta at the stepped point", value,
                 loss_at({**inner_step(theta, phi, task_batch, LR), **phi}, meta_batch))
    checks.true("differentiable in φ", value.requires_grad, "the result does not depend on φ in autograd's eyes",
                hint="use the φ tensors you are given in the forward pass at the stepped point")
    fixed_point = {name: t.detach() for name, t in inner_step(theta, phi, task_batch, LR).items()}
    finite_difference = (loss_at({**fixed_point, **along(phi, direction_phi, h)}, meta_batch)
                         - loss_at({**fixed_point, **along(phi, direction_phi, -h)}, meta_batch)) / (2 * h)
    checks.close("φ-gradient: only through L_meta's forward pass (finite differences)", phi_slope(value),
                 finite_difference, atol=1e-7,
                 hint=("in Eq. 12 the inner gradient is a constant for the φ-gradient: φ counts only at the stepped point",
                       "stop the gradient through the inner step (.detach() the stepped θ′)"))
### BEGIN HIDDEN TESTS
from warpkit.engine.objectives import one_step_objective

library_value = one_step_objective(model, F.cross_entropy, phi, theta, {}, task_batch, meta_batch, LR,
                                   mode="first_order")
check_close("hidden: agrees with warpkit.engine.objectives (value)", value, library_value)
check_close("hidden: agrees with warpkit.engine.objectives (φ-gradient)",
            phi_slope(first_order_objective(theta, phi, task_batch, meta_batch, LR)), phi_slope(library_value))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the exact objective (Eq. 11)
#
# $$\mathcal{L}(\phi) = L_{\text{meta}}\big(\theta - \alpha \nabla_\theta L_{\text{task}}(\theta;\phi);\ \phi\big)$$
#
# Now the inner gradient stays in the graph, so the φ-gradient also contains the second-order term
# −α (∂²L_task/∂φ∂θ)ᵀ ∇_θ L_meta. Write `exact_objective(theta, phi, task_batch, meta_batch, lr)`.
# (The authors' code meant to do this, but wrote the inner gradients into `.grad`, which detaches them: it
# silently computed Eq. 12. The check below would have caught it.)

# %%
def exact_objective(theta, phi, task_batch, meta_batch, lr):
    """L_meta(θ − lr · ∇_θ L_task(θ; φ); φ), the inner gradient kept in the graph  (Eq. 11)."""
    ### BEGIN SOLUTION
    differentiable_step = inner_step(theta, phi, task_batch, lr)
    return loss_at({**differentiable_step, **phi}, meta_batch)
    ### END SOLUTION


# %%
def whole_objective(phi_point):
    """φ ↦ L_meta(θ − α∇L_task(θ; φ); φ) for a plain φ (no autograd), for finite differences."""
    with torch.no_grad():
        stepped_point = {name: theta[name] - LR * g for name, g in
                         grad(lambda t: loss_at({**t, **phi_point}, task_batch))(theta).items()}
        return loss_at({**stepped_point, **phi_point}, meta_batch)


with PublicChecks("exact_objective") as checks:
    exact_value = exact_objective(theta, phi, task_batch, meta_batch, LR)
    checks.close("the value equals the first-order value (only gradients differ)", exact_value,
                 first_order_objective(theta, phi, task_batch, meta_batch, LR))
    exact_slope = phi_slope(exact_value)
    finite_difference = (whole_objective(along(phi, direction_phi, h))
                         - whole_objective(along(phi, direction_phi, -h))) / (2 * h)
    checks.close("φ-gradient matches finite differences of the whole objective", exact_slope, finite_difference,
                 atol=1e-7, hint=("in Eq. 11, φ also changes the look-ahead step itself: that dependence must reach the gradient",
                       "keep the inner gradient in the graph: do not detach the inner step"))
    first_order_slope = phi_slope(first_order_objective(theta, phi, task_batch, meta_batch, LR))
    checks.true("exact ≠ first-order on this non-linear model", abs(exact_slope - first_order_slope) > 1e-3,
                "the exact and first-order φ-gradients agree, so the second-order term is missing")
print(f"directional φ-gradient: exact {float(exact_slope):.5f}, first-order {float(first_order_slope):.5f}")
### BEGIN HIDDEN TESTS
library_exact = one_step_objective(model, F.cross_entropy, phi, theta, {}, task_batch, meta_batch, LR, mode="exact")
check_close("hidden: agrees with warpkit.engine.objectives (exact φ-gradient)", exact_slope, phi_slope(library_exact))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (written): why buffered points?
#
# In two or three sentences: why does the cost and memory of this objective not depend on the number of inner
# steps K, and what does the first-order version save compared with the exact one?

# %% [markdown]
# ### BEGIN SOLUTION
# Each buffered point θ_k is stored detached, so the objective at a point differentiates through one
# look-ahead step only, never through the K steps that led to θ_k: the meta-gradient is a sum of independent
# per-point terms, and its memory is that of one step whatever K is. The first-order version also drops the
# second derivative ∂²L_task/∂φ∂θ, so it needs no double backward pass through the task loss: cheaper, at the
# price of ignoring how φ changes the look-ahead step itself.
# ### END SOLUTION

# %% [markdown]
# ## Lesson 04's self-check questions (written)
#
# 1. MAML in lesson 04 backpropagates through 5 inner steps while every task takes `inner_steps` steps; Warp-Leap
#    meta-learns φ from all of them. Why can Warp-Leap afford every step, and what does each buffered point cost?
# 2. With fixed training tasks and a few training alphabets, the loss at θ₀ (dashed in lesson 04, section e) can
#    fall close to zero. What has θ₀ learnt then, and why does resampling the tasks prevent it?
# 3. Why does lesson 04 compare Warp-Leap with the best other method by a *paired* interval over seeds, and what
#    would an interval that contains zero tell you?

# %% [markdown]
# ### BEGIN SOLUTION
# 1. MAML's meta-gradient contains the Jacobian dθ_K/dθ₀ = Π_k (I − α∇²L(θ_k)): every step's graph is kept and
#    backpropagated, so memory and compute grow with K, hence only 5 steps. Warp-Leap's Eq. 11 treats every
#    buffered point θ_k as a constant and differentiates one look-ahead step from it: per point, one task
#    gradient (kept in the graph for the exact objective) and one forward and backward pass on the meta batch,
#    whatever K is, and the points never need to be in memory together. Leap moves θ₀ from the path's differences
#    Δθ_k alone, without backpropagating through any step.
# 2. With fixed tasks each training alphabet's characters always carry the same labels, so θ₀ itself can
#    classify them before any inner step: it memorises the label assignment of the training alphabets. That is
#    fitting, not learning to learn: a new alphabet comes with new labels, so the memorised assignment cannot
#    transfer. Resampled tasks draw new characters, a new label order and a new drawer split every time, so there
#    is no assignment to memorise; the loss at θ₀ stays near that of guessing, and only what makes the inner loop
#    fast (features, the start, the warps' geometry) lowers the loss after adaptation.
# 3. All methods of one seed share its random network, training alphabets, batches and test tasks, so their
#    accuracies move together from seed to seed (a hard seed is hard for every method). The difference within a
#    seed removes that shared part, so the paired interval is narrower than one built from two means and their
#    own spreads. An interval containing zero says that these seeds cannot tell the two methods apart: the margin
#    is within what the choice of seed produces. It does not say that they are equal, and a run of one seed has
#    no interval at all, which is why the fast run is not evidence.
# ### END SOLUTION

# %% tags=["instructor"]
# Grading notes (instructor only). A student who forgets .detach() in exercise 2 fails the finite-difference
# check there; one who adds it in exercise 3 fails "exact ≠ first-order". Reference values for this seed:
print(f"θ_5 → θ′ meta loss {float(exact_value):.6f}; slopes exact {float(exact_slope):.6f}, "
      f"first-order {float(first_order_slope):.6f}")
