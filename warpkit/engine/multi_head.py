r"""Multi-head finetuning: the "finetuning" baseline of Leap and WarpGrad (Flennerhag et al., 2020, Section 4.2).

Not a meta-learner: it pretrains one body on the union of the training tasks, with one head per task, and then
adapts (body, one shared head) to each test task with the same inner loop as every meta-learner. It is built by
composition: a :class:`~warpkit.engine.meta.MetaLearner` without warp or initialisation training does the
adaptation, prediction and checkpointing of the model; this class adds the heads and the pretraining step.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Hashable, Sequence

import torch
import torch.nn as nn
from torch.func import grad_and_value

from warpkit.engine.adapt import LossFn, Params, Trajectory, forward, fresh_buffers, train_mode
from warpkit.engine.meta import MetaLearner, MetaStepStats
from warpkit.engine.options import InnerLoop
from warpkit.engine.tasks import Task
from warpkit.engine.warp import task_parameters, warp_parameters

HEAD_INITS = ("mean", "zeros")


def default_task_key(task: Task) -> Hashable:
    """A training task's identity for multi-head finetuning: its ``task_id`` attribute (e.g. the alphabet).

    >>> from types import SimpleNamespace
    >>> default_task_key(SimpleNamespace(task_id="Greek"))
    'Greek'
    """
    key = getattr(task, "task_id", None)
    if key is None:
        raise ValueError(
            "MultiHeadFinetuning needs to know which training task each task is (one head per task): give each "
            "task a `task_id` attribute (e.g. its alphabet's name), or pass task_keys=[...] to meta_step, or "
            "build the learner with task_key=<function task -> key>"
        )
    return key


def _head_names(model: nn.Module, head: str) -> list[str]:
    """The task parameters of the submodule ``head``, checked to be a head that can draw new parameters."""
    try:
        head_module = model.get_submodule(head)
    except AttributeError as error:
        raise ValueError(
            f"MultiHeadFinetuning: the model has no submodule {head!r}; pass head=<name of the output layer>"
        ) from error
    if not hasattr(head_module, "reset_parameters"):
        raise ValueError(f"MultiHeadFinetuning: the head {head!r} has no reset_parameters() to draw new heads")
    names = [n for n in task_parameters(model) if n.startswith(head + ".")]
    if not names:
        raise ValueError(f"MultiHeadFinetuning: the head {head!r} holds no task parameters")
    return names


class MultiHeadFinetuning:
    r"""Multi-head finetuning.

    **Pretraining** (``meta_step``): the body (every task parameter outside the ``head`` module) is shared by all
    training tasks; every training task τ has its *own* head h_τ, created the first time τ is seen (a fresh
    random initialisation of the model's head module, seeded) and kept across meta-steps. One ``meta_step`` takes
    ``inner.steps`` SGD steps per task of the meta-batch, interleaved in a shuffled order, each on one batch of one
    task (the task's own batch size) with loss L_τ(body, h_τ):

    .. math::  (\text{body}, h_\tau) \leftarrow (\text{body}, h_\tau) - \beta\,\nabla L_\tau(\text{body}, h_\tau),

    i.e. plain SGD on the union of the training tasks, with as many steps and examples per meta-iteration as the
    meta-learners' inner loops use (β = ``pretrain_lr``, default ``inner.lr``).

    **Test head policy** (``head_init``): at test time every method adapts θ_0 = (body, one head) with the same
    inner loop. The head multi-head finetuning starts from is, by default, the **mean of the trained heads**
    (``"mean"``): like the head a meta-learner learns (Reptile's θ_0 head is an average of adapted heads), it is
    one head shared by all test tasks and derived from the training tasks only, so no method gets a random head
    per test task (the original code's unfairness) and none gets a head fitted to the test task. ``"zeros"``
    starts the test head at zero (uniform predictions; the body then receives no gradient until the head has
    moved). The model's own head parameters hold this test head after every ``meta_step``.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> model = nn.Sequential()
    >>> model.add_module("body", nn.Linear(1, 4))
    >>> model.add_module("head", nn.Linear(4, 1))
    >>> x = torch.linspace(-1, 1, 8).unsqueeze(1)
    >>> tasks = [SupervisedTask(x, a * x, batch_size=8) for a in (1.0, -1.0)]
    >>> for task, name in zip(tasks, ("up", "down")):
    ...     task.task_id = name
    >>> learner = MultiHeadFinetuning(model, nn.functional.mse_loss, inner=InnerLoop(lr=0.1, steps=3))
    >>> learner.meta_step(tasks).iteration, sorted(learner.heads)
    (1, ['down', 'up'])
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inner: InnerLoop = InnerLoop(),
                 pretrain_lr: float | None = None, head: str = "head", head_init: str = "mean",
                 task_key: Callable[[Task], Hashable] = default_task_key, seed: int = 0):
        if head_init not in HEAD_INITS:
            raise ValueError(f"MultiHeadFinetuning: head_init must be one of {HEAD_INITS}, got {head_init!r}")
        self.learner = MetaLearner(model, loss_fn, inner=inner, warp=None, init=None, seed=seed)
        self.head_names = _head_names(model, head)
        self.body_names = [n for n in task_parameters(model) if n not in self.head_names]
        self.head, self.head_init, self.task_key, self.seed = head, head_init, task_key, seed
        self.pretrain_lr = inner.lr if pretrain_lr is None else pretrain_lr
        self.heads: dict[str, Params] = {}  # training task key → its head's parameters (names as in the model)

    # -- what every method offers, done by the composed MetaLearner ---------------------------------------
    @property
    def model(self) -> nn.Module:
        return self.learner.model

    @property
    def loss_fn(self) -> LossFn:
        return self.learner.loss_fn

    @property
    def inner(self) -> InnerLoop:
        return self.learner.inner

    @property
    def iteration(self) -> int:
        return self.learner.iteration

    def adapt(self, task: Task, num_steps: int | None = None, keep_trajectory: bool = False) -> Trajectory:
        """Adapt (body, test head) to ``task`` with the shared inner loop (the model is not modified)."""
        return self.learner.adapt(task, num_steps, keep_trajectory=keep_trajectory)

    def fit_predict(self, task: Task, x: torch.Tensor, batchnorm: str = "running", raw: bool = False):
        """Adapt to ``task`` and label ``x`` (see :meth:`MetaLearner.fit_predict`)."""
        return self.learner.fit_predict(task, x, batchnorm, raw)

    # -- heads ------------------------------------------------------------------------------------------
    def _new_head(self) -> Params:
        """A fresh random head, drawn like the model's own head module, seeded by (seed, number of heads)."""
        module = copy.deepcopy(self.model.get_submodule(self.head))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1_000_003 * self.seed + len(self.heads) + 1)
            module.reset_parameters()
        prefix = self.head + "."
        return {prefix + n: p.detach().clone() for n, p in module.named_parameters()}

    def head_of(self, key: Hashable) -> Params:
        """The head of training task ``key`` (created on first use)."""
        name = str(key)
        if name not in self.heads:
            self.heads[name] = self._new_head()
        return self.heads[name]

    def test_head(self) -> Params:
        """The head every test task starts from (see ``head_init``)."""
        if self.head_init == "zeros" or not self.heads:
            return {n: torch.zeros_like(p) for n, p in task_parameters(self.model).items() if n in self.head_names}
        return {n: torch.stack([h[n] for h in self.heads.values()]).mean(0) for n in self.head_names}

    # -- pretraining ------------------------------------------------------------------------------------
    def meta_step(self, tasks: Sequence[Task], task_keys: Sequence[Hashable] | None = None) -> MetaStepStats:
        """``inner.steps`` SGD steps per task of ``tasks`` on the shared body and each task's own head."""
        tasks = list(tasks)
        if not tasks:
            raise ValueError("meta_step(): the meta-batch holds no tasks")
        keys = list(task_keys) if task_keys is not None else [self.task_key(t) for t in tasks]
        if len(keys) != len(tasks):
            raise ValueError(f"meta_step(): {len(tasks)} tasks but {len(keys)} task keys")
        start = time.perf_counter()
        theta = task_parameters(self.model)
        body = {n: theta[n].detach().clone() for n in self.body_names}
        heads = [self.head_of(key) for key in keys]
        losses = self._pretrain(tasks, body, heads)
        self._write_model(body, self.test_head())
        self.learner.iteration += 1
        return MetaStepStats(
            iteration=self.iteration,
            task_loss_first=sum(l[0] for l in losses) / len(losses),
            task_loss_last=sum(l[-1] for l in losses) / len(losses),
            warp_objective=float("nan"), warp_steps=0,
            seconds_adapt=time.perf_counter() - start, seconds_replay=0.0,
        )

    def _pretrain(self, tasks: list[Task], body: Params, heads: list[Params]) -> list[list[float]]:
        """SGD on (body, h_τ) in place, over a shuffled interleaving of the tasks' steps (each task sees its own
        steps 0, 1, ... in order); returns each task's losses."""
        phi = {n: p.detach() for n, p in warp_parameters(self.model).items()}
        buffers = [fresh_buffers(self.model) for _ in tasks]

        def loss_of(body_now, head_now, buffers_now, inputs, target):
            return self.loss_fn(forward(self.model, {**body_now, **head_now, **phi}, buffers_now, inputs), target)

        gradient_and_loss = grad_and_value(loss_of, argnums=(0, 1))
        order = torch.randperm(len(tasks) * self.inner.steps, generator=self.learner.generator) % len(tasks)
        next_step = [0] * len(tasks)
        losses: list[list[float]] = [[] for _ in tasks]
        with train_mode(self.model):
            for index in order.tolist():
                inputs, target = tasks[index].sample_batch(next_step[index])
                next_step[index] += 1
                (g_body, g_head), loss = gradient_and_loss(body, heads[index], buffers[index], inputs, target)
                losses[index].append(float(loss))
                with torch.no_grad():
                    for n in body:
                        body[n] = body[n] - self.pretrain_lr * g_body[n]  # body ← body − β ∇_body L_τ
                    for n in heads[index]:
                        heads[index][n] = heads[index][n] - self.pretrain_lr * g_head[n]  # h_τ ← h_τ − β ∇_h L_τ
        return losses

    def _write_model(self, body: Params, head: Params) -> None:
        theta = task_parameters(self.model)
        with torch.no_grad():
            for n, value in {**body, **head}.items():
                theta[n].copy_(value)

    # -- checkpointing ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The composed learner's state and every training task's head."""
        state = self.learner.state_dict()
        state["heads"] = {key: {n: t.clone() for n, t in head.items()} for key, head in self.heads.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Put back a :meth:`state_dict`."""
        if "heads" not in state:
            raise KeyError("MultiHeadFinetuning.load_state_dict(): the state holds no 'heads' (not a multi-head run?)")
        self.learner.load_state_dict(state)
        self.heads = {key: {n: t.clone() for n, t in head.items()} for key, head in state["heads"].items()}

    def save(self, path):
        """Not supported: a saved learner file holds a MetaLearner; multi-head finetuning keeps heads of its own."""
        raise ValueError("save(): saving supports MetaLearner itself, not MultiHeadFinetuning, which keeps state "
                         "of its own (its heads); save its state_dict() with torch.save instead")
