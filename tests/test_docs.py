"""The docs are tested: every command and every setting is in the README."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT

from flows.cli import build_parser
from flows.core.settings import Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented(command):
    assert f"python -m flows {command}" in README, f"README does not show `{command}`"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field):
    assert f"KRAFTSAMLING_{field.upper()}" in README, f"README lacks KRAFTSAMLING_{field.upper()}"


def test_readme_opens_with_the_two_commands():
    blocks = README.split("```bash\n")[1:3]
    first, second = (block.split("```")[0].strip() for block in blocks)
    assert first == "python3 -m pip install -e . && python3 -m flows demo"
    assert second == "python3 -m pip install -e '.[test]' && python3 -m pytest"
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]'" in ci and "python3 -m pytest" in ci
