r"""Why some Warp-RNN runs stall at the maze's medium size (lesson 05, issue 14): saturation, measured.

A tanh unit with |h| near 1 passes almost no gradient (d tanh = 1 − h²), and a warp gate g = 1 + tanh(·) near 0 or
2 does the same for its φ. Adam divides every step by √v̂ + ε, so a weight whose gradient has become tiny still
takes steps of about the full rate when ε (PyTorch's default 1e-8) is far below its gradient's size: noise is
amplified into drift, the drift saturates more units, and learning stalls. Backpropamine's maze script (Miconi et
al., 2019) uses ε = 1e-4, which damps the steps of weights whose gradient is below about 1e-4.

This script trains the Warp-RNN at the medium size (its settings from ``TRAINING``, φ's rate changed with
``--warp-lr``: 1e-3 was its rate before round 3 of the sweep) with the two values of ε, for the given seeds, and
records every ``--every`` episodes, measured on the episode just played:

* the fraction of hidden activations with |h| > 0.95 (saturated tanh units),
* the fraction of warp gates below 0.1 or above 1.9 (saturated gates),
* how far θ and φ have moved: ‖θ − θ₀‖ / ‖θ₀‖ and ‖φ − φ₀‖ / ‖φ₀‖,
* the mean reward over the last ``--every`` episodes.

    .venv/bin/python benchmarks/maze_saturation.py --seeds 0 4 --workers 2   # benchmarks/results/maze_saturation.json
    .venv/bin/python benchmarks/maze_saturation.py --seeds 0 4 --warp-lr 1e-3   # adds the runs at φ rate 1e-3

Each finished run is kept in ``<out>.partial.json`` and the output file keeps the runs of other φ rates; started
again, the script skips the runs it has (a run takes a few minutes on one core). One torch thread per process;
progress lines go to the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the two values of Adam's ε compared: PyTorch's default and Backpropamine's
EPSILONS = (1e-8, 1e-4)


def _distance(params, start) -> float:
    """‖p − p₀‖ / ‖p₀‖ over a list of tensors."""
    import torch

    moved = torch.sqrt(sum(((p.detach() - p0) ** 2).sum() for p, p0 in zip(params, start)))
    return float(moved / torch.sqrt(sum((p0 ** 2).sum() for p0 in start)))


def settings(eps: float, warp_lr: float | None):
    """The Warp-RNN's training settings of today with Adam's ε (and φ's rate, unless None) changed."""
    from warpkit.experiments import maze as rl

    config = replace(rl.training_config("warp_rnn"), adam_eps=eps)
    return config if warp_lr is None else replace(config, warp_lr=warp_lr)


def one_run(seed: int, eps: float, episodes: int, every: int, warp_lr: float | None = None) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from warpkit.envs.maze import BatchedMaze
    from warpkit.experiments import maze as rl
    from warpkit.models.maze_agents import make_agent

    medium = rl.SIZES["medium"]
    config = settings(eps, warp_lr)
    torch.manual_seed(seed)  # as train_agent: the same seed gives the same run
    agent = make_agent("warp_rnn")
    trainer = rl.ActorCriticTrainer(agent, BatchedMaze(medium["num_mazes"], rl.maze_of(medium)), config, seed=seed)
    theta0 = [p.detach().clone() for p in trainer.task_params]
    phi0 = [p.detach().clone() for p in trainer.warp_params]
    hidden, gates = [], []
    features, warp_gates = agent.features, agent.warp_gates

    def recording_features(x, state):  # the agent's own step, its activations kept for the statistics
        h, state = features(x, state)
        hidden.append(h.detach())
        return h, state

    def recording_gates(*args, **kwargs):
        g, state = warp_gates(*args, **kwargs)
        gates.append(torch.cat([part.detach() for part in g], -1))
        return g, state

    agent.features, agent.warp_gates = recording_features, recording_gates
    rows, start = [], time.perf_counter()
    for episode in range(1, episodes + 1):
        hidden.clear(), gates.clear()
        trainer.train_episode()
        if episode % every == 0:
            h, g = torch.stack(hidden).abs(), torch.stack(gates)
            rows.append({"episode": episode, "reward": round(float(np.mean(trainer.rewards[-every:])), 2),
                         "saturated_units": round(float((h > 0.95).float().mean()), 4),
                         "saturated_gates": round(float(((g < 0.1) | (g > 1.9)).float().mean()), 4),
                         "theta_moved": round(_distance(trainer.task_params, theta0), 4),
                         "phi_moved": round(_distance(trainer.warp_params, phi0), 4)})
    return {"seed": seed, "adam_eps": eps, "config": asdict(config), "rows": rows,
            "score": round(float(np.mean(trainer.rewards[-medium["scored_episodes"]:])), 3),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 4])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=int, default=50, help="episodes between two measurements")
    parser.add_argument("--warp-lr", type=float, default=None, help="φ's rate instead of today's")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "maze_saturation.json"))
    args = parser.parse_args()
    from warpkit.experiments import maze as rl

    medium = rl.reference_config("medium")
    if medium["num_episodes"] % args.every:
        raise SystemExit(f"--every must divide the medium size's {medium['num_episodes']} episodes")
    out, partial = Path(args.out), Path(args.out).with_suffix(".partial.json")
    kept = json.loads(out.read_text(encoding="utf-8"))["runs"] if out.exists() else []
    done = kept + (json.loads(partial.read_text(encoding="utf-8")) if partial.exists() else [])
    done = [r for r in done if r["config"] == asdict(settings(r["adam_eps"], r["config"]["warp_lr"]))]
    warp_lr = settings(1e-8, args.warp_lr).warp_lr

    def has(seed, eps):
        return any(r["seed"] == seed and r["adam_eps"] == eps and r["config"]["warp_lr"] == warp_lr for r in done)

    jobs = [(seed, eps) for seed in args.seeds for eps in EPSILONS if not has(seed, eps)]
    started, load = time.perf_counter(), os.getloadavg()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(one_run, seed, eps, medium["num_episodes"], args.every, args.warp_lr)
                   for seed, eps in jobs]
        for future in futures:
            run = future.result()
            done.append(run)
            partial.write_text(json.dumps(done) + "\n")
            print(f"seed {run['seed']}, Adam ε {run['adam_eps']:g}, φ rate {run['config']['warp_lr']:g}: score "
                  f"{run['score']:.1f} ({run['seconds']:.0f} s)", flush=True)
    runs = sorted(done, key=lambda r: (-r["config"]["warp_lr"], r["seed"], r["adam_eps"]))
    seconds = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps({"medium": medium, "every": args.every, "wall_seconds": seconds, "load_at_start": load,
                               "runs": runs}, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
