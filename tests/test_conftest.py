"""The shared test machinery in conftest.py: browser strictness in CI, default timeouts, the Omniglot finder."""

from __future__ import annotations

from pathlib import Path

import pytest

import conftest

pytest_plugins = ["pytester"]

CONFTEST_SOURCE = Path(conftest.__file__).read_text(encoding="utf-8")
SKIPPING_BROWSER_TEST = """
import pytest

@pytest.mark.browser
def test_needs_chromium():
    pytest.skip("no chromium here")

def test_plain():
    pytest.skip("not a browser test")
"""


def test_skipped_browser_tests_fail_when_ci_requires_them(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST_SOURCE)
    pytester.makepyfile(SKIPPING_BROWSER_TEST)
    monkeypatch.delenv(conftest.REQUIRE_BROWSER_ENV, raising=False)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(skipped=2)
    monkeypatch.setenv(conftest.REQUIRE_BROWSER_ENV, "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*WARPKIT_REQUIRE_BROWSER=1 requires it to run*no chromium here*"])


def test_every_test_gets_a_timeout(request):
    if request.config.getoption("timeout", None) or request.config.getini("timeout"):
        pytest.skip("a timeout was configured on the command line or in the ini file")
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args[0] == conftest.DEFAULT_TIMEOUT


def test_omniglot_candidates_prefer_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(conftest.DATA_ENV, str(tmp_path))
    candidates = conftest.omniglot_candidates()
    assert candidates[0] == tmp_path / "omniglot"
    assert candidates[1] == conftest.REPO_ROOT.parent / "shared" / "data" / "omniglot"
    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "images_background_small1.zip").write_bytes(b"")
    assert conftest.find_omniglot() == tmp_path / "omniglot"
