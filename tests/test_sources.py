"""Inputs: posts feeds and events, parsed from real fixtures and fetched from a real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import DEMO_DIR, DEMO_EVENTS, DEMO_POSTS
from hypothesis import given
from hypothesis import strategies as st

from flows.core.errors import InputError, SettingsError, SourceError
from flows.core.fetch import fetch_source
from flows.core.models import STOCKHOLM, Event, Post, PostKind
from flows.core.settings import Settings
from flows.newsletter.events import parse_events_yaml, parse_ics, read_events
from flows.newsletter.posts import (
    DEFAULT_KIND_MAP,
    find_deadline,
    load_kind_map,
    parse_posts,
    read_posts,
)
from flows.newsletter.sources import html_to_text, shorten

if TYPE_CHECKING:
    from httpserver import FeedServer

DATA = Path(__file__).resolve().parent / "data"
FEEDS = DATA / "feeds"
EVENTS = DATA / "events"
WINDOW = (datetime(2026, 12, 1, tzinfo=STOCKHOLM), datetime(2027, 1, 31, tzinfo=STOCKHOLM))


def sthlm(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=STOCKHOLM)


def feed(name: str) -> tuple[bytes, str]:
    path = FEEDS / name
    return path.read_bytes(), str(path)


def rss(items: str, channel_link: str = "https://t.example/") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:ks="https://kraftsamling.example/ns/1.0"><channel><title>T</title>'
        f"<link>{channel_link}</link><description>d</description>{items}</channel></rss>"
    ).encode()


def item(title: str = "Post", extra: str = "", link: str = "https://t.example/p") -> str:
    return (
        f"<item><title>{title}</title><link>{link}</link>"
        f"<pubDate>Mon, 02 Nov 2026 09:00:00 +0000</pubDate>{extra}</item>"
    )


@pytest.fixture
def fast_settings() -> Settings:
    return Settings.load(http_timeout=0.3, http_retries=2, http_backoff=0.01)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One client for the module: each new client costs ~0.1 s of TLS set-up."""
    with httpx.Client() as shared:
        yield shared


# --------------------------------------------------------------------------------------
# Posts: whole fixtures, every field
# --------------------------------------------------------------------------------------


def test_rss2_fixture_parses_to_expected_posts():
    data, source = feed("rss2.xml")
    posts, status = parse_posts(data, source, DEFAULT_KIND_MAP)

    assert status.ok and status.items == 3 and status.skipped == 0 and not status.warnings
    assert posts == [
        Post(
            id="https://kommun.example/nyheter/ai-strategi",
            title="Ny AI-strategi antagen",
            link="https://kommun.example/nyheter/ai-strategi",
            published=sthlm(2026, 11, 2, 9, 0),
            summary="Kommunfullmäktige har antagit en strategi för AI.",
            kind=PostKind.NEWS,
            source=source,
            image="https://kommun.example/bilder/strategi.jpg",
            image_alt="Ny AI-strategi antagen",
            categories=("Nyheter",),
        ),
        Post(
            id="podd-3",
            title="Avsnitt 3: Chattbotar i skolan",
            link="https://kommun.example/podd/avsnitt-3",  # relative link made absolute
            published=sthlm(2026, 11, 4, 15, 30),  # GMT converted
            summary="Vi pratar om chattbotar.",
            kind=PostKind.PODCAST,  # audio enclosure, no category
            source=source,
            image="https://kommun.example/osaker.jpg",  # its only image, upgraded from http
            image_alt="osäker",
        ),
        Post(
            id="https://kommun.example/stod",  # no guid: the link
            title="Stöd att söka för föreningar",
            link="https://kommun.example/stod",
            published=sthlm(2026, 11, 6, 8, 0),
            summary="Föreningar kan söka stöd. Sista ansökningsdag: 1 december 2026.",
            kind=PostKind.FUNDING,
            source=source,
            image="https://kommun.example/bilder/stod.png",  # image enclosure
            image_alt="Stöd att söka för föreningar",
            deadline=date(2026, 12, 1),
            categories=("Finansiering", "Föreningsliv"),
        ),
    ]
    assert all(p.published.tzinfo is STOCKHOLM for p in posts)
    assert status.links == ("image upgraded to https: http://kommun.example/osaker.jpg",)


def test_atom_fixture_parses_to_expected_posts():
    data, source = feed("atom.xml")
    posts, status = parse_posts(data, source, DEFAULT_KIND_MAP)

    assert status.ok and status.items == 2
    assert posts == [
        Post(
            id="tag:forening.example,2026:ai-etik",
            title="AI & etik i föreningen",  # type="html" title unescaped to text
            link="https://forening.example/2026/ai-etik",
            published=sthlm(2026, 11, 9, 12, 0),  # <published>, not <updated>
            summary="Se inspelningen från kvällens samtal om etik.",
            kind=PostKind.VIDEO,
            source=source,
            image="https://forening.example/bild.jpg",
            image_alt="AI & etik i föreningen",  # empty alt: the title
            categories=("Inspelning",),
        ),
        Post(
            id="tag:forening.example,2026:arsmote",
            title="Årsmöte",
            link="https://forening.example/2026/arsmote",
            published=sthlm(2026, 11, 5, 19, 0),  # only <updated>
            summary="Välkommen till årsmötet den 20 november.",  # xhtml content, blocks spaced
            kind=PostKind.EVENT,
            source=source,
            categories=("evenemang",),
        ),
    ]


def test_wordpress_fixture_parses_to_expected_posts():
    data, source = feed("wordpress.xml")
    posts, status = parse_posts(data, source, DEFAULT_KIND_MAP)

    assert status.ok and status.items == 3
    first, podcast, other = posts
    assert first == Post(
        id="https://region.example/?p=412",
        title="Nu öppnar utlysningen för AI-projekt",
        link="https://region.example/2026/11/12/utlysning-ai-projekt/",
        published=sthlm(2026, 11, 12, 9, 0),
        # WordPress's "[…]" and "The post … appeared first on …" tail are gone.
        summary="Regionen satsar tre miljoner kronor på AI-projekt i kommunerna. Projekten ska "
        "pågå i högst ett år och…",
        kind=PostKind.FUNDING,  # "Utlysningar" beats "Nyheter"
        source=source,
        image="https://region.example/wp-content/uploads/2026/11/utlysning.jpg",
        image_alt="Kommunrepresentanter vid ett bord",
        deadline=date(2027, 1, 15),  # stated only in content:encoded
        categories=("Nyheter", "Utlysningar"),
    )
    assert (podcast.kind, podcast.categories) == (PostKind.PODCAST, ("Nyheter", "Digitalsamtal"))
    assert other.title == "Kommunerna i länet – en lägesbild"
    assert other.kind == PostKind.OTHER  # "Okategoriserade" is in no map


# --------------------------------------------------------------------------------------
# Kinds and the kind map
# --------------------------------------------------------------------------------------

AUDIO = '<enclosure url="https://t.example/a.mp3" type="audio/mpeg" length="1"/>'
VIDEO = '<enclosure url="https://t.example/a.mp4" type="video/mp4" length="1"/>'


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        ("<category>Nyhet</category>", PostKind.NEWS),
        ("<category>NYHETER</category>", PostKind.NEWS),
        ("<category>utlysning</category>", PostKind.FUNDING),
        ("<category>Funding</category>", PostKind.FUNDING),
        ("<category>Podd</category>", PostKind.PODCAST),
        ("<category>Webinar</category>", PostKind.VIDEO),
        ("<category>Kalender</category>", PostKind.EVENT),
        ("<category>Okänd</category>", PostKind.OTHER),
        ("", PostKind.OTHER),
        (AUDIO, PostKind.PODCAST),
        (VIDEO, PostKind.VIDEO),
        ("<category>Nyheter</category>" + AUDIO, PostKind.PODCAST),
        ("<category>Utlysningar</category>" + AUDIO, PostKind.FUNDING),
        ("<category>Nyheter</category><category>Evenemang</category>", PostKind.EVENT),
    ],
)
def test_kind_inference(extra, kind):
    posts, _ = parse_posts(rss(item(extra=extra)), "t", DEFAULT_KIND_MAP)
    assert posts[0].kind == kind


def test_user_kind_map_overrides_the_defaults(tmp_path):
    path = tmp_path / "kinds.yaml"
    path.write_text("# ours\nUtlysningar: news\nOkategoriserade: EVENT\n", encoding="utf-8")
    kind_map = load_kind_map(path)

    assert kind_map["utlysningar"] == PostKind.NEWS
    assert kind_map["okategoriserade"] == PostKind.EVENT
    assert kind_map["podd"] == PostKind.PODCAST  # defaults kept
    data, source = feed("wordpress.xml")
    posts, _ = parse_posts(data, source, kind_map)
    assert [p.kind for p in posts] == [PostKind.NEWS, PostKind.PODCAST, PostKind.EVENT]


def test_demo_kind_map_is_valid():
    kind_map = load_kind_map(DEMO_DIR / "kinds.yaml")
    assert kind_map["jobba hos oss"] == PostKind.OTHER
    assert load_kind_map(None) == DEFAULT_KIND_MAP


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("Nyheter: news\nPodd: [podcast\n", 3, "not valid YAML"),
        ("Nyheter: news\nPodd: poddar\n", 2, "'poddar' for category 'Podd' is not a kind"),
        ("- news\n- podcast\n", 1, "category: kind"),
    ],
)
def test_broken_kind_map_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "kinds.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_kind_map(path)
    message = str(raised.value)
    assert str(path) in message and f"line {line}" in message and words in message


def test_missing_kind_map_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"kinds\.yaml: cannot be read"):
        load_kind_map(tmp_path / "kinds.yaml")


# --------------------------------------------------------------------------------------
# Deadlines
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sista ansökningsdag: 15 januari 2027.", date(2027, 1, 15)),
        ("sista ansökningsdag 2027-01-15", date(2027, 1, 15)),
        ("Sista ansökningsdagen är fredag den 15 jan. 2027", date(2027, 1, 15)),
        ("Sista dag att ansöka: 2027-1-5", date(2027, 1, 5)),
        ("Ansök senast 15/1 2027", date(2027, 1, 15)),
        ("Deadline: January 15, 2027", date(2027, 1, 15)),
        ("Last day to apply: 15 January 2027", date(2027, 1, 15)),
        ("Ansök senast den 3 mars", date(2027, 3, 3)),  # no year: the next 3 March
        ("Sista ansökningsdag 20 november", date(2026, 11, 20)),  # this year's is still ahead
        ("Sista ansökningsdag: 31 februari 2027. Ansök senast 2027-03-01", date(2027, 3, 1)),
        ("Mötet hålls den 15 januari 2027.", None),  # a date without a label
        ("Sista ansökningsdag meddelas senare.", None),
        ("", None),
    ],
)
def test_find_deadline(text, expected):
    assert find_deadline(text, date(2026, 11, 2)) == expected


def test_deadline_from_namespaced_element_wins_over_text():
    extra = (
        "<ks:deadline>2027-02-26</ks:deadline><description>Ansök senast 2027-01-01.</description>"
    )
    posts, _ = parse_posts(rss(item(extra=extra)), "t", DEFAULT_KIND_MAP)
    assert posts[0].deadline == date(2027, 2, 26)


def test_deadline_in_title():
    posts, _ = parse_posts(
        rss(item("Stöd – sista ansökningsdag 1 mars 2027")), "t", DEFAULT_KIND_MAP
    )
    assert posts[0].deadline == date(2027, 3, 1)


# --------------------------------------------------------------------------------------
# Sanitising and shortening
# --------------------------------------------------------------------------------------


def test_unsafe_summary_is_sanitised_and_text_kept():
    data, source = feed("unsafe.xml")
    posts, status = parse_posts(data, source, DEFAULT_KIND_MAP)
    post = posts[0]

    assert status.ok
    assert post.title == "Farlig sammanfattning"
    assert post.summary == "Början & länk Slut på texten."
    for bad in ("<", "alert", "steal", "color: red", "Reservtext", "aktivera skript", "xss"):
        assert bad not in post.summary
    assert (post.image, post.image_alt) == ("https://osaker.example/a.jpg", 'Bild"text')


def test_html_to_text_drops_dangerous_elements_and_handlers():
    html = (
        '<div onmouseover="x()"><style>b{}</style><p>Ett&nbsp;&amp;&#8230;</p>'
        "<script>evil()</script><iframe>ram</iframe><ul><li>två</li><li>tre</li></ul></div>"
    )
    assert html_to_text(html) == "Ett &… två tre"


@given(st.text(alphabet="abcdefghij åäö", min_size=1, max_size=40))
def test_html_to_text_removes_script_content_and_keeps_text(words):
    expected = " ".join(words.split())
    assert html_to_text(f"<p>{words}</p><script>{words}</script>") == expected


@given(st.text(max_size=700), st.integers(min_value=20, max_value=400))
def test_shorten_is_bounded_and_a_prefix(text, limit):
    short = shorten(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
    else:
        assert short.endswith("…")
        assert text.startswith(short[:-1])


def test_shorten_cuts_at_a_word_boundary():
    text = "Kommunen har prövat en AI-tjänst, " * 20
    short = shorten(text, 300)
    assert len(short) <= 300 and short.endswith("…")
    assert text[len(short) - 1] in " ,"  # the cut fell between words
    assert not short[:-1].endswith((" ", ","))


def test_shorten_after_a_full_stop_ends_in_one_mark():
    """Issue 16, point 5: a summary cut after a sentence ended in ".…"."""
    text = "Föreningen höll årsmöte i Malmö. " * 20
    short = shorten(text, 300)
    assert short.endswith("Malmö…") and ".…" not in short
    assert not shorten("Vänta… " * 60, 300).endswith("……")


def test_long_summary_is_shortened_in_posts():
    body = "ord " * 200
    posts, _ = parse_posts(
        rss(item(extra=f"<description>{body}</description>")), "t", DEFAULT_KIND_MAP
    )
    assert len(posts[0].summary) <= 300 and posts[0].summary.endswith("ord…")


# --------------------------------------------------------------------------------------
# Bad feeds
# --------------------------------------------------------------------------------------


def test_entries_without_date_or_link_are_skipped_and_counted():
    data, source = feed("missing.xml")
    posts, status = parse_posts(data, source, DEFAULT_KIND_MAP)

    assert [p.title for p in posts] == ["Komplett post"]
    assert status.ok and status.items == 1 and status.skipped == 3
    assert status.warnings == (
        "skipped 'Utan datum': no publication date",
        "skipped 'Utan länk': no absolute http(s) link",
        "skipped 'Relativ länk utan bas': no absolute http(s) link",
    )


def test_malformed_feed_keeps_what_parsed_with_the_reason():
    data, source = feed("malformed.xml")
    posts, status = parse_posts(data, source, DEFAULT_KIND_MAP)

    assert [p.title for p in posts] == ["Ett", "Två", "Tre"]
    assert posts[0].summary == "Första posten"
    assert status.ok and status.items == 3
    assert len(status.warnings) == 1
    assert "not well-formed" in status.warnings[0] and "line 3" in status.warnings[0]
    assert "undefined entity" in status.warnings[0]


@pytest.mark.parametrize(
    "data",
    [FEEDS.joinpath("notafeed.html").read_bytes(), b"", b"just text", b"\x00\xff\xfe"],
)
def test_something_that_is_not_a_feed_is_not_ok(data):
    posts, status = parse_posts(data, "https://site.example/", DEFAULT_KIND_MAP)
    assert posts == []
    assert not status.ok and "not a usable RSS/Atom feed" in status.message


def test_valid_feed_without_entries_is_ok():
    posts, status = parse_posts(rss(""), "t", DEFAULT_KIND_MAP)
    assert posts == [] and status.ok and status.items == 0


def test_feed_whose_entries_are_all_unusable_is_not_ok():
    posts, status = parse_posts(rss(item(link="")), "t", DEFAULT_KIND_MAP)
    assert posts == [] and not status.ok and status.skipped == 1
    assert "the feed's only entry could not be used" in status.message


def test_counts_of_one_entry_are_singular():
    """Issue 16, point 5: "none of the 1 entries", "1 entries already read"."""
    _, status = parse_posts(rss(item(link="")), "t", DEFAULT_KIND_MAP)
    assert "1 entries" not in status.message and "the feed's only entry" in status.message
    two = rss(item(link="") + item(title="B", link=""))
    _, status = parse_posts(two, "t", DEFAULT_KIND_MAP)
    assert "none of the 2 entries could be used" in status.message


def test_one_duplicate_across_sources_is_one_entry(tmp_path, fast_settings):
    first, second = tmp_path / "a.xml", tmp_path / "b.xml"
    first.write_bytes(rss(item(link="https://t.example/same")))
    second.write_bytes(
        rss(item(link="https://t.example/same") + item(link="https://t.example/new"))
    )
    posts, statuses = read_posts([str(first), str(second)], fast_settings)
    assert len(posts) == 2
    assert statuses[1].warnings[-1] == ("1 entry already read from an earlier source was left out")


def test_parse_posts_never_reads_a_path_given_as_bytes(tmp_path):
    secret = tmp_path / "secret.xml"
    secret.write_bytes(rss(item("Hemlig")))
    posts, status = parse_posts(str(secret).encode(), "t", DEFAULT_KIND_MAP)
    assert posts == [] and not status.ok


def dated_item(title: str, when: str, link: str, body: str = "", extra: str = "") -> str:
    return (
        f"<item><title>{title}</title><link>{link}</link><pubDate>{when}</pubDate>"
        f"<description><![CDATA[{body}]]></description>{extra}</item>"
    )


SINCE = sthlm(2026, 11, 1)  # 2026-10-31 23:00 UTC
WINDOWED = rss(
    dated_item("Ny", "Mon, 02 Nov 2026 09:00:00 +0000", "https://t.example/ny", "<p>NYTT</p>")
    + dated_item("Gräns", "Sat, 31 Oct 2026 23:00:00 +0000", "https://t.example/grans")
    + dated_item(
        "Gammal",
        "Sat, 31 Oct 2026 22:59:59 +0000",
        "https://t.example/gammal",
        '<p>GAMMALT <img src="https://t.example/g.jpg"> Sista ansökningsdag: 1 maj 2027</p>',
    )
    + dated_item("Äldst", "Thu, 01 Oct 2026 07:00:00 +0000", "https://t.example/aldst")
    + dated_item("Gammal utan länk", "Thu, 01 Oct 2026 07:00:00 +0000", "")
)


def test_entries_before_since_are_counted_not_sanitised_or_returned(monkeypatch):
    import nh3

    cleaned: list[str] = []
    real_clean = nh3.clean

    def spy(html: str, *args, **kwargs) -> str:  # a pass-through: nh3 still does the work
        cleaned.append(html)
        return real_clean(html, *args, **kwargs)

    monkeypatch.setattr(nh3, "clean", spy)
    posts, status = parse_posts(WINDOWED, "t", DEFAULT_KIND_MAP, since=SINCE)

    # The entry published exactly at `since` is read; select_issue applies its own bound.
    assert [p.title for p in posts] == ["Ny", "Gräns"]
    assert status.ok and status.old == 2 and status.items == 4  # usable entries, old included
    # An entry without a link is broken whatever its age, and reported as before.
    assert status.skipped == 1
    assert status.warnings == ("skipped 'Gammal utan länk': no absolute http(s) link",)
    assert any("NYTT" in html for html in cleaned)
    assert not any("GAMMALT" in html or "Äldst" in html for html in cleaned)

    cleaned.clear()
    everything, full = parse_posts(WINDOWED, "t", DEFAULT_KIND_MAP)
    assert [p.title for p in everything] == ["Ny", "Gräns", "Gammal", "Äldst"]
    assert full.old == 0 and full.items == 4 and full.skipped == 1
    assert any("GAMMALT" in html for html in cleaned)
    # Inside the window a post is the same whether or not older entries were skipped.
    assert everything[:2] == posts


def test_a_feed_with_only_old_entries_is_ok_and_empty():
    only_old = rss(dated_item("Äldst", "Thu, 01 Oct 2026 07:00:00 +0000", "https://t.example/a"))
    posts, status = parse_posts(only_old, "t", DEFAULT_KIND_MAP, since=SINCE)
    assert posts == [] and status.ok and not status.message
    assert status.items == 1 and status.old == 1 and status.skipped == 0


def test_since_must_be_timezone_aware():
    with pytest.raises(SettingsError, match="'since' must be timezone-aware"):
        parse_posts(WINDOWED, "t", DEFAULT_KIND_MAP, since=datetime(2026, 11, 1))


def test_read_posts_with_since_keeps_a_newer_copy_from_a_later_source(tmp_path, fast_settings):
    # The same guid: first as an old entry of one feed, then republished in another.
    guid = "<guid>https://t.example/?p=7</guid>"
    first, second = tmp_path / "a.xml", tmp_path / "b.xml"
    old, new = "Thu, 01 Oct 2026 07:00:00 +0000", "Mon, 02 Nov 2026 09:00:00 +0000"
    first.write_bytes(rss(dated_item("Gammal", old, "https://t.example/7", extra=guid)))
    second.write_bytes(rss(dated_item("Ny", new, "https://t.example/7", extra=guid)))
    posts, statuses = read_posts([str(first), str(second)], fast_settings, since=SINCE)
    assert [(p.title, p.id) for p in posts] == [("Ny", "https://t.example/?p=7")]
    assert [(s.ok, s.items, s.old) for s in statuses] == [(True, 1, 1), (True, 1, 0)]


# --------------------------------------------------------------------------------------
# Events: iCalendar
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calendar_events() -> tuple[list[Event], object]:
    path = EVENTS / "calendar.ics"
    return parse_ics(path.read_bytes(), str(path), *WINDOW)


def by_title(events: list[Event], title: str) -> list[Event]:
    return [e for e in events if e.title == title]


def test_ics_recurring_event_expands_with_exdate_and_moved_occurrence(calendar_events):
    events, _ = calendar_events
    weekly = [e for e in events if e.id.startswith("veckomote@test.example/")]
    assert [(e.title, e.start) for e in weekly] == [
        ("Veckomöte", sthlm(2026, 12, 7, 10)),
        ("Veckomöte (flyttat)", sthlm(2026, 12, 14, 13)),  # RECURRENCE-ID override
        ("Veckomöte", sthlm(2026, 12, 28, 10)),  # 21 December is an EXDATE
    ]
    assert weekly[0].id == "veckomote@test.example/2026-12-07T10:00:00+01:00"
    assert weekly[0].end == sthlm(2026, 12, 7, 11) and weekly[0].location == "Rum 2, Stadshuset"


def test_ics_all_day_event(calendar_events):
    events, _ = calendar_events
    (lucia,) = by_title(events, "Lucia")
    assert lucia.all_day
    assert (lucia.start, lucia.end) == (sthlm(2026, 12, 13), sthlm(2026, 12, 14))


def test_ics_other_time_zone_is_converted_to_stockholm(calendar_events):
    events, _ = calendar_events
    (webinar,) = by_title(events, "Webbinarium från New York")
    assert webinar.start == sthlm(2026, 12, 15, 15, 0)  # 09:00 in New York
    assert webinar.start.tzinfo is STOCKHOLM and webinar.end == sthlm(2026, 12, 15, 16, 0)
    # "Online" is no place; the URL property is both the page and the join link.
    assert (webinar.location, webinar.online_url) == ("", "https://events.example/ny")
    assert webinar.description == "Ett samtal över Atlanten."


def test_ics_online_links(calendar_events):
    events, _ = calendar_events
    (link_place,) = by_title(events, "Länk som plats")
    assert (link_place.location, link_place.online_url) == ("", "https://meet.example/abc")
    assert link_place.start == sthlm(2026, 12, 16, 10)  # UTC converted
    (google,) = by_title(events, "Google-möte")
    assert google.online_url == "https://meet.google.example/xyz-abcd-efg"
    assert google.url == "https://kommun.example/kalender/google-mote"
    assert google.location == ""


def test_ics_floating_time_skips_and_window(calendar_events):
    events, status = calendar_events
    (floating,) = by_title(events, "Flytande tid")
    assert (floating.start, floating.end) == (sthlm(2027, 1, 12, 8, 30), sthlm(2027, 1, 12, 10, 30))
    titles = {e.title for e in events}
    assert not titles & {"Inställt möte", "Privat lunch", "Före fönstret"}
    assert status.ok and status.items == len(events) == 8 and status.skipped == 2
    assert events == sorted(events, key=lambda e: (e.start, e.title, e.id))


def test_a_broken_ics_event_is_skipped_naming_source_line_and_event():
    path = EVENTS / "broken.ics"
    events, status = parse_ics(path.read_bytes(), str(path), *WINDOW)
    assert [e.title for e in events] == ["Fungerar"]  # the calendar's good event is used
    assert status.ok and status.skipped == 1
    (warning,) = status.warnings
    for word in (str(path), "line 13", "'Trasigt datum'", "DTSTART", "2026-12-08 kl 10"):
        assert word in warning


def test_a_calendar_whose_every_event_is_broken_fails_naming_source_and_line():
    path = EVENTS / "garbage.ics"
    with pytest.raises(SourceError) as raised:
        parse_ics(path.read_bytes(), str(path), *WINDOW)
    message = str(raised.value)
    for word in (str(path), "line 8", "det här är ingen kalenderrad"):
        assert word in message


def test_ics_event_without_start_names_its_line():
    data = (
        b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:u1\nSUMMARY:Utan start\n"
        b"END:VEVENT\nEND:VCALENDAR\n"
    )
    with pytest.raises(SourceError) as raised:
        parse_ics(data, "k.ics", *WINDOW)
    assert "k.ics, line 3" in str(raised.value) and "no DTSTART" in str(raised.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html><body>Kalender</body></html>",
        b"BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:u\n",  # cut off
    ],
)
def test_not_a_calendar_is_a_source_error(data):
    with pytest.raises(SourceError, match="not an iCalendar file"):
        parse_ics(data, "x.ics", *WINDOW)


# --------------------------------------------------------------------------------------
# Events: YAML
# --------------------------------------------------------------------------------------


def test_yaml_events_parse():
    path = EVENTS / "events.yaml"
    events, status = parse_events_yaml(path.read_bytes(), str(path), *WINDOW)
    source = str(path)

    assert status.ok and status.items == 4  # "Långt fram" is outside the window
    assert events == [
        Event(
            id="yaml:heldag-i-malmö/2026-12-11T00:00:00+01:00",
            title="Heldag i Malmö",
            start=sthlm(2026, 12, 11),
            end=sthlm(2026, 12, 12),
            all_day=True,
            source=source,
            location="Stadsbiblioteket, Malmö",
            description="En hel dag med workshoppar.",
        ),
        Event(
            id="yaml:tvådagarskurs/2026-12-14T00:00:00+01:00",
            title="Tvådagarskurs",
            start=sthlm(2026, 12, 14),
            end=sthlm(2026, 12, 16),  # end is the last day, inclusive
            all_day=True,
            source=source,
            url="https://kurs.example/",
        ),
        Event(
            id="yaml:digital-frågestund/2026-12-16T10:00:00+01:00",
            title="Digital frågestund",
            start=sthlm(2026, 12, 16, 10),
            end=sthlm(2026, 12, 16, 11, 30),  # "11:30" on the start day
            all_day=False,
            source=source,
            online_url="https://meet.example/fraga",
        ),
        Event(
            id="yaml:med-tidszon/2026-12-17T10:00:00+01:00",
            title="Med tidszon",
            start=sthlm(2026, 12, 17, 10),  # 09:00 UTC
            end=sthlm(2026, 12, 17, 11),
            all_day=False,
            source=source,
            online_url="https://kommun.example/tidszon",  # "Digitalt": the URL joins
            url="https://kommun.example/tidszon",
        ),
    ]


def test_yaml_syntax_error_names_file_and_line():
    path = EVENTS / "broken_syntax.yaml"
    with pytest.raises(SourceError) as raised:
        parse_events_yaml(path.read_bytes(), str(path), *WINDOW)
    assert f"{path}, line 5: not valid YAML" in str(raised.value)


def test_yaml_mistakes_name_file_event_and_line():
    path = EVENTS / "invalid.yaml"
    with pytest.raises(SourceError) as raised:
        parse_events_yaml(path.read_bytes(), str(path), *WINDOW)
    message = str(raised.value)
    assert f"Events file {path} has mistakes" in message
    assert "\n  event 2 ('Fel datum'): start (line 5): '11 december' is not a date" in message
    assert "\n  event 3 ('Slutar innan start'): end (line 9): is before start" in message
    assert "\n  event 5: title (line 15): is missing. Add the line, e.g. `title: " in message
    # An unknown key leaves its event out (not a mistake), listed so one edit fixes all.
    assert "\n  left out: event 4 ('Okänd nyckel'): plats (line 13): unknown key" in message
    assert "Bra händelse" not in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("title: Inte en lista\n", "line 1: expected a list of events"),
        ("- just text\n", "line 1: event 1 is not a set of `key: value` lines"),
        ("- title: X\n  start: 2026-12-10\n  url: www.example.se\n", "must be a full http"),
        ("- title: X\n  start: 2026-12-10 10:00\n  all_day: true\n", "all_day (line 3): is true"),
        ("- title: X\n  start: 2026-12-10 10:00\n  end: 2026-12-11\n", "needs a time"),
    ],
)
def test_yaml_structure_errors(text, words):
    with pytest.raises(SourceError, match=r"events\.yaml") as raised:
        parse_events_yaml(text.encode(), "events.yaml", *WINDOW)
    assert words in str(raised.value)


def test_yaml_event_with_an_unknown_key_is_left_out_with_a_warning():
    text = (
        "- title: Julmarknad\n  start: 2026-12-12\n  plats: Torget\n"
        "- title: Kurs\n  start: 2026-12-14 09:00\n  place: Biblioteket\n"
    )
    events, status = parse_events_yaml(text.encode(), "events.yaml", *WINDOW)
    assert [e.title for e in events] == ["Kurs"]
    assert status.ok and status.items == 1 and status.skipped == 1
    [warning] = status.warnings
    assert warning.startswith("events.yaml: left out event 1 ('Julmarknad'): plats (line 3): ")
    assert "unknown key (did you mean 'place'?)" in warning and "Known keys: title," in warning


def test_yaml_accepts_an_events_key_and_empty_files():
    text = "events:\n  - title: X\n    start: 2026-12-10\n"
    events, _ = parse_events_yaml(text.encode(), "e.yaml", *WINDOW)
    assert [e.title for e in events] == ["X"]
    assert parse_events_yaml(b"# nothing yet\n", "e.yaml", *WINDOW)[0] == []


# --------------------------------------------------------------------------------------
# Fetching through a real HTTP server on 127.0.0.1
# --------------------------------------------------------------------------------------


def test_fetch_over_http_sends_user_agent(feed_server: FeedServer, fast_settings):
    body = fetch_source(feed_server.url("files/feeds/rss2.xml"), fast_settings)

    assert body == (FEEDS / "rss2.xml").read_bytes()
    (request,) = feed_server.seen("files/feeds/rss2.xml")
    assert request.headers["user-agent"] == fast_settings.user_agent


def test_fetch_uses_a_given_client(feed_server: FeedServer, fast_settings):
    with httpx.Client() as client:
        body = fetch_source(feed_server.url("files/feeds/atom.xml"), fast_settings, client)
    assert body == (FEEDS / "atom.xml").read_bytes()


def test_server_error_is_retried_with_backoff_then_named(
    feed_server: FeedServer, fast_settings, client
):
    url = feed_server.url("status/500")
    delays: list[float] = []
    with pytest.raises(SourceError) as raised:
        fetch_source(url, fast_settings, client, sleep=delays.append)

    assert len(feed_server.seen("status/500")) == 3  # one try and two retries
    assert delays == [0.01, 0.02]
    message = str(raised.value)
    assert url in message and "HTTP 500" in message and "3 attempts" in message


def test_flaky_server_succeeds_after_retries(feed_server: FeedServer, fast_settings, client):
    body = fetch_source(feed_server.url("flaky/2/feeds/rss2.xml"), fast_settings, client)
    assert body == (FEEDS / "rss2.xml").read_bytes()
    assert len(feed_server.seen("flaky/2/feeds/rss2.xml")) == 3


def test_not_found_is_not_retried(feed_server: FeedServer, fast_settings, client):
    with pytest.raises(SourceError, match="HTTP 404") as raised:
        fetch_source(feed_server.url("files/feeds/nope.xml"), fast_settings, client)
    assert feed_server.url("files/feeds/nope.xml") in str(raised.value)
    assert len(feed_server.seen("files/feeds/nope.xml")) == 1


def test_slow_source_times_out(feed_server: FeedServer, client):
    settings = Settings.load(http_timeout=0.1, http_retries=1, http_backoff=0)
    url = feed_server.url("slow/feeds/rss2.xml?delay=1.0")
    with pytest.raises(SourceError) as raised:
        fetch_source(url, settings, client)
    assert url in str(raised.value) and "timed out after 0.1 s (2 attempts)" in str(raised.value)


def test_conditional_get_with_etag_returns_the_cached_body(
    feed_server: FeedServer, fast_settings, tmp_path, client
):
    url = feed_server.url("etag/feeds/rss2.xml")
    first = fetch_source(url, fast_settings, client, cache_dir=tmp_path)
    assert first == (FEEDS / "rss2.xml").read_bytes()
    (body_file,) = tmp_path.glob("*.body")
    body_file.write_bytes(b"from the cache")  # so the answer shows where the bytes came from

    second = fetch_source(url, fast_settings, client, cache_dir=tmp_path)

    assert second == b"from the cache"
    plain, conditional = feed_server.seen("etag/feeds/rss2.xml")
    assert "if-none-match" not in plain.headers
    assert conditional.headers["if-none-match"].startswith('"')
    assert conditional.headers["if-modified-since"] == "Mon, 30 Nov 2026 09:00:00 GMT"


def test_conditional_get_with_last_modified_only(
    feed_server: FeedServer, fast_settings, tmp_path, client
):
    url = feed_server.url("lastmod/feeds/atom.xml")
    fetch_source(url, fast_settings, client, cache_dir=tmp_path)
    assert (
        fetch_source(url, fast_settings, client, cache_dir=tmp_path)
        == (FEEDS / "atom.xml").read_bytes()
    )
    _, conditional = feed_server.seen("lastmod/feeds/atom.xml")
    assert "if-none-match" not in conditional.headers
    assert conditional.headers["if-modified-since"] == "Mon, 30 Nov 2026 09:00:00 GMT"


def test_missing_local_file_is_named(tmp_path, fast_settings):
    with pytest.raises(SourceError, match=r"nowhere\.xml: file not found"):
        fetch_source(str(tmp_path / "nowhere.xml"), fast_settings)


# --------------------------------------------------------------------------------------
# read_posts / read_events: many sources, failures recorded, duplicates removed
# --------------------------------------------------------------------------------------


def test_read_posts_records_a_failing_source_and_keeps_the_others(
    feed_server: FeedServer, fast_settings
):
    broken = feed_server.url("status/500")
    sources = [broken, feed_server.url("files/feeds/rss2.xml"), str(FEEDS / "atom.xml")]
    posts, statuses = read_posts(sources, fast_settings)

    assert [s.ok for s in statuses] == [False, True, True]
    assert broken in statuses[0].message and "HTTP 500" in statuses[0].message
    assert len(posts) == 5
    assert [p.published for p in posts] == sorted((p.published for p in posts), reverse=True)
    assert posts[0].title == "AI & etik i föreningen"


def test_read_posts_removes_duplicates_across_sources(
    feed_server: FeedServer, fast_settings, client
):
    sources = [str(FEEDS / "rss2.xml"), feed_server.url("files/feeds/rss2.xml")]
    posts, statuses = read_posts(sources, fast_settings, client=client)

    assert len(posts) == 3 and len({p.id for p in posts}) == 3
    assert {p.source for p in posts} == {sources[0]}
    assert statuses[1].ok and statuses[1].items == 0
    assert "3 entries already read" in statuses[1].warnings[-1]


def test_read_posts_reports_a_page_that_is_not_a_feed(fast_settings):
    _, statuses = read_posts([str(FEEDS / "notafeed.html")], fast_settings)
    assert not statuses[0].ok and statuses[0].message.startswith("Source ")


def test_read_events_mixes_sources_and_records_remote_failures(
    feed_server: FeedServer, fast_settings, client
):
    sources = [
        feed_server.url("files/events/calendar.ics"),
        feed_server.url("status/503"),
        feed_server.url("files/events/broken.ics"),
        str(EVENTS / "events.yaml"),
    ]
    events, statuses = read_events(sources, fast_settings, *WINDOW, client=client)

    assert [s.ok for s in statuses] == [True, False, True, True]
    assert "HTTP 503" in statuses[1].message and "line 13" in statuses[2].warnings[0]
    assert len(events) == 8 + 1 + 4  # broken.ics's good event, its bad one skipped
    assert [e.start for e in events] == sorted(e.start for e in events)


def test_read_events_sniffs_ics_without_an_extension(tmp_path, fast_settings):
    path = tmp_path / "kalender"
    path.write_bytes((EVENTS / "calendar.ics").read_bytes())
    events, statuses = read_events([str(path)], fast_settings, *WINDOW)
    assert statuses[0].ok and len(events) == 8


@pytest.mark.parametrize("name", ["invalid.yaml", "broken_syntax.yaml"])
def test_read_events_fails_loudly_on_a_broken_local_yaml_list(name, fast_settings):
    with pytest.raises(SourceError, match=name):
        read_events([str(EVENTS / name)], fast_settings, *WINDOW)


def test_a_local_calendar_that_fails_entirely_is_named_and_the_others_used(fast_settings):
    sources = [str(EVENTS / "garbage.ics"), str(EVENTS / "events.yaml")]
    events, statuses = read_events(sources, fast_settings, *WINDOW)
    assert [s.ok for s in statuses] == [False, True] and len(events) == 4
    assert "garbage.ics, line 8" in statuses[0].message


# --------------------------------------------------------------------------------------
# The demo content
# --------------------------------------------------------------------------------------

DEMO_NOW = sthlm(2026, 12, 1, 8, 0)


def test_demo_posts_cover_every_kind():
    settings = Settings.load()
    posts, statuses = read_posts(DEMO_POSTS, settings)

    assert all(s.ok and not s.warnings for s in statuses)
    assert len(posts) >= 15
    assert all(sthlm(2026, 10, 1) <= p.published < sthlm(2026, 12, 1) for p in posts)
    assert {p.kind for p in posts} == set(PostKind)
    funding = [p for p in posts if p.kind == PostKind.FUNDING]
    open_deadlines = sorted(p.deadline for p in funding if p.deadline >= DEMO_NOW.date())
    assert open_deadlines == [date(2027, 1, 15), date(2027, 2, 26)]
    assert date(2026, 11, 20) in {p.deadline for p in funding}
    assert sum(p.image is not None for p in posts) >= 2
    assert all(
        p.image is None or p.image.startswith("https://kraftsamling.example/") for p in posts
    )
    assert all("<" not in p.summary and len(p.summary) <= 300 for p in posts)
    assert all(p.link.startswith("https://kraftsamling.example/") for p in posts)


def test_demo_events_cover_the_window():
    settings = Settings.load()
    start = DEMO_NOW
    events, statuses = read_events(DEMO_EVENTS, settings, start, start + timedelta(days=60))

    assert all(s.ok for s in statuses) and len(statuses) == 2
    assert all(start <= e.start < sthlm(2027, 1, 31) for e in events)
    fika = [e for e in events if e.id.startswith("ai-fika@")]
    assert [e.start.date() for e in fika] == [
        date(2026, 12, 3),
        date(2026, 12, 17),
        date(2027, 1, 14),
    ]
    assert any(e.all_day for e in events)
    assert any(e.online_url and not e.location for e in events)
    assert any(e.location and not e.online_url for e in events)
    (london,) = [e for e in events if e.id.startswith("europeiskt-webbinarium")]
    assert london.start == sthlm(2027, 1, 12, 11, 0)  # 10:00 in London
    assert all(7 <= e.start.hour <= 17 for e in events if not e.all_day)
    assert {e.source for e in events} == set(DEMO_EVENTS)


def test_demo_calendar_has_an_event_before_the_window():
    path = DEMO_DIR / "events.ics"
    before, _ = parse_ics(path.read_bytes(), str(path), sthlm(2026, 10, 1), DEMO_NOW)
    assert any(e.title == "Höstmöte för nätverkets kontaktpersoner" for e in before)
