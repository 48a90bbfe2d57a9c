r"""WarpGrad's meta-objectives for the warp parameters φ (Flennerhag et al., 2020, Section 3).

For a buffered point θ (an iterate of task τ's own SGD run) and two *different* batches of that task, a task
batch A and a meta batch B, the one-step objective is

.. math::  \mathcal{L}(\phi;\theta) = L^\tau_{\text{meta}}\big(\theta - \alpha \nabla_\theta L^\tau_{\text{task}}(\theta; \phi; A);\ \phi;\ B\big)
           \qquad \text{(Eq. 11)}

and WarpGrad minimises its sum over tasks and buffered points. Three modes:

``"exact"`` (Eq. 11)
    the inner gradient ∇_θ L_task(θ; φ) stays in the graph, so the meta-gradient contains the second-order
    term −α (∂²L_task / ∂φ ∂θ)ᵀ ∇_θ L_meta. The authors' code meant to do this but wrote the inner gradients
    into ``.grad`` with ``p.backward(g)``, which detaches them and silently gives the first-order gradient;
    here the inner gradient comes from ``torch.func.grad`` inside the outer autograd graph, and
    ``tests/test_objectives.py`` checks it against central finite differences.
``"first_order"`` (Eq. 12)
    the inner gradient is treated as a constant (stop-gradient): φ gets gradient only through its appearance in
    the forward pass of L_meta at the stepped point θ' = θ − α ∇L_task.
``"approx"``
    no lookahead: L_meta(θ; φ; B) at the buffered point itself (the original code's ``approx``).

Replay is *batched*: a chunk of P points (stacked by :func:`warpkit.engine.buffer.stack_points`) is evaluated in one
``torch.func.vmap`` call over the point dimension, instead of one point at a time as the original code does. The
per-point path (``batched=False``) is kept as the reference the tests and benchmarks compare against. Batched
replay pays off where per-call overhead dominates (small networks, GPUs); on a CPU a large convolutional network
is compute-bound and vmap's grouped convolutions can be slower than the loop (``benchmarks/engine.py`` measures
both). BatchNorm layers are evaluated in elementary form inside the vmap (:mod:`warpkit.engine.batchnorm`).

This module is the *general* path: the lookahead is recomputed, and the exact gradient differentiates the inner
gradient's backward pass. :class:`~warpkit.engine.meta.MetaLearner` replays through
:mod:`warpkit.engine.replay`, which gives the same gradients with less work (the next buffered point as the
lookahead, the exact gradient split into Eq. 12 plus one mixed product) and falls back to this module where
those do not apply.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch.func import grad, vmap

from warpkit.engine.adapt import LossFn, Params, forward, train_mode
from warpkit.engine.batchnorm import elementary_batch_norm
from warpkit.engine.buffer import TrajectoryPoint, stack_points
from warpkit.engine.tasks import Batch, Task, stack_batches

OBJECTIVE_MODES = ("exact", "first_order", "approx")


def check_mode(mode: str) -> str:
    """``mode`` when it names a warp objective (one of :data:`OBJECTIVE_MODES`), else a ValueError naming them.

    >>> check_mode("first_order")
    'first_order'
    """
    if mode not in OBJECTIVE_MODES:
        raise ValueError(f"unknown warp objective {mode!r}; choose one of {OBJECTIVE_MODES}")
    return mode


def _clone(buffers: Params) -> Params:
    # BatchNorm writes its running statistics in place; replay must never touch the stored snapshot
    return {name: b.clone() for name, b in buffers.items()}


def one_step_objective(
    model: nn.Module,
    loss_fn: LossFn,
    warp_params: Params,
    params: Params,
    buffers: Params,
    task_batch: Batch,
    meta_batch: Batch,
    inner_lr: float | Params,
    mode: str = "exact",
) -> torch.Tensor:
    r"""𝓛(φ; θ) for one point θ (``params``) with its BatchNorm statistics ``buffers``; see the module docstring.

    Differentiable with respect to ``warp_params`` (pass the model's φ parameters, which require grad).
    The network must be in train mode (``warp_objective`` takes care of it).

    >>> from warpkit.engine.warp import ScaleWarp
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), ScaleWarp(1))   # f(x) = φ θ x
    >>> theta, phi = {"0.weight": torch.ones(1, 1)}, {"1.scale": torch.ones(1, requires_grad=True)}
    >>> batch = (torch.ones(1, 1), torch.zeros(1, 1))   # x = 1, y = 0: L(θ; φ) = (φ θ)²
    >>> mse = torch.nn.functional.mse_loss
    >>> exact = one_step_objective(model, mse, phi, theta, {}, batch, batch, 0.1, "exact")
    >>> round(float(exact.detach()), 4)   # θ' = θ − α ∇_θ L = 1 − 0.1 · 2 = 0.8, L(θ'; φ) = 0.8²
    0.64
    >>> round(float(torch.autograd.grad(exact, phi["1.scale"])[0]), 4)   # Eq. 11: d/dφ [φ (1 − 0.2 φ²)]² at φ = 1
    0.64
    >>> first_order = one_step_objective(model, mse, phi, theta, {}, batch, batch, 0.1, "first_order")
    >>> round(float(torch.autograd.grad(first_order, phi["1.scale"])[0]), 4)   # Eq. 12: θ' = 0.8 fixed, d/dφ (0.8 φ)²
    1.28
    """
    meta_inputs, meta_target = meta_batch
    if mode == "approx":  # no lookahead:  L_meta(θ; φ; B)
        output = forward(model, {**params, **warp_params}, _clone(buffers), meta_inputs)
        return loss_fn(output, meta_target)

    task_inputs, task_target = task_batch
    # Eq. 11 (exact): g(φ) = ∇_θ L_task(θ; φ; A) keeps φ, so ∂/∂φ reaches −α ∂²L_task/∂φ∂θ.
    # Eq. 12 (first order): g = sg(∇_θ L_task(θ; φ; A)), a constant: computed with φ detached.
    phi_inner = warp_params if mode == "exact" else {name: p.detach() for name, p in warp_params.items()}

    def task_loss(theta: Params, task_buffers: Params) -> torch.Tensor:
        return loss_fn(forward(model, {**theta, **phi_inner}, task_buffers, task_inputs), task_target)

    inner_gradient = grad(task_loss)(params, _clone(buffers))  # g = ∇_θ L_task(θ; φ; A)
    stepped = {name: params[name] - _step_size(inner_lr, name) * inner_gradient[name]  # θ' = θ − α g
               for name in params}
    output = forward(model, {**stepped, **warp_params}, _clone(buffers), meta_inputs)
    return loss_fn(output, meta_target)  # 𝓛(φ; θ) = L_meta(θ'; φ; B)  (Eq. 11 exact, Eq. 12 with g held fixed)


def _step_size(inner_lr, name: str):
    return inner_lr[name] if isinstance(inner_lr, dict) else inner_lr


def replay_batches(tasks: Sequence[Task], points: Sequence[TrajectoryPoint]) -> tuple[list[Batch], list[Batch]]:
    """Draw, for every point, a task batch and a *different* meta batch from that point's task.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> tasks = [SupervisedTask(torch.randn(6, 2), torch.randn(6), batch_size=3)]
    >>> points = [TrajectoryPoint(0, step, {}, {}) for step in range(2)]
    >>> task_batches, meta_batches = replay_batches(tasks, points)
    >>> len(task_batches), len(meta_batches), tuple(task_batches[0][0].shape)
    (2, 2, (3, 2))
    """
    task_batches, meta_batches = [], []
    for point in points:
        task_batch, meta_batch = tasks[point.task_index].sample_meta_batches(point.step)
        task_batches.append(task_batch)
        meta_batches.append(meta_batch)
    return task_batches, meta_batches


def warp_objective(model: nn.Module, loss_fn: LossFn, warp_params: Params, points: Sequence[TrajectoryPoint],
                   task_batches: Sequence[Batch], meta_batches: Sequence[Batch], inner_lr: float | Params,
                   mode: str = "exact", batched: bool = True) -> torch.Tensor:
    r"""Mean of the one-step objective over ``points`` (each with its own task and meta batch).

    ``batched=True`` evaluates all points in one ``vmap`` over stacked states and batches; ``batched=False``
    loops over points (the reference). Both give the same value and φ-gradient.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> from warpkit.engine.warp import ScaleWarp, task_parameters, warp_parameters
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1), ScaleWarp(1))
    >>> theta = {name: p.detach() for name, p in task_parameters(model).items()}
    >>> points = [TrajectoryPoint(0, step, theta, {}) for step in range(3)]
    >>> task = SupervisedTask(torch.randn(8, 2), torch.randn(8, 1), batch_size=4)
    >>> task_batches, meta_batches = replay_batches([task], points)
    >>> args = (model, torch.nn.functional.mse_loss, warp_parameters(model), points, task_batches, meta_batches, 0.1)
    >>> torch.allclose(warp_objective(*args, batched=True), warp_objective(*args, batched=False))
    True
    """
    check_mode(mode)
    if not (len(points) == len(task_batches) == len(meta_batches)):
        raise ValueError(
            f"warp_objective(): {len(points)} points but {len(task_batches)} task batches and "
            f"{len(meta_batches)} meta batches; give one of each per point"
        )
    with train_mode(model):
        if not batched:
            losses = [
                one_step_objective(model, loss_fn, warp_params, p.params, p.buffers, a, b, inner_lr, mode)
                for p, a, b in zip(points, task_batches, meta_batches)
            ]
            return torch.stack(losses).mean()
        params, buffers = stack_points(list(points))
        stacked_task = stack_batches(list(task_batches))
        stacked_meta = stack_batches(list(meta_batches))

        def objective_at(point_params, point_buffers, task_batch, meta_batch):
            return one_step_objective(
                model, loss_fn, warp_params, point_params, point_buffers, task_batch, meta_batch, inner_lr, mode
            )

        # the fused batch_norm kernel's double backward is wrong under vmap (see warpkit.engine.batchnorm)
        with elementary_batch_norm():
            losses = vmap(objective_at, randomness="different")(params, buffers, stacked_task, stacked_meta)
        return losses.mean()


def warp_meta_gradient(model: nn.Module, loss_fn: LossFn, warp_params: Params, points: Sequence[TrajectoryPoint],
                       task_batches: Sequence[Batch], meta_batches: Sequence[Batch], inner_lr: float | Params,
                       mode: str = "exact", batched: bool = True) -> tuple[Params, float]:
    """∂/∂φ of :func:`warp_objective`; returns ``(gradients by name, objective value)``.

    >>> from warpkit.engine.warp import ScaleWarp, warp_parameters
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), ScaleWarp(1))   # f(x) = φ θ x, φ = 1
    >>> points = [TrajectoryPoint(0, 0, {"0.weight": torch.ones(1, 1)}, {})]          # θ = 1
    >>> batch = (torch.ones(1, 1), torch.zeros(1, 1))
    >>> gradients, value = warp_meta_gradient(model, torch.nn.functional.mse_loss, warp_parameters(model), points,
    ...                                       [batch], [batch], 0.1, mode="first_order")
    >>> round(value, 4), round(float(gradients["1.scale"]), 4)   # Eq. 12 at θ' = 0.8: (0.8 φ)², 2 · 0.8² φ
    (0.64, 1.28)
    """
    loss = warp_objective(model, loss_fn, warp_params, points, task_batches, meta_batches, inner_lr, mode, batched)
    names = list(warp_params)
    gradients = torch.autograd.grad(loss, [warp_params[n] for n in names], allow_unused=True)
    return (
        {n: (g if g is not None else torch.zeros_like(warp_params[n])) for n, g in zip(names, gradients)},
        float(loss.detach()),
    )
