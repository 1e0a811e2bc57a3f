"""Declared schemas for hand-written inputs: one note per file, every problem in it.

A sidecar, show.yaml and an events YAML are validated by pydantic models; every problem of
a file comes back in one message that names the file, the line, the key, what is wrong and
the fix (Swedish, then English, for the producers' files). The sidecar key table in
episodes/README.md is generated from the sidecar's schema, and checked here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import datetime

import pytest
import yaml
from conftest import REPO_ROOT
from pydantic import ValidationError

from flows.core.errors import InputError, SourceError
from flows.core.models import STOCKHOLM, Show
from flows.core.schema import EN, SV, note, problems, yaml_lines
from flows.newsletter.events import parse_events_yaml
from flows.podcast.show import parse_show
from flows.podcast.sidecar import KNOWN_KEYS, SidecarFront, parse_sidecar

WINDOW = (datetime(2026, 12, 1, tzinfo=STOCKHOLM), datetime(2027, 2, 1, tzinfo=STOCKHOLM))


def cog_check(path) -> subprocess.CompletedProcess:
    """`cog --check` as CI runs it for README.md, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the docs table comes from the schema --------------------------------------------------


def test_the_sidecar_key_table_is_what_cog_generates():
    done = cog_check("episodes/README.md")
    assert done.returncode == 0, (
        "episodes/README.md's key table (or example error) is stale or its cog code fails; "
        f"regenerate it with `cog -r episodes/README.md`.\n{done.stdout}{done.stderr}"
    )


def test_a_hand_edited_key_table_fails_the_check(tmp_path):
    copy = tmp_path / "README.md"
    shutil.copy(REPO_ROOT / "episodes" / "README.md", copy)
    text = copy.read_text(encoding="utf-8")
    row = "| `season` | `season: 2` |"
    assert row in text  # the generated table has a row per key
    copy.write_text(text.replace(row, "| `säsong` | `säsong: 2` |"), encoding="utf-8")
    assert cog_check(copy).returncode != 0


def test_every_sidecar_key_is_a_row_of_the_table():
    text = (REPO_ROOT / "episodes" / "README.md").read_text(encoding="utf-8")
    for key in KNOWN_KEYS:
        description = SidecarFront.model_fields[key].description
        assert f"| `{key}` | `{key}: " in text and f"| {description} |" in text


# --- the done-when case: four problems, one note ----------------------------------------------

FOUR_PROBLEMS = """---
title: Avsnitt
episode: tre
publish_at: 2027-03-28 02:30
season: -1
guest: Anna Exempel
---
Beskrivning.
"""


def test_a_sidecar_with_four_problems_gets_one_note_naming_each_in_both_languages():
    with pytest.raises(InputError) as raised:
        parse_sidecar(FOUR_PROBLEMS, "ep.md")
    lines = str(raised.value).splitlines()
    assert len(lines) == 8  # four problems, each in Swedish and in English
    swedish, english = lines[:4], lines[4:]  # Swedish first, English below
    expected = [  # key, line, Swedish, English: what is wrong and the fix
        ("episode", 3, "'tre' är inget heltal. Skriv ett heltal", "'tre' is not a whole number"),
        (
            "publish_at",
            4,
            "2027-03-28 02:30 finns inte i svensk tid",
            "2027-03-28 02:30 does not exist in Stockholm: the clocks go forward",
        ),
        ("season", 5, "är -1; det får inte vara negativt", "is -1; it cannot be negative"),
        ("guest", 6, "okänd nyckel (menade du 'guests'?)", "unknown key (did you mean 'guests'?)"),
    ]
    for (key, line, in_swedish, in_english), sv, en in zip(expected, swedish, english, strict=True):
        assert sv.startswith(f"ep.md: {key} (rad {line}): {in_swedish}"), sv
        assert en.startswith(f"ep.md: {key} (line {line}): {in_english}"), en
        assert ", t.ex. `" in sv and ", e.g. `" in en  # each fix shows a line to write
    # The fix for the gap is a time that exists: the same instant, after the clocks moved.
    assert "Choose a time that exists, e.g. `publish_at: 2027-03-28 03:30`." in english[1]
    assert "Use 1, 2, 3" in english[2] and "Known keys: title, episode" in english[3]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-03-28 01:59", "2027-03-28T01:59:00+01:00"),  # before the gap
        ("2027-03-28 03:00", "2027-03-28T03:00:00+02:00"),  # after it
        ("2027-03-28T02:30:00+01:00", "2027-03-28T02:30:00+01:00"),  # an offset: no gap
        ("2027-10-31 02:30", "2027-10-31T02:30:00+02:00"),  # twice in autumn: the first
        ("2027-03-28", "2027-03-28T07:00:00+02:00"),  # a date: 07:00, never in the gap
    ],
)
def test_publish_times_around_the_clock_changes_are_kept(value, expected):
    meta = parse_sidecar(f"---\npublish_at: {value}\n---\n", "ep.md")
    assert meta.publish_at.isoformat() == expected


def test_every_problem_of_a_sidecar_is_named_not_only_the_first():
    text = (
        "---\ntitle: ''\nexplicit: kanske\nchapters:\n  - {start: x, titel: Intro}\n"
        "transcript: ../hemlig.vtt\n---\n"
    )
    with pytest.raises(InputError) as raised:
        parse_sidecar(text, "ep.md")
    english = [line for line in str(raised.value).splitlines() if "(line " in line]
    assert [line.split(" (line ")[0] for line in english] == [
        "ep.md: title",
        "ep.md: explicit",
        "ep.md: chapters[1].start",
        "ep.md: chapters[1].title",
        "ep.md: chapters[1].titel",
        "ep.md: transcript",
    ]
    assert "ep.md: chapters[1].start (line 5): 'x' is not a time" in english[2]
    assert 'e.g. `start: "00:12:30"`' in english[2]  # the example is of the key itself


# --- show.yaml ---------------------------------------------------------------------------------


def test_show_yaml_with_a_wrong_type_and_an_unknown_key_names_both():
    text = (REPO_ROOT / "episodes" / "show.yaml").read_text(encoding="utf-8")
    text = text.replace("explicit: false", "explicit: kanske")
    text = text.replace("language: sv", "language: sv\ncopyrigth: © 2026")
    numbered = list(enumerate(text.splitlines(), start=1))
    copyrigth = next(n for n, line in numbered if line.startswith("copyrigth:"))
    explicit = next(n for n, line in numbered if line.startswith("explicit:"))
    assert copyrigth < explicit  # so the note names copyrigth first (by line)
    with pytest.raises(InputError) as raised:
        parse_show(text, "episodes/show.yaml")
    lines = str(raised.value).splitlines()
    assert len(lines) == 4  # two problems, Swedish then English
    assert lines[0].startswith(f"episodes/show.yaml: copyrigth (rad {copyrigth}): okänd nyckel")
    assert lines[1].startswith(f"episodes/show.yaml: explicit (rad {explicit}): 'kanske' är")
    assert lines[2] == (
        f"episodes/show.yaml: copyrigth (line {copyrigth}): unknown key (did you mean "
        f"'copyright'?). Correct the spelling. Known keys: {', '.join(Show.model_fields)}, e.g. "
        "`copyright: © 2026 Kraftsamling`."
    )
    assert lines[3] == (
        f"episodes/show.yaml: explicit (line {explicit}): 'kanske' is not true or false. "
        "Write true or false, e.g. `explicit: false`."
    )


def test_show_yaml_without_required_keys_names_each_missing_key():
    with pytest.raises(InputError) as raised:
        parse_show("title: T\ndescription: D\nauthor: A\nowner_name: O\n", "show.yaml")
    english = str(raised.value).splitlines()[4:]
    assert english[0] == (
        "show.yaml: owner_email: is missing. Add the line, e.g. "
        "`owner_email: podd@kraftsamling.example`."
    )
    assert [line.split(":")[1].strip() for line in english] == [
        "owner_email",
        "category",
        "website",
        "image",
    ]


# --- events YAML -------------------------------------------------------------------------------


def test_events_yaml_with_a_bad_date_and_an_unknown_key_names_both():
    text = (
        "- title: Julmarknad\n  start: 2026-12-12\n  plats: Torget\n"
        "- title: Kurs\n  start: 14 december\n"
    )
    with pytest.raises(SourceError) as raised:
        parse_events_yaml(text.encode(), "events.yaml", *WINDOW)
    message = str(raised.value)
    assert message.startswith("Events file events.yaml has mistakes:\n")
    assert (
        "\n  event 2 ('Kurs'): start (line 5): '14 december' is not a date or a date and time. "
        "Write a date (2026-12-10, a whole day) or a date and time (2026-12-10 10:00), e.g. "
        "`start: 2026-12-10 10:00`.\n" in message
    )
    assert (
        "\n  left out: event 1 ('Julmarknad'): plats (line 3): unknown key (did you mean "
        "'place'?). Correct the spelling. Known keys: title, start, end" in message
    )


def test_an_event_with_an_unknown_key_is_left_out_with_all_its_problems():
    text = "- title: Kurs\n  start: 14 december\n  plats: Torget\n"
    events, status = parse_events_yaml(text.encode(), "events.yaml", *WINDOW)
    assert events == [] and status.ok and status.skipped == 1  # as before: left out, not fatal
    [warning] = status.warnings
    assert warning.startswith("events.yaml: left out event 1 ('Kurs'): start (line 2): ")
    assert "plats (line 3): unknown key (did you mean 'place'?)" in warning


# --- the formatter ----------------------------------------------------------------------------


def test_yaml_lines_name_each_key_and_item_by_its_line():
    node = yaml.compose("title: A\nchapters:\n  - start: 0\n    title: B\n")
    assert yaml_lines(node, first_line=2) == {
        ("title",): 2,
        ("chapters",): 3,
        ("chapters", 0): 4,
        ("chapters", 0, "start"): 4,
        ("chapters", 0, "title"): 5,
    }


def test_an_alias_bomb_is_walked_once_and_shown_short():
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    text = "---\n" + "\n".join(levels) + "\ntitle: *a8\n---\n"  # 10**9 strings if expanded
    started = time.monotonic()
    with pytest.raises(InputError) as raised:
        parse_sidecar(text, "bomb.md")
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "bomb.md: title (line 11): " in message and len(message) < 20_000


def test_note_puts_every_problem_in_line_order_swedish_first():
    text = "season: x\nepisode: -1\n"
    with pytest.raises(ValidationError) as raised:
        SidecarFront.model_validate(yaml.safe_load(text))
    found = problems(raised.value, SidecarFront, yaml_lines(yaml.compose(text)))
    message = note("a.md", reversed(found))  # in any order: the note sorts them by line
    assert [line.split(":")[1].strip() for line in message.splitlines()] == [
        "season (rad 1)",
        "episode (rad 2)",
        "season (line 1)",
        "episode (line 2)",
    ]
    assert note("a.md", found, languages=(EN,)) == "\n".join(message.splitlines()[2:])
    assert note("a.md", found, languages=(SV,)) == "\n".join(message.splitlines()[:2])
