r"""One method, one seed, one number of training alphabets: build the learner, meta-train it, evaluate it
(Flennerhag et al., 2020, Section 4.2).

* **Adaptation** (identical for every method, at meta-training and at test time): ``inner_steps`` (100) steps of
  plain SGD at ``inner_lr`` (0.1) on batches of ``batch_size`` augmented training images, θ reset to the
  meta-learned θ_0 and BatchNorm statistics reset for every task; warp parameters φ frozen.
* **Meta-training.** ``meta_iterations`` iterations over meta-batches of ``meta_batch_size`` tasks
  (:mod:`warpkit.experiments.omniglot.tasks`). Warp-Leap replays the buffered points with the schedule
  ``replay_chunk_size`` (points per φ-step; 1 = the paper's one step per point), ``replay_epochs`` and
  ``replay`` (see :class:`warpkit.engine.meta.MetaLearner`). MAML is the one exception to "the same inner
  loop everywhere" *during meta-training*: it backpropagates through only ``maml_steps`` (5) inner steps; FOMAML
  follows the authors' code: the gradient at the end of the full trajectory; both take their meta loss on the
  task's held-out split (``maml_meta_split``).
* **Model selection.** With ``validation_every`` > 0 every run is scored on its seed's validation tasks before
  meta-training, every ``validation_every`` meta-iterations and at the end; ``model_selection="best"`` tests the
  best validation point (the earliest on ties), ``"final"`` the last meta-parameters (what the authors' code
  tests). The same rule for every method.
* **Evaluation.** For every test alphabet (``test_repeats`` tasks each), adapt a fresh copy of the meta-learned
  θ_0 (with φ) for ``inner_steps`` steps, then score accuracy on the task's held-out images (not augmented).
  ``evaluation_batchnorm="running"`` (default, the authors' ``model.eval()``) uses the BatchNorm running statistics
  gathered during adaptation, so each held-out image is classified on its own (non-transductive);
  ``"transductive"`` normalises with the held-out batch's own statistics. A run's accuracy is the mean over test
  tasks; tables report mean ± std over seeds.
* **Head policy.** No method ever gets a random head per test task: the meta-learners adapt their meta-learned
  head, multi-head finetuning starts from the mean of its trained heads (:mod:`warpkit.engine.baselines`), no
  pretraining from the one random head of its initialisation.

The methods come from :func:`warpkit.engine.baselines.make_method`: Warp-Leap (the warped network; φ by the warp
objective of Eq. 11, θ_0 by Leap), Leap, Reptile, FOMAML, MAML, multi-head finetuning and no pretraining, all on
:class:`warpkit.models.omniglot_net.OmniglotNet` built from the same random θ for a given seed.

:meth:`OmniglotExperiment.train` trains one method for one seed and n and returns the learner;
:meth:`OmniglotExperiment.run` runs the whole sweep (:mod:`warpkit.experiments.omniglot.sweep`).
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from warpkit.data.alphabet_tasks import AlphabetTask
from warpkit.engine.adapt import accuracy, evaluate
from warpkit.engine.baselines import MethodOptions, make_method
from warpkit.engine.meta import MetaLearner
from warpkit.engine.options import InnerLoop, WarpTraining
from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters
from warpkit.experiments.omniglot import replay, sweep
from warpkit.experiments.omniglot.config import EVALUATION_MODES, OmniglotConfig
from warpkit.experiments.omniglot.paper import METHOD_LABELS, METHODS_COMPARED, NOT_META_TRAINED
from warpkit.experiments.omniglot.results import SweepResults
from warpkit.experiments.omniglot.tasks import OmniglotTasks
from warpkit.kit.checkpoint import Checkpointer
from warpkit.kit.notebook import progress
from warpkit.models.omniglot_net import omniglot_net_factory


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits against the class labels (the task and meta loss of every method)."""
    return F.cross_entropy(logits, target)


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


#: K-FAC's step size α, damping λ and Fisher (warpkit.engine.kfac; the paper gives none of them): the best
#: validation accuracy of a grid at the medium size, seed 0 (benchmarks/omniglot_kfac.py records the grid)
KFAC_SETTINGS = {"kfac_lr": 0.03, "kfac_damping": 1e-2, "kfac_fisher": "mc"}


def build_method(c: OmniglotConfig, method: str, model_factory, seed: int):
    """The learner of ``method`` for the settings ``c`` (:func:`warpkit.engine.baselines.make_method`), on a fresh
    network from ``model_factory`` (the same random θ for every method at one seed)."""
    init_lr = c.maml_init_lr if method in ("fomaml", "maml") and c.maml_init_lr is not None else c.init_lr
    options = MethodOptions(maml_steps=c.maml_steps, leap_simplified=c.leap_simplified,
                            warp_leap_simplified=c.warp_leap_simplified, leap_stabilizer=c.leap_stabilizer,
                            maml_meta_split=c.maml_meta_split, **KFAC_SETTINGS)
    warp = WarpTraining(c.warp_objective, lr=c.warp_lr, optimizer=c.warp_optimizer,
                        points_per_step=c.replay_chunk_size, passes=c.replay_epochs, replay=c.replay)
    return make_method(method, model_factory, loss_fn, inner=InnerLoop(lr=c.inner_lr, steps=c.inner_steps),
                       warp=warp, init_lr=init_lr, init_optimizer=c.init_optimizer, options=options,
                       warp_kind=c.warp, seed=seed)


class OmniglotExperiment(OmniglotTasks):
    """The tasks of a :class:`~warpkit.experiments.omniglot.config.OmniglotConfig` on a dataset (see
    :class:`~warpkit.experiments.omniglot.tasks.OmniglotTasks` for the arguments), the methods built on them,
    and the sweep over seeds, numbers of alphabets and methods.

    ``device``: where the images, networks and adaptation live.
    """

    CHECKPOINT_KIND = sweep.CHECKPOINT_KIND

    def __init__(self, config: OmniglotConfig, dataset=None, device: torch.device | str = "cpu", root=None,
                 cache_dir=None, test_alphabets: Sequence[str] | str | None = "auto"):
        super().__init__(config, dataset, device, root, cache_dir, test_alphabets)
        self.model_factory = omniglot_net_factory(ways=config.ways, filters=config.filters)

    # -- methods ---------------------------------------------------------------------------------------------
    def build(self, method: str, seed: int) -> MetaLearner:
        """The method's learner on a fresh network (the same random θ for every method at one seed)."""
        learner = build_method(self.config, method, self.model_factory, seed)
        learner.model.to(self.device)
        return learner

    def parameter_counts(self) -> dict[str, int]:
        """θ and φ of the warped network and θ of the plain one."""
        warped, plain = self.model_factory(warp=self.config.warp), self.model_factory(warp="none")
        return {"theta": count_parameters(task_parameters(warped)), "phi": count_parameters(warp_parameters(warped)),
                "theta_plain": count_parameters(task_parameters(plain))}

    # -- meta-training ---------------------------------------------------------------------------------------
    @property
    def validating(self) -> bool:
        """Whether runs are validated (and, under ``model_selection="best"``, selected) on validation tasks."""
        return self.config.validation_every > 0 and self.config.validation_alphabets > 0

    def meta_train(self, learner: MetaLearner, method: str, seed: int, alphabets: int, start: int = 0,
                   history: list[dict] | None = None,
                   after_iteration: Callable[[int, list[dict]], None] | None = None,
                   selection: dict | None = None, stop: int | None = None) -> list[dict]:
        """Meta-iterations ``start`` … ``meta_iterations``−1 of one run; returns the per-iteration statistics
        (losses, |Δφ|, |Δθ₀|, seconds, and ``validation_accuracy`` where the learner was validated).

        With validation alphabets and ``validation_every`` > 0 the learner is scored on the seed's validation
        tasks before meta-training, every ``validation_every`` meta-iterations and at the end; ``selection`` (a
        dict, updated in place so that a checkpoint can carry it) keeps the validation curve and the best point.
        With ``model_selection="best"`` the learner ends at its best validation point (the earliest on ties), so
        that meta-training longer can never make the selected model worse on validation. ``after_iteration(done,
        history)`` is called after every meta-iteration. ``stop``: return once ``stop`` meta-iterations are done,
        the run unfinished (no model selection yet; continue it with ``start=stop``). "no-pretraining" and "kfac"
        have nothing to learn and are returned untouched."""
        history = list(history or [])
        selection = {} if selection is None else selection
        if method in NOT_META_TRAINED:
            return history
        validation = self.validation_tasks(seed) if self.validating else []
        if start == 0:
            self._validate(learner, validation, selection, 0)
        end = self.config.meta_iterations if stop is None else min(stop, self.config.meta_iterations)
        for iteration in range(start, end):
            history.append(self._meta_iteration(learner, method, seed, alphabets, iteration, validation, selection))
            if after_iteration is not None:
                after_iteration(iteration + 1, history)
        if end == self.config.meta_iterations and self.config.model_selection == "best" and "state" in selection:
            learner.load_state_dict(copy.deepcopy(selection["state"]))
        return history

    def _meta_iteration(self, learner: MetaLearner, method: str, seed: int, alphabets: int, iteration: int,
                        validation: list[AlphabetTask], selection: dict) -> dict:
        """One meta-step on the meta-batch of ``iteration`` (validated when it is due); its statistics, JSON-able
        (non-finite numbers as None)."""
        c = self.config
        started = time.perf_counter()
        entry = learner.meta_step(self.tasks_for(method, seed, alphabets, iteration)).as_dict()
        entry["seconds"] = time.perf_counter() - started
        done = iteration + 1
        if self.validating and (done % c.validation_every == 0 or done == c.meta_iterations):
            entry["validation_accuracy"] = self._validate(learner, validation, selection, done)
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in entry.items()}

    def _validate(self, learner: MetaLearner, validation: list[AlphabetTask], selection: dict,
                  done: int) -> float | None:
        """Score the learner on the validation tasks after ``done`` meta-iterations (once per point) and keep the
        best point in ``selection``; None when there is nothing to validate or the point was scored already."""
        if not self.validating or any(point[0] == done for point in selection.get("curve", [])):
            return None
        score = self.evaluate(learner, validation)["accuracy"]
        selection.setdefault("curve", []).append([done, score])
        if "accuracy" not in selection or score > selection["accuracy"]:
            selection.update(iteration=done, accuracy=score, state=copy.deepcopy(learner.state_dict()))
        return score

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, learner: MetaLearner, tasks: Sequence[AlphabetTask] | None = None,
                 batchnorm: str | None = None) -> dict:
        """Adapt a fresh copy of the learner's θ_0 (φ frozen) to every test task for ``inner_steps`` steps and
        score it on the task's held-out images. ``batchnorm`` (default ``config.evaluation_batchnorm``):
        ``"running"`` scores with the BatchNorm running statistics the adaptation accumulated (non-transductive:
        each held-out image is classified on its own, as ``model.eval()`` in the authors' code);
        ``"transductive"`` normalises with the statistics of the held-out batch itself (the images of the
        evaluation batch influence each other's predictions). The learner's model is never modified."""
        mode = self.config.evaluation_batchnorm if batchnorm is None else batchnorm
        if mode not in EVALUATION_MODES:
            raise ValueError(f"evaluate(): batchnorm must be one of {list(EVALUATION_MODES)}, got {mode!r}")
        tasks = self.test_tasks() if tasks is None else list(tasks)
        if not tasks:
            raise ValueError("evaluate(): no tasks (the experiment was built with test_alphabets=None: pass tasks)")
        phi = {n: p.detach() for n, p in warp_parameters(learner.model).items()}
        accuracies, losses, curves = [], [], []
        for task in tasks:
            trajectory = learner.adapt(task)
            scores = evaluate(learner.model, {**trajectory.final_params, **phi}, trajectory.final_buffers,
                              task.evaluation_batch(), loss_fn, accuracy, batchnorm=EVALUATION_MODES[mode])
            accuracies.append(scores["metric"])
            losses.append(scores["loss"])
            curves.append(trajectory.losses + [trajectory.final_loss])
        return {"accuracy": float(np.mean(accuracies)), "task_accuracies": [float(a) for a in accuracies],
                "test_loss": float(np.mean(losses)), "adaptation_losses": np.mean(curves, axis=0).tolist()}

    # -- one run, the sweep, the replay timing --------------------------------------------------------------
    def train(self, method: str, seed: int = 0, alphabets: int | None = None,
              show_progress: bool = False) -> MetaLearner:
        """Meta-train one ``method`` for one ``seed`` on ``alphabets`` training alphabets (default: the largest n
        of the config) and return the learner (at its selected validation point under ``model_selection="best"``).
        Score it with :meth:`evaluate` (on the test alphabets, or on your own tasks), adapt it with
        ``learner.adapt(task)``. The per-iteration statistics are in ``learner.meta_history``."""
        if method not in METHOD_LABELS:
            raise ValueError(f"unknown method {method!r}; choose from {list(METHODS_COMPARED)}")
        n = self.config.largest_n if alphabets is None else alphabets
        learner = self.build(method, seed)
        bar = progress(total=self.config.meta_iterations, show=show_progress, desc=METHOD_LABELS[method])
        selection: dict = {}
        try:
            learner.meta_history = self.meta_train(learner, method, seed, n, selection=selection,
                                                   after_iteration=lambda done, history: bar.update(1))
        finally:
            bar.close()
        learner.validation = {k: v for k, v in selection.items() if k != "state"}
        return learner

    def plan(self) -> list[tuple[int, int, str]]:
        """Every (seed, n, method) of the sweep, in the order it runs."""
        return self.plan_of(self.config)

    @staticmethod
    def plan_of(config: OmniglotConfig) -> list[tuple[int, int, str]]:
        return [(seed, n, method) for seed in config.seeds for n in config.alphabet_counts
                for method in config.methods]

    def run(self, checkpoint: str | os.PathLike | Checkpointer | None = None, show_progress: bool = True,
            stop_after: int | None = None) -> SweepResults:
        """Run (or resume) the whole sweep; see :func:`warpkit.experiments.omniglot.sweep.run_sweep`."""
        return sweep.run_sweep(self, checkpoint, show_progress, stop_after)

    def time_meta_iteration(self, seed: int | None = None, alphabets: int | None = None,
                            variants: Sequence[str] = ("batched", "one_point")) -> dict:
        """Time one Warp-Leap meta-iteration under several replay schemes; see
        :func:`warpkit.experiments.omniglot.replay.time_meta_iteration`."""
        return replay.time_meta_iteration(self, seed, alphabets, variants)


def warp_vs_plain_at_initialisation(experiment: OmniglotExperiment, seed: int = 0, steps: int | None = None) -> dict:
    """Before meta-training the warps are the identity, so the warped network adapts *exactly* like its unwarped
    twin from the same θ: returns both loss curves on the first test task and their largest difference."""
    task = experiment.test_tasks()[0]
    steps = experiment.config.inner_steps if steps is None else steps
    curves = {}
    for kind in ("warp-leap", "no-pretraining"):
        learner = experiment.build(kind, seed)
        curves[kind] = learner.adapt(task, num_steps=steps).losses
    difference = max(abs(a - b) for a, b in zip(curves["warp-leap"], curves["no-pretraining"]))
    return {"warped": curves["warp-leap"], "plain": curves["no-pretraining"], "max_difference": difference}


__all__ = ["OmniglotExperiment", "loss_fn", "warp_vs_plain_at_initialisation"]
