"""Rendering the email (flows.newsletter.render): Swedish dates, HTML rules, the text part,
the intro."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import lxml.html
import pytest

from flows.core.errors import InputError
from flows.core.models import STOCKHOLM, Event, Post, PostKind
from flows.core.settings import Settings
from flows.newsletter.edition import SWEDISH
from flows.newsletter.render import (
    build_context,
    compile_mjml,
    format_day,
    format_event_when,
    render_intro,
    render_issue,
    render_template,
)
from flows.newsletter.select import select_issue

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
GMAIL_CLIP = 102_400


def post(pid: str, kind: PostKind = PostKind.NEWS, days: float = 1, **extra) -> Post:
    fields = {
        "title": f"Inlägg {pid}",
        "link": f"https://kraftsamling.example/nyheter/{pid}",
        "summary": "Programmet har startat nya samarbeten.",
        "image": None,
    }
    fields.update(extra)
    return Post(
        id=pid,
        published=NOW - timedelta(days=days),
        kind=kind,
        source="test",
        **fields,
    )


def event(eid: str, start: datetime, end: datetime | None = None, **extra) -> Event:
    all_day = extra.pop("all_day", False)
    return Event(eid, f"Evenemang {eid}", start, end, all_day, "test", **extra)


def sample_selection(settings: Settings, n_news: int = 3, long: bool = False):
    text = ("Lång sammanfattning om digital omställning i offentlig sektor. " * 5) if long else ""
    posts = [
        post(
            f"n{i}",
            days=i + 1,
            summary=text or "Kort nyhet.",
            title=("Rubrik " * 15 if long else "Nyhet ") + str(i),
            image=f"https://kraftsamling.example/bild/{i}.jpg" if i % 2 == 0 else None,
            image_alt="" if i % 4 == 0 else "Foto från träffen",
        )
        for i in range(n_news)
    ]
    posts += [
        post("f1", PostKind.FUNDING, deadline=date(2027, 1, 15), summary=text or "Sök nu."),
        post("p1", PostKind.PODCAST, days=2),
        post("v1", PostKind.VIDEO, days=3),
    ]
    events = [
        event(
            "web",
            datetime(2026, 12, 10, 10, tzinfo=STOCKHOLM),
            datetime(2026, 12, 10, 11, 30, tzinfo=STOCKHOLM),
            online_url="https://meet.kraftsamling.example/abc",
        ),
        event(
            "place",
            datetime(2026, 12, 14, tzinfo=STOCKHOLM),
            datetime(2026, 12, 15, tzinfo=STOCKHOLM),
            all_day=True,
            location="Kulturhuset, Stockholm",
            url="https://kraftsamling.example/evenemang/place",
        ),
    ]
    return select_issue(posts, events, month="2026-12", now=NOW, previous=[], settings=settings)


def check_email_html(html: str) -> lxml.html.HtmlElement:
    """The rules every issue's HTML must keep; returns the parsed document."""
    assert len(html.encode("utf-8")) < GMAIL_CLIP
    doc = lxml.html.document_fromstring(html)
    assert doc.get("lang") == "sv"
    assert not doc.xpath("//script") and "<script" not in html.lower()
    for img in doc.xpath("//img"):
        assert img.get("alt", "").strip(), lxml.html.tostring(img)
        assert img.get("src", "").startswith("https://")
    for link in doc.xpath("//a[@href]"):
        href = link.get("href")
        assert href.startswith(("https://", "mailto:")), href
    return doc


def content_links(doc: lxml.html.HtmlElement) -> set[str]:
    return {a.get("href") for a in doc.xpath("//a[@href]")}


# --- Swedish dates ---------------------------------------------------------------------------


def test_swedish_dates_come_from_babel():
    assert format_day(date(2023, 5, 4), SWEDISH) == "4 maj 2023"
    start = datetime(2023, 5, 4, 10, 0, tzinfo=STOCKHOLM)
    assert format_event_when(event("a", start), SWEDISH, year=2023) == "torsdag 4 maj kl. 10.00"
    with_end = event("b", start, start + timedelta(hours=2))
    assert format_event_when(with_end, SWEDISH, year=2023) == "torsdag 4 maj kl. 10.00–12.00"
    assert (
        format_event_when(event("c", start), SWEDISH, year=2022) == "torsdag 4 maj 2023 kl. 10.00"
    )


def test_all_day_and_foreign_time_zone_events():
    day = datetime(2026, 12, 14, tzinfo=STOCKHOLM)
    one_day = event("a", day, day + timedelta(days=1), all_day=True)
    assert format_event_when(one_day, SWEDISH, year=2026) == "måndag 14 december"
    three = event("b", day, day + timedelta(days=3), all_day=True)
    assert format_event_when(three, SWEDISH, year=2026) == "måndag 14 december – onsdag 16 december"
    new_york = datetime(2026, 12, 9, 16, 0, tzinfo=ZoneInfo("America/New_York"))
    assert (
        format_event_when(event("c", new_york), SWEDISH, year=2026) == "onsdag 9 december kl. 22.00"
    )


# --- the HTML ------------------------------------------------------------------------------


def test_html_keeps_the_email_rules_and_shows_every_section():
    settings = Settings.load()
    rendered = render_issue(sample_selection(settings), settings)
    doc = check_email_html(rendered.html)
    assert '<mjml lang="sv">' in rendered.mjml
    preheader = build_context(sample_selection(settings), settings)["preheader"]
    assert preheader.startswith("Kraftsamling i december 2026: 3 nyheter, 1 utlysning")
    assert preheader in doc.text_content()
    assert doc.findtext(".//title") == "Kraftsamling update – december 2026"
    body = doc.text_content()
    for heading in ("Det här har hänt", "Utlysningar", "På gång", "Lyssna och titta"):
        assert heading in body
    assert "Sista ansökningsdag: 15 januari 2027" in body
    assert "torsdag 10 december kl. 10.00–11.30" in body
    assert "Digitalt" in body and "Plats: Kulturhuset, Stockholm" in body
    links = content_links(doc)
    assert "https://kraftsamling.example/newsletters/2026-12/index.html" in links
    assert settings.unsubscribe_url in links
    assert "mailto:kontakt@kraftsamling.example" in links
    assert 'width="600"' in rendered.html


def test_25_long_items_stay_under_gmails_clipping_size():
    settings = Settings.load()
    selection = sample_selection(settings, n_news=40, long=True)
    assert selection.total == 25
    rendered = render_issue(selection, settings)
    check_email_html(rendered.html)


def test_the_text_part_has_every_link_of_the_html():
    settings = Settings.load()
    rendered = render_issue(sample_selection(settings), settings)
    doc = check_email_html(rendered.html)
    for href in content_links(doc):
        assert href.removeprefix("mailto:") in rendered.text, href
    assert "<a " not in rendered.text and "<p" not in rendered.text  # plain text, no markup


def test_feed_text_is_escaped_not_markup():
    settings = Settings.load()
    evil = post("x", title='<script>alert("x")</script> & <b>fet</b>', summary="a < b")
    selection = select_issue([evil], [], month="2026-12", now=NOW, previous=[], settings=settings)
    rendered = render_issue(selection, settings)
    doc = check_email_html(rendered.html)
    assert '<script>alert("x")</script> & <b>fet</b>' in doc.text_content()
    assert '<script>alert("x")</script>' in rendered.text


# --- templates -----------------------------------------------------------------------------


def test_an_unknown_template_variable_fails(tmp_path: Path):
    (tmp_path / "newsletter.mjml.j2").write_text("<mjml>{{ titel }}</mjml>")
    settings = Settings.load()
    context = build_context(sample_selection(settings), settings)
    with pytest.raises(InputError, match="titel"):
        render_template(
            "newsletter.mjml.j2", context, SWEDISH.model_copy(update={"templates": tmp_path})
        )


def test_invalid_mjml_is_an_input_error():
    with pytest.raises(InputError, match="MJML"):
        compile_mjml("<mjml><mj-body><mj-section></mj-body>")


# --- the intro ------------------------------------------------------------------------------


def test_intro_markdown_is_sanitised():
    markdown = (
        "## Hej alla!\n\n"
        "Läs [rapporten](https://kraftsamling.example/rapport) och "
        "[det här](javascript:alert(1)) och [relativt](/sida).\n\n"
        "<script>alert('x')</script><iframe src=\"https://evil.example\"></iframe>\n\n"
        "- punkt ett\n- punkt två\n"
    )
    intro = render_intro(markdown, SWEDISH)
    assert intro.from_file
    html = str(intro.html)
    assert "<script" not in html and "<iframe" not in html and "alert('x')" not in html
    assert 'href="javascript:' not in html and "evil.example" not in html
    assert "/sida" not in html and "och relativt." in html  # words kept, link dropped
    assert html.count("<a ") == 1
    assert '<a href="https://kraftsamling.example/rapport"' in html
    assert "<h2" in html and "<li" in html
    assert "rapporten (https://kraftsamling.example/rapport)" in intro.text
    assert "- punkt två" in intro.text


def test_default_greeting_without_intro():
    intro = render_intro(None, SWEDISH)
    assert not intro.from_file
    assert intro.text.startswith("Hej!")
    assert render_intro("   \n", SWEDISH).text == intro.text


def test_a_repeating_event_is_one_entry_with_more_dates():
    settings = Settings.load()
    first = datetime(2026, 12, 3, 9, tzinfo=STOCKHOLM)
    series = [
        event("fika/1", first, first + timedelta(minutes=45), online_url="https://m.example/f"),
        event(
            "fika/2",
            first + timedelta(days=14),
            first + timedelta(days=14, minutes=45),
            online_url="https://m.example/f",
        ),
        event(
            "fika/3",
            first + timedelta(days=42),
            first + timedelta(days=42, minutes=90),
            online_url="https://m.example/f",
        ),
    ]
    series = [replace(e, title="AI-fika") for e in series]
    selection = select_issue([], series, month="2026-12", now=NOW, previous=[], settings=settings)
    context = build_context(selection, settings)
    assert len(context["events"]) == 1
    assert context["events"][0]["more"] == [
        "17 december",
        "torsdag 14 januari 2027 kl. 09.00–10.30",  # another length: the whole time is shown
    ]
    assert "1 evenemang" in context["preheader"]
