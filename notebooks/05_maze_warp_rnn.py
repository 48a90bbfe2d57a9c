# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Maze navigation: a warped RNN that learns where the goal is
#
# An agent in Miconi's grid maze must find an invisible goal, and after each reward (and teleport) find it again:
# the goal location is the task, and it changes every episode. WarpGrad's Warp-RNN lets a HyperNetwork LSTM gate
# a small task RNN; we train it with advantage actor-critic against learning-to-RL, Hebbian plasticity and ablations.
#
# The maths lives in the docstrings of `warpkit.envs.maze`, `warpkit.models.maze_agents` and `warpkit.experiments.maze`.

# %% tags=["parameters"]
SEED = 0
DEVICE = "auto"
SIZE = "fast"  # one of "fast" (CI, about 2 min), "medium" (under 1 h on 2 CPU cores, 3 seeds), "full" (paper length, GPU), "gpu" (a few minutes on one GPU)
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True
CHECKPOINT_DIR = "checkpoints/05_maze"  # relative to the repository; "" disables checkpoints

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import warpkit
from warpkit.experiments import maze as rl
from warpkit.envs.maze import BatchedMaze, MazeConfig, MazeEnv, maze_seeds
from warpkit.models.maze_agents import AGENT_LABELS, make_agent
from warpkit.kit.notebook import REPO_ROOT, check_size
from warpkit.viz import maze as draw
from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters

check_size(SIZE, ("fast", "medium", "full", "gpu"))
ALL_AGENTS = rl.ALL_AGENTS
SIZES = rl.SIZES  # maze side, steps per episode, wall penalty, parallel mazes, episodes per run, seeds, scored episodes
settings = SIZES[SIZE]
device = warpkit.pick_device(DEVICE)
if device.type == "cpu":
    torch.set_num_threads(1)  # every op is small: one thread avoids synchronisation overhead
torch.set_flush_denormal(True)  # decaying Hebbian traces would otherwise crawl through denormal floats
warpkit.record("seed", warpkit.seed_everything(SEED))
maze = MazeConfig(size=settings["maze_size"], episode_length=settings["episode_length"],
                  wall_penalty=settings["wall_penalty"])
SEEDS = [SEED + i for i in range(settings["seeds"])]
AGENT_NAMES = settings["agents"]  # the fast size leaves out the two ablations to stay within a minute or two
checkpoints = (REPO_ROOT / CHECKPOINT_DIR / SIZE) if CHECKPOINT_DIR else None
print(f"SIZE={SIZE}: {maze}, {settings['num_mazes']} mazes in parallel, {settings['num_episodes']} episodes, "
      f"seeds {SEEDS}, device {device}, checkpoints in {checkpoints}")

# %% [markdown]
# **Sizes.** `full` is the paper's setting: a 13×13 maze, 200-step episodes, 30 mazes per episode, no wall penalty,
# 10 seeds as in the authors' script, 100,000 episodes each (a GPU and patience). `medium` keeps the paper's episodes (200 steps, 30 mazes, no
# penalty) in Miconi's 9×9 maze, 3 seeds × 350 episodes: under an hour on two CPU cores. `fast` (for CI) plays
# 100-step episodes in a 7×7 maze with a wall penalty of 0.1 (Backpropamine's maze charges 0.05): the dense signal
# lets 150 episodes teach something; it leaves out the two ablations.

# %% [markdown]
# ## a. The maze
#
# A $n\times n$ grid ($n$ odd) with border walls and a pillar on every interior cell whose row and column are both
# even; the centre is always open and the agent starts there. Each episode an **invisible goal** is drawn uniformly
# among the open cells other than the centre. Four actions (up, down, left, right); walking into a wall leaves the
# agent in place. Stepping on the goal gives $+10$ and **teleports** the agent to a random open cell that is not the
# goal, so in a 200-step episode a good agent collects the reward many times — if it remembers where the goal is.
#
# The agent sees 17 numbers: its 3×3 wall neighbourhood, a constant 0 and a bias 1, the time $t/T$, the previous
# reward and the previous action (one-hot). Nothing in the observation says where the goal is: it has to be found
# by exploring, and then remembered.

# %%
env = MazeEnv(**maze.as_dict())
observation, info = env.reset(seed=SEED)
observation, reward, *_ = env.step(0)  # one step up
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 2.8]})
draw.draw_maze(axes[0], env.layout.walls, goal=info["goal"], agent=env.position,
               title=f"{maze.size}×{maze.size} maze: agent (red), goal (green)")
draw.draw_observation(axes[1], observation, title="what the agent sees after stepping up")
fig.tight_layout()
warpkit.save_figure(fig, "05_maze", SAVE_FIGS)
plt.show()

# %% [markdown]
# **Notice.** The goal is green only for us. From the agent's point of view the maze is a lattice of identical
# corridors; only the walls at the border (and the missing pillar at the centre) break the symmetry.
#
# ## b. One set of rules, two implementations
#
# `MazeEnv` is a `gymnasium.Env` (id `warpkit/Maze-v0`, it passes gymnasium's environment checker) for inspection;
# `BatchedMaze` steps many mazes at once on torch tensors for training. Each maze owns a random generator and
# draws its goals and teleports in the same order in both forms, so with the same seed and actions they produce
# the same episode. We check that on a few mazes, then time both. A torch step costs about the same for 16 mazes
# as for 1024 (it is a handful of tensor operations), so the batched form pays off as the number of mazes grows;
# at a few dozen mazes on a CPU the plain Python loop of the gymnasium form is about as fast.

# %%
num_check = 4
batched = BatchedMaze(num_check, maze)
singles = [MazeEnv(**maze.as_dict()) for _ in range(num_check)]
obs_batched = batched.reset(seed=SEED)
obs_single = np.stack([single.reset(seed=s)[0] for single, s in zip(singles, maze_seeds(SEED, num_check))])
mismatch = np.abs(obs_batched.numpy() - obs_single).max()
for action in torch.randint(0, 4, (maze.episode_length, num_check), generator=torch.Generator().manual_seed(SEED)):
    obs_batched, _, _ = batched.step(action)
    obs_single = np.stack([single.step(int(a))[0] for single, a in zip(singles, action)])
    mismatch = max(mismatch, np.abs(obs_batched.numpy() - obs_single).max())
print(f"largest difference between the two forms over one episode: {mismatch}")
speed_single = warpkit.record("env_steps_per_second_gymnasium", round(rl.gymnasium_steps_per_second(maze)))
speed_training = warpkit.record("env_steps_per_second_batched_training_size",
                                round(rl.env_steps_per_second(settings["num_mazes"], maze, device=device)))
speed_batched = warpkit.record("env_steps_per_second_batched",
                               round(rl.env_steps_per_second(1024, maze, num_steps=500, device=device)))
print(f"maze steps per second: gymnasium {speed_single:,};  batched, {settings['num_mazes']} mazes "
      f"{speed_training:,};  batched, 1024 mazes {speed_batched:,}")

# %% [markdown]
# ## c. What a random agent does
#
# A uniformly random policy is the floor every agent must beat. Below, one of its episodes at six points in time:
# where the agent is, and its last few moves.

# %%
random_episode = rl.rollout(make_agent("random").to(device), BatchedMaze(1, maze, device=device),
                            torch.Generator(device=device).manual_seed(SEED), seed=SEED, record_cells=True)
cells, reached, goal = random_episode.cells[:, 0], random_episode.reached[:, 0], random_episode.goals[0]
steps = np.linspace(0, maze.episode_length, 6).astype(int)
fig = draw.frame_strip(env.layout.walls, cells, goal, reached, steps,
                       title=f"random policy: {int(reached.sum())} goal hits in {maze.episode_length} steps")
warpkit.save_figure(fig, "05_random_episode", SAVE_FIGS)
plt.show()

# %% [markdown]
# ## d. The Warp-RNN and its rivals
#
# The **task network** is a plain RNN with policy and value heads (θ: $W_x, W_h, b$, heads). A **HyperNetwork
# warp** (φ), an LSTM over $[x_t, h_{t-1}]$, emits five gate vectors $g_t = 1 + \tanh(W u_t + c)$ that multiply the
# RNN's input, hidden state, both pre-activations and bias:
#
# $$h_t = \tanh\big(g^i_t \odot W_x (g^x_t \odot x_t) + g^r_t \odot W_h (g^h_t \odot h_{t-1}) + g^b_t \odot b\big).$$
#
# The gates start at exactly 1 (the warp is the identity), and every gradient that reaches θ passes through them:
# the warp *preconditions* θ's learning, in a way that depends on the state (Flennerhag et al., 2020, Appendix A and Section 4.3). The rivals:
#
# * **learning to reinforcement learn** (L2RL): an LSTM trained across episodes that adapts within an episode only
#   through its state;
# * **Hebbian / differentiable plasticity** (Miconi): an RNN whose recurrent weights have a plastic part
#   $\alpha \odot \mathrm{Hebb}$ that follows a Hebbian rule during the episode;
# * ablations: **no warp** (the task RNN alone) and **linear warp** (fixed identity-initialised linear maps in the
#   same places, a T-Net-style preconditioner that cannot depend on the state).

# %%
for name in ALL_AGENTS:
    agent = make_agent(name)
    theta, phi = count_parameters(task_parameters(agent)), count_parameters(warp_parameters(agent))
    print(f"{AGENT_LABELS[name]:32s} θ (every episode): {theta:7,}   φ (every 30 episodes): {phi:7,}")

# %% [markdown]
# ## e. Training: advantage actor-critic in WarpGrad's continual form
#
# With returns $R_t = \sum_{k\ge t}\gamma^{k-t} r_k$ ($\gamma = 0.9$) and advantages $A_t = R_t - V(s_t)$, one episode
# in $B$ mazes gives
#
# $$L_{AC} = \frac{1}{TB}\sum_{t,b}\Big[-\log\pi(a_t|s_t)\,\mathrm{sg}(A_t) + 0.1\,A_t^2 + 0.03\sum_a \pi(a|s_t)^2\Big],$$
#
# the last term a concentration penalty that keeps the policy exploratory. WarpGrad's RL form (Algorithm 3 of the
# paper; Flennerhag et al., 2020, Section 3) never resets θ: **θ takes an Adam step after every episode** (each with new goals), and
# **φ takes an Adam step every 30 episodes** on the mean of $\nabla_\phi L_{AC}(\theta_k;\phi)$ over those episodes,
# each gradient taken at the point $\theta_k$ where its episode was played. The baselines have no φ: all their
# weights take the every-episode step, which *is* their meta-training. Runs checkpoint as they go: interrupt this
# cell and run it again to resume.

# %%
runs = rl.train_agents(AGENT_NAMES + ["random"], SEEDS, settings["num_episodes"], maze=maze,
                       num_mazes=settings["num_mazes"], device=device, checkpoint_dir=checkpoints,
                       checkpoint_every=max(1, min(100, settings["num_episodes"] // 5)), show_progress=SHOW_PROGRESS)
curves = rl.learning_curves(runs, settings["num_episodes"])
warpkit.record("train_seconds", {name: round(sum(run.seconds for run in rs), 1) for name, rs in runs.items()})

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
draw.plot_learning_curves(ax, curves, AGENT_LABELS, window=max(5, settings["num_episodes"] // 15))
ax.set_title(f"{maze.size}×{maze.size} maze, {settings['num_mazes']} mazes per episode, "
             f"mean over {len(SEEDS)} seed(s) (band: min–max)")
warpkit.save_figure(fig, "05_learning_curves", SAVE_FIGS)
plt.show()

# %% [markdown]
# ## f. Scoring
#
# Every training episode is already a test: its goals are new, and the agent plays the whole episode with the
# weights it had *before* learning from it. So, as in the paper's curves, an agent's score is its mean reward per
# episode over the last episodes of its run (`scored_episodes` in the size table), averaged over seeds. The random
# policy is scored the same way, on its own run of episodes.

# %%
scored = settings["scored_episodes"]
per_seed = {name: [float(run.rewards[-scored:].mean()) for run in runs_of_agent] for name, runs_of_agent in runs.items()}
for name, values in per_seed.items():
    warpkit.record(f"reward_{name}", round(float(np.mean(values)), 2))
warpkit.record("reward_per_seed", {name: [round(v, 2) for v in values] for name, values in per_seed.items()})
fig, ax = plt.subplots(figsize=(8, 3.2))
for i, (name, values) in enumerate(per_seed.items()):
    ax.bar(i, np.mean(values), color=draw.AGENT_COLOURS[name], alpha=0.75)
    ax.plot([i] * len(values), values, "k.", markersize=6)
ax.set_xticks(range(len(per_seed)), [AGENT_LABELS[n] for n in per_seed], rotation=20, fontsize=8)
ax.set_ylabel("reward per episode")
ax.set_title(f"mean over the last {scored} episodes of each run (dots: seeds)", fontsize=9)
warpkit.save_figure(fig, "05_scores", SAVE_FIGS)
plt.show()

# %% [markdown]
# **Notice.** Compare with the paper (read off its figure, 13×13 maze, long training): Warp-RNN ≈ 160,
# learning-to-RL ≈ 125, Hebbian lower, and linear warps hurting. At the fast and medium sizes here the runs are
# short and the maze smaller, so the ranking is what *this* much training gives: read the numbers above, not the
# paper's.
#
# ## g. Does the trained Warp-RNN remember the goal?
#
# The first hit of an episode needs a search. After that, each teleport drops the agent somewhere else, and an agent
# that *remembers* where the goal is can walk straight back: the steps it takes approach the shortest path from the
# landing cell (found by breadth-first search). Below, left: one episode of the trained Warp-RNN, its path coloured by
# the stretch between teleports. Right: every return in every maze, steps taken against the shortest path, for the
# Warp-RNN and the random policy (the dashed diagonal is perfect memory).

# %%
def play(agent, seed):
    with torch.no_grad():
        return rl.rollout(agent, BatchedMaze(settings["num_mazes"], maze, device=device),
                          torch.Generator(device=device).manual_seed(seed), seed=seed, record_cells=True)


episode = play(runs["warp_rnn"][0].agent, SEED + 1)
random_rollout = play(make_agent("random").to(device), SEED + 1)
best = int(episode.reached.sum(0).argmax())  # the maze where the Warp-RNN collected most
returns = {name: draw.returns_after_teleports(env.layout.walls, played.cells, played.goals, played.reached)
           for name, played in [("warp_rnn", episode), ("random", random_rollout)]}

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
draw.draw_path(axes[0], env.layout.walls, episode.cells[:, best], episode.goals[best], episode.reached[:, best],
               title=f"trained Warp-RNN: {int(episode.reached[:, best].sum())} hits in one episode")
for name, (shortest, taken) in returns.items():
    draw.plot_returns(axes[1], shortest, taken, AGENT_LABELS[name], draw.AGENT_COLOURS[name])
    if len(taken):
        warpkit.record(f"return_excess_steps_{name}", round(float(np.median(taken - shortest)), 1))
axes[1].legend(fontsize=8)
warpkit.save_figure(fig, "05_warp_rnn_rollout", SAVE_FIGS)
plt.show()

# %%
steps = np.linspace(0, maze.episode_length, 6).astype(int)
fig = draw.frame_strip(env.layout.walls, episode.cells[:, best], episode.goals[best], episode.reached[:, best],
                       steps, title="the same episode, frame by frame (last 8 moves in red)")
warpkit.save_figure(fig, "05_warp_rnn_frames", SAVE_FIGS)
plt.show()
if INTERACTIVE:
    from IPython.display import HTML, display

    display(HTML(draw.maze_animation(env.layout.walls, episode.cells[:, best], episode.goals[best],
                                     episode.reached[:, best]).to_jshtml()))

# %% [markdown]
# **Notice.** Points near the diagonal are returns where the agent walked (almost) straight back: it carried the
# goal's location in its state across the teleport. The random policy's returns lie far above it (and it completes
# few of them). How close the Warp-RNN gets depends on how long it trained: try `SIZE = "medium"`. (Only returns
# that finished before the episode ended are plotted, which favours short ones equally for both agents.)
#
# **Things to try.** Change `maze_size` to 13 (the paper's maze); compare the `linear_warp` and `no_warp` curves to
# see what the state-dependent gates add; set `INTERACTIVE = True` for an animation of the episode.
