"""The gate before a feed goes out: cover art podcast apps accept, and a feed they can read.

- `check_cover_art(data, source)`: Pillow reads the header; square, 1400-3000 px, JPEG or PNG,
  RGB without transparency (what Apple Podcasts demands). A refusal is an `InputError`, a
  note in Swedish and English naming the file, each problem, the fix and an example. A
  publish run checks it first, before any upload (`flows.podcast.show.read_show_files`).
- `check_feed(new_xml, live_xml=..., episodes=...)`: the new feed is read by real client
  parsers (feedparser, podcastparser) and lxml; it must carry Apple's required tags, every
  item a guid, an absolute enclosure with a byte length and a duration; and it must not lose
  a guid of the live feed that nobody removed (the shrink gate). It returns the problems
  (an empty list: publish), each naming the item and the fix.

Client parsers: podcastparser (gPodder) 0.6 knows the Podcasting 2.0 namespace only by its old
GitHub URI, so it ignores our podcast:* tags (everything else it reads); we keep the official
URI of the specification.

Pure: bytes in, problems out. `flows.podcast.feedpublish` runs the gate before it uploads.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Collection, Iterable, Sequence

from lxml import etree

from flows.core.errors import InputError
from flows.core.models import Episode
from flows.core.schema import Problem, Text, note
from flows.podcast.feed import FEED_KEY, ITUNES, PODCAST

log = logging.getLogger(__name__)

COVER_MIN, COVER_MAX = 1400, 3000
COVER_FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png")}


_COVER_EXAMPLE = f"cover.jpg: {COVER_MAX}x{COVER_MAX} px, RGB, JPEG"


def _cover_fix(sv: str, en: str) -> Text:
    """A fix for the cover art, ending in what podcast apps accept."""
    return (
        f"{sv}, exportera den som en RGB-JPEG eller -PNG på {COVER_MAX}x{COVER_MAX} px och kör "
        "igen",
        f"{en}, export it as a {COVER_MAX}x{COVER_MAX} px RGB JPEG or PNG and run again",
    )


def check_cover_art(data: bytes, source: str) -> None:
    """Refuse cover art podcast apps reject: square, 1400-3000 px, JPEG or PNG, RGB, opaque.

    The InputError is a note in Swedish and English (`flows.core.schema.note`): one line per
    problem and language, each with the fix and an example.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            fmt, (width, height), mode = image.format, image.size, image.mode
            transparent = "transparency" in image.info  # a PNG's tRNS chunk
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        what = (f"omslagsbilden går inte att läsa som bild ({exc})",
                f"the cover art is not a readable image ({exc})")  # fmt: skip
        fix = _cover_fix("Öppna den i ett bildprogram", "Open it in an image editor")
        raise InputError(note(source, [Problem((), None, what, fix, _COVER_EXAMPLE)])) from None
    found = _cover_problems(fmt or "", width, height, mode, transparent)
    if found:
        raise InputError(note(source, [Problem((), None, *p, _COVER_EXAMPLE) for p in found]))


def _cover_problems(
    fmt: str, width: int, height: int, mode: str, transparent: bool
) -> list[tuple[Text, Text]]:
    """(what, fix) of each thing podcast apps refuse in cover art with these properties."""
    size = f"{width}x{height} px"
    found: list[tuple[Text, Text]] = []
    if fmt not in COVER_FORMATS:
        found.append((
            (f"omslagsbildens format är {fmt}, men poddappar kräver JPEG eller PNG",
             f"the cover art's format is {fmt}, but podcast apps need JPEG or PNG"),
            _cover_fix("Spara den i ett annat format", "Save it in another format"),
        ))  # fmt: skip
    if width != height:
        found.append((
            (f"omslagsbilden är {size}, inte kvadratisk", f"the cover art is {size}, not square"),
            _cover_fix("Beskär den till en kvadrat", "Crop it to a square"),
        ))  # fmt: skip
    if not (COVER_MIN <= width <= COVER_MAX and COVER_MIN <= height <= COVER_MAX):
        small = min(width, height) < COVER_MIN
        found.append((
            (f"omslagsbilden är {size}, men varje sida ska vara {COVER_MIN}-{COVER_MAX} px",
             f"the cover art is {size}, but each side must be {COVER_MIN}-{COVER_MAX} px"),
            _cover_fix("Gör den större från originalet", "Make it larger from the original")
            if small else _cover_fix("Skala ned den", "Scale it down"),
        ))  # fmt: skip
    if mode != "RGB":
        found.append((
            (f"omslagsbildens färgläge är {mode}, men Apple kräver RGB",
             f"the cover art's colour mode is {mode}, but Apple requires RGB"),
            _cover_fix("Konvertera den till RGB i bildprogrammet",
                       "Convert it to RGB in an image editor"),
        ))  # fmt: skip
    elif transparent:
        found.append((
            ("omslagsbilden har en genomskinlig färg, men Apple kräver att inget är genomskinligt",
             "the cover art has a transparent colour, but Apple requires no transparency"),
            _cover_fix("Ta bort genomskinligheten", "Remove the transparency"),
        ))  # fmt: skip
    return found


def cover_format(data: bytes) -> str:
    """Pillow's name for the image format ("JPEG", "PNG", ...), for `COVER_FORMATS`."""
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
    try:
        channel = _rss_channel(new_xml)
    except _NotRss as exc:
        return [str(exc)]
    items = channel.findall("item")
    guids = _item_guids(items)
    return [
        *_client_parser_problems(new_xml, len(items)),
        *_missing_tags(channel, APPLE_CHANNEL_TAGS, "the channel"),
        *_items_problems(items),
        *_catalog_match_problems(guids, episodes),
        *_shrink_problems(live_xml, guids, remove_guids, catalog_guids),
    ]


class _NotRss(Exception):
    """The new feed is not well-formed RSS 2.0; its message is the one problem to report."""


def _rss_channel(new_xml: bytes) -> etree._Element:
    """The <channel> of the new feed, or `_NotRss` when it is not XML or not RSS 2.0."""
    try:
        root = etree.fromstring(new_xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise _NotRss(f"the new feed is not well-formed XML: {exc}") from None
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise _NotRss("the new feed is not RSS 2.0 (no <rss><channel>)")
    return channel


def _item_guids(items: Sequence[etree._Element]) -> dict[str, int]:
    """guid -> number of the first item carrying it (an item without a guid counts as "")."""
    guids: dict[str, int] = {}
    for number, item in enumerate(items, start=1):
        guids.setdefault((item.findtext("guid") or "").strip(), number)
    return guids


def _client_parser_problems(new_xml: bytes, item_count: int) -> list[str]:
    """Both client parsers (feedparser, podcastparser) read the feed and see every item."""
    import feedparser
    import podcastparser

    problems: list[str] = []
    parsed = feedparser.parse(io.BytesIO(new_xml))
    if parsed.bozo:
        problems.append(f"feedparser cannot read it cleanly: {parsed.bozo_exception}")
    elif len(parsed.entries) != item_count:
        problems.append(f"feedparser sees {len(parsed.entries)} of {item_count} items")
    try:
        gpodder = podcastparser.parse(FEED_KEY, io.BytesIO(new_xml))
    except podcastparser.FeedParseError as exc:
        problems.append(f"podcastparser (gPodder) cannot read it: {exc}")
    else:
        if len(gpodder["episodes"]) != item_count:
            problems.append(f"podcastparser sees {len(gpodder['episodes'])} of {item_count} items")
    return problems


def _items_problems(items: Sequence[etree._Element]) -> list[str]:
    """Each item's own problems, then whether it repeats an earlier item's guid or URL."""
    problems: list[str] = []
    seen_guids: dict[str, int] = {}
    seen_urls: dict[str, int] = {}
    for number, item in enumerate(items, start=1):
        guid = (item.findtext("guid") or "").strip()
        where = f"item {number} ({guid or item.findtext('title') or 'untitled'})"
        url = _enclosure(item, "url")
        problems += _item_problems(item, where)
        if guid and guid in seen_guids:
            problems.append(f"{where} repeats the guid of item {seen_guids[guid]}")
        if url and url in seen_urls:
            problems.append(f"{where} repeats the enclosure URL of item {seen_urls[url]}")
        seen_guids.setdefault(guid, number)
        seen_urls.setdefault(url, number)
    return problems


def _enclosure(item: etree._Element, attribute: str) -> str:
    enclosure = item.find("enclosure")
    return enclosure.get(attribute, "") if enclosure is not None else ""


def _item_problems(item: etree._Element, where: str) -> list[str]:
    """Apple's item tags; an absolute enclosure URL, a positive length and duration."""
    problems = _missing_tags(item, APPLE_ITEM_TAGS, where)
    url = _enclosure(item, "url")
    length = _enclosure(item, "length")
    duration = (item.findtext("itunes:duration", namespaces=_GATE_NS) or "").strip()
    if url and not url.startswith(("https://", "http://")):
        problems.append(f"{where} enclosure URL {url!r} is not absolute")
    if length and not (length.isdigit() and int(length) > 0):
        problems.append(f"{where} enclosure length {length!r} is not a positive byte count")
    if duration and not (duration.isdigit() and int(duration) > 0):
        problems.append(f"{where} duration {duration!r} is not a positive whole second count")
    return problems


def _catalog_match_problems(guids: Collection[str], episodes: Sequence[Episode]) -> list[str]:
    """The feed carries exactly the episodes it should."""
    expected = {episode.guid for episode in episodes}
    if set(guids) == expected:
        return []
    lost = sorted(expected - set(guids))
    extra = sorted(set(guids) - expected)
    return [f"the items do not match the catalog (missing {lost}, unexpected {extra})"]


def _shrink_problems(
    live_xml: bytes | None,
    guids: Collection[str],
    remove_guids: Iterable[str],
    catalog_guids: Collection[str] | None,
) -> list[str]:
    """The shrink gate: no guid of the live feed is lost unless it is being removed."""
    if not live_xml:
        return []
    try:
        live = _guids_of(live_xml)
    except etree.XMLSyntaxError as exc:
        # A broken live feed must be replaceable; there is nothing to compare with.
        log.warning("The live feed is not XML (%s); skipping the shrink check.", exc)
        live = {}
    allowed = set(remove_guids)
    lost = [guid for guid in live if guid not in guids and guid not in allowed]
    unknown = [g for g in lost if catalog_guids is not None and g not in catalog_guids]
    known = [g for g in lost if g not in unknown]

    def named(dropped: list[str]) -> str:
        more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
        return ", ".join(f"{guid} ({live[guid]!r})" for guid in dropped[:5]) + more

    problems: list[str] = []
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
