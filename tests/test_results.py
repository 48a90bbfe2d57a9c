"""Reference results (warpkit.kit.results): files written and read back with what made them, stale configurations
named, the paired interval against hand-computed values, and the committed lesson-03 reference kept current."""

from __future__ import annotations

import json

import numpy as np
import pytest

from warpkit.kit import results
from warpkit.experiments.omniglot import REFERENCE_LESSON, SIZES, read_reference


def _runs():
    return [{"method": m, "alphabets": 4, "seed": s, "accuracy": a}
            for m, values in {"warp-leap": [0.7, 0.72, 0.69], "leap": [0.6, 0.65, 0.61]}.items()
            for s, a in enumerate(values)]


def test_a_reference_round_trips_with_what_made_it(tmp_path):
    config = {"inner_steps": 50, "seeds": (0, 1, 2)}
    path = results.write_reference("99_test", "medium", config, _runs(), "python -m warpkit reference 99", 12.34,
                                   path=tmp_path / "99_test_medium.json")
    data = json.loads(path.read_text())
    for key in ("lesson", "size", "commit", "command", "created", "machine", "seconds", "config", "runs"):
        assert key in data, key
    assert data["config"] == {"inner_steps": 50, "seeds": [0, 1, 2]} and data["seconds"] == 12.3
    assert data["fingerprint"] == results.fingerprint(config) and data["machine"]["cpus"] >= 1
    reference = results.read_reference("99_test", "medium", path=path)
    assert reference.methods == ["warp-leap", "leap"] and reference.largest_n == 4
    assert reference.accuracies("leap") == {0: 0.6, 1: 0.65, 2: 0.61}
    mean, std, n = reference.mean_std("warp-leap")
    assert (mean, n) == (pytest.approx(0.7033333), 3) and std == pytest.approx(np.std([0.7, 0.72, 0.69], ddof=1))
    assert results.read_reference("99_test", "huge", path=tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a warpkit reference"):
        results.read_reference("x", "y", path=tmp_path / "bad.json")


def test_stale_fields_name_every_changed_setting():
    recorded = {"inner_steps": 50, "seeds": [0, 1], "warp": "conv3"}
    assert results.stale_fields(recorded, {"inner_steps": 50, "seeds": (0, 1), "warp": "conv3"}) == []
    assert results.stale_fields(recorded, {"inner_steps": 100, "seeds": (0, 1), "warp": "conv3", "new": 1}) == [
        "inner_steps", "new"]
    assert results.fingerprint(recorded) != results.fingerprint({**recorded, "inner_steps": 100})


def test_paired_interval_matches_a_hand_computation():
    a, b = {0: 0.7, 1: 0.72, 2: 0.69, 9: 0.5}, {0: 0.6, 1: 0.65, 2: 0.61}  # seed 9 has no partner
    interval = results.paired_interval(a, b)
    differences = np.array([0.1, 0.07, 0.08])
    half = 4.303 * differences.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 degrees of freedom) = 4.303
    assert interval["n"] == 3 and interval["mean"] == pytest.approx(differences.mean())
    assert (interval["low"], interval["high"]) == pytest.approx((differences.mean() - half, differences.mean() + half))
    assert results.t_quantile_975(100) == 1.96
    with pytest.raises(ValueError):
        results.paired_interval([0.1], [0.2])


def test_the_committed_lesson_03_reference_matches_the_current_medium_size():
    """Fails when the medium size changed but results/03_omniglot_medium.json was not re-made
    (``python -m warpkit reference 03 --size medium``)."""
    reference = read_reference("medium")
    assert reference is not None, "results/03_omniglot_medium.json is missing"
    assert reference.data["lesson"] == REFERENCE_LESSON and reference.data["size"] == "medium"
    stale = reference.stale_fields(SIZES["medium"].as_dict())
    assert stale == [], f"the reference was made with another medium configuration (differs in {stale}); re-make it"
    assert reference.data["fingerprint"] == results.fingerprint(SIZES["medium"].as_dict())
    # it holds every (method, seed) of the size at its largest n
    config = SIZES["medium"]
    for method in config.methods:
        assert sorted(reference.accuracies(method, config.largest_n)) == sorted(config.seeds), method
    assert len(config.seeds) >= 5 and reference.data["command"].startswith("python -m warpkit reference 03")
