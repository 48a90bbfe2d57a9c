"""The assignments in notebooks/assignments: solutions pass, student copies stop at their first stub, nothing
from a solution or a hidden test reaches a student, regeneration is byte-identical, and the public checks catch
typical wrong answers.

Kernel executions (one kernel per notebook) are the tests marked ``notebook``; everything else reads the
generated notebooks or runs a few cells in this process.
"""

import contextlib
import re
from pathlib import Path

import pytest

from warpkit.kit import assign
from warpkit.kit.assign import build_copy, load_assignment
from warpkit.kit.checks import CheckFailed

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "assignments"
SOURCES = assign.find_sources([ASSIGNMENTS_DIR])
NAMES = [source.stem for source in SOURCES]
LESSONS = ("a01_", "a02_", "a03_", "a04_", "a05_", "a06_")


@pytest.fixture(scope="module")
def assignments():
    return {source.stem: load_assignment(source) for source in SOURCES}


def region_lines(assignment, kind):
    """The content lines (markers excluded) of every region of ``kind``, stripped."""
    lines = []
    for cell in assignment.cells:
        for region in cell.regions:
            if region.kind == kind:
                lines += [line.strip() for line in cell.lines[region.start + 1:region.end - 1]]
    return lines


def outside_regions_lines(assignment):
    """Stripped lines of the source that are in no region and no instructor cell (what a student may see)."""
    lines = []
    for cell in assignment.cells:
        if cell.instructor_only:
            continue
        inside = set()
        for region in cell.regions:
            inside.update(range(region.start, region.end))
        lines += [line.strip() for i, line in enumerate(cell.lines) if i not in inside]
    return lines


def non_trivial(line: str) -> bool:
    """A line worth looking for: at least 4 characters with a letter or digit, not a bare comment marker."""
    return len(line) >= 4 and bool(re.search(r"[A-Za-z0-9]", line)) and line not in ("# %%", "####")


def student_text(assignment) -> tuple[str, set[str]]:
    notebook = build_copy(assignment, "student")
    text = "\n".join(cell.source for cell in notebook.cells)
    return text, {line.strip() for line in text.splitlines()}


def assert_absent(lines, assignment, what):
    text, student_lines = student_text(assignment)
    visible = set(outside_regions_lines(assignment))
    leaked = []
    for line in lines:
        if not non_trivial(line) or line in visible:  # also written outside the regions: not a leak
            continue
        if (len(line) >= 12 and line in text) or line in student_lines:
            leaked.append(line)
    assert not leaked, f"{assignment.name}: {what} lines in the student copy: {leaked}"


# ------------------------------------------------------------------------------------------------------
# structure
# ------------------------------------------------------------------------------------------------------
def test_one_assignment_per_lesson_with_two_to_four_exercises_each(assignments):
    assert [name[:4] for name in NAMES] == list(LESSONS)
    for name, assignment in assignments.items():
        exercises = assignment.exercises
        assert 2 <= len(exercises) <= 4, (name, exercises)
        assert region_lines(assignment, "hidden"), f"{name} has no hidden tests"
        visible = "\n".join(outside_regions_lines(assignment))
        for exercise in exercises:  # every code exercise is graded by its own public checks
            assert f'PublicChecks("{exercise}")' in visible, (name, exercise)
        assert any(cell.instructor_only for cell in assignment.cells), f"{name} has no instructor cell"
        assert any(cell.cell_type == "markdown" and cell.regions for cell in assignment.cells), \
            f"{name} has no written answer"


# ------------------------------------------------------------------------------------------------------
# what a student sees
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_no_solution_text_leaks_into_the_student_copy(assignments, name):
    assignment = assignments[name]
    solution_lines = region_lines(assignment, "solution")
    assert sum(map(non_trivial, solution_lines)) >= 6  # the check below looks at something
    assert_absent(solution_lines, assignment, "solution")
    text, _ = student_text(assignment)
    for exercise in assignment.exercises:
        assert f'raise NotImplementedError("Exercise {exercise}: ' in text
    assert "YOUR ANSWER HERE" in text


@pytest.mark.parametrize("name", NAMES)
def test_hidden_tests_and_instructor_cells_are_absent_from_the_student_copy(assignments, name):
    assignment = assignments[name]
    assert_absent(region_lines(assignment, "hidden"), assignment, "hidden test")
    instructor_lines = [line.strip() for cell in assignment.cells if cell.instructor_only for line in cell.lines]
    assert_absent(instructor_lines, assignment, "instructor-only")
    text, _ = student_text(assignment)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "hidden:", "Grading notes"):
        assert marker not in text


def test_regeneration_is_byte_identical(tmp_path):
    assert assign.main([str(ASSIGNMENTS_DIR), "--out", str(tmp_path / "one"), "--no-execute"]) == 0
    assert assign.main([str(ASSIGNMENTS_DIR), "--out", str(tmp_path / "two"), "--no-execute"]) == 0
    written = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert written == sorted(f"{name}_{which}.ipynb" for name in NAMES for which in ("student", "solution"))
    for file_name in written:
        assert (tmp_path / "one" / file_name).read_bytes() == (tmp_path / "two" / file_name).read_bytes()
    assert assign.main([str(ASSIGNMENTS_DIR), "--out", str(tmp_path / "one"), "--check", "--no-execute"]) == 0


# ------------------------------------------------------------------------------------------------------
# executing the copies: one kernel per notebook
# ------------------------------------------------------------------------------------------------------
@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_solution_copy_passes_every_public_and_hidden_check(assignments, name):
    assignment = assignments[name]
    result = assign.execute(build_copy(assignment, "solution"), timeout=300)
    assert result.ok, f"{name}: cell {result.failed_cell}: {result.error_name}: {result.error_value}"
    printed = "".join(output.get("text", "") for cell in result.notebook.cells for output in cell.get("outputs", []))
    for exercise in assignment.exercises:
        assert re.search(rf"^{re.escape(exercise)}: \d+ public checks passed$", printed, re.MULTILINE), exercise
    assert "all tests passed" not in printed.lower()


@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_student_copy_stops_at_its_first_stub_with_that_exercise_message(assignments, name):
    assignment = assignments[name]
    first = assignment.exercises[0]
    result = assign.execute(build_copy(assignment, "student"), timeout=300)
    assert not result.ok
    assert result.error_name == "NotImplementedError"
    assert result.error_value == f"Exercise {first}: replace these two lines with your code"
    failing_source = result.notebook.cells[result.failed_cell].source
    assert f"{first}(" in failing_source  # the cell that calls the first exercise, not some later one
    assert "public checks passed" not in "".join(
        output.get("text", "") for cell in result.notebook.cells for output in cell.get("outputs", []))


# ------------------------------------------------------------------------------------------------------
# the public checks catch typical wrong answers (cells run in this process: no kernel)
# ------------------------------------------------------------------------------------------------------
WRONG_ANSWERS = [
    # (assignment, exercise whose check must fail, solution text, the wrong answer)
    ("a01_preconditioning", "task_sgd_step", "p.detach() - lr * g", "p.detach() + lr * g"),
    ("a01_preconditioning", "preconditioned_step", "preconditioner = T @ T.T", "preconditioner = T.T @ T"),
    ("a01_preconditioning", "native_parameters", "(warp_weight @ task_weight)", "(task_weight)"),
    ("a02_meta_learning", "maml_gradient", "return jacobian.T @ task.gradient(final)", "return task.gradient(final)"),
    ("a02_meta_learning", "leap_gradient", "torch.sqrt(delta.pow(2).sum() + loss_delta**2)",
     "torch.sqrt(delta.pow(2).sum())"),
    ("a02_meta_learning", "collect_points", "for k, theta in enumerate(trajectory.params)",
     "for k, theta in enumerate([trajectory.params[0]] * len(trajectory.params))"),
    ("a03_riemannian_geometry", "inverse_metric", "return J @ J.transpose(-1, -2)",
     "return J.transpose(-1, -2) @ J"),
    ("a03_riemannian_geometry", "riemannian_step", "preconditioner @ grad(loss)(gamma)",
     "warp_jacobian(omega, theta).T @ warp_jacobian(omega, theta) @ grad(loss)(gamma)"),
    ("a04_warpgrad_objective", "inner_step", "theta[name] - lr * theta_gradient[name]",
     "theta[name] - theta_gradient[name]"),
    ("a04_warpgrad_objective", "first_order_objective", "frozen_step = {name: t.detach()",
     "frozen_step = {name: t"),
    ("a04_warpgrad_objective", "exact_objective", "differentiable_step = inner_step(theta, phi, task_batch, lr)",
     "differentiable_step = {n: t.detach() for n, t in inner_step(theta, phi, task_batch, lr).items()}"),
    ("a05_maze", "maze_walls", "grid[size // 2, size // 2] = False", "pass"),
    ("a05_maze", "move", "if walls[target] else target", "if False else target"),
    ("a05_maze", "teleport", "if (r, c) != tuple(goal)", ""),
    ("a06_continual", "segment_index", "return position.clamp(0, num_subtasks - 1)", "return position"),
    ("a06_continual", "continual_meta_loss", "return torch.stack(seen).mean()",
     "return torch.cat([((predict(x) - y) ** 2).flatten() for x, y in subtask_batches[:t]]).mean()"),
    ("a06_continual", "per_segment_losses", "((predict(x_grid) - y_grid) ** 2).mean()",
     "((predict(x_grid) - y_grid) ** 2).sum()"),
]


@contextlib.contextmanager
def quiet_torch_state():
    """Run notebook cells in this process without leaving torch's RNG, dtype or thread count changed."""
    import torch

    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.set_default_dtype(dtype)


@pytest.mark.parametrize("name, exercise, right, wrong", WRONG_ANSWERS,
                         ids=[f"{a[0][:3]}-{a[1]}" for a in WRONG_ANSWERS])
def test_public_checks_catch_a_typical_wrong_answer(tmp_path, name, exercise, right, wrong, capsys):
    source = ASSIGNMENTS_DIR / f"{name}.py"
    text = source.read_text(encoding="utf-8")
    assert text.count(right) == 1, f"the solution text {right!r} is not unique in {source.name}"
    mutated = tmp_path / source.name
    mutated.write_text(text.replace(right, wrong), encoding="utf-8")
    solution = build_copy(load_assignment(mutated), "solution")
    namespace = {"__name__": "__main__"}
    with quiet_torch_state(), pytest.raises(CheckFailed) as info:
        for index, cell in enumerate(solution.cells):
            if cell.cell_type == "code" and "instructor" not in cell.metadata.get("tags", []):
                exec(compile(cell.source, f"<{name} cell {index}>", "exec"), namespace)
    # the first failure is the public checks of the exercise that was made wrong (not a hidden test)
    assert info.value.check == exercise, str(info.value)
