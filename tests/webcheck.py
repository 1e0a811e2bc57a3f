"""The HTML check every public web page passes (tests/test_web_pages.py, test_web_home.py).

A page parses with lxml.html, says `lang="sv"`, has one `<h1>` and no heading that skips a
level, gives every image an alt text, needs no JavaScript (its only script is JSON-LD),
and every URL in it is absolute https: in `href`, `src` and `content`, and in its JSON-LD.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import lxml.html

# <meta> whose content is a URL (Open Graph, Twitter card).
URL_META = {"og:url", "og:image", "og:audio", "twitter:image", "og:image:url", "og:audio:url"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def json_ld(page: lxml.html.HtmlElement) -> list[dict[str, Any]]:
    return [
        json.loads(script.text)
        for script in page.iter("script")
        if script.get("type") == "application/ld+json"
    ]


def html_problems(data: bytes) -> list[str]:
    """What is wrong with the page ([] when it passes)."""
    problems: list[str] = []
    page = lxml.html.document_fromstring(data)
    if page.get("lang") != "sv":
        problems.append(f"lang is {page.get('lang')!r}, not 'sv'")
    levels = [int(h.tag[1]) for h in page.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    if levels.count(1) != 1 or not levels or levels[0] != 1:
        problems.append(f"not exactly one h1, first: {levels}")
    for before, after in itertools.pairwise(levels):
        if after > before + 1:
            problems.append(f"heading h{after} after h{before}")
    for img in page.iter("img"):
        if not (img.get("alt") or "").strip():
            problems.append(f"<img src={img.get('src')!r}> has no alt text")
    for script in page.iter("script"):
        if script.get("type") != "application/ld+json":
            problems.append("a script that is not JSON-LD (the page must work without it)")
    for element in page.iter():
        if not isinstance(element.tag, str):
            continue
        for attribute in ("href", "src"):
            value = element.get(attribute)
            if value is not None and not value.startswith("https://"):
                problems.append(f"<{element.tag} {attribute}={value!r}> is not absolute https")
        content = element.get("content")
        name = element.get("property") or element.get("name") or ""
        url_like = content is not None and (name in URL_META or "://" in content)
        if url_like and not str(content).startswith("https://"):
            problems.append(f"<meta {name} content={content!r}> is not absolute https")
    try:
        documents = json_ld(page)
    except json.JSONDecodeError as exc:
        problems.append(f"JSON-LD does not parse: {exc}")
        documents = []
    for text in (s for d in documents for s in _strings(d)):
        if "://" in text and not text.startswith("https://"):
            problems.append(f"JSON-LD URL {text!r} is not https")
    canonical = page.xpath("//link[@rel='canonical']/@href")
    if len(canonical) != 1:
        problems.append(f"{len(canonical)} canonical links")
    return problems


def links(data: bytes) -> dict[str, str]:
    """href -> the link's text, of every <a> in the page."""
    page = lxml.html.document_fromstring(data)
    return {a.get("href"): " ".join(a.text_content().split()) for a in page.iter("a")}
