"""Lesson 05's reference run and the sentences generated from it (warpkit.experiments.maze): scores and curves
read back from a reference file, the ranking and its paired interval against a hand computation, the typical maze,
the size and training tables, and the committed reference kept current."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest
import torch

from warpkit.experiments import maze
from warpkit.kit import results


def _reference(tmp_path, scores: dict[str, list[float]]):
    runs = [{"agent": agent, "seed": seed, "reward": value, "curve": [value - 1.0, value + 1.0], "seconds": 1.0}
            for agent, values in scores.items() for seed, value in enumerate(values)]
    path = results.write_reference("05_maze", "medium", {"seeds": 3}, runs, "python -m warpkit reference 05", 1.0,
                                   path=tmp_path / "05_maze_medium.json")
    return results.read_reference("05_maze", "medium", path=path)


def test_scores_and_curves_come_back_from_a_reference_file(tmp_path):
    reference = _reference(tmp_path, {"warp_rnn": [10.0, 12.0, 11.0], "l2rl": [9.0, 8.0, 10.5]})
    assert maze.reference_scores(reference) == {"warp_rnn": {0: 10.0, 1: 12.0, 2: 11.0},
                                                "l2rl": {0: 9.0, 1: 8.0, 2: 10.5}}
    curves = maze.reference_curves(reference)
    np.testing.assert_array_equal(curves["l2rl"], [[8.0, 10.0], [7.0, 9.0], [9.5, 11.5]])


def test_the_ranking_sentence_carries_the_hand_computed_paired_interval():
    scores = {"warp_rnn": {0: 10.0, 1: 12.0, 2: 11.0}, "l2rl": {0: 9.0, 1: 8.0, 2: 10.5},
              "hebbian": {0: 5.0, 1: 6.0, 2: 4.0}, "random": {0: 30.0, 1: 30.0, 2: 30.0}}
    differences = np.array([1.0, 4.0, 0.5])
    half = 4.303 * differences.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    text = maze.describe_ranking(scores, "this test")
    assert "**Warp-RNN (HyperNetwork warp)** scores highest (11.0" in text  # random is left out of the ranking
    assert f"[{differences.mean() - half:+.1f}, {differences.mean() + half:+.1f}]" in text
    assert "containing zero" in text and "learning to RL (LSTM), the best of the others: +1.8" in text
    assert "one seed: no interval" in maze.describe_ranking({"warp_rnn": {0: 1.0}, "l2rl": {0: 2.0}}, "x")


def test_the_difference_table_reads_each_paired_interval():
    scores = {"warp_rnn": {0: 10.0, 1: 12.0, 2: 11.0}, "l2rl": {0: 9.0, 1: 8.0, 2: 10.5},
              "hebbian": {0: 20.0, 1: 21.0, 2: 19.0}, "no_warp": {0: 10.0}}
    table = maze.difference_table(scores)
    ahead = 4.303 * np.std([-10.0, -9.0, -8.0], ddof=1) / np.sqrt(3)
    assert f"| Hebbian (Backpropamine) | -9.0 | [{-9.0 - ahead:+.1f}, {-9.0 + ahead:+.1f}] | behind |" in table
    assert "| learning to RL (LSTM) | +1.8 |" in table and "cannot tell apart" in table
    assert "no warp" not in table  # one shared seed: no interval


def test_the_score_table_and_the_progress_sentence():
    table = maze.score_table({"warp_rnn": {0: 10.0, 1: 12.0}, "l2rl": {0: 9.0}})
    assert "| Warp-RNN (HyperNetwork warp) | 11.0 | 1.4 | 10.0 | 12.0 |" in table
    assert "| learning to RL (LSTM) | 9.0 | – | 9.0 | – |" in table
    rising = np.array([[0.0] * 50 + [10.0] * 50, [0.0] * 50 + [12.0] * 50, [1.0] * 50 + [12.0] * 50])
    flat = np.full((3, 100), 5.0) + np.array([[0.1], [-0.1], [0.0]]) * np.r_[np.ones(50), -np.ones(50)]
    text = maze.describe_progress({"warp_rnn": rising, "l2rl": flat, "random": flat})
    assert "Warp-RNN (HyperNetwork warp) +11.0" in text and "+11.0 [" in text and "(still improving)" in text
    assert text.count("(still improving)") == 1 and "random" not in text and "mid-course" in text
    assert "mid-course" not in maze.describe_progress({"l2rl": flat})


def test_the_typical_maze_is_the_median_not_the_best():
    reached = torch.zeros(10, 5, dtype=torch.bool)
    for maze_index, hits in enumerate([3, 9, 0, 5, 4]):
        reached[:hits, maze_index] = True
    assert maze.typical_maze(reached) == (4, 4)  # hits sorted 0, 3, 4, 5, 9: the median is maze 4's 4


def test_every_full_setting_names_its_source_and_every_agent_its_training():
    table = maze.size_table()
    for key, source in maze.FULL_SOURCES.items():
        assert key in maze.SIZES["full"] and source in table
    training = maze.training_table(maze.ALL_AGENTS)
    assert all(maze.TRAINING_SOURCES[name] in training for name in maze.ALL_AGENTS)
    config = maze.reference_config("medium")
    assert config["training"]["l2rl"]["lr"] == maze.training_config("l2rl").lr
    with pytest.raises(ValueError, match="unknown maze size 'huge'"):
        maze.reference_config("huge")


def test_the_reference_producer_is_registered():
    name, producer = results.PRODUCERS["05"]
    module, function = producer.split(":")
    assert name == maze.REFERENCE_LESSON and getattr(importlib.import_module(module), function) is maze.reference_runs


def test_the_committed_lesson_05_reference_matches_the_current_medium_size():
    """Fails when the medium size or an agent's training settings changed but results/05_maze_medium.json was
    not re-made (``python -m warpkit reference 05 --size medium --workers 2``)."""
    reference = maze.read_reference("medium")
    assert reference is not None, "results/05_maze_medium.json is missing"
    assert reference.data["lesson"] == maze.REFERENCE_LESSON and reference.data["size"] == "medium"
    stale = reference.stale_fields(maze.reference_config("medium"))
    assert stale == [], f"the reference was made with another medium configuration (differs in {stale}); re-make it"
    settings, scores = maze.SIZES["medium"], maze.reference_scores(reference)
    assert settings["seeds"] >= 5 and set(scores) == set(settings["agents"]) | {"random"}
    for agent, per_seed in scores.items():
        assert sorted(per_seed) == list(range(settings["seeds"])), agent
    assert all(len(run["curve"]) == settings["num_episodes"] for run in reference.runs)
    assert reference.data["command"].startswith("python -m warpkit reference 05")


def test_the_sensitivity_sentence_reads_its_file_or_says_it_is_missing(tmp_path):
    path = tmp_path / "maze_sensitivity.json"
    assert "No sensitivity measurement found" in maze.describe_sensitivity(path)
    data = {"config": maze.reference_config("fast"), "runs": {"warp_rnn": {"as_is": 31.13, "nudged": 18.82}}}
    path.write_text(json.dumps(data))
    assert "Warp-RNN (HyperNetwork warp) 31.1 → 18.8" in maze.describe_sensitivity(path)
    data["config"]["training"]["warp_rnn"]["lr"] *= 10  # made with other settings: not shown as today's
    path.write_text(json.dumps(data))
    assert "was made with another fast size or other training settings" in maze.describe_sensitivity(path)


def test_the_committed_sensitivity_measurement_matches_the_current_fast_size():
    data = json.loads(maze.SENSITIVITY_PATH.read_text(encoding="utf-8"))
    assert data["config"] == maze.reference_config("fast"), "re-run benchmarks/maze_sensitivity.py"


def test_the_lever_table_reads_its_file_and_refuses_another_medium_size(tmp_path):
    path = tmp_path / "maze_levers.json"
    assert "No lever measurement found" in maze.describe_levers(path)
    data = {"medium": maze.reference_config("medium"), "seeds": [0, 1],
            "reference_on_these_seeds": {"warp_rnn": {"0": 30.0, "1": 34.0}, "hebbian": {"0": 60.0, "1": 56.0},
                                         "l2rl": {"0": 40.0, "1": 44.0}, "random": {"0": 4.0, "1": 4.0}},
            "mean_score_by_lever": {"φ every 5 episodes": 40.0},
            "runs": [{"lever": "φ every 5 episodes", "seed": 0, "score": 36.0},
                     {"lever": "φ every 5 episodes", "seed": 1, "score": 44.0}]}
    path.write_text(json.dumps(data))
    table = maze.describe_levers(path)
    assert "| base: the reference run of the time (θ rate " in table and ") | 32.0 | – |" in table  # mean of 30, 34
    assert "| φ every 5 episodes | 40.0 (36.0, 44.0) | +8.0 |" in table
    assert "Hebbian (Backpropamine), the best other agent then* | *58.0* | *+26.0* |" in table
    path.write_text(json.dumps({**data, "medium": {**data["medium"], "maze_size": 7}}))
    assert "made for another maze" in maze.describe_levers(path)
    longer = {**data, "medium": {**data["medium"], "num_episodes": 2000}, "reference_on_these_seeds": {},
              "mean_score_by_lever": {"φ every 5 episodes": 40.0, "as trained": 25.0},
              "runs": data["runs"] + [{"lever": "as trained", "seed": s, "score": v, "config": {
                  "lr": 0.003, "grad_clip": 1.0, "warp_lr": 0.001, "warp_interval": 1}} for s, v in [(0, 20.0), (1, 30.0)]]}
    table = maze.describe_levers(path) if path.write_text(json.dumps(longer)) else ""  # no reference of its length
    assert "(2,000 episodes)" in table and "| base: as trained then (θ rate 0.003, clip 1, φ rate 0.001 every 1 " \
        "episode; 20.0, 30.0) | 25.0 | – |" in table and "| φ every 5 episodes | 40.0 (36.0, 44.0) | +15.0 |" in table
    assert "best other agent" not in table
    old = {**data["medium"], "training": {**data["medium"]["training"], "warp_rnn": {
        "lr": 0.001, "grad_clip": 4.0, "warp_lr": 0.001, "warp_interval": 30}}}  # settings of an earlier time
    path.write_text(json.dumps({**data, "medium": old}))  # the record of the sweep that chose today's settings
    assert "| base: the reference run of the time (θ rate 0.001, clip 4, φ rate 0.001 every 30 episodes) | 32.0 |" \
        in maze.describe_levers(path)


def test_a_lever_rerun_on_every_seed_is_compared_on_all_seeds_and_on_those_that_did_not_choose_it(tmp_path):
    path = tmp_path / "maze_levers_x_4_seeds.json"
    reference = {"warp_rnn": {"0": 30.0, "1": 30.0, "2": 30.0, "3": 34.0},
                 "hebbian": {"0": 50.0, "1": 50.0, "2": 60.0, "3": 60.0}, "random": {str(s): 4.0 for s in range(4)}}
    runs = [{"lever": "φ every episode", "seed": s, "score": v} for s, v in enumerate([40.0, 40.0, 41.0, 43.0])]
    path.write_text(json.dumps({"medium": maze.reference_config("medium"), "seeds": [0, 1, 2, 3],
                                "reference_on_these_seeds": reference, "runs": runs}))
    text = maze.describe_lever_on_all_seeds(path)
    # all 4 seeds: mean 41.0; minus Warp-RNN: differences 10, 10, 11, 9 (mean +10.0); minus Hebbian −10, −10, −19, −17
    assert text.startswith("**Warp-RNN (HyperNetwork warp), φ every episode**, all 4 seeds: 41.0")
    assert "minus the Warp-RNN (HyperNetwork warp) of the reference run of the time +10.0 [" in text
    assert "minus its Hebbian (Backpropamine) -14.0 [" in text
    assert "on the 2 seeds that did not choose it, minus Hebbian (Backpropamine) -18.0 [" in text  # seeds 2, 3
    data = json.loads(path.read_text())  # the same change to an ablation: compared with the reference's ablation
    data["reference_on_these_seeds"]["no_warp"] = {"0": 20.0, "1": 20.0, "2": 20.0, "3": 20.0}
    data["runs"] = [{**run, "agent": "no_warp"} for run in runs]
    path.write_text(json.dumps(data))
    text = maze.describe_lever_on_all_seeds(path)
    assert text.startswith("**no warp (ablation), φ every episode**")
    assert "minus the no warp (ablation) of the reference run of the time +21.0 [" in text


def _winner_of_rounds_1_and_2(agent: str) -> dict:
    """The settings rounds 1 and 2 (500 episodes) chose for ``agent``: the highest mean on the sweep's seeds, the
    base included, unless that setting then scored lower on all 8 seeds than the earlier one."""
    path = maze.LEVERS_PATH if agent == "warp_rnn" else maze.BASELINE_LEVER_PATHS[agent]
    data = json.loads(path.read_text(encoding="utf-8"))
    keys = ["lr", "grad_clip"] + (["warp_lr", "warp_interval"] if agent == "warp_rnn" else [])
    rows = [(float(np.mean(list(data["reference_on_these_seeds"][agent].values()))), data["medium"]["training"][agent])]
    for lever in data["mean_score_by_lever"]:
        runs = [r for r in data["runs"] if r["lever"] == lever]
        rows.append((float(np.mean([r["score"] for r in runs])), runs[0]["config"]))
    best = {k: max(rows, key=lambda row: row[0])[1][k] for k in keys}
    trial = json.loads(maze.SWEEP_CHOICES_PATH.read_text(encoding="utf-8"))  # every agent at its winner, 8 seeds
    earlier = json.loads(maze.EARLIER_REFERENCE_PATH.read_text(encoding="utf-8"))
    with_winner = [r["reward"] for r in trial["runs"] if r["agent"] == agent]
    if {k: trial["config"]["training"][agent][k] for k in keys} == best and \
            np.mean(with_winner) < np.mean(list(earlier["reference_on_these_seeds"][agent].values())):
        best = {k: earlier["medium"]["training"][agent][k] for k in keys}  # refuted on all seeds: the earlier kept
    return best


@pytest.mark.parametrize("agent", ["warp_rnn", "l2rl", "hebbian", "l2rl_large"])
def test_each_agents_setting_is_the_winner_of_its_committed_sweeps(agent):
    """Lesson 05 says every agent is trained at the best setting of its lever sweeps: rounds 1 and 2 at 500
    episodes (rates, clipping, φ's schedule), then round 3 at 1,000 episodes (Adam's ε, and rates with it), each
    round starting from the settings the one before chose. Check it against the committed files and
    :data:`maze.TRAINING`."""
    data = json.loads(maze.EPS_LEVER_PATHS[agent].read_text(encoding="utf-8"))
    base = [r["config"] for r in data["runs"] if r["lever"] == "as trained"]
    assert base and {k: base[0][k] for k in _winner_of_rounds_1_and_2(agent)} == _winner_of_rounds_1_and_2(agent)
    means = {lever: np.mean([r["score"] for r in data["runs"] if r["lever"] == lever])
             for lever in data["mean_score_by_lever"]}
    best = max(means, key=means.get)
    winner = next(r["config"] for r in data["runs"] if r["lever"] == best)
    other_seeds = maze.EPS_LEVER_PATHS[agent].with_name(f"maze_levers_eps_{agent}_seeds_2_5.json")
    if best != "as trained" and other_seeds.exists():  # the winner re-run on more seeds beside the settings before
        runs = data["runs"] + json.loads(other_seeds.read_text(encoding="utf-8"))["runs"]
        before = [r["score"] for r in runs if r["lever"] == "as trained"]
        after = [r["score"] for r in runs if r["lever"] == best]
        assert len(before) == len(after) == 6
        if np.mean(after) < np.mean(before):  # refuted on all seeds: the settings before are kept
            winner = base[0]
    assert dataclasses.asdict(maze.training_config(agent)) == winner, f"round 3 chose {best!r}"


def test_the_ablations_are_trained_as_the_warp_rnn():
    warp = dataclasses.asdict(maze.training_config("warp_rnn"))
    for ablation in ("no_warp", "linear_warp"):
        config = dataclasses.asdict(maze.training_config(ablation))
        assert {k: v for k, v in config.items() if k != "warp_lr"} == {k: v for k, v in warp.items() if k != "warp_lr"}


def test_the_retuning_table_tests_each_choice_on_every_seed_and_says_whether_it_was_kept(tmp_path):
    earlier, trial = tmp_path / "earlier.json", tmp_path / "trial.json"
    assert "No lever measurement found" in maze.describe_retuning(trial, earlier)
    before = {"warp_rnn": {"0": 30.0, "1": 30.0, "2": 30.0, "3": 30.0}, "l2rl": {"0": 40.0, "1": 40.0, "2": 40.0,
                                                                               "3": 40.0}}
    old = {**maze.reference_config("medium")["training"], "warp_rnn": {"lr": 0.001, "grad_clip": 4.0,
           "warp_lr": 0.001, "warp_interval": 30}, "l2rl": {"lr": 0.03, "grad_clip": 1.0}}
    earlier.write_text(json.dumps({"medium": {**maze.reference_config("medium"), "training": old},
                                   "reference_on_these_seeds": before, "runs": []}))
    assert "is missing" in maze.describe_retuning(trial, earlier)
    runs = [{"agent": a, "seed": s, "reward": v} for a, values in
            [("warp_rnn", [40.0, 40.0, 41.0, 43.0]), ("l2rl", [44.0, 44.0, 44.0, 44.0])] for s, v in enumerate(values)]
    after_round_2 = {agent: maze._settings_after_round_2(agent) for agent in ("warp_rnn", "l2rl")}
    config = maze.reference_config("medium")
    trial.write_text(json.dumps({"config": {**config, "training": {**config["training"], **after_round_2}},
                                 "runs": runs}))
    table = maze.describe_retuning(trial, earlier)
    # Warp-RNN: differences 10, 10, 11, 13 (mean +11.0; seeds 2, 3: +12.0), the setting after round 2: kept
    assert "| 30.0 → 41.0 | +11.0 [" in table and "(4 seeds) | +12.0 [" in table and "(2 seeds) | yes |" in table
    assert "learning to RL (LSTM) | θ rate 0.03, clip 1 → θ rate 0.01, clip 4 | 40.0 → 44.0 |" in table


def test_longer_runs_are_compared_on_shared_seeds_and_grouped_by_settings(tmp_path):
    assert "No longer runs found" in maze.describe_longer_runs(tmp_path)
    medium = {**maze.reference_config("medium"), "num_episodes": 2000}

    def probe(name, agent, scores, config=None, maze_size=medium["maze_size"]):
        config = config or dataclasses.asdict(maze.training_config(agent))
        runs = [{"agent": agent, "seed": s, "score": v, "config": config} for s, v in scores.items()]
        (tmp_path / f"maze_probe_{name}.json").write_text(json.dumps({"medium": {**medium, "maze_size": maze_size},
                                                                      "runs": runs}))

    probe("w", "warp_rnn", {0: 50.0, 1: 70.0, 2: 60.0})
    probe("h", "hebbian", {0: 40.0, 1: 60.0})
    old = {"lr": 0.5, "grad_clip": 1.0}  # written before Adam's ε was a setting: PyTorch's default then
    probe("old_h", "hebbian", {2: 99.0, 3: 98.0}, config=old)
    probe("old_w", "warp_rnn", {2: 90.0, 3: 90.0}, config={**old, "warp_lr": 0.1, "warp_interval": 3})
    probe("small", "hebbian", {4: 1.0}, maze_size=7)
    text = maze.describe_longer_runs(tmp_path)
    lines = text.split("\n\n")  # one per pair of settings: (today, today), (today, old), (old, today), (old, old)
    assert len(lines) == 5 and lines[0].startswith("**2,000 episodes**: Warp-RNN (HyperNetwork warp) (θ rate")
    assert ": today's) 60.0 (seeds 0, 1, 2: 50.0, 70.0, 60.0); Hebbian (Backpropamine) (θ rate" in lines[0]
    assert ": today's) 50.0 (seeds 0, 1: 40.0, 60.0)" in lines[0]
    assert "minus Hebbian (Backpropamine): +10.0 [+10.0, +10.0] (paired 95 % interval, 2 seeds)" in lines[0]
    assert "Warp-RNN (HyperNetwork warp) (θ rate 0.5, clip 1, φ rate 0.1 every 3 episodes: of the time) 90.0" in \
        lines[3] and "Hebbian (Backpropamine) (θ rate 0.5, clip 1: of the time) 98.5" in lines[3]
    assert "(1 file(s) made for another maze left out.)" in text


def test_the_saturation_table_reads_its_file_and_refuses_other_settings(tmp_path):
    path = tmp_path / "maze_saturation.json"
    assert "No saturation measurement found" in maze.describe_saturation(path)
    config = dataclasses.asdict(maze.training_config("warp_rnn"))
    episodes = maze.reference_config("medium")["num_episodes"]
    marks = [episodes // 4, episodes // 2, 3 * episodes // 4, episodes]

    def run(seed, eps, warp_lr, units, score):
        rows = [{"episode": e, "reward": 1.0, "saturated_units": u, "saturated_gates": u / 2, "theta_moved": 0.5,
                 "phi_moved": 0.25} for e, u in zip(marks, units)]
        return {"seed": seed, "adam_eps": eps, "config": {**config, "adam_eps": eps, "warp_lr": warp_lr},
                "rows": rows, "score": score}

    runs = [run(4, 1e-8, 1e-3, [0.1, 0.2, 0.3, 0.4], 47.25), run(4, 1e-4, 1e-3, [0.1, 0.1, 0.2, 0.2], 100.0),
            run(0, 1e-8, 1e-3, [0.1, 0.2, 0.3, 0.6], 52.75), run(0, 1e-4, 1e-3, [0.1, 0.1, 0.2, 0.4], 90.0)]
    path.write_text(json.dumps({"medium": maze.reference_config("medium"), "runs": runs}))
    table = maze.describe_saturation(path)
    assert f"saturated units at episode {marks[0]:,} / {marks[1]:,} / {marks[2]:,} / {marks[3]:,}" in table
    assert "| 0.001 | 4 | 1e-08 | 47.2 | 10 % / 20 % / 30 % / 40 % | 5 % / 10 % / 15 % / 20 % | 0.50 | 0.25 |" in table
    assert table.index("| 0.001 | 0 | 1e-08 |") < table.index("| 0.001 | 4 | 1e-08 |")  # sorted by rate, seed, ε
    # means over seeds 0 and 4: scores 50.0 → 95.0, units at the end 50 % → 30 %, gates 25 % → 15 %
    assert ("φ rate 0.001, Adam ε 1e-08 → 0.0001 (means over seeds 0, 4): score 50.0 → 95.0; saturated units at the "
            "end 50 % → 30 %, saturated gates 25 % → 15 %.") in table
    runs[0]["config"]["lr"] = 1.0  # another θ rate: not today's Warp-RNN
    path.write_text(json.dumps({"medium": maze.reference_config("medium"), "runs": runs}))
    assert "other settings" in maze.describe_saturation(path) and maze.saturation_runs(path) == []


def test_the_committed_saturation_measurement_matches_the_warp_rnn_of_today():
    assert "|" in maze.describe_saturation(), "re-run benchmarks/maze_saturation.py"


def test_round_3_is_tested_on_the_seeds_that_did_not_choose_it():
    """The lesson's table of round 3's choices on more seeds, from the committed files."""
    table = maze.describe_round_3_held_out()
    assert table.startswith("| agent | round 3's winner on seeds 0, 1 |"), table
    for agent in ("warp_rnn", "hebbian", "l2rl"):
        assert f"| {maze.AGENT_LABELS[agent]} | " in table
    # Hebbian: rate 3e-3 with ε 1e-4 won on seeds 0, 1 and collapsed on three of seeds 2–5: not kept
    assert "| Hebbian (Backpropamine) | Adam ε 1e-4, θ rate ×3 | " in table
    hebbian = next(line for line in table.splitlines() if line.startswith("| Hebbian"))
    assert hebbian.endswith("| no |") and "(6 seeds)" in hebbian and "(4 seeds)" in hebbian
