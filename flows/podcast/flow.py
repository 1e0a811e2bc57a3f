"""The podcast's Prefect wrappers: `publish-episodes` and `regenerate-feed`.

The jobs are plain functions (`jobs.publish_episodes`, `jobs.regenerate_feed`), which a
command run without a Prefect server calls directly; these wrappers run the same jobs with
their steps as tasks (retries, states in the UI) and show the result as an artifact.
`publish-episodes` runs the one run loop (`run.run_episodes`) with `TaskSteps`: its prepare
and upload steps as submitted tasks.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from flows.core.models import Episode, Show
from flows.core.settings import Settings
from flows.core.storage import Storage, retry_on_storage_error
from flows.notify import notify_failure
from flows.podcast import jobs
from flows.podcast.catalog import Catalog, Removal, load_catalog, remove_episodes
from flows.podcast.episode import Failed, Prepared, RunContext, try_prepare, upload_episode
from flows.podcast.feedpublish import FeedResult, publish_feed
from flows.podcast.inbox import Candidate
from flows.podcast.report import PublishReport
from flows.podcast.run import CatalogUpdate, Pending, commit_catalog

T = TypeVar("T")

# --- publish-episodes ---------------------------------------------------------------------------


@task(name="prepare-episode", cache_policy=NO_CACHE)
def prepare_task(candidate: Candidate, context: RunContext) -> Prepared | Failed:
    """Inspect, check and tag one episode."""
    return try_prepare(candidate, context)


@task(
    name="upload-episode",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_on_storage_error,
    cache_policy=NO_CACHE,  # the inputs include a storage client
)
def upload_task(storage: Storage, prepared: Prepared) -> int:
    """Upload one episode's objects (retried with backoff on storage errors only)."""
    return upload_episode(storage, prepared)


@task(name="update-catalog", cache_policy=NO_CACHE)
def catalog_task(
    storage: Storage, base: Catalog, records: list[Episode], now: datetime
) -> CatalogUpdate:
    """One catalog update for all good episodes."""
    return commit_catalog(storage, base, records, now)


def _artifact_rows(report: PublishReport) -> list[dict[str, str]]:
    return [
        {
            "episode": o.name,
            "status": o.status,
            "title": o.title,
            "link": o.url,
            "guid": o.guid,
            "loudness": o.loudness_text,
            "audio": o.audio_note,
            "reason": o.reason or "; ".join(o.warnings),
            "moved to": o.moved_to or ("inbox" if o.status == "retry" else ""),
        }
        for o in report.outcomes
    ]


def quoted(value: T) -> T:
    """`value` wrapped so Prefect passes it to a task as is (no walk for futures inside);
    the task receives `value` itself, so it is typed as one."""
    return cast(T, quote(value))


class TaskSteps:
    """The run loop's steps as Prefect tasks (`run.Steps`): prepare and upload submitted to
    the flow's task runner, so each shows in the UI and uploads are retried with backoff."""

    def prepare(self, candidate: Candidate, context: RunContext) -> Pending[Prepared | Failed]:
        return prepare_task.submit(candidate, quoted(context))

    def upload(self, storage: Storage, prepared: Prepared) -> Pending[int]:
        return upload_task.submit(storage, prepared)

    def commit(
        self, storage: Storage, base: Catalog, records: list[Episode], now: datetime
    ) -> CatalogUpdate:
        return catalog_task(storage, quoted(base), records, now)


# A failed or crashed run (a schedule's too) tells the KRAFTSAMLING_NOTIFY_FAILURES addresses.
@flow(name="publish-episodes", on_failure=[notify_failure], on_crashed=[notify_failure])
def publish_episodes(
    episodes: str | None = None,
    storage: str | None = None,
    public_url: str | None = None,
    now: datetime | None = None,
    settle_seconds: float | None = None,
) -> PublishReport:
    """Publish what producers dropped in the inbox: encode, tag, upload, catalog, feed.

    If another run is publishing to the same storage, this run does nothing and ends
    successfully, saying so.
    """
    return jobs.publish_episodes(
        episodes, storage, public_url, now, settle_seconds, steps=TaskSteps(), show=_table
    )


def _table(report: PublishReport) -> None:
    """The run's episodes as a table artifact; a run that did nothing makes none (as it
    emails no one), so the latest version is the last run that did something."""
    if not (report.outcomes or report.notes or report.feed or report.locked_by):
        return
    create_table_artifact(
        table=_artifact_rows(report),
        key="publish-episodes",
        description=report.summary().splitlines()[0],
    )


# --- Prefect: thin wrappers -------------------------------------------------------------


_RETRY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [2, 10, 30],
    "retry_condition_fn": retry_on_storage_error,
    "cache_policy": NO_CACHE,  # the inputs include a storage client
}


@task(name="load-catalog", **_RETRY)
def load_catalog_task(storage: Storage) -> Catalog:
    """Read the catalog (retried: storage may be briefly unavailable)."""
    return load_catalog(storage)


@task(name="remove-episodes", **_RETRY)
def remove_episodes_task(storage: Storage, guids: tuple[str, ...], now: datetime) -> Removal:
    """`remove_episodes`, retried on storage errors (a retry re-reads the catalog)."""
    return remove_episodes(storage, guids, now)


@task(name="publish-feed", **_RETRY)
def publish_feed_task(
    storage: Storage,
    show: Show,
    show_dir: Path,
    catalog: Catalog,
    settings: Settings,
    now: datetime,
) -> FeedResult:
    """`publish_feed`, retried on storage errors (a retry re-reads the live feed)."""
    return publish_feed(storage, show, show_dir, catalog, settings, now)


_TASK_STEPS = jobs.FeedSteps(load_catalog_task, remove_episodes_task, publish_feed_task)


@flow(name="regenerate-feed", on_failure=[notify_failure], on_crashed=[notify_failure])
def regenerate_feed(
    episodes: str | None = None,
    storage: str | None = None,
    public_url: str | None = None,
    remove_guids: list[str] | None = None,
    now: datetime | None = None,
) -> FeedResult:
    """Rebuild `podcast/feed.xml` from show.yaml and the catalog; upload it if it changed.

    `remove_guids` removes those episodes for good: they are first marked removed in the
    catalog (saved with If-Match and a backup; an unknown guid stops the run before anything
    changes), then the feed is built without them. The removal stands even if the feed is
    then refused for another reason; the next run publishes it. No audio is deleted.
    """
    return jobs.regenerate_feed(
        episodes, storage, public_url, remove_guids, now, steps=_TASK_STEPS, show=_feed_link
    )


def _feed_link(result: FeedResult, show: Show) -> None:
    """The feed's link and summary as an artifact, when the run changed something."""
    changed = result.uploaded or result.cover_uploaded or result.removed or result.unfit
    if not changed:
        return
    create_link_artifact(
        link=result.feed_url,
        link_text=f"{show.title}: the podcast feed",
        key="podcast-feed",
        description=result.summary(),
    )
