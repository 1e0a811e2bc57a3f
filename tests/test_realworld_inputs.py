"""What real sites publish (issue 18): feeds and calendars with the traps of real ones."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import DEMO_EVENTS

from flows.core.errors import SourceError
from flows.core.fetch import fetch_source
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.newsletter.ics import parse_ics
from flows.newsletter.posts import DEFAULT_KIND_MAP, parse_posts

PLAIN_TITLES = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Nyheter</title><link>https://ai.example/</link>
<item><title>Hur värnar vi rättssäkerheten? &lt;Juridik&gt; &amp; teknik</title>
<link>https://ai.example/1</link><pubDate>Mon, 02 Nov 2026 09:00:00 +0100</pubDate>
<description>Ett &lt;b&gt;seminarium&lt;/b&gt; om juridik.</description></item>
<item><title>Gräns: a&lt;b och c&gt;d</title>
<link>https://ai.example/2</link><pubDate>Tue, 03 Nov 2026 09:00:00 +0100</pubDate></item>
</channel></rss>""".encode()


def test_plain_text_titles_keep_what_stands_in_angle_brackets() -> None:
    posts, status = parse_posts(PLAIN_TITLES, "nyheter.xml", DEFAULT_KIND_MAP)
    assert status.ok
    assert {p.title for p in posts} == {
        "Gräns: a<b och c>d",
        "Hur värnar vi rättssäkerheten? <Juridik> & teknik",
    }
    # An RSS description is HTML: its tags go, its words stay.
    first = next(p for p in posts if p.link.endswith("/1"))
    assert first.summary == "Ett seminarium om juridik."


def test_a_server_sending_one_byte_at_a_time_meets_the_total_deadline(feed_server) -> None:
    # Every byte comes well within the per-read timeout; only the total deadline can stop it.
    settings = Settings(http_timeout=1.0, http_deadline=1.5, http_retries=2)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch_source(feed_server.url("drip?interval=0.2"), settings)
    assert time.monotonic() - started < 1.5 + 1.0
    message = str(caught.value)
    assert "drip" in message and "still sending after 1.5 s" in message
    assert "KRAFTSAMLING_HTTP_DEADLINE" in message


def test_retries_stop_at_the_total_deadline(feed_server) -> None:
    settings = Settings(http_timeout=5.0, http_deadline=1.0, http_retries=5, http_backoff=0.4)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        fetch_source(feed_server.url("status/503"), settings)
    assert time.monotonic() - started < 1.0 + 0.5
    assert "no time left for another try within 1 s" in str(caught.value)


HTTP_FEED = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Blogg</title>
<link>http://blogg.example/</link>
<item><title>Uppgraderad</title><link>http://blogg.example/1</link>
<pubDate>Mon, 02 Nov 2026 09:00:00 +0100</pubDate>
<media:content url="http://blogg.example/bild.jpg" medium="image"/></item>
<item><title>Gammal server</title><link>http://gammal.example/2</link>
<pubDate>Mon, 02 Nov 2026 10:00:00 +0100</pubDate>
<description>&lt;img src="http://gammal.example/b.jpg"&gt;
&lt;img src="data:image/png;base64,AAAA"&gt;</description></item>
<item><title>Skript</title><link>javascript:alert(1)</link>
<pubDate>Mon, 02 Nov 2026 11:00:00 +0100</pubDate></item>
</channel></rss>"""


def test_http_links_and_images_are_upgraded_and_listed() -> None:
    posts, status = parse_posts(
        HTTP_FEED, "blogg.xml", DEFAULT_KIND_MAP, http_only_hosts=["gammal.example"]
    )
    by_title = {p.title: p for p in posts}
    assert set(by_title) == {"Uppgraderad", "Gammal server"}  # javascript: never gets in
    assert by_title["Uppgraderad"].link == "https://blogg.example/1"
    assert by_title["Uppgraderad"].image == "https://blogg.example/bild.jpg"
    # A host with no https: its link stays http (flagged), its image goes; data: never used.
    assert by_title["Gammal server"].link == "http://gammal.example/2"
    assert by_title["Gammal server"].image is None
    assert status.links == (
        "link upgraded to https: http://blogg.example/1",
        "image upgraded to https: http://blogg.example/bild.jpg",
        "link kept as http (its host is in http_only_hosts): http://gammal.example/2",
        "image left out (not an https address): http://gammal.example/b.jpg",
    )
    assert any("Skript" in w and "no absolute http(s) link" in w for w in status.warnings)


def test_when_every_posts_source_fails_no_draft_is_written_and_the_command_exits_1(
    prefect_harness, tmp_path, capsys
) -> None:
    from flows.cli import main

    page = tmp_path / "nyheter.html"  # a web page given where the feed belongs
    page.write_text("<!doctype html><html><body><h1>Nyheter</h1></body></html>", "utf-8")
    empty = tmp_path / "tom.xml"
    empty.write_bytes(b"")
    out = tmp_path / "newsletters"
    code = main(
        [
            "newsletter",
            "--month",
            "2026-12",
            "--posts",
            str(page),
            str(empty),
            "--events",
            str(DEMO_EVENTS[0]),
            "--out",
            str(out),
            "--storage",
            str(tmp_path / "storage"),
            "--now",
            "2026-12-01T08:00:00+01:00",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "Could not read any of the 2 posts sources, so no draft of 2026-12" in err
    assert "nyheter.html" in err and "tom.xml" in err
    assert not (out / "2026-12" / "index.html").exists()


SECONDLY = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//someone else//EN\r
BEGIN:VEVENT\r
UID:every-second@ai.example\r
DTSTART:20261201T090000Z\r
DTEND:20261201T090001Z\r
RRULE:FREQ=SECONDLY\r
SUMMARY:Varje sekund\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:gr\xc3\xa4ns@ai.example\r
DTSTART:20261210T090000Z\r
SUMMARY:Gr\xc3\xa4ns: a<b och c>d\r
DESCRIPTION:Om <Juridik> & teknik\r
URL:http://kalender.ai.example/grans\r
END:VEVENT\r
END:VCALENDAR\r
"""
WINDOW = (
    datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM),
    datetime(2027, 1, 30, 8, 0, tzinfo=STOCKHOLM),
)


def test_an_event_repeating_every_second_is_cut_at_the_limit_with_a_warning() -> None:
    started = time.monotonic()
    events, status = parse_ics(SECONDLY, "kalender.ics", *WINDOW, occurrence_limit=100)
    assert time.monotonic() - started < 2.0  # millions of occurrences are never made
    assert sum(1 for e in events if e.title == "Varje sekund") == 100
    assert any(
        "'Varje sekund' repeats more than 100 times" in w and "OCCURRENCE_LIMIT" in w
        for w in status.warnings
    )
    assert any(e.title == "Gräns: a<b och c>d" for e in events)  # the other event still read


def test_calendar_text_is_text_and_its_links_https() -> None:
    events, status = parse_ics(SECONDLY, "kalender.ics", *WINDOW, occurrence_limit=1)
    (grans,) = [e for e in events if e.title.startswith("Gräns")]
    assert grans.title == "Gräns: a<b och c>d"
    assert grans.description == "Om <Juridik> & teknik"
    assert grans.url == "https://kalender.ai.example/grans"
    assert "link upgraded to https: http://kalender.ai.example/grans" in status.links


def test_a_source_that_takes_too_long_to_expand_stops_at_its_deadline() -> None:
    events, status = parse_ics(SECONDLY, "kalender.ics", *WINDOW, deadline=time.monotonic())
    assert events == []
    assert any("took too long" in w for w in status.warnings)


def test_a_youtube_channel_feeds_entries_are_videos() -> None:
    from flows.core.models import PostKind

    data = (Path(__file__).parent / "data" / "realworld" / "youtube.atom").read_bytes()
    posts, status = parse_posts(data, "youtube.atom", DEFAULT_KIND_MAP)
    assert status.ok and posts
    assert {p.kind for p in posts} == {PostKind.VIDEO}
