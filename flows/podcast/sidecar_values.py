"""The values a producer writes in a sidecar, read as they mean them (`flows.podcast.sidecar`
declares the keys; these read the values):

- `timecode`: a chapter's start (`HH:MM:SS`, `MM:SS` or seconds);
- `publish_time`: `publish_at` as an aware time: Stockholm time unless an offset or a zone
  is named; a time that does not exist there, an unknown zone, an offset no zone has, or a
  year outside 2000-2099 is Wrong;
- `plain_text`: a title or a name as plain text, as every podcast app will show it (HTML
  entities read as their characters, HTML tags of an HTML-looking text removed, the
  invisible controls that reverse the direction of text removed), with what was changed;
- `sidecar_text`: the file's bytes as text: UTF-8, or UTF-16 with its byte-order mark.

Each says what is wrong with a `Wrong` or a `Problem` (`flows.core.schema`): what, the fix
and an example, in Swedish and English.
"""

from __future__ import annotations

import codecs
import functools
import html
import html.entities
import math
import re
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from flows.core.errors import InputError
from flows.core.models import STOCKHOLM
from flows.core.schema import Problem, Text, Wrong, did_you_mean, note

DEFAULT_RELEASE_TIME = time(7, 0)  # a publish date without a time means 07:00 Stockholm
FIRST_YEAR, LAST_YEAR = 2000, 2099  # publish_at outside them is a typo (1970, 2206)
_TIMECODE = re.compile(r"\d+(:\d{1,2}){0,2}(\.\d+)?")


def timecode(value: Any) -> float:
    """Seconds from `HH:MM:SS(.mmm)`, `MM:SS` or a number of seconds; Wrong if it is none.

    >>> timecode("01:02:03.5"), timecode(90)
    (3723.5, 90.0)
    """
    fix = ("Skriv den som HH:MM:SS", "Write it as HH:MM:SS")
    shown = repr(value)[:60]
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds):  # YAML's .nan / .inf
            raise Wrong((f"{shown} är ingen tid", f"{shown} is not a time"), fix, '"00:12:30"')
    elif isinstance(value, str) and _TIMECODE.fullmatch(value.strip()):
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
    else:
        raise Wrong((f"{shown} är ingen tid", f"{shown} is not a time"), fix, '"00:12:30"')
    if seconds < 0:
        what = (f"{shown} är negativ", f"{shown} is negative")
        raise Wrong(what, ("Skriv en tid från 00:00:00", "Use a time from 00:00:00"), '"00:00:00"')
    return seconds


def publish_time(value: Any) -> datetime:
    """A timezone-aware publish time; naive means Stockholm, a date alone 07:00 Stockholm;
    a time may end with an offset (`+01:00`, `Z`) or a zone (`Europe/Stockholm`).

    Wrong: a local time that does not exist (the hour skipped when the clocks go forward:
    the producer meant some time, and no one can tell which); an unknown zone or an offset
    no zone has (it would otherwise be read as some other time); a year outside 2000-2099
    (no podcast is older than 2000, and 1970 is what an empty date becomes in many tools;
    apps would sort it last, or a year 2206 would never appear).

    >>> publish_time("2026-03-01").isoformat()
    '2026-03-01T07:00:00+01:00'
    >>> publish_time("2026-07-01 09:30").isoformat()
    '2026-07-01T09:30:00+02:00'
    >>> publish_time("2026-07-01 09:30 Europe/London").isoformat()
    '2026-07-01T09:30:00+01:00'
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        # An empty `publish_at:` must not mean "now": the producer meant a time.
        raise Wrong(
            ("är tom", "is empty"),
            ("Skriv en tid eller ta bort raden", "Give a time or remove the line"),
        )
    moment, zone = _moment(value)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise Wrong(
            (f"år {moment.year} går inte: ett avsnitt publiceras åren {FIRST_YEAR}–{LAST_YEAR}",
             f"year {moment.year} cannot be: an episode is published in {FIRST_YEAR}-{LAST_YEAR}"),
            ("Skriv rätt år (före 2000 fanns inga poddar; apparna skulle lägga avsnittet sist)",
             "Write the right year (no podcast is older than 2000; apps would list it last)"),
        )  # fmt: skip
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment
    local = moment.replace(tzinfo=zone)
    real = local.astimezone(UTC).astimezone(zone)
    if real.replace(tzinfo=None) != moment:  # in the gap: 02:30 on spring-forward night
        place = ("svensk tid", "Stockholm") if zone is STOCKHOLM else (str(zone), str(zone))
        raise Wrong(
            (
                f"{moment:%Y-%m-%d %H:%M} finns inte i {place[0]}: klockan ställs fram en "
                "timme den natten",
                f"{moment:%Y-%m-%d %H:%M} does not exist in {place[1]}: the clocks go forward "
                "an hour that night",
            ),
            ("Välj en tid som finns", "Choose a time that exists"),
            f"{real:%Y-%m-%d %H:%M}",
        )
    return local


def _moment(value: Any) -> tuple[datetime, tzinfo]:
    """A date (at 07:00) or a date and time, maybe naive, and the zone a naive one is in
    (Stockholm unless it names one); Wrong if it is neither, or its zone is unknown."""
    if isinstance(value, datetime):
        return value, STOCKHOLM
    if isinstance(value, date):
        return datetime.combine(value, DEFAULT_RELEASE_TIME), STOCKHOLM
    text = value.strip() if isinstance(value, str) else ""
    text, zone = _zone(text, repr(value)[:60])
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), DEFAULT_RELEASE_TIME), zone
        return datetime.fromisoformat(re.sub(r"\s*Z$", "+00:00", text)), zone
    except ValueError:
        shown = repr(value)[:60]
        raise Wrong(
            (f"{shown} är inget datum", f"{shown} is not a date"),
            (
                "Skriv ett datum, ett datum och en tid (svensk tid) eller en tid med tidszon",
                "Write a date, a date and a time (Stockholm time) or a time with an offset",
            ),
        ) from None


_ZONE_NAME = re.compile(r"(?P<time>.*\d)\s+(?P<zone>[A-Za-z][\w+\-/]*)")
_OFFSET = re.compile(r"(?P<time>.*\d)\s*(?P<sign>[+-])(?P<h>\d{2}):?(?P<m>\d{2})")
_FIX_ZONE: Text = (
    "Skriv en tidszon som finns, en förskjutning som +01:00, eller ingen alls (svensk tid)",
    "Write a zone that exists, an offset such as +01:00, or none at all (Stockholm time)",
)


def _zone(text: str, shown: str) -> tuple[str, tzinfo]:
    """The text without a trailing zone name, and that zone (else Stockholm); an offset is
    left in the text (joined to the time) unless no zone has it. Wrong: an unknown zone."""
    if named := _ZONE_NAME.fullmatch(text):
        name = named["zone"]
        if name not in _zone_names():
            close = did_you_mean(name, sorted(_zone_names()))
            hint = (
                (f" (menade du {close!r}?)", f" (did you mean {close!r}?)") if close else ("", "")
            )
            raise Wrong(
                (f"{shown}: okänd tidszon {name!r}{hint[0]}",
                 f"{shown}: unknown time zone {name!r}{hint[1]}"),
                _FIX_ZONE,
                f"{named['time']} {close or 'Europe/Stockholm'}",
            )  # fmt: skip
        return named["time"], ZoneInfo(name)
    if offset := _OFFSET.fullmatch(text):
        if int(offset["h"]) * 60 + int(offset["m"]) > (14 if offset["sign"] == "+" else 12) * 60:
            found = f"{offset['sign']}{offset['h']}:{offset['m']}"
            raise Wrong(
                (f"{shown}: förskjutningen {found} finns inte (tidszoner går från -12:00 till "
                 "+14:00)", f"{shown}: no time zone has the offset {found} (they run from "
                 "-12:00 to +14:00)"),
                _FIX_ZONE,
                f"{offset['time']}+01:00",
            )  # fmt: skip
        return f"{offset['time']}{offset['sign']}{offset['h']}:{offset['m']}", STOCKHOLM
    return text, STOCKHOLM


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


# --- plain text -----------------------------------------------------------------------------

# The invisible controls that embed, override or isolate a direction (U+202A-U+202E,
# U+2066-U+2069): U+202E shows "3 tispsnavA" for "Avsnitt 3". The marks U+200E/U+200F,
# which Hebrew and Arabic text needs, change no order by themselves and are kept.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{0,31});")
_CLOSE_TAG = re.compile(r"</[A-Za-z]\w*\s*>")  # with an entity: what makes a reader see HTML
_NO_CHARACTER = re.compile(r"&#\w+;")  # a reader takes it for a character reference
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
CHANGES: dict[str, tuple[Text, Text]] = {  # a change plain_text made: (what, fix)
    "entity": (
        ("innehöll HTML-koder (som '&amp;'); de lästes som tecknen de står för, eftersom "
         "titlar är vanlig text", "contained HTML codes (such as '&amp;'); they were read as "
         "the characters they stand for, since titles are plain text"),
        ("Skriv tecknet självt, inte dess kod", "Write the character itself, not its code"),
    ),
    "tag": (
        ("innehöll HTML-taggar (som '<b>…</b>'); de togs bort, eftersom apparna visar dem som "
         "de är eller inte alls", "contained HTML tags (such as '<b>…</b>'); they were removed, "
         "since apps show them as written or not at all"),
        ("Skriv vanlig text utan taggar", "Write plain text without tags"),
    ),
    "bidi": (
        ("innehöll osynliga tecken som vänder skrivriktningen (som U+202E); de togs bort, "
         "eftersom de kan få apparna att visa texten baklänges", "contained invisible "
         "controls that reverse the direction of text (such as U+202E); they were removed, "
         "since they can make apps show the text backwards"),
        ("Skriv texten igen i stället för att klistra in den",
         "Type the text again instead of pasting it"),
    ),
}  # fmt: skip


def plain_text(text: str) -> tuple[str, tuple[str, ...]]:
    """`text` as plain text every podcast app shows alike, and the kinds of change made
    (`CHANGES`): HTML entities read as their characters ("&amp;" -> "&": the producer meant
    "&", and a literal entity makes some apps show "&" and others "&amp;"), HTML tags removed
    from text with a closing tag (such text is taken as HTML by some readers), direction
    controls removed. Repeated until nothing changes ("&amp;amp;" -> "&"). Wrong: a code that
    looks like a character reference but names none ("&#b;"), which readers show differently.

    >>> plain_text("Tom &amp; Jerry <b>live</b>\u202e")
    ('Tom & Jerry live', ('entity', 'tag', 'bidi'))
    >>> plain_text("Q&A, <3 & R&D; &nosuch;")
    ('Q&A, <3 & R&D; &nosuch;', ())
    """
    made: dict[str, None] = {}
    for _ in range(8):
        before = text
        text, count = _ENTITY.subn(_character, text)
        if text != before:
            made["entity"] = None
        if _CLOSE_TAG.search(text):
            text, count = _TAG.subn("", text)
            made.update({"tag": None} if count else {})
        text, count = BIDI_CONTROLS.subn("", text)
        made.update({"bidi": None} if count else {})
        if text == before:
            break
    if odd := _NO_CHARACTER.search(text):
        raise Wrong(
            (f"{odd.group()!r} ser ut som en HTML-kod men står inte för något tecken",
             f"{odd.group()!r} looks like an HTML code but stands for no character"),
            ("Skriv tecknet självt, eller ta bort koden",
             "Write the character itself, or remove the code"),
        )  # fmt: skip
    return text, tuple(made)


def _character(found: re.Match[str]) -> str:
    """The character an entity names; an unknown name ("&nosuch;") is left as written, and
    so is a number that is no character text can hold ("&#0;": `plain_text` refuses it)."""
    name, written = found.group(1), found.group(0)
    if f"{name};" in html.entities.html5:
        return html.unescape(written)
    if name.startswith("#"):
        code = int(name[2:], 16) if name[1:2] in "xX" else int(name[1:])
        character = html.unescape(written)
        return character if character not in ("", "\ufffd") or code == 0xFFFD else written
    return written


# --- the file -------------------------------------------------------------------------------


def sidecar_text(data: bytes, source: str) -> tuple[str, str]:
    """A sidecar's bytes as text, and a warning ("" without): UTF-8 (with or without a
    byte-order mark), or UTF-16 with its byte-order mark (Word's "Unicode text"), which is
    read with a warning. InputError for anything else, naming the line and the byte.

    >>> sidecar_text("title: Å".encode("utf-16"), "a.md")[0]
    'title: Å'
    """
    save = ("Spara filen som UTF-8 och lägg in den igen", "Save it as UTF-8 and drop it again")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            pass  # refused below, as the bytes are not UTF-8 either
        else:
            what = ("är sparad som UTF-16; den lästes ändå", "is saved as UTF-16; it was read")
            return text, note(source, [Problem((), None, what, save, "UTF-8")])
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        line, byte = data.count(b"\n", 0, exc.start) + 1, data[exc.start]
        guess = bytes([byte]).decode("cp1252", "replace")
        what = (
            f"är inte UTF-8-text (byten 0x{byte:02X}, kanske {guess!r} sparat som Windows-1252)",
            f"is not UTF-8 text (byte 0x{byte:02X}, perhaps {guess!r} saved as Windows-1252)",
        )
        raise InputError(note(source, [Problem((), line, what, save, "UTF-8")])) from None
