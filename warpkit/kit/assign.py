r"""``python -m warpkit assign``: student and solution copies of an assignment, and proof that the solution passes.

Source format
-------------
An assignment source is a jupytext ``py:percent`` file (``notebooks/assignments/a01_preconditioning.py``;
reviewable as text, diffs cleanly) or an ``.ipynb`` notebook. It is marked the way nbgrader marks its source
notebooks, so an instructor can move to nbgrader later:

* ``### BEGIN SOLUTION`` / ``### END SOLUTION`` around the answer, in a code cell or a markdown cell
  (in a ``py:percent`` markdown cell the lines read ``# ### BEGIN SOLUTION``);
* ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` around instructor tests in a code cell;
* a cell tagged ``instructor`` (``# %% tags=["instructor"]``) is left out of the student copy altogether
  (grading notes, answer keys, checks against library internals).

Each code solution region belongs to an exercise whose name is shown to the student when the stub raises. The
name is the argument of the marker if there is one (``### BEGIN SOLUTION riemannian_step``, still a valid
nbgrader marker since nbgrader only looks for ``BEGIN SOLUTION`` in the line), otherwise the name of the
innermost function the region sits in (``def preconditioned_step(...):``). A region outside any function needs
the argument.

Markers must be whole lines, may not nest, must close in the cell where they open, and hidden tests belong in
code cells only; anything else is refused with the file's line number (``.py``) or the cell and line
(``.ipynb``). A line that mentions BEGIN/END SOLUTION or HIDDEN TESTS but is not a well-formed marker is refused
too: a mistyped marker would hand the solution to the students.

What is written
---------------
For a source ``NAME.py``, ``DIR/NAME_student.ipynb`` and ``DIR/NAME_solution.ipynb``:

* **student copy**: every code solution region replaced (at its indentation) by ::

      # YOUR CODE HERE
      raise NotImplementedError("Exercise NAME: replace these two lines with your code")

  every markdown solution region by ``YOUR ANSWER HERE``; hidden-test regions and ``instructor`` cells removed
  (a cell left empty is dropped); no outputs.
* **solution copy**: every cell, markers included (it is exactly nbgrader's "source" version), no outputs.

Both are byte-stable: nbformat 4.5 JSON with sorted keys, no timestamps or tool versions, and cell ids derived
from the assignment's name and the cell's position in the source (``sha256("NAME/cell-INDEX")``), so a cell has
the same id in both copies and regenerating gives identical bytes.

Then the solution copy is executed headlessly (nbclient, one kernel per notebook, ``WARPKIT_HEADLESS=1``,
``MPLBACKEND=Agg``, ``OMP_NUM_THREADS=1`` unless set, figures into a temporary folder). If any cell raises — a
public check, a hidden test, the solution itself — the command names the cell, its line in the source and the
error, and exits with status 1.
``--check-student`` also executes each student copy and requires it to stop at its first stub, with that
exercise's ``NotImplementedError``. ``--check`` writes nothing and reports copies in ``DIR`` that differ from a
fresh generation (a freshness check for CI: the student copy is generated, never hand-maintained).

Exit status: 0 success, 1 a copy failed its execution or is stale, 2 bad usage or a malformed source.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import nbformat

from warpkit.kit.folders import folder_problem

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
END_HIDDEN_TESTS = "### END HIDDEN TESTS"
INSTRUCTOR_TAG = "instructor"
TEXT_STUB = "YOUR ANSWER HERE"
CODE_STUB_COMMENT = "# YOUR CODE HERE"
SOURCE_SUFFIXES = (".py", ".ipynb")

# A marker line: optional indentation, optionally the "# " that py:percent puts before markdown lines, then
# "### BEGIN SOLUTION [name]" and the like.
_MARKER = re.compile(
    r"^(?P<indent>[ \t]*)(?:#[ \t]*)?###[ \t]*(?P<edge>BEGIN|END)[ \t]+(?P<kind>SOLUTION|HIDDEN TESTS)"
    r"(?:[ \t]+(?P<argument>\S.*?))?[ \t]*$"
)
# a mistyped marker ("## BEGIN SOLUTION", "### BEGIN SOLUTON", "### begin solution", "BEGIN HIDDEN TEST") must
# not slip through; prose such as "before we begin testing" is left alone
_LOOKS_LIKE_MARKER = re.compile(
    r"\b(BEGIN|END)[ \t_-]*(?i:SOLU|HIDDEN|TEST)|(?i:^[ \t]*(#[ \t]*)?#{2,}[ \t]*(BEGIN|END)\b)"
)
_EXERCISE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async[ \t]+)?def[ \t]+(?P<name>[A-Za-z_]\w*)[ \t]*\(")
_PERCENT_HEADER = re.compile(r"^#[ \t]?%%(?!%)")


class AssignmentError(ValueError):
    """A malformed assignment source; the message names the place (file line, or cell and line)."""


# ----------------------------------------------------------------------------------------------------------
# reading a source and finding its marked regions
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Region:
    """A marked part of one cell: lines ``[start, end)`` of its source, marker lines included."""

    kind: str  # "solution" or "hidden"
    start: int  # index of the BEGIN line
    end: int  # index after the END line
    indent: str = ""
    exercise: str | None = None  # code solution regions only


@dataclass
class SourceCell:
    index: int
    cell_type: str  # "code" or "markdown" (raw cells pass through as markdown-less "raw")
    lines: list[str]
    tags: list[str]
    regions: list[Region] = field(default_factory=list)
    first_line: int | None = None  # line number of the cell's first source line in a .py file (1-based)

    @property
    def instructor_only(self) -> bool:
        return INSTRUCTOR_TAG in self.tags


@dataclass
class Assignment:
    """A parsed, validated source."""

    name: str
    path: Path
    cells: list[SourceCell]

    @property
    def exercises(self) -> list[str]:
        """Names of the code exercises in source order (each name once)."""
        names: list[str] = []
        for cell in self.cells:
            for region in cell.regions:
                if region.exercise and region.exercise not in names:
                    names.append(region.exercise)
        return names

    def locate(self, cell_index: int, line_index: int = 0) -> str:
        """Where a cell's line is, in words an instructor can jump to."""
        cell = self.cells[cell_index]
        if cell.first_line is not None:
            return f"{self.path.name} line {cell.first_line + line_index}"
        return f"{self.path.name} cell {cell_index + 1}, line {line_index + 1}"


def _read_cells(path: Path) -> list[SourceCell]:
    """The cells of a source (with their first line in the file for a .py source)."""
    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=4)
        raw_lines: list[str] | None = None
    elif path.suffix == ".py":
        import jupytext

        text = path.read_text(encoding="utf-8")
        notebook = jupytext.reads(text, fmt="py:percent")
        raw_lines = text.splitlines()
    else:
        raise AssignmentError(f"{path}: an assignment source is a .py (jupytext py:percent) or .ipynb file")
    cells = []
    for index, cell in enumerate(notebook.cells):
        tags = [str(tag) for tag in cell.get("metadata", {}).get("tags", [])]
        cells.append(SourceCell(index, cell.cell_type, cell.source.splitlines(), tags))
    if raw_lines is not None:
        headers = [number for number, line in enumerate(raw_lines, start=1) if _PERCENT_HEADER.match(line)]
        if len(headers) == len(cells):
            for cell, header in zip(cells, headers):
                cell.first_line = header + 1
    return cells


def _find_regions(assignment: Assignment, cell: SourceCell) -> list[Region]:
    """Validate the markers of one cell and return its regions (see the module docstring for the rules)."""
    regions: list[Region] = []
    open_region: Region | None = None
    where = functools.partial(assignment.locate, cell.index)  # line index → "file:line" for messages
    for i, line in enumerate(cell.lines):
        match = _MARKER.match(line)
        if match is None:
            _refuse_lookalike(where(i), line)
            continue
        region_kind = "solution" if match["kind"] == "SOLUTION" else "hidden"
        if match["edge"] == "BEGIN":
            _check_begin(where, i, line, match, region_kind, open_region, cell)
            open_region = Region(region_kind, i, -1, indent=match["indent"], exercise=match["argument"])
        else:
            _check_end(where, i, line, match, region_kind, open_region, cell)
            open_region.end = i + 1
            regions.append(open_region)
            open_region = None
    if open_region is not None:
        closing = END_SOLUTION if open_region.kind == "solution" else END_HIDDEN_TESTS
        raise AssignmentError(
            f"{where(open_region.start)}: unterminated marker {cell.lines[open_region.start].strip()!r}: "
            f"no {closing!r} before the end of the cell"
        )
    _name_exercises(where, regions, cell)
    return regions


def _refuse_lookalike(place: str, line: str) -> None:
    if _LOOKS_LIKE_MARKER.search(line):
        raise AssignmentError(
            f"{place}: {line.strip()!r} looks like a marker but is not one; write exactly "
            f"{BEGIN_SOLUTION!r}, {END_SOLUTION!r}, {BEGIN_HIDDEN_TESTS!r} or {END_HIDDEN_TESTS!r} "
            "on a line of its own"
        )


def _check_begin(where, i: int, line: str, match, region_kind: str, open_region: Region | None,
                 cell: SourceCell) -> None:
    """A BEGIN marker: not nested, hidden tests only in code cells and unnamed, an exercise name one word."""
    argument = match["argument"]
    if open_region is not None:
        raise AssignmentError(
            f"{where(i)}: nested marker {line.strip()!r} inside the {open_region.kind} region opened at "
            f"{where(open_region.start)}; close that region with "
            f"{END_SOLUTION if open_region.kind == 'solution' else END_HIDDEN_TESTS!r} first"
        )
    if region_kind == "hidden" and cell.cell_type != "code":
        raise AssignmentError(f"{where(i)}: hidden tests belong in a code cell, not a {cell.cell_type} cell")
    if region_kind == "hidden" and argument:
        raise AssignmentError(f"{where(i)}: {BEGIN_HIDDEN_TESTS!r} takes no argument, got {argument!r}")
    if argument and not _EXERCISE_NAME.match(argument):
        raise AssignmentError(
            f"{where(i)}: the exercise name {argument!r} must be one word "
            "(letters, digits, '_', '.', '-'), e.g. '### BEGIN SOLUTION riemannian_step'"
        )


def _check_end(where, i: int, line: str, match, region_kind: str, open_region: Region | None,
               cell: SourceCell) -> None:
    """An END marker: no argument, closes an open region of its kind, which is not empty."""
    if match["argument"]:
        raise AssignmentError(f"{where(i)}: an END marker takes no argument, got {match['argument']!r}")
    if open_region is None:
        raise AssignmentError(f"{where(i)}: {line.strip()!r} closes a region that was never opened")
    if open_region.kind != region_kind:
        raise AssignmentError(
            f"{where(i)}: {line.strip()!r} cannot close the {open_region.kind} region opened at "
            f"{where(open_region.start)}"
        )
    if not any(text.strip() for text in cell.lines[open_region.start + 1 : i]):
        raise AssignmentError(f"{where(open_region.start)}: the {region_kind} region is empty")


def _name_exercises(where, regions: list[Region], cell: SourceCell) -> None:
    """A code solution without a name on its marker belongs to the function it sits in."""
    for region in regions:
        if region.kind == "solution" and cell.cell_type == "code" and region.exercise is None:
            region.exercise = _enclosing_function(cell.lines, region)
            if region.exercise is None:
                raise AssignmentError(
                    f"{where(region.start)}: cannot tell which exercise this solution belongs to: put it inside "
                    "a function, or name it on the marker, e.g. '### BEGIN SOLUTION my_exercise'"
                )


def _enclosing_function(lines: Sequence[str], region: Region) -> str | None:
    """The innermost ``def NAME(`` above the region with a smaller indentation than its BEGIN line."""
    width = len(region.indent.expandtabs(4))
    for line in reversed(lines[: region.start]):
        match = _DEF.match(line)
        if match and len(match["indent"].expandtabs(4)) < width:
            return match["name"]
    return None


def load_assignment(path: str | os.PathLike) -> Assignment:
    """Read and validate an assignment source; raises :class:`AssignmentError` with a location on bad markers."""
    path = Path(path)
    if not path.is_file():
        raise AssignmentError(f"{path}: no such file")
    cells = _read_cells(path)
    assignment = Assignment(path.stem, path, cells)
    for cell in cells:
        cell.regions = _find_regions(assignment, cell)
    if not any(region.kind == "solution" for cell in cells for region in cell.regions):
        raise AssignmentError(f"{path}: no {BEGIN_SOLUTION!r} region, so there is nothing for a student to do")
    return assignment


# ----------------------------------------------------------------------------------------------------------
# the two copies
# ----------------------------------------------------------------------------------------------------------
def code_stub(exercise: str, indent: str = "") -> list[str]:
    """The lines that replace a code solution region in the student copy."""
    return [
        indent + CODE_STUB_COMMENT,
        indent + f'raise NotImplementedError("Exercise {exercise}: replace these two lines with your code")',
    ]


def _student_lines(cell: SourceCell) -> list[str]:
    lines: list[str] = []
    position = 0
    for region in cell.regions:
        lines += cell.lines[position : region.start]
        if region.kind == "solution":
            lines += code_stub(region.exercise, region.indent) if cell.cell_type == "code" else [TEXT_STUB]
        position = region.end
    lines += cell.lines[position:]
    return lines


def cell_id(assignment_name: str, source_index: int) -> str:
    """A deterministic nbformat 4.5 cell id for the ``source_index``-th cell of an assignment."""
    return hashlib.sha256(f"{assignment_name}/cell-{source_index}".encode()).hexdigest()[:16]


def _new_cell(assignment: Assignment, cell: SourceCell, lines: list[str]):
    source = "\n".join(lines).strip("\n")
    metadata = {"tags": list(cell.tags)} if cell.tags else {}
    if cell.cell_type == "code":
        node = nbformat.v4.new_code_cell(source, metadata=metadata)
    elif cell.cell_type == "markdown":
        node = nbformat.v4.new_markdown_cell(source, metadata=metadata)
    else:
        node = nbformat.v4.new_raw_cell(source, metadata=metadata)
    node["id"] = cell_id(assignment.name, cell.index)
    return node


def build_copy(assignment: Assignment, which: str) -> nbformat.NotebookNode:
    """The ``"student"`` or ``"solution"`` copy as an nbformat 4.5 notebook without outputs."""
    if which not in ("student", "solution"):
        raise ValueError(f"build_copy(): which must be 'student' or 'solution', got {which!r}")
    notebook = nbformat.v4.new_notebook()
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "warpkit": {
            "assignment": assignment.name,
            "copy": which,
            "exercises": assignment.exercises,
            "generated_from": assignment.path.name,
            "generated_by": "python -m warpkit assign (do not edit by hand; edit the source and regenerate)",
        },
    }
    for cell in assignment.cells:
        if which == "solution":
            notebook.cells.append(_new_cell(assignment, cell, cell.lines))
            continue
        if cell.instructor_only:
            continue
        lines = _student_lines(cell)
        if not any(line.strip() for line in lines):
            continue
        notebook.cells.append(_new_cell(assignment, cell, lines))
    nbformat.validate(notebook)
    return notebook


def notebook_bytes(notebook: nbformat.NotebookNode) -> bytes:
    """Deterministic JSON bytes: nbformat's writer (sorted keys, indent 1) plus a final newline."""
    text = nbformat.writes(notebook, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def output_paths(assignment: Assignment, out_dir: str | os.PathLike) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {which: out_dir / f"{assignment.name}_{which}.ipynb" for which in ("student", "solution")}


def generate(assignment: Assignment, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write both copies into ``out_dir`` (created if needed); returns ``{"student": path, "solution": path}``."""
    paths = output_paths(assignment, out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for which, path in paths.items():
        data = notebook_bytes(build_copy(assignment, which))
        if not path.exists() or path.read_bytes() != data:  # leave an identical file (and its mtime) alone
            path.write_bytes(data)
    return paths


def stale_copies(assignment: Assignment, out_dir: str | os.PathLike) -> list[str]:
    """The copies in ``out_dir`` that are missing or differ from a fresh generation (as messages)."""
    problems = []
    for which, path in output_paths(assignment, out_dir).items():
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != notebook_bytes(build_copy(assignment, which)):
            problems.append(f"{path}: differs from a fresh generation from {assignment.path}")
    return problems


# ----------------------------------------------------------------------------------------------------------
# executing a copy
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ExecutionResult:
    """How an execution went. ``failed_cell`` indexes the executed notebook's cells."""

    ok: bool
    seconds: float
    notebook: nbformat.NotebookNode
    failed_cell: int | None = None
    error_name: str | None = None
    error_value: str | None = None


class _CurrentCell:
    """nbclient's ``on_cell_start`` callback: remembers which cell runs, to name the one that failed."""

    index: int | None = None

    def __call__(self, cell, cell_index: int) -> None:
        self.index = cell_index


def execute(notebook: nbformat.NotebookNode, timeout: int = 600, kernel_name: str = "python3") -> ExecutionResult:
    """Run a copy of ``notebook`` in one fresh kernel, headless, in a temporary working directory, stopping at
    the first cell that raises. Nothing is written to the repository (figures go to the temporary folder)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from traitlets.config import Config

    notebook = copy.deepcopy(notebook)
    current = _CurrentCell()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="warpkit-assign-") as workdir:
        env = dict(os.environ, WARPKIT_HEADLESS="1", MPLBACKEND="Agg",
                   WARPKIT_FIGURES_DIR=str(Path(workdir) / "figures"))
        # assignments use tiny tensors: one thread is fastest, and far faster on a busy machine
        env.setdefault("OMP_NUM_THREADS", "1")
        config = Config()
        config.KernelManager.transport_encryption = "auto"  # local CurveZMQ keys: no plain-TCP warning
        client = NotebookClient(
            notebook, timeout=timeout, kernel_name=kernel_name, resources={"metadata": {"path": workdir}},
            on_cell_start=current, config=config,
            shutdown_kernel="immediate",  # the kernel's state is thrown away: no graceful wait
        )
        try:
            client.execute(env=env)
        except CellExecutionError as error:
            return ExecutionResult(False, time.perf_counter() - started, notebook, current.index,
                                   error.ename, error.evalue)
        except CellTimeoutError as error:
            return ExecutionResult(False, time.perf_counter() - started, notebook, current.index,
                                   "CellTimeoutError", f"the cell ran longer than {timeout} s ({error})")
        except DeadKernelError as error:
            return ExecutionResult(False, time.perf_counter() - started, notebook, current.index,
                                   "DeadKernelError", str(error))
    return ExecutionResult(True, time.perf_counter() - started, notebook)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_FRAME = re.compile(r"Cell In\[\d+\], line (\d+)")


def _error_line(notebook: nbformat.NotebookNode, cell_index: int) -> int | None:
    """The 0-based line of the failing cell where its error was raised (from IPython's traceback), if known."""
    for output in notebook.cells[cell_index].get("outputs", []):
        if output.get("output_type") == "error":
            match = _CELL_FRAME.search(_ANSI.sub("", "\n".join(output.get("traceback", []))))
            if match:
                return int(match.group(1)) - 1
    return None


def check_solution(assignment: Assignment, timeout: int = 600, kernel_name: str = "python3") -> tuple[bool, str]:
    """Execute the solution copy; returns (passed, a one-paragraph report)."""
    result = execute(build_copy(assignment, "solution"), timeout=timeout, kernel_name=kernel_name)
    if result.ok:
        return True, f"solution copy passes ({result.seconds:.1f} s)"
    index = result.failed_cell
    if index is None:
        place = "an unknown cell"
    else:
        line = _error_line(result.notebook, index)
        source_lines = assignment.cells[index].lines
        leading_blank = len(source_lines) - len("\n".join(source_lines).lstrip("\n").splitlines())
        if line is None:
            place = f"cell {index + 1}, {assignment.locate(index, leading_blank)}"
        else:
            place = f"cell {index + 1}, {assignment.locate(index, leading_blank + line)}: " \
                    f"{result.notebook.cells[index].source.splitlines()[line].strip()!r}"
    return False, f"the solution copy FAILED in {place}\n{result.error_name}: {result.error_value}"


def check_student(assignment: Assignment, timeout: int = 600, kernel_name: str = "python3") -> tuple[bool, str]:
    """Execute the student copy; it must stop with the first exercise's ``NotImplementedError``."""
    exercises = assignment.exercises
    if not exercises:
        return True, "student copy has no code exercises (markdown answers only)"
    result = execute(build_copy(assignment, "student"), timeout=timeout, kernel_name=kernel_name)
    expected = f"Exercise {exercises[0]}:"
    if result.ok:
        return False, f"the student copy ran to the end, but it should stop at exercise {exercises[0]!r}"
    if result.error_name == "NotImplementedError" and (result.error_value or "").startswith(expected):
        return True, f"student copy stops at its first exercise, {exercises[0]!r} ({result.seconds:.1f} s)"
    index = result.failed_cell
    return False, (
        f"the student copy should stop with NotImplementedError({expected} ...), but cell "
        f"{index + 1 if index is not None else '?'} raised {result.error_name}: {result.error_value}"
    )


# ----------------------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------------------
def find_sources(arguments: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into assignment sources. A folder contributes its ``*.py`` and ``*.ipynb``
    files (not recursively; names starting with ``_`` or ``.`` skipped); a ``.py`` wins over an ``.ipynb`` of
    the same name (a jupytext pair)."""
    sources: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix in SOURCE_SUFFIXES and not p.name.startswith(("_", ".")))
            stems_with_py = {p.stem for p in found if p.suffix == ".py"}
            found = [p for p in found if p.suffix == ".py" or p.stem not in stems_with_py]
            if not found:
                raise AssignmentError(f"{path}: the folder holds no assignment source (*.py or *.ipynb)")
            sources += found
        elif path.is_file():
            if path.suffix not in SOURCE_SUFFIXES:
                raise AssignmentError(f"{path}: an assignment source is a .py (py:percent) or .ipynb file")
            sources.append(path)
        else:
            raise AssignmentError(f"{path}: no such file or folder")
    names: dict[str, Path] = {}
    for source in sources:
        if source.stem in names and names[source.stem].resolve() != source.resolve():
            raise AssignmentError(f"{source} and {names[source.stem]} would write the same output files; rename one")
        names[source.stem] = source
    return list(dict.fromkeys(sources))


def check_out_dir(out: str | os.PathLike, arguments: Iterable[str | os.PathLike], sources: Sequence[Path],
                  writing: bool = True) -> None:
    """Refuse (:class:`AssignmentError`) an ``--out`` that is a file, that cannot be created or written to (when
    ``writing``), or that is a folder holding sources: the generated copies would be read back as sources by
    the next run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AssignmentError(f"--out {out} is a file, not a folder")
    resolved = out.resolve()
    source_folders = {Path(a).resolve() for a in arguments if Path(a).is_dir()}
    source_folders |= {source.resolve().parent for source in sources}
    if resolved in source_folders:
        raise AssignmentError(f"--out {out} is a folder the sources are read from; the generated copies would be "
                              "taken for sources next time. Choose another --out (e.g. _build/assignments)")
    problem = folder_problem(out, "--out") if writing else None
    if problem:
        raise AssignmentError(problem)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m warpkit assign",
        description="Write DIR/NAME_student.ipynb and DIR/NAME_solution.ipynb from assignment sources, then "
                    "execute each solution copy and fail if any check in it fails.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="assignment sources (.py percent or .ipynb) or folders of them")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the generated notebooks")
    parser.add_argument("--no-execute", action="store_true", help="only generate; do not execute the solution")
    parser.add_argument("--check-student", action="store_true",
                        help="also execute each student copy: it must stop at its first exercise's stub")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if a copy in DIR is missing or differs from a fresh generation")
    parser.add_argument("--timeout", type=int, default=600, metavar="SECONDS", help="per-cell time limit")
    parser.add_argument("--kernel", default="python3", metavar="NAME",
                        help="Jupyter kernel to execute with (one whose Python has warpkit installed)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        sources = find_sources(args.sources)
        assignments = [load_assignment(source) for source in sources]
        check_out_dir(args.out, args.sources, sources, writing=not args.check)
    except AssignmentError as error:
        print(f"python -m warpkit assign: {error}", file=sys.stderr)
        return 2
    failures = 0
    for assignment in assignments:
        label = f"{assignment.name} ({len(assignment.exercises)} exercises: {', '.join(assignment.exercises)})"
        if args.check:
            problems = stale_copies(assignment, args.out)
            for problem in problems:
                print(f"STALE  {problem}", file=sys.stderr)
            failures += bool(problems)
            if not problems:
                print(f"fresh  {label}")
        else:
            try:
                paths = generate(assignment, args.out)
            except OSError as error:
                print(f"python -m warpkit assign: cannot write into --out {args.out}: {error.strerror or error}",
                      file=sys.stderr)
                return 2
            print(f"wrote  {paths['student']} and {paths['solution']}: {label}")
        checks = [] if args.no_execute else [check_solution]
        checks += [check_student] if args.check_student else []
        for check in checks:
            passed, report = check(assignment, timeout=args.timeout, kernel_name=args.kernel)
            print(f"{'ok' if passed else 'FAILED':6} {assignment.name}: {report}",
                  file=sys.stdout if passed else sys.stderr)
            failures += not passed
    if failures:
        print(f"python -m warpkit assign: {failures} problem(s); see the messages above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
