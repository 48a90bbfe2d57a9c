"""Notebook 04 (Omniglot, Warp-Leap against the baselines), executed at the fast size: every method must beat
chance, the meta-learned methods must beat no pretraining, the records must be complete and consistent, the
figures saved, the data source named, and the run must fit its budget."""

from __future__ import annotations

import json

import pytest

from warpkit.experiments.omniglot import METHODS_COMPARED, SIZES, record_name

EXPECTED_FIGURES = {
    "03_alphabets.png", "03_task_batch.png", "03_meta_training.png", "03_accuracy_vs_alphabets.png",
    "03_adaptation_curves.png", "03_paper_table.png", "03_replay_speed.png",
}
META_LEARNED = [m for m in METHODS_COMPARED if m != "no-pretraining"]
#: CPU seconds of the kernel at the fast size (one torch thread): the wall time a quiet machine would take.
FAST_BUDGET_CPU_SECONDS = 150


@pytest.fixture(scope="module")
def lesson(execute_notebook):
    return execute_notebook("04_omniglot_warp_leap")


@pytest.mark.notebook
def test_every_method_beats_chance(lesson):
    r = lesson.records
    for method in METHODS_COMPARED:
        assert r[f"acc_{record_name(method)}"] > r["chance"] + 0.05, (method, r)


@pytest.mark.notebook
def test_meta_learned_methods_beat_no_pretraining(lesson):
    r = lesson.records
    # at the largest number of training alphabets: Warp-Leap and Leap (the records the issue names) ...
    for method in ("warp-leap", "leap"):
        assert r[f"acc_{record_name(method)}"] > r["acc_no_pretraining"], (method, r)
    # ... and every meta-learned method averaged over all numbers of alphabets and seeds of the run (one test
    # alphabet image is 0.5 % at this size, so single cells are noisy)
    for method in META_LEARNED:
        assert r[f"acc_mean_{record_name(method)}"] > r["acc_mean_no_pretraining"], (method, r)


@pytest.mark.notebook
def test_records_are_complete_and_consistent(lesson):
    r = lesson.records
    fast = SIZES["fast"]
    assert r["size"] == "fast" and r["seed"] == 0 and r["alphabets_largest"] == fast.largest_n
    assert r["chance"] == pytest.approx(1 / fast.ways)
    assert r["data_source"] in ("omniglot", "glyphs")
    for name in ("acc_warp_leap", "acc_leap", "acc_reptile", "acc_no_pretraining"):
        assert 0 <= r[name] <= 1
    assert r["theta_parameters"] > 0 and r["phi_parameters"] > 0
    assert r["identity_warp_max_difference"] < 1e-5  # identity warps: plain SGD before meta-training
    assert 0 < r["seconds_per_meta_iteration"] < r["seconds"]
    assert r["replay_speedup_in_meta_iteration"] == pytest.approx(
        r["seconds_meta_iteration_one_point"] / r["seconds_meta_iteration_batched"], rel=0.01)
    assert r["replay_speedup"] > 0


@pytest.mark.notebook
def test_figures_are_saved(lesson):
    assert EXPECTED_FIGURES <= {p.name for p in lesson.figures()}


@pytest.mark.notebook
def test_the_data_source_is_announced(lesson):
    text = json.dumps(json.loads(lesson.path.read_text(encoding="utf-8"))["cells"])
    if lesson.records["data_source"] == "glyphs":
        assert "NOT OMNIGLOT" in text
    else:
        assert "Data: Omniglot" in text and "NOT OMNIGLOT" not in text


@pytest.mark.notebook
def test_fast_size_fits_its_budget(lesson):
    assert lesson.records["cpu_seconds"] < FAST_BUDGET_CPU_SECONDS, (
        f"notebook 04 used {lesson.records['cpu_seconds']} CPU seconds at the fast size "
        f"(budget {FAST_BUDGET_CPU_SECONDS} s; wall time {lesson.records['seconds']} s)"
    )
