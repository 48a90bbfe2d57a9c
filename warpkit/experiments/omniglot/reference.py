"""The reference run of lesson 04 (``results/03_omniglot_<size>.json``, see :mod:`warpkit.kit.results`).

``python -m warpkit reference 04 --size medium`` runs :func:`reference_runs` (the sweep of ``medium``, one seed per
worker process) and writes ``results/03_omniglot_medium.json``; the lesson draws it with :func:`read_reference`.
(The file keeps the name it got when the Omniglot lesson was lesson 03.)
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch

from warpkit.experiments.omniglot.config import SIZES, OmniglotConfig
from warpkit.experiments.omniglot.experiment import OmniglotExperiment
from warpkit.experiments.omniglot.results import RunResult
from warpkit.kit.notebook import REPO_ROOT
from warpkit.kit.results import read_reference as read_reference_file

REFERENCE_LESSON = "03_omniglot"


def reference_record(run: RunResult) -> dict:
    """What a reference file keeps of one run."""
    history = run.meta_history
    return {"method": run.method, "alphabets": run.alphabets, "seed": run.seed, "accuracy": run.accuracy,
            "task_accuracies": run.task_accuracies, "selected_iteration": run.selected_iteration,
            "validation_curve": run.validation_curve,
            "warp_change": [h.get("warp_change") for h in history],
            "init_change": [h.get("init_change") for h in history],
            "adaptation_losses": run.adaptation_losses,
            "seconds": round(run.seconds_meta_training + run.seconds_evaluation, 1)}


def _reference_seed(config: OmniglotConfig, seed: int, checkpoint: str | None) -> list[dict]:
    torch.set_num_threads(1)
    results = OmniglotExperiment(config.replace(seeds=(seed,))).run(checkpoint=checkpoint, show_progress=False)
    return [reference_record(run) for run in results.runs]


def reference_runs(size: str | OmniglotConfig = "medium", workers: int = 1,
                   checkpoints: bool = True) -> tuple[dict, list[dict]]:
    """Run the sweep of ``size`` one seed per task, over ``workers`` processes (one torch thread each), and
    return ``(config dict, runs)`` for :func:`warpkit.kit.results.write_reference`. Every seed's numbers depend on
    that seed alone (its networks, tasks and batches are seeded by it), so the split over processes changes
    nothing but the wall time. With ``checkpoints`` each seed resumes from ``checkpoints/`` if interrupted."""
    config = SIZES[size] if isinstance(size, str) else size
    name = size if isinstance(size, str) else "custom"
    paths = {seed: str(REPO_ROOT / "checkpoints" / f"04_omniglot_{name}_reference_seed{seed}.pt") if checkpoints
             else None for seed in config.seeds}
    if workers <= 1:
        per_seed = [_reference_seed(config, seed, paths[seed]) for seed in config.seeds]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            per_seed = list(pool.map(_reference_seed, [config] * len(config.seeds), config.seeds,
                                     [paths[s] for s in config.seeds]))
    runs = [run for seed_runs in per_seed for run in seed_runs]
    order = {(s, n, m): i for i, (s, n, m) in enumerate(OmniglotExperiment.plan_of(config))}
    runs.sort(key=lambda r: order[(r["seed"], r["alphabets"], r["method"])])
    return config.as_dict(), runs


def read_reference(size: str = "medium"):
    """The committed reference run of lesson 04 at ``size`` (a :class:`warpkit.kit.results.Reference`), or None."""
    return read_reference_file(REFERENCE_LESSON, size)


__all__ = ["REFERENCE_LESSON", "read_reference", "reference_record", "reference_runs"]
