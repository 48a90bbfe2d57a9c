"""A tiny WarpGrad meta-training that ``tests/test_distributed.py`` launches with ``torchrun`` (or runs in-process).

Float64, a two-layer network with a residual MLP warp, regression tasks whose batches are random draws from the
task's own seeded generator (so a task's batches do not depend on which process adapts it). Every rank writes
``<out>/rank<r>.pt`` with its final θ_0, φ and per-step statistics.

    torchrun --nproc_per_node=2 tests/distributed_worker.py --out DIR [--objective exact] [--init leap] ...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

torch.set_num_threads(1)

from warpkit.engine import distributed  # noqa: E402
from warpkit.engine.init_learners import Leap, Reptile  # noqa: E402
from warpkit.engine.meta import MetaLearner  # noqa: E402
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining  # noqa: E402
from warpkit.engine.tasks import SupervisedTask  # noqa: E402
from warpkit.engine.warp import ResidualMLPWarp, task_parameters, warp_parameters  # noqa: E402
from warpkit.experiments.train import DistributedCheckpointer  # noqa: E402


def mse(output, target):
    return ((output - target) ** 2).mean()


class FailingTask(SupervisedTask):
    """Raises in its inner loop at meta-step ``fail_at`` on the rank that adapts it (to test failure handling)."""

    message = "rank {rank} failed on purpose at meta-step {step}"
    #: batches drawn in this process: inner-loop ones by task index, replay ones (task batch + meta batch pairs)
    inner_draws: dict[int, int] = {}
    replay_draws = 0

    def __init__(self, *args, fail_message=None, index=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_message, self.index = fail_message, index

    def sample_batch(self, step):
        if self.fail_message == "hang":
            time.sleep(3600)  # a rank that stops answering without dying
        if self.fail_message is not None:
            raise RuntimeError(self.fail_message)
        FailingTask.inner_draws[self.index] = FailingTask.inner_draws.get(self.index, 0) + 1
        return super().sample_batch(step)

    def sample_meta_batches(self, step):
        FailingTask.replay_draws += 1
        return super().sample_meta_batches(step)


def make_tasks(iteration: int, count: int, fail: tuple[int, int] | None = None, rank: int = 0,
               hang: bool = False) -> list:
    tasks = []
    for index in range(count):
        seed = 1000 * iteration + index
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(16, 2, generator=generator, dtype=torch.float64)
        y = torch.tanh(x @ torch.randn(2, 1, generator=generator, dtype=torch.float64)) + 0.3 * index
        message = None
        if fail is not None and iteration == fail[1] and rank == fail[0]:
            message = "hang" if hang else FailingTask.message.format(rank=rank, step=iteration)
        tasks.append(FailingTask(x, y, x, y, batch_size=6, generator=torch.Generator().manual_seed(seed + 7),
                                 fail_message=message, index=index))
    return tasks


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), ResidualMLPWarp(4, hidden=5), nn.Linear(4, 1)).double()
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.3 * torch.randn_like(p))
    return model


def make_learner(objective: str, init: str, algorithm: str, batched_adaptation: bool, buffer_directory=None):
    init_learner = {"leap": Leap(), "leap-simplified": Leap(simplified=True), "reptile": Reptile(),
                    "none": None}[init]
    warp = WarpTraining(objective, lr=0.05, optimizer="adam", points_per_step=5, buffer_directory=buffer_directory)
    return MetaLearner(make_model(), mse, inner=InnerLoop(lr=0.05, steps=4, batched=batched_adaptation),
                       warp=warp if objective is not None else None,
                       init=InitTraining(init_learner, lr=0.05, optimizer="adam") if init_learner else None,
                       algorithm=algorithm, seed=3)


def train(learner: MetaLearner, iterations: int, meta_batch: int, communicator, checkpoint: str | None = None,
          fail: tuple[int, int] | None = None, hang: bool = False) -> tuple[list[dict], int]:
    """Meta-train for ``iterations`` meta-steps (resuming from ``checkpoint``); returns (statistics, start)."""
    checkpointer = DistributedCheckpointer(checkpoint, communicator, every=1) if checkpoint else None
    start, history = 0, []
    state = checkpointer.restore() if checkpointer else None
    if state is not None:
        learner.load_state_dict(state["learner"])
        start, history = int(state["iteration"]), list(state["history"])
    for iteration in range(start, iterations):
        stats = learner.meta_step(make_tasks(iteration, meta_batch, fail, communicator.rank, hang))
        entry = stats.as_dict()
        history.append({k: entry[k] for k in ("task_loss_first", "task_loss_last", "warp_objective", "warp_steps")})
        if checkpointer is not None:
            checkpointer.maybe_save(iteration + 1, lambda: {"learner": learner.state_dict(),
                                                             "iteration": iteration + 1, "history": history})
    return history, start


def final_state(learner: MetaLearner) -> dict:
    return {"theta": {n: p.detach().clone() for n, p in task_parameters(learner.model).items()},
            "phi": {n: p.detach().clone() for n, p in warp_parameters(learner.model).items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", action="append", default=None,
                        help="OBJECTIVE:INIT:ALGORITHM[:batched][:disk], repeatable (default exact:leap:offline)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--meta-batch", type=int, default=3)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--fail", default=None, help="RANK:STEP — that rank raises at that meta-step")
    parser.add_argument("--hang", action="store_true", help="the --fail rank hangs instead of raising")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    communicator = distributed.init("gloo", timeout_seconds=args.timeout)
    distributed.seed_process(0, communicator)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fail = tuple(int(v) for v in args.fail.split(":")) if args.fail else None
    for variant in args.variant or ["exact:leap:offline"]:
        objective, init, algorithm, *flags = variant.split(":")
        FailingTask.inner_draws, FailingTask.replay_draws = {}, 0
        learner = make_learner(objective, init, algorithm, "batched" in flags,
                               str(out / "buffer") if "disk" in flags else None)
        distributed.distribute(learner, communicator)
        history, start = train(learner, args.iterations, args.meta_batch, communicator, args.checkpoint, fail,
                               args.hang)
        gap = distributed.max_difference_across_ranks(learner, communicator)
        torch.save({**final_state(learner), "history": history, "start": start, "rank_gap": gap,
                    "world_size": communicator.world_size, "inner_draws": dict(FailingTask.inner_draws),
                    "replay_draws": FailingTask.replay_draws},
                   out / f"{variant.replace(':', '_')}_rank{communicator.rank}.pt")
        print(f"{variant}: rank {communicator.rank}/{communicator.world_size} started at {start}, done", flush=True)
    distributed.shutdown(communicator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
