"""Packaging and set-up: pyproject extras, environment.yml delegating to them, kit.py, .ci/run, README Quickstart."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11 (the kit's reference version)")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("kit", REPO_ROOT / "kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pip_requirements(environment: dict) -> list[str]:
    for dependency in environment["dependencies"]:
        if isinstance(dependency, dict) and "pip" in dependency:
            return dependency["pip"]
    return []


def test_distribution_name_avoids_the_unrelated_pypi_warpkit(pyproject):
    assert pyproject["project"]["name"] != "warpkit"
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["include"] == ["warpkit*"]


def test_extras_for_notebooks_and_tests(pyproject):
    extras = pyproject["project"]["optional-dependencies"]
    assert {"notebooks", "test"} <= set(extras)
    name = pyproject["project"]["name"]
    assert f"{name}[notebooks]" in extras["test"], "the test extra must include the notebook extra"
    required = {"papermill", "jupytext", "nbformat", "ipykernel"}
    assert required <= {re.split(r"[<>=!~\[ ]", req)[0] for req in extras["notebooks"]}
    assert {"pytest", "pytest-timeout"} <= {re.split(r"[<>=!~\[ ]", req)[0] for req in extras["test"]}


def test_environment_yml_delegates_to_the_same_pip_extras(pyproject, kit):
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert environment["channels"] == ["conda-forge"]
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "pip" in conda
    requirements = _pip_requirements(environment)
    assert len(requirements) == 1, "every Python dependency comes from pyproject.toml through pip"
    match = re.fullmatch(r"-e \.\[([\w,]+)\]", requirements[0])
    assert match, f"expected '-e .[EXTRAS]', got {requirements[0]!r}"
    extras = set(match.group(1).split(","))
    assert extras <= set(pyproject["project"]["optional-dependencies"])
    assert extras == {kit.EXTRAS}, "conda and kit.py install the same extras"


def test_gitignore_covers_build_outputs():
    ignored = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for entry in (".venv/", "_build/", "__pycache__/", "*.egg-info/"):
        assert entry in ignored


# ----------------------------------------------------------------------------------------------------------
# kit.py
# ----------------------------------------------------------------------------------------------------------
def test_kit_uses_only_the_standard_library():
    source = (REPO_ROOT / "kit.py").read_text(encoding="utf-8")
    imported = set(re.findall(r"^\s*(?:import|from)\s+([\w]+)", source, flags=re.M))
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)


def test_kit_pins_torch_and_lets_the_environment_override_it(kit, monkeypatch):
    monkeypatch.delenv(kit.TORCH_ENV, raising=False)
    assert kit.torch_requirement() == "torch==2.13.0"
    monkeypatch.setenv(kit.TORCH_ENV, "torch==2.13.1")
    assert kit.torch_requirement() == "torch==2.13.1"


def test_kit_install_stamp_follows_pyproject(kit, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    stamp = tmp_path / "stamp"
    assert not kit.install_is_current(stamp, tmp_path)
    stamp.write_text(kit.pyproject_hash(tmp_path) + "\n")
    assert kit.install_is_current(stamp, tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert not kit.install_is_current(stamp, tmp_path)


def test_kit_help_and_unknown_command():
    shown = subprocess.run([sys.executable, "kit.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert shown.returncode == 0
    for command in ("notebooks", "test", "lab", "setup", "WARPKIT_TORCH", ".venv"):
        assert command in shown.stdout
    unknown = subprocess.run([sys.executable, "kit.py", "bogus"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown command 'bogus'" in unknown.stderr


def test_kit_refuses_a_broken_venv(kit, tmp_path, monkeypatch):
    monkeypatch.setattr(kit, "VENV", tmp_path / ".venv")
    (tmp_path / ".venv").mkdir()
    with pytest.raises(SystemExit, match="rm -rf .venv"):
        kit.create_venv()


# ----------------------------------------------------------------------------------------------------------
# README and CI
# ----------------------------------------------------------------------------------------------------------
def quickstart_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section, flags=re.S)
    assert block, "the Quickstart needs a code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quickstart_is_exactly_two_kit_commands():
    assert quickstart_commands() == ["python3 kit.py notebooks", "python3 kit.py test"]


def test_ci_runs_the_readme_test_command_with_browsers_required():
    ci = REPO_ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    script = ci.read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    test_command = quickstart_commands()[1]
    assert re.search(rf"^\s*{re.escape(test_command)}(\s|$)", script, flags=re.M), "CI must run the README's command"
    assert "WARPKIT_REQUIRE_BROWSER=1" in script
    assert "apt-get install" in script and "chromium-driver" in script and "apt-get update" in script
    assert "DEBIAN_FRONTEND=noninteractive" in script
    syntax = subprocess.run(["bash", "-n", str(ci)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_readme_has_the_sections_people_look_for():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for heading in ("## Quickstart", "## GPU", "## Running notebooks", "## Tests"):
        assert heading in readme
    for option in ("--size", "--device", "-p NAME VALUE", "--out", "--figures-dir", "--notebooks-dir"):
        assert option in readme
