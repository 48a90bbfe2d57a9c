"""K-FAC (warpkit.engine.kfac) against independent references: the exact Fisher block of a linear layer built from
per-label gradients by autograd, the softmax Fisher diag(p) − p pᵀ derived by hand, convolution factors summed
over patches cut out by explicit loops, and the explicit inverse of the damped Kronecker product."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from warpkit.engine.kfac import (KFACLearner, curvature, damped_inverses, kfac_adapt, layer_factors,
                                 logit_gradients, precondition)
from warpkit.engine.options import InnerLoop
from warpkit.engine.tasks import SupervisedTask
from warpkit.models.omniglot_net import omniglot_net_factory



@pytest.fixture(autouse=True)
def float64():
    """Every test here in float64 (the references are exact up to rounding); the default is restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def params_of(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def vec(matrix):
    """Columns stacked (the vec of the Kronecker identity (A ⊗ G) vec X = vec(G X Aᵀ))."""
    return matrix.T.reshape(-1)


def exact_fisher_linear(layer, x):
    """E_x Σ_c p_c(x) vec(∇_W̄ ℓ_c) vec(∇_W̄ ℓ_c)ᵀ for W̄ = [W, b], from autograd gradients of every label."""
    size = layer.out_features * (layer.in_features + 1)
    fisher = torch.zeros(size, size)
    for xi in x:
        logits = layer(xi[None])
        p = torch.softmax(logits, -1).detach()[0]
        for c in range(layer.out_features):
            gw, gb = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([c])), [layer.weight, layer.bias],
                                         retain_graph=True)
            v = vec(torch.cat([gw, gb[:, None]], 1))
            fisher += p[c] * torch.outer(v, v)
    return fisher / len(x)


def linear_layer_factors(seed, examples):
    """A random 3 → 4 linear layer, ``examples`` random inputs and the layer's exact-Fisher K-FAC factors."""
    torch.manual_seed(seed)
    layer = nn.Linear(3, 4)
    x = torch.randn(examples, 3)
    _, _, factors = curvature(layer, params_of(layer), {}, x, torch.zeros(examples, dtype=torch.long),
                              fisher="exact")
    return layer, x, factors[""]


def test_single_example_kfac_equals_the_exact_fisher_block():
    layer, x, (A, G) = linear_layer_factors(0, 1)
    assert torch.allclose(torch.kron(A, G), exact_fisher_linear(layer, x), atol=1e-12)


def test_factors_match_hand_derived_expectations():
    layer, x, (A, G) = linear_layer_factors(1, 7)
    a = torch.cat([x, torch.ones(7, 1)], 1)
    p = torch.softmax(layer(x), -1).detach()
    expected_G = sum(torch.diag(pi) - torch.outer(pi, pi) for pi in p) / 7  # softmax Fisher: diag(p) − p pᵀ
    assert torch.allclose(A, a.T @ a / 7, atol=1e-12)
    assert torch.allclose(G, expected_G, atol=1e-12)
    # for several examples K-FAC is an approximation: the Kronecker product differs from the exact block
    assert not torch.allclose(torch.kron(A, G), exact_fisher_linear(layer, x), atol=1e-3)


def test_monte_carlo_and_empirical_fishers():
    torch.manual_seed(2)
    layer = nn.Linear(2, 3)
    x = torch.randn(1, 2).repeat(20000, 1)
    target = torch.zeros(20000, dtype=torch.long)
    _, _, mc = curvature(layer, params_of(layer), {}, x, target, fisher="mc", generator=torch.Generator().manual_seed(0))
    p = torch.softmax(layer(x[:1]), -1).detach()[0]
    assert torch.allclose(mc[""][1], torch.diag(p) - torch.outer(p, p), atol=0.01)
    _, _, empirical = curvature(layer, params_of(layer), {}, x[:1], target[:1], fisher="empirical")
    delta = p - torch.eye(3)[0]
    assert torch.allclose(empirical[""][1], torch.outer(delta, delta), atol=1e-12)


def test_conv_factors_equal_sums_over_patches_cut_by_hand():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2)
    x = torch.randn(4, 2, 5, 5)
    g = torch.randn(4, 3, 3, 3)
    A, G = layer_factors(conv, x, [g])
    padded = F.pad(x, (1, 1, 1, 1))
    patches = [torch.cat([padded[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(-1), torch.ones(1)])
               for n in range(4) for i in range(3) for j in range(3)]
    expected_A = sum(torch.outer(v, v) for v in patches) / 4
    grads = [g[n, :, i, j] for n in range(4) for i in range(3) for j in range(3)]
    expected_G = sum(torch.outer(v, v) for v in grads) / (4 * 9)
    assert torch.allclose(A, expected_A, atol=1e-12) and torch.allclose(G, expected_G, atol=1e-12)


def test_conv_layer_output_gradients_come_from_the_network():
    """curvature()'s per-layer g are the gradients of Σ_n δ_n·logits_n with respect to the layer outputs."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x, y = torch.randn(5, 1, 6, 6), torch.randint(0, 3, (5,))
    _, _, factors = curvature(model, params_of(model), {}, x, y, fisher="empirical")
    out = model[0](x)
    logits = model[3](model[2](model[1](out)))
    (delta,) = logit_gradients(logits, y, "empirical")
    (g,) = torch.autograd.grad(logits, out, grad_outputs=delta)
    assert torch.allclose(factors["0"][1], layer_factors(model[0], x, [g])[1], atol=1e-12)


def test_preconditioned_step_equals_the_explicit_inverse():
    torch.manual_seed(5)
    A = (lambda m: m @ m.T)(torch.randn(4, 4))
    G = (lambda m: m @ m.T)(torch.randn(3, 3))
    gw, gb = torch.randn(3, 3), torch.randn(3)
    damping = 0.3
    A_inv, G_inv = damped_inverses(A, G, damping)
    dw, db = precondition(gw, gb, A_inv, G_inv)
    pi = ((torch.trace(A) / 4) / (torch.trace(G) / 3)).sqrt()
    damped = torch.kron(A + pi * damping ** 0.5 * torch.eye(4), G + damping ** 0.5 / pi * torch.eye(3))
    expected = torch.linalg.solve(damped, vec(torch.cat([gw, gb[:, None]], 1)))
    assert torch.allclose(vec(torch.cat([dw, db[:, None]], 1)), expected, atol=1e-10)


def test_adaptation_with_batchnorm_follows_the_formulas_and_leaves_the_model_alone():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 4))
    x, y = torch.randn(12, 1, 6, 6), torch.randint(0, 4, (12,))
    task = SupervisedTask(x, y, batch_size=12)
    before = params_of(model)
    trajectory = kfac_adapt(model, task, F.cross_entropy, num_steps=1, lr=0.2, damping=0.1, fisher="exact",
                            other_lr=0.05)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    # one step by hand: the first factors are the batch's own (ε_1 = 0)
    loss, gradients, factors = curvature(model, before, {n: b.clone() for n, b in model.named_buffers()}, x, y,
                                         fisher="exact")
    assert trajectory.losses[0] == pytest.approx(float(loss))
    for layer in ("0", "4"):
        dw, db = precondition(gradients[f"{layer}.weight"], gradients[f"{layer}.bias"],
                              *damped_inverses(*factors[layer], 0.1))
        assert torch.allclose(trajectory.final_params[f"{layer}.weight"], before[f"{layer}.weight"] - 0.2 * dw)
        assert torch.allclose(trajectory.final_params[f"{layer}.bias"], before[f"{layer}.bias"] - 0.2 * db)
    assert torch.allclose(trajectory.final_params["1.weight"], before["1.weight"] - 0.05 * gradients["1.weight"])


def test_learner_adapts_and_rejects_bad_settings():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
    learner = KFACLearner(model, F.cross_entropy, InnerLoop(lr=0.1, steps=30), kfac_lr=0.3, kfac_damping=1e-2)
    trajectory = learner.adapt(SupervisedTask(x, y, batch_size=20))
    assert trajectory.losses[-1] < trajectory.losses[0]
    with pytest.raises(ValueError, match="fisher"):
        KFACLearner(model, F.cross_entropy, kfac_fisher="true")
    with pytest.raises(ValueError, match="damping"):
        damped_inverses(torch.eye(2), torch.eye(2), -1.0)


def test_factors_agree_with_curvlinops_on_the_omniglot_network():
    """The same factors from a maintained library, where it is installed (it is not a dependency: see the module
    docstring of warpkit.engine.kfac): curvlinops' K-FAC with the exact ("type-2") Fisher, weight and bias joint."""
    curvlinops = pytest.importorskip("curvlinops")
    torch.manual_seed(8)
    net = omniglot_net_factory(ways=5, filters=4)(warp="none").double()
    x, y = torch.randn(10, 1, 28, 28), torch.randint(0, 5, (10,))
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    operator = curvlinops.KFACLinearOperator(net, nn.CrossEntropyLoss(), [p for m in layers for p in m.parameters()],
                                             [(x, y)], fisher_type="type-2", check_deterministic=False,
                                             separate_weight_and_bias=False)
    matrix = torch.as_tensor(operator @ torch.eye(operator.shape[1]))
    _, _, factors = curvature(net, params_of(net), {n: b.clone() for n, b in net.named_buffers()}, x, y,
                              fisher="exact")
    start = 0
    for name, module in net.named_modules():
        if module not in layers:
            continue
        A, G = factors[name]
        out, columns = G.shape[0], A.shape[0]
        # curvlinops orders a layer's entries as [W row by row, b]: W̄'s entries (o, d) with d < columns − 1, then b
        order = [o * columns + d for o in range(out) for d in range(columns - 1)] + [o * columns + columns - 1
                                                                                     for o in range(out)]
        ours = torch.kron(G, A)[order][:, order]  # rows of W̄ stacked: (G ⊗ A)
        block = matrix[start:start + len(order), start:start + len(order)]
        assert torch.allclose(block, ours, rtol=1e-8, atol=1e-12 * float(ours.abs().max())), name
        start += len(order)
