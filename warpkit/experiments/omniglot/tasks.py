"""The Omniglot experiment's alphabets and tasks: which alphabets test, validate and train, and the tasks drawn
from them (Flennerhag et al., 2020, Section 4.2).

* **Tasks.** A task is one alphabet: ``ways`` of its characters, labelled 0..ways−1, with ``train_images``
  drawers per character to learn from and the other 20 − ``train_images`` held out. In the authors' code a
  training alphabet is *one fixed task* (characters, labels and drawer split drawn once per seed; only batch order
  and augmentation change): ``fixed_training_tasks=True``. With few training alphabets θ_0 can then memorise their
  labels; ``fixed_training_tasks=False`` **resamples** the task every time an alphabet is drawn (new characters,
  label order and drawer split). Multi-head finetuning keeps one head per alphabet, which needs stable labels, so
  with ``multi_head_fixed_tasks`` it always trains on the fixed tasks (its best case), whatever the meta-learners
  use.
* **Alphabets.** Only alphabets with at least ``ways`` characters take part. ``test_alphabets`` of them are
  chosen once, from ``split_seed``, and are the *same* for every n, seed and method (the original code shifts them
  with n: a bug); they can also be named (``test_alphabets=[...]``) or left out (``None``: bring your own test
  tasks). Of the rest, each seed shuffles them, keeps the last ``validation_alphabets`` for validation and trains
  on the first n (nested as n grows).
* **Meta-batches.** ``meta_batch_size`` tasks: the n training alphabets in a seeded shuffle, cycled when
  n < meta-batch; every batch is a deterministic function of (seed, n, meta-iteration, slot), so a resumed sweep
  sees the batches an uninterrupted one sees.
"""

from __future__ import annotations

from typing import Sequence

import torch

from warpkit.data.alphabet_tasks import (AlphabetTask, derive_seed, eligible_alphabets, load_alphabet_dataset,
                                         split_alphabets)
from warpkit.data.augment import OMNIGLOT_AUGMENTATION
from warpkit.experiments.omniglot.config import OmniglotConfig


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


class OmniglotTasks:
    """The alphabets of a :class:`~warpkit.experiments.omniglot.config.OmniglotConfig` on a dataset, and the test,
    validation and training tasks drawn from them (see the module docstring).

    ``dataset``: an :class:`~warpkit.data.omniglot.AlphabetDataset` (default: loaded per ``config.data_source``
    from ``root``); ``device``: where the images live; ``cache_dir``: the folder for the preprocessed arrays
    (default ``~/.cache/warpkit/arrays``, or ``$XDG_CACHE_HOME/warpkit/arrays``); ``test_alphabets``: ``"auto"``
    (chosen from ``split_seed``), names, or None (no test alphabets: bring your own test tasks).
    """

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
        self.test_alphabets: tuple[str, ...] = self._choose_test_alphabets(eligible, test_alphabets)
        self.pool: tuple[str, ...] = tuple(a for a in eligible if a not in set(self.test_alphabets))
        self.augmentation = OMNIGLOT_AUGMENTATION if config.augment else None
        self._images: dict[str, torch.Tensor] = {}

    def _choose_test_alphabets(self, eligible: list[str], test_alphabets) -> tuple[str, ...]:
        """The test alphabets asked for (``"auto"``, names or None), after checking that enough alphabets are left
        for validation and the largest number of training alphabets."""
        config, source = self.config, self.dataset.source
        names = [] if test_alphabets in ("auto", None) else list(test_alphabets)
        unknown = [a for a in names if a not in eligible]
        if unknown:
            raise ValueError(f"OmniglotExperiment: test alphabet(s) {unknown} are not among the {source} "
                             f"alphabets with >= {config.ways} characters: {eligible}")
        n_test = config.test_alphabets if test_alphabets == "auto" else len(names)
        needed = n_test + config.validation_alphabets + config.largest_n
        if len(eligible) < needed:
            raise ValueError(
                f"OmniglotExperiment: the {source} data has {len(eligible)} alphabets with >= {config.ways} "
                f"characters ({eligible}), but {n_test} test + {config.validation_alphabets} validation + up to "
                f"{config.largest_n} training alphabets need {needed}. Lower test_alphabets, validation_alphabets "
                "or the largest alphabet count, or use the full Omniglot sets."
            )
        if test_alphabets == "auto":
            return tuple(split_alphabets(self.dataset, 1, config.ways, config.test_alphabets, config.split_seed).test)
        return tuple(names)

    # -- alphabets -------------------------------------------------------------------------------------------
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

    # -- tasks -----------------------------------------------------------------------------------------------
    def images(self, alphabet: str) -> torch.Tensor:
        """The alphabet's images on the device, loaded once."""
        if alphabet not in self._images:
            self._images[alphabet] = self.dataset.images(alphabet, device=self.device)
        return self._images[alphabet]

    def task(self, alphabet: str, identity_seed: int, batch_seed: int) -> AlphabetTaskInstance:
        """One task of ``alphabet``: its identity from ``identity_seed``, its batches from ``batch_seed``."""
        return AlphabetTaskInstance(
            self.dataset, alphabet, identity_seed, batch_seed, ways=self.config.ways,
            n_train=self.config.train_images, batch_size=self.config.batch_size, augmentation=self.augmentation,
            device=self.device, images=self.images(alphabet),
        )

    def validation_tasks(self, seed: int) -> list[AlphabetTaskInstance]:
        """``validation_repeats`` tasks per validation alphabet of ``seed`` (for model selection)."""
        return [self.task(alphabet, derive_seed(seed, "validation-task", alphabet, r),
                          derive_seed(seed, "validation-batches", alphabet, r))
                for alphabet in self.validation_alphabets(seed) for r in range(self.config.validation_repeats)]

    def _meta_batch_alphabets(self, seed: int, alphabets: int, iteration: int) -> list[str]:
        """The alphabets of the meta-batch's slots: the training alphabets in seeded shuffles, one after another,
        cut at ``meta_batch_size``."""
        names = self.training_alphabets(seed, alphabets)
        slots: list[str] = []
        cycle = 0
        while len(slots) < self.config.meta_batch_size:
            order = torch.randperm(len(names), generator=torch.Generator().manual_seed(
                derive_seed(seed, "meta-batch", alphabets, iteration, cycle)))
            slots += [names[i] for i in order.tolist()]
            cycle += 1
        return slots[: self.config.meta_batch_size]

    def training_tasks(self, seed: int, alphabets: int, iteration: int,
                       fixed: bool | None = None) -> list[AlphabetTaskInstance]:
        """The meta-batch of meta-iteration ``iteration``: the training alphabets in a seeded shuffle, cycled up to
        ``meta_batch_size`` tasks, batches drawn by (seed, n, iteration, slot). With fixed tasks (``fixed``, default
        ``config.fixed_training_tasks``) each alphabet's task identity (characters, labels, drawer split) is fixed
        by (seed, alphabet); resampled tasks draw new characters, label order and drawers every time. The same
        for every method given ``fixed`` (see :meth:`tasks_for`)."""
        fixed = self.config.fixed_training_tasks if fixed is None else fixed
        tasks = []
        for slot, name in enumerate(self._meta_batch_alphabets(seed, alphabets, iteration)):
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


__all__ = ["AlphabetTaskInstance", "OmniglotTasks"]
