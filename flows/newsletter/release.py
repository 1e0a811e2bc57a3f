"""Review, approval and release of a newsletter issue that was already rendered.

    draft on disk -> link check and test copy to reviewers (once per draft) -> preview and
    review shown ->
    wait for a person's Decision -> decision logged and shown -> approved: web copy, then
    send | rejected / timed out: nothing sent

The review shows the issue's sections and items (titles and web links, from the draft's
plain text) and a link to a preview of the draft: a public object under an unlisted,
unguessable key (`issue.preview_key`), marked `noindex`; sending gives every preview of the
month the web copy's content. The decision (what, by whom) is logged at WARNING and shown
again under the review's key, so the run's artifact records the outcome.

`release_issue` decides; the steps that talk to the world are passed in. By default they are
plain functions (`delivery.send_test_copy`, `publish_to_storage`, `delivery.send_issue`, a
log line for the review) and the Prefect pause (`approval.await_decision`) for the decision;
`flow.py` passes the same steps as Prefect tasks with retries, and an artifact for the review.
Tests pass a waiter that answers at once, so approval, rejection and a time-out are tested
without a Prefect server.

The draft's links are checked before the test copy goes out (`linkcheck`, within
`settings.link_check_budget`): problems and redirects, each with its item, stand at the top
of the test copy, in the review and in the console (a warning). Links the sources could only
give as http (a host in `http_only_hosts`) are flagged there too. Nothing is blocked by it.

The edition (`flows.newsletter.edition`; by default the one the settings select) is passed
to every step: it names the subject, the web copy's and previews' keys and the sections.

`review.json` in the issue folder (read and written through `issue`) records where the review
stands, keyed by the draft's content hash. It makes the gate idempotent: a run that was
suspended (under a deployment) starts again from the top, finds the draft awaiting review,
reuses it instead of rendering a new one, and does not send the test copy twice. Addresses
are never written to it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

from flows.core.backends import open_storage
from flows.core.clock import Clock, system_clock
from flows.core.errors import DeliveryError, SettingsError, StorageError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import CACHE_SHORT, Storage, public_url
from flows.newsletter import delivery
from flows.newsletter.approval import Decision, await_decision, form_description
from flows.newsletter.archive import publish_web_copy as publish_archive
from flows.newsletter.delivery import DeliveryReport
from flows.newsletter.edition import Edition, edition_for
from flows.newsletter.issue import (
    Issue,
    check_edition,
    ensure_issue_open,
    issue_dir,
    preview_key,
    read_issue,
    read_review,
    web_copy_url,
    without_indexing,
    write_review,
    write_sent_state,
)
from flows.newsletter.linkcheck import LinkReport, check_links, draft_links

log = logging.getLogger(__name__)

# (month, timeout_seconds, poll_seconds) -> the decision, or None when nobody decided in time.
WaitForDecision = Callable[[str, int, int], Decision | None]
# (month, Markdown) -> None: shows reviewers where the draft is and how to decide.
ShowReview = Callable[[str, str], None]


class SendStep(Protocol):
    """(issue folder, addresses, settings, now, edition=) -> what was sent."""

    def __call__(
        self,
        folder: Path,
        addresses: list[str],
        settings: Settings,
        now: datetime,
        /,
        *,
        edition: Edition,
    ) -> DeliveryReport: ...


class TestCopyStep(Protocol):
    """(issue folder, reviewers, settings, now, edition=, note=) -> what was sent."""

    def __call__(
        self,
        folder: Path,
        addresses: list[str],
        settings: Settings,
        now: datetime,
        /,
        *,
        edition: Edition,
        note: str,
    ) -> DeliveryReport: ...


# (draft, settings, edition) -> what the check of its links found
CheckLinks = Callable[[Issue, Settings, Edition], LinkReport]


class PublishStep(Protocol):
    """(issue folder, month, settings, now, edition=) -> the web copy's URL."""

    def __call__(
        self,
        folder: Path,
        month: str,
        settings: Settings,
        now: datetime,
        /,
        *,
        edition: Edition,
    ) -> str: ...


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


def resolve_smtp_password(settings: Settings) -> Settings:
    """Settings with the SMTP password from the named Prefect Secret block, when one is set."""
    if settings.smtp_password is not None or not settings.smtp_password_block:
        return settings
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    try:
        # Called from synchronous code, `load` returns the block (its type also allows a
        # coroutine, for async callers).
        secret = cast("Secret[Any]", Secret.load(settings.smtp_password_block))
    except ValueError:
        raise SettingsError(
            f"No Prefect Secret block named {settings.smtp_password_block!r}: create it in the "
            "Prefect UI (Blocks > Secret) or unset KRAFTSAMLING_SMTP_PASSWORD_BLOCK."
        ) from None
    return settings.model_copy(update={"smtp_password": SecretStr(str(secret.get()))})


def check_release_request(recipients: list[str] | None) -> None:
    """Refuse a send without recipients before anything is rendered or sent."""
    if not recipients:
        raise SettingsError(
            "Sending needs recipients: give the list address (or addresses) with --to "
            "or the deployment's `recipients` parameter."
        )


_HEADING = re.compile(r"^(\S.*)\n=+$", re.MULTILINE)
_LINK = re.compile(r"^ +(https?://[^\s@]+)$", re.MULTILINE)


def draft_sections(text: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    r"""The sections of a draft's plain text, each with its items' titles and links (the
    last web link of an item; never an address). The title heading and footer are left out.

    >>> draft_sections("T\n=\n\nNYTT\n====\n\n* Ett\n  1 dec\n  https://x.se/1\n\n* Två\n--\nx")
    [('NYTT', [('Ett', 'https://x.se/1'), ('Två', None)])]
    """
    text = text.split("\n--\n", 1)[0]
    headings = list(_HEADING.finditer(text))
    sections = []
    for at, heading in enumerate(headings):
        end = headings[at + 1].start() if at + 1 < len(headings) else len(text)
        items = []
        for block in re.split(r"^\* ", text[heading.end() : end], flags=re.MULTILINE)[1:]:
            links = _LINK.findall(block)
            items.append((block.split("\n", 1)[0].strip(), links[-1] if links else None))
        if items:
            sections.append((heading[1].strip(), items))
    return sections


def review_markdown(
    month: str,
    issue: Issue,
    settings: Settings,
    test_copy: str,
    preview_url: str | None,
    edition: Edition,
    links: list[str] | None = None,
) -> str:
    """What reviewers are shown: the issue's sections and items, a preview, how to decide,
    and `links`: what the link check found (`review_note`)."""
    lines = [f"# Newsletter {month} awaits approval", ""]
    if preview_url:
        lines.append(f"- Preview of the draft (unlisted, not indexed): <{preview_url}>")
    lines += [
        f"- {test_copy}",
        f"- Once sent, the web copy will be at `{web_copy_url(settings, month, edition)}`",
        "",
        f"Approve: `python -m flows approve {month}`; reject: "
        f'`python -m flows approve {month} --reject --comment "..."`; '
        "or use the Resume form of this run in the Prefect UI (choose approve or reject).",
    ]
    # The plain text shows section names in capitals; the review shows them as written.
    names = {name.upper(): name for name in edition.sections.values()}
    for heading, items in draft_sections(issue.text):
        lines += ["", f"## {names.get(heading, heading.capitalize())} ({len(items)})", ""]
        lines += [f"- [{title}]({link})" if link else f"- {title}" for title, link in items]
    if links:
        lines += ["", "## Links", "", "```", *links, "```"]
    return "\n".join(lines)


def check_draft_links(draft: Issue, settings: Settings, edition: Edition) -> LinkReport:
    """Check the draft's links (`linkcheck`), unless the settings turn the check off. The
    web copy's address is left out: it answers only once the issue is sent."""
    if not settings.link_check:
        return LinkReport(off="turned off (KRAFTSAMLING_LINK_CHECK=false or --no-link-check)")
    items = [item for _, section in draft_sections(draft.text) for item in section]
    skip = [web_copy_url(settings, draft.month, edition)]
    links = draft_links(draft.html, items, skip)
    return check_links(links, settings.user_agent, settings.link_check_budget)


def review_note(report: LinkReport, manifest: dict[str, Any]) -> list[str]:
    """What reviewers read about the draft's links: the check's findings, then the links the
    sources give only as http (a host in http_only_hosts). Nothing of a check turned off."""
    lines = [] if report.off else report.lines()
    kept = [
        note
        for source in manifest.get("sources") or []
        for note in source.get("links") or []
        if note.startswith("link kept as http")
    ]
    if kept:
        lines += ["Links kept as http (their hosts have no https; readers may be warned):"]
        lines += [f"  {note.split(': ', 1)[-1]}" for note in kept]
    return lines


def outcome_markdown(month: str, verdict: str, record: str, result: str = "") -> str:
    """The review artifact's later version: what was decided, by whom, and what followed."""
    lines = [f"# Newsletter {month}: {verdict}", "", record]
    return "\n".join([*lines, "", result] if result else lines)


def publish_preview(
    storage: Storage, settings: Settings, issue: Issue, review: dict[str, Any], edition: Edition
) -> str:
    """Upload the draft as an unlisted, unindexed preview; returns its URL. Its key is
    recorded in the review, so sending replaces its content with the web copy's."""
    key = preview_key(issue.month, issue.content_sha256, edition)
    storage.put_bytes(
        key,
        without_indexing(issue.html).encode("utf-8"),
        content_type="text/html; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    review["previews"] = sorted({*review.get("previews", []), key})
    return public_url(settings.public_url, key)


def waiting_note(month: str, review: dict[str, Any], deadline: datetime) -> str:
    """What the terminal shows while the run waits: what happened (a count of reviewers,
    never their addresses), the two commands that decide, and the deadline in Stockholm."""
    local = deadline.astimezone(STOCKHOLM)
    return "\n".join(
        [
            _test_copy_note(review),
            f"Newsletter {month} waits for a decision until {local:%Y-%m-%d %H:%M} "
            f"Stockholm time ({local:%Z}); then nothing is sent. Decide from another terminal:",
            f"  approve: python -m flows approve {month}",
            f'  reject:  python -m flows approve {month} --reject --comment "..."',
            "or with the Resume form of this run in the Prefect UI.",
        ]
    )


def publish_to_storage(
    issue_dir: Path,
    month: str,
    settings: Settings,
    now: datetime,
    *,
    edition: Edition | None = None,
) -> str:
    """Publish the web copy and the edition's archive to the settings' storage; returns
    the URL."""
    storage = open_storage(settings)
    return publish_archive(storage, issue_dir, month, settings, now, edition=edition)


def log_review(month: str, markdown: str) -> None:
    """Show the review by logging it (the flow shows it as a Prefect artifact instead)."""
    log.info("%s", markdown)


@dataclass(frozen=True)
class _Run:
    """What every step of one release needs."""

    settings: Settings
    month: str
    folder: Path
    storage: Storage
    edition: Edition
    clock: Clock
    show_review: ShowReview


def release_issue(
    settings: Settings,
    month: str,
    *,
    recipients: list[str],
    reviewers: list[str] | None = None,
    approve: bool | None = None,
    timeout_seconds: int = 3 * 24 * 3600,
    clock: Clock = system_clock,
    wait_for_decision: WaitForDecision | None = None,
    send_test_copy: TestCopyStep = delivery.send_test_copy,
    publish_web_copy: PublishStep = publish_to_storage,
    send_issue: SendStep = delivery.send_issue,
    show_review: ShowReview = log_review,
    edition: Edition | None = None,
    link_check: CheckLinks = check_draft_links,
) -> ReleaseResult:
    """Run the review gate for the rendered issue of `month` and send it when approved.

    `approve` decides up front (demo, tests); None waits for a person through
    `wait_for_decision` (by default the Prefect gate, whose form names the issue and the
    number of recipients). `show_review` is called again with the outcome. Moments are
    recorded from `clock` when they happen, never from the run's (possibly pinned) start.
    `edition` None: the one the settings select.
    """
    check_release_request(recipients)
    settings = resolve_smtp_password(settings)
    edition = edition or edition_for(settings)
    folder = issue_dir(settings, month)
    run = _Run(settings, month, folder, open_storage(settings), edition, clock, show_review)
    ensure_issue_open(run.storage, folder, month, edition)
    draft = read_issue(folder)
    check_edition(draft.manifest, edition, folder)
    review = _review_of_draft(folder, draft.content_sha256)
    if review.get("status") == "approved":
        # A send that crashed after the approval resumes without asking again.
        decision = Decision(
            decision="approve",
            comment=str(review.get("comment", "")),
            decided_by=str(review.get("decided_by", "")),
        )
    else:
        links = _links_of_draft(run, draft, review, link_check)
        _ask_reviewers(run, review, reviewers, send_test_copy, links)
        preview_url = _try_preview(run, draft, review)
        write_review(folder, review)
        note = _test_copy_note(review)
        markdown = review_markdown(month, draft, settings, note, preview_url, edition, links)
        show_review(month, markdown)
        waiter = wait_for_decision or _gate(month, len(recipients), review, edition)
        asked = _decide(run, review, approve, waiter, timeout_seconds)
        if asked is None or not asked.approve:
            return _record_refusal(folder, month, review, asked, clock)
        decision = asked
        review.update(status="approved", comment=decision.comment, decided_by=decision.decided_by)
        write_review(folder, review)
    steps = (publish_web_copy, send_issue)
    result = _send_approved(run, recipients, review, draft.content_sha256, decision, *steps)
    show_review(month, outcome_markdown(month, "sent", decision.record(month), result.summary()))
    return result


def _decide(
    run: _Run,
    review: dict[str, Any],
    approve: bool | None,
    waiter: WaitForDecision,
    timeout_seconds: int,
) -> Decision | None:
    """The decision: given up front, else a person's (None: nobody decided in time);
    logged and shown either way."""
    if approve is not None:
        decision: Decision | None = Decision(
            decision="approve" if approve else "reject",
            comment="decided when the run began",
            decided_by="the run's `approve` parameter",
        )
    else:
        decision = _wait(run.month, review, timeout_seconds, run.settings, run.clock, waiter)
    _announce(run.month, decision, run.show_review)
    return decision


def _try_preview(run: _Run, draft: Issue, review: dict[str, Any]) -> str | None:
    """The preview's URL; None (the review goes on without it) when storage failed."""
    try:
        return publish_preview(run.storage, run.settings, draft, review, run.edition)
    except StorageError as exc:
        _run_log().warning("No preview of the draft: %s", exc)
        return None


def _gate(month: str, recipients: int, review: dict[str, Any], edition: Edition) -> WaitForDecision:
    """The Prefect gate, its Resume form described: the issue, the counts, the choices."""
    description = form_description(month, recipients, int(review.get("test_copy_count", 0)))

    def wait(month: str, timeout_seconds: int, poll_seconds: int) -> Decision | None:
        return await_decision(
            month, timeout_seconds, poll_seconds, description=description, edition=edition
        )

    return wait


def _wait(
    month: str,
    review: dict[str, Any],
    timeout_seconds: int,
    settings: Settings,
    clock: Clock,
    waiter: WaitForDecision,
) -> Decision | None:
    """Say what the run waits for (terminal and the run's log), then wait."""
    deadline = clock() + timedelta(seconds=timeout_seconds)
    print(waiting_note(month, review, deadline), flush=True)
    local = deadline.astimezone(STOCKHOLM)
    _run_log().warning(
        "Newsletter %s waits for a decision (approve or reject) until %s Stockholm time: "
        "use the Resume form of this run, or `python -m flows approve %s`.",
        month,
        f"{local:%Y-%m-%d %H:%M}",
        month,
    )
    return waiter(month, timeout_seconds, settings.approval_poll_seconds)


def _announce(month: str, decision: Decision | None, show_review: ShowReview) -> None:
    """Log (at WARNING, which the terminal shows) and show what was decided, and by whom."""
    if decision is None:
        record = f"Issue {month}: no decision in time; nothing was sent."
        verdict = "no decision in time"
    else:
        record = decision.record(month)
        verdict = "approved" if decision.approve else "rejected, nothing sent"
    _run_log().warning("%s", record)
    show_review(month, outcome_markdown(month, verdict, record))


def _run_log() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The Prefect run's logger (its Logs tab) inside a run; this module's logger outside."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def _review_of_draft(folder: Path, draft_sha: str) -> dict[str, Any]:
    """The recorded review of this draft; a fresh one when the draft changed since (which
    keeps the keys of earlier drafts' previews, for the send to replace)."""
    review = read_review(folder) or {}
    if review.get("draft_sha256") != draft_sha:
        previews = review.get("previews", [])
        review = {"draft_sha256": draft_sha, "status": "awaiting", "previews": previews}
    return review


def _links_of_draft(
    run: _Run, draft: Issue, review: dict[str, Any], link_check: CheckLinks
) -> list[str]:
    """What reviewers read about the draft's links. The check runs once per draft (its
    result is kept in the review) and is logged, as a warning when a link has a problem."""
    if "link_check" in review:
        return review_note(LinkReport.from_json(review["link_check"]), draft.manifest)
    report = link_check(draft, run.settings, run.edition)
    review["link_check"] = report.to_json()
    write_review(run.folder, review)
    lines = review_note(report, draft.manifest)
    if report.off:
        _run_log().info("Link check: %s.", report.off)
    elif lines:
        flagged = report.problems or any(line.startswith("Links kept") for line in lines)
        _run_log().log(logging.WARNING if flagged else logging.INFO, "%s", "\n".join(lines))
    return lines


def _ask_reviewers(
    run: _Run,
    review: dict[str, Any],
    reviewers: list[str] | None,
    send_test_copy: TestCopyStep,
    links: list[str],
) -> None:
    """Send the reviewers a test copy (once per draft), with what the link check found at
    its top, and record the review as awaiting."""
    if reviewers and not review.get("test_copy_sent_at"):
        sent_at = run.clock()
        note = "\n".join(links)  # empty when there is nothing to say
        report = send_test_copy(
            run.folder, reviewers, run.settings, sent_at, edition=run.edition, note=note
        )
        review["test_copy_sent_at"] = sent_at.isoformat()
        review["test_copy_count"] = report.sent
    review["status"] = "awaiting"
    write_review(run.folder, review)


def _test_copy_note(review: dict[str, Any]) -> str:
    if review.get("test_copy_sent_at"):
        return f"Test copy sent to {review.get('test_copy_count', 0)} reviewer(s)."
    return "No reviewers were given: no test copy was sent."


def _record_refusal(
    folder: Path, month: str, review: dict[str, Any], decision: Decision | None, clock: Clock
) -> ReleaseResult:
    """Record a rejection, or no decision in time; nothing is published or sent."""
    if decision is None:
        review.update(status="timed-out", decided_at=clock().isoformat())
        write_review(folder, review)
        return ReleaseResult(month, "timed-out")
    review.update(status="rejected", comment=decision.comment)
    write_review(folder, review)
    # The next review of this draft sends the reviewers a fresh test copy.
    review.pop("test_copy_sent_at", None)
    write_review(folder, review)
    return ReleaseResult(month, "rejected", decision.comment)


def _send_approved(
    run: _Run,
    recipients: list[str],
    review: dict[str, Any],
    draft_sha: str,
    decision: Decision,
    publish_web_copy: PublishStep,
    send_issue: SendStep,
) -> ReleaseResult:
    """Publish the web copy and send the draft that was approved, and only that draft."""
    folder, month, settings, edition = run.folder, run.month, run.settings, run.edition
    if read_issue(folder).content_sha256 != draft_sha:
        raise DeliveryError(
            f"{folder / 'index.html'} changed after it went to review (the draft was rebuilt "
            f"while the run waited), so nothing was published or sent: the reviewers approved "
            f"another version. Send the new draft for review: `python -m flows newsletter "
            f"--month {month} --send --to ...`."
        )
    web_url = publish_web_copy(folder, month, settings, run.clock(), edition=edition)
    sent_report = send_issue(folder, recipients, settings, run.clock(), edition=edition)
    sent = read_issue(folder)
    sent_at = (sent.manifest.get("delivery") or {}).get("sent_at")
    write_sent_state(run.storage, month, sent_at, sent.content_sha256, edition)
    review["status"] = "sent"
    write_review(folder, review)
    return ReleaseResult(month, "approved", decision.comment, sent_report, web_url)
