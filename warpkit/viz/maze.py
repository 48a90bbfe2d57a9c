"""Drawing the maze (Flennerhag et al., 2020, Section 4.3): the grid, an agent's path, frame strips, learning curves, goal hits.

Every function draws into matplotlib axes or returns a figure; nothing here runs an agent.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from warpkit.envs.maze import shortest_distances

WALL_COLOUR, FLOOR_COLOUR = "#3c3c46", "#ebebe1"
GOAL_COLOUR, AGENT_COLOUR = "#2e9e4f", "#d7322a"
AGENT_COLOURS = {
    "warp_rnn": "#1f5fbf", "linear_warp": "#7aa6e0", "no_warp": "#8c8c8c",
    "l2rl": "#e07b1f", "l2rl_large": "#b5540c", "hebbian": "#9b4fb8", "hebbian_plain": "#c39bd3", "random": "#222222",
}


def _as_numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def draw_maze(ax, walls, goal=None, agent=None, title: str | None = None, show_grid: bool = True):
    """The maze as an image: walls dark, floor light; the goal as a green square, the agent as a red dot."""
    walls = _as_numpy(walls).astype(float)
    ax.imshow(walls, cmap=ListedColormap([FLOOR_COLOUR, WALL_COLOUR]), vmin=0, vmax=1, interpolation="nearest")
    size = walls.shape[0]
    if show_grid:
        ax.set_xticks(np.arange(-0.5, size), minor=True)
        ax.set_yticks(np.arange(-0.5, size), minor=True)
        ax.grid(which="minor", color="#c8c8c0", linewidth=0.4)
        ax.tick_params(which="minor", length=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if goal is not None:
        r, c = _as_numpy(goal)
        ax.add_patch(plt.Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, color=GOAL_COLOUR, zorder=3))
    if agent is not None:
        r, c = _as_numpy(agent)
        ax.plot(c, r, "o", color=AGENT_COLOUR, markersize=max(3, 60 / size), zorder=4)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


OBSERVATION_LABELS = [f"wall {d}" for d in ("NW", "N", "NE", "W", "here", "E", "SW", "S", "SE")] + [
    "unused", "bias", "step/T", "prev. reward", "prev. up", "prev. down", "prev. left", "prev. right"]


def draw_observation(ax, observation, title: str | None = None):
    """The 17 observation values as a labelled strip (grey scale; the previous reward is printed)."""
    values = _as_numpy(observation).astype(float).reshape(-1)
    shown = values.copy()
    shown[12] = np.clip(shown[12] / 10.0, -1, 1)  # the reward is up to 10: scale it for the colour only
    ax.imshow(shown[None, :], cmap="Greys", vmin=-0.2, vmax=1.0, aspect="equal")
    ax.set_yticks([])
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(OBSERVATION_LABELS[:len(values)], rotation=70, fontsize=7)
    for i, value in enumerate(values):
        ax.text(i, 0, f"{value:g}", ha="center", va="center", fontsize=7,
                color="white" if shown[i] > 0.55 else "black")
    for boundary in (8.5, 12.5):  # walls | constants, time, reward | previous action
        ax.axvline(boundary, color=AGENT_COLOUR, linewidth=2)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def path_segments(cells, reached) -> list[np.ndarray]:
    """Split a path [T + 1, 2] at teleports: after step t with ``reached[t]`` the agent jumps, so the segment
    ends at the goal (the cell it stepped onto) and the next starts where it landed."""
    cells, reached = _as_numpy(cells), _as_numpy(reached).astype(bool)
    segments, start = [], 0
    for t in np.flatnonzero(reached):
        segments.append(cells[start:t + 1])  # up to the cell before the goal; the goal is added by the caller
        start = t + 1
    segments.append(cells[start:])
    return segments


def draw_path(ax, walls, cells, goal, reached, title: str | None = None, cmap: str = "viridis"):
    """An episode's path drawn over the maze, one line per stretch between teleports, coloured by stretch
    (early stretches dark, late ones light); teleport landings are marked with small crosses."""
    draw_maze(ax, walls, goal=goal, title=title)
    goal = _as_numpy(goal)
    segments = path_segments(cells, reached)
    colours = plt.get_cmap(cmap)(np.linspace(0.0, 0.9, max(len(segments), 2)))
    rng = np.random.default_rng(0)
    for i, segment in enumerate(segments):
        if i < len(segments) - 1:
            segment = np.vstack([segment, goal])
        jitter = rng.uniform(-0.12, 0.12, size=2)  # separate overlapping stretches a little
        ax.plot(segment[:, 1] + jitter[1], segment[:, 0] + jitter[0], "-", color=colours[i], linewidth=1.4,
                alpha=0.9, zorder=2)
        if i > 0:
            ax.plot(segment[0, 1], segment[0, 0], "x", color=colours[i], markersize=5, zorder=4)
    handles = [Line2D([], [], color=colours[0], linewidth=1.4), Line2D([], [], color=colours[-1], linewidth=1.4),
               Line2D([], [], color="k", marker="x", linestyle="none"),
               Patch(color=GOAL_COLOUR)]
    ax.legend(handles, ["first stretch (from the centre)", "last stretch", "landing after a teleport", "goal"],
              fontsize=6, loc="lower center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return ax


#: how many of the agent's last moves the maze pictures draw
TRAIL = 8


def _recent_cells(cells: np.ndarray, reached: np.ndarray, step: int) -> np.ndarray:
    """The agent's cells over its last :data:`TRAIL` moves up to ``step``, from after its last teleport."""
    first = max(0, step - TRAIL)
    first = max([first] + [t + 1 for t in range(first, step) if reached[t]])
    return cells[first:step + 1]


def frame_strip(walls, cells, goal, reached, steps: Sequence[int], title: str | None = None):
    """Small multiples of one maze at the given steps: the agent (red), the goal (green) and its last
    :data:`TRAIL` moves (no line across a teleport). Returns the figure."""
    cells, reached = _as_numpy(cells), _as_numpy(reached).astype(bool)
    fig, axes = plt.subplots(1, len(steps), figsize=(1.9 * len(steps), 2.2))
    axes = np.atleast_1d(axes)
    for ax, step in zip(axes, steps):
        draw_maze(ax, walls, goal=goal, agent=cells[step], show_grid=False)
        recent = _recent_cells(cells, reached, step)
        ax.plot(recent[:, 1], recent[:, 0], "-", color=AGENT_COLOUR, alpha=0.5, linewidth=1.5)
        hits = int(reached[:step].sum())
        ax.set_title(f"step {step}\ngoal found {hits}×", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def smooth(values, window: int) -> np.ndarray:
    """Moving average over ``window`` episodes along the last axis (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1:
        return values
    cumulative = np.cumsum(values, axis=-1)
    out = np.empty_like(values)
    out[..., :window] = cumulative[..., :window] / np.arange(1, window + 1)
    out[..., window:] = (cumulative[..., window:] - cumulative[..., :-window]) / window
    return out


def plot_learning_curves(ax, curves: Mapping[str, np.ndarray], labels: Mapping[str, str] | None = None,
                         window: int = 20, band_over: str = "seeds", title: str | None = None):
    """Reward per episode against episode for each agent, after a moving average over ``window`` episodes.
    ``curves[name]`` has shape [rows, episodes]: with ``band_over="seeds"`` the rows are seeds, the line is their
    mean and the band their smallest to largest value; with ``band_over="mazes"`` the rows are the mazes of one
    seed, the line is their mean and the band their middle half (25th to 75th percentile). A grey legend entry
    says which band is drawn."""
    if band_over not in ("seeds", "mazes"):
        raise ValueError(f"plot_learning_curves: band_over must be 'seeds' or 'mazes', got {band_over!r}")
    labels = labels or {}
    if not curves:
        ax.text(0.5, 0.5, "no curves to draw\n(no reference run found)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    rows = 0
    for name, rewards in curves.items():
        rewards = smooth(np.atleast_2d(rewards), window)
        rows = max(rows, rewards.shape[0])
        episodes = np.arange(1, rewards.shape[1] + 1)
        colour = AGENT_COLOURS.get(name)
        ax.plot(episodes, rewards.mean(0), color=colour, label=labels.get(name, name), linewidth=1.6)
        low, high = ((rewards.min(0), rewards.max(0)) if band_over == "seeds"
                     else np.percentile(rewards, [25, 75], axis=0))
        if rewards.shape[0] > 1:
            ax.fill_between(episodes, low, high, color=colour, alpha=0.18, linewidth=0)
    band = (f"band: lowest to highest of {rows} seeds" if band_over == "seeds"
            else f"band: middle half of the {rows} mazes")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles + [Patch(color="0.6", alpha=0.4)], names + [band if rows > 1 else "one row: no band"],
              fontsize=7, loc="upper left")
    ax.set_xlabel("episode")
    ax.set_ylabel(f"reward per episode\n(mean of {window} episodes)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_scores(ax, groups: Mapping[str, Mapping[str, Mapping[int, float]]], labels: Mapping[str, str],
                order: Sequence[str]):
    """Scores per agent, one bar per group side by side (for example ``{"this run": ..., "reference": ...}``,
    each ``{agent: {seed: score}}``): a bar is the mean over seeds, a black dot one seed. Agents in ``order``
    that a group lacks leave a gap."""
    width = 0.8 / max(1, len(groups))
    for g, (group, scores) in enumerate(groups.items()):
        for i, name in enumerate(order):
            values = list(scores.get(name, {}).values())
            if not values:
                continue
            x = i - 0.4 + width * (g + 0.5)
            ax.bar(x, np.mean(values), width * 0.9, color=AGENT_COLOURS.get(name), alpha=0.45 + 0.4 * g,
                   hatch="//" if g == 0 and len(groups) > 1 else None, edgecolor="white")
            ax.plot([x] * len(values), values, "k.", markersize=5)
    handles = [Patch(facecolor="0.5", alpha=0.45 + 0.4 * g, edgecolor="white",
                     hatch="//" if g == 0 and len(groups) > 1 else None) for g in range(len(groups))]
    handles.append(Line2D([], [], color="k", marker=".", linestyle="none"))
    ax.legend(handles, [f"{group}: bar = mean over seeds" for group in groups] + ["one seed"], fontsize=8)
    ax.set_xticks(range(len(order)), [labels.get(n, n) for n in order], rotation=18, ha="right", fontsize=8)
    ax.set_ylabel("score: reward per episode")
    ax.grid(axis="y", alpha=0.3)
    return ax


def returns_after_teleports(walls, cells, goals, reached) -> tuple[np.ndarray, np.ndarray]:
    """For every return to the goal after a teleport (all mazes of one rollout): the shortest possible number of
    moves from the landing cell to the goal, and the number of steps the agent took. A memoryless searcher takes
    many more steps than the shortest path; an agent that remembers the goal walks close to it. Only returns that
    finished before the end of the episode are counted (the same truncation for every agent)."""
    walls, cells, goals = _as_numpy(walls), _as_numpy(cells), _as_numpy(goals)
    reached = _as_numpy(reached).astype(bool)
    shortest, taken = [], []
    for b in range(reached.shape[1]):
        distances = shortest_distances(walls, goals[b])
        times = np.flatnonzero(reached[:, b])
        for previous, current in zip(times[:-1], times[1:]):
            landing = cells[previous + 1, b]
            shortest.append(distances[landing[0], landing[1]])
            taken.append(current - previous)
    return np.asarray(shortest), np.asarray(taken)


def plot_returns(ax, shortest, taken, label: str, colour: str | None = None):
    """Steps taken against the shortest path for returns after teleports (see :func:`returns_after_teleports`),
    with the diagonal (perfect memory) drawn; jittered so that equal pairs stay visible."""
    rng = np.random.default_rng(0)
    ax.plot(shortest + rng.uniform(-0.2, 0.2, len(shortest)), taken, ".", color=colour, alpha=0.45,
            label=f"{label} ({len(taken)} returns)")
    top = max([1] + list(shortest))
    first = not any(line.get_linestyle() == "--" for line in ax.get_lines())
    ax.plot([0, top], [0, top], "k--", linewidth=1, label="perfect memory: steps = shortest path" if first else None)
    ax.set_xlabel("shortest path from the landing cell to the goal (steps)")
    ax.set_ylabel("steps the agent took")
    ax.grid(alpha=0.3)
    return ax


def maze_animation(walls, cells, goal, reached):
    """A matplotlib animation of one maze's episode (for live notebooks: ``HTML(anim.to_jshtml())``)."""
    from matplotlib.animation import FuncAnimation

    cells, reached = _as_numpy(cells), _as_numpy(reached).astype(bool)
    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    draw_maze(ax, walls, goal=goal)
    (dot,) = ax.plot([], [], "o", color=AGENT_COLOUR, markersize=8, zorder=5)
    (line,) = ax.plot([], [], "-", color=AGENT_COLOUR, alpha=0.5)
    title = ax.set_title("", fontsize=9)

    def update(step):
        recent = _recent_cells(cells, reached, step)
        line.set_data(recent[:, 1], recent[:, 0])
        dot.set_data([cells[step, 1]], [cells[step, 0]])
        title.set_text(f"step {step}   goal found {int(reached[:step].sum())}×")
        return dot, line, title

    animation = FuncAnimation(fig, update, frames=len(cells), interval=120, blit=False)
    plt.close(fig)
    return animation


def plot_saturation(axes, runs: Sequence[Mapping], keys: Sequence[tuple[str, str]] = (
        ("reward", "mean reward per episode"), ("saturated_units", "saturated hidden units (|h| > 0.95)"),
        ("saturated_gates", "saturated warp gates (g < 0.1 or g > 1.9)"))):
    """One panel per ``(key, label)`` of ``keys``: that measurement of ``benchmarks/maze_saturation.py`` against the
    episode, one line per run (``runs``: its ``{"seed", "adam_eps", "rows"}``), the colour for Adam's ε and the
    line style for the seed, so that the two values of ε for one seed share a style."""
    styles = ["-", "--", ":", "-."]
    seeds = sorted({run["seed"] for run in runs})
    epsilons = sorted({run["adam_eps"] for run in runs})
    colours = dict(zip(epsilons, ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]))
    for ax, (key, label) in zip(np.atleast_1d(axes), keys):
        for run in runs:
            episodes = [row["episode"] for row in run["rows"]]
            values = [row[key] for row in run["rows"]]
            ax.plot(episodes, values, color=colours[run["adam_eps"]], linestyle=styles[seeds.index(run["seed"]) % 4],
                    label=f"seed {run['seed']}, Adam ε {run['adam_eps']:g}", linewidth=1.5)
        ax.set_xlabel("episode")
        ax.set_title(label, fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return axes
