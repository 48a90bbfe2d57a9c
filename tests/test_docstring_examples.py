"""Every public class and function of the engine carries a short runnable example in its docstring, and the examples
are right: doctest runs them module by module (and those of the kit's resumable-run helper, the sine family and the
network's CPU layers)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import types

import pytest

ENGINE_MODULES = ["warpkit.engine." + name for name in
                  ("warp", "tasks", "adapt", "batchnorm", "buffer", "objectives", "options", "init_learners", "meta",
                   "multi_head", "baselines", "geometry", "guard", "persist", "predict", "distributed", "kfac")]
OTHER_MODULES = ["warpkit.kit.sweep", "warpkit.data.sine", "warpkit.models.cpu_layers"]
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def run_examples(module: types.ModuleType) -> tuple[doctest.TestResults, str]:
    """Run every docstring example of ``module``; ``(results, report of the failures)``."""
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, module.__name__):
        runner.run(test, out=report.append)
    return runner.summarize(verbose=False), "".join(report)


@pytest.mark.parametrize("name", ENGINE_MODULES + OTHER_MODULES)
def test_docstring_examples_run_and_are_right(name):
    results, report = run_examples(importlib.import_module(name))
    assert results.attempted > 0, f"{name} has no docstring examples"
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples of {name} failed:\n{report}"


@pytest.mark.parametrize("name", ENGINE_MODULES)
def test_every_public_class_and_function_of_the_engine_has_an_example(name):
    module = importlib.import_module(name)
    public = [obj for attribute, obj in vars(module).items()
              if not attribute.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
              and obj.__module__ == name]
    missing = [obj.__name__ for obj in public if ">>>" not in (obj.__doc__ or "")]
    assert public and not missing, f"{name}: no runnable example in the docstring of {missing}"


def test_a_wrong_example_is_reported():
    """The runner above must fail on an example whose printed value is wrong (a planted module)."""
    planted = types.ModuleType("planted")
    exec('def double(x):\n    """\n    >>> double(2)\n    5\n    """\n    return 2 * x\n', planted.__dict__)
    results, report = run_examples(planted)
    assert (results.attempted, results.failed) == (1, 1) and "Expected:\n    5\nGot:\n    4" in report
