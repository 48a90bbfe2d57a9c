"""``python -m warpkit site``: a static website of the executed lessons, built with Sphinx and myst-nb, offline.

The pages come from the executed copies that ``python -m warpkit run`` writes (``_build/notebooks/`` by default,
as ``python3 kit.py notebooks`` does); nothing is executed again. One page per lesson, in lesson order in the
navigation, with the lesson's maths, its figures and the static pictures its widget explorers draw when executed
headlessly (an index note says how to run them live).

Nothing is fetched at build time or when a page is opened: Sphinx's default theme (alabaster) ships its own
assets and uses the system's fonts, and the maths is rendered by the copy of MathJax 2.7 that the
``jupyter-server-mathjax`` package ships (with its STIX-Web fonts), copied into the site. :func:`external_references` lists any
``http(s)://`` script, stylesheet or image a built page would load, so a test can prove there are none.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from warpkit.kit.notebook import REPO_ROOT

DEFAULT_SOURCE = REPO_ROOT / "_build" / "notebooks"
DEFAULT_OUT = REPO_ROOT / "_build" / "site"
LESSON_PATTERN = "[0-9][0-9]_*.ipynb"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full"

CONF = '''\
project = "warpkit: WarpGrad, lesson by lesson"
author = "warpkit"
extensions = ["myst_nb", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "amsmath"]
nb_execution_mode = "off"  # the pages are the executed copies; nothing runs again
nb_output_stderr = "remove"  # progress bars and warnings are not part of a lesson
nb_mime_priority_overrides = [("html", "application/vnd.warpkit.records+json", None),
                              ("html", "application/vnd.warpkit.record+json", None)]
mathjax_path = "mathjax/MathJax.js?config={config}"  # the local copy in _static: no network
# the package ships MathJax's STIX-Web fonts only (not the TeX fonts MathJax asks for first); myst-nb marks the
# notebook text "tex2jax_ignore" and the maths "math" (MathJax 3's convention), which MathJax 2 is told here
mathjax2_config = {{"HTML-CSS": {{"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web",
                                 "imageFont": None}},
                   "tex2jax": {{"processClass": "math|tex2jax_process|mathjax_process|output_area"}}}}
html_static_path = ["_static"]
html_theme = "alabaster"
html_theme_options = {{"font_family": "system-ui, sans-serif", "head_font_family": "system-ui, sans-serif",
                      "code_font_family": "monospace", "show_powered_by": False}}
html_sidebars = {{"**": ["about.html", "navigation.html", "searchbox.html"]}}
html_title = project
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure"]
'''

INDEX = '''\
# warpkit: WarpGrad, lesson by lesson

The executed lessons of warpkit, a notebook-first teaching kit for WarpGrad (Flennerhag et al., "Meta-Learning with
Warped Gradient Descent", ICLR 2020, arXiv 1909.00025). Each page is one lesson as it ran at the size named in its
parameters cell, with its figures and the values it recorded (the table at its end).

**Running the widget explorers live.** Executed headlessly, a lesson draws its explorers as small multiples: the
static pictures on these pages. To move their sliders, open the lesson in JupyterLab (`python3 kit.py lab`), set
`INTERACTIVE = True` in its parameters cell, and run all cells.

```{{toctree}}
:maxdepth: 1
:caption: Lessons

{entries}
```
'''


def lessons(source: Path) -> list[Path]:
    """The executed lessons in ``source``, in lesson order."""
    return sorted(source.glob(LESSON_PATTERN))


def mathjax_folder() -> Path:
    """MathJax 2.7 as shipped by the ``jupyter-server-mathjax`` package."""
    try:
        import jupyter_server_mathjax
    except ImportError as error:  # pragma: no cover - the test extras install it
        raise SystemExit("python -m warpkit site: MathJax comes from the jupyter-server-mathjax package; "
                         "install warpkit's test extras (pip install -e .[test])") from error
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def prepare_sources(notebooks: Sequence[Path], folder: Path) -> None:
    """Write the Sphinx project: conf.py, index.md (the navigation, in lesson order), the notebooks, MathJax."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conf.py").write_text(CONF.format(config=MATHJAX_CONFIG), encoding="utf-8")
    for notebook in notebooks:
        shutil.copy2(notebook, folder / notebook.name)
    entries = "\n".join(notebook.stem for notebook in notebooks)
    (folder / "index.md").write_text(INDEX.format(entries=entries), encoding="utf-8")
    shutil.copytree(mathjax_folder(), folder / "_static" / "mathjax", dirs_exist_ok=True)


def build(source: Path = DEFAULT_SOURCE, out: Path = DEFAULT_OUT, quiet: bool = True) -> Path:
    """Build the site from the executed lessons in ``source`` into ``out``; returns ``out / "index.html"``."""
    notebooks = lessons(source)
    if not notebooks:
        raise SystemExit(f"python -m warpkit site: no executed lessons in {source}; run `python3 kit.py notebooks` "
                         "first (or pass --source with a folder of executed copies)")
    with tempfile.TemporaryDirectory(prefix="warpkit-site-") as work:
        sources = Path(work) / "src"
        prepare_sources(notebooks, sources)
        if out.exists():
            shutil.rmtree(out)
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", str(sources), str(out),
                   "-d", str(Path(work) / "doctrees")]
        completed = subprocess.run(command, capture_output=quiet, text=True)
        if completed.returncode != 0:
            raise SystemExit(f"python -m warpkit site: sphinx-build failed (exit {completed.returncode})\n"
                             f"{completed.stdout or ''}{completed.stderr or ''}")
    return out / "index.html"


_REFERENCE = re.compile(r"""<(?:script|img|link|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["'](https?:)?//[^"']*["']""",
                        re.IGNORECASE)


def external_references(site: Path) -> list[str]:
    """``file: tag`` for every script, stylesheet, image or frame in a built page that would be loaded from
    another host (an empty list means the site works offline)."""
    found = []
    for page in sorted(site.rglob("*.html")):
        for match in _REFERENCE.finditer(page.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{page.relative_to(site)}: {match.group(0)[:120]}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warpkit site",
                                     description="Build a static website of the executed lessons (offline).")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="folder of executed lessons (default: _build/notebooks, what `kit.py notebooks` writes)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the site goes (default: _build/site)")
    args = parser.parse_args(argv)
    index = build(args.source, args.out)
    pages = len(lessons(args.source))
    print(f"site: {index} ({pages} lesson pages); open it in a browser, no server needed")
    outside = external_references(args.out)
    if outside:
        print("warning: these pages load files from other hosts:\n  " + "\n  ".join(outside), file=sys.stderr)
    return 0


__all__ = ["build", "external_references", "lessons", "main", "mathjax_folder", "prepare_sources"]
