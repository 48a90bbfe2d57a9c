r"""Engine benchmarks (issues 3 and 18): what WarpGrad's meta-gradient costs as the inner loop grows, what a
meta-iteration costs against one-point-at-a-time WarpGrad, and what each replay lever buys. Prints progress
lines, then ONE JSON object as its last line.

Run from the repository root (takes minutes; the machine load is reported with every measurement):

    .venv/bin/python benchmarks/engine.py            # the issues' settings
    .venv/bin/python benchmarks/engine.py --quick    # small settings, a smoke test of the script itself
    .venv/bin/python benchmarks/engine.py --out benchmarks/results/engine_cpu.json   # the committed record

Every measurement runs in a fresh process with one torch thread (``--threads``).

Keys of the JSON object
-----------------------
``seconds_per_meta_iteration``, ``meta_iteration_ratio_exact``, ``meta_iteration_ratio_first_order``
    one Warp-Leap meta-iteration (``--meta F K T``: 64 filters, K = 100 inner steps, T = 4 tasks of 20-way
    28×28 images, batch 20, simplified Leap on θ_0, one φ-step per point) by

    * ``reference``: one-point-at-a-time WarpGrad as the authors' code runs it (:func:`reference_meta_iteration`:
      per point a fresh task batch and meta batch, the SGD lookahead with a detached gradient, the meta loss
      backpropagated into ``.grad`` by plain autograd, one φ-step; contiguous NCHW tensors; PyTorch's stock
      ``nn.Conv2d`` and ``nn.MaxPool2d``, :func:`stock_layers`);
    * ``reference_warpkit_layers``: the same loop on warpkit's network, whose first convolution and max-pools
      (:mod:`warpkit.models.cpu_layers`) compute the stock layers' functions and derivatives faster on a CPU;
      ``meta_iteration_ratio_same_layers`` divides by it, so it shows what warpkit's adaptation and replay gain
      on the same layers;
    * ``first_order`` and ``exact``: :class:`~warpkit.engine.meta.MetaLearner` with that objective and its
      defaults otherwise (replay ``"auto"``, lookahead ``"auto"``: fresh offline; NCHW network).

    ``--meta-rounds`` interleaved rounds (ABCD, DCBA, ...), medians; the ratios are warpkit ÷ reference of the
    medians, so every speed claim is a ratio measured in the same run. ``seconds_adapt_replay`` splits them.
``replay_gflops_per_second``, ``matmul_gflops_per_second``, ``replay_fraction_of_matmul``
    FLOPs of the replayed points (``torch.utils.flop_counter`` on one point of each path, times T·K) over the
    replay seconds of each meta-iteration, against a 1024² float32 matmul measured in the same process tree.
``replay_seconds_per_point``, ``replay_gflop_per_point``
    the levers, one point at a time on the same network (medians, interleaved): the reference's work per point,
    a forward and backward pass
    (with the stock layers and with warpkit's, NCHW; warpkit's channels-last), the first-order gradient with the lookahead recomputed (``fresh``) or taken from
    the buffer (``buffered``; plain autograd and ``torch.func``), the exact gradient by the general path
    (double backward through the lookahead, :mod:`warpkit.engine.objectives`), by :mod:`warpkit.engine.replay`
    with a fresh lookahead (the inner gradient's graph kept and differentiated once more) and split into Eq. 12
    plus one jvp-inside-grad mixed product with the buffered lookahead, NCHW and channels-last.
``replay_float64_max_abs_diff``, ``replay_float64_split_vs_general``
    in float64: batched against looped replay (exact, buffered lookahead), and the split exact gradient against
    the general path on the same batches.
``replay_speedup``, ``replay_speedup_8_filters``, ``replay_max_abs_diff``
    looped ÷ batched seconds of the exact replay of a chunk of points (64 and 8 filters), and the largest float32
    difference of their gradients; the same child runs on a GPU in ``kit.py gpu-check``.
``replay_max_abs_diff_fused_batchnorm_float64``
    the general path's batched against per-point exact gradient with the standard ``nn.BatchNorm2d`` in float64
    (the fused kernel's double backward is wrong under ``vmap``, functorch #534; :mod:`warpkit.engine.batchnorm`).
``warpgrad_memory_ratio``
    peak resident memory (``ru_maxrss``) above the process's baseline of a fresh process running one offline
    WarpGrad meta-iteration (:class:`~warpkit.engine.meta.MetaLearner`, exact objective Eq. 11) on a task adapted
    K = 1000 steps, over the same for K = 10 (the Section 4.2 Omniglot network with 3×3 conv warps, ``--memory-filters``
    filters, 16 by default; batch 20). The learner has an **on-disk**
    :class:`~warpkit.engine.buffer.TrajectoryBuffer`, so :func:`~warpkit.engine.adapt.adapt` streams every point
    (θ_k with its BatchNorm statistics, θ_{k+1} and the step's batch) to disk as it is made (``on_state``), and
    replay reads the points back chunk by chunk (``chunk`` points per call, one φ-step per chunk). Live memory
    is one chunk's autograd graph plus one state, whatever K is. ``..._process_ratio`` is the ratio of whole-process
    peaks. Memory runs set ``MALLOC_MMAP_THRESHOLD_`` (see :data:`MEMORY_ENV`) so that the peak is what the
    program holds, not glibc's free-memory hysteresis; ``--no-malloc-threshold`` measures without.
``warpgrad_memory_ratio_held``
    the same with an in-memory buffer (all K states held): it grows with K (K × |θ| floats), which is why long
    runs should give ``MetaLearner`` ``WarpTraining(buffer_directory=...)``.
``maml_memory_ratio``
    peak memory above baseline of one second-order MAML meta-gradient (backpropagation through K inner steps) at
    K = 50 over K = 5, fresh processes, same network without warps. It grows with K.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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

from warpkit.engine.adapt import adapt, forward, fresh_buffers, train_mode  # noqa: E402
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint  # noqa: E402
from warpkit.engine.init_learners import MAML, Leap  # noqa: E402
from warpkit.engine.meta import MetaLearner  # noqa: E402
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining  # noqa: E402
from warpkit.models.omniglot_net import OmniglotNet  # noqa: E402
from warpkit.engine.objectives import one_step_objective, replay_batches, warp_meta_gradient  # noqa: E402
from warpkit.engine.replay import (eager_point_meta_gradient, point_meta_gradient,  # noqa: E402
                                   replay_meta_gradient)
from warpkit.engine.tasks import SupervisedTask  # noqa: E402
from warpkit.engine.warp import task_parameters, warp_parameters  # noqa: E402
from warpkit.kit.results import git_commit, machine  # noqa: E402

WAYS, BATCH, INNER_LR = 20, 20, 0.1

#: the files whose code the numbers measure: ``--out`` records their SHA-256, and ``tests/test_engine_benchmark.py``
#: calls the committed result stale when one of them has changed since
SOURCES = ("benchmarks/engine.py", "warpkit/engine/adapt.py", "warpkit/engine/replay.py",
           "warpkit/engine/objectives.py", "warpkit/engine/meta.py", "warpkit/models/omniglot_net.py",
           "warpkit/models/cpu_layers.py")


def source_hashes() -> dict:
    """SHA-256 of every file in :data:`SOURCES`, as it is in the working tree now."""
    import hashlib

    return {path: hashlib.sha256((REPO / path).read_bytes()).hexdigest() for path in SOURCES}


def provenance(argv: list[str]) -> dict:
    """What made a result: the command, the commit (``-dirty`` with uncommitted changes), the machine and the
    hashes of the measured code."""
    return {"command": " ".join(["python", "benchmarks/engine.py", *argv]), "commit": git_commit(REPO),
            "machine": machine(), "sources": source_hashes()}


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


# ----------------------------------------------------------------------------------------------------------
# the reference: one-point-at-a-time WarpGrad, as the authors' code runs it
# ----------------------------------------------------------------------------------------------------------
META_WARP_LR, META_INIT_LR = 1e-3, 0.1


def stock_layers(model):
    """``model`` with PyTorch's stock ``nn.MaxPool2d`` in every block and a stock ``nn.Conv2d`` first, as the
    authors' network has them (same weights). warpkit's :mod:`~warpkit.models.cpu_layers` compute the same
    functions and derivatives, faster on a CPU."""
    for block in model.blocks:
        block.pool = torch.nn.MaxPool2d(2)
    first = model.blocks[0].conv
    stock = torch.nn.Conv2d(first.in_channels, first.out_channels, 3, padding=1).to(first.weight.dtype)
    stock.load_state_dict(first.state_dict())
    model.blocks[0].conv = stock
    return model


def _load(model, params: dict, buffers: dict) -> None:
    """Write a state into the module's own parameters and buffers (what the authors' code does per point)."""
    own = dict(model.named_parameters())
    own_buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in params.items():
            own[name].copy_(value)
        for name, value in buffers.items():
            own_buffers[name].copy_(value)


def reference_adapt(model, tasks, steps: int) -> tuple[list, dict]:
    """Adapt every task from θ_0 by plain autograd SGD on the module (φ frozen), keeping each pre-step state
    (θ_k and BatchNorm statistics); return the points and simplified Leap's θ_0-gradient (mean over tasks of
    −Σ_k Δθ_k / ‖Δθ_k‖)."""
    theta = task_parameters(model)
    init = {name: p.detach().clone() for name, p in theta.items()}
    leap = {name: torch.zeros_like(p) for name, p in init.items()}
    points = []
    for index, task in enumerate(tasks):
        _load(model, init, fresh_buffers(model))
        states = []
        for step in range(steps):
            states.append({name: p.detach().clone() for name, p in theta.items()})
            points.append((index, step, states[-1], {n: b.detach().clone() for n, b in model.named_buffers()}))
            inputs, target = task.sample_batch(step)
            gradients = torch.autograd.grad(F.cross_entropy(model(inputs), target), list(theta.values()))
            with torch.no_grad():
                for p, g in zip(theta.values(), gradients):
                    p.sub_(INNER_LR * g)
        states.append({name: p.detach().clone() for name, p in theta.items()})
        for before, after in zip(states[:-1], states[1:]):
            norm = torch.sqrt(sum((after[n] - before[n]).pow(2).sum() for n in leap))
            for name in leap:
                leap[name] -= (after[name] - before[name]) / norm / len(tasks)
    _load(model, init, {})
    return points, leap


def reference_meta_iteration(model, tasks, steps: int, generator: torch.Generator) -> dict:
    """One meta-iteration of one-point-at-a-time WarpGrad (Algorithm 2 with chunks of one point, as the authors'
    code runs it): adapt every task (:func:`reference_adapt`), one SGD step on θ_0 (simplified Leap), then for
    every buffered point in shuffled order: a fresh task batch and meta batch, the SGD lookahead
    θ' = θ_k − α ∇L_task (a detached gradient: first order in effect), the meta loss at θ' backpropagated into
    ``.grad`` by plain autograd, one SGD step on φ."""
    start = time.perf_counter()
    theta, phi = task_parameters(model), warp_parameters(model)
    with train_mode(model):
        points, leap = reference_adapt(model, tasks, steps)
        with torch.no_grad():
            for name, p in theta.items():
                p.sub_(META_INIT_LR * leap[name])
        init = {name: p.detach().clone() for name, p in theta.items()}
        adapted = time.perf_counter()
        for i in torch.randperm(len(points), generator=generator).tolist():
            index, step, params, buffers = points[i]
            _load(model, params, buffers)
            (inputs, target), (meta_inputs, meta_target) = tasks[index].sample_meta_batches(step)
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), target).backward()  # ∇θ L_task (and ∇φ, as the authors' code does)
            with torch.no_grad():
                for p in theta.values():
                    p.sub_(INNER_LR * p.grad)  # θ' = θ_k − α ∇L_task
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(meta_inputs), meta_target).backward()  # ∂/∂φ L_meta(θ'; φ) into .grad
            with torch.no_grad():
                for p in phi.values():
                    p.sub_(META_WARP_LR * p.grad)  # one φ-step per point
        _load(model, init, {})
    end = time.perf_counter()
    return {"seconds": end - start, "seconds_adapt": adapted - start, "seconds_replay": end - adapted}


def child_meta(variant: str, filters: int, steps: int, num_tasks: int) -> dict:
    """Seconds of one meta-iteration (after a 2-step warm-up iteration) of ``variant``: ``"reference"``
    (:func:`reference_meta_iteration` on the network with PyTorch's stock layers, :func:`stock_layers`, contiguous
    NCHW tensors, as in the authors' code), ``"reference_warpkit_layers"`` (the same loop on warpkit's network,
    whose first convolution and max-pools are :mod:`warpkit.models.cpu_layers`') or warpkit's
    :class:`~warpkit.engine.meta.MetaLearner` with the ``"first_order"`` or ``"exact"`` objective and its
    defaults otherwise (replay ``"auto"``, lookahead ``"auto"``), Warp-Leap
    (simplified Leap) with one φ-step per point, like the reference."""
    torch.manual_seed(0)
    model = OmniglotNet(ways=WAYS, filters=filters, warp="conv3")
    tasks = [synthetic_task(10 + i) for i in range(num_tasks)]
    if variant.startswith("reference"):
        model = model.to(memory_format=torch.contiguous_format)
        model = model if variant == "reference_warpkit_layers" else stock_layers(model)
        generator = torch.Generator().manual_seed(0)
        reference_meta_iteration(model, tasks, 2, generator)
        return {"variant": variant, **reference_meta_iteration(model, tasks, steps, generator)}
    learner = MetaLearner(model, F.cross_entropy, inner=InnerLoop(lr=INNER_LR, steps=2),
                          warp=WarpTraining(variant, lr=META_WARP_LR, points_per_step=1),
                          init=InitTraining(Leap(simplified=True), lr=META_INIT_LR))
    learner.meta_step(tasks)
    learner.inner = dataclasses.replace(learner.inner, steps=steps)
    start = time.perf_counter()
    stats = learner.meta_step(tasks)
    return {"variant": variant, "seconds": time.perf_counter() - start, "seconds_adapt": stats.seconds_adapt,
            "seconds_replay": stats.seconds_replay, "replay_path": learner.replay_path}


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


def prepared_replay(filters: int, num_points: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A model, ``num_points`` real trajectory points (an adaptation run: each carries its next state and batch)
    and their task, with a task batch and a meta batch drawn per point; all in ``dtype``."""
    torch.manual_seed(seed)
    model = OmniglotNet(ways=WAYS, filters=filters, warp="conv3").to(dtype)
    with torch.no_grad():  # a meta-trained-looking warp: away from the identity, so every term is non-zero
        for p in warp_parameters(model).values():
            p.add_(0.01 * torch.randn_like(p))
    task = synthetic_task(2)
    task.train_inputs = task.train_inputs.to(dtype)
    buffer = TrajectoryBuffer()
    buffer.add(0, adapt(model, task, F.cross_entropy, num_points, INNER_LR, final_loss=False))
    points = buffer.points()
    task_batches, meta_batches = replay_batches([task], points)
    return model, points, task, task_batches, meta_batches


def as_float64(model, points, task_batches, meta_batches):
    """The same replay case in float64."""
    model = model.double()
    points = [TrajectoryPoint(p.task_index, p.step, {n: t.double() for n, t in p.params.items()},
                              {n: t.double() if t.is_floating_point() else t for n, t in p.buffers.items()})
              for p in points]
    task_batches = [(x.double(), y) for x, y in task_batches]
    meta_batches = [(x.double(), y) for x, y in meta_batches]
    return model, points, task_batches, meta_batches


def general_gradient(model, points, task_batches, meta_batches, mode, batched=False):
    """The general path (:func:`~warpkit.engine.objectives.warp_meta_gradient`: the lookahead recomputed, exact
    by differentiating the inner gradient's backward pass)."""
    return warp_meta_gradient(model, F.cross_entropy, warp_parameters(model), points, task_batches, meta_batches,
                              INNER_LR, mode, batched=batched)[0]


def replay_gradient(model, points, task, mode, replay, lookahead="buffered", seed=7):
    """warpkit's replay (:func:`~warpkit.engine.replay.replay_meta_gradient`), the task's batches redrawn from
    ``seed`` so that every path sees the same ones."""
    task.generator = torch.Generator().manual_seed(seed)
    return replay_meta_gradient(model, F.cross_entropy, warp_parameters(model), points, [task], INNER_LR, mode,
                                replay, lookahead)[0]


def distance(a: dict, b: dict) -> float:
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in b)


def float64_check(filters: int = 64, num_points: int = 4) -> dict:
    """In float64 (the trajectory too, so that θ_{k+1} is the float64 lookahead): batched against looped replay
    (exact, buffered lookahead), and warpkit's split exact gradient against the general path given the same
    (inner-loop) task batches."""
    model, points, task, _, _ = prepared_replay(filters, num_points, dtype=torch.float64)
    looped = replay_gradient(model, points, task, "exact", "looped")
    batched = replay_gradient(model, points, task, "exact", "batched")
    task.generator = torch.Generator().manual_seed(7)
    _, meta_batches = replay_batches([task], points)
    general = general_gradient(model, points, [p.batch for p in points], meta_batches, "exact")
    return {"batched_vs_looped": distance(batched, looped), "split_vs_general": distance(looped, general)}


def to_device(model, points, task, device: str):
    """The replay case moved to ``device`` (the task's data too; its index generator stays on the CPU)."""
    model = model.to(device)
    points = [TrajectoryPoint(p.task_index, p.step, {n: t.to(device) for n, t in p.params.items()},
                              {n: t.to(device) for n, t in p.buffers.items()},
                              {n: t.to(device) for n, t in p.next_params.items()},
                              (p.batch[0].to(device), p.batch[1].to(device))) for p in points]
    task.train_inputs, task.train_targets = task.train_inputs.to(device), task.train_targets.to(device)
    return model, points, task


def child_replay(filters: int, num_points: int, repeats: int, device: str = "cpu") -> dict:
    """Exact replay of ``num_points`` points (buffered lookahead) on ``device``: looped against batched seconds,
    interleaved (on a GPU, batched is one vmapped call for all the points)."""
    model, points, task = to_device(*prepared_replay(filters, num_points)[:3], device)
    timings = {"looped": [], "batched": []}
    gradients = {}
    for round_index in range(repeats + 1):  # round 0 is the warm-up
        for path in timings:
            start = time.perf_counter()
            gradients[path] = replay_gradient(model, points, task, "exact", path)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if round_index:
                timings[path].append(time.perf_counter() - start)
    looped, batched = statistics.median(timings["looped"]), statistics.median(timings["batched"])
    return {"filters": filters, "points": num_points, "device": device, "looped_seconds": looped,
            "batched_seconds": batched, "speedup": looped / batched,
            "max_abs_diff": distance(gradients["batched"], gradients["looped"]), "timings": timings}


def lever_functions(model, points, task_batches, meta_batches):
    """Per-point work of each replay variant (one point at a time), for :func:`child_levers`."""
    stock = stock_layers(copy.deepcopy(model).to(memory_format=torch.contiguous_format))
    phi = {name: p.detach() for name, p in warp_parameters(model).items()}
    first_order = eager_point_meta_gradient(model, F.cross_entropy, INNER_LR, "first_order")
    first_order_func = point_meta_gradient(model, F.cross_entropy, INNER_LR, "first_order")
    exact = eager_point_meta_gradient(model, F.cross_entropy, INNER_LR, "exact")
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)  # the channels-last lever
    exact_channels_last = eager_point_meta_gradient(channels_last, F.cross_entropy, INNER_LR, "exact")
    phi_channels_last = {name: p.detach() for name, p in warp_parameters(channels_last).items()}

    def forward_backward(net, i):
        p = points[i]
        loss = F.cross_entropy(forward(net, dict(p.params), dict(p.buffers), meta_batches[i][0]), meta_batches[i][1])
        return torch.autograd.grad(loss, list(warp_parameters(net).values()))

    def general(i):
        p = points[i]
        loss = one_step_objective(model, F.cross_entropy, warp_parameters(model), p.params, p.buffers,
                                  p.batch, meta_batches[i], INNER_LR, "exact")
        return torch.autograd.grad(loss, list(warp_parameters(model).values()))

    def reference_point(i):  # what reference_meta_iteration does per point (without the φ-step)
        _load(stock, points[i].params, points[i].buffers)
        stock.zero_grad(set_to_none=True)
        F.cross_entropy(stock(task_batches[i][0]), task_batches[i][1]).backward()
        with torch.no_grad():
            for p in task_parameters(stock).values():
                p.sub_(INNER_LR * p.grad)
        stock.zero_grad(set_to_none=True)
        F.cross_entropy(stock(meta_batches[i][0]), meta_batches[i][1]).backward()

    def point(function, parameters, i, buffered):
        p = points[i]
        lookahead = p.next_params if buffered else None
        return function(parameters, p.params, lookahead, p.buffers, p.batch, meta_batches[i])

    return {
        "reference_point": reference_point,
        "forward_backward_stock_layers": lambda i: forward_backward(stock, i),
        "forward_backward_warpkit_layers": lambda i: forward_backward(model, i),
        "forward_backward_channels_last": lambda i: forward_backward(channels_last, i),
        "first_order_fresh": lambda i: point(first_order, phi, i, False),
        "first_order_buffered": lambda i: point(first_order, phi, i, True),
        "first_order_buffered_torch_func": lambda i: point(first_order_func, phi, i, True),
        "exact_general_double_backward": general,
        "exact_fresh_double_backward": lambda i: point(exact, phi, i, False),
        "exact_split_buffered": lambda i: point(exact, phi, i, True),
        "exact_split_buffered_channels_last": lambda i: point(exact_channels_last, phi_channels_last, i, True),
    }


def child_levers(filters: int, num_points: int, repeats: int) -> dict:
    """Seconds per point of every replay variant (:func:`lever_functions`), interleaved, median over repeats,
    and the FLOPs of one point of each."""
    from torch.utils.flop_counter import FlopCounterMode

    model, points, _, task_batches, meta_batches = prepared_replay(filters, num_points)
    functions = lever_functions(model, points, task_batches, meta_batches)
    timings = {name: [] for name in functions}
    with train_mode(model):
        for round_index in range(repeats + 1):
            for name, function in functions.items():
                start = time.perf_counter()
                for i in range(num_points):
                    function(i)
                if round_index:
                    timings[name].append((time.perf_counter() - start) / num_points)
        flops = {}
        for name, function in functions.items():
            with FlopCounterMode(display=False) as counter:
                function(0)
            flops[name] = float(counter.get_total_flops())
    return {"seconds_per_point": {n: statistics.median(t) for n, t in timings.items()},
            "gflop_per_point": {n: f / 1e9 for n, f in flops.items()}}


def stock_batchnorm_difference(filters: int = 8, num_points: int = 4) -> float:
    """Largest |batched − per-point| exact φ-gradient entry in float64 with the standard ``nn.BatchNorm2d``
    (general path, fresh lookahead): 0 up to rounding if the engine handles batch_norm's double backward under
    vmap (warpkit.engine.batchnorm)."""
    model, points, _, task_batches, meta_batches = prepared_replay(filters, num_points)
    assert all(type(block.norm) is torch.nn.BatchNorm2d for block in model.blocks)
    model, points, task_batches, meta_batches = as_float64(model, points, task_batches, meta_batches)
    looped = general_gradient(model, points, task_batches, meta_batches, "exact", batched=False)
    batched = general_gradient(model, points, task_batches, meta_batches, "exact", batched=True)
    return distance(batched, looped)


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


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings: checks the script, not the claims")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every measuring process")
    parser.add_argument("--memory-filters", type=int, default=16, help="filters of the network in the memory runs")
    parser.add_argument("--no-malloc-threshold", action="store_true",
                        help="measure memory with glibc's default (drifting) mmap threshold")
    parser.add_argument("--chunk", type=int, default=10, help="points per replayed chunk in the memory runs")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per replay path (after a warm-up)")
    parser.add_argument("--meta-rounds", type=int, default=2,
                        help="interleaved rounds of (reference, first order, exact) meta-iterations")
    parser.add_argument("--meta", type=int, nargs=3, default=(64, 100, 4), metavar=("FILTERS", "K", "T"),
                        help="network filters, inner steps and tasks of the timed meta-iterations")
    parser.add_argument("--out", help="also write the JSON object, with its provenance, to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_as_child(kind: str, rest: list[str]) -> dict:
    if kind == "warpgrad":
        steps, filters, chunk, held = rest
        return child_warpgrad(int(steps), int(filters), int(chunk), held == "held")
    if kind == "maml":
        return child_maml(int(rest[0]), int(rest[1]))
    if kind == "meta":
        return child_meta(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
    if kind == "levers":
        return child_levers(int(rest[0]), int(rest[1]), int(rest[2]))
    if kind == "replay":
        return child_replay(int(rest[0]), int(rest[1]), int(rest[2]), *rest[3:4])
    if kind == "float64":
        return float64_check(int(rest[0]), int(rest[1]))
    if kind == "stock-bn":
        return {"max_abs_diff": stock_batchnorm_difference()}
    raise SystemExit(f"unknown child {kind!r}")


def measure_memory(args, quick: bool, timeout: float) -> dict:
    k_small, k_large = (4, 40) if quick else (10, 1000)
    maml_small, maml_large = (2, 8) if quick else (5, 50)
    memory_filters = 8 if quick else args.memory_filters
    chunk = k_small if quick else args.chunk  # quick: the small run fills one whole chunk, as K = 10 does
    memory_env = {} if args.no_malloc_threshold else MEMORY_ENV
    memory, maml = {}, {}
    for variant in ("streamed", "held"):
        for steps in (k_small, k_large):
            memory[variant, steps] = run_child(["warpgrad", str(steps), str(memory_filters), str(chunk), variant],
                                               args.threads, timeout, memory_env)
            say(f"WarpGrad ({variant}) K={steps}: {memory[variant, steps]}")
    for steps in (maml_small, maml_large):
        maml[steps] = run_child(["maml", str(steps), str(memory_filters)], args.threads, timeout, memory_env)
        say(f"MAML K={steps}: {maml[steps]}")

    def net_ratio(large: dict, small: dict) -> float:
        return (large["peak_mb"] - large["baseline_mb"]) / (small["peak_mb"] - small["baseline_mb"])

    return {
        "warpgrad_memory_ratio": round(net_ratio(memory["streamed", k_large], memory["streamed", k_small]), 4),
        "maml_memory_ratio": round(net_ratio(maml[maml_large], maml[maml_small]), 4),
        "warpgrad_memory_process_ratio": round(
            memory["streamed", k_large]["peak_mb"] / memory["streamed", k_small]["peak_mb"], 4),
        "warpgrad_memory_ratio_held": round(net_ratio(memory["held", k_large], memory["held", k_small]), 4),
        "maml_memory_process_ratio": round(maml[maml_large]["peak_mb"] / maml[maml_small]["peak_mb"], 4),
        "memory_peaks_mb": {
            **{f"warpgrad_{variant}_K{steps}": [round(m["baseline_mb"], 1), round(m["peak_mb"], 1)]
               for (variant, steps), m in memory.items()},
            **{f"maml_K{steps}": [round(m["baseline_mb"], 1), round(m["peak_mb"], 1)] for steps, m in maml.items()},
        },
        "memory_settings": {"filters": memory_filters, "chunk": chunk, "mode": "exact",
                            "buffer": "on disk (streamed) / in memory (held)", "K": [k_small, k_large],
                            "maml_K": [maml_small, maml_large], "peaks": "[baseline after setup, peak] MB, ru_maxrss",
                            "malloc_env": memory_env},
    }


META_VARIANTS = ("reference", "first_order", "exact", "reference_warpkit_layers")


def measure_meta_iterations(args, filters: int, steps: int, tasks: int, rounds: int, timeout: float) -> dict:
    """Seconds per meta-iteration of the reference and of warpkit's defaults, ``rounds`` interleaved rounds (one
    fresh process each); the ratios are those of the medians."""
    runs = {variant: [] for variant in META_VARIANTS}
    for round_index in range(rounds):  # A B C D, then D C B A, ...: a drifting load touches every variant alike
        for variant in META_VARIANTS[::-1] if round_index % 2 else META_VARIANTS:
            out = run_child(["meta", variant, str(filters), str(steps), str(tasks)], args.threads, timeout)
            runs[variant].append({**out, "load": round(load_average(), 2)})
            say(f"meta-iteration {variant}: {runs[variant][-1]}")
    median = {v: {key: statistics.median(r[key] for r in runs[v]) for key in ("seconds", "seconds_adapt",
                                                                               "seconds_replay")} for v in runs}
    return {
        "seconds_per_meta_iteration": {v: round(m["seconds"], 2) for v, m in median.items()},
        "seconds_adapt_replay": {v: [round(m["seconds_adapt"], 2), round(m["seconds_replay"], 2)]
                                 for v, m in median.items()},
        "meta_iteration_ratio_exact": round(median["exact"]["seconds"] / median["reference"]["seconds"], 4),
        "meta_iteration_ratio_first_order": round(
            median["first_order"]["seconds"] / median["reference"]["seconds"], 4),
        "meta_iteration_ratio_same_layers": {  # against the reference loop run on warpkit's layers
            v: round(median[v]["seconds"] / median["reference_warpkit_layers"]["seconds"], 4)
            for v in ("first_order", "exact")},
        "meta_iteration_runs": runs,
        "meta_iteration_settings": {"filters": filters, "K": steps, "T": tasks, "rounds": rounds,
                                    "points": steps * tasks, "statistic": "median over interleaved rounds (ABCD, DCBA, ...)",
                                    "schedule": "one φ-step per point, simplified Leap on θ_0"},
        "_median": median,
    }


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_as_child(args.child[0], args.child[1:])))
        return
    quick = args.quick
    filters, steps, tasks = (8, 4, 2) if quick else tuple(args.meta)
    rounds, repeats = (1, 1) if quick else (args.meta_rounds, args.repeats)
    replay_filters, replay_points = (16, 8) if quick else (64, 16)
    timeout = 3600
    started = time.perf_counter()
    load_start = load_average()
    made_by = provenance(sys.argv[1:])  # before the run: the code measured, whatever happens to the checkout
    say(f"threads={args.threads} quick={quick}; cpu count {os.cpu_count()}")
    result = measure_memory(args, quick, timeout)
    meta = measure_meta_iterations(args, filters, steps, tasks, rounds, timeout)
    median = meta.pop("_median")
    levers = run_child(["levers", str(replay_filters), "4" if quick else "6", str(repeats)], args.threads, timeout)
    say(f"levers (seconds per point): {levers}")
    replay = run_child(["replay", str(replay_filters), str(replay_points), str(repeats)], args.threads, timeout)
    say(f"replay exact, {replay_filters} filters: {replay}")
    replay_small = run_child(["replay", "8", str(replay_points), str(repeats)], args.threads, timeout)
    say(f"replay exact, 8 filters: {replay_small}")
    precision = run_child(["float64", str(replay_filters), "4"], args.threads, timeout)
    say(f"float64: {precision}")
    stock = run_child(["stock-bn"], args.threads, timeout)
    say(f"fused nn.BatchNorm2d, float64, batched vs per-point exact (general path): {stock}")
    ceiling = matmul_gflops()
    flops = levers["gflop_per_point"]
    points = steps * tasks
    same_network = replay_filters == filters
    # GFLOP of the replayed points over the measured replay seconds of each meta-iteration (Warp-Leap is offline,
    # so warpkit replays with a fresh lookahead there)
    replay_rate = {
        "reference": flops["reference_point"] * points / median["reference"]["seconds_replay"],
        "first_order": flops["first_order_fresh"] * points / median["first_order"]["seconds_replay"],
        "exact": flops["exact_fresh_double_backward"] * points / median["exact"]["seconds_replay"],
    } if same_network else {}
    result.update({
        **meta,
        "replay_float64_max_abs_diff": precision["batched_vs_looped"],
        "replay_float64_split_vs_general": precision["split_vs_general"],
        "replay_gflops_per_second": {k: round(v, 2) for k, v in replay_rate.items()},
        "matmul_gflops_per_second": round(ceiling, 2),
        "replay_fraction_of_matmul": {k: round(v / ceiling, 3) for k, v in replay_rate.items()},
        "replay_limit": replay_limit(replay_rate["exact"] / ceiling) if same_network else "n/a",
        "replay_seconds_per_point": {k: round(v, 4) for k, v in levers["seconds_per_point"].items()},
        "replay_gflop_per_point": {k: round(v, 3) for k, v in levers["gflop_per_point"].items()},
        "replay_speedup": round(replay["speedup"], 4),
        "replay_seconds": {"looped": round(replay["looped_seconds"], 3), "batched": round(replay["batched_seconds"], 3)},
        "replay_max_abs_diff": replay["max_abs_diff"],
        "replay_speedup_8_filters": round(replay_small["speedup"], 4),
        "replay_max_abs_diff_fused_batchnorm_float64": stock["max_abs_diff"],
        "replay_settings": {"filters": replay_filters, "points": replay_points, "batch_per_point": BATCH,
                            "mode": "exact", "lookahead": "buffered", "repeats": repeats,
                            "statistic": "median after 1 warm-up"},
        "threads": args.threads,
        "load_average_start_end": [round(load_start, 2), round(load_average(), 2)],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "quick": quick,
    })
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "provenance": made_by}, indent=1) + "\n")


if __name__ == "__main__":
    main()
