"""The package's layers, read from the source with ``ast``: imports point one way, and ARCHITECTURE.md names only
modules that exist.

Layers (ARCHITECTURE.md): the **engine** (``warpkit.engine``) imports nothing else of warpkit; the tooling
(``warpkit.kit``) imports only itself and the engine; the experiments' building blocks (``data``, ``envs``,
``models``) never import an experiment or a drawing; the **experiments** (``warpkit.experiments``) never import
``viz``; ``viz`` draws anything below it. Nothing inside the package imports the top-level ``warpkit`` (that
is for users), and the import graph has no cycle.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: for each layer, the layers it may import (a layer always may import itself)
ALLOWED = {
    "engine": set(),
    "kit": {"engine"},
    "data": {"engine", "kit", "envs", "models"},
    "envs": {"engine", "kit"},
    "models": {"engine", "kit", "envs"},
    "experiments": {"engine", "kit", "data", "envs", "models"},
    "viz": {"engine", "kit", "data", "envs", "models", "experiments"},
    "top": {"engine", "kit", "data", "envs", "models", "experiments", "viz"},
}
#: a function-level import of a warpkit module must say why on its line
LAZY_REASON = "# lazy:"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: modules directly under warpkit/ that are not packages: the public, user-facing layer (warpkit.tasks re-exports)
TOP_MODULES = {"__main__", "tasks"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in TOP_MODULES:
        return "top"
    return parts[1]


def imports_of(path: Path, root: Path, modules: set[str]) -> list[tuple[str, int, bool, str]]:
    """``(imported module, line, inside a function, source line)`` for every warpkit import in ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names]
            for target in targets:
                if target.split(".")[0] == "warpkit":
                    found.append((target, child.lineno, in_function, lines[child.lineno - 1]))
            visit(child, nested)

    visit(tree, False)
    return found


def check_package(root: Path) -> list[str]:
    """Every violation of the layer rules under the package folder ``root``, as readable lines."""
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root.parent) for f in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems = []
    for path in files:
        source = module_name(path, root.parent)
        for target, line, in_function, text in imports_of(path, root.parent, modules):
            where = f"{path.relative_to(root.parent)}:{line}"
            if target not in modules:
                problems.append(f"{where} imports {target}, which does not exist")
                continue
            graph[source].add(target)
            if layer_of(target) == "top" and layer_of(source) != "top":
                problems.append(f"{where}: {source} imports the top-level package {target}")
            elif layer_of(target) != layer_of(source) and layer_of(target) not in ALLOWED[layer_of(source)]:
                problems.append(f"{where}: {layer_of(source)} module {source} imports {layer_of(target)} "
                                f"module {target}")
            if in_function and LAZY_REASON not in text:
                problems.append(f"{where}: function-level import of {target} without a '{LAZY_REASON} why' comment")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in find_cycles(graph)]
    return problems


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (or a self-import)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def strongconnect(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                strongconnect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return cycles


def test_warpkit_imports_point_one_way():
    problems = check_package(REPO / "warpkit")
    assert not problems, "\n".join(problems)


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "warpkit"
    for name, text in {"__init__.py": "", "engine/__init__.py": "", "viz/__init__.py": "",
                       "experiments/__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_a_planted_cycle_is_found(tmp_path):
    root = _plant(tmp_path, {"engine/a.py": "from warpkit.engine.b import f\n",
                             "engine/b.py": "def f():\n    pass\nfrom warpkit.engine import a\n"})
    problems = check_package(root)
    assert any("import cycle" in p and "warpkit.engine.a" in p and "warpkit.engine.b" in p for p in problems)


def test_a_planted_engine_to_viz_import_is_found(tmp_path):
    root = _plant(tmp_path, {"engine/meta.py": "import warpkit.viz.style\n", "viz/style.py": "X = 1\n"})
    assert any("engine module warpkit.engine.meta imports viz module warpkit.viz.style" in p
               for p in check_package(root))


def test_an_unexplained_function_level_import_is_found(tmp_path):
    root = _plant(tmp_path, {"experiments/run.py": "def go():\n    from warpkit.engine import meta\n",
                             "experiments/ok.py": "def go():\n    from warpkit.engine import meta  # lazy: heavy\n",
                             "engine/meta.py": "X = 1\n"})
    problems = check_package(root)
    assert any("experiments/run.py:2" in p and "function-level" in p for p in problems)
    assert not any("experiments/ok.py" in p for p in problems)


def _names_something(dotted: str) -> bool:
    """A module, a package, or ``module.attribute`` where the module defines or re-exports the attribute."""
    path = REPO / Path(*dotted.split("."))
    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
        return True
    parent, attribute = path.parent, path.name
    source = parent.with_suffix(".py") if parent.with_suffix(".py").exists() else parent / "__init__.py"
    return source.exists() and re.search(rf"\b{attribute}\b", source.read_text()) is not None


def test_architecture_names_only_modules_that_exist():
    text = (REPO / "ARCHITECTURE.md").read_text()
    dotted = set(re.findall(r"\bwarpkit(?:\.[a-z_]+)+", text))
    missing = [name for name in sorted(dotted) if not _names_something(name)]
    # the tree drawing names files relative to the folder above them
    tree = re.search(r"```\nwarpkit/\n(.*?)```", text, re.S)
    assert tree, "ARCHITECTURE.md has no ```warpkit/ ...``` tree"
    listed: list[Path] = []
    folders: list[tuple[int, Path]] = []  # the open folders, by indentation: a name belongs to the last one above
    for line in tree.group(1).splitlines():
        name = line.split()[0] if line.strip() else ""
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent and re.fullmatch(r"[a-z_]+(/|\.py)", name):
            folders.pop()
        parent = folders[-1][1] if folders else REPO / "warpkit"
        if re.fullmatch(r"[a-z_]+/", name):
            listed.append(parent / name.rstrip("/"))
            folders.append((indent, parent / name.rstrip("/")))
        elif re.fullmatch(r"[a-z_]+\.py", name):
            listed.append(parent / name)
    missing += [str(p.relative_to(REPO)) for p in listed if not p.exists()]
    assert not missing, f"ARCHITECTURE.md names modules that do not exist: {missing}"
    assert len(listed) > 10


@pytest.mark.parametrize("folder", ["warpkit", "notebooks", "tests", "examples", "benchmarks"])
def test_nothing_cites_our_private_notes(folder):
    hits = [str(p.relative_to(REPO)) for p in (REPO / folder).rglob("*")
            if p.is_file() and p.suffix in {".py", ".ipynb", ".md"} and "warpgrad.md" in p.read_text()
            and p.name != "test_architecture.py"]
    assert not hits, f"these files cite a notes file outside the repository: {hits}"
