"""One episode never holds the others (issue 19, points 1, 2, 3 and 7b).

- Sizes podcast apps refuse are refused in the episode's prepare step, before any upload,
  with a note in Swedish and English; the good episodes of the run are published.
- The feed is never blocked by one episode and never shrinks by accident: a new episode that
  cannot go in is left out and named; one already live keeps its last good item.
- The show's own files are checked before anything is uploaded, and every run makes sure the
  live feed is what the catalog gives, in three storage requests whatever the catalog's size.
- The same audio under two names is one episode: the second is refused, naming the first.
- The feed carries item itunes:author, channel pubDate and the RSS <image>.

After every case the feed is read by feedparser and podcastparser.
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest
import test_podcast
from lxml import etree
from PIL import Image
from test_podcast import T0, T1, put, run, settings_for

from flows.core.errors import InputError
from flows.core.models import Chapter, Episode
from flows.core.storage import CACHE_LONG, LocalStorage
from flows.podcast.catalog import CATALOG_KEY, Catalog, load_catalog, save_catalog
from flows.podcast.feed import FEED_KEY, build_feed
from flows.podcast.feedpublish import FEED_STATE_KEY, publish_feed
from flows.podcast.limits import (
    CHAPTERS_MAX,
    DESCRIPTION_MAX_CHARS,
    TRANSCRIPT_MAX_BYTES,
    episode_problems,
    refusal,
)
from flows.podcast.run import publish
from flows.podcast.show import load_show

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
# The fixtures of the publishing tests: real audio made once, an episodes folder.
audio, cover_bytes, show_dir = test_podcast.audio, test_podcast.cover_bytes, test_podcast.show_dir


def readable(xml: bytes) -> list[str]:
    """The feed's item guids, after both client parsers read it cleanly and agree."""
    parsed = feedparser.parse(io.BytesIO(xml))
    assert not parsed.bozo, parsed.bozo_exception
    gpodder = podcastparser.parse("https://x.example/podcast/feed.xml", io.BytesIO(xml))
    guids = [entry.id for entry in parsed.entries]
    assert [episode["guid"] for episode in gpodder["episodes"]] == guids
    return guids


def live_feed(storage: LocalStorage) -> bytes:
    found = storage.get_bytes(FEED_KEY)
    assert found is not None, "no feed in storage"
    return found[0]


def record(n: int, **changes: Any) -> Episode:
    """Catalog record n, published n days before T0, with its audio at a fixed key."""
    moment = T0 - timedelta(days=n)
    values: dict[str, Any] = {
        "guid": str(uuid.UUID(int=n)),
        "slug": f"avsnitt-{n}",
        "title": f"Avsnitt {n}",
        "description": f"Om del {n}.",
        "publish_at": moment,
        "duration": 60,
        "size": 100 + n,
        "mime_type": "audio/mpeg",
        "sha256": f"{n:064x}",
        "audio_key": f"podcast/audio/avsnitt-{n}-{n:08x}.mp3",
        "first_published": moment,
        "last_updated": moment,
    }
    return Episode(**{**values, **changes})


def upload_audio(storage: LocalStorage, episodes: list[Episode]) -> None:
    for episode in episodes:
        storage.put_bytes(
            episode.audio_key,
            b"\xff" * episode.size,
            content_type="audio/mpeg",
            cache_control=CACHE_LONG,
            public=True,
        )


def feed_of(show_dir: Path, storage: LocalStorage, episodes: list[Episode], now=T0):
    """publish_feed from a saved catalog of `episodes` (as a publish run would)."""
    found = storage.get_bytes(CATALOG_KEY)
    catalog = Catalog(list(episodes), found[1] if found else None)
    saved = save_catalog(storage, catalog, now)
    show = load_show(show_dir / "show.yaml")
    return publish_feed(storage, show, show_dir, saved, settings_for(show_dir), now)


# --- 1. limits, before any upload --------------------------------------------------------------


def test_each_limit_names_the_field_the_size_the_limit_and_the_fix():
    chapters = [Chapter(start=n, title="K") for n in range(CHAPTERS_MAX + 1)]
    found = episode_problems("T" * 256, "x" * (DESCRIPTION_MAX_CHARS + 1), chapters, ["G" * 300])
    text = refusal("ep.md", found)
    assert "ep.md: title: är 256 tecken; högst 255 tillåts. Korta titeln" in text
    assert "ep.md: description: is 4,001 characters; at most 4,000 are allowed." in text
    assert "Shorten the description" in text and "Korta beskrivningen" in text
    assert "chapters: has 256 entries; at most 255 are allowed. Merge chapters" in text
    assert "guests[1]: is 300 characters" in text
    assert episode_problems("T", "x" * DESCRIPTION_MAX_CHARS, chapters[:-1], ["G"]) == []


def test_an_episode_over_a_limit_is_refused_before_upload_and_the_others_published(
    show_dir, audio, tmp_path
):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Bra\n---\nKort.\n")
    put(show_dir, "lang.mp3", audio["mp3_other"])
    put(show_dir, "lang.md", "---\ntitle: Lång\n---\n" + "ord " * 2_500)
    put(show_dir, "text.mp3", audio["m4a"])
    put(show_dir, "text.md", "---\ntitle: Med text\ntranscript: text.vtt\n---\n")
    put(show_dir, "text.vtt", b"WEBVTT\n\n" + b"x" * TRANSCRIPT_MAX_BYTES)
    put(show_dir, "ocksa.mp3", audio["mp3_tagged"])
    put(show_dir, "ocksa.md", "---\ntitle: Också bra\n---\n")

    report = run(show_dir, storage)

    status = {o.name: o for o in report.outcomes}
    assert {n: o.status for n, o in status.items()} == {
        "bra.mp3": "published", "ocksa.mp3": "published",
        "lang.mp3": "failed", "text.mp3": "failed",
    }  # fmt: skip
    long_note = status["lang.mp3"].reason
    assert "lang.md: description: är 9 999 tecken; högst 4 000 tillåts." in long_note
    assert "lang.md: description: is 9,999 characters; at most 4,000 are allowed." in long_note
    assert "Shorten the description" in long_note
    assert (
        "text.vtt: is 5,000,008 bytes; at most 5,000,000 are allowed" in status["text.mp3"].reason
    )
    assert "lang" in (show_dir / "failed" / "lang.error.txt").read_text(encoding="utf-8")
    # Nothing of the refused episodes reached storage; both good ones are in the feed.
    keys = storage.list_keys("podcast/")
    assert not [k for k in keys if "/lang-" in k or "/text-" in k], keys
    assert len(readable(live_feed(storage))) == 2
    assert not report.feed_error


# --- 1. the feed is never blocked by one episode --------------------------------------------


def test_a_record_too_big_for_the_feed_is_left_out_and_the_rest_published(show_dir, tmp_path):
    # The hunt's case: a catalog written before the limits holds a 10 MB description.
    storage = LocalStorage(tmp_path / "storage")
    episodes = [record(1), record(2, description="x" * 10_000_000), record(3)]
    upload_audio(storage, episodes)

    result = feed_of(show_dir, storage, episodes)

    assert result.uploaded and result.items == 2
    assert readable(live_feed(storage)) == [episodes[0].guid, episodes[2].guid]
    [unfit] = result.unfit
    assert (unfit.guid, unfit.kept) == (episodes[1].guid, False)
    summary = result.summary()
    assert "avsnitt-2" in summary and "was left out of the feed" in summary
    assert "description: is 10,000,000 characters; at most 4,000" in summary
    assert "Shorten the description" in summary


def test_a_live_episode_whose_record_breaks_keeps_its_last_good_item(show_dir, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    episodes = [record(1), record(2), record(3)]
    upload_audio(storage, episodes)
    feed_of(show_dir, storage, episodes)
    before = etree.fromstring(live_feed(storage)).findall("channel/item")

    broken = record(2, description="x" * 10_000_000, last_updated=T0)
    new = record(4, publish_at=T0 - timedelta(hours=1))
    upload_audio(storage, [new])
    result = feed_of(show_dir, storage, [episodes[0], broken, episodes[2], new])

    assert result.uploaded and result.items == 4
    assert readable(live_feed(storage)) == [new.guid, *(e.guid for e in episodes)]
    items = {i.findtext("guid"): i for i in etree.fromstring(live_feed(storage)).iter("item")}
    old = {i.findtext("guid"): i for i in before}
    assert etree.tostring(items[broken.guid]) == etree.tostring(old[broken.guid])
    [unfit] = result.unfit
    assert unfit.kept and "keeps its last good item" in result.summary()


def test_a_new_item_the_gate_refuses_is_left_out_even_when_screening_misses_it(
    show_dir, tmp_path, monkeypatch
):
    # The safety net behind the screening: the whole feed is refused (lxml: "CData section too
    # big"), so each new item is gated alone and the one refused alone is left out.
    monkeypatch.setattr("flows.podcast.feedpublish.record_problems", lambda episode: [])
    storage = LocalStorage(tmp_path / "storage")
    episodes = [record(1), record(2, description_html="<p>" + "x" * 10_000_000 + "</p>")]
    upload_audio(storage, episodes)

    result = feed_of(show_dir, storage, episodes)

    assert readable(live_feed(storage)) == [episodes[0].guid]
    [unfit] = result.left_out
    assert unfit.slug == "avsnitt-2" and "the feed gate refuses its item" in unfit.reason


def test_a_missing_enclosure_leaves_a_new_episode_out_and_keeps_a_live_one(show_dir, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    episodes = [record(1), record(2)]
    upload_audio(storage, episodes)
    feed_of(show_dir, storage, episodes)
    storage.delete(episodes[0].audio_key)  # live, but its audio is gone
    ghost = record(3, publish_at=T0 - timedelta(hours=1))  # new, its audio never arrived
    changed = record(2, title="Ny titel", last_updated=T0)  # live, its item is rebuilt

    result = feed_of(show_dir, storage, [episodes[0], changed, ghost])

    assert readable(live_feed(storage)) == [episodes[0].guid, changed.guid]
    assert "<title>Ny titel</title>" in live_feed(storage).decode()
    unfit = {u.slug: u for u in result.unfit}
    assert set(unfit) == {"avsnitt-3"}  # a live enclosure already checked is not HEADed again
    assert not unfit["avsnitt-3"].kept and "is missing from storage" in unfit["avsnitt-3"].reason
    assert f"--remove {ghost.guid}" in result.summary()


# --- 2. the show's own files first; the feed always matches the catalog ---------------------


def _image(
    mode: str = "RGB", size: int = 1400, color: Any = (20, 80, 140), fmt: str = "JPEG", **kw: Any
) -> bytes:
    out = io.BytesIO()
    Image.new(mode, (size, size), color).save(out, fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (_image("CMYK", color=(0, 0, 0, 0)), "colour mode is CMYK"),
        (_image(size=100), "100x100"),
        (_image(fmt="PNG", transparency=(0, 0, 0)), "transparent"),
    ],
    ids=["cmyk", "100px", "transparent"],
)
def test_bad_cover_art_stops_the_run_before_any_upload(show_dir, audio, tmp_path, image, expected):
    (show_dir / "cover.jpg").write_bytes(image)
    put(show_dir, "ep.mp3", audio["mp3"])
    storage = LocalStorage(tmp_path / "storage")
    with pytest.raises(InputError, match=expected):
        run(show_dir, storage)
    assert storage.list_keys() == []
    assert {p.name for p in (show_dir / "inbox").iterdir()} == {"ep.mp3"}


def test_an_empty_inbox_run_rebuilds_a_feed_that_does_not_match_the_catalog(
    show_dir, audio, tmp_path
):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Ett\n---\n")
    run(show_dir, storage)
    storage.delete(FEED_KEY)  # e.g. a run that stopped between its catalog and its feed

    report = run(show_dir, storage, T1)
    assert "Nothing new in the inbox" in report.summary()
    assert "there is no live feed" in report.summary()
    assert len(readable(live_feed(storage))) == 1

    # New cover art (the fix of a refused one): the next empty run publishes it.
    (show_dir / "cover.jpg").write_bytes(_image(color=(200, 10, 10)))
    old_cover = etree.fromstring(live_feed(storage)).findtext("channel/image/url")
    run(show_dir, storage, T1)
    new_cover = etree.fromstring(live_feed(storage)).findtext("channel/image/url")
    assert new_cover != old_cover and storage.head(new_cover.split("example/")[1]) is not None


class Counting:
    """A storage that counts the requests made through it."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in {"head", "get_bytes", "put_bytes", "put_file", "delete", "list_keys"}:
            return method

        def counted(key: str = "", *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, key))
            return method(key, *args, **kwargs)

        return counted


@pytest.mark.parametrize("size", [1, 300])
def test_a_current_feed_is_checked_in_three_requests_whatever_the_catalog_size(
    show_dir, tmp_path, size
):
    storage = LocalStorage(tmp_path / "storage")
    episodes = [record(n) for n in range(1, size + 1)]
    upload_audio(storage, episodes)
    feed_of(show_dir, storage, episodes)
    assert storage.get_bytes(FEED_STATE_KEY) is not None

    counting = Counting(storage)
    report = publish(settings_for(show_dir), counting, T1)  # type: ignore[arg-type]
    assert "Nothing new in the inbox" in report.summary() and not report.notes
    assert sorted(counting.calls) == [
        ("get_bytes", FEED_STATE_KEY), ("head", CATALOG_KEY), ("head", FEED_KEY),
    ]  # fmt: skip


def test_a_scheduled_episode_enters_the_feed_on_an_empty_inbox_run(show_dir, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    later = record(9, publish_at=T0 + timedelta(hours=2))
    episodes = [record(1), later]
    upload_audio(storage, episodes)
    feed_of(show_dir, storage, episodes)
    assert readable(live_feed(storage)) == [episodes[0].guid]

    run(show_dir, storage, T0 + timedelta(hours=1))  # not yet: nothing to do
    assert readable(live_feed(storage)) == [episodes[0].guid]
    report = run(show_dir, storage, T0 + timedelta(hours=3))
    assert readable(live_feed(storage)) == [later.guid, episodes[0].guid], report.summary()
    assert "publish time came" in report.summary()


# --- 3. the same audio under two names ------------------------------------------------------


def test_the_same_audio_under_a_second_name_is_refused_naming_the_first(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    put(show_dir, "forsta.mp3", audio["mp3"])
    put(show_dir, "forsta.md", "---\ntitle: Första\n---\n")
    run(show_dir, storage)
    [first] = load_catalog(storage).episodes

    put(show_dir, "kopia.mp3", audio["mp3"])  # the dropped file again, another name
    put(show_dir, "nedladdad.mp3", storage.path_of(first.audio_key))  # the published file
    report = run(show_dir, storage, T1)

    assert [o.status for o in report.outcomes] == ["failed", "failed"]
    for outcome in report.outcomes:
        assert "is the same audio (the same SHA-256) as the published episode 'forsta'" in (
            outcome.reason
        )
        assert "är samma ljud" in outcome.reason
    assert [e.slug for e in load_catalog(storage).episodes] == ["forsta"]
    assert readable(live_feed(storage)) == [first.guid]


def test_two_identical_files_in_one_run_are_published_once(show_dir, audio, tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    for name in ("a", "b"):
        put(show_dir, f"{name}.mp3", audio["mp3"])
        put(show_dir, f"{name}.md", f"---\ntitle: {name.upper()}\n---\n")
    report = run(show_dir, storage, upload_concurrency=1)  # a and b in two batches

    status = {o.name: o for o in report.outcomes}
    assert (status["a.mp3"].status, status["b.mp3"].status) == ("published", "failed")
    assert "b.mp3: is the same audio as a.mp3, published as the episode 'a'" in (
        status["b.mp3"].reason
    )
    assert [e.slug for e in load_catalog(storage).episodes] == ["a"]
    assert not storage.list_keys("podcast/audio/b-")
    assert len(readable(live_feed(storage))) == 1


# --- 7b. what real feeds carry -------------------------------------------------------------


def test_the_feed_has_item_author_channel_pubdate_and_the_rss_image(show_dir):
    show = load_show(show_dir / "show.yaml")
    episodes = [record(1), record(2)]
    xml = build_feed(show, episodes, public_url="https://cdn.example/", now=T0, cover_key="c.jpg")
    channel = etree.fromstring(xml).find("channel")
    assert channel.findtext("pubDate") == "Sat, 28 Feb 2026 08:00:00 GMT"  # the newest item
    # The image links where the channel does: the show's web page (issue 24).
    assert [channel.findtext(f"image/{t}") for t in ("url", "title", "link")] == [
        "https://cdn.example/c.jpg", show.title, "https://cdn.example/podcast/index.html",
    ]  # fmt: skip
    authors = [i.findtext(f"{{{ITUNES}}}author") for i in channel.iter("item")]
    assert authors == [show.author, show.author]
    parsed = feedparser.parse(io.BytesIO(xml))
    assert parsed.feed.image.href == "https://cdn.example/c.jpg"
    assert parsed.feed.published_parsed[:3] == (2026, 2, 28)
    assert [e.author for e in parsed.entries] == [show.author, show.author]
    assert len(readable(xml)) == 2
