"""The trajectory buffer: memory and disk agree, files are atomic and cleaned, bad files are reported,
and the replay sampler visits every point exactly once per epoch."""

import functools

import pytest
import torch
import torch.nn as nn

import warpkit.engine.buffer as buffer_module
from warpkit.engine.adapt import adapt
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint, stack_points
from warpkit.engine.tasks import stack_batches
from warpkit.engine.tasks import SupervisedTask

torch.set_num_threads(1)  # tiny tensors: intra-op threads only add contention on a shared machine


def mse(output, target):
    return ((output - target) ** 2).mean()


@functools.lru_cache(maxsize=None)
def make_trajectories(num_tasks=3, steps=5):  # cached: the tests only read the trajectories
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
    trajectories = []
    for seed in range(num_tasks):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(16, 3, generator=generator)
        y = torch.randn(16, 2, generator=generator)
        task = SupervisedTask(x, y, batch_size=8, generator=torch.Generator().manual_seed(100 + seed))
        trajectories.append(adapt(model, task, mse, num_steps=steps, lr=0.1))
    return trajectories


def filled(directory=None, num_tasks=3, steps=5):
    buffer = TrajectoryBuffer(directory)
    for index, trajectory in enumerate(make_trajectories(num_tasks, steps)):
        buffer.add(index, trajectory)
    return buffer


def same_point(a: TrajectoryPoint, b: TrajectoryPoint) -> bool:
    return (
        (a.task_index, a.step) == (b.task_index, b.step)
        and a.params.keys() == b.params.keys()
        and a.buffers.keys() == b.buffers.keys()
        and all(torch.equal(a.params[n], b.params[n]) for n in a.params)
        and all(torch.equal(a.buffers[n], b.buffers[n]) for n in a.buffers)
    )


def test_memory_and_disk_buffers_hold_identical_points_and_chunks(tmp_path):
    memory, disk = filled(), filled(tmp_path / "points")
    assert len(memory) == len(disk) == 15
    for i in range(len(memory)):
        assert same_point(memory[i], disk[i]), i
    # the points are the trajectories' pre-step states, with the BN statistics of that moment
    trajectories = make_trajectories()
    assert torch.equal(disk[7].params["0.weight"], trajectories[1].params[2]["0.weight"])
    assert torch.equal(disk[7].buffers["1.running_mean"], trajectories[1].buffers[2]["1.running_mean"])
    chunks_memory = list(memory.chunks(4, generator=torch.Generator().manual_seed(7)))
    chunks_disk = list(disk.chunks(4, generator=torch.Generator().manual_seed(7)))
    assert [len(c) for c in chunks_memory] == [len(c) for c in chunks_disk] == [4, 4, 4, 3]
    for chunk_m, chunk_d in zip(chunks_memory, chunks_disk):
        assert all(same_point(a, b) for a, b in zip(chunk_m, chunk_d))


def test_on_disk_points_are_files_written_by_rename_and_cleared(tmp_path):
    directory = tmp_path / "points"
    directory.mkdir()
    foreign = directory / "notes.txt"
    foreign.write_text("not the buffer's")
    disk = filled(directory, num_tasks=2, steps=3)
    files = sorted(p.name for p in directory.glob("point_*.pt"))
    assert files == [f"point_{i:08d}.pt" for i in range(6)]
    assert not list(directory.glob("*.tmp"))  # nothing half-written left behind
    disk.clear()
    assert len(disk) == 0 and not list(directory.glob("point_*.pt"))
    assert foreign.read_text() == "not the buffer's"  # only the buffer's own files are deleted
    # a cleared buffer is reusable
    disk.add(0, make_trajectories(1, 2)[0])
    assert len(disk) == 2


def test_an_interrupted_write_never_leaves_a_point_file(tmp_path, monkeypatch):
    disk = TrajectoryBuffer(tmp_path)
    point = TrajectoryPoint(0, 0, {"w": torch.ones(3)}, {})
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:  # half a file, then the process "dies"
            handle.write(b"\x80\x02partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(buffer_module.torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        disk.add_point(point)
    monkeypatch.setattr(buffer_module.torch, "save", real_save)
    assert not list(tmp_path.glob("point_*.pt"))  # the final name only ever holds a complete file
    assert len(disk) == 0
    disk.add_point(point)
    assert torch.equal(disk[0].params["w"], torch.ones(3))


def test_a_truncated_point_file_gives_a_clear_error(tmp_path):
    disk = filled(tmp_path, num_tasks=1, steps=3)
    victim = tmp_path / "point_00000001.pt"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    assert same_point(disk[0], filled(num_tasks=1, steps=3)[0])  # the others still read
    with pytest.raises(RuntimeError, match=r"cannot read buffered point .*point_00000001\.pt"):
        disk[1]
    with pytest.raises(RuntimeError, match="point_00000001"):
        list(disk.chunks(3, shuffle=False))


@pytest.mark.parametrize("chunk_size", [1, 4, 15, 40])
def test_chunks_cover_every_point_exactly_once_per_epoch(chunk_size):
    buffer = filled()
    generator = torch.Generator().manual_seed(3)
    orders = []
    for _ in range(3):  # three epochs from one generator
        chunks = list(buffer.chunks(chunk_size, generator=generator))
        sizes = [len(c) for c in chunks]
        assert all(s == chunk_size for s in sizes[:-1]) and 1 <= sizes[-1] <= chunk_size
        assert sum(sizes) == len(buffer)
        keys = [(p.task_index, p.step) for c in chunks for p in c]
        assert sorted(keys) == [(t, k) for t in range(3) for k in range(5)]  # each exactly once
        orders.append(keys)
    if chunk_size < len(buffer):
        assert orders[0] != orders[1]  # each epoch reshuffles
    assert orders[0] != sorted(orders[0])  # shuffled across tasks and steps


def test_unshuffled_chunks_keep_insertion_order_and_bad_sizes_are_refused():
    buffer = filled(num_tasks=2, steps=3)
    keys = [(p.task_index, p.step) for c in buffer.chunks(2, shuffle=False) for p in c]
    assert keys == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="chunk_size"):
        next(buffer.chunks(0))


def test_same_seed_same_order_different_seed_different_order():
    buffer = filled()

    def order(seed):
        return [(p.task_index, p.step) for c in buffer.chunks(4, generator=torch.Generator().manual_seed(seed))
                for p in c]

    assert order(11) == order(11)
    assert order(11) != order(12)


def test_adding_a_trajectory_without_states_is_refused():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    task = SupervisedTask(torch.randn(8, 2), torch.randn(8, 1), batch_size=4)
    trajectory = adapt(model, task, mse, num_steps=3, lr=0.1, keep_trajectory=False)
    with pytest.raises(ValueError, match="keep_trajectory=True"):
        TrajectoryBuffer().add(0, trajectory)


def test_stacking_points_and_batches():
    buffer = filled(num_tasks=1, steps=4)
    params, buffers = stack_points(buffer.points())
    assert params["0.weight"].shape == (4, 4, 3) and buffers["1.running_var"].shape == (4, 4)
    assert torch.equal(params["3.bias"][2], buffer[2].params["3.bias"])
    batches = [(torch.full((2, 3), float(i)), (torch.full((2,), float(i)), {"w": torch.ones(2) * i})) for i in range(3)]
    inputs, (target, extra) = stack_batches(batches)
    assert inputs.shape == (3, 2, 3) and target.shape == (3, 2) and extra["w"].shape == (3, 2)
    assert float(extra["w"][2, 0]) == 2.0
    with pytest.raises(ValueError, match="no points"):
        stack_points([])
    with pytest.raises(TypeError, match="cannot stack"):
        stack_batches([(torch.ones(1), "label"), (torch.ones(1), "label")])
