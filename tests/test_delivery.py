"""Sending an issue to a real SMTP server (aiosmtpd on 127.0.0.1) and the web archive."""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import json
import smtplib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import lxml.html
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from loopback import free_port, smtp_server

from flows.core.errors import DeliveryError, IssueSentError
from flows.core.settings import Settings
from flows.core.storage import LocalStorage
from flows.newsletter.archive import publish_web_copy
from flows.newsletter.delivery import build_message, recipient_id, send_issue
from flows.newsletter.edition import SWEDISH
from flows.newsletter.issue import PROGRESS_FILE, ensure_not_sent, web_copy_url
from flows.newsletter.smtp import connect_smtp

STHLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 12, 3, 9, 30, tzinfo=STHLM)
SUBJECT = "Kraftsamling update – december 2026"
# Fictional people on reserved example domains.
PEOPLE = [f"person{n:02d}@example.org" for n in range(12)]
PASSWORD = "hemligt-lösenord-4711"


# --- a real SMTP server on loopback --------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps every accepted message and can refuse chosen RCPTs."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.reject: set[str] = set()
        self.defer: set[str] = set()
        self.hang_up: set[str] = set()  # 421 at end of DATA: the server closes the connection

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 Mailbox unavailable"
        if address.lower() in self.defer:
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.hang_up & {r.lower() for r in envelope.rcpt_tos}:
            self.hang_up.clear()
            return "421 4.3.2 Service shutting down"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)
            for _, _, raw in self.messages
        ]

    def delivered_to(self) -> Counter[str]:
        return Counter(rcpt for _, rcpts, _ in self.messages for rcpt in rcpts)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def settings(recorder: Recorder) -> Iterator[Settings]:
    with smtp_server(recorder) as port:
        yield Settings.load(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")


# --- small issue folders written by hand ---------------------------------------------------


def make_issue(root: Path, month: str = "2026-12") -> Path:
    folder = root / month
    folder.mkdir(parents=True)
    web = f"https://kraftsamling.example/newsletters/{month}/index.html"
    news = "https://kraftsamling.example/nyheter/vatgas-i-norrbotten"
    html = (
        '<!DOCTYPE html><html lang="sv"><head><meta charset="utf-8"><title>Nyhetsbrev</title>'
        f'</head><body><a href="{web}">Visa i webbläsaren</a>'
        f'<h1>Kraftsamling update</h1><p><a href="{news}">Vätgas i Norrbotten – nästa steg</a>'
        "</p></body></html>"
    )
    text = f"Visa i webbläsaren: {web}\n\nVätgas i Norrbotten – nästa steg\n{news}\n"
    files = {"index.html": html, "newsletter.txt": text, "newsletter.mjml": "<mjml></mjml>"}
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    manifest = {
        "month": month,
        "status": "draft",
        "generated_at": "2026-12-01T08:00:00+01:00",
        "cutoff": "2026-12-01T08:00:00+01:00",
        "sections": {"news": ["post-vatgas"]},
        "files": {
            name: {"sha256": hashlib.sha256(content.encode()).hexdigest()}
            for name, content in files.items()
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def assert_no_addresses(folder: Path, addresses: list[str]) -> None:
    for path in folder.iterdir():
        content = path.read_text(encoding="utf-8").lower()
        for address in addresses:
            assert address.lower() not in content, f"{address} leaked into {path.name}"
            assert address.split("@")[0] not in content, f"{address} leaked into {path.name}"


# --- the message -----------------------------------------------------------------------------


def test_sent_messages_have_both_parts_headers_and_links(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    report = send_issue(issue, PEOPLE[:3], settings, NOW, batch_size=2)

    assert (report.sent, report.rejected, report.batches, report.recipients) == (3, 0, 2, 3)
    assert "3 of 3" in report.summary() and "@" not in report.summary()
    assert recorder.delivered_to() == Counter(PEOPLE[:3])
    message_ids = set()
    for (mail_from, rcpts, _), message in zip(recorder.messages, recorder.parsed(), strict=True):
        assert mail_from == "nyhetsbrev@kraftsamling.example"
        assert message["To"] == rcpts[0]  # one message per recipient
        assert message.get_content_type() == "multipart/alternative"
        parts = list(message.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert all(p.get_content_charset() == "utf-8" for p in parts)
        text, html = (p.get_content() for p in parts)
        for body in (text, html):
            assert web_copy_url(settings, "2026-12", SWEDISH) in body
            assert "https://kraftsamling.example/nyheter/vatgas-i-norrbotten" in body
            assert "Vätgas i Norrbotten – nästa steg" in body
        assert message["Subject"] == SUBJECT
        assert message["From"] == "Kraftsamling <nyhetsbrev@kraftsamling.example>"
        assert message["Reply-To"] == "kontakt@kraftsamling.example"
        assert email.utils.parsedate_to_datetime(message["Date"]) == NOW
        assert message["Message-ID"].endswith("@kraftsamling.example>")
        assert message["Message-ID"].startswith(f"<{report.message_id_prefix}.")
        message_ids.add(message["Message-ID"])
        assert message["List-Unsubscribe"] == (
            "<mailto:kontakt@kraftsamling.example?subject=avregistrera>, "
            "<https://kraftsamling.example/nyhetsbrev/avregistrera>"
        )
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len(message_ids) == 3

    manifest = manifest_of(issue)
    assert manifest["status"] == "sent"
    assert manifest["sections"] == {"news": ["post-vatgas"]}  # the rest is kept
    assert manifest["delivery"]["counts"] == {"sent": 3, "rejected": 0, "batches": 2}
    assert manifest["delivery"]["sent_at"] == "2026-12-03T09:30:00+01:00"
    assert manifest["delivery"]["message_id_prefix"] == report.message_id_prefix
    assert_no_addresses(issue, PEOPLE[:3])


def test_build_message_keeps_long_unsubscribe_url_readable():
    url = "https://kraftsamling.example/nyhetsbrev/avregistrera?lista=kraftsamling-update&kanal=e"
    settings = Settings.load(unsubscribe_url=url, unsubscribe_email="lista@kraftsamling.example")
    message = build_message(
        html="<p>Hej</p>",
        text="Hej",
        subject=SUBJECT,
        settings=settings,
        to="Anna Exempel <anna@example.org>",
        month="2026-12",
        now=NOW,
        message_id="<fixed.1@kraftsamling.example>",
    )
    raw = message.as_bytes()
    assert b"=?utf-8?" not in raw.split(b"List-Unsubscribe:")[1].split(b"\n")[0]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == (
        f"<mailto:lista@kraftsamling.example?subject=avregistrera>, <{url}>"
    )
    assert parsed["Message-ID"] == "<fixed.1@kraftsamling.example>"
    assert parsed["Subject"] == SUBJECT


@pytest.mark.parametrize(
    ("field", "value", "header"),
    [
        ("newsletter_title", "Kraftsamling\r\nBcc: alla@example.org", "Subject"),
        ("mail_from", "Kraftsamling <a@kraftsamling.example>\nBcc: x@example.org", "From"),
        ("reply_to", "kontakt@kraftsamling.example\rX-Evil: 1", "Reply-To"),
    ],
)
def test_header_injection_is_refused_before_sending(
    tmp_path, recorder, settings, field, value, header
):
    issue = make_issue(tmp_path)
    unsafe = settings.model_copy(update={field: value})
    with pytest.raises(DeliveryError, match=f"Header {header} contains a line break"):
        send_issue(issue, PEOPLE[:2], unsafe, NOW)
    assert recorder.messages == []
    assert manifest_of(issue)["status"] == "draft"
    assert not (issue / PROGRESS_FILE).exists()


def test_recipient_with_newline_or_no_address_is_refused_without_echoing_it(tmp_path, settings):
    issue = make_issue(tmp_path)
    with pytest.raises(DeliveryError, match=r"Recipient #2 is not an email address") as info:
        send_issue(issue, [PEOPLE[0], "person99@example.org\r\nBcc: x@example.org"], settings, NOW)
    assert "person99" not in str(info.value)
    with pytest.raises(DeliveryError, match="Header To contains a line break"):
        build_message(
            html="h",
            text="t",
            subject="s",
            settings=settings,
            to="a@example.org\nBcc: b@x.org",
            month="2026-12",
            now=NOW,
        )


# --- the server says no ------------------------------------------------------------------------


def test_one_rejected_recipient_is_reported_and_the_others_get_it(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    recorder.reject.add(PEOPLE[1])
    report = send_issue(issue, PEOPLE[:4], settings, NOW, batch_size=3)

    assert recorder.delivered_to() == Counter([PEOPLE[0], PEOPLE[2], PEOPLE[3]])
    assert (report.sent, report.rejected) == (3, 1)
    assert report.rejected_addresses == [PEOPLE[1]]
    assert PEOPLE[1] not in repr(report) and "1 rejected" in report.summary()
    progress = json.loads((issue / PROGRESS_FILE).read_text())
    assert progress["counts"] == {"sent": 3, "rejected": 1, "batches": 2}
    assert progress["rejected"] == [{"id": recipient_id(PEOPLE[1]), "code": 550}]
    assert sorted(progress["sent"]) == sorted(recipient_id(p) for p in (PEOPLE[0], *PEOPLE[2:4]))
    assert manifest_of(issue)["delivery"]["counts"]["rejected"] == 1
    assert_no_addresses(issue, PEOPLE[:4])


def test_deferred_recipient_is_retried_alone_on_the_next_run(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    recorder.defer.add(PEOPLE[2])
    with pytest.raises(DeliveryError, match=r"deferred 1 recipients .* 3 are sent"):
        send_issue(issue, PEOPLE[:4], settings, NOW)
    assert manifest_of(issue)["status"] == "draft"

    recorder.defer.clear()
    report = send_issue(issue, PEOPLE[:4], settings, NOW)
    assert (report.sent, report.sent_now) == (4, 1)
    assert recorder.delivered_to() == Counter(PEOPLE[:4])
    assert manifest_of(issue)["status"] == "sent"


def test_connection_lost_mid_batch_is_resumable(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    recorder.hang_up.add(PEOPLE[3])
    with pytest.raises(DeliveryError, match=r"Lost the SMTP server .* batch 1 of 2 .*3 recipients"):
        send_issue(issue, PEOPLE[:8], settings, NOW, batch_size=5)
    assert json.loads((issue / PROGRESS_FILE).read_text())["counts"]["sent"] == 3
    report = send_issue(issue, PEOPLE[:8], settings, NOW, batch_size=5)
    assert recorder.delivered_to() == Counter(PEOPLE[:8])
    assert (report.sent, report.sent_now) == (8, 5)


def test_server_down_is_a_delivery_error_naming_host_and_port(tmp_path):
    issue = make_issue(tmp_path)
    port = free_port()  # nothing listens here
    down = Settings.load(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    with pytest.raises(DeliveryError, match=rf"127\.0\.0\.1:{port} .*KRAFTSAMLING_SMTP_HOST"):
        send_issue(issue, PEOPLE[:2], down, NOW)
    assert manifest_of(issue)["status"] == "draft"
    progress = json.loads((issue / PROGRESS_FILE).read_text())
    assert progress["counts"] == {"sent": 0, "rejected": 0, "batches": 0}


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def test_login_refused_names_server_without_the_password(tmp_path, recorder):
    issue = make_issue(tmp_path)
    with smtp_server(recorder, authenticator=_authenticator, auth_require_tls=False) as port:
        wrong = Settings.load(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
            smtp_user="redaktionen",
            smtp_password="fel-losenord-0000",
        )
        with pytest.raises(DeliveryError, match=rf"127\.0\.0\.1:{port} refused the login") as info:
            send_issue(issue, PEOPLE[:2], wrong, NOW)
        assert "fel-losenord" not in str(info.value) and "535" in str(info.value)
        assert recorder.messages == []

        right = wrong.model_copy(
            update={"smtp_password": Settings.load(smtp_password=PASSWORD).smtp_password}
        )
        report = send_issue(issue, PEOPLE[:2], right, NOW)
    assert report.sent == 2 and len(recorder.messages) == 2


def test_password_is_not_sent_in_clear_to_a_remote_host():
    remote = Settings.load(
        smtp_host="smtp.kraftsamling.example",
        smtp_security="none",
        smtp_user="redaktionen",
        smtp_password=PASSWORD,
    )
    with pytest.raises(DeliveryError, match="unencrypted") as info:
        connect_smtp(remote)
    assert PASSWORD not in str(info.value)


# --- never twice ---------------------------------------------------------------------------


class SimulatedCrash(Exception):
    """Stands in for the process dying (a kill, an OOM, a lost worker)."""


def test_crash_between_batches_resumes_and_everyone_gets_it_once(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    connections = 0

    def dies_before_second_batch(s: Settings) -> smtplib.SMTP:
        nonlocal connections
        connections += 1
        if connections == 2:
            raise SimulatedCrash("process killed")
        return connect_smtp(s)

    with pytest.raises(SimulatedCrash):
        send_issue(
            issue, PEOPLE, settings, NOW, batch_size=5, smtp_factory=dies_before_second_batch
        )
    progress = json.loads((issue / PROGRESS_FILE).read_text())
    assert progress["counts"] == {"sent": 5, "rejected": 0, "batches": 1}
    assert manifest_of(issue)["status"] == "draft"

    report = send_issue(issue, PEOPLE, settings, NOW, batch_size=5)
    assert recorder.delivered_to() == Counter(PEOPLE)  # each exactly once
    assert (report.sent, report.sent_now, report.batches) == (12, 7, 3)
    assert "5 already sent" in report.summary()
    assert manifest_of(issue)["delivery"]["counts"] == {"sent": 12, "rejected": 0, "batches": 3}
    assert_no_addresses(issue, PEOPLE)


class DiesAfter:
    """A real SMTP connection whose process 'dies' after a number of messages."""

    def __init__(self, client: smtplib.SMTP, budget: list[int]) -> None:
        self.client, self.budget = client, budget

    def send_message(self, msg, from_addr=None, to_addrs=()):
        if self.budget[0] == 0:
            raise SimulatedCrash("process killed mid-batch")
        self.budget[0] -= 1
        return self.client.send_message(msg, from_addr=from_addr, to_addrs=to_addrs)

    def quit(self):
        return self.client.quit()

    def close(self):
        self.client.close()


def test_crash_mid_batch_records_what_went_out(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    budget = [7]
    with pytest.raises(SimulatedCrash):
        send_issue(
            issue,
            PEOPLE,
            settings,
            NOW,
            batch_size=5,
            smtp_factory=lambda s: DiesAfter(connect_smtp(s), budget),
        )
    assert json.loads((issue / PROGRESS_FILE).read_text())["counts"]["sent"] == 7
    send_issue(issue, PEOPLE, settings, NOW, batch_size=5)
    assert recorder.delivered_to() == Counter(PEOPLE)


def test_a_sent_issue_is_never_sent_again(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    send_issue(issue, PEOPLE[:2], settings, NOW)
    with pytest.raises(IssueSentError, match=r"2026-12 was already sent .*in the next issue"):
        send_issue(issue, PEOPLE[:3], settings, NOW)
    with pytest.raises(IssueSentError):
        ensure_not_sent(issue)
    assert len(recorder.messages) == 2


def test_test_copy_goes_to_reviewers_and_marks_nothing(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    reviewers = ["granskare@example.org", "Redaktör Exempel <redaktor@example.org>"]
    report = send_issue(issue, reviewers, settings, NOW, test_copy=True)

    assert report.test_copy and report.sent == 2
    assert [m["Subject"] for m in recorder.parsed()] == ["[Test] " + SUBJECT] * 2
    assert recorder.delivered_to() == Counter(["granskare@example.org", "redaktor@example.org"])
    assert manifest_of(issue)["status"] == "draft"
    assert not (issue / PROGRESS_FILE).exists()
    ensure_not_sent(issue)  # still a draft: no error


def test_a_changed_draft_is_not_sent(tmp_path, recorder, settings):
    issue = make_issue(tmp_path)
    (issue / "index.html").write_text("<p>ändrad efter granskning</p>", encoding="utf-8")
    with pytest.raises(DeliveryError, match=r"index\.html changed after the draft was rendered"):
        send_issue(issue, PEOPLE[:1], settings, NOW)
    assert recorder.messages == []


# --- the web archive -----------------------------------------------------------------------


def test_web_copies_archive_page_and_feed(tmp_path):
    storage = LocalStorage(tmp_path / "storage")
    settings = Settings.load(public_url="https://media.kraftsamling.example/")
    november = make_issue(tmp_path / "issues", "2026-11")
    december = make_issue(tmp_path / "issues", "2026-12")
    sent_nov = datetime(2026, 11, 4, 10, 0, tzinfo=STHLM)

    url_nov = publish_web_copy(storage, november, "2026-11", settings, sent_nov)
    url_dec = publish_web_copy(storage, december, "2026-12", settings, NOW)
    assert url_dec == "https://media.kraftsamling.example/newsletters/2026-12/index.html"
    assert (
        storage.path_of("newsletters/2026-12/index.html").read_bytes()
        == (december / "index.html").read_bytes()
    )
    meta = storage.metadata("newsletters/2026-12/index.html")
    assert (meta["content_type"], meta["cache_control"], meta["public"]) == (
        "text/html; charset=utf-8",
        "public, max-age=300",
        True,
    )
    assert storage.metadata("newsletters/archive.json")["public"] is False
    assert storage.metadata("newsletters/feed.xml")["content_type"].startswith(
        "application/atom+xml"
    )

    page = lxml.html.fromstring(storage.get_bytes("newsletters/index.html")[0])
    assert page.get("lang") == "sv"
    links = [(a.text_content(), a.get("href")) for a in page.xpath("//main//a")]
    assert links == [
        ("Kraftsamling update – december 2026", url_dec),
        ("Kraftsamling update – november 2026", url_nov),
    ]
    assert "skickat 4 november 2026" in page.text_content()

    feed = feedparser.parse(storage.get_bytes("newsletters/feed.xml")[0])
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert [e.link for e in feed.entries] == [url_dec, url_nov]
    assert [e.title for e in feed.entries] == [
        "Kraftsamling update – december 2026",
        "Kraftsamling update – november 2026",
    ]
    assert feed.entries[1].id == "tag:kraftsamling.example,2026:newsletters/2026-11"
    assert feed.entries[1].updated == "2026-11-04T10:00:00+01:00"
    assert feed.feed.links[0].href == "https://media.kraftsamling.example/newsletters/feed.xml"

    # Publishing again (e.g. after the send recorded sent_at) keeps ids and first dates.
    before = storage.get_bytes("newsletters/feed.xml")[0]
    publish_web_copy(storage, november, "2026-11", settings, datetime(2027, 1, 1, tzinfo=STHLM))
    assert storage.get_bytes("newsletters/feed.xml")[0] == before
