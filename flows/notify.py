"""Tell people what happened, by email, so nobody has to look at a server.

- Producers: the show's `producers:` (show.yaml) and a sidecar's `contact:` (for its own
  episode) get one short email after a podcast run that published, refused or warned about
  their episodes: what was published (title, link, loudness), what was refused with the note
  and its fix, what is waiting. Swedish first, English below. A run that did nothing sends
  nothing.
- Operators and staff: the addresses in `KRAFTSAMLING_NOTIFY_FAILURES` get one email per
  failed or crashed run (Prefect's `on_failure` / `on_crashed` hooks, so scheduled runs
  are covered; a command run without a Prefect server calls the same `notify_failed_run`):
  the flow, the step, the error line and the run's page in the Prefect UI when there is one.
- The newsletter's SMTP settings are used (`flows.newsletter.smtp`); no credential or other
  address is ever in a message. `KRAFTSAMLING_NOTIFY=false` turns all of it off. A
  notification that cannot be sent is logged and never changes the run's own outcome.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from flows.core.errors import KraftsamlingError
from flows.core.settings import Settings
from flows.podcast.report import EpisodeOutcome, PublishReport

log = logging.getLogger(__name__)

_SHOW = "Digitalsamtal"
_PUBLISHED = ("published", "replaced", "updated")
_REFUSED = ("failed",)
_WAITING = ("retry", "scheduled", "waiting")


def producer_emails(
    report: PublishReport,
    producers: Sequence[str],
    contacts: Mapping[str, str],
    settings: Settings,
) -> list[EmailMessage]:
    """One email per address: the show's producers get every episode of the run, a
    sidecar's `contact` (by audio file name) its own. None for a run that did nothing."""
    by_address: dict[str, list[EpisodeOutcome]] = {}
    for outcome in report.outcomes:
        if not _worth_telling(outcome):
            continue
        for address in dict.fromkeys([*producers, contacts.get(outcome.name, "")]):
            if address:
                by_address.setdefault(address, []).append(outcome)
    return [
        _message(settings, address, _producer_subject(told), _producer_body(told, report))
        for address, told in by_address.items()
    ]


def sidecar_contacts(report: PublishReport, show_dir: Path) -> dict[str, str]:
    """{audio file name: the `contact:` of its sidecar}, read where the run moved it."""
    from flows.podcast.sidecar import parse_sidecar

    contacts = {}
    for outcome in report.outcomes:
        if not outcome.moved_to:
            continue
        sidecar = (show_dir / outcome.moved_to).with_suffix(".md")
        try:
            contact = parse_sidecar(sidecar.read_text(encoding="utf-8"), sidecar.name).contact
        except (OSError, ValueError, KraftsamlingError):
            continue  # no sidecar, or a broken one: the show's producers are told
        if contact:
            contacts[outcome.name] = contact
    return contacts


def notify_producers(
    report: PublishReport, producers: Sequence[str], show_dir: Path, settings: Settings
) -> int:
    """Email the producers (and sidecar contacts) what the run did; how many emails went."""
    if not settings.notify:
        return 0
    contacts = sidecar_contacts(report, show_dir)
    return send_notifications(producer_emails(report, producers, contacts, settings), settings)


def _worth_telling(outcome: EpisodeOutcome) -> bool:
    return outcome.status in (*_PUBLISHED, *_REFUSED, *_WAITING) or bool(outcome.warnings)


def _counts(told: Sequence[EpisodeOutcome]) -> tuple[int, int, int]:
    published = sum(1 for o in told if o.status in _PUBLISHED)
    refused = sum(1 for o in told if o.status in _REFUSED)
    return published, refused, len(told) - published - refused


def _producer_subject(told: Sequence[EpisodeOutcome]) -> str:
    counts = list(zip(_counts(told), _SUBJECT_WORDS, strict=True))
    swedish = ", ".join(f"{n} {sv}" for n, (sv, _) in counts if n)
    english = ", ".join(f"{n} {en}" for n, (_, en) in counts if n)
    return f"{_SHOW}: {swedish} / {english}"


_SUBJECT_WORDS = (("publicerade", "published"), ("refuserade", "refused"), ("väntar", "waiting"))


def _producer_body(told: Sequence[EpisodeOutcome], report: PublishReport) -> str:
    """Swedish, then English. A refusal's note is in both languages already: it stands in
    the Swedish part, and the English part points at it."""
    swedish = [line for outcome in told for line in _lines(outcome, _SV)]
    english = [line for outcome in told for line in _lines(outcome, _EN)]
    feed = f"\n\nFlöde / Feed: {report.feed}" if report.feed else ""
    return "\n".join([*swedish, "", "---", "", *english]) + feed + "\n"


def _lines(outcome: EpisodeOutcome, words: Mapping[str, str]) -> list[str]:
    if outcome.status in _PUBLISHED:
        lines = [f"- {words['published']}: {outcome.title or outcome.name}", f"  {outcome.url}"]
        lines += [f"  {outcome.loudness_text}"] if outcome.loudness else []
    elif outcome.status in _REFUSED:
        moved = f" ({words['moved']} {outcome.moved_to})" if outcome.moved_to else ""
        lines = [f"- {words['refused']}: {outcome.name}{moved}"]
        if words is _SV:
            lines += [f"  {line}" for line in outcome.reason.splitlines()]
        else:
            lines.append(f"  {words['see']}")
    else:
        lines = [f"- {words['waiting']}: {outcome.name}"]
        lines += [f"  {outcome.reason}"] if outcome.reason else []
    return lines + [f"  {words['note']}: {warning}" for warning in outcome.warnings]


_SV = {
    "published": "Publicerat",
    "refused": "Refuserat",
    "waiting": "Väntar",
    "note": "Obs",
    "moved": "flyttat till",
    "see": "",
}
_EN = {
    "published": "Published",
    "refused": "Refused",
    "waiting": "Waiting",
    "note": "Note",
    "moved": "moved to",
    "see": "What is wrong and the fix: see the note above (Swedish, then English).",
}


def failure_email(
    settings: Settings, flow_name: str, run_name: str, step: str, error: str, run_url: str
) -> EmailMessage:
    """The one email operators get about a failed or crashed run."""
    lines = [
        f"Körningen {run_name} av {flow_name} misslyckades. / "
        f"The run {run_name} of {flow_name} failed.",
        "",
        f"Steg / Step: {step}",
        f"Fel / Error: {error}",
    ]
    if run_url:
        lines.append(f"Körningen / The run: {run_url}")
    subject = f"[Kraftsamling] {flow_name} misslyckades / failed: {error[:80]}"
    return _message(settings, "", subject, "\n".join(lines) + "\n")


def _message(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    if to:
        message["To"] = to
    message["Subject"] = " ".join(subject.split())
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rsplit("@", 1)[-1].strip(">"))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies back
    message.set_content(body)
    return message


def send_notifications(
    messages: Iterable[EmailMessage], settings: Settings, recipients: Sequence[str] = ()
) -> int:
    """Send each message (to its To, else to `recipients`); returns how many went out. Never
    raises: a notification that cannot be sent is logged, the run goes on as it was."""
    from flows.newsletter.smtp import close_quietly, connect_smtp

    todo = list(messages)
    if not todo or not settings.notify:
        return 0
    sent, client = 0, None
    try:
        client = connect_smtp(settings)
        for message in todo:
            to = [message["To"]] if message["To"] else list(recipients)
            if to:
                client.send_message(message, to_addrs=to)
                sent += 1
    except (KraftsamlingError, OSError) as exc:
        log.warning("Could not send %d notification(s): %s", len(todo) - sent, exc)
    finally:
        close_quietly(client)
    return sent


def notify_failed_run(
    flow_name: str, run_name: str, error: BaseException | str, run_url: str = ""
) -> None:
    """Email the KRAFTSAMLING_NOTIFY_FAILURES addresses that a run failed: the one path for
    both modes (the Prefect hook below, and a command run without a Prefect server,
    `flows.runner`). `error` is the exception that ended the run, or a line saying how it
    ended. Never raises: a notification's error must not hide the run's own."""
    try:
        settings = Settings.load()
        if not settings.notify_failures or not settings.notify:
            return
        step = getattr(error, "step", None) or flow_name
        line = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        message = failure_email(
            settings, flow_name, run_name, step, " ".join(line.split()), run_url
        )
        send_notifications([message], settings, settings.notify_failures)
    except Exception as exc:
        log.warning("Could not notify about the failed run: %s", exc)


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect's `on_failure` / `on_crashed` hook: `notify_failed_run` with the run's error,
    name and page. Never raises (a hook's error would hide the run's own)."""
    try:
        error = state.result(raise_on_failure=False)
        if not isinstance(error, BaseException):
            error = str(state.message or state.name)
        run_url = _run_url(flow_run)
    except Exception as exc:
        log.warning("Could not notify about the failed run: %s", exc)
        return
    notify_failed_run(flow.name, flow_run.name, error, run_url)


def _run_url(flow_run: Any) -> str:
    """The run's page in the Prefect UI, when a UI address is known."""
    from prefect.settings import PREFECT_UI_URL

    base = os.environ.get("PREFECT_UI_URL") or PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run.id}" if base else ""
