"""Meta-training over several processes (``warpkit.engine.distributed``): two ``gloo`` processes launched by
``torchrun`` reproduce one process to rounding, a killed job resumes, a failing rank fails the job.

The multi-process tests start ``torchrun`` on ``tests/distributed_worker.py`` (float64, a two-layer network with a
residual warp, 3 tasks per meta-batch split 1 + 2 over the ranks, 4 inner steps, chunks of 5 of the 12 points);
the one-process reference runs the same worker in this process, without a reducer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

import distributed_worker as worker
from warpkit.engine import distributed
from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint
from warpkit.experiments.train import DistributedCheckpointer, compare_results
from warpkit.kit.checkpoint import CheckpointError

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed_worker.py"
VARIANTS = ["exact:leap:offline", "first_order:leap:offline", "first_order:leap-simplified:offline:batched:disk",
            "exact:reptile:online"]
TOLERANCE = 1e-10  # float64: sums over processes are reassociated, so equality holds to rounding only


def torchrun(args: list[str], processes: int = 2, timeout: float = 240, **popen) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--standalone",
               str(WORKER), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **popen)


def kill_tree(pid: int) -> None:
    """SIGKILL the process ``pid`` and all its descendants (the job's ranks), children first."""
    try:
        root = psutil.Process(pid)
        processes = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=30)


def one_process(out: Path, args: list[str]) -> None:
    assert "WORLD_SIZE" not in os.environ
    worker.main(["--out", str(out), *args])


def load(out: Path, variant: str, rank: int) -> dict:
    return torch.load(out / f"{variant.replace(':', '_')}_rank{rank}.pt", weights_only=False)


def assert_close(a: dict, b: dict, tolerance: float = TOLERANCE) -> None:
    for part in ("theta", "phi"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            gap = float((a[part][name] - b[part][name]).abs().max())
            assert gap <= tolerance, f"{part} {name} differs by {gap:.3g}"


# ------------------------------------------------------------------------------------------------------------
# without processes
# ------------------------------------------------------------------------------------------------------------
def test_distributed_task_shares_partition_the_meta_batch():
    for tasks in range(2, 9):
        for world in range(1, tasks + 1):
            shares = [distributed.task_share(tasks, rank, world) for rank in range(world)]
            assert [i for share in shares for i in share] == list(range(tasks))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1 and min(map(len, shares)) >= 1
    with pytest.raises(ValueError, match="cannot be split over 3 processes"):
        distributed.task_share(2, 0, 3)


def test_distributed_rank_seeds_keep_rank_zero_and_differ_per_rank():
    assert distributed.rank_seed(7, 0) == 7
    seeds = {distributed.rank_seed(7, rank) for rank in range(16)}
    assert len(seeds) == 16 and distributed.rank_seed(7, 3) == distributed.rank_seed(7, 3)
    assert distributed.rank_seed(7, 1) != distributed.rank_seed(8, 1)


def test_distributed_world_of_one_leaves_the_learner_untouched(tmp_path):
    communicator = distributed.init("gloo")
    assert communicator.world_size == 1 and not communicator.is_distributed
    learner = worker.make_learner("exact", "leap", "offline", False)
    buffer = learner.buffer
    assert distributed.distribute(learner, communicator) is learner
    assert learner.reducer is None and learner.buffer is buffer  # today's code path, unchanged
    gradient = {"a": torch.ones(3)}
    assert torch.equal(communicator.all_reduce_sum(gradient)["a"], gradient["a"])


class _FakeCommunicator(distributed.Communicator):
    """Rank ``rank`` of a world whose other ranks' contribution to every all-reduce is given."""

    def __init__(self, rank, world_size, others):
        super().__init__(rank, world_size)
        self.others = others

    def all_reduce_sum(self, tensors):
        return {n: t + self.others[n] for n, t in tensors.items()}


def test_distributed_sharded_buffer_numbers_points_like_one_process():
    # 3 tasks of 4, 4 and 2 points; this is rank 1 of 2, owning tasks 1 and 2 (task 0: 4 points elsewhere)
    reducer = distributed.MetaBatchReducer(_FakeCommunicator(1, 2, {"counts": torch.tensor([4.0, 0.0, 0.0])}))
    assert [reducer.owns(i, 3) for i in range(3)] == [False, True, True]
    buffer = distributed.ShardedBuffer(TrajectoryBuffer(), reducer)
    for task, steps in ((1, 4), (2, 2)):
        for step in range(steps):
            buffer.add_point(TrajectoryPoint(task, step, {"w": torch.tensor([float(10 * task + step)])}, {}))
    total, where = buffer.global_layout()
    assert total == 10 and where == {4: 0, 5: 1, 6: 2, 7: 3, 8: 4, 9: 5}
    single = TrajectoryBuffer()  # what one process would hold: task 0's points first
    for task, steps in ((0, 4), (1, 4), (2, 2)):
        for step in range(steps):
            single.add_point(TrajectoryPoint(task, step, {"w": torch.tensor([float(10 * task + step)])}, {}))
    expected = [[(p.task_index, p.step) for p in chunk if p.task_index != 0]
                for chunk in single.chunks(3, generator=torch.Generator().manual_seed(5))]
    got = list(buffer.chunks(3, generator=torch.Generator().manual_seed(5)))
    assert [[(p.task_index, p.step) for p in chunk] for chunk in got] == expected
    assert [chunk.total for chunk in got] == [3, 3, 3, 1]


def test_distributed_checkpointer_in_one_process_is_a_checkpointer(tmp_path):
    path = tmp_path / "state.pt"
    checkpointer = DistributedCheckpointer(path, every=2)
    assert checkpointer.restore() is None
    assert checkpointer.maybe_save(1, lambda: {"x": 1}) is None and not path.exists()
    checkpointer.maybe_save(2, lambda: {"x": 2})
    assert DistributedCheckpointer(path).restore() == {"x": 2}
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        DistributedCheckpointer(path).restore()


def test_distributed_compare_results_skips_timing_and_flags_differences():
    a = {"runs": [{"accuracy": 0.5, "seconds_meta_training": 3.0, "meta_history": [{"warp_objective": 1.0}]}]}
    b = {"runs": [{"accuracy": 0.5 + 1e-12, "seconds_meta_training": 9.0, "meta_history": [{"warp_objective": 1.0}]}]}
    assert compare_results(a, b) == []
    assert compare_results({"x": float("nan")}, {"x": float("nan")}) == []
    assert compare_results({"x": [1, 2]}, {"x": [1]}) == ["/x: 2 entries against 1"]
    b["runs"][0]["meta_history"][0]["warp_objective"] = 1.01
    assert compare_results(a, b) == ["/runs[0]/meta_history[0]/warp_objective: 1.0 against 1.01 (difference 0.01)"]


# ------------------------------------------------------------------------------------------------------------
# two gloo processes under torchrun
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(400)
def test_distributed_two_processes_match_one_process(tmp_path):
    arguments = [a for v in VARIANTS for a in ("--variant", v)] + ["--iterations", "3"]
    single, double = tmp_path / "one", tmp_path / "two"
    one_process(single, arguments)
    result = torchrun(["--out", str(double), *arguments])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for variant in VARIANTS:
        reference, rank0, rank1 = load(single, variant, 0), load(double, variant, 0), load(double, variant, 1)
        assert rank0["world_size"] == 2 and rank0["rank_gap"] == 0.0
        for part in ("theta", "phi"):  # every rank holds the same meta-parameters, bit for bit
            assert all(torch.equal(rank0[part][n], rank1[part][n]) for n in rank0[part])
        assert_close(rank0, reference)
        # ...and they moved: the comparison is not between two untouched models
        initial = worker.final_state(worker.make_learner("exact", "none", "offline", False))
        assert max(float((reference["phi"][n] - initial["phi"][n]).abs().max()) for n in initial["phi"]) > 1e-3
        assert compare_results(rank0["history"], reference["history"], rtol=0, atol=TOLERANCE) == [], variant
        # the work was split: rank 0 adapted task 0 only, rank 1 tasks 1 and 2 (4 steps + the final loss's batch,
        # 3 meta-steps: 15 inner-loop batches per task)
        draws = reference["inner_draws"]
        assert draws == {0: 15, 1: 15, 2: 15}
        assert rank0["inner_draws"] == {0: draws[0]} and rank1["inner_draws"] == {1: draws[1], 2: draws[2]}, variant
        assert rank0["replay_draws"] + rank1["replay_draws"] == reference["replay_draws"] > 0
        assert 0 < rank0["replay_draws"] < rank1["replay_draws"]


@pytest.mark.timeout(500)
def test_distributed_killed_run_resumes_to_the_same_result(tmp_path):
    iterations, variant = 60, "first_order:leap:offline"
    checkpoint = tmp_path / "job.pt"
    arguments = ["--variant", variant, "--iterations", str(iterations), "--checkpoint", str(checkpoint)]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(WORKER),
               "--out", str(tmp_path / "killed"), *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    job = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at, deadline = None, time.monotonic() + 300
    try:
        while time.monotonic() < deadline and job.poll() is None:
            if checkpoint.exists():
                try:
                    saved = torch.load(checkpoint, weights_only=False)["iteration"]
                except Exception:  # noqa: BLE001 - being replaced right now; read it again
                    saved = 0
                if saved >= 3:
                    kill_tree(job.pid)  # the launcher and both ranks (torchrun starts them in their own sessions)
                    killed_at = saved
                    break
            time.sleep(0.02)
    finally:
        if job.poll() is None:
            kill_tree(job.pid)
        job.wait(timeout=60)
    assert killed_at is not None, "the job ended before it could be killed (or never checkpointed)"
    time.sleep(1.0)  # nothing is left running to write anything
    left_at = torch.load(checkpoint, weights_only=False)["iteration"]
    assert killed_at <= left_at < iterations and not list((tmp_path / "killed").glob("*.pt"))

    resumed = torchrun(["--out", str(tmp_path / "resumed"), *arguments])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rank0, rank1 = load(tmp_path / "resumed", variant, 0), load(tmp_path / "resumed", variant, 1)
    assert rank0["start"] == rank1["start"] == left_at  # resumed where the killed job's last checkpoint left it
    assert len(rank0["history"]) == iterations and rank0["rank_gap"] == 0.0

    one_process(tmp_path / "one", ["--variant", variant, "--iterations", str(iterations)])
    reference = load(tmp_path / "one", variant, 0)
    assert_close(rank0, reference, tolerance=1e-9)  # 60 Adam steps: rounding grows a little
    assert compare_results(rank0["history"], reference["history"], rtol=0, atol=1e-9) == []


@pytest.mark.timeout(300)
def test_distributed_failing_rank_fails_the_job_with_its_error(tmp_path):
    started = time.monotonic()
    result = torchrun(["--out", str(tmp_path), "--iterations", "4", "--fail", "1:1", "--timeout", "30"], timeout=240)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "rank 1 failed on purpose at meta-step 1" in output, output[-3000:]
    assert not list(tmp_path.glob("*_rank0.pt"))  # rank 0 did not carry on alone
    assert elapsed < 200


@pytest.mark.timeout(300)
def test_distributed_rank_that_stops_answering_fails_the_job_after_the_timeout(tmp_path):
    started = time.monotonic()
    result = torchrun(["--out", str(tmp_path), "--iterations", "4", "--fail", "1:1", "--hang", "--timeout", "10"],
                      timeout=240)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # rank 0 waited 10 s in its all-reduce for rank 1, which sleeps in its inner loop, then failed the job
    assert "[rank0]" in output and "timed out" in output.lower(), output[-3000:]
    assert not list(tmp_path.glob("*_rank0.pt"))
    assert elapsed < 200


# ------------------------------------------------------------------------------------------------------------
# the command: python -m warpkit train
# ------------------------------------------------------------------------------------------------------------
def train_command(out: Path, processes: int, arguments: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "warpkit", "train", *arguments, "--out", str(out), "--no-progress",
               "--threads", "1"]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--standalone",
                   "-m", *command[2:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.timeout(600)
@pytest.mark.parametrize("experiment, arguments, results, tolerance", [
    # the sine tasks are float32: sums over processes reassociated in float32 (Adam meta-steps) → 1e-5 relative
    ("continual", ["--set", "meta_iterations=2", "--set", "validate_every=0", "--set", "num_held_out=2"],
     "continual_fast_seed0.json", 1e-5),
    ("omniglot", ["--dtype", "float64", "--data", "glyphs", "--set", "methods=('warp-leap','leap')",
                  "--set", "alphabet_counts=(1,)",
                  "--set", "meta_iterations=2", "--set", "inner_steps=3", "--set", "filters=4",
                  "--set", "test_alphabets=1", "--set", "test_repeats=1"], "omniglot_fast_seed0.json", 1e-9),
])
def test_distributed_train_command_on_two_processes_matches_one(tmp_path, experiment, arguments, results, tolerance):
    for processes in (1, 2):
        train_command(tmp_path / str(processes), processes, [experiment, "--size", "fast", *arguments])
    one = json.loads((tmp_path / "1" / results).read_text())
    two = json.loads((tmp_path / "2" / results).read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2 and two["backend"] == "gloo"
    assert compare_results(two, one, rtol=tolerance, atol=tolerance) == []
    # the lesson's checkpoint, written by rank 0 alone, holds the finished run
    checkpoint = torch.load(Path(two["checkpoint"]), weights_only=False)
    if experiment == "omniglot":
        assert checkpoint["kind"] == "warpkit Omniglot sweep"
        assert checkpoint["state"]["current"] is None and len(checkpoint["state"]["runs"]) == 2
        assert checkpoint["fingerprint"]["dtype"] == "torch.float64" and checkpoint["fingerprint"]["source"] == "glyphs"
    else:
        assert checkpoint["kind"] == "continual meta-training"
        state = checkpoint["state"]
        assert state["iteration"] == 2 and sorted(state["learners"]) == ["sgd_meta_init", "warp"]


@pytest.mark.timeout(600)
def test_distributed_train_maze_splits_the_runs_and_matches_one_process(tmp_path):
    arguments = ["maze", "--size", "fast", "--set", "num_episodes=4", "--set", "num_mazes=2",
                 "--set", "agents=('warp_rnn','l2rl')"]
    for processes in (1, 2):
        train_command(tmp_path / str(processes), processes, arguments)
    one = json.loads((tmp_path / "1" / "maze_fast_seed0.json").read_text())
    two = json.loads((tmp_path / "2" / "maze_fast_seed0.json").read_text())
    assert list(two["runs"]) == ["warp_rnn_seed0", "l2rl_seed0", "random_seed0"]
    assert [run["rank"] for run in two["runs"].values()] == [0, 1, 0]  # runs r, r + P, ... on rank r
    assert compare_results(two, one, rtol=0, atol=0) == []  # each run is one process's run, bit for bit
    assert len(one["runs"]["warp_rnn_seed0"]["rewards"]) == 4
    assert sorted(p.name for p in (tmp_path / "2" / "04_maze" / "fast").glob("*.pt")) == [
        "l2rl_seed0.pt", "random_seed0.pt", "warp_rnn_seed0.pt"]
