"""Turn a `Selection` into the email: Jinja2 -> MJML -> HTML, and the plain-text part.

Pure apart from reading the templates: the caller passes the selection, the settings and
the intro's Markdown; nothing here reads the clock or writes files. The words, dates,
sections and templates are the selection's edition's (`flows.newsletter.edition`).

- Dates are in the edition's language through Babel (`4 maj 2023`, `torsdag 4 maj kl.
  10.00` in the Swedish edition), never the process locale, and always shown in
  Europe/Stockholm.
- Templates run with `StrictUndefined`: a misspelt variable fails the build instead of
  rendering a blank. The MJML template autoescapes; the text template does not.
- The editorial intro is Markdown (markdown-it-py), sanitised with nh3 before it enters
  the email: only simple formatting and absolute https/mailto links survive.
- One title per issue (`issue_subject`): the email's <title>, its subject line (`delivery`)
  and its archive entry (`archive`). The "Visa i webbläsaren" link is `issue.web_copy_url`,
  the same URL the web copy is uploaded to.
- Templates are looked up in the edition's folder, then the package's
  (`Edition.template_folders`); they take every word from the context's `words`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
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
from flows.newsletter.edition import SWEDISH, Edition
from flows.newsletter.issue import month_start, web_copy_url
from flows.newsletter.select import ListenItem, Selection, entry_key

if TYPE_CHECKING:
    from flows.core.settings import Settings

# Colours (WCAG AA on white): text, muted text, links, accent.
INK = "#1f2933"
MUTED = "#52606d"
LINK = "#0b5cad"
ACCENT = "#0b3d5c"

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


# --- dates -------------------------------------------------------------------------------


def format_day(day: date | datetime, edition: Edition) -> str:
    """A day in the edition's language.

    >>> format_day(date(2023, 5, 4), SWEDISH)
    '4 maj 2023'
    """
    if isinstance(day, datetime):
        day = day.astimezone(STOCKHOLM).date()
    return format_date(day, edition.dates.day, locale=edition.locale)


def format_month(month: str, edition: Edition) -> str:
    """A month in the edition's language.

    >>> format_month("2026-12", SWEDISH)
    'december 2026'
    """
    return format_date(month_start(month).date(), edition.dates.month, locale=edition.locale)


def issue_subject(settings: Settings, month: str, edition: Edition) -> str:
    """An issue's title: the email's subject, the page title, the archive's entry.

    >>> from flows.core.settings import Settings
    >>> issue_subject(Settings.load(), "2026-12", SWEDISH)
    'Kraftsamling update – december 2026'
    """
    return edition.subject_line(settings.newsletter_title, format_month(month, edition))


def format_event_when(event: Event, edition: Edition, *, year: int | None = None) -> str:
    """When an event happens, in Stockholm time and the edition's language.

    The year is shown only when it differs from `year` (the issue's year).

    >>> from flows.core.models import Event
    >>> start = datetime(2023, 5, 4, 10, 0, tzinfo=STOCKHOLM)
    >>> e = Event("x", "Webbinarium", start, start + timedelta(hours=2), False, "demo")
    >>> format_event_when(e, SWEDISH, year=2023)
    'torsdag 4 maj kl. 10.00–12.00'
    """
    dates, locale = edition.dates, edition.locale
    start = event.start.astimezone(STOCKHOLM)
    show_year = year is not None and start.year != year
    day_pattern = dates.weekday if show_year else dates.weekday_in_year
    if event.all_day:
        first = start.date()
        last = first
        if event.end is not None:
            end = event.end.astimezone(STOCKHOLM)
            # iCalendar all-day ends are exclusive (midnight after the last day).
            last = (end - timedelta(days=1)).date() if end.time() == end.time().min else end.date()
            last = max(last, first)
        text = format_date(first, day_pattern, locale=locale)
        if last != first:
            text += " – " + format_date(last, day_pattern, locale=locale)
        return text
    at = f"{day_pattern} {dates.at_time}"
    text = format_datetime(start, at, tzinfo=STOCKHOLM, locale=locale)
    if event.end is not None and event.end > event.start:
        end = event.end.astimezone(STOCKHOLM)
        if end.date() == start.date():
            text += "–" + format_datetime(end, dates.time, tzinfo=STOCKHOLM, locale=locale)
        else:
            text += " – " + format_datetime(end, at, tzinfo=STOCKHOLM, locale=locale)
    return text


def format_duration(seconds: int | None, edition: Edition) -> str:
    """A podcast episode's length.

    >>> [format_duration(s, SWEDISH) for s in (2520, 4000, None)]
    ['42 min', '1 tim 7 min', '']
    >>> [format_duration(s, SWEDISH) for s in (10, 30, 60)]
    ['10 sek', '30 sek', '1 min']
    """
    words = edition.words
    if not seconds:
        return ""
    if seconds < 60:  # under a minute (trailers, teasers): minutes would round to 0 or 1
        return words.seconds.format(n=seconds)
    minutes = round(seconds / 60)
    if minutes < 60:
        return words.minutes.format(n=minutes)
    return words.hours.format(h=minutes // 60, m=minutes % 60)


# --- the intro ----------------------------------------------------------------------------


_markdown = MarkdownIt("commonmark", {"html": True})


def render_intro(markdown_text: str | None, edition: Edition) -> Intro:
    """The intro as sanitised HTML and plain text; the edition's greeting when there is none."""
    if markdown_text is None or not markdown_text.strip():
        greeting = edition.words.default_intro
        html = Markup('<p style="margin:0;">{}</p>').format(greeting)
        return Intro(html, greeting, False)
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


def _post_entry(post: Any, edition: Edition) -> dict[str, Any]:
    return {
        "id": post.id,
        "title": post.title,
        "link": post.link,
        "date": format_day(post.published, edition),
        "summary": post.summary,
        "image": post.image,
        "image_alt": post.image_alt or post.title,
    }


def _funding_entry(post: Any, edition: Edition) -> dict[str, Any]:
    entry = _post_entry(post, edition)
    entry["deadline"] = format_day(post.deadline, edition) if post.deadline else ""
    return entry


def _clock(event: Event) -> tuple[Any, ...]:
    """Time of day and length of an occurrence, to tell when only the date differs."""
    start = event.start.astimezone(STOCKHOLM)
    return (event.all_day, start.time(), event.end - event.start if event.end else None)


def _day_only(event: Event, year: int, edition: Edition) -> str:
    start = event.start.astimezone(STOCKHOLM)
    pattern = edition.dates.day_in_year if start.year == year else edition.dates.day
    return format_date(start.date(), pattern, locale=edition.locale)


def _event_entries(events: Sequence[Event], year: int, edition: Edition) -> list[dict[str, Any]]:
    """One entry per event; later occurrences of a repeating event become "Fler tillfällen"."""
    entries: dict[tuple[str, str, str], dict[str, Any]] = {}
    for event in events:
        key = entry_key(event)
        link = key[1]
        if key in entries:
            first = entries[key]["event"]
            entries[key]["more"].append(
                _day_only(event, year, edition)
                if _clock(event) == _clock(first)
                else format_event_when(event, edition, year=year)
            )
            continue
        entries[key] = {
            "event": event,
            "id": event.id,
            "title": event.title,
            "link": link,
            "when": format_event_when(event, edition, year=year),
            "more": [],
            "place": event.location,
            "online_url": event.online_url or "",
            "description": event.description,
        }
    return list(entries.values())


def _listen_entry(item: ListenItem, edition: Edition) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "link": item.link,
        "date": format_day(item.published, edition),
        "summary": item.summary,
        "label": edition.words.video if item.kind == "video" else edition.words.podcast,
        "duration": format_duration(item.duration, edition),
        "image": item.image,
        "image_alt": item.image_alt or item.title,
    }


def preheader(selection: Selection, *, events: int | None = None) -> str:
    """The line mail apps show after the subject (`events`: entries after grouping)."""
    edition = selection.edition
    words = edition.words
    counts = selection.counts()
    if events is not None:
        counts["events"] = events
    parts = [words.count(name, counts[name]) for name in edition.order if counts[name]]
    listed = (
        ", ".join(parts[:-1])
        + (f" {words.list_and} " if len(parts) > 1 else "")
        + (parts[-1] if parts else "")
    )
    month = format_month(selection.month, edition)
    if not listed:
        return words.preheader_empty.format(month=month)
    return words.preheader.format(month=month, listed=listed)


def _words(edition: Edition, settings: Settings) -> dict[str, Any]:
    """The edition's words for the templates, placeholders filled in."""
    words = edition.words.model_dump()
    words["footer_reason"] = edition.words.footer_reason.format(title=settings.newsletter_title)
    return words


def build_context(
    selection: Selection, settings: Settings, *, intro_md: str | None = None
) -> dict[str, Any]:
    """Everything the templates may use, already formatted (templates only print), in the
    selection's edition."""
    edition = selection.edition
    year = month_start(selection.month).year
    intro = render_intro(intro_md, edition)
    events = _event_entries(selection.events, year, edition)
    entries: dict[str, list[dict[str, Any]]] = {
        "news": [_post_entry(p, edition) for p in selection.news],
        "funding": [_funding_entry(p, edition) for p in selection.funding],
        "events": events,
        "listen": [_listen_entry(i, edition) for i in selection.listen],
    }
    return _safe_context(
        {
            "lang": edition.language,
            "title": issue_subject(settings, selection.month, edition),
            "newsletter_title": settings.newsletter_title,
            "month_name": format_month(selection.month, edition),
            "preheader": preheader(selection, events=len(events)),
            "intro_html": intro.html,
            "intro_text": intro.text,
            **entries,
            # The sections in the edition's order, for templates that loop over them.
            "sections": [
                {"key": key, "name": name, "entries": entries[key]}
                for key, name in edition.sections.items()
            ],
            "words": _words(edition, settings),
            "web_url": web_copy_url(settings, selection.month, edition),
            "site_url": settings.site_url,
            "site_name": settings.site_url.split("://", 1)[-1].rstrip("/"),
            "contact_email": settings.contact_email,
            "unsubscribe_url": edition.unsubscribe_page(settings),
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
def _environment(folders: tuple[Path, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        # The first folder that has a template wins: an edition replaces only what it needs.
        loader=jinja2.FileSystemLoader([str(folder) for folder in folders]),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _template_path(folders: tuple[Path, ...], name: str) -> Path:
    """Where the template `name` is read from (for messages)."""
    return next((f / name for f in folders if (f / name).is_file()), folders[0] / name)


def render_template(name: str, context: dict[str, Any], edition: Edition = SWEDISH) -> str:
    """Render one of the edition's templates (by default the Swedish edition's, the
    package's own); an unknown variable or a template error is an InputError."""
    folders = edition.template_folders
    try:
        return _environment(folders).get_template(name).render(context)
    except jinja2.UndefinedError as exc:
        raise InputError(
            f"Template {_template_path(folders, name)} uses an unknown variable "
            f"({exc.message}). Fix the name in the template, or add the value to "
            "build_context in flows/newsletter/render.py."
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
            f"The rendered MJML is invalid: {exc}. Check the template newsletter.mjml.j2 "
            "(the edition's templates folder, else flows/newsletter/templates/; open the "
            "draft's newsletter.mjml to see the rendered source)."
        ) from exc


def render_issue(
    selection: Selection, settings: Settings, *, intro_md: str | None = None
) -> RenderedIssue:
    """The issue's MJML source, compiled HTML and plain-text part, in the selection's
    edition (its words, dates and templates)."""
    context = build_context(selection, settings, intro_md=intro_md)
    source = render_template("newsletter.mjml.j2", context, selection.edition)
    text = render_template("newsletter.txt.j2", context, selection.edition)
    return RenderedIssue(mjml=source, html=compile_mjml(source), text=text)
