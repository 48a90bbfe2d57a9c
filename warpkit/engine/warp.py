r"""Warp layers, and how warpkit tells task parameters θ from warp parameters φ.

A warped network interleaves warp layers ω(·; φ) between task layers h(·; θ)
(Flennerhag et al., 2020, Section 2):

.. math::  f(x) = h_L \circ \omega_{L-1} \circ h_{L-1} \circ \dots \circ \omega_1 \circ h_1(x).

During task adaptation only θ moves; φ is frozen. Backpropagating through a warp multiplies the error signal by
the warp's Jacobian, so the gradient reaching θ is a preconditioned gradient

.. math::  \nabla_\theta L = P(\theta; \phi)\, \nabla_{\theta}^{\text{unwarped}} L,

with P built from products of warp Jacobians, never formed explicitly. Every warp here is initialised to the
identity map (Jacobian = I), so warped SGD before meta-training equals plain SGD exactly.

The capacity ladder of Flennerhag et al., 2020, Appendix A:

=========================  =======================================  ==================================
class                      map ω(x)                                 preconditioner
=========================  =======================================  ==================================
:class:`ScaleWarp`         s ⊙ x                                    diagonal (Meta-SGD-like)
:class:`LinearWarp`        W x + b                                  fixed block-diagonal (T-Net)
:class:`ConvWarp`          1×1 or 3×3 convolution                   fixed block-diagonal (T-Net, conv)
:class:`ResidualMLPWarp`   x + g(x), g an MLP                       depends on data and θ
:class:`ResidualConvWarp`  x + g(x), g a small conv net             depends on data and θ
:class:`MultiplicativeRecurrentWarp`  gates 1 + tanh(W z_t), z_t from an LSTM over [x_t, h_{t-1}]  recurrent,
                                                                    state-dependent (maze Warp-RNN)
=========================  =======================================  ==================================

Marking θ and φ works for any ``nn.Module``: a parameter is a warp parameter (φ) if it lives inside a
:class:`WarpLayer` or inside a module passed to :func:`mark_as_warp`; every other parameter is a task
parameter (θ), including BatchNorm affine parameters and the output head .
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

_WARP_FLAG = "_warpkit_is_warp"


# ----------------------------------------------------------------------------------------------------------
# marking θ and φ
# ----------------------------------------------------------------------------------------------------------
class WarpLayer(nn.Module):
    """Base class of warp layers: every parameter inside is a warp parameter φ.

    >>> class Shift(WarpLayer):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.offset = nn.Parameter(torch.zeros(2))
    ...     def forward(self, x):
    ...         return x + self.offset
    >>> list(warp_parameters(nn.Sequential(nn.Linear(2, 2), Shift())))
    ['1.offset']
    """


def mark_as_warp(module: nn.Module) -> nn.Module:
    """Declare an arbitrary module a warp: its parameters become φ. Returns the module (for chaining).

    >>> model = nn.Sequential(nn.Linear(2, 2), mark_as_warp(nn.Linear(2, 2)))
    >>> list(warp_parameters(model)), list(task_parameters(model))
    (['1.weight', '1.bias'], ['0.weight', '0.bias'])
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"mark_as_warp() expects an nn.Module, got {type(module).__name__}")
    setattr(module, _WARP_FLAG, True)
    return module


def is_warp_module(module: nn.Module) -> bool:
    """True for a :class:`WarpLayer` or a module marked with :func:`mark_as_warp`.

    >>> is_warp_module(LinearWarp(3)), is_warp_module(nn.Linear(3, 3))
    (True, False)
    """
    return isinstance(module, WarpLayer) or bool(getattr(module, _WARP_FLAG, False))


def _warp_prefixes(model: nn.Module) -> list[str]:
    return [name + "." if name else "" for name, module in model.named_modules() if is_warp_module(module)]


def is_warp_parameter_name(model: nn.Module, name: str) -> bool:
    """Whether the parameter called ``name`` (as in ``model.named_parameters()``) is a warp parameter.

    >>> model = nn.Sequential(nn.Linear(2, 2), LinearWarp(2))
    >>> is_warp_parameter_name(model, "1.weight"), is_warp_parameter_name(model, "0.weight")
    (True, False)
    """
    return any(prefix == "" or name.startswith(prefix) for prefix in _warp_prefixes(model))


def warp_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """φ: the warp parameters of ``model``, by name, in registration order.

    >>> list(warp_parameters(nn.Sequential(nn.Linear(3, 3), ScaleWarp(3), nn.Linear(3, 1))))
    ['1.scale']
    """
    prefixes = _warp_prefixes(model)
    return {
        name: p
        for name, p in model.named_parameters()
        if any(prefix == "" or name.startswith(prefix) for prefix in prefixes)
    }


def task_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """θ: every parameter of ``model`` that is not a warp parameter, by name, in registration order.

    >>> list(task_parameters(nn.Sequential(nn.Linear(3, 3), ScaleWarp(3), nn.Linear(3, 1))))
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """
    warp = warp_parameters(model)
    return {name: p for name, p in model.named_parameters() if name not in warp}


def count_parameters(params: dict[str, torch.Tensor]) -> int:
    """Total number of scalars in a name → tensor dict.

    >>> count_parameters(task_parameters(nn.Sequential(nn.Linear(3, 3), ScaleWarp(3), nn.Linear(3, 1))))
    16
    """
    return sum(p.numel() for p in params.values())


def interleave_warps(
    task_layers: Sequence[nn.Module], make_warp: Callable[[int, nn.Module], nn.Module | None]
) -> nn.Sequential:
    """Build h_L ∘ ω_{L-1} ∘ … ∘ ω_1 ∘ h_1: a warp after every task layer but the last.

    ``make_warp(i, layer)`` returns the warp to insert after task layer ``i`` (or None for no warp there).
    A returned module that is not a :class:`WarpLayer` is marked with :func:`mark_as_warp`.

    >>> model = interleave_warps([nn.Linear(2, 4), nn.Linear(4, 1)], lambda i, layer: LinearWarp(layer.out_features))
    >>> [type(module).__name__ for module in model]
    ['Linear', 'LinearWarp', 'Linear']
    """
    layers: list[nn.Module] = []
    for i, layer in enumerate(task_layers):
        layers.append(layer)
        if i < len(task_layers) - 1:
            warp = make_warp(i, layer)
            if warp is not None:
                layers.append(warp if isinstance(warp, WarpLayer) else mark_as_warp(warp))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------------------
# warp layers (all identity at initialisation)
# ----------------------------------------------------------------------------------------------------------
class ScaleWarp(WarpLayer):
    r"""ω(x) = s ⊙ x with s initialised to ones; ``shape`` broadcasts against the input
    (``(features,)`` for vectors, ``(channels, 1, 1)`` for feature maps). Preconditioner: diagonal.

    >>> x = torch.tensor([1.0, 2.0, 3.0])
    >>> torch.equal(ScaleWarp(3)(x), x)   # the identity at initialisation
    True
    """

    def __init__(self, shape: int | Sequence[int]):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape or not all(isinstance(n, int) and n >= 1 for n in shape):
            raise ValueError(f"ScaleWarp: shape must be a positive int or a tuple of them, got {shape!r}")
        self.scale = nn.Parameter(torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = tuple(self.scale.shape)
        trailing = tuple(x.shape[x.dim() - len(scale):]) if x.dim() >= len(scale) else None
        if trailing is None or any(s not in (1, n) for s, n in zip(scale, trailing)):
            raise ValueError(f"ScaleWarp{scale}: cannot scale an input of shape {tuple(x.shape)}; the shape must "
                             "match the input's trailing dimensions (1 broadcasts)")
        if len(scale) == 1 and scale[0] > 1 and x.dim() >= 4:
            raise ValueError(
                f"ScaleWarp({scale[0]},) on a feature map of shape {tuple(x.shape)} would scale its last (width) "
                f"axis; to scale {scale[0]} channels pass shape ({scale[0]}, 1, 1)"
            )
        return x * self.scale


class LinearWarp(WarpLayer):
    r"""ω(x) = W x + b on the last dimension, with W = I and b = 0 at initialisation (a T-Net layer).

    >>> x = torch.randn(5, 4)
    >>> torch.allclose(LinearWarp(4)(x), x)   # W = I, b = 0 at initialisation
    True
    """

    def __init__(self, features: int, bias: bool = True):
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"LinearWarp: features must be an int >= 1, got {features!r}")
        self.weight = nn.Parameter(torch.eye(features))
        self.bias = nn.Parameter(torch.zeros(features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.weight.shape[-1]
        if x.dim() == 0 or x.shape[-1] != features:
            raise ValueError(f"LinearWarp({features}): the input's last dimension must have {features} features, "
                             f"got an input of shape {tuple(x.shape)}; build LinearWarp with the width of the "
                             "layer before it")
        return F.linear(x, self.weight, self.bias)


class ConvWarp(WarpLayer):
    r"""A ``kernel_size``×``kernel_size`` convolution C→C initialised to the identity (centre tap = I, others 0,
    zero bias, "same" padding). With kernel 1 it is a per-pixel linear map of channels; with kernel 3 it is the
    Omniglot default warp (one 3×3 conv 64→64 after each block, Flennerhag et al., 2020, Appendix A).

    >>> x = torch.randn(1, 2, 5, 5)
    >>> torch.allclose(ConvWarp(2, kernel_size=3)(x), x)   # the identity at initialisation
    True
    """

    def __init__(self, channels: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvWarp: kernel_size must be odd to have a centre tap, got {kernel_size}")
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=bias)
        with torch.no_grad():
            self.conv.weight.zero_()
            centre = kernel_size // 2
            self.conv.weight[:, :, centre, centre] = torch.eye(channels)
            if bias:
                self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class ResidualMLPWarp(WarpLayer):
    r"""ω(x) = x + g(x), g an MLP (``hidden`` units, ``num_hidden_layers`` layers, ``activation``) whose last
    layer starts at zero, so ω = id at initialisation. Its Jacobian I + ∂g/∂x depends on x: the preconditioner
    changes with the data and with θ (the paper's non-linear warp).

    >>> x = torch.randn(4, 3)
    >>> torch.equal(ResidualMLPWarp(3, hidden=8)(x), x)   # g's last layer starts at zero
    True
    """

    def __init__(self, features: int, hidden: int = 32, num_hidden_layers: int = 1, activation: str = "tanh"):
        super().__init__()
        layers: list[nn.Module] = []
        width = features
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(width, hidden), _activation(activation)]
            width = hidden
        last = nn.Linear(width, features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.residual = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class ResidualConvWarp(WarpLayer):
    r"""ω(x) = x + g(x), g = conv(k×k, C→H) → activation → conv(k×k, H→C) with the last conv zeroed
    (identity at initialisation); the convolutional counterpart of :class:`ResidualMLPWarp`.

    >>> x = torch.randn(1, 2, 5, 5)
    >>> torch.equal(ResidualConvWarp(2)(x), x)   # the last conv starts at zero
    True
    """

    def __init__(self, channels: int, hidden_channels: int | None = None, kernel_size: int = 3,
                 activation: str = "relu"):
        super().__init__()
        hidden_channels = hidden_channels or channels
        padding = kernel_size // 2
        last = nn.Conv2d(hidden_channels, channels, kernel_size, padding=padding)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.residual = nn.Sequential(
            nn.Conv2d(channels, hidden_channels, kernel_size, padding=padding), _activation(activation), last
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class MultiplicativeRecurrentWarp(WarpLayer):
    r"""A HyperNetwork warp for recurrent task networks (the maze Warp-RNN, Flennerhag et al., 2020, Section 4.3).

    An LSTM cell runs over z_in = [x_t, h_{t-1}] (the task RNN's input and previous hidden state) and emits
    one multiplicative gate per entry of ``gate_sizes`` through a tanh projection:

    .. math::  (u_t, c_t) = \mathrm{LSTM}([x_t, h_{t-1}], (u_{t-1}, c_{t-1})), \qquad
               g^{(i)}_t = 1 + \tanh(W_i u_t + b_i).

    The task RNN multiplies its input, hidden state and pre-activations by these gates. W_i and b_i start at
    zero, so every gate is exactly 1 and the warped RNN equals the plain RNN at initialisation.

    ``forward(x, h_prev, state)`` returns ``(gates, new_state)``; ``state`` is ``None`` at the start of an
    episode (zeros) or the ``(u, c)`` pair returned by the previous call.

    >>> warp = MultiplicativeRecurrentWarp(input_size=3, task_hidden_size=5, warp_hidden_size=4, gate_sizes=(3, 5))
    >>> gates, state = warp(torch.randn(2, 3), torch.zeros(2, 5))
    >>> [tuple(gate.shape) for gate in gates], all(bool((gate == 1).all()) for gate in gates)
    ([(2, 3), (2, 5)], True)
    """

    def __init__(self, input_size: int, task_hidden_size: int, warp_hidden_size: int,
                 gate_sizes: Sequence[int]):
        super().__init__()
        self.warp_hidden_size = warp_hidden_size
        self.cell = nn.LSTMCell(input_size + task_hidden_size, warp_hidden_size)
        self.projections = nn.ModuleList(nn.Linear(warp_hidden_size, size) for size in gate_sizes)
        for projection in self.projections:
            nn.init.zeros_(projection.weight)
            nn.init.zeros_(projection.bias)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch_size, self.warp_hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, h_prev: torch.Tensor, state=None):
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        u, c = self.cell(torch.cat([x, h_prev], dim=-1), state)
        gates = tuple(1.0 + torch.tanh(projection(u)) for projection in self.projections)
        return gates, (u, c)
