r"""Levers on the Warp-RNN at the maze's medium size (lesson 05, issue 14): each row changes ONE setting of the
Warp-RNN's training (:data:`warpkit.experiments.maze.TRAINING`) and trains the medium size's full run (maze,
mazes per episode and episodes from ``SIZES["medium"]``) for a few seeds.

    .venv/bin/python benchmarks/maze_levers.py --workers 2     # writes benchmarks/results/maze_levers.json
    .venv/bin/python benchmarks/maze_levers.py --seeds 0 1 2 3 4 5 6 7 --levers "φ every episode" \
        --out benchmarks/results/maze_levers_phi_every_episode_8_seeds.json   # a lever on every seed
    .venv/bin/python benchmarks/maze_levers.py --agent no_warp ...   # the same change to an ablation
    .venv/bin/python benchmarks/maze_levers.py --agent hebbian --levers "as trained" --episodes 1000 \
        --out benchmarks/results/maze_probe_1000_hebbian.json          # a longer run at the settings of the time
    .venv/bin/python benchmarks/maze_levers.py --agent l2rl --episodes 1000 --levers "as trained" \
        "Adam ε 1e-4 (Backpropamine's)" --out benchmarks/results/maze_levers_eps_l2rl.json   # round 3
    .venv/bin/python benchmarks/maze_levers.py --agent l2rl --episodes 1000 --seeds 2 3 4 5 --levers "as trained" \
        "Adam ε 1e-4 (Backpropamine's)" --out benchmarks/results/maze_levers_eps_l2rl_seeds_2_5.json  # its test

Round 3 ran when the medium size had become 1,000 episodes long: Adam's ε and, beside it, the rates as a factor
("×3", "÷3") of the agent's own, so that one lever fits every agent; each winner that changed an agent's settings
was re-run on seeds 2–5 beside the settings before it (``maze_levers_eps_<agent>_seeds_2_5.json``). A run whose
finished checkpoint already exists (the same settings and seed) is loaded, not trained again: its ``seconds`` is
then the time to load it. Later rows combine levers (their names say so). ``--agent`` applies a lever to another agent: to an ablation, to
check whether the lever's gain needs the warp, and to each baseline, so that every agent is offered the same kinds
of change (``maze_levers_<agent>.json``). The highest mean on seeds 0 and 1, the base included, became each agent's
setting in :data:`warpkit.experiments.maze.TRAINING` (a test checks it), and the reference was re-made with them;
each file keeps the base it was measured against (the reference of its time, whose settings it records).

Why these levers: at the medium size the warp takes one Adam step every 30 episodes (the authors' schedule, made
for runs of 10⁶ episodes), i.e. only ``num_episodes / 30`` φ-steps in a whole run, so φ may not have moved far
enough to precondition anything; the task learning rate and the gradient clipping are the settings in which the
Warp-RNN's training differs from the best baseline's (the Hebbian agent's clip 1). The table in the JSON puts each
lever beside the committed reference run (``results/05_maze_medium.json``) on the same seeds: its Warp-RNN is the
"base" row, its best other agent the bar to beat. Every run is checkpointed under ``checkpoints/maze_levers/`` and
resumes when the script is started again; progress lines go to the terminal. One torch thread per process.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: lever name → the one change to the Warp-RNN's ActorCriticConfig
LEVERS = {
    "φ every 5 episodes": {"warp_interval": 5},
    "φ every episode": {"warp_interval": 1},
    "task rate 3e-3": {"lr": 3e-3},
    "clip 1 (as the Hebbian agent)": {"grad_clip": 1.0},
    "φ rate 1e-2": {"warp_lr": 1e-2},
    "task rate 3e-3 with clip 1 (two changes)": {"lr": 3e-3, "grad_clip": 1.0},
    "all three: φ every episode, task rate 3e-3, clip 1": {"warp_interval": 1, "lr": 3e-3, "grad_clip": 1.0},
    # round 2: one change on top of the three (Warp-RNN), and the rates its baselines had not been given
    "all three, φ rate 3e-3": {"warp_interval": 1, "lr": 3e-3, "grad_clip": 1.0, "warp_lr": 3e-3},
    "all three, φ rate 3e-4": {"warp_interval": 1, "lr": 3e-3, "grad_clip": 1.0, "warp_lr": 3e-4},
    "all three, task rate 1e-2": {"warp_interval": 1, "lr": 1e-2, "grad_clip": 1.0},
    "task rate 3e-2": {"lr": 3e-2},
    "task rate 3e-2 with clip 1": {"lr": 3e-2, "grad_clip": 1.0},
    "task rate 1e-1": {"lr": 1e-1},
    # round 3, at 1,000 episodes: Backpropamine's Adam ε (Miconi et al. 2019's maze script), offered to every agent
    "Adam ε 1e-4 (Backpropamine's)": {"adam_eps": 1e-4},
    # ... and with it, θ's rate a factor 3 either side (every agent), φ's rate ×3 (the Warp-RNN)
    "Adam ε 1e-4, θ rate ×3": {"adam_eps": 1e-4, "lr": "×3"},
    "Adam ε 1e-4, θ rate ÷3": {"adam_eps": 1e-4, "lr": "÷3"},
    "Adam ε 1e-4, φ rate ×3": {"adam_eps": 1e-4, "warp_lr": "×3"},
    # the agent's own settings, unchanged (with --episodes: does a longer run change the ranking?)
    "as trained": {},
}


def scaled(value: float, change) -> float:
    """A lever's new value: ``change`` itself, or ``value`` times or divided by 3 for "×3" / "÷3" (a rate relative
    to the agent's own, so that one lever fits every agent)."""
    if change == "×3":
        return value * 3
    if change == "÷3":
        return value / 3
    return change


def one_run(lever: str, seed: int, agent: str = "warp_rnn", episodes: int | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    from warpkit.experiments import maze as rl

    medium = {**rl.SIZES["medium"], **({"num_episodes": episodes} if episodes else {})}
    config = rl.training_config(agent)
    change = {k: scaled(getattr(config, k), v) for k, v in LEVERS[lever].items()}
    config = replace(config, **change)
    tag = "_".join(f"{k}{v:g}" for k, v in change.items()) + (f"_{episodes}ep" if episodes else "") + f"_seed{seed}"
    start = time.perf_counter()
    run = rl.train_agent(agent, medium["num_episodes"], maze=rl.maze_of(medium), num_mazes=medium["num_mazes"],
                         seed=seed, config=config, show_progress=False, checkpoint_every=25,
                         checkpoint_path=ROOT / "checkpoints" / "maze_levers" / f"{agent}_{tag}.pt")
    return {"lever": lever, "agent": agent, "config": asdict(config), "seed": seed,
            "score": round(float(run.rewards[-medium["scored_episodes"]:].mean()), 3),
            "curve": [round(float(r), 2) for r in run.rewards], "seconds": round(time.perf_counter() - start, 1)}


def reference_rows(seeds: list[int]) -> dict:
    """The committed medium reference on ``seeds``: the Warp-RNN (the base row) and every other agent's scores."""
    from warpkit.experiments import maze as rl

    reference = rl.read_reference("medium")
    if reference is None or reference.stale_fields(rl.reference_config("medium")):
        print("results/05_maze_medium.json is missing or was made with other settings: the table has no reference "
              "rows (run the lever \"as trained\" for the base)", flush=True)
        return {}
    scores = rl.reference_scores(reference)
    return {agent: {seed: per_seed[seed] for seed in seeds if seed in per_seed} for agent, per_seed in scores.items()}


def kept_runs(path: Path, medium: dict, seeds: list[int], rerun: list[str]) -> list[dict]:
    """The runs of an earlier table at ``path`` for levers not re-run now (same medium size and seeds only), so that
    a lever can be added without re-training the others."""
    if not path.exists():
        return []
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("medium") != medium or old.get("seeds") != seeds:
        return []
    return [run for run in old["runs"] if run["lever"] not in rerun]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--agent", default="warp_rnn", help="the agent the levers change (an ablation, to check "
                        "whether a lever's gain needs the warp)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per run instead of the medium size's "
                        "(the file records it; the lesson shows only files of the medium size itself)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "maze_levers.json"))
    args = parser.parse_args()
    reference = reference_rows(args.seeds)
    started, load = time.perf_counter(), os.getloadavg()
    jobs = [(lever, seed, args.agent, args.episodes) for lever in args.levers for seed in args.seeds]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        runs = []
        for run in pool.map(one_run, *zip(*jobs)):
            runs.append(run)
            print(f"{run['lever']} seed {run['seed']}: score {run['score']:.1f} ({run['seconds']:.0f} s)", flush=True)
    from warpkit.experiments import maze as rl

    medium = {**rl.reference_config("medium"), **({"num_episodes": args.episodes} if args.episodes else {})}
    runs = kept_runs(Path(args.out), medium, args.seeds, args.levers) + runs
    levers = [lever for lever in LEVERS if any(r["lever"] == lever for r in runs)]
    table = {lever: float(np.mean([r["score"] for r in runs if r["lever"] == lever])) for lever in levers}
    Path(args.out).write_text(json.dumps({
        "medium": medium, "seeds": args.seeds,
        "wall_seconds": round(time.perf_counter() - started, 1), "load_at_start": load,
        "load_at_end": os.getloadavg(), "reference_on_these_seeds": reference,
        "mean_score_by_lever": {k: round(v, 2) for k, v in table.items()}, "runs": runs}, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
