"""Lever study for lesson 03 (issue 13): one lever at a time from a base configuration, Warp-Leap against the
strongest baselines, on the real Omniglot subsets.

    python benchmarks/omniglot_levers.py --out results/omniglot_levers --settings base chunk25 ...

Each setting runs :meth:`warpkit.experiments.omniglot.OmniglotExperiment.run` (checkpointed under ``--out``, so a
killed study resumes) and writes ``<out>/<setting>.json`` with every run's held-out accuracy. ``--table``
prints the study's table (lever, setting, Warp-Leap, best baseline, seeds) from those files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from warpkit.experiments import omniglot

#: the study's starting point: medium-like, one φ-step per point, resampled tasks, running statistics
BASE = omniglot.SIZES["medium"].replace(
    alphabet_counts=(4,), seeds=(0, 1), inner_steps=50, meta_iterations=30, replay_chunk_size=1,
    fixed_training_tasks=False, augment=False, warp="conv3", validation_every=5,
    methods=("warp-leap", "leap", "reptile", "multi-head"),
)

#: one lever at a time: (lever, what changes from BASE). Settings that change only how Warp-Leap learns φ run
#: Warp-Leap alone and are compared with the baselines of ``base`` (the same runs); the others run every method.
#: ``base`` has two seeds, the other settings one (the machine is shared: this is a study, not the evidence).
SETTINGS: dict[str, tuple[str, dict]] = {
    "base": ("base", {}),
    "chunk25": ("points per φ-step", {"replay_chunk_size": 25, "replay": "batched"}),
    "fixed": ("task resampling", {"fixed_training_tasks": True}),
    "residual": ("warp family", {"warp": "residual_conv"}),
    "iters15": ("meta-iterations", {"meta_iterations": 15}),
    "augment": ("augmentation", {"augment": True}),
    "steps25": ("inner steps", {"inner_steps": 25}),
    "steps100": ("inner steps", {"inner_steps": 100}),
}
#: levers that only touch Warp-Leap's warp learning
WARP_ONLY = ("chunk25", "residual")


def config_of(name: str) -> omniglot.OmniglotConfig:
    config = BASE.replace(**SETTINGS[name][1])
    if name != "base":
        config = config.replace(seeds=(0,))
    if name in WARP_ONLY:
        config = config.replace(methods=("warp-leap",))
    return config


def run_setting(name: str, out: Path) -> dict:
    config = config_of(name)
    experiment = omniglot.OmniglotExperiment(config)
    started = time.perf_counter()
    results = experiment.run(checkpoint=str(out / f"{name}.ckpt"), show_progress=False)
    record = {"setting": name, "lever": SETTINGS[name][0], "change": SETTINGS[name][1],
              "config": config.as_dict(), "seconds": time.perf_counter() - started,
              "runs": [{"method": r.method, "seed": r.seed, "alphabets": r.alphabets, "accuracy": r.accuracy,
                        "selected_iteration": r.selected_iteration,
                        "warp_change": [h.get("warp_change") for h in r.meta_history]} for r in results.runs]}
    (out / f"{name}.json").write_text(json.dumps(record, indent=1))
    return record


def table(out: Path) -> str:
    """The study's table: lever, setting, Warp-Leap's held-out accuracy, the best baseline's, seeds, and how far
    Warp-Leap's φ moved (summed |Δφ| over the meta-iterations, mean over seeds)."""
    lines = ["lever | setting | Warp-Leap | best baseline | seeds | Warp-Leap Σ|Δφ|"]
    fmt = lambda v: f"{np.mean(v):.1f}" + (f" ± {np.std(v, ddof=1):.1f}" if len(v) > 1 else "")  # noqa: E731
    for name in SETTINGS:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        record = json.loads(path.read_text())
        runs = list(record["runs"])
        if name in WARP_ONLY and (out / "base.json").exists():  # the baselines of base, same seeds
            seeds = {r["seed"] for r in runs}
            runs += [r for r in json.loads((out / "base.json").read_text())["runs"]
                     if r["method"] != "warp-leap" and r["seed"] in seeds]
        by_method: dict[str, list[float]] = {}
        for run in runs:
            by_method.setdefault(run["method"], []).append(100 * run["accuracy"])
        warp = by_method.pop("warp-leap")
        moved = np.mean([sum(v for v in r["warp_change"] if v is not None) for r in runs
                         if r["method"] == "warp-leap"])
        best = max(by_method, key=lambda m: np.mean(by_method[m]))
        change = ", ".join(f"{k}={v}" for k, v in record["change"].items()) or "—"
        lines.append(f"{record['lever']} | {change} | {fmt(warp)} | {omniglot.METHOD_LABELS[best]} "
                     f"{fmt(by_method[best])} | {len(warp)} | {moved:.1f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/omniglot_levers")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(out))
        return
    torch.set_num_threads(1)
    for name in args.settings:
        if (out / f"{name}.json").exists():
            continue
        record = run_setting(name, out)
        print(name, f"{record['seconds']:.0f} s", flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
