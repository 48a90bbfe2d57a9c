"""Bad input gets a clear error and loses nothing (issue 16, the eight defects of its probe), one test per defect.

Each test failed on the code the issue was filed against: the runner overwrote an unrelated summary.json,
meta_step let one NaN task poison every parameter, summary.json could contradict the executed copies and two
runners could interleave, None defaults skipped type checking, bad --out/--figures-dir/assign --out ended in
tracebacks, SupervisedTask/inner_steps/LinearWarp/ScaleWarp accepted nonsense, warpkit.checks passed complex
answers and crashed on bfloat16/sparse/meta tensors, and --timeout/SEED/nan/relative CHECKPOINT slipped through.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

import warpkit
from test_runner import RECORDING_CELL, write_notebook
from warpkit.kit import assign, runner
from warpkit.kit.checks import CheckFailed, PublicChecks, check_close, check_dtype, check_equal, check_true
from warpkit.kit.runner import Parameter, RunnerError


@pytest.fixture
def lessons(tmp_path) -> Path:
    folder = tmp_path / "notebooks"
    write_notebook(folder / "01_alpha.ipynb", [RECORDING_CELL])
    return folder


def _run(lessons: Path, *args: str) -> int:
    return runner.main(["--notebooks-dir", str(lessons), "--no-progress", *args])


# ------------------------------------------------------------------ 1. an unrelated summary.json is never touched
def test_1_the_runner_refuses_to_overwrite_a_summary_it_did_not_write(lessons, tmp_path, capsys):
    out = tmp_path / "D"
    out.mkdir()
    (out / "summary.json").write_text('{"my": "data"}')
    assert _run(lessons, "01", "--out", str(out)) == 2
    assert "summary.json exists and is not a summary written by this runner" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == '{"my": "data"}'
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # nothing else written either


# ------------------------------------------------------------------ 2. a NaN task stops meta_step, nothing changes
def _sine_task(seed: int, poison: bool = False) -> warpkit.SupervisedTask:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(20, 1, generator=g) * 6 - 3
    y = torch.sin(x + seed)
    if poison:
        y[3] = float("nan")
    return warpkit.SupervisedTask(x, y, batch_size=10, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("init", [None, "leap", "reptile"])
def test_2_a_non_finite_task_stops_the_step_names_it_and_leaves_the_learner_as_it_was(init):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), warpkit.LinearWarp(16), nn.Linear(16, 1))
    init_learner = {None: None, "leap": warpkit.Leap(), "reptile": warpkit.Reptile()}[init]
    init_training = warpkit.InitTraining(init_learner, optimizer="adam") if init_learner else None
    learner = warpkit.MetaLearner(model, nn.functional.mse_loss, inner=warpkit.InnerLoop(lr=0.05, steps=4),
                                  warp=warpkit.WarpTraining(lr=0.01, optimizer="adam"), init=init_training)
    learner.meta_step([_sine_task(1), _sine_task(2)])  # optimiser states exist now
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    state_before = learner.state_dict()
    warp_state = json.dumps(state_before["warp_optimizer"]["state"], default=lambda t: t.tolist())
    with pytest.raises(warpkit.NonFiniteError, match=r"task 1 of the meta-batch \(SupervisedTask") as caught:
        learner.meta_step([_sine_task(3), _sine_task(4, poison=True), _sine_task(5)])
    assert caught.value.task_index == 1 and isinstance(caught.value, ValueError)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert json.dumps(learner.state_dict()["warp_optimizer"]["state"], default=lambda t: t.tolist()) == warp_state
    assert learner.iteration == 1
    stats = learner.meta_step([_sine_task(6), _sine_task(7)])  # clean tasks train on from finite parameters
    assert math.isfinite(stats.task_loss_last)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# -------------------------------------- 3. summary.json true to the executed copies: atomic, interrupted, locked
def test_3_an_interrupted_run_is_marked_and_earlier_entries_stay_only_with_their_copies(lessons, tmp_path,
                                                                                         monkeypatch):
    write_notebook(lessons / "02_beta.ipynb", [RECORDING_CELL])
    out = tmp_path / "out"
    out.mkdir()
    old = {"notebook": "02_beta", "status": "ok", "seconds": 1.0, "path": str(out / "02_beta.ipynb"),
           "error": "", "records": {"seed": 1}}
    gone = {**old, "notebook": "00_gone", "path": str(out / "00_gone.ipynb")}
    (out / "summary.json").write_text(json.dumps([gone, old]))
    nbformat.write(nbformat.v4.new_notebook(metadata={"papermill": {}}), out / "02_beta.ipynb")

    def interrupted(notebook, output, parameters, figures_dir, timeout=None):
        nbformat.write(nbformat.v4.new_notebook(metadata={"papermill": {}}), output)  # a partial copy
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "execute", interrupted)
    assert _run(lessons, "02", "--out", str(out), "-p", "SEED", "2", "--figures-dir", str(tmp_path / "f")) == 130
    summary = json.loads((out / "summary.json").read_text())
    assert [(e["notebook"], e["status"]) for e in summary] == [("02_beta", "interrupted")]
    assert summary[0]["parameters"]["SEED"] == 2 and "partial" in summary[0]["error"]
    assert not list(out.glob("*.tmp")) and not (out / runner.LOCK_NAME).exists()


def test_3_write_summary_is_atomic_and_keeps_entries_whose_copies_exist(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    job = runner.Job(Path("nb/01_a.ipynb"), out / "01_a.ipynb", {"SEED": 1})
    (out / "01_a.ipynb").write_text("{}")
    runner.write_summary([runner.summary_entry(job, "ok", 2.0, {"x": 1})], out)
    other = runner.Job(Path("nb/02_b.ipynb"), out / "02_b.ipynb", {"SEED": 1})

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(runner.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        runner.write_summary([runner.summary_entry(other, "running")], out)
    monkeypatch.undo()
    assert [e["notebook"] for e in runner.read_summary(out)] == ["01_a"]  # the old summary is intact
    assert not list(out.glob("*.tmp"))
    runner.write_summary([runner.summary_entry(other, "running")], out)  # 02_b has no copy yet: listed as running
    assert [(e["notebook"], e["status"]) for e in runner.read_summary(out)] == [("01_a", "ok"), ("02_b", "running")]
    runner.write_summary([], out)  # ... and dropped once it is clear no copy of it exists
    assert [e["notebook"] for e in runner.read_summary(out)] == ["01_a"]


def test_3_ctrl_c_before_any_notebook_runs_exits_130_without_a_traceback(lessons, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "plan", interrupted)
    assert _run(lessons, "01", "--out", str(tmp_path / "out")) == 130
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_3_a_second_runner_on_the_same_out_is_refused(lessons, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with runner.OutputLock(out):
        assert _run(lessons, "01", "--out", str(out)) == 2
        assert "another runner (process" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [runner.LOCK_NAME]
    assert not (out / runner.LOCK_NAME).exists()
    with runner.OutputLock(out):  # released: it can be taken again
        pass


# --------------------------------------------------------------------- 4. None defaults are type-checked too
def _none_parameter(comment: str) -> Parameter:
    return Parameter("META_ITERATIONS", None, "None", comment)


@pytest.mark.parametrize("text", ["abc", "-3", "0", "2.5"])
def test_4_a_declared_none_default_refuses_the_wrong_type_and_range(text):
    with pytest.raises(RunnerError, match="expects an int( ≥ 1)? for META_ITERATIONS"):
        runner.parse_value(_none_parameter("int ≥ 1 or None: the size's default"), text, "02_x")


def test_4_a_declared_none_default_parses_with_its_type_and_an_undeclared_one_is_refused():
    declared = _none_parameter("int ≥ 1 or None: the size's default")
    assert runner.parse_value(declared, "4", "02_x") == 4
    assert runner.parse_value(declared, "None", "02_x") is None
    with pytest.raises(RunnerError, match="without declaring its type"):
        runner.parse_value(_none_parameter("anything goes"), "abc", "02_x")


def test_4_lesson_03_declares_meta_iterations(capsys, tmp_path):
    figures = ["--figures-dir", str(tmp_path / "figures")]  # never the repository's, even if this regresses
    assert runner.main(["03", "--out", str(tmp_path / "o"), *figures, "-p", "META_ITERATIONS", "-3"]) == 2
    assert "expects an int ≥ 1 for META_ITERATIONS" in capsys.readouterr().err
    assert runner.main(["03", "--out", str(tmp_path / "o"), *figures, "-p", "META_ITERATIONS", "abc"]) == 2
    assert not (tmp_path / "o").exists()


def test_4_mountain_meta_training_refuses_a_negative_count():
    from warpkit.experiments.mountains import MountainMetaTraining

    with pytest.raises(ValueError, match="iterations must be an int >= 0, got -3"):
        MountainMetaTraining.run(object.__new__(MountainMetaTraining), -3)


# ------------------------------------------------------- 5. unusable --out / --figures-dir / assign --out: exit 2
def test_5_run_out_or_figures_dir_that_cannot_be_used_exit_2_and_write_nothing(lessons, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    assert _run(lessons, "01", "--out", str(blocker)) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert _run(lessons, "01", "--out", str(blocker / "sub")) == 2  # cannot be created
    assert "--out" in capsys.readouterr().err
    out = tmp_path / "out"
    assert _run(lessons, "01", "--out", str(out), "--figures-dir", str(blocker / "figs")) == 2
    error = capsys.readouterr().err
    assert "--figures-dir" in error and "cannot be written to" in error
    assert not out.exists() and blocker.read_text() == "mine"


def test_5_run_out_that_is_not_writable_exits_2(lessons, tmp_path, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runner.tempfile, "mkstemp", read_only)
    assert _run(lessons, "01", "--out", str(tmp_path / "out")) == 2
    assert "cannot be written to: Permission denied" in capsys.readouterr().err


def _source(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "a00_tiny.py"
    path.write_text("# %%\ndef f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    return path


def test_5_assign_out_that_is_a_file_unwritable_or_the_source_folder_exits_2(tmp_path, capsys, monkeypatch):
    source = _source(tmp_path / "src")
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    assert assign.main([str(source), "--out", str(blocker), "--no-execute"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert assign.main([str(source), "--out", str(blocker / "sub"), "--no-execute"]) == 2
    assert "cannot be written to" in capsys.readouterr().err
    assert assign.main([str(source.parent), "--out", str(source.parent), "--no-execute"]) == 2
    assert "a folder the sources are read from" in capsys.readouterr().err
    assert sorted(p.name for p in source.parent.iterdir()) == ["a00_tiny.py"]
    assert blocker.read_text() == "mine"

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(assign.tempfile, "mkstemp", read_only)
    assert assign.main([str(source), "--out", str(tmp_path / "ro"), "--no-execute"]) == 2
    assert "cannot be written to" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(Path, "write_bytes", read_only)  # a folder that turns read-only mid-way
    assert assign.main([str(source), "--out", str(tmp_path / "late"), "--no-execute"]) == 2
    assert "cannot write into --out" in capsys.readouterr().err


# ------------------------------------------------------------- 6. tasks, inner steps and warps validate input
@pytest.mark.parametrize("batch_size", [0, -5, 21, 2.5, True])
def test_6_supervised_task_refuses_a_batch_size_outside_1_to_n(batch_size):
    x = torch.zeros(20, 1)
    with pytest.raises(ValueError, match="batch_size must be None .* or an int between 1 and 20"):
        warpkit.SupervisedTask(x, x, batch_size=batch_size)
    assert warpkit.SupervisedTask(x, x, batch_size=np.int64(4)).batch_size == 4


@pytest.mark.parametrize("steps", [0, -1, 2.0])
def test_6_inner_loop_refuses_steps_below_1(steps):
    with pytest.raises(ValueError, match="InnerLoop: steps must be an int >= 1"):
        warpkit.InnerLoop(steps=steps)


def test_6_a_linear_warp_of_the_wrong_width_is_named():
    model = nn.Sequential(nn.Linear(1, 30), warpkit.LinearWarp(40), nn.Linear(40, 1))
    learner = warpkit.MetaLearner(model, nn.functional.mse_loss, inner=warpkit.InnerLoop(steps=2))
    with pytest.raises(ValueError, match=r"LinearWarp\(40\): the input's last dimension must have 40 features"):
        learner.meta_step([_sine_task(0)])
    with pytest.raises(ValueError, match="features must be an int >= 1"):
        warpkit.LinearWarp(0)


def test_6_a_one_dimensional_scale_warp_on_a_feature_map_is_refused():
    with pytest.raises(ValueError, match=r"would scale its last \(width\) axis; .* pass shape \(16, 1, 1\)"):
        warpkit.ScaleWarp((16,))(torch.ones(2, 16, 16, 16))
    with pytest.raises(ValueError, match="must match the input's trailing dimensions"):
        warpkit.ScaleWarp((3, 1, 1))(torch.ones(2, 4, 5, 5))
    assert warpkit.ScaleWarp((16, 1, 1))(torch.ones(2, 16, 16, 16)).shape == (2, 16, 16, 16)
    assert warpkit.ScaleWarp(16)(torch.ones(2, 16)).shape == (2, 16)


# -------------------------------------------------------------------------------- 7. warpkit.checks edge cases
def test_7_a_complex_answer_to_a_real_question_fails():
    with pytest.raises(CheckFailed, match="got complex numbers where real ones are expected"):
        check_close("root", np.array([1.0 + 2.0j]), [1.0])
    check_close("root", torch.tensor([1.0 + 0.0j]), [1.0])  # a zero imaginary part is a real answer
    with pytest.raises(CheckFailed, match=r"imaginary part"):
        check_close("fft", np.array([1 + 1j]), np.array([1 + 2j]))


def test_7_bfloat16_sparse_and_meta_tensors_do_not_crash_a_check_block(capsys):
    with pytest.raises(CheckFailed, match="1 of 4 public checks failed") as caught:
        with PublicChecks("tensors") as checks:
            checks.close("bfloat16", torch.tensor([2.0], dtype=torch.bfloat16), [2.0])
            checks.close("sparse", torch.eye(2).to_sparse(), np.eye(2))
            checks.close("meta", torch.empty(2, device="meta"), [1.0, 2.0])
            checks.equal("sparse ints", torch.tensor([1, 0, 2]).to_sparse(), [1, 0, 2])
    assert "on the 'meta' device, which has a shape but no values" in str(caught.value)
    check_true("bf16 condition", torch.tensor([1.0], dtype=torch.bfloat16) > 0, "must be positive")
    check_equal("sparse", torch.tensor([0, 3]).to_sparse(), [0, 3])


def test_7_check_dtype_never_says_expected_float64_got_float64():
    with pytest.raises(CheckFailed) as caught:
        check_dtype("dtype", np.zeros(2), torch.float64)
    message = str(caught.value)
    assert "expected a torch tensor of dtype float64, got a NumPy array" in message
    assert "torch.as_tensor" in message and "got dtype:      float64" not in message
    check_dtype("dtype", np.zeros(2), np.float64)
    check_dtype("dtype", torch.zeros(2, dtype=torch.float64), torch.float64)
    with pytest.raises(CheckFailed, match="expected dtype: float64\n  got dtype:      float32"):
        check_dtype("dtype", np.zeros(2, dtype=np.float32), np.float64)


# ------------------------------------------------ 8. --timeout, SEED, nan/inf floats, relative CHECKPOINT paths
@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "inf", "soon"])
def test_8_a_timeout_that_is_not_a_positive_number_exits_2(lessons, tmp_path, timeout, capsys):
    with pytest.raises(SystemExit) as caught:
        _run(lessons, "01", "--out", str(tmp_path / "out"), "--timeout", timeout)
    assert caught.value.code == 2
    assert "expected a number of seconds > 0" in capsys.readouterr().err


@pytest.mark.parametrize("name, text, expected", [
    ("SEED", str(2**64), "an int between 0 and 2**63 - 1"), ("SEED", "-1", "an int between 0 and 2**63 - 1"),
    ("RATE", "nan", "a finite float"), ("RATE", "inf", "a finite float"), ("RATE", "NaN", "a finite float")])
def test_8_seed_beyond_64_bits_and_non_finite_floats_exit_2(lessons, tmp_path, capsys, name, text, expected):
    out = tmp_path / "out"
    assert _run(lessons, "01", "--out", str(out), "-p", name, text) == 2
    assert expected in capsys.readouterr().err and not out.exists()


def test_8_seed_everything_names_the_range():
    with pytest.raises(ValueError, match=r"between 0 and 2\*\*63 - 1"):
        warpkit.seed_everything(2**64)


def test_8_relative_checkpoint_paths_resolve_against_the_working_folder_for_every_lesson(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = {}
    for lesson, name in (("04", "CHECKPOINT"), ("05", "CHECKPOINT_DIR"), ("06", "CHECKPOINT")):
        jobs = runner.plan([runner.resolve_notebook(lesson)], tmp_path / "out", overrides=[(name, "ck/run")])
        resolved[lesson] = jobs[0].parameters[name]
    assert set(resolved.values()) == {str(tmp_path / "ck" / "run")}, resolved
    jobs = runner.plan([runner.resolve_notebook("04")], tmp_path / "out", overrides=[("CHECKPOINT", "auto")])
    assert jobs[0].parameters["CHECKPOINT"] == "auto"
    assert os.path.isabs(runner.plan([runner.resolve_notebook("06")], tmp_path / "out",
                                     overrides=[("CHECKPOINT", "/abs/x.pt")])[0].parameters["CHECKPOINT"])
