"""What the newsletter's two kinds of source share: posts (`posts`) and events (`events`).

Parsers are pure: bytes in, records out. Fetching lives in `flows.core.fetch`; each kind's
`read_*` joins the two and decides what a failing source means. Both kinds need the same
few things, kept here once:

- the text policy for what comes in: feed HTML is sanitised with nh3 (script, style,
  iframe... dropped with their content) and reduced to one line of plain text
  (`html_to_text`); characters no email or XML may carry are removed
  (`flows.core.text.clean_text`, the one character policy);
  long text is cut at a word boundary (`shorten`);
- what counts as a link (`is_http`), the YAML loader, and one HTTP client for a whole read.
"""

from __future__ import annotations

import contextlib
import html
import re
from urllib.parse import urlparse

import httpx
import nh3
import yaml

from flows.core.fetch import is_remote
from flows.core.text import clean_text

SUMMARY_CHARS = 300

# Elements dropped together with their content; everything else keeps its text.
DROP_WITH_CONTENT = {
    "script", "style", "iframe", "noscript", "object", "embed", "template", "svg", "math",
    "audio", "video", "canvas", "select", "textarea", "button", "form", "head", "title",
}  # fmt: skip
# Block elements kept through nh3 so their boundaries become spaces in the text.
_BLOCK_TAGS = {
    "p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
    "tr", "td", "th", "table", "dd", "dt", "hr", "figure", "figcaption", "pre", "section",
}  # fmt: skip
_TAG = re.compile(r"<[^>]*>")
WHITESPACE = re.compile(r"\s+")


def html_to_text(value: str) -> str:
    """Sanitise feed HTML with nh3 and reduce it to one line of plain text.

    >>> html_to_text('<p>Hej &amp; <b onclick="x()">välkommen</b></p><script>bad()</script>')
    'Hej & välkommen'
    """
    if not value:
        return ""
    cleaned = nh3.clean(
        clean_text(value), tags=_BLOCK_TAGS, attributes={}, clean_content_tags=DROP_WITH_CONTENT
    )
    # nh3's output is well-formed (a "<" in text is escaped), so a regex can strip its tags.
    # Entities are unescaped after cleaning, so "&#1;" must be cleaned out once more.
    text = clean_text(html.unescape(_TAG.sub(" ", cleaned)))
    return WHITESPACE.sub(" ", text.replace("\xa0", " ")).strip()


def shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    """Cut `text` at a word boundary so it is at most `limit` characters, ending in "…".

    >>> shorten("ett två tre fyra", 10)
    'ett två…'
    >>> shorten("Ett slut. Sedan mer", 12)
    'Ett slut…'
    >>> shorten("kort", 10)
    'kort'
    >>> shorten("Anslut: https://meet.example/abc-defg-hij mer text", 40)
    'Anslut…'
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word boundary not too far back; else cut inside a long word
        cut = cut[:space]
    head, _, last = cut.rpartition(" ")
    if head and "://" in last:  # a link (maybe cut short) with "…" after it would break
        cut = head
    # A cut after a full stop (or an ellipsis) gets no second mark: "slut…", not "slut.…".
    return cut.rstrip(" ,;:.…–-([{\"'") + "…"


def is_http(url: str) -> bool:
    """An absolute http(s) URL with a host.

    >>> is_http("https://kraftsamling.example/a"), is_http("/relative"), is_http("ftp://x")
    (True, False, False)
    """
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


# libyaml's loader when PyYAML was built with it: same nodes, marks and errors, ~5x faster.
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def shared_client(
    client: httpx.Client | None, sources: list[str]
) -> contextlib.AbstractContextManager[httpx.Client | None]:
    """The caller's client, else one client for all remote sources (set-up costs ~0.1 s)."""
    if client is not None or not any(is_remote(s) for s in sources):
        return contextlib.nullcontext(client)
    return httpx.Client(follow_redirects=True)
