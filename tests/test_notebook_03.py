"""Notebook 03 (the geometry of warping) at the fast size: the recorded numbers the lesson is about, and its figures."""

import pytest

pytestmark = pytest.mark.notebook

FIGURES = ["03_metric_pictures", "03_warp_explorer", "03_riemannian_paths", "03_descent_explorer",
           "03_mountain_family", "03_mountain_paths", "03_mountain_geometry", "03_mountain_meta_training"]


@pytest.fixture(scope="module")
def notebook_03(execute_notebook):
    return execute_notebook("03_riemannian_geometry")


def test_notebook_03_runs_fast_and_saves_its_figures(notebook_03):
    # budget: 120 s on a quiet 2-core machine; 240 s leaves room for a loaded one (measured ~170-270 s under load 5-7)
    assert notebook_03.seconds < 240, f"fast size took {notebook_03.seconds:.0f} s"
    saved = {path.stem for path in notebook_03.figures()}
    assert set(FIGURES) <= saved, f"missing figures: {sorted(set(FIGURES) - saved)}"


def test_warped_gd_traces_riemannian_gd(notebook_03):
    records = notebook_03.records
    # the paths agree to first order: a small gap at α = 0.1 that shrinks as α² (log-log slope ≈ 2)
    assert 0 < records["riemann_path_max_gap"] < 0.2
    assert 1.7 < records["riemann_gap_slope"] < 2.3


def test_meta_learned_warp_wins_on_held_out_mountains(notebook_03):
    records = notebook_03.records
    assert records["mountain_num_held_out"] >= 20
    assert records["mountain_final_loss_warp"] <= 0.8 * records["mountain_final_loss_sgd"], records


def test_the_start_control_and_the_pinned_start_variant_are_recorded(notebook_03):
    records = notebook_03.records
    # the control (plain SGD from WarpGrad's start) and the variant in which the warp cannot move the start
    for name in ("mountain_final_loss_sgd_from_warp_start", "mountain_random_start_loss_warp",
                 "mountain_random_start_loss_sgd"):
        assert records[name] >= 0, name
    # same starts, steps and step size: before any meta-training the two would be equal; they must differ now
    assert records["mountain_random_start_loss_warp"] != records["mountain_random_start_loss_sgd"]
