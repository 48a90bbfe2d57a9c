# %% [markdown]
# # Assignment 5: the rules of Miconi's maze
#
# In the maze experiment the task is an invisible goal cell; an agent that has found it once should walk back to
# it quickly, because reaching the goal teleports it to a random open cell (lesson 05). You will build the wall
# map, the move rule and the teleport rule, and check them against hand-worked cases and `warpkit.envs.maze`.
#
# **How this works.** Each exercise is a function with a `NotImplementedError` in its body: replace those two
# lines with your code, then run the cell below it. Those cells run *public checks*; when they pass you see
# "public checks passed". Your instructor may run further tests when grading.

# %%
import numpy as np

from warpkit.kit.checks import PublicChecks, check_equal, check_true
from warpkit.envs.maze import ACTION_NAMES, ACTION_OFFSETS

print("actions:", dict(zip(ACTION_NAMES, ACTION_OFFSETS)), "as (row, column) offsets")

# %% [markdown]
# ## Exercise 1: the wall map
#
# The grid is `size × size` with `size` odd. Row 0, the last row, column 0 and the last column are walls; every
# interior cell whose row and column are both even is a pillar (a wall), except the centre
# `(size // 2, size // 2)`, which is always open. Write `maze_walls(size)` returning a boolean NumPy array,
# `True` for a wall.

# %%
def maze_walls(size):
    """Boolean (size, size) wall map: border walls, pillars at interior (even, even) cells, the centre open."""
    ### BEGIN SOLUTION
    grid = np.zeros((size, size), dtype=bool)
    grid[[0, -1], :] = True
    grid[:, [0, -1]] = True
    grid[2:size - 1:2, 2:size - 1:2] = True
    grid[size // 2, size // 2] = False
    return grid
    ### END SOLUTION


# %%
small_by_hand = np.array([[1, 1, 1, 1, 1, 1, 1],
                          [1, 0, 0, 0, 0, 0, 1],
                          [1, 0, 1, 0, 1, 0, 1],
                          [1, 0, 0, 0, 0, 0, 1],
                          [1, 0, 1, 0, 1, 0, 1],
                          [1, 0, 0, 0, 0, 0, 1],
                          [1, 1, 1, 1, 1, 1, 1]], dtype=bool)
with PublicChecks("maze_walls") as checks:
    walls7 = maze_walls(7)
    checks.shape("a 7×7 map", walls7, (7, 7))
    checks.equal("the 7×7 maze, cell by cell", walls7.astype(int), small_by_hand.astype(int),
                 hint="pillars sit at interior cells whose row AND column are even")
    walls9 = maze_walls(9)
    checks.true("the centre of the 9×9 maze is open", not walls9[4, 4], "(4, 4) is a wall",
                hint="(4, 4) is an (even, even) interior cell: open it after placing the pillars")
    checks.equal("open cells in the 9×9 maze", int((~walls9).sum()), 41,
                 hint="49 interior cells − 9 pillar positions + the centre")
### BEGIN HIDDEN TESTS
from warpkit.envs.maze import make_walls

for size_h in (5, 11, 13):
    check_equal(f"hidden: {size_h}×{size_h} agrees with warpkit.envs.maze.make_walls",
                maze_walls(size_h).tolist(), make_walls(size_h).tolist())
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 2: moving
#
# Write `move(walls, position, action)`: `position` is a `(row, column)` pair and `action` one of 0 up, 1 down,
# 2 left, 3 right (offsets in `ACTION_OFFSETS`). Return the new position as a tuple of two ints; moving into a
# wall leaves the agent where it is.

# %%
def move(walls, position, action):
    """The cell reached from position by action (0 up, 1 down, 2 left, 3 right); a wall blocks the move."""
    ### BEGIN SOLUTION
    d_row, d_col = ACTION_OFFSETS[action]
    target = (int(position[0]) + d_row, int(position[1]) + d_col)
    return (int(position[0]), int(position[1])) if walls[target] else target
    ### END SOLUTION


# %%
with PublicChecks("move") as checks:
    checks.equal("up from the centre of 9×9", move(walls9, (4, 4), 0), (3, 4))
    checks.equal("right from (1, 1)", move(walls9, (1, 1), 3), (1, 2), hint="3 is right: column + 1")
    checks.equal("left from (1, 1) bumps the border", move(walls9, (1, 1), 2), (1, 1),
                 hint="a wall leaves the agent where it is")
    checks.equal("down from (1, 2) bumps the pillar (2, 2)", move(walls9, (1, 2), 1), (1, 2))
    checks.type("returns a tuple", move(walls9, (4, 4), 1), tuple)
### BEGIN HIDDEN TESTS
from warpkit.envs.maze import MazeEnv

env_h = MazeEnv(size=9)
for start_h in [(1, 1), (3, 3), (4, 4), (7, 7), (5, 2)]:
    for action_h in range(4):
        env_h.reset(seed=0, options={"goal": (7, 1), "start": start_h})  # no start is next to the goal
        env_h.step(action_h)
        check_equal(f"hidden: move({start_h}, {action_h}) agrees with MazeEnv", move(walls9, start_h, action_h),
                    env_h.position)
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 3: the teleport rule
#
# Reaching the goal gives a reward of +10 and teleports the agent to a cell drawn **uniformly over the open cells
# other than the goal**. (The WarpGrad code could teleport into a wall: a bug.) Write
# `teleport(walls, goal, rng)` returning that cell as a tuple of two ints; `rng` is a `numpy.random.Generator`,
# use it for the draw.

# %%
def teleport(walls, goal, rng):
    """A cell drawn uniformly from the open cells of walls other than goal."""
    ### BEGIN SOLUTION
    candidates = [(int(r), int(c)) for r, c in np.argwhere(~walls) if (r, c) != tuple(goal)]
    return candidates[rng.integers(len(candidates))]
    ### END SOLUTION


# %%
goal = (1, 7)
rng = np.random.default_rng(0)
draws = [teleport(walls9, goal, rng) for _ in range(4000)]
counts = {}
for cell in draws:
    counts[cell] = counts.get(cell, 0) + 1
with PublicChecks("teleport") as checks:
    checks.true("never into a wall", not any(walls9[cell] for cell in counts),
                f"teleported into the wall cells {sorted(c for c in counts if walls9[c])}")
    checks.true("never onto the goal", goal not in counts, f"teleported onto the goal {goal} {counts.get(goal)} times")
    checks.equal("every other open cell is reachable", len(counts), 40,
                 hint="41 open cells in the 9×9 maze, minus the goal")
    expected_count = len(draws) / 40
    chi_square = sum((n - expected_count) ** 2 / expected_count for n in counts.values())
    checks.true("uniform (chi-square test, 39 degrees of freedom)", chi_square < 90,
                f"the counts are far from uniform (chi-square {chi_square:.0f}, expected about 39)")
### BEGIN HIDDEN TESTS
from warpkit.envs.maze import MazeLayout

layout_h = MazeLayout(9)
library_cells = {(int(r), int(c)) for r, c in layout_h.open_cells} - {goal}
check_equal("hidden: the destinations are the library's", sorted(counts), sorted(library_cells))
position_h, rng_h, hits_h = (4, 4), np.random.default_rng(1), 0
for _ in range(3000):  # a random walk under the student's rules
    position_h = move(walls9, position_h, int(rng_h.integers(4)))
    if position_h == goal:
        hits_h += 1
        position_h = teleport(walls9, goal, rng_h)
    check_true("hidden: the walker stays on open cells", not walls9[position_h], f"walker in wall {position_h}")
check_true("hidden: the random walker reaches the goal", hits_h > 0, "no goal reached in 3000 steps")
### END HIDDEN TESTS

# %% [markdown]
# ## Exercise 4 (written): why teleport?
#
# In two or three sentences: what would an agent that adapts well *within* an episode do after its first visit
# to the goal, and why does the teleport rule (rather than ending the episode) make the cumulative reward
# measure that adaptation? What goes wrong if the agent can land inside a wall?

# %% [markdown]
# ### BEGIN SOLUTION
# After its first visit the goal is no longer unknown, so a learner that adapts within the episode walks
# straight back to it from wherever it lands, and collects the reward many more times than an explorer; the
# teleport keeps the episode going and forces a new route each time, so the total reward counts how fast and
# how often it returns. An agent teleported into a wall starts from a cell it cannot legally occupy, sees an
# impossible neighbourhood and can be stuck or walk through walls, which corrupts both the task and the measure.
# ### END SOLUTION

# %% [markdown]
# ## The lesson's self-check questions (written)
#
# 1. Why is every training episode a fair test of the agent, although the agent trains on it?
# 2. The capacity control has as many parameters as Warp-RNN's θ and φ together. What would it mean if it scored
#    as well as the Warp-RNN, and what if the no-warp ablation did?
# 3. Why does the lesson compare agents by the paired interval over seeds rather than by their mean scores alone?

# %% [markdown]
# ### BEGIN SOLUTION
# 1. Each episode draws new goals, and the agent plays the whole episode with the weights it had *before* the
#    update that uses this episode; so its reward measures how well it finds and returns to a goal it has never
#    seen, with nothing learnt from that goal except within the episode (its state, or its Hebbian traces).
# 2. If the capacity control matched it, the Warp-RNN's advantage over the small LSTM could be explained by its
#    number of parameters alone, not by what the warp does with them. If the no-warp ablation matched it, the
#    warp (φ, and its state-dependent gates) would add nothing to the task RNN it preconditions; comparing with
#    the linear warp then says whether any gain needs the gates to depend on the state.
# 3. RL runs differ a lot from seed to seed (a collapsed or a lucky run moves a mean of five by several points),
#    so two means can differ by chance. Pairing by seed removes what the two agents share (the same goals and
#    teleports), and the 95 % interval of the paired differences says whether the difference is larger than its
#    spread: only an interval that excludes zero supports "better".
# ### END SOLUTION

# %% tags=["instructor"]
# Grading notes (instructor only). The uniformity check is seeded, so it is deterministic; a solution that
# draws from all cells and redraws on walls passes (it is uniform), one that moves to a neighbour of the goal
# fails "every other open cell is reachable". Reference: the library's draw for the same seed.
from warpkit.envs.maze import draw_open_cell_except

rng_7 = np.random.default_rng(7)
library_draws = [draw_open_cell_except(rng_7, layout_h, goal) for _ in range(3)]
print("library teleport destinations for seed 7:", library_draws, "| chi-square of the solution:", round(chi_square, 1))
