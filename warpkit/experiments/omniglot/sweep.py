"""The sweep: every (seed, n, method) of a configuration, in that order, checkpointed and resumable.

:func:`run_sweep` (what :meth:`OmniglotExperiment.run <warpkit.experiments.omniglot.experiment.OmniglotExperiment.run>`
calls) meta-trains and evaluates every run of the plan and returns a
:class:`~warpkit.experiments.omniglot.results.SweepResults`. With a checkpoint it saves, through
:class:`warpkit.kit.sweep.ResumableRun`, every finished run's numbers and the state of the run in progress (its
learner, meta-iteration, history and validation points) every ``checkpoint_every`` meta-iterations and after each
run, atomically. Running again with the same path *resumes*: finished runs are not redone, the run in progress
continues from its last saved meta-iteration, and batches are a deterministic function of (seed, n, iteration), so
a resumed sweep gives the numbers an uninterrupted one gives. The checkpoint's fingerprint (:func:`sweep_fingerprint`)
holds every setting that changes the numbers: the whole configuration (seeds, data source and sets included), the
data actually found (source, alphabets and their sizes, test alphabets) and the default float type. A checkpoint
made with other settings is refused, naming the fields that differ; one that cannot be read raises
:class:`~warpkit.kit.checkpoint.CheckpointError`; neither is ever overwritten.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from warpkit.engine.meta import MetaLearner
from warpkit.experiments.omniglot.paper import METHOD_LABELS
from warpkit.experiments.omniglot.results import RunResult, SweepResults
from warpkit.kit.checkpoint import Checkpointer
from warpkit.kit.notebook import progress
from warpkit.kit.sweep import ResumableRun, fingerprint

#: what a sweep checkpoint holds (:class:`warpkit.kit.sweep.ResumableRun` refuses any other kind)
CHECKPOINT_KIND = "warpkit Omniglot sweep"


def sweep_fingerprint(experiment) -> dict[str, Any]:
    """Every setting that changes the sweep's numbers (see the module docstring), in the form a checkpoint stores
    and compares."""
    dataset = experiment.dataset
    return fingerprint(config=experiment.config.as_dict(), source=experiment.source,
                       alphabets={a: dataset.num_characters(a) for a in dataset.alphabets},
                       test_alphabets=experiment.test_alphabets, dtype=str(torch.get_default_dtype()))


@dataclass
class _RunInProgress:
    """The run this call is meta-training: what a checkpoint saves of it, and its clock."""

    seed: int
    alphabets: int
    method: str
    learner: MetaLearner
    seconds_before: float  # meta-training seconds spent on it by earlier calls (a resumed run)
    selection: dict  # validation curve and best point (see OmniglotExperiment.meta_train)
    started: float = 0.0

    def __post_init__(self):
        self.started = time.perf_counter()

    @property
    def key(self) -> tuple[int, int, str]:
        return self.seed, self.alphabets, self.method

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def saved(self, iteration: int, history: list[dict]) -> dict:
        return {"seed": self.seed, "alphabets": self.alphabets, "method": self.method, "iteration": iteration,
                "learner": self.learner.state_dict(), "history": history, "seconds": self.seconds,
                "selection": self.selection}


class _Sweep:
    """One call of :func:`run_sweep`: the finished runs, the run in progress, the checkpoint and the progress bar.
    ``stop_after``: meta-iterations this call may do (None: no limit); the sweep stops, saved, when they are done."""

    def __init__(self, experiment, checkpoint, show_progress: bool, stop_after: int | None):
        self.experiment, self.config, self.plan = experiment, experiment.config, experiment.plan()
        self.show_progress, self.budget, self.iterations_this_call = show_progress, stop_after, 0
        self.checkpoint = ResumableRun(checkpoint or None, CHECKPOINT_KIND, sweep_fingerprint(experiment),
                                       every=self.config.checkpoint_every)
        saved = self.checkpoint.restore() or {"runs": [], "current": None}
        self.finished: dict[tuple[int, int, str], RunResult] = {}
        for entry in saved["runs"]:
            run = RunResult(**entry)
            self.finished[(run.seed, run.alphabets, run.method)] = run
        self.saved_in_progress: dict | None = saved["current"]
        self.active: _RunInProgress | None = None
        self.test_tasks = experiment.test_tasks()
        initial = self.iterations_finished() + (int(self.saved_in_progress["iteration"]) if self.saved_in_progress
                                                else 0)
        total = sum(self.iterations_of(method) for _, _, method in self.plan)
        self.bar = progress(total=total, initial=initial, show=show_progress, desc="meta-training")

    def iterations_of(self, method: str) -> int:
        return 0 if method == "no-pretraining" else self.config.meta_iterations

    def iterations_finished(self) -> int:
        return sum(self.iterations_of(method) for _, _, method in self.finished)

    @property
    def out_of_budget(self) -> bool:
        return self.budget is not None and self.iterations_this_call >= self.budget

    def state(self, current: dict | None) -> dict:
        """What the checkpoint holds: the finished runs in plan order and the run in progress (or None)."""
        return {"runs": [self.finished[key].as_dict() for key in self.plan if key in self.finished],
                "current": current}

    def run(self) -> SweepResults:
        try:
            for seed, n, method in self.plan:
                if (seed, n, method) in self.finished:
                    continue
                if self.out_of_budget:
                    break
                self.bar.set_description(f"{METHOD_LABELS[method]}, n={n}, seed {seed}")
                self.run_one(seed, n, method)
        finally:
            self.bar.close()
        runs = [self.finished[key] for key in self.plan if key in self.finished]
        return SweepResults(self.config, runs, self.experiment.source)

    def run_one(self, seed: int, n: int, method: str) -> None:
        """Meta-train and evaluate one run (or continue it from the checkpoint); it stays unfinished, saved, when
        the call's budget of meta-iterations runs out first."""
        first_n = self.config.alphabet_counts[0]
        if method == "no-pretraining" and n != first_n:
            # nothing is meta-learned, so its numbers do not depend on n: copy them from the first n
            self.finished[(seed, n, method)] = RunResult(**{**self.finished[(seed, first_n, method)].as_dict(),
                                                            "alphabets": n})
            return
        start, history = self.begin(seed, n, method)
        stop = None if self.budget is None else start + self.budget - self.iterations_this_call
        history = self.experiment.meta_train(self.active.learner, method, seed, n, start, history,
                                             self.after_iteration, self.active.selection, stop)
        if len(history) == self.iterations_of(method):
            self.finish(history)

    def begin(self, seed: int, n: int, method: str) -> tuple[int, list[dict]]:
        """Build the run's learner, restored from the checkpoint's run in progress when that is this run; returns
        the meta-iterations already done and their history."""
        learner = self.experiment.build(method, seed)
        saved, self.saved_in_progress = self.saved_in_progress, None
        if saved is None or (saved["seed"], saved["alphabets"], saved["method"]) != (seed, n, method):
            self.active = _RunInProgress(seed, n, method, learner, 0.0, {})
            return 0, []
        learner.load_state_dict(saved["learner"])
        self.active = _RunInProgress(seed, n, method, learner, float(saved["seconds"]),
                                     dict(saved.get("selection") or {}))
        return int(saved["iteration"]), list(saved["history"])

    def after_iteration(self, done: int, history: list[dict]) -> None:
        """Progress, and a checkpoint every ``checkpoint_every`` meta-iterations of the sweep (and when the call's
        budget is spent)."""
        self.bar.update(1)
        last = history[-1] if history else {}
        if self.show_progress and last.get("task_loss_first") is not None and last.get("task_loss_last") is not None:
            self.bar.set_postfix({"loss": f"{last['task_loss_first']:.2f}→{last['task_loss_last']:.2f}"})
        self.iterations_this_call += 1
        active = self.active
        self.checkpoint.maybe_save(self.iterations_finished() + done,
                                   lambda: self.state(active.saved(done, history)), final=self.out_of_budget)

    def finish(self, history: list[dict]) -> None:
        """Evaluate the meta-trained run on the test tasks, keep its numbers and save."""
        active = self.active
        seconds_training = active.seconds
        evaluation_started = time.perf_counter()
        scores = self.experiment.evaluate(active.learner, self.test_tasks)
        selected = active.selection.get("iteration") if self.config.model_selection == "best" else len(history)
        self.finished[active.key] = RunResult(
            method=active.method, alphabets=active.alphabets, seed=active.seed, meta_history=history,
            validation_curve=[list(p) for p in active.selection.get("curve", [])], selected_iteration=selected,
            seconds_meta_training=seconds_training, seconds_evaluation=time.perf_counter() - evaluation_started,
            **scores)
        self.active = None
        self.checkpoint.maybe_save(0, lambda: self.state(None), final=True)


def run_sweep(experiment, checkpoint: str | os.PathLike | Checkpointer | None = None, show_progress: bool = True,
              stop_after: int | None = None) -> SweepResults:
    """Run (or resume) the sweep of ``experiment`` (an
    :class:`~warpkit.experiments.omniglot.experiment.OmniglotExperiment`). ``checkpoint``: a file path or a
    :class:`~warpkit.kit.checkpoint.Checkpointer` (None: no checkpointing). ``stop_after``: stop, saved, after that
    many meta-iterations in this call (to test interruption), returning the runs finished so far."""
    return _Sweep(experiment, checkpoint, show_progress, stop_after).run()


__all__ = ["CHECKPOINT_KIND", "run_sweep", "sweep_fingerprint"]
