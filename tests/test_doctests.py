"""Every doctest in `flows/` runs in the suite: one test per module, named after it.

A docstring example is documentation a reader trusts; running it keeps it true. Modules are
found by walking the package, so a new module's doctests run without touching this file.
`__main__` modules are left out: importing one runs the command line.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import flows


def modules() -> list[str]:
    walk = pkgutil.walk_packages(flows.__path__, prefix=f"{flows.__name__}.")
    return sorted(info.name for info in walk if not info.name.endswith(".__main__"))


def test_the_walk_finds_the_modules_with_doctests():
    found = set(modules())
    for name in ("flows.core.text", "flows.podcast.feed", "flows.newsletter.render"):
        assert name in found, f"pkgutil.walk_packages over flows/ did not find {name}"


@pytest.mark.parametrize("name", modules())
def test_doctests_pass(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failures = []
    for test in finder.find(module):
        out: list[str] = []
        result = runner.run(test, out=out.append, clear_globs=True)
        if result.failed:
            failures.append("".join(out))
    assert not failures, f"doctests in {name} fail:\n" + "\n".join(failures)
