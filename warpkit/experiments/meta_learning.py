r"""Lesson 02's experiments: what meta-learning is, on problems small enough to see.

* :class:`QuadraticTask` and :func:`toy_task_family` — tasks τ ~ p(τ) that are 2-D quadratic bowls
  L_τ(θ) = ½ (θ − c_τ)ᵀ A_τ (θ − c_τ), so that a learner's parameters are a point in the plane;
* :func:`init_meta_gradient` — the meta-gradient for the initialisation θ_0 of MAML (Finn et al., 2017),
  first-order MAML, Reptile (Nichol et al., 2018) and Leap (Flennerhag et al., 2019) on one task, written out
  from their equations; :func:`meta_train_initialisation` follows each one for a number of meta-iterations;
* :class:`SineTask` — y = a sin(x + b) regression (the tasks of Finn et al., 2017) whose batches depend only on
  the task's seed and the step, so two implementations that draw batches in a different order still see the
  same data (what an exact comparison of two WarpGrad implementations needs);
* :func:`warped_regressor` — a small MLP with linear warp layers between its hidden layers (θ and φ);
* :data:`SIZES` — the lesson's sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from warpkit.engine.warp import LinearWarp

METHODS = ("MAML", "FOMAML", "Reptile", "Leap")


@dataclass(frozen=True)
class IntroConfig:
    """The sizes of lesson 02 (one of :data:`SIZES`)."""

    toy_tasks: int = 6  # tasks of the 2-D quadratic family
    toy_steps: int = 5  # inner steps K on the toy
    toy_lr: float = 0.3  # inner step size α on the toy
    toy_meta_lr: float = 0.2  # meta step size β on the toy
    toy_meta_iterations: int = 40
    inner_steps: int = 5  # K for the WarpGrad comparison and meta-training on sine tasks
    inner_lr: float = 0.02  # α
    hidden: int = 40
    meta_batch: int = 4
    replay_chunk_size: int = 4
    warp_lr: float = 0.1  # η
    init_lr: float = 0.5  # β (Reptile) for the comparison step
    meta_iterations: int = 40  # meta-training of the warps on sine tasks
    held_out_tasks: int = 30


#: ``fast``: the whole lesson in well under a minute of one CPU core; ``gpu``: more meta-training and held-out
#: tasks (a GPU run's lesson); ``full``: longer meta-training.
SIZES: dict[str, IntroConfig] = {
    "fast": IntroConfig(),
    "gpu": IntroConfig(meta_iterations=100, held_out_tasks=60),
    "full": IntroConfig(meta_iterations=200, held_out_tasks=100, meta_batch=8),
}


# ----------------------------------------------------------------------------------------------------------
# the 2-D toy: tasks are quadratic bowls
# ----------------------------------------------------------------------------------------------------------
@dataclass
class QuadraticTask:
    r"""L(θ) = ½ (θ − c)ᵀ A (θ − c) with minimiser c and a symmetric positive definite curvature A."""

    centre: torch.Tensor
    curvature: torch.Tensor

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        offset = theta - self.centre
        return 0.5 * offset @ self.curvature @ offset

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        return self.curvature @ (theta - self.centre)


def toy_task_family(num: int, seed: int = 0) -> list[QuadraticTask]:
    """``num`` bowls whose minimisers lie on an arc and whose long axes point in different directions."""
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for i in range(num):
        angle = math.pi * (0.15 + 0.7 * i / max(num - 1, 1)) + 0.1 * float(torch.randn(1, generator=generator))
        centre = torch.tensor([2.0 * math.cos(angle), 2.0 * math.sin(angle) - 0.5], dtype=torch.float64)
        turn = float(torch.rand(1, generator=generator)) * math.pi
        rotation = torch.tensor([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]],
                                dtype=torch.float64)
        curvature = rotation @ torch.diag(torch.tensor([1.0, 0.15], dtype=torch.float64)) @ rotation.T
        tasks.append(QuadraticTask(centre, curvature))
    return tasks


def inner_path(task: QuadraticTask, theta0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """θ_0, θ_1, …, θ_K of K gradient steps on ``task`` (shape (K + 1, 2)); differentiable in ``theta0``."""
    path = [theta0]
    for _ in range(steps):
        path.append(path[-1] - lr * task.gradient(path[-1]))
    return torch.stack(path)


def init_meta_gradient(method: str, task: QuadraticTask, theta0: torch.Tensor, lr: float, steps: int
                       ) -> torch.Tensor:
    r"""∇C(θ_0) of one task for ``method`` in :data:`METHODS` (the meta-learner then steps θ_0 ← θ_0 − β∇C):

    * MAML: (dθ_K/dθ_0)ᵀ ∇L(θ_K), backpropagated through the K steps;
    * FOMAML: ∇L(θ_K), the Jacobian dθ_K/dθ_0 replaced by I;
    * Reptile: θ_0 − θ_K;
    * Leap: −Σ_k (Δθ_k + Δf_k ∇L(θ_k)) / ‖(Δθ_k, Δf_k)‖, which shortens the path z_k = (θ_k, L(θ_k)).

    (On one quadratic the meta-loss of MAML and FOMAML is the same; they differ only in the Jacobian.)
    """
    if method == "MAML":
        start = theta0.detach().clone().requires_grad_(True)
        final = inner_path(task, start, lr, steps)[-1]
        return torch.autograd.grad(task.loss(final), start)[0]
    path = inner_path(task, theta0.detach(), lr, steps)
    if method == "FOMAML":
        return task.gradient(path[-1])
    if method == "Reptile":
        return path[0] - path[-1]
    if method == "Leap":
        gradient = torch.zeros_like(theta0)
        for k in range(steps):
            delta, loss_delta = path[k + 1] - path[k], task.loss(path[k + 1]) - task.loss(path[k])
            norm = torch.sqrt(delta.pow(2).sum() + loss_delta**2)
            gradient -= (delta + loss_delta * task.gradient(path[k])) / norm
        return gradient
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def mean_meta_gradient(method: str, tasks: Sequence[QuadraticTask], theta0: torch.Tensor, lr: float,
                       steps: int) -> torch.Tensor:
    """The meta-batch average of :func:`init_meta_gradient` over ``tasks``."""
    return torch.stack([init_meta_gradient(method, t, theta0, lr, steps) for t in tasks]).mean(0)


def meta_train_initialisation(method: str, tasks: Sequence[QuadraticTask], theta0: torch.Tensor, lr: float,
                              steps: int, meta_lr: float, iterations: int) -> torch.Tensor:
    """θ_0 after each of ``iterations`` meta-steps θ_0 ← θ_0 − β ∇C(θ_0) (all tasks each time): (iterations + 1, 2).

    Leap's meta-gradient is a sum of unit vectors, so its step is divided by K to keep the same scale."""
    scale = 1.0 / steps if method == "Leap" else 1.0
    path = [theta0.detach()]
    for _ in range(iterations):
        path.append(path[-1] - meta_lr * scale * mean_meta_gradient(method, tasks, path[-1], lr, steps))
    return torch.stack(path)


def loss_after_adaptation(tasks: Sequence[QuadraticTask], theta0: torch.Tensor, lr: float, steps: int
                          ) -> torch.Tensor:
    """The mean task loss after K steps from θ_0 (what MAML minimises), for θ_0 of shape (..., 2)."""
    flat = theta0.reshape(-1, 2)
    values = [torch.stack([t.loss(inner_path(t, p, lr, steps)[-1]) for t in tasks]).mean() for p in flat]
    return torch.stack(values).reshape(theta0.shape[:-1])


# ----------------------------------------------------------------------------------------------------------
# sine regression with batches fixed by (task seed, step)
# ----------------------------------------------------------------------------------------------------------
class SineTask:
    r"""y = a sin(x + b), a ~ U(0.1, 5), b ~ U(0, π), x ~ U(−5, 5) (Finn et al., 2017).

    A :class:`warpkit.engine.tasks.Task`: ``sample_batch(k)`` is the inner loop's batch at step k;
    ``sample_meta_batches(k)`` the two *other* batches used to replay the point θ_k: a task batch for the
    look-ahead step and a meta batch to score it. Every batch is a function of (seed, step, role) only.
    """

    def __init__(self, seed: int, batch_size: int = 10, dtype: torch.dtype = torch.float64):
        self.seed, self.batch_size, self.dtype = seed, batch_size, dtype
        generator = torch.Generator().manual_seed(seed)
        self.amplitude = 0.1 + 4.9 * float(torch.rand(1, generator=generator))
        self.phase = math.pi * float(torch.rand(1, generator=generator))

    def _batch(self, step: int, role: int, size: int | None = None):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 7 + role)
        x = 10 * torch.rand(size or self.batch_size, 1, generator=generator, dtype=self.dtype) - 5
        return x, self.amplitude * torch.sin(x + self.phase)

    def sample_batch(self, step: int):
        return self._batch(step, 0)

    def sample_meta_batches(self, step: int):
        return self._batch(step, 1), self._batch(step, 2)

    def evaluation_batch(self):
        return self._batch(-1, 3, size=100)


def sine_tasks(num: int, first_seed: int) -> list[SineTask]:
    return [SineTask(first_seed + i) for i in range(num)]


def warped_regressor(hidden: int = 40, seed: int = 0, warp_noise: float = 0.0) -> nn.Module:
    """x ↦ y through Linear → tanh → warp → Linear → tanh → warp → Linear, in float64.

    The Linear layers are θ, the :class:`warpkit.engine.warp.LinearWarp` layers φ (identity at start);
    ``warp_noise > 0`` moves φ away from the identity, as a stand-in for a warp that has been meta-learned."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), LinearWarp(hidden), nn.Linear(hidden, hidden),
                          nn.Tanh(), LinearWarp(hidden), nn.Linear(hidden, 1)).double()
    with torch.no_grad():
        for module in model:
            if isinstance(module, LinearWarp):
                for p in module.parameters():
                    p.add_(warp_noise * torch.randn_like(p))
    return model


__all__ = ["METHODS", "IntroConfig", "SIZES", "QuadraticTask", "toy_task_family", "inner_path",
           "init_meta_gradient", "mean_meta_gradient", "meta_train_initialisation", "loss_after_adaptation",
           "SineTask", "sine_tasks", "warped_regressor"]
