"""K-FAC on the Omniglot medium size (issue 13): the paper's second-order comparison, no meta-learning.

    nohup nice -n 5 .venv/bin/python benchmarks/omniglot_kfac.py > kfac.log 2>&1 &

1. A grid of K-FAC step sizes α and dampings λ (the paper gives neither), each scored by adapting from seed 0's
   random initialisation to seed 0's validation tasks (never the test tasks); the best is
   ``warpkit.experiments.omniglot.KFAC_SETTINGS``, or the script stops and says so.
2. K-FAC on the medium size's test tasks for every seed of the medium size (the same networks, tasks and batches
   as the reference run ``results/03_omniglot_medium.json``, so it pairs with it seed by seed).

Writes ``results/omniglot_kfac_medium.json``: the grid, the chosen settings, every run, seconds and load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import torch

from warpkit.experiments import omniglot
from warpkit.kit.notebook import REPO_ROOT

LEARNING_RATES = (0.03, 0.1, 0.3, 1.0)
DAMPINGS = (1e-3, 1e-2, 1e-1, 1.0)


def grid(experiment: omniglot.OmniglotExperiment, cache: Path) -> list[dict]:
    """Every (α, λ) of the grid scored on seed 0's validation tasks; points already in ``cache`` (a JSON list
    written after every point, so that a stopped run resumes) are not run again."""
    tasks = experiment.validation_tasks(0)
    scores = json.loads(cache.read_text()) if cache.exists() else []
    done = {(s["kfac_lr"], s["kfac_damping"]) for s in scores}
    for lr, damping in itertools.product(LEARNING_RATES, DAMPINGS):
        if (lr, damping) in done:
            continue
        learner = experiment.build("kfac", 0)
        learner.kfac_lr, learner.kfac_damping = lr, damping
        started = time.perf_counter()
        accuracy = experiment.evaluate(learner, tasks)["accuracy"]
        scores.append({"kfac_lr": lr, "kfac_damping": damping, "validation_accuracy": accuracy,
                       "seconds": round(time.perf_counter() - started, 1)})
        print(scores[-1], flush=True)
        cache.write_text(json.dumps(scores))
    order = list(itertools.product(LEARNING_RATES, DAMPINGS))
    return sorted(scores, key=lambda s: order.index((s["kfac_lr"], s["kfac_damping"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO_ROOT / "results" / "omniglot_kfac_medium.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = omniglot.SIZES["medium"].replace(methods=("kfac",))
    experiment = omniglot.OmniglotExperiment(config)
    started = time.perf_counter()
    cache = REPO_ROOT / ".cache" / "omniglot_kfac_grid.json"
    cache.parent.mkdir(exist_ok=True)
    scores = grid(experiment, cache)
    best = max(scores, key=lambda s: s["validation_accuracy"])  # the first of the grid on ties
    chosen = {"kfac_lr": best["kfac_lr"], "kfac_damping": best["kfac_damping"]}
    current = {k: omniglot.KFAC_SETTINGS[k] for k in chosen}
    if current != chosen:
        raise SystemExit(f"the validation grid chose {chosen}, KFAC_SETTINGS has {current}: set KFAC_SETTINGS in "
                         "warpkit/experiments/omniglot.py to the grid's choice and run again")
    results = experiment.run(show_progress=False)
    record = {"command": "python benchmarks/omniglot_kfac.py", "config": config.as_dict(),
              "kfac_settings": omniglot.KFAC_SETTINGS, "grid": scores, "seconds": round(time.perf_counter() - started),
              "load_average": os.getloadavg()[0],
              "runs": [{"method": r.method, "seed": r.seed, "alphabets": r.alphabets, "accuracy": r.accuracy,
                        "task_accuracies": r.task_accuracies, "adaptation_losses": r.adaptation_losses,
                        "seconds": round(r.seconds_evaluation, 1)} for r in results.runs]}
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(json.dumps([(r["seed"], r["accuracy"]) for r in record["runs"]]))


if __name__ == "__main__":
    main()
