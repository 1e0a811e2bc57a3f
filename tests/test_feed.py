"""The podcast feed: built from show + catalog, read back by real client parsers, gated.

The golden feed (tests/golden/feed/demo-feed.xml) is regenerated with ONE command:

    REGEN_GOLDENS=1 python -m pytest tests/test_feed.py -k golden

then review its diff like code.
"""

from __future__ import annotations

import calendar
import html
import io
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from PIL import Image

from flows.core.errors import CatalogError, FeedGateError, InputError, StorageError
from flows.core.models import STOCKHOLM, Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, CACHE_SHORT, LocalStorage, ObjectInfo, public_url
from flows.core.text import clean_text, one_line
from flows.podcast.catalog import (
    BACKUP_PREFIX,
    CATALOG_KEY,
    Catalog,
    load_catalog,
    remove_episodes,
    save_catalog,
)
from flows.podcast.feed import (
    EMPTY_FEED_DATE,
    FEED_CONTENT_TYPE,
    FEED_KEY,
    build_feed,
    description_html,
    enclosure_url,
    podcast_guid,
    resolve_public_url,
    rfc2822,
)
from flows.podcast.feedgate import check_cover_art, check_feed
from flows.podcast.feedpublish import FEED_STATE_KEY, FeedResult, publish_feed
from flows.podcast.show import parse_show

GOLDEN = Path(__file__).parent / "golden" / "feed" / "demo-feed.xml"
BASE = "https://cdn.kraftsamling.example/"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=STOCKHOLM)
NS = {
    "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd",
    "podcast": "https://podcastindex.org/namespace/1.0",
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
}

SHOW_YAML = """\
title: Digitalsamtal
description: Samtal om digitalisering i offentlig sektor – från Kraftsamling.
author: Kraftsamling
owner_name: Redaktionen Exempel
owner_email: podd@kraftsamling.example
category: Government
website: https://kraftsamling.example/
image: cover.jpg
copyright: © 2026 Kraftsamling (fiktiv demo)
hosts: [Alva Exempelsson, Bo Påhittad]
funding_url: https://kraftsamling.example/stod
funding_text: Stöd Digitalsamtal
"""

TITLES = [
    "Öppna data & kommunerna",
    "Ålänningar, ärenden och öar",
    "Digitalt först – eller sist?",
]


def make_show(**changes: Any) -> Show:
    return parse_show(SHOW_YAML).model_copy(update=changes)


def make_episode(n: int, **changes: Any) -> Episode:
    """Episode n (1-based), published n weeks after a fixed start, 1000+n bytes."""
    moment = datetime(2026, 3, 5, 7, 0, tzinfo=STOCKHOLM) + timedelta(weeks=n - 1)
    values: dict[str, Any] = {
        "guid": str(uuid.UUID(int=n)),
        "slug": f"avsnitt-{n}",
        "title": TITLES[(n - 1) % len(TITLES)],
        "description": f"Avsnitt {n} av Digitalsamtal.\n\nMed gäster från en påhittad kommun.",
        "publish_at": moment,
        "duration": 1800 + n,
        "size": 1000 + n,
        "mime_type": "audio/mpeg",
        "sha256": f"{n:064x}",
        "audio_key": f"podcast/audio/avsnitt-{n}-{n:08x}.mp3",
        "episode": n,
        "season": 1,
        "first_published": moment,
        "last_updated": moment,
    }
    values.update(changes)
    return Episode(**values)


@cache
def image_bytes(
    width: int = 1400, height: int = 1400, mode: str = "RGB", fmt: str = "JPEG"
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format=fmt)
    return out.getvalue()


def build(episodes: list[Episode], **kwargs: Any) -> bytes:
    kwargs.setdefault("public_url", BASE)
    kwargs.setdefault("now", NOW)
    return build_feed(kwargs.pop("show", make_show()), episodes, **kwargs)


def parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


class Recorder:
    """A real LocalStorage that records writes and can fail the feed's upload (an outage)."""

    def __init__(self, inner: LocalStorage, *, fail_feed_upload: bool = False) -> None:
        self.inner = inner
        self.fail_feed_upload = fail_feed_upload
        self.puts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> ObjectInfo:
        if self.fail_feed_upload and key == FEED_KEY:
            raise StorageError(f"Could not write {key}: connection reset (simulated outage).")
        self.puts.append(key)
        return self.inner.put_bytes(key, data, **kwargs)


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Any]:
    """A show folder with show.yaml + cover art, local storage, settings."""
    show_dir = tmp_path / "episodes"
    show_dir.mkdir()
    (show_dir / "show.yaml").write_text(SHOW_YAML, encoding="utf-8")
    (show_dir / "cover.jpg").write_bytes(image_bytes())
    storage = LocalStorage(tmp_path / "storage")
    config = Settings.load(storage=str(tmp_path / "storage"), public_url=BASE)
    return {"show_dir": show_dir, "storage": storage, "settings": config, "show": make_show()}


def upload_audio(storage: LocalStorage, episodes: list[Episode]) -> None:
    for episode in episodes:
        storage.put_bytes(
            episode.audio_key,
            b"\xff" * episode.size,
            content_type=episode.mime_type,
            cache_control=CACHE_LONG,
            public=True,
        )


def publish(place: dict[str, Any], episodes: list[Episode], storage: Any = None, **kw: Any):
    return publish_feed(
        storage or place["storage"],
        place["show"],
        place["show_dir"],
        Catalog(list(episodes), "etag"),
        place["settings"],
        kw.pop("now", NOW),
        **kw,
    )


def live_feed(place: dict[str, Any]) -> bytes | None:
    found = place["storage"].get_bytes(FEED_KEY)
    return found[0] if found else None


# --- round trip through real clients ----------------------------------------------------


def test_feedparser_and_podcastparser_read_back_the_catalog():
    episodes = [make_episode(n) for n in (1, 2, 3)]
    xml = build(episodes)
    newest_first = sorted(episodes, key=lambda e: e.publish_at, reverse=True)

    fp = feedparser.parse(io.BytesIO(xml))
    assert not fp.bozo, fp.get("bozo_exception")
    assert fp.feed.title == "Digitalsamtal"
    assert [e.title for e in fp.entries] == [e.title for e in newest_first]
    for entry, episode in zip(fp.entries, newest_first, strict=True):
        assert entry.id == episode.guid
        assert entry.enclosures[0].href == BASE + episode.audio_key
        assert int(entry.enclosures[0].length) == episode.size
        assert entry.enclosures[0].type == "audio/mpeg"
        assert entry.itunes_duration == str(episode.duration)
        assert calendar.timegm(entry.published_parsed) == episode.publish_at.timestamp()

    gp = podcastparser.parse(BASE + FEED_KEY, io.BytesIO(xml))
    assert gp["title"] == "Digitalsamtal"
    assert gp["itunes_owner"] == {
        "name": "Redaktionen Exempel",
        "email": "podd@kraftsamling.example",
    }
    assert gp["itunes_categories"] == [["Government"]]
    assert [e["title"] for e in gp["episodes"]] == [e.title for e in newest_first]
    for item, episode in zip(gp["episodes"], newest_first, strict=True):
        assert item["guid"] == episode.guid
        assert item["enclosures"] == [
            {"url": BASE + episode.audio_key, "file_size": episode.size, "mime_type": "audio/mpeg"}
        ]
        assert item["total_time"] == episode.duration
        assert item["published"] == episode.publish_at.timestamp()
        assert item["number"] == episode.episode
    assert check_feed(xml, live_xml=None, episodes=episodes) == []


def test_every_apple_tag_is_present_and_well_formed():
    episode = make_episode(
        1,
        explicit=True,
        image_key="podcast/art/avsnitt-1.jpg",
        transcript_key="podcast/transcripts/avsnitt-1.vtt",
        chapters_key="podcast/chapters/avsnitt-1.json",
        guests=["Gäst Gästsson"],
    )
    root = parse(build([episode], show=make_show(subcategory=None)))
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    for path in (
        "title",
        "link",
        "description",
        "language",
        "copyright",
        "lastBuildDate",
        "generator",
        "itunes:author",
        "itunes:owner/itunes:name",
        "itunes:owner/itunes:email",
        "itunes:type",
        "podcast:guid",
        "podcast:medium",
    ):
        assert (channel.findtext(path, namespaces=NS) or "").strip(), path
    assert channel.findtext("language") == "sv"
    assert channel.findtext("itunes:explicit", namespaces=NS) == "false"
    assert channel.find("itunes:image", NS).get("href").startswith(BASE + "podcast/art/")
    assert channel.find("itunes:category", NS).get("text") == "Government"
    self_link = channel.find("atom:link", NS)
    assert (self_link.get("rel"), self_link.get("href")) == ("self", BASE + FEED_KEY)
    locked = channel.find("podcast:locked", NS)
    assert (locked.text, locked.get("owner")) == ("yes", "podd@kraftsamling.example")
    funding = channel.find("podcast:funding", NS)
    assert (funding.text, funding.get("url")) == (
        "Stöd Digitalsamtal",
        "https://kraftsamling.example/stod",
    )

    item = channel.find("item")
    assert item.find("guid").get("isPermaLink") == "false"
    enclosure = item.find("enclosure")
    assert enclosure.attrib == {
        "url": BASE + episode.audio_key,
        "length": str(episode.size),
        "type": "audio/mpeg",
    }
    assert item.findtext("itunes:duration", namespaces=NS) == "1801"
    assert item.findtext("itunes:episode", namespaces=NS) == "1"
    assert item.findtext("itunes:season", namespaces=NS) == "1"
    assert item.findtext("itunes:episodeType", namespaces=NS) == "full"
    assert item.findtext("itunes:explicit", namespaces=NS) == "true"
    assert item.find("itunes:image", NS).get("href") == BASE + "podcast/art/avsnitt-1.jpg"
    assert item.find("podcast:transcript", NS).attrib == {
        "url": BASE + "podcast/transcripts/avsnitt-1.vtt",
        "type": "text/vtt",
        "language": "sv",
    }
    assert item.find("podcast:chapters", NS).attrib == {
        "url": BASE + "podcast/chapters/avsnitt-1.json",
        "type": "application/json+chapters",
    }
    people = [(p.get("role"), p.text) for p in item.findall("podcast:person", NS)]
    assert people == [
        ("host", "Alva Exempelsson"),
        ("host", "Bo Påhittad"),
        ("guest", "Gäst Gästsson"),
    ]
    assert item.findtext("content:encoded", namespaces=NS) == item.findtext("description")


def test_optional_channel_tags_for_a_move_block_and_completion():
    show = make_show(
        new_feed_url="https://new.example/feed.xml", block=True, complete=True, subcategory="Local"
    )
    channel = parse(build([make_episode(1)], show=show)).find("channel")
    assert channel.findtext("itunes:new-feed-url", namespaces=NS) == "https://new.example/feed.xml"
    assert channel.findtext("itunes:block", namespaces=NS) == "Yes"
    assert channel.findtext("itunes:complete", namespaces=NS) == "Yes"
    sub = channel.find("itunes:category/itunes:category", NS)
    assert sub.get("text") == "Local"


def test_podcast_guid_is_the_uuid5_of_the_feed_url():
    namespace = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
    expected = str(uuid.uuid5(namespace, "cdn.kraftsamling.example/podcast/feed.xml"))
    channel = parse(build([make_episode(1)])).find("channel")
    assert channel.findtext("podcast:guid", namespaces=NS) == expected
    # The example in the Podcasting 2.0 specification.
    assert podcast_guid("https://mp3s.nashownotes.com/pc20rss.xml") == (
        "917393e3-1b1e-5cef-ace4-edaa54e1f810"
    )
    assert podcast_guid("http://mp3s.nashownotes.com/pc20rss.xml/") == podcast_guid(
        "https://mp3s.nashownotes.com/pc20rss.xml"
    )
    # A guid stored in show.yaml wins, so a move to another host keeps it.
    kept = build(
        [make_episode(1)], show=make_show(podcast_guid=expected), public_url="https://new.example/"
    )
    assert parse(kept).findtext("channel/podcast:guid", namespaces=NS) == expected


# --- guids, schedule, determinism --------------------------------------------------------


def item_guids(xml: bytes) -> list[str]:
    return [item.findtext("guid") for item in parse(xml).iterfind("channel/item")]


def test_guids_survive_regeneration_replacement_and_a_new_public_url():
    episodes = [make_episode(n) for n in (1, 2)]
    first = build(episodes)
    assert item_guids(build(episodes)) == item_guids(first) == [episodes[1].guid, episodes[0].guid]

    replaced = episodes[0].model_copy(
        update={
            "audio_key": "podcast/audio/avsnitt-1-ffffffff.mp3",
            "size": 5555,
            "sha256": "f" * 64,
            "last_updated": NOW - timedelta(days=1),
        }
    )
    after = build([replaced, episodes[1]])
    assert item_guids(after) == item_guids(first)
    enclosure = parse(after).find(f"channel/item[guid='{replaced.guid}']/enclosure")
    assert enclosure.get("url") == BASE + "podcast/audio/avsnitt-1-ffffffff.mp3"
    assert enclosure.get("length") == "5555"

    moved = build(episodes, public_url="https://media.kraftsamling.example/")
    assert item_guids(moved) == item_guids(first)
    urls = [e.get("url") for e in parse(moved).iterfind("channel/item/enclosure")]
    assert all(url.startswith("https://media.kraftsamling.example/podcast/audio/") for url in urls)


def test_a_scheduled_episode_appears_when_its_time_has_come(place):
    episodes = [make_episode(1), make_episode(2, publish_at=NOW + timedelta(hours=1))]
    upload_audio(place["storage"], episodes)  # scheduled audio is uploaded ahead of time

    before = publish(place, episodes, now=NOW + timedelta(minutes=59))
    assert (before.items, before.scheduled, before.uploaded) == (1, 1, True)
    assert item_guids(live_feed(place)) == [episodes[0].guid]
    assert "1 scheduled, not yet published" in before.summary()

    on_time = publish(place, episodes, now=NOW + timedelta(hours=1))
    assert (on_time.items, on_time.scheduled, on_time.uploaded) == (2, 0, True)
    assert item_guids(live_feed(place)) == [episodes[1].guid, episodes[0].guid]


def test_same_catalog_same_bytes_and_no_clock_in_them():
    episodes = [make_episode(n) for n in (1, 2, 3)]
    episodes[0] = episodes[0].model_copy(update={"last_updated": NOW - timedelta(days=2)})
    first = build(episodes)
    assert build(list(reversed(episodes))) == first
    assert build(episodes, now=NOW + timedelta(days=400)) == first
    assert parse(first).findtext("channel/lastBuildDate") == rfc2822(NOW - timedelta(days=2))
    assert parse(build([])).findtext("channel/lastBuildDate") == rfc2822(EMPTY_FEED_DATE)


def test_publishing_twice_uploads_nothing_the_second_time(place):
    episodes = [make_episode(n) for n in (1, 2)]
    upload_audio(place["storage"], episodes)
    recorder = Recorder(place["storage"])

    first = publish(place, episodes, storage=recorder)
    assert first.uploaded and first.cover_uploaded
    # The feed, the cover art, and the private record of what the feed was built from; the
    # web pages beside it (flows.web: show page, episode pages, start page, their records).
    pages = ["podcast/index.html", "podcast/episodes/avsnitt-1.html"]
    pages += ["podcast/episodes/avsnitt-2.html", "podcast/pages.json", "index.html", "home.json"]
    assert sorted(recorder.puts) == sorted(
        [FEED_KEY, FEED_STATE_KEY, first.cover_url.removeprefix(BASE), *pages]
    )
    assert re.fullmatch(r"podcast/art/cover-[0-9a-f]{8}\.jpg", first.cover_url.removeprefix(BASE))
    meta = place["storage"].metadata(FEED_KEY)
    assert (meta["content_type"], meta["cache_control"], meta["public"]) == (
        FEED_CONTENT_TYPE,
        CACHE_SHORT,
        True,
    )
    assert place["storage"].metadata(first.cover_url.removeprefix(BASE))["cache_control"] == (
        CACHE_LONG
    )
    cover_href = parse(live_feed(place)).find("channel/itunes:image", NS).get("href")
    assert cover_href == first.cover_url

    recorder.puts.clear()
    second = publish(place, episodes, storage=recorder, now=NOW + timedelta(hours=1))
    assert (second.uploaded, second.cover_uploaded, recorder.puts) == (False, False, [])
    assert "unchanged, nothing uploaded" in second.summary()


def test_publish_feed_on_s3_twice_puts_nothing_the_second_time(place, s3_inprocess):
    storage = s3_inprocess.storage("kraft")
    episodes = [make_episode(1), make_episode(2)]
    for episode in episodes:
        storage.put_bytes(
            episode.audio_key,
            b"\xff" * episode.size,
            content_type="audio/mpeg",
            cache_control=CACHE_LONG,
            public=True,
        )
    assert publish(place, episodes[:1], storage=storage).uploaded  # a new object: If-None-Match
    assert publish(place, episodes, storage=storage).uploaded  # a change: If-Match the live ETag
    head = storage.head(FEED_KEY)
    assert head is not None and head.content_type == FEED_CONTENT_TYPE
    s3_inprocess.request_log.clear()
    assert not publish(place, episodes, storage=storage).uploaded
    assert s3_inprocess.request_log.count("PUT") == 0


# --- the gate ---------------------------------------------------------------------------


def removed(episode: Episode, when: datetime = NOW - timedelta(hours=1)) -> Episode:
    return episode.model_copy(update={"removed_at": when})


def test_an_accidental_shrink_is_refused_and_the_live_feed_kept(place):
    episodes = [make_episode(n) for n in (1, 2, 3)]
    upload_audio(place["storage"], episodes)
    publish(place, episodes)
    live = live_feed(place)

    # A catalog restored from an old backup: episode 2 is gone, not removed.
    old_backup = [episodes[0], episodes[2]]
    with pytest.raises(FeedGateError) as refused:
        publish(place, old_backup)
    message = str(refused.value)
    assert episodes[1].guid in message and "does not have at all" in message
    assert "podcast/catalog-backups/" in message and "--remove" not in message
    assert "live feed is unchanged" in message
    assert live_feed(place) == live

    # In the catalog, but no longer due (publish_at moved to the future): also refused.
    moved = [episodes[0], make_episode(2, publish_at=NOW + timedelta(days=1)), episodes[2]]
    with pytest.raises(FeedGateError) as refused:
        publish(place, moved)
    assert f"--remove {episodes[1].guid}" in str(refused.value)
    assert live_feed(place) == live


def test_a_removed_episode_is_never_in_the_feed_and_the_gate_allows_it(place):
    episodes = [make_episode(n) for n in (1, 2, 3)]
    upload_audio(place["storage"], episodes)
    publish(place, episodes)
    before = parse(live_feed(place)).findtext("channel/lastBuildDate")

    gone = removed(episodes[2])  # the newest one
    scheduled_gone = removed(make_episode(4, publish_at=NOW + timedelta(days=1)))
    result = publish(place, [episodes[0], episodes[1], gone, scheduled_gone])
    assert (result.uploaded, result.items, result.scheduled) == (True, 2, 0)
    xml = live_feed(place)
    assert item_guids(xml) == [episodes[1].guid, episodes[0].guid]
    # The removal is the feed's newest change, so lastBuildDate moves forward.
    assert parse(xml).findtext("channel/lastBuildDate") == rfc2822(gone.removed_at)
    assert rfc2822(gone.removed_at) != before

    # check_feed itself: a guid the catalog marks removed may leave; any other may not.
    live = build(episodes)
    new = build([episodes[0], episodes[1]])
    assert check_feed(new, live_xml=live, episodes=episodes[:2], remove_guids=[gone.guid]) == []
    [problem] = check_feed(new, live_xml=live, episodes=episodes[:2])
    assert gone.guid in problem and "would drop 1 episode" in problem


def test_removal_lasts_across_later_runs_and_the_record_stays(place):
    storage = place["storage"]
    episodes = [make_episode(n) for n in (1, 2, 3)]
    upload_audio(storage, episodes)
    save_catalog(storage, Catalog(episodes, None), NOW - timedelta(days=1))
    publish_feed(storage, place["show"], place["show_dir"], load_catalog(storage),
                 place["settings"], NOW)  # fmt: skip

    removal = remove_episodes(storage, [episodes[1].guid], NOW)
    assert (removal.removed, removal.already_removed) == ((episodes[1].guid,), ())
    first = publish_feed(
        storage, place["show"], place["show_dir"], removal.catalog, place["settings"], NOW
    )
    assert first.uploaded and item_guids(live_feed(place)) == [
        episodes[2].guid,
        episodes[0].guid,
    ]

    # The next hourly run, without --remove: the catalog alone keeps it out and the gate passes.
    recorder = Recorder(storage)
    later = publish_feed(
        recorder, place["show"], place["show_dir"], load_catalog(storage), place["settings"],
        NOW + timedelta(hours=1),
    )  # fmt: skip
    assert (later.uploaded, later.items, recorder.puts) == (False, 2, [])

    # The record stays in catalog.json with removed_at, so its guid is never reused.
    document = json.loads(storage.get_bytes(CATALOG_KEY)[0])
    by_guid = {ep["guid"]: ep for ep in document["episodes"]}
    assert set(by_guid) == {e.guid for e in episodes}
    assert by_guid[episodes[1].guid]["removed_at"] == NOW.isoformat()
    assert by_guid[episodes[0].guid]["removed_at"] is None
    # The audio is not deleted (apps that downloaded it keep working; a restore needs it).
    assert storage.head(episodes[1].audio_key) is not None


def test_removing_an_unknown_guid_changes_nothing(place):
    storage = place["storage"]
    episodes = [make_episode(n) for n in (1, 2)]
    save_catalog(storage, Catalog(episodes, None), NOW - timedelta(days=1))
    data = storage.get_bytes(CATALOG_KEY)[0]
    backups = storage.list_keys(BACKUP_PREFIX)  # the first version's

    with pytest.raises(CatalogError) as refused:
        remove_episodes(storage, [episodes[0].guid, "no-such-guid", "avsnitt-2"], NOW)
    message = str(refused.value)
    assert "no-such-guid, avsnitt-2" in message and "nothing was removed" in message
    assert f"'avsnitt-2' is a slug; its guid is {episodes[1].guid}" in message
    assert CATALOG_KEY in message and "<guid>" in message  # where to find the real guids
    assert storage.get_bytes(CATALOG_KEY)[0] == data
    assert storage.list_keys(BACKUP_PREFIX) == backups  # no new backup


def test_removing_an_already_removed_guid_is_a_noop_with_a_note(place):
    storage = place["storage"]
    earlier = NOW - timedelta(days=2)
    episodes = [removed(make_episode(1), earlier), make_episode(2)]
    save_catalog(storage, Catalog(episodes, None), earlier)
    before = storage.get_bytes(CATALOG_KEY)
    backups = storage.list_keys(BACKUP_PREFIX)  # the first version's

    again = remove_episodes(storage, [episodes[0].guid, episodes[0].guid], NOW)
    assert (again.removed, again.already_removed) == ((), (episodes[0].guid,))
    assert storage.get_bytes(CATALOG_KEY) == before  # not rewritten, no backup
    assert storage.list_keys(BACKUP_PREFIX) == backups
    assert again.catalog.by_guid(episodes[0].guid).removed_at == earlier  # the first date stays
    note = FeedResult(BASE + FEED_KEY, 1, 0, False, "", already_removed=again.already_removed)
    assert f"already removed before, nothing to do: {episodes[0].guid}" in note.summary()


def test_check_feed_finds_duplicates_and_missing_parts():
    one, two = make_episode(1), make_episode(2)
    twin = make_episode(2, guid=one.guid)
    problems = check_feed(build([one, twin]), live_xml=None, episodes=[one, twin])
    assert any("repeats the guid of item 1" in p for p in problems)

    same_audio = make_episode(2, audio_key=one.audio_key)
    problems = check_feed(build([one, same_audio]), live_xml=None, episodes=[one, same_audio])
    assert any("repeats the enclosure URL" in p for p in problems)

    root = parse(build([one, two]))
    for item in root.iterfind("channel/item"):
        item.remove(item.find("itunes:duration", NS))
    root.find("channel").remove(root.find("channel/itunes:category", NS))
    problems = check_feed(etree.tostring(root), live_xml=None, episodes=[one, two])
    assert any("has no <itunes:duration>" in p for p in problems)
    assert any("the channel has no <itunes:category>" in p for p in problems)

    broken = check_feed(b"<rss><channel><title>x</channel></rss>", live_xml=None, episodes=[])
    assert broken and "not well-formed XML" in broken[0]


def test_a_missing_audio_object_leaves_its_new_episode_out_and_publishes_the_rest(place):
    # Issue 19: one episode never holds the feed (it used to refuse the whole feed).
    episodes = [make_episode(n) for n in (1, 2)]
    upload_audio(place["storage"], episodes)
    publish(place, episodes)
    live = live_feed(place)

    ghost = make_episode(3)  # in the catalog, but its audio never reached storage
    result = publish(place, [*episodes, ghost])
    message = result.summary()
    assert "avsnitt-3" in message and ghost.audio_key in message and "404" in message
    assert "was left out of the feed" in message and f"--remove {ghost.guid}" in message
    assert live_feed(place) == live  # the same two items: nothing to upload

    wrong_size = make_episode(3)
    place["storage"].put_bytes(
        wrong_size.audio_key, b"\xff" * 10, content_type="audio/mpeg", cache_control=CACHE_LONG,
        public=True,
    )  # fmt: skip
    result = publish(place, [*episodes, wrong_size])
    assert "is 10 bytes in storage but 1003 in the catalog" in result.summary()
    assert [u.guid for u in result.left_out] == [wrong_size.guid]
    assert live_feed(place) == live


def test_a_storage_outage_during_upload_leaves_the_live_feed_as_it_was(place):
    episodes = [make_episode(n) for n in (1, 2)]
    upload_audio(place["storage"], episodes)
    publish(place, episodes[:1])
    live = live_feed(place)

    with pytest.raises(StorageError, match="simulated outage"):
        publish(place, episodes, storage=Recorder(place["storage"], fail_feed_upload=True))
    assert live_feed(place) == live
    assert publish(place, episodes).uploaded  # the next run succeeds


def test_an_empty_catalog_gives_a_valid_feed_without_items(place):
    xml = build([])
    assert parse(xml).findall("channel/item") == []
    assert not feedparser.parse(io.BytesIO(xml)).bozo
    assert podcastparser.parse(BASE + FEED_KEY, io.BytesIO(xml))["episodes"] == []
    assert check_feed(xml, live_xml=None, episodes=[]) == []
    result = publish(place, [])
    assert (result.uploaded, result.items) == (True, 0)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (("1000", 1000, "RGB", "JPEG"), ["1000x1000 px", "1400-3000 px"]),
        (("1400", 1600, "RGB", "PNG"), ["1400x1600 px, not square", "Crop it to a square"]),
        (("3200", 3200, "RGB", "JPEG"), ["3200x3200 px", "1400-3000 px"]),
        (("1400", 1400, "CMYK", "JPEG"), ["colour mode is CMYK", "RGB"]),
        (("1400", 1400, "RGBA", "PNG"), ["colour mode is RGBA"]),
        (("1400", 1400, "P", "GIF"), ["format is GIF", "JPEG or PNG"]),
    ],
)
def test_bad_cover_art_is_refused_with_what_and_how(image, expected):
    width, height, mode, fmt = int(image[0]), image[1], image[2], image[3]
    with pytest.raises(InputError) as refused:
        check_cover_art(image_bytes(width, height, mode, fmt), "episodes/cover.jpg")
    message = str(refused.value)
    assert message.startswith("episodes/cover.jpg: ")
    assert "3000x3000 px RGB JPEG or PNG" in message  # the fix
    for fragment in expected:
        assert fragment in message


def test_good_cover_art_passes_and_a_non_image_does_not():
    check_cover_art(image_bytes(1400, 1400, "RGB", "PNG"), "cover.png")
    check_cover_art(image_bytes(3000, 3000, "RGB", "JPEG"), "cover.jpg")
    with pytest.raises(InputError, match=r"cover\.jpg: the cover art is not a readable image"):
        check_cover_art(b"<svg/>", "cover.jpg")


def test_publish_refuses_bad_cover_art_before_touching_storage(place):
    (place["show_dir"] / "cover.jpg").write_bytes(image_bytes(1400, 1400, "CMYK", "JPEG"))
    recorder = Recorder(place["storage"])
    with pytest.raises(InputError, match=r"cover\.jpg: the cover art's colour mode is CMYK"):
        publish(place, [], storage=recorder)
    assert recorder.puts == []


@pytest.mark.parametrize("field", ["owner_email", "category"])
def test_show_yaml_without_owner_email_or_category_is_refused(field):
    text = "\n".join(line for line in SHOW_YAML.splitlines() if not line.startswith(field))
    with pytest.raises(InputError) as refused:
        parse_show(text, "episodes/show.yaml")
    example = {"owner_email": "podd@kraftsamling.example", "category": "Government"}[field]
    assert str(refused.value) == (
        f"episodes/show.yaml: {field}: saknas. Lägg till raden, t.ex. `{field}: {example}`.\n"
        f"episodes/show.yaml: {field}: is missing. Add the line, e.g. `{field}: {example}`."
    )


NASTY = [
    "Gäst & värd <b>\"citat\"</b> 'enkla' ]]> slut",
    "Emoji 🎙️🇸🇪 och kontroll\x00tecken\x07\x1b här\ufffe",
    "Radbrytning\r\n och\ttabb",
]


def test_nasty_titles_and_descriptions_stay_valid_and_round_trip():
    long_text = ("Lång beskrivning med & och < och ]]> och 🎧. " * 120).strip()
    assert len(long_text) > 4000
    episodes = [
        make_episode(1, title=NASTY[0], description=long_text),
        make_episode(2, title=NASTY[1], description=NASTY[1], guests=["Nils \x01Åkesson"]),
        make_episode(
            3,
            title=NASTY[2] + "x" * 4100,
            description_html='<p>HTML med ]]> och <a href="https://x.example/?a=1&amp;b=2">länk</a></p>',
        ),
    ]
    xml = build(episodes)
    assert check_feed(xml, live_xml=None, episodes=episodes) == []
    expected = {e.guid: one_line(e.title) for e in episodes}
    assert expected[episodes[1].guid] == "Emoji 🎙️🇸🇪 och kontrolltecken här"

    for item in feedparser.parse(io.BytesIO(xml)).entries:
        assert item.title == expected[item.id]
    by_guid = {e["guid"]: e for e in podcastparser.parse(BASE, io.BytesIO(xml))["episodes"]}
    for guid, title in expected.items():
        assert by_guid[guid]["title"] == title

    items = {i.findtext("guid"): i for i in parse(xml).iterfind("channel/item")}
    first = items[episodes[0].guid].findtext("description")
    assert first == description_html(episodes[0])
    assert html.unescape(re.sub("<[^>]+>", "", first)) == long_text  # every character back
    third = items[episodes[2].guid].findtext("description")
    assert "]]&gt;" in third and by_guid[episodes[2].guid]["description_html"] == third
    guest = items[episodes[1].guid].find("podcast:person[@role='guest']", NS)
    assert guest.text == "Nils Åkesson"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=st.text(min_size=1, max_size=80), text=st.text(max_size=300))
def test_any_text_gives_well_formed_xml(title, text):
    episode = make_episode(1, title=title, description=text, guests=[title])
    item = parse(build([episode])).find("channel/item")
    assert item.findtext("title") == one_line(title)
    assert item.findtext("description") == description_html(episode)
    assert clean_text(item.findtext("description")) == item.findtext("description")


# The builder's fast paths (isprintable, a byte search for DEL/C1, URL prefixes, the date
# table) must give exactly what the plain definitions give: these compare them directly.

# The definition: XML 1.0's forbidden characters plus DEL and the C1 controls.
FORBIDDEN = re.compile("[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NASTY_CHAR = st.sampled_from(
    ["\x00", "\x1b", "\x7f", "\x80", "\x85", "\x9f", "\xa0", "\xc2", "\t", "\n", "\r",
     "\ud800", "\udfff", "\ufffe", "\uffff", "\ue000", "]]>", "&", "<p>", "ö", "–", "🎙️", "a"]
)  # fmt: skip
NASTY_TEXT = st.lists(
    st.one_of(NASTY_CHAR, st.text(st.characters(codec=None, exclude_categories=()), max_size=6)),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=NASTY_TEXT)
def test_clean_text_is_the_forbidden_character_regex(text):
    assert clean_text(text) == FORBIDDEN.sub("", text)
    assert one_line(text) == " ".join(FORBIDDEN.sub("", text).split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=NASTY_TEXT, ascii_only=st.booleans())
def test_any_html_description_loses_exactly_the_forbidden_characters(body, ascii_only):
    # ASCII bodies take another fast path (only DEL can hide there) than non-ASCII ones.
    body = body.encode("ascii", "ignore").decode() if ascii_only else body
    episode = make_episode(1, description_html="<p>x</p>" + body)
    item = parse(build([episode])).find("channel/item")
    expected = FORBIDDEN.sub("", description_html(episode))
    assert description_html(episode) == expected
    assert item.findtext("description") == expected
    assert item.findtext("content:encoded", namespaces=NS) == expected


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, STOCKHOLM, timezone(timedelta(hours=-9, minutes=-30))]),
    )
)
def test_rfc2822_is_what_email_utils_writes(moment):
    assert rfc2822(moment) == format_datetime(moment.astimezone(UTC), usegmt=True)


URL_BASES = ["https://cdn.example/", "https://cdn.example", "https://c\x00dn.ex\x85/a//", "cdn/"]
URL_KEYS = ["podcast/audio/a-1.mp3", "podcast/å b.mp3", ".hidden/x.mp3", "a//b", "k\x7f\x00"]


@pytest.mark.parametrize("base", URL_BASES)
@pytest.mark.parametrize("prefix", [None, "https://op3.example/e/", "https://o\x1bp3/e//"])
def test_item_urls_are_the_cleaned_public_urls(base, prefix):
    def expected(make: Any) -> str | type[Exception]:
        try:
            return clean_text(make())
        except Exception as exc:  # the builder must fail the same way, not differently
            return type(exc)

    for key in URL_KEYS:
        episode = make_episode(1, audio_key=key, image_key=key, chapters_key=key)
        want = expected(lambda: enclosure_url(base, key, prefix))  # noqa: B023
        try:
            item = parse(build([episode], public_url=base, analytics_prefix=prefix))[0][-1]
        except Exception as exc:
            assert want is type(exc), (base, prefix, key)
            continue
        assert item.find("enclosure").get("url") == want
        assert item.find("itunes:image", NS).get("href") == clean_text(public_url(base, key))
        assert item.find("podcast:chapters", NS).get("url") == clean_text(public_url(base, key))


# --- settings and the golden feed ---------------------------------------------------------


def test_public_url_explicit_setting_wins_over_show_yaml():
    show = make_show(public_base_url="https://show.example/media")
    assert resolve_public_url(show, Settings.load()) == "https://show.example/media/"
    explicit = Settings.load(public_url="https://flag.example")
    assert resolve_public_url(show, explicit) == "https://flag.example/"
    assert resolve_public_url(make_show(), Settings.load()) == Settings.load().public_url


def test_analytics_prefix_goes_before_the_enclosure_url():
    xml = build([make_episode(1)], analytics_prefix="https://op3.example/e/")
    url = parse(xml).find("channel/item/enclosure").get("url")
    assert (
        url == "https://op3.example/e/cdn.kraftsamling.example/podcast/audio/avsnitt-1-00000001.mp3"
    )


def demo_episodes() -> list[Episode]:
    """Two published demo episodes and one scheduled after NOW (left out of the feed)."""
    return [
        make_episode(1, guests=["Kim Påhittad"], explicit=False),
        make_episode(
            2,
            description_html="<p>Om <strong>öppna data</strong> &amp; kommunerna.</p>",
            transcript_key="podcast/transcripts/avsnitt-2.vtt",
            chapters_key="podcast/chapters/avsnitt-2.json",
            image_key="podcast/art/avsnitt-2-1a2b3c4d.jpg",
            episode_type="bonus",
            last_updated=NOW - timedelta(days=3),
        ),
        make_episode(3, publish_at=NOW + timedelta(days=7)),
    ]


def test_golden_demo_feed():
    xml = build(demo_episodes(), cover_key="podcast/art/cover-0123abcd.jpg")
    if os.environ.get("REGEN_GOLDENS"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(xml)
    assert xml == GOLDEN.read_bytes(), (
        "The demo feed changed. If intended: REGEN_GOLDENS=1 python -m pytest "
        "tests/test_feed.py -k golden, and review the diff."
    )


# --- the whole flow ------------------------------------------------------------------------


@pytest.mark.prefect
def test_regenerate_feed_flow_publishes_once(prefect_harness, place):
    from flows.podcast.flow import regenerate_feed

    episodes = [make_episode(1), make_episode(2)]
    upload_audio(place["storage"], episodes)
    save_catalog(place["storage"], Catalog(episodes, None), NOW)
    args = {
        "episodes": str(place["show_dir"]),
        "storage": str(place["storage"].root),
        "public_url": BASE,
        "now": NOW,
    }
    first = regenerate_feed(**args)
    assert (first.uploaded, first.items, first.feed_url) == (True, 2, BASE + FEED_KEY)
    assert item_guids(live_feed(place)) == [episodes[1].guid, episodes[0].guid]
    second = regenerate_feed(**args)
    assert second.uploaded is False

    with pytest.raises(CatalogError, match="no-such-guid"):
        regenerate_feed(**args, remove_guids=["no-such-guid"])
    gone = regenerate_feed(**args, remove_guids=[episodes[0].guid])
    assert (gone.uploaded, gone.items, gone.removed) == (True, 1, (episodes[0].guid,))
    assert "removed for good" in gone.summary()
    hourly = regenerate_feed(**args)  # no --remove: it stays out, the gate passes
    assert (hourly.uploaded, hourly.items) == (False, 1)
    assert item_guids(live_feed(place)) == [episodes[1].guid]
    assert load_catalog(place["storage"]).by_guid(episodes[0].guid).removed_at == NOW
