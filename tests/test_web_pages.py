"""The podcast's web pages (issue 24): a show page and a page per episode, beside the feed.

The demo's episodes are published as the demo does it (`flows.demo.prepare_demo`, then the
podcast job `flows.podcast.run.publish` at the demo's "now"), once per module; a test that
changes storage works on a copy. Every page passes the HTML check of tests/webcheck.py.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from conftest import REPO_ROOT
from lxml import etree
from webcheck import html_problems, json_ld, links

from flows.core.models import STOCKHOLM, Chapter, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_SHORT, LocalStorage
from flows.demo import DEMO_NOW, DEMO_PUBLIC_URL, prepare_demo
from flows.podcast import feedpublish
from flows.podcast.catalog import load_catalog, remove_episodes
from flows.podcast.feed import FEED_KEY, _example_episode
from flows.podcast.feedpublish import feed_inputs, publish_feed
from flows.podcast.run import publish
from flows.podcast.show import load_show
from flows.web.keys import HOME_KEY, PAGES_MANIFEST_KEY, SHOW_PAGE_KEY, episode_page_key
from flows.web.podcast import PodcastSite, plan_pages
from flows.web.publish import publish_podcast_pages
from flows.web.render import site_version
from flows.web.transcript import paragraphs

PUBLISHED = ("ai-i-kommunens-vardag", "foreningar-som-provar-ai")
SCHEDULED = "julspecial-2026"  # publish_at 2026-12-15, after the demo's now
AFTER_CHRISTMAS = datetime(2026, 12, 28, 8, 0, tzinfo=STOCKHOLM)


class Counting:
    """A real LocalStorage that records every request made through it."""

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

    def puts(self) -> list[str]:
        return [key for name, key in self.calls if name in ("put_bytes", "put_file")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo's drop folder and storage after its podcast job (at the demo's now)."""
    work = tmp_path_factory.mktemp("demo")
    paths = prepare_demo(work, REPO_ROOT)
    report = publish(settings_for(work), LocalStorage(paths.storage), DEMO_NOW)
    assert report.failed == [] and report.feed_error == "", report.summary()
    return work


def settings_for(work: Path) -> Settings:
    return Settings.load(
        episodes_dir=str(work / "episodes"),
        storage=str(work / "storage"),
        public_url=DEMO_PUBLIC_URL,
        settle_seconds=0,
    )


@pytest.fixture
def copy(demo: Path, tmp_path: Path) -> Path:
    """A copy of the demo's folders that a test may change."""
    shutil.copytree(demo, tmp_path / "demo")
    return tmp_path / "demo"


def feed_again(work: Path, storage: Any, now: datetime = DEMO_NOW):
    settings = settings_for(work)
    show_dir = work / "episodes"
    return publish_feed(
        storage,
        load_show(show_dir / "show.yaml"),
        show_dir,
        load_catalog(storage),
        settings,
        now,
    )


def page(storage: LocalStorage, key: str) -> bytes:
    found = storage.get_bytes(key)
    assert found is not None, f"{key} is not in storage"
    return found[0]


def url(key: str) -> str:
    return DEMO_PUBLIC_URL + key


# --- after the demo -------------------------------------------------------------------------


def test_the_demo_publishes_a_show_page_and_a_page_per_published_episode(demo):
    storage = LocalStorage(demo / "storage")
    assert storage.list_keys("podcast/episodes/") == sorted(
        episode_page_key(slug) for slug in PUBLISHED
    )
    assert episode_page_key(SCHEDULED) not in storage.list_keys()  # not before its time
    for key in (SHOW_PAGE_KEY, *(episode_page_key(s) for s in PUBLISHED), HOME_KEY):
        meta = storage.metadata(key)
        assert (meta["content_type"], meta["cache_control"], meta["public"]) == (
            "text/html; charset=utf-8",
            CACHE_SHORT,
            True,
        )
    assert storage.metadata(PAGES_MANIFEST_KEY)["public"] is False


@pytest.mark.parametrize("key", [SHOW_PAGE_KEY, *(episode_page_key(s) for s in PUBLISHED)])
def test_every_page_passes_the_html_check(demo, key):
    data = page(LocalStorage(demo / "storage"), key)
    assert html_problems(data) == []
    root = lxml.html.document_fromstring(data)
    assert root.xpath("//link[@rel='canonical']/@href") == [url(key)]
    assert root.xpath("//meta[@property='og:url']/@content") == [url(key)]
    assert root.xpath("//meta[@name='twitter:card']/@content") == ["summary"]
    assert root.xpath("//meta[@name='viewport']/@content") == [
        "width=device-width, initial-scale=1"
    ]
    [document] = json_ld(root)
    assert document["@type"] == ("PodcastSeries" if key == SHOW_PAGE_KEY else "PodcastEpisode")
    assert document["url"] == url(key)


def test_the_show_page_has_the_cover_the_episodes_and_how_to_subscribe(demo):
    data = page(LocalStorage(demo / "storage"), SHOW_PAGE_KEY)
    root = lxml.html.document_fromstring(data)
    assert root.findtext(".//h1") == "Digitalsamtal"
    [cover] = root.iter("img")
    assert cover.get("src").startswith(url("podcast/art/cover-")) and "Digitalsamtal" in cover.get(
        "alt"
    )
    found = links(data)
    assert found[url(FEED_KEY)] == url(FEED_KEY)  # the feed's address, to copy
    titles = [" ".join(h.text_content().split()) for h in root.iter("h3")]
    assert titles == ["Föreningar som provar AI", "AI i kommunens vardag"]  # newest first
    assert "Julspecial" not in root.text_content()
    assert "Apple Podcasts" not in found.values() and "Spotify" not in found.values()


def test_an_episode_page_has_player_date_chapters_transcript_and_neighbours(demo):
    storage = LocalStorage(demo / "storage")
    data = page(storage, episode_page_key("ai-i-kommunens-vardag"))
    root = lxml.html.document_fromstring(data)
    text = " ".join(root.text_content().split())
    feed = etree.fromstring(page(storage, FEED_KEY))
    item = next(i for i in feed.iter("item") if i.findtext("title") == "AI i kommunens vardag")
    enclosure = item.find("enclosure").get("url")
    [audio] = root.iter("audio")
    assert audio.get("src") == enclosure and audio.get("controls") is not None
    assert root.findtext(".//h1") == "AI i kommunens vardag"
    assert "5 november 2026" in text and "10 s" in text  # Babel's Swedish date, the duration
    items = root.xpath("//ol[@class='chapters']/li")
    chapters = [" ".join(li.text_content().split()) for li in items]
    assert chapters == ["0:00 Intro", "0:04 AI i kommunens vardag", "0:07 Avslutning"]
    assert "Hej och välkommen till Digitalsamtal." in text  # the transcript, as text
    assert "00:00:01.100" not in text and "WEBVTT" not in text
    assert "Cecilia Påhittad" in text  # the description and the guest
    newer = root.xpath("//a[@rel='next']/@href")
    assert newer == [url(episode_page_key("foreningar-som-provar-ai"))]
    assert root.xpath("//a[@rel='prev']") == []  # the first episode
    other = lxml.html.document_fromstring(
        page(storage, episode_page_key("foreningar-som-provar-ai"))
    )
    assert other.xpath("//a[@rel='prev']/@href") == [url(episode_page_key("ai-i-kommunens-vardag"))]
    assert other.xpath("//a[@rel='next']") == []  # the newest: the scheduled one is not linked
    assert other.xpath("//section[@aria-labelledby='transkription']") == []  # it has none


def test_the_feed_links_the_pages(demo):
    storage = LocalStorage(demo / "storage")
    channel = etree.fromstring(page(storage, FEED_KEY)).find("channel")
    assert channel.findtext("link") == url(SHOW_PAGE_KEY)
    assert channel.findtext("image/link") == url(SHOW_PAGE_KEY)
    item_links = [item.findtext("link") for item in channel.iter("item")]
    assert item_links == [url(episode_page_key(s)) for s in reversed(PUBLISHED)]
    for link in item_links:
        assert storage.head(link.removeprefix(DEMO_PUBLIC_URL)) is not None


# --- re-runs, scheduled and removed episodes --------------------------------------------------


def test_a_rerun_with_nothing_new_uploads_no_page_in_one_request(copy):
    storage = Counting(LocalStorage(copy / "storage"))
    result = feed_again(copy, storage)
    assert not result.uploaded
    assert storage.puts() == []
    web = [call for call in storage.calls if call[1].endswith((".html", "pages.json", "home.json"))]
    assert web == [("get_bytes", PAGES_MANIFEST_KEY)]
    assert not [call for call in storage.calls if "transcripts/" in call[1]]


@pytest.mark.parametrize("size", [1, 40])
def test_finding_that_no_page_changed_costs_one_request_whatever_the_size(tmp_path, size):
    storage = LocalStorage(tmp_path / "storage")
    episodes = [
        _example_episode(
            guid=f"guid-{n}",
            slug=f"avsnitt-{n}",
            title=f"Avsnitt {n}",
            publish_at=DEMO_NOW - timedelta(days=n),
            transcript_key=f"podcast/transcripts/avsnitt-{n}.vtt",
        )
        for n in range(1, size + 1)
    ]
    for episode in episodes:
        vtt = b"WEBVTT\n\n00:01.000 --> 00:02.000\nText.\n"
        key = str(episode.transcript_key)
        storage.put_bytes(key, vtt, content_type="text/vtt", cache_control=CACHE_SHORT, public=True)
    site = PodcastSite(demo_show(), DEMO_PUBLIC_URL, "podcast/art/cover-00000000.jpg")
    first = publish_podcast_pages(storage, site, episodes, episodes, "etag-1")
    assert len(first.uploaded) == size + 1  # every episode page and the show page
    counting = Counting(storage)
    again = publish_podcast_pages(counting, site, episodes, episodes, "etag-1")  # type: ignore[arg-type]
    assert again.uploaded == () and counting.calls == [("get_bytes", PAGES_MANIFEST_KEY)]

    # Another catalog (new ETag) with one title changed: that page, its neighbours' and the
    # show page are rendered again; only those whose bytes changed are uploaded.
    changed = [replace_title(e, "Nytt namn") if e.slug == "avsnitt-1" else e for e in episodes]
    counting = Counting(storage)
    third = publish_podcast_pages(counting, site, changed, changed, "etag-2")  # type: ignore[arg-type]
    expected = {SHOW_PAGE_KEY, episode_page_key("avsnitt-1")}
    if size > 1:
        expected.add(episode_page_key("avsnitt-2"))  # its "next" link names the new title
    assert set(third.uploaded) == expected
    transcripts = [key for name, key in counting.calls if "transcripts/" in key]
    assert sorted(transcripts) == sorted(
        f"podcast/transcripts/{Path(k).stem}.vtt" for k in expected if k != SHOW_PAGE_KEY
    )


def replace_title(episode, title: str):
    return episode.model_copy(update={"title": title})


def test_a_scheduled_episode_gets_its_page_when_its_time_comes(copy):
    storage = LocalStorage(copy / "storage")
    key = episode_page_key(SCHEDULED)
    feed_again(copy, storage, DEMO_NOW + timedelta(days=13))  # 14 december: not yet
    assert storage.head(key) is None
    feed_again(copy, storage, AFTER_CHRISTMAS)
    data = page(storage, key)
    assert html_problems(data) == []
    root = lxml.html.document_fromstring(data)
    assert root.findtext(".//h1") == "Julspecial: året som gått"
    assert "Bonusavsnitt" in root.text_content() and "15 december 2026" in root.text_content()
    previous = lxml.html.document_fromstring(page(storage, episode_page_key(PUBLISHED[1])))
    assert previous.xpath("//a[@rel='next']/@href") == [url(key)]
    show = lxml.html.document_fromstring(page(storage, SHOW_PAGE_KEY))
    assert show.findtext(".//h3/a") == "Julspecial: året som gått"


def test_a_removed_episodes_page_becomes_a_notice_and_nothing_is_deleted(copy):
    storage = LocalStorage(copy / "storage")
    before = set(storage.list_keys())
    [gone] = [e for e in load_catalog(storage).episodes if e.slug == PUBLISHED[0]]
    remove_episodes(storage, [gone.guid], DEMO_NOW + timedelta(hours=1))
    feed_again(copy, storage, DEMO_NOW + timedelta(hours=2))
    assert before <= set(storage.list_keys())  # nothing deleted, the audio stays
    assert storage.head(gone.audio_key) is not None
    data = page(storage, episode_page_key(gone.slug))
    assert html_problems(data) == []
    root = lxml.html.document_fromstring(data)
    assert root.findtext(".//h1") == "Avsnittet finns inte längre"
    assert root.xpath("//meta[@name='robots']/@content") == ["noindex"]
    assert gone.title not in data.decode() and not list(root.iter("audio"))
    assert url(SHOW_PAGE_KEY) in links(data)
    other = lxml.html.document_fromstring(page(storage, episode_page_key(PUBLISHED[1])))
    assert other.xpath("//a[@rel='prev']") == []  # no link to the removed one
    assert gone.title not in page(storage, SHOW_PAGE_KEY).decode()


# --- pure: same inputs, same bytes; nothing private --------------------------------------------


def demo_show(**changes: Any) -> Show:
    show = load_show(REPO_ROOT / "episodes" / "show.yaml")
    return show.model_copy(update=changes)


def rendered(site: PodcastSite, episodes: list) -> dict[str, bytes]:
    return {p.key: p.render(paragraphs("")) for p in plan_pages(site, episodes, episodes, "v")}


def test_the_same_catalog_gives_the_same_bytes():
    episodes = [_example_episode(guid=f"g{n}", slug=f"a{n}", title=f"A {n}") for n in (1, 2)]
    site = PodcastSite(demo_show(), DEMO_PUBLIC_URL, "podcast/art/cover-00000000.jpg")
    assert rendered(site, episodes) == rendered(site, list(episodes))
    digests = {k: hashlib.sha256(v).hexdigest() for k, v in rendered(site, episodes).items()}
    assert len(digests) == 3


def test_nothing_private_reaches_a_page():
    show = demo_show(
        producers=["producent@kraftsamling.example"], owner_email="agare@kraftsamling.example"
    )
    episode = _example_episode(
        description="Besök [oss](http://kraftsamling.example/sida), [skriv](mailto:x@y.example).",
        description_html=(
            '<p>Besök <a href="http://kraftsamling.example/sida">oss</a> eller '
            '<a href="mailto:x@y.example">skriv</a> <script>alert(1)</script></p>'
        ),
        warnings=["Ljudnivån är för låg (hemlig anteckning)"],
        loudness={"integrated": -23.0},
        master_key="podcast/masters/hemlig.wav",
        chapters=[Chapter(start=0, title="Början")],
    )
    site = PodcastSite(show, DEMO_PUBLIC_URL, "podcast/art/cover-00000000.jpg")
    for key, data in rendered(site, [episode]).items():
        text = data.decode()
        for private in ("producent@", "agare@", "hemlig", "-23.0", "<script>alert", "mailto:"):
            assert private not in text, (key, private)
        assert html_problems(data) == [], key
    episode_page = rendered(site, [episode])[episode_page_key("exempel")]
    assert "https://kraftsamling.example/sida" in links(episode_page)  # http made https


def test_apple_podcasts_and_spotify_are_linked_when_configured():
    apple = "https://podcasts.apple.com/se/podcast/digitalsamtal/id1234567890"
    spotify = "https://open.spotify.com/show/4rOoJ6Egrf8K2IrywzwOMk"
    site = PodcastSite(
        demo_show(apple_podcasts_url=apple, spotify_url=spotify),
        DEMO_PUBLIC_URL,
        "podcast/art/cover-00000000.jpg",
    )
    found = links(rendered(site, [])[SHOW_PAGE_KEY])
    assert found[apple] == "Apple Podcasts" and found[spotify] == "Spotify"


def test_new_templates_make_the_live_feed_stale(monkeypatch):
    """The hourly no-op check (`feed_staleness`) compares `feed_inputs`, which includes the
    web pages' version: a new template rebuilds the feed, and so the pages, once."""
    show = demo_show()
    settings = Settings.load(public_url=DEMO_PUBLIC_URL)
    before = feed_inputs("etag", show, "k", DEMO_PUBLIC_URL, settings)
    feedpublish.builder_version.cache_clear()
    monkeypatch.setattr(feedpublish, "site_version", lambda: "another version")
    try:
        assert feed_inputs("etag", show, "k", DEMO_PUBLIC_URL, settings) != before
    finally:
        feedpublish.builder_version.cache_clear()
    assert site_version() != "another version"


def test_a_missing_transcript_leaves_its_page_to_be_rendered_again(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    episode = _example_episode(transcript_key="podcast/transcripts/exempel-1.vtt")
    site = PodcastSite(demo_show(), DEMO_PUBLIC_URL, "podcast/art/cover-00000000.jpg")
    first = publish_podcast_pages(storage, site, [episode], [episode], "etag")
    assert episode_page_key("exempel") in first.uploaded
    assert "Transkription" not in page(storage, episode_page_key("exempel")).decode()
    storage.put_bytes(
        episode.transcript_key,
        b"WEBVTT\n\n00:01.000 --> 00:02.000\nNu finns texten.\n",
        content_type="text/vtt",
        cache_control=CACHE_SHORT,
        public=True,
    )
    second = publish_podcast_pages(storage, site, [episode], [episode], "etag")
    assert second.uploaded == (episode_page_key("exempel"),)
    assert "Nu finns texten." in page(storage, episode_page_key("exempel")).decode()
