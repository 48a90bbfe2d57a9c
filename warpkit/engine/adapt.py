r"""Task adaptation: the functional inner loop that moves θ only, with φ frozen.

For a task τ and K steps of (optionally momentum) SGD on the task loss, starting from θ_0:

.. math::  v_{k+1} = \mu v_k + \nabla_\theta L^\tau_{\text{task}}(\theta_k; \phi), \qquad
           \theta_{k+1} = \theta_k - \alpha\, v_{k+1}, \qquad k = 0, \dots, K-1,

where the gradient reaches θ through the frozen warp layers, i.e. it is already preconditioned
(Flennerhag et al., 2020, Section 2). The loop is functional (``torch.func.functional_call``): the model's own parameters are
never written, θ_0 is never mutated, and no autograd graph is kept across steps.

What comes back is the :class:`Trajectory` θ_0 … θ_{K-1}: the state *before* each step, detached, together with
the BatchNorm statistics at that moment . WarpGrad's meta-objective is a sum over these
points, so its cost does not grow with K.

BatchNorm policy: statistics are reset at the start of every task (running mean 0, running variance 1,
counter 0); the network is in train mode while adapting, so each forward pass normalises with the batch's own
statistics and updates the running ones. :func:`evaluate` lets the caller choose batch statistics or the task's
running statistics at test time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from torch.func import functional_call, grad_and_value

from warpkit.engine.tasks import Task, stack_batches
from warpkit.engine.warp import task_parameters, warp_parameters

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, object], torch.Tensor]

_BATCHNORM = (nn.modules.batchnorm._BatchNorm,)


# ----------------------------------------------------------------------------------------------------------
# functional forward and the BatchNorm policy
# ----------------------------------------------------------------------------------------------------------
def forward(model: nn.Module, params: Params, buffers: Params, inputs: torch.Tensor) -> torch.Tensor:
    """f(x; θ, φ) computed with the given tensors in place of the module's own (``functional_call``).

    ``params`` usually holds θ and φ together; any parameter not given falls back to the module's own.

    >>> model = torch.nn.Linear(1, 1)
    >>> forward(model, {"weight": torch.tensor([[2.0]]), "bias": torch.tensor([1.0])}, {}, torch.tensor([[3.0]]))
    tensor([[7.]])
    """
    return functional_call(model, {**params, **buffers}, (inputs,))


def fresh_buffers(model: nn.Module) -> Params:
    """The buffers a new task starts from: BatchNorm statistics reset (mean 0, variance 1, counter 0), every
    other buffer copied. The model's own buffers are not touched.

    >>> model = torch.nn.BatchNorm1d(2)
    >>> _ = model(torch.randn(8, 2))   # training moves the running statistics
    >>> buffers = fresh_buffers(model)
    >>> buffers["running_mean"], buffers["running_var"], int(buffers["num_batches_tracked"])
    (tensor([0., 0.]), tensor([1., 1.]), 0)
    """
    fresh = {name: b.detach().clone() for name, b in model.named_buffers()}
    for module_name, module in model.named_modules():
        if isinstance(module, _BATCHNORM) and module.track_running_stats:
            prefix = module_name + "." if module_name else ""
            fresh[prefix + "running_mean"].zero_()
            fresh[prefix + "running_var"].fill_(1.0)
            fresh[prefix + "num_batches_tracked"].zero_()
    return fresh


def detached_copy(tensors: Params) -> Params:
    """A detached clone of a name → tensor dict (a snapshot that later in-place updates cannot reach).

    >>> weights = {"w": torch.ones(2, requires_grad=True)}
    >>> snapshot = detached_copy(weights)
    >>> snapshot["w"].requires_grad, snapshot["w"] is weights["w"]
    (False, False)
    """
    return {name: t.detach().clone() for name, t in tensors.items()}


class _TrainMode:
    """Context manager: put a model in train (or eval) mode and restore its previous mode afterwards."""

    def __init__(self, model: nn.Module, training: bool = True):
        self.model, self.training = model, training

    def __enter__(self):
        self.previous = [(m, m.training) for m in self.model.modules()]
        self.model.train(self.training)
        return self.model

    def __exit__(self, *exc):
        for module, mode in self.previous:
            module.training = mode
        return False


def train_mode(model: nn.Module, training: bool = True) -> _TrainMode:
    """``with train_mode(model): ...`` runs the block in train mode and restores every submodule's mode.

    >>> model = torch.nn.Dropout().eval()
    >>> with train_mode(model):
    ...     print(model.training)
    True
    >>> model.training
    False
    """
    return _TrainMode(model, training)


# ----------------------------------------------------------------------------------------------------------
# the inner loop
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def sgd_step(theta: Params, gradients: Params, lr: float | Params, momentum: float = 0.0,
             velocity: Params | None = None) -> Params:
    r"""One (momentum) SGD step: v ← μ v + g (in place in ``velocity``), θ ← θ − α v (α per parameter when
    ``lr`` is a dict); without ``velocity``, θ ← θ − α g. Returns the new θ (the given dict is not modified).

    >>> sgd_step({"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([1.0, -1.0])}, lr=0.5)
    {'w': tensor([0.5000, 2.5000])}
    """
    new_theta = {}
    for name, value in theta.items():
        direction = gradients[name]
        if velocity is not None:
            velocity[name] = momentum * velocity[name] + direction
            direction = velocity[name]
        step_size = lr[name].detach() if isinstance(lr, dict) else lr
        new_theta[name] = value - step_size * direction
    return new_theta


@dataclass
class Trajectory:
    """A task's adaptation run.

    ``params[k]`` and ``buffers[k]`` are θ_k and the BatchNorm statistics *before* step k (k = 0 … K-1),
    detached; ``gradients[k]`` is ∇_θ L_task(θ_k) (kept only when asked: Leap needs it); ``losses[k]`` the task
    loss at θ_k on step k's batch; ``final_params`` θ_K with ``final_buffers``; ``final_loss`` the loss at θ_K on
    one more batch (used by Leap's loss-difference term). ``batches[k]`` is the batch A_k of step k, kept with
    the states only when every step was a plain SGD step (no momentum, a fixed float step size): then
    θ_{k+1} = θ_k − α ∇_θ L_task(θ_k; φ; A_k) exactly, and replay can take θ_{k+1} as the lookahead point
    (:mod:`warpkit.engine.replay`); None otherwise. ``warp_versions`` are the in-place version counters of the φ
    tensors the run used: replay compares them with φ's to know whether φ has been written since.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> task = SupervisedTask(torch.ones(4, 1), torch.ones(4, 1))
    >>> trajectory = adapt(torch.nn.Linear(1, 1), task, torch.nn.functional.mse_loss, num_steps=3, lr=0.1)
    >>> trajectory.num_steps, len(trajectory.params), sorted(trajectory.final_params)
    (3, 3, ['bias', 'weight'])
    """

    params: list[Params] = field(default_factory=list)
    buffers: list[Params] = field(default_factory=list)
    gradients: list[Params] | None = None
    losses: list[float] = field(default_factory=list)
    final_params: Params = field(default_factory=dict)
    final_buffers: Params = field(default_factory=dict)
    final_loss: float = float("nan")
    batches: list | None = None
    warp_versions: dict | None = None

    @property
    def num_steps(self) -> int:
        return len(self.losses)


def _validate_params(model: nn.Module, given: Params | None, which: str) -> Params:
    expected = task_parameters(model) if which == "task" else warp_parameters(model)
    if given is None:
        return {name: p.detach() for name, p in expected.items()}
    unknown = sorted(set(given) - set(expected))
    missing = sorted(set(expected) - set(given))
    if unknown or missing:
        raise KeyError(
            f"{which} parameters do not match the model: unknown {unknown[:5]}, missing {missing[:5]}. "
            f"Build them with warpkit.engine.warp.{which}_parameters(model)."
        )
    return given


def _initial_state(model: nn.Module, init_params: Params | None, warp_params: Params | None, momentum: float,
                   copies: int | None = None) -> tuple[Params, Params, Params, Params | None]:
    """What every inner loop starts from: θ_0 (a detached copy; stacked ``copies`` times along a new first
    dimension for vmapped tasks), φ (detached), fresh BatchNorm statistics (stacked likewise) and zero
    velocities (None without momentum)."""
    theta = _validate_params(model, init_params, "task")
    buffers = fresh_buffers(model)
    if copies is None:
        theta = {name: t.detach().clone() for name, t in theta.items()}
    else:
        theta = {name: t.detach().unsqueeze(0).repeat(copies, *([1] * t.dim())) for name, t in theta.items()}
        buffers = {name: b.unsqueeze(0).repeat(copies, *([1] * b.dim())) for name, b in buffers.items()}
    phi = {name: t.detach() for name, t in _validate_params(model, warp_params, "warp").items()}
    velocity = {name: torch.zeros_like(t) for name, t in theta.items()} if momentum else None
    return theta, phi, buffers, velocity


def _task_loss(model: nn.Module, loss_fn: LossFn, phi: Params) -> Callable:
    """L_task(θ; φ) on a batch with φ fixed: ``task_loss(θ, buffers, inputs, target)``. The buffers are an
    explicit (non-differentiated) argument: BatchNorm updates them in place."""
    def task_loss(theta: Params, buffers: Params, inputs, target) -> torch.Tensor:
        return loss_fn(forward(model, {**theta, **phi}, buffers, inputs), target)
    return task_loss


def _eager_gradient_and_value(task_loss: Callable) -> Callable:
    """``torch.func.grad_and_value(task_loss)`` (gradient in θ, the first argument) by plain ``torch.autograd.grad``
    on detached leaves: the same kernels and the same values bit for bit (``tests/test_adapt.py``), without the
    transform's per-operation dispatch, which cost 13 % of a step of the Omniglot network at 64 filters on one
    core (34.1 against 29.8 ms). :func:`adapt_tasks` keeps the transform: it is what vmaps over tasks."""
    def gradient_and_loss(theta: Params, buffers: Params, inputs, target) -> tuple[Params, torch.Tensor]:
        leaves = {name: t.detach().requires_grad_() for name, t in theta.items()}
        with torch.enable_grad():
            loss = task_loss(leaves, buffers, inputs, target)
            found = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        gradients = {name: torch.zeros_like(t) if g is None else g for (name, t), g in zip(leaves.items(), found)}
        return gradients, loss.detach()
    return gradient_and_loss


def _inner_step(gradient_and_loss: Callable, theta: Params, buffers: Params, batch, lr: float | Params,
                momentum: float, velocity: Params | None) -> tuple[Params, Params, torch.Tensor]:
    r"""One step of the inner loop: g = ∇_θ L_task(θ_k; φ) and L_task(θ_k) on ``batch``, then
    v_{k+1} = μ v_k + g, θ_{k+1} = θ_k − α v_{k+1}. Returns ``(θ_{k+1}, g, loss)`` (batched when vmapped)."""
    inputs, target = batch
    gradients, loss = gradient_and_loss(theta, buffers, inputs, target)
    return sgd_step(theta, gradients, lr, momentum, velocity), gradients, loss


@torch.no_grad()
def _final_loss(task_loss: Callable, theta: Params, buffers: Params, batch) -> torch.Tensor:
    """The task loss at θ_K on one more batch (Leap's loss-difference term uses it)."""
    inputs, target = batch
    return task_loss(theta, buffers, inputs, target)


def plain_sgd(lr: float | Params, momentum: float) -> bool:
    """Whether a step is θ_{k+1} = θ_k − α g with one fixed float α (no momentum, no per-parameter step sizes):
    the condition under which the next state is the lookahead point of replay.

    >>> plain_sgd(0.1, 0.0), plain_sgd(0.1, 0.9), plain_sgd({"w": torch.ones(1)}, 0.0)
    (True, False, False)
    """
    return momentum == 0 and not isinstance(lr, dict)


def _keep_state(trajectory: Trajectory, theta: Params, buffers: Params, keep_trajectory: bool) -> tuple[Params, Params]:
    """Snapshot the pre-step state θ_k (and BatchNorm statistics), into the trajectory when ``keep_trajectory``."""
    snapshot, buffer_snapshot = detached_copy(theta), detached_copy(buffers)
    if keep_trajectory:
        trajectory.params.append(snapshot)
        trajectory.buffers.append(buffer_snapshot)
    return snapshot, buffer_snapshot


def warp_versions(phi: Params) -> dict[str, int]:
    """The in-place version counter of every φ tensor (shared with the parameter it was detached from): equal
    counters later mean φ has not been written since.

    >>> phi = {"w": torch.zeros(2)}
    >>> before = warp_versions(phi)
    >>> _ = phi["w"].add_(1.0)
    >>> before == warp_versions(phi)
    False
    """
    return {name: int(t._version) for name, t in phi.items()}


def _stream_state(on_state: Callable, step: int, state: tuple[Params, Params], next_theta: Params, batch,
                  plain: bool, versions: dict[str, int]) -> None:
    """``on_state(k, θ_k, buffers_k)`` after step k, plus ``(θ_{k+1}, A_k, φ's version counters)`` for a plain
    SGD step (replay's lookahead point and the step's batch, :mod:`warpkit.engine.replay`)."""
    lookahead = (detached_copy(next_theta), batch, versions) if plain else ()
    on_state(step, *state, *lookahead)


def adapt(model: nn.Module, task: Task, loss_fn: LossFn, num_steps: int, lr: float | Params, momentum: float = 0.0,
          init_params: Params | None = None, warp_params: Params | None = None, keep_trajectory: bool = True,
          keep_gradients: bool = False, final_loss: bool = True,
          on_state: Callable[[int, Params, Params], None] | None = None) -> Trajectory:
    r"""Adapt θ to ``task`` by ``num_steps`` steps of SGD (momentum ``momentum``) at learning rate ``lr``.

    θ starts from ``init_params`` (default: the model's task parameters), φ is ``warp_params`` (default: the
    model's warp parameters) and stays frozen. Neither is mutated. ``lr`` is a float or, for Meta-SGD, a dict of
    per-parameter step sizes (broadcast against each parameter). ``on_state(k, θ_k, buffers_k)`` receives
    each pre-step state as a detached snapshot once step k is taken, followed, for a plain SGD step, by
    ``θ_{k+1}`` and the step's batch (e.g. to stream points into an on-disk buffer with ``keep_trajectory=False``,
    so that memory does not grow with ``num_steps``). Returns the :class:`Trajectory`; with
    ``keep_trajectory=False`` only the losses and final state are kept (for evaluation runs).

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> model = torch.nn.Linear(1, 1)
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(-1)
    >>> task = SupervisedTask(x, 3 * x, batch_size=8)
    >>> trajectory = adapt(model, task, torch.nn.functional.mse_loss, num_steps=20, lr=0.3)
    >>> len(trajectory.params), trajectory.losses[-1] < trajectory.losses[0]
    (20, True)
    """
    if num_steps < 0:
        raise ValueError(f"adapt(): num_steps must be >= 0, got {num_steps}")
    theta, phi, buffers, velocity = _initial_state(model, init_params, warp_params, momentum)
    task_loss = _task_loss(model, loss_fn, phi)
    gradient_and_loss = _eager_gradient_and_value(task_loss)
    trajectory = Trajectory(gradients=[] if keep_gradients else None,
                            batches=[] if keep_trajectory and plain_sgd(lr, momentum) else None,
                            warp_versions=warp_versions(phi))
    losses = []  # read out once after the loop: float() per step would wait for a GPU at every step
    with train_mode(model):
        for step in range(num_steps):
            state = _keep_state(trajectory, theta, buffers, keep_trajectory) \
                if keep_trajectory or on_state is not None else None
            batch = task.sample_batch(step)
            if trajectory.batches is not None:
                trajectory.batches.append(batch)
            theta, gradients, loss = _inner_step(gradient_and_loss, theta, buffers, batch, lr, momentum, velocity)
            if on_state is not None:
                _stream_state(on_state, step, state, theta, batch, plain_sgd(lr, momentum), trajectory.warp_versions)
            if keep_gradients:
                trajectory.gradients.append(detached_copy(gradients))
            losses.append(loss.detach())
        trajectory.losses = torch.stack(losses).tolist() if losses else []
        if final_loss:
            trajectory.final_loss = float(_final_loss(task_loss, theta, buffers, task.sample_batch(num_steps)))
    trajectory.final_params = theta
    trajectory.final_buffers = buffers
    return trajectory


def _unstack(tensors: Params, index: int) -> Params:
    """Task ``index``'s slice of stacked tensors, as its own copy."""
    return {name: t[index].clone() for name, t in tensors.items()}


def adapt_tasks(model: nn.Module, tasks: list[Task], loss_fn: LossFn, num_steps: int, lr: float | Params,
                momentum: float = 0.0, init_params: Params | None = None, warp_params: Params | None = None,
                keep_trajectory: bool = True, keep_gradients: bool = False,
                final_loss: bool = True) -> list[Trajectory]:
    r""":func:`adapt` for a list of tasks at once: the same SGD updates, computed for all tasks in one
    ``torch.func.vmap`` over a stacked task dimension (θ, BatchNorm statistics and batches stacked).

    Each task still draws its own batches in its own order, so the result equals
    ``[adapt(model, task, ...) for task in tasks]`` up to floating-point rounding (``tests/test_adapt.py``
    checks it in float64; in float32 vmapped kernels may sum in another order, and a long chaotic meta-training
    run can amplify such last-digit differences). What changes is the number of Python-level calls per step,
    which dominates for small networks. All tasks' batches must have the same shapes.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> model = torch.nn.Linear(1, 1)
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(-1)
    >>> tasks = [SupervisedTask(x, slope * x, batch_size=8) for slope in (1.0, -2.0)]
    >>> trajectories = adapt_tasks(model, tasks, torch.nn.functional.mse_loss, num_steps=20, lr=0.3)
    >>> [round(float(t.final_params["weight"]), 1) for t in trajectories]
    [1.0, -2.0]
    """
    if num_steps < 0:
        raise ValueError(f"adapt_tasks(): num_steps must be >= 0, got {num_steps}")
    if not tasks:
        raise ValueError("adapt_tasks(): no tasks given")
    theta, phi, buffers, velocity = _initial_state(model, init_params, warp_params, momentum, copies=len(tasks))
    task_loss = _task_loss(model, loss_fn, phi)
    gradient_and_loss = torch.func.vmap(grad_and_value(task_loss), randomness="different")
    keep_batches = keep_trajectory and plain_sgd(lr, momentum)
    trajectories = [Trajectory(gradients=[] if keep_gradients else None, batches=[] if keep_batches else None,
                               warp_versions=warp_versions(phi)) for _ in tasks]
    step_losses = []  # [count] per step, read out once after the loop (no wait for a GPU inside it)
    with train_mode(model):
        for step in range(num_steps):
            task_batches = [task.sample_batch(step) for task in tasks]
            batch = stack_batches(task_batches)
            for index, trajectory in enumerate(trajectories):
                if keep_trajectory:
                    trajectory.params.append(_unstack(theta, index))
                    trajectory.buffers.append(_unstack(buffers, index))
                if keep_batches:
                    trajectory.batches.append(task_batches[index])
            theta, gradients, losses = _inner_step(gradient_and_loss, theta, buffers, batch, lr, momentum, velocity)
            step_losses.append(losses.detach())
            if keep_gradients:
                for index, trajectory in enumerate(trajectories):
                    trajectory.gradients.append(_unstack(gradients, index))
        per_task = torch.stack(step_losses, dim=1).tolist() if step_losses else [[] for _ in tasks]
        for trajectory, task_losses in zip(trajectories, per_task):
            trajectory.losses = task_losses
        if final_loss:
            batch = stack_batches([task.sample_batch(num_steps) for task in tasks])
            losses = _final_loss(torch.func.vmap(task_loss, randomness="different"), theta, buffers, batch)
            for index, trajectory in enumerate(trajectories):
                trajectory.final_loss = float(losses[index])
    for index, trajectory in enumerate(trajectories):
        trajectory.final_params = _unstack(theta, index)
        trajectory.final_buffers = _unstack(buffers, index)
    return trajectories


def differentiable_adapt(
    model: nn.Module,
    task: Task,
    loss_fn: LossFn,
    num_steps: int,
    lr: float | Params,
    init_params: Params,
    warp_params: Params | None = None,
    first_order: bool = False,
) -> tuple[Params, Params]:
    r"""The inner loop kept in the autograd graph, for MAML-style meta-learners (and Meta-SGD, T-Nets):

    .. math::  \theta_{k+1} = \theta_k - \alpha \odot \nabla_\theta L_{\text{task}}(\theta_k; \phi),

    differentiable with respect to ``init_params`` (θ_0), ``warp_params`` (φ) and ``lr`` (a float, or a dict
    of per-parameter step sizes α for Meta-SGD) when those require grad. ``first_order=True`` detaches the inner
    gradients (FOMAML). Memory grows with ``num_steps``: this is the cost WarpGrad avoids.
    Returns ``(θ_K, buffers)``.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> task = SupervisedTask(torch.ones(4, 1), 2 * torch.ones(4, 1))   # L(θ) = (θ − 2)²
    >>> theta0 = {"weight": torch.zeros(1, 1, requires_grad=True)}
    >>> theta, _ = differentiable_adapt(model, task, torch.nn.functional.mse_loss, 1, 0.25, theta0)
    >>> float(theta["weight"].detach())   # θ_1 = θ_0 − α · 2(θ_0 − 2) = 0 + 0.25 · 4
    1.0
    >>> float(torch.autograd.grad(theta["weight"].sum(), theta0["weight"])[0])   # dθ_1/dθ_0 = 1 − 2α
    0.5
    """
    phi = dict(warp_params) if warp_params is not None else {n: p for n, p in warp_parameters(model).items()}
    theta = dict(init_params)
    buffers = fresh_buffers(model)
    with train_mode(model):
        for step in range(num_steps):
            inputs, target = task.sample_batch(step)
            loss = loss_fn(forward(model, {**theta, **phi}, buffers, inputs), target)
            gradients = torch.autograd.grad(
                loss, list(theta.values()), create_graph=not first_order, allow_unused=True
            )
            new_theta = {}
            for (name, value), gradient in zip(theta.items(), gradients):
                if gradient is None:
                    gradient = torch.zeros_like(value)
                step_size = lr[name] if isinstance(lr, dict) else lr
                new_theta[name] = value - step_size * (gradient.detach() if first_order else gradient)
            theta = new_theta
    return theta, buffers


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------
def accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max equals the target class.

    >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    tensor(0.5000)
    """
    return (logits.argmax(dim=-1) == target).float().mean()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    params: Params,
    buffers: Params,
    batch,
    loss_fn: LossFn,
    metric_fn: Callable[[torch.Tensor, object], torch.Tensor] | None = None,
    batchnorm: str = "batch",
) -> dict[str, float]:
    """Loss (and ``metric_fn``) of the learner (θ, φ in ``params``) on ``batch``.

    ``batchnorm="batch"`` normalises with the evaluation batch's statistics (train mode, as in the Leap and
    WarpGrad Omniglot code; the stored running statistics are not modified); ``"running"`` uses the task's
    running statistics (eval mode).

    >>> params = {"weight": torch.tensor([[2.0]]), "bias": torch.tensor([0.0])}
    >>> batch = (torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]]))
    >>> evaluate(torch.nn.Linear(1, 1), params, {}, batch, torch.nn.functional.mse_loss)
    {'loss': 0.0}
    """
    if batchnorm not in ("batch", "running"):
        raise ValueError(f"evaluate(): batchnorm must be 'batch' or 'running', got {batchnorm!r}")
    inputs, target = batch
    with train_mode(model, training=batchnorm == "batch"):
        output = forward(model, params, detached_copy(buffers), inputs)
    result = {"loss": float(loss_fn(output, target))}
    if metric_fn is not None:
        result["metric"] = float(metric_fn(output, target))
    return result
