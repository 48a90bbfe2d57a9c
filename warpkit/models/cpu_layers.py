r"""Two of the Omniglot network's layers computed another way on a CPU: the same function and derivatives as
PyTorch's stock layers, faster there (the network of Flennerhag et al., 2020, Section 4.2; measured on one core
at 64 filters and batch 20, here and in ``benchmarks/engine.py``).

**2×2 max-pooling** (:class:`MaxPool2x2`, stride 2), from the four corners of each window:

.. math::  y_{ij} = \max\big(x_{2i,2j},\ x_{2i,2j+1},\ x_{2i+1,2j},\ x_{2i+1,2j+1}\big), \qquad
           \frac{\partial y_{ij}}{\partial x_{2i+a,2j+b}} = [\,(a, b) \text{ is the first corner, in row-major order,
           where the maximum is attained}\,]

(a trailing odd row or column is dropped, as ``max_pool2d`` drops it). PyTorch's CPU kernel for contiguous NCHW
tensors visits each window one element at a time: 5.5–6.5 ms for the first block's 20 × 64 × 28 × 28 activations,
about as long as all of a forward pass's convolutions, against 0.55 ms for element-wise maxima of rows, then
columns (forward and backward: 7.2–8.4 ms against 3.5–4.6 ms; the backward finds each window's index and calls
the stock kernel's backward). A maximum rounds nothing, and the derivative picks the corner ``max_pool2d``'s index picks, so every
value and every gradient — first and second order, forward mode, under ``torch.func.vmap`` — equals the stock
operation's bit for bit (tests; windows holding a NaN give NaN as the stock kernel does, but their gradient may
go to another corner).

**A 3×3 convolution of a single input channel** (:class:`SingleChannelConv2d`, the network's first layer), as
patches times weights:

.. math::  y_{n,f,t} = \sum_{j=1}^{9} W_{f,j}\, \bar x_{n,j,t} + b_f \qquad (\bar x = \text{the 3×3 patches, unfold})

oneDNN's kernel for one input channel ran at about 4 GFLOP/s (4.6 ms forward at 64 filters); the unfold and one
batched matrix product take 1.0 ms (forward and backward: 11.9 against 9.8 ms). On this repository's development
machine (an AMD EPYC) the sums come out bit for bit equal to the stock convolution's, both adding the nine taps
in order and then the bias; the tests check that to rounding on any machine, and bit for bit where it holds.
The derivatives are the stock convolution's own (``aten.convolution_backward``).

Off the CPU, inside ``torch.func`` transforms (vmap, grad, jvp: there a custom function's dispatch costs more than
it saves), for small tensors (:data:`CORNER_POOL_MIN_ELEMENTS`, :data:`UNFOLD_CONV_MIN_OUTPUTS`) and for other
convolutions, the stock kernels are used; the custom functions themselves support those transforms (tests).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _crop(x: torch.Tensor) -> torch.Tensor:
    """``x`` without a trailing odd row or column (max_pool2d's windows never reach them)."""
    return x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]


def _pool(x: torch.Tensor) -> torch.Tensor:
    """max over each 2×2 window: first the two rows of every window (contiguous rows, vectorised), then the two
    columns."""
    rows = _crop(x).unflatten(-2, (-1, 2))  # [..., H/2, 2, W]
    row_max = torch.maximum(rows[..., 0, :], rows[..., 1, :])
    return torch.maximum(row_max[..., 0::2], row_max[..., 1::2])


def _indices(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``max_pool2d``'s indices (flat positions in each H×W plane) of the first maximum of every window in
    row-major order: the bottom row only if its maximum is larger than the top row's, and in the chosen row the
    right corner only if it is larger than the left one."""
    cropped = _crop(x)
    a, b, c, d = (cropped[..., i::2, j::2] for i in (0, 1) for j in (0, 1))
    width = x.shape[-1]
    bottom = torch.maximum(a, b) < out
    right_top, right_bottom = b > a, d > c
    right = right_top ^ (bottom & (right_top ^ right_bottom))
    rows = torch.arange(out.shape[-2], device=x.device).unsqueeze(-1) * (2 * width)
    corner = rows + 2 * torch.arange(out.shape[-1], device=x.device)  # index of each window's top-left corner
    return bottom.to(torch.int64).mul_(width).add_(right).add_(corner)  # corner + width·[bottom] + [right]


def _plain_cpu(*tensors: torch.Tensor) -> bool:
    """Whether every tensor is a plain CPU tensor: not on an accelerator and not inside a ``torch.func`` transform
    (vmap, grad, jvp), where a custom function's dispatch cost more than these layers save (adaptation of the
    16-filter network under ``grad``: 9.5 ms a step against 6.5 ms with the stock layers)."""
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: True)
    return all(t.device.type == "cpu" and not wrapped(t) for t in tensors)


#: tensors with fewer elements than this are pooled by the stock kernel, and single-channel convolutions with fewer
#: outputs than :data:`UNFOLD_CONV_MIN_OUTPUTS` are left to it: below these sizes the custom function's fixed cost
#: (about 0.25 ms a call) outweighs its saving. Measured on one core, forward and backward, medians (ms, stock against
#: ours): pool of 10 × 16 × 28 × 28 (125k elements) 0.88 / 0.68, of 5 × 8 × 28 × 28 (31k) 0.26 / 0.49, of
#: 20 × 64 × 28 × 28 8.4 / 4.6; convolution to 10 × 16 × 28 × 28 (125k outputs) 0.52 / 0.60, to 20 × 32 × 28 × 28
#: (500k) 4.90 / 4.93, to 20 × 64 × 28 × 28 (1M) 11.9 / 9.8.
CORNER_POOL_MIN_ELEMENTS = 100_000
UNFOLD_CONV_MIN_OUTPUTS = 600_000


class _MaxPool2x2(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _pool(x)  # y = max of the four corners

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x, output)
        ctx.save_for_forward(x, output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors  # ∂y/∂x: 1 at the first maximum of each window, 0 elsewhere
        if getattr(ctx, "indices", None) is None:  # kept: a double backward calls this backward again
            ctx.indices = _indices(x, out)
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                               ctx.indices)

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors  # ẏ = ẋ at the first maximum
        indices = _indices(x, out)
        return tangent.flatten(-2).gather(-1, indices.flatten(-2).expand(*tangent.shape[:-2], -1)).view_as(out)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` (module docstring), by corner maxima on a CPU and by the stock kernel elsewhere.

    >>> x = torch.tensor([[[[1., 3., 0.], [2., 3., 0.], [9., 9., 9.]]]])
    >>> max_pool_2x2(x)                      # one window; the odd row and column are dropped
    tensor([[[[3.]]]])
    >>> torch.equal(max_pool_2x2(x), torch.nn.functional.max_pool2d(x, 2))
    True
    """
    if x.dim() < 3:
        raise ValueError(f"max_pool_2x2 expects [..., channels, height, width], got shape {tuple(x.shape)}")
    if not _plain_cpu(x) or x.numel() < CORNER_POOL_MIN_ELEMENTS:
        return F.max_pool2d(x, 2)
    return _MaxPool2x2.apply(x)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` with :func:`max_pool_2x2` inside: the same function and derivatives, faster on a CPU.

    >>> pool = MaxPool2x2()
    >>> pool(torch.arange(16.).reshape(1, 1, 4, 4))
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)


# ----------------------------------------------------------------------------------------------------------
# a 3×3 convolution of one input channel, as patches times weights
# ----------------------------------------------------------------------------------------------------------
class _SingleChannelConv(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(x, 3, padding=1)  # x̄: [N, 9, H·W]
        # b_f + Σ_j W_{f,j} x̄_{n,j,t} by one batched product with W first (what oneDNN's sums equal; a plain
        # ``@`` may fold the batch into a transposed product, which sums otherwise, whenever W requires a gradient)
        out = torch.baddbmm(bias[:, None].expand(x.shape[0], -1, patches.shape[-1]),
                            weight.flatten(1).expand(x.shape[0], -1, -1), patches)
        return out.unflatten(-1, x.shape[-2:])

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors  # the stock convolution's derivatives
        return torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]], [1, 1], [1, 1], [1, 1], False,
                                                   [0, 0], 1, list(ctx.needs_input_grad))

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent, bias_tangent):
        x, weight = ctx.saved_tensors  # ẏ = conv(ẋ, W) + conv(x, Ẇ, ḃ), summed as the stock convolution's jvp
        x_tangent = torch.zeros_like(x) if x_tangent is None else x_tangent
        weight_tangent = torch.zeros_like(weight) if weight_tangent is None else weight_tangent
        return F.conv2d(x_tangent, weight, padding=1) + F.conv2d(x, weight_tangent, bias_tangent, padding=1)


class SingleChannelConv2d(nn.Conv2d):
    """``nn.Conv2d(1, out_channels, 3, padding=1)`` computed as patches times weights on a CPU (module docstring),
    by the stock kernel elsewhere. It is an ``nn.Conv2d`` (same parameters, hooks, K-FAC's layer list).

    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> conv = SingleChannelConv2d(64)
    >>> x = torch.rand(20, 1, 28, 28)                   # 1M outputs: patches times weights
    >>> torch.allclose(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-6)
    True
    """

    def __init__(self, out_channels: int):
        super().__init__(1, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not _plain_cpu(x, self.weight, self.bias) or \
                x.shape[0] * self.out_channels * x.shape[-2] * x.shape[-1] < UNFOLD_CONV_MIN_OUTPUTS:
            return super().forward(x)
        return _SingleChannelConv.apply(x, self.weight, self.bias)


__all__ = ["CORNER_POOL_MIN_ELEMENTS", "MaxPool2x2", "SingleChannelConv2d", "UNFOLD_CONV_MIN_OUTPUTS", "max_pool_2x2"]
