"""The GPU regression run without a GPU: reference bands, the offline bundle's resolution, and ``python3 kit.py
gpu-check`` (its dry run end to end on lesson 01, and its loud early stop when CUDA is missing)."""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from warpkit.kit import gpu

REPO_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------------------
# bands
# ----------------------------------------------------------------------------------------------------------
SYNTHETIC_BANDS = {"notebooks": {"07_synthetic": {
    "claims": [{"claim": "acc_warp_leap > acc_leap", "why": "Warp-Leap beats Leap"},
               {"claim": "loss_warp <= 0.5 * loss_sgd", "sizes": ["gpu"]}],
    "ranges": [{"record": "slope", "range": [1.8, 2.2]}, {"record": "error", "range": [None, 1e-10]}],
}}}


def synthetic_summary(**records):
    base = dict(acc_warp_leap=0.8, acc_leap=0.7, loss_warp=1.0, loss_sgd=3.0, slope=2.0, error=1e-12, device="cuda")
    return [{"notebook": "07_synthetic", "status": "ok", "seconds": 12.0, "error": "", "records": {**base, **records}}]


def failures(summary, size="gpu", device="cuda", bands=SYNTHETIC_BANDS):
    return [c.name for c in gpu.check_bands(summary, bands, size, device=device) if not c.ok]


def test_bands_pass_on_a_summary_that_meets_them():
    checks = gpu.check_bands(synthetic_summary(), SYNTHETIC_BANDS, "gpu", device="cuda")
    assert [c.ok for c in checks] == [True] * 6, checks  # ran, device, 2 claims, 2 ranges


@pytest.mark.parametrize("change, failing", [
    (dict(acc_warp_leap=0.6), "07_synthetic: acc_warp_leap > acc_leap"),
    (dict(acc_warp_leap=0.7), "07_synthetic: acc_warp_leap > acc_leap"),  # strict
    (dict(loss_warp=1.6), "07_synthetic: loss_warp <= 0.5 * loss_sgd"),
    (dict(slope=2.3), "07_synthetic: slope in [1.8, 2.2]"),
    (dict(error=2e-10), "07_synthetic: error in [-inf, 1e-10]"),
    (dict(slope="2.0"), "07_synthetic: slope in [1.8, 2.2]"),  # not a number
    (dict(device="cpu"), "07_synthetic: device"),
])
def test_each_kind_of_band_fails_when_violated(change, failing):
    assert failures(synthetic_summary(**change)) == [failing]


def test_missing_records_failed_lessons_and_missing_lessons_fail():
    summary = synthetic_summary()
    del summary[0]["records"]["acc_leap"]
    assert failures(summary) == ["07_synthetic: acc_warp_leap > acc_leap"]
    summary = synthetic_summary()
    summary[0].update(status="failed", error="ValueError: boom")
    assert failures(summary) == ["07_synthetic: ran"]
    assert failures([]) == ["07_synthetic: ran"]


def test_bands_apply_only_to_their_sizes():
    assert failures(synthetic_summary(loss_warp=2.0), size="fast", device=None) == []
    assert failures(synthetic_summary(loss_warp=2.0), size="gpu", device=None) == ["07_synthetic: loss_warp <= 0.5 * loss_sgd"]
    assert failures(synthetic_summary(size="fast"), size="gpu", device=None) == ["07_synthetic: size"]


@pytest.mark.parametrize("claim", ["__import__('os').system('true') > 0", "acc_leap", "acc_leap == 1",
                                   "abs(acc_leap) > 0", "acc_leap.real > 0", "acc_leap >"])
def test_claims_are_comparisons_of_arithmetic_only(claim):
    with pytest.raises(gpu.BandError):
        gpu.evaluate_claim(claim, {"acc_leap": 0.5})


def test_claims_chain_and_compute():
    assert gpu.evaluate_claim("0 < a < 2 * b - 1", {"a": 1, "b": 1.5})[0]
    assert not gpu.evaluate_claim("0 < a < 2 * b - 1", {"a": 2.5, "b": 1.5})[0]
    assert gpu.evaluate_claim("-a >= -(b + 1) / 2", {"a": 1, "b": 1})[0]


def test_the_committed_bands_pass_their_reference_records_and_catch_a_reversed_claim():
    bands = gpu.load_bands()
    assert {name[:2] for name in bands["notebooks"]} == set(gpu.LESSONS), "every lesson has bands"
    reference = bands["reference"]
    for name, spec in bands["notebooks"].items():
        gpu_only = [b for b in spec["claims"] + spec["ranges"] if b.get("sizes") == ["gpu"]]
        assert not gpu_only or name in reference["records"], f"{name}: gpu-size bands without a measured reference"
    summary = [{"notebook": name, "status": "ok", "seconds": 1.0, "records": records}
               for name, records in reference["records"].items()]
    measured = {**bands, "notebooks": {k: v for k, v in bands["notebooks"].items() if k in reference["records"]}}
    checks = gpu.check_bands(summary, measured, "gpu", device="cpu")  # the reference ran on the CPU
    assert [c.name for c in checks if not c.ok] == []
    claims = [c for c in checks if " in [" not in c.name and ("<" in c.name or ">" in c.name)]
    assert len(claims) >= 10, "the bands state the science as claims"
    for name, spec in measured["notebooks"].items():  # every claim can fail: swap the two sides' records
        for band in spec["claims"]:
            tree = ast.parse(band["claim"], mode="eval").body
            names = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})
            if len(names) < 2 or not gpu._applies(band, "gpu"):
                continue
            broken = copy.deepcopy(summary)
            records = next(e["records"] for e in broken if e["notebook"] == name)
            records[names[0]], records[names[1]] = records[names[1]], records[names[0]]
            holds, _ = gpu.evaluate_claim(band["claim"], records)
            assert not holds or records[names[0]] == records[names[1]], (name, band["claim"], "cannot fail")


# ----------------------------------------------------------------------------------------------------------
# the bundle
# ----------------------------------------------------------------------------------------------------------
def third_party_imports(paths):
    """Top-level names imported anywhere in ``paths`` (module and function level), minus the standard library
    and warpkit itself."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("warpkit", "__future__")}


def machine_closure():
    """:data:`gpu.MACHINE_HAS` and what they require (read from this environment's metadata): a machine with
    matplotlib has fontTools, whatever its version."""
    from packaging.requirements import Requirement

    seen, todo = set(), list(gpu.MACHINE_HAS)
    while todo:
        name = gpu.normalise(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def test_the_bundle_resolves_for_the_gpu_machine_and_covers_every_import_of_the_lessons():
    if not gpu.registry_reachable():
        pytest.skip("the package registry (PyPI) is unreachable: cannot resolve the bundle here (CI can)")
    manifest = gpu.resolve_bundle(sys.executable)
    bundled = {p["name"] for p in manifest["packages"]}
    assert "torch" not in bundled and not bundled & set(gpu.MACHINE_HAS)
    assert {"papermill", "nbformat", "nbclient", "ipykernel", "jupytext", "ipywidgets", "gymnasium"} <= bundled
    assert all(p["version"] and p["url"].endswith(".whl") for p in manifest["packages"]), "wheels only"
    # the static site (warpkit/kit/site.py: Sphinx, myst-nb) is built where the lessons are read, not on the GPU
    sources = [*(p for p in REPO_ROOT.joinpath("warpkit").rglob("*.py") if p.name != "site.py"),
               *REPO_ROOT.joinpath("notebooks").glob("0*.py"),
               REPO_ROOT / "tests" / "test_cuda.py", REPO_ROOT / "tests" / "conftest.py"]
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(third_party_imports(sources)):
        provided_by = {gpu.normalise(d) for d in distributions.get(module, [])}
        assert provided_by, f"{module} is imported but no installed distribution provides it"
        if not provided_by & (bundled | machine_closure()):
            missing[module] = sorted(provided_by)
    assert not missing, f"imported by the lessons but neither bundled nor on the GPU machine: {missing}"


def test_wheels_unpack_into_a_folder_without_pip(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/__init__.py", "VALUE = 1\n")
        archive.writestr("demo-1.0.dist-info/METADATA", "Name: demo\nVersion: 1.0\n")
        archive.writestr("demo-1.0.data/purelib/demo_extra.py", "EXTRA = 2\n")
    target = tmp_path / "env"
    gpu.extract_wheels([wheel], target)
    assert (target / "demo" / "__init__.py").exists() and (target / "demo_extra.py").exists()
    assert not list(target.glob("*.data"))


# ----------------------------------------------------------------------------------------------------------
# kit.py gpu-check
# ----------------------------------------------------------------------------------------------------------
def kit(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, str(REPO_ROOT / "kit.py"), *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_gpu_check_needs_an_output_folder_and_stops_early_and_loudly_without_cuda(tmp_path):
    done = kit("gpu-check", env={gpu.OUT_ENV: ""})
    assert done.returncode == 2 and "--out" in done.stderr
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the early stop cannot be shown here")
    done = kit("gpu-check", env={gpu.OUT_ENV: str(tmp_path / "out")})
    assert done.returncode == 1
    assert "CUDA is not available" in done.stdout and "FAIL  CUDA is visible to torch" in done.stdout
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert not result["passed"] and "CUDA" in result["stopped"]
    assert [c["name"] for c in result["checks"]] == ["torch imports", "CUDA is visible to torch"], "stops first"
    assert "install" not in result["timings"], "nothing is installed before CUDA is found"


@pytest.mark.notebook
def test_gpu_check_dry_run_runs_every_step_on_the_cpu(tmp_path):
    if not (gpu.BUNDLE_DIR / gpu.MANIFEST_NAME).exists() and not gpu.registry_reachable():
        pytest.skip("no .gpu-bundle/ here and the registry is unreachable: the install step has nothing to check")
    out = tmp_path / "out"
    done = kit("gpu-check", "--dry-run", "--out", str(out), "01")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= gpu.MAX_OUTPUT_FILES
    assert {"gpu_check.json", "report.md", "log.txt", "notebooks.zip", "cuda_tests.xml"} <= set(files)
    result = json.loads((out / "gpu_check.json").read_text())
    names = [c["name"] for c in result["checks"]]
    assert result["passed"] and result["size"] == "fast" and result["device"] == "cpu"
    assert any("bundle" in n for n in names) and f"{len(gpu.REQUIRED_IMPORTS)} modules import" in names
    assert "CUDA tests collected (skipped on the CPU)" in names
    assert "01_preconditioning: steps_preconditioned < steps_gd" in names
    assert result["lessons"][0]["records"]["device"] == "cpu"
    with zipfile.ZipFile(out / "notebooks.zip") as archive:
        assert "01/01_preconditioning.ipynb" in archive.namelist()
    # a second run replaces its own output; a folder holding other files is refused
    (out / "notebooks.zip").unlink()
    (out / "mine.txt").write_text("not gpu-check's")
    (out / "gpu_check.json").unlink()
    refused = kit("gpu-check", "--dry-run", "--out", str(out), "01")
    assert refused.returncode == 2 and "refusing" in refused.stdout


# ----------------------------------------------------------------------------------------------------------
# the gpu size
# ----------------------------------------------------------------------------------------------------------
def test_every_lesson_offers_the_gpu_size_and_it_is_larger_than_fast():
    from warpkit.experiments import continual, omniglot
    from warpkit.kit.runner import allowed_sizes, lesson_notebooks, notebook_parameters

    lessons = lesson_notebooks()
    assert [p.name[:2] for p in lessons] == list(gpu.LESSONS)
    for path in lessons:
        assert "gpu" in allowed_sizes(notebook_parameters(path)), path.name
        check = next(line for line in path.with_suffix(".py").read_text(encoding="utf-8").splitlines()
                     if "check_size(SIZE" in line)
        assert '"gpu"' in check or "SIZES)" in check, f"{path.name} must accept SIZE='gpu': {check}"
    work = lambda c: c.meta_iterations * c.meta_batch_size * c.inner_steps  # noqa: E731
    assert work(omniglot.SIZES["gpu"]) > work(omniglot.SIZES["fast"])
    assert omniglot.SIZES["gpu"].largest_n > omniglot.SIZES["fast"].largest_n
    assert work(continual.SIZES["gpu"]) > work(continual.SIZES["fast"])
    assert continual.SIZES["gpu"].num_held_out > continual.SIZES["fast"].num_held_out


def test_pick_device_records_where_a_notebook_runs():
    import torch

    import warpkit
    from warpkit.kit import notebook

    warpkit.pick_device("cpu")
    assert notebook.RECORDS["device"] == "cpu"
    if torch.cuda.is_available():
        warpkit.pick_device("cuda")
        assert notebook.RECORDS["device"] == "cuda" and notebook.RECORDS["device_name"]


def test_gpu_module_needs_only_the_standard_library_and_the_bundle_stays_out_of_git():
    """kit.py loads warpkit/kit/gpu.py by path on a machine where nothing but torch may be installed."""
    tree = ast.parse((REPO_ROOT / "warpkit" / "kit" / "gpu.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)
    ignored = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert {".gpu-bundle/", ".gpu-env/"} <= set(ignored)
    done = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, '.'); import kit; "
                           "gpu = kit.load_gpu_module(); print(gpu.LESSONS)"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "01" in done.stdout, done.stderr  # -S: no site-packages at all
