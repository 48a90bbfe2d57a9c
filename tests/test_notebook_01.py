"""Notebook 01 (preconditioning), executed at the fast size: its recorded values must make sense."""

from __future__ import annotations

import math

import pytest

EXPECTED_FIGURES = {
    "01_descent_paths.png", "01_steps_to_tolerance.png", "01_warp_identity.png", "01_training_through_warp.png",
    "01_nonlinear_preconditioner.png", "01_riemannian_step.png",
}


@pytest.fixture(scope="module")
def lesson(execute_notebook):
    return execute_notebook("01_preconditioning")


@pytest.mark.notebook
def test_preconditioning_beats_gradient_descent(lesson):
    r = lesson.records
    assert r["steps_preconditioned"] < r["steps_gd"]
    assert r["steps_preconditioned"] == 1, "Newton's step P = H⁻¹ solves a quadratic in one step"
    assert r["steps_diagonal"] < r["steps_gd"]
    # GD with α = 1/λ_max contracts the slowest mode by 1 − 1/κ per step: ln(tol) / (2 ln(1 − 1/κ)) steps
    kappa, tol = r["condition_number"], 1e-6
    assert kappa == pytest.approx(100.0)
    estimate = math.log(tol) / (2 * math.log(1 - 1 / kappa))
    assert 0.6 * estimate <= r["steps_gd"] <= 1.05 * estimate


@pytest.mark.notebook
def test_steps_grow_with_the_condition_number_only_without_preconditioning(lesson):
    sweep = lesson.records["steps_versus_condition"]
    kappas, plain = sweep["condition_numbers"], sweep["none"]
    assert kappas == sorted(kappas) and kappas[-1] >= 1000
    assert plain == sorted(plain) and plain[-1] > 50 * plain[0]
    assert set(sweep["inverse Hessian"]) == {1}
    assert max(sweep["diagonal"]) <= 1.5 * min(sweep["diagonal"]), "Jacobi leaves only the fixed correlation"


@pytest.mark.notebook
def test_warp_identity_holds_to_rounding_error(lesson):
    r = lesson.records
    assert r["warp_identity_max_error"] <= 1e-10
    assert r["warped_training_max_error"] <= 1e-10
    assert r["nonlinear_warp_identity_max_error"] <= 1e-10


@pytest.mark.notebook
def test_only_the_nonlinear_warp_changes_the_preconditioner_with_the_input(lesson):
    assert lesson.records["preconditioner_variation_linear"] < 1e-12
    assert lesson.records["preconditioner_variation_residual"] > 0.1


@pytest.mark.notebook
def test_warped_step_is_a_riemannian_step_up_to_second_order(lesson):
    r = lesson.records
    assert 1.8 <= r["riemann_error_slope"] <= 2.2
    assert 0.8 <= r["euclidean_error_slope"] <= 1.2, "against the plain step the error is first order"
    assert 1.7 <= r["riemann_loss_error_slope"] <= 2.5


@pytest.mark.notebook
def test_figures_are_saved_and_the_fast_size_is_fast(lesson):
    saved = {path.name for path in lesson.figures()}
    assert EXPECTED_FIGURES <= saved, f"missing figures: {EXPECTED_FIGURES - saved}"
    assert all(path.stat().st_size > 10_000 for path in lesson.figures())
    assert lesson.records["seed"] == 0
    assert lesson.seconds < 90, f"the fast size took {lesson.seconds:.0f} s (target: under 60 s on 2 idle cores)"
