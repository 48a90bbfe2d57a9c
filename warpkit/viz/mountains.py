"""The geometry lesson's composite figures: metric pictures, warped against Riemannian paths, the mountain family,
held-out paths with the start control, and held-out loss over meta-training."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from warpkit.engine import geometry as geo
from warpkit.viz import geometry as draw
from warpkit.viz.style import PATH_COLORS, tidy_axes

#: the control: plain SGD started at WarpGrad's own native start Ω(θ_0)
CONTROL_STYLE = {"color": "#2ca02c", "linestyle": "--"}


def draw_metric_pictures(fig, axes, warps: Sequence[tuple[str, object]], bowl, extent, levels):
    """One row per named warp: warped grid + ellipses of G⁻¹; the bowl in native γ; the bowl in warped θ. The
    bowl's minimum is a white star in both coordinate systems (θ* = Ω⁻¹(γ*)); one colour bar for the loss."""
    contours = None
    for row, (name, warp) in enumerate(warps):
        ax_metric, ax_native, ax_warped = axes[row]
        draw.draw_warped_grid(ax_metric, warp, extent, num_lines=13)
        draw.draw_metric_ellipses(ax_metric, warp, extent, num=7, scale=0.25)
        tidy_axes(ax_metric, (-4, 4, -4, 4), f"{name}:\nwarped grid + ellipses of G⁻¹", "γ₁", "γ₂")
        contours = draw.draw_loss_contours(ax_native, bowl, extent, levels=levels)[0]
        draw.draw_warped_grid(ax_native, warp, extent, num_lines=13)
        ax_native.plot(*bowl.centre.numpy(), "w*", markersize=12, markeredgecolor="k", label="minimum")
        tidy_axes(ax_native, extent, "loss in native coordinates L(γ)", "γ₁", "γ₂")
        draw.draw_loss_contours(ax_warped, bowl, extent, warp=warp, levels=levels)
        draw.draw_warped_grid(ax_warped, None, extent, num_lines=13)
        ax_warped.plot(*geo.invert_warp(warp, bowl.centre).numpy(), "w*", markersize=12, markeredgecolor="k")
        tidy_axes(ax_warped, extent, "the same loss in warped coordinates L(Ω(θ))", "θ₁", "θ₂")
    axes[0][1].legend(loc="lower right", fontsize=7)
    bar = fig.colorbar(contours, ax=[row[2] for row in axes], shrink=0.6)
    bar.set_label("loss (darker is lower)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def draw_riemannian_paths(ax_paths, ax_gap, bowl, warp, extent, levels, paths: dict, alphas, gaps, slope):
    """Left: plain, warped and Riemannian GD from one native start. Right: the warped-vs-Riemannian gap against α
    on log-log axes, with a slope-2 reference."""
    draw.draw_loss_contours(ax_paths, bowl, extent, levels=levels)
    draw.draw_warped_grid(ax_paths, warp, extent, num_lines=13)
    draw.draw_path(ax_paths, paths["plain"], "native", label="plain GD")
    draw.draw_path(ax_paths, paths["warped"], "warped", label="warped GD, γ = Ω(θ)")
    draw.draw_path(ax_paths, paths["riemannian"], "riemannian", label="Riemannian GD", linestyle="--", marker="x")
    tidy_axes(ax_paths, extent, None, "γ₁", "γ₂")
    draw.path_legend(ax_paths, fontsize=7, loc="lower right")
    alphas = np.asarray(alphas)
    ax_gap.loglog(alphas, gaps, "o-", color="#d62728", label="warped vs Riemannian, 5 steps")
    ax_gap.loglog(alphas, gaps[-1] * (alphas / alphas[-1]) ** 2, "k:", label="reference slope 2 (α²)")
    ax_gap.set_xticks([0.003, 0.01, 0.03, 0.08], labels=["0.003", "0.01", "0.03", "0.08"])
    ax_gap.minorticks_off()
    ax_gap.set_xlabel("step size α")
    ax_gap.set_ylabel("largest distance between the paths")
    ax_gap.set_title(f"the gap shrinks as α^{slope:.2f}", fontsize=10)
    ax_gap.legend(fontsize=7, loc="upper left")


def draw_mountain_family(fig, axes, surfaces, extent, levels: int = 16):
    """A few surfaces of the family, their global minimum marked, titles in words, one colour bar."""
    contours = None
    for i, (ax, surface) in enumerate(zip(axes, surfaces)):
        contours = draw.draw_loss_contours(ax, surface, extent, levels=levels)[0]
        ax.plot(*surface.minimiser.numpy(), "w*", markersize=11, markeredgecolor="k", label="global minimum")
        amplitudes = ", ".join(f"{a:.2f}" for a in (surface.amplitudes / torch.tensor([3.0, 10.0, 1 / 3])).tolist())
        shift = ", ".join(f"{v:+.2f}" for v in surface.shift.tolist())
        tidy_axes(ax, extent, f"surface {i}: terms × ({amplitudes})\nshifted by ({shift})", "γ₁", "γ₂" if i == 0 else None)
    axes[0].legend(loc="lower left", fontsize=7)
    bar = fig.colorbar(contours, ax=list(axes), shrink=0.8)
    bar.set_label("loss (0 at the minimum)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def draw_mountain_paths(axes, surfaces, extent, result: dict):
    """Held-out surfaces with WarpGrad's path, the SGD baseline's and the control: plain SGD from WarpGrad's own
    native start Ω(θ_0); final losses in the titles."""
    for i, ax in enumerate(axes):
        draw.draw_loss_contours(ax, surfaces[i], extent, levels=16)
        draw.draw_path(ax, result["sgd_paths"][i], "native", label="SGD (its own start)", markevery=20)
        draw.draw_path(ax, result["warp_paths"][i], "warped", label="WarpGrad", markevery=20, linewidth=3.0)
        draw.draw_path(ax, result["same_start_paths"][i], CONTROL_STYLE["color"], label="control: SGD from "
                       "WarpGrad's start Ω(θ₀)", markevery=20, linestyle="--", linewidth=1.6)
        finals = [max(float(result[key][i]), 0.0) for key in ("warp_final", "sgd_final", "same_start_final")]
        tidy_axes(ax, extent, f"held-out surface {i}; final loss\nWarpGrad {finals[0]:.2f}, SGD {finals[1]:.2f}, "
                  f"control {finals[2]:.2f}", "γ₁" if i >= len(axes) // 2 else None, "γ₂" if i % 4 == 0 else None)


def draw_meta_training_curve(ax, iterations, warp, sgd, control, num_surfaces: int):
    """Mean held-out final loss against meta-iterations: WarpGrad, the SGD baseline and the control."""
    ax.plot(iterations, warp, "o-", color=PATH_COLORS["warped"], label="WarpGrad")
    ax.plot(iterations, sgd, "o-", color=PATH_COLORS["native"], label="SGD (Reptile start)")
    ax.plot(iterations, control, "s", **CONTROL_STYLE, label="SGD from WarpGrad's start")
    ax.set(xlabel="meta-iteration", ylabel=f"mean final loss, {num_surfaces} held-out surfaces", yscale="log")
    ax.legend(fontsize=8)


__all__ = ["CONTROL_STYLE", "draw_metric_pictures", "draw_riemannian_paths", "draw_mountain_family",
           "draw_mountain_paths", "draw_meta_training_curve"]
