"""The one base of every widget explorer in warpkit: controls + a pure drawing function + a figure rendered to PNG.

An explorer is a *pure drawing function* (it takes ``axes`` and the values of the controls, draws, and returns a
dict of what it drew, so tests can check it) wrapped by a subclass of :class:`Explorer` that names the controls.
The base renders the figure with Agg into an ``ipywidgets.Image`` (no pyplot figure, no ipympl: it works in any
Jupyter front end that renders ipywidgets), redraws on every control change and times each redraw
(``explorer.redraw_ms``). Sliders use ``continuous_update=False``: one redraw per release or key press, never a
queue of stale ones.

Redraws blit: the axes frames, ticks and labels do not change while the limits stay the same, so they are drawn
once into a cached background; a redraw restores it and draws only what the drawing function put on the axes (and
the titles). A change of limits, scale or axis labels redraws everything. Only public matplotlib API is used.
"""

from __future__ import annotations

import io
import time
from typing import Sequence

import numpy as np
from matplotlib.text import Text

from warpkit.viz.style import new_figure


class Explorer:
    """Controls + a figure rendered into an image widget; ``redraw()`` runs on every control change.

    Subclasses pass ``controls`` (name → ipywidgets control) and implement ``draw(axes, **values)`` by calling
    their pure drawing function; they may override :meth:`make_figure` (default: ``nrows`` × ``ncols`` panels of
    ``panel_size`` inches at ``dpi``). ``explorer.widget`` is the ipywidgets box to display (an explorer displays
    itself in a notebook too); ``explorer.artists`` is what the last redraw drew; ``explorer.redraw_ms`` the wall
    time of each redraw (draw + PNG render).
    """

    ncols = 2
    nrows = 1
    panel_size = 3.3
    dpi = 80

    def __init__(self, controls: dict):
        import ipywidgets as widgets
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.controls = controls
        self.figure, self.axes = self.make_figure()
        self.canvas = FigureCanvasAgg(self.figure)
        width = int(self.figure.get_figwidth() * self.figure.dpi)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{width}px"))
        self.status = widgets.HTML()
        self.redraw_ms: list[float] = []
        self.artists: dict = {}
        self._background, self._background_key = None, None
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox(
            [widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")),
             self.image, self.status])
        self.widget.add_class("warpkit-explorer")
        self.redraw()

    def make_figure(self):
        """``(figure, flat list of axes)``: pyplot-free, so a redraw never shows up below the cell."""
        return new_figure(self.ncols, self.nrows, panel_size=self.panel_size, dpi=self.dpi)

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def draw(self, axes, **values) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_change(self, change) -> None:
        self.redraw()

    def redraw(self) -> dict:
        """Clear the panels, draw for the controls' current values, render to the image widget; timed."""
        start = time.perf_counter()
        for ax in self.axes:
            _remove_data_artists(ax)
        self.artists = self.draw(self.axes, **self.values())
        self.image.value = self.render_png()
        elapsed = 1000 * (time.perf_counter() - start)
        self.redraw_ms.append(elapsed)
        self.status.value = f"<small>redraw {elapsed:.0f} ms</small>"
        return self.artists

    def render_png(self) -> bytes:
        """Draw the figure with Agg (blitting over the cached background) and encode it as PNG (fast zlib
        level: this runs on every slider move)."""
        from PIL import Image

        key = self._layout_key()
        if self._background is None or key != self._background_key:
            self._draw_background()
            self._background_key = key
        self.canvas.restore_region(self._background)
        for ax in self.axes:
            for artist in sorted(_dynamic_artists(ax), key=lambda a: a.get_zorder()):
                ax.draw_artist(artist)
        buffer = io.BytesIO()
        width, height = self.canvas.get_width_height()
        Image.frombuffer("RGBA", (width, height), self.canvas.buffer_rgba()).save(buffer, format="png",
                                                                                   compress_level=1)
        return buffer.getvalue()

    def _layout_key(self) -> tuple:
        return tuple((ax.get_xlim(), ax.get_ylim(), ax.get_xscale(), ax.get_yscale(), ax.get_xlabel(),
                      ax.get_ylabel()) for ax in self.axes)

    def _draw_background(self) -> None:
        """A full draw with the dynamic artists hidden, kept as the background for the following redraws."""
        self.canvas.draw()
        if self.figure.get_layout_engine() is not None:
            # the layout is fixed after the first draw: recomputing it on every move costs more than drawing
            self.figure.set_layout_engine("none")
        hidden = [a for ax in self.axes for a in _dynamic_artists(ax) if a.get_visible()]
        for artist in hidden:
            artist.set_visible(False)
        self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for artist in hidden:
            artist.set_visible(True)

    def measure_redraw_ms(self, name: str, values: Sequence) -> float:
        """Move control ``name`` through ``values`` (as a slider move would) and return the median redraw
        time in ms of those moves; the control is put back afterwards."""
        control, original = self.controls[name], self.controls[name].value
        first = len(self.redraw_ms)
        for value in values:
            control.value = value
        times = self.redraw_ms[first:]
        control.value = original
        if not times:
            raise ValueError(f"measure_redraw_ms(): none of {list(values)} changed control {name!r}")
        return float(np.median(times))

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _dynamic_artists(ax) -> list:
    """What a redraw draws over the background: the data artists, the legend, every text of the axes (its
    titles included: ``get_children`` lists the centre, left and right titles) and, on top of filled contours
    as in a full draw, the spines."""
    texts = [child for child in ax.get_children() if isinstance(child, Text)]
    found = [*ax.lines, *ax.collections, *ax.patches, *ax.images, *texts, *ax.spines.values()]
    if ax.get_legend() is not None:
        found.append(ax.get_legend())
    return found


def _remove_data_artists(ax) -> None:
    """Remove what a drawing function put on ``ax`` but keep the axes, ticks and limits: rebuilding ticks is
    what makes ``ax.clear()`` slow."""
    for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()


def slider(description: str, value: float, minimum: float, maximum: float, step: float, readout_format=".2f"):
    """A float slider that redraws once per release (``continuous_update=False``), as every explorer's."""
    import ipywidgets as widgets

    return widgets.FloatSlider(value=value, min=minimum, max=maximum, step=step, description=description,
                               continuous_update=False, readout_format=readout_format,
                               style={"description_width": "initial"}, layout=widgets.Layout(width="260px"))


def int_slider(description: str, value: int, minimum: int, maximum: int):
    """An integer slider (snapshots, sequences, surfaces) with the same behaviour as :func:`slider`."""
    import ipywidgets as widgets

    return widgets.IntSlider(value=value, min=minimum, max=maximum, step=1, continuous_update=False,
                             description=description, style={"description_width": "initial"})


__all__ = ["Explorer", "slider", "int_slider"]
