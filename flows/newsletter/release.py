"""Review, approval and release of a newsletter issue that was already rendered.

    draft on disk -> test copy to reviewers (once per draft) -> artifact -> wait for a
    person's Decision -> approved: web copy, then send | rejected / timed out: nothing sent

`review.json` in the issue folder records where the review stands, keyed by the draft's
content hash. It makes the gate idempotent: a run that was suspended (under a deployment)
starts again from the top, finds the draft awaiting review, reuses it instead of rendering
a new one, and does not send the test copy twice. Addresses are never written to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.core.errors import DeliveryError, SettingsError
from flows.core.settings import Settings
from flows.core.storage import open_storage
from flows.newsletter.approval import Decision, await_decision
from flows.newsletter.delivery import (
    STOCKHOLM,
    DeliveryReport,
    ensure_issue_open,
    publish_web_copy,
    read_issue,
    send_issue,
    web_copy_url,
    write_sent_state,
)

REVIEW_FILE = "review.json"
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, in Stockholm: when a test copy, a decision or a send really happened."""
    return datetime.now(STOCKHOLM)


@dataclass(frozen=True)
class ReleaseResult:
    """How the review ended, and what was sent."""

    month: str
    decision: str  # "approved", "rejected" or "timed-out"
    comment: str = ""
    delivery: DeliveryReport | None = None
    web_url: str | None = None

    def summary(self) -> str:
        if self.decision == "approved" and self.delivery is not None:
            return f"Approved. {self.delivery.summary()} Web copy: {self.web_url}"
        said = f" Reviewer's comment: {self.comment}" if self.comment else ""
        if self.decision == "rejected":
            return f"Rejected: nothing was sent; the draft of {self.month} stays.{said}"
        return f"No decision in time: nothing was sent; the draft of {self.month} stays.{said}"


def read_review(issue_dir: Path) -> dict[str, Any] | None:
    path = Path(issue_dir) / REVIEW_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_review(issue_dir: Path, review: dict[str, Any]) -> None:
    path = Path(issue_dir) / REVIEW_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(review, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def awaiting_review(issue_dir: Path) -> bool:
    """True when this draft was handed to reviewers and is unchanged since (a resumed run)."""
    review = read_review(issue_dir)
    if not review or review.get("status") != "awaiting":
        return False
    try:
        return read_issue(Path(issue_dir)).content_sha256 == review.get("draft_sha256")
    except DeliveryError:
        return False


def resolve_smtp_password(settings: Settings) -> Settings:
    """Settings with the SMTP password from the named Prefect Secret block, when one is set."""
    if settings.smtp_password is not None or not settings.smtp_password_block:
        return settings
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    try:
        secret = Secret.load(settings.smtp_password_block)
    except ValueError:
        raise SettingsError(
            f"No Prefect Secret block named {settings.smtp_password_block!r}: create it in the "
            "Prefect UI (Blocks > Secret) or unset KRAFTSAMLING_SMTP_PASSWORD_BLOCK."
        ) from None
    return settings.model_copy(update={"smtp_password": SecretStr(str(secret.get()))})


def check_release_request(recipients: list[str] | None, approve: bool | None) -> None:
    """Refuse a send without recipients before anything is rendered or sent."""
    if not recipients:
        raise SettingsError(
            "Sending needs recipients: give the list address (or addresses) with --to "
            "or the deployment's `recipients` parameter."
        )


@task(name="send-test-copy", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60])
def send_test_copy(
    issue_dir: Path, reviewers: list[str], settings: Settings, now: datetime
) -> DeliveryReport:
    return send_issue(issue_dir, reviewers, settings, now, test_copy=True)


@task(name="publish-web-copy", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[5, 30, 120])
def publish_web_copy_task(issue_dir: Path, month: str, settings: Settings, now: datetime) -> str:
    return publish_web_copy(open_storage(settings), issue_dir, month, settings, now)


@task(name="send-issue", cache_policy=NO_CACHE)
def send_issue_task(
    issue_dir: Path, recipients: list[str], settings: Settings, now: datetime
) -> DeliveryReport:
    # No task retries: send_issue resumes from its own per-batch progress on the next run.
    return send_issue(issue_dir, recipients, settings, now)


def review_markdown(month: str, issue_dir: Path, settings: Settings, test_copy: str) -> str:
    return "\n".join(
        [
            f"# Newsletter {month} awaits approval",
            "",
            f"- Draft: `{issue_dir / 'index.html'}` (plain text: `newsletter.txt`)",
            f"- Web copy after approval: {web_copy_url(settings, month)}",
            f"- {test_copy}",
            "",
            f"Approve: `python -m flows approve {month}`; reject: "
            f'`python -m flows approve {month} --reject --comment "..."`; '
            "or use the Resume form of this run in the Prefect UI.",
        ]
    )


def release_issue(
    settings: Settings,
    month: str,
    *,
    recipients: list[str],
    reviewers: list[str] | None = None,
    approve: bool | None = None,
    timeout_seconds: int = 3 * 24 * 3600,
    clock: Clock = system_clock,
) -> ReleaseResult:
    """Run the review gate for the rendered issue of `month` and send it when approved.

    `approve` decides up front (demo, tests); None waits for a person. Moments are recorded
    from `clock` when they happen, never from the run's (possibly pinned) start.
    """
    check_release_request(recipients, approve)
    settings = resolve_smtp_password(settings)
    issue_dir = Path(settings.newsletters_dir) / month
    storage = open_storage(settings)
    ensure_issue_open(storage, issue_dir, month)
    draft_sha = read_issue(issue_dir).content_sha256
    review = read_review(issue_dir) or {}
    if review.get("draft_sha256") != draft_sha:
        review = {"draft_sha256": draft_sha, "status": "awaiting"}
    test_copy = "No reviewers were given: no test copy was sent."
    if reviewers and not review.get("test_copy_sent_at"):
        sent_at = clock()
        report = send_test_copy(issue_dir, reviewers, settings, sent_at)
        review["test_copy_sent_at"] = sent_at.isoformat()
        review["test_copy_count"] = report.sent
    if review.get("test_copy_sent_at"):
        test_copy = f"Test copy sent to {review.get('test_copy_count', 0)} reviewer(s)."
    review["status"] = "awaiting"
    write_review(issue_dir, review)
    create_markdown_artifact(
        markdown=review_markdown(month, issue_dir, settings, test_copy),
        key=f"newsletter-{month}-review",
        description=f"Newsletter {month}: awaiting approval",
    )

    if approve is not None:
        decision: Decision | None = Decision(approve=approve, comment="decided when the run began")
    else:
        decision = await_decision(
            month, timeout_seconds, poll_seconds=settings.approval_poll_seconds
        )

    if decision is None:
        review.update(status="timed-out", decided_at=clock().isoformat())
        write_review(issue_dir, review)
        return ReleaseResult(month, "timed-out")
    review.update(
        status="approved" if decision.approve else "rejected",
        comment=decision.comment,
    )
    write_review(issue_dir, review)
    if not decision.approve:
        return ReleaseResult(month, "rejected", decision.comment)
    web_url = publish_web_copy_task(issue_dir, month, settings, clock())
    delivery = send_issue_task(issue_dir, recipients, settings, clock())
    sent = read_issue(issue_dir)
    write_sent_state(
        storage, month, (sent.manifest.get("delivery") or {}).get("sent_at"), sent.content_sha256
    )
    review["status"] = "sent"
    write_review(issue_dir, review)
    return ReleaseResult(month, "approved", decision.comment, delivery, web_url)
