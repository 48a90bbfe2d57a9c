"""The guard around a meta-iteration: a non-finite loss or gradient stops the step, names the task, and leaves the
learner exactly as it was before the step.

Without it, one task with a NaN in its data turns every meta-parameter (θ_0 and φ) into NaN, silently, and every
later task then adapts from NaN. :meth:`warpkit.engine.meta.MetaLearner.meta_step` takes a :func:`snapshot` of
the learner (model, optimiser states, iteration, replay generator) before the step; after it, :func:`problem`
looks for non-finite parameters, task losses and warp-objective values. If there is one, the snapshot is put
back (:func:`restore`), :func:`find_culprit` re-examines the meta-batch task by task (its batches, then a fresh
adaptation) to name the task at fault, and :class:`NonFiniteError` is raised.

>>> import torch
>>> from torch import nn
>>> from warpkit.engine.meta import MetaLearner
>>> from warpkit.engine.options import InnerLoop
>>> from warpkit.engine.tasks import SupervisedTask
>>> from warpkit.engine.warp import LinearWarp
>>> model = nn.Sequential(nn.Linear(1, 4), LinearWarp(4), nn.Linear(4, 1))
>>> learner = MetaLearner(model, nn.functional.mse_loss, inner=InnerLoop(steps=2))
>>> x = torch.linspace(-1, 1, 8).unsqueeze(1)
>>> bad = SupervisedTask(x, torch.full_like(x, float("nan")))
>>> before = [p.clone() for p in model.parameters()]
>>> try:
...     learner.meta_step([SupervisedTask(x, x), bad])
... except NonFiniteError as error:
...     print(error.task_index)
1
>>> all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
True
"""

from __future__ import annotations

import copy
import math

import torch


class NonFiniteError(ValueError, FloatingPointError):
    """A meta-iteration met a NaN or an infinity. ``task_index`` is the position of the task at fault in the
    meta-batch (None when no single task could be named) and ``task`` the task itself; the learner was restored
    to its state before the step. It is a ``ValueError`` (bad data) and a ``FloatingPointError`` (diverging
    arithmetic), so either ``except`` catches it.

    >>> error = NonFiniteError("a task loss was non-finite", task_index=2)
    >>> isinstance(error, ValueError), isinstance(error, FloatingPointError), error.task_index
    (True, True, 2)
    """

    def __init__(self, message: str, task_index: int | None = None, task=None):
        super().__init__(message)
        self.task_index, self.task = task_index, task


def snapshot(learner) -> dict:
    """A deep copy of everything a meta-iteration changes (:meth:`MetaLearner.state_dict`, copied): later changes
    to the learner do not reach it.

    >>> from warpkit.engine.meta import MetaLearner
    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> _ = learner.model.weight.data.fill_(1.0)
    >>> state = snapshot(learner)
    >>> _ = learner.model.weight.data.fill_(7.0)
    >>> state["model"]["weight"].item()
    1.0
    """
    return copy.deepcopy(learner.state_dict())


def restore(learner, state: dict) -> None:
    """Put a :func:`snapshot` back; the replay buffer is emptied.

    >>> from warpkit.engine.meta import MetaLearner
    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> _ = learner.model.weight.data.fill_(1.0)
    >>> state = snapshot(learner)
    >>> _ = learner.model.weight.data.fill_(float("nan"))  # what a failed meta-iteration leaves behind
    >>> restore(learner, state)
    >>> learner.model.weight.item()
    1.0
    """
    learner.load_state_dict(state)
    learner.buffer.clear()


def _finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return math.isfinite(value)


def adapts(learner) -> bool:
    """Whether a meta-iteration of ``learner`` adapts every task (MAML-style learners without a warp objective run
    their own short inner loop instead, and report no task losses).

    >>> from warpkit.engine.init_learners import MAML, Leap
    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.options import InitTraining
    >>> model, mse = torch.nn.Linear(1, 1), torch.nn.functional.mse_loss
    >>> adapts(MetaLearner(model, mse, warp=None, init=InitTraining(Leap())))  # Leap reads the trajectory
    True
    >>> adapts(MetaLearner(model, mse, warp=None, init=InitTraining(MAML())))  # MAML differentiates its own
    False
    """
    init = learner.init_learner
    return learner.warp is not None or init is None or init.needs_trajectory


def problem(learner, stats) -> str | None:
    """What is non-finite after a meta-iteration (parameters, task losses, warp objective), or None.

    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(1)
    >>> stats = learner.meta_step([SupervisedTask(x, 2 * x)])
    >>> problem(learner, stats) is None
    True
    >>> _ = learner.model.weight.data.fill_(float("inf"))
    >>> problem(learner, stats)
    "the meta-parameters ['weight'] became non-finite"
    """
    bad = [name for name, p in learner.model.named_parameters() if not _finite(p.detach())]
    if learner.init_learner is not None:
        bad += [name for name, p in learner.init_learner.meta_parameters().items() if not _finite(p.detach())]
    if bad:
        return f"the meta-parameters {bad[:4]}{' …' if len(bad) > 4 else ''} became non-finite"
    if adapts(learner) and not (_finite(stats.task_loss_first) and _finite(stats.task_loss_last)):
        return "a task loss was non-finite"
    if stats.warp_steps and not _finite(stats.warp_objective):
        return "the warp objective was non-finite"
    return None


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (tuple, list)):
        for item in tree:
            yield from _tensors(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _tensors(item)


def _batch_problem(batch) -> bool:
    return any(t.is_floating_point() and not _finite(t) for t in _tensors(batch))


def find_culprit(learner, tasks) -> tuple[int, str] | None:
    """``(index, what)`` of the first task of the meta-batch whose batches hold a NaN or infinity, or whose fresh
    adaptation from θ_0 gives a non-finite loss or parameters; None when every task looks finite on its own.

    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(1)
    >>> find_culprit(learner, [SupervisedTask(x, x), SupervisedTask(x, torch.full_like(x, float("nan")))])
    (1, 'its inner-loop batch holds NaN or infinite values')
    >>> find_culprit(learner, [SupervisedTask(x, x), SupervisedTask(x, -x)]) is None
    True
    """
    for index, task in enumerate(tasks):
        if _batch_problem(task.sample_batch(0)):
            return index, "its inner-loop batch holds NaN or infinite values"
        if _batch_problem(task.sample_meta_batches(0)):
            return index, "its meta batches hold NaN or infinite values"
    if not adapts(learner):
        return None
    for index, task in enumerate(tasks):
        trajectory = learner.adapt(task)
        losses = trajectory.losses + [trajectory.final_loss]
        for step, loss in enumerate(losses):
            if not math.isfinite(loss):
                return index, f"its task loss is {loss} at inner step {step} (diverging SGD, or bad data)"
        if not all(_finite(p) for p in trajectory.final_params.values()):
            return index, "its adapted parameters are non-finite"
    return None


def raise_non_finite(learner, tasks, what: str) -> None:
    """Raise :class:`NonFiniteError` for a meta-iteration whose ``what`` went non-finite (already restored), naming
    the task :func:`find_culprit` finds.

    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(1)
    >>> tasks = [SupervisedTask(x, x), SupervisedTask(x * float("inf"), x)]
    >>> raise_non_finite(learner, tasks, "a task loss was non-finite")
    Traceback (most recent call last):
    ...
    warpkit.engine.guard.NonFiniteError: meta_step(): a task loss was non-finite: task 1 of the meta-batch (...) is
    at fault: its inner-loop batch holds NaN or infinite values. ...
    """
    culprit = find_culprit(learner, tasks)
    restored = "The learner's parameters and optimiser states are as they were before this step."
    if culprit is None:
        raise NonFiniteError(
            f"meta_step(): {what}, and no single task of the meta-batch of {len(tasks)} explains it (every task "
            f"adapts finitely on its own: lower WarpTraining's or InitTraining's lr). {restored}")
    index, why = culprit
    raise NonFiniteError(
        f"meta_step(): {what}: task {index} of the meta-batch ({tasks[index]!r}) is at fault: {why}. "
        f"Remove or fix that task. {restored}", index, tasks[index])
