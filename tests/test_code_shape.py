"""Functions a newcomer can hold in their head: no module over 600 lines, no function over
80 lines or of cyclomatic complexity D or worse (radon). A new long function fails here with
its name and size."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT
from radon.complexity import cc_rank, cc_visit

FLOWS = REPO_ROOT / "flows"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(FLOWS.rglob("*.py"))


def where(path: Path, name: str) -> str:
    return f"{path.relative_to(REPO_ROOT).as_posix()}:{name}"


def test_no_module_is_over_600_lines():
    long = {
        str(p.relative_to(REPO_ROOT)): n
        for p in modules()
        if (n := len(p.read_text("utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_no_function_is_over_80_lines():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long[where(path, node.name)] = size
    assert long == {}, f"split these functions (over {MAX_FUNCTION_LINES} lines): {long}"


def test_no_function_is_of_complexity_d_or_worse():
    complex_ = {}
    for path in modules():
        for block in cc_visit(path.read_text("utf-8")):
            rank = cc_rank(block.complexity)
            if rank >= "D":
                complex_[where(path, block.name)] = f"{rank} ({block.complexity})"
    assert complex_ == {}, f"split these functions (radon grade D or worse): {complex_}"
