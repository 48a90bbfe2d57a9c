"""Algorithm 2's replay schedule, measured on the Omniglot experiment (Flennerhag et al., 2020, Section 3).

WarpGrad's meta-objective is a sum over the buffered points θ_k of the tasks' own trajectories. The authors' code
replays them one at a time, one φ-step each (``replay_chunk_size = 1``); a chunk of P points averaged into one
φ-step is a *different optimiser* (P times fewer φ-steps, each on an averaged gradient), and a chunk can be
replayed in one vmapped call (``replay="batched"``) or by a loop over its points (the same φ-gradient).

:func:`compare_replay_schedules` meta-trains Warp-Leap from one state on the same tasks under several schedules
and records what each does to φ (|Δφ| per meta-iteration, φ-steps, held-out accuracy).
:func:`time_meta_iteration` times one Warp-Leap meta-iteration (the tasks' adaptation plus the replay of every
buffered point) under several replay schemes from the same state on the same batches, and reports the ratios.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any, Sequence

import torch

from warpkit.engine.warp import warp_parameters

#: the default comparison: the paper's one step per point against chunks of 25 replayed in one vmapped call
DEFAULT_SCHEDULES = {"one step per point (paper)": dict(points_per_step=1, passes=1, replay="looped"),
                     "chunks of 25, batched": dict(points_per_step=25, passes=1, replay="batched")}


def _phi_distance(model, start: dict[str, torch.Tensor]) -> float:
    """‖φ − φ_start‖, over every warp parameter."""
    return math.sqrt(sum(float((p.detach() - start[k]).pow(2).sum()) for k, p in warp_parameters(model).items()))


def compare_replay_schedules(experiment, schedules: dict[str, dict] | None = None, seed: int | None = None,
                             alphabets: int | None = None, iterations: int | None = None) -> dict:
    """Meta-train Warp-Leap from the same initial state on the same tasks under several replay schedules and
    measure what each does to φ: |Δφ| and |Δθ₀| per meta-iteration, φ-steps taken, the distance φ ended from
    the identity warps, held-out accuracy (evaluated with the experiment's own protocol, final meta-parameters)
    and seconds. ``experiment``: an :class:`~warpkit.experiments.omniglot.experiment.OmniglotExperiment`;
    ``schedules``: name → replay settings, fields of :class:`~warpkit.engine.options.WarpTraining`
    (``points_per_step``, ``passes``, ``replay``); default: :data:`DEFAULT_SCHEDULES`. Everything else (seed, tasks, batches, learning
    rates) is the same for every schedule."""
    c = experiment.config
    schedules = DEFAULT_SCHEDULES if schedules is None else schedules
    seed = c.seeds[0] if seed is None else seed
    n = c.largest_n if alphabets is None else alphabets
    iterations = c.meta_iterations if iterations is None else iterations
    result: dict[str, dict] = {}
    for name, settings in schedules.items():
        learner = experiment.build("warp-leap", seed)
        learner.warp = dataclasses.replace(learner.warp, **settings)
        start = {k: p.detach().clone() for k, p in warp_parameters(learner.model).items()}
        history, started = [], time.perf_counter()
        for iteration in range(iterations):
            history.append(learner.meta_step(experiment.training_tasks(seed, n, iteration)).as_dict())
        seconds = time.perf_counter() - started
        result[name] = {"settings": dict(settings), "warp_change": [h["warp_change"] for h in history],
                        "init_change": [h["init_change"] for h in history],
                        "warp_steps": sum(h["warp_steps"] for h in history),
                        "phi_distance": _phi_distance(learner.model, start),
                        "accuracy": experiment.evaluate(learner)["accuracy"], "seconds": seconds}
    return {"schedules": result, "seed": seed, "alphabets": n, "iterations": iterations}


def _time_one_variant(experiment, learner, initial: dict, chunk: int, batched: bool, seed: int, n: int) -> dict:
    """One meta-iteration of ``learner`` from the state ``initial`` with the given replay chunks, timed."""
    learner.load_state_dict(copy.deepcopy(initial))
    learner.warp = dataclasses.replace(learner.warp, points_per_step=chunk, replay="batched" if batched else "looped")
    tasks = experiment.training_tasks(seed, n, 0)
    wall, cpu = time.perf_counter(), time.process_time()
    stats = learner.meta_step(tasks)
    if experiment.device.type == "cuda":
        torch.cuda.synchronize(experiment.device)
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "seconds_adapt": stats.seconds_adapt, "seconds_replay": stats.seconds_replay,
            "warp_steps": stats.warp_steps, "points": len(tasks) * experiment.config.inner_steps, "chunk_size": chunk}


def _speedups(timings: dict[str, dict]) -> dict[str, float]:
    """one_point / batched for the whole meta-iteration (wall and CPU) and for the replay alone; looped / batched
    for the replay (what vmap buys)."""
    ratios = {}
    if "batched" in timings and "one_point" in timings:
        b, o = timings["batched"], timings["one_point"]
        ratios["replay_speedup_in_meta_iteration"] = o["seconds"] / b["seconds"]
        ratios["replay_speedup_in_meta_iteration_cpu"] = o["cpu_seconds"] / b["cpu_seconds"]
        ratios["replay_speedup"] = o["seconds_replay"] / b["seconds_replay"]
    if "batched" in timings and "looped" in timings:
        ratios["vmap_speedup_of_replay"] = timings["looped"]["seconds_replay"] / timings["batched"]["seconds_replay"]
    return ratios


def time_meta_iteration(experiment, seed: int | None = None, alphabets: int | None = None,
                        variants: Sequence[str] = ("batched", "one_point")) -> dict:
    """Time one Warp-Leap meta-iteration (adaptation of the meta-batch + replay of all its points) under
    several replay schemes, each from the same state on the same batches:

    * ``"batched"``: chunks of ``replay_chunk_size`` points, each replayed in one vmapped call, one φ-step
      per chunk (warpkit);
    * ``"one_point"``: one point at a time, one φ-step per point (the authors' code: chunk size 1);
    * ``"looped"``: the same chunks as ``"batched"`` but replayed by a Python loop over points (the same
      maths as ``"batched"``; isolates what vmap buys).

    Returns seconds (wall and CPU) of the whole meta-iteration and of its replay per variant, and the
    ratios ``replay_speedup_in_meta_iteration`` (one_point / batched, whole meta-iteration) and
    ``replay_speedup`` (the replay parts alone).
    """
    config = experiment.config
    seed = config.seeds[0] if seed is None else seed
    n = config.largest_n if alphabets is None else alphabets
    schemes = {"batched": (config.replay_chunk_size, True), "one_point": (1, False),
               "looped": (config.replay_chunk_size, False)}
    unknown = [v for v in variants if v not in schemes]
    if unknown:
        raise ValueError(f"time_meta_iteration(): unknown variant(s) {unknown}; choose from {list(schemes)}")
    learner = experiment.build("warp-leap", seed)
    initial = copy.deepcopy(learner.state_dict())
    timings = {variant: _time_one_variant(experiment, learner, initial, *schemes[variant], seed, n)
               for variant in variants}
    result: dict[str, Any] = {"variants": timings, "tasks": config.meta_batch_size,
                              "inner_steps": config.inner_steps, "device": str(experiment.device)}
    return {**result, **_speedups(timings)}


__all__ = ["DEFAULT_SCHEDULES", "compare_replay_schedules", "time_meta_iteration"]
