"""``python -m warpkit site``: a static website of the executed lessons, built offline.

* a quick build from two small hand-made "executed" notebooks: index, one page per lesson in lesson order,
  MathJax copied into the site, nothing loaded from another host;
* the site of the real executed lessons (the executions the lessons' own tests make);
* in headless Chromium: the index and one lesson page, maths rendered by the local MathJax, every image loaded.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import lesson_test_parameters
from warpkit.kit import site

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = os.environ.get("WARPKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# a 2×2 PNG, so that a hand-made executed notebook holds a figure
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")


def fake_executed_lesson(path: Path, title: str) -> Path:
    """A small notebook as the runner leaves it: maths in markdown, a figure and a records table as outputs."""
    notebook = nbformat.v4.new_notebook()
    figure = nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})
    records = nbformat.v4.new_output("display_data", data={
        "application/vnd.warpkit.records+json": [{"name": "steps", "value": 3}],
        "text/html": "<table><tr><td>steps</td><td>3</td></tr></table>", "text/plain": "steps  3"})
    notebook.cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\nInline $x^2$ and a display:\n\n$$\\nabla L(\\theta) = 0$$"),
        nbformat.v4.new_code_cell("show()", outputs=[figure], execution_count=1),
        nbformat.v4.new_code_cell("warpkit.show_records()", outputs=[records], execution_count=2),
    ]
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def small_site(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("executed")
    fake_executed_lesson(source / "02_second.ipynb", "02 · Second lesson")
    fake_executed_lesson(source / "01_first.ipynb", "01 · First lesson")
    (source / "summary.json").write_text("[]")  # what else the runner writes there is ignored
    out = tmp_path_factory.mktemp("site") / "site"
    site.build(source, out)
    return out


def test_the_site_has_an_index_and_one_page_per_lesson_in_lesson_order(small_site):
    assert (small_site / "index.html").is_file()
    assert (small_site / "01_first.html").is_file() and (small_site / "02_second.html").is_file()
    index = (small_site / "index.html").read_text(encoding="utf-8")
    assert index.index("01 · First lesson") < index.index("02 · Second lesson")
    assert "INTERACTIVE = True" in re.sub(r"<[^>]+>", "", index)  # how to run the explorers live


def test_the_site_loads_nothing_from_other_hosts(small_site):
    assert site.external_references(small_site) == []
    page = (small_site / "01_first.html").read_text(encoding="utf-8")
    assert '_static/mathjax/MathJax.js' in page and (small_site / "_static" / "mathjax" / "MathJax.js").is_file()
    assert re.search(r'<img [^>]*src="_images/[^"]+\.png"', page)


def test_external_references_finds_a_script_from_another_host(tmp_path):
    (tmp_path / "page.html").write_text('<script src="https://cdn.example.org/x.js"></script><img src="a.png">')
    assert len(site.external_references(tmp_path)) == 1


def test_the_builder_says_what_to_run_when_there_are_no_executed_lessons(tmp_path):
    with pytest.raises(SystemExit, match="kit.py notebooks"):
        site.build(tmp_path / "nothing-here", tmp_path / "site")


@pytest.fixture(scope="module")
def lessons_site(execute_notebook, request, tmp_path_factory) -> Path:
    """The site of every lesson, from the executions the lessons' own tests make (cached per session)."""
    source = tmp_path_factory.mktemp("executed-lessons")
    for name in LESSONS:
        shutil.copy2(execute_notebook(name, **lesson_test_parameters(name, request)).path, source / f"{name}.ipynb")
    out = tmp_path_factory.mktemp("lessons-site") / "site"
    site.build(source, out)
    return out


@pytest.mark.notebook
def test_the_site_of_the_executed_lessons(lessons_site):
    assert sorted(p.stem for p in lessons_site.glob("[0-9][0-9]_*.html")) == LESSONS
    index = (lessons_site / "index.html").read_text(encoding="utf-8")
    positions = [index.index(f'href="{name}.html"') for name in LESSONS]
    assert positions == sorted(positions), "the navigation lists the lessons in lesson order"
    assert site.external_references(lessons_site) == []


def _chromium_or_skip() -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set WARPKIT_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")


# MathJax 2 turns every formula into a <script type="math/tex"> and renders each as one span.MathJax
_RENDERED = """() => {
    const idle = window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0
                 && MathJax.Hub.queue.running === 0;
    const formulas = document.querySelectorAll('script[type^="math/tex"]').length;
    return Boolean(idle) && formulas > 0 && document.querySelectorAll('span.MathJax').length >= formulas;
}"""
_PAGE_STATE = """() => ({
    maths: document.querySelectorAll('span.math, div.math').length,
    formulas: document.querySelectorAll('script[type^="math/tex"]').length,
    rendered: document.querySelectorAll('span.MathJax').length,
    errors: document.querySelectorAll('.MathJax_Error, merror').length,
    images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
})"""


def _open(page, path: Path, needs_maths: bool) -> dict:
    page.goto(path.as_uri())
    if needs_maths:
        page.wait_for_function(_RENDERED, timeout=60_000)
    page.wait_for_load_state("load")
    return page.evaluate(_PAGE_STATE)


@pytest.mark.browser
@pytest.mark.notebook
@pytest.mark.timeout(600)
def test_the_site_renders_maths_and_images_in_chromium(lessons_site, tmp_path):
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    requests_elsewhere = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests_elsewhere.append(r.url) if not r.url.startswith(("file:", "data:", "about:"))
                    else None)
            index = _open(page, lessons_site / "index.html", needs_maths=False)
            assert all(loaded for _, loaded in index["images"]), index["images"]
            lesson = _open(page, lessons_site / f"{LESSONS[1]}.html", needs_maths=True)
        finally:
            browser.close()
    assert lesson["maths"] > 0 and lesson["formulas"] > 0 and lesson["rendered"] >= lesson["formulas"], lesson
    assert lesson["errors"] == 0, lesson
    assert lesson["images"] and all(loaded for _, loaded in lesson["images"]), lesson["images"]
    assert requests_elsewhere == [], requests_elsewhere
