"""Notebook 02 at the fast size: the recorded numbers the lesson is about, and its figures."""

import pytest

pytestmark = pytest.mark.notebook

FIGURES = ["02_metric_pictures", "02_warp_explorer", "02_riemannian_paths", "02_descent_explorer",
           "02_mountain_family", "02_mountain_paths", "02_mountain_geometry", "02_mountain_meta_training"]


@pytest.fixture(scope="module")
def notebook_02(execute_notebook):
    return execute_notebook("02_riemannian_geometry")


def test_notebook_02_runs_fast_and_saves_its_figures(notebook_02):
    # budget: 120 s on a quiet 2-core machine; 240 s leaves room for a loaded one (measured ~170-270 s under load 5-7)
    assert notebook_02.seconds < 240, f"fast size took {notebook_02.seconds:.0f} s"
    saved = {path.stem for path in notebook_02.figures()}
    assert set(FIGURES) <= saved, f"missing figures: {sorted(set(FIGURES) - saved)}"


def test_warped_gd_traces_riemannian_gd(notebook_02):
    records = notebook_02.records
    # the paths agree to first order: a small gap at α = 0.1 that shrinks as α² (log-log slope ≈ 2)
    assert 0 < records["riemann_path_max_gap"] < 0.2
    assert 1.7 < records["riemann_gap_slope"] < 2.3


def test_meta_learned_warp_wins_on_held_out_mountains(notebook_02):
    records = notebook_02.records
    assert records["mountain_num_held_out"] >= 20
    assert records["mountain_final_loss_warp"] <= 0.8 * records["mountain_final_loss_sgd"], records


def test_the_start_control_and_the_pinned_start_variant_are_recorded(notebook_02):
    records = notebook_02.records
    # the control (plain SGD from WarpGrad's start) and the variant in which the warp cannot move the start
    for name in ("mountain_final_loss_sgd_from_warp_start", "mountain_random_start_loss_warp",
                 "mountain_random_start_loss_sgd"):
        assert records[name] >= 0, name
    # same starts, steps and step size: before any meta-training the two would be equal; they must differ now
    assert records["mountain_random_start_loss_warp"] != records["mountain_random_start_loss_sgd"]
