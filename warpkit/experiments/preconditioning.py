r"""Preconditioned gradient descent, and why a frozen warp layer is a preconditioner (notebook 01).

**Preconditioned descent.** Gradient descent with a preconditioner P (symmetric positive definite) is

.. math::  x_{k+1} = x_k - \alpha\, P\, \nabla f(x_k).

On a quadratic f(x) = ½ (x − x*)ᵀ H (x − x*) the error obeys e_{k+1} = (I − α P H) e_k. PH is similar to the
symmetric P^{½} H P^{½}, so its eigenvalues are real and positive; with the step α = 1/λ_max(PH) every mode
contracts at least by 1 − 1/κ(PH) per step and f − f* by its square, so reaching f(x_k) ≤ tol·f(x_0) takes about
κ(PH)·ln(1/tol)/2 steps. Plain GD is P = I (κ(H)), Newton is P = H⁻¹ (κ = 1: one step), a diagonal (Jacobi)
P = diag(H)⁻¹ removes the bad scaling of the coordinates but not their correlation.

**The warp identity.** A task layer h(x) = W x (θ = W) followed by a frozen linear warp T behaves like an
unwarped layer with effective weights γ = T W. For any loss of y = T W x,

.. math::  \frac{\partial L}{\partial W} = T^\top \frac{\partial L}{\partial y} x^\top = T^\top \nabla_\gamma L,

so the step W ← W − α ∇_W L moves the effective weights by

.. math::  \gamma \leftarrow T W - \alpha\, T T^\top \nabla_\gamma L,

a preconditioned step with P = T Tᵀ (on vec(γ) the block-diagonal I ⊗ TTᵀ), never formed by the network.
A non-linear warp ω(z) = z + g(z) gives ∂L/∂W = Σ_b J(z_b)ᵀ (∂L/∂y_b) x_bᵀ with J(z) = ∂ω/∂z at z_b = W x_b:
the preconditioner J Jᵀ now depends on the input (and on θ through z).

**Riemannian steps.** With a warp Ω on the parameters (γ = Ω(θ), J = D_θΩ), a gradient step on θ of L∘Ω lands
at Ω(θ − α Jᵀ∇L(γ)) = γ − α JJᵀ ∇L(γ) + O(α²): the Riemannian step G⁻¹∇L with G⁻¹ = JJᵀ (Flennerhag et al., 2020, Section 2,
:mod:`warpkit.engine.geometry`). :func:`step_errors` measures both remainders so their slopes on a log-log plot can be
fitted (:func:`loglog_slope`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad

from warpkit.engine.geometry import inverse_metric, jacobian
from warpkit.engine.warp import LinearWarp
from warpkit.kit.notebook import progress

PRECONDITIONER_NAMES = ("none", "diagonal", "inverse Hessian")


# ----------------------------------------------------------------------------------------------------------
# a. gradient descent vs preconditioned descent on a quadratic
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quadratic:
    r"""f(x) = ½ (x − x*)ᵀ H (x − x*), with minimum f(x*) = 0 and gradient H (x − x*)."""

    hessian: np.ndarray
    minimum: np.ndarray

    def value(self, x: np.ndarray) -> np.ndarray:
        """f at one point (d,) or at points (..., d)."""
        e = np.asarray(x, dtype=float) - self.minimum
        return 0.5 * np.einsum("...i,ij,...j->...", e, self.hessian, e)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.minimum) @ self.hessian.T

    @property
    def condition_number(self) -> float:
        eigenvalues = np.linalg.eigvalsh(self.hessian)
        return float(eigenvalues[-1] / eigenvalues[0])


def ill_conditioned_quadratic(condition_number: float, correlation: float = 0.5,
                              minimum: Sequence[float] = (0.0, 0.0)) -> Quadratic:
    r"""A 2-D quadratic with H = S C S: C = [[1, ρ], [ρ, 1]] correlates the coordinates, S = diag(1, σ) scales
    the second one, and σ ≥ 1 is solved in closed form so that κ(H) = ``condition_number``.

    With t = tr H = 1 + σ² and det H = σ²(1 − ρ²), κ(H) = κ ⇔ t²/det = (1 + κ)²/κ, a quadratic equation in σ².
    The smallest reachable κ is (1 + |ρ|)/(1 − |ρ|) (σ = 1), which is also κ after Jacobi preconditioning for
    every σ: the diagonal preconditioner undoes S exactly and leaves C.
    """
    if not -1 < correlation < 1:
        raise ValueError(f"correlation must lie in (-1, 1), got {correlation}")
    smallest = (1 + abs(correlation)) / (1 - abs(correlation))
    if not condition_number >= smallest * (1 - 1e-12):
        raise ValueError(
            f"with correlation {correlation} the condition number must be at least {smallest:.4g}, "
            f"got {condition_number}; lower the correlation or raise the condition number"
        )
    q = (1 - correlation**2) * (1 + condition_number) ** 2 / condition_number
    sigma_squared = ((q - 2) + math.sqrt(max((q - 2) ** 2 - 4, 0.0))) / 2
    scale = np.diag([1.0, math.sqrt(sigma_squared)])
    correlation_matrix = np.array([[1.0, correlation], [correlation, 1.0]])
    return Quadratic(hessian=scale @ correlation_matrix @ scale, minimum=np.asarray(minimum, dtype=float))


def preconditioner(quadratic: Quadratic, name: str) -> np.ndarray:
    """P for ``name`` in :data:`PRECONDITIONER_NAMES`: I, diag(H)⁻¹ (Jacobi) or H⁻¹ (Newton)."""
    hessian = quadratic.hessian
    if name == "none":
        return np.eye(len(hessian))
    if name == "diagonal":
        return np.diag(1.0 / np.diag(hessian))
    if name == "inverse Hessian":
        return np.linalg.inv(hessian)
    raise ValueError(f"unknown preconditioner {name!r}; choose one of {PRECONDITIONER_NAMES}")


def largest_stable_rate(quadratic: Quadratic, preconditioner_matrix: np.ndarray) -> float:
    """α = 1/λ_max(PH): the step used for every method (each gets its own best safe constant step)."""
    return float(1.0 / np.max(np.linalg.eigvals(preconditioner_matrix @ quadratic.hessian).real))


@dataclass
class Descent:
    """A run of (preconditioned) gradient descent: ``points`` (steps + 1, d), ``losses`` (steps + 1,)."""

    points: np.ndarray
    losses: np.ndarray
    lr: float
    preconditioner: np.ndarray

    def steps_to(self, tol: float) -> int:
        """The first k with f(x_k) ≤ tol · f(x_0) (f* = 0); raises if the run never gets there."""
        return steps_to_tolerance(self.losses, tol)


def preconditioned_descent(quadratic: Quadratic, start: Sequence[float], preconditioner_matrix: np.ndarray,
                           steps: int, lr: float | None = None, tol: float | None = None) -> Descent:
    r"""x_{k+1} = x_k − α P ∇f(x_k) for ``steps`` steps (or until f ≤ tol·f(x_0) when ``tol`` is given).

    ``lr`` defaults to :func:`largest_stable_rate`.
    """
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    lr = largest_stable_rate(quadratic, preconditioner_matrix) if lr is None else float(lr)
    point = np.asarray(start, dtype=float)
    points, losses = [point], [float(quadratic.value(point))]
    for _ in range(steps):
        if tol is not None and losses[-1] <= tol * losses[0]:
            break
        point = point - lr * preconditioner_matrix @ quadratic.gradient(point)
        points.append(point)
        losses.append(float(quadratic.value(point)))
    return Descent(np.array(points), np.array(losses), lr, preconditioner_matrix)


def steps_to_tolerance(losses: Sequence[float], tol: float) -> int:
    """The first index k with ``losses[k] ≤ tol · losses[0]`` (the loss's minimum is 0)."""
    losses = np.asarray(losses, dtype=float)
    reached = np.flatnonzero(losses <= tol * losses[0])
    if reached.size == 0:
        raise ValueError(
            f"the loss never fell to {tol:g} × its start in {len(losses) - 1} steps "
            f"(last ratio {losses[-1] / losses[0]:.3g}); run more steps"
        )
    return int(reached[0])


def predicted_steps(condition_number: float, tol: float) -> float:
    r"""Steps GD with α = 1/λ_max needs when the slowest mode dominates: ln(tol) / (2 ln(1 − 1/κ))."""
    if condition_number <= 1:
        return 1.0
    return math.log(tol) / (2 * math.log(1 - 1 / condition_number))


def steps_versus_condition(condition_numbers: Sequence[float], start: Sequence[float], tol: float,
                           correlation: float = 0.5, max_steps: int = 200_000,
                           show_progress: bool = False) -> dict[str, list[int]]:
    """Steps to ``tol`` for every preconditioner in :data:`PRECONDITIONER_NAMES`, per condition number."""
    steps: dict[str, list[int]] = {name: [] for name in PRECONDITIONER_NAMES}
    for kappa in progress(condition_numbers, show=show_progress, desc="condition numbers"):
        quadratic = ill_conditioned_quadratic(kappa, correlation)
        for name in PRECONDITIONER_NAMES:
            run = preconditioned_descent(quadratic, start, preconditioner(quadratic, name), max_steps, tol=tol)
            steps[name].append(run.steps_to(tol))
    return steps


# ----------------------------------------------------------------------------------------------------------
# b. the warp identity: a frozen linear warp after a task layer preconditions its gradient by T Tᵀ
# ----------------------------------------------------------------------------------------------------------
def vec(matrix: Tensor) -> Tensor:
    """Column-stacking vec(M), so that vec(P M) = (I ⊗ P) vec(M)."""
    return matrix.T.reshape(-1)


def random_spd(size: int, condition_number: float, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> Tensor:
    """A random symmetric positive definite matrix Q diag(λ) Qᵀ with λ log-spaced from 1 to κ."""
    q, _ = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=dtype))
    eigenvalues = torch.logspace(0, math.log10(condition_number), size, dtype=dtype)
    return q @ torch.diag(eigenvalues) @ q.T


def weighted_squared_error(outputs: Tensor, targets: Tensor, metric: Tensor) -> Tensor:
    r"""L = (1/2B) Σ_b (y_b − t_b)ᵀ A (y_b − t_b); its gradient by hand is ∂L/∂y_b = A (y_b − t_b) / B."""
    residual = outputs - targets
    return 0.5 * torch.einsum("bi,ij,bj->", residual, metric, residual) / outputs.shape[0]


@torch.no_grad()
def perturb_warp(warp: nn.Module, scale: float, generator: torch.Generator | None = None) -> nn.Module:
    """Add N(0, scale²) noise to every parameter of ``warp`` (in place) and freeze it.

    Warps start at the identity; a meta-learned warp is not. This stands in for one, so the lesson can show
    what a non-trivial frozen φ does to the gradient of θ.
    """
    for parameter in warp.parameters():
        parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return warp.requires_grad_(False)


def train_through_warp(warp: nn.Module, weight: Tensor, inputs: Tensor, targets: Tensor, metric: Tensor,
                       lr: float, steps: int) -> tuple[Tensor, Tensor]:
    r"""Gradient descent on θ = W of L(T W x) with the warp frozen; returns the effective weights γ_k = T W_k
    (k = 0 … steps, stacked) and the losses. Autograd does all the work: no preconditioner is formed."""
    weight = weight.detach().clone().requires_grad_(True)
    effective, losses = [], []
    for _ in range(steps + 1):
        loss = weighted_squared_error(warp(inputs @ weight.T), targets, metric)
        (gradient,) = torch.autograd.grad(loss, weight)
        with torch.no_grad():
            effective.append(warp.weight @ weight)
            losses.append(loss.detach())
            weight -= lr * gradient
    return torch.stack(effective), torch.stack(losses)


def preconditioned_effective_descent(gamma: Tensor, inputs: Tensor, targets: Tensor, metric: Tensor,
                                     preconditioner_matrix: Tensor, lr: float, steps: int) -> tuple[Tensor, Tensor]:
    r"""γ ← γ − α P ∇_γ L on the *unwarped* layer y = γ x (+ the warp's bias is not used here), with the
    gradient written by hand, ∇_γ L = (1/B) Σ_b A (γ x_b − t_b) x_bᵀ; returns (γ_k stacked, losses)."""
    batch = inputs.shape[0]
    gammas, losses = [], []
    for _ in range(steps + 1):
        residual = inputs @ gamma.T - targets
        gammas.append(gamma)
        losses.append(0.5 * torch.einsum("bi,ij,bj->", residual, metric, residual) / batch)
        gamma = gamma - lr * preconditioner_matrix @ (metric @ residual.T @ inputs / batch)
    return torch.stack(gammas), torch.stack(losses)


def compare_warped_training(warps: dict[str, Tensor], gamma_0: Tensor, inputs: Tensor, targets: Tensor,
                            metric: Tensor, steps: int) -> tuple[dict[str, Tensor], float]:
    r"""Train θ = W through each frozen linear warp T of ``warps`` (label → T) and check it against
    preconditioned descent on γ with P = TTᵀ written by hand.

    Every run starts from the same effective weights γ₀ (W₀ = T⁻¹γ₀) and uses its own largest safe step
    α = 1/λ_max(C ⊗ PA), where C = XᵀX/B and A = ``metric``: the Hessian of L in vec(γ) is C ⊗ A, and
    preconditioning by I ⊗ P makes it C ⊗ PA. Returns (losses per label, max |γ_k(warped) − γ_k(by hand)|).
    """
    curves, worst = {}, 0.0
    covariance = inputs.T @ inputs / inputs.shape[0]
    for label, T in warps.items():
        warp = LinearWarp(T.shape[0], bias=False).to(dtype=T.dtype, device=T.device).requires_grad_(False)
        warp.weight.copy_(T)
        P = T @ T.T
        lr = 1.0 / (torch.linalg.eigvalsh(covariance).max() * torch.linalg.eigvals(P @ metric).real.max()).item()
        gammas, curves[label] = train_through_warp(warp, torch.linalg.solve(T, gamma_0), inputs, targets, metric,
                                                   lr, steps)
        by_hand, _ = preconditioned_effective_descent(gamma_0, inputs, targets, metric, P, lr, steps)
        worst = max(worst, (gammas - by_hand).abs().max().item())
    return curves, worst


# ----------------------------------------------------------------------------------------------------------
# c. a non-linear warp: the preconditioner depends on the input
# ----------------------------------------------------------------------------------------------------------
def preconditioner_at(warp: Callable[[Tensor], Tensor], inputs: Tensor) -> Tensor:
    """P(z) = J(z) J(z)ᵀ at every row z of ``inputs`` (N, n) → (N, n, n); J = ∂ω/∂z (``geometry.inverse_metric``)."""
    return inverse_metric(warp, inputs)


def preconditioner_variation(warp: Callable[[Tensor], Tensor], inputs: Tensor) -> float:
    r"""max_z ‖P(z) − P̄‖_F / ‖P̄‖_F over the rows of ``inputs``, P̄ the mean: 0 for a linear warp."""
    with torch.no_grad():
        field = preconditioner_at(warp, inputs)
    mean = field.mean(dim=0)
    return float(((field - mean).flatten(1).norm(dim=1) / mean.norm()).max())


def nonlinear_warp_gradient_by_hand(warp: Callable[[Tensor], Tensor], weight: Tensor, inputs: Tensor,
                                    output_gradients: Tensor) -> Tensor:
    r"""Σ_b J(z_b)ᵀ g_b x_bᵀ with z_b = W x_b and g_b = ∂L/∂y_b: the gradient reaching W through ω."""
    jacobians = jacobian(warp, inputs @ weight.T)  # (B, m, m)
    preconditioned = torch.einsum("bij,bi->bj", jacobians, output_gradients)  # J(z_b)ᵀ g_b
    return preconditioned.T @ inputs


# ----------------------------------------------------------------------------------------------------------
# d. a step in warped space is a Riemannian step in native space, up to O(α²)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class StepErrors:
    """For each α: ``riemannian`` = ‖Ω(θ − αΔθ) − (γ − α JJᵀ∇L)‖, ``euclidean`` = ‖Ω(θ − αΔθ) − (γ − α∇L)‖,
    ``loss`` = |L(Ω(θ − αΔθ)) − L(γ − α JJᵀ∇L)|."""

    alphas: np.ndarray
    riemannian: np.ndarray
    euclidean: np.ndarray
    loss: np.ndarray


def step_errors(loss: Callable[[Tensor], Tensor], warp: Callable[[Tensor], Tensor], theta: Tensor,
                alphas: Sequence[float]) -> StepErrors:
    r"""Compare the native point reached by a gradient step on θ with the Riemannian and Euclidean steps.

    The warped-space gradient Δθ = ∇_θ (L∘Ω)(θ) comes from autograd through the warp; JJᵀ comes from
    ``torch.func.jacrev`` (:func:`warpkit.engine.geometry.inverse_metric`), so the two sides are computed independently.
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    gamma = warp(theta).detach()
    delta_theta = grad(lambda t: loss(warp(t)))(theta).detach()
    native_gradient = grad(loss)(gamma).detach()
    riemannian_direction = inverse_metric(warp, theta).detach() @ native_gradient
    rows = []
    for alpha in alphas:
        with torch.no_grad():
            landed = warp(theta - alpha * delta_theta)
            riemannian = gamma - alpha * riemannian_direction
            rows.append((
                (landed - riemannian).norm().item(),
                (landed - (gamma - alpha * native_gradient)).norm().item(),
                abs(loss(landed).item() - loss(riemannian).item()),
            ))
    errors = np.array(rows)
    return StepErrors(np.asarray(alphas, dtype=float), errors[:, 0], errors[:, 1], errors[:, 2])


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (the order p of y ≈ C xᵖ)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("loglog_slope() needs positive values on both axes")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def quadratic_loss(quadratic: Quadratic) -> Callable[[Tensor], Tensor]:
    """The quadratic of part a as a float64 torch function of one point, for :func:`step_errors`."""
    hessian = torch.as_tensor(quadratic.hessian, dtype=torch.float64)
    minimum = torch.as_tensor(quadratic.minimum, dtype=torch.float64)

    def loss(x: Tensor) -> Tensor:
        e = x - minimum
        return 0.5 * e @ hessian @ e

    return loss


@dataclass(frozen=True)
class PreconditioningConfig:
    """Lesson 01's sizes (one of :data:`SIZES`)."""

    largest_condition_number: float = 1e3  # steps to tolerance for κ(H) from 3 to this
    num_condition_numbers: int = 8
    num_step_sizes: int = 10  # step sizes α of the O(α²) check
    field_side: int = 7  # inputs per side of the preconditioner-field grid
    tolerance: float = 1e-6  # "converged": f(x_k) ≤ tolerance · f(x_0)
    start: tuple = (-1.5, 0.4)  # where every descent on the quadratic starts

    @property
    def condition_numbers(self) -> np.ndarray:
        return np.logspace(np.log10(3), np.log10(self.largest_condition_number), self.num_condition_numbers)


#: ``fast``: about 20 s on a CPU (the tests); ``gpu``: more condition numbers and step sizes (a GPU run's lesson);
#: ``full``: more still.
SIZES: dict[str, PreconditioningConfig] = {
    "fast": PreconditioningConfig(),
    "gpu": PreconditioningConfig(largest_condition_number=1e4, num_condition_numbers=16, num_step_sizes=20,
                                 field_side=9),
    "full": PreconditioningConfig(largest_condition_number=1e4, num_condition_numbers=30, num_step_sizes=30,
                                  field_side=11),
}
