r"""Appendix D's experiment: toy loss surfaces of the plane and a warp meta-learned on a family of "mountains".

* :class:`QuadraticBowl`, a valley of condition number κ; :func:`peaks` and the Appendix D family
  (:class:`MountainFamily`, :class:`MountainSurface`): every task is one surface, every surface a few bumps;
* :class:`WarpedPoint`, the Appendix D learner: θ ∈ R² mapped to the native point γ = Ω(θ) = θ + g(θ);
* :class:`MountainMetaTraining`: Warp-Reptile (Algorithm 2 with the exact objective, Eq. 11, and Reptile for θ_0)
  against the same initialisation learner without a warp, on the same meta-batches;
* :func:`batched_descent_paths` and :func:`final_losses`, the held-out evaluation.

The geometry itself (Jacobians, G⁻¹ = JJᵀ, Riemannian steps) lives in :mod:`warpkit.engine.geometry`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from warpkit.engine.geometry import Warp, check_path_args, regular_grid, rotation_matrix, warp_points
from warpkit.engine.init_learners import Reptile
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.warp import ResidualMLPWarp
from warpkit.kit.notebook import progress

# ----------------------------------------------------------------------------------------------------------
# loss surfaces
# ----------------------------------------------------------------------------------------------------------
class QuadraticBowl:
    r"""L(γ) = ½ (γ − c)ᵀ H (γ − c) with H = R(ψ) diag(1, κ) R(ψ)ᵀ: a valley of condition number κ whose long
    axis points at angle ψ. Plain GD zig-zags across it; a warp stretching along the valley straightens it."""

    def __init__(self, condition: float = 10.0, angle: float = 0.5, centre=(0.0, 0.0), scale: float = 1.0):
        if not condition >= 1:
            raise ValueError(f"QuadraticBowl: condition must be >= 1, got {condition!r}")
        turn = rotation_matrix(angle)
        self.hessian = scale * turn @ torch.diag(torch.tensor([1.0, float(condition)])) @ turn.T
        self.centre = torch.as_tensor(centre, dtype=torch.get_default_dtype())

    def __call__(self, gamma: Tensor) -> Tensor:
        d = gamma - self.centre.to(gamma.dtype)
        return 0.5 * ((d @ self.hessian.to(gamma.dtype)) * d).sum(-1)


def peaks(x: Tensor, amplitudes=(3.0, 10.0, 1.0 / 3.0), shift=(0.0, 0.0)) -> Tensor:
    r"""MATLAB's ``peaks`` with per-term amplitudes a and a shift c, at u = x − c:

    .. math::  f(x) = a_1 (1-u_1)^2 e^{-u_1^2-(u_2+1)^2} - a_2 \big(\tfrac{u_1}{5} - u_1^3 - u_2^5\big)
               e^{-u_1^2-u_2^2} - a_3 e^{-(u_1+1)^2 - u_2^2}.

    The third term is e^{−(u₁+1)² − u₂²}: the formula printed in the paper's Appendix D has u₁ twice there
    (−(u₁+1)² − u₁²), a typo reported by a third-party reproduction; MATLAB's ``peaks`` has u₂. With the
    default amplitudes and no shift this is MATLAB's ``peaks`` exactly. ``x`` has shape (..., 2).
    """
    amplitudes = torch.as_tensor(amplitudes, dtype=x.dtype)
    shift = torch.as_tensor(shift, dtype=x.dtype)
    u = x - shift
    u1, u2 = u[..., 0], u[..., 1]
    return (amplitudes[..., 0] * (1 - u1) ** 2 * torch.exp(-u1**2 - (u2 + 1) ** 2)
            - amplitudes[..., 1] * (u1 / 5 - u1**3 - u2**5) * torch.exp(-u1**2 - u2**2)
            - amplitudes[..., 2] * torch.exp(-(u1 + 1) ** 2 - u2**2))


class MountainSurface:
    r"""One surface of the Appendix D family: L(x) = s · peaks(x; a, c) − m, with m the minimum of
    s · peaks(·; a, c) over the family's domain, so L ≥ 0 there and L = 0 at the global minimum (the final loss
    of a run *is* its sub-optimality). ``params`` packs (a₁, a₂, a₃, c₁, c₂, s, m) for batched use
    (:func:`mountain_value`)."""

    def __init__(self, amplitudes, shift, scale: float, extent=(-3.0, 3.0, -3.0, 3.0)):
        self.amplitudes = torch.as_tensor(amplitudes, dtype=torch.get_default_dtype())
        self.shift = torch.as_tensor(shift, dtype=torch.get_default_dtype())
        self.scale = float(scale)
        self.extent = tuple(extent)
        self.offset = 0.0
        self.minimiser, self.offset = self._global_minimum()

    def _global_minimum(self) -> tuple[Tensor, float]:
        """Grid search over the domain, refined twice by a finer grid around the best point (the error in the
        minimum value is then ~1e-9: curvature × (spacing / 400)²)."""
        x0, x1, y0, y1 = self.extent
        window = (x0, x1, y0, y1)
        with torch.no_grad():
            for _ in range(3):
                grid = regular_grid(window, 81).reshape(-1, 2)
                values = self.raw(grid)
                best = grid[values.argmin()]
                half = 2 * (window[1] - window[0]) / 80
                window = (max(x0, best[0].item() - half), min(x1, best[0].item() + half),
                          max(y0, best[1].item() - half), min(y1, best[1].item() + half))
        return best, float(values.min())

    def raw(self, x: Tensor) -> Tensor:
        """s · peaks(x; a, c), without the offset."""
        return self.scale * peaks(x, self.amplitudes, self.shift)

    def __call__(self, x: Tensor) -> Tensor:
        return self.raw(x) - self.offset

    @property
    def params(self) -> Tensor:
        return torch.cat([self.amplitudes, self.shift, torch.tensor([self.scale, self.offset])])

    def __repr__(self) -> str:
        a = ", ".join(f"{v:.2f}" for v in self.amplitudes.tolist())
        c = ", ".join(f"{v:.2f}" for v in self.shift.tolist())
        return f"MountainSurface(amplitudes=({a}), shift=({c}), scale={self.scale:g})"


def mountain_value(x: Tensor, params: Tensor) -> Tensor:
    """L(x) of the surface packed in ``params`` (see :attr:`MountainSurface.params`); vmappable over both."""
    return params[5] * peaks(x, params[:3], params[3:5]) - params[6]


@dataclass(frozen=True)
class MountainFamily:
    r"""The randomised "mountains" of the paper's Appendix D: MATLAB ``peaks`` (see :func:`peaks`, with the
    corrected third term) with random per-term amplitudes and a random shift.

    The randomisation is ours (the paper's text does not pin it down): for each surface,

    * amplitudes a = (3, 10, 1/3) ⊙ (1 + ε), ε_i ~ U(−``amplitude_jitter``, ``amplitude_jitter``) independently,
      so the depths of the valleys and heights of the peaks change, and which local minimum a path reaches;
    * shift c ~ U(−``max_shift``, ``max_shift``)², so the whole landscape moves and no single starting point is
      in the global minimum's valley for every surface;
    * a common scale s = ``scale`` (default 1/4): peaks has curvature up to ≈ 34, so plain GD at the toy's
      step size 0.1 would be unstable on unscaled surfaces (0.1 × 34 > 2); at s = 1/4 it is stable
      (0.1 × 8.4 < 2) and a win for the warp is about geometry, not about rescuing a diverging baseline.

    Surfaces are offset to have minimum 0 on ``extent`` (:class:`MountainSurface`).
    """

    amplitude_jitter: float = 0.5
    max_shift: float = 1.0
    scale: float = 0.25
    extent: tuple = (-3.0, 3.0, -3.0, 3.0)

    def __post_init__(self):
        if not 0 <= self.amplitude_jitter < 1:
            raise ValueError(f"MountainFamily: amplitude_jitter must be in [0, 1), got {self.amplitude_jitter!r}")
        if self.max_shift < 0 or self.scale <= 0:
            raise ValueError(f"MountainFamily: need max_shift >= 0 and scale > 0, got {self.max_shift!r}, "
                             f"{self.scale!r}")

    def sample(self, num: int, seed: int | None = None, generator: torch.Generator | None = None
               ) -> list[MountainSurface]:
        """``num`` surfaces drawn with ``generator`` (or a fresh one seeded with ``seed``)."""
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        dtype = torch.get_default_dtype()
        nominal = torch.tensor([3.0, 10.0, 1.0 / 3.0], dtype=dtype)
        jitter = (2 * torch.rand(num, 3, generator=generator, dtype=dtype) - 1) * self.amplitude_jitter
        shifts = (2 * torch.rand(num, 2, generator=generator, dtype=dtype) - 1) * self.max_shift
        return [MountainSurface(nominal * (1 + jitter[i]), shifts[i], self.scale, self.extent) for i in range(num)]


# ----------------------------------------------------------------------------------------------------------
# the mountains as warpkit tasks (so WarpGrad's engine meta-learns on them like on any other task)
# ----------------------------------------------------------------------------------------------------------
class SurfaceTask:
    r"""A 2-D surface as a :class:`warpkit.engine.tasks.Task`. The "data" of a batch is the surface itself: a batch is
    ``(dummy input, surface params)`` and :func:`surface_loss` evaluates the surface at the model's output.
    The loss is deterministic, so the task batch and the meta batch of a replayed point coincide (there is no
    data to draw twice)."""

    def __init__(self, surface: MountainSurface):
        self.surface = surface
        self._batch = (torch.zeros(1), surface.params)

    def sample_batch(self, step: int):
        return self._batch

    def sample_meta_batches(self, step: int):
        return self._batch, self._batch

    def evaluation_batch(self):
        return self._batch


def surface_loss(output: Tensor, params: Tensor) -> Tensor:
    """The engine's ``loss_fn`` for :class:`SurfaceTask`: the surface packed in ``params`` at the point
    ``output`` (= γ = Ω(θ) for :class:`WarpedPoint`)."""
    return mountain_value(output, params)


class WarpedPoint(nn.Module):
    r"""The Appendix D learner: the task parameters are one point θ ∈ R² (``theta``) and the model's output is
    the native point γ = Ω(θ) = θ + g(θ), g a 2-layer tanh MLP (hidden 30) whose last layer starts at zero
    (:class:`warpkit.engine.warp.ResidualMLPWarp`; identity-initialised, so that it covers the whole domain from the
    start). ``warp=False`` gives the unwarped learner γ = θ (the SGD baseline). The input is ignored."""

    def __init__(self, init=(0.0, 0.0), warp: bool = True, hidden: int = 30):
        super().__init__()
        self.theta = nn.Parameter(torch.as_tensor(init, dtype=torch.get_default_dtype()).clone())
        self.warp = ResidualMLPWarp(2, hidden=hidden, num_hidden_layers=1, activation="tanh") if warp else None

    def forward(self, inputs: Tensor | None = None) -> Tensor:
        return self.theta if self.warp is None else self.warp(self.theta)

    def omega(self) -> Callable[[Tensor], Tensor]:
        """Ω as a plain function of θ (a frozen copy of the current warp), for drawing and paths."""
        if self.warp is None:
            return lambda theta: theta
        frozen = copy.deepcopy(self.warp).requires_grad_(False)
        return frozen


def batched_descent_paths(warp: Warp | None, theta0: Tensor, surfaces: Sequence[MountainSurface], lr: float,
                          steps: int) -> Tensor:
    r"""GD on θ of L_i(Ω(θ)) from one θ_0 on every surface at once (``torch.func.vmap`` over surfaces), returned
    in native coordinates γ = Ω(θ): shape (surfaces, steps + 1, 2). ``warp=None`` is plain GD on γ."""
    check_path_args(lr, steps)
    warp = warp if warp is not None else (lambda theta: theta)
    params = torch.stack([s.params for s in surfaces])
    step_gradient = vmap(grad(lambda theta, p: mountain_value(warp(theta), p)))
    theta = torch.as_tensor(theta0, dtype=params.dtype).detach().expand(len(surfaces), 2).clone()
    thetas = [theta]
    for _ in range(steps):
        theta = (theta - lr * step_gradient(theta, params)).detach()
        thetas.append(theta)
    thetas = torch.stack(thetas, dim=1)
    with torch.no_grad():
        return warp_points(warp, thetas.reshape(-1, 2)).reshape(thetas.shape)


def final_losses(paths: Tensor, surfaces: Sequence[MountainSurface]) -> Tensor:
    """L_i(γ_i,K) for paths (surfaces, K + 1, 2) from :func:`batched_descent_paths`."""
    params = torch.stack([s.params for s in surfaces])
    with torch.no_grad():
        return vmap(mountain_value)(paths[:, -1], params)


@dataclass
class MountainSnapshotState:
    """Meta-learned state after ``iteration`` meta-iterations: the warp Ω (a frozen copy), WarpGrad's θ_0 and
    the SGD baseline's θ_0."""

    iteration: int
    warp: Callable
    theta0: Tensor
    sgd_init: Tensor


class MountainMetaTraining:
    r"""Appendix D with warpkit's engine: meta-learn a warp Ω(θ) = θ + g(θ) and an initialisation θ_0 with
    WarpGrad's offline algorithm (:class:`warpkit.engine.meta.MetaLearner`, objective Eq. 11 ``"exact"`` by default,
    Reptile for θ_0: Warp-Reptile) on training surfaces; in parallel, meta-learn the SGD baseline's
    initialisation with the same initialisation learner and no warp, on the same meta-batches.

    Both adapt ``steps`` steps of SGD at ``lr`` per task, as at test time. :meth:`run` can be called again to
    continue (interrupting it keeps every finished meta-iteration); a snapshot is kept every
    ``snapshot_every`` iterations (and at 0) for the geometry-over-meta-training figures.
    """

    def __init__(self, train_surfaces: Sequence[MountainSurface], meta_batch: int = 20, lr: float = 0.1,
                 steps: int = 100, objective: str = "exact", warp_lr: float = 3e-3, init_lr: float = 0.1,
                 replay_chunk_size: int = 25, replay_epochs: int = 1, snapshot_every: int = 5, seed: int = 0,
                 replay: str = "auto"):
        if meta_batch > len(train_surfaces):
            raise ValueError(f"meta_batch={meta_batch} exceeds the {len(train_surfaces)} training surfaces")
        self.train_surfaces, self.meta_batch = list(train_surfaces), meta_batch
        self.lr, self.steps, self.snapshot_every = lr, steps, snapshot_every
        torch.manual_seed(seed)
        self.model = WarpedPoint(warp=True)
        self.baseline = WarpedPoint(warp=False)
        inner = InnerLoop(lr=lr, steps=steps, batched=True)
        warp = WarpTraining(objective, lr=warp_lr, optimizer="adam", points_per_step=replay_chunk_size,
                            passes=replay_epochs, replay=replay)
        self.warpgrad = MetaLearner(self.model, surface_loss, inner=inner, warp=warp,
                                    init=InitTraining(Reptile(), lr=init_lr), seed=seed)
        self.sgd = MetaLearner(self.baseline, surface_loss, inner=inner, warp=None,
                               init=InitTraining(Reptile(), lr=init_lr), seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict] = []
        self.snapshots: list[MountainSnapshotState] = [self.snapshot()]

    @property
    def iteration(self) -> int:
        return self.warpgrad.iteration

    def snapshot(self) -> MountainSnapshotState:
        return MountainSnapshotState(self.iteration, self.model.omega(), self.model.theta.detach().clone(),
                                     self.baseline.theta.detach().clone())

    def run(self, iterations: int, show_progress: bool = True) -> "MountainMetaTraining":
        """``iterations`` more meta-iterations (same meta-batch for WarpGrad and the baseline)."""
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"MountainMetaTraining.run(): iterations must be an int >= 0, got {iterations!r}")
        for _ in progress(range(iterations), show=show_progress, desc="meta-training"):
            index = torch.randperm(len(self.train_surfaces), generator=self.generator)[: self.meta_batch]
            tasks = [SurfaceTask(self.train_surfaces[i]) for i in index]
            warp_stats = self.warpgrad.meta_step(tasks)
            sgd_stats = self.sgd.meta_step(tasks)
            self.history.append({"iteration": self.iteration, "warp_task_loss_last": warp_stats.task_loss_last,
                                 "sgd_task_loss_last": sgd_stats.task_loss_last,
                                 "warp_objective": warp_stats.warp_objective})
            if self.iteration % self.snapshot_every == 0:
                self.snapshots.append(self.snapshot())
        if self.snapshots[-1].iteration != self.iteration:
            self.snapshots.append(self.snapshot())
        return self

    def evaluate(self, surfaces: Sequence[MountainSurface], snapshot: MountainSnapshotState | None = None
                 ) -> dict:
        """100-step paths (same steps and lr as training) on ``surfaces`` with and without the warp, each from
        its own meta-learned initialisation; returns the paths and final losses (tensors over surfaces), plus
        an ablation: plain SGD started at WarpGrad's native start Ω(θ_0) (``same_start_*``)."""
        snapshot = snapshot or self.snapshots[-1]
        warped = batched_descent_paths(snapshot.warp, snapshot.theta0, surfaces, self.lr, self.steps)
        sgd = batched_descent_paths(None, snapshot.sgd_init, surfaces, self.lr, self.steps)
        # ablation: plain SGD from WarpGrad's own native start γ_0 = Ω(θ_0), to separate start from geometry
        with torch.no_grad():
            warp_start = snapshot.warp(snapshot.theta0)
        same_start = batched_descent_paths(None, warp_start, surfaces, self.lr, self.steps)
        return {"warp_paths": warped, "sgd_paths": sgd, "warp_final": final_losses(warped, surfaces),
                "sgd_final": final_losses(sgd, surfaces), "same_start_paths": same_start,
                "same_start_final": final_losses(same_start, surfaces)}


# ----------------------------------------------------------------------------------------------------------
# the warp's own effect: a variant in which the warp cannot move the start
# ----------------------------------------------------------------------------------------------------------
class StartedSurfaceTask(SurfaceTask):
    """A surface with its own start s ∈ R²: a batch is ``(s, surface params)``, read by :class:`PinnedStartPoint`."""

    def __init__(self, surface: MountainSurface, start: Tensor):
        super().__init__(surface)
        self._batch = (torch.as_tensor(start, dtype=surface.params.dtype), surface.params)


class PinnedStartPoint(nn.Module):
    r"""The Appendix D warp, translated so that it cannot move the start: with s the task's start (the model's
    input) and Ω(x) = x + g(x) the learned warp,

    .. math::  \gamma = \Omega_s(\theta) = \Omega(s + \theta) - \Omega(s) + s, \qquad \theta_0 = 0,

    so γ_0 = s for every φ, while the Jacobian of Ω_s at θ is the Jacobian of Ω at s + θ: the geometry is Ω's and
    is tied to the plane (not to the start). θ_0 stays 0 (no initialisation learner)."""

    def __init__(self, hidden: int = 30):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(2, dtype=torch.get_default_dtype()))
        self.warp = ResidualMLPWarp(2, hidden=hidden, num_hidden_layers=1, activation="tanh")

    def forward(self, start: Tensor) -> Tensor:
        return self.warp(start + self.theta) - self.warp(start) + start


def random_starts(num: int, extent, seed: int) -> Tensor:
    """``num`` points uniform on ``extent`` (x0, x1, y0, y1)."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.tensor([extent[0], extent[2]], dtype=torch.get_default_dtype())
    high = torch.tensor([extent[1], extent[3]], dtype=torch.get_default_dtype())
    return low + (high - low) * torch.rand(num, 2, generator=generator, dtype=low.dtype)


def started_final_losses(warp: Warp | None, starts: Tensor, surfaces: Sequence[MountainSurface], lr: float,
                         steps: int) -> Tensor:
    r"""Final loss after ``steps`` GD steps from each surface's own start: on θ of L_i(Ω_s(θ)) from θ = 0 with
    ``warp`` Ω (a frozen module), or plain GD on γ from s when ``warp`` is None. Same starts, steps and step size."""
    check_path_args(lr, steps)
    params = torch.stack([s.params for s in surfaces])
    omega = warp if warp is not None else (lambda x: x)

    def native(theta, start):
        return omega(start + theta) - omega(start) + start

    step_gradient = vmap(grad(lambda theta, start, p: mountain_value(native(theta, start), p)))
    theta = torch.zeros_like(starts)
    for _ in range(steps):
        theta = (theta - lr * step_gradient(theta, starts, params)).detach()
    with torch.no_grad():
        return vmap(lambda t, s, p: mountain_value(native(t, s), p))(theta, starts, params)


class RandomStartTraining:
    r"""Meta-learn only a warp (WarpGrad, Eq. 11, offline) on surfaces that each come with a random start the warp
    cannot move (:class:`PinnedStartPoint`); :meth:`evaluate` compares it with plain SGD from the same starts."""

    def __init__(self, train_surfaces: Sequence[MountainSurface], meta_batch: int = 10, lr: float = 0.1,
                 steps: int = 100, warp_lr: float = 0.03, replay_chunk_size: int = 50, seed: int = 0,
                 replay: str = "auto"):
        self.train_surfaces, self.meta_batch, self.lr, self.steps = list(train_surfaces), meta_batch, lr, steps
        self.extent = self.train_surfaces[0].extent
        torch.manual_seed(seed)
        self.model = PinnedStartPoint()
        self.learner = MetaLearner(self.model, surface_loss, inner=InnerLoop(lr=lr, steps=steps, batched=True),
                                   warp=WarpTraining(lr=warp_lr, optimizer="adam", points_per_step=replay_chunk_size,
                                                     replay=replay),
                                   seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed

    def run(self, iterations: int, show_progress: bool = True) -> "RandomStartTraining":
        for _ in progress(range(iterations), show=show_progress, desc="meta-training, random starts"):
            index = torch.randperm(len(self.train_surfaces), generator=self.generator)[: self.meta_batch]
            starts = random_starts(self.meta_batch, self.extent, int(torch.randint(10**9, (1,), generator=self.generator)))
            self.learner.meta_step([StartedSurfaceTask(self.train_surfaces[i], s) for i, s in zip(index, starts)])
        return self

    def evaluate(self, surfaces: Sequence[MountainSurface], seed: int) -> dict:
        """Mean final loss of the warp and of plain SGD over ``surfaces``, each from the same random start."""
        starts = random_starts(len(surfaces), self.extent, seed)
        warp = copy.deepcopy(self.model.warp).requires_grad_(False)
        return {"warp_final": started_final_losses(warp, starts, surfaces, self.lr, self.steps),
                "sgd_final": started_final_losses(None, starts, surfaces, self.lr, self.steps), "starts": starts}


@dataclass(frozen=True)
class MountainConfig:
    """Lesson 03's sizes (one of :data:`SIZES`)."""

    meta_iterations: int = 30
    meta_batch: int = 10
    warp_lr: float = 3e-3
    replay_chunk_size: int = 25
    replay_epochs: int = 1
    replay: str = "auto"  # how a chunk is replayed: "batched", "looped" or "auto" (warpkit.engine.replay)
    snapshot_every: int = 5
    held_out: int = 20
    random_start_iterations: int = 20


#: ``fast``: the lesson in about two minutes of one CPU core; ``gpu``: a little more meta-training and more held-out
#: surfaces (these 2-D problems run on the CPU whatever the device); ``full``: more meta-training, more surfaces.
SIZES: dict[str, MountainConfig] = {
    "fast": MountainConfig(),
    "gpu": MountainConfig(meta_iterations=50, held_out=30, random_start_iterations=30),
    "full": MountainConfig(meta_iterations=100, meta_batch=20, replay_chunk_size=50, snapshot_every=10, held_out=50,
                           random_start_iterations=100),
}
