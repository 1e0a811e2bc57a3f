"""The newsletter job as a plain function: `newsletter` builds the month's draft and, with
`send`, takes it through review and sends it.

`flows.newsletter.flow` wraps it in the `newsletter` Prefect flow and passes `Steps` made of
Prefect tasks (retries, states), artifacts for the draft and the review, and the run's
logger; a command run without a Prefect server (`flows.runner`) calls it with the plain
`Steps()`. The two modes run the same code in the same order and write the same files.
Waiting for a person's decision (`send` without `approve`) needs a Prefect flow run (the
gate is `approval.await_decision`); everything else runs anywhere. Nothing here imports
Prefect: the release (which does, for the gate's typed input) is imported only to send.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.core.backends import open_storage
from flows.core.clock import system_clock
from flows.core.errors import DeliveryError, InputError, KraftsamlingError
from flows.core.models import STOCKHOLM, Episode
from flows.core.settings import Settings
from flows.newsletter import delivery
from flows.newsletter.build import (
    IssueResult,
    ReadEvents,
    ReadPosts,
    Render,
    build_issue,
    require_sources,
)
from flows.newsletter.edition import Edition, edition_for
from flows.newsletter.events import read_events
from flows.newsletter.issue import (
    INTRO_FILE,
    MANIFEST_FILE,
    awaiting_review,
    ensure_issue_open,
    issue_dir,
    month_start,
    read_issue,
    record_earlier_sent_states,
)
from flows.newsletter.posts import read_posts
from flows.newsletter.render import render_issue

if TYPE_CHECKING:
    from flows.newsletter.release import PublishStep, SendStep, ShowReview, TestCopyStep

log = logging.getLogger(__name__)


def read_catalog(settings: Settings) -> list[Episode]:
    """The podcast catalog's episodes (empty when there is no catalog yet)."""
    from flows.podcast.catalog import load_catalog

    return list(load_catalog(open_storage(settings)).episodes)


def publish_to_storage(
    folder: Path, month: str, settings: Settings, now: datetime, *, edition: Edition
) -> str:
    """`release.publish_to_storage`, imported when an issue is sent."""
    from flows.newsletter.release import publish_to_storage as publish

    return publish(folder, month, settings, now, edition=edition)


def log_review(edition: Edition) -> ShowReview:
    """Shows the review by logging it (the flow shows it as an artifact instead)."""
    from flows.newsletter.release import log_review as show

    return show


def _no_artifact(result: IssueResult, edition: Edition, month: str) -> None:
    """A plain run has no artifacts: the command prints the result's summary."""


@dataclass(frozen=True)
class Steps:
    """What the job's steps are: by default the plain functions; the flow passes the same
    functions as Prefect tasks, artifacts for `show_draft` and `show_review`, and the run's
    logger."""

    read_posts: ReadPosts = read_posts
    read_events: ReadEvents = read_events
    render: Render = render_issue
    read_catalog: Callable[[Settings], list[Episode]] = read_catalog
    send_test_copy: TestCopyStep = delivery.send_test_copy
    publish_web_copy: PublishStep = publish_to_storage
    send_issue: SendStep = delivery.send_issue
    # (edition) -> how the review is shown; (draft, edition, month) -> how a new draft is
    show_review: Callable[[Edition], ShowReview] = log_review
    show_draft: Callable[[IssueResult, Edition, str], None] = _no_artifact
    logger: Callable[[], logging.Logger | logging.LoggerAdapter[Any]] = lambda: log


def read_catalog_episodes(settings: Settings, steps: Steps) -> list[Episode] | None:
    """The catalog's episodes for the listen section; None when it cannot be read."""
    try:
        return steps.read_catalog(settings)
    except KraftsamlingError as exc:  # the issue is still built, from the site's posts
        steps.logger().warning("Podcast catalog not used: %s", exc)
        return None


def existing_draft(
    folder: Path, month: str, edition: Edition, *, reason: str
) -> IssueResult | None:
    """The draft already in `folder` as an IssueResult, None when there is none to reuse."""
    try:
        issue = read_issue(folder)
    except DeliveryError:
        return None  # no draft, or one edited by hand: build a new one
    if issue.month != month or issue.manifest.get("status") != "draft":
        return None
    intro = folder / INTRO_FILE
    if intro.exists() and intro.stat().st_mtime_ns > (folder / MANIFEST_FILE).stat().st_mtime_ns:
        return None  # staff edited the intro after the build (e.g. after a rejection)
    return IssueResult(
        month=month,
        issue_dir=folder,
        written=True,
        message=f"Draft of {month} {reason} from {folder}.",
        edition=edition,
        counts=dict(issue.manifest.get("counts", {})),
        files=dict(issue.manifest.get("files", {})),
    )


def _draft(
    settings: Settings,
    month: str,
    now: datetime,
    edition: Edition,
    steps: Steps,
    *,
    send: bool,
    force: bool,
) -> IssueResult:
    """The draft a run works on: for a send, the one already built when there is one (and
    not `force`); else a new build, shown through `steps.show_draft`."""
    folder = issue_dir(settings, month)
    result = None
    if send and awaiting_review(folder):
        # A run resumed after suspension starts from the top: reuse the draft under review
        # instead of rendering a different one.
        result = existing_draft(folder, month, edition, reason="under review reused")
    elif send and not force:
        result = existing_draft(folder, month, edition, reason="goes to review as built")
    if result is not None:
        return result
    result = build_issue(
        settings,
        month,
        now,
        force=force,
        read_posts=steps.read_posts,
        read_events=steps.read_events,
        episodes=read_catalog_episodes(settings, steps),
        render=steps.render,
        edition=edition,
    )
    steps.show_draft(result, edition, month)
    return result


def newsletter(
    month: str | None = None,
    posts: list[str] | None = None,
    events: list[str] | None = None,
    out: str | None = None,
    force: bool = False,
    storage: str | None = None,
    public_url: str | None = None,
    now: datetime | None = None,
    send: bool = False,
    to: list[str] | None = None,
    reviewers: list[str] | None = None,
    approve: bool | None = None,
    approval_timeout_seconds: int = 3 * 24 * 3600,
    edition: str | None = None,
    link_check: bool | None = None,
    *,
    steps: Steps = Steps(),
) -> IssueResult:
    """Build the month's newsletter draft (the parameters are the flow's).

    With `send`, the month's draft goes to review: the one already built (the one staff
    looked at) or, when there is none (or with `force`), a new one. A test copy goes to
    `reviewers`, then the run waits for a person's decision (or takes `approve` given up
    front) and sends it to `to`. A sent issue is never rebuilt, reviewed or sent again.
    `edition` is an edition's YAML file (default: the `edition` setting, else Swedish).
    `link_check` False skips the check of the draft's links (default: the setting).
    """
    settings = Settings.load(
        posts=posts,
        events=events,
        newsletters_dir=out,
        storage=storage,
        public_url=public_url,
        edition=edition,
        link_check=link_check,
    )
    the_edition = edition_for(settings)
    # The run's start, read once (through flows.core.clock.system_clock, like every clock
    # read); later moments (a test copy, an upload, the send) come from release_issue's clock.
    now = (now or system_clock()).astimezone(STOCKHOLM)
    month = month or now.strftime("%Y-%m")
    month_start(month)
    if send:
        from flows.newsletter.release import check_release_request

        check_release_request(to)
    require_sources(settings)
    store = open_storage(settings)
    record_earlier_sent_states(store, settings.newsletters_dir, month, the_edition)
    ensure_issue_open(store, issue_dir(settings, month), month, the_edition)
    result = _draft(settings, month, now, the_edition, steps, send=send, force=force)
    if not send:
        return result
    if not result.written:
        raise InputError(
            f"Nothing new for {month} and no draft of it to send, so nothing was sent. Wait "
            "for new posts, or build one anyway with "
            f"`python -m flows newsletter --month {month} --force` and send that."
        )
    from flows.newsletter.release import release_issue

    released = release_issue(
        settings,
        month,
        recipients=list(to or []),
        reviewers=list(reviewers or []),
        approve=approve,
        timeout_seconds=approval_timeout_seconds,
        send_test_copy=steps.send_test_copy,
        publish_web_copy=steps.publish_web_copy,
        send_issue=steps.send_issue,
        show_review=steps.show_review(the_edition),
        edition=the_edition,
    )
    return dataclasses.replace(result, release=released)
