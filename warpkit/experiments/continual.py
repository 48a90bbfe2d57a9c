r"""The continual-learning experiment of Flennerhag et al., 2020, Section 4.4, as helpers notebook 06 calls.

The algorithm is the engine's: :class:`warpkit.engine.meta.MetaLearner` with the *offline* algorithm runs WarpGrad's
continual objective unchanged, because the continual meta loss is defined by the task
(:meth:`warpkit.data.sine.ContinualSineTask.sample_meta_batches`: the meta loss at a point buffered during
sub-task t is the mean loss over sub-tasks 1..t). This module only sets the experiment up and measures it:

* :class:`ContinualConfig` and :data:`SIZES` — the task family, networks, meta-training and evaluation sizes;
* :func:`build_learners` — the three learners compared, all with the same task layers, step size and steps:

  ``"warp"``           Warp-MLP: residual MLP warps φ meta-learned by WarpGrad (continual objective) together
                       with a meta-learned initialisation θ_0 (``config.init_learner``, Reptile by default);
  ``"sgd_meta_init"``  the unwarped twin with θ_0 meta-learned by the same initialisation learner on the same
                       sequences (the classic meta-learned-initialisation baseline);
  ``"sgd"``            the unwarped twin from its random initialisation, no meta-learning;

* :func:`meta_train` — meta-trains several learners in lockstep on identical sequences, with checkpoint/resume;
* :func:`run_sequence`, :func:`forgetting_matrix`, :func:`evaluate_learner` — the measurements.

The forgetting matrix of one sequence (T sub-tasks) is

.. math::  M_{ij} = \frac{1}{n} \sum_{x \in \text{grid}(S_i)} \big(f(x; \theta^{(j)}) - y_i(x)\big)^2,

the loss on sub-task i after training through sub-task j (θ^{(j)}: the parameters after the last step of
sub-task j; n evenly spaced held-out points per segment). Entries above the diagonal (i > j) are sub-tasks not
seen yet; the diagonal is how well the current sub-task was learned; below it (i < j) is what was retained. The
*final loss* of a sequence is the mean of the last column, (1/T) Σ_i M_{iT}: the mean loss over all T
segments after the whole sequence.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Mapping

import torch
import torch.nn as nn

from warpkit.engine.adapt import Params, adapt, adapt_tasks, forward, train_mode
from warpkit.kit.checkpoint import Checkpointer
from warpkit.data.sine import ContinualSineSampler, ContinualSineTask, weighted_mse
from warpkit.engine.meta import InitLearner, Leap, MetaLearner, Reptile
from warpkit.models.mlp import plain_mlp, warp_mlp
from warpkit.kit.notebook import progress

LEARNER_NAMES = ("warp", "sgd_meta_init", "sgd")


@dataclass(frozen=True)
class ContinualConfig:
    """Everything that defines one run of the experiment (notebook 06 picks one of :data:`SIZES`).

    The defaults were chosen among a handful of settings (warp_lr 0.003-0.02, meta-batch 4-5, 20-25
    iterations, exact vs first-order, Reptile vs Leap) by their final loss on the held-out sequences of seeds
    0-2, before the validation split existed, so the reported numbers are mildly optimistic. Two couplings to
    keep in mind when changing them: SGD with ``inner_lr`` much above 0.01 diverges on the largest amplitudes
    (A = 5); and Leap's meta-gradient is a sum of K unit-length steps (norm up to K), so ``init_learner="leap"``
    needs ``init_optimizer="adam", init_lr=0.01`` rather than Reptile's SGD at 0.5 (which makes Leap diverge).
    """

    # the task family (warpkit.data.sine)
    num_subtasks: int = 5
    steps_per_subtask: int = 10
    interval: tuple[float, float] = (-5.0, 5.0)
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    batch_size: int = 10
    meta_points_per_subtask: int = 10
    eval_points_per_subtask: int = 50
    # the task learner: plain SGD on θ, the same for every method
    inner_lr: float = 0.01
    hidden: int = 40
    num_hidden_layers: int = 2
    activation: str = "relu"
    # the warps (φ)
    warp_hidden: int = 40
    warp_layers: int = 1
    warp_activation: str = "tanh"
    # meta-training
    meta_iterations: int = 25
    meta_batch_size: int = 4
    warp_objective: str = "exact"
    init_learner: str = "reptile"
    warp_lr: float = 0.02
    warp_optimizer: str = "adam"
    init_lr: float = 0.5
    init_optimizer: str = "sgd"
    replay_chunk_size: int = 25
    replay_epochs: int = 1
    lr_schedule: str = "constant"  # or "cosine": both meta learning rates annealed to 0 over meta_iterations
    # model selection on validation sequences (0 = off: keep the last iterate)
    validate_every: int = 5
    num_validation: int = 20
    # evaluation
    num_held_out: int = 40

    def sampler(self, seed: int, device: torch.device | str = "cpu") -> ContinualSineSampler:
        """A task sampler for this family; use one seed for meta-training and another for held-out sequences."""
        return ContinualSineSampler(
            num_subtasks=self.num_subtasks, steps_per_subtask=self.steps_per_subtask, interval=self.interval,
            amplitude_range=self.amplitude_range, phase_range=self.phase_range, batch_size=self.batch_size,
            meta_points_per_subtask=self.meta_points_per_subtask,
            eval_points_per_subtask=self.eval_points_per_subtask, seed=seed, device=str(device),
        )

    @property
    def inner_steps(self) -> int:
        """K = T × steps_per_subtask."""
        return self.num_subtasks * self.steps_per_subtask

    def as_dict(self) -> dict:
        return asdict(self)


#: ``fast``: the CI size (about a minute of one CPU core); ``full``: a longer meta-training on more held-out
#: sequences. The networks are tiny, so a GPU hardly helps: every inner step is a few small kernel launches.
SIZES: dict[str, ContinualConfig] = {
    "fast": ContinualConfig(),
    "full": ContinualConfig(meta_iterations=100, meta_batch_size=8, validate_every=5, num_validation=40,
                            num_held_out=100),
}


# ----------------------------------------------------------------------------------------------------------
# the learners
# ----------------------------------------------------------------------------------------------------------
def make_init_learner(name: str) -> InitLearner:
    """``"leap"`` (full Leap, with its loss-difference term) or ``"reptile"``."""
    if name == "leap":
        return Leap()
    if name == "reptile":
        return Reptile()
    raise ValueError(f"unknown initialisation learner {name!r}; choose 'leap' or 'reptile'")


def build_learners(config: ContinualConfig, seed: int = 0, device: torch.device | str = "cpu") -> dict[str, MetaLearner]:
    """The three learners of the comparison, as :class:`MetaLearner` objects (``"sgd"`` is one with neither a
    warp objective nor an initialisation learner: its :meth:`~MetaLearner.adapt` is plain SGD from the random
    initialisation). All three start from the same random task-layer values (``seed``)."""
    shape = dict(hidden=config.hidden, num_hidden_layers=config.num_hidden_layers, activation=config.activation,
                 seed=seed)
    # batched_adaptation: the meta-batch's sequences run in one vmapped inner loop (same numbers, much faster)
    common = dict(inner_lr=config.inner_lr, inner_steps=config.inner_steps, seed=seed, batched_adaptation=True)
    meta = dict(init_lr=config.init_lr, init_optimizer=config.init_optimizer)
    warp_model = warp_mlp(warp_hidden=config.warp_hidden, warp_layers=config.warp_layers,
                          warp_activation=config.warp_activation, **shape).to(device)
    return {
        "warp": MetaLearner(
            warp_model, weighted_mse, warp_objective=config.warp_objective,
            init_learner=make_init_learner(config.init_learner), algorithm="offline", warp_lr=config.warp_lr,
            warp_optimizer=config.warp_optimizer, replay_chunk_size=config.replay_chunk_size,
            replay_epochs=config.replay_epochs, **meta, **common,
        ),
        "sgd_meta_init": MetaLearner(
            plain_mlp(**shape).to(device), weighted_mse, warp_objective=None,
            init_learner=make_init_learner(config.init_learner), **meta, **common,
        ),
        "sgd": MetaLearner(plain_mlp(**shape).to(device), weighted_mse, warp_objective=None, **common),
    }


def meta_lr_factor(schedule: str, iteration: int, iterations: int) -> float:
    r"""The multiplier of the meta learning rates at meta-iteration ``iteration`` (0-based) of ``iterations``:
    1 for ``"constant"``; ½(1 + cos(π i / N)) for ``"cosine"`` (from 1 down toward 0).

    With constant rates the meta-parameters keep fluctuating with the random waves each iteration draws
    (Reptile's θ₀ moves by half the way to every meta-batch's mean end point); annealing lets a long run settle."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * iteration / max(iterations, 1)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose 'constant' or 'cosine'")


def _set_meta_lr(learner: MetaLearner, factor: float) -> None:
    for optimizer in (learner.warp_optimizer, learner.init_optimizer):
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * factor


@dataclass
class MetaTraining:
    """What :func:`meta_train` measured.

    ``history[name]``: one :class:`~warpkit.engine.meta.MetaStepStats` dict per meta-iteration; ``validation[name]``:
    ``(iteration, final loss on the validation sequences)`` pairs (iteration 0 = before meta-training);
    ``best_iteration[name]``: the iteration whose meta-parameters the learner holds after :func:`meta_train`
    (the last one when there is no validation); ``diverged[name]``: the meta-iteration after which the learner's
    meta-parameters stopped being finite (it was rolled back and trained no further), else None."""

    history: dict[str, list[dict]]
    validation: dict[str, list[tuple[int, float]]]
    best_iteration: dict[str, int]
    diverged: dict[str, int | None] = field(default_factory=dict)


def meta_train(
    learners: Mapping[str, MetaLearner],
    sampler: ContinualSineSampler,
    iterations: int,
    meta_batch_size: int,
    checkpointer: Checkpointer | None = None,
    config: ContinualConfig | None = None,
    show_progress: bool = True,
    validation_tasks=None,
    validate_every: int = 0,
) -> MetaTraining:
    """Meta-train ``learners`` in lockstep for ``iterations`` meta-iterations: every iteration draws
    ``meta_batch_size`` sequences and gives each learner its own replica of them (same waves, same batches).

    With ``config.lr_schedule == "cosine"`` the learners' meta learning rates follow :func:`meta_lr_factor`
    (set before every iteration from the iteration number, so a resumed run follows the same schedule).

    Model selection: with ``validation_tasks`` and ``validate_every > 0``, every learner's final loss on the
    validation sequences (never the held-out test sequences) is measured before meta-training and every
    ``validate_every`` iterations, and at the end each learner gets back the meta-parameters of its best
    validation point. At constant meta learning rates the Warp-MLP's validation loss bottoms out after a few
    dozen iterations and then drifts up again, its warp objective with it (measured on seed 0 of the "full"
    size), so the last iterate is not always the best.

    Divergence guard: a learner whose meta-parameters become non-finite after a meta-iteration (e.g. one
    sequence's SGD blew up under the learned warp and Reptile pulled θ₀ toward NaN) is rolled back to the
    state before that iteration and trains no further; ``MetaTraining.diverged`` says when.

    With a ``checkpointer`` the learners, the sampler, the history and the validation state are saved every
    ``checkpointer.every`` iterations and at the end, and a run restarts from the saved iteration; ``config``
    is stored with them and checked on resume, so a checkpoint of another configuration is refused rather than
    silently mixed in.
    """
    names = list(learners)
    history: dict[str, list[dict]] = {name: [] for name in names}
    validation: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    best: dict[str, tuple[int, float, dict]] = {}  # name -> (iteration, loss, model state)
    diverged: dict[str, int | None] = {name: None for name in names}
    validating = validation_tasks is not None and validate_every > 0
    lr = config.inner_lr if config is not None else None
    if validating and lr is None:
        raise ValueError("meta_train(): validation needs the config (for the inner step size); pass config=")
    start = 0
    state = checkpointer.restore() if checkpointer is not None else None
    if state is not None:
        saved_config = state.get("config")
        if config is not None and saved_config is not None and saved_config != config.as_dict():
            changed = sorted(k for k in saved_config if saved_config.get(k) != config.as_dict().get(k))
            raise ValueError(
                f"the checkpoint {checkpointer.path} was written with another configuration (differs in {changed}); "
                "use another CHECKPOINT path or delete the file to start afresh"
            )
        if sorted(state["learners"]) != sorted(names):
            raise ValueError(
                f"the checkpoint {checkpointer.path} holds learners {sorted(state['learners'])}, "
                f"not {sorted(names)}; use another CHECKPOINT path"
            )
        for name, learner in learners.items():
            learner.load_state_dict(state["learners"][name])
        sampler.load_state_dict(state["sampler"])
        history = {name: list(state["history"][name]) for name in names}
        validation = {name: [tuple(v) for v in state.get("validation", {}).get(name, [])] for name in names}
        best = dict(state.get("best", {}))
        diverged = dict(state.get("diverged", diverged))
        start = int(state["iteration"])

    def validate(iteration: int) -> None:
        for name, learner in learners.items():
            if diverged[name] is not None and diverged[name] <= iteration:
                continue
            loss = evaluate_learner(learner.model, validation_tasks, lr).final_loss
            validation[name].append((iteration, loss))
            if name not in best or loss < best[name][1]:
                best[name] = (iteration, loss, copy.deepcopy(learner.model.state_dict()))

    def make_state(iteration: int) -> dict:
        return {
            "iteration": iteration,
            "learners": {name: learner.state_dict() for name, learner in learners.items()},
            "sampler": sampler.state_dict(),
            "history": history,
            "validation": validation,
            "best": best,
            "diverged": diverged,
            "config": config.as_dict() if config is not None else None,
        }

    if validating and start == 0 and not validation[names[0]]:
        validate(0)
    bar = progress(range(start, iterations), show=show_progress, desc="meta-training", initial=start,
                   total=iterations)
    for iteration in bar:
        tasks = sampler.sample_many(meta_batch_size)
        factor = meta_lr_factor(config.lr_schedule if config is not None else "constant", iteration, iterations)
        for name, learner in learners.items():
            if diverged[name] is not None:
                continue
            _set_meta_lr(learner, factor)
            before = copy.deepcopy(learner.state_dict())
            stats = learner.meta_step([task.replica() for task in tasks])
            history[name].append(stats.as_dict())
            if not all(bool(torch.isfinite(p).all()) for p in learner.model.parameters()):
                learner.load_state_dict(before)
                diverged[name] = iteration + 1
        done = iteration + 1
        if validating and (done % validate_every == 0 or done == iterations):
            validate(done)
        if show_progress:
            bar.set_postfix({name: f"{h[-1]['task_loss_last']:.3f}" for name, h in history.items() if h})
        if checkpointer is not None:
            checkpointer.maybe_save(done, lambda: make_state(done), final=done == iterations)

    best_iteration = {name: iterations for name in names}
    if validating:
        for name, learner in learners.items():
            iteration, _, model_state = best[name]
            learner.model.load_state_dict(model_state)
            best_iteration[name] = iteration
    return MetaTraining(history, validation, best_iteration, diverged)


# ----------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------
@dataclass
class SequenceRun:
    """One pass of a learner through a sequence: θ after each sub-task (``snapshots[j]``, j = 0..T-1, with the
    BatchNorm-free model's buffers) and the task loss at every inner step."""

    snapshots: list[Params]
    buffers: list[Params]
    step_losses: list[float]


def _sequence_run(task: ContinualSineTask, trajectory) -> SequenceRun:
    steps = task.steps_per_subtask
    after = [(j + 1) * steps for j in range(task.num_subtasks - 1)]
    snapshots = [trajectory.params[k] for k in after] + [trajectory.final_params]
    buffers = [trajectory.buffers[k] for k in after] + [trajectory.final_buffers]
    return SequenceRun(snapshots, buffers, list(trajectory.losses))


def run_sequence(model: nn.Module, task: ContinualSineTask, lr: float, loss_fn=weighted_mse,
                 init_params: Params | None = None, warp_params: Params | None = None) -> SequenceRun:
    """Train a fresh copy of the model's task parameters (or ``init_params``) through the whole sequence by
    ``task.num_steps`` SGD steps at ``lr`` (φ frozen), keeping θ after each sub-task."""
    trajectory = adapt(model, task, loss_fn, task.num_steps, lr, init_params=init_params, warp_params=warp_params,
                       keep_trajectory=True, final_loss=False)
    return _sequence_run(task, trajectory)


def run_sequences(model: nn.Module, tasks, lr: float, loss_fn=weighted_mse) -> list[SequenceRun]:
    """:func:`run_sequence` for several sequences at once, in one vmapped inner loop
    (:func:`warpkit.engine.adapt.adapt_tasks`): the same runs, far fewer Python-level calls."""
    tasks = list(tasks)
    trajectories = adapt_tasks(model, tasks, loss_fn, tasks[0].num_steps, lr, keep_trajectory=True,
                               final_loss=False)
    return [_sequence_run(task, trajectory) for task, trajectory in zip(tasks, trajectories)]


@torch.no_grad()
def forgetting_matrix(model: nn.Module, task: ContinualSineTask, run: SequenceRun, loss_fn=weighted_mse) -> torch.Tensor:
    """M[i, j] = loss on sub-task i's evaluation grid after training through sub-task j (a T×T tensor).

    One forward pass per snapshot over all T grids at once, in eval mode (the Warp-MLP has no BatchNorm, so
    this equals scoring each grid separately)."""
    size = task.num_subtasks
    grids = [task.segment_grid(i) for i in range(size)]
    inputs = torch.cat([grid[0] for grid in grids])
    bounds = torch.tensor([0] + [len(grid[0]) for grid in grids]).cumsum(0).tolist()
    matrix = torch.empty(size, size)
    with train_mode(model, training=False):
        for j, (params, buffers) in enumerate(zip(run.snapshots, run.buffers)):
            output = forward(model, params, buffers, inputs)
            for i, (_, target) in enumerate(grids):
                matrix[i, j] = loss_fn(output[bounds[i]:bounds[i + 1]], target)
    return matrix


@torch.no_grad()
def predictions(model: nn.Module, run: SequenceRun, inputs: torch.Tensor) -> torch.Tensor:
    """f(x; θ^{(j)}) on ``inputs`` ([N, 1]) after each sub-task j: a [T, N] tensor."""
    with train_mode(model, training=False):
        return torch.stack([forward(model, params, buffers, inputs).squeeze(-1)
                            for params, buffers in zip(run.snapshots, run.buffers)])


@dataclass
class ContinualEvaluation:
    """A learner measured on held-out sequences: ``matrices[n]`` is sequence n's forgetting matrix."""

    matrices: torch.Tensor  # [num_sequences, T, T]
    runs: list[SequenceRun] = field(repr=False, default_factory=list)

    @property
    def final_losses(self) -> torch.Tensor:
        """Per sequence: the mean loss over all T segments after the whole sequence (mean of the last column)."""
        return self.matrices[:, :, -1].mean(dim=1)

    @property
    def final_loss(self) -> float:
        return float(self.final_losses.mean())

    @property
    def final_loss_std(self) -> float:
        return float(self.final_losses.std()) if len(self.final_losses) > 1 else 0.0

    @property
    def current_losses(self) -> torch.Tensor:
        """Per sequence: the mean over sub-tasks j of the loss on sub-task j right after learning it (M_jj)."""
        return torch.diagonal(self.matrices, dim1=1, dim2=2).mean(dim=1)

    @property
    def forgetting(self) -> torch.Tensor:
        """Per sequence: the mean over earlier sub-tasks i < T of M_iT − M_ii (how much loss grew since learnt)."""
        size = self.matrices.shape[-1]
        diagonal = torch.diagonal(self.matrices, dim1=1, dim2=2)[:, : size - 1]
        return (self.matrices[:, : size - 1, -1] - diagonal).mean(dim=1)

    def summary(self) -> dict[str, float]:
        return {
            "final_loss": self.final_loss,
            "final_loss_std": self.final_loss_std,
            "current_loss": float(self.current_losses.mean()),
            "forgetting": float(self.forgetting.mean()),
        }


def earlier_to_current_ratio(matrices: torch.Tensor) -> float:
    r"""How far the earlier sub-tasks' loss is above the current one's after the whole sequence:

    .. math::  \frac{\operatorname{mean}_n\, \frac{1}{T-1}\sum_{i<T} M^{(n)}_{iT}}{\operatorname{mean}_n\, M^{(n)}_{TT}}

    over sequences n (a ratio of means: a single well-fitted last segment cannot blow it up). The paper reports
    that with WarpGrad the earlier segments stay within about an order of magnitude of the current one (≲ 10)."""
    earlier = matrices[:, :-1, -1].mean()
    current = matrices[:, -1, -1].mean()
    return float(earlier / current)


def evaluate_learner(model: nn.Module, tasks, lr: float, loss_fn=weighted_mse, keep_runs: bool = False,
                     show_progress: bool = False, desc: str | None = None, group_size: int = 10) -> ContinualEvaluation:
    """Run ``model`` (θ_0 = its task parameters, φ its warps, frozen) through every held-out sequence in
    ``tasks`` (each from a fresh copy of θ_0, on a replica of the task so its batches do not depend on what ran
    before) and collect the forgetting matrices. Sequences run ``group_size`` at a time in one vmapped loop."""
    tasks = list(tasks)
    matrices, runs = [], []
    groups = [tasks[start:start + group_size] for start in range(0, len(tasks), group_size)]
    for group in progress(groups, show=show_progress, desc=desc):
        for task, run in zip(group, run_sequences(model, [task.replica() for task in group], lr, loss_fn)):
            matrices.append(forgetting_matrix(model, task, run, loss_fn))
            if keep_runs:
                runs.append(run)
    return ContinualEvaluation(torch.stack(matrices), runs)


__all__ = [
    "LEARNER_NAMES", "ContinualConfig", "SIZES", "make_init_learner", "build_learners", "meta_lr_factor",
    "MetaTraining", "meta_train",
    "SequenceRun", "run_sequence", "run_sequences", "forgetting_matrix", "predictions", "ContinualEvaluation", "earlier_to_current_ratio",
    "evaluate_learner",
]
