"""Checkpoints that survive interruptions and never destroy what the user had.

* Writes are atomic: the state goes to a temporary file in the same folder, then ``os.replace`` renames it over
  the checkpoint, so an interrupted save leaves the previous checkpoint intact.
* Loading a file that exists but cannot be read raises :class:`CheckpointError` naming the file and how to
  proceed; a :class:`Checkpointer` that met such a file refuses to save over it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (anything ``torch.save`` takes) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The state saved at ``path``, or None when there is no file. A file that exists but cannot be read raises
    :class:`CheckpointError` (the file is left untouched)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(
            f"the checkpoint {path} exists but cannot be read ({type(error).__name__}: {error}). "
            "It was left untouched. Move or delete it to start afresh, or point the run at another checkpoint path."
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(
            f"the checkpoint {path} holds a {type(state).__name__}, not a warpkit state dict. It was left untouched; "
            "move or delete it to start afresh."
        )
    return state


class Checkpointer:
    """Periodic save and resume for a training loop.

    >>> checkpointer = Checkpointer("checkpoints/omniglot.pt", every=10)
    >>> state = checkpointer.restore()          # None on a fresh start, else the saved dict
    >>> for iteration in range(start, total):
    ...     ...
    ...     checkpointer.maybe_save(iteration + 1, lambda: {"iteration": iteration + 1, ...})

    ``path=None`` disables checkpointing (every call is a no-op).
    """

    def __init__(self, path: str | os.PathLike | None, every: int = 10):
        if every < 1:
            raise ValueError(f"Checkpointer: every must be >= 1, got {every}")
        self.path = Path(path) if path is not None else None
        self.every = every
        self._unreadable = False

    def restore(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            return load_checkpoint(self.path)
        except CheckpointError:
            self._unreadable = True
            raise

    def save(self, state: dict[str, Any]) -> Path | None:
        if self.path is None:
            return None
        if self._unreadable:
            raise CheckpointError(
                f"refusing to overwrite the unreadable checkpoint {self.path}; move or delete it first"
            )
        return save_checkpoint(self.path, state)

    def maybe_save(self, iteration: int, make_state: Callable[[], dict[str, Any]], final: bool = False) -> Path | None:
        """Save ``make_state()`` when ``iteration`` is a multiple of ``every`` (or ``final``)."""
        if self.path is None or not (final or iteration % self.every == 0):
            return None
        return self.save(make_state())
