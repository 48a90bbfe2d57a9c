"""Output folders the command line writes into: created if needed and proven writable before anything runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def folder_problem(folder: str | os.PathLike, option: str) -> str | None:
    """Create ``folder`` (and its parents) and write and remove a probe file in it. Returns None when that
    works, else a message naming ``option`` (``--out``) and what is wrong, for the caller to report.

    >>> folder_problem(tempfile.mkdtemp(), "--out") is None
    True
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{option} {folder} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".warpkit-write-test.")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return f"{option} {folder} cannot be written to: {error.strerror or error}"
    return None
