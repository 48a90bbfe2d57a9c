"""What every notebook imports: recorded values, figure saving, seeding, device choice, progress bars.

Recorded values
---------------
A notebook reports the numbers a lesson is about with :func:`record`. Each call emits one display output with
the mimetype ``application/vnd.warpkit.record+json`` holding ``{"name": ..., "value": ...}`` and a readable
``text/plain`` fallback ``name = value``. :func:`read_records` returns them from an executed notebook, so tests,
the runner's summary and anyone else read results the same way (the idea of recommenders' notebook_utils,
without scrapbook).
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Iterable, Mapping

RECORD_MIMETYPE = "application/vnd.warpkit.record+json"
FIGURES_ENV = "WARPKIT_FIGURES_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]

RECORDS_MIMETYPE = "application/vnd.warpkit.records+json"

#: values recorded in this process, name -> value (what the notebook's own cells can read back)
RECORDS: dict[str, Any] = {}
#: names recorded since :func:`defer_records` and not yet shown by :func:`show_records` (None: not deferring)
_DEFERRED: list[str] | None = None


def _to_jsonable(value: Any, name: str) -> Any:
    """Convert numpy / torch scalars and arrays to plain Python; refuse what JSON cannot hold."""
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars, torch tensors
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v, name) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, name) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"record({name!r}, ...): the value {value!r} is not finite; JSON cannot hold it")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"record({name!r}, ...): a value of type {type(value).__name__} is not JSON-able; "
        "pass a number, string, bool, None, or a list/dict of those"
    )


def record(name: str, value: Any) -> Any:
    """Record a named result of this notebook; returns the JSON-able value that was recorded.

    The value is shown as display data (mimetype ``application/vnd.warpkit.record+json``) with a
    ``text/plain`` fallback, and kept in :data:`RECORDS`.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"record(): the name must be an identifier-like string, got {name!r}")
    value = _to_jsonable(value, name)
    RECORDS[name] = value
    if _DEFERRED is not None:
        if name not in _DEFERRED:
            _DEFERRED.append(name)
        return value
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python without IPython: the in-process dict is enough
        return value
    if get_ipython() is not None:
        display({RECORD_MIMETYPE: {"name": name, "value": value}, "text/plain": f"{name} = {value!r}"}, raw=True)
    return value


def defer_records() -> None:
    """From now on :func:`record` keeps values without showing them; :func:`show_records` shows them all at once,
    as one table (a lesson calls this in its setup cell and ``show_records()`` in its last cell)."""
    global _DEFERRED
    _DEFERRED = []


def show_records() -> None:
    """Show every value recorded since :func:`defer_records` as one table, with the mimetype
    ``application/vnd.warpkit.records+json`` (a list of ``{"name", "value"}``) that :func:`read_records` reads."""
    global _DEFERRED
    names, _DEFERRED = list(_DEFERRED or []), None
    entries = [{"name": name, "value": RECORDS[name]} for name in names]
    width = max((len(name) for name in names), default=0)
    text = "\n".join(f"{e['name']:<{width}}  {_short(e['value'])}" for e in entries)
    rows = "".join(f"<tr><td><code>{e['name']}</code></td><td>{_short(e['value'])}</td></tr>" for e in entries)
    html = f"<table><tr><th>recorded</th><th>value</th></tr>{rows}</table>"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display({RECORDS_MIMETYPE: entries, "text/html": html, "text/plain": text}, raw=True)


def _short(value: Any) -> str:
    """A value as a table cell: floats to 4 significant digits, long lists shortened."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 6:
        return "[" + ", ".join(_short(v) for v in value[:6]) + f", … ({len(value)} values)]"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value)


def read_records(notebook: "str | os.PathLike | Any") -> dict[str, Any]:
    """Return ``{name: value}`` for every :func:`record` output of an executed notebook.

    ``notebook`` is a path to an ``.ipynb`` file or an ``nbformat`` notebook node. A name recorded twice keeps
    its last value.
    """
    if isinstance(notebook, (str, os.PathLike)):
        with open(notebook, encoding="utf-8") as handle:
            notebook = json.load(handle)
    records: dict[str, Any] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {})
            for entry in _record_entries(data):
                records[entry["name"]] = entry["value"]
    return records


def _record_entries(data: Mapping) -> list[dict]:
    """The ``{"name", "value"}`` entries of one output: one from :func:`record`, a list from :func:`show_records`."""
    entries = []
    for mimetype in (RECORD_MIMETYPE, RECORDS_MIMETYPE):
        payload = data.get(mimetype)
        if isinstance(payload, str):  # some writers store JSON mimetypes as text
            payload = json.loads(payload)
        if payload:
            entries.extend([payload] if mimetype == RECORD_MIMETYPE else payload)
    return entries


def figures_dir() -> Path:
    """The folder figures are written to: ``$WARPKIT_FIGURES_DIR`` if set, else ``figures/`` in the repo."""
    folder = Path(os.environ.get(FIGURES_ENV) or REPO_ROOT / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(fig, name: str, save: bool = True, dpi: int = 120) -> Path | None:
    """Save a matplotlib figure as ``<figures_dir>/<name>.png`` (when ``save``); returns the path or None."""
    if not save:
        return None
    if "/" in name or name.endswith(".png"):
        raise ValueError(f"save_figure(): give a bare name such as '01_trajectories', got {name!r}")
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def show_figure(fig, name: str, save: bool = True) -> None:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` (when ``save``) and show it once below the cell.

    Returns nothing, so a cell that ends with it echoes nothing; the figure is closed afterwards, so pyplot's
    inline backend does not show it a second time.
    """
    save_figure(fig, name, save)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(fig)
    import matplotlib.pyplot as plt

    plt.close(fig)


def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and torch's generators; returns the seed so a notebook can record it."""
    import numpy as np
    import torch

    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed_everything(): the seed must be an int, got {seed!r}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed_everything(): the seed must be between 0 and 2**63 - 1, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def pick_device(device: str = "auto"):
    """``"auto"`` gives CUDA when available, else CPU; ``"cpu"``/``"cuda"`` are taken as asked (checked).

    The choice is recorded (``device``: ``"cpu"`` or ``"cuda"``; on CUDA also ``device_name``, the GPU's name),
    so an executed notebook shows where it ran (``python3 kit.py gpu-check`` checks it)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"pick_device(): device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"DEVICE={device!r} was asked for but torch sees no CUDA GPU (torch {torch.__version__}). "
            "Use DEVICE='auto' or 'cpu', or install a CUDA build of torch (see the README's GPU section)."
        )
    chosen = torch.device(device)
    record("device", chosen.type)
    if chosen.type == "cuda":
        record("device_name", torch.cuda.get_device_name(chosen))
    return chosen


def check_size(size: str, allowed: Iterable[str] = ("fast", "full")) -> str:
    """Validate a notebook's ``SIZE`` parameter and return it."""
    allowed = tuple(allowed)
    if size not in allowed:
        raise ValueError(f"SIZE must be one of {allowed}, got {size!r}")
    return size


def progress(iterable=None, show: bool = True, **kwargs):
    """A tqdm progress bar that is switched by an explicit flag.

    ``tqdm.notebook`` ignores ``TQDM_DISABLE``, and under papermill widget bars only clutter the executed
    notebook, so notebooks pass ``SHOW_PROGRESS`` here and get the plain-text bar.
    """
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.std import tqdm as text_tqdm

    live = _in_live_notebook()
    if not live and not _stderr_is_terminal():
        show = False  # an executed notebook or a log file: a bar there is only noise
    bar = auto_tqdm if live else text_tqdm
    return bar(iterable, disable=not show, **kwargs)


def _stderr_is_terminal() -> bool:
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _in_live_notebook() -> bool:
    """True inside an interactive Jupyter front end (not under papermill, which sets PAPERMILL_EXECUTION)."""
    if os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("WARPKIT_HEADLESS"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
