"""The Omniglot network of Flennerhag et al., 2020, Section 4.2: shapes, θ/φ split (counted by hand), identity warps."""

import pytest
import torch

from warpkit.engine.adapt import adapt, forward, fresh_buffers
from warpkit.models.omniglot_net import OMNIGLOT_WARPS, OmniglotNet, omniglot_net_factory
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters

torch.set_num_threads(1)  # small tensors: intra-op threads only add contention on a shared machine


def conv_count(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def expected_task_count(filters, ways, batchnorm=True):
    convs = conv_count(1, filters, 3) + 3 * conv_count(filters, filters, 3)
    return convs + (4 * 2 * filters if batchnorm else 0) + filters * ways + ways


EXPECTED_WARP_COUNT = {
    "none": lambda f: 0,
    "conv3": lambda f: 4 * conv_count(f, f, 3),
    "default": lambda f: 4 * conv_count(f, f, 3),
    "conv1": lambda f: 4 * conv_count(f, f, 1),
    "linear": lambda f: 3 * conv_count(f, f, 1) + (f * f + f),
    "residual_conv": lambda f: 4 * 2 * conv_count(f, f, 3),
}


@pytest.mark.parametrize("warp", OMNIGLOT_WARPS)
def test_shapes_and_parameter_split(warp):
    model = OmniglotNet(ways=5, filters=8, warp=warp)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 5)
    assert model.features(torch.randn(2, 1, 28, 28)).shape == (2, 8)
    theta, phi = task_parameters(model), warp_parameters(model)
    assert count_parameters(theta) == expected_task_count(8, 5)
    assert count_parameters(phi) == EXPECTED_WARP_COUNT[warp](8)
    # BatchNorm affine parameters and the head are task parameters
    assert {"head.weight", "head.bias", "blocks.0.norm.weight", "blocks.3.norm.bias"} <= set(theta)
    assert all(name.startswith("warps.") for name in phi)


def test_paper_size_counts():
    model = OmniglotNet(warp="conv3")
    assert count_parameters(task_parameters(model)) == 113236  # 64 filters, 20 ways
    assert count_parameters(warp_parameters(model)) == 4 * 36928


def test_without_batchnorm():
    model = OmniglotNet(ways=4, filters=6, batchnorm=False)
    assert count_parameters(task_parameters(model)) == expected_task_count(6, 4, batchnorm=False)
    assert not list(model.buffers())


@pytest.mark.parametrize("warp", ["conv3", "conv1", "residual_conv", "linear"])
def test_identity_warps_give_the_unwarped_twin_output(warp):
    torch.manual_seed(0)
    warped = OmniglotNet(ways=5, filters=8, warp=warp).double()
    plain = OmniglotNet(ways=5, filters=8, warp="none").double()
    theta = {n: p.detach() for n, p in task_parameters(warped).items()}
    assert set(theta) == set(task_parameters(plain))
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    out_warped = forward(warped, {**theta, **warp_parameters(warped)}, fresh_buffers(warped), x)
    out_plain = forward(plain, theta, fresh_buffers(plain), x)
    assert torch.allclose(out_warped, out_plain, atol=1e-12, rtol=0)
    # and after a perturbation of φ the two differ (the test can fail)
    with torch.no_grad():
        for p in warp_parameters(warped).values():
            p.add_(0.1 * torch.randn_like(p))
    moved = forward(warped, {**theta, **warp_parameters(warped)}, fresh_buffers(warped), x)
    assert (moved - out_plain).abs().max() > 1e-4


def test_identity_warp_adaptation_equals_plain_sgd():
    torch.manual_seed(0)
    warped = OmniglotNet(ways=3, filters=4, warp="conv3").double()
    plain = OmniglotNet(ways=3, filters=4, warp="none").double()
    plain.load_state_dict({k: v for k, v in warped.state_dict().items() if not k.startswith("warps.")})
    x = torch.rand(12, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(12) % 3

    def make_task():
        return SupervisedTask(x, y, batch_size=6, generator=torch.Generator().manual_seed(3))

    ce = torch.nn.functional.cross_entropy
    a = adapt(warped, make_task(), ce, num_steps=5, lr=0.1)
    b = adapt(plain, make_task(), ce, num_steps=5, lr=0.1)
    assert max(abs(u - v) for u, v in zip(a.losses, b.losses)) <= 1e-10
    assert a.losses[-1] < a.losses[0]


def test_factory_and_bad_input():
    make = omniglot_net_factory(ways=4, filters=5)
    assert make("conv1").warp_kind == "conv1" and make().warp_kind == "none"
    with pytest.raises(ValueError, match="unknown warp"):
        OmniglotNet(warp="conv5")
    with pytest.raises(ValueError, match="28, 28"):
        OmniglotNet(filters=4)(torch.randn(2, 1, 32, 32))


def test_same_seed_gives_the_same_theta_for_every_warp_kind():
    """Warps are built after the task layers, so warped and unwarped twins start from the same θ."""
    thetas = []
    for warp in OMNIGLOT_WARPS:
        torch.manual_seed(5)
        model = OmniglotNet(ways=3, filters=4, warp=warp)
        thetas.append({n: p.detach() for n, p in task_parameters(model).items()})
    for theta in thetas[1:]:
        assert all(torch.equal(theta[n], thetas[0][n]) for n in thetas[0])
    assert OmniglotNet(filters=4, warp="default").warp_kind == "conv3"


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm under batched replay (functorch's batch_norm backward batching rule is wrong, issue #534)
# ---------------------------------------------------------------------------------------------------------------
from warpkit.engine.buffer import TrajectoryPoint  # noqa: E402
from warpkit.engine.batchnorm import elementary_batch_norm, explicit_batch_norm  # noqa: E402
from warpkit.engine.objectives import warp_meta_gradient, warp_objective  # noqa: E402


def test_explicit_batch_norm_equals_the_fused_kernel():
    torch.manual_seed(0)
    fused, explicit = torch.nn.BatchNorm2d(3).double(), torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        for module in (fused, explicit):
            module.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
            module.bias.copy_(torch.tensor([0.1, 0.0, 0.3]))
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    for _ in range(2):  # train mode: outputs, input gradients and running statistics agree
        y_fused = fused(x)
        with elementary_batch_norm():
            y_explicit = explicit(x)
        assert torch.allclose(y_fused, y_explicit, atol=1e-12)
        g_fused = torch.autograd.grad(y_fused.pow(3).sum(), x)[0]
        g_explicit = torch.autograd.grad(y_explicit.pow(3).sum(), x)[0]
        assert torch.allclose(g_fused, g_explicit, atol=1e-10)
    assert torch.allclose(fused.running_var, explicit.running_var, atol=1e-14)
    assert torch.allclose(fused.running_mean, explicit.running_mean, atol=1e-14)
    assert int(explicit.num_batches_tracked) == 2
    fused.eval(), explicit.eval()
    with elementary_batch_norm():
        assert torch.allclose(fused(x), explicit(x), atol=1e-12)
    x1 = torch.randn(6, 4, dtype=torch.float64)
    assert torch.allclose(explicit_batch_norm(x1, None, None, training=True),
                          torch.nn.functional.batch_norm(x1, None, None, training=True), atol=1e-12)


def _replay_case(norm_class=None, num_points=3):
    torch.manual_seed(0)
    model = OmniglotNet(ways=3, filters=4, warp="conv3").double()
    if norm_class is not None:
        for block in model.blocks:
            block.norm = norm_class(4).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.05 * torch.randn_like(p))
    generator = torch.Generator().manual_seed(1)
    points, task_batches, meta_batches = [], [], []
    for k in range(num_points):
        params = {n: p.detach() + 0.05 * torch.randn(p.shape, generator=generator, dtype=torch.float64)
                  for n, p in task_parameters(model).items()}
        points.append(TrajectoryPoint(0, k, params, fresh_buffers(model)))
        for batches in (task_batches, meta_batches):
            batches.append((torch.rand(5, 1, 28, 28, generator=generator, dtype=torch.float64),
                            torch.randint(0, 3, (5,), generator=generator)))
    return model, points, task_batches, meta_batches


def _batched_and_looped(model, points, task_batches, meta_batches):
    warp = warp_parameters(model)
    ce = torch.nn.functional.cross_entropy
    batched, _ = warp_meta_gradient(model, ce, warp, points, task_batches, meta_batches, 0.3, "exact", batched=True)
    looped, _ = warp_meta_gradient(model, ce, warp, points, task_batches, meta_batches, 0.3, "exact", batched=False)
    return batched, looped


def test_batched_exact_replay_on_the_omniglot_net_equals_per_point_and_finite_differences():
    model, points, task_batches, meta_batches = _replay_case()
    batched, looped = _batched_and_looped(model, points, task_batches, meta_batches)
    for name in batched:
        assert torch.allclose(batched[name], looped[name], atol=1e-12, rtol=0), name
    # and both are the true gradient: central differences on a few entries of the first and last warps
    warp = warp_parameters(model)
    ce = torch.nn.functional.cross_entropy
    for name, index in [("warps.0.conv.bias", 1), ("warps.0.conv.weight", 40), ("warps.3.conv.bias", 2)]:
        values = []
        for sign in (1, -1):
            shifted = {n: p.detach().clone() for n, p in warp.items()}
            shifted[name].view(-1)[index] += sign * 1e-6
            values.append(float(warp_objective(model, ce, shifted, points, task_batches, meta_batches, 0.3, "exact",
                                               batched=False)))
        numeric = (values[0] - values[1]) / 2e-6
        assert abs(float(batched[name].view(-1)[index]) - numeric) <= 1e-6 * max(1.0, abs(numeric)), name


def test_batched_exact_replay_with_the_fused_batchnorm_kernel():
    model, points, task_batches, meta_batches = _replay_case(norm_class=torch.nn.BatchNorm2d)
    batched, looped = _batched_and_looped(model, points, task_batches, meta_batches)
    assert max(float((batched[n] - looped[n]).abs().max()) for n in batched) <= 1e-10
