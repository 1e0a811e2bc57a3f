"""Build the month's newsletter draft: read -> select -> render -> write.

`build_issue` is the plain function that does the work (testable without Prefect):

1. read what earlier issues did (their `manifest.json`) and the issue's `intro.md`
   (`flows.newsletter.issue`, the owner of the issue folder);
2. read posts (those before the window start only counted) and events through the injected
   readers (`posts.read_posts` and `events.read_events` by default);
3. select (`flows.newsletter.select`), render (`flows.newsletter.render`) and plan every
   file in memory;
4. one writer (`issue.write_draft`) writes the planned files, the manifest last.

The edition (`flows.newsletter.edition`; by default the one the settings select) decides the
words, sections and templates; an issue folder holds one edition's issues (`check_edition`).
Same inputs and the same `now` give byte-identical files: the manifest's `generated_at`
is `now`, JSON keys are sorted and nothing reads the clock. An issue whose manifest says
`"status": "sent"` is never overwritten (IssueSentError), with or without --force: a sent
issue is immutable (its state is also kept in storage, see `issue.ensure_issue_open`).
The Prefect flow around it (fetch tasks with retries, a render task, an artifact) is in `flow`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.core.errors import IssueSentError, SettingsError, SourceError
from flows.core.models import STOCKHOLM, Episode, Event, Post, SourceStatus
from flows.core.settings import Settings
from flows.newsletter.edition import SWEDISH_NAME, Edition, edition_for
from flows.newsletter.events import read_events
from flows.newsletter.issue import (
    INTRO_FILE,
    MANIFEST_FILE,
    check_edition,
    earlier_manifests,
    issue_dir,
    manifest_bytes,
    month_start,
    read_intro,
    read_manifest,
    recipients_sent,
    write_draft,
)
from flows.newsletter.posts import read_posts
from flows.newsletter.render import RenderedIssue, render_issue
from flows.newsletter.select import Selection, events_window, select_issue, window_start

log = logging.getLogger(__name__)

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
    edition: Edition  # its section names are the report's
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
        for name, title in self.edition.sections.items():
            lines.append(f"  {title}: {self.counts.get(name, 0)}")
        lines.append(f"  Left out (over the limit): {len(self.left_out)}")
        failed = [s for s in self.sources if not s.ok]
        for status in failed:
            lines.append(f"  Source failed: {_failure(status)}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The issue as a short Markdown report (the Prefect artifact)."""
        if not self.written:
            return f"# Newsletter {self.month}\n\n{self.message}\n"
        rows = "\n".join(
            f"| {title} | {self.counts.get(name, 0)} |"
            for name, title in self.edition.sections.items()
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
            out.extend(f"- `{_display(s.source)}`: {_failure(s, named=False)}" for s in failed)
            out.append("")
        return "\n".join(out)


# --- planning -------------------------------------------------------------------------------


def _display(source: str) -> str:
    """A source as the manifest shows it: paths under the working folder relative, so the
    same build from the repository's root gives the same manifest on any machine."""
    return source.replace(str(Path.cwd()) + os.sep, "")


def _failure(status: SourceStatus, *, named: bool = True) -> str:
    """Why a source failed, naming it once: the readers' messages start with "Source <it>:"
    ("Source failed: x.xml: Source x.xml: file not found" said it twice)."""
    message = status.message.removeprefix(f"Source {status.source}: ")
    return f"{_display(status.source)}: {message}" if named else message


def require_sources(settings: Settings) -> tuple[list[str], list[str]]:
    """The configured posts and events sources; never the demo's by default."""
    missing = [name for name in ("posts", "events") if getattr(settings, name) is None]
    if settings.posts == []:
        missing.insert(0, "posts")  # an issue needs posts; only events may be none on purpose
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
        # Links and images changed on the way to the email (upgraded to https, kept as http...).
        **({"links": list(status.links)} if status.links else {}),
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
    edition = selection.edition
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
        "intro": INTRO_FILE if intro_used else "default",
        "sources": [_status_record(status, kind) for kind, status in statuses],
        "sections": {name: [item.id for item in selection.section(name)] for name in edition.order},
        "counts": selection.counts(),
        "left_out": _left_out_records(selection),
        "closed_calls": list(selection.closed_calls),
        "files": {name: _sha256(text) for name, text in files.items()},
        "html_bytes": len(rendered.html.encode("utf-8")),
    }
    if edition.name != SWEDISH_NAME:
        # Names its edition, so another edition's build never takes this folder for its own;
        # the Swedish edition's manifests keep the layout they always had.
        manifest["edition"] = edition.name
    planned = {name: text.encode("utf-8") for name, text in files.items()}
    planned[MANIFEST_FILE] = manifest_bytes(manifest)
    return planned


# --- the build ------------------------------------------------------------------------------


def build_issue(
    settings: Settings,
    month: str,
    now: datetime,
    *,
    force: bool = False,
    read_posts: ReadPosts = read_posts,
    read_events: ReadEvents = read_events,
    episodes: list[Episode] | None = None,
    render: Render = render_issue,
    edition: Edition | None = None,
) -> IssueResult:
    """Build the draft of `month` of `edition` (None: the one the settings select) into
    `settings.newsletters_dir/<month>/`.

    Raises SettingsError for a bad month, unconfigured sources or a folder of another
    edition, IssueSentError when the issue was already sent (`force` never overrides that).
    With nothing new since the last issue it writes nothing unless `force`.
    """
    edition = edition or edition_for(settings)
    month_start(month)
    post_sources, event_sources = require_sources(settings)
    if now.tzinfo is None:
        raise SettingsError(f"'now' must be timezone-aware, got {now.isoformat()}.")
    now = now.astimezone(STOCKHOLM)
    folder = issue_dir(settings, month)
    _refuse_rebuild_of_sent(folder, month, edition)
    previous = earlier_manifests(Path(settings.newsletters_dir), month)
    for manifest in previous:
        check_edition(manifest, edition, Path(settings.newsletters_dir) / manifest["month"])
    intro_md = read_intro(folder)

    # Posts before the window cannot be selected: the reader counts them without the costly
    # per-entry work (sanitising, images, deadlines). select_issue applies the same bound.
    since = window_start(month, previous, settings.first_issue_days)
    posts, post_status = read_posts(post_sources, settings, since=since)
    _require_a_posts_source(month, post_status)
    events_from, until = events_window(month, now, settings.events_days)
    events, event_status = read_events(event_sources, settings, events_from, until)
    statuses = [("posts", s) for s in post_status] + [("events", s) for s in event_status]

    selection = select_issue(
        posts,
        events,
        month=month,
        now=now,
        previous=previous,
        settings=settings,
        episodes=episodes,
        edition=edition,
    )
    result_args: dict[str, Any] = {
        "month": month,
        "issue_dir": folder,
        "edition": edition,
        "counts": selection.counts(),
        "left_out": tuple(_left_out_records(selection)),
        "sources": tuple(s for _, s in statuses),
        "selection": selection,
    }
    if selection.is_empty and not force:
        opened = selection.window_start.strftime("%Y-%m-%d %H:%M")
        return IssueResult(
            written=False,
            message=(
                f"Nothing new for {month} since {opened} (Europe/Stockholm): no draft written. "
                "Pass --force to build an issue anyway."
            ),
            **result_args,
        )

    rendered = render(selection, settings, intro_md=intro_md)
    planned = plan_files(selection, rendered, statuses, now=now, intro_used=intro_md is not None)
    write_draft(folder, planned)
    return IssueResult(
        written=True,
        message=f"Draft of {month} written to {folder}.",
        files={name: hashlib.sha256(data).hexdigest() for name, data in planned.items()},
        **result_args,
    )


def _require_a_posts_source(month: str, statuses: Sequence[SourceStatus]) -> None:
    """SourceError when no posts source could be read: an issue without its news is not an
    issue, and a draft would hide that every source broke (`--force` included)."""
    if not statuses or any(status.ok for status in statuses):
        return
    lines = "\n".join(f"  - {_failure(status)}" for status in statuses)
    count = len(statuses)
    which = "the posts source" if count == 1 else f"any of the {count} posts sources"
    raise SourceError(
        f"Could not read {which}, so no draft of {month} was written:\n{lines}\n"
        "Fix the source (the URL, or the feed itself) and build again; a source that is "
        "down now can be tried again later."
    )


def _refuse_rebuild_of_sent(folder: Path, month: str, edition: Edition) -> None:
    """IssueSentError when the issue was sent, or its send has begun; SettingsError when the
    folder holds another edition's issue."""
    existing = read_manifest(folder)
    if existing is not None:
        check_edition(existing, edition, folder)
    if existing is not None and existing.get("status") == "sent":
        raise IssueSentError(
            f"Issue {month} in {folder} was already sent, so it is not rebuilt: a sent issue "
            "is immutable, --force included. To correct something, write it in the next issue."
        )
    already_sent = recipients_sent(folder)
    if already_sent:
        raise IssueSentError(
            f"Issue {month} in {folder} is being sent ({already_sent} recipients "
            "already have it), so it is not rebuilt: they must all get the same issue. Finish "
            f"the send with `python -m flows newsletter --month {month} --send --to ...`."
        )
