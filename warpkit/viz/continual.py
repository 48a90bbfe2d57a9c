"""Drawing functions for notebook 06 (continual sine regression, Flennerhag et al., 2020, Section 4.4).

Every function takes plain tensors/arrays and returns a pyplot-free ``matplotlib.figure.Figure`` (shown by the
notebook as the value of its cell), so the same functions work in tests and in headless runs. The sequence
explorer is a :class:`warpkit.viz.explorer_base.Explorer` over :func:`draw_fits_after_each_subtask`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.colors as mcolors
import numpy as np
import torch

from warpkit.viz.explorer_base import Explorer, int_slider
from warpkit.viz.style import new_figure

#: one colour per sub-task (segment) and one per learner, shared by all figures of notebook 06
SUBTASK_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
LEARNER_COLORS = {"warp": "#d62728", "sgd_meta_init": "#1f5fbf", "sgd": "#7f7f7f"}
LEARNER_LABELS = {
    "warp": "Warp-MLP (WarpGrad)",
    "sgd_meta_init": "MLP, meta-learned init",
    "sgd": "MLP, random init",
}


def _subtask_color(index: int) -> str:
    return SUBTASK_COLORS[index % len(SUBTASK_COLORS)]


def _label(name: str) -> str:
    return LEARNER_LABELS.get(name, name)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _short(value: float) -> str:
    """A compact, non-scientific number for heatmap cells: 2 significant digits, no exponent below 1e4."""
    if not np.isfinite(value):
        return "nan"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _running_mean(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Mean of the last ``window`` values at every position (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def _shade_segments(ax, segments, highlight: int | None = None):
    for index, (low, high) in enumerate(segments):
        if index == highlight:
            ax.axvspan(low, high, color=_subtask_color(index), alpha=0.12, linewidth=0)
        if index > 0:
            ax.axvline(low, color="0.75", linewidth=0.6, linestyle=":")


def draw_task_sequence(task, ax):
    """One continual task on ``ax``: sub-task t's wave drawn solid on its own segment (in its colour) and, faintly,
    beyond it, so one sees that every segment has a wave of its own."""
    low, high = task.interval
    num_points = 200
    x_all = torch.linspace(low, high, num_points)
    for t, (a, b) in enumerate(task.segments):
        color = _subtask_color(t)
        ax.plot(_numpy(x_all), _numpy(task.target(x_all, t)), color=color, linewidth=0.7, alpha=0.25)
        x = torch.linspace(a, b, max(2, num_points // task.num_subtasks))
        ax.plot(_numpy(x), _numpy(task.target(x, t)), color=color, linewidth=2.2, label=f"sub-task {t + 1}")
    _shade_segments(ax, task.segments)
    ax.set_xlim(low, high)
    ax.tick_params(labelsize=7, length=2)
    return ax


def plot_task_sequences(tasks: Sequence, panel_size: float = 3.2):
    """A row of continual tasks (:func:`draw_task_sequence` each); the first panel carries the legend."""
    fig, axes = new_figure(ncols=len(tasks), panel_size=panel_size)
    fig.set_size_inches(panel_size * 1.25 * len(tasks), panel_size * 0.8)
    for index, (task, ax) in enumerate(zip(tasks, axes)):
        draw_task_sequence(task, ax)
        ax.set_title(f"sequence {index + 1}", fontsize=9)
        ax.set_xlabel("x", fontsize=8)
    axes[0].set_ylabel("y", fontsize=8)
    axes[0].legend(fontsize=6, loc="lower left", ncol=2, frameon=False)
    return fig


def _fits_figure(num_learners: int, num_subtasks: int, panel_size: float, dpi: int = 80):
    fig, axes = new_figure(ncols=num_subtasks, nrows=num_learners, panel_size=panel_size, dpi=dpi)
    fig.set_size_inches(panel_size * 1.15 * num_subtasks, panel_size * 0.85 * num_learners)
    return fig, axes


def _fit_limits(y: np.ndarray, predictions: Sequence[np.ndarray]) -> tuple[float, float]:
    """y-limits that show the targets and the fits, but not a diverged learner's runaway values."""
    values = np.concatenate([y] + [prediction.reshape(-1) for prediction in predictions])
    values = values[np.isfinite(values)]
    margin = 0.15 * (np.ptp(y) + 1e-6)
    return (max(values.min(), y.min() - 4 * margin) - margin, min(values.max(), y.max() + 4 * margin) + margin)


def _draw_fit_panel(ax, task, x, y, segment, prediction, color, after: int) -> None:
    """One panel: the sub-task targets (bold up to sub-task ``after``, faint beyond) and the learner's fit."""
    _shade_segments(ax, task.segments, highlight=after)
    for t in range(task.num_subtasks):
        mask = segment == t
        ax.plot(x[mask], y[mask], color=_subtask_color(t), linewidth=1.8 if t <= after else 1.0,
                alpha=1.0 if t <= after else 0.25)
    ax.plot(x, prediction, color=color, linewidth=1.3)
    ax.set_xlim(x.min(), x.max())
    ax.tick_params(labelsize=6, length=2)


def draw_fits_after_each_subtask(axes, task, inputs: torch.Tensor, fits: Mapping[str, torch.Tensor]) -> dict:
    """Draw :func:`plot_fits_after_each_subtask` into ``axes`` (rows = learners, columns = sub-tasks, flat);
    returns the y-limits shared by the panels."""
    names, size = list(fits), task.num_subtasks
    x = _numpy(inputs).reshape(-1)
    segment = _numpy(task.subtask_of_input(inputs)).reshape(-1)
    y = _numpy(task.target(inputs)).reshape(-1)
    predictions = {name: _numpy(fits[name]) for name in names}
    y_limits = _fit_limits(y, list(predictions.values()))
    for row, name in enumerate(names):
        color = LEARNER_COLORS.get(name, "k")
        for j in range(size):
            ax = axes[row * size + j]
            _draw_fit_panel(ax, task, x, y, segment, predictions[name][j], color, after=j)
            ax.set_ylim(*y_limits)
            if row == 0:
                ax.set_title(f"after sub-task {j + 1}", fontsize=8)
            if j == 0:
                ax.set_ylabel(_label(name), fontsize=7, color=color)
            if row < len(names) - 1:
                ax.set_xticklabels([])
    return {"y_limits": y_limits}


def plot_fits_after_each_subtask(task, inputs: torch.Tensor, fits: Mapping[str, torch.Tensor],
                                 panel_size: float = 2.3):
    """Rows = learners, columns = "after sub-task j": the learner's fit f(x; θ^{(j)}) (its colour) over the whole
    interval, the targets of the sub-tasks seen so far (solid, sub-task colours) and of those still to come
    (faint). ``fits[name]`` is a [T, N] tensor of predictions on ``inputs`` ([N, 1]); see
    :func:`warpkit.experiments.continual.predictions`. Forgetting shows as the fit leaving earlier segments' curves."""
    fig, axes = _fits_figure(len(fits), task.num_subtasks, panel_size)
    draw_fits_after_each_subtask(axes, task, inputs, fits)
    return fig


def _annotate_matrix(ax, matrix: np.ndarray, std: np.ndarray | None, norm) -> None:
    """Write every seen entry (i <= j) into its cell, ± its standard deviation when given."""
    size = matrix.shape[0]
    for i in range(size):
        for j in range(i, size):
            value = matrix[i, j]
            dark = norm(value) > 0.55 if np.isfinite(value) and value > 0 else False
            text = _short(value) + (f"\n±{_short(std[i, j])}" if std is not None else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if dark else "black")


def plot_forgetting_matrices(matrices: Mapping[str, torch.Tensor], stds: Mapping[str, torch.Tensor] | None = None,
                             panel_size: float = 3.0):
    """Side-by-side heatmaps of forgetting matrices M[i, j] = loss on sub-task i after training through sub-task
    j, on one shared logarithmic colour scale. Entries with i > j (sub-tasks not seen yet) are left blank.
    ``matrices[name]`` is the mean over held-out sequences; ``stds`` (optional) their standard deviations."""
    names = list(matrices)
    arrays = {name: _numpy(matrices[name]).astype(float) for name in names}
    size = next(iter(arrays.values())).shape[0]
    seen = np.tril(np.ones((size, size), dtype=bool)).T  # seen[i, j] = i <= j
    values = np.concatenate([a[seen] for a in arrays.values()])
    values = values[np.isfinite(values) & (values > 0)]
    norm = mcolors.LogNorm(vmin=values.min(), vmax=values.max())
    fig, axes = new_figure(ncols=len(names), panel_size=panel_size)
    fig.set_size_inches(panel_size * len(names) + 1.0, panel_size)
    image = None
    for ax, name in zip(axes, names):
        shown = np.where(seen, arrays[name], np.nan)
        image = ax.imshow(shown, cmap="magma_r", norm=norm, origin="upper")
        ax.set_xticks(range(size), [str(j + 1) for j in range(size)], fontsize=7)
        ax.set_yticks(range(size), [str(i + 1) for i in range(size)], fontsize=7)
        ax.set_xlabel("trained through sub-task j", fontsize=8)
        ax.set_title(_label(name), fontsize=9, color=LEARNER_COLORS.get(name, "k"))
        _annotate_matrix(ax, arrays[name], None if stds is None else _numpy(stds[name]), norm)
    axes[0].set_ylabel("loss on sub-task i", fontsize=8)
    if image is not None:
        colorbar = fig.colorbar(image, ax=axes, shrink=0.85)
        colorbar.set_label("mean squared error (log scale)", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    return fig


def plot_final_losses(final_columns: Mapping[str, torch.Tensor], panel_size: float = 3.2):
    """After the whole sequence: the loss on each sub-task (x) per learner over held-out sequences, log scale.
    Bars are means, dots the individual sequences (a ± std bar cannot be drawn on a log axis when std > mean);
    the legend gives the mean ± std of the final loss (the mean over the T segments).
    ``final_columns[name]`` is a [num_sequences, T] tensor (the last column of every forgetting matrix)."""
    names = list(final_columns)
    fig, axes = new_figure(ncols=1, panel_size=panel_size)
    ax = axes[0]
    fig.set_size_inches(panel_size * 2.8, panel_size)
    size = _numpy(next(iter(final_columns.values()))).shape[1]
    width = 0.8 / len(names)
    jitter = np.random.default_rng(0)
    for index, name in enumerate(names):
        column = _numpy(final_columns[name])
        final = column.mean(axis=1)
        std = final.std(ddof=1) if len(final) > 1 else 0.0
        positions = np.arange(size) + (index - (len(names) - 1) / 2) * width
        color = LEARNER_COLORS.get(name, "k")
        ax.bar(positions, column.mean(axis=0), width, color=color, alpha=0.75,
               label=f"{_label(name)}: {final.mean():.3g} ± {std:.2g}")
        for t in range(size):
            offsets = jitter.uniform(-0.3, 0.3, len(column)) * width
            ax.plot(positions[t] + offsets, column[:, t], ".", color="k", markersize=2.5, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xticks(range(size), [f"sub-task {t + 1}" for t in range(size)], fontsize=7)
    ax.set_ylabel("loss after the whole sequence", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False, title="final loss (mean over\nsegments), mean ± std", title_fontsize=7,
              loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_meta_training(history: Mapping[str, Sequence[Mapping]], validation: Mapping[str, Sequence] | None = None,
                       best_iteration: Mapping[str, int] | None = None, panel_size: float = 3.0):
    """Meta-training curves per meta-iteration: each learner's task loss at the last inner step, the warp
    objective (learners that have one) and, when given, the final loss on the validation sequences with the
    iteration that was kept (``best_iteration``) circled."""
    from matplotlib.ticker import MaxNLocator

    panels = 3 if validation else 2
    fig, axes = new_figure(ncols=panels, panel_size=panel_size)
    fig.set_size_inches(panel_size * 1.3 * panels, panel_size)
    for name, stats in history.items():
        iterations = np.array([s["iteration"] for s in stats])
        color = LEARNER_COLORS.get(name, "k")
        for ax, key in ((axes[0], "task_loss_last"), (axes[1], "warp_objective")):
            values = np.array([s[key] for s in stats], dtype=float)
            if not np.isfinite(values).any():
                continue
            ax.plot(iterations, values, color=color, linewidth=0.7, alpha=0.35)
            ax.plot(iterations, _running_mean(values), color=color, linewidth=1.6, label=_label(name))
    axes[0].set_title("task loss at the last inner step", fontsize=9)
    axes[0].set_ylabel("MSE on the current sub-task", fontsize=8)
    axes[1].set_title("warp meta-objective (continual)", fontsize=9)
    axes[1].set_ylabel("MSE over seen sub-tasks, after one step", fontsize=8)
    for ax in axes[:2]:
        ax.set_xlabel("meta-iteration (thin: raw, bold: running mean)", fontsize=8)
    if validation:
        ax = axes[2]
        for name, points in validation.items():
            if not points:
                continue
            iterations, losses = zip(*points)
            color = LEARNER_COLORS.get(name, "k")
            ax.plot(iterations, losses, "o-", color=color, markersize=3, linewidth=1.2, label=_label(name))
            if best_iteration is not None and best_iteration.get(name) in iterations:
                kept = iterations.index(best_iteration[name])
                ax.plot(iterations[kept], losses[kept], "o", markersize=10, markerfacecolor="none",
                        markeredgecolor=color, markeredgewidth=1.5)
        ax.set_title("final loss on validation sequences", fontsize=9)
        ax.set_ylabel("MSE over the 5 segments, after the last", fontsize=8)
        ax.set_xlabel("meta-iteration (circle: kept)", fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    return fig


class SequenceExplorer(Explorer):
    """A slider over held-out sequences that redraws :func:`draw_fits_after_each_subtask` for the chosen one.

    ``fits_for(index)`` returns the ``fits`` mapping for sequence ``index`` (asked once per sequence, then kept).
    ``explorer.artists["sequence"]`` is the index drawn last; ``widget`` is what a notebook displays.
    """

    panel_size = 2.3

    def __init__(self, tasks: Sequence, inputs: torch.Tensor, fits_for, dpi: int = 70):
        self.tasks, self.inputs, self.fits_for, self.dpi = list(tasks), inputs, fits_for, dpi
        self.fits = {0: fits_for(0)}  # the first sequence's fits say how many rows the figure needs
        super().__init__({"sequence": int_slider("sequence", 0, 0, len(self.tasks) - 1)})

    def make_figure(self):
        return _fits_figure(len(self.fits[0]), self.tasks[0].num_subtasks, self.panel_size, self.dpi)

    def draw(self, axes, sequence: int) -> dict:
        if sequence not in self.fits:
            self.fits[sequence] = self.fits_for(sequence)
        drawn = draw_fits_after_each_subtask(axes, self.tasks[sequence], self.inputs, self.fits[sequence])
        return {**drawn, "sequence": sequence}


__all__ = [
    "SequenceExplorer", "SUBTASK_COLORS", "LEARNER_COLORS", "LEARNER_LABELS", "draw_task_sequence", "plot_task_sequences",
    "draw_fits_after_each_subtask", "plot_fits_after_each_subtask", "plot_forgetting_matrices", "plot_final_losses",
    "plot_meta_training", "plot_learnt_then_kept",
]


def plot_learnt_then_kept(mean_matrices: Mapping[str, torch.Tensor], panel_size: float = 3.2):
    """Underfitting against forgetting, per learner and segment i: the loss on segment i right after learning it
    (M_ii, filled dot) and after the last sub-task (M_iT, open square), joined by a line; log scale."""
    names = list(mean_matrices)
    fig, axes = new_figure(ncols=len(names), panel_size=panel_size)
    fig.set_size_inches(panel_size * 1.25 * len(names), panel_size)
    values = np.concatenate([_numpy(m).ravel() for m in mean_matrices.values()])
    values = values[np.isfinite(values) & (values > 0)]
    for ax, name in zip(axes, names):
        matrix = _numpy(mean_matrices[name])
        segments = np.arange(1, len(matrix) + 1)
        just_learnt, at_end = np.diag(matrix), matrix[:, -1]
        color = LEARNER_COLORS.get(name, "k")
        ax.vlines(segments, just_learnt, at_end, color=color, alpha=0.5)
        ax.plot(segments, just_learnt, "o", color=color, label="right after learning it")
        ax.plot(segments, at_end, "s", markerfacecolor="white", markeredgecolor=color, label="after the last sub-task")
        ax.set(yscale="log", ylim=(values.min() / 2, values.max() * 2), xticks=segments)
        ax.set_title(_label(name), fontsize=9)
        ax.set_xlabel("segment i", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("mean MSE on segment i", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper left")
    return fig
