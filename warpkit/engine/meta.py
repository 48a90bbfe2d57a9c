r"""WarpGrad's algorithms and the initialisation meta-learners it combines with (Flennerhag et al., 2020, Section 3).

The joint meta-objective is

.. math::  J(\phi, \theta_0) = \mathcal{L}(\phi) + \lambda\, C(\theta_0),

where 𝓛(φ) is the warp objective of :mod:`warpkit.engine.objectives` summed over buffered trajectory points and C is
any initialisation meta-learner. :class:`MetaLearner` runs one meta-iteration of either algorithm:

**Offline (Algorithm 2)** — for each task of the meta-batch: reset θ to θ_0, adapt K steps with φ frozen and
append θ_0…θ_{K-1} to the buffer; update θ_0 with the initialisation learner; then shuffle all buffered points and
take one φ-step per chunk of ``replay_chunk_size`` points, for ``replay_epochs`` epochs, with two fresh batches
per point. The original code used chunks of one point (20 tasks × 100 points = 2000 φ-steps per iteration);
here a chunk is replayed in one batched (vmapped) call.

**Online (Algorithm 1)** — accumulate the φ-gradient of the one-step objective at every inner step of every
task of the meta-batch (φ fixed meanwhile), and take one φ-step after the meta-batch.

**Continual and RL (Algorithm 3)** use the same objective with the meta loss defined over the history; in
warpkit that is the task's business (``Task.sample_meta_batches``), so the offline algorithm runs it unchanged.

Initialisation learners (:class:`Leap`, :class:`Reptile`, :class:`FOMAML`, :class:`MAML`, :class:`MetaSGD`)
return, per task, a gradient for θ_0 (and, for T-Nets, for φ). Combined with a warp objective they give
Warp-Leap, Warp-Reptile and Warp-MAML; without warps they are the classic baselines; with
``warp_objective=None`` and linear warps trained by :class:`MAML` (``learn_warps=True``) they give T-Nets.
"""

from __future__ import annotations

import math
import time
from functools import partial
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn as nn

from warpkit.engine.adapt import (LossFn, Params, Trajectory, adapt, adapt_tasks, differentiable_adapt, forward,
                           train_mode)
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint
from warpkit.engine.guard import problem, raise_non_finite, restore, snapshot
from warpkit.engine.objectives import check_mode
from warpkit.engine.persist import save_learner
from warpkit.engine.predict import fit, predict
from warpkit.engine.replay import (check_replay, chosen_replay, model_device, replay_meta_gradient,
                                   resolve_lookahead, resolve_replay)
from warpkit.engine.tasks import Task
from warpkit.engine.warp import task_parameters, warp_parameters


# ----------------------------------------------------------------------------------------------------------
# initialisation meta-learners
# ----------------------------------------------------------------------------------------------------------
class InitLearner:
    """Base class: turns a task's adaptation into a gradient for the shared initialisation θ_0.

    ``needs_states`` asks the adaptation to keep the states θ_k in the trajectory, ``needs_gradients`` to keep
    ∇L_task(θ_k) too; ``needs_trajectory = False`` says the learner runs its own inner loop (MAML), so a
    meta-iteration without a warp objective need not adapt at all. ``meta_parameters()`` lists extra
    meta-learned tensors the learner owns (Meta-SGD's step sizes); they are updated by the initialisation
    optimiser together with θ_0.
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
    """

    needs_states = True

    def __init__(self, simplified: bool = False, stabilizer: bool = True):
        self.simplified = simplified
        self.stabilizer = stabilizer
        self.name = "leap-simplified" if simplified else "leap"
        self.needs_gradients = not simplified

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
    (``task.sample_meta_batches(step)[1]``) or the task's held-out split (``task.evaluation_batch()``)."""
    if split == "held-out":
        return task.evaluation_batch()
    return task.sample_meta_batches(step)[1]


class Reptile(InitLearner):
    r"""Reptile (Nichol et al., 2018): move θ_0 toward the adapted parameters, ∇C(θ_0) = θ_0 − θ_K."""

    name = "reptile"

    def task_gradient(self, learner, task, init_params, trajectory):
        return {name: init_params[name] - trajectory.final_params[name] for name in init_params}


class FOMAML(InitLearner):
    r"""First-order MAML: ∇C(θ_0) = ∇_θ L_meta(θ_K) on a fresh meta batch, the Jacobian dθ_K/dθ_0 taken as I.

    ``steps=None`` uses the end of the task's own trajectory; an integer runs a separate ``steps``-step
    adaptation from θ_0 (MAML's short inner loop). ``meta_split`` says where the meta batch comes from:
    ``"train"`` (a fresh draw from the task's training split, ``task.sample_meta_batches``) or ``"held-out"``
    (the task's held-out split, ``task.evaluation_batch()``, as in the MAML/FOMAML baselines of the Leap and
    WarpGrad Omniglot code).
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
    θ_{k+1} = θ_k − α ⊙ ∇L_task(θ_k), with α initialised to ``initial_lr``."""

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


# ----------------------------------------------------------------------------------------------------------
# the meta-learner
# ----------------------------------------------------------------------------------------------------------
@dataclass
class MetaStepStats:
    """What one meta-iteration measured."""

    iteration: int
    task_loss_first: float  # mean task loss at θ_0 over the meta-batch
    task_loss_last: float  # mean task loss at the last inner step
    warp_objective: float  # mean replayed objective (nan without a warp objective)
    warp_steps: int  # number of φ-updates taken
    seconds_adapt: float
    seconds_replay: float
    warp_change: float = float("nan")  # |Δφ|: Euclidean norm of φ after − φ before this iteration (nan: no φ)
    init_change: float = float("nan")  # |Δθ₀|: the same for the initialisation θ_0 (nan: θ_0 not meta-learned)

    def as_dict(self) -> dict:
        return asdict(self)


def parameter_change(before: Params, after) -> float:
    """‖after − before‖₂ over all tensors jointly (the |Δφ| and |Δθ₀| a meta-iteration records)."""
    return math.sqrt(sum(float((after[name].detach() - value).pow(2).sum()) for name, value in before.items()))


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer | None:
    params = list(params)
    if not params:
        return None
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown meta-optimiser {name!r}; choose 'sgd' or 'adam'")


class MetaLearner:
    r"""Meta-learns the warp parameters φ of ``model`` (with a warp objective) and/or its initialisation θ_0
    (with an initialisation learner), by the offline (Algorithm 2) or online (Algorithm 1) algorithm.

    ``model``'s own parameters *are* the meta-parameters: θ_0 = its task parameters, φ = its warp parameters
    (:mod:`warpkit.engine.warp`). ``warp_objective`` is ``"exact"``, ``"first_order"``, ``"approx"`` or None;
    ``init_learner`` an :class:`InitLearner` or None. With neither, meta-training does nothing (the "no
    pretraining" baseline) and :meth:`adapt` is plain (warped) SGD from the model's parameters.

    **The replay schedule is part of the algorithm, not a speed knob.** Offline, the buffered points of a
    meta-batch are shuffled and replayed ``replay_epochs`` times (φ-passes per point); every
    ``replay_chunk_size`` points (points per φ-step) give *one* φ-step on the mean of their one-step objectives.
    The paper's schedule (Algorithm 2 as run by the authors' code) is ``replay_chunk_size=1, replay_epochs=1``:
    one φ-step per point, T·K steps per meta-iteration. A chunk of P points takes P times fewer steps on an
    averaged gradient: at the same learning rate φ moves roughly P times less per meta-iteration (measured in
    :func:`warpkit.experiments.omniglot.compare_replay_schedules`).
    ``replay`` only decides *how* a chunk is computed: ``"looped"`` (one point at a time), ``"batched"`` (one
    vmapped call per chunk) or ``"auto"`` (batched on an accelerator and, on a CPU, for small networks; looped
    for a wide conv net on a CPU, which is compute-bound and where the loop measured faster:
    :func:`warpkit.engine.replay.resolve_replay`; :attr:`replay_path` says what ran); all give the same
    φ-gradient. ``lookahead="buffered"`` takes the next buffered point θ_{k+1} (with the inner loop's own batch)
    as the lookahead point wherever that is exact (plain SGD steps, φ unchanged since the adaptation), saving a
    forward and backward pass per point; ``"fresh"`` recomputes it from a fresh task batch and the current φ, as
    the authors' code does; ``"auto"`` (default) is ``"buffered"`` online and ``"fresh"`` offline, where φ moves
    after the first chunk (:mod:`warpkit.engine.replay` says exactly when the two agree). Every :meth:`meta_step` records |Δφ| and
    |Δθ₀| (``MetaStepStats.warp_change``, ``init_change``) so that one can see how far the warp actually moved.

    ``batched_adaptation=True`` adapts the meta-batch's tasks together (:func:`warpkit.engine.adapt.adapt_tasks`, one
    vmapped inner loop): the same updates up to floating-point rounding, much faster for small networks; it
    needs equal batch shapes across tasks.

    ``reducer`` (None: one process) is set by :func:`warpkit.engine.distributed.distribute` to meta-train over
    several processes: each adapts its share of the meta-batch and the θ_0- and φ-gradients are all-reduced.
    After meta-training: :meth:`fit_predict` (or :meth:`fit` then :meth:`predict`) adapts to a task and labels new
    inputs, with non-transductive BatchNorm by default; :meth:`save` writes the learner to one file that
    :func:`warpkit.load_learner` rebuilds. A non-finite loss or gradient in :meth:`meta_step` raises
    :class:`warpkit.engine.guard.NonFiniteError` naming the task and leaves the learner as it was.
    """

    reducer = None  # a warpkit.engine.distributed.MetaBatchReducer when several processes share the meta-batch

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inner_lr: float = 0.1,
        inner_steps: int = 100,
        inner_momentum: float = 0.0,
        warp_objective: str | None = "exact",
        init_learner: InitLearner | None = None,
        algorithm: str = "offline",
        warp_lr: float = 0.1,
        warp_optimizer: str = "sgd",
        init_lr: float = 0.1,
        init_optimizer: str = "sgd",
        replay_chunk_size: int = 32,
        replay_epochs: int = 1,
        replay: str = "auto",
        batched_adaptation: bool = False,
        buffer_directory: str | None = None,
        seed: int = 0,
        lookahead: str = "auto",
    ):
        if algorithm not in ("offline", "online"):
            raise ValueError(f"algorithm must be 'offline' or 'online', got {algorithm!r}")
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise ValueError(f"MetaLearner: inner_steps must be an int >= 1 (SGD steps per task), got {inner_steps!r}")
        if warp_objective is not None:
            check_mode(warp_objective)
            if not warp_parameters(model):
                raise ValueError(
                    "MetaLearner: a warp objective was asked for but the model has no warp layers; add warps "
                    "(warpkit.engine.warp) or pass warp_objective=None"
                )
        self.model, self.loss_fn = model, loss_fn
        self.inner_lr, self.inner_steps, self.inner_momentum = inner_lr, inner_steps, inner_momentum
        self.warp_objective, self.init_learner, self.algorithm = warp_objective, init_learner, algorithm
        self.replay_chunk_size, self.replay_epochs = replay_chunk_size, replay_epochs
        self.replay, self.lookahead = check_replay(replay, lookahead), lookahead
        self.batched_adaptation = batched_adaptation
        self.buffer = TrajectoryBuffer(buffer_directory)
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0
        if isinstance(init_learner, MetaSGD) and not init_learner.step_sizes:
            init_learner.attach(model)
        warp_trained = warp_objective is not None or getattr(init_learner, "learn_warps", False)
        self.warp_optimizer = (
            _make_optimizer(warp_optimizer, warp_parameters(model).values(), warp_lr) if warp_trained else None
        )
        init_params = list(task_parameters(model).values()) + list(
            init_learner.meta_parameters().values() if init_learner else []
        )
        self.init_optimizer = _make_optimizer(init_optimizer, init_params, init_lr) if init_learner else None

    # -- adaptation -------------------------------------------------------------------------------------
    def current_inner_lr(self) -> float | Params:
        return self.init_learner.inner_lr(self.inner_lr) if self.init_learner else self.inner_lr

    def adapt(self, task: Task, num_steps: int | None = None, keep_trajectory: bool = False,
              keep_gradients: bool = False) -> Trajectory:
        """Adapt a fresh copy of θ_0 to ``task`` with φ frozen (the model is not modified)."""
        return adapt(
            self.model, task, self.loss_fn, self.inner_steps if num_steps is None else num_steps,
            self.current_inner_lr(), momentum=self.inner_momentum, keep_trajectory=keep_trajectory,
            keep_gradients=keep_gradients,
        )

    # -- prediction and saving (warpkit.engine.predict, warpkit.engine.persist) ----------------------------
    def fit(self, task: Task, num_steps: int | None = None) -> Trajectory:
        """Adapt to ``task`` and measure its BatchNorm statistics on its whole support set at θ_K, for
        :meth:`predict` (:func:`warpkit.engine.predict.fit`). The model is not modified."""
        return fit(self, task, num_steps)

    def predict(self, trajectory: Trajectory, x: torch.Tensor, batchnorm: str = "running", raw: bool = False):
        """Labels (``raw=True``: the model's outputs) for the batch ``x`` with the adapted θ of ``trajectory`` and
        the learner's warps φ. ``batchnorm="running"`` (default, non-transductive) normalises every image with the
        task's statistics, so one image works and no image changes another's label; ``"batch"`` normalises with
        the statistics of ``x`` itself (transductive; needs more than one image).
        See :func:`warpkit.engine.predict.predict`."""
        return predict(self, trajectory, x, batchnorm, raw)

    def fit_predict(self, task: Task, x: torch.Tensor, batchnorm: str = "running", raw: bool = False):
        """Adapt a fresh copy of θ_0 to ``task``'s support set (φ frozen), then return labels for ``x``:
        ``predict(fit(task), x)``. The model is not modified."""
        return self.predict(self.fit(task), x, batchnorm, raw)

    def save(self, path):
        """Write the learner (model architecture and weights, loss function, configuration, optimiser states) to
        ``path`` atomically; :func:`warpkit.load_learner` rebuilds it from the file alone
        (:func:`warpkit.engine.persist.save_learner`). Returns the path."""
        return save_learner(self, path)

    # -- one meta-iteration -----------------------------------------------------------------------------
    def meta_step(self, tasks: Sequence[Task]) -> MetaStepStats:
        """One meta-iteration over the meta-batch ``tasks`` (offline or online, as configured).

        A NaN or infinity in a task loss, a gradient or a meta-parameter stops the step with
        :class:`warpkit.engine.guard.NonFiniteError` naming the task at fault; the learner (parameters, optimiser
        states, iteration, replay generator) is then exactly as it was before the step."""
        tasks = list(tasks) if tasks is not None else []
        if not tasks:
            raise ValueError("meta_step(): the meta-batch holds no tasks")
        before = snapshot(self)
        try:
            stats = self._meta_step(tasks)
        except BaseException:
            restore(self, before)
            raise
        what = problem(self, stats)
        if what is not None:
            restore(self, before)
            raise_non_finite(self, tasks, what)
        return stats

    def _meta_step(self, tasks: Sequence[Task]) -> MetaStepStats:
        """The meta-iteration itself, unguarded."""
        if not tasks:
            raise ValueError("meta_step(): the meta-batch holds no tasks")
        tasks = list(tasks)
        start = time.perf_counter()
        init_params = {name: p.detach().clone() for name, p in task_parameters(self.model).items()}
        warp = warp_parameters(self.model)
        warp_before = {name: p.detach().clone() for name, p in warp.items()}
        init_gradient: dict[str, torch.Tensor] = {}
        warp_gradient = {name: torch.zeros_like(p) for name, p in warp.items()}
        first_losses, last_losses, objective_values = [], [], []
        warp_steps, replay_seconds = 0, 0.0
        init_learner = self.init_learner
        keep_trajectory = self.warp_objective is not None or bool(init_learner and init_learner.needs_states)
        keep_gradients = bool(init_learner and init_learner.needs_gradients)
        # MAML-style learners run their own short inner loop: without a warp objective there is nothing to adapt
        needs_adaptation = self.warp_objective is not None or init_learner is None or init_learner.needs_trajectory
        # a buffer on disk receives each state as it is made, so memory does not grow with the number of steps
        stream_to_buffer = (self.algorithm == "offline" and self.warp_objective is not None
                            and self.buffer.directory is not None and not self.batched_adaptation
                            and not (init_learner and init_learner.needs_states))

        if self.batched_adaptation and needs_adaptation:  # all tasks in one vmapped inner loop
            trajectories = adapt_tasks(
                self.model, tasks if self.reducer is None else self.reducer.own_tasks(tasks), self.loss_fn,
                self.inner_steps, self.current_inner_lr(),
                momentum=self.inner_momentum, keep_trajectory=keep_trajectory, keep_gradients=keep_gradients,
            )
            if self.reducer is not None:  # this process's trajectories, keyed by their place in the meta-batch
                trajectories = self.reducer.by_task_index(trajectories, len(tasks))
        else:
            trajectories = None
        for index, task in enumerate(tasks):
            if self.reducer is not None and not self.reducer.owns(index, len(tasks)):
                continue  # another process adapts this task
            if trajectories is not None:
                trajectory = trajectories[index]
            elif not needs_adaptation:
                trajectory = Trajectory()
            elif stream_to_buffer:
                trajectory = adapt(
                    self.model, task, self.loss_fn, self.inner_steps, self.current_inner_lr(),
                    momentum=self.inner_momentum, keep_trajectory=False, keep_gradients=keep_gradients,
                    on_state=partial(self._stream_point, index),
                )
            else:
                trajectory = self.adapt(task, keep_trajectory=keep_trajectory, keep_gradients=keep_gradients)
            first_losses.append(trajectory.losses[0] if trajectory.losses else float("nan"))
            last_losses.append(trajectory.losses[-1] if trajectory.losses else float("nan"))
            if self.init_learner is not None:
                for name, g in self.init_learner.task_gradient(self, task, init_params, trajectory).items():
                    init_gradient[name] = init_gradient.get(name, 0) + g.detach() / len(tasks)
            if self.warp_objective is None:
                continue
            if self.algorithm == "offline":
                if not stream_to_buffer:
                    self.buffer.add(index, trajectory)
            else:  # online: accumulate the one-step objective's φ-gradient over this task's points
                replay_start = time.perf_counter()
                task_buffer = TrajectoryBuffer()
                task_buffer.add(index, trajectory)
                for chunk in task_buffer.chunks(self.replay_chunk_size, shuffle=False):
                    gradient, value = self._objective_gradient(tasks, chunk)
                    weight = len(chunk) / (len(task_buffer) * len(tasks))
                    for name in warp_gradient:
                        warp_gradient[name] += weight * gradient[name]
                    objective_values.append(value)
                replay_seconds += time.perf_counter() - replay_start

        adapt_seconds = time.perf_counter() - start - replay_seconds
        if self.reducer is not None:  # Σ over processes of their tasks' ∇C/len(tasks): the whole meta-batch's
            init_gradient = self.reducer.all_reduce_sum(init_gradient)
        self._apply_init_gradient(init_gradient)
        if self.warp_objective is not None:
            replay_start = time.perf_counter()
            if self.algorithm == "offline":
                for _ in range(self.replay_epochs):
                    for chunk in self.buffer.chunks(self.replay_chunk_size, generator=self.generator):
                        gradient, value = self._objective_gradient(tasks, chunk)
                        self._warp_step(gradient)
                        warp_steps += 1
                        objective_values.append(value)
                self.buffer.clear()
            else:
                if self.reducer is not None:  # Σ over processes of their tasks' weighted φ-gradients
                    warp_gradient = self.reducer.all_reduce_sum(warp_gradient)
                self._warp_step(warp_gradient)
                warp_steps = 1
            replay_seconds += time.perf_counter() - replay_start
        self.iteration += 1
        if self.reducer is not None:  # every process reports the statistics of the whole meta-batch
            first_losses, last_losses, objective_values = self.reducer.meta_batch_statistics(
                len(tasks), first_losses, last_losses, objective_values, self.algorithm)
        return MetaStepStats(
            iteration=self.iteration,
            task_loss_first=sum(first_losses) / len(first_losses),  # nan when no adaptation was needed
            task_loss_last=sum(last_losses) / len(last_losses),
            warp_objective=sum(objective_values) / len(objective_values) if objective_values else float("nan"),
            warp_steps=warp_steps,
            seconds_adapt=adapt_seconds,
            seconds_replay=replay_seconds,
            warp_change=parameter_change(warp_before, warp_parameters(self.model)) if warp_before else float("nan"),
            init_change=parameter_change(init_params, task_parameters(self.model)) if self.init_learner
            else float("nan"),
        )

    def _stream_point(self, index, step, params, buffers, *lookahead):
        """``adapt``'s ``on_state``: the point, with its lookahead state, batch and φ versions when given."""
        self.buffer.add_point(TrajectoryPoint(index, step, params, buffers, *lookahead))

    def _objective_gradient(self, tasks, points):
        if self.reducer is not None:  # this process's share of a chunk formed alike on every process: all-reduced
            return self.reducer.chunk_gradient(self, tasks, points, self._local_objective_gradient)
        return self._local_objective_gradient(tasks, points)

    def _local_objective_gradient(self, tasks, points):
        return replay_meta_gradient(self.model, self.loss_fn, warp_parameters(self.model), points, tasks,
                                    self.current_inner_lr(), self.warp_objective, self.replay,
                                    resolve_lookahead(self.lookahead, self.algorithm))

    @property
    def replay_path(self) -> str:
        """What the last replay ran, ``"batched"`` or ``"looped"`` (for the record; before any replay: what
        ``replay`` means on the model's device without a cost estimate)."""
        return chosen_replay(self.model) or resolve_replay(self.replay, model_device(self.model))

    def _warp_step(self, gradient: Params) -> None:
        warp = warp_parameters(self.model)
        self.warp_optimizer.zero_grad(set_to_none=True)
        for name, p in warp.items():
            p.grad = gradient[name].detach().clone()
        self.warp_optimizer.step()

    def _apply_init_gradient(self, gradient: Params) -> None:
        if not gradient:
            return
        theta = task_parameters(self.model)
        extra = self.init_learner.meta_parameters()
        warp = warp_parameters(self.model)
        warp_from_init = {n: g for n, g in gradient.items() if n in warp}
        self.init_optimizer.zero_grad(set_to_none=True)
        for name, g in gradient.items():
            if name in theta:
                theta[name].grad = g.clone()
            elif name in extra:
                extra[name].grad = g.clone()
        self.init_optimizer.step()
        if warp_from_init and self.warp_optimizer is not None and self.warp_objective is None:
            self._warp_step({n: warp_from_init.get(n, torch.zeros_like(p)) for n, p in warp.items()})

    # -- checkpointing ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume meta-training: model, optimisers, iteration, replay RNG, extras."""
        return {
            "model": self.model.state_dict(),
            "warp_optimizer": self.warp_optimizer.state_dict() if self.warp_optimizer else None,
            "init_optimizer": self.init_optimizer.state_dict() if self.init_optimizer else None,
            "init_learner": {n: p.detach().clone() for n, p in self.init_learner.meta_parameters().items()}
            if self.init_learner else {},
            "iteration": self.iteration,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.warp_optimizer and state.get("warp_optimizer"):
            self.warp_optimizer.load_state_dict(state["warp_optimizer"])
        if self.init_optimizer and state.get("init_optimizer"):
            self.init_optimizer.load_state_dict(state["init_optimizer"])
        if self.init_learner:
            with torch.no_grad():
                for name, p in self.init_learner.meta_parameters().items():
                    p.copy_(state["init_learner"][name])
        self.iteration = int(state["iteration"])
        self.generator.set_state(state["generator"])
