"""warpkit.kit.notebook: recorded values (in-process and read back from an executed notebook), figures, seeding,
device choice, sizes and progress bars."""

from __future__ import annotations

import json
import math
import random

import nbformat
import numpy as np
import pytest
import torch

import warpkit
from warpkit.kit import notebook as nb
from warpkit.kit.runner import execute


# ----------------------------------------------------------------------------------------------------------
# record / read_records
# ----------------------------------------------------------------------------------------------------------
def test_record_converts_to_plain_json_and_keeps_the_value():
    value = nb.record("mixed", {"a": np.float64(1.5), "b": torch.tensor([1, 2]), "c": (np.int64(3), None)})
    assert value == {"a": 1.5, "b": [1, 2], "c": [3, None]}
    assert nb.RECORDS["mixed"] == value
    json.dumps(value)  # really JSON-able


@pytest.mark.parametrize("bad_value, error", [(float("nan"), ValueError), (math.inf, ValueError), (object(), TypeError)])
def test_record_refuses_values_json_cannot_hold(bad_value, error):
    with pytest.raises(error, match="record"):
        nb.record("bad", bad_value)


@pytest.mark.parametrize("bad_name", ["", "two words", "1st", None])
def test_record_refuses_names_that_are_not_identifiers(bad_name):
    with pytest.raises(ValueError, match="identifier"):
        nb.record(bad_name, 1)


def test_read_records_from_a_notebook_node_and_a_file(tmp_path):
    notebook = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("")
    first.outputs = [
        nbformat.v4.new_output("display_data", data={nb.RECORD_MIMETYPE: {"name": "steps", "value": 12},
                                                     "text/plain": "steps = 12"}),
        nbformat.v4.new_output("stream", name="stdout", text="noise\n"),
    ]
    second = nbformat.v4.new_code_cell("")
    second.outputs = [
        nbformat.v4.new_output("display_data", data={nb.RECORD_MIMETYPE: '{"name": "steps", "value": 13}'}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
    ]
    notebook.cells = [nbformat.v4.new_markdown_cell("x"), first, second]
    assert nb.read_records(notebook) == {"steps": 13}  # the last value wins; JSON-as-text is read too
    path = tmp_path / "executed.ipynb"
    nbformat.write(notebook, path)
    assert nb.read_records(path) == {"steps": 13}
    assert nb.read_records(str(path)) == {"steps": 13}


def test_records_survive_a_real_kernel_round_trip(tmp_path):
    """record() inside a kernel → display data in the executed notebook → read_records()."""
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('SEED = 0\nSIZE = "fast"')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell(
            "import numpy as np, warpkit\n"
            "warpkit.record('seed', warpkit.seed_everything(SEED))\n"
            "warpkit.record('curve', np.arange(3) / 2)\n"
            "warpkit.record('config', {'size': SIZE, 'ok': True})\n"
            "warpkit.record('in_process', warpkit.kit.notebook.RECORDS['curve'])"
        ),
    ]
    source = tmp_path / "roundtrip.ipynb"
    nbformat.write(notebook, source)
    result = execute(source, tmp_path / "out" / "roundtrip.ipynb", {"SEED": 5, "SIZE": "full"}, tmp_path / "figs")
    assert result.ok, result.error
    assert result.records == {"seed": 5, "curve": [0.0, 0.5, 1.0], "config": {"size": "full", "ok": True},
                              "in_process": [0.0, 0.5, 1.0]}
    texts = [o["data"]["text/plain"] for c in nbformat.read(result.path, 4).cells for o in c.get("outputs", [])
             if "data" in o]
    assert "seed = 5" in texts, "the text/plain fallback reads name = value"


# ----------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------
def test_figures_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(nb.FIGURES_ENV, str(tmp_path / "somewhere"))
    assert nb.figures_dir() == tmp_path / "somewhere" and (tmp_path / "somewhere").is_dir()
    monkeypatch.delenv(nb.FIGURES_ENV)
    assert nb.figures_dir() == nb.REPO_ROOT / "figures"


def test_save_figure_writes_a_png_only_when_asked(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv(nb.FIGURES_ENV, str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = nb.save_figure(fig, "00_line")
    assert path == tmp_path / "00_line.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert nb.save_figure(fig, "00_skipped", save=False) is None
    assert not (tmp_path / "00_skipped.png").exists()
    for bad in ("sub/name", "name.png"):
        with pytest.raises(ValueError, match="bare name"):
            nb.save_figure(fig, bad)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# seeding, devices, sizes, progress
# ----------------------------------------------------------------------------------------------------------
def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seed_everything_makes_every_generator_repeat():
    assert warpkit.seed_everything(3) == 3
    first = _draws()
    warpkit.seed_everything(3)
    assert _draws() == first
    warpkit.seed_everything(4)
    assert _draws() != first


@pytest.mark.parametrize("bad", [1.5, "3", True, None])
def test_seed_everything_refuses_non_int_seeds(bad):
    with pytest.raises(TypeError, match="int"):
        warpkit.seed_everything(bad)


def test_pick_device():
    assert warpkit.pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert warpkit.pick_device("auto").type == expected
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        warpkit.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="GPU section"):
            warpkit.pick_device("cuda")


def test_check_size():
    assert nb.check_size("fast") == "fast"
    assert nb.check_size("medium", ("fast", "medium", "full")) == "medium"
    with pytest.raises(ValueError, match="SIZE must be one of"):
        nb.check_size("medium")


def test_progress_bar_switch(capsys, monkeypatch):
    monkeypatch.setattr(nb, "_stderr_is_terminal", lambda: True)
    assert list(nb.progress(range(3), show=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    list(nb.progress(range(3), show=True, desc="visible"))
    assert "visible" in capsys.readouterr().err


def test_progress_bar_stays_out_of_logs_and_executed_notebooks(capsys, monkeypatch):
    # not a terminal and not a live notebook (an executed notebook's kernel, a log file): no bar even if asked
    monkeypatch.setattr(nb, "_stderr_is_terminal", lambda: False)
    assert list(nb.progress(range(3), show=True, desc="hidden")) == [0, 1, 2]
    assert "hidden" not in capsys.readouterr().err


def test_deferred_records_are_shown_once_as_one_readable_table(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.get_ipython", lambda: object())
    monkeypatch.setattr("IPython.display.display", lambda data, raw=False: shown.append(data))
    nb.defer_records()
    nb.record("deferred_steps", 12)
    nb.record("deferred_loss", 0.125)
    assert shown == [] and nb.RECORDS["deferred_loss"] == 0.125
    nb.show_records()
    assert len(shown) == 1 and "deferred_loss" in shown[0]["text/html"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
        nbformat.v4.new_output("display_data", data=shown[0])])])
    assert nb.read_records(notebook) == {"deferred_steps": 12, "deferred_loss": 0.125}
    nb.record("after_the_table", 1)  # deferring ends with the table
    assert len(shown) == 2
