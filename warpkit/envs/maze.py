r"""Miconi's grid maze: the goal location is the task (Flennerhag et al., 2020, Section 4.3).

The maze of "Differentiable plasticity" (Miconi et al., ICML 2018, §4.5) and "Backpropamine" (ICLR 2019, §4.2),
used by WarpGrad for its reinforcement-learning experiment. Two forms with *identical* rules:

* :class:`MazeEnv`, a ``gymnasium.Env`` registered as ``warpkit/Maze-v0`` (one maze; passes gymnasium's
  environment checker), for inspection, rendering and any gymnasium tooling;
* :class:`BatchedMaze`, ``B`` independent mazes stepped together on torch tensors, for training.

Rules
-----
* The grid is ``size × size`` with ``size`` odd (13 in the WarpGrad code, 9 and 11 in Miconi's). Row 0, row
  ``size-1``, column 0 and column ``size-1`` are walls; every interior cell whose row and column are both even is a
  pillar (a wall), except the centre ``(size//2, size//2)``, which is always open.
* Each episode an invisible goal cell is drawn uniformly over the open cells other than the centre and stays fixed
  for the episode. The agent starts at the centre (or, with ``random_start=True``, uniformly on an open cell that is
  not the goal).
* Four actions: 0 up (row − 1), 1 down (row + 1), 2 left (column − 1), 3 right (column + 1). Moving into a wall
  leaves the agent where it is and gives ``-wall_penalty`` (default 0).
* Stepping onto the goal gives ``+reward`` (default 10) and teleports the agent uniformly to an *open* cell other
  than the goal (the WarpGrad code could teleport into a wall: a bug we do not copy).
* An episode lasts ``episode_length`` steps (default 200); the step counter is part of the observation, so the end
  of the episode is a true termination (``terminated=True``), not a time-limit truncation.

Observation (17 float32 values), after ``t`` steps of the episode:

====== ==================================================================================================
index  meaning
====== ==================================================================================================
0–8    the 3×3 neighbourhood of the agent, row-major from the top-left, 1 = wall (index 4, the agent's own
       cell, is always 0)
9      0 (an unused input, kept so the layout matches Miconi's code)
10     1 (a bias input)
11     t / episode_length
12     the reward received on the previous step (0 at the start of an episode)
13–16  one-hot of the previous action (all zeros at the start of an episode, where Miconi's code shows
       action 0: "no action yet" is the honest input)
====== ==================================================================================================

Randomness
----------
Every maze owns one ``numpy.random.Generator`` (PCG64 seeded by ``SeedSequence(seed)``, exactly what gymnasium's
``reset(seed=seed)`` builds). A maze draws, in this order: the goal at each reset, then the start cell if
``random_start``, then one teleport destination each time it reaches the goal. Draws go through the same helper
functions in both forms, so ``MazeEnv.reset(seed=s_b)`` and maze ``b`` of ``BatchedMaze.reset(seed=s)`` (with
``s_b = maze_seeds(s, B)[b]``) produce the same episode for the same actions, step for step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding

NUM_ACTIONS = 4
ACTION_NAMES = ("up", "down", "left", "right")
#: (row, column) displacement of each action
ACTION_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1))
OBSERVATION_SIZE = 17
NEIGHBOURHOOD = slice(0, 9)
UNUSED_INDEX, BIAS_INDEX, TIME_INDEX, REWARD_INDEX = 9, 10, 11, 12
ACTION_SLICE = slice(13, 17)


# ----------------------------------------------------------------------------------------------------------
# configuration and layout
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MazeConfig:
    """The maze's parameters (Flennerhag et al., 2020, Section 4.3 defaults)."""

    size: int = 13
    episode_length: int = 200
    reward: float = 10.0
    wall_penalty: float = 0.0
    random_start: bool = False

    def __post_init__(self):
        if not isinstance(self.size, (int, np.integer)) or self.size < 5 or self.size % 2 == 0:
            raise ValueError(
                f"MazeConfig: size must be an odd integer >= 5 (13 in the paper, 9 for quick runs), got {self.size!r}"
            )
        if not isinstance(self.episode_length, (int, np.integer)) or self.episode_length < 1:
            raise ValueError(f"MazeConfig: episode_length must be a positive integer, got {self.episode_length!r}")
        if not np.isfinite(self.reward) or not np.isfinite(self.wall_penalty):
            raise ValueError(f"MazeConfig: reward and wall_penalty must be finite numbers, got "
                             f"{self.reward!r} and {self.wall_penalty!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_walls(size: int) -> np.ndarray:
    """The wall map, a ``size × size`` boolean array (True = wall): border walls, pillars at every interior
    (even, even) cell, the centre open."""
    MazeConfig(size=size)  # validates
    walls = np.zeros((size, size), dtype=bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    walls[2:size - 1:2, 2:size - 1:2] = True
    walls[size // 2, size // 2] = False
    return walls


class MazeLayout:
    """The fixed geometry shared by every maze of one size: walls, open cells, goal candidates, centre."""

    def __init__(self, size: int):
        self.size = size
        self.walls = make_walls(size)
        self.centre = (size // 2, size // 2)
        #: open cells in row-major order, shape [n_open, 2]
        self.open_cells = np.argwhere(~self.walls)
        is_centre = (self.open_cells[:, 0] == self.centre[0]) & (self.open_cells[:, 1] == self.centre[1])
        #: cells a goal may be drawn on: open and not the centre
        self.goal_cells = self.open_cells[~is_centre]
        self._open_index = -np.ones((size, size), dtype=np.int64)
        self._open_index[self.open_cells[:, 0], self.open_cells[:, 1]] = np.arange(len(self.open_cells))

    def open_index(self, cell: Sequence[int]) -> int:
        """Position of ``cell`` in :attr:`open_cells` (raises for a wall)."""
        index = int(self._open_index[cell[0], cell[1]])
        if index < 0:
            raise ValueError(f"cell {tuple(cell)} is a wall in the {self.size}×{self.size} maze")
        return index

    def neighbourhood(self, row: int, col: int) -> np.ndarray:
        """The 3×3 wall neighbourhood of (row, col), flattened row-major, float32."""
        return self.walls[row - 1:row + 2, col - 1:col + 2].astype(np.float32).reshape(-1)


def shortest_distances(walls: np.ndarray, target: Sequence[int]) -> np.ndarray:
    """Breadth-first search: the number of moves from every cell to ``target`` (``-1`` for walls and cells that
    cannot reach it), an int array shaped like ``walls``."""
    walls = np.asarray(walls, dtype=bool)
    distances = -np.ones(walls.shape, dtype=np.int64)
    target = (int(target[0]), int(target[1]))
    if walls[target]:
        raise ValueError(f"shortest_distances: the target {target} is a wall")
    distances[target] = 0
    frontier = [target]
    while frontier:
        next_frontier = []
        for r, c in frontier:
            for dr, dc in ACTION_OFFSETS:
                cell = (r + dr, c + dc)
                if 0 <= cell[0] < walls.shape[0] and 0 <= cell[1] < walls.shape[1] \
                        and not walls[cell] and distances[cell] < 0:
                    distances[cell] = distances[r, c] + 1
                    next_frontier.append(cell)
        frontier = next_frontier
    return distances


def draw_goal(rng: np.random.Generator, layout: MazeLayout) -> tuple[int, int]:
    """Goal: uniform over the open cells other than the centre (one draw)."""
    row, col = layout.goal_cells[rng.integers(len(layout.goal_cells))]
    return int(row), int(col)


def draw_open_cell_except(rng: np.random.Generator, layout: MazeLayout, excluded: Sequence[int]) -> tuple[int, int]:
    """Uniform over the open cells other than ``excluded`` (one draw): teleport destinations and random starts."""
    skip = layout.open_index(excluded)
    index = int(rng.integers(len(layout.open_cells) - 1))
    index += index >= skip
    row, col = layout.open_cells[index]
    return int(row), int(col)


def maze_seeds(seed: int, num_mazes: int) -> list[int]:
    """Per-maze integer seeds derived from one seed: maze ``b`` of ``BatchedMaze.reset(seed=seed)`` behaves like
    ``MazeEnv.reset(seed=maze_seeds(seed, num_mazes)[b])``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(num_mazes, dtype=np.uint32)]


def observation_space(config: MazeConfig) -> spaces.Box:
    """The Box of the 17-value observation: [0, 1] everywhere except the previous reward, whose bounds are the
    smallest and largest reward a step can give (the constant inputs 9 and 10 also get [0, 1], as gymnasium
    warns about zero-width bounds)."""
    reward_values = (0.0, -config.wall_penalty, config.reward)
    low = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
    high = np.ones(OBSERVATION_SIZE, dtype=np.float32)
    low[REWARD_INDEX], high[REWARD_INDEX] = min(reward_values), max(reward_values)
    return spaces.Box(low=low, high=high, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# the gymnasium form
# ----------------------------------------------------------------------------------------------------------
class MazeEnv(gymnasium.Env):
    """One grid maze as a ``gymnasium.Env`` (id ``warpkit/Maze-v0``); the rules are in the module docstring.

    ``reset(seed=..., options={"goal": (r, c), "start": (r, c)})`` may fix the goal and/or the start cell (for
    figures and tests); the random draws are then skipped. ``info`` holds ``position``, ``goal``, ``step`` and
    ``reached_goal`` (whether this step reached the goal before teleporting).
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 8}

    def __init__(self, size: int = 13, episode_length: int = 200, reward: float = 10.0, wall_penalty: float = 0.0,
                 random_start: bool = False, render_mode: str | None = None):
        self.config = MazeConfig(size, episode_length, float(reward), float(wall_penalty), bool(random_start))
        self.layout = MazeLayout(size)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = observation_space(self.config)
        self.position: tuple[int, int] | None = None
        self.goal: tuple[int, int] | None = None
        self.steps = 0

    def _observation(self, previous_reward: float, previous_action: int | None) -> np.ndarray:
        obs = np.zeros(OBSERVATION_SIZE, dtype=np.float32)
        obs[NEIGHBOURHOOD] = self.layout.neighbourhood(*self.position)
        obs[BIAS_INDEX] = 1.0
        obs[TIME_INDEX] = self.steps / self.config.episode_length
        obs[REWARD_INDEX] = previous_reward
        if previous_action is not None:
            obs[ACTION_SLICE.start + previous_action] = 1.0
        return obs

    def _info(self, reached_goal: bool = False) -> dict[str, Any]:
        return {"position": self.position, "goal": self.goal, "step": self.steps, "reached_goal": reached_goal}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"goal", "start"}
        if unknown:
            raise ValueError(f"MazeEnv.reset: unknown options {sorted(unknown)}; allowed: 'goal', 'start'")
        if "goal" in options:
            goal = tuple(int(v) for v in options["goal"])
            if self.layout.walls[goal] or goal == self.layout.centre:
                raise ValueError(f"options['goal']={goal} must be an open cell other than the centre {self.layout.centre}")
            self.goal = goal
        else:
            self.goal = draw_goal(self.np_random, self.layout)
        if "start" in options:
            start = tuple(int(v) for v in options["start"])
            if self.layout.walls[start] or start == self.goal:
                raise ValueError(f"options['start']={start} must be an open cell other than the goal {self.goal}")
            self.position = start
        elif self.config.random_start:
            self.position = draw_open_cell_except(self.np_random, self.layout, self.goal)
        else:
            self.position = self.layout.centre
        self.steps = 0
        return self._observation(0.0, None), self._info()

    def step(self, action):
        if self.position is None:
            raise RuntimeError("MazeEnv.step() called before reset(); call env.reset(seed=...) first")
        if self.steps >= self.config.episode_length:
            raise RuntimeError(f"the episode ended after {self.config.episode_length} steps; call env.reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in 0..{NUM_ACTIONS - 1} (up, down, left, right), got {action!r}")
        action = int(action)
        d_row, d_col = ACTION_OFFSETS[action]
        target = (self.position[0] + d_row, self.position[1] + d_col)
        reward = 0.0
        if self.layout.walls[target]:
            reward -= self.config.wall_penalty
        else:
            self.position = target
        reached_goal = self.position == self.goal
        if reached_goal:
            reward += self.config.reward
            self.position = draw_open_cell_except(self.np_random, self.layout, self.goal)
        self.steps += 1
        terminated = self.steps >= self.config.episode_length
        obs = self._observation(reward, action)
        return obs, float(reward), terminated, False, self._info(reached_goal)

    def render(self):
        if self.render_mode is None or self.position is None:
            return None
        if self.render_mode == "ansi":
            rows = []
            for r in range(self.config.size):
                chars = []
                for c in range(self.config.size):
                    chars.append("A" if (r, c) == self.position else "G" if (r, c) == self.goal
                                 else "#" if self.layout.walls[r, c] else ".")
                rows.append("".join(chars))
            return "\n".join(rows) + "\n"
        return maze_image(self.layout.walls, self.position, self.goal)


def maze_image(walls: np.ndarray, position=None, goal=None, cell_pixels: int = 16) -> np.ndarray:
    """An RGB uint8 image of the maze: walls dark grey, open cells light, goal green, agent red."""
    colours = np.where(walls[..., None], np.array([60, 60, 70]), np.array([235, 235, 225])).astype(np.uint8)
    if goal is not None:
        colours[goal[0], goal[1]] = (60, 170, 80)
    if position is not None:
        colours[position[0], position[1]] = (215, 50, 40)
    return np.repeat(np.repeat(colours, cell_pixels, axis=0), cell_pixels, axis=1)


# ----------------------------------------------------------------------------------------------------------
# the batched torch form
# ----------------------------------------------------------------------------------------------------------
class BatchedMaze:
    """``num_mazes`` independent grid mazes stepped together on torch tensors (same rules as :class:`MazeEnv`).

    >>> env = BatchedMaze(30, MazeConfig(size=13))
    >>> obs = env.reset(seed=0)                       # [30, 17]; new goals in every maze
    >>> obs, reward, done = env.step(actions)          # actions: LongTensor [30]

    ``reset()`` without a seed starts a new episode from each maze's running generator (new goals); a seed
    re-seeds the generators (see :func:`maze_seeds`). Cells are held as flat indices ``row * size + col`` (a move is
    then one addition); :attr:`positions` and :attr:`goals` give them as [B, 2] (row, col) tensors, :attr:`reached`
    says which mazes reached their goal on the last step (before the teleport).
    """

    def __init__(self, num_mazes: int, config: MazeConfig | None = None, device: str | torch.device = "cpu"):
        if not isinstance(num_mazes, (int, np.integer)) or num_mazes < 1:
            raise ValueError(f"BatchedMaze: num_mazes must be a positive integer, got {num_mazes!r}")
        self.num_mazes = int(num_mazes)
        self.config = config or MazeConfig()
        self.layout = MazeLayout(self.config.size)
        self.device = torch.device(device)
        size = self.config.size
        self._walls_flat = torch.as_tensor(self.layout.walls.reshape(-1), device=self.device)
        self._walls_float = self._walls_flat.float()
        self._moves = torch.tensor([dr * size + dc for dr, dc in ACTION_OFFSETS], device=self.device)
        grid = torch.arange(-1, 2, device=self.device)
        self._neighbour_offsets = (grid[:, None] * size + grid[None, :]).reshape(-1)  # row-major 3×3
        # row a is the one-hot of action a; the extra last row (all zeros) stands for "no previous action"
        self._action_codes = torch.cat([torch.eye(NUM_ACTIONS), torch.zeros(1, NUM_ACTIONS)]).to(self.device)
        self._constants = torch.tensor([0.0, 1.0], device=self.device).expand(self.num_mazes, 2)
        self.rngs: list[np.random.Generator] | None = None
        self._cells = torch.zeros(self.num_mazes, dtype=torch.long, device=self.device)
        self._goal_cells = torch.zeros_like(self._cells)
        self._goals_host: list[tuple[int, int]] = []
        self.reached = torch.zeros(self.num_mazes, dtype=torch.bool, device=self.device)
        self.steps = 0
        self._started = False

    # -- state --------------------------------------------------------------------------------------------
    @property
    def positions(self) -> torch.Tensor:
        """The agents' cells, [B, 2] (row, col)."""
        return torch.stack([self._cells // self.config.size, self._cells % self.config.size], dim=1)

    @property
    def goals(self) -> torch.Tensor:
        """The goals, [B, 2] (row, col)."""
        return torch.stack([self._goal_cells // self.config.size, self._goal_cells % self.config.size], dim=1)

    def generator_states(self) -> list[dict]:
        """The per-maze generators' states (for checkpoints)."""
        return [rng.bit_generator.state for rng in self.rngs] if self.rngs is not None else []

    def set_generator_states(self, states: list[dict]) -> None:
        """Restore what :meth:`generator_states` returned."""
        if len(states) != self.num_mazes:
            raise ValueError(f"expected {self.num_mazes} generator states, got {len(states)}")
        self.rngs = [np.random.Generator(np.random.PCG64()) for _ in states]
        for rng, state in zip(self.rngs, states):
            rng.bit_generator.state = state

    def _observation(self, rewards: torch.Tensor, action_codes: torch.Tensor) -> torch.Tensor:
        neighbourhood = self._walls_float[self._cells[:, None] + self._neighbour_offsets]
        time = torch.full((self.num_mazes, 1), self.steps / self.config.episode_length, device=self.device)
        return torch.cat([neighbourhood, self._constants, time, rewards[:, None], action_codes], dim=1)

    # -- episode ------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, goals=None) -> torch.Tensor:
        """Start a new episode in every maze; returns the first observations [B, 17].

        ``goals`` ([B, 2] rows and columns) fixes the goals instead of drawing them (the start is then the centre,
        or a random open non-goal cell with ``random_start``)."""
        if seed is not None:
            self.rngs = [seeding.np_random(s)[0] for s in maze_seeds(seed, self.num_mazes)]
        elif self.rngs is None:
            self.rngs = [seeding.np_random(None)[0] for _ in range(self.num_mazes)]
        if goals is not None:
            goals = [tuple(int(v) for v in goal) for goal in torch.as_tensor(goals).reshape(-1, 2).tolist()]
            if len(goals) != self.num_mazes:
                raise ValueError(f"goals must have shape [{self.num_mazes}, 2], got {len(goals)} rows")
            for goal in goals:
                if not (0 <= goal[0] < self.config.size and 0 <= goal[1] < self.config.size) \
                        or self.layout.walls[goal] or goal == self.layout.centre:
                    raise ValueError(f"goal {goal} must be an open cell other than the centre {self.layout.centre}")
        else:
            goals = [draw_goal(rng, self.layout) for rng in self.rngs]
        starts = [draw_open_cell_except(rng, self.layout, goal) if self.config.random_start else self.layout.centre
                  for rng, goal in zip(self.rngs, goals)]
        size = self.config.size
        self._goals_host = goals
        self._goal_cells = torch.tensor([r * size + c for r, c in goals], device=self.device)
        self._cells = torch.tensor([r * size + c for r, c in starts], device=self.device)
        self.reached = torch.zeros(self.num_mazes, dtype=torch.bool, device=self.device)
        self.steps = 0
        self._started = True
        no_action = torch.full((self.num_mazes,), NUM_ACTIONS, device=self.device)
        return self._observation(torch.zeros(self.num_mazes, device=self.device), self._action_codes[no_action])

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Apply one action per maze. Returns (observations [B, 17], rewards [B], episode_done)."""
        if not self._started:
            raise RuntimeError("BatchedMaze.step() called before reset(); call env.reset(seed=...) first")
        if self.steps >= self.config.episode_length:
            raise RuntimeError(f"the episode ended after {self.config.episode_length} steps; call env.reset()")
        actions = torch.as_tensor(actions, device=self.device)
        if actions.shape != (self.num_mazes,) or actions.dtype != torch.long:
            raise ValueError(f"actions must be a long tensor of shape [{self.num_mazes}], "
                             f"got {tuple(actions.shape)} {actions.dtype}")
        low, high = (value.item() for value in torch.aminmax(actions))
        if low < 0 or high >= NUM_ACTIONS:
            raise ValueError(f"actions must lie in 0..{NUM_ACTIONS - 1} (up, down, left, right), "
                             f"got values from {low} to {high}")
        targets = self._cells + self._moves[actions]
        blocked = self._walls_flat[targets]
        self._cells = torch.where(blocked, self._cells, targets)
        self.reached = self._cells == self._goal_cells
        rewards = self.reached * self.config.reward
        if self.config.wall_penalty:
            rewards = rewards - blocked * self.config.wall_penalty
        hits = self.reached.nonzero().flatten().tolist()
        if hits:
            size = self.config.size
            destinations = [draw_open_cell_except(self.rngs[b], self.layout, self._goals_host[b]) for b in hits]
            self._cells[hits] = torch.tensor([r * size + c for r, c in destinations], device=self.device)
        self.steps += 1
        done = self.steps >= self.config.episode_length
        rewards = rewards.float()
        return self._observation(rewards, self._action_codes[actions]), rewards, done
