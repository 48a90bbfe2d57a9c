r"""Distributed meta-training benchmark (issue 19): time of a Warp-Leap meta-iteration on 1 and on P processes,
and what that predicts for the paper's ``full`` Omniglot protocol. Prints progress lines, then ONE JSON object
as its last line.

    .venv/bin/python benchmarks/distributed.py                      # 1 and 2 processes, gloo, one thread each
    .venv/bin/python benchmarks/distributed.py --processes 1 2 4 --device cuda    # on a machine with 4 GPUs
    .venv/bin/python benchmarks/distributed.py --quick              # a smoke test of the script itself

What is measured
----------------
For each number of processes P, ``torchrun --nproc_per_node=P`` (P = 1: a plain process, today's code path)
runs :class:`~warpkit.experiments.omniglot.OmniglotExperiment`'s Warp-Leap learner (exact objective, Leap) on a
meta-batch of ``--meta-batch`` tasks of K = ``--inner-steps`` steps, the network of ``--filters`` filters and
``--ways`` ways (the ``full`` protocol's network is 64 filters, 20 ways, batch 20): one warm-up meta-iteration,
then ``--iterations`` timed ones, with a barrier around each. Per meta-iteration it reports the wall time (the
slowest rank), each rank's adaptation and replay seconds, and the seconds spent inside collectives. Every
process uses one intra-op thread, so P processes use P cores.

The extrapolation to the ``full`` protocol
------------------------------------------
From the P = 1 run: a = adaptation seconds per inner step of one task, r = replay seconds per buffered point;
from the P > 1 runs: c = seconds of one all-reduce of φ's gradient started right after a barrier (the transfer
alone; the ``collective`` seconds measured inside meta-iterations also hold the wait for the slowest rank). A ``full`` Warp-Leap
meta-iteration has n = 20 tasks, K = 100 steps, N = n·K = 2000 points in chunks of 32 (63 φ-steps). On P devices,
one process each,

.. math::  T(P) = \lceil n/P \rceil K a + \frac{N r}{P} + (\lceil N/32 \rceil + 2)\, c,

(the slowest rank adapts ⌈n/P⌉ tasks; replay splits a chunk's points about evenly; one all-reduce per chunk plus
the θ_0 and statistics ones), and one run is 1000 T(P). It assumes that the per-step costs do not change with
P (no contention, perfect load balance within a chunk) and that c does not grow with P: an extrapolation, which
the JSON says in ``extrapolation_note``. It holds for the devices the constants were measured on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL = {"tasks": 20, "inner_steps": 100, "chunk": 32, "meta_iterations": 1000}


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    from warpkit.engine import distributed
    from warpkit.experiments import omniglot

    communicator = distributed.init("auto" if args.device == "auto" else ("nccl" if args.device == "cuda" else "gloo"),
                                    timeout_seconds=600, device=None if args.device == "auto" else args.device)
    distributed.seed_process(0, communicator)
    config = omniglot.config_for("fast").replace(
        methods=("warp-leap",), alphabet_counts=(3,), meta_batch_size=args.meta_batch, inner_steps=args.inner_steps,
        filters=args.filters, ways=args.ways, batch_size=args.ways, replay_chunk_size=args.chunk,
        warp_optimizer="sgd", init_optimizer="sgd")
    experiment = omniglot.OmniglotExperiment(config, device=communicator.device)
    learner = distributed.distribute(experiment.build("warp-leap", 0), communicator)
    collective = {"seconds": 0.0, "calls": 0}
    if communicator.is_distributed:
        reduce = communicator.all_reduce_sum

        def timed(tensors):
            started = time.perf_counter()
            try:
                return reduce(tensors)
            finally:
                collective["seconds"] += time.perf_counter() - started
                collective["calls"] += 1

        communicator.all_reduce_sum = timed
    steps = []
    for iteration in range(args.iterations + 1):
        tasks = experiment.training_tasks(0, 3, iteration)
        communicator.barrier()
        before = dict(collective)
        started = time.perf_counter()
        stats = learner.meta_step(tasks)
        if communicator.device.type == "cuda":
            torch.cuda.synchronize()
        communicator.barrier()
        wall = time.perf_counter() - started
        if iteration == 0:
            continue  # warm-up
        steps.append({"wall": wall, "adapt": stats.seconds_adapt, "replay": stats.seconds_replay,
                      "collective": collective["seconds"] - before["seconds"],
                      "collectives": collective["calls"] - before["calls"], "warp_steps": stats.warp_steps})
    per_rank = communicator.all_gather_object(steps)
    # the transfer alone: all-reduces of φ's gradient right after a barrier (no rank is late)
    transfer = 0.0
    if communicator.is_distributed:
        from warpkit.engine.warp import warp_parameters

        gradient = {n: torch.zeros_like(p) for n, p in warp_parameters(learner.model).items()}
        for _ in range(10):
            communicator.barrier()
            started = time.perf_counter()
            reduce(gradient)
            transfer += (time.perf_counter() - started) / 10
    transfers = communicator.all_gather_object(transfer)
    if communicator.is_main:
        print(json.dumps({"processes": communicator.world_size, "backend": communicator.backend,
                          "device": str(communicator.device), "source": experiment.source, "per_rank": per_rank,
                          "transfer_seconds": max(transfers)}))
    distributed.shutdown(communicator)


def launch(processes: int, args) -> dict:
    script = [str(Path(__file__).resolve()), "--worker", "--meta-batch", str(args.meta_batch), "--inner-steps",
              str(args.inner_steps), "--filters", str(args.filters), "--ways", str(args.ways), "--chunk",
              str(args.chunk), "--iterations", str(args.iterations), "--device", args.device]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--standalone",
                   *script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    measured = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    measured["job_seconds"] = time.perf_counter() - started
    measured["load_before"], measured["load_after"] = load_before, os.getloadavg()
    return measured


def summarise(measured: dict) -> dict:
    """Means over the timed meta-iterations: wall (slowest rank, between barriers), the slowest rank's adaptation
    and replay, collectives."""
    ranks = measured["per_rank"]
    count = len(ranks[0])
    mean = lambda key, reducer=max: sum(reducer(r[i][key] for r in ranks) for i in range(count)) / count  # noqa: E731
    return {"wall": mean("wall"), "adapt": mean("adapt"), "replay": mean("replay"),
            "collective": mean("collective"), "collectives": mean("collectives"), "warp_steps": mean("warp_steps")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--inner-steps", type=int, default=10)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--ways", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.meta_batch, args.inner_steps, args.filters, args.ways, args.chunk, args.iterations = 2, 2, 8, 10, 2, 1
    if args.worker:
        worker(args)
        return 0
    results = {"settings": {k: getattr(args, k) for k in ("meta_batch", "inner_steps", "filters", "ways", "chunk",
                                                           "iterations", "device")},
               "cpu_cores": os.cpu_count(), "runs": {}}
    for processes in args.processes:
        print(f"[distributed] {processes} process(es)...", flush=True)
        measured = launch(processes, args)
        measured["summary"] = summarise(measured)
        results["runs"][str(processes)] = measured
        s = measured["summary"]
        print(f"[distributed] {processes}: {s['wall']:.2f} s per meta-iteration (adapt {s['adapt']:.2f}, replay "
              f"{s['replay']:.2f}, collectives {s['collective']:.3f} s in {s['collectives']:.0f} calls); load "
              f"{measured['load_before'][0]:.1f} → {measured['load_after'][0]:.1f}", flush=True)
    one = results["runs"].get("1", {}).get("summary")
    if one:
        for processes, measured in results["runs"].items():
            measured["speedup"] = one["wall"] / measured["summary"]["wall"]
        points = args.meta_batch * args.inner_steps
        a = one["adapt"] / points  # seconds per inner step of one task
        r = one["replay"] / points  # seconds per replayed point
        c = max((m["transfer_seconds"] for p, m in results["runs"].items() if int(p) > 1), default=0.0)
        n, K, chunk = FULL["tasks"], FULL["inner_steps"], FULL["chunk"]
        N = n * K
        prediction = {}
        for P in (1, 2, 4, 8, 16, 20):
            seconds = math.ceil(n / P) * K * a + N * r / P + ((math.ceil(N / chunk) + 2) * c if P > 1 else 0.0)
            prediction[str(P)] = {"meta_iteration_seconds": seconds,
                                  "run_hours": seconds * FULL["meta_iterations"] / 3600,
                                  # without communication: depends only on the ratio a/r, not on the device's speed
                                  "speedup_without_communication": (n * K * a + N * r) / (
                                      math.ceil(n / P) * K * a + N * r / P)}
        results["full_protocol_extrapolation"] = {
            "constants": {"adapt_seconds_per_step": a, "replay_seconds_per_point": r,
                          "collective_transfer_seconds": c},
            "per_processes": prediction,
            "extrapolation_note": ("EXTRAPOLATED, not measured: one Warp-Leap run of the full protocol (1000 × 20 "
                                   "tasks × 100 steps, 2000 points in chunks of 32) from constants measured on "
                                   f"{args.device} with the settings above, assuming no contention and a "
                                   "collective time that does not grow with P"),
        }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
