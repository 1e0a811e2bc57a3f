"""Sending an issue over SMTP: one MIME message per recipient, in resumable batches.

- Pure: `build_message` (one `multipart/alternative` message, headers checked for
  injection) and `recipient_id`.
- The connection itself (TLS, login, the errors that name the settings) is `smtp.py`'s.
- `send_issue` sends the issue folder's draft (read and checked by `issue.read_issue`) one
  message per recipient, in batches. After each batch the progress (hashed recipient ids
  and counts, never addresses) is recorded in the folder (`issue.write_progress`), so a
  crash resumes with the recipients not yet sent. When every batch is done the manifest
  says `"status": "sent"` (`issue.mark_sent`) and sending it again raises IssueSentError.
  `send_test_copy` sends a "[Test] " copy to reviewers and records nothing.

Recipient addresses live only in memory and in the returned `DeliveryReport`; files, logs
and error messages carry counts and SHA-256 ids of the lower-cased address.

The edition gives the subject line, the From display name and the list's List-Unsubscribe
address and page (`flows.newsletter.edition`).
"""

from __future__ import annotations

import email.policy
import email.utils
import functools
import hashlib
import logging
import re
import smtplib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from html import escape
from pathlib import Path
from urllib.parse import quote

from flows.core.errors import DeliveryError
from flows.core.settings import Settings
from flows.core.text import header_problem
from flows.newsletter.edition import Edition, edition_for
from flows.newsletter.issue import (
    Issue,
    Progress,
    mark_sent,
    month_start,
    read_issue,
    read_progress,
    sent_error,
    write_progress,
)
from flows.newsletter.render import issue_subject
from flows.newsletter.smtp import SmtpClient, SmtpFactory, close_quietly, connect_smtp

log = logging.getLogger(__name__)

_HEADER_LINE_LIMIT = 78  # RFC 5322 "SHOULD"; raised per message only for long URLs


# --- pure helpers ------------------------------------------------------------------------


def recipient_id(address: str) -> str:
    """The id a recipient is recorded under: SHA-256 of the trimmed, lower-cased address.

    >>> recipient_id(" Anna@Example.org ") == recipient_id("anna@example.org")
    True
    """
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def _address_of(value: str) -> str:
    return email.utils.parseaddr(value)[1]


def _domain_of(value: str) -> str:
    address = _address_of(value)
    return address.rpartition("@")[2] or "localhost"


def _refuse_line_breaks(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        found = header_problem(value)
        if found is not None:
            raise DeliveryError(
                f"Header {name} contains a line break or control character "
                f"({found!r}); a line break in a header could add headers or "
                "recipients (header injection), so nothing was sent. Remove it from the "
                f"{name} value (setting, parameter or title)."
            )


def _unsubscribe_header(settings: Settings, edition: Edition) -> str:
    """The list's List-Unsubscribe: its address (the edition's, else the settings') with the
    edition's word as subject, and its unsubscribe page."""
    mailto = edition.list_address or settings.unsubscribe_email or _address_of(settings.reply_to)
    subject = quote(edition.words.unsubscribe_subject)
    return f"<mailto:{mailto}?subject={subject}>, <{edition.unsubscribe_page(settings)}>"


def _sender(settings: Settings, edition: Edition) -> str:
    """The From header: the mail_from setting, under the edition's display name if it has one."""
    if edition.sender_name is None:
        return settings.mail_from
    return email.utils.formataddr((edition.sender_name, _address_of(settings.mail_from)))


def _policy_for(headers: dict[str, str]) -> email.policy.EmailPolicy[EmailMessage]:
    # The email package encodes a word longer than the line limit as an RFC 2047 encoded
    # word, which turns a long List-Unsubscribe URL into garbage for mail clients. Allow
    # lines just long enough for the longest URL instead (998 is the hard limit).
    longest = max((len(word) for value in headers.values() for word in value.split()), default=0)
    limit = min(998, max(_HEADER_LINE_LIMIT, longest + 32))
    return email.policy.SMTP.clone(max_line_length=limit)


def build_message(
    *,
    html: str,
    text: str,
    subject: str,
    settings: Settings,
    to: str,
    month: str,
    now: datetime,
    message_id: str | None = None,
    edition: Edition | None = None,
) -> EmailMessage:
    """One `multipart/alternative` message (text, then HTML), UTF-8, ready for SMTP.

    Refuses (DeliveryError) a header value with CR or LF, a recipient that is not an
    address, and a naive `now`. `message_id` makes the Message-ID deterministic; without it
    one is generated on the sender's domain. `edition` None: the one the settings select.
    """
    edition = edition or edition_for(settings)
    if now.tzinfo is None or now.utcoffset() is None:
        raise DeliveryError("build_message needs a timezone-aware `now` for the Date header.")
    month_start(month)
    headers = {
        "Subject": subject,
        "From": _sender(settings, edition),
        "Reply-To": settings.reply_to,
        "To": to,
        "List-Unsubscribe": _unsubscribe_header(settings, edition),
    }
    if message_id is not None:
        headers["Message-ID"] = message_id
    _refuse_line_breaks(headers)
    for name in ("From", "Reply-To", "To"):
        if "@" not in _address_of(headers[name]):
            what = "the recipient" if name == "To" else f"the {name} setting"
            raise DeliveryError(f"Header {name}: {what} is not an email address; give name@domain.")
    if message_id is None:
        message_id = email.utils.make_msgid(domain=_domain_of(settings.mail_from))

    message = EmailMessage(policy=_policy_for(headers))
    message["Subject"] = subject
    message["From"] = headers["From"]
    message["Reply-To"] = settings.reply_to
    message["To"] = to
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = message_id
    message["List-Unsubscribe"] = headers["List-Unsubscribe"]
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps every line short and 7-bit, so no server needs 8BITMIME.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


# --- sending -----------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    """What a send did. `rejected_addresses` is the only place addresses appear; it is
    kept out of `repr` and `summary()` so logging the report leaks none."""

    month: str
    test_copy: bool
    message_id_prefix: str
    recipients: int
    sent: int
    sent_now: int
    rejected: int
    batches: int
    rejected_addresses: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """Counts only, for logs and artifacts."""
        if self.test_copy:
            return (
                f"Test copy of {self.month}: sent to {self.sent} of {self.recipients} "
                f"reviewers, {self.rejected} rejected."
            )
        earlier = self.sent - self.sent_now
        resumed = f" ({earlier} already sent by an earlier run)" if earlier else ""
        return (
            f"Issue {self.month}: sent to {self.sent} of {self.recipients} recipients"
            f"{resumed}, {self.rejected} rejected, in {self.batches} batches."
        )


def _clean_recipients(recipients: Iterable[str]) -> list[str]:
    """Trimmed, validated, one per person (case-insensitive), in the given order."""
    seen: set[str] = set()
    out: list[str] = []
    for index, raw in enumerate(recipients, start=1):
        address = raw.strip() if isinstance(raw, str) else ""
        if (
            not address
            or "\r" in address
            or "\n" in address
            or "@" not in _address_of(address)
            or any(ch.isspace() for ch in _address_of(address))
        ):
            # Position only: the value may be a real person's address.
            raise DeliveryError(
                f"Recipient #{index} is not an email address (name@domain); nothing was sent. "
                "Fix the recipient list given at run time."
            )
        rid = recipient_id(_address_of(address))
        if rid not in seen:
            seen.add(rid)
            out.append(address)
    if not out:
        raise DeliveryError("No recipients were given; pass a list address or addresses.")
    return out


def _batches(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def send_issue(
    issue_dir: Path,
    recipients: list[str],
    settings: Settings,
    now: datetime,
    *,
    batch_size: int = 50,
    smtp_factory: SmtpFactory | None = None,
    test_copy: bool = False,
    edition: Edition | None = None,
    note: str = "",
) -> DeliveryReport:
    """Send the issue in `issue_dir`, one message per recipient, in batches of `batch_size`.

    Resumes an interrupted send from `delivery-progress.json`; marks the manifest sent when
    every batch is done. `test_copy=True` sends a "[Test] " copy and records nothing; its
    `note` (the link check's findings) stands above the issue, for the reviewers only.
    Raises IssueSentError for a sent issue, DeliveryError when the server is unreachable,
    refuses the login, defers recipients or a header is unsafe. `edition` (None: the one
    the settings select) gives the subject, the sender's name and the list headers.
    """
    edition = edition or edition_for(settings)
    if note and not test_copy:
        raise DeliveryError("A note for reviewers goes only into a test copy, never to the list.")
    plan = _plan_send(issue_dir, recipients, settings, now, batch_size, test_copy, edition, note)
    deferred = _send_batches(plan, smtp_factory or connect_smtp, settings)
    report = plan.report()
    if deferred:
        raise DeliveryError(
            f"The SMTP server {plan.where} deferred {deferred} recipients (4xx, temporary) of "
            f"issue {plan.issue.month}; {report.sent} are sent and recorded, {report.rejected} "
            "rejected. Run the send again later: only the deferred recipients get it."
        )
    plan.finish(report)
    log.info("%s", report.summary())
    return report


@dataclass
class _SendPlan:
    """A send decided before the first connection. Test copies and real sends differ only
    here: their subject, their Message-IDs, where the progress comes from and what is
    recorded (`save_progress` after each batch, `finish` at the end)."""

    issue: Issue
    test_copy: bool
    addresses: list[str]
    template: EmailMessage  # built once; each recipient only gets its own To and Message-ID
    message_id: Callable[[str], str]
    envelope_from: str
    where: str  # host:port, for messages
    progress: Progress
    batches: list[list[str]]  # the recipients not yet sent or rejected
    rejected_addresses: list[str]
    save_progress: Callable[[], None]
    finish: Callable[[DeliveryReport], None]
    sent_before: int = 0

    def message_for(self, address: str) -> EmailMessage:
        self.template.replace_header("To", address)
        self.template.replace_header("Message-ID", self.message_id(address))
        return self.template

    def report(self) -> DeliveryReport:
        return DeliveryReport(
            month=self.issue.month,
            test_copy=self.test_copy,
            message_id_prefix=self.progress.message_id_prefix,
            recipients=len(self.addresses),
            sent=len(self.progress.sent),
            sent_now=len(self.progress.sent) - self.sent_before,
            rejected=len(self.progress.rejected),
            batches=self.progress.batches,
            rejected_addresses=self.rejected_addresses,
        )


def _deterministic_message_id(prefix: str, domain: str, address: str) -> str:
    # Deterministic per recipient: a message resent after a crash keeps its Message-ID,
    # so receiving servers can drop the duplicate.
    return f"<{prefix}.{recipient_id(_address_of(address))[:16]}@{domain}>"


def _fresh_message_id(domain: str, _address: str) -> str:
    return email.utils.make_msgid(domain=domain)


def _record_nothing(*_args: object) -> None:
    """What a test copy records: nothing."""


def _plan_send(
    issue_dir: Path,
    recipients: list[str],
    settings: Settings,
    now: datetime,
    batch_size: int,
    test_copy: bool,
    edition: Edition,
    note: str = "",
) -> _SendPlan:
    """Check everything and decide the send; nothing is connected, sent or written."""
    if batch_size < 1:
        raise DeliveryError(f"batch_size must be at least 1, got {batch_size}.")
    issue = read_issue(Path(issue_dir))
    if issue.is_sent and not test_copy:
        raise sent_error(issue)
    addresses = _clean_recipients(recipients)
    subject = issue_subject(settings, issue.month, edition)
    domain = _domain_of(settings.mail_from)
    prefix = f"kraftsamling.{issue.month}.{issue.content_sha256[:12]}"
    message_id: Callable[[str], str]
    if test_copy:
        subject = "[Test] " + subject
        message_id = functools.partial(_fresh_message_id, domain)
    else:
        message_id = functools.partial(_deterministic_message_id, prefix, domain)
    # Built once (unsafe headers fail here, before any connection); encoding a 50-100 KB
    # body costs ~15 ms, so each recipient only gets its own To and Message-ID.
    template = build_message(
        html=_with_note(issue.html, note),
        text=f"{note}\n\n{issue.text}" if note else issue.text,
        subject=subject,
        settings=settings,
        to=addresses[0],
        month=issue.month,
        now=now,
        message_id=message_id(addresses[0]),
        edition=edition,
    )
    if test_copy:
        progress = Progress(issue.month, prefix, issue.content_sha256, now.isoformat())
        save_progress: Callable[[], None] = _record_nothing
        finish: Callable[[DeliveryReport], None] = _record_nothing
    else:
        progress = read_progress(issue, prefix, now)
        # A resumed send keeps the Message-IDs of the send it resumes.
        message_id = functools.partial(
            _deterministic_message_id, progress.message_id_prefix, domain
        )
        save_progress = functools.partial(write_progress, issue.folder, progress, now)
        finish = functools.partial(_mark_sent, issue, now)
    done = progress.done()
    earlier_rejected = {item["id"] for item in progress.rejected}
    return _SendPlan(
        issue=issue,
        test_copy=test_copy,
        addresses=addresses,
        template=template,
        message_id=message_id,
        envelope_from=_address_of(settings.mail_from),
        where=f"{settings.smtp_host}:{settings.smtp_port}",
        progress=progress,
        batches=_batches(
            [a for a in addresses if recipient_id(_address_of(a)) not in done], batch_size
        ),
        rejected_addresses=[
            a for a in addresses if recipient_id(_address_of(a)) in earlier_rejected
        ],
        save_progress=save_progress,
        finish=finish,
        sent_before=len(progress.sent),
    )


def _mark_sent(issue: Issue, now: datetime, report: DeliveryReport) -> None:
    mark_sent(
        issue,
        sent_at=now.isoformat(timespec="seconds"),
        message_id_prefix=report.message_id_prefix,
        counts={"sent": report.sent, "rejected": report.rejected, "batches": report.batches},
    )


def _send_batches(plan: _SendPlan, factory: SmtpFactory, settings: Settings) -> int:
    """Send the plan's batches, one connection each; the number of deferred recipients.

    The progress is saved after every batch, also on a crash: whatever was sent is recorded
    before the error goes up.
    """
    progress, where, deferred = plan.progress, plan.where, 0
    for number, batch in enumerate(plan.batches, start=1):
        try:
            client = _open_client(factory, settings, where)
            try:
                for address in batch:
                    rid = recipient_id(_address_of(address))
                    message = plan.message_for(address)
                    outcome = _send_one(client, message, plan.envelope_from, address)
                    if outcome is None:
                        progress.sent.append(rid)
                    elif 500 <= outcome < 600:
                        progress.rejected.append({"id": rid, "code": outcome})
                        plan.rejected_addresses.append(address)
                    else:
                        deferred += 1  # 4xx: stays pending for the next run
            except (smtplib.SMTPException, OSError) as exc:
                raise DeliveryError(
                    f"Lost the SMTP server {where} in batch {number} of {len(plan.batches)} "
                    f"({type(exc).__name__}). {len(progress.sent)} recipients are sent and "
                    "recorded; run the send again to reach the rest (nobody gets it twice)."
                ) from None
            finally:
                close_quietly(client)
            progress.batches += 1
        finally:
            plan.save_progress()
        log.info(
            "Issue %s batch %d/%d: %d sent, %d rejected so far",
            plan.issue.month,
            number,
            len(plan.batches),
            len(progress.sent),
            len(progress.rejected),
        )
    return deferred


def _open_client(factory: SmtpFactory, settings: Settings, where: str) -> SmtpClient:
    try:
        return factory(settings)
    except DeliveryError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(
            f"Could not connect to the SMTP server {where} ({type(exc).__name__}). Check that "
            "it is up and the smtp_* settings are right, then run the send again: recipients "
            "already sent are recorded and do not get it twice."
        ) from None


def _send_one(
    client: SmtpClient, message: EmailMessage, envelope_from: str, address: str
) -> int | None:
    """None when the server accepted the message, else the SMTP code that refused it."""
    try:
        client.send_message(message, from_addr=envelope_from, to_addrs=[_address_of(address)])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        return codes[0] if codes else 550
    except smtplib.SMTPDataError as exc:
        if 400 <= exc.smtp_code < 600:
            return exc.smtp_code
        raise
    except smtplib.SMTPSenderRefused as exc:
        raise DeliveryError(
            f"The SMTP server refused the sender {envelope_from} (code {exc.smtp_code}). "
            "Check mail_from: the server must allow it as sender for the logged-in user."
        ) from None
    return None


def send_test_copy(
    issue_dir: Path,
    reviewers: list[str],
    settings: Settings,
    now: datetime,
    *,
    edition: Edition | None = None,
    note: str = "",
) -> DeliveryReport:
    """Send a "[Test] " copy of the draft to the reviewers, with `note` above the issue;
    nothing is recorded."""
    return send_issue(
        issue_dir, reviewers, settings, now, test_copy=True, edition=edition, note=note
    )


_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _with_note(html: str, note: str) -> str:
    """The issue's HTML with `note` in a box at the top of its body (test copies only)."""
    if not note:
        return html
    box = (
        '<div style="margin:12px;padding:12px;border:2px solid #b7791f;background:#fffbeb;'
        'font-family:monospace;font-size:13px;white-space:pre-wrap;color:#1f2933;">'
        f"{escape(note)}</div>"
    )
    match = _BODY.search(html)
    at = match.end() if match else 0
    return html[:at] + box + html[at:]
