"""The December 2026 issue built end to end from feeds and calendars that carry the traps of
real publishers (issue 18). The inputs are in `tests/data/realworld/` (invented content):

- `wordpress-news.xml`: WordPress RSS with a newline before the XML declaration (feedparser
  calls it malformed, everything else is fine), five `content:encoded` items of ~40 KB of
  HTML each (figures, srcset, a tracking pixel, "The post ... appeared first on ..."),
  http:// links and wp-content/uploads images, a funding call whose deadline is in the text;
- `wordpress-blog.xml`: a personal WordPress blog: `&#8220;` entities, `&amp;` in titles and
  a plain-text title with angle brackets ("<Juridik> & teknik");
- `typepad.atom`: TypePad Atom with HTML titles (`<title type="html">`), http links;
- `youtube.atom`: a YouTube channel feed (yt:, media:group, media:thumbnail);
- `google.ics`: a Google Calendar export in America/New_York: a weekly series with an
  EXDATE and a moved RECURRENCE-ID occurrence, `URL:http://...`, an HTML DESCRIPTION with a
  plain-text "<Kommunjuridik>";
- `icalcreator.ics`: an iCalcreator export: all-day, Stockholm and UTC events, folded lines.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import feedparser
import icalendar
import lxml.html
import pytest
import recurring_ical_events

from flows.core.models import STOCKHOLM, Event
from flows.core.settings import Settings
from flows.newsletter.build import IssueResult, build_issue
from flows.newsletter.issue import Issue, issue_dir, read_issue
from flows.newsletter.select import events_window

DATA = Path(__file__).resolve().parent / "data" / "realworld"
POSTS = [DATA / name for name in ("wordpress-news.xml", "wordpress-blog.xml")] + [
    DATA / name for name in ("typepad.atom", "youtube.atom")
]
CALENDARS = [DATA / "google.ics", DATA / "icalcreator.ics"]
MONTH = "2026-12"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
GMAIL_CLIPS_AT = 102_400  # as in test_newsletter.py


@dataclass(frozen=True, repr=False)  # its repr would be the whole email
class Built:
    settings: Settings
    result: IssueResult
    issue: Issue
    index_html: bytes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp_path = tmp_path_factory.mktemp("realworld")
    settings = Settings.load(
        posts=[str(path) for path in POSTS],
        events=[str(path) for path in CALENDARS],
        newsletters_dir=str(tmp_path / "newsletters"),
        storage=str(tmp_path / "storage"),
    )
    result = build_issue(settings, MONTH, NOW)
    assert result.written, result.message  # every test below reads the draft
    folder = issue_dir(settings, MONTH)
    return Built(settings, result, read_issue(folder), (folder / "index.html").read_bytes())


def listed_events(built: Built) -> tuple[Event, ...]:
    """The occurrences the issue lists (those of a repeating event's later dates included)."""
    assert built.result.selection is not None
    return built.result.selection.events


def source_record(built: Built, path: Path) -> dict:
    """The manifest's record of one source (the manifest shows paths relative to the cwd)."""
    found = [s for s in built.issue.manifest["sources"] if s["source"].endswith(path.name)]
    assert len(found) == 1, [s["source"] for s in built.issue.manifest["sources"]]
    return found[0]


def test_the_draft_is_written(built: Built) -> None:
    assert built.result.written, built.result.message
    folder = issue_dir(built.settings, MONTH)
    for name in ("newsletter.mjml", "index.html", "newsletter.txt", "manifest.json"):
        assert (folder / name).is_file(), name
    assert built.issue.manifest["status"] == "draft"
    assert all(s["ok"] for s in built.issue.manifest["sources"]), built.issue.manifest["sources"]


def test_no_http_address_in_the_email(built: Built) -> None:
    """Every href and src of the HTML part, its visible text and the text part are https."""
    doc = lxml.html.document_fromstring(built.issue.html)
    attributes = sorted(
        f"HTML <{element.tag} {name}={value!r}>"
        for element in doc.iter()
        if isinstance(element.tag, str)
        for name in ("href", "src")
        if (value := (element.get(name) or "").strip()).lower().startswith("http:")
    )
    for style in doc.iter("style"):
        style.drop_tree()
    # A bare address in a description, say, is text: shown and made a link by mail apps.
    visible = [f"HTML text: {w}" for w in doc.body.text_content().split() if "http:" in w.lower()]
    text_part = [
        f"text part: {line.strip()}"
        for line in built.issue.text.splitlines()
        if "http:" in line.lower()
    ]
    found = attributes + visible + text_part
    assert not found, "http addresses in the email:\n" + "\n".join(found)


def expanded(calendar: Path, start: datetime, until: datetime) -> set[tuple[str, datetime]]:
    """(summary, start instant in UTC) of every occurrence recurring_ical_events itself finds
    in [start, until); an all-day occurrence starts at midnight Stockholm (events.py)."""
    found = set()
    components = recurring_ical_events.of(icalendar.Calendar.from_ical(calendar.read_bytes()))
    for component in components.between(start, until):
        begin = component["DTSTART"].dt
        if not isinstance(begin, datetime):
            assert isinstance(begin, date)
            begin = datetime.combine(begin, time(0), tzinfo=STOCKHOLM)
        found.add((str(component["SUMMARY"]), begin.astimezone(STOCKHOLM)))
    return found


@pytest.mark.parametrize("calendar", CALENDARS, ids=lambda path: path.name)
def test_the_events_listed_are_the_calendars_own_expansion(built: Built, calendar: Path) -> None:
    start, until = events_window(MONTH, NOW, built.settings.events_days)
    expected = expanded(calendar, start, until)
    assert expected  # the calendar has occurrences in the window
    listed = {
        (event.title, event.start.astimezone(STOCKHOLM))
        for event in listed_events(built)
        if event.source == str(calendar)
    }
    assert sorted(listed) == sorted(expected)
    # The manifest lists the same occurrences (id: UID + "/" + start in Stockholm).
    uids = {
        str(c["UID"]) for c in icalendar.Calendar.from_ical(calendar.read_bytes()).walk("VEVENT")
    }
    in_manifest = {
        event_id
        for event_id in built.issue.manifest["sections"]["events"]
        if event_id.rsplit("/", 1)[0] in uids
    }
    assert len(in_manifest) == len(expected)
    assert {datetime.fromisoformat(i.rsplit("/", 1)[1]) for i in in_manifest} == {
        when for _, when in expected
    }


def test_the_google_series_keeps_its_exdate_and_moved_occurrence(built: Built) -> None:
    """What the expansion above must contain, written out (America/New_York, EST = UTC-5)."""
    start, until = events_window(MONTH, NOW, built.settings.events_days)
    occurrences = expanded(DATA / "google.ics", start, until)
    weekly = sorted(when for title, when in occurrences if title == "Digital fika & öppet hus")
    thursdays = [date(2026, 12, d) for d in (3, 10, 17, 31)] + [
        date(2027, 1, d) for d in (7, 21, 28)
    ]  # 24 December is the EXDATE, 14 January was moved
    assert weekly == [datetime.combine(d, time(16, 0), tzinfo=STOCKHOLM) for d in thursdays]
    assert (
        "Öppet hus – specialutgåva om AI-förordningen",
        datetime(2027, 1, 14, 19, 0, tzinfo=STOCKHOLM),
    ) in occurrences


def test_the_html_email_stays_under_gmails_clipping_size(built: Built) -> None:
    # Five ~40 KB WordPress items must not carry their full content into the email.
    assert len(built.index_html) < GMAIL_CLIPS_AT
    assert built.issue.manifest["html_bytes"] == len(built.index_html)


def test_a_plain_text_title_keeps_its_angle_brackets(built: Built) -> None:
    assert "Hur värnar vi rättssäkerheten? &lt;Juridik&gt; &amp; teknik" in built.issue.html
    assert "* Hur värnar vi rättssäkerheten? <Juridik> & teknik\n" in built.issue.text


def test_a_calendar_description_keeps_plain_text_angle_brackets_and_drops_its_tags(
    built: Built,
) -> None:
    # Google's DESCRIPTION: "... <b>digitala öppna hus</b> ... rättssäkerheten? <Kommunjuridik>
    # & automatiserade beslut." The <b> is markup; "<Kommunjuridik>" is a word in brackets.
    assert "digitala öppna hus" in built.issue.text
    assert "<b>" not in built.issue.text and "&lt;b&gt;" not in built.issue.html
    shown = next(
        event.description
        for event in listed_events(built)
        if event.title == "Digital fika & öppet hus"
    )
    assert "&lt;Kommunjuridik&gt;" in built.issue.html, shown
    assert "<Kommunjuridik>" in built.issue.text, shown


def test_html_titles_are_reduced_to_their_text(built: Built) -> None:
    # TypePad: <title type="html">&lt;em&gt;Öppna data&lt;/em&gt; i kommunen</title>
    assert "* Öppna data i kommunen\n" in built.issue.text
    assert "* Data & etik: fem frågor att ställa före upphandlingen\n" in built.issue.text
    for tag in ("em", "strong"):
        assert f"<{tag}>" not in built.issue.text
        assert f"&lt;{tag}&gt;" not in built.issue.html
    doc = lxml.html.document_fromstring(built.issue.html)
    titles = {" ".join(h3.text_content().split()) for h3 in doc.iter("h3")}
    assert "Öppna data i kommunen" in titles
    assert "Data & etik: fem frågor att ställa före upphandlingen" in titles


def test_the_feed_with_a_newline_before_its_declaration_still_gives_its_posts(
    built: Built,
) -> None:
    record = source_record(built, DATA / "wordpress-news.xml")
    assert record["ok"] and record["items"] == 5, record
    assert any("not well-formed" in warning for warning in record["warnings"]), record
    sections = built.issue.manifest["sections"]
    guids = {f"http://nyheter.kraftsamling.example/?p={p}" for p in (84, 88, 93, 97, 101)}
    assert guids <= set(sections["news"]) | set(sections["funding"])
    # The funding call's deadline is deep in its 40 KB of content.
    assert sections["funding"] == ["http://nyheter.kraftsamling.example/?p=97"]
    assert "Sista ansökningsdag: 15 januari 2027" in built.issue.text
    assert "appeared first on" not in built.issue.text


def test_the_inputs_are_what_they_claim_to_be() -> None:
    """The test data itself: the feeds parse (only wordpress-news.xml is bozo), the calendars
    parse without errors, and the traps are really in the files."""
    for path in POSTS:
        parsed = feedparser.parse(io.BytesIO(path.read_bytes()))
        assert parsed.entries and parsed.version, path.name
        assert bool(parsed.bozo) == (path.name == "wordpress-news.xml"), path.name
    news = (DATA / "wordpress-news.xml").read_bytes()
    assert news.startswith(b"\n<?xml ") and news.count(b"<content:encoded>") == 5
    for path in CALENDARS:
        calendar = icalendar.Calendar.from_ical(path.read_bytes())
        assert not [c.errors for c in calendar.walk() if getattr(c, "errors", None)], path.name
        assert all(len(line) <= 75 for line in path.read_bytes().split(b"\r\n")), path.name
    google = (DATA / "google.ics").read_text("utf-8")
    for trap in ("RRULE:FREQ=WEEKLY;", "EXDATE;TZID=", "RECURRENCE-ID;TZID=", "URL:http://"):
        assert trap in google
    assert "iCalcreator" in (DATA / "icalcreator.ics").read_text("utf-8")
