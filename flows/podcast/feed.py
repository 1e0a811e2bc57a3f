"""The podcast RSS feed: built from `show.yaml` + the catalog, checked, then published.

Read top to bottom, like the spec it implements:

1. Pure helpers (text cleaning, URLs, dates, the podcast:guid) with doctests.
2. `build_feed`: RSS 2.0 + iTunes + Podcasting 2.0, built with lxml (escaping is lxml's).
3. The gates: `check_cover_art` (Pillow) and `check_feed` (feedparser, podcastparser, lxml).
4. I/O at the edge: `publish_feed(storage, ...)` and the thin Prefect flow `regenerate_feed`.

Decisions worth knowing:

- Determinism: the same show + catalog give the same bytes. `lastBuildDate` is the newest
  `publish_at`/`last_updated` of the episodes in the feed (a fixed date for an empty feed),
  never the wall clock, so an hourly run with nothing new uploads nothing. A change to
  show.yaml alone changes the bytes (and is uploaded) but not `lastBuildDate`.
- The public base URL: an explicitly set `public_url` setting (flag, flow parameter or
  `KRAFTSAMLING_PUBLIC_URL`) wins; else show.yaml's `public_base_url`; else the settings'
  default. See `resolve_public_url`. The feed lives at `<base>podcast/feed.xml`.
- Item guids come from the catalog and are never recomputed. `podcast:guid` is show.yaml's
  `podcast_guid` when set (so the show keeps its guid across a host move), else the UUIDv5
  of the feed URL (without scheme and trailing slash).
- The analytics prefix is put before the enclosure URL without its scheme
  (`https://prefix.example/e/` + `cdn.example/podcast/audio/x.mp3`), the convention of
  Podtrac/OP3-style redirect services.
- Cover art is content-addressed: `podcast/art/cover-<sha256[:8]>.<jpg|png>`, long cache.
- Descriptions: `description_html` from the catalog (sanitised by the podcast flow) in
  CDATA, else the plain `description` escaped into `<p>` paragraphs. `]]>` inside the
  HTML becomes `]]&gt;` (the same text for an HTML reader), so CDATA cannot be broken.
- Client parsers: podcastparser (gPodder) 0.6 knows the Podcasting 2.0 namespace only by
  its old GitHub URI, so it ignores our podcast:* tags (everything else it reads); we keep
  the official URI of the specification.
- Removal is lasting and lives in the catalog: `regenerate_feed(remove_guids=[...])`
  (`python -m flows feed --remove GUID`) first sets `removed_at` on those records and saves
  the catalog (If-Match, with a backup), then builds and publishes. Episodes with
  `removed_at` are never in the feed, and the shrink gate accepts the absence of guids that
  the catalog marks removed, so every later run (hourly, or after `publish_episodes`) passes
  without `--remove`. The records stay, so a guid is never reused. Unknown guids are
  refused before anything changes. A live guid that the catalog does not know at all (a
  catalog restored from an old backup) is still refused by the gate. A removal changes
  `lastBuildDate` to the removal time, so clients see that the feed changed.
- Audio objects are never deleted, neither of removed nor of replaced episodes: apps that
  cached the old enclosure URL keep working, and restoring a removal needs no re-upload.
"""

from __future__ import annotations

import hashlib
import html
import io
import logging
import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from lxml import etree

from flows.core.errors import FeedGateError, InputError
from flows.core.models import STOCKHOLM, Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, CACHE_SHORT, Storage
from flows.core.storage import public_url as storage_public_url
from flows.podcast.catalog import Catalog
from flows.podcast.inbox import read_regular

log = logging.getLogger(__name__)

FEED_KEY = "podcast/feed.xml"
ART_PREFIX = "podcast/art/"
FEED_CONTENT_TYPE = "application/rss+xml; charset=utf-8"
GENERATOR = "Kraftsamling Publishing"

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ATOM = "http://www.w3.org/2005/Atom"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
NSMAP = {"itunes": ITUNES, "podcast": PODCAST, "atom": ATOM, "content": CONTENT}

# Podcasting 2.0: podcast:guid is a UUIDv5 in this namespace of the feed URL.
PODCAST_GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
# lastBuildDate of a feed without episodes: fixed, so an empty feed is deterministic too.
EMPTY_FEED_DATE = datetime(2000, 1, 1, tzinfo=UTC)

COVER_MIN, COVER_MAX = 1400, 3000
COVER_FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png")}
TRANSCRIPT_TYPES = {
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".html": "text/html",
    ".txt": "text/plain",
}

# Qualified tag names, computed once (the builder runs per item, 10,000 times in the bench).
_IT = f"{{{ITUNES}}}"
_PC = f"{{{PODCAST}}}"
_IT_IMAGE, _IT_DURATION, _IT_EXPLICIT = _IT + "image", _IT + "duration", _IT + "explicit"
_IT_EPISODE, _IT_SEASON, _IT_TYPE = _IT + "episode", _IT + "season", _IT + "episodeType"
_PC_PERSON, _PC_TRANSCRIPT, _PC_CHAPTERS = _PC + "person", _PC + "transcript", _PC + "chapters"
_CONTENT_ENCODED = f"{{{CONTENT}}}encoded"
_ATOM_LINK = f"{{{ATOM}}}link"


# --- 1. pure helpers --------------------------------------------------------------------

# Everything outside XML 1.0's Char production (control characters, lone surrogates,
# U+FFFE/U+FFFF): lxml refuses such text, and a feed containing it is not XML.
# XML 1.0's forbidden characters, plus DEL and the C1 controls, which parsers misread as
# Windows-1252 letters.
_XML_FORBIDDEN = re.compile("[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(text: str) -> str:
    """Remove the characters XML 1.0 forbids.

    >>> clean_text("Ljud\\x00 & bild\\x1b")
    'Ljud & bild'
    """
    # Fast path: every character removed here is a control (Cc), a surrogate (Cs) or a
    # noncharacter (Cn), none of them printable; a printable text has nothing to remove.
    if text.isprintable():
        return text
    return _XML_FORBIDDEN.sub("", text)


def one_line(text: str) -> str:
    """Clean text for a one-line field (titles, names): whitespace runs become one space.

    >>> one_line("  Avsnitt 1:\\r\\n Öppna data ")
    'Avsnitt 1: Öppna data'
    """
    return " ".join(clean_text(text).split())


# URL-safe segments that do not start with "." (so no ".", "..", ".meta" or ".tmp-") pass
# `storage.check_key` and need no percent-encoding; anything else takes the full path.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*")


def object_url(base_url: str, key: str) -> str:
    """`storage.public_url`, with a fast path for plain keys (it runs several times per item).

    >>> object_url("https://cdn.example/", "podcast/audio/a-1.mp3")
    'https://cdn.example/podcast/audio/a-1.mp3'
    >>> object_url("https://cdn.example", "podcast/audio/å b.mp3")
    'https://cdn.example/podcast/audio/%C3%A5%20b.mp3'
    """
    if len(key) <= 1024 and _PLAIN_KEY.fullmatch(key):
        return base_url.rstrip("/") + "/" + key
    return storage_public_url(base_url, key)


def feed_url_for(base_url: str) -> str:
    """The public URL of the feed under a public base URL.

    >>> feed_url_for("https://cdn.example/")
    'https://cdn.example/podcast/feed.xml'
    """
    return object_url(base_url, FEED_KEY)


def podcast_guid(feed_url: str) -> str:
    """Podcasting 2.0 `podcast:guid`: UUIDv5 of the feed URL without scheme and trailing slash.

    >>> podcast_guid("https://mp3s.nashownotes.com/pc20rss.xml")
    '917393e3-1b1e-5cef-ace4-edaa54e1f810'
    """
    bare = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", feed_url).rstrip("/")
    return str(uuid.uuid5(PODCAST_GUID_NAMESPACE, bare))


def enclosure_url(base_url: str, key: str, analytics_prefix: str | None = None) -> str:
    """The absolute enclosure URL of an audio key, behind the analytics prefix if any.

    >>> enclosure_url("https://cdn.example/", "podcast/audio/a.mp3")
    'https://cdn.example/podcast/audio/a.mp3'
    >>> enclosure_url("https://cdn.example/", "podcast/audio/a.mp3", "https://op3.example/e/")
    'https://op3.example/e/cdn.example/podcast/audio/a.mp3'
    """
    url = object_url(base_url, key)
    if analytics_prefix:
        url = analytics_prefix.rstrip("/") + "/" + url.split("://", 1)[1]
    return url


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc2822(moment: datetime) -> str:
    """An RFC 2822 date in GMT, the form every podcast client reads.

    The same text as `email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)`
    (the tests compare them), formatted here directly: it runs once per item, and this skips
    format_datetime's time tuple and checks.

    >>> from zoneinfo import ZoneInfo
    >>> rfc2822(datetime(2026, 3, 5, 7, 0, tzinfo=ZoneInfo("Europe/Stockholm")))
    'Thu, 05 Mar 2026 06:00:00 GMT'
    """
    d = moment.astimezone(UTC)
    return (
        f"{_WEEKDAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month]} {d.year:04d} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} GMT"
    )


def cover_art_key(data: bytes, extension: str) -> str:
    """The content-addressed storage key of the cover art.

    >>> cover_art_key(b"abc", "jpg")
    'podcast/art/cover-ba7816bf.jpg'
    """
    return f"{ART_PREFIX}cover-{hashlib.sha256(data).hexdigest()[:8]}.{extension}"


def description_html(episode: Episode) -> str:
    """The item's description as HTML that is safe to put in CDATA.

    >>> description_html(_example_episode(description="A & B\\n\\nrad\\x00 två ]]> slut"))
    '<p>A &amp; B</p><p>rad två ]]&gt; slut</p>'
    """
    return clean_text(_description_body(episode))


def _description_body(episode: Episode) -> str:
    """`description_html` before forbidden characters are removed (`_add_item` lets lxml's
    C check find them, which is much faster than a regex over every description)."""
    body = episode.description_html.strip()
    if not body:
        text = episode.description.strip() or episode.title
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        body = "".join(
            "<p>" + html.escape(p, quote=False).replace("\n", "<br>") + "</p>" for p in paragraphs
        )
    # "]]&gt;" reads as "]]>" in HTML text and attributes; CDATA can then never end early.
    # A parser turns CR into LF inside CDATA (which cannot escape it): do it here, so the
    # feed reads back exactly as written.
    return body.replace("]]>", "]]&gt;").replace("\r\n", "\n").replace("\r", "\n")


def transcript_type(episode: Episode) -> str:
    """The MIME type of the transcript: the catalog's, else from the file name."""
    if episode.transcript_type:
        return episode.transcript_type
    suffix = PurePosixPath(episode.transcript_key or "").suffix.lower()
    return TRANSCRIPT_TYPES.get(suffix, "text/plain")


def feed_episodes(episodes: Iterable[Episode], now: datetime) -> list[Episode]:
    """The episodes whose time has come and that nobody removed, newest first (ties broken
    by guid, for stable bytes)."""
    due = [e for e in episodes if e.publish_at <= now and e.removed_at is None]
    due.sort(key=lambda e: (e.publish_at, e.guid), reverse=True)
    return due


def last_build_date(items: Sequence[Episode], removed: Iterable[Episode] = ()) -> datetime:
    """When the feed's content last changed, from the data alone (never the clock).

    `items` are the episodes in the feed; `removed` may hold any catalog episodes: the
    removal of one that was in the feed (published before its removal) counts as a change.
    """
    moments = [max(e.publish_at, e.last_updated) for e in items]
    moments += [
        e.removed_at for e in removed if e.removed_at is not None and e.publish_at <= e.removed_at
    ]
    return max(moments, default=EMPTY_FEED_DATE)


def resolve_public_url(show: Show, settings: Settings) -> str:
    """The public base URL (with a trailing slash) for links in the feed.

    An explicitly set `public_url` setting wins (flag, parameter, environment); otherwise
    show.yaml's `public_base_url`; otherwise the settings' default.
    """
    if "public_url" in settings.model_fields_set or not show.public_base_url:
        return settings.public_url
    base = show.public_base_url
    return base if base.endswith("/") else base + "/"


# --- 2. the builder ---------------------------------------------------------------------


def build_feed(
    show: Show,
    episodes: list[Episode],
    *,
    public_url: str,
    now: datetime,
    analytics_prefix: str | None = None,
    feed_url: str | None = None,
    cover_key: str | None = None,
) -> bytes:
    """The feed's bytes: RSS 2.0, UTF-8, newest first, scheduled and removed episodes left out.

    `public_url` is the base URL of the storage's public objects. `cover_key` is the
    uploaded cover art's key (see `cover_art_key`); without it the image is assumed at
    `podcast/art/<file name of show.image>`. Pure: the same inputs give the same bytes.
    """
    base = public_url
    feed_url = feed_url or feed_url_for(base)
    items = feed_episodes(episodes, now)
    c = clean_text
    sub = etree.SubElement

    rss = etree.Element("rss", nsmap=NSMAP)
    rss.set("version", "2.0")
    channel = sub(rss, "channel")

    def text(parent: etree._Element, tag: str, value: str) -> etree._Element:
        element = sub(parent, tag)
        element.text = c(value)
        return element

    text(channel, "title", one_line(show.title))
    text(channel, "link", show.website)
    text(channel, "description", show.description)
    text(channel, "language", show.language)
    text(channel, "copyright", show.copyright or f"© {show.author}")
    gone = [e for e in episodes if e.removed_at is not None and e.removed_at <= now]
    text(channel, "lastBuildDate", rfc2822(last_build_date(items, gone)))
    text(channel, "generator", GENERATOR)
    sub(channel, _ATOM_LINK, {"href": c(feed_url), "rel": "self", "type": "application/rss+xml"})
    text(channel, _IT + "author", show.author)
    owner = sub(channel, _IT + "owner")
    text(owner, _IT + "name", show.owner_name)
    text(owner, _IT + "email", show.owner_email)
    cover = cover_key or ART_PREFIX + PurePosixPath(show.image).name
    sub(channel, _IT_IMAGE, {"href": c(object_url(base, cover))})
    category = sub(channel, _IT + "category", {"text": c(show.category)})
    if show.subcategory:
        sub(category, _IT + "category", {"text": c(show.subcategory)})
    text(channel, _IT_EXPLICIT, "true" if show.explicit else "false")
    text(channel, _IT + "type", show.type)
    if show.new_feed_url:
        text(channel, _IT + "new-feed-url", show.new_feed_url)
    if show.block:
        text(channel, _IT + "block", "Yes")
    if show.complete:
        text(channel, _IT + "complete", "Yes")
    text(channel, _PC + "guid", show.podcast_guid or podcast_guid(feed_url))
    locked = text(channel, _PC + "locked", "yes" if show.locked else "no")
    locked.set("owner", c(show.owner_email))
    text(channel, _PC + "medium", show.medium)
    if show.funding_url:
        funding = text(channel, _PC + "funding", show.funding_text or show.title)
        funding.set("url", c(show.funding_url))
    hosts = [one_line(name) for name in show.hosts]
    for name in hosts:
        sub(channel, _PC_PERSON, role="host").text = name

    template = _item_template(hosts)
    urls = _Urls.for_feed(base, analytics_prefix)
    for episode in items:
        _add_item(channel, template, episode, urls, show.language)

    return etree.tostring(rss, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _item_template(hosts: Sequence[str]) -> etree._Element:
    """The fixed part of every <item>, built once per feed; `_add_item` copies and fills it.

    Copying one small tree in C is about twice as fast as a dozen SubElement calls per
    item. The show's hosts are the same in every item, so they are part of the template.
    """
    channel = etree.SubElement(etree.Element("rss", nsmap=NSMAP), "channel")
    item = etree.SubElement(channel, "item")
    for tag in _TEMPLATE_TAGS:
        etree.SubElement(item, tag)
    item[_GUID].set("isPermaLink", "false")
    for name in hosts:
        etree.SubElement(item, _PC_PERSON, role="host").text = name
    return item


def _guest_template() -> etree._Element:
    channel = etree.SubElement(etree.Element("rss", nsmap=NSMAP), "channel")
    return etree.SubElement(channel, _PC_PERSON, role="guest")


_TEMPLATE_TAGS = (
    "title",
    "description",
    _CONTENT_ENCODED,
    "guid",
    "pubDate",
    "enclosure",
    _IT_DURATION,
    _IT_EPISODE,
    _IT_SEASON,
    _IT_TYPE,
    _IT_EXPLICIT,
)
_GUID = _TEMPLATE_TAGS.index("guid")
_GUEST_TEMPLATE = _guest_template()


@dataclass(frozen=True)
class _Urls:
    """The cleaned URL prefixes of one feed, so a plain key (see `_PLAIN_KEY`) becomes a
    clean URL by one concatenation: `clean_text(object_url(base, key)) == objects + key`.

    Cleaning removes single characters, so cleaning the prefix is cleaning the whole URL.
    `enclosures` is None when the analytics prefix cannot be applied (the base has no
    scheme): `_add_item` then takes `enclosure_url`, which raises as it always did.
    """

    base: str
    analytics_prefix: str | None
    objects: str
    enclosures: str | None

    @classmethod
    def for_feed(cls, base: str, analytics_prefix: str | None) -> _Urls:
        # A probe key shows the prefix: a plain key cannot contain "://", so the
        # analytics prefix splits the URL inside the prefix, whatever the key.
        try:
            enclosures: str | None = clean_text(enclosure_url(base, "k", analytics_prefix)[:-1])
        except IndexError:
            enclosures = None
        return cls(base, analytics_prefix, clean_text(object_url(base, "k")[:-1]), enclosures)

    def object(self, key: str) -> str:
        if len(key) <= 1024 and _PLAIN_KEY.fullmatch(key):
            return self.objects + key
        return clean_text(storage_public_url(self.base, key))

    def enclosure(self, key: str) -> str:
        if self.enclosures is not None and len(key) <= 1024 and _PLAIN_KEY.fullmatch(key):
            return self.enclosures + key
        return clean_text(enclosure_url(self.base, key, self.analytics_prefix))


def _clean_body(body: str) -> etree.CDATA:
    """The description as CDATA without the characters XML 1.0 forbids, DEL or C1 controls.

    A regex over every description is the slowest part of an item, so look cheaply first:
    DEL is b"\\x7f" and every C1 control starts with b"\\xc2" in UTF-8, and both are found by
    a memchr-fast byte search; lone surrogates cannot be encoded; the other forbidden
    characters (C0 controls, U+FFFE/U+FFFF) make lxml raise ValueError.
    """
    if body.isascii():  # O(1): a flag of the string
        suspect = "\x7f" in body
    else:
        try:
            raw = body.encode()
        except UnicodeEncodeError:
            suspect = True
        else:
            suspect = b"\xc2" in raw or b"\x7f" in raw
    if suspect:
        body = clean_text(body)
    try:
        return etree.CDATA(body)
    except ValueError:
        return etree.CDATA(clean_text(body))


def _add_item(
    channel: etree._Element,
    template: etree._Element,
    episode: Episode,
    urls: _Urls,
    language: str,
) -> None:
    """Append one <item> (this runs once per episode, so it avoids per-call overhead)."""
    c = clean_text
    item = template.__deepcopy__(None)
    (title, desc, content, guid, pubdate, enclosure, duration, number, season, kind, explicit) = (
        item[:11]
    )
    title.text = one_line(episode.title)
    cdata = _clean_body(_description_body(episode))
    desc.text = cdata
    content.text = cdata
    guid.text = c(episode.guid)
    pubdate.text = rfc2822(episode.publish_at)
    enclosure.set("url", urls.enclosure(episode.audio_key))
    enclosure.set("length", str(episode.size))
    enclosure.set("type", c(episode.mime_type))
    duration.text = str(episode.duration)
    if episode.season is None:
        item.remove(season)
    else:
        season.text = str(episode.season)
    if episode.episode is None:
        item.remove(number)
    else:
        number.text = str(episode.episode)
    kind.text = episode.episode_type
    explicit.text = "true" if episode.explicit else "false"

    if episode.image_key:
        etree.SubElement(item, _IT_IMAGE, href=urls.object(episode.image_key))
    if episode.transcript_key:
        etree.SubElement(
            item,
            _PC_TRANSCRIPT,
            url=urls.object(episode.transcript_key),
            type=c(transcript_type(episode)),
            language=language,
        )
    if episode.chapters_key:
        etree.SubElement(
            item,
            _PC_CHAPTERS,
            url=urls.object(episode.chapters_key),
            type="application/json+chapters",
        )
    for name in episode.guests:
        guest = _GUEST_TEMPLATE.__deepcopy__(None)
        guest.text = one_line(name)
        item.append(guest)
    channel.append(item)


# --- 3. the gates -----------------------------------------------------------------------


def check_cover_art(data: bytes, source: str) -> None:
    """Refuse cover art podcast apps reject: square, 1400-3000 px, JPEG or PNG, RGB."""
    from PIL import Image, UnidentifiedImageError

    fix = f"Export it as a {COVER_MAX}x{COVER_MAX} px RGB JPEG or PNG and run again."
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            fmt, (width, height), mode = image.format, image.size, image.mode
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise InputError(
            f"{source}: the cover art is not a readable image ({exc}). {fix}"
        ) from None
    problems = []
    if fmt not in COVER_FORMATS:
        problems.append(f"its format is {fmt}, but podcast apps need JPEG or PNG")
    if width != height:
        problems.append(f"it is {width}x{height} px, not square (crop it to a square)")
    if not (COVER_MIN <= width <= COVER_MAX and COVER_MIN <= height <= COVER_MAX):
        problems.append(
            f"it is {width}x{height} px, but each side must be {COVER_MIN}-{COVER_MAX} px"
        )
    if mode != "RGB":
        problems.append(f"its colour mode is {mode}, but Apple requires RGB (convert it to RGB)")
    if problems:
        raise InputError(f"{source}: the cover art is refused: {'; '.join(problems)}. {fix}")


def _cover_format(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.format or ""


# Apple's required and recommended channel tags (paths relative to <channel>), and the
# attribute each must carry when it is an attribute-only element.
APPLE_CHANNEL_TAGS: tuple[tuple[str, str | None], ...] = (
    ("title", None),
    ("link", None),
    ("description", None),
    ("language", None),
    ("itunes:author", None),
    ("itunes:image", "href"),
    ("itunes:category", "text"),
    ("itunes:explicit", None),
    ("itunes:owner/itunes:email", None),
)
APPLE_ITEM_TAGS: tuple[tuple[str, str | None], ...] = (
    ("title", None),
    ("guid", None),
    ("pubDate", None),
    ("enclosure", "url"),
    ("enclosure", "length"),
    ("enclosure", "type"),
    ("itunes:duration", None),
)
_GATE_NS = {"itunes": ITUNES, "podcast": PODCAST}


def _missing_tags(
    element: etree._Element, tags: Iterable[tuple[str, str | None]], where: str
) -> list[str]:
    problems = []
    for path, attribute in tags:
        found = element.find(path, _GATE_NS)
        if found is None:
            problems.append(f"{where} has no <{path}>")
        elif attribute is not None and not (found.get(attribute) or "").strip():
            problems.append(f"{where} <{path}> has no {attribute}")
        elif attribute is None and not (found.text or "").strip():
            problems.append(f"{where} <{path}> is empty")
    return problems


def _guids_of(xml: bytes) -> dict[str, str]:
    """guid -> title of every item of a feed (for the shrink gate)."""
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    return {
        (item.findtext("guid") or "").strip(): (item.findtext("title") or "").strip()
        for item in root.iterfind("channel/item")
    }


def check_feed(
    new_xml: bytes,
    *,
    live_xml: bytes | None,
    episodes: Sequence[Episode],
    remove_guids: Iterable[str] = (),
    catalog_guids: Collection[str] | None = None,
) -> list[str]:
    """The problems that keep a new feed from being published (an empty list: publish it).

    `episodes` are the ones the feed should contain (published, not removed). Checks: both
    client parsers read it cleanly and see every item; the Apple tags are present; every
    item has a guid, an absolute enclosure with a positive length and a duration; guids
    and enclosure URLs are unique; no guid of the live feed is lost unless it is in
    `remove_guids` (`publish_feed` passes the guids the catalog marks removed).
    `catalog_guids`, all guids of the catalog, only sharpens the message: a lost guid the
    catalog does not know at all points at an old or damaged catalog, not at a removal.
    """
    import feedparser
    import podcastparser

    problems: list[str] = []
    try:
        root = etree.fromstring(new_xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return [f"the new feed is not well-formed XML: {exc}"]
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        return ["the new feed is not RSS 2.0 (no <rss><channel>)"]
    items = channel.findall("item")

    parsed = feedparser.parse(io.BytesIO(new_xml))
    if parsed.bozo:
        problems.append(f"feedparser cannot read it cleanly: {parsed.bozo_exception}")
    elif len(parsed.entries) != len(items):
        problems.append(f"feedparser sees {len(parsed.entries)} of {len(items)} items")
    try:
        gpodder = podcastparser.parse(FEED_KEY, io.BytesIO(new_xml))
    except podcastparser.FeedParseError as exc:
        problems.append(f"podcastparser (gPodder) cannot read it: {exc}")
    else:
        if len(gpodder["episodes"]) != len(items):
            problems.append(f"podcastparser sees {len(gpodder['episodes'])} of {len(items)} items")

    problems += _missing_tags(channel, APPLE_CHANNEL_TAGS, "the channel")
    seen_guids: dict[str, int] = {}
    seen_urls: dict[str, int] = {}
    for number, item in enumerate(items, start=1):
        guid = (item.findtext("guid") or "").strip()
        where = f"item {number} ({guid or item.findtext('title') or 'untitled'})"
        problems += _missing_tags(item, APPLE_ITEM_TAGS, where)
        enclosure = item.find("enclosure")
        url = enclosure.get("url", "") if enclosure is not None else ""
        length = enclosure.get("length", "") if enclosure is not None else ""
        duration = (item.findtext(_IT_DURATION) or "").strip()
        if url and not url.startswith(("https://", "http://")):
            problems.append(f"{where} enclosure URL {url!r} is not absolute")
        if length and not (length.isdigit() and int(length) > 0):
            problems.append(f"{where} enclosure length {length!r} is not a positive byte count")
        if duration and not (duration.isdigit() and int(duration) > 0):
            problems.append(f"{where} duration {duration!r} is not a positive whole second count")
        if guid and guid in seen_guids:
            problems.append(f"{where} repeats the guid of item {seen_guids[guid]}")
        if url and url in seen_urls:
            problems.append(f"{where} repeats the enclosure URL of item {seen_urls[url]}")
        seen_guids.setdefault(guid, number)
        seen_urls.setdefault(url, number)

    expected = {episode.guid for episode in episodes}
    if set(seen_guids) != expected:
        lost = sorted(expected - set(seen_guids))
        extra = sorted(set(seen_guids) - expected)
        problems.append(f"the items do not match the catalog (missing {lost}, unexpected {extra})")

    if live_xml:
        try:
            live = _guids_of(live_xml)
        except etree.XMLSyntaxError as exc:
            # A broken live feed must be replaceable; there is nothing to compare with.
            log.warning("The live feed is not XML (%s); skipping the shrink check.", exc)
            live = {}
        allowed = set(remove_guids)
        lost = [guid for guid in live if guid not in seen_guids and guid not in allowed]
        unknown = [g for g in lost if catalog_guids is not None and g not in catalog_guids]
        known = [g for g in lost if g not in unknown]

        def named(guids: list[str]) -> str:
            more = f" and {len(guids) - 5} more" if len(guids) > 5 else ""
            return ", ".join(f"{guid} ({live[guid]!r})" for guid in guids[:5]) + more

        if unknown:
            problems.append(
                f"the new feed would drop {len(unknown)} episode(s) of the live feed that the "
                f"catalog does not have at all: {named(unknown)}. The catalog may have been "
                "restored from an old backup or edited by hand: restore the newest copy from "
                "podcast/catalog-backups/ (or publish those episodes again) and run again"
            )
        if known:
            problems.append(
                f"the new feed would drop {len(known)} episode(s) that the live feed has: "
                f"{named(known)}. If they should leave the feed for good, remove them: "
                f"python -m flows feed --remove {' '.join(known[:5])}; if their publish_at "
                "was moved to the future by mistake, fix it and publish them again"
            )
    return problems


# --- 4. publishing (I/O) ----------------------------------------------------------------


@dataclass(frozen=True)
class FeedResult:
    """What one feed run did."""

    feed_url: str
    items: int  # episodes in the feed
    scheduled: int  # in the catalog, publish_at still in the future
    uploaded: bool  # False when the feed was unchanged
    cover_url: str
    cover_uploaded: bool = False
    removed: tuple[str, ...] = field(default_factory=tuple)  # removed for good by this run
    already_removed: tuple[str, ...] = field(default_factory=tuple)  # named, but removed before

    def summary(self) -> str:
        """One line for the terminal and the Prefect artifact."""
        state = "uploaded" if self.uploaded else "unchanged, nothing uploaded"
        parts = [f"Feed {self.feed_url}: {self.items} episode(s), {state}"]
        if self.scheduled:
            parts.append(f"{self.scheduled} scheduled, not yet published")
        if self.removed:
            parts.append(
                f"removed for good on request (kept in the catalog): {', '.join(self.removed)}"
            )
        if self.already_removed:
            parts.append(
                f"already removed before, nothing to do: {', '.join(self.already_removed)}"
            )
        if self.cover_uploaded:
            parts.append(f"cover art uploaded to {self.cover_url}")
        return "; ".join(parts) + "."


def _publish_cover_art(storage: Storage, path: Path) -> tuple[str, bool]:
    """Check the cover art and upload it under its content hash if it is not there yet."""
    try:
        data = read_regular(path, path.parent)  # never through a link (the drop folder rule)
    except FileNotFoundError:
        raise InputError(
            f"{path}: the cover art named in show.yaml is missing. Put it there or fix 'image'."
        ) from None
    check_cover_art(data, str(path))
    extension, content_type = COVER_FORMATS[_cover_format(data)]
    key = cover_art_key(data, extension)
    if storage.head(key) is not None:
        return key, False
    storage.put_bytes(key, data, content_type=content_type, cache_control=CACHE_LONG, public=True)
    return key, True


def _check_audio(storage: Storage, episodes: Sequence[Episode], workers: int) -> list[str]:
    """Every enclosure must exist in storage with the size the feed will announce."""

    def problem(episode: Episode) -> str | None:
        info = storage.head(episode.audio_key)
        if info is None:
            return (
                f"{episode.slug} ({episode.guid}): audio {episode.audio_key} is missing from "
                "storage, so the feed would point at a 404. Publish the episode again, or "
                f"remove it from the feed for good with --remove {episode.guid}"
            )
        if info.size != episode.size:
            return (
                f"{episode.slug} ({episode.guid}): audio {episode.audio_key} is {info.size} "
                f"bytes in storage but {episode.size} in the catalog. Publish the episode again"
            )
        return None

    if not episodes:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(episodes)))) as pool:
        return [p for p in pool.map(problem, episodes) if p]


def publish_feed(
    storage: Storage,
    show: Show,
    show_dir: Path,
    catalog: Catalog,
    settings: Settings,
    now: datetime,
) -> FeedResult:
    """Build the feed from the catalog and upload it if it changed and passes the gate.

    Episodes the catalog marks removed are left out, and the gate accepts their absence
    (removing is `remove_episodes`' job, see `regenerate_feed`). Nothing is ever deleted
    from storage. Raises InputError for bad cover art and FeedGateError (nothing uploaded,
    the live feed untouched) when an enclosure is missing or the gate refuses the feed.
    """
    base = resolve_public_url(show, settings)
    feed_url = feed_url_for(base)
    cover_key, cover_uploaded = _publish_cover_art(storage, Path(show_dir) / show.image)

    removed = {e.guid for e in catalog.episodes if e.removed_at is not None}
    included = feed_episodes(catalog.episodes, now)
    scheduled = sum(1 for e in catalog.episodes if e.publish_at > now and e.removed_at is None)
    missing = _check_audio(storage, included, settings.upload_concurrency)
    if missing:
        raise FeedGateError(f"The feed {feed_url} was not published: " + "; ".join(missing) + ".")

    xml = build_feed(
        show,
        catalog.episodes,  # all of them: removed ones count for lastBuildDate
        public_url=base,
        now=now,
        analytics_prefix=settings.analytics_prefix,
        feed_url=feed_url,
        cover_key=cover_key,
    )
    result = FeedResult(
        feed_url=feed_url,
        items=len(included),
        scheduled=scheduled,
        uploaded=False,
        cover_url=object_url(base, cover_key),
        cover_uploaded=cover_uploaded,
    )
    live = storage.get_bytes(FEED_KEY)
    if live is not None and live[0] == xml:
        return result

    problems = check_feed(
        xml,
        live_xml=live[0] if live else None,
        episodes=included,
        remove_guids=removed,
        catalog_guids={e.guid for e in catalog.episodes},
    )
    if problems:
        raise FeedGateError(
            f"The feed {feed_url} was not published (the live feed is unchanged): "
            + "; ".join(problems)
            + "."
        )
    # One put, conditional on the live feed we compared with: a concurrent run makes this
    # fail (ConcurrentWriteError) instead of overwriting a feed our gate never saw.
    storage.put_bytes(
        FEED_KEY,
        xml,
        content_type=FEED_CONTENT_TYPE,
        cache_control=CACHE_SHORT,
        public=True,
        if_match=live[1] if live else None,
        if_none_match=live is None,
    )
    return replace(result, uploaded=True)


def _example_episode(**changes: Any) -> Episode:
    """A small valid episode for doctests and tests."""
    moment = datetime(2026, 3, 5, 7, 0, tzinfo=STOCKHOLM)
    values: dict[str, Any] = {
        "guid": "3f1c2a4e-0000-4000-8000-000000000001",
        "slug": "exempel",
        "title": "Exempel",
        "publish_at": moment,
        "duration": 60,
        "size": 1000,
        "mime_type": "audio/mpeg",
        "sha256": "0" * 64,
        "audio_key": "podcast/audio/exempel-00000000.mp3",
        "first_published": moment,
        "last_updated": moment,
    }
    values.update(changes)
    return Episode(**values)
