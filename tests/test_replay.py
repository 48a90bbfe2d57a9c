"""Fast replay (warpkit.engine.replay) against the general path of warpkit.engine.objectives and against finite
differences: the buffered lookahead where it holds (and never where it does not), the split exact gradient
(first-order part + one mixed second-derivative–vector product), batched against looped, and the replay mode."""

import pytest
import torch
import torch.nn as nn

from warpkit.engine.adapt import adapt
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint
from warpkit.engine.init_learners import MetaSGD
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.objectives import one_step_objective, replay_batches, warp_meta_gradient
from warpkit.engine.replay import (buffered_lookahead_holds, chosen_replay, last_replay, point_meta_gradient,
                                   replay_meta_gradient, resolve_replay)
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import ResidualMLPWarp, task_parameters, warp_parameters

LR = 0.3


def mse(output, target):
    return ((output - target) ** 2).mean()


def make_model(seed=0):
    """Linear → BatchNorm → tanh → non-linear warp → Linear, float64, the warp away from the identity."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), ResidualMLPWarp(4, hidden=5),
                          nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.5 * torch.randn_like(p))
    return model


def make_task(seed=1):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(24, 3, generator=generator, dtype=torch.float64)
    return SupervisedTask(inputs, torch.sin(inputs[:, :2] * 2), batch_size=6, generator=generator)


def trajectory_points(model, task, steps=5, lr=LR, **adapt_options):
    buffer = TrajectoryBuffer()
    buffer.add(0, adapt(model, task, mse, steps, lr, final_loss=False, **adapt_options))
    return buffer.points()


def general(model, points, task, mode, seed=3, inner_batches=False):
    """The general path on the batches the fast path draws (task batches: fresh, or the inner loop's own)."""
    task.generator = torch.Generator().manual_seed(seed)
    task_batches, meta_batches = replay_batches([task], points)
    if inner_batches:
        task_batches = [p.batch for p in points]
    return warp_meta_gradient(model, mse, warp_parameters(model), points, task_batches, meta_batches, LR, mode,
                              batched=False)


def fast(model, points, task, mode, replay, lookahead="buffered", seed=3):
    task.generator = torch.Generator().manual_seed(seed)
    return replay_meta_gradient(model, mse, warp_parameters(model), points, [task], LR, mode, replay, lookahead)


def max_difference(a, b):
    return max(float((a[n] - b[n]).abs().max()) for n in b)


@pytest.mark.parametrize("mode", ["first_order", "exact"])
@pytest.mark.parametrize("replay", ["looped", "batched"])
def test_buffered_lookahead_equals_the_general_path_on_the_inner_batch(mode, replay):
    """Plain SGD, φ unchanged since adaptation: θ_{k+1} is the lookahead of the inner loop's own batch."""
    model, task = make_model(), make_task()
    points = trajectory_points(model, task)
    assert buffered_lookahead_holds(points, mode)
    expected, expected_value = general(model, points, task, mode, inner_batches=True)
    gradients, value = fast(model, points, task, mode, replay)
    assert max_difference(gradients, expected) <= 1e-10 and abs(value - expected_value) <= 1e-12
    assert max(float(g.abs().max()) for g in gradients.values()) > 1e-3  # a gradient that can tell them apart


@pytest.mark.parametrize("mode", ["first_order", "exact"])
@pytest.mark.parametrize("replay", ["looped", "batched"])
def test_fresh_lookahead_equals_the_general_path(mode, replay):
    model, task = make_model(), make_task()
    points = trajectory_points(model, task)
    expected, _ = general(model, points, task, mode)
    gradients, _ = fast(model, points, task, mode, replay, lookahead="fresh")
    assert max_difference(gradients, expected) <= 1e-10


def test_exact_fresh_looped_replay_on_the_omniglot_network_equals_the_general_path():
    """Convolutions, max-pooling and the fused BatchNorm2d kernel: the looped exact replay with a fresh lookahead
    differentiates the inner gradient's graph a second time (a double backward); in float64 it must give the
    general path's gradient."""
    from warpkit.models.omniglot_net import OmniglotNet
    torch.manual_seed(0)
    model = OmniglotNet(ways=3, filters=4, warp="conv3").double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.05 * torch.randn_like(p))
    generator = torch.Generator().manual_seed(1)
    task = SupervisedTask(torch.rand(12, 1, 28, 28, generator=generator, dtype=torch.float64),
                          torch.arange(3).repeat(4), batch_size=6, generator=generator)
    buffer = TrajectoryBuffer()
    buffer.add(0, adapt(model, task, nn.functional.cross_entropy, 3, LR, final_loss=False))
    points = buffer.points()
    task.generator = torch.Generator().manual_seed(3)
    task_batches, meta_batches = replay_batches([task], points)
    expected, _ = warp_meta_gradient(model, nn.functional.cross_entropy, warp_parameters(model), points,
                                     task_batches, meta_batches, LR, "exact", batched=False)
    task.generator = torch.Generator().manual_seed(3)
    gradients, _ = replay_meta_gradient(model, nn.functional.cross_entropy, warp_parameters(model), points, [task],
                                        LR, "exact", "looped", "fresh")
    assert max_difference(gradients, expected) <= 1e-12
    assert max(float(g.abs().max()) for g in gradients.values()) > 1e-4


def test_split_exact_gradient_matches_central_finite_differences():
    """Eq. 11 = Eq. 12 − (∂²L_task/∂φ∂θ)ᵀ α v against central differences of the objective's value."""
    model, task = make_model(), make_task()
    point = trajectory_points(model, task, steps=2)[1]
    meta_batch = task.sample_meta_batches(1)[1]
    phi = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    gradient, _ = point_meta_gradient(model, mse, LR, "exact")(phi, point.params, point.next_params, point.buffers,
                                                               point.batch, meta_batch)
    eps = 1e-6
    for name, value in phi.items():
        for index in range(0, value.numel(), 3):
            values = []
            for sign in (1, -1):
                shifted = {**phi, name: value.clone()}
                shifted[name].view(-1)[index] += sign * eps
                values.append(float(one_step_objective(model, mse, shifted, point.params, point.buffers,
                                                       point.batch, meta_batch, LR, "exact")))
            numeric = (values[0] - values[1]) / (2 * eps)
            assert abs(float(gradient[name].view(-1)[index]) - numeric) <= 1e-7 * max(1.0, abs(numeric)), name


def test_buffered_lookahead_is_not_used_where_it_does_not_hold():
    model, task = make_model(), make_task()
    with_momentum = trajectory_points(model, task, momentum=0.9)  # θ_{k+1} = θ_k − α (μ v_k + g)
    learned = trajectory_points(model, task, lr={n: torch.tensor(LR, dtype=torch.float64)
                                                 for n in task_parameters(model)})  # per-parameter step sizes
    for points in (with_momentum, learned):
        assert all(p.next_params is None and p.batch is None for p in points)
        assert not buffered_lookahead_holds(points, "first_order")
        expected, _ = general(model, points, task, "first_order")  # a fresh task batch, the lookahead recomputed
        gradients, _ = fast(model, points, task, "first_order", "looped")
        assert max_difference(gradients, expected) <= 1e-10
    plain = trajectory_points(model, task)
    assert not buffered_lookahead_holds(plain, "approx")
    expected, _ = general(model, plain, task, "approx")
    assert max_difference(fast(model, plain, task, "approx", "looped")[0], expected) <= 1e-12


def test_the_buffered_lookahead_is_not_used_once_phi_has_moved():
    """After a φ-step the buffered θ_{k+1} is the lookahead of an older φ (a stale one would give another
    gradient): replay sees φ's version counters changed and recomputes the lookahead, as the general path does."""
    model, task = make_model(), make_task()
    points = trajectory_points(model, task)
    warp = warp_parameters(model)
    assert buffered_lookahead_holds(points, "first_order", warp)
    with torch.no_grad():
        for p in warp.values():
            p.add_(0.05)
    assert not buffered_lookahead_holds(points, "first_order", warp)
    stale, _ = general(model, points, task, "first_order", inner_batches=True)  # θ_{k+1}'s batch, new φ
    expected, _ = general(model, points, task, "first_order")  # fresh batches, lookahead recomputed with new φ
    gradients, _ = fast(model, points, task, "first_order", "looped")
    assert max_difference(gradients, expected) <= 1e-10 and max_difference(gradients, stale) > 1e-6


def test_points_keep_their_lookahead_on_disk_and_when_streamed(tmp_path):
    model, task = make_model(), make_task()
    memory = trajectory_points(model, task, steps=3)
    disk = TrajectoryBuffer(tmp_path / "disk")
    disk.add(0, adapt(model, make_task(), mse, 3, LR, final_loss=False))
    streamed = TrajectoryBuffer(tmp_path / "streamed")
    adapt(model, make_task(), mse, 3, LR, keep_trajectory=False, final_loss=False,
          on_state=lambda step, *state: streamed.add_point(TrajectoryPoint(0, step, *state)))
    for buffer in (disk, streamed):
        for kept, point in zip(memory, buffer.points()):
            assert point.warp_versions == kept.warp_versions is not None
            for name in kept.params:
                assert torch.equal(kept.next_params[name], point.next_params[name]), name
            assert torch.equal(kept.batch[0], point.batch[0])
    assert all(memory[k].next_params is memory[k + 1].params for k in range(2))  # in memory: no copies


def test_replay_mode_is_checked_resolved_by_device_and_cost_and_recorded():
    assert resolve_replay("auto", "cuda") == "batched" and resolve_replay("auto", "cpu") == "looped"
    assert resolve_replay("auto", "cpu", point_flops=1e5) == "batched"
    assert resolve_replay("looped", "cuda") == "looped"
    # one point per chunk: nothing to batch, on any device (the batched path only adds vmap's overhead)
    assert resolve_replay("auto", "cuda", points=1) == resolve_replay("auto", "cpu", 1e5, points=1) == "looped"
    assert resolve_replay("batched", "cpu", points=1) == "batched"  # asked for explicitly: kept
    model, task = make_model(), make_task()
    with pytest.raises(ValueError, match="unknown replay mode"):
        WarpTraining(replay="vmap")
    with pytest.raises(ValueError, match="unknown lookahead"):
        WarpTraining(lookahead="next")
    learner = MetaLearner(model, mse, inner=InnerLoop(lr=LR, steps=4), warp=WarpTraining(points_per_step=2))
    learner.meta_step([task])
    assert learner.replay_path == chosen_replay(model) == "batched"  # a tiny network: overhead-bound
    assert last_replay()["lookahead"] == "fresh"  # offline: φ moves after the first chunk
    online = MetaLearner(make_model(), mse, inner=InnerLoop(lr=LR, steps=3), warp=WarpTraining(), algorithm="online")
    online.meta_step([make_task()])
    assert last_replay()["lookahead"] == "buffered"  # online: φ fixed while the meta-batch is replayed
    one_point = MetaLearner(make_model(), mse, inner=InnerLoop(lr=LR, steps=3), warp=WarpTraining(points_per_step=1))
    one_point.meta_step([make_task()])
    assert one_point.replay_path == "looped" and last_replay()["point_gflop"] is None  # the paper's schedule
    meta_sgd = MetaLearner(make_model(), mse, inner=InnerLoop(steps=2), warp=WarpTraining(replay="looped"),
                           init=InitTraining(MetaSGD(steps=1)))
    meta_sgd.meta_step([make_task()])  # learned step sizes: fresh lookahead, no error
    assert meta_sgd.replay_path == "looped"
