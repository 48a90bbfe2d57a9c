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
    """
    return functional_call(model, {**params, **buffers}, (inputs,))


def fresh_buffers(model: nn.Module) -> Params:
    """The buffers a new task starts from: BatchNorm statistics reset (mean 0, variance 1, counter 0), every
    other buffer copied. The model's own buffers are not touched."""
    fresh = {name: b.detach().clone() for name, b in model.named_buffers()}
    for module_name, module in model.named_modules():
        if isinstance(module, _BATCHNORM) and module.track_running_stats:
            prefix = module_name + "." if module_name else ""
            fresh[prefix + "running_mean"].zero_()
            fresh[prefix + "running_var"].fill_(1.0)
            fresh[prefix + "num_batches_tracked"].zero_()
    return fresh


def detached_copy(tensors: Params) -> Params:
    """A detached clone of a name → tensor dict (a snapshot that later in-place updates cannot reach)."""
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
    """``with train_mode(model): ...`` runs the block in train mode and restores every submodule's mode."""
    return _TrainMode(model, training)


# ----------------------------------------------------------------------------------------------------------
# the inner loop
# ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def sgd_step(theta: Params, gradients: Params, lr: float | Params, momentum: float = 0.0,
             velocity: Params | None = None) -> Params:
    r"""One (momentum) SGD step: v ← μ v + g (in place in ``velocity``), θ ← θ − α v (α per parameter when
    ``lr`` is a dict); without ``velocity``, θ ← θ − α g. Returns the new θ (the given dict is not modified)."""
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
    one more batch (used by Leap's loss-difference term).
    """

    params: list[Params] = field(default_factory=list)
    buffers: list[Params] = field(default_factory=list)
    gradients: list[Params] | None = None
    losses: list[float] = field(default_factory=list)
    final_params: Params = field(default_factory=dict)
    final_buffers: Params = field(default_factory=dict)
    final_loss: float = float("nan")

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


def adapt(
    model: nn.Module,
    task: Task,
    loss_fn: LossFn,
    num_steps: int,
    lr: float | Params,
    momentum: float = 0.0,
    init_params: Params | None = None,
    warp_params: Params | None = None,
    keep_trajectory: bool = True,
    keep_gradients: bool = False,
    final_loss: bool = True,
    on_state: Callable[[int, Params, Params], None] | None = None,
) -> Trajectory:
    r"""Adapt θ to ``task`` by ``num_steps`` steps of SGD (momentum ``momentum``) at learning rate ``lr``.

    θ starts from ``init_params`` (default: the model's task parameters), φ is ``warp_params`` (default: the
    model's warp parameters) and stays frozen. Neither is mutated. ``lr`` is a float or, for Meta-SGD, a dict of
    per-parameter step sizes (broadcast against each parameter). ``on_state(k, θ_k, buffers_k)`` receives
    each pre-step state as a detached snapshot (e.g. to stream it into an on-disk buffer with
    ``keep_trajectory=False``, so that memory does not grow with ``num_steps``). Returns the :class:`Trajectory`; with
    ``keep_trajectory=False`` only the losses and final state are kept (for evaluation runs).
    """
    if num_steps < 0:
        raise ValueError(f"adapt(): num_steps must be >= 0, got {num_steps}")
    theta = {name: t.detach().clone() for name, t in _validate_params(model, init_params, "task").items()}
    phi = {name: t.detach() for name, t in _validate_params(model, warp_params, "warp").items()}
    buffers = fresh_buffers(model)
    velocity = {name: torch.zeros_like(t) for name, t in theta.items()} if momentum else None

    def task_loss(theta_now: Params, buffers_now: Params, inputs, target):
        # buffers are an explicit (non-differentiated) argument: BatchNorm updates them in place
        return loss_fn(forward(model, {**theta_now, **phi}, buffers_now, inputs), target)

    gradient_and_loss = grad_and_value(task_loss)
    trajectory = Trajectory(gradients=[] if keep_gradients else None)
    losses = []  # read out once after the loop: float() per step would wait for a GPU at every step
    with train_mode(model):
        for step in range(num_steps):
            if keep_trajectory or on_state is not None:
                snapshot, buffer_snapshot = detached_copy(theta), detached_copy(buffers)
                if keep_trajectory:
                    trajectory.params.append(snapshot)
                    trajectory.buffers.append(buffer_snapshot)
                if on_state is not None:
                    on_state(step, snapshot, buffer_snapshot)
            inputs, target = task.sample_batch(step)
            gradients, loss = gradient_and_loss(theta, buffers, inputs, target)
            if keep_gradients:
                trajectory.gradients.append(detached_copy(gradients))
            losses.append(loss.detach())
            theta = sgd_step(theta, gradients, lr, momentum, velocity)
        trajectory.losses = torch.stack(losses).tolist() if losses else []
        if final_loss:
            with torch.no_grad():
                inputs, target = task.sample_batch(num_steps)
                trajectory.final_loss = float(loss_fn(forward(model, {**theta, **phi}, buffers, inputs), target))
    trajectory.final_params = theta
    trajectory.final_buffers = buffers
    return trajectory


def adapt_tasks(
    model: nn.Module,
    tasks: list[Task],
    loss_fn: LossFn,
    num_steps: int,
    lr: float | Params,
    momentum: float = 0.0,
    init_params: Params | None = None,
    warp_params: Params | None = None,
    keep_trajectory: bool = True,
    keep_gradients: bool = False,
    final_loss: bool = True,
) -> list[Trajectory]:
    r""":func:`adapt` for a list of tasks at once: the same SGD updates, computed for all tasks in one
    ``torch.func.vmap`` over a stacked task dimension (θ, BatchNorm statistics and batches stacked).

    Each task still draws its own batches in its own order, so the result equals
    ``[adapt(model, task, ...) for task in tasks]`` up to floating-point rounding (``tests/test_adapt.py``
    checks it in float64; in float32 vmapped kernels may sum in another order, and a long chaotic meta-training
    run can amplify such last-digit differences). What changes is the number of Python-level calls per step,
    which dominates for small networks. All tasks' batches must have the same shapes.
    """
    if num_steps < 0:
        raise ValueError(f"adapt_tasks(): num_steps must be >= 0, got {num_steps}")
    if not tasks:
        raise ValueError("adapt_tasks(): no tasks given")
    count = len(tasks)
    init = _validate_params(model, init_params, "task")
    theta = {name: t.detach().unsqueeze(0).repeat(count, *([1] * t.dim())) for name, t in init.items()}
    phi = {name: t.detach() for name, t in _validate_params(model, warp_params, "warp").items()}
    single = fresh_buffers(model)
    buffers = {name: b.unsqueeze(0).repeat(count, *([1] * b.dim())) for name, b in single.items()}
    velocity = {name: torch.zeros_like(t) for name, t in theta.items()} if momentum else None

    def task_loss(theta_now: Params, buffers_now: Params, inputs, target):
        return loss_fn(forward(model, {**theta_now, **phi}, buffers_now, inputs), target)

    gradient_and_loss = torch.func.vmap(grad_and_value(task_loss), randomness="different")
    trajectories = [Trajectory(gradients=[] if keep_gradients else None) for _ in tasks]
    step_losses = []  # [count] per step, read out once after the loop (no wait for a GPU inside it)

    def unstack(tensors: Params, index: int) -> Params:
        return {name: t[index].clone() for name, t in tensors.items()}

    with train_mode(model):
        for step in range(num_steps):
            if keep_trajectory:
                for index, trajectory in enumerate(trajectories):
                    trajectory.params.append(unstack(theta, index))
                    trajectory.buffers.append(unstack(buffers, index))
            inputs, target = stack_batches([task.sample_batch(step) for task in tasks])
            gradients, losses = gradient_and_loss(theta, buffers, inputs, target)
            step_losses.append(losses.detach())
            if keep_gradients:
                for index, trajectory in enumerate(trajectories):
                    trajectory.gradients.append(unstack(gradients, index))
            theta = sgd_step(theta, gradients, lr, momentum, velocity)
        if step_losses:
            for trajectory, task_losses in zip(trajectories, torch.stack(step_losses, dim=1).tolist()):
                trajectory.losses = task_losses
        if final_loss:
            with torch.no_grad():
                inputs, target = stack_batches([task.sample_batch(num_steps) for task in tasks])
                losses = torch.func.vmap(task_loss, randomness="different")(theta, buffers, inputs, target)
                for trajectory, value in zip(trajectories, losses.tolist()):
                    trajectory.final_loss = value
    for index, trajectory in enumerate(trajectories):
        trajectory.final_params = unstack(theta, index)
        trajectory.final_buffers = unstack(buffers, index)
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
    """Fraction of rows whose arg-max equals the target class."""
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
