"""Omniglot's multi-shot protocol (Flennerhag et al., 2020, Section 4.2): one alphabet = one task.

A task takes ``ways`` (20) characters of one alphabet, labels them 0..ways−1 in a random order, and splits the
20 drawers of the task into ``n_train`` (15) training and 20 − ``n_train`` (5) held-out drawers, the same split
for every character of the task. The inner loop trains on augmented batches of the training images (random
affine: rotation U[0°, 360°), shift ±0.2, scale U[0.8, 1.2]); the learner is scored on the held-out images,
unaugmented. Everything is a deterministic function of the task's seed:

* ``sample_batch(step)`` is the same batch whenever it is asked for with the same ``step``: the training
  images are visited in shuffled passes (epochs, as a shuffling DataLoader does), batch ``step`` covers
  positions ``[step·B, (step+1)·B)`` of that endless sequence, so every image is seen equally often;
* ``sample_meta_batches(step)`` returns two further, independent draws (B images without replacement each), and
  a fresh pair on every call for the same step (so replaying a point twice never reuses batches).

Splitting alphabets (:func:`split_alphabets`): only alphabets with at least ``ways`` characters take part; the
test alphabets are chosen ONCE from the seed and do not depend on the number n of training alphabets (the
original code shifts them with n: a bug); meta-training alphabets are the first n of the rest in a seeded
shuffle (so the sets for growing n are nested), validation the remaining ones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from warpkit.data.augment import OMNIGLOT_AUGMENTATION, RandomAffine
from warpkit.data.glyphs import load_glyphs
from warpkit.data.omniglot import AlphabetDataset, OmniglotNotFoundError, TooFewCharactersError, load_omniglot


def derive_seed(*parts) -> int:
    """A 63-bit seed from integers and strings (order matters), through NumPy's SeedSequence."""
    entropy = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


class AlphabetTask:
    """A ``ways``-way classification task on one alphabet; implements :class:`warpkit.engine.tasks.Task`.

    Attributes: ``alphabet``, ``ways``, ``characters`` (dataset indices; label i is ``characters[i]``),
    ``train_drawers``/``test_drawers`` (0-based), ``train_inputs`` ``[ways·n_train, 1, S, S]`` with
    ``train_targets``, ``test_inputs``/``test_targets`` (all float32 / int64 on ``device``).
    """

    def __init__(self, dataset: AlphabetDataset, alphabet: str, ways: int = 20, n_train: int = 15,
                 batch_size: int = 20, augmentation: RandomAffine | None = OMNIGLOT_AUGMENTATION, seed: int = 0,
                 device: torch.device | str = "cpu", images: torch.Tensor | None = None):
        if not isinstance(ways, int) or ways < 2:
            raise ValueError(f"AlphabetTask: ways must be an int >= 2, got {ways!r}")
        dataset.require_ways(alphabet, ways)
        n_drawers = dataset.n_drawers
        if not isinstance(n_train, int) or not 1 <= n_train < n_drawers:
            raise ValueError(f"AlphabetTask: n_train must be between 1 and {n_drawers - 1} (there are {n_drawers} "
                             f"drawers; the rest are held out), got {n_train!r}")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= ways * n_train:
            raise ValueError(f"AlphabetTask: batch_size must be between 1 and ways·n_train = {ways * n_train}, "
                             f"got {batch_size!r}")
        self.alphabet, self.ways, self.n_train, self.batch_size = alphabet, ways, n_train, batch_size
        self.augmentation = None if augmentation is not None and augmentation.is_identity else augmentation
        self.seed, self.device = int(seed), torch.device(device)
        self.source = dataset.source

        choose = _generator(self.seed, "characters", alphabet)
        self.characters = torch.randperm(dataset.num_characters(alphabet), generator=choose)[:ways]
        drawers = torch.randperm(n_drawers, generator=_generator(self.seed, "drawers", alphabet))
        self.train_drawers, self.test_drawers = drawers[:n_train].sort().values, drawers[n_train:].sort().values

        if images is None:
            images = dataset.images(alphabet, device=self.device)
        # stacked slices / index_select rather than fancy indexing: the same result, but below torch's
        # parallel-copy threshold, which on a busy 2-core machine is ~30x cheaper
        chosen = torch.stack([images[c] for c in self.characters.tolist()]).to(self.device)  # [ways, 20, 1, S, S]
        labels = torch.arange(ways, device=self.device)
        self.train_inputs = chosen.index_select(1, self.train_drawers.to(self.device)).flatten(0, 1)
        self.train_targets = labels.repeat_interleave(n_train)
        self.test_inputs = chosen.index_select(1, self.test_drawers.to(self.device)).flatten(0, 1)
        self.test_targets = labels.repeat_interleave(n_drawers - n_train)
        self._meta_calls: dict[int, int] = {}

    def __repr__(self) -> str:
        return (f"AlphabetTask({self.source}:{self.alphabet!r}, {self.ways}-way, {self.n_train}/"
                f"{len(self.test_drawers)} images per character, batch {self.batch_size}, seed {self.seed})")

    # -- batches
    def _augment(self, inputs: torch.Tensor, *parts) -> torch.Tensor:
        if self.augmentation is None:
            return inputs
        return self.augmentation(inputs, _generator(self.seed, *parts))

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices into the training set of batch ``step``: positions ``[step·B, (step+1)·B)`` of the sequence of
        shuffled passes over the training set."""
        if step < 0:
            raise ValueError(f"AlphabetTask: step must be >= 0, got {step}")
        size = len(self.train_inputs)
        start = step * self.batch_size
        pieces, position = [], start
        while position < start + self.batch_size:
            epoch, offset = divmod(position, size)
            order = torch.randperm(size, generator=_generator(self.seed, "epoch", epoch))
            take = min(size - offset, start + self.batch_size - position)
            pieces.append(order[offset:offset + take])
            position += take
        return torch.cat(pieces)

    def sample_batch(self, step: int):
        """The inner loop's batch for step ``step`` (augmented), ``(inputs [B, 1, S, S], targets [B])``."""
        index = self.batch_indices(step).to(self.device)
        inputs, targets = self.train_inputs.index_select(0, index), self.train_targets.index_select(0, index)
        return self._augment(inputs, "augment", step), targets

    def sample_meta_batches(self, step: int):
        """Two independent augmented training batches for replaying the point before step ``step``."""
        call = self._meta_calls.get(step, 0)
        self._meta_calls[step] = call + 1
        batches = []
        for which in (0, 1):
            draw = _generator(self.seed, "meta", step, call, which)
            index = torch.randperm(len(self.train_inputs), generator=draw)[: self.batch_size].to(self.device)
            inputs = self.train_inputs.index_select(0, index)
            batches.append((self._augment(inputs, "meta-augment", step, call, which),
                            self.train_targets.index_select(0, index)))
        return batches[0], batches[1]

    def evaluation_batch(self):
        """The held-out images of the task (not augmented) and their labels."""
        return self.test_inputs, self.test_targets


# ----------------------------------------------------------------------------------------------- the splits
@dataclass(frozen=True)
class AlphabetSplit:
    """Which alphabets meta-train, validate and test."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    ways: int
    seed: int

    def as_dict(self) -> dict:
        return {"train": list(self.train), "validation": list(self.validation), "test": list(self.test),
                "ways": self.ways, "seed": self.seed}


def eligible_alphabets(dataset: AlphabetDataset, ways: int = 20) -> list[str]:
    """Alphabets with at least ``ways`` characters, sorted."""
    return [a for a in dataset.alphabets if dataset.num_characters(a) >= ways]


def split_alphabets(dataset: AlphabetDataset, n_train: int, ways: int = 20, n_test: int = 10,
                    seed: int = 0) -> AlphabetSplit:
    """The protocol's split (see the module docstring). ``n_test`` = 10 as in the paper; the small CI subsets
    (7 alphabets with ≥ 20 characters) need a smaller one, e.g. 2."""
    eligible = eligible_alphabets(dataset, ways)
    if not isinstance(n_test, int) or not 1 <= n_test < len(eligible):
        raise ValueError(
            f"split_alphabets(): {len(eligible)} {dataset.source} alphabets have >= {ways} characters "
            f"({eligible}); n_test={n_test!r} must be between 1 and {len(eligible) - 1} so that some are left for "
            "meta-training. Pass a smaller n_test (e.g. n_test=2 for the small Omniglot subsets)."
        )
    order = [eligible[i] for i in torch.randperm(len(eligible), generator=_generator(seed, "alphabet-split"))]
    test, rest = order[:n_test], order[n_test:]
    rest = [rest[i] for i in torch.randperm(len(rest), generator=_generator(seed, "train-order"))]
    if not isinstance(n_train, int) or not 1 <= n_train <= len(rest):
        raise ValueError(
            f"split_alphabets(): n_train={n_train!r} but only {len(rest)} alphabets remain after the {n_test} test "
            f"alphabets (of {len(eligible)} with >= {ways} characters); use 1 <= n_train <= {len(rest)}."
        )
    return AlphabetSplit(tuple(rest[:n_train]), tuple(rest[n_train:]), tuple(test), ways, seed)


# ---------------------------------------------------------------------------------------------- the sampler
class AlphabetTaskSampler:
    """Makes :class:`AlphabetTask` s from a list of alphabets, with the alphabets' images kept on ``device``.

    ``sample_tasks(iteration, count)`` gives a meta-batch: the alphabets in a seeded shuffle, cycled when
    ``count`` exceeds their number (so each appears ⌊count/n⌋ or ⌈count/n⌉ times), each task with its own seed
    derived from ``(seed, iteration, slot)``.
    """

    def __init__(self, dataset: AlphabetDataset, alphabets: Sequence[str], ways: int = 20, n_train: int = 15,
                 batch_size: int = 20, augmentation: RandomAffine | None = OMNIGLOT_AUGMENTATION,
                 device: torch.device | str = "cpu", seed: int = 0):
        self.alphabets = list(alphabets)
        if not self.alphabets:
            raise ValueError("AlphabetTaskSampler: no alphabets given")
        for alphabet in self.alphabets:
            dataset.require_ways(alphabet, ways)
        self.dataset, self.ways, self.n_train, self.batch_size = dataset, ways, n_train, batch_size
        self.augmentation, self.device, self.seed = augmentation, torch.device(device), int(seed)
        self._images: dict[str, torch.Tensor] = {}

    def images(self, alphabet: str) -> torch.Tensor:
        if alphabet not in self._images:
            self._images[alphabet] = self.dataset.images(alphabet, device=self.device)
        return self._images[alphabet]

    def task(self, alphabet: str, seed: int) -> AlphabetTask:
        return AlphabetTask(self.dataset, alphabet, self.ways, self.n_train, self.batch_size, self.augmentation,
                            seed, self.device, images=self.images(alphabet))

    def sample_tasks(self, iteration: int, count: int) -> list[AlphabetTask]:
        order = torch.randperm(len(self.alphabets), generator=_generator(self.seed, "meta-batch", iteration))
        return [self.task(self.alphabets[order[slot % len(order)]], derive_seed(self.seed, iteration, slot))
                for slot in range(count)]

    def evaluation_tasks(self, repeats: int = 1, seed: int | None = None) -> list[AlphabetTask]:
        """One task per alphabet (``repeats`` each, different characters/drawers), in alphabet order."""
        base = self.seed if seed is None else seed
        return [self.task(alphabet, derive_seed(base, "evaluation", alphabet, r))
                for alphabet in self.alphabets for r in range(repeats)]


# ----------------------------------------------------------------------------------- choosing the data source
def load_alphabet_dataset(source: str = "auto", root=None, sets="auto", image_size: int = 28, seed: int = 0,
                          cache_dir=None, download: bool = False, show_progress: bool = False) -> AlphabetDataset:
    """Omniglot when it is found (or ``source="omniglot"``, which then must be found), else the glyph stand-in
    (``source="glyphs"`` forces it). Never mixes the two; ``dataset.source`` says which one came back."""
    if source not in ("auto", "omniglot", "glyphs"):
        raise ValueError(f"load_alphabet_dataset(): source must be 'auto', 'omniglot' or 'glyphs', got {source!r}")
    if source in ("auto", "omniglot"):
        try:
            return load_omniglot(root, sets, image_size, download, cache_dir, show_progress=show_progress)
        except OmniglotNotFoundError:
            if source == "omniglot":
                raise
    return load_glyphs(seed=seed, image_size=image_size, cache_dir=cache_dir, show_progress=show_progress)


__all__ = ["AlphabetTask", "AlphabetSplit", "AlphabetTaskSampler", "TooFewCharactersError", "derive_seed",
           "eligible_alphabets", "load_alphabet_dataset", "split_alphabets"]
