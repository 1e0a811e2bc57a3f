"""People told by email (issue 21), against a real SMTP server (aiosmtpd) on 127.0.0.1."""

# ruff: noqa: F811  (the fixtures imported from test_podcast are test arguments here)

from __future__ import annotations

import email
import email.policy
import logging

import pytest
from loopback import free_port, smtp_server
from prefect import flow
from test_podcast import audio, cover_bytes, put, show_dir  # noqa: F401  (fixtures)
from test_release import Recorder

from flows.core.errors import PublishIncompleteError, StorageError
from flows.core.settings import Settings
from flows.notify import notify_failure, producer_emails, send_notifications
from flows.podcast.report import EpisodeOutcome, PublishReport

LOUD = {"integrated_lufs": -16.1, "true_peak_dbtp": -1.5, "lra_lu": 4.0}
PRODUCER = "podd@kraftsamling.example"
GUEST = "gast@kraftsamling.example"


def run_report() -> PublishReport:
    return PublishReport(
        "storage",
        outcomes=[
            EpisodeOutcome(
                "ep1.mp3",
                "ep1",
                "published",
                title="Öppna data i kommunen",
                url="https://cdn.example/podcast/audio/ep1.mp3",
                moved_to="published/ep1.mp3",
                loudness=LOUD,
            ),
            EpisodeOutcome(
                "ep2.mp3",
                "ep2",
                "failed",
                reason="ep2.md: episode (rad 3): 'tre' är inget heltal.\n"
                "ep2.md: episode (line 3): 'tre' is not a whole number.",
                moved_to="failed/ep2.mp3",
            ),
        ],
        feed="https://cdn.example/podcast/feed.xml: 2 episodes, uploaded.",
    )


def smtp_settings(port: int, **extra: object) -> Settings:
    return Settings.load(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", **extra)


def bodies(recorder: Recorder) -> dict[str, list[email.message.EmailMessage]]:
    got: dict[str, list] = {}
    for rcpts, raw in recorder.envelopes:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for rcpt in rcpts:
            got.setdefault(rcpt, []).append(message)
    return got


def test_each_producer_gets_one_email_naming_what_was_published_and_refused() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = smtp_settings(port)
        messages = producer_emails(run_report(), [PRODUCER], {"ep2.mp3": GUEST}, settings)
        assert send_notifications(messages, settings) == 2
    got = bodies(recorder)
    (to_producer,) = got[PRODUCER]
    text = to_producer.get_content()
    assert "Publicerat: Öppna data i kommunen" in text and "Published: Öppna data" in text
    assert "-16.1 LUFS" in text and "https://cdn.example/podcast/audio/ep1.mp3" in text
    assert "Refuserat: ep2.mp3 (flyttat till failed/ep2.mp3)" in text
    assert "'tre' är inget heltal" in text and "'tre' is not a whole number" in text
    assert to_producer["Subject"] == (
        "Digitalsamtal: 1 publicerade, 1 refuserade / 1 published, 1 refused"
    )
    # The sidecar's contact hears of its own episode only.
    (to_guest,) = got[GUEST]
    assert "ep2.mp3" in to_guest.get_content() and "ep1" not in to_guest.get_content()


def test_a_run_that_did_nothing_sends_nothing() -> None:
    idle = PublishReport("storage", outcomes=[EpisodeOutcome("ep1.mp3", "ep1", "unchanged")])
    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = smtp_settings(port)
        assert producer_emails(idle, [PRODUCER], {}, settings) == []
        assert producer_emails(PublishReport("storage"), [PRODUCER], {}, settings) == []
    assert recorder.envelopes == []


def test_notifications_can_be_turned_off() -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = smtp_settings(port, notify=False)
        messages = producer_emails(run_report(), [PRODUCER], {}, settings)
        assert send_notifications(messages, settings) == 0
    assert recorder.envelopes == []


def test_a_notification_that_cannot_be_sent_is_logged_never_raised(caplog) -> None:
    settings = smtp_settings(free_port(), smtp_timeout=2)  # nobody listens there
    messages = producer_emails(run_report(), [PRODUCER], {}, settings)
    with caplog.at_level(logging.WARNING):
        assert send_notifications(messages, settings) == 0
    assert "Could not send 1 notification(s)" in caplog.text


@flow(name="scheduled-publish", on_failure=[notify_failure], on_crashed=[notify_failure])
def failing_flow() -> None:
    raise StorageError("Could not read s3://bucket/podcast/catalog.json: access denied.")


def test_a_failed_run_emails_the_failure_addresses(prefect_harness, monkeypatch) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
        monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
        monkeypatch.setenv("KRAFTSAMLING_NOTIFY_FAILURES", "drift@kraftsamling.example")
        with pytest.raises(StorageError):  # the run's own outcome is unchanged
            failing_flow()
    (message,) = bodies(recorder)["drift@kraftsamling.example"]
    text = message.get_content()
    assert "scheduled-publish" in message["Subject"] and "failed" in message["Subject"]
    assert "StorageError: Could not read s3://bucket/podcast/catalog.json" in text
    assert "password" not in text.lower()


def test_a_failure_email_that_cannot_be_sent_leaves_the_runs_error(
    prefect_harness, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(free_port()))
    monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
    monkeypatch.setenv("KRAFTSAMLING_SMTP_TIMEOUT", "2")
    monkeypatch.setenv("KRAFTSAMLING_NOTIFY_FAILURES", "drift@kraftsamling.example")
    with caplog.at_level(logging.WARNING), pytest.raises(StorageError, match="access denied"):
        failing_flow()
    assert "Could not send 1 notification(s)" in caplog.text


def test_a_publish_run_tells_each_producer_once_of_both_episodes(
    prefect_harness, show_dir, audio, tmp_path, monkeypatch
) -> None:
    from flows.podcast.flow import publish_episodes

    show = show_dir / "show.yaml"
    show.write_text(show.read_text("utf-8") + f"producers:\n  - {PRODUCER}\n", "utf-8")
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", f"---\ntitle: Ett bra avsnitt\ncontact: {GUEST}\n---\nOm AI.\n")
    put(show_dir, "trasig.mp3", b"ID3 this is no audio at all" * 10)
    put(show_dir, "trasig.md", "---\ntitle: Trasigt\n---\n")
    recorder = Recorder()
    with smtp_server(recorder) as port:
        monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
        monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
        with pytest.raises(PublishIncompleteError):  # one was refused: the run says so
            publish_episodes(
                episodes=str(show_dir), storage=str(tmp_path / "storage"), settle_seconds=0
            )
        got = bodies(recorder)
        (to_producer,) = got[PRODUCER]
        text = to_producer.get_content()
        assert "Publicerat: Ett bra avsnitt" in text and "Refuserat: trasig.mp3" in text
        (to_guest,) = got[GUEST]  # the sidecar's contact: its own episode only
        assert "Ett bra avsnitt" in to_guest.get_content()
        assert "trasig" not in to_guest.get_content()

        # A run with nothing to do sends nothing.
        recorder.envelopes.clear()
        publish_episodes(episodes=str(show_dir), storage=str(tmp_path / "storage"))
        assert recorder.envelopes == []


def test_every_scheduled_flow_tells_the_failure_addresses() -> None:
    from flows.newsletter.flow import newsletter
    from flows.podcast.flow import publish_episodes, regenerate_feed

    for scheduled in (newsletter, publish_episodes, regenerate_feed):
        assert notify_failure in scheduled.on_failure_hooks, scheduled.name
        assert notify_failure in scheduled.on_crashed_hooks, scheduled.name
