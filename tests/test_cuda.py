"""The engine on a CUDA GPU: the same numbers as on the CPU, no waits for the host inside the inner loop, and a
lesson that really ran on the GPU. Every test is marked ``cuda`` and skipped without a GPU; ``python3 kit.py
gpu-check`` runs them (``pytest -m cuda tests/test_cuda.py``) and fails if any is skipped there.

CPU and CUDA are compared in float64, where the only differences are summation orders (cuDNN's convolutions,
reductions): relative tolerance 1e-9. Each comparison builds the same model, points and batches on the CPU and
copies them to the GPU, so both devices see identical inputs.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from warpkit.engine.adapt import adapt, adapt_tasks, fresh_buffers
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint
from warpkit.engine.init_learners import Leap, Reptile
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.engine.replay import replay_meta_gradient
from warpkit.engine.objectives import warp_meta_gradient, warp_objective
from warpkit.engine.tasks import SupervisedTask
from warpkit.engine.warp import task_parameters, warp_parameters
from warpkit.models.omniglot_net import OmniglotNet

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]

CUDA = torch.device("cuda")
F64 = torch.float64
RTOL, ATOL = 1e-9, 1e-11
WAYS, FILTERS, BATCH = 3, 4, 6


@pytest.fixture(autouse=True)
def deterministic_kernels():
    """cuDNN's autotuner may pick non-deterministic kernels; TF32 would change float32 (not float64) results."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def make_model(seed: int = 0, device="cpu") -> OmniglotNet:
    """A small Omniglot net (BatchNorm, 3×3 conv warps) in float64, its warps moved away from the identity."""
    torch.manual_seed(seed)
    model = OmniglotNet(ways=WAYS, filters=FILTERS, warp="conv3").to(F64)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in warp_parameters(model).values():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=F64))
    return model.to(device)


def images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(count, 1, 28, 28, generator=generator, dtype=F64),
            torch.randint(0, WAYS, (count,), generator=generator))


def to(batch, device):
    return tuple(t.to(device) for t in batch)


def assert_close(cuda_tensors: dict, cpu_tensors: dict, what: str) -> None:
    assert set(cuda_tensors) == set(cpu_tensors), what
    for name, value in cuda_tensors.items():
        assert value.is_cuda, f"{what}: {name} is not on the GPU"
        torch.testing.assert_close(value.cpu(), cpu_tensors[name], rtol=RTOL, atol=ATOL, msg=f"{what}: {name}")


def points_and_batches(model, count: int = 4, seed: int = 1):
    """``count`` trajectory points (θ perturbed, fresh BN statistics) with their task and meta batches (CPU)."""
    generator = torch.Generator().manual_seed(seed)
    points, task_batches, meta_batches = [], [], []
    for index in range(count):
        params = {n: p.detach() + 0.05 * torch.randn(p.shape, generator=generator, dtype=F64)
                  for n, p in task_parameters(model).items()}
        points.append(TrajectoryPoint(index, 0, params, fresh_buffers(model)))
        task_batches.append(images(BATCH, seed + 10 + index))
        meta_batches.append(images(BATCH, seed + 50 + index))
    return points, task_batches, meta_batches


def point_to(point: TrajectoryPoint, device) -> TrajectoryPoint:
    return TrajectoryPoint(point.task_index, point.step, {n: t.to(device) for n, t in point.params.items()},
                           {n: t.to(device) for n, t in point.buffers.items()})


def image_task(seed: int, device="cpu") -> SupervisedTask:
    """A task on ``device``; its batches are drawn by a CPU generator, so CPU and GPU draw the same examples."""
    x, y = images(24, seed)
    return SupervisedTask(x.to(device), y.to(device), x[:6].to(device), y[:6].to(device), batch_size=BATCH,
                          generator=torch.Generator().manual_seed(seed + 1))


class DeviceTask:
    """A task whose batches are made once, on the task's device: sampling costs no copy between host and GPU."""

    def __init__(self, seed: int, device, batches: int = 4):
        self.batches = [to(images(BATCH, seed * 100 + i), device) for i in range(batches)]

    def sample_batch(self, step):
        return self.batches[step % len(self.batches)]

    def sample_meta_batches(self, step):
        return self.batches[step % len(self.batches)], self.batches[(step + 1) % len(self.batches)]

    def evaluation_batch(self):
        return self.batches[0]


# ----------------------------------------------------------------------------------------------------------
# the same numbers on both devices
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "first_order"])
def test_phi_gradients_on_cuda_equal_the_cpu(mode):
    cpu_model = make_model()
    gpu_model = copy.deepcopy(cpu_model).to(CUDA)
    points, task_batches, meta_batches = points_and_batches(cpu_model)
    expected, value = warp_meta_gradient(cpu_model, F.cross_entropy, warp_parameters(cpu_model), points,
                                         task_batches, meta_batches, 0.1, mode, batched=False)
    gpu_args = ([point_to(p, CUDA) for p in points], [to(b, CUDA) for b in task_batches],
                [to(b, CUDA) for b in meta_batches])
    for batched in (False, True):
        got, got_value = warp_meta_gradient(gpu_model, F.cross_entropy, warp_parameters(gpu_model), *gpu_args,
                                            0.1, mode, batched=batched)
        assert_close(got, expected, f"{mode} φ-gradient, batched={batched}")
        assert got_value == pytest.approx(value, rel=RTOL)
    assert any(g.abs().max() > 1e-6 for g in expected.values()), "a vanishing gradient would make this test vacuous"


@pytest.mark.parametrize("mode", ["exact", "first_order"])
def test_fast_replay_on_cuda_equals_the_cpu(mode):
    """warpkit.engine.replay (buffered lookahead, split exact gradient), looped and batched, on the GPU."""
    gradients = {}
    for device, paths in (("cpu", ("looped",)), (CUDA, ("looped", "batched"))):
        model = make_model(device=device)
        buffer = TrajectoryBuffer()
        buffer.add(0, adapt(model, image_task(3, device), F.cross_entropy, 3, 0.1, final_loss=False))
        for path in paths:
            gradients[str(device), path] = replay_meta_gradient(
                model, F.cross_entropy, warp_parameters(model), buffer.points(), [image_task(4, device)], 0.1, mode,
                replay=path)[0]
    for path in ("looped", "batched"):
        assert_close(gradients["cuda", path], gradients["cpu", "looped"], f"{mode} fast replay, {path}")


def test_adapt_and_batchnorm_statistics_on_cuda_equal_the_cpu():
    cpu_model = make_model(seed=3)
    gpu_model = copy.deepcopy(cpu_model).to(CUDA)
    expected = adapt(cpu_model, image_task(7), F.cross_entropy, 5, 0.1, keep_gradients=True)
    got = adapt(gpu_model, image_task(7, CUDA), F.cross_entropy, 5, 0.1, keep_gradients=True)
    assert got.losses == pytest.approx(expected.losses, rel=RTOL)
    assert got.final_loss == pytest.approx(expected.final_loss, rel=RTOL)
    assert_close(got.final_params, expected.final_params, "θ_K")
    for k in range(5):
        assert_close(got.params[k], expected.params[k], f"θ_{k}")
        assert_close(got.buffers[k], expected.buffers[k], f"BatchNorm statistics before step {k}")
        assert_close(got.gradients[k], expected.gradients[k], f"∇θ at step {k}")
    assert_close(got.final_buffers, expected.final_buffers, "BatchNorm statistics after adaptation")
    running = [name for name in expected.final_buffers if name.endswith("running_mean")]
    assert running and all(expected.final_buffers[n].abs().max() > 0 for n in running), "BN statistics never moved"


def test_adapt_tasks_on_cuda_equals_the_cpu_and_adapting_each_task_alone():
    cpu_model = make_model(seed=4)
    gpu_model = copy.deepcopy(cpu_model).to(CUDA)
    expected = adapt_tasks(cpu_model, [image_task(s) for s in (1, 2, 3)], F.cross_entropy, 4, 0.1)
    got = adapt_tasks(gpu_model, [image_task(s, CUDA) for s in (1, 2, 3)], F.cross_entropy, 4, 0.1)
    alone = [adapt(gpu_model, image_task(s, CUDA), F.cross_entropy, 4, 0.1) for s in (1, 2, 3)]
    for index, (g, e, a) in enumerate(zip(got, expected, alone)):
        assert g.losses == pytest.approx(e.losses, rel=RTOL) and g.losses == pytest.approx(a.losses, rel=RTOL)
        assert_close(g.final_params, e.final_params, f"task {index}: θ_K against the CPU")
        assert_close(g.final_buffers, e.final_buffers, f"task {index}: BN statistics against the CPU")
        assert_close(g.final_params, {n: t.cpu() for n, t in a.final_params.items()}, f"task {index}: against adapt")


@pytest.mark.parametrize("batched_adaptation", [False, True])
def test_a_warp_leap_meta_iteration_on_cuda_equals_the_cpu(batched_adaptation):
    results = {}
    for name, device in (("cpu", torch.device("cpu")), ("cuda", CUDA)):
        model = make_model(seed=5, device=device)
        learner = MetaLearner(model, F.cross_entropy, inner=InnerLoop(lr=0.1, steps=3, batched=batched_adaptation),
                              warp=WarpTraining(lr=0.01, optimizer="adam", points_per_step=4),
                              init=InitTraining(Leap(), lr=0.01, optimizer="adam"))
        for iteration in range(2):
            learner.meta_step([image_task(10 * iteration + s, device) for s in (1, 2)])
        results[name] = {n: p.detach() for n, p in model.named_parameters()}
    assert_close(results["cuda"], results["cpu"], "θ_0 and φ after two Warp-Leap meta-iterations")


# ----------------------------------------------------------------------------------------------------------
# no waiting for the host in the hot loop
# ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def counting_host_syncs():
    """Count the operations that make the host wait for the GPU (``torch.cuda`` sync debug mode, as warnings)."""
    torch.cuda.synchronize()
    syncs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield syncs
        finally:
            torch.cuda.set_sync_debug_mode("default")
            syncs += [str(w.message) for w in caught if "synchroniz" in str(w.message)]


def test_the_sync_counter_sees_a_host_copy():
    with counting_host_syncs() as syncs:
        float(torch.ones(3, device=CUDA).sum())
    assert len(syncs) >= 1, "the counter must see float() of a CUDA tensor, or the tests below prove nothing"


def test_replay_of_a_chunk_never_waits_for_the_host():
    model = make_model(seed=6, device=CUDA)
    points, task_batches, meta_batches = points_and_batches(model.cpu())
    model.to(CUDA)
    args = ([point_to(p, CUDA) for p in points], [to(b, CUDA) for b in task_batches], [to(b, CUDA) for b in meta_batches])
    warp = warp_parameters(model)
    warp_objective(model, F.cross_entropy, warp, *args, 0.1, "exact", batched=True)  # warm-up: lazy initialisation
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        loss = warp_objective(model, F.cross_entropy, warp, *args, 0.1, "exact", batched=True)
        gradients = torch.autograd.grad(loss, list(warp.values()))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(g.is_cuda for g in gradients)


def test_adaptation_waits_for_the_host_a_fixed_number_of_times_whatever_the_number_of_steps():
    model = make_model(seed=7, device=CUDA)
    adapt(model, DeviceTask(4, CUDA), F.cross_entropy, 2, 0.1)  # warm-up: lazy initialisation is not the loop's
    adapt_tasks(model, [DeviceTask(5, CUDA), DeviceTask(6, CUDA)], F.cross_entropy, 2, 0.1)
    counts = {}
    for steps in (3, 9):
        task = DeviceTask(1, CUDA)
        with counting_host_syncs() as syncs:
            trajectory = adapt(model, task, F.cross_entropy, steps, 0.1)
            batched = adapt_tasks(model, [DeviceTask(2, CUDA), DeviceTask(3, CUDA)], F.cross_entropy, steps, 0.1)
        counts[steps] = len(syncs)
        assert all(t.is_cuda for p in trajectory.params for t in p.values())
        assert all(t.is_cuda for b in batched for t in b.final_params.values())
    assert counts[9] == counts[3], f"host syncs grow with the number of inner steps: {counts}"


def test_a_meta_iteration_keeps_everything_on_the_gpu_and_its_host_syncs_do_not_grow_with_k():
    counts = {}
    for steps in (3, 6):
        model = make_model(seed=8, device=CUDA)
        learner = MetaLearner(model, F.cross_entropy, inner=InnerLoop(lr=0.1, steps=steps, batched=True),
                              warp=WarpTraining(lr=0.01, optimizer="adam", points_per_step=64),
                              init=InitTraining(Reptile(), lr=0.1))
        tasks = [DeviceTask(s, CUDA) for s in (1, 2, 3)]
        learner.meta_step(tasks)  # warm-up: optimiser state, cuDNN handles
        with counting_host_syncs() as syncs:
            learner.meta_step(tasks)
        counts[steps] = len(syncs)
        assert all(p.is_cuda for p in model.parameters()) and all(b.is_cuda for b in model.buffers())
    assert counts[6] == counts[3], f"host syncs in a meta-iteration grow with the number of inner steps: {counts}"


# ----------------------------------------------------------------------------------------------------------
# a lesson on the GPU
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.notebook
def test_a_lesson_executed_with_device_cuda_ran_on_the_gpu(execute_notebook):
    lesson = execute_notebook("01_preconditioning", DEVICE="cuda", SAVE_FIGS=False)
    assert lesson.records["device"] == "cuda"
    assert lesson.records["device_name"] == torch.cuda.get_device_name(0)
    assert lesson.records["warp_identity_max_error"] <= 1e-10  # computed on the GPU, in float64
