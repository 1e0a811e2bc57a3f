"""The feed's <item>s as bytes, for `flows.podcast.feed.build_feed` (pure, no I/O).

Building a tree of every item and pretty-printing the feed at once was most of a feed's
cost. Here a few reusable items (`_Slot`, copies of one template) sit in a small
rss > channel tree: they are filled with a chunk of episodes, lxml pretty-prints the chunk
in one call, and they are filled again for the next chunk. Escaping and layout stay lxml's,
at the depth items have in the feed, so the bytes are those of the whole feed
pretty-printed at once. An item kept from the live feed is pretty-printed the same way on
its own. `write_items` is the one entry.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lxml import etree

from flows.core.models import Episode
from flows.core.text import clean_text, one_line
from flows.podcast.feed import (
    _FEED_END,
    CONTENT,
    ITUNES,
    NSMAP,
    PODCAST,
    _description_body,
    rfc2822,
    transcript_type,
)
from flows.web.keys import episode_page_key

if TYPE_CHECKING:
    from flows.podcast.feed import _Urls

_IT, _PC = f"{{{ITUNES}}}", f"{{{PODCAST}}}"
_IT_IMAGE, _IT_DURATION, _IT_EXPLICIT = _IT + "image", _IT + "duration", _IT + "explicit"
_IT_EPISODE, _IT_SEASON, _IT_TYPE = _IT + "episode", _IT + "season", _IT + "episodeType"
_PC_PERSON, _PC_TRANSCRIPT, _PC_CHAPTERS = _PC + "person", _PC + "transcript", _PC + "chapters"
_CONTENT_ENCODED = f"{{{CONTENT}}}encoded"


def write_items(
    episodes: Sequence[Episode],
    kept: Mapping[str, etree._Element],
    *,
    hosts: Sequence[str],
    author: str,
    urls: _Urls,
    language: str,
) -> list[memoryview]:
    """The items of `episodes` in order, pretty-printed as inside the feed, in pieces (joined
    once, with the channel, by `build_feed`). `kept` maps a guid to a live <item> that goes
    in as it is; `hosts` and `author` are cleaned already."""
    return _ItemWriter(_item_template(hosts, author), urls, language).write(episodes, kept)


def _item_template(hosts: Sequence[str], author: str) -> etree._Element:
    """The fixed part of every <item>, built once per feed; each `_Slot` is a copy of it.

    The enclosure's attributes are there already, so they keep their order when each item
    sets them. The show's author and hosts are the same in every item, so they are part of
    the template.
    """
    channel = etree.SubElement(etree.Element("rss", nsmap=NSMAP), "channel")
    item = etree.SubElement(channel, "item")
    for tag in _TEMPLATE_TAGS:
        etree.SubElement(item, tag)
    item[_GUID].set("isPermaLink", "false")
    for name in ("url", "length", "type"):
        item[_ENCLOSURE].set(name, "")
    etree.SubElement(item, _IT + "author").text = author
    for name in hosts:
        etree.SubElement(item, _PC_PERSON, role="host").text = name
    return item


def _guest_template() -> etree._Element:
    channel = etree.SubElement(etree.Element("rss", nsmap=NSMAP), "channel")
    return etree.SubElement(channel, _PC_PERSON, role="guest")


_TEMPLATE_TAGS = (
    "title",
    "link",  # the episode's web page (flows.web)
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
_ENCLOSURE = _TEMPLATE_TAGS.index("enclosure")
_GUEST_TEMPLATE = _guest_template()
_CHUNK = 32  # items serialised per lxml call (see _ItemWriter)


def _clean_body(body: str) -> etree.CDATA:
    """The description as CDATA without the characters XML 1.0 forbids, DEL or C1 controls.

    A regex over every description is the slowest part of an item, so look cheaply first:
    DEL is b"\\x7f" and every C1 control starts with b"\\xc2" in UTF-8, and both are found by
    a memchr-fast byte search; lone surrogates cannot be encoded; the other forbidden
    characters (C0 controls, U+FFFE/U+FFFF) make lxml raise ValueError.
    """
    if body.isascii():  # O(1): a flag of the string
        suspect = "\x7f" in body
    elif len(body) < 256 and body.isprintable():  # for a short text, cheaper than encoding
        suspect = False
    else:
        try:
            raw = body.encode()
        except UnicodeEncodeError:
            suspect = True
        else:
            # find, not `in`: `in` tries the bytes as an int first and clears a TypeError
            suspect = raw.find(b"\xc2") >= 0 or raw.find(b"\x7f") >= 0
    if suspect:
        body = clean_text(body)
    try:
        return etree.CDATA(body)
    except ValueError:
        return etree.CDATA(clean_text(body))


# The audio type, episode type, explicit flag, whether there is an episode number and a season.
_Shape = tuple[str, str, bool, bool, bool]


class _Slot:
    """One reusable <item>: each episode's values are put in place, so an item costs the
    values it carries, not a new tree (see `_ItemWriter`)."""

    __slots__ = (
        "content",
        "desc",
        "duration",
        "enclosure",
        "explicit",
        "extras",
        "guid",
        "has_number",
        "has_season",
        "item",
        "kind",
        "link",
        "number",
        "pubdate",
        "season",
        "shape",
        "title",
    )

    def __init__(self, template: etree._Element) -> None:
        self.item = template.__deepcopy__(None)
        (
            self.title,
            self.link,
            self.desc,
            self.content,
            self.guid,
            self.pubdate,
            self.enclosure,
            self.duration,
            self.number,
            self.season,
            self.kind,
            self.explicit,
        ) = self.item[: len(_TEMPLATE_TAGS)]
        self.has_number = self.has_season = True
        self.extras = 0  # elements after the fixed ones (image, transcript, chapters, guests)
        self.shape: _Shape | None = None

    def fill(self, episode: Episode, urls: _Urls, language: str) -> None:
        """Put one episode's values in place (this runs once per episode)."""
        self.title.text = one_line(episode.title)
        self.link.text = urls.object(episode_page_key(episode.slug))
        cdata = _clean_body(_description_body(episode))
        self.desc.text = cdata
        self.content.text = cdata
        self.guid.text = clean_text(episode.guid)
        self.pubdate.text = rfc2822(episode.publish_at)
        enclosure = self.enclosure
        enclosure.set("url", urls.enclosure(episode.audio_key))
        enclosure.set("length", str(episode.size))
        self.duration.text = str(episode.duration)
        number, season = episode.episode, episode.season
        if number is not None:
            self.number.text = str(number)
        if season is not None:
            self.season.text = str(season)
        shape = (
            episode.mime_type,
            episode.episode_type,
            episode.explicit,
            number is not None,
            season is not None,
        )
        if shape != self.shape:  # most items have the shape of the one before
            self._reshape(shape)
        optional = episode.image_key or episode.transcript_key or episode.chapters_key
        if self.extras or optional or episode.guests:
            self._extras(episode, urls, language)

    def _reshape(self, shape: _Shape) -> None:
        """The values that most items share, and which of itunes:episode and itunes:season
        the item has."""
        self.shape = shape
        mime_type, kind, explicit, has_number, has_season = shape
        self.enclosure.set("type", clean_text(mime_type))
        self.kind.text = kind
        self.explicit.text = "true" if explicit else "false"
        if has_number != self.has_number:
            self.has_number = has_number
            if has_number:
                self.duration.addnext(self.number)
            else:
                self.item.remove(self.number)
        if has_season != self.has_season:
            self.has_season = has_season
            if has_season:
                (self.number if has_number else self.duration).addnext(self.season)
            else:
                self.item.remove(self.season)

    def _extras(self, episode: Episode, urls: _Urls, language: str) -> None:
        """The elements only some episodes have, after the fixed ones (most have none)."""
        item = self.item
        if self.extras:
            del item[-self.extras :]
            self.extras = 0
        optional = episode.image_key or episode.transcript_key or episode.chapters_key
        if not (optional or episode.guests):
            return
        before = len(item)
        if episode.image_key:
            etree.SubElement(item, _IT_IMAGE, href=urls.object(episode.image_key))
        if episode.transcript_key:
            etree.SubElement(
                item,
                _PC_TRANSCRIPT,
                url=urls.object(episode.transcript_key),
                type=clean_text(transcript_type(episode)),
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
        self.extras = len(item) - before


class _ItemWriter:
    """Reusable items in a small rss > channel tree, pretty-printed `_CHUNK` at a time."""

    def __init__(self, template: etree._Element, urls: _Urls, language: str) -> None:
        self.template, self.urls, self.language = template, urls, language
        self.channel = etree.SubElement(etree.Element("rss", nsmap=NSMAP), "channel")

    def write(
        self, episodes: Sequence[Episode], kept: Mapping[str, etree._Element]
    ) -> list[memoryview]:
        """The items' bytes, in pieces (joined once, with the channel, by `build_feed`)."""
        slots = [_Slot(self.template) for _ in range(min(_CHUNK, len(episodes)))]
        self.channel.extend(slot.item for slot in slots)
        urls, language = self.urls, self.language
        pieces: list[memoryview] = []
        used = 0  # slots filled since the last piece
        for episode in episodes:
            last_good = kept.get(episode.guid)
            if last_good is not None:
                if used:
                    pieces.append(self._filled(slots, used))
                pieces.append(_kept_item(last_good))
                used = 0
                continue
            slots[used].fill(episode, urls, language)
            used += 1
            if used == _CHUNK:
                pieces.append(_items_of(self.channel))
                used = 0
        if used:
            pieces.append(self._filled(slots, used))
        return pieces

    def _filled(self, slots: list[_Slot], used: int) -> memoryview:
        """The first `used` slots' bytes (the others are set aside meanwhile)."""
        spare = [slot.item for slot in slots[used:]]
        for item in spare:
            self.channel.remove(item)
        piece = _items_of(self.channel)
        self.channel.extend(spare)
        return piece


def _kept_item(item: etree._Element) -> memoryview:
    """An item of the live feed, pretty-printed as in the feed."""
    channel = etree.SubElement(etree.Element("rss", nsmap=NSMAP), "channel")
    last_good = copy.deepcopy(item)
    last_good.tail = None
    channel.append(last_good)
    return _items_of(channel)


def _items_of(channel: etree._Element) -> memoryview:
    """The channel's items, pretty-printed as they are inside the feed (a view: no copy)."""
    data = etree.tostring(channel.getparent(), encoding="UTF-8", pretty_print=True)
    start = data.index(b"<channel>\n") + len(b"<channel>\n")
    return memoryview(data)[start : -len(_FEED_END)]
