"""The newsletter's Prefect wrappers: fetch tasks with retries, a render task, the flow.

The work is done by plain functions (`build.build_issue`, `release.release_issue`); these
wrappers only add retries, artifacts and the run's start time (the one place that reads
the clock for it).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.core.errors import InputError, KraftsamlingError
from flows.core.models import STOCKHOLM, Episode, Event, Post, SourceStatus
from flows.core.settings import Settings
from flows.newsletter import sources
from flows.newsletter.build import (
    IssueResult,
    build_issue,
    issue_dir,
)
from flows.newsletter.render import RenderedIssue, render_issue
from flows.newsletter.select import Selection, month_start


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unexpected network/disk hiccups; never our own errors (a broken file stays broken).

    `sources` already retries each HTTP request and records unreachable feeds, so what
    reaches here is either a person's broken input (no retry) or something transient.
    """
    error = getattr(state, "data", None)
    return isinstance(error, OSError | httpx.TransportError) and not isinstance(
        error, KraftsamlingError
    )


@task(
    name="fetch-posts",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
def fetch_posts(
    sources_: list[str], settings: Settings, **kwargs: Any
) -> tuple[list[Post], list[SourceStatus]]:
    """Read the posts feeds (sources.read_posts)."""
    return sources.read_posts(sources_, settings, **kwargs)


@task(
    name="fetch-events",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
def fetch_events(
    sources_: list[str], settings: Settings, start: datetime, end: datetime, **kwargs: Any
) -> tuple[list[Event], list[SourceStatus]]:
    """Read the events sources (sources.read_events)."""
    return sources.read_events(sources_, settings, start, end, **kwargs)


@task(name="render-issue", cache_policy=NO_CACHE)
def render_task(selection: Selection, settings: Settings, *, intro_md: str | None) -> RenderedIssue:
    """Render the issue's MJML, HTML and text (render.render_issue)."""
    return render_issue(selection, settings, intro_md=intro_md)


@task(name="read-catalog", retries=1, retry_delay_seconds=[2], cache_policy=NO_CACHE)
def read_catalog_episodes(settings: Settings) -> list[Episode] | None:
    """The podcast catalog's episodes for the listen section; None when there is no catalog."""
    from flows.core.storage import open_storage
    from flows.podcast.catalog import load_catalog

    try:
        return list(load_catalog(open_storage(settings)).episodes)
    except KraftsamlingError as exc:  # the issue is still built, from the site's posts
        get_run_logger().warning("Podcast catalog not used: %s", exc)
        return None


def existing_draft(folder: Path, month: str, *, reason: str) -> IssueResult | None:
    """The draft already in `folder` as an IssueResult, None when there is none to reuse."""
    from flows.core.errors import DeliveryError
    from flows.newsletter.delivery import read_issue

    try:
        issue = read_issue(folder)
    except DeliveryError:
        return None  # no draft, or one edited by hand: build a new one
    if issue.month != month or issue.manifest.get("status") != "draft":
        return None
    return IssueResult(
        month=month,
        issue_dir=folder,
        written=True,
        message=f"Draft of {month} {reason} from {folder}.",
        counts=dict(issue.manifest.get("counts", {})),
        files=dict(issue.manifest.get("files", {})),
    )


@flow(name="newsletter")
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
) -> IssueResult:
    """Build the month's newsletter draft and report it as a Markdown artifact.

    With `send`, the month's draft goes to review: the one already built (the one staff
    looked at) or, when there is none (or with `force`), a new one. A test copy goes to
    `reviewers`, then the run waits for a person's decision (or takes `approve` given up
    front) and sends it to `to`. A sent issue is never rebuilt, reviewed or sent again.
    """
    from flows.core.storage import open_storage
    from flows.newsletter.delivery import ensure_issue_open
    from flows.newsletter.release import awaiting_review, check_release_request, release_issue

    settings = Settings.load(
        posts=posts, events=events, newsletters_dir=out, storage=storage, public_url=public_url
    )
    # The only place that reads the clock for the run's start; later moments (a send, an
    # upload) are recorded by release_issue's own clock.
    now = (now or datetime.now(STOCKHOLM)).astimezone(STOCKHOLM)
    month = month or now.strftime("%Y-%m")
    month_start(month)
    if send:
        check_release_request(to, approve)
    folder = issue_dir(settings, month)
    ensure_issue_open(open_storage(settings), folder, month)
    result = None
    if send and awaiting_review(folder):
        # A run resumed after suspension starts from the top: reuse the draft under review
        # instead of rendering a different one.
        result = existing_draft(folder, month, reason="under review reused")
    elif send and not force:
        result = existing_draft(folder, month, reason="goes to review as built")
    if result is None:
        episodes = read_catalog_episodes(settings)
        result = build_issue(
            settings,
            month,
            now,
            force=force,
            read_posts=fetch_posts,
            read_events=fetch_events,
            episodes=episodes,
            render=render_task,
        )
        create_markdown_artifact(
            markdown=result.markdown(),
            key=f"newsletter-{month}",
            description=f"Newsletter {month}",
        )
    if send and not result.written:
        raise InputError(
            f"{result.message.split(': no draft')[0]}: there is no draft of {month} to send, "
            "so nothing was sent. Wait for new posts, or build one anyway with "
            f"`python -m flows newsletter --month {month} --force` and send that."
        )
    if send:
        release = release_issue(
            settings,
            month,
            recipients=list(to or []),
            reviewers=list(reviewers or []),
            approve=approve,
            timeout_seconds=approval_timeout_seconds,
        )
        result = dataclasses.replace(result, release=release)
    return result
