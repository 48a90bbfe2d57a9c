"""The continual sine sampler (warpkit.data.sine) against independent references: the weighted meta loss equals
the mean over seen sub-tasks of each sub-task's own MSE, batches come from the right segment, draws differ,
replicas repeat, and the batches stack for vmapped replay."""

import math

import pytest
import torch

from warpkit.engine.tasks import stack_batches
from warpkit.data.sine import ContinualSineSampler, ContinualSineTask, SineFamily, segment_bounds, weighted_mse
from warpkit.engine.tasks import Task

STEPS = 4


def make_task(**overrides):
    kwargs = dict(amplitudes=[1.0, 2.0, 0.5, 3.0, 1.5], phases=[0.0, 1.0, 2.0, 0.5, 3.0], steps_per_subtask=STEPS,
                  batch_size=6, meta_points_per_subtask=7, eval_points_per_subtask=9, seed=3)
    kwargs.update(overrides)
    return ContinualSineTask(**kwargs)


def some_predictor(x):
    """Any fixed function with a different error on each segment (the reference needs no model)."""
    return 0.3 * x + torch.cos(2 * x)


def test_segments_are_consecutive_and_cover_the_interval():
    bounds = segment_bounds((-5.0, 5.0), 5)
    assert bounds[0][0] == -5.0 and bounds[-1][1] == 5.0
    assert all(math.isclose(bounds[i][1], bounds[i + 1][0]) for i in range(4))
    assert all(math.isclose(high - low, 2.0) for low, high in bounds)


def test_the_task_follows_the_protocol_and_maps_steps_to_subtasks():
    task = make_task()
    assert isinstance(task, Task)
    assert task.num_steps == 5 * STEPS
    assert [task.subtask_of_step(k) for k in range(task.num_steps)] == [k // STEPS for k in range(5 * STEPS)]
    assert task.subtask_of_step(task.num_steps) == 4  # the extra batch adapt() draws after the last step
    with pytest.raises(ValueError, match="step must be >= 0"):
        task.subtask_of_step(-1)


def test_task_batches_come_from_the_current_segment_with_the_subtask_wave():
    task = make_task()
    for step in range(task.num_steps):
        t = step // STEPS
        x, (y, w) = task.sample_batch(step)
        low, high = task.segments[t]
        assert x.shape == (6, 1) and y.shape == (6, 1) and w.shape == (6,)
        assert bool(((x >= low) & (x < high)).all())
        # hand-written reference wave: A_t sin(x + phase_t)
        assert torch.allclose(y, task.amplitudes[t] * torch.sin(x + task.phases[t]))
        assert torch.allclose(w, torch.full((6,), 1 / 6))


def test_meta_loss_is_the_mean_over_seen_subtasks_of_each_subtask_loss():
    """Σ w (ŷ − y)² on the meta batch == (1/t) Σ_{s ≤ t} mean_{x in batch_s} (ŷ − y_s)², computed independently
    by splitting the batch by segment (from x alone) and averaging per-segment MSEs."""
    task = make_task()
    for step in range(task.num_steps):
        t = step // STEPS
        _, (x, (y, w)) = task.sample_meta_batches(step)
        loss = weighted_mse(some_predictor(x), (y, w))
        per_subtask = []
        for s in range(t + 1):
            low, high = task.segments[s]
            mask = ((x >= low) & (x < high)).squeeze(-1)
            assert int(mask.sum()) == 7
            xs = x[mask]
            truth = task.amplitudes[s] * torch.sin(xs + task.phases[s])
            per_subtask.append(((some_predictor(xs) - truth) ** 2).mean())
        reference = torch.stack(per_subtask).mean()
        assert torch.allclose(loss, reference, rtol=1e-5), (step, float(loss), float(reference))
        assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)
        # every meta batch has the same shape, so points replay in one vmap
        assert x.shape == (35, 1) and y.shape == (35, 1) and w.shape == (35,)


def test_meta_loss_ignores_unseen_segments():
    task = make_task()
    _, (x, (y, w)) = task.sample_meta_batches(0)  # sub-task 1 only
    corrupted = y.clone()
    corrupted[7:] += 100.0  # later segments' targets must not matter yet
    assert torch.allclose(weighted_mse(some_predictor(x), (y, w)), weighted_mse(some_predictor(x), (corrupted, w)))


def test_the_two_replay_batches_are_different_draws():
    task = make_task()
    task_batch, meta_batch = task.sample_meta_batches(5)
    again_task, again_meta = task.sample_meta_batches(5)
    assert not torch.equal(task_batch[0], again_task[0])
    assert not torch.equal(meta_batch[0][:7], again_meta[0][:7])
    # the task batch is from the current sub-task (2nd), the meta batch spans segments 1 and 2 with weight
    assert bool(((task_batch[0] >= -3.0) & (task_batch[0] < -1.0)).all())
    assert torch.allclose(meta_batch[1][1][:14], torch.full((14,), 1 / 14)) and float(meta_batch[1][1][14:].abs().sum()) == 0


def test_evaluation_batch_is_the_mean_of_per_segment_losses():
    task = make_task()
    x, target = task.evaluation_batch()
    loss = weighted_mse(some_predictor(x), target)
    per_segment = []
    for s in range(5):
        xs, (ys, ws) = task.segment_grid(s)
        assert torch.allclose(ys, task.amplitudes[s] * torch.sin(xs + task.phases[s]))
        per_segment.append(((some_predictor(xs) - ys) ** 2).mean())
    assert torch.allclose(loss, torch.stack(per_segment).mean(), rtol=1e-5)
    # fixed data: the same grid twice
    assert torch.equal(x, task.evaluation_batch()[0])


def test_replica_draws_the_same_batches_and_sampler_is_seeded():
    task = make_task()
    first = [task.sample_batch(k)[0] for k in range(3)]
    replica = task.replica()
    assert all(torch.equal(a, replica.sample_batch(k)[0]) for k, a in enumerate(first))

    one, two = ContinualSineSampler(seed=5).sample_many(3), ContinualSineSampler(seed=5).sample_many(3)
    assert all(torch.equal(a.amplitudes, b.amplitudes) and torch.equal(a.phases, b.phases) for a, b in zip(one, two))
    other = ContinualSineSampler(seed=6).sample()
    assert not torch.equal(other.amplitudes, one[0].amplitudes)
    sampler = SineFamily(amplitude_range=(0.5, 2.0), phase_range=(0.0, 1.0)).sampler(seed=5)
    tasks = sampler.sample_many(20)
    amplitudes = torch.cat([t.amplitudes for t in tasks])
    phases = torch.cat([t.phases for t in tasks])
    assert 0.5 <= float(amplitudes.min()) and float(amplitudes.max()) <= 2.0
    assert 0.0 <= float(phases.min()) and float(phases.max()) <= 1.0
    # sub-tasks of one sequence have their own waves
    assert len(set(tasks[0].amplitudes.tolist())) == 5


def test_sampler_state_resumes_the_task_stream():
    sampler = ContinualSineSampler(seed=9)
    sampler.sample_many(2)
    state = sampler.state_dict()
    expected = sampler.sample()
    resumed = ContinualSineSampler(seed=123)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.sample().amplitudes, expected.amplitudes)


def test_batches_stack_for_vmapped_replay():
    task = make_task()
    pairs = [task.sample_meta_batches(k) for k in (0, 7, 19)]
    stacked_inputs, (stacked_y, stacked_w) = stack_batches([meta for _, meta in pairs])
    assert stacked_inputs.shape == (3, 35, 1) and stacked_y.shape == (3, 35, 1) and stacked_w.shape == (3, 35)


def test_bad_arguments_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="one amplitude and one phase"):
        make_task(phases=[0.0, 1.0])
    with pytest.raises(ValueError, match="steps_per_subtask must be a positive integer"):
        make_task(steps_per_subtask=0)
    with pytest.raises(ValueError, match="low < high"):
        make_task(interval=(1.0, -1.0))
    with pytest.raises(ValueError, match="output has shape"):
        weighted_mse(torch.zeros(3), (torch.zeros(3, 1), torch.ones(3)))
