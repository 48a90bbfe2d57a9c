r"""Interactive explorers for notebook 03: each is a *pure drawing function* plus a thin *widget wrapper*.

* :func:`draw_warp_explorer` / :class:`WarpExplorer` — sliders for a :class:`~warpkit.engine.geometry.PlaneWarp`
  (strength, rotation, shear, non-linearity) redraw the warped grid, the metric ellipses, and a descent path
  in warped and native coordinates;
* :func:`draw_descent_explorer` / :class:`DescentExplorer` — step size and start point: plain GD, warped GD
  (γ = Ω(θ)) and Riemannian GD (γ ← γ − α G⁻¹∇L) on one picture, and their losses per step;
* :func:`draw_mountain_explorer` / :class:`MountainExplorer` — the meta-learned mountain warp: a slider over
  meta-training snapshots (and one over held-out surfaces) redraws the learned geometry and the 100-step paths.

The drawing functions take ``axes`` and the values of the controls, draw, and return a dict of the artists
(and numbers) they drew, so tests can check what was drawn. Called in a loop over settings they make the
static small-multiples figures that executed (papermill) notebooks show: see ``*_small_multiples``.

The wrappers are :class:`warpkit.viz.explorer_base.Explorer` subclasses (PNG into an image widget, blitted and
timed redraws).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from warpkit.engine import geometry as geo
from warpkit.experiments import mountains
from warpkit.viz import geometry as draw
from warpkit.viz.explorer_base import Explorer, int_slider, slider
from warpkit.viz.style import PATH_COLORS, tidy_axes


def _shown(path, extent, margin: float = 3.0):
    """The part of a path worth drawing: up to its first point that is not finite or lies far outside
    ``extent`` (a diverging run); returns ``(path prefix, diverged)``."""
    size = max(extent[1] - extent[0], extent[3] - extent[2])
    centre = torch.tensor([(extent[0] + extent[1]) / 2, (extent[2] + extent[3]) / 2], dtype=path.dtype)
    bad = ~torch.isfinite(path).all(-1) | ((path - centre).abs().max(-1).values > margin * size)
    if not bad.any():
        return path, False
    first = int(bad.nonzero()[0])
    return path[: max(first, 1)], True


def _loss_text(value: float, diverged: bool) -> str:
    return "diverged" if diverged or not np.isfinite(value) else f"{value:.1e}"


def _setting_label(setting: dict) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in setting.items())


def _small_multiples(draw_function, settings: Sequence[dict], rows: int, panel_size: float, label, **common):
    """One column per setting, ``rows`` panels per column, all drawn by ``draw_function``, each column's title
    prefixed by ``label(setting)`` (None: no prefix); pyplot figure (so the inline backend shows it in an
    executed notebook)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, len(settings), figsize=(panel_size * len(settings), panel_size * rows),
                             squeeze=False, layout="constrained")
    drawn = []
    for column, setting in enumerate(settings):
        drawn.append(draw_function(list(axes[:, column]), **common, **setting))
        prefix = label(setting) if label is not None else ""
        axes[0, column].set_title((prefix + "\n" if prefix else "") + axes[0, column].get_title(), fontsize=8)
    return fig, drawn


# ----------------------------------------------------------------------------------------------------------
# (i) the warp explorer
# ----------------------------------------------------------------------------------------------------------
def _default_bowl() -> mountains.QuadraticBowl:
    return mountains.QuadraticBowl(condition=12.0, angle=0.6, centre=(0.6, 0.3))


@dataclass
class _LossScene:
    """A loss drawn over a window: contour levels computed once, on first use."""

    loss: Callable = field(default_factory=_default_bowl)
    extent: tuple = (-2.5, 2.5, -2.5, 2.5)
    resolution: int = 60
    levels: np.ndarray | None = None

    def contour_levels(self) -> np.ndarray:
        if self.levels is None:
            self.levels = draw.loss_levels(self.loss, self.extent, num=14)
        return self.levels


@dataclass
class WarpScene(_LossScene):
    """What the warp explorer draws on: a loss, the window, a native start point, a step size and a budget."""

    start: tuple = (-2.0, 1.6)
    lr: float = 0.07
    steps: int = 25


def draw_warp_explorer(axes, strength: float = 1.0, rotation: float = 0.0, shear: float = 0.0,
                       nonlinearity: float = 0.0, scene: WarpScene | None = None) -> dict:
    r"""Left: warped coordinates θ, the loss L(Ω(θ)) the learner sees and its GD path θ_k. Right: native
    coordinates γ, the loss L(γ), the warped grid Ω(θ-grid), the metric ellipses of G⁻¹ = JJᵀ, the same path
    seen as γ_k = Ω(θ_k) (red) and plain GD from the same native start (blue).

    Both paths start at the native point ``scene.start`` (θ_0 = Ω⁻¹(start)), same step size and steps.
    """
    scene = scene or WarpScene()
    ax_theta, ax_gamma = axes[0], axes[1]
    warp = geo.PlaneWarp(strength, rotation, shear, nonlinearity)
    start = torch.tensor(scene.start, dtype=torch.get_default_dtype())
    theta0 = geo.invert_warp(warp, start)
    thetas, gammas = geo.warped_descent_path(scene.loss, warp, theta0, scene.lr, scene.steps)
    native = geo.gradient_descent_path(scene.loss, start, scene.lr, scene.steps)
    levels = scene.contour_levels()

    shown_thetas, _ = _shown(thetas, scene.extent)
    shown_gammas, warped_diverged = _shown(gammas, scene.extent)
    shown_native, native_diverged = _shown(native, scene.extent)

    draw.draw_loss_contours(ax_theta, scene.loss, scene.extent, warp=warp, resolution=scene.resolution,
                            levels=levels)
    draw.draw_warped_grid(ax_theta, None, scene.extent, num_lines=11)
    theta_path = draw.draw_path(ax_theta, shown_thetas, "warped", label="GD on θ")
    tidy_axes(ax_theta, scene.extent, "warped coordinates θ: L(Ω(θ))", "θ₁", "θ₂")

    draw.draw_loss_contours(ax_gamma, scene.loss, scene.extent, resolution=scene.resolution, levels=levels)
    grid = draw.draw_warped_grid(ax_gamma, warp, scene.extent, num_lines=11)
    ellipses = draw.draw_metric_ellipses(ax_gamma, warp, scene.extent, num=6, scale=0.22)
    native_path = draw.draw_path(ax_gamma, shown_native, "native", label="plain GD on γ")
    warped_path = draw.draw_path(ax_gamma, shown_gammas, "warped", label="warped GD, γ = Ω(θ)")
    final_native = float(scene.loss(native[-1]))
    final_warped = float(scene.loss(gammas[-1]))
    tidy_axes(ax_gamma, scene.extent, f"native γ, loss after {scene.steps} steps:\n"
              f"plain {_loss_text(final_native, native_diverged)}, "
              f"warped {_loss_text(final_warped, warped_diverged)}", "γ₁", "γ₂")
    draw.path_legend(ax_gamma, loc="lower right", fontsize=6, framealpha=0.8)
    return {"warp": warp, "thetas": thetas, "gammas": gammas, "native": native, "grid": grid,
            "ellipses": ellipses, "theta_path": theta_path, "warped_path": warped_path,
            "native_path": native_path, "final_loss_native": final_native, "final_loss_warped": final_warped}


class WarpExplorer(Explorer):
    """Sliders strength / rotation / shear / non-linearity → :func:`draw_warp_explorer`."""

    def __init__(self, scene: WarpScene | None = None, strength=1.0, rotation=0.0, shear=0.0, nonlinearity=0.0):
        self.scene = scene or WarpScene()
        super().__init__({
            "strength": slider("strength (stretch)", strength, 0.3, 3.0, 0.1),
            "rotation": slider("rotation (rad)", rotation, -1.6, 1.6, 0.1),
            "shear": slider("shear", shear, -1.5, 1.5, 0.1),
            "nonlinearity": slider("non-linearity (twist)", nonlinearity, -3.0, 3.0, 0.25),
        })

    def draw(self, axes, **values) -> dict:
        return draw_warp_explorer(axes, scene=self.scene, **values)


def warp_explorer_small_multiples(settings: Sequence[dict], scene: WarpScene | None = None, panel_size=3.0):
    """The static version of :class:`WarpExplorer`: one column per setting (rows: θ panel, γ panel)."""
    return _small_multiples(draw_warp_explorer, settings, 2, panel_size, _setting_label, scene=scene or WarpScene())


# ----------------------------------------------------------------------------------------------------------
# (ii) the descent explorer
# ----------------------------------------------------------------------------------------------------------
@dataclass
class DescentScene(_LossScene):
    """A fixed warp and loss for the descent explorer."""

    warp: Callable = field(default_factory=lambda: geo.PlaneWarp(strength=2.0, rotation=0.6, shear=0.0,
                                                                   nonlinearity=1.5))
    steps: int = 20


def draw_descent_explorer(axes, lr: float = 0.05, start_x: float = -2.0, start_y: float = 1.6,
                          scene: DescentScene | None = None) -> dict:
    r"""Left: native coordinates with the warped grid and three paths from the native start (start_x, start_y):
    plain GD (blue), warped GD γ_k = Ω(θ_k) (red) and Riemannian GD γ ← γ − α G⁻¹∇L (black, dashed). Right:
    the loss per step of each, and the largest gap between the warped and Riemannian paths (O(α²) per step).
    """
    scene = scene or DescentScene()
    ax_paths, ax_loss = axes[0], axes[1]
    start = torch.tensor([start_x, start_y], dtype=torch.get_default_dtype())
    theta0 = geo.invert_warp(scene.warp, start)
    native = geo.gradient_descent_path(scene.loss, start, lr, scene.steps)
    _, warped = geo.warped_descent_path(scene.loss, scene.warp, theta0, lr, scene.steps)
    riemannian = geo.riemannian_descent_path(scene.loss, scene.warp, start, lr, scene.steps, theta0=theta0,
                                             on_failure="stop")  # stops where the warp folds
    common = len(riemannian)
    gap = geo.path_gap(warped[:common], riemannian)

    draw.draw_loss_contours(ax_paths, scene.loss, scene.extent, resolution=scene.resolution,
                            levels=scene.contour_levels())
    draw.draw_warped_grid(ax_paths, scene.warp, scene.extent, num_lines=11)
    lines = {
        "native_path": draw.draw_path(ax_paths, _shown(native, scene.extent)[0], "native", label="plain GD"),
        "warped_path": draw.draw_path(ax_paths, _shown(warped, scene.extent)[0], "warped", label="warped GD"),
        "riemannian_path": draw.draw_path(ax_paths, riemannian, "riemannian", label="Riemannian GD",
                                          linestyle="--", marker="x", markersize=3, linewidth=1.0),
    }
    tidy_axes(ax_paths, scene.extent, f"α = {lr:.3f}: largest gap between\nwarped and Riemannian paths {gap:.1e}",
              "γ₁", "γ₂")
    draw.path_legend(ax_paths, loc="lower right", fontsize=6, framealpha=0.8)

    steps = np.arange(scene.steps + 1)
    losses = {}
    for name, label, path, style in (("native", "plain GD", native, "-"), ("warped", "warped GD", warped, "-"),
                                     ("riemannian", "Riemannian GD", riemannian, "--")):
        values = torch.func.vmap(scene.loss)(path).numpy()
        losses[name] = values
        ax_loss.semilogy(steps[: len(values)], np.clip(values, 1e-12, 1e6), style, color=PATH_COLORS[name],
                         label=label, linewidth=1.2)
    # fixed limits: the panels stay comparable between slider moves (and the explorer can blit)
    ax_loss.set_xlim(0, scene.steps)
    ax_loss.set_xticks(np.linspace(0, scene.steps, 5).round().astype(int))
    ax_loss.set_ylim(1e-8, 1e3)
    ax_loss.set_title("loss per step", fontsize=9)
    ax_loss.set_xlabel("step k", fontsize=8)
    ax_loss.set_ylabel("loss L(γ_k)", fontsize=8)
    ax_loss.tick_params(labelsize=7)
    ax_loss.legend(fontsize=6)
    return {**lines, "native": native, "warped": warped, "riemannian": riemannian, "gap": gap, "losses": losses}


class DescentExplorer(Explorer):
    """Sliders step size α and start point → :func:`draw_descent_explorer`."""

    def __init__(self, scene: DescentScene | None = None, lr=0.05, start_x=-2.0, start_y=1.6):
        self.scene = scene or DescentScene()
        x0, x1, y0, y1 = self.scene.extent
        super().__init__({
            "lr": slider("step size α", lr, 0.005, 0.2, 0.005, ".3f"),
            "start_x": slider("start γ₁", start_x, x0, x1, 0.1),
            "start_y": slider("start γ₂", start_y, y0, y1, 0.1),
        })

    def draw(self, axes, **values) -> dict:
        return draw_descent_explorer(axes, scene=self.scene, **values)


def descent_explorer_small_multiples(settings: Sequence[dict], scene: DescentScene | None = None, panel_size=3.0):
    """The static version of :class:`DescentExplorer`: one column per setting (rows: paths, losses); each panel's
    title already names its step size."""
    def label(s):
        return ", ".join(f"{k} {v:g}" for k, v in s.items() if k != "lr")
    return _small_multiples(draw_descent_explorer, settings, 2, panel_size, label, scene=scene or DescentScene())


# ----------------------------------------------------------------------------------------------------------
# (iii) the meta-learned mountain warp
# ----------------------------------------------------------------------------------------------------------
#: a meta-training snapshot: ``iteration``, ``warp`` (Ω), ``theta0`` (WarpGrad's θ_0), ``sgd_init``
MountainSnapshot = mountains.MountainSnapshotState


class MountainScene:
    """Held-out surfaces and meta-training snapshots, with every path precomputed (so a slider move only
    draws): ``paths[s]`` = (warped paths γ_k = Ω(θ_k), SGD paths), each (surfaces, steps + 1, 2), of snapshot s,
    computed for all surfaces at once by :func:`warpkit.experiments.mountains.batched_descent_paths`;
    ``final_loss[s, i]`` = (warp, SGD) final losses."""

    def __init__(self, surfaces: Sequence[mountains.MountainSurface], snapshots: Sequence[MountainSnapshot],
                 lr: float = 0.1, steps: int = 100, extent=(-3.0, 3.0, -3.0, 3.0), resolution: int = 70):
        if not snapshots:
            raise ValueError("MountainScene needs at least one snapshot")
        self.surfaces, self.snapshots = list(surfaces), list(snapshots)
        self.lr, self.steps, self.extent, self.resolution = lr, steps, tuple(extent), resolution
        self.paths = []
        final = []
        for snap in self.snapshots:
            warped = mountains.batched_descent_paths(snap.warp, snap.theta0, self.surfaces, lr, steps)
            sgd = mountains.batched_descent_paths(None, snap.sgd_init, self.surfaces, lr, steps)
            self.paths.append((warped, sgd))
            final.append(torch.stack([mountains.final_losses(warped, self.surfaces),
                                      mountains.final_losses(sgd, self.surfaces)], dim=-1).numpy())
        self.final_loss = np.stack(final)  # (snapshots, surfaces, 2)
        self._levels = {}

    @property
    def iterations(self) -> list[int]:
        return [snap.iteration for snap in self.snapshots]

    def levels(self, surface_index: int) -> np.ndarray:
        if surface_index not in self._levels:
            self._levels[surface_index] = draw.loss_levels(self.surfaces[surface_index], self.extent, num=16)
        return self._levels[surface_index]


def draw_mountain_explorer(axes, snapshot: int = -1, surface: int = 0, scene: MountainScene | None = None,
                           show_curve: bool = True) -> dict:
    r"""Left: held-out surface ``surface`` with the geometry of snapshot ``snapshot`` (warped grid and ellipses
    of the learned Ω), its 100-step warped path (red, from the learned θ_0) and the SGD path (blue, from the
    baseline's learned initialisation). Right (``show_curve``): mean final loss over the held-out surfaces
    against meta-iterations, with the current snapshot marked."""
    if scene is None:
        raise ValueError("draw_mountain_explorer needs a MountainScene (the snapshots and held-out surfaces)")
    index = snapshot % len(scene.snapshots)
    snap, surface_fn = scene.snapshots[index], scene.surfaces[surface]
    ax = axes[0]
    draw.draw_loss_contours(ax, surface_fn, scene.extent, resolution=scene.resolution, levels=scene.levels(surface))
    grid = draw.draw_warped_grid(ax, snap.warp, scene.extent, num_lines=9, linewidth=0.5, alpha=0.4)
    ellipses = draw.draw_metric_ellipses(ax, snap.warp, scene.extent, num=5, scale=0.18)
    warped, sgd = scene.paths[index][0][surface], scene.paths[index][1][surface]
    sgd_path = draw.draw_path(ax, sgd, "native", label="SGD (its own start)", markevery=20)
    warped_path = draw.draw_path(ax, warped, "warped", label="WarpGrad", markevery=20)
    final_warp, final_sgd = scene.final_loss[index, surface]
    tidy_axes(ax, scene.extent, f"meta-iteration {snap.iteration}, held-out surface {surface}\n"
              f"final loss: WarpGrad {max(final_warp, 0.0):.2f}, SGD {max(final_sgd, 0.0):.2f}", "γ₁", "γ₂")
    draw.path_legend(ax, loc="upper right", fontsize=6, framealpha=0.8)  # over a peak, not a valley
    out = {"grid": grid, "ellipses": ellipses, "warped_path": warped_path, "sgd_path": sgd_path,
           "final_loss_warp": final_warp, "final_loss_sgd": final_sgd, "iteration": snap.iteration}
    if show_curve and len(axes) > 1:
        ax_curve = axes[1]
        mean = scene.final_loss.mean(axis=1)
        ax_curve.plot(scene.iterations, mean[:, 0], "-o", color=PATH_COLORS["warped"], markersize=3, label="WarpGrad")
        ax_curve.plot(scene.iterations, mean[:, 1], "-o", color=PATH_COLORS["native"], markersize=3, label="SGD")
        out["marker"] = ax_curve.axvline(snap.iteration, color="0.3", linestyle=":")
        ax_curve.set_title(f"mean final loss, {len(scene.surfaces)} held-out surfaces", fontsize=9)
        ax_curve.set_xlabel("meta-iteration", fontsize=8)
        ax_curve.tick_params(labelsize=7)
        ax_curve.legend(fontsize=6)
    return out


class MountainExplorer(Explorer):
    """Sliders over meta-training snapshots and held-out surfaces → :func:`draw_mountain_explorer`."""

    def __init__(self, scene: MountainScene, snapshot: int | None = None, surface: int = 0):
        self.scene = scene
        last = len(scene.snapshots) - 1
        super().__init__({
            "snapshot": int_slider("snapshot", last if snapshot is None else snapshot, 0, last),
            "surface": int_slider("held-out surface", surface, 0, len(scene.surfaces) - 1),
        })

    def draw(self, axes, **values) -> dict:
        return draw_mountain_explorer(axes, scene=self.scene, **values)


def mountain_small_multiples(scene: MountainScene, snapshots: Sequence[int], surface: int = 0, panel_size=3.0):
    """The static version of :class:`MountainExplorer`: the learned geometry at several snapshots."""
    return _small_multiples(draw_mountain_explorer, [{"snapshot": s} for s in snapshots], 1, panel_size, None,
                            scene=scene, surface=surface, show_curve=False)
