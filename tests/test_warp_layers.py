"""Warp layers (Flennerhag et al., 2020, Appendix A): identity at initialisation (value and Jacobian), marking θ/φ on any module,
interleaving, and the multiplicative recurrent warp's gates."""

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, jacrev

from warpkit.engine.warp import (
    ConvWarp,
    LinearWarp,
    MultiplicativeRecurrentWarp,
    ResidualConvWarp,
    ResidualMLPWarp,
    ScaleWarp,
    WarpLayer,
    count_parameters,
    interleave_warps,
    is_warp_module,
    is_warp_parameter_name,
    mark_as_warp,
    task_parameters,
    warp_parameters,
)

# (warp, input shape): feature-vector warps and feature-map warps
WARPS = {
    "scale_vector": (lambda: ScaleWarp(5), (3, 5)),
    "scale_map": (lambda: ScaleWarp((4, 1, 1)), (2, 4, 3, 3)),
    "linear": (lambda: LinearWarp(5), (3, 5)),
    "linear_nobias": (lambda: LinearWarp(5, bias=False), (3, 5)),
    "conv1": (lambda: ConvWarp(4, kernel_size=1), (2, 4, 3, 3)),
    "conv3": (lambda: ConvWarp(4, kernel_size=3), (2, 4, 3, 3)),
    "residual_mlp": (lambda: ResidualMLPWarp(5, hidden=7, num_hidden_layers=2), (3, 5)),
    "residual_conv": (lambda: ResidualConvWarp(4, hidden_channels=6), (2, 4, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(WARPS))
def test_every_warp_is_the_identity_at_init(name):
    torch.manual_seed(0)
    make, shape = WARPS[name]
    warp = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    assert torch.equal(warp(x), x) or torch.allclose(warp(x), x, atol=1e-15, rtol=0)
    # the Jacobian ∂ω/∂x of the whole (flattened) map is exactly the identity matrix
    jacobian = jacrev(lambda z: warp(z.view(shape)).flatten())(x.flatten())
    assert torch.allclose(jacobian, torch.eye(x.numel(), dtype=torch.float64), atol=1e-15, rtol=0)
    # all of its parameters are warp parameters
    assert set(warp_parameters(warp)) == {n for n, _ in warp.named_parameters()}
    assert task_parameters(warp) == {}


@pytest.mark.parametrize("name", sorted(WARPS))
def test_moved_warp_is_no_longer_the_identity(name):
    torch.manual_seed(0)
    make, shape = WARPS[name]
    warp = make().double()
    with torch.no_grad():
        for p in warp.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(*shape, dtype=torch.float64)
    assert (warp(x) - x).abs().max() > 1e-3


def test_conv_warp_refuses_even_kernels():
    with pytest.raises(ValueError, match="odd"):
        ConvWarp(3, kernel_size=2)


def test_mark_as_warp_works_for_any_module():
    torch.manual_seed(0)
    custom = nn.Sequential(nn.Linear(4, 4), nn.Tanh())  # an arbitrary module declared a warp
    model = nn.Sequential(nn.Linear(3, 4), mark_as_warp(custom), nn.Linear(4, 2))
    assert is_warp_module(custom) and not is_warp_module(model[0])
    assert set(warp_parameters(model)) == {"1.0.weight", "1.0.bias"}
    assert set(task_parameters(model)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert is_warp_parameter_name(model, "1.0.weight") and not is_warp_parameter_name(model, "2.bias")
    # a name that merely starts with the same digit is not inside the warp ("1" vs "10")
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    mark_as_warp(big[1])
    assert set(warp_parameters(big)) == {"1.weight", "1.bias"}
    with pytest.raises(TypeError, match="nn.Module"):
        mark_as_warp(torch.zeros(3))


def test_whole_model_marked_is_all_warp():
    model = mark_as_warp(nn.Linear(3, 3))
    assert set(warp_parameters(model)) == {"weight", "bias"} and task_parameters(model) == {}


def test_task_and_warp_parameters_partition_all_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), ConvWarp(4), nn.ReLU(), ResidualConvWarp(4),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 6), mark_as_warp(nn.Linear(6, 6)),
        nn.Linear(6, 2),
    )
    every = dict(model.named_parameters())
    theta, phi = task_parameters(model), warp_parameters(model)
    assert set(theta).isdisjoint(phi)
    assert set(theta) | set(phi) == set(every)
    assert count_parameters(theta) + count_parameters(phi) == sum(p.numel() for p in model.parameters())
    assert {"1.weight", "1.bias"} <= set(theta)  # BatchNorm affine parameters are θ
    # registration order is kept (what stacking and checkpoints rely on)
    assert list(theta) == [n for n in every if n in theta]


def test_interleave_warps_places_a_warp_between_task_layers():
    layers = [nn.Linear(3, 5), nn.Linear(5, 5), nn.Linear(5, 2)]
    made = []

    def make_warp(i, layer):
        made.append(i)
        if i == 1:
            return nn.Identity()  # a plain module: interleave marks it as a warp
        return LinearWarp(layer.out_features)

    model = interleave_warps(layers, make_warp)
    assert made == [0, 1]  # never after the last task layer
    assert [type(m).__name__ for m in model] == ["Linear", "LinearWarp", "Linear", "Identity", "Linear"]
    assert is_warp_module(model[3]) and isinstance(model[1], WarpLayer)
    assert set(warp_parameters(model)) == {"1.weight", "1.bias"}
    x = torch.randn(4, 3)
    plain = nn.Sequential(*layers)
    assert torch.allclose(model(x), plain(x))  # identity warps: same function
    none = interleave_warps(layers, lambda i, layer: None)
    assert len(none) == 3 and warp_parameters(none) == {}


def test_multiplicative_recurrent_warp_gates_are_one_at_init_then_not():
    torch.manual_seed(0)
    warp = MultiplicativeRecurrentWarp(input_size=3, task_hidden_size=4, warp_hidden_size=6, gate_sizes=[4, 3, 5])
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    gates, state = warp(x, h)
    assert [g.shape for g in gates] == [(2, 4), (2, 3), (2, 5)]
    for gate in gates:
        assert torch.equal(gate, torch.ones_like(gate))
    assert state[0].shape == (2, 6) and state[0].abs().sum() > 0  # the LSTM state does move
    # over several steps, carrying the state, the gates stay exactly 1 at initialisation
    for _ in range(3):
        gates, state = warp(torch.randn(2, 3), torch.randn(2, 4), state)
        assert all(torch.equal(g, torch.ones_like(g)) for g in gates)
    # the gate is 1 + tanh(W u + b): with b moved by δ it equals 1 + tanh(W u + δ) exactly
    moved = {n: p.detach().clone() for n, p in warp.named_parameters()}
    moved["projections.1.bias"] = moved["projections.1.bias"] + 0.3
    moved["projections.0.weight"] = torch.randn_like(moved["projections.0.weight"])
    new_gates, (u, _) = functional_call(warp, moved, (x, h))
    assert torch.allclose(new_gates[1], torch.full((2, 3), 1 + torch.tanh(torch.tensor(0.3)).item()))
    expected = 1 + torch.tanh(u @ moved["projections.0.weight"].T)
    assert torch.allclose(new_gates[0], expected)
    assert (new_gates[0] - 1).abs().max() > 1e-3
    assert torch.equal(new_gates[2], torch.ones(2, 5))


def test_warp_inside_a_model_makes_the_gradient_preconditioned():
    """Backpropagating through a linear warp W multiplies the error signal by Wᵀ (the preconditioning of
    Flennerhag et al., 2020, Section 2)."""
    torch.manual_seed(0)
    first, warp, last = nn.Linear(3, 4).double(), LinearWarp(4).double(), nn.Linear(4, 1).double()
    with torch.no_grad():
        warp.weight.copy_(torch.randn(4, 4, dtype=torch.float64))
    x = torch.randn(5, 3, dtype=torch.float64)
    loss = last(warp(first(x))).pow(2).sum()
    g_warped = torch.autograd.grad(loss, first.bias)[0]
    # by hand: dL/dh = Wᵀ dL/dω, summed over the batch
    h = first(x)
    omega = warp(h).detach().requires_grad_(True)
    upstream = torch.autograd.grad(last(omega).pow(2).sum(), omega)[0]
    assert torch.allclose(g_warped, (upstream @ warp.weight).sum(0))
