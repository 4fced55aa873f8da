"""The ``>>>`` examples in every ``mtl_bench`` module's docstrings run and give what they show.

Modules are found by reading the source for ``>>>`` lines (nothing is imported to collect them), so a new example
is tested without touching this file; a module whose optional package is missing is skipped with that package's
name, and a module whose ``>>>`` lines doctest cannot see (outside a docstring) fails, since they would never run.
"""

from __future__ import annotations

import doctest
import importlib
import io
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtl_bench"
EXAMPLE = re.compile(r"^\s*>>> ", re.MULTILINE)


def modules_with_examples() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if EXAMPLE.search(path.read_text()):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


MODULES = modules_with_examples()


def test_some_modules_have_examples():
    assert MODULES, f"no >>> example found under {PACKAGE}"


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "mtl_bench":  # an optional dependency, not our own module
            pytest.skip(f"{name} needs {exc.name}, which is not installed")
        raise
    tests = doctest.DocTestFinder().find(module, name)
    examples = sum(len(t.examples) for t in tests)
    assert examples, f"{name} has >>> lines but no docstring example doctest can find"
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test, out=out.write)
    assert runner.failures == 0, f"{name}: {runner.failures} of {runner.tries} examples failed\n{out.getvalue()}"
