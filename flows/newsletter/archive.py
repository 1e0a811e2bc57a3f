"""The newsletter's public web archive: each sent issue's web copy, an archive page and its
Atom feed.

`publish_web_copy` uploads the issue's HTML to its web-copy key (`issue.web_copy_key`) and
regenerates the archive page (`newsletters/index.html`) and feed (`newsletters/feed.xml`)
from `newsletters/archive.json`: private state in storage, so any machine can rebuild both.
Entry ids and first-publish times in that state never change, so the feed never announces
an issue twice. `render_archive_page` and `render_archive_feed` are pure.

Each edition has its own archive under its storage prefix (`newsletters/` is the Swedish
edition's), in its language: the page is the edition's `archive.html.j2` template.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lxml import etree
from lxml.builder import ElementMaker

from flows.core.errors import ConcurrentWriteError, DeliveryError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import CACHE_PRIVATE, CACHE_SHORT, Storage, public_url
from flows.newsletter.edition import Edition, edition_for
from flows.newsletter.issue import (
    MANIFEST_FILE,
    Issue,
    read_issue,
    read_review,
    web_copy_key,
    web_copy_url,
    without_indexing,
)
from flows.newsletter.render import format_day, issue_subject
from flows.web.home import publish_home
from flows.web.render import Chrome, FeedLink, PageMeta, render_page

ATOM_NS = "http://www.w3.org/2005/Atom"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def archive_state_key(edition: Edition) -> str:
    """The archive's private state, under the edition's storage prefix.

    >>> from flows.newsletter.edition import SWEDISH
    >>> archive_state_key(SWEDISH), archive_page_key(SWEDISH), archive_feed_key(SWEDISH)
    ('newsletters/archive.json', 'newsletters/index.html', 'newsletters/feed.xml')
    """
    return f"{edition.storage_prefix}/archive.json"


def archive_page_key(edition: Edition) -> str:
    """The public archive page."""
    return f"{edition.storage_prefix}/index.html"


def archive_feed_key(edition: Edition) -> str:
    """The public Atom feed of the issues."""
    return f"{edition.storage_prefix}/feed.xml"


def _entry_time(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry.get("sent_at") or entry["published_at"])


def _newest_first(state: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(state.get("issues", []), key=lambda entry: entry["month"], reverse=True)


def render_archive_page(state: dict[str, Any], settings: Settings, edition: Edition) -> bytes:
    """The public archive page: every issue, newest first, in the edition's language."""
    issues = []
    for entry in _newest_first(state):
        when = _entry_time(entry).astimezone(STOCKHOLM)
        issues.append(
            {
                "url": public_url(settings.public_url, entry["key"]),
                "title": entry["title"],
                "iso": when.date().isoformat(),
                "when": format_day(when, edition),
            }
        )
    feed_url = public_url(settings.public_url, archive_feed_key(edition))
    meta = PageMeta(  # the site's layout (flows.web): navigation, canonical, Open Graph
        title=f"{settings.newsletter_title} – {edition.words.all_issues}",
        description=edition.words.archive_intro,
        url=public_url(settings.public_url, archive_page_key(edition)),
        feeds=(FeedLink(settings.newsletter_title, feed_url, "application/atom+xml"),),
    )
    context = {
        **Chrome(settings.public_url).context(edition.language, "newsletter", meta),
        "title": settings.newsletter_title,
        "words": edition.words.model_dump(),
        "issues": issues,
        "feed_url": feed_url,
        "site_url": settings.site_url,
    }
    return render_page("archive.html.j2", context, edition.template_folders)


def render_archive_feed(state: dict[str, Any], settings: Settings, edition: Edition) -> bytes:
    """An Atom feed of the issues, newest first; ids come from the stored state and never
    change, `updated` is each issue's send time."""
    atom = ElementMaker(namespace=ATOM_NS, nsmap={None: ATOM_NS})
    entries = _newest_first(state)
    times = [_entry_time(entry) for entry in entries]
    feed_updated = max(times) if times else datetime.fromisoformat(state["created_at"])
    feed = atom.feed(
        atom.title(settings.newsletter_title),
        atom.subtitle(edition.words.feed_subtitle),
        atom.id(state["feed_id"]),
        atom.updated(feed_updated.isoformat(timespec="seconds")),
        atom.link(
            rel="self",
            type="application/atom+xml",
            href=public_url(settings.public_url, archive_feed_key(edition)),
        ),
        atom.link(
            rel="alternate",
            type="text/html",
            href=public_url(settings.public_url, archive_page_key(edition)),
        ),
        atom.author(atom.name("Kraftsamling"), atom.email(settings.contact_email)),
    )
    feed.set(_XML_LANG, edition.language)
    for entry, when in zip(entries, times, strict=True):
        link = public_url(settings.public_url, entry["key"])
        feed.append(
            atom.entry(
                atom.title(entry["title"]),
                atom.id(entry["id"]),
                atom.link(rel="alternate", type="text/html", href=link),
                atom.published(when.isoformat(timespec="seconds")),
                atom.updated(when.isoformat(timespec="seconds")),
                atom.summary(edition.words.feed_summary.format(title=entry["title"])),
            )
        )
    return etree.tostring(feed, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _tag_authority(settings: Settings) -> str:
    return urlparse(settings.site_url).hostname or "kraftsamling.example"


def _merge_issue(
    state: dict[str, Any] | None,
    issue: Issue,
    settings: Settings,
    now: datetime,
    edition: Edition,
) -> dict[str, Any]:
    """The archive state with this issue added or refreshed; ids and first-publish times
    of existing entries are kept, so the feed never re-announces an issue."""
    authority = _tag_authority(settings)
    prefix = edition.storage_prefix  # "newsletters" for the Swedish edition, as always
    if state is None:
        state = {
            "version": 1,
            "feed_id": f"tag:{authority},{issue.month[:4]}:{prefix}",
            "created_at": now.isoformat(timespec="seconds"),
            "issues": [],
        }
    sent_at = (issue.manifest.get("delivery") or {}).get("sent_at")
    issues = {entry["month"]: dict(entry) for entry in state.get("issues", [])}
    entry = issues.get(issue.month) or {
        "month": issue.month,
        "id": f"tag:{authority},{issue.month[:4]}:{prefix}/{issue.month}",
        "published_at": now.isoformat(timespec="seconds"),
        "sent_at": None,
    }
    entry["title"] = issue_subject(settings, issue.month, edition)
    entry["key"] = web_copy_key(issue.month, edition)
    entry["sent_at"] = sent_at or entry.get("sent_at")
    issues[issue.month] = entry
    return {**state, "issues": [issues[month] for month in sorted(issues)]}


def publish_web_copy(
    storage: Storage,
    issue_dir: Path,
    month: str,
    settings: Settings,
    now: datetime,
    *,
    edition: Edition | None = None,
) -> str:
    """Upload the issue's HTML as its public web copy, update the edition's archive state
    (`newsletters/archive.json`), and regenerate the archive page and feed. Returns the
    web copy's URL. `edition` None: the one the settings select."""
    edition = edition or edition_for(settings)
    if now.tzinfo is None:
        raise DeliveryError("publish_web_copy needs a timezone-aware `now`.")
    issue = read_issue(Path(issue_dir))
    if issue.month != month:
        raise DeliveryError(
            f"{Path(issue_dir) / MANIFEST_FILE} is issue {issue.month}, not {month}; "
            "pass the issue folder of the month being published."
        )
    key = web_copy_key(month, edition)
    storage.put_bytes(
        key,
        issue.html.encode("utf-8"),
        content_type="text/html; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    replace_previews(storage, Path(issue_dir), issue.html)
    state = _update_archive_state(storage, issue, settings, now, edition)
    storage.put_bytes(
        archive_page_key(edition),
        render_archive_page(state, settings, edition),
        content_type="text/html; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    storage.put_bytes(
        archive_feed_key(edition),
        render_archive_feed(state, settings, edition),
        content_type="application/atom+xml; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    section = archive_home_section(state, settings, edition)  # the start page (flows.web)
    base, site = settings.public_url, settings.site_url
    publish_home(storage, edition.storage_prefix, section, base, site_url=site)
    return web_copy_url(settings, month, edition)


def archive_home_section(
    state: dict[str, Any], settings: Settings, edition: Edition
) -> dict[str, Any]:
    """What the start page (`flows.web.home`) shows of this edition: its archive, its Atom
    feed and its newest issue."""
    newest = next(iter(_newest_first(state)), None)
    latest = None
    if newest is not None:
        when = _entry_time(newest).astimezone(STOCKHOLM)
        latest = {
            "title": newest["title"],
            "url": public_url(settings.public_url, newest["key"]),
            "iso": when.date().isoformat(),
            "date": format_day(when, edition),
        }
    return {
        "kind": "newsletter",
        "title": settings.newsletter_title,
        "lang": edition.language,
        "description": edition.words.feed_subtitle,
        "page_url": public_url(settings.public_url, archive_page_key(edition)),
        "page_label": "Alla nummer",
        "feed_url": public_url(settings.public_url, archive_feed_key(edition)),
        "feed_label": "Följ i en flödesläsare (Atom)",
        "image_url": None,
        "image_alt": "",
        "latest": latest,
        "latest_label": "Senaste numret",
    }


def replace_previews(storage: Storage, issue_dir: Path, web_html: str) -> int:
    """Give every preview of the issue's drafts (listed in its `review.json`) the web copy's
    content, still unindexed, so no old draft stays readable. Returns how many."""
    keys = (read_review(issue_dir) or {}).get("previews", [])
    for key in keys:
        storage.put_bytes(
            key,
            without_indexing(web_html).encode("utf-8"),
            content_type="text/html; charset=utf-8",
            cache_control=CACHE_SHORT,
            public=True,
        )
    return len(keys)


def _update_archive_state(
    storage: Storage,
    issue: Issue,
    settings: Settings,
    now: datetime,
    edition: Edition,
    attempts: int = 3,
) -> dict[str, Any]:
    # Read, merge, write only if nobody wrote in between; on a race, merge again.
    key = archive_state_key(edition)
    for attempt in range(1, attempts + 1):
        found = storage.get_bytes(key)
        current = None
        if found is not None:
            try:
                current = json.loads(found[0])
            except json.JSONDecodeError as exc:
                raise DeliveryError(
                    f"{storage.describe()}/{key} is not valid JSON ({exc.msg}); "
                    "restore it from the bucket's versions or a backup."
                ) from None
        state = _merge_issue(current, issue, settings, now, edition)
        data = (json.dumps(state, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            storage.put_bytes(
                key,
                data,
                content_type="application/json",
                cache_control=CACHE_PRIVATE,
                public=False,
                if_match=found[1] if found is not None else None,
                if_none_match=found is None,
            )
            return state
        except ConcurrentWriteError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
