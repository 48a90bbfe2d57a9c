"""Maze agents (Flennerhag et al., 2020, Section 4.3) and the actor-critic / WarpGrad training loop of warpkit.experiments.maze."""

import math

import numpy as np
import pytest
import torch

from warpkit.kit.checkpoint import CheckpointError
from warpkit.envs.maze import BatchedMaze, MazeConfig
from warpkit.models.maze_agents import AGENTS, HebbianAgent, LSTMAgent, WarpRNNAgent, make_agent
from warpkit.experiments.maze import (
    ALL_AGENTS,
    TRAINING,
    ActorCriticConfig,
    ActorCriticTrainer,
    actor_critic_loss,
    discounted_returns,
    evaluate_agent,
    learning_curves,
    rollout,
    train_agent,
    train_agents,
    training_config,
)
from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters

TINY_MAZE = MazeConfig(size=7, episode_length=12)


def _sequence(batch=3, steps=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(steps, batch, 17, generator=g)


def _run(agent, xs):
    state = agent.initial_state(xs.shape[1])
    outputs = []
    for x in xs:
        logits, value, state = agent(x, state)
        outputs.append(torch.cat([logits, value[:, None]], dim=1))
    return torch.stack(outputs)


# ----------------------------------------------------------------------------------------------------------
# agents
# ----------------------------------------------------------------------------------------------------------
def test_parameter_split_matches_hand_counts():
    hidden, inputs = 100, 17
    theta = hidden * inputs + hidden * hidden + hidden + (hidden * 4 + 4) + (hidden + 1)  # W_x, W_h, b, π, v
    lstm = 4 * hidden * (inputs + hidden) + 4 * hidden * hidden + 8 * hidden  # LSTM over [x, h] (117 inputs)
    projections = hidden * (inputs + 4 * hidden) + (inputs + 4 * hidden)  # gates for x, h, two drives, bias
    warp_rnn = make_agent("warp_rnn")
    assert count_parameters(task_parameters(warp_rnn)) == theta == 12305
    assert count_parameters(warp_parameters(warp_rnn)) == lstm + projections
    linear = make_agent("linear_warp")
    assert count_parameters(warp_parameters(linear)) == (inputs ** 2 + inputs) + 3 * (hidden ** 2 + hidden)
    assert count_parameters(warp_parameters(make_agent("no_warp"))) == 0
    for name in ("l2rl", "hebbian"):
        assert warp_parameters(make_agent(name)) == {}  # everything is meta-trained every episode
    assert list(make_agent("random").parameters()) == []


def test_the_capacity_control_has_as_many_parameters_as_warp_rnn_theta_and_phi():
    warp_rnn, control = make_agent("warp_rnn"), make_agent("l2rl_large")
    both = count_parameters(task_parameters(warp_rnn)) + count_parameters(warp_parameters(warp_rnn))
    hidden = control.hidden_size
    assert count_parameters(task_parameters(control)) == 4 * hidden * hidden + 81 * hidden + 5  # LSTM(17, h) + heads
    assert abs(count_parameters(task_parameters(control)) / both - 1) < 0.01 and warp_parameters(control) == {}


def test_every_warp_starts_at_the_identity_and_then_changes_the_function():
    xs = _sequence()
    plain = make_agent("no_warp")
    reference = _run(plain, xs)
    for name in ("warp_rnn", "linear_warp"):
        agent = make_agent(name)
        agent.load_state_dict(plain.state_dict(), strict=False)  # the same θ everywhere
        assert set(task_parameters(agent)) == set(plain.state_dict())
        torch.testing.assert_close(_run(agent, xs), reference)
    warped = make_agent("warp_rnn")
    warped.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        for projection in warped.warp.projections:
            projection.weight.normal_(0, 0.3)
    assert (_run(warped, xs) - reference).abs().max() > 1e-3


def test_the_warp_preconditions_the_task_gradient():
    """With a non-identity warp, ∇_θ differs from the plain RNN's at the same θ (the warp acts on the gradient)."""
    xs = _sequence()
    plain = make_agent("no_warp", hidden_size=16)
    warped = make_agent("warp_rnn", hidden_size=16, warp_hidden_size=8)
    warped.load_state_dict(plain.state_dict(), strict=False)
    grads = []
    for agent in (plain, warped):
        loss = _run(agent, xs).pow(2).sum()
        grads.append(torch.autograd.grad(loss, list(task_parameters(agent).values())))
    for a, b in zip(*grads):  # identity warp: the same gradient
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        for projection in warped.warp.projections:
            projection.bias.uniform_(-1, 1)
    loss = _run(warped, xs).pow(2).sum()
    new = torch.autograd.grad(loss, list(task_parameters(warped).values()))
    assert max((a - b).abs().max().item() for a, b in zip(grads[0], new)) > 1e-3


def test_warp_rnn_step_matches_the_gated_rnn_formula():
    torch.manual_seed(0)
    agent = WarpRNNAgent(hidden_size=5, warp_hidden_size=4)
    with torch.no_grad():
        for p in agent.warp.parameters():
            p.normal_(0, 0.5)
    x, h = torch.rand(2, 17), torch.rand(2, 5)
    logits, value, (h_new, (u, c), _) = agent(x, (h, None))
    # reference: the LSTM cell and gates by hand
    z = torch.cat([x, h], 1)
    cell = agent.warp.cell
    i, f, g, o = (z @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh).chunk(4, 1)  # zero previous state
    c_ref = torch.sigmoid(i) * torch.tanh(g)
    u_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    g_x, g_h, g_i, g_r, g_b = (1 + torch.tanh(u_ref @ p.weight.T + p.bias) for p in agent.warp.projections)
    pre = (g_x * x) @ agent.input_weight.T * g_i + (g_h * h) @ agent.hidden_weight.T * g_r + agent.bias * g_b
    h_ref = torch.tanh(pre)
    torch.testing.assert_close(h_new, h_ref)
    torch.testing.assert_close(u, u_ref)
    torch.testing.assert_close(logits, h_ref @ agent.heads.policy.weight.T + agent.heads.policy.bias)
    torch.testing.assert_close(value, (h_ref @ agent.heads.value.weight.T + agent.heads.value.bias).squeeze(1))


def test_fused_warp_gates_equal_the_warp_layers_own_forward():
    torch.manual_seed(2)
    agent = WarpRNNAgent(hidden_size=6, warp_hidden_size=5)
    with torch.no_grad():
        for p in agent.warp.parameters():
            p.normal_(0, 0.5)
    x, h = torch.rand(3, 17), torch.rand(3, 6)
    state = None
    for _ in range(3):  # also from a non-zero warp state
        fused, fused_state = agent.warp_gates(x, h, state)
        reference, reference_state = agent.warp(x, h, state)
        for a, b in zip(fused, reference):
            torch.testing.assert_close(a, b)
        for a, b in zip(fused_state, reference_state):
            torch.testing.assert_close(a, b)
        state = fused_state


def test_l2rl_agent_matches_torch_lstm_over_a_sequence():
    agent = LSTMAgent(hidden_size=7)
    lstm = torch.nn.LSTM(17, 7)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, name + "_l0").copy_(getattr(agent.cell, name))
    xs = _sequence(steps=5)
    hidden, _ = lstm(xs)  # zero initial state, as at every episode start
    torch.testing.assert_close(_run(agent, xs)[..., :4], agent.heads.policy(hidden))


@pytest.mark.parametrize("neuromodulated", [False, True])
def test_hebbian_agent_matches_a_numpy_reference(neuromodulated):
    torch.manual_seed(1)
    agent = HebbianAgent(hidden_size=4, neuromodulated=neuromodulated)
    xs = _sequence(batch=2, steps=4).double()
    agent = agent.double()
    W = agent.recurrent_weight.detach().numpy()
    alpha = agent.plasticity.detach().numpy()
    W_in, b_in = agent.input_layer.weight.detach().numpy(), agent.input_layer.bias.detach().numpy()
    for b in range(2):
        h, hebb = np.zeros(4), np.zeros((4, 4))
        state = agent.initial_state(2)
        for x in xs:
            _, _, state = agent(x, state)
            h_new = np.tanh(W_in @ x[b].numpy() + b_in + (W + alpha * hebb) @ h)
            if neuromodulated:
                m = np.tanh(agent.modulator.weight.detach().numpy() @ h_new + agent.modulator.bias.detach().numpy())
                hebb = np.clip(hebb + m * np.outer(h_new, h), -1, 1)
            else:
                eta = agent.eta.item()
                hebb = (1 - eta) * hebb + eta * np.outer(h_new, h)
            h = h_new
            np.testing.assert_allclose(state[0][b].detach().numpy(), h, rtol=1e-10)
            np.testing.assert_allclose(state[1][b].detach().numpy(), hebb, rtol=1e-10, atol=1e-14)


def test_make_agent_knows_every_agent_and_refuses_unknown_names():
    for name in AGENTS:
        agent = make_agent(name)
        logits, value, _ = agent(torch.rand(3, 17), agent.initial_state(3))
        assert logits.shape == (3, 4) and value.shape == (3,)
    with pytest.raises(ValueError, match="unknown maze agent"):
        make_agent("warp-rnn")
    with pytest.raises(ValueError, match="warp must be one of"):
        WarpRNNAgent(warp="conv")


# ----------------------------------------------------------------------------------------------------------
# the loss
# ----------------------------------------------------------------------------------------------------------
def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 10.0]])
    expected = torch.tensor([[1 + 0.5 * 0 + 0.25 * 2, 0.25 * 10], [0.5 * 2, 0.5 * 10], [2.0, 10.0]])
    torch.testing.assert_close(discounted_returns(rewards, 0.5), expected)


def test_actor_critic_loss_by_hand():
    # T = 2 steps, B = 1 maze, 2 actions
    logits = torch.tensor([[[0.0, math.log(3.0)]], [[0.0, 0.0]]], requires_grad=True)  # π = (1/4, 3/4), (1/2, 1/2)
    values = torch.tensor([[1.0], [2.0]], requires_grad=True)
    actions = torch.tensor([[1], [0]])
    rewards = torch.tensor([[0.0], [4.0]])
    config = ActorCriticConfig(gamma=0.5, value_weight=0.1, concentration_weight=0.03)
    loss, parts = actor_critic_loss(logits, values, actions, rewards, config)
    returns = [0 + 0.5 * 4, 4.0]
    advantages = [returns[0] - 1.0, returns[1] - 2.0]  # 1, 2
    policy = -(math.log(0.75) * advantages[0] + math.log(0.5) * advantages[1]) / 2
    value = (advantages[0] ** 2 + advantages[1] ** 2) / 2
    concentration = ((1 / 16 + 9 / 16) + (1 / 4 + 1 / 4)) / 2
    assert parts["policy"] == pytest.approx(policy) and parts["value"] == pytest.approx(value)
    assert parts["concentration"] == pytest.approx(concentration)
    assert loss.item() == pytest.approx(policy + 0.1 * value + 0.03 * concentration)
    loss.backward()
    # dL/dV_t = 0.1 * 2 * (V_t - R_t) / (T B); the policy term does not reach V (the advantage is detached)
    torch.testing.assert_close(values.grad, torch.tensor([[0.1 * (1.0 - 2.0)], [0.1 * (2.0 - 4.0)]]))


# ----------------------------------------------------------------------------------------------------------
# the WarpGrad schedule
# ----------------------------------------------------------------------------------------------------------
def _small_trainer(warp_interval=3, seed=0, name="warp_rnn"):
    torch.manual_seed(seed)
    agent = make_agent(name, hidden_size=8, **({"warp_hidden_size": 6} if name == "warp_rnn" else {}))
    env = BatchedMaze(4, TINY_MAZE)
    return ActorCriticTrainer(agent, env, ActorCriticConfig(warp_interval=warp_interval), seed=seed)


def _snapshot(params):
    return [p.detach().clone() for p in params]


def test_task_parameters_move_every_episode_and_the_warp_every_n_episodes():
    trainer = _small_trainer(warp_interval=3)
    phi = _snapshot(trainer.warp_params)
    for episode in range(1, 7):
        theta = _snapshot(trainer.task_params)
        trainer.train_episode()
        assert any(not torch.equal(a, b) for a, b in zip(theta, trainer.task_params))
        phi_moved = any(not torch.equal(a, b) for a, b in zip(phi, trainer.warp_params))
        assert phi_moved == (episode % 3 == 0), episode
        phi = _snapshot(trainer.warp_params)


def test_the_warp_step_uses_the_mean_gradient_over_the_window_at_each_point():
    """Replay the trainer's two episodes by hand: φ's step is Adam on (g_0 + g_1) / 2 with g_k = ∇_φ L_AC(θ_k; φ)
    of the episode played at θ_k (the approx form of Eq. 11 over the history)."""
    trainer = _small_trainer(warp_interval=2, seed=3)
    reference = _small_trainer(warp_interval=2, seed=3)
    config = reference.config
    grads = []
    for _ in range(2):
        episode = rollout(reference.agent, reference.env, reference.generator,
                          seed=reference.seed if reference.env.rngs is None else None)
        loss, _ = actor_critic_loss(episode.logits, episode.values, episode.actions, episode.rewards, config)
        g = torch.autograd.grad(loss, reference.task_params + reference.warp_params)
        theta_grad, phi_grad = g[:len(reference.task_params)], g[len(reference.task_params):]
        grads.append(phi_grad)
        scale = min(1.0, config.grad_clip / (torch.sqrt(sum((x ** 2).sum() for x in theta_grad)) + 1e-6).item())
        for p, x in zip(reference.task_params, theta_grad):
            p.grad = x * scale
        reference.task_optimizer.step()
        reference.task_optimizer.zero_grad()
    mean = [(a + b) / 2 for a, b in zip(*grads)]
    norm = torch.sqrt(sum((x ** 2).sum() for x in mean)).item()
    expected = []
    for p, m in zip(reference.warp_params, mean):
        step = config.warp_lr * (m * min(1.0, config.grad_clip / (norm + 1e-6))).sign()  # Adam's first step
        expected.append(p.detach() - step)
    trainer.train_episode()
    trainer.train_episode()
    for p, e, m in zip(trainer.warp_params, expected, mean):
        nonzero = m.abs() > 1e-4  # Adam's first step is lr·g/(|g| + eps) = lr·sign(g) wherever |g| ≫ eps
        torch.testing.assert_close(p.detach()[nonzero], e[nonzero], atol=1e-7, rtol=0)
    assert sum(int((m.abs() > 1e-4).sum()) for m in mean) > 100


def test_random_agent_trains_nothing_and_evaluation_is_seeded():
    run = train_agent("random", 3, maze=TINY_MAZE, num_mazes=4, show_progress=False)
    assert len(run.rewards) == 3 and np.all(run.rewards >= 0)
    a = evaluate_agent(run.agent, 2, maze=TINY_MAZE, num_mazes=4, seed=1)
    b = evaluate_agent(run.agent, 2, maze=TINY_MAZE, num_mazes=4, seed=1)
    assert a.shape == (2, 4) and np.array_equal(a, b)


def test_every_agent_has_training_settings_and_unknown_names_are_refused():
    assert set(ALL_AGENTS) | {"random"} <= set(TRAINING)
    script = ActorCriticConfig()  # the WarpGrad maze script's defaults
    assert (script.lr, script.warp_lr, script.grad_clip, script.warp_interval) == (1e-3, 1e-3, 4.0, 30)
    assert script.adam_eps == 1e-8  # PyTorch's default (the lesson's sweeps chose each agent's own)
    chosen = training_config("warp_rnn")  # whatever the sweeps chose, the ablations got the same
    assert training_config("no_warp").lr == training_config("linear_warp").lr == chosen.lr
    assert training_config("no_warp").adam_eps == training_config("linear_warp").adam_eps == chosen.adam_eps
    with pytest.raises(ValueError, match="no training settings for agent 'warp-rnn'"):
        training_config("warp-rnn")


@pytest.mark.parametrize("name", ["warp_rnn", "hebbian", "l2rl"])
def test_a_run_is_deterministic_for_a_seed_whatever_the_global_random_state(name):
    """Same seed, same process, same thread count: the same rewards and weights, bit for bit, even when the
    global generators (torch, numpy) were moved in between; another seed gives another run."""
    kwargs = dict(maze=TINY_MAZE, num_mazes=3, show_progress=False,
                  agent_kwargs={"hidden_size": 8, **({"warp_hidden_size": 6} if name == "warp_rnn" else {})})
    first = train_agent(name, 4, seed=5, **kwargs)
    torch.manual_seed(123)
    np.random.seed(123)
    torch.rand(10), np.random.rand(10)
    second = train_agent(name, 4, seed=5, **kwargs)
    np.testing.assert_array_equal(first.rewards, second.rewards)
    np.testing.assert_array_equal(first.maze_rewards, second.maze_rewards)
    for a, b in zip(first.agent.state_dict().values(), second.agent.state_dict().values()):
        assert torch.equal(a, b)
    other = train_agent(name, 4, seed=6, **kwargs)
    assert not np.array_equal(other.maze_rewards, first.maze_rewards)


# ----------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------
SMALL = dict(maze=TINY_MAZE, num_mazes=3, agent_kwargs={"hidden_size": 8, "warp_hidden_size": 6},
             config=ActorCriticConfig(warp_interval=4), show_progress=False)


def test_resuming_from_a_checkpoint_reproduces_an_uninterrupted_run(tmp_path):
    straight = train_agent("warp_rnn", 7, seed=2, **SMALL)
    path = tmp_path / "run.pt"
    first = train_agent("warp_rnn", 3, seed=2, checkpoint_path=path, checkpoint_every=2, **SMALL)
    assert first.resumed_from == 0 and path.exists()
    resumed = train_agent("warp_rnn", 7, seed=2, checkpoint_path=path, checkpoint_every=2, **SMALL)
    assert resumed.resumed_from == 3  # the window of 4 episodes was cut in the middle: φ's partial sum is saved
    np.testing.assert_array_equal(resumed.rewards, straight.rewards)
    for a, b in zip(resumed.agent.state_dict().values(), straight.agent.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    done = train_agent("warp_rnn", 7, seed=2, checkpoint_path=path, **SMALL)  # finished: nothing to do
    assert done.resumed_from == 7 and np.array_equal(done.rewards, straight.rewards)


def test_a_corrupt_checkpoint_raises_and_is_left_untouched(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        train_agent("warp_rnn", 2, checkpoint_path=path, **SMALL)
    assert path.read_bytes() == b"not a checkpoint"


def test_a_checkpoint_from_other_settings_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    train_agent("warp_rnn", 1, seed=0, checkpoint_path=path, **SMALL)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"other settings: seed \(saved 0, now 1\)"):
        train_agent("warp_rnn", 2, seed=1, checkpoint_path=path, **SMALL)
    assert path.read_bytes() == before


def test_a_checkpoint_from_an_older_trainer_is_refused_by_name_and_left_untouched(tmp_path):
    from warpkit.kit.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "run.pt"
    train_agent("warp_rnn", 2, seed=0, checkpoint_path=path, checkpoint_every=1, **SMALL)
    saved = load_checkpoint(path)
    del saved["state"]["maze_rewards"]  # as an older warpkit wrote it
    save_checkpoint(path, saved)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"lacks \['maze_rewards'\].*older version.*afresh"):
        train_agent("warp_rnn", 3, seed=0, checkpoint_path=path, **SMALL)
    assert path.read_bytes() == before


def test_train_agents_checkpoints_every_run_and_stacks_curves(tmp_path):
    runs = train_agents(["random", "no_warp"], [0, 1], 2, checkpoint_dir=tmp_path, maze=TINY_MAZE, num_mazes=2,
                        agent_kwargs=None, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "no_warp_seed0.pt", "no_warp_seed1.pt", "random_seed0.pt", "random_seed1.pt"]
    curves = learning_curves(runs)
    assert curves["no_warp"].shape == (2, 2) and curves["random"].shape == (2, 2)
    assert not np.array_equal(curves["random"][0], curves["random"][1])  # the seeds differ
    again = train_agents(["random"], [0], 2, checkpoint_dir=tmp_path, maze=TINY_MAZE, num_mazes=2,
                         show_progress=False)
    assert again["random"][0].resumed_from == 2
    np.testing.assert_array_equal(again["random"][0].rewards, curves["random"][0])


def test_warp_rnn_and_its_no_warp_ablation_play_identically_until_the_first_warp_step():
    """Same seed, gates exactly 1: the two agents play the same episodes and take the same θ steps, bit for bit,
    until φ first moves (after ``warp_interval`` episodes)."""
    common = dict(maze=TINY_MAZE, num_mazes=3, seed=4, config=ActorCriticConfig(warp_interval=3), show_progress=False)
    warp_kwargs, plain_kwargs = {"hidden_size": 8, "warp_hidden_size": 6}, {"hidden_size": 8}
    warped = train_agent("warp_rnn", 3, agent_kwargs=warp_kwargs, **common)
    plain = train_agent("no_warp", 3, agent_kwargs=plain_kwargs, **common)
    np.testing.assert_array_equal(warped.rewards, plain.rewards)
    for name, p in task_parameters(plain.agent).items():
        assert torch.equal(p, task_parameters(warped.agent)[name]), name
    warped = train_agent("warp_rnn", 6, agent_kwargs=warp_kwargs, **common)
    plain = train_agent("no_warp", 6, agent_kwargs=plain_kwargs, **common)
    assert any(not torch.equal(p, task_parameters(warped.agent)[name])
               for name, p in task_parameters(plain.agent).items())  # after φ's first step they part ways
