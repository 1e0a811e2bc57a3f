"""What real sites publish (issue 18): feeds and calendars with the traps of real ones."""

from __future__ import annotations

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
