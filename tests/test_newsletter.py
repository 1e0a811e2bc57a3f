"""Building an issue end to end (flows.newsletter.build): goldens, determinism, months, refusals.

The demo issue (month 2026-12, now 2026-12-01 08:00 Europe/Stockholm, the shipped demo
content and `newsletters/2026-12/intro.md`) is compared with the committed files in
`tests/golden/newsletter/2026-12/`. After an intended change, regenerate them with ONE
command and read the diff before committing:

    REGEN_GOLDENS=1 python -m pytest tests/test_newsletter.py -k golden
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import lxml.html
import pytest
from conftest import DEMO_EVENTS, DEMO_POSTS, REPO_ROOT

from flows.core.errors import IssueSentError, SettingsError
from flows.core.models import STOCKHOLM, Episode, Event, Post, PostKind, SourceStatus
from flows.core.settings import Settings
from flows.newsletter.build import build_issue
from flows.newsletter.issue import MANIFEST_FILE
from flows.newsletter.posts import read_posts

DEMO_MONTH = "2026-12"
DEMO_NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
GOLDEN = REPO_ROOT / "tests" / "golden" / "newsletter" / DEMO_MONTH
DEMO_INTRO = REPO_ROOT / "newsletters" / DEMO_MONTH / "intro.md"


def demo_settings(out: Path, **kw) -> Settings:
    """Settings that read the demo's posts and events (named: they are never a default)."""
    return Settings.load(
        **{"newsletters_dir": out, "posts": DEMO_POSTS, "events": DEMO_EVENTS, **kw}
    )


def build_demo(out: Path, **kw):
    """The demo issue into `out`, with the shipped intro, read by the real sources module."""
    (out / DEMO_MONTH).mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_INTRO, out / DEMO_MONTH / "intro.md")
    return build_issue(demo_settings(out), DEMO_MONTH, DEMO_NOW, **kw)


# --- fixed in-memory inputs for the month-to-month tests ----------------------------------------


def post(pid: str, published: datetime, kind: PostKind = PostKind.NEWS, **extra) -> Post:
    return Post(
        id=pid,
        title=f"Nyhet {pid}",
        link=f"https://kraftsamling.example/{pid}",
        published=published,
        summary="Text.",
        kind=kind,
        source="memory",
        **extra,
    )


POSTS = [
    post("oct", datetime(2026, 10, 20, 12, tzinfo=STOCKHOLM)),
    post("early-nov", datetime(2026, 11, 1, 12, tzinfo=STOCKHOLM)),
    post("mid-nov", datetime(2026, 11, 15, 12, tzinfo=STOCKHOLM)),
    post(
        "call",
        datetime(2026, 11, 20, 9, tzinfo=STOCKHOLM),
        PostKind.FUNDING,
        deadline=date(2027, 1, 31),
    ),
    post("pod", datetime(2026, 11, 28, 9, tzinfo=STOCKHOLM), PostKind.PODCAST),
]
EVENTS = [
    Event(
        "meet",
        "Träff",
        datetime(2026, 12, 8, 10, tzinfo=STOCKHOLM),
        None,
        False,
        "memory",
        location="Malmö",
    )
]


def memory_readers(posts=POSTS, events=EVENTS):
    def read_posts(sources, settings, **kw):
        return list(posts), [SourceStatus("memory:posts", True, len(posts))]

    def read_events(sources, settings, start, end, **kw):
        return list(events), [SourceStatus("memory:events", True, len(events))]

    return {"read_posts": read_posts, "read_events": read_events}


DRAFT_FILES = ("newsletter.mjml", "index.html", "newsletter.txt")


def files_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in (*DRAFT_FILES, MANIFEST_FILE)}


# --- the demo issue -------------------------------------------------------------------------------


def test_demo_issue_matches_the_golden_files(tmp_path):
    result = build_demo(tmp_path)
    assert result.written
    built = files_of(tmp_path / DEMO_MONTH)
    if os.environ.get("REGEN_GOLDENS") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, data in built.items():
            (GOLDEN / name).write_bytes(data)
    for name, data in built.items():
        golden = GOLDEN / name
        assert golden.exists(), f"{golden} is missing: regenerate (see module docstring)"
        assert data == golden.read_bytes(), f"{name} differs from {golden}: see module docstring"


def test_demo_issue_content_and_manifest(tmp_path):
    result = build_demo(tmp_path)
    folder = tmp_path / DEMO_MONTH
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["status"] == "draft"
    assert manifest["generated_at"] == manifest["cutoff"] == DEMO_NOW.isoformat()
    assert manifest["window_start"] == "2026-10-31T00:00:00+01:00"
    assert manifest["intro"] == "intro.md"
    assert {s["source"] for s in manifest["sources"]} == {
        "demo/posts.xml",
        "demo/events.ics",
        "demo/events.yaml",
    }
    assert all(s["ok"] for s in manifest["sources"])
    for name in DRAFT_FILES:
        assert manifest["files"][name] == result.files[name]
    assert all(manifest["sections"][name] for name in ("news", "funding", "events", "listen"))
    html = (folder / "index.html").read_text()
    doc = lxml.html.document_fromstring(html)
    assert "pröva i den egna verksamheten" in doc.text_content()  # the intro
    assert len(html.encode()) < 102_400
    summary = result.summary()
    assert str(folder / "index.html") in summary
    assert "Utlysningar: " in summary and "Left out (over the limit): 0" in summary


def test_posts_are_read_from_the_window_start_and_the_issue_is_the_same(tmp_path):
    """build_issue passes the window start; reading every entry in full changes nothing."""
    asked: list[datetime | None] = []

    def read_everything(sources_, settings, *, since=None, **kw):
        asked.append(since)
        return read_posts(sources_, settings, **kw)  # the real reader, without the window

    windowed = build_demo(tmp_path / "windowed")
    full = build_demo(tmp_path / "full", read_posts=read_everything)
    assert asked == [datetime(2026, 10, 31, tzinfo=STOCKHOLM)]
    assert files_of(tmp_path / "windowed" / DEMO_MONTH) == files_of(tmp_path / "full" / DEMO_MONTH)
    status = windowed.sources[0]
    assert status.source.endswith("posts.xml")
    assert status.old == 9 and status.items == 20 and full.sources[0].old == 0


def test_two_builds_are_byte_identical(tmp_path):
    build_demo(tmp_path / "a")
    build_demo(tmp_path / "b")
    assert files_of(tmp_path / "a" / DEMO_MONTH) == files_of(tmp_path / "b" / DEMO_MONTH)


def test_a_failing_source_is_recorded_and_the_others_used(tmp_path):
    missing = str(tmp_path / "no-such-feed.xml")
    settings = demo_settings(tmp_path, posts=[*DEMO_POSTS, missing])
    result = build_issue(settings, DEMO_MONTH, DEMO_NOW)
    manifest = json.loads((tmp_path / DEMO_MONTH / MANIFEST_FILE).read_text())
    failed = [s for s in manifest["sources"] if not s["ok"]]
    assert [s["source"] for s in failed] == [missing]
    assert failed[0]["message"]
    assert result.counts["news"] > 0
    assert f"Source failed: {missing}: file not found" in result.summary()
    # Issue 16, point 5: the source is named once ("Source failed: X: Source X: ...").
    assert result.summary().count(missing) == 1
    assert result.markdown().count(missing) == 1
    assert f"- `{missing}`: file not found" in result.markdown()


# --- month after month --------------------------------------------------------------------


def test_consecutive_months_never_repeat_a_post(tmp_path):
    settings = demo_settings(tmp_path)
    readers = memory_readers()
    nov_now = datetime(2026, 11, 2, 8, tzinfo=STOCKHOLM)
    november = build_issue(settings, "2026-11", nov_now, **readers)
    december = build_issue(settings, "2026-12", DEMO_NOW, **readers)
    nov = json.loads((tmp_path / "2026-11" / MANIFEST_FILE).read_text())
    dec = json.loads((tmp_path / "2026-12" / MANIFEST_FILE).read_text())
    nov_ids = {i for ids in nov["sections"].values() for i in ids}
    dec_posts = {i for name in ("news", "funding", "listen") for i in dec["sections"][name]}
    assert nov["window_start"] == "2026-10-01T00:00:00+02:00"  # first issue: 31 days back
    assert {"oct", "early-nov"} <= nov_ids
    assert dec["window_start"] == nov["cutoff"] == nov_now.isoformat()
    assert dec_posts == {"mid-nov", "call", "pod"}
    assert not dec_posts & nov_ids
    assert november.written and december.written


def test_the_next_issue_reads_posts_from_the_last_cutoff(tmp_path):
    settings = demo_settings(tmp_path)
    readers = memory_readers()
    asked: list[datetime] = []

    def read_posts_recording(sources_, settings_, **kw):
        asked.append(kw["since"])
        return readers["read_posts"](sources_, settings_, **kw)

    nov_now = datetime(2026, 11, 2, 8, tzinfo=STOCKHOLM)
    for month, now in (("2026-11", nov_now), ("2026-12", DEMO_NOW)):
        build_issue(
            settings,
            month,
            now,
            read_posts=read_posts_recording,
            read_events=readers["read_events"],
        )
    assert asked == [datetime(2026, 10, 1, tzinfo=STOCKHOLM), nov_now]


def test_the_january_issue_built_in_december_lists_no_december_event(tmp_path):
    """Issue 16, point 1: events start at the later of now and the issue's month."""
    settings = demo_settings(tmp_path)
    asked: list[tuple[datetime, datetime]] = []

    def read_events_recording(sources_, settings_, start, end, **kw):
        asked.append((start, end))
        from flows.newsletter.events import read_events

        return read_events(sources_, settings_, start, end, **kw)

    built_on = datetime(2026, 12, 1, 8, tzinfo=STOCKHOLM)
    result = build_issue(settings, "2027-01", built_on, read_events=read_events_recording)
    january = datetime(2027, 1, 1, tzinfo=STOCKHOLM)
    until = january + timedelta(days=settings.events_days)
    assert asked == [(january, until)]
    assert result.written and result.selection is not None
    starts = [e.start for e in result.selection.events]
    assert starts and all(january <= start < until for start in starts)
    manifest = json.loads((tmp_path / "2027-01" / MANIFEST_FILE).read_text())
    assert manifest["events_until"] == until.isoformat()


def test_nothing_new_writes_no_draft_unless_forced(tmp_path):
    settings = demo_settings(tmp_path)
    readers = memory_readers(events=[])
    build_issue(settings, "2026-12", DEMO_NOW, **readers)
    january_now = datetime(2027, 1, 4, 8, tzinfo=STOCKHOLM)
    result = build_issue(settings, "2027-01", january_now, **readers)
    assert not result.written
    assert "Nothing new for 2027-01" in result.summary() and "--force" in result.summary()
    assert not (tmp_path / "2027-01").exists()
    forced = build_issue(settings, "2027-01", january_now, force=True, **readers)
    assert forced.written and (tmp_path / "2027-01" / "index.html").exists()
    assert forced.counts == {"news": 0, "funding": 0, "events": 0, "listen": 0}


def test_a_sent_issue_is_never_overwritten(tmp_path):
    settings = demo_settings(tmp_path)
    readers = memory_readers()
    build_issue(settings, DEMO_MONTH, DEMO_NOW, **readers)
    folder = tmp_path / DEMO_MONTH
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["status"] = "sent"
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    before = files_of(folder)
    later = DEMO_NOW + timedelta(days=1)
    for force in (False, True):  # a sent issue is immutable: --force does not reopen it
        with pytest.raises(IssueSentError, match=f"{DEMO_MONTH}.*already sent.*immutable"):
            build_issue(settings, DEMO_MONTH, later, force=force, **readers)
    assert files_of(folder) == before
    assert json.loads((folder / MANIFEST_FILE).read_text())["status"] == "sent"


def test_a_partly_sent_issue_is_not_rebuilt(tmp_path):
    settings = demo_settings(tmp_path)
    readers = memory_readers()
    build_issue(settings, DEMO_MONTH, DEMO_NOW, **readers)
    folder = tmp_path / DEMO_MONTH
    (folder / "delivery-progress.json").write_text(json.dumps({"sent": ["abc"]}))
    before = files_of(folder)
    with pytest.raises(IssueSentError, match=r"being sent.*--send"):
        build_issue(settings, DEMO_MONTH, DEMO_NOW, force=True, **readers)
    assert files_of(folder) == before


def test_without_sources_nothing_is_built_and_the_settings_are_named(tmp_path):
    for given in ({}, {"posts": DEMO_POSTS}):
        with pytest.raises(SettingsError, match="KRAFTSAMLING_EVENTS") as info:
            build_issue(Settings.load(newsletters_dir=tmp_path, **given), DEMO_MONTH, DEMO_NOW)
        assert "--posts/--events" in str(info.value) and "demo" in str(info.value)
    assert not any(tmp_path.iterdir())
    # An explicit empty events list is a choice, not a missing setting.
    empty = Settings.load(newsletters_dir=tmp_path, posts=DEMO_POSTS, events=[])
    assert build_issue(empty, DEMO_MONTH, DEMO_NOW).written


def test_a_bad_month_is_a_settings_error(tmp_path):
    settings = demo_settings(tmp_path)
    with pytest.raises(SettingsError, match="YYYY-MM"):
        build_issue(settings, "12-2026", DEMO_NOW, **memory_readers())
    assert not any(tmp_path.iterdir())


def test_intro_md_is_used_and_sanitised(tmp_path):
    settings = demo_settings(tmp_path)
    (tmp_path / DEMO_MONTH).mkdir()
    (tmp_path / DEMO_MONTH / "intro.md").write_text(
        "Välkommen till **decembernumret**!\n\n<script>alert(1)</script>\n\n"
        '<img src="https://evil.example/x.png" onerror="alert(2)">\n',
        encoding="utf-8",
    )
    build_issue(settings, DEMO_MONTH, DEMO_NOW, **memory_readers())
    html = (tmp_path / DEMO_MONTH / "index.html").read_text()
    text = (tmp_path / DEMO_MONTH / "newsletter.txt").read_text()
    assert "<strong>decembernumret</strong>" in html
    assert "<script" not in html and "alert(" not in html and "evil.example" not in html
    assert "Välkommen till decembernumret!" in text


# --- the Prefect flow (one whole-flow test: it starts a temporary Prefect server) ----------


@pytest.mark.prefect
def test_newsletter_flow_runs_in_ephemeral_mode(prefect_harness, tmp_path):
    from prefect.artifacts import Artifact

    from flows.core.storage import LocalStorage
    from flows.newsletter.flow import newsletter
    from flows.podcast.catalog import Catalog, save_catalog

    storage = tmp_path / "storage"
    aired = datetime(2026, 11, 26, 7, tzinfo=STOCKHOLM)
    episode = Episode(
        guid="5f0c3a8e-0000-4000-8000-000000000001",
        slug="digitalsamtal-15",
        title="Digitalsamtal #15: Ett avsnitt bara i katalogen",
        description="Ett samtal om öppna data.",
        publish_at=aired,
        duration=2520,
        size=1234,
        mime_type="audio/mpeg",
        sha256="a" * 64,
        audio_key="podcast/audio/digitalsamtal-15-aaaaaaaa.mp3",
        first_published=aired,
        last_updated=aired,
    )
    save_catalog(LocalStorage(storage), Catalog([episode], None), aired)

    result = newsletter(
        month=DEMO_MONTH,
        out=str(tmp_path / "newsletters"),
        storage=str(storage),
        now=DEMO_NOW,
        posts=DEMO_POSTS,
        events=DEMO_EVENTS,
    )
    assert result.written and result.html_path.exists()
    manifest = json.loads((result.issue_dir / MANIFEST_FILE).read_text())
    assert f"episode:{episode.guid}" in manifest["sections"]["listen"]
    text = (result.issue_dir / "newsletter.txt").read_text()
    assert "https://kraftsamling.example/podcast/episodes/digitalsamtal-15.html" in text
    assert "42 min" in text
    artifact = Artifact.get(f"newsletter-{DEMO_MONTH}")
    assert artifact is not None
    assert "| Utlysningar |" in artifact.data and str(result.html_path) in artifact.data
