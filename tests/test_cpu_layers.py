"""warpkit.models.cpu_layers against PyTorch's stock layers: the corner max-pool against F.max_pool2d(x, 2) bit for
bit (values, first and second derivatives, forward mode, vmap) on inputs with ties (flat regions, as blank Omniglot
strokes give); the single-channel convolution against F.conv2d (to rounding everywhere, bit for bit on this kind of
machine); the Omniglot network built from them against its twin built from the stock layers."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from warpkit.engine.adapt import adapt, forward, fresh_buffers
from warpkit.engine.objectives import one_step_objective
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import task_parameters, warp_parameters
from warpkit.models.omniglot_net import OmniglotNet
from warpkit.models import cpu_layers
from warpkit.models.cpu_layers import (CORNER_POOL_MIN_ELEMENTS, MaxPool2x2, SingleChannelConv2d, _MaxPool2x2,
                                       _SingleChannelConv, max_pool_2x2)

torch.set_num_threads(1)


def stock(x):
    return F.max_pool2d(x, 2)


def corner(x):
    return _MaxPool2x2.apply(x)  # the corner path at every size (max_pool_2x2 hands small planes to the stock one)


def tied_input(shape, seed=0):
    """Random values with a flat band (exact ties in every window there) and a few equal pairs elsewhere."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    x[..., : shape[-2] // 3, :] = 0.25
    row, cols = shape[-2] // 2 * 2 - 1, shape[-1] // 2 * 2
    x[..., row, 1:cols:2] = x[..., row, 0:cols:2]  # left = right in the bottom row of the last windows
    return x


SHAPES = [(4, 3, 28, 28), (4, 3, 14, 14), (2, 3, 7, 7), (2, 3, 3, 3), (3, 6, 5), (1, 1, 2, 2)]


def derivatives(pool, x):
    """Value, gradient, second derivative (a double backward), jvp, a grad of a jvp, and vmapped gradients."""
    weights = torch.randn(stock(x).shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)

    def loss(t):
        return (pool(t) * weights).pow(2).sum()

    second = grad(lambda t: (grad(loss)(t) * x.sin()).sum())(x)
    through_jvp = grad(lambda w: jvp(lambda v: (pool(v) * w).sum(), (x,), (tangent,))[1])(weights)
    leaf = x.clone().requires_grad_()
    first, = torch.autograd.grad(loss(leaf), leaf, create_graph=True)
    autograd_second, = torch.autograd.grad((first * x.cos()).sum(), leaf)
    return [pool(x), grad(loss)(x), second, jvp(pool, (x,), (tangent,))[1], through_jvp,
            vmap(grad(loss))(torch.stack([x, x.cos()])), autograd_second]


@pytest.mark.parametrize("shape", SHAPES)
def test_corner_pool_equals_stock_bit_for_bit(shape):
    x = tied_input(shape)
    for ours, reference in zip(derivatives(corner, x), derivatives(stock, x)):
        assert torch.equal(ours, reference)


def test_gradient_goes_to_the_first_maximum_in_row_major_order():
    # windows (row-major corners a b / c d): all tied → a; b = c = max → b; c = d = max → c; only d → d
    x = torch.tensor([[[[1., 1., 0., 5.], [1., 1., 5., 0.]], [[0., 0., 0., 0.], [3., 3., 0., 2.]]]])
    x = x.reshape(1, 1, 4, 4)
    leaf = x.clone().requires_grad_()
    corner(leaf).sum().backward()
    reference = x.clone().requires_grad_()
    stock(reference).sum().backward()
    assert torch.equal(leaf.grad, reference.grad)
    assert leaf.grad.sum() == 4  # one corner per window


def test_values_of_a_hand_made_window():
    x = torch.tensor([[[[1., 3., 0.], [2., 3., 0.], [9., 9., 9.]]]])
    assert corner(x).tolist() == [[[[3.]]]]  # the odd row and column are dropped, as max_pool2d drops them


def test_nan_propagates_like_stock():
    x = torch.randn(1, 2, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    assert torch.equal(corner(x).isnan(), stock(x).isnan())
    assert corner(x).isnan().sum() == 1


def test_small_tensors_and_transforms_use_the_stock_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(_MaxPool2x2, "apply", lambda x: calls.append(x.shape) or stock(x))
    max_pool_2x2(torch.randn(2, 3, 7, 7))  # fewer elements than CORNER_POOL_MIN_ELEMENTS
    large = torch.randn(20, 16, 28, 28)
    max_pool_2x2(large)
    grad(lambda t: max_pool_2x2(t).sum())(large)  # inside a torch.func transform
    assert 2 * 3 * 7 * 7 < CORNER_POOL_MIN_ELEMENTS <= large.numel() and calls == [large.shape]
    convolutions = []
    monkeypatch.setattr(_SingleChannelConv, "apply", lambda *a: convolutions.append(a[1].shape[0]) or
                        F.conv2d(*a, padding=1))
    images = torch.rand(20, 1, 28, 28)
    small, wide = SingleChannelConv2d(4), SingleChannelConv2d(64)  # 63k and 1M outputs
    small(images), wide(images)
    grad(lambda w: torch.func.functional_call(wide, {"weight": w, "bias": wide.bias}, (images,)).sum())(wide.weight)
    assert convolutions == [64]


def test_bad_input_says_what_it_expects():
    with pytest.raises(ValueError, match=r"\[\.\.\., channels, height, width\]"):
        max_pool_2x2(torch.randn(4, 4))


def test_module_matches_nn_maxpool():
    x = tied_input((2, 3, 16, 16)).float()
    assert torch.equal(MaxPool2x2()(x), torch.nn.MaxPool2d(2)(x))


def stock_twin(model):
    twin = OmniglotNet(ways=model.ways, filters=model.filters, warp=model.warp_kind)
    twin.load_state_dict(model.state_dict())
    for block in twin.blocks:
        block.pool = torch.nn.MaxPool2d(2)
    stock_conv = torch.nn.Conv2d(1, model.filters, 3, padding=1)
    stock_conv.load_state_dict(twin.blocks[0].conv.state_dict())
    twin.blocks[0].conv = stock_conv
    return twin


def test_network_adaptation_and_exact_meta_gradient_unchanged(monkeypatch):
    """The Omniglot network with warpkit's CPU layers adapts and meta-differentiates exactly as with the stock
    nn.MaxPool2d and nn.Conv2d: the same trajectory and the same exact meta-gradient (Eq. 11), on images with blank
    regions (bit for bit where the convolution's sums are, to rounding everywhere)."""
    assert isinstance(OmniglotNet().blocks[0].conv, SingleChannelConv2d)
    monkeypatch.setattr(cpu_layers, "CORNER_POOL_MIN_ELEMENTS", 0)  # the custom layers at this small size too
    monkeypatch.setattr(cpu_layers, "UNFOLD_CONV_MIN_OUTPUTS", 0)
    torch.manual_seed(0)
    model = OmniglotNet(ways=5, filters=8, warp="conv3")
    twin = stock_twin(model)
    images = torch.rand(20, 1, 28, 28)
    images[:, :, :10] = 0  # blank rows: ties in the first pooling windows
    runs = [adapt(net, SupervisedTask(images, torch.arange(5).repeat(4), batch_size=10,
                                      generator=torch.Generator().manual_seed(3)), F.cross_entropy, num_steps=3, lr=0.1)
            for net in (model, twin)]
    for ours, theirs in zip(runs[0].params + [runs[0].final_params], runs[1].params + [runs[1].final_params]):
        assert all(same(ours[n], theirs[n]) for n in ours)
    assert not torch.equal(runs[0].final_params["blocks.0.conv.weight"], runs[0].params[0]["blocks.0.conv.weight"])
    batch = (images[:10], torch.arange(5).repeat(2))
    gradients = []
    for net in (model, twin):
        theta, phi = task_parameters(net), warp_parameters(net)
        loss = one_step_objective(net, F.cross_entropy, phi, {n: p.detach() for n, p in theta.items()},
                                  fresh_buffers(net), batch, batch, 0.1, "exact")
        gradients.append(torch.autograd.grad(loss, list(phi.values())))
    assert all(same(a, b) for a, b in zip(*gradients))
    assert same(forward(model, dict(model.named_parameters()), fresh_buffers(model), images),
                forward(twin, dict(twin.named_parameters()), fresh_buffers(twin), images))


# ----------------------------------------------------------------------------------------------------------
# the single-channel convolution
# ----------------------------------------------------------------------------------------------------------
def sums_in_order():
    """Whether this machine's stock single-channel convolution sums like patches times weights (bit for bit)."""
    generator = torch.Generator().manual_seed(5)
    x, w, b = torch.rand(20, 1, 28, 28, generator=generator), torch.randn(16, 1, 3, 3, generator=generator), \
        torch.randn(16, generator=generator)
    return torch.equal(F.conv2d(x, w, b, padding=1), _SingleChannelConv.apply(x, w, b))


BIT_FOR_BIT = sums_in_order()


def same(a, b):
    """Bit for bit where the convolution's sums are (module docstring), else to float32 rounding."""
    return torch.equal(a, b) if BIT_FOR_BIT else torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def convolution_derivatives(conv, x, w, b):
    """Value, the gradients of a loss in (x, W, b), a double backward in W, a jvp in (x, W, b), vmapped values."""
    weights = torch.randn(x.shape[0], w.shape[0], 28, 28, generator=torch.Generator().manual_seed(1),
                          dtype=x.dtype)

    def loss(x_, w_, b_):
        return (conv(x_, w_, b_) * weights).pow(2).sum()

    tangents = tuple(torch.randn(t.shape, generator=torch.Generator().manual_seed(i), dtype=t.dtype)
                     for i, t in enumerate((x, w, b)))
    second = grad(lambda w_: (grad(loss, argnums=1)(x, w_, b) * w.cos()).sum())(w)
    return [conv(x, w, b), *grad(loss, argnums=(0, 1, 2))(x, w, b), second, jvp(conv, (x, w, b), tangents)[1],
            vmap(conv, in_dims=(0, None, None))(torch.stack([x, x.flip(-1)]), w, b)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_channel_convolution_equals_stock(dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 28, 28, generator=generator, dtype=dtype)
    x[:, :, :9] = 0  # blank rows, as Omniglot's images have
    w, b = torch.randn(8, 1, 3, 3, generator=generator, dtype=dtype), torch.randn(8, generator=generator, dtype=dtype)
    ours = convolution_derivatives(_SingleChannelConv.apply, x, w, b)
    stock_ = convolution_derivatives(lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=1), x, w, b)
    for a, b_ in zip(ours, stock_):
        assert torch.allclose(a, b_, rtol=1e-5, atol=1e-6 if dtype == torch.float32 else 1e-12)
        if dtype == torch.float32:
            assert same(a, b_)


def test_single_channel_module_is_a_conv2d_with_the_stock_initialisation():
    torch.manual_seed(3)
    ours = SingleChannelConv2d(16)
    torch.manual_seed(3)
    stock_ = torch.nn.Conv2d(1, 16, 3, padding=1)
    assert isinstance(ours, torch.nn.Conv2d) and ours.padding == (1, 1) and ours.kernel_size == (3, 3)
    assert torch.equal(ours.weight, stock_.weight) and torch.equal(ours.bias, stock_.bias)
    x = torch.rand(4, 1, 28, 28)
    assert same(ours(x), stock_(x))
