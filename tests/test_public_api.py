"""The public API named by issue 16 is enough for a user's whole workflow: tests/public_api_script.py meta-trains,
saves, loads in a new process, builds a 5-way 1-shot task from PNG files and predicts, without touching a name
that starts with an underscore."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "public_api_script.py"


def test_the_script_names_nothing_private():
    tree = ast.parse(SCRIPT.read_text())
    private = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [part for alias in node.names for part in alias.name.split(".")]
            names += (node.module or "").split(".") if isinstance(node, ast.ImportFrom) else []
        elif isinstance(node, (ast.FunctionDef, ast.arg, ast.keyword)):
            names = [getattr(node, "name", None) or getattr(node, "arg", None) or ""]
        private |= {name for name in names if name.startswith("_")}
    assert not private, f"the public-API script uses private names: {sorted(private)}"


def test_the_script_trains_saves_loads_in_a_new_process_and_predicts(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("meta-iteration") == 3
    match = re.search(r"5-way 1-shot from PNG files: predicted (\[.*?\]), true (\[.*?\])", result.stdout)
    assert match, result.stdout
    predicted, true = ast.literal_eval(match.group(1)), ast.literal_eval(match.group(2))
    assert len(predicted) == len(true) == 10 and all(0 <= label < 5 for label in predicted)
    assert re.search(r"a single image: predicted \[[0-4]\]", result.stdout), result.stdout
    assert (tmp_path / "learner.pt").is_file() and len(list((tmp_path / "task").rglob("*.png"))) == 15
