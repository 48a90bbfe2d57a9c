"""The few plotting conventions warpkit's figures share: one colour per kind of path, one look for grids,
ellipses and loss contours, and a figure factory that does not depend on pyplot (for widget explorers)."""

from __future__ import annotations

from matplotlib import ticker
from matplotlib.figure import Figure

#: one colour per optimiser, used in every figure of notebook 03 (and wherever paths are compared)
PATH_COLORS = {
    "native": "#1f5fbf",      # plain gradient descent on γ (SGD without warp)
    "warped": "#d62728",      # gradient descent on θ, seen in native coordinates γ = Ω(θ)
    "riemannian": "#111111",  # Riemannian gradient descent γ ← γ − α G⁻¹∇L
}
GRID_STYLE = {"color": "0.25", "linewidth": 0.6, "alpha": 0.55}
ELLIPSE_STYLE = {"facecolor": "#ff9f1c", "edgecolor": "#b35900", "linewidth": 0.6, "alpha": 0.55}
CONTOUR_CMAP = "Blues_r"
CONTOUR_ALPHA = 0.85


def new_figure(ncols: int = 1, nrows: int = 1, panel_size: float = 3.2, dpi: int = 80, **subplot_kw):
    """A pyplot-free ``Figure`` with a grid of square-ish panels; returns ``(fig, axes)`` (axes a flat list).

    pyplot figures are shown automatically by the inline backend; explorers render their own figure into an
    image widget, so they must not create pyplot figures (or every redraw would also appear below the cell).
    """
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows), dpi=dpi, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, subplot_kw=subplot_kw)
    return fig, [ax for row in axes for ax in row]


def tidy_axes(ax, extent=None, title: str | None = None, xlabel: str | None = None, ylabel: str | None = None):
    """Equal aspect, limits = extent, small ticks and an optional title/labels."""
    if extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=7, length=2)
    if title:
        ax.set_title(title, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=8, labelpad=1)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8, labelpad=1)
    return ax


class PlainLogFormatter(ticker.LogFormatter):
    """Log-axis tick labels as plain numbers (0.2, 1, 30 rather than 2×10⁻¹); minor ticks labelled only where
    the axis spans few decades (matplotlib's own rule)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def plain_log_ticks(ax, axis: str = "y"):
    """Label a log-scaled ``axis`` ("x" or "y") of ``ax`` with plain numbers (see :class:`PlainLogFormatter`)."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    target.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    return ax
