r"""The Omniglot network of Flennerhag et al., 2020, Section 4.2, with or without warp layers.

Task layers (θ): four convolutional blocks and a linear head,

.. math::  \text{block}_i(x) = \mathrm{ReLU}\big(\mathrm{BN}_i(\mathrm{maxpool}_2(\mathrm{conv}^{3\times3}_i(x)))\big),
           \qquad f(x) = W_{\text{head}}\, \mathrm{flatten}(\omega_4 \circ \text{block}_4 \circ \dots
           \circ \omega_1 \circ \text{block}_1(x)) + b_{\text{head}},

on 1×28×28 inputs (28 → 14 → 7 → 3 → 1 after the four poolings, so the head sees ``filters`` features).
The BatchNorm affine parameters and the head are task parameters ; the BatchNorm running
statistics are buffers that :mod:`warpkit.engine.adapt` resets for every task.

Warp layers (φ), one ω_i after *each* of the four blocks, so that every task layer above a block (the next block
or, after the last block, the head) receives a preconditioned gradient, and every block's own parameters are
preconditioned by the warps above it:

==================  =================================================================================
``warp=``           ω_i
==================  =================================================================================
``"none"``          no warp: the plain network (Leap, Reptile, MAML, finetuning baselines)
``"conv3"``         :class:`~warpkit.engine.warp.ConvWarp` 3×3, ``filters``→``filters`` (the paper's Omniglot
                    warp: "one 3×3 conv 64→64 after each block"); ``"default"`` is an alias
``"conv1"``         :class:`~warpkit.engine.warp.ConvWarp` 1×1: a linear map of the channels at every position
``"residual_conv"`` :class:`~warpkit.engine.warp.ResidualConvWarp` x + g(x): data- and θ-dependent preconditioning
``"linear"``        T-Net style: a linear map of the channels after each block (1×1 ConvWarp after blocks
                    1–3) and a :class:`~warpkit.engine.warp.LinearWarp` on the flattened feature vector before the head
==================  =================================================================================

BatchNorm is the standard ``nn.BatchNorm2d``. (Batched exact replay evaluates it in elementary form, because the
fused kernel's double backward is wrong under ``vmap``: see :mod:`warpkit.engine.batchnorm`.)

``"linear"`` and ``"conv1"`` compute the same family of functions (the last block's output is 1×1, where a
1×1 convolution *is* a linear map); ``"linear"`` exists so that generic code (:mod:`warpkit.engine.baselines`, T-Nets) can
ask any model factory for "linear warps" by one name. Every warp is the identity at initialisation, so each warped
network computes exactly the function of its unwarped twin with the same θ.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from warpkit.engine.warp import ConvWarp, LinearWarp, ResidualConvWarp
from warpkit.models.cpu_layers import MaxPool2x2, SingleChannelConv2d

OMNIGLOT_WARPS = ("none", "conv3", "conv1", "residual_conv", "linear", "default")
IMAGE_SIZE = 28
NUM_BLOCKS = 4


def _make_warp(kind: str, filters: int, block_index: int) -> nn.Module | None:
    if kind == "none":
        return None
    if kind in ("conv3", "default"):
        return ConvWarp(filters, kernel_size=3)
    if kind == "conv1":
        return ConvWarp(filters, kernel_size=1)
    if kind == "residual_conv":
        return ResidualConvWarp(filters, filters, kernel_size=3)
    if kind == "linear":
        # the last block's map is 1×1: its channel map is a plain linear map of the flattened features
        return nn.Sequential(nn.Flatten(), LinearWarp(filters)) if block_index == NUM_BLOCKS - 1 \
            else ConvWarp(filters, kernel_size=1)
    raise ValueError(f"OmniglotNet: unknown warp {kind!r}; choose one of {OMNIGLOT_WARPS}")


class ConvBlock(nn.Module):
    """conv 3×3 (padding 1) → max-pool 2 → BatchNorm → ReLU: one task layer of the Omniglot network."""

    def __init__(self, in_channels: int, filters: int, batchnorm: bool = True):
        super().__init__()
        # the stock layers' functions and derivatives, faster on a CPU (warpkit.models.cpu_layers)
        self.conv = SingleChannelConv2d(filters) if in_channels == 1 else \
            nn.Conv2d(in_channels, filters, kernel_size=3, padding=1)
        self.pool = MaxPool2x2()
        self.norm = nn.BatchNorm2d(filters) if batchnorm else nn.Identity()
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.pool(self.conv(x))))


class OmniglotNet(nn.Module):
    """4 × [conv 3×3 → max-pool 2 → BatchNorm → ReLU] → (flatten) → linear head with ``ways`` outputs.

    ``filters`` = 64 in the paper (use fewer for quick CPU runs); ``warp`` picks the warp family (module
    docstring); ``batchnorm=False`` drops the normalisation. Submodules: ``blocks`` (a ``ModuleList`` of
    :class:`ConvBlock`), ``warps`` (a ``ModuleList`` of the warp after each block, empty when ``warp="none"``),
    ``head`` (``nn.Linear``). Input: ``[batch, 1, 28, 28]``; output: logits ``[batch, ways]``.
    """

    def __init__(self, ways: int = 20, filters: int = 64, warp: str = "none", batchnorm: bool = True,
                 in_channels: int = 1):
        super().__init__()
        if warp not in OMNIGLOT_WARPS:
            raise ValueError(f"OmniglotNet: unknown warp {warp!r}; choose one of {OMNIGLOT_WARPS}")
        if ways < 1 or filters < 1:
            raise ValueError(f"OmniglotNet: ways and filters must be >= 1, got ways={ways}, filters={filters}")
        warp = "conv3" if warp == "default" else warp
        self.ways, self.filters, self.warp_kind = ways, filters, warp
        self.blocks = nn.ModuleList(
            ConvBlock(in_channels if i == 0 else filters, filters, batchnorm) for i in range(NUM_BLOCKS)
        )
        self.head = nn.Linear(filters, ways)
        # warps are built last, so that for a given torch seed θ is initialised identically for every warp kind
        warps = [_make_warp(warp, filters, i) for i in range(NUM_BLOCKS)]
        self.warps = nn.ModuleList(w for w in warps if w is not None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened ``filters``-dimensional representation the head sees."""
        if x.dim() != 4 or x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"OmniglotNet expects images of shape [batch, channels, {IMAGE_SIZE}, {IMAGE_SIZE}], "
                f"got {tuple(x.shape)}"
            )
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.warps:
                x = self.warps[i](x)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def omniglot_net_factory(ways: int = 20, filters: int = 64, batchnorm: bool = True):
    """A ``model_factory(warp)`` for :func:`warpkit.engine.baselines.make_method`: the same network with any warp kind."""

    def make(warp: str = "none") -> OmniglotNet:
        return OmniglotNet(ways=ways, filters=filters, warp=warp, batchnorm=batchnorm)

    return make


__all__ = ["OmniglotNet", "ConvBlock", "OMNIGLOT_WARPS",
           "omniglot_net_factory"]
