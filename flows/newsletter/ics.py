"""Read iCalendar files (.ics) as `Event`s: a calendar someone else controls never stops
the issue.

- Recurring events are expanded with recurring-ical-events (EXDATE, RECURRENCE-ID honoured)
  only inside the window, and at most `occurrence_limit` occurrences per event (a rule like
  FREQ=SECONDLY would otherwise run for hours): the rest are dropped with a warning naming
  the event. Expanding stops at the source's deadline, with a warning.
- Times are converted to Europe/Stockholm; floating times are read as Stockholm time.
  Cancelled, private and confidential events are skipped and counted.
- A VEVENT that cannot be read (no DTSTART, a broken property) is skipped with a warning
  naming its UID, summary and line; the calendar's other events are used.
- SUMMARY and LOCATION are plain text, kept as written ("a<b och c>d" stays so). A
  DESCRIPTION is plain text too, unless it holds HTML tags (Google Calendar writes <b>,
  <br>, <a>): then the tags are removed, and what only looks like a tag ("<Juridik>") stays.
- All-day events start at midnight Stockholm and `end` is the midnight after their last day
  (exclusive, as in iCalendar); a one-day event ends at the next midnight.
- Online: a URL in LOCATION, a CONFERENCE / X-GOOGLE-CONFERENCE / Teams property is the
  `online_url`; a LOCATION such as "Digitalt" or "Online" means online (the place is left
  empty and the URL property, else the first link in the description, is the join link).
  The URL property is always the event's page (`url`). Links are made https
  (`flows.core.urls`); each change is listed in the status's `links`.
- id: UID + "/" + the occurrence's start (ISO, Stockholm).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator
from datetime import date, datetime, time, timedelta
from time import monotonic
from typing import Any

import icalendar
import recurring_ical_events

from flows.core.errors import SourceError
from flows.core.models import STOCKHOLM, Event, SourceStatus
from flows.core.text import one_line
from flows.core.urls import safe_url
from flows.newsletter.sources import html_to_text, is_http, shorten

DESCRIPTION_CHARS = 300
OCCURRENCE_LIMIT = 100  # per event and window; a daily event over 60 days needs 60

ONLINE_PLACE = re.compile(
    r"^(?:digitalt|digital|online|på\s+distans|distans|webbinarium|webinar|zoom|"
    r"(?:microsoft\s+)?teams|google\s+meet)\b",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://[^\s<>\"']+")
_CONFERENCE_PROPS = (
    "CONFERENCE",
    "X-GOOGLE-CONFERENCE",
    "X-MICROSOFT-ONLINEMEETINGEXTERNALLINK",
    "X-MICROSOFT-SKYPETEAMSMEETINGURL",
)
_HIDDEN_CLASSES = {"PRIVATE", "CONFIDENTIAL"}


def parse_ics(
    data: bytes,
    source: str,
    start: datetime,
    end: datetime,
    *,
    occurrence_limit: int = OCCURRENCE_LIMIT,
    http_only_hosts: Collection[str] = (),
    deadline: float | None = None,
) -> tuple[list[Event], SourceStatus]:
    """Expand an iCalendar file's events that overlap [start, end) into occurrences (see the
    module's docstring). `deadline` is a `time.monotonic()` reading. Raises SourceError only
    when the file is no calendar at all."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise SourceError(_ics_message(source, str(exc), lines)) from None
    warnings = _drop_broken_events(calendar, source, lines)
    if warnings and not calendar.walk("VEVENT"):  # every event broken: the source failed
        raise SourceError(warnings[0].removeprefix(_SKIPPED))
    occurrences = _expand(calendar, start, end, occurrence_limit, deadline, warnings)

    events: list[Event] = []
    links: list[str] = []
    skipped = len(warnings)
    for component in occurrences:
        title = one_line(str(component.get("SUMMARY", "")))
        why = _not_for_newsletter(component, title)
        if why:
            skipped += 1
            warnings.append(f"skipped {title or str(component.get('UID', '?'))!r}: {why}")
            continue
        event, changed = _component_to_event(component, title, source, http_only_hosts)
        events.append(event)
        links += [note for note in changed if note not in links]
    events.sort(key=event_order)
    status = SourceStatus(
        source=source,
        ok=True,
        items=len(events),
        skipped=skipped,
        warnings=tuple(warnings),
        links=tuple(links),
    )
    return events, status


_SKIPPED = "skipped an event that cannot be read: "


def _drop_broken_events(calendar: Any, source: str, lines: list[str]) -> list[str]:
    """Take out the VEVENTs that cannot be read (icalendar keeps their errors; no DTSTART),
    each with a warning naming it; the others are used. A broken part outside the events
    (a VTIMEZONE) fails the calendar: its times could not be trusted."""
    warnings = []
    for component in list(calendar.walk()):
        errors = getattr(component, "errors", None) or []
        if component.name != "VEVENT":
            if errors:
                prop, problem = errors[0]
                raise SourceError(_ics_message(source, problem, lines, component, prop))
            continue
        problem, prop = (errors[0][1], errors[0][0]) if errors else ("", None)
        if not problem and "DTSTART" not in component:
            problem = "the event has no DTSTART"
        if problem:
            _remove(calendar, component)
            message = _ics_message(source, problem, lines, component, prop)
            warnings.append(_SKIPPED + message)
    return warnings


def _remove(calendar: Any, component: Any) -> None:
    for parent in calendar.walk():
        if component in parent.subcomponents:
            parent.subcomponents.remove(component)
            return


def _expand(
    calendar: Any,
    start: datetime,
    end: datetime,
    limit: int,
    deadline: float | None,
    warnings: list[str],
) -> list[Any]:
    """The occurrences in [start, end), at most `limit` per event, until `deadline`."""
    query = recurring_ical_events.of(calendar, skip_bad_series=True)
    occurrences: list[Any] = []
    for series in query.series:
        if deadline is not None and monotonic() > deadline:
            warnings.append(
                "the calendar took too long to read; the events after "
                f"{len(occurrences)} occurrences were left out (KRAFTSAMLING_HTTP_DEADLINE)"
            )
            break
        found = list(_bounded(series, start, end, limit + 1))
        if len(found) > limit:
            name = one_line(str(found[0].as_component(False).get("SUMMARY", ""))) or "?"
            warnings.append(
                f"event {name!r} repeats more than {limit} times in the window; only its first "
                f"{limit} are listed (KRAFTSAMLING_EVENT_OCCURRENCE_LIMIT)"
            )
            found = found[:limit]
        occurrences += [o.as_component(query.keep_recurrence_attributes) for o in found]
    return occurrences


def _bounded(series: Any, start: datetime, end: datetime, most: int) -> Iterator[Any]:
    """A series' occurrences in [start, end), in order, stopping after `most`: asked for in
    spans that grow while few are found and shrink while many are, so a rule that repeats
    every second costs about `most` occurrences, not millions."""
    repeats = any(component.rrules for component in series.components)
    span = timedelta(hours=1) if repeats else end - start  # no RRULE: one question does
    seen, at = 0, start
    while at < end and seen < most:
        upto = min(at + span, end)
        found = sorted(series.between(at, upto), key=_start_key)
        found = [o for o in found if at <= _start_key(o) < upto]
        yield from found[: most - seen]
        seen += len(found)
        span *= 2
        at = upto


def _start_key(occurrence: Any) -> datetime:
    """An occurrence's start as an aware datetime: each is yielded once, by its start (one
    running across two spans is in both answers)."""
    return to_stockholm(occurrence.start)


def _not_for_newsletter(component: Any, title: str) -> str:
    """Why an occurrence must not be announced (empty when it may)."""
    if not title:
        return "no title (SUMMARY)"
    if str(component.get("STATUS", "")).upper() == "CANCELLED":
        return "cancelled"
    if str(component.get("CLASS", "")).upper() in _HIDDEN_CLASSES:
        return "private"
    return ""


def _component_to_event(
    component: Any, title: str, source: str, http_only_hosts: Collection[str]
) -> tuple[Event, list[str]]:
    """The occurrence as an Event, and the notes of the links changed on the way."""
    raw_start = component["DTSTART"].dt
    all_day = not isinstance(raw_start, datetime)
    begin = to_stockholm(raw_start)
    if "DTEND" in component:
        finish: datetime | None = to_stockholm(component["DTEND"].dt)
    elif "DURATION" in component:
        finish = begin + component["DURATION"].dt
    else:
        finish = begin + timedelta(days=1) if all_day else None

    location = one_line(str(component.get("LOCATION", "")))
    description = calendar_text(str(component.get("DESCRIPTION", "")))
    online_url = _conference_url(component)
    url_prop = str(component.get("URL", "")).strip()
    page = url_prop if is_http(url_prop) else None

    in_location = _URL.search(location)
    if in_location:
        online_url = online_url or in_location.group(0)
        location = location.replace(in_location.group(0), " ").strip(" ,;:-–/()")
    if location and ONLINE_PLACE.match(location):
        location = ""
        if online_url is None:
            in_description = _URL.search(description)
            online_url = page or (in_description.group(0) if in_description else None)

    notes: list[str] = []
    page, online_url = (_secure(url, http_only_hosts, notes) for url in (page, online_url))
    description = _URL.sub(lambda m: _secure(m[0], http_only_hosts, notes) or "", description)
    uid = str(component.get("UID", "")).strip() or _fallback_uid(source, title)
    event = Event(
        id=f"{uid}/{begin.isoformat()}",
        title=title,
        start=begin,
        end=finish,
        all_day=all_day,
        source=source,
        location=location,
        online_url=online_url,
        url=page,
        description=shorten(description, DESCRIPTION_CHARS),
    )
    return event, notes


def _secure(url: str | None, http_only_hosts: Collection[str], notes: list[str]) -> str | None:
    """`url` made https (`flows.core.urls`), its change noted; None stays None."""
    if url is None:
        return None
    safe = safe_url(url, http_only_hosts)
    if safe.note("link"):
        notes.append(safe.note("link"))
    return safe.url or None


# Tags Google Calendar and Outlook put in a DESCRIPTION: with one of them, it is HTML.
_HTML_NAMES = r"(?:a|b|i|u|s|em|strong|br|p|div|span|ul|ol|li|h[1-6]|font|hr|html|body)\b"
# HTML for sure: a closing tag, a bare opening tag, <br/> or a link ("a<b och c>d" is text).
_HTML_TAG = re.compile(rf"</{_HTML_NAMES}\s*>|<{_HTML_NAMES}\s*/?>|<a\s+href=", re.IGNORECASE)
_NOT_A_TAG = re.compile(rf"<(?!/?{_HTML_NAMES})", re.IGNORECASE)


def calendar_text(value: str) -> str:
    """A DESCRIPTION as one line of text: plain text as written; HTML (when it holds known
    tags) reduced to text, keeping what only looks like a tag.

    >>> calendar_text("Gräns: a<b och c>d")
    'Gräns: a<b och c>d'
    >>> calendar_text("<b>Juridik</b> för <Kommunjuridik> &amp; AI<br>Välkommen")
    'Juridik för <Kommunjuridik> & AI Välkommen'
    """
    if not _HTML_TAG.search(value):
        return one_line(value)
    return html_to_text(_NOT_A_TAG.sub("&lt;", value))


def _conference_url(component: Any) -> str | None:
    for name in _CONFERENCE_PROPS:
        values = component.get(name)
        for value in values if isinstance(values, list) else [values]:
            text = str(value or "").strip()
            if is_http(text):
                return text
    return None


def to_stockholm(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=STOCKHOLM)
    if value.tzinfo is None:  # a floating time: read as local time
        return value.replace(tzinfo=STOCKHOLM)
    return value.astimezone(STOCKHOLM)


def _fallback_uid(source: str, title: str) -> str:
    return "no-uid-" + hashlib.sha256(f"{source}\n{title}".encode()).hexdigest()[:16]


def event_order(event: Event) -> tuple[datetime, str, str]:
    return (event.start, event.title, event.id)


def _ics_message(
    source: str,
    problem: str,
    lines: list[str],
    component: Any | None = None,
    prop: str | None = None,
) -> str:
    line = _ics_line(lines, problem, component, prop)
    where = f", line {line}" if line else ""
    what = ""
    if component is not None and component.name == "VEVENT":
        label = str(component.get("SUMMARY") or component.get("UID") or "")
        what = f" in event {label!r}" if label else ""
        if prop:
            what += f", property {prop}"
    if "no components" in problem.lower() or not any(
        ln.strip().upper() == "BEGIN:VCALENDAR" for ln in lines
    ):
        problem = "not an iCalendar file (it needs BEGIN:VCALENDAR ... END:VCALENDAR)"
    return (
        f"Events source {source}{where}: broken iCalendar{what}: {problem}. Fix the line, or "
        f"export the calendar again."
    )


def _ics_line(
    lines: list[str], problem: str, component: Any | None, prop: str | None
) -> int | None:
    """Best-effort 1-based line of a problem: the quoted bad line, or the property's line."""
    quoted = re.search(r"'(.+?)'", problem)
    if quoted:
        for number, text in enumerate(lines, start=1):
            if quoted.group(1) in text:
                return number
    if component is None:
        return None
    first, last = 0, len(lines)
    uid = str(component.get("UID", ""))
    if component.name == "VEVENT" and uid:
        blocks = _vevent_blocks(lines)
        for begin, finish in blocks:
            if any(ln.strip() == f"UID:{uid}" for ln in lines[begin:finish]):
                first, last = begin, finish
                break
    wanted = (prop or "BEGIN").upper()  # without a property: where the component begins
    for number in range(first, last):
        head = re.split(r"[:;]", lines[number], maxsplit=1)[0].strip().upper()
        if head == wanted:
            return number + 1
    return None


def _vevent_blocks(lines: list[str]) -> list[tuple[int, int]]:
    blocks, begin = [], None
    for number, text in enumerate(lines):
        if text.strip().upper() == "BEGIN:VEVENT":
            begin = number
        elif text.strip().upper() == "END:VEVENT" and begin is not None:
            blocks.append((begin, number + 1))
            begin = None
    return blocks
