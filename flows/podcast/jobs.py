"""The podcast's two jobs as plain functions: `publish_episodes` and `regenerate_feed`.

Each is the whole job a command or a schedule asks for: settings, the run's start time,
storage, the work, what people are told. `flows.podcast.flow` wraps each in a Prefect flow
and passes its steps as tasks (retries, states) and a hook that shows the result as an
artifact; a command run without a Prefect server (`flows.runner`) calls them as they are,
with plain steps. The two modes run the same code in the same order, so their outputs,
locks, journals and reports are the same. Nothing here imports Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from flows.core.backends import open_storage
from flows.core.clock import system_clock
from flows.core.errors import PublishIncompleteError
from flows.core.models import Show
from flows.core.settings import Settings
from flows.core.storage import Storage
from flows.notify import notify_producers
from flows.podcast.catalog import Catalog, Removal, load_catalog, remove_episodes
from flows.podcast.feedpublish import FeedResult, publish_feed
from flows.podcast.report import PublishReport
from flows.podcast.run import Steps, publish
from flows.podcast.show import load_show


def _show_nothing(*_: object) -> None:
    """A plain run has no artifacts: the command prints the result's summary."""


def publish_episodes(
    episodes: str | None = None,
    storage: str | None = None,
    public_url: str | None = None,
    now: datetime | None = None,
    settle_seconds: float | None = None,
    *,
    steps: Steps | None = None,
    show: Callable[[PublishReport], None] = _show_nothing,
) -> PublishReport:
    """Publish what producers dropped in the inbox: encode, tag, upload, catalog, feed.

    If another run is publishing to the same storage, this run does nothing and ends
    successfully, saying so. `steps` runs prepare, upload and commit (default: a thread
    pool, `run.ThreadSteps`); `show` gets the report before the producers are told.
    Raises PublishIncompleteError when an episode or the feed failed (the others were
    published).
    """
    settings = Settings.load(
        episodes_dir=episodes,
        storage=storage,
        public_url=public_url,
        settle_seconds=settle_seconds,
    )
    started = system_clock()  # the run's start: read once, passed down
    scan_time = started.timestamp()
    now = now or started
    store = open_storage(settings)
    report = publish(settings, store, now, scan_time, steps=steps)
    show(report)
    show_dir = Path(settings.episodes_dir)
    if report.outcomes and (show_dir / "show.yaml").is_file():
        notify_producers(report, load_show(show_dir / "show.yaml").producers, show_dir, settings)
    if report.failed or report.feed_error:
        raise PublishIncompleteError(
            "Some episodes were not published (the others were):\n" + report.summary()
        )
    return report


@dataclass(frozen=True)
class FeedSteps:
    """How `regenerate_feed` talks to storage: the plain functions, or (the flow) the same
    functions as Prefect tasks retried on storage errors."""

    load_catalog: Callable[[Storage], Catalog] = load_catalog
    remove_episodes: Callable[[Storage, tuple[str, ...], datetime], Removal] = remove_episodes
    publish_feed: Callable[[Storage, Show, Path, Catalog, Settings, datetime], FeedResult] = (
        publish_feed
    )


def regenerate_feed(
    episodes: str | None = None,
    storage: str | None = None,
    public_url: str | None = None,
    remove_guids: list[str] | None = None,
    now: datetime | None = None,
    *,
    steps: FeedSteps = FeedSteps(),
    show: Callable[[FeedResult, Show], None] = _show_nothing,
) -> FeedResult:
    """Rebuild `podcast/feed.xml` from show.yaml and the catalog; upload it if it changed.

    `remove_guids` removes those episodes for good: they are first marked removed in the
    catalog (saved with If-Match and a backup; an unknown guid stops the run before anything
    changes), then the feed is built without them. The removal stands even if the feed is
    then refused for another reason; the next run publishes it. No audio is deleted.
    `show` gets the result and the show.
    """
    settings = Settings.load(episodes_dir=episodes, storage=storage, public_url=public_url)
    now = now or system_clock()  # the run's start: read once, passed down
    show_dir = Path(settings.episodes_dir)
    the_show = load_show(show_dir / "show.yaml")
    store = open_storage(settings)
    removal: Removal | None = None
    if remove_guids:
        removal = steps.remove_episodes(store, tuple(remove_guids), now)
        catalog = removal.catalog
    else:
        catalog = steps.load_catalog(store)
    result = steps.publish_feed(store, the_show, show_dir, catalog, settings, now)
    if removal is not None:
        result = replace(result, removed=removal.removed, already_removed=removal.already_removed)
    show(result, the_show)
    return result
