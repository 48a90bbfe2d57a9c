r"""Notebook 03's experiment: Omniglot with one alphabet per task, Warp-Leap against the paper's baselines
(Flennerhag et al., 2020, Section 4.2).

The protocol
------------
* **Tasks.** A task is one alphabet: ``ways`` (20) of its characters, labelled 0..ways−1, with ``train_images``
  (15) drawers per character to learn from and the other 20 − 15 = 5 held out. As in the authors' code, a
  training alphabet is *one fixed task* (its characters, labels and drawer split are drawn once per seed);
  what changes from one meta-iteration to the next is only the order of its batches and their random affine
  augmentation (rotation 0–360°, shift 0.2, scale 0.8–1.2). That is what makes multi-head finetuning (one head
  per training alphabet) well defined.
* **Alphabets.** Only alphabets with at least ``ways`` characters take part. ``test_alphabets`` of them are
  chosen once, from ``split_seed``, and are the *same* for every number n of training alphabets, every seed and
  every method (the original code shifts them with n: a bug). The first n alphabets of a seeded shuffle of the
  rest meta-train, so the sets are nested as n grows; the remaining ones would be the validation alphabets
  (unused: no early stopping, every method is scored with its final meta-parameters).
* **Adaptation** (identical for every method, at meta-training and at test time): ``inner_steps`` (100) steps of
  plain SGD at ``inner_lr`` (0.1) on batches of ``batch_size`` augmented training images, θ reset to the
  meta-learned θ_0 and BatchNorm statistics reset for every task; warp parameters φ frozen.
* **Meta-training.** ``meta_iterations`` iterations over meta-batches of ``meta_batch_size`` tasks (the n
  training alphabets in a seeded shuffle, cycled when n < meta-batch). MAML is the one exception to "the same
  inner loop everywhere" *during meta-training*: it backpropagates through only ``maml_steps`` (5) inner steps,
  which is why it exists as a baseline (its memory grows with the steps). FOMAML follows the authors' code: the
  gradient at the end of the full ``inner_steps`` trajectory. Every method is *evaluated* the same way.
* **Evaluation.** For every test alphabet (``test_repeats`` tasks each), adapt a fresh copy of the meta-learned
  θ_0 (with φ) for ``inner_steps`` steps, then score accuracy on the task's held-out images (not augmented;
  BatchNorm on the evaluation batch's statistics, as in the authors' code). A run's accuracy is the mean over
  test tasks; the figure reports mean ± std over seeds.
* **Head policy.** No method ever gets a random head per test task: the meta-learners adapt their meta-learned
  head, multi-head finetuning starts from the mean of its trained heads (:mod:`warpkit.engine.baselines`), no
  pretraining from the one random head of its initialisation.

The methods come from :func:`warpkit.engine.baselines.make_method`: Warp-Leap (the warped network; φ by the warp
objective of Eq. 11, θ_0 by Leap), Leap, Reptile, FOMAML, MAML, multi-head finetuning and no pretraining, all
on :class:`warpkit.models.omniglot_net.OmniglotNet` built from the same random θ for a given seed.

The sweep, checkpointing and speed
----------------------------------
:meth:`OmniglotExperiment.run` runs every (seed, n, method), in that order, and returns a :class:`SweepResults`.
With a checkpoint path it saves, through :class:`warpkit.kit.checkpoint.Checkpointer`, every finished run's numbers
and the state of the run in progress (its learner, meta-iteration and history) every ``checkpoint_every``
meta-iterations and after each run, atomically; running again with the same path *resumes* (finished runs are
not redone, the run in progress continues from its last saved iteration, and batches are a deterministic
function of (seed, n, iteration), so a resumed sweep gives the numbers an uninterrupted one gives). A
checkpoint that cannot be read raises :class:`~warpkit.kit.checkpoint.CheckpointError` and is never overwritten; a
checkpoint written with another configuration is refused with the differences named.

:meth:`OmniglotExperiment.time_meta_iteration` times one Warp-Leap meta-iteration (the tasks' adaptation plus
the replay of every buffered point) with batched replay (chunks of ``replay_chunk_size`` points, one vmapped
call and one φ-step per chunk) and, from the same state on the same batches, with the authors' replay (one point
at a time, one φ-step per point), and reports the ratio.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from warpkit.engine.adapt import accuracy, evaluate
from warpkit.engine.baselines import make_method
from warpkit.kit.checkpoint import Checkpointer, CheckpointError
from warpkit.data.alphabet_tasks import (AlphabetTask, derive_seed, eligible_alphabets, load_alphabet_dataset,
                                         split_alphabets)
from warpkit.data.augment import OMNIGLOT_AUGMENTATION
from warpkit.engine.meta import MetaLearner
from warpkit.models.omniglot_net import OMNIGLOT_WARPS, omniglot_net_factory
from warpkit.kit.notebook import REPO_ROOT, progress
from warpkit.engine.warp import count_parameters, task_parameters, warp_parameters

#: the methods of the comparison, in the order tables and figures list them
METHODS_COMPARED = ("warp-leap", "leap", "reptile", "fomaml", "maml", "multi-head", "no-pretraining")
METHOD_LABELS = {
    "warp-leap": "Warp-Leap", "leap": "Leap", "reptile": "Reptile", "fomaml": "FOMAML", "maml": "MAML",
    "multi-head": "Multi-head finetuning", "no-pretraining": "No pretraining",
}
#: held-out accuracy (%) as reported in the WarpGrad paper for 25 training alphabets on full Omniglot
#: (Flennerhag et al., 2020, Section 4.2; quoted by secondary sources; "—" = not quoted there)
PAPER_ACCURACY_25 = {"warp-leap": (83.6, 1.9), "multi-head": (76.4, None), "leap": (75.5, None),
                     "reptile": (70.8, None), "maml": (56.7, None)}
#: Warp-Leap's reported held-out accuracy (%) against the number of training alphabets (Flennerhag et al., 2020, Section 4.2)
PAPER_WARP_LEAP_BY_ALPHABETS = {1: 49.5, 3: 68.8, 5: 75.0, 10: 81.2, 15: 82.7, 20: 82.0, 25: 83.8}


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits against the class labels (the task and meta loss of every method)."""
    return F.cross_entropy(logits, target)


def record_name(method: str) -> str:
    """``"warp-leap"`` → ``"warp_leap"`` (what the notebook records as ``acc_<name>``)."""
    return method.replace("-", "_")


# ----------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OmniglotConfig:
    """Everything that defines a sweep (notebook 03 picks one of :data:`SIZES`). Defaults: the paper's protocol."""

    # tasks (warpkit.data.alphabet_tasks)
    ways: int = 20
    train_images: int = 15  # per character; the other 20 - train_images are held out
    batch_size: int = 20
    augment: bool = True
    fixed_training_tasks: bool = True  # one fixed task per training alphabet (authors' code); False: resampled
    test_alphabets: int = 10
    test_repeats: int = 1  # tasks per test alphabet (different characters / drawer splits)
    alphabet_counts: tuple[int, ...] = (1, 3, 5, 10, 15, 20, 25)  # the numbers n of training alphabets
    seeds: tuple[int, ...] = tuple(range(10))
    split_seed: int = 0  # chooses the test alphabets (and test tasks), the same for every n and seed
    data_source: str = "omniglot"  # "omniglot" (must be found), "auto" (else glyphs) or "glyphs"
    data_sets: str | tuple[str, ...] = "auto"  # Omniglot sets: "auto" = full sets if present, else small subsets
    # the network (warpkit.models.omniglot_net)
    filters: int = 64
    warp: str = "conv3"
    # the inner loop: the same for every method
    inner_steps: int = 100
    inner_lr: float = 0.1
    # meta-training
    methods: tuple[str, ...] = METHODS_COMPARED
    meta_iterations: int = 1000
    meta_batch_size: int = 20
    warp_objective: str = "exact"
    warp_lr: float = 0.1
    warp_optimizer: str = "sgd"
    init_lr: float = 0.1
    init_optimizer: str = "sgd"
    maml_init_lr: float | None = None  # meta learning rate of FOMAML and MAML (None: init_lr)
    replay_chunk_size: int = 32
    maml_steps: int = 5
    leap_simplified: bool = True  # the WarpGrad code's Leap (same for Leap and Warp-Leap)
    checkpoint_every: int = 10  # meta-iterations between checkpoints

    def __post_init__(self):
        def need(condition: bool, message: str):
            if not condition:
                raise ValueError(f"OmniglotConfig: {message}")

        need(isinstance(self.ways, int) and self.ways >= 2, f"ways must be an int >= 2, got {self.ways!r}")
        need(isinstance(self.train_images, int) and 1 <= self.train_images <= 19,
             f"train_images must be between 1 and 19 (20 drawers, some held out), got {self.train_images!r}")
        need(1 <= self.batch_size <= self.ways * self.train_images,
             f"batch_size must be between 1 and ways·train_images = {self.ways * self.train_images}, "
             f"got {self.batch_size}")
        need(self.test_alphabets >= 1 and self.test_repeats >= 1, "test_alphabets and test_repeats must be >= 1")
        counts = tuple(self.alphabet_counts)
        need(len(counts) > 0 and all(isinstance(n, int) and n >= 1 for n in counts)
             and list(counts) == sorted(set(counts)),
             f"alphabet_counts must be increasing positive ints, got {self.alphabet_counts!r}")
        need(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds),
             f"seeds must be distinct, got {self.seeds}")
        need(self.data_source in ("auto", "omniglot", "glyphs"),
             f"data_source must be 'auto', 'omniglot' or 'glyphs', got {self.data_source!r}")
        need(self.warp in OMNIGLOT_WARPS and self.warp != "none",
             f"warp must be one of {[w for w in OMNIGLOT_WARPS if w != 'none']}, got {self.warp!r}")
        unknown = [m for m in self.methods if m not in METHOD_LABELS]
        need(not unknown and len(self.methods) > 0,
             f"unknown method(s) {unknown}; choose from {list(METHODS_COMPARED)}")
        need(self.inner_steps >= 1 and self.inner_lr > 0, "inner_steps must be >= 1 and inner_lr > 0")
        need(self.meta_iterations >= 0 and self.meta_batch_size >= 1,
             "meta_iterations must be >= 0 and meta_batch_size >= 1")
        need(self.warp_objective in ("exact", "first_order", "approx"),
             f"warp_objective must be 'exact', 'first_order' or 'approx', got {self.warp_objective!r}")
        need(self.replay_chunk_size >= 1 and self.checkpoint_every >= 1,
             "replay_chunk_size and checkpoint_every must be >= 1")
        need(1 <= self.maml_steps, "maml_steps must be >= 1")

    @property
    def largest_n(self) -> int:
        return max(self.alphabet_counts)

    def as_dict(self) -> dict:
        """Plain JSON-able form (tuples as lists): what a checkpoint stores and compares."""
        return json.loads(json.dumps(asdict(self)))

    def replace(self, **changes) -> "OmniglotConfig":
        """A copy with some fields changed (checked like a new config)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"OmniglotConfig has no field(s) {unknown}")
        return OmniglotConfig(**{**asdict(self), **changes})

    def describe(self) -> str:
        return (f"{self.ways}-way alphabet tasks, {self.train_images}/{20 - self.train_images} images per character, "
                f"batch {self.batch_size}, augmentation {'on' if self.augment else 'off'}; {self.inner_steps} SGD "
                f"steps at lr {self.inner_lr}; {self.filters} filters, warp {self.warp!r}; {self.meta_iterations} "
                f"meta-iterations × {self.meta_batch_size} tasks; n ∈ {list(self.alphabet_counts)}; "
                f"{len(self.seeds)} seed(s); {self.test_alphabets} test alphabet(s) × {self.test_repeats}")


#: ``fast``: CI (real Omniglot subsets if found, else the glyph stand-in; a couple of minutes on two CPU cores);
#: ``medium``: the real subsets, three seeds, well under an hour on a CPU; ``full``: the paper's protocol (a GPU).
SIZES: dict[str, OmniglotConfig] = {
    "fast": OmniglotConfig(
        ways=10, batch_size=10, augment=False, test_alphabets=2, test_repeats=2, alphabet_counts=(1, 3),
        seeds=(0,), data_source="auto", filters=16, inner_steps=10, meta_iterations=8, meta_batch_size=3,
        warp_lr=0.003, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam", maml_init_lr=0.01,
        replay_chunk_size=10, checkpoint_every=2,
    ),
    "medium": OmniglotConfig(
        ways=20, batch_size=20, augment=False, test_alphabets=2, test_repeats=2, alphabet_counts=(1, 3, 5),
        seeds=(0, 1, 2), data_source="omniglot", filters=16, inner_steps=25, meta_iterations=10, meta_batch_size=3,
        warp_lr=0.003, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam", maml_init_lr=0.01,
        replay_chunk_size=25, checkpoint_every=2,
    ),
    "full": OmniglotConfig(data_sets=("images_background", "images_evaluation"), checkpoint_every=10),
    # gpu: the regression size for one GPU (python3 kit.py gpu-check; the time estimate is in warpkit.kit.gpu)
    "gpu": OmniglotConfig(
        ways=20, batch_size=20, augment=False, test_alphabets=2, test_repeats=3, alphabet_counts=(1, 3, 5),
        seeds=(0,), data_source="auto", filters=32, inner_steps=20, meta_iterations=12, meta_batch_size=5,
        warp_lr=0.003, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam", maml_init_lr=0.01,
        replay_chunk_size=20, checkpoint_every=5,
    ),
}


_READABLE = {
    "ways": "ways per task", "train_images": "training images per character", "batch_size": "batch size",
    "augment": "augmentation", "test_alphabets": "test alphabets", "test_repeats": "tasks per test alphabet",
    "alphabet_counts": "numbers of training alphabets n", "seeds": "seeds", "filters": "filters per conv layer",
    "warp": "warp layers", "inner_steps": "SGD steps per task", "inner_lr": "SGD step size",
    "meta_iterations": "meta-iterations", "meta_batch_size": "tasks per meta-batch",
    "warp_objective": "warp objective", "warp_lr": "warp learning rate", "warp_optimizer": "warp meta-optimiser",
    "init_lr": "initialisation learning rate", "init_optimizer": "initialisation meta-optimiser",
    "maml_init_lr": "FOMAML/MAML learning rate", "replay_chunk_size": "points per replay chunk",
    "maml_steps": "MAML inner steps", "leap_simplified": "simplified Leap",
    "fixed_training_tasks": "one fixed task per training alphabet",
}


def differences_from_paper(config: OmniglotConfig) -> list[str]:
    """``"name: this run's value (paper: value)"`` for every protocol setting where ``config`` differs from the
    ``full`` size (the paper's protocol); data location, checkpointing and the split seed are not listed."""
    paper = SIZES["full"].as_dict()
    ours = config.as_dict()
    lines = []
    for key, label in _READABLE.items():
        if key == "seeds":
            if len(ours[key]) != len(paper[key]):
                lines.append(f"{label}: {len(ours[key])} (full: {len(paper[key])})")
        elif ours[key] != paper[key]:
            lines.append(f"{label}: {ours[key]} (full: {paper[key]})")
    return lines


def size_note(config: OmniglotConfig, size: str) -> str:
    """Markdown: how the run departs from the paper's protocol (the ``full`` size), or that it follows it."""
    changes = differences_from_paper(config)
    if not changes:
        return f"**Size `{size}`: the paper's protocol.**"
    return f"**Size `{size}` departs from the `full` size (the paper's protocol) in:** " + "; ".join(changes) + "."


def config_for(size: str, seed_offset: int = 0, data_source: str | None = None) -> OmniglotConfig:
    """The configuration of ``size`` (a key of :data:`SIZES`) with its seeds shifted by ``seed_offset`` (the
    notebook's ``SEED``: seeds (0, 1, 2) become (SEED, SEED+1, SEED+2)) and, if given, another ``data_source``
    (``"auto"``, ``"omniglot"`` or ``"glyphs"``)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {list(SIZES)}")
    config = SIZES[size]
    if seed_offset:
        config = config.replace(seeds=tuple(seed_offset + s for s in config.seeds))
    if data_source is not None:
        config = config.replace(data_source=data_source)
    return config


def checkpoint_path(setting: str, size: str, seed: int) -> str | None:
    """Resolve the notebook's ``CHECKPOINT`` parameter: ``""`` → no checkpoint; ``"auto"`` →
    ``<repo>/checkpoints/03_omniglot_<size>_seed<seed>.pt`` for ``medium`` and ``full`` (None for ``fast``, whose
    whole run takes a few minutes); anything else is taken as a file path."""
    if not setting:
        return None
    if setting == "auto":
        return None if size == "fast" else str(REPO_ROOT / "checkpoints" / f"03_omniglot_{size}_seed{seed}.pt")
    return setting


def data_banner(dataset) -> str:
    """A Markdown banner naming the data; loud when it is the synthetic stand-in rather than Omniglot."""
    if dataset.source == "omniglot":
        return (f"**Data: Omniglot** ({len(dataset.alphabets)} alphabets, {dataset.total_characters} characters; "
                f"{getattr(dataset, 'description', '')}).")
    return ("> ## ⚠ NOT OMNIGLOT: synthetic glyph stand-in\n"
            "> This run uses **glyph alphabets rendered from fonts**, with distorted 'drawers', because Omniglot was "
            "not found (set `WARPKIT_DATA` to a folder holding `omniglot/`; see `warpkit.data.omniglot`) or the "
            "stand-in was asked for. Every number and figure below is about the stand-in and must not be compared "
            f"with the paper's Omniglot numbers. ({len(dataset.alphabets)} glyph alphabets.)")


def describe_parameters(model) -> str:
    """One line per parameter tensor: name, shape, and whether it is θ (task) or φ (warp); totals at the end."""
    theta, phi = task_parameters(model), warp_parameters(model)
    lines = []
    for name, p in model.named_parameters():
        role = "θ task" if name in theta else ("φ warp" if name in phi else "other")
        lines.append(f"  {role:7s} {name:28s} {str(tuple(p.shape)):18s} {p.numel():7d}")
    lines.append(f"  θ: {count_parameters(theta)} task parameters (moved by SGD in every task), "
                 f"φ: {count_parameters(phi)} warp parameters (frozen in tasks, meta-learned)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------------------------
class AlphabetTaskInstance(AlphabetTask):
    """An :class:`~warpkit.data.alphabet_tasks.AlphabetTask` whose *identity* (characters, labels, drawer split)
    comes from ``identity_seed`` and whose *batches* (order and augmentation) come from ``batch_seed``.

    The authors' protocol keeps each training alphabet one fixed task and draws fresh batches every
    meta-iteration; ``AlphabetTask`` derives both from one seed, so this sets the batch seed after the identity
    is fixed. ``task_id`` (the alphabet) tells multi-head finetuning which head a task trains.
    """

    def __init__(self, dataset, alphabet: str, identity_seed: int, batch_seed: int, **task_kwargs):
        super().__init__(dataset, alphabet, seed=identity_seed, **task_kwargs)
        self.identity_seed = int(identity_seed)
        self.seed = int(batch_seed)  # only the batches depend on self.seed from here on
        self.task_id = alphabet


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# ----------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One (method, n, seed): meta-training, then evaluation on every test task."""

    method: str
    alphabets: int
    seed: int
    accuracy: float  # mean held-out accuracy over the test tasks
    task_accuracies: list[float]
    test_loss: float  # mean held-out loss
    adaptation_losses: list[float]  # mean over test tasks of the training-batch loss at steps 0..K (K = final)
    meta_history: list[dict] = field(default_factory=list)  # per meta-iteration: losses, warp objective, seconds
    seconds_meta_training: float = 0.0
    seconds_evaluation: float = 0.0

    @property
    def seconds_per_meta_iteration(self) -> float:
        return self.seconds_meta_training / len(self.meta_history) if self.meta_history else float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


class SweepResults:
    """Every :class:`RunResult` of a sweep, with the summaries the notebook shows."""

    def __init__(self, config: OmniglotConfig, runs: Sequence[RunResult], source: str = "omniglot"):
        self.config, self.runs, self.source = config, list(runs), source

    def get(self, method: str, alphabets: int, seed: int) -> RunResult:
        for run in self.runs:
            if (run.method, run.alphabets, run.seed) == (method, alphabets, seed):
                return run
        raise KeyError(f"no run for method={method!r}, n={alphabets}, seed={seed}")

    def accuracies(self, method: str, alphabets: int | None = None) -> np.ndarray:
        """Accuracy of ``method`` at n = ``alphabets`` (default: the largest), one value per seed."""
        n = self.config.largest_n if alphabets is None else alphabets
        return np.array([r.accuracy for r in self.runs if r.method == method and r.alphabets == n])

    def mean_std(self, method: str, alphabets: int | None = None) -> tuple[float, float]:
        values = self.accuracies(method, alphabets)
        if len(values) == 0:
            raise KeyError(f"no runs for {method!r} at n={alphabets}")
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def overall_mean(self, method: str) -> float:
        """Mean accuracy of ``method`` over every run of the sweep (all n and seeds)."""
        values = [r.accuracy for r in self.runs if r.method == method]
        if not values:
            raise KeyError(f"no runs for {method!r}")
        return float(np.mean(values))

    @property
    def methods(self) -> list[str]:
        return [m for m in self.config.methods if any(r.method == m for r in self.runs)]

    @property
    def alphabet_counts(self) -> list[int]:
        return sorted({r.alphabets for r in self.runs})

    def adaptation_curves(self, method: str, alphabets: int | None = None) -> np.ndarray:
        """``[seeds, K+1]`` mean training-loss curves of the test-task adaptations."""
        n = self.config.largest_n if alphabets is None else alphabets
        return np.array([r.adaptation_losses for r in self.runs if r.method == method and r.alphabets == n])

    def seconds_per_meta_iteration(self, method: str = "warp-leap") -> float:
        """Mean wall time of one meta-iteration of ``method`` over the whole sweep."""
        seconds = sum(r.seconds_meta_training for r in self.runs if r.method == method)
        count = sum(len(r.meta_history) for r in self.runs if r.method == method)
        return seconds / count if count else float("nan")

    def table(self) -> list[dict]:
        """One row per method: mean ± std over seeds of the held-out accuracy (%) at every n."""
        rows = []
        for method in self.methods:
            row: dict[str, Any] = {"method": method, "label": METHOD_LABELS[method]}
            for n in self.alphabet_counts:
                values = self.accuracies(method, n)
                if len(values):
                    mean, std = self.mean_std(method, n)
                    row[n] = (100 * mean, 100 * std, len(values))
            rows.append(row)
        return rows

    def format_table(self) -> str:
        """:meth:`table` as aligned text (accuracy % mean ± std over seeds)."""
        counts = self.alphabet_counts
        header = ["method"] + [f"n = {n}" for n in counts]
        lines = [header]
        for row in self.table():
            cells = [row["label"]]
            for n in counts:
                if n not in row:
                    cells.append("—")
                else:  # a std over one seed would be a meaningless "± 0.0"
                    cells.append(f"{row[n][0]:5.1f}" + (f" ± {row[n][1]:4.1f}" if row[n][2] > 1 else ""))
            lines.append(cells)
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        seeds = len(self.config.seeds)
        text.append(f"(held-out accuracy %, {'mean ± std over ' if seeds > 1 else ''}{seeds} seed{'s' if seeds > 1 else ''}; "
                    f"chance {100 / self.config.ways:.1f} %)")
        return "\n".join(text)

    def paper_table(self) -> list[dict]:
        """Our accuracy at the largest n next to the paper's at 25 alphabets (Flennerhag et al., 2020, Section 4.2)."""
        rows = []
        for method in self.methods:
            mean, std = self.mean_std(method)
            paper = PAPER_ACCURACY_25.get(method)
            rows.append({"method": method, "label": METHOD_LABELS[method], "ours": (100 * mean, 100 * std),
                         "ours_alphabets": self.config.largest_n, "paper": paper})
        return rows

    def format_paper_table(self) -> str:
        lines = [["method", f"this run (n = {self.config.largest_n}, {self.source})", "paper (n = 25, Omniglot)"]]
        for row in self.paper_table():
            paper = row["paper"]
            paper_text = "—" if paper is None else (f"{paper[0]:.1f}" + (f" ± {paper[1]:.1f}" if paper[1] else ""))
            ours = f"{row['ours'][0]:.1f}" + (f" ± {row['ours'][1]:.1f}" if len(self.config.seeds) > 1 else "")
            lines.append([row["label"], ours, paper_text])
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)

    def state(self) -> list[dict]:
        return [r.as_dict() for r in self.runs]


# ----------------------------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------------------------
class OmniglotExperiment:
    """Builds the tasks and methods of a :class:`OmniglotConfig` on a dataset and runs the sweep.

    ``dataset``: an :class:`~warpkit.data.omniglot.AlphabetDataset` (default: loaded per ``config.data_source``
    from ``root``); ``device``: where the images, networks and adaptation live; ``cache_dir``: the folder for the
    preprocessed arrays (default ``~/.cache/warpkit/arrays``, or ``$XDG_CACHE_HOME/warpkit/arrays``).
    """

    CHECKPOINT_KIND = "warpkit-omniglot-sweep"

    def __init__(self, config: OmniglotConfig, dataset=None, device: torch.device | str = "cpu", root=None,
                 cache_dir=None):
        self.config = config
        self.device = torch.device(device)
        if dataset is None:
            dataset = load_alphabet_dataset(config.data_source, root=root, sets=config.data_sets,
                                            seed=config.split_seed, cache_dir=cache_dir)
        self.dataset = dataset
        self.source = dataset.source
        eligible = eligible_alphabets(dataset, config.ways)
        needed = config.test_alphabets + config.largest_n
        if len(eligible) < needed:
            raise ValueError(
                f"OmniglotExperiment: the {dataset.source} data has {len(eligible)} alphabets with >= {config.ways} "
                f"characters ({eligible}), but {config.test_alphabets} test alphabets + up to {config.largest_n} "
                f"training alphabets need {needed}. Lower test_alphabets or the largest alphabet count, or use "
                "the full Omniglot sets."
            )
        split = split_alphabets(dataset, 1, config.ways, config.test_alphabets, config.split_seed)
        self.test_alphabets: tuple[str, ...] = split.test
        self.pool: tuple[str, ...] = tuple(a for a in eligible if a not in set(split.test))
        self.augmentation = OMNIGLOT_AUGMENTATION if config.augment else None
        self._images: dict[str, torch.Tensor] = {}
        self.model_factory = omniglot_net_factory(ways=config.ways, filters=config.filters)

    # -- alphabets and tasks -----------------------------------------------------------------------------
    def training_alphabets(self, seed: int, alphabets: int) -> tuple[str, ...]:
        """The first ``alphabets`` of the seed's shuffle of the non-test alphabets (nested as n grows)."""
        if not 1 <= alphabets <= len(self.pool):
            raise ValueError(
                f"the number of training alphabets must be between 1 and {len(self.pool)}, got {alphabets}")
        order = torch.randperm(len(self.pool), generator=torch.Generator().manual_seed(
            derive_seed(seed, "training-alphabets")))
        return tuple(self.pool[i] for i in order[:alphabets].tolist())

    def images(self, alphabet: str) -> torch.Tensor:
        if alphabet not in self._images:
            self._images[alphabet] = self.dataset.images(alphabet, device=self.device)
        return self._images[alphabet]

    def task(self, alphabet: str, identity_seed: int, batch_seed: int) -> AlphabetTaskInstance:
        return AlphabetTaskInstance(
            self.dataset, alphabet, identity_seed, batch_seed, ways=self.config.ways,
            n_train=self.config.train_images, batch_size=self.config.batch_size, augmentation=self.augmentation,
            device=self.device, images=self.images(alphabet),
        )

    def training_tasks(self, seed: int, alphabets: int, iteration: int) -> list[AlphabetTaskInstance]:
        """The meta-batch of meta-iteration ``iteration``: the training alphabets in a seeded shuffle, cycled up to
        ``meta_batch_size`` tasks; each alphabet's task identity is fixed by (seed, alphabet), its batches by
        (seed, n, iteration, slot). The same for every method."""
        names = self.training_alphabets(seed, alphabets)
        slots: list[str] = []
        cycle = 0
        while len(slots) < self.config.meta_batch_size:
            order = torch.randperm(len(names), generator=torch.Generator().manual_seed(
                derive_seed(seed, "meta-batch", alphabets, iteration, cycle)))
            slots += [names[i] for i in order.tolist()]
            cycle += 1
        tasks = []
        for slot, name in enumerate(slots[: self.config.meta_batch_size]):
            batch_seed = derive_seed(seed, "batches", alphabets, iteration, slot)
            identity = derive_seed(seed, "task", name) if self.config.fixed_training_tasks else batch_seed
            tasks.append(self.task(name, identity, batch_seed))
        return tasks

    def test_tasks(self) -> list[AlphabetTaskInstance]:
        """The fixed test tasks: ``test_repeats`` per test alphabet, the same for every n, seed and method."""
        base = self.config.split_seed
        return [self.task(alphabet, derive_seed(base, "test-task", alphabet, r),
                          derive_seed(base, "test-batches", alphabet, r))
                for alphabet in self.test_alphabets for r in range(self.config.test_repeats)]

    # -- methods -----------------------------------------------------------------------------------------
    def build(self, method: str, seed: int) -> MetaLearner:
        """The method's learner on a fresh network (the same random θ for every method at one seed)."""
        c = self.config
        init_lr = c.maml_init_lr if method in ("fomaml", "maml") and c.maml_init_lr is not None else c.init_lr
        learner = make_method(
            method, self.model_factory, loss_fn, warp=c.warp, seed=seed, warp_objective=c.warp_objective,
            maml_steps=c.maml_steps, leap_simplified=c.leap_simplified, inner_lr=c.inner_lr,
            inner_steps=c.inner_steps, warp_lr=c.warp_lr, warp_optimizer=c.warp_optimizer, init_lr=init_lr,
            init_optimizer=c.init_optimizer, replay_chunk_size=c.replay_chunk_size,
        )
        learner.model.to(self.device)
        return learner

    def parameter_counts(self) -> dict[str, int]:
        """θ and φ of the warped network and θ of the plain one."""
        warped, plain = self.model_factory(warp=self.config.warp), self.model_factory(warp="none")
        return {"theta": count_parameters(task_parameters(warped)), "phi": count_parameters(warp_parameters(warped)),
                "theta_plain": count_parameters(task_parameters(plain))}

    # -- meta-training and evaluation ----------------------------------------------------------------------
    def meta_train(self, learner: MetaLearner, method: str, seed: int, alphabets: int, start: int = 0,
                   history: list[dict] | None = None,
                   after_iteration: Callable[[int, list[dict]], None] | None = None) -> list[dict]:
        """Meta-iterations ``start`` … ``meta_iterations``−1 of one run; returns the per-iteration statistics.
        "no-pretraining" has nothing to learn and is returned untouched."""
        history = list(history or [])
        if method == "no-pretraining":
            return history
        for iteration in range(start, self.config.meta_iterations):
            started = time.perf_counter()
            stats = learner.meta_step(self.training_tasks(seed, alphabets, iteration))
            entry = stats.as_dict()
            entry["seconds"] = time.perf_counter() - started
            entry = {k: _json_float(v) if isinstance(v, float) else v for k, v in entry.items()}
            history.append(entry)
            if after_iteration is not None:
                after_iteration(iteration + 1, history)
        return history

    def evaluate(self, learner: MetaLearner, tasks: Sequence[AlphabetTask] | None = None) -> dict:
        """Adapt a fresh copy of the learner's θ_0 (φ frozen) to every test task for ``inner_steps`` steps and
        score it on the task's held-out images. The learner's model is never modified."""
        tasks = self.test_tasks() if tasks is None else list(tasks)
        phi = {n: p.detach() for n, p in warp_parameters(learner.model).items()}
        accuracies, losses, curves = [], [], []
        for task in tasks:
            trajectory = learner.adapt(task)
            scores = evaluate(learner.model, {**trajectory.final_params, **phi}, trajectory.final_buffers,
                              task.evaluation_batch(), loss_fn, accuracy, batchnorm="batch")
            accuracies.append(scores["metric"])
            losses.append(scores["loss"])
            curves.append(trajectory.losses + [trajectory.final_loss])
        return {"accuracy": float(np.mean(accuracies)), "task_accuracies": [float(a) for a in accuracies],
                "test_loss": float(np.mean(losses)), "adaptation_losses": np.mean(curves, axis=0).tolist()}

    # -- the sweep -------------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int, str]]:
        """Every (seed, n, method) of the sweep, in the order it runs."""
        return [(seed, n, method) for seed in self.config.seeds for n in self.config.alphabet_counts
                for method in self.config.methods]

    def _restore(self, checkpointer: Checkpointer) -> dict | None:
        state = checkpointer.restore()
        if state is None:
            return None
        if state.get("kind") != self.CHECKPOINT_KIND:
            raise CheckpointError(
                f"the checkpoint {checkpointer.path} is not an Omniglot sweep (kind {state.get('kind')!r}); it was "
                "left untouched. Use another checkpoint path."
            )
        saved, ours = state["config"], self.config.as_dict()
        if saved != ours:
            changed = sorted(k for k in set(saved) | set(ours) if saved.get(k) != ours.get(k))
            raise ValueError(
                f"the checkpoint {checkpointer.path} was written by a sweep with another configuration (differs in "
                f"{changed}); it was left untouched. Use another checkpoint path, or delete the file to start afresh."
            )
        if state.get("source") != self.source or list(state.get("test_alphabets", [])) != list(self.test_alphabets):
            raise ValueError(
                f"the checkpoint {checkpointer.path} was written on other data ({state.get('source')}, test alphabets "
                f"{state.get('test_alphabets')}); this run uses {self.source} with {list(self.test_alphabets)}. "
                "Use another checkpoint path."
            )
        return state

    def run(self, checkpoint: str | None = None, show_progress: bool = True,
            stop_after: int | None = None) -> SweepResults:
        """Run (or resume) the whole sweep. ``checkpoint``: a file path (None: no checkpointing).
        ``stop_after``: stop after that many meta-iterations in this call (to test interruption), returning the
        runs finished so far."""
        config = self.config
        checkpointer = Checkpointer(checkpoint, every=config.checkpoint_every)
        state = self._restore(checkpointer) if checkpoint else None
        finished: dict[tuple, RunResult] = {}
        current = None
        if state is not None:
            for entry in state["runs"]:
                run = RunResult(**entry)
                finished[(run.seed, run.alphabets, run.method)] = run
            current = state.get("current")

        def make_state(current_state: dict | None) -> dict:
            return {"kind": self.CHECKPOINT_KIND, "config": config.as_dict(), "source": self.source,
                    "test_alphabets": list(self.test_alphabets),
                    "runs": [finished[key].as_dict() for key in self.plan() if key in finished],
                    "current": current_state}

        plan = self.plan()
        iterations_of = lambda method: 0 if method == "no-pretraining" else config.meta_iterations  # noqa: E731
        total = sum(iterations_of(m) for _, _, m in plan)
        done = sum(iterations_of(m) for key in plan if key in finished for m in [key[2]])
        if current is not None:
            done += int(current["iteration"])
        bar = progress(total=total, initial=done, show=show_progress, desc="meta-training")
        counter = {"this_call": 0}
        tests = self.test_tasks()
        try:
            for seed, n, method in plan:
                if (seed, n, method) in finished:
                    continue
                bar.set_description(f"{METHOD_LABELS[method]}, n={n}, seed {seed}")
                learner = self.build(method, seed)
                start, history, seconds_before = 0, [], 0.0
                resuming = current is not None and (current["seed"], current["alphabets"], current["method"]) == (
                    seed, n, method)
                if resuming:
                    learner.load_state_dict(current["learner"])
                    start, history = int(current["iteration"]), list(current["history"])
                    seconds_before = float(current["seconds"])
                current = None
                if method == "no-pretraining" and n != config.alphabet_counts[0]:
                    # nothing is meta-learned, so its numbers do not depend on n: copy them from the first n
                    first = finished[(seed, config.alphabet_counts[0], method)]
                    finished[(seed, n, method)] = RunResult(**{**first.as_dict(), "alphabets": n})
                    continue
                started = time.perf_counter()

                def after_iteration(iteration: int, history: list[dict], _method=method, _seed=seed, _n=n,
                                    _learner=learner, _started=started, _before=seconds_before):
                    bar.update(1)
                    if show_progress and history:
                        first, last = history[-1]["task_loss_first"], history[-1]["task_loss_last"]
                        if first is not None and last is not None:
                            bar.set_postfix({"loss": f"{first:.2f}→{last:.2f}"})
                    counter["this_call"] += 1
                    in_progress = {"seed": _seed, "alphabets": _n, "method": _method, "iteration": iteration,
                                   "learner": _learner.state_dict(), "history": history,
                                   "seconds": _before + time.perf_counter() - _started}
                    stop = stop_after is not None and counter["this_call"] >= stop_after
                    checkpointer.maybe_save(sum(iterations_of(m) for key in finished for m in [key[2]]) + iteration,
                                            lambda: make_state(in_progress), final=stop)
                    if stop:
                        raise _StopSweep

                history = self.meta_train(learner, method, seed, n, start, history, after_iteration)
                seconds_training = seconds_before + time.perf_counter() - started
                evaluation_started = time.perf_counter()
                scores = self.evaluate(learner, tests)
                finished[(seed, n, method)] = RunResult(
                    method=method, alphabets=n, seed=seed, meta_history=history,
                    seconds_meta_training=seconds_training,
                    seconds_evaluation=time.perf_counter() - evaluation_started, **scores)
                checkpointer.maybe_save(0, lambda: make_state(None), final=True)
        except _StopSweep:
            pass
        finally:
            bar.close()
        return SweepResults(config, [finished[key] for key in plan if key in finished], self.source)

    # -- speed ---------------------------------------------------------------------------------------------
    def time_meta_iteration(self, seed: int | None = None, alphabets: int | None = None,
                            variants: Sequence[str] = ("batched", "one_point")) -> dict:
        """Time one Warp-Leap meta-iteration (adaptation of the meta-batch + replay of all its points) under
        several replay schemes, each from the same state on the same batches:

        * ``"batched"``: chunks of ``replay_chunk_size`` points, each replayed in one vmapped call, one φ-step
          per chunk (warpkit);
        * ``"one_point"``: one point at a time, one φ-step per point (the authors' code: chunk size 1);
        * ``"looped"``: the same chunks as ``"batched"`` but replayed by a Python loop over points (the same
          maths as ``"batched"``; isolates what vmap buys).

        Returns seconds (wall and CPU) of the whole meta-iteration and of its replay per variant, and the
        ratios ``replay_speedup_in_meta_iteration`` (one_point / batched, whole meta-iteration) and
        ``replay_speedup`` (the replay parts alone).
        """
        seed = self.config.seeds[0] if seed is None else seed
        n = self.config.largest_n if alphabets is None else alphabets
        learner = self.build("warp-leap", seed)
        initial = copy.deepcopy(learner.state_dict())
        schemes = {"batched": (self.config.replay_chunk_size, True), "one_point": (1, False),
                   "looped": (self.config.replay_chunk_size, False)}
        unknown = [v for v in variants if v not in schemes]
        if unknown:
            raise ValueError(f"time_meta_iteration(): unknown variant(s) {unknown}; choose from {list(schemes)}")
        timings: dict[str, dict] = {}
        for variant in variants:
            chunk, batched = schemes[variant]
            learner.load_state_dict(copy.deepcopy(initial))
            learner.replay_chunk_size, learner.batched_replay = chunk, batched
            tasks = self.training_tasks(seed, n, 0)
            wall, cpu = time.perf_counter(), time.process_time()
            stats = learner.meta_step(tasks)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            timings[variant] = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                                "seconds_adapt": stats.seconds_adapt, "seconds_replay": stats.seconds_replay,
                                "warp_steps": stats.warp_steps, "points": len(tasks) * self.config.inner_steps,
                                "chunk_size": chunk}
        result: dict[str, Any] = {"variants": timings, "tasks": self.config.meta_batch_size,
                                  "inner_steps": self.config.inner_steps, "device": str(self.device)}
        if "batched" in timings and "one_point" in timings:
            b, o = timings["batched"], timings["one_point"]
            result["replay_speedup_in_meta_iteration"] = o["seconds"] / b["seconds"]
            result["replay_speedup_in_meta_iteration_cpu"] = o["cpu_seconds"] / b["cpu_seconds"]
            result["replay_speedup"] = o["seconds_replay"] / b["seconds_replay"]
        if "batched" in timings and "looped" in timings:
            looped, batched = timings["looped"]["seconds_replay"], timings["batched"]["seconds_replay"]
            result["vmap_speedup_of_replay"] = looped / batched
        return result


class _StopSweep(Exception):
    """Raised inside :meth:`OmniglotExperiment.run` to stop after ``stop_after`` meta-iterations."""


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


__all__ = [
    "METHODS_COMPARED", "METHOD_LABELS", "PAPER_ACCURACY_25", "PAPER_WARP_LEAP_BY_ALPHABETS", "SIZES",
    "AlphabetTaskInstance", "OmniglotConfig", "OmniglotExperiment", "RunResult", "SweepResults", "checkpoint_path",
    "config_for", "data_banner", "describe_parameters", "differences_from_paper", "size_note", "loss_fn",
    "record_name", "warp_vs_plain_at_initialisation",
]
