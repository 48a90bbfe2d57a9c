# %% [markdown]
# # Assignment 3: the metric a warp induces
#
# A warp Ω maps task parameters θ to native parameters γ = Ω(θ). A gradient step on θ lands, to first order,
# where a Riemannian gradient step γ − α G⁻¹ ∇L(γ) lands, with G⁻¹ = J Jᵀ and J = D_θΩ (lesson 03).
# You will compute J with `torch.func`, form G⁻¹, write the Riemannian step and measure the O(α²) gap.
#
# **How this works.** Each exercise is a function with a `NotImplementedError` in its body: replace those two
# lines with your code, then run the cell below it. Those cells run *public checks*; when they pass you see
# "public checks passed". Your instructor may run further tests when grading.

# %%
import torch
from torch.func import grad, jacrev

from warpkit.kit.checks import PublicChecks, check_close
from warpkit.engine.geometry import PlaneWarp

torch.manual_seed(0)
omega = PlaneWarp(strength=3.0, rotation=0.4, shear=0.5, nonlinearity=1.0).double()  # a non-linear warp of R²
theta0 = torch.tensor([0.3, -0.7], dtype=torch.float64)


def bumpy_loss(gamma):
    """L(γ) = ½ (γ₁² + 5 γ₂²) + sin(γ₁) cos(γ₂), a smooth non-quadratic loss on R²."""
    return 0.5 * (gamma[0] ** 2 + 5 * gamma[1] ** 2) + torch.sin(gamma[0]) * torch.cos(gamma[1])


# %% [markdown]
# ## Exercise 1: the warp's Jacobian
#
# Write `warp_jacobian(omega, theta)` returning J = D_θΩ(θ), the n×n matrix with J[a, b] = ∂Ω_a/∂θ_b.
# Use `torch.func.jacrev` (imported above as `jacrev`).

# %%
def warp_jacobian(omega, theta):
    """J = D_θΩ(θ) for a warp omega: R^n → R^n at one point theta of shape (n,)."""
    ### BEGIN SOLUTION
    return jacrev(omega)(theta)
    ### END SOLUTION


# %%
def finite_difference_jacobian(omega, theta, h=1e-6):
    """Central differences, column by column: an independent reference for J."""
    basis = torch.eye(len(theta), dtype=theta.dtype)
    columns = [(omega(theta + h * e) - omega(theta - h * e)) / (2 * h) for e in basis]
    return torch.stack(columns, dim=1)


with PublicChecks("warp_jacobian") as checks:
    J0 = warp_jacobian(omega, theta0)
    checks.shape("J is 2×2", J0, (2, 2))
    checks.close("J matches finite differences", J0, finite_difference_jacobian(omega, theta0), atol=1e-7,
                 hint="J[a, b] = ∂Ω_a/∂θ_b: rows are outputs, columns are inputs")
    A = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    checks.close("a linear warp Ω(θ) = A θ has J = A", warp_jacobian(lambda t: A @ t, theta0), A)
### BEGIN HIDDEN TESTS
from warpkit.engine.geometry import jacobian as library_jacobian

theta_h = torch.randn(2, dtype=torch.float64)
check_close("hidden: agrees with warpkit.engine.geometry.jacobian", warp_jacobian(omega, theta_h),
            library_jacobian(omega, theta_h))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: the inverse metric G⁻¹ = J Jᵀ
#
# Write `inverse_metric(J)`. G⁻¹ is the preconditioner that gradient descent on θ applies in native
# coordinates. It is symmetric and positive semi-definite for every J (positive definite when J is invertible).

# %%
def inverse_metric(J):
    """G⁻¹ = J Jᵀ."""
    ### BEGIN SOLUTION
    return J @ J.transpose(-1, -2)
    ### END SOLUTION


# %%
with PublicChecks("inverse_metric") as checks:
    G_inv_hand = inverse_metric(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    checks.close("worked by hand", G_inv_hand, [[5.0, 2.0], [2.0, 1.0]],
                 hint=("which product maps a step of θ to a step of γ and back: the order of J and Jᵀ matters",
                       "J Jᵀ, not Jᵀ J: [[1, 2], [0, 1]] @ [[1, 0], [2, 1]]"))
    G_inv0 = inverse_metric(warp_jacobian(omega, theta0))
    checks.close("symmetric", G_inv0, G_inv0.T)
    checks.true("positive definite here", torch.linalg.eigvalsh(G_inv0).min() > 0,
                "G⁻¹ has an eigenvalue ≤ 0 although J is invertible at theta0")
### BEGIN HIDDEN TESTS
from warpkit.engine.geometry import inverse_metric as library_inverse_metric

J_h = torch.randn(3, 2, dtype=torch.float64)
check_close("hidden: a non-square J gives a 3×3 matrix", inverse_metric(J_h), J_h @ J_h.T)
check_close("hidden: agrees with warpkit.engine.geometry", G_inv0, library_inverse_metric(omega, theta0))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: a Riemannian gradient step
#
# Write `riemannian_step(loss, omega, theta, lr)`: at γ = Ω(θ), return
#
# $$\gamma - \alpha\, G^{-1} \nabla L(\gamma), \qquad G^{-1} = J J^\top,\ J = D_\theta\Omega(\theta),$$
#
# using your two functions above and `torch.func.grad(loss)` (imported as `grad`) for ∇L(γ).
# The check compares it with a gradient step on θ of L∘Ω, mapped through Ω: the two differ by O(α²), so
# dividing α by 10 must divide the gap by about 100.

# %%
def riemannian_step(loss, omega, theta, lr):
    """γ − lr · G⁻¹ ∇L(γ) at γ = Ω(θ), G⁻¹ = J Jᵀ."""
    ### BEGIN SOLUTION
    gamma = omega(theta)
    preconditioner = inverse_metric(warp_jacobian(omega, theta))
    return gamma - lr * preconditioner @ grad(loss)(gamma)
    ### END SOLUTION


# %%
def warped_step(loss, omega, theta, lr):
    """Ω(θ − α ∇_θ L(Ω(θ))): plain gradient descent on θ, seen in native coordinates."""
    return omega(theta - lr * grad(lambda t: loss(omega(t)))(theta))


with PublicChecks("riemannian_step") as checks:
    quadratic = lambda g: 0.5 * (g**2).sum()  # noqa: E731  ∇L(γ) = γ
    stretch = lambda t: torch.tensor([2.0, 1.0], dtype=torch.float64) * t  # noqa: E731  J = diag(2, 1)
    checks.close("worked by hand: Ω = diag(2, 1), L = ½‖γ‖², θ = (1, 1), α = 0.1",
                 riemannian_step(quadratic, stretch, torch.ones(2, dtype=torch.float64), 0.1), [1.2, 0.9],
                 hint=("the step is taken in native coordinates, from γ = Ω(θ), with the metric at θ",
                       "γ = (2, 1), G⁻¹ = diag(4, 1), ∇L(γ) = γ"))
    gaps = [(riemannian_step(bumpy_loss, omega, theta0, lr) - warped_step(bumpy_loss, omega, theta0, lr)).norm()
            for lr in (1e-2, 1e-3)]
    checks.true("the gap to the warped step shrinks like α²", 30 < gaps[0] / gaps[1] < 300,
                f"dividing α by 10 divided the gap by {float(gaps[0] / gaps[1]):.3g}, not about 100",
                hint="the gap is O(α²) only if your step uses G⁻¹ = J Jᵀ at θ and ∇L at γ = Ω(θ)")
### BEGIN HIDDEN TESTS
from warpkit.engine.geometry import one_step_gap

torch.set_default_dtype(torch.float64)  # one_step_gap works in the default dtype
library_gap = one_step_gap(bumpy_loss, omega, theta0, 1e-3)
torch.set_default_dtype(torch.float32)
check_close("hidden: the gap agrees with warpkit.engine.geometry.one_step_gap", gaps[1], library_gap,
            rtol=1e-6, atol=1e-12)
check_close("hidden: lr = 0 gives γ itself", riemannian_step(bumpy_loss, omega, theta0, 0.0), omega(theta0))
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (written): why the step still descends
#
# In two or three sentences: why is −G⁻¹∇L(γ) a descent direction whenever J is invertible and ∇L(γ) ≠ 0,
# and what goes wrong where the warp folds the plane (J singular)?

# %% [markdown]
# ### BEGIN SOLUTION
# The change of L along −G⁻¹∇L is −∇Lᵀ J Jᵀ ∇L = −‖Jᵀ∇L‖², which is negative whenever Jᵀ∇L ≠ 0;
# if J is invertible, Jᵀ∇L ≠ 0 for every non-zero gradient, so the step descends for a small enough α. Where J is
# singular, G⁻¹ has a zero eigenvalue: gradient components along its null direction are ignored, the step can
# stall before a minimum, and the metric G = (JJᵀ)⁻¹ itself is undefined there.
# ### END SOLUTION

# %% [markdown]
# ## The lesson's self-check questions (written)
#
# 1. A linear warp Ω(θ) = Aθ has the same ellipse everywhere. What are its axes and semi-axes, in terms of A?
# 2. Why does the gap between warped and Riemannian GD shrink like α², and not like α?
# 3. Why is "SGD from WarpGrad's start" the right control for the claim "the learned geometry helps"? What does
#    the pinned-start variant rule out that the control does not?

# %% [markdown]
# ### BEGIN SOLUTION
# 1. G⁻¹ = AAᵀ = U diag(s²) Uᵀ for the SVD A = U diag(s) Vᵀ: the axes are the left singular vectors U, the
#    semi-axes the singular values s (the image of a unit circle of θ-steps under A).
# 2. One warped step is Ω(θ − αJᵀ∇L) = γ − αJJᵀ∇L + O(α²) by Taylor's theorem: the first-order terms are the
#    Riemannian step exactly, so each step differs by O(α²); a fixed number of steps adds up a fixed number of them.
# 3. WarpGrad learns a start and a geometry together; SGD from its own start Ω(θ₀) has the start but not the
#    geometry, so WarpGrad minus the control is what the geometry adds. But the warp was trained with the start,
#    and may only be good near it; with a random start per surface that the warp cannot move, any gain must come
#    from the metric itself, wherever the learner starts.
# ### END SOLUTION

# %% tags=["instructor"]
# Grading notes (instructor only). Exercise 3: a step that uses Jᵀ J instead of J Jᵀ passes the hand-worked
# check (J is diagonal there) but fails the O(α²) check on the twisted warp. Exercise 4: full marks for
# "−‖Jᵀ∇L‖² < 0" and "null direction of J Jᵀ ignored / G undefined".
from warpkit.engine.geometry import riemannian_gradient_step

gamma0 = omega(theta0)
G_inv_at_theta0 = inverse_metric(warp_jacobian(omega, theta0))
library_step = riemannian_gradient_step(gamma0, grad(bumpy_loss)(gamma0), G_inv_at_theta0, 0.05)
assert torch.allclose(riemannian_step(bumpy_loss, omega, theta0, 0.05), library_step, atol=1e-12)
print(f"gap ratio for α = 1e-2 → 1e-3: {float(gaps[0] / gaps[1]):.1f} (≈ 100 for an O(α²) gap)")
