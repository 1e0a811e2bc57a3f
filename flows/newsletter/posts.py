"""Read the newsletter's posts: RSS 2.0 / Atom feeds, parsed to `Post` records.

`parse_posts` is pure (bytes in, posts out); `read_posts` fetches every feed
(`flows.core.fetch`) and records a failing one as not ok, so the others are still used.
The text policy, the link check and the shared HTTP client are in `sources`.

- id: the entry's id/guid, else its link. Title and summary are plain text. A field the feed
  marks as plain text is kept as it is ("<Juridik> & teknik" stays so: escaped in the HTML,
  verbatim in the text part); a field marked as HTML is sanitised with nh3 (script, style,
  iframe... dropped with their content) and reduced to text (tags removed, entities
  unescaped, whitespace collapsed). The summary is shortened at a word boundary to about
  `SUMMARY_CHARS` characters, ending in "…".
- Entries without a publication date (published, else updated) or without an absolute
  http(s) link are skipped and counted in `SourceStatus.skipped`.
- With `since` (the issue's window start), entries published before it are usable but not
  needed: they are counted in `SourceStatus.old` (and in `items`, the feed's usable entries)
  and not read further - no sanitising, image or deadline search, no Post. Most of a big
  feed is such history, and that per-entry work was about half of the read's CPU time.
- link and image: http is upgraded to https, or kept (links) and dropped (images) for a
  host in `http_only_hosts`; other schemes never get in. Each change is listed in
  `SourceStatus.links` (and so in the manifest). The image is found by `postimages`.
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
"""

from __future__ import annotations

import calendar
import io
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import feedparser
import httpx
import yaml
from babel.dates import get_month_names

from flows.core.errors import InputError, SettingsError, SourceError
from flows.core.fetch import fetch_source, is_remote
from flows.core.models import STOCKHOLM, Post, PostKind, SourceStatus
from flows.core.settings import Settings
from flows.core.text import one_line
from flows.core.urls import safe_url
from flows.newsletter.postimages import absolute_url, find_image
from flows.newsletter.sources import (
    YamlLoader,
    html_to_text,
    is_http,
    shared_client,
    shorten,
)

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

# WordPress tails on summaries: "[…]" and "The post ... appeared first on ...".
_WP_MORE = re.compile(r"(?:\s*(?:\[(?:…|\.\.\.)\]|…|\.\.\.))+\s*$")
_WP_APPEARED = re.compile(
    r"\s*(?:The post|Inlägget) .{1,300}? (?:appeared first on|dök först upp på) .{1,200}?\.?\s*$"
)


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


def _compose_yaml(text: str, what: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=YamlLoader)
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
    http_only_hosts: Collection[str] = (),
) -> tuple[list[Post], SourceStatus]:
    """Parse a feed's bytes into posts and report how it went (never raises on bad feeds).

    With `since` (timezone-aware), entries published before it are counted, not returned.
    Links and images are made https (`flows.core.urls`); each change is listed in the
    status's `links`.
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
    base = source if is_remote(source) else (feed_link if is_http(feed_link) else "")
    posts: list[Post] = []
    notes: list[str] = []
    skipped = old = 0
    for number, entry in enumerate(parsed.entries, start=1):
        published, link, problem = _entry_date_and_link(entry, base)
        if published is None:
            skipped += 1
            title = entry_text(entry, "title") or f"entry {number}"
            warnings.append(f"skipped {title!r}: {problem}")
        elif since is not None and published < since:
            old += 1  # before the window: select_issue would drop it, so skip the costly part
        else:
            safe = safe_url(link, http_only_hosts)
            post, image_note = _entry_to_post(
                entry, source, base, kind_map, published, safe.url, http_only_hosts
            )
            notes += [note for note in (safe.note("link"), image_note) if note]
            posts.append(post)

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
            links=tuple(notes),
        )
    return [], _unusable(source, len(parsed.entries), reason, skipped, warnings)


def _unusable(
    source: str, entries: int, reason: str, skipped: int, warnings: list[str]
) -> SourceStatus:
    """The status of a feed that gave nothing usable, saying why in words an editor acts on."""
    if entries == 1:
        message = (
            "the feed's only entry could not be used (it lacks a date or a link). Check the "
            "feed in a feed validator."
        )
    elif entries:
        message = (
            f"none of the {entries} entries could be used (each lacks a date or "
            f"a link). Check the feed in a feed validator."
        )
    else:
        message = (
            f"not a usable RSS/Atom feed ({reason or 'no RSS or Atom feed found'}). Check that "
            f"the URL or path points at the feed itself, not a web page."
        )
    return SourceStatus(
        source=source, ok=False, skipped=skipped, message=message, warnings=tuple(warnings)
    )


def _bozo_reason(exc: BaseException | None) -> str:
    """feedparser's reason for calling a feed malformed, with the line when it knows it."""
    if exc is None:
        return "malformed feed"
    if hasattr(exc, "getLineNumber") and hasattr(exc, "getMessage"):
        sax: Any = exc  # xml.sax's SAXParseException, which feedparser keeps
        return f"line {sax.getLineNumber()}, column {sax.getColumnNumber()}: {sax.getMessage()}"
    return f"{exc.__class__.__name__}: {exc}"


def _entry_date_and_link(entry: Mapping[str, Any], base: str) -> tuple[datetime | None, str, str]:
    """An entry's publication time (Stockholm) and absolute link, else None and the problem."""
    when = entry.get("published_parsed") or entry.get("updated_parsed")
    if not when:
        return None, "", "no publication date"
    link = absolute_url(entry.get("link", ""), base)
    if not link:
        return None, "", "no absolute http(s) link"
    # feedparser normalises every date to UTC.
    return datetime.fromtimestamp(calendar.timegm(when), UTC).astimezone(STOCKHOLM), link, ""


def _entry_to_post(
    entry: Mapping[str, Any],
    source: str,
    base: str,
    kind_map: Mapping[str, PostKind],
    published: datetime,
    link: str,
    http_only_hosts: Collection[str],
) -> tuple[Post, str]:
    """The entry as a Post, and the manifest's note when its image had to be changed."""
    content = " ".join(c.get("value", "") for c in entry.get("content", []) or [])
    summary_html = entry.get("summary", "") or content
    summary_text = entry_text(entry, "summary") if entry.get("summary") else html_to_text(content)
    summary = shorten(_summary_text(summary_text))
    title = entry_text(entry, "title") or shorten(summary, 80) or link

    terms = (html_to_text(t.get("term") or t.get("label") or "") for t in entry.get("tags") or [])
    categories = tuple(dict.fromkeys(term for term in terms if term))  # unique, in feed order
    enclosures = entry.get("enclosures", []) or []
    kind = _entry_kind(entry, categories, enclosures, kind_map)

    image, image_alt, image_note = find_image(
        entry, enclosures, content, summary_html, base, http_only_hosts
    )
    day = published.date()
    content_text = html_to_text(content) if content != summary_html else ""
    deadline = _element_deadline(entry, day) or find_deadline(
        f"{title}\n{summary_text}\n{content_text}", day
    )
    post = Post(
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
    return post, image_note


def _entry_kind(
    entry: Mapping[str, Any],
    categories: tuple[str, ...],
    enclosures: list[Mapping[str, Any]],
    kind_map: Mapping[str, PostKind],
) -> PostKind:
    media = [e.get("type", "") for e in enclosures]
    if entry.get("yt_videoid"):  # a YouTube channel feed: every entry is a video
        media.append("video/youtube")
    return _infer_kind(categories, media, kind_map)


def entry_text(entry: Mapping[str, Any], name: str) -> str:
    """A text field of an entry as readers should see it: HTML reduced to text, plain text
    kept as it is (a "<Juridik>" in a plain-text title is words, not a tag).

    >>> entry_text({"title": "a<b och c>d", "title_detail": {"type": "text/plain"}}, "title")
    'a<b och c>d'
    >>> entry_text({"title": "<b>Fet</b> rubrik", "title_detail": {"type": "text/html"}}, "title")
    'Fet rubrik'
    """
    value = entry.get(name) or ""
    kind = (entry.get(f"{name}_detail") or {}).get("type") or "text/html"
    if kind in ("text/html", "application/xhtml+xml"):
        return html_to_text(value)
    return one_line(value)


# ---------------------------------------------------------------------------------------
# Reading feeds: fetch + parse, and what a failing feed means
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
    with shared_client(client, sources) as http:
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
        found, status = parse_posts(
            data, source, kind_map, since=since, http_only_hosts=settings.http_only_hosts
        )
        duplicates = 0
        for post in found:
            if post.id in posts:
                duplicates += 1
            else:
                posts[post.id] = post
        if duplicates:
            note = (
                "1 entry already read from an earlier source was left out"
                if duplicates == 1
                else f"{duplicates} entries already read from an earlier source were left out"
            )
            status = replace(
                status, items=status.items - duplicates, warnings=(*status.warnings, note)
            )
        if not status.ok and not status.message.startswith("Source"):
            status = replace(status, message=f"Source {source}: {status.message}")
        statuses.append(status)
    ordered = sorted(posts.values(), key=lambda p: (p.published, p.id), reverse=True)
    return ordered, statuses
