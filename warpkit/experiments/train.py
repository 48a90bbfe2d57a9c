r"""``python -m warpkit train``: the long experiments outside the notebooks, on one process or many.

    python -m warpkit train omniglot|continual|maze --size SIZE --out DIR      # one process (CPU or one GPU)
    python -m warpkit train omniglot --size full --out runs/omniglot             # one process (CPU or one GPU)
    torchrun --nproc_per_node=4 -m warpkit train omniglot --size full --out runs/omniglot   # 4 GPUs, one node
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \
        -m warpkit train omniglot --size full --out runs/omniglot                 # on each of 2 nodes

Every process holds the whole meta-batch's tasks and adapts its share; gradients are all-reduced
(:mod:`warpkit.engine.distributed`), so every process holds the same θ_0 and φ after every meta-step and the
run gives, to rounding, the numbers of one process. Only rank 0 writes.

What it writes in ``--out``
---------------------------
* ``omniglot``: ``04_omniglot_<size>_seed<seed>.pt``, the sweep checkpoint of
  :meth:`warpkit.experiments.omniglot.OmniglotExperiment.run` (saved as it goes; running the command again
  resumes it, on any number of processes), and ``omniglot_<size>_seed<seed>.json``, the results (every run's
  accuracies and meta-training history). The lesson reads the finished checkpoint instead of re-running:
  ``python -m warpkit run 04 --size full -p CHECKPOINT <out>/04_omniglot_full_seed0.pt``.
* ``continual``: ``05_continual_<size>_seed<seed>.pt`` (the :func:`warpkit.experiments.continual.meta_train`
  checkpoint; lesson 06's ``CHECKPOINT`` parameter) and ``continual_<size>_seed<seed>.json`` (histories,
  validation, kept iterations, held-out summaries).

The sizes and configurations are the lessons' (``--set FIELD=VALUE`` changes a field of the size's config,
e.g. ``--set meta_iterations=20``). ``--seed`` is the lessons' ``SEED``.

* ``maze``: lesson 05 trains agents by advantage actor-critic, continually, on a batch of mazes: there is no
  meta-batch of independent tasks to split, so its processes split the *runs* instead (every agent × seed is
  one independent run; rank r trains runs r, r + P, r + 2P, …, each from its own seed, so every run's numbers
  are those of one process). Each run is checkpointed by the rank that trains it to
  ``04_maze/<size>/<agent>_seed<seed>.pt`` (lesson 05's checkpoint files: ``-p CHECKPOINT_DIR <out>/04_maze``),
  and rank 0 gathers the training curves into ``maze_<size>_seed<seed>.json``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from warpkit.engine import distributed
from warpkit.engine.distributed import Communicator
from warpkit.kit.checkpoint import CheckpointError, Checkpointer

EXPERIMENTS = ("omniglot", "continual", "maze")
#: fields of a results file that measure time, not the maths: left out when two runs are compared
TIMING_KEYS = ("seconds", "seconds_adapt", "seconds_replay", "seconds_meta_training", "seconds_evaluation",
               "wall_seconds", "world_size", "backend", "device", "started", "processes", "rank")


# ----------------------------------------------------------------------------------------------------------
# checkpoints on several processes
# ----------------------------------------------------------------------------------------------------------
class DistributedCheckpointer(Checkpointer):
    """A :class:`~warpkit.kit.checkpoint.Checkpointer` for a job of several processes: rank 0 reads the file and
    sends its state to every rank (so a multi-node job needs no shared file system), and only rank 0 writes.
    An unreadable checkpoint raises :class:`~warpkit.kit.checkpoint.CheckpointError` on *every* rank."""

    def __init__(self, path, communicator: Communicator | None = None, every: int = 10):
        super().__init__(path, every=every)
        self.communicator = communicator or Communicator()

    def restore(self):
        if self.path is None:
            return None
        if not self.communicator.is_distributed:
            return super().restore()
        outcome = None
        if self.communicator.is_main:
            try:
                outcome = ("state", super().restore())
            except CheckpointError as error:
                outcome = ("error", str(error))
        outcome = self.communicator.broadcast_object(outcome)
        if outcome[0] == "error":
            self._unreadable = True
            raise CheckpointError(outcome[1])
        return outcome[1]

    def save(self, state):
        return super().save(state) if self.communicator.is_main else None

    def maybe_save(self, iteration, make_state, final=False):
        if not self.communicator.is_main:  # do not even build the state: only rank 0 writes
            return None
        return super().maybe_save(iteration, make_state, final)


def _write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1, default=_json_default))
    temporary.replace(path)
    return path


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    changes = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set takes FIELD=VALUE, got {pair!r}")
        name, text = pair.split("=", 1)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word: a string
        changes[name.strip()] = tuple(value) if isinstance(value, list) else value
    return changes


# ----------------------------------------------------------------------------------------------------------
# the experiments
# ----------------------------------------------------------------------------------------------------------
def train_omniglot(size: str, out: Path, communicator: Communicator, seed: int = 0, data: str | None = None,
                   overrides: dict | None = None, show_progress: bool = True) -> dict:
    """Lesson 04's sweep at ``size`` (its ``config_for(size, seed, data)``, with ``overrides``), every learner's
    meta-batches split over the processes. Returns the results dict (rank 0 also writes it)."""
    from warpkit.experiments import omniglot  # lazy: only the experiment that runs is imported

    config = omniglot.config_for(size, seed_offset=seed, data_source=data)
    if overrides:
        config = config.replace(**overrides)

    class Experiment(omniglot.OmniglotExperiment):
        def build(self, method, learner_seed):
            return distributed.distribute(super().build(method, learner_seed), communicator)

        def images(self, alphabet):  # in the default dtype (float64 under --dtype float64)
            images = super().images(alphabet)
            if images.dtype != torch.get_default_dtype():
                images = self._images[alphabet] = images.to(torch.get_default_dtype())
            return images

    experiment = Experiment(config, device=communicator.device)
    checkpoint = out / f"04_omniglot_{size}_seed{seed}.pt"
    checkpointer = DistributedCheckpointer(checkpoint, communicator, every=config.checkpoint_every)
    started = time.perf_counter()
    results = experiment.run(checkpoint=checkpointer, show_progress=show_progress and communicator.is_main)
    payload = {"experiment": "omniglot", "size": size, "seed": seed, "config": config.as_dict(),
               "source": results.source, "test_alphabets": list(experiment.test_alphabets),
               "runs": results.state(), "table": results.format_table(), "checkpoint": str(checkpoint),
               "dtype": str(torch.get_default_dtype()).replace("torch.", ""),
               "wall_seconds": time.perf_counter() - started, "world_size": communicator.world_size,
               "backend": communicator.backend, "device": str(communicator.device)}
    if communicator.is_main:
        _write_json(out / f"omniglot_{size}_seed{seed}.json", payload)
    return payload


def train_continual(size: str, out: Path, communicator: Communicator, seed: int = 0,
                    overrides: dict | None = None, show_progress: bool = True) -> dict:
    """Lesson 05's meta-training at ``size`` (the same samplers, learners, validation and checkpoint format as the
    notebook at ``SEED = seed``), each meta-learner's meta-batches split over the processes."""
    from warpkit.experiments import continual  # lazy: only the experiment that runs is imported

    if torch.get_default_dtype() != torch.float32:
        raise SystemExit("train continual: --dtype float64 is not supported (the sine tasks make float32 data)")
    if size not in continual.SIZES:
        raise SystemExit(f"train continual: unknown size {size!r}; choose one of {list(continual.SIZES)}")
    config = continual.SIZES[size]
    if overrides:
        config = dataclasses.replace(config, **overrides)
    device = communicator.device
    train_sampler = config.sampler(seed=seed, device=device)
    validation = config.sampler(seed=seed + 20_000, device=device).sample_many(config.num_validation)
    learners = continual.build_learners(config, seed=seed, device=device)
    meta_learners = {name: distributed.distribute(learners[name], communicator) for name in ("warp", "sgd_meta_init")}
    checkpoint = out / f"05_continual_{size}_seed{seed}.pt"
    checkpointer = DistributedCheckpointer(checkpoint, communicator, every=10)
    started = time.perf_counter()
    training = continual.meta_train(meta_learners, train_sampler, config.meta_iterations, config.meta_batch_size,
                                    checkpointer, config, show_progress and communicator.is_main, validation,
                                    config.validate_every)
    wall = time.perf_counter() - started
    payload = {"experiment": "continual", "size": size, "seed": seed, "config": config.as_dict(),
               "history": training.history, "validation": training.validation,
               "best_iteration": training.best_iteration, "diverged": training.diverged,
               "dtype": str(torch.get_default_dtype()).replace("torch.", ""),
               "checkpoint": str(checkpoint), "wall_seconds": wall, "world_size": communicator.world_size,
               "backend": communicator.backend, "device": str(device)}
    if communicator.is_main:
        held_out = config.sampler(seed=seed + 10_000, device=device).sample_many(config.num_held_out)
        payload["held_out"] = {name: continual.evaluate_learner(learner.model, held_out, config.inner_lr).summary()
                               for name, learner in learners.items()}
        _write_json(out / f"continual_{size}_seed{seed}.json", payload)
    return payload


def train_maze(size: str, out: Path, communicator: Communicator, seed: int = 0, overrides: dict | None = None,
               show_progress: bool = True) -> dict:
    """Lesson 04's training runs at ``size`` (every agent of the size and ``"random"``, seeds SEED, SEED+1, …),
    split over the processes run by run (module docstring); ``overrides`` change the size's settings."""
    from warpkit.envs.maze import MazeConfig  # lazy: only the experiment that runs is imported
    from warpkit.experiments import maze as rl  # lazy: only the experiment that runs is imported

    if size not in rl.SIZES:
        raise SystemExit(f"train maze: unknown size {size!r}; choose one of {list(rl.SIZES)}")
    settings = {**rl.SIZES[size], **(overrides or {})}
    unknown = sorted(set(settings) - set(rl.SIZES[size]))
    if unknown:
        raise SystemExit(f"train maze: no setting(s) {unknown}; the settings are {list(rl.SIZES[size])}")
    torch.set_flush_denormal(True)  # as the lesson: decaying Hebbian traces would crawl through denormal floats
    maze = MazeConfig(size=settings["maze_size"], episode_length=settings["episode_length"],
                      wall_penalty=settings["wall_penalty"])
    runs = [(name, seed + i) for name in list(settings["agents"]) + ["random"] for i in range(settings["seeds"])]
    mine = runs[communicator.rank::communicator.world_size]
    checkpoints = out / "04_maze" / size
    started = time.perf_counter()
    finished = {}
    for name, run_seed in mine:
        run = rl.train_agent(name, settings["num_episodes"], maze=maze, num_mazes=settings["num_mazes"],
                             seed=run_seed, device=communicator.device,
                             checkpoint_path=checkpoints / f"{name}_seed{run_seed}.pt",
                             checkpoint_every=max(1, min(100, settings["num_episodes"] // 5)),
                             show_progress=show_progress and communicator.is_main)
        finished[f"{name}_seed{run_seed}"] = {"agent": name, "seed": run_seed, "rewards": run.rewards.tolist(),
                                              "losses": run.losses.tolist(), "seconds": run.seconds,
                                              "resumed_from": run.resumed_from, "rank": communicator.rank}
    gathered = {}
    for part in communicator.all_gather_object(finished):
        gathered.update(part)
    payload = {"experiment": "maze", "size": size, "seed": seed, "settings": settings, "maze": maze.as_dict(),
               "runs": {f"{n}_seed{s}": gathered[f"{n}_seed{s}"] for n, s in runs},
               "checkpoints": str(checkpoints), "wall_seconds": time.perf_counter() - started,
               "world_size": communicator.world_size, "backend": communicator.backend,
               "device": str(communicator.device)}
    if communicator.is_main:
        _write_json(out / f"maze_{size}_seed{seed}.json", payload)
    return payload


# ----------------------------------------------------------------------------------------------------------
# comparing two results files
# ----------------------------------------------------------------------------------------------------------
def compare_results(first: Any, second: Any, rtol: float = 1e-6, atol: float = 1e-9, path: str = "") -> list[str]:
    """Where two results (dicts from the JSON files) differ beyond |a − b| ≤ atol + rtol·|b| in a number (NaN
    matches NaN) or at all in anything else; timing and placement fields (:data:`TIMING_KEYS`) are skipped.
    Empty list: they match."""
    if isinstance(first, dict) and isinstance(second, dict):
        problems = []
        for key in sorted(set(first) | set(second), key=str):
            if key in TIMING_KEYS or key in ("checkpoint", "checkpoints", "table"):  # paths, and text of numbers
                continue
            if key not in first or key not in second:
                problems.append(f"{path}/{key}: only in {'the first' if key in first else 'the second'}")
                continue
            problems += compare_results(first[key], second[key], rtol, atol, f"{path}/{key}")
        return problems
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)):
        if len(first) != len(second):
            return [f"{path}: {len(first)} entries against {len(second)}"]
        return [problem for i, (a, b) in enumerate(zip(first, second))
                for problem in compare_results(a, b, rtol, atol, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(first, numbers) and isinstance(second, numbers) and not isinstance(first, bool):
        if first == second or abs(first - second) <= atol + rtol * abs(second):
            return []
        if math.isnan(first) and math.isnan(second):  # "not measured" on both sides
            return []
        return [f"{path}: {first!r} against {second!r} (difference {abs(first - second):.3g})"]
    return [] if first == second else [f"{path}: {first!r} against {second!r}"]


# ----------------------------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m warpkit train",
        description="Meta-train a lesson's experiment outside the notebook, on one process or under torchrun.")
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--size", default="fast", help="the lesson's size (fast, medium, full, ...)")
    parser.add_argument("--out", required=True, help="folder for the checkpoint and the results file")
    parser.add_argument("--seed", type=int, default=0, help="the lesson's SEED")
    parser.add_argument("--device", default="auto", help="auto (a GPU per process if any), cpu or cuda")
    parser.add_argument("--backend", default="auto", choices=("auto", "gloo", "nccl"))
    parser.add_argument("--timeout", type=float, default=distributed.DEFAULT_TIMEOUT_SECONDS,
                        help="seconds a collective waits for the other processes before the job fails")
    parser.add_argument("--data", default=None, help="omniglot only: auto, omniglot or glyphs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="change a field of the size's configuration (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads per process")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="omniglot: floating-point type of networks and data (float64: to compare runs closely)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


@record  # under torchrun: a failing rank's traceback is written where the launcher reports it
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_default_dtype(getattr(torch, args.dtype))
    communicator = distributed.init(args.backend, timeout_seconds=args.timeout,
                                    device=None if args.device == "auto" else args.device)
    try:
        distributed.seed_process(args.seed, communicator)
        out = Path(args.out)
        overrides = _parse_overrides(args.overrides)
        started = time.perf_counter()
        if args.experiment == "omniglot":
            train_omniglot(args.size, out, communicator, args.seed, args.data, overrides, not args.no_progress)
        elif args.experiment == "continual":
            train_continual(args.size, out, communicator, args.seed, overrides, not args.no_progress)
        else:
            train_maze(args.size, out, communicator, args.seed, overrides, not args.no_progress)
        if communicator.is_main:
            print(f"train {args.experiment} --size {args.size}: {time.perf_counter() - started:.1f} s on "
                  f"{communicator.world_size} process(es) ({communicator.backend or 'single'}, "
                  f"{communicator.device}); results in {out}", flush=True)
    finally:
        distributed.shutdown(communicator)
    return 0


__all__ = ["DistributedCheckpointer", "EXPERIMENTS", "TIMING_KEYS", "build_parser", "compare_results", "main",
           "train_continual", "train_maze", "train_omniglot"]
