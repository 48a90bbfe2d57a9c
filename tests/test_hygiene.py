"""Notebook hygiene: every lesson is a jupytext pair in sync, committed without outputs, with one literal-only
``parameters`` cell that declares what the runner sets.

Lessons are ``notebooks/NN_topic.py`` + ``notebooks/NN_topic.ipynb`` (both must exist). Under
``notebooks/assignments/`` a source may be a lone ``.py`` (the assign command generates the notebooks); where a
``.py``/``.ipynb`` pair does exist it must be in sync and output-free too. New notebooks are picked up
automatically.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

from warpkit.kit import runner

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
ASSIGNMENTS = NOTEBOOKS / "assignments"
#: name -> (type, allowed defaults or None for any value of that type)
REQUIRED_PARAMETERS = {
    "SEED": (int, None),
    "DEVICE": (str, {"auto"}),
    "SIZE": (str, {"fast", "full"}),
    "INTERACTIVE": (bool, {False}),
    "SHOW_PROGRESS": (bool, None),
    "SAVE_FIGS": (bool, None),
}


def lesson_stems() -> list[str]:
    stems = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py")} | {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    return sorted(stems)


def assignment_pairs() -> list[Path]:
    """``.py`` files under notebooks/assignments that have an ``.ipynb`` beside them (without suffix)."""
    if not ASSIGNMENTS.is_dir():
        return []
    return sorted(p.with_suffix("") for p in ASSIGNMENTS.rglob("*.py") if p.with_suffix(".ipynb").is_file())


def all_pairs() -> list[Path]:
    return [NOTEBOOKS / stem for stem in lesson_stems()] + assignment_pairs()


def pair_id(base: Path) -> str:
    return str(base.relative_to(NOTEBOOKS))


def _cells(notebook) -> list[tuple[str, str, tuple[str, ...]]]:
    return [
        (cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ())))
        for cell in notebook.cells
    ]


def _parameter_cells(notebook) -> list:
    return [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def check_parameters_source(source: str) -> dict[str, object]:
    """Return ``{name: value}`` of a parameters cell, raising AssertionError for anything but
    ``NAME = literal`` statements (comments allowed)."""
    tree = ast.parse(source)
    values: dict[str, object] = {}
    for statement in tree.body:
        line = ast.get_source_segment(source, statement)
        assert isinstance(statement, (ast.Assign, ast.AnnAssign)), f"not an assignment: {line!r}"
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        assert len(targets) == 1 and isinstance(targets[0], ast.Name), f"assign one plain name per line: {line!r}"
        assert statement.value is not None and _is_literal(statement.value), f"not a literal: {line!r}"
        values[targets[0].id] = ast.literal_eval(statement.value)
    return values


# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stem", lesson_stems())
def test_lesson_is_a_pair(stem):
    for suffix in (".py", ".ipynb"):
        assert (NOTEBOOKS / f"{stem}{suffix}").is_file(), (
            f"notebooks/{stem}{suffix} is missing: lessons are jupytext pairs. Create it with "
            f"jupytext --set-formats ipynb,py:percent notebooks/{stem}.py && jupytext --sync notebooks/{stem}.py"
        )


@pytest.mark.parametrize("base", all_pairs(), ids=pair_id)
def test_pair_is_in_sync(base):
    py, ipynb = base.with_suffix(".py"), base.with_suffix(".ipynb")
    if not (py.is_file() and ipynb.is_file()):
        pytest.skip("not a pair (see test_lesson_is_a_pair)")
    from_text, from_notebook = jupytext.read(py), jupytext.read(ipynb)
    text_cells, notebook_cells = _cells(from_text), _cells(from_notebook)
    for index, (a, b) in enumerate(zip(text_cells, notebook_cells)):
        assert a == b, (
            f"{pair_id(base)}: cell {index} differs between .py and .ipynb; run jupytext --sync {py.relative_to(REPO_ROOT)}"
            f"\n.py:    {a}\n.ipynb: {b}"
        )
    assert len(text_cells) == len(notebook_cells), (
        f"{pair_id(base)}: {len(text_cells)} cells in .py, {len(notebook_cells)} in .ipynb; run jupytext --sync"
    )


@pytest.mark.parametrize("base", all_pairs(), ids=pair_id)
def test_committed_notebook_has_no_outputs(base):
    ipynb = base.with_suffix(".ipynb")
    if not ipynb.is_file():
        pytest.skip("no .ipynb")
    notebook = nbformat.read(ipynb, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{ipynb.name}: cell {index} has outputs; executed copies go to _build/"
            assert cell.execution_count is None, f"{ipynb.name}: cell {index} has an execution count"
    assert "papermill" not in notebook.metadata, f"{ipynb.name} is an executed (papermill) copy, not a source"


@pytest.mark.parametrize("stem", lesson_stems())
def test_parameters_cell_is_literal_only_and_complete(stem):
    for path in (NOTEBOOKS / f"{stem}.py", NOTEBOOKS / f"{stem}.ipynb"):
        if not path.is_file():
            continue
        cells = _parameter_cells(jupytext.read(path))
        assert len(cells) == 1, (
            f"{path.name}: {len(cells)} cells tagged 'parameters', expected exactly one "
            '(# %% tags=["parameters"] in the .py)'
        )
        values = check_parameters_source(cells[0].source)
        for name, (kind, allowed) in REQUIRED_PARAMETERS.items():
            assert name in values, f"{path.name}: the parameters cell lacks {name}"
            value = values[name]
            assert type(value) is kind, f"{path.name}: {name} = {value!r} should be a {kind.__name__}"
            assert allowed is None or value in allowed, f"{path.name}: {name} = {value!r}, expected one of {sorted(allowed)}"


@pytest.mark.parametrize("stem", lesson_stems())
def test_every_runner_option_maps_to_a_parameter(stem, tmp_path):
    """--size (every size the notebook offers), --device (every choice) and INTERACTIVE plan without refusal."""
    notebook = NOTEBOOKS / f"{stem}.ipynb"
    if not notebook.is_file():
        pytest.skip("no .ipynb (see test_lesson_is_a_pair)")
    declared = runner.notebook_parameters(notebook)
    sizes = runner.allowed_sizes(declared)
    assert {"fast", "full"} <= set(sizes), f"{stem} must offer the sizes fast and full, offers {sizes}"
    assert declared["SIZE"].default in sizes
    for size in sizes:
        for device in runner.DEVICES:
            (job,) = runner.plan([notebook], tmp_path, size=size, device=device)
            assert job.parameters == {"SIZE": size, "DEVICE": device, "INTERACTIVE": False}
    options = {action.dest for action in runner.build_parser()._actions}
    assert {"size", "device"} <= options
    assert set(runner.RUNNER_PARAMETERS) <= set(declared)


def test_lessons_exist_and_are_numbered_uniquely():
    stems = lesson_stems()
    assert stems, "no lessons found in notebooks/"
    numbers = [stem[:2] for stem in stems]
    assert len(numbers) == len(set(numbers)), f"two lessons share a number: {stems}"
    assert [p.stem for p in runner.lesson_notebooks(NOTEBOOKS)] == [s for s in stems if (NOTEBOOKS / f"{s}.ipynb").is_file()]


# the checker itself must be able to fail ------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    ["SEED = 1 + 1", "SEED = seed()", "A = B = 1", "import os", "SEED, X = 0, 1", "if True:\n    SEED = 0",
     "SIZE = FAST"],
)
def test_parameters_checker_refuses_non_literals(source):
    with pytest.raises(AssertionError):
        check_parameters_source(source)


def test_parameters_checker_accepts_literals_and_comments():
    values = check_parameters_source('SEED = 0  # seed\nSIZE = "fast"  # one of "fast", "full"\nRATE = -1e-3\nXS = [1, 2]\n# a note')
    assert values == {"SEED": 0, "SIZE": "fast", "RATE": -1e-3, "XS": [1, 2]}
