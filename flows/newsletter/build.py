"""Build the month's newsletter draft: read -> select -> render -> write.

`build_issue` is the plain function that does the work (testable without Prefect):

1. read what earlier issues did (their `manifest.json`) and the issue's `intro.md`;
2. read posts (those before the window start only counted) and events through the injected
   readers (`flows.newsletter.sources` by default);
3. select (`flows.newsletter.select`), render (`flows.newsletter.render`) and plan every
   file in memory;
4. one writer writes the planned files, the manifest last.

Same inputs and the same `now` give byte-identical files: the manifest's `generated_at`
is `now`, JSON keys are sorted and nothing reads the clock. An issue whose manifest says
`"status": "sent"` is never overwritten (IssueSentError), with or without --force: a sent
issue is immutable (its state is also kept in storage, see `delivery.ensure_issue_open`).

`newsletter` is the thin Prefect flow around it: fetch tasks with retries, a render task,
a Markdown artifact. It is the only place that reads the clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flows.core.errors import InputError, IssueSentError, SettingsError
from flows.core.models import STOCKHOLM, Episode, Event, Post, SourceStatus
from flows.core.settings import Settings
from flows.newsletter import sources
from flows.newsletter.render import RenderedIssue, render_issue
from flows.newsletter.select import SECTIONS, Selection, month_start, select_issue, window_start

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FILES = ("newsletter.mjml", "index.html", "newsletter.txt")
SECTION_NAMES = {
    "news": "Det här har hänt",
    "funding": "Utlysningar",
    "events": "På gång",
    "listen": "Lyssna och titta",
}

ReadPosts = Callable[..., tuple[list[Post], list[SourceStatus]]]
ReadEvents = Callable[..., tuple[list[Event], list[SourceStatus]]]
Render = Callable[..., RenderedIssue]


@dataclass(frozen=True)
class IssueResult:
    """What a build did: where the draft is, what it holds, or why nothing was written."""

    month: str
    issue_dir: Path
    written: bool
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    left_out: tuple[dict[str, str], ...] = ()
    sources: tuple[SourceStatus, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    selection: Selection | None = None
    release: Any = None  # release.ReleaseResult when the run went on to review/send

    @property
    def html_path(self) -> Path:
        return self.issue_dir / "index.html"

    def summary(self) -> str:
        """Where the draft is, one line per section and what was left out (for the CLI)."""
        if not self.written:
            return self.message
        lines = [f"Draft of {self.month}: {self.html_path}"]
        if self.release is not None:
            lines.append(self.release.summary())
        for name in SECTIONS:
            lines.append(f"  {SECTION_NAMES[name]}: {self.counts.get(name, 0)}")
        lines.append(f"  Left out (over the limit): {len(self.left_out)}")
        failed = [s for s in self.sources if not s.ok]
        for status in failed:
            lines.append(f"  Source failed: {_display(status.source)}: {status.message}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The issue as a short Markdown report (the Prefect artifact)."""
        if not self.written:
            return f"# Newsletter {self.month}\n\n{self.message}\n"
        rows = "\n".join(
            f"| {SECTION_NAMES[name]} | {self.counts.get(name, 0)} |" for name in SECTIONS
        )
        out = [
            f"# Newsletter {self.month} (draft)",
            "",
            f"HTML: `{self.html_path}`",
            "",
            "| Section | Items |",
            "| --- | ---: |",
            rows,
            "",
        ]
        if self.left_out:
            out.append(f"## Left out ({len(self.left_out)})")
            out.append("")
            out.extend(
                f"- {item['section']}: [{item['title']}]({item['link']})" for item in self.left_out
            )
            out.append("")
        failed = [s for s in self.sources if not s.ok]
        if failed:
            out.append("## Sources that failed")
            out.append("")
            out.extend(f"- `{_display(s.source)}`: {s.message}" for s in failed)
            out.append("")
        return "\n".join(out)


# --- reading what is on disk ----------------------------------------------------------------


def issue_dir(settings: Settings, month: str) -> Path:
    """The folder of one issue."""
    return Path(settings.newsletters_dir) / month


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A manifest as a dict, None if there is none; unreadable JSON is an InputError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}). Restore it from the "
            "repository or rebuild that issue with --force."
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object; rebuild that issue with --force.")
    return data


def earlier_manifests(newsletters_dir: Path, month: str) -> list[dict[str, Any]]:
    """Manifests of the issues before `month`, oldest first."""
    found = []
    root = Path(newsletters_dir)
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and len(folder.name) == 7 and folder.name < month:
            try:
                month_start(folder.name)
            except SettingsError:
                continue  # not an issue folder
            manifest = read_manifest(folder / MANIFEST)
            if manifest is not None:
                manifest.setdefault("month", folder.name)
                found.append(manifest)
    return found


def read_intro(folder: Path) -> str | None:
    """The staff's `intro.md` for the issue, if they wrote one."""
    path = folder / "intro.md"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8.") from exc


# --- planning -------------------------------------------------------------------------------


def _display(source: str) -> str:
    """A source as the manifest shows it: paths under the working folder relative, so the
    same build from the repository's root gives the same manifest on any machine."""
    return source.replace(str(Path.cwd()) + os.sep, "")


def require_sources(settings: Settings) -> tuple[list[str], list[str]]:
    """The configured posts and events sources; never the demo's by default."""
    missing = [name for name in ("posts", "events") if getattr(settings, name) is None]
    if missing:
        raise SettingsError(
            f"No {' and no '.join(missing)} sources are configured, so no issue was built. "
            "Set them with --posts/--events, the KRAFTSAMLING_POSTS/KRAFTSAMLING_EVENTS "
            "environment variables (URLs or paths separated by spaces; KRAFTSAMLING_EVENTS='[]' "
            "for none) or the deployment's `posts`/`events` parameters in prefect.yaml. "
            "The demo content is used by `python -m flows demo` alone."
        )
    return list(settings.posts or []), list(settings.events or [])


def _status_record(status: SourceStatus, kind: str) -> dict[str, Any]:
    return {
        "source": _display(status.source),
        "kind": kind,
        "ok": status.ok,
        "items": status.items,
        "skipped": status.skipped,
        "message": _display(status.message),
        "warnings": [_display(w) for w in status.warnings],
    }


def _left_out_records(selection: Selection) -> list[dict[str, str]]:
    return [
        {"id": item.id, "section": item.section, "title": item.title, "link": item.link}
        for item in selection.left_out
    ]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_files(
    selection: Selection,
    rendered: RenderedIssue,
    statuses: Sequence[tuple[str, SourceStatus]],
    *,
    now: datetime,
    intro_used: bool,
) -> dict[str, bytes]:
    """Every file of the issue as bytes, the manifest included (nothing is written here)."""
    files = {
        "newsletter.mjml": rendered.mjml,
        "index.html": rendered.html,
        "newsletter.txt": rendered.text,
    }
    manifest = {
        "month": selection.month,
        "status": "draft",
        "generated_at": now.astimezone(STOCKHOLM).isoformat(),
        "window_start": selection.window_start.isoformat(),
        "cutoff": selection.cutoff.isoformat(),
        "events_until": selection.events_until.isoformat(),
        "intro": "intro.md" if intro_used else "default",
        "sources": [_status_record(status, kind) for kind, status in statuses],
        "sections": {name: [item.id for item in selection.section(name)] for name in SECTIONS},
        "counts": selection.counts(),
        "left_out": _left_out_records(selection),
        "closed_calls": list(selection.closed_calls),
        "files": {name: _sha256(text) for name, text in files.items()},
        "html_bytes": len(rendered.html.encode("utf-8")),
    }
    planned = {name: text.encode("utf-8") for name, text in files.items()}
    planned[MANIFEST] = (
        json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    ).encode("utf-8")
    return planned


# --- writing --------------------------------------------------------------------------------


def write_files(folder: Path, planned: dict[str, bytes]) -> None:
    """The one writer: each planned file atomically, the manifest last (it vouches for them)."""
    folder.mkdir(parents=True, exist_ok=True)
    order = [name for name in planned if name != MANIFEST] + [MANIFEST]
    for name in order:
        target = folder / name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(planned[name])
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise InputError(f"Could not write {target}: {exc}. Check the folder.") from exc


# --- the build ------------------------------------------------------------------------------


def build_issue(
    settings: Settings,
    month: str,
    now: datetime,
    *,
    force: bool = False,
    read_posts: ReadPosts = sources.read_posts,
    read_events: ReadEvents = sources.read_events,
    episodes: list[Episode] | None = None,
    render: Render = render_issue,
) -> IssueResult:
    """Build the draft of `month` into `settings.newsletters_dir/<month>/`.

    Raises SettingsError for a bad month or unconfigured sources, IssueSentError when the
    issue was already sent (`force` never overrides that). With nothing new since the last
    issue it writes nothing unless `force`.
    """
    month_start(month)
    post_sources, event_sources = require_sources(settings)
    if now.tzinfo is None:
        raise SettingsError(f"'now' must be timezone-aware, got {now.isoformat()}.")
    now = now.astimezone(STOCKHOLM)
    folder = issue_dir(settings, month)
    existing = read_manifest(folder / MANIFEST)
    if existing is not None and existing.get("status") == "sent":
        raise IssueSentError(
            f"Issue {month} in {folder} was already sent, so it is not rebuilt: a sent issue "
            "is immutable, --force included. To correct something, write it in the next issue."
        )
    progress = read_manifest(folder / "delivery-progress.json")
    if progress is not None and progress.get("sent"):
        raise IssueSentError(
            f"Issue {month} in {folder} is being sent ({len(progress['sent'])} recipients "
            "already have it), so it is not rebuilt: they must all get the same issue. Finish "
            f"the send with `python -m flows newsletter --month {month} --send --to ...`."
        )
    previous = earlier_manifests(Path(settings.newsletters_dir), month)
    intro_md = read_intro(folder)

    # Posts before the window cannot be selected: the reader counts them without the costly
    # per-entry work (sanitising, images, deadlines). select_issue applies the same bound.
    since = window_start(month, previous, settings.first_issue_days)
    posts, post_status = read_posts(post_sources, settings, since=since)
    until = now + timedelta(days=settings.events_days)
    events, event_status = read_events(event_sources, settings, now, until)
    statuses = [("posts", s) for s in post_status] + [("events", s) for s in event_status]

    selection = select_issue(
        posts,
        events,
        month=month,
        now=now,
        previous=previous,
        settings=settings,
        episodes=episodes,
    )
    result_args: dict[str, Any] = {
        "month": month,
        "issue_dir": folder,
        "counts": selection.counts(),
        "left_out": tuple(_left_out_records(selection)),
        "sources": tuple(s for _, s in statuses),
        "selection": selection,
    }
    if selection.is_empty and not force:
        since = selection.window_start.strftime("%Y-%m-%d %H:%M")
        return IssueResult(
            written=False,
            message=(
                f"Nothing new for {month} since {since} (Europe/Stockholm): no draft written. "
                "Pass --force to build an issue anyway."
            ),
            **result_args,
        )

    rendered = render(selection, settings, intro_md=intro_md)
    planned = plan_files(selection, rendered, statuses, now=now, intro_used=intro_md is not None)
    write_files(folder, planned)
    return IssueResult(
        written=True,
        message=f"Draft of {month} written to {folder}.",
        files={name: hashlib.sha256(data).hexdigest() for name, data in planned.items()},
        **result_args,
    )
