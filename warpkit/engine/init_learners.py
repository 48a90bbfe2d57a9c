r"""Initialisation meta-learners: each turns one task's adaptation into a gradient for the shared θ_0.

In WarpGrad's joint meta-objective J(φ, θ_0) = 𝓛(φ) + λ C(θ_0) (Flennerhag et al., 2020, Section 3) the
term C(θ_0) is any initialisation meta-learner; :class:`~warpkit.engine.meta.MetaLearner` sums
``task_gradient`` over the meta-batch and takes one step on θ_0. Combined with a warp objective they give
Warp-Leap, Warp-Reptile and Warp-MAML; alone they are the classic baselines.

The examples below share one toy: a linear model and a task whose targets are 3x, adapted three SGD steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from warpkit.engine.adapt import Params, Trajectory, adapt, differentiable_adapt, forward, train_mode
from warpkit.engine.tasks import Task
from warpkit.engine.warp import task_parameters, warp_parameters


class InitLearner:
    """Base class: turns a task's adaptation into a gradient for the shared initialisation θ_0.

    ``needs_states`` asks the adaptation to keep the states θ_k in the trajectory, ``needs_gradients`` to keep
    ∇L_task(θ_k) too; ``needs_trajectory = False`` says the learner runs its own inner loop (MAML), so a
    meta-iteration without a warp objective need not adapt at all. ``meta_parameters()`` lists extra
    meta-learned tensors the learner owns (Meta-SGD's step sizes); they are updated by the initialisation
    optimiser together with θ_0.

    A new learner overrides :meth:`task_gradient` (here: pull θ_0 half-way toward θ_K):

    >>> class HalfReptile(InitLearner):
    ...     def task_gradient(self, learner, task, init_params, trajectory):
    ...         return {n: 0.5 * (init_params[n] - trajectory.final_params[n]) for n in init_params}
    >>> HalfReptile().inner_lr(0.1)  # the inner loop keeps the meta-learner's step size
    0.1
    """

    name = "init"
    needs_states = False
    needs_gradients = False
    needs_trajectory = True

    def task_gradient(self, learner: "MetaLearner", task: Task, init_params: Params,
                      trajectory: Trajectory) -> Params:
        raise NotImplementedError

    def meta_parameters(self) -> dict[str, nn.Parameter]:
        return {}

    def inner_lr(self, default: float | Params) -> float | Params:
        """The step size(s) the inner loop uses; Meta-SGD overrides this with its learned ones."""
        return default


class Leap(InitLearner):
    r"""Leap (Flennerhag et al., 2019): shorten the length of the learning trajectory on the loss surface.

    With z_k = (θ_k, f(θ_k)), Δθ_k = θ_{k+1} − θ_k and Δf_k = f(θ_{k+1}) − f(θ_k), the meta-gradient of one task
    (Jacobians dθ_k/dθ_0 approximated by I, targets z_{k+1} held fixed) is

    .. math::  \nabla C(\theta_0) = -\sum_{k=0}^{K-1} \frac{\Delta\theta_k + \Delta f_k\,\nabla f(\theta_k)}
                                                      {\lVert z_{k+1} - z_k \rVert_2}.

    ``simplified=True`` is the form in the WarpGrad code: drop the loss term, so θ_0 moves along
    Σ_k Δθ_k / ‖Δθ_k‖ (norm over all task parameters jointly).

    ``stabilizer=True`` (the Leap code's default, used for the paper's Leap numbers) replaces Δf_k by −|Δf_k|:
    a step on which the task loss *rose* is treated like one on which it fell by as much, so a noisy uphill step
    never pulls θ_0 toward higher loss (Flennerhag et al., 2019, §3, the stabiliser μ).

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(-1)
    >>> model, task = nn.Linear(1, 1), SupervisedTask(x, 3 * x, batch_size=8)
    >>> init = {n: p.detach().clone() for n, p in model.named_parameters()}
    >>> trajectory = adapt(model, task, nn.functional.mse_loss, 3, 0.1, keep_trajectory=True, keep_gradients=True)
    >>> gradient = Leap().task_gradient(None, task, init, trajectory)
    >>> float(gradient["weight"]) < 0  # a step along −∇C raises θ_0's slope toward the task's slope 3
    True
    """

    needs_states = True

    def __init__(self, simplified: bool = False, stabilizer: bool = True):
        self.simplified = simplified
        self.stabilizer = stabilizer
        self.name = "leap-simplified" if simplified else "leap"
        self.needs_gradients = not simplified

    def __repr__(self) -> str:
        return f"Leap(simplified={self.simplified}, stabilizer={self.stabilizer})"

    def task_gradient(self, learner, task, init_params, trajectory):
        states = trajectory.params + [trajectory.final_params]
        losses = trajectory.losses + [trajectory.final_loss]
        gradient = {name: torch.zeros_like(t) for name, t in init_params.items()}
        for k in range(trajectory.num_steps):
            delta = {name: states[k + 1][name] - states[k][name] for name in gradient}
            squared = sum(float(d.pow(2).sum()) for d in delta.values())
            if self.simplified:
                norm = math.sqrt(squared)
                loss_delta = 0.0
            else:
                loss_delta = losses[k + 1] - losses[k]
                if self.stabilizer and loss_delta > 0:
                    loss_delta = -loss_delta
                norm = math.sqrt(squared + loss_delta**2)
            if norm == 0.0:
                continue
            for name in gradient:
                direction = delta[name]
                if not self.simplified:
                    direction = direction + loss_delta * trajectory.gradients[k][name]
                gradient[name] -= direction / norm
        return gradient


META_SPLITS = ("train", "held-out")


def _check_split(split: str) -> str:
    if split not in META_SPLITS:
        raise ValueError(f"meta_split must be one of {META_SPLITS}, got {split!r}")
    return split


def meta_batch(task: Task, step: int, split: str = "train"):
    """The batch a MAML-style learner takes its meta loss on: a fresh training-split draw
    (``task.sample_meta_batches(step)[1]``) or the task's held-out split (``task.evaluation_batch()``).

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> task = SupervisedTask(torch.zeros(6, 1), torch.zeros(6), torch.ones(2, 1), torch.ones(2), batch_size=3)
    >>> [tuple(meta_batch(task, 0, split)[0].shape) for split in META_SPLITS]
    [(3, 1), (2, 1)]
    """
    if split == "held-out":
        return task.evaluation_batch()
    return task.sample_meta_batches(step)[1]


class Reptile(InitLearner):
    r"""Reptile (Nichol et al., 2018): move θ_0 toward the adapted parameters, ∇C(θ_0) = θ_0 − θ_K.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(-1)
    >>> model, task = nn.Linear(1, 1), SupervisedTask(x, 3 * x, batch_size=8)
    >>> init = {n: p.detach().clone() for n, p in model.named_parameters()}
    >>> trajectory = adapt(model, task, nn.functional.mse_loss, 3, 0.1)
    >>> gradient = Reptile().task_gradient(None, task, init, trajectory)
    >>> torch.equal(gradient["weight"], init["weight"] - trajectory.final_params["weight"])
    True
    """

    name = "reptile"

    def task_gradient(self, learner, task, init_params, trajectory):
        return {name: init_params[name] - trajectory.final_params[name] for name in init_params}  # θ_0 − θ_K


class FOMAML(InitLearner):
    r"""First-order MAML: ∇C(θ_0) = ∇_θ L_meta(θ_K) on a fresh meta batch, the Jacobian dθ_K/dθ_0 taken as I.

    ``steps=None`` uses the end of the task's own trajectory; an integer runs a separate ``steps``-step
    adaptation from θ_0 (MAML's short inner loop). ``meta_split`` says where the meta batch comes from:
    ``"train"`` (a fresh draw from the task's training split, ``task.sample_meta_batches``) or ``"held-out"``
    (the task's held-out split, ``task.evaluation_batch()``, as in the MAML/FOMAML baselines of the Leap and
    WarpGrad Omniglot code).

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.options import InitTraining, InnerLoop
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(-1)
    >>> model, task = nn.Linear(1, 1), SupervisedTask(x, 3 * x, x, 3 * x, batch_size=8)
    >>> init = {n: p.detach().clone() for n, p in model.named_parameters()}
    >>> learner = MetaLearner(model, nn.functional.mse_loss, inner=InnerLoop(lr=0.1, steps=3), warp=None,
    ...                       init=InitTraining(FOMAML(steps=3)))
    >>> gradient = FOMAML(steps=3).task_gradient(learner, task, init, None)  # ∇_θ L_meta at θ_3
    >>> float(gradient["weight"]) < 0  # θ_3's slope is still below 3: the meta loss asks for a larger one
    True
    """

    name = "fomaml"

    def __init__(self, steps: int | None = None, meta_split: str = "train"):
        self.steps = steps
        self.needs_trajectory = steps is None
        self.meta_split = _check_split(meta_split)

    def task_gradient(self, learner, task, init_params, trajectory):
        if self.steps is None:
            final_params, final_buffers, steps = trajectory.final_params, trajectory.final_buffers, trajectory.num_steps
        else:
            short = adapt(learner.model, task, learner.loss_fn, self.steps, learner.current_inner_lr(),
                          init_params=init_params, keep_trajectory=False, final_loss=False)
            final_params, final_buffers, steps = short.final_params, short.final_buffers, self.steps
        theta = {name: t.detach().requires_grad_(True) for name, t in final_params.items()}
        phi = {name: p.detach() for name, p in warp_parameters(learner.model).items()}
        inputs, target = meta_batch(task, steps, self.meta_split)
        with train_mode(learner.model):
            loss = learner.loss_fn(forward(learner.model, {**theta, **phi}, dict(final_buffers), inputs), target)
        gradients = torch.autograd.grad(loss, list(theta.values()), allow_unused=True)
        return {n: (g if g is not None else torch.zeros_like(theta[n])) for n, g in zip(theta, gradients)}


class MAML(InitLearner):
    r"""MAML (Finn et al., 2017), second order: backpropagate the meta loss at θ_K through the ``steps``-step
    inner loop to θ_0,

    .. math::  \nabla C(\theta_0) = \Big(\frac{d\theta_K}{d\theta_0}\Big)^{\!\top} \nabla_\theta L_{\text{meta}}(\theta_K).

    Memory grows with ``steps`` (about 5 in practice). ``learn_warps=True`` also returns ∂L_meta/∂φ through the
    loop: linear warps trained this way are T-Nets (Lee & Choi, 2018). ``meta_split``: as for :class:`FOMAML`.

    On a one-parameter model f(x) = w·x fitted to y = 2x by SGD, dθ_K/dθ_0 = (1 − 2α·mean(x²))^K < 1:

    >>> from warpkit.engine.meta import MetaLearner
    >>> from warpkit.engine.options import InitTraining, InnerLoop
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> x = torch.tensor([[1.0], [-1.0]])
    >>> model, task = nn.Linear(1, 1, bias=False), SupervisedTask(x, 2 * x, x, 2 * x, batch_size=2)
    >>> learner = MetaLearner(model, nn.functional.mse_loss, inner=InnerLoop(lr=0.1, steps=3), warp=None,
    ...                       init=InitTraining(MAML(steps=3)))
    >>> init = {"weight": model.weight.detach().clone()}
    >>> second = MAML(steps=3).task_gradient(learner, task, init, None)
    >>> first = FOMAML(steps=3).task_gradient(learner, task, init, None)
    >>> round(float(second["weight"] / first["weight"]), 4)  # (1 − 2·0.1·1)³ = 0.512
    0.512
    """

    name = "maml"
    needs_trajectory = False

    def __init__(self, steps: int = 5, learn_warps: bool = False, meta_split: str = "train"):
        self.steps = steps
        self.learn_warps = learn_warps
        self.meta_split = _check_split(meta_split)

    def _differentiable_lr(self, learner) -> float | Params:
        return learner.current_inner_lr()

    def task_gradient(self, learner, task, init_params, trajectory):
        theta0 = {name: t.detach().clone().requires_grad_(True) for name, t in init_params.items()}
        warp = warp_parameters(learner.model)
        phi = dict(warp) if self.learn_warps else {name: p.detach() for name, p in warp.items()}
        lr = self._differentiable_lr(learner)
        final, buffers = differentiable_adapt(learner.model, task, learner.loss_fn, self.steps, lr,
                                              init_params=theta0, warp_params=phi)
        inputs, target = meta_batch(task, self.steps, self.meta_split)
        with train_mode(learner.model):
            loss = learner.loss_fn(forward(learner.model, {**final, **phi}, buffers, inputs), target)
        targets = dict(theta0)
        if self.learn_warps:
            targets.update(warp)
        targets.update(self.meta_parameters())
        gradients = torch.autograd.grad(loss, list(targets.values()), allow_unused=True)
        return {n: (g if g is not None else torch.zeros_like(targets[n])) for n, g in zip(targets, gradients)}


class MetaSGD(MAML):
    r"""Meta-SGD (Li et al., 2017): MAML that also meta-learns a step size per parameter entry,
    θ_{k+1} = θ_k − α ⊙ ∇L_task(θ_k), with α initialised to ``initial_lr``.

    ``attach(model)`` creates one step size per entry of the model's task parameters (``MetaLearner`` calls it):

    >>> learner = MetaSGD(steps=3, initial_lr=0.05)
    >>> learner.attach(nn.Linear(2, 1))
    >>> {name: tuple(alpha.shape) for name, alpha in learner.meta_parameters().items()}
    {'step_size:weight': (1, 2), 'step_size:bias': (1,)}
    """

    name = "meta-sgd"

    def __init__(self, steps: int = 5, initial_lr: float = 0.1):
        super().__init__(steps=steps)
        self.initial_lr = initial_lr
        self.step_sizes: dict[str, nn.Parameter] = {}

    def attach(self, model: nn.Module) -> None:
        self.step_sizes = {
            f"step_size:{name}": nn.Parameter(torch.full_like(p.detach(), self.initial_lr))
            for name, p in task_parameters(model).items()
        }

    def meta_parameters(self):
        return self.step_sizes

    def _as_lr(self) -> Params:
        return {name.split(":", 1)[1]: p for name, p in self.step_sizes.items()}

    def _differentiable_lr(self, learner):
        return self._as_lr()

    def inner_lr(self, default):
        return {name: p.detach() for name, p in self._as_lr().items()}
