r"""Notebook 03's experiment: Omniglot with one alphabet per task, Warp-Leap against the paper's baselines
(Flennerhag et al., 2020, Section 4.2).

The protocol
------------
:data:`PAPER_PROTOCOL` lists every setting of the paper's protocol with its source (the paper or the authors'
code); :data:`SIZES` are the runnable sizes, and ``full`` equals the protocol except :data:`FULL_DEPARTURES`
(``tests/test_omniglot_experiment.py`` compares every field). :func:`differences_from_paper` lists how any
configuration departs from the protocol table.

* **Tasks.** A task is one alphabet: ``ways`` (20) of its characters, labelled 0..ways−1, with ``train_images``
  (15) drawers per character to learn from and the other 20 − 15 = 5 held out. In the authors' code a training
  alphabet is *one fixed task* (characters, labels and drawer split drawn once per seed; only batch order and
  augmentation change): ``fixed_training_tasks=True``. With few training alphabets θ_0 can then memorise their
  labels; ``fixed_training_tasks=False`` **resamples** the task every time an alphabet is drawn (new characters,
  label order and drawer split). Multi-head finetuning keeps one head per alphabet, which needs stable labels,
  so with ``multi_head_fixed_tasks`` it always trains on the fixed tasks (its best case), whatever the
  meta-learners use.
* **Alphabets.** Only alphabets with at least ``ways`` characters take part. ``test_alphabets`` of them are
  chosen once, from ``split_seed``, and are the *same* for every n, seed and method (the original code shifts
  them with n: a bug); they can also be named (``OmniglotExperiment(..., test_alphabets=[...])``) or left out
  (``None``: bring your own test tasks). Of the rest, each seed shuffles them, keeps the last
  ``validation_alphabets`` for validation and trains on the first n (nested as n grows).
* **Adaptation** (identical for every method, at meta-training and at test time): ``inner_steps`` (100) steps of
  plain SGD at ``inner_lr`` (0.1) on batches of ``batch_size`` augmented training images, θ reset to the
  meta-learned θ_0 and BatchNorm statistics reset for every task; warp parameters φ frozen.
* **Meta-training.** ``meta_iterations`` iterations over meta-batches of ``meta_batch_size`` tasks (the n
  training alphabets in a seeded shuffle, cycled when n < meta-batch). Warp-Leap replays the buffered points
  with the schedule ``replay_chunk_size`` (points per φ-step; 1 = the paper's one step per point),
  ``replay_epochs`` and ``replay`` (see :class:`warpkit.engine.meta.MetaLearner`). MAML is the one
  exception to "the same inner loop everywhere" *during meta-training*: it backpropagates through only
  ``maml_steps`` (5) inner steps; FOMAML follows the authors' code: the gradient at the end of the full
  trajectory; both take their meta loss on the task's held-out split (``maml_meta_split``).
* **Model selection.** With ``validation_every`` > 0 every run is scored on its seed's validation tasks before
  meta-training, every ``validation_every`` meta-iterations and at the end; ``model_selection="best"`` tests the
  best validation point (the earliest on ties), ``"final"`` the last meta-parameters (what the authors' code
  tests). The same rule for every method.
* **Evaluation.** For every test alphabet (``test_repeats`` tasks each), adapt a fresh copy of the meta-learned
  θ_0 (with φ) for ``inner_steps`` steps, then score accuracy on the task's held-out images (not augmented).
  ``evaluation_batchnorm="running"`` (default, the authors' ``model.eval()``) uses the BatchNorm running
  statistics gathered during adaptation, so each held-out image is classified on its own (non-transductive);
  ``"transductive"`` normalises with the held-out batch's own statistics. A run's accuracy is the mean over test
  tasks; tables report mean ± std over seeds.
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

:meth:`OmniglotExperiment.train` trains one method for one seed and n and returns the learner.
:func:`compare_replay_schedules` meta-trains Warp-Leap from one state under several replay schedules and
records |Δφ| per iteration, φ-steps and held-out accuracy. :func:`reference_runs` makes the reference run
(``python -m warpkit reference 03 --size medium`` writes ``results/03_omniglot_medium.json``, see
:mod:`warpkit.kit.results`); the lesson draws it with :func:`read_reference`.

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
from warpkit.kit.results import paired_interval
from warpkit.kit.results import read_reference as read_reference_file
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


#: how held-out images are scored (OmniglotConfig.evaluation_batchnorm) → warpkit.adapt.evaluate's batchnorm
EVALUATION_MODES = {"running": "running", "transductive": "batch"}


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
    """Everything that defines a sweep (notebook 03 picks one of :data:`SIZES`). The defaults are the ``full``
    size; :data:`PAPER_PROTOCOL` says where every protocol setting comes from."""

    # tasks (warpkit.data.alphabet_tasks)
    ways: int = 20
    train_images: int = 15  # per character; the other 20 - train_images are held out
    batch_size: int = 128
    augment: bool = True
    fixed_training_tasks: bool = True  # one fixed task per training alphabet (authors' code); False: resampled
    multi_head_fixed_tasks: bool = True  # multi-head finetuning always trains on the fixed tasks (see module doc)
    test_alphabets: int = 10
    test_repeats: int = 1  # tasks per test alphabet (different characters / drawer splits)
    validation_alphabets: int = 11  # per seed, from the non-test alphabets; never used for training
    validation_repeats: int = 1  # tasks per validation alphabet
    validation_every: int = 20  # meta-iterations between validation points (0: no validation)
    model_selection: str = "best"  # "best": the best validation point; "final": the last meta-parameters
    alphabet_counts: tuple[int, ...] = (1, 3, 5, 10, 15, 20, 25)  # the numbers n of training alphabets
    seeds: tuple[int, ...] = tuple(range(10))
    split_seed: int = 0  # chooses the test alphabets (and test tasks), the same for every n and seed
    data_source: str = "omniglot"  # "omniglot" (must be found), "auto" (else glyphs) or "glyphs"
    data_sets: str | tuple[str, ...] = ("images_background", "images_evaluation")  # "auto": full sets, else subsets
    # the network (warpkit.models.omniglot_net)
    filters: int = 64
    warp: str = "conv3"
    # the inner loop: the same for every method
    inner_steps: int = 100
    inner_lr: float = 0.1
    # evaluation: "running" = BatchNorm running statistics (non-transductive, model.eval() as in the authors'
    # code); "transductive" = the evaluation batch's own statistics (every held-out image influences the others)
    evaluation_batchnorm: str = "running"
    # meta-training
    methods: tuple[str, ...] = METHODS_COMPARED
    meta_iterations: int = 1000
    meta_batch_size: int = 20
    warp_objective: str = "exact"
    warp_lr: float = 0.1
    warp_optimizer: str = "sgd"
    init_lr: float = 0.1
    init_optimizer: str = "sgd"
    maml_init_lr: float | None = 0.5  # meta learning rate of FOMAML and MAML (None: init_lr)
    maml_meta_split: str = "held-out"  # where FOMAML/MAML take their meta loss: "held-out" or "train"
    # the replay schedule of the warp objective (Algorithm 2): every replay_chunk_size buffered points give one
    # φ-step (1 = the paper's one step per point), each point is replayed replay_epochs times, and a chunk is
    # computed in one vmapped call or by a loop over its points (the same φ-gradient): replay = "batched",
    # "looped" or "auto" (by device: warpkit.engine.replay.resolve_replay)
    replay_chunk_size: int = 1
    replay_epochs: int = 1
    replay: str = "auto"
    maml_steps: int = 5
    leap_simplified: bool = False  # the Leap baseline: full Leap (loss term) as in the Leap code
    warp_leap_simplified: bool = True  # Warp-Leap's θ_0 learner: the WarpGrad code's simplified Leap
    leap_stabilizer: bool = True  # full Leap's stabiliser (Leap code default)
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
        need(self.replay_chunk_size >= 1 and self.replay_epochs >= 1 and self.checkpoint_every >= 1,
             "replay_chunk_size, replay_epochs and checkpoint_every must be >= 1")
        need(self.evaluation_batchnorm in EVALUATION_MODES,
             f"evaluation_batchnorm must be one of {EVALUATION_MODES}, got {self.evaluation_batchnorm!r}")
        need(self.model_selection in ("best", "final"),
             f"model_selection must be 'best' or 'final', got {self.model_selection!r}")
        need(self.maml_meta_split in ("train", "held-out"),
             f"maml_meta_split must be 'train' or 'held-out', got {self.maml_meta_split!r}")
        need(self.validation_alphabets >= 0 and self.validation_repeats >= 1 and self.validation_every >= 0,
             "validation_alphabets and validation_every must be >= 0, validation_repeats >= 1")
        need(self.model_selection == "final" or (self.validation_alphabets >= 1 and self.validation_every >= 1),
             "model_selection='best' needs validation alphabets and validation_every >= 1 (or use 'final')")
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


@dataclass(frozen=True)
class ProtocolSetting:
    """One setting of the paper's Omniglot protocol: its value and where it comes from."""

    value: Any
    source: str


_WG_CODE = "authors' WarpGrad code (src/omniglot)"
_LEAP_CODE = "authors' Leap code (Flennerhag et al., 2019)"
#: The WarpGrad paper's Omniglot protocol (Flennerhag et al., 2020, §4 and its appendix on the Omniglot
#: experiment), setting by setting, each with its source. Where the paper is silent the authors' code decides;
#: where paper and code disagree the paper wins and the source says so. Sizes are separate (:data:`SIZES`);
#: ``full`` must equal this table field by field except for :data:`FULL_DEPARTURES` (tested).
PAPER_PROTOCOL: dict[str, ProtocolSetting] = {
    "ways": ProtocolSetting(20, "§4 (Omniglot): 20-way tasks, one alphabet per task; alphabets with < 20 characters dropped"),
    "train_images": ProtocolSetting(15, f"{_WG_CODE}: 5 of 20 images per character held out (HOLD_OUT = 5)"),
    "batch_size": ProtocolSetting(128, f"{_WG_CODE}: task batch size 128 (the Leap code used 20)"),
    "augment": ProtocolSetting(True, f"{_WG_CODE}: random affine, rotation 0-360°, shift 0.2, scale 0.8-1.2"),
    "fixed_training_tasks": ProtocolSetting(
        True, f"{_WG_CODE}: each training alphabet's 20 characters and labels are drawn once"),
    "multi_head_fixed_tasks": ProtocolSetting(True, f"{_WG_CODE}: multi-head finetuning keeps one head per alphabet"),
    "test_alphabets": ProtocolSetting(10, f"§4 (Omniglot) and {_WG_CODE}: 10 held-out test alphabets"),
    "test_repeats": ProtocolSetting(1, f"{_WG_CODE}: one task per test alphabet"),
    "validation_alphabets": ProtocolSetting(
        11, f"{_WG_CODE}: the alphabets left after n training and 10 test ones (46 − 10 − 25 = 11 at n = 25)"),
    "validation_repeats": ProtocolSetting(1, f"{_WG_CODE}: one task per validation alphabet"),
    "validation_every": ProtocolSetting(20, f"{_WG_CODE}: validation every 20 meta-iterations (test_ival)"),
    "model_selection": ProtocolSetting(
        "final", f"{_WG_CODE}: the test uses the model saved at the last validation, i.e. the final one"),
    "alphabet_counts": ProtocolSetting((1, 3, 5, 10, 15, 20, 25), "§4 (Omniglot): n ∈ {1, 3, 5, 10, 15, 20, 25} alphabets"),
    "seeds": ProtocolSetting(tuple(range(10)), "§4 (Omniglot): mean ± std over 10 seeds"),
    "data_sets": ProtocolSetting(("images_background", "images_evaluation"),
                                 "§4 (Omniglot): all 50 Omniglot alphabets (Lake et al., 2015)"),
    "filters": ProtocolSetting(64, f"§4 (Omniglot) and {_WG_CODE}: 4 conv blocks of 64 filters"),
    "warp": ProtocolSetting("conv3", f"§4 (Omniglot) and {_WG_CODE}: one 3×3 conv warp (64 filters) after each block"),
    "inner_steps": ProtocolSetting(100, "§4 (Omniglot): 100 SGD steps per task"),
    "inner_lr": ProtocolSetting(0.1, f"{_WG_CODE}: inner SGD lr 0.1"),
    "evaluation_batchnorm": ProtocolSetting(
        "running", f"{_WG_CODE} and {_LEAP_CODE}: model.eval() on held-out images (running statistics)"),
    "methods": ProtocolSetting(METHODS_COMPARED, "§4 (Omniglot): Warp-Leap against Leap, Reptile, FOMAML, MAML, "
                                                 "finetuning and no pretraining (the paper's K-FAC comparison is "
                                                 "not implemented in warpkit)"),
    "meta_iterations": ProtocolSetting(1000, f"{_WG_CODE}: 1000 meta-training steps"),
    "meta_batch_size": ProtocolSetting(20, f"{_WG_CODE}: 20 tasks per meta-batch"),
    "warp_objective": ProtocolSetting("exact", "§3, Eq. 11 (the reported Warp-Leap; Eq. 12 is the first-order "
                                               "ablation)"),
    "warp_lr": ProtocolSetting(0.1, f"{_WG_CODE}: outer SGD lr 0.1"),
    "warp_optimizer": ProtocolSetting("sgd", f"{_WG_CODE}: outer optimiser SGD"),
    "init_lr": ProtocolSetting(0.1, f"{_WG_CODE}: outer SGD lr 0.1"),
    "init_optimizer": ProtocolSetting("sgd", f"{_WG_CODE}: outer optimiser SGD"),
    "maml_init_lr": ProtocolSetting(0.5, f"{_WG_CODE}: MAML and FOMAML run with outer lr 0.5"),
    "maml_meta_split": ProtocolSetting("held-out", f"{_WG_CODE}: MAML's meta loss on the task's held-out split"),
    "replay_chunk_size": ProtocolSetting(1, "Algorithm 2 as run by the authors' code: one φ-step per buffered point"),
    "replay_epochs": ProtocolSetting(1, "Algorithm 2 as run by the authors' code: one pass over the buffer"),
    "maml_steps": ProtocolSetting(5, "§4 (Omniglot): MAML meta-trains through 5 inner steps"),
    "leap_simplified": ProtocolSetting(False, f"§4 (Omniglot): the Leap baseline is the {_LEAP_CODE}, loss term kept"),
    "warp_leap_simplified": ProtocolSetting(True, f"{_WG_CODE}: Warp-Leap's θ_0 by Leap without the loss term"),
    "leap_stabilizer": ProtocolSetting(True, f"{_LEAP_CODE}: stabiliser on (its default)"),
}

#: settings of OmniglotConfig that are not part of the protocol: where data lives, how a run is computed
#: (replay batching gives the same gradient), checkpointing, and which fixed alphabets are chosen
NOT_PROTOCOL = ("split_seed", "data_source", "replay", "checkpoint_every")

#: deliberate departures of the ``full`` size from :data:`PAPER_PROTOCOL`, each with its reason
FULL_DEPARTURES: dict[str, str] = {
    "model_selection": "warpkit keeps the best validation point (the authors test the last one): longer "
                       "meta-training can then never make the reported numbers worse",
}


def paper_config(**overrides) -> OmniglotConfig:
    """The configuration :data:`PAPER_PROTOCOL` describes (plus ``overrides``)."""
    return OmniglotConfig(**{**{k: v.value for k, v in PAPER_PROTOCOL.items()}, **overrides})


#: ``fast``: CI (real Omniglot subsets if found, else the glyph stand-in; a couple of minutes on two CPU cores);
#: ``medium``: the real subsets (8 alphabets), 6 seeds (two worker processes run seeds in pairs, so 6 cost the wall
#: time of 5), about half an hour on a 2-core CPU: the reference run
#: ``results/03_omniglot_medium.json``; ``full``: the paper's protocol (:data:`PAPER_PROTOCOL`) except
#: :data:`FULL_DEPARTURES` (a GPU and days).
SIZES: dict[str, OmniglotConfig] = {
    "fast": OmniglotConfig(
        ways=10, batch_size=10, augment=False, fixed_training_tasks=False, test_alphabets=2, test_repeats=2,
        validation_alphabets=1, validation_repeats=1, validation_every=4, alphabet_counts=(3,), seeds=(0,),
        data_source="auto", data_sets="auto", filters=16, inner_steps=30, meta_iterations=8, meta_batch_size=3,
        warp_lr=0.003, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam", maml_init_lr=0.03,
        replay_chunk_size=1, checkpoint_every=2,
    ),
    "medium": OmniglotConfig(
        ways=20, batch_size=20, augment=False, fixed_training_tasks=False, test_alphabets=2, test_repeats=2,
        validation_alphabets=1, validation_repeats=2, validation_every=10, alphabet_counts=(4,),
        seeds=(0, 1, 2, 3, 4, 5), data_source="omniglot", data_sets="auto", filters=16, inner_steps=50,
        meta_iterations=20, meta_batch_size=3, warp_lr=0.003, warp_optimizer="adam", init_lr=0.03,
        init_optimizer="adam", maml_init_lr=0.01, replay_chunk_size=1, checkpoint_every=2,
    ),
    "full": paper_config(model_selection="best"),
    # gpu: the regression size for one GPU (python3 kit.py gpu-check; the time estimate is in warpkit.kit.gpu). It
    # keeps the settings its reference bands (results/gpu_bands.json) were made with: chunked batched replay,
    # transductive evaluation, fixed tasks, simplified Leap, MAML meta-loss on the training split, final model
    "gpu": OmniglotConfig(
        ways=20, batch_size=20, augment=False, test_alphabets=2, test_repeats=3, alphabet_counts=(1, 3, 5),
        seeds=(0,), data_source="auto", data_sets="auto", filters=32, inner_steps=20, meta_iterations=12,
        meta_batch_size=5, warp_lr=0.003, warp_optimizer="adam", init_lr=0.03, init_optimizer="adam",
        maml_init_lr=0.01, replay_chunk_size=20, replay="batched", checkpoint_every=5,
        evaluation_batchnorm="transductive", fixed_training_tasks=True, validation_alphabets=0,
        validation_every=0, model_selection="final", maml_meta_split="train", leap_simplified=True,
    ),
}


_READABLE = {
    "ways": "ways per task", "train_images": "training images per character", "batch_size": "batch size",
    "augment": "augmentation", "test_alphabets": "test alphabets", "test_repeats": "tasks per test alphabet",
    "validation_alphabets": "validation alphabets", "validation_repeats": "tasks per validation alphabet",
    "validation_every": "meta-iterations between validation points", "model_selection": "model selection",
    "alphabet_counts": "numbers of training alphabets n", "seeds": "seeds", "data_sets": "Omniglot sets",
    "filters": "filters per conv layer", "warp": "warp layers", "inner_steps": "SGD steps per task",
    "inner_lr": "SGD step size", "evaluation_batchnorm": "BatchNorm at evaluation", "methods": "methods",
    "meta_iterations": "meta-iterations", "meta_batch_size": "tasks per meta-batch",
    "warp_objective": "warp objective", "warp_lr": "warp learning rate", "warp_optimizer": "warp meta-optimiser",
    "init_lr": "initialisation learning rate", "init_optimizer": "initialisation meta-optimiser",
    "maml_init_lr": "FOMAML/MAML learning rate", "maml_meta_split": "FOMAML/MAML meta-loss split",
    "replay_chunk_size": "buffered points per φ-step", "replay_epochs": "φ-passes over the buffer",
    "maml_steps": "MAML inner steps", "leap_simplified": "simplified Leap baseline",
    "warp_leap_simplified": "simplified Leap in Warp-Leap", "leap_stabilizer": "Leap stabiliser",
    "fixed_training_tasks": "one fixed task per training alphabet",
    "multi_head_fixed_tasks": "multi-head finetuning on fixed tasks",
}


def differences_from_paper(config: OmniglotConfig) -> list[str]:
    """``"name: this run's value (paper: value)"`` for every setting of :data:`PAPER_PROTOCOL` where ``config``
    differs from the paper's protocol (seeds are compared by count); settings outside the protocol
    (:data:`NOT_PROTOCOL`) are not listed."""
    ours = config.as_dict()
    lines = []
    for key, setting in PAPER_PROTOCOL.items():
        label = _READABLE.get(key, key)
        paper = json.loads(json.dumps(setting.value))
        if key == "seeds":
            if len(ours[key]) != len(paper):
                lines.append(f"{label}: {len(ours[key])} (paper: {len(paper)})")
        elif ours[key] != paper:
            lines.append(f"{label}: {ours[key]} (paper: {paper})")
    return lines


def size_note(config: OmniglotConfig, size: str) -> str:
    """Markdown: how the run departs from the paper's protocol (:data:`PAPER_PROTOCOL`), or that it follows it;
    at ``full`` size the deliberate departures are given with their reasons."""
    changes = differences_from_paper(config)
    if not changes:
        return f"**Size `{size}`: the paper's protocol.**"
    text = f"**Size `{size}` departs from the paper's protocol in:** " + "; ".join(changes) + "."
    if size == "full":
        text += " Why: " + " ".join(f"{_READABLE.get(k, k)}: {why}." for k, why in FULL_DEPARTURES.items())
    return text


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
    validation_curve: list[list] = field(default_factory=list)  # [meta-iterations done, validation accuracy]
    selected_iteration: int | None = None  # the meta-iterations done at the point that was evaluated

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

    def by_seed(self, method: str, alphabets: int | None = None) -> dict[int, float]:
        """seed → accuracy of ``method`` at n = ``alphabets`` (default: the largest)."""
        n = self.config.largest_n if alphabets is None else alphabets
        return {r.seed: r.accuracy for r in self.runs if r.method == method and r.alphabets == n}

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
                 cache_dir=None, test_alphabets: Sequence[str] | str | None = "auto"):
        self.config = config
        self.device = torch.device(device)
        if dataset is None:
            dataset = load_alphabet_dataset(config.data_source, root=root, sets=config.data_sets,
                                            seed=config.split_seed, cache_dir=cache_dir)
        self.dataset = dataset
        self.source = dataset.source
        eligible = eligible_alphabets(dataset, config.ways)
        if test_alphabets == "auto":
            n_test = config.test_alphabets
        else:
            names = [] if test_alphabets is None else list(test_alphabets)
            unknown = [a for a in names if a not in eligible]
            if unknown:
                raise ValueError(f"OmniglotExperiment: test alphabet(s) {unknown} are not among the {dataset.source} "
                                 f"alphabets with >= {config.ways} characters: {eligible}")
            n_test = len(names)
        needed = n_test + config.validation_alphabets + config.largest_n
        if len(eligible) < needed:
            raise ValueError(
                f"OmniglotExperiment: the {dataset.source} data has {len(eligible)} alphabets with >= {config.ways} "
                f"characters ({eligible}), but {n_test} test + {config.validation_alphabets} validation + up to "
                f"{config.largest_n} training alphabets need {needed}. Lower test_alphabets, validation_alphabets "
                "or the largest alphabet count, or use the full Omniglot sets."
            )
        if test_alphabets == "auto":
            test = split_alphabets(dataset, 1, config.ways, config.test_alphabets, config.split_seed).test
        else:
            test = tuple(names)
        self.test_alphabets: tuple[str, ...] = tuple(test)
        self.pool: tuple[str, ...] = tuple(a for a in eligible if a not in set(self.test_alphabets))
        self.augmentation = OMNIGLOT_AUGMENTATION if config.augment else None
        self._images: dict[str, torch.Tensor] = {}
        self.model_factory = omniglot_net_factory(ways=config.ways, filters=config.filters)

    # -- alphabets and tasks -----------------------------------------------------------------------------
    def _pool_order(self, seed: int) -> list[str]:
        order = torch.randperm(len(self.pool), generator=torch.Generator().manual_seed(
            derive_seed(seed, "training-alphabets")))
        return [self.pool[i] for i in order.tolist()]

    def training_alphabets(self, seed: int, alphabets: int) -> tuple[str, ...]:
        """The first ``alphabets`` of the seed's shuffle of the non-test alphabets (nested as n grows); the last
        ``validation_alphabets`` of that shuffle are never among them."""
        available = len(self.pool) - self.config.validation_alphabets
        if not 1 <= alphabets <= available:
            raise ValueError(
                f"the number of training alphabets must be between 1 and {available}, got {alphabets}")
        return tuple(self._pool_order(seed)[:alphabets])

    def validation_alphabets(self, seed: int) -> tuple[str, ...]:
        """The seed's validation alphabets: the last ``validation_alphabets`` of its shuffle of the non-test
        alphabets, the same for every n (as in the authors' code, they are neither trained nor tested on)."""
        count = self.config.validation_alphabets
        return tuple(self._pool_order(seed)[len(self.pool) - count:]) if count else ()

    def validation_tasks(self, seed: int) -> list[AlphabetTaskInstance]:
        """``validation_repeats`` tasks per validation alphabet of ``seed`` (for model selection)."""
        return [self.task(alphabet, derive_seed(seed, "validation-task", alphabet, r),
                          derive_seed(seed, "validation-batches", alphabet, r))
                for alphabet in self.validation_alphabets(seed) for r in range(self.config.validation_repeats)]

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

    def training_tasks(self, seed: int, alphabets: int, iteration: int,
                       fixed: bool | None = None) -> list[AlphabetTaskInstance]:
        """The meta-batch of meta-iteration ``iteration``: the training alphabets in a seeded shuffle, cycled up to
        ``meta_batch_size`` tasks, batches drawn by (seed, n, iteration, slot). With fixed tasks (``fixed``, default
        ``config.fixed_training_tasks``) each alphabet's task identity (characters, labels, drawer split) is fixed
        by (seed, alphabet); resampled tasks draw new characters, label order and drawers every time. The same
        for every method given ``fixed`` (see :meth:`tasks_for`)."""
        fixed = self.config.fixed_training_tasks if fixed is None else fixed
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
            identity = derive_seed(seed, "task", name) if fixed else batch_seed
            tasks.append(self.task(name, identity, batch_seed))
        return tasks

    def tasks_for(self, method: str, seed: int, alphabets: int, iteration: int) -> list[AlphabetTaskInstance]:
        """The meta-batch ``method`` trains on: :meth:`training_tasks`, except that multi-head finetuning keeps
        fixed tasks when ``multi_head_fixed_tasks`` (one head per alphabet is meaningless when the labels of an
        alphabet are shuffled every iteration)."""
        if method == "multi-head" and self.config.multi_head_fixed_tasks:
            return self.training_tasks(seed, alphabets, iteration, fixed=True)
        return self.training_tasks(seed, alphabets, iteration)

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
            maml_steps=c.maml_steps, leap_simplified=c.leap_simplified, warp_leap_simplified=c.warp_leap_simplified,
            leap_stabilizer=c.leap_stabilizer, maml_meta_split=c.maml_meta_split, inner_lr=c.inner_lr,
            inner_steps=c.inner_steps, warp_lr=c.warp_lr, warp_optimizer=c.warp_optimizer, init_lr=init_lr,
            init_optimizer=c.init_optimizer, replay_chunk_size=c.replay_chunk_size, replay_epochs=c.replay_epochs,
            replay=c.replay,
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
                   after_iteration: Callable[[int, list[dict]], None] | None = None,
                   selection: dict | None = None) -> list[dict]:
        """Meta-iterations ``start`` … ``meta_iterations``−1 of one run; returns the per-iteration statistics
        (losses, |Δφ|, |Δθ₀|, seconds, and ``validation_accuracy`` where the learner was validated).

        With validation alphabets and ``validation_every`` > 0 the learner is scored on the seed's validation
        tasks before meta-training, every ``validation_every`` meta-iterations and at the end; ``selection`` (a
        dict, updated in place so that a checkpoint can carry it) keeps the validation curve and the best point.
        With ``model_selection="best"`` the learner ends at its best validation point (the earliest on ties), so
        that meta-training longer can never make the selected model worse on validation. "no-pretraining" has
        nothing to learn and is returned untouched."""
        history = list(history or [])
        selection = {} if selection is None else selection
        if method == "no-pretraining":
            return history
        c = self.config
        validating = c.validation_every > 0 and c.validation_alphabets > 0
        validation = self.validation_tasks(seed) if validating else []

        def validate(done: int):
            if not validating or any(point[0] == done for point in selection.get("curve", [])):
                return None
            score = self.evaluate(learner, validation)["accuracy"]
            selection.setdefault("curve", []).append([done, score])
            if "accuracy" not in selection or score > selection["accuracy"]:
                selection.update(iteration=done, accuracy=score, state=copy.deepcopy(learner.state_dict()))
            return score

        if start == 0:
            validate(0)
        for iteration in range(start, c.meta_iterations):
            started = time.perf_counter()
            stats = learner.meta_step(self.tasks_for(method, seed, alphabets, iteration))
            entry = stats.as_dict()
            entry["seconds"] = time.perf_counter() - started
            done = iteration + 1
            if validating and (done % c.validation_every == 0 or done == c.meta_iterations):
                entry["validation_accuracy"] = validate(done)
            entry = {k: _json_float(v) if isinstance(v, float) else v for k, v in entry.items()}
            history.append(entry)
            if after_iteration is not None:
                after_iteration(done, history)
        if c.model_selection == "best" and "state" in selection:
            learner.load_state_dict(copy.deepcopy(selection["state"]))
        return history

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

    # -- the sweep -------------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int, str]]:
        """Every (seed, n, method) of the sweep, in the order it runs."""
        return self.plan_of(self.config)

    @staticmethod
    def plan_of(config: OmniglotConfig) -> list[tuple[int, int, str]]:
        return [(seed, n, method) for seed in config.seeds for n in config.alphabet_counts
                for method in config.methods]

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
                start, history, seconds_before, selection = 0, [], 0.0, {}
                resuming = current is not None and (current["seed"], current["alphabets"], current["method"]) == (
                    seed, n, method)
                if resuming:
                    learner.load_state_dict(current["learner"])
                    start, history = int(current["iteration"]), list(current["history"])
                    seconds_before = float(current["seconds"])
                    selection = dict(current.get("selection") or {})
                current = None
                if method == "no-pretraining" and n != config.alphabet_counts[0]:
                    # nothing is meta-learned, so its numbers do not depend on n: copy them from the first n
                    first = finished[(seed, config.alphabet_counts[0], method)]
                    finished[(seed, n, method)] = RunResult(**{**first.as_dict(), "alphabets": n})
                    continue
                started = time.perf_counter()

                def after_iteration(iteration: int, history: list[dict], _method=method, _seed=seed, _n=n,
                                    _learner=learner, _started=started, _before=seconds_before,
                                    _selection=selection):
                    bar.update(1)
                    if show_progress and history:
                        first, last = history[-1]["task_loss_first"], history[-1]["task_loss_last"]
                        if first is not None and last is not None:
                            bar.set_postfix({"loss": f"{first:.2f}→{last:.2f}"})
                    counter["this_call"] += 1
                    in_progress = {"seed": _seed, "alphabets": _n, "method": _method, "iteration": iteration,
                                   "learner": _learner.state_dict(), "history": history,
                                   "seconds": _before + time.perf_counter() - _started, "selection": _selection}
                    stop = stop_after is not None and counter["this_call"] >= stop_after
                    checkpointer.maybe_save(sum(iterations_of(m) for key in finished for m in [key[2]]) + iteration,
                                            lambda: make_state(in_progress), final=stop)
                    if stop:
                        raise _StopSweep

                history = self.meta_train(learner, method, seed, n, start, history, after_iteration, selection)
                seconds_training = seconds_before + time.perf_counter() - started
                evaluation_started = time.perf_counter()
                scores = self.evaluate(learner, tests)
                finished[(seed, n, method)] = RunResult(
                    method=method, alphabets=n, seed=seed, meta_history=history,
                    validation_curve=[list(p) for p in selection.get("curve", [])],
                    selected_iteration=selection.get("iteration") if config.model_selection == "best" else
                    len(history),
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
            learner.replay_chunk_size, learner.replay = chunk, "batched" if batched else "looped"
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


# ----------------------------------------------------------------------------------------------------------
# the replay schedule, measured
# ----------------------------------------------------------------------------------------------------------
def compare_replay_schedules(experiment: OmniglotExperiment, schedules: dict[str, dict] | None = None,
                             seed: int | None = None, alphabets: int | None = None,
                             iterations: int | None = None) -> dict:
    """Meta-train Warp-Leap from the same initial state on the same tasks under several replay schedules and
    measure what each does to φ: |Δφ| and |Δθ₀| per meta-iteration, φ-steps taken, the distance φ ended from
    the identity warps, held-out accuracy (evaluated with the experiment's own protocol, final meta-parameters)
    and seconds. ``schedules``: name → MetaLearner replay settings (``replay_chunk_size``, ``replay_epochs``,
    ``replay``); default: the paper's one step per point against the config's own schedule and chunks
    of 25. Everything else (seed, tasks, batches, learning rates) is the same for every schedule."""
    c = experiment.config
    if schedules is None:
        schedules = {"one step per point (paper)": dict(replay_chunk_size=1, replay_epochs=1, replay="looped"),
                     "chunks of 25, batched": dict(replay_chunk_size=25, replay_epochs=1, replay="batched")}
    seed = c.seeds[0] if seed is None else seed
    n = c.largest_n if alphabets is None else alphabets
    iterations = c.meta_iterations if iterations is None else iterations
    result: dict[str, dict] = {}
    for name, settings in schedules.items():
        learner = experiment.build("warp-leap", seed)
        for key, value in settings.items():
            setattr(learner, key, value)
        start = {k: p.detach().clone() for k, p in warp_parameters(learner.model).items()}
        history, started = [], time.perf_counter()
        for iteration in range(iterations):
            history.append(learner.meta_step(experiment.training_tasks(seed, n, iteration)).as_dict())
        seconds = time.perf_counter() - started
        moved = math.sqrt(sum(float((p.detach() - start[k]).pow(2).sum())
                              for k, p in warp_parameters(learner.model).items()))
        result[name] = {"settings": dict(settings), "warp_change": [h["warp_change"] for h in history],
                        "init_change": [h["init_change"] for h in history],
                        "warp_steps": sum(h["warp_steps"] for h in history), "phi_distance": moved,
                        "accuracy": experiment.evaluate(learner)["accuracy"], "seconds": seconds}
    return {"schedules": result, "seed": seed, "alphabets": n, "iterations": iterations}


# ----------------------------------------------------------------------------------------------------------
# the reference run (results/03_omniglot_<size>.json, see warpkit.kit.results)
# ----------------------------------------------------------------------------------------------------------
REFERENCE_LESSON = "03_omniglot"


def reference_record(run: RunResult) -> dict:
    """What a reference file keeps of one run."""
    history = run.meta_history
    return {"method": run.method, "alphabets": run.alphabets, "seed": run.seed, "accuracy": run.accuracy,
            "task_accuracies": run.task_accuracies, "selected_iteration": run.selected_iteration,
            "validation_curve": run.validation_curve,
            "warp_change": [h.get("warp_change") for h in history],
            "init_change": [h.get("init_change") for h in history],
            "adaptation_losses": run.adaptation_losses,
            "seconds": round(run.seconds_meta_training + run.seconds_evaluation, 1)}


def _reference_seed(config: OmniglotConfig, seed: int, checkpoint: str | None) -> list[dict]:
    torch.set_num_threads(1)
    results = OmniglotExperiment(config.replace(seeds=(seed,))).run(checkpoint=checkpoint, show_progress=False)
    return [reference_record(run) for run in results.runs]


def reference_runs(size: str | OmniglotConfig = "medium", workers: int = 1,
                   checkpoints: bool = True) -> tuple[dict, list[dict]]:
    """Run the sweep of ``size`` one seed per task, over ``workers`` processes (one torch thread each), and
    return ``(config dict, runs)`` for :func:`warpkit.kit.results.write_reference`. Every seed's numbers depend on
    that seed alone (its networks, tasks and batches are seeded by it), so the split over processes changes
    nothing but the wall time. With ``checkpoints`` each seed resumes from ``checkpoints/`` if interrupted."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    config = SIZES[size] if isinstance(size, str) else size
    name = size if isinstance(size, str) else "custom"
    paths = {seed: str(REPO_ROOT / "checkpoints" / f"03_omniglot_{name}_reference_seed{seed}.pt") if checkpoints
             else None for seed in config.seeds}
    if workers <= 1:
        per_seed = [_reference_seed(config, seed, paths[seed]) for seed in config.seeds]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            per_seed = list(pool.map(_reference_seed, [config] * len(config.seeds), config.seeds,
                                     [paths[s] for s in config.seeds]))
    runs = [run for seed_runs in per_seed for run in seed_runs]
    order = {(s, n, m): i for i, (s, n, m) in enumerate(OmniglotExperiment.plan_of(config))}
    runs.sort(key=lambda r: order[(r["seed"], r["alphabets"], r["method"])])
    return config.as_dict(), runs


def read_reference(size: str = "medium"):
    """The committed reference run of lesson 03 at ``size`` (a :class:`warpkit.kit.results.Reference`), or None."""
    return read_reference_file(REFERENCE_LESSON, size)


def compare_methods(by_method: dict[str, dict[int, float]], focus: str = "warp-leap") -> dict:
    """Summary of one comparison (this run's or a reference's): per method mean, sample std and seeds; the
    methods ranked by mean; the best method other than ``focus`` and the paired 95 % interval of ``focus`` minus
    it over their shared seeds (None with fewer than two shared seeds)."""
    stats = {m: {"mean": float(np.mean(list(v.values()))),
                 "std": float(np.std(list(v.values()), ddof=1)) if len(v) > 1 else None, "seeds": len(v)}
             for m, v in by_method.items() if v}
    ranking = sorted(stats, key=lambda m: -stats[m]["mean"])
    others = [m for m in ranking if m != focus]
    best = others[0] if others else None
    interval = None
    if focus in by_method and best is not None and len(set(by_method[focus]) & set(by_method[best])) >= 2:
        interval = paired_interval(by_method[focus], by_method[best])
    return {"stats": stats, "ranking": ranking, "best_other": best, "interval": interval, "focus": focus}


def describe_comparison(summary: dict, what: str) -> str:
    """Markdown sentences generated from :func:`compare_methods`' numbers (nothing in them is fixed text about
    results): who ranks first in ``what`` (e.g. "this run"), the focus method's margin over the best other method
    and whether the paired 95 % interval excludes zero."""
    stats, ranking, focus, best = summary["stats"], summary["ranking"], summary["focus"], summary["best_other"]
    if focus not in stats or best is None:
        return f"In {what} there is nothing to compare."
    label = METHOD_LABELS
    seeds = stats[focus]["seeds"]
    text = (f"In {what} ({seeds} seed{'s' if seeds != 1 else ''}), **{label[ranking[0]]}** has the highest mean "
            f"held-out accuracy ({100 * stats[ranking[0]]['mean']:.1f} %); {label[focus]} ranks "
            f"{ranking.index(focus) + 1} of {len(ranking)} at {100 * stats[focus]['mean']:.1f} %. ")
    difference = 100 * (stats[focus]["mean"] - stats[best]["mean"])
    text += f"{label[focus]} minus {label[best]} (the best other method): {difference:+.1f} points"
    interval = summary["interval"]
    if interval is None:
        return text + " (too few seeds for an interval)."
    low, high = 100 * interval["low"], 100 * interval["high"]
    verdict = ("above zero: larger than its spread over these seeds (on the same test tasks)" if low > 0 else
               "below zero" if high < 0 else "containing zero: these seeds cannot tell the two apart")
    return text + f", paired 95 % interval over {interval['n']} seeds [{low:+.1f}, {high:+.1f}], {verdict}."


# ----------------------------------------------------------------------------------------------------------
# sentences generated from recorded numbers (the lesson states nothing about results that is not computed here)
# ----------------------------------------------------------------------------------------------------------
def evidence_note(size: str, reference) -> str:
    """Markdown: what this size of run can show, and where the evidence is (the reference run)."""
    where = ("the reference run in section f (`results/03_omniglot_medium.json`)" if reference is not None else
             "a reference run, which is not committed in this checkout (make it with "
             "`python -m warpkit reference 03 --size medium`)")
    if size == "fast":
        return ("**This `fast` run checks that everything works; the evidence is " + where + ".** A fast run "
                "meta-trains for a minute on one seed: its ranking of the methods moves from seed to seed.")
    if size == "medium":
        return "**This is the size of the reference run;** compare your numbers with " + where + "."
    return "**The `full` size is the paper's protocol** (departures listed above); compare with " + where + "."


def warp_motion(results: SweepResults, alphabets: int | None = None) -> dict[str, list[list[float | None]]]:
    """Per seed, the per-meta-iteration |Δφ| and |Δθ₀| of Warp-Leap and |Δθ₀| of Leap at n = ``alphabets``
    (default: the largest), for :func:`warpkit.viz.omniglot_results.plot_warp_motion`."""
    n = results.config.largest_n if alphabets is None else alphabets
    pick = lambda method, key: [[h.get(key) for h in r.meta_history] for r in results.runs  # noqa: E731
                                if r.method == method and r.alphabets == n]
    motion = {}
    if "warp-leap" in results.methods:
        motion["Warp-Leap |Δφ|"] = pick("warp-leap", "warp_change")
        motion["Warp-Leap |Δθ₀|"] = pick("warp-leap", "init_change")
    if "leap" in results.methods:
        motion["Leap |Δθ₀|"] = pick("leap", "init_change")
    return motion


def total_change(runs: list[list[float | None]]) -> float:
    """Mean over seeds of the summed per-iteration changes (0 when nothing was recorded)."""
    sums = [sum(v for v in run if v is not None) for run in runs if run]
    return float(np.mean(sums)) if sums else 0.0


def describe_motion(motion: dict[str, list[list[float | None]]]) -> str:
    """Markdown generated from :func:`warp_motion`: how far φ and θ₀ moved, per iteration and in total."""
    phi = motion.get("Warp-Leap |Δφ|") or []
    if not phi or not phi[0]:
        return "Warp-Leap did not meta-train in this run, so there is no |Δφ| to show."
    first = np.nanmean([run[0] for run in phi])
    last = np.nanmean([run[-1] for run in phi])
    text = (f"Over {len(phi[0])} meta-iterations Warp-Leap's φ moved {first:.3g} in the first and {last:.3g} in the "
            f"last (mean over {len(phi)} seed{'s' if len(phi) != 1 else ''}); the summed |Δφ| is "
            f"{total_change(phi):.3g}, so the warp {'did' if total_change(phi) > 0 else 'did not'} change.")
    warp_theta, leap_theta = motion.get("Warp-Leap |Δθ₀|"), motion.get("Leap |Δθ₀|")
    if warp_theta and leap_theta:
        text += (f" θ₀ moved {total_change(warp_theta):.3g} in total under Warp-Leap and "
                 f"{total_change(leap_theta):.3g} under Leap.")
    return text


def describe_reference(reference, size: str = "medium") -> str:
    """Markdown generated from the reference file: what made it, whether it matches the current size, and its
    comparison (ranking and paired interval of Warp-Leap against the best other method)."""
    if reference is None:
        return ("No reference run is committed in this checkout. Make one with "
                "`python -m warpkit reference 03 --size medium` (it writes `results/03_omniglot_medium.json`).")
    data = reference.data
    stale = reference.stale_fields(SIZES[size].as_dict())
    text = (f"The reference run was made by `{data['command']}` at commit `{data['commit'][:12]}` on "
            f"{data['created'][:10]} in {data['seconds'] / 60:.0f} min on a machine with "
            f"{data['machine'].get('cpus')} CPUs. ")
    if stale:
        text += (f"**It is stale:** the `{size}` size has changed since (in {', '.join(stale)}); its numbers are "
                 "not those of the current code. ")
    by_method = {m: {int(k): v for k, v in reference.accuracies(m).items()} for m in reference.methods}
    return text + describe_comparison(compare_methods(by_method), f"the reference run at n = {reference.largest_n}")


def describe_adaptation(curves: dict[str, np.ndarray]) -> str:
    """Markdown generated from mean adaptation loss curves: the loss after a quarter of the steps and at the end."""
    if not curves:
        return ""
    steps = len(next(iter(curves.values()))) - 1
    quarter = max(1, steps // 4)
    parts = [f"{METHOD_LABELS[m]} {c[quarter]:.2f} → {c[-1]:.2f}" for m, c in curves.items()]
    lowest = min(curves, key=lambda m: curves[m][-1])
    return (f"Training-batch loss after {quarter} and after {steps} steps (mean over test tasks and seeds): "
            + "; ".join(parts) + f". Lowest at the end in this run: {METHOD_LABELS[lowest]}. A lower training loss "
            "is faster learning of the task, which is not the same as higher held-out accuracy (section e).")


def describe_schedules(comparison: dict) -> str:
    """Markdown generated from :func:`compare_replay_schedules`."""
    schedules = comparison["schedules"]
    names = list(schedules)
    parts = [f"*{n}*: {schedules[n]['warp_steps']} φ-steps, summed |Δφ| {sum(schedules[n]['warp_change']):.3g}, "
             f"held-out accuracy {100 * schedules[n]['accuracy']:.1f} %, {schedules[n]['seconds']:.0f} s"
             for n in names]
    text = (f"Over {comparison['iterations']} meta-iterations (seed {comparison['seed']}, n = "
            f"{comparison['alphabets']}): " + "; ".join(parts) + ".")
    if len(names) >= 2:
        a, b = (sum(schedules[n]["warp_change"]) for n in names[:2])
        text += f" The first schedule moved φ {a / b:.1f}× as far as the second."
    return text + " One seed and a few iterations: this shows the mechanism, not which schedule scores better."


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
    "EVALUATION_MODES", "FULL_DEPARTURES", "NOT_PROTOCOL", "PAPER_PROTOCOL", "ProtocolSetting", "REFERENCE_LESSON",
    "compare_methods", "compare_replay_schedules", "describe_adaptation", "describe_comparison",
    "describe_motion", "describe_reference", "describe_schedules", "evidence_note", "paper_config", "total_change",
    "warp_motion", "read_reference", "reference_record", "reference_runs",
    "METHODS_COMPARED", "METHOD_LABELS", "PAPER_ACCURACY_25", "PAPER_WARP_LEAP_BY_ALPHABETS", "SIZES",
    "AlphabetTaskInstance", "OmniglotConfig", "OmniglotExperiment", "RunResult", "SweepResults", "checkpoint_path",
    "config_for", "data_banner", "describe_parameters", "differences_from_paper", "size_note", "loss_fn",
    "record_name", "warp_vs_plain_at_initialisation",
]
