"""The meta-learning introduction at the fast size: the from-scratch WarpGrad step equals MetaLearner's, and
the numbers its text is generated from are recorded."""

import pytest

pytestmark = pytest.mark.notebook

FIGURES = ["02_sine_tasks", "02_init_learners", "02_warp_adaptation"]
METHODS = ("maml", "fomaml", "reptile", "leap")


@pytest.fixture(scope="module")
def notebook(execute_notebook):
    return execute_notebook("02_meta_learning")


def test_runs_fast_and_saves_its_figures(notebook):
    assert notebook.seconds < 180, f"fast size took {notebook.seconds:.0f} s"
    saved = {path.stem for path in notebook.figures()}
    assert set(FIGURES) <= saved, f"missing figures: {sorted(set(FIGURES) - saved)}"


def test_from_scratch_warpgrad_equals_metalearner(notebook):
    records = notebook.records
    # equal to float64 rounding, for a step that moves the parameters by far more than the tolerance
    assert records["scratch_vs_metalearner_max_abs_diff"] < 1e-10, records
    assert records["scratch_step_size_max_abs"] > 1e-4, records


def test_toy_initialisation_learners_improve_on_the_start(notebook):
    records = notebook.records
    for method in METHODS:
        assert 0 < records[f"toy_adapted_loss_{method}"] < records["toy_adapted_loss_start"], method


def test_meta_learned_warps_beat_plain_sgd_on_held_out_sine_tasks(notebook):
    records = notebook.records
    assert records["sine_held_out_loss_warped"] < 0.5 * records["sine_held_out_loss_plain_sgd"], records
