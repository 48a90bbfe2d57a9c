"""Geometry helpers against independent references: finite differences, hand-derived linear-warp metrics,
and the first-order identity of Flennerhag et al., 2020, Section 2."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from warpkit.engine import geometry as geo
from warpkit.experiments import mountains
from warpkit.engine.warp import ResidualMLPWarp


@pytest.fixture(autouse=True)
def _double_precision():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


def _random_residual_warp(seed=0, scale=0.5):
    torch.manual_seed(seed)
    warp = ResidualMLPWarp(2, hidden=30, num_hidden_layers=1, activation="tanh").double()
    with torch.no_grad():  # leave the identity so the Jacobian varies with θ
        last = warp.residual[-1]
        last.weight.normal_(0, scale)
        last.bias.normal_(0, 0.1)
    return warp


def _finite_difference_jacobian(f, x, eps=1e-6):
    x = x.detach().numpy().astype(np.float64)
    n = x.size
    jac = np.zeros((n, n))
    for b in range(n):
        e = np.zeros(n)
        e[b] = eps
        plus = f(torch.tensor(x + e)).detach().numpy()
        minus = f(torch.tensor(x - e)).detach().numpy()
        jac[:, b] = (plus - minus) / (2 * eps)
    return jac


def test_jacobian_matches_finite_differences_for_mlp_warp():
    warp = _random_residual_warp()
    points = torch.randn(7, 2)
    jac = geo.jacobian(warp, points)
    assert jac.shape == (7, 2, 2)
    for i in range(7):
        reference = _finite_difference_jacobian(warp, points[i])
        np.testing.assert_allclose(jac[i].detach().numpy(), reference, atol=1e-7)
    # the warp is genuinely non-linear: its Jacobian differs between points
    assert (jac[0] - jac[1]).abs().max() > 1e-2


def test_jacobian_of_a_single_point_and_of_plane_warp():
    warp = geo.PlaneWarp(strength=2.0, rotation=0.3, shear=0.4, nonlinearity=1.2)
    point = torch.tensor([0.3, -0.8])
    jac = geo.jacobian(warp, point)
    assert jac.shape == (2, 2)
    np.testing.assert_allclose(jac.numpy(), _finite_difference_jacobian(warp, point), atol=1e-7)
    # a twist has det 1, so det J = det A = strength
    assert torch.linalg.det(jac).item() == pytest.approx(2.0, rel=1e-10)


def test_linear_warp_metric_is_AAT_and_ellipse_axes_are_singular_vectors():
    matrix = torch.tensor([[2.0, 1.0], [0.5, -1.5]])
    warp = geo.linear_warp(matrix, bias=[0.3, -0.2])
    thetas = torch.randn(5, 2)
    inverse = geo.inverse_metric(warp, thetas)
    for i in range(5):  # hand-derived: J = A everywhere, so G⁻¹ = AAᵀ and G = (AAᵀ)⁻¹
        np.testing.assert_allclose(inverse[i].numpy(), (matrix @ matrix.T).numpy(), atol=1e-12)
    np.testing.assert_allclose(geo.metric(warp, thetas)[0].numpy(),
                               np.linalg.inv((matrix @ matrix.T).numpy()), atol=1e-12)
    ellipses = geo.metric_ellipses(warp, thetas)
    u, s, _ = np.linalg.svd(matrix.numpy())
    np.testing.assert_allclose(ellipses.lengths[0].numpy(), s, atol=1e-12)
    for k in range(2):  # singular vectors up to sign
        assert abs(abs(float(ellipses.axes[0, :, k] @ torch.tensor(u[:, k]))) - 1) < 1e-12
    np.testing.assert_allclose(ellipses.centres.numpy(), (thetas @ matrix.T + torch.tensor([0.3, -0.2])).numpy())
    # every outline point v satisfies (v - c)ᵀ G (v - c) = 1
    outline = ellipses.outlines(scale=1.0, num=17)[0] - ellipses.centres[0]
    quad = torch.einsum("pi,ij,pj->p", outline, torch.linalg.inv(matrix @ matrix.T), outline)
    np.testing.assert_allclose(quad.numpy(), 1.0, atol=1e-10)


def test_metric_refuses_a_degenerate_warp():
    warp = geo.linear_warp([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ValueError, match="degenerate"):
        geo.metric(warp, torch.zeros(1, 2))


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        geo.jacobian(lambda x: x, torch.zeros(2, 2, 2))
    with pytest.raises(TypeError, match="callable"):
        geo.jacobian(3.0, torch.zeros(2))
    with pytest.raises(ValueError, match="R\\^n to R\\^n|R\\^2 to R\\^2"):
        geo.warp_points(lambda x: x[:1], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="strength"):
        geo.PlaneWarp(strength=0.0)
    with pytest.raises(ValueError, match="lr"):
        geo.gradient_descent_path(lambda x: (x**2).sum(), torch.zeros(2), lr=-1.0, steps=3)


def test_riemannian_step_is_the_first_order_effect_of_warped_gd():
    """Ω(θ − αJᵀ∇L) − (γ − αJJᵀ∇L) = O(α²): halving α divides the gap by ~4."""
    warp = _random_residual_warp(seed=1)
    loss = mountains.QuadraticBowl(condition=5.0, angle=0.4, centre=(1.0, -0.5))
    theta = torch.tensor([0.4, 0.7])
    gaps = [geo.one_step_gap(loss, warp, theta, lr) for lr in (0.08, 0.04, 0.02, 0.01)]
    ratios = [a / b for a, b in zip(gaps, gaps[1:])]
    assert all(3.5 < r < 4.5 for r in ratios), (gaps, ratios)

    # riemannian_gradient_step against a hand computation for a linear warp
    matrix = torch.tensor([[1.0, 0.5], [0.0, 2.0]])
    gamma, gradient = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    stepped = geo.riemannian_gradient_step(gamma, gradient, matrix @ matrix.T, lr=0.1)
    expected = gamma - 0.1 * torch.tensor([[1.25, 1.0], [1.0, 4.0]]) @ gradient
    np.testing.assert_allclose(stepped.numpy(), expected.numpy(), atol=1e-12)


def test_warped_and_riemannian_paths_agree_to_second_order():
    warp = geo.PlaneWarp(strength=1.5, rotation=0.5, shear=0.3, nonlinearity=1.0)
    loss = mountains.QuadraticBowl(condition=4.0, angle=-0.3, centre=(0.5, 0.2))
    theta0 = torch.tensor([-1.5, 1.0])
    gaps = []
    for lr in (0.01, 0.005, 0.0025):  # a fixed number of steps: the gap is a sum of K one-step O(α²) terms
        _, warped = geo.warped_descent_path(loss, warp, theta0, lr, steps=5)
        riemannian = geo.riemannian_descent_path(loss, warp, warped[0], lr, steps=5, theta0=theta0)
        gaps.append(geo.path_gap(warped, riemannian))
    assert gaps[0] > 1e-6
    assert 3.0 < gaps[0] / gaps[1] < 5.0 and 3.0 < gaps[1] / gaps[2] < 5.0, gaps
    # and a linear warp gives identical paths (the O(α²) term vanishes)
    linear = geo.linear_warp([[1.2, 0.3], [-0.2, 0.8]])
    _, warped = geo.warped_descent_path(loss, linear, theta0, 0.05, steps=20)
    riemannian = geo.riemannian_descent_path(loss, linear, warped[0], 0.05, steps=20)
    assert geo.path_gap(warped, riemannian) < 1e-10


def test_identity_warp_gives_plain_gradient_descent():
    warp = ResidualMLPWarp(2, hidden=30).double()
    loss = mountains.QuadraticBowl(condition=8.0, angle=0.2)
    start = torch.tensor([1.0, 1.5])
    plain = geo.gradient_descent_path(loss, start, 0.1, 15)
    _, warped = geo.warped_descent_path(loss, warp, start, 0.1, 15)
    assert geo.path_gap(plain, warped) == 0.0
    # and plain GD decreases this convex loss
    assert loss(plain[-1]) < loss(plain[0])


def test_invert_warp_recovers_theta():
    warp = geo.PlaneWarp(strength=0.7, rotation=1.0, shear=-0.5, nonlinearity=2.0)
    theta = torch.tensor([0.3, -1.1])
    recovered = geo.invert_warp(warp, warp(theta))
    np.testing.assert_allclose(recovered.numpy(), theta.numpy(), atol=1e-8)
    with pytest.raises(RuntimeError, match="invertible"):
        geo.invert_warp(lambda t: t**2, torch.tensor([-1.0, -1.0]), steps=20)


def test_gradient_field_and_grid_lines():
    matrix = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    warp = geo.linear_warp(matrix)
    loss = mountains.QuadraticBowl(condition=1.0, angle=0.0)  # ∇L(γ) = γ
    points = torch.tensor([[1.0, 1.0], [-2.0, 0.5]])
    np.testing.assert_allclose(geo.gradient_field(loss, points).numpy(), -points.numpy())
    np.testing.assert_allclose(geo.gradient_field(loss, points, warp=warp).numpy(),
                               -(points @ (matrix @ matrix.T)).numpy(), atol=1e-10)
    lines = geo.warped_grid_lines(warp, (-1, 1, -1, 1), num_lines=3, points_per_line=5)
    assert len(lines) == 6
    np.testing.assert_allclose(lines[0][:, 0].numpy(), -2.0)  # θ₁ = -1 maps to γ₁ = -2
    np.testing.assert_allclose(lines[3][:, 1].numpy(), -0.5)


def test_peaks_is_matlab_peaks_with_the_corrected_third_term():
    # MATLAB: peaks(0, 0) = 3 e^{-1} - 1/3 e^{-1}; peaks(1, -1) uses e^{-(u1+1)^2 - u2^2} in the third term
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-0.5, 0.25]])
    u1, u2 = x[:, 0], x[:, 1]
    reference = (3 * (1 - u1) ** 2 * torch.exp(-u1**2 - (u2 + 1) ** 2)
                 - 10 * (u1 / 5 - u1**3 - u2**5) * torch.exp(-u1**2 - u2**2)
                 - 1 / 3 * torch.exp(-(u1 + 1) ** 2 - u2**2))
    np.testing.assert_allclose(mountains.peaks(x).numpy(), reference.numpy(), atol=1e-12)
    assert mountains.peaks(torch.zeros(2)).item() == pytest.approx(3 * math.exp(-1) - math.exp(-1) / 3)
    # the printed typo (u1 twice in the third term) is a different function: check we do not compute it
    x = torch.tensor([1.0, -0.5])
    typo_third = -1 / 3 * math.exp(-(1.0 + 1) ** 2 - 1.0**2)
    corrected_third = -1 / 3 * math.exp(-(1.0 + 1) ** 2 - 0.5**2)
    first_two = mountains.peaks(x).item() - corrected_third
    assert mountains.peaks(x).item() == pytest.approx(first_two + corrected_third)
    assert abs((first_two + typo_third) - mountains.peaks(x).item()) > 1e-3
    # shift and amplitudes
    shifted = mountains.peaks(torch.tensor([1.5, 0.5]), amplitudes=(3.0, 10.0, 1 / 3), shift=(0.5, 0.5))
    assert shifted.item() == pytest.approx(mountains.peaks(torch.tensor([1.0, 0.0])).item())


def test_mountain_family_surfaces_and_engine_task():
    family = mountains.MountainFamily()
    surfaces = family.sample(3, seed=7)
    again = family.sample(3, seed=7)
    assert torch.equal(surfaces[0].params, again[0].params)  # seeded
    grid = geo.regular_grid(family.extent, 121).reshape(-1, 2)
    for surface in surfaces:
        values = surface(grid)
        assert values.min() >= -1e-6  # offset so that the minimum on the domain is 0 ...
        assert abs(float(surface(surface.minimiser))) < 1e-8  # ... attained at the minimiser
        np.testing.assert_allclose(mountains.mountain_value(grid[:5], surface.params).numpy(), surface(grid[:5]).numpy())
        a, c = surface.amplitudes, surface.shift
        assert torch.all((a >= torch.tensor([1.5, 5.0, 1 / 6]) - 1e-9) & (a <= torch.tensor([4.5, 15.0, 0.5]) + 1e-9))
        assert torch.all(c.abs() <= 1.0)
    with pytest.raises(ValueError, match="amplitude_jitter"):
        mountains.MountainFamily(amplitude_jitter=1.5)

    # the engine adapting a WarpedPoint on a SurfaceTask walks the same path as the reference loop
    from warpkit.engine.adapt import adapt

    model = mountains.WarpedPoint(init=(0.3, -0.4))
    with torch.no_grad():
        model.warp.residual[-1].weight.normal_(0, 0.3)
    trajectory = adapt(model, mountains.SurfaceTask(surfaces[0]), mountains.surface_loss, num_steps=5, lr=0.1)
    thetas, _ = geo.warped_descent_path(surfaces[0], model.omega(), torch.tensor([0.3, -0.4]), 0.1, 5)
    engine = torch.stack([p["theta"] for p in trajectory.params] + [trajectory.final_params["theta"]])
    np.testing.assert_allclose(engine.numpy(), thetas.numpy(), atol=1e-10)
    batched = mountains.batched_descent_paths(model.omega(), torch.tensor([0.3, -0.4]), surfaces[:1], 0.1, 5)[0]
    np.testing.assert_allclose(batched.numpy(), model.omega()(thetas).detach().numpy(), atol=1e-10)
