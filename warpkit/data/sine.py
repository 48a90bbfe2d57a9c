r"""Continual sine regression (Flennerhag et al., 2020, Section 4.4): a task is a *sequence* of sub-tasks on consecutive segments.

The input interval [a, b] (default [−5, 5]) is cut into T equal consecutive segments S_1 … S_T (default T = 5).
A continual task draws, for every sub-task t, its own sine wave

.. math::  y_t(x) = A_t \sin(x + \varphi_t), \qquad A_t \sim U[A_{\min}, A_{\max}],\ \varphi_t \sim U[\varphi_{\min}, \varphi_{\max}],

and sub-task t is regression of y_t on x ∈ S_t. The learner sees the sub-tasks one after the other, for
``steps_per_subtask`` SGD steps each (K = T × steps_per_subtask inner steps in all), and never revisits one:
inner step k belongs to sub-task t(k) = ⌊k / steps_per_subtask⌋.

The two losses of WarpGrad's continual objective (Algorithm 3):

* the **task loss** at step k is the current sub-task's mean squared error,
  L_task(θ) = (1/B) Σ_{x ∈ batch ⊂ S_t} (f(x) − y_t(x))²;
* the **meta loss** at a point buffered during sub-task t is the mean over the sub-tasks seen so far of each
  sub-task's mean squared error,

  .. math::  L_{\text{meta}}(\theta) = \frac{1}{t} \sum_{s=1}^{t} \frac{1}{m} \sum_{x \in \text{batch}_s \subset S_s}
             \big(f(x) - y_s(x)\big)^2,

  so the warp is meta-learned to make learning sub-task t leave sub-tasks 1 … t−1 intact.

Weighted targets (why the target is a pair)
-------------------------------------------
WarpGrad replays buffered points in one vmapped call, so every meta batch of a task must have the same shape
whatever sub-task it was drawn for. The meta batch therefore always holds ``meta_points_per_subtask`` = m inputs
from *every* segment (T·m in all), and its target is the pair ``(y, w)``: ``y`` the sine values and ``w`` a
per-sample weight, w = 1/(t·m) on the segments seen so far (s ≤ t) and 0 on the others. Then

.. math::  \sum_i w_i\, (f(x_i) - y_i)^2 = \frac{1}{t} \sum_{s \le t} \frac{1}{m} \sum_{x \in \text{batch}_s} (f(x) - y_s(x))^2,

exactly the meta loss above (the unseen segments get zero weight: their values never reach the loss). Task
batches use the same format with w = 1/B, so one loss function, :func:`weighted_mse`, serves both, and the
evaluation batches too. ``tests/test_sine_tasks.py`` checks the identity against a per-sub-task reference.

Batch shapes: inputs ``[N, 1]``, y ``[N, 1]``, w ``[N]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

Batch = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


def weighted_mse(output: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    r"""Σ_i w_i ‖f(x_i) − y_i‖² for ``target = (y, w)``; with w summing to one, a weighted mean squared error.

    ``output`` and ``y`` are ``[N, 1]`` (or ``[N, d]``), ``w`` is ``[N]``."""
    y, weights = target
    if output.shape != y.shape:
        raise ValueError(f"weighted_mse(): output has shape {tuple(output.shape)} but y has {tuple(y.shape)}")
    return (weights * (output - y).pow(2).sum(dim=-1)).sum()


def segment_bounds(interval: tuple[float, float], num_subtasks: int) -> list[tuple[float, float]]:
    """The T consecutive equal segments [low, high) of ``interval``."""
    low, high = interval
    width = (high - low) / num_subtasks
    return [(low + i * width, low + (i + 1) * width) for i in range(num_subtasks)]


@dataclass(frozen=True)
class SineFamily:
    r"""The family of continual sine tasks: how many sub-tasks, how long each is trained, the interval, the ranges
    of A_t and φ_t, and the batch sizes. Every setting of the family is declared here, once; an experiment's
    configuration extends this class (e.g. :class:`warpkit.experiments.continual.ContinualConfig`) rather than
    repeating the fields.

    >>> family = SineFamily(num_subtasks=3, steps_per_subtask=4)
    >>> family.inner_steps
    12
    >>> task = family.sampler(seed=0).sample()
    >>> task.num_subtasks, task.num_steps
    (3, 12)
    """

    num_subtasks: int = 5
    steps_per_subtask: int = 10
    interval: tuple[float, float] = (-5.0, 5.0)
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    batch_size: int = 10
    meta_points_per_subtask: int = 10
    eval_points_per_subtask: int = 50

    def __post_init__(self):
        if self.num_subtasks < 1:
            raise ValueError(f"SineFamily: num_subtasks must be >= 1, got {self.num_subtasks}")
        for name in ("amplitude_range", "phase_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"SineFamily: {name} must be (low, high) with low <= high, got {(low, high)}")

    @property
    def inner_steps(self) -> int:
        """K = T × steps_per_subtask."""
        return self.num_subtasks * self.steps_per_subtask

    def sampler(self, seed: int = 0, device: torch.device | str = "cpu") -> "ContinualSineSampler":
        """A task sampler for this family; use one seed for meta-training and another for held-out sequences.
        (A configuration that extends the family hands the sampler only the family's own fields.)"""
        family = SineFamily(**{item.name: getattr(self, item.name) for item in dataclasses.fields(SineFamily)})
        return ContinualSineSampler(family, seed=seed, device=str(device))


class ContinualSineTask:
    r"""One continual task: T sine sub-tasks on T consecutive segments, learned in order (a ``warpkit.engine.tasks.Task``).

    ``sample_batch(step)`` draws ``batch_size`` points uniformly from the segment of sub-task t(step);
    ``sample_meta_batches(step)`` returns ``(task batch of sub-task t, meta batch over sub-tasks 1..t)`` (two
    independent draws; see the module docstring for the weight mask); ``evaluation_batch()`` is a fixed grid of
    ``eval_points_per_subtask`` points on every segment with equal weight per segment (the mean over all T
    segments of each segment's mean squared error). Steps past the end (k ≥ K, e.g. the extra batch that
    ``adapt`` draws to score θ_K) belong to the last sub-task.
    """

    def __init__(
        self,
        amplitudes,
        phases,
        steps_per_subtask: int,
        interval: tuple[float, float] = SineFamily.interval,  # the defaults are the family's
        batch_size: int = SineFamily.batch_size,
        meta_points_per_subtask: int = SineFamily.meta_points_per_subtask,
        eval_points_per_subtask: int = SineFamily.eval_points_per_subtask,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ):
        self.amplitudes = torch.as_tensor(amplitudes, dtype=torch.float32).flatten()
        self.phases = torch.as_tensor(phases, dtype=torch.float32).flatten()
        if len(self.amplitudes) != len(self.phases) or len(self.amplitudes) == 0:
            raise ValueError(
                f"ContinualSineTask: give one amplitude and one phase per sub-task "
                f"(got {len(self.amplitudes)} amplitudes and {len(self.phases)} phases)"
            )
        for name, value in (("steps_per_subtask", steps_per_subtask), ("batch_size", batch_size),
                            ("meta_points_per_subtask", meta_points_per_subtask),
                            ("eval_points_per_subtask", eval_points_per_subtask)):
            if int(value) != value or value < 1:
                raise ValueError(f"ContinualSineTask: {name} must be a positive integer, got {value!r}")
        if not interval[0] < interval[1]:
            raise ValueError(f"ContinualSineTask: the interval must be (low, high) with low < high, got {interval}")
        self.num_subtasks = len(self.amplitudes)
        self.steps_per_subtask = int(steps_per_subtask)
        self.interval = (float(interval[0]), float(interval[1]))
        self.segments = segment_bounds(self.interval, self.num_subtasks)
        self.batch_size = int(batch_size)
        self.meta_points_per_subtask = int(meta_points_per_subtask)
        self.eval_points_per_subtask = int(eval_points_per_subtask)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(self.seed)

    def replica(self) -> "ContinualSineTask":
        """The same sequence with its sampling generator rewound to the start: it draws the same batches again
        (so two learners can be trained on identical data)."""
        return ContinualSineTask(
            self.amplitudes, self.phases, self.steps_per_subtask, self.interval, self.batch_size,
            self.meta_points_per_subtask, self.eval_points_per_subtask, self.seed, self.device,
        )

    # -- the target function -------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """K = T × steps_per_subtask: the length of the whole sequence."""
        return self.num_subtasks * self.steps_per_subtask

    def subtask_of_step(self, step: int) -> int:
        """t(k) = ⌊k / steps_per_subtask⌋ (0-based), clamped to the last sub-task for k ≥ K."""
        if step < 0:
            raise ValueError(f"ContinualSineTask: step must be >= 0, got {step}")
        return min(int(step) // self.steps_per_subtask, self.num_subtasks - 1)

    def subtask_of_input(self, x: torch.Tensor) -> torch.Tensor:
        """The (0-based) segment index of each input (the right end of the interval belongs to the last one)."""
        low, high = self.interval
        index = torch.floor((x - low) / (high - low) * self.num_subtasks).long()
        return index.clamp(0, self.num_subtasks - 1)

    def target(self, x: torch.Tensor, subtask: int | torch.Tensor | None = None) -> torch.Tensor:
        """y = A_t sin(x + φ_t) with t the sub-task given, or, by default, the segment each x falls in."""
        t = self.subtask_of_input(x) if subtask is None else torch.as_tensor(subtask, device=x.device)
        return self.amplitudes.to(x.device)[t] * torch.sin(x + self.phases.to(x.device)[t])

    def _to_device(self, batch: Batch) -> Batch:
        # draws happen on the CPU generator (reproducible on any device), then move
        if self.device.type == "cpu":
            return batch
        x, (y, w) = batch
        return x.to(self.device), (y.to(self.device), w.to(self.device))

    # -- batches -------------------------------------------------------------------------------------------
    def _uniform(self, subtask: int, count: int) -> torch.Tensor:
        low, high = self.segments[subtask]
        return low + (high - low) * torch.rand(count, 1, generator=self.generator)

    def subtask_batch(self, subtask: int, count: int | None = None) -> Batch:
        """``count`` (default ``batch_size``) uniform draws on sub-task ``subtask``'s segment, weights 1/count."""
        count = self.batch_size if count is None else count
        x = self._uniform(subtask, count)
        return self._to_device((x, (self.target(x, subtask), torch.full((count,), 1.0 / count))))

    def sample_batch(self, step: int) -> Batch:
        return self.subtask_batch(self.subtask_of_step(step))

    def meta_batch(self, current_subtask: int) -> Batch:
        """m draws on every segment; weight 1/((t+1)·m) on segments 0..t (t = ``current_subtask``), 0 beyond."""
        m, seen = self.meta_points_per_subtask, current_subtask + 1
        x = torch.cat([self._uniform(s, m) for s in range(self.num_subtasks)])
        y = torch.cat([self.target(x[s * m:(s + 1) * m], s) for s in range(self.num_subtasks)])
        weights = torch.zeros(self.num_subtasks * m)
        weights[: seen * m] = 1.0 / (seen * m)
        return self._to_device((x, (y, weights)))

    def sample_meta_batches(self, step: int) -> tuple[Batch, Batch]:
        """(task batch from the current sub-task, meta batch over the sub-tasks seen so far): two fresh draws."""
        t = self.subtask_of_step(step)
        return self.subtask_batch(t), self.meta_batch(t)

    def segment_grid(self, subtask: int, count: int | None = None) -> Batch:
        """A fixed evenly spaced grid (cell midpoints) on one segment, weights 1/count: held-out evaluation data."""
        count = self.eval_points_per_subtask if count is None else count
        low, high = self.segments[subtask]
        x = (low + (high - low) * (torch.arange(count, dtype=torch.float32) + 0.5) / count).unsqueeze(-1)
        return self._to_device((x, (self.target(x, subtask), torch.full((count,), 1.0 / count))))

    def evaluation_batch(self) -> Batch:
        """Grids on all segments, weights 1/(T·n): the mean over all T segments of each segment's MSE."""
        grids = [self.segment_grid(s) for s in range(self.num_subtasks)]  # already on self.device
        x = torch.cat([g[0] for g in grids])
        y = torch.cat([g[1][0] for g in grids])
        weights = torch.cat([g[1][1] for g in grids]) / self.num_subtasks
        return x, (y, weights)

    def __repr__(self) -> str:
        waves = ", ".join(f"{a:.2f}·sin(x+{p:.2f})" for a, p in zip(self.amplitudes.tolist(), self.phases.tolist()))
        return f"ContinualSineTask([{waves}], steps_per_subtask={self.steps_per_subtask})"


class ContinualSineSampler:
    r"""Draws continual sine tasks of a :class:`SineFamily`: A_t ~ U[amplitude_range], φ_t ~ U[phase_range]
    independently per sub-task.

    Every task gets its own seed (drawn from the sampler's generator), so a task's batches do not depend on what
    other tasks drew, and :meth:`ContinualSineTask.replica` can replay them. Use different ``seed`` values for
    meta-training and held-out sequences.
    """

    def __init__(self, family: SineFamily = SineFamily(), seed: int = 0, device: str = "cpu"):
        self.family, self.seed, self.device = family, int(seed), device
        self.generator = torch.Generator().manual_seed(self.seed)

    def _uniform(self, value_range) -> torch.Tensor:
        low, high = value_range
        return low + (high - low) * torch.rand(self.family.num_subtasks, generator=self.generator)

    def sample(self) -> ContinualSineTask:
        family = self.family
        amplitudes, phases = self._uniform(family.amplitude_range), self._uniform(family.phase_range)
        task_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return ContinualSineTask(
            amplitudes, phases, family.steps_per_subtask, family.interval, family.batch_size,
            family.meta_points_per_subtask, family.eval_points_per_subtask, seed=task_seed, device=self.device,
        )

    def sample_many(self, count: int) -> list[ContinualSineTask]:
        return [self.sample() for _ in range(count)]

    def state_dict(self) -> dict:
        """The generator state (for resuming meta-training on the same stream of tasks)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


__all__ = ["SineFamily", "ContinualSineTask", "ContinualSineSampler", "weighted_mse", "segment_bounds"]
