"""Resumable runs: fingerprint every setting that changes the results, checkpoint, resume, refuse a mismatch.

A long experiment (a meta-training loop, a sweep over methods and seeds) saves its state every few iterations and,
started again with the same checkpoint path, continues where it stopped. That is only safe when the saved state
was made by the same experiment: a checkpoint written with ``seed 0`` must not be resumed by a run asked for
``seed 1`` (it would report seed 0's numbers as seed 1's). :class:`ResumableRun` stores a *fingerprint* (every
setting that changes the results: the configuration, the seed, where the data come from) beside the state and
refuses, with :class:`SettingsMismatch` naming the differing fields, to resume from a checkpoint whose fingerprint
differs. Saving goes through :class:`~warpkit.kit.checkpoint.Checkpointer` (atomic; an unreadable checkpoint is
reported and never overwritten).

Adopting it in a loop takes three calls: build the run with the settings, ``state = run.restore()`` before the
loop (None on a fresh start), and ``run.maybe_save(progress, make_state)`` after each unit of work, with
``final=True`` after the last one. ``make_state`` returns whatever the loop needs to continue (learners' state
dicts, random generators, histories, finished results); ``maybe_save`` calls it only when it saves. A sweep over
methods and seeds passes everything that defines it, for instance ``fingerprint(config=config.as_dict(),
source=dataset.source, test_alphabets=test_alphabets)``, and keeps its finished runs in the state.
``experiments/maze.py`` (``train_agent``), ``experiments/continual.py`` (``meta_train``) and
``experiments/omniglot/sweep.py`` (``run_sweep``) are its users.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "run.pt"
>>> settings = fingerprint(seed=0, lr=0.1, data="sine")
>>> run = ResumableRun(path, kind="example", fingerprint=settings, every=2)
>>> run.restore() is None                      # nothing saved yet: start at iteration 0
True
>>> for iteration in range(3):
...     done = iteration + 1                   # ... one iteration of work ...
...     _ = run.maybe_save(done, lambda: {"iteration": done}, final=done == 3)
>>> ResumableRun(path, kind="example", fingerprint=settings).restore()
{'iteration': 3}
>>> ResumableRun(path, kind="example", fingerprint=fingerprint(seed=1, lr=0.1, data="sine")).restore()
Traceback (most recent call last):
...
warpkit.kit.sweep.SettingsMismatch: the checkpoint ... was written with other settings: seed (saved 0, now 1). ...
"""

from __future__ import annotations

import dataclasses
import os
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Callable, Mapping

import torch

from warpkit.kit.checkpoint import CheckpointError, Checkpointer


class SettingsMismatch(CheckpointError, ValueError):
    """A checkpoint was written by a run with other settings; the message names the fields that differ."""


def _plain(value: Any) -> Any:
    """A comparable, picklable form: dataclasses and mappings as dicts, sequences as lists, paths and devices
    as strings, numpy and torch scalars as Python numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in sorted(value.items(), key=lambda pair: str(pair[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (PurePath, torch.device, Enum)):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def fingerprint(**settings: Any) -> dict[str, Any]:
    """The settings of a run in plain form (see :func:`_plain`), keyed by name: what :class:`ResumableRun`
    stores and compares. Pass every setting that changes the results, the seed and the data source included.

    >>> fingerprint(seed=0, interval=(-5.0, 5.0))
    {'interval': [-5.0, 5.0], 'seed': 0}
    """
    return _plain(settings)


def differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The fields in which two fingerprints differ, as ``name (saved X, now Y)``; nested dicts are compared
    field by field and named with dots (``config.warp_lr``).

    >>> differences({"seed": 0, "config": {"lr": 0.1, "steps": 5}}, {"seed": 1, "config": {"lr": 0.2, "steps": 5}})
    ['config.lr (saved 0.1, now 0.2)', 'seed (saved 0, now 1)']
    """
    found = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key} (saved {old!r}, now {new!r})")
    return found


class ResumableRun:
    """Checkpoint and resume one run, refusing a checkpoint made with other settings.

    ``checkpoint``: a path, a :class:`~warpkit.kit.checkpoint.Checkpointer` or None (no checkpointing: every
    call is a no-op and :meth:`restore` returns None). ``kind`` names what the file holds (a maze run, a continual
    meta-training, an Omniglot sweep), so one is never loaded as another. ``fingerprint``: see :func:`fingerprint`.
    ``every``: save every that many units of progress (only used when ``checkpoint`` is a path).
    """

    def __init__(self, checkpoint: Checkpointer | str | os.PathLike | None, kind: str,
                 fingerprint: Mapping[str, Any], every: int = 10):
        self.checkpointer = checkpoint if isinstance(checkpoint, Checkpointer) else Checkpointer(checkpoint, every)
        self.kind = kind
        self.fingerprint = _plain(dict(fingerprint))

    @property
    def path(self) -> Path | None:
        return self.checkpointer.path

    def restore(self) -> Any | None:
        """The state saved by :meth:`maybe_save`, or None when there is no checkpoint. Raises
        :class:`~warpkit.kit.checkpoint.CheckpointError` for a file that is not this kind of run and
        :class:`SettingsMismatch` for one written with other settings; the file is left untouched."""
        saved = self.checkpointer.restore()
        if saved is None:
            return None
        if saved.get("kind") != self.kind:
            raise CheckpointError(
                f"the checkpoint {self.path} is not a {self.kind} checkpoint (it holds {saved.get('kind')!r}); it was "
                "left untouched. Use another checkpoint path, or delete the file to start afresh.")
        changed = differences(saved.get("fingerprint", {}), self.fingerprint)
        if changed:
            raise SettingsMismatch(
                f"the checkpoint {self.path} was written with other settings: {'; '.join(changed)}. It was left "
                "untouched; use another checkpoint path, or delete the file to start afresh with these settings.")
        return saved["state"]

    def maybe_save(self, progress: int, make_state: Callable[[], Any], final: bool = False) -> Path | None:
        """Save ``make_state()`` with the fingerprint when ``progress`` is a multiple of ``every`` (or ``final``)."""
        return self.checkpointer.maybe_save(
            progress, lambda: {"kind": self.kind, "fingerprint": self.fingerprint, "state": make_state()}, final)


__all__ = ["ResumableRun", "SettingsMismatch", "differences", "fingerprint"]
