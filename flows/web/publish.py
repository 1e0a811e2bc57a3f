"""Publishing the podcast's web pages: render what changed, upload what differs, one manifest.

`publish_podcast_pages` is the I/O edge around `flows.web.podcast.plan_pages`. It is called
by `flows.podcast.feedpublish.publish_feed` once the feed is written, with the episodes the
feed holds, so the pages always follow the feed.

What changed is found out in a constant number of requests, whatever the number of
episodes: one GET of a private manifest (`podcast/pages.json`) that records, for every page
ever written, a hash of its inputs and of its bytes, and a hash of everything the pages were
last made from (the catalog's ETag, the show, the base URL, the templates' version and which
episodes have a page). When that last hash is the same, nothing else is done. Otherwise only
the pages whose inputs changed are rendered (reading a transcript is one GET per such page),
and only the ones whose bytes changed are uploaded (`text/html; charset=utf-8`, short cache,
public). The manifest is written last, conditional on the version read (a concurrent run
makes this one fail, and retry, instead of recording pages it did not write).

Nothing is deleted: a removed episode's page is overwritten by a notice page. The start page
(`flows.web.home`) gets the podcast's part when it changed (its hash is in the manifest too).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.core.models import Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_PRIVATE, CACHE_SHORT, Storage
from flows.podcast.catalog import Catalog
from flows.web.home import publish_home
from flows.web.keys import HTML_CONTENT_TYPE, PAGES_MANIFEST_KEY
from flows.web.podcast import PlannedPage, PodcastSite, home_section, plan_pages, was_public
from flows.web.render import site_version
from flows.web.transcript import Paragraph, plain_transcript

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
HOME_SECTION = "podcast"


@dataclass(frozen=True)
class PagesResult:
    """What one pages run did."""

    pages: int  # pages that exist (show page, episodes, notices)
    uploaded: tuple[str, ...] = field(default_factory=tuple)  # keys written by this run
    home_uploaded: bool = False

    def summary(self) -> str:
        if not self.uploaded:
            return f"Web pages: {self.pages}, unchanged, nothing uploaded."
        return f"Web pages: {self.pages}, {len(self.uploaded)} uploaded."


@dataclass
class Manifest:
    """The private record of the podcast pages (`podcast/pages.json`)."""

    inputs: str = ""  # everything the pages were made from; "" forces a look at each page
    pages: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> inputs, sha256
    home: str = ""  # the hash of the podcast's part of the start page

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Manifest:
        """The manifest, or an empty one when there is none or it cannot be read (every
        page is then rendered once and compared with nothing, so uploaded)."""
        if not data:
            return cls()
        try:
            document = json.loads(data)
            pages = {
                str(key): {"inputs": str(entry["inputs"]), "sha256": str(entry["sha256"])}
                for key, entry in document["pages"].items()
            }
            return cls(str(document["inputs"]), pages, str(document.get("home", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("%s cannot be read; every podcast page is checked", PAGES_MANIFEST_KEY)
            return cls()

    def to_bytes(self) -> bytes:
        document = {
            "version": MANIFEST_VERSION,
            "inputs": self.inputs,
            "home": self.home,
            "pages": {key: self.pages[key] for key in sorted(self.pages)},
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _digest(document: Any) -> str:
    data = json.dumps(document, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def run_inputs(
    site: PodcastSite,
    catalog_etag: str | None,
    episodes: Sequence[Episode],
    in_feed: Sequence[Episode],
) -> str:
    """A hash of everything the pages are made from; "" when the catalog has no ETag (then
    it cannot stand for its episodes, and each page is looked at)."""
    if not catalog_etag:
        return ""
    live = {e.guid for e in in_feed}
    removed = sorted(e.slug for e in episodes if e.guid not in live and was_public(e))
    return _digest(
        [site.inputs(), site_version(), catalog_etag, [e.guid for e in in_feed], removed]
    )


def _transcript(storage: Storage, key: str | None) -> tuple[list[Paragraph] | None, bool]:
    """The transcript's paragraphs (None without one) and whether it could be read."""
    if key is None:
        return None, True
    found = storage.get_bytes(key)
    if found is None:
        log.warning("The transcript %s is missing from storage; its page goes up without it", key)
        return None, False
    return plain_transcript(found[0]), True


def _publish_page(storage: Storage, page: PlannedPage, manifest: Manifest) -> tuple[bool, bool]:
    """Render the page, upload it if its bytes changed; (uploaded, complete)."""
    transcript, complete = _transcript(storage, page.transcript_key)
    data = page.render(transcript)
    sha = hashlib.sha256(data).hexdigest()
    recorded = manifest.pages.get(page.key)
    uploaded = recorded is None or recorded["sha256"] != sha
    if uploaded:
        storage.put_bytes(
            page.key, data, content_type=HTML_CONTENT_TYPE, cache_control=CACHE_SHORT, public=True
        )
    # An incomplete page is recorded with no inputs, so the next run renders it again.
    manifest.pages[page.key] = {"inputs": page.inputs if complete else "", "sha256": sha}
    return uploaded, complete


def publish_podcast_pages(
    storage: Storage,
    site: PodcastSite,
    episodes: Sequence[Episode],
    in_feed: Sequence[Episode],
    catalog_etag: str | None,
) -> PagesResult:
    """Publish the show page, the episode pages and the notice pages that changed, then the
    podcast's part of the start page; see the module docstring. `in_feed` are the episodes
    the feed holds, newest first; `episodes` the whole catalog (for removed ones)."""
    found = storage.get_bytes(PAGES_MANIFEST_KEY)
    manifest = Manifest.from_bytes(found[0] if found else None)
    before = manifest.to_bytes()
    inputs = run_inputs(site, catalog_etag, episodes, in_feed)
    if inputs and manifest.inputs == inputs:
        return PagesResult(pages=sum(1 for _ in manifest.pages))
    pages = plan_pages(site, episodes, in_feed, site_version())
    uploaded: list[str] = []
    complete = True
    for page in pages:
        if manifest.pages.get(page.key, {}).get("inputs") == page.inputs:
            continue
        put, whole = _publish_page(storage, page, manifest)
        complete = complete and whole
        if put:
            uploaded.append(page.key)
    section = home_section(site, in_feed)
    home = _digest([section, site_version()])
    home_uploaded = False
    if manifest.home != home:
        home_uploaded = publish_home(storage, HOME_SECTION, section, site.base_url)
        manifest.home = home
    manifest.inputs = inputs if complete else ""
    if manifest.to_bytes() != before:
        storage.put_bytes(
            PAGES_MANIFEST_KEY,
            manifest.to_bytes(),
            content_type="application/json",
            cache_control=CACHE_PRIVATE,
            public=False,
            if_match=found[1] if found else None,
            if_none_match=found is None,
        )
    return PagesResult(len(pages), tuple(uploaded), home_uploaded)


def publish_feed_pages(
    storage: Storage,
    show: Show,
    settings: Settings,
    base_url: str,
    cover_key: str,
    catalog: Catalog,
    in_feed: Sequence[Episode],
) -> PagesResult:
    """`publish_podcast_pages` as `flows.podcast.feedpublish.publish_feed` calls it, once the
    feed is written: the feed's base URL, cover art and analytics prefix, its episodes."""
    site = PodcastSite(show, base_url, cover_key, settings.analytics_prefix, settings.site_url)
    result = publish_podcast_pages(storage, site, catalog.episodes, in_feed, catalog.etag)
    log.info("%s", result.summary())
    return result
