"""N-way K-shot classification tasks from tensors or from a folder of images.

A :class:`ClassificationTask` has a **support set** (the examples the inner loop adapts on) and a **query set**
(the examples an adapted learner is scored on). It implements :class:`warpkit.engine.tasks.Task`, so every
meta-learner (WarpGrad, Leap, Reptile, MAML, ...) can meta-train on it, adapt to it and predict for it:

* ``sample_batch(step)``: batch ``step`` of shuffled passes over the support set (the whole support set, in
  order, when ``batch_size`` is None);
* ``sample_meta_batches(step)``: a support batch (the task loss) and a query batch (the meta loss), the few-shot
  protocol; without a query set, two support batches;
* ``evaluation_batch()``: the whole query set; ``training_set()``: the whole support set.

Everything is a deterministic function of ``seed`` and the step.

>>> import torch
>>> support_x, support_y = torch.rand(5, 1, 28, 28), torch.arange(5)    # 5-way 1-shot
>>> query_x, query_y = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2)
>>> task = ClassificationTask(support_x, support_y, query_x, query_y)
>>> task.ways, task.shots, len(task.query_y)
(5, 1, 10)
>>> inputs, labels = task.sample_batch(0)
>>> tuple(inputs.shape), labels.tolist()
((5, 1, 28, 28), [0, 1, 2, 3, 4])

:meth:`ClassificationTask.from_folder` reads one sub-folder per class (``path/<class>/<image>``): classes are
the sub-folders in name order (label i is ``class_names[i]``), a class's images are taken in file-name order, the
first ``shots`` of each class form the support set and the rest the query set. Images are preprocessed by
:func:`warpkit.data.images.load_image`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch

from warpkit.data.images import IMAGE_SUFFIXES, load_image
from warpkit.engine.tasks import check_batch_size


def _natural_key(path: Path):
    """File names in human order: ``img2.png`` before ``img10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ClassificationTask:
    """A classification task with a support set and a query set (module docstring); labels are ints 0 … ways−1.

    ``support_x``/``query_x``: input tensors ``[N, ...]`` with the same per-example shape; ``support_y``/``query_y``:
    integer label tensors ``[N]``. ``query_x``/``query_y`` may both be None (a task to adapt to and predict for,
    with nothing to score). ``batch_size``: examples per inner-loop batch, None for the whole support set, else an
    int between 1 and the support size. ``seed`` fixes the shuffles. Attributes: ``ways``, ``shots`` (support
    examples of the smallest class), ``class_names`` (from :meth:`from_folder`, else ``["0", "1", …]``).

    >>> task = ClassificationTask(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), batch_size=2)
    >>> task.ways, task.shots, tuple(task.sample_batch(0)[0].shape)
    (2, 2, (2, 1, 28, 28))
    """

    def __init__(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor | None = None,
                 query_y: torch.Tensor | None = None, batch_size: int | None = None, seed: int = 0,
                 class_names: Sequence[str] | None = None):
        self.support_x, self.support_y = self._check_pair(support_x, support_y, "support")
        if (query_x is None) != (query_y is None):
            raise ValueError("ClassificationTask: give both query_x and query_y, or neither")
        if query_x is not None:
            self.query_x, self.query_y = self._check_pair(query_x, query_y, "query")
            if self.query_x.shape[1:] != self.support_x.shape[1:]:
                raise ValueError(f"ClassificationTask: query_x examples have shape {tuple(self.query_x.shape[1:])}, "
                                 f"support_x examples {tuple(self.support_x.shape[1:])}; they must match")
        else:
            self.query_x = self.query_y = None
        labels = self.support_y.unique()
        self.ways = int(self.support_y.max()) + 1
        if labels.tolist() != list(range(self.ways)):
            raise ValueError(f"ClassificationTask: support_y must hold every label 0 … ways−1 at least once, got the "
                             f"labels {labels.tolist()}")
        if self.query_y is not None and len(self.query_y) and int(self.query_y.max()) >= self.ways:
            raise ValueError(f"ClassificationTask: query_y has label {int(self.query_y.max())}, but the support set "
                             f"has only the labels 0 … {self.ways - 1}")
        self.shots = int(torch.bincount(self.support_y, minlength=self.ways).min())
        self.batch_size = check_batch_size(batch_size, len(self.support_x), "ClassificationTask")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"ClassificationTask: seed must be an int between 0 and 2**63 - 1, got {seed!r}")
        self.seed = seed
        names = [str(i) for i in range(self.ways)] if class_names is None else [str(n) for n in class_names]
        if len(names) != self.ways:
            raise ValueError(f"ClassificationTask: {len(names)} class_names for {self.ways} classes")
        self.class_names = names

    @staticmethod
    def _check_pair(x, y, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError(f"ClassificationTask: {which}_x and {which}_y must be torch tensors, got "
                             f"{type(x).__name__} and {type(y).__name__}")
        if x.dim() < 1 or len(x) == 0 and which == "support":
            raise ValueError(f"ClassificationTask: {which}_x must hold at least one example [N, ...], got shape "
                             f"{tuple(x.shape)}")
        if y.dim() != 1 or len(y) != len(x):
            raise ValueError(f"ClassificationTask: {which}_y must be a 1-D tensor with one label per example of "
                             f"{which}_x ({len(x)}), got shape {tuple(y.shape)}")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"ClassificationTask: {which}_y must hold integer labels, got dtype {y.dtype}")
        if len(y) and int(y.min()) < 0:
            raise ValueError(f"ClassificationTask: {which}_y must hold labels >= 0, got {int(y.min())}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"ClassificationTask: {which}_x holds NaN or infinite values")
        return x, y.long()

    def __repr__(self) -> str:
        query = 0 if self.query_x is None else len(self.query_x)
        return (f"ClassificationTask({self.ways}-way {self.shots}-shot, {len(self.support_x)} support and {query} "
                f"query examples, batch {self.batch_size}, seed {self.seed})")

    # -- batches
    def _generator(self, *parts: int) -> torch.Generator:
        seed = self.seed
        for part in parts:
            seed = (seed * 1_000_003 + part + 1) % 2**63
        return torch.Generator().manual_seed(seed)

    def _draw(self, x: torch.Tensor, y: torch.Tensor, count: int, *parts: int):
        index = torch.randperm(len(x), generator=self._generator(*parts))[:count].to(x.device)
        return x.index_select(0, index), y.index_select(0, index.to(y.device))

    def sample_batch(self, step: int):
        """The inner loop's batch for step ``step``: positions ``[step·B, (step+1)·B)`` of shuffled passes over the
        support set (the whole support set in order when B is its size)."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"ClassificationTask: step must be an int >= 0, got {step!r}")
        size = len(self.support_x)
        if self.batch_size == size:
            return self.support_x, self.support_y
        pieces, position, end = [], step * self.batch_size, (step + 1) * self.batch_size
        while position < end:
            epoch, offset = divmod(position, size)
            order = torch.randperm(size, generator=self._generator(1, epoch))
            take = min(size - offset, end - position)
            pieces.append(order[offset:offset + take])
            position += take
        index = torch.cat(pieces).to(self.support_x.device)
        return self.support_x.index_select(0, index), self.support_y.index_select(0, index.to(self.support_y.device))

    def sample_meta_batches(self, step: int):
        """``(support batch, query batch)`` for replaying the point before step ``step`` (two support batches
        when the task has no query set); a fresh draw on every call."""
        self._meta_calls = getattr(self, "_meta_calls", 0) + 1
        task_batch = self._draw(self.support_x, self.support_y, self.batch_size, 2, step, self._meta_calls)
        if self.query_x is None or len(self.query_x) == 0:
            return task_batch, self._draw(self.support_x, self.support_y, self.batch_size, 3, step, self._meta_calls)
        count = min(self.batch_size, len(self.query_x))
        return task_batch, self._draw(self.query_x, self.query_y, count, 4, step, self._meta_calls)

    def evaluation_batch(self):
        """The whole query set ``(query_x, query_y)``."""
        if self.query_x is None or len(self.query_x) == 0:
            raise ValueError("ClassificationTask: this task has no query set to evaluate on")
        return self.query_x, self.query_y

    def training_set(self):
        """The whole support set ``(support_x, support_y)``."""
        return self.support_x, self.support_y

    # -- from files
    @classmethod
    def from_folder(cls, path: str | os.PathLike, shots: int = 1, size: int = 28, batch_size: int | None = None,
                    seed: int = 0, invert: bool = False) -> "ClassificationTask":
        """The task of a folder holding one sub-folder of images per class (module docstring): the first
        ``shots`` images of each class (in file-name order) are the support set, the rest the query set; images
        go through :func:`~warpkit.data.images.load_image` at ``size`` (``invert`` for light ink on dark)."""
        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"ClassificationTask.from_folder(): {folder} is not a folder")
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"ClassificationTask.from_folder(): shots must be an int >= 1, got {shots!r}")
        classes = sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
                         key=_natural_key)
        if not classes:
            raise ValueError(f"ClassificationTask.from_folder(): {folder} has no sub-folders; put each class's "
                             "images in a sub-folder of its own (path/<class>/<image>.png)")
        if len(classes) < 2:
            raise ValueError(f"ClassificationTask.from_folder(): {folder} has one class sub-folder; a classification "
                             "task needs at least 2")
        support, support_labels, query, query_labels = [], [], [], []
        for label, directory in enumerate(classes):
            files = sorted((f for f in directory.iterdir()
                            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")),
                           key=_natural_key)
            if len(files) < shots:
                raise ValueError(f"ClassificationTask.from_folder(): class {directory.name!r} has {len(files)} "
                                 f"image(s), but shots={shots} needs at least {shots} (image files end in "
                                 f"{', '.join(IMAGE_SUFFIXES)})")
            images = [load_image(f, size=size, invert=invert) for f in files]
            support += images[:shots]
            support_labels += [label] * shots
            query += images[shots:]
            query_labels += [label] * (len(files) - shots)
        query_x = torch.stack(query) if query else None
        query_y = torch.tensor(query_labels, dtype=torch.long) if query else None
        return cls(torch.stack(support), torch.tensor(support_labels, dtype=torch.long), query_x, query_y,
                   batch_size=batch_size, seed=seed, class_names=[d.name for d in classes])
