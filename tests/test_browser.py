"""Notebook 03's explorers in a real browser: JupyterLab on 127.0.0.1 driven by headless Debian Chromium
through Playwright. Run all cells, move a slider with the keyboard, and check that the rendered figure changed.

Screenshots go to ``test-artifacts/browser/`` (gitignored). Every process started here (the Jupyter server, its
kernels, Chromium) is stopped in ``finally`` blocks, also when the test fails. The test skips with the reason
when Chromium, JupyterLab or Playwright is missing; ``WARPKIT_REQUIRE_BROWSER=1`` (CI) turns that skip into a
failure (tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO_ROOT / "notebooks" / "03_riemannian_geometry.ipynb"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("WARPKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
# run fast and interactive: two meta-iterations are enough to have snapshots to slide over
BROWSER_PARAMETERS = {"SEED": 0, "DEVICE": "cpu", "SIZE": "fast", "INTERACTIVE": True, "SHOW_PROGRESS": False,
                      "SAVE_FIGS": False, "META_ITERATIONS": 2}

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _requirements() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set WARPKIT_CHROMIUM)")
    for module, hint in (("jupyterlab", "pip install jupyterlab"), ("playwright.sync_api", "pip install playwright"),
                         ("ipywidgets", "pip install ipywidgets")):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"{module} is not installed ({hint})")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notebook_copy(folder: Path) -> Path:
    """Notebook 03 with its parameters cell replaced by :data:`BROWSER_PARAMETERS` (same cell, literals)."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    cells = [c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "notebook 03 must have exactly one cell tagged 'parameters'"
    declared = {line.split("=")[0].strip() for line in "".join(cells[0]["source"]).splitlines() if "=" in line}
    assert set(BROWSER_PARAMETERS) <= declared, f"unknown parameters {set(BROWSER_PARAMETERS) - declared}"
    cells[0]["source"] = "\n".join(f"{k} = {v!r}" for k, v in BROWSER_PARAMETERS.items())
    path = folder / NOTEBOOK.name
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _request(url: str, method: str) -> None:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method=method, data=b""), timeout=5).read()
    except (urllib.error.URLError, OSError):
        pass


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with its own token, root folder and config/data/runtime folders."""

    def __init__(self, root: Path, home: Path):
        self.root, self.port, self.token = root, _free_port(), secrets.token_hex(16)
        env = dict(os.environ)
        for variable, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                              ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                              ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
            (home / sub).mkdir(parents=True, exist_ok=True)
            env[variable] = str(home / sub)
        # lab settings: start the notebook's kernel without asking, fetch no news, check for no updates
        for plugin, settings in (("notebook-extension/tracker", {"autoStartDefaultKernel": True}),
                                 ("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False})):
            path = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings), encoding="utf-8")
        env["WARPKIT_FIGURES_DIR"] = str(home / "figures")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                   "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
                   "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        self.log = open(home / "jupyter.log", "wb")
        # own process group, so the server and any kernel it starts can be stopped together
        self.process = subprocess.Popen(command, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}; see {self.log.name}")
            try:
                _get(f"{self.url}/api/status?token={self.token}")
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        """Shut every kernel down through the API, then stop the server's process group (TERM, then KILL)."""
        try:
            kernels = json.loads(_get(f"{self.url}/api/kernels?token={self.token}"))
            for kernel in kernels:
                _request(f"{self.url}/api/kernels/{kernel['id']}?token={self.token}", "DELETE")
        except (urllib.error.URLError, OSError, ValueError):
            pass
        _request(f"{self.url}/api/shutdown?token={self.token}", "POST")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


def _changed_fraction(png_a: bytes, png_b: bytes) -> float:
    """Fraction of pixels that differ between two screenshots (different sizes count as all changed)."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png_a)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(png_b)).convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        return 1.0
    return float((np.abs(a - b).sum(axis=-1) > 30).mean())


def _accept_kernel_dialog(page, wait_ms: int = 3000) -> None:
    """If JupyterLab asks which kernel to start, accept its proposal (the notebook's own python3 kernel)."""
    try:
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=wait_ms)
    except Exception:  # no dialog: the kernel started by itself
        return
    page.click(".jp-Dialog .jp-mod-accept")


_KERNEL_READY = """() => {
    const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = widget && widget.sessionContext && widget.sessionContext.session
        && widget.sessionContext.session.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
_RUN_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"

_CELL_STATE = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
    const failed = [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText)
        .filter(t => t.includes('Traceback'));
    return {prompts, failed};
}"""


def _wait_for_all_cells(page, timeout: float) -> None:
    """Until every code cell shows an execution count ([n]:, never [*]:); fail at once on a traceback."""
    start = time.monotonic()
    deadline, retried = start + timeout, False
    while True:
        state = page.evaluate(_CELL_STATE)
        if not retried and time.monotonic() - start > 20 and all(p.strip() in ("[ ]:", "") for p in state["prompts"]):
            page.evaluate(_RUN_ALL)  # the first request reached a kernel that was not listening yet
            retried = True
        if state["failed"]:
            pytest.fail(f"a cell failed in JupyterLab:\n{state['failed'][0][:3000]}")
        done = [bool(re.search(r"\[\d+\]", p)) for p in state["prompts"]]
        if done and all(done):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"cells still not executed after {timeout:.0f} s: prompts {state['prompts']}")
        time.sleep(1.0)


def test_notebook_03_sliders_redraw_in_jupyterlab(tmp_path):
    _requirements()
    from playwright.sync_api import sync_playwright

    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    _notebook_copy(root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()

    server = JupyterLab(root, home)
    try:
        server.wait_ready()
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 1000})
            try:
                page = context.new_page()
                page.set_default_timeout(60_000)
                page.goto(f"{server.url}/lab/tree/{NOTEBOOK.name}?token={server.token}")
                page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=90_000)
                _accept_kernel_dialog(page)
                page.wait_for_function(_KERNEL_READY, timeout=90_000)
                # start "Run All Cells" (the promise is not awaited: the loop below watches the prompts)
                page.evaluate(_RUN_ALL)
                try:
                    _wait_for_all_cells(page, timeout=200.0)
                finally:
                    page.screenshot(path=str(ARTIFACTS / "00_notebook_after_run_all.png"))

                explorers = page.locator(".warpkit-explorer")
                assert explorers.count() == 3, f"expected 3 explorers on the page, found {explorers.count()}"
                for index, name in enumerate(["warp", "descent", "mountain"]):
                    explorer = explorers.nth(index)
                    explorer.scroll_into_view_if_needed()
                    image = explorer.locator("img").first
                    image.wait_for(state="visible")
                    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
                    before_src = image.get_attribute("src")
                    before = image.screenshot(path=str(ARTIFACTS / f"{index + 1}_{name}_before.png"))
                    handle = explorer.locator(".noUi-handle").first  # the first slider of the explorer
                    handle.focus()
                    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
                    for _ in range(3):  # towards the free end of the slider
                        page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
                    page.wait_for_function("([img, src]) => img.getAttribute('src') !== src",
                                           arg=[image.element_handle(), before_src], timeout=60_000)
                    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
                    after = image.screenshot(path=str(ARTIFACTS / f"{index + 1}_{name}_after.png"))
                    changed = _changed_fraction(before, after)
                    assert changed > 0.005, f"{name} explorer: the figure hardly changed ({changed:.2%} of pixels)"
                page.screenshot(path=str(ARTIFACTS / "04_notebook_after_slider_moves.png"), full_page=True)
            finally:
                context.close()
    finally:
        server.stop()
    assert server.process.poll() is not None, "the Jupyter server is still running"
