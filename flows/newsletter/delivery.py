"""Sending an approved newsletter issue over SMTP, and its public web copy and archive.

Three parts, top to bottom:

1. Pure: `issue_subject`, `build_message` (one MIME message, headers checked for injection),
   `web_copy_url`, `render_archive_page`, `render_archive_feed`.
2. Sending: `send_issue` sends one message per recipient in batches. After each batch the
   progress (hashed recipient ids and counts, never addresses) is written to
   `<issue>/delivery-progress.json`, so a crash resumes with the recipients not yet sent.
   When every batch is done the manifest says `"status": "sent"` and the issue is immutable:
   sending it again raises `IssueSentError`.
   The sent state is also written to storage beside the web copy
   (`newsletters/<YYYY-MM>/sent.json`, private), so every machine refuses to change it:
   `ensure_issue_open` is the one check before a rebuild, a review or a send.
3. Web archive: `publish_web_copy` uploads the issue's HTML and regenerates the archive page
   and its Atom feed from `newsletters/archive.json` (private state in storage, so any machine
   can rebuild both).

Recipient addresses live only in memory and in the returned `DeliveryReport`; files, logs
and error messages carry counts and SHA-256 ids of the lower-cased address.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import hashlib
import ipaddress
import json
import logging
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from babel.dates import format_date
from jinja2 import Environment, StrictUndefined
from lxml import etree
from lxml.builder import ElementMaker

from flows.core.errors import ConcurrentWriteError, DeliveryError, IssueSentError
from flows.core.settings import Settings
from flows.core.storage import CACHE_PRIVATE, CACHE_SHORT, Storage, public_url

log = logging.getLogger(__name__)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SMTP_TIMEOUT = 30.0  # seconds per socket operation; a stuck server must not hang the run
PROGRESS_FILE = "delivery-progress.json"
MANIFEST_FILE = "manifest.json"
ARCHIVE_PREFIX = "newsletters"
ARCHIVE_STATE_KEY = f"{ARCHIVE_PREFIX}/archive.json"
ARCHIVE_PAGE_KEY = f"{ARCHIVE_PREFIX}/index.html"
ARCHIVE_FEED_KEY = f"{ARCHIVE_PREFIX}/feed.xml"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_HEADER_LINE_LIMIT = 78  # RFC 5322 "SHOULD"; raised per message only for long URLs


# --- pure helpers ------------------------------------------------------------------------


def recipient_id(address: str) -> str:
    """The id a recipient is recorded under: SHA-256 of the trimmed, lower-cased address.

    >>> recipient_id(" Anna@Example.org ") == recipient_id("anna@example.org")
    True
    """
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def _month_date(month: str) -> date:
    if not _MONTH.match(month):
        raise DeliveryError(f"Issue month {month!r} is not YYYY-MM (e.g. 2026-12).")
    year, mon = month.split("-")
    return date(int(year), int(mon), 1)


def issue_subject(settings: Settings, month: str) -> str:
    """The Swedish subject line (and archive title) of an issue.

    >>> issue_subject(Settings.load(), "2026-12")
    'Kraftsamling update – december 2026'
    """
    name = format_date(_month_date(month), "LLLL y", locale="sv_SE")
    return f"{settings.newsletter_title} – {name}"


def web_copy_key(month: str) -> str:
    """The storage key of an issue's web copy."""
    _month_date(month)
    return f"{ARCHIVE_PREFIX}/{month}/index.html"


def sent_state_key(month: str) -> str:
    """The storage key that records an issue as sent (private, beside its web copy)."""
    _month_date(month)
    return f"{ARCHIVE_PREFIX}/{month}/sent.json"


def web_copy_url(settings: Settings, month: str) -> str:
    """The public URL of an issue's web copy (the email's "Visa i webbläsaren" link).

    >>> web_copy_url(Settings.load(), "2026-12")
    'https://kraftsamling.example/newsletters/2026-12/index.html'
    """
    return public_url(settings.public_url, web_copy_key(month))


def _address_of(value: str) -> str:
    return email.utils.parseaddr(value)[1]


def _domain_of(value: str) -> str:
    address = _address_of(value)
    return address.rpartition("@")[2] or "localhost"


# Everything Python's str.splitlines() breaks at (CR, LF, VT, FF, FS, GS, RS, NEL, U+2028,
# U+2029) and the other C0 controls: the email package refuses them with a bare ValueError.
_HEADER_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _refuse_line_breaks(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        found = _HEADER_UNSAFE.search(value)
        if found:
            raise DeliveryError(
                f"Header {name} contains a line break or control character "
                f"({found.group()!r}); a line break in a header could add headers or "
                "recipients (header injection), so nothing was sent. Remove it from the "
                f"{name} value (setting, parameter or title)."
            )


def _unsubscribe_header(settings: Settings) -> str:
    mailto = settings.unsubscribe_email or _address_of(settings.reply_to)
    return f"<mailto:{mailto}?subject=avregistrera>, <{settings.unsubscribe_url}>"


def _policy_for(headers: dict[str, str]) -> email.policy.EmailPolicy:
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
) -> EmailMessage:
    """One `multipart/alternative` message (text, then HTML), UTF-8, ready for SMTP.

    Refuses (DeliveryError) a header value with CR or LF, a recipient that is not an
    address, and a naive `now`. `message_id` makes the Message-ID deterministic; without it
    one is generated on the sender's domain.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise DeliveryError("build_message needs a timezone-aware `now` for the Date header.")
    _month_date(month)
    headers = {
        "Subject": subject,
        "From": settings.mail_from,
        "Reply-To": settings.reply_to,
        "To": to,
        "List-Unsubscribe": _unsubscribe_header(settings),
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
    message["From"] = settings.mail_from
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


# --- the issue on disk ---------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """A rendered issue folder, read once."""

    folder: Path
    month: str
    html: str
    text: str
    manifest: dict[str, Any]

    @property
    def content_sha256(self) -> str:
        """Identifies what is sent: the HTML and text parts together."""
        digest = hashlib.sha256(self.html.encode("utf-8"))
        digest.update(b"\0")
        digest.update(self.text.encode("utf-8"))
        return digest.hexdigest()

    @property
    def is_sent(self) -> bool:
        return self.manifest.get("status") == "sent"


def _expected_sha(files: Any, name: str) -> str | None:
    """The SHA-256 the manifest records for a file, in either {name: hex} or
    {name: {"sha256": hex, ...}} form; None when it records none."""
    if not isinstance(files, dict):
        return None
    entry = files.get(name)
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    return None


def read_issue(issue_dir: Path) -> Issue:
    """Read `index.html`, `newsletter.txt` and `manifest.json`, checking the files are the
    ones the manifest describes (the reviewed draft is the one that goes out)."""
    issue_dir = Path(issue_dir)
    render_hint = f"render the draft first (python -m flows newsletter --month {issue_dir.name})"
    paths = {name: issue_dir / name for name in ("index.html", "newsletter.txt", MANIFEST_FILE)}
    for path in paths.values():
        if not path.is_file():
            raise DeliveryError(f"{path} is missing, so the issue cannot be sent; {render_hint}.")
    try:
        manifest = json.loads(paths[MANIFEST_FILE].read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeliveryError(
            f"{paths[MANIFEST_FILE]} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            f"{render_hint}."
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("month"), str):
        raise DeliveryError(f'{paths[MANIFEST_FILE]} has no "month"; {render_hint}.')
    month = manifest["month"]
    _month_date(month)
    contents: dict[str, bytes] = {}
    for name in ("index.html", "newsletter.txt"):
        contents[name] = paths[name].read_bytes()
        expected = _expected_sha(manifest.get("files"), name)
        if expected is not None and hashlib.sha256(contents[name]).hexdigest() != expected:
            raise DeliveryError(
                f"{paths[name]} changed after the draft was rendered (its SHA-256 differs from "
                f"{paths[MANIFEST_FILE]}), so it is not the draft that was reviewed. "
                f"Render the draft again, review it, then send."
            )
    return Issue(
        folder=issue_dir,
        month=month,
        html=contents["index.html"].decode("utf-8"),
        text=contents["newsletter.txt"].decode("utf-8"),
        manifest=manifest,
    )


def _sent_error(issue: Issue) -> IssueSentError:
    delivery = issue.manifest.get("delivery") or {}
    counts = delivery.get("counts") or {}
    return IssueSentError(
        f"Issue {issue.month} was already sent (at {delivery.get('sent_at', 'an unknown time')}"
        f", to {counts.get('sent', '?')} recipients, per {issue.folder / MANIFEST_FILE}); a sent "
        "issue is immutable and is never sent twice, so nothing was sent. To correct it, send "
        "a new issue; to look at it again, send a test copy to reviewers."
    )


def _immutable_error(month: str, where: str, sent_at: str) -> IssueSentError:
    return IssueSentError(
        f"Issue {month} was sent at {sent_at} (recorded in {where}). A sent issue is "
        "immutable: its files, web copy and archive entry stay as subscribers got them, so "
        "nothing was rebuilt, published or sent. To correct something, write it in the next "
        "issue; to look at this one again, open its web copy or its files."
    )


def write_sent_state(
    storage: Storage, month: str, sent_at: str | None, content_sha256: str | None
) -> None:
    """Record in storage that issue `month` was sent."""
    state = {
        "month": month,
        "status": "sent",
        "sent_at": sent_at,
        "content_sha256": content_sha256,
    }
    storage.put_bytes(
        sent_state_key(month),
        (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
    )


def ensure_issue_open(storage: Storage, issue_dir: Path, month: str) -> None:
    """Raise IssueSentError when issue `month` was sent, per storage or the local manifest.

    Storage speaks for every machine; an issue sent before the state was kept in storage is
    recognised from its local manifest, and its state is written to storage now.
    """
    found = storage.get_bytes(sent_state_key(month))
    if found is not None:
        try:
            sent_at = json.loads(found[0]).get("sent_at") or "an unknown time"
        except (json.JSONDecodeError, AttributeError):
            sent_at = "an unknown time"
        raise _immutable_error(month, f"{storage.describe()}/{sent_state_key(month)}", sent_at)
    manifest = Path(issue_dir) / MANIFEST_FILE
    if not manifest.is_file():
        return
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # not a sent issue's manifest; the build reports the broken file itself
    if isinstance(data, dict) and data.get("status") == "sent":
        sent_at = (data.get("delivery") or {}).get("sent_at")
        try:
            content_sha256: str | None = read_issue(Path(issue_dir)).content_sha256
        except DeliveryError:
            content_sha256 = None  # files edited after the send: the record still holds
        write_sent_state(storage, month, sent_at, content_sha256)
        raise _immutable_error(month, str(manifest), sent_at or "an unknown time")


def ensure_not_sent(issue_dir: Path) -> None:
    """Raise IssueSentError when the issue's manifest says it was sent (e.g. before asking
    a person to approve it)."""
    path = Path(issue_dir) / MANIFEST_FILE
    if path.is_file():
        issue = read_issue(Path(issue_dir))
        if issue.is_sent:
            raise _sent_error(issue)


def _atomic_write_json(path: Path, data: dict[str, Any], *, sort_keys: bool = False) -> None:
    # Write, fsync, rename: a crash leaves either the old or the new file, never half.
    payload = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- sending -----------------------------------------------------------------------------


class SmtpClient(Protocol):
    """What `send_issue` needs from a connected SMTP client (smtplib.SMTP has it)."""

    def send_message(
        self, msg: EmailMessage, from_addr: str | None = ..., to_addrs: Sequence[str] = ...
    ) -> Any: ...

    def quit(self) -> Any: ...

    def close(self) -> None: ...


SmtpFactory = Callable[[Settings], SmtpClient]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def connect_smtp(settings: Settings, *, timeout: float = SMTP_TIMEOUT) -> smtplib.SMTP:
    """A connected, greeted, (TLS-protected,) logged-in SMTP client, or DeliveryError
    naming host:port and the fix. The password never appears in a message."""
    host, port, security = settings.smtp_host, settings.smtp_port, settings.smtp_security
    where = f"{host}:{port}"
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    if settings.smtp_user and password is None:
        raise DeliveryError(
            f"smtp_user is set for {where} but no password: set KRAFTSAMLING_SMTP_PASSWORD "
            "(or pass the password from a Secret block), or unset the user."
        )
    if settings.smtp_user and security == "none" and not _is_loopback(host):
        raise DeliveryError(
            f"Refusing to send the SMTP password to {where} unencrypted: set "
            "smtp_security to 'starttls' (port 587) or 'ssl' (port 465)."
        )
    client: smtplib.SMTP | None = None
    try:
        if security == "ssl":
            client = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        client.ehlo()
        if security == "starttls":
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if settings.smtp_user and password is not None:
            _login(client, settings.smtp_user, password, where)
        return client
    except smtplib.SMTPAuthenticationError as exc:
        _close_quietly(client)
        raise DeliveryError(
            f"The SMTP server {where} refused the login of user {settings.smtp_user!r} "
            f"(code {exc.smtp_code}). Check KRAFTSAMLING_SMTP_USER and KRAFTSAMLING_SMTP_PASSWORD"
            " (or the Secret block), then run the send again."
        ) from None
    except smtplib.SMTPNotSupportedError:
        _close_quietly(client)
        raise DeliveryError(
            f"The SMTP server {where} does not offer STARTTLS. Use smtp_security 'ssl' for an "
            "implicit-TLS port (465), or 'none' only for a relay on this machine."
        ) from None
    except smtplib.SMTPException as exc:
        _close_quietly(client)
        raise DeliveryError(
            f"The SMTP server {where} failed while connecting ({type(exc).__name__}: "
            f"{getattr(exc, 'smtp_code', '')}). Check the host, port and smtp_security "
            "settings, then run the send again."
        ) from None
    except ssl.SSLError as exc:
        _close_quietly(client)
        raise DeliveryError(
            f"TLS with the SMTP server {where} failed ({exc.reason or exc}). Check that "
            "smtp_security matches the port (465: 'ssl', 587: 'starttls') and that the "
            "server's certificate is valid for the host name."
        ) from None
    except OSError as exc:
        _close_quietly(client)
        raise DeliveryError(
            f"Could not connect to the SMTP server {where} ({exc.strerror or exc}). Check that "
            "the server is up and that KRAFTSAMLING_SMTP_HOST, KRAFTSAMLING_SMTP_PORT and "
            "KRAFTSAMLING_SMTP_SECURITY are right, then run the send again: recipients "
            "already sent are recorded and do not get it twice."
        ) from None


def _login(client: smtplib.SMTP, user: str, password: str, where: str) -> None:
    if (user + password).isascii():
        client.login(user, password)
        return
    # smtplib encodes credentials as ASCII; AUTH PLAIN (RFC 4616) carries UTF-8, so a
    # password with å, ä or ö still works where the server offers PLAIN.
    mechanisms = (client.esmtp_features.get("auth") or "").upper().split()
    if "PLAIN" not in mechanisms:
        raise DeliveryError(
            f"The SMTP server {where} does not offer AUTH PLAIN, the only way to log in with "
            "a user name or password containing non-ASCII letters; use an ASCII-only password."
        )
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    code, response = client.docmd("AUTH", "PLAIN " + token)
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, response)


def _close_quietly(client: SmtpClient | None) -> None:
    if client is None:
        return
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


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


@dataclass
class _Progress:
    month: str
    message_id_prefix: str
    content_sha256: str
    started_at: str
    batches: int = 0
    sent: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def done(self) -> set[str]:
        return set(self.sent) | {item["id"] for item in self.rejected}

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "month": self.month,
            "message_id_prefix": self.message_id_prefix,
            "content_sha256": self.content_sha256,
            "started_at": self.started_at,
            "updated_at": now.isoformat(timespec="seconds"),
            "counts": {
                "sent": len(self.sent),
                "rejected": len(self.rejected),
                "batches": self.batches,
            },
            "sent": self.sent,
            "rejected": self.rejected,
        }


def _load_progress(issue: Issue, prefix: str, now: datetime) -> _Progress:
    path = issue.folder / PROGRESS_FILE
    fresh = _Progress(issue.month, prefix, issue.content_sha256, now.isoformat(timespec="seconds"))
    if not path.is_file():
        return fresh
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        progress = _Progress(
            month=data["month"],
            message_id_prefix=data["message_id_prefix"],
            content_sha256=data["content_sha256"],
            started_at=data["started_at"],
            batches=int(data["counts"]["batches"]),
            sent=list(data["sent"]),
            rejected=list(data["rejected"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DeliveryError(
            f"{path} is damaged ({type(exc).__name__}: {exc}), so it is unknown who already "
            "got this issue. Restore the file from a backup; delete it only if you accept "
            "that recipients of the interrupted send may get the issue twice."
        ) from None
    if progress.content_sha256 != issue.content_sha256 or progress.month != issue.month:
        raise DeliveryError(
            f"{path} records an interrupted send of a different version of issue "
            f"{progress.month}; the issue's HTML or text changed mid-send. Restore the files "
            "that were being sent and run again to finish that send."
        )
    return progress


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
) -> DeliveryReport:
    """Send the issue in `issue_dir`, one message per recipient, in batches of `batch_size`.

    Resumes an interrupted send from `delivery-progress.json`; marks the manifest sent when
    every batch is done. `test_copy=True` sends a "[Test] " copy and records nothing.
    Raises IssueSentError for a sent issue, DeliveryError when the server is unreachable,
    refuses the login, defers recipients or a header is unsafe.
    """
    if batch_size < 1:
        raise DeliveryError(f"batch_size must be at least 1, got {batch_size}.")
    issue = read_issue(Path(issue_dir))
    if issue.is_sent and not test_copy:
        raise _sent_error(issue)
    addresses = _clean_recipients(recipients)
    subject = issue_subject(settings, issue.month)
    if test_copy:
        subject = "[Test] " + subject
    domain = _domain_of(settings.mail_from)
    prefix = f"kraftsamling.{issue.month}.{issue.content_sha256[:12]}"
    envelope_from = _address_of(settings.mail_from)

    def message_id_for(address: str) -> str:
        # Deterministic per recipient: a message resent after a crash keeps its Message-ID,
        # so receiving servers can drop the duplicate.
        if test_copy:
            return email.utils.make_msgid(domain=domain)
        return f"<{prefix}.{recipient_id(_address_of(address))[:16]}@{domain}>"

    # Built once (unsafe headers fail here, before any connection); encoding a 50-100 KB
    # body costs ~15 ms, so each recipient only gets its own To and Message-ID.
    template = build_message(
        html=issue.html,
        text=issue.text,
        subject=subject,
        settings=settings,
        to=addresses[0],
        month=issue.month,
        now=now,
        message_id=message_id_for(addresses[0]),
    )

    def message_for(address: str) -> EmailMessage:
        template.replace_header("To", address)
        template.replace_header("Message-ID", message_id_for(address))
        return template

    if test_copy:
        progress = _Progress(issue.month, prefix, issue.content_sha256, now.isoformat())
    else:
        progress = _load_progress(issue, prefix, now)
        prefix = progress.message_id_prefix
    done = progress.done()
    pending = [a for a in addresses if recipient_id(_address_of(a)) not in done]
    earlier_rejected = {item["id"] for item in progress.rejected}
    rejected_addresses = [a for a in addresses if recipient_id(_address_of(a)) in earlier_rejected]
    sent_before = len(progress.sent)
    deferred = 0
    factory = smtp_factory or connect_smtp
    batches = _batches(pending, batch_size)
    where = f"{settings.smtp_host}:{settings.smtp_port}"

    for number, batch in enumerate(batches, start=1):
        try:
            client = _open_client(factory, settings, where)
            try:
                for address in batch:
                    rid = recipient_id(_address_of(address))
                    outcome = _send_one(client, message_for(address), envelope_from, address)
                    if outcome is None:
                        progress.sent.append(rid)
                    elif 500 <= outcome < 600:
                        progress.rejected.append({"id": rid, "code": outcome})
                        rejected_addresses.append(address)
                    else:
                        deferred += 1  # 4xx: stays pending for the next run
            except (smtplib.SMTPException, OSError) as exc:
                raise DeliveryError(
                    f"Lost the SMTP server {where} in batch {number} of {len(batches)} "
                    f"({type(exc).__name__}). {len(progress.sent)} recipients are sent and "
                    "recorded; run the send again to reach the rest (nobody gets it twice)."
                ) from None
            finally:
                _close_quietly(client)
            progress.batches += 1
        finally:
            # Also on a crash: whatever was sent is recorded before the error goes up.
            if not test_copy:
                _atomic_write_json(issue.folder / PROGRESS_FILE, progress.to_json(now))
        log.info(
            "Issue %s batch %d/%d: %d sent, %d rejected so far",
            issue.month,
            number,
            len(batches),
            len(progress.sent),
            len(progress.rejected),
        )

    report = DeliveryReport(
        month=issue.month,
        test_copy=test_copy,
        message_id_prefix=prefix,
        recipients=len(addresses),
        sent=len(progress.sent),
        sent_now=len(progress.sent) - sent_before,
        rejected=len(progress.rejected),
        batches=progress.batches,
        rejected_addresses=rejected_addresses,
    )
    if deferred:
        raise DeliveryError(
            f"The SMTP server {where} deferred {deferred} recipients (4xx, temporary) of issue "
            f"{issue.month}; {report.sent} are sent and recorded, {report.rejected} rejected. "
            "Run the send again later: only the deferred recipients get it."
        )
    if not test_copy:
        _mark_sent(issue, report, now)
    log.info("%s", report.summary())
    return report


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


def _mark_sent(issue: Issue, report: DeliveryReport, now: datetime) -> None:
    manifest = dict(issue.manifest)
    manifest["status"] = "sent"
    manifest["delivery"] = {
        "sent_at": now.isoformat(timespec="seconds"),
        "message_id_prefix": report.message_id_prefix,
        "counts": {"sent": report.sent, "rejected": report.rejected, "batches": report.batches},
    }
    # sort_keys: the same layout the newsletter build writes, so diffs stay small.
    _atomic_write_json(issue.folder / MANIFEST_FILE, manifest, sort_keys=True)


# --- the web archive ---------------------------------------------------------------------

ATOM_NS = "http://www.w3.org/2005/Atom"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

_ARCHIVE_PAGE = """\
<!DOCTYPE html>
<html lang="sv">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} – alla nummer</title>
<link rel="alternate" type="application/atom+xml" title="{{ title }}" href="{{ feed_url }}">
<style>
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #1a1a1a; background: #fff; }
a { color: #0b4f8a; }
li { margin: 0.5rem 0; }
</style>
</head>
<body>
<header>
<h1>{{ title }}: alla nummer</h1>
<p>Nyhetsbrevet kommer en gång i månaden. Här finns alla nummer, det senaste först.</p>
</header>
<main>
{% if issues %}
<ul>
{% for issue in issues %}
<li><a href="{{ issue.url }}">{{ issue.title }}</a>
(<time datetime="{{ issue.iso }}">skickat {{ issue.when }}</time>)</li>
{% endfor %}
</ul>
{% else %}
<p>Inga nummer ännu.</p>
{% endif %}
</main>
<footer>
<p><a href="{{ feed_url }}">Följ nyhetsbrevet i en flödesläsare (Atom)</a> ·
<a href="{{ site_url }}">Till webbplatsen</a></p>
</footer>
</body>
</html>
"""

_JINJA = Environment(
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _entry_time(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry.get("sent_at") or entry["published_at"])


def _newest_first(state: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(state.get("issues", []), key=lambda entry: entry["month"], reverse=True)


def render_archive_page(state: dict[str, Any], settings: Settings) -> bytes:
    """The public archive page: every issue, newest first, in Swedish."""
    issues = []
    for entry in _newest_first(state):
        when = _entry_time(entry).astimezone(STOCKHOLM)
        issues.append(
            {
                "url": public_url(settings.public_url, entry["key"]),
                "title": entry["title"],
                "iso": when.date().isoformat(),
                "when": format_date(when.date(), "d MMMM y", locale="sv_SE"),
            }
        )
    page = _JINJA.from_string(_ARCHIVE_PAGE).render(
        title=settings.newsletter_title,
        issues=issues,
        feed_url=public_url(settings.public_url, ARCHIVE_FEED_KEY),
        site_url=settings.site_url,
    )
    return page.encode("utf-8")


def render_archive_feed(state: dict[str, Any], settings: Settings) -> bytes:
    """An Atom feed of the issues, newest first; ids come from the stored state and never
    change, `updated` is each issue's send time."""
    atom = ElementMaker(namespace=ATOM_NS, nsmap={None: ATOM_NS})
    entries = _newest_first(state)
    times = [_entry_time(entry) for entry in entries]
    feed_updated = max(times) if times else datetime.fromisoformat(state["created_at"])
    feed = atom.feed(
        atom.title(settings.newsletter_title),
        atom.subtitle("Nyhetsbrevet från Kraftsamling, en gång i månaden."),
        atom.id(state["feed_id"]),
        atom.updated(feed_updated.isoformat(timespec="seconds")),
        atom.link(
            rel="self",
            type="application/atom+xml",
            href=public_url(settings.public_url, ARCHIVE_FEED_KEY),
        ),
        atom.link(
            rel="alternate",
            type="text/html",
            href=public_url(settings.public_url, ARCHIVE_PAGE_KEY),
        ),
        atom.author(atom.name("Kraftsamling"), atom.email(settings.contact_email)),
    )
    feed.set(_XML_LANG, "sv")
    for entry, when in zip(entries, times, strict=True):
        link = public_url(settings.public_url, entry["key"])
        feed.append(
            atom.entry(
                atom.title(entry["title"]),
                atom.id(entry["id"]),
                atom.link(rel="alternate", type="text/html", href=link),
                atom.published(when.isoformat(timespec="seconds")),
                atom.updated(when.isoformat(timespec="seconds")),
                atom.summary(f"{entry['title']}: läs numret på webben."),
            )
        )
    return etree.tostring(feed, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _tag_authority(settings: Settings) -> str:
    return urlparse(settings.site_url).hostname or "kraftsamling.example"


def _merge_issue(
    state: dict[str, Any] | None, issue: Issue, settings: Settings, now: datetime
) -> dict[str, Any]:
    """The archive state with this issue added or refreshed; ids and first-publish times
    of existing entries are kept, so the feed never re-announces an issue."""
    authority = _tag_authority(settings)
    if state is None:
        state = {
            "version": 1,
            "feed_id": f"tag:{authority},{issue.month[:4]}:newsletters",
            "created_at": now.isoformat(timespec="seconds"),
            "issues": [],
        }
    sent_at = (issue.manifest.get("delivery") or {}).get("sent_at")
    issues = {entry["month"]: dict(entry) for entry in state.get("issues", [])}
    entry = issues.get(issue.month) or {
        "month": issue.month,
        "id": f"tag:{authority},{issue.month[:4]}:newsletters/{issue.month}",
        "published_at": now.isoformat(timespec="seconds"),
        "sent_at": None,
    }
    entry["title"] = issue_subject(settings, issue.month)
    entry["key"] = web_copy_key(issue.month)
    entry["sent_at"] = sent_at or entry.get("sent_at")
    issues[issue.month] = entry
    return {**state, "issues": [issues[month] for month in sorted(issues)]}


def publish_web_copy(
    storage: Storage, issue_dir: Path, month: str, settings: Settings, now: datetime
) -> str:
    """Upload the issue's HTML as its public web copy, update `newsletters/archive.json`,
    and regenerate the archive page and feed. Returns the web copy's URL."""
    if now.tzinfo is None:
        raise DeliveryError("publish_web_copy needs a timezone-aware `now`.")
    issue = read_issue(Path(issue_dir))
    if issue.month != month:
        raise DeliveryError(
            f"{Path(issue_dir) / MANIFEST_FILE} is issue {issue.month}, not {month}; "
            "pass the issue folder of the month being published."
        )
    key = web_copy_key(month)
    storage.put_bytes(
        key,
        issue.html.encode("utf-8"),
        content_type="text/html; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    state = _update_archive_state(storage, issue, settings, now)
    storage.put_bytes(
        ARCHIVE_PAGE_KEY,
        render_archive_page(state, settings),
        content_type="text/html; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    storage.put_bytes(
        ARCHIVE_FEED_KEY,
        render_archive_feed(state, settings),
        content_type="application/atom+xml; charset=utf-8",
        cache_control=CACHE_SHORT,
        public=True,
    )
    return public_url(settings.public_url, key)


def _update_archive_state(
    storage: Storage, issue: Issue, settings: Settings, now: datetime, attempts: int = 3
) -> dict[str, Any]:
    # Read, merge, write only if nobody wrote in between; on a race, merge again.
    for attempt in range(1, attempts + 1):
        found = storage.get_bytes(ARCHIVE_STATE_KEY)
        current = None
        if found is not None:
            try:
                current = json.loads(found[0])
            except json.JSONDecodeError as exc:
                raise DeliveryError(
                    f"{storage.describe()}/{ARCHIVE_STATE_KEY} is not valid JSON ({exc.msg}); "
                    "restore it from the bucket's versions or a backup."
                ) from None
        state = _merge_issue(current, issue, settings, now)
        data = (json.dumps(state, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            storage.put_bytes(
                ARCHIVE_STATE_KEY,
                data,
                content_type="application/json",
                cache_control=CACHE_PRIVATE,
                public=False,
                if_match=found[1] if found is not None else None,
                if_none_match=found is None,
            )
            return state
        except ConcurrentWriteError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
