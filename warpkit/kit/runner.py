"""``python -m warpkit run``: execute lessons headlessly through papermill and summarise what they recorded.

::

    python -m warpkit run [NOTEBOOK ...] [--size SIZE] [--device auto|cpu|cuda]
                          [-p NAME VALUE ...] [--out DIR] [--figures-dir DIR] [--notebooks-dir DIR] [-x]

* No notebook named runs every ``notebooks/NN_*.ipynb`` in order (assignments live elsewhere and are not
  lessons). A notebook is named by its number (``01``), its stem (``01_preconditioning``) or a path
  (``notebooks/01_preconditioning.ipynb``; the paired ``.py`` names its ``.ipynb``).
* Every notebook has one cell tagged ``parameters`` holding literal assignments. ``--size`` sets ``SIZE``,
  ``--device`` sets ``DEVICE``, the runner always sets ``INTERACTIVE = False``, and ``-p NAME VALUE`` sets any
  other parameter. Before anything runs, every name is checked against each selected notebook's parameters
  (papermill alone only logs unknown names) and every value is parsed with the type of the parameter's default:
  ``int``, ``float``, ``bool`` (``true``/``false``/``1``/``0``, any case) or ``str``; a list or dict default
  takes a Python literal of the same type.
* Sizes: ``fast`` and ``full`` unless the notebook declares its own on the ``SIZE`` line of its parameters cell
  with a comment listing them, e.g. ``SIZE = "fast"  # one of "fast", "medium", "full"``.
* The kernel runs with ``WARPKIT_HEADLESS=1`` and ``WARPKIT_FIGURES_DIR`` (``--figures-dir``; default: the
  variable if set, else ``figures/`` in the repository), in the notebook's own folder.
* Executed copies go to ``--out`` (default ``_build/notebooks``), one ``NAME.ipynb`` each, plus
  ``summary.json``. The runner overwrites only its own earlier output there (executed copies papermill wrote, a
  summary it wrote) and refuses an ``--out`` that is the notebooks folder itself, a file, or not writable, and a
  ``--figures-dir`` it cannot create or write to.
* ``summary.json`` is replaced atomically and describes exactly the executed copies beside it: one entry per
  copy (status ``ok``, ``failed``, ``running`` while it executes, ``interrupted`` after Ctrl-C, with the
  parameters it ran with and its records); entries of earlier runs stay while their copies do.
* One runner per ``--out`` at a time: a second one is refused (exit 2) while the first holds the folder's lock
  (``.warpkit-run.lock``, released when the runner ends, however it ends).
* Values are checked before anything runs: ints fit in 64 bits (``SEED`` between 0 and 2**63 − 1), floats are
  finite, ``--timeout`` is a number of seconds > 0; a parameter whose default is None declares its type at the
  start of its comment (``META_ITERATIONS = None  # int ≥ 1 or None: ...``), with an optional lower bound that
  is enforced too. A relative path given to ``CHECKPOINT`` or ``CHECKPOINT_DIR`` is taken relative to the folder
  the command runs in, for every lesson alike (the notebook receives it made absolute).
* At the end a table lists notebook, status, seconds and recorded values (:func:`warpkit.read_records`). A
  failing notebook makes the command exit 1 and print the path of its executed copy, which holds the
  traceback; a refused command line exits 2; Ctrl-C stops after printing what finished (exit 130).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import os
import tempfile
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from warpkit.kit.folders import folder_problem
from warpkit.kit.notebook import FIGURES_ENV, REPO_ROOT, read_records

DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_OUT_DIR = Path("_build") / "notebooks"
DEFAULT_SIZES = ("fast", "full")
DEVICES = ("auto", "cpu", "cuda")
HEADLESS_ENV = "WARPKIT_HEADLESS"
#: parameters every lesson must declare, because the runner sets them
RUNNER_PARAMETERS = {"SIZE": "--size", "DEVICE": "--device", "INTERACTIVE": "(always False)"}
LESSON_PATTERN = re.compile(r"^\d\d_\w+\.ipynb$")
KERNEL_NAME = "python3"
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_DECLARATION = re.compile(r"^(?P<type>int|float|str|bool)\b(\s*≥\s*(?P<bound>-?\d+(\.\d*)?))?"
                          r"(?P<none>\s+or\s+None)?\b")
#: parameters that hold a file or folder path: a relative path on the command line is taken relative to the folder
#: the command runs in (made absolute before the notebook sees it), whichever lesson it is
PATH_PARAMETERS = ("CHECKPOINT", "CHECKPOINT_DIR")
PATH_KEYWORDS = ("auto",)
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".warpkit-run.lock"


class RunnerError(Exception):
    """A problem with the command line or the notebooks, reported to the user without a traceback."""


# ----------------------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    default: Any
    source: str  # the default as written
    help: str

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def describe(self) -> str:
        return f"{self.name} ({self.type_name}, default {self.source})"


def notebook_parameters(path: str | os.PathLike) -> dict[str, Parameter]:
    """The parameters of the notebook at ``path``, by name, in cell order (papermill's own inspection).

    Raises :class:`RunnerError` when the notebook has no ``parameters`` cell or a default is not a literal.
    """
    import nbformat
    import papermill

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise RunnerError(
            f"{path}: expected exactly one cell tagged 'parameters', found {len(tagged)}. "
            'In the paired .py file tag it with  # %% tags=["parameters"]'
        )
    if notebook.metadata.get("kernelspec"):
        inspected = papermill.inspect_notebook(str(path))
    else:  # jupytext-paired notebooks carry no kernelspec; inspect_notebook needs one, its translator does not
        from papermill.translators import PythonTranslator

        inspected = {p.name: p._asdict() for p in PythonTranslator.inspect(tagged[0])}
    parameters: dict[str, Parameter] = {}
    for name, info in inspected.items():
        source = str(info["default"]).strip()
        try:
            default = ast.literal_eval(source)
        except (ValueError, SyntaxError) as error:
            raise RunnerError(
                f"{path}: the default of parameter {name} is not a literal ({source!r}); "
                "a parameters cell holds literal assignments only"
            ) from error
        parameters[name] = Parameter(name, default, source, str(info.get("help") or "").strip())
    return parameters


def allowed_sizes(parameters: dict[str, Parameter]) -> tuple[str, ...]:
    """Sizes a notebook accepts: quoted words in the comment on its ``SIZE`` line, else ``fast`` and ``full``.

    ``SIZE = "fast"  # one of "fast", "medium", "full"`` declares three sizes.
    """
    size = parameters.get("SIZE")
    declared = re.findall(r"[\"']([\w-]+)[\"']", size.help) if size is not None else []
    return tuple(declared) if declared else DEFAULT_SIZES


def declared_type(parameter: Parameter) -> tuple[type | None, float | None, bool]:
    """``(type, lower bound, None allowed)`` declared at the start of a parameter's comment, e.g.
    ``# int ≥ 0 or None: ...`` (papermill cannot parse a parameter line holding a second ``=``, so the bound is
    written with ``≥``); ``(None, None, False)`` when the comment declares nothing."""
    match = _DECLARATION.match(parameter.help)
    if match is None:
        return None, None, False
    bound = float(match.group("bound")) if match.group("bound") else None
    return _TYPES[match.group("type")], bound, bool(match.group("none"))


def parse_value(parameter: Parameter, text: str, notebook: str) -> Any:
    """Parse ``text`` with the type of ``parameter``'s default; refuse it with a clear message otherwise.

    A parameter whose default is None must declare its type at the start of its comment
    (``NAME = None  # int ≥ 0 or None: ...``); the value is then parsed with that type, and ``None`` is accepted.
    Floats must be finite, ints must fit in 64 bits, ``SEED`` must be between 0 and 2**63 − 1, and a declared
    lower bound (``int ≥ 0``) is enforced.
    """
    default = parameter.default
    kind, bound, none_allowed = declared_type(parameter)

    def refuse(expected: str) -> RunnerError:
        return RunnerError(
            f"-p {parameter.name} {text}: notebook {notebook} expects {expected} for {parameter.name} "
            f"(default {parameter.source}), got {text!r}"
        )

    if default is None:
        if kind is None:
            raise RunnerError(
                f"-p {parameter.name} {text}: notebook {notebook} gives {parameter.name} the default None without "
                f"declaring its type, so the value cannot be checked. Declare it at the start of the parameter's "
                f"comment, e.g.  {parameter.name} = None  # int or None: ..."
            )
        if text.strip() in ("None", "none"):
            if none_allowed:
                return None
        return parse_value(Parameter(parameter.name, kind(), parameter.source, parameter.help), text, notebook)
    if isinstance(default, bool):
        return _parse_bool(text, refuse)
    if isinstance(default, int):
        return _parse_int(text, refuse, bound, seed=parameter.name == "SEED")
    if isinstance(default, float):
        return _parse_float(text, refuse, bound)
    if isinstance(default, str):
        if parameter.name in PATH_PARAMETERS and text and text not in PATH_KEYWORDS and not Path(text).is_absolute():
            return str(Path(text).resolve())  # relative to where the command runs, for every lesson alike
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise refuse(f"a Python literal of type {type(default).__name__}") from None
    if not isinstance(value, type(default)):
        raise refuse(f"a Python literal of type {type(default).__name__}")
    return value


# ----------------------------------------------------------------------------------------------------------
# choosing notebooks
# ----------------------------------------------------------------------------------------------------------

def _parse_bool(text: str, refuse) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise refuse("a bool (true/false/1/0)")


def _parse_int(text: str, refuse, bound, seed: bool) -> int:
    """An int that fits in 64 bits (a seed: between 0 and 2**63 − 1), at least ``bound`` when one is declared."""
    try:
        value = int(text)
    except ValueError:
        raise refuse("an int") from None
    if seed and not 0 <= value < 2**63:
        raise refuse("an int between 0 and 2**63 - 1")
    if not -(2**63) <= value < 2**63:
        raise refuse("an int that fits in 64 bits")
    if bound is not None and value < bound:
        raise refuse(f"an int ≥ {bound:g}")
    return value


def _parse_float(text: str, refuse, bound) -> float:
    """A finite float, at least ``bound`` when one is declared."""
    try:
        value = float(text)
    except ValueError:
        raise refuse("a float") from None
    if not math.isfinite(value):
        raise refuse("a finite float")
    if bound is not None and value < bound:
        raise refuse(f"a float ≥ {bound:g}")
    return value

def lesson_notebooks(notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR) -> list[Path]:
    """Every lesson ``NN_topic.ipynb`` directly in ``notebooks_dir``, in order (assignments excluded)."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise RunnerError(f"notebooks folder {folder} does not exist (use --notebooks-dir to point at one)")
    return sorted(path for path in folder.iterdir() if LESSON_PATTERN.match(path.name))


def resolve_notebook(name: str, notebooks_dir: str | os.PathLike = DEFAULT_NOTEBOOKS_DIR) -> Path:
    """Turn ``01``, ``01_preconditioning``, ``01_preconditioning.ipynb`` or a path into an ``.ipynb`` path."""
    candidate = Path(name)
    if candidate.suffix == ".py":
        candidate = candidate.with_suffix(".ipynb")
    if candidate.suffix == ".ipynb" and candidate.is_file():
        return candidate.resolve()
    lessons = lesson_notebooks(notebooks_dir)
    stem = candidate.name.removesuffix(".ipynb")
    matches = [path for path in lessons if path.stem == stem or path.stem.split("_", 1)[0] == stem]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(path.stem for path in lessons) or "(none)"
    if not matches:
        raise RunnerError(f"no notebook called {name!r} in {notebooks_dir}; the lessons are: {listing}")
    raise RunnerError(f"{name!r} is ambiguous in {notebooks_dir}: it matches {', '.join(m.stem for m in matches)}")


# ----------------------------------------------------------------------------------------------------------
# planning (everything that can be refused is refused here, before any notebook runs)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Job:
    notebook: Path
    output: Path
    parameters: dict[str, Any]

    @property
    def name(self) -> str:
        return self.notebook.stem


def plan(
    notebooks: Sequence[Path],
    out_dir: Path,
    size: str | None = None,
    device: str | None = None,
    overrides: Sequence[tuple[str, str]] = (),
) -> list[Job]:
    """Check every notebook's parameters against the command line and return what to run."""
    out_dir = Path(out_dir).resolve()
    jobs: list[Job] = []
    seen: set[str] = set()
    for notebook in notebooks:
        if notebook.parent.resolve() == out_dir:
            raise RunnerError(
                f"--out {out_dir} is the folder {notebook.name} lives in; executed copies would overwrite "
                "the notebooks. Choose another --out (default _build/notebooks)."
            )
        if notebook.stem in seen:
            raise RunnerError(f"{notebook.stem} is named twice")
        seen.add(notebook.stem)
        declared = notebook_parameters(notebook)
        listing = ", ".join(p.describe() for p in declared.values()) or "(none)"
        missing = [f"{name} (set by {option})" for name, option in RUNNER_PARAMETERS.items() if name not in declared]
        if missing:
            raise RunnerError(
                f"notebook {notebook.stem} lacks the parameters the runner sets: {', '.join(missing)}. "
                f"Its parameters cell declares: {listing}"
            )
        values = _parameter_values(notebook, declared, listing, size, device, overrides)
        if values.get("DEVICE", "auto") not in DEVICES:
            raise RunnerError(f"DEVICE must be one of {', '.join(DEVICES)}, got {values['DEVICE']!r}")
        chosen_size = values.get("SIZE", declared["SIZE"].default)
        sizes = allowed_sizes(declared)
        if chosen_size not in sizes:
            raise RunnerError(
                f"notebook {notebook.stem} has no size {chosen_size!r}; it offers: {', '.join(sizes)}"
            )
        values["INTERACTIVE"] = False
        output = out_dir / notebook.name
        _check_overwritable(output)
        jobs.append(Job(notebook, output, values))
    if out_dir.exists() and not out_dir.is_dir():
        raise RunnerError(f"--out {out_dir} is a file, not a folder; choose a folder for the executed copies")
    read_summary(out_dir)  # refuses a summary.json this runner did not write
    return jobs


def _parameter_values(notebook: Path, declared: dict, listing: str, size: str | None, device: str | None,
                      overrides: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The values the command line gives ``notebook``'s parameters (``-p NAME VALUE``, ``--size``, ``--device``)."""
    values: dict[str, Any] = {}
    for name, text in overrides:
        if name not in declared:
            raise RunnerError(
                f"-p {name} {text}: notebook {notebook.stem} has no parameter {name!r}. "
                f"Its parameters are: {listing}"
            )
        if {"SIZE": size, "DEVICE": device}.get(name) is not None:
            raise RunnerError(f"-p {name} and {RUNNER_PARAMETERS[name]} both set {name}; give it once")
        if name == "INTERACTIVE":
            raise RunnerError("-p INTERACTIVE: the runner is headless and always sets INTERACTIVE = False")
        values[name] = parse_value(declared[name], text, notebook.stem)
    if size is not None:
        values["SIZE"] = size
    if device is not None:
        values["DEVICE"] = device
    return values


def _check_overwritable(output: Path) -> None:
    """Refuse to replace a file that this runner (papermill) did not write."""
    if not output.exists():
        return
    try:
        with open(output, encoding="utf-8") as handle:
            written_by_papermill = "papermill" in json.load(handle).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        written_by_papermill = False
    if not written_by_papermill:
        raise RunnerError(
            f"{output} exists and is not an executed copy written by this runner; refusing to overwrite it. "
            "Move it away or choose another --out."
        )


# ----------------------------------------------------------------------------------------------------------
# execution
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    """What one execution produced."""

    name: str
    path: Path
    status: str  # "ok" or "failed"
    seconds: float
    records: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@contextlib.contextmanager
def kernel_environment(figures_dir: str | os.PathLike) -> Iterator[None]:
    """Set the variables the kernel inherits (papermill starts kernels with this process's environment)."""
    updates = {HEADLESS_ENV: "1", FIGURES_ENV: str(Path(figures_dir).resolve())}
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def captured_kernel_stderr() -> Iterator[Any]:
    """The kernel inherits this process's stderr (file descriptor 2). While it runs, send that to a temporary file,
    so its start-up chatter ("Kernel is running over TCP without encryption", shutdown messages) stays out of
    the terminal; yields the file, so that a failure can show what the kernel said."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield capture
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _tail(capture, limit: int = 2000) -> str:
    capture.seek(0)
    return capture.read().decode("utf-8", "replace")[-limit:].strip()


def execute(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    parameters: dict[str, Any],
    figures_dir: str | os.PathLike,
    timeout: float | None = None,
) -> Result:
    """Execute one notebook with papermill into ``output``; never raises for an error inside the notebook."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook, output = Path(notebook), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    Path(figures_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = ""
    with kernel_environment(figures_dir), captured_kernel_stderr() as kernel_stderr:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                language="python",
                progress_bar=False,
                cwd=str(notebook.parent),
                execution_timeout=timeout,
            )
        except PapermillExecutionError as failure:
            error = f"{failure.ename}: {failure.evalue} (in cell {failure.exec_count})"
        except KeyboardInterrupt:
            raise
        except Exception as failure:  # kernel died, timeout, unreadable notebook...
            error = f"{type(failure).__name__}: {failure}"
        if error and _tail(kernel_stderr):
            error += "\nthe kernel's stderr ended with:\n" + _tail(kernel_stderr)
    seconds = time.perf_counter() - start
    records = read_records(output) if output.exists() else {}
    return Result(notebook.stem, output, "failed" if error else "ok", seconds, records, error)


# ----------------------------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------------------------
def format_value(value: Any, width: int = 40) -> str:
    """A short readable form of a recorded value for the summary table."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list) and len(value) > 4:
        text = f"[{len(value)} values]"
    else:
        text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_table(results: Sequence[Result]) -> str:
    """Notebook, status, seconds and recorded values, one line per value."""
    header = ("notebook", "status", "seconds", "recorded values")
    rows: list[tuple[str, str, str, str]] = []
    for result in results:
        values = [f"{name} = {format_value(value)}" for name, value in result.records.items()] or ["-"]
        rows.append((result.name, result.status, f"{result.seconds:.1f}", values[0]))
        rows += [("", "", "", value) for value in values[1:]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    line = lambda row: "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3]  # noqa: E731
    rule = "  ".join("-" * w for w in widths) + "  " + "-" * len(header[3])
    return "\n".join([line(header), rule, *map(line, rows)])


_SUMMARY_KEYS = {"notebook", "status", "path"}


def read_summary(out_dir: str | os.PathLike) -> list[dict]:
    """The entries of the runner's ``summary.json`` in ``out_dir`` ([] when there is none). A file of that name
    that this runner did not write (not a list of entries with ``notebook``, ``status`` and ``path``) raises
    :class:`RunnerError`: the runner never replaces it."""
    path = Path(out_dir) / SUMMARY_NAME
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        ours = isinstance(entries, list) and all(isinstance(e, dict) and _SUMMARY_KEYS <= set(e) for e in entries)
    except (OSError, ValueError):
        entries, ours = None, False
    if not ours:
        raise RunnerError(
            f"{path} exists and is not a summary written by this runner; refusing to overwrite it. "
            "Move it away or choose another --out."
        )
    return entries


def summary_entry(job: Job, status: str, seconds: float = 0.0, records: dict | None = None, error: str = "") -> dict:
    """One notebook's entry of ``summary.json``: its status (``ok``, ``failed``, ``running``, ``interrupted``),
    seconds, executed copy, error, the parameters it ran with and what it recorded."""
    return {"notebook": job.name, "status": status, "seconds": round(seconds, 2), "path": str(job.output),
            "error": error, "parameters": job.parameters, "records": records or {}}


def write_summary(results: Sequence[Result | dict], out_dir: Path) -> Path:
    """Write ``summary.json`` atomically (a temporary file renamed into place). It describes exactly the executed
    copies in ``out_dir``: the given entries (results or :func:`summary_entry` dicts) replace those of the same
    notebooks, entries of earlier runs are kept while their executed copy is still there, and the list is in
    notebook order."""
    out_dir = Path(out_dir)
    path = out_dir / SUMMARY_NAME
    given = [r if isinstance(r, dict) else
             {"notebook": r.name, "status": r.status, "seconds": round(r.seconds, 2), "path": str(r.path),
              "error": r.error, "records": r.records} for r in results]
    entries = {e["notebook"]: e for e in read_summary(out_dir) if Path(e["path"]).exists()}
    entries.update({e["notebook"]: e for e in given})
    payload = [entries[name] for name in sorted(entries)]
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=SUMMARY_NAME + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(payload, indent=1, default=str) + "\n")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


class OutputLock:
    """An exclusive lock on an ``--out`` folder (``.warpkit-run.lock`` in it, ``fcntl.flock``), so that two runners
    never write into one folder at once. The lock goes with the process, even when it is killed; the file is
    removed on release.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with OutputLock(folder):
    ...     OutputLock(folder).acquire()
    Traceback (most recent call last):
    ...
    warpkit.kit.runner.RunnerError: another runner (process ...) is writing into ...
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_NAME
        self.handle = None

    def acquire(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: an exclusive create, removed on release
            fcntl = None
        for _ in range(5):
            try:
                flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if fcntl is None else 0)
                handle = os.open(self.path, flags, 0o644)
            except FileExistsError:
                raise RunnerError(f"another runner is writing into {self.path.parent} (lock file {self.path}); "
                                  "wait for it to finish, choose another --out, or delete the lock file if no "
                                  "runner is active") from None
            except OSError as error:
                raise RunnerError(f"cannot write into --out {self.path.parent}: {error.strerror or error}") from None
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    holder = os.read(handle, 64).decode(errors="replace").strip() or "?"
                    os.close(handle)
                    raise RunnerError(
                        f"another runner (process {holder}) is writing into {self.path.parent}; two runners on one "
                        "--out would mix their executed copies and summary. Wait for it or choose another --out."
                    ) from None
                try:
                    same = os.stat(self.path).st_ino == os.fstat(handle).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # the previous holder removed the file between our open and our lock: retry
                    os.close(handle)
                    continue
            os.ftruncate(handle, 0)
            os.write(handle, str(os.getpid()).encode())
            self.handle = handle
            return self
        raise RunnerError(f"could not lock {self.path}; try again")

    def release(self) -> None:
        if self.handle is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.handle)
        self.handle = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def prepare_folder(folder: Path, option: str) -> None:
    """Create ``folder`` (and its parents) and check that files can be written into it; :class:`RunnerError`
    naming ``option`` otherwise."""
    problem = folder_problem(folder, option)
    if problem:
        raise RunnerError(problem)


def positive_seconds(text: str) -> float:
    """argparse type of ``--timeout``: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0 (leave --timeout out for no limit), "
                                         f"got {text!r}")
    return value


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m warpkit run",
        description="Execute warpkit's lesson notebooks headlessly (papermill) and summarise their recorded values.",
        epilog="Examples:  python -m warpkit run                      (every lesson, fast size)\n"
        "           python -m warpkit run 01 --size full --device cuda\n"
        "           python -m warpkit run 01_preconditioning -p SEED 3 -p SAVE_FIGS false\n"
        "Exit status: 0 all ran, 1 a notebook failed (its executed copy is named), 2 refused command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "notebooks", nargs="*", metavar="NOTEBOOK",
        help="lessons to run: a number (01), a name (01_preconditioning) or a path to an .ipynb/.py; "
        "none = every notebooks/NN_*.ipynb in order",
    )
    parser.add_argument(
        "--size", default=None,
        help="sets SIZE: 'fast' (small, CPU, minutes) or 'full' (the real experiment; GPU advised); a notebook "
        "may declare more sizes on its SIZE line. Default: each notebook's own default",
    )
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="sets DEVICE: auto (CUDA if available), cpu or cuda. Default: each notebook's own")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="set any other parameter of the notebooks' parameters cell; the value is parsed with the type of "
        "the default (int, float, bool as true/false/1/0, str). Unknown names are refused. Repeatable",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help=f"folder for the executed copies and summary.json (default: {DEFAULT_OUT_DIR})")
    parser.add_argument(
        "--figures-dir", type=Path, default=None,
        help=f"folder the notebooks save figures into (sets {FIGURES_ENV}; default: ${FIGURES_ENV} if set, "
        "else figures/ in the repository)",
    )
    parser.add_argument("--notebooks-dir", type=Path, default=DEFAULT_NOTEBOOKS_DIR,
                        help="where to look for NN_*.ipynb lessons (default: the repository's notebooks/)")
    parser.add_argument("--timeout", type=positive_seconds, default=None,
                        help="seconds (> 0) allowed per cell before the notebook counts as failed (default: no limit)")
    parser.add_argument("-x", "--fail-fast", action="store_true", help="stop at the first failing notebook")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over notebooks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m warpkit run``; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before or between notebooks: nothing is half-written
        print("\ninterrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    out_dir = (args.out or DEFAULT_OUT_DIR).resolve()
    figures = args.figures_dir or Path(os.environ.get(FIGURES_ENV) or REPO_ROOT / "figures")
    try:
        if args.notebooks:
            notebooks = [resolve_notebook(name, args.notebooks_dir) for name in args.notebooks]
        else:
            notebooks = lesson_notebooks(args.notebooks_dir)
            if not notebooks:
                raise RunnerError(f"no lessons (NN_topic.ipynb) in {args.notebooks_dir}")
        jobs = plan(notebooks, out_dir, args.size, args.device, [tuple(p) for p in args.parameter])
        prepare_folder(Path(figures).resolve(), "--figures-dir")
        prepare_folder(out_dir, "--out")
        lock = OutputLock(out_dir).acquire()
    except RunnerError as refusal:
        print(f"python -m warpkit run: {refusal}", file=sys.stderr)
        return 2
    try:
        return _run_jobs(jobs, args, out_dir, figures)
    finally:
        lock.release()


def _run_jobs(jobs: list[Job], args, out_dir: Path, figures) -> int:
    """Execute the planned jobs under the output lock, keeping ``summary.json`` true at every moment."""
    from tqdm import tqdm

    try:  # another runner may have written the folder between planning and locking
        for job in jobs:
            _check_overwritable(job.output)
        read_summary(out_dir)
    except RunnerError as refusal:
        print(f"python -m warpkit run: {refusal}", file=sys.stderr)
        return 2
    print(f"running {len(jobs)} notebook(s) -> {out_dir} (figures -> {Path(figures).resolve()})", flush=True)
    results: list[Result] = []
    interrupted = False
    bar = tqdm(jobs, desc="notebooks", unit="nb", disable=args.no_progress, file=sys.stdout)
    current = None
    try:
        for job in bar:
            current, started = job, time.perf_counter()
            bar.set_postfix_str(f"{job.name} {job.parameters}")
            write_summary([summary_entry(job, "running")], out_dir)  # a killed run is not reported as done
            result = execute(job.notebook, job.output, job.parameters, figures, args.timeout)
            results.append(result)
            write_summary([summary_entry(job, result.status, result.seconds, result.records, result.error)], out_dir)
            current = None
            if not result.ok:
                bar.write(f"FAILED {job.name}: {result.error}\n  executed copy: {result.path}")
                if args.fail_fast:
                    break
    except KeyboardInterrupt:
        interrupted = True
        if current is not None:
            seconds = time.perf_counter() - started
            try:
                records = read_records(current.output) if current.output.exists() else {}
            except Exception:  # a copy cut off while being written
                records = {}
            error = "interrupted (Ctrl-C): the executed copy is partial"
            results.append(Result(current.name, current.output, "interrupted", seconds, records, error))
            write_summary([summary_entry(current, "interrupted", seconds, records, error)], out_dir)
    finally:
        bar.close()
    return _report(results, interrupted, out_dir)


def _report(results: list[Result], interrupted: bool, out_dir: Path) -> int:
    """Print the summary table and what failed; the exit status (130 interrupted, 1 failed, 0 all ran)."""
    if results:
        print("\n" + summary_table(results))
    failed = [r for r in results if r.status == "failed"]
    for result in failed:
        print(f"\nnotebook {result.name} failed: {result.error}\n  executed copy (with the traceback): {result.path}")
    if interrupted:
        print("\ninterrupted; the table lists what finished", file=sys.stderr)
        return 130
    if failed:
        return 1
    print(f"\nall {len(results)} notebook(s) ran; executed copies in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
