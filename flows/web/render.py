"""The web pages' templates and the parts every page shares, pure apart from reading templates.

- One Jinja2 environment over `templates/` (shipped in the package): autoescaped, with
  `StrictUndefined`, so a misspelt variable fails the build instead of rendering a blank.
  The newsletter's archive page is rendered here too, from its edition's folders first
  (`render_page(..., folders=edition.template_folders)`), so it extends the same layout.
- `site.html.j2` is the layout: `lang`, the canonical link, Open Graph and Twitter card
  tags, JSON-LD, the navigation (start page, newsletter, podcast) and the inline style
  sheet `site.css` (one request per page, and a page reads the same saved to disk).
- Every link is absolute: `Chrome` takes the public base URL and builds them with
  `flows.core.storage.public_url`, as the feed does.
- Swedish dates with Babel (`format_date(..., locale="sv_SE")`), never the process locale.
- `site_version()` is a hash of the templates and of this package's code: a new version
  makes every page stale once (the feed's state includes it, see `flows.podcast.feedpublish`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from babel.dates import format_date
from markupsafe import Markup

from flows.core.errors import InputError
from flows.core.models import STOCKHOLM
from flows.core.storage import public_url
from flows.web.keys import HOME_KEY, NEWSLETTER_ARCHIVE_KEY, SHOW_PAGE_KEY

WEB_TEMPLATES = Path(str(resources.files("flows.web") / "templates"))
LOCALE = "sv_SE"
SITE_NAME = "Kraftsamling för AI i kommuner och civilsamhälle"
SITE_SHORT_NAME = "Kraftsamling"


# --- formats ---------------------------------------------------------------------------


def swedish_day(moment: date | datetime) -> str:
    """A day in Swedish, in Stockholm time.

    >>> from datetime import date
    >>> swedish_day(date(2026, 11, 5))
    '5 november 2026'
    """
    if isinstance(moment, datetime):
        moment = moment.astimezone(STOCKHOLM).date()
    return format_date(moment, "d MMMM y", locale=LOCALE)


def swedish_duration(seconds: int) -> str:
    """A duration as a listener reads it.

    >>> swedish_duration(9), swedish_duration(754), swedish_duration(3930)
    ('9 s', '13 min', '1 tim 6 min')
    """
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} tim {minutes % 60} min"


def clock_time(seconds: float) -> str:
    """A time in the audio, as players show it.

    >>> clock_time(4), clock_time(754.6), clock_time(3723)
    ('0:04', '12:34', '1:02:03')
    """
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def iso_duration(seconds: int) -> str:
    """An ISO 8601 duration for schema.org.

    >>> iso_duration(9), iso_duration(3723)
    ('PT9S', 'PT1H2M3S')
    """
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "PT" + (text or "0S")


def shorten(text: str, limit: int = 200) -> str:
    """`text` on one line, cut at a word before `limit` characters.

    >>> shorten("ett  två\\ntre", 100), shorten("ett två tre fyra", 9)
    ('ett två tre', 'ett två…')
    """
    words = " ".join(text.split())
    if len(words) <= limit:
        return words
    return words[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def json_ld(document: dict[str, Any]) -> Markup:
    """schema.org JSON-LD that is safe inside `<script>`: `<`, `>` and `&` as escapes.

    >>> str(json_ld({"name": "</script>&"}))
    '{"name": "\\\\u003c/script\\\\u003e\\\\u0026"}'
    """
    text = json.dumps(document, ensure_ascii=False, sort_keys=True)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # escaped above: JSON is not HTML


# --- the chrome every page shares -----------------------------------------------------


@dataclass(frozen=True)
class FeedLink:
    """A feed a page announces (`<link rel="alternate">`) and links."""

    title: str
    url: str
    type: str  # "application/rss+xml" or "application/atom+xml"


@dataclass(frozen=True)
class PageMeta:
    """What the layout says about one page: title, description, address, image, feeds."""

    title: str
    description: str
    url: str  # canonical, absolute
    og_type: str = "website"
    image: str | None = None  # absolute
    image_alt: str = ""
    robots: str | None = None  # "noindex" for a notice page
    feeds: Sequence[FeedLink] = ()
    json_ld: Markup | None = None
    extra_meta: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (property, content)


@dataclass(frozen=True)
class Chrome:
    """The site's navigation and footer, under one public base URL."""

    base_url: str
    footer_name: str = SITE_NAME
    footer_url: str = ""  # the organisation's site; none when empty

    def url(self, key: str) -> str:
        return public_url(self.base_url, key)

    def context(self, lang: str, current: str, meta: PageMeta) -> dict[str, Any]:
        """The layout's variables: `current` is "home", "newsletter" or "podcast"."""
        nav = [
            ("newsletter", "Nyhetsbrevet", self.url(NEWSLETTER_ARCHIVE_KEY)),
            ("podcast", "Podden", self.url(SHOW_PAGE_KEY)),
        ]
        return {
            "lang": lang,
            "page": meta,
            "home": {"url": self.url(HOME_KEY), "label": SITE_SHORT_NAME},
            "nav": [{"id": i, "label": label, "url": url} for i, label, url in nav],
            "current": current,
            "footer": {"name": self.footer_name, "url": self.footer_url},
            "og_locale": "sv_SE" if lang == "sv" else lang,
        }


# --- rendering -------------------------------------------------------------------------


@functools.cache
def _environment(folders: tuple[Path, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(folder) for folder in (*folders, WEB_TEMPLATES)]),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(name: str, context: dict[str, Any], folders: Sequence[Path] = ()) -> bytes:
    """One page as UTF-8 bytes. `folders` are looked in before the package's web templates
    (an edition's templates); an unknown variable or a template error is an InputError."""
    try:
        text = _environment(tuple(folders)).get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise InputError(
            f"The web page template {name} could not be rendered: {exc}. Fix the template "
            "(templates take every value from their context)."
        ) from exc
    # Blank lines left by template tags carry nothing; the bytes stay deterministic.
    return re.sub(r"\n[ \t]*\n+", "\n", text).encode("utf-8")


@functools.cache
def site_version() -> str:
    """A hash of the web templates and of this package's code."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted([*WEB_TEMPLATES.iterdir(), *package.glob("*.py")]):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
