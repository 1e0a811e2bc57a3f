"""Rebuild a lost `podcast/catalog.json`: `python -m flows recover-catalog`.

The catalog is the truth about the feed and its guids. When it is gone, a run refuses to
start a new one (`catalog.refuse_a_fresh_catalog`); this rebuilds it from what storage
still holds, in order of trust:

1. **the newest catalog backup.** Every version written is also kept as the newest backup
   (`catalog.save_catalog`), so normally it *is* the lost catalog: every guid, date,
   enclosure, length, the scheduled episodes (not in the feed yet) and the removed ones
   (whose guids must never be given out again).
2. **the live feed.** An item whose guid the backup lacks, or whose enclosure points at
   other audio than the backup says (the audio was replaced after that backup), is taken
   from the feed: guid, title, description, date, enclosure, length, duration, numbers.
3. **the stored audio's tags.** Each episode's audio carries its guid (TGID in MP3, `egid`
   in M4A). Audio of a guid found in neither is an episode the feed does not show: with a
   date still to come it is scheduled; with a past date it is recorded as removed, so its
   guid is kept and nothing comes back into the feed that a person did not see there.
   Old audio of a replaced episode (its guid is known, its key is not the current one) is
   left as it is.

Nothing is deleted or uploaded but the new catalog, written only where none exists
(`If-None-Match`). What came from where, and what a person should check, is reported.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import mutagen
from lxml import etree

from flows.core.errors import CatalogError
from flows.core.models import Episode
from flows.core.storage import Storage
from flows.podcast.catalog import (
    CATALOG_KEY,
    Catalog,
    backup_keys,
    parse_catalog,
    save_catalog,
    sort_episodes,
)
from flows.podcast.episode import AUDIO_PREFIX
from flows.podcast.feed import FEED_KEY, ITUNES, PODCAST

_IT = f"{{{ITUNES}}}"
_PC = f"{{{PODCAST}}}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
_MIME = {".mp3": "audio/mpeg", ".m4a": "audio/mp4"}


@dataclass(frozen=True)
class Recovery:
    """A rebuilt catalog and how it was found."""

    episodes: list[Episode]
    backup: str | None  # the backup it started from
    sources: dict[str, str]  # guid -> where its record came from
    checks: list[str] = field(default_factory=list)  # what a person should look at

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for source in self.sources.values():
            kind = source.split(" ", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        parts = [f"{n} from the {kind}" for kind, n in sorted(counts.items())]
        scheduled = sum(1 for ep in self.episodes if ep.removed_at is None)
        removed = len(self.episodes) - scheduled
        lines = [
            f"{len(self.episodes)} episodes ({removed} removed): {', '.join(parts) or 'none'}."
        ]
        lines += [f"check: {line}" for line in self.checks]
        return "\n".join(lines)


def recover_catalog(storage: Storage, now: datetime) -> Recovery:
    """The catalog rebuilt from the newest backup, the live feed and the audio's tags.

    Raises CatalogError when a catalog exists (nothing to recover) or storage holds
    nothing to rebuild from."""
    where = f"{storage.describe()}/{CATALOG_KEY}"
    if storage.head(CATALOG_KEY) is not None:
        raise CatalogError(
            f"{where} exists: there is nothing to recover. To rebuild it anyway, move it "
            "aside (rename it) and run again."
        )
    found = _Found(storage)
    backup = found.add_backup()
    built = found.add_feed()
    found.add_audio(now, built or now)
    if not found.records:
        raise CatalogError(
            f"{storage.describe()} holds no catalog backup, feed or tagged audio: there is "
            "nothing to rebuild the catalog from."
        )
    return Recovery(
        sort_episodes(list(found.records.values())), backup, found.sources, found.checks
    )


@dataclass
class _Found:
    """The records gathered so far (guid -> record), where each came from, what to check."""

    storage: Storage
    records: dict[str, Episode] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        keys = self.storage.list_keys("podcast/")
        self.all_keys = keys  # where an item's image, transcript and chapters may be
        self.audio_keys = [k for k in keys if k.startswith(AUDIO_PREFIX) and k[-4:] in _MIME]

    def add(self, episode: Episode, source: str) -> None:
        self.records[episode.guid] = episode
        self.sources[episode.guid] = source

    def add_backup(self) -> str | None:
        """Every record of the newest backup; its key."""
        backups = backup_keys(self.storage)
        data = self.storage.get_bytes(backups[-1]) if backups else None
        if data is None:
            return None
        for episode in parse_catalog(data[0], f"{self.storage.describe()}/{backups[-1]}"):
            self.add(episode, f"backup {backups[-1]}")
        return backups[-1]

    def add_feed(self) -> datetime | None:
        """The live items the backup lacks or has with other audio; the feed's last change."""
        live = self.storage.get_bytes(FEED_KEY)
        items, built = _feed_items(live[0] if live else None)
        for item in items:
            guid = (item.findtext("guid") or "").strip()
            key = _enclosure_key(item, self.audio_keys)
            known = self.records.get(guid)
            if guid and key is None:
                self.checks.append(f"feed item {guid}: its enclosure is not in {AUDIO_PREFIX}")
            elif guid and key and (known is None or known.audio_key != key):
                tags = _read_audio(self.storage, key)
                record = _from_feed_item(item, tags, known, self.all_keys, built)
                self.add(record, "live feed")
        return built

    def add_audio(self, now: datetime, feed_built: datetime) -> None:
        """Audio no record points at: an episode of its own if its tagged guid is new."""
        current = {ep.audio_key for ep in self.records.values()}
        for key in self.audio_keys:
            tags = _read_audio(self.storage, key) if key not in current else None
            if tags is None or (tags.guid is not None and tags.guid in self.records):
                continue  # a record's audio, or an older version of a known episode
            if tags.guid is None:
                self.checks.append(f"{key}: its tags carry no guid (from before guids in tags)")
                continue
            self.add(_from_tags(tags, now, feed_built), f"audio {key}")
            if tags.date_only:
                self.checks.append(
                    f"{key}: the publish time of {tags.guid} is its tag's date at 00:00; "
                    "set 'publish_at' if it was another time"
                )


def write_recovered(storage: Storage, recovery: Recovery) -> Catalog:
    """Save the recovered catalog where none exists (refused if one appeared meanwhile);
    it is kept as the newest backup too, like every version."""
    return save_catalog(storage, Catalog(recovery.episodes, None))


# --- the live feed --------------------------------------------------------------------------


def _feed_items(xml: bytes | None) -> tuple[list[etree._Element], datetime | None]:
    """The live feed's items and its `lastBuildDate` (when it last changed)."""
    if not xml:
        return [], None
    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return [], None
    built = (root.findtext("channel/lastBuildDate") or "").strip()
    return list(root.iterfind("channel/item")), parsedate_to_datetime(built) if built else None


def _enclosure_key(item: etree._Element, audio_keys: Iterable[str]) -> str | None:
    """The stored audio an item's enclosure points at (behind any analytics prefix)."""
    enclosure = item.find("enclosure")
    url = enclosure.get("url", "") if enclosure is not None else ""
    return next((key for key in audio_keys if url.endswith("/" + key)), None)


def _object_key(url: str | None, keys: Iterable[str]) -> str | None:
    return next((key for key in keys if url and url.endswith("/" + key)), None)


def _seconds(text: str) -> int:
    total = 0
    for part in text.strip().split(":"):
        total = total * 60 + int(float(part or 0))
    return total


def _number(item: etree._Element, tag: str) -> int | None:
    text = (item.findtext(_IT + tag) or "").strip()
    return int(text) if text.isdigit() else None


def _from_feed_item(
    item: etree._Element,
    tags: _AudioTags,
    known: Episode | None,
    others: list[str],
    feed_built: datetime | None,
) -> Episode:
    """A record from a live <item> and its audio's tags; `others` are the storage keys its
    image, transcript and chapters links may point at. When it was last updated is not in
    the feed; the feed's last change is the latest it can have been, and keeps the rebuilt
    feed's `lastBuildDate` the live one."""
    enclosure = item.find("enclosure")
    assert enclosure is not None  # `_enclosure_key` found it
    published = parsedate_to_datetime((item.findtext("pubDate") or "").strip())
    body = (item.findtext(_CONTENT) or item.findtext("description") or "").strip()
    values: dict[str, Any] = {
        "guid": (item.findtext("guid") or "").strip(),
        "slug": _slug(tags.key),
        "title": (item.findtext("title") or "").strip(),
        "description": tags.description or "",
        "description_html": body,
        "publish_at": published,
        "duration": _seconds(item.findtext(_IT + "duration") or "0"),
        "size": int(enclosure.get("length", "0") or 0),
        "mime_type": enclosure.get("type", "") or _MIME[tags.key[-4:]],
        "sha256": tags.sha256,
        "audio_key": tags.key,
        **_item_tags(item),
        **_item_links(item, others),
        "first_published": known.first_published if known else published,
        "last_updated": feed_built or published,
    }
    if known is not None:  # a newer version of a known episode: keep what the feed lacks
        values["chapters"] = known.chapters
    return Episode.model_validate(values)


def _item_tags(item: etree._Element) -> dict[str, Any]:
    """The numbers, type, explicit flag and guests of an item."""
    return {
        "episode": _number(item, "episode"),
        "season": _number(item, "season"),
        "episode_type": (item.findtext(_IT + "episodeType") or "full").strip(),
        "explicit": (item.findtext(_IT + "explicit") or "").strip() in ("true", "yes"),
        "guests": [
            (p.text or "").strip()
            for p in item.iterfind(_PC + "person")
            if p.get("role") == "guest"
        ],
    }


def _item_links(item: etree._Element, others: list[str]) -> dict[str, Any]:
    """The storage keys of an item's image, transcript and chapters."""
    image = item.find(_IT + "image")
    transcript = item.find(_PC + "transcript")
    chapters = item.find(_PC + "chapters")
    return {
        "image_key": _object_key(image.get("href") if image is not None else None, others),
        "transcript_key": _object_key(
            transcript.get("url") if transcript is not None else None, others
        ),
        "transcript_type": transcript.get("type") if transcript is not None else None,
        "chapters_key": _object_key(chapters.get("url") if chapters is not None else None, others),
    }


# --- the audio's own tags -------------------------------------------------------------------


@dataclass(frozen=True)
class _AudioTags:
    key: str
    guid: str | None
    title: str | None
    description: str | None
    date: datetime | None
    date_only: bool
    track: int | None
    disc: int | None
    duration: float
    size: int
    sha256: str


def _read_audio(storage: Storage, key: str) -> _AudioTags:
    """The guid, texts and date an audio object's tags carry (read from a private copy)."""
    found = storage.get_bytes(key)
    if found is None:
        raise CatalogError(f"{storage.describe()}/{key} disappeared while recovering; run again")
    data = found[0]
    with tempfile.NamedTemporaryFile(suffix=Path(key).suffix) as handle:
        handle.write(data)
        handle.flush()
        audio: Any = mutagen.File(handle.name)
    tags: Mapping[str, Any] = audio.tags if audio is not None and audio.tags is not None else {}

    def first(*names: str) -> str | None:
        for name in names:
            value = tags.get(name)
            for text in getattr(value, "text", value) or ():
                if str(text).strip():
                    return str(text).strip()
        return None

    date_text = first("TDRC", "TYER", "\xa9day") or ""
    date, date_only = _tag_date(date_text, first("TDAT"))
    track, disc = first("TRCK"), first("TPOS")
    mp4_track, mp4_disc = tags.get("trkn"), tags.get("disk")
    comments = [f for f in getattr(tags, "getall", lambda _n: [])("COMM") if not f.desc]
    return _AudioTags(
        key=key,
        guid=first("TGID", "egid"),
        title=first("TIT2", "\xa9nam"),
        description=("\n".join(comments[0].text) if comments else first("ldes", "\xa9cmt")),
        date=date,
        date_only=date_only,
        track=int(track) if track and track.isdigit() else (mp4_track[0][0] if mp4_track else None),
        disc=int(disc) if disc and disc.isdigit() else (mp4_disc[0][0] if mp4_disc else None),
        duration=float(audio.info.length) if audio is not None else 0.0,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _tag_date(text: str, ddmm: str | None) -> tuple[datetime | None, bool]:
    """A tag's date: M4A's `©day` is a full UTC time; MP3's v2.3 TYER (+ TDAT) is a date."""
    text = text.strip()
    try:
        if "T" in text:
            return datetime.fromisoformat(text.replace("Z", "+00:00")), False
        if len(text) >= 10:
            day = datetime.fromisoformat(text[:10])
        elif len(text) == 4 and ddmm and len(ddmm) == 4:
            day = datetime(int(text), int(ddmm[2:]), int(ddmm[:2]))
        else:
            return None, True
    except ValueError:
        return None, True
    return datetime.combine(day.date(), time(0), UTC), True  # written as a UTC date


def _slug(key: str) -> str:
    """`podcast/audio/<slug>-<8 hex>.<ext>` -> slug."""
    return Path(key).stem.rsplit("-", 1)[0]


def _from_tags(tags: _AudioTags, now: datetime, feed_built: datetime) -> Episode:
    """A record for audio the backup and the feed do not know: scheduled if its date is
    still to come, else removed (it was not in the feed; its guid must stay taken), dated
    by the live feed's last change, the latest a removal can have been."""
    published = tags.date or now
    # A tag with a date only says the day: it is past only when the day is.
    past = published.date() < now.astimezone(UTC).date() if tags.date_only else published <= now
    return Episode.model_validate(
        {
            "guid": tags.guid,
            "slug": _slug(tags.key),
            "title": tags.title or _slug(tags.key),
            "description": tags.description or "",
            "publish_at": published,
            "duration": max(1, round(tags.duration)),
            "size": tags.size,
            "mime_type": _MIME[tags.key[-4:]],
            "sha256": tags.sha256,
            "audio_key": tags.key,
            "episode": tags.track,
            "season": tags.disc,
            "first_published": min(published, now),
            "last_updated": min(published, now),
            "removed_at": feed_built if past else None,
        }
    )
