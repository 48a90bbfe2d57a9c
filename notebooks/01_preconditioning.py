# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# # 01 · Preconditioning: why a warp layer changes how a network learns
#
# Gradient descent crawls on an ill-conditioned problem; a good preconditioner P makes it fast. WarpGrad
# never forms P: it inserts frozen *warp layers* into the network, and backpropagation through them turns
# the gradient of the task parameters θ into a preconditioned gradient. We check this numerically, step by step.
#
# Maths for every cell lives in the docstrings of `warpkit.experiments.preconditioning` (and `warpkit.engine.geometry`).

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast", "gpu", "full"
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import warpkit
from warpkit.experiments import preconditioning as pc
from warpkit.viz import preconditioning as draw01
from warpkit.kit.notebook import check_size
from warpkit.engine.warp import LinearWarp, ResidualMLPWarp

# %%
config = pc.SIZES[check_size(SIZE, tuple(pc.SIZES))]
torch.set_num_threads(1)  # every tensor here is tiny: extra threads would only add synchronisation
warpkit.defer_records()  # recorded values are shown once, as a table, at the end of the lesson
warpkit.record("seed", warpkit.seed_everything(SEED))
device = warpkit.pick_device(DEVICE)
generator = torch.Generator().manual_seed(SEED)
f64 = dict(dtype=torch.float64)
TOL, START = config.tolerance, config.start  # "converged": f(x_k) ≤ TOL · f(x_0); where every descent starts

# %% [markdown]
# ## a. Gradient descent vs preconditioned descent
#
# Take the quadratic $f(x) = \tfrac12 (x-x^*)^\top H (x-x^*)$ and the update
# $x_{k+1} = x_k - \alpha\, P\, \nabla f(x_k)$. The error evolves as $e_{k+1} = (I - \alpha P H)\, e_k$, so with
# the largest safe step $\alpha = 1/\lambda_{\max}(PH)$ the slowest direction shrinks by $1 - 1/\kappa(PH)$ per
# step and reaching $f \le \text{tol}\cdot f(x_0)$ takes about $\kappa(PH)\,\ln(1/\text{tol})/2$ steps.
#
# * $P = I$ (plain GD): $\kappa(PH) = \kappa(H)$, slow when $H$ is ill-conditioned.
# * $P = \operatorname{diag}(H)^{-1}$ (Jacobi): removes the bad *scaling* of the coordinates, not their *correlation*.
# * $P = H^{-1}$ (Newton): $PH = I$, one step.
#
# Our $H = S C S$ has a correlation $C$ (ρ = 0.5) and a scaling $S$ chosen so that $\kappa(H)$ is what we ask for.

# %%
if INTERACTIVE:
    from IPython.display import display

    explorer = draw01.PreconditioningExplorer(START, steps=30)
    display(explorer.widget)
fig = draw01.descent_small_multiples([10, 100], START, steps=30)
warpkit.show_figure(fig, "01_descent_paths", SAVE_FIGS)
jacobi = {k: pc.preconditioned_descent(q, START, pc.preconditioner(q, "diagonal"), 30).losses
          for k, q in ((k, pc.ill_conditioned_quadratic(k)) for k in (10.0, 100.0))}
print("f after 30 Jacobi steps, relative to f(x₀): "
      + ", ".join(f"κ(H) = {k:.0f}: {losses[-1] / losses[0]:.1e}" for k, losses in jacobi.items()))

# %% [markdown]
# **Notice.** Plain GD drops to the floor of the narrow valley in one step and then crawls along it: the step
# that is safe for the steep direction is tiny for the flat one. Jacobi's paths for κ = 10 and 100 have different
# shapes (the coordinates are scaled differently) but the same speed: with $H = SCS$, $P = \operatorname{diag}(H)^{-1}
# = S^{-2}$ and $PH = S^{-1} C S$ has the eigenvalues of the correlation $C$ whatever κ(H) is; the printed ratios
# after 30 steps show it. Newton jumps to the minimum. Now the loss curves at κ(H) = 100 and the steps to tolerance
# as κ grows.

# %%
quadratic = pc.ill_conditioned_quadratic(100.0)
runs = {name: pc.preconditioned_descent(quadratic, START, pc.preconditioner(quadratic, name), 2000)
        for name in pc.PRECONDITIONER_NAMES}
steps = pc.steps_versus_condition(config.condition_numbers, START, TOL, show_progress=SHOW_PROGRESS)
fig, (ax_loss, ax_steps) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
draw01.draw_loss_curves(ax_loss, runs, TOL)
ax_loss.set_title(f"κ(H) = {quadratic.condition_number:.0f}, each with α = 1/λ_max(PH)")
draw01.draw_steps_versus_condition(ax_steps, config.condition_numbers, steps, TOL)
warpkit.show_figure(fig, "01_steps_to_tolerance", SAVE_FIGS)

# %%
warpkit.record("condition_number", quadratic.condition_number)
steps_gd = warpkit.record("steps_gd", runs["none"].steps_to(TOL))
steps_diagonal = warpkit.record("steps_diagonal", runs["diagonal"].steps_to(TOL))
steps_newton = warpkit.record("steps_preconditioned", runs["inverse Hessian"].steps_to(TOL))
warpkit.record("steps_gd_predicted", pc.predicted_steps(quadratic.condition_number, TOL))
warpkit.record("steps_versus_condition", {"condition_numbers": config.condition_numbers, **steps})
print(f"steps to f ≤ {TOL:g}·f(x₀) at κ(H) = 100: plain GD {steps_gd}, Jacobi {steps_diagonal}, Newton {steps_newton}")

# %% [markdown]
# **Notice.** Plain GD needs a number of steps proportional to κ(H) (the dotted line is the estimate above;
# the ▼ on the left panel's axis marks Newton's exact zero after one step);
# Jacobi's count is flat, because after scaling only the fixed correlation is left; Newton needs one step.
# A meta-learner that could *learn* a good P would make every task's descent fast. WarpGrad learns one
# without ever writing P down, as the next part shows.
#
# ## b. The warp identity: a frozen linear warp is a preconditioner
#
# Put a frozen linear warp $T$ after a task layer $h(x) = Wx$ (θ = W): $y = T W x$. This behaves like an
# unwarped layer with effective weights $\gamma = TW$. The chain rule gives
#
# $$\frac{\partial L}{\partial W} = T^\top \frac{\partial L}{\partial y}\, x^\top = T^\top \nabla_\gamma L,
# \qquad \text{so} \qquad
# T\,(W - \alpha \nabla_W L) = \gamma - \alpha\, \underbrace{T T^\top}_{P}\, \nabla_\gamma L .$$
#
# A gradient step on θ is a preconditioned step on γ with $P = TT^\top$ (on $\operatorname{vec}\gamma$:
# $I \otimes TT^\top$). We check both equalities in float64, with the loss
# $L = \frac{1}{2B}\sum_b (y_b - t_b)^\top A (y_b - t_b)$, whose gradient by hand is $\partial L/\partial y_b = A(y_b - t_b)/B$.

# %%
n_in, n_out, batch = 4, 3, 64
X = torch.randn(batch, n_in, generator=generator, **f64).to(device)
targets = X @ torch.randn(n_out, n_in, generator=generator, **f64).T.to(device)  # realisable: min L = 0
A = pc.random_spd(n_out, condition_number=100.0, generator=generator).to(device)  # an ill-conditioned loss
task_layer = torch.nn.Linear(n_in, n_out, bias=False).double().to(device)  # h(x) = W x
warp = pc.perturb_warp(LinearWarp(n_out).double(), scale=0.5, generator=generator).to(device)  # frozen T
Y = warp(task_layer(X))
(grad_autograd,) = torch.autograd.grad(pc.weighted_squared_error(Y, targets, A), task_layer.weight)

T, W = warp.weight, task_layer.weight.detach()
grad_gamma = ((Y.detach() - targets) @ A / batch).T @ X  # ∇_γ L = Σ_b ∂L/∂y_b x_bᵀ, by hand
grad_by_hand = T.T @ grad_gamma  # Tᵀ ∇_γ L
gradient_error = (grad_autograd - grad_by_hand).abs().max().item()

# %% [markdown]
# Now one step. Build $P$ explicitly as the $(n_\text{in} n_\text{out})$-square matrix $I \otimes TT^\top$ acting
# on $\operatorname{vec}\gamma$, step γ with it, and compare with what the step on θ does to $TW$.

# %%
alpha = 0.01
P_full = torch.kron(torch.eye(n_in, **f64).to(device), T @ T.T)  # I ⊗ TTᵀ on vec(γ)
gamma_after_theta_step = T @ (W - alpha * grad_autograd)  # step θ, look at the effective weights
gamma_after_preconditioned_step = pc.vec(T @ W) - alpha * P_full @ pc.vec(grad_gamma)
step_error = (pc.vec(gamma_after_theta_step) - gamma_after_preconditioned_step).abs().max().item()
warp_identity_max_error = warpkit.record("warp_identity_max_error", max(gradient_error, step_error))
print(f"max |autograd − Tᵀ∇γL| = {gradient_error:.2e}   (largest gradient entry {grad_autograd.abs().max():.1f})")
print(f"max |T(W − α∇W L) − (γ − α (I⊗TTᵀ) ∇γL)| = {step_error:.2e}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), layout="constrained")
draw01.draw_matrix(axes[0], T.cpu(), "frozen warp T")
draw01.draw_matrix(axes[1], P_full.cpu(), "P = I ⊗ TTᵀ (never formed by the network)")
axes[2].plot(grad_by_hand.flatten().cpu(), grad_autograd.flatten().cpu(), "o")
axes[2].set(xlabel="Tᵀ ∇γL (by hand)", ylabel="∂L/∂W (autograd)", title=f"max difference {gradient_error:.1e}")
warpkit.show_figure(fig, "01_warp_identity", SAVE_FIGS)

# %% [markdown]
# **Notice.** The two gradients agree to rounding error (the differences printed above are ~1e-13 or less on
# entries in the hundreds), and so do the two steps: the network never multiplies by P, yet every step on θ *is* a P-preconditioned step on γ.
# P is block-diagonal: the warp mixes the outputs of the layer, the same way for every input column.
#
# Does a good warp help? Pick $T = A^{-1/2}$, so $P = A^{-1}$ cancels the ill-conditioning of the loss. Train θ
# through it by plain autograd, from the same effective weights as an unwarped layer, each run with its own
# largest safe step $1/\lambda_{\max}$ of its preconditioned Hessian, and compare every step with
# preconditioned descent on γ written by hand (`pc.compare_warped_training`).

# %%
eigenvalues, eigenvectors = torch.linalg.eigh(A)
good_T = eigenvectors @ torch.diag(eigenvalues**-0.5) @ eigenvectors.T  # T = A^(-1/2), so TTᵀ = A⁻¹
gamma_0 = 0.1 * torch.randn(n_out, n_in, generator=generator, **f64).to(device)
warps = {"no warp (T = I)": torch.eye(n_out, **f64).to(device), "warp T = A^(-1/2)": good_T}
curves, trajectory_error = pc.compare_warped_training(warps, gamma_0, X, targets, A, steps=200)
trajectory_error = warpkit.record("warped_training_max_error", trajectory_error)

# %%
fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
for label, losses in curves.items():
    ax.semilogy((losses / losses[0]).cpu(), label=label)
ax.set(xlabel="step on θ", ylabel="L / L₀", ylim=(1e-16, 2), title="training θ through a frozen warp")
ax.legend()
warpkit.show_figure(fig, "01_training_through_warp", SAVE_FIGS)

# %% [markdown]
# **Notice.** Both runs use their own largest safe learning rate and start from the same effective weights.
# Through the warp, θ reaches machine precision in a few dozen steps; without it the flat directions of $A$
# are still far from converged after 200.
# At every step the effective weights of the warped run equal preconditioned descent on γ to rounding error
# (recorded as `warped_training_max_error`). WarpGrad meta-learns T so that this happens for every task.
#
# ## c. A non-linear warp: the preconditioner depends on the input
#
# A residual MLP warp $\omega(z) = z + g(z)$ sits on the layer's output $z = Wx$. Now
# $\partial L/\partial W = \sum_b J(z_b)^\top \frac{\partial L}{\partial y_b} x_b^\top$ with $J(z) = I + \partial g/\partial z$:
# each example's error signal is preconditioned by $P(z) = J(z)J(z)^\top$, which changes with $z$, that is with
# the data and with θ. That is what linear warps (T-Nets, Meta-Curvature) cannot do. Below, the ellipse at
# each input $z$ is the image of a small circle under $J(z)$: its axes are those of $P(z)$.

# %%
residual_warp = pc.perturb_warp(ResidualMLPWarp(2, hidden=16).double(), scale=0.5, generator=generator)
linear_warp = pc.perturb_warp(LinearWarp(2).double(), scale=0.5, generator=generator)
axis = torch.linspace(-2, 2, config.field_side, **f64)
inputs = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
draw01.draw_preconditioner_field(axes[0], linear_warp, inputs, "linear warp: the same P everywhere")
draw01.draw_preconditioner_field(axes[1], residual_warp, inputs, "residual MLP warp: P(z) = J(z)J(z)ᵀ varies")
warpkit.show_figure(fig, "01_nonlinear_preconditioner", SAVE_FIGS)
variation_linear = warpkit.record("preconditioner_variation_linear", pc.preconditioner_variation(linear_warp, inputs))
variation = warpkit.record("preconditioner_variation_residual", pc.preconditioner_variation(residual_warp, inputs))
print(f"max relative spread of P(z) over the grid: linear warp {variation_linear:.1e}, residual warp {variation:.2f}")

# %% [markdown]
# The identity still holds example by example: autograd's gradient on $W$ equals $\sum_b J(z_b)^\top g_b x_b^\top$
# with every Jacobian computed separately by `torch.func.jacrev`.

# %%
W2 = torch.randn(2, n_in, generator=generator, **f64).requires_grad_(True)
targets2 = torch.randn(batch, 2, generator=generator, **f64)
outputs = residual_warp(X.cpu() @ W2.T)
(grad_autograd2,) = torch.autograd.grad(0.5 * ((outputs - targets2) ** 2).sum() / batch, W2)
output_gradients = (outputs.detach() - targets2) / batch  # ∂L/∂y_b by hand
grad_by_hand2 = pc.nonlinear_warp_gradient_by_hand(residual_warp, W2.detach(), X.cpu(), output_gradients)
error = warpkit.record("nonlinear_warp_identity_max_error", (grad_autograd2 - grad_by_hand2).abs().max().item())
print(f"max |autograd − Σ_b J(z_b)ᵀ g_b x_bᵀ| = {error:.1e}")

# %% [markdown]
# **Notice.** The linear warp draws one ellipse shape everywhere: one P for all inputs. The residual warp's
# ellipses stretch and turn from place to place (a relative spread of P recorded as
# `preconditioner_variation_residual`, against ~1e-16 for the linear warp): where the data put $z$, the
# gradient is reshaped differently. Still, it is exactly backpropagation (the per-example identity holds to
# rounding error).
#
# ## d. A step in warped space is a Riemannian step in native space, up to O(α²)
#
# Now warp the *parameters*: $\gamma = \Omega(\theta)$ with the residual warp as Ω, $J = D_\theta\Omega$ and a loss
# $L(\gamma)$ (the quadratic of part a with κ = 10). A gradient step on θ, $\Delta\theta = J^\top \nabla L(\gamma)$,
# lands at $\Omega(\theta - \alpha\Delta\theta) = \gamma - \alpha J J^\top \nabla L(\gamma) + O(\alpha^2)$: the
# Riemannian step $G^{-1}\nabla L$ with $G^{-1} = JJ^\top$. So the error against the Riemannian step should shrink like
# $\alpha^2$ (slope 2 on a log-log plot), while the error against the plain Euclidean step $\gamma - \alpha\nabla L$
# only like $\alpha$.

# %%
native_loss = pc.quadratic_loss(pc.ill_conditioned_quadratic(10.0))
theta = torch.tensor([0.8, -0.5], **f64)
alphas = np.logspace(-4, -1, config.num_step_sizes)
errors = pc.step_errors(native_loss, residual_warp, theta, alphas)
slope = warpkit.record("riemann_error_slope", pc.loglog_slope(alphas, errors.riemannian))
euclidean_slope = warpkit.record("euclidean_error_slope", pc.loglog_slope(alphas, errors.euclidean))
loss_error_slope = warpkit.record("riemann_loss_error_slope", pc.loglog_slope(alphas, errors.loss))

# %%
fig, (ax_native, ax_errors) = plt.subplots(1, 2, figsize=(10.5, 4.4), layout="constrained")
draw01.draw_step_comparison(ax_native, native_loss, residual_warp, theta, alpha_max=0.4)
ax_errors.loglog(alphas, errors.riemannian, "o-", color="tab:green", label=f"vs Riemannian step (slope {slope:.2f})")
ax_errors.loglog(alphas, errors.euclidean, "s-", color="tab:red", label=f"vs Euclidean step (slope {euclidean_slope:.2f})")
ax_errors.loglog(alphas, errors.riemannian[0] * (alphas / alphas[0]) ** 2, "k:", label="∝ α²")
ax_errors.set(xlabel="step size α", ylabel="‖Ω(θ − αΔθ) − step‖", title="error of the first-order picture")
ax_errors.legend(fontsize=8)
warpkit.show_figure(fig, "01_riemannian_step", SAVE_FIGS)

# %% [markdown]
# **Notice.** On the left, the black curve (where warped steps of growing α land) leaves γ tangent to the thick
# green Riemannian line, not to the dashed Euclidean one: to first order, SGD on θ is Riemannian gradient descent on
# γ with the metric $G = (JJ^\top)^{-1}$. On the right the fitted slope is about 2 against the Riemannian step and
# about 1 against the Euclidean step. Because the warp is non-linear, G changes from point to point: this is the
# geometry lesson 03 explores, and the metric WarpGrad meta-learns (lesson 02 says how).
#
# ## Summary
#
# * Preconditioned descent x ← x − αP∇f converges at a rate set by κ(PH): plain GD needs steps in proportion to
#   κ(H), Jacobi removes bad scaling but not correlation, Newton (P = H⁻¹) needs one step on a quadratic.
# * A frozen linear warp T after a task layer turns every gradient step on θ into a step on γ = TW preconditioned
#   by P = TTᵀ, without ever forming P; a well-chosen T makes training fast.
# * A non-linear warp preconditions with P(z) = J(z)J(z)ᵀ that depends on the input, and a warped parameter step is
#   a Riemannian step under G⁻¹ = JJᵀ up to O(α²).
#
# ## Check yourself
#
# 1. Why is Jacobi's number of steps independent of κ(H) for our H = SCS, and which H would defeat it?
# 2. The network never multiplies by P = I ⊗ TTᵀ. Where in backpropagation does TTᵀ appear?
# 3. Why does the error against the Euclidean step shrink only like α, while the error against the Riemannian
#    step shrinks like α²?

# %%
warpkit.show_records()
