"""The inner loop: θ only moves, φ frozen, θ_0 untouched, identity warps give plain SGD, BN policy, trajectory."""

import pytest
import torch
import torch.nn as nn

from warpkit.engine.adapt import adapt, differentiable_adapt, evaluate, fresh_buffers
from warpkit.engine.buffer import TrajectoryBuffer, stack_points
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import LinearWarp, ResidualMLPWarp, ScaleWarp, task_parameters, warp_parameters


def mse(output, target):
    return ((output - target) ** 2).mean()


def regression_task(seed=0, n=32, batch_size=8, inputs=3, outputs=2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, inputs, generator=generator, dtype=dtype)
    y = torch.sin(x @ torch.randn(inputs, outputs, generator=generator, dtype=dtype))
    return SupervisedTask(x, y, x[:8], y[:8], batch_size=batch_size, generator=torch.Generator().manual_seed(seed + 1))


def plain_sgd_reference(model, task, steps, lr):
    """Plain SGD with torch.optim on a deep copy of the model (the independent reference)."""
    import copy

    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        inputs, target = task.sample_batch(step)
        optimizer.zero_grad()
        loss = mse(reference(inputs), target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return reference, losses


def test_identity_warps_reproduce_plain_sgd():
    torch.manual_seed(0)
    warped = nn.Sequential(nn.Linear(3, 5), LinearWarp(5), nn.Tanh(), ResidualMLPWarp(5, hidden=7),
                           ScaleWarp(5), nn.Linear(5, 2)).double()
    unwarped = nn.Sequential(warped[0], nn.Tanh(), warped[5])
    trajectory = adapt(warped, regression_task(), mse, num_steps=20, lr=0.1)
    reference, losses = plain_sgd_reference(unwarped, regression_task(), 20, 0.1)
    assert max(abs(a - b) for a, b in zip(trajectory.losses, losses)) <= 1e-7
    assert torch.allclose(trajectory.final_params["0.weight"], reference[0].weight, atol=1e-7, rtol=0)
    assert torch.allclose(trajectory.final_params["5.bias"], reference[2].bias, atol=1e-7, rtol=0)


def test_warp_parameters_never_move_and_theta0_is_not_mutated():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), ResidualMLPWarp(5), nn.Linear(5, 2)).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.3 * torch.randn_like(p))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    init = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    init_copy = {n: t.clone() for n, t in init.items()}
    trajectory = adapt(model, regression_task(), mse, num_steps=10, lr=0.02, init_params=init, momentum=0.5)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    for name in init:
        assert torch.equal(init[name], init_copy[name]), name
    assert set(trajectory.final_params) == set(task_parameters(model))
    assert not any(t.requires_grad for t in trajectory.final_params.values())
    assert trajectory.losses[-1] < trajectory.losses[0]


def test_momentum_matches_torch_sgd_with_momentum():
    import copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    trajectory = adapt(model, regression_task(), mse, num_steps=8, lr=0.05, momentum=0.9)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    task = regression_task()
    for step in range(8):
        x, y = task.sample_batch(step)
        optimizer.zero_grad()
        mse(reference(x), y).backward()
        optimizer.step()
    assert torch.allclose(trajectory.final_params["2.weight"], reference[2].weight, atol=1e-10)


def test_trajectory_holds_exactly_the_k_pre_step_states():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    steps, lr = 6, 0.1
    trajectory = adapt(model, regression_task(), mse, num_steps=steps, lr=lr, keep_gradients=True)
    assert len(trajectory.params) == len(trajectory.buffers) == len(trajectory.gradients) == steps
    init = task_parameters(model)
    for name in init:
        assert torch.equal(trajectory.params[0][name], init[name].detach())
    # θ_{k+1} = θ_k − α g_k links consecutive buffered states (and the last to the final state)
    states = trajectory.params + [trajectory.final_params]
    for k in range(steps):
        for name in init:
            assert torch.allclose(states[k + 1][name], states[k][name] - lr * trajectory.gradients[k][name])
    # BN statistics before step 0 are the reset ones; they then move with every batch
    assert torch.equal(trajectory.buffers[0]["1.running_mean"], torch.zeros(4, dtype=torch.float64))
    assert int(trajectory.buffers[3]["1.num_batches_tracked"]) == 3
    assert not torch.equal(trajectory.buffers[1]["1.running_mean"], trajectory.buffers[2]["1.running_mean"])
    buffer = TrajectoryBuffer()
    buffer.add(0, trajectory)
    assert len(buffer) == steps
    assert [p.step for p in buffer.points()] == list(range(steps))
    stacked, stacked_buffers = stack_points(buffer.points())
    assert stacked["0.weight"].shape == (steps, 4, 3)
    assert stacked_buffers["1.running_var"].shape == (steps, 4)


def test_batchnorm_statistics_reset_for_every_task():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[1].running_mean.fill_(3.0)
        model[1].running_var.fill_(7.0)
    first = adapt(model, regression_task(seed=0), mse, num_steps=5, lr=0.1)
    second = adapt(model, regression_task(seed=5), mse, num_steps=5, lr=0.1)
    for trajectory in (first, second):
        assert torch.equal(trajectory.buffers[0]["1.running_mean"], torch.zeros(4, dtype=torch.float64))
        assert torch.equal(trajectory.buffers[0]["1.running_var"], torch.ones(4, dtype=torch.float64))
    assert float(model[1].running_mean[0]) == 3.0  # the model's own statistics are untouched
    fresh = fresh_buffers(model)
    assert float(fresh["1.running_var"][0]) == 1.0 and int(fresh["1.num_batches_tracked"]) == 0


def test_each_task_starts_from_a_fresh_copy_of_theta0():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    a1 = adapt(model, regression_task(seed=0), mse, num_steps=5, lr=0.1)
    adapt(model, regression_task(seed=3), mse, num_steps=5, lr=0.1)
    a2 = adapt(model, regression_task(seed=0), mse, num_steps=5, lr=0.1)
    assert a1.losses == a2.losses


def test_differentiable_adapt_matches_adapt_and_carries_second_order_graph():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    theta0 = {n: p.detach().clone().requires_grad_(True) for n, p in task_parameters(model).items()}
    final, _ = differentiable_adapt(model, regression_task(), mse, 4, 0.1, theta0)
    reference = adapt(model, regression_task(), mse, 4, 0.1)
    for name in final:
        assert torch.allclose(final[name].detach(), reference.final_params[name], atol=1e-12)
    # the Jacobian dθ_K/dθ_0 is not the identity through a non-linear loop
    jac_row = torch.autograd.grad(final["2.bias"][0], theta0["0.weight"])[0]
    assert jac_row.abs().sum() > 1e-6


def test_evaluate_reports_loss_and_metric_without_touching_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    trajectory = adapt(model, regression_task(), mse, 3, 0.1)
    snapshot = {n: b.clone() for n, b in trajectory.final_buffers.items()}
    batch = regression_task().evaluation_batch()
    result = evaluate(model, trajectory.final_params, trajectory.final_buffers, batch, mse, metric_fn=mse)
    assert result["loss"] == pytest.approx(result["metric"])
    for name in snapshot:
        assert torch.equal(snapshot[name], trajectory.final_buffers[name])
    running = evaluate(model, trajectory.final_params, trajectory.final_buffers, batch, mse, batchnorm="running")
    assert running["loss"] != pytest.approx(result["loss"])
    with pytest.raises(ValueError, match="batchnorm"):
        evaluate(model, trajectory.final_params, trajectory.final_buffers, batch, mse, batchnorm="frozen")


def test_mismatched_init_params_are_refused_clearly():
    model = nn.Sequential(nn.Linear(3, 4), ResidualMLPWarp(4), nn.Linear(4, 2))
    with pytest.raises(KeyError, match="unknown"):
        adapt(model, regression_task(dtype=torch.float32), mse, 1, 0.1, init_params={"nope": torch.zeros(1)})


def test_adapt_tasks_equals_adapting_each_task_alone():
    from warpkit.engine.adapt import adapt_tasks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), ResidualMLPWarp(5), nn.Linear(5, 2)).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.2 * torch.randn_like(p))
    together = adapt_tasks(model, [regression_task(seed=s) for s in range(3)], mse, 6, 0.05, momentum=0.5,
                           keep_gradients=True)
    for seed, batched in enumerate(together):
        alone = adapt(model, regression_task(seed=seed), mse, 6, 0.05, momentum=0.5, keep_gradients=True)
        assert batched.losses == pytest.approx(alone.losses, abs=1e-12)
        assert batched.final_loss == pytest.approx(alone.final_loss, abs=1e-12)
        for k in range(6):
            for name in alone.params[k]:
                assert torch.allclose(batched.params[k][name], alone.params[k][name], atol=1e-12)
                assert torch.allclose(batched.gradients[k][name], alone.gradients[k][name], atol=1e-12)
            for name in alone.buffers[k]:
                assert torch.allclose(batched.buffers[k][name].double(), alone.buffers[k][name].double(), atol=1e-12)
        for name in alone.final_params:
            assert torch.allclose(batched.final_params[name], alone.final_params[name], atol=1e-12)


def test_eager_inner_gradient_equals_torch_func_bit_for_bit():
    """adapt's gradient by plain autograd (faster on a CPU) is torch.func.grad_and_value's, bit for bit, on the
    Omniglot network with warps, BatchNorm and the corner max-pool; a parameter the loss does not use gets zeros."""
    from torch.func import grad_and_value

    from warpkit.engine.adapt import _eager_gradient_and_value, _task_loss, train_mode
    from warpkit.models.omniglot_net import OmniglotNet

    torch.manual_seed(0)
    model = OmniglotNet(ways=5, filters=8, warp="conv3")
    phi = {n: p.detach() for n, p in warp_parameters(model).items()}
    theta = {n: p.detach() for n, p in task_parameters(model).items()}
    theta["unused"] = torch.ones(3)
    task_loss = _task_loss(model, nn.functional.cross_entropy, phi)

    def loss(theta_, buffers, inputs, target):
        return task_loss({n: t for n, t in theta_.items() if n != "unused"}, buffers, inputs, target)

    inputs, target = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2)
    with train_mode(model):
        eager = _eager_gradient_and_value(loss)(theta, fresh_buffers(model), inputs, target)
        functional = grad_and_value(loss)(theta, fresh_buffers(model), inputs, target)
    assert torch.equal(eager[1], functional[1])
    assert all(torch.equal(eager[0][n], functional[0][n]) for n in theta)
    assert torch.equal(eager[0]["unused"], torch.zeros(3)) and eager[0]["blocks.0.conv.weight"].abs().sum() > 0
