"""The docs are tested: every command and every setting is in the README, by its whole name,
and the README's settings table is what `cog -r README.md` makes of flows/core/settings.py."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterable

import pytest
from cogapp import Cog
from conftest import REPO_ROOT

from flows.cli import build_parser
from flows.core.settings import Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def mentions(text: str, phrase: str) -> bool:
    """Whether `text` names `phrase` as a whole: not as the start or end of a longer name.

    >>> mentions("`KRAFTSAMLING_EVENTS_DAYS`", "KRAFTSAMLING_EVENTS")
    False
    >>> mentions("`KRAFTSAMLING_EVENTS` and `KRAFTSAMLING_EVENTS_DAYS`", "KRAFTSAMLING_EVENTS")
    True
    """
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


def missing_settings(text: str, fields: Iterable[str]) -> list[str]:
    """The environment variables of `fields` that `text` does not name as whole words."""
    names = (f"KRAFTSAMLING_{field.upper()}" for field in fields)
    return [name for name in names if not mentions(text, name)]


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented(command):
    assert mentions(README, f"python -m flows {command}"), f"README does not show `{command}`"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field):
    assert not missing_settings(README, [field]), f"README lacks KRAFTSAMLING_{field.upper()}"


def test_a_setting_that_is_only_a_prefix_of_a_documented_one_is_missing():
    text = "| `KRAFTSAMLING_EVENTS_DAYS` | `60` | Events starting this many days ahead. |"
    assert "KRAFTSAMLING_EVENTS" in text  # the substring check this test replaces would pass
    assert missing_settings(text, ["events", "events_days"]) == ["KRAFTSAMLING_EVENTS"]
    assert missing_settings(text + " `KRAFTSAMLING_EVENTS`", ["events", "events_days"]) == []


def test_the_settings_table_is_what_cog_generates():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = Cog().main(["cog", "--check", str(REPO_ROOT / "README.md")])
    assert status == 0, (
        "README.md's settings table is stale or its cog code fails; regenerate it with "
        f"`cog -r README.md` from the repository root.\n{out.getvalue()}{err.getvalue()}"
    )


def test_readme_opens_with_the_two_commands():
    blocks = README.split("```bash\n")[1:3]
    first, second = (block.split("```")[0].strip() for block in blocks)
    assert first == "python3 -m pip install -e . && python3 -m flows demo"
    assert second == "python3 -m pip install -e '.[test]' && python3 -m pytest"
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]'" in ci and "python3 -m pytest" in ci


def test_the_operators_guide_says_how_the_ui_finds_a_server_on_another_port():
    operators = README.split("## Operators")[1].split("\n## ")[0]
    assert mentions(operators, "PREFECT_UI_API_URL"), "say that --port needs PREFECT_UI_API_URL"
