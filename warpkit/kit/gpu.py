"""The GPU regression run: reference bands, the offline wheel bundle, and ``python3 kit.py gpu-check``.

Standard library only, and no import of the rest of warpkit: ``kit.py`` loads this file by path on a GPU machine
before anything else is installed (importing the ``warpkit`` package would import torch and the notebook tools).

Three parts:

* **Bands** (:func:`check_bands`, :data:`BANDS_PATH`): ``results/gpu_bands.json`` states, per lesson, the science
  claims as inequalities between recorded values (``"acc_warp_leap > acc_leap"``) and ranges for values that must
  not drift (``{"record": "riemann_error_slope", "range": [1.8, 2.2]}``), each for the sizes it applies to. Applied to the runner's
  ``summary.json`` they give one pass/fail line per band.
* **The bundle** (:func:`resolve_bundle`, :func:`build_bundle`): the wheels, for CPython 3.12 on manylinux
  x86-64, of every package the lessons and the CUDA tests need that a GPU machine with only torch, numpy,
  matplotlib, pillow, tqdm, pyyaml and pytest may lack (:data:`BUNDLE_REQUIREMENTS` and their dependencies,
  minus :data:`MACHINE_HAS`), downloaded by pip into ``.gpu-bundle/`` with ``manifest.json``.
* **The check** (:func:`gpu_check`): on the GPU machine, with its own ``python3`` and torch: CUDA visible (else
  stop at once), the bundle installed from local files with ``pip install --no-index --no-deps --target
  .gpu-env`` (a folder put on ``PYTHONPATH``, so it works whether or not that python is a virtual environment),
  every module the lessons import importable, the CUDA tests, the replay benchmark (batched against looped replay,
  :func:`step_replay_benchmark`), every lesson at the ``gpu`` size through the runner with ``--device cuda``, and
  the bands. ``--dry-run`` does the same on the CPU at the ``fast`` size with
  ``.venv``'s python: the bundle's install is then resolved for the target platform (``pip install --dry-run``)
  rather than installed, and the CUDA tests are collected and skipped.

Its output folder gets at most :data:`MAX_OUTPUT_FILES` files: ``gpu_check.json`` (every check with pass/fail,
seconds and detail; the environment; each lesson's records), ``report.md`` (the same for people),
``notebooks.zip`` (executed notebooks and figures), ``log.txt`` (everything the steps printed) and
``cuda_tests.xml`` (pytest's JUnit report).

Time estimate for the ``gpu`` size on one H100-class GPU: about 270 s for all six lessons plus lesson 04's
evaluation (:data:`GPU_TIME_ESTIMATE`, README "GPU").
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
BANDS_PATH = REPO_ROOT / "results" / "gpu_bands.json"
BUNDLE_DIR = REPO_ROOT / ".gpu-bundle"
ENV_DIR = REPO_ROOT / ".gpu-env"
MANIFEST_NAME = "manifest.json"
OUT_ENV = "WARPKIT_GPU_OUT"
MAX_OUTPUT_FILES = 8
MAX_BUNDLE_MIB = 40
LESSONS = ("01", "02", "03", "04", "05", "06")
#: per lesson, runner parameters for the check: no checkpoints, so every run trains from scratch and its time counts
LESSON_PARAMETERS: dict[str, list[tuple[str, str]]] = {"04": [("CHECKPOINT", "")], "05": [("CHECKPOINT_DIR", "")]}
#: the seconds all lessons together may take at the ``gpu`` size (issue 17: six minutes on one H100-class GPU)
GPU_SECONDS_BUDGET = 360
#: a hung lesson must not hold the machine: seconds per cell (the runner's --timeout) and per lesson
CELL_TIMEOUT, LESSON_TIMEOUT = 900, 1800

# ----------------------------------------------------------------------------------------------------------
# the target machine
# ----------------------------------------------------------------------------------------------------------
TARGET_PYTHON = "3.12"
TARGET_IMPLEMENTATION = "cp"
TARGET_ABI = "cp312"
#: the machine runs a CUDA torch, whose wheels need glibc ≥ 2.28, so manylinux_2_28 wheels are safe there
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                    "manylinux_2_5_x86_64", "manylinux1_x86_64", "any")
#: what the lessons, the runner and the CUDA tests need beyond torch (pyproject's dependencies and the
#: ``notebooks`` extra without JupyterLab, which headless runs never start, plus pytest-timeout for conftest.py)
BUNDLE_REQUIREMENTS = ("gymnasium>=1.0", "papermill>=2.6", "jupytext>=1.16", "nbformat>=5.9", "nbclient>=0.10",
                       "ipykernel>=6.29", "ipywidgets>=8.1", "pytest-timeout>=2.3")
#: distributions the GPU machines have already (issue 17); never bundled, so the machine's builds are used
MACHINE_HAS = ("torch", "numpy", "matplotlib", "pillow", "tqdm", "pyyaml", "pytest")
#: the modules the check imports before running anything (a missing dependency fails here, not mid-lesson)
REQUIRED_IMPORTS = ("torch", "numpy", "matplotlib", "PIL", "tqdm", "yaml", "pytest", "pytest_timeout", "gymnasium",
                    "papermill", "jupytext", "nbformat", "nbclient", "ipykernel", "ipywidgets", "IPython", "warpkit",
                    "warpkit.experiments.omniglot", "warpkit.experiments.maze", "warpkit.experiments.continual",
                    "warpkit.experiments.mountains", "warpkit.envs.maze", "warpkit.viz.explorers", "warpkit.kit.runner")

#: How long the ``gpu`` size should take on one H100-class GPU, per lesson (seconds), and how it was obtained
#: (README, "GPU"; benchmarks/gpu_estimate.py). ``cpu``: measured CPU seconds of the gpu size on this repository's
#: CPU (user + sys of ``python -m warpkit run NN --size gpu --device cpu``, kernel included; lesson 06: the kernel's
#: own ``cpu_seconds`` record); ``gpu_to_cpu``: a unit's estimated GPU seconds over its measured CPU seconds
#: (operations × 10 µs + FLOPs / 5 TFLOP/s, both assumed); ``gpu``: the estimate. Lesson 04's (Omniglot) gpu size was too slow
#: to run on this CPU: its estimate is 36 meta-iterations × 1.456 s per meta-iteration of all seven methods, the
#: evaluation and plots not included. No GPU has run it yet: gpu-check measures it and fails above the budget.
GPU_TIME_ESTIMATE = {
    "01": {"cpu": 15.8, "gpu_to_cpu": None, "gpu": 16},  # float64 toys: taken at CPU speed
    "02": {"cpu": 19.1, "gpu_to_cpu": None, "gpu": 19},  # tiny problems, taken at CPU speed (wall seconds)
    "03": {"cpu": 66.1, "gpu_to_cpu": None, "gpu": 66},  # 2-D problems: computes on the CPU whatever DEVICE says
    "04": {"cpu": None, "gpu_to_cpu": 0.077, "gpu": 52},  # meta-training only (see above)
    "05": {"cpu": 96.2, "gpu_to_cpu": 0.837, "gpu": 81},
    "06": {"cpu": 38.5, "gpu_to_cpu": 0.924, "gpu": 36},
}


def normalise(name: str) -> str:
    """A distribution name in PEP 503 normal form (``PyYAML`` → ``pyyaml``, ``pytest_timeout`` → ``pytest-timeout``)."""
    return "-".join(part for part in name.lower().replace("_", "-").replace(".", "-").split("-") if part)


# ----------------------------------------------------------------------------------------------------------
# bands
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Check:
    """One pass/fail line of the GPU check."""

    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


_COMPARISONS: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITHMETIC: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class BandError(ValueError):
    """A band that cannot be evaluated: a malformed claim, or a record it names is missing or not a number."""


def _value(node: ast.AST, records: Mapping[str, Any]) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in records:
            raise BandError(f"no record {node.id!r}")
        value = records[node.id]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BandError(f"record {node.id!r} is not a number: {value!r}")
        return float(value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, records)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_value(node.left, records), _value(node.right, records))
    raise BandError(f"only numbers, record names, + - * / and parentheses are allowed, got {ast.dump(node)}")


def evaluate_claim(claim: str, records: Mapping[str, Any]) -> tuple[bool, str]:
    """Evaluate ``"a <= 0.8 * b"`` (chains such as ``"0 < a < 1"`` too) on ``records``; returns (holds, values).

    Raises :class:`BandError` for a malformed claim or a missing record."""
    try:
        tree = ast.parse(claim, mode="eval").body
    except SyntaxError as error:
        raise BandError(f"cannot parse claim {claim!r}: {error.msg}") from None
    if not isinstance(tree, ast.Compare) or not all(type(op) in _COMPARISONS for op in tree.ops):
        raise BandError(f"a claim is a comparison with <, <=, > or >=, got {claim!r}")
    sides = [tree.left, *tree.comparators]
    values = [_value(side, records) for side in sides]
    holds = all(_COMPARISONS[type(op)](a, b) for op, a, b in zip(tree.ops, values, values[1:]))
    shown = " ; ".join(f"{ast.unparse(side)} = {value:.6g}" for side, value in zip(sides, values)
                       if not isinstance(side, ast.Constant))
    return holds, shown


def load_bands(path: str | os.PathLike = BANDS_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        bands = json.load(handle)
    if not isinstance(bands.get("notebooks"), dict):
        raise BandError(f"{path}: expected a 'notebooks' object")
    return bands


def _applies(entry: Mapping[str, Any], size: str) -> bool:
    sizes = entry.get("sizes")
    return sizes is None or size in sizes


def check_bands(summary: Sequence[Mapping[str, Any]], bands: Mapping[str, Any], size: str,
                device: str | None = None) -> list[Check]:
    """Apply ``bands`` (the parsed ``results/gpu_bands.json``) to a runner summary (the list in ``summary.json``).

    One :class:`Check` per notebook status, per band that applies to ``size``, and, with ``device``, per
    notebook's recorded ``device``. A lesson named in the bands but missing from the summary fails; so does a
    band naming a missing record (a renamed record must not pass silently)."""
    checks: list[Check] = []
    by_name = {entry["notebook"]: entry for entry in summary}
    for notebook, spec in bands["notebooks"].items():
        entry = by_name.get(notebook)
        if entry is None:
            checks.append(Check(f"{notebook}: ran", False, "not in the summary"))
            continue
        records = entry.get("records", {})
        checks.append(Check(f"{notebook}: ran", entry.get("status") == "ok",
                            entry.get("error") or f"{entry.get('seconds', 0):.1f} s", float(entry.get("seconds", 0))))
        if records.get("size", size) != size:
            checks.append(Check(f"{notebook}: size", False, f"recorded size {records.get('size')!r}, expected {size!r}"))
        if device is not None:
            got = records.get("device")
            checks.append(Check(f"{notebook}: device", got == device,
                                f"recorded device {got!r}" + (f" ({records['device_name']})" if "device_name" in records else "")))
        for band in spec.get("claims", []):
            if not _applies(band, size):
                continue
            label = f"{notebook}: {band['claim']}"
            try:
                holds, shown = evaluate_claim(band["claim"], records)
                checks.append(Check(label, holds, shown + (f" — {band['why']}" if band.get("why") and not holds else "")))
            except BandError as error:
                checks.append(Check(label, False, str(error)))
        for band in spec.get("ranges", []):
            if not _applies(band, size):
                continue
            name, (low, high) = band["record"], band["range"]
            label = f"{notebook}: {name} in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            value = records.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                checks.append(Check(label, False, f"record {name!r} missing or not a number: {value!r}"))
                continue
            ok = (low is None or value >= low) and (high is None or value <= high)
            checks.append(Check(label, ok, f"{name} = {value:.6g}"))
    return checks


# ----------------------------------------------------------------------------------------------------------
# the bundle
# ----------------------------------------------------------------------------------------------------------
def target_options() -> list[str]:
    """pip options that resolve for the GPU machine (CPython 3.12, manylinux x86-64) instead of this one."""
    options = ["--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", TARGET_IMPLEMENTATION,
               "--abi", TARGET_ABI, "--abi", "abi3", "--abi", "none"]
    for platform_tag in TARGET_PLATFORMS:
        options += ["--platform", platform_tag]
    return options


def registry_reachable(url: str = "https://pypi.org/simple/pip/", timeout: float = 8.0) -> bool:
    """Whether pip's registry answers (the bundle's resolution and download need it)."""
    index = os.environ.get("PIP_INDEX_URL")
    if index:
        url = index.rstrip("/") + "/pip/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400
    except Exception:
        return False


def resolve_bundle(python: str | os.PathLike = sys.executable,
                   requirements: Iterable[str] = BUNDLE_REQUIREMENTS) -> dict[str, Any]:
    """Resolve ``requirements`` for the target platform with ``pip install --dry-run --report`` (nothing is
    downloaded but metadata) and return the manifest without files: ``{"target", "requirements", "machine_has",
    "packages": [{"name", "version", "url", "sha256"}], "left_to_the_machine": [...]}``."""
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        command = [str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--disable-pip-version-check", "--report", str(report_path), "--target", str(Path(scratch) / "t"),
                   *target_options(), *requirements]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not resolve the bundle for CPython {TARGET_PYTHON} manylinux x86-64:\n"
                               f"{' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        report = json.loads(report_path.read_text(encoding="utf-8"))
    packages, left = [], []
    for item in report["install"]:
        name, version = normalise(item["metadata"]["name"]), item["metadata"]["version"]
        if name in MACHINE_HAS:
            left.append(f"{name}=={version}")
            continue
        info = item.get("download_info", {})
        packages.append({"name": name, "version": version, "url": info.get("url", ""),
                         "sha256": info.get("archive_info", {}).get("hashes", {}).get("sha256", "")})
    return {
        "target": {"python": TARGET_PYTHON, "implementation": TARGET_IMPLEMENTATION, "abi": TARGET_ABI,
                   "platforms": list(TARGET_PLATFORMS)},
        "requirements": list(requirements),
        "machine_has": list(MACHINE_HAS),
        "packages": sorted(packages, key=lambda p: p["name"]),
        "left_to_the_machine": sorted(left),
    }


def build_bundle(bundle_dir: str | os.PathLike = BUNDLE_DIR, python: str | os.PathLike = sys.executable,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """Resolve, download the wheels into ``bundle_dir`` (replacing an earlier bundle) and write ``manifest.json``."""
    bundle_dir = Path(bundle_dir)
    say(f"resolving {len(BUNDLE_REQUIREMENTS)} requirements for CPython {TARGET_PYTHON} manylinux x86-64 "
        f"(leaving {', '.join(MACHINE_HAS)} to the machine)")
    manifest = resolve_bundle(python)
    pins = [f"{p['name']}=={p['version']}" for p in manifest["packages"]]
    staging = bundle_dir.with_name(bundle_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    say(f"downloading {len(pins)} wheels into {staging.name}/")
    command = [str(python), "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--dest", str(staging), *target_options(), *pins]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip download failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    wheels = {}
    for path in sorted(staging.glob("*.whl")):
        wheels[normalise(path.name.split("-")[0])] = path
    for package in manifest["packages"]:
        path = wheels.get(package["name"])
        if path is None:
            raise RuntimeError(f"pip download did not produce a wheel for {package['name']}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if package["sha256"] and digest != package["sha256"]:
            raise RuntimeError(f"{path.name}: sha256 {digest} differs from the index's {package['sha256']}")
        package.update(file=path.name, sha256=digest, bytes=path.stat().st_size)
        package.pop("url", None)
    extra = set(wheels) - {p["name"] for p in manifest["packages"]}
    if extra:
        raise RuntimeError(f"pip download produced wheels that were not asked for: {sorted(extra)}")
    manifest["total_bytes"] = sum(p["bytes"] for p in manifest["packages"])
    manifest["built_with"] = f"pip in Python {platform.python_version()} on {platform.system()}"
    if manifest["total_bytes"] > MAX_BUNDLE_MIB * 2**20:
        raise RuntimeError(f"the bundle is {manifest['total_bytes'] / 2**20:.1f} MiB, over {MAX_BUNDLE_MIB} MiB")
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(bundle_dir, ignore_errors=True)
    staging.rename(bundle_dir)
    say(f"wrote {bundle_dir}: {len(manifest['packages'])} wheels, {manifest['total_bytes'] / 2**20:.1f} MiB")
    return manifest


def verify_bundle(bundle_dir: str | os.PathLike = BUNDLE_DIR) -> tuple[dict[str, Any], list[Path]]:
    """The manifest and its wheel files, every one present with its recorded sha256; raises ``RuntimeError``."""
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST_NAME
    if not manifest_path.exists():
        raise RuntimeError(f"no bundle at {bundle_dir}: build it with `python3 kit.py gpu-bundle` on a machine with "
                           "internet access, then copy the repository (with .gpu-bundle/) to the GPU machine")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    files = []
    for package in manifest["packages"]:
        path = bundle_dir / package["file"]
        if not path.exists():
            raise RuntimeError(f"the bundle lacks {package['file']} (named in its manifest)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != package["sha256"]:
            raise RuntimeError(f"{path.name} does not match the sha256 in the manifest (corrupt copy?)")
        files.append(path)
    return manifest, files


def extract_wheels(wheels: Iterable[Path], target: Path) -> None:
    """Install wheels by unpacking them into ``target`` (for a python without pip): a wheel's files go to the
    target as they are, and the contents of its ``*.data/purelib`` and ``*.data/platlib`` folders to its root."""
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        for data in target.glob("*.data"):
            for scheme in ("purelib", "platlib"):
                for item in (data / scheme).glob("*") if (data / scheme).exists() else []:
                    destination = target / item.name
                    if destination.exists() and destination.is_dir() and item.is_dir():
                        shutil.copytree(item, destination, dirs_exist_ok=True)
                    else:
                        shutil.move(str(item), destination)
            shutil.rmtree(data)


# ----------------------------------------------------------------------------------------------------------
# the check
# ----------------------------------------------------------------------------------------------------------
class Stop(Exception):
    """A failed step after which nothing else can run (CUDA missing, no bundle, failed install)."""


@dataclass
class Run:
    """State of one ``gpu_check`` run: where things go and what happened."""

    out: Path
    dry_run: bool
    python: str
    work: Path
    bundle: Path = BUNDLE_DIR
    log_lines: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    summary: list[dict[str, Any]] = field(default_factory=list)
    say: Callable[[str], None] = print

    @property
    def size(self) -> str:
        return "fast" if self.dry_run else "gpu"

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = ([] if self.dry_run else [str(ENV_DIR)]) + [str(REPO_ROOT)]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")
        env.pop("PYTHONHOME", None)
        return env

    def command(self, name: str, args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``args`` in the repository root with the check's environment; the output goes to the log."""
        shown = " ".join(map(str, args))
        self.say(f"{name}: {shown if len(shown) <= 240 else shown[:240] + ' …'}")
        start = time.perf_counter()
        try:
            done = subprocess.run([str(a) for a in args], cwd=REPO_ROOT, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            done = subprocess.CompletedProcess(expired.cmd, 124, _text(expired.stdout), _text(expired.stderr) +
                                               f"\n[gpu-check] stopped after {timeout:.0f} s")
        seconds = time.perf_counter() - start
        self.timings[name] = round(seconds, 2)
        self.log_lines += [f"===== {name} ({seconds:.1f} s, exit {done.returncode}): {' '.join(map(str, args))}",
                           done.stdout, done.stderr]
        return done

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        self.say(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}" + (f"  ({check.detail})" if check.detail else ""))
        return check


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def step_torch(run: Run) -> None:
    """Torch imports; on a GPU run CUDA must be visible (stop otherwise, before anything is installed)."""
    probe = ("import json, sys, torch; cuda = torch.cuda.is_available(); "
             "print(json.dumps({'python': sys.version.split()[0], 'executable': sys.executable, "
             "'torch': torch.__version__, 'torch_cuda': torch.version.cuda, 'cuda_available': cuda, "
             "'gpu': torch.cuda.get_device_name(0) if cuda else None, "
             "'gpu_count': torch.cuda.device_count() if cuda else 0}))")
    done = run.command("torch", [run.python, "-c", probe], timeout=300)
    if done.returncode != 0:
        run.add(Check("torch imports", False, _last_line(done.stderr)))
        raise Stop(f"{run.python} cannot import torch: {_last_line(done.stderr)}")
    info = json.loads(_last_line(done.stdout))
    run.environment.update(info)
    run.add(Check("torch imports", True, f"torch {info['torch']} in Python {info['python']} ({info['executable']})"))
    if run.dry_run:
        run.add(Check("CUDA (not needed for the dry run)", True, f"torch.cuda.is_available() = {info['cuda_available']}"))
        return
    ok = bool(info["cuda_available"])
    run.add(Check("CUDA is visible to torch", ok, f"{info['gpu']} (CUDA {info['torch_cuda']})" if ok else
                  f"torch {info['torch']} sees no GPU (CUDA build: {info['torch_cuda']})"))
    if not ok:
        raise Stop(f"CUDA is not available to {run.python} (torch {info['torch']}, built for CUDA "
                   f"{info['torch_cuda']}). gpu-check needs a GPU machine with a CUDA build of torch; "
                   "use --dry-run to rehearse on a CPU.")


def step_install(run: Run) -> None:
    """Install the bundle from local files only (GPU), or resolve its install for the target platform (dry run)."""
    if run.dry_run and not (run.bundle / MANIFEST_NAME).exists():
        step_resolve_instead(run)
        return
    try:
        manifest, wheels = verify_bundle(run.bundle)
    except RuntimeError as error:
        run.add(Check("bundle present and intact", False, str(error)))
        raise Stop(str(error)) from None
    run.environment["bundle"] = {"wheels": len(wheels), "mib": round(manifest["total_bytes"] / 2**20, 1)}
    run.add(Check("bundle present and intact", True, f"{len(wheels)} wheels, {manifest['total_bytes'] / 2**20:.1f} MiB, "
                  "sha256 as in the manifest"))
    common = ["-m", "pip", "install", "--no-index", "--no-deps", "--find-links", str(run.bundle),
              "--disable-pip-version-check", "--no-warn-script-location"]
    if run.dry_run:
        with tempfile.TemporaryDirectory() as scratch:
            done = run.command("install (dry run, target platform)",
                               [run.python, *common, "--dry-run", "--target", scratch, *target_options(), *wheels],
                               timeout=600)
        run.add(Check("bundle installs offline on CPython 3.12 manylinux (pip --dry-run)", done.returncode == 0,
                      _last_line(done.stdout if done.returncode == 0 else done.stderr)))
        if done.returncode != 0:
            raise Stop("the bundle does not install for the target platform")
        return
    shutil.rmtree(ENV_DIR, ignore_errors=True)
    has_pip = run.command("pip available", [run.python, "-m", "pip", "--version"], timeout=120).returncode == 0
    if has_pip:
        done = run.command("install", [run.python, *common, "--target", ENV_DIR, *wheels], timeout=600)
        ok, detail = done.returncode == 0, _last_line(done.stdout if done.returncode == 0 else done.stderr)
    else:  # a python without pip: a wheel is a zip whose files go where they are
        start = time.perf_counter()
        try:
            extract_wheels(wheels, ENV_DIR)
            ok, detail = True, f"no pip in {run.python}: unpacked {len(wheels)} wheels"
        except (OSError, zipfile.BadZipFile) as error:
            ok, detail = False, f"unpacking the wheels failed: {error}"
        run.timings["install"] = round(time.perf_counter() - start, 2)
    run.add(Check(f"bundle installed offline into {ENV_DIR.name}/", ok, detail))
    if not ok:
        raise Stop("installing the bundle failed; see log.txt")


def step_resolve_instead(run: Run) -> None:
    """Dry run without a bundle here: resolve it for the target platform instead (needs the registry)."""
    start = time.perf_counter()
    if not registry_reachable():
        run.add(Check("bundle resolves for CPython 3.12 manylinux", False,
                      f"no bundle at {run.bundle} and the package registry is unreachable: build the bundle first "
                      "(python3 kit.py gpu-bundle) or run where PyPI answers"))
        raise Stop("nothing to check the install against")
    try:
        manifest = resolve_bundle(run.python)
        ok, detail = True, (f"no bundle here, so resolved it instead: {len(manifest['packages'])} packages "
                            f"({', '.join(manifest['left_to_the_machine'])} left to the machine)")
    except RuntimeError as error:
        ok, detail = False, str(error)
    run.timings["resolve bundle"] = round(time.perf_counter() - start, 2)
    run.add(Check("bundle resolves for CPython 3.12 manylinux", ok, detail))
    if not ok:
        raise Stop("the bundle does not resolve for the target platform")


def step_imports(run: Run) -> None:
    """Every module the lessons, the runner and the tests import, from the environment the lessons will use."""
    probe = ("import importlib, json\nmissing = {}\n"
             f"for name in {list(REQUIRED_IMPORTS)!r}:\n"
             "    try:\n        importlib.import_module(name)\n"
             "    except Exception as error:\n        missing[name] = f'{type(error).__name__}: {error}'\n"
             "print(json.dumps(missing))")
    done = run.command("imports", [run.python, "-c", probe], timeout=600)
    try:
        missing = json.loads(_last_line(done.stdout))
    except json.JSONDecodeError:
        missing = {"(probe)": _last_line(done.stderr)}
    run.add(Check(f"{len(REQUIRED_IMPORTS)} modules import", not missing,
                  "; ".join(f"{k}: {v}" for k, v in missing.items()) or ", ".join(REQUIRED_IMPORTS[:8]) + ", …"))
    if missing:
        raise Stop("modules the lessons need do not import")


def step_cuda_tests(run: Run) -> None:
    """``pytest -m cuda``; on a GPU nothing may be skipped, on the dry run everything is (collected, not run)."""
    junit = run.work / "cuda_tests.xml"
    done = run.command("cuda tests", [run.python, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs",
                                      "-p", "no:cacheprovider", f"--junitxml={junit}"], timeout=900)
    counts = _junit_counts(junit)
    detail = f"{counts['tests']} tests: {counts['passed']} passed, {counts['failures'] + counts['errors']} failed, " \
             f"{counts['skipped']} skipped"
    if run.dry_run:
        ok = done.returncode == 0 and counts["tests"] > 0 and counts["failures"] + counts["errors"] == 0
        run.add(Check("CUDA tests collected (skipped on the CPU)", ok, detail))
    else:
        ok = done.returncode == 0 and counts["tests"] > 0 and counts["skipped"] == 0
        run.add(Check("CUDA tests pass, none skipped", ok, detail))


def _junit_counts(path: Path) -> dict[str, int]:
    counts = dict(tests=0, failures=0, errors=0, skipped=0)
    try:
        import xml.etree.ElementTree as ElementTree

        root = ElementTree.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        for suite in suites:
            for key in counts:
                counts[key] += int(suite.get(key, 0))
    except Exception:  # no report (pytest did not get as far as writing one) or an unreadable one
        pass
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


#: the replay benchmark of the GPU run: ``benchmarks/engine.py --child replay FILTERS POINTS REPEATS DEVICE`` times
#: the exact meta-gradient of a chunk of Omniglot points replayed one at a time and in one batched call
REPLAY_BENCHMARK = {"gpu": ("64", "64", "3"), "fast": ("8", "4", "1")}


def step_replay_benchmark(run: Run) -> None:
    """Batched against looped replay on the run's device (issue 18): seconds of both, their speedup and the
    largest difference of their gradients, kept in ``gpu_check.json`` (``environment["replay_benchmark"]``)."""
    done = run.command("replay benchmark", [run.python, "benchmarks/engine.py", "--child", "replay",
                                            *REPLAY_BENCHMARK[run.size], run.device], timeout=900)
    try:
        result = json.loads(_last_line(done.stdout))
    except ValueError:
        run.add(Check("replay benchmark runs", False, _last_line(done.stderr) or "no result"))
        return
    run.environment["replay_benchmark"] = result
    ok = done.returncode == 0 and result["max_abs_diff"] < 1e-3
    run.add(Check("replay benchmark: batched and looped replay agree", ok,
                  f"{result['points']} points, {result['filters']} filters on {result['device']}: looped "
                  f"{result['looped_seconds']:.3f} s, batched {result['batched_seconds']:.3f} s "
                  f"({result['speedup']:.2f}×), max |Δ| {result['max_abs_diff']:.1e}"))


def step_lessons(run: Run, lessons: Sequence[str]) -> None:
    """Every lesson through the runner at the run's size and device, one runner call each (own parameters)."""
    notebooks_out, figures = run.work / "notebooks", run.work / "notebooks" / "figures"
    for lesson in lessons:
        out = notebooks_out / lesson
        args = [run.python, "-m", "warpkit", "run", lesson, "--size", run.size, "--device", run.device,
                "--out", out, "--figures-dir", figures, "--no-progress", "--timeout", str(CELL_TIMEOUT)]
        for name, value in LESSON_PARAMETERS.get(lesson, []):
            args += ["-p", name, value]
        done = run.command(f"lesson {lesson}", args, timeout=LESSON_TIMEOUT)
        summary_path = out / "summary.json"
        if summary_path.exists():
            entries = json.loads(summary_path.read_text(encoding="utf-8"))
            run.summary += entries
        else:
            run.summary.append({"notebook": lesson, "status": "failed", "seconds": run.timings[f"lesson {lesson}"],
                                "error": _last_line(done.stderr) or "the runner wrote no summary", "records": {}})
        entry = run.summary[-1]
        run.say(f"  lesson {lesson}: {entry['status']} in {entry.get('seconds', 0):.1f} s")


def step_bands(run: Run, lessons: Sequence[str]) -> None:
    bands = load_bands()
    wanted = {name: spec for name, spec in bands["notebooks"].items() if name[:2] in lessons}
    for check in check_bands(run.summary, {**bands, "notebooks": wanted}, run.size, device=run.device):
        run.add(check)
    if run.size == "gpu" and set(lessons) == set(LESSONS):
        total = sum(float(entry.get("seconds", 0)) for entry in run.summary)
        run.add(Check(f"all lessons within {GPU_SECONDS_BUDGET} s", total <= GPU_SECONDS_BUDGET, f"{total:.0f} s"))


def write_outputs(run: Run, started: float, stopped: str) -> list[Path]:
    """At most :data:`MAX_OUTPUT_FILES` files in ``run.out``."""
    run.out.mkdir(parents=True, exist_ok=True)
    passed = not stopped and all(check.ok for check in run.checks)
    result = {
        "passed": passed, "stopped": stopped, "dry_run": run.dry_run, "size": run.size, "device": run.device,
        "seconds": round(time.perf_counter() - started, 1), "environment": run.environment,
        "checks": [asdict(check) for check in run.checks], "timings": run.timings,
        "lessons": [{k: entry.get(k) for k in ("notebook", "status", "seconds", "error", "records")}
                    for entry in run.summary],
    }
    written = [run.out / "gpu_check.json", run.out / "report.md", run.out / "log.txt"]
    written[0].write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    written[1].write_text(report_markdown(result), encoding="utf-8")
    written[2].write_text("\n".join(run.log_lines) + "\n", encoding="utf-8")
    junit = run.work / "cuda_tests.xml"
    if junit.exists():
        written.append(Path(shutil.copy(junit, run.out / "cuda_tests.xml")))
    notebooks = run.work / "notebooks"
    if notebooks.exists():
        archive = run.out / "notebooks.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(notebooks.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(notebooks))
        written.append(archive)
    assert len(written) <= MAX_OUTPUT_FILES
    return written


def report_markdown(result: Mapping[str, Any]) -> str:
    env = result["environment"]
    lines = [f"# warpkit GPU check: {'PASSED' if result['passed'] else 'FAILED'}", "",
             f"{'dry run on the CPU, ' if result['dry_run'] else ''}size `{result['size']}`, device "
             f"`{result['device']}`, {result['seconds']:.0f} s in all; torch {env.get('torch')} in Python "
             f"{env.get('python')}; GPU: {env.get('gpu') or 'none'}", ""]
    if result["stopped"]:
        lines += [f"**Stopped early:** {result['stopped']}", ""]
    lines += ["| check | result | detail |", "|---|---|---|"]
    for check in result["checks"]:
        detail = str(check["detail"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check['name']} | {'pass' if check['ok'] else '**FAIL**'} | {detail} |")
    lines += ["", "| step | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in result["timings"].items()]
    return "\n".join(lines) + "\n"


def gpu_check(out: str | os.PathLike, dry_run: bool = False, python: str | None = None,
              lessons: Sequence[str] = LESSONS, say: Callable[[str], None] = print,
              bundle: str | os.PathLike = BUNDLE_DIR) -> int:
    """The whole GPU run (module docstring); returns the exit status (0: every check passed)."""
    started = time.perf_counter()
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / "gpu_check.json").exists():
        say(f"refusing to write into {out}: it holds files that are not an earlier gpu-check's output")
        return 2
    for stale in ("gpu_check.json", "report.md", "log.txt", "cuda_tests.xml", "notebooks.zip"):
        (out / stale).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="warpkit-gpu-check-") as work:
        run = Run(out=out, dry_run=dry_run, python=python or sys.executable, work=Path(work), say=say,
                  bundle=Path(bundle))
        stopped = ""
        try:
            step_torch(run)
            step_install(run)
            step_imports(run)
            step_cuda_tests(run)
            step_replay_benchmark(run)
            step_lessons(run, lessons)
            step_bands(run, lessons)
        except Stop as stop:
            stopped = str(stop)
            say(f"STOPPED: {stopped}")
        written = write_outputs(run, started, stopped)
    failed = [check.name for check in run.checks if not check.ok]
    say(f"{'PASSED' if not failed and not stopped else 'FAILED'}: {len(run.checks) - len(failed)}/{len(run.checks)} "
        f"checks passed in {time.perf_counter() - started:.0f} s; wrote {', '.join(p.name for p in written)} to {out}")
    for name in failed:
        say(f"  failed: {name}")
    return 0 if not failed and not stopped else 1
