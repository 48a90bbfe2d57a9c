r"""Replaying buffered points fast: the same meta-gradients as :mod:`warpkit.engine.objectives`, with less work
per point (Flennerhag et al., 2020, Section 3, Eq. 11 and 12).

For a buffered point θ_k, a task batch A and a meta batch B, write θ' = θ_k − α ∇_θ L_task(θ_k; φ; A) for the
lookahead point and v = ∇_θ L_meta(θ'; φ; B). The chain rule splits the exact meta-gradient (Eq. 11) into the
first-order gradient (Eq. 12) and one mixed second-derivative–vector product at the buffered point:

.. math::  \frac{d}{d\phi} L_{\text{meta}}(\theta'(\phi); \phi; B)
           = \underbrace{\partial_\phi L_{\text{meta}}(\theta'; \phi; B)}_{\text{Eq. 12}}
           \;-\; \underbrace{\partial_\phi \big\langle \nabla_\theta L_{\text{task}}(\theta_k; \phi; A),\ \alpha v
           \big\rangle}_{(\partial^2 L_{\text{task}} / \partial\phi\,\partial\theta)^\top \alpha v}.

One backward pass at θ' gives both ∂_φ L_meta and v. The mixed product is the φ-gradient of a directional
derivative, ∂_φ [d/dε L_task(θ_k + ε α v; φ; A)]: a forward-mode ``torch.func.jvp`` in θ inside a reverse-mode
``torch.func.grad`` in φ, which never builds the inner gradient's graph (the general path in
:mod:`warpkit.engine.objectives` differentiates a whole backward pass a second time). Where that graph is built
anyway, for a lookahead recomputed one point at a time, :func:`eager_point_meta_gradient` keeps it and
differentiates it once more instead, which measured cheaper on a CPU (``benchmarks/engine.py``, its levers).

**Where the lookahead point comes from** (``lookahead``):

``"buffered"``
    θ' is the *next buffered point* θ_{k+1} and A the inner loop's own batch at step k, both stored with the
    point by :func:`warpkit.engine.adapt.adapt` (:class:`~warpkit.engine.buffer.TrajectoryPoint`'s ``next_params``
    and ``batch``). The first-order meta-gradient then needs one forward and one backward pass (at θ_{k+1})
    instead of two. This holds exactly — θ_{k+1} = θ_k − α ∇_θ L_task(θ_k; φ; A_k) — when

    * the inner loop took a plain SGD step (no momentum; a fixed step size α, not Meta-SGD's learned ones, which
      the initialisation step changes before replay): ``adapt`` stores ``next_params`` only then;
    * φ has not been written since the adaptation (checked: each point keeps φ's in-place version counters from
      the run, :func:`buffered_lookahead_holds`): always in the online algorithm (Algorithm 1), and in the offline
      one (Algorithm 2) until its first φ-step. After it, θ_{k+1} is the lookahead under an older φ; replaying
      with it anyway (a stale lookahead) measurably hurt meta-training in lessons 03, 04 and 06 (the mountains'
      final loss 3e-7 → 0.56, the continual warp's 1.03 → 6.6 at the fast size), so those points are replayed
      with ``"fresh"``;
    * BatchNorm normalises with batch statistics (train mode, as in adaptation and replay): the running
      statistics, which drift from point to point, enter neither θ_{k+1} nor the meta loss, which is evaluated
      with point k's statistics as in the general path.

    The task batch is then the inner loop's batch A_k rather than a fresh draw (the meta batch B stays a fresh,
    different draw). Points without ``next_params`` (momentum, learned step sizes, states streamed to disk one
    by one) are replayed with ``"fresh"``.
``"fresh"``
    θ' is recomputed from a fresh task batch and the current φ (one more forward and backward pass), as the
    authors' code does: the meta-gradient of :func:`warpkit.engine.objectives.warp_meta_gradient`.
``"auto"`` (:class:`~warpkit.engine.meta.MetaLearner`'s default, :func:`resolve_lookahead`)
    ``"buffered"`` where it holds for *every* point of a meta-iteration, i.e. in the online algorithm, whose φ
    is fixed during the meta-batch; ``"fresh"`` in the offline one, where it would hold for the first chunk
    only (that chunk alone would then be replayed with other task batches than the rest).

**How a chunk is computed** (``replay``): ``"looped"`` replays one point at a time; ``"batched"`` replays the
whole chunk in one ``torch.func.vmap`` call (one call per chunk on a GPU, whatever the chunk size); ``"auto"``
picks by chunk, device and cost (:func:`resolve_replay`): looped for a chunk of one point (the paper's schedule,
where there is nothing to batch); otherwise batched on accelerators, and on a CPU batched for small networks,
where per-call overhead dominates, and looped for a wide convolutional network, which is compute-bound there and
for which vmap's grouped convolutions are slower than a loop (``benchmarks/engine.py`` measures both).
BatchNorm is evaluated in elementary form (:mod:`warpkit.engine.batchnorm`) only inside the mixed
product, the one place that differentiates it twice: there the fused kernel's derivatives are wrong both under
``vmap`` (functorch #534) and, measured here in float64, for a ``jvp`` inside ``grad`` on a single point. The
first-order part keeps the fused kernel.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch
import torch.nn as nn
from torch.func import grad, grad_and_value, jvp, vmap
from torch.utils.flop_counter import FlopCounterMode

from warpkit.engine.adapt import LossFn, Params, forward, train_mode
from warpkit.engine.batchnorm import elementary_batch_norm
from warpkit.engine.buffer import TrajectoryPoint, stack_points
from warpkit.engine.objectives import check_mode, replay_batches, warp_meta_gradient
from warpkit.engine.tasks import Batch, Task, stack_batches

REPLAY_MODES = ("auto", "batched", "looped")
LOOKAHEADS = ("auto", "buffered", "fresh")


def check_replay(replay: str, lookahead: str = "auto") -> str:
    """``replay`` when it is one of :data:`REPLAY_MODES` (and ``lookahead`` one of :data:`LOOKAHEADS`), else a
    ValueError naming the choices.

    >>> check_replay("auto")
    'auto'
    """
    if replay not in REPLAY_MODES:
        raise ValueError(f"unknown replay mode {replay!r}; choose one of {REPLAY_MODES}")
    if lookahead not in LOOKAHEADS:
        raise ValueError(f"unknown lookahead {lookahead!r}; choose one of {LOOKAHEADS}")
    return replay


#: on a CPU, batched replay when one point's forward pass costs fewer FLOPs than this (overhead-bound: vmap's
#: fewer, larger calls win), looped above it (compute-bound: vmap's grouped convolutions lose). Measured on one
#: core for the Omniglot network (exact and first-order objectives, 16 points): batched/looped 1.4–2.2× at 8
#: filters (14 MFLOP per point), 1.0–1.65× at 16 (51 MFLOP), 0.8–0.85× at 32 (197 MFLOP).
CPU_BATCHED_BELOW_FLOPS = 1e8

_POINT_FLOPS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_LAST_CHOICE: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()
_LAST_REPLAY: dict = {}  # what the most recent replay_meta_gradient call in this process ran (last_replay)


def resolve_lookahead(lookahead: str, algorithm: str) -> str:
    """What ``lookahead`` means for ``algorithm`` (``"offline"`` or ``"online"``): ``"auto"`` is ``"buffered"``
    online (φ fixed while the meta-batch is replayed, so the buffered lookahead is exact for every point) and
    ``"fresh"`` offline; the other values stand for themselves.

    >>> resolve_lookahead("auto", "online"), resolve_lookahead("auto", "offline"), resolve_lookahead("fresh", "online")
    ('buffered', 'fresh', 'fresh')
    """
    check_replay("auto", lookahead)
    if lookahead != "auto":
        return lookahead
    return "buffered" if algorithm == "online" else "fresh"


def resolve_replay(replay: str, device: torch.device | str, point_flops: float | None = None,
                   points: int | None = None) -> str:
    """The computation ``replay`` stands for: ``"auto"`` is ``"looped"`` for a chunk of one point (``points``:
    there is nothing to batch, and vmapping one point only adds overhead, about 60 % more replay time on lesson
    04's network); otherwise ``"batched"`` on an accelerator (CUDA, MPS: one call replays a whole chunk) and, on a CPU,
    ``"batched"`` for a point whose forward pass costs fewer than :data:`CPU_BATCHED_BELOW_FLOPS` FLOPs,
    ``"looped"`` otherwise (or when the cost is unknown).

    >>> resolve_replay("auto", "cpu", 5e8), resolve_replay("auto", "cpu", 1e6), resolve_replay("auto", "cuda:0")
    ('looped', 'batched', 'batched')
    >>> resolve_replay("auto", "cuda:0", points=1), resolve_replay("batched", "cpu", points=1)
    ('looped', 'batched')
    """
    check_replay(replay)
    if replay != "auto":
        return replay
    if points == 1:
        return "looped"
    if torch.device(device).type != "cpu":
        return "batched"
    return "batched" if point_flops is not None and point_flops < CPU_BATCHED_BELOW_FLOPS else "looped"


def point_forward_flops(model: nn.Module, point: TrajectoryPoint, inputs: torch.Tensor) -> float:
    """FLOPs of one forward pass of ``model`` at ``point`` on ``inputs`` (``torch.utils.flop_counter``), counted
    once per model, input shape and dtype, and cached; the model's own buffers are not touched.

    >>> model = torch.nn.Linear(3, 2)
    >>> point_forward_flops(model, TrajectoryPoint(0, 0, {}, {}), torch.zeros(5, 3))   # 2 · 5 · 3 · 2
    60.0
    """
    key = (tuple(inputs.shape), inputs.dtype)
    cache = _POINT_FLOPS.setdefault(model, {})
    if key not in cache:
        with torch.no_grad(), train_mode(model), FlopCounterMode(display=False) as counter:
            forward(model, dict(point.params), _clone(point.buffers), inputs)
        cache[key] = float(counter.get_total_flops())
    return cache[key]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters).

    >>> model_device(torch.nn.Linear(1, 1)).type
    'cpu'
    """
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def last_replay() -> dict:
    """What the most recent :func:`replay_meta_gradient` call of this process ran, for a lesson's record:
    ``{"replay": asked, "path": "batched"/"looped", "lookahead": "buffered"/"fresh", "point_gflop": forward
    GFLOP of one point or None}``; empty before any replay.

    >>> sorted(last_replay()) in ([], ["lookahead", "path", "point_gflop", "replay"])
    True
    """
    return dict(_LAST_REPLAY)


def chosen_replay(model: nn.Module) -> str | None:
    """What the last :func:`replay_meta_gradient` call on ``model`` ran (``"batched"``/``"looped"``), or None.

    >>> chosen_replay(torch.nn.Linear(1, 1)) is None   # never replayed
    True
    """
    return _LAST_CHOICE.get(model)


def _step_size(inner_lr, name: str):
    return inner_lr[name] if isinstance(inner_lr, dict) else inner_lr


def _clone(buffers: Params) -> Params:
    # BatchNorm writes its running statistics in place; replay must never touch the stored snapshot
    return {name: b.clone() for name, b in buffers.items()}


def point_meta_gradient(model: nn.Module, loss_fn: LossFn, inner_lr: float | Params, mode: str):
    r"""``f(φ, θ_k, θ', buffers, A, B) → (∂𝓛/∂φ by name, 𝓛)`` for one point: the first-order gradient at the
    lookahead point θ' (Eq. 12), minus, for ``mode="exact"``, the mixed product (module docstring) at θ_k on A.
    ``θ' = None`` recomputes θ' = θ_k − α ∇_θ L_task(θ_k; φ; A) (φ held constant there: only its value enters).
    A pure function of its arguments, so it can be vmapped over points.

    >>> from warpkit.engine.warp import ScaleWarp
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), ScaleWarp(1))   # f(x) = φ θ x
    >>> batch = (torch.ones(1, 1), torch.zeros(1, 1))                                   # L(θ; φ) = (φ θ)²
    >>> gradient = point_meta_gradient(model, torch.nn.functional.mse_loss, 0.1, "exact")
    >>> phi, theta = {"1.scale": torch.ones(1)}, {"0.weight": torch.ones(1, 1)}
    >>> g, value = gradient(phi, theta, None, {}, batch, batch)    # Eq. 11: d/dφ [φ (1 − 0.2 φ²)]² at φ = 1
    >>> round(float(value), 4), round(float(g["1.scale"]), 4)
    (0.64, 0.64)
    """
    check_mode(mode)
    if mode == "approx":
        raise ValueError("point_meta_gradient(): the 'approx' objective has no lookahead; use warp_meta_gradient")

    def loss_at(theta: Params, phi: Params, buffers: Params, batch: Batch) -> torch.Tensor:
        inputs, target = batch
        return loss_fn(forward(model, {**theta, **phi}, _clone(buffers), inputs), target)

    def gradient(phi, theta, lookahead, buffers, task_batch, meta_batch):
        if lookahead is None:  # θ' = θ_k − α ∇_θ L_task(θ_k; φ; A), φ a constant here
            inner = grad(loss_at)(theta, phi, buffers, task_batch)
            lookahead = {name: theta[name] - _step_size(inner_lr, name) * inner[name] for name in theta}
        if mode == "first_order":  # Eq. 12: ∂_φ L_meta(θ'; φ; B)
            phi_gradient, value = grad_and_value(loss_at, argnums=1)(lookahead, phi, buffers, meta_batch)
            return phi_gradient, value
        # one backward at θ' gives ∂_φ L_meta and v = ∇_θ L_meta(θ'; φ; B)
        (v, phi_gradient), value = grad_and_value(loss_at, argnums=(0, 1))(lookahead, phi, buffers, meta_batch)
        tangent = {name: _step_size(inner_lr, name) * v[name] for name in v}  # α v

        def directional(phi_):  # d/dε L_task(θ_k + ε α v; φ; A) = ⟨∇_θ L_task(θ_k; φ; A), α v⟩
            return jvp(lambda theta_: loss_at(theta_, phi_, buffers, task_batch), (theta,), (tangent,))[1]

        with elementary_batch_norm():  # the fused kernel's second derivatives are wrong here (module docstring)
            mixed = grad(directional)(phi)  # (∂²L_task/∂φ∂θ)ᵀ α v
        return {name: phi_gradient[name] - mixed[name] for name in phi}, value  # Eq. 11 = Eq. 12 − mixed

    return gradient


def _gradients(output: torch.Tensor, leaves: Params) -> Params:
    """∂output/∂leaves by plain autograd, zeros for leaves the output does not depend on."""
    found = torch.autograd.grad(output, list(leaves.values()), allow_unused=True)
    return {name: g if g is not None else torch.zeros_like(leaves[name]) for name, g in zip(leaves, found)}


def _leaves(tensors: Params, requires_grad: bool = True) -> Params:
    return {name: t.detach().requires_grad_(requires_grad) for name, t in tensors.items()}


def eager_point_meta_gradient(model: nn.Module, loss_fn: LossFn, inner_lr: float | Params, mode: str):
    r""":func:`point_meta_gradient` (same arguments, same values) with the backward passes by plain
    ``torch.autograd.grad``, for replaying one point at a time: on a CPU they run faster than the same passes
    under ``torch.func``'s transforms (``benchmarks/engine.py``). Not vmappable; :func:`point_meta_gradient` is.

    The mixed product (module docstring) is computed the cheaper of two ways. With a fresh lookahead (θ' None)
    the inner gradient ∇_θ L_task(θ_k; φ; A) is computed anyway, so its graph is kept and differentiated once
    more, ∂_φ ⟨∇_θ L_task, α v⟩ (a double backward by plain autograd, which the fused BatchNorm kernel
    differentiates correctly: tested in float64 against the general path). With a buffered lookahead no such
    graph exists, and a ``torch.func`` jvp inside grad is cheaper than building one.

    >>> from warpkit.engine.warp import ScaleWarp
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), ScaleWarp(1))   # f(x) = φ θ x
    >>> batch = (torch.ones(1, 1), torch.zeros(1, 1))                                   # L(θ; φ) = (φ θ)²
    >>> gradient = eager_point_meta_gradient(model, torch.nn.functional.mse_loss, 0.1, "exact")
    >>> g, value = gradient({"1.scale": torch.ones(1)}, {"0.weight": torch.ones(1, 1)}, None, {}, batch, batch)
    >>> round(float(value), 4), round(float(g["1.scale"]), 4)    # Eq. 11, as point_meta_gradient's example
    (0.64, 0.64)
    """
    check_mode(mode)
    if mode == "approx":
        raise ValueError("eager_point_meta_gradient(): the 'approx' objective has no lookahead")

    def loss_at(theta: Params, phi: Params, buffers: Params, batch: Batch) -> torch.Tensor:
        inputs, target = batch
        return loss_fn(forward(model, {**theta, **phi}, _clone(buffers), inputs), target)

    def gradient(phi, theta, lookahead, buffers, task_batch, meta_batch):
        inner = None
        with torch.enable_grad():
            if lookahead is None:  # θ' = θ_k − α ∇_θ L_task(θ_k; φ; A)
                start, phi_inner = _leaves(theta), _leaves(phi, mode == "exact")
                # exact: keep the graph of ∇_θ L_task(θ_k; φ; A); the mixed product differentiates it again
                inner = dict(zip(start, torch.autograd.grad(loss_at(start, phi_inner, buffers, task_batch),
                                                            list(start.values()), create_graph=mode == "exact")))
                lookahead = {name: theta[name] - _step_size(inner_lr, name) * inner[name].detach() for name in theta}
            phi_leaves, stepped = _leaves(phi), _leaves(lookahead, mode == "exact")
            value = loss_at(stepped, phi_leaves, buffers, meta_batch)  # L_meta(θ'; φ; B)
            wanted = {("φ", name): p for name, p in phi_leaves.items()}
            if mode == "exact":  # v = ∇_θ L_meta(θ'; φ; B) from the same backward pass
                wanted.update({("θ", name): t for name, t in stepped.items()})
            both = _gradients(value, wanted)
            phi_gradient = {name: both["φ", name] for name in phi}  # Eq. 12: ∂_φ L_meta(θ'; φ; B)
            if mode == "first_order":
                return phi_gradient, value.detach()
        tangent = {name: _step_size(inner_lr, name) * both["θ", name] for name in theta}  # α v
        if inner is None:  # (∂²L_task/∂φ∂θ)ᵀ α v: a jvp in θ inside a grad in φ
            mixed = mixed_product(phi, theta, tangent, buffers, task_batch)
        else:  # the same by a double backward: ∂_φ ⟨∇_θ L_task(θ_k; φ; A), α v⟩ through the kept graph
            found = torch.autograd.grad(list(inner.values()), list(phi_inner.values()),
                                        grad_outputs=[tangent[name] for name in inner], allow_unused=True)
            mixed = {name: torch.zeros_like(phi[name]) if g is None else g for name, g in zip(phi_inner, found)}
        return {name: phi_gradient[name] - mixed[name] for name in phi}, value.detach()  # Eq. 11

    def mixed_product(phi, theta, tangent, buffers, task_batch):
        # torch.func here: plain forward-mode AD breaks on log_softmax's in-place tangent formula when
        # differentiated again, and the fused batch_norm's derivatives are wrong (module docstring)
        def directional(phi_):  # ⟨∇_θ L_task(θ_k; φ; A), α v⟩
            return jvp(lambda theta_: loss_at(theta_, phi_, buffers, task_batch), (theta,), (tangent,))[1]

        with elementary_batch_norm():
            return grad(directional)(phi)

    return gradient


def buffered_lookahead_holds(points: Sequence[TrajectoryPoint], mode: str, warp_params: Params | None = None) -> bool:
    """Whether every point carries its next buffered point (and, for the exact objective, the inner loop's batch)
    and, given ``warp_params``, φ has not been written since the points were made (their ``warp_versions`` equal
    φ's version counters): the condition for ``lookahead="buffered"`` (module docstring); never for ``"approx"``.

    >>> state = {"w": torch.zeros(1)}
    >>> buffered_lookahead_holds([TrajectoryPoint(0, 0, state, {}, next_params=state)], "first_order")
    True
    >>> buffered_lookahead_holds([TrajectoryPoint(0, 0, state, {})], "first_order")
    False
    """
    if mode == "approx" or not points:
        return False
    current = None if warp_params is None else {name: int(p._version) for name, p in warp_params.items()}
    return all(p.next_params is not None and (mode != "exact" or p.batch is not None)
               and (current is None or p.warp_versions == current) for p in points)


def _replay_looped(gradient, phi: Params, points, task_batches, meta_batches, buffered: bool):
    total = {name: torch.zeros_like(p) for name, p in phi.items()}
    values = []
    for point, task_batch, meta_batch in zip(points, task_batches, meta_batches):
        lookahead = point.next_params if buffered else None
        point_gradient, value = gradient(phi, point.params, lookahead, point.buffers, task_batch, meta_batch)
        for name in total:
            total[name] += point_gradient[name]
        values.append(value)
    return {name: g / len(points) for name, g in total.items()}, torch.stack(values).mean()


def _replay_batched(gradient, phi: Params, points, task_batches, meta_batches, buffered: bool):
    params, buffers = stack_points(list(points))
    lookahead = stack_points([TrajectoryPoint(0, 0, p.next_params, {}) for p in points])[0] if buffered else None
    stacked_task, stacked_meta = stack_batches(list(task_batches)), stack_batches(list(meta_batches))
    in_dims = (None, 0, 0 if buffered else None, 0, 0, 0)
    gradients, values = vmap(gradient, in_dims=in_dims, randomness="different")(
        phi, params, lookahead, buffers, stacked_task, stacked_meta)
    return {name: g.mean(0) for name, g in gradients.items()}, values.mean()


def replay_meta_gradient(model: nn.Module, loss_fn: LossFn, warp_params: Params, points: Sequence[TrajectoryPoint],
                         tasks: Sequence[Task], inner_lr: float | Params, mode: str = "exact", replay: str = "auto",
                         lookahead: str = "buffered") -> tuple[Params, float]:
    r"""φ-gradient and value of the mean one-step objective (Eq. 11 ``"exact"``, Eq. 12 ``"first_order"``,
    ``"approx"``) over ``points``, with fresh batches drawn from ``tasks`` (``tasks[point.task_index]``).

    ``replay`` (``"auto"``, ``"batched"``, ``"looped"``) says how, ``lookahead`` (``"buffered"``, ``"fresh"``)
    where the lookahead point comes from (module docstring; ``"buffered"`` falls back to ``"fresh"`` for points
    where it does not hold; here ``"auto"`` acts as ``"buffered"``: the choice by algorithm is
    :func:`resolve_lookahead`'s, made by :class:`~warpkit.engine.meta.MetaLearner`).
    Returns ``(gradients by name, objective value)``.

    >>> from warpkit.engine.adapt import adapt
    >>> from warpkit.engine.buffer import TrajectoryBuffer
    >>> from warpkit.engine.tasks import SupervisedTask
    >>> from warpkit.engine.warp import ScaleWarp, warp_parameters
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 1), ScaleWarp(1))
    >>> task = SupervisedTask(torch.randn(8, 2), torch.randn(8, 1), batch_size=4)
    >>> buffer = TrajectoryBuffer()
    >>> buffer.add(0, adapt(model, task, torch.nn.functional.mse_loss, num_steps=3, lr=0.1))
    >>> gradients, value = replay_meta_gradient(model, torch.nn.functional.mse_loss, warp_parameters(model),
    ...                                         buffer.points(), [task], 0.1, "first_order")
    >>> sorted(gradients), value > 0
    (['1.scale'], True)
    """
    check_mode(mode)
    check_replay(replay, lookahead)
    task_batches, meta_batches = replay_batches(tasks, points)
    device = model_device(model)
    flops = point_forward_flops(model, points[0], meta_batches[0][0]) \
        if replay == "auto" and device.type == "cpu" and len(points) > 1 else None  # a CPU weighs cost and overhead
    how = _LAST_CHOICE[model] = resolve_replay(replay, device, flops, len(points))
    buffered = lookahead in ("buffered", "auto") and buffered_lookahead_holds(points, mode, warp_params)
    _LAST_REPLAY.update(replay=replay, path=how, lookahead="buffered" if buffered else "fresh",
                        point_gflop=None if flops is None else round(flops / 1e9, 4))
    if not buffered and (mode == "approx" or how == "batched"):  # the general path (vmapped double backward)
        return warp_meta_gradient(model, loss_fn, warp_params, points, task_batches, meta_batches, inner_lr, mode,
                                  batched=how == "batched")
    if buffered:  # the task batch is the inner loop's own (stored with the point); B stays a fresh draw
        task_batches = [p.batch if p.batch is not None else a for p, a in zip(points, task_batches)]
    phi = {name: p.detach() for name, p in warp_params.items()}
    with train_mode(model):
        if how == "batched":
            gradient = point_meta_gradient(model, loss_fn, inner_lr, mode)
            gradients, value = _replay_batched(gradient, phi, points, task_batches, meta_batches, buffered)
        else:
            gradient = eager_point_meta_gradient(model, loss_fn, inner_lr, mode)
            gradients, value = _replay_looped(gradient, phi, points, task_batches, meta_batches, buffered)
    return {name: g.detach() for name, g in gradients.items()}, float(value.detach())


__all__ = ["CPU_BATCHED_BELOW_FLOPS", "LOOKAHEADS", "REPLAY_MODES", "buffered_lookahead_holds", "check_replay",
           "chosen_replay", "eager_point_meta_gradient", "last_replay", "model_device", "point_forward_flops",
           "point_meta_gradient", "replay_meta_gradient", "resolve_lookahead", "resolve_replay"]
