r"""The trajectory buffer: where WarpGrad keeps the points it replays.

Algorithm 2 (offline WarpGrad, Flennerhag et al., 2020, Section 3) first runs a meta-batch of tasks and stores every iterate
θ^τ_k (k = 0 … K-1, detached, with BatchNorm statistics) of every task τ; it then shuffles all stored points and
takes meta-steps on φ over small chunks of them. A point is therefore the triple (task index, step k, state).

:class:`TrajectoryBuffer` holds points in memory, or on disk (one file per point, written atomically) for long
runs whose buffers do not fit in memory. :func:`stack_points` turns a chunk of points into stacked tensors (a
leading "point" dimension) so that the objective can replay them in one vmapped call.

A point also keeps what replay would otherwise recompute, when the inner loop's step was a plain SGD step
(:func:`warpkit.engine.adapt.adapt` records it only then): the next state θ_{k+1} = θ_k − α ∇L_task(θ_k; A_k)
and the batch A_k that step used. In memory ``next_params`` is the next point's own dict (no copy); on disk it is
stored with the point. :mod:`warpkit.engine.replay` uses them as the lookahead point of Eq. 11 and 12.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from warpkit.engine.adapt import Params, Trajectory


@dataclass
class TrajectoryPoint:
    """θ_k of task ``task_index`` before its inner step ``step``, with the BatchNorm statistics at that moment;
    optionally θ_{k+1} (``next_params``) and the inner batch A_k (``batch``) of a plain SGD step, with the version
    counters of the φ it was taken with (``warp_versions``; module docstring).

    >>> point = TrajectoryPoint(task_index=0, step=3, params={"w": torch.zeros(2)}, buffers={})
    >>> point.task_index, point.step, point.next_params is None
    (0, 3, True)
    """

    task_index: int
    step: int
    params: Params
    buffers: Params
    next_params: Params | None = None
    batch: Any = None
    warp_versions: dict | None = None


class TrajectoryBuffer:
    """Buffered trajectory points of a meta-batch of tasks.

    ``directory=None`` keeps points in memory; a folder keeps each point in its own file there (created if
    needed; the buffer only ever deletes the files it wrote itself).

    >>> buffer = TrajectoryBuffer()   # in memory; TrajectoryBuffer("some/folder") keeps the points on disk
    >>> for step in range(5):
    ...     buffer.add_point(TrajectoryPoint(0, step, {"w": torch.full((2,), float(step))}, {}))
    >>> [len(chunk) for chunk in buffer.chunks(2, generator=torch.Generator().manual_seed(0))]
    [2, 2, 1]
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self._points: list[TrajectoryPoint | Path] = []
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = 0

    def __len__(self) -> int:
        return len(self._points)

    def add(self, task_index: int, trajectory: Trajectory) -> None:
        """Append the K pre-step states of ``trajectory`` as points of task ``task_index``."""
        if len(trajectory.params) != trajectory.num_steps:
            raise ValueError(
                "TrajectoryBuffer.add(): the trajectory holds no states; adapt with keep_trajectory=True"
            )
        states = trajectory.params + [trajectory.final_params]
        batches = trajectory.batches  # recorded by adapt only for plain SGD steps (then θ_{k+1} is the lookahead)
        for step, (params, buffers) in enumerate(zip(trajectory.params, trajectory.buffers)):
            self.add_point(TrajectoryPoint(task_index, step, params, buffers,
                                           next_params=states[step + 1] if batches else None,
                                           batch=batches[step] if batches else None,
                                           warp_versions=trajectory.warp_versions if batches else None))

    def add_point(self, point: TrajectoryPoint) -> None:
        if self.directory is None:
            self._points.append(point)
            return
        path = self.directory / f"point_{self._counter:08d}.pt"
        self._counter += 1
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(handle)
        try:  # write then rename: a point file is never half-written, and no temporary file is left behind
            torch.save(
                {"task_index": point.task_index, "step": point.step, "params": point.params,
                 "buffers": point.buffers, "next_params": point.next_params, "batch": point.batch,
                 "warp_versions": point.warp_versions},
                temporary,
            )
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self._points.append(path)

    def __getitem__(self, index: int) -> TrajectoryPoint:
        item = self._points[index]
        if isinstance(item, TrajectoryPoint):
            return item
        try:
            state = torch.load(item, weights_only=True)
        except Exception as error:  # a truncated or foreign file: say which
            raise RuntimeError(f"TrajectoryBuffer: cannot read buffered point {item}: {error}") from error
        return TrajectoryPoint(state["task_index"], state["step"], state["params"], state["buffers"],
                               state.get("next_params"), state.get("batch"), state.get("warp_versions"))

    def points(self) -> list[TrajectoryPoint]:
        return [self[i] for i in range(len(self))]

    def chunks(
        self, chunk_size: int, shuffle: bool = True, generator: torch.Generator | None = None
    ) -> Iterator[list[TrajectoryPoint]]:
        """Yield the buffered points in chunks of ``chunk_size`` (the last may be smaller), shuffled across tasks
        and steps by ``generator`` when ``shuffle``: the replay order of Algorithm 2."""
        if chunk_size < 1:
            raise ValueError(f"chunks(): chunk_size must be >= 1, got {chunk_size}")
        order = torch.randperm(len(self), generator=generator).tolist() if shuffle else list(range(len(self)))
        for start in range(0, len(order), chunk_size):
            yield [self[i] for i in order[start : start + chunk_size]]

    def clear(self) -> None:
        """Forget every point (and delete the files this buffer wrote)."""
        for item in self._points:
            if isinstance(item, Path) and item.exists():
                item.unlink()
        self._points = []

    def __del__(self):  # pragma: no cover - best effort cleanup of our own files only
        try:
            if self.directory is not None:
                self.clear()
        except Exception:
            pass


def stack_points(points: list[TrajectoryPoint]) -> tuple[Params, Params]:
    """Stack the states of ``points`` along a new leading dimension: ``(params, buffers)`` with every tensor of
    shape ``[len(points), *shape]`` (ready for ``torch.func.vmap`` over points).

    >>> params, buffers = stack_points([TrajectoryPoint(0, k, {"w": torch.zeros(3)}, {}) for k in range(4)])
    >>> params["w"].shape
    torch.Size([4, 3])
    """
    if not points:
        raise ValueError("stack_points(): no points to stack")
    params = {name: torch.stack([p.params[name] for p in points]) for name in points[0].params}
    buffers = {name: torch.stack([p.buffers[name] for p in points]) for name in points[0].buffers}
    return params, buffers


__all__ = ["TrajectoryPoint", "TrajectoryBuffer", "stack_points"]
