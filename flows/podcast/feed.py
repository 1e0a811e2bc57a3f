"""The podcast RSS feed as bytes: built from `show.yaml` + the catalog, pure (no I/O).

Read top to bottom, like the spec it implements:

1. Pure helpers (text cleaning, URLs, dates, the podcast:guid) with doctests.
2. `build_feed`: RSS 2.0 + iTunes + Podcasting 2.0, built with lxml (escaping is lxml's);
   the items, most of a feed's bytes, by `flows.podcast.feeditems`.

The gate that checks a feed before it goes out is `flows.podcast.feedgate`; reading the
catalog and the live feed and uploading is `flows.podcast.feedpublish`.

Decisions worth knowing:

- Determinism: the same show + catalog give the same bytes. `lastBuildDate` is the newest
  `publish_at`/`last_updated` of the episodes in the feed (a fixed date for an empty feed),
  never the wall clock, so an hourly run with nothing new uploads nothing. A change to
  show.yaml alone changes the bytes (and is uploaded) but not `lastBuildDate`.
- The public base URL: an explicitly set `public_url` setting (flag, flow parameter or
  `KRAFTSAMLING_PUBLIC_URL`) wins; else show.yaml's `public_base_url`; else the settings'
  default. See `resolve_public_url`. The feed lives at `<base>podcast/feed.xml`; every link
  is `flows.core.storage.public_url` of a key under that base.
- The channel's `<link>` (and its image's) is the show's web page `podcast/index.html` and
  each item's `<link>` its episode page `podcast/episodes/<slug>.html` (`flows.web`,
  published beside the feed): a listener without an app lands where the episodes play.
  show.yaml's `website` (a page on the programme's site) is linked from the show page.
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
- Removed episodes (`removed_at` set in the catalog) are never in the feed; a removal
  changes `lastBuildDate` to the removal time, so clients see that the feed changed.
"""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import PurePosixPath
from typing import Any

from lxml import etree

from flows.core.models import STOCKHOLM, Episode, Show
from flows.core.settings import Settings
from flows.core.storage import is_plain_key, public_url
from flows.core.text import clean_text, one_line
from flows.web.keys import SHOW_PAGE_KEY

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
_FEED_END = b"  </channel>\n</rss>\n"  # how a pretty-printed feed ends (items go before it)
# lastBuildDate of a feed without episodes: fixed, so an empty feed is deterministic too.
EMPTY_FEED_DATE = datetime(2000, 1, 1, tzinfo=UTC)
TRANSCRIPT_TYPES = {
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".html": "text/html",
    ".txt": "text/plain",
}

# Qualified tag names of the channel (the items' are in flows.podcast.feeditems).
_IT = f"{{{ITUNES}}}"
_PC = f"{{{PODCAST}}}"
_IT_IMAGE, _IT_EXPLICIT, _PC_PERSON = _IT + "image", _IT + "explicit", _PC + "person"
_ATOM_LINK = f"{{{ATOM}}}link"


# --- 1. pure helpers --------------------------------------------------------------------


def feed_url_for(base_url: str) -> str:
    """The public URL of the feed under a public base URL.

    >>> feed_url_for("https://cdn.example/")
    'https://cdn.example/podcast/feed.xml'
    """
    return public_url(base_url, FEED_KEY)


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
    url = public_url(base_url, key)
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
    # Two stable sorts, not one on (time, guid): a tuple compares its times twice, and the
    # times of a loaded catalog compare slowly (each asks its time zone for the offset).
    due.sort(key=attrgetter("guid"), reverse=True)
    due.sort(key=attrgetter("publish_at"), reverse=True)
    return due


def last_build_date(items: Sequence[Episode], removed: Iterable[Episode] = ()) -> datetime:
    """When the feed's content last changed, from the data alone (never the clock).

    `items` are the episodes in the feed; `removed` may hold any catalog episodes: the
    removal of one that was in the feed (published before its removal) counts as a change.
    """
    moments = [
        e.removed_at for e in removed if e.removed_at is not None and e.publish_at <= e.removed_at
    ]
    if items:  # the newest of each field, each found in one pass in C
        moments.append(max(map(attrgetter("publish_at"), items)))
        moments.append(max(map(attrgetter("last_updated"), items)))
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
    kept: Mapping[str, etree._Element] | None = None,
    hub: str | None = None,  # a WebSub hub, named beside the self link (see announce)
) -> bytes:
    """The feed's bytes: RSS 2.0, UTF-8, newest first, scheduled and removed episodes left out.

    `public_url` is the base URL of the storage's public objects. `cover_key` is the
    uploaded cover art's key (see `cover_art_key`); without it the image is assumed at
    `podcast/art/<file name of show.image>`. `kept` maps a guid to an `<item>` of the live
    feed that goes in as it is instead of one built from the record (an episode already
    live whose record cannot make an item keeps its last good one, see
    `flows.podcast.feedpublish`). Pure: the same inputs give the same bytes.
    """
    base = public_url  # the parameter; links go through `urls` (storage.public_url)
    urls = _Urls.for_feed(base, analytics_prefix)
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
    text(channel, "link", urls.object(SHOW_PAGE_KEY))  # the show's web page (flows.web)
    text(channel, "description", show.description)
    text(channel, "language", show.language)
    text(channel, "copyright", show.copyright or f"© {show.author}")
    text(channel, "pubDate", rfc2822(items[0].publish_at if items else EMPTY_FEED_DATE))
    gone = [e for e in episodes if e.removed_at is not None and e.removed_at <= now]
    text(channel, "lastBuildDate", rfc2822(last_build_date(items, gone)))
    text(channel, "generator", GENERATOR)
    cover = urls.object(cover_key or ART_PREFIX + PurePosixPath(show.image).name)
    image = sub(channel, "image")
    sub(image, "url").text = cover
    text(image, "title", one_line(show.title))
    text(image, "link", urls.object(SHOW_PAGE_KEY))  # RSS: where the channel links
    sub(channel, _ATOM_LINK, {"href": c(feed_url), "rel": "self", "type": "application/rss+xml"})
    if hub:
        sub(channel, _ATOM_LINK, {"href": c(hub), "rel": "hub"})
    text(channel, _IT + "author", show.author)
    owner = sub(channel, _IT + "owner")
    text(owner, _IT + "name", show.owner_name)
    text(owner, _IT + "email", show.owner_email)
    sub(channel, _IT_IMAGE, {"href": cover})
    category = sub(channel, _IT + "category", {"text": c(show.category)})
    if show.subcategory:
        sub(category, _IT + "category", {"text": c(show.subcategory)})
    text(channel, _IT_EXPLICIT, "true" if show.explicit else "false")
    text(channel, _IT + "type", show.type)
    _optional_channel_tags(channel, show, feed_url)
    hosts = [one_line(name) for name in show.hosts]
    for name in hosts:
        sub(channel, _PC_PERSON, role="host").text = name

    # feeditems builds on this module's helpers, so it is imported here, not at the top.
    from flows.podcast.feeditems import write_items

    author, language = c(show.author), show.language
    pieces = write_items(
        items, kept or {}, hosts=hosts, author=author, urls=urls, language=language
    )

    # The channel is pretty-printed without its items; they go before its end tag.
    head = etree.tostring(rss, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return b"".join([memoryview(head)[: -len(_FEED_END)], *pieces, _FEED_END])


def _optional_channel_tags(channel: etree._Element, show: Show, feed_url: str) -> None:
    """The iTunes flags a show may set, then the Podcasting 2.0 channel tags."""

    def text(tag: str, value: str) -> etree._Element:
        element = etree.SubElement(channel, tag)
        element.text = clean_text(value)
        return element

    if show.new_feed_url:
        text(_IT + "new-feed-url", show.new_feed_url)
    if show.block:
        text(_IT + "block", "Yes")
    if show.complete:
        text(_IT + "complete", "Yes")
    text(_PC + "guid", show.podcast_guid or podcast_guid(feed_url))
    locked = text(_PC + "locked", "yes" if show.locked else "no")
    locked.set("owner", clean_text(show.owner_email))
    text(_PC + "medium", show.medium)
    if show.funding_url:
        funding = text(_PC + "funding", show.funding_text or show.title)
        funding.set("url", clean_text(show.funding_url))


@dataclass(frozen=True)
class _Urls:
    """The cleaned URL prefixes of one feed, so a plain key (`storage.is_plain_key`) becomes
    a clean URL by one concatenation: `clean_text(public_url(base, key)) == objects + key`.

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
        return cls(base, analytics_prefix, clean_text(public_url(base, "k")[:-1]), enclosures)

    def object(self, key: str) -> str:
        if is_plain_key(key):
            return self.objects + key
        return clean_text(public_url(self.base, key))

    def enclosure(self, key: str) -> str:
        if self.enclosures is not None and is_plain_key(key):
            return self.enclosures + key
        return clean_text(enclosure_url(self.base, key, self.analytics_prefix))


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
