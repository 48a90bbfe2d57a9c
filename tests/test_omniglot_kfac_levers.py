"""K-FAC in the Omniglot experiment (a method with nothing to meta-train, adapting by warpkit.engine.kfac) and the
lever study's table (warpkit.experiments.omniglot_levers): rows, means and paired intervals computed by hand from
unit files, warp-only settings borrowing the base baselines, and the committed study and K-FAC files kept current."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from warpkit.engine.baselines import make_method
from warpkit.engine.kfac import KFACLearner
from warpkit.experiments import omniglot
from warpkit.experiments import omniglot_levers as levers
from warpkit.kit.notebook import REPO_ROOT

TINY = omniglot.OmniglotConfig(
    ways=3, train_images=15, batch_size=6, augment=False, test_alphabets=2, test_repeats=1, alphabet_counts=(1,),
    seeds=(0,), data_source="glyphs", filters=4, inner_steps=3, meta_iterations=2, meta_batch_size=2,
    warp_lr=0.01, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam", maml_init_lr=0.01, maml_steps=2,
    replay_chunk_size=4, replay="batched", validation_alphabets=1, validation_every=1, checkpoint_every=1,
    methods=("kfac", "no-pretraining"),
)


@pytest.fixture(scope="module")
def kfac_sweep():
    torch.set_num_threads(1)
    experiment = omniglot.OmniglotExperiment(TINY)
    return experiment, experiment.run(show_progress=False)


def test_kfac_is_a_registered_method_with_its_settings(kfac_sweep):
    experiment, _ = kfac_sweep
    learner = experiment.build("kfac", 0)
    assert isinstance(learner, KFACLearner)
    assert (learner.kfac_lr, learner.kfac_damping, learner.kfac_fisher) == tuple(omniglot.KFAC_SETTINGS.values())
    plain = make_method("kfac", experiment.model_factory, omniglot.loss_fn, seed=0)
    assert isinstance(plain, KFACLearner) and "kfac" not in omniglot.METHODS_COMPARED


def test_kfac_starts_where_no_pretraining_starts_and_adapts_differently(kfac_sweep):
    experiment, sweep = kfac_sweep
    kfac, plain = sweep.get("kfac", 1, 0), sweep.get("no-pretraining", 1, 0)
    assert kfac.meta_history == [] and kfac.validation_curve == []  # nothing meta-trained, nothing validated
    assert kfac.adaptation_losses[0] == pytest.approx(plain.adaptation_losses[0])  # the same random θ₀ and batch
    assert kfac.adaptation_losses[1] != pytest.approx(plain.adaptation_losses[1])  # K-FAC's step is not SGD's
    assert 0 <= kfac.accuracy <= 1


def _write_unit(out, setting, seed, accuracies):
    runs = [{"method": m, "seed": seed, "alphabets": 4, "accuracy": a / 100} for m, a in accuracies.items()]
    levers.unit_path(out, setting, seed).write_text(json.dumps({"setting": setting, "runs": runs}))


def test_lever_rows_are_means_stds_and_paired_intervals_computed_by_hand(tmp_path):
    warp, reptile = [70.0, 66.0, 71.0], [65.0, 64.0, 62.0]
    for seed in range(3):
        _write_unit(tmp_path, "fixed", seed, {"warp-leap": warp[seed], "reptile": reptile[seed]})
    _write_unit(tmp_path, "chunk25", 0, {"warp-leap": 72.0})
    _write_unit(tmp_path, "chunk25", 1, {"warp-leap": 68.0})
    rows = {row["setting"]: row for row in levers.lever_table(tmp_path)}
    fixed = rows["fixed"]
    differences = np.array(warp) - np.array(reptile)
    half = 4.303 * differences.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert fixed["focus"] == pytest.approx((np.mean(warp), np.std(warp, ddof=1)))
    assert fixed["best"] == "reptile" and fixed["best_stats"] == pytest.approx((np.mean(reptile), np.std(reptile, ddof=1)))
    assert (fixed["interval"]["low"], fixed["interval"]["high"]) == pytest.approx(
        (differences.mean() - half, differences.mean() + half))
    reference = omniglot.read_reference("medium")
    if reference is not None and reference.config == omniglot.SIZES["medium"].as_dict():
        base = {m: {s: 100 * a for s, a in reference.accuracies(m).items()} for m in ("reptile", "leap")}
        best = max(base, key=lambda m: np.mean([base[m][0], base[m][1]]))
        chunk = rows["chunk25"]  # a warp-only lever: its baselines are base's runs at its seeds
        assert chunk["best"] == best and chunk["seeds"] == [0, 1]
        assert chunk["interval"]["mean"] == pytest.approx(np.mean([72.0 - base[best][0], 68.0 - base[best][1]]))
        assert list(rows)[0] == "base" and rows["base"]["seeds"] == sorted(reference.accuracies("warp-leap"))
    text = levers.format_lever_table(levers.lever_table(tmp_path))
    assert f"{np.mean(warp):.1f} ± {np.std(warp, ddof=1):.1f}" in text and "| task resampling |" in text


def test_unit_configurations_change_one_lever_from_the_medium_size():
    medium = omniglot.SIZES["medium"].as_dict()
    for setting, (_, change) in levers.SETTINGS.items():
        config = levers.config_of(setting, 2).as_dict()
        differing = {k for k in medium if config[k] != medium[k]} - {"methods", "seeds"}
        assert differing == set(change), setting
        assert list(config["seeds"]) == [2]
    assert levers.config_of("residual", 0).methods == ("warp-leap",)
    with pytest.raises(ValueError, match="unknown lever setting"):
        levers.config_of("steps1000", 0)


STUDY = REPO_ROOT / "results" / "omniglot_levers"


@pytest.mark.skipif(not (STUDY / "TABLE.md").exists(), reason="no committed lever study")
def test_committed_lever_table_is_generated_from_the_committed_units():
    assert levers.format_lever_table(levers.lever_table(STUDY)) in (STUDY / "TABLE.md").read_text()
    for path in STUDY.glob("*_seed*.json"):
        record = json.loads(path.read_text())
        assert record["config"] == json.loads(json.dumps(levers.config_of(record["setting"], record["seed"]).as_dict()))


KFAC_RESULTS = REPO_ROOT / "results" / "omniglot_kfac_medium.json"


@pytest.mark.skipif(not KFAC_RESULTS.exists(), reason="no committed K-FAC run")
def test_committed_kfac_run_matches_the_current_settings_and_its_grid():
    record = json.loads(KFAC_RESULTS.read_text())
    config = omniglot.SIZES["medium"].replace(methods=("kfac",))
    assert record["config"] == json.loads(json.dumps(config.as_dict())), "stale: re-run benchmarks/omniglot_kfac.py"
    assert record["kfac_settings"] == omniglot.KFAC_SETTINGS
    best = max(record["grid"], key=lambda s: s["validation_accuracy"])
    assert (best["kfac_lr"], best["kfac_damping"]) == (omniglot.KFAC_SETTINGS["kfac_lr"],
                                                      omniglot.KFAC_SETTINGS["kfac_damping"])
    assert sorted(r["seed"] for r in record["runs"]) == list(config.seeds)
