r"""Meta-training over several processes (and GPUs, and machines) with ``torch.distributed``.

The tasks of a meta-batch are independent until their gradients meet, so WarpGrad is data-parallel over tasks.
With P processes (ranks r = 0 … P−1) and a meta-batch of n tasks τ_1 … τ_n, one offline meta-iteration
(Algorithm 2 of Flennerhag et al., 2020) runs as follows on every rank r:

1. **Its share of the tasks.** Rank r adapts the contiguous block S_r = {τ_i : ⌊rn/P⌋ ≤ i < ⌊(r+1)n/P⌋} (θ reset
   to θ_0, K steps with φ frozen) and buffers those tasks' points; every rank holds every task *object* (they
   are cheap: their batches are a function of the task's seed and the step), but adapts only its own.
2. **θ_0.** Each rank sums its tasks' initialisation gradients, already divided by the meta-batch size n,
   g_r = Σ_{i∈S_r} ∇C_i(θ_0) / n; an all-reduce gives every rank Σ_r g_r = (1/n) Σ_i ∇C_i(θ_0), the gradient a
   single process computes, and every rank takes the same optimiser step, so θ_0 stays identical everywhere.
3. **φ.** The buffered points are numbered as one process would number them (task by task, step by step: the
   per-task counts are all-reduced first), and every rank draws the *same* permutation of all N points from the
   learner's replay generator (one stream, the same state on every rank). A chunk C of that permutation is
   replayed by the ranks that own its points: rank r computes the φ-gradient of
   (1/|C|) Σ_{p∈C∩r} 𝓛(φ; p) (Eq. 11 or 12 per point, :mod:`warpkit.engine.objectives`), an all-reduce sums
   them into ∇_φ (1/|C|) Σ_{p∈C} 𝓛(φ; p), the single-process chunk gradient, and every rank takes the same
   φ-step. So every rank takes the same number of φ-steps (one per chunk, ⌈N / chunk⌉ per epoch), including a
   rank that owns no point of a chunk (it contributes zeros).

The online algorithm (Algorithm 1) sums each rank's accumulated φ-gradient the same way before its single
φ-step. Sums are associative only up to rounding, so P processes reproduce one process *to rounding*
(``tests/test_distributed.py`` checks 1e-10 in float64 after several meta-steps, exact and first-order
objectives, with Leap).

**Random streams.** The streams the algorithm's equality rests on are shared: the replay permutation is the
learner's own generator (seeded by ``MetaLearner(seed=...)``, identical on every rank) and a task's batches come
from the task's seed. Anything drawn from the *global* torch / NumPy / ``random`` generators is per rank:
:func:`seed_process` seeds them from :func:`rank_seed` (seed, rank), which is the seed itself on rank 0, so one
process is seeded as before and a run is reproducible for a given number of processes.

**Failures.** Collectives carry a timeout (``init(timeout_seconds=...)``): a rank that dies closes its
connections and its peers' collectives fail at once; a rank that hangs makes its peers fail after the timeout.
The launcher (``torchrun``) then stops the job and reports the failing rank's error; nothing waits forever.

Use::

    communicator = init()                       # reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK; world 1 without
    learner = distribute(MetaLearner(...), communicator)
    learner.meta_step(tasks)                    # every rank passes the *whole* meta-batch

One process (``WORLD_SIZE`` unset or 1) gets a :class:`Communicator` of world size 1 and :func:`distribute`
leaves the learner untouched: exactly the single-process code path.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from warpkit.engine.buffer import TrajectoryBuffer, TrajectoryPoint
from warpkit.engine.meta import MetaLearner
from warpkit.engine.warp import task_parameters, warp_parameters

#: how long a collective waits for the other ranks before failing (seconds); ``init(timeout_seconds=...)``
DEFAULT_TIMEOUT_SECONDS = 1800.0


# ----------------------------------------------------------------------------------------------------------
# the process group
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Communicator:
    """This process's place in the job: ``rank`` of ``world_size``, its ``device``, and the collectives used.

    ``world_size == 1`` needs no process group and every collective is the identity.

    >>> communicator = Communicator()  # a world of one
    >>> communicator.is_main, communicator.all_reduce_sum({"g": torch.tensor([1.0, 2.0])})
    (True, {'g': tensor([1., 2.])})
    >>> communicator.all_gather_object("rank 0's value")
    ["rank 0's value"]
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and results."""
        return self.rank == 0

    def all_reduce_sum(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r"""``{name: Σ_r tensors_r[name]}`` on every rank, in one collective per dtype (the tensors are flattened
        into one buffer). Every rank must pass the same names with the same shapes and dtypes."""
        if not self.is_distributed or not tensors:
            return dict(tensors)
        names = list(tensors)
        result: dict[str, torch.Tensor] = {}
        for dtype in dict.fromkeys(tensors[n].dtype for n in names):
            group = [n for n in names if tensors[n].dtype == dtype]
            flat = torch.cat([tensors[n].detach().reshape(-1).to(self.device) for n in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for n in group:
                size = tensors[n].numel()
                result[n] = flat[offset:offset + size].view_as(tensors[n]).to(tensors[n].device)
                offset += size
        return {n: result[n] for n in names}

    def broadcast_object(self, value: Any = None, source: int = 0) -> Any:
        """Rank ``source``'s ``value`` on every rank (pickled)."""
        if not self.is_distributed:
            return value
        box = [value if self.rank == source else None]
        dist.broadcast_object_list(box, src=source, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def all_gather_object(self, value: Any) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.is_distributed:
            return [value]
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()


def init(backend: str = "auto", timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
         device: str | torch.device | None = None) -> Communicator:
    """Join the job that ``torchrun`` (or any launcher setting ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``) started, or return a world of one when ``WORLD_SIZE`` is unset or 1.

    ``backend="auto"`` picks ``nccl`` when CUDA is available (one GPU per process: ``cuda:LOCAL_RANK``) and
    ``gloo`` otherwise. ``device`` overrides the device (``"cpu"`` forces gloo). Every collective of the job
    fails after ``timeout_seconds`` without an answer from the other ranks.

    >>> communicator = init(device="cpu")  # WORLD_SIZE unset: a world of one, no process group
    >>> communicator.rank, communicator.world_size, communicator.backend
    (0, 1, None)
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    wanted = torch.device(device) if device is not None and str(device) != "auto" else None
    use_cuda = torch.cuda.is_available() if wanted is None else wanted.type == "cuda"
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'auto', 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and not use_cuda:
        raise ValueError("the nccl backend needs CUDA devices; use backend='gloo' on CPUs")
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but CUDA is not available")
        chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    if world_size <= 1:
        return Communicator(0, 1, 0, None, chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_seconds),
                                rank=rank, world_size=world_size,
                                **({"device_id": chosen} if backend == "nccl" else {}))
    return Communicator(rank, world_size, local_rank, backend, chosen)


def shutdown(communicator: Communicator) -> None:
    """Leave the process group (no-op for a world of one).

    >>> communicator = init(device="cpu")
    >>> shutdown(communicator)
    >>> communicator.is_distributed, dist.is_initialized()  # one process never joined a group
    (False, False)
    """
    if communicator.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------
# random streams
# ----------------------------------------------------------------------------------------------------------
def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random streams: ``seed`` itself on rank 0 (so one process is seeded as
    before), otherwise 63 bits of SHA-256 of ``"warpkit-rank:seed:rank"`` (independent of the world size, distinct
    per rank).

    >>> rank_seed(7, 0)
    7
    >>> digest = hashlib.sha256(b"warpkit-rank:7:1").digest()
    >>> rank_seed(7, 1) == int.from_bytes(digest[:8], "little") % 2**63
    True
    """
    if rank == 0:
        return int(seed)
    digest = hashlib.sha256(f"warpkit-rank:{int(seed)}:{int(rank)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


def seed_process(seed: int, communicator: Communicator) -> int:
    """Seed the global torch, NumPy and ``random`` generators of this process with :func:`rank_seed`; returns it.
    (The streams that must agree across ranks, replay order and task batches, have their own generators.)

    >>> seed_process(3, Communicator(rank=0, world_size=2))  # rank 0 keeps the seed itself
    3
    >>> first = torch.rand(2)
    >>> _ = torch.manual_seed(3)
    >>> torch.equal(first, torch.rand(2))
    True
    >>> seed_process(3, Communicator(rank=1, world_size=2)) == rank_seed(3, 1)
    True
    """
    own = rank_seed(seed, communicator.rank)
    torch.manual_seed(own)
    np.random.seed(own % (2**32))
    random.seed(own)
    return own


# ----------------------------------------------------------------------------------------------------------
# the meta-batch split
# ----------------------------------------------------------------------------------------------------------
def task_share(num_tasks: int, rank: int, world_size: int) -> range:
    """Indices of the tasks rank ``rank`` adapts: the contiguous block [⌊r·n/P⌋, ⌊(r+1)·n/P⌋) (sizes differ by at
    most one). Every rank must own at least one task, so n ≥ P.

    >>> [list(task_share(5, rank, 2)) for rank in range(2)]  # [⌊0·5/2⌋, ⌊1·5/2⌋) = [0, 2), then [2, 5)
    [[0, 1], [2, 3, 4]]
    """
    if num_tasks < world_size:
        raise ValueError(
            f"a meta-batch of {num_tasks} task(s) cannot be split over {world_size} processes (each needs at least "
            f"one task); use at most {num_tasks} processes or a larger meta-batch"
        )
    return range(rank * num_tasks // world_size, (rank + 1) * num_tasks // world_size)


class ShardedChunk(list):
    """This rank's points of one replay chunk (in chunk order), and the chunk's size over all ranks: this rank's
    share of the chunk's φ-gradient is weighted by ``len(chunk) / chunk.total``.

    >>> chunk = ShardedChunk([TrajectoryPoint(0, 3, {}, {})], total=4)  # 1 of the chunk's 4 points is here
    >>> len(chunk), chunk.total
    (1, 4)
    """

    def __init__(self, points: Sequence[TrajectoryPoint], total: int):
        super().__init__(points)
        self.total = int(total)


class ShardedBuffer:
    """A :class:`~warpkit.engine.buffer.TrajectoryBuffer` holding this rank's points, whose :meth:`chunks` form
    the chunks a single process would form from *all* ranks' points and yield this rank's part of each.

    Global numbering: the points of task i come after those of tasks 0 … i−1, in the order they were added (the
    order :meth:`MetaLearner.meta_step` adds them in one process). Per-task counts are all-reduced, so the
    numbering needs no assumption about how many points a task has.

    Task 1's points added before task 0's still come after them, as in one process:

    >>> reducer = MetaBatchReducer(Communicator())
    >>> _ = reducer.own_tasks(["task 0", "task 1"])
    >>> buffer = ShardedBuffer(TrajectoryBuffer(), reducer)
    >>> for task, step in [(1, 0), (1, 1), (0, 0)]:
    ...     buffer.add_point(TrajectoryPoint(task, step, {}, {}))
    >>> [[(p.task_index, p.step) for p in chunk] for chunk in buffer.chunks(2, shuffle=False)]
    [[(0, 0), (1, 0)], [(1, 1)]]
    """

    def __init__(self, local: TrajectoryBuffer, reducer: "MetaBatchReducer"):
        self.local, self.reducer = local, reducer
        self._task_of: list[int] = []

    # -- what TrajectoryBuffer offers ---------------------------------------------------------------------
    @property
    def directory(self):
        return self.local.directory

    def __len__(self) -> int:
        return len(self.local)

    def add(self, task_index: int, trajectory) -> None:
        before = len(self.local)
        self.local.add(task_index, trajectory)
        self._task_of += [task_index] * (len(self.local) - before)

    def add_point(self, point: TrajectoryPoint) -> None:
        self.local.add_point(point)
        self._task_of.append(point.task_index)

    def __getitem__(self, index: int) -> TrajectoryPoint:
        return self.local[index]

    def points(self) -> list[TrajectoryPoint]:
        return self.local.points()

    def clear(self) -> None:
        self.local.clear()
        self._task_of = []

    # -- the shared chunks --------------------------------------------------------------------------------
    def global_layout(self) -> tuple[int, dict[int, int]]:
        """``(N, {global index: local index})``: the number of points over all ranks and where this rank's sit
        in the single-process numbering."""
        num_tasks = self.reducer.num_tasks
        counts = torch.zeros(num_tasks, dtype=torch.float64)
        for task in self._task_of:
            counts[task] += 1
        counts = self.reducer.communicator.all_reduce_sum({"counts": counts})["counts"].round().long()
        offsets = torch.cumsum(counts, 0) - counts
        seen = [0] * num_tasks
        where = {}
        for local_index, task in enumerate(self._task_of):
            where[int(offsets[task]) + seen[task]] = local_index
            seen[task] += 1
        return int(counts.sum()), where

    def chunks(self, chunk_size: int, shuffle: bool = True,
               generator: torch.Generator | None = None) -> Iterator[ShardedChunk]:
        """The chunks of :meth:`TrajectoryBuffer.chunks` over all ranks' points (the same permutation: drawn from
        ``generator``, whose state every rank shares), each restricted to this rank's points."""
        if chunk_size < 1:
            raise ValueError(f"chunks(): chunk_size must be >= 1, got {chunk_size}")
        total, where = self.global_layout()
        order = torch.randperm(total, generator=generator).tolist() if shuffle else list(range(total))
        for start in range(0, total, chunk_size):
            chunk = order[start:start + chunk_size]
            yield ShardedChunk([self.local[where[g]] for g in chunk if g in where], len(chunk))


class MetaBatchReducer:
    """What a :class:`~warpkit.engine.meta.MetaLearner` consults when it runs on several processes (its
    ``reducer`` attribute; set by :func:`distribute`): which tasks this rank adapts, and the all-reduces that
    make every rank's θ_0- and φ-steps the single-process ones (module docstring).

    >>> reducer = MetaBatchReducer(Communicator(rank=1, world_size=2))  # the split itself needs no collective
    >>> reducer.own_tasks(["a", "b", "c", "d", "e"])
    ['c', 'd', 'e']
    >>> reducer.by_task_index(["θ_c", "θ_d", "θ_e"], 5)
    {2: 'θ_c', 3: 'θ_d', 4: 'θ_e'}
    """

    def __init__(self, communicator: Communicator):
        self.communicator = communicator
        self.num_tasks = 0

    # (a) the share of the meta-batch
    def owns(self, index: int, num_tasks: int) -> bool:
        self.num_tasks = num_tasks
        return index in task_share(num_tasks, self.communicator.rank, self.communicator.world_size)

    def own_tasks(self, tasks: Sequence) -> list:
        self.num_tasks = len(tasks)
        return [tasks[i] for i in task_share(len(tasks), self.communicator.rank, self.communicator.world_size)]

    def by_task_index(self, trajectories: Sequence, num_tasks: int) -> dict:
        """This rank's trajectories (from :meth:`own_tasks`), keyed by their place in the meta-batch."""
        share = task_share(num_tasks, self.communicator.rank, self.communicator.world_size)
        return dict(zip(share, trajectories))

    # (b) the θ_0 gradient, (c) online φ-gradient
    def all_reduce_sum(self, gradient: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Σ over ranks of each rank's partial sum (every rank's terms are already divided by the meta-batch size)."""
        return self.communicator.all_reduce_sum(gradient)

    # (c) offline: the φ-gradient of one chunk
    def chunk_gradient(self, learner, tasks: Sequence, points, local_gradient: Callable) -> tuple[dict, float]:
        r"""∇_φ (1/|C|) Σ_{p∈C} 𝓛(φ; p) and its value for a :class:`ShardedChunk` C, on every rank:
        this rank's (|C∩r|/|C|)·(mean over its points), summed over ranks. A plain list of points (the online
        algorithm's per-task chunks) is computed locally by ``local_gradient``."""
        if not isinstance(points, ShardedChunk):
            return local_gradient(tasks, points)
        warp = warp_parameters(learner.model)
        if points:
            gradient, value = local_gradient(tasks, list(points))
            weight = len(points) / points.total
            partial = {name: weight * gradient[name].detach() for name in warp}
            value = weight * value
        else:
            partial = {name: torch.zeros_like(p) for name, p in warp.items()}
            value = 0.0
        partial["__objective__"] = torch.tensor([value], dtype=torch.float64, device=next(iter(warp.values())).device)
        summed = self.communicator.all_reduce_sum(partial)
        objective = float(summed.pop("__objective__"))
        return summed, objective

    # statistics of the whole meta-batch
    def meta_batch_statistics(self, num_tasks: int, first_losses: list[float], last_losses: list[float],
                              objective_values: list[float], algorithm: str) -> tuple[list, list, list]:
        """Every task's first and last inner loss in meta-batch order (gathered from the ranks that adapted it),
        and the replay objective values: offline chunk values are already whole-chunk values on every rank;
        online ones are per rank, and become their mean over all ranks."""
        share = task_share(num_tasks, self.communicator.rank, self.communicator.world_size)
        losses = torch.zeros(2, num_tasks, dtype=torch.float64)
        losses[0, share.start:share.stop] = torch.tensor(first_losses, dtype=torch.float64)
        losses[1, share.start:share.stop] = torch.tensor(last_losses, dtype=torch.float64)
        extra = torch.tensor([sum(objective_values), len(objective_values)], dtype=torch.float64)
        summed = self.communicator.all_reduce_sum({"losses": losses, "objective": extra})
        first, last = summed["losses"][0].tolist(), summed["losses"][1].tolist()
        if algorithm == "online":
            total, count = summed["objective"].tolist()
            objective_values = [total / count] if count else []
        return first, last, objective_values


# ----------------------------------------------------------------------------------------------------------
# attaching it to a learner
# ----------------------------------------------------------------------------------------------------------
def meta_parameters(learner) -> dict[str, torch.Tensor]:
    """θ_0, φ and the initialisation learner's own meta-parameters (Meta-SGD's step sizes), by name.

    >>> from warpkit.engine.init_learners import MetaSGD
    >>> from warpkit.engine.options import InitTraining
    >>> from warpkit.engine.warp import LinearWarp
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1), LinearWarp(1))  # θ_0: layer 0; φ: layer 1
    >>> learner = MetaLearner(model, torch.nn.functional.mse_loss, warp=None, init=InitTraining(MetaSGD()))
    >>> sorted(meta_parameters(learner))
    ['0.bias', '0.weight', '1.bias', '1.weight', 'step_size:0.bias', 'step_size:0.weight']
    """
    tensors = {**task_parameters(learner.model), **warp_parameters(learner.model)}
    if getattr(learner, "init_learner", None) is not None:
        tensors.update(learner.init_learner.meta_parameters())
    return tensors


def _synchronise(learner, communicator: Communicator) -> None:
    """Copy rank 0's model (parameters and buffers) and meta-parameters to every rank, so all start equal."""
    if not communicator.is_distributed:
        return
    tensors = dict(learner.model.state_dict())
    tensors.update({f"meta:{n}": p for n, p in meta_parameters(learner).items()})
    with torch.no_grad():
        for name in tensors:  # one broadcast per tensor: done once per learner, so simplicity wins
            tensor = tensors[name]
            staged = tensor.detach().to(communicator.device).clone()
            dist.broadcast(staged, src=0)
            tensor.copy_(staged.to(tensor.device))


def max_difference_across_ranks(learner, communicator: Communicator) -> float:
    """max over ranks and entries of |x_r − x_0| for every meta-parameter x (0 when every rank holds the same);
    ``tests/test_distributed.py`` checks it after meta-steps on two processes.

    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> max_difference_across_ranks(learner, Communicator())  # one process: nothing to differ from
    0.0
    """
    if not communicator.is_distributed:
        return 0.0
    tensors = meta_parameters(learner)
    flat = torch.cat([t.detach().reshape(-1).double().cpu() for t in tensors.values()])
    reference = communicator.broadcast_object(flat if communicator.is_main else None)
    gaps = communicator.all_gather_object(float((flat - reference).abs().max()) if flat.numel() else 0.0)
    return max(gaps)


def can_distribute(learner) -> bool:
    """Whether ``learner`` is a :class:`~warpkit.engine.meta.MetaLearner` that runs :meth:`MetaLearner.meta_step`
    itself (the split is defined there). Other learners (multi-head finetuning, which trains one body through the
    tasks in turn) are run whole on every rank.

    >>> from warpkit.engine.multi_head import MultiHeadFinetuning
    >>> model, mse = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.Linear(2, 1)), torch.nn.functional.mse_loss
    >>> can_distribute(MetaLearner(model, mse, warp=None)), can_distribute(MultiHeadFinetuning(model, mse, head="1"))
    (True, False)
    """
    return isinstance(learner, MetaLearner) and type(learner).meta_step is MetaLearner.meta_step


def distribute(learner, communicator: Communicator, synchronise_parameters: bool = True):
    """Make ``learner`` (a :class:`~warpkit.engine.meta.MetaLearner`) meta-train its share of every meta-batch on
    this rank, its gradients all-reduced (module docstring). Returns the learner.

    A world of one leaves it untouched. Its on-disk buffer, if any, moves to a ``rank<r>`` subfolder (ranks must
    not share point files). With ``synchronise_parameters`` rank 0's parameters are copied to every rank first.
    A learner that :func:`can_distribute` refuses is left whole: every rank then does the same work and holds the
    same result.

    >>> learner = MetaLearner(torch.nn.Linear(1, 1), torch.nn.functional.mse_loss, warp=None)
    >>> distribute(learner, Communicator()) is learner, learner.reducer  # a world of one: untouched
    (True, None)
    >>> learner = distribute(learner, Communicator(rank=1, world_size=2), synchronise_parameters=False)
    >>> type(learner.buffer).__name__, learner.reducer.own_tasks(["a", "b", "c"])  # rank 1 of 2 adapts b and c
    ('ShardedBuffer', ['b', 'c'])
    """
    if not communicator.is_distributed or not can_distribute(learner):
        return learner
    if synchronise_parameters:
        _synchronise(learner, communicator)
    reducer = MetaBatchReducer(communicator)
    local = learner.buffer
    if isinstance(local, ShardedBuffer):
        local = local.local
    if local.directory is not None:
        local = TrajectoryBuffer(Path(local.directory) / f"rank{communicator.rank}")
    learner.buffer = ShardedBuffer(local, reducer)
    learner.reducer = reducer
    return learner


__all__ = [
    "DEFAULT_TIMEOUT_SECONDS", "Communicator", "MetaBatchReducer", "ShardedBuffer", "ShardedChunk", "can_distribute",
    "distribute", "init", "max_difference_across_ranks", "meta_parameters", "rank_seed", "seed_process", "shutdown",
    "task_share",
]
