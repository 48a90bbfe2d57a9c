r"""The geometry of warping: Jacobians, the metric G⁻¹ = JJᵀ, Riemannian steps, and toy warps of the plane.

Notation (Flennerhag et al., 2020, Section 2). Task parameters are θ; a warp with parameters φ induces the reparameterisation
γ = Ω(θ; φ): a warped model with parameters θ behaves like an unwarped model with *native* parameters γ.
Write J(θ) = D_θΩ(θ) for the warp's Jacobian. A gradient step on θ of the warped loss L(Ω(θ)),

.. math::  Δθ = ∇_θ L(Ω(θ)) = J(θ)^\top ∇L(γ),

moves the native parameters by

.. math::  Ω(θ - αΔθ) = γ - α\, J J^\top ∇L(γ) + O(α^2) = γ - α\, G^{-1}(γ) ∇L(γ) + O(α^2),

so plain gradient descent in warped coordinates is, to first order, *Riemannian* gradient descent in native
coordinates under the metric G with inverse G⁻¹ = J Jᵀ (positive definite wherever J is non-singular).

What lives here:

* :func:`jacobian` (``torch.func.jacrev`` vmapped over points), :func:`inverse_metric` (G⁻¹ = JJᵀ),
  :func:`metric` (G = (JJᵀ)⁻¹), :func:`metric_ellipses` (the image of a unit circle of θ-steps under J: axes =
  left singular vectors of J, semi-axes = its singular values, i.e. the ellipse {v : vᵀ G v ≤ 1}),
* :func:`riemannian_gradient_step` (γ ← γ − α G⁻¹ ∇L(γ)) and the three descent paths compared in notebook 03:
  :func:`gradient_descent_path` (native), :func:`warped_descent_path` (GD on θ of L∘Ω, mapped to γ = Ω(θ)) and
  :func:`riemannian_descent_path` (γ ← γ − α G⁻¹(γ) ∇L(γ), with G⁻¹ evaluated at θ = Ω⁻¹(γ) found by Newton's
  method, :func:`invert_warp`),
* :func:`warped_grid_lines` (the images under Ω of a regular θ-grid),
* the toy warps :class:`PlaneWarp` (stretch, rotation, shear and a twist; a warp given by a 4-number parameter
  vector), :func:`linear_warp` and :func:`random_residual_warp`. The loss surfaces and the Appendix D experiment
  live in :mod:`warpkit.experiments.mountains`.

A *warp* here is any map of R^n to R^n: a callable or an ``nn.Module`` that accepts one point of shape (n,)
(and, for drawing, a batch of shape (N, n)). Points are float tensors of shape (n,) or (N, n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import grad, jacrev, vmap

from warpkit.engine.warp import ResidualMLPWarp

Warp = Callable[[Tensor], Tensor]
Loss = Callable[[Tensor], Tensor]
#: :func:`metric` refuses points where JJᵀ is this badly conditioned (the warp folds or collapses the plane there)
MAX_CONDITION = 1e12


# ----------------------------------------------------------------------------------------------------------
# argument checking
# ----------------------------------------------------------------------------------------------------------
def _as_points(points, name: str = "points") -> tuple[Tensor, bool]:
    """Return ``(points as (N, n) float tensor, was_single_point)``."""
    if not isinstance(points, Tensor):
        points = torch.as_tensor(points, dtype=torch.get_default_dtype())
    if not points.is_floating_point():
        points = points.to(torch.get_default_dtype())
    if points.dim() == 1:
        return points.unsqueeze(0), True
    if points.dim() != 2:
        raise ValueError(
            f"{name} must have shape (n,) for one point or (N, n) for N points, got shape {tuple(points.shape)}"
        )
    return points, False


def _check_warp(warp) -> Warp:
    if not callable(warp):
        raise TypeError(
            f"expected a warp: a callable or nn.Module mapping a point of shape (n,) to shape (n,), "
            f"got {type(warp).__name__}"
        )
    return warp


def _apply_pointwise(fn: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    return vmap(fn)(points)


# Sequential loops (descent paths, Newton) take one small step at a time; there ``torch.autograd`` has a
# fraction of ``torch.func``'s per-call overhead, which is what keeps the explorers' redraws fast. Batched
# work over many points (Jacobians on a grid) uses ``torch.func``.
def _gradient_at(fn: Callable[[Tensor], Tensor], point: Tensor) -> Tensor:
    """∇fn(point) for a scalar fn of one point, by reverse-mode autograd."""
    with torch.enable_grad():
        point = point.detach().requires_grad_(True)
        return torch.autograd.grad(fn(point), point)[0]


def _jacobian_at(warp: Warp, point: Tensor) -> Tensor:
    """D warp(point), (n, n), one reverse pass per output coordinate."""
    with torch.enable_grad():
        point = point.detach().requires_grad_(True)
        out = warp(point)
        rows = [torch.autograd.grad(out[i], point, retain_graph=i < len(out) - 1)[0] for i in range(len(out))]
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------------------------
# Jacobian and metric
# ----------------------------------------------------------------------------------------------------------
def warp_points(warp: Warp, points) -> Tensor:
    """γ = Ω(θ) for one point (n,) or a batch (N, n) (vmapped, so ``warp`` only needs to handle one point).

    >>> warp_points(linear_warp([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [0.5, -1.0]])).tolist()
    [[2.0, 1.0], [1.0, -1.0]]
    """
    warp = _check_warp(warp)
    batch, single = _as_points(points)
    out = _apply_pointwise(warp, batch)
    if out.shape != batch.shape:
        raise ValueError(
            f"the warp must map R^n to R^n (same shape out as in); it mapped {tuple(batch.shape[1:])} to "
            f"{tuple(out.shape[1:])}"
        )
    return out[0] if single else out


def jacobian(warp: Warp, points) -> Tensor:
    r"""J(θ) = D_θΩ(θ), by ``torch.func.jacrev`` vmapped over points.

    ``points``: (n,) → returns (n, n); (N, n) → returns (N, n, n) with ``J[i, a, b] = ∂Ω_a/∂θ_b`` at point i.

    >>> jacobian(linear_warp([[2.0, 1.0], [0.0, 3.0]]), torch.zeros(2)).tolist()
    [[2.0, 1.0], [0.0, 3.0]]
    """
    warp = _check_warp(warp)
    batch, single = _as_points(points)
    jac = vmap(jacrev(warp))(batch)
    n = batch.shape[1]
    if jac.shape[1:] != (n, n):
        raise ValueError(f"the warp must map R^{n} to R^{n}; its Jacobian has shape {tuple(jac.shape[1:])}")
    return jac[0] if single else jac


def inverse_metric(warp: Warp, points) -> Tensor:
    r"""G⁻¹(γ) = J Jᵀ with J = D_θΩ at θ (``points`` are θ's; the metric lives at γ = Ω(θ)).

    This is the preconditioner that gradient descent on θ applies in native coordinates (Flennerhag et al., 2020, Section 2).
    Shape: (n, n) for one point, (N, n, n) for N.

    >>> inverse_metric(linear_warp([[2.0, 0.0], [0.0, 3.0]]), torch.zeros(2)).tolist()   # A Aᵀ
    [[4.0, 0.0], [0.0, 9.0]]
    """
    jac = jacobian(warp, points)
    return jac @ jac.transpose(-1, -2)


def metric(warp: Warp, points) -> Tensor:
    r"""G = (J Jᵀ)⁻¹, the Riemannian metric the warp induces on native coordinates.

    Raises ``ValueError`` where J is (numerically) singular, i.e. where the warp folds the plane and G is
    not defined (a condition number of JJᵀ of :data:`MAX_CONDITION` or more).

    >>> G = metric(linear_warp([[2.0, 0.0], [0.0, 3.0]]), torch.zeros(2))
    >>> torch.allclose(G, torch.diag(torch.tensor([1 / 4, 1 / 9])))
    True
    """
    inv = inverse_metric(warp, points)
    condition = torch.linalg.cond(inv)
    if not torch.all(torch.isfinite(condition) & (condition < MAX_CONDITION)):
        worst = condition.max().item() if condition.numel() else float("nan")
        raise ValueError(
            f"metric(): J Jᵀ is singular or badly conditioned (condition number {worst:.3g} ≥ {MAX_CONDITION:g}) "
            "at some point: the warp is degenerate there (it folds or collapses the plane), so G is undefined. "
            "Use inverse_metric() (always defined) or move the points."
        )
    return torch.linalg.inv(inv)


def riemannian_gradient_step(gamma: Tensor, gradient: Tensor, inverse_metric_at_gamma: Tensor, lr: float) -> Tensor:
    r"""One Riemannian gradient step γ ← γ − α G⁻¹ ∇L(γ).

    ``gamma`` and ``gradient`` have shape (n,) (or (N, n) with ``inverse_metric_at_gamma`` of shape (N, n, n)).

    >>> step = riemannian_gradient_step(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]),
    ...                                 torch.diag(torch.tensor([4.0, 1.0])), lr=0.1)
    >>> [round(value, 4) for value in step.tolist()]
    [0.6, 0.9]
    """
    if gamma.shape != gradient.shape:
        raise ValueError(f"gamma {tuple(gamma.shape)} and gradient {tuple(gradient.shape)} must have one shape")
    if inverse_metric_at_gamma.shape != gamma.shape + gamma.shape[-1:]:
        raise ValueError(
            f"inverse_metric_at_gamma must have shape {tuple(gamma.shape + gamma.shape[-1:])}, "
            f"got {tuple(inverse_metric_at_gamma.shape)}"
        )
    return gamma - lr * (inverse_metric_at_gamma @ gradient.unsqueeze(-1)).squeeze(-1)


def _newton_inverse(warp: Warp, gamma: Tensor, theta_init: Tensor | None, steps: int,
                    tol: float) -> tuple[Tensor, float]:
    """Newton's method for Ω(θ) = γ; returns ``(θ, residual norm)`` and stops early at a singular Jacobian."""
    theta = (gamma if theta_init is None else theta_init).detach().clone()
    with torch.no_grad():
        residual = warp(theta) - gamma
    for _ in range(steps):
        if residual.norm() <= tol:
            break
        step, info = torch.linalg.solve_ex(_jacobian_at(warp, theta), residual)
        if info.item() != 0:  # singular Jacobian: the residual stays above tol
            break
        theta = theta - step
        with torch.no_grad():
            residual = warp(theta) - gamma
    return theta.detach(), float(residual.norm())


def _default_tol(gamma: Tensor) -> float:
    return 1e-10 if gamma.dtype == torch.float64 else 1e-4


def invert_warp(warp: Warp, gamma: Tensor, theta_init: Tensor | None = None, steps: int = 50,
                tol: float | None = None) -> Tensor:
    r"""θ with Ω(θ) = γ, by Newton's method θ ← θ − J(θ)⁻¹ (Ω(θ) − γ), started at ``theta_init`` (default γ).

    Used to evaluate the metric at a native point: G⁻¹(γ) = J(Ω⁻¹(γ)) J(Ω⁻¹(γ))ᵀ. ``tol`` bounds the residual
    ‖Ω(θ) − γ‖ (default 1e-10 in float64, 1e-4 in float32). Raises ``RuntimeError`` if Newton does not get
    there (a warp that is not invertible near γ).

    >>> warp = PlaneWarp(strength=2.0, rotation=0.5, nonlinearity=1.0)
    >>> theta = invert_warp(warp, torch.tensor([0.3, -0.4]))
    >>> torch.allclose(warp(theta), torch.tensor([0.3, -0.4]), atol=1e-4)
    True
    """
    warp = _check_warp(warp)
    tol = _default_tol(gamma) if tol is None else tol
    theta, residual = _newton_inverse(warp, gamma, theta_init, steps, tol)
    if not residual <= tol:
        raise RuntimeError(
            f"invert_warp(): Newton's method did not converge in {steps} steps (residual {residual:.3g}); "
            "the warp is probably not invertible near this point. Start closer (theta_init) or use more steps."
        )
    return theta


# ----------------------------------------------------------------------------------------------------------
# descent paths
# ----------------------------------------------------------------------------------------------------------
def check_path_args(lr: float, steps: int) -> None:
    """Refuse a step size that is not a positive finite number and a number of steps that is not an int >= 0.

    >>> check_path_args(0.1, 10)
    >>> check_path_args(-0.1, 10)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a positive finite number, got -0.1
    """
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")


def gradient_descent_path(loss: Loss, start: Tensor, lr: float, steps: int) -> Tensor:
    r"""Plain gradient descent in native coordinates, γ_{k+1} = γ_k − α ∇L(γ_k); returns (steps + 1, n).

    >>> gradient_descent_path(lambda g: (g ** 2).sum(), torch.tensor([1.0, -2.0]), lr=0.25, steps=2).tolist()
    [[1.0, -2.0], [0.5, -1.0], [0.25, -0.5]]
    """
    check_path_args(lr, steps)
    point, path = torch.as_tensor(start, dtype=torch.get_default_dtype()).detach(), []
    path.append(point)
    for _ in range(steps):
        point = point - lr * _gradient_at(loss, point)
        path.append(point)
    return torch.stack(path).detach()


def warped_descent_path(loss: Loss, warp: Warp, theta0: Tensor, lr: float, steps: int) -> tuple[Tensor, Tensor]:
    r"""Gradient descent on θ of the warped loss, θ_{k+1} = θ_k − α ∇_θ L(Ω(θ_k)).

    Returns ``(thetas, gammas)``, both (steps + 1, n), with γ_k = Ω(θ_k) the path seen in native coordinates.

    >>> warp = linear_warp([[2.0, 0.0], [0.0, 1.0]])
    >>> thetas, gammas = warped_descent_path(lambda g: (g ** 2).sum(), warp, torch.tensor([0.5, 1.0]), 0.125, 1)
    >>> thetas.tolist(), gammas.tolist()   # ∇_θ L(Ω(θ)) = (8θ₁, 2θ₂)
    ([[0.5, 1.0], [0.0, 0.75]], [[1.0, 1.0], [0.0, 0.75]])
    """
    check_path_args(lr, steps)
    warp = _check_warp(warp)
    def warped_loss(theta):
        return loss(warp(theta))

    theta, thetas = torch.as_tensor(theta0, dtype=torch.get_default_dtype()).detach(), []
    thetas.append(theta)
    for _ in range(steps):
        theta = theta - lr * _gradient_at(warped_loss, theta)
        thetas.append(theta)
    thetas = torch.stack(thetas).detach()
    return thetas, warp_points(warp, thetas).detach()


def riemannian_descent_path(loss: Loss, warp: Warp, gamma0: Tensor, lr: float, steps: int,
                            theta0: Tensor | None = None, on_failure: str = "raise") -> Tensor:
    r"""Riemannian gradient descent in native coordinates, γ_{k+1} = γ_k − α G⁻¹(γ_k) ∇L(γ_k).

    G⁻¹(γ) = J(θ)J(θ)ᵀ at θ = Ω⁻¹(γ), found by :func:`invert_warp` warm-started at the previous θ moved by
    the warped step −α Jᵀ∇L (``theta0`` is a first guess for Ω⁻¹(γ_0)). Returns (steps + 1, n). Where the warp cannot be inverted
    (it folds the plane there, so G is undefined) ``on_failure="raise"`` raises; ``"stop"`` returns the path
    up to that point (shorter than steps + 1), which is what an interactive explorer wants.

    >>> warp = linear_warp([[2.0, 0.0], [0.0, 1.0]])   # G⁻¹ = AAᵀ = diag(4, 1) everywhere
    >>> riemannian_descent_path(lambda g: (g ** 2).sum(), warp, torch.tensor([1.0, 1.0]), 0.125, 1).tolist()
    [[1.0, 1.0], [0.0, 0.75]]
    """
    check_path_args(lr, steps)
    if on_failure not in ("raise", "stop"):
        raise ValueError(f"on_failure must be 'raise' or 'stop', got {on_failure!r}")
    warp = _check_warp(warp)
    gamma = torch.as_tensor(gamma0, dtype=torch.get_default_dtype()).detach()
    theta = invert_warp(warp, gamma, theta0)
    path = [gamma]
    for _ in range(steps):
        jac = _jacobian_at(warp, theta)
        gradient = _gradient_at(loss, gamma)
        gamma = riemannian_gradient_step(gamma, gradient, jac @ jac.T, lr)
        # warm start: to first order Ω⁻¹ moves by J⁻¹(−α JJᵀ∇L) = −α Jᵀ∇L (the warped step), which leaves
        # Newton an O(α²) residual instead of O(α)
        warm_start = theta - lr * jac.T @ gradient
        if on_failure == "raise":
            theta = invert_warp(warp, gamma, warm_start)
        else:
            theta, residual = _newton_inverse(warp, gamma, warm_start, 50, _default_tol(gamma))
            if not residual <= _default_tol(gamma):
                break
        path.append(gamma)
    return torch.stack(path).detach()


def path_gap(path_a: Tensor, path_b: Tensor) -> float:
    """max_k ‖a_k − b_k‖ over two paths of the same length.

    >>> path_gap(torch.zeros(3, 2), torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]))
    5.0
    """
    if path_a.shape != path_b.shape:
        raise ValueError(f"paths must have one shape, got {tuple(path_a.shape)} and {tuple(path_b.shape)}")
    return (path_a - path_b).norm(dim=-1).max().item()


def one_step_gap(loss: Loss, warp: Warp, theta: Tensor, lr: float) -> float:
    r"""‖Ω(θ − α Jᵀ∇L(γ)) − (γ − α JJᵀ ∇L(γ))‖ at γ = Ω(θ): the O(α²) remainder of Flennerhag et al., 2020, Section 2.

    >>> warp, loss, theta = PlaneWarp(nonlinearity=1.0), (lambda g: (g ** 2).sum()), torch.tensor([0.5, 0.2])
    >>> small, large = one_step_gap(loss, warp, theta, 0.01), one_step_gap(loss, warp, theta, 0.02)
    >>> 3.0 < large / small < 5.0   # O(α²): twice the step, about four times the gap
    True
    """
    theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
    gamma = warp(theta)
    jac = jacrev(warp)(theta)
    g = grad(loss)(gamma)
    warped = warp(theta - lr * jac.T @ g)
    riemannian = gamma - lr * jac @ jac.T @ g
    return (warped - riemannian).norm().item()


# ----------------------------------------------------------------------------------------------------------
# grids and ellipses
# ----------------------------------------------------------------------------------------------------------
def regular_grid(extent: Sequence[float], num: int | tuple[int, int]) -> Tensor:
    """Points of a regular grid over ``extent = (x0, x1, y0, y1)``: shape (ny, nx, 2), row = y, column = x.

    >>> grid = regular_grid((0, 1, 0, 2), 3)
    >>> tuple(grid.shape), grid[2, 1].tolist()
    ((3, 3, 2), [0.5, 2.0])
    """
    x0, x1, y0, y1 = (float(v) for v in extent)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"extent must be (x0, x1, y0, y1) with x1 > x0 and y1 > y0, got {tuple(extent)}")
    nx, ny = (num, num) if isinstance(num, int) else num
    if nx < 2 or ny < 2:
        raise ValueError(f"a grid needs at least 2 points per axis, got {num!r}")
    xs, ys = torch.linspace(x0, x1, nx), torch.linspace(y0, y1, ny)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def warped_grid_lines(warp: Warp, extent: Sequence[float], num_lines: int = 11,
                      points_per_line: int = 60) -> list[Tensor]:
    """Images under Ω of the lines of a regular θ-grid (``num_lines`` vertical and horizontal lines).

    Returns a list of (points_per_line, 2) tensors: first the images of the vertical lines θ_1 = const, then
    of the horizontal ones. With the identity warp they are the regular grid itself.

    >>> lines = warped_grid_lines(linear_warp([[2.0, 0.0], [0.0, 1.0]]), (-1, 1, -1, 1), num_lines=3, points_per_line=5)
    >>> len(lines), lines[0][:, 0].tolist()   # the line θ₁ = −1 lands on γ₁ = −2
    (6, [-2.0, -2.0, -2.0, -2.0, -2.0])
    """
    x0, x1, y0, y1 = (float(v) for v in extent)
    ts_x, ts_y = torch.linspace(x0, x1, points_per_line), torch.linspace(y0, y1, points_per_line)
    lines = [torch.stack([torch.full_like(ts_y, x), ts_y], dim=-1) for x in torch.linspace(x0, x1, num_lines)]
    lines += [torch.stack([ts_x, torch.full_like(ts_x, y)], dim=-1) for y in torch.linspace(y0, y1, num_lines)]
    with torch.no_grad():
        images = warp_points(warp, torch.cat(lines))
    return list(images.split(points_per_line))


@dataclass
class Ellipses:
    """Metric ellipses at native points: ``centres`` (N, 2) = Ω(θ_i); ``axes`` (N, 2, 2) has the unit
    principal directions as columns (left singular vectors of J); ``lengths`` (N, 2) the semi-axes (singular
    values of J). The ellipse at i is {γ_i + J_i u : ‖u‖ ≤ 1} = {γ_i + v : vᵀ G v ≤ 1}.

    >>> ellipses = metric_ellipses(linear_warp([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(1, 2))
    >>> ellipses.lengths.tolist(), tuple(ellipses.outlines(num=8).shape)
    ([[2.0, 1.0]], (1, 8, 2))
    """

    centres: Tensor
    axes: Tensor
    lengths: Tensor

    def outlines(self, scale: float = 1.0, num: int = 40) -> Tensor:
        """(N, num, 2) points of each ellipse, semi-axes multiplied by ``scale``."""
        angle = torch.linspace(0, 2 * math.pi, num)
        circle = torch.stack([angle.cos(), angle.sin()], dim=-1)  # (num, 2)
        stretched = circle[None] * self.lengths[:, None, :] * scale  # (N, num, 2)
        return self.centres[:, None, :] + stretched @ self.axes.transpose(-1, -2)


def metric_ellipses(warp: Warp, thetas) -> Ellipses:
    r"""The ellipses of G⁻¹ = JJᵀ at γ_i = Ω(θ_i): J = U diag(s) Vᵀ, so JJᵀ = U diag(s²) Uᵀ; the ellipse is
    the image of the unit θ-circle under J, with axes U and semi-axes s (the square roots of G⁻¹'s
    eigenvalues). A long axis is a direction in which gradient steps are amplified.

    >>> ellipses = metric_ellipses(linear_warp(rotation_matrix(0.3)), torch.zeros(4, 2))
    >>> torch.allclose(ellipses.lengths, torch.ones(4, 2))   # a rotation keeps circles circles
    True
    """
    batch, _ = _as_points(thetas, "thetas")
    with torch.no_grad():
        jac = jacobian(warp, batch).detach()
        centres = warp_points(warp, batch).detach()
    left, singular_values, _ = torch.linalg.svd(jac)
    return Ellipses(centres=centres, axes=left, lengths=singular_values)


def gradient_field(loss: Loss, points, warp: Warp | None = None, thetas=None) -> Tensor:
    r"""Descent directions at native ``points``: −∇L(γ) (``warp`` None) or −G⁻¹∇L(γ) = −JJᵀ∇L(γ) with J taken
    at ``thetas`` (the θ's with Ω(θ) = γ; defaults to inverting the warp at each point).

    >>> loss = lambda g: (g ** 2).sum() / 2   # ∇L(γ) = γ
    >>> gradient_field(loss, torch.tensor([1.0, 1.0])).tolist()
    [-1.0, -1.0]
    >>> gradient_field(loss, torch.tensor([1.0, 1.0]), warp=linear_warp([[2.0, 0.0], [0.0, 1.0]])).tolist()   # −JJᵀ∇L
    [-4.0, -1.0]
    """
    batch, single = _as_points(points)
    grads = vmap(grad(loss))(batch).detach()
    if warp is not None:
        if thetas is None:
            thetas = torch.stack([invert_warp(warp, p) for p in batch])
        else:
            thetas, _ = _as_points(thetas, "thetas")
        grads = (inverse_metric(warp, thetas).detach() @ grads.unsqueeze(-1)).squeeze(-1)
    out = -grads
    return out[0] if single else out


# ----------------------------------------------------------------------------------------------------------
# toy warps
# ----------------------------------------------------------------------------------------------------------
def linear_warp(matrix, bias=None) -> Callable[[Tensor], Tensor]:
    """Ω(θ) = A θ + b; its metric is G⁻¹ = AAᵀ everywhere.

    >>> linear_warp([[0.0, -1.0], [1.0, 0.0]], bias=[1.0, 0.0])(torch.tensor([1.0, 0.0])).tolist()
    [1.0, 1.0]
    """
    matrix = torch.as_tensor(matrix, dtype=torch.get_default_dtype())
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"linear_warp: the matrix must be square (n, n), got {tuple(matrix.shape)}")
    bias = torch.zeros(matrix.shape[0]) if bias is None else torch.as_tensor(bias, dtype=matrix.dtype)

    def omega(theta: Tensor) -> Tensor:
        return theta @ matrix.T + bias

    return omega


def rotation_matrix(angle: float | Tensor) -> Tensor:
    """The 2×2 rotation matrix by ``angle`` radians.

    >>> torch.allclose(rotation_matrix(math.pi / 2) @ torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), atol=1e-6)
    True
    """
    angle = torch.as_tensor(angle, dtype=torch.get_default_dtype())
    c, s = angle.cos(), angle.sin()
    return torch.stack([torch.stack([c, -s]), torch.stack([s, c])])


class PlaneWarp(nn.Module):
    r"""A warp of the plane given by four numbers (what the warp explorer's sliders move):

    .. math::  Ω(θ) = A\, T(θ), \quad A = \begin{pmatrix}1 & h\\ 0 & 1\end{pmatrix} R(ψ)
               \begin{pmatrix}s & 0\\ 0 & 1\end{pmatrix} R(ψ)^\top, \quad
               T(θ) = R\big(ν\, e^{-‖θ‖^2/2}\big)\, θ,

    ``strength`` s stretches along the direction at angle ``rotation`` ψ, ``shear`` h shears, and
    ``nonlinearity`` ν twists the plane about the origin by an angle that decays with the distance (a twist
    map: det D T = 1, so the warp is invertible whenever s > 0). With s = 1, h = 0, ν = 0 it is the identity.

    >>> point = torch.tensor([1.0, 1.0])
    >>> torch.allclose(PlaneWarp()(point), point), torch.allclose(PlaneWarp(strength=2.0)(point), torch.tensor([2.0, 1.0]))
    (True, True)
    """

    def __init__(self, strength: float = 1.0, rotation: float = 0.0, shear: float = 0.0, nonlinearity: float = 0.0):
        super().__init__()
        if not strength > 0:
            raise ValueError(f"PlaneWarp: strength (the stretch factor) must be > 0, got {strength!r}")
        self.strength, self.rotation, self.shear, self.nonlinearity = (
            float(strength), float(rotation), float(shear), float(nonlinearity))
        turn = rotation_matrix(self.rotation)
        stretch = torch.diag(torch.tensor([self.strength, 1.0]))
        shear_matrix = torch.tensor([[1.0, self.shear], [0.0, 1.0]])
        self.register_buffer("matrix", shear_matrix @ turn @ stretch @ turn.T)

    def forward(self, theta: Tensor) -> Tensor:
        radius2 = (theta**2).sum(-1, keepdim=True)
        angle = self.nonlinearity * torch.exp(-radius2 / 2)
        c, s = angle.cos(), angle.sin()
        x, y = theta[..., :1], theta[..., 1:]
        twisted = torch.cat([c * x - s * y, s * x + c * y], dim=-1)
        return twisted @ self.matrix.T

    def extra_repr(self) -> str:
        return (f"strength={self.strength}, rotation={self.rotation}, shear={self.shear}, "
                f"nonlinearity={self.nonlinearity}")


def random_residual_warp(seed: int = 0, scale: float = 0.6, hidden: int = 30) -> nn.Module:
    r"""A non-linear residual MLP warp of the plane, Ω(θ) = θ + g(θ) (:class:`warpkit.engine.warp.ResidualMLPWarp`,
    tanh, ``hidden`` units) whose zero-initialised last layer is replaced by random weights of size ``scale``
    (N(0, scale²/hidden), seeded): a *fixed* example warp for pictures, not a meta-learned one. Small ``scale``
    keeps ‖∂g/∂θ‖ < 1, so Ω does not fold the plane and G stays defined.

    >>> warp, point = random_residual_warp(seed=0), torch.tensor([0.5, -0.5])
    >>> torch.equal(warp(point), random_residual_warp(seed=0)(point))   # seeded: the same warp every time
    True
    >>> torch.allclose(invert_warp(warp, warp(point)), point, atol=1e-3)   # invertible: G stays defined
    True
    """
    generator = torch.Generator().manual_seed(seed)
    warp = ResidualMLPWarp(2, hidden=hidden, num_hidden_layers=1, activation="tanh")
    with torch.no_grad():
        for module in warp.residual:
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (scale / math.sqrt(hidden) if module is warp.residual[-1] else 1.0))
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)
        warp.residual[-1].bias.zero_()
    return warp.requires_grad_(False)
