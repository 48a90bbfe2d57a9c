"""warpkit.kit.assign on small hand-written sources: markers, the two copies, byte-stability, the command line.

The real assignments are tested in tests/test_assignments.py; here every source is a few lines, so each
expectation (a line number, a stub, an id) can be checked by hand. Only the tests marked ``notebook`` start a
kernel, on notebooks without torch.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from warpkit.kit import assign
from warpkit.kit.assign import AssignmentError, build_copy, load_assignment


GOOD = '''\
# %% [markdown]
# # A tiny assignment

# %%
import math

# %%
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    doubled = 2 * x
    return doubled
    ### END SOLUTION

# %%
assert double(2) == 4
print("double: public checks passed")
### BEGIN HIDDEN TESTS
assert double(-1) == -2, "secret"
### END HIDDEN TESTS

# %%
### BEGIN SOLUTION area_of_circle
area = math.pi * 2.0 ** 2
### END SOLUTION
assert abs(area - 12.566) < 1e-3

# %% [markdown]
# Why is doubling linear?

# %% [markdown]
# ### BEGIN SOLUTION
# Because 2(a + b) = 2a + 2b.
# ### END SOLUTION

# %% tags=["instructor"]
GRADING_NOTE = "instructors only"
'''


def write(tmp_path: Path, text: str, name: str = "a00_tiny.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def sources(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells]


# ------------------------------------------------------------------------------------------------------
# parsing and refusing bad markers
# ------------------------------------------------------------------------------------------------------
def test_exercise_names_come_from_the_function_or_the_marker_argument(tmp_path):
    assignment = load_assignment(write(tmp_path, GOOD))
    assert assignment.name == "a00_tiny"
    assert assignment.exercises == ["double", "area_of_circle"]


def test_the_innermost_enclosing_function_names_the_exercise(tmp_path):
    source = write(tmp_path, '''\
        # %%
        def outer(x):
            def inner(y):
                ### BEGIN SOLUTION
                return y
                ### END SOLUTION
            return inner(x)
        ''')
    assert load_assignment(source).exercises == ["inner"]


@pytest.mark.parametrize("body, line, words", [
    ("# %%\ndef f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n", 4,
     "nested marker"),
    ("# %%\ndef f():\n    ### BEGIN SOLUTION\n    pass\n\n# %%\nx = 1\n", 3, "unterminated marker"),
    ("# %%\nx = 1\n### END SOLUTION\n", 3, "closes a region that was never opened"),
    ("# %%\ndef f():\n    ### BEGIN SOLUTION\n    ### BEGIN HIDDEN TESTS\n", 4, "nested marker"),
    ("# %%\n### BEGIN HIDDEN TESTS\nx = 1\n### END SOLUTION\n", 4, "cannot close the hidden region"),
    ("# %%\nx = 1\n# %% [markdown]\n# ### BEGIN HIDDEN TESTS\n# x\n# ### END HIDDEN TESTS\n", 4,
     "hidden tests belong in a code cell"),
    ("# %%\ndef f():\n    ## BEGIN SOLUTION\n    pass\n", 3, "looks like a marker but is not one"),
    ("# %%\ndef f():\n    ### BEGIN SOLUTON\n", 3, "looks like a marker"),
    ("# %%\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", 2, "cannot tell which exercise"),
    ("# %%\n### BEGIN SOLUTION two words\nx = 1\n### END SOLUTION\n", 2, "must be one word"),
    ("# %%\ndef f():\n    ### BEGIN SOLUTION\n\n    ### END SOLUTION\n", 3, "region is empty"),
    ("# %%\ndef f():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION f\n", 5, "takes no argument"),
])
def test_malformed_markers_are_refused_with_the_line_number(tmp_path, body, line, words):
    source = write(tmp_path, "# %% [markdown]\n# Title\n\n" + body)  # 3 lines before `body`
    with pytest.raises(AssignmentError) as info:
        load_assignment(source)
    message = str(info.value)
    assert f"a00_tiny.py line {line + 3}:" in message, message
    assert words in message
    # the line number points at the offending marker in the file
    offending = source.read_text().splitlines()[line + 3 - 1]
    assert any(word in offending for word in ("BEGIN", "END", "SOLUTON")), offending


def test_a_source_without_solution_regions_is_refused(tmp_path):
    with pytest.raises(AssignmentError, match="nothing for a student to do"):
        load_assignment(write(tmp_path, "# %%\nx = 1\n"))


def test_an_ipynb_source_is_accepted_and_located_by_cell_and_line(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
    ]
    good = tmp_path / "a09_nb.ipynb"
    nbformat.write(notebook, good)
    assert load_assignment(good).exercises == ["f"]
    notebook.cells[1].source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n"
    bad = tmp_path / "a10_nb.ipynb"
    nbformat.write(notebook, bad)
    with pytest.raises(AssignmentError, match=r"a10_nb.ipynb cell 2, line 2: unterminated"):
        load_assignment(bad)


# ------------------------------------------------------------------------------------------------------
# the two copies
# ------------------------------------------------------------------------------------------------------
def test_student_copy_has_stubs_placeholders_and_no_hidden_or_instructor_content(tmp_path):
    student = build_copy(load_assignment(write(tmp_path, GOOD)), "student")
    cells = sources(student)
    assert cells[2] == textwrap.dedent('''\
        def double(x):
            """Twice x."""
            # YOUR CODE HERE
            raise NotImplementedError("Exercise double: replace these two lines with your code")''')
    assert cells[3] == 'assert double(2) == 4\nprint("double: public checks passed")'
    assert cells[4] == ('# YOUR CODE HERE\nraise NotImplementedError("Exercise area_of_circle: replace these two '
                        'lines with your code")\nassert abs(area - 12.566) < 1e-3')
    assert cells[6] == "YOUR ANSWER HERE"
    text = "\n".join(cells)
    for secret in ("doubled", "math.pi", "2(a + b)", "secret", "GRADING_NOTE", "BEGIN", "END"):
        assert secret not in text
    assert len(cells) == 7  # the instructor cell is gone
    assert all(cell.get("outputs", []) == [] for cell in student.cells)
    assert all(cell.get("execution_count") is None for cell in student.cells if cell.cell_type == "code")


def test_solution_copy_keeps_every_cell_and_the_markers(tmp_path):
    assignment = load_assignment(write(tmp_path, GOOD))
    solution = build_copy(assignment, "solution")
    assert len(solution.cells) == len(assignment.cells) == 8
    assert solution.cells[-1].metadata == {"tags": ["instructor"]}
    text = "\n".join(sources(solution))
    for kept in ("### BEGIN SOLUTION", "doubled = 2 * x", "### BEGIN HIDDEN TESTS", "secret", "GRADING_NOTE",
                 "Because 2(a + b) = 2a + 2b."):
        assert kept in text


def test_a_cell_left_empty_in_the_student_copy_is_dropped(tmp_path):
    source = write(tmp_path, GOOD + "\n# %%\n### BEGIN HIDDEN TESTS\nassert double(3) == 6\n### END HIDDEN TESTS\n")
    assignment = load_assignment(source)
    assert len(build_copy(assignment, "solution").cells) == 9
    assert len(build_copy(assignment, "student").cells) == 7


def test_cell_ids_are_deterministic_valid_and_shared_by_both_copies(tmp_path):
    assignment = load_assignment(write(tmp_path, GOOD))
    student, solution = build_copy(assignment, "student"), build_copy(assignment, "solution")
    solution_ids = [cell.id for cell in solution.cells]
    assert solution_ids == [assign.cell_id("a00_tiny", i) for i in range(8)]
    assert len(set(solution_ids)) == 8
    assert all(re.fullmatch(r"[a-f0-9]{16}", cell_id) for cell_id in solution_ids)
    assert set(cell.id for cell in student.cells) <= set(solution_ids)
    assert student.cells[2].id == solution.cells[2].id
    for notebook in (student, solution):
        assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5)
        nbformat.validate(notebook)


def test_output_bytes_are_stable_and_carry_no_timestamps_or_versions(tmp_path):
    source = write(tmp_path, GOOD)
    first = assign.generate(load_assignment(source), tmp_path / "one")
    second = assign.generate(load_assignment(source), tmp_path / "two")
    for which in ("student", "solution"):
        data = first[which].read_bytes()
        assert data == second[which].read_bytes()
        assert data.endswith(b"}\n")
        metadata = json.loads(data)["metadata"]
        assert set(metadata) == {"kernelspec", "language_info", "warpkit"}
        assert metadata["warpkit"]["generated_from"] == "a00_tiny.py"
        assert not re.search(rb"20\d\d-\d\d-\d\d|jupytext_version|\"version\"", data)


def test_generation_is_byte_identical_in_a_fresh_process_with_another_hash_seed(tmp_path):
    source = write(tmp_path, GOOD)
    assign.generate(load_assignment(source), tmp_path / "here")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-m", "warpkit", "assign", str(source), "--out", str(tmp_path / "there"),
                    "--no-execute"], check=True, env=env, capture_output=True, cwd=tmp_path)
    for name in ("a00_tiny_student.ipynb", "a00_tiny_solution.ipynb"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes()


# ------------------------------------------------------------------------------------------------------
# finding sources and the command line
# ------------------------------------------------------------------------------------------------------
def test_find_sources_expands_folders_and_prefers_py_over_its_paired_ipynb(tmp_path):
    for name in ("a01_x.py", "a01_x.ipynb", "a02_y.ipynb", "_helper.py", "notes.txt"):
        (tmp_path / name).write_text("")
    found = assign.find_sources([tmp_path])
    assert [p.name for p in found] == ["a01_x.py", "a02_y.ipynb"]
    with pytest.raises(AssignmentError, match="would write the same output files"):
        other = tmp_path / "elsewhere"
        other.mkdir()
        (other / "a01_x.py").write_text("")
        assign.find_sources([tmp_path / "a01_x.py", other / "a01_x.py"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssignmentError, match="holds no assignment source"):
        assign.find_sources([empty])
    with pytest.raises(AssignmentError, match="no such file"):
        assign.find_sources([tmp_path / "missing.py"])


def test_cli_refuses_a_malformed_source_with_status_2_and_the_line(tmp_path, capsys):
    source = write(tmp_path, "# %%\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n")
    assert assign.main([str(source), "--out", str(tmp_path / "out")]) == 2
    assert "a00_tiny.py line 3: unterminated marker" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_check_reports_missing_stale_and_fresh_copies(tmp_path, capsys):
    source = write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert assign.main([str(source), "--out", str(out), "--check", "--no-execute"]) == 1
    assert "missing" in capsys.readouterr().err
    assert assign.main([str(source), "--out", str(out), "--no-execute"]) == 0
    assert assign.main([str(source), "--out", str(out), "--check", "--no-execute"]) == 0
    assert "fresh" in capsys.readouterr().out
    student = out / "a00_tiny_student.ipynb"
    student.write_bytes(student.read_bytes().replace(b"YOUR ANSWER HERE", b"hand edited"))
    assert assign.main([str(source), "--out", str(out), "--check", "--no-execute"]) == 1
    assert "a00_tiny_student.ipynb: differs from a fresh generation" in capsys.readouterr().err


def test_python_dash_m_warpkit_assign_dispatches_here(capsys):
    from warpkit.__main__ import main as warpkit_main

    with pytest.raises(SystemExit) as info:
        warpkit_main(["assign", "--help"])
    assert info.value.code == 0
    assert "--check-student" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------
# executing the copies (kernels; notebooks without torch)
# ------------------------------------------------------------------------------------------------------
@pytest.mark.notebook
def test_cli_executes_the_solution_and_names_the_failing_cell_and_line(tmp_path, capsys):
    broken = GOOD.replace("doubled = 2 * x", "doubled = 3 * x")
    source = write(tmp_path, broken)
    assert assign.main([str(source), "--out", str(tmp_path / "out"), "--check-student"]) == 1
    err = capsys.readouterr().err
    # cell 4 of the source, `assert double(2) == 4` on line 16 of the file
    assert "the solution copy FAILED in cell 4, a00_tiny.py line 16: 'assert double(2) == 4'" in err
    assert "AssertionError" in err
    assert (tmp_path / "out" / "a00_tiny_student.ipynb").exists()  # written before executing


@pytest.mark.notebook
def test_check_student_requires_the_first_stub_to_stop_the_student_copy(tmp_path):
    passing, report = assign.check_student(load_assignment(write(tmp_path, GOOD)))
    assert passing, report
    assert "stops at its first exercise, 'double'" in report
    never_called = GOOD.replace("assert double(2) == 4\n", "").replace("assert double(-1) == -2, \"secret\"\n", "")
    never_called = never_called.replace("### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n", "")
    never_called = never_called.replace("### BEGIN SOLUTION area_of_circle\narea = math.pi * 2.0 ** 2\n"
                                        "### END SOLUTION\n", "area = 12.566\n")
    passing, report = assign.check_student(load_assignment(write(tmp_path, never_called, "a11_lazy.py")))
    assert not passing
    assert "ran to the end, but it should stop at exercise 'double'" in report


def test_prose_that_mentions_beginning_or_ending_is_not_taken_for_a_marker(tmp_path):
    source = write(tmp_path, GOOD + "\n# %% [markdown]\n# Before we begin testing, read to the end: tests follow.\n")
    assert load_assignment(source).exercises == ["double", "area_of_circle"]
