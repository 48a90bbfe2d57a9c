r"""Engine benchmarks (issue 3): what WarpGrad's meta-gradient costs as the inner loop grows, and what batched
replay buys over replaying buffered points one at a time. Prints progress lines, then ONE JSON object as its
last line.

Run from the repository root (takes minutes; run it on a quiet machine, the load is reported):

    .venv/bin/python benchmarks/engine.py            # the issue's settings
    .venv/bin/python benchmarks/engine.py --quick    # small settings, a smoke test of the script itself

Keys of the JSON object
-----------------------
``warpgrad_memory_ratio``
    peak resident memory (``ru_maxrss``) above the process's baseline of a fresh process running one offline
    WarpGrad meta-iteration (:class:`~warpkit.engine.meta.MetaLearner`, exact objective Eq. 11) on a task adapted K = 1000
    steps, over the same for K = 10 (the Omniglot network of Flennerhag et al., 2020, Section 4.2, with 3×3 conv
    warps, ``--memory-filters`` filters, 16 by default so that the 1000-point run takes minutes; batch 20). The learner has an **on-disk**
    :class:`~warpkit.engine.buffer.TrajectoryBuffer`, so :func:`~warpkit.engine.adapt.adapt` streams every pre-step state θ_k
    (with its BatchNorm statistics) to disk as it is made (``on_state``), and replay reads the points back chunk
    by chunk (``chunk`` points per batched call, one φ-step per chunk, two fresh batches per point). Live memory
    is one chunk's autograd graph plus one state, whatever K is. The ratio of whole-process peaks is printed as
    ``..._process_ratio``. Memory runs set ``MALLOC_MMAP_THRESHOLD_`` (see :data:`MEMORY_ENV`) so that the peak
    is what the program holds, not glibc's free-memory hysteresis; ``--no-malloc-threshold`` measures without.
``warpgrad_memory_ratio_held``
    the same with an in-memory buffer (all K states held): it grows with K (K × |θ| floats), which is why long
    runs should give ``MetaLearner`` a ``WarpTraining(buffer_directory=...)``.
``maml_memory_ratio``
    peak memory above baseline of one second-order MAML meta-gradient (backpropagation through K inner steps) at
    K = 50 over K = 5, fresh processes, same network without warps. It grows with K.
``replay_speedup``
    the exact φ-gradient of 64 buffered points of the Omniglot network (Section 4.2; 64 filters, 3×3 conv warps, batch 20
    per point, two batches per point, prepared in advance): time of our best per-point code (a loop over points,
    one backward per point, gradients accumulated: it frees each graph at once and measured at least as fast as
    summing the losses first) over the time of the batched call (``torch.func.vmap`` over the 64 points,
    :func:`warpkit.engine.objectives.warp_meta_gradient`). One warm-up, then the median of ``repeats`` timings per path.
``replay_max_abs_diff``
    the largest absolute difference between the two φ-gradients (float32). ``replay_max_abs_diff_float64`` is the
    same in float64 and ``replay_float32_error_vs_float64`` each float32 path's distance to the float64 per-point
    gradient: the network's max-pooling makes the gradient discontinuous at ties, so float32 rounding that swaps
    a near-tie moves gradient entries by far more than 1e-7 (with average pooling instead, the float32 paths
    agree to 2e-7), while in float64 the two paths agree to rounding.

``replay_max_abs_diff_fused_batchnorm_float64`` is the same difference, in float64, on a small network with the
standard ``nn.BatchNorm2d``: the fused kernel's double backward is wrong under ``vmap`` (functorch #534) and the
engine routes it to an elementary form during batched replay (:mod:`warpkit.engine.batchnorm`); this key checks that.

Extra keys report the settings, the machine load, absolute peaks in MB, per-path seconds, the same speedup for
the first-order mode and for a small (8-filter) network, and the FLOPs of one replayed point, so that a reader
can see what limits the speedup (see the ``replay_limit`` key).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from warpkit.engine.adapt import adapt, train_mode  # noqa: E402
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint  # noqa: E402
from warpkit.engine.init_learners import MAML  # noqa: E402
from warpkit.engine.meta import MetaLearner  # noqa: E402
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining  # noqa: E402
from warpkit.models.omniglot_net import OmniglotNet  # noqa: E402
from warpkit.engine.objectives import one_step_objective, replay_batches, warp_meta_gradient  # noqa: E402
from warpkit.engine.tasks import SupervisedTask  # noqa: E402
from warpkit.engine.warp import task_parameters, warp_parameters  # noqa: E402

WAYS, BATCH, INNER_LR = 20, 20, 0.1


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> float:
    return os.getloadavg()[0]


def synthetic_task(seed: int, shots: int = 15) -> SupervisedTask:
    """A 20-way task of random 28×28 'images' (15 per class): memory and time do not depend on the pixels."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(WAYS * shots, 1, 28, 28, generator=generator)
    targets = torch.arange(WAYS).repeat_interleave(shots)
    return SupervisedTask(inputs, targets, batch_size=BATCH, generator=torch.Generator().manual_seed(seed + 1))


# ----------------------------------------------------------------------------------------------------------
# children: each measurement runs in a fresh process
# ----------------------------------------------------------------------------------------------------------
def child_warpgrad(steps: int, filters: int, chunk: int, held: bool) -> dict:
    """One offline meta-iteration of :class:`~warpkit.engine.meta.MetaLearner` on one task adapted ``steps`` steps:
    with an on-disk buffer (``held=False``) every state is streamed to disk as it is made; with an in-memory
    buffer (``held=True``) all K states stay in memory."""
    torch.manual_seed(0)
    model = OmniglotNet(ways=WAYS, filters=filters, warp="conv3")
    task = synthetic_task(1)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="warpkit-bench-") as directory:
        learner = MetaLearner(model, F.cross_entropy, inner=InnerLoop(lr=INNER_LR, steps=steps),
                              warp=WarpTraining(points_per_step=chunk, buffer_directory=None if held else directory))
        before = {name: p.detach().clone() for name, p in warp_parameters(model).items()}
        stats = learner.meta_step([task])
        moved = sum(float((p.detach() - before[name]).norm()) for name, p in warp_parameters(model).items())
    return {"steps": steps, "baseline_mb": baseline, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - start,
            "warp_steps": stats.warp_steps, "warp_moved": moved}


def child_maml(steps: int, filters: int) -> dict:
    torch.manual_seed(0)
    model = OmniglotNet(ways=WAYS, filters=filters, warp="none")
    task = synthetic_task(1)
    learner = MetaLearner(model, F.cross_entropy, inner=InnerLoop(lr=INNER_LR, steps=steps), warp=None,
                          init=InitTraining(MAML(steps=steps)))
    init = {name: p.detach().clone() for name, p in task_parameters(model).items()}
    baseline = peak_rss_mb()
    start = time.perf_counter()
    gradient = learner.init_learner.task_gradient(learner, task, init, None)
    return {"steps": steps, "baseline_mb": baseline, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - start,
            "gradient_norm": float(torch.cat([g.flatten() for g in gradient.values()]).norm())}


def prepared_replay(filters: int, num_points: int, seed: int = 0):
    """A model and ``num_points`` real trajectory points (an adaptation run) with their two batches each."""
    torch.manual_seed(seed)
    model = OmniglotNet(ways=WAYS, filters=filters, warp="conv3")
    with torch.no_grad():  # a meta-trained-looking warp: away from the identity, so every term is non-zero
        for p in warp_parameters(model).values():
            p.add_(0.01 * torch.randn_like(p))
    task = synthetic_task(2)
    buffer = TrajectoryBuffer()
    buffer.add(0, adapt(model, task, F.cross_entropy, num_points, INNER_LR, final_loss=False))
    points = buffer.points()
    task_batches, meta_batches = replay_batches([task], points)
    return model, points, task_batches, meta_batches


def per_point_gradient(model, points, task_batches, meta_batches, mode):
    """Our best per-point replay: one point at a time, one backward per point, gradients accumulated."""
    warp = warp_parameters(model)
    names = list(warp)
    total = {name: torch.zeros_like(p) for name, p in warp.items()}
    with train_mode(model):
        for point, task_batch, meta_batch in zip(points, task_batches, meta_batches):
            loss = one_step_objective(model, F.cross_entropy, warp, point.params, point.buffers, task_batch,
                                      meta_batch, INNER_LR, mode)
            for name, g in zip(names, torch.autograd.grad(loss, [warp[n] for n in names])):
                total[name] += g / len(points)
    return total


def batched_gradient(model, points, task_batches, meta_batches, mode):
    return warp_meta_gradient(model, F.cross_entropy, warp_parameters(model), points, task_batches, meta_batches,
                              INNER_LR, mode, batched=True)[0]


def float64_check(model, points, task_batches, meta_batches, mode, gradients32) -> dict:
    """Both paths again in float64: their difference there, and each float32 path's distance to the float64
    per-point gradient (which tells rounding from a wrong formula)."""
    model = model.double()
    points = [TrajectoryPoint(p.task_index, p.step, {n: t.double() for n, t in p.params.items()},
                              {n: t.double() if t.is_floating_point() else t for n, t in p.buffers.items()})
              for p in points]
    task_batches = [(x.double(), y) for x, y in task_batches]
    meta_batches = [(x.double(), y) for x, y in meta_batches]
    reference = per_point_gradient(model, points, task_batches, meta_batches, mode)
    batched = batched_gradient(model, points, task_batches, meta_batches, mode)

    def distance(a, b):
        return max(float((a[n].double() - b[n].double()).abs().max()) for n in b)

    return {"float64_max_abs_diff": distance(batched, reference),
            "float32_error_vs_float64": {path: distance(g, reference) for path, g in gradients32.items()}}


def child_replay(filters: int, num_points: int, mode: str, repeats: int, channels_last: bool,
                 float64: bool = False) -> dict:
    model, points, task_batches, meta_batches = prepared_replay(filters, num_points)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        task_batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in task_batches]
        meta_batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in meta_batches]
    timings = {"per_point": [], "batched": []}
    gradients = {}
    for round_index in range(repeats + 1):  # round 0 is the warm-up
        for path, function in (("per_point", per_point_gradient), ("batched", batched_gradient)):
            start = time.perf_counter()
            gradients[path] = function(model, points, task_batches, meta_batches, mode)
            if round_index:
                timings[path].append(time.perf_counter() - start)
    flops = count_point_flops(model, points[:1], task_batches[:1], meta_batches[:1], mode)
    per_point, batched = statistics.median(timings["per_point"]), statistics.median(timings["batched"])
    difference = max(float((gradients["per_point"][n] - gradients["batched"][n]).abs().max()) for n in gradients["batched"])
    precision = float64_check(model, points, task_batches, meta_batches, mode, gradients) if float64 else {}
    return {**precision, "filters": filters, "points": num_points, "mode": mode, "per_point_seconds": per_point,
            "batched_seconds": batched, "speedup": per_point / batched, "max_abs_diff": difference,
            "timings": timings, "gflop_per_point": flops / 1e9,
            "per_point_gflops_per_second": flops * num_points / per_point / 1e9,
            "gradient_max_abs": max(float(g.abs().max()) for g in gradients["batched"].values())}


def stock_batchnorm_difference(filters: int = 8, num_points: int = 4) -> float:
    """Largest |batched − per-point| exact φ-gradient entry in float64 with the standard ``nn.BatchNorm2d``:
    0 up to rounding if the engine handles batch_norm's double backward under vmap (warpkit.engine.batchnorm)."""
    model, points, task_batches, meta_batches = prepared_replay(filters, num_points)
    assert all(type(block.norm) is torch.nn.BatchNorm2d for block in model.blocks)
    model = model.double()
    points = [TrajectoryPoint(p.task_index, p.step, {n: t.double() for n, t in p.params.items()},
                              {n: t.double() if t.is_floating_point() else t for n, t in p.buffers.items()})
              for p in points]
    task_batches = [(x.double(), y) for x, y in task_batches]
    meta_batches = [(x.double(), y) for x, y in meta_batches]
    looped = per_point_gradient(model, points, task_batches, meta_batches, "exact")
    batched = batched_gradient(model, points, task_batches, meta_batches, "exact")
    return max(float((looped[n] - batched[n]).abs().max()) for n in looped)


def count_point_flops(model, points, task_batches, meta_batches, mode) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        per_point_gradient(model, points, task_batches, meta_batches, mode)
    return float(counter.get_total_flops())


def replay_limit(fraction_of_matmul: float) -> str:
    """Say what bounds batched replay, from how close per-point replay already runs to dense-matmul speed."""
    if fraction_of_matmul >= 0.5:
        return (f"compute-bound: per-point replay already runs at {fraction_of_matmul:.0%} of this core's dense "
                "matmul throughput, so batching (same FLOPs) can remove only the per-call overhead")
    return (f"overhead-bound: per-point replay runs at only {fraction_of_matmul:.0%} of this core's dense matmul "
            "throughput, so batching the points into fewer, larger calls can help")


def matmul_gflops() -> float:
    """This core's dense matmul throughput right now (a ceiling for conv-bound replay)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 2 * 1024**3 * 10 / (time.perf_counter() - start) / 1e9


# ----------------------------------------------------------------------------------------------------------
# the driver
# ----------------------------------------------------------------------------------------------------------
#: glibc raises its mmap threshold after every free of a large block, after which freed activations stay in the
#: heap and the resident peak drifts by tens of MB with the allocation history (measured: ±20 MB over 100 chunks).
#: A fixed threshold returns every large block at once, so ru_maxrss measures what the program holds.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def run_child(args: list[str], threads: int, timeout: float, extra_env: dict | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(extra_env or {})}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args, "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def say(message: str) -> None:
    print(f"[engine bench {time.strftime('%H:%M:%S')} load {load_average():.2f}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings: checks the script, not the claims")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every measuring process")
    parser.add_argument("--memory-filters", type=int, default=16, help="filters of the network in the memory runs")
    parser.add_argument("--no-malloc-threshold", action="store_true",
                        help="measure memory with glibc's default (drifting) mmap threshold")
    parser.add_argument("--chunk", type=int, default=10, help="points per replayed chunk in the memory runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per replay path (after a warm-up)")
    parser.add_argument("--channels-last", action="store_true", help="replay in channels_last memory format")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.child:
        kind, *rest = args.child
        if kind == "warpgrad":
            steps, filters, chunk, held = rest
            out = child_warpgrad(int(steps), int(filters), int(chunk), held == "held")
        elif kind == "maml":
            out = child_maml(int(rest[0]), int(rest[1]))
        elif kind == "stock-bn":
            out = {"max_abs_diff": stock_batchnorm_difference()}
        elif kind == "replay":
            filters, points, mode, repeats, channels_last, float64 = rest
            out = child_replay(int(filters), int(points), mode, int(repeats), channels_last == "1", float64 == "1")
        else:
            raise SystemExit(f"unknown child {kind!r}")
        print(json.dumps(out))
        return

    quick = args.quick
    k_small, k_large = (4, 40) if quick else (10, 1000)
    maml_small, maml_large = (2, 8) if quick else (5, 50)
    memory_filters = 8 if quick else args.memory_filters
    if quick:
        args.chunk = k_small  # so that the small run fills one whole chunk, as K = 10 does with chunks of 10
    replay_filters, replay_points = (16, 8) if quick else (64, 64)
    repeats = 1 if quick else args.repeats
    timeout = 3600
    started = time.perf_counter()
    load_start = load_average()
    say(f"threads={args.threads} quick={quick}; cpu count {os.cpu_count()}")

    memory_env = {} if args.no_malloc_threshold else MEMORY_ENV
    memory = {}
    for variant in ("streamed", "held"):
        for steps in (k_small, k_large):
            memory[variant, steps] = run_child(
                ["warpgrad", str(steps), str(memory_filters), str(args.chunk), variant],
                args.threads, timeout, memory_env)
            say(f"WarpGrad ({variant}) K={steps}: {memory[variant, steps]}")
    maml = {}
    for steps in (maml_small, maml_large):
        maml[steps] = run_child(["maml", str(steps), str(memory_filters)], args.threads, timeout, memory_env)
        say(f"MAML K={steps}: {maml[steps]}")

    def net_ratio(large: dict, small: dict) -> float:
        return (large["peak_mb"] - large["baseline_mb"]) / (small["peak_mb"] - small["baseline_mb"])

    channels_last = "1" if args.channels_last else "0"
    replay = run_child(["replay", str(replay_filters), str(replay_points), "exact", str(repeats), channels_last, "1"],
                       args.threads, timeout)
    say(f"replay exact: {replay}")
    replay_first_order = run_child(
        ["replay", str(replay_filters), str(replay_points), "first_order", str(max(1, repeats - 1)), channels_last,
         "0"],
        args.threads, timeout)
    say(f"replay first_order: {replay_first_order}")
    stock = run_child(["stock-bn"], args.threads, timeout)
    say(f"fused nn.BatchNorm2d, float64, batched vs per-point exact: {stock}")
    replay_small = run_child(["replay", "8", str(replay_points), "exact", str(repeats), channels_last, "0"],
                             args.threads, timeout)
    say(f"replay exact, 8 filters: {replay_small}")
    ceiling = matmul_gflops()

    result = {
        "warpgrad_memory_ratio": round(net_ratio(memory["streamed", k_large], memory["streamed", k_small]), 4),
        "maml_memory_ratio": round(net_ratio(maml[maml_large], maml[maml_small]), 4),
        "replay_speedup": round(replay["speedup"], 4),
        "replay_max_abs_diff": replay["max_abs_diff"],
        "warpgrad_memory_process_ratio": round(
            memory["streamed", k_large]["peak_mb"] / memory["streamed", k_small]["peak_mb"], 4),
        "warpgrad_memory_ratio_held": round(net_ratio(memory["held", k_large], memory["held", k_small]), 4),
        "maml_memory_process_ratio": round(maml[maml_large]["peak_mb"] / maml[maml_small]["peak_mb"], 4),
        "memory_peaks_mb": {
            **{f"warpgrad_{variant}_K{steps}": [round(m["baseline_mb"], 1), round(m["peak_mb"], 1)]
               for (variant, steps), m in memory.items()},
            **{f"maml_K{steps}": [round(m["baseline_mb"], 1), round(m["peak_mb"], 1)] for steps, m in maml.items()},
        },
        "memory_settings": {"filters": memory_filters, "chunk": args.chunk, "mode": "exact",
                            "buffer": "on disk (streamed) / in memory (held)", "K": [k_small, k_large],
                            "maml_K": [maml_small, maml_large], "peaks": "[baseline after setup, peak] MB, ru_maxrss",
                            "malloc_env": memory_env},
        "replay_seconds": {"per_point": round(replay["per_point_seconds"], 3),
                           "batched": round(replay["batched_seconds"], 3)},
        "replay_settings": {"filters": replay_filters, "points": replay_points, "batch_per_point": BATCH,
                            "mode": "exact", "repeats": repeats, "statistic": "median after 1 warm-up",
                            "channels_last": args.channels_last},
        "replay_max_abs_diff_float64": replay["float64_max_abs_diff"],
        "replay_float32_error_vs_float64": replay["float32_error_vs_float64"],
        "replay_speedup_first_order": round(replay_first_order["speedup"], 4),
        "replay_max_abs_diff_first_order": replay_first_order["max_abs_diff"],
        "replay_speedup_8_filters": round(replay_small["speedup"], 4),
        "replay_max_abs_diff_fused_batchnorm_float64": stock["max_abs_diff"],
        "replay_gflop_per_point": round(replay["gflop_per_point"], 3),
        "replay_per_point_gflops_per_second": round(replay["per_point_gflops_per_second"], 2),
        "matmul_gflops_per_second": round(ceiling, 2),
        "replay_limit": replay_limit(replay["per_point_gflops_per_second"] / ceiling),
        "threads": args.threads,
        "load_average_start_end": [round(load_start, 2), round(load_average(), 2)],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "quick": quick,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
