#!/usr/bin/env python3
"""warpkit's set-up and entry point, using only Python's standard library.

    python3 kit.py notebooks [RUNNER ARGS...]   execute every lesson headlessly (fast size) into _build/notebooks
    python3 kit.py test [PYTEST ARGS...]        run the whole test suite
    python3 kit.py lab [JUPYTER ARGS...]        open the lessons in JupyterLab
    python3 kit.py site [--source DIR]          a static website of the executed lessons into _build/site
    python3 kit.py setup                        only create/update the environment
    python3 kit.py gpu-bundle                   download the wheels an offline GPU machine lacks into .gpu-bundle/
    python3 kit.py gpu-check --out DIR          on a GPU machine (no network needed): the whole GPU regression run
    python3 kit.py gpu-check --dry-run --out DIR   the same steps on the CPU at the fast size

Each command first makes sure the environment exists, doing only what is missing:

1. a virtual environment ``.venv`` in the repository root;
2. torch, unless ``.venv`` can already import one: the CPU build of ``torch==2.13.0`` (on Linux from PyTorch's
   CPU index, falling back to pip's own configuration when that index cannot be reached). A GPU user installs a
   CUDA build into ``.venv`` first (README, "GPU"). ``WARPKIT_TORCH`` overrides the requirement (e.g.
   ``WARPKIT_TORCH="torch==2.13.0"``) and ``WARPKIT_TORCH_INDEX`` the index (a URL, or empty for pip's own
   configuration);
3. warpkit itself with its test and notebook extras, ``pip install -e .[test]``, skipped while the hash of
   ``pyproject.toml`` matches the one stamped in ``.venv`` after the last successful install.

Extra arguments go to the command: ``python3 kit.py notebooks --size full`` (a later ``--size``/``--out``
overrides the default), ``python3 kit.py test -k preconditioning``. The exit status is the command's.

``gpu-bundle`` and ``gpu-check`` do not touch ``.venv`` on a GPU machine: ``gpu-check`` uses the python that runs
``kit.py`` (and its CUDA torch) with the bundle installed into ``.gpu-env/``; ``gpu-check --dry-run`` uses
``.venv``. Both are implemented in ``warpkit/kit/gpu.py`` (standard library only, loaded here by path).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".warpkit-installed"
DEFAULT_TORCH = "torch==2.13.0"
TORCH_ENV = "WARPKIT_TORCH"
TORCH_INDEX_ENV = "WARPKIT_TORCH_INDEX"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
EXTRAS = "test"
MIN_PYTHON = (3, 10)
COMMANDS = {
    "notebooks": "execute every lesson headlessly at the fast size into _build/notebooks (figures into figures/)",
    "test": "run the whole test suite (pytest)",
    "lab": "open the notebooks in JupyterLab",
    "site": "build a static website of the executed lessons (from _build/notebooks) into _build/site",
    "setup": "only create or update the environment in .venv",
    "gpu-bundle": "download the wheels an offline GPU machine lacks into .gpu-bundle/ (CPython 3.12, manylinux)",
    "gpu-check": "the GPU regression run on this machine: --out DIR (or $WARPKIT_GPU_OUT) [--dry-run] [LESSON ...]",
}


def say(message: str) -> None:
    print(f"[kit] {message}", flush=True)


def venv_python(venv: Path | None = None) -> Path:
    """The interpreter inside the virtual environment (``.venv`` by default)."""
    venv = VENV if venv is None else venv
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def torch_requirement() -> str:
    return os.environ.get(TORCH_ENV, "").strip() or DEFAULT_TORCH


def pyproject_hash(root: Path = ROOT) -> str:
    """What the install stamp records: the hash of pyproject.toml and the extras installed."""
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes())
    digest.update(f"[{EXTRAS}]".encode())
    return digest.hexdigest()


def install_is_current(stamp: Path | None = None, root: Path = ROOT) -> bool:
    stamp = STAMP if stamp is None else stamp
    try:
        return stamp.read_text(encoding="utf-8").strip() == pyproject_hash(root)
    except OSError:
        return False


def run(command: list, **kwargs) -> int:
    return subprocess.call([str(part) for part in command], cwd=ROOT, **kwargs)


def quiet_call(command: list) -> int:
    """Run ``command`` with its output kept in a temporary file, shown only if it fails (pip's install log is
    long and, when all goes well, says nothing a user needs)."""
    with tempfile.TemporaryFile() as log:
        code = run(command, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace"))
    return code


def check_call(command: list, what: str) -> None:
    code = quiet_call(command)
    if code != 0:
        raise SystemExit(f"[kit] {what} failed (exit status {code}); see the output above.")


def create_venv() -> None:
    python = venv_python()
    if python.exists():
        return
    if VENV.exists():
        raise SystemExit(
            f"[kit] {VENV} exists but has no Python interpreter ({python}); it is broken or not a virtual "
            "environment. Remove it (rm -rf .venv) and run this command again."
        )
    say(f"creating the virtual environment {VENV.relative_to(ROOT)} with Python {sys.version.split()[0]}")
    import venv

    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except Exception as error:  # Debian/Ubuntu ship venv without ensurepip unless python3-venv is installed
        raise SystemExit(
            f"[kit] could not create {VENV}: {error}\n"
            "On Debian/Ubuntu install the venv module first: sudo apt-get install python3-venv  "
            "(then remove the half-made .venv: rm -rf .venv)"
        ) from error


def torch_is_installed() -> bool:
    return run([venv_python(), "-c", "import torch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def install_torch() -> None:
    if torch_is_installed():
        version = subprocess.run(
            [str(venv_python()), "-c",
             "import torch; print(torch.__version__, 'with CUDA' if torch.cuda.is_available() else '(no GPU visible)')"],
            capture_output=True, text=True, cwd=ROOT,
        ).stdout.strip()
        say(f"torch is already installed in .venv ({version}); keeping it")
        return
    requirement = torch_requirement()
    install = [venv_python(), "-m", "pip", "install", requirement]
    index = os.environ.get(TORCH_INDEX_ENV)
    if index is not None:  # the user chose: a URL, or empty for pip's own configuration
        where = f" from {index}" if index.strip() else ""
        say(f"installing {requirement}{where} into .venv")
        check_call(install + (["--index-url", index.strip()] if index.strip() else []), f"installing {requirement}")
        return
    if sys.platform.startswith("linux"):
        # PyPI's Linux wheel bundles CUDA (gigabytes); PyTorch's CPU index has the small CPU build.
        say(f"installing {requirement} (CPU build) into .venv from {PYTORCH_CPU_INDEX}")
        if quiet_call(install + ["--index-url", PYTORCH_CPU_INDEX, "--retries", "1", "--timeout", "20"]) == 0:
            return
        say(f"that index is not reachable from here; installing {requirement} with pip's own configuration instead")
    else:
        say(f"installing {requirement} into .venv (set {TORCH_ENV} to choose another)")
    check_call(install, f"installing {requirement}")


def install_warpkit() -> None:
    if install_is_current():
        say(f"warpkit and its [{EXTRAS}] extras are installed and pyproject.toml is unchanged; skipping pip")
        return
    say(f"installing warpkit (editable) with its [{EXTRAS}] extras: pip install -e .[{EXTRAS}]")
    check_call([venv_python(), "-m", "pip", "install", "-e", f".[{EXTRAS}]"], f"pip install -e .[{EXTRAS}]")
    STAMP.write_text(pyproject_hash() + "\n", encoding="utf-8")


def ensure_environment() -> Path:
    """Create what is missing; return the environment's interpreter."""
    if sys.version_info < MIN_PYTHON:
        raise SystemExit(f"[kit] warpkit needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; this is {sys.version.split()[0]}")
    create_venv()
    install_torch()
    install_warpkit()
    return venv_python()


def load_gpu_module():
    """``warpkit/kit/gpu.py`` by path: importing the ``warpkit`` package would need torch and the notebook tools."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("warpkit_gpu", ROOT / "warpkit" / "kit" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def gpu_command(command: str, rest: list[str]) -> int:
    """``gpu-bundle`` and ``gpu-check`` (see warpkit/kit/gpu.py)."""
    import argparse

    gpu = load_gpu_module()
    if command == "gpu-bundle":
        parser = argparse.ArgumentParser(prog="kit.py gpu-bundle", description=COMMANDS[command])
        parser.parse_args(rest)
        try:
            gpu.build_bundle(say=say)
        except RuntimeError as error:
            print(f"[kit] gpu-bundle failed: {error}", file=sys.stderr)
            return 1
        return 0
    parser = argparse.ArgumentParser(prog="kit.py gpu-check", description=COMMANDS[command])
    parser.add_argument("lessons", nargs="*", metavar="LESSON", help="lesson numbers (default: all, 01-05)")
    parser.add_argument("--out", default=os.environ.get(gpu.OUT_ENV),
                        help=f"folder for the at most {gpu.MAX_OUTPUT_FILES} result files (default: ${gpu.OUT_ENV})")
    parser.add_argument("--dry-run", action="store_true",
                        help="rehearse on the CPU: fast size, .venv's python, the bundle's install only resolved")
    args = parser.parse_args(rest)
    if not args.out:
        parser.error(f"give the output folder with --out DIR or the environment variable {gpu.OUT_ENV}")
    unknown = [lesson for lesson in args.lessons if lesson not in gpu.LESSONS]
    if unknown:
        parser.error(f"unknown lessons {unknown}; choose among {', '.join(gpu.LESSONS)}")
    python = str(ensure_environment()) if args.dry_run else sys.executable
    return gpu.gpu_check(args.out, dry_run=args.dry_run, python=python, lessons=args.lessons or gpu.LESSONS,
                         say=lambda message: say(f"gpu-check: {message}"))


def usage() -> str:
    return "usage: python3 kit.py {" + ",".join(COMMANDS) + "} [ARGS...]\n" + __doc__.split("\n", 1)[1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"kit.py: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if command in ("gpu-bundle", "gpu-check"):
        return gpu_command(command, rest)
    python = ensure_environment()
    if command == "setup":
        say(f"environment ready: {python}")
        return 0
    if command == "notebooks":
        invocation = [python, "-m", "warpkit", "run", "--size", "fast", "--out", "_build/notebooks", *rest]
    elif command == "site":
        invocation = [python, "-m", "warpkit", "site", *rest]
    elif command == "test":
        invocation = [python, "-m", "pytest", *rest]
    else:
        invocation = [python, "-m", "jupyter", "lab", "notebooks", *rest]
    say("running: " + " ".join(str(part.relative_to(ROOT)) if isinstance(part, Path) else part for part in invocation))
    return run(invocation)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\n[kit] interrupted", file=sys.stderr)
        sys.exit(130)
