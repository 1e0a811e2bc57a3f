"""The newsletter's Prefect wrappers: fetch, render, send and publish tasks, the flow.

The job is a plain function (`job.newsletter`: `build.build_issue`, then
`release.release_issue`), which a command run without a Prefect server calls directly; the
flow runs the same job with `TASK_STEPS`: its steps as tasks with retries, artifacts for the
draft and the review, and the run's logger. The job resolves the edition once
(`edition_for`, from the `edition` parameter or setting) and passes it to every step.
Retries: fetching retries network and disk hiccups; reading the catalog and publishing
retry storage failures (`retry_on_storage_error`, the one storage policy); a test copy
retries SMTP failures, but not a server that does not answer (fixed by a setting); the send
never retries (it resumes from its own progress).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.core.errors import DeliveryError, KraftsamlingError
from flows.core.models import Episode, Event, Post, SourceStatus
from flows.core.settings import Settings
from flows.core.storage import retry_on_storage_error
from flows.newsletter import job
from flows.newsletter.build import IssueResult
from flows.newsletter.delivery import DeliveryReport, send_issue, send_test_copy
from flows.newsletter.edition import Edition
from flows.newsletter.events import read_events
from flows.newsletter.posts import read_posts
from flows.newsletter.release import publish_to_storage
from flows.newsletter.render import RenderedIssue, render_issue
from flows.newsletter.select import Selection
from flows.newsletter.smtp import SmtpUnreachableError
from flows.notify import notify_failure


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unexpected network/disk hiccups; never our own errors (a broken file stays broken).

    The readers already retry each HTTP request and record unreachable feeds, so what
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
    """Read the posts feeds (posts.read_posts)."""
    return read_posts(sources_, settings, **kwargs)


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
    """Read the events sources (events.read_events)."""
    return read_events(sources_, settings, start, end, **kwargs)


@task(name="render-issue", cache_policy=NO_CACHE)
def render_task(selection: Selection, settings: Settings, *, intro_md: str | None) -> RenderedIssue:
    """Render the issue's MJML, HTML and text (render.render_issue)."""
    return render_issue(selection, settings, intro_md=intro_md)


@task(
    name="read-catalog",
    retries=1,
    retry_delay_seconds=[2],
    retry_condition_fn=retry_on_storage_error,
    cache_policy=NO_CACHE,
)
def read_catalog_task(settings: Settings) -> list[Episode]:
    """The podcast catalog's episodes (empty when there is no catalog yet)."""
    return job.read_catalog(settings)


def _retry_smtp(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a test copy when the SMTP server failed (DeliveryError), never our other errors.

    A server that does not answer at all (refused, timed out: SmtpUnreachableError) is a
    setting to fix, not a hiccup: it fails at once, within `smtp_timeout`, instead of
    retrying for minutes."""
    try:
        state.result()
    except SmtpUnreachableError:
        return False
    except DeliveryError:
        return True
    except Exception:
        return False
    return False


@task(
    name="send-test-copy",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_retry_smtp,
)
def send_test_copy_task(
    folder: Path,
    reviewers: list[str],
    settings: Settings,
    now: datetime,
    *,
    edition: Edition,
    note: str,
) -> DeliveryReport:
    """Send the reviewers a test copy with the link check's note (delivery.send_test_copy)."""
    return send_test_copy(folder, reviewers, settings, now, edition=edition, note=note)


@task(
    name="publish-web-copy",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_condition_fn=retry_on_storage_error,
)
def publish_web_copy_task(
    folder: Path, month: str, settings: Settings, now: datetime, *, edition: Edition
) -> str:
    """Publish the web copy and the archive (release.publish_to_storage)."""
    return publish_to_storage(folder, month, settings, now, edition=edition)


@task(name="send-issue", cache_policy=NO_CACHE)
def send_issue_task(
    folder: Path, recipients: list[str], settings: Settings, now: datetime, *, edition: Edition
) -> DeliveryReport:
    """Send the issue to the list (delivery.send_issue)."""
    # No task retries: send_issue resumes from its own per-batch progress on the next run.
    return send_issue(folder, recipients, settings, now, edition=edition)


def review_artifact(edition: Edition) -> Callable[[str, str], None]:
    """Shows reviewers the draft and how to decide, as the run's Markdown artifact; the
    outcome later becomes a new version of the same key. Its heading is the description."""

    def show(month: str, markdown: str) -> None:
        create_markdown_artifact(
            markdown=markdown,
            key=f"newsletter-{edition.label(month)}-review",
            description=markdown.split("\n", 1)[0].lstrip("# ").strip(),
        )

    return show


def _draft_artifact(result: IssueResult, edition: Edition, month: str) -> None:
    create_markdown_artifact(
        markdown=result.markdown(),
        key=f"newsletter-{edition.label(month)}",
        description=f"Newsletter {month}",
    )


TASK_STEPS = job.Steps(
    read_posts=fetch_posts,
    read_events=fetch_events,
    render=render_task,
    read_catalog=read_catalog_task,
    send_test_copy=send_test_copy_task,
    publish_web_copy=publish_web_copy_task,
    send_issue=send_issue_task,
    show_review=review_artifact,
    show_draft=_draft_artifact,
    logger=get_run_logger,
)


# A failed or crashed run (a schedule's too) tells the KRAFTSAMLING_NOTIFY_FAILURES addresses.
@flow(name="newsletter", on_failure=[notify_failure], on_crashed=[notify_failure])
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
) -> IssueResult:
    """Build the month's newsletter draft and report it as a Markdown artifact.

    With `send`, the month's draft goes to review: the one already built (the one staff
    looked at) or, when there is none (or with `force`), a new one. A test copy goes to
    `reviewers`, then the run waits for a person's decision (or takes `approve` given up
    front) and sends it to `to`. A sent issue is never rebuilt, reviewed or sent again.
    `edition` is an edition's YAML file (default: the `edition` setting, else Swedish).
    `link_check` False skips the check of the draft's links (default: the setting).
    """
    return job.newsletter(
        month,
        posts,
        events,
        out,
        force,
        storage,
        public_url,
        now,
        send,
        to,
        reviewers,
        approve,
        approval_timeout_seconds,
        edition,
        link_check,
        steps=TASK_STEPS,
    )
