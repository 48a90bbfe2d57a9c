r"""Every method of the Omniglot comparison (Flennerhag et al., 2020, Section 4.2) built from the same engine, by name.

All methods share one interface, that of :class:`~warpkit.engine.meta.MetaLearner`: ``meta_step(tasks)``
meta-trains on a meta-batch, ``adapt(task)`` adapts a fresh copy of the learned initialisation to a test task
with plain (warped) SGD, the same :class:`~warpkit.engine.options.InnerLoop` for every method, and
``state_dict()`` / ``load_state_dict()`` checkpoint everything.
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

:func:`make_method` builds any of them: ``make_method("warp-leap", model_factory, loss_fn, inner=InnerLoop(...))``.
``model_factory(warp=kind)`` must return the experiment's network with ``kind`` = ``"none"`` (no warp layers),
``"linear"`` (linear warps, for T-Nets) or the ``warp_kind`` argument of :func:`make_method` (default
``"default"``, the experiment's own warp); :func:`warpkit.models.omniglot_net.omniglot_net_factory` is one. The factory is called
under ``torch.manual_seed(seed)``, and every warp is built after the task layers and starts at the identity, so
for one seed every method starts from the same θ init and the same function.

Fair-comparison rules (Flennerhag et al., 2020, Section 4.2) that this module enforces:

* every method adapts at test time with the same ``inner`` loop (its ``steps`` and ``lr``) and the task's batch size;
* no method gets a random head per test task: every method adapts from *one* head shared by all test tasks,
  derived from the training tasks (meta-learned θ_0 for the meta-learners, the mean of the trained heads for
  multi-head finetuning, see :class:`MultiHeadFinetuning`);
* multi-head finetuning gets a *distinct* head per training task during pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from warpkit.engine.adapt import LossFn
from warpkit.engine.init_learners import FOMAML, MAML, InitLearner, Leap, MetaSGD, Reptile
from warpkit.engine.meta import MetaLearner
from warpkit.engine.multi_head import MultiHeadFinetuning
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.warp import ConvWarp, LinearWarp, ScaleWarp, warp_parameters

ModelFactory = Callable[..., nn.Module]

#: warp layers whose map is linear in their input: the T-Net family (a fixed, block-diagonal preconditioner)
LINEAR_WARP_TYPES = (LinearWarp, ConvWarp, ScaleWarp)


# ----------------------------------------------------------------------------------------------------------
# the simple baselines: configurations of MetaLearner
# ----------------------------------------------------------------------------------------------------------
def no_pretraining(model: nn.Module, loss_fn: LossFn, inner: InnerLoop = InnerLoop(), seed: int = 0) -> MetaLearner:
    """No pretraining: ``meta_step`` learns nothing, ``adapt(task)`` is plain SGD from ``model``'s random
    parameters (build ``model`` without warps; identity warps would give the same numbers, only slower).

    >>> learner = no_pretraining(nn.Linear(1, 1), nn.functional.mse_loss, InnerLoop(steps=3))
    >>> learner.warp is None and learner.init is None
    True
    """
    return MetaLearner(model, loss_fn, inner=inner, warp=None, init=None, seed=seed)


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
            "MetaLearner(..., warp=None, init=InitTraining(MAML(steps, learn_warps=True))) directly."
        )


def t_net(model: nn.Module, loss_fn: LossFn, steps: int = 5, inner: InnerLoop = InnerLoop(), init_lr: float = 0.1,
          init_optimizer: str = "sgd", seed: int = 0) -> MetaLearner:
    r"""T-Net (Lee & Choi, 2018): linear warps and θ_0 meta-learned *through* a ``steps``-step inner loop by
    second-order MAML, ∂L_meta(θ_K(θ_0, φ); φ)/∂(θ_0, φ), one outer optimiser for both; no warp objective. The
    warps precondition the inner loop with a fixed block-diagonal P (Flennerhag et al., 2020, Section 2 and
    Appendix A). ``model`` must hold only linear warps.

    >>> model = nn.Sequential(nn.Linear(1, 4), LinearWarp(4), nn.Linear(4, 1))
    >>> learner = t_net(model, nn.functional.mse_loss, steps=2)
    >>> learner.init.learner.learn_warps, learner.warp is None
    (True, True)
    """
    _check_linear_warps(model)
    init = InitTraining(MAML(steps, learn_warps=True), lr=init_lr, optimizer=init_optimizer)
    return MetaLearner(model, loss_fn, inner=inner, warp=None, init=init, seed=seed)


def meta_sgd(model: nn.Module, loss_fn: LossFn, steps: int = 5, initial_lr: float | None = None,
             inner: InnerLoop = InnerLoop(), init_lr: float = 0.1, init_optimizer: str = "sgd",
             seed: int = 0) -> MetaLearner:
    r"""Meta-SGD (Li et al., 2017): θ_0 and a step size α per parameter entry, θ_{k+1} = θ_k − α ⊙ ∇L(θ_k),
    meta-learned by MAML through ``steps`` inner steps; α starts at ``initial_lr`` (default: ``inner.lr``).
    At test time ``adapt`` uses the learned α for its ``inner.steps`` steps.

    >>> learner = meta_sgd(nn.Linear(1, 1), nn.functional.mse_loss, steps=2, initial_lr=0.05)
    >>> sorted(learner.init.learner.meta_parameters())
    ['step_size:bias', 'step_size:weight']
    """
    learner = MetaSGD(steps, inner.lr if initial_lr is None else initial_lr)
    return MetaLearner(model, loss_fn, inner=inner, warp=None,
                       init=InitTraining(learner, lr=init_lr, optimizer=init_optimizer), seed=seed)


# ----------------------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodOptions:
    """The settings that belong to particular methods of :data:`METHODS` (every other setting is shared).

    ``maml_steps``: inner steps of MAML, Meta-SGD and T-Net meta-training; ``fomaml_steps``: those of FOMAML (None:
    the whole trajectory); ``leap_simplified``: the WarpGrad code's simplified Leap for the Leap baseline,
    ``warp_leap_simplified`` for Warp-Leap (None: the same as ``leap_simplified``, so that the two differ only by
    the warp); ``leap_stabilizer``: full Leap's stabiliser (:class:`~warpkit.engine.init_learners.Leap`);
    ``maml_meta_split``: where FOMAML and MAML take their meta loss (``"train"`` or ``"held-out"``);
    ``meta_sgd_initial_lr``: Meta-SGD's starting step sizes (None: ``inner.lr``); ``head``, ``head_init`` and
    ``pretrain_lr`` configure multi-head finetuning.

    >>> MethodOptions(maml_steps=3).leap_for("warp")
    Leap(simplified=False, stabilizer=True)
    """

    maml_steps: int = 5
    fomaml_steps: int | None = None
    leap_simplified: bool = False
    warp_leap_simplified: bool | None = None
    leap_stabilizer: bool = True
    maml_meta_split: str = "train"
    meta_sgd_initial_lr: float | None = None
    head: str = "head"
    head_init: str = "mean"
    pretrain_lr: float | None = None

    def leap_for(self, model_kind: str) -> Leap:
        """The Leap learner of the Leap baseline (``"none"``) or of Warp-Leap (``"warp"``)."""
        simplified = self.leap_simplified
        if model_kind == "warp" and self.warp_leap_simplified is not None:
            simplified = self.warp_leap_simplified
        return Leap(simplified=simplified, stabilizer=self.leap_stabilizer)


@dataclass(frozen=True)
class Method:
    """A named method: which model it needs (``"none"``, ``"warp"`` or ``"linear"``), which initialisation
    learner it meta-learns θ_0 with (None: θ_0 fixed, or the method builds itself with ``build``) and whether a
    warp objective trains φ.

    >>> METHODS["warp-leap"].model_kind, METHODS["warp-leap"].trains_warp
    ('warp', True)
    """

    name: str
    model_kind: str
    description: str
    init_learner: Callable[[MethodOptions, str], InitLearner] | None = None
    trains_warp: bool = False
    build: Callable[..., Any] | None = None  # the methods that are not a MetaLearner with the settings above


@dataclass(frozen=True)
class _Build:
    """What :func:`make_method` passes to a method's own ``build``: the fresh model and every setting."""

    model: nn.Module
    loss_fn: LossFn
    inner: InnerLoop
    init_lr: float
    init_optimizer: str
    options: MethodOptions
    seed: int


def _multi_head(b: _Build) -> MultiHeadFinetuning:
    return MultiHeadFinetuning(b.model, b.loss_fn, inner=b.inner, pretrain_lr=b.options.pretrain_lr,
                               head=b.options.head, head_init=b.options.head_init, seed=b.seed)


def _meta_sgd(b: _Build) -> MetaLearner:
    return meta_sgd(b.model, b.loss_fn, b.options.maml_steps, b.options.meta_sgd_initial_lr, inner=b.inner,
                    init_lr=b.init_lr, init_optimizer=b.init_optimizer, seed=b.seed)


def _t_net(b: _Build) -> MetaLearner:
    return t_net(b.model, b.loss_fn, b.options.maml_steps, inner=b.inner, init_lr=b.init_lr,
                 init_optimizer=b.init_optimizer, seed=b.seed)


def _leap(o: MethodOptions, kind: str) -> InitLearner:
    return o.leap_for(kind)


def _reptile(o: MethodOptions, kind: str) -> InitLearner:
    return Reptile()


def _maml(o: MethodOptions, kind: str) -> InitLearner:
    return MAML(steps=o.maml_steps, meta_split=o.maml_meta_split)


def _fomaml(o: MethodOptions, kind: str) -> InitLearner:
    return FOMAML(steps=o.fomaml_steps, meta_split=o.maml_meta_split)


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("warp-leap", "warp", "warp objective for φ + Leap for θ_0", _leap, trains_warp=True),
    Method("warp-reptile", "warp", "warp objective for φ + Reptile for θ_0", _reptile, trains_warp=True),
    Method("warp-maml", "warp", "warp objective for φ + second-order MAML for θ_0", _maml, trains_warp=True),
    Method("warp-only", "warp", "warp objective for φ; θ_0 stays at its random init", trains_warp=True),
    Method("leap", "none", "Leap for θ_0, no warps", _leap),
    Method("reptile", "none", "Reptile for θ_0, no warps", _reptile),
    Method("fomaml", "none", "first-order MAML for θ_0, no warps", _fomaml),
    Method("maml", "none", "second-order MAML for θ_0, no warps", _maml),
    Method("meta-sgd", "none", "MAML with a learned step size per parameter entry", build=_meta_sgd),
    Method("t-net", "linear", "linear warps and θ_0 by MAML through the inner loop", build=_t_net),
    Method("multi-head", "none", "joint pretraining with one head per task, then finetuning", build=_multi_head),
    Method("no-pretraining", "none", "plain SGD from a random initialisation"),
]}


def _fresh_model(method: Method, model_factory: ModelFactory, warp_kind: str, seed: int) -> nn.Module:
    """``model_factory(warp=kind)`` under ``torch.manual_seed(seed)``, the global RNG restored afterwards."""
    kind = {"none": "none", "linear": "linear", "warp": warp_kind}[method.model_kind]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_factory(warp=kind)
    if method.model_kind == "none" and warp_parameters(model):
        raise ValueError(f"make_method({method.name!r}): model_factory(warp='none') returned a model with warp "
                         "layers")
    return model


def make_method(name: str, model_factory: ModelFactory, loss_fn: LossFn, *, inner: InnerLoop = InnerLoop(),
                warp: WarpTraining = WarpTraining(), init_lr: float = 0.1, init_optimizer: str = "sgd",
                options: MethodOptions = MethodOptions(), warp_kind: str = "default", algorithm: str = "offline",
                seed: int = 0):
    """Build the method ``name`` (a key of :data:`METHODS`) on a fresh model from ``model_factory``.

    Every method adapts with the same ``inner`` loop; ``warp`` trains φ for the Warp-* methods (ignored by the
    others); ``init_lr`` and ``init_optimizer`` train θ_0 for the methods that meta-learn it; ``options`` holds the
    settings of particular methods (:class:`MethodOptions`). The model is ``model_factory(warp=kind)`` built under
    ``torch.manual_seed(seed)`` with kind ``"none"``, ``"linear"`` or ``warp_kind``.

    >>> from warpkit.engine.warp import LinearWarp
    >>> factory = lambda warp: nn.Sequential(nn.Linear(1, 4), *([LinearWarp(4)] if warp != "none" else []),
    ...                                       nn.Linear(4, 1))
    >>> learner = make_method("warp-leap", factory, nn.functional.mse_loss, inner=InnerLoop(steps=3))
    >>> learner.warp.objective, learner.init.learner.name
    ('exact', 'leap')
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    method = METHODS[name]
    model = _fresh_model(method, model_factory, warp_kind, seed)
    if method.build is not None:
        return method.build(_Build(model, loss_fn, inner, init_lr, init_optimizer, options, seed))
    init = None
    if method.init_learner is not None:
        init = InitTraining(method.init_learner(options, method.model_kind), lr=init_lr, optimizer=init_optimizer)
    return MetaLearner(model, loss_fn, inner=inner, warp=warp if method.trains_warp else None, init=init,
                       algorithm=algorithm, seed=seed)


__all__ = ["LINEAR_WARP_TYPES", "METHODS", "Method", "MethodOptions", "MultiHeadFinetuning", "make_method",
           "meta_sgd", "no_pretraining", "t_net"]
