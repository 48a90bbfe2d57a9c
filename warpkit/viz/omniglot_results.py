"""Figures of lesson 04's results (:mod:`warpkit.experiments.omniglot`): held-out accuracy against the number of
training alphabets (mean ± std over seeds, like the paper's figure), the adaptation loss curves with and without
warps, meta-training curves, the replay-speed comparison and the paper's reported numbers side by side.

Each function draws a new figure from a :class:`~warpkit.experiments.omniglot.SweepResults` (or a timing dict) and
returns it; the notebook saves it with ``warpkit.save_figure``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from warpkit.experiments.omniglot import (
    METHOD_LABELS,
    PAPER_ACCURACY_25,
    PAPER_WARP_LEAP_BY_ALPHABETS,
    SweepResults,
)
from warpkit.viz.style import plain_log_ticks

#: one colour per method, in every figure of lesson 04 (Warp-Leap red as the warped paths elsewhere)
METHOD_COLORS = {
    "warp-leap": "#d62728", "leap": "#1f5fbf", "reptile": "#2ca02c", "fomaml": "#9467bd", "maml": "#8c564b",
    "multi-head": "#ff7f0e", "no-pretraining": "#555555",
}
METHOD_MARKERS = {"warp-leap": "o", "leap": "s", "reptile": "^", "fomaml": "v", "maml": "D", "multi-head": "P",
                  "no-pretraining": "x"}


def _source_title(results: SweepResults) -> str:
    return "Omniglot" if results.source == "omniglot" else "glyph stand-in (synthetic, NOT Omniglot)"


def plot_accuracy_vs_alphabets(results: SweepResults, methods: Sequence[str] | None = None, paper: bool = True):
    """Held-out accuracy (%) against the number n of training alphabets: mean ± std over seeds per method (left);
    with ``paper``, the paper's reported curve for Warp-Leap and its 25-alphabet numbers (right, same y-axis)."""
    import matplotlib.pyplot as plt

    ncols = 2 if paper else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.6 * ncols, 4.0), squeeze=False, sharey=paper,
                             gridspec_kw={"width_ratios": [1.25, 1] if paper else [1]})
    ax = axes[0, 0]
    _draw_accuracy_of_this_run(ax, results, list(methods or results.methods))
    if paper:
        _draw_accuracy_of_the_paper(axes[0, 1])
    top = max(100.0, ax.get_ylim()[1])
    ax.set_ylim(0, min(top, 100))
    fig.tight_layout()
    return fig


def _draw_accuracy_of_this_run(ax, results: SweepResults, methods: list[str]) -> None:
    counts = results.alphabet_counts
    # methods side by side at each n, so that equal accuracies do not hide each other's markers
    width = (max(counts) - min(counts) + 1) / 4 if len(counts) > 1 else 2.5
    jitter = np.linspace(-0.06, 0.06, len(methods)) * width
    for offset, method in zip(jitter, methods):
        stats = [results.mean_std(method, n) for n in counts]
        means = np.array([100 * m for m, _ in stats])
        stds = np.array([100 * s for _, s in stats])
        ax.errorbar(np.array(counts) + offset, means, yerr=stds, color=METHOD_COLORS[method],
                    marker=METHOD_MARKERS[method], markersize=5, capsize=3,
                    linewidth=1.6 if method == "warp-leap" else 1.1,
                    label=METHOD_LABELS[method], zorder=3 if method == "warp-leap" else 2)
    chance = 100 / results.config.ways
    ax.axhline(chance, color="0.5", linestyle=":", linewidth=1)
    ax.text(min(counts), chance, f" chance ({chance:.0f} %)", va="bottom", fontsize=7, color="0.4")
    ax.set_xticks(counts)
    if len(counts) == 1:
        ax.set_xlim(counts[0] - 0.5, counts[0] + 0.5)
    ax.set_xlabel("number of training alphabets n")
    ax.set_ylabel("held-out accuracy on the test alphabets (%)")
    seeds = len(results.config.seeds)
    ax.set_title(f"this run: {_source_title(results)}, {results.config.ways}-way, {results.config.inner_steps} steps\n"
                 + (f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed: no spread to show")
                 + "; methods side by side at each n", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def _draw_accuracy_of_the_paper(ax) -> None:
    """The paper's figure (Warp-Leap against n) and, right of it, its table at n = 25 (one column per method,
    so that no marker hides another)."""
    ns = sorted(PAPER_WARP_LEAP_BY_ALPHABETS)
    ax.plot(ns, [PAPER_WARP_LEAP_BY_ALPHABETS[n] for n in ns], color=METHOD_COLORS["warp-leap"], marker="o",
            markersize=4, label="Warp-Leap, the paper's figure (by n)")
    ax.axvline(27.0, color="0.6", linewidth=0.8)
    ax.text(30.0, 97, "the table\n(n = 25)", ha="center", va="top", fontsize=7, color="0.3")
    for column, (method, (mean, std)) in enumerate(PAPER_ACCURACY_25.items()):
        x = 28.0 + column
        label = f"{METHOD_LABELS[method]}, the paper's table" + (" (± std)" if std else "")
        ax.errorbar([x], [mean], yerr=[std] if std else None, color=METHOD_COLORS[method],
                    marker=METHOD_MARKERS[method], linestyle="none", capsize=3, markersize=6, label=label)
    ax.axhline(5.0, color="0.5", linestyle=":", linewidth=1)
    ax.text(1, 5.0, " chance (5 %)", va="bottom", fontsize=7, color="0.4")
    ax.set_xticks([1, 5, 10, 15, 20, 25])
    ax.set_xlim(-0.5, 33)
    ax.set_xlabel("number of training alphabets n")
    ax.set_title("paper (full Omniglot, 20-way, 100 steps, 64 filters)\nreported in Flennerhag et al., 2020, Section 4.2",
                 fontsize=9)
    ax.legend(fontsize=6.5, loc="lower center")
    ax.grid(alpha=0.3)
    ax.tick_params(labelleft=True)


def plot_adaptation_curves(results: SweepResults, alphabets: int | None = None,
                           methods: Sequence[str] | None = None):
    """Training-batch loss during test-time adaptation (mean over the test tasks; line = mean over seeds, band =
    ± std), at n = ``alphabets`` (default: the largest). Warp-Leap against the same Leap initialisation learner
    without warps, and SGD from scratch: the effect of the warps on the speed of adaptation."""
    import matplotlib.pyplot as plt

    n = results.config.largest_n if alphabets is None else alphabets
    methods = list(methods or results.methods)
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for method in methods:
        curves = results.adaptation_curves(method, n)
        if len(curves) == 0:
            continue
        steps = np.arange(curves.shape[1])
        mean, std = curves.mean(0), curves.std(0)
        emphasis = method in ("warp-leap", "leap", "no-pretraining")
        ax.plot(steps, mean, color=METHOD_COLORS[method], linewidth=2.0 if emphasis else 1.0,
                alpha=1.0 if emphasis else 0.6,
                label=METHOD_LABELS[method] + (" (warped)" if method == "warp-leap" else ""))
        if emphasis and len(curves) > 1:
            ax.fill_between(steps, np.maximum(mean - std, 1e-3), mean + std, color=METHOD_COLORS[method], alpha=0.15)
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.set_xlabel("adaptation step k on a test alphabet")
    ax.set_ylabel("training-batch loss (cross-entropy)")
    ax.set_title(f"adapting to the held-out alphabets (n = {n} training alphabets, {_source_title(results)})",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_meta_training(results: SweepResults, alphabets: int | None = None, seed: int | None = None,
                       methods: Sequence[str] | None = None):
    """Per meta-iteration: the meta-batch's mean task loss at θ_0 (dashed) and after the inner loop (solid),
    for one run per method (n = ``alphabets``, default largest; ``seed`` default the first). Methods that run no
    full-length inner loop during meta-training (MAML: only its short differentiable one) are left out."""
    import matplotlib.pyplot as plt

    n = results.config.largest_n if alphabets is None else alphabets
    seed = results.config.seeds[0] if seed is None else seed
    methods = [m for m in (methods or results.methods) if m != "no-pretraining"]
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    histories = {run.method: run.meta_history for run in results.runs if (run.alphabets, run.seed) == (n, seed)}
    for method in methods:
        history = histories.get(method)
        if not history:
            continue
        iterations = np.arange(1, len(history) + 1)
        as_float = lambda value: float("nan") if value is None else float(value)  # noqa: E731
        first = [as_float(h["task_loss_first"]) for h in history]  # nan: MAML runs no full-length inner loop
        last = [as_float(h["task_loss_last"]) for h in history]
        if np.all(np.isnan(last)):
            continue
        ax.plot(iterations, first, color=METHOD_COLORS[method], linestyle="--", linewidth=1, alpha=0.8)
        ax.plot(iterations, last, color=METHOD_COLORS[method], marker=METHOD_MARKERS[method], markersize=3,
                linewidth=1.4, label=METHOD_LABELS[method])
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("task loss (meta-batch mean)")
    ax.set_title(f"meta-training, n = {n}, seed {seed}: loss at θ₀ (dashed) and after "
                 f"{results.config.inner_steps} steps (solid)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_replay_speed(timing: dict):
    """One Warp-Leap meta-iteration split into adaptation and replay, per replay scheme (from
    :meth:`~warpkit.experiments.omniglot.OmniglotExperiment.time_meta_iteration`)."""
    import matplotlib.pyplot as plt

    names = {"batched": "batched replay\n(chunks, vmap)", "one_point": "one point at a time\n(authors' code)",
             "looped": "same chunks,\nPython loop"}
    variants = list(timing["variants"])
    adapt = [timing["variants"][v]["seconds_adapt"] for v in variants]
    replay = [timing["variants"][v]["seconds_replay"] for v in variants]
    fig, ax = plt.subplots(figsize=(5.6, 2.2 + 0.45 * len(variants)))
    y = np.arange(len(variants))
    ax.barh(y, adapt, color="#9ecae1", label="adapt the meta-batch (θ only)")
    ax.barh(y, replay, left=adapt, color="#d62728", label="replay the buffered points (φ)")
    for i, v in enumerate(variants):
        data = timing["variants"][v]
        ax.text(adapt[i] + replay[i], i, f"  {adapt[i] + replay[i]:.1f} s, {data['warp_steps']} φ-steps",
                va="center", fontsize=8)
    ax.set_yticks(y, [names.get(v, v) for v in variants], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall-clock seconds of one meta-iteration")
    ratio = timing.get("replay_speedup_in_meta_iteration")
    points = timing["variants"][variants[0]]["points"]
    title = f"one Warp-Leap meta-iteration ({timing['tasks']} tasks × {timing['inner_steps']} steps = {points} points)"
    if ratio:
        title += (f"\nbatched replay: whole meta-iteration {ratio:.1f}× faster, "
                  f"replay {timing['replay_speedup']:.1f}× faster")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 1.45 * max(a + r for a, r in zip(adapt, replay)))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_paper_table(results: SweepResults):
    """The paper's reported 25-alphabet numbers next to this run's at its largest n, as a table figure."""
    import matplotlib.pyplot as plt

    rows = results.paper_table()
    seeds = len(results.config.seeds)  # a standard deviation over one seed would be a meaningless "± 0.0"
    cells = []
    for row in rows:
        paper = row["paper"]
        paper_text = "—" if paper is None else (f"{paper[0]:.1f}" + (f" ± {paper[1]:.1f}" if paper[1] else ""))
        ours = f"{row['ours'][0]:.1f}" + (f" ± {row['ours'][1]:.1f}" if seeds > 1 else "")
        cells.append([row["label"], ours, paper_text])
    fig, ax = plt.subplots(figsize=(6.4, 0.42 * (len(cells) + 2)))
    ax.axis("off")
    config = results.config
    table = ax.table(cellText=cells, colLabels=[
        "method", f"this run: n = {config.largest_n}, {seeds} seed{'s' if seeds > 1 else ''}\n"
        f"{_source_title(results)}, {config.ways}-way",
        "paper: n = 25\nfull Omniglot, 20-way"], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.35)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_height(cell.get_height() * 1.6)
        if r > 0 and rows[r - 1]["method"] == "warp-leap":
            cell.set_facecolor("#fde0dd")
    ax.set_title("held-out accuracy (%): this run against the paper's reported numbers", fontsize=9)
    fig.tight_layout()
    return fig


def _bars(ax, methods, means, stds, title, seeds_text, chance=None):
    x = np.arange(len(methods))
    colors = [METHOD_COLORS.get(m, "0.5") for m in methods]
    errors = [np.nan if s is None else s for s in stds]  # no error bar where there is no spread to show
    ax.bar(x, means, yerr=errors, color=colors, capsize=3, alpha=0.9, error_kw={"linewidth": 1})
    for xi, mean, std in zip(x, means, stds):
        ax.text(xi, mean + (std or 0) + 1.5, f"{mean:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, [METHOD_LABELS.get(m, m).replace("Multi-head finetuning", "Multi-head")
                      for m in methods], fontsize=7, rotation=35, ha="right", rotation_mode="anchor")
    if chance is not None:
        ax.axhline(chance, color="0.5", linestyle=":", linewidth=1)
        seeds_text += f"; dotted: chance {chance:.0f} %"
    ax.set_title(f"{title}\n{seeds_text}", fontsize=8)
    ax.grid(alpha=0.3, axis="y")


def plot_run_reference_paper(results: SweepResults, reference=None):
    """Held-out accuracy (%) per method, mean ± std over seeds, in three panels side by side: this run (its
    largest n), the reference run (a :class:`warpkit.kit.results.Reference`, its largest n; omitted when None) and
    the paper's reported numbers at n = 25 (a std only where the paper gives one)."""
    import matplotlib.pyplot as plt

    panels = 3 if reference is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 3.8), sharey=True)
    methods = results.methods
    stats = [results.mean_std(m) for m in methods]
    seeds = len(results.config.seeds)
    _bars(axes[0], methods, [100 * m for m, _ in stats], [100 * s if seeds > 1 else None for _, s in stats],
          f"this run: n = {results.config.largest_n}, {_source_title(results)}",
          f"{results.config.ways}-way, {results.config.inner_steps} steps, "
          + (f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (not evidence: see the reference)"),
          chance=100 / results.config.ways)
    if reference is not None:
        ref_methods = [m for m in reference.methods]
        ref_stats = [reference.mean_std(m) for m in ref_methods]
        ref_seeds = max(n for _, _, n in ref_stats)
        _bars(axes[1], ref_methods, [100 * m for m, _, _ in ref_stats],
              [100 * s if n > 1 else None for _, s, n in ref_stats],
              f"reference run ({reference.data['size']}): n = {reference.largest_n}, Omniglot subsets",
              f"{reference.config['ways']}-way, {reference.config['inner_steps']} steps, mean ± std over "
              f"{ref_seeds} seeds", chance=100 / reference.config["ways"])
    paper_methods = [m for m in METHOD_LABELS if m in PAPER_ACCURACY_25]
    _bars(axes[-1], paper_methods, [PAPER_ACCURACY_25[m][0] for m in paper_methods],
          [PAPER_ACCURACY_25[m][1] for m in paper_methods],
          "paper: n = 25, full Omniglot (Flennerhag et al., 2020)", "20-way, 100 steps, 64 filters; std as reported",
          chance=5.0)
    axes[0].set_ylabel("held-out accuracy on the test alphabets (%)")
    axes[0].set_ylim(0, 100)
    fig.tight_layout()
    return fig


def plot_warp_motion(histories: dict[str, list[list[float | None]]], title: str = ""):
    """How far the meta-parameters move per meta-iteration: ``histories`` maps a label to one list per seed of
    per-iteration values (|Δφ| or |Δθ₀|); each seed is a faint line, the mean over seeds a bold one."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    palette = ["#d62728", "#f5a623", "#1f5fbf", "#2ca02c"]
    for color, (label, runs) in zip(palette, histories.items()):
        runs = [[np.nan if v is None else float(v) for v in run] for run in runs if run]
        if not runs:
            continue
        length = min(len(r) for r in runs)
        values = np.array([r[:length] for r in runs])
        iterations = np.arange(1, length + 1)
        for row in values:
            ax.plot(iterations, row, color=color, alpha=0.25, linewidth=0.8)
        seeds = f"mean over {len(values)} seeds, each seed faint" if len(values) > 1 else "one seed"
        ax.plot(iterations, np.nanmean(values, axis=0), color=color, linewidth=1.8, label=f"{label} ({seeds})")
    ax.set_xlabel("meta-iteration")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("Euclidean norm of the change")
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.set_title(title or "how far each meta-iteration moves the meta-parameters", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_replay_schedules(comparison: dict):
    """|Δφ| per meta-iteration under each replay schedule (left) and the held-out accuracy each reached
    (right), from :func:`~warpkit.experiments.omniglot.compare_replay_schedules`."""
    import matplotlib.pyplot as plt

    schedules = comparison["schedules"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.4), gridspec_kw={"width_ratios": [1.6, 1]})
    colors = ["#d62728", "#1f5fbf", "#2ca02c", "#9467bd"]
    for color, (name, data) in zip(colors, schedules.items()):
        iterations = np.arange(1, len(data["warp_change"]) + 1)
        left.plot(iterations, data["warp_change"], color=color, marker="o", markersize=3,
                  label=f"{name}: {data['warp_steps']} φ-steps, {data['seconds']:.0f} s")
    left.set_xlabel("meta-iteration")
    left.xaxis.get_major_locator().set_params(integer=True)
    left.set_ylabel("|Δφ| in the meta-iteration")
    left.set_yscale("log")
    plain_log_ticks(left)
    left.set_title(f"Warp-Leap, seed {comparison['seed']}, n = {comparison['alphabets']}: same start, same tasks",
                   fontsize=9)
    left.legend(fontsize=7)
    left.grid(alpha=0.3, which="both")
    names = list(schedules)
    right.barh(np.arange(len(names)), [100 * schedules[n]["accuracy"] for n in names],
               color=colors[:len(names)])
    for i, n in enumerate(names):
        right.text(100 * schedules[n]["accuracy"], i, f" {100 * schedules[n]['accuracy']:.1f} %", va="center",
                   fontsize=8)
    right.set_yticks(np.arange(len(names)), [n.replace(", ", ",\n") for n in names], fontsize=7)
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("held-out accuracy on the test alphabets (%)")
    right.set_title(f"after {comparison['iterations']} meta-iterations (final meta-parameters)", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["METHOD_COLORS", "METHOD_MARKERS", "plot_accuracy_vs_alphabets", "plot_adaptation_curves",
           "plot_meta_training", "plot_paper_table", "plot_replay_schedules", "plot_replay_speed",
           "plot_run_reference_paper", "plot_warp_motion"]
