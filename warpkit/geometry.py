r"""The geometry of warping: Jacobians, the metric G⁻¹ = JJᵀ, Riemannian steps, and 2-D toy surfaces.

Notation (warpgrad.md §2). Task parameters are θ; a warp with parameters φ induces the reparameterisation
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
* :func:`riemannian_gradient_step` (γ ← γ − α G⁻¹ ∇L(γ)) and the three descent paths compared in notebook 02:
  :func:`gradient_descent_path` (native), :func:`warped_descent_path` (GD on θ of L∘Ω, mapped to γ = Ω(θ)) and
  :func:`riemannian_descent_path` (γ ← γ − α G⁻¹(γ) ∇L(γ), with G⁻¹ evaluated at θ = Ω⁻¹(γ) found by Newton's
  method, :func:`invert_warp`),
* :func:`warped_grid_lines` (the images under Ω of a regular θ-grid),
* the toy warps :class:`PlaneWarp` (stretch, rotation, shear and a twist; a warp given by a 4-number parameter
  vector) and :func:`linear_warp`, and the loss surfaces :class:`QuadraticBowl` and the Appendix D family of
  "mountains" (:func:`peaks`, :class:`MountainFamily`, :class:`MountainSurface`).

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

Warp = Callable[[Tensor], Tensor]
Loss = Callable[[Tensor], Tensor]


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
    """γ = Ω(θ) for one point (n,) or a batch (N, n) (vmapped, so ``warp`` only needs to handle one point)."""
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

    This is the preconditioner that gradient descent on θ applies in native coordinates (warpgrad.md §2).
    Shape: (n, n) for one point, (N, n, n) for N.
    """
    jac = jacobian(warp, points)
    return jac @ jac.transpose(-1, -2)


def metric(warp: Warp, points, max_condition: float = 1e12) -> Tensor:
    r"""G = (J Jᵀ)⁻¹, the Riemannian metric the warp induces on native coordinates.

    Raises ``ValueError`` where J is (numerically) singular, i.e. where the warp folds the plane and G is
    not defined; ``max_condition`` bounds the accepted condition number of JJᵀ.
    """
    inv = inverse_metric(warp, points)
    condition = torch.linalg.cond(inv)
    if not torch.all(torch.isfinite(condition) & (condition < max_condition)):
        worst = condition.max().item() if condition.numel() else float("nan")
        raise ValueError(
            f"metric(): J Jᵀ is singular or badly conditioned (condition number {worst:.3g} ≥ {max_condition:g}) "
            "at some point: the warp is degenerate there (it folds or collapses the plane), so G is undefined. "
            "Use inverse_metric() (always defined) or move the points."
        )
    return torch.linalg.inv(inv)


def riemannian_gradient_step(gamma: Tensor, gradient: Tensor, inverse_metric_at_gamma: Tensor, lr: float) -> Tensor:
    r"""One Riemannian gradient step γ ← γ − α G⁻¹ ∇L(γ).

    ``gamma`` and ``gradient`` have shape (n,) (or (N, n) with ``inverse_metric_at_gamma`` of shape (N, n, n)).
    """
    if gamma.shape != gradient.shape:
        raise ValueError(f"gamma {tuple(gamma.shape)} and gradient {tuple(gradient.shape)} must have one shape")
    if inverse_metric_at_gamma.shape != gamma.shape + gamma.shape[-1:]:
        raise ValueError(
            f"inverse_metric_at_gamma must have shape {tuple(gamma.shape + gamma.shape[-1:])}, "
            f"got {tuple(inverse_metric_at_gamma.shape)}"
        )
    return gamma - lr * (inverse_metric_at_gamma @ gradient.unsqueeze(-1)).squeeze(-1)


def invert_warp(warp: Warp, gamma: Tensor, theta_init: Tensor | None = None, steps: int = 50,
                tol: float | None = None) -> Tensor:
    r"""θ with Ω(θ) = γ, by Newton's method θ ← θ − J(θ)⁻¹ (Ω(θ) − γ), started at ``theta_init`` (default γ).

    Used to evaluate the metric at a native point: G⁻¹(γ) = J(Ω⁻¹(γ)) J(Ω⁻¹(γ))ᵀ. ``tol`` bounds the residual
    ‖Ω(θ) − γ‖ (default 1e-10 in float64, 1e-4 in float32). Raises ``RuntimeError`` if Newton does not get
    there (a warp that is not invertible near γ).
    """
    warp = _check_warp(warp)
    if tol is None:
        tol = 1e-10 if gamma.dtype == torch.float64 else 1e-4
    theta = (gamma if theta_init is None else theta_init).detach().clone()
    with torch.no_grad():
        residual = warp(theta) - gamma
    for _ in range(steps):
        if residual.norm() <= tol:
            break
        try:
            theta = theta - torch.linalg.solve(_jacobian_at(warp, theta), residual)
        except torch.linalg.LinAlgError:
            break  # singular Jacobian: reported below
        with torch.no_grad():
            residual = warp(theta) - gamma
    if not residual.norm() <= tol:
        raise RuntimeError(
            f"invert_warp(): Newton's method did not converge in {steps} steps (residual {residual.norm():.3g}); "
            "the warp is probably not invertible near this point. Start closer (theta_init) or use more steps."
        )
    return theta.detach()


# ----------------------------------------------------------------------------------------------------------
# descent paths
# ----------------------------------------------------------------------------------------------------------
def _check_path_args(lr: float, steps: int) -> None:
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")


def gradient_descent_path(loss: Loss, start: Tensor, lr: float, steps: int) -> Tensor:
    r"""Plain gradient descent in native coordinates, γ_{k+1} = γ_k − α ∇L(γ_k); returns (steps + 1, n)."""
    _check_path_args(lr, steps)
    point, path = torch.as_tensor(start, dtype=torch.get_default_dtype()).detach(), []
    path.append(point)
    for _ in range(steps):
        point = point - lr * _gradient_at(loss, point)
        path.append(point)
    return torch.stack(path).detach()


def warped_descent_path(loss: Loss, warp: Warp, theta0: Tensor, lr: float, steps: int) -> tuple[Tensor, Tensor]:
    r"""Gradient descent on θ of the warped loss, θ_{k+1} = θ_k − α ∇_θ L(Ω(θ_k)).

    Returns ``(thetas, gammas)``, both (steps + 1, n), with γ_k = Ω(θ_k) the path seen in native coordinates.
    """
    _check_path_args(lr, steps)
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
    """
    _check_path_args(lr, steps)
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
        try:
            theta = invert_warp(warp, gamma, theta - lr * jac.T @ gradient)
        except RuntimeError:
            if on_failure == "raise":
                raise
            break
        path.append(gamma)
    return torch.stack(path).detach()


def path_gap(path_a: Tensor, path_b: Tensor) -> float:
    """max_k ‖a_k − b_k‖ over two paths of the same length."""
    if path_a.shape != path_b.shape:
        raise ValueError(f"paths must have one shape, got {tuple(path_a.shape)} and {tuple(path_b.shape)}")
    return (path_a - path_b).norm(dim=-1).max().item()


def one_step_gap(loss: Loss, warp: Warp, theta: Tensor, lr: float) -> float:
    r"""‖Ω(θ − α Jᵀ∇L(γ)) − (γ − α JJᵀ ∇L(γ))‖ at γ = Ω(θ): the O(α²) remainder of warpgrad.md §2."""
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
    """Points of a regular grid over ``extent = (x0, x1, y0, y1)``: shape (ny, nx, 2), row = y, column = x."""
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
    values of J). The ellipse at i is {γ_i + J_i u : ‖u‖ ≤ 1} = {γ_i + v : vᵀ G v ≤ 1}."""

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
    eigenvalues). A long axis is a direction in which gradient steps are amplified."""
    batch, _ = _as_points(thetas, "thetas")
    with torch.no_grad():
        jac = jacobian(warp, batch).detach()
        centres = warp_points(warp, batch).detach()
    left, singular_values, _ = torch.linalg.svd(jac)
    return Ellipses(centres=centres, axes=left, lengths=singular_values)


def gradient_field(loss: Loss, points, warp: Warp | None = None, thetas=None) -> Tensor:
    r"""Descent directions at native ``points``: −∇L(γ) (``warp`` None) or −G⁻¹∇L(γ) = −JJᵀ∇L(γ) with J taken
    at ``thetas`` (the θ's with Ω(θ) = γ; defaults to inverting the warp at each point)."""
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
    """Ω(θ) = A θ + b; its metric is G⁻¹ = AAᵀ everywhere."""
    matrix = torch.as_tensor(matrix, dtype=torch.get_default_dtype())
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"linear_warp: the matrix must be square (n, n), got {tuple(matrix.shape)}")
    bias = torch.zeros(matrix.shape[0]) if bias is None else torch.as_tensor(bias, dtype=matrix.dtype)

    def omega(theta: Tensor) -> Tensor:
        return theta @ matrix.T + bias

    return omega


def rotation(angle: float | Tensor) -> Tensor:
    """The 2×2 rotation matrix by ``angle`` radians."""
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
    """

    def __init__(self, strength: float = 1.0, rotation: float = 0.0, shear: float = 0.0, nonlinearity: float = 0.0):
        super().__init__()
        if not strength > 0:
            raise ValueError(f"PlaneWarp: strength (the stretch factor) must be > 0, got {strength!r}")
        self.strength, self.rotation, self.shear, self.nonlinearity = (
            float(strength), float(rotation), float(shear), float(nonlinearity))
        turn = globals()["rotation"](self.rotation)
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
    r"""A non-linear residual MLP warp of the plane, Ω(θ) = θ + g(θ) (:class:`warpkit.warp.ResidualMLPWarp`,
    tanh, ``hidden`` units) whose zero-initialised last layer is replaced by random weights of size ``scale``
    (N(0, scale²/hidden), seeded): a *fixed* example warp for pictures, not a meta-learned one. Small ``scale``
    keeps ‖∂g/∂θ‖ < 1, so Ω does not fold the plane and G stays defined."""
    from warpkit.warp import ResidualMLPWarp

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


# ----------------------------------------------------------------------------------------------------------
# loss surfaces
# ----------------------------------------------------------------------------------------------------------
class QuadraticBowl:
    r"""L(γ) = ½ (γ − c)ᵀ H (γ − c) with H = R(ψ) diag(1, κ) R(ψ)ᵀ: a valley of condition number κ whose long
    axis points at angle ψ. Plain GD zig-zags across it; a warp stretching along the valley straightens it."""

    def __init__(self, condition: float = 10.0, angle: float = 0.5, centre=(0.0, 0.0), scale: float = 1.0):
        if not condition >= 1:
            raise ValueError(f"QuadraticBowl: condition must be >= 1, got {condition!r}")
        turn = rotation(angle)
        self.hessian = scale * turn @ torch.diag(torch.tensor([1.0, float(condition)])) @ turn.T
        self.centre = torch.as_tensor(centre, dtype=torch.get_default_dtype())

    def __call__(self, gamma: Tensor) -> Tensor:
        d = gamma - self.centre.to(gamma.dtype)
        return 0.5 * ((d @ self.hessian.to(gamma.dtype)) * d).sum(-1)


def peaks(x: Tensor, amplitudes=(3.0, 10.0, 1.0 / 3.0), shift=(0.0, 0.0)) -> Tensor:
    r"""MATLAB's ``peaks`` with per-term amplitudes a and a shift c, at u = x − c:

    .. math::  f(x) = a_1 (1-u_1)^2 e^{-u_1^2-(u_2+1)^2} - a_2 \big(\tfrac{u_1}{5} - u_1^3 - u_2^5\big)
               e^{-u_1^2-u_2^2} - a_3 e^{-(u_1+1)^2 - u_2^2}.

    The third term is e^{−(u₁+1)² − u₂²}: the formula printed in the paper's Appendix D has u₁ twice there
    (−(u₁+1)² − u₁²), a typo reported by a third-party reproduction; MATLAB's ``peaks`` has u₂. With the
    default amplitudes and no shift this is MATLAB's ``peaks`` exactly. ``x`` has shape (..., 2).
    """
    amplitudes = torch.as_tensor(amplitudes, dtype=x.dtype)
    shift = torch.as_tensor(shift, dtype=x.dtype)
    u = x - shift
    u1, u2 = u[..., 0], u[..., 1]
    return (amplitudes[..., 0] * (1 - u1) ** 2 * torch.exp(-u1**2 - (u2 + 1) ** 2)
            - amplitudes[..., 1] * (u1 / 5 - u1**3 - u2**5) * torch.exp(-u1**2 - u2**2)
            - amplitudes[..., 2] * torch.exp(-(u1 + 1) ** 2 - u2**2))


class MountainSurface:
    r"""One surface of the Appendix D family: L(x) = s · peaks(x; a, c) − m, with m the minimum of
    s · peaks(·; a, c) over the family's domain, so L ≥ 0 there and L = 0 at the global minimum (the final loss
    of a run *is* its sub-optimality). ``params`` packs (a₁, a₂, a₃, c₁, c₂, s, m) for batched use
    (:func:`mountain_value`)."""

    def __init__(self, amplitudes, shift, scale: float, extent=(-3.0, 3.0, -3.0, 3.0)):
        self.amplitudes = torch.as_tensor(amplitudes, dtype=torch.get_default_dtype())
        self.shift = torch.as_tensor(shift, dtype=torch.get_default_dtype())
        self.scale = float(scale)
        self.extent = tuple(extent)
        self.offset = 0.0
        self.minimiser, self.offset = self._global_minimum()

    def _global_minimum(self) -> tuple[Tensor, float]:
        """Grid search over the domain, refined twice by a finer grid around the best point (the error in the
        minimum value is then ~1e-9: curvature × (spacing / 400)²)."""
        x0, x1, y0, y1 = self.extent
        window = (x0, x1, y0, y1)
        with torch.no_grad():
            for _ in range(3):
                grid = regular_grid(window, 81).reshape(-1, 2)
                values = self.raw(grid)
                best = grid[values.argmin()]
                half = 2 * (window[1] - window[0]) / 80
                window = (max(x0, best[0].item() - half), min(x1, best[0].item() + half),
                          max(y0, best[1].item() - half), min(y1, best[1].item() + half))
        return best, float(values.min())

    def raw(self, x: Tensor) -> Tensor:
        """s · peaks(x; a, c), without the offset."""
        return self.scale * peaks(x, self.amplitudes, self.shift)

    def __call__(self, x: Tensor) -> Tensor:
        return self.raw(x) - self.offset

    @property
    def params(self) -> Tensor:
        return torch.cat([self.amplitudes, self.shift, torch.tensor([self.scale, self.offset])])

    def __repr__(self) -> str:
        a = ", ".join(f"{v:.2f}" for v in self.amplitudes.tolist())
        c = ", ".join(f"{v:.2f}" for v in self.shift.tolist())
        return f"MountainSurface(amplitudes=({a}), shift=({c}), scale={self.scale:g})"


def mountain_value(x: Tensor, params: Tensor) -> Tensor:
    """L(x) of the surface packed in ``params`` (see :attr:`MountainSurface.params`); vmappable over both."""
    return params[5] * peaks(x, params[:3], params[3:5]) - params[6]


@dataclass(frozen=True)
class MountainFamily:
    r"""The randomised "mountains" of the paper's Appendix D: MATLAB ``peaks`` (see :func:`peaks`, with the
    corrected third term) with random per-term amplitudes and a random shift.

    The randomisation is ours (the paper's text does not pin it down): for each surface,

    * amplitudes a = (3, 10, 1/3) ⊙ (1 + ε), ε_i ~ U(−``amplitude_jitter``, ``amplitude_jitter``) independently,
      so the depths of the valleys and heights of the peaks change, and which local minimum a path reaches;
    * shift c ~ U(−``max_shift``, ``max_shift``)², so the whole landscape moves and no single starting point is
      in the global minimum's valley for every surface;
    * a common scale s = ``scale`` (default 1/4): peaks has curvature up to ≈ 34, so plain GD at the toy's
      step size 0.1 would be unstable on unscaled surfaces (0.1 × 34 > 2); at s = 1/4 it is stable
      (0.1 × 8.4 < 2) and a win for the warp is about geometry, not about rescuing a diverging baseline.

    Surfaces are offset to have minimum 0 on ``extent`` (:class:`MountainSurface`).
    """

    amplitude_jitter: float = 0.5
    max_shift: float = 1.0
    scale: float = 0.25
    extent: tuple = (-3.0, 3.0, -3.0, 3.0)

    def __post_init__(self):
        if not 0 <= self.amplitude_jitter < 1:
            raise ValueError(f"MountainFamily: amplitude_jitter must be in [0, 1), got {self.amplitude_jitter!r}")
        if self.max_shift < 0 or self.scale <= 0:
            raise ValueError(f"MountainFamily: need max_shift >= 0 and scale > 0, got {self.max_shift!r}, "
                             f"{self.scale!r}")

    def sample(self, num: int, seed: int | None = None, generator: torch.Generator | None = None
               ) -> list[MountainSurface]:
        """``num`` surfaces drawn with ``generator`` (or a fresh one seeded with ``seed``)."""
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        dtype = torch.get_default_dtype()
        nominal = torch.tensor([3.0, 10.0, 1.0 / 3.0], dtype=dtype)
        jitter = (2 * torch.rand(num, 3, generator=generator, dtype=dtype) - 1) * self.amplitude_jitter
        shifts = (2 * torch.rand(num, 2, generator=generator, dtype=dtype) - 1) * self.max_shift
        return [MountainSurface(nominal * (1 + jitter[i]), shifts[i], self.scale, self.extent) for i in range(num)]


# ----------------------------------------------------------------------------------------------------------
# the mountains as warpkit tasks (so WarpGrad's engine meta-learns on them like on any other task)
# ----------------------------------------------------------------------------------------------------------
class SurfaceTask:
    r"""A 2-D surface as a :class:`warpkit.tasks.Task`. The "data" of a batch is the surface itself: a batch is
    ``(dummy input, surface params)`` and :func:`surface_loss` evaluates the surface at the model's output.
    The loss is deterministic, so the task batch and the meta batch of a replayed point coincide (there is no
    data to draw twice)."""

    def __init__(self, surface: MountainSurface):
        self.surface = surface
        self._batch = (torch.zeros(1), surface.params)

    def sample_batch(self, step: int):
        return self._batch

    def sample_meta_batches(self, step: int):
        return self._batch, self._batch

    def evaluation_batch(self):
        return self._batch


def surface_loss(output: Tensor, params: Tensor) -> Tensor:
    """The engine's ``loss_fn`` for :class:`SurfaceTask`: the surface packed in ``params`` at the point
    ``output`` (= γ = Ω(θ) for :class:`WarpedPoint`)."""
    return mountain_value(output, params)


class WarpedPoint(nn.Module):
    r"""The Appendix D learner: the task parameters are one point θ ∈ R² (``theta``) and the model's output is
    the native point γ = Ω(θ) = θ + g(θ), g a 2-layer tanh MLP (hidden 30) whose last layer starts at zero
    (:class:`warpkit.warp.ResidualMLPWarp`; identity-initialised, so that it covers the whole domain from the
    start). ``warp=False`` gives the unwarped learner γ = θ (the SGD baseline). The input is ignored."""

    def __init__(self, init=(0.0, 0.0), warp: bool = True, hidden: int = 30):
        super().__init__()
        from warpkit.warp import ResidualMLPWarp

        self.theta = nn.Parameter(torch.as_tensor(init, dtype=torch.get_default_dtype()).clone())
        self.warp = ResidualMLPWarp(2, hidden=hidden, num_hidden_layers=1, activation="tanh") if warp else None

    def forward(self, inputs: Tensor | None = None) -> Tensor:
        return self.theta if self.warp is None else self.warp(self.theta)

    def omega(self) -> Callable[[Tensor], Tensor]:
        """Ω as a plain function of θ (a frozen copy of the current warp), for drawing and paths."""
        import copy

        if self.warp is None:
            return lambda theta: theta
        frozen = copy.deepcopy(self.warp).requires_grad_(False)
        return frozen


def batched_descent_paths(warp: Warp | None, theta0: Tensor, surfaces: Sequence[MountainSurface], lr: float,
                          steps: int) -> Tensor:
    r"""GD on θ of L_i(Ω(θ)) from one θ_0 on every surface at once (``torch.func.vmap`` over surfaces), returned
    in native coordinates γ = Ω(θ): shape (surfaces, steps + 1, 2). ``warp=None`` is plain GD on γ."""
    _check_path_args(lr, steps)
    warp = warp if warp is not None else (lambda theta: theta)
    params = torch.stack([s.params for s in surfaces])
    step_gradient = vmap(grad(lambda theta, p: mountain_value(warp(theta), p)))
    theta = torch.as_tensor(theta0, dtype=params.dtype).detach().expand(len(surfaces), 2).clone()
    thetas = [theta]
    for _ in range(steps):
        theta = (theta - lr * step_gradient(theta, params)).detach()
        thetas.append(theta)
    thetas = torch.stack(thetas, dim=1)
    with torch.no_grad():
        return warp_points(warp, thetas.reshape(-1, 2)).reshape(thetas.shape)


def final_losses(paths: Tensor, surfaces: Sequence[MountainSurface]) -> Tensor:
    """L_i(γ_i,K) for paths (surfaces, K + 1, 2) from :func:`batched_descent_paths`."""
    params = torch.stack([s.params for s in surfaces])
    with torch.no_grad():
        return vmap(mountain_value)(paths[:, -1], params)


@dataclass
class MountainSnapshotState:
    """Meta-learned state after ``iteration`` meta-iterations: the warp Ω (a frozen copy), WarpGrad's θ_0 and
    the SGD baseline's θ_0."""

    iteration: int
    warp: Callable
    theta0: Tensor
    sgd_init: Tensor


class MountainMetaTraining:
    r"""Appendix D with warpkit's engine: meta-learn a warp Ω(θ) = θ + g(θ) and an initialisation θ_0 with
    WarpGrad's offline algorithm (:class:`warpkit.meta.MetaLearner`, objective Eq. 11 ``"exact"`` by default,
    Reptile for θ_0: Warp-Reptile) on training surfaces; in parallel, meta-learn the SGD baseline's
    initialisation with the same initialisation learner and no warp, on the same meta-batches.

    Both adapt ``steps`` steps of SGD at ``lr`` per task, as at test time. :meth:`run` can be called again to
    continue (interrupting it keeps every finished meta-iteration); a snapshot is kept every
    ``snapshot_every`` iterations (and at 0) for the geometry-over-meta-training figures.
    """

    def __init__(self, train_surfaces: Sequence[MountainSurface], meta_batch: int = 20, lr: float = 0.1,
                 steps: int = 100, objective: str = "exact", warp_lr: float = 3e-3, init_lr: float = 0.1,
                 replay_chunk_size: int = 25, replay_epochs: int = 1, snapshot_every: int = 5, seed: int = 0):
        from warpkit.meta import MetaLearner, Reptile

        if meta_batch > len(train_surfaces):
            raise ValueError(f"meta_batch={meta_batch} exceeds the {len(train_surfaces)} training surfaces")
        self.train_surfaces, self.meta_batch = list(train_surfaces), meta_batch
        self.lr, self.steps, self.snapshot_every = lr, steps, snapshot_every
        torch.manual_seed(seed)
        self.model = WarpedPoint(warp=True)
        self.baseline = WarpedPoint(warp=False)
        self.warpgrad = MetaLearner(self.model, surface_loss, inner_lr=lr, inner_steps=steps,
                                    warp_objective=objective, init_learner=Reptile(), warp_lr=warp_lr,
                                    warp_optimizer="adam", init_lr=init_lr, replay_chunk_size=replay_chunk_size,
                                    replay_epochs=replay_epochs, batched_adaptation=True, seed=seed)
        self.sgd = MetaLearner(self.baseline, surface_loss, inner_lr=lr, inner_steps=steps, warp_objective=None,
                               init_learner=Reptile(), init_lr=init_lr, batched_adaptation=True, seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict] = []
        self.snapshots: list[MountainSnapshotState] = [self.snapshot()]

    @property
    def iteration(self) -> int:
        return self.warpgrad.iteration

    def snapshot(self) -> MountainSnapshotState:
        return MountainSnapshotState(self.iteration, self.model.omega(), self.model.theta.detach().clone(),
                                     self.baseline.theta.detach().clone())

    def run(self, iterations: int, show_progress: bool = True) -> "MountainMetaTraining":
        """``iterations`` more meta-iterations (same meta-batch for WarpGrad and the baseline)."""
        from warpkit.notebook import progress

        for _ in progress(range(iterations), show=show_progress, desc="meta-training"):
            index = torch.randperm(len(self.train_surfaces), generator=self.generator)[: self.meta_batch]
            tasks = [SurfaceTask(self.train_surfaces[i]) for i in index]
            warp_stats = self.warpgrad.meta_step(tasks)
            sgd_stats = self.sgd.meta_step(tasks)
            self.history.append({"iteration": self.iteration, "warp_task_loss_last": warp_stats.task_loss_last,
                                 "sgd_task_loss_last": sgd_stats.task_loss_last,
                                 "warp_objective": warp_stats.warp_objective})
            if self.iteration % self.snapshot_every == 0:
                self.snapshots.append(self.snapshot())
        if self.snapshots[-1].iteration != self.iteration:
            self.snapshots.append(self.snapshot())
        return self

    def evaluate(self, surfaces: Sequence[MountainSurface], snapshot: MountainSnapshotState | None = None
                 ) -> dict:
        """100-step paths (same steps and lr as training) on ``surfaces`` with and without the warp, each from
        its own meta-learned initialisation; returns the paths and final losses (tensors over surfaces), plus
        an ablation: plain SGD started at WarpGrad's native start Ω(θ_0) (``same_start_*``)."""
        snapshot = snapshot or self.snapshots[-1]
        warped = batched_descent_paths(snapshot.warp, snapshot.theta0, surfaces, self.lr, self.steps)
        sgd = batched_descent_paths(None, snapshot.sgd_init, surfaces, self.lr, self.steps)
        # ablation: plain SGD from WarpGrad's own native start γ_0 = Ω(θ_0), to separate start from geometry
        with torch.no_grad():
            warp_start = snapshot.warp(snapshot.theta0)
        same_start = batched_descent_paths(None, warp_start, surfaces, self.lr, self.steps)
        return {"warp_paths": warped, "sgd_paths": sgd, "warp_final": final_losses(warped, surfaces),
                "sgd_final": final_losses(sgd, surfaces), "same_start_paths": same_start,
                "same_start_final": final_losses(same_start, surfaces)}
