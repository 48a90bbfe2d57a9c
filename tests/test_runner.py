"""``python -m warpkit run``: parameter checking before anything runs, notebook selection, failure reporting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from warpkit.kit import runner
from warpkit.kit.runner import Parameter, RunnerError

REPO_ROOT = Path(__file__).resolve().parent.parent

PARAMETERS_CELL = """SEED = 0
DEVICE = "auto"
SIZE = "fast"{size_comment}
INTERACTIVE = False
SHOW_PROGRESS = True
SAVE_FIGS = True
RATE = 0.5  # a float
NAME = "plain"
"""

RECORDING_CELL = """import os
import warpkit
warpkit.record("seed", SEED)
warpkit.record("seed_type", type(SEED).__name__)
warpkit.record("rate", RATE)
warpkit.record("size", SIZE)
warpkit.record("interactive", INTERACTIVE)
warpkit.record("headless", os.environ.get("WARPKIT_HEADLESS"))
warpkit.record("figures_dir", os.environ.get("WARPKIT_FIGURES_DIR"))
warpkit.record("cwd", os.getcwd())
"""


def write_notebook(path: Path, cells: list[str], size_comment: str = "", tag_parameters: bool = True) -> Path:
    """A small output-free notebook: a parameters cell followed by ``cells`` (code)."""
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(PARAMETERS_CELL.format(size_comment=size_comment))
    if tag_parameters:
        parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# test notebook"), parameters]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def lessons(tmp_path) -> Path:
    """A notebooks folder with two lessons (one declaring a 'medium' size) and an assignment."""
    folder = tmp_path / "notebooks"
    write_notebook(folder / "01_alpha.ipynb", [RECORDING_CELL])
    write_notebook(folder / "02_beta.ipynb", [RECORDING_CELL], size_comment='  # one of "fast", "medium", "full"')
    write_notebook(folder / "assignments" / "03_homework.ipynb", [RECORDING_CELL])
    return folder


def run_cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "warpkit", "run", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


# ----------------------------------------------------------------------------------------------------------
# parameters and values
# ----------------------------------------------------------------------------------------------------------
def test_notebook_parameters_reads_defaults_with_their_types(lessons):
    parameters = runner.notebook_parameters(lessons / "01_alpha.ipynb")
    assert list(parameters) == ["SEED", "DEVICE", "SIZE", "INTERACTIVE", "SHOW_PROGRESS", "SAVE_FIGS", "RATE", "NAME"]
    assert parameters["SEED"].default == 0 and parameters["SEED"].type_name == "int"
    assert parameters["RATE"].default == 0.5 and parameters["RATE"].help == "a float"
    assert parameters["INTERACTIVE"].default is False


@pytest.mark.parametrize(
    "default, text, expected",
    [(0, "7", 7), (0, "-3", -3), (0.5, "1e-3", 1e-3), (0.5, "2", 2.0), ("fast", "full", "full"),
     (True, "false", False), (False, "TRUE", True), (False, "1", True), (True, "0", False),
     ([1, 2], "[3, 4, 5]", [3, 4, 5])],
)
def test_parse_value_uses_the_type_of_the_default(default, text, expected):
    value = runner.parse_value(Parameter("X", default, repr(default), ""), text, "01_x")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "default, text, expected_type",
    [(0, "notanumber", "an int"), (0, "1.5", "an int"), (0.5, "fast", "a float"),
     (True, "maybe", "a bool (true/false/1/0)"), ([1], "{'a': 1}", "type list")],
)
def test_parse_value_refuses_the_wrong_type_naming_the_expected_one(default, text, expected_type):
    with pytest.raises(RunnerError) as refusal:
        runner.parse_value(Parameter("SEED", default, repr(default), ""), text, "01_x")
    message = str(refusal.value)
    assert expected_type in message and "SEED" in message and repr(text) in message and "01_x" in message


def test_allowed_sizes_come_from_the_size_comment(lessons):
    assert runner.allowed_sizes(runner.notebook_parameters(lessons / "01_alpha.ipynb")) == ("fast", "full")
    assert runner.allowed_sizes(runner.notebook_parameters(lessons / "02_beta.ipynb")) == ("fast", "medium", "full")


# ----------------------------------------------------------------------------------------------------------
# choosing notebooks
# ----------------------------------------------------------------------------------------------------------
def test_lessons_are_the_numbered_notebooks_in_order_without_assignments(lessons):
    assert [p.name for p in runner.lesson_notebooks(lessons)] == ["01_alpha.ipynb", "02_beta.ipynb"]


@pytest.mark.parametrize("name", ["01", "01_alpha", "01_alpha.ipynb"])
def test_resolve_notebook_by_number_or_name(lessons, name):
    assert runner.resolve_notebook(name, lessons) == lessons / "01_alpha.ipynb"


def test_resolve_notebook_by_path_and_by_paired_py(lessons):
    path = lessons / "assignments" / "03_homework.ipynb"
    assert runner.resolve_notebook(str(path), lessons) == path.resolve()
    assert runner.resolve_notebook(str(path.with_suffix(".py")), lessons) == path.resolve()


def test_resolve_notebook_refuses_unknown_names_listing_the_lessons(lessons):
    with pytest.raises(RunnerError, match="01_alpha, 02_beta"):
        runner.resolve_notebook("07", lessons)


# ----------------------------------------------------------------------------------------------------------
# refusals happen before anything runs
# ----------------------------------------------------------------------------------------------------------
def test_unknown_parameter_is_refused_listing_the_notebook_parameters(lessons, tmp_path, capsys):
    out = tmp_path / "out"
    code = runner.main(["--notebooks-dir", str(lessons), "--out", str(out), "-p", "NO_SUCH_PARAM", "1"])
    error = capsys.readouterr().err
    assert code == 2
    assert "no parameter 'NO_SUCH_PARAM'" in error and "01_alpha" in error
    assert "SEED (int, default 0)" in error and "RATE (float, default 0.5)" in error
    assert not out.exists(), "nothing may run (or be written) when the command line is refused"


def test_wrong_type_is_refused_before_running(lessons, tmp_path, capsys):
    out = tmp_path / "out"
    code = runner.main(["--notebooks-dir", str(lessons), "--out", str(out), "-p", "SEED", "notanumber"])
    error = capsys.readouterr().err
    assert code == 2 and "expects an int for SEED" in error and "'notanumber'" in error
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [(["--size", "medium"], "has no size 'medium'; it offers: fast, full"),
     (["02", "--size", "huge"], "it offers: fast, medium, full"),
     (["-p", "INTERACTIVE", "true"], "always sets INTERACTIVE = False"),
     (["--size", "full", "-p", "SIZE", "fast"], "give it once"),
     (["01", "01_alpha"], "named twice"),
     (["-p", "DEVICE", "tpu"], "DEVICE must be one of auto, cpu, cuda")],
)
def test_other_refusals(lessons, tmp_path, capsys, args, message):
    code = runner.main(["--notebooks-dir", str(lessons), "--out", str(tmp_path / "out"), *args])
    assert code == 2 and message in capsys.readouterr().err


def test_medium_size_is_accepted_where_declared(lessons, tmp_path):
    jobs = runner.plan([lessons / "02_beta.ipynb"], tmp_path / "out", size="medium", device="cpu",
                       overrides=[("RATE", "0.25"), ("SAVE_FIGS", "false")])
    assert jobs[0].parameters == {"SIZE": "medium", "DEVICE": "cpu", "RATE": 0.25, "SAVE_FIGS": False,
                                  "INTERACTIVE": False}


def test_a_notebook_without_the_runner_parameters_is_refused(tmp_path):
    notebook = tmp_path / "nb" / "01_bare.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[_tagged("SEED = 0")]), _mkdir(notebook))
    with pytest.raises(RunnerError, match=r"lacks the parameters the runner sets: SIZE \(set by --size\)"):
        runner.plan([notebook], tmp_path / "out")


def test_a_non_literal_default_is_refused(tmp_path):
    notebook = tmp_path / "nb" / "01_expr.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[_tagged("SEED = 1 + 1")]), _mkdir(notebook))
    with pytest.raises(RunnerError, match="not a literal"):
        runner.notebook_parameters(notebook)


def test_output_folder_may_not_be_the_notebooks_folder(lessons):
    with pytest.raises(RunnerError, match="would overwrite"):
        runner.plan([lessons / "01_alpha.ipynb"], lessons)


def test_a_file_the_runner_did_not_write_is_never_overwritten(lessons, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "01_alpha.ipynb").write_text('{"cells": [], "metadata": {}}')
    with pytest.raises(RunnerError, match="refusing to overwrite"):
        runner.plan([lessons / "01_alpha.ipynb"], out)
    (out / "01_alpha.ipynb").write_text('{"cells": [], "metadata": {"papermill": {}}}')
    assert runner.plan([lessons / "01_alpha.ipynb"], out)  # an earlier executed copy may be replaced


def _tagged(source: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# the command line, end to end (real kernels)
# ----------------------------------------------------------------------------------------------------------
def test_help_documents_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("NOTEBOOK", "--size", "--device", "-p NAME VALUE", "--out", "--figures-dir", "--notebooks-dir",
                   "--timeout", "--fail-fast", "--no-progress", "auto", "cpu", "cuda", "fast", "full"):
        assert option in result.stdout, f"--help does not mention {option}"


def test_real_lesson_refuses_unknown_parameter_and_bad_value(capsys, tmp_path):
    out = tmp_path / "out"
    assert runner.main(["01", "--out", str(out), "-p", "NO_SUCH_PARAM", "1"]) == 2
    error = capsys.readouterr().err
    assert "01_preconditioning has no parameter 'NO_SUCH_PARAM'" in error and "SEED (int, default 0)" in error
    assert runner.main(["01", "--out", str(out), "-p", "SEED", "notanumber"]) == 2
    assert "01_preconditioning expects an int for SEED (default 0), got 'notanumber'" in capsys.readouterr().err
    assert not out.exists()


def test_runs_lessons_passes_values_and_reports_a_failure(lessons, tmp_path):
    """Two lessons, one made to fail: exit 1, the failing executed copy named, the other one's records shown."""
    write_notebook(lessons / "03_broken.ipynb", ["raise RuntimeError('this lesson is broken on purpose')"])
    out, figures = tmp_path / "out", tmp_path / "figs"
    result = run_cli("--notebooks-dir", str(lessons), "--out", str(out), "--figures-dir", str(figures),
                     "01", "03", "-p", "SEED", "7", "-p", "RATE", "0.125", "--size", "full", "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    broken_copy = out / "03_broken.ipynb"
    assert str(broken_copy) in result.stdout
    assert "RuntimeError: this lesson is broken on purpose" in result.stdout
    assert "this lesson is broken on purpose" in broken_copy.read_text()  # the traceback is in the copy
    records = runner.read_records(out / "01_alpha.ipynb")
    assert records == {
        "seed": 7, "seed_type": "int", "rate": 0.125, "size": "full", "interactive": False, "headless": "1",
        "figures_dir": str(figures.resolve()), "cwd": str(lessons.resolve()),
    }
    assert "01_alpha" in result.stdout and "seed = 7" in result.stdout  # the summary table
    summary = json.loads((out / "summary.json").read_text())
    assert [(row["notebook"], row["status"]) for row in summary] == [("01_alpha", "ok"), ("03_broken", "failed")]
    source = nbformat.read(lessons / "01_alpha.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in source.cells), "the source notebook must stay output-free"


def test_the_kernels_stderr_stays_out_of_the_terminal_unless_a_lesson_fails(lessons, tmp_path):
    """The kernel prints start-up warnings to the stderr it inherits; the runner keeps them (and anything else the
    kernel writes there) out of its own output, and shows the tail only for a failed lesson."""
    noisy = "import os\nos.write(2, b'kernel chatter on fd 2\\n')"
    write_notebook(lessons / "04_noisy.ipynb", [noisy])
    write_notebook(lessons / "05_noisy_broken.ipynb", [noisy + "\nraise RuntimeError('broken on purpose')"])
    result = run_cli("--notebooks-dir", str(lessons), "--out", str(tmp_path / "out"), "--figures-dir",
                     str(tmp_path / "figs"), "04", "05", "--no-progress")
    assert result.returncode == 1, result.stdout + result.stderr
    shown = result.stdout + result.stderr
    # both lessons wrote it; it is shown only where the failed lesson's report quotes its kernel's stderr
    failure_reports = shown.count("the kernel's stderr ended with:")
    assert failure_reports >= 1 and shown.count("kernel chatter on fd 2") == failure_reports, shown
    assert shown.count("without encryption") <= failure_reports, shown  # ipykernel's start-up warning too


def test_execute_restores_the_environment(lessons, tmp_path, monkeypatch):
    monkeypatch.delenv("WARPKIT_HEADLESS", raising=False)
    monkeypatch.setenv("WARPKIT_FIGURES_DIR", "/somewhere/else")
    with runner.kernel_environment(tmp_path):
        assert os.environ["WARPKIT_HEADLESS"] == "1" and os.environ["WARPKIT_FIGURES_DIR"] == str(tmp_path.resolve())
    assert "WARPKIT_HEADLESS" not in os.environ and os.environ["WARPKIT_FIGURES_DIR"] == "/somewhere/else"


def test_summary_table_lists_status_seconds_and_values():
    results = [runner.Result("01_a", Path("x"), "ok", 1.23, {"steps": 12, "error": 1e-13, "curve": list(range(9))}),
               runner.Result("02_b", Path("y"), "failed", 4.5, {}, "ValueError: no")]
    table = runner.summary_table(results).splitlines()
    assert table[0].split() == ["notebook", "status", "seconds", "recorded", "values"]
    assert table[2].split() == ["01_a", "ok", "1.2", "steps", "=", "12"]
    assert table[3].split() == ["error", "=", "1e-13"] and table[4].split() == ["curve", "=", "[9", "values]"]
    assert table[5].split() == ["02_b", "failed", "4.5", "-"]


def test_execute_notebook_fixture_refuses_unknown_parameters(execute_notebook):
    with pytest.raises(pytest.fail.Exception, match=r"no parameter\(s\) \['NO_SUCH_PARAM'\]"):
        execute_notebook("01_preconditioning", NO_SUCH_PARAM=1)


def test_execute_notebook_fixture_names_the_executed_copy_of_a_failure(lessons, tmp_path):
    from conftest import NotebookExecutor

    write_notebook(lessons / "04_broken.ipynb", ["raise ValueError('broken on purpose')"])
    executor = NotebookExecutor(tmp_path / "work", notebooks_dir=lessons)
    with pytest.raises(pytest.fail.Exception) as failure:
        executor("04_broken", SEED=3)
    message = str(failure.value)
    copy = tmp_path / "work" / "04_broken-0" / "04_broken.ipynb"
    assert "ValueError: broken on purpose" in message and str(copy) in message and copy.is_file()
    with pytest.raises(pytest.fail.Exception):  # cached: the second call fails at once, without a kernel
        executor("04_broken", SEED=3)
    executed = executor("01_alpha", SEED=3)
    assert executed.records["seed"] == 3 and executed.records["size"] == "fast"
    assert executed.records["figures_dir"] == str(executed.figures_dir.resolve()) and executed.seconds > 0
    assert executor("01_alpha", SEED=3) is executed
