"""Shared fixtures: executing notebooks, finding the Omniglot test data, timeouts, CI strictness.

* ``execute_notebook(name, **parameters)`` runs ``notebooks/<name>.ipynb`` through papermill (via
  :func:`warpkit.kit.runner.execute`) at ``SIZE="fast"``, ``INTERACTIVE=False``, with ``WARPKIT_HEADLESS=1`` and
  ``WARPKIT_FIGURES_DIR`` pointing at a fresh temporary folder; it returns an :class:`ExecutedNotebook`
  (``.records``, ``.path``, ``.seconds``, ``.figures_dir``). Executions are cached for the whole session, so
  several tests may ask for the same notebook and parameters and it runs once. A failing notebook fails the
  test with the error and the path of the executed copy (kept under pytest's temporary folder).
* ``omniglot_root``: the folder holding the Omniglot zips, ``$WARPKIT_DATA/omniglot`` or
  ``<repo>/../shared/data/omniglot``; the test is skipped (with the places looked at) when neither exists.
* Every test gets a pytest-timeout limit unless it sets its own or ``--timeout``/``timeout`` is configured:
  :data:`DEFAULT_TIMEOUT` s, and :data:`NOTEBOOK_TIMEOUT` s for tests marked ``notebook``.
* With ``WARPKIT_REQUIRE_BROWSER=1`` (set by ``.ci/run``) a test marked ``browser`` that skips (no
  Chromium, no JupyterLab...) fails instead, so CI cannot go green without the browser tests having run.
"""

from __future__ import annotations

import json

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

# Unit tests use tiny tensors: one intra-op thread is fastest, and on a busy 2-core machine two threads can make
# a small operation a hundred times slower. (Notebooks choose their own threads in their kernels.)
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_TIMEOUT = 300
NOTEBOOK_TIMEOUT = 900
REQUIRE_BROWSER_ENV = "WARPKIT_REQUIRE_BROWSER"
DATA_ENV = "WARPKIT_DATA"


# ----------------------------------------------------------------------------------------------------------
# executing notebooks
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutedNotebook:
    """A notebook executed by the ``execute_notebook`` fixture."""

    name: str
    path: Path  # the executed copy
    records: dict[str, Any]
    seconds: float
    figures_dir: Path
    parameters: dict[str, Any]

    def figures(self) -> list[Path]:
        """The PNG files the notebook saved."""
        return sorted(self.figures_dir.glob("*.png"))

    def stderr_outputs(self) -> list[str]:
        """The text of every stderr stream output stored in the executed copy (progress bars, warnings)."""
        notebook = json.loads(self.path.read_text(encoding="utf-8"))
        return ["".join(output.get("text", "")) for cell in notebook["cells"] for output in cell.get("outputs", [])
                if output.get("output_type") == "stream" and output.get("name") == "stderr"]


class NotebookExecutor:
    """Callable behind the ``execute_notebook`` fixture; caches executions for the session."""

    def __init__(self, workdir: Path, notebooks_dir: Path = NOTEBOOKS_DIR):
        self.workdir = workdir
        self.notebooks_dir = notebooks_dir
        self._cache: dict[tuple, ExecutedNotebook | str] = {}

    def __call__(self, name: str, **parameters: Any) -> ExecutedNotebook:
        from warpkit.kit.runner import execute, notebook_parameters

        source = self._source(name)
        declared = notebook_parameters(source)
        unknown = sorted(set(parameters) - set(declared))
        if unknown:  # papermill would only log them; a test must not pass silently with a misspelt name
            pytest.fail(f"{source.stem} has no parameter(s) {unknown}; it declares {list(declared)}", pytrace=False)
        parameters = {"SIZE": "fast", **parameters, "INTERACTIVE": False}
        key = (str(source), tuple(sorted((k, repr(v)) for k, v in parameters.items())))
        if key not in self._cache:
            run_dir = self.workdir / f"{source.stem}-{len(self._cache)}"
            figures = run_dir / "figures"
            result = execute(source, run_dir / source.name, parameters, figures)
            if result.ok:
                self._cache[key] = ExecutedNotebook(
                    source.stem, result.path, result.records, result.seconds, figures, parameters
                )
            else:
                self._cache[key] = (
                    f"notebook {source.stem} failed with {parameters}: {result.error}\n"
                    f"executed copy (with the traceback): {result.path}"
                )
        outcome = self._cache[key]
        if isinstance(outcome, str):
            pytest.fail(outcome, pytrace=False)
        return outcome

    def _source(self, name: str) -> Path:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            return path
        path = self.notebooks_dir / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        if not path.is_file():
            available = sorted(p.stem for p in self.notebooks_dir.glob("*.ipynb"))
            raise FileNotFoundError(f"no notebook {path}; available: {', '.join(available) or '(none)'}")
        return path


def lesson_test_parameters(name: str, request) -> dict:
    """The parameters a lesson's own test executes it with, so other tests reuse that (cached) execution."""
    if name.startswith("05_maze"):
        return {"CHECKPOINT_DIR": request.getfixturevalue("maze_checkpoint_dir")}
    return {}


@pytest.fixture(scope="session")
def maze_checkpoint_dir(tmp_path_factory) -> str:
    """A fresh checkpoint folder for the maze lesson, shared by the tests that execute it (one execution)."""
    return str(tmp_path_factory.mktemp("maze-checkpoints"))


@pytest.fixture(scope="session")
def execute_notebook(tmp_path_factory) -> NotebookExecutor:
    """``execute_notebook("01_preconditioning", SEED=1)`` → :class:`ExecutedNotebook` (cached per session)."""
    return NotebookExecutor(tmp_path_factory.mktemp("executed-notebooks"))


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------
def omniglot_candidates() -> list[Path]:
    """Where the Omniglot test data may be, in order: ``$WARPKIT_DATA/omniglot``, ``<repo>/../shared/data/omniglot``."""
    candidates = []
    if os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]) / "omniglot")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "omniglot")
    return candidates


def find_omniglot() -> Path | None:
    """The first candidate folder that exists and holds files, else None."""
    for folder in omniglot_candidates():
        if folder.is_dir() and any(folder.iterdir()):
            return folder
    return None


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """The folder with the Omniglot zips (e.g. ``images_background_small1.zip``); skips when absent."""
    folder = find_omniglot()
    if folder is None:
        looked = ", ".join(str(p) for p in omniglot_candidates())
        pytest.skip(f"Omniglot test data not found (looked in {looked}); set {DATA_ENV} to a folder holding omniglot/")
    return folder


# ----------------------------------------------------------------------------------------------------------
# timeouts and CI strictness
# ----------------------------------------------------------------------------------------------------------
def pytest_collection_modifyitems(config, items):
    try:
        configured = config.getoption("timeout", None) or config.getini("timeout")
    except ValueError:  # pytest-timeout not installed: nothing to configure
        return
    if configured:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            limit = NOTEBOOK_TIMEOUT if item.get_closest_marker("notebook") else DEFAULT_TIMEOUT
            item.add_marker(pytest.mark.timeout(limit))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and os.environ.get(REQUIRE_BROWSER_ENV) == "1"
        and item.get_closest_marker("browser") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"browser test skipped but {REQUIRE_BROWSER_ENV}=1 requires it to run: {reason}\n"
            "Install Chromium (apt-get install chromium chromium-driver) or unset the variable locally."
        )
