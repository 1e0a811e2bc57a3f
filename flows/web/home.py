"""The start page: `index.html` at the storage root, one web home for both channels.

Each channel owns a part of it (a "section": the newsletter's archive and Atom feed, the
podcast's show page and RSS feed, each with its newest issue or episode) and updates only
its own part when it publishes (`publish_home`). The parts live in a small private state
(`home.json`), so either channel can render the whole page without knowing the other: the
page lists the channels that have published, newsletters first. Same state, same bytes; the
page is uploaded only when it changed, and the state is written conditionally on the version
read (a concurrent update is merged again, never lost).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flows.core.errors import ConcurrentWriteError, StorageError
from flows.core.storage import CACHE_PRIVATE, CACHE_SHORT, Storage
from flows.web.keys import HOME_KEY, HOME_STATE_KEY, HTML_CONTENT_TYPE
from flows.web.render import SITE_NAME, Chrome, FeedLink, PageMeta, json_ld, render_page

HOME_VERSION = 1
_FEED_TYPES = {"podcast": "application/rss+xml", "newsletter": "application/atom+xml"}


def _order(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
    name, section = item
    return (0 if section.get("kind") == "newsletter" else 1, name)


def home_context(state: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The start page's template context from the state's sections."""
    sections = [section for _, section in sorted(state.get("sections", {}).items(), key=_order)]
    chrome = Chrome(base_url, footer_url=str(state.get("site_url", "")))
    description = (
        "Nyhetsbrevet och podden från Kraftsamling för AI i kommuner och civilsamhälle: "
        "läs, lyssna och prenumerera."
    )
    document = {
        "@context": "https://schema.org",
        "@type": "WebSite",
        "name": SITE_NAME,
        "url": chrome.url(HOME_KEY),
        "inLanguage": "sv",
        "hasPart": [
            {"@type": "WebPage", "name": s["title"], "url": s["page_url"]} for s in sections
        ],
    }
    image = next((s["image_url"] for s in sections if s.get("image_url")), None)
    image_alt = next((s["image_alt"] for s in sections if s.get("image_url")), "")
    meta = PageMeta(
        title=SITE_NAME,
        description=description,
        url=chrome.url(HOME_KEY),
        image=image,
        image_alt=image_alt,
        feeds=tuple(
            FeedLink(s["title"], s["feed_url"], _FEED_TYPES.get(s["kind"], "application/xml"))
            for s in sections
        ),
        json_ld=json_ld(document),
    )
    return {
        **chrome.context("sv", "home", meta),
        "site_name": SITE_NAME,
        "intro": description,
        "sections": sections,
    }


def render_home(state: dict[str, Any], base_url: str) -> bytes:
    """The start page's bytes (pure)."""
    return render_page("home.html.j2", home_context(state, base_url))


def _read_state(storage: Storage) -> tuple[dict[str, Any], str | None]:
    found = storage.get_bytes(HOME_STATE_KEY)
    if found is None:
        return {"version": HOME_VERSION, "sections": {}}, None
    try:
        state = json.loads(found[0])
        if not isinstance(state, dict) or not isinstance(state.get("sections"), dict):
            raise ValueError("no sections")
    except ValueError:
        raise StorageError(
            f"{storage.describe()}/{HOME_STATE_KEY} is not the start page's state; restore it "
            "from a backup or delete it (each channel adds its part again when it publishes)."
        ) from None
    return state, found[1]


def publish_home(
    storage: Storage,
    name: str,
    section: dict[str, Any],
    base_url: str,
    *,
    site_url: str | None = None,
    attempts: int = 3,
) -> bool:
    """Put the channel's `section` (under `name`) on the start page; upload the page if its
    bytes changed. Returns whether it was uploaded."""
    for attempt in range(1, attempts + 1):
        state, etag = _read_state(storage)
        merged = {**state, "sections": {**state["sections"], name: section}}
        if site_url:
            merged["site_url"] = site_url
        page = render_home(merged, base_url)
        merged["page_sha256"] = hashlib.sha256(page).hexdigest()
        if merged == state and attempt == 1:
            return False
        # After a lost race our page may have replaced the other run's: upload it again.
        uploaded = attempt > 1 or state.get("page_sha256") != merged["page_sha256"]
        if uploaded:
            storage.put_bytes(
                HOME_KEY,
                page,
                content_type=HTML_CONTENT_TYPE,
                cache_control=CACHE_SHORT,
                public=True,
            )
        try:
            storage.put_bytes(
                HOME_STATE_KEY,
                (json.dumps(merged, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode(),
                content_type="application/json",
                cache_control=CACHE_PRIVATE,
                public=False,
                if_match=etag,
                if_none_match=etag is None,
            )
            return uploaded
        except ConcurrentWriteError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
