r"""The settings of a meta-learner, grouped by the part of WarpGrad they belong to.

A :class:`~warpkit.engine.meta.MetaLearner` has three parts, each configured by one small frozen dataclass:

* :class:`InnerLoop`: how a task adapts, θ_{k+1} = θ_k − α ∇L_task(θ_k; φ) (Flennerhag et al., 2020, Eq. 4
  and Section 3: the warped update);
* :class:`WarpTraining`: how the warp parameters φ are meta-learned: the warp objective (Eq. 11 exact or Eq. 12
  first-order), its optimiser, and the replay schedule of Algorithm 2 (``None``: φ is not trained);
* :class:`InitTraining`: how the initialisation θ_0 is meta-learned: an initialisation learner (Leap, Reptile,
  MAML, ...) and its optimiser (``None``: θ_0 stays where it is).

The dataclasses check their values when built, so a wrong setting fails where it is written:

>>> InnerLoop(lr=0.1, steps=5)
InnerLoop(lr=0.1, steps=5, momentum=0.0, batched=False)
>>> WarpTraining(objective="exact", points_per_step=1).points_per_step
1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from warpkit.engine.objectives import check_mode
from warpkit.engine.replay import check_replay

OPTIMIZERS = ("sgd", "adam")


def _positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")


def _optimizer_name(owner: str, name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"{owner}: unknown optimiser {name!r}; choose one of {OPTIMIZERS}")


@dataclass(frozen=True)
class InnerLoop:
    """The task's own (warped) SGD: ``steps`` steps θ_{k+1} = θ_k − ``lr``·(∇L_task(θ_k; φ) + momentum term).

    ``batched=True`` adapts the tasks of a meta-batch together in one vmapped loop
    (:func:`warpkit.engine.adapt.adapt_tasks`): the same updates up to rounding, faster for small networks; it
    needs equal batch shapes across tasks.

    >>> InnerLoop(steps=0)
    Traceback (most recent call last):
    ...
    ValueError: InnerLoop: steps must be an int >= 1, got 0
    """

    lr: float = 0.1
    steps: int = 100
    momentum: float = 0.0
    batched: bool = False

    def __post_init__(self):
        _positive_int("InnerLoop", "steps", self.steps)


@dataclass(frozen=True)
class WarpTraining:
    r"""How φ is meta-learned: ``objective`` (``"exact"``: Eq. 11, ``"first_order"``: Eq. 12, ``"approx"``) minimised
    by ``optimizer`` (``"sgd"`` or ``"adam"``) at ``lr``.

    **The replay schedule is part of the algorithm, not a speed knob.** Offline (Algorithm 2), the buffered points
    of a meta-batch are shuffled and replayed ``passes`` times; every ``points_per_step`` points give *one* φ-step
    on the mean of their one-step objectives. The paper's schedule (Algorithm 2 as the authors run it) is
    ``points_per_step=1, passes=1``: one φ-step per point, T·K steps per meta-iteration. P points per step take
    P times fewer steps on an averaged gradient, so at the same ``lr`` φ moves roughly P times less.
    ``replay`` only decides *how* a group of points is computed: ``"batched"`` (one vmapped call), ``"looped"``
    (one point at a time) or ``"auto"`` (looped for one point per step; otherwise batched on an accelerator and for
    small networks on a CPU, looped for a compute-bound network on a CPU:
    :func:`warpkit.engine.replay.resolve_replay`); all give the same φ-gradient.
    ``lookahead`` says where the lookahead point θ_k − α∇L_task(θ_k) comes from: ``"buffered"`` takes the next
    buffered state θ_{k+1} (with the inner loop's own batch) wherever that is exact (plain SGD, φ unchanged since
    the adaptation), one forward and backward pass fewer per point; ``"fresh"`` recomputes it from a fresh batch
    and the current φ; ``"auto"`` is buffered online and fresh offline (:mod:`warpkit.engine.replay`).
    ``buffer_directory`` keeps the buffered points on disk instead of in
    memory, so memory does not grow with the number of inner steps.

    >>> WarpTraining(objective="second_order")
    Traceback (most recent call last):
    ...
    ValueError: unknown warp objective 'second_order'; choose one of ('exact', 'first_order', 'approx')
    """

    objective: str = "exact"
    lr: float = 0.1
    optimizer: str = "sgd"
    points_per_step: int = 32
    passes: int = 1
    replay: str = "auto"
    lookahead: str = "auto"
    buffer_directory: str | None = None

    def __post_init__(self):
        check_mode(self.objective)
        _optimizer_name("WarpTraining", self.optimizer)
        _positive_int("WarpTraining", "points_per_step", self.points_per_step)
        _positive_int("WarpTraining", "passes", self.passes)
        check_replay(self.replay, self.lookahead)


@dataclass(frozen=True)
class InitTraining:
    """How θ_0 is meta-learned: ``learner`` (an :class:`~warpkit.engine.init_learners.InitLearner`) gives a
    gradient per task, averaged over the meta-batch and applied by ``optimizer`` at ``lr``. Extra tensors the
    learner owns (Meta-SGD's step sizes) and, for a learner with ``learn_warps`` (T-Nets), the warps φ share this
    optimiser.

    >>> from warpkit.engine.init_learners import Reptile
    >>> InitTraining(Reptile(), lr=0.5).learner.name
    'reptile'
    """

    learner: Any
    lr: float = 0.1
    optimizer: str = "sgd"

    def __post_init__(self):
        if not hasattr(self.learner, "task_gradient"):
            raise ValueError(f"InitTraining: learner must be an InitLearner (Leap(), Reptile(), MAML(), ...), "
                             f"got {self.learner!r}")
        _optimizer_name("InitTraining", self.optimizer)
