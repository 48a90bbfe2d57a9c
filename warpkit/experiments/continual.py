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
import functools
from dataclasses import asdict, dataclass, field
from typing import Mapping

import torch
import torch.nn as nn

from warpkit.engine.guard import NonFiniteError
from warpkit.engine.adapt import Params, adapt, adapt_tasks, forward, train_mode
from warpkit.kit.checkpoint import Checkpointer
from warpkit.kit.sweep import ResumableRun, fingerprint
from warpkit.data.sine import ContinualSineSampler, ContinualSineTask, SineFamily, weighted_mse
from warpkit.engine.init_learners import InitLearner, Leap, Reptile
from warpkit.engine.meta import MetaLearner, MetaStepStats
from warpkit.engine.options import InitTraining, InnerLoop, WarpTraining
from warpkit.models.mlp import plain_mlp, warp_mlp
from warpkit.kit.notebook import progress


@dataclass(frozen=True)
class ContinualConfig(SineFamily):
    """Everything that defines one run of the experiment (notebook 06 picks one of :data:`SIZES`): the task
    family's fields (:class:`~warpkit.data.sine.SineFamily`, declared there once; ``config.sampler(seed)`` draws
    its tasks) and the learners', meta-training's and evaluation's below.

    The defaults were chosen among a handful of settings (warp_lr 0.003-0.02, meta-batch 4-5, 20-25
    iterations, exact vs first-order, Reptile vs Leap) by their final loss on the held-out sequences of seeds
    0-2, before the validation split existed, so the reported numbers are mildly optimistic. Two couplings to
    keep in mind when changing them: SGD with ``inner_lr`` much above 0.01 diverges on the largest amplitudes
    (A = 5); and Leap's meta-gradient is a sum of K unit-length steps (norm up to K), so ``init_learner="leap"``
    needs ``init_optimizer="adam", init_lr=0.01`` rather than Reptile's SGD at 0.5 (which makes Leap diverge).
    """

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
    replay: str = "auto"  # how a chunk is replayed: "batched", "looped" or "auto" (warpkit.engine.replay)
    # model selection on validation sequences (0 = off: keep the last iterate)
    validate_every: int = 5
    num_validation: int = 20
    # evaluation
    num_held_out: int = 40

    def as_dict(self) -> dict:
        return asdict(self)


#: ``fast``: the CI size (about a minute of one CPU core); ``full``: a longer meta-training on more held-out
#: sequences. The networks are tiny, so a GPU hardly helps: every inner step is a few small kernel launches.
SIZES: dict[str, ContinualConfig] = {
    "fast": ContinualConfig(),
    "full": ContinualConfig(meta_iterations=100, meta_batch_size=8, validate_every=5, num_validation=40,
                            num_held_out=100),
    # gpu: the regression size for one GPU (python3 kit.py gpu-check): more sequences per meta-batch (one
    # vmapped inner loop, so nearly free on a GPU), longer meta-training, more held-out sequences
    "gpu": ContinualConfig(meta_iterations=40, meta_batch_size=8, num_validation=30, num_held_out=80),
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
    # batched=True: the meta-batch's sequences run in one vmapped inner loop (same numbers, much faster)
    inner = InnerLoop(lr=config.inner_lr, steps=config.inner_steps, batched=True)
    warp = WarpTraining(config.warp_objective, lr=config.warp_lr, optimizer=config.warp_optimizer,
                        points_per_step=config.replay_chunk_size, passes=config.replay_epochs, replay=config.replay)
    warp_model = warp_mlp(warp_hidden=config.warp_hidden, warp_layers=config.warp_layers,
                          warp_activation=config.warp_activation, **shape).to(device)
    return {
        "warp": MetaLearner(warp_model, weighted_mse, inner=inner, warp=warp, init=_init_training(config), seed=seed),
        "sgd_meta_init": MetaLearner(plain_mlp(**shape).to(device), weighted_mse, inner=inner, warp=None,
                                     init=_init_training(config), seed=seed),
        "sgd": MetaLearner(plain_mlp(**shape).to(device), weighted_mse, inner=inner, warp=None, seed=seed),
    }


def _init_training(config: ContinualConfig) -> InitTraining:
    return InitTraining(make_init_learner(config.init_learner), lr=config.init_lr, optimizer=config.init_optimizer)


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


#: what a meta-training checkpoint holds (:class:`warpkit.kit.sweep.ResumableRun` refuses any other kind)
CHECKPOINT_KIND = "continual meta-training"


@dataclass
class _Progress:
    """The state of a lockstep meta-training between iterations: what a checkpoint saves besides the learners
    and the sampler. ``best[name]`` = (iteration, validation loss, model state) of the best validation point."""

    iteration: int
    history: dict[str, list[dict]]
    validation: dict[str, list[tuple[int, float]]]
    best: dict[str, tuple[int, float, dict]]
    diverged: dict[str, int | None]

    @classmethod
    def start(cls, names) -> "_Progress":
        return cls(0, {name: [] for name in names}, {name: [] for name in names}, {}, {name: None for name in names})

    @classmethod
    def from_saved(cls, saved: dict, names) -> "_Progress":
        validation = {name: [tuple(point) for point in saved["validation"][name]] for name in names}
        return cls(int(saved["iteration"]), {name: list(saved["history"][name]) for name in names}, validation,
                   dict(saved["best"]), dict(saved["diverged"]))


def _fingerprint(learners, sampler: ContinualSineSampler, meta_batch_size: int, config, validation_tasks,
                 validate_every: int) -> dict:
    """Every setting that changes what :func:`meta_train` computes: the seed and family of the training
    sequences, the configuration, the learners, the meta-batch size and the validation sequences."""
    validating = validation_tasks is not None and validate_every > 0
    return fingerprint(
        seed=sampler.seed, tasks=sampler.family, config=config.as_dict() if config is not None else None,
        learners=sorted(learners), meta_batch_size=meta_batch_size, validate_every=validate_every if validating else 0,
        validation_seeds=[task.seed for task in validation_tasks] if validating else None)


def _checkpoint_state(learners, sampler: ContinualSineSampler, progress_state: _Progress) -> dict:
    return {"learners": {name: learner.state_dict() for name, learner in learners.items()},
            "sampler": sampler.state_dict(), **asdict(progress_state)}


def _restore(run: ResumableRun, learners, sampler: ContinualSineSampler) -> _Progress:
    saved = run.restore()
    if saved is None:
        return _Progress.start(learners)
    for name, learner in learners.items():
        learner.load_state_dict(saved["learners"][name])
    sampler.load_state_dict(saved["sampler"])
    return _Progress.from_saved(saved, learners)


def _validate(learners, state: _Progress, tasks, lr: float, iteration: int) -> None:
    """Score every learner still training on the validation sequences; remember each one's best point."""
    for name, learner in learners.items():
        if state.diverged[name] is not None and state.diverged[name] <= iteration:
            continue
        loss = evaluate_learner(learner.model, tasks, lr).final_loss
        state.validation[name].append((iteration, loss))
        if name not in state.best or loss < state.best[name][1]:
            state.best[name] = (iteration, loss, copy.deepcopy(learner.model.state_dict()))


def _meta_iteration(learners, tasks, state: _Progress, iteration: int) -> None:
    """One meta-step of every learner still training, each on its own replica of ``tasks``; a learner whose
    meta-parameters stop being finite is rolled back to the state before this step and stopped."""
    for name, learner in learners.items():
        if state.diverged[name] is not None:
            continue
        before = copy.deepcopy(learner.state_dict())
        try:
            stats = learner.meta_step([task.replica() for task in tasks])
        except NonFiniteError as error:  # meta_step restored the learner to its state before the step
            nan = float("nan")
            state.history[name].append({**MetaStepStats(learner.iteration + 1, nan, nan, nan, 0, 0.0, 0.0).as_dict(),
                                        "non_finite": str(error)})
            state.diverged[name] = iteration + 1
            continue
        state.history[name].append(stats.as_dict())
        if not all(bool(torch.isfinite(p).all()) for p in learner.model.parameters()):
            learner.load_state_dict(before)
            state.diverged[name] = iteration + 1


def _result(learners, state: _Progress, iterations: int, validating: bool) -> MetaTraining:
    """The learners take back the meta-parameters of their best validation point (with validation)."""
    best_iteration = {name: iterations for name in learners}
    if validating:
        for name, learner in learners.items():
            best_iteration[name], _, model_state = state.best[name]
            learner.model.load_state_dict(model_state)
    return MetaTraining(state.history, state.validation, best_iteration, state.diverged)


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

    Model selection: with ``validation_tasks`` and ``validate_every > 0``, every learner's final loss on the
    validation sequences (never the held-out test sequences) is measured before meta-training and every
    ``validate_every`` iterations, and at the end each learner gets back the meta-parameters of its best
    validation point. At constant meta learning rates the Warp-MLP's validation loss bottoms out after a few
    dozen iterations and then drifts up again, its warp objective with it (measured on seed 0 of the "full"
    size), so the last iterate is not always the best.

    Divergence guard: a learner whose meta-parameters become non-finite after a meta-iteration is rolled back to
    the state before that iteration and trains no further; ``MetaTraining.diverged`` says when.

    With a ``checkpointer`` the learners, the sampler, the history and the validation state are saved every
    ``checkpointer.every`` iterations and at the end, and a run restarts from the saved iteration. A checkpoint
    written with other settings (the sampler's seed and task family, ``config``, the learners, the meta-batch
    size, the validation sequences) is refused naming the fields that differ (:class:`warpkit.kit.sweep.ResumableRun`).
    """
    validating = validation_tasks is not None and validate_every > 0
    if validating and config is None:
        raise ValueError("meta_train(): validation needs the config (for the inner step size); pass config=")
    run = ResumableRun(checkpointer, CHECKPOINT_KIND,
                       _fingerprint(learners, sampler, meta_batch_size, config, validation_tasks, validate_every))
    state = _restore(run, learners, sampler)
    if validating and state.iteration == 0 and not state.validation[next(iter(learners))]:
        _validate(learners, state, validation_tasks, config.inner_lr, 0)
    bar = progress(range(state.iteration, iterations), show=show_progress, desc="meta-training",
                   initial=state.iteration, total=iterations)
    for iteration in bar:
        _meta_iteration(learners, sampler.sample_many(meta_batch_size), state, iteration)
        state.iteration = iteration + 1
        if validating and (state.iteration % validate_every == 0 or state.iteration == iterations):
            _validate(learners, state, validation_tasks, config.inner_lr, state.iteration)
        if show_progress:
            bar.set_postfix({name: f"{h[-1]['task_loss_last']:.3f}" for name, h in state.history.items() if h})
        run.maybe_save(state.iteration, functools.partial(_checkpoint_state, learners, sampler, state),
                       final=state.iteration == iterations)
    return _result(learners, state, iterations, validating)


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


#: held-out sequences evaluated together in one vmapped inner loop
EVALUATION_GROUP = 10


def evaluate_learner(model: nn.Module, tasks, lr: float, loss_fn=weighted_mse, keep_runs: bool = False,
                     show_progress: bool = False, desc: str | None = None) -> ContinualEvaluation:
    """Run ``model`` (θ_0 = its task parameters, φ its warps, frozen) through every held-out sequence in
    ``tasks`` (each from a fresh copy of θ_0, on a replica of the task so its batches do not depend on what ran
    before) and collect the forgetting matrices. Sequences run :data:`EVALUATION_GROUP` at a time in one vmapped
    loop."""
    tasks = list(tasks)
    matrices, runs = [], []
    groups = [tasks[start:start + EVALUATION_GROUP] for start in range(0, len(tasks), EVALUATION_GROUP)]
    for group in progress(groups, show=show_progress, desc=desc):
        for task, run in zip(group, run_sequences(model, [task.replica() for task in group], lr, loss_fn)):
            matrices.append(forgetting_matrix(model, task, run, loss_fn))
            if keep_runs:
                runs.append(run)
    return ContinualEvaluation(torch.stack(matrices), runs)


__all__ = [
    "ContinualConfig", "SIZES", "make_init_learner", "build_learners",
    "MetaTraining", "meta_train",
    "SequenceRun", "run_sequence", "run_sequences", "forgetting_matrix", "predictions", "ContinualEvaluation", "earlier_to_current_ratio",
    "evaluate_learner",
]
