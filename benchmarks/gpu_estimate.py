"""How long the ``gpu`` size should take on one GPU, from CPU measurements: operations, FLOPs and seconds per unit.

    .venv/bin/python benchmarks/gpu_estimate.py [03 04 05] [--json PATH]

For the GPU-heavy lessons (03 Omniglot, 04 maze, 05 continual sine) it runs one *unit* of the lesson's gpu size
on the CPU (03: one meta-iteration of each of the seven methods, gpu Omniglot net, random images; 04: two A2C
episodes of each of the three trained agents in 16 mazes; 05: one meta-iteration of the three continual learners)
and measures

* the torch operations dispatched (a ``TorchDispatchMode`` counter: on a GPU each is at least one kernel launch),
* the FLOPs (``torch.utils.flop_counter.FlopCounterMode``),
* the CPU seconds (process time, so other processes on a shared machine do not count).

The unit's GPU time is then ``operations × LAUNCH_SECONDS + FLOPs / GPU_FLOPS`` with two *assumptions* (not
measured here): about 10 µs per eager torch operation on a GPU (dispatch + launch, the usual figure for PyTorch
eager mode) and 5 TFLOP/s achieved on these small layers (under a tenth of an H100's FP32 peak). The lesson's GPU
time is its measured CPU time scaled by the unit's GPU:CPU ratio. Lessons 01 and 02 are tiny 2-D/float64 work
that stays launch- or Python-bound: their GPU time is taken as their CPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAUNCH_SECONDS = 10e-6  # assumption: one eager torch op on a GPU (Python dispatch + kernel launch)
GPU_FLOPS = 5e12  # assumption: FLOP/s achieved by these small convolutions / matmuls on an H100-class GPU


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def measure(run) -> dict:
    run()  # warm-up (lazy initialisation, allocator)
    start = time.process_time()
    run()
    seconds = time.process_time() - start
    counter, flops = OpCounter(), FlopCounterMode(display=False)
    with flops, counter:
        run()
    gpu_seconds = counter.count * LAUNCH_SECONDS + flops.get_total_flops() / GPU_FLOPS
    return {"cpu_seconds": round(seconds, 3), "ops": counter.count, "gflops": round(flops.get_total_flops() / 1e9, 2),
            "gpu_seconds": round(gpu_seconds, 3), "gpu_to_cpu": round(gpu_seconds / seconds, 3)}


def omniglot_unit():
    from warpkit.engine.tasks import SupervisedTask
    from warpkit.experiments.omniglot import METHODS_COMPARED, SIZES, build_method
    from warpkit.models.omniglot_net import omniglot_net_factory

    c = SIZES["gpu"]
    learners = []
    for method in METHODS_COMPARED:  # built as warpkit.experiments.omniglot.OmniglotExperiment builds them
        learners.append(build_method(c, method, omniglot_net_factory(ways=c.ways, filters=c.filters), seed=0))
    generator = torch.Generator().manual_seed(0)
    count = c.ways * c.train_images
    tasks = [SupervisedTask(torch.rand(count, 1, 28, 28, generator=generator),
                            torch.arange(c.ways).repeat_interleave(c.train_images),
                            batch_size=c.batch_size, generator=torch.Generator().manual_seed(i))
             for i in range(c.meta_batch_size)]
    for index, task in enumerate(tasks):
        task.task_id = index  # multi-head finetuning keeps one head per training task

    def run():
        for learner in learners:
            learner.meta_step(tasks)
    return run


def maze_unit():
    from warpkit.envs.maze import MazeConfig
    from warpkit.experiments import maze as rl

    maze = MazeConfig(size=7, episode_length=100, wall_penalty=0.1)  # notebook 04's gpu size
    def run():
        for name in ("warp_rnn", "l2rl", "hebbian"):  # the agents the gpu size trains
            rl.train_agent(name, 2, maze=maze, num_mazes=16, show_progress=False)
    return run


def continual_unit():
    from warpkit.experiments import continual

    config = continual.SIZES["gpu"]
    learners = continual.build_learners(config, seed=0)
    sampler = config.sampler(seed=0)
    return lambda: continual.meta_train(learners, sampler, 1, config.meta_batch_size, config=config,
                                        show_progress=False)


UNITS = {"04": ("one meta-iteration of each of the 7 methods, gpu Omniglot config", omniglot_unit),
         "05": ("two A2C episodes of each of the 3 agents, 16 mazes", maze_unit),
         "06": ("one meta-iteration of the three continual learners", continual_unit)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lessons", nargs="*", default=list(UNITS), help="lessons to measure (default: 03 04 05)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for lesson in args.lessons:
        what, make = UNITS[lesson]
        results[lesson] = {"unit": what, **measure(make())}
        print(lesson, json.dumps(results[lesson]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
