r"""WarpGrad's meta-learner: Algorithms 1 (online) and 2 (offline) of Flennerhag et al. (2020), Section 3.

The joint meta-objective is

.. math::  J(\phi, \theta_0) = \mathcal{L}(\phi) + \lambda\, C(\theta_0),

where 𝓛(φ) is the warp objective of :mod:`warpkit.engine.objectives` summed over buffered trajectory points and C is
any initialisation meta-learner (:mod:`warpkit.engine.init_learners`). :class:`MetaLearner` runs one meta-iteration
of either algorithm:

**Offline (Algorithm 2)**: for each task of the meta-batch, reset θ to θ_0, adapt K steps with φ frozen and
append θ_0…θ_{K-1} to the buffer; update θ_0 with the initialisation learner; then shuffle all buffered points and
take one φ-step per ``points_per_step`` points, for ``passes`` passes, with two fresh batches per point
(:class:`~warpkit.engine.options.WarpTraining`).

**Online (Algorithm 1)**: accumulate the φ-gradient of the one-step objective at every inner step of every
task of the meta-batch (φ fixed meanwhile), and take one φ-step after the meta-batch.

**Continual and RL (Algorithm 3)** use the same objective with the meta loss defined over the history; in
warpkit that is the task's business (``Task.sample_meta_batches``), so the offline algorithm runs it unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from warpkit.engine.adapt import LossFn, Params, Trajectory, adapt, adapt_tasks
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint
from warpkit.engine.guard import adapts, problem, raise_non_finite, restore, snapshot
from warpkit.engine.init_learners import InitLearner, MetaSGD
from warpkit.engine.replay import chosen_replay, replay_meta_gradient, resolve_lookahead
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.persist import save_learner
from warpkit.engine.predict import fit, predict
from warpkit.engine.tasks import Task
from warpkit.engine.warp import task_parameters, warp_parameters


@dataclass
class MetaStepStats:
    """What one meta-iteration measured.

    >>> MetaStepStats(iteration=1, task_loss_first=2.0, task_loss_last=0.5, warp_objective=float("nan"),
    ...               warp_steps=0, seconds_adapt=0.1, seconds_replay=0.0).as_dict()["task_loss_last"]
    0.5
    """

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
    """‖after − before‖₂ over all tensors jointly (the |Δφ| and |Δθ₀| a meta-iteration records).

    >>> parameter_change({"w": torch.zeros(2)}, {"w": torch.tensor([3.0, 4.0])})
    5.0
    """
    return math.sqrt(sum(float((after[name].detach() - value).pow(2).sum()) for name, value in before.items()))


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer | None:
    params = list(params)
    if not params:
        return None
    return torch.optim.SGD(params, lr=lr) if name == "sgd" else torch.optim.Adam(params, lr=lr)


@dataclass
class _Iteration:
    """What a meta-iteration gathers while it runs (one per :meth:`MetaLearner.meta_step`)."""

    init_params: Params
    warp_before: Params
    init_gradient: Params = field(default_factory=dict)
    warp_gradient: Params = field(default_factory=dict)  # online only: the accumulated φ-gradient
    first_losses: list = field(default_factory=list)
    last_losses: list = field(default_factory=list)
    objective_values: list = field(default_factory=list)
    warp_steps: int = 0
    replay_seconds: float = 0.0


class MetaLearner:
    r"""Meta-learns the warp parameters φ of ``model`` (``warp``) and/or its initialisation θ_0 (``init``), by the
    offline (Algorithm 2) or online (Algorithm 1) algorithm.

    ``model``'s own parameters *are* the meta-parameters: θ_0 = its task parameters, φ = its warp parameters
    (:mod:`warpkit.engine.warp`). The settings come in three groups (:mod:`warpkit.engine.options`):
    ``inner`` (:class:`InnerLoop`: the task's warped SGD), ``warp`` (:class:`WarpTraining`: the warp objective
    and its replay schedule; None: φ is not trained) and ``init`` (:class:`InitTraining`: an initialisation
    learner and its optimiser; None: θ_0 is not trained). With neither, meta-training does nothing (the "no
    pretraining" baseline) and :meth:`adapt` is plain (warped) SGD from the model's parameters.

    Every :meth:`meta_step` records |Δφ| and |Δθ₀| (``MetaStepStats.warp_change``, ``init_change``), so one can
    see how far the warp actually moved. ``reducer`` (None: one process) is set by
    :func:`warpkit.engine.distributed.distribute` to meta-train over several processes. After meta-training,
    :meth:`fit_predict` adapts to a task and labels new inputs (non-transductive BatchNorm by default);
    :meth:`save` writes the learner to one file that :func:`warpkit.load_learner` rebuilds. A non-finite loss or
    gradient in :meth:`meta_step` raises :class:`warpkit.engine.guard.NonFiniteError` naming the task and leaves
    the learner as it was.

    Warp-Leap on a toy regression (a warp layer between two linear layers):

    >>> from warpkit.engine.init_learners import Leap
    >>> from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> from warpkit.engine.warp import LinearWarp
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), LinearWarp(8), nn.Linear(8, 1))
    >>> learner = MetaLearner(model, nn.functional.mse_loss, inner=InnerLoop(lr=0.1, steps=5),
    ...                       warp=WarpTraining(points_per_step=1), init=InitTraining(Leap()))
    >>> x = torch.linspace(-1, 1, 16).unsqueeze(1)
    >>> stats = learner.meta_step([SupervisedTask(x, a * x, batch_size=16) for a in (1.0, -2.0)])
    >>> stats.warp_steps, stats.warp_change > 0, stats.init_change > 0  # one φ-step per buffered point
    (10, True, True)
    """

    reducer = None  # a warpkit.engine.distributed.MetaBatchReducer when several processes share the meta-batch

    def __init__(self, model: nn.Module, loss_fn: LossFn, inner: InnerLoop = InnerLoop(),
                 warp: WarpTraining | None = WarpTraining(), init: InitTraining | None = None,
                 algorithm: str = "offline", seed: int = 0):
        if algorithm not in ("offline", "online"):
            raise ValueError(f"algorithm must be 'offline' or 'online', got {algorithm!r}")
        for name, value, kind in (("inner", inner, InnerLoop), ("warp", warp, WarpTraining),
                                  ("init", init, InitTraining)):
            if value is not None and not isinstance(value, kind):
                raise ValueError(f"MetaLearner: {name} must be a {kind.__name__} (warpkit.engine.options), "
                                 f"got {value!r}")
        if warp is not None and not warp_parameters(model):
            raise ValueError("MetaLearner: warp training was asked for but the model has no warp layers; add warps "
                             "(warpkit.engine.warp) or pass warp=None")
        if warp is not None and init is not None and getattr(init.learner, "learn_warps", False):
            raise ValueError("MetaLearner: the initialisation learner learns the warps itself (learn_warps=True); "
                             "pass warp=None, or a learner without learn_warps, so that φ is trained once")
        self.model, self.loss_fn = model, loss_fn
        self.inner, self.warp, self.init, self.algorithm = inner, warp, init, algorithm
        self.buffer = TrajectoryBuffer(warp.buffer_directory if warp else None)
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0
        self.warp_optimizer = _make_optimizer(warp.optimizer, warp_parameters(model).values(), warp.lr) if warp \
            else None
        self.init_optimizer = self._make_init_optimizer() if init else None

    def _make_init_optimizer(self) -> torch.optim.Optimizer:
        learner = self.init.learner
        if isinstance(learner, MetaSGD) and not learner.step_sizes:
            learner.attach(self.model)
        params = list(task_parameters(self.model).values()) + list(learner.meta_parameters().values())
        if getattr(learner, "learn_warps", False):  # T-Nets: θ_0 and φ by one outer optimiser
            params += list(warp_parameters(self.model).values())
        return _make_optimizer(self.init.optimizer, params, self.init.lr)

    @property
    def init_learner(self) -> InitLearner | None:
        """The initialisation learner (``init.learner``), or None when θ_0 is not meta-learned."""
        return self.init.learner if self.init else None

    # -- adaptation -------------------------------------------------------------------------------------
    def current_inner_lr(self) -> float | Params:
        """The inner loop's step size(s): ``inner.lr``, or Meta-SGD's learned ones."""
        return self.init.learner.inner_lr(self.inner.lr) if self.init else self.inner.lr

    def adapt(self, task: Task, num_steps: int | None = None, keep_trajectory: bool = False,
              keep_gradients: bool = False, on_state=None) -> Trajectory:
        """Adapt a fresh copy of θ_0 to ``task`` with φ frozen (the model is not modified)."""
        return adapt(
            self.model, task, self.loss_fn, self.inner.steps if num_steps is None else num_steps,
            self.current_inner_lr(), momentum=self.inner.momentum, keep_trajectory=keep_trajectory,
            keep_gradients=keep_gradients, on_state=on_state,
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
        """Write the learner (model architecture and weights, loss function, settings, optimiser states) to
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

    def _meta_step(self, tasks: list[Task]) -> MetaStepStats:
        """The meta-iteration itself, unguarded: adapt every task (buffering its points or, online, accumulating
        its φ-gradient), step θ_0, then replay the buffer into φ-steps."""
        start = time.perf_counter()
        run = _Iteration(init_params=_detached(task_parameters(self.model)),
                         warp_before=_detached(warp_parameters(self.model)))
        run.warp_gradient = {name: torch.zeros_like(p) for name, p in run.warp_before.items()}
        batched = self._batched_trajectories(tasks)
        for index, task in enumerate(tasks):
            if self.reducer is not None and not self.reducer.owns(index, len(tasks)):
                continue  # another process adapts this task
            trajectory = batched[index] if batched is not None else self._task_trajectory(index, task)
            self._gather_task(run, tasks, index, task, trajectory)
        adapt_seconds = time.perf_counter() - start - run.replay_seconds
        if self.reducer is not None:  # Σ over processes of their tasks' ∇C/len(tasks): the whole meta-batch's
            run.init_gradient = self.reducer.all_reduce_sum(run.init_gradient)
        self._apply_init_gradient(run.init_gradient)
        if self.warp is not None:
            replay_start = time.perf_counter()
            self._replay(run, tasks)
            run.replay_seconds += time.perf_counter() - replay_start
        self.iteration += 1
        return self._stats(run, tasks, adapt_seconds)

    # the steps of a meta-iteration, in order
    def _keeps(self) -> tuple[bool, bool]:
        """Whether adaptation must keep the states θ_k (for the buffer or Leap) and the gradients (full Leap)."""
        init = self.init_learner
        return (self.warp is not None or bool(init and init.needs_states),
                bool(init and init.needs_gradients))

    def _streams_to_disk(self) -> bool:
        """An on-disk buffer receives each state as it is made, so memory does not grow with the inner steps."""
        return (self.algorithm == "offline" and self.warp is not None and self.buffer.directory is not None
                and not self.inner.batched and not (self.init and self.init.learner.needs_states))

    def _batched_trajectories(self, tasks: list[Task]) -> list[Trajectory] | None:
        """All tasks (this process's share) adapted in one vmapped inner loop, or None when adapting one by one."""
        if not (self.inner.batched and adapts(self)):
            return None
        keep_trajectory, keep_gradients = self._keeps()
        own = tasks if self.reducer is None else self.reducer.own_tasks(tasks)
        trajectories = adapt_tasks(self.model, own, self.loss_fn, self.inner.steps, self.current_inner_lr(),
                                   momentum=self.inner.momentum, keep_trajectory=keep_trajectory,
                                   keep_gradients=keep_gradients)
        if self.reducer is not None:  # this process's trajectories, keyed by their place in the meta-batch
            return self.reducer.by_task_index(trajectories, len(tasks))
        return trajectories

    def _task_trajectory(self, index: int, task: Task) -> Trajectory:
        """Adapt one task K steps from θ_0 (Algorithms 1 and 2, the inner loop), keeping what later steps need."""
        if not adapts(self):
            return Trajectory()
        keep_trajectory, keep_gradients = self._keeps()
        if self._streams_to_disk():
            return self.adapt(task, keep_gradients=keep_gradients, on_state=_BufferWriter(self.buffer, index))
        return self.adapt(task, keep_trajectory=keep_trajectory, keep_gradients=keep_gradients)

    def _gather_task(self, run: _Iteration, tasks: list[Task], index: int, task: Task,
                     trajectory: Trajectory) -> None:
        """Record the task's losses, add its ∇C(θ_0)/T, and buffer its points (offline) or add its φ-gradient
        (online)."""
        run.first_losses.append(trajectory.losses[0] if trajectory.losses else float("nan"))
        run.last_losses.append(trajectory.losses[-1] if trajectory.losses else float("nan"))
        if self.init is not None:  # ∇C(θ_0) = (1/T) Σ_τ ∇C_τ(θ_0)
            for name, g in self.init.learner.task_gradient(self, task, run.init_params, trajectory).items():
                run.init_gradient[name] = run.init_gradient.get(name, 0) + g.detach() / len(tasks)
        if self.warp is None:
            return
        if self.algorithm == "offline":
            if not self._streams_to_disk():
                self.buffer.add(index, trajectory)
            return
        replay_start = time.perf_counter()
        self._accumulate_online_gradient(run, tasks, index, trajectory)
        run.replay_seconds += time.perf_counter() - replay_start

    def _accumulate_online_gradient(self, run: _Iteration, tasks: list[Task], index: int,
                                    trajectory: Trajectory) -> None:
        """Algorithm 1: ∇𝓛(φ) += (1/T)(1/K) Σ_k ∇_φ L_meta(θ_k − α∇L_task(θ_k; φ); φ) over this task's points."""
        task_buffer = TrajectoryBuffer()
        task_buffer.add(index, trajectory)
        for chunk in task_buffer.chunks(self.warp.points_per_step, shuffle=False):
            gradient, value = self._objective_gradient(tasks, chunk)
            weight = len(chunk) / (len(task_buffer) * len(tasks))
            for name, g in gradient.items():
                run.warp_gradient[name] += weight * g
            run.objective_values.append(value)

    def _replay(self, run: _Iteration, tasks: list[Task]) -> None:
        """φ-steps: offline, one per ``points_per_step`` shuffled buffered points for ``passes`` passes
        (Algorithm 2); online, one on the accumulated gradient (Algorithm 1)."""
        if self.algorithm == "online":
            gradient = run.warp_gradient
            if self.reducer is not None:  # Σ over processes of their tasks' weighted φ-gradients
                gradient = self.reducer.all_reduce_sum(gradient)
            self._warp_step(gradient)
            run.warp_steps = 1
            return
        for _ in range(self.warp.passes):
            for chunk in self.buffer.chunks(self.warp.points_per_step, generator=self.generator):
                gradient, value = self._objective_gradient(tasks, chunk)
                self._warp_step(gradient)  # φ ← φ − β ∇_φ 𝓛(φ) over this chunk's points
                run.warp_steps += 1
                run.objective_values.append(value)
        self.buffer.clear()

    def _stats(self, run: _Iteration, tasks: list[Task], adapt_seconds: float) -> MetaStepStats:
        first, last, values = run.first_losses, run.last_losses, run.objective_values
        if self.reducer is not None:  # every process reports the statistics of the whole meta-batch
            first, last, values = self.reducer.meta_batch_statistics(len(tasks), first, last, values, self.algorithm)
        return MetaStepStats(
            iteration=self.iteration,
            task_loss_first=sum(first) / len(first),  # nan when no adaptation was needed
            task_loss_last=sum(last) / len(last),
            warp_objective=sum(values) / len(values) if values else float("nan"),
            warp_steps=run.warp_steps,
            seconds_adapt=adapt_seconds,
            seconds_replay=run.replay_seconds,
            warp_change=parameter_change(run.warp_before, warp_parameters(self.model)) if run.warp_before
            else float("nan"),
            init_change=parameter_change(run.init_params, task_parameters(self.model)) if self.init
            else float("nan"),
        )

    def _objective_gradient(self, tasks, points):
        if self.reducer is not None:  # this process's share of a chunk formed alike on every process: all-reduced
            return self.reducer.chunk_gradient(self, tasks, points, self._local_objective_gradient)
        return self._local_objective_gradient(tasks, points)

    def _local_objective_gradient(self, tasks, points):
        # ∇_φ (1/|points|) Σ_k L_meta(θ_k − α ∇L_task(θ_k; φ); φ): Eq. 11 (exact) or Eq. 12 (first-order)
        return replay_meta_gradient(self.model, self.loss_fn, warp_parameters(self.model), points, tasks,
                                    self.current_inner_lr(), self.warp.objective, self.warp.replay,
                                    resolve_lookahead(self.warp.lookahead, self.algorithm))

    @property
    def replay_path(self) -> str | None:
        """What the last replay ran, ``"batched"`` or ``"looped"`` (None before any replay, or without warp
        training): how ``warp.replay`` was resolved on this model's device."""
        return chosen_replay(self.model)

    def _warp_step(self, gradient: Params) -> None:
        self.warp_optimizer.zero_grad(set_to_none=True)
        for name, p in warp_parameters(self.model).items():
            p.grad = gradient[name].detach().clone()
        self.warp_optimizer.step()

    def _apply_init_gradient(self, gradient: Params) -> None:
        """θ_0 ← θ_0 − β ∇C(θ_0) (with the learner's own meta-parameters and, for T-Nets, φ, in the same step)."""
        if not gradient:
            return
        owned = {**task_parameters(self.model), **self.init.learner.meta_parameters(),
                 **warp_parameters(self.model)}
        self.init_optimizer.zero_grad(set_to_none=True)
        for name, g in gradient.items():
            owned[name].grad = g.clone()
        self.init_optimizer.step()

    # -- checkpointing ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume meta-training: model, optimisers, iteration, replay RNG, extras."""
        return {
            "model": self.model.state_dict(),
            "warp_optimizer": self.warp_optimizer.state_dict() if self.warp_optimizer else None,
            "init_optimizer": self.init_optimizer.state_dict() if self.init_optimizer else None,
            "init_learner": _detached(self.init.learner.meta_parameters()) if self.init else {},
            "iteration": self.iteration,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Put back a :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        if self.warp_optimizer and state.get("warp_optimizer"):
            self.warp_optimizer.load_state_dict(state["warp_optimizer"])
        if self.init_optimizer and state.get("init_optimizer"):
            self.init_optimizer.load_state_dict(state["init_optimizer"])
        if self.init:
            with torch.no_grad():
                for name, p in self.init.learner.meta_parameters().items():
                    p.copy_(state["init_learner"][name])
        self.iteration = int(state["iteration"])
        self.generator.set_state(state["generator"])


def _detached(tensors: Params) -> Params:
    return {name: t.detach().clone() for name, t in tensors.items()}


class _BufferWriter:
    """The ``on_state`` callback of :func:`~warpkit.engine.adapt.adapt` that streams task ``index``'s states θ_k
    into ``buffer`` as they are made."""

    def __init__(self, buffer: TrajectoryBuffer, index: int):
        self.buffer, self.index = buffer, index

    def __call__(self, step: int, params: Params, buffers: Params, *lookahead) -> None:
        """θ_k and its BatchNorm statistics; for a plain SGD step also (θ_{k+1}, the step's batch, φ's versions)."""
        self.buffer.add_point(TrajectoryPoint(self.index, step, params, buffers, *lookahead))


__all__ = ["MetaLearner", "MetaStepStats", "parameter_change"]
