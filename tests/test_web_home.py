"""One web home for both channels (issue 25): the start page and the archive page's look.

A sent newsletter and a podcast publish go into the same storage: the demo's episodes are
published as the demo does it, the demo issue is built from the demo's sources and its web
copy published as a send does (`archive.publish_web_copy`), once per module.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from conftest import REPO_ROOT
from webcheck import html_problems, links

from flows.core.errors import StorageError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import CACHE_SHORT, LocalStorage, ObjectInfo
from flows.demo import DEMO_MONTH, DEMO_NOW, DEMO_PUBLIC_URL, demo_sources, prepare_demo
from flows.newsletter.archive import archive_page_key, publish_web_copy
from flows.newsletter.build import build_issue
from flows.newsletter.edition import SWEDISH
from flows.podcast.catalog import load_catalog
from flows.podcast.feedpublish import publish_feed
from flows.podcast.run import publish
from flows.podcast.show import load_show
from flows.web.home import publish_home
from flows.web.keys import HOME_KEY, HOME_STATE_KEY, NEWSLETTER_ARCHIVE_KEY, SHOW_PAGE_KEY

ARCHIVE = DEMO_PUBLIC_URL + "newsletters/index.html"
ATOM = DEMO_PUBLIC_URL + "newsletters/feed.xml"
SHOW_PAGE = DEMO_PUBLIC_URL + SHOW_PAGE_KEY
RSS = DEMO_PUBLIC_URL + "podcast/feed.xml"
AFTER_CHRISTMAS = datetime(2026, 12, 28, 8, 0, tzinfo=STOCKHOLM)


def podcast_settings(work: Path) -> Settings:
    return Settings.load(
        episodes_dir=str(work / "episodes"),
        storage=str(work / "storage"),
        public_url=DEMO_PUBLIC_URL,
        settle_seconds=0,
    )


def publish_podcast(work: Path) -> None:
    report = publish(podcast_settings(work), LocalStorage(work / "storage"), DEMO_NOW)
    assert report.failed == [] and report.feed_error == "", report.summary()


def send_newsletter(work: Path) -> Path:
    """Build the demo issue (with the catalog's episodes) and publish its web copy, as the
    send does once the issue is approved."""
    storage = LocalStorage(work / "storage")
    posts, events = demo_sources(REPO_ROOT)
    settings = Settings.load(
        newsletters_dir=str(work / "newsletters"),
        posts=posts,
        events=events,
        storage=str(work / "storage"),
        public_url=DEMO_PUBLIC_URL,
    )
    built = build_issue(
        settings, DEMO_MONTH, DEMO_NOW, force=True, episodes=load_catalog(storage).episodes
    )
    assert built.written, built.summary()
    publish_web_copy(storage, built.issue_dir, DEMO_MONTH, settings, DEMO_NOW)
    return built.issue_dir


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("home")
    prepare_demo(work, REPO_ROOT)
    publish_podcast(work)
    send_newsletter(work)
    return work


def read(work: Path, key: str) -> bytes:
    found = LocalStorage(work / "storage").get_bytes(key)
    assert found is not None, f"{key} is not in storage"
    return found[0]


def test_the_start_page_links_the_archive_its_atom_feed_the_show_page_and_its_rss_feed(both):
    data = read(both, HOME_KEY)
    assert html_problems(data) == []
    found = links(data)
    for url in (ARCHIVE, ATOM, SHOW_PAGE, RSS):
        assert url in found, url
    root = lxml.html.document_fromstring(data)
    channels = [" ".join(h.text_content().split()) for h in root.iter("h2")]
    assert channels == ["Kraftsamling update", "Digitalsamtal"]
    alternates = root.xpath("//link[@rel='alternate']/@type")
    assert sorted(alternates) == ["application/atom+xml", "application/rss+xml"]
    text = " ".join(root.text_content().split())
    assert "Senaste numret: Kraftsamling update – december 2026" in text
    assert "Senaste avsnittet: Föreningar som provar AI" in text
    meta = LocalStorage(both / "storage").metadata(HOME_KEY)
    assert (meta["content_type"], meta["cache_control"], meta["public"]) == (
        "text/html; charset=utf-8",
        CACHE_SHORT,
        True,
    )
    assert LocalStorage(both / "storage").metadata(HOME_STATE_KEY)["public"] is False


def test_the_archive_page_has_the_pages_look_and_navigation(both):
    assert archive_page_key(SWEDISH) == NEWSLETTER_ARCHIVE_KEY  # the key the navigation links
    data = read(both, NEWSLETTER_ARCHIVE_KEY)
    assert html_problems(data) == []
    root = lxml.html.document_fromstring(data)
    nav = root.xpath("//header//a")
    assert [a.get("href") for a in nav] == [DEMO_PUBLIC_URL + "index.html", ARCHIVE, SHOW_PAGE]
    assert root.xpath("//a[@aria-current='page']/@href") == [ARCHIVE]
    assert root.xpath("//link[@rel='canonical']/@href") == [ARCHIVE]
    assert root.xpath("//link[@rel='alternate']/@href") == [ATOM]
    issue = DEMO_PUBLIC_URL + f"newsletters/{DEMO_MONTH}/index.html"
    assert [a.get("href") for a in root.xpath("//main//a")] == [issue]
    # The same style sheet and header as the podcast's pages.
    show = lxml.html.document_fromstring(read(both, SHOW_PAGE_KEY))
    assert root.findtext(".//style") == show.findtext(".//style")
    assert [a.get("href") for a in show.xpath("//header//a")] == [a.get("href") for a in nav]


def test_the_web_copy_stays_the_email_as_sent_and_links_the_episode_pages(both):
    web_copy = read(both, f"newsletters/{DEMO_MONTH}/index.html")
    assert web_copy == (both / "newsletters" / DEMO_MONTH / "index.html").read_bytes()
    found = links(web_copy)
    for slug in ("ai-i-kommunens-vardag", "foreningar-som-provar-ai"):
        page = DEMO_PUBLIC_URL + f"podcast/episodes/{slug}.html"
        assert page in found  # "Lyssna och titta" links the episode page...
        assert LocalStorage(both / "storage").head(page.removeprefix(DEMO_PUBLIC_URL))
    assert not [url for url in found if "/podcast/audio/" in url]  # ...not the MP3


def sections(work: Path) -> list[str]:
    root = lxml.html.document_fromstring(read(work, HOME_KEY))
    return [" ".join(h.text_content().split()) for h in root.iter("h2")]


def test_the_start_page_follows_whichever_channel_publishes(tmp_path):
    prepare_demo(tmp_path, REPO_ROOT)
    publish_podcast(tmp_path)
    assert sections(tmp_path) == ["Digitalsamtal"]
    send_newsletter(tmp_path)
    assert sections(tmp_path) == ["Kraftsamling update", "Digitalsamtal"]

    # A later podcast run (the scheduled episode's time came) keeps the newsletter's part.
    storage = LocalStorage(tmp_path / "storage")
    show_dir = tmp_path / "episodes"
    settings = podcast_settings(tmp_path)
    show = load_show(show_dir / "show.yaml")
    publish_feed(storage, show, show_dir, load_catalog(storage), settings, AFTER_CHRISTMAS)
    assert sections(tmp_path) == ["Kraftsamling update", "Digitalsamtal"]
    text = lxml.html.document_fromstring(read(tmp_path, HOME_KEY)).text_content()
    assert "Senaste avsnittet: Julspecial: året som gått" in " ".join(text.split())
    assert html_problems(read(tmp_path, HOME_KEY)) == []


class Racing:
    """A LocalStorage where another channel updates the start page's state just before this
    run writes it, once (the other run wins the race)."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> ObjectInfo:
        if key == HOME_STATE_KEY and not self.raced:
            self.raced = True
            publish_home(self.inner, "newsletters", section("Kraftsamling update"), DEMO_PUBLIC_URL)
        return self.inner.put_bytes(key, data, **kwargs)


def section(title: str) -> dict[str, Any]:
    slug = title.split()[0].lower()
    return {
        "kind": "newsletter" if "update" in title else "podcast",
        "title": title,
        "lang": "sv",
        "description": f"Om {title}.",
        "page_url": f"{DEMO_PUBLIC_URL}{slug}/index.html",
        "page_label": "Alla",
        "feed_url": f"{DEMO_PUBLIC_URL}{slug}/feed.xml",
        "feed_label": "Flöde",
        "image_url": None,
        "image_alt": "",
        "latest": None,
        "latest_label": "Senaste",
    }


def test_a_concurrent_update_of_the_start_page_is_merged_not_lost(tmp_path):
    storage = LocalStorage(tmp_path)
    publish_home(storage, "podcast", section("Digitalsamtal"), DEMO_PUBLIC_URL)
    racing = Racing(storage)
    new = section("Digitalsamtal ny")
    assert publish_home(racing, "podcast", new, DEMO_PUBLIC_URL)  # type: ignore[arg-type]
    assert racing.raced
    state = json.loads(storage.get_bytes(HOME_STATE_KEY)[0])
    assert sorted(s["title"] for s in state["sections"].values()) == [
        "Digitalsamtal ny",
        "Kraftsamling update",
    ]
    page = lxml.html.document_fromstring(storage.get_bytes(HOME_KEY)[0])
    titles = [" ".join(h.text_content().split()) for h in page.iter("h2")]
    assert titles == ["Kraftsamling update", "Digitalsamtal ny"]  # the page has both too


def test_a_start_page_state_written_by_others_is_refused_with_the_fix(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.put_bytes(
        HOME_STATE_KEY, b"[]", content_type="application/json", cache_control="x", public=False
    )
    with pytest.raises(StorageError, match=r"home\.json is not the start page's state"):
        publish_home(storage, "podcast", section("Digitalsamtal"), DEMO_PUBLIC_URL)
    assert storage.get_bytes(HOME_KEY) is None
