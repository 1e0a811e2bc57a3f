"""Editions (flows.newsletter.edition): a second edition is a YAML file and a templates folder.

The English edition in tests/data/edition-en/ (test data, not shipped) is built from the demo
content, rendered, reviewed, published and sent: English dates (Babel), English section names
in its own order, an English subject, its sender name and list headers, and its web copy and
archive under its own storage prefix (`newsletters-en/`). The Swedish edition stays the
default, byte for byte: the goldens in tests/test_newsletter.py check that.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import feedparser
import lxml.html
import pytest
import yaml
from babel.dates import format_date
from conftest import DEMO_EVENTS, DEMO_POSTS, REPO_ROOT
from loopback import smtp_server

from flows.core.errors import InputError, SettingsError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import LocalStorage
from flows.newsletter.approval import pause_key
from flows.newsletter.archive import archive_feed_key, archive_page_key, archive_state_key
from flows.newsletter.build import build_issue
from flows.newsletter.edition import PACKAGE_TEMPLATES, SWEDISH, edition_for, load_edition
from flows.newsletter.issue import web_copy_key
from flows.newsletter.release import release_issue

EN_DIR = REPO_ROOT / "tests" / "data" / "edition-en"
EN_FILE = EN_DIR / "edition.yaml"
MONTH = "2026-12"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
DECIDED_AT = datetime(2026, 12, 2, 14, 30, tzinfo=STOCKHOLM)
LIST = "partners-list@lists.kraftsamling.example"
HEADINGS = ["Coming up", "What happened", "Funding calls", "Listen and watch"]


def english_settings(tmp_path: Path, **kw) -> Settings:
    """The demo's sources, the English edition selected by the setting."""
    return Settings.load(
        newsletters_dir=str(tmp_path / "newsletters-en"),
        storage=str(tmp_path / "storage"),
        posts=DEMO_POSTS,
        events=DEMO_EVENTS,
        edition=str(EN_FILE),
        **kw,
    )


class Recorder:
    """A real SMTP server's handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    recorder = Recorder()
    with smtp_server(recorder) as port:
        monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
        monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
        yield recorder


# --- the file --------------------------------------------------------------------------------


def test_the_english_edition_is_read_with_its_templates_folder():
    edition = load_edition(EN_FILE)
    assert (edition.name, edition.language, edition.locale) == ("en", "en", "en_GB")
    assert list(edition.sections.values()) == HEADINGS  # the file's order is the display order
    assert edition.order == ("events", "news", "funding", "listen")
    # Relative to the file's folder; templates it lacks come from the package.
    assert edition.template_folders == (EN_DIR / "templates", PACKAGE_TEMPLATES)
    assert web_copy_key(MONTH, edition) == "newsletters-en/2026-12/index.html"
    assert archive_state_key(edition) == "newsletters-en/archive.json"
    assert pause_key(MONTH, edition) == "approve-newsletter-en-2026-12"


def test_the_setting_selects_the_edition_and_empty_is_the_swedish_one(monkeypatch):
    assert edition_for(Settings.load()) is SWEDISH
    monkeypatch.setenv("KRAFTSAMLING_EDITION", str(EN_FILE))
    assert Settings.load().edition == EN_FILE
    assert edition_for(Settings.load()) == load_edition(EN_FILE)
    monkeypatch.setenv("KRAFTSAMLING_EDITION", "")
    assert edition_for(Settings.load()) is SWEDISH


def test_the_swedish_edition_keeps_its_keys_and_can_be_written_as_a_file(tmp_path):
    assert web_copy_key(MONTH, SWEDISH) == "newsletters/2026-12/index.html"
    assert (archive_page_key(SWEDISH), archive_feed_key(SWEDISH)) == (
        "newsletters/index.html",
        "newsletters/feed.xml",
    )
    assert pause_key(MONTH, SWEDISH) == "approve-newsletter-2026-12"
    # The file format holds every part of an edition: the Swedish one, written out, reads back.
    data = SWEDISH.model_dump(mode="json")
    data["templates"] = str(PACKAGE_TEMPLATES)
    path = tmp_path / "sv.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    assert load_edition(path) == SWEDISH


def _edited(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(EN_FILE.read_text("utf-8"))
    change(data)
    path = tmp_path / "edition.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    (tmp_path / "templates").mkdir(exist_ok=True)
    return path


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["words"].pop("deadline"), "words.deadline"),
        (lambda d: d.update(subject="{title} – {monht}"), "{monht}"),
        (lambda d: d["words"].update(preheader="In {month}: {items}"), "words.preheader"),
        (lambda d: d["sections"].pop("listen"), "sections"),
        (lambda d: d.update(locale="xx_YY"), "locale"),
        (lambda d: d["dates"].update(at_time="HH:mm qqqqqqq"), "dates.at_time"),
        (lambda d: d.update(storage_prefix="podcast"), "storage_prefix"),
        (lambda d: d.update(templates="no-such-folder"), "templates"),
        (lambda d: d.update(colour="blue"), "colour"),
    ],
)
def test_a_bad_edition_file_is_refused_naming_the_file_and_the_key(tmp_path, change, key):
    path = _edited(tmp_path, change)
    with pytest.raises(InputError) as info:
        load_edition(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_a_missing_or_broken_file_says_what_to_fix(tmp_path):
    with pytest.raises(SettingsError, match="KRAFTSAMLING_EDITION"):
        load_edition(tmp_path / "nowhere.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: en\nwords: [\n", "utf-8")
    with pytest.raises(InputError, match=r"broken\.yaml is not valid YAML at line"):
        load_edition(broken)


# --- an English issue ------------------------------------------------------------------------


def test_an_english_issue_of_the_demo_content(tmp_path):
    result = build_issue(english_settings(tmp_path), MONTH, NOW)
    assert result.written
    assert "  Coming up: 9" in result.summary()  # the edition's section names; entries
    html = (result.issue_dir / "index.html").read_text("utf-8")
    text = (result.issue_dir / "newsletter.txt").read_text("utf-8")
    doc = lxml.html.document_fromstring(html)

    assert doc.get("lang") == "en"
    assert doc.findtext(".//title") == "Kraftsamling update – December 2026"
    assert [h.text_content() for h in doc.xpath("//h2")] == HEADINGS
    positions = [text.index(f"\n{name.upper()}\n") for name in HEADINGS]
    assert positions == sorted(positions)
    body = doc.text_content()
    # Dates in English through Babel, never the process locale.
    published = format_date(date(2026, 11, 30), "d MMMM y", locale="en_GB")
    assert published == "30 November 2026" and published in text and published in body
    for when in ("Thursday 3 December at 09:00–09:45", "Monday 18 January 2027 – Friday"):
        assert when in text and when in body
    assert "More dates: 17 December, 14 January 2027" in text
    assert "Deadline: 15 January 2027" in text and "Deadline: 15 January 2027" in body
    assert "Kraftsamling in December 2026: 9 events, 4 news items" in body  # the preheader
    # The edition's header template replaced the package's; the rest came from the package.
    assert "International edition" in body
    links = {a.get("href") for a in doc.xpath("//a[@href]")}
    assert "https://kraftsamling.example/newsletters-en/2026-12/index.html" in links
    assert "https://kraftsamling.example/newsletter/unsubscribe" in links
    # None of the Swedish edition's own words (the demo content itself stays Swedish).
    swedish = [*SWEDISH.sections.values(), "Visa i webbläsaren", "Avregistrera", " kl. "]
    swedish += ["Fler tillfällen", "Plats:", "Podd", "Nyhetsbrev från", "Du får"]
    assert [w for w in swedish if w in body or w in text] == []
    manifest = json.loads((result.issue_dir / "manifest.json").read_text("utf-8"))
    assert manifest["edition"] == "en"


def test_a_folder_holds_the_issues_of_one_edition(tmp_path):
    swedish = Settings.load(newsletters_dir=str(tmp_path), posts=DEMO_POSTS, events=DEMO_EVENTS)
    assert build_issue(swedish, MONTH, NOW).written
    english = swedish.model_copy(update={"edition": EN_FILE})
    for month in (MONTH, "2027-01"):  # the month's own folder, then an earlier one
        with pytest.raises(SettingsError, match="KRAFTSAMLING_NEWSLETTERS_DIR"):
            build_issue(english, month, NOW, force=True)
    assert "edition" not in json.loads((tmp_path / MONTH / "manifest.json").read_text())


def test_the_english_issue_is_reviewed_published_and_sent_under_its_own_keys(tmp_path, smtp):
    settings = english_settings(tmp_path)
    assert build_issue(settings, MONTH, NOW).written
    shown: list[str] = []
    result = release_issue(
        settings,
        MONTH,
        recipients=[LIST],
        reviewers=["reviewer@kraftsamling.example"],
        approve=True,
        clock=lambda: DECIDED_AT,
        show_review=lambda month, markdown: shown.append(markdown),
    )
    assert result.decision == "approved"
    assert result.web_url == "https://kraftsamling.example/newsletters-en/2026-12/index.html"
    assert "## Coming up (9)" in shown[0] and "## What happened (4)" in shown[0]

    subjects = Counter(str(message["Subject"]) for _, message in smtp.messages)
    assert subjects == Counter(
        {"Kraftsamling update – December 2026": 1, "[Test] Kraftsamling update – December 2026": 1}
    )
    sent = next(m for rcpts, m in smtp.messages if rcpts == [LIST])
    assert sent["From"] == "Kraftsamling International <nyhetsbrev@kraftsamling.example>"
    assert sent["List-Unsubscribe"] == (
        "<mailto:partners@lists.kraftsamling.example?subject=unsubscribe>, "
        "<https://kraftsamling.example/newsletter/unsubscribe>"
    )

    storage = LocalStorage(tmp_path / "storage")
    draft = (tmp_path / "newsletters-en" / MONTH / "index.html").read_bytes()
    assert storage.get_bytes("newsletters-en/2026-12/index.html")[0] == draft
    state = json.loads(storage.get_bytes("newsletters-en/2026-12/sent.json")[0])
    assert state["status"] == "sent"
    assert not (tmp_path / "storage" / "newsletters").exists()  # nothing in the Swedish keys
    assert storage.metadata(archive_state_key(load_edition(EN_FILE)))["public"] is False

    page = lxml.html.fromstring(storage.get_bytes("newsletters-en/index.html")[0])
    assert page.get("lang") == "en" and page.findtext(".//title").endswith("– all issues")
    assert "sent 2 December 2026" in page.text_content()
    feed = feedparser.parse(storage.get_bytes("newsletters-en/feed.xml")[0])
    assert not feed.bozo and feed.feed.language == "en"
    [entry] = feed.entries
    assert entry.id == "tag:kraftsamling.example,2026:newsletters-en/2026-12"
    assert entry.summary == "Kraftsamling update – December 2026: read the issue on the web."


def test_the_flow_runs_the_edition_it_is_given(prefect_harness, tmp_path, smtp):
    from flows.newsletter.flow import newsletter

    result = newsletter(
        month=MONTH,
        now=NOW,
        out=str(tmp_path / "newsletters-en"),
        storage=str(tmp_path / "storage"),
        posts=DEMO_POSTS,
        events=DEMO_EVENTS,
        send=True,
        to=[LIST],
        approve=True,
        edition=str(EN_FILE),
    )
    assert result.release.decision == "approved"
    assert [str(m["Subject"]) for _, m in smtp.messages] == ["Kraftsamling update – December 2026"]
    storage = LocalStorage(tmp_path / "storage")
    assert storage.get_bytes("newsletters-en/2026-12/sent.json") is not None
    assert storage.get_bytes("newsletters/2026-12/sent.json") is None
