"""The podcast catalog: `podcast/catalog.json` in storage, the truth about published episodes.

The feed is regenerated from this file, so it is written with care:

- deterministic JSON (sorted keys, indent 2, episodes ordered by `publish_at` then `guid`),
  so the same episodes always give the same bytes and an unchanged catalog is not rewritten;
- a private object (`public=False`, `CACHE_PRIVATE`);
- a compare-and-swap write: `If-Match` the ETag it was read with (or `If-None-Match: *` when it
  is new), so a concurrent writer is detected instead of overwritten;
- every version written is also kept as the newest dated backup under
  `podcast/catalog-backups/` (the first one too), so a lost catalog is its newest backup
  (`flows.podcast.recover`). Before a change the previous version is backed up if it is not
  the newest backup already (a run that stopped between the two writes; `heal_backup` mends
  that on a run with nothing to change). A publish run that changed the catalog then prunes
  all but the newest ones. Backups are named by the wall clock when they are written, never
  by a run's pinned `--now`: a backfill's backup dated last year would sort oldest and be
  pruned at once.
- a missing catalog is never silently started afresh where storage already holds a feed or
  catalog backups: that would give every episode a new guid. The run stops before any upload
  and points at the backups. (Audio alone is a first publish that stopped before writing its
  catalog; no guid was given out, so the next run starts it.)

The pure parts are `upsert`: it decides whether a freshly built record is new, unchanged, a
replacement of the audio or a metadata update, and keeps the guid assigned at first publish;
and `mark_removed`: it records that a person removed episodes from the feed on purpose.

Removal is lasting. A removed episode keeps its record, with `removed_at` set, so its guid is
never reused and no later run (hourly feed, re-drop of the audio) brings it back:

- the feed leaves out every episode with `removed_at` and its gate accepts their absence;
- `upsert` keeps `removed_at`. A re-drop of the same audio after a removal changes nothing
  in the catalog (`upsert` says "unchanged"; the publish report says "removed", with the way
  back); new audio or new metadata for the slug updates the record but it stays removed too.
  Only an operator restores an episode: in `podcast/catalog.json` set the episode's
  `"removed_at"` to `null` (dated backups of earlier versions, the newest
  `catalog_backups_keep`, are under `podcast/catalog-backups/`); the next feed run puts it
  back with its old guid.
- Audio objects are never deleted, not for a removed or a replaced episode: podcast apps
  that already downloaded the old URL keep working, and a restore needs no re-upload.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from flows.core.clock import system_clock
from flows.core.errors import CatalogError, ConcurrentWriteError
from flows.core.models import Episode
from flows.core.storage import CACHE_PRIVATE, Storage

CATALOG_KEY = "podcast/catalog.json"
BACKUP_PREFIX = "podcast/catalog-backups/"
CATALOG_VERSION = 1

Change = Literal["new", "unchanged", "replaced", "updated"]

# Fields that are bookkeeping, not content: a difference in these alone is "unchanged".
# `removed_at` is one: a freshly built record never has it, and a re-drop of the same audio
# must not look like a change to a removed episode (it stays removed, see the module doc).
_BOOKKEEPING = {"guid", "first_published", "last_updated", "warnings", "loudness", "removed_at"}


@dataclass
class Catalog:
    """All published episodes and the ETag of the catalog object they were read from."""

    episodes: list[Episode] = field(default_factory=list)
    etag: str | None = None  # None when the catalog did not exist yet

    def by_slug(self, slug: str) -> Episode | None:
        """The episode with this slug, or None."""
        return next((ep for ep in self.episodes if ep.slug == slug), None)

    def by_guid(self, guid: str) -> Episode | None:
        """The episode with this guid, or None."""
        return next((ep for ep in self.episodes if ep.guid == guid), None)


def new_guid() -> str:
    """A fresh episode guid (UUID4), for a record that comes without one."""
    return str(uuid.uuid4())


_GUIDS = uuid.UUID("6f1c1d3e-5a0b-4c59-9b7e-4b7a2f0d9c11")  # this project's UUID namespace


def episode_guid(slug: str, source_sha256: str) -> str:
    """The guid of an episode at its first publish: decided when its audio is tagged (the
    tags carry it), and the same for the same slug and dropped audio, so a run that stopped
    before its catalog was saved gives the same guid and the same audio bytes next time.

    >>> episode_guid("avsnitt-1", "ab" * 32) == episode_guid("avsnitt-1", "ab" * 32)
    True
    """
    return str(uuid.uuid5(_GUIDS, f"{slug}\n{source_sha256}"))


def sort_episodes(episodes: list[Episode]) -> list[Episode]:
    """Catalog order: by publish time, then guid (stable for equal times)."""
    return sorted(episodes, key=lambda ep: (ep.publish_at.astimezone(UTC), ep.guid))


def dump_catalog(episodes: list[Episode]) -> bytes:
    """The catalog's bytes: deterministic JSON, UTF-8, a trailing newline."""
    document = {
        "version": CATALOG_VERSION,
        "episodes": [ep.model_dump(mode="json") for ep in sort_episodes(episodes)],
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


_RESTORE = (
    f"Restore the newest good copy from {BACKUP_PREFIX} (copy it over {CATALOG_KEY}) and run again."
)


class _CatalogDocument(BaseModel):
    """The catalog file's shape, for reading it in one pass (`_read_fast`)."""

    # Only keys are worth pydantic's string cache: guids, slugs and keys are all different,
    # and looking each up in a full cache made a long catalog slower per episode.
    model_config = ConfigDict(extra="ignore", cache_strings="keys")

    version: Any = CATALOG_VERSION
    episodes: list[Episode]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. Reading makes many objects and no cycles, and
    collections over a heap that grows with the catalog made a long one superlinear to read."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:  # (never thaw what the program froze itself)
            # What was read is long-lived: freezing and thawing moves it to the oldest
            # generation as it is, where the young collection that its many new objects
            # would set off next (one more pass over all of them) would only have put it.
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def _read_fast(data: bytes) -> list[Episode] | None:
    """The episodes of a well-formed catalog, read by pydantic's JSON parser in one pass (it
    refuses invalid UTF-8 and lone surrogate escapes as well); None when anything is off."""
    try:
        with _gc_paused():
            document = _CatalogDocument.model_validate_json(data)
    except ValidationError:
        return None
    return document.episodes if document.version == CATALOG_VERSION else None


def parse_catalog(data: bytes, source: str = CATALOG_KEY) -> list[Episode]:
    """Episodes from catalog bytes; CatalogError naming the key and the way back."""
    episodes = _read_fast(data)
    if episodes is None:  # something is off: read it step by step, to say exactly what
        episodes = _read_checked(data, source)
    guids = [ep.guid for ep in episodes]
    slugs = [ep.slug for ep in episodes]
    for label, values in (("guid", guids), ("slug", slugs)):
        twice = sorted(value for value, n in Counter(values).items() if n > 1)
        if twice:
            raise CatalogError(
                f"{source}: {label} {', '.join(twice)} appears more than once. {_RESTORE}"
            )
    return episodes


def _read_checked(data: bytes, source: str) -> list[Episode]:
    """Episodes from catalog bytes, each step checked: CatalogError says what is wrong."""
    restore = _RESTORE
    try:
        document: Any = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{source} is not UTF-8 text ({exc.reason}). {restore}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            f"{restore}"
        ) from None
    try:  # a lone surrogate escape ("\\ud800") parses, but could never be written back
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise CatalogError(
            f"{source} contains a lone surrogate escape (\\ud800-\\udfff), which is not "
            f"text. {restore}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("episodes"), list):
        raise CatalogError(f"{source} has no 'episodes' list. {restore}")
    version = document.get("version", CATALOG_VERSION)
    if version != CATALOG_VERSION:
        raise CatalogError(
            f"{source} has version {version!r}, this program reads version {CATALOG_VERSION}. "
            "Update the program, or restore a backup written by this version."
        )
    episodes: list[Episode] = []
    for index, raw in enumerate(document["episodes"]):
        try:
            episodes.append(Episode.model_validate(raw))
        except ValidationError as exc:
            name = raw.get("slug", "?") if isinstance(raw, dict) else "?"
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise CatalogError(
                f"{source}: episode #{index + 1} ({name}) is invalid: {problems}. {restore}"
            ) from None
    return episodes


def load_catalog(storage: Storage) -> Catalog:
    """Read the catalog from storage (an empty Catalog if there is none yet)."""
    found = storage.get_bytes(CATALOG_KEY)
    if found is None:
        refuse_a_fresh_catalog(storage)
        return Catalog([], None)
    data, etag = found
    return Catalog(parse_catalog(data, f"{storage.describe()}/{CATALOG_KEY}"), etag)


def backup_key(now: datetime, attempt: int = 1) -> str:
    """The key of a dated backup, in UTC; `attempt` > 1 adds a number for same-second saves.

    >>> backup_key(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    'podcast/catalog-backups/catalog-20260301T080000Z.json'
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = "" if attempt == 1 else f"-{attempt}"
    return f"{BACKUP_PREFIX}catalog-{stamp}{suffix}.json"


def _backup_order(key: str) -> tuple[str, int]:
    """Oldest first: by time stamp, then by the same-second number (no number is 1)."""
    name = key.removeprefix(f"{BACKUP_PREFIX}catalog-").removesuffix(".json")
    stamp, _, attempt = name.partition("-")
    return stamp, int(attempt) if attempt.isdigit() else 1


def prune_backups(storage: Storage, keep: int) -> list[str]:
    """Delete all but the newest `keep` catalog backups (0 keeps every one); returns the
    deleted keys. Only keys this module names are touched: other files an operator put in
    the backup folder stay."""
    if keep <= 0:
        return []
    old = backup_keys(storage)[:-keep]
    for key in old:
        storage.delete(key)
    return old


def save_catalog(storage: Storage, catalog: Catalog, saved_at: datetime | None = None) -> Catalog:
    """Write the catalog if its content changed; returns it with the new ETag.

    The write is conditional on the ETag the catalog was loaded with, so another run's
    change in the meantime raises CatalogError (nothing is overwritten). The version written
    is then kept as the newest private backup (and the previous one first, if it is not the
    newest backup yet), named by `saved_at`: the wall clock, read here when not given (never
    a run's pinned time, so backups sort as they were written).
    """
    now = saved_at if saved_at is not None else system_clock()
    data = dump_catalog(catalog.episodes)
    where = f"{storage.describe()}/{CATALOG_KEY}"
    again = "Another run changed it meanwhile; nothing was lost. Run again to build on it."
    current = storage.get_bytes(CATALOG_KEY)
    if current is None and catalog.etag is not None:
        raise CatalogError(f"{where} was removed while this run was working. {again}")
    if current is not None:
        previous, etag = current
        if catalog.etag is None or etag != catalog.etag:
            raise CatalogError(f"{where} changed while this run was working. {again}")
        if previous == data:
            return Catalog(list(catalog.episodes), etag)  # nothing to write
        _keep_backup(storage, previous, etag, now)  # normally the newest backup already
    try:
        info = storage.put_bytes(
            CATALOG_KEY,
            data,
            content_type="application/json",
            cache_control=CACHE_PRIVATE,
            public=False,
            if_match=catalog.etag,
            if_none_match=catalog.etag is None,
        )
    except ConcurrentWriteError as exc:
        raise CatalogError(f"{where} changed while this run was working. {again}") from exc
    _put_backup(storage, data, now)
    return Catalog(sort_episodes(catalog.episodes), info.etag)


def heal_backup(storage: Storage, catalog: Catalog, saved_at: datetime | None = None) -> bool:
    """Make the loaded catalog the newest backup if it is not (a run stopped between writing
    the catalog and its backup, or the backup was written by an older version); True when a
    backup was written. Costs a listing and a HEAD when nothing is missing."""
    if catalog.etag is None:
        return False
    found = storage.get_bytes(CATALOG_KEY) if not _newest_is(storage, catalog.etag) else None
    if found is None or found[1] != catalog.etag:
        return False  # nothing to heal, or another run changed it: its own save backs it up
    _put_backup(storage, found[0], saved_at if saved_at is not None else system_clock())
    return True


def _newest_is(storage: Storage, etag: str) -> bool:
    keys = backup_keys(storage)
    newest = storage.head(keys[-1]) if keys else None
    return newest is not None and newest.etag == etag


def _keep_backup(storage: Storage, data: bytes, etag: str, now: datetime) -> None:
    if not _newest_is(storage, etag):
        _put_backup(storage, data, now)


def _put_backup(storage: Storage, data: bytes, now: datetime) -> None:
    # Numbered after the newest of the same second, never into a gap that pruning left:
    # a reused lower number would sort as older and be pruned first.
    stamp, _ = _backup_order(backup_key(now))
    taken = [n for s, n in map(_backup_order, backup_keys(storage)) if s == stamp]
    attempt = max(taken, default=0) + 1
    storage.put_bytes(
        backup_key(now, attempt),
        data,
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
    )


def backup_keys(storage: Storage) -> list[str]:
    """The catalog backups this module wrote, oldest first."""
    ours = [
        key
        for key in storage.list_keys(BACKUP_PREFIX)
        if key.startswith(f"{BACKUP_PREFIX}catalog-") and key.endswith(".json")
    ]
    return sorted(ours, key=_backup_order)


def refuse_a_fresh_catalog(storage: Storage) -> None:
    """CatalogError when the catalog is missing but storage holds a feed or catalog
    backups: it was there, and starting afresh would give every episode a new guid (apps
    would list them twice). Audio alone is a first publish that stopped before its catalog:
    no guid was given out yet, so that run may start the catalog."""
    from flows.podcast.feed import FEED_KEY

    has_feed = storage.head(FEED_KEY) is not None
    if not has_feed and not backup_keys(storage):
        return
    held = "a feed" if has_feed else "catalog backups"
    raise CatalogError(
        f"{storage.describe()}/{CATALOG_KEY} is missing, but storage holds {held}: a new "
        "catalog would give every episode a new guid. Restore the newest good copy from "
        f"{BACKUP_PREFIX} (copy it over {CATALOG_KEY}), then run again. Nothing was uploaded "
        "or changed by this run."
    )


def _content(episode: Episode) -> dict[str, Any]:
    return episode.model_dump(mode="json", exclude=_BOOKKEEPING)


def upsert(catalog: Catalog, record: Episode, now: datetime) -> tuple[Catalog, Change]:
    """Put a freshly built record into the catalog (pure: returns a new Catalog).

    The episode's identity is its slug. Compared with the published record:
    - no record with this slug: "new" (a guid is assigned now, unless the record has one);
    - same content: "unchanged" (the published record is kept as it is);
    - different source audio (or final audio without a source hash): "replaced";
    - same audio, other metadata: "updated".
    Replaced and updated records keep the guid, `first_published` and `removed_at` (a
    removed episode stays removed whatever is dropped again); `last_updated` = now.
    """
    existing = catalog.by_slug(record.slug)
    others = [ep for ep in catalog.episodes if ep.slug != record.slug]
    if existing is None:
        fresh = record.model_copy(
            update={"guid": record.guid or new_guid(), "first_published": now, "last_updated": now}
        )
        return Catalog(sort_episodes([*others, fresh]), catalog.etag), "new"
    if _content(existing) == _content(record):
        return catalog, "unchanged"
    if record.source_sha256 and existing.source_sha256:
        new_audio = record.source_sha256 != existing.source_sha256
    else:
        new_audio = record.sha256 != existing.sha256
    change: Change = "replaced" if new_audio else "updated"
    merged = record.model_copy(
        update={
            "guid": existing.guid,
            "first_published": existing.first_published,
            "last_updated": now,
            "removed_at": existing.removed_at,
        }
    )
    return Catalog(sort_episodes([*others, merged]), catalog.etag), change


def mark_removed(
    catalog: Catalog, guids: Iterable[str], now: datetime
) -> tuple[Catalog, list[str]]:
    """Mark the episodes with these guids as removed from the feed (pure: a new Catalog).

    Returns the catalog and the guids it does not know (in the order given); callers treat
    unknown guids as an error and save nothing (see `remove_episodes`). An episode that is
    already removed keeps its first `removed_at`. The records stay in the catalog.
    """
    wanted = dict.fromkeys(guids)
    known = {ep.guid for ep in catalog.episodes}
    unknown = [guid for guid in wanted if guid not in known]
    episodes = [
        ep.model_copy(update={"removed_at": now})
        if ep.guid in wanted and ep.removed_at is None
        else ep
        for ep in catalog.episodes
    ]
    return Catalog(episodes, catalog.etag), unknown


@dataclass(frozen=True)
class Removal:
    """What `remove_episodes` did."""

    catalog: Catalog  # as saved (with its new ETag)
    removed: tuple[str, ...]  # guids removed by this call
    already_removed: tuple[str, ...]  # guids that were removed before: nothing to do


def unknown_guid_error(unknown: Sequence[str], catalog: Catalog, where: str) -> CatalogError:
    """The error for guids the catalog does not know: which, and where the real guids are."""
    hints = []
    for guid in unknown:
        same_slug = catalog.by_slug(guid)
        if same_slug is not None:  # a slug instead of a guid: the most likely mix-up
            hints.append(f"{guid!r} is a slug; its guid is {same_slug.guid}")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return CatalogError(
        f"No episode in {where} has the guid {', '.join(unknown)}{hint}; nothing was removed. "
        f"The guids are the 'guid' of each episode in {CATALOG_KEY} and the <guid> of each "
        "<item> in the live feed podcast/feed.xml. Check the guid and run again."
    )


def remove_episodes(
    storage: Storage, guids: Iterable[str], now: datetime, *, saved_at: datetime | None = None
) -> Removal:
    """Load the catalog, mark these guids removed and save it (If-Match, with a backup).

    `now` is `removed_at`; the backup is named by the wall clock (`saved_at`, default: read
    when saving, see `save_catalog`).

    Raises CatalogError, changing nothing, if any guid is unknown or another run changed the
    catalog meanwhile. Removing an already removed guid is a no-op (it is reported as such).
    Loading here (not taking a loaded catalog) makes a retry after a storage error safe.
    """
    wanted = list(dict.fromkeys(guids))
    catalog = load_catalog(storage)
    marked, unknown = mark_removed(catalog, wanted, now)
    if unknown:
        raise unknown_guid_error(unknown, catalog, f"{storage.describe()}/{CATALOG_KEY}")
    before = {ep.guid: ep.removed_at for ep in catalog.episodes}
    already = tuple(g for g in wanted if before[g] is not None)
    removed = tuple(g for g in wanted if g not in already)
    saved = save_catalog(storage, marked, saved_at) if removed else catalog
    return Removal(saved, removed, already)
