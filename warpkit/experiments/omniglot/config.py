"""The configuration of the Omniglot sweep and its runnable sizes.

:class:`OmniglotConfig` holds everything that defines a sweep (tasks, network, inner loop, meta-training,
evaluation, replay schedule); its defaults are the ``full`` size. :data:`SIZES` are the sizes lesson 04 runs
(``fast``, ``medium``, ``full``, ``gpu``); :func:`differences_from_paper` lists how any configuration departs
from the paper's protocol (:data:`warpkit.experiments.omniglot.paper.PAPER_PROTOCOL`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from warpkit.experiments.omniglot.paper import METHOD_LABELS, METHODS_COMPARED, PAPER_PROTOCOL, READABLE
from warpkit.kit.notebook import REPO_ROOT
from warpkit.models.omniglot_net import OMNIGLOT_WARPS

#: how held-out images are scored (OmniglotConfig.evaluation_batchnorm) → warpkit.adapt.evaluate's batchnorm
EVALUATION_MODES = {"running": "running", "transductive": "batch"}


@dataclass(frozen=True)
class OmniglotConfig:
    """Everything that defines a sweep (lesson 04 picks one of :data:`SIZES`). The defaults are the ``full``
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
    # "looped" or "auto" (by chunk size, device and network size: warpkit.engine.replay.resolve_replay)
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
        init_optimizer="adam", maml_init_lr=0.01, replay_chunk_size=1, replay="looped", checkpoint_every=2,
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


def differences_from_paper(config: OmniglotConfig) -> list[str]:
    """``"name: this run's value (paper: value)"`` for every setting of :data:`PAPER_PROTOCOL` where ``config``
    differs from the paper's protocol (seeds are compared by count); settings outside the protocol
    (:data:`NOT_PROTOCOL`) are not listed."""
    ours = config.as_dict()
    lines = []
    for key, setting in PAPER_PROTOCOL.items():
        label = READABLE.get(key, key)
        paper = json.loads(json.dumps(setting.value))
        if key == "seeds":
            if len(ours[key]) != len(paper):
                lines.append(f"{label}: {len(ours[key])} (paper: {len(paper)})")
        elif ours[key] != paper:
            lines.append(f"{label}: {ours[key]} (paper: {paper})")
    return lines


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
    ``<repo>/checkpoints/04_omniglot_<size>_seed<seed>.pt`` for ``medium`` and ``full`` (None for ``fast``, whose
    whole run takes a few minutes); anything else is taken as a file path."""
    if not setting:
        return None
    if setting == "auto":
        return None if size == "fast" else str(REPO_ROOT / "checkpoints" / f"04_omniglot_{size}_seed{seed}.pt")
    return setting


__all__ = ["EVALUATION_MODES", "SIZES", "OmniglotConfig", "checkpoint_path", "config_for", "differences_from_paper",
           "paper_config"]
