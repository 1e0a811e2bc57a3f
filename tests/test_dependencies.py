"""Every third-party module that flows/ imports at run time is a runtime dependency.

`pip install .` (no extras) must give a working program: a module that flows/ imports, even
lazily inside a function, has to come from a distribution declared in pyproject.toml's
[project.dependencies], not from the test extra and not by luck through another package.

The walk is static (ast): top-level imports and imports inside functions count; imports under
`if TYPE_CHECKING:` do not (they never run). Relative imports and `flows` itself are the
project; modules in `sys.stdlib_module_names` are Python's. Not seen: names built at run time
(`importlib.import_module(name)`); flows/ uses that only for its own modules (serve.py).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

from conftest import REPO_ROOT

PACKAGE = "flows"
PACKAGE_DIR = REPO_ROOT / PACKAGE
PYPROJECT = REPO_ROOT / "pyproject.toml"

# Modules flows/ may import although their distribution is only a transitive dependency.
# Each entry says why it is not declared directly. Prefer declaring: keep this tiny.
# (test_transitive_allow_list_is_current checks that every entry is still imported, still not
# declared, and really reaches the install through a declared dependency.)
TRANSITIVE_OK: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # top-level module name, e.g. "podcastparser" for `import podcastparser.x`
    where: str  # "flows/podcast/feed.py:632"
    statement: str  # "import podcastparser"


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. become one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """'moto[server]>=5.0.12 ; python_version<"3.13"' -> 'moto'."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot read a distribution name from {requirement!r}"
    return normalise(match.group(1))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)


def collect_imports(source: str, filename: str) -> list[Import]:
    """Absolute imports in `source`, at any depth, except the body of `if TYPE_CHECKING:`."""
    found: list[Import] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: Iterable[ast.AST] = node.orelse  # the `else:` branch does run
        else:
            children = ast.iter_child_nodes(node)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        for name in names:
            found.append(Import(name.split(".")[0], f"{filename}:{node.lineno}", ast.unparse(node)))
        for child in children:
            if isinstance(child, _BLOCKS):  # imports are statements: skip expressions
                visit(child)

    visit(ast.parse(source, filename=filename))
    return found


def third_party(imports: Iterable[Import]) -> list[Import]:
    return [
        imp
        for imp in imports
        if imp.module not in sys.stdlib_module_names and imp.module != PACKAGE
    ]


def problems(
    imports: Iterable[Import],
    declared: Iterable[str],
    distributions: Mapping[str, Sequence[str]],
    allowed: Mapping[str, str],
    extras: Mapping[str, Iterable[str]] | None = None,
    brought_by: Mapping[str, str] | None = None,
) -> list[str]:
    """One message per third-party module whose distribution is not a runtime dependency."""
    declared = {normalise(name) for name in declared}
    by_module: dict[str, list[Import]] = {}
    for imp in third_party(imports):
        by_module.setdefault(imp.module, []).append(imp)
    messages = []
    for module, uses in sorted(by_module.items()):
        dists = sorted({normalise(d) for d in distributions.get(module, ())})
        if declared.intersection(dists) or module in allowed:
            continue
        places = ", ".join(f"{u.where} (`{u.statement}`)" for u in uses[:3])
        if len(uses) > 3:
            places += f" and {len(uses) - 3} more"
        if not dists:
            messages.append(
                f"`{module}` is imported at {places} but no installed distribution provides it: "
                f"install it, then add its distribution to [project.dependencies]"
            )
            continue
        dist = dists[0]
        in_extras = sorted(e for e, names in (extras or {}).items() if dist in names)
        why = f" (only in the optional {', '.join(in_extras)} extra)" if in_extras else ""
        parent = (brought_by or {}).get(dist)
        or_else = ""
        if parent:
            why += f" (installed only because {parent} requires it)"
            or_else = (
                f" (or, if relying on {parent} for it is deliberate, add {module!r} to "
                f"TRANSITIVE_OK in tests/test_dependencies.py with the reason)"
            )
        messages.append(
            f"`{module}` (distribution {dist}) is imported at {places} but is not a runtime "
            f"dependency{why}. Fix: add {dist!r} to [project.dependencies] in pyproject.toml"
            f"{or_else}"
        )
    return messages


@functools.cache
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]


def declared_runtime() -> set[str]:
    return {requirement_name(r) for r in pyproject()["dependencies"]}


def declared_extras() -> dict[str, set[str]]:
    optional = pyproject().get("optional-dependencies", {})
    return {extra: {requirement_name(r) for r in reqs} for extra, reqs in optional.items()}


@functools.cache
def package_imports() -> tuple[Import, ...]:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert files, f"no modules found under {PACKAGE_DIR}"
    found: list[Import] = []
    for path in files:
        name = path.relative_to(REPO_ROOT).as_posix()
        found += collect_imports(path.read_text(encoding="utf-8"), name)
    return tuple(found)


@functools.cache
def installed_distributions() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()  # ~0.4 s: computed once per session


def _requirements(dist: str) -> set[str]:
    """Names `dist` requires when installed without extras (markers other than extras kept)."""
    try:
        reqs = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return set()
    return {requirement_name(r) for r in reqs if not re.search(r"\bextra\s*==", r)}


@functools.cache
def transitive() -> dict[str, str]:
    """Each distribution the runtime dependencies pull in -> the one that requires it.

    Breadth first from the declared ones, so the requirer is on a shortest path.
    """
    declared = declared_runtime()
    brought_by: dict[str, str] = {}
    level = sorted(declared)
    while level:
        following = []
        for dist in level:
            for name in sorted(_requirements(dist)):
                if name not in declared and name not in brought_by:
                    brought_by[name] = dist
                    following.append(name)
        level = following
    return brought_by


def test_runtime_imports_are_runtime_dependencies():
    found = problems(
        package_imports(),
        declared_runtime(),
        installed_distributions(),
        TRANSITIVE_OK,
        declared_extras(),
        transitive(),
    )
    assert not found, "\n".join(["imports that `pip install .` would not provide:", *found])


def test_the_check_catches_a_lazy_import_of_an_undeclared_package():
    source = "import os\n\n\ndef check(xml):\n    import podcastparser\n\n    return xml\n"
    imports = collect_imports(source, "flows/synthetic.py")
    distributions = {"podcastparser": ["podcastparser"]}

    found = problems(imports, {"lxml"}, distributions, {}, {"test": {"podcastparser"}})

    assert len(found) == 1, found
    assert "`podcastparser`" in found[0]
    assert "flows/synthetic.py:5" in found[0]
    assert "only in the optional test extra" in found[0]
    assert "add 'podcastparser' to [project.dependencies]" in found[0]
    # The same import passes once declared (any spelling), or allow-listed with a reason.
    assert problems(imports, {"PodcastParser"}, distributions, {}) == []
    assert problems(imports, set(), distributions, {"podcastparser": "why"}) == []


def test_type_checking_imports_do_not_count_but_their_else_branch_does():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n"
        "    import only_for_types\n"
        "if typing.TYPE_CHECKING:\n"
        "    from also_for_types import X\n"
        "else:\n"
        "    import at_run_time\n"
        "from . import sibling\n"
        "from flows import models\n"
    )
    imports = third_party(collect_imports(source, "flows/synthetic.py"))
    assert [(i.module, i.where) for i in imports] == [("at_run_time", "flows/synthetic.py:8")]


def test_transitive_allow_list_is_current():
    declared, reachable = declared_runtime(), transitive()
    imported = {imp.module for imp in package_imports()}
    distributions = installed_distributions()
    for module, why in TRANSITIVE_OK.items():
        assert why.strip(), f"TRANSITIVE_OK[{module!r}] needs a reason"
        assert module in imported, f"flows/ no longer imports {module}: drop it from TRANSITIVE_OK"
        dists = {normalise(d) for d in distributions.get(module, ())}
        assert dists, f"{module} (in TRANSITIVE_OK) is not installed"
        assert not dists & declared, f"{module} is declared now: drop it from TRANSITIVE_OK"
        assert dists & reachable.keys(), (
            f"{module} ({', '.join(sorted(dists))}) does not come with any runtime dependency: "
            f"add it to [project.dependencies] and drop it from TRANSITIVE_OK"
        )
