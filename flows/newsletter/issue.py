"""One newsletter issue: its month, its keys and web-copy URL, and every file of its folder.

An issue is named by its month, "YYYY-MM"; `month_start` is the one check of that name.
Its folder, `<newsletters_dir>/<YYYY-MM>/` (`issue_dir`), holds:

    intro.md                  the staff's editorial intro, optional (`read_intro`)
    newsletter.mjml, index.html, newsletter.txt
                              the draft, written by `write_draft`
    manifest.json             what the draft holds and its files' SHA-256, written last;
                              "status" is "draft", then "sent" (`mark_sent`)
    review.json               where the review stands, keyed by the draft's content hash
    delivery-progress.json    an interrupted send: hashed recipient ids and counts

In storage the issue has its public web copy (`web_copy_key`, linked from the email as
`web_copy_url`) and, beside it, the private `sent.json` that makes a sent issue immutable on
every machine (`sent_state_key`, `write_sent_state`, `ensure_issue_open`). Both live under
the edition's storage prefix (`newsletters/` for the Swedish edition); an issue folder holds
one edition's issue (`check_edition`).

This module is the only one that reads or writes these files; others call it (the draft's
three names and contents come from `build.plan_files`, and `write_draft` writes them). Files
are written whole or not at all (`flows.core.fsio`); JSON layouts never change, so a folder
written by an older version is read by this one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.core.errors import DeliveryError, InputError, IssueSentError, SettingsError
from flows.core.fsio import atomic_write, atomic_write_json
from flows.core.models import STOCKHOLM
from flows.core.storage import CACHE_PRIVATE, Storage, public_url
from flows.newsletter.edition import SWEDISH_NAME, Edition

if TYPE_CHECKING:
    from flows.core.settings import Settings

INTRO_FILE = "intro.md"
MANIFEST_FILE = "manifest.json"
REVIEW_FILE = "review.json"
PROGRESS_FILE = "delivery-progress.json"

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


# --- the month, keys and URL ----------------------------------------------------------------


def month_start(month: str) -> datetime:
    """Midnight in Stockholm on the first day of `month` ("YYYY-MM"); the one month check.

    >>> month_start("2026-12").isoformat()
    '2026-12-01T00:00:00+01:00'
    """
    match = _MONTH.match(month or "")
    if not match:
        raise SettingsError(
            f"Month {month!r} is not understood: use the form YYYY-MM, e.g. --month 2026-12."
        )
    return datetime(int(match[1]), int(match[2]), 1, tzinfo=STOCKHOLM)


def issue_dir(settings: Settings, month: str) -> Path:
    """The folder of one issue."""
    return Path(settings.newsletters_dir) / month


def web_copy_key(month: str, edition: Edition) -> str:
    """The storage key of an issue's public web copy, under the edition's prefix.

    >>> from flows.newsletter.edition import SWEDISH
    >>> web_copy_key("2026-12", SWEDISH)
    'newsletters/2026-12/index.html'
    """
    month_start(month)
    return f"{edition.storage_prefix}/{month}/index.html"


def preview_key(month: str, draft_sha256: str, edition: Edition) -> str:
    """The storage key of a draft's preview: public but unlisted (no archive entry, no link
    from any page) and unguessable without the draft (16 hex of its content hash).

    >>> from flows.newsletter.edition import SWEDISH
    >>> preview_key("2027-01", "0123456789abcdef" * 4, SWEDISH)
    'newsletters/previews/2027-01-0123456789abcdef/index.html'
    """
    month_start(month)
    return f"{edition.storage_prefix}/previews/{month}-{draft_sha256[:16]}/index.html"


NOINDEX = '<meta name="robots" content="noindex, nofollow">'


def without_indexing(html: str) -> str:
    """The HTML with a robots `noindex` meta tag, so search engines leave the page out.

    >>> without_indexing("<html><head><title>x</title></head></html>")
    '<html><head><meta name="robots" content="noindex, nofollow"><title>x</title></head></html>'
    """
    head = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    at = head.end() if head else 0
    return html[:at] + NOINDEX + html[at:]


def web_copy_url(settings: Settings, month: str, edition: Edition) -> str:
    """The public URL of an issue's web copy: the email's "Visa i webbläsaren" link and
    where `publish_web_copy` uploads it.

    >>> from flows.core.settings import Settings
    >>> from flows.newsletter.edition import SWEDISH
    >>> web_copy_url(Settings.load(), "2026-12", SWEDISH)
    'https://kraftsamling.example/newsletters/2026-12/index.html'
    """
    return public_url(settings.public_url, web_copy_key(month, edition))


def sent_state_key(month: str, edition: Edition) -> str:
    """The storage key that records an issue as sent (private, beside its web copy)."""
    month_start(month)
    return f"{edition.storage_prefix}/{month}/sent.json"


def manifest_edition(manifest: dict[str, Any]) -> str:
    """The name of the edition a manifest belongs to; the Swedish edition's manifests carry
    no name (their layout predates editions and never changes)."""
    return str(manifest.get("edition") or SWEDISH_NAME)


def check_edition(manifest: dict[str, Any], edition: Edition, where: Path) -> None:
    """Refuse (SettingsError) an issue folder that holds another edition's issue: each
    edition needs its own folders, or one would overwrite or send the other's draft."""
    found = manifest_edition(manifest)
    if found != edition.name:
        raise SettingsError(
            f"{where} belongs to the {found!r} edition of the newsletter, not to the "
            f"{edition.name!r} edition selected now. Give each edition its own issue folders: "
            "set KRAFTSAMLING_NEWSLETTERS_DIR (or --out) for this edition, or the `edition` "
            "setting (KRAFTSAMLING_EDITION) to the edition of this folder."
        )


# --- the draft: manifest, intro, the one writer ------------------------------------------


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """A manifest as it is written: sorted keys, so the same build gives the same bytes."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode(
        "utf-8"
    )


def _json_object(path: Path, fix: str) -> dict[str, Any] | None:
    """A JSON object from `path`, None if there is none; broken JSON is an InputError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}). {fix}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object; rebuild that issue with --force.")
    return data


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """An issue's manifest as a dict, None if there is none; unreadable JSON is an InputError."""
    return _json_object(
        Path(folder) / MANIFEST_FILE,
        "Restore it from the repository or rebuild that issue with --force.",
    )


def earlier_manifests(newsletters_dir: Path, month: str) -> list[dict[str, Any]]:
    """Manifests of the issues before `month`, oldest first."""
    found: list[dict[str, Any]] = []
    root = Path(newsletters_dir)
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and len(folder.name) == 7 and folder.name < month:
            try:
                month_start(folder.name)
            except SettingsError:
                continue  # not an issue folder
            manifest = read_manifest(folder)
            if manifest is not None:
                manifest.setdefault("month", folder.name)
                found.append(manifest)
    return found


def read_intro(folder: Path) -> str | None:
    """The staff's `intro.md` for the issue, if they wrote one."""
    path = Path(folder) / INTRO_FILE
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8.") from exc


def write_draft(folder: Path, planned: dict[str, bytes]) -> None:
    """The one writer of a draft: each planned file atomically, the manifest last (it vouches
    for the others)."""
    folder.mkdir(parents=True, exist_ok=True)
    order = [name for name in planned if name != MANIFEST_FILE] + [MANIFEST_FILE]
    for name in order:
        target = folder / name
        try:
            atomic_write(target, planned[name])
        except OSError as exc:
            raise InputError(f"Could not write {target}: {exc}. Check the folder.") from exc


# --- the issue as it is sent -----------------------------------------------------------------


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


def read_issue(folder: Path) -> Issue:
    """Read `index.html`, `newsletter.txt` and `manifest.json`, checking the files are the
    ones the manifest describes (the reviewed draft is the one that goes out)."""
    folder = Path(folder)
    render_hint = f"render the draft first (python -m flows newsletter --month {folder.name})"
    paths = {name: folder / name for name in ("index.html", "newsletter.txt", MANIFEST_FILE)}
    for path in paths.values():
        if not path.is_file():
            raise DeliveryError(f"{path} is missing, so the issue cannot be sent; {render_hint}.")
    manifest_path = paths[MANIFEST_FILE]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DeliveryError(
            f"{manifest_path} is not valid JSON (line {exc.lineno}: {exc.msg}); {render_hint}."
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("month"), str):
        raise DeliveryError(f'{manifest_path} has no "month"; {render_hint}.')
    month = manifest["month"]
    try:
        month_start(month)
    except SettingsError:
        raise DeliveryError(
            f"{manifest_path} names the month {month!r}, not YYYY-MM; {render_hint}."
        ) from None
    contents: dict[str, bytes] = {}
    for name in ("index.html", "newsletter.txt"):
        contents[name] = paths[name].read_bytes()
        expected = _expected_sha(manifest.get("files"), name)
        if expected is not None and hashlib.sha256(contents[name]).hexdigest() != expected:
            raise DeliveryError(
                f"{paths[name]} changed after the draft was rendered (its SHA-256 differs from "
                f"{manifest_path}), so it is not the draft that was reviewed. "
                f"Render the draft again, review it, then send."
            )
    return Issue(
        folder=folder,
        month=month,
        html=contents["index.html"].decode("utf-8"),
        text=contents["newsletter.txt"].decode("utf-8"),
        manifest=manifest,
    )


def mark_sent(
    issue: Issue, *, sent_at: str, message_id_prefix: str, counts: dict[str, int]
) -> None:
    """Record in the manifest that every batch of the issue was sent."""
    manifest = dict(issue.manifest)
    manifest["status"] = "sent"
    manifest["delivery"] = {
        "sent_at": sent_at,
        "message_id_prefix": message_id_prefix,
        "counts": counts,
    }
    atomic_write(issue.folder / MANIFEST_FILE, manifest_bytes(manifest))


# --- a sent issue is immutable ---------------------------------------------------------------


def sent_error(issue: Issue) -> IssueSentError:
    """The refusal to send an issue whose manifest says it was sent."""
    delivery = issue.manifest.get("delivery") or {}
    counts = delivery.get("counts") or {}
    return IssueSentError(
        f"Issue {issue.month} was already sent (at {delivery.get('sent_at', 'an unknown time')}"
        f", to {counts.get('sent', '?')} recipients, per {issue.folder / MANIFEST_FILE}); a sent "
        "issue is immutable and is never sent twice, so nothing was sent. To correct it, write "
        "it in the next issue; to look at it again, open its web copy or its files."
    )


def _immutable_error(month: str, where: str, sent_at: str) -> IssueSentError:
    return IssueSentError(
        f"Issue {month} was sent at {sent_at} (recorded in {where}). A sent issue is "
        "immutable: its files, web copy and archive entry stay as subscribers got them, so "
        "nothing was rebuilt, published or sent. To correct something, write it in the next "
        "issue; to look at this one again, open its web copy or its files."
    )


def write_sent_state(
    storage: Storage,
    month: str,
    sent_at: str | None,
    content_sha256: str | None,
    edition: Edition,
) -> None:
    """Record in storage that the edition's issue `month` was sent."""
    state = {
        "month": month,
        "status": "sent",
        "sent_at": sent_at,
        "content_sha256": content_sha256,
    }
    storage.put_bytes(
        sent_state_key(month, edition),
        (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
    )


def record_earlier_sent_states(
    storage: Storage, newsletters_dir: Path, month: str, edition: Edition
) -> None:
    """Write the storage state of the edition's issues before `month` that were sent before
    the state was kept in storage (their local manifest says so), so every machine refuses
    them. Another edition's issues are left alone (the build refuses their folder)."""
    for manifest in earlier_manifests(newsletters_dir, month):
        if manifest.get("status") != "sent" or manifest_edition(manifest) != edition.name:
            continue
        earlier = str(manifest["month"])
        if storage.head(sent_state_key(earlier, edition)) is None:
            sent_at = (manifest.get("delivery") or {}).get("sent_at")
            write_sent_state(storage, earlier, sent_at, None, edition)


def ensure_issue_open(storage: Storage, folder: Path, month: str, edition: Edition) -> None:
    """Raise IssueSentError when the edition's issue `month` was sent, per storage or the
    local manifest (SettingsError when the folder holds another edition's issue).

    Storage speaks for every machine; an issue sent before the state was kept in storage is
    recognised from its local manifest, and its state is written to storage now.
    """
    key = sent_state_key(month, edition)
    found = storage.get_bytes(key)
    if found is not None:
        try:
            sent_at = json.loads(found[0]).get("sent_at") or "an unknown time"
        except (json.JSONDecodeError, AttributeError):
            sent_at = "an unknown time"
        raise _immutable_error(month, f"{storage.describe()}/{key}", sent_at)
    manifest = Path(folder) / MANIFEST_FILE
    if not manifest.is_file():
        return
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # not a sent issue's manifest; the build reports the broken file itself
    if isinstance(data, dict):
        check_edition(data, edition, manifest)
    if isinstance(data, dict) and data.get("status") == "sent":
        sent_at = (data.get("delivery") or {}).get("sent_at")
        try:
            content_sha256: str | None = read_issue(Path(folder)).content_sha256
        except DeliveryError:
            content_sha256 = None  # files edited after the send: the record still holds
        write_sent_state(storage, month, sent_at, content_sha256, edition)
        raise _immutable_error(month, str(manifest), sent_at or "an unknown time")


def ensure_not_sent(folder: Path) -> None:
    """Raise IssueSentError when the issue's manifest says it was sent (e.g. before asking
    a person to approve it)."""
    if (Path(folder) / MANIFEST_FILE).is_file():
        issue = read_issue(Path(folder))
        if issue.is_sent:
            raise sent_error(issue)


# --- the review --------------------------------------------------------------------------


def read_review(folder: Path) -> dict[str, Any] | None:
    """Where the review of the issue stands (`review.json`), None before the first review."""
    path = Path(folder) / REVIEW_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_review(folder: Path, review: dict[str, Any]) -> None:
    """Record where the review stands; it holds no addresses."""
    data = json.dumps(review, indent=2, sort_keys=True) + "\n"  # ASCII: comments escaped
    atomic_write(Path(folder) / REVIEW_FILE, data.encode("utf-8"))


def awaiting_review(folder: Path) -> bool:
    """True when this draft was handed to reviewers and is unchanged since (a resumed run)."""
    review = read_review(folder)
    if not review or review.get("status") != "awaiting":
        return False
    try:
        return read_issue(Path(folder)).content_sha256 == review.get("draft_sha256")
    except DeliveryError:
        return False


# --- the progress of a send ------------------------------------------------------------------


@dataclass
class Progress:
    """Who already got an issue (hashed ids, never addresses), so a crash resumes the send."""

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


def read_progress(issue: Issue, prefix: str, now: datetime) -> Progress:
    """The progress of an interrupted send of this issue, else a fresh one."""
    path = issue.folder / PROGRESS_FILE
    fresh = Progress(issue.month, prefix, issue.content_sha256, now.isoformat(timespec="seconds"))
    if not path.is_file():
        return fresh
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        progress = Progress(
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


def write_progress(folder: Path, progress: Progress, now: datetime) -> None:
    """Record the progress of a send (after every batch, also when one failed)."""
    atomic_write_json(Path(folder) / PROGRESS_FILE, progress.to_json(now))


def recipients_sent(folder: Path) -> int:
    """How many recipients an unfinished send already reached (0 when none started)."""
    progress = _json_object(
        Path(folder) / PROGRESS_FILE,
        "Restore it from a backup; it records who already got the issue.",
    )
    sent = progress.get("sent") if progress else None
    return len(sent) if sent else 0
