"""A storage folder written before the restructure (issue 13) is read and extended today.

tests/data/storage-2026-12/ is a LocalStorage folder made by `python -m flows demo` at
commit e3b1370, the last commit before `flows/` was split into core/newsletter/podcast:
three demo episodes published at the demo's now (2026-12-01 08:00 Stockholm) under the
public URL https://kraftsamling.example/, julspecial-2026 scheduled for 2026-12-15. The
folder is data: never regenerate it. Every test works on a copy in tmp_path.

The promise checked here: the catalog format and the storage keys are unchanged, so a bucket
that production wrote with the old code keeps working with the new one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from lxml import etree

from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, LocalStorage
from flows.podcast.catalog import (
    CATALOG_KEY,
    backup_keys,
    dump_catalog,
    load_catalog,
)
from flows.podcast.feed import FEED_KEY, feed_episodes
from flows.podcast.feedgate import check_feed
from flows.podcast.feedpublish import FEED_STATE_KEY, publish_feed
from flows.podcast.run import publish
from flows.podcast.show import load_show

DATA = Path(__file__).parent / "data" / "storage-2026-12"
THEN = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)  # the demo's now when DATA was made
LATER = datetime(2026, 12, 28, 8, 0, tzinfo=STOCKHOLM)  # after julspecial's publish_at
PUBLIC_URL = "https://kraftsamling.example/"

# What the files in DATA say (read from catalog.json by hand, not by the code under test).
OLD = {
    "ai-i-kommunens-vardag": (
        "0e301d2e-a897-4e46-a5a2-2a3e84ae65b0",
        "podcast/audio/ai-i-kommunens-vardag-ad2b8e7f.mp3",
    ),
    "foreningar-som-provar-ai": (
        "6b681c1b-23b5-4a63-93c1-f92d194dd676",
        "podcast/audio/foreningar-som-provar-ai-582b3903.m4a",
    ),
    "julspecial-2026": (
        "9f3552a1-9e3b-48e1-a49f-d8f1de652d36",
        "podcast/audio/julspecial-2026-f38a2699.mp3",
    ),
}
# The keys of content-addressed objects: <prefix><slug>-<first 8 hex of SHA-256>.<ext>
HASHED_KEY = re.compile(
    r"podcast/(audio|chapters|transcripts|art)/[a-z0-9]+(?:-[a-z0-9]+)*-([0-9a-f]{8})\.[a-z0-9]+"
)
NS = {"itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd"}


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under root (objects and .meta), by relative path; the lock file left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


ORIGINAL = {path: data for path, data in files_of(DATA).items() if path != "README.md"}


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    """A copy of the old folder (its README is not an object, so it stays behind)."""
    root = tmp_path / "storage"
    shutil.copytree(DATA, root, ignore=shutil.ignore_patterns("README.md"))
    return LocalStorage(root)


@pytest.fixture
def show_dir(tmp_path) -> Path:
    """A drop folder: the repository's show.yaml and cover.jpg, an empty inbox."""
    folder = tmp_path / "episodes"
    (folder / "inbox").mkdir(parents=True)
    for name in ("show.yaml", "cover.jpg"):
        shutil.copy(REPO_ROOT / "episodes" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tone_mp3(tmp_path_factory) -> Path:
    """2 s of tone as a small MP3, like tests/test_podcast.py makes."""
    import imageio_ffmpeg

    target = tmp_path_factory.mktemp("audio") / "tone.mp3"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", "sine=frequency=550:duration=2", "-ac", "1", "-ar", "44100"),
            *("-b:a", "64k", str(target)),
        ],
        check=True,
    )
    return target


def settings_for(show_dir: Path, storage: LocalStorage) -> Settings:
    return Settings.load(
        episodes_dir=str(show_dir),
        storage=str(storage.root),
        public_url=PUBLIC_URL,
        settle_seconds=0,
    )


def items_of(xml: bytes) -> list[etree._Element]:
    return etree.fromstring(xml).findall("channel/item")


# --- reading ------------------------------------------------------------------------------


def test_the_old_catalog_is_read_as_the_files_say(storage):
    raw = json.loads(ORIGINAL[CATALOG_KEY])
    catalog = load_catalog(storage)

    assert {ep.slug: (ep.guid, ep.audio_key) for ep in catalog.episodes} == OLD
    assert [ep.slug for ep in catalog.episodes] == [e["slug"] for e in raw["episodes"]]
    assert catalog.etag == hashlib.sha256(ORIGINAL[CATALOG_KEY]).hexdigest()
    for ep in catalog.episodes:
        assert ep.first_published == ep.last_updated == THEN
        assert ep.removed_at is None
        # The record points at objects that are in the folder, with the recorded size/hash.
        audio = storage.path_of(ep.audio_key).read_bytes()
        assert (len(audio), hashlib.sha256(audio).hexdigest()) == (ep.size, ep.sha256)
        assert storage.path_of(ep.chapters_key).is_file()
    by_slug = {ep.slug: ep for ep in catalog.episodes}
    assert by_slug["ai-i-kommunens-vardag"].transcript_key == (
        "podcast/transcripts/ai-i-kommunens-vardag-4faed44a.vtt"
    )
    assert by_slug["foreningar-som-provar-ai"].mime_type == "audio/mp4"
    assert by_slug["julspecial-2026"].publish_at == datetime(2026, 12, 15, 7, tzinfo=STOCKHOLM)
    # The format round-trips: today's writer gives the old file byte for byte.
    assert dump_catalog(catalog.episodes) == ORIGINAL[CATALOG_KEY]


# What a feed rebuild writes beside the old objects: the feed once (issue 19 added the item
# itunes:author, the channel pubDate and the RSS <image>), and the record of its inputs.
FEED_OBJECTS = {FEED_KEY, f".meta/{FEED_KEY}.json", FEED_STATE_KEY, f".meta/{FEED_STATE_KEY}.json"}


def without_new_tags(xml: bytes) -> bytes:
    """A feed without the tags issue 19 added: what the old code wrote for the same data."""
    root = etree.fromstring(xml, etree.XMLParser(strip_cdata=False))
    channel = root.find("channel")
    for element in (channel.find("pubDate"), channel.find("image")):
        channel.remove(element)
    for item in channel.iterfind("item"):
        item.remove(item.find("itunes:author", NS))
        item.remove(item.find("link"))  # issue 24: the episode's web page
    channel.find("link").text = SHOW_WEBSITE  # issue 24 links the show page instead
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


SHOW_WEBSITE = "https://kraftsamling.example/digitalsamtal"  # the old channel <link>
# Issue 24's web pages (flows.web): new objects beside the old ones.
WEB_PAGES = ("index.html", "home.json", "podcast/index.html", "podcast/pages.json")


def is_web_page(path: str) -> bool:
    """A web page of issue 24/25 or its .meta record."""
    key = path.removeprefix(".meta/").removesuffix(".json") if path.startswith(".meta/") else path
    return key in WEB_PAGES or key.startswith("podcast/episodes/")


def test_feed_at_the_same_now_uploads_nothing_and_the_gate_accepts_it(storage, show_dir):
    catalog = load_catalog(storage)
    show = load_show(show_dir / "show.yaml")
    settings = settings_for(show_dir, storage)

    first = publish_feed(storage, show, show_dir, catalog, settings, THEN)
    assert (first.uploaded, first.cover_uploaded) == (True, False)  # once, for the new tags
    again = publish_feed(storage, show, show_dir, catalog, settings, THEN)

    assert (again.uploaded, again.cover_uploaded) == (False, False)
    assert (again.items, again.scheduled) == (2, 1)  # julspecial is still scheduled
    assert again.cover_url == PUBLIC_URL + "podcast/art/cover-3e820fce.jpg"
    after = files_of(storage.root)
    assert {k: v for k, v in after.items() if k not in FEED_OBJECTS and not is_web_page(k)} == {
        k: v for k, v in ORIGINAL.items() if k not in FEED_OBJECTS
    }  # every other object and .meta byte-identical (the web pages are new)
    # The pure builder of today gives the old feed's bytes plus the new tags, and today's
    # gate passes the old feed (publish_feed skips the gate when the bytes are equal).
    old_feed = ORIGINAL[FEED_KEY]
    assert without_new_tags(after[FEED_KEY]) == old_feed
    for live in (None, old_feed):
        assert (
            check_feed(
                old_feed,
                live_xml=live,
                episodes=feed_episodes(catalog.episodes, THEN),
                catalog_guids={ep.guid for ep in catalog.episodes},
            )
            == []
        )


def test_redropping_the_demo_episodes_keeps_their_guids_and_every_old_object(storage, show_dir):
    """Today's code tags audio differently (the ID3 comment is plain text since 2026-12-01,
    not the sidecar's Markdown), so a re-drop of old episodes gives new tagged audio: each
    is "updated" under its old guid, and nothing stored before is changed or deleted (apps
    that downloaded the old enclosure keep it)."""
    for source in (REPO_ROOT / "demo" / "episodes").iterdir():
        shutil.copy(source, show_dir / "inbox" / source.name)

    report = publish(settings_for(show_dir, storage), storage, THEN)

    assert report.failed == [] and report.feed_error == ""
    assert {o.slug: (o.status, o.guid) for o in report.outcomes} == {
        slug: ("updated", guid) for slug, (guid, _) in OLD.items()
    }
    after = files_of(storage.root)
    kept = {k: v for k, v in ORIGINAL.items() if k not in FEED_OBJECTS and "catalog" not in k}
    assert {k: after.get(k) for k in kept} == kept


# --- extending ----------------------------------------------------------------------------

NEW_SIDECAR = """---
title: Nyårsavsnitt
episode: 4
season: 1
publish_at: 2026-12-28T07:00:00+01:00
chapters:
  - {start: "00:00:00", title: Intro}
  - {start: "00:00:01", title: Gott nytt år}
transcript: nyarsavsnitt.vtt
---
Ett nytt avsnitt, publicerat av koden efter omstruktureringen.
"""


def test_a_later_run_extends_the_old_folder(storage, show_dir, tone_mp3):
    inbox = show_dir / "inbox"
    shutil.copy(tone_mp3, inbox / "nyarsavsnitt.mp3")
    (inbox / "nyarsavsnitt.md").write_text(NEW_SIDECAR, encoding="utf-8")
    (inbox / "nyarsavsnitt.vtt").write_text(
        "WEBVTT\n\n00:00.000 --> 00:01.000\nGott nytt år.\n", encoding="utf-8"
    )

    report = publish(settings_for(show_dir, storage), storage, LATER)

    assert report.failed == [] and report.feed_error == ""
    assert [(o.slug, o.status) for o in report.outcomes] == [("nyarsavsnitt", "published")]
    assert report.uploads == 3  # audio, chapters, transcript; nothing old again
    after = files_of(storage.root)

    # The catalog: the old records are kept as they were, field for field, and the new one
    # has the same fields in the same format.
    document = json.loads(after[CATALOG_KEY])
    old_records = json.loads(ORIGINAL[CATALOG_KEY])["episodes"]
    assert document["version"] == 1
    assert document["episodes"][:3] == old_records
    new = document["episodes"][3]
    assert new["slug"] == "nyarsavsnitt" and new["guid"] not in {g for g, _ in OLD.values()}
    assert set(new) == set(old_records[0])
    assert datetime.fromisoformat(new["first_published"]) == LATER
    catalog = load_catalog(storage)
    assert [ep.slug for ep in catalog.episodes] == [*OLD, "nyarsavsnitt"]
    # The old catalog is kept as the first dated backup, byte for byte, and the new one as
    # the newest (every version written is one).
    backups = backup_keys(storage)
    assert len(backups) == 2 and after[backups[0]] == ORIGINAL[CATALOG_KEY]
    assert after[backups[1]] == after[CATALOG_KEY]

    # Every old object (audio, art, chapters, transcript) and its .meta is untouched.
    rewritten = {CATALOG_KEY, f".meta/{CATALOG_KEY}.json", *FEED_OBJECTS}
    for path, data in ORIGINAL.items():
        if path not in rewritten:
            assert after[path] == data, path
    assert after[FEED_KEY] != ORIGINAL[FEED_KEY]

    # The same key layout for old and new objects: <prefix><slug>-<sha256[:8]>.<ext>.
    record = catalog.by_slug("nyarsavsnitt")
    assert record.audio_key == f"podcast/audio/nyarsavsnitt-{record.sha256[:8]}.mp3"
    assert record.chapters_key.startswith("podcast/chapters/nyarsavsnitt-")
    assert record.transcript_key.startswith("podcast/transcripts/nyarsavsnitt-")
    hashed = [key for key in after if HASHED_KEY.fullmatch(key)]
    assert len(hashed) == 8 + 3  # 3 audio, 3 chapters, 1 transcript, the cover; + 3 new
    for key in hashed:
        digest = HASHED_KEY.fullmatch(key).group(2)
        assert hashlib.sha256(after[key]).hexdigest()[:8] == digest, key
        assert f".meta/{key}.json" in after, key
    meta = storage.metadata(record.audio_key)
    assert (meta["content_type"], meta["cache_control"], meta["public"]) == (
        "audio/mpeg",
        CACHE_LONG,
        True,
    )

    # The feed: the new episode first, julspecial now due, the older items as before.
    items = items_of(after[FEED_KEY])
    guids = [item.findtext("guid") for item in items]
    assert guids == [
        record.guid,
        OLD["julspecial-2026"][0],
        OLD["foreningar-som-provar-ai"][0],
        OLD["ai-i-kommunens-vardag"][0],
    ]
    assert [item.find("enclosure").get("url") for item in items] == [
        PUBLIC_URL + key for key in (record.audio_key, *(OLD[s][1] for s in reversed(list(OLD))))
    ]
    old_items = [etree.tostring(item) for item in items_of(ORIGINAL[FEED_KEY])]
    new_tags_out = items_of(without_new_tags(after[FEED_KEY]))
    assert [etree.tostring(item) for item in new_tags_out[2:]] == old_items
    channel = etree.fromstring(after[FEED_KEY]).find("channel")
    assert channel.find("itunes:image", NS).get("href") == (
        PUBLIC_URL + "podcast/art/cover-3e820fce.jpg"
    )

    # Nothing left behind in storage: no lock object, no temporary files.
    assert not [key for key in storage.list_keys("podcast/") if "lock" in key or ".tmp" in key]


# The folder holds only the podcast: no newsletter state was ever written there, so there
# is no newsletter side to read (a guard, so a newsletter part added later gets tests here).
def test_the_old_folder_has_no_newsletter_side():
    assert {path.split("/")[0] for path in ORIGINAL} == {
        "podcast",
        ".meta",
    }
    assert {path.split("/")[1] for path in ORIGINAL if path.startswith(".meta/")} == {"podcast"}
