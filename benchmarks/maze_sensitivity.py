r"""How far one seed's result moves when the floating-point numbers change in their last digit (lesson 05's
appendix, issue 14): what another machine or another thread count does to a maze run.

    .venv/bin/python benchmarks/maze_sensitivity.py        # writes benchmarks/results/maze_sensitivity.json

For each agent, seed 0 at the fast size twice, one torch thread: as it is, and with every initial weight
multiplied by 1 + 2⁻²³ (one float32 ulp, the size of the differences another order of summation makes). Both
runs are deterministic; the difference of their scores (mean reward over the last ``scored_episodes``) says how
much a last-digit change is amplified by training.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from warpkit.experiments import maze as rl
from warpkit.models.maze_agents import make_agent

ROOT = Path(__file__).resolve().parents[1]
NUDGE = 1 + 2.0 ** -23


def nudged_agent(name: str, **kwargs):
    """``make_agent(name)`` with every parameter multiplied by :data:`NUDGE`."""
    agent = make_agent(name, **kwargs)
    with torch.no_grad():
        for parameter in agent.parameters():
            parameter.mul_(NUDGE)
    return agent


def score(name: str, nudge: bool) -> float:
    fast = rl.SIZES["fast"]
    rl.make_agent = nudged_agent if nudge else make_agent  # train_agent builds its agent through this name
    try:
        run = rl.train_agent(name, fast["num_episodes"], maze=rl.maze_of(fast), num_mazes=fast["num_mazes"], seed=0,
                             show_progress=False)
    finally:
        rl.make_agent = make_agent
    return round(float(run.rewards[-fast["scored_episodes"]:].mean()), 2)


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as the lesson
    started, load = time.perf_counter(), os.getloadavg()
    runs = {name: {"as_is": score(name, False), "nudged": score(name, True)} for name in rl.SIZES["fast"]["agents"]}
    out = ROOT / "benchmarks" / "results" / "maze_sensitivity.json"
    out.write_text(json.dumps({"size": "fast", "config": rl.reference_config("fast"), "seed": 0,
                               "nudge": "every initial weight × (1 + 2^-23)",
                               "runs": runs, "wall_seconds": round(time.perf_counter() - started, 1),
                               "load_at_start": load}, indent=1) + "\n")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
