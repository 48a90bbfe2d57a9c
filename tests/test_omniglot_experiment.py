"""The Omniglot experiment driver (warpkit.experiments.omniglot): the protocol (fixed test alphabets, nested training
sets, fixed task identities with fresh batches, one fresh copy per test task, the same adaptation for every
method), checkpoint/resume of the whole sweep (a resumed sweep gives the numbers of an uninterrupted one; a corrupt
or foreign checkpoint is refused and left untouched), the replay timing, the summaries and the figures.

Everything runs on a tiny synthetic alphabet dataset (random strokes, 28×28) so the tests take seconds."""

from __future__ import annotations

import copy
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from warpkit.kit.checkpoint import CheckpointError  # noqa: E402
from warpkit.kit.sweep import SettingsMismatch  # noqa: E402
from warpkit.data.omniglot import AlphabetDataset  # noqa: E402
from warpkit.experiments.omniglot import (  # noqa: E402
    METHODS_COMPARED,
    PAPER_ACCURACY_25,
    PAPER_WARP_LEAP_BY_ALPHABETS,
    SIZES,
    OmniglotConfig,
    OmniglotExperiment,
    RunResult,
    SweepResults,
    checkpoint_path,
    config_for,
    data_banner,
    describe_parameters,
    sweep_fingerprint,
    warp_vs_plain_at_initialisation,
)
from warpkit.engine.warp import task_parameters, warp_parameters  # noqa: E402

torch.set_num_threads(1)


def synthetic_dataset(alphabets=6, characters=5, source="omniglot", seed=0) -> AlphabetDataset:
    """Alphabets of random characters: each character a few random strokes, each drawer a jittered copy."""
    rng = np.random.default_rng(seed)
    arrays, names = {}, {}
    for a in range(alphabets):
        block = np.zeros((characters, 20, 28, 28), dtype=np.uint8)
        for c in range(characters):
            prototype = np.zeros((28, 28), dtype=np.uint8)
            for _ in range(3):
                row, col = rng.integers(4, 24, size=2)
                prototype[row - 2:row + 2, col - 6:col + 6] = 255 if rng.random() < 0.5 else 0
                prototype[row - 6:row + 6, col - 2:col + 2] = 255
            for d in range(20):
                block[c, d] = np.roll(prototype, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
        arrays[f"Alphabet{a}"] = block
        names[f"Alphabet{a}"] = [f"character{c + 1:02d}" for c in range(characters)]
    return AlphabetDataset(arrays, names, source, description="synthetic test alphabets")


TINY = OmniglotConfig(
    ways=3, train_images=15, batch_size=6, augment=False, test_alphabets=2, test_repeats=1, alphabet_counts=(1, 2),
    seeds=(0,), data_source="omniglot", filters=4, inner_steps=3, meta_iterations=2, meta_batch_size=2,
    warp_lr=0.01, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam", maml_init_lr=0.01, maml_steps=2,
    replay_chunk_size=4, replay="batched", validation_alphabets=1, validation_every=1, checkpoint_every=1,
)


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset()


@pytest.fixture(scope="module")
def experiment(dataset):
    return OmniglotExperiment(TINY, dataset)


@pytest.fixture(scope="module")
def sweep(experiment):
    return experiment.run(show_progress=False)


# ------------------------------------------------------------------------------------------------ configuration
def test_protocol_table_covers_every_setting_and_full_follows_it_field_by_field():
    from dataclasses import fields

    from warpkit.experiments.omniglot import FULL_DEPARTURES, NOT_PROTOCOL, PAPER_PROTOCOL, paper_config

    names = [f.name for f in fields(OmniglotConfig)]
    # every setting is either part of the protocol (with a source) or declared not to be
    assert sorted(set(PAPER_PROTOCOL) | set(NOT_PROTOCOL)) == sorted(names)
    assert not set(PAPER_PROTOCOL) & set(NOT_PROTOCOL)
    for name, setting in PAPER_PROTOCOL.items():
        assert setting.source.strip(), name
    full = SIZES["full"]
    for name, setting in PAPER_PROTOCOL.items():
        if name in FULL_DEPARTURES:  # a departure must be real and say why
            assert getattr(full, name) != setting.value and len(FULL_DEPARTURES[name]) > 20, name
        else:
            assert getattr(full, name) == setting.value, name
    assert set(FULL_DEPARTURES) <= set(PAPER_PROTOCOL)
    assert paper_config() == full.replace(**{k: PAPER_PROTOCOL[k].value for k in FULL_DEPARTURES})


def test_sizes_follow_the_protocol():
    full = SIZES["full"]
    assert (full.ways, full.train_images, full.inner_steps, full.inner_lr) == (20, 15, 100, 0.1)
    assert (full.meta_batch_size, full.meta_iterations, full.filters, full.test_alphabets) == (20, 1000, 64, 10)
    assert full.alphabet_counts == (1, 3, 5, 10, 15, 20, 25) and len(full.seeds) == 10 and full.augment
    assert full.data_source == "omniglot" and full.warp_objective == "exact" and full.maml_steps == 5
    assert (full.replay_chunk_size, full.replay_epochs, full.evaluation_batchnorm) == (1, 1, "running")
    assert (full.maml_init_lr, full.maml_meta_split, full.leap_simplified) == (0.5, "held-out", False)
    assert SIZES["medium"].data_source == "omniglot" and len(SIZES["medium"].seeds) >= 5
    assert SIZES["fast"].data_source == "auto"
    for config in SIZES.values():
        assert set(config.methods) == set(METHODS_COMPARED)
    assert config_for("medium", seed_offset=5).seeds == tuple(5 + s for s in SIZES["medium"].seeds)
    assert config_for("fast", data_source="glyphs").data_source == "glyphs"
    assert config_for("medium") == SIZES["medium"]
    with pytest.raises(ValueError, match="data_source"):
        config_for("fast", data_source="internet")
    with pytest.raises(ValueError, match="unknown size"):
        config_for("huge")


@pytest.mark.parametrize("change, message", [
    ({"ways": 1}, "ways"), ({"train_images": 20}, "train_images"), ({"batch_size": 1000}, "batch_size"),
    ({"alphabet_counts": (3, 1)}, "alphabet_counts"), ({"methods": ("leap", "magic")}, "magic"),
    ({"warp": "none"}, "warp"), ({"data_source": "web"}, "data_source"),
    ({"warp_objective": "second"}, "warp_objective"),
])
def test_bad_configuration_is_refused_clearly(change, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**change)
    with pytest.raises(ValueError, match="no field"):
        TINY.replace(colour="red")


def test_too_few_alphabets_is_refused(dataset):
    with pytest.raises(ValueError, match="2 test \\+ 1 validation \\+ up to 5 training alphabets need 8"):
        OmniglotExperiment(TINY.replace(test_alphabets=2, alphabet_counts=(1, 5)), dataset)


def test_checkpoint_setting():
    assert checkpoint_path("", "medium", 0) is None
    assert checkpoint_path("auto", "fast", 0) is None
    assert checkpoint_path("auto", "medium", 3).endswith("checkpoints/04_omniglot_medium_seed3.pt")
    assert checkpoint_path("/tmp/x.pt", "fast", 0) == "/tmp/x.pt"


def test_size_note_lists_what_differs_from_the_paper():
    from warpkit.experiments.omniglot import FULL_DEPARTURES, differences_from_paper, paper_config, size_note

    assert differences_from_paper(paper_config()) == [] and "the paper's protocol" in size_note(paper_config(), "x")
    # full is compared with the protocol table, not with itself: its departures are listed, with reasons
    full_changes = differences_from_paper(SIZES["full"])
    assert len(full_changes) == len(FULL_DEPARTURES) and "model selection: best (paper: final)" in full_changes
    assert "Why:" in size_note(SIZES["full"], "full")
    changes = differences_from_paper(SIZES["fast"])
    assert f"ways per task: {SIZES['fast'].ways} (paper: 20)" in changes
    assert f"SGD steps per task: {SIZES['fast'].inner_steps} (paper: 100)" in changes
    assert "seeds: 1 (paper: 10)" in changes and "departs" in size_note(SIZES["fast"], "fast")
    assert "batch size: 20 (paper: 128)" in differences_from_paper(SIZES["medium"])


def test_banner_is_loud_for_the_stand_in():
    assert "NOT OMNIGLOT" in data_banner(synthetic_dataset(3, 3, source="glyphs"))
    assert "NOT OMNIGLOT" not in data_banner(synthetic_dataset(3, 3, source="omniglot"))


# ------------------------------------------------------------------------------------------------ the protocol
def test_test_alphabets_are_fixed_and_training_sets_nested(experiment):
    test = set(experiment.test_alphabets)
    assert len(test) == TINY.test_alphabets
    for seed in (0, 1, 7):
        sets = [experiment.training_alphabets(seed, n) for n in (1, 2, 3)]
        for smaller, larger in zip(sets, sets[1:]):
            assert larger[: len(smaller)] == smaller  # nested as n grows
        validation = set(experiment.validation_alphabets(seed))
        assert len(validation) == TINY.validation_alphabets
        assert not test & set(sets[-1]) and not validation & set(sets[-1]) and not validation & test
    with pytest.raises(ValueError, match="between 1 and 3"):
        experiment.training_alphabets(0, 4)  # the 4th non-test alphabet validates
    # a different n or seed never changes the test tasks: they depend on split_seed only
    other = OmniglotExperiment(TINY.replace(alphabet_counts=(1, 3), seeds=(5,)), experiment.dataset)
    assert other.test_alphabets == experiment.test_alphabets
    for a, b in zip(other.test_tasks(), experiment.test_tasks()):
        assert torch.equal(a.characters, b.characters) and torch.equal(a.sample_batch(1)[0], b.sample_batch(1)[0])


def test_training_tasks_keep_their_identity_and_draw_fresh_batches(experiment):
    first, second = experiment.training_tasks(0, 2, 0), experiment.training_tasks(0, 2, 1)
    by_alphabet = {t.alphabet: t for t in first}
    assert sorted(by_alphabet) == sorted(experiment.training_alphabets(0, 2))  # 2 alphabets fill a meta-batch of 2
    for task in second:
        same = by_alphabet[task.alphabet]
        assert torch.equal(task.characters, same.characters)
        assert torch.equal(task.train_drawers, same.train_drawers)
        assert torch.equal(task.train_inputs, same.train_inputs) and task.task_id == task.alphabet
        assert not torch.equal(task.sample_batch(0)[0], same.sample_batch(0)[0])  # fresh batches per iteration
    again = experiment.training_tasks(0, 2, 1)  # a deterministic function of (seed, n, iteration)
    for a, b in zip(again, second):
        assert a.alphabet == b.alphabet and torch.equal(a.sample_batch(2)[0], b.sample_batch(2)[0])


def test_resampled_tasks_draw_new_characters_and_labels_and_multi_head_keeps_fixed_ones(dataset):
    experiment = OmniglotExperiment(TINY.replace(fixed_training_tasks=False), dataset)
    first, second = experiment.training_tasks(0, 1, 0)[0], experiment.training_tasks(0, 1, 1)[0]
    assert first.alphabet == second.alphabet
    assert not torch.equal(first.characters, second.characters)  # 3 of 5 characters, in a new order
    fixed = [experiment.tasks_for("multi-head", 0, 1, i)[0] for i in (0, 1)]
    assert torch.equal(fixed[0].characters, fixed[1].characters)  # one head per alphabet needs fixed labels
    assert torch.equal(experiment.tasks_for("leap", 0, 1, 1)[0].characters, second.characters)


def test_test_alphabets_by_name_or_none(dataset):
    named = OmniglotExperiment(TINY, dataset, test_alphabets=["Alphabet4", "Alphabet0"])
    assert named.test_alphabets == ("Alphabet4", "Alphabet0")
    assert not {"Alphabet4", "Alphabet0"} & set(named.pool)
    none = OmniglotExperiment(TINY, dataset, test_alphabets=None)
    assert none.test_alphabets == () and len(none.pool) == 6 and none.test_tasks() == []
    learner = none.build("leap", 0)
    with pytest.raises(ValueError, match="no tasks"):
        none.evaluate(learner)
    own = named.test_tasks()[:1]  # a user's own tasks
    assert 0 <= none.evaluate(learner, own)["accuracy"] <= 1
    with pytest.raises(ValueError, match="Klingon"):
        OmniglotExperiment(TINY, dataset, test_alphabets=["Klingon"])


def test_one_call_trains_one_method_and_returns_the_learner(experiment):
    learner = experiment.train("warp-leap", seed=0, alphabets=1)
    assert len(learner.meta_history) == TINY.meta_iterations
    assert all(h["warp_change"] > 0 and h["init_change"] > 0 for h in learner.meta_history)
    assert learner.validation["curve"][0][0] == 0 and len(learner.validation["curve"]) == TINY.meta_iterations + 1
    # model selection: the learner is at its best validation point, which scores what was recorded
    best = max(score for _, score in learner.validation["curve"])
    assert learner.validation["accuracy"] == best
    again = experiment.evaluate(learner, experiment.validation_tasks(0))["accuracy"]
    assert again == pytest.approx(best, abs=1e-6)
    assert 0 <= experiment.evaluate(learner)["accuracy"] <= 1
    with pytest.raises(ValueError, match="unknown method"):
        experiment.train("magic")


def test_model_selection_never_reports_a_worse_validation_point_than_the_final_one(dataset):
    config = TINY.replace(meta_iterations=4, init_lr=0.3, validation_every=1)
    best = OmniglotExperiment(config, dataset).train("reptile", seed=1, alphabets=2)
    final = OmniglotExperiment(config.replace(model_selection="final"), dataset).train("reptile", seed=1,
                                                                                        alphabets=2)
    assert best.validation["curve"] == final.validation["curve"]  # the same training, validated alike
    assert best.validation["accuracy"] >= final.validation["curve"][-1][1]


def test_evaluation_is_non_transductive_by_default(experiment):
    """With running statistics (the default) a held-out image's prediction cannot depend on the other held-out
    images: scoring them one at a time gives the accuracy of scoring them together. Transductive evaluation
    (batch statistics) is the named alternative and gives other numbers."""
    learner = experiment.build("no-pretraining", seed=0)
    task = experiment.test_tasks()[0]
    together = experiment.evaluate(learner, [task])["accuracy"]
    inputs, targets = task.evaluation_batch()
    singles = []
    for i in range(len(targets)):
        single = copy.copy(task)
        single.test_inputs, single.test_targets = inputs[i:i + 1], targets[i:i + 1]
        singles.append(experiment.evaluate(learner, [single])["accuracy"])
    assert together == pytest.approx(np.mean(singles))
    transductive = experiment.evaluate(learner, [task], batchnorm="transductive")
    assert experiment.evaluate(learner, [task], batchnorm="running")["accuracy"] == together
    assert transductive["test_loss"] != pytest.approx(experiment.evaluate(learner, [task])["test_loss"])
    with pytest.raises(ValueError, match="batchnorm"):
        experiment.evaluate(learner, [task], batchnorm="batch")


def test_replay_schedules_compared_from_the_same_start(experiment):
    from warpkit.experiments.omniglot import compare_replay_schedules

    comparison = compare_replay_schedules(experiment, iterations=2)
    one, chunked = comparison["schedules"].values()
    points = TINY.meta_batch_size * TINY.inner_steps
    assert one["warp_steps"] == 2 * points and chunked["warp_steps"] == 2 * math.ceil(points / 25)
    assert len(one["warp_change"]) == 2 and all(v > 0 for v in one["warp_change"] + chunked["warp_change"])
    assert one["phi_distance"] > 0 and 0 <= one["accuracy"] <= 1


def test_augmentation_switch(dataset):
    from warpkit.data.augment import OMNIGLOT_AUGMENTATION

    augmented = OmniglotExperiment(TINY.replace(augment=True), dataset)
    assert augmented.augmentation is OMNIGLOT_AUGMENTATION
    task = augmented.training_tasks(0, 1, 0)[0]
    inputs, targets = task.sample_batch(0)
    raw = task.train_inputs[task.batch_indices(0)]
    assert not torch.equal(inputs, raw) and torch.equal(targets, task.train_targets[task.batch_indices(0)])
    plain = OmniglotExperiment(TINY, dataset).training_tasks(0, 1, 0)[0]
    assert torch.equal(plain.sample_batch(0)[0], plain.train_inputs[plain.batch_indices(0)])
    test_inputs, _ = augmented.test_tasks()[0].evaluation_batch()  # held-out images are never augmented
    assert torch.equal(test_inputs, augmented.test_tasks()[0].test_inputs)


def test_meta_batch_cycles_the_alphabets_when_there_are_few(dataset):
    experiment = OmniglotExperiment(TINY.replace(meta_batch_size=5), dataset)
    names = [t.alphabet for t in experiment.training_tasks(0, 2, 0)]
    assert len(names) == 5 and sorted(set(names)) == sorted(experiment.training_alphabets(0, 2))
    assert max(names.count(n) for n in set(names)) - min(names.count(n) for n in set(names)) <= 1
    assert [t.alphabet for t in experiment.training_tasks(0, 1, 0)] == [experiment.training_alphabets(0, 1)[0]] * 5


def test_every_method_starts_from_the_same_theta_and_adapts_alike(experiment):
    learners = {m: experiment.build(m, seed=0) for m in TINY.methods}
    reference = task_parameters(learners["leap"].model)
    for method, learner in learners.items():
        theta = task_parameters(learner.model)
        assert all(torch.equal(theta[n], reference[n]) for n in reference), method
        assert (learner.inner.steps, learner.inner.lr) == (TINY.inner_steps, TINY.inner_lr), method
    assert warp_parameters(learners["warp-leap"].model) and not warp_parameters(learners["leap"].model)
    assert learners["maml"].init_learner.steps == TINY.maml_steps
    assert learners["maml"].init_optimizer.param_groups[0]["lr"] == TINY.maml_init_lr
    assert learners["leap"].init_optimizer.param_groups[0]["lr"] == TINY.init_lr


def test_identity_warps_adapt_exactly_like_the_plain_network(experiment):
    check = warp_vs_plain_at_initialisation(experiment, seed=0)
    assert len(check["warped"]) == TINY.inner_steps
    assert check["max_difference"] < 1e-5


def test_evaluation_uses_a_fresh_copy_per_test_task(experiment):
    learner = experiment.build("warp-leap", seed=0)
    learner.meta_step(experiment.training_tasks(0, 2, 0))
    before = copy.deepcopy(learner.model.state_dict())
    tasks = experiment.test_tasks()
    forward = experiment.evaluate(learner, tasks)
    backward = experiment.evaluate(learner, list(reversed(experiment.test_tasks())))
    after = learner.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the meta-learned model is never touched
    # every task is adapted from the same θ_0: the order of the tasks does not matter
    assert forward["task_accuracies"] == list(reversed(backward["task_accuracies"]))
    assert len(forward["adaptation_losses"]) == TINY.inner_steps + 1
    assert forward["accuracy"] == pytest.approx(np.mean(forward["task_accuracies"]))


# ------------------------------------------------------------------------------------------------ the sweep
def test_sweep_covers_every_run(sweep):
    assert {(r.seed, r.alphabets, r.method) for r in sweep.runs} == {
        (s, n, m) for s in TINY.seeds for n in TINY.alphabet_counts for m in TINY.methods}
    for run in sweep.runs:
        assert 0 <= run.accuracy <= 1 and math.isfinite(run.test_loss)
        expected = 0 if run.method == "no-pretraining" else TINY.meta_iterations
        assert len(run.meta_history) == expected, run.method
    # no pretraining learns nothing, so its numbers cannot depend on n
    for seed in TINY.seeds:
        assert sweep.get("no-pretraining", 1, seed).accuracy == sweep.get("no-pretraining", 2, seed).accuracy
    assert sweep.seconds_per_meta_iteration("warp-leap") > 0


def test_resumed_sweep_equals_an_uninterrupted_one(experiment, sweep, tmp_path):
    path = tmp_path / "sweep.pt"
    partial = experiment.run(checkpoint=str(path), show_progress=False, stop_after=3)
    assert path.exists() and len(partial.runs) < len(sweep.runs)
    partial = experiment.run(checkpoint=str(path), show_progress=False, stop_after=6)  # resumes, stops again
    assert len(partial.runs) < len(sweep.runs)
    resumed = experiment.run(checkpoint=str(path), show_progress=False)
    for run in sweep.runs:
        again = resumed.get(run.method, run.alphabets, run.seed)
        assert again.task_accuracies == run.task_accuracies, run.method
        assert again.adaptation_losses == pytest.approx(run.adaptation_losses, abs=1e-6), run.method
        assert [h["task_loss_last"] for h in again.meta_history] == pytest.approx(
            [h["task_loss_last"] for h in run.meta_history], abs=1e-6)
    # a finished sweep resumes to the same results without meta-training again
    finished = experiment.run(checkpoint=str(path), show_progress=False)
    assert [r.accuracy for r in finished.runs] == [r.accuracy for r in resumed.runs]


def test_corrupt_checkpoint_is_refused_and_never_overwritten(experiment, tmp_path):
    path = tmp_path / "sweep.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        experiment.run(checkpoint=str(path), show_progress=False)
    assert path.read_bytes() == b"not a checkpoint at all"


def test_checkpoint_of_another_configuration_is_refused(experiment, tmp_path):
    path = tmp_path / "sweep.pt"
    experiment.run(checkpoint=str(path), show_progress=False, stop_after=1)
    saved = path.read_bytes()
    other = OmniglotExperiment(TINY.replace(inner_steps=4), experiment.dataset)
    with pytest.raises(ValueError, match="inner_steps"):
        other.run(checkpoint=str(path), show_progress=False)
    assert path.read_bytes() == saved
    torch.save({"something": "else"}, path)
    with pytest.raises(CheckpointError, match="not a warpkit Omniglot sweep"):
        experiment.run(checkpoint=str(path), show_progress=False)


def test_checkpoint_of_another_seed_or_data_source_is_refused_naming_the_fields(experiment, tmp_path):
    """The fingerprint covers the seeds and the data: a sweep asked for seed 1, or run on other data, never
    resumes (and so never reports) seed 0's or the other data's runs."""
    path = tmp_path / "sweep.pt"
    experiment.run(checkpoint=str(path), show_progress=False, stop_after=1)
    saved = path.read_bytes()
    with pytest.raises(SettingsMismatch, match=r"config\.seeds \(saved \[0\], now \[1\]\)"):
        OmniglotExperiment(TINY.replace(seeds=(1,)), experiment.dataset).run(checkpoint=str(path),
                                                                             show_progress=False)
    glyphs = synthetic_dataset(source="glyphs")
    with pytest.raises(SettingsMismatch, match=r"source \(saved 'omniglot', now 'glyphs'\)"):
        OmniglotExperiment(TINY, glyphs).run(checkpoint=str(path), show_progress=False)
    other_drawings = synthetic_dataset(characters=6)
    with pytest.raises(SettingsMismatch, match=r"alphabets\.Alphabet0 \(saved 5, now 6\)"):
        OmniglotExperiment(TINY, other_drawings).run(checkpoint=str(path), show_progress=False)
    assert path.read_bytes() == saved
    assert sweep_fingerprint(experiment)["config"]["data_source"] == TINY.data_source


def test_replay_timing_compares_the_same_work(experiment):
    timing = experiment.time_meta_iteration(variants=("batched", "one_point", "looped"))
    points = TINY.meta_batch_size * TINY.inner_steps
    batched, one_point = timing["variants"]["batched"], timing["variants"]["one_point"]
    assert batched["points"] == one_point["points"] == points
    assert batched["warp_steps"] == math.ceil(points / TINY.replay_chunk_size) and one_point["warp_steps"] == points
    assert timing["replay_speedup_in_meta_iteration"] == pytest.approx(one_point["seconds"] / batched["seconds"])
    assert timing["replay_speedup"] > 0 and timing["vmap_speedup_of_replay"] > 0
    with pytest.raises(ValueError, match="unknown variant"):
        experiment.time_meta_iteration(variants=("sideways",))


# ------------------------------------------------------------------------------------------------ summaries
def _fake_results():
    config = TINY.replace(seeds=(0, 1, 2), alphabet_counts=(1, 3), methods=("warp-leap", "leap"))
    runs = []
    values = {"warp-leap": {1: [0.5, 0.6, 0.7], 3: [0.8, 0.8, 0.9]}, "leap": {1: [0.4, 0.4, 0.4], 3: [0.5, 0.7, 0.6]}}
    for method, by_n in values.items():
        for n, accuracies in by_n.items():
            for seed, accuracy in zip(config.seeds, accuracies):
                runs.append(RunResult(method, n, seed, accuracy, [accuracy], 1.0 - accuracy,
                                      [2.0, 1.0 - accuracy / 2, 0.5 - accuracy / 4],
                                      [{"task_loss_first": 2.0, "task_loss_last": 1.0}] * 2, 4.0, 1.0))
    return SweepResults(config, runs, "omniglot")


def test_table_is_mean_and_sample_std_over_seeds():
    results = _fake_results()
    assert results.mean_std("warp-leap", 1) == pytest.approx((0.6, 0.1))
    assert results.mean_std("leap") == pytest.approx((0.6, 0.1))  # default: the largest n
    rows = {row["method"]: row for row in results.table()}
    assert rows["warp-leap"][3][:2] == pytest.approx((100 * 0.8333333, 100 * np.std([0.8, 0.8, 0.9], ddof=1)))
    assert "83.3 ±  5.8" in results.format_table()
    assert results.seconds_per_meta_iteration("leap") == pytest.approx(2.0)
    paper = {row["method"]: row["paper"] for row in results.paper_table()}
    assert paper["warp-leap"] == PAPER_ACCURACY_25["warp-leap"] == (83.6, 1.9)
    assert "83.6 ± 1.9" in results.format_paper_table()
    assert PAPER_WARP_LEAP_BY_ALPHABETS[1] == 49.5 and PAPER_WARP_LEAP_BY_ALPHABETS[25] == 83.8


def test_one_seed_tables_show_no_standard_deviation():
    full = _fake_results()
    one_seed = SweepResults(full.config.replace(seeds=(0,)), [r for r in full.runs if r.seed == 0], "omniglot")
    table, paper_table = one_seed.format_table(), one_seed.format_paper_table()
    assert "80.0" in table and "±  0.0" not in table and "1 seed" in table
    warp_leap_row = next(line for line in paper_table.splitlines() if line.startswith("Warp-Leap"))
    assert "80.0" in warp_leap_row and warp_leap_row.count("±") == 1  # only the paper's 83.6 ± 1.9


def test_figures_draw_one_series_per_method():
    from warpkit.viz import omniglot_results as draw

    results = _fake_results()
    fig = draw.plot_accuracy_vs_alphabets(results)
    ours, paper = fig.axes
    labels = [t.get_text() for t in ours.get_legend().get_texts()]
    assert labels == ["Warp-Leap", "Leap"]
    warp_line = ours.containers[0].lines[0]  # errorbar: mean at each n, in %
    np.testing.assert_allclose(warp_line.get_ydata(), [60.0, 83.333333], rtol=1e-5)
    assert len(paper.get_lines()) >= 1 and paper.get_lines()[0].get_ydata()[0] == 49.5
    fig = draw.plot_adaptation_curves(results)
    assert len(fig.axes[0].get_lines()) == 2
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [2.0, 1.0 - 0.8333333 / 2, 0.5 - 0.8333333 / 4],
                               rtol=1e-5)
    assert draw.plot_meta_training(results).axes[0].get_lines()
    assert draw.plot_paper_table(results).axes
    timing = {"variants": {"batched": {"seconds_adapt": 1.0, "seconds_replay": 1.0, "warp_steps": 2, "points": 8},
                           "one_point": {"seconds_adapt": 1.0, "seconds_replay": 4.0, "warp_steps": 8, "points": 8}},
              "tasks": 2, "inner_steps": 4, "replay_speedup_in_meta_iteration": 2.5, "replay_speedup": 4.0}
    fig = draw.plot_replay_speed(timing)
    widths = sorted(round(p.get_width(), 6) for p in fig.axes[0].patches)
    assert widths == [1.0, 1.0, 1.0, 4.0]


def test_parameter_description_names_theta_and_phi(experiment):
    text = describe_parameters(experiment.model_factory(warp="conv3"))
    assert "θ task  blocks.0.conv.weight" in text and "φ warp  warps.0" in text
    counts = experiment.parameter_counts()
    assert f"θ: {counts['theta']} task parameters" in text and f"φ: {counts['phi']} warp" in text
    assert counts["theta"] == counts["theta_plain"]
