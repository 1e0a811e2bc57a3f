"""A post's image: found in the entry (media:content, media:thumbnail, an image enclosure,
then the first <img> of the content or summary), never a tracking pixel, always https.

`find_image` takes the first https image, else upgrades an http one (or drops it, for a
host in `http_only_hosts`) and says so for the manifest.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urljoin

import nh3

from flows.core.text import clean_text
from flows.core.urls import safe_url
from flows.newsletter.sources import DROP_WITH_CONTENT, WHITESPACE, is_http


def absolute_url(url: str, base: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    joined = urljoin(base, url) if base else url
    return joined if is_http(joined) else ""


_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'([a-z]+)="([^"]*)"')
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|\?)", re.IGNORECASE)
# Tracking pixels and spacers that must never become a post's picture: known counters, and
# file or path names that say what they are.
_TRACKER = re.compile(
    r"feeds\.feedburner\.com/~r/|/~r/|stats\.wordpress\.com|pixel\.wp\.com"
    r"|/(?:pixel|beacon|tracking|tracker|track|open|1x1|spacer|blank|transparent)"
    r"(?:\.(?:gif|png|jpe?g|webp|php|aspx?))?(?:[/?#;]|$)",
    re.IGNORECASE,
)


def _is_pixel(url: str, width: Any = None, height: Any = None) -> bool:
    """A tracking pixel or spacer: declared 2 px or smaller, or a known tracker URL."""
    for size in (width, height):
        digits = re.match(r"\s*(\d+)", str(size or ""))
        if digits and int(digits.group(1)) <= 2:
            return True
    return bool(_TRACKER.search(url))


def find_image(
    entry: Mapping[str, Any],
    enclosures: list[Mapping[str, Any]],
    content: str,
    summary_html: str,
    base: str,
    http_only_hosts: Collection[str] = (),
) -> tuple[str | None, str, str]:
    """(url, alt text, note) of the entry's image: its first https image that is not a
    pixel; else its first http one made https (`flows.core.urls`), with a note for the
    manifest; else none, noting an http image that had to be left out."""
    upgraded: tuple[str | None, str, str] | None = None
    dropped = ""
    for url, alt in _image_candidates(entry, enclosures, content, summary_html):
        safe = safe_url(absolute_url(url, base), http_only_hosts, image=True)
        if safe.change == "kept":
            return safe.url, alt, ""
        if safe.url and upgraded is None:
            upgraded = (safe.url, alt, safe.note("image"))
        elif not safe.url and not dropped and safe.original.lower().startswith("http://"):
            dropped = safe.note("image")
    return upgraded or (None, "", dropped)


def _image_candidates(
    entry: Mapping[str, Any], enclosures: list[Mapping[str, Any]], content: str, summary_html: str
) -> list[tuple[str, str]]:
    """(url, alt) of an entry's images that are not pixels, in the order they are preferred:
    media:content, media:thumbnail, image enclosures, then inline <img>."""
    return [
        *_media_images(entry),
        *_enclosure_images(enclosures),
        *_inline_images(content),
        *_inline_images(summary_html),
    ]


def _media_images(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(url, "") of the entry's media:content images, then its media:thumbnails."""
    candidates: list[tuple[str, str]] = []
    for media in entry.get("media_content", []) or []:
        kind = (media.get("medium") or media.get("type") or "").lower()
        url = media.get("url", "")
        if _is_pixel(url, media.get("width"), media.get("height")):
            continue
        if kind.startswith("image") or (not kind and _IMAGE_EXT.search(url)):
            candidates.append((url, ""))
    candidates += [
        (m.get("url", ""), "")
        for m in entry.get("media_thumbnail", []) or []
        if not _is_pixel(m.get("url", ""), m.get("width"), m.get("height"))
    ]
    return candidates


def _enclosure_images(enclosures: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(href, "") of the image enclosures."""
    return [
        (e.get("href", ""), "")
        for e in enclosures
        if (e.get("type") or "").lower().startswith("image/") and not _is_pixel(e.get("href", ""))
    ]


def _inline_images(fragment: str) -> list[tuple[str, str]]:
    """(src, alt) of the <img> tags in an HTML fragment, after sanitising it."""
    cleaned = nh3.clean(
        clean_text(fragment or ""),
        tags={"img"},
        attributes={"img": {"src", "alt", "width", "height"}},
        clean_content_tags=DROP_WITH_CONTENT,
    )
    candidates: list[tuple[str, str]] = []
    for tag in _IMG.findall(cleaned):
        attrs = {k: html.unescape(v) for k, v in _ATTR.findall(tag)}
        src = attrs.get("src", "")
        if _is_pixel(src, attrs.get("width"), attrs.get("height")):
            continue
        candidates.append((src, WHITESPACE.sub(" ", attrs.get("alt", "")).strip()))
    return candidates
