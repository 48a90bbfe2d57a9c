"""The warp meta-objectives against independent references: finite differences, a hand-built first-order
gradient, and per-point replay."""

import pytest
import torch
import torch.nn as nn

from warpkit.engine.adapt import forward, fresh_buffers
from warpkit.engine.buffer import TrajectoryPoint
from warpkit.engine.objectives import one_step_objective, warp_meta_gradient, warp_objective
from warpkit.engine.warp import ResidualMLPWarp, task_parameters, warp_parameters

INNER_LR = 0.3


def make_model(seed=0, dtype=torch.float64):
    """A non-linear task network with a non-linear warp: Linear → tanh → ResidualMLPWarp → Linear."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), ResidualMLPWarp(4, hidden=5), nn.Linear(4, 2)).to(dtype)
    with torch.no_grad():  # move the warp away from the identity so that every term of Eq. 11 is non-zero
        for p in warp_parameters(model).values():
            p.add_(0.5 * torch.randn_like(p))
    return model


def mse(output, target):
    return ((output - target) ** 2).mean()


def make_point_and_batches(model, seed=1, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    params = {n: p.detach() + 0.1 * torch.randn(p.shape, generator=generator, dtype=dtype)
              for n, p in task_parameters(model).items()}
    task_batch = (torch.randn(6, 3, generator=generator, dtype=dtype), torch.randn(6, 2, generator=generator, dtype=dtype))
    meta_batch = (torch.randn(6, 3, generator=generator, dtype=dtype), torch.randn(6, 2, generator=generator, dtype=dtype))
    return TrajectoryPoint(0, 0, params, fresh_buffers(model)), task_batch, meta_batch


def objective_value(model, point, task_batch, meta_batch, mode, warp=None):
    warp = warp if warp is not None else warp_parameters(model)
    return one_step_objective(model, mse, warp, point.params, point.buffers, task_batch, meta_batch, INNER_LR, mode)


def central_differences(model, point, task_batch, meta_batch, eps=1e-6):
    """d/dφ of the exact one-step objective, entry by entry, by (f(φ+εe) − f(φ−εe)) / 2ε."""
    gradients = {}
    warp = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    with torch.no_grad():
        for name, value in warp.items():
            flat = torch.zeros(value.numel(), dtype=value.dtype)
            for i in range(value.numel()):
                shifted_plus = {**warp, name: (value.flatten() + eps * torch.eye(value.numel(), dtype=value.dtype)[i]).view_as(value)}
                shifted_minus = {**warp, name: (value.flatten() - eps * torch.eye(value.numel(), dtype=value.dtype)[i]).view_as(value)}
                with torch.enable_grad():  # the inner gradient needs autograd even though φ is not tracked
                    plus = objective_value(model, point, task_batch, meta_batch, "exact", shifted_plus)
                    minus = objective_value(model, point, task_batch, meta_batch, "exact", shifted_minus)
                flat[i] = (plus - minus) / (2 * eps)
            gradients[name] = flat.view_as(value)
    return gradients


def first_order_by_hand(model, point, task_batch, meta_batch):
    """Eq. 12 built by hand: take the inner step with plain autograd, cut it from the graph, then
    differentiate the meta loss at the stepped point with respect to φ only."""
    warp = warp_parameters(model)
    theta = {n: t.clone().requires_grad_(True) for n, t in point.params.items()}
    inputs, target = task_batch
    task_loss = mse(forward(model, {**theta, **{n: p.detach() for n, p in warp.items()}}, fresh_buffers(model), inputs), target)
    inner = torch.autograd.grad(task_loss, list(theta.values()))
    stepped = {n: (t - INNER_LR * g).detach() for (n, t), g in zip(theta.items(), inner)}
    meta_loss = mse(forward(model, {**stepped, **warp}, fresh_buffers(model), meta_batch[0]), meta_batch[1])
    return dict(zip(warp, torch.autograd.grad(meta_loss, list(warp.values()))))


def relative_error(a, b):
    a = torch.cat([t.flatten() for t in a.values()])
    b = torch.cat([t.flatten() for t in b.values()])
    return float((a - b).norm() / b.norm())


def test_exact_meta_gradient_matches_central_finite_differences():
    model = make_model()
    point, task_batch, meta_batch = make_point_and_batches(model)
    analytic, _ = warp_meta_gradient(model, mse, warp_parameters(model), [point], [task_batch], [meta_batch],
                                     INNER_LR, "exact", batched=True)
    numeric = central_differences(model, point, task_batch, meta_batch)
    assert relative_error(analytic, numeric) <= 1e-5


def test_first_order_gradient_matches_hand_built_reference_and_differs_from_exact():
    model = make_model()
    point, task_batch, meta_batch = make_point_and_batches(model)
    warp = warp_parameters(model)
    first_order, _ = warp_meta_gradient(model, mse, warp, [point], [task_batch], [meta_batch], INNER_LR, "first_order")
    exact, _ = warp_meta_gradient(model, mse, warp, [point], [task_batch], [meta_batch], INNER_LR, "exact")
    reference = first_order_by_hand(model, point, task_batch, meta_batch)
    assert relative_error(first_order, reference) <= 1e-10
    # the second-order term is what the authors' code silently dropped: it must be there
    assert relative_error(first_order, exact) > 1e-3


def test_approx_objective_is_meta_loss_at_the_point_itself():
    model = make_model()
    point, task_batch, meta_batch = make_point_and_batches(model)
    value = objective_value(model, point, task_batch, meta_batch, "approx")
    expected = mse(forward(model, {**point.params, **warp_parameters(model)}, fresh_buffers(model), meta_batch[0]),
                   meta_batch[1])
    assert torch.allclose(value, expected)
    assert not torch.allclose(value, objective_value(model, point, task_batch, meta_batch, "first_order"))


@pytest.mark.parametrize("mode", ["exact", "first_order", "approx"])
def test_batched_replay_equals_per_point_replay(mode):
    model = make_model(dtype=torch.float32)
    points, task_batches, meta_batches = [], [], []
    for seed in range(7):
        point, a, b = make_point_and_batches(model, seed=seed + 10, dtype=torch.float32)
        points.append(TrajectoryPoint(0, seed, point.params, point.buffers))
        task_batches.append(a)
        meta_batches.append(b)
    warp = warp_parameters(model)
    batched, value_b = warp_meta_gradient(model, mse, warp, points, task_batches, meta_batches, INNER_LR, mode, True)
    looped, value_l = warp_meta_gradient(model, mse, warp, points, task_batches, meta_batches, INNER_LR, mode, False)
    assert abs(value_b - value_l) <= 1e-6
    for name in warp:
        assert torch.allclose(batched[name], looped[name], atol=1e-6, rtol=0), name


def test_replay_with_batchnorm_does_not_touch_stored_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), ResidualMLPWarp(4), nn.Linear(4, 2))
    buffers = fresh_buffers(model)
    buffers["1.running_mean"] += 0.5
    snapshot = {n: b.clone() for n, b in buffers.items()}
    params = {n: p.detach() for n, p in task_parameters(model).items()}
    points = [TrajectoryPoint(0, k, params, buffers) for k in range(3)]
    batch = (torch.randn(5, 3), torch.randn(5, 2))
    warp_meta_gradient(model, mse, warp_parameters(model), points, [batch] * 3, [batch] * 3, 0.1, "exact", True)
    warp_meta_gradient(model, mse, warp_parameters(model), points, [batch] * 3, [batch] * 3, 0.1, "exact", False)
    for name in snapshot:
        assert torch.equal(buffers[name], snapshot[name]), name


def test_unknown_mode_and_mismatched_batches_are_refused():
    model = make_model()
    point, a, b = make_point_and_batches(model)
    with pytest.raises(ValueError, match="unknown warp objective"):
        warp_objective(model, mse, warp_parameters(model), [point], [a], [b], 0.1, mode="second_order")
    with pytest.raises(ValueError, match="one of each per point"):
        warp_objective(model, mse, warp_parameters(model), [point, point], [a], [b], 0.1)


def test_batched_exact_replay_is_right_with_batchnorm_above_a_warp():
    """The fused batch_norm kernel's double backward is wrong under vmap (functorch #534); the engine must
    still give the per-point (and so the true) exact gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), ResidualMLPWarp(4, hidden=5), nn.BatchNorm1d(4),
                          nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.5 * torch.randn_like(p))
    points, task_batches, meta_batches = [], [], []
    for seed in range(4):
        point, a, b = make_point_and_batches(model, seed=seed + 20)
        points.append(point)
        task_batches.append(a)
        meta_batches.append(b)
    warp = warp_parameters(model)
    batched, _ = warp_meta_gradient(model, mse, warp, points, task_batches, meta_batches, INNER_LR, "exact", True)
    looped, _ = warp_meta_gradient(model, mse, warp, points, task_batches, meta_batches, INNER_LR, "exact", False)
    for name in warp:
        assert torch.allclose(batched[name], looped[name], atol=1e-12, rtol=0), name
