r"""Every method of the Omniglot comparison (Flennerhag et al., 2020, Section 4.2) built from the same engine, by name.

All methods share one interface, :class:`~warpkit.engine.meta.MetaLearner`: ``meta_step(tasks)`` meta-trains on a
meta-batch, ``adapt(task)`` adapts a fresh copy of the learned initialisation to a test task with plain (warped)
SGD, ``inner_steps`` steps at ``inner_lr``, and ``state_dict()`` / ``load_state_dict()`` checkpoint everything.
So a comparison differs *only* in what is meta-learned:

=================  ===============================  ==========================================================
name               model                            what meta-training learns
=================  ===============================  ==========================================================
``warp-leap``      warped                           φ by the warp objective (Eq. 11) + θ_0 by Leap
``warp-reptile``   warped                           φ by the warp objective + θ_0 by Reptile
``warp-maml``      warped                           φ by the warp objective + θ_0 by second-order MAML
``warp-only``      warped                           φ only; θ_0 stays at its random initialisation
``leap``           unwarped                         θ_0 by Leap
``reptile``        unwarped                         θ_0 by Reptile
``fomaml``         unwarped                         θ_0 by first-order MAML
``maml``           unwarped                         θ_0 by second-order MAML (``maml_steps`` inner steps)
``meta-sgd``       unwarped                         θ_0 and one step size per parameter entry, by MAML
``t-net``          linear warps                     θ_0 and the linear warps, both by MAML through the loop
``multi-head``     unwarped                         a body pretrained jointly on all tasks, one head per task
``no-pretraining`` unwarped                         nothing: SGD from a random initialisation
=================  ===============================  ==========================================================

:func:`make_method` builds any of them: ``make_method("warp-leap", model_factory, loss_fn, inner_lr=0.1, ...)``.
``model_factory(warp=kind)`` must return the experiment's network with ``kind`` = ``"none"`` (no warp layers),
``"linear"`` (linear warps, for T-Nets) or the ``warp`` argument of :func:`make_method` (default ``"default"``, the
experiment's own warp); :func:`warpkit.models.omniglot_net.omniglot_net_factory` is one. The factory is called
under ``torch.manual_seed(seed)``, and every warp is built after the task layers and starts at the identity, so
for one seed every method starts from the same θ init and the same function.

Fair-comparison rules (Flennerhag et al., 2020, Section 4.2) that this module enforces:

* every method adapts at test time with the same ``inner_steps``, ``inner_lr`` and the task's batch size;
* no method gets a random head per test task: every method adapts from *one* head shared by all test tasks,
  derived from the training tasks (meta-learned θ_0 for the meta-learners, the mean of the trained heads for
  multi-head finetuning, see :class:`MultiHeadFinetuning`);
* multi-head finetuning gets a *distinct* head per training task during pretraining.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import torch
import torch.nn as nn
from torch.func import grad_and_value

from warpkit.engine.adapt import LossFn, Params, forward, fresh_buffers, train_mode
from warpkit.engine.meta import FOMAML, MAML, Leap, MetaLearner, MetaSGD, MetaStepStats, Reptile
from warpkit.engine.tasks import Task
from warpkit.engine.warp import ConvWarp, LinearWarp, ScaleWarp, task_parameters, warp_parameters

ModelFactory = Callable[..., nn.Module]

#: warp layers whose map is linear in their input: the T-Net family (a fixed, block-diagonal preconditioner)
LINEAR_WARP_TYPES = (LinearWarp, ConvWarp, ScaleWarp)


# ----------------------------------------------------------------------------------------------------------
# the simple baselines: configurations of MetaLearner
# ----------------------------------------------------------------------------------------------------------
def no_pretraining(model: nn.Module, loss_fn: LossFn, **learner_kwargs) -> MetaLearner:
    """No pretraining: ``meta_step`` learns nothing, ``adapt(task)`` is plain SGD from ``model``'s random
    parameters (build ``model`` without warps; identity warps would give the same numbers, only slower)."""
    return MetaLearner(model, loss_fn, warp_objective=None, init_learner=None, **learner_kwargs)


def _check_linear_warps(model: nn.Module) -> None:
    warp = warp_parameters(model)
    if not warp:
        raise ValueError("t_net(): the model has no warp layers; build it with linear warps (e.g. warp='linear')")
    linear_owned = set()
    for module_name, module in model.named_modules():
        if isinstance(module, LINEAR_WARP_TYPES):
            prefix = module_name + "." if module_name else ""
            linear_owned |= {prefix + n for n, _ in module.named_parameters()}
    nonlinear = sorted(set(warp) - linear_owned)
    if nonlinear:
        raise ValueError(
            f"t_net(): T-Nets use linear warps only ({', '.join(t.__name__ for t in LINEAR_WARP_TYPES)}), but "
            f"{nonlinear[:3]} belong to other warps. For non-linear warps meta-learned through the inner loop use "
            "MetaLearner(..., warp_objective=None, init_learner=MAML(steps, learn_warps=True)) directly."
        )


def t_net(model: nn.Module, loss_fn: LossFn, steps: int = 5, **learner_kwargs) -> MetaLearner:
    r"""T-Net (Lee & Choi, 2018): linear warps and θ_0 meta-learned *through* a ``steps``-step inner loop by
    second-order MAML, ∂L_meta(θ_K(θ_0, φ); φ)/∂(θ_0, φ) — no warp objective. The warps precondition the inner
    loop with a fixed block-diagonal P (Flennerhag et al., 2020, Section 2 and Appendix A). ``model`` must hold only linear warps."""
    _check_linear_warps(model)
    return MetaLearner(model, loss_fn, warp_objective=None, init_learner=MAML(steps, learn_warps=True),
                       **learner_kwargs)


def meta_sgd(model: nn.Module, loss_fn: LossFn, steps: int = 5, initial_lr: float | None = None,
             **learner_kwargs) -> MetaLearner:
    r"""Meta-SGD (Li et al., 2017): θ_0 and a step size α per parameter entry, θ_{k+1} = θ_k − α ⊙ ∇L(θ_k),
    meta-learned by MAML through ``steps`` inner steps; α starts at ``initial_lr`` (default: ``inner_lr``).
    At test time ``adapt`` uses the learned α for its ``inner_steps`` steps."""
    if initial_lr is None:
        initial_lr = learner_kwargs.get("inner_lr", 0.1)
    return MetaLearner(model, loss_fn, warp_objective=None, init_learner=MetaSGD(steps, initial_lr),
                       **learner_kwargs)


# ----------------------------------------------------------------------------------------------------------
# multi-head finetuning
# ----------------------------------------------------------------------------------------------------------
def default_task_key(task: Task) -> Hashable:
    """A training task's identity for multi-head finetuning: its ``task_id`` attribute (e.g. the alphabet)."""
    key = getattr(task, "task_id", None)
    if key is None:
        raise ValueError(
            "MultiHeadFinetuning needs to know which training task each task is (one head per task): give each "
            "task a `task_id` attribute (e.g. its alphabet's name), or pass task_keys=[...] to meta_step, or "
            "build the learner with task_key=<function task -> key>"
        )
    return key


HEAD_INITS = ("mean", "zeros")


class MultiHeadFinetuning(MetaLearner):
    r"""Multi-head finetuning (the "finetuning" baseline of Leap and WarpGrad, Flennerhag et al., 2020, Section 4.2).

    **Pretraining** (``meta_step``): the body (every task parameter outside the ``head`` module) is shared by all
    training tasks; every training task τ has its *own* head h_τ, created the first time τ is seen (a fresh
    random initialisation of the model's head module, seeded) and kept across meta-steps. One ``meta_step`` takes
    ``inner_steps`` SGD steps per task of the meta-batch, interleaved in a shuffled order, each on one batch of one
    task (the task's own batch size) with loss L_τ(body, h_τ):

    .. math::  (\text{body}, h_\tau) \leftarrow (\text{body}, h_\tau) - \beta\,\nabla L_\tau(\text{body}, h_\tau),

    i.e. plain SGD on the union of the training tasks, with as many steps and examples per meta-iteration as the
    meta-learners' inner loops use (β = ``pretrain_lr``, default ``inner_lr``).

    **Test head policy** (``head_init``): at test time every method adapts θ_0 = (body, one head) with the same
    steps and learning rate. The head multi-head finetuning starts from is, by default, the **mean of the trained
    heads** (``"mean"``): like the head a meta-learner learns (Reptile's θ_0 head is an average of adapted heads),
    it is one head shared by all test tasks and derived from the training tasks only, so no method gets a random
    head per test task (the original code's unfairness) and none gets a head fitted to the test task.
    ``"zeros"`` starts the test head at zero (uniform predictions; the body then receives no gradient until the
    head has moved). The model's own head parameters hold this test head after every ``meta_step``, so the
    inherited :meth:`adapt` and checkpointing need nothing special.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inner_lr: float = 0.1,
        inner_steps: int = 100,
        inner_momentum: float = 0.0,
        pretrain_lr: float | None = None,
        head: str = "head",
        head_init: str = "mean",
        task_key: Callable[[Task], Hashable] = default_task_key,
        seed: int = 0,
    ):
        super().__init__(model, loss_fn, inner_lr=inner_lr, inner_steps=inner_steps, inner_momentum=inner_momentum,
                         warp_objective=None, init_learner=None, seed=seed)
        if head_init not in HEAD_INITS:
            raise ValueError(f"MultiHeadFinetuning: head_init must be one of {HEAD_INITS}, got {head_init!r}")
        try:
            head_module = model.get_submodule(head)
        except AttributeError as error:
            raise ValueError(
                f"MultiHeadFinetuning: the model has no submodule {head!r}; pass head=<name of the output layer>"
            ) from error
        if not hasattr(head_module, "reset_parameters"):
            raise ValueError(f"MultiHeadFinetuning: the head {head!r} has no reset_parameters() to draw new heads")
        prefix = head + "."
        theta = task_parameters(model)
        self.head_names = [n for n in theta if n.startswith(prefix)]
        self.body_names = [n for n in theta if not n.startswith(prefix)]
        if not self.head_names:
            raise ValueError(f"MultiHeadFinetuning: the head {head!r} holds no task parameters")
        self.head, self.head_init, self.task_key, self.seed = head, head_init, task_key, seed
        self.pretrain_lr = inner_lr if pretrain_lr is None else pretrain_lr
        self.heads: dict[str, Params] = {}  # training task key → its head's parameters (names as in the model)

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
        """``inner_steps`` SGD steps per task of ``tasks`` on the shared body and each task's own head."""
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
        phi = {n: p.detach() for n, p in warp_parameters(self.model).items()}
        buffers = [fresh_buffers(self.model) for _ in tasks]

        def loss_of(body_now, head_now, buffers_now, inputs, target):
            return self.loss_fn(forward(self.model, {**body_now, **head_now, **phi}, buffers_now, inputs), target)

        gradient_and_loss = grad_and_value(loss_of, argnums=(0, 1))
        # a shuffled interleaving of the tasks' steps; each task sees its own steps 0, 1, ... in order
        order = torch.randperm(len(tasks) * self.inner_steps, generator=self.generator) % len(tasks)
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
                        body[n] = body[n] - self.pretrain_lr * g_body[n]
                    for n in heads[index]:
                        heads[index][n] = heads[index][n] - self.pretrain_lr * g_head[n]
        self._write_model(body, self.test_head())
        self.iteration += 1
        return MetaStepStats(
            iteration=self.iteration,
            task_loss_first=sum(l[0] for l in losses) / len(losses) if self.inner_steps else float("nan"),
            task_loss_last=sum(l[-1] for l in losses) / len(losses) if self.inner_steps else float("nan"),
            warp_objective=float("nan"),
            warp_steps=0,
            seconds_adapt=time.perf_counter() - start,
            seconds_replay=0.0,
        )

    def _write_model(self, body: Params, head: Params) -> None:
        theta = task_parameters(self.model)
        with torch.no_grad():
            for n, value in {**body, **head}.items():
                theta[n].copy_(value)

    # -- checkpointing ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["heads"] = {key: {n: t.clone() for n, t in head.items()} for key, head in self.heads.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "heads" not in state:
            raise KeyError("MultiHeadFinetuning.load_state_dict(): the state holds no 'heads' (not a multi-head run?)")
        self.heads = {key: {n: t.clone() for n, t in head.items()} for key, head in state["heads"].items()}


# ----------------------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """A named method: which model it needs (``"none"``, ``"warp"`` or ``"linear"``) and how to build it."""

    name: str
    model_kind: str
    build: Callable[..., MetaLearner]
    description: str


def _warp_learner(init: Callable[[dict], Any] | None):
    def build(model, loss_fn, options, learner_kwargs):
        return MetaLearner(model, loss_fn, warp_objective=options["warp_objective"],
                           init_learner=init(options) if init else None, **learner_kwargs)
    return build


def _init_learner(init: Callable[[dict], Any]):
    def build(model, loss_fn, options, learner_kwargs):
        learner = init(options)
        return MetaLearner(model, loss_fn, warp_objective=None, init_learner=learner, **learner_kwargs)
    return build


_LEAP = lambda o: Leap(simplified=o["leap_simplified"], stabilizer=o["leap_stabilizer"])  # noqa: E731
_WARP_LEAP = lambda o: Leap(simplified=o["warp_leap_simplified"], stabilizer=o["leap_stabilizer"])  # noqa: E731
_REPTILE = lambda o: Reptile()  # noqa: E731
_MAML = lambda o: MAML(steps=o["maml_steps"], meta_split=o["maml_meta_split"])  # noqa: E731
_FOMAML = lambda o: FOMAML(steps=o["fomaml_steps"], meta_split=o["maml_meta_split"])  # noqa: E731

# keyword arguments of MetaLearner that multi-head finetuning has no use for (dropped, so that one set of
# experiment settings can be passed to every method)
_NOT_FOR_MULTI_HEAD = {"warp_lr", "warp_optimizer", "init_lr", "init_optimizer", "replay_chunk_size", "replay_epochs",
                       "replay", "lookahead", "batched_adaptation", "buffer_directory", "algorithm"}


def _build_multi_head(model, loss_fn, options, learner_kwargs):
    kwargs = {k: v for k, v in learner_kwargs.items() if k not in _NOT_FOR_MULTI_HEAD}
    return MultiHeadFinetuning(model, loss_fn, head=options["head"], head_init=options["head_init"],
                               pretrain_lr=options["pretrain_lr"], **kwargs)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("warp-leap", "warp", _warp_learner(_WARP_LEAP), "warp objective for φ + Leap for θ_0"),
        Method("warp-reptile", "warp", _warp_learner(_REPTILE), "warp objective for φ + Reptile for θ_0"),
        Method("warp-maml", "warp", _warp_learner(_MAML), "warp objective for φ + second-order MAML for θ_0"),
        Method("warp-only", "warp", _warp_learner(None), "warp objective for φ; θ_0 stays at its random init"),
        Method("leap", "none", _init_learner(_LEAP), "Leap for θ_0, no warps"),
        Method("reptile", "none", _init_learner(_REPTILE), "Reptile for θ_0, no warps"),
        Method("fomaml", "none", _init_learner(_FOMAML), "first-order MAML for θ_0, no warps"),
        Method("maml", "none", _init_learner(_MAML), "second-order MAML for θ_0, no warps"),
        Method("meta-sgd", "none",
               lambda model, loss_fn, o, kw: meta_sgd(model, loss_fn, o["maml_steps"], o["meta_sgd_initial_lr"], **kw),
               "MAML with a learned step size per parameter entry"),
        Method("t-net", "linear", lambda model, loss_fn, o, kw: t_net(model, loss_fn, o["maml_steps"], **kw),
               "linear warps and θ_0 by MAML through the inner loop"),
        Method("multi-head", "none", _build_multi_head, "joint pretraining with one head per task, then finetuning"),
        Method("no-pretraining", "none", lambda model, loss_fn, o, kw: no_pretraining(model, loss_fn, **kw),
               "plain SGD from a random initialisation"),
    ]
}


def make_method(
    name: str,
    model_factory: ModelFactory,
    loss_fn: LossFn,
    *,
    warp: str = "default",
    seed: int = 0,
    warp_objective: str = "exact",
    maml_steps: int = 5,
    fomaml_steps: int | None = None,
    leap_simplified: bool = False,
    warp_leap_simplified: bool | None = None,
    leap_stabilizer: bool = True,
    maml_meta_split: str = "train",
    meta_sgd_initial_lr: float | None = None,
    head: str = "head",
    head_init: str = "mean",
    pretrain_lr: float | None = None,
    **learner_kwargs,
) -> MetaLearner:
    """Build the method ``name`` (a key of :data:`METHODS`) on a fresh model from ``model_factory``.

    The model is ``model_factory(warp=kind)`` built under ``torch.manual_seed(seed)`` (the global RNG is restored
    afterwards), with kind ``"none"``, ``"linear"`` or ``warp``. ``learner_kwargs`` (``inner_lr``,
    ``inner_steps``, ``warp_lr``, ``init_lr``, ``replay_chunk_size``, ...) go to :class:`~warpkit.engine.meta.MetaLearner`
    together with ``seed``. ``warp_objective`` is the mode of the Warp-* methods; ``maml_steps`` the inner steps of
    MAML, Meta-SGD and T-Net meta-training; ``fomaml_steps`` those of FOMAML (None: the whole trajectory);
    ``leap_simplified`` picks the WarpGrad code's simplified Leap for the Leap baseline and
    ``warp_leap_simplified`` for Warp-Leap (None: the same as ``leap_simplified``, so that the two differ only by
    the warp); ``leap_stabilizer`` is full Leap's stabiliser (see :class:`~warpkit.meta.Leap`);
    ``maml_meta_split`` (``"train"`` or ``"held-out"``) where FOMAML and MAML take their meta loss; ``head``, ``head_init`` and ``pretrain_lr`` configure multi-head finetuning.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    method = METHODS[name]
    kind = {"none": "none", "linear": "linear", "warp": warp}[method.model_kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_factory(warp=kind)
    if method.model_kind == "none" and warp_parameters(model):
        raise ValueError(f"make_method({name!r}): model_factory(warp='none') returned a model with warp layers")
    options = dict(warp_objective=warp_objective, maml_steps=maml_steps, fomaml_steps=fomaml_steps,
                   leap_simplified=leap_simplified,
                   warp_leap_simplified=leap_simplified if warp_leap_simplified is None else warp_leap_simplified,
                   leap_stabilizer=leap_stabilizer, maml_meta_split=maml_meta_split, meta_sgd_initial_lr=meta_sgd_initial_lr, head=head,
                   head_init=head_init, pretrain_lr=pretrain_lr)
    if meta_sgd_initial_lr is None:
        options["meta_sgd_initial_lr"] = learner_kwargs.get("inner_lr", 0.1)
    return method.build(model, loss_fn, options, {**learner_kwargs, "seed": seed})


__all__ = [
    "METHODS",
    "Method",
    "MultiHeadFinetuning",
    "LINEAR_WARP_TYPES",
    "default_task_key",
    "make_method",
    "meta_sgd",
    "no_pretraining",
    "t_net",
]
