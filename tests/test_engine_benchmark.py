"""The committed engine benchmark (benchmarks/results/engine_cpu.json, made by ``benchmarks/engine.py --out``): it
carries what the replay issue asks for, it was made with the script's own settings from committed code, its ratios
are the quotients of its own medians, and it is not stale (the measured code has not changed since)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "benchmarks" / "results" / "engine_cpu.json"
REMAKE = ("re-make it on an idle machine: .venv/bin/python benchmarks/engine.py --out "
          "benchmarks/results/engine_cpu.json (about 12 minutes)")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("warpkit_engine_benchmark", REPO / "benchmarks" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result():
    return json.loads(RESULT.read_text())


def test_result_has_what_the_issue_asks_for(result):
    variants = {"reference", "first_order", "exact", "reference_warpkit_layers"}
    assert set(result["seconds_per_meta_iteration"]) == variants
    assert set(result["seconds_adapt_replay"]) == variants
    for key in ("meta_iteration_ratio_exact", "meta_iteration_ratio_first_order", "warpgrad_memory_ratio",
                "replay_float64_max_abs_diff", "matmul_gflops_per_second", "seconds"):
        assert isinstance(result[key], float), key
    assert set(result["replay_gflops_per_second"]) == {"reference", "first_order", "exact"}
    assert set(result["meta_iteration_ratio_same_layers"]) == {"first_order", "exact"}


def test_ratios_are_the_quotients_of_the_recorded_medians(result):
    seconds = result["seconds_per_meta_iteration"]
    assert result["meta_iteration_ratio_exact"] == pytest.approx(seconds["exact"] / seconds["reference"], abs=2e-3)
    assert result["meta_iteration_ratio_first_order"] == pytest.approx(
        seconds["first_order"] / seconds["reference"], abs=2e-3)
    for variant, ratio in result["meta_iteration_ratio_same_layers"].items():
        assert ratio == pytest.approx(seconds[variant] / seconds["reference_warpkit_layers"], abs=2e-3)
    for variant, (adapt, replay) in result["seconds_adapt_replay"].items():
        assert adapt + replay == pytest.approx(seconds[variant], abs=0.5), variant  # medians of sums and parts


def test_made_with_the_scripts_settings_from_committed_code(bench, result, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["engine.py"])
    defaults = bench.parse_arguments()
    settings = result["meta_iteration_settings"]
    assert not result["quick"] and result["threads"] == defaults.threads == 1
    assert [settings["filters"], settings["K"], settings["T"]] == list(defaults.meta)
    assert settings["rounds"] == defaults.meta_rounds and result["memory_settings"]["filters"] == defaults.memory_filters
    assert not result["provenance"]["commit"].endswith("-dirty"), "made from uncommitted code; " + REMAKE


def test_not_stale(bench, result):
    changed = [path for path, digest in bench.source_hashes().items()
               if result["provenance"]["sources"].get(path) != digest]
    assert not changed, f"the measured code changed since the committed engine benchmark ({changed}); " + REMAKE
