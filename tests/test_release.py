"""Review, approval and sending, with a real SMTP server on loopback.

First the decision logic alone: `release_issue` with a waiter that answers at once (no
Prefect server), for approval, rejection and a time-out. Then the real newsletter flow under
the session's Prefect test server, where a reviewer's decision arrives the way it does in
production: `python -m flows approve` finds the paused run and resumes it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import DEMO_EVENTS, DEMO_POSTS
from loopback import free_port, smtp_server

from flows.cli import main
from flows.core.errors import DeliveryError, IssueSentError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import LocalStorage
from flows.demo import DEMO_MONTH, DEMO_NOW
from flows.newsletter.approval import Decision, NoWaitingRunError, find_waiting_run
from flows.newsletter.build import build_issue
from flows.newsletter.edition import SWEDISH
from flows.newsletter.flow import newsletter
from flows.newsletter.issue import read_review, web_copy_url
from flows.newsletter.release import release_issue

LIST_ADDRESS = "nyhetsbrev-lista@lists.kraftsamling.example"
REVIEWER = "granskare@kraftsamling.example"


class Recorder:
    def __init__(self) -> None:
        self.envelopes: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def count(self) -> Counter[str]:
        return Counter(rcpt for rcpts, _ in self.envelopes for rcpt in rcpts)

    def subjects(self) -> list[str]:
        import email

        return [str(email.message_from_bytes(raw)["Subject"]) for _, raw in self.envelopes]


@pytest.fixture
def smtp(monkeypatch):
    recorder = Recorder()
    with smtp_server(recorder) as port:
        monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
        monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
        monkeypatch.setenv("KRAFTSAMLING_APPROVAL_POLL_SECONDS", "1")
        yield recorder


def run_flow(tmp_path: Path, **kwargs):
    options = {
        "month": DEMO_MONTH,
        "now": DEMO_NOW,
        "out": str(tmp_path / "newsletters"),
        "storage": str(tmp_path / "storage"),
        "posts": DEMO_POSTS,
        "events": DEMO_EVENTS,
        "send": True,
        "to": [LIST_ADDRESS],
        "reviewers": [REVIEWER],
    }
    return newsletter(**{**options, **kwargs})


def in_background(tmp_path: Path, **kwargs):
    box: dict = {}

    def target():
        try:
            box["result"] = run_flow(tmp_path, **kwargs)
        except BaseException as exc:  # reported by the test, not lost in the thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for_pause(month: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            find_waiting_run(month)
            return
        except NoWaitingRunError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# --- the decision logic, without a Prefect server ---------------------------------------------

DECIDED_AT = datetime(2026, 12, 2, 14, 30, tzinfo=STOCKHOLM)


class Waiter:
    """A reviewer who answers at once: records how release_issue asked, returns `answer`."""

    def __init__(self, answer: Decision | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, month: str, timeout_seconds: int, poll_seconds: int) -> Decision | None:
        self.calls.append((month, timeout_seconds, poll_seconds))
        return self.answer


def built_draft(tmp_path: Path) -> Settings:
    """Settings for a folder that holds the demo month's draft (the SMTP server from env)."""
    settings = Settings.load(
        posts=DEMO_POSTS,
        events=DEMO_EVENTS,
        newsletters_dir=str(tmp_path / "newsletters"),
        storage=str(tmp_path / "storage"),
    )
    assert build_issue(settings, DEMO_MONTH, DEMO_NOW).written
    return settings


def release(settings: Settings, waiter: Waiter, shown: list[str] | None = None):
    return release_issue(
        settings,
        DEMO_MONTH,
        recipients=[LIST_ADDRESS],
        reviewers=[REVIEWER],
        timeout_seconds=120,
        clock=lambda: DECIDED_AT,
        wait_for_decision=waiter,
        show_review=lambda month, markdown: (shown if shown is not None else []).append(markdown),
    )


def test_approval_publishes_the_web_copy_then_sends_once(tmp_path, smtp):
    settings = built_draft(tmp_path)
    waiter, shown = Waiter(Decision(approve=True, comment="Ser bra ut")), []

    result = release(settings, waiter, shown)

    assert (result.decision, result.comment) == ("approved", "Ser bra ut")
    assert waiter.calls == [(DEMO_MONTH, 120, 1)]  # the poll interval comes from settings
    assert smtp.count() == Counter({REVIEWER: 1, LIST_ADDRESS: 1})
    assert smtp.subjects()[0].startswith("[Test] ")
    # Reviewers were shown the URL the web copy went to, the one the email links to.
    assert (
        result.web_url == web_copy_url(settings, DEMO_MONTH, SWEDISH) and result.web_url in shown[0]
    )
    folder = tmp_path / "newsletters" / DEMO_MONTH
    web_copy = tmp_path / "storage" / "newsletters" / DEMO_MONTH / "index.html"
    assert web_copy.read_bytes() == (folder / "index.html").read_bytes()
    assert result.web_url.encode() in web_copy.read_bytes()
    review = read_review(folder)
    assert (review["status"], review["comment"]) == ("sent", "Ser bra ut")
    assert review["test_copy_sent_at"] == DECIDED_AT.isoformat()
    manifest = json.loads((folder / "manifest.json").read_text())
    state = json.loads((web_copy.parent / "sent.json").read_text())
    assert manifest["status"] == state["status"] == "sent"
    assert manifest["delivery"]["sent_at"] == state["sent_at"] == DECIDED_AT.isoformat()
    # Sent is final: a second release is refused before anyone is asked or mailed.
    with pytest.raises(IssueSentError, match="immutable"):
        release(settings, waiter)
    assert len(waiter.calls) == 1 and sum(smtp.count().values()) == 2


def test_rejection_sends_and_publishes_nothing(tmp_path, smtp):
    settings = built_draft(tmp_path)

    result = release(settings, Waiter(Decision(approve=False, comment="Fel datum i ingressen")))

    assert (result.decision, result.comment) == ("rejected", "Fel datum i ingressen")
    assert "Fel datum i ingressen" in result.summary()
    assert smtp.count() == Counter({REVIEWER: 1})
    folder = tmp_path / "newsletters" / DEMO_MONTH
    assert read_review(folder)["status"] == "rejected"
    assert json.loads((folder / "manifest.json").read_text())["status"] == "draft"
    assert not (tmp_path / "storage" / "newsletters" / DEMO_MONTH).exists()


def test_no_decision_in_time_sends_nothing_and_a_later_run_asks_again(tmp_path, smtp):
    settings = built_draft(tmp_path)

    result = release(settings, Waiter(None))

    assert result.decision == "timed-out"
    folder = tmp_path / "newsletters" / DEMO_MONTH
    review = read_review(folder)
    assert (review["status"], review["decided_at"]) == ("timed-out", DECIDED_AT.isoformat())
    assert smtp.count() == Counter({REVIEWER: 1})
    assert not (tmp_path / "storage" / "newsletters" / DEMO_MONTH).exists()
    # The same draft goes to review again without a second test copy, and can be approved.
    again = release(settings, Waiter(Decision(approve=True)))
    assert again.decision == "approved"
    assert smtp.count() == Counter({REVIEWER: 1, LIST_ADDRESS: 1})


class Rebuilder(Waiter):
    """A reviewer who approves while someone rebuilds the draft in the meantime."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(Decision(approve=True))
        self.settings = settings

    def __call__(self, month: str, timeout_seconds: int, poll_seconds: int) -> Decision | None:
        intro = Path(self.settings.newsletters_dir) / month / "intro.md"
        intro.write_text("En annan ingress som ingen granskare har sett.", "utf-8")
        assert build_issue(self.settings, month, DEMO_NOW).written
        return super().__call__(month, timeout_seconds, poll_seconds)


def test_a_draft_rebuilt_while_waiting_is_not_sent(tmp_path, smtp):
    settings = built_draft(tmp_path)
    with pytest.raises(DeliveryError, match="changed after it went to review"):
        release(settings, Rebuilder(settings))
    assert smtp.count() == Counter({REVIEWER: 1})  # the test copy only
    assert not (tmp_path / "storage" / "newsletters" / DEMO_MONTH).exists()


def test_a_send_interrupted_after_approval_resumes_without_asking_again(tmp_path, smtp):
    settings = built_draft(tmp_path)
    folder = tmp_path / "newsletters" / DEMO_MONTH
    with pytest.raises(DeliveryError, match="went"):
        release_issue(
            settings,
            DEMO_MONTH,
            recipients=[LIST_ADDRESS],
            reviewers=[REVIEWER],
            wait_for_decision=Waiter(Decision(approve=True, comment="Ja")),
            send_issue=_smtp_went_away,
        )
    assert read_review(folder)["status"] == "approved"
    asked = Waiter(None)  # nobody answers: the approval already given must carry the send
    result = release(settings, asked)
    assert result.decision == "approved" and asked.calls == []
    assert smtp.count() == Counter({REVIEWER: 1, LIST_ADDRESS: 1})


def _smtp_went_away(*args, **kwargs):
    raise DeliveryError("the SMTP server went away mid-send")


def test_after_a_rejection_the_next_review_sends_a_new_test_copy(tmp_path, smtp):
    settings = built_draft(tmp_path)
    release(settings, Waiter(Decision(approve=False, comment="Fel datum")))
    again = release(settings, Waiter(Decision(approve=True)))
    assert again.decision == "approved"
    assert smtp.count() == Counter({REVIEWER: 2, LIST_ADDRESS: 1})


def test_issues_sent_earlier_get_their_storage_state_on_the_next_run(tmp_path):
    from flows.newsletter.issue import record_earlier_sent_states

    for month, status in (("2026-10", "sent"), ("2026-11", "draft")):
        folder = tmp_path / "newsletters" / month
        folder.mkdir(parents=True)
        manifest = {"month": month, "status": status, "delivery": {"sent_at": f"{month}-01"}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    storage = LocalStorage(tmp_path / "storage")
    record_earlier_sent_states(storage, tmp_path / "newsletters", DEMO_MONTH, SWEDISH)
    assert json.loads(storage.get_bytes("newsletters/2026-10/sent.json")[0])["status"] == "sent"
    assert storage.get_bytes("newsletters/2026-11/sent.json") is None


def test_future_now_is_refused_for_publishing_commands(capsys):
    for command in ("podcast", "feed"):
        with pytest.raises(SystemExit) as info:
            main([command, "--now", "2999-01-01T08:00:00+01:00"])
        assert info.value.code == 2
        assert "is in the future" in capsys.readouterr().err


# --- the whole flow under Prefect --------------------------------------------------------------


def test_approved_up_front_sends_once_and_publishes_the_web_copy(prefect_harness, tmp_path, smtp):
    result = run_flow(tmp_path, approve=True)

    assert result.release.decision == "approved"
    assert smtp.count() == Counter({REVIEWER: 1, LIST_ADDRESS: 1})
    assert smtp.subjects()[0].startswith("[Test] ")
    issue_dir = tmp_path / "newsletters" / DEMO_MONTH
    manifest = json.loads((issue_dir / "manifest.json").read_text())
    assert manifest["status"] == "sent"
    assert read_review(issue_dir)["status"] == "sent"
    web_copy = tmp_path / "storage" / "newsletters" / DEMO_MONTH / "index.html"
    assert web_copy.read_bytes() == (issue_dir / "index.html").read_bytes()
    # No address is written to the issue folder.
    for path in issue_dir.iterdir():
        assert LIST_ADDRESS not in path.read_text(errors="replace")
    # Approving a sent issue again is refused before anything is sent.
    with pytest.raises(IssueSentError):
        release_issue(
            Settings.load(
                newsletters_dir=str(tmp_path / "newsletters"), storage=str(tmp_path / "storage")
            ),
            DEMO_MONTH,
            recipients=[LIST_ADDRESS],
            approve=True,
        )
    assert sum(smtp.count().values()) == 2
    # The sent state is in storage beside the web copy, with when it really went out (the
    # run's start was pinned to DEMO_NOW, in the past).
    state = json.loads((web_copy.parent / "sent.json").read_text())
    assert state["status"] == "sent" and state["sent_at"] == manifest["delivery"]["sent_at"]
    sent_at = datetime.fromisoformat(state["sent_at"])
    assert sent_at != DEMO_NOW and abs(datetime.now(STOCKHOLM) - sent_at) < timedelta(minutes=10)


def test_a_sent_issue_is_refused_on_another_machine_and_with_force(prefect_harness, tmp_path, smtp):
    run_flow(tmp_path, approve=True)
    web_copy = tmp_path / "storage" / "newsletters" / DEMO_MONTH / "index.html"
    published = web_copy.read_bytes()
    # A second machine: the same storage, an empty newsletters folder.
    for force in (False, True):
        with pytest.raises(IssueSentError, match="immutable") as info:
            run_flow(tmp_path, out=str(tmp_path / "elsewhere"), approve=True, force=force)
        assert "sent.json" in str(info.value)
    # On the first machine, an edited intro and --force --send change nothing either.
    (tmp_path / "newsletters" / DEMO_MONTH / "intro.md").write_text("Rättelse!", "utf-8")
    with pytest.raises(IssueSentError, match="immutable"):
        run_flow(tmp_path, approve=True, force=True)
    assert web_copy.read_bytes() == published
    assert not (tmp_path / "elsewhere" / DEMO_MONTH).exists()
    assert sum(smtp.count().values()) == 2


def test_an_issue_sent_before_the_storage_state_is_recognised_and_recorded(tmp_path):
    from flows.newsletter.issue import ensure_issue_open

    folder = tmp_path / "newsletters" / DEMO_MONTH
    folder.mkdir(parents=True)
    manifest = {"month": DEMO_MONTH, "status": "sent", "delivery": {"sent_at": "2026-12-02"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    storage = LocalStorage(tmp_path / "storage")
    with pytest.raises(IssueSentError, match="2026-12-02"):
        ensure_issue_open(storage, folder, DEMO_MONTH, SWEDISH)
    state = json.loads(storage.get_bytes(f"newsletters/{DEMO_MONTH}/sent.json")[0])
    assert (state["status"], state["sent_at"]) == ("sent", "2026-12-02")
    with pytest.raises(IssueSentError, match=r"sent\.json"):  # now from storage, anywhere
        ensure_issue_open(storage, tmp_path / "other", DEMO_MONTH, SWEDISH)


def test_send_takes_the_draft_that_was_built_and_reviewed(prefect_harness, tmp_path, smtp):
    # Step 2 of the staff guide built the draft; new posts since must not change what is sent.
    built = run_flow(tmp_path, send=False, to=None, reviewers=None)
    assert built.written
    html = (built.issue_dir / "index.html").read_bytes()
    result = run_flow(tmp_path, approve=True, posts=[str(tmp_path / "no-such-feed.xml")])
    assert result.release.decision == "approved"
    assert "goes to review as built" in result.message
    assert (built.issue_dir / "index.html").read_bytes() == html
    assert smtp.count() == Counter({REVIEWER: 1, LIST_ADDRESS: 1})


def test_send_with_nothing_to_send_fails_and_says_so(prefect_harness, tmp_path, smtp, capsys):
    empty = tmp_path / "empty.xml"
    empty.write_text('<rss version="2.0"><channel><title>t</title></channel></rss>')
    args = ["newsletter", "--month", "2027-01", "--now", "2026-12-20T10:00:00+01:00"]
    args += ["--posts", str(empty), "--events", str(empty).replace(".xml", ".yaml")]
    (tmp_path / "empty.yaml").write_text("[]\n")
    args += ["--out", str(tmp_path / "n"), "--storage", str(tmp_path / "s")]
    assert main([*args, "--send", "--to", LIST_ADDRESS, "--approve"]) == 1
    err = capsys.readouterr().err
    assert "nothing was sent" in err and "--force" in err
    assert sum(smtp.count().values()) == 0


def test_reviewer_approves_with_the_command_while_the_run_waits(prefect_harness, tmp_path, smtp):
    thread, box = in_background(tmp_path, approval_timeout_seconds=120)
    wait_for_pause(DEMO_MONTH)
    assert smtp.count() == Counter({REVIEWER: 1})  # only the test copy before the decision

    assert main(["approve", DEMO_MONTH, "--comment", "Ser bra ut"]) == 0
    thread.join(90)

    assert "error" not in box, box.get("error")
    assert box["result"].release.decision == "approved"
    assert smtp.count() == Counter({REVIEWER: 1, LIST_ADDRESS: 1})
    assert read_review(tmp_path / "newsletters" / DEMO_MONTH)["comment"] == "Ser bra ut"


def test_rejection_sends_nothing_and_keeps_the_comment(prefect_harness, tmp_path, smtp):
    thread, box = in_background(tmp_path, approval_timeout_seconds=120)
    wait_for_pause(DEMO_MONTH)
    assert main(["approve", DEMO_MONTH, "--reject", "--comment", "Fel datum i ingressen"]) == 0
    thread.join(90)

    release = box["result"].release
    assert (release.decision, release.comment) == ("rejected", "Fel datum i ingressen")
    assert "Fel datum i ingressen" in box["result"].summary()
    assert LIST_ADDRESS not in smtp.count()
    issue_dir = tmp_path / "newsletters" / DEMO_MONTH
    assert json.loads((issue_dir / "manifest.json").read_text())["status"] == "draft"
    assert (issue_dir / "index.html").exists()


def test_no_decision_in_time_sends_nothing(prefect_harness, tmp_path, smtp):
    result = run_flow(tmp_path, approval_timeout_seconds=2)

    assert result.release.decision == "timed-out"
    assert smtp.count() == Counter({REVIEWER: 1})
    assert read_review(tmp_path / "newsletters" / DEMO_MONTH)["status"] == "timed-out"


def test_a_send_with_no_decision_in_time_exits_1(prefect_harness, tmp_path, smtp, capsys):
    args = ["newsletter", "--month", DEMO_MONTH, "--now", DEMO_NOW.isoformat()]
    args += ["--posts", *DEMO_POSTS, "--events", *DEMO_EVENTS]
    args += ["--out", str(tmp_path / "n"), "--storage", str(tmp_path / "s")]
    args += ["--send", "--to", LIST_ADDRESS, "--reviewers", REVIEWER, "--timeout", "2"]
    assert main(args) == 1
    assert "No decision in time: nothing was sent" in capsys.readouterr().err
    assert smtp.count() == Counter({REVIEWER: 1})


def test_approve_without_a_waiting_run_explains(prefect_harness, capsys):
    assert main(["approve", "2031-01"]) == 1
    assert "No newsletter run is waiting for approval of 2031-01" in capsys.readouterr().err


def test_send_without_recipients_is_refused_before_rendering(prefect_harness, tmp_path):
    assert main(["newsletter", "--month", "2026-12", "--out", str(tmp_path), "--send"]) == 1
    assert not (tmp_path / "2026-12").exists()


def test_smtp_password_can_come_from_a_prefect_secret_block(prefect_harness):
    from prefect.blocks.system import Secret

    from flows.core.errors import SettingsError
    from flows.newsletter.release import resolve_smtp_password

    Secret(value="FAKE-BLOCK-PASSWORD-7c1d").save("kraftsamling-smtp-test", overwrite=True)
    settings = resolve_smtp_password(Settings.load(smtp_password_block="kraftsamling-smtp-test"))
    assert settings.smtp_password.get_secret_value() == "FAKE-BLOCK-PASSWORD-7c1d"
    assert "FAKE-BLOCK" not in repr(settings)
    with pytest.raises(SettingsError, match="no-such-block"):
        resolve_smtp_password(Settings.load(smtp_password_block="no-such-block"))


def test_the_waiting_run_says_who_got_the_test_copy_and_how_to_decide(tmp_path, smtp, capsys):
    settings = built_draft(tmp_path)

    release(settings, Waiter(Decision(approve=False, comment="Inte än")))

    out = capsys.readouterr().out
    assert "Test copy sent to 1 reviewer(s)." in out
    assert f"python -m flows approve {DEMO_MONTH}\n" in out
    assert f'python -m flows approve {DEMO_MONTH} --reject --comment "..."' in out
    # The deadline: the clock when the run starts waiting plus the timeout, in Stockholm.
    assert "until 2026-12-02 14:32 Stockholm time (CET)" in out
    assert REVIEWER not in out and LIST_ADDRESS not in out  # counts, never addresses


def test_an_unreachable_smtp_server_fails_the_run_fast_naming_the_settings(
    prefect_harness, tmp_path, monkeypatch
):
    built_draft(tmp_path)  # the run sends this draft: the time measured is the sending
    port = free_port()  # nothing listens here
    monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=rf"127\.0\.0\.1:{port}") as info:
        run_flow(tmp_path)
    took = time.monotonic() - started
    # Before: the test-copy task retried a refused connection after 10 s and 60 s.
    assert took < 15, f"an unreachable server took {took:.1f} s to report"
    for name in ("HOST", "PORT", "SECURITY", "USER", "PASSWORD"):
        assert f"KRAFTSAMLING_SMTP_{name}" in str(info.value)


# --- the Resume form and the review page (issue 16, points 6 and 7) ----------------------------


def test_an_untouched_resume_form_is_refused_not_read_as_a_rejection():
    import jsonschema
    from pydantic import ValidationError

    from flows.newsletter.approval import CLI, Decision

    schema = Decision.model_json_schema()
    # Before: the form was one `approve` toggle that started off, so Submit meant "reject".
    assert schema["required"] == ["decision"]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject"]
    untouched = {"comment": "", "decided_by": ""}
    with pytest.raises(jsonschema.ValidationError):  # what the server checks on resume
        jsonschema.validate(untouched, schema)
    with pytest.raises(ValidationError):  # what the run checks when it reads the input
        Decision.model_validate(untouched)
    # `python -m flows approve` sends input the form's schema accepts, and says who it is.
    sent = Decision(decision="reject", comment="Nej", decided_by=CLI).model_dump()
    jsonschema.validate(sent, schema)
    assert Decision(approve=True).decision == "approve"  # the older field still reads


def test_the_resume_form_names_the_issue_the_counts_and_the_choices(tmp_path, smtp, monkeypatch):
    from flows.newsletter import release as release_module

    asked = []

    def gate(month, timeout_seconds, poll_seconds, *, description, edition):
        assert edition == SWEDISH  # the settings select no other edition
        asked.append(description)
        return None

    monkeypatch.setattr(release_module, "await_decision", gate)
    settings = built_draft(tmp_path)
    release_issue(
        settings,
        DEMO_MONTH,
        recipients=[LIST_ADDRESS, "andra-listan@lists.kraftsamling.example"],
        reviewers=[REVIEWER],
        timeout_seconds=120,
        clock=lambda: DECIDED_AT,
        show_review=lambda month, markdown: None,
    )
    [description] = asked
    assert f"Newsletter {DEMO_MONTH}" in description
    assert "2 recipient address(es)" in description and "1 reviewer(s)" in description
    assert "`approve`" in description and "`reject` to send nothing" in description
    assert "@" not in description  # counts, never addresses


def test_the_decision_is_logged_and_recorded_saying_what_and_by_whom(tmp_path, smtp, caplog):
    from flows.newsletter.approval import CLI

    settings = built_draft(tmp_path)
    shown: list[str] = []
    with caplog.at_level("WARNING", logger="flows.newsletter.release"):
        release(settings, Waiter(Decision(decision="reject", comment="Fel datum")), shown)
        release(settings, Waiter(Decision(decision="approve", decided_by=CLI)), shown)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # Before: nothing was logged, and a rejection looked like an approval.
    assert f"Issue {DEMO_MONTH} rejected by the Resume form: Fel datum" in warnings
    assert f"Issue {DEMO_MONTH} approved by python -m flows approve (no comment)" in warnings
    assert any("waits for a decision (approve or reject) until" in w for w in warnings)
    # The review artifact's later versions (same key in the flow) record the outcome.
    headings = [markdown.split("\n", 1)[0] for markdown in shown]
    assert headings == [
        f"# Newsletter {DEMO_MONTH} awaits approval",
        f"# Newsletter {DEMO_MONTH}: rejected, nothing sent",
        f"# Newsletter {DEMO_MONTH} awaits approval",
        f"# Newsletter {DEMO_MONTH}: approved",
        f"# Newsletter {DEMO_MONTH}: sent",
    ]
    assert f"Issue {DEMO_MONTH} rejected by the Resume form: Fel datum" in shown[1]
    assert "Approved." in shown[-1]
    for text in [*warnings, *shown]:
        assert REVIEWER not in text and LIST_ADDRESS not in text


def test_the_review_shows_the_issue_and_an_unlisted_preview_replaced_on_sending(tmp_path, smtp):
    from flows.newsletter.issue import NOINDEX, read_issue
    from flows.newsletter.release import draft_sections

    settings = built_draft(tmp_path)
    folder = tmp_path / "newsletters" / DEMO_MONTH
    draft = read_issue(folder)
    shown: list[str] = []
    release(settings, Waiter(Decision(decision="reject", comment="Ny ingress")), shown)

    review = shown[0]
    # Before: a local path and a link to a web copy that did not exist yet; no items.
    assert str(folder) not in review
    sections = draft_sections(draft.text)
    assert len(sections) == len(draft.manifest["counts"])
    for heading, items in sections:
        assert f"## {heading.capitalize()} ({len(items)})" in review
        for title, link in items:
            assert (f"- [{title}]({link})" if link else f"- {title}") in review
    assert "@" not in review  # titles and web links only, never an address
    [old_key] = read_review(folder)["previews"]
    assert old_key.startswith("newsletters/previews/") and DEMO_MONTH in old_key
    assert f"{settings.public_url.rstrip('/')}/{old_key}" in review
    storage = LocalStorage(tmp_path / "storage")
    preview = storage.get_bytes(old_key)[0].decode()
    assert NOINDEX in preview and preview.replace(NOINDEX, "") == draft.html
    assert storage.metadata(old_key)["public"] is True

    # The rejected draft is rebuilt and approved: every preview now shows the web copy.
    (folder / "intro.md").write_text("En ny ingress.", "utf-8")
    assert build_issue(settings, DEMO_MONTH, DEMO_NOW, force=True).written
    result = release(settings, Waiter(Decision(decision="approve")))
    assert result.decision == "approved"
    keys = read_review(folder)["previews"]
    assert len(keys) == 2 and old_key in keys
    web_copy = storage.get_bytes(f"newsletters/{DEMO_MONTH}/index.html")[0].decode()
    for key in keys:
        content = storage.get_bytes(key)[0].decode()
        assert NOINDEX in content and content.replace(NOINDEX, "") == web_copy
    # Not listed: neither the archive's state, page nor feed names a preview.
    for listed in ("archive.json", "index.html", "feed.xml"):
        assert "previews/" not in storage.get_bytes(f"newsletters/{listed}")[0].decode()


def test_the_server_refuses_an_untouched_form_and_shows_the_description(
    prefect_harness, tmp_path, smtp
):
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input
    from prefect.input.run_input import keyset_from_paused_state

    thread, box = in_background(tmp_path, approval_timeout_seconds=120)
    wait_for_pause(DEMO_MONTH)
    run_id = find_waiting_run(DEMO_MONTH)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    description = read_flow_run_input(keyset_from_paused_state(state)["description"], run_id)
    assert f"Newsletter {DEMO_MONTH}" in description and "1 recipient address(es)" in description
    # Before: Submit on the untouched form was a rejection; now the server refuses it.
    with pytest.raises(RuntimeError, match="Cannot resume"):
        resume_flow_run(run_id, run_input={"comment": ""})
    assert find_waiting_run(DEMO_MONTH) == run_id  # still waiting for a real choice
    assert main(["approve", DEMO_MONTH, "--reject", "--comment", "Inte än"]) == 0
    thread.join(90)
    assert box["result"].release.decision == "rejected"
