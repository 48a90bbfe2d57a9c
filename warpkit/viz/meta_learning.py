"""Lesson 02's figures: initialisation meta-learners compared on the 2-D toy, and adaptation curves."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from warpkit.experiments.meta_learning import QuadraticTask, loss_after_adaptation
from warpkit.viz.style import tidy_axes

METHOD_COLORS = {"MAML": "#1b9e77", "FOMAML": "#d95f02", "Reptile": "#7570b3", "Leap": "#e7298a"}


def draw_adapted_loss(ax, tasks: Sequence[QuadraticTask], lr: float, steps: int, extent, resolution: int = 45):
    """Filled contours of the mean loss after K steps from θ_0 (the quantity MAML minimises), task minimisers
    as black crosses. Returns the contour set (for a colour bar)."""
    xs = np.linspace(extent[0], extent[1], resolution)
    ys = np.linspace(extent[2], extent[3], resolution)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), axis=-1), dtype=torch.float64)
    with torch.no_grad():
        values = loss_after_adaptation(tasks, grid, lr, steps).numpy()
    levels = np.quantile(values, np.linspace(0, 1, 15))
    contours = ax.contourf(xs, ys, values, levels=np.unique(levels), cmap="Greys_r", alpha=0.8)
    centres = torch.stack([t.centre for t in tasks]).numpy()
    ax.plot(centres[:, 0], centres[:, 1], "kx", markersize=7, mew=2, label="task minimisers c_τ")
    return contours


def draw_meta_updates(ax, tasks, theta0, updates: Mapping[str, torch.Tensor], inner_paths, lr, steps, extent,
                      arrow_length: float = 1.2):
    """Left panel: each task's K-step inner path from θ_0 (thin yellow) and, per method, the direction of its
    update −β∇C as an arrow from θ_0. The arrows have one length (``arrow_length``); the legend gives each
    update's true length ‖β∇C‖."""
    draw_adapted_loss(ax, tasks, lr, steps, extent)
    for i, path in enumerate(inner_paths):
        ax.plot(path[:, 0], path[:, 1], "-", color="#ffd166", lw=1.2, label="inner paths (K steps)" if i == 0 else None)
    start = theta0.numpy()
    for index, (method, update) in enumerate(updates.items()):  # wide to narrow, so arrows that coincide all show
        width = 4.5 - 1.1 * index
        length = float(update.norm())
        tip = start + arrow_length * update.numpy() / max(length, 1e-12)
        ax.annotate("", xy=tip, xytext=start, arrowprops=dict(arrowstyle="-|>", color=METHOD_COLORS[method], lw=width))
        ax.plot([], [], color=METHOD_COLORS[method], lw=width, label=f"{method}: step length {length:.3f}")
    ax.plot(*start, "o", mfc="white", mec="k", markersize=8, label="θ₀")
    tidy_axes(ax, extent, "direction of one meta-step from the same θ₀", "θ₁", "θ₂")
    ax.legend(fontsize=7, loc="lower left", framealpha=0.9)


def draw_meta_training(ax, tasks, paths: Mapping[str, torch.Tensor], lr, steps, extent, colorbar_fig=None):
    """Right panel: θ_0 over meta-iterations for each method, over the mean loss after adaptation."""
    contours = draw_adapted_loss(ax, tasks, lr, steps, extent)
    for method, path in paths.items():
        p = path.numpy()
        ax.plot(p[:, 0], p[:, 1], "-", color=METHOD_COLORS[method], lw=2, label=method)
        ax.plot(*p[-1], "o", color=METHOD_COLORS[method], mec="k", markersize=7)
    ax.plot(*next(iter(paths.values()))[0].numpy(), "o", mfc="white", mec="k", markersize=8)
    tidy_axes(ax, extent, f"θ₀ over {len(next(iter(paths.values()))) - 1} meta-iterations", "θ₁", "θ₂")
    ax.legend(fontsize=7, loc="lower left", framealpha=0.9)
    if colorbar_fig is not None:
        bar = colorbar_fig.colorbar(contours, ax=ax, shrink=0.8, format="%.2f")
        bar.set_label(f"mean task loss after K = {steps} steps from θ₀", fontsize=8)
        bar.ax.tick_params(labelsize=7)


def draw_adaptation_curves(ax, curves: Mapping[str, Sequence[float]], title: str):
    """Held-out loss against inner step for each named learner (mean over tasks)."""
    styles = {0: ("#1f5fbf", "o-"), 1: ("#d62728", "s-")}
    for index, (name, values) in enumerate(curves.items()):
        color, style = styles.get(index, ("0.3", "^-"))
        ax.plot(range(len(values)), values, style, color=color, label=name, markersize=4)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("inner step k (SGD steps on a new task)")
    ax.set_ylabel("mean squared error on held-out points")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


__all__ = ["METHOD_COLORS", "draw_adapted_loss", "draw_meta_updates", "draw_meta_training",
           "draw_adaptation_curves"]
