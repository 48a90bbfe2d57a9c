"""warpkit.experiments.preconditioning against independent references: closed forms, matrix powers, autograd, geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from warpkit.engine import geometry
from warpkit.experiments import preconditioning as pc
from warpkit.viz import preconditioning as draw01
from warpkit.engine.warp import LinearWarp, ResidualMLPWarp

f64 = dict(dtype=torch.float64)


@pytest.mark.parametrize("kappa", [3.0, 10.0, 250.0, 1e4])
def test_quadratic_has_the_asked_condition_number_and_jacobi_leaves_the_correlation(kappa):
    quadratic = pc.ill_conditioned_quadratic(kappa, correlation=0.5)
    assert quadratic.condition_number == pytest.approx(kappa, rel=1e-9)
    jacobi = pc.preconditioner(quadratic, "diagonal") @ quadratic.hessian
    eigenvalues = np.sort(np.linalg.eigvals(jacobi).real)
    assert eigenvalues[-1] / eigenvalues[0] == pytest.approx(3.0, rel=1e-9)  # (1 + ρ) / (1 − ρ)


def test_quadratic_refuses_unreachable_condition_numbers():
    with pytest.raises(ValueError, match="at least 3"):
        pc.ill_conditioned_quadratic(2.0, correlation=0.5)
    with pytest.raises(ValueError, match="correlation"):
        pc.ill_conditioned_quadratic(10.0, correlation=1.0)


def test_descent_matches_the_matrix_power_closed_form():
    quadratic = pc.ill_conditioned_quadratic(40.0, minimum=(0.3, -0.2))
    start = np.array([-1.0, 0.7])
    for name in pc.PRECONDITIONER_NAMES:
        P = pc.preconditioner(quadratic, name)
        run = pc.preconditioned_descent(quadratic, start, P, steps=25)
        step = np.eye(2) - run.lr * P @ quadratic.hessian
        expected = quadratic.minimum + np.linalg.matrix_power(step, 25) @ (start - quadratic.minimum)
        np.testing.assert_allclose(run.points[-1], expected, atol=1e-12)
        assert run.lr == pytest.approx(1 / max(np.linalg.eigvals(P @ quadratic.hessian).real))


def test_newton_takes_one_step_and_gradient_descent_about_kappa_steps():
    quadratic = pc.ill_conditioned_quadratic(200.0)
    newton = pc.preconditioned_descent(quadratic, (2.0, -1.0), pc.preconditioner(quadratic, "inverse Hessian"), 5)
    np.testing.assert_allclose(newton.points[1], quadratic.minimum, atol=1e-12)
    assert newton.steps_to(1e-12) == 1
    plain = pc.preconditioned_descent(quadratic, (2.0, -1.0), np.eye(2), 100_000, tol=1e-6)
    assert 0.5 * pc.predicted_steps(200.0, 1e-6) < plain.steps_to(1e-6) <= 1.05 * pc.predicted_steps(200.0, 1e-6)


def test_steps_to_tolerance():
    assert pc.steps_to_tolerance([1.0, 0.5, 1e-3, 1e-7], 1e-6) == 3
    with pytest.raises(ValueError, match="run more steps"):
        pc.steps_to_tolerance([1.0, 0.5], 1e-6)


def test_weighted_squared_error_gradient_by_hand_matches_autograd():
    g = torch.Generator().manual_seed(1)
    outputs = torch.randn(5, 3, generator=g, **f64).requires_grad_(True)
    targets, metric = torch.randn(5, 3, generator=g, **f64), pc.random_spd(3, 50.0, g)
    (autograd,) = torch.autograd.grad(pc.weighted_squared_error(outputs, targets, metric), outputs)
    torch.testing.assert_close(autograd, (outputs.detach() - targets) @ metric / 5)
    assert torch.linalg.cond(metric).item() == pytest.approx(50.0, rel=1e-8)


def test_training_through_a_linear_warp_is_preconditioned_descent():
    g = torch.Generator().manual_seed(2)
    inputs, targets = torch.randn(16, 4, generator=g, **f64), torch.randn(16, 3, generator=g, **f64)
    metric = pc.random_spd(3, 10.0, g)
    warp = pc.perturb_warp(LinearWarp(3, bias=False).double(), 0.5, g)
    weight = torch.randn(3, 4, generator=g, **f64)
    T = warp.weight
    gammas, losses = pc.train_through_warp(warp, weight, inputs, targets, metric, lr=0.01, steps=30)
    by_hand, losses_by_hand = pc.preconditioned_effective_descent(T @ weight, inputs, targets, metric, T @ T.T, 0.01, 30)
    torch.testing.assert_close(gammas, by_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(losses, losses_by_hand, rtol=1e-12, atol=0)
    # and it is *not* plain descent on γ (the check can fail)
    plain, _ = pc.preconditioned_effective_descent(T @ weight, inputs, targets, metric, torch.eye(3, **f64), 0.01, 30)
    assert (gammas[-1] - plain[-1]).abs().max() > 1e-3


def test_vec_turns_left_multiplication_into_a_kronecker_product():
    g = torch.Generator().manual_seed(3)
    P, M = torch.randn(3, 3, generator=g, **f64), torch.randn(3, 4, generator=g, **f64)
    torch.testing.assert_close(pc.vec(P @ M), torch.kron(torch.eye(4, **f64), P) @ pc.vec(M))


def test_nonlinear_warp_gradient_by_hand_matches_autograd():
    g = torch.Generator().manual_seed(4)
    warp = pc.perturb_warp(ResidualMLPWarp(3, hidden=8).double(), 0.5, g)
    weight = torch.randn(3, 5, generator=g, **f64).requires_grad_(True)
    inputs, targets = torch.randn(7, 5, generator=g, **f64), torch.randn(7, 3, generator=g, **f64)
    outputs = warp(inputs @ weight.T)
    (autograd,) = torch.autograd.grad(0.5 * ((outputs - targets) ** 2).sum(), weight)
    by_hand = pc.nonlinear_warp_gradient_by_hand(warp, weight.detach(), inputs, outputs.detach() - targets)
    torch.testing.assert_close(autograd, by_hand, rtol=0, atol=1e-12)


def test_preconditioner_variation_is_zero_for_linear_and_identity_warps_only():
    g = torch.Generator().manual_seed(5)
    inputs = torch.randn(20, 2, generator=g, **f64)
    assert pc.preconditioner_variation(pc.perturb_warp(LinearWarp(2).double(), 0.5, g), inputs) < 1e-12
    assert pc.preconditioner_variation(ResidualMLPWarp(2).double(), inputs) == 0.0  # identity at initialisation
    assert pc.preconditioner_variation(pc.perturb_warp(ResidualMLPWarp(2).double(), 0.5, g), inputs) > 0.05


def test_perturb_warp_freezes_and_moves_away_from_the_identity():
    warp = pc.perturb_warp(LinearWarp(3).double(), 0.1, torch.Generator().manual_seed(6))
    assert not any(p.requires_grad for p in warp.parameters())
    assert (warp.weight - torch.eye(3, **f64)).abs().max() > 0.01


def test_step_errors_have_the_orders_of_the_taylor_expansion():
    def warp(theta):  # an analytic non-linear warp of the plane
        return theta + 0.4 * torch.sin(theta.flip(0)) + 0.2 * theta**2

    loss = pc.quadratic_loss(pc.ill_conditioned_quadratic(5.0))
    theta, alphas = torch.tensor([0.3, -0.6], **f64), np.logspace(-4, -1.5, 8)
    errors = pc.step_errors(loss, warp, theta, alphas)
    assert pc.loglog_slope(alphas, errors.riemannian) == pytest.approx(2.0, abs=0.1)
    assert pc.loglog_slope(alphas, errors.euclidean) == pytest.approx(1.0, abs=0.1)
    # geometry.one_step_gap measures the same remainder (in the default dtype, float32: compare at the largest α)
    assert errors.riemannian[-1] == pytest.approx(geometry.one_step_gap(loss, warp, theta, alphas[-1]), rel=1e-3)


def test_loglog_slope_recovers_a_power_law():
    x = np.logspace(-3, 0, 7)
    assert pc.loglog_slope(x, 3.0 * x**2.5) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="positive"):
        pc.loglog_slope(x, x - 0.5)


def test_preconditioning_explorer_redraws_when_a_control_changes():
    import matplotlib

    matplotlib.use("Agg")
    explorer = draw01.PreconditioningExplorer(start=(-1.5, 0.4), steps=10, condition_number=30.0)
    assert explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert explorer.artists["quadratic"].condition_number == pytest.approx(30.0, rel=1e-6)
    plain_final = explorer.artists["descent"].losses[-1]
    explorer.controls["condition_number"].value = 300.0
    assert explorer.artists["quadratic"].condition_number == pytest.approx(300.0, rel=1e-6)
    assert explorer.artists["descent"].losses[-1] > plain_final  # worse conditioning, slower plain descent
    explorer.controls["method"].value = "inverse Hessian"
    last = explorer.artists["descent"]
    np.testing.assert_allclose(last.preconditioner, np.linalg.inv(explorer.artists["quadratic"].hessian))
    assert last.losses[1] == pytest.approx(0.0, abs=1e-20)
    assert len(last.points) == 11 and len(explorer.redraw_ms) == 3


def test_a_warp_that_undoes_the_loss_metric_trains_faster_and_is_preconditioned_descent():
    g = torch.Generator().manual_seed(7)
    inputs = torch.randn(64, 4, generator=g, **f64)
    targets = inputs @ torch.randn(3, 4, generator=g, **f64).T
    metric = pc.random_spd(3, 100.0, g)
    eigenvalues, eigenvectors = torch.linalg.eigh(metric)
    inverse_sqrt = eigenvectors @ torch.diag(eigenvalues**-0.5) @ eigenvectors.T
    gamma_0 = 0.1 * torch.randn(3, 4, generator=g, **f64)
    curves, error = pc.compare_warped_training({"plain": torch.eye(3, **f64), "good": inverse_sqrt}, gamma_0,
                                               inputs, targets, metric, steps=60)
    assert error < 1e-10
    assert curves["plain"][0] == pytest.approx(curves["good"][0].item(), rel=1e-12)  # the same start
    assert curves["good"][-1] < 1e-12 * curves["good"][0] < curves["plain"][-1]
