"""Initialisation meta-learners and WarpGrad's algorithms against hand-derived values and finite differences."""

import math

import pytest
import torch
import torch.nn as nn

from warpkit.engine.adapt import Trajectory, adapt, forward, fresh_buffers
from warpkit.kit.checkpoint import CheckpointError, Checkpointer, load_checkpoint, save_checkpoint
from warpkit.engine.init_learners import FOMAML, MAML, Leap, MetaSGD, Reptile
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.objectives import warp_meta_gradient
from warpkit.engine.buffer import TrajectoryBuffer
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import LinearWarp, ResidualMLPWarp, task_parameters, warp_parameters


def mse(output, target):
    return ((output - target) ** 2).mean()


def full_batch_task(seed, n=12, dtype=torch.float64):
    """A regression task whose every batch is the whole training set (so gradients are deterministic)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=generator, dtype=dtype)
    y = torch.tanh(x @ torch.randn(2, 1, generator=generator, dtype=dtype)) + 0.3
    return SupervisedTask(x, y, x, y, batch_size=n, generator=torch.Generator().manual_seed(seed))


def small_model(warp=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(2, 3), nn.Tanh()]
    if warp:
        layers.append(ResidualMLPWarp(3, hidden=4))
    layers.append(nn.Linear(3, 1))
    model = nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.3 * torch.randn_like(p))
    return model


class _Learner:
    """The attributes init learners read from a MetaLearner."""

    def __init__(self, model, lr=0.1):
        self.model, self.loss_fn, self.lr = model, mse, lr

    def current_inner_lr(self):
        return self.lr


# ------------------------------------------------------------------------------------------------------------
# init learners
# ------------------------------------------------------------------------------------------------------------
def hand_trajectory():
    """A two-step trajectory in R² with hand-picked states, losses and gradients."""
    theta = [torch.tensor([0.0, 0.0]), torch.tensor([3.0, 4.0]), torch.tensor([3.0, 5.0])]
    return Trajectory(
        params=[{"w": theta[0]}, {"w": theta[1]}], buffers=[{}, {}],
        gradients=[{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 2.0])}],
        losses=[10.0, 10.0 - 12.0], final_params={"w": theta[2]}, final_loss=10.0 - 12.0 - 0.0,
    )


def test_leap_gradient_matches_hand_derivation():
    trajectory = hand_trajectory()
    init = {"w": torch.zeros(2)}
    # step 0: Δθ = (3, 4), Δf = −12, ‖Δz‖ = sqrt(9 + 16 + 144) = 13; term = −((3,4) − 12·(1,0)) / 13 = (9, −4)/13
    # step 1: Δθ = (0, 1), Δf = 0,   ‖Δz‖ = 1;                       term = −((0,1) + 0) = (0, −1)
    expected = torch.tensor([9.0 / 13.0, -4.0 / 13.0 - 1.0])
    assert torch.allclose(Leap().task_gradient(None, None, init, trajectory)["w"], expected)
    # simplified: −Δθ/‖Δθ‖ summed: −(3,4)/5 − (0,1)
    simplified = Leap(simplified=True).task_gradient(None, None, init, trajectory)["w"]
    assert torch.allclose(simplified, torch.tensor([-0.6, -0.8 - 1.0]))


def test_leap_stabiliser_treats_a_loss_increase_like_a_decrease():
    trajectory = hand_trajectory()
    trajectory.losses = [10.0, 22.0]  # step 0 goes *uphill*: Δf = +12
    trajectory.final_loss = 22.0
    init = {"w": torch.zeros(2)}
    # with the stabiliser Δf = +12 becomes −12: the same as in test_leap_gradient_matches_hand_derivation
    stabilised = Leap().task_gradient(None, None, init, trajectory)["w"]
    assert torch.allclose(stabilised, torch.tensor([9.0 / 13.0, -4.0 / 13.0 - 1.0]))
    # without it: term = −((3,4) + 12·(1,0)) / 13 = (−15, −4)/13
    raw = Leap(stabilizer=False).task_gradient(None, None, init, trajectory)["w"]
    assert torch.allclose(raw, torch.tensor([-15.0 / 13.0, -4.0 / 13.0 - 1.0]))


def test_reptile_gradient_is_init_minus_final_and_differs_from_leap():
    trajectory = hand_trajectory()
    init = {"w": torch.zeros(2)}
    reptile = Reptile().task_gradient(None, None, init, trajectory)["w"]
    assert torch.equal(reptile, torch.tensor([-3.0, -5.0]))
    leap = Leap().task_gradient(None, None, init, trajectory)["w"]
    cosine = torch.dot(leap, reptile) / (leap.norm() * reptile.norm())
    assert cosine < 0.99  # a different direction, not just a different length


def test_leap_on_a_real_trajectory_points_back_along_the_path():
    model = small_model(warp=False)
    task = full_batch_task(0)
    # a curved, decelerating 20-step path: Leap weights each step by 1/‖Δz_k‖, Reptile by nothing
    trajectory = adapt(model, task, mse, 20, 0.1, keep_gradients=True)
    init = {n: p.detach() for n, p in task_parameters(model).items()}
    leap = Leap().task_gradient(None, task, init, trajectory)
    reptile = Reptile().task_gradient(None, task, init, trajectory)
    flat = lambda g: torch.cat([t.flatten() for t in g.values()])
    # both are descent directions for the distance travelled: positively aligned, but not parallel
    cosine = float(flat(leap) @ flat(reptile) / (flat(leap).norm() * flat(reptile).norm()))
    assert 0.0 < cosine < 0.95


def maml_meta_loss(model, theta0, task, steps, lr):
    """L_meta(θ_K(θ_0)) with a plain-autograd inner loop written out here (the reference)."""
    theta = {n: t.detach().requires_grad_(True) for n, t in theta0.items()}
    x, y = task.evaluation_batch()
    for _ in range(steps):
        loss = mse(forward(model, theta, fresh_buffers(model), x), y)
        grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
        theta = {n: t - lr * g for (n, t), g in zip(theta.items(), grads)}
    return mse(forward(model, theta, fresh_buffers(model), x), y)


def maml_finite_differences(model, init, task, names, steps=3, lr=0.2, eps=1e-6):
    """``(name, entry, ∂L_meta/∂θ_0[name][entry])`` by central differences of :func:`maml_meta_loss`."""
    for name in names:
        value = init[name]
        for i in range(value.numel()):
            e = torch.zeros(value.numel(), dtype=value.dtype)
            e[i] = eps
            plus = {**init, name: value + e.view_as(value)}
            minus = {**init, name: value - e.view_as(value)}
            difference = maml_meta_loss(model, plus, task, steps, lr) - maml_meta_loss(model, minus, task, steps, lr)
            yield name, i, (difference / (2 * eps)).item()


def test_maml_second_order_gradient_matches_finite_differences():
    model = small_model(warp=False)
    task = full_batch_task(3)
    init = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    gradient = MAML(steps=3).task_gradient(_Learner(model, 0.2), task, init, None)
    for name, i, numeric in maml_finite_differences(model, init, task, ["0.weight", "2.bias"]):
        assert float(gradient[name].flatten()[i]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_warp_maml_theta0_step_is_the_second_order_gradient_through_the_warped_loop():
    """Warp-MAML: θ_0 moves by second-order MAML through the *warped* inner loop (φ frozen there), φ by the warp
    objective. The θ_0 step must equal −β times central finite differences of L_meta(θ_K(θ_0); φ)."""
    model = small_model(warp=True)
    task = full_batch_task(5)
    init = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    phi_before = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    beta = 0.5
    learner = MetaLearner(model, mse, inner=InnerLoop(lr=0.2, steps=3), warp=WarpTraining(lr=0.1),
                          init=InitTraining(MAML(steps=3), lr=beta, optimizer="sgd"))
    reference = small_model(warp=True)  # the same weights: φ as before the meta-step
    learner.meta_step([task])
    for name, i, numeric in maml_finite_differences(reference, init, task, ["0.weight", "3.bias"]):
        step = float(task_parameters(model)[name].detach().flatten()[i] - init[name].flatten()[i])
        assert step == pytest.approx(-beta * numeric, rel=1e-5, abs=1e-10)
    # and the warp moved (the warp objective), which plain MAML would not do
    assert any(not torch.equal(p, phi_before[n]) for n, p in warp_parameters(model).items())


def test_maml_and_fomaml_take_the_meta_loss_on_the_split_asked_for():
    model = small_model(warp=False)
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    held_x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    task = SupervisedTask(x, torch.tanh(x[:, :1]), held_x, torch.tanh(held_x[:, 1:]), batch_size=8)
    init = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    trajectory = adapt(model, task, mse, 2, 0.1)
    for learner_class in (MAML, FOMAML):
        kwargs = {"steps": 2} if learner_class is MAML else {}
        train = learner_class(meta_split="train", **kwargs).task_gradient(_Learner(model), task, init, trajectory)
        held = learner_class(meta_split="held-out", **kwargs).task_gradient(_Learner(model), task, init, trajectory)
        assert not torch.allclose(train["2.bias"], held["2.bias"])
    # FOMAML on the held-out split: the meta-loss gradient at θ_K on the held-out batch
    theta = {n: t.detach().requires_grad_(True) for n, t in trajectory.final_params.items()}
    loss = mse(forward(model, theta, dict(trajectory.final_buffers), held_x), torch.tanh(held_x[:, 1:]))
    expected = torch.autograd.grad(loss, [theta["2.bias"]])[0]
    got = FOMAML(meta_split="held-out").task_gradient(_Learner(model), task, init, trajectory)["2.bias"]
    assert torch.allclose(got, expected)
    with pytest.raises(ValueError, match="meta_split"):
        MAML(meta_split="test")


def test_meta_step_records_how_far_phi_and_theta0_moved():
    tasks = [full_batch_task(s) for s in range(2)]
    model = small_model()
    theta = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    phi = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    stats = MetaLearner(model, mse, inner=InnerLoop(steps=3), warp=WarpTraining(points_per_step=1),
                        init=InitTraining(Reptile())).meta_step(tasks)
    moved = lambda before, after: math.sqrt(sum(float((after[n].detach() - b).pow(2).sum()) for n, b in before.items()))
    assert stats.warp_change == pytest.approx(moved(phi, warp_parameters(model))) and stats.warp_change > 0
    assert stats.init_change == pytest.approx(moved(theta, task_parameters(model))) and stats.init_change > 0
    plain = MetaLearner(small_model(warp=False), mse, inner=InnerLoop(steps=3), warp=None)
    stats = plain.meta_step(tasks)
    assert math.isnan(stats.warp_change) and math.isnan(stats.init_change)


def test_fomaml_is_the_meta_gradient_at_the_adapted_point():
    model = small_model(warp=False)
    task = full_batch_task(4)
    init = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    trajectory = adapt(model, task, mse, 3, 0.2)
    gradient = FOMAML().task_gradient(_Learner(model, 0.2), task, init, trajectory)
    theta = {n: t.clone().requires_grad_(True) for n, t in trajectory.final_params.items()}
    x, y = task.evaluation_batch()
    expected = torch.autograd.grad(mse(forward(model, theta, fresh_buffers(model), x), y), list(theta.values()))
    for (name, g), e in zip(gradient.items(), expected):
        assert torch.allclose(g, e), name
    # and it differs from second-order MAML on this non-linear model
    maml = MAML(steps=3).task_gradient(_Learner(model, 0.2), task, init, None)
    assert not torch.allclose(maml["0.weight"], gradient["0.weight"], atol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# algorithms
# ------------------------------------------------------------------------------------------------------------
def test_offline_step_equals_sgd_on_the_mean_point_gradient_with_one_chunk():
    model = small_model()
    tasks = [full_batch_task(s) for s in range(3)]
    warp = warp_parameters(model)
    before = {n: p.detach().clone() for n, p in warp.items()}
    # reference: the same points, one φ-gradient over all of them, taken by hand
    points_buffer = TrajectoryBuffer()
    for i, task in enumerate(tasks):
        points_buffer.add(i, adapt(model, task, mse, 4, 0.1))
    points = points_buffer.points()
    batches = [tasks[p.task_index].sample_meta_batches(p.step) for p in points]
    reference, _ = warp_meta_gradient(model, mse, warp, points, [b[0] for b in batches], [b[1] for b in batches],
                                      0.1, "exact", batched=False)
    learner = MetaLearner(model, mse, inner=InnerLoop(lr=0.1, steps=4),
                          warp=WarpTraining(lr=0.5, points_per_step=len(points)))
    stats = learner.meta_step(tasks)
    assert stats.warp_steps == 1
    for name, p in warp.items():
        assert torch.allclose(p.detach(), before[name] - 0.5 * reference[name], atol=1e-10), name


def test_online_step_accumulates_the_same_gradient():
    model_online, model_offline = small_model(), small_model()
    tasks = [full_batch_task(s) for s in range(3)]
    online = MetaLearner(model_online, mse, inner=InnerLoop(lr=0.1, steps=4),
                         warp=WarpTraining(lr=0.5, points_per_step=3), algorithm="online")
    offline = MetaLearner(model_offline, mse, inner=InnerLoop(lr=0.1, steps=4),
                          warp=WarpTraining(lr=0.5, points_per_step=12), algorithm="offline")
    assert online.meta_step(tasks).warp_steps == 1
    offline.meta_step(tasks)
    for (name, a), b in zip(warp_parameters(model_online).items(), warp_parameters(model_offline).values()):
        assert torch.allclose(a, b, atol=1e-10), name


def test_replay_chunks_and_epochs_set_the_number_of_warp_steps():
    model = small_model()
    tasks = [full_batch_task(s) for s in range(2)]
    learner = MetaLearner(model, mse, inner=InnerLoop(lr=0.1, steps=5), warp=WarpTraining(points_per_step=3, passes=2))
    assert learner.meta_step(tasks).warp_steps == 2 * math.ceil(10 / 3)
    assert len(learner.buffer) == 0


def test_init_learner_moves_theta0_and_warp_objective_moves_phi_only_when_asked():
    tasks = [full_batch_task(s) for s in range(2)]
    model = small_model()
    theta_before = {n: p.detach().clone() for n, p in task_parameters(model).items()}
    phi_before = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    MetaLearner(model, mse, inner=InnerLoop(steps=3), warp=None, init=InitTraining(Reptile())).meta_step(tasks)
    assert any(not torch.equal(p, theta_before[n]) for n, p in task_parameters(model).items())
    assert all(torch.equal(p, phi_before[n]) for n, p in warp_parameters(model).items())
    model = small_model()
    MetaLearner(model, mse, inner=InnerLoop(steps=3), warp=WarpTraining("first_order")).meta_step(tasks)
    assert all(torch.equal(p, theta_before[n]) for n, p in task_parameters(model).items())
    assert any(not torch.equal(p, phi_before[n]) for n, p in warp_parameters(model).items())


def test_tnet_style_maml_trains_linear_warps_and_meta_sgd_trains_step_sizes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), LinearWarp(3), nn.Linear(3, 1)).double()
    phi_before = {n: p.detach().clone() for n, p in warp_parameters(model).items()}
    tasks = [full_batch_task(s) for s in range(2)]
    MetaLearner(model, mse, inner=InnerLoop(steps=3), warp=None,
                init=InitTraining(MAML(3, learn_warps=True))).meta_step(tasks)
    assert any(not torch.equal(p, phi_before[n]) for n, p in warp_parameters(model).items())
    model = small_model(warp=False)
    meta_sgd = MetaSGD(steps=3, initial_lr=0.1)
    learner = MetaLearner(model, mse, inner=InnerLoop(steps=3), warp=None, init=InitTraining(meta_sgd, lr=0.05))
    learner.meta_step(tasks)
    step_sizes = torch.cat([p.detach().flatten() for p in meta_sgd.meta_parameters().values()])
    assert step_sizes.std() > 0 and not torch.allclose(step_sizes, torch.full_like(step_sizes, 0.1))
    assert isinstance(learner.current_inner_lr(), dict)


def test_meta_training_a_warp_speeds_up_adaptation_on_held_out_tasks():
    """Meta-learning only φ (θ_0 fixed at its random init) must beat plain SGD from the same θ_0."""
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(2, 16), nn.Tanh(), LinearWarp(16), nn.Linear(16, 1)).double()
    model = make()
    tasks = lambda seeds: [full_batch_task(s) for s in seeds]
    held_out = tasks(range(100, 110))
    baseline = sum(adapt(model, t, mse, 5, 0.05).final_loss for t in held_out) / 10
    learner = MetaLearner(model, mse, inner=InnerLoop(lr=0.05, steps=5),
                          warp=WarpTraining(lr=0.05, optimizer="adam", points_per_step=20))
    for iteration in range(30):
        learner.meta_step(tasks(range(5 * iteration, 5 * iteration + 5)))
    warped = sum(adapt(model, t, mse, 5, 0.05).final_loss for t in held_out) / 10
    assert warped < 0.7 * baseline


def test_state_dict_round_trip_resumes_identically(tmp_path):
    tasks = [full_batch_task(s) for s in range(2)]

    def make():
        model = small_model()
        return MetaLearner(model, mse, inner=InnerLoop(steps=3),
                           warp=WarpTraining(optimizer="adam", points_per_step=2), init=InitTraining(Leap()))

    uninterrupted = make()
    uninterrupted.meta_step(tasks)
    uninterrupted.meta_step(tasks)
    first = make()
    first.meta_step(tasks)
    save_checkpoint(tmp_path / "state.pt", first.state_dict())
    resumed = make()
    resumed.load_state_dict(load_checkpoint(tmp_path / "state.pt"))
    resumed.meta_step(tasks)
    assert resumed.iteration == 2
    for (name, a), b in zip(uninterrupted.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b), name


def test_corrupt_checkpoint_is_reported_and_never_overwritten(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    checkpointer = Checkpointer(path, every=1)
    with pytest.raises(CheckpointError, match="left untouched"):
        checkpointer.restore()
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        checkpointer.save({"iteration": 1})
    assert path.read_bytes() == b"not a checkpoint"
    assert Checkpointer(tmp_path / "absent.pt").restore() is None


def test_bad_configuration_is_refused_clearly():
    with pytest.raises(ValueError, match="no warp layers"):
        MetaLearner(small_model(warp=False), mse, warp=WarpTraining())
    with pytest.raises(ValueError, match="algorithm"):
        MetaLearner(small_model(), mse, algorithm="sideways")
    with pytest.raises(ValueError, match="meta-batch"):
        MetaLearner(small_model(), mse).meta_step([])


def test_on_disk_buffer_streams_states_and_gives_the_same_meta_step(tmp_path):
    tasks = [full_batch_task(s) for s in range(2)]
    in_memory, on_disk = small_model(), small_model()
    MetaLearner(in_memory, mse, inner=InnerLoop(steps=4), warp=WarpTraining(points_per_step=3)).meta_step(tasks)
    streamed = MetaLearner(on_disk, mse, inner=InnerLoop(steps=4),
                           warp=WarpTraining(points_per_step=3, buffer_directory=str(tmp_path / "buf")))
    streamed.meta_step(tasks)
    for (name, a), b in zip(warp_parameters(in_memory).items(), warp_parameters(on_disk).values()):
        assert torch.allclose(a, b, atol=1e-12), name
    assert list((tmp_path / "buf").iterdir()) == []  # replayed points are deleted after the meta-step


def test_maml_without_warp_objective_skips_the_long_adaptation():
    calls = []

    class CountingTask:
        def __init__(self, task):
            self.task = task

        def sample_batch(self, step):
            calls.append(step)
            return self.task.sample_batch(step)

        def sample_meta_batches(self, step):
            return self.task.sample_meta_batches(step)

        def evaluation_batch(self):
            return self.task.evaluation_batch()

    learner = MetaLearner(small_model(warp=False), mse, inner=InnerLoop(steps=100), warp=None,
                          init=InitTraining(MAML(2)))
    learner.meta_step([CountingTask(full_batch_task(0))])
    assert max(calls) < 100  # only MAML's own 2-step loop drew batches
