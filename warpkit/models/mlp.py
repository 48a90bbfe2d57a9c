r"""Warp-MLP (Flennerhag et al., 2020, Section 4.4) and its unwarped twin, for 1-D regression.

The task network is an MLP of L task layers h_l (θ): ``Linear → activation`` for the hidden layers and a linear
head. Warp-MLP interleaves a residual MLP warp ω_l(z) = z + g_l(z; φ) (:class:`warpkit.engine.warp.ResidualMLPWarp`,
identity at initialisation) after every hidden task layer:

.. math::  f(x) = h_L \circ \omega_{L-1} \circ h_{L-1} \circ \dots \circ \omega_1 \circ h_1(x).

Because g_l is non-linear, the preconditioner it induces on θ depends on the data x and on θ itself
(Flennerhag et al., 2020, Section 2): a warp can, for instance, route the gradient of a sample on one segment of the input interval
away from the features that other segments rely on.

:func:`plain_mlp` builds the *twin*: the same task layers with the same initial values (for the same ``seed``)
and no warps, so "warp on, before meta-training" and the twin compute the same function and take the same SGD
steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from warpkit.engine.warp import ResidualMLPWarp, interleave_warps

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "softplus": nn.Softplus}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def mlp_task_layers(input_size: int = 1, hidden: int = 40, num_hidden_layers: int = 2, output_size: int = 1,
                    activation: str = "relu", seed: int | None = None) -> list[nn.Module]:
    """The task layers h_1 … h_L: ``num_hidden_layers`` × (Linear → activation), then a linear head.

    With ``seed`` the layers are initialised from ``torch.manual_seed(seed)`` inside a forked RNG (the caller's
    global RNG state is left as it was), so twins built with the same seed start identical."""
    if num_hidden_layers < 1 or hidden < 1:
        raise ValueError(f"mlp_task_layers(): need hidden >= 1 and num_hidden_layers >= 1, got {hidden}, "
                         f"{num_hidden_layers}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = input_size
        for _ in range(num_hidden_layers):
            layers.append(nn.Sequential(nn.Linear(width, hidden), _activation(activation)))
            width = hidden
        layers.append(nn.Linear(width, output_size))
    return layers


def warp_mlp(input_size: int = 1, hidden: int = 40, num_hidden_layers: int = 2, output_size: int = 1,
             activation: str = "relu", warp_hidden: int = 40, warp_layers: int = 1, warp_activation: str = "tanh",
             seed: int | None = None) -> nn.Sequential:
    """Warp-MLP: the task layers of :func:`mlp_task_layers` with a ``ResidualMLPWarp(hidden, warp_hidden,
    warp_layers, warp_activation)`` after every hidden layer (φ), identity at initialisation."""
    task_layers = mlp_task_layers(input_size, hidden, num_hidden_layers, output_size, activation, seed)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed + 1)
        return interleave_warps(
            task_layers, lambda i, layer: ResidualMLPWarp(hidden, warp_hidden, warp_layers, warp_activation)
        )


def plain_mlp(input_size: int = 1, hidden: int = 40, num_hidden_layers: int = 2, output_size: int = 1,
              activation: str = "relu", seed: int | None = None) -> nn.Sequential:
    """The unwarped twin of :func:`warp_mlp`: the same task layers (same initial values for the same seed)."""
    return nn.Sequential(*mlp_task_layers(input_size, hidden, num_hidden_layers, output_size, activation, seed))


__all__ = ["mlp_task_layers", "warp_mlp", "plain_mlp"]
