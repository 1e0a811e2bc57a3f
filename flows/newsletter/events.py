"""Read the newsletter's events: iCalendar files (`ics`) and a hand-edited YAML list, as
`Event`s.

`parse_ics` and `parse_events_yaml` are pure (bytes in, events out); `read_events` fetches
every source (`flows.core.fetch`) within its total deadline and decides what a failure means:
a calendar (.ics, local or remote) that fails entirely, and an unreachable or broken remote
YAML list, are recorded as not ok and named in the output and the manifest, and the other
sources are used; a broken local YAML list (one that staff edit) raises SourceError so a
person fixes it. The text policy and the shared HTTP client are in `sources`.

- YAML events (a hand-edited list; see demo/events.yaml): the keys are declared by
  `YamlEvent`. A date-only start means all day, and a date-only end is the last day
  (inclusive). Naive times are Europe/Stockholm; an end may be a time of day ("12:00") on the
  start day. All mistakes of the file are in one SourceError naming the file, and for each
  the event (number and title), the key, its line and the fix; an event with an unknown
  (misspelt) key is left out with a warning naming the key, its line and the closest key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Annotated, Any
from urllib.parse import urlparse

import httpx
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

from flows.core.errors import SourceError
from flows.core.fetch import fetch_source, is_remote
from flows.core.models import Event, SourceStatus
from flows.core.schema import EN, Loc, Problem, Wrong, problems, yaml_lines
from flows.core.settings import Settings
from flows.core.text import clean_text
from flows.newsletter.ics import (
    DESCRIPTION_CHARS,
    ONLINE_PLACE,
    event_order,
    parse_ics,
    to_stockholm,
)
from flows.newsletter.sources import (
    WHITESPACE,
    YamlLoader,
    is_http,
    shared_client,
    shorten,
)

# ---------------------------------------------------------------------------------------
# Events: YAML
# ---------------------------------------------------------------------------------------

_TIME_ONLY = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*$")
_WHEN = "a date (2026-12-10, a whole day) or a date and time (2026-12-10 10:00)"


def _start(value: Any) -> date | datetime:
    when = _yaml_when(value)
    if when is None:
        raise Wrong(f"{value!r} is not a date or a date and time", f"Write {_WHEN}")
    return when


def _end(value: Any) -> date | datetime | time | None:
    """An end: a date (an all-day event's last day), a date and time, or a time of day (on
    the start day, see `_times`)."""
    clock = _TIME_ONLY.match(value) if isinstance(value, str) else None
    try:
        when = time(int(clock[1]), int(clock[2])) if clock else _yaml_when(value)
    except ValueError:  # 25:00
        when = None
    if when is None and value is not None:
        raise Wrong(
            f"{value!r} is not a date, a date and time, or a time (12:00)",
            f"Write {_WHEN}, or a time on the start day",
            '"12:00"',
        )
    return when


def _text(value: Any) -> Any:
    """Numbers are text here (`id: 42`); YAML escapes may carry characters no email holds."""
    return clean_text(str(value)).strip() if isinstance(value, str | int | float) else value


def _title(value: Any) -> Any:
    return clean_text(value).strip() if isinstance(value, str) else value  # a number is no title


def _http(value: str | None) -> str | None:
    if value and not is_http(value):
        raise Wrong(f"{value!r} must be a full http(s):// address", "Write the whole address")
    return value


def _not_null(value: Any) -> Any:
    if value is None:  # `all_day:` with nothing after it
        raise Wrong("is empty", "Write true or false, or remove the line")
    return value


_Text = Annotated[StrictStr | None, BeforeValidator(_text)]
_Url = Annotated[StrictStr | None, BeforeValidator(_text), AfterValidator(_http)]


class YamlEvent(BaseModel):
    """One event of a hand-edited events YAML file (see demo/events.yaml)."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[StrictStr, BeforeValidator(_title), Field(min_length=1)] = Field(
        description="The event's name.", examples=["Workshop om AI-stöd"]
    )
    start: Annotated[datetime | date, BeforeValidator(_start)] = Field(
        description="A date (all day) or a date and time.", examples=["2026-12-10 10:00"]
    )
    end: Annotated[datetime | date | time | None, BeforeValidator(_end)] = Field(
        None, description="The last day, a date and time, or a time.", examples=['"12:00"']
    )
    all_day: Annotated[StrictBool | None, BeforeValidator(_not_null)] = Field(
        None, description="Whole days; by default, when start is a date.", examples=["true"]
    )
    place: _Text = Field(None, description="Where ('Online': online).", examples=["Stadshuset"])
    location: _Text = Field(None, description="Another name for place.", examples=["Stadshuset"])
    online_url: _Url = Field(None, description="A link to join.", examples=["https://x.example/"])
    url: _Url = Field(None, description="A page about the event.", examples=["https://x.example/"])
    description: _Text = Field(None, description="A short text.", examples=["Välkomna!"])
    id: _Text = Field(None, description="A stable id (else made from the title).", examples=["k1"])


@dataclass
class _YamlItem:
    number: int
    line: int
    data: dict[str, Any]
    lines: dict[Loc, int]  # of its keys, from the YAML nodes

    @property
    def label(self) -> str:
        title = self.data.get("title")
        return f"event {self.number}" + (f" ({title!r})" if isinstance(title, str) else "")


def parse_events_yaml(
    data: bytes, source: str, start: datetime, end: datetime
) -> tuple[list[Event], SourceStatus]:
    """Read a hand-edited YAML list of events; keep those overlapping [start, end).

    Every mistake of the file is in one SourceError. An event with an unknown (misspelt)
    key is left out with a warning that names its problems; the rest of the file is read.
    """
    events: list[Event] = []
    mistakes: list[str] = []
    left_out: list[str] = []
    for item in _yaml_items(data, source):
        found = _yaml_event(item, source)
        if isinstance(found, Event):
            events.append(found)
            continue
        said = " ".join(p.render(EN) for p in sorted(found, key=lambda p: p.line or 0))
        # A misspelt key ("plats", "start_time") would be silently ignored: leave the event
        # out, say which key, keep the rest of the file.
        unknown = any(key not in YamlEvent.model_fields for key in item.data)
        (left_out if unknown else mistakes).append(f"{item.label}: {said}")
    if mistakes:
        more = f" (and {len(mistakes) - 10} more)" if len(mistakes) > 10 else ""
        raise SourceError(
            f"Events file {source} has mistakes{more}:\n  " + "\n  ".join(mistakes[:10])
            + "".join(f"\n  left out: {text}" for text in left_out)
            + "\nEach event needs `title:` and `start:` (2026-12-10 for a whole day, or "
            "2026-12-10 10:00); see demo/events.yaml for an example."
        )  # fmt: skip
    kept = sorted((e for e in events if _overlaps(e, start, end)), key=event_order)
    warnings = tuple(f"{source}: left out {text}" for text in left_out)
    status = SourceStatus(
        source=source, ok=True, items=len(kept), skipped=len(warnings), warnings=warnings
    )
    return kept, status


class _YamlProblem(Exception):
    """A value that is fine alone but not with the others (an end before the start)."""

    def __init__(self, key: str, what: str, fix: str) -> None:
        super().__init__(what)
        self.key, self.wrong = key, Wrong(what, fix)


def _yaml_items(data: bytes, source: str) -> list[_YamlItem]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"Events file {source}: is not UTF-8 text. Save it as UTF-8.") from None
    loader = YamlLoader(text)
    try:
        root = loader.get_single_node()
        document = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark else ""
        raise SourceError(
            f"Events file {source}{where}: not valid YAML ({exc.problem}). Check the "
            f"indentation and quote text that contains ': ' or starts with a special character."
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"Events file {source}: not valid YAML ({exc}).") from None
    finally:
        loader.dispose()
    if root is None or document is None:
        return []
    if isinstance(root, yaml.MappingNode) and isinstance(document, dict):
        # Also accept `events: [...]` at the top.
        for key_node, value_node in root.value:
            if key_node.value == "events":
                root, document = value_node, document.get("events")
                break
    if not isinstance(root, yaml.SequenceNode) or not isinstance(document, list):
        raise SourceError(
            f"Events file {source}, line {root.start_mark.line + 1}: expected a list of events, "
            f"each starting with '- title: ...'."
        )
    items = []
    for number, (node, value) in enumerate(zip(root.value, document, strict=True), start=1):
        line = node.start_mark.line + 1
        if not isinstance(value, dict) or not isinstance(node, yaml.MappingNode):
            raise SourceError(
                f"Events file {source}, line {line}: event {number} is not a set of "
                f"`key: value` lines (title, start, ...)."
            )
        fields = {str(key): item for key, item in value.items()}
        items.append(_YamlItem(number, line, fields, yaml_lines(node)))
    return items


def _yaml_event(item: _YamlItem, source: str) -> Event | list[Problem]:
    """The event of one YAML item, or all its problems (each with its key and line)."""
    try:
        entry = YamlEvent.model_validate(item.data)
        begin, finish, all_day = _times(entry)
    except ValidationError as exc:
        return problems(exc, YamlEvent, item.lines, default_line=item.line)
    except _YamlProblem as exc:
        line = item.lines.get((exc.key,), item.line)
        return [Problem((exc.key,), line, exc.wrong.what, exc.wrong.fix)]
    location = entry.place or entry.location or ""
    online_url = entry.online_url or None
    if location and ONLINE_PLACE.match(location):
        location = ""
        online_url = online_url or entry.url or None
    stable = entry.id or f"yaml:{_slug(entry.title)}"
    return Event(
        id=f"{stable}/{begin.isoformat()}",
        title=entry.title,
        start=begin,
        end=finish,
        all_day=all_day,
        source=source,
        location=location,
        online_url=online_url,
        url=entry.url or None,
        description=shorten(WHITESPACE.sub(" ", entry.description or ""), DESCRIPTION_CHARS),
    )


def _times(entry: YamlEvent) -> tuple[datetime, datetime | None, bool]:
    """Start, end and all-day of an event: an all-day event runs from midnight (Stockholm)
    to the midnight after its last day; an end that is a time of day is on the start day."""
    begin_value = entry.start
    all_day = not isinstance(begin_value, datetime) if entry.all_day is None else entry.all_day
    if all_day and isinstance(begin_value, datetime):
        raise _YamlProblem("all_day", "is true but start has a time", "Drop the time or all_day")
    begin = to_stockholm(begin_value)
    end_value = entry.end
    if isinstance(end_value, time):
        day = begin_value.date() if isinstance(begin_value, datetime) else begin_value
        end_value = datetime.combine(day, end_value)
    if end_value is None:
        return begin, (begin + timedelta(days=1) if all_day else None), all_day
    if all_day and isinstance(end_value, datetime):
        raise _YamlProblem(
            "end", "an all-day event's end is a date (its last day)", "Drop the time"
        )
    if not all_day and not isinstance(end_value, datetime):
        raise _YamlProblem("end", "a timed event's end needs a time (e.g. 12:00)", "Add the time")
    finish = to_stockholm(end_value + timedelta(days=1) if all_day else end_value)
    if finish < begin or (finish == begin and all_day):
        raise _YamlProblem("end", "is before start", "Make it later than start")
    return begin, finish, all_day


def _yaml_when(value: Any) -> date | datetime | None:
    """A YAML date/datetime or an ISO string ("2026-12-10 kl. 10:00" too); else None."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace(" kl. ", " ").replace(" kl ", " "))
    except ValueError:
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", text.lower()).strip("-")


def _overlaps(event: Event, start: datetime, end: datetime) -> bool:
    if event.end is None or event.end <= event.start:
        return start <= event.start < end
    return event.start < end and event.end > start


# ---------------------------------------------------------------------------------------
# Reading events: fetch + parse, and what a failing source means
# ---------------------------------------------------------------------------------------


def read_events(
    sources: list[str],
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    client: httpx.Client | None = None,
    cache_dir: Path | None = None,
) -> tuple[list[Event], list[SourceStatus]]:
    """Fetch and parse every events source (.ics or YAML) for the window [start, end).

    An unreachable or broken remote source is recorded as not ok; a broken local file (one
    that staff edit) raises SourceError so a person fixes it.
    """
    events: dict[str, Event] = {}
    statuses: list[SourceStatus] = []
    with shared_client(client, sources) as http:
        for source in sources:
            calendar = False
            try:
                deadline = monotonic() + settings.http_deadline
                data = fetch_source(source, settings, http, cache_dir)
                calendar = _looks_like_ics(source, data)
                if calendar:
                    found, status = parse_ics(
                        data,
                        source,
                        start,
                        end,
                        occurrence_limit=settings.event_occurrence_limit,
                        http_only_hosts=settings.http_only_hosts,
                        deadline=deadline,
                    )
                else:
                    found, status = parse_events_yaml(data, source, start, end)
            except SourceError as exc:
                if not is_remote(source) and not calendar:
                    raise
                statuses.append(SourceStatus(source=source, ok=False, message=str(exc)))
                continue
            for event in found:
                events.setdefault(event.id, event)
            statuses.append(status)
    return sorted(events.values(), key=event_order), statuses


def _looks_like_ics(source: str, data: bytes) -> bool:
    suffix = Path(urlparse(source).path if is_remote(source) else source).suffix.lower()
    if suffix in (".ics", ".ical", ".ifb", ".icalendar"):
        return True
    if suffix in (".yaml", ".yml"):
        return False
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper().startswith(b"BEGIN:VCALENDAR")
