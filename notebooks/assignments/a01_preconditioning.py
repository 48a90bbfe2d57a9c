# %% [markdown]
# # Assignment 1: a frozen warp is a preconditioner
#
# A task layer W followed by a frozen linear warp T behaves like one unwarped layer with weights γ = T W.
# You will take one SGD step on the task weights only, write the preconditioned step γ − α T Tᵀ ∇_γ L,
# and check that the two are the same step (the "warp identity" of lesson 01).
#
# **How this works.** Each exercise is a function with a `NotImplementedError` in its body: replace those two
# lines with your code, then run the cell below it. Those cells run *public checks*; when they pass you see
# "public checks passed". Your instructor may run further tests when grading.

# %%
import torch

from warpkit.kit.checks import PublicChecks, check_close, check_equal, check_true
from warpkit.engine.warp import LinearWarp, task_parameters, warp_parameters

torch.manual_seed(0)


def warped_layer(W, T):
    """The model x ↦ T (W x): a task layer (θ = W) and a frozen linear warp (φ = T), in float64."""
    model = torch.nn.Sequential(torch.nn.Linear(W.shape[1], W.shape[0], bias=False),
                                LinearWarp(W.shape[0], bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(W)
        model[1].weight.copy_(T)
    return model


def squared_error(prediction, target):
    """L = (1/2B) Σ_b ‖prediction_b − target_b‖²."""
    return 0.5 * ((prediction - target) ** 2).sum(dim=-1).mean()


# %% [markdown]
# ## Exercise 1: an SGD step on the task parameters only
#
# During task adaptation only θ moves; the warp φ is frozen. Write `task_sgd_step(model, x, y, lr)` that
# returns the task parameters after one SGD step on `squared_error(model(x), y)`:
#
# $$\theta \leftarrow \theta - \alpha \nabla_\theta L .$$
#
# Return a dict `{name: new tensor}` holding the task parameters only (use `task_parameters(model)` from
# `warpkit.engine.warp`), and do not modify the model itself. `torch.autograd.grad` gives the gradient.

# %%
def task_sgd_step(model, x, y, lr):
    """One SGD step on θ = task_parameters(model), φ frozen; returns {name: θ_new} and leaves the model as it is."""
    ### BEGIN SOLUTION
    theta = task_parameters(model)
    loss_value = squared_error(model(x), y)
    theta_grads = torch.autograd.grad(loss_value, list(theta.values()))
    return {name: p.detach() - lr * g for (name, p), g in zip(theta.items(), theta_grads)}
    ### END SOLUTION


# %%
T_hand = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
model_hand = warped_layer(torch.eye(2, dtype=torch.float64), T_hand)
x_hand = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
y_hand = torch.zeros(1, 2, dtype=torch.float64)

with PublicChecks("task_sgd_step") as checks:
    new_theta = task_sgd_step(model_hand, x_hand, y_hand, lr=0.1)
    checks.type("returns a dict", new_theta, dict)
    checks.equal("only the task parameters", sorted(new_theta), sorted(task_parameters(model_hand)),
                 hint="the warp is frozen: leave warp_parameters(model) out of the step")
    checks.close("the new task weights (worked by hand)", new_theta["0.weight"], [[0.5, 0.0], [-0.1, 1.0]],
                 hint=("a gradient step on the task layer: backpropagation passes the error back through the frozen T",
                       "W − lr · ∂L/∂W; here ∂L/∂W = Tᵀ (T W x − y) xᵀ = [[5, 0], [1, 0]]"))
    checks.close("the model is not modified", model_hand[0].weight, torch.eye(2),
                 hint=("the model's own parameters are the starting point: they must stay as they were",
                       "compute new tensors (p - lr * g) instead of changing p in place"))
### BEGIN HIDDEN TESTS
W_h, T_h = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
x_h, y_h = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
by_hand = W_h - 0.05 * T_h.T @ (x_h @ W_h.T @ T_h.T - y_h).T @ x_h / 5
stepped_h = task_sgd_step(warped_layer(W_h, T_h), x_h, y_h, 0.05)["0.weight"]
check_close("hidden: a random 3×4 layer, batch of 5", stepped_h, by_hand)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the preconditioned step in native coordinates
#
# Seen from outside, the warped layer is one unwarped layer with weights γ = T W. Write
# `preconditioned_step(gamma, grad, T, lr)` for the step
#
# $$\gamma \leftarrow \gamma - \alpha\, T T^\top \nabla_\gamma L ,$$
#
# where `grad` is ∇_γ L (same shape as γ, one row per output).

# %%
def preconditioned_step(gamma, grad, T, lr):
    """γ − lr · T Tᵀ grad."""
    ### BEGIN SOLUTION
    preconditioner = T @ T.T
    return gamma - lr * preconditioner @ grad
    ### END SOLUTION


# %%
with PublicChecks("preconditioned_step") as checks:
    gamma_hand = T_hand @ torch.eye(2, dtype=torch.float64)
    grad_hand = torch.tensor([[2.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # (γ x − y) xᵀ for the example above
    stepped = preconditioned_step(gamma_hand, grad_hand, T_hand, lr=0.1)
    checks.shape("shape of the step", stepped, (2, 2))
    checks.close("the step (worked by hand)", stepped, [[1.0, 0.0], [0.4, 1.0]],
                 hint=("which matrix does a frozen warp T put in front of the gradient of γ (the warp identity)?",
                       "T Tᵀ = [[4, 2], [2, 2]]; multiply it with grad from the left"))
    identity = torch.eye(2, dtype=torch.float64)
    checks.close("T = I gives plain gradient descent", preconditioned_step(gamma_hand, grad_hand, identity, 0.1),
                 gamma_hand - 0.1 * grad_hand)
### BEGIN HIDDEN TESTS
g_h, d_h = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
T_h = torch.randn(3, 3, dtype=torch.float64)
check_close("hidden: a random 3×4 step", preconditioned_step(g_h, d_h, T_h, 0.3),
            g_h - 0.3 * T_h @ T_h.T @ d_h)
check_close("hidden: lr = 0 leaves gamma", preconditioned_step(g_h, d_h, T_h, 0.0), g_h)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the warp identity
#
# Write `native_parameters(model)`, the weights γ = T W of the unwarped layer that computes the same function
# as `model` (a detached tensor). Then the check below takes a warped SGD step with your `task_sgd_step`, maps
# it to native coordinates, and compares it with your `preconditioned_step`: for a linear warp the two agree
# *exactly*, not only to first order.

# %%
def native_parameters(model):
    """γ = T W for model = warped_layer(W, T), detached."""
    ### BEGIN SOLUTION
    task_weight, warp_weight = model[0].weight, model[1].weight
    return (warp_weight @ task_weight).detach()
    ### END SOLUTION


# %%
W0, T0 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
x0, y0 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
model0 = warped_layer(W0, T0)
gamma0 = native_parameters(model0)
grad_gamma0 = (x0 @ gamma0.T - y0).T @ x0 / 8  # ∇_γ L for the unwarped layer y = γ x, by hand

with PublicChecks("native_parameters") as checks:
    checks.shape("γ has the shape of W", gamma0, (3, 4))
    checks.close("γ x equals the model's output", x0 @ gamma0.T, model0(x0), hint="γ = T W, in that order")
    after_warped_step = native_parameters(warped_layer(task_sgd_step(model0, x0, y0, 0.1)["0.weight"], T0))
    checks.close("warped SGD step == T Tᵀ-preconditioned step", after_warped_step,
                 preconditioned_step(gamma0, grad_gamma0, T0, 0.1), atol=1e-10)
### BEGIN HIDDEN TESTS
check_true("hidden: native_parameters is detached", not gamma0.requires_grad, "γ still requires grad")
W_h, T_h = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
check_close("hidden: another shape (2×5)", native_parameters(warped_layer(W_h, T_h)), T_h @ W_h)
check_equal("hidden: φ is the warp weight only", sorted(warp_parameters(model0)), ["1.weight"])
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (written): what the warp does to the step
#
# Take T = diag(3, 1/3). In two or three sentences: how does the warped SGD step on W change the first and the
# second output row of γ compared with plain SGD, and why does a warp initialised at the identity give plain
# SGD before meta-training?

# %% [markdown]
# ### BEGIN SOLUTION
# T Tᵀ = diag(9, 1/9), so the step on the first output row of γ is 9 times the plain gradient step and the
# step on the second row is 1/9 of it: the warp reshapes the step without the network ever forming a
# preconditioner. At initialisation T = I, so T Tᵀ = I and the warped step is exactly plain SGD; meta-learning
# moves T away from the identity so that these step sizes suit the task family.
# ### END SOLUTION

# %% [markdown]
# ## The lesson's self-check questions (written)
#
# 1. Why is Jacobi's number of steps independent of κ(H) for our H = SCS, and which H would defeat it?
# 2. The network never multiplies by P = I ⊗ TTᵀ. Where in backpropagation does TTᵀ appear?
# 3. Why does the error against the Euclidean step shrink only like α, while the error against the Riemannian
#    step shrinks like α²?

# %% [markdown]
# ### BEGIN SOLUTION
# 1. C has a unit diagonal, so diag(H) = S², P = S⁻² and PH = S⁻¹CS, which is similar to C: its condition number
#    is κ(C) whatever S is. A strongly correlated H (C close to singular, e.g. ρ → 1) defeats it: Jacobi removes
#    scaling, not correlation.
# 2. Backpropagating through the frozen T gives ∂L/∂W = Tᵀ∇_γL xᵀ (one factor T); the effective weights γ = TW then
#    move by T times the step on W: the second factor. TTᵀ is the product of the backward and the forward pass.
# 3. Ω(θ − αJᵀ∇L) = γ − αJJᵀ∇L + O(α²): the first-order term is the Riemannian step, so the difference to it is
#    second order. The Euclidean step γ − α∇L differs from it already at first order, by α(JJᵀ − I)∇L.
# ### END SOLUTION

# %% tags=["instructor"]
# Grading notes (instructor only; this cell is not in the student copy).
# Exercise 1: a common slip is to step the warp too (sorted keys include "1.weight") or to change the model
# in place with `p -= lr * g` (the "model is not modified" check).
# Exercise 4: full marks for "rows scaled by 9 and 1/9" and "T = I gives T Tᵀ = I".
import numpy as np

from warpkit.experiments.preconditioning import train_through_warp, weighted_squared_error

effective, _ = train_through_warp(warped_layer(W0, T0)[1], W0, x0, y0, torch.eye(3, dtype=torch.float64), 0.1, 1)
assert torch.allclose(effective[1], after_warped_step, atol=1e-10), "the library's warped step disagrees"
assert np.isclose(float(weighted_squared_error(model0(x0), y0, torch.eye(3, dtype=torch.float64))),
                  float(squared_error(model0(x0), y0)))
print("instructor cross-checks against warpkit.experiments.preconditioning passed")
