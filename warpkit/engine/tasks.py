"""What a *task* is to warpkit: a source of batches for the inner loop and for the meta-objective.

WarpGrad needs, for every buffered trajectory point θ_k of a task τ, two *different* batches
(Flennerhag et al., 2020, Section 3): one for the task loss L_task^τ that takes the lookahead step, one for the meta loss
L_meta^τ evaluated at the stepped point. Which data those batches come from is the experiment's business:

* Omniglot (multi-shot): both from the task's training split;
* few-shot: support and query;
* continual learning: the current sub-task for L_task, all sub-tasks seen so far for L_meta.

So a task exposes exactly that, and nothing about models or algorithms (data never imports the algorithms).
A *batch* is a pair ``(inputs, target)``; ``inputs`` is a tensor, ``target`` a tensor or any pytree of
tensors that the experiment's loss function understands (e.g. ``(y, weights)``). Within one task every batch
has the same shapes, so points can be replayed in a stacked (vmapped) batch.
"""

from __future__ import annotations

import operator
from typing import Any, Protocol, Tuple, runtime_checkable

import torch

Batch = Tuple[torch.Tensor, Any]


@runtime_checkable
class Task(Protocol):
    """The protocol every task sampler's tasks follow.

    >>> isinstance(SupervisedTask(torch.zeros(4, 1), torch.zeros(4)), Task)
    True
    """

    def sample_batch(self, step: int) -> Batch:
        """The batch the inner loop uses for its step ``step`` (0-based)."""
        ...

    def sample_meta_batches(self, step: int) -> tuple[Batch, Batch]:
        """``(task_batch, meta_batch)`` for replaying the point buffered before inner step ``step``.

        They must be two different draws.
        """
        ...

    def evaluation_batch(self) -> Batch:
        """Held-out data on which an adapted learner is scored."""
        ...


def check_batch_size(batch_size, available: int, owner: str) -> int:
    """``batch_size`` checked against ``available`` examples: None means all of them; otherwise an int between 1
    and ``available`` (a ``ValueError`` naming ``owner``, the argument and the accepted range otherwise).

    >>> check_batch_size(None, 50, "SupervisedTask"), check_batch_size(10, 50, "SupervisedTask")
    (50, 10)
    >>> check_batch_size(0, 50, "SupervisedTask")
    Traceback (most recent call last):
    ...
    ValueError: SupervisedTask: batch_size must be None (all 50 examples) or an int between 1 and 50, got 0
    """
    if available < 1:
        raise ValueError(f"{owner}: there are no training examples")
    if batch_size is None:
        return available
    try:
        size = None if isinstance(batch_size, bool) else operator.index(batch_size)
    except TypeError:
        size = None
    if size is None or not 1 <= size <= available:
        raise ValueError(
            f"{owner}: batch_size must be None (all {available} examples) or an int between 1 and {available}, "
            f"got {batch_size!r}"
        )
    return size


class SupervisedTask:
    """A task given by a training set and a held-out set of tensors; batches are drawn with replacement-free
    shuffles from the training set.

    ``sample_meta_batches`` returns two independent draws from the training set (the multi-shot protocol).
    Subclass and override ``sample_meta_batches`` for support/query or continual variants.

    >>> task = SupervisedTask(torch.arange(6.0).unsqueeze(-1), torch.arange(6), batch_size=4,
    ...                       generator=torch.Generator().manual_seed(0))
    >>> inputs, target = task.sample_batch(0)
    >>> inputs.shape, bool((inputs.squeeze(-1) == target).all())
    (torch.Size([4, 1]), True)
    """

    def __init__(
        self,
        train_inputs: torch.Tensor,
        train_targets: torch.Tensor,
        test_inputs: torch.Tensor | None = None,
        test_targets: torch.Tensor | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        transform=None,
    ):
        if len(train_inputs) != len(train_targets):
            raise ValueError(
                f"SupervisedTask: {len(train_inputs)} training inputs but {len(train_targets)} targets"
            )
        self.train_inputs, self.train_targets = train_inputs, train_targets
        self.test_inputs, self.test_targets = test_inputs, test_targets
        self.batch_size = check_batch_size(batch_size, len(train_inputs), "SupervisedTask")
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.transform = transform  # applied to inputs of training batches only (augmentation)

    def _draw(self) -> Batch:
        index = torch.randperm(len(self.train_inputs), generator=self.generator)[: self.batch_size]
        inputs = self.train_inputs[index]
        if self.transform is not None:
            inputs = self.transform(inputs, self.generator)
        return inputs, self.train_targets[index]

    def sample_batch(self, step: int) -> Batch:
        return self._draw()

    def sample_meta_batches(self, step: int) -> tuple[Batch, Batch]:
        return self._draw(), self._draw()

    def evaluation_batch(self) -> Batch:
        if self.test_inputs is None:
            raise ValueError("SupervisedTask: this task was built without held-out data")
        return self.test_inputs, self.test_targets

    def training_set(self) -> Batch:
        """All training inputs and targets (what the inner loop draws its batches from)."""
        return self.train_inputs, self.train_targets

    def __repr__(self) -> str:
        held_out = 0 if self.test_inputs is None else len(self.test_inputs)
        return (f"SupervisedTask({len(self.train_inputs)} training examples, {held_out} held out, "
                f"batch {self.batch_size})")


def stack_batches(batches: list) -> tuple:
    """Stack a list of ``(inputs, target)`` batches (same shapes; target may be a pytree) along a new leading
    dimension.

    >>> batches = [(torch.zeros(3, 2), (torch.ones(3), torch.ones(3))) for _ in range(4)]
    >>> inputs, (y, weights) = stack_batches(batches)
    >>> inputs.shape, y.shape
    (torch.Size([4, 3, 2]), torch.Size([4, 3]))
    """
    if not batches:
        raise ValueError("stack_batches(): no batches to stack")
    return torch.stack([b[0] for b in batches]), _stack_tree([b[1] for b in batches])


def _stack_tree(trees: list):
    """Stack same-structured pytrees (tensors, tuples/lists and dicts of them) leaf by leaf."""
    first = trees[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(trees)
    if isinstance(first, (tuple, list)):
        return type(first)(_stack_tree([t[i] for t in trees]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: _stack_tree([t[key] for t in trees]) for key in first}
    raise TypeError(f"stack_batches(): cannot stack a target of type {type(first).__name__}")
