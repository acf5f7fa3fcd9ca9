"""The examples in the package's docstrings run, and say what they print."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import vmactors

MODULES = sorted(m.name for m in pkgutil.walk_packages(vmactors.__path__, "vmactors.")
                 if not m.name.startswith("vmactors.__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_the_examples_are_found() -> None:
    """A mistake in the walk would pass every test above."""
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for n in ("vmactors.explore.por", "vmactors.system.machine",
                                              "vmactors.explore.parallel")
                   for t in finder.find(importlib.import_module(n)))
    assert "vmactors.explore.por" in MODULES and examples >= 10
