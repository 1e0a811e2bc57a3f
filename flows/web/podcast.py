"""The podcast's web pages, pure: the show page, one page per episode, a removed one's notice.

`plan_pages(site, episodes, in_feed)` says which pages exist and what each is made from,
without rendering any: each `PlannedPage` carries a hash of its inputs (so an unchanged page
costs no work and no request, see `flows.web.publish`) and renders itself when asked, given
its transcript's text.

- The episodes with a page are the ones in the feed (`in_feed`, newest first): a scheduled
  episode gets none until its time, an episode the feed leaves out gets none.
- A removed episode that was public (published before its removal) gets a short notice
  page at its page's key: nothing is deleted, and the notice names nothing of the episode.
- Only public fields reach a page: never the producers' addresses, the owner's email, the
  episode's notes (warnings), loudness or master.
- Every URL is absolute (`flows.core.storage.public_url` under the feed's base URL); the
  player plays the enclosure URL of the feed (behind the analytics prefix, if any). Links
  in a description are upgraded to https or dropped (`flows.core.urls.safe_url`).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import nh3
from markupsafe import Markup

from flows.core.models import Episode, Show
from flows.core.storage import public_url
from flows.core.urls import safe_url
from flows.podcast.feed import description_html, enclosure_url, feed_url_for
from flows.web.keys import SHOW_PAGE_KEY, episode_page_key
from flows.web.render import (
    Chrome,
    FeedLink,
    PageMeta,
    clock_time,
    iso_duration,
    json_ld,
    render_page,
    shorten,
    swedish_day,
    swedish_duration,
)
from flows.web.transcript import Paragraph

SHOW_PAGE_EPISODES = 20  # the newest episodes listed on the show page
_DESCRIPTION_TAGS = {"p", "br", "a", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote"}
_BLOCK_TAG = re.compile(r"</?(?:p|br|ul|ol|li|blockquote)\b[^>]*>")
_TYPE_LABELS = {"full": "", "trailer": "Trailer", "bonus": "Bonusavsnitt"}
# Show fields a page may show (never producers, owner_email or owner_name).
_PUBLIC_SHOW_FIELDS = {
    "title",
    "description",
    "author",
    "language",
    "website",
    "copyright",
    "hosts",
    "funding_url",
    "funding_text",
    "apple_podcasts_url",
    "spotify_url",
}
# Episode fields a page may show (never warnings, loudness, master_key or source hashes).
_PUBLIC_EPISODE_FIELDS = {
    "guid",
    "slug",
    "title",
    "description",
    "description_html",
    "publish_at",
    "duration",
    "size",
    "mime_type",
    "audio_key",
    "episode",
    "season",
    "episode_type",
    "guests",
    "image_key",
    "transcript_key",
    "chapters",
}


def _href(tag: str, attribute: str, value: str) -> str | None:
    """nh3's attribute filter: a link's address as the pages allow it (https, or none)."""
    if tag == "a" and attribute == "href":
        return safe_url(value).url or None
    return value


def safe_description(episode: Episode) -> Markup:
    """The episode's description as HTML for a page: sanitised again, https links only."""
    cleaned = nh3.clean(
        description_html(episode).replace("]]&gt;", "]]>"),
        tags=_DESCRIPTION_TAGS,
        attributes={"a": {"href"}},
        attribute_filter=_href,
        url_schemes={"http", "https"},
    )
    return Markup(cleaned)  # sanitised by nh3 just above


def plain_description(episode: Episode, limit: int = 200) -> str:
    """The description as one line of plain text (meta description, lists).

    >>> from flows.podcast.feed import _example_episode
    >>> html = "<p>Hej &amp; <b>du</b>,</p><p>två</p>"
    >>> plain_description(_example_episode(description_html=html))
    'Hej & du, två'
    """
    body = _BLOCK_TAG.sub(" ", description_html(episode))  # block boundaries are spaces
    text = re.sub(r"<[^>]*>", "", body)  # nh3's output: a "<" in text is escaped
    return shorten(html.unescape(text), limit) or episode.title


def _hash(document: Any) -> str:
    data = json.dumps(document, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PodcastSite:
    """The show and where its public objects are: what every podcast page shares."""

    show: Show
    base_url: str
    cover_key: str
    analytics_prefix: str | None = None
    site_url: str = ""  # the organisation's site, linked from every page's footer

    def url(self, key: str) -> str:
        return public_url(self.base_url, key)

    @property
    def feed_url(self) -> str:
        return feed_url_for(self.base_url)

    @property
    def show_url(self) -> str:
        return self.url(SHOW_PAGE_KEY)

    @property
    def cover_url(self) -> str:
        return self.url(self.cover_key)

    @property
    def cover_alt(self) -> str:
        return f"Omslagsbild för podden {self.show.title}"

    @property
    def chrome(self) -> Chrome:
        footer = self.show.copyright or f"© {self.show.author}"
        return Chrome(self.base_url, footer_name=footer, footer_url=self.site_url)

    def inputs(self) -> dict[str, Any]:
        """What every page of the show is made from, as JSON (for the pages' hashes)."""
        return {
            "show": self.show.model_dump(mode="json", include=_PUBLIC_SHOW_FIELDS),
            "base_url": self.base_url,
            "cover_key": self.cover_key,
            "analytics_prefix": self.analytics_prefix,
            "site_url": self.site_url,
        }

    def feed_link(self) -> FeedLink:
        return FeedLink(f"{self.show.title} (RSS)", self.feed_url, "application/rss+xml")

    def series_ld(self) -> dict[str, Any]:
        return {
            "@type": "PodcastSeries",
            "name": self.show.title,
            "url": self.show_url,
            "webFeed": self.feed_url,
        }

    def show_context(self) -> dict[str, Any]:
        show = self.show
        return {
            "title": show.title,
            "url": self.show_url,
            "feed_url": self.feed_url,
            "cover_url": self.cover_url,
            "cover_alt": self.cover_alt,
            "description": [p for p in re.split(r"\n\s*\n", show.description) if p.strip()],
            "hosts": list(show.hosts),
            "website": safe_url(show.website).url,
            "apple_podcasts_url": show.apple_podcasts_url,
            "spotify_url": show.spotify_url,
            "funding_url": safe_url(show.funding_url).url if show.funding_url else "",
            "funding_text": show.funding_text or "Stöd podden",
            "author": show.author,
        }


@dataclass(frozen=True)
class PlannedPage:
    """One page: its key, a hash of its inputs, and how to render it (given the paragraphs
    of its transcript, None when it has none or it could not be read)."""

    key: str
    inputs: str
    transcript_key: str | None
    render: Callable[[list[Paragraph] | None], bytes]


def _label(episode: Episode) -> str:
    """ "Avsnitt 3 · Säsong 1", "Bonusavsnitt" ... ("" when nothing is known)."""
    parts = [_TYPE_LABELS[episode.episode_type]]
    if episode.episode is not None:
        parts.append(f"Avsnitt {episode.episode}")
    if episode.season is not None:
        parts.append(f"Säsong {episode.season}")
    return " · ".join(p for p in parts if p)


def _summary(site: PodcastSite, episode: Episode) -> dict[str, Any]:
    """What a list or a neighbour link shows of an episode."""
    return {
        "title": episode.title,
        "url": site.url(episode_page_key(episode.slug)),
        "date": swedish_day(episode.publish_at),
        "iso": episode.publish_at.isoformat(),
        "duration": swedish_duration(episode.duration),
        "label": _label(episode),
        "summary": plain_description(episode, 240),
    }


def _size_text(size: int) -> str:
    """
    >>> _size_text(123_456), _size_text(12_345_678)
    ('0,1 MB', '12 MB')
    """
    megabytes = size / 1_000_000
    return f"{megabytes:.1f} MB".replace(".", ",") if megabytes < 10 else f"{megabytes:.0f} MB"


def episode_context(
    site: PodcastSite,
    episode: Episode,
    older: Episode | None,
    newer: Episode | None,
    transcript: list[Paragraph] | None,
) -> dict[str, Any]:
    """The episode page's template context."""
    url = site.url(episode_page_key(episode.slug))
    audio = enclosure_url(site.base_url, episode.audio_key, site.analytics_prefix)
    image = site.url(episode.image_key) if episode.image_key else site.cover_url
    image_alt = f"Bild till avsnittet {episode.title}" if episode.image_key else site.cover_alt
    description = plain_description(episode)
    document: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "PodcastEpisode",
        "name": episode.title,
        "url": url,
        "datePublished": episode.publish_at.isoformat(),
        "description": description,
        "inLanguage": site.show.language,
        "image": image,
        "duration": iso_duration(episode.duration),
        "associatedMedia": {
            "@type": "MediaObject",
            "contentUrl": audio,
            "encodingFormat": episode.mime_type,
            "duration": iso_duration(episode.duration),
        },
        "partOfSeries": site.series_ld(),
    }
    if episode.episode is not None:
        document["episodeNumber"] = episode.episode
    meta = PageMeta(
        title=f"{episode.title} – {site.show.title}",
        description=description,
        url=url,
        og_type="article",
        image=image,
        image_alt=image_alt,
        feeds=(site.feed_link(),),
        json_ld=json_ld(document),
        extra_meta=(
            ("og:audio", audio),
            ("og:audio:type", episode.mime_type),
            ("article:published_time", episode.publish_at.isoformat()),
        ),
    )
    return {
        **site.chrome.context(site.show.language, "podcast", meta),
        "show": site.show_context(),
        "episode": {
            **_summary(site, episode),
            "audio_url": audio,
            "mime_type": episode.mime_type,
            "size": _size_text(episode.size),
            "description": safe_description(episode),
            "guests": list(episode.guests),
            "chapters": [{"time": clock_time(c.start), "title": c.title} for c in episode.chapters],
            "image": site.url(episode.image_key) if episode.image_key else "",
            "image_alt": image_alt,
        },
        "transcript": transcript or [],
        "transcript_url": site.url(episode.transcript_key) if episode.transcript_key else "",
        "older": _summary(site, older) if older else None,
        "newer": _summary(site, newer) if newer else None,
    }


def show_context(site: PodcastSite, in_feed: Sequence[Episode]) -> dict[str, Any]:
    """The show page's template context: the newest episodes and how to subscribe."""
    newest = in_feed[:SHOW_PAGE_EPISODES]
    document = {
        "@context": "https://schema.org",
        **site.series_ld(),
        "description": shorten(site.show.description, 500),
        "image": site.cover_url,
        "inLanguage": site.show.language,
        "author": {"@type": "Organization", "name": site.show.author},
    }
    meta = PageMeta(
        title=f"{site.show.title} – podden från {site.show.author}",
        description=shorten(site.show.description),
        url=site.show_url,
        image=site.cover_url,
        image_alt=site.cover_alt,
        feeds=(site.feed_link(),),
        json_ld=json_ld(document),
    )
    older = in_feed[SHOW_PAGE_EPISODES] if len(in_feed) > SHOW_PAGE_EPISODES else None
    return {
        **site.chrome.context(site.show.language, "podcast", meta),
        "show": site.show_context(),
        "episodes": [_summary(site, e) for e in newest],
        "older": _summary(site, older) if older else None,
        "total": len(in_feed),
    }


def removed_context(site: PodcastSite, episode: Episode) -> dict[str, Any]:
    """A removed episode's notice page: it names the show, not the episode."""
    meta = PageMeta(
        title=f"Avsnittet finns inte längre – {site.show.title}",
        description=f"Avsnittet har tagits bort ur {site.show.title}.",
        url=site.url(episode_page_key(episode.slug)),
        image=site.cover_url,
        image_alt=site.cover_alt,
        robots="noindex",
        feeds=(site.feed_link(),),
    )
    return {
        **site.chrome.context(site.show.language, "podcast", meta),
        "show": site.show_context(),
    }


def _public(episode: Episode) -> dict[str, Any]:
    return episode.model_dump(mode="json", include=_PUBLIC_EPISODE_FIELDS)


def _neighbour(episode: Episode | None) -> Any:
    return None if episode is None else [episode.slug, episode.title, str(episode.publish_at)]


def was_public(episode: Episode) -> bool:
    """A removed episode that was in the feed before its removal (so it had a page)."""
    removed = episode.removed_at
    return removed is not None and episode.publish_at <= removed


def _render_episode(
    site: PodcastSite,
    episode: Episode,
    older: Episode | None,
    newer: Episode | None,
    transcript: list[Paragraph] | None,
) -> bytes:
    context = episode_context(site, episode, older, newer, transcript)
    return render_page("podcast_episode.html.j2", context)


def _render_removed(site: PodcastSite, episode: Episode, _: list[Paragraph] | None) -> bytes:
    return render_page("podcast_removed.html.j2", removed_context(site, episode))


def _render_show(site: PodcastSite, in_feed: Sequence[Episode], _: list[Paragraph] | None) -> bytes:
    return render_page("podcast_show.html.j2", show_context(site, in_feed))


def plan_pages(
    site: PodcastSite, episodes: Sequence[Episode], in_feed: Sequence[Episode], version: str
) -> list[PlannedPage]:
    """Every podcast page: the show page, a page per episode in the feed (`in_feed`, newest
    first), a notice page per removed episode that was public. `version` is the templates'
    (`flows.web.render.site_version`): part of every page's inputs."""
    shared = {"site": site.inputs(), "version": version}
    pages: list[PlannedPage] = []
    for i, episode in enumerate(in_feed):
        newer = in_feed[i - 1] if i > 0 else None
        older = in_feed[i + 1] if i + 1 < len(in_feed) else None
        inputs = _hash([shared, _public(episode), _neighbour(older), _neighbour(newer)])
        render = partial(_render_episode, site, episode, older, newer)
        key = episode_page_key(episode.slug)
        pages.append(PlannedPage(key, inputs, episode.transcript_key, render))
    live = {e.guid for e in in_feed}
    for episode in episodes:
        if episode.guid in live or not was_public(episode):
            continue
        inputs = _hash([shared, "removed", episode.slug])
        render = partial(_render_removed, site, episode)
        pages.append(PlannedPage(episode_page_key(episode.slug), inputs, None, render))
    newest = [_public(e) for e in in_feed[: SHOW_PAGE_EPISODES + 1]]
    inputs = _hash([shared, "show", newest, len(in_feed)])
    render = partial(_render_show, site, tuple(in_feed))
    pages.append(PlannedPage(SHOW_PAGE_KEY, inputs, None, render))
    return pages


def home_section(site: PodcastSite, in_feed: Sequence[Episode]) -> dict[str, Any]:
    """What the start page shows of the podcast (`flows.web.home`)."""
    newest = in_feed[0] if in_feed else None
    return {
        "kind": "podcast",
        "title": site.show.title,
        "lang": site.show.language,
        "description": shorten(site.show.description, 160),
        "page_url": site.show_url,
        "page_label": "Alla avsnitt",
        "feed_url": site.feed_url,
        "feed_label": "Prenumerera i en poddapp (RSS)",
        "image_url": site.cover_url,
        "image_alt": site.cover_alt,
        "latest": _summary(site, newest) if newest else None,
        "latest_label": "Senaste avsnittet",
    }
