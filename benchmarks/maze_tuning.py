r"""Learning-rate sweep of the maze agents (lesson 05, issue 14): every agent at a few task learning rates (and,
for the Hebbian RNN, two gradient-clipping thresholds), 2 seeds, shortened runs of the medium size's maze.

    .venv/bin/python benchmarks/maze_tuning.py --workers 2        # writes benchmarks/results/maze_tuning.json

Each run trains one agent on ``--episodes`` episodes of the medium size's maze (its maze side, episode length,
wall penalty and number of mazes, from ``warpkit.experiments.maze.SIZES["medium"]``) and reports the mean reward per episode over its last ``--scored`` episodes, its best 25-episode mean
(``peak``; a peak far above the final score is a collapse) and its wall time. The settings come from the papers'
code: Adam 1e-3, clip 4 is the WarpGrad maze script's task optimiser (Flennerhag et al., 2020, Section 4.3);
Adam 1e-4, clip 4 is the Backpropamine maze script's (Miconi et al., 2019, Section 4.2). Wang et al. (2016) tuned
their learning rate per task and give none for this maze, so the LSTM's is swept. Every run is checkpointed under
``checkpoints/maze_tuning/`` and resumes when the script is started again. One torch thread per process.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: (agent, agent keyword arguments, task learning rate, gradient clipping)
#: (``hebbian_plain`` is the plain Hebbian rule of Miconi et al., 2018; ``hebbian``, the lesson's baseline, is
#: Backpropamine's neuromodulated rule, tried at the plain rule's best setting)
GRID = ([("l2rl", {}, lr, 4.0) for lr in (1e-4, 1e-3, 3e-3, 1e-2)]
        + [("l2rl", {"hidden_size": 179}, lr, 4.0) for lr in (1e-3, 3e-3, 1e-2)]
        + [("warp_rnn", {}, lr, 4.0) for lr in (1e-3, 3e-3, 1e-2)]
        + [("hebbian_plain", {}, lr, clip) for lr, clip in ((1e-4, 4.0), (3e-4, 4.0), (1e-3, 4.0), (1e-3, 1.0))]
        + [("hebbian", {}, 1e-3, 1.0)])


def one_run(agent: str, kwargs: dict, lr: float, clip: float, seed: int, episodes: int, scored: int) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from warpkit.experiments import maze as rl

    medium = rl.SIZES["medium"]

    config = rl.ActorCriticConfig(lr=lr, grad_clip=clip)
    tag = f"{agent}{kwargs.get('hidden_size', '')}_lr{lr:g}_clip{clip:g}_seed{seed}"
    start = time.perf_counter()
    run = rl.train_agent(agent, episodes, maze=rl.maze_of(medium), num_mazes=medium["num_mazes"], seed=seed,
                         config=config, agent_kwargs=kwargs or None, show_progress=False,
                         checkpoint_path=ROOT / "checkpoints" / "maze_tuning" / f"{tag}.pt", checkpoint_every=25)
    smooth = np.convolve(run.rewards, np.ones(25) / 25, mode="valid")
    return {"maze": {k: medium[k] for k in ("maze_size", "episode_length", "wall_penalty", "num_mazes")},"agent": agent, "agent_kwargs": kwargs, "lr": lr, "grad_clip": clip, "seed": seed,
            "score": float(run.rewards[-scored:].mean()), "peak": float(smooth.max()),
            "peak_episode": int(smooth.argmax()) + 25, "seconds": round(time.perf_counter() - start, 1),
            "rewards": [round(float(r), 2) for r in run.rewards]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--scored", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "maze_tuning.json"))
    args = parser.parse_args()
    jobs = [(a, k, lr, c, s) for a, k, lr, c in GRID for s in args.seeds]
    jobs.sort(key=lambda job: not job[0].startswith("hebbian"))  # the slowest first, so the pool finishes evenly
    started, load = time.perf_counter(), os.getloadavg()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(one_run, *job, args.episodes, args.scored) for job in jobs]
        runs = []
        for future in futures:
            runs.append(future.result())
            r = runs[-1]
            print(f"{r['agent']} {r['agent_kwargs']} lr {r['lr']:g} clip {r['grad_clip']:g} seed {r['seed']}: "
                  f"score {r['score']:.1f} peak {r['peak']:.1f}@{r['peak_episode']} ({r['seconds']:.0f} s)",
                  flush=True)
    Path(args.out).write_text(json.dumps({"episodes": args.episodes, "scored": args.scored, "seeds": args.seeds,
                                          "wall_seconds": round(time.perf_counter() - started, 1),
                                          "load_at_start": load, "load_at_end": os.getloadavg(), "runs": runs},
                                         indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
