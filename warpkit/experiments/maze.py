r"""Advantage actor-critic on the maze, and WarpGrad's reinforcement-learning form (Flennerhag et al., 2020, Section 3 and Section 4.3).

The loss of one episode
-----------------------
``B`` mazes run in parallel for ``T`` steps. With Monte-Carlo discounted returns R_t = Σ_{k≥t} γ^{k−t} r_k and
advantages A_t = R_t − V(s_t), the loss is (Backpropamine's, which the WarpGrad maze code keeps)

.. math::  L_{AC} = \frac{1}{T B} \sum_{t, b} \Big[ -\log \pi(a_t | s_t)\, \mathrm{sg}(A_t)
                     + c_v A_t^2 + c_p \sum_a \pi(a | s_t)^2 \Big],

with γ = 0.9, value weight c_v = 0.1 and a *concentration penalty* c_p Σ_a π² (c_p = 0.03; it plays the role of an
entropy bonus: it is smallest for a uniform policy). ``sg`` stops the gradient. Gradients are clipped to norm 4.0.

The WarpGrad form (Algorithm 3, the continual / RL form of Flennerhag et al., 2020, Section 3)
----------------------------------------------------------------------------
Task adaptation is continual: the task parameters θ are *never reset*. Episode k (a fresh goal in every maze)
is played with θ_k, and

* θ takes one Adam step per episode on ∇_θ L_AC(θ_k; φ, episode k), clipped;
* φ (the warp) takes one Adam step every N episodes on the window's mean gradient
  (1/N) Σ_k ∇_φ L_AC(θ_k; φ, episode k), clipped.

The authors' script uses rate 1e-3 for both, clipping at norm 4 and N = 30 (:class:`ActorCriticConfig`'s
defaults); lesson 05 trains with the settings its medium-size sweeps chose (:data:`TRAINING`: for the Warp-RNN
N = 1, θ and φ rates 3e-3, clipping at 1, Adam ε 1e-4), because a run of a thousand episodes gives N = 30 too few
φ-steps.

So the meta-objective is :math:`L(\phi) = \sum_k L_{AC}(\theta_k; \phi)`: at every point θ_k of θ's history in the
window, the actor-critic loss of the episode played at that point, evaluated at the point itself. This is the
*approx* form of Eq. 11 (no lookahead step θ_k − α∇L; θ_k held fixed, so nothing is backpropagated through θ's
trajectory), which is what the authors' maze code computes: one ``loss.backward()`` per episode whose φ part
accumulates over 30 episodes. A lookahead form would need a second on-policy episode at every point.

Differences from the authors' ``run.py`` (all deliberate): no 100-episode burn-in without updates (theirs lets the
gradient accumulate undamped over the first 101 episodes); the gradient clipping they parse but never apply is
applied; the φ gradient is averaged rather than summed over the window (Adam is invariant to the scale; only the
clipping threshold sees it); gates are 1 + tanh(·) from a zero projection, so the warp starts at the identity.

Agents without warp parameters (``l2rl``, ``hebbian``, ``no_warp``) simply take the θ step every episode: for the
learning-to-RL LSTM and the plastic network that *is* their meta-training (their within-episode learning lives in
their state). The random policy takes no steps.

Training runs are seeded, vectorised over the ``B`` mazes, show a tqdm bar, and checkpoint every few episodes
(atomic write; running again resumes exactly; an unreadable checkpoint raises and is never overwritten).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from warpkit.kit.checkpoint import CheckpointError
from warpkit.kit.sweep import ResumableRun, fingerprint
from warpkit.envs.maze import BatchedMaze, MazeConfig
from warpkit.envs import MAZE_ENV_ID
from warpkit.models.maze_agents import AGENT_LABELS, make_agent
from warpkit.kit.notebook import REPO_ROOT, progress
from warpkit.kit.results import compare_methods, paired_interval
from warpkit.kit.results import read_reference as read_reference_file
from warpkit.engine.warp import task_parameters, warp_parameters

#: what a training checkpoint holds (:class:`warpkit.kit.sweep.ResumableRun` refuses any other kind)
CHECKPOINT_KIND = "maze actor-critic run"
#: mazes played in parallel (Flennerhag et al., 2020, Section 4.3: a batch of 30), the default of every run here
NUM_MAZES = 30
#: every agent of lesson 05 (:func:`warpkit.models.maze_agents.make_agent` names): Warp-RNN, the two baselines, the
#: capacity control (an LSTM with as many parameters as Warp-RNN's θ and φ together) and the two ablations
ALL_AGENTS = ["warp_rnn", "l2rl", "hebbian", "l2rl_large", "no_warp", "linear_warp"]
#: lesson 05's sizes (also ``python -m warpkit train maze`` and ``python -m warpkit reference 05``): maze side,
#: steps per episode, wall penalty, parallel mazes, episodes per run, seeds, scored episodes, agents
SIZES = {
    "fast": dict(maze_size=7, episode_length=100, wall_penalty=0.1, num_mazes=16, num_episodes=150, seeds=1,
                 scored_episodes=30, agents=ALL_AGENTS[:3]),
    "medium": dict(maze_size=9, episode_length=100, wall_penalty=0.1, num_mazes=NUM_MAZES, num_episodes=1000, seeds=7,
                   scored_episodes=100, agents=ALL_AGENTS),
    "full": dict(maze_size=13, episode_length=200, wall_penalty=0.0, num_mazes=NUM_MAZES, num_episodes=1_000_000,
                 seeds=10, scored_episodes=5_000, agents=ALL_AGENTS),
    "gpu": dict(maze_size=7, episode_length=100, wall_penalty=0.1, num_mazes=16, num_episodes=200, seeds=1,
                scored_episodes=50, agents=ALL_AGENTS[:3]),
}
#: where each setting of the ``full`` size comes from. "run.py" is the authors' maze script
#: (github.com/flennerhag/warpgrad, src/maze_navigation/run.py), "maze.py" Backpropamine's (Miconi et al., 2019)
FULL_SOURCES = {
    "maze_size": "13: run.py, --msize default (Flennerhag et al., 2020, Section 4.3: Miconi's grid maze)",
    "episode_length": "200 steps: run.py, --eplen default; Miconi et al. (2019), Section 4.2",
    "wall_penalty": "0: run.py, --wp default",
    "num_mazes": "30 mazes per episode: run.py, --bs default",
    "num_episodes": "1,000,000: run.py, --nbiter default (the paper does not state a number of episodes)",
    "seeds": "10: our choice (run.py trains one seed per call, --rngseed)",
    "scored_episodes": "5,000: our choice (the last 0.5 % of the run)",
    "agents": "Warp-RNN and the two baselines of the paper's Section 4.3; the capacity control and the ablations "
              "are ours",
}
#: evaluation episodes use the maze seed ``seed + EVALUATION_SEED_OFFSET`` so they never replay training goals
EVALUATION_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class ActorCriticConfig:
    """Hyper-parameters of the actor-critic loss and of the θ / φ updates (Flennerhag et al., 2020, Section 4.3 defaults)."""

    gamma: float = 0.9
    value_weight: float = 0.1
    concentration_weight: float = 0.03
    grad_clip: float = 4.0
    lr: float = 1e-3
    warp_lr: float = 1e-3
    warp_interval: int = 30
    #: Adam's ε in m̂ / (√v̂ + ε), for θ's and φ's optimisers: PyTorch's default; Backpropamine's maze script uses 1e-4
    adam_eps: float = 1e-8

    def __post_init__(self):
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"ActorCriticConfig: gamma must lie in [0, 1], got {self.gamma}")
        if self.warp_interval < 1:
            raise ValueError(f"ActorCriticConfig: warp_interval must be >= 1 episode, got {self.warp_interval}")
        if self.lr <= 0 or self.warp_lr <= 0 or self.grad_clip <= 0 or self.adam_eps <= 0:
            raise ValueError("ActorCriticConfig: lr, warp_lr, grad_clip and adam_eps must be positive")


#: how each agent's weights are trained: the task optimiser (Adam, ``lr``, ``adam_eps``, gradients clipped to
#: ``grad_clip``) and, for the warps, φ's rate and schedule; every other setting is :class:`ActorCriticConfig`'s
#: default (γ 0.9, value weight 0.1, concentration 0.03: the WarpGrad maze script's, which Backpropamine's maze
#: script also uses). Sweeps chose them, the same kinds of change offered to every agent: ``benchmarks/maze_tuning.py``
#: (rates; 2 seeds, 120 episodes, a 7×7 maze: ``benchmarks/results/maze_tuning.json``), then
#: ``benchmarks/maze_levers.py`` on the medium maze, seeds 0 and 1: rounds 1 and 2 at 500 episodes (rates,
#: clipping, φ's schedule; ``benchmarks/results/maze_levers*.json``), round 3 at 1,000 (Adam's ε and rates beside
#: it; :data:`EPS_LEVER_PATHS`). In each, the highest mean score on its seeds wins, unless a whole reference made
#: with every agent at its winner (:data:`SWEEP_CHOICES_PATH`) gave the winner a lower mean over all 8 seeds than
#: the setting before (then that is kept); each round starts from the one before. :data:`TRAINING_SOURCES` says
#: where each setting comes from.
TRAINING = {
    "warp_rnn": ActorCriticConfig(lr=3e-3, warp_lr=3e-3, grad_clip=1.0, warp_interval=1, adam_eps=1e-4),
    "linear_warp": ActorCriticConfig(lr=3e-3, warp_lr=3e-3, grad_clip=1.0, warp_interval=1, adam_eps=1e-4),
    "no_warp": ActorCriticConfig(lr=3e-3, grad_clip=1.0, warp_interval=1, adam_eps=1e-4),
    "l2rl": ActorCriticConfig(lr=1e-2, grad_clip=4.0, adam_eps=1e-4),
    "l2rl_large": ActorCriticConfig(lr=1e-2, grad_clip=4.0),
    "hebbian": ActorCriticConfig(lr=1e-3, grad_clip=1.0),
    "hebbian_plain": ActorCriticConfig(lr=1e-3, grad_clip=1.0),
    "random": ActorCriticConfig(),
}
TRAINING_SOURCES = {
    "warp_rnn": "Adam; the WarpGrad maze script's defaults are θ and φ rate 1e-3, clip 4, a φ-step every 30 "
                "episodes, ε 1e-8. Rounds 1 and 2 (500 episodes) chose θ rate 3e-3, clip 1 and a φ-step every "
                "episode (θ rate 1e-2 and φ rates 3e-4, 1e-2 scored lower); round 3 (1,000 episodes) chose "
                "Backpropamine's ε 1e-4 with φ rate 3e-3 (ε alone, and θ rate ×3 or ÷3 with it, scored lower on "
                "seeds 0 and 1; the choice held on seeds 2–5)",
    "linear_warp": "as Warp-RNN (an ablation changes one thing)",
    "no_warp": "as Warp-RNN (an ablation changes one thing)",
    "l2rl": "Adam, clip 4 (as the WarpGrad script); rate 1e-2, the best of 1e-4 … 1e-2 in the first sweep. Round "
            "2's best on seeds 0 and 1 (3e-2 with clip 1) had a lower mean over all 8 seeds, so it was not kept "
            "(section e); round 3 chose Backpropamine's ε 1e-4 (rate ×3 or ÷3 with it scored lower; the choice "
            "held on seeds 2–5). Wang et al. "
            "(2016) tuned their rate per task and give none for this maze",
    "l2rl_large": "as learning to RL's first sweep, rate 1e-2, clip 4: in round 2 clip 1 (at rates 1e-2 and 3e-3) and "
                  "rate 3e-2 (with and without clip 1) scored lower, and in round 3 ε 1e-4 (alone, and with rate "
                  "×3 or ÷3) scored lower than PyTorch's 1e-8",
    "hebbian": "Adam, clip 1; Backpropamine's maze script uses rate 1e-4, clip 4 and ε 1e-4 for runs of up to 10⁶ "
               "episodes. Rate 1e-3 was the best in the first two sweeps (1e-4 and 3e-4 learnt nothing, clip 4 "
               "peaked and fell back, 3e-3 scored lower at 500 episodes). Round 3's winner on seeds 0 and 1 "
               "(1,000 episodes: Backpropamine's ε 1e-4 with rate 3e-3) collapsed to the random policy's level on "
               "three of seeds 2–5, so the settings before it were kept (section e)",
    "hebbian_plain": "as the Backpropamine agent",
    "random": "no training",
}


def training_config(name: str) -> ActorCriticConfig:
    """The optimiser settings agent ``name`` is trained with (:data:`TRAINING`)."""
    if name not in TRAINING:
        raise ValueError(f"no training settings for agent {name!r}; choose one of {sorted(TRAINING)}")
    return TRAINING[name]


# ----------------------------------------------------------------------------------------------------------
# the loss
# ----------------------------------------------------------------------------------------------------------
def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Monte-Carlo returns R_t = r_t + γ R_{t+1} (R_T = 0) for rewards of shape [T, ...]."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def actor_critic_loss(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                      config: ActorCriticConfig = ActorCriticConfig()) -> tuple[torch.Tensor, dict[str, float]]:
    """L_AC of the module docstring for one episode: logits [T, B, A], values [T, B], actions [T, B] (long),
    rewards [T, B]. Returns the loss and its parts (floats) for logging."""
    T, B = rewards.shape
    if logits.shape[:2] != (T, B) or values.shape != (T, B) or actions.shape != (T, B):
        raise ValueError(f"actor_critic_loss: expected logits [T, B, A], values/actions/rewards [T, B]; got "
                         f"{tuple(logits.shape)}, {tuple(values.shape)}, {tuple(actions.shape)}, {tuple(rewards.shape)}")
    advantages = discounted_returns(rewards, config.gamma) - values
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    policy_loss = -(chosen * advantages.detach()).sum() / (T * B)
    value_loss = advantages.pow(2).sum() / (T * B)
    concentration = log_probs.exp().pow(2).sum() / (T * B)
    loss = policy_loss + config.value_weight * value_loss + config.concentration_weight * concentration
    return loss, {"policy": policy_loss.detach().item(), "value": value_loss.detach().item(),
                  "concentration": concentration.detach().item()}


# ----------------------------------------------------------------------------------------------------------
# episodes
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Rollout:
    """One episode in ``B`` mazes: per-step tensors [T, B, ...] (logits and values keep their graph)."""

    logits: torch.Tensor
    values: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    reached: torch.Tensor  # [T, B] bool: the step reached the goal (then the agent was teleported)
    goals: torch.Tensor  # [B, 2]
    cells: torch.Tensor | None = None  # [T + 1, B, 2] positions (after teleports) when recorded

    @property
    def episode_rewards(self) -> torch.Tensor:
        """Total reward per maze, [B]."""
        return self.rewards.sum(0)


def rollout(agent: nn.Module, env: BatchedMaze, generator: torch.Generator | None = None, seed: int | None = None,
            goals=None, record_cells: bool = False) -> Rollout:
    """Play one episode in every maze of ``env`` (a fresh ``reset``: new goals, zero agent state).

    ``agent`` is a :class:`~warpkit.models.maze_agents.MazeAgent`: its recurrent ``features`` run step by step,
    its ``heads`` once over the stacked features. Actions are sampled from π with ``generator``. Gradients flow
    through the returned logits and values unless called under
    ``torch.no_grad()``."""
    obs = env.reset(seed=seed, goals=goals)
    state = agent.initial_state(env.num_mazes, device=obs.device)
    features, actions_all, rewards, reached = [], [], [], []
    cells = [env.positions] if record_cells else None
    done = False
    while not done:
        h, state = agent.features(obs, state)
        with torch.no_grad():  # the logits that choose the action; the graph is built once for the episode below
            logits = agent.heads.policy(h)
        actions = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
        obs, reward, done = env.step(actions)
        features.append(h)
        actions_all.append(actions)
        rewards.append(reward)
        reached.append(env.reached)
        if record_cells:
            cells.append(env.positions)
    logits, values = agent.heads(torch.stack(features))  # [T, B, A], [T, B]: one graph node for all steps
    return Rollout(logits, values, torch.stack(actions_all), torch.stack(rewards), torch.stack(reached), env.goals,
                   torch.stack(cells) if record_cells else None)


def _clip_(params: list[torch.Tensor], max_norm: float) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


class ActorCriticTrainer:
    """The continual training loop of the module docstring for one agent in one batch of mazes.

    ``train_episode()`` plays an episode, takes the θ step, accumulates φ's gradient and takes the φ step every
    ``config.warp_interval`` episodes. ``state_dict()`` / ``load_state_dict()`` hold everything needed to resume
    exactly (weights, both Adam states, the partly accumulated φ gradient, every random generator, the history).
    """

    def __init__(self, agent: nn.Module, env: BatchedMaze, config: ActorCriticConfig = ActorCriticConfig(),
                 seed: int = 0):
        self.agent, self.env, self.config, self.seed = agent, env, config, seed
        self.task_params = list(task_parameters(agent).values())
        self.warp_params = list(warp_parameters(agent).values())
        adam = torch.optim.Adam
        self.task_optimizer = adam(self.task_params, lr=config.lr, eps=config.adam_eps) if self.task_params else None
        self.warp_optimizer = (adam(self.warp_params, lr=config.warp_lr, eps=config.adam_eps) if self.warp_params
                               else None)
        self.generator = torch.Generator(device=env.device).manual_seed(seed)
        self.episodes_done = 0
        self.rewards: list[float] = []  # mean total reward per maze, per episode
        self.maze_rewards: list[list[float]] = []  # total reward of every maze, per episode
        self.losses: list[float] = []

    def train_episode(self) -> float:
        """Play one episode and update; returns the mean total reward per maze."""
        first = self.episodes_done == 0 and self.env.rngs is None
        episode = rollout(self.agent, self.env, self.generator, seed=self.seed if first else None)
        reward = float(episode.episode_rewards.mean())
        self.maze_rewards.append(episode.episode_rewards.tolist())
        if self.task_params or self.warp_params:
            loss, _ = actor_critic_loss(episode.logits, episode.values, episode.actions, episode.rewards, self.config)
            loss.backward()  # θ's gradient is this episode's; φ's keeps accumulating over the window
            if self.task_optimizer is not None:
                _clip_(self.task_params, self.config.grad_clip)
                self.task_optimizer.step()
                self.task_optimizer.zero_grad(set_to_none=True)
            if self.warp_optimizer is not None and (self.episodes_done + 1) % self.config.warp_interval == 0:
                for p in self.warp_params:
                    if p.grad is not None:
                        p.grad.div_(self.config.warp_interval)
                _clip_(self.warp_params, self.config.grad_clip)
                self.warp_optimizer.step()
                self.warp_optimizer.zero_grad(set_to_none=True)
            self.losses.append(loss.detach().item())
        else:
            self.losses.append(float("nan"))
        self.rewards.append(reward)
        self.episodes_done += 1
        return reward

    def state_dict(self) -> dict[str, Any]:
        return {
            "episodes_done": self.episodes_done,
            "agent": self.agent.state_dict(),
            "task_optimizer": self.task_optimizer.state_dict() if self.task_optimizer else None,
            "warp_optimizer": self.warp_optimizer.state_dict() if self.warp_optimizer else None,
            "warp_grads": [None if p.grad is None else p.grad.detach().clone() for p in self.warp_params],
            "generator": self.generator.get_state(),
            "env_generators": self.env.generator_states(),
            "rewards": list(self.rewards),
            "maze_rewards": [list(r) for r in self.maze_rewards],
            "losses": list(self.losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.state_dict()) - set(state))
        if missing:  # written by an older warpkit whose trainer kept less
            raise CheckpointError(f"the checkpoint lacks {missing}: it was written by an older version of warpkit. "
                                  "Move it away (or delete it) to train this run afresh.")
        self.agent.load_state_dict(state["agent"])
        if self.task_optimizer is not None:
            self.task_optimizer.load_state_dict(state["task_optimizer"])
        if self.warp_optimizer is not None:
            self.warp_optimizer.load_state_dict(state["warp_optimizer"])
        for p, g in zip(self.warp_params, state["warp_grads"]):
            p.grad = None if g is None else g.to(p.device).clone()
        self.generator.set_state(state["generator"])
        if state["env_generators"]:
            self.env.set_generator_states(state["env_generators"])
        self.episodes_done = int(state["episodes_done"])
        self.rewards = list(state["rewards"])
        self.maze_rewards = [list(r) for r in state["maze_rewards"]]
        self.losses = list(state["losses"])


# ----------------------------------------------------------------------------------------------------------
# runs: train, evaluate
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TrainingRun:
    """What :func:`train_agent` returns."""

    name: str
    seed: int
    agent: nn.Module
    rewards: np.ndarray  # [episodes] mean total reward per maze
    losses: np.ndarray
    maze_rewards: np.ndarray  # [episodes, mazes] total reward of every maze
    seconds: float  # wall time spent in this call (0 when a finished checkpoint was loaded)
    resumed_from: int  # episodes already done when this call started
    maze: MazeConfig = field(default_factory=MazeConfig)
    num_mazes: int = NUM_MAZES


def _train_episodes(trainer: ActorCriticTrainer, run: ResumableRun, num_episodes: int, desc: str,
                    show_progress: bool) -> None:
    """Train from ``trainer.episodes_done`` up to ``num_episodes``, saving through ``run`` as it goes."""
    resumed_from = trainer.episodes_done
    bar = progress(range(resumed_from, num_episodes), show=show_progress, initial=resumed_from,
                   total=max(num_episodes, resumed_from), desc=desc, mininterval=10.0)
    for _ in bar:
        reward = trainer.train_episode()
        bar.set_postfix(reward=f"{reward:.1f}", refresh=False)
        run.maybe_save(trainer.episodes_done, trainer.state_dict)
    bar.close()
    if resumed_from < num_episodes:
        run.maybe_save(trainer.episodes_done, trainer.state_dict, final=True)


def train_agent(name: str, num_episodes: int, *, maze: MazeConfig = MazeConfig(),
                num_mazes: int = NUM_MAZES, seed: int = 0, config: ActorCriticConfig | None = None,
                agent_kwargs: dict[str, Any] | None = None, device: str | torch.device = "cpu",
                checkpoint_path: str | Path | None = None, checkpoint_every: int = 25,
                show_progress: bool = True) -> TrainingRun:
    """Train the agent called ``name`` (see :func:`warpkit.models.maze_agents.make_agent`) for ``num_episodes``
    episodes of ``num_mazes`` parallel mazes, continually (θ never reset), with the updates of the module docstring
    and the agent's own optimiser settings (:func:`training_config`) unless ``config`` is given.

    With ``checkpoint_path`` the run saves every ``checkpoint_every`` episodes and at the end; calling again with the
    same arguments resumes where it stopped (or returns at once when it had finished; a larger ``num_episodes``
    trains further). A checkpoint written for other settings (agent, its arguments, maze, number of mazes, seed,
    actor-critic configuration), or one that cannot be read, raises :class:`~warpkit.kit.checkpoint.CheckpointError`
    naming the differing fields (:class:`warpkit.kit.sweep.ResumableRun`) and is left untouched.
    """
    if not isinstance(num_episodes, int) or num_episodes < 0:
        raise ValueError(f"train_agent: num_episodes must be a non-negative integer, got {num_episodes!r}")
    device = torch.device(device)
    config = training_config(name) if config is None else config
    torch.manual_seed(seed)
    agent = make_agent(name, **(agent_kwargs or {})).to(device)
    trainer = ActorCriticTrainer(agent, BatchedMaze(num_mazes, maze, device=device), config, seed=seed)
    settings = fingerprint(agent=name, agent_kwargs=agent_kwargs or {}, maze=maze, num_mazes=num_mazes, seed=seed,
                           config=config)
    run = ResumableRun(checkpoint_path, CHECKPOINT_KIND, settings, every=checkpoint_every)
    saved = run.restore()
    if saved is not None:
        try:
            trainer.load_state_dict(saved)
        except CheckpointError as error:
            raise CheckpointError(f"{checkpoint_path}: {error}") from None
    resumed_from = trainer.episodes_done
    start = time.perf_counter()
    _train_episodes(trainer, run, num_episodes, f"{name} seed {seed}", show_progress)
    return TrainingRun(name, seed, agent, np.asarray(trainer.rewards), np.asarray(trainer.losses),
                       np.asarray(trainer.maze_rewards).reshape(-1, num_mazes), time.perf_counter() - start,
                       resumed_from, maze, num_mazes)


@torch.no_grad()
def evaluate_agent(agent: nn.Module, num_episodes: int, *, maze: MazeConfig = MazeConfig(),
                   num_mazes: int = NUM_MAZES, seed: int = 0, device: str | torch.device | None = None) -> np.ndarray:
    """Total reward per episode and maze, [num_episodes, num_mazes], with the agent's weights frozen (no θ or φ
    steps; every agent adapts only through its state and, for the Hebbian agent, its traces). Actions are sampled
    from π. The mazes are seeded with ``seed + EVALUATION_SEED_OFFSET`` so that, for a given seed, every agent
    meets the same goals, none of them from training."""
    device = torch.device(device) if device is not None else next(
        iter(list(agent.parameters()) + list(agent.buffers())), torch.zeros(())).device
    env = BatchedMaze(num_mazes, maze, device=device)
    generator = torch.Generator(device=device).manual_seed(seed + EVALUATION_SEED_OFFSET)
    totals = []
    for episode in range(num_episodes):
        played = rollout(agent, env, generator, seed=seed + EVALUATION_SEED_OFFSET if episode == 0 else None)
        totals.append(played.episode_rewards.cpu().numpy())
    return np.stack(totals) if totals else np.zeros((0, num_mazes))


def env_steps_per_second(num_mazes: int = NUM_MAZES, maze: MazeConfig = MazeConfig(), num_steps: int = 2000,
                         seed: int = 0, device: str | torch.device = "cpu") -> float:
    """Maze steps per second of :class:`~warpkit.envs.maze.BatchedMaze` (``num_mazes`` × steps / s) under uniformly
    random actions, resetting at the end of each episode."""
    env = BatchedMaze(num_mazes, maze, device=device)
    generator = torch.Generator(device=env.device).manual_seed(seed)
    actions = torch.randint(0, 4, (min(num_steps, 4096), num_mazes), generator=generator, device=env.device)
    env.reset(seed=seed)
    start = time.perf_counter()
    for step in range(num_steps):
        _, _, done = env.step(actions[step % len(actions)])
        if done:
            env.reset()
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    return num_mazes * num_steps / (time.perf_counter() - start)


def gymnasium_steps_per_second(maze: MazeConfig = MazeConfig(), num_steps: int = 5000, seed: int = 0) -> float:
    """Steps per second of the gymnasium form (``gymnasium.make("warpkit/Maze-v0")``, with gymnasium's default
    wrappers), under uniformly random actions."""
    import gymnasium

    env = gymnasium.make(MAZE_ENV_ID, **maze.as_dict())
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(min(num_steps, 4096))]
    start = time.perf_counter()
    for step in range(num_steps):
        _, _, terminated, truncated, _ = env.step(actions[step % len(actions)])
        if terminated or truncated:
            env.reset()
    return num_steps / (time.perf_counter() - start)


def train_agents(names: Sequence[str], seeds: Sequence[int], num_episodes: int, *,
                 checkpoint_dir: str | Path | None = None, **kwargs) -> dict[str, list[TrainingRun]]:
    """:func:`train_agent` for every agent name and seed; ``{name: [run per seed]}``. With ``checkpoint_dir`` each
    run checkpoints to ``<checkpoint_dir>/<name>_seed<seed>.pt`` (so an interrupted sweep resumes where it
    stopped). Other keyword arguments go to :func:`train_agent`."""
    runs: dict[str, list[TrainingRun]] = {}
    for name in names:
        for seed in seeds:
            path = Path(checkpoint_dir) / f"{name}_seed{seed}.pt" if checkpoint_dir is not None else None
            runs.setdefault(name, []).append(train_agent(name, num_episodes, seed=seed, checkpoint_path=path,
                                                         **kwargs))
    return runs


def learning_curves(runs: dict[str, list[TrainingRun]], num_episodes: int | None = None) -> dict[str, np.ndarray]:
    """``{name: rewards [seeds, episodes]}`` from :func:`train_agents` (the first ``num_episodes`` of each run)."""
    curves = {}
    for name, per_seed in runs.items():
        length = num_episodes or min(len(run.rewards) for run in per_seed)
        curves[name] = np.stack([run.rewards[:length] for run in per_seed])
    return curves


def maze_of(settings: dict) -> MazeConfig:
    """The :class:`~warpkit.envs.maze.MazeConfig` of a size's settings (an entry of :data:`SIZES`)."""
    return MazeConfig(size=settings["maze_size"], episode_length=settings["episode_length"],
                      wall_penalty=settings["wall_penalty"])


def scores(runs: dict[str, list[TrainingRun]], scored_episodes: int) -> dict[str, dict[int, float]]:
    """``{agent: {seed: score}}``: a run's score is its mean reward per episode over its last ``scored_episodes``
    episodes (each played with the weights it had before learning from it, on goals it had not seen)."""
    return {name: {run.seed: float(run.rewards[-scored_episodes:].mean()) for run in per_seed}
            for name, per_seed in runs.items()}


# ----------------------------------------------------------------------------------------------------------
# the reference run: ``python -m warpkit reference 05 --size medium`` (warpkit.kit.results)
# ----------------------------------------------------------------------------------------------------------
REFERENCE_LESSON = "05_maze"
#: the order in which a pool should start runs so that the slow ones do not come last (seconds per episode,
#: relative, measured on one core at the medium size)
RELATIVE_COST = {"hebbian": 6.0, "hebbian_plain": 6.0, "warp_rnn": 2.0, "linear_warp": 1.8, "l2rl_large": 1.5, "no_warp": 1.3,
                 "l2rl": 1.0, "random": 0.3}


def reference_config(size: str) -> dict:
    """Everything that makes a reference at ``size`` what it is: the size's settings and every agent's optimiser
    settings (a change to either makes a committed reference stale)."""
    if size not in SIZES:
        raise ValueError(f"unknown maze size {size!r}; choose one of {list(SIZES)}")
    settings = SIZES[size]
    names = list(settings["agents"]) + ["random"]
    return {**settings, "agents": list(settings["agents"]),
            "training": {name: asdict(training_config(name)) for name in names}}


def _reference_run(size: str, name: str, seed: int, path: str | None) -> dict:
    """One (agent, seed) run of the reference, in its own process with one torch thread."""
    torch.set_num_threads(1)  # one thread: the numbers depend on it (reduction order), and so does the speed
    torch.set_flush_denormal(True)  # as the lesson: decaying Hebbian traces would crawl through denormal floats
    settings = SIZES[size]
    run = train_agent(name, settings["num_episodes"], maze=maze_of(settings), num_mazes=settings["num_mazes"],
                      seed=seed, checkpoint_path=path, checkpoint_every=25, show_progress=False)
    return {"agent": name, "seed": seed, "reward": round(float(run.rewards[-settings["scored_episodes"]:].mean()), 4),
            "curve": [round(float(r), 3) for r in run.rewards], "seconds": round(run.seconds, 1)}


def reference_runs(size: str = "medium", workers: int = 1, checkpoints: bool = True) -> tuple[dict, list[dict]]:
    """Every agent of ``size`` (and the random policy) for every seed 0 … seeds − 1, over ``workers`` processes
    (one torch thread each); ``(config, runs)`` for :func:`warpkit.kit.results.write_reference`, each run
    ``{"agent", "seed", "reward", "curve", "seconds"}``. A run depends on its seed alone, so the split over
    processes changes nothing but the wall time. With ``checkpoints`` every run resumes from
    ``checkpoints/05_maze_reference/<size>/`` if interrupted."""
    config = reference_config(size)
    folder = REPO_ROOT / "checkpoints" / "05_maze_reference" / size
    jobs = [(name, seed) for name in config["agents"] + ["random"] for seed in range(config["seeds"])]
    jobs.sort(key=lambda job: -RELATIVE_COST.get(job[0], 1.0))
    paths = [str(folder / f"{name}_seed{seed}.pt") if checkpoints else None for name, seed in jobs]
    arguments = ([size] * len(jobs), [n for n, _ in jobs], [s for _, s in jobs], paths)
    if workers <= 1:
        runs = list(map(_reference_run, *arguments))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(_reference_run, *arguments))
    order = config["agents"] + ["random"]
    return config, sorted(runs, key=lambda run: (order.index(run["agent"]), run["seed"]))


def read_reference(size: str = "medium"):
    """The committed reference run of lesson 05 at ``size`` (a :class:`warpkit.kit.results.Reference`), or None."""
    return read_reference_file(REFERENCE_LESSON, size)


def reference_scores(reference) -> dict[str, dict[int, float]]:
    """``{agent: {seed: score}}`` of a reference (see :func:`scores`)."""
    table: dict[str, dict[int, float]] = {}
    for run in reference.runs:
        table.setdefault(run["agent"], {})[run["seed"]] = run["reward"]
    return table


def reference_curves(reference) -> dict[str, np.ndarray]:
    """``{agent: rewards [seeds, episodes]}`` of a reference, seeds in increasing order."""
    curves: dict[str, list] = {}
    for run in sorted(reference.runs, key=lambda r: r["seed"]):
        curves.setdefault(run["agent"], []).append(run["curve"])
    return {name: np.asarray(rows) for name, rows in curves.items()}


# ----------------------------------------------------------------------------------------------------------
# sentences generated from recorded numbers (the lesson states nothing about results that is not computed here)
# ----------------------------------------------------------------------------------------------------------
def describe_ranking(by_agent: dict[str, dict[int, float]], what: str, focus: str = "warp_rnn") -> str:
    """Markdown: which agent of ``by_agent`` (``{agent: {seed: score}}``) has the highest mean score in ``what``,
    where ``focus`` ranks, and ``focus`` minus the best other agent with its paired 95 % interval over seeds."""
    summary = compare_methods({k: v for k, v in by_agent.items() if k != "random"}, focus)
    stats, ranking, best = summary["stats"], summary["ranking"], summary["best_other"]
    if focus not in stats or best is None:
        return f"In {what} there is nothing to compare."
    label, seeds = AGENT_LABELS, stats[focus]["seeds"]
    text = (f"In {what} ({seeds} seed{'s' if seeds != 1 else ''}), **{label[ranking[0]]}** scores highest "
            f"({stats[ranking[0]]['mean']:.1f} reward per episode); {label[focus]} ranks "
            f"{ranking.index(focus) + 1} of {len(ranking)} ({stats[focus]['mean']:.1f}). {label[focus]} minus "
            f"{label[best]}, the best of the others: {stats[focus]['mean'] - stats[best]['mean']:+.1f}")
    interval = summary["interval"]
    if interval is None:
        return text + " (one seed: no interval)."
    verdict = ("above zero: a difference beyond seed noise" if interval["low"] > 0 else "below zero" if
               interval["high"] < 0 else "containing zero: these seeds cannot tell the two apart")
    return text + (f", paired 95 % interval over {interval['n']} seeds [{interval['low']:+.1f}, "
                   f"{interval['high']:+.1f}], {verdict}.")


def score_table(by_agent: dict[str, dict[int, float]]) -> str:
    """A Markdown table of ``{agent: {seed: score}}``: mean, sample standard deviation and every seed's score."""
    seeds = sorted({seed for per_seed in by_agent.values() for seed in per_seed})
    rows = ["| agent | mean | std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|---|---|" + "---|" * len(seeds)]
    for name, per_seed in by_agent.items():
        values = np.array(list(per_seed.values()))
        spread = f"{values.std(ddof=1):.1f}" if len(values) > 1 else "–"
        cells = " | ".join(f"{per_seed[s]:.1f}" if s in per_seed else "–" for s in seeds)
        rows.append(f"| {AGENT_LABELS.get(name, name)} | {values.mean():.1f} | {spread} | {cells} |")
    return "\n".join(rows)


def difference_table(by_agent: dict[str, dict[int, float]], focus: str = "warp_rnn") -> str:
    """A Markdown table of ``focus`` minus every other agent of ``by_agent`` (``{agent: {seed: score}}``): the mean
    paired difference over their shared seeds and its 95 % interval (:func:`warpkit.kit.results.paired_interval`),
    and whether the interval lies above zero, below it, or contains it."""
    rows = [f"| {AGENT_LABELS[focus]} minus | mean difference | paired 95 % interval | reading |", "|---|---|---|---|"]
    for name, per_seed in by_agent.items():
        if name == focus or len(set(per_seed) & set(by_agent[focus])) < 2:
            continue
        interval = paired_interval(by_agent[focus], per_seed)
        reading = ("ahead" if interval["low"] > 0 else "behind" if interval["high"] < 0
                   else "cannot tell apart")
        rows.append(f"| {AGENT_LABELS.get(name, name)} | {interval['mean']:+.1f} | [{interval['low']:+.1f}, "
                    f"{interval['high']:+.1f}] | {reading} |")
    return "\n".join(rows)


def describe_progress(curves: dict[str, np.ndarray], window: int = 50) -> str:
    """Markdown: for each agent, its mean reward over the last ``window`` episodes minus the ``window`` before
    (paired over seeds), and whether that gain says it was still improving when training stopped."""
    parts = []
    for name, rewards in curves.items():
        if name == "random" or rewards.shape[1] < 2 * window:
            continue
        last, before = rewards[:, -window:].mean(1), rewards[:, -2 * window:-window].mean(1)
        gain = float((last - before).mean())
        if len(last) > 1:
            interval = paired_interval(list(last), list(before))
            still = interval["low"] > 0
            spread = f" [{interval['low']:+.1f}, {interval['high']:+.1f}]"
        else:
            still, spread = gain > 0, ""
        parts.append(f"{AGENT_LABELS.get(name, name)} {gain:+.1f}{spread}{' (still improving)' if still else ''}")
    text = (f"Change of the mean reward from the {window} episodes before the last {window} to the last {window} "
            f"(paired 95 % interval over seeds): " + "; ".join(parts) + ".")
    if any("(still improving)" in part for part in parts):
        text += " The agents marked as improving had not finished learning: the scores compare them mid-course."
    return text


def size_table() -> str:
    """A Markdown table of the sizes (fast, medium, full) with, for every ``full`` setting, where it comes from
    (:data:`FULL_SOURCES`)."""
    fields = ["maze_size", "episode_length", "wall_penalty", "num_mazes", "num_episodes", "seeds",
              "scored_episodes", "agents"]
    rows = ["| setting | fast | medium | full | where `full` comes from |", "|---|---|---|---|---|"]
    for key in fields:
        cells = [len(SIZES[s][key]) if key == "agents" else SIZES[s][key] for s in ("fast", "medium", "full")]
        text = [f"{c:,}" if isinstance(c, int) else f"{c:g}" for c in cells]
        rows.append(f"| {key.replace('_', ' ')} | " + " | ".join(text) + f" | {FULL_SOURCES[key]} |")
    return "\n".join(rows)


def training_table(names: Sequence[str]) -> str:
    """A Markdown table of how each agent in ``names`` is trained: Adam's rate for θ (and φ), the gradient
    clipping, and where the setting comes from (:data:`TRAINING`, :data:`TRAINING_SOURCES`)."""
    rows = ["| agent | θ rate | φ rate | φ-step every | clip | Adam ε | source |", "|---|---|---|---|---|---|---|"]
    for name in names:
        config, has_warp = training_config(name), name in ("warp_rnn", "linear_warp")
        warp = f"{config.warp_lr:g} | {config.warp_interval} episode(s)" if has_warp else "– | –"
        rows.append(f"| {AGENT_LABELS[name]} | {config.lr:g} | {warp} | {config.grad_clip:g} | {config.adam_eps:g} | "
                    f"{TRAINING_SOURCES[name]} |")
    return "\n".join(rows)


def typical_maze(reached: torch.Tensor) -> tuple[int, int]:
    """The maze of an episode (``reached`` [T, B]) whose number of goal hits is the median over the mazes (the
    lower median for an even count), and that number: a typical maze, not the best."""
    hits = reached.sum(0).cpu().numpy()
    maze = int(np.argsort(hits, kind="stable")[(len(hits) - 1) // 2])
    return maze, int(hits[maze])


#: where ``benchmarks/maze_levers.py`` writes its table (one-change levers on the Warp-RNN at the medium size)
LEVERS_PATH = REPO_ROOT / "benchmarks" / "results" / "maze_levers.json"
#: the same levers given to the baselines (``--agent``, two seeds each): the sweep that chose their settings
BASELINE_LEVER_PATHS = {agent: LEVERS_PATH.with_name(f"maze_levers_{agent}.json")
                        for agent in ("l2rl", "hebbian", "l2rl_large")}


#: what a sweep may change from the medium size and still be shown beside it: its length and number of seeds (the
#: sweeps of rounds 1 and 2 ran when the medium size was 500 episodes, round 3 at 1,000; each table names its length)
RUN_LENGTH = ("training", "num_episodes", "seeds")


def _same_size(config: dict, ignore: Sequence[str] = ("training",)) -> bool:
    """Whether ``config`` (a results file's) is today's medium size, apart from the keys in ``ignore``."""
    today = reference_config("medium")
    return {k: v for k, v in config.items() if k not in ignore} == {k: v for k, v in today.items() if k not in ignore}


def _lever_file(path: str | Path) -> tuple[dict | None, str | None]:
    """A file of ``benchmarks/maze_levers.py`` and None, or None and a sentence saying why it cannot be read: it is
    missing, or was made for another medium size. Agents' optimiser settings may differ from today's: a lever
    file is the record of the sweep that chose them, and names its base settings itself."""
    source = Path(path)
    if not source.exists():
        return None, f"(No lever measurement found: run `python benchmarks/maze_levers.py` to make {source.name}.)"
    data = json.loads(source.read_text(encoding="utf-8"))
    if not _same_size(data["medium"], ignore=RUN_LENGTH):
        return None, f"({source.name} was made for another maze: run `python benchmarks/maze_levers.py` again.)"
    return data, None


def _settings(config: dict) -> str:
    """``config``'s optimiser settings in words; Adam's ε only when it is not PyTorch's default (files written before
    ε became a setting lack it: they used the default)."""
    text = f"θ rate {config['lr']:g}, clip {config['grad_clip']:g}"
    n = config.get("warp_interval")
    text += f", φ rate {config['warp_lr']:g} every {n} episode{'s' if n != 1 else ''}" if "warp_lr" in config else ""
    eps = config.get("adam_eps", ActorCriticConfig.adam_eps)
    return text + (f", Adam ε {eps:g}" if eps != ActorCriticConfig.adam_eps else "")


def describe_levers(path: str | Path = LEVERS_PATH) -> str:
    """Markdown: an agent's medium-size score with its training settings changed (``benchmarks/maze_levers.py``'s
    file: the Warp-RNN, or a baseline with ``--agent``), beside the base and, when the file has the reference run
    of its time, the best other agent of that run. The base is that reference on the same seeds, or else the
    file's own runs of the lever "as trained". A sentence instead when the file is missing or was made for another
    maze."""
    data, problem = _lever_file(path)
    if problem:
        return problem
    agent = data["runs"][0].get("agent", "warp_rnn")
    reference = {name: {int(seed): v for seed, v in per_seed.items()}
                 for name, per_seed in data["reference_on_these_seeds"].items()}
    levers = list(data["mean_score_by_lever"])
    if agent in reference:
        base = float(np.mean(list(reference[agent].values())))
        base_row = f"base: the reference run of the time ({_settings_of(agent, data['medium']['training'][agent])})"
    else:  # no reference of this length: the file's own runs at the agent's settings of the time
        base_runs = [r for r in data["runs"] if r["lever"] == "as trained"]
        base = float(np.mean([r["score"] for r in base_runs]))
        base_row = (f"base: as trained then ({_settings_of(agent, base_runs[0]['config'])}; "
                    f"{', '.join(format(r['score'], '.1f') for r in base_runs)})")
        levers = [lever for lever in levers if lever != "as trained"]
    rows = [f"| {AGENT_LABELS[agent]}: setting | mean score, seeds {', '.join(map(str, data['seeds']))} "
            f"({data['medium']['num_episodes']:,} episodes) | change from the base |", "|---|---|---|",
            f"| {base_row} | {base:.1f} | – |"]
    for lever in levers:
        scores = [r["score"] for r in data["runs"] if r["lever"] == lever]
        rows.append(f"| {lever} | {np.mean(scores):.1f} ({', '.join(f'{v:.1f}' for v in scores)}) | "
                    f"{np.mean(scores) - base:+.1f} |")
    others = {a: float(np.mean(list(v.values()))) for a, v in reference.items() if a not in (agent, "random")}
    if others:
        best = max(others, key=others.get)
        rows.append(f"| *{AGENT_LABELS[best]}, the best other agent then* | *{others[best]:.1f}* | "
                    f"*{others[best] - base:+.1f}* |")
    return "\n".join(rows)


def describe_lever_on_all_seeds(path: str | Path, chosen_on: Sequence[int] = (0, 1)) -> str:
    """Markdown: one lever of ``benchmarks/maze_levers.py`` re-run on every seed of the reference (a file it wrote
    with ``--seeds 0 … 7``, for the Warp-RNN or, with ``--agent``, an ablation): its mean score and paired 95 %
    intervals against the reference run of the time (same agent, and its best other agent), also on the seeds
    that did not choose the lever (all but ``chosen_on``, the lever table's seeds)."""
    data, problem = _lever_file(path)
    if problem:
        return problem
    runs = {run["seed"]: run["score"] for run in data["runs"]}
    agent = data["runs"][0].get("agent", "warp_rnn")  # the agent the lever changed (an ablation, or the Warp-RNN)
    reference = {name: {int(seed): v for seed, v in per_seed.items()}
                 for name, per_seed in data["reference_on_these_seeds"].items()}
    others = {a: float(np.mean(list(v.values()))) for a, v in reference.items() if a not in (agent, "random")}
    best = max(others, key=others.get)
    unseen = {seed: score for seed, score in runs.items() if seed not in chosen_on}

    def against(name: str, scores: dict) -> str:
        interval = paired_interval(scores, {seed: reference[name][seed] for seed in scores})
        return f"{interval['mean']:+.1f} [{interval['low']:+.1f}, {interval['high']:+.1f}]"

    label = AGENT_LABELS.get(agent, agent)
    return (f"**{label}, {data['runs'][0]['lever']}**, all {len(runs)} seeds: {np.mean(list(runs.values())):.1f} "
            f"(std {np.std(list(runs.values()), ddof=1):.1f}); minus the {label} of the reference run of the time "
            f"{against(agent, runs)}, minus its {AGENT_LABELS[best]} {against(best, runs)} (paired 95 % intervals); "
            f"on the {len(unseen)} seeds that did not choose it, minus {AGENT_LABELS[best]} {against(best, unseen)}.")


#: the reference of the medium size when it was 500 episodes long (8 seeds, every agent at its settings after
#: rounds 1 and 2), kept when the medium size was lengthened to 1,000 episodes
REFERENCE_500_PATH = LEVERS_PATH.with_name("maze_reference_500_episodes.json")


def describe_progress_at_500(path: str | Path = REFERENCE_500_PATH) -> str:
    """Markdown: :func:`describe_progress` of the 500-episode reference at ``path`` (or a sentence saying it is
    missing): which agents were still improving when those runs stopped."""
    earlier = read_reference_file(REFERENCE_LESSON, "medium", path=path)
    if earlier is None:
        return f"(The 500-episode reference {Path(path).name} is missing.)"
    return (f"In the reference of {earlier.config['num_episodes']:,} episodes ({earlier.config['seeds']} seeds): "
            + describe_progress(reference_curves(earlier)))


#: round 3 of the sweep, at 1,000 episodes (``--episodes 1000``): Backpropamine's Adam ε and, with it, θ's rate a
#: factor 3 either side (φ's too for the Warp-RNN), offered to every trained agent from its round-2 settings
EPS_LEVER_PATHS = {agent: LEVERS_PATH.with_name(f"maze_levers_eps_{agent}.json")
                   for agent in ("warp_rnn", "l2rl", "hebbian", "l2rl_large")}


#: the earlier reference's scores on every seed, with the settings it was made with: kept by the lever file that
#: re-ran the Warp-RNN's chosen change on all 8 seeds (``reference_on_these_seeds``, ``medium["training"]``)
EARLIER_REFERENCE_PATH = LEVERS_PATH.with_name("maze_levers_all_three_8_seeds.json")
#: a whole medium reference made with every agent at its sweep's winner (``python -m warpkit reference 05``'s file,
#: kept under another name): the test of each choice on all 8 seeds
SWEEP_CHOICES_PATH = LEVERS_PATH.with_name("maze_reference_sweep_choices.json")


#: why an ablation keeps a change that lowered its own score: it is trained as the Warp-RNN, whatever that does
ABLATION_NOTE = {name: ", as the Warp-RNN (an ablation changes one thing)" for name in ("no_warp", "linear_warp")}


def describe_retuning(trial: str | Path = SWEEP_CHOICES_PATH, earlier: str | Path = EARLIER_REFERENCE_PATH,
                      chosen_on: Sequence[int] = (0, 1)) -> str:
    """Markdown: for every agent whose sweep changed its settings, its score in ``trial`` (a reference made with
    every agent at its sweep's winner) against the earlier reference (the settings before the sweep, from
    ``earlier``), with paired 95 % intervals over all seeds and over the seeds that did not choose the change (all
    but ``chosen_on``), and whether the change was kept (today's :data:`TRAINING`). A sentence instead when a file
    is missing or was made for another medium size."""
    data, problem = _lever_file(earlier)
    if problem:
        return problem
    if not Path(trial).exists():
        return f"(No test of the sweeps' choices found: {Path(trial).name} is missing.)"
    tried = json.loads(Path(trial).read_text(encoding="utf-8"))
    if not _same_size(tried["config"], ignore=RUN_LENGTH):
        return f"({Path(trial).name} was made for another medium size.)"
    before = {name: {int(seed): v for seed, v in per_seed.items()}
              for name, per_seed in data["reference_on_these_seeds"].items()}
    scores: dict[str, dict[int, float]] = {}
    for run in tried["runs"]:
        scores.setdefault(run["agent"], {})[run["seed"]] = run["reward"]
    rows = ["| agent | settings before → sweep's choice | score before → with the choice | choice − before, all "
            "seeds | on the seeds that did not choose | kept |", "|---|---|---|---|---|---|"]
    for agent, now in scores.items():
        then, choice = data["medium"]["training"].get(agent), tried["config"]["training"].get(agent)
        if agent not in before or then is None or _settings_of(agent, then) == _settings_of(agent, choice):
            continue
        unseen = {seed: v for seed, v in now.items() if seed not in chosen_on}
        intervals = [paired_interval(part, before[agent]) for part in (now, unseen)]
        kept = _settings_of(agent, _settings_after_round_2(agent)) == _settings_of(agent, choice)
        verdict = "yes" + ABLATION_NOTE.get(agent, "") if kept else "no"
        rows.append(f"| {AGENT_LABELS[agent]} | {_settings_of(agent, then)} → {_settings_of(agent, choice)} | "
                    f"{np.mean([before[agent][s] for s in now]):.1f} → {np.mean(list(now.values())):.1f} | "
                    + " | ".join(f"{i['mean']:+.1f} [{i['low']:+.1f}, {i['high']:+.1f}] ({i['n']} seeds)"
                                 for i in intervals) + f" | {verdict} |")
    return "\n".join(rows) if len(rows) > 2 else "(No agent's settings changed since the earlier reference.)"


def _settings_after_round_2(agent: str) -> dict:
    """The settings ``agent`` had after rounds 1 and 2: the base ("as trained") of its round-3 file (the Warp-RNN's
    for an ablation), or today's when it has none."""
    path = EPS_LEVER_PATHS.get("warp_rnn" if agent in ABLATION_NOTE else agent)
    if path is None or not path.exists():
        return asdict(training_config(agent))
    return next(r["config"] for r in json.loads(path.read_text(encoding="utf-8"))["runs"] if r["lever"] == "as trained")


def _settings_of(agent: str, config: dict) -> str:
    """:func:`_settings` without φ's settings for agents that have no φ."""
    has_warp = agent in ("warp_rnn", "linear_warp")
    return _settings({k: v for k, v in config.items() if has_warp or not k.startswith("warp_")})


#: longer runs at today's settings (``benchmarks/maze_levers.py --levers "as trained" --episodes N``)
PROBE_GLOB = "maze_probe_*.json"


def describe_longer_runs(folder: str | Path = LEVERS_PATH.parent, focus: str = "warp_rnn",
                         other: str = "hebbian") -> str:
    """Markdown: the probes of longer runs in ``folder`` (:data:`PROBE_GLOB`; the medium maze with some number of
    episodes): per number of episodes and per pair of settings, ``focus``'s and ``other``'s mean and per-seed
    scores, each agent's settings named (today's :data:`TRAINING` or those of the time), and the paired 95 %
    interval of their difference on the shared seeds. Files made for another maze are left out, and the sentence
    says how many."""
    scores: dict[int, dict[str, dict[str, dict[int, float]]]] = {}
    left_out = 0
    for path in sorted(Path(folder).glob(PROBE_GLOB)):
        data = json.loads(path.read_text(encoding="utf-8"))
        agent = data["runs"][0].get("agent", "warp_rnn")
        if not _same_size(data["medium"], ignore=RUN_LENGTH):
            left_out += 1
            continue
        settings = _settings_of(agent, data["runs"][0]["config"])
        scores.setdefault(data["medium"]["num_episodes"], {}).setdefault(agent, {}).setdefault(settings, {}).update(
            {run["seed"]: run["score"] for run in data["runs"]})
    parts = []
    def in_order(agent: str) -> list:  # today's settings first
        today = _settings_of(agent, asdict(training_config(agent)))
        return sorted(by_agent.get(agent, {}).items(), key=lambda item: (item[0] != today, item[0]))

    for episodes, by_agent in sorted(scores.items()):
        for focus_settings, mine in in_order(focus):
            for other_settings, theirs in in_order(other):
                parts.append(_longer_line(episodes, (focus, focus_settings, mine), (other, other_settings, theirs)))
    if not parts:
        return "(No longer runs found: `benchmarks/maze_levers.py --levers \"as trained\" --episodes N` makes them.)"
    return "\n\n".join(parts) + (f"\n\n({left_out} file(s) made for another maze left out.)" if left_out else "")


def _longer_line(episodes: int, *agents: tuple[str, str, dict[int, float]]) -> str:
    """One line of :func:`describe_longer_runs`: two ``(agent, settings, {seed: score})`` and their difference."""
    text = []
    for agent, settings, values in agents:
        when = "today's" if settings == _settings_of(agent, asdict(training_config(agent))) else "of the time"
        text.append(f"{AGENT_LABELS[agent]} ({settings}: {when}) {np.mean(list(values.values())):.1f} (seeds "
                    f"{', '.join(map(str, sorted(values)))}: {', '.join(f'{values[s]:.1f}' for s in sorted(values))})")
    (focus, _, mine), (other, _, theirs) = agents
    line = f"**{episodes:,} episodes**: " + "; ".join(text)
    shared = sorted(set(mine) & set(theirs))
    if len(shared) > 1:
        i = paired_interval({s: mine[s] for s in shared}, {s: theirs[s] for s in shared})
        line += (f". {AGENT_LABELS[focus]} minus {AGENT_LABELS[other]}: {i['mean']:+.1f} "
                 f"[{i['low']:+.1f}, {i['high']:+.1f}] (paired 95 % interval, {i['n']} seeds)")
    return line + "."


def round_3_held_out(agent: str) -> dict | None:
    """Round 3's choice for ``agent`` tested on other seeds: its winner on seeds 0 and 1 (the highest mean in
    :data:`EPS_LEVER_PATHS`) and the settings before it ("as trained"), both re-run on more seeds (the file
    ``maze_levers_eps_<agent>_seeds_2_5.json``). ``{"lever", "before", "after", "kept", "before_config",
    "after_config"}`` with per-seed scores over all the seeds of both files; the choice is kept unless its mean over
    them is lower than the earlier settings' (the rule of rounds 1 and 2). None when the winner was "as trained" or
    the file of other seeds is missing."""
    sweep = json.loads(EPS_LEVER_PATHS[agent].read_text(encoding="utf-8"))
    means = {lever: np.mean([r["score"] for r in sweep["runs"] if r["lever"] == lever])
             for lever in sweep["mean_score_by_lever"]}
    lever = max(means, key=means.get)
    other = EPS_LEVER_PATHS[agent].with_name(f"maze_levers_eps_{agent}_seeds_2_5.json")
    if lever == "as trained" or not other.exists():
        return None
    runs = sweep["runs"] + json.loads(other.read_text(encoding="utf-8"))["runs"]
    before = {r["seed"]: r["score"] for r in runs if r["lever"] == "as trained"}
    after = {r["seed"]: r["score"] for r in runs if r["lever"] == lever}
    configs = {r["lever"]: r["config"] for r in runs}
    kept = bool(np.mean(list(after.values())) >= np.mean(list(before.values())))
    return {"lever": lever, "before": before, "after": after, "before_config": configs["as trained"],
            "after_config": configs[lever], "kept": kept}


def describe_round_3_held_out() -> str:
    """Markdown: for every agent whose round-3 winner changed its settings, the winner against the settings before
    it on all the seeds run (:func:`round_3_held_out`) and on those that did not choose it (all but 0 and 1), with
    paired 95 % intervals, and whether it was kept."""
    rows = ["| agent | round 3's winner on seeds 0, 1 | before → with it, all seeds | winner − before, all seeds | "
            "on the seeds that did not choose | kept |", "|---|---|---|---|---|---|"]
    for agent in EPS_LEVER_PATHS:
        test = round_3_held_out(agent)
        if test is None:
            continue
        after, before = test["after"], test["before"]
        unseen = {seed: v for seed, v in after.items() if seed not in (0, 1)}
        intervals = [paired_interval(part, before) for part in (after, unseen)]
        rows.append(f"| {AGENT_LABELS[agent]} | {test['lever']} | {np.mean(list(before.values())):.1f} → "
                    f"{np.mean(list(after.values())):.1f} | "
                    + " | ".join(f"{i['mean']:+.1f} [{i['low']:+.1f}, {i['high']:+.1f}] ({i['n']} seeds)"
                                 for i in intervals) + f" | {'yes' if test['kept'] else 'no'} |")
    return "\n".join(rows) if len(rows) > 2 else "(No round-3 choice has been tested on other seeds.)"


#: where ``benchmarks/maze_saturation.py`` writes its measurement (the Warp-RNN's saturated units and gates, and how
#: far θ and φ moved, with PyTorch's and Backpropamine's Adam ε)
SATURATION_PATH = REPO_ROOT / "benchmarks" / "results" / "maze_saturation.json"


def _saturation_file(path: str | Path) -> tuple[list[dict], str | None]:
    """The runs of ``benchmarks/maze_saturation.py``'s file and None, or [] and a sentence saying why it cannot be
    shown: it is missing, or was made for another medium size or with Warp-RNN settings other than today's apart
    from Adam's ε and φ's rate (the two things it varies)."""
    source = Path(path)
    if not source.exists():
        return [], (f"(No saturation measurement found: run `python benchmarks/maze_saturation.py` to make "
                    f"{source.name}.)")
    data = json.loads(source.read_text(encoding="utf-8"))
    varied = ("adam_eps", "warp_lr")
    today = {k: v for k, v in asdict(training_config("warp_rnn")).items() if k not in varied}
    if data["medium"] != reference_config("medium") or any(
            {k: v for k, v in run["config"].items() if k not in varied} != today for run in data["runs"]):
        return [], f"({source.name} was made for another medium size or other settings: run the script again.)"
    return sorted(data["runs"], key=lambda r: (r["config"]["warp_lr"], r["seed"], r["adam_eps"])), None


def saturation_runs(path: str | Path = SATURATION_PATH) -> list[dict]:
    """The runs of ``benchmarks/maze_saturation.py``'s file (``{"seed", "adam_eps", "config", "rows", ...}``), or
    [] when :func:`describe_saturation` would say why not."""
    return _saturation_file(path)[0]


def describe_saturation(path: str | Path = SATURATION_PATH, at: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> str:
    """Markdown: for each (φ rate, seed, Adam ε) run of ``benchmarks/maze_saturation.py``, its score and, at the
    fractions ``at`` of the run, the fraction of saturated hidden units (|h| > 0.95) and of warp gates outside
    [0.1, 1.9], and how far θ and φ had moved (‖θ − θ₀‖ / ‖θ₀‖, ‖φ − φ₀‖ / ‖φ₀‖) at the end; then, per φ rate, the
    means over seeds with each ε. A sentence instead when the file cannot be shown (:func:`_saturation_file`)."""
    runs, problem = _saturation_file(path)
    if problem:
        return problem
    episodes = reference_config("medium")["num_episodes"]
    marks = [int(round(f * episodes)) for f in at]
    head = " / ".join(f"{m:,}" for m in marks)
    rows = [f"| φ rate | seed | Adam ε | score | saturated units at episode {head} | saturated gates at {head} | "
            "θ moved | φ moved |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        by_episode = {row["episode"]: row for row in run["rows"]}
        picked = [by_episode[m] for m in marks if m in by_episode]
        units = " / ".join(f"{100 * r['saturated_units']:.0f} %" for r in picked)
        gates = " / ".join(f"{100 * r['saturated_gates']:.0f} %" for r in picked)
        rows.append(f"| {run['config']['warp_lr']:g} | {run['seed']} | {run['adam_eps']:g} | {run['score']:.1f} | "
                    f"{units} | {gates} | {run['rows'][-1]['theta_moved']:.2f} | {run['rows'][-1]['phi_moved']:.2f} |")
    return "\n".join(rows) + "\n\n" + _saturation_means(runs)


def _saturation_means(runs: list[dict]) -> str:
    """Per φ rate: the mean over seeds of the score and of the saturation at the end, for each Adam ε."""
    parts = []
    for rate in sorted({run["config"]["warp_lr"] for run in runs}):
        by_eps: dict[float, list[dict]] = {}
        for run in runs:
            if run["config"]["warp_lr"] == rate:
                by_eps.setdefault(run["adam_eps"], []).append(run)
        eps = sorted(by_eps)
        scores = " → ".join(f"{np.mean([r['score'] for r in by_eps[e]]):.1f}" for e in eps)
        end = {key: " → ".join(f"{100 * np.mean([r['rows'][-1][key] for r in by_eps[e]]):.0f} %" for e in eps)
               for key in ("saturated_units", "saturated_gates")}
        seeds = ", ".join(map(str, sorted({run["seed"] for run in by_eps[eps[0]]})))
        parts.append(f"φ rate {rate:g}, Adam ε {' → '.join(f'{e:g}' for e in eps)} (means over seeds {seeds}): "
                     f"score {scores}; saturated units at the end {end['saturated_units']}, saturated gates "
                     f"{end['saturated_gates']}.")
    return " ".join(parts)


#: where ``benchmarks/maze_sensitivity.py`` writes its measurement (seed 0, fast size, weights nudged by one ulp)
SENSITIVITY_PATH = REPO_ROOT / "benchmarks" / "results" / "maze_sensitivity.json"


def describe_sensitivity(path: str | Path = SENSITIVITY_PATH) -> str:
    """Markdown: each agent's fast-size score for seed 0 as it is and with every initial weight nudged by one
    float32 ulp, from ``benchmarks/maze_sensitivity.py``'s file (or a sentence saying it is missing or was made
    with another fast size or other training settings)."""
    source = Path(path)
    if not source.exists():
        return f"(No sensitivity measurement found: run `python benchmarks/maze_sensitivity.py` to make {source.name}.)"
    data = json.loads(source.read_text(encoding="utf-8"))
    if data.get("config") != reference_config("fast"):
        return (f"({source.name} was made with another fast size or other training settings: run "
                "`python benchmarks/maze_sensitivity.py` again.)")
    runs = data["runs"]
    parts = [f"{AGENT_LABELS.get(name, name)} {r['as_is']:.1f} → {r['nudged']:.1f}" for name, r in runs.items()]
    return ("Seed 0 at the fast size, as it is → with every initial weight changed in its last binary digit "
            "(`benchmarks/maze_sensitivity.py`): " + "; ".join(parts) + ".")
