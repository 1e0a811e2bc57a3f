"""Selection rules of the newsletter (flows.newsletter.select): windows, repeats, funding,
events, limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from flows.core.errors import SettingsError
from flows.core.models import STOCKHOLM, Episode, Event, Post, PostKind
from flows.core.settings import Settings
from flows.newsletter.issue import month_start
from flows.newsletter.select import select_issue

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
MONTH = "2026-12"


def post(pid: str, published: datetime, kind: PostKind = PostKind.NEWS, **extra) -> Post:
    return Post(
        id=pid,
        title=f"Inlägg {pid}",
        link=f"https://kraftsamling.example/{pid}",
        published=published,
        summary="Sammanfattning.",
        kind=kind,
        source="test",
        **extra,
    )


def event(eid: str, start: datetime, **extra) -> Event:
    return Event(
        id=eid,
        title=f"Evenemang {eid}",
        start=start,
        end=start + timedelta(hours=1),
        all_day=False,
        source="test",
        **extra,
    )


def episode(guid: str, publish_at: datetime, title: str = "Avsnitt") -> Episode:
    return Episode(
        guid=guid,
        slug=guid,
        title=title,
        description="Ett samtal.",
        publish_at=publish_at,
        duration=1800,
        size=1000,
        mime_type="audio/mpeg",
        sha256="0" * 64,
        audio_key=f"podcast/audio/{guid}.mp3",
        first_published=publish_at,
        last_updated=publish_at,
    )


@pytest.fixture
def settings() -> Settings:
    return Settings.load()


def select(posts=(), events=(), previous=(), settings=None, **kw):
    return select_issue(
        list(posts),
        list(events),
        month=kw.pop("month", MONTH),
        now=kw.pop("now", NOW),
        previous=list(previous),
        settings=settings or Settings.load(),
        **kw,
    )


def test_first_issue_covers_the_31_days_before_the_month(settings):
    start = month_start(MONTH)
    inside = post("inside", start - timedelta(days=30))
    too_old = post("old", start - timedelta(days=31, minutes=1))
    this_month = post("dec", NOW - timedelta(hours=1))
    selection = select([inside, too_old, this_month], settings=settings)
    assert selection.window_start == start - timedelta(days=31)
    assert [p.id for p in selection.news] == ["dec", "inside"]
    assert selection.cutoff == NOW


def test_later_issue_starts_at_the_latest_earlier_cutoff(settings):
    previous = [
        {"month": "2026-10", "cutoff": "2026-10-01T08:00:00+02:00", "sections": {}},
        {"month": "2026-11", "cutoff": "2026-11-02T08:00:00+01:00", "sections": {}},
    ]
    before = post("before", datetime(2026, 11, 2, 7, 59, tzinfo=STOCKHOLM))
    after = post("after", datetime(2026, 11, 2, 8, 1, tzinfo=STOCKHOLM))
    selection = select([before, after], previous=previous, settings=settings)
    assert selection.window_start == datetime(2026, 11, 2, 8, 0, tzinfo=STOCKHOLM)
    assert [p.id for p in selection.news] == ["after"]


def test_posts_of_earlier_issues_and_future_posts_are_left_for_others(settings):
    previous = [
        {"month": "2026-11", "cutoff": "2026-11-02T08:00:00+01:00", "sections": {"news": ["a"]}}
    ]
    repeated = post("a", datetime(2026, 11, 20, tzinfo=STOCKHOLM))  # re-dated in the feed
    future = post("next", NOW + timedelta(minutes=5))
    fresh = post("b", datetime(2026, 11, 21, tzinfo=STOCKHOLM))
    selection = select([repeated, future, fresh], previous=previous, settings=settings)
    assert [p.id for p in selection.news] == ["b"]


def test_funding_calls_are_ordered_by_deadline_and_closed_ones_dropped(settings):
    day = NOW - timedelta(days=3)
    calls = [
        post("late", day, PostKind.FUNDING, deadline=date(2027, 2, 1)),
        post("none", day, PostKind.FUNDING),
        post("closed", day, PostKind.FUNDING, deadline=date(2026, 11, 30)),
        post("today", day, PostKind.FUNDING, deadline=date(2026, 12, 1)),
        post("soon", day, PostKind.FUNDING, deadline=date(2026, 12, 15)),
    ]
    selection = select(calls, settings=settings)
    assert [p.id for p in selection.funding] == ["today", "soon", "late", "none"]
    assert selection.closed_calls == ("closed",)


def test_events_start_within_the_configured_days_after_now():
    events = [
        event("started", NOW - timedelta(hours=1)),
        event("soon", NOW + timedelta(days=1)),
        event("edge", NOW + timedelta(days=59, hours=23)),
        event("far", NOW + timedelta(days=60, minutes=1)),
    ]
    selection = select(events=events)
    assert [e.id for e in selection.events] == ["soon", "edge"]
    assert selection.events_until == NOW + timedelta(days=60)
    short = select(events=events, settings=Settings.load(events_days=2))
    assert [e.id for e in short.events] == ["soon"]


def test_next_months_issue_lists_events_from_the_first_of_its_month(settings):
    """Issue 16, point 1: the January issue built on 1 December lists no December event."""
    january = datetime(2027, 1, 1, tzinfo=STOCKHOLM)
    until = january + timedelta(days=settings.events_days)
    events = [
        event(f"dec-{day}", datetime(2026, 12, day, 18, 0, tzinfo=STOCKHOLM))
        for day in (3, 8, 9, 10)
    ]
    events += [
        event("new-year", january),
        event("jan-edge", until - timedelta(minutes=1)),
        event("too-far", until),
    ]
    selection = select(events=events, month="2027-01", now=datetime(2026, 12, 1, tzinfo=STOCKHOLM))
    assert [e.id for e in selection.events] == ["new-year", "jan-edge"]
    assert selection.events_until == until
    # The month's own issue, built on its first day, still starts at now.
    december = select(events=events)
    assert [e.id for e in december.events] == ["dec-3", "dec-8", "dec-9", "dec-10", "new-year"]
    assert december.events_until == NOW + timedelta(days=settings.events_days)


def test_catalog_episode_summary_is_plain_text_not_markdown(settings):
    markdown = "Hur gör en **liten förening**?\n\nTips:\n\n1. Börja smått\n2. Fråga [oss](https://kraftsamling.example/)"
    html = (
        "<p>Hur gör en <strong>liten förening</strong>?</p><p>Tips:</p>"
        '<ol><li>Börja smått</li><li>Fråga <a href="https://kraftsamling.example/">oss</a></li></ol>'
    )
    ep = episode("g1", NOW - timedelta(days=2)).model_copy(
        update={"description": markdown, "description_html": html}
    )
    [item] = select(episodes=[ep], settings=settings).listen
    assert item.summary == "Hur gör en liten förening? Tips: Börja smått Fråga oss"
    # A record without HTML (written before it existed) keeps the producer's text.
    old = ep.model_copy(update={"description_html": ""})
    assert select(episodes=[old], settings=settings).listen[0].summary.startswith("Hur gör en **")


def test_listen_merges_posts_and_catalog_episodes_without_duplicates(settings):
    pod = post("pod", NOW - timedelta(days=2), PostKind.PODCAST)
    video = post("vid", NOW - timedelta(days=1), PostKind.VIDEO)
    same_title = episode("e-dup", NOW - timedelta(days=2), title="  inlägg POD ")
    fresh = episode("e-new", NOW - timedelta(days=5), title="Nytt avsnitt")
    scheduled = episode("e-later", NOW + timedelta(days=3), title="Kommer snart")
    shown = episode("e-old", NOW - timedelta(days=4), title="Redan med")
    previous = [
        {
            "month": "2026-11",
            "cutoff": "2026-11-01T08:00:00+01:00",
            "sections": {"listen": ["episode:e-old"]},
        }
    ]
    selection = select(
        [pod, video],
        previous=previous,
        settings=settings,
        episodes=[same_title, fresh, scheduled, shown],
    )
    assert [i.id for i in selection.listen] == ["vid", "pod", "episode:e-new"]
    item = selection.listen[2]
    assert item.link == "https://kraftsamling.example/podcast/episodes/e-new.html"  # its page
    assert item.duration == 1800
    assert selection.listen[0].kind == "video"


def test_event_posts_that_the_calendar_lists_are_not_repeated_as_news(settings):
    listed = event("cal", NOW + timedelta(days=3), url="https://kraftsamling.example/ev")
    announced = post("ev-post", NOW - timedelta(days=1), PostKind.EVENT)
    announced = replace(announced, link="https://kraftsamling.example/ev")
    other = post("ev-other", NOW - timedelta(days=1), PostKind.EVENT)
    selection = select([announced, other], [listed], settings=settings)
    assert [p.id for p in selection.news] == ["ev-other"]
    assert [e.id for e in selection.events] == ["cal"]


def test_max_items_keeps_every_section_deadlines_and_events_then_the_newest():
    news = [post(f"n{i:02}", NOW - timedelta(hours=i + 1)) for i in range(40)]
    funding = [
        post(f"f{i}", NOW - timedelta(days=20), PostKind.FUNDING, deadline=date(2027, 1, i + 1))
        for i in range(4)
    ]
    listen = [post(f"l{i}", NOW - timedelta(days=25 + i), PostKind.PODCAST) for i in range(3)]
    events = [event(f"e{i}", NOW + timedelta(days=i + 1)) for i in range(5)]
    selection = select(news + funding + listen, events, settings=Settings.load(max_items=25))
    counts = selection.counts()
    assert selection.total == 25
    assert counts["funding"] == 4 and counts["events"] == 5  # dated items come first
    assert counts["listen"] >= 1  # no section disappears
    kept_news = [p.id for p in selection.news]
    assert kept_news == [f"n{i:02}" for i in range(len(kept_news))]  # the newest
    left = {item.id for item in selection.left_out}
    assert len(left) == 40 + 4 + 3 + 5 - 25
    assert left.isdisjoint(p.id for p in selection.news)
    assert "n39" in left
    assert all(item.link.startswith("https://") for item in selection.left_out)


def test_nothing_new_is_empty_but_new_events_count():
    assert select().is_empty
    assert not select(events=[event("e", NOW + timedelta(days=2))]).is_empty
    seen = [
        {"month": "2026-11", "cutoff": "2026-11-01T08:00:00+01:00", "sections": {"events": ["e"]}}
    ]
    assert select(events=[event("e", NOW + timedelta(days=2))], previous=seen).is_empty


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "december", "", "2026/12"])
def test_a_bad_month_names_the_expected_form(month):
    with pytest.raises(SettingsError, match="YYYY-MM"):
        select(month=month)


def test_the_cap_counts_a_repeating_event_once_as_the_reader_sees_it():
    weekly = [event(f"w{i}", NOW + timedelta(days=1 + 7 * i)) for i in range(8)]
    weekly = [replace(e, title="Veckans AI-fika", url="https://ai.example/fika") for e in weekly]
    singles = [event(f"e{i}", NOW + timedelta(days=2 + i)) for i in range(3)]
    news = [post(f"n{i:02}", NOW - timedelta(hours=i + 1)) for i in range(10)]
    selection = select(news, weekly + singles, settings=Settings.load(max_items=12))
    # 1 weekly entry (8 occurrences) + 3 events + 8 news = 12 entries: nothing left out.
    assert selection.counts()["events"] == 4 and selection.total == 12
    assert len(selection.events) == 11  # every occurrence is still listed, under its entry
    assert [e.start for e in selection.events] == sorted(e.start for e in selection.events)
    assert {item.id for item in selection.left_out} == {"n08", "n09"}
