r"""Reference results: a lesson's numbers measured once, at a named size, and committed with what made them.

A lesson's fast size shows the method at work in minutes; the *evidence* is a longer run made once and kept in
the repository as ``results/<lesson>_<size>.json``::

    {"lesson": "03_omniglot", "size": "medium", "commit": "<git hash>[-dirty]", "command": "python -m ...",
     "created": "<UTC ISO time>", "machine": {...}, "seconds": 1234.5, "config": {...},
     "fingerprint": "<hash of config>", "runs": [{"method", "alphabets", "seed", "accuracy", ...}, ...]}

:func:`write_reference` writes such a file (atomically); :func:`read_reference` reads it back as a
:class:`Reference`; :func:`stale_fields` names the settings in which a reference's configuration differs from
the current one, so that a test can fail when a size changed and its reference was not re-made. A lesson draws
the reference next to its own run; :func:`paired_interval` gives the paired confidence interval of a difference
between two methods over the seeds they share.

``python -m warpkit reference LESSON --size SIZE`` (:func:`main`) re-makes a reference with the producer
registered for the lesson in :data:`PRODUCERS` (``"module:function"``, imported only when called, so this module
depends on no experiment).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from warpkit.kit.notebook import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "results"

#: lesson number → (lesson name, "module:function" that runs it at a size and returns (config dict, runs))
#: (the Omniglot lesson was lesson 03 when its reference was first made, hence the file name; it is lesson 04 now)
PRODUCERS: dict[str, tuple[str, str]] = {
    "03": ("03_omniglot", "warpkit.experiments.omniglot:reference_runs"),
    "04": ("03_omniglot", "warpkit.experiments.omniglot:reference_runs"),
    "05": ("05_maze", "warpkit.experiments.maze:reference_runs"),
}

#: two-sided 97.5 % quantiles of Student's t for 1 … 30 degrees of freedom (a 95 % interval)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def reference_path(lesson: str, size: str, directory: str | os.PathLike | None = None) -> Path:
    """``results/<lesson>_<size>.json`` (in ``directory`` if given)."""
    return Path(directory or RESULTS_DIR) / f"{lesson}_{size}.json"


def canonical(config: dict) -> dict:
    """``config`` as plain JSON (tuples become lists), the form a reference stores and compares."""
    return json.loads(json.dumps(config, sort_keys=True))


def fingerprint(config: dict) -> str:
    """A short hash of the canonical JSON of ``config``: equal configurations, equal fingerprints."""
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_fields(recorded: dict, current: dict) -> list[str]:
    """The settings (sorted) whose values differ between a reference's ``recorded`` configuration and the
    ``current`` one, including settings present in only one of them. Empty: the reference is up to date."""
    recorded, current = canonical(recorded), canonical(current)
    return sorted(k for k in set(recorded) | set(current) if recorded.get(k, "<absent>") != current.get(k, "<absent>"))


def git_commit(root: str | os.PathLike = REPO_ROOT) -> str:
    """The repository's HEAD commit, with ``-dirty`` when tracked files have uncommitted changes ("unknown"
    outside a git checkout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> dict:
    """Where a run was made: platform, processor, CPU count, Python and torch versions, torch threads, and the
    load average (1, 5, 15 minutes) when the file was written: on a shared machine it says how much the wall time
    was inflated."""
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


@dataclass
class Reference:
    """A reference run read from its file (``data`` holds every field of the file)."""

    data: dict
    path: Path | None = None

    @property
    def runs(self) -> list[dict]:
        return self.data["runs"]

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def methods(self) -> list[str]:
        seen: list[str] = []
        for run in self.runs:
            if run["method"] not in seen:
                seen.append(run["method"])
        return seen

    @property
    def largest_n(self) -> int:
        return max(run["alphabets"] for run in self.runs)

    def accuracies(self, method: str, alphabets: int | None = None) -> dict[int, float]:
        """seed → accuracy of ``method`` at n = ``alphabets`` (default: the largest n of the reference)."""
        n = self.largest_n if alphabets is None else alphabets
        return {run["seed"]: run["accuracy"] for run in self.runs if run["method"] == method and run["alphabets"] == n}

    def mean_std(self, method: str, alphabets: int | None = None) -> tuple[float, float, int]:
        values = np.array(list(self.accuracies(method, alphabets).values()))
        if len(values) == 0:
            raise KeyError(f"the reference holds no runs of {method!r} at n={alphabets}")
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)

    def stale_fields(self, current_config: dict) -> list[str]:
        return stale_fields(self.config, current_config)


def write_reference(lesson: str, size: str, config: dict, runs: Sequence[dict], command: str, seconds: float,
                    extra: dict | None = None, path: str | os.PathLike | None = None) -> Path:
    """Write the reference file of ``lesson`` at ``size`` (atomically: a file is never half-written)."""
    target = Path(path) if path is not None else reference_path(lesson, size)
    target.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "lesson": lesson, "size": size, "commit": git_commit(), "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "seconds": round(float(seconds), 1), "config": canonical(config),
        "fingerprint": fingerprint(config), "runs": [canonical(run) for run in runs],
    }
    data.update(extra or {})
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(handle)
    try:
        Path(temporary).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a results file is for everyone to read
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def read_reference(lesson: str, size: str, path: str | os.PathLike | None = None) -> Reference | None:
    """The reference of ``lesson`` at ``size``, or None when there is no such file."""
    source = Path(path) if path is not None else reference_path(lesson, size)
    if not source.exists():
        return None
    data = json.loads(source.read_text(encoding="utf-8"))
    missing = [k for k in ("lesson", "size", "commit", "command", "created", "machine", "seconds", "config", "runs")
               if k not in data]
    if missing:
        raise ValueError(f"{source} is not a warpkit reference (missing {missing})")
    return Reference(data, source)


def t_quantile_975(degrees_of_freedom: int) -> float:
    """Student's t 97.5 % quantile (1.96 beyond 30 degrees of freedom)."""
    if degrees_of_freedom < 1:
        raise ValueError("a confidence interval needs at least two paired values")
    return _T975[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T975) else 1.96


def paired_interval(a: dict[int, float] | Sequence[float], b: dict[int, float] | Sequence[float]) -> dict:
    """Mean of a − b over paired values and its 95 % t-interval. ``a`` and ``b``: seed → value dicts (paired
    by seed, only shared seeds) or equal-length sequences. Returns ``{"mean", "low", "high", "n",
    "differences"}``."""
    if isinstance(a, dict) and isinstance(b, dict):
        seeds = sorted(set(a) & set(b))
        differences = np.array([a[s] - b[s] for s in seeds])
    else:
        if len(a) != len(b):
            raise ValueError(f"paired_interval(): {len(a)} values against {len(b)}")
        differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(differences)
    mean = float(differences.mean())
    half = t_quantile_975(n - 1) * float(differences.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "differences": differences.tolist()}


def compare_methods(by_method: dict[str, dict[int, float]], focus: str) -> dict:
    """Summary of one comparison (a run's or a reference's), from ``{method: {seed: value}}`` (higher is better):
    per method the mean, sample std and number of seeds; the methods ranked by mean; the best method other than
    ``focus`` and the paired 95 % interval of ``focus`` minus it over their shared seeds (None with fewer than two
    shared seeds). Returns ``{"stats", "ranking", "best_other", "interval", "focus"}``."""
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


def main(argv: list[str] | None = None) -> int:
    """``python -m warpkit reference LESSON --size SIZE [--workers N] [--out PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m warpkit reference",
                                     description="Make a lesson's reference results file.")
    parser.add_argument("lesson", choices=sorted(PRODUCERS), help="lesson number")
    parser.add_argument("--size", default="medium")
    parser.add_argument("--workers", type=int, default=1, help="processes (one torch thread each)")
    parser.add_argument("--out", default=None, help="file to write (default results/<lesson>_<size>.json)")
    args = parser.parse_args(argv)
    commit = git_commit()  # the code that makes the numbers, whatever happens to the checkout meanwhile
    load_at_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    name, producer = PRODUCERS[args.lesson]
    module, function = producer.split(":")
    produce = getattr(importlib.import_module(module), function)
    started = time.perf_counter()
    config, runs = produce(args.size, workers=args.workers)
    command = "python -m warpkit reference " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                 else sys.argv[2:]))
    path = write_reference(name, args.size, config, runs, command, time.perf_counter() - started,
                           extra={"commit": commit, "load_average_at_start": load_at_start}, path=args.out)
    print(f"wrote {path} ({len(runs)} runs, {time.perf_counter() - started:.0f} s)")
    return 0


__all__ = ["PRODUCERS", "RESULTS_DIR", "Reference", "canonical", "compare_methods", "fingerprint", "git_commit", "machine", "main",
           "paired_interval", "read_reference", "reference_path", "stale_fields", "t_quantile_975",
           "write_reference"]
