"""The continual experiment's helpers (warpkit.experiments.continual, warpkit.models.mlp) against independent references:
a hand-written SGD loop with torch.optim for the forgetting matrix, per-sub-task losses for the engine's
continual objective, an uninterrupted run for checkpoint/resume."""

import copy
import dataclasses

import pytest
import torch
import torch.nn as nn

from warpkit.engine.adapt import fresh_buffers
from warpkit.engine.buffer import TrajectoryPoint
from warpkit.kit.checkpoint import Checkpointer
from warpkit.experiments.continual import (
    ContinualConfig, build_learners, evaluate_learner, forgetting_matrix, meta_train, predictions, run_sequence,
)
from warpkit.data.sine import ContinualSineTask, SineFamily, weighted_mse
from warpkit.models.mlp import plain_mlp, warp_mlp
from warpkit.engine.objectives import one_step_objective
from warpkit.engine.warp import ResidualMLPWarp, task_parameters, warp_parameters

LR = 0.02
TINY = ContinualConfig(steps_per_subtask=3, hidden=8, warp_hidden=8, meta_batch_size=2, meta_iterations=3,
                       replay_chunk_size=6, num_held_out=2, inner_lr=LR)


def make_task(steps=3, seed=1):
    return ContinualSineTask([1.0, 2.0, 0.5, 3.0, 1.5], [0.0, 1.0, 2.0, 0.5, 3.0], steps_per_subtask=steps,
                             batch_size=5, meta_points_per_subtask=4, eval_points_per_subtask=11, seed=seed)


def perturb_warps(model, scale=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model


def test_parameters_split_into_task_layers_and_warps():
    model = warp_mlp(hidden=8, num_hidden_layers=2, warp_hidden=5, seed=0)
    warps = [m for m in model if isinstance(m, ResidualMLPWarp)]
    assert len(warps) == 2  # one after each hidden layer, none after the head
    theta, phi = task_parameters(model), warp_parameters(model)
    assert sum(p.numel() for p in theta.values()) == (1 * 8 + 8) + (8 * 8 + 8) + (8 + 1)
    assert sum(p.numel() for p in phi.values()) == 2 * ((8 * 5 + 5) + (5 * 8 + 8))
    twin = plain_mlp(hidden=8, num_hidden_layers=2, seed=0)
    assert [p.shape for p in theta.values()] == [p.shape for p in twin.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(theta.values(), twin.parameters()))


def test_warp_mlp_before_meta_training_learns_exactly_like_its_twin():
    """Identity warps: same function and same SGD steps, hence the same forgetting matrix."""
    task = make_task()
    warped, twin = warp_mlp(hidden=8, warp_hidden=5, seed=3), plain_mlp(hidden=8, seed=3)
    x = torch.linspace(-5, 5, 17).unsqueeze(-1)
    assert torch.allclose(warped(x), twin(x), atol=1e-6)
    run_warped, run_twin = run_sequence(warped, task.replica(), LR), run_sequence(twin, task.replica(), LR)
    assert torch.allclose(predictions(warped, run_warped, x), predictions(twin, run_twin, x), atol=1e-5)
    assert torch.allclose(forgetting_matrix(warped, task, run_warped), forgetting_matrix(twin, task, run_twin),
                          rtol=1e-4, atol=1e-6)
    # and a warp moved away from the identity does change the learning
    perturb_warps(warped)
    other = run_sequence(warped, task.replica(), LR)
    assert not torch.allclose(predictions(warped, other, x), predictions(twin, run_twin, x), atol=1e-3)


def test_forgetting_matrix_matches_a_hand_written_sgd_loop():
    """Reference: torch.optim.SGD on a copy of the network, plain (unweighted) MSE, segment grids by hand."""
    task = make_task(steps=4)
    model = perturb_warps(warp_mlp(hidden=8, warp_hidden=5, seed=2))
    matrix = forgetting_matrix(model, task, run_sequence(model, task.replica(), LR))

    reference_model = copy.deepcopy(model)
    theta = list(task_parameters(reference_model).values())
    for p in warp_parameters(reference_model).values():
        p.requires_grad_(False)
    optimizer = torch.optim.SGD(theta, lr=LR)
    replica = task.replica()
    reference = torch.empty(5, 5)
    for step in range(task.num_steps):
        x, (y, _) = replica.sample_batch(step)
        optimizer.zero_grad()
        ((reference_model(x) - y) ** 2).mean().backward()
        optimizer.step()
        if (step + 1) % task.steps_per_subtask == 0:
            j = step // task.steps_per_subtask
            with torch.no_grad():
                for i in range(5):
                    low, high = task.segments[i]
                    grid = low + (high - low) * (torch.arange(11.0) + 0.5) / 11
                    truth = task.amplitudes[i] * torch.sin(grid + task.phases[i])
                    reference[i, j] = ((reference_model(grid.unsqueeze(-1)).squeeze(-1) - truth) ** 2).mean()
    assert torch.allclose(matrix, reference, rtol=1e-4, atol=1e-6)


def test_final_loss_is_the_evaluation_batch_loss_after_the_sequence():
    model = plain_mlp(hidden=8, seed=0)
    tasks = [make_task(seed=s) for s in (1, 2, 3)]
    evaluation = evaluate_learner(model, tasks, LR, keep_runs=True)
    assert evaluation.matrices.shape == (3, 5, 5)
    for task, run, final in zip(tasks, evaluation.runs, evaluation.final_losses):
        with torch.no_grad():
            x, target = task.evaluation_batch()
            from warpkit.engine.adapt import forward
            expected = weighted_mse(forward(model, run.snapshots[-1], {}, x), target)
        assert torch.allclose(final, expected, rtol=1e-5)
    assert evaluation.final_loss == pytest.approx(float(evaluation.final_losses.mean()))
    # the batched (vmapped) evaluation equals running the sequences one by one
    one_by_one = torch.stack([forgetting_matrix(model, t, run_sequence(model, t.replica(), LR)) for t in tasks])
    assert torch.allclose(evaluation.matrices, one_by_one, rtol=1e-4, atol=1e-6)
    # forgetting = mean over earlier sub-tasks of (loss at the end − loss right after learning it)
    m = evaluation.matrices[0]
    assert float(evaluation.forgetting[0]) == pytest.approx(float(sum(m[i, 4] - m[i, i] for i in range(4)) / 4), rel=1e-5)


@pytest.mark.parametrize("mode", ["exact", "first_order", "approx"])
def test_engine_objective_on_a_continual_point_is_the_mean_over_seen_subtasks(mode):
    """The engine's one-step objective with the task's (task batch, meta batch) equals, computed by hand:
    θ' = θ − α ∇ L_current(θ) (no step for approx), then the mean over sub-tasks 1..t of each one's MSE at θ'."""
    torch.manual_seed(0)
    model = perturb_warps(warp_mlp(hidden=8, warp_hidden=5, seed=4))
    task = make_task(steps=3)
    step = 7  # third sub-task: the meta loss covers sub-tasks 1, 2, 3
    task_batch, meta_batch = task.sample_meta_batches(step)
    params = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in task_parameters(model).items()}
    value = one_step_objective(model, weighted_mse, warp_parameters(model), params, fresh_buffers(model),
                               task_batch, meta_batch, LR, mode)

    reference_model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in task_parameters(reference_model).items():
            p.copy_(params[name])
    if mode != "approx":
        x, (y, _) = task_batch
        theta = list(task_parameters(reference_model).values())
        gradients = torch.autograd.grad(((reference_model(x) - y) ** 2).mean(), theta)
        with torch.no_grad():
            for p, g in zip(theta, gradients):
                p.sub_(LR * g)
    x, (y, _) = meta_batch
    with torch.no_grad():
        per_subtask = []
        for s in range(3):
            low, high = task.segments[s]
            mask = ((x >= low) & (x < high)).squeeze(-1)
            per_subtask.append(((reference_model(x[mask]) - y[mask]) ** 2).mean())
    assert float(value.detach()) == pytest.approx(float(torch.stack(per_subtask).mean()), rel=1e-4)


def _parameters(learners):
    return {name: [p.detach().clone() for p in learner.model.parameters()] for name, learner in learners.items()}


def test_meta_training_changes_what_it_should_and_the_baselines_share_the_start():
    learners = build_learners(TINY, seed=0)
    start = _parameters(learners)
    assert all(torch.equal(a, b) for a, b in zip(start["sgd"], start["sgd_meta_init"]))
    trained = {k: v for k, v in learners.items() if k != "sgd"}
    history = meta_train(trained, TINY.sampler(seed=0), 2, TINY.meta_batch_size, show_progress=False).history
    assert [len(h) for h in history.values()] == [2, 2]
    assert history["warp"][0]["warp_steps"] == -(-2 * TINY.inner_steps // TINY.replay_chunk_size)
    after = _parameters(learners)
    theta_warp = task_parameters(learners["warp"].model)
    phi_warp = warp_parameters(learners["warp"].model)
    assert len(phi_warp) > 0 and len(theta_warp) > 0
    # θ_0 moved for both meta-learners, φ moved for Warp-MLP
    assert any(not torch.equal(a, b) for a, b in zip(start["sgd_meta_init"], after["sgd_meta_init"]))
    assert any(not torch.equal(a, b) for a, b in zip(start["warp"], after["warp"]))
    initial_phi = warp_parameters(build_learners(TINY, seed=0)["warp"].model)
    assert any(not torch.equal(p, initial_phi[n]) for n, p in phi_warp.items())


def test_meta_training_resumes_from_a_checkpoint_exactly(tmp_path):
    path = tmp_path / "continual.pt"

    def meta_learners(config=TINY):
        learners = build_learners(config, seed=0)
        learners.pop("sgd")
        return learners

    uninterrupted = meta_learners()
    meta_train(uninterrupted, TINY.sampler(seed=0), 2, TINY.meta_batch_size, show_progress=False)
    meta_train(meta_learners(), TINY.sampler(seed=0), 1, TINY.meta_batch_size, Checkpointer(path, every=1), TINY,
               show_progress=False)  # "interrupted" after one iteration
    resumed = meta_learners()
    history = meta_train(resumed, TINY.sampler(seed=0), 2, TINY.meta_batch_size, Checkpointer(path, every=1),
                         TINY, show_progress=False).history
    assert [h["iteration"] for h in history["warp"]] == [1, 2]
    for name in uninterrupted:
        for a, b in zip(uninterrupted[name].model.parameters(), resumed[name].model.parameters()):
            assert torch.allclose(a, b, atol=1e-6), name

    other = ContinualConfig(**{**TINY.as_dict(), "warp_lr": 0.5})
    with pytest.raises(ValueError, match="other settings.*config.warp_lr"):
        meta_train(meta_learners(other), other.sampler(seed=0), 3, 2, Checkpointer(path, every=1), other,
                   show_progress=False)


def test_model_selection_keeps_the_best_validation_point_and_resumes(tmp_path):
    validation = [make_task(seed=s) for s in (5, 6, 7)]
    learners = build_learners(TINY, seed=0)
    learners.pop("sgd")
    path = tmp_path / "selection.pt"
    training = meta_train(learners, TINY.sampler(seed=0), 3, TINY.meta_batch_size, Checkpointer(path, every=1),
                          TINY, show_progress=False, validation_tasks=validation, validate_every=2)
    for name, learner in learners.items():
        iterations = [i for i, _ in training.validation[name]]
        assert iterations == [0, 2, 3]  # before training, every 2 iterations, and the last one
        best_iteration, best_loss = min(training.validation[name], key=lambda point: point[1])
        assert training.best_iteration[name] == best_iteration
        # the learner now holds the kept parameters: re-scoring it gives the best validation loss
        assert evaluate_learner(learner.model, validation, TINY.inner_lr).final_loss == pytest.approx(best_loss, rel=1e-5)
    # a finished checkpoint restores the same selection without training again
    again = build_learners(TINY, seed=0)
    again.pop("sgd")
    restored = meta_train(again, TINY.sampler(seed=0), 3, TINY.meta_batch_size, Checkpointer(path, every=1), TINY,
                          show_progress=False, validation_tasks=validation, validate_every=2)
    assert restored.best_iteration == training.best_iteration and restored.validation == training.validation
    for name in learners:
        for a, b in zip(learners[name].model.parameters(), again[name].model.parameters()):
            assert torch.equal(a, b)


def test_a_diverging_learner_is_rolled_back_and_stopped():
    """SGD at a step size far too large turns θ_K into inf/nan, Reptile pulls θ₀ there: the guard must notice,
    restore the state before that meta-iteration and train that learner no further."""
    wild = ContinualConfig(**{**TINY.as_dict(), "inner_lr": 50.0})
    learners = build_learners(wild, seed=0)
    learners.pop("sgd")
    start = _parameters(learners)
    training = meta_train(learners, wild.sampler(seed=0), 3, wild.meta_batch_size, config=wild, show_progress=False)
    for name, learner in learners.items():
        assert training.diverged[name] == 1, training.diverged
        assert len(training.history[name]) == 1  # no meta-step after the one that diverged
        assert all(torch.equal(a, b) for a, b in zip(start[name], learner.model.parameters()))


def test_leap_runs_with_and_without_warps():
    """Leap reads every state of the trajectory, also for the unwarped learner (an early engine version kept the
    states only with a warp objective); with Leap's recommended meta-optimiser θ₀ moves and stays finite."""
    leap = ContinualConfig(**{**TINY.as_dict(), "init_learner": "leap", "init_optimizer": "adam", "init_lr": 0.01})
    learners = build_learners(leap, seed=0)
    learners.pop("sgd")
    start = _parameters(learners)
    training = meta_train(learners, leap.sampler(seed=0), 1, leap.meta_batch_size, config=leap, show_progress=False)
    assert training.diverged == {"warp": None, "sgd_meta_init": None}
    for name, learner in learners.items():
        assert any(not torch.equal(a, b) for a, b in zip(start[name], learner.model.parameters())), name


def test_unknown_init_learner_is_refused():
    with pytest.raises(ValueError, match="choose 'leap' or 'reptile'"):
        build_learners(ContinualConfig(init_learner="maml", hidden=4, warp_hidden=4))


def test_sequence_explorer_redraws_the_chosen_sequence():
    pytest.importorskip("ipywidgets")
    from warpkit.viz.continual import SequenceExplorer

    tasks = [make_task(seed=1), ContinualSineTask([3.0] * 5, [1.0] * 5, 3, seed=2)]
    asked = []

    def fits_for(index):
        asked.append(index)
        return {"sgd": torch.stack([tasks[index].target(x_grid).squeeze(-1)] * 5)}

    x_grid = torch.linspace(-5, 5, 50).unsqueeze(-1)
    explorer = SequenceExplorer(tasks, x_grid, fits_for)
    first = explorer.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and explorer.artists["sequence"] == 0
    explorer.controls["sequence"].value = 1
    assert explorer.artists["sequence"] == 1 and asked == [0, 1]
    assert explorer.image.value != first
    explorer.controls["sequence"].value = 0  # back: the kept fits, redrawn
    assert explorer.artists["sequence"] == 0 and asked == [0, 1] and len(explorer.redraw_ms) == 3


def test_the_task_family_is_declared_once():
    """ContinualConfig extends the sampler's SineFamily instead of re-declaring its fields (an earlier copy had
    another default for steps_per_subtask), and its sampler draws tasks of exactly that family."""
    family_fields = {f.name for f in dataclasses.fields(SineFamily)}
    assert family_fields and not family_fields & set(ContinualConfig.__annotations__)
    config = ContinualConfig(num_subtasks=3, steps_per_subtask=4)
    assert {name: getattr(config, name) for name in family_fields} == dataclasses.asdict(
        SineFamily(num_subtasks=3, steps_per_subtask=4))
    task = config.sampler(seed=0).sample()
    assert (task.num_subtasks, task.steps_per_subtask, task.num_steps) == (3, 4, config.inner_steps)


def test_lesson_05_resume_refuses_a_checkpoint_of_another_seed(tmp_path):
    """Lesson 05 passes ``config.sampler(seed=SEED)`` and its checkpointer to meta_train: a checkpoint made with
    SEED 0 must not be resumed by a run with SEED 1 (which would report seed 0's numbers as seed 1's)."""
    path = tmp_path / "lesson05.pt"

    def lesson_run(seed, iterations):
        learners = build_learners(TINY, seed=seed)
        meta_learners = {name: learners[name] for name in ("warp", "sgd_meta_init")}
        return meta_train(meta_learners, TINY.sampler(seed=seed), iterations, TINY.meta_batch_size,
                          Checkpointer(path, every=1), TINY, show_progress=False)

    lesson_run(0, 1)
    saved = path.read_bytes()
    with pytest.raises(ValueError, match=r"other settings: seed \(saved 0, now 1\)"):
        lesson_run(1, 2)
    assert path.read_bytes() == saved  # refused and left untouched
    assert [h["iteration"] for h in lesson_run(0, 2).history["warp"]] == [1, 2]  # the same seed resumes
