r"""Drawing primitives for the geometry of warping (notebook 03). Each ``draw_*`` function draws one thing on a
matplotlib ``Axes`` and returns the artist(s).

* :func:`draw_loss_contours` — L(γ) in native coordinates, or L(Ω(θ)) in warped coordinates (``warp=``);
* :func:`draw_warped_grid` — the image Ω(grid) of a regular θ-grid (a ``LineCollection``);
* :func:`draw_metric_ellipses` — the ellipses {Ω(θ_i) + J_i u : ‖u‖ ≤ r} of G⁻¹ = JJᵀ on the grid's nodes
  (a ``PolyCollection``; see :func:`warpkit.engine.geometry.metric_ellipses`);
* :func:`draw_path` — an optimisation path with its start and end marked.

The maths lives in :mod:`warpkit.engine.geometry`; these functions only draw it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from matplotlib.collections import LineCollection, PolyCollection
from torch.func import vmap

from warpkit.engine import geometry as geo
from warpkit.viz.style import CONTOUR_ALPHA, CONTOUR_CMAP, ELLIPSE_STYLE, GRID_STYLE, PATH_COLORS


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def loss_on_grid(loss, extent: Sequence[float], resolution: int = 80, warp=None):
    """``(X, Y, Z)`` arrays: Z = L(γ) on a regular grid of ``extent`` (or L(Ω(θ)) on a θ-grid with ``warp``)."""
    grid = geo.regular_grid(extent, resolution)
    points = grid.reshape(-1, 2)
    with torch.no_grad():
        if warp is not None:
            points_native = geo.warp_points(warp, points)
        else:
            points_native = points
        values = vmap(loss)(points_native)
    return _numpy(grid[..., 0]), _numpy(grid[..., 1]), _numpy(values.reshape(grid.shape[:2]))


def loss_levels(loss, extent: Sequence[float], num: int = 18, resolution: int = 60, warp=None) -> np.ndarray:
    """Contour levels spread over the loss's range on ``extent`` by quantiles (so flat plateaus and deep
    valleys both get lines); pass the same levels to native and warped panels to make their colours agree."""
    _, _, values = loss_on_grid(loss, extent, resolution, warp)
    levels = np.unique(np.quantile(values, np.linspace(0.0, 1.0, num)))
    if len(levels) < 2:  # a flat loss
        levels = np.array([values.min() - 1e-6, values.max() + 1e-6])
    return levels


def draw_loss_contours(ax, loss, extent: Sequence[float], warp=None, resolution: int = 80, levels=18):
    """Contours of L(γ) over ``extent`` (native coordinates), or of L(Ω(θ)) (warped coordinates: the loss the
    warped learner sees as a function of its own parameters θ) when ``warp`` is given.

    ``levels`` is a count or an array (see :func:`loss_levels`). Returns the list of contour sets drawn.
    """
    x, y, z = loss_on_grid(loss, extent, resolution, warp)
    drawn = []
    drawn.append(ax.contourf(x, y, z, levels=levels, cmap=CONTOUR_CMAP, alpha=CONTOUR_ALPHA, extend="both"))
    drawn.append(ax.contour(x, y, z, levels=levels, colors="white", linewidths=0.4, alpha=0.7))
    return drawn


def _grid_segments(warp, extent, num_lines, points_per_line):
    warp = warp if warp is not None else (lambda theta: theta)
    return [_numpy(line) for line in geo.warped_grid_lines(warp, extent, num_lines, points_per_line)]


def draw_warped_grid(ax, warp, extent: Sequence[float], num_lines: int = 11, points_per_line: int = 50,
                     **style) -> LineCollection:
    """The image under Ω of the regular θ-grid over ``extent``: where each θ grid line lands in native
    coordinates. ``warp=None`` draws the plain grid. Returns a ``LineCollection``."""
    collection = LineCollection(_grid_segments(warp, extent, num_lines, points_per_line),
                                **{**GRID_STYLE, **style})
    ax.add_collection(collection)
    return collection


def _ellipse_outlines(warp, extent, num, scale):
    warp = warp if warp is not None else (lambda theta: theta)
    thetas = geo.regular_grid(extent, num).reshape(-1, 2)
    spacing = min((extent[1] - extent[0]), (extent[3] - extent[2])) / max(num - 1, 1)
    ellipses = geo.metric_ellipses(warp, thetas)
    return _numpy(ellipses.outlines(scale=scale * spacing, num=28))


def draw_metric_ellipses(ax, warp, extent: Sequence[float], num: int = 7, scale: float = 0.3,
                         **style) -> PolyCollection:
    r"""Ellipses of G⁻¹ = JJᵀ at the images Ω(θ_i) of a ``num``×``num`` θ-grid over ``extent``.

    Each is the image under the linearised warp of a θ-circle of radius ``scale`` × grid spacing, so it sits
    inside the warped grid's cell when ``scale`` < 0.5: long axes are directions in which a gradient step on θ
    moves γ far (the metric G is small there), short axes directions the warp damps.
    """
    collection = PolyCollection(_ellipse_outlines(warp, extent, num, scale), **{**ELLIPSE_STYLE, **style})
    ax.add_collection(collection)
    return collection


def draw_path(ax, path, kind: str = "native", label: str | None = None, markevery=None, **style):
    """An optimisation path (K+1, 2) as a line with small dots at the iterates, a ring at the start and a
    filled marker at the end. ``kind`` picks the colour (native / warped / riemannian). Returns the main
    ``Line2D``."""
    path = _numpy(path)
    color = style.pop("color", PATH_COLORS.get(kind, kind))
    (line,) = ax.plot(path[:, 0], path[:, 1], color=color, linewidth=style.pop("linewidth", 1.4),
                      marker=style.pop("marker", "."), markersize=style.pop("markersize", 3.0),
                      markevery=markevery, label=label, **style)
    ax.plot(path[:1, 0], path[:1, 1], "o", markerfacecolor="white", markeredgecolor=color, markersize=6,
            zorder=line.get_zorder() + 1)
    ax.plot(path[-1:, 0], path[-1:, 1], "*", color=color, markersize=9, markeredgecolor="black",
            markeredgewidth=0.4, zorder=line.get_zorder() + 1)
    return line


def path_legend(ax, where=None, **legend_kw):
    """The axes' legend plus two entries that explain :func:`draw_path`'s markers: a ring at the start, a star at
    the end (every path figure uses them). ``where`` (a figure, or other axes) holds the legend instead of ``ax``."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="0.2", linestyle=""),
                Line2D([], [], marker="*", color="0.5", markeredgecolor="black", markersize=9, linestyle="")]
    labels += ["start", "end"]
    return (where if where is not None else ax).legend(handles, labels, **legend_kw)

