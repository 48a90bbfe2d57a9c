r"""The maze agents of Flennerhag et al., 2020, Section 4.3: Warp-RNN, its ablations, and the two meta-learning baselines.

Every agent is a :class:`MazeAgent`: it maps the 17-value maze observation and a recurrent state to policy logits
(4 actions) and a value estimate, one step at a time::

    state = agent.initial_state(batch_size)            # at the start of every episode
    logits, value, state = agent(observation, state)   # [B, 4], [B], new state
    h, state = agent.features(observation, state)      # the recurrent core alone; agent.heads(h) -> logits, value

All agents start every episode from a zero recurrent state (the goal moves every episode, so nothing in the state
should carry over). How their *weights* learn is set by which parameters are task parameters θ and which are warp
parameters φ (:func:`warpkit.engine.warp.task_parameters` / :func:`warpkit.engine.warp.warp_parameters`); the training loop in
:mod:`warpkit.experiments.maze` takes an Adam step on θ after every episode and on φ every N episodes.

===================  ===========================================================================================
agent                what it is
===================  ===========================================================================================
``warp_rnn``         :class:`WarpRNNAgent` with a HyperNetwork warp: a task RNN (θ, ≈12k parameters) whose input,
                     hidden state and pre-activations are gated by an LSTM warp (φ, ≈130k parameters)
``linear_warp``      :class:`WarpRNNAgent` with identity-initialised linear warps (T-Net style) in the same places
``no_warp``          :class:`WarpRNNAgent` without warp: the plain task RNN, θ only
``l2rl``             :class:`LSTMAgent`, learning to reinforcement learn (Wang et al. 2016; Duan et al. 2016):
                     an LSTM whose weights are trained across episodes and that adapts *within* an episode only
                     through its state
``hebbian``          :class:`HebbianAgent` with neuromodulated plasticity (Backpropamine, Miconi et al. 2019, the
                     paper's Hebbian baseline): fixed weights plus Hebbian traces that change within the episode,
                     their update gated by a learned modulation signal
``hebbian_plain``    :class:`HebbianAgent` with the plain Hebbian rule (differentiable plasticity, Miconi et al.
                     2018), kept for the tuning sweep that chose between the two
``l2rl_large``       the capacity control: :class:`LSTMAgent` with :data:`CAPACITY_HIDDEN_SIZE` units, as many
                     trainable parameters as Warp-RNN's θ and φ together (≈142k), all of them task parameters
``random``           :class:`RandomAgent`, a uniform policy with no parameters
===================  ===========================================================================================
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from warpkit.envs.maze import NUM_ACTIONS, OBSERVATION_SIZE
from warpkit.engine.warp import LinearWarp, MultiplicativeRecurrentWarp

WARP_KINDS = ("hyper", "linear", "none")


class _ActorCriticHeads(nn.Module):
    """Policy logits π(a | h) = softmax(W_π h + b_π) and value V(h) = w_v·h + b_v (task parameters)."""

    def __init__(self, hidden_size: int, num_actions: int):
        super().__init__()
        self.policy = nn.Linear(hidden_size, num_actions)
        self.value = nn.Linear(hidden_size, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(h), self.value(h).squeeze(-1)


class MazeAgent(nn.Module):
    """What every maze agent provides: ``initial_state(batch_size)``, ``features(x, state) -> (h, state)`` (the
    recurrent core) and ``heads`` (policy logits and value from h). ``forward`` chains the two; the training loop
    calls ``features`` step by step and applies ``heads`` once to the whole episode's stacked features, which
    gives the same numbers with a shorter autograd graph."""

    heads: nn.Module

    def initial_state(self, batch_size: int, device=None) -> tuple:
        raise NotImplementedError

    def features(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        h, state = self.features(x, state)
        logits, value = self.heads(h)
        return logits, value, state


class WarpRNNAgent(MazeAgent):
    r"""Warp-RNN (Flennerhag et al., 2020, Section 4.3; the authors' ``WNet`` over an adaptive RNN).

    The task RNN (θ: W_x, W_h, b and the two heads) computes, with gates from the warp,

    .. math::  h_t = \tanh\big( g^{i}_t \odot W_x (g^{x}_t \odot x_t)
                              + g^{r}_t \odot W_h (g^{h}_t \odot h_{t-1}) + g^{b}_t \odot b \big),

    where ``warp="hyper"`` takes ``(g^x, g^h, g^i, g^r, g^b)`` from a
    :class:`~warpkit.engine.warp.MultiplicativeRecurrentWarp`: an LSTM over [x_t, h_{t-1}] (its own state
    carried through the episode) followed by g = 1 + tanh(W u_t + c). ``warp="linear"`` replaces the four
    multiplications on x, h and the two drives by identity-initialised :class:`~warpkit.engine.warp.LinearWarp` layers
    (a fixed, state-independent preconditioner); ``warp="none"`` is the plain RNN. All warps start at the identity,
    so the three variants compute the same function at initialisation.

    The gradient reaching θ passes through the gates, so θ's update is preconditioned by the warp; φ is trained
    across episodes on the accumulated actor-critic gradient (:mod:`warpkit.experiments.maze`).
    """

    def __init__(self, input_size: int = OBSERVATION_SIZE, hidden_size: int = 100, num_actions: int = NUM_ACTIONS,
                 warp: str = "hyper", warp_hidden_size: int = 100):
        super().__init__()
        if warp not in WARP_KINDS:
            raise ValueError(f"WarpRNNAgent: warp must be one of {WARP_KINDS}, got {warp!r}")
        self.input_size, self.hidden_size, self.warp_kind = input_size, hidden_size, warp
        self.input_weight = nn.Parameter(torch.empty(hidden_size, input_size))
        self.hidden_weight = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        nn.init.orthogonal_(self.input_weight)  # as the authors' adaptive RNN
        nn.init.orthogonal_(self.hidden_weight)
        self.heads = _ActorCriticHeads(hidden_size, num_actions)
        if warp == "hyper":
            self._gate_sizes = [input_size, hidden_size, hidden_size, hidden_size, hidden_size]
            self.warp = MultiplicativeRecurrentWarp(input_size, hidden_size, warp_hidden_size,
                                                    gate_sizes=self._gate_sizes)
        elif warp == "linear":
            self.warp = nn.ModuleDict({
                "input": LinearWarp(input_size), "hidden": LinearWarp(hidden_size),
                "input_drive": LinearWarp(hidden_size), "recurrent_drive": LinearWarp(hidden_size)})
        else:
            self.warp = None

    def initial_state(self, batch_size: int, device=None) -> tuple:
        """(h, warp state, fused gate projection): zeros, and for the HyperNetwork warp its five projections
        concatenated once per episode (they do not change within an episode)."""
        device, dtype = device or self.bias.device, self.bias.dtype
        h = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        if self.warp_kind == "hyper":
            return h, self.warp.initial_state(batch_size, device=device, dtype=dtype), self.fused_projection()
        return h, None, None

    def fused_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The warp's five gate projections stacked into one weight and one bias."""
        projections = self.warp.projections
        return (torch.cat([p.weight for p in projections]), torch.cat([p.bias for p in projections]))

    def warp_gates(self, x: torch.Tensor, h: torch.Tensor, warp_state, projection=None):
        """The gates of ``self.warp`` (a :class:`~warpkit.engine.warp.MultiplicativeRecurrentWarp`): exactly its
        ``forward(x, h, warp_state)``, but with its five projections applied as one matrix product and split,
        which makes the per-step autograd graph several nodes shorter (a test checks the two agree).
        Returns ``(gates, (u, c))``."""
        warp = self.warp
        if warp_state is None:
            warp_state = warp.initial_state(x.shape[0], x.device, x.dtype)
        weight, bias = projection if projection is not None else self.fused_projection()
        u, c = warp.cell(torch.cat([x, h], dim=-1), warp_state)
        gates = (1.0 + torch.tanh(F.linear(u, weight, bias))).split(self._gate_sizes, dim=-1)
        return gates, (u, c)

    def features(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        h, warp_state, projection = state if len(state) == 3 else (*state, None)
        if self.warp_kind == "hyper":
            (g_x, g_h, g_i, g_r, g_b), warp_state = self.warp_gates(x, h, warp_state, projection)
            pre = (F.linear(x * g_x, self.input_weight) * g_i + F.linear(h * g_h, self.hidden_weight) * g_r
                   + self.bias * g_b)
        elif self.warp_kind == "linear":
            warp = self.warp
            pre = (warp["input_drive"](F.linear(warp["input"](x), self.input_weight))
                   + warp["recurrent_drive"](F.linear(warp["hidden"](h), self.hidden_weight)) + self.bias)
        else:
            pre = F.linear(x, self.input_weight) + F.linear(h, self.hidden_weight) + self.bias
        h = torch.tanh(pre)
        return h, (h, warp_state, projection)


class LSTMAgent(MazeAgent):
    r"""Learning to reinforcement learn (Wang et al. 2016, "RL²" of Duan et al. 2016).

    An LSTM (hidden ``hidden_size``) over the observation, which already carries the previous action and reward,
    with policy and value heads. Protocol used here: its weights are *meta-trained* by the same actor-critic loss
    and optimiser as everyone else, one Adam step after every episode across the stream of episodes (all weights
    are task parameters; there is no warp), and every episode starts from a zero LSTM state. Within an episode the
    weights do not move: all within-episode adaptation (finding the goal, returning to it after teleports) has to
    happen in the LSTM state.
    """

    def __init__(self, input_size: int = OBSERVATION_SIZE, hidden_size: int = 100, num_actions: int = NUM_ACTIONS):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.heads = _ActorCriticHeads(hidden_size, num_actions)

    def initial_state(self, batch_size: int, device=None) -> tuple:
        weight = self.heads.value.weight
        zeros = torch.zeros(batch_size, self.hidden_size, device=device or weight.device, dtype=weight.dtype)
        return zeros, zeros.clone()

    def features(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        h, c = self.cell(x, state)
        return h, (h, c)


class HebbianAgent(MazeAgent):
    r"""A differentiable-plasticity RNN (Miconi, Clune & Stanley, ICML 2018; Miconi et al., ICLR 2019).

    Each recurrent connection has a fixed weight w_ij and a plastic part α_ij Hebb_ij(t):

    .. math::  h_t = \tanh\big( W_x x_t + b + (W + \alpha \odot \mathrm{Hebb}_{t-1})\, h_{t-1} \big),

    and the Hebbian trace (one per maze, reset to zero at the start of every episode) follows

    .. math::  \mathrm{Hebb}_t = (1 - \eta)\,\mathrm{Hebb}_{t-1} + \eta\, h_t h_{t-1}^\top
               \qquad \text{(plain, ICML 2018, } \eta \text{ learned, clamped to [0, 1])},

    .. math::  \mathrm{Hebb}_t = \mathrm{clip}\big(\mathrm{Hebb}_{t-1} + M_t\, h_t h_{t-1}^\top, -1, 1\big),\quad
               M_t = \tanh(w_M \cdot h_t + b_M)
               \qquad \text{(``neuromodulated=True``, Backpropamine's simple neuromodulation)}.

    W, α, η (or w_M, b_M), W_x, b and the heads are all trained by the actor-critic loss across episodes; within an
    episode the network adapts through its state and its Hebbian traces. Initialisation follows Miconi's code
    (W, α ~ 0.01·U(0, 1), η = 0.01).
    """

    def __init__(self, input_size: int = OBSERVATION_SIZE, hidden_size: int = 100, num_actions: int = NUM_ACTIONS,
                 neuromodulated: bool = False):
        super().__init__()
        self.hidden_size, self.neuromodulated = hidden_size, neuromodulated
        self.input_layer = nn.Linear(input_size, hidden_size)
        self.recurrent_weight = nn.Parameter(0.01 * torch.rand(hidden_size, hidden_size))
        self.plasticity = nn.Parameter(0.01 * torch.rand(hidden_size, hidden_size))  # α
        if neuromodulated:
            self.modulator = nn.Linear(hidden_size, 1)
        else:
            self.eta = nn.Parameter(torch.tensor(0.01))
        self.heads = _ActorCriticHeads(hidden_size, num_actions)

    def initial_state(self, batch_size: int, device=None) -> tuple:
        device, dtype = device or self.recurrent_weight.device, self.recurrent_weight.dtype
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),
                torch.zeros(batch_size, self.hidden_size, self.hidden_size, device=device, dtype=dtype))

    def features(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        h_prev, hebb = state
        # row i of W + α ⊙ Hebb holds the inputs of neuron i; the batched mat-vec is written as multiply-and-sum,
        # which is several times faster on CPU than bmm with a single column
        plastic_drive = (self.plasticity * hebb * h_prev.unsqueeze(-2)).sum(-1)
        h = torch.tanh(self.input_layer(x) + F.linear(h_prev, self.recurrent_weight) + plastic_drive)
        outer = h.unsqueeze(-1) * h_prev.unsqueeze(-2)  # h_t h_{t-1}^T
        if self.neuromodulated:
            modulation = torch.tanh(self.modulator(h)).unsqueeze(-1)  # [B, 1, 1]
            hebb = torch.clamp(hebb + modulation * outer, -1.0, 1.0)
        else:
            hebb = torch.lerp(hebb, outer, self.eta.clamp(0.0, 1.0))  # (1 - η) Hebb + η h_t h_{t-1}^T
        return h, (h, hebb)


class _ZeroHeads(nn.Module):
    def __init__(self, num_actions: int):
        super().__init__()
        self.num_actions = num_actions

    def policy(self, h: torch.Tensor) -> torch.Tensor:
        return h.new_zeros(*h.shape[:-1], self.num_actions)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(h), h.new_zeros(h.shape[:-1])


class RandomAgent(MazeAgent):
    """The uniform random policy: logits 0 for every action, value 0, no parameters and no state."""

    def __init__(self, num_actions: int = NUM_ACTIONS):
        super().__init__()
        self.heads = _ZeroHeads(num_actions)
        self.register_buffer("_device_marker", torch.zeros(()))

    def initial_state(self, batch_size: int, device=None) -> tuple:
        return ()

    def features(self, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        return x.new_zeros(x.shape[0], 0), state


#: hidden units of the capacity control: an LSTMCell(17, h) with both heads has 4h² + 81h + 5 parameters, which
#: for h = 179 is 142,668, within 0.5 % of Warp-RNN's θ + φ (12,305 + 129,717 = 142,022; a test checks it)
CAPACITY_HIDDEN_SIZE = 179

#: agent name -> (class, fixed keyword arguments)
AGENTS: dict[str, tuple[type, dict[str, Any]]] = {
    "warp_rnn": (WarpRNNAgent, {"warp": "hyper"}),
    "linear_warp": (WarpRNNAgent, {"warp": "linear"}),
    "no_warp": (WarpRNNAgent, {"warp": "none"}),
    "l2rl": (LSTMAgent, {}),
    "l2rl_large": (LSTMAgent, {"hidden_size": CAPACITY_HIDDEN_SIZE}),
    "hebbian": (HebbianAgent, {"neuromodulated": True}),
    "hebbian_plain": (HebbianAgent, {}),
    "random": (RandomAgent, {}),
}

AGENT_LABELS = {
    "warp_rnn": "Warp-RNN (HyperNetwork warp)",
    "linear_warp": "linear warp (ablation)",
    "no_warp": "no warp (ablation)",
    "l2rl": "learning to RL (LSTM)",
    "l2rl_large": "learning to RL, θ+φ-sized",
    "hebbian": "Hebbian (Backpropamine)",
    "hebbian_plain": "Hebbian, plain rule",
    "random": "random policy",
}


def make_agent(name: str, **kwargs) -> MazeAgent:
    """Build the agent called ``name`` (see :data:`AGENTS`); ``kwargs`` go to its constructor
    (e.g. ``hidden_size=64``, ``neuromodulated=True`` for ``hebbian``)."""
    if name not in AGENTS:
        raise ValueError(f"unknown maze agent {name!r}; choose one of {sorted(AGENTS)}")
    cls, fixed = AGENTS[name]
    clash = set(fixed) & set(kwargs)
    if clash:
        raise ValueError(f"agent {name!r} fixes {sorted(clash)}; use another agent name instead of overriding it")
    return cls(**fixed, **kwargs)
