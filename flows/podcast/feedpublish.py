"""Publishing the podcast feed: read the catalog's episodes and the live feed, build, gate, upload.

`publish_feed(storage, show, show_dir, catalog, settings, now)` is the I/O edge around the
pure builder (`flows.podcast.feed`) and the gate (`flows.podcast.feedgate`): it uploads the
cover art under its content hash, checks that every enclosure exists in storage with the size
the feed announces, and uploads `podcast/feed.xml` only when its bytes changed and the gate
passes, with one put conditional on the live feed it compared with.

Removal is lasting and lives in the catalog: `regenerate_feed(remove_guids=[...])`
(`python -m flows feed --remove GUID`) first sets `removed_at` on those records and saves the
catalog (If-Match, with a backup; `flows.podcast.catalog.remove_episodes`), then builds and
publishes. Episodes with `removed_at` are never in the feed, and the shrink gate accepts the
absence of guids that the catalog marks removed, so every later run (hourly, or after
`publish_episodes`) passes without `--remove`. The records stay, so a guid is never reused.
Unknown guids are refused before anything changes. A live guid that the catalog does not know
at all (a catalog restored from an old backup) is still refused by the gate.

Audio objects are never deleted, neither of removed nor of replaced episodes: apps that
cached the old enclosure URL keep working, and restoring a removal needs no re-upload.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from flows.core.errors import FeedGateError, InputError
from flows.core.models import Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, CACHE_SHORT, Storage, public_url
from flows.podcast.catalog import Catalog
from flows.podcast.feed import (
    FEED_CONTENT_TYPE,
    FEED_KEY,
    build_feed,
    cover_art_key,
    feed_episodes,
    feed_url_for,
    resolve_public_url,
)
from flows.podcast.feedgate import COVER_FORMATS, check_cover_art, check_feed, cover_format
from flows.podcast.inbox import read_regular


@dataclass(frozen=True)
class FeedResult:
    """What one feed run did."""

    feed_url: str
    items: int  # episodes in the feed
    scheduled: int  # in the catalog, publish_at still in the future
    uploaded: bool  # False when the feed was unchanged
    cover_url: str
    cover_uploaded: bool = False
    removed: tuple[str, ...] = field(default_factory=tuple)  # removed for good by this run
    already_removed: tuple[str, ...] = field(default_factory=tuple)  # named, but removed before

    def summary(self) -> str:
        """One line for the terminal and the Prefect artifact."""
        state = "uploaded" if self.uploaded else "unchanged, nothing uploaded"
        parts = [f"Feed {self.feed_url}: {self.items} episode(s), {state}"]
        if self.scheduled:
            parts.append(f"{self.scheduled} scheduled, not yet published")
        if self.removed:
            parts.append(
                f"removed for good on request (kept in the catalog): {', '.join(self.removed)}"
            )
        if self.already_removed:
            parts.append(
                f"already removed before, nothing to do: {', '.join(self.already_removed)}"
            )
        if self.cover_uploaded:
            parts.append(f"cover art uploaded to {self.cover_url}")
        return "; ".join(parts) + "."


def _publish_cover_art(storage: Storage, path: Path) -> tuple[str, bool]:
    """Check the cover art and upload it under its content hash if it is not there yet."""
    try:
        data = read_regular(path, path.parent)  # never through a link (the drop folder rule)
    except FileNotFoundError:
        raise InputError(
            f"{path}: the cover art named in show.yaml is missing. Put it there or fix 'image'."
        ) from None
    check_cover_art(data, str(path))
    extension, content_type = COVER_FORMATS[cover_format(data)]
    key = cover_art_key(data, extension)
    if storage.head(key) is not None:
        return key, False
    storage.put_bytes(key, data, content_type=content_type, cache_control=CACHE_LONG, public=True)
    return key, True


def _check_audio(storage: Storage, episodes: Sequence[Episode], workers: int) -> list[str]:
    """Every enclosure must exist in storage with the size the feed will announce."""

    def problem(episode: Episode) -> str | None:
        info = storage.head(episode.audio_key)
        if info is None:
            return (
                f"{episode.slug} ({episode.guid}): audio {episode.audio_key} is missing from "
                "storage, so the feed would point at a 404. Publish the episode again, or "
                f"remove it from the feed for good with --remove {episode.guid}"
            )
        if info.size != episode.size:
            return (
                f"{episode.slug} ({episode.guid}): audio {episode.audio_key} is {info.size} "
                f"bytes in storage but {episode.size} in the catalog. Publish the episode again"
            )
        return None

    if not episodes:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(episodes)))) as pool:
        return [p for p in pool.map(problem, episodes) if p]


def publish_feed(
    storage: Storage,
    show: Show,
    show_dir: Path,
    catalog: Catalog,
    settings: Settings,
    now: datetime,
) -> FeedResult:
    """Build the feed from the catalog and upload it if it changed and passes the gate.

    Episodes the catalog marks removed are left out, and the gate accepts their absence
    (removing is `remove_episodes`' job, see `regenerate_feed`). Nothing is ever deleted
    from storage. Raises InputError for bad cover art and FeedGateError (nothing uploaded,
    the live feed untouched) when an enclosure is missing or the gate refuses the feed.
    """
    base = resolve_public_url(show, settings)
    feed_url = feed_url_for(base)
    cover_key, cover_uploaded = _publish_cover_art(storage, Path(show_dir) / show.image)

    removed = {e.guid for e in catalog.episodes if e.removed_at is not None}
    included = feed_episodes(catalog.episodes, now)
    scheduled = sum(1 for e in catalog.episodes if e.publish_at > now and e.removed_at is None)
    missing = _check_audio(storage, included, settings.upload_concurrency)
    if missing:
        raise FeedGateError(f"The feed {feed_url} was not published: " + "; ".join(missing) + ".")

    xml = build_feed(
        show,
        catalog.episodes,  # all of them: removed ones count for lastBuildDate
        public_url=base,
        now=now,
        analytics_prefix=settings.analytics_prefix,
        feed_url=feed_url,
        cover_key=cover_key,
    )
    result = FeedResult(
        feed_url=feed_url,
        items=len(included),
        scheduled=scheduled,
        uploaded=False,
        cover_url=public_url(base, cover_key),
        cover_uploaded=cover_uploaded,
    )
    live = storage.get_bytes(FEED_KEY)
    if live is not None and live[0] == xml:
        return result

    problems = check_feed(
        xml,
        live_xml=live[0] if live else None,
        episodes=included,
        remove_guids=removed,
        catalog_guids={e.guid for e in catalog.episodes},
    )
    if problems:
        raise FeedGateError(
            f"The feed {feed_url} was not published (the live feed is unchanged): "
            + "; ".join(problems)
            + "."
        )
    # One put, conditional on the live feed we compared with: a concurrent run makes this
    # fail (ConcurrentWriteError) instead of overwriting a feed our gate never saw.
    storage.put_bytes(
        FEED_KEY,
        xml,
        content_type=FEED_CONTENT_TYPE,
        cache_control=CACHE_SHORT,
        public=True,
        if_match=live[1] if live else None,
        if_none_match=live is None,
    )
    return replace(result, uploaded=True)
