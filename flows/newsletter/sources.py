"""Read the newsletter's inputs: posts (RSS 2.0 / Atom) and events (iCalendar, YAML).

Parsers are pure: bytes in, records out (`parse_posts`, `parse_ics`, `parse_events_yaml`).
Fetching lives in `flows.core.fetch`; `read_posts` and `read_events` join the two and decide what
a failing source means (recorded as not ok, or raised when a person must fix a local file).

Posts
-----
- id: the entry's id/guid, else its link. Title and summary are plain text: feed HTML is
  sanitised with nh3 (script, style, iframe... dropped with their content), reduced to text
  (tags removed, entities unescaped, whitespace collapsed) and the summary is shortened at a
  word boundary to about `SUMMARY_CHARS` characters, ending in "…".
- Entries without a publication date (published, else updated) or without an absolute
  http(s) link are skipped and counted in `SourceStatus.skipped`.
- With `since` (the issue's window start), entries published before it are usable but not
  needed: they are counted in `SourceStatus.old` (and in `items`, the feed's usable entries)
  and not read further - no sanitising, image or deadline search, no Post. Most of a big
  feed is such history, and that per-entry work was about half of the read's CPU time.
- image: media:content, media:thumbnail, an image enclosure, else the first <img> of the
  content or summary; absolute https URLs only. Its alt text is the img's alt, else the title.
- kind: the entry's categories/tags, lower-cased, looked up in the kind map. When several
  categories match, the most specific kind wins (funding > podcast > video > event > news >
  other). Without a specific category an audio enclosure means podcast (a video enclosure
  video); then a "news"/"other" category; an entry no category explains is "other".
- A funding call's deadline (`Post.deadline`, a date, for any kind of post) comes from, in
  order:
    1. an extension element named `deadline` in the entry, in any namespace, holding an ISO
       date or a Swedish date: `<ks:deadline xmlns:ks="https://kraftsamling.example/ns/1.0">
       2027-01-15</ks:deadline>`;
    2. a labelled date in the title, summary or content: a label - "Sista ansökningsdag(en)",
       "Sista dag att ansöka", "Ansök senast", "Deadline", "Last day to apply", "Apply by" -
       optionally followed by ":", "är", "den" or a weekday, then a date written
       `2027-01-15`, `15 januari 2027`, `15 jan. 2027`, `15/1 2027`, `15 January 2027` or
       `January 15, 2027`. The first such date that exists wins. A date without a year is
       the first such day on or after the entry's publication day.
- A malformed feed keeps what parsed; feedparser's reason goes into `SourceStatus.warnings`.
  The status is not ok only when nothing usable came back.

Events
------
- iCalendar: recurring events are expanded with recurring-ical-events (EXDATE,
  RECURRENCE-ID honoured); times are converted to Europe/Stockholm; floating times are read
  as Stockholm time. Cancelled, private and confidential events are skipped and counted.
- All-day events start at midnight Stockholm and `end` is the midnight after their last day
  (exclusive, as in iCalendar); a one-day event ends at the next midnight.
- Online: a URL in LOCATION, a CONFERENCE / X-GOOGLE-CONFERENCE / Teams property is the
  `online_url`; a LOCATION such as "Digitalt" or "Online" means online (the place is left
  empty and the URL property, else the first link in the description, is the join link).
  The URL property is always the event's page (`url`).
- id: UID + "/" + the occurrence's start (ISO, Stockholm).
- YAML events (a hand-edited list; see demo/events.yaml): title, start, end, all_day, place
  (or location), online_url, url, description, id. A date-only start means all day, and a
  date-only end is the last day (inclusive). Naive times are Europe/Stockholm; an end may be
  a time of day ("12:00") on the start day. Mistakes raise SourceError naming the file, the
  event number and title, and the line; an event with an unknown (misspelt) key is left out
  with a warning naming the key, the event and the line.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import html
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import feedparser
import httpx
import icalendar
import nh3
import recurring_ical_events
import yaml
from babel.dates import get_month_names

from flows.core.errors import InputError, SettingsError, SourceError
from flows.core.fetch import fetch_source, is_remote
from flows.core.models import STOCKHOLM, Event, Post, PostKind, SourceStatus
from flows.core.settings import Settings

__all__ = [
    "DEFAULT_KIND_MAP",
    "SUMMARY_CHARS",
    "fetch_source",
    "find_deadline",
    "html_to_text",
    "load_kind_map",
    "parse_events_yaml",
    "parse_ics",
    "parse_posts",
    "read_events",
    "read_posts",
    "safe_chars",
    "shorten",
]

SUMMARY_CHARS = 300
DESCRIPTION_CHARS = 300

DEFAULT_KIND_MAP: dict[str, PostKind] = {
    **dict.fromkeys(["nyheter", "nyhet", "news", "aktuellt", "pressmeddelande"], PostKind.NEWS),
    **dict.fromkeys(
        ["utlysning", "utlysningar", "finansiering", "funding", "bidrag", "call for proposals"],
        PostKind.FUNDING,
    ),
    **dict.fromkeys(
        ["podd", "podden", "podcast", "poddavsnitt", "digitalsamtal"], PostKind.PODCAST
    ),
    **dict.fromkeys(
        ["webbinarium", "webbinarier", "inspelning", "inspelningar", "video", "webinar"],
        PostKind.VIDEO,
    ),
    **dict.fromkeys(
        ["evenemang", "event", "events", "kalender", "konferens", "seminarium"], PostKind.EVENT
    ),
}

# Most specific first: a post tagged both "Nyheter" and "Utlysningar" is a funding call.
_KIND_PRIORITY = [
    PostKind.FUNDING,
    PostKind.PODCAST,
    PostKind.VIDEO,
    PostKind.EVENT,
    PostKind.NEWS,
    PostKind.OTHER,
]

# ---------------------------------------------------------------------------------------
# HTML to plain text
# ---------------------------------------------------------------------------------------

# Elements dropped together with their content; everything else keeps its text.
_DROP_WITH_CONTENT = {
    "script", "style", "iframe", "noscript", "object", "embed", "template", "svg", "math",
    "audio", "video", "canvas", "select", "textarea", "button", "form", "head", "title",
}  # fmt: skip
# Block elements kept through nh3 so their boundaries become spaces in the text.
_BLOCK_TAGS = {
    "p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
    "tr", "td", "th", "table", "dd", "dt", "hr", "figure", "figcaption", "pre", "section",
}  # fmt: skip
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_WP_MORE = re.compile(r"(?:\s*(?:\[(?:…|\.\.\.)\]|…|\.\.\.))+\s*$")
_WP_APPEARED = re.compile(
    r"\s*(?:The post|Inlägget) .{1,300}? (?:appeared first on|dök först upp på) .{1,200}?\.?\s*$"
)


# Characters no email or XML may carry: C0 controls other than tab/LF/CR, DEL, lone
# surrogates (from character references such as &#xD800; or YAML "\ud800" escapes) and the
# non-characters U+FFFE/U+FFFF. mjml-python and nh3 fail on them, so they never get past here.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def safe_chars(text: str) -> str:
    """Text without the characters that no email or XML may carry.

    >>> safe_chars("Ljud\\x00 och\\x1b bild\\ud800")
    'Ljud och bild'
    """
    return _UNSAFE_CHARS.sub("", text)


def html_to_text(value: str) -> str:
    """Sanitise feed HTML with nh3 and reduce it to one line of plain text.

    >>> html_to_text('<p>Hej &amp; <b onclick="x()">välkommen</b></p><script>bad()</script>')
    'Hej & välkommen'
    """
    if not value:
        return ""
    cleaned = nh3.clean(
        safe_chars(value), tags=_BLOCK_TAGS, attributes={}, clean_content_tags=_DROP_WITH_CONTENT
    )
    # nh3's output is well-formed (a "<" in text is escaped), so a regex can strip its tags.
    # Entities are unescaped after cleaning, so "&#1;" must be cleaned out once more.
    text = safe_chars(html.unescape(_TAG.sub(" ", cleaned)))
    return _SPACE.sub(" ", text.replace("\xa0", " ")).strip()


def shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    """Cut `text` at a word boundary so it is at most `limit` characters, ending in "…".

    >>> shorten("ett två tre fyra", 10)
    'ett två…'
    >>> shorten("kort", 10)
    'kort'
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word boundary not too far back; else cut inside a long word
        cut = cut[:space]
    return cut.rstrip(" ,;:–-([{\"'") + "…"


def _summary_text(text: str) -> str:
    """A summary's plain text without WordPress's "[…]" and "appeared first on" tails."""
    text = _WP_APPEARED.sub("", text)
    more = _WP_MORE.search(text)
    if more:
        text = text[: more.start()].rstrip()
        return text if text.endswith((".", "!", "?")) else text + "…"
    return text


# ---------------------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------------------


def load_kind_map(path: Path | None) -> dict[str, PostKind]:
    """The default category -> kind map, overridden by a user YAML file of `category: kind`."""
    mapping = dict(DEFAULT_KIND_MAP)
    if path is None:
        return mapping
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"Kind map {path}: cannot be read ({exc.strerror or exc}). Check the path given "
            f"as kind_map (KRAFTSAMLING_KIND_MAP)."
        ) from None
    except UnicodeDecodeError:
        raise InputError(f"Kind map {path}: is not UTF-8 text. Save it as UTF-8.") from None
    root = _compose_yaml(text, f"Kind map {path}")
    if root is None:
        return mapping
    allowed = ", ".join(kind.value for kind in PostKind)
    if not isinstance(root, yaml.MappingNode):
        raise InputError(
            f"Kind map {path}, line {root.start_mark.line + 1}: expected lines of "
            f"`category: kind` (kinds: {allowed})."
        )
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode) or not key_node.value.strip():
            raise InputError(f"Kind map {path}, line {line}: a category must be plain text.")
        kind_text = value_node.value if isinstance(value_node, yaml.ScalarNode) else ""
        try:
            kind = PostKind(str(kind_text).strip().lower())
        except ValueError:
            raise InputError(
                f"Kind map {path}, line {value_node.start_mark.line + 1}: {kind_text!r} for "
                f"category {key_node.value!r} is not a kind. Use one of: {allowed}."
            ) from None
        mapping[key_node.value.strip().lower()] = kind
    return mapping


# libyaml's loader when PyYAML was built with it: same nodes, marks and errors, ~5x faster.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_yaml(text: str, what: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark else ""
        raise InputError(f"{what}{where}: not valid YAML ({exc.problem}).") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{what}: not valid YAML ({exc}).") from None


def _infer_kind(
    categories: Iterable[str], enclosure_types: Iterable[str], kind_map: Mapping[str, PostKind]
) -> PostKind:
    kinds = {kind_map[c.lower()] for c in categories if c.lower() in kind_map}
    specific = [
        k for k in _KIND_PRIORITY if k in kinds and k not in (PostKind.NEWS, PostKind.OTHER)
    ]
    if specific:
        return specific[0]
    types = [t.lower() for t in enclosure_types]
    if any(t.startswith("audio/") for t in types):
        return PostKind.PODCAST
    if any(t.startswith("video/") for t in types):
        return PostKind.VIDEO
    return PostKind.NEWS if PostKind.NEWS in kinds else PostKind.OTHER


# ---------------------------------------------------------------------------------------
# Deadlines
# ---------------------------------------------------------------------------------------


def _month_words() -> dict[str, int]:
    words: dict[str, int] = {"sept": 9}
    for locale in ("sv", "en"):
        for width in ("wide", "abbreviated"):
            for number, name in get_month_names(width, locale=locale).items():
                words[name.lower().rstrip(".")] = number
    return words


_MONTHS = _month_words()
_LABEL = (
    r"(?:sista\s+ansökningsdag(?:en)?|sista\s+dag(?:en)?\s+(?:att|för\s+att)\s+ansöka"
    r"|ansök\s+senast|deadline|last\s+day\s+to\s+apply|apply\s+by)"
)
_DATE = (
    r"(?:(?P<iso>\d{4}-\d{1,2}-\d{1,2})"
    r"|(?P<day>\d{1,2})(?:\.|:e|:a|st|nd|rd|th)?\s+(?P<month>[^\W\d_]{3,9})\.?(?:\s+(?P<year>\d{4}))?"
    r"|(?P<nday>\d{1,2})/(?P<nmonth>\d{1,2})(?:[\s/]+(?P<nyear>\d{4}))?"
    r"|(?P<emonth>[^\W\d_]{3,9})\.?\s+(?P<eday>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<eyear>\d{4}))"
)
_DEADLINE = re.compile(
    _LABEL + r"\s*(?:[:–—-]|är|is)?\s*(?:den\s+|on\s+)?(?:[^\W\d_]+(?:dag|day)(?:en)?,?\s+)?"
    r"(?:den\s+)?" + _DATE,
    re.IGNORECASE,
)
_BARE_DATE = re.compile(r"^\s*(?:[^\W\d_]+(?:dag|day)(?:en)?,?\s+)?(?:den\s+)?" + _DATE, re.I)


def find_deadline(text: str, published: date) -> date | None:
    """The first labelled deadline in `text` (see the module docstring), else None.

    >>> find_deadline("Sista ansökningsdag: 15 januari 2027.", date(2026, 11, 2))
    datetime.date(2027, 1, 15)
    >>> find_deadline("Ansök senast den 3 mars", date(2026, 11, 2))
    datetime.date(2027, 3, 3)
    """
    for match in _DEADLINE.finditer(text):
        found = _date_from_match(match, published)
        if found is not None:
            return found
    return None


def _date_from_match(match: re.Match[str], published: date) -> date | None:
    groups = match.groupdict()
    try:
        if groups["iso"]:
            return date.fromisoformat(_zero_pad_iso(groups["iso"]))
        if groups["day"]:
            day, month, year = groups["day"], _MONTHS.get(groups["month"].lower()), groups["year"]
        elif groups["nday"]:
            day, month, year = groups["nday"], int(groups["nmonth"]), groups["nyear"]
        else:
            day, month, year = (
                groups["eday"],
                _MONTHS.get(groups["emonth"].lower()),
                groups["eyear"],
            )
        if month is None:
            return None
        if year:
            return date(int(year), month, int(day))
        found = date(published.year, month, int(day))
        return found if found >= published else date(published.year + 1, month, int(day))
    except ValueError:  # 31 februari and friends: not a date, look further
        return None


def _zero_pad_iso(value: str) -> str:
    year, month, day = value.split("-")
    return f"{year}-{int(month):02d}-{int(day):02d}"


def _element_deadline(entry: Mapping[str, Any], published: date) -> date | None:
    for key, value in entry.items():
        if (key == "deadline" or key.endswith("_deadline")) and isinstance(value, str):
            match = _BARE_DATE.match(html_to_text(value))
            if match:
                found = _date_from_match(match, published)
                if found is not None:
                    return found
    return None


# ---------------------------------------------------------------------------------------
# Posts
# ---------------------------------------------------------------------------------------


def parse_posts(
    data: bytes,
    source: str,
    kind_map: dict[str, PostKind],
    *,
    since: datetime | None = None,
) -> tuple[list[Post], SourceStatus]:
    """Parse a feed's bytes into posts and report how it went (never raises on bad feeds).

    With `since` (timezone-aware), entries published before it are counted, not returned.
    """
    if since is not None and since.tzinfo is None:
        raise SettingsError(f"'since' must be timezone-aware, got {since.isoformat()}.")
    # A stream, never a string or bytes: feedparser fetches URLs and opens paths it is given.
    parsed = feedparser.parse(io.BytesIO(data), sanitize_html=False, resolve_relative_uris=False)
    warnings: list[str] = []
    reason = ""
    if parsed.get("bozo"):
        reason = _bozo_reason(parsed.get("bozo_exception"))
        warnings.append(f"feed is not well-formed, used what parsed ({reason})")

    feed_link = parsed.feed.get("link", "")
    base = source if is_remote(source) else (feed_link if _is_http(feed_link) else "")
    posts: list[Post] = []
    skipped = old = 0
    for number, entry in enumerate(parsed.entries, start=1):
        published, link, problem = _entry_date_and_link(entry, base)
        if published is None:
            skipped += 1
            title = html_to_text(entry.get("title", "")) or f"entry {number}"
            warnings.append(f"skipped {title!r}: {problem}")
        elif since is not None and published < since:
            old += 1  # before the window: select_issue would drop it, so skip the costly part
        else:
            posts.append(_entry_to_post(entry, source, base, kind_map, published, link))

    # A well-formed feed with no entries is fine (nothing new); anything else that yields no
    # usable entry is a failure the manifest should show.
    empty_but_valid = bool(parsed.get("version")) and not parsed.entries and not reason
    if posts or old or empty_but_valid:
        return posts, SourceStatus(
            source=source,
            ok=True,
            items=len(posts) + old,
            skipped=skipped,
            warnings=tuple(warnings),
            old=old,
        )
    if parsed.entries:
        message = (
            f"none of the {len(parsed.entries)} entries could be used (each lacks a date or "
            f"a link). Check the feed in a feed validator."
        )
    else:
        message = (
            f"not a usable RSS/Atom feed ({reason or 'no RSS or Atom feed found'}). Check that "
            f"the URL or path points at the feed itself, not a web page."
        )
    status = SourceStatus(
        source=source, ok=False, skipped=skipped, message=message, warnings=tuple(warnings)
    )
    return [], status


def _bozo_reason(exc: BaseException | None) -> str:
    """feedparser's reason for calling a feed malformed, with the line when it knows it."""
    if exc is None:
        return "malformed feed"
    if hasattr(exc, "getLineNumber") and hasattr(exc, "getMessage"):
        return f"line {exc.getLineNumber()}, column {exc.getColumnNumber()}: {exc.getMessage()}"
    return f"{exc.__class__.__name__}: {exc}"


def _entry_date_and_link(entry: Mapping[str, Any], base: str) -> tuple[datetime | None, str, str]:
    """An entry's publication time (Stockholm) and absolute link, else None and the problem."""
    when = entry.get("published_parsed") or entry.get("updated_parsed")
    if not when:
        return None, "", "no publication date"
    link = _absolute(entry.get("link", ""), base)
    if not link:
        return None, "", "no absolute http(s) link"
    # feedparser normalises every date to UTC.
    return datetime(*when[:6], tzinfo=UTC).astimezone(STOCKHOLM), link, ""


def _entry_to_post(
    entry: Mapping[str, Any],
    source: str,
    base: str,
    kind_map: Mapping[str, PostKind],
    published: datetime,
    link: str,
) -> Post:
    content = " ".join(c.get("value", "") for c in entry.get("content", []) or [])
    summary_html = entry.get("summary", "") or content
    summary_text = html_to_text(summary_html)
    summary = shorten(_summary_text(summary_text))
    title = html_to_text(entry.get("title", "")) or shorten(summary, 80) or link

    terms = (html_to_text(t.get("term") or t.get("label") or "") for t in entry.get("tags") or [])
    categories = tuple(dict.fromkeys(term for term in terms if term))  # unique, in feed order
    enclosures = entry.get("enclosures", []) or []
    kind = _infer_kind(categories, [e.get("type", "") for e in enclosures], kind_map)

    image, image_alt = _find_image(entry, enclosures, content, summary_html, base)
    day = published.date()
    content_text = html_to_text(content) if content != summary_html else ""
    deadline = _element_deadline(entry, day) or find_deadline(
        f"{title}\n{summary_text}\n{content_text}", day
    )
    return Post(
        id=str(entry.get("id") or link).strip(),
        title=title,
        link=link,
        published=published,
        summary=summary,
        kind=kind,
        source=source,
        image=image,
        image_alt=(image_alt or title) if image else "",
        deadline=deadline,
        categories=categories,
    )


def _is_http(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def _absolute(url: str, base: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    joined = urljoin(base, url) if base else url
    return joined if _is_http(joined) else ""


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'([a-z]+)="([^"]*)"')
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|\?)", re.IGNORECASE)
# Tracking pixels and spacers that must never become a post's picture: known counters, and
# file or path names that say what they are.
_TRACKER = re.compile(
    r"feeds\.feedburner\.com/~r/|/~r/|stats\.wordpress\.com|pixel\.wp\.com"
    r"|/(?:pixel|beacon|tracking|tracker|track|open|1x1|spacer|blank|transparent)"
    r"(?:\.(?:gif|png|jpe?g|webp|php|aspx?))?(?:[/?#;]|$)",
    re.IGNORECASE,
)


def _is_pixel(url: str, width: Any = None, height: Any = None) -> bool:
    """A tracking pixel or spacer: declared 2 px or smaller, or a known tracker URL."""
    for size in (width, height):
        digits = re.match(r"\s*(\d+)", str(size or ""))
        if digits and int(digits.group(1)) <= 2:
            return True
    return bool(_TRACKER.search(url))


def _find_image(
    entry: Mapping[str, Any],
    enclosures: list[Mapping[str, Any]],
    content: str,
    summary_html: str,
    base: str,
) -> tuple[str | None, str]:
    candidates: list[tuple[str, str]] = []
    for media in entry.get("media_content", []) or []:
        kind = (media.get("medium") or media.get("type") or "").lower()
        url = media.get("url", "")
        if _is_pixel(url, media.get("width"), media.get("height")):
            continue
        if kind.startswith("image") or (not kind and _IMAGE_EXT.search(url)):
            candidates.append((url, ""))
    candidates += [
        (m.get("url", ""), "")
        for m in entry.get("media_thumbnail", []) or []
        if not _is_pixel(m.get("url", ""), m.get("width"), m.get("height"))
    ]
    candidates += [
        (e.get("href", ""), "")
        for e in enclosures
        if (e.get("type") or "").lower().startswith("image/") and not _is_pixel(e.get("href", ""))
    ]
    for fragment in (content, summary_html):
        cleaned = nh3.clean(
            safe_chars(fragment or ""),
            tags={"img"},
            attributes={"img": {"src", "alt", "width", "height"}},
            clean_content_tags=_DROP_WITH_CONTENT,
        )
        for tag in _IMG.findall(cleaned):
            attrs = {k: html.unescape(v) for k, v in _ATTR.findall(tag)}
            src = attrs.get("src", "")
            if _is_pixel(src, attrs.get("width"), attrs.get("height")):
                continue
            candidates.append((src, _SPACE.sub(" ", attrs.get("alt", "")).strip()))
    for url, alt in candidates:
        absolute = _absolute(url, base)
        if absolute.startswith("https://"):
            return absolute, alt
    return None, ""


# ---------------------------------------------------------------------------------------
# Events: iCalendar
# ---------------------------------------------------------------------------------------

_ONLINE_PLACE = re.compile(
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
    data: bytes, source: str, start: datetime, end: datetime
) -> tuple[list[Event], SourceStatus]:
    """Expand an iCalendar file's events that overlap [start, end) into occurrences."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise SourceError(_ics_message(source, str(exc), lines)) from None
    _check_components(calendar, source, lines)
    try:
        occurrences = recurring_ical_events.of(calendar).between(start, end)
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"Events source {source}: the calendar cannot be expanded "
            f"({exc.__class__.__name__}: {exc}). Check the event's DTSTART, RRULE and EXDATE."
        ) from None

    events: list[Event] = []
    skipped = 0
    warnings: list[str] = []
    for component in occurrences:
        title = html_to_text(str(component.get("SUMMARY", "")))
        why = _not_for_newsletter(component, title)
        if why:
            skipped += 1
            warnings.append(f"skipped {title or str(component.get('UID', '?'))!r}: {why}")
            continue
        events.append(_component_to_event(component, title, source))
    events.sort(key=_event_order)
    return events, SourceStatus(
        source=source, ok=True, items=len(events), skipped=skipped, warnings=tuple(warnings)
    )


def _not_for_newsletter(component: Any, title: str) -> str:
    """Why an occurrence must not be announced (empty when it may)."""
    if not title:
        return "no title (SUMMARY)"
    if str(component.get("STATUS", "")).upper() == "CANCELLED":
        return "cancelled"
    if str(component.get("CLASS", "")).upper() in _HIDDEN_CLASSES:
        return "private"
    return ""


def _component_to_event(component: Any, title: str, source: str) -> Event:
    raw_start = component["DTSTART"].dt
    all_day = not isinstance(raw_start, datetime)
    begin = _to_stockholm(raw_start)
    if "DTEND" in component:
        finish: datetime | None = _to_stockholm(component["DTEND"].dt)
    elif "DURATION" in component:
        finish = begin + component["DURATION"].dt
    else:
        finish = begin + timedelta(days=1) if all_day else None

    location = html_to_text(str(component.get("LOCATION", "")))
    description = html_to_text(str(component.get("DESCRIPTION", "")))
    online_url = _conference_url(component)
    url_prop = str(component.get("URL", "")).strip()
    page = url_prop if _is_http(url_prop) else None

    in_location = _URL.search(location)
    if in_location:
        online_url = online_url or in_location.group(0)
        location = location.replace(in_location.group(0), " ").strip(" ,;:-–/()")
    if location and _ONLINE_PLACE.match(location):
        location = ""
        if online_url is None:
            in_description = _URL.search(description)
            online_url = page or (in_description.group(0) if in_description else None)

    uid = str(component.get("UID", "")).strip() or _fallback_uid(source, title)
    return Event(
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


def _conference_url(component: Any) -> str | None:
    for name in _CONFERENCE_PROPS:
        values = component.get(name)
        for value in values if isinstance(values, list) else [values]:
            text = str(value or "").strip()
            if _is_http(text):
                return text
    return None


def _to_stockholm(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=STOCKHOLM)
    if value.tzinfo is None:  # a floating time: read as local time
        return value.replace(tzinfo=STOCKHOLM)
    return value.astimezone(STOCKHOLM)


def _fallback_uid(source: str, title: str) -> str:
    return "no-uid-" + hashlib.sha256(f"{source}\n{title}".encode()).hexdigest()[:16]


def _event_order(event: Event) -> tuple[datetime, str, str]:
    return (event.start, event.title, event.id)


def _check_components(calendar: Any, source: str, lines: list[str]) -> None:
    """icalendar parses leniently and keeps errors on components: turn them into one error."""
    for component in calendar.walk():
        for prop, problem in getattr(component, "errors", []) or []:
            raise SourceError(_ics_message(source, problem, lines, component, prop))
        if component.name == "VEVENT" and "DTSTART" not in component:
            raise SourceError(_ics_message(source, "the event has no DTSTART", lines, component))


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


# ---------------------------------------------------------------------------------------
# Events: YAML
# ---------------------------------------------------------------------------------------

_YAML_KEYS = {
    "id", "title", "start", "end", "all_day", "place", "location", "online_url", "url",
    "description",
}  # fmt: skip
_TIME_ONLY = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*$")


@dataclass
class _YamlItem:
    number: int
    line: int
    data: dict[str, Any]
    lines: dict[str, int]


def parse_events_yaml(
    data: bytes, source: str, start: datetime, end: datetime
) -> tuple[list[Event], SourceStatus]:
    """Read a hand-edited YAML list of events; keep those overlapping [start, end)."""
    items = _yaml_items(data, source)
    events: list[Event] = []
    problems: list[str] = []
    warnings: list[str] = []
    for item in items:
        # A misspelt key ("plats", "start_time") would be silently ignored: leave the event
        # out, say which key, keep the rest of the file.
        unknown = [str(k) for k in item.data if str(k) not in _YAML_KEYS]
        if unknown:
            warnings.append(_unknown_keys_warning(item, unknown, source))
            continue
        try:
            events.append(_yaml_event(item, source))
        except _YamlProblem as exc:
            problems.append(str(exc))
    if problems:
        shown = problems[:10]
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise SourceError(
            f"Events file {source} has mistakes{more}:\n  " + "\n  ".join(shown) + "\n"
            "Each event needs `title:` and `start:` (2026-12-10 for a whole day, or "
            "2026-12-10 10:00); see demo/events.yaml for an example."
        )
    kept = sorted((e for e in events if _overlaps(e, start, end)), key=_event_order)
    status = SourceStatus(
        source=source, ok=True, items=len(kept), skipped=len(warnings), warnings=tuple(warnings)
    )
    return kept, status


class _YamlProblem(Exception):
    pass


def _unknown_keys_warning(item: _YamlItem, unknown: list[str], source: str) -> str:
    """The warning for an event left out for keys the events file does not know."""
    title = item.data.get("title")
    label = f"event {item.number}" + (f" ({title!r})" if isinstance(title, str) else "")
    named = ", ".join(f"{key!r}{_did_you_mean(key)}" for key in unknown)
    return (
        f"line {item.lines.get(unknown[0], item.line)}: {label} was left out: unknown key "
        f"{named}. Allowed keys: {', '.join(sorted(_YAML_KEYS))}. Fix the key in {source}."
    )


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key.lower(), sorted(_YAML_KEYS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _yaml_items(data: bytes, source: str) -> list[_YamlItem]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"Events file {source}: is not UTF-8 text. Save it as UTF-8.") from None
    loader = _SafeLoader(text)
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
        key_lines = {str(k.value): v.start_mark.line + 1 for k, v in node.value}
        items.append(_YamlItem(number, line, value, key_lines))
    return items


def _yaml_event(item: _YamlItem, source: str) -> Event:
    data = item.data
    title = data.get("title")
    label = f"event {item.number}" + (f" ({title!r})" if isinstance(title, str) else "")

    def problem(key: str | None, message: str) -> _YamlProblem:
        line = item.lines.get(key, item.line) if key else item.line
        return _YamlProblem(f"line {line}: {label}: {message}")

    if isinstance(title, str):
        title = safe_chars(title)
    if not isinstance(title, str) or not title.strip():
        raise problem("title", "`title:` is missing or empty")
    if "start" not in data:
        raise problem(None, "`start:` is missing")

    begin_value = _yaml_when(data["start"])
    if begin_value is None:
        raise problem(
            "start", f"start {data['start']!r} is not a date or date and time "
            "(write 2026-12-10 or 2026-12-10 10:00)"
        )  # fmt: skip
    all_day_value = data.get("all_day", not isinstance(begin_value, datetime))
    if not isinstance(all_day_value, bool):
        raise problem("all_day", "`all_day:` must be true or false")
    if all_day_value and isinstance(begin_value, datetime):
        raise problem("all_day", "all_day is true but start has a time; drop the time or all_day")
    begin = _to_stockholm(begin_value)

    finish: datetime | None = None
    if data.get("end") is not None:
        end_value = _yaml_when(data["end"], begin_value)
        if end_value is None:
            raise problem(
                "end", f"end {data['end']!r} is not a date, a date and time, or a time (12:00)"
            )
        if all_day_value:
            if isinstance(end_value, datetime):
                raise problem("end", "an all-day event's end is a date (its last day)")
            finish = _to_stockholm(end_value + timedelta(days=1))  # the last day, inclusive
        else:
            if not isinstance(end_value, datetime):
                raise problem("end", "a timed event's end needs a time (e.g. 12:00)")
            finish = _to_stockholm(end_value)
        if finish < begin or (finish == begin and all_day_value):
            raise problem("end", "end is before start")
    elif all_day_value:
        finish = begin + timedelta(days=1)

    texts: dict[str, str] = {}
    for key in ("place", "location", "online_url", "url", "description", "id"):
        value = data.get(key)
        if value is not None and not isinstance(value, (str, int, float)):
            raise problem(key, f"`{key}:` must be text")
        # YAML escapes ("\x00", "\ud800") can carry characters no email may hold.
        texts[key] = "" if value is None else safe_chars(str(value)).strip()
    for key in ("online_url", "url"):
        if texts[key] and not _is_http(texts[key]):
            raise problem(key, f"{key} {texts[key]!r} must be a full http(s):// address")
    location = texts["place"] or texts["location"]
    online_url = texts["online_url"] or None
    if location and _ONLINE_PLACE.match(location):
        location = ""
        online_url = online_url or texts["url"] or None

    stable = texts["id"] or f"yaml:{_slug(title)}"
    return Event(
        id=f"{stable}/{begin.isoformat()}",
        title=title.strip(),
        start=begin,
        end=finish,
        all_day=all_day_value,
        source=source,
        location=location,
        online_url=online_url,
        url=texts["url"] or None,
        description=shorten(_SPACE.sub(" ", texts["description"]), DESCRIPTION_CHARS),
    )


def _yaml_when(value: Any, day: date | datetime | None = None) -> date | datetime | None:
    """A YAML date/datetime, an ISO string, or (with `day`) a time of day on that day."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    clock = _TIME_ONLY.match(text)
    if clock and day is not None:
        base = day.date() if isinstance(day, datetime) else day
        try:
            return datetime.combine(base, time(int(clock.group(1)), int(clock.group(2))))
        except ValueError:
            return None
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
# Reading sources: fetch + parse, and what a failure means
# ---------------------------------------------------------------------------------------


def read_posts(
    sources: list[str],
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    cache_dir: Path | None = None,
    since: datetime | None = None,
) -> tuple[list[Post], list[SourceStatus]]:
    """Fetch and parse every posts feed; a failing feed is recorded and the others used.

    With `since` (the issue's window start), older entries are counted, not returned
    (see `parse_posts`).
    """
    kind_map = load_kind_map(settings.kind_map)
    fetched: list[tuple[str, bytes | SourceError]] = []
    with _shared_client(client, sources) as http:
        for source in sources:
            try:
                fetched.append((source, fetch_source(source, settings, http, cache_dir)))
            except SourceError as exc:
                fetched.append((source, exc))

    posts: dict[str, Post] = {}
    statuses: list[SourceStatus] = []
    for source, data in fetched:
        if isinstance(data, SourceError):
            statuses.append(SourceStatus(source=source, ok=False, message=str(data)))
            continue
        found, status = parse_posts(data, source, kind_map, since=since)
        duplicates = 0
        for post in found:
            if post.id in posts:
                duplicates += 1
            else:
                posts[post.id] = post
        if duplicates:
            note = f"{duplicates} entries already read from an earlier source were left out"
            status = replace(
                status, items=status.items - duplicates, warnings=(*status.warnings, note)
            )
        if not status.ok and not status.message.startswith("Source"):
            status = replace(status, message=f"Source {source}: {status.message}")
        statuses.append(status)
    ordered = sorted(posts.values(), key=lambda p: (p.published, p.id), reverse=True)
    return ordered, statuses


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
    with _shared_client(client, sources) as http:
        for source in sources:
            try:
                data = fetch_source(source, settings, http, cache_dir)
                if _looks_like_ics(source, data):
                    found, status = parse_ics(data, source, start, end)
                else:
                    found, status = parse_events_yaml(data, source, start, end)
            except SourceError as exc:
                if not is_remote(source):
                    raise
                statuses.append(SourceStatus(source=source, ok=False, message=str(exc)))
                continue
            for event in found:
                events.setdefault(event.id, event)
            statuses.append(status)
    return sorted(events.values(), key=_event_order), statuses


def _shared_client(
    client: httpx.Client | None, sources: list[str]
) -> contextlib.AbstractContextManager[httpx.Client | None]:
    """The caller's client, else one client for all remote sources (set-up costs ~0.1 s)."""
    if client is not None or not any(is_remote(s) for s in sources):
        return contextlib.nullcontext(client)
    return httpx.Client(follow_redirects=True)


def _looks_like_ics(source: str, data: bytes) -> bool:
    suffix = Path(urlparse(source).path if is_remote(source) else source).suffix.lower()
    if suffix in (".ics", ".ical", ".ifb", ".icalendar"):
        return True
    if suffix in (".yaml", ".yml"):
        return False
    return data.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper().startswith(b"BEGIN:VCALENDAR")
