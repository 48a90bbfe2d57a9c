"""Lesson 01's pictures: descent paths on quadratics, loss curves, matrices, preconditioner fields, the
Riemannian step, and the preconditioning explorer (a :class:`warpkit.viz.explorer_base.Explorer`). Pure functions
of their inputs, drawing into a given axes."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.func import grad

from warpkit.engine.geometry import inverse_metric, jacobian
from warpkit.viz.explorer_base import Explorer
from warpkit.experiments.preconditioning import (Descent, PRECONDITIONER_NAMES, Quadratic, ill_conditioned_quadratic, preconditioned_descent, preconditioner, predicted_steps)


# ----------------------------------------------------------------------------------------------------------
METHOD_COLOURS = {"none": "tab:red", "diagonal": "tab:orange", "inverse Hessian": "tab:green"}
METHOD_LABELS = {"none": "P = I (plain GD)", "diagonal": "P = diag(H)⁻¹", "inverse Hessian": "P = H⁻¹"}


def draw_descent(ax, quadratic: Quadratic, name: str, start: Sequence[float], steps: int,
                 extent: float | None = None) -> Descent:
    """Contours of ``quadratic`` and the first ``steps`` steps of descent with preconditioner ``name``."""
    run = preconditioned_descent(quadratic, start, preconditioner(quadratic, name), steps)
    start_error = np.abs(np.asarray(start, dtype=float) - quadratic.minimum)
    half = extent if extent is not None else 1.25 * float(start_error.max())
    xs = np.linspace(quadratic.minimum[0] - half, quadratic.minimum[0] + half, 200)
    ys = np.linspace(quadratic.minimum[1] - half, quadratic.minimum[1] + half, 200)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)
    levels = quadratic.value(np.asarray(start)) * np.logspace(-4, 0.5, 12)
    ax.contour(xs, ys, quadratic.value(grid), levels=levels, colors="0.75", linewidths=0.8)
    ax.plot(*run.points.T, "o-", color=METHOD_COLOURS.get(name, "k"), markersize=2.5, linewidth=1)
    ax.plot(*quadratic.minimum, "k*", markersize=9)
    ax.set_xlabel("x₁ (minimum: star)", fontsize=8)
    ax.set_ylabel("x₂", fontsize=8)
    ax.set_title(f"{METHOD_LABELS.get(name, name)}, κ(H) = {quadratic.condition_number:.0f}\n"
                 f"f after {len(run.losses) - 1} steps: {run.losses[-1] / run.losses[0]:.1e} × f(x₀)", fontsize=9)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return run


def descent_small_multiples(condition_numbers: Sequence[float], start: Sequence[float], steps: int,
                            correlation: float = 0.5):
    """The headless stand-in for :class:`PreconditioningExplorer`: one row per κ, one column per preconditioner."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(condition_numbers), len(PRECONDITIONER_NAMES),
                             figsize=(3.3 * len(PRECONDITIONER_NAMES), 3.3 * len(condition_numbers)), squeeze=False)
    for row, kappa in zip(axes, condition_numbers):
        quadratic = ill_conditioned_quadratic(kappa, correlation)
        for ax, name in zip(row, PRECONDITIONER_NAMES):
            draw_descent(ax, quadratic, name, start, steps)
    fig.tight_layout()
    return fig


def draw_preconditioning_explorer(axes, condition_number: float = 30.0, method: str = "none",
                                  start: Sequence[float] = (-1.5, 0.4), steps: int = 30,
                                  correlation: float = 0.5) -> dict:
    """The explorer's picture: :func:`draw_descent` on the quadratic of condition number ``condition_number``
    with preconditioner ``method``; returns the quadratic and the :class:`Descent` drawn."""
    quadratic = ill_conditioned_quadratic(condition_number, correlation)
    return {"quadratic": quadratic, "descent": draw_descent(axes[0], quadratic, method, start, steps)}


class PreconditioningExplorer(Explorer):
    """Sliders for κ and the preconditioner P → :func:`draw_preconditioning_explorer` (lesson 01).

    ``explorer.artists["descent"]`` is the :class:`Descent` drawn most recently, so a test can set a control's
    ``.value`` and check it.
    """

    ncols = 1
    panel_size = 4.0

    def __init__(self, start: Sequence[float], steps: int = 30, condition_number: float = 30.0,
                 correlation: float = 0.5):
        import ipywidgets as widgets

        self.start, self.steps, self.correlation = tuple(start), steps, correlation
        smallest = (1 + abs(correlation)) / (1 - abs(correlation))
        super().__init__({
            "condition_number": widgets.FloatLogSlider(value=condition_number, base=10, min=math.log10(smallest),
                                                       max=3, step=0.05, description="κ(H)",
                                                       continuous_update=False),
            "method": widgets.Dropdown(options=PRECONDITIONER_NAMES, value="none", description="P"),
        })

    def draw(self, axes, **values) -> dict:
        return draw_preconditioning_explorer(axes, start=self.start, steps=self.steps,
                                             correlation=self.correlation, **values)


def draw_loss_curves(ax, runs: dict[str, Descent], tol: float) -> None:
    """f(x_k)/f(x_0) against the step k ≥ 1 on log-log axes (k = 0 is 1 by definition; Newton's exact zero
    after one step drops off the bottom, so it is marked at the axis)."""
    for name, run in runs.items():
        ratios = (run.losses / run.losses[0])[1:]
        steps = np.arange(1, len(ratios) + 1)
        ax.loglog(steps, np.where(ratios > 0, ratios, 1e-300), color=METHOD_COLOURS.get(name, "k"),
                  label=METHOD_LABELS.get(name, name))
        if ratios[0] <= 1e-12:
            ax.plot([1], [2e-12], "v", color=METHOD_COLOURS.get(name, "k"), markersize=8, clip_on=False)
    ax.axhline(tol, color="k", linewidth=0.8, linestyle=":", label=f"tolerance {tol:g}")
    ax.set(ylim=(1e-12, 2), xlabel="step k (log scale)", ylabel="f(x_k) / f(x₀)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.62, 0.02))  # between the curves, under the tolerance


def draw_steps_versus_condition(ax, condition_numbers: Sequence[float], steps: dict[str, list[int]],
                                tol: float) -> None:
    """Steps to tolerance per preconditioner against κ(H), with the estimate κ ln(1/tol)/2 for plain GD."""
    for name, counts in steps.items():
        ax.loglog(condition_numbers, counts, "o-", color=METHOD_COLOURS.get(name, "k"),
                  label=METHOD_LABELS.get(name, name))
    ax.loglog(condition_numbers, [predicted_steps(k, tol) for k in condition_numbers], "k:",
              label="ln(tol) / 2ln(1 − 1/κ) (estimate, plain GD)")
    ax.set(xlabel="condition number κ(H)", ylabel=f"steps to f ≤ {tol:g}·f(x₀)", title="steps to tolerance")
    ax.legend(fontsize=8, loc="upper left")  # the lines rise to the right: the upper left is empty


def draw_matrix(ax, matrix: Tensor | np.ndarray, title: str, limit: float | None = None) -> None:
    """A matrix as a diverging heat map centred at 0."""
    values = np.asarray(matrix.detach() if isinstance(matrix, Tensor) else matrix)
    limit = limit if limit is not None else float(np.abs(values).max())
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def draw_preconditioner_field(ax, warp: Callable[[Tensor], Tensor], inputs: Tensor, title: str,
                              scale: float | None = None) -> None:
    """At each input z, the ellipse {J(z) u : ‖u‖ ≤ scale}: its axes are the eigenvectors of P(z) = JJᵀ and its
    semi-axes the square roots of P's eigenvalues (times ``scale``). Equal ellipses = a constant P.
    ``scale=None`` picks the largest scale at which no ellipse reaches half-way to its neighbour."""
    with torch.no_grad():
        jacobians = jacobian(warp, inputs)
    if scale is None:
        spacing = torch.cdist(inputs, inputs).add(torch.eye(len(inputs), dtype=inputs.dtype) * 1e9).min().item()
        scale = 0.45 * spacing / torch.linalg.matrix_norm(jacobians, ord=2).max().item()
    angle = torch.linspace(0, 2 * math.pi, 60, dtype=inputs.dtype)
    circle = scale * torch.stack([angle.cos(), angle.sin()])  # (2, 60)
    outlines = inputs[:, :, None] + jacobians @ circle  # (N, 2, 60)
    for outline in outlines:
        ax.fill(*outline.numpy(), facecolor="tab:blue", alpha=0.25, edgecolor="tab:blue", linewidth=0.8)
    ax.plot(*inputs.T.numpy(), "k.", markersize=2)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")


def draw_step_comparison(ax, loss: Callable[[Tensor], Tensor], warp: Callable[[Tensor], Tensor], theta: Tensor,
                         alpha_max: float) -> None:
    """Native space around γ = Ω(θ): contours of L, the curve α ↦ Ω(θ − αΔθ) reached by warped steps, and the
    straight Riemannian (γ − αJJᵀ∇L) and Euclidean (γ − α∇L) steps for α ∈ [0, ``alpha_max``]."""
    half_width = 0.6  # of the window around γ
    theta = torch.as_tensor(theta, dtype=torch.float64)
    gamma = warp(theta).detach()
    delta_theta = grad(lambda t: loss(warp(t)))(theta).detach()
    native_gradient = grad(loss)(gamma).detach()
    riemannian_direction = inverse_metric(warp, theta).detach() @ native_gradient
    alphas = torch.linspace(0, alpha_max, 50, dtype=torch.float64)
    with torch.no_grad():
        landed = torch.stack([warp(theta - a * delta_theta) for a in alphas])
    riemannian = gamma - alphas[:, None] * riemannian_direction
    euclidean = gamma - alphas[:, None] * native_gradient
    every = torch.cat([landed, riemannian, euclidean])  # the window holds all three curves
    centre, half = (every.max(0).values + every.min(0).values) / 2, (every.max(0).values - every.min(0).values).max() * 0.6
    with torch.no_grad():
        xs = torch.linspace(centre[0] - half, centre[0] + half, 120, dtype=torch.float64)
        ys = torch.linspace(centre[1] - half, centre[1] + half, 120, dtype=torch.float64)
        values = torch.vmap(torch.vmap(loss))(torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1))
    ax.contour(xs.numpy(), ys.numpy(), values.numpy(), levels=15, colors="0.8", linewidths=0.8)
    ax.plot(*euclidean.T.numpy(), "--", color="tab:red", label="Euclidean step γ − α∇L")
    ax.plot(*riemannian.T.numpy(), "-", color="tab:green", linewidth=3, alpha=0.6, label="Riemannian step γ − αJJᵀ∇L")
    ax.plot(*landed.T.numpy(), "-", color="k", linewidth=1.2, label="warped step Ω(θ − αJᵀ∇L)")
    ax.plot(*gamma.numpy(), "ko", label="γ = Ω(θ), where every step starts")
    ax.set_aspect("equal")
    ax.set_xlim(xs[0].item(), xs[-1].item())
    ax.set_ylim(ys[0].item(), ys[-1].item())
    ax.set_xlabel("γ₁")
    ax.set_ylabel("γ₂")
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    ax.set_title(f"native space, α from 0 to {alpha_max:g}", fontsize=9)
