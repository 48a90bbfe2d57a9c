r"""K-FAC, Kronecker-factored approximate curvature (Martens & Grosse, 2015; convolutions: Grosse & Martens, 2016),
as a task optimiser: the second-order comparison of the WarpGrad paper's Omniglot experiment (Flennerhag et al.,
2020, Section 4.2), which adapts from a random initialisation with no meta-learning.

For a layer s = W̄ ā with ā = [a; 1] (its input and a homogeneous coordinate) and W̄ = [W, b], the Fisher block of
vec(W̄) (columns stacked) is approximated by a Kronecker product of two small matrices:

.. math::  F \approx A \otimes G, \qquad A = \mathbb{E}[\bar a \bar a^\top], \qquad G = \mathbb{E}[g g^\top],
           \qquad g = \partial \ell(\hat y) / \partial s, \quad \hat y \sim p(y \mid x; \theta),

so that the natural-gradient direction of the layer costs two small inverses:
:math:`(A \otimes G)^{-1} \operatorname{vec}(\nabla_{\bar W}) = \operatorname{vec}(G^{-1} \nabla_{\bar W} A^{-1})`.
For a Conv2d layer ā_t is the input patch at output position t (KFC): A = E_n[Σ_t ā_t ā_tᵀ] and
G = E_n[(1/|T|) Σ_t g_t g_tᵀ]. Labels ŷ are drawn from the model (``fisher="mc"``, Martens & Grosse's Monte-Carlo
Fisher, one draw per example); ``"exact"`` sums over all classes weighted by p(ŷ|x) (the exact expectation over
ŷ); ``"empirical"`` uses the true labels. The Fisher is that of a softmax-categorical model: the loss must be the
cross-entropy of the network's logits.

The step (Martens & Grosse, 2015, Sections 5 and 6.3): factors are exponential moving averages with weight
ε_k = min(1 − 1/k, 0.95) on the past at step k; factored Tikhonov damping adds π√λ I to A and (√λ/π) I to G with
π = √((tr A / dim A) / (tr G / dim G)); then θ ← θ − α G_λ⁻¹ ∇_W̄ A_λ⁻¹. Parameters outside Linear and Conv2d layers
(the BatchNorm scales and shifts) take plain SGD steps at ``other_lr``. Left out, for a 50–100-step inner loop:
the Levenberg–Marquardt adaptation of λ, the quadratic-model rescaling of the step and its momentum (Sections
6.5 and 7): α and λ are fixed. With BatchNorm in train mode an example's loss reaches the other examples'
activations through the batch statistics; like common K-FAC implementations we take g as the gradient of the
batch's summed loss with respect to each layer output and ignore that coupling.

**Why not a library.** curvlinops-for-pytorch 3.0.1 computes the same Kronecker factors for Linear and Conv2d
(``KFACLinearOperator``), but it refuses a parameter list that holds BatchNorm parameters ("Found parameters in
un-supported layers"), works on a module's own parameters where our inner loop is functional, and it needs
backpack-for-pytorch, which needs torchvision: added to our dependencies, pip resolves the newest torchvision and
replaces the CPU torch 2.13 wheel by torch 2.14 with CUDA libraries (measured with ``pip install --dry-run``).
backpack-for-pytorch 1.7.1 (its KFAC extension) has the same torchvision dependency and BatchNorm gap. The
factors here are short enough to check against hand-derived Fisher blocks (``tests/test_kfac.py``); where
curvlinops is installed, the same test file checks that its K-FAC blocks (exact Fisher, weight and bias joint)
equal ours on the Omniglot network with BatchNorm (they agreed to 1e-15 relative in float64).

>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
>>> params = {n: p.detach() for n, p in model.named_parameters()}
>>> loss, gradients, factors = curvature(model, params, {}, x, y, fisher="exact")
>>> sorted(factors), tuple(factors["0"][0].shape), tuple(factors["0"][1].shape)
(['0', '2'], (5, 5), (8, 8))
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from warpkit.engine.adapt import (LossFn, Params, Trajectory, _final_loss, _initial_state, _task_loss, forward,
                                  train_mode)
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InnerLoop
from warpkit.engine.tasks import Task
from warpkit.engine.warp import task_parameters

FISHER_TYPES = ("mc", "exact", "empirical")
#: Martens & Grosse (2015, Section 5): the factors' moving-average weight on the past is min(1 − 1/k, 0.95)
FACTOR_DECAY = 0.95


def kfac_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Linear and Conv2d layers whose weights are task parameters θ (warp layers are left out), by module name.

    >>> sorted(kfac_layers(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))))
    ['0', '2']
    """
    theta = task_parameters(model)
    layers = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (nn.Linear, nn.Conv2d)) and f"{prefix}weight" in theta:
            if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
                raise ValueError(f"K-FAC: layer {name!r} is a grouped or non-zero-padded convolution; only plain "
                                 "Conv2d layers (groups=1, zero padding) are supported")
            layers[name] = module
    return layers


def _weight_names(name: str, module: nn.Module) -> tuple[str, str | None]:
    prefix = f"{name}." if name else ""
    return f"{prefix}weight", (f"{prefix}bias" if module.bias is not None else None)


def logit_gradients(logits: torch.Tensor, target: torch.Tensor, fisher: str,
                    generator: torch.Generator | None = None) -> list[torch.Tensor]:
    r"""The vectors δ = ∂ℓ/∂(logits) = p − e_ŷ (softmax cross-entropy) whose back-propagation gives the g of the
    Fisher factors: one δ per example with ŷ drawn from p (``"mc"``) or ŷ = the true label (``"empirical"``), or,
    for ``"exact"``, one δ_c = √p_c (p − e_c) per class c, so that Σ_c δ_c δ_cᵀ = Σ_c p_c (p − e_c)(p − e_c)ᵀ =
    diag(p) − p pᵀ.

    >>> [tuple(d.shape) for d in logit_gradients(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), "exact")]
    [(4, 3), (4, 3), (4, 3)]
    """
    if fisher not in FISHER_TYPES:
        raise ValueError(f"K-FAC: fisher must be one of {FISHER_TYPES}, got {fisher!r}")
    p = torch.softmax(logits.detach(), dim=-1)
    classes = p.shape[-1]
    if fisher == "exact":
        eye = torch.eye(classes, dtype=p.dtype)
        return [p[:, c:c + 1].sqrt() * (p - eye[c]) for c in range(classes)]  # δ_c = √p_c (p − e_c)
    labels = target if fisher == "empirical" else torch.multinomial(p, 1, generator=generator).squeeze(-1)
    return [p - F.one_hot(labels, classes).to(p.dtype)]  # δ = p − e_ŷ


def _homogeneous(a: torch.Tensor, dim: int) -> torch.Tensor:
    """ā = [a; 1] along ``dim``."""
    shape = list(a.shape)
    shape[dim] = 1
    return torch.cat([a, a.new_ones(shape)], dim=dim)


def layer_factors(module: nn.Module, inputs: torch.Tensor, output_grads: Sequence[torch.Tensor]) -> tuple:
    r"""(A, G) of one layer from its input batch and the gradients g with respect to its output (one tensor per
    δ of :func:`logit_gradients`, summed over): Linear: A = (1/N) Σ_n ā_n ā_nᵀ, G = (1/N) Σ_n g_n g_nᵀ;
    Conv2d: A = (1/N) Σ_{n,t} ā_{n,t} ā_{n,t}ᵀ over input patches, G = (1/(N|T|)) Σ_{n,t} g_{n,t} g_{n,t}ᵀ.

    >>> A, G = layer_factors(nn.Linear(2, 1), torch.tensor([[1.0, 2.0]]), [torch.tensor([[3.0]])])
    >>> A.tolist(), G.tolist()
    ([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], [[9.0]])
    """
    n = inputs.shape[0]
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        a = inputs.reshape(-1, inputs.shape[-1])
        a = _homogeneous(a, 1) if bias else a
        A = a.T @ a / n  # A = E[ā āᵀ]
        G = sum(g.reshape(-1, g.shape[-1]).T @ g.reshape(-1, g.shape[-1]) for g in output_grads) / n  # E[g gᵀ]
        return A, G
    patches = F.unfold(inputs, module.kernel_size, dilation=module.dilation, padding=module.padding,
                       stride=module.stride)  # [N, C·kh·kw, T]
    patches = _homogeneous(patches, 1) if bias else patches
    positions = patches.shape[-1]
    A = torch.einsum("ndt,net->de", patches, patches) / n  # Ω = E_n[Σ_t ā_t ā_tᵀ]
    G = sum(torch.einsum("not,npt->op", g.flatten(2), g.flatten(2)) for g in output_grads) / (n * positions)
    return A, G  # Γ = E_n[(1/|T|) Σ_t g_t g_tᵀ]


def _recorder(seen: dict, name: str):
    """A forward hook that keeps (input, output) of the layer ``name`` in ``seen``."""
    def record(module, inputs, output):
        seen[name] = (inputs[0], output)
    return record


def curvature(model: nn.Module, params: Params, buffers: Params, inputs: torch.Tensor, target: torch.Tensor,
              loss_fn: LossFn = F.cross_entropy, fisher: str = "mc", generator: torch.Generator | None = None):
    """One forward pass at ``params`` (θ and any φ; BatchNorm updates ``buffers`` in place, as a training step
    does): returns ``(loss, gradients, factors)``: the mean loss on (inputs, target), ∇_θ of it for every
    parameter in ``params`` that is a task parameter, and ``{layer name: (A, G)}`` for :func:`kfac_layers`.

    >>> model = nn.Linear(3, 2)
    >>> params = {n: p.detach() for n, p in model.named_parameters()}
    >>> loss, gradients, factors = curvature(model, params, {}, torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    >>> sorted(gradients), [tuple(f.shape) for f in factors[""]]
    (['bias', 'weight'], [(4, 4), (2, 2)])
    """
    layers = kfac_layers(model)
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [module.register_forward_hook(_recorder(seen, name)) for name, module in layers.items()]
    task_names = set(task_parameters(model))
    theta_names = [n for n in params if n in task_names]
    live = {n: (t.detach().requires_grad_(True) if n in theta_names else t.detach()) for n, t in params.items()}
    try:
        logits = forward(model, live, buffers, inputs)
    finally:
        for hook in hooks:
            hook.remove()
    loss = loss_fn(logits, target)
    gradients = dict(zip(theta_names, torch.autograd.grad(loss, [live[n] for n in theta_names], retain_graph=True)))
    outputs = [seen[name][1] for name in layers]
    per_layer: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for delta in logit_gradients(logits, target, fisher, generator):
        for name, g in zip(layers, torch.autograd.grad(logits, outputs, grad_outputs=delta, retain_graph=True)):
            per_layer[name].append(g)
    factors = {name: layer_factors(module, seen[name][0].detach(), per_layer[name])
               for name, module in layers.items()}
    return loss.detach(), gradients, factors


def damped_inverses(A: torch.Tensor, G: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Factored Tikhonov damping (Martens & Grosse, 2015, Section 6.3): π = √((tr A/dim A)/(tr G/dim G)),
    returns ((A + π√λ I)⁻¹, (G + (√λ/π) I)⁻¹).

    >>> A_inv, G_inv = damped_inverses(torch.eye(2), torch.eye(3), damping=0.0)
    >>> torch.equal(A_inv, torch.eye(2)), torch.equal(G_inv, torch.eye(3))
    (True, True)
    """
    if damping < 0:
        raise ValueError(f"K-FAC: damping must be >= 0, got {damping}")
    ratio = (torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]).clamp_min(1e-30)
    pi = float(ratio.clamp_min(1e-30).sqrt())
    root = math.sqrt(damping)
    eye_a, eye_g = torch.eye(A.shape[0], dtype=A.dtype), torch.eye(G.shape[0], dtype=G.dtype)
    return torch.linalg.inv(A + pi * root * eye_a), torch.linalg.inv(G + root / pi * eye_g)


def precondition(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None, A_inv: torch.Tensor,
                 G_inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""The layer's K-FAC direction G⁻¹ ∇_W̄ A⁻¹ (= (A ⊗ G)⁻¹ vec ∇_W̄), split back into weight and bias shapes.

    >>> w, b = precondition(torch.ones(2, 3), torch.ones(2), torch.eye(4), 2 * torch.eye(2))
    >>> w.tolist(), b.tolist()
    ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], [2.0, 2.0])
    """
    matrix = weight_grad.reshape(weight_grad.shape[0], -1)
    if bias_grad is not None:
        matrix = torch.cat([matrix, bias_grad.unsqueeze(1)], dim=1)  # ∇_W̄ = [∇_W, ∇_b]
    direction = G_inv @ matrix @ A_inv  # vec⁻¹((A ⊗ G)⁻¹ vec ∇_W̄)
    if bias_grad is None:
        return direction.reshape(weight_grad.shape), None
    return direction[:, :-1].reshape(weight_grad.shape), direction[:, -1]


class KFAC:
    """The optimiser's state for one task: moving averages of the factors and the step counter.

    ``step(θ, buffers, batch)`` computes the loss, the gradient and this batch's factors at θ (one forward pass,
    BatchNorm buffers updated in place), updates the moving averages and returns ``(θ_new, loss)``.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 3))
    >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    >>> theta = {n: p.detach() for n, p in model.named_parameters()}
    >>> optimiser = KFAC(model, lr=0.5, damping=1e-2)
    >>> losses = []
    >>> for _ in range(10):
    ...     theta, loss = optimiser.step(theta, {}, (x, y))
    ...     losses.append(float(loss))
    >>> losses[-1] < losses[0]
    True
    """

    def __init__(self, model: nn.Module, lr: float, damping: float, fisher: str = "mc",
                 other_lr: float | None = None, loss_fn: LossFn = F.cross_entropy, phi: Params | None = None,
                 generator: torch.Generator | None = None):
        if lr <= 0 or damping < 0 or fisher not in FISHER_TYPES:
            raise ValueError(f"KFAC: need lr > 0, damping >= 0 and fisher in {FISHER_TYPES}; got lr={lr}, "
                             f"damping={damping}, fisher={fisher!r}")
        self.model, self.lr, self.damping, self.fisher = model, lr, damping, fisher
        self.other_lr = lr if other_lr is None else other_lr
        self.loss_fn, self.phi, self.generator = loss_fn, dict(phi or {}), generator
        self.layers = kfac_layers(model)
        self.factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.steps = 0

    def _average(self, new: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.steps += 1
        past = min(1.0 - 1.0 / self.steps, FACTOR_DECAY)  # ε_k = min(1 − 1/k, 0.95)
        for name, (A, G) in new.items():
            if name in self.factors:
                old_A, old_G = self.factors[name]
                A, G = past * old_A + (1 - past) * A, past * old_G + (1 - past) * G
            self.factors[name] = (A, G)

    @torch.no_grad()
    def _update(self, theta: Params, gradients: Params) -> Params:
        new_theta = {name: value - self.other_lr * gradients[name] for name, value in theta.items()}
        for layer, module in self.layers.items():
            weight, bias = _weight_names(layer, module)
            A_inv, G_inv = damped_inverses(*self.factors[layer], self.damping)
            dw, db = precondition(gradients[weight], gradients[bias] if bias else None, A_inv, G_inv)
            new_theta[weight] = theta[weight] - self.lr * dw  # θ ← θ − α G_λ⁻¹ ∇_W̄ A_λ⁻¹
            if bias:
                new_theta[bias] = theta[bias] - self.lr * db
        return new_theta

    def step(self, theta: Params, buffers: Params, batch) -> tuple[Params, torch.Tensor]:
        inputs, target = batch
        loss, gradients, factors = curvature(self.model, {**theta, **self.phi}, buffers, inputs, target,
                                             self.loss_fn, self.fisher, self.generator)
        self._average(factors)
        return self._update(theta, gradients), loss


def kfac_adapt(model: nn.Module, task: Task, loss_fn: LossFn, num_steps: int, lr: float, damping: float,
               fisher: str = "mc", other_lr: float | None = None, seed: int = 0) -> Trajectory:
    """Adapt a fresh copy of the model's θ (φ frozen, BatchNorm statistics reset) to ``task`` by ``num_steps``
    K-FAC steps, on the same batches ``task.sample_batch(k)`` as SGD's :func:`warpkit.engine.adapt.adapt`. Returns
    a :class:`~warpkit.engine.adapt.Trajectory` with the losses and the final state (no intermediate states).
    The model is not modified; the Monte-Carlo labels are drawn from a generator seeded by ``seed``.

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> _ = torch.manual_seed(0)
    >>> task = SupervisedTask(torch.randn(16, 4), torch.randint(0, 3, (16,)), batch_size=16)
    >>> trajectory = kfac_adapt(nn.Linear(4, 3), task, F.cross_entropy, num_steps=5, lr=0.5, damping=1e-2)
    >>> len(trajectory.losses), trajectory.losses[-1] < trajectory.losses[0]
    (5, True)
    """
    if num_steps < 0:
        raise ValueError(f"kfac_adapt(): num_steps must be >= 0, got {num_steps}")
    theta, phi, buffers, _ = _initial_state(model, None, None, 0.0)
    optimiser = KFAC(model, lr, damping, fisher, other_lr, loss_fn, phi, torch.Generator().manual_seed(seed))
    trajectory, losses = Trajectory(), []
    with train_mode(model):
        for step in range(num_steps):
            theta, loss = optimiser.step(theta, buffers, task.sample_batch(step))
            losses.append(loss)
        trajectory.losses = torch.stack(losses).tolist() if losses else []
        trajectory.final_loss = float(_final_loss(_task_loss(model, loss_fn, phi), theta, buffers,
                                                  task.sample_batch(num_steps)))
    trajectory.final_params, trajectory.final_buffers = theta, buffers
    return trajectory


class KFACLearner(MetaLearner):
    """K-FAC with no meta-learning (the paper's second-order comparison): :meth:`adapt` runs :func:`kfac_adapt`
    from the model's parameters (a random initialisation), ``inner.steps`` steps at ``kfac_lr`` with damping
    ``kfac_damping``; BatchNorm scales and shifts take SGD steps at ``inner.lr``. Nothing is meta-learned:
    build it on a network without warps and skip meta-training (a :meth:`meta_step` would only adapt by SGD).

    >>> from warpkit.engine.tasks import SupervisedTask
    >>> _ = torch.manual_seed(0)
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> learner = KFACLearner(nn.Sequential(nn.Linear(4, 3)), F.cross_entropy, InnerLoop(steps=20), kfac_lr=0.5)
    >>> trajectory = learner.adapt(SupervisedTask(x, y, batch_size=32))
    >>> trajectory.losses[-1] < trajectory.losses[0]
    True
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inner: InnerLoop = InnerLoop(), kfac_lr: float = 0.1,
                 kfac_damping: float = 1e-2, kfac_fisher: str = "mc", seed: int = 0):
        super().__init__(model, loss_fn, inner=inner, warp=None, init=None, seed=seed)
        KFAC(model, kfac_lr, kfac_damping, kfac_fisher)  # checks the settings now rather than at the first task
        self.kfac_lr, self.kfac_damping, self.kfac_fisher, self.kfac_seed = kfac_lr, kfac_damping, kfac_fisher, seed

    def adapt(self, task: Task, num_steps: int | None = None, keep_trajectory: bool = False,
              keep_gradients: bool = False, on_state=None) -> Trajectory:
        """K-FAC adaptation of a fresh copy of θ_0 to ``task`` (the model is not modified); ``keep_trajectory``,
        ``keep_gradients`` and ``on_state`` are not supported (K-FAC is never meta-trained)."""
        if keep_trajectory or keep_gradients or on_state is not None:
            raise ValueError("KFACLearner.adapt(): keep_trajectory/keep_gradients/on_state are for meta-training, "
                             "which K-FAC (no meta-learning) does not do")
        steps = self.inner.steps if num_steps is None else num_steps
        return kfac_adapt(self.model, task, self.loss_fn, steps, self.kfac_lr, self.kfac_damping, self.kfac_fisher,
                          other_lr=self.inner.lr, seed=self.kfac_seed)


__all__ = ["FISHER_TYPES", "KFAC", "KFACLearner", "curvature", "damped_inverses", "kfac_adapt", "kfac_layers",
           "layer_factors", "logit_gradients", "precondition"]
