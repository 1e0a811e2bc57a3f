"""Turn a `Selection` into the email: Jinja2 -> MJML -> HTML, and the plain-text part.

Pure apart from reading the templates: the caller passes the selection, the settings and
the intro's Markdown; nothing here reads the clock or writes files.

- Dates are Swedish through Babel (`4 maj 2023`, `torsdag 4 maj kl. 10.00`), never the
  process locale, and always shown in Europe/Stockholm.
- Templates run with `StrictUndefined`: a misspelt variable fails the build instead of
  rendering a blank. The MJML template autoescapes; the text template does not.
- The editorial intro is Markdown (markdown-it-py), sanitised with nh3 before it enters
  the email: only simple formatting and absolute https/mailto links survive.
- One title per issue (`issue_subject`): the email's <title>, its subject line (`delivery`)
  and its archive entry (`archive`). The "Visa i webbläsaren" link is `issue.web_copy_url`,
  the same URL the web copy is uploaded to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import lxml.html
import mjml
import nh3
from babel.dates import format_date, format_datetime
from markdown_it import MarkdownIt
from markupsafe import Markup

from flows.core.errors import InputError
from flows.core.models import STOCKHOLM, Event
from flows.core.text import clean_text
from flows.newsletter.issue import month_start, web_copy_url
from flows.newsletter.select import ListenItem, Selection

if TYPE_CHECKING:
    from flows.core.settings import Settings

# Shipped inside the package (package-data), so an installed copy finds them from anywhere.
TEMPLATES_DIR = Path(str(resources.files("flows.newsletter") / "templates"))
LOCALE = "sv_SE"

# Colours (WCAG AA on white): text, muted text, links, accent.
INK = "#1f2933"
MUTED = "#52606d"
LINK = "#0b5cad"
ACCENT = "#0b3d5c"

DEFAULT_INTRO = (
    "Hej! Här kommer månadens Kraftsamling update: nyheter från programmet, "
    "utlysningar att söka, evenemang att boka in och något att lyssna på. Trevlig läsning!"
)

_INTRO_TAGS = {"p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li", "h2", "h3", "blockquote"}
SERIF = "Georgia,'Times New Roman',serif"
_HEADING = f"font-family:{SERIF};line-height:1.3;margin:16px 0 8px;color:{ACCENT};"
_INTRO_STYLES = {
    "a": {"style": f"color:{LINK};text-decoration:underline;"},
    "h2": {"style": f"font-size:20px;{_HEADING}"},
    "h3": {"style": f"font-size:17px;{_HEADING}"},
    "p": {"style": "margin:0 0 12px;"},
}


@dataclass(frozen=True)
class RenderedIssue:
    """The three rendered parts of an issue, as text."""

    mjml: str
    html: str
    text: str


@dataclass(frozen=True)
class Intro:
    """The editorial intro, as sanitised HTML and as plain text."""

    html: Markup
    text: str
    from_file: bool


# --- Swedish dates ----------------------------------------------------------------------


def format_day(day: date | datetime) -> str:
    """A day in Swedish.

    >>> format_day(date(2023, 5, 4))
    '4 maj 2023'
    """
    if isinstance(day, datetime):
        day = day.astimezone(STOCKHOLM).date()
    return format_date(day, "d MMMM y", locale=LOCALE)


def format_month(month: str) -> str:
    """A month in Swedish.

    >>> format_month("2026-12")
    'december 2026'
    """
    return format_date(month_start(month).date(), "LLLL y", locale=LOCALE)


def issue_subject(settings: Settings, month: str) -> str:
    """An issue's title: the email's subject, the page title, the archive's entry.

    >>> from flows.core.settings import Settings
    >>> issue_subject(Settings.load(), "2026-12")
    'Kraftsamling update – december 2026'
    """
    return f"{settings.newsletter_title} – {format_month(month)}"


def format_event_when(event: Event, *, year: int | None = None) -> str:
    """When an event happens, in Stockholm time and Swedish.

    The year is shown only when it differs from `year` (the issue's year).

    >>> from flows.core.models import Event
    >>> start = datetime(2023, 5, 4, 10, 0, tzinfo=STOCKHOLM)
    >>> e = Event("x", "Webbinarium", start, start + timedelta(hours=2), False, "demo")
    >>> format_event_when(e, year=2023)
    'torsdag 4 maj kl. 10.00–12.00'
    """
    start = event.start.astimezone(STOCKHOLM)
    show_year = year is not None and start.year != year
    day_pattern = "EEEE d MMMM y" if show_year else "EEEE d MMMM"
    if event.all_day:
        first = start.date()
        last = first
        if event.end is not None:
            end = event.end.astimezone(STOCKHOLM)
            # iCalendar all-day ends are exclusive (midnight after the last day).
            last = (end - timedelta(days=1)).date() if end.time() == end.time().min else end.date()
            last = max(last, first)
        text = format_date(first, day_pattern, locale=LOCALE)
        if last != first:
            text += " – " + format_date(last, day_pattern, locale=LOCALE)
        return text
    text = format_datetime(start, f"{day_pattern} 'kl.' HH.mm", tzinfo=STOCKHOLM, locale=LOCALE)
    if event.end is not None and event.end > event.start:
        end = event.end.astimezone(STOCKHOLM)
        if end.date() == start.date():
            text += "–" + format_datetime(end, "HH.mm", tzinfo=STOCKHOLM, locale=LOCALE)
        else:
            text += " – " + format_datetime(
                end, f"{day_pattern} 'kl.' HH.mm", tzinfo=STOCKHOLM, locale=LOCALE
            )
    return text


def format_duration(seconds: int | None) -> str:
    """A podcast episode's length.

    >>> format_duration(2520), format_duration(4000), format_duration(None)
    ('42 min', '1 tim 7 min', '')
    >>> format_duration(10), format_duration(30), format_duration(60)
    ('10 sek', '30 sek', '1 min')
    """
    if not seconds:
        return ""
    if seconds < 60:  # under a minute (trailers, teasers): minutes would round to 0 or 1
        return f"{seconds} sek"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} tim {minutes % 60} min"


# --- the intro ----------------------------------------------------------------------------


_markdown = MarkdownIt("commonmark", {"html": True})


def render_intro(markdown_text: str | None) -> Intro:
    """The intro as sanitised HTML and plain text; the default greeting when there is none."""
    if markdown_text is None or not markdown_text.strip():
        return Intro(Markup(f'<p style="margin:0;">{DEFAULT_INTRO}</p>'), DEFAULT_INTRO, False)
    raw = _markdown.render(markdown_text)
    clean = nh3.clean(
        raw,
        tags=_INTRO_TAGS,
        attributes={"a": {"href"}},
        clean_content_tags={"script", "style", "iframe", "object", "embed", "template"},
        url_schemes={"https", "mailto"},
        url_relative="deny",
        set_tag_attribute_values=_INTRO_STYLES,
    ).strip()
    # A link whose URL was refused keeps its words but stops looking like a link.
    clean = re.sub(r"<a (?![^>]*\bhref=)[^>]*>(.*?)</a>", r"\1", clean, flags=re.S)
    return Intro(Markup(clean), _html_to_text(clean), True)


def _html_to_text(html: str) -> str:
    """Plain text of simple sanitised HTML: one block per paragraph, links as (url)."""
    if not html:
        return ""
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    for link in root.iter("a"):
        href = link.get("href")
        if href and href != link.text_content().strip():
            link.tail = f" ({href.removeprefix('mailto:')})" + (link.tail or "")
    blocks: list[str] = []
    for element in root.iter("p", "li", "h2", "h3", "blockquote"):
        if element.tag == "p" and any(
            a.tag in ("li", "blockquote") for a in element.iterancestors()
        ):
            continue  # its list item or quote carries the text
        text = " ".join(element.text_content().split())
        if not text:
            continue
        if element.tag == "li":
            text = "- " + text
        elif element.tag == "blockquote":
            text = "> " + text
        blocks.append(text)
    return "\n\n".join(blocks)


# --- the context --------------------------------------------------------------------------


def _post_entry(post: Any) -> dict[str, Any]:
    return {
        "id": post.id,
        "title": post.title,
        "link": post.link,
        "date": format_day(post.published),
        "summary": post.summary,
        "image": post.image,
        "image_alt": post.image_alt or post.title,
    }


def _funding_entry(post: Any) -> dict[str, Any]:
    entry = _post_entry(post)
    entry["deadline"] = format_day(post.deadline) if post.deadline else ""
    return entry


def _clock(event: Event) -> tuple[Any, ...]:
    """Time of day and length of an occurrence, to tell when only the date differs."""
    start = event.start.astimezone(STOCKHOLM)
    return (event.all_day, start.time(), event.end - event.start if event.end else None)


def _day_only(event: Event, year: int) -> str:
    start = event.start.astimezone(STOCKHOLM)
    pattern = "d MMMM" if start.year == year else "d MMMM y"
    return format_date(start.date(), pattern, locale=LOCALE)


def _event_entries(events: Sequence[Event], year: int) -> list[dict[str, Any]]:
    """One entry per event; later occurrences of a repeating event become "Fler tillfällen"."""
    entries: dict[tuple[str, str, str], dict[str, Any]] = {}
    for event in events:
        link = event.url or event.online_url or ""
        key = (event.title, link, event.location)
        if key in entries:
            first = entries[key]["event"]
            entries[key]["more"].append(
                _day_only(event, year)
                if _clock(event) == _clock(first)
                else format_event_when(event, year=year)
            )
            continue
        entries[key] = {
            "event": event,
            "id": event.id,
            "title": event.title,
            "link": link,
            "when": format_event_when(event, year=year),
            "more": [],
            "place": event.location,
            "online_url": event.online_url or "",
            "description": event.description,
        }
    return list(entries.values())


def _listen_entry(item: ListenItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "link": item.link,
        "date": format_day(item.published),
        "summary": item.summary,
        "label": "Video" if item.kind == "video" else "Podd",
        "duration": format_duration(item.duration),
        "image": item.image,
        "image_alt": item.image_alt or item.title,
    }


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def preheader(selection: Selection, *, events: int | None = None) -> str:
    """The line mail apps show after the subject (`events`: entries after grouping)."""
    counts = selection.counts()
    if events is not None:
        counts["events"] = events
    parts = []
    if counts["news"]:
        parts.append(_count(counts["news"], "nyhet", "nyheter"))
    if counts["funding"]:
        parts.append(_count(counts["funding"], "utlysning", "utlysningar"))
    if counts["events"]:
        parts.append(_count(counts["events"], "evenemang", "evenemang"))
    if counts["listen"]:
        parts.append(_count(counts["listen"], "tips", "tips") + " att lyssna på och titta på")
    listed = (
        ", ".join(parts[:-1]) + (" och " if len(parts) > 1 else "") + (parts[-1] if parts else "")
    )
    month = format_month(selection.month)
    return f"Kraftsamling i {month}: {listed}." if listed else f"Kraftsamling i {month}."


def build_context(
    selection: Selection, settings: Settings, *, intro_md: str | None = None
) -> dict[str, Any]:
    """Everything the templates may use, already formatted (templates only print)."""
    year = month_start(selection.month).year
    intro = render_intro(intro_md)
    month_name = format_month(selection.month)
    events = _event_entries(selection.events, year)
    return _safe_context(
        {
            "lang": "sv",
            "title": issue_subject(settings, selection.month),
            "newsletter_title": settings.newsletter_title,
            "month_name": month_name,
            "preheader": preheader(selection, events=len(events)),
            "intro_html": intro.html,
            "intro_text": intro.text,
            "news": [_post_entry(p) for p in selection.news],
            "funding": [_funding_entry(p) for p in selection.funding],
            "events": events,
            "listen": [_listen_entry(i) for i in selection.listen],
            "web_url": web_copy_url(settings, selection.month),
            "site_url": settings.site_url,
            "site_name": settings.site_url.split("://", 1)[-1].rstrip("/"),
            "contact_email": settings.contact_email,
            "unsubscribe_url": settings.unsubscribe_url,
            "colors": {"ink": INK, "muted": MUTED, "link": LINK, "accent": ACCENT},
        }
    )


def _safe_context(value: Any) -> Any:
    """Every text of the context without characters no email may carry (control characters,
    lone surrogates): mjml-python refuses them, and `sources` removes them already, but
    records may also come from elsewhere (the catalog, tests, other readers)."""
    if isinstance(value, Markup):
        return Markup(clean_text(str(value)))
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {key: _safe_context(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_safe_context(item) for item in value]
    return value


# --- templates and MJML -------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _environment(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_template(name: str, context: dict[str, Any], templates_dir: Path = TEMPLATES_DIR) -> str:
    """Render one template; an unknown variable or a template error is an InputError."""
    try:
        return _environment(Path(templates_dir)).get_template(name).render(context)
    except jinja2.UndefinedError as exc:
        raise InputError(
            f"Template {Path(templates_dir) / name} uses an unknown variable ({exc.message}). "
            "Fix the name in the template, or add the value to build_context in "
            "flows/newsletter/render.py."
        ) from exc
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', None) or name}, line {getattr(exc, 'lineno', '?')}"
        raise InputError(f"Template {where} is invalid: {exc}. Fix the template.") from exc


def compile_mjml(source: str) -> str:
    """MJML to email HTML with mjml-python; no web fonts are pulled in."""
    try:
        return mjml.mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises plain errors from the Rust side
        raise InputError(
            f"The rendered MJML is invalid: {exc}. Check "
            "flows/newsletter/templates/newsletter.mjml.j2 "
            "(open the draft's newsletter.mjml to see the rendered source)."
        ) from exc


def render_issue(
    selection: Selection,
    settings: Settings,
    *,
    intro_md: str | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> RenderedIssue:
    """The issue's MJML source, compiled HTML and plain-text part."""
    context = build_context(selection, settings, intro_md=intro_md)
    source = render_template("newsletter.mjml.j2", context, templates_dir)
    text = render_template("newsletter.txt.j2", context, templates_dir)
    return RenderedIssue(mjml=source, html=compile_mjml(source), text=text)
